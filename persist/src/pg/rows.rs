//! From records to rows: the `events` columns of a batch, and the fold of a batch's records into
//! one change per position and per order plus the stop history, which the writer then applies
//! with a handful of set-based statements instead of one statement per record.
//!
//! Pure: no I/O. Money stays in i64 units of 1e-8 here; Postgres scales it (see
//! `migrations/0002_projections.sql`). The fold only ever sets values, never clears one, so
//! "null" in a change means "this batch says nothing", and applying a batch's changes on top of
//! what earlier batches left is the same as applying its records one by one.

use std::collections::HashMap;

use engine::events::{
    CloseProblem, CloseReason, ClosedBy, Journal, OrderStatus, OrderUpdate, RejectKind,
};
use engine::types::{ClientOrderId, Modality, OrderPurpose, OrderSide, PositionKey, Side, Symbol};
use engine::{PositionId, Record};

use crate::codec;

/// A value that does not fit Postgres' signed 64-bit integers (a sequence number, a time, an
/// id beyond 2^63): the record cannot be stored as it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutOfRange {
    pub seq: u64,
}

/// The `events` columns of a batch, in record order.
#[derive(Default)]
pub struct EventRows<'a> {
    pub seq: Vec<i64>,
    pub at_ns: Vec<i64>,
    pub kind: Vec<&'static str>,
    payload_bytes: Vec<u8>,
    payload_ends: Vec<usize>,
    pub position_id: Vec<Option<i64>>,
    pub account: Vec<Option<i32>>,
    pub venue: Vec<Option<&'static str>>,
    pub symbol: Vec<Option<&'a str>>,
    pub side: Vec<Option<&'static str>>,
    pub cid: Vec<Option<&'a str>>,
}

impl<'a> EventRows<'a> {
    pub fn new(records: &'a [Record]) -> Result<EventRows<'a>, OutOfRange> {
        let mut rows = EventRows::default();
        for record in records {
            let out_of_range = OutOfRange { seq: record.seq };
            rows.seq.push(i64::try_from(record.seq).map_err(|_| out_of_range)?);
            rows.at_ns.push(i64::try_from(record.at.0).map_err(|_| out_of_range)?);
            rows.kind.push(codec::kind(&record.event));
            codec::encode(record, &mut rows.payload_bytes);
            rows.payload_ends.push(rows.payload_bytes.len());
            let f = Facets::of(&record.event);
            rows.position_id.push(match f.position {
                Some(id) => Some(big(id.0, record.seq)?),
                None => None,
            });
            rows.account.push(f.account.map(|a| i32::from(a.0)));
            rows.venue.push(f.venue.map(engine::Venue::as_str));
            rows.symbol.push(f.symbol.map(Symbol::as_str));
            rows.side.push(f.side.map(Side::as_str));
            rows.cid.push(f.cid.map(ClientOrderId::as_str));
        }
        Ok(rows)
    }

    pub fn payloads(&self) -> Vec<&[u8]> {
        let mut start = 0;
        self.payload_ends
            .iter()
            .map(|&end| {
                let payload = &self.payload_bytes[start..end];
                start = end;
                payload
            })
            .collect()
    }
}

/// The fields of a record an operator searches the log by.
#[derive(Default)]
struct Facets<'a> {
    position: Option<PositionId>,
    account: Option<engine::AccountId>,
    venue: Option<engine::Venue>,
    symbol: Option<&'a Symbol>,
    side: Option<Side>,
    cid: Option<&'a ClientOrderId>,
}

impl<'a> Facets<'a> {
    fn of(event: &'a Journal) -> Facets<'a> {
        let keyed = |position: Option<PositionId>, key: &'a PositionKey| Facets {
            position,
            account: Some(key.account),
            venue: Some(key.venue),
            symbol: Some(&key.symbol),
            side: Some(key.side),
            cid: None,
        };
        let update = |position: Option<PositionId>, u: &'a OrderUpdate| Facets {
            position,
            account: Some(u.account),
            venue: Some(u.venue),
            symbol: Some(&u.symbol),
            side: None,
            cid: Some(&u.cid),
        };
        let id = |id: PositionId| Facets { position: Some(id), ..Facets::default() };
        match event {
            Journal::Armed { id, key, .. }
            | Journal::PositionOpened { id, key, .. }
            | Journal::PositionDetected { id, key, .. } => keyed(Some(*id), key),
            Journal::ArmRejected { key, .. }
            | Journal::DustIgnored { key, .. }
            | Journal::SnapshotIgnored { key, .. } => keyed(None, key),
            Journal::OrderSent { intent, .. } => Facets {
                cid: Some(&intent.cid),
                ..keyed(intent.cid.tag().map(|t| t.position), &intent.key)
            },
            Journal::QuerySent { id: position, cid } => {
                Facets { position: Some(*position), cid: Some(cid), ..Facets::default() }
            }
            Journal::OrderUpdated { id, update: u } => update(Some(*id), u),
            Journal::OrderIgnored { update: u } => update(None, u),
            Journal::Disarmed { id: p }
            | Journal::EntrySignal { id: p, .. }
            | Journal::EntryBlocked { id: p, .. }
            | Journal::EntrySuppressed { id: p }
            | Journal::EntryRejected { id: p, .. }
            | Journal::PositionUpdated { id: p, .. }
            | Journal::SafetyStopSet { id: p, .. }
            | Journal::StopMoved { id: p, .. }
            | Journal::StopTriggered { id: p, .. }
            | Journal::CloseBlocked { id: p, .. }
            | Journal::CloseDeferred { id: p, .. }
            | Journal::PositionClosed { id: p, .. } => id(*p),
            Journal::PriceStale { market } | Journal::PriceFresh { market } => Facets {
                venue: Some(market.venue),
                symbol: Some(&market.symbol),
                ..Facets::default()
            },
            Journal::FeedChanged { stream, .. } => {
                Facets { venue: Some(stream.venue), ..Facets::default() }
            }
            Journal::Halted { .. } | Journal::Resumed | Journal::LeaseChanged { .. } => {
                Facets::default()
            }
        }
    }
}

fn big(value: u64, seq: u64) -> Result<i64, OutOfRange> {
    i64::try_from(value).map_err(|_| OutOfRange { seq })
}

/// What a batch does to one position row. `None`: the batch says nothing about that column.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PositionChange {
    pub id: i64,
    /// Set by the records that create a position (armed, opened, detected): only a change with
    /// a key may insert a row.
    pub key: Option<PositionKey>,
    pub modality: Option<&'static str>,
    pub state: Option<&'static str>,
    pub qty: Option<i64>,
    pub entry: Option<i64>,
    pub stop: Option<i64>,
    pub span: Option<i64>,
    pub trail_level: Option<i64>,
    /// Ratio units (1e-8 of one); the column holds percent.
    pub safety_ratio: Option<i64>,
    pub from_position: Option<i64>,
    pub technical_stop: Option<i64>,
    pub capital: Option<i64>,
    pub risk_ratio: Option<i64>,
    pub ma_fast: Option<i64>,
    pub ma_slow: Option<i64>,
    pub signal_price: Option<i64>,
    pub trigger_price: Option<i64>,
    pub triggered_at_ns: Option<i64>,
    pub close_reason: Option<&'static str>,
    pub close_deferred: Option<bool>,
    pub close_problem: Option<&'static str>,
    pub closed_by: Option<&'static str>,
    pub armed_at_ns: Option<i64>,
    pub opened_at_ns: Option<i64>,
    pub closed_at_ns: Option<i64>,
    pub updated_at_ns: i64,
    pub last_seq: i64,
}

/// What a batch does to one order row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrderChange {
    pub cid: ClientOrderId,
    pub position_id: Option<i64>,
    pub account: Option<i32>,
    pub venue: Option<&'static str>,
    pub symbol: Option<Symbol>,
    pub side: Option<&'static str>,
    pub qty: Option<i64>,
    pub purpose: Option<&'static str>,
    pub modality: Option<&'static str>,
    pub close_reason: Option<&'static str>,
    /// Set by every record that may insert the row (sent, updated).
    pub status: Option<&'static str>,
    pub reject_kind: Option<&'static str>,
    pub cum_qty: Option<i64>,
    pub avg_price: Option<i64>,
    pub exchange_ms: Option<i64>,
    /// Queries sent in this batch: added to the row's count.
    pub queries: i32,
    pub sent_at_ns: Option<i64>,
    pub queried_at_ns: Option<i64>,
    pub updated_at_ns: i64,
    pub last_seq: i64,
}

/// One row of `stop_changes`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StopChange {
    pub seq: i64,
    pub position_id: i64,
    pub at_ns: i64,
    pub kind: &'static str,
    /// The previous stop when this batch knows it (`from_known`); otherwise the writer takes it
    /// from the position row as earlier batches left it.
    pub from_stop: Option<i64>,
    pub from_known: bool,
    pub to_stop: i64,
    pub level: Option<i64>,
    pub pct_ratio: Option<i64>,
}

/// A batch's effect on the projections, in first-touched order.
#[derive(Debug, Default)]
pub struct Projection {
    pub positions: Vec<PositionChange>,
    pub orders: Vec<OrderChange>,
    pub stops: Vec<StopChange>,
    position_index: HashMap<i64, usize>,
    order_index: HashMap<ClientOrderId, usize>,
    /// The stop each position had after the latest record of this batch that set one.
    stop_in_batch: HashMap<i64, Option<i64>>,
}

impl Projection {
    /// Folds `records` (in increasing seq order) into one change per row.
    pub fn fold<'r>(
        records: impl IntoIterator<Item = &'r Record>,
    ) -> Result<Projection, OutOfRange> {
        let mut p = Projection::default();
        for record in records {
            p.apply(record)?;
        }
        Ok(p)
    }

    pub fn is_empty(&self) -> bool {
        self.positions.is_empty() && self.orders.is_empty() && self.stops.is_empty()
    }

    fn position(
        &mut self,
        id: PositionId,
        seq: i64,
        at: i64,
    ) -> Result<&mut PositionChange, OutOfRange> {
        let id = big(id.0, seq as u64)?;
        let next = self.positions.len();
        let index = *self.position_index.entry(id).or_insert(next);
        if index == next {
            self.positions.push(PositionChange { id, ..PositionChange::default() });
        }
        let change = &mut self.positions[index];
        change.updated_at_ns = at;
        change.last_seq = seq;
        Ok(change)
    }

    fn order(&mut self, cid: ClientOrderId, seq: i64, at: i64) -> &mut OrderChange {
        let next = self.orders.len();
        let index = *self.order_index.entry(cid).or_insert(next);
        if index == next {
            self.orders.push(OrderChange {
                cid,
                position_id: None,
                account: None,
                venue: None,
                symbol: None,
                side: None,
                qty: None,
                purpose: None,
                modality: None,
                close_reason: None,
                status: None,
                reject_kind: None,
                cum_qty: None,
                avg_price: None,
                exchange_ms: None,
                queries: 0,
                sent_at_ns: None,
                queried_at_ns: None,
                updated_at_ns: at,
                last_seq: seq,
            });
        }
        let change = &mut self.orders[index];
        change.updated_at_ns = at;
        change.last_seq = seq;
        change
    }

    fn stop_change(
        &mut self,
        position: i64,
        (seq, at): (i64, i64),
        kind: &'static str,
        to: i64,
        (level, pct_ratio): (Option<i64>, Option<i64>),
    ) {
        let known = self.stop_in_batch.insert(position, Some(to));
        self.stops.push(StopChange {
            seq,
            position_id: position,
            at_ns: at,
            kind,
            from_stop: known.flatten(),
            from_known: known.is_some(),
            to_stop: to,
            level,
            pct_ratio,
        });
    }

    fn apply(&mut self, record: &Record) -> Result<(), OutOfRange> {
        let seq = big(record.seq, record.seq)?;
        let at = big(record.at.0, record.seq)?;
        let opt_big = |v: u64| big(v, record.seq);
        match record.event {
            Journal::Armed { id, key, params } => {
                let p = self.position(id, seq, at)?;
                p.key = Some(key);
                p.modality = Some(modality(Modality::Core));
                p.state = Some("armed");
                p.technical_stop = params.technical_stop.map(|v| v.units());
                p.capital = params.capital.map(|v| v.units());
                p.risk_ratio = params.risk.map(|v| v.units());
                p.ma_fast = params.ma_fast.map(i64::from);
                p.ma_slow = params.ma_slow.map(i64::from);
                p.armed_at_ns = Some(at);
            }
            Journal::Disarmed { id } => {
                let p = self.position(id, seq, at)?;
                p.state = Some("disarmed");
                p.closed_at_ns = Some(at);
            }
            Journal::EntrySignal { id, price, .. } => {
                self.position(id, seq, at)?.signal_price = Some(price.units());
            }
            Journal::EntryBlocked { id, .. }
            | Journal::EntrySuppressed { id }
            | Journal::EntryRejected { id, .. } => {
                // The arm stays armed; the row only records that something happened.
                self.position(id, seq, at)?;
            }
            Journal::OrderSent { intent, reason } => {
                if let Some(tag) = intent.cid.tag() {
                    let p = self.position(tag.position, seq, at)?;
                    match intent.purpose {
                        OrderPurpose::Entry => p.state = Some("entering"),
                        OrderPurpose::Close => {
                            p.state = Some("exiting");
                            p.close_reason = reason.map(close_reason);
                            p.close_deferred = Some(false);
                        }
                    }
                }
                let position_id = match intent.cid.tag() {
                    Some(tag) => Some(opt_big(tag.position.0)?),
                    None => None,
                };
                let o = self.order(intent.cid, seq, at);
                o.position_id = position_id;
                o.account = Some(i32::from(intent.key.account.0));
                o.venue = Some(intent.key.venue.as_str());
                o.symbol = Some(intent.key.symbol);
                o.side = Some(order_side(intent.order_side));
                o.qty = Some(intent.qty.units());
                o.purpose = Some(purpose(intent.purpose));
                o.modality = Some(modality(intent.modality));
                o.close_reason = reason.map(close_reason);
                o.status = Some("sent");
                o.sent_at_ns = Some(at);
            }
            Journal::QuerySent { id, cid } => {
                let position_id = opt_big(id.0)?;
                let o = self.order(cid, seq, at);
                o.position_id = Some(position_id);
                o.queries += 1;
                o.queried_at_ns = Some(at);
            }
            Journal::OrderUpdated { id, update } => {
                let position_id = opt_big(id.0)?;
                let exchange_ms = opt_big(update.exchange_ms)?;
                let o = self.order(update.cid, seq, at);
                o.position_id = Some(position_id);
                o.account = Some(i32::from(update.account.0));
                o.venue = Some(update.venue.as_str());
                o.symbol = Some(update.symbol);
                let (status, reject) = order_status(update.status);
                o.status = Some(status);
                if reject.is_some() {
                    o.reject_kind = reject;
                }
                o.cum_qty = Some(update.cum_qty.units());
                o.avg_price = Some(update.avg_price.units());
                o.exchange_ms = Some(exchange_ms);
            }
            Journal::PositionOpened { id, key, qty, entry, stop, span } => {
                let p = self.position(id, seq, at)?;
                p.key = Some(key);
                p.modality = Some(modality(Modality::Core));
                p.state = Some("active");
                p.qty = Some(qty.units());
                p.entry = Some(entry.units());
                p.stop = Some(stop.units());
                p.span = Some(span.units());
                p.trail_level = Some(0);
                p.opened_at_ns = Some(at);
                let id = p.id;
                self.stop_in_batch.insert(id, Some(stop.units()));
            }
            Journal::PositionDetected { id, key, qty, entry, from } => {
                let from = match from {
                    Some(from) => Some(opt_big(from.0)?),
                    None => None,
                };
                let p = self.position(id, seq, at)?;
                p.key = Some(key);
                p.modality = Some(modality(Modality::SafetyNet));
                p.state = Some("protected");
                p.qty = Some(qty.units());
                p.entry = Some(entry.units());
                p.from_position = from;
                p.opened_at_ns = Some(at);
                let id = p.id;
                // A new position: its first stop has no predecessor.
                self.stop_in_batch.insert(id, None);
            }
            Journal::PositionUpdated { id, qty, entry } => {
                let p = self.position(id, seq, at)?;
                p.qty = Some(qty.units());
                p.entry = Some(entry.units());
            }
            Journal::SafetyStopSet { id, stop, pct } => {
                let p = self.position(id, seq, at)?;
                p.stop = Some(stop.units());
                p.safety_ratio = Some(pct.units());
                let id = p.id;
                self.stop_change(id, (seq, at), "safety", stop.units(), (None, Some(pct.units())));
            }
            Journal::StopMoved { id, from, to, level } => {
                let p = self.position(id, seq, at)?;
                p.stop = Some(to.units());
                p.trail_level = Some(level);
                let id = p.id;
                self.stop_in_batch.insert(id, Some(from.units()));
                self.stop_change(id, (seq, at), "trailing", to.units(), (Some(level), None));
            }
            Journal::StopTriggered { id, trigger, .. } => {
                let p = self.position(id, seq, at)?;
                p.trigger_price = Some(trigger.units());
                p.triggered_at_ns = Some(at);
            }
            Journal::CloseBlocked { id, problem } => {
                self.position(id, seq, at)?.close_problem = Some(match problem {
                    CloseProblem::Dust => "dust",
                    CloseProblem::Refused => "refused",
                });
            }
            Journal::CloseDeferred { id, reason } => {
                let p = self.position(id, seq, at)?;
                p.close_reason = Some(close_reason(reason));
                p.close_deferred = Some(true);
            }
            Journal::PositionClosed { id, by } => {
                let p = self.position(id, seq, at)?;
                p.state = Some(if by == ClosedBy::EntryFailed { "entry_failed" } else { "closed" });
                p.closed_by = Some(match by {
                    ClosedBy::OwnOrder => "own_order",
                    ClosedBy::External => "external",
                    ClosedBy::EntryFailed => "entry_failed",
                    ClosedBy::Dust => "dust",
                });
                p.closed_at_ns = Some(at);
            }
            Journal::ArmRejected { .. }
            | Journal::OrderIgnored { .. }
            | Journal::DustIgnored { .. }
            | Journal::SnapshotIgnored { .. }
            | Journal::Halted { .. }
            | Journal::Resumed
            | Journal::LeaseChanged { .. }
            | Journal::PriceStale { .. }
            | Journal::PriceFresh { .. }
            | Journal::FeedChanged { .. } => {}
        }
        Ok(())
    }
}

fn modality(m: Modality) -> &'static str {
    match m {
        Modality::Core => "core",
        Modality::SafetyNet => "safety_net",
    }
}

fn purpose(p: OrderPurpose) -> &'static str {
    match p {
        OrderPurpose::Entry => "entry",
        OrderPurpose::Close => "close",
    }
}

fn order_side(s: OrderSide) -> &'static str {
    s.as_str()
}

fn close_reason(r: CloseReason) -> &'static str {
    match r {
        CloseReason::StopHit => "stop_hit",
        CloseReason::Flatten => "flatten",
        CloseReason::Retry => "retry",
    }
}

fn order_status(s: OrderStatus) -> (&'static str, Option<&'static str>) {
    match s {
        OrderStatus::New => ("new", None),
        OrderStatus::PartiallyFilled => ("partially_filled", None),
        OrderStatus::Filled => ("filled", None),
        OrderStatus::Canceled => ("canceled", None),
        OrderStatus::Expired => ("expired", None),
        OrderStatus::Rejected(kind) => (
            "rejected",
            Some(match kind {
                RejectKind::Transient => "transient",
                RejectKind::Permanent => "permanent",
                RejectKind::NothingToClose => "nothing_to_close",
            }),
        ),
        OrderStatus::Unknown => ("unknown", None),
        OrderStatus::NotFound => ("not_found", None),
    }
}

#[cfg(test)]
mod tests {
    use engine::events::ArmParams;
    use engine::{AccountId, Nanos, Price, Qty, Ratio, Venue};

    use super::*;

    fn record(seq: u64, event: Journal) -> Record {
        Record { seq, at: Nanos(seq * 10), event }
    }

    fn key() -> PositionKey {
        PositionKey {
            account: AccountId(1),
            venue: Venue::Usdm,
            symbol: Symbol::lit("BTCUSDT"),
            side: Side::Long,
        }
    }

    #[test]
    fn a_batch_folds_into_one_change_per_position_with_the_last_values() {
        let id = PositionId(9);
        let p = Price::from_int;
        let records = [
            record(1, Journal::Armed { id, key: key(), params: ArmParams::default() }),
            record(
                2,
                Journal::PositionOpened {
                    id,
                    key: key(),
                    qty: Qty::from_int(2),
                    entry: p(100),
                    stop: p(90),
                    span: p(10),
                },
            ),
            record(3, Journal::StopMoved { id, from: p(90), to: p(100), level: 1 }),
            record(4, Journal::StopMoved { id, from: p(100), to: p(110), level: 2 }),
            record(5, Journal::Resumed),
        ];
        let fold = Projection::fold(&records).expect("in range");
        assert_eq!(fold.positions.len(), 1);
        let change = &fold.positions[0];
        assert_eq!((change.id, change.key, change.state), (9, Some(key()), Some("active")));
        assert_eq!((change.stop, change.trail_level), (Some(p(110).units()), Some(2)));
        assert_eq!((change.armed_at_ns, change.opened_at_ns), (Some(10), Some(20)));
        assert_eq!((change.updated_at_ns, change.last_seq), (40, 4), "the resume is not its");
        let from: Vec<_> = fold.stops.iter().map(|s| (s.from_known, s.from_stop)).collect();
        assert_eq!(from, [(true, Some(p(90).units())), (true, Some(p(100).units()))]);
    }

    #[test]
    fn a_safety_stop_without_a_stop_earlier_in_the_batch_asks_the_table() {
        let id = PositionId(4);
        let stop = |seq, whole| {
            record(
                seq,
                Journal::SafetyStopSet { id, stop: Price::from_int(whole), pct: Ratio::percent(2) },
            )
        };
        let fold = Projection::fold(&[stop(7, 98), stop(8, 99)]).expect("in range");
        let from: Vec<_> = fold.stops.iter().map(|s| (s.from_known, s.from_stop)).collect();
        assert_eq!(from, [(false, None), (true, Some(Price::from_int(98).units()))]);
        assert!(fold.positions[0].key.is_none(), "an update only: it may not insert a row");
    }

    #[test]
    fn values_beyond_bigint_are_refused_with_their_seq() {
        let huge = record(3, Journal::Disarmed { id: PositionId(u64::MAX) });
        assert_eq!(Projection::fold(&[huge]).map(|_| ()), Err(OutOfRange { seq: 3 }));
        assert!(EventRows::new(&[huge]).is_err());
        let late = Record { seq: 1, at: Nanos(u64::MAX), event: Journal::Resumed };
        assert!(EventRows::new(&[late]).is_err());
    }
}
