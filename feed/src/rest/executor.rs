//! The order executor of the I/O thread: the engine's `Intent`s in, `Event::Order` updates out,
//! over one [`RestClient`] per (account, venue).
//!
//! Its one rule: **an order whose fate is unknown is settled by a query before anything else is
//! sent for its position.** Binance deduplicates client order ids only among open orders, so a
//! MARKET close that timed out and filled would not stop a blind resend (BINANCE.md §5). Intents
//! therefore queue per position key ("lane"), first in first out; an unknown outcome (time-out,
//! 5xx, -1000/-1006/-1007, an unreadable 2xx body, a duplicate id) freezes the lane until a query
//! by `origClientOrderId` answers. Found: its status goes to the engine and the lane moves on.
//! "Order does not exist" (-2013) is believed only once the order can no longer arrive: Binance
//! refuses a request whose `timestamp` is more than `recvWindow` old (spot re-checks before the
//! matching engine, futures reports -5028), so until `timestamp + recvWindow + grace` on the
//! server's clock a -2013 means "not yet", and the query repeats. Failed queries repeat with a
//! capped exponential back-off.
//!
//! What it sends and when:
//! - Closes go before everything else; among equals, arrival order. A lane is never reordered.
//! - Rate limits: the client refuses (without sending) what the limiter holds, and the job stays
//!   at its lane's head until the limiter's time. A 429/418 answer is treated alike: nothing
//!   executed, so the same intent goes out, with the same client id, once the block expires.
//! - **During a ban (418, or a 429's `Retry-After`) nothing is sent, closes included**: every
//!   request during a ban extends it (2 minutes up to 3 days), so hammering would keep the stop
//!   unprotected longer. The close waits at the head of its lane, a [`Note::Held`] reports it
//!   (the operator's alarm), and it goes out the moment the ban ends.
//! - Entries that cannot go within `entry_max_wait_ms` are answered `Rejected(Transient)`
//!   unsent: an entry sized on a price minutes old is not the one the engine decided. Closes
//!   never expire.
//! - Other refusals become `Rejected(kind)`; retrying them is the engine's decision.
//!
//! Blocking: each request blocks the I/O thread for up to the client's request time-out. One
//! slow request therefore delays everything behind it by that much; what keeps it from starving
//! the rest is that closes are picked first, that [`OrderExecutor::poll`] sends at most
//! `max_requests_per_poll` requests before returning (so the caller can drain newly arrived
//! intents, and a new close overtakes queued entries), and that a lane waiting on a query or a
//! limiter holds only itself. Venues do not run in parallel: a futures request that hangs for the
//! whole time-out delays a margin close by that time (a thread per venue would lift this).
//!
//! It never decides whether to trade, never invents an order the engine did not ask for, and
//! holds no key material.

use std::collections::{BTreeMap, HashMap, VecDeque};

use engine::events::{Event, Intent, OrderIntent, OrderStatus, OrderUpdate, RejectKind};
use engine::money::{DecimalBuf, decimals_of_step, format_units};
use engine::types::OrderPurpose;
use engine::{
    AccountId, ClientOrderId, MarketKey, PositionKey, Price, Qty, Side, Symbol, SymbolRules, Venue,
};

use super::client::{CallError, MarketOrder, OrderFlags, RestClient, SideEffect};
use super::limits::Priority;
use super::order::{OrderReport, PositionSide};

/// Futures position mode of an account (`GET /fapi/v1/positionSide/dual`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum PositionMode {
    /// One position per symbol, side by sign; closes are `reduceOnly=true`.
    #[default]
    OneWay,
    /// LONG and SHORT positions side by side; `positionSide` says which one an order closes,
    /// and `reduceOnly` must not be sent.
    Hedge,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExecutorConfig {
    /// Wait before the first query of an unknown order: the order may still be in flight.
    pub first_query_delay_ms: u64,
    /// Cap of the doubling back-off between queries that fail.
    pub query_backoff_cap_ms: u64,
    /// Margin beyond `timestamp + recvWindow` before "does not exist" is believed: covers the
    /// error of the clock-offset estimate.
    pub not_found_grace_ms: u64,
    /// How long an entry may wait (behind a limit, a ban, or an unknown order) before it is
    /// answered `Rejected(Transient)` without being sent.
    pub entry_max_wait_ms: u64,
    /// Requests per `poll` call, so that the caller gets back to its intent ring.
    pub max_requests_per_poll: usize,
}

impl Default for ExecutorConfig {
    fn default() -> ExecutorConfig {
        ExecutorConfig {
            first_query_delay_ms: 500,
            query_backoff_cap_ms: 30_000,
            not_found_grace_ms: 1_000,
            entry_max_wait_ms: 5_000,
            max_requests_per_poll: 8,
        }
    }
}

/// What the executor reports besides order updates: the I/O thread's logs and metrics.
/// Carries no key material (errors never do).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Note {
    /// An intent waits for a rate limit (`banned`: a ban or `Retry-After`, which binds closes
    /// too) until `until_ms` on the local clock. Reported once per new hold time.
    Held { cid: ClientOrderId, until_ms: u64, banned: bool },
    /// An order's outcome is unknown; its position is frozen until a query settles it.
    Unresolved { cid: ClientOrderId, next_query_ms: u64 },
    /// A request failed; the update (if any) went to the engine separately.
    Failed { cid: ClientOrderId, error: CallError },
    /// An entry waited longer than `entry_max_wait_ms` and was refused unsent.
    EntryExpired { cid: ClientOrderId },
    /// The quantity is not on the symbol's step grid, or not positive: refused unsent.
    BadQuantity { cid: ClientOrderId },
    /// No client is configured for the intent's account and venue.
    NoVenue { cid: ClientOrderId, account: AccountId, venue: Venue },
}

/// Where the executor's output goes: the hot thread's result ring, or a vector in tests.
pub trait EventSink {
    fn event(&mut self, event: Event);

    fn note(&mut self, note: Note) {
        let _ = note;
    }
}

impl EventSink for Vec<Event> {
    fn event(&mut self, event: Event) {
        self.push(event);
    }
}

/// What a `poll` did and when the next one is due.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct PollOutcome {
    /// Requests sent (each either answered or failed).
    pub requests: usize,
    /// Intents still queued, closes among them.
    pub queued: usize,
    pub queued_closes: usize,
    /// Lanes frozen on an unknown order.
    pub unresolved: usize,
    /// The earliest local time something waiting becomes due; `None` if nothing waits.
    /// Work that was due but left for the request budget makes this `now`.
    pub next_due_ms: Option<u64>,
}

/// Why an intent cannot become a [`MarketOrder`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OrderBuildError {
    NotPositive,
    /// The quantity has digits beyond the symbol's step decimals.
    OffStep,
}

/// The quantity as text: at the step's decimals when the rules are known (Binance's form), or
/// else at the fewest decimals that hold it exactly. Never rounds.
fn quantity_text(qty: Qty, rules: Option<&SymbolRules>) -> Result<DecimalBuf, OrderBuildError> {
    if !qty.is_positive() {
        return Err(OrderBuildError::NotPositive);
    }
    match rules {
        Some(rules) => format_units(qty.units(), decimals_of_step(rules.step.units()))
            .map_err(|_| OrderBuildError::OffStep),
        None => format_units(qty.units(), decimals_of_step(qty.units()))
            .map_err(|_| OrderBuildError::OffStep),
    }
}

/// The MARKET order an intent stands for, with the venue's entry or close flags (DESIGN.md §1):
/// futures one-way `positionSide=BOTH` plus `reduceOnly=true` on a close; futures hedge mode
/// the key's `positionSide` and no `reduceOnly`; isolated margin `MARGIN_BUY` to enter and
/// `AUTO_REPAY` to close.
pub fn market_order(
    intent: &OrderIntent,
    rules: Option<&SymbolRules>,
    mode: PositionMode,
) -> Result<MarketOrder, OrderBuildError> {
    let close = intent.purpose == OrderPurpose::Close;
    let flags = match (intent.key.venue, mode) {
        (Venue::Usdm, PositionMode::OneWay) => {
            OrderFlags::Futures { position_side: PositionSide::Both, reduce_only: close }
        }
        (Venue::Usdm, PositionMode::Hedge) => OrderFlags::Futures {
            position_side: match intent.key.side {
                Side::Long => PositionSide::Long,
                Side::Short => PositionSide::Short,
            },
            reduce_only: false,
        },
        (Venue::Margin, _) => OrderFlags::IsolatedMargin {
            side_effect: if close { SideEffect::AutoRepay } else { SideEffect::MarginBuy },
        },
    };
    Ok(MarketOrder {
        symbol: intent.key.symbol,
        side: intent.order_side,
        quantity: quantity_text(intent.qty, rules)?,
        cid: intent.cid,
        flags,
    })
}

/// One queue of intents that must go out in order: a position key, or, for a query about an
/// order the executor never saw, its market.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct LaneKey {
    account: AccountId,
    venue: Venue,
    symbol: Symbol,
    side: Option<Side>,
}

impl LaneKey {
    /// Margin, and futures in one-way mode, hold one net position per symbol: a close of the
    /// long and an entry of the short act on the same exchange position and must not pass each
    /// other, so they share a lane. Only hedge mode has a lane per side.
    fn of(key: PositionKey, mode: PositionMode) -> LaneKey {
        let per_side = key.venue == Venue::Usdm && mode == PositionMode::Hedge;
        LaneKey {
            account: key.account,
            venue: key.venue,
            symbol: key.symbol,
            side: per_side.then_some(key.side),
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Op {
    Place(OrderIntent),
    Query { symbol: Symbol, cid: ClientOrderId },
}

impl Op {
    fn cid(&self) -> ClientOrderId {
        match self {
            Op::Place(intent) => intent.cid,
            Op::Query { cid, .. } => *cid,
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Job {
    op: Op,
    close: bool,
    seq: u64,
    arrived_ms: u64,
    not_before_ms: u64,
    /// The hold time last reported, so a long hold is reported once, not every poll.
    reported_hold_ms: u64,
}

#[derive(Clone, Copy, Debug)]
struct Unresolved {
    symbol: Symbol,
    cid: ClientOrderId,
    close: bool,
    seq: u64,
    attempts: u32,
    next_ms: u64,
}

#[derive(Debug, Default)]
struct Lane {
    jobs: VecDeque<Job>,
    unresolved: Option<Unresolved>,
}

/// What the executor knows of a client id it has seen.
#[derive(Clone, Copy, Debug)]
struct CidInfo {
    lane: LaneKey,
    /// Server time after which the order can no longer arrive (set once it was sent).
    settled_after_server_ms: Option<u64>,
}

/// Client ids remembered, oldest forgotten first: enough to route the engine's later queries
/// to the position's lane and to judge a -2013.
const REMEMBERED_CIDS: usize = 4096;

struct VenueClient {
    client: RestClient,
    mode: PositionMode,
}

/// See the module documentation.
pub struct OrderExecutor {
    config: ExecutorConfig,
    venues: HashMap<(AccountId, Venue), VenueClient>,
    rules: HashMap<MarketKey, SymbolRules>,
    lanes: BTreeMap<LaneKey, Lane>,
    cids: HashMap<ClientOrderId, CidInfo>,
    cid_order: VecDeque<ClientOrderId>,
    seq: u64,
}

impl core::fmt::Debug for OrderExecutor {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let venues: Vec<_> = self.venues.iter().map(|(k, v)| (k, &v.client, v.mode)).collect();
        f.debug_struct("OrderExecutor")
            .field("config", &self.config)
            .field("venues", &venues)
            .field("lanes", &self.lanes.len())
            .finish()
    }
}

enum Pick {
    Job(LaneKey),
    Query(LaneKey),
}

impl OrderExecutor {
    pub fn new(config: ExecutorConfig) -> OrderExecutor {
        OrderExecutor {
            config,
            venues: HashMap::new(),
            rules: HashMap::new(),
            lanes: BTreeMap::new(),
            cids: HashMap::new(),
            cid_order: VecDeque::new(),
            seq: 0,
        }
    }

    /// The client for one account's venue: a futures client for `Usdm`, a spot-host client
    /// for `Margin`. `mode` matters for futures only.
    pub fn add_venue(
        &mut self,
        account: AccountId,
        venue: Venue,
        client: RestClient,
        mode: PositionMode,
    ) {
        self.venues.insert((account, venue), VenueClient { client, mode });
    }

    /// The client, for the I/O thread's other calls (listen keys, reconciliation, fallback
    /// prices): they share its limiter and its warm connection.
    pub fn client_mut(&mut self, account: AccountId, venue: Venue) -> Option<&mut RestClient> {
        self.venues.get_mut(&(account, venue)).map(|v| &mut v.client)
    }

    pub fn set_rules(&mut self, market: MarketKey, rules: SymbolRules) {
        self.rules.insert(market, rules);
    }

    pub fn rules(&self, market: MarketKey) -> Option<&SymbolRules> {
        self.rules.get(&market)
    }

    /// Fetches exchangeInfo through the account's client and keeps every symbol's rules;
    /// returns how many symbols were read.
    pub fn load_rules(
        &mut self,
        account: AccountId,
        venue: Venue,
        symbols: &[Symbol],
    ) -> Result<usize, CallError> {
        let slot = self
            .venues
            .get_mut(&(account, venue))
            .ok_or(CallError::Unsupported("no client for this account and venue"))?;
        let info = slot.client.exchange_info(symbols)?;
        for symbol in &info.symbols {
            self.rules.insert(MarketKey { venue, symbol: symbol.symbol }, symbol.rules);
        }
        Ok(info.symbols.len())
    }

    fn remember(&mut self, cid: ClientOrderId, lane: LaneKey) {
        if self.cids.insert(cid, CidInfo { lane, settled_after_server_ms: None }).is_none() {
            self.cid_order.push_back(cid);
            if self.cid_order.len() > REMEMBERED_CIDS
                && let Some(old) = self.cid_order.pop_front()
            {
                self.cids.remove(&old);
            }
        }
    }

    /// Queues an intent from the engine. Nothing is sent until [`poll`](Self::poll).
    ///
    /// A query for an order that is still queued, or already being settled, joins that work:
    /// its answer is the answer to the query.
    pub fn submit(&mut self, intent: Intent, now_ms: u64) {
        self.seq += 1;
        let seq = self.seq;
        let (lane_key, op, close) = match intent {
            Intent::Place(order) => {
                let mode = self
                    .venues
                    .get(&(order.key.account, order.key.venue))
                    .map_or(PositionMode::OneWay, |v| v.mode);
                let lane = LaneKey::of(order.key, mode);
                self.remember(order.cid, lane);
                (lane, Op::Place(order), order.purpose == OrderPurpose::Close)
            }
            Intent::Query { account, venue, symbol, cid } => {
                let lane = self.cids.get(&cid).map(|info| info.lane).unwrap_or(LaneKey {
                    account,
                    venue,
                    symbol,
                    side: None,
                });
                let close = cid.tag().is_some_and(|t| t.purpose == OrderPurpose::Close);
                (lane, Op::Query { symbol, cid }, close)
            }
        };
        let lane = self.lanes.entry(lane_key).or_default();
        if let Op::Query { cid, .. } = op {
            let settling = lane.unresolved.is_some_and(|u| u.cid == cid);
            if settling || lane.jobs.iter().any(|job| job.op.cid() == cid) {
                return;
            }
        }
        lane.jobs.push_back(Job {
            op,
            close,
            seq,
            arrived_ms: now_ms,
            not_before_ms: now_ms,
            reported_hold_ms: 0,
        });
    }

    /// Sends what is due at `now_ms`, closes first, at most `max_requests_per_poll` requests,
    /// and reports every answer to `sink`. `now_ms` is the local clock the clients sign with
    /// (`SystemClock` in production), so that hold times the limiter gives line up.
    pub fn poll<S: EventSink>(&mut self, now_ms: u64, sink: &mut S) -> PollOutcome {
        let mut requests = 0;
        let mut budget_left = true;
        while let Some(pick) = self.next_due(now_ms) {
            if requests >= self.config.max_requests_per_poll {
                budget_left = false;
                break;
            }
            let sent = match pick {
                Pick::Job(lane) => self.run_job(lane, now_ms, sink),
                Pick::Query(lane) => self.run_query(lane, now_ms, sink),
            };
            requests += usize::from(sent);
        }
        self.lanes.retain(|_, lane| !lane.jobs.is_empty() || lane.unresolved.is_some());
        let mut outcome = PollOutcome { requests, ..PollOutcome::default() };
        for lane in self.lanes.values() {
            outcome.queued += lane.jobs.len();
            outcome.queued_closes += lane.jobs.iter().filter(|j| j.close).count();
            let due = match (&lane.unresolved, lane.jobs.front()) {
                (Some(u), _) => Some(u.next_ms),
                (None, Some(job)) => Some(job.not_before_ms),
                (None, None) => None,
            };
            outcome.unresolved += usize::from(lane.unresolved.is_some());
            outcome.next_due_ms = match (outcome.next_due_ms, due) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        if !budget_left {
            outcome.next_due_ms = Some(now_ms);
        }
        outcome
    }

    /// The most urgent due work: closes before entries, then arrival order.
    fn next_due(&self, now_ms: u64) -> Option<Pick> {
        let mut best: Option<((bool, u64), Pick)> = None;
        for (key, lane) in &self.lanes {
            let candidate = match (&lane.unresolved, lane.jobs.front()) {
                (Some(u), _) if u.next_ms <= now_ms => ((!u.close, u.seq), Pick::Query(*key)),
                (Some(_), _) => continue,
                (None, Some(job)) if job.not_before_ms <= now_ms => {
                    ((!job.close, job.seq), Pick::Job(*key))
                }
                (None, _) => continue,
            };
            if best.as_ref().is_none_or(|(rank, _)| candidate.0 < *rank) {
                best = Some(candidate);
            }
        }
        best.map(|(_, pick)| pick)
    }

    fn update(
        account: AccountId,
        venue: Venue,
        symbol: Symbol,
        cid: ClientOrderId,
        status: OrderStatus,
        exchange_ms: u64,
    ) -> Event {
        Event::Order(OrderUpdate {
            account,
            venue,
            symbol,
            cid,
            status,
            cum_qty: Qty::ZERO,
            avg_price: Price::ZERO,
            exchange_ms,
        })
    }

    fn report_event(report: &OrderReport, account: AccountId, venue: Venue) -> Event {
        match report.update(account, venue) {
            Some(update) => Event::Order(update),
            // An ACK says accepted and nothing more: live, nothing known to have filled.
            None => OrderExecutor::update(
                account,
                venue,
                report.symbol,
                report.cid,
                OrderStatus::New,
                report.exchange_ms,
            ),
        }
    }

    /// Runs the head job of a lane; returns whether a request was sent.
    fn run_job<S: EventSink>(&mut self, lane_key: LaneKey, now_ms: u64, sink: &mut S) -> bool {
        let Some(job) = self.lanes.get(&lane_key).and_then(|l| l.jobs.front().copied()) else {
            return false;
        };
        match job.op {
            Op::Place(intent) => self.run_place(lane_key, job, intent, now_ms, sink),
            Op::Query { symbol, cid } => {
                // The engine asks about an order it cannot place: settle it like one of ours.
                let lane = self.lanes.get_mut(&lane_key).expect("picked lane exists");
                lane.jobs.pop_front();
                lane.unresolved = Some(Unresolved {
                    symbol,
                    cid,
                    close: job.close,
                    seq: job.seq,
                    attempts: 0,
                    next_ms: now_ms,
                });
                self.run_query(lane_key, now_ms, sink)
            }
        }
    }

    fn pop(&mut self, lane_key: LaneKey) {
        if let Some(lane) = self.lanes.get_mut(&lane_key) {
            lane.jobs.pop_front();
        }
    }

    fn hold<S: EventSink>(
        &mut self,
        lane_key: LaneKey,
        cid: ClientOrderId,
        until_ms: u64,
        banned: bool,
        sink: &mut S,
    ) {
        let entry_deadline = self.config.entry_max_wait_ms.saturating_add(1);
        let Some(job) = self.lanes.get_mut(&lane_key).and_then(|l| l.jobs.front_mut()) else {
            return;
        };
        // An entry is looked at again when it expires, even if the hold lasts longer.
        job.not_before_ms = if job.close {
            until_ms
        } else {
            until_ms.min(job.arrived_ms.saturating_add(entry_deadline))
        };
        if job.reported_hold_ms != until_ms {
            job.reported_hold_ms = until_ms;
            sink.note(Note::Held { cid, until_ms, banned });
        }
    }

    /// When a refused-for-rate request may go again, on the local clock; always in the future.
    fn retry_at(client: &RestClient, error: &CallError, now_ms: u64) -> (u64, bool) {
        let (server_ms, banned) = match error.held_until() {
            Some((until_ms, limit)) => (until_ms, limit.is_none()),
            // Binance's own 429/418: the limiter has recorded the block.
            None => (client.blocked_until_ms(), true),
        };
        (client.local_ms_of(server_ms).max(now_ms + 1), banned)
    }

    fn run_place<S: EventSink>(
        &mut self,
        lane_key: LaneKey,
        job: Job,
        intent: OrderIntent,
        now_ms: u64,
        sink: &mut S,
    ) -> bool {
        let (account, venue, symbol, cid) =
            (intent.key.account, intent.key.venue, intent.key.symbol, intent.cid);
        let refuse = |kind: RejectKind| {
            OrderExecutor::update(account, venue, symbol, cid, OrderStatus::Rejected(kind), 0)
        };
        if !job.close && now_ms.saturating_sub(job.arrived_ms) > self.config.entry_max_wait_ms {
            self.pop(lane_key);
            sink.note(Note::EntryExpired { cid });
            sink.event(refuse(RejectKind::Transient));
            return false;
        }
        let rules = self.rules.get(&intent.key.market()).copied();
        let Some(slot) = self.venues.get_mut(&(account, venue)) else {
            self.pop(lane_key);
            sink.note(Note::NoVenue { cid, account, venue });
            sink.event(refuse(RejectKind::Permanent));
            return false;
        };
        let order = match market_order(&intent, rules.as_ref(), slot.mode) {
            Ok(order) => order,
            Err(_) => {
                self.pop(lane_key);
                sink.note(Note::BadQuantity { cid });
                sink.event(refuse(RejectKind::Permanent));
                return false;
            }
        };
        let priority = if job.close { Priority::Close } else { Priority::Normal };
        let result = slot.client.place_market_order(&order, priority);
        let server_now = slot.client.server_now_ms();
        let settled_after = slot.client.last_timestamp_ms().saturating_add(
            u64::from(slot.client.recv_window_ms()) + self.config.not_found_grace_ms,
        );
        match result {
            Ok(report) if report.cid == cid => {
                self.mark_sent(cid, settled_after);
                self.pop(lane_key);
                sink.event(OrderExecutor::report_event(&report, account, venue));
            }
            Ok(_) => {
                // An answer about another order: whatever happened to ours is unknown.
                self.mark_sent(cid, settled_after);
                self.unresolve(lane_key, job, now_ms, server_now, sink);
            }
            // First: a 5xx whose body names a rate limit may still have executed, so it is
            // settled by a query, never re-sent as if it had been held back.
            Err(error) if error.outcome_unknown() => {
                self.mark_sent(cid, settled_after);
                sink.note(Note::Failed { cid, error });
                self.unresolve(lane_key, job, now_ms, server_now, sink);
            }
            Err(error) if error.is_rate_limit() => {
                let (until, banned) = OrderExecutor::retry_at(&slot.client, &error, now_ms);
                self.hold(lane_key, cid, until, banned, sink);
                return error.reached_server();
            }
            Err(error) => {
                self.pop(lane_key);
                let kind = match &error {
                    CallError::Rest(e) => e.reject_kind().unwrap_or(RejectKind::Transient),
                    CallError::Transport(_) | CallError::ClockSync(_) => RejectKind::Transient,
                    CallError::Throttled { .. } => RejectKind::Transient,
                    CallError::TooCostly(_)
                    | CallError::NoCredentials
                    | CallError::Unsupported(_) => RejectKind::Permanent,
                };
                let sent = error.reached_server();
                sink.note(Note::Failed { cid, error });
                sink.event(OrderExecutor::update(
                    account,
                    venue,
                    symbol,
                    cid,
                    OrderStatus::Rejected(kind),
                    server_now,
                ));
                return sent;
            }
        }
        true
    }

    fn mark_sent(&mut self, cid: ClientOrderId, settled_after_server_ms: u64) {
        if let Some(info) = self.cids.get_mut(&cid) {
            info.settled_after_server_ms = Some(settled_after_server_ms);
        }
    }

    /// Reports the head job's order unknown and freezes its lane until a query settles it.
    fn unresolve<S: EventSink>(
        &mut self,
        lane_key: LaneKey,
        job: Job,
        now_ms: u64,
        server_now: u64,
        sink: &mut S,
    ) {
        let (symbol, cid) = match job.op {
            Op::Place(intent) => (intent.key.symbol, intent.cid),
            Op::Query { symbol, cid } => (symbol, cid),
        };
        let next_ms = now_ms.saturating_add(self.config.first_query_delay_ms);
        let lane = self.lanes.get_mut(&lane_key).expect("picked lane exists");
        lane.jobs.pop_front();
        lane.unresolved =
            Some(Unresolved { symbol, cid, close: job.close, seq: job.seq, attempts: 0, next_ms });
        sink.note(Note::Unresolved { cid, next_query_ms: next_ms });
        sink.event(OrderExecutor::update(
            lane_key.account,
            lane_key.venue,
            symbol,
            cid,
            OrderStatus::Unknown,
            server_now,
        ));
    }

    fn backoff_ms(&self, attempts: u32) -> u64 {
        let doubling = 1u64 << attempts.min(20);
        self.config
            .first_query_delay_ms
            .max(1)
            .saturating_mul(doubling)
            .min(self.config.query_backoff_cap_ms)
    }

    /// Queries a lane's unknown order by client id; returns whether a request was sent.
    fn run_query<S: EventSink>(&mut self, lane_key: LaneKey, now_ms: u64, sink: &mut S) -> bool {
        let Some(mut pending) = self.lanes.get(&lane_key).and_then(|l| l.unresolved) else {
            return false;
        };
        let (account, venue) = (lane_key.account, lane_key.venue);
        let cid = pending.cid;
        let Some(slot) = self.venues.get_mut(&(account, venue)) else {
            if let Some(lane) = self.lanes.get_mut(&lane_key) {
                lane.unresolved = None;
            }
            sink.note(Note::NoVenue { cid, account, venue });
            return false;
        };
        let priority = if pending.close { Priority::Close } else { Priority::Normal };
        let result = slot.client.query_order(pending.symbol, cid, priority);
        let server_now = slot.client.server_now_ms();
        // The query's own signed timestamp: the server processed it no earlier than this, so an
        // order whose recvWindow had ended by then can no longer arrive.
        let query_signed_ms = slot.client.last_timestamp_ms();
        let unknown_id_after = query_signed_ms.saturating_add(
            u64::from(slot.client.recv_window_ms()) + self.config.not_found_grace_ms,
        );
        let mut sent = true;
        let settled = match result {
            Ok(report) if report.cid == cid => {
                sink.event(OrderExecutor::report_event(&report, account, venue));
                true
            }
            Ok(_) => {
                pending.attempts += 1;
                pending.next_ms = now_ms + self.backoff_ms(pending.attempts);
                false
            }
            Err(error) if error.rest().and_then(|e| e.query_status()).is_some() => {
                // An id this process never sent (sent before a restart, or forgotten) may
                // have been sent just now by a previous owner: believe "does not exist" only
                // once a query signed after that order's recvWindow says so.
                let settled_after =
                    match self.cids.get(&cid).and_then(|i| i.settled_after_server_ms) {
                        Some(after) => after,
                        None => {
                            self.remember(cid, lane_key);
                            if let Some(info) = self.cids.get_mut(&cid) {
                                info.settled_after_server_ms = Some(unknown_id_after);
                            }
                            unknown_id_after
                        }
                    };
                if query_signed_ms < settled_after {
                    // Not there yet, but it may still arrive: ask again once it cannot.
                    let slot = &self.venues[&(account, venue)];
                    pending.next_ms = slot.client.local_ms_of(settled_after).max(now_ms + 1);
                    sink.note(Note::Unresolved { cid, next_query_ms: pending.next_ms });
                    false
                } else {
                    sink.event(OrderExecutor::update(
                        account,
                        venue,
                        pending.symbol,
                        cid,
                        OrderStatus::NotFound,
                        server_now,
                    ));
                    true
                }
            }
            Err(error) if error.is_rate_limit() => {
                let (until, banned) = OrderExecutor::retry_at(&slot.client, &error, now_ms);
                sent = error.reached_server();
                if pending.next_ms != until {
                    sink.note(Note::Held { cid, until_ms: until, banned });
                }
                pending.next_ms = until;
                false
            }
            Err(error) => {
                sent = error.reached_server();
                pending.attempts += 1;
                pending.next_ms = now_ms + self.backoff_ms(pending.attempts);
                sink.note(Note::Failed { cid, error });
                sink.note(Note::Unresolved { cid, next_query_ms: pending.next_ms });
                false
            }
        };
        if let Some(lane) = self.lanes.get_mut(&lane_key) {
            lane.unresolved = if settled { None } else { Some(pending) };
        }
        sent
    }

    /// Intents queued and lanes frozen, for `/metrics` and `/readyz`.
    pub fn backlog(&self) -> (usize, usize) {
        let queued = self.lanes.values().map(|l| l.jobs.len()).sum();
        let unresolved = self.lanes.values().filter(|l| l.unresolved.is_some()).count();
        (queued, unresolved)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::types::{Modality, OrderSide, OrderTag, PositionId};

    fn intent(venue: Venue, side: Side, purpose: OrderPurpose, qty: &str) -> OrderIntent {
        let key =
            PositionKey { account: AccountId(0), venue, symbol: Symbol::lit("BTCUSDT"), side };
        OrderIntent {
            cid: ClientOrderId::new(OrderTag {
                modality: Modality::SafetyNet,
                purpose,
                position: PositionId(7),
                sequence: 1,
            }),
            key,
            order_side: match purpose {
                OrderPurpose::Entry => side.opening_order(),
                OrderPurpose::Close => side.closing_order(),
            },
            qty: Qty::lit(qty),
            purpose,
            modality: Modality::SafetyNet,
        }
    }

    fn rules(step: &str) -> SymbolRules {
        SymbolRules { step: Qty::lit(step), ..SymbolRules::UNRESTRICTED }
    }

    #[test]
    fn each_venue_closes_with_its_own_flags() {
        let close = intent(Venue::Usdm, Side::Long, OrderPurpose::Close, "0.005");
        let one_way = market_order(&close, Some(&rules("0.001")), PositionMode::OneWay).unwrap();
        assert_eq!(
            one_way.params().as_str(),
            "symbol=BTCUSDT&side=SELL&positionSide=BOTH&type=MARKET&quantity=0.005\
             &reduceOnly=true&newClientOrderId=rbd-SX-7-1&newOrderRespType=RESULT"
        );
        let hedge = market_order(&close, Some(&rules("0.001")), PositionMode::Hedge).unwrap();
        assert_eq!(
            hedge.params().as_str(),
            "symbol=BTCUSDT&side=SELL&positionSide=LONG&type=MARKET&quantity=0.005\
             &newClientOrderId=rbd-SX-7-1&newOrderRespType=RESULT"
        );
        let entry = intent(Venue::Usdm, Side::Short, OrderPurpose::Entry, "2");
        let open = market_order(&entry, Some(&rules("1")), PositionMode::OneWay).unwrap();
        assert!(open.params().as_str().contains("side=SELL&positionSide=BOTH"));
        assert!(!open.params().as_str().contains("reduceOnly"));
        let margin_close = intent(Venue::Margin, Side::Short, OrderPurpose::Close, "0.5");
        let order = market_order(&margin_close, Some(&rules("0.01")), PositionMode::Hedge).unwrap();
        assert_eq!(
            order.params().as_str(),
            "symbol=BTCUSDT&isIsolated=TRUE&side=BUY&type=MARKET&quantity=0.50\
             &sideEffectType=AUTO_REPAY&newClientOrderId=rbd-SX-7-1&newOrderRespType=RESULT"
        );
        let margin_entry = intent(Venue::Margin, Side::Long, OrderPurpose::Entry, "0.5");
        let order = market_order(&margin_entry, None, PositionMode::OneWay).unwrap();
        assert!(order.params().as_str().contains("side=BUY&type=MARKET&quantity=0.5&"));
        assert!(order.params().as_str().contains("sideEffectType=MARGIN_BUY"));
        assert_eq!(order.side, OrderSide::Buy);
    }

    #[test]
    fn quantities_are_never_rounded() {
        let off = intent(Venue::Usdm, Side::Long, OrderPurpose::Close, "0.0015");
        let err = market_order(&off, Some(&rules("0.001")), PositionMode::OneWay);
        assert_eq!(err, Err(OrderBuildError::OffStep));
        let zero = intent(Venue::Usdm, Side::Long, OrderPurpose::Close, "0");
        assert_eq!(
            market_order(&zero, None, PositionMode::OneWay),
            Err(OrderBuildError::NotPositive)
        );
        let exact = intent(Venue::Usdm, Side::Long, OrderPurpose::Close, "12.34567891");
        let order = market_order(&exact, None, PositionMode::OneWay).unwrap();
        assert_eq!(order.quantity.as_str(), "12.34567891");
    }
}
