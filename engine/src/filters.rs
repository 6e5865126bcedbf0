//! Symbol rules from exchangeInfo and exact rounding to their grids.
//!
//! A grid is `origin + k × step`: Binance futures check `(price − minPrice) % tickSize == 0` and
//! `(qty − minQty) % stepSize == 0`, spot checks against zero; both are grids, with origin 0 when
//! the minimum is itself on the step. Rounding works on exact rationals in `i128`, so a stop such
//! as 3,000 / 1.0015 rounds straight to the tick without an intermediate 1e-8 truncation.

use crate::money::{Amount, Price, Qty, Ratio, SCALE, notional_scaled};
use crate::types::Side;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RoundMode {
    /// Toward −∞.
    Down,
    /// Toward +∞.
    Up,
    /// To the closest grid point; an exact half goes up.
    Nearest,
}

/// Floor division for a positive divisor.
#[inline(always)]
fn div_floor(num: i128, den: i128) -> i128 {
    debug_assert!(den > 0);
    num.div_euclid(den)
}

#[inline(always)]
fn div_round(num: i128, den: i128, mode: RoundMode) -> i128 {
    match mode {
        RoundMode::Down => div_floor(num, den),
        RoundMode::Up => -div_floor(-num, den),
        RoundMode::Nearest => {
            // Not floor((2·num + den) / 2·den): doubling can overflow at the range's edge.
            let below = div_floor(num, den);
            let rest = num - below * den;
            if rest >= den - rest { below + 1 } else { below }
        }
    }
}

/// `origin + k × step` for integer k, in 1e-8 units.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Grid {
    origin: i64,
    step: i64,
}

impl Grid {
    /// A step of zero means "no grid" to Binance (a disabled filter): every 1e-8 is allowed.
    pub fn new(origin: i64, step: i64) -> Grid {
        let step = if step <= 0 { 1 } else { step };
        // Reduce the origin into one step: the grid is the same set of points, and the i128
        // arithmetic below then never sees a large offset.
        Grid { origin: origin.rem_euclid(step), step }
    }

    pub fn step(&self) -> i64 {
        self.step
    }

    pub fn contains(&self, units: i64) -> bool {
        (i128::from(units) - i128::from(self.origin)).rem_euclid(i128::from(self.step)) == 0
    }

    /// Rounds the exact value `num / den` (in 1e-8 units, `den > 0`) to the grid. Saturates at
    /// the i64 range, which no real price or quantity reaches.
    pub fn round_ratio(&self, num: i128, den: i128, mode: RoundMode) -> i64 {
        debug_assert!(den > 0, "denominator must be positive");
        let step = i128::from(self.step);
        let offset = num - i128::from(self.origin) * den;
        let k = div_round(offset, den * step, mode);
        let units = i128::from(self.origin) + k * step;
        units.clamp(i128::from(i64::MIN + 1), i128::from(i64::MAX)) as i64
    }

    #[inline]
    pub fn round(&self, units: i64, mode: RoundMode) -> i64 {
        self.round_ratio(i128::from(units), 1, mode)
    }
}

/// Which way a stop rounds so that it never fires before the exact rule says it should: a long's
/// stop sits below the price and rounds down, a short's sits above and rounds up (DESIGN.md 2b).
#[inline(always)]
pub fn loose_side(side: Side) -> RoundMode {
    match side {
        Side::Long => RoundMode::Down,
        Side::Short => RoundMode::Up,
    }
}

/// What the engine needs of a symbol's exchangeInfo filters, already resolved per venue by the
/// feed: the price grid (PRICE_FILTER), the grid and bounds for MARKET orders (MARKET_LOT_SIZE
/// where enabled, else LOT_SIZE), and the minimum notional that applies to market orders.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SymbolRules {
    pub tick: Price,
    pub min_price: Price,
    pub step: Qty,
    pub min_qty: Qty,
    /// Zero means no maximum.
    pub max_qty: Qty,
    /// Zero means no minimum.
    pub min_notional: Amount,
}

impl SymbolRules {
    /// Rules that constrain nothing beyond Binance's 1e-8 resolution; used until exchangeInfo
    /// arrives for a symbol, and in tests.
    pub const UNRESTRICTED: SymbolRules = SymbolRules {
        tick: Price::from_units(1),
        min_price: Price::ZERO,
        step: Qty::from_units(1),
        min_qty: Qty::ZERO,
        max_qty: Qty::ZERO,
        min_notional: Amount::ZERO,
    };

    pub fn price_grid(&self) -> Grid {
        Grid::new(self.min_price.units(), self.tick.units())
    }

    pub fn qty_grid(&self) -> Grid {
        Grid::new(self.min_qty.units(), self.step.units())
    }

    /// A stop from the exact ratio `num / den` (1e-8 units), rounded to the tick on the side's
    /// loose side.
    pub fn stop_from_ratio(&self, side: Side, num: i128, den: i128) -> Price {
        Price::from_units(self.price_grid().round_ratio(num, den, loose_side(side)))
    }

    /// `price × (1 − ratio)` for a long, `price × (1 + ratio)` for a short, loose-rounded.
    pub fn stop_at_distance(&self, side: Side, price: Price, ratio: Ratio) -> Price {
        let factor = match side {
            Side::Long => i128::from(SCALE) - i128::from(ratio.units()),
            Side::Short => i128::from(SCALE) + i128::from(ratio.units()),
        };
        self.stop_from_ratio(side, i128::from(price.units()) * factor, i128::from(SCALE))
    }

    /// A market order quantity: rounded down to the step, clamped to maxQty.
    pub fn order_qty(&self, qty: Qty) -> Qty {
        let mut units = self.qty_grid().round(qty.units(), RoundMode::Down);
        if self.max_qty.is_positive() && units > self.max_qty.units() {
            units = self.qty_grid().round(self.max_qty.units(), RoundMode::Down);
        }
        Qty::from_units(units.max(0))
    }

    pub fn meets_min_qty(&self, qty: Qty) -> bool {
        qty.is_positive() && qty >= self.min_qty
    }

    pub fn meets_min_notional(&self, qty: Qty, price: Price) -> bool {
        notional_scaled(qty, price) >= i128::from(self.min_notional.units()) * i128::from(SCALE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tick(s: &str) -> SymbolRules {
        SymbolRules { tick: Price::lit(s), ..SymbolRules::UNRESTRICTED }
    }

    #[test]
    fn the_fixed_crate_counterexample_is_exact_here() {
        // 50,000 × 0.98 floored to a 0.1 tick is 49,000.0, not 48,999.9 (DESIGN.md 2a).
        let rules = tick("0.1");
        let stop = rules.stop_at_distance(Side::Long, Price::lit("50000"), Ratio::lit("0.02"));
        assert_eq!(stop, Price::lit("49000.0"));
        let stop = rules.stop_at_distance(Side::Short, Price::lit("50000"), Ratio::lit("0.02"));
        assert_eq!(stop, Price::lit("51000.0"));
    }

    #[test]
    fn stops_round_on_the_loose_side() {
        let rules = tick("0.01");
        // 3,000 / 1.0015 = 2,995.5067…: a short's stop rounds up to 2,995.51.
        let short = rules.stop_from_ratio(Side::Short, 3_000 * 100_000_000 * 10_000, 10_015);
        assert_eq!(short, Price::lit("2995.51"));
        // The same value as a long's stop rounds down.
        let long = rules.stop_from_ratio(Side::Long, 3_000 * 100_000_000 * 10_000, 10_015);
        assert_eq!(long, Price::lit("2995.50"));
        // 101.37 × 0.98 = 99.3426 → long 99.34, and 101.37 × 1.02 = 103.3974 → short 103.40.
        let long = rules.stop_at_distance(Side::Long, Price::lit("101.37"), Ratio::percent(2));
        let short = rules.stop_at_distance(Side::Short, Price::lit("101.37"), Ratio::percent(2));
        assert_eq!((long, short), (Price::lit("99.34"), Price::lit("103.40")));
    }

    #[test]
    fn grid_rounding_modes() {
        let g = Grid::new(0, 10);
        assert_eq!(g.round(25, RoundMode::Down), 20);
        assert_eq!(g.round(25, RoundMode::Up), 30);
        assert_eq!(g.round(25, RoundMode::Nearest), 30);
        assert_eq!(g.round(24, RoundMode::Nearest), 20);
        assert_eq!(g.round(-25, RoundMode::Down), -30);
        assert_eq!(g.round(-25, RoundMode::Up), -20);
        assert_eq!(g.round(-25, RoundMode::Nearest), -20);
        assert_eq!(g.round(30, RoundMode::Up), 30);
        // A futures grid anchored at minPrice 0.5 with tick 2: points 0.5, 2.5, 4.5 …
        let anchored = Grid::new(50_000_000, 200_000_000);
        assert_eq!(anchored.round(400_000_000, RoundMode::Down), 250_000_000);
        assert_eq!(anchored.round(400_000_000, RoundMode::Up), 450_000_000);
        assert!(anchored.contains(450_000_000) && !anchored.contains(400_000_000));
    }

    #[test]
    fn order_qty_rounds_down_and_caps() {
        let rules = SymbolRules {
            step: Qty::lit("0.001"),
            min_qty: Qty::lit("0.001"),
            max_qty: Qty::lit("120"),
            ..SymbolRules::UNRESTRICTED
        };
        assert_eq!(rules.order_qty(Qty::lit("0.12345")), Qty::lit("0.123"));
        assert_eq!(rules.order_qty(Qty::lit("0.0009")), Qty::ZERO);
        assert_eq!(rules.order_qty(Qty::lit("500")), Qty::lit("120"));
        assert!(!rules.meets_min_qty(Qty::ZERO));
        assert!(rules.meets_min_qty(Qty::lit("0.001")));
    }

    #[test]
    fn min_notional_is_exact_at_the_boundary() {
        let rules = SymbolRules { min_notional: Amount::lit("5"), ..SymbolRules::UNRESTRICTED };
        assert!(rules.meets_min_notional(Qty::lit("0.0001"), Price::lit("50000")));
        assert!(!rules.meets_min_notional(Qty::lit("0.0001"), Price::lit("49999.99")));
    }
}
