//! Writing Binance's JSON: objects with keys in Binance's own order, decimals as strings formatted
//! from `engine::money` fixed-point, and nothing else.
//!
//! serde_json's `Map` sorts its keys (the `preserve_order` feature is off in this workspace), and
//! Binance writes `e` first: the feed's parsers take a fast path on that, so the simulator keeps
//! the documented order rather than hide a slow path or a key-order assumption. serde_json still
//! does every string escape. Money never passes through a float here.

use engine::money::{SCALE, decimals_of_step, format_units};

/// An ordered JSON object under construction.
pub(crate) struct Obj {
    out: String,
    first: bool,
}

impl Obj {
    pub(crate) fn new() -> Obj {
        Obj { out: String::from("{"), first: true }
    }

    fn key(&mut self, key: &str) {
        if !self.first {
            self.out.push(',');
        }
        self.first = false;
        push_str_literal(&mut self.out, key);
        self.out.push(':');
    }

    pub(crate) fn str(mut self, key: &str, value: &str) -> Obj {
        self.key(key);
        push_str_literal(&mut self.out, value);
        self
    }

    pub(crate) fn int(mut self, key: &str, value: i64) -> Obj {
        self.key(key);
        self.out.push_str(&value.to_string());
        self
    }

    pub(crate) fn uint(mut self, key: &str, value: u64) -> Obj {
        self.key(key);
        self.out.push_str(&value.to_string());
        self
    }

    pub(crate) fn bool(mut self, key: &str, value: bool) -> Obj {
        self.key(key);
        self.out.push_str(if value { "true" } else { "false" });
        self
    }

    pub(crate) fn null(mut self, key: &str) -> Obj {
        self.key(key);
        self.out.push_str("null");
        self
    }

    /// `value` must already be JSON (a nested object or array built here).
    pub(crate) fn raw(mut self, key: &str, value: &str) -> Obj {
        self.key(key);
        self.out.push_str(value);
        self
    }

    pub(crate) fn end(mut self) -> String {
        self.out.push('}');
        self.out
    }
}

/// A JSON array of already-serialised items.
pub(crate) fn array<I: IntoIterator<Item = String>>(items: I) -> String {
    let mut out = String::from("[");
    for (i, item) in items.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&item);
    }
    out.push(']');
    out
}

/// A JSON string literal, escaped by serde_json.
pub(crate) fn string(value: &str) -> String {
    serde_json::Value::String(value.to_owned()).to_string()
}

fn push_str_literal(out: &mut String, value: &str) {
    out.push_str(&string(value));
}

/// `units` (1e-8) with exactly `decimals` fractional digits; if that would drop a digit (an
/// entry price between ticks, say), the canonical eight digits instead: never rounded silently.
pub(crate) fn dec(units: i64, decimals: u32) -> String {
    match format_units(units, decimals) {
        Ok(buf) => buf.as_str().to_owned(),
        Err(_) => dec8(units),
    }
}

/// Binance's canonical eight-decimal form ("25.35190000").
pub(crate) fn dec8(units: i64) -> String {
    format_units(units, 8).map(|b| b.as_str().to_owned()).unwrap_or_else(|_| "0".to_owned())
}

/// On the grid of `step` (a tick or a lot step): "50000.10" for a 0.10 tick.
pub(crate) fn on_grid(units: i64, step: i64) -> String {
    dec(units, decimals_of_step(step))
}

/// `a × b` of two 1e-8 quantities, back in 1e-8 units, rounded to the nearest (half away from
/// zero). Exact in i128; saturates at the i64 range, which no simulated amount reaches.
pub(crate) fn mul(a: i64, b: i64) -> i64 {
    let product = i128::from(a) * i128::from(b);
    let scale = i128::from(SCALE);
    let half = scale / 2;
    let rounded = if product >= 0 { (product + half) / scale } else { (product - half) / scale };
    rounded.clamp(i128::from(i64::MIN + 1), i128::from(i64::MAX)) as i64
}

/// `a / b` of two 1e-8 quantities in 1e-8 units, rounded to the nearest; 0 when `b` is 0.
pub(crate) fn div(a: i64, b: i64) -> i64 {
    if b == 0 {
        return 0;
    }
    let num = i128::from(a) * i128::from(SCALE);
    let den = i128::from(b);
    let (num, den) = if den < 0 { (-num, -den) } else { (num, den) };
    let half = den / 2;
    let q = if num >= 0 { (num + half) / den } else { (num - half) / den };
    q.clamp(i128::from(i64::MIN + 1), i128::from(i64::MAX)) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_keep_binance_key_order_and_escape_strings() {
        let json = Obj::new().str("e", "aggTrade").int("E", 5).str("s", "a\"b").bool("m", true);
        assert_eq!(json.end(), r#"{"e":"aggTrade","E":5,"s":"a\"b","m":true}"#);
    }

    #[test]
    fn decimals_follow_the_grid_and_never_round() {
        assert_eq!(on_grid(5_000_010_000_000, 10_000_000), "50000.1");
        assert_eq!(on_grid(100_000, 100_000), "0.001");
        // Off the grid: the full eight digits, not a rounded value.
        assert_eq!(dec(123_456_789, 2), "1.23456789");
        assert_eq!(mul(150_000, 5_000_000_000_000), 7_500_000_000);
        assert_eq!(div(7_500_000_000, 150_000), 5_000_000_000_000);
        assert_eq!(mul(-3, SCALE / 2), -2);
    }
}
