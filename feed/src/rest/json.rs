//! Typed field access over simd-json's borrowed DOM for REST bodies.
//!
//! Binance drifts between types for the same field (`"5"` vs `5`, `"false"` vs `false`, ids as
//! numbers or strings), so every getter accepts each spelling that carries the value exactly and
//! refuses the rest with a named field. Money never passes through a float: a decimal sent as a
//! JSON float is refused (see [`units_of`]).

use core::fmt;

use engine::money::{DecimalError, SCALE, parse_units};
use engine::{Amount, ClientOrderId, Price, Qty, Symbol};
use simd_json::BorrowedValue as Value;
use simd_json::borrowed::Object;
use simd_json::prelude::{TypedScalarValue, ValueAsArray, ValueAsObject, ValueAsScalar};

/// Why a REST body could not be read. Names the field, never echoes its value: bodies can carry
/// listen keys and tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyError {
    /// Not JSON at all: empty, truncated, an HTML error page from a proxy.
    NotJson,
    /// JSON of the wrong shape where `.0` was expected (an array for an object, say).
    Shape(&'static str),
    Missing(&'static str),
    WrongType(&'static str),
    Decimal(&'static str, DecimalError),
    /// The right type but a value robsond cannot accept: an unknown enum string, a symbol or
    /// client order id that does not fit, a negative size, an overflow.
    BadValue(&'static str),
}

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BodyError::NotJson => f.write_str("body is not JSON"),
            BodyError::Shape(what) => write!(f, "unexpected JSON shape for {what}"),
            BodyError::Missing(field) => write!(f, "missing field {field}"),
            BodyError::WrongType(field) => write!(f, "field {field} has an unexpected type"),
            BodyError::Decimal(field, e) => write!(f, "field {field}: {e}"),
            BodyError::BadValue(field) => write!(f, "field {field} has an unacceptable value"),
        }
    }
}

impl std::error::Error for BodyError {}

/// Parses a body in place (simd-json rewrites string escapes inside the buffer).
pub(crate) fn parse(body: &mut [u8]) -> Result<Value<'_>, BodyError> {
    simd_json::to_borrowed_value(body).map_err(|_| BodyError::NotJson)
}

pub(crate) fn array<'a, 'v>(
    value: &'a Value<'v>,
    what: &'static str,
) -> Result<&'a [Value<'v>], BodyError> {
    value.as_array().map(Vec::as_slice).ok_or(BodyError::Shape(what))
}

/// A decimal in 1e-8 units from a string or an integer. A JSON float is refused: simd-json has
/// already turned it into an f64, and money never passes through a float (ADR 0001), even where
/// the shortest round-trip would usually recover the decimal.
pub(crate) fn units_of(value: &Value<'_>, field: &'static str) -> Result<i64, BodyError> {
    if let Some(s) = value.as_str() {
        return parse_units(s.as_bytes()).map_err(|e| BodyError::Decimal(field, e));
    }
    if let Some(i) = value.as_i64() {
        return i.checked_mul(SCALE).ok_or(BodyError::Decimal(field, DecimalError::OutOfRange));
    }
    if value.as_u64().is_some() {
        // A u64 that is not an i64 is beyond any representable decimal.
        return Err(BodyError::Decimal(field, DecimalError::OutOfRange));
    }
    Err(BodyError::WrongType(field))
}

/// Digits only: `str::parse::<u64>` would also take a leading `+`, which Binance never sends.
fn u64_from_str(s: &str, field: &'static str) -> Result<u64, BodyError> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(BodyError::BadValue(field));
    }
    s.parse().map_err(|_| BodyError::BadValue(field))
}

pub(crate) fn u64_of(value: &Value<'_>, field: &'static str) -> Result<u64, BodyError> {
    if let Some(u) = value.as_u64() {
        return Ok(u);
    }
    if value.as_i64().is_some() {
        return Err(BodyError::BadValue(field));
    }
    match value.as_str() {
        Some(s) => u64_from_str(s, field),
        None => Err(BodyError::WrongType(field)),
    }
}

pub(crate) fn i64_of(value: &Value<'_>, field: &'static str) -> Result<i64, BodyError> {
    if let Some(i) = value.as_i64() {
        return Ok(i);
    }
    if value.as_u64().is_some() {
        return Err(BodyError::BadValue(field));
    }
    match value.as_str() {
        Some(s) => {
            let (negative, digits) = match s.strip_prefix('-') {
                Some(rest) => (true, rest),
                None => (false, s),
            };
            let magnitude = u64_from_str(digits, field)?;
            let magnitude = i64::try_from(magnitude).map_err(|_| BodyError::BadValue(field))?;
            Ok(if negative { -magnitude } else { magnitude })
        }
        None => Err(BodyError::WrongType(field)),
    }
}

/// The fields of one JSON object, each read with its name so an error says which one failed.
#[derive(Clone, Copy)]
pub(crate) struct Fields<'a, 'v> {
    object: &'a Object<'v>,
}

impl<'a, 'v> Fields<'a, 'v> {
    pub(crate) fn of(value: &'a Value<'v>, what: &'static str) -> Result<Self, BodyError> {
        value.as_object().map(|object| Fields { object }).ok_or(BodyError::Shape(what))
    }

    /// A present, non-null field. Binance writes `null` for "not applicable" (`autoAssetExchange`,
    /// a commission asset), which every caller treats like absence.
    pub(crate) fn get(&self, key: &str) -> Option<&'a Value<'v>> {
        self.object.get(key).filter(|v| !v.is_null())
    }

    fn need(&self, key: &'static str) -> Result<&'a Value<'v>, BodyError> {
        self.get(key).ok_or(BodyError::Missing(key))
    }

    pub(crate) fn has(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    pub(crate) fn str(&self, key: &'static str) -> Result<&'a str, BodyError> {
        self.need(key)?.as_str().ok_or(BodyError::WrongType(key))
    }

    pub(crate) fn opt_str(&self, key: &'static str) -> Result<Option<&'a str>, BodyError> {
        self.get(key).map(|v| v.as_str().ok_or(BodyError::WrongType(key))).transpose()
    }

    pub(crate) fn u64(&self, key: &'static str) -> Result<u64, BodyError> {
        u64_of(self.need(key)?, key)
    }

    pub(crate) fn opt_u64(&self, key: &'static str) -> Result<Option<u64>, BodyError> {
        self.get(key).map(|v| u64_of(v, key)).transpose()
    }

    pub(crate) fn i64(&self, key: &'static str) -> Result<i64, BodyError> {
        i64_of(self.need(key)?, key)
    }

    /// `true`/`false` or their string spellings (`"isAutoAddMargin": "false"`).
    pub(crate) fn opt_bool(&self, key: &'static str) -> Result<Option<bool>, BodyError> {
        let Some(value) = self.get(key) else { return Ok(None) };
        if let Some(b) = value.as_bool() {
            return Ok(Some(b));
        }
        match value.as_str() {
            Some(s) if s.eq_ignore_ascii_case("true") => Ok(Some(true)),
            Some(s) if s.eq_ignore_ascii_case("false") => Ok(Some(false)),
            Some(_) => Err(BodyError::BadValue(key)),
            None => Err(BodyError::WrongType(key)),
        }
    }

    pub(crate) fn units(&self, key: &'static str) -> Result<i64, BodyError> {
        units_of(self.need(key)?, key)
    }

    pub(crate) fn opt_units(&self, key: &'static str) -> Result<Option<i64>, BodyError> {
        self.get(key).map(|v| units_of(v, key)).transpose()
    }

    pub(crate) fn qty(&self, key: &'static str) -> Result<Qty, BodyError> {
        self.units(key).map(Qty::from_units)
    }

    pub(crate) fn price(&self, key: &'static str) -> Result<Price, BodyError> {
        self.units(key).map(Price::from_units)
    }

    pub(crate) fn amount(&self, key: &'static str) -> Result<Amount, BodyError> {
        self.units(key).map(Amount::from_units)
    }

    pub(crate) fn symbol(&self, key: &'static str) -> Result<Symbol, BodyError> {
        Symbol::new(self.str(key)?.as_bytes()).map_err(|_| BodyError::BadValue(key))
    }

    pub(crate) fn client_order_id(&self, key: &'static str) -> Result<ClientOrderId, BodyError> {
        ClientOrderId::from_wire(self.str(key)?.as_bytes()).ok_or(BodyError::BadValue(key))
    }

    pub(crate) fn array(&self, key: &'static str) -> Result<&'a [Value<'v>], BodyError> {
        array(self.need(key)?, key)
    }

    pub(crate) fn opt_array(
        &self,
        key: &'static str,
    ) -> Result<Option<&'a [Value<'v>]>, BodyError> {
        self.get(key).map(|v| array(v, key)).transpose()
    }

    pub(crate) fn object(&self, key: &'static str) -> Result<Fields<'a, 'v>, BodyError> {
        Fields::of(self.need(key)?, key)
    }
}

/// A name from the body for a report about something skipped, cut short so that a hostile or
/// broken body cannot make a log line arbitrarily long.
pub(crate) fn short_name(value: Option<&str>) -> String {
    const MAX: usize = 32;
    let name = value.unwrap_or("?");
    match name.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &name[..cut]),
        None => name.to_owned(),
    }
}
