//! Decimal fixed-point money: every price, quantity, amount and ratio is an `i64` count of 1e-8.
//!
//! 1e-8 is Binance's own resolution, so every decimal string the exchange sends is held exactly and
//! formats back to the same string. Products (notional, ratio × price) widen to `i128` and are
//! rounded once, explicitly, by the caller's grid (see `filters`). There is no float anywhere, and
//! not the `fixed` crate either: it is binary and cannot hold 0.1 or 0.98 (docs/adr/0001).

use core::fmt;

/// Units per whole: 1e8.
pub const SCALE: i64 = 100_000_000;
const SCALE_DIGITS: usize = 8;
/// Largest integer part that still fits in an i64 of 1e-8 units (92,233,720,368).
const MAX_INT_PART: u64 = (i64::MAX / SCALE) as u64;

/// Why a decimal string was refused. Every variant is a clear, allocation-free value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecimalError {
    Empty,
    /// A byte that is not a digit, or a sign/point in the wrong place (`1e-8`, `+1`, `1.`, `.5`).
    InvalidChar,
    /// More than 8 significant fractional digits: Binance never sends them.
    TooPrecise,
    /// Beyond ±92,233,720,368.
    OutOfRange,
}

impl fmt::Display for DecimalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DecimalError::Empty => "empty decimal",
            DecimalError::InvalidChar => "not a plain decimal (digits, optional '-', optional '.')",
            DecimalError::TooPrecise => "more than 8 fractional digits",
            DecimalError::OutOfRange => "decimal out of range (|x| > 92233720368)",
        })
    }
}

impl std::error::Error for DecimalError {}

/// The decimal could not be written with the requested number of fractional digits without
/// dropping a non-zero digit (for example 0.015 at 2 decimals). Formatting never rounds silently.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NotRepresentable;

const ASCII_ZEROS: u64 = 0x3030_3030_3030_3030;

/// Eight ASCII digits (first digit in the lowest byte) to their value, or None if any byte is not
/// a digit. The SWAR reduction is the one simdjson uses: pairs, then quads, then the octet.
#[inline(always)]
fn eight_digits(chunk: [u8; 8]) -> Option<u64> {
    let raw = u64::from_le_bytes(chunk);
    let digits = raw.wrapping_sub(ASCII_ZEROS);
    // Every byte must be 0x30..=0x39: the high nibble 3, and adding 6 must not carry into it.
    let high_ok = raw & 0xF0F0_F0F0_F0F0_F0F0 == ASCII_ZEROS;
    let low_ok = raw.wrapping_add(0x0606_0606_0606_0606) & 0xF0F0_F0F0_F0F0_F0F0 == ASCII_ZEROS;
    if !(high_ok & low_ok) {
        return None;
    }
    let pairs = digits.wrapping_mul(10).wrapping_add(digits >> 8);
    let quads_lo = (pairs & 0x0000_00FF_0000_00FF).wrapping_mul(100 + (1_000_000 << 32));
    let quads_hi = ((pairs >> 16) & 0x0000_00FF_0000_00FF).wrapping_mul(1 + (10_000 << 32));
    Some(quads_lo.wrapping_add(quads_hi) >> 32)
}

const POW10: [u64; 9] = [1, 10, 100, 1_000, 10_000, 100_000, 1_000_000, 10_000_000, 100_000_000];

/// A fraction of up to eight digits as 1e-8 units (".35" is 35,000,000). Binance nearly always
/// sends exactly eight, which is one unaligned load and the SWAR reduction, no copy.
#[inline(always)]
fn fraction_units(digits: &[u8]) -> Option<u64> {
    if let Ok(eight) = <[u8; 8]>::try_from(digits) {
        return eight_digits(eight);
    }
    let mut value: u64 = 0;
    for &b in digits {
        let digit = b.wrapping_sub(b'0');
        if digit > 9 {
            return None;
        }
        value = value * 10 + u64::from(digit);
    }
    Some(value * POW10[SCALE_DIGITS - digits.len()])
}

/// Parses a Binance decimal string (`"25.35190000"`, `"-0.001"`, `"0"`) into 1e-8 units.
///
/// Exact, allocation-free, and strict: exponents, a leading `+`, a bare point or a missing digit on
/// either side of the point are errors, because Binance never sends them and a lenient parser
/// would hide a garbled frame. Trailing fractional zeros past the eighth digit are accepted.
#[inline]
pub fn parse_units(s: &[u8]) -> Result<i64, DecimalError> {
    let (negative, body) = match s.first() {
        None => return Err(DecimalError::Empty),
        Some(b'-') => (true, &s[1..]),
        Some(_) => (false, s),
    };
    // The integer part is short (a price has at most 6 or 7 digits): a plain loop beats any
    // set-up. Saturation keeps absurd lengths from wrapping; the range check catches them.
    let mut int_value: u64 = 0;
    let mut int_len = 0;
    for &b in body {
        let digit = b.wrapping_sub(b'0');
        if digit > 9 {
            break;
        }
        int_value = int_value.saturating_mul(10).saturating_add(u64::from(digit));
        int_len += 1;
    }
    if int_len == 0 {
        return Err(DecimalError::InvalidChar);
    }
    let frac_value = match &body[int_len..] {
        [] => 0,
        [b'.'] => return Err(DecimalError::InvalidChar),
        [b'.', frac @ ..] if frac.len() <= SCALE_DIGITS => {
            fraction_units(frac).ok_or(DecimalError::InvalidChar)?
        }
        [b'.', frac @ ..] => {
            let (kept, extra) = frac.split_at(SCALE_DIGITS);
            for &b in extra {
                match b {
                    b'0' => {}
                    b'1'..=b'9' => return Err(DecimalError::TooPrecise),
                    _ => return Err(DecimalError::InvalidChar),
                }
            }
            fraction_units(kept).ok_or(DecimalError::InvalidChar)?
        }
        _ => return Err(DecimalError::InvalidChar),
    };
    if int_value > MAX_INT_PART {
        return Err(DecimalError::OutOfRange);
    }
    // int_value <= MAX_INT_PART, so this cannot overflow u64; the i64 check catches the top sliver.
    let magnitude = int_value * SCALE as u64 + frac_value;
    let magnitude = i64::try_from(magnitude).map_err(|_| DecimalError::OutOfRange)?;
    Ok(if negative { -magnitude } else { magnitude })
}

/// A formatted decimal held on the stack: no allocation on any path.
#[derive(Clone, Copy)]
pub struct DecimalBuf {
    bytes: [u8; 32],
    len: u8,
}

impl DecimalBuf {
    pub fn as_str(&self) -> &str {
        // Only ASCII digits, '-' and '.' are ever written.
        core::str::from_utf8(&self.bytes[..self.len as usize]).expect("ascii")
    }
}

impl fmt::Display for DecimalBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq for DecimalBuf {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl fmt::Debug for DecimalBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Formats `units` with exactly `decimals` fractional digits (0..=8), refusing to drop a non-zero
/// digit. `decimals == 8` is Binance's canonical form ("25.35190000") and always succeeds.
pub fn format_units(units: i64, decimals: u32) -> Result<DecimalBuf, NotRepresentable> {
    let decimals = decimals.min(SCALE_DIGITS as u32) as usize;
    let magnitude = units.unsigned_abs();
    let int_part = magnitude / SCALE as u64;
    let frac_part = magnitude % SCALE as u64;
    let dropped = 10u64.pow((SCALE_DIGITS - decimals) as u32);
    if !frac_part.is_multiple_of(dropped) {
        return Err(NotRepresentable);
    }
    let mut buf = DecimalBuf { bytes: [0; 32], len: 0 };
    let mut push = |b: u8| {
        buf.bytes[buf.len as usize] = b;
        buf.len += 1;
    };
    if units < 0 {
        push(b'-');
    }
    let mut int_digits = [0u8; 20];
    let mut n = int_part;
    let mut count = 0;
    loop {
        int_digits[count] = b'0' + (n % 10) as u8;
        count += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for i in (0..count).rev() {
        push(int_digits[i]);
    }
    if decimals > 0 {
        push(b'.');
        let mut frac = frac_part / dropped;
        let mut frac_digits = [0u8; 8];
        for slot in frac_digits[..decimals].iter_mut().rev() {
            *slot = b'0' + (frac % 10) as u8;
            frac /= 10;
        }
        for &d in &frac_digits[..decimals] {
            push(d);
        }
    }
    Ok(buf)
}

/// The number of fractional digits a grid step needs: 0.001 → 3, 1 → 0, 0.5 → 1.
pub fn decimals_of_step(step_units: i64) -> u32 {
    let mut decimals = SCALE_DIGITS as u32;
    let mut rest = step_units.unsigned_abs();
    while decimals > 0 && rest.is_multiple_of(10) && rest != 0 {
        rest /= 10;
        decimals -= 1;
    }
    decimals
}

macro_rules! decimal_newtype {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        #[repr(transparent)]
        pub struct $name(i64);

        impl $name {
            pub const ZERO: Self = Self(0);

            /// From a raw count of 1e-8.
            #[inline(always)]
            pub const fn from_units(units: i64) -> Self {
                Self(units)
            }

            /// The raw count of 1e-8.
            #[inline(always)]
            pub const fn units(self) -> i64 {
                self.0
            }

            /// From a whole number (50_000 → 50000.00000000). Panics past the range: for
            /// constants and tests, never for exchange data.
            pub const fn from_int(whole: i64) -> Self {
                match whole.checked_mul(SCALE) {
                    Some(units) => Self(units),
                    None => panic!("decimal out of range"),
                }
            }

            /// Parses Binance's ASCII decimal bytes exactly; see [`parse_units`].
            #[inline]
            pub fn parse(s: &[u8]) -> Result<Self, DecimalError> {
                parse_units(s).map(Self)
            }

            /// Parses a decimal literal, panicking on error: for constants and tests only.
            pub fn lit(s: &str) -> Self {
                match Self::parse(s.as_bytes()) {
                    Ok(value) => value,
                    Err(e) => panic!("bad decimal literal {s:?}: {e}"),
                }
            }

            /// Exactly `decimals` fractional digits, or an error if that would drop a digit.
            pub fn format(self, decimals: u32) -> Result<DecimalBuf, NotRepresentable> {
                format_units(self.0, decimals)
            }

            #[inline(always)]
            pub fn is_zero(self) -> bool {
                self.0 == 0
            }

            #[inline(always)]
            pub fn is_positive(self) -> bool {
                self.0 > 0
            }

            #[inline(always)]
            pub fn abs(self) -> Self {
                Self(self.0.abs())
            }

            #[inline(always)]
            pub fn checked_add(self, other: Self) -> Option<Self> {
                self.0.checked_add(other.0).map(Self)
            }

            #[inline(always)]
            pub fn checked_sub(self, other: Self) -> Option<Self> {
                self.0.checked_sub(other.0).map(Self)
            }

            #[inline(always)]
            pub fn saturating_sub(self, other: Self) -> Self {
                Self(self.0.saturating_sub(other.0))
            }
        }

        /// Canonical 8-decimal form, as Binance writes it ("25.35190000").
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let buf = format_units(self.0, SCALE_DIGITS as u32).expect("8 decimals always fit");
                f.write_str(buf.as_str())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(self, f)
            }
        }
    };
}

decimal_newtype!(
    /// A price in quote asset per base asset.
    Price
);
decimal_newtype!(
    /// A base-asset quantity. Exchange position amounts may be negative (`pa`); the engine keeps
    /// positions as (side, positive quantity).
    Qty
);
decimal_newtype!(
    /// A quote-asset amount: balance, capital, notional.
    Amount
);
decimal_newtype!(
    /// A dimensionless ratio: 0.02 is 2%, held as 2_000_000 units. Safety percent, fees, risk.
    Ratio
);

impl Ratio {
    pub const ONE: Ratio = Ratio(SCALE);

    /// `percent` whole percent (2 → 0.02). For defaults and tests.
    pub const fn percent(percent: i64) -> Ratio {
        Ratio(percent * (SCALE / 100))
    }
}

/// `qty × price` in quote units of 1e-8, exact as an i128 fraction: the value is
/// `notional_units / SCALE` units. Callers compare or round it; nothing is truncated here.
#[inline(always)]
pub fn notional_scaled(qty: Qty, price: Price) -> i128 {
    i128::from(qty.units()) * i128::from(price.units())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<i64, DecimalError> {
        parse_units(s.as_bytes())
    }

    #[test]
    fn parses_binance_forms_exactly() {
        assert_eq!(parse("25.35190000"), Ok(2_535_190_000));
        assert_eq!(parse("-0.001"), Ok(-100_000));
        assert_eq!(parse("0"), Ok(0));
        assert_eq!(parse("0.00000"), Ok(0));
        assert_eq!(parse("0.00000001"), Ok(1));
        assert_eq!(parse("50000"), Ok(5_000_000_000_000));
        assert_eq!(parse("123456789.12345678"), Ok(12_345_678_912_345_678));
        assert_eq!(parse("92233720368.54775807"), Ok(i64::MAX));
        assert_eq!(parse("-92233720368.54775807"), Ok(-i64::MAX));
        assert_eq!(parse("1.000000000000"), Ok(SCALE));
        assert_eq!(parse("000012.5"), Ok(1_250_000_000));
    }

    #[test]
    fn refuses_what_binance_never_sends() {
        assert_eq!(parse(""), Err(DecimalError::Empty));
        assert_eq!(parse("1e-8"), Err(DecimalError::InvalidChar));
        assert_eq!(parse("+1"), Err(DecimalError::InvalidChar));
        assert_eq!(parse("-"), Err(DecimalError::InvalidChar));
        assert_eq!(parse("."), Err(DecimalError::InvalidChar));
        assert_eq!(parse("1."), Err(DecimalError::InvalidChar));
        assert_eq!(parse(".5"), Err(DecimalError::InvalidChar));
        assert_eq!(parse("1.2.3"), Err(DecimalError::InvalidChar));
        assert_eq!(parse("1 "), Err(DecimalError::InvalidChar));
        assert_eq!(parse("0x10"), Err(DecimalError::InvalidChar));
        assert_eq!(parse("--1"), Err(DecimalError::InvalidChar));
        assert_eq!(parse("0.000000001"), Err(DecimalError::TooPrecise));
        assert_eq!(parse("0.00000000a"), Err(DecimalError::InvalidChar));
        assert_eq!(parse("92233720368.54775808"), Err(DecimalError::OutOfRange));
        assert_eq!(parse("92233720369"), Err(DecimalError::OutOfRange));
        assert_eq!(parse("99999999999999999999999999"), Err(DecimalError::OutOfRange));
        // Bytes just outside '0'..='9' on either side must not pass the SWAR digit check.
        assert_eq!(parse("1/"), Err(DecimalError::InvalidChar));
        assert_eq!(parse("1:"), Err(DecimalError::InvalidChar));
        assert_eq!(parse("0.1/"), Err(DecimalError::InvalidChar));
        assert_eq!(parse("0.1:"), Err(DecimalError::InvalidChar));
    }

    #[test]
    fn formats_to_exchange_precision_without_rounding() {
        let p = Price::lit("49000");
        assert_eq!(p.format(1).unwrap().as_str(), "49000.0");
        assert_eq!(p.format(0).unwrap().as_str(), "49000");
        assert_eq!(p.to_string(), "49000.00000000");
        assert_eq!(Qty::lit("-0.001").format(3).unwrap().as_str(), "-0.001");
        assert_eq!(Qty::lit("0.015").format(2), Err(NotRepresentable));
        assert_eq!(Price::lit("0.5").format(0), Err(NotRepresentable));
        assert_eq!(Price::from_units(i64::MIN + 1).to_string(), "-92233720368.54775807");
    }

    #[test]
    fn decimals_of_step_follows_the_grid() {
        assert_eq!(decimals_of_step(Price::lit("0.10").units()), 1);
        assert_eq!(decimals_of_step(Price::lit("0.01").units()), 2);
        assert_eq!(decimals_of_step(Qty::lit("0.001").units()), 3);
        assert_eq!(decimals_of_step(Qty::lit("1").units()), 0);
        assert_eq!(decimals_of_step(Qty::lit("10").units()), 0);
        assert_eq!(decimals_of_step(Qty::lit("0.00000001").units()), 8);
        assert_eq!(decimals_of_step(Qty::lit("0.5").units()), 1);
    }
}
