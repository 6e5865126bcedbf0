//! Identities: venues, sides, symbols, position keys and client order ids. All `Copy`, all inline,
//! so that events carrying them never allocate.

use core::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Venue {
    /// USD-M futures.
    Usdm,
    /// Isolated margin.
    Margin,
}

impl Venue {
    pub fn as_str(self) -> &'static str {
        match self {
            Venue::Usdm => "usdm",
            Venue::Margin => "margin",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Side {
    Long,
    Short,
}

impl Side {
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Long => "LONG",
            Side::Short => "SHORT",
        }
    }

    pub fn opposite(self) -> Side {
        match self {
            Side::Long => Side::Short,
            Side::Short => Side::Long,
        }
    }

    /// The order side that opens (or adds to) a position on this side.
    pub fn opening_order(self) -> OrderSide {
        match self {
            Side::Long => OrderSide::Buy,
            Side::Short => OrderSide::Sell,
        }
    }

    /// The order side that closes a position on this side.
    pub fn closing_order(self) -> OrderSide {
        match self {
            Side::Long => OrderSide::Sell,
            Side::Short => OrderSide::Buy,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OrderSide {
    Buy,
    Sell,
}

impl OrderSide {
    pub fn as_str(self) -> &'static str {
        match self {
            OrderSide::Buy => "BUY",
            OrderSide::Sell => "SELL",
        }
    }
}

/// Which price a symbol's stops are evaluated against (DESIGN.md section 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TriggerSource {
    /// Futures mark price; the default for `usdm`.
    Mark,
    /// Last trade price; the default for `margin`, which has no mark price.
    Last,
    /// Best bid for a long, best ask for a short: the price a market close would actually meet.
    Book,
}

impl TriggerSource {
    pub fn default_for(venue: Venue) -> TriggerSource {
        match venue {
            Venue::Usdm => TriggerSource::Mark,
            Venue::Margin => TriggerSource::Last,
        }
    }
}

/// Which modality owns a key, and so sent an order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Modality {
    Core,
    SafetyNet,
}

impl Modality {
    fn tag(self) -> u8 {
        match self {
            Modality::Core => b'C',
            Modality::SafetyNet => b'S',
        }
    }
}

/// One Binance account (or sub-account) that this engine guards; 0 when there is only one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct AccountId(pub u16);

const SYMBOL_CAP: usize = 23;

/// An exchange symbol held inline (Binance's longest are well under 23 bytes, e.g.
/// `1000000BOBUSDT`, `BTCUSDT_250328`). Only `[A-Z0-9_]` is accepted, so a symbol read off the
/// wire can be echoed into an order without further checks.
#[derive(Clone, Copy)]
#[repr(C, align(8))]
pub struct Symbol {
    len: u8,
    bytes: [u8; SYMBOL_CAP],
}

impl Symbol {
    /// The symbol as three machine words: the market lookup on every tick hashes and compares
    /// a symbol, and three word operations beat 24 byte ones (or a `bcmp` call).
    #[inline(always)]
    fn words(&self) -> [u64; 3] {
        let word = |i: usize| {
            let mut chunk = [0u8; 8];
            for (j, byte) in chunk.iter_mut().enumerate() {
                let at = i * 8 + j;
                *byte = if at == 0 { self.len } else { self.bytes[at - 1] };
            }
            u64::from_le_bytes(chunk)
        };
        [word(0), word(1), word(2)]
    }
}

impl PartialEq for Symbol {
    #[inline(always)]
    fn eq(&self, other: &Symbol) -> bool {
        self.words() == other.words()
    }
}

impl Eq for Symbol {}

impl core::hash::Hash for Symbol {
    #[inline(always)]
    fn hash<H: core::hash::Hasher>(&self, state: &mut H) {
        for word in self.words() {
            state.write_u64(word);
        }
    }
}

/// Alphabetical, as a person reads a list of symbols.
impl PartialOrd for Symbol {
    fn partial_cmp(&self, other: &Symbol) -> Option<core::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Symbol {
    fn cmp(&self, other: &Symbol) -> core::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SymbolError {
    Empty,
    TooLong,
    InvalidChar,
}

impl Symbol {
    pub fn new(raw: &[u8]) -> Result<Symbol, SymbolError> {
        if raw.is_empty() {
            return Err(SymbolError::Empty);
        }
        if raw.len() > SYMBOL_CAP {
            return Err(SymbolError::TooLong);
        }
        if !raw.iter().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || *b == b'_') {
            return Err(SymbolError::InvalidChar);
        }
        let mut bytes = [0; SYMBOL_CAP];
        bytes[..raw.len()].copy_from_slice(raw);
        Ok(Symbol { len: raw.len() as u8, bytes })
    }

    /// For constants and tests.
    pub fn lit(s: &str) -> Symbol {
        Symbol::new(s.as_bytes()).unwrap_or_else(|e| panic!("bad symbol {s:?}: {e:?}"))
    }

    pub fn as_str(&self) -> &str {
        core::str::from_utf8(&self.bytes[..self.len as usize]).expect("validated ascii")
    }
}

impl fmt::Display for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.as_str())
    }
}

/// A market's identity: the same symbol on two venues has different prices and filters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MarketKey {
    pub venue: Venue,
    pub symbol: Symbol,
}

/// A position's identity (DESIGN.md section 2): at most one modality owns it at a time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PositionKey {
    pub account: AccountId,
    pub venue: Venue,
    pub symbol: Symbol,
    pub side: Side,
}

impl PositionKey {
    pub fn market(&self) -> MarketKey {
        MarketKey { venue: self.venue, symbol: self.symbol }
    }
}

/// The engine's id for a position (Core or Safety Net) or an armed entry; monotone per engine and
/// restored from the journal at start-up, so it is never reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PositionId(pub u64);

/// What an order does for its position.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OrderPurpose {
    Entry,
    Close,
}

impl OrderPurpose {
    fn tag(self) -> u8 {
        match self {
            OrderPurpose::Entry => b'E',
            OrderPurpose::Close => b'X',
        }
    }
}

const CID_CAP: usize = 36;
const CID_PREFIX: &[u8] = b"rbd";

/// A `newClientOrderId` derived only from (modality, purpose, position id, action sequence):
/// `rbd-<C|S><E|X>-<position id, base 36>-<sequence, base 36>`, at most 3+1+2+1+13+1+7 = 28
/// characters of `[A-Za-z0-9-]`, which both venues accept (spot `^[a-zA-Z0-9-_]{1,36}$`, futures
/// also allows `.:/`). The same action always yields the same id, so a resend after a restart is
/// recognised, and a fill is attributed by parsing its id, without a lookup table or a database.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientOrderId {
    len: u8,
    bytes: [u8; CID_CAP],
}

/// The parts a robsond client order id encodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OrderTag {
    pub modality: Modality,
    pub purpose: OrderPurpose,
    pub position: PositionId,
    pub sequence: u32,
}

fn push_base36(out: &mut [u8; CID_CAP], len: &mut usize, mut value: u64) {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut tmp = [0u8; 13];
    let mut n = 0;
    loop {
        tmp[n] = DIGITS[(value % 36) as usize];
        n += 1;
        value /= 36;
        if value == 0 {
            break;
        }
    }
    for i in (0..n).rev() {
        out[*len] = tmp[i];
        *len += 1;
    }
}

fn parse_base36(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 13 {
        return None;
    }
    let mut value: u64 = 0;
    for &b in s {
        let digit = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'z' => b - b'a' + 10,
            _ => return None,
        };
        value = value.checked_mul(36)?.checked_add(u64::from(digit))?;
    }
    Some(value)
}

impl ClientOrderId {
    pub fn new(tag: OrderTag) -> ClientOrderId {
        let mut bytes = [0u8; CID_CAP];
        let mut len = 0;
        for &b in CID_PREFIX.iter().chain(b"-") {
            bytes[len] = b;
            len += 1;
        }
        bytes[len] = tag.modality.tag();
        bytes[len + 1] = tag.purpose.tag();
        bytes[len + 2] = b'-';
        len += 3;
        push_base36(&mut bytes, &mut len, tag.position.0);
        bytes[len] = b'-';
        len += 1;
        push_base36(&mut bytes, &mut len, u64::from(tag.sequence));
        ClientOrderId { len: len as u8, bytes }
    }

    /// Any client order id as the exchange reports it (robsond's or not), if it fits the
    /// exchange's own 36-character limit.
    pub fn from_wire(raw: &[u8]) -> Option<ClientOrderId> {
        if raw.is_empty() || raw.len() > CID_CAP {
            return None;
        }
        let mut bytes = [0u8; CID_CAP];
        bytes[..raw.len()].copy_from_slice(raw);
        Some(ClientOrderId { len: raw.len() as u8, bytes })
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }

    pub fn as_str(&self) -> &str {
        core::str::from_utf8(self.as_bytes()).unwrap_or("<non-utf8>")
    }

    /// What a robsond id says; None for ids robsond did not make (`web_…`, `android_…`).
    pub fn tag(&self) -> Option<OrderTag> {
        let raw = self.as_bytes();
        let rest = raw.strip_prefix(CID_PREFIX)?.strip_prefix(b"-")?;
        let (&[modality, purpose, b'-'], rest) = rest.split_first_chunk::<3>()? else {
            return None;
        };
        let modality = match modality {
            b'C' => Modality::Core,
            b'S' => Modality::SafetyNet,
            _ => return None,
        };
        let purpose = match purpose {
            b'E' => OrderPurpose::Entry,
            b'X' => OrderPurpose::Close,
            _ => return None,
        };
        let dash = rest.iter().position(|&b| b == b'-')?;
        let position = parse_base36(&rest[..dash])?;
        let sequence = u32::try_from(parse_base36(&rest[dash + 1..])?).ok()?;
        let tag = OrderTag { modality, purpose, position: PositionId(position), sequence };
        // Only the canonical spelling counts, so two strings never name one action.
        (ClientOrderId::new(tag) == *self).then_some(tag)
    }
}

impl fmt::Display for ClientOrderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for ClientOrderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fits_both_venues(id: &str) -> bool {
        (1..=36).contains(&id.len())
            && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    }

    #[test]
    fn client_order_ids_are_deterministic_and_round_trip() {
        let tag = OrderTag {
            modality: Modality::SafetyNet,
            purpose: OrderPurpose::Close,
            position: PositionId(123_456),
            sequence: 2,
        };
        let id = ClientOrderId::new(tag);
        assert_eq!(id.as_str(), "rbd-SX-2n9c-2");
        assert_eq!(id, ClientOrderId::new(tag));
        assert_eq!(id.tag(), Some(tag));
        let widest = OrderTag {
            modality: Modality::Core,
            purpose: OrderPurpose::Entry,
            position: PositionId(u64::MAX),
            sequence: u32::MAX,
        };
        let id = ClientOrderId::new(widest);
        assert!(fits_both_venues(id.as_str()), "{id}");
        assert_eq!(id.as_str().len(), 28);
        assert_eq!(id.tag(), Some(widest));
    }

    #[test]
    fn foreign_and_non_canonical_ids_carry_no_tag() {
        for raw in
            ["web_abc123", "android_x", "autoclose-1", "adl_autoclose", "rbd-CE-1", "rbd-QX-1-1"]
        {
            assert_eq!(ClientOrderId::from_wire(raw.as_bytes()).unwrap().tag(), None, "{raw}");
        }
        // Leading zeros would name the same action twice.
        assert_eq!(ClientOrderId::from_wire(b"rbd-CE-01-1").unwrap().tag(), None);
        assert!(ClientOrderId::from_wire(&[b'a'; 37]).is_none());
    }

    #[test]
    fn symbols_are_validated() {
        assert_eq!(Symbol::lit("BTCUSDT").as_str(), "BTCUSDT");
        assert_eq!(Symbol::new(b"btcusdt"), Err(SymbolError::InvalidChar));
        assert_eq!(Symbol::new(b""), Err(SymbolError::Empty));
        assert_eq!(Symbol::new(&[b'A'; 24]), Err(SymbolError::TooLong));
        assert!(Symbol::new(b"BTCUSDT_250328").is_ok());
    }
}
