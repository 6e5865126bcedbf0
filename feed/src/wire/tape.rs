//! A read-only cursor over simd-json's tape, and the typed readers every event parser shares.
//!
//! The tape is a flat `Vec<Node>`: an object or array node gives its element count and the number
//! of nodes below it, so skipping a value is one addition and finding a field is a linear scan of
//! short keys, which beats any hashing for Binance's ten-key objects. Every access is bounds-checked
//! with `get`, so even a tape that broke its own invariants would yield "missing field", not a
//! panic. Strings are borrowed from the frame itself (simd-json unescapes them in place).
//!
//! Each event parser scans an object once, dropping the values it wants into slots by key. A key
//! repeated in one object (JSON leaves its meaning open; Binance never does it) is read at its
//! first occurrence, everywhere: that is what lets a scan stop once it has what it needs.

use engine::money::{DecimalError, SCALE, parse_units};
use engine::types::Symbol;
use simd_json::{Node, StaticNode};

use super::error::{ErrorKind, FrameError};

/// One value on the tape.
#[derive(Clone, Copy)]
pub(crate) struct Val<'t, 'a> {
    nodes: &'t [Node<'a>],
    at: usize,
}

impl<'t, 'a> Val<'t, 'a> {
    pub(crate) fn root(nodes: &'t [Node<'a>]) -> Self {
        Val { nodes, at: 0 }
    }

    #[inline(always)]
    fn node(self) -> Option<Node<'a>> {
        self.nodes.get(self.at).copied()
    }

    /// How many tape nodes this value spans, itself included.
    #[inline(always)]
    fn width(self) -> usize {
        match self.node() {
            Some(Node::Object { count, .. } | Node::Array { count, .. }) => count + 1,
            _ => 1,
        }
    }

    #[inline(always)]
    pub(crate) fn object(self) -> Option<Obj<'t, 'a>> {
        match self.node()? {
            Node::Object { len, .. } => Some(Obj { nodes: self.nodes, first: self.at + 1, len }),
            _ => None,
        }
    }

    #[inline(always)]
    pub(crate) fn array(self) -> Option<Arr<'t, 'a>> {
        match self.node()? {
            Node::Array { len, .. } => Some(Arr { nodes: self.nodes, first: self.at + 1, len }),
            _ => None,
        }
    }

    #[inline(always)]
    pub(crate) fn str(self) -> Option<&'a [u8]> {
        match self.node()? {
            Node::String(s) => Some(s.as_bytes()),
            _ => None,
        }
    }

    #[inline(always)]
    fn scalar(self) -> Option<StaticNode> {
        match self.node()? {
            Node::Static(s) => Some(s),
            _ => None,
        }
    }

    pub(crate) fn is_null(self) -> bool {
        matches!(self.scalar(), Some(StaticNode::Null))
    }
}

/// An object on the tape: iterate its (key, value) pairs in wire order.
#[derive(Clone, Copy)]
pub(crate) struct Obj<'t, 'a> {
    nodes: &'t [Node<'a>],
    first: usize,
    len: usize,
}

impl<'t, 'a> Obj<'t, 'a> {
    #[inline(always)]
    pub(crate) fn iter(self) -> ObjIter<'t, 'a> {
        ObjIter { nodes: self.nodes, next: self.first, left: self.len }
    }

    /// The value of `key`: the first one if it is repeated (JSON leaves that open, Binance never
    /// does it, and every event parser here reads the first occurrence too).
    pub(crate) fn get(self, key: &[u8]) -> Option<Val<'t, 'a>> {
        self.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// The first key, when it is `e`: Binance writes the event type first, so the dispatcher
    /// can skip a scan of the whole object.
    #[inline(always)]
    pub(crate) fn first(self) -> Option<(&'a [u8], Val<'t, 'a>)> {
        self.iter().next()
    }
}

pub(crate) struct ObjIter<'t, 'a> {
    nodes: &'t [Node<'a>],
    next: usize,
    left: usize,
}

impl<'t, 'a> Iterator for ObjIter<'t, 'a> {
    type Item = (&'a [u8], Val<'t, 'a>);

    #[inline(always)]
    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let Some(Node::String(key)) = self.nodes.get(self.next).copied() else {
            self.left = 0;
            return None;
        };
        let value = Val { nodes: self.nodes, at: self.next + 1 };
        self.next = value.at + value.width();
        Some((key.as_bytes(), value))
    }
}

/// An array on the tape.
#[derive(Clone, Copy)]
pub(crate) struct Arr<'t, 'a> {
    nodes: &'t [Node<'a>],
    first: usize,
    len: usize,
}

impl<'t, 'a> Arr<'t, 'a> {
    pub(crate) fn iter(self) -> ArrIter<'t, 'a> {
        ArrIter { nodes: self.nodes, next: self.first, left: self.len }
    }
}

pub(crate) struct ArrIter<'t, 'a> {
    nodes: &'t [Node<'a>],
    next: usize,
    left: usize,
}

impl<'t, 'a> Iterator for ArrIter<'t, 'a> {
    type Item = Val<'t, 'a>;

    #[inline(always)]
    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 || self.next >= self.nodes.len() {
            self.left = 0;
            return None;
        }
        self.left -= 1;
        let value = Val { nodes: self.nodes, at: self.next };
        self.next += value.width();
        Some(value)
    }
}

// ---- typed readers: each names the field it reads, for the error ----

type Res<T> = Result<T, FrameError>;

#[inline(always)]
pub(crate) fn need<'t, 'a>(v: Option<Val<'t, 'a>>, field: &'static str) -> Res<Val<'t, 'a>> {
    v.ok_or_else(|| FrameError::new(ErrorKind::MissingField, field))
}

#[cold]
fn err<T>(kind: ErrorKind, field: &'static str) -> Res<T> {
    Err(FrameError::new(kind, field))
}

pub(crate) fn object<'t, 'a>(v: Option<Val<'t, 'a>>, field: &'static str) -> Res<Obj<'t, 'a>> {
    match need(v, field)?.object() {
        Some(o) => Ok(o),
        None => err(ErrorKind::WrongType, field),
    }
}

pub(crate) fn array<'t, 'a>(v: Option<Val<'t, 'a>>, field: &'static str) -> Res<Arr<'t, 'a>> {
    match need(v, field)?.array() {
        Some(a) => Ok(a),
        None => err(ErrorKind::WrongType, field),
    }
}

#[inline(always)]
pub(crate) fn text<'a>(v: Option<Val<'_, 'a>>, field: &'static str) -> Res<&'a [u8]> {
    match need(v, field)?.str() {
        Some(s) => Ok(s),
        None => err(ErrorKind::WrongType, field),
    }
}

/// A decimal in 1e-8 units. Binance sends decimals as strings, which go through
/// `engine::money::parse_units` exactly. A JSON integer is taken exactly too (it is a whole
/// number); a JSON float is refused, because simd-json has already turned it into an f64 and the
/// digits Binance meant are gone.
#[inline(always)]
pub(crate) fn decimal(v: Option<Val<'_, '_>>, field: &'static str) -> Res<i64> {
    let v = need(v, field)?;
    if let Some(s) = v.str() {
        return parse_units(s).map_err(|e| FrameError::new(ErrorKind::Decimal(e), field));
    }
    whole_units(v, field)
}

/// Like `decimal`, for averages Binance computes (entry price `ep`, average price `ap`): more than
/// eight fractional digits are rounded half away from zero to 1e-8 instead of refused, since an
/// entry price off by 1e-8 is harmless and a dropped position update is not. Every other decimal
/// stays strict.
pub(crate) fn average(v: Option<Val<'_, '_>>, field: &'static str) -> Res<i64> {
    let v = need(v, field)?;
    let Some(s) = v.str() else {
        return whole_units(v, field);
    };
    match parse_units(s) {
        Err(DecimalError::TooPrecise) => round_to_units(s),
        other => other,
    }
    .map_err(|e| FrameError::new(ErrorKind::Decimal(e), field))
}

/// `s` has more than eight fractional digits (`parse_units` said so, so it has a point and a
/// digit after it): keep eight, round on the ninth, check the rest are digits.
fn round_to_units(s: &[u8]) -> Result<i64, DecimalError> {
    let dot = s.iter().position(|&b| b == b'.').ok_or(DecimalError::InvalidChar)?;
    let keep = dot + 9;
    let (head, tail) = s.split_at(keep.min(s.len()));
    if !tail.iter().all(u8::is_ascii_digit) {
        return Err(DecimalError::InvalidChar);
    }
    let units = parse_units(head)?;
    let up = tail.first().is_some_and(|&d| d >= b'5');
    if !up {
        return Ok(units);
    }
    let step = if s.first() == Some(&b'-') { -1 } else { 1 };
    units.checked_add(step).ok_or(DecimalError::OutOfRange)
}

/// A JSON integer as a whole decimal; anything else is the wrong type.
fn whole_units(v: Val<'_, '_>, field: &'static str) -> Res<i64> {
    let whole = match v.scalar() {
        Some(StaticNode::I64(n)) => n,
        Some(StaticNode::U64(n)) => match i64::try_from(n) {
            Ok(n) => n,
            Err(_) => return err(ErrorKind::Decimal(DecimalError::OutOfRange), field),
        },
        _ => return err(ErrorKind::WrongType, field),
    };
    match whole.checked_mul(SCALE) {
        Some(units) => Ok(units),
        None => err(ErrorKind::Decimal(DecimalError::OutOfRange), field),
    }
}

/// A signed integer (ids, `-1` sentinels): a JSON integer, or a string of digits, since Binance
/// has sent the same field both ways across versions (`listenKeyExpired.E`).
pub(crate) fn int(v: Option<Val<'_, '_>>, field: &'static str) -> Res<i64> {
    let v = need(v, field)?;
    match v.scalar() {
        Some(StaticNode::I64(n)) => Ok(n),
        Some(StaticNode::U64(n)) => i64::try_from(n).or_else(|_| err(ErrorKind::OutOfRange, field)),
        Some(_) => err(ErrorKind::WrongType, field),
        None => match v.str() {
            Some(s) => int_text(s, field),
            None => err(ErrorKind::WrongType, field),
        },
    }
}

/// A non-negative integer (times in ms, ids): number or digit string, as `int`.
#[inline(always)]
pub(crate) fn uint(v: Option<Val<'_, '_>>, field: &'static str) -> Res<u64> {
    let v = need(v, field)?;
    match v.scalar() {
        Some(StaticNode::U64(n)) => Ok(n),
        Some(StaticNode::I64(_)) => err(ErrorKind::OutOfRange, field),
        Some(_) => err(ErrorKind::WrongType, field),
        None => match v.str() {
            Some(s) => match int_text(s, field)? {
                n if n >= 0 => Ok(n as u64),
                _ => err(ErrorKind::OutOfRange, field),
            },
            None => err(ErrorKind::WrongType, field),
        },
    }
}

/// A decimal integer in a string: optional '-', then 1 to 19 digits.
fn int_text(s: &[u8], field: &'static str) -> Res<i64> {
    let (negative, digits) = match s.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, s),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return err(ErrorKind::WrongType, field);
    }
    let mut value: i64 = 0;
    for &d in digits {
        value = match value.checked_mul(10).and_then(|v| v.checked_add(i64::from(d - b'0'))) {
            Some(v) => v,
            None => return err(ErrorKind::OutOfRange, field),
        };
    }
    Ok(if negative { -value } else { value })
}

#[inline(always)]
pub(crate) fn symbol(v: Option<Val<'_, '_>>, field: &'static str) -> Res<Symbol> {
    let raw = text(v, field)?;
    Symbol::new(raw).map_err(|e| FrameError::new(ErrorKind::Symbol(e), field))
}
