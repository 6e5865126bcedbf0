//! What goes into the engine (`Event`) and what comes out (`Intent` for the I/O thread, `Record`
//! for the journal). Every type is `Copy` and inline, so the hot path moves values, never heap
//! memory, and a replay compares outputs byte for byte.

use crate::filters::SymbolRules;
use crate::money::{Amount, Price, Qty, Ratio};
use crate::signal::Cross;
use crate::types::{
    AccountId, ClientOrderId, MarketKey, Modality, OrderPurpose, OrderSide, PositionId,
    PositionKey, Symbol, TriggerSource, Venue,
};

/// Engine time: nanoseconds on the caller's clock. The engine never reads a clock itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Nanos(pub u64);

impl Nanos {
    pub const fn from_millis(ms: u64) -> Nanos {
        Nanos(ms * 1_000_000)
    }

    pub fn saturating_add_millis(self, ms: u64) -> Nanos {
        Nanos(self.0.saturating_add(ms.saturating_mul(1_000_000)))
    }

    pub fn millis_since(self, earlier: Nanos) -> u64 {
        self.0.saturating_sub(earlier.0) / 1_000_000
    }
}

/// Where a price came from: the stream, or the REST fallback poll that keeps stops alive while a
/// stream is stale (DESIGN.md section 6). A fallback price moves triggers but is not a trade, so
/// it never feeds the entry signal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    Stream,
    RestFallback,
}

/// The final or interim state of one of robsond's orders, as the exchange (or the I/O thread)
/// reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OrderStatus {
    /// Accepted and live, nothing filled yet.
    New,
    PartiallyFilled,
    Filled,
    /// Ended by the exchange or a cancel; `cum_qty` says how much filled before.
    Canceled,
    Expired,
    /// Refused: never live.
    Rejected(RejectKind),
    /// Sent, but the outcome is unknown (time-out, 5xx): it may be live or filled.
    Unknown,
    /// A query by client order id found no such order: it never reached the book.
    NotFound,
}

/// How the I/O thread classifies a rejection, from Binance's error code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RejectKind {
    /// Rate limit, overload, time sync: the same order may pass later.
    Transient,
    /// Filter failure, insufficient balance, bad symbol: retrying the same order cannot help.
    Permanent,
    /// Reduce-only rejected, or nothing to repay: the position is already gone on the exchange.
    NothingToClose,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OrderUpdate {
    pub account: AccountId,
    pub venue: Venue,
    pub symbol: Symbol,
    pub cid: ClientOrderId,
    pub status: OrderStatus,
    /// Cumulative filled quantity.
    pub cum_qty: Qty,
    /// Average fill price of `cum_qty`; zero when nothing filled.
    pub avg_price: Price,
    /// Exchange transaction time (ms); orders exchange facts against position snapshots.
    pub exchange_ms: u64,
}

/// Optional parameters of an arm command; None takes the engine's default.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ArmParams {
    /// Quote amount the risk percent applies to; default: the available balance.
    pub capital: Option<Amount>,
    pub risk: Option<Ratio>,
    pub technical_stop: Option<Price>,
    pub ma_fast: Option<u32>,
    pub ma_slow: Option<u32>,
}

/// One isolated-margin trade of the account, robsond's or the user's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MarginFill {
    pub account: AccountId,
    pub symbol: Symbol,
    pub side: OrderSide,
    pub qty: Qty,
    pub price: Price,
    /// Binance's per-symbol trade id: a replayed fill (same or older id) is ignored.
    pub trade_id: u64,
    pub exchange_ms: u64,
}

/// Which balance a `Balance` event reports: the futures wallet is one per account, an isolated
/// margin account is one per symbol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BalanceScope {
    UsdmWallet,
    MarginIsolated(Symbol),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// Futures mark price.
    Mark {
        market: MarketKey,
        price: Price,
        origin: Origin,
    },
    /// A trade (aggTrade / trade): the last price, and the entry signal's input.
    Trade {
        market: MarketKey,
        price: Price,
        origin: Origin,
    },
    /// Best bid and ask.
    Book {
        market: MarketKey,
        bid: Price,
        ask: Price,
        origin: Origin,
    },
    /// The exchange's view of one key: futures `ACCOUNT_UPDATE`/`positionRisk`, or a margin
    /// position rebuilt at start-up. `qty` is the absolute amount (zero: flat).
    Position {
        key: PositionKey,
        qty: Qty,
        entry: Price,
        exchange_ms: u64,
    },
    /// One margin fill from the user-data stream (`executionReport` with a trade): the engine
    /// derives isolated-margin positions and their volume-weighted entry from these.
    MarginTrade(MarginFill),
    Balance {
        account: AccountId,
        scope: BalanceScope,
        available: Amount,
    },
    Order(OrderUpdate),
    /// exchangeInfo filters for a market.
    Rules {
        market: MarketKey,
        rules: SymbolRules,
    },
    SetTriggerSource {
        market: MarketKey,
        source: TriggerSource,
    },
    /// Per-market Safety Net percent; None restores the engine default.
    SetSafetyPct {
        market: MarketKey,
        pct: Option<Ratio>,
    },
    /// Futures leverage (or margin multiple) that caps an entry's notional at balance × leverage.
    SetLeverage {
        market: MarketKey,
        leverage: u32,
    },
    Arm {
        key: PositionKey,
        params: ArmParams,
    },
    Disarm {
        id: PositionId,
    },
    Halt {
        flatten: bool,
    },
    Resume,
    /// Whether this instance holds the account lease; without it nothing is sent (DESIGN.md 5).
    Lease {
        held: bool,
    },
    /// Time passing with no other event: retries fall due and prices go stale.
    Tick,
    /// The process is shutting down: no new entries; stops keep firing while orders in flight
    /// resolve. Not journaled, so a restart does not inherit it.
    Drain,
    /// A feed connection changed state (connected, lost, back after a gap, stale, fresh).
    Feed {
        stream: FeedStream,
        state: FeedState,
    },
}

/// What the I/O thread is asked to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Intent {
    /// A MARKET order. For a close, the I/O thread adds the venue's close flags: `reduceOnly`
    /// (futures one-way) or `positionSide` (hedge mode), `sideEffectType=AUTO_REPAY` (margin);
    /// for a margin entry, `MARGIN_BUY`.
    Place(OrderIntent),
    /// Ask the exchange for an order whose outcome is unknown, by client order id; the answer
    /// comes back as an `OrderUpdate` (`NotFound` if it never arrived).
    Query { account: AccountId, venue: Venue, symbol: Symbol, cid: ClientOrderId },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OrderIntent {
    pub cid: ClientOrderId,
    pub key: PositionKey,
    pub order_side: OrderSide,
    pub qty: Qty,
    pub purpose: OrderPurpose,
    pub modality: Modality,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArmRejection {
    /// The key is already armed or held by Core.
    AlreadyArmed,
    BadPeriods,
    BadRisk,
    BadCapital,
    BadTechnicalStop,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DisarmRejection {
    UnknownId,
    /// It has entered (or is entering): closing is `halt --flatten`'s job, not disarm's.
    NotArmed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryRejection {
    /// Technical stop on the wrong side of the price, or no distance: no span to size from.
    NoSpan,
    BelowMinQty,
    BelowMinNotional,
    /// No balance reported for the venue/symbol, or nothing available.
    NoBalance,
    /// Sizing produced a quantity beyond the representable range.
    Overflow,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    StopHit,
    Flatten,
    /// A retry of an earlier close whose order was rejected, not found or partly filled.
    Retry,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClosedBy {
    /// robsond's close filled.
    OwnOrder,
    /// The exchange shows the key flat and robsond did not close it (closed by hand, liquidated).
    External,
    /// The entry never filled.
    EntryFailed,
    /// What remained was below the step or minQty: no market order can close it.
    Dust,
}

/// Why a close could not be sent; the position stays owned and flagged until the exchange moves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseProblem {
    /// The quantity rounds to zero, or below minQty, on the step grid: nothing sendable.
    Dust,
    /// The exchange refused the close for good (filter, balance): an operator must look.
    Refused,
}

/// Every decision and every exchange fact the engine acted on (DESIGN.md section 7).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Journal {
    Armed {
        id: PositionId,
        key: PositionKey,
        params: ArmParams,
    },
    ArmRejected {
        key: PositionKey,
        reason: ArmRejection,
    },
    Disarmed {
        id: PositionId,
    },
    EntrySignal {
        id: PositionId,
        cross: Cross,
        price: Price,
    },
    /// The key holds a position Core does not own: Core never merges into it.
    EntryBlocked {
        id: PositionId,
        holder: Option<Modality>,
    },
    /// The signal fired while halted; the arm stays armed.
    EntrySuppressed {
        id: PositionId,
    },
    EntryRejected {
        id: PositionId,
        reason: EntryRejection,
    },
    OrderSent {
        intent: OrderIntent,
        reason: Option<CloseReason>,
    },
    QuerySent {
        id: PositionId,
        cid: ClientOrderId,
    },
    OrderUpdated {
        id: PositionId,
        update: OrderUpdate,
    },
    /// An update for an order robsond does not track (another tool's, or a position already
    /// settled); recorded, not acted on.
    OrderIgnored {
        update: OrderUpdate,
    },
    /// Core's entry filled: the position is live with its technical stop.
    PositionOpened {
        id: PositionId,
        key: PositionKey,
        qty: Qty,
        entry: Price,
        stop: Price,
        span: Price,
    },
    /// The Safety Net took a key: a manual position, or the remainder after Core's exit.
    PositionDetected {
        id: PositionId,
        key: PositionKey,
        qty: Qty,
        entry: Price,
        from: Option<PositionId>,
    },
    PositionUpdated {
        id: PositionId,
        qty: Qty,
        entry: Price,
    },
    SafetyStopSet {
        id: PositionId,
        stop: Price,
        pct: Ratio,
    },
    StopMoved {
        id: PositionId,
        from: Price,
        to: Price,
        level: i64,
    },
    StopTriggered {
        id: PositionId,
        trigger: Price,
        stop: Price,
    },
    CloseBlocked {
        id: PositionId,
        problem: CloseProblem,
    },
    /// A close decided while this instance does not hold the lease: nothing was sent; it goes
    /// out when the lease returns, if it is still wanted then.
    CloseDeferred {
        id: PositionId,
        reason: CloseReason,
    },
    PositionClosed {
        id: PositionId,
        by: ClosedBy,
    },
    /// A dust remainder (below the step or minQty) that cannot be protected by a market order.
    DustIgnored {
        key: PositionKey,
        qty: Qty,
    },
    /// An exchange snapshot older than one already applied, or than robsond's own fill.
    SnapshotIgnored {
        key: PositionKey,
        exchange_ms: u64,
    },
    Halted {
        flatten: bool,
    },
    Resumed,
    LeaseChanged {
        held: bool,
    },
    PriceStale {
        market: MarketKey,
    },
    PriceFresh {
        market: MarketKey,
    },
    /// A WebSocket connection of the feed changed state: recorded so that the log explains
    /// every gap in prices or account events (prices themselves carry their own staleness).
    FeedChanged {
        stream: FeedStream,
        state: FeedState,
    },
}

/// Which of the feed's connections: per venue, the market prices, the book, or the account.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FeedStream {
    pub venue: Venue,
    pub kind: FeedKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FeedKind {
    Market,
    Book,
    User,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FeedState {
    Connected,
    Disconnected,
    /// Back after a gap of this many milliseconds with no connection.
    Reconnected {
        gap_ms: u64,
    },
    /// Connected but silent for longer than its staleness limit.
    Stale,
    Fresh,
}

/// A journal entry: the engine's monotone sequence number and the time it decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record {
    pub seq: u64,
    pub at: Nanos,
    pub event: Journal,
}

/// Where the engine's outputs go. The hot thread's sink pushes into rtrb rings; tests collect.
pub trait Sink {
    fn intent(&mut self, intent: Intent);
    fn record(&mut self, record: Record);
}

/// A sink that keeps everything, for tests, replay and tools.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct VecSink {
    pub intents: Vec<Intent>,
    pub records: Vec<Record>,
}

impl VecSink {
    pub fn clear(&mut self) {
        self.intents.clear();
        self.records.clear();
    }

    pub fn journal(&self) -> impl Iterator<Item = &Journal> {
        self.records.iter().map(|r| &r.event)
    }

    pub fn orders(&self) -> impl Iterator<Item = &OrderIntent> {
        self.intents.iter().filter_map(|i| match i {
            Intent::Place(order) => Some(order),
            Intent::Query { .. } => None,
        })
    }
}

impl Sink for VecSink {
    fn intent(&mut self, intent: Intent) {
        self.intents.push(intent);
    }

    fn record(&mut self, record: Record) {
        self.records.push(record);
    }
}

/// What `on_event` answers directly, so that a control command learns its outcome without
/// searching the journal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reply {
    Done,
    Armed(PositionId),
    ArmRejected(ArmRejection),
    DisarmRejected(DisarmRejection),
}
