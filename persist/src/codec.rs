//! The event log's encoding: every engine `Record` as a compact, versioned byte string, the
//! payload of one journal record and of one `events` row in Postgres.
//!
//! Layout (version 1): `version u8 = 1`, `seq` varint, `at` (engine nanos) varint, the variant's
//! tag byte, then its fields in declaration order. Unsigned integers are LEB128 varints, money
//! (i64 counts of 1e-8) zig-zag varints, enums one byte with explicit codes, `Option` a 0/1 byte
//! then the value, symbols and client order ids a length byte then ASCII.
//!
//! Tags and enum codes are assigned by hand and never reused: a variant added later gets a new
//! tag, a removed one keeps its tag reserved, and a change to a variant's fields bumps the
//! version so that `decode` can still read what older robsond versions wrote.
//! `persist/tests/codec_samples.rs` decodes a checked-in sample of every variant as first
//! written. This module never touches a file or a socket.

use core::fmt;

use engine::events::{
    ArmParams, ArmRejection, CloseProblem, CloseReason, ClosedBy, EntryRejection, FeedKind,
    FeedState, FeedStream, Journal, OrderIntent, OrderStatus, OrderUpdate, RejectKind,
};
use engine::signal::Cross;
use engine::types::{
    AccountId, ClientOrderId, MarketKey, Modality, OrderPurpose, OrderSide, PositionId,
    PositionKey, Side, Symbol, Venue,
};
use engine::{Amount, Nanos, Price, Qty, Ratio, Record};

/// The version `encode` writes.
pub const VERSION: u8 = 1;

/// Why bytes could not be decoded. Carries no payload bytes: they are only the log's own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    Empty,
    /// Written by a newer robsond than this one.
    UnknownVersion(u8),
    UnknownTag(u8),
    /// The bytes ended inside `.0`.
    Truncated(&'static str),
    /// `.0` holds a value no encoder writes (an unknown enum code, an overlong varint).
    BadValue(&'static str),
    /// Bytes left after a complete record: the length framing and the record disagree.
    TrailingBytes(usize),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Empty => f.write_str("empty record"),
            DecodeError::UnknownVersion(v) => {
                write!(
                    f,
                    "record format version {v} is newer than this robsond (reads up to {VERSION})"
                )
            }
            DecodeError::UnknownTag(t) => write!(f, "unknown event tag {t}"),
            DecodeError::Truncated(field) => write!(f, "record ends inside {field}"),
            DecodeError::BadValue(field) => write!(f, "impossible value in {field}"),
            DecodeError::TrailingBytes(n) => write!(f, "{n} bytes after the end of the record"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// Appends the encoding of `record` to `out` (which the caller reuses across records).
pub fn encode(record: &Record, out: &mut Vec<u8>) {
    let mut w = Writer(out);
    w.u8(VERSION);
    w.uint(record.seq);
    w.uint(record.at.0);
    w.event(&record.event);
}

/// Decodes one whole record; every byte must belong to it.
pub fn decode(bytes: &[u8]) -> Result<Record, DecodeError> {
    let (&version, rest) = bytes.split_first().ok_or(DecodeError::Empty)?;
    if version != 1 {
        return Err(DecodeError::UnknownVersion(version));
    }
    let mut r = Reader { bytes: rest };
    let seq = r.uint("seq")?;
    let at = Nanos(r.uint("at")?);
    let event = r.event()?;
    if !r.bytes.is_empty() {
        return Err(DecodeError::TrailingBytes(r.bytes.len()));
    }
    Ok(Record { seq, at, event })
}

/// A stable, human name for each variant: the `kind` column in Postgres and in tools.
pub fn kind(event: &Journal) -> &'static str {
    match event {
        Journal::Armed { .. } => "armed",
        Journal::ArmRejected { .. } => "arm_rejected",
        Journal::Disarmed { .. } => "disarmed",
        Journal::EntrySignal { .. } => "entry_signal",
        Journal::EntryBlocked { .. } => "entry_blocked",
        Journal::EntrySuppressed { .. } => "entry_suppressed",
        Journal::EntryRejected { .. } => "entry_rejected",
        Journal::OrderSent { .. } => "order_sent",
        Journal::QuerySent { .. } => "query_sent",
        Journal::OrderUpdated { .. } => "order_updated",
        Journal::OrderIgnored { .. } => "order_ignored",
        Journal::PositionOpened { .. } => "position_opened",
        Journal::PositionDetected { .. } => "position_detected",
        Journal::PositionUpdated { .. } => "position_updated",
        Journal::SafetyStopSet { .. } => "safety_stop_set",
        Journal::StopMoved { .. } => "stop_moved",
        Journal::StopTriggered { .. } => "stop_triggered",
        Journal::CloseBlocked { .. } => "close_blocked",
        Journal::CloseDeferred { .. } => "close_deferred",
        Journal::PositionClosed { .. } => "position_closed",
        Journal::DustIgnored { .. } => "dust_ignored",
        Journal::SnapshotIgnored { .. } => "snapshot_ignored",
        Journal::Halted { .. } => "halted",
        Journal::Resumed => "resumed",
        Journal::LeaseChanged { .. } => "lease_changed",
        Journal::PriceStale { .. } => "price_stale",
        Journal::PriceFresh { .. } => "price_fresh",
        Journal::FeedChanged { .. } => "feed_changed",
    }
}

// Tags: never renumber, never reuse.
const ARMED: u8 = 1;
const ARM_REJECTED: u8 = 2;
const DISARMED: u8 = 3;
const ENTRY_SIGNAL: u8 = 4;
const ENTRY_BLOCKED: u8 = 5;
const ENTRY_SUPPRESSED: u8 = 6;
const ENTRY_REJECTED: u8 = 7;
const ORDER_SENT: u8 = 8;
const QUERY_SENT: u8 = 9;
const ORDER_UPDATED: u8 = 10;
const ORDER_IGNORED: u8 = 11;
const POSITION_OPENED: u8 = 12;
const POSITION_DETECTED: u8 = 13;
const POSITION_UPDATED: u8 = 14;
const SAFETY_STOP_SET: u8 = 15;
const STOP_MOVED: u8 = 16;
const STOP_TRIGGERED: u8 = 17;
const CLOSE_BLOCKED: u8 = 18;
const CLOSE_DEFERRED: u8 = 19;
const POSITION_CLOSED: u8 = 20;
const DUST_IGNORED: u8 = 21;
const SNAPSHOT_IGNORED: u8 = 22;
const HALTED: u8 = 23;
const RESUMED: u8 = 24;
const LEASE_CHANGED: u8 = 25;
const PRICE_STALE: u8 = 26;
const PRICE_FRESH: u8 = 27;
const FEED_CHANGED: u8 = 28;

struct Writer<'a>(&'a mut Vec<u8>);

impl Writer<'_> {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }

    fn uint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }

    fn int(&mut self, v: i64) {
        self.uint(((v << 1) ^ (v >> 63)) as u64);
    }

    fn bool(&mut self, v: bool) {
        self.u8(u8::from(v));
    }

    fn text(&mut self, bytes: &[u8]) {
        // Symbols (23) and client order ids (36) are far below a byte's range.
        self.u8(bytes.len() as u8);
        self.0.extend_from_slice(bytes);
    }

    fn opt<T>(&mut self, v: Option<T>, mut each: impl FnMut(&mut Self, T)) {
        match v {
            None => self.u8(0),
            Some(v) => {
                self.u8(1);
                each(self, v);
            }
        }
    }

    fn id(&mut self, id: PositionId) {
        self.uint(id.0);
    }

    fn key(&mut self, key: &PositionKey) {
        self.uint(u64::from(key.account.0));
        self.venue(key.venue);
        self.text(key.symbol.as_str().as_bytes());
        self.u8(match key.side {
            Side::Long => 0,
            Side::Short => 1,
        });
    }

    fn venue(&mut self, venue: Venue) {
        self.u8(match venue {
            Venue::Usdm => 0,
            Venue::Margin => 1,
        });
    }

    fn market(&mut self, market: &MarketKey) {
        self.venue(market.venue);
        self.text(market.symbol.as_str().as_bytes());
    }

    fn modality(&mut self, m: Modality) {
        self.u8(match m {
            Modality::Core => 0,
            Modality::SafetyNet => 1,
        });
    }

    fn close_reason(&mut self, reason: CloseReason) {
        self.u8(match reason {
            CloseReason::StopHit => 0,
            CloseReason::Flatten => 1,
            CloseReason::Retry => 2,
        });
    }

    fn update(&mut self, u: &OrderUpdate) {
        self.uint(u64::from(u.account.0));
        self.venue(u.venue);
        self.text(u.symbol.as_str().as_bytes());
        self.text(u.cid.as_bytes());
        match u.status {
            OrderStatus::New => self.u8(0),
            OrderStatus::PartiallyFilled => self.u8(1),
            OrderStatus::Filled => self.u8(2),
            OrderStatus::Canceled => self.u8(3),
            OrderStatus::Expired => self.u8(4),
            OrderStatus::Rejected(kind) => {
                self.u8(5);
                self.u8(match kind {
                    RejectKind::Transient => 0,
                    RejectKind::Permanent => 1,
                    RejectKind::NothingToClose => 2,
                });
            }
            OrderStatus::Unknown => self.u8(6),
            OrderStatus::NotFound => self.u8(7),
        }
        self.int(u.cum_qty.units());
        self.int(u.avg_price.units());
        self.uint(u.exchange_ms);
    }

    fn event(&mut self, event: &Journal) {
        match *event {
            Journal::Armed { id, ref key, params } => {
                self.u8(ARMED);
                self.id(id);
                self.key(key);
                let ArmParams { capital, risk, technical_stop, ma_fast, ma_slow } = params;
                self.opt(capital, |w, v| w.int(v.units()));
                self.opt(risk, |w, v| w.int(v.units()));
                self.opt(technical_stop, |w, v| w.int(v.units()));
                self.opt(ma_fast, |w, v| w.uint(u64::from(v)));
                self.opt(ma_slow, |w, v| w.uint(u64::from(v)));
            }
            Journal::ArmRejected { ref key, reason } => {
                self.u8(ARM_REJECTED);
                self.key(key);
                self.u8(match reason {
                    ArmRejection::AlreadyArmed => 0,
                    ArmRejection::BadPeriods => 1,
                    ArmRejection::BadRisk => 2,
                    ArmRejection::BadCapital => 3,
                    ArmRejection::BadTechnicalStop => 4,
                });
            }
            Journal::Disarmed { id } => {
                self.u8(DISARMED);
                self.id(id);
            }
            Journal::EntrySignal { id, cross, price } => {
                self.u8(ENTRY_SIGNAL);
                self.id(id);
                self.u8(match cross {
                    Cross::Up => 0,
                    Cross::Down => 1,
                });
                self.int(price.units());
            }
            Journal::EntryBlocked { id, holder } => {
                self.u8(ENTRY_BLOCKED);
                self.id(id);
                self.opt(holder, Writer::modality);
            }
            Journal::EntrySuppressed { id } => {
                self.u8(ENTRY_SUPPRESSED);
                self.id(id);
            }
            Journal::EntryRejected { id, reason } => {
                self.u8(ENTRY_REJECTED);
                self.id(id);
                self.u8(match reason {
                    EntryRejection::NoSpan => 0,
                    EntryRejection::BelowMinQty => 1,
                    EntryRejection::BelowMinNotional => 2,
                    EntryRejection::NoBalance => 3,
                    EntryRejection::Overflow => 4,
                });
            }
            Journal::OrderSent { ref intent, reason } => {
                self.u8(ORDER_SENT);
                let OrderIntent { cid, ref key, order_side, qty, purpose, modality } = *intent;
                self.text(cid.as_bytes());
                self.key(key);
                self.u8(match order_side {
                    OrderSide::Buy => 0,
                    OrderSide::Sell => 1,
                });
                self.int(qty.units());
                self.u8(match purpose {
                    OrderPurpose::Entry => 0,
                    OrderPurpose::Close => 1,
                });
                self.modality(modality);
                self.opt(reason, Writer::close_reason);
            }
            Journal::QuerySent { id, cid } => {
                self.u8(QUERY_SENT);
                self.id(id);
                self.text(cid.as_bytes());
            }
            Journal::OrderUpdated { id, ref update } => {
                self.u8(ORDER_UPDATED);
                self.id(id);
                self.update(update);
            }
            Journal::OrderIgnored { ref update } => {
                self.u8(ORDER_IGNORED);
                self.update(update);
            }
            Journal::PositionOpened { id, ref key, qty, entry, stop, span } => {
                self.u8(POSITION_OPENED);
                self.id(id);
                self.key(key);
                for v in [qty.units(), entry.units(), stop.units(), span.units()] {
                    self.int(v);
                }
            }
            Journal::PositionDetected { id, ref key, qty, entry, from } => {
                self.u8(POSITION_DETECTED);
                self.id(id);
                self.key(key);
                self.int(qty.units());
                self.int(entry.units());
                self.opt(from, Writer::id);
            }
            Journal::PositionUpdated { id, qty, entry } => {
                self.u8(POSITION_UPDATED);
                self.id(id);
                self.int(qty.units());
                self.int(entry.units());
            }
            Journal::SafetyStopSet { id, stop, pct } => {
                self.u8(SAFETY_STOP_SET);
                self.id(id);
                self.int(stop.units());
                self.int(pct.units());
            }
            Journal::StopMoved { id, from, to, level } => {
                self.u8(STOP_MOVED);
                self.id(id);
                self.int(from.units());
                self.int(to.units());
                self.int(level);
            }
            Journal::StopTriggered { id, trigger, stop } => {
                self.u8(STOP_TRIGGERED);
                self.id(id);
                self.int(trigger.units());
                self.int(stop.units());
            }
            Journal::CloseBlocked { id, problem } => {
                self.u8(CLOSE_BLOCKED);
                self.id(id);
                self.u8(match problem {
                    CloseProblem::Dust => 0,
                    CloseProblem::Refused => 1,
                });
            }
            Journal::CloseDeferred { id, reason } => {
                self.u8(CLOSE_DEFERRED);
                self.id(id);
                self.close_reason(reason);
            }
            Journal::PositionClosed { id, by } => {
                self.u8(POSITION_CLOSED);
                self.id(id);
                self.u8(match by {
                    ClosedBy::OwnOrder => 0,
                    ClosedBy::External => 1,
                    ClosedBy::EntryFailed => 2,
                    ClosedBy::Dust => 3,
                });
            }
            Journal::DustIgnored { ref key, qty } => {
                self.u8(DUST_IGNORED);
                self.key(key);
                self.int(qty.units());
            }
            Journal::SnapshotIgnored { ref key, exchange_ms } => {
                self.u8(SNAPSHOT_IGNORED);
                self.key(key);
                self.uint(exchange_ms);
            }
            Journal::Halted { flatten } => {
                self.u8(HALTED);
                self.bool(flatten);
            }
            Journal::Resumed => self.u8(RESUMED),
            Journal::LeaseChanged { held } => {
                self.u8(LEASE_CHANGED);
                self.bool(held);
            }
            Journal::PriceStale { ref market } => {
                self.u8(PRICE_STALE);
                self.market(market);
            }
            Journal::PriceFresh { ref market } => {
                self.u8(PRICE_FRESH);
                self.market(market);
            }
            Journal::FeedChanged { stream, state } => {
                self.u8(FEED_CHANGED);
                self.venue(stream.venue);
                self.u8(match stream.kind {
                    FeedKind::Market => 0,
                    FeedKind::Book => 1,
                    FeedKind::User => 2,
                });
                match state {
                    FeedState::Connected => self.u8(0),
                    FeedState::Disconnected => self.u8(1),
                    FeedState::Reconnected { gap_ms } => {
                        self.u8(2);
                        self.uint(gap_ms);
                    }
                    FeedState::Stale => self.u8(3),
                    FeedState::Fresh => self.u8(4),
                }
            }
        }
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
}

type Res<T> = Result<T, DecodeError>;

impl Reader<'_> {
    fn u8(&mut self, field: &'static str) -> Res<u8> {
        let (&b, rest) = self.bytes.split_first().ok_or(DecodeError::Truncated(field))?;
        self.bytes = rest;
        Ok(b)
    }

    fn uint(&mut self, field: &'static str) -> Res<u64> {
        let mut value: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = self.u8(field)?;
            let bits = u64::from(b & 0x7f);
            if shift == 63 && bits > 1 {
                return Err(DecodeError::BadValue(field));
            }
            value |= bits << shift;
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(DecodeError::BadValue(field))
    }

    fn int(&mut self, field: &'static str) -> Res<i64> {
        let z = self.uint(field)?;
        Ok((z >> 1) as i64 ^ -((z & 1) as i64))
    }

    fn u32(&mut self, field: &'static str) -> Res<u32> {
        u32::try_from(self.uint(field)?).map_err(|_| DecodeError::BadValue(field))
    }

    fn bool(&mut self, field: &'static str) -> Res<bool> {
        match self.u8(field)? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(DecodeError::BadValue(field)),
        }
    }

    fn text(&mut self, field: &'static str) -> Res<&[u8]> {
        let len = usize::from(self.u8(field)?);
        if self.bytes.len() < len {
            return Err(DecodeError::Truncated(field));
        }
        let (text, rest) = self.bytes.split_at(len);
        self.bytes = rest;
        Ok(text)
    }

    fn opt<T>(
        &mut self,
        field: &'static str,
        each: impl FnOnce(&mut Self) -> Res<T>,
    ) -> Res<Option<T>> {
        if self.bool(field)? { each(self).map(Some) } else { Ok(None) }
    }

    fn code<T: Copy>(&mut self, field: &'static str, values: &[T]) -> Res<T> {
        values.get(usize::from(self.u8(field)?)).copied().ok_or(DecodeError::BadValue(field))
    }

    fn id(&mut self) -> Res<PositionId> {
        self.uint("position id").map(PositionId)
    }

    fn symbol(&mut self) -> Res<Symbol> {
        Symbol::new(self.text("symbol")?).map_err(|_| DecodeError::BadValue("symbol"))
    }

    fn cid(&mut self) -> Res<ClientOrderId> {
        ClientOrderId::from_wire(self.text("client order id")?)
            .ok_or(DecodeError::BadValue("client order id"))
    }

    fn venue(&mut self) -> Res<Venue> {
        self.code("venue", &[Venue::Usdm, Venue::Margin])
    }

    fn key(&mut self) -> Res<PositionKey> {
        let account = AccountId(
            u16::try_from(self.uint("account")?).map_err(|_| DecodeError::BadValue("account"))?,
        );
        let venue = self.venue()?;
        let symbol = self.symbol()?;
        let side = self.code("side", &[Side::Long, Side::Short])?;
        Ok(PositionKey { account, venue, symbol, side })
    }

    fn market(&mut self) -> Res<MarketKey> {
        let venue = self.venue()?;
        Ok(MarketKey { venue, symbol: self.symbol()? })
    }

    fn modality(&mut self) -> Res<Modality> {
        self.code("modality", &[Modality::Core, Modality::SafetyNet])
    }

    fn close_reason(&mut self) -> Res<CloseReason> {
        self.code("close reason", &[CloseReason::StopHit, CloseReason::Flatten, CloseReason::Retry])
    }

    fn price(&mut self, field: &'static str) -> Res<Price> {
        self.int(field).map(Price::from_units)
    }

    fn qty(&mut self, field: &'static str) -> Res<Qty> {
        self.int(field).map(Qty::from_units)
    }

    fn update(&mut self) -> Res<OrderUpdate> {
        let account = AccountId(
            u16::try_from(self.uint("account")?).map_err(|_| DecodeError::BadValue("account"))?,
        );
        let venue = self.venue()?;
        let symbol = self.symbol()?;
        let cid = self.cid()?;
        let status = match self.u8("order status")? {
            0 => OrderStatus::New,
            1 => OrderStatus::PartiallyFilled,
            2 => OrderStatus::Filled,
            3 => OrderStatus::Canceled,
            4 => OrderStatus::Expired,
            5 => OrderStatus::Rejected(self.code(
                "reject kind",
                &[RejectKind::Transient, RejectKind::Permanent, RejectKind::NothingToClose],
            )?),
            6 => OrderStatus::Unknown,
            7 => OrderStatus::NotFound,
            _ => return Err(DecodeError::BadValue("order status")),
        };
        Ok(OrderUpdate {
            account,
            venue,
            symbol,
            cid,
            status,
            cum_qty: self.qty("cumulative quantity")?,
            avg_price: self.price("average price")?,
            exchange_ms: self.uint("exchange time")?,
        })
    }

    fn event(&mut self) -> Res<Journal> {
        let tag = self.u8("tag")?;
        Ok(match tag {
            ARMED => {
                let id = self.id()?;
                let key = self.key()?;
                let params = ArmParams {
                    capital: self.opt("capital", |r| r.int("capital").map(Amount::from_units))?,
                    risk: self.opt("risk", |r| r.int("risk").map(Ratio::from_units))?,
                    technical_stop: self.opt("technical stop", |r| r.price("technical stop"))?,
                    ma_fast: self.opt("ma_fast", |r| r.u32("ma_fast"))?,
                    ma_slow: self.opt("ma_slow", |r| r.u32("ma_slow"))?,
                };
                Journal::Armed { id, key, params }
            }
            ARM_REJECTED => Journal::ArmRejected {
                key: self.key()?,
                reason: self.code(
                    "arm rejection",
                    &[
                        ArmRejection::AlreadyArmed,
                        ArmRejection::BadPeriods,
                        ArmRejection::BadRisk,
                        ArmRejection::BadCapital,
                        ArmRejection::BadTechnicalStop,
                    ],
                )?,
            },
            DISARMED => Journal::Disarmed { id: self.id()? },
            ENTRY_SIGNAL => Journal::EntrySignal {
                id: self.id()?,
                cross: self.code("cross", &[Cross::Up, Cross::Down])?,
                price: self.price("price")?,
            },
            ENTRY_BLOCKED => Journal::EntryBlocked {
                id: self.id()?,
                holder: self.opt("holder", Reader::modality)?,
            },
            ENTRY_SUPPRESSED => Journal::EntrySuppressed { id: self.id()? },
            ENTRY_REJECTED => Journal::EntryRejected {
                id: self.id()?,
                reason: self.code(
                    "entry rejection",
                    &[
                        EntryRejection::NoSpan,
                        EntryRejection::BelowMinQty,
                        EntryRejection::BelowMinNotional,
                        EntryRejection::NoBalance,
                        EntryRejection::Overflow,
                    ],
                )?,
            },
            ORDER_SENT => {
                let cid = self.cid()?;
                let key = self.key()?;
                let order_side = self.code("order side", &[OrderSide::Buy, OrderSide::Sell])?;
                let qty = self.qty("quantity")?;
                let purpose = self.code("purpose", &[OrderPurpose::Entry, OrderPurpose::Close])?;
                let modality = self.modality()?;
                let intent = OrderIntent { cid, key, order_side, qty, purpose, modality };
                Journal::OrderSent {
                    intent,
                    reason: self.opt("close reason", Reader::close_reason)?,
                }
            }
            QUERY_SENT => Journal::QuerySent { id: self.id()?, cid: self.cid()? },
            ORDER_UPDATED => Journal::OrderUpdated { id: self.id()?, update: self.update()? },
            ORDER_IGNORED => Journal::OrderIgnored { update: self.update()? },
            POSITION_OPENED => Journal::PositionOpened {
                id: self.id()?,
                key: self.key()?,
                qty: self.qty("quantity")?,
                entry: self.price("entry")?,
                stop: self.price("stop")?,
                span: self.price("span")?,
            },
            POSITION_DETECTED => Journal::PositionDetected {
                id: self.id()?,
                key: self.key()?,
                qty: self.qty("quantity")?,
                entry: self.price("entry")?,
                from: self.opt("from", Reader::id)?,
            },
            POSITION_UPDATED => Journal::PositionUpdated {
                id: self.id()?,
                qty: self.qty("quantity")?,
                entry: self.price("entry")?,
            },
            SAFETY_STOP_SET => Journal::SafetyStopSet {
                id: self.id()?,
                stop: self.price("stop")?,
                pct: Ratio::from_units(self.int("pct")?),
            },
            STOP_MOVED => Journal::StopMoved {
                id: self.id()?,
                from: self.price("from")?,
                to: self.price("to")?,
                level: self.int("level")?,
            },
            STOP_TRIGGERED => Journal::StopTriggered {
                id: self.id()?,
                trigger: self.price("trigger")?,
                stop: self.price("stop")?,
            },
            CLOSE_BLOCKED => Journal::CloseBlocked {
                id: self.id()?,
                problem: self
                    .code("close problem", &[CloseProblem::Dust, CloseProblem::Refused])?,
            },
            CLOSE_DEFERRED => {
                Journal::CloseDeferred { id: self.id()?, reason: self.close_reason()? }
            }
            POSITION_CLOSED => Journal::PositionClosed {
                id: self.id()?,
                by: self.code(
                    "closed by",
                    &[
                        ClosedBy::OwnOrder,
                        ClosedBy::External,
                        ClosedBy::EntryFailed,
                        ClosedBy::Dust,
                    ],
                )?,
            },
            DUST_IGNORED => Journal::DustIgnored { key: self.key()?, qty: self.qty("quantity")? },
            SNAPSHOT_IGNORED => Journal::SnapshotIgnored {
                key: self.key()?,
                exchange_ms: self.uint("exchange time")?,
            },
            HALTED => Journal::Halted { flatten: self.bool("flatten")? },
            RESUMED => Journal::Resumed,
            LEASE_CHANGED => Journal::LeaseChanged { held: self.bool("held")? },
            PRICE_STALE => Journal::PriceStale { market: self.market()? },
            PRICE_FRESH => Journal::PriceFresh { market: self.market()? },
            FEED_CHANGED => {
                let venue = self.venue()?;
                let kind =
                    self.code("feed kind", &[FeedKind::Market, FeedKind::Book, FeedKind::User])?;
                let state = match self.u8("feed state")? {
                    0 => FeedState::Connected,
                    1 => FeedState::Disconnected,
                    2 => FeedState::Reconnected { gap_ms: self.uint("gap")? },
                    3 => FeedState::Stale,
                    4 => FeedState::Fresh,
                    _ => return Err(DecodeError::BadValue("feed state")),
                };
                Journal::FeedChanged { stream: FeedStream { venue, kind }, state }
            }
            other => return Err(DecodeError::UnknownTag(other)),
        })
    }
}
