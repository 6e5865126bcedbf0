//! The hand-span trailing stop of DESIGN.md section 4, as pure functions of entry, span, fees and
//! the trigger price. Discrete (it moves a whole span at a time) and monotone (never loosens).

use crate::filters::SymbolRules;
use crate::money::{Price, Ratio, SCALE};
use crate::types::Side;

/// What a Core position trails with, fixed when its entry fills.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HandSpan {
    pub side: Side,
    pub entry: Price,
    /// `|entry − technical stop|`, in price units; zero disables trailing.
    pub span: Price,
    pub fees: Ratio,
}

impl HandSpan {
    /// How many whole spans the trigger price is in profit: `floor((price − entry) / span)` for
    /// a long, `floor((entry − price) / span)` for a short. Zero or less means no move.
    pub fn level(&self, trigger: Price) -> i64 {
        if self.span.units() <= 0 {
            return 0;
        }
        let profit = match self.side {
            Side::Long => i128::from(trigger.units()) - i128::from(self.entry.units()),
            Side::Short => i128::from(self.entry.units()) - i128::from(trigger.units()),
        };
        let level = profit.div_euclid(i128::from(self.span.units()));
        level.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
    }

    /// The price at which the level first exceeds `level`: trailing has nothing to do until the
    /// trigger reaches it, so the engine can skip a tick with one comparison.
    pub fn next_level_price(&self, level: i64) -> Price {
        if self.span.units() <= 0 {
            return match self.side {
                Side::Long => Price::from_units(i64::MAX),
                Side::Short => Price::from_units(i64::MIN),
            };
        }
        let distance = i128::from(level.max(0) + 1) * i128::from(self.span.units());
        let price = match self.side {
            Side::Long => i128::from(self.entry.units()) + distance,
            Side::Short => i128::from(self.entry.units()) - distance,
        };
        Price::from_units(price.clamp(i128::from(i64::MIN + 1), i128::from(i64::MAX)) as i64)
    }

    /// The stop that `level` asks for, loose-rounded to the tick; None for level ≤ 0 ("keep").
    /// Level 1 is break-even (`entry × (1 + fees)` for a long, `entry / (1 + fees)` for a
    /// short); level n ≥ 2 is `entry ± (n − 1) × span`.
    pub fn stop_for_level(&self, level: i64, rules: &SymbolRules) -> Option<Price> {
        let entry = i128::from(self.entry.units());
        let one_plus_fees = i128::from(SCALE) + i128::from(self.fees.units());
        let exact = match (level, self.side) {
            (i64::MIN..=0, _) => return None,
            (1, Side::Long) => (entry * one_plus_fees, i128::from(SCALE)),
            (1, Side::Short) => (entry * i128::from(SCALE), one_plus_fees),
            (n, Side::Long) => (entry + i128::from(n - 1) * i128::from(self.span.units()), 1),
            (n, Side::Short) => (entry - i128::from(n - 1) * i128::from(self.span.units()), 1),
        };
        Some(rules.stop_from_ratio(self.side, exact.0, exact.1))
    }

    /// The monotone update: the tighter of the current stop and what `level` asks for.
    pub fn tighten(&self, current: Price, level: i64, rules: &SymbolRules) -> Price {
        match (self.stop_for_level(level, rules), self.side) {
            (None, _) => current,
            (Some(new), Side::Long) => current.max(new),
            (Some(new), Side::Short) => current.min(new),
        }
    }
}

/// Inclusive trigger rule shared by Core and the Safety Net: a long's stop fires at or below it,
/// a short's at or above.
#[inline(always)]
pub fn stop_reached(side: Side, trigger: Price, stop: Price) -> bool {
    match side {
        Side::Long => trigger <= stop,
        Side::Short => trigger >= stop,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(tick: &str) -> SymbolRules {
        SymbolRules { tick: Price::lit(tick), ..SymbolRules::UNRESTRICTED }
    }

    /// Walks DESIGN.md's worked example: each (trigger, expected stop) in order, with the exit
    /// check at every step.
    fn walk(trail: HandSpan, rules: &SymbolRules, initial: &str, steps: &[(&str, &str, bool)]) {
        let mut stop = Price::lit(initial);
        let mut level = 0;
        for &(trigger, expected, exits) in steps {
            let trigger = Price::lit(trigger);
            let now = trail.level(trigger);
            if now > level {
                stop = trail.tighten(stop, now, rules);
                level = now;
            }
            assert_eq!(stop, Price::lit(expected), "stop after trigger {trigger}");
            assert_eq!(stop_reached(trail.side, trigger, stop), exits, "exit at {trigger}");
        }
    }

    #[test]
    fn worked_example_long() {
        let trail = HandSpan {
            side: Side::Long,
            entry: Price::lit("50000"),
            span: Price::lit("1000"),
            fees: Ratio::lit("0.0015"),
        };
        walk(
            trail,
            &rules("0.10"),
            "49000",
            &[
                ("50500", "49000", false),
                ("51000", "50075.0", false),
                ("51500", "50075.0", false),
                ("52000", "51000", false),
                ("53000", "52000", false),
                ("54000", "53000", false),
                ("53100", "53000", false),
                ("53000", "53000", true),
            ],
        );
    }

    #[test]
    fn worked_example_short() {
        let trail = HandSpan {
            side: Side::Short,
            entry: Price::lit("3000"),
            span: Price::lit("100"),
            fees: Ratio::lit("0.0015"),
        };
        walk(
            trail,
            &rules("0.01"),
            "3100",
            &[
                ("2950", "3100", false),
                // 3,000 / 1.0015 = 2,995.5067…, rounded up (loose side of a short) to 2,995.51.
                ("2900", "2995.51", false),
                ("2800", "2900", false),
                ("2700", "2800", false),
                ("2799.99", "2800", false),
                ("2800", "2800", true),
            ],
        );
    }

    #[test]
    fn a_jump_of_several_spans_lands_on_the_highest_level_at_once() {
        let trail = HandSpan {
            side: Side::Long,
            entry: Price::lit("50000"),
            span: Price::lit("1000"),
            fees: Ratio::lit("0.0015"),
        };
        assert_eq!(trail.level(Price::lit("54999.99")), 4);
        assert_eq!(trail.tighten(Price::lit("49000"), 4, &rules("0.1")), Price::lit("53000"));
        assert_eq!(trail.next_level_price(4), Price::lit("55000"));
        assert_eq!(trail.level(Price::lit("49999")), -1);
        assert_eq!(trail.tighten(Price::lit("49000"), -1, &rules("0.1")), Price::lit("49000"));
    }

    #[test]
    fn never_loosens_even_when_a_lower_level_is_asked() {
        let trail = HandSpan {
            side: Side::Short,
            entry: Price::lit("3000"),
            span: Price::lit("100"),
            fees: Ratio::lit("0.0015"),
        };
        let tight = Price::lit("2800");
        assert_eq!(trail.tighten(tight, 1, &rules("0.01")), tight);
        assert_eq!(trail.tighten(tight, 2, &rules("0.01")), tight);
    }

    #[test]
    fn triggers_are_inclusive() {
        assert!(stop_reached(Side::Long, Price::lit("49000"), Price::lit("49000")));
        assert!(!stop_reached(Side::Long, Price::lit("49000.01"), Price::lit("49000")));
        assert!(stop_reached(Side::Short, Price::lit("51000"), Price::lit("51000")));
        assert!(!stop_reached(Side::Short, Price::lit("50999.99"), Price::lit("51000")));
    }
}
