//! Property tests for `money` and `filters` against independent references: `rust_decimal` for
//! decimal parsing, formatting and products, and exact `i128` searches written here for grid
//! rounding. Nothing in this file reuses the engine's own arithmetic to compute an expected value.
//!
//! Case count is proptest's default (256) unless `PROPTEST_CASES` says otherwise.

use std::cmp::Ordering;

use engine::filters::{Grid, RoundMode, SymbolRules};
use engine::money::{
    Amount, DecimalError, NotRepresentable, Price, Qty, Ratio, SCALE, format_units, parse_units,
};
use engine::types::Side;
use proptest::prelude::*;
use rust_decimal::Decimal;

const MODES: [RoundMode; 3] = [RoundMode::Down, RoundMode::Up, RoundMode::Nearest];

// ---------------------------------------------------------------------------------------------
// Independent references
// ---------------------------------------------------------------------------------------------

/// A decimal's value in 1e-8 units, from its mantissa and scale alone; None when it is not a
/// whole number of 1e-8.
fn units_of(d: Decimal) -> Option<i128> {
    let (mantissa, scale) = (d.mantissa(), d.scale());
    if scale <= 8 {
        Some(mantissa * 10i128.pow(8 - scale))
    } else {
        let div = 10i128.pow(scale - 8);
        (mantissa % div == 0).then_some(mantissa / div)
    }
}

/// `units / 1e8` written out with 8 decimals by plain integer division on the magnitude.
fn reference_string(units: i64) -> String {
    let magnitude = i128::from(units).unsigned_abs();
    let sign = if units < 0 { "-" } else { "" };
    format!("{sign}{}.{:08}", magnitude / 100_000_000, magnitude % 100_000_000)
}

/// Does `s` match `-?[0-9]+(\.[0-9]+)?`, the only grammar `parse_units` may accept?
fn is_plain_decimal(s: &[u8]) -> bool {
    let body = s.strip_prefix(b"-").unwrap_or(s);
    let mut parts = body.splitn(2, |&b| b == b'.');
    let int = parts.next().unwrap_or_default();
    let digits = |p: &[u8]| !p.is_empty() && p.iter().all(u8::is_ascii_digit);
    digits(int) && parts.next().is_none_or(digits)
}

/// What a plain decimal (see [`is_plain_decimal`]) means, computed digit by digit in i128 after
/// stripping the leading integer zeros and trailing fractional zeros: Ok(units), or the reasons it
/// cannot be held (beyond 8 significant fractional digits, beyond ±(2^63 − 1) units).
struct PlainReference {
    too_precise: bool,
    out_of_range: bool,
    units: i128,
}

fn plain_reference(s: &[u8]) -> PlainReference {
    let negative = s.first() == Some(&b'-');
    let body = if negative { &s[1..] } else { s };
    let (int, frac) = match body.iter().position(|&b| b == b'.') {
        Some(dot) => (&body[..dot], &body[dot + 1..]),
        None => (body, &b""[..]),
    };
    let int = &int[int.iter().position(|&b| b != b'0').unwrap_or(int.len())..];
    let frac = &frac[..frac.iter().rposition(|&b| b != b'0').map_or(0, |i| i + 1)];
    let too_precise = frac.len() > 8;
    // 20 significant integer digits already exceed i64::MAX / 1e8 by far; cap to keep i128 safe.
    let out_of_range_by_length = int.len() > 20;
    let mut units: i128 = 0;
    if !out_of_range_by_length {
        for &b in int {
            units = units * 10 + i128::from(b - b'0');
        }
        units *= 100_000_000;
        for (i, &b) in frac.iter().take(8).enumerate() {
            units += i128::from(b - b'0') * 10i128.pow(7 - i as u32);
        }
    }
    let out_of_range = out_of_range_by_length || units > i128::from(i64::MAX);
    PlainReference { too_precise, out_of_range, units: if negative { -units } else { units } }
}

/// The largest k with `origin + k·step ≤ num / den`, found by an exponential-then-binary search
/// that only ever compares `(origin + k·step)·den` with `num` (no division involved), started
/// from a floating-point guess.
fn floor_index(origin: i128, step: i128, num: i128, den: i128) -> i128 {
    assert!(step > 0 && den > 0);
    let at_or_below = |k: i128| (origin + k * step) * den <= num;
    let guess = ((num as f64 / den as f64 - origin as f64) / step as f64).floor();
    let guess = guess.clamp(-1e30, 1e30) as i128;
    // Find lo with at_or_below(lo) and hi with !at_or_below(hi).
    let (mut lo, mut hi);
    if at_or_below(guess) {
        lo = guess;
        let mut jump = 1;
        hi = guess + jump;
        while at_or_below(hi) {
            lo = hi;
            jump *= 2;
            hi = lo + jump;
        }
    } else {
        hi = guess;
        let mut jump = 1;
        lo = guess - jump;
        while !at_or_below(lo) {
            hi = lo;
            jump *= 2;
            lo = hi - jump;
        }
    }
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if at_or_below(mid) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    lo
}

/// (down, up, nearest) grid points around `num / den` by the search above.
fn reference_rounding(origin: i64, step: i64, num: i128, den: i128) -> (i128, i128, i128) {
    let (origin, step) = (i128::from(origin), i128::from(step));
    let down = origin + floor_index(origin, step, num, den) * step;
    let up = if down * den == num { down } else { down + step };
    // Nearest: up when the value is at or past the midpoint (ties go up).
    let nearest = if 2 * num >= (down + up) * den { up } else { down };
    (down, up, nearest)
}

/// The same three points for an integer value, from rust_decimal's exact integer remainder.
fn reference_rounding_decimal(origin: i64, step: i64, value: i64) -> (i128, i128, i128) {
    let offset = Decimal::from(value) - Decimal::from(origin);
    let step_d = Decimal::from(step);
    let mut rem = offset % step_d; // sign of the dividend, like Rust's `%`
    if rem.is_sign_negative() && !rem.is_zero() {
        rem += step_d;
    }
    let down = Decimal::from(value) - rem;
    let up = if rem.is_zero() { down } else { down + step_d };
    let nearest = if rem * Decimal::TWO >= step_d { up } else { down };
    let whole = |d: Decimal| units_of(d).expect("integer") / 100_000_000;
    (whole(down), whole(up), whole(nearest))
}

// ---------------------------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------------------------

/// i64 units across the whole range, with the edges and short values well represented.
fn any_units() -> impl Strategy<Value = i64> {
    prop_oneof![
        3 => any::<i64>(),
        3 => -1_000_000_000_000i64..=1_000_000_000_000,
        1 => prop::sample::select(vec![
            0,
            1,
            -1,
            SCALE - 1,
            SCALE,
            -SCALE,
            SCALE + 1,
            99_999_999,
            i64::MAX,
            -i64::MAX,
            i64::MAX - 1,
            i64::MIN + 2,
        ]),
    ]
}

/// Units with trailing zeros: `base × 10^z`, so every formatting precision is exercised.
fn units_with_trailing_zeros() -> impl Strategy<Value = i64> {
    prop_oneof![
        any_units(),
        (-9_999_999_999i64..=9_999_999_999, 0u32..=8).prop_map(|(b, z)| b * 10i64.pow(z)),
    ]
}

fn decimal_string() -> impl Strategy<Value = String> {
    proptest::string::string_regex(r"-?[0-9]{1,11}(\.[0-9]{1,8})?").expect("regex")
}

/// A second string: independent, or the first one spelled differently (extra zeros), or one
/// unit of 1e-8 away, so that `Equal` and near-equal comparisons really happen.
fn decimal_pair() -> impl Strategy<Value = (String, String)> {
    (decimal_string(), decimal_string(), 0u8..4, 0usize..4).prop_map(|(a, b, how, n)| {
        let zeros = "0".repeat(n + 1);
        let second = match how {
            0 => b,
            1 if a.contains('.') => format!("{a}{zeros}"),
            1 => format!("{a}.{zeros}"),
            2 => match a.strip_prefix('-') {
                Some(rest) => format!("-{zeros}{rest}"),
                None => format!("{zeros}{a}"),
            },
            _ => {
                let units = i128::from(parse_units(a.as_bytes()).unwrap_or(0)) + 1;
                let magnitude = units.unsigned_abs();
                let sign = if units < 0 { "-" } else { "" };
                format!("{sign}{}.{:08}", magnitude / 100_000_000, magnitude % 100_000_000)
            }
        };
        (a, second)
    })
}

/// Byte strings that are mostly garbage, mostly near-decimals, or plain decimals with odd lengths.
fn byte_strings() -> impl Strategy<Value = Vec<u8>> {
    let alphabet: Vec<u8> = b"0123456789-.+eE /:_\x00\xff".to_vec();
    // Known traps: u64 wrap-around of a long integer part, the exact range edges, and the bytes
    // either side of '0'..='9' that a SWAR digit check could let through.
    let traps: Vec<Vec<u8>> = [
        &b"18446744073709551616"[..],
        b"-18446744073709551617",
        b"18446744073709551616.5",
        b"36893488147419103232",
        b"000000000000000000000000000092233720368.54775807",
        b"92233720368.54775807",
        b"-92233720368.54775807",
        b"92233720368.54775808",
        b"92233720369",
        b"0.000000010",
        b"0.000000001",
        b"1.00000000000000000000000000001",
        b"1:",
        b"1/",
        b"0.1:",
        b"0.1/",
        b"12345678:",
        b"1234567:.5",
        b"0.1234567:",
        b"1.",
        b".5",
        b"-",
        b"-.",
        b"-1.",
    ]
    .iter()
    .map(|t| t.to_vec())
    .collect();
    // A plain decimal with one byte overwritten or inserted: almost valid, the hardest case.
    let corrupted = (
        proptest::string::string_regex(r"-?[0-9]{1,12}(\.[0-9]{1,10})?").expect("regex"),
        any::<prop::sample::Index>(),
        prop_oneof![any::<u8>(), prop::sample::select(b"/:.-+ e".to_vec())],
        any::<bool>(),
    )
        .prop_map(|(s, at, byte, insert)| {
            let mut bytes = s.into_bytes();
            let i = at.index(bytes.len() + usize::from(insert));
            if insert {
                bytes.insert(i, byte);
            } else {
                bytes[i] = byte;
            }
            bytes
        });
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..40),
        prop::collection::vec(prop::sample::select(alphabet), 0..30),
        prop::sample::select(traps),
        corrupted,
        proptest::string::string_regex(r"-?[0-9]{0,3}\.?[0-9]{0,3}")
            .expect("regex")
            .prop_map(String::into_bytes),
        proptest::string::string_regex(r"-?0{0,12}[0-9]{0,14}(\.[0-9]{0,14}0{0,6})?")
            .expect("regex")
            .prop_map(String::into_bytes),
        proptest::string::string_regex(r"-?[0-9]{1,30}\.[0-9]{1,30}")
            .expect("regex")
            .prop_map(String::into_bytes),
    ]
}

fn grid_step() -> impl Strategy<Value = i64> {
    prop_oneof![
        1i64..=1_000_000_000_000,
        1i64..=1_000,
        prop::sample::select(vec![
            1,
            2,
            5,
            10,
            10_000,
            1_000_000,
            10_000_000,
            50_000_000,
            100_000_000,
            200_000_000
        ]),
    ]
}

fn tick() -> impl Strategy<Value = i64> {
    // 0.00000001, 0.0001, 0.01, 0.1, 1, 0.5, plus 0.005 and 10 for odd grids.
    prop::sample::select(vec![
        1,
        10_000,
        1_000_000,
        10_000_000,
        100_000_000,
        50_000_000,
        500_000,
        1_000_000_000,
    ])
}

// ---------------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------------

proptest! {
    /// Display is the 8-decimal canonical form, equal to two independent references, and parses
    /// back to the same units everywhere in ±(2^63 − 1). i64::MIN formats but is out of range.
    #[test]
    fn display_is_canonical_and_round_trips(units in prop_oneof![any_units(), Just(i64::MIN)]) {
        let shown = Price::from_units(units).to_string();
        prop_assert_eq!(&shown, &reference_string(units));
        prop_assert_eq!(&shown, &Decimal::new(units, 8).to_string());
        prop_assert_eq!(&Qty::from_units(units).to_string(), &shown);
        prop_assert_eq!(&Amount::from_units(units).to_string(), &shown);
        prop_assert_eq!(&Ratio::from_units(units).to_string(), &shown);
        prop_assert_eq!(&format!("{:?}", Price::from_units(units)), &shown);
        prop_assert_eq!(format_units(units, 8).map(|b| b.as_str().to_owned()), Ok(shown.clone()));
        if units == i64::MIN {
            prop_assert_eq!(parse_units(shown.as_bytes()), Err(DecimalError::OutOfRange));
        } else {
            prop_assert_eq!(parse_units(shown.as_bytes()), Ok(units));
            prop_assert_eq!(Price::parse(shown.as_bytes()), Ok(Price::from_units(units)));
        }
    }

    /// Generated decimals parse to rust_decimal's value (or OutOfRange exactly when beyond the
    /// range), and `cmp` on parsed prices agrees with rust_decimal's ordering.
    #[test]
    fn parse_and_cmp_agree_with_rust_decimal((a, b) in decimal_pair()) {
        let limit = Decimal::new(i64::MAX, 8);
        let mut parsed = Vec::new();
        for s in [&a, &b] {
            let reference = Decimal::from_str_exact(s).expect("rust_decimal parses the regex");
            let got = parse_units(s.as_bytes());
            if reference.abs() > limit {
                prop_assert_eq!(got, Err(DecimalError::OutOfRange), "{}", s);
                parsed.push(None);
            } else {
                let units = got.map_err(|e| TestCaseError::fail(format!("{s}: {e}")))?;
                prop_assert_eq!(Decimal::new(units, 8), reference, "{}", s);
                prop_assert_eq!(Some(i128::from(units)), units_of(reference), "{}", s);
                parsed.push(Some((Price::from_units(units), reference)));
            }
        }
        if let [Some((pa, ra)), Some((pb, rb))] = parsed[..] {
            prop_assert_eq!(pa.cmp(&pb), ra.cmp(&rb), "{} vs {}", a, b);
            prop_assert_eq!(pa == pb, ra == rb);
            prop_assert_eq!(pa.units().cmp(&pb.units()), ra.cmp(&rb));
        }
    }

    /// `format(d)` succeeds iff no non-zero digit sits past the d-th decimal, writes exactly d
    /// decimals (rust_decimal's rescale of the same value), and round-trips.
    #[test]
    fn format_refuses_to_drop_digits_and_round_trips(units in units_with_trailing_zeros(), d in 0u32..=8) {
        let exact = Decimal::new(units, 8);
        let needed = exact.normalize().scale(); // significant fractional digits
        let got = Price::from_units(units).format(d);
        if needed > d {
            prop_assert_eq!(got, Err(NotRepresentable), "{} at {}", exact, d);
        } else {
            let got = got.map_err(|_| TestCaseError::fail(format!("{exact} at {d} refused")))?;
            let mut reference = exact;
            reference.rescale(d);
            prop_assert_eq!(got.as_str(), reference.to_string());
            let decimals = got.as_str().split_once('.').map_or(0, |(_, f)| f.len());
            prop_assert_eq!(decimals, d as usize);
            if units != i64::MIN {
                prop_assert_eq!(parse_units(got.as_str().as_bytes()), Ok(units));
            }
        }
    }

    /// Arbitrary bytes never panic; anything accepted is a plain decimal whose value matches an
    /// independent digit-by-digit reference and rust_decimal; every in-range, ≤ 8-significant-
    /// decimals plain decimal is accepted.
    #[test]
    fn parse_never_panics_and_accepts_exactly_plain_decimals(bytes in byte_strings()) {
        let got = parse_units(&bytes);
        if !is_plain_decimal(&bytes) {
            prop_assert!(got.is_err(), "{:?} accepted as {:?}", String::from_utf8_lossy(&bytes), got);
            if bytes.is_empty() {
                prop_assert_eq!(got, Err(DecimalError::Empty));
            }
            return Ok(());
        }
        let text = std::str::from_utf8(&bytes).expect("ascii");
        let reference = plain_reference(&bytes);
        match (reference.too_precise, reference.out_of_range) {
            (false, false) => {
                prop_assert_eq!(got.map(i128::from), Ok(reference.units), "{}", text);
                // rust_decimal holds at most 28 digits; compare whenever it can hold the string.
                if bytes.iter().filter(|b| b.is_ascii_digit()).count() <= 28 {
                    let rd = Decimal::from_str_exact(text).expect("rust_decimal parses");
                    prop_assert_eq!(Decimal::new(got.expect("ok"), 8), rd, "{}", text);
                }
            }
            (true, false) => prop_assert_eq!(got, Err(DecimalError::TooPrecise), "{}", text),
            (false, true) => prop_assert_eq!(got, Err(DecimalError::OutOfRange), "{}", text),
            (true, true) => prop_assert!(
                matches!(got, Err(DecimalError::TooPrecise | DecimalError::OutOfRange)),
                "{}: {:?}", text, got
            ),
        }
    }

    /// `Grid::round` against rust_decimal's exact integer remainder and the i128 search.
    #[test]
    fn grid_round_matches_references(
        origin in any::<i64>(),
        step in grid_step(),
        value in -4_000_000_000_000_000_000i64..=4_000_000_000_000_000_000,
    ) {
        let grid = Grid::new(origin, step);
        prop_assert_eq!(grid.step(), step);
        let (down, up, nearest) = reference_rounding_decimal(origin, step, value);
        prop_assert_eq!(
            (down, up, nearest),
            reference_rounding(origin, step, i128::from(value), 1),
            "the two references disagree"
        );
        let got = MODES.map(|m| i128::from(grid.round(value, m)));
        prop_assert_eq!(got, [down, up, nearest], "origin {} step {} value {}", origin, step, value);
        for g in got {
            prop_assert!(grid.contains(g as i64));
        }
        prop_assert_eq!(grid.contains(value), down == i128::from(value));
        // The defining properties, stated directly.
        let v = i128::from(value);
        prop_assert!(down <= v && v <= up);
        prop_assert!(up - down == 0 || up - down == i128::from(step));
        prop_assert!(2 * (nearest - v).abs() <= i128::from(step));
    }

    /// A step of zero or less is "no grid": every 1e-8 is on it and rounding is the identity.
    #[test]
    fn disabled_grid_is_identity(origin in any::<i64>(), step in i64::MIN..=0, value in any::<i64>()) {
        let grid = Grid::new(origin, step);
        prop_assert!(grid.contains(value));
        for m in MODES {
            prop_assert_eq!(grid.round(value, m), value.max(i64::MIN + 1));
        }
    }

    /// `Grid::round_ratio` on exact rationals: random num/den, and values built as a grid point
    /// plus a/b of a step (exact hits, exact halves, near-halves), against the i128 search.
    #[test]
    fn grid_round_ratio_matches_exact_search(
        origin in any::<i64>(),
        step in grid_step(),
        target in -1_000_000_000_000_000_000i64..=1_000_000_000_000_000_000,
        den in prop_oneof![1i128..=1_000, 1i128..=1_000_000_000_000, 1i128..=1_000_000_000_000_000_000],
        rem_seed in any::<u64>(),
        built in any::<bool>(),
        (a, b) in prop_oneof![
            Just((1i128, 2i128)),
            Just((0, 1)),
            Just((1, 1)),
            (2i128..=1_000_000).prop_flat_map(|b| (0..=b, Just(b))),
            (1i128..=1_000_000).prop_map(|h| (h - 1, 2 * h)),
            (1i128..=1_000_000).prop_map(|h| (h + 1, 2 * h)),
        ],
        c in 1i128..=1_000_000,
    ) {
        let (num, den) = if built {
            // A grid point near `target`, plus a/b of a step, scaled by c.
            let (o, s, t) = (i128::from(origin), i128::from(step), i128::from(target));
            let k = floor_index(o, s, t, 1);
            let point = o + k * s;
            (point * b * c + a * s * c, b * c)
        } else {
            let rem = i128::from(rem_seed) % (2 * den - 1) - (den - 1); // in (−den, den)
            (i128::from(target) * den + rem, den)
        };
        let grid = Grid::new(origin, step);
        let (down, up, nearest) = reference_rounding(origin, step, num, den);
        let got = MODES.map(|m| i128::from(grid.round_ratio(num, den, m)));
        prop_assert_eq!(got, [down, up, nearest], "origin {} step {} num {} den {}", origin, step, num, den);
        for g in got {
            prop_assert!(grid.contains(g as i64));
        }
        // Defining properties on the exact rational: down ≤ num/den ≤ up, one step apart at most,
        // nearest no farther than half a step (and at an exact half, the upper point).
        prop_assert!(down * den <= num && num <= up * den);
        prop_assert!(up - down == 0 || up - down == i128::from(step));
        let twice_distance = (2 * nearest * den - 2 * num).abs();
        prop_assert!(twice_distance <= i128::from(step) * den);
        if twice_distance == i128::from(step) * den {
            prop_assert_eq!(nearest, up, "a tie goes up");
        }
    }

    /// Safety stops: a long's stop never exceeds price × (1 − ratio) and is less than one tick
    /// below it; a short's never goes under price × (1 + ratio) and is less than one tick above.
    /// Always on the price grid anchored at minPrice. Exact products by rust_decimal.
    #[test]
    fn stop_at_distance_is_loose_by_less_than_a_tick(
        tick in tick(),
        min_price_kind in 0u8..3,
        min_price_seed in 0i64..=1_000_000_000,
        price in prop_oneof![
            1i64..=1_000_000_000_000_000,
            (1i64..=100_000_000, 1i64..=1_000).prop_map(|(k, t)| k * t * 10_000),
            prop::sample::select(vec![1, 10_000, 5_000_000_000_000, 10_137_000_000, 1_000_000_000_000_000]),
        ],
        ratio in prop_oneof![
            0i64..=50_000_000,
            prop::sample::select(vec![0, 1, 100_000, 1_000_000, 2_000_000, 50_000_000]),
        ],
    ) {
        let min_price = match min_price_kind {
            0 => 0,
            1 => tick,
            _ => min_price_seed,
        };
        let rules = SymbolRules {
            tick: Price::from_units(tick),
            min_price: Price::from_units(min_price),
            ..SymbolRules::UNRESTRICTED
        };
        let price_d = Decimal::new(price, 8);
        let ratio_d = Decimal::new(ratio, 8);
        let tick_d = Decimal::new(tick, 8);
        let on_grid = |stop: Price| (stop.units() - min_price).rem_euclid(tick) == 0;

        let long = rules.stop_at_distance(Side::Long, Price::from_units(price), Ratio::from_units(ratio));
        let exact_long = price_d * (Decimal::ONE - ratio_d);
        let long_d = Decimal::new(long.units(), 8);
        prop_assert!(long_d <= exact_long, "long {} above exact {}", long_d, exact_long);
        prop_assert!(exact_long - long_d < tick_d, "long {} a tick or more below {}", long_d, exact_long);
        prop_assert!(on_grid(long), "long {} off the grid", long_d);

        let short = rules.stop_at_distance(Side::Short, Price::from_units(price), Ratio::from_units(ratio));
        let exact_short = price_d * (Decimal::ONE + ratio_d);
        let short_d = Decimal::new(short.units(), 8);
        prop_assert!(short_d >= exact_short, "short {} below exact {}", short_d, exact_short);
        prop_assert!(short_d - exact_short < tick_d, "short {} a tick or more above {}", short_d, exact_short);
        prop_assert!(on_grid(short), "short {} off the grid", short_d);
    }
}

/// The DESIGN.md 2a counterexample, as a property's fixed point: binary fixed point gives
/// 48,999.9; here the stop is exactly 49,000.0 (and 51,000.0 for a short).
#[test]
fn fifty_thousand_times_point_nine_eight_is_exact() {
    let rules = SymbolRules { tick: Price::lit("0.1"), ..SymbolRules::UNRESTRICTED };
    let price = Price::lit("50000");
    let ratio = Ratio::lit("0.02");
    assert_eq!(rules.stop_at_distance(Side::Long, price, ratio), Price::lit("49000.0"));
    assert_eq!(rules.stop_at_distance(Side::Short, price, ratio), Price::lit("51000.0"));
}

#[test]
fn ordering_is_total_on_the_extremes() {
    let max = Price::from_units(i64::MAX);
    let min = Price::from_units(-i64::MAX);
    assert_eq!(min.cmp(&max), Ordering::Less);
    assert_eq!(Price::lit("-0"), Price::ZERO);
    assert_eq!(Price::lit("-0.00000000"), Price::lit("0"));
}
