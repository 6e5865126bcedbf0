//! The engine: every position, who owns its key, its stop, and the one order it may have in
//! flight. `on_event` is the only way in; the sink is the only way out.
//!
//! Layout for the hot path: markets live in a `Vec` indexed through one hash lookup; each market
//! lists the slots of its live positions and armed entries, so a tick costs O(positions on that
//! market); and each market keeps a "wake" band (the tightest stop and the nearest trailing level
//! per side), so a tick that can neither fire a stop nor move one costs two comparisons per side.
//! Positions live in a slab whose freed slots are reused, so steady state allocates nothing.

mod restore;

use rustc_hash::FxHashMap;

pub use restore::{JournalFold, RestoreError};

use crate::events::{
    ArmParams, ArmRejection, BalanceScope, CloseProblem, CloseReason, ClosedBy, DisarmRejection,
    EntryRejection, Event, Intent, Journal, MarginFill, Nanos, OrderIntent, OrderStatus,
    OrderUpdate, Origin, Record, RejectKind, Reply, Sink,
};
use crate::filters::{RoundMode, SymbolRules, loose_side};
use crate::money::{Amount, Price, Qty, Ratio, SCALE};
use crate::signal::{Cross, Crossover, MAX_PERIOD};
use crate::trailing::{HandSpan, stop_reached};
use crate::types::{
    AccountId, ClientOrderId, MarketKey, Modality, OrderPurpose, OrderSide, OrderTag, PositionId,
    PositionKey, Side, Symbol, TriggerSource, Venue,
};

/// The engine's defaults (DESIGN.md sections 3, 4 and 6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// Safety Net distance from entry.
    pub safety_pct: Ratio,
    /// Trading fee plus slippage, for the break-even step.
    pub fees: Ratio,
    pub risk: Ratio,
    /// Technical stop distance when an arm gives none.
    pub technical_stop_pct: Ratio,
    pub ma_fast: u32,
    pub ma_slow: u32,
    /// A trigger price older than this is stale.
    pub stale_after_ms: u64,
    /// First wait before re-sending a rejected close; doubles per attempt up to the cap.
    pub retry_base_ms: u64,
    pub retry_cap_ms: u64,
    /// An order with no final answer after this long is queried by client order id, and again
    /// every time this passes: a lost update must never leave a position waiting for good.
    pub query_after_ms: u64,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            safety_pct: Ratio::percent(2),
            fees: Ratio::from_units(150_000),
            risk: Ratio::percent(1),
            technical_stop_pct: Ratio::percent(2),
            ma_fast: 9,
            ma_slow: 21,
            stale_after_ms: 5_000,
            retry_base_ms: 250,
            retry_cap_ms: 10_000,
            query_after_ms: 10_000,
        }
    }
}

/// Core Trading's lifecycle (DESIGN.md section 4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CoreState {
    /// Waiting for its entry signal; owns no key.
    Armed,
    /// Entry order sent; owns the key.
    Entering,
    /// Filled, trailing its stop.
    Active,
    /// Close sent (or due for a retry); nothing more is sent until its fate is known.
    Exiting,
    Closed,
    EntryFailed,
    Disarmed,
}

/// The Safety Net's lifecycle (DESIGN.md section 3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SafetyState {
    Protected,
    Exiting,
    Closed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Core(CoreState),
    Safety(SafetyState),
}

impl State {
    fn evaluates_stop(self) -> bool {
        matches!(self, State::Core(CoreState::Active) | State::Safety(SafetyState::Protected))
    }

    fn is_exiting(self) -> bool {
        matches!(self, State::Core(CoreState::Exiting) | State::Safety(SafetyState::Exiting))
    }

    /// Closed, failed or disarmed: nothing more will happen to it.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            State::Core(CoreState::Closed | CoreState::EntryFailed | CoreState::Disarmed)
                | State::Safety(SafetyState::Closed)
        )
    }
}

/// A position as the control API and the status screen show it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PositionView {
    pub id: PositionId,
    pub key: PositionKey,
    pub modality: Modality,
    pub state: State,
    pub qty: Qty,
    pub entry: Price,
    /// Zero while no stop applies (armed, entering).
    pub stop: Price,
    pub trigger: Option<Price>,
    pub since: Nanos,
    pub live_order: Option<ClientOrderId>,
}

#[derive(Clone, Copy, Debug)]
struct LiveOrder {
    cid: ClientOrderId,
    purpose: OrderPurpose,
    /// When it was sent or last queried: the clock for the next query.
    asked_at: Nanos,
    /// What the exchange showed on the key when it was sent: a snapshot stamped with the fill's
    /// own time is believed only if it is consistent with this minus what filled.
    exchange_at_send: Qty,
}

#[derive(Clone, Debug)]
struct Position {
    id: PositionId,
    key: PositionKey,
    market: u32,
    modality: Modality,
    state: State,
    qty: Qty,
    entry: Price,
    stop: Price,
    trail: Option<HandSpan>,
    level: i64,
    params: ArmParams,
    signal: Option<Crossover>,
    /// Last action sequence used for a client order id.
    seq: u32,
    live: Option<LiveOrder>,
    attempts: u32,
    retry_at: Nanos,
    flatten: bool,
    /// Exchange time of the latest fill of robsond's own orders on this position: a snapshot
    /// older than it does not yet reflect that fill.
    last_fill_ms: u64,
    since: Nanos,
}

impl Position {
    fn blank(
        id: PositionId,
        key: PositionKey,
        market: u32,
        modality: Modality,
        state: State,
    ) -> Position {
        Position {
            id,
            key,
            market,
            modality,
            state,
            qty: Qty::ZERO,
            entry: Price::ZERO,
            stop: Price::ZERO,
            trail: None,
            level: 0,
            params: ArmParams::default(),
            signal: None,
            seq: 0,
            live: None,
            attempts: 0,
            retry_at: Nanos(u64::MAX),
            flatten: false,
            last_fill_ms: 0,
            since: Nanos(0),
        }
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct Quote {
    price: Price,
    known: bool,
    /// When the stream last gave this price. A REST fallback price moves the trigger but does
    /// not make the stream fresh: staleness (and `/readyz`) is about the stream.
    stream_at: Option<Nanos>,
}

impl Quote {
    fn set(&mut self, price: Price, at: Nanos, origin: Origin) {
        self.price = price;
        self.known = true;
        if origin == Origin::Stream {
            self.stream_at = Some(at);
        }
    }
}

/// The band outside which a tick has work to do; inside it, a tick is two comparisons a side.
#[derive(Clone, Copy, Debug)]
struct Wake {
    /// The highest long stop: a long trigger at or below it may fire.
    long_fire: Price,
    /// The nearest long trailing level: a long trigger at or above it moves a stop.
    long_trail: Price,
    short_fire: Price,
    short_trail: Price,
}

impl Wake {
    const IDLE: Wake = Wake {
        long_fire: Price::from_units(i64::MIN),
        long_trail: Price::from_units(i64::MAX),
        short_fire: Price::from_units(i64::MAX),
        short_trail: Price::from_units(i64::MIN),
    };

    /// Widens the band by what `p` waits for, if its stop is live.
    fn include(&mut self, p: &Position) {
        if !p.state.evaluates_stop() {
            return;
        }
        if p.stop.units() <= 0 {
            // No stop yet (no entry and no price when it was found): every tick must look at it.
            match p.key.side {
                Side::Long => self.long_fire = Price::from_units(i64::MAX),
                Side::Short => self.short_fire = Price::from_units(i64::MIN),
            }
            return;
        }
        let next_level = p.trail.map(|t| t.next_level_price(p.level));
        match p.key.side {
            Side::Long => {
                self.long_fire = self.long_fire.max(p.stop);
                if let Some(level_price) = next_level {
                    self.long_trail = self.long_trail.min(level_price);
                }
            }
            Side::Short => {
                self.short_fire = self.short_fire.min(p.stop);
                if let Some(level_price) = next_level {
                    self.short_trail = self.short_trail.max(level_price);
                }
            }
        }
    }
}

/// The next index of a walk over a market's live list while visiting `slot` at `i`: a close
/// that retires its position (dust) swap-removes it, moving the list's last position into `i`,
/// which must then be visited rather than skipped (a skipped position fell out of the wake band
/// and its stop stopped firing).
fn next_index(live: &[u32], i: usize, slot: u32) -> usize {
    if live.get(i) == Some(&slot) { i + 1 } else { i }
}

fn closed_state(modality: Modality) -> State {
    match modality {
        Modality::Core => State::Core(CoreState::Closed),
        Modality::SafetyNet => State::Safety(SafetyState::Closed),
    }
}

/// Whether the trigger has reached a trailing level's price (the side's profitable direction).
#[inline(always)]
fn level_reached(side: Side, trigger: Price, level_price: Price) -> bool {
    match side {
        Side::Long => trigger >= level_price,
        Side::Short => trigger <= level_price,
    }
}

#[derive(Clone, Debug)]
struct Market {
    key: MarketKey,
    rules: SymbolRules,
    source: TriggerSource,
    safety_pct: Option<Ratio>,
    leverage: u32,
    mark: Quote,
    last: Quote,
    bid: Quote,
    ask: Quote,
    stale: bool,
    /// Slots of positions that own a key here (entering, active, protected, exiting).
    live: Vec<u32>,
    /// Slots of armed Core entries waiting for their signal here.
    armed: Vec<u32>,
    wake: Wake,
}

impl Market {
    fn new(key: MarketKey) -> Market {
        Market {
            key,
            rules: SymbolRules::UNRESTRICTED,
            source: TriggerSource::default_for(key.venue),
            safety_pct: None,
            leverage: 1,
            mark: Quote::default(),
            last: Quote::default(),
            bid: Quote::default(),
            ask: Quote::default(),
            stale: false,
            live: Vec::new(),
            armed: Vec::new(),
            wake: Wake::IDLE,
        }
    }

    fn trigger_quote(&self, side: Side) -> Quote {
        match (self.source, side) {
            (TriggerSource::Mark, _) => self.mark,
            (TriggerSource::Last, _) => self.last,
            (TriggerSource::Book, Side::Long) => self.bid,
            (TriggerSource::Book, Side::Short) => self.ask,
        }
    }

    fn trigger(&self, side: Side) -> Option<Price> {
        let quote = self.trigger_quote(side);
        quote.known.then_some(quote.price)
    }

    fn needs_evaluation(&self) -> bool {
        let long = self
            .trigger(Side::Long)
            .is_some_and(|t| t <= self.wake.long_fire || t >= self.wake.long_trail);
        let short = self
            .trigger(Side::Short)
            .is_some_and(|t| t >= self.wake.short_fire || t <= self.wake.short_trail);
        long | short
    }

    fn is_stale(&self, now: Nanos, limit_ms: u64) -> bool {
        let oldest = match self.source {
            TriggerSource::Book => {
                self.bid.stream_at.zip(self.ask.stream_at).map(|(b, a)| b.min(a))
            }
            _ => self.trigger_quote(Side::Long).stream_at,
        };
        oldest.is_none_or(|at| now.millis_since(at) > limit_ms)
    }
}

/// What the exchange says about one key, and who owns it.
#[derive(Clone, Copy, Debug, Default)]
struct KeySlot {
    exchange_qty: Qty,
    exchange_entry: Price,
    exchange_ms: u64,
    owner: Option<u32>,
    /// After robsond's own close filled at this exchange time, older snapshots are stale and
    /// must not hand the key to the Safety Net again.
    settle_ms: u64,
    dust_reported: bool,
}

/// An isolated-margin position rebuilt from fills: signed net base quantity and its
/// volume-weighted entry (DESIGN.md section 1).
#[derive(Clone, Copy, Debug, Default)]
struct MarginBook {
    net: i64,
    entry: Price,
    last_trade_id: Option<u64>,
}

impl MarginBook {
    fn apply(&mut self, signed_qty: i64, price: Price) {
        let net = i128::from(self.net);
        let add = i128::from(signed_qty);
        let after = net + add;
        if net == 0 || net.signum() == add.signum() {
            // Adding to the side (or opening it): volume-weighted, rounded to the nearest 1e-8.
            let cost =
                net.abs() * i128::from(self.entry.units()) + add.abs() * i128::from(price.units());
            let entry =
                crate::filters::Grid::new(0, 1).round_ratio(cost, after.abs(), RoundMode::Nearest);
            self.entry = Price::from_units(entry);
        } else if after == 0 {
            self.entry = Price::ZERO;
        } else if after.signum() != net.signum() {
            // Crossed through flat: the remainder is a new position at this fill's price.
            self.entry = price;
        }
        self.net = after.clamp(i128::from(i64::MIN + 1), i128::from(i64::MAX)) as i64;
    }

    fn side_qty(&self, side: Side) -> Qty {
        match side {
            Side::Long => Qty::from_units(self.net.max(0)),
            Side::Short => Qty::from_units((-self.net).max(0)),
        }
    }
}

pub struct Engine {
    config: Config,
    markets: Vec<Market>,
    market_index: FxHashMap<MarketKey, u32>,
    slots: Vec<Position>,
    free_slots: Vec<u32>,
    keys: FxHashMap<PositionKey, KeySlot>,
    margin: FxHashMap<(AccountId, Symbol), MarginBook>,
    balances: FxHashMap<(AccountId, BalanceScope), Amount>,
    next_id: u64,
    next_seq: u64,
    halted: bool,
    /// Shutting down (SIGTERM): no new entries, stops still fire. Not journaled: the next
    /// instance starts without it.
    draining: bool,
    lease: bool,
    /// Earliest retry due among exiting positions with nothing in flight.
    next_retry: Nanos,
    now: Nanos,
}

impl Engine {
    pub fn new(config: Config) -> Engine {
        Engine {
            config,
            markets: Vec::new(),
            market_index: FxHashMap::default(),
            slots: Vec::new(),
            free_slots: Vec::new(),
            keys: FxHashMap::default(),
            margin: FxHashMap::default(),
            balances: FxHashMap::default(),
            next_id: 1,
            next_seq: 1,
            halted: false,
            draining: false,
            // DESIGN.md section 5: an instance sends nothing until it holds the lease.
            lease: false,
            next_retry: Nanos(u64::MAX),
            now: Nanos(0),
        }
    }

    /// Continues numbering after a restart, so that position ids and journal sequence numbers
    /// are never reused (and client order ids never collide with an earlier run's).
    pub fn resume_numbering(&mut self, next_id: u64, next_seq: u64) {
        self.next_id = self.next_id.max(next_id);
        self.next_seq = self.next_seq.max(next_seq);
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn is_halted(&self) -> bool {
        self.halted
    }

    pub fn holds_lease(&self) -> bool {
        self.lease
    }

    /// Pre-sizes for `markets` markets and `positions` positions, so that start-up, not the first
    /// busy minute, pays for the memory.
    pub fn reserve(&mut self, markets: usize, positions: usize) {
        self.markets.reserve(markets);
        self.market_index.reserve(markets);
        self.slots.reserve(positions);
        self.free_slots.reserve(positions);
        self.keys.reserve(positions);
    }

    /// The one way in. Time is the caller's; every output goes to `sink`.
    pub fn on_event<S: Sink>(&mut self, event: Event, now: Nanos, sink: &mut S) -> Reply {
        self.now = now;
        let reply = match event {
            Event::Mark { market, price, origin } => {
                let m = self.market_slot(market);
                self.markets[m].mark.set(price, now, origin);
                self.after_price(m, sink);
                Reply::Done
            }
            Event::Book { market, bid, ask, origin } => {
                let m = self.market_slot(market);
                self.markets[m].bid.set(bid, now, origin);
                self.markets[m].ask.set(ask, now, origin);
                self.after_price(m, sink);
                Reply::Done
            }
            Event::Trade { market, price, origin } => {
                let m = self.market_slot(market);
                self.markets[m].last.set(price, now, origin);
                if origin == Origin::Stream && !self.markets[m].armed.is_empty() {
                    self.feed_signals(m, price, sink);
                }
                self.after_price(m, sink);
                Reply::Done
            }
            Event::Position { key, qty, entry, exchange_ms } => {
                let latest = self.keys.get(&key).map_or(0, |k| k.exchange_ms);
                if key.venue == Venue::Margin && exchange_ms >= latest {
                    self.seed_margin_book(key, qty, entry);
                }
                self.on_snapshot(key, qty.abs(), entry, exchange_ms, sink);
                Reply::Done
            }
            Event::MarginTrade(fill) => {
                self.on_margin_trade(fill, sink);
                Reply::Done
            }
            Event::Balance { account, scope, available } => {
                self.balances.insert((account, scope), available);
                Reply::Done
            }
            Event::Order(update) => {
                self.on_order(update, sink);
                Reply::Done
            }
            Event::Rules { market, rules } => {
                let m = self.market_slot(market);
                self.markets[m].rules = rules;
                self.reround_core_stops(m);
                // Stops set before the filters came were on the 1e-8 grid: put them on the tick.
                self.reprice_safety_stops(m, sink);
                Reply::Done
            }
            Event::SetTriggerSource { market, source } => {
                let m = self.market_slot(market);
                self.markets[m].source = source;
                self.refresh_wake(m);
                self.after_price(m, sink);
                Reply::Done
            }
            Event::SetSafetyPct { market, pct } => {
                let m = self.market_slot(market);
                self.markets[m].safety_pct = pct;
                self.reprice_safety_stops(m, sink);
                Reply::Done
            }
            Event::SetLeverage { market, leverage } => {
                let m = self.market_slot(market);
                self.markets[m].leverage = leverage.max(1);
                Reply::Done
            }
            Event::Arm { key, params } => self.arm(key, params, sink),
            Event::Disarm { id } => self.disarm(id, sink),
            Event::Halt { flatten } => {
                self.halt(flatten, sink);
                Reply::Done
            }
            Event::Drain => {
                self.draining = true;
                Reply::Done
            }
            Event::Resume => {
                self.halted = false;
                self.journal(sink, Journal::Resumed);
                Reply::Done
            }
            Event::Lease { held } => {
                if held != self.lease {
                    self.lease = held;
                    self.journal(sink, Journal::LeaseChanged { held });
                    if held {
                        // Prices first (trailing, real stop hits), then what was asked to close.
                        for m in 0..self.markets.len() {
                            self.evaluate_market(m, sink);
                        }
                        self.send_deferred_flattens(sink);
                        // Closes decided or ended while the lease was away are due now.
                        self.next_retry = now;
                    }
                }
                Reply::Done
            }
            Event::Tick => {
                self.update_staleness(sink);
                Reply::Done
            }
            Event::Feed { stream, state } => {
                self.journal(sink, Journal::FeedChanged { stream, state });
                Reply::Done
            }
        };
        if now >= self.next_retry {
            self.run_due_retries(sink);
        }
        reply
    }

    /// Markets whose trigger price is older than the staleness limit at `now` (or never came),
    /// among those with something to protect or enter.
    pub fn stale_markets(&self, now: Nanos) -> impl Iterator<Item = MarketKey> + '_ {
        let limit = self.config.stale_after_ms;
        self.markets
            .iter()
            .filter(move |m| (!m.live.is_empty() || !m.armed.is_empty()) && m.is_stale(now, limit))
            .map(|m| m.key)
    }

    /// Every armed, entering, open or exiting position.
    pub fn positions(&self) -> impl Iterator<Item = PositionView> + '_ {
        self.markets.iter().flat_map(move |m| {
            m.armed.iter().chain(m.live.iter()).map(move |&slot| {
                let p = &self.slots[slot as usize];
                PositionView {
                    id: p.id,
                    key: p.key,
                    modality: p.modality,
                    state: p.state,
                    qty: p.qty,
                    entry: p.entry,
                    stop: p.stop,
                    trigger: m.trigger(p.key.side),
                    since: p.since,
                    live_order: p.live.map(|l| l.cid),
                }
            })
        })
    }

    /// The exchange's last word on a key, as (quantity, entry), if any came.
    pub fn exchange_position(&self, key: &PositionKey) -> Option<(Qty, Price)> {
        self.keys.get(key).map(|k| (k.exchange_qty, k.exchange_entry))
    }

    /// Who owns a key now.
    pub fn owner(&self, key: &PositionKey) -> Option<(Modality, PositionId)> {
        let slot = self.keys.get(key)?.owner?;
        let p = &self.slots[slot as usize];
        Some((p.modality, p.id))
    }

    // ---- plumbing ----

    fn journal<S: Sink>(&mut self, sink: &mut S, event: Journal) {
        let seq = self.next_seq;
        self.next_seq += 1;
        sink.record(Record { seq, at: self.now, event });
    }

    fn market_slot(&mut self, key: MarketKey) -> usize {
        if let Some(&m) = self.market_index.get(&key) {
            return m as usize;
        }
        let m = self.markets.len();
        self.markets.push(Market::new(key));
        self.market_index.insert(key, m as u32);
        m
    }

    fn allocate(&mut self, position: Position) -> u32 {
        match self.free_slots.pop() {
            Some(slot) => {
                self.slots[slot as usize] = position;
                slot
            }
            None => {
                self.slots.push(position);
                (self.slots.len() - 1) as u32
            }
        }
    }

    fn fresh_id(&mut self) -> PositionId {
        let id = PositionId(self.next_id);
        self.next_id += 1;
        id
    }

    fn key_slot(&mut self, key: PositionKey) -> &mut KeySlot {
        self.keys.entry(key).or_default()
    }

    /// Ends a position that owned a key: frees the key, drops it from its market, frees its slot.
    fn retire(&mut self, slot: u32, state: State, by: ClosedBy, sink: &mut impl Sink) {
        let (id, key, market) = {
            let p = &mut self.slots[slot as usize];
            p.state = state;
            p.live = None;
            p.retry_at = Nanos(u64::MAX);
            (p.id, p.key, p.market as usize)
        };
        if let Some(k) = self.keys.get_mut(&key)
            && k.owner == Some(slot)
        {
            k.owner = None;
        }
        let live = &mut self.markets[market].live;
        if let Some(i) = live.iter().position(|&s| s == slot) {
            live.swap_remove(i);
        }
        self.free_slots.push(slot);
        self.journal(sink, Journal::PositionClosed { id, by });
        // The band may now be wider than needed: that costs one extra scan, which narrows it.
    }

    /// Adds one position's stop and trailing level to its market's band: enough after a
    /// position appears or tightens, and O(1) where a full refresh would be O(market).
    fn widen_wake(&mut self, slot: u32) {
        let p = &self.slots[slot as usize];
        self.markets[p.market as usize].wake.include(p);
    }

    fn refresh_wake(&mut self, m: usize) {
        let mut wake = Wake::IDLE;
        for &slot in &self.markets[m].live {
            wake.include(&self.slots[slot as usize]);
        }
        self.markets[m].wake = wake;
    }

    // ---- prices, stops, trailing ----

    fn after_price<S: Sink>(&mut self, m: usize, sink: &mut S) {
        if self.lease && self.markets[m].needs_evaluation() {
            self.evaluate_market(m, sink);
        }
    }

    fn evaluate_market<S: Sink>(&mut self, m: usize, sink: &mut S) {
        if !self.lease {
            return;
        }
        // One pass: each position is evaluated, then counted into the new wake band as it now
        // stands (a stop that moved, a position that started exiting).
        let mut wake = Wake::IDLE;
        let mut i = 0;
        while i < self.markets[m].live.len() {
            let slot = self.markets[m].live[i];
            self.evaluate_position(slot, sink);
            wake.include(&self.slots[slot as usize]);
            i = next_index(&self.markets[m].live, i, slot);
        }
        self.markets[m].wake = wake;
    }

    fn evaluate_position<S: Sink>(&mut self, slot: u32, sink: &mut S) {
        let p = &self.slots[slot as usize];
        if !p.state.evaluates_stop() || !self.lease {
            return;
        }
        let market = &self.markets[p.market as usize];
        let Some(trigger) = market.trigger(p.key.side) else {
            return;
        };
        if p.stop.units() <= 0 {
            // A Safety Net position found with no entry price and no market price: protect it
            // from the first price that arrives, until its real entry is known.
            let pct = market.safety_pct.unwrap_or(self.config.safety_pct);
            let stop = market.rules.stop_at_distance(p.key.side, trigger, pct);
            let id = p.id;
            self.slots[slot as usize].stop = stop;
            self.journal(sink, Journal::SafetyStopSet { id, stop, pct });
            return;
        }
        if let Some(trail) = p.trail
            && level_reached(p.key.side, trigger, trail.next_level_price(p.level))
        {
            let level = trail.level(trigger);
            if level > p.level {
                let from = p.stop;
                let to = trail.tighten(from, level, &market.rules);
                let id = p.id;
                let p = &mut self.slots[slot as usize];
                p.level = level;
                if to != from {
                    p.stop = to;
                    self.journal(sink, Journal::StopMoved { id, from, to, level });
                }
            }
        }
        let p = &self.slots[slot as usize];
        if stop_reached(p.key.side, trigger, p.stop) {
            let (id, stop) = (p.id, p.stop);
            self.journal(sink, Journal::StopTriggered { id, trigger, stop });
            self.send_close(slot, CloseReason::StopHit, sink);
        }
    }

    /// Emits the one close of a position and marks it exiting; nothing more is sent for it
    /// until this order's fate is known (DESIGN.md section 5).
    fn send_close<S: Sink>(&mut self, slot: u32, reason: CloseReason, sink: &mut S) {
        let p = &self.slots[slot as usize];
        let exiting = match p.modality {
            Modality::Core => State::Core(CoreState::Exiting),
            Modality::SafetyNet => State::Safety(SafetyState::Exiting),
        };
        if !self.lease {
            // Another instance may be acting: send nothing, and keep the decision where the
            // lease's return finds it. An exiting position stays due for its retry; an open one
            // keeps its state and stop, marked for the flatten that was asked of it.
            let now = self.now;
            let p = &mut self.slots[slot as usize];
            if p.state.is_exiting() {
                p.retry_at = now;
            } else if reason == CloseReason::Flatten {
                p.flatten = true;
            }
            let id = p.id;
            self.journal(sink, Journal::CloseDeferred { id, reason });
            return;
        }
        debug_assert!(p.live.is_none(), "a second close while one is in flight");
        debug_assert_eq!(
            self.keys.get(&p.key).and_then(|k| k.owner),
            Some(slot),
            "close without owning the key"
        );
        let rules = self.markets[p.market as usize].rules;
        // The freshest quantity: a snapshot newer than robsond's own last fill on the key (a
        // reduction by hand while an earlier close was in flight) wins; Core never closes more
        // than it holds, nor more than the exchange shows.
        let exchange =
            self.keys.get(&p.key).filter(|k| k.exchange_ms > 0 && k.exchange_ms >= p.last_fill_ms);
        let held = match (exchange, p.modality) {
            (Some(k), Modality::SafetyNet) => k.exchange_qty,
            (Some(k), Modality::Core) => p.qty.min(k.exchange_qty),
            (None, _) => p.qty,
        };
        let qty = rules.order_qty(held);
        let exchange_at_send = exchange.map_or(held, |k| k.exchange_qty);
        let (id, key, modality) = (p.id, p.key, p.modality);
        if !rules.meets_min_qty(qty) {
            // Nothing a market order can close: the position is over as far as robsond can act.
            // The key is freed, so what the exchange shows next (the user adding by hand) is
            // protected afresh instead of waiting behind an unclosable close.
            self.journal(sink, Journal::CloseBlocked { id, problem: CloseProblem::Dust });
            self.retire(slot, closed_state(modality), ClosedBy::Dust, sink);
            self.adopt_known(key, (modality == Modality::Core).then_some(id), sink);
            return;
        }
        let now = self.now;
        let query_at = now.saturating_add_millis(self.config.query_after_ms);
        self.next_retry = self.next_retry.min(query_at);
        let p = &mut self.slots[slot as usize];
        let resized = p.qty != held;
        p.qty = held;
        p.seq += 1;
        let cid = ClientOrderId::new(OrderTag {
            modality,
            purpose: OrderPurpose::Close,
            position: id,
            sequence: p.seq,
        });
        p.live =
            Some(LiveOrder { cid, purpose: OrderPurpose::Close, asked_at: now, exchange_at_send });
        p.state = exiting;
        p.retry_at = Nanos(u64::MAX);
        let intent = OrderIntent {
            cid,
            key,
            order_side: key.side.closing_order(),
            qty,
            purpose: OrderPurpose::Close,
            modality,
        };
        if resized {
            // The journal must hold every quantity a restart needs: this close is for `held`.
            let entry = self.slots[slot as usize].entry;
            self.journal(sink, Journal::PositionUpdated { id, qty: held, entry });
        }
        self.journal(sink, Journal::OrderSent { intent, reason: Some(reason) });
        sink.intent(Intent::Place(intent));
    }

    fn run_due_retries<S: Sink>(&mut self, sink: &mut S) {
        if !self.lease {
            // Nothing may be sent; regaining the lease runs this again.
            return;
        }
        self.next_retry = Nanos(u64::MAX);
        let query_after = self.config.query_after_ms;
        for slot in 0..self.slots.len() as u32 {
            let p = &self.slots[slot as usize];
            if p.state.is_terminal() {
                continue;
            }
            if let Some(live) = p.live {
                let due = live.asked_at.saturating_add_millis(query_after);
                if due <= self.now {
                    self.query(slot, sink);
                } else {
                    self.next_retry = self.next_retry.min(due);
                }
                continue;
            }
            if !p.state.is_exiting() {
                continue;
            }
            if p.retry_at <= self.now {
                self.send_close(slot, CloseReason::Retry, sink);
            } else {
                self.next_retry = self.next_retry.min(p.retry_at);
            }
        }
    }

    /// Asks the exchange for the fate of the position's live order, and restarts its clock.
    fn query<S: Sink>(&mut self, slot: u32, sink: &mut S) {
        let now = self.now;
        let query_at = now.saturating_add_millis(self.config.query_after_ms);
        let p = &mut self.slots[slot as usize];
        let Some(live) = p.live.as_mut() else { return };
        live.asked_at = now;
        let (id, key, cid) = (p.id, p.key, live.cid);
        self.next_retry = self.next_retry.min(query_at);
        self.journal(sink, Journal::QuerySent { id, cid });
        let (account, venue, symbol) = (key.account, key.venue, key.symbol);
        sink.intent(Intent::Query { account, venue, symbol, cid });
    }

    fn schedule_retry(&mut self, slot: u32, kind: RejectKind) {
        let config = self.config;
        let p = &mut self.slots[slot as usize];
        p.attempts += 1;
        let wait = match kind {
            RejectKind::Transient | RejectKind::Permanent => {
                let doubling = 1u64 << p.attempts.saturating_sub(1).min(20);
                config.retry_base_ms.saturating_mul(doubling).min(config.retry_cap_ms)
            }
            // The exchange says there is nothing to close: wait for its position snapshot to say
            // so too, and only look again after the longest back-off.
            RejectKind::NothingToClose => config.retry_cap_ms,
        };
        p.retry_at = self.now.saturating_add_millis(wait);
        self.next_retry = self.next_retry.min(p.retry_at);
    }

    fn halt<S: Sink>(&mut self, flatten: bool, sink: &mut S) {
        self.halted = true;
        self.journal(sink, Journal::Halted { flatten });
        if !flatten {
            return;
        }
        for m in 0..self.markets.len() {
            let mut i = 0;
            while i < self.markets[m].live.len() {
                let slot = self.markets[m].live[i];
                let state = self.slots[slot as usize].state;
                if state.evaluates_stop() {
                    self.send_close(slot, CloseReason::Flatten, sink);
                } else if state == State::Core(CoreState::Entering) {
                    self.slots[slot as usize].flatten = true;
                }
                i = next_index(&self.markets[m].live, i, slot);
            }
            self.refresh_wake(m);
        }
    }

    /// Flattens asked for while the lease was away, now that closes may be sent.
    fn send_deferred_flattens<S: Sink>(&mut self, sink: &mut S) {
        for m in 0..self.markets.len() {
            let mut i = 0;
            while i < self.markets[m].live.len() {
                let slot = self.markets[m].live[i];
                let p = &self.slots[slot as usize];
                if p.flatten && p.state.evaluates_stop() {
                    self.send_close(slot, CloseReason::Flatten, sink);
                }
                i = next_index(&self.markets[m].live, i, slot);
            }
        }
    }

    fn update_staleness<S: Sink>(&mut self, sink: &mut S) {
        let limit = self.config.stale_after_ms;
        for m in 0..self.markets.len() {
            let market = &self.markets[m];
            if market.live.is_empty() && market.armed.is_empty() {
                continue;
            }
            let stale = market.is_stale(self.now, limit);
            if stale != market.stale {
                let key = market.key;
                self.markets[m].stale = stale;
                let event = if stale {
                    Journal::PriceStale { market: key }
                } else {
                    Journal::PriceFresh { market: key }
                };
                self.journal(sink, event);
            }
        }
    }

    // ---- Safety Net ----

    fn safety_pct(&self, m: usize) -> Ratio {
        self.markets[m].safety_pct.unwrap_or(self.config.safety_pct)
    }

    /// Gives a key with an unowned exchange position to the Safety Net.
    fn adopt<S: Sink>(
        &mut self,
        key: PositionKey,
        qty: Qty,
        entry: Price,
        from: Option<PositionId>,
        sink: &mut S,
    ) {
        let m = self.market_slot(key.market());
        let rules = self.markets[m].rules;
        if !rules.meets_min_qty(rules.order_qty(qty)) {
            let k = self.key_slot(key);
            if !k.dust_reported {
                k.dust_reported = true;
                self.journal(sink, Journal::DustIgnored { key, qty });
            }
            return;
        }
        self.key_slot(key).dust_reported = false;
        // A position with no entry price (a margin balance whose fills are not known yet) is
        // still protected: from the current trigger price, until the real entry arrives.
        let reference = if entry.is_positive() {
            entry
        } else {
            self.markets[m].trigger(key.side).unwrap_or(Price::ZERO)
        };
        let pct = self.safety_pct(m);
        let stop = if reference.is_positive() {
            rules.stop_at_distance(key.side, reference, pct)
        } else {
            Price::ZERO
        };
        let id = self.fresh_id();
        let mut p = Position::blank(
            id,
            key,
            m as u32,
            Modality::SafetyNet,
            State::Safety(SafetyState::Protected),
        );
        p.qty = qty;
        p.entry = entry;
        p.stop = stop;
        p.since = self.now;
        let slot = self.allocate(p);
        self.key_slot(key).owner = Some(slot);
        self.markets[m].live.push(slot);
        self.journal(sink, Journal::PositionDetected { id, key, qty, entry, from });
        self.journal(sink, Journal::SafetyStopSet { id, stop, pct });
        self.evaluate_position(slot, sink);
        self.widen_wake(slot);
    }

    fn reround_core_stops(&mut self, m: usize) {
        let grid = self.markets[m].rules.price_grid();
        for i in 0..self.markets[m].live.len() {
            let slot = self.markets[m].live[i];
            let p = &mut self.slots[slot as usize];
            if p.modality == Modality::Core && p.stop.is_positive() {
                let side = p.key.side;
                p.stop = Price::from_units(grid.round(p.stop.units(), loose_side(side)));
            }
        }
    }

    fn reprice_safety_stops<S: Sink>(&mut self, m: usize, sink: &mut S) {
        let pct = self.safety_pct(m);
        let rules = self.markets[m].rules;
        for i in 0..self.markets[m].live.len() {
            let slot = self.markets[m].live[i];
            let p = &mut self.slots[slot as usize];
            if p.state != State::Safety(SafetyState::Protected) || !p.entry.is_positive() {
                continue;
            }
            let stop = rules.stop_at_distance(p.key.side, p.entry, pct);
            if stop != p.stop {
                p.stop = stop;
                let id = p.id;
                self.journal(sink, Journal::SafetyStopSet { id, stop, pct });
            }
        }
        self.evaluate_market(m, sink);
    }

    fn on_snapshot<S: Sink>(
        &mut self,
        key: PositionKey,
        qty: Qty,
        entry: Price,
        exchange_ms: u64,
        sink: &mut S,
    ) {
        let k = self.key_slot(key);
        if exchange_ms < k.exchange_ms {
            self.journal(sink, Journal::SnapshotIgnored { key, exchange_ms });
            return;
        }
        k.exchange_qty = qty;
        k.exchange_entry = entry;
        k.exchange_ms = exchange_ms;
        if qty.is_zero() {
            k.dust_reported = false;
        }
        let (owner, settle_ms) = (k.owner, k.settle_ms);
        let Some(slot) = owner else {
            if exchange_ms >= settle_ms && qty.is_positive() {
                self.adopt(key, qty, entry, None, sink);
            } else if exchange_ms < settle_ms {
                self.journal(sink, Journal::SnapshotIgnored { key, exchange_ms });
            }
            return;
        };
        let p = &self.slots[slot as usize];
        if exchange_ms < p.last_fill_ms || p.state == State::Core(CoreState::Entering) {
            // Older than robsond's own latest fill, or an entry still in flight: the order's
            // own updates are the truth for now.
            return;
        }
        if p.live.is_some() {
            // A close is in flight: a smaller (or zero) quantity may be that very close filling,
            // reported before its order update. The key stays owned until the order's fate is
            // known, so no second close can start on it; the outcome then settles the position.
            return;
        }
        if qty.is_zero() {
            self.retire(slot, closed_state(p.modality), ClosedBy::External, sink);
            return;
        }
        match p.modality {
            Modality::Core => {
                // The user reduced a Core position by hand: never close more than is there.
                // Quantity added by hand stays out of Core's close and goes to the Safety Net
                // after Core exits.
                // Only strictly after robsond's own last fill: an update stamped with the fill's
                // own time may be an intermediate one from the same match.
                if qty < p.qty && exchange_ms > p.last_fill_ms {
                    let (id, entry) = (p.id, p.entry);
                    self.slots[slot as usize].qty = qty;
                    self.journal(sink, Journal::PositionUpdated { id, qty, entry });
                }
            }
            Modality::SafetyNet => {
                if qty == p.qty && entry == p.entry {
                    return;
                }
                let (id, m, side, state) = (p.id, p.market as usize, p.key.side, p.state);
                let p = &mut self.slots[slot as usize];
                p.qty = qty;
                if entry.is_positive() {
                    p.entry = entry;
                }
                let entry = p.entry;
                self.journal(sink, Journal::PositionUpdated { id, qty, entry });
                if state == State::Safety(SafetyState::Protected) && entry.is_positive() {
                    let pct = self.safety_pct(m);
                    let stop = self.markets[m].rules.stop_at_distance(side, entry, pct);
                    self.slots[slot as usize].stop = stop;
                    self.journal(sink, Journal::SafetyStopSet { id, stop, pct });
                    self.evaluate_position(slot, sink);
                    self.widen_wake(slot);
                }
            }
        }
    }

    fn seed_margin_book(&mut self, key: PositionKey, qty: Qty, entry: Price) {
        let book = self.margin.entry((key.account, key.symbol)).or_default();
        let qty = qty.abs().units();
        let signed = match key.side {
            Side::Long => qty,
            Side::Short => -qty,
        };
        let book_side = match book.net.signum() {
            1 => Some(Side::Long),
            -1 => Some(Side::Short),
            _ => None,
        };
        if qty > 0 {
            book.net = signed;
            book.entry = entry;
        } else if book_side == Some(key.side) {
            // Flat on the side the book holds; a zero for the other side says nothing.
            book.net = 0;
            book.entry = Price::ZERO;
        }
    }

    fn on_margin_trade<S: Sink>(&mut self, fill: MarginFill, sink: &mut S) {
        let MarginFill { account, symbol, side, qty, price, trade_id, exchange_ms } = fill;
        if !qty.is_positive() || !price.is_positive() {
            return;
        }
        let book = self.margin.entry((account, symbol)).or_default();
        if book.last_trade_id.is_some_and(|last| trade_id <= last) {
            return;
        }
        book.last_trade_id = Some(trade_id);
        let signed = match side {
            OrderSide::Buy => qty.abs().units(),
            OrderSide::Sell => -qty.abs().units(),
        };
        book.apply(signed, price);
        let book = *book;
        for side in [Side::Long, Side::Short] {
            let key = PositionKey { account, venue: Venue::Margin, symbol, side };
            let side_qty = book.side_qty(side);
            let entry = if side_qty.is_positive() { book.entry } else { Price::ZERO };
            let known = self
                .keys
                .get(&key)
                .is_some_and(|k| k.exchange_ms > 0 || k.exchange_qty.is_positive());
            if side_qty.is_positive() || known {
                self.on_snapshot(key, side_qty, entry, exchange_ms, sink);
            }
        }
    }

    // ---- orders ----

    fn find_live(&self, update: &OrderUpdate, position: PositionId) -> Option<u32> {
        let m =
            *self.market_index.get(&MarketKey { venue: update.venue, symbol: update.symbol })?;
        self.markets[m as usize].live.iter().copied().find(|&slot| {
            let p = &self.slots[slot as usize];
            p.id == position && p.key.account == update.account
        })
    }

    fn on_order<S: Sink>(&mut self, update: OrderUpdate, sink: &mut S) {
        let slot = update.cid.tag().and_then(|tag| self.find_live(&update, tag.position));
        let live =
            slot.and_then(|slot| self.slots[slot as usize].live.filter(|l| l.cid == update.cid));
        let (Some(slot), Some(live)) = (slot, live) else {
            self.journal(sink, Journal::OrderIgnored { update });
            return;
        };
        let id = self.slots[slot as usize].id;
        self.journal(sink, Journal::OrderUpdated { id, update });
        let filled = update.cum_qty.is_positive();
        match (live.purpose, update.status) {
            (_, OrderStatus::New) => {}
            (OrderPurpose::Entry, OrderStatus::PartiallyFilled) => {
                let p = &mut self.slots[slot as usize];
                p.qty = update.cum_qty;
                p.entry = update.avg_price;
            }
            (OrderPurpose::Close, OrderStatus::PartiallyFilled) => {}
            (_, OrderStatus::Unknown) => self.query(slot, sink),
            (OrderPurpose::Entry, OrderStatus::Filled) => self.entry_filled(slot, update, sink),
            (OrderPurpose::Entry, OrderStatus::Canceled | OrderStatus::Expired) if filled => {
                self.entry_filled(slot, update, sink)
            }
            (OrderPurpose::Entry, _) => {
                let key = self.slots[slot as usize].key;
                self.retire(slot, State::Core(CoreState::EntryFailed), ClosedBy::EntryFailed, sink);
                // A manual position that arrived while the entry was in flight was only recorded.
                self.adopt_known(key, None, sink);
            }
            (
                OrderPurpose::Close,
                OrderStatus::Filled | OrderStatus::Canceled | OrderStatus::Expired,
            ) => self.close_done(slot, update, sink),
            (OrderPurpose::Close, OrderStatus::NotFound) => {
                // It never reached the exchange: the same decision stands, under a new sequence,
                // unless the exchange meanwhile says there is nothing left to close.
                self.slots[slot as usize].live = None;
                if !self.settle_if_flat(slot, ClosedBy::External, sink) {
                    self.send_close(slot, CloseReason::Retry, sink);
                }
            }
            (OrderPurpose::Close, OrderStatus::Rejected(kind)) => {
                self.slots[slot as usize].live = None;
                if self.settle_if_flat(slot, ClosedBy::External, sink) {
                    return;
                }
                if kind == RejectKind::Permanent {
                    self.journal(
                        sink,
                        Journal::CloseBlocked { id, problem: CloseProblem::Refused },
                    );
                }
                self.schedule_retry(slot, kind);
            }
        }
    }

    /// Protects what the exchange last reported on an unowned key, if anything.
    fn adopt_known<S: Sink>(&mut self, key: PositionKey, from: Option<PositionId>, sink: &mut S) {
        let Some(k) = self.keys.get(&key).copied() else { return };
        if k.owner.is_none() && k.exchange_qty.is_positive() && k.exchange_ms >= k.settle_ms {
            self.adopt(key, k.exchange_qty, k.exchange_entry, from, sink);
        }
    }

    /// Once a close's fate is known: if the exchange's latest word on the key (no older than
    /// robsond's last fill there) is "flat", the position is over and nothing is re-sent.
    fn settle_if_flat<S: Sink>(&mut self, slot: u32, by: ClosedBy, sink: &mut S) -> bool {
        let p = &self.slots[slot as usize];
        let flat = self.keys.get(&p.key).is_some_and(|k| {
            k.exchange_ms > 0 && k.exchange_ms >= p.last_fill_ms && k.exchange_qty.is_zero()
        });
        if flat {
            self.retire(slot, closed_state(p.modality), by, sink);
        }
        flat
    }

    fn entry_filled<S: Sink>(&mut self, slot: u32, update: OrderUpdate, sink: &mut S) {
        let fees = self.config.fees;
        let default_distance = self.config.technical_stop_pct;
        let p = &self.slots[slot as usize];
        let m = p.market as usize;
        let rules = self.markets[m].rules;
        let (side, entry) = (p.key.side, update.avg_price);
        let technical = match p.params.technical_stop {
            Some(given) => {
                Price::from_units(rules.price_grid().round(given.units(), loose_side(side)))
            }
            None => rules.stop_at_distance(side, entry, default_distance),
        };
        let span = match side {
            Side::Long => entry.saturating_sub(technical),
            Side::Short => technical.saturating_sub(entry),
        }
        .max(Price::ZERO);
        let p = &mut self.slots[slot as usize];
        p.qty = update.cum_qty;
        p.entry = entry;
        p.stop = technical;
        p.trail = Some(HandSpan { side, entry, span, fees });
        p.level = 0;
        p.live = None;
        p.state = State::Core(CoreState::Active);
        p.last_fill_ms = update.exchange_ms;
        p.since = self.now;
        let (id, key, qty, flatten) = (p.id, p.key, p.qty, p.flatten);
        self.journal(sink, Journal::PositionOpened { id, key, qty, entry, stop: technical, span });
        if flatten {
            self.send_close(slot, CloseReason::Flatten, sink);
        } else {
            self.evaluate_position(slot, sink);
        }
        self.widen_wake(slot);
    }

    fn close_done<S: Sink>(&mut self, slot: u32, update: OrderUpdate, sink: &mut S) {
        let p = &mut self.slots[slot as usize];
        let at_send = p.live.take().map_or(Qty::ZERO, |live| live.exchange_at_send);
        p.qty = p.qty.saturating_sub(update.cum_qty).max(Qty::ZERO);
        if update.cum_qty.is_positive() {
            p.last_fill_ms = p.last_fill_ms.max(update.exchange_ms);
        }
        let (key, m, remaining, modality, id) = (p.key, p.market as usize, p.qty, p.modality, p.id);
        let rules = self.markets[m].rules;
        if self.settle_if_flat(slot, ClosedBy::OwnOrder, sink) {
            return;
        }
        if rules.meets_min_qty(rules.order_qty(remaining)) {
            // Part of the position is still ours to close (expired partial fill, or a close
            // capped at maxQty): the stop already fired, so close the rest now.
            self.send_close(slot, CloseReason::Retry, sink);
            return;
        }
        let k = self.key_slot(key);
        k.settle_ms = k.settle_ms.max(update.exchange_ms);
        self.retire(slot, closed_state(modality), ClosedBy::OwnOrder, sink);
        // Hand-over (DESIGN.md section 2): what the exchange still holds on the key after this
        // fill (added by hand) becomes the Safety Net's, with the exchange's entry price. A
        // snapshot older than the fill still shows what was just closed; one stamped with the
        // fill's own time may be an intermediate one from the same match, and is believed only
        // if it is no more than what the exchange showed at send time minus what filled.
        // Anything else waits for the next snapshot.
        let k = self.keys[&key];
        let after = k.exchange_ms > update.exchange_ms;
        let consistent = k.exchange_ms == update.exchange_ms
            && k.exchange_qty <= at_send.saturating_sub(update.cum_qty);
        if (after || consistent) && k.exchange_qty.is_positive() {
            let from = (modality == Modality::Core).then_some(id);
            self.adopt(key, k.exchange_qty, k.exchange_entry, from, sink);
        }
    }

    // ---- Core entries ----

    fn arm<S: Sink>(&mut self, key: PositionKey, params: ArmParams, sink: &mut S) -> Reply {
        let fast = params.ma_fast.unwrap_or(self.config.ma_fast);
        let slow = params.ma_slow.unwrap_or(self.config.ma_slow);
        let risk = params.risk.unwrap_or(self.config.risk);
        let rejection = if !(1..=MAX_PERIOD).contains(&slow) || fast == 0 || fast >= slow {
            Some(ArmRejection::BadPeriods)
        } else if !risk.is_positive() || risk > Ratio::ONE {
            Some(ArmRejection::BadRisk)
        } else if params.capital.is_some_and(|c| !c.is_positive()) {
            Some(ArmRejection::BadCapital)
        } else if params.technical_stop.is_some_and(|s| !s.is_positive()) {
            Some(ArmRejection::BadTechnicalStop)
        } else if self.core_holds(key) {
            Some(ArmRejection::AlreadyArmed)
        } else {
            None
        };
        if let Some(reason) = rejection {
            self.journal(sink, Journal::ArmRejected { key, reason });
            return Reply::ArmRejected(reason);
        }
        let signal = Crossover::new(fast, slow).expect("periods validated above");
        let m = self.market_slot(key.market());
        let id = self.fresh_id();
        let mut p =
            Position::blank(id, key, m as u32, Modality::Core, State::Core(CoreState::Armed));
        p.params =
            ArmParams { ma_fast: Some(fast), ma_slow: Some(slow), risk: Some(risk), ..params };
        p.signal = Some(signal);
        p.since = self.now;
        let params = p.params;
        let slot = self.allocate(p);
        self.markets[m].armed.push(slot);
        self.journal(sink, Journal::Armed { id, key, params });
        Reply::Armed(id)
    }

    /// An armed entry on the key, or a Core position owning it.
    fn core_holds(&self, key: PositionKey) -> bool {
        let owned = self.owner(&key).is_some_and(|(modality, _)| modality == Modality::Core);
        let armed = self.market_index.get(&key.market()).is_some_and(|&m| {
            self.markets[m as usize].armed.iter().any(|&slot| self.slots[slot as usize].key == key)
        });
        owned || armed
    }

    fn disarm<S: Sink>(&mut self, id: PositionId, sink: &mut S) -> Reply {
        let found = self.markets.iter().enumerate().find_map(|(m, market)| {
            let armed = market.armed.iter().position(|&slot| self.slots[slot as usize].id == id);
            let live = market.live.iter().any(|&slot| self.slots[slot as usize].id == id);
            match (armed, live) {
                (Some(i), _) => Some(Ok((m, i))),
                (None, true) => Some(Err(DisarmRejection::NotArmed)),
                (None, false) => None,
            }
        });
        match found {
            None => Reply::DisarmRejected(DisarmRejection::UnknownId),
            Some(Err(reason)) => Reply::DisarmRejected(reason),
            Some(Ok((m, i))) => {
                let slot = self.markets[m].armed.swap_remove(i);
                let p = &mut self.slots[slot as usize];
                p.state = State::Core(CoreState::Disarmed);
                p.signal = None;
                self.free_slots.push(slot);
                self.journal(sink, Journal::Disarmed { id });
                Reply::Done
            }
        }
    }

    fn feed_signals<S: Sink>(&mut self, m: usize, price: Price, sink: &mut S) {
        let mut i = 0;
        while i < self.markets[m].armed.len() {
            let slot = self.markets[m].armed[i];
            let p = &mut self.slots[slot as usize];
            let cross = p.signal.as_mut().and_then(|s| s.push(price));
            let wanted = match p.key.side {
                Side::Long => Cross::Up,
                Side::Short => Cross::Down,
            };
            if cross == Some(wanted) && self.try_enter(m, i, slot, wanted, price, sink) {
                // The arm left the list; the slot at `i` is now another arm.
                continue;
            }
            i += 1;
        }
    }

    /// Acts on an entry signal; true if the arm became an entering position.
    fn try_enter<S: Sink>(
        &mut self,
        m: usize,
        armed_index: usize,
        slot: u32,
        cross: Cross,
        price: Price,
        sink: &mut S,
    ) -> bool {
        let (id, key) = (self.slots[slot as usize].id, self.slots[slot as usize].key);
        self.journal(sink, Journal::EntrySignal { id, cross, price });
        if self.halted || self.draining || !self.lease {
            self.journal(sink, Journal::EntrySuppressed { id });
            return false;
        }
        // The opposite side counts too: a margin account holds one net position per symbol, and a
        // futures account in one-way mode one per symbol, so entering against a manual position
        // would reduce it, not sit beside it.
        let opposite = PositionKey { side: key.side.opposite(), ..key };
        let holder = [key, opposite].iter().find_map(|k| {
            self.keys.get(k).and_then(|k| match k.owner {
                Some(owner) => Some(Some(self.slots[owner as usize].modality)),
                None if k.exchange_qty.is_positive() => Some(None),
                None => None,
            })
        });
        if let Some(holder) = holder {
            self.journal(sink, Journal::EntryBlocked { id, holder });
            return false;
        }
        let qty = match self.size_entry(m, slot, price) {
            Ok(qty) => qty,
            Err(reason) => {
                self.journal(sink, Journal::EntryRejected { id, reason });
                return false;
            }
        };
        self.markets[m].armed.swap_remove(armed_index);
        self.markets[m].live.push(slot);
        self.key_slot(key).owner = Some(slot);
        let now = self.now;
        let p = &mut self.slots[slot as usize];
        p.signal = None;
        p.seq += 1;
        let cid = ClientOrderId::new(OrderTag {
            modality: Modality::Core,
            purpose: OrderPurpose::Entry,
            position: id,
            sequence: p.seq,
        });
        p.live = Some(LiveOrder {
            cid,
            purpose: OrderPurpose::Entry,
            asked_at: now,
            exchange_at_send: Qty::ZERO,
        });
        let query_at = now.saturating_add_millis(self.config.query_after_ms);
        self.next_retry = self.next_retry.min(query_at);
        p.state = State::Core(CoreState::Entering);
        p.since = now;
        let intent = OrderIntent {
            cid,
            key,
            order_side: key.side.opening_order(),
            qty,
            purpose: OrderPurpose::Entry,
            modality: Modality::Core,
        };
        self.journal(sink, Journal::OrderSent { intent, reason: None });
        sink.intent(Intent::Place(intent));
        true
    }

    /// `qty = capital × risk / span`, down to the step, capped by balance × leverage and maxQty,
    /// refused below minQty or minNotional (DESIGN.md section 4).
    fn size_entry(&self, m: usize, slot: u32, price: Price) -> Result<Qty, EntryRejection> {
        let p = &self.slots[slot as usize];
        let market = &self.markets[m];
        let rules = market.rules;
        let side = p.key.side;
        let technical = match p.params.technical_stop {
            Some(given) => {
                Price::from_units(rules.price_grid().round(given.units(), loose_side(side)))
            }
            None => rules.stop_at_distance(side, price, self.config.technical_stop_pct),
        };
        let span = match side {
            Side::Long => i128::from(price.units()) - i128::from(technical.units()),
            Side::Short => i128::from(technical.units()) - i128::from(price.units()),
        };
        if span <= 0 {
            return Err(EntryRejection::NoSpan);
        }
        let scope = match p.key.venue {
            Venue::Usdm => BalanceScope::UsdmWallet,
            Venue::Margin => BalanceScope::MarginIsolated(p.key.symbol),
        };
        let balance = self.balances.get(&(p.key.account, scope)).copied().unwrap_or(Amount::ZERO);
        if !balance.is_positive() || !price.is_positive() {
            return Err(EntryRejection::NoBalance);
        }
        let capital = p.params.capital.unwrap_or(balance);
        let risk = p.params.risk.unwrap_or(self.config.risk);
        let grid = rules.qty_grid();
        let by_risk = grid.round_ratio(
            i128::from(capital.units()) * i128::from(risk.units()),
            span,
            RoundMode::Down,
        );
        let by_balance = grid.round_ratio(
            i128::from(balance.units()) * i128::from(market.leverage) * i128::from(SCALE),
            i128::from(price.units()),
            RoundMode::Down,
        );
        if by_risk == i64::MAX || by_balance == i64::MAX {
            return Err(EntryRejection::Overflow);
        }
        let qty = rules.order_qty(Qty::from_units(by_risk.min(by_balance)));
        if !rules.meets_min_qty(qty) {
            return Err(EntryRejection::BelowMinQty);
        }
        if !rules.meets_min_notional(qty, price) {
            return Err(EntryRejection::BelowMinNotional);
        }
        Ok(qty)
    }
}
