//! Outbound pacing and reconnect backoff: pure arithmetic on instants the caller passes in.

use std::time::{Duration, Instant};

/// Binance counts messages per second; the window is a little longer than that so that network
/// jitter squeezing two of our sends closer together on arrival cannot push a second over.
pub(crate) const WINDOW: Duration = Duration::from_millis(1100);

/// The largest per-connection budget a config may ask for (Binance allows 5 or 10 per second).
pub(crate) const MAX_BUDGET: usize = 64;

/// The send times of a connection's last `budget` messages, in a ring. A message may go when
/// fewer than `budget` were sent in the last [`WINDOW`]: that holds exactly when the `budget`-th
/// most recent send is at least a window old. Sends that could not wait (pongs, which
/// tungstenite answers on its own) are recorded too, so the paced ones make room for them.
///
/// Requests may keep a reserve free: a burst of SUBSCRIBEs must not hold back the ping that
/// proves the connection alive.
pub(crate) struct SendWindow {
    stamps: [Instant; MAX_BUDGET],
    budget: usize,
    len: usize,
    /// Where the next stamp goes (the oldest, once the ring is full).
    next: usize,
}

impl SendWindow {
    pub(crate) fn new(budget: usize, now: Instant) -> SendWindow {
        SendWindow {
            stamps: [now; MAX_BUDGET],
            budget: budget.clamp(1, MAX_BUDGET),
            len: 0,
            next: 0,
        }
    }

    /// How many sends a message may see in the window before it: all the budget, or all but
    /// `reserve` of it (never less than one).
    fn allowance(&self, reserve: usize) -> usize {
        self.budget.saturating_sub(reserve).max(1)
    }

    /// The `k`-th most recent send (1-based), if there were that many.
    fn recent(&self, k: usize) -> Option<Instant> {
        (k >= 1 && k <= self.len).then(|| self.stamps[(self.next + self.budget - k) % self.budget])
    }

    pub(crate) fn can_send(&self, now: Instant, reserve: usize) -> bool {
        match self.recent(self.allowance(reserve)) {
            None => true,
            Some(t) => now.saturating_duration_since(t) >= WINDOW,
        }
    }

    /// When the next message may go, or None if it may go now.
    pub(crate) fn free_at(&self, reserve: usize) -> Option<Instant> {
        self.recent(self.allowance(reserve)).map(|t| t + WINDOW)
    }

    pub(crate) fn record(&mut self, now: Instant) {
        self.stamps[self.next] = now;
        self.next = (self.next + 1) % self.budget;
        self.len = (self.len + 1).min(self.budget);
    }
}

/// Capped exponential backoff with full jitter: uniform in `[0, min(max, min * 2^attempt)]`.
/// Full jitter spreads the reconnects of many connections cut at once (a server restart) instead
/// of sending them back together.
pub(crate) fn backoff(
    rng: &mut fastrand::Rng,
    min: Duration,
    max: Duration,
    attempt: u32,
) -> Duration {
    let cap = backoff_cap(min, max, attempt);
    let nanos = u64::try_from(cap.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(rng.u64(0..=nanos))
}

/// The upper bound of the reconnect delay after `attempt` failures: `min(max, min * 2^attempt)`;
/// the delay itself is uniform in `[0, cap]` (full jitter).
pub fn backoff_cap(min: Duration, max: Duration, attempt: u32) -> Duration {
    let factor = 1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX);
    min.checked_mul(factor).unwrap_or(max).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_allows_budget_then_waits_a_window() {
        let t0 = Instant::now();
        let mut w = SendWindow::new(3, t0);
        for i in 0..3 {
            assert!(w.can_send(t0 + Duration::from_millis(i), 0));
            w.record(t0 + Duration::from_millis(i));
        }
        assert!(!w.can_send(t0 + Duration::from_millis(10), 0));
        assert_eq!(w.free_at(0), Some(t0 + WINDOW));
        assert!(w.can_send(t0 + WINDOW, 0));
        w.record(t0 + WINDOW);
        // The second send (t0+1ms) is now the oldest of the last three.
        assert!(!w.can_send(t0 + WINDOW, 0));
        assert!(w.can_send(t0 + WINDOW + Duration::from_millis(1), 0));
    }

    #[test]
    fn unpaced_sends_push_the_paced_ones_back() {
        let t0 = Instant::now();
        let mut w = SendWindow::new(2, t0);
        w.record(t0);
        w.record(t0 + Duration::from_millis(500));
        // A pong over budget: the window now holds three sends, and the next paced one has to
        // wait until only one remains in the last window.
        w.record(t0 + Duration::from_millis(600));
        assert!(!w.can_send(t0 + WINDOW + Duration::from_millis(100), 0));
        assert!(w.can_send(t0 + Duration::from_millis(500) + WINDOW, 0));
    }

    #[test]
    fn a_reserve_keeps_room_for_pings() {
        let t0 = Instant::now();
        let mut w = SendWindow::new(3, t0);
        w.record(t0);
        w.record(t0);
        // Requests (reserve 1) have used their two; a ping (reserve 0) still may go.
        assert!(!w.can_send(t0, 1));
        assert!(w.can_send(t0, 0));
        assert_eq!(w.free_at(1), Some(t0 + WINDOW));
        assert_eq!(w.free_at(0), None);
        // A budget of one keeps no reserve.
        let mut one = SendWindow::new(1, t0);
        assert!(one.can_send(t0, 1));
        one.record(t0);
        assert!(!one.can_send(t0, 1));
    }

    #[test]
    fn backoff_stays_under_its_cap() {
        let mut rng = fastrand::Rng::with_seed(7);
        let (min, max) = (Duration::from_millis(100), Duration::from_secs(5));
        assert_eq!(backoff_cap(min, max, 0), min);
        assert_eq!(backoff_cap(min, max, 3), Duration::from_millis(800));
        assert_eq!(backoff_cap(min, max, 40), max);
        for attempt in 0..50 {
            let d = backoff(&mut rng, min, max, attempt);
            assert!(d <= backoff_cap(min, max, attempt), "{attempt}: {d:?}");
        }
    }
}
