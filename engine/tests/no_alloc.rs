//! The hot path allocates nothing in steady state (DESIGN.md section 7).
//!
//! This binary holds one test and a counting global allocator. The allocator counts `alloc`,
//! `alloc_zeroed` and `realloc` only while a thread-local "armed" flag is set, and the test sets it
//! on its own thread only around `Engine::on_event` (which includes the sink's calls): the
//! harness's other threads and the simulated exchange below may allocate as they like, the engine
//! may not.
//!
//! A small simulated market drives the engine: four markets (three USD-M futures triggered by mark,
//! book and last price, one isolated-margin market), manual positions the Safety Net protects,
//! Core arms that enter, trail and exit, and an exchange that answers every order the engine emits
//! (fills, partial fills, transient and permanent rejections, unknown outcomes answered by a
//! query, "nothing to close") and reports every position change back as a snapshot or a margin
//! fill. The same random mix of events runs first unmeasured (warm-up), then for `MEASURED` events
//! with the allocator armed.
//!
//! Warm-up is allowed to allocate, and covers:
//! - first sight of every market (`Rules`, trigger source, first quotes),
//! - every arm (`Crossover` allocates its price ring at arm time, a control-plane action),
//! - first sight of every key but the margin shorts: every manual key is opened by hand, every
//!   Core key is opened by hand and closed again (margin shorts, first seen later, are inserted
//!   into the capacity that `Engine::reserve` set aside),
//! - each market's list of live positions reaching its peak length: the openings above put every
//!   key that can ever be live at the same time on the list at once. `Engine::reserve` pre-sizes
//!   the slab and the key map, but not these per-market lists (their markets do not exist yet);
//!   without this step a market holding more positions than ever before reallocates its list in
//!   `adopt` or `try_enter` (`live.push`),
//! - `WARMUP` steps of the random mix itself.
//!
//! Set `NO_ALLOC_TRACE=1` to print a backtrace for every allocation made while armed.

use testkit::{CountingAlloc, armed_allocations, set_armed, trace_from_env};

use engine::events::{
    ArmParams, BalanceScope, CloseReason, ClosedBy, MarginFill, OrderIntent, OrderStatus,
    OrderUpdate, Origin, RejectKind,
};
use engine::money::SCALE;
use engine::types::{OrderPurpose, OrderSide, TriggerSource};
use engine::*;

// ---- the counting allocator ----

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

// ---- a sink that never grows ----

/// What the engine said, counted. Intents go into a vector reserved once and cleared after every
/// event, so the sink itself never allocates; journal records are only counted.
#[derive(Clone, Copy, Debug, Default)]
struct Counts {
    records: u64,
    entries: u64,
    closes: u64,
    retries: u64,
    flattens: u64,
    queries: u64,
    stop_moves: u64,
    stops_triggered: u64,
    opened: u64,
    detected: u64,
    handed_over: u64,
    updated: u64,
    safety_stops_set: u64,
    closed_own: u64,
    closed_external: u64,
    entry_failed: u64,
    signals: u64,
    suppressed: u64,
    blocked: u64,
    entry_rejected: u64,
    close_blocked: u64,
    orders_ignored: u64,
    snapshots_ignored: u64,
    stale: u64,
    fresh: u64,
    halts: u64,
}

struct Tally {
    intents: Vec<Intent>,
    counts: Counts,
    last_seq: u64,
}

impl Tally {
    fn new() -> Tally {
        Tally { intents: Vec::with_capacity(4096), counts: Counts::default(), last_seq: 0 }
    }
}

impl Sink for Tally {
    fn intent(&mut self, intent: Intent) {
        debug_assert!(self.intents.len() < self.intents.capacity(), "the sink would grow");
        self.intents.push(intent);
    }

    fn record(&mut self, record: Record) {
        assert!(record.seq > self.last_seq, "journal sequence numbers are monotone");
        self.last_seq = record.seq;
        let c = &mut self.counts;
        c.records += 1;
        match record.event {
            Journal::OrderSent { intent, reason } => match (intent.purpose, reason) {
                (OrderPurpose::Entry, _) => c.entries += 1,
                (OrderPurpose::Close, reason) => {
                    c.closes += 1;
                    c.retries += u64::from(reason == Some(CloseReason::Retry));
                    c.flattens += u64::from(reason == Some(CloseReason::Flatten));
                }
            },
            Journal::QuerySent { .. } => c.queries += 1,
            Journal::StopMoved { .. } => c.stop_moves += 1,
            Journal::StopTriggered { .. } => c.stops_triggered += 1,
            Journal::PositionOpened { .. } => c.opened += 1,
            Journal::PositionDetected { from, .. } => {
                c.detected += 1;
                c.handed_over += u64::from(from.is_some());
            }
            Journal::PositionUpdated { .. } => c.updated += 1,
            Journal::SafetyStopSet { .. } => c.safety_stops_set += 1,
            Journal::PositionClosed { by, .. } => match by {
                ClosedBy::OwnOrder => c.closed_own += 1,
                ClosedBy::External => c.closed_external += 1,
                ClosedBy::EntryFailed => c.entry_failed += 1,
                // Counted by its CloseBlocked { Dust } record.
                ClosedBy::Dust => {}
            },
            Journal::EntrySignal { .. } => c.signals += 1,
            Journal::EntrySuppressed { .. } => c.suppressed += 1,
            Journal::EntryBlocked { .. } => c.blocked += 1,
            Journal::EntryRejected { .. } => c.entry_rejected += 1,
            Journal::CloseBlocked { .. } => c.close_blocked += 1,
            Journal::OrderIgnored { .. } => c.orders_ignored += 1,
            Journal::SnapshotIgnored { .. } => c.snapshots_ignored += 1,
            Journal::PriceStale { .. } => c.stale += 1,
            Journal::PriceFresh { .. } => c.fresh += 1,
            Journal::Halted { .. } => c.halts += 1,
            _ => {}
        }
    }
}

// ---- the simulated markets and exchange ----

const WARMUP: u64 = 30_000;
const MEASURED: u64 = 100_000;

/// Manual (Safety Net) accounts per USD-M market; each holds a long and a short key (hedge mode).
const MANUAL_ACCOUNTS: usize = 24;
/// Isolated-margin accounts on the margin market: one net position each, long or short.
const MARGIN_ACCOUNTS: usize = 12;
/// Core arms per USD-M market, on accounts `CORE_ACCOUNT_BASE + i`, alternately long and short.
const CORE_ARMS: usize = 40;
const CORE_ACCOUNT_BASE: u16 = 1000;

struct MarketDef {
    venue: Venue,
    symbol: &'static str,
    center: i64,
    tick: &'static str,
    step: &'static str,
    /// What one manual position adds: a few lots of this.
    lot: &'static str,
    source: TriggerSource,
    /// Price events per triangle-wave period.
    period: i64,
}

const USDM_MARKETS: usize = 3;
const MARGIN_MARKET: usize = 3;

const MARKETS: [MarketDef; 4] = [
    MarketDef {
        venue: Venue::Usdm,
        symbol: "BTCUSDT",
        center: 50_000,
        tick: "0.1",
        step: "0.001",
        lot: "0.01",
        source: TriggerSource::Mark,
        period: 3_000,
    },
    MarketDef {
        venue: Venue::Usdm,
        symbol: "ETHUSDT",
        center: 3_000,
        tick: "0.01",
        step: "0.001",
        lot: "0.1",
        source: TriggerSource::Book,
        period: 3_700,
    },
    MarketDef {
        venue: Venue::Usdm,
        symbol: "SOLUSDT",
        center: 150,
        tick: "0.01",
        step: "0.01",
        lot: "1",
        source: TriggerSource::Last,
        period: 4_400,
    },
    MarketDef {
        venue: Venue::Margin,
        symbol: "BNBUSDT",
        center: 600,
        tick: "0.01",
        step: "0.001",
        lot: "0.1",
        source: TriggerSource::Last,
        period: 5_100,
    },
];

/// Triangle-wave amplitude in basis points: ±6% moves past the 2% safety stops and several
/// 2% trailing spans in both directions.
const AMPLITUDE_BP: i64 = 600;

impl MarketDef {
    fn key(&self) -> MarketKey {
        MarketKey { venue: self.venue, symbol: Symbol::lit(self.symbol) }
    }

    fn rules(&self) -> SymbolRules {
        SymbolRules {
            tick: Price::lit(self.tick),
            min_price: Price::lit(self.tick),
            step: Qty::lit(self.step),
            min_qty: Qty::lit(self.step),
            max_qty: Qty::from_int(1_000_000),
            min_notional: Amount::from_int(5),
        }
    }
}

struct MarketSim {
    key: MarketKey,
    tick: i64,
    step: i64,
    lot: i64,
    center: i64,
    period: i64,
    phase: i64,
    price: i64,
}

/// The exchange's view of one USD-M key.
#[derive(Clone, Copy)]
struct ExKey {
    key: PositionKey,
    market: usize,
    qty: i64,
    entry: Price,
}

/// The exchange's view of one isolated-margin account: signed net base quantity.
#[derive(Clone, Copy)]
struct ExMargin {
    account: AccountId,
    net: i64,
    trade_id: u64,
}

#[derive(Clone, Copy, Debug)]
enum Stage {
    First,
    /// Part of an entry filled; the rest comes next.
    Partial,
    /// The outcome was unknown; this is the answer to the engine's query.
    Queried,
}

#[derive(Clone, Copy, Debug)]
enum Job {
    Answer {
        intent: OrderIntent,
        stage: Stage,
    },
    /// An `ACCOUNT_UPDATE` for a USD-M key, read from the exchange when delivered.
    Snapshot {
        key: usize,
    },
    /// A margin fill (`executionReport`), trade id assigned when delivered.
    MarginFill {
        account: usize,
        side: OrderSide,
        qty: i64,
        price: Price,
    },
    /// An order's fill, reported after the position snapshot that already reflects it.
    LateFill {
        intent: OrderIntent,
        cum: i64,
        price: Price,
        exchange_ms: u64,
    },
}

#[derive(Clone, Copy, Debug)]
struct Pending {
    due: u64,
    job: Job,
}

/// Event kinds, for the allocation tally per kind.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Mark,
    Trade,
    Book,
    Position,
    MarginTrade,
    Balance,
    OrderUpdate,
    Tick,
    Control,
}

const KINDS: [Kind; 9] = [
    Kind::Mark,
    Kind::Trade,
    Kind::Book,
    Kind::Position,
    Kind::MarginTrade,
    Kind::Balance,
    Kind::OrderUpdate,
    Kind::Tick,
    Kind::Control,
];

struct Sim {
    engine: Engine,
    sink: Tally,
    now: Nanos,
    exchange_ms: u64,
    step: u64,
    rng: u64,
    measuring: bool,
    markets: Vec<MarketSim>,
    keys: Vec<ExKey>,
    margin: Vec<ExMargin>,
    pending: Vec<Pending>,
    halted: bool,
    allocs_by_kind: [u64; KINDS.len()],
    events_by_kind: [u64; KINDS.len()],
    measured_events: u64,
}

fn manual_index(market: usize, account: usize, side: Side) -> usize {
    (market * MANUAL_ACCOUNTS + account) * 2 + usize::from(side == Side::Short)
}

fn core_index(market: usize, i: usize) -> usize {
    USDM_MARKETS * MANUAL_ACCOUNTS * 2 + market * CORE_ARMS + i
}

fn core_side(i: usize) -> Side {
    if i.is_multiple_of(2) { Side::Long } else { Side::Short }
}

impl Sim {
    fn new() -> Sim {
        let mut engine = Engine::new(Config::default());
        engine.on_event(Event::Lease { held: true }, Nanos(0), &mut VecSink::default());
        engine.reserve(MARKETS.len(), 1024);
        let markets = MARKETS
            .iter()
            .map(|d| MarketSim {
                key: d.key(),
                tick: Price::lit(d.tick).units(),
                step: Qty::lit(d.step).units(),
                lot: Qty::lit(d.lot).units(),
                center: d.center * SCALE,
                period: d.period,
                phase: 0,
                price: d.center * SCALE,
            })
            .collect::<Vec<_>>();
        let mut keys = Vec::new();
        for (m, market) in markets.iter().enumerate().take(USDM_MARKETS) {
            for account in 0..MANUAL_ACCOUNTS {
                for side in [Side::Long, Side::Short] {
                    debug_assert_eq!(keys.len(), manual_index(m, account, side));
                    let key = PositionKey {
                        account: AccountId(account as u16),
                        venue: market.key.venue,
                        symbol: market.key.symbol,
                        side,
                    };
                    keys.push(ExKey { key, market: m, qty: 0, entry: Price::ZERO });
                }
            }
        }
        for (m, market) in markets.iter().enumerate().take(USDM_MARKETS) {
            for i in 0..CORE_ARMS {
                debug_assert_eq!(keys.len(), core_index(m, i));
                let key = PositionKey {
                    account: AccountId(CORE_ACCOUNT_BASE + i as u16),
                    venue: market.key.venue,
                    symbol: market.key.symbol,
                    side: core_side(i),
                };
                keys.push(ExKey { key, market: m, qty: 0, entry: Price::ZERO });
            }
        }
        let margin = (0..MARGIN_ACCOUNTS)
            .map(|a| ExMargin { account: AccountId(a as u16), net: 0, trade_id: 0 })
            .collect();
        Sim {
            engine,
            sink: Tally::new(),
            now: Nanos::from_millis(1_000),
            exchange_ms: 1_700_000_000_000,
            step: 0,
            rng: 0x9E37_79B9_7F4A_7C15,
            measuring: false,
            markets,
            keys,
            margin,
            pending: Vec::with_capacity(4096),
            halted: false,
            allocs_by_kind: [0; KINDS.len()],
            events_by_kind: [0; KINDS.len()],
            measured_events: 0,
        }
    }

    fn rand(&mut self, n: u64) -> u64 {
        // xorshift64*: deterministic, so a failure reproduces.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }

    fn chance(&mut self, per_thousand: u64) -> bool {
        self.rand(1000) < per_thousand
    }

    /// One event into the engine, the allocator armed around it when measuring; then the
    /// engine's orders go to the simulated exchange.
    fn send(&mut self, kind: Kind, event: Event) -> Reply {
        let before = armed_allocations();
        if self.measuring {
            set_armed(true);
        }
        let reply = self.engine.on_event(event, self.now, &mut self.sink);
        set_armed(false);
        self.allocs_by_kind[kind as usize] += armed_allocations() - before;
        self.events_by_kind[kind as usize] += 1;
        self.measured_events += u64::from(self.measuring);
        for i in 0..self.sink.intents.len() {
            if let Intent::Place(intent) = self.sink.intents[i] {
                let due = self.step + 1 + self.rand(12);
                self.pending
                    .push(Pending { due, job: Job::Answer { intent, stage: Stage::First } });
            }
            // `Intent::Query`: the exchange answers it through the `Stage::Queried` job that the
            // `Unknown` answer queued.
        }
        self.sink.intents.clear();
        reply
    }

    fn price(&self, m: usize) -> Price {
        Price::from_units(self.markets[m].price)
    }

    /// The next price of market `m`: a triangle wave of ±6% around its centre plus ±5 bp noise,
    /// on the tick grid.
    fn move_price(&mut self, m: usize) -> Price {
        let noise = self.rand(11) as i64 - 5;
        let s = &mut self.markets[m];
        s.phase += 1;
        let pos = s.phase % s.period;
        let tri = (2 * pos - s.period).abs(); // 0..=period
        let bp = AMPLITUDE_BP * (2 * tri - s.period) / s.period + noise;
        let units = s.center / 10_000 * (10_000 + bp);
        s.price = units - units % s.tick;
        Price::from_units(s.price)
    }

    // ---- the random mix ----

    fn step(&mut self) {
        self.step += 1;
        self.now = self.now.saturating_add_millis(1);
        self.exchange_ms += 1;
        if let Some(i) = self.pending.iter().position(|p| p.due <= self.step) {
            let job = self.pending.remove(i).job;
            self.deliver(job);
            return;
        }
        let r = self.rand(1000);
        match r {
            0..260 | 903..1000 => {
                let m = self.rand(USDM_MARKETS as u64) as usize;
                let price = self.move_price(m);
                let market = self.markets[m].key;
                self.send(Kind::Mark, Event::Mark { market, price, origin: Origin::Stream });
            }
            260..520 => {
                let m = self.rand(MARKETS.len() as u64) as usize;
                let mid = self.move_price(m).units();
                let price =
                    Price::from_units(mid + (self.rand(3) as i64 - 1) * self.markets[m].tick);
                let market = self.markets[m].key;
                self.send(Kind::Trade, Event::Trade { market, price, origin: Origin::Stream });
            }
            520..640 => {
                let m = self.rand(MARKETS.len() as u64) as usize;
                let mid = self.move_price(m).units();
                let tick = self.markets[m].tick;
                let bid = Price::from_units(mid - tick);
                let ask = Price::from_units(mid + tick);
                let market = self.markets[m].key;
                self.send(Kind::Book, Event::Book { market, bid, ask, origin: Origin::Stream });
            }
            640..780 => {
                let core = core_index(
                    self.rand(USDM_MARKETS as u64) as usize,
                    self.rand(CORE_ARMS as u64) as usize,
                );
                if self.chance(150) && self.keys[core].qty > 0 {
                    // The user adds by hand to a key Core holds: after Core's exit, the
                    // remainder is the Safety Net's.
                    self.manual_usdm(core);
                } else if self.chance(800) {
                    let m = self.rand(USDM_MARKETS as u64) as usize;
                    let account = self.rand(MANUAL_ACCOUNTS as u64) as usize;
                    let side = if self.chance(500) { Side::Long } else { Side::Short };
                    self.manual_usdm(manual_index(m, account, side));
                } else {
                    let account = self.rand(MARGIN_ACCOUNTS as u64) as usize;
                    self.manual_margin(account);
                }
            }
            780..858 => {
                let ms = 20 + self.rand(380);
                self.advance(ms);
                self.send(Kind::Tick, Event::Tick);
            }
            858..860 => {
                // A gap long enough for every market to go stale; the next tick after prices
                // resume finds them fresh.
                self.advance(6_000);
                self.send(Kind::Tick, Event::Tick);
            }
            860..900 => {
                let i = self.rand(CORE_ARMS as u64) as u16;
                let available = Amount::from_int(9_000 + self.rand(2_000) as i64);
                let account = AccountId(CORE_ACCOUNT_BASE + i);
                let scope = BalanceScope::UsdmWallet;
                self.send(Kind::Balance, Event::Balance { account, scope, available });
            }
            _ => {
                // Halts stop entries for a while; a few also flatten everything.
                let event = if self.halted {
                    Event::Resume
                } else {
                    Event::Halt { flatten: self.chance(30) }
                };
                self.halted = !self.halted;
                self.send(Kind::Control, event);
            }
        }
    }

    fn advance(&mut self, ms: u64) {
        self.now = self.now.saturating_add_millis(ms);
        self.exchange_ms += ms;
    }

    fn snapshot(&mut self, k: usize) {
        let ExKey { key, qty, entry, .. } = self.keys[k];
        let entry = if qty > 0 { entry } else { Price::ZERO };
        let exchange_ms = self.exchange_ms;
        let event = Event::Position { key, qty: Qty::from_units(qty), entry, exchange_ms };
        self.send(Kind::Position, event);
    }

    /// The user opens, changes or closes a futures position by hand.
    fn manual_usdm(&mut self, k: usize) {
        let m = self.keys[k].market;
        let (lot, tick) = (self.markets[m].lot, self.markets[m].tick);
        let price = self.price(m);
        let ex = self.keys[k];
        if ex.qty == 0 {
            let lots = 1 + self.rand(20) as i64;
            self.keys[k].qty = lots * lot;
            self.keys[k].entry = price;
        } else if k >= core_index(0, 0) || self.chance(600) {
            let lots = 1 + self.rand(5) as i64;
            if k >= core_index(0, 0) || self.chance(500) || ex.qty <= lots * lot {
                // Adds at the current price: the entry moves to the volume-weighted average.
                let add = lots * lot;
                let cost = i128::from(ex.qty) * i128::from(ex.entry.units())
                    + i128::from(add) * i128::from(price.units());
                let avg = (cost / i128::from(ex.qty + add)) as i64;
                self.keys[k].qty = ex.qty + add;
                self.keys[k].entry = Price::from_units(avg - avg % tick);
            } else {
                self.keys[k].qty = ex.qty - lots * lot;
            }
        } else {
            self.keys[k].qty = 0;
        }
        self.snapshot(k);
    }

    fn margin_trade(&mut self, a: usize, side: OrderSide, qty: i64, price: Price) {
        self.margin[a].trade_id += 1;
        let event = Event::MarginTrade(MarginFill {
            account: self.margin[a].account,
            symbol: self.markets[MARGIN_MARKET].key.symbol,
            side,
            qty: Qty::from_units(qty),
            price,
            trade_id: self.margin[a].trade_id,
            exchange_ms: self.exchange_ms,
        });
        self.send(Kind::MarginTrade, event);
    }

    /// The user buys or sells on an isolated-margin account by hand.
    fn manual_margin(&mut self, a: usize) {
        let lot = self.markets[MARGIN_MARKET].lot;
        let price = self.price(MARGIN_MARKET);
        let net = self.margin[a].net;
        let (side, qty) = if net == 0 {
            let lots = 1 + self.rand(20) as i64;
            (if self.chance(500) { OrderSide::Buy } else { OrderSide::Sell }, lots * lot)
        } else if self.chance(500) {
            let lots = 1 + self.rand(5) as i64;
            let adding = self.chance(500) || net.abs() <= lots * lot;
            let along = if net > 0 { OrderSide::Buy } else { OrderSide::Sell };
            let against = if net > 0 { OrderSide::Sell } else { OrderSide::Buy };
            (if adding { along } else { against }, lots * lot)
        } else {
            (if net > 0 { OrderSide::Sell } else { OrderSide::Buy }, net.abs())
        };
        self.margin[a].net += if side == OrderSide::Buy { qty } else { -qty };
        self.margin_trade(a, side, qty, price);
    }

    fn market_of(&self, key: &PositionKey) -> usize {
        self.markets.iter().position(|s| s.key == key.market()).expect("a simulated market")
    }

    fn key_index(&self, key: &PositionKey) -> usize {
        let m = self.market_of(key);
        let account = usize::from(key.account.0);
        if account >= usize::from(CORE_ACCOUNT_BASE) {
            core_index(m, account - usize::from(CORE_ACCOUNT_BASE))
        } else {
            manual_index(m, account, key.side)
        }
    }

    fn order_update(&mut self, intent: &OrderIntent, status: OrderStatus, cum: i64, avg: Price) {
        self.report(intent, status, cum, avg, self.exchange_ms);
    }

    fn report(
        &mut self,
        intent: &OrderIntent,
        status: OrderStatus,
        cum: i64,
        avg: Price,
        exchange_ms: u64,
    ) {
        let update = OrderUpdate {
            account: intent.key.account,
            venue: intent.key.venue,
            symbol: intent.key.symbol,
            cid: intent.cid,
            status,
            cum_qty: Qty::from_units(cum),
            avg_price: if cum > 0 { avg } else { Price::ZERO },
            exchange_ms,
        };
        self.send(Kind::OrderUpdate, Event::Order(update));
    }

    fn later(&mut self, job: Job) {
        let due = self.step + 1 + self.rand(6);
        self.pending.push(Pending { due, job });
    }

    fn deliver(&mut self, job: Job) {
        match job {
            Job::Snapshot { key } => self.snapshot(key),
            Job::MarginFill { account, side, qty, price } => {
                self.margin_trade(account, side, qty, price)
            }
            Job::LateFill { intent, cum, price, exchange_ms } => {
                self.report(&intent, OrderStatus::Filled, cum, price, exchange_ms)
            }
            Job::Answer { intent, stage } => match intent.purpose {
                OrderPurpose::Entry => self.answer_entry(intent, stage),
                OrderPurpose::Close => self.answer_close(intent, stage),
            },
        }
    }

    fn answer_entry(&mut self, intent: OrderIntent, stage: Stage) {
        let k = self.key_index(&intent.key);
        let m = self.keys[k].market;
        let price = self.price(m);
        let qty = intent.qty.units();
        match stage {
            Stage::First if self.chance(30) => {
                self.order_update(&intent, OrderStatus::Rejected(RejectKind::Permanent), 0, price);
            }
            Stage::First if self.chance(150) && qty >= 2 * self.markets[m].step => {
                let half = qty / 2 - (qty / 2) % self.markets[m].step;
                self.order_update(&intent, OrderStatus::PartiallyFilled, half, price);
                self.later(Job::Answer { intent, stage: Stage::Partial });
            }
            _ => {
                self.order_update(&intent, OrderStatus::Filled, qty, price);
                self.keys[k].qty += qty;
                self.keys[k].entry = price;
                self.later(Job::Snapshot { key: k });
            }
        }
    }

    /// What the exchange holds that this close can reduce.
    fn closable(&self, intent: &OrderIntent) -> i64 {
        if intent.key.venue == Venue::Margin {
            let net = self.margin[usize::from(intent.key.account.0)].net;
            match intent.key.side {
                Side::Long => net.max(0),
                Side::Short => (-net).max(0),
            }
        } else {
            self.keys[self.key_index(&intent.key)].qty
        }
    }

    /// The exchange executes `cum` of a close: its books change now, the stream reports it later.
    fn execute_close(&mut self, intent: &OrderIntent, cum: i64, price: Price) {
        if intent.key.venue == Venue::Margin {
            let a = usize::from(intent.key.account.0);
            self.margin[a].net += if intent.order_side == OrderSide::Buy { cum } else { -cum };
            let side = intent.order_side;
            self.later(Job::MarginFill { account: a, side, qty: cum, price });
        } else {
            let k = self.key_index(&intent.key);
            self.keys[k].qty -= cum;
            self.later(Job::Snapshot { key: k });
        }
    }

    /// A close fills in full. On futures, the position snapshot sometimes arrives before the
    /// order's own report (both carry the same exchange time).
    fn fill_close(&mut self, intent: OrderIntent, qty: i64, price: Price) {
        if intent.key.venue == Venue::Usdm && self.chance(300) {
            let k = self.key_index(&intent.key);
            self.keys[k].qty -= qty;
            let exchange_ms = self.exchange_ms;
            self.snapshot(k);
            self.later(Job::LateFill { intent, cum: qty, price, exchange_ms });
        } else {
            self.order_update(&intent, OrderStatus::Filled, qty, price);
            self.execute_close(&intent, qty, price);
        }
    }

    fn answer_close(&mut self, intent: OrderIntent, stage: Stage) {
        let m = self.market_of(&intent.key);
        let price = self.price(m);
        let closable = self.closable(&intent);
        let qty = intent.qty.units().min(closable);
        if closable == 0 {
            let status = match stage {
                Stage::Queried => OrderStatus::NotFound,
                _ => OrderStatus::Rejected(RejectKind::NothingToClose),
            };
            self.order_update(&intent, status, 0, price);
            return;
        }
        if let Stage::Queried = stage {
            if self.chance(500) {
                self.fill_close(intent, qty, price);
            } else {
                self.order_update(&intent, OrderStatus::NotFound, 0, price);
            }
            return;
        }
        let step = self.markets[m].step;
        match self.rand(100) {
            0..70 => self.fill_close(intent, qty, price),
            70..82 => {
                self.order_update(&intent, OrderStatus::Rejected(RejectKind::Transient), 0, price)
            }
            82..85 => {
                self.order_update(&intent, OrderStatus::Rejected(RejectKind::Permanent), 0, price)
            }
            85..92 => {
                self.order_update(&intent, OrderStatus::Unknown, 0, price);
                self.later(Job::Answer { intent, stage: Stage::Queried });
            }
            _ => {
                // Expired after a partial fill: the engine closes the rest at once.
                let part = qty / 2 - (qty / 2) % step;
                self.order_update(&intent, OrderStatus::Expired, part, price);
                if part > 0 {
                    self.execute_close(&intent, part, price);
                }
            }
        }
    }

    // ---- set-up ----

    fn setup(&mut self) {
        for (m, def) in MARKETS.iter().enumerate() {
            let market = self.markets[m].key;
            self.send(Kind::Control, Event::Rules { market, rules: def.rules() });
            if def.source != TriggerSource::default_for(def.venue) {
                let source = def.source;
                self.send(Kind::Control, Event::SetTriggerSource { market, source });
            }
            let price = self.price(m);
            let origin = Origin::Stream;
            if def.venue == Venue::Usdm {
                self.send(Kind::Mark, Event::Mark { market, price, origin });
            }
            self.send(Kind::Trade, Event::Trade { market, price, origin });
            let bid = Price::from_units(price.units() - self.markets[m].tick);
            let ask = Price::from_units(price.units() + self.markets[m].tick);
            self.send(Kind::Book, Event::Book { market, bid, ask, origin });
        }
        for i in 0..CORE_ARMS {
            let account = AccountId(CORE_ACCOUNT_BASE + i as u16);
            let available = Amount::from_int(10_000);
            let scope = BalanceScope::UsdmWallet;
            self.send(Kind::Balance, Event::Balance { account, scope, available });
        }
        // Every key that can be live at once is live once, so that each market's list of live
        // positions reaches its peak length here: every manual key, and a hand-opened position on
        // every Core key (closed again by hand before the arms go in).
        for k in 0..self.keys.len() {
            let lot = self.markets[self.keys[k].market].lot;
            self.keys[k].qty = lot;
            self.keys[k].entry = self.price(self.keys[k].market);
            self.snapshot(k);
        }
        for a in 0..MARGIN_ACCOUNTS {
            let lot = self.markets[MARGIN_MARKET].lot;
            let price = self.price(MARGIN_MARKET);
            self.margin[a].net = lot;
            self.margin_trade(a, OrderSide::Buy, lot, price);
        }
        for m in 0..USDM_MARKETS {
            for i in 0..CORE_ARMS {
                let k = core_index(m, i);
                self.keys[k].qty = 0;
                self.snapshot(k);
            }
        }
        // Arms: short windows enter during warm-up, long ones (up to ~4,600 trades) during the
        // measured phase.
        for m in 0..USDM_MARKETS {
            for i in 0..CORE_ARMS {
                let slow = 4 + 3 * (i * i) as u32;
                let fast = (slow / 3).max(1);
                let key = self.keys[core_index(m, i)].key;
                let params =
                    ArmParams { ma_fast: Some(fast), ma_slow: Some(slow), ..ArmParams::default() };
                let reply = self.send(Kind::Control, Event::Arm { key, params });
                assert!(matches!(reply, Reply::Armed(_)), "arm refused: {reply:?}");
            }
        }
    }
}

#[test]
fn steady_state_allocates_nothing() {
    trace_from_env();
    let mut sim = Sim::new();
    sim.setup();
    for _ in 0..WARMUP {
        sim.step();
    }
    let warm = sim.sink.counts;
    sim.sink.counts = Counts::default();
    let sink_capacity = sim.sink.intents.capacity();

    sim.measuring = true;
    let before = armed_allocations();
    for _ in 0..MEASURED {
        sim.step();
    }
    sim.measuring = false;
    let allocations = armed_allocations() - before;
    let c = sim.sink.counts;

    println!("warm-up ({WARMUP} steps after set-up): {warm:#?}");
    println!("measured ({MEASURED} events): {c:#?}");
    let by_kind: Vec<_> = KINDS
        .iter()
        .map(|&k| (k, sim.events_by_kind[k as usize], sim.allocs_by_kind[k as usize]))
        .collect();
    println!("(event kind, events in total, allocations while measured): {by_kind:?}");
    println!("positions open at the end: {}", sim.engine.positions().count());

    assert_eq!(
        allocations, 0,
        "the engine allocated {allocations} times in steady state; per event kind: {by_kind:?} \
         (NO_ALLOC_TRACE=1 prints a backtrace for each)"
    );
    assert_eq!(sim.sink.intents.capacity(), sink_capacity, "the sink grew");
    assert_eq!(sim.measured_events, MEASURED, "one event per step");

    // The run did real work in the measured phase, so a zero above means something.
    assert!(c.entries > 0, "no Core entry in the measured phase");
    assert!(c.opened > 0, "no Core entry filled in the measured phase");
    assert!(c.stop_moves > 0, "no trailing stop moved");
    assert!(c.stops_triggered > 0, "no stop fired");
    assert!(c.closes > 0, "no close sent");
    assert!(c.retries > 0, "no close retried");
    assert!(c.queries > 0, "no order queried");
    assert!(c.closed_own > 0 && c.closed_external > 0, "positions were not closed both ways");
    assert!(c.detected > 0, "no Safety Net position re-detected on a known key");
    assert!(c.handed_over > 0, "no remainder handed from Core to the Safety Net");
    assert!(c.updated > 0, "no position changed by hand");
    assert!(c.close_blocked > 0, "no close refused");
    assert!(c.stale > 0 && c.fresh > 0, "staleness never changed");
    assert!(c.halts > 0 && c.suppressed > 0, "no entry signal while halted");
    assert!(c.flattens > 0, "no halt --flatten");
}
