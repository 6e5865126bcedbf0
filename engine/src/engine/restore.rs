//! Rebuilding the engine from its own journal after a restart (issue 4, recovery).
//!
//! The journal records every decision and every exchange fact the engine acted on, so folding
//! it record by record yields each position's modality, state, quantity, entry, stop, trailing
//! span and the one order it may have in flight. `Engine::restore` turns that into an engine
//! that holds the same positions and owns the same keys, with these deliberate differences:
//!
//! - It does not hold the lease and knows no price, rules, balance or exchange snapshot: the
//!   daemon feeds those (reconciliation with the exchange) before granting the lease, so no stop
//!   is evaluated against a stale world.
//! - An order that was in flight is treated as unanswered since time zero: the first tick with
//!   the lease queries it by client order id, and nothing is re-sent until its fate is known.
//! - An exiting position with nothing in flight retries its close at once.
//! - Armed entries start their moving averages afresh (the prices they had seen are not
//!   journaled), and isolated-margin fill books start empty: the start-up reconciliation
//!   replays `myTrades`, whose trade ids the books then follow.
//!
//! Pure like the rest of the engine: records in, state out.

use std::collections::BTreeMap;

use super::{CoreState, Engine, KeySlot, LiveOrder, Position, SafetyState, State};
use crate::Config;
use crate::events::{ArmParams, Journal, Nanos, OrderStatus, Record};
use crate::money::{Price, Qty};
use crate::signal::Crossover;
use crate::trailing::HandSpan;
use crate::types::{Modality, OrderPurpose, PositionId, PositionKey};

/// Why a journal cannot be folded into an engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RestoreError {
    /// A record names a position whose beginning the journal does not hold: the journal was
    /// cut (retention, a lost segment) and state must come from a fuller copy (Postgres).
    UnknownPosition { seq: u64, id: PositionId },
    /// Sequence numbers must increase; a journal out of order is not this engine's.
    OutOfOrder { seq: u64, after: u64 },
}

impl core::fmt::Display for RestoreError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            RestoreError::UnknownPosition { seq, id } => {
                write!(f, "record {seq} names position {} whose start is not in the journal", id.0)
            }
            RestoreError::OutOfOrder { seq, after } => {
                write!(f, "record {seq} follows record {after}: out of order")
            }
        }
    }
}

impl std::error::Error for RestoreError {}

#[derive(Clone, Debug)]
struct Folded {
    key: PositionKey,
    modality: Modality,
    state: State,
    qty: Qty,
    entry: Price,
    stop: Price,
    trail: Option<(Price, Price)>,
    level: i64,
    params: ArmParams,
    seq: u32,
    live: Option<(crate::types::ClientOrderId, OrderPurpose)>,
    flatten: bool,
    last_fill_ms: u64,
    /// Exchange time of the latest update with a fill, for the record that follows it.
    pending_fill_ms: u64,
    since: Nanos,
    first_seq: u64,
}

/// The journal folded so far. Feed it every record in order, then build the engine.
#[derive(Clone, Debug, Default)]
pub struct JournalFold {
    positions: BTreeMap<u64, Folded>,
    halted: bool,
    last_seq: u64,
    next_id: u64,
    /// Keys whose own close filled, with that fill's exchange time (see `KeySlot::settle_ms`).
    settled: BTreeMap<PositionKey, u64>,
}

impl JournalFold {
    pub fn new() -> JournalFold {
        JournalFold::default()
    }

    /// The first sequence number a restart still needs: the first record of the oldest position
    /// that is not over. Journal segments wholly below it may be deleted once stored elsewhere.
    pub fn oldest_needed_seq(&self) -> u64 {
        self.positions.values().map(|p| p.first_seq).min().unwrap_or(self.last_seq + 1)
    }

    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    pub fn apply(&mut self, record: &Record) -> Result<(), RestoreError> {
        let Record { seq, at, event } = *record;
        if seq <= self.last_seq {
            return Err(RestoreError::OutOfOrder { seq, after: self.last_seq });
        }
        self.last_seq = seq;
        let unknown = |id: PositionId| RestoreError::UnknownPosition { seq, id };
        match event {
            Journal::Armed { id, key, params } => {
                self.note_id(id);
                self.positions.insert(
                    id.0,
                    Folded::new(
                        key,
                        Modality::Core,
                        State::Core(CoreState::Armed),
                        at,
                        seq,
                        params,
                    ),
                );
            }
            Journal::Disarmed { id } => {
                self.positions.remove(&id.0).ok_or(unknown(id))?;
            }
            Journal::OrderSent { intent, .. } => {
                let tag = intent.cid.tag();
                let id = tag.map(|t| t.position).ok_or(unknown(PositionId(0)))?;
                let p = self.positions.get_mut(&id.0).ok_or(unknown(id))?;
                p.seq = tag.map_or(p.seq, |t| t.sequence);
                p.live = Some((intent.cid, intent.purpose));
                match (intent.purpose, p.modality) {
                    (OrderPurpose::Entry, _) => {
                        p.state = State::Core(CoreState::Entering);
                        p.since = at;
                    }
                    (OrderPurpose::Close, Modality::Core) => {
                        p.state = State::Core(CoreState::Exiting)
                    }
                    (OrderPurpose::Close, Modality::SafetyNet) => {
                        p.state = State::Safety(SafetyState::Exiting)
                    }
                }
            }
            Journal::OrderUpdated { id, update } => {
                let p = self.positions.get_mut(&id.0).ok_or(unknown(id))?;
                let purpose = p.live.map(|(_, purpose)| purpose);
                let filled = update.cum_qty.is_positive();
                if filled {
                    p.pending_fill_ms = update.exchange_ms;
                }
                match (purpose, update.status) {
                    (Some(OrderPurpose::Entry), OrderStatus::PartiallyFilled) => {
                        p.qty = update.cum_qty;
                        p.entry = update.avg_price;
                    }
                    (
                        Some(OrderPurpose::Close),
                        OrderStatus::Filled | OrderStatus::Canceled | OrderStatus::Expired,
                    ) => {
                        p.live = None;
                        p.qty = p.qty.saturating_sub(update.cum_qty).max(Qty::ZERO);
                        if filled {
                            p.last_fill_ms = p.last_fill_ms.max(update.exchange_ms);
                            let settle = self.settled.entry(p.key).or_default();
                            *settle = (*settle).max(update.exchange_ms);
                        }
                    }
                    (
                        Some(OrderPurpose::Close),
                        OrderStatus::NotFound | OrderStatus::Rejected(_),
                    ) => {
                        p.live = None;
                    }
                    _ => {}
                }
            }
            Journal::PositionOpened { id, key: _, qty, entry, stop, span } => {
                let p = self.positions.get_mut(&id.0).ok_or(unknown(id))?;
                p.state = State::Core(CoreState::Active);
                p.qty = qty;
                p.entry = entry;
                p.stop = stop;
                p.trail = Some((entry, span));
                p.level = 0;
                p.live = None;
                p.last_fill_ms = p.pending_fill_ms;
                p.since = at;
            }
            Journal::PositionDetected { id, key, qty, entry, .. } => {
                self.note_id(id);
                let mut p = Folded::new(
                    key,
                    Modality::SafetyNet,
                    State::Safety(SafetyState::Protected),
                    at,
                    seq,
                    ArmParams::default(),
                );
                p.qty = qty;
                p.entry = entry;
                self.positions.insert(id.0, p);
            }
            Journal::PositionUpdated { id, qty, entry } => {
                let p = self.positions.get_mut(&id.0).ok_or(unknown(id))?;
                p.qty = qty;
                p.entry = entry;
            }
            Journal::SafetyStopSet { id, stop, .. } => {
                self.positions.get_mut(&id.0).ok_or(unknown(id))?.stop = stop;
            }
            Journal::StopMoved { id, to, level, .. } => {
                let p = self.positions.get_mut(&id.0).ok_or(unknown(id))?;
                p.stop = to;
                p.level = level;
            }
            Journal::CloseDeferred { id, reason } => {
                let p = self.positions.get_mut(&id.0).ok_or(unknown(id))?;
                if !p.state.is_exiting() && reason == crate::events::CloseReason::Flatten {
                    p.flatten = true;
                }
            }
            Journal::PositionClosed { id, .. } => {
                self.positions.remove(&id.0).ok_or(unknown(id))?;
            }
            Journal::Halted { flatten } => {
                self.halted = true;
                if flatten {
                    for p in self.positions.values_mut() {
                        if p.state == State::Core(CoreState::Entering) {
                            p.flatten = true;
                        }
                    }
                }
            }
            Journal::Resumed => self.halted = false,
            Journal::EntrySignal { id, .. }
            | Journal::EntryBlocked { id, .. }
            | Journal::EntrySuppressed { id }
            | Journal::EntryRejected { id, .. }
            | Journal::QuerySent { id, .. }
            | Journal::StopTriggered { id, .. }
            | Journal::CloseBlocked { id, .. } => {
                self.positions.get(&id.0).ok_or(unknown(id))?;
            }
            Journal::ArmRejected { .. }
            | Journal::OrderIgnored { .. }
            | Journal::DustIgnored { .. }
            | Journal::SnapshotIgnored { .. }
            | Journal::LeaseChanged { .. }
            | Journal::PriceStale { .. }
            | Journal::PriceFresh { .. }
            | Journal::FeedChanged { .. } => {}
        }
        Ok(())
    }

    fn note_id(&mut self, id: PositionId) {
        self.next_id = self.next_id.max(id.0 + 1);
    }
}

impl Folded {
    fn new(
        key: PositionKey,
        modality: Modality,
        state: State,
        at: Nanos,
        seq: u64,
        params: ArmParams,
    ) -> Folded {
        Folded {
            key,
            modality,
            state,
            qty: Qty::ZERO,
            entry: Price::ZERO,
            stop: Price::ZERO,
            trail: None,
            level: 0,
            params,
            seq: 0,
            live: None,
            flatten: false,
            last_fill_ms: 0,
            pending_fill_ms: 0,
            since: at,
            first_seq: seq,
        }
    }
}

impl Engine {
    /// An engine holding what `fold` recorded; see the module doc for what it deliberately
    /// does not hold yet. Numbering continues after the journal's last id and sequence.
    pub fn restore(config: Config, fold: &JournalFold) -> Engine {
        let mut engine = Engine::new(config);
        engine.resume_numbering(fold.next_id.max(1), fold.last_seq + 1);
        engine.halted = fold.halted;
        for (&key, &ms) in &fold.settled {
            engine.key_slot(key).settle_ms = ms;
        }
        for (&id, f) in &fold.positions {
            let m = engine.market_slot(f.key.market());
            let mut p = Position::blank(PositionId(id), f.key, m as u32, f.modality, f.state);
            p.qty = f.qty;
            p.entry = f.entry;
            p.stop = f.stop;
            p.trail = f.trail.map(|(entry, span)| HandSpan {
                side: f.key.side,
                entry,
                span,
                fees: config.fees,
            });
            p.level = f.level;
            p.params = f.params;
            p.seq = f.seq;
            p.flatten = f.flatten;
            p.last_fill_ms = f.last_fill_ms;
            p.since = f.since;
            p.live = f.live.map(|(cid, purpose)| LiveOrder {
                cid,
                purpose,
                asked_at: Nanos(0),
                exchange_at_send: Qty::ZERO,
            });
            if p.state.is_exiting() && p.live.is_none() {
                p.retry_at = Nanos(0);
            }
            if f.state == State::Core(CoreState::Armed) {
                let fast = f.params.ma_fast.unwrap_or(config.ma_fast);
                let slow = f.params.ma_slow.unwrap_or(config.ma_slow);
                p.signal = Crossover::new(fast, slow).ok();
                let slot = engine.allocate(p);
                engine.markets[m].armed.push(slot);
                continue;
            }
            let slot = engine.allocate(p);
            let key_slot: &mut KeySlot = engine.key_slot(f.key);
            key_slot.owner = Some(slot);
            engine.markets[m].live.push(slot);
        }
        for m in 0..engine.markets.len() {
            engine.refresh_wake(m);
        }
        // Queries and retries are due at the first tick that holds the lease.
        engine.next_retry = Nanos(0);
        engine
    }
}
