//! The Core entry signal: a fast/slow simple-moving-average crossover over trade prices
//! (DESIGN.md section 4), O(1) per trade and exact.
//!
//! The sums run over the ring of the last `slow` prices, so a trade adds one price and drops one
//! instead of re-summing the window. The averages are never divided: `fast > slow` is decided as
//! `sum_fast × slow_len > sum_slow × fast_len` in i128, which no rounding can tip over.

use core::cmp::Ordering;

use crate::money::Price;

/// The longest window accepted: a ring of this many prices is 80 KiB, allocated once at arm time.
pub const MAX_PERIOD: u32 = 10_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cross {
    /// Fast crossed above slow: a LONG entry.
    Up,
    /// Fast crossed below slow: a SHORT entry.
    Down,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeriodError {
    Zero,
    FastNotBelowSlow,
    TooLong,
}

#[derive(Clone, Debug)]
pub struct Crossover {
    fast_len: u32,
    slow_len: u32,
    ring: Box<[i64]>,
    pushed: u64,
    sum_fast: i128,
    sum_slow: i128,
    /// fast vs slow at the previous trade, once the slow window was full for it.
    previous: Option<Ordering>,
}

impl Crossover {
    pub fn new(fast_len: u32, slow_len: u32) -> Result<Crossover, PeriodError> {
        if fast_len == 0 {
            return Err(PeriodError::Zero);
        }
        if fast_len >= slow_len {
            return Err(PeriodError::FastNotBelowSlow);
        }
        if slow_len > MAX_PERIOD {
            return Err(PeriodError::TooLong);
        }
        Ok(Crossover {
            fast_len,
            slow_len,
            ring: vec![0; slow_len as usize].into_boxed_slice(),
            pushed: 0,
            sum_fast: 0,
            sum_slow: 0,
            previous: None,
        })
    }

    pub fn periods(&self) -> (u32, u32) {
        (self.fast_len, self.slow_len)
    }

    /// True once `slow` trades have been seen; no signal comes before.
    pub fn is_full(&self) -> bool {
        self.pushed >= u64::from(self.slow_len)
    }

    /// Feeds one trade price. A cross is reported only when the previous comparison also had a
    /// full slow window, so the first possible signal is on trade `slow + 1`: a window that has
    /// just filled has no "previous" SMA to have crossed from.
    pub fn push(&mut self, price: Price) -> Option<Cross> {
        let slow = u64::from(self.slow_len);
        let fast = u64::from(self.fast_len);
        let write = (self.pushed % slow) as usize;
        if self.pushed >= slow {
            self.sum_slow -= i128::from(self.ring[write]);
        }
        if self.pushed >= fast {
            let leaving_fast = ((self.pushed - fast) % slow) as usize;
            self.sum_fast -= i128::from(self.ring[leaving_fast]);
        }
        let units = price.units();
        self.ring[write] = units;
        self.sum_slow += i128::from(units);
        self.sum_fast += i128::from(units);
        self.pushed += 1;
        if !self.is_full() {
            return None;
        }
        let now = (self.sum_fast * i128::from(self.slow_len))
            .cmp(&(self.sum_slow * i128::from(self.fast_len)));
        let cross = match (self.previous, now) {
            (Some(before), Ordering::Greater) if before != Ordering::Greater => Some(Cross::Up),
            (Some(before), Ordering::Less) if before != Ordering::Less => Some(Cross::Down),
            _ => None,
        };
        self.previous = Some(now);
        cross
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(x: &mut Crossover, prices: &[i64]) -> Vec<Option<Cross>> {
        prices.iter().map(|&p| x.push(Price::from_int(p))).collect()
    }

    #[test]
    fn no_signal_before_the_slow_window_fills_and_one_trade_after() {
        let mut x = Crossover::new(2, 4).unwrap();
        // Rising from the first trade: fast > slow as soon as the window is full (trade 4), but
        // with nothing to cross from, the cross is not reported.
        assert_eq!(feed(&mut x, &[1, 2, 3, 4, 5]), vec![None; 5]);
    }

    #[test]
    fn crossing_up_then_down_with_the_exact_rule() {
        let mut x = Crossover::new(2, 4).unwrap();
        // Window [10,10,10,10]: fast == slow, "previous fast ≤ previous slow" holds.
        assert_eq!(feed(&mut x, &[10, 10, 10, 10]), vec![None; 4]);
        // 11: fast (10+11)/2 = 10.5 > slow 41/4 = 10.25 → cross up.
        assert_eq!(x.push(Price::from_int(11)), Some(Cross::Up));
        // Still above: no second signal.
        assert_eq!(x.push(Price::from_int(12)), None);
        // 8: window [10,11,12,8]: fast 10 < slow 10.25 → cross down.
        assert_eq!(x.push(Price::from_int(8)), Some(Cross::Down));
    }

    #[test]
    fn touching_is_not_crossing() {
        let mut x = Crossover::new(2, 4).unwrap();
        feed(&mut x, &[10, 10, 10, 10]);
        // Equal averages again: fast == slow is neither above nor below.
        assert_eq!(x.push(Price::from_int(10)), None);
        // From equality, a strict move above is a cross (previous fast ≤ previous slow).
        assert_eq!(x.push(Price::from_int(12)), Some(Cross::Up));
    }

    #[test]
    fn the_comparison_is_exact_where_division_would_round() {
        // fast = 3 periods, slow = 7, prices in single 1e-8 units: averages truncated to units
        // would both be 1 (no cross); the exact fractions 4/3 > 8/7 cross.
        let mut x = Crossover::new(3, 7).unwrap();
        let units = [1, 1, 1, 1, 1, 1, 1];
        for u in units {
            assert_eq!(x.push(Price::from_units(u)), None);
        }
        // Window [1,1,1,1,1,1,2]: fast 4/3 vs slow 8/7 → fast above.
        assert_eq!(x.push(Price::from_units(2)), Some(Cross::Up));
    }

    #[test]
    fn running_sums_match_a_full_recount() {
        let mut x = Crossover::new(3, 5).unwrap();
        let prices: Vec<i64> = (0..200).map(|i| (i * 7919) % 113 + 1).collect();
        for (i, &p) in prices.iter().enumerate() {
            x.push(Price::from_units(p));
            let seen = &prices[..=i];
            let slow: i128 = seen.iter().rev().take(5).map(|&v| i128::from(v)).sum();
            let fast: i128 = seen.iter().rev().take(3).map(|&v| i128::from(v)).sum();
            assert_eq!((x.sum_fast, x.sum_slow), (fast, slow), "after trade {i}");
        }
    }

    #[test]
    fn periods_are_validated() {
        assert_eq!(Crossover::new(0, 5).unwrap_err(), PeriodError::Zero);
        assert_eq!(Crossover::new(5, 5).unwrap_err(), PeriodError::FastNotBelowSlow);
        assert_eq!(Crossover::new(9, MAX_PERIOD + 1).unwrap_err(), PeriodError::TooLong);
    }
}
