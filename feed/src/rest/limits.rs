//! Rate-limit bookkeeping: may a request of a given cost go now, or not before when?
//!
//! Pure: time is an argument (epoch ms, on the exchange's clock, since Binance's windows are
//! fixed intervals of its time: a minute counter restarts on the minute). Each counter is the
//! larger of what robsond counted itself and what the last `X-MBX-USED-WEIGHT-*` /
//! `X-MBX-ORDER-COUNT-*` header said: the header sees other processes on the IP or account, the
//! local count sees requests still in flight.
//!
//! A share of every limit (the reserve) is kept for closes: when the budget runs short, the
//! request that waits must never be the stop-loss.

use super::error::{ApiError, RestError};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LimitKind {
    /// IP request weight (`X-MBX-USED-WEIGHT-*`).
    RequestWeight,
    /// Orders placed (`X-MBX-ORDER-COUNT-*`), counted per account on both venues, so another
    /// program trading the same account spends the same budget.
    Orders,
    /// Spot raw request count; no header reports it, so only robsond's own count applies.
    RawRequests,
}

/// At most `max` units of `kind` per `window_ms`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limit {
    pub kind: LimitKind,
    pub window_ms: u64,
    pub max: u32,
}

const SECOND: u64 = 1_000;
const MINUTE: u64 = 60 * SECOND;
const DAY: u64 = 24 * 60 * MINUTE;

/// Spot and margin defaults (BINANCE.md §7); exchangeInfo's `rateLimits` are authoritative.
pub const SPOT_LIMITS: [Limit; 4] = [
    Limit { kind: LimitKind::RequestWeight, window_ms: MINUTE, max: 6000 },
    Limit { kind: LimitKind::Orders, window_ms: 10 * SECOND, max: 50 },
    Limit { kind: LimitKind::Orders, window_ms: DAY, max: 160_000 },
    Limit { kind: LimitKind::RawRequests, window_ms: 5 * MINUTE, max: 61_000 },
];

/// USD-M futures defaults (BINANCE.md §7).
pub const FUTURES_LIMITS: [Limit; 3] = [
    Limit { kind: LimitKind::RequestWeight, window_ms: MINUTE, max: 2400 },
    Limit { kind: LimitKind::Orders, window_ms: MINUTE, max: 1200 },
    Limit { kind: LimitKind::Orders, window_ms: 10 * SECOND, max: 300 },
];

/// Percent of each limit that only closes may use.
pub const DEFAULT_RESERVE_PCT: u8 = 10;

/// When Binance bans without saying for how long: its shortest ban (BINANCE.md §7).
const DEFAULT_BAN_MS: u64 = 2 * MINUTE;

/// What one request costs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cost {
    pub weight: u32,
    /// 1 for a new order, else 0.
    pub orders: u32,
}

impl Cost {
    pub const fn request(weight: u32) -> Cost {
        Cost { weight, orders: 0 }
    }

    pub const fn order(weight: u32) -> Cost {
        Cost { weight, orders: 1 }
    }

    fn of(self, kind: LimitKind) -> u32 {
        match kind {
            LimitKind::RequestWeight => self.weight,
            LimitKind::Orders => self.orders,
            LimitKind::RawRequests => 1,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Priority {
    /// Entries, queries, polls: kept out of the reserve.
    Normal,
    /// A position close: may spend the reserve, up to the hard limit and never past it.
    Close,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Send,
    /// Not before `at_ms`: a full window of `limit`, or a ban / `Retry-After` when `None`.
    Wait {
        at_ms: u64,
        limit: Option<Limit>,
    },
    /// Costs more than the budget of a whole window of `limit`: it can never be sent.
    TooCostly(Limit),
}

#[derive(Clone, Copy, Debug)]
struct Counter {
    limit: Limit,
    window_start: u64,
    used: u32,
}

impl Counter {
    fn window_of(&self, now_ms: u64) -> u64 {
        now_ms - now_ms % self.limit.window_ms
    }

    /// Saturating, so that a clock read near the end of time cannot wrap into the past.
    fn window_end(&self, now_ms: u64) -> u64 {
        self.window_of(now_ms).saturating_add(self.limit.window_ms)
    }

    fn used_at(&self, now_ms: u64) -> u32 {
        if self.window_of(now_ms) == self.window_start { self.used } else { 0 }
    }

    fn roll(&mut self, now_ms: u64) {
        let start = self.window_of(now_ms);
        if start != self.window_start {
            self.window_start = start;
            self.used = 0;
        }
    }
}

#[derive(Clone, Debug)]
pub struct RateLimiter {
    counters: Vec<Counter>,
    reserve_pct: u8,
    blocked_until_ms: u64,
}

/// `X-MBX-USED-WEIGHT-1M` → (RequestWeight, 60 000 ms), case-insensitively.
fn header_limit(name: &[u8]) -> Option<(LimitKind, u64)> {
    let name = core::str::from_utf8(name).ok()?.to_ascii_lowercase();
    let (kind, interval) = if let Some(rest) = name.strip_prefix("x-mbx-used-weight-") {
        (LimitKind::RequestWeight, rest)
    } else if let Some(rest) = name.strip_prefix("x-mbx-order-count-") {
        (LimitKind::Orders, rest)
    } else {
        return None;
    };
    let unit = match interval.as_bytes().last()? {
        b's' => SECOND,
        b'm' => MINUTE,
        b'h' => 60 * MINUTE,
        b'd' => DAY,
        _ => return None,
    };
    let digits = &interval[..interval.len() - 1];
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let window = digits.parse::<u64>().ok()?.checked_mul(unit)?;
    (window > 0).then_some((kind, window))
}

fn header_count(value: &[u8]) -> Option<u32> {
    let text = core::str::from_utf8(value).ok()?.trim();
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // A count beyond u32 is beyond every limit: saturate rather than ignore it.
    Some(text.parse::<u64>().map_or(u32::MAX, |n| u32::try_from(n).unwrap_or(u32::MAX)))
}

impl RateLimiter {
    /// `reserve_pct` is capped at 100 (closes only).
    pub fn new(limits: &[Limit], reserve_pct: u8) -> RateLimiter {
        let counters = limits
            .iter()
            .filter(|l| l.window_ms > 0)
            .map(|&limit| Counter { limit, window_start: 0, used: 0 })
            .collect();
        RateLimiter { counters, reserve_pct: reserve_pct.min(100), blocked_until_ms: 0 }
    }

    fn budget(&self, limit: Limit, priority: Priority) -> u32 {
        match priority {
            Priority::Close => limit.max,
            Priority::Normal => {
                let share = u64::from(100 - self.reserve_pct);
                u32::try_from(u64::from(limit.max) * share / 100).unwrap_or(limit.max)
            }
        }
    }

    /// Whether a request of `cost` may go at `now_ms`. Does not count it: see [`acquire`].
    ///
    /// [`acquire`]: RateLimiter::acquire
    pub fn check(&self, now_ms: u64, cost: Cost, priority: Priority) -> Verdict {
        // A ban binds closes too: any request sent during it only lengthens it.
        if now_ms < self.blocked_until_ms {
            return Verdict::Wait { at_ms: self.blocked_until_ms, limit: None };
        }
        let mut wait: Option<(u64, Limit)> = None;
        for counter in &self.counters {
            let need = cost.of(counter.limit.kind);
            if need == 0 {
                continue;
            }
            let budget = self.budget(counter.limit, priority);
            if need > budget {
                return Verdict::TooCostly(counter.limit);
            }
            if counter.used_at(now_ms).saturating_add(need) > budget {
                let at_ms = counter.window_end(now_ms);
                // Every full counter must have rolled over; the latest one decides.
                if wait.is_none_or(|(at, _)| at_ms > at) {
                    wait = Some((at_ms, counter.limit));
                }
            }
        }
        match wait {
            Some((at_ms, limit)) => Verdict::Wait { at_ms, limit: Some(limit) },
            None => Verdict::Send,
        }
    }

    /// Counts a request that is being sent.
    pub fn record(&mut self, now_ms: u64, cost: Cost) {
        for counter in &mut self.counters {
            counter.roll(now_ms);
            counter.used = counter.used.saturating_add(cost.of(counter.limit.kind));
        }
    }

    /// [`check`](RateLimiter::check), and on `Send` [`record`](RateLimiter::record).
    pub fn acquire(&mut self, now_ms: u64, cost: Cost, priority: Priority) -> Verdict {
        let verdict = self.check(now_ms, cost, priority);
        if verdict == Verdict::Send {
            self.record(now_ms, cost);
        }
        verdict
    }

    /// Takes Binance's count for one counter; it only ever raises robsond's own, because a
    /// lower header merely predates requests still in flight.
    pub fn observe(&mut self, now_ms: u64, kind: LimitKind, window_ms: u64, used: u32) {
        for counter in &mut self.counters {
            if counter.limit.kind == kind && counter.limit.window_ms == window_ms {
                counter.roll(now_ms);
                counter.used = counter.used.max(used);
            }
        }
    }

    /// Reads every `X-MBX-USED-WEIGHT-*` and `X-MBX-ORDER-COUNT-*` header of a response.
    pub fn observe_headers<H, K, V>(&mut self, now_ms: u64, headers: H)
    where
        H: IntoIterator<Item = (K, V)>,
        K: AsRef<[u8]>,
        V: AsRef<[u8]>,
    {
        for (name, value) in headers {
            if let (Some((kind, window_ms)), Some(used)) =
                (header_limit(name.as_ref()), header_count(value.as_ref()))
            {
                self.observe(now_ms, kind, window_ms, used);
            }
        }
    }

    /// Blocks every request until `until_ms`; an earlier block is never shortened.
    pub fn block_until(&mut self, until_ms: u64) {
        self.blocked_until_ms = self.blocked_until_ms.max(until_ms);
    }

    /// Applies what a failure says about limits: `Retry-After`, a ban's end, or a 429 with no
    /// advice, which waits out the current minute (the request-weight window).
    pub fn on_error(&mut self, now_ms: u64, error: &RestError) {
        let end_of_minute = (now_ms - now_ms % MINUTE).saturating_add(MINUTE);
        let default_ms = match error {
            RestError::RateLimited { .. } => end_of_minute,
            RestError::Banned { .. } => now_ms.saturating_add(DEFAULT_BAN_MS),
            _ => match error.api() {
                Some(ApiError::TooManyRequests { .. }) => end_of_minute,
                _ => return,
            },
        };
        self.block_until(error.not_before_ms(now_ms).unwrap_or(default_ms));
    }

    pub fn blocked_until_ms(&self) -> u64 {
        self.blocked_until_ms
    }

    /// The current count of one counter, for metrics.
    pub fn used(&self, now_ms: u64, kind: LimitKind, window_ms: u64) -> Option<u32> {
        self.counters
            .iter()
            .find(|c| c.limit.kind == kind && c.limit.window_ms == window_ms)
            .map(|c| c.used_at(now_ms))
    }
}
