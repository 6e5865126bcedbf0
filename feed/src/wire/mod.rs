//! Hot-path parsers for Binance WebSocket frames: market streams and user-data events, straight
//! into the engine's fixed-point `Event`s.
//!
//! A [`FrameParser`] belongs to one connection (it knows the venue and the account, which the
//! frames do not carry) and owns simd-json's scratch buffers and tape, sized once at construction
//! for the largest frame it accepts. Each frame is parsed in place on its own bytes into the
//! reused tape, read field by field, and every decimal goes through `engine::money` exactly: no
//! f64, no serde, and no allocation per frame (`feed/tests/wire_no_alloc.rs` proves it).
//!
//! Engine events go to a caller-supplied sink (`FnMut(Event)`), because one frame can hold many
//! (`ACCOUNT_UPDATE` lists positions, `!markPrice@arr` lists symbols); the return value says what
//! the frame was. A frame is all or nothing: if any part of it is refused, the sink has seen
//! nothing from it.
//!
//! What each Binance event becomes (and why) is documented on [`EventKind`].

mod control;
mod error;
mod market;
mod tape;
mod user;

use engine::Event;
use engine::types::{AccountId, Symbol, Venue};
use simd_json::{Buffers, Tape};

pub use error::{ErrorKind, FrameError};
use tape::{Obj, Val};

/// Every frame shape this parser recognises, by Binance's `e` (or by shape for the replies).
///
/// Mapped to engine events (`Parsed::Events`):
/// - `MarkPrice` (`markPriceUpdate`, from `@markPrice`, `@markPrice@1s` and `!markPrice@arr`) →
///   `Event::Mark` with `p`.
/// - `BookTicker` (futures form with `e`, spot form without) → `Event::Book` with `b`/`a`.
/// - `AggTrade`, `Trade` → `Event::Trade` with `p`.
/// - `AccountUpdate` → `Event::Balance` for the connection's balance asset (cross wallet `cw`:
///   isolated wallets are tied to their positions, so `cw` is what a new cross position can draw
///   on; `wb` includes them), then `Event::Position` per entry of `a.P` at the transaction time
///   `T`. One-way mode (`ps` BOTH) reports one signed amount per symbol, so both sides are emitted:
///   the side of the sign with `|pa|` and the other side flat (a flip from long to short must
///   also close the long key).
/// - `OrderTradeUpdate` → `Event::Order` (status `X`, client id `c`, cumulative `z`, average
///   `ap`, at the outer transaction time `T`, the same clock as `ACCOUNT_UPDATE`'s `T` that the
///   engine compares it with).
/// - `ExecutionReport` → `Event::MarginTrade` first when it carries a trade (`x` TRADE: the
///   position fact), then `Event::Order`. The client id is `C` when non-empty (a cancel reports
///   the cancel request's id in `c` and the order's own in `C`), else `c`; the average is
///   `Z / z` rounded half away from zero to 1e-8.
/// - `OutboundAccountPosition` → `Event::Balance` (`MarginIsolated`) with the free amount `f` of
///   the connection's balance asset, on an isolated-margin connection; Ignored otherwise.
/// - `AccountConfigUpdate` with `ac` → `Event::SetLeverage` (the exchange's leverage is a fact
///   the entry sizing needs); with `ai` only (multi-assets mode) it is Ignored.
///
/// Control (`Parsed::Control`): `ListenKeyExpired`, `EventStreamTerminated`, `ServerShutdown`,
/// and the replies `StreamReply`, `StreamError`, `ApiReply`.
///
/// Ignored (`Parsed::Ignored`), known but of no use to the engine: `Kline` (its close is the last
/// trade price, which `aggTrade`/`trade` deliver sooner; feeding both would count every trade
/// twice in the entry signal), `TradeLite` (no cumulative quantity or status, so it cannot make
/// an `OrderUpdate`; `ORDER_TRADE_UPDATE` follows), `AlgoUpdate` (robsond sends no algo orders),
/// `MarginCall` (advisory; the liquidation itself arrives as `ACCOUNT_UPDATE`), `BalanceUpdate`
/// (a delta; `outboundAccountPosition` carries the new total), and the rest below.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventKind {
    MarkPrice,
    BookTicker,
    AggTrade,
    Trade,
    Kline,
    AvgPrice,
    MiniTicker,
    Ticker,
    DepthUpdate,
    ForceOrder,
    AccountUpdate,
    OrderTradeUpdate,
    TradeLite,
    AlgoUpdate,
    MarginCall,
    AccountConfigUpdate,
    StrategyUpdate,
    GridUpdate,
    ConditionalOrderTriggerReject,
    ListenKeyExpired,
    ExecutionReport,
    OutboundAccountPosition,
    BalanceUpdate,
    ListStatus,
    ExternalLockUpdate,
    EventStreamTerminated,
    MarginLevelStatusChange,
    UserLiabilityChange,
    ServerShutdown,
    /// `{"result":…,"id":…}`: reply to a market-stream SUBSCRIBE, UNSUBSCRIBE, LIST_SUBSCRIPTIONS…
    StreamReply,
    /// `{"code":…,"msg":…}`: a market-stream control error.
    StreamError,
    /// `{"id":…,"status":…,"result"|"error":…}`: a WebSocket API response.
    ApiReply,
}

impl EventKind {
    /// From Binance's `e` value.
    pub fn from_wire(e: &[u8]) -> Option<EventKind> {
        Some(match e {
            b"markPriceUpdate" => EventKind::MarkPrice,
            b"bookTicker" => EventKind::BookTicker,
            b"aggTrade" => EventKind::AggTrade,
            b"trade" => EventKind::Trade,
            b"kline" => EventKind::Kline,
            b"avgPrice" => EventKind::AvgPrice,
            b"24hrMiniTicker" => EventKind::MiniTicker,
            b"24hrTicker" => EventKind::Ticker,
            b"depthUpdate" => EventKind::DepthUpdate,
            b"forceOrder" => EventKind::ForceOrder,
            b"ACCOUNT_UPDATE" => EventKind::AccountUpdate,
            b"ORDER_TRADE_UPDATE" => EventKind::OrderTradeUpdate,
            b"TRADE_LITE" => EventKind::TradeLite,
            b"ALGO_UPDATE" => EventKind::AlgoUpdate,
            b"MARGIN_CALL" => EventKind::MarginCall,
            b"ACCOUNT_CONFIG_UPDATE" => EventKind::AccountConfigUpdate,
            b"STRATEGY_UPDATE" => EventKind::StrategyUpdate,
            b"GRID_UPDATE" => EventKind::GridUpdate,
            b"CONDITIONAL_ORDER_TRIGGER_REJECT" => EventKind::ConditionalOrderTriggerReject,
            b"listenKeyExpired" => EventKind::ListenKeyExpired,
            b"executionReport" => EventKind::ExecutionReport,
            b"outboundAccountPosition" => EventKind::OutboundAccountPosition,
            b"balanceUpdate" => EventKind::BalanceUpdate,
            b"listStatus" => EventKind::ListStatus,
            b"externalLockUpdate" => EventKind::ExternalLockUpdate,
            b"eventStreamTerminated" => EventKind::EventStreamTerminated,
            b"MARGIN_LEVEL_STATUS_CHANGE" => EventKind::MarginLevelStatusChange,
            b"USER_LIABILITY_CHANGE" => EventKind::UserLiabilityChange,
            b"serverShutdown" => EventKind::ServerShutdown,
            _ => return None,
        })
    }

    /// Binance's name for it (a descriptive one for the replies, which have no `e`).
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::MarkPrice => "markPriceUpdate",
            EventKind::BookTicker => "bookTicker",
            EventKind::AggTrade => "aggTrade",
            EventKind::Trade => "trade",
            EventKind::Kline => "kline",
            EventKind::AvgPrice => "avgPrice",
            EventKind::MiniTicker => "24hrMiniTicker",
            EventKind::Ticker => "24hrTicker",
            EventKind::DepthUpdate => "depthUpdate",
            EventKind::ForceOrder => "forceOrder",
            EventKind::AccountUpdate => "ACCOUNT_UPDATE",
            EventKind::OrderTradeUpdate => "ORDER_TRADE_UPDATE",
            EventKind::TradeLite => "TRADE_LITE",
            EventKind::AlgoUpdate => "ALGO_UPDATE",
            EventKind::MarginCall => "MARGIN_CALL",
            EventKind::AccountConfigUpdate => "ACCOUNT_CONFIG_UPDATE",
            EventKind::StrategyUpdate => "STRATEGY_UPDATE",
            EventKind::GridUpdate => "GRID_UPDATE",
            EventKind::ConditionalOrderTriggerReject => "CONDITIONAL_ORDER_TRIGGER_REJECT",
            EventKind::ListenKeyExpired => "listenKeyExpired",
            EventKind::ExecutionReport => "executionReport",
            EventKind::OutboundAccountPosition => "outboundAccountPosition",
            EventKind::BalanceUpdate => "balanceUpdate",
            EventKind::ListStatus => "listStatus",
            EventKind::ExternalLockUpdate => "externalLockUpdate",
            EventKind::EventStreamTerminated => "eventStreamTerminated",
            EventKind::MarginLevelStatusChange => "MARGIN_LEVEL_STATUS_CHANGE",
            EventKind::UserLiabilityChange => "USER_LIABILITY_CHANGE",
            EventKind::ServerShutdown => "serverShutdown",
            EventKind::StreamReply => "stream reply",
            EventKind::StreamError => "stream error",
            EventKind::ApiReply => "WebSocket API reply",
        }
    }
}

/// The `id` of a request, echoed in its reply: Binance takes an integer, a string (at most 36
/// characters on the spot WebSocket API) or null.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestId {
    Null,
    Int(i64),
    Text(IdText),
}

/// A string request id held inline.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct IdText {
    len: u8,
    bytes: [u8; IdText::CAP],
}

impl IdText {
    /// Binance's own limit for string ids (a UUID is 36).
    pub const CAP: usize = 36;

    pub fn new(raw: &[u8]) -> Option<IdText> {
        if raw.len() > IdText::CAP {
            return None;
        }
        let mut bytes = [0; IdText::CAP];
        bytes[..raw.len()].copy_from_slice(raw);
        Some(IdText { len: raw.len() as u8, bytes })
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

impl core::fmt::Debug for IdText {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(self.as_bytes()))
    }
}

/// A frame about the connection itself rather than the market or the account.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    /// A market-stream request succeeded (`{"result":null,"id":1}`; LIST_SUBSCRIPTIONS and
    /// GET_PROPERTY results are not kept).
    StreamReply { id: RequestId },
    /// A market-stream request failed (`{"code":2,"msg":"Invalid request…"}`): non-negative codes,
    /// unlike REST errors.
    StreamError { id: RequestId, code: i64 },
    /// A WebSocket API response: `status` is HTTP-like (200, 400, 418, 429…); `error_code` is
    /// Binance's (-2010…); `subscription_id` is set for `userDataStream.subscribe*`;
    /// `retry_after_ms` is the ban's end (epoch ms) from `error.data.retryAfter` on 418/429.
    ApiReply {
        id: RequestId,
        status: u16,
        error_code: Option<i64>,
        subscription_id: Option<u64>,
        retry_after_ms: Option<u64>,
    },
    /// The listen key expired: no more user data until a new key (futures; margin legacy).
    ListenKeyExpired { event_ms: u64 },
    /// A WebSocket API user-data subscription ended (logout, listen token expiry): resubscribe.
    EventStreamTerminated { subscription_id: Option<u64>, event_ms: u64 },
    /// The server will close this connection for maintenance: reconnect elsewhere now.
    ServerShutdown { event_ms: Option<u64> },
}

/// What a frame was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parsed {
    /// `count` engine events were passed to the sink, in wire order. `event_ms` is the event
    /// time `E` (spot bookTicker has none), for feed-latency metrics.
    Events {
        kind: EventKind,
        event_ms: Option<u64>,
        count: u32,
    },
    Control(Control),
    /// Known, well-formed at the top, and of no use to the engine (see [`EventKind`]); its body
    /// was not read.
    Ignored(EventKind),
}

/// An asset code held inline (`USDT`, `BTC`, `1000SATS`).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Asset {
    len: u8,
    bytes: [u8; Asset::CAP],
}

impl Asset {
    pub const CAP: usize = 15;
    pub const USDT: Asset = Asset::from_static("USDT");

    pub fn new(raw: &[u8]) -> Option<Asset> {
        if raw.is_empty() || raw.len() > Asset::CAP {
            return None;
        }
        let mut bytes = [0; Asset::CAP];
        bytes[..raw.len()].copy_from_slice(raw);
        Some(Asset { len: raw.len() as u8, bytes })
    }

    const fn from_static(s: &str) -> Asset {
        let raw = s.as_bytes();
        assert!(!raw.is_empty() && raw.len() <= Asset::CAP);
        let mut bytes = [0; Asset::CAP];
        let mut i = 0;
        while i < raw.len() {
            bytes[i] = raw[i];
            i += 1;
        }
        Asset { len: raw.len() as u8, bytes }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

impl core::fmt::Debug for Asset {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}", String::from_utf8_lossy(self.as_bytes()))
    }
}

/// What a connection knows and its frames do not say: the venue, the account, and which balance
/// is the one the engine sizes entries from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Connection {
    pub venue: Venue,
    pub account: AccountId,
    /// The asset whose balance becomes `Event::Balance`: the futures wallet's margin asset, or
    /// the quote asset of an isolated-margin pair.
    pub balance_asset: Asset,
    /// The pair of an isolated-margin user stream (a listen token is per isolated symbol).
    pub isolated_symbol: Option<Symbol>,
}

impl Connection {
    /// A market-data connection: only the venue matters. Spot streams feed `Venue::Margin`, the
    /// venue robsond trades spot symbols on.
    pub fn market(venue: Venue) -> Connection {
        Connection {
            venue,
            account: AccountId(0),
            balance_asset: Asset::USDT,
            isolated_symbol: None,
        }
    }

    /// A USD-M futures user-data stream; the wallet balance reported is USDT's.
    pub fn usdm_user(account: AccountId) -> Connection {
        Connection {
            venue: Venue::Usdm,
            account,
            balance_asset: Asset::USDT,
            isolated_symbol: None,
        }
    }

    /// An isolated-margin user-data subscription for `symbol`, whose quote asset is `quote`.
    pub fn isolated_margin_user(account: AccountId, symbol: Symbol, quote: Asset) -> Connection {
        Connection {
            venue: Venue::Margin,
            account,
            balance_asset: quote,
            isolated_symbol: Some(symbol),
        }
    }
}

/// Parses the frames of one connection, reusing its buffers: after construction it allocates
/// nothing, for any frame up to `max_frame` bytes.
pub struct FrameParser {
    conn: Connection,
    max_frame: usize,
    buffers: Buffers,
    /// Always empty between calls; it only lends its capacity to each frame's tape.
    tape: Tape<'static>,
}

impl FrameParser {
    /// Binance's market and user-data frames are well under 4 KiB; 64 KiB leaves room for a
    /// large `ACCOUNT_UPDATE`. `!markPrice@arr` for every symbol is about 100 KiB: raise it for
    /// that. The buffers cost about 35 bytes per byte of `max_frame` (2.2 MiB at the default),
    /// mostly the tape.
    pub const DEFAULT_MAX_FRAME: usize = 64 * 1024;
    /// Binance nests at most four levels; a deeper frame is refused before it can cost stack.
    pub const MAX_DEPTH: usize = 16;

    pub fn new(conn: Connection) -> FrameParser {
        FrameParser::with_max_frame(conn, FrameParser::DEFAULT_MAX_FRAME)
    }

    /// Sizes every buffer for `max_frame` bytes by parsing a worst-case document of that length
    /// once: simd-json grows its buffers on demand, and doing it here is what keeps the hot
    /// path free of allocation even for the largest frame it will ever accept.
    pub fn with_max_frame(conn: Connection, max_frame: usize) -> FrameParser {
        let mut buffers = Buffers::with_max_depth(max_frame, FrameParser::MAX_DEPTH);
        // "[0,0,…,0]": every byte is structural, the most a document of this length can have, and
        // simd-json reserves its index, tape and stack from that count. The slack covers stage
        // 1's reserve of 64 entries per 64-byte block.
        let mut doc = Vec::with_capacity(max_frame + 130);
        doc.push(b'[');
        while doc.len() < max_frame + 126 {
            doc.extend_from_slice(b"0,");
        }
        doc.extend_from_slice(b"0]");
        let mut tape = Tape(Vec::new());
        let warmed = simd_json::fill_tape(&mut doc, &mut buffers, &mut tape);
        debug_assert!(warmed.is_ok(), "the warm-up document is valid JSON");
        FrameParser { conn, max_frame, buffers, tape: tape.reset() }
    }

    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    pub fn max_frame(&self) -> usize {
        self.max_frame
    }

    /// Parses one text frame in place (simd-json unescapes strings inside `frame`, so its bytes
    /// may be rewritten) and passes its engine events to `sink`, all of them or, if the frame is
    /// refused, none.
    pub fn parse(
        &mut self,
        frame: &mut [u8],
        sink: impl FnMut(Event),
    ) -> Result<Parsed, FrameError> {
        if frame.len() > self.max_frame {
            return Err(oversize(frame.len(), self.max_frame));
        }
        let mut tape = core::mem::replace(&mut self.tape, Tape(Vec::new())).reset();
        let result = match simd_json::fill_tape(frame, &mut self.buffers, &mut tape) {
            Ok(()) => dispatch(&tape.0, &self.conn, sink),
            Err(_) => Err(FrameError::new(ErrorKind::InvalidJson, "")),
        };
        self.tape = tape.reset();
        result
    }
}

#[cold]
fn oversize(len: usize, max: usize) -> FrameError {
    FrameError::new(ErrorKind::Oversize { len, max }, "")
}

/// The per-event parsers' result: the event time and how many events they emitted.
pub(crate) struct Emitted {
    pub(crate) event_ms: Option<u64>,
    pub(crate) count: u32,
}

/// Holds a multi-event frame's events back until the whole frame has parsed, so that nothing is
/// emitted unless every part of it does. Sixteen cover any `ACCOUNT_UPDATE` an order produces;
/// past that the events are only counted, and the caller parses the frame a second time straight
/// into its sink (now known to succeed): still all or nothing, still no allocation.
pub(crate) struct Staged {
    events: [Event; Staged::CAP],
    len: usize,
}

impl Staged {
    const CAP: usize = 16;

    pub(crate) fn new() -> Staged {
        Staged { events: [Event::Tick; Staged::CAP], len: 0 }
    }

    #[inline]
    pub(crate) fn push(&mut self, event: Event) {
        if let Some(slot) = self.events.get_mut(self.len) {
            *slot = event;
        }
        self.len += 1;
    }

    /// The held events, or None when there were more than it could hold.
    pub(crate) fn held(&self) -> Option<&[Event]> {
        self.events.get(..self.len)
    }
}

fn dispatch<F: FnMut(Event)>(
    nodes: &[simd_json::Node<'_>],
    conn: &Connection,
    mut sink: F,
) -> Result<Parsed, FrameError> {
    let root = Val::root(nodes);
    if let Some(items) = root.array() {
        // Raw `!markPrice@arr`.
        return market::event_array(items, conn, &mut sink);
    }
    let Some(obj) = root.object() else {
        return Err(FrameError::new(ErrorKind::UnknownEvent, ""));
    };
    if let Some((b"e", e)) = obj.first() {
        return event(obj, e, None, conn, &mut sink);
    }
    control::envelope(obj, conn, &mut sink)
}

/// An event object whose `e` is `e`. `subscription` is the WebSocket API wrapper's id, if any.
pub(crate) fn event<F: FnMut(Event)>(
    obj: Obj<'_, '_>,
    e: Val<'_, '_>,
    subscription: Option<u64>,
    conn: &Connection,
    sink: &mut F,
) -> Result<Parsed, FrameError> {
    let Some(name) = e.str() else {
        return Err(FrameError::new(ErrorKind::WrongType, "e"));
    };
    let Some(kind) = EventKind::from_wire(name) else {
        return Err(FrameError::new(ErrorKind::UnknownEvent, "e"));
    };
    let emitted = match kind {
        EventKind::MarkPrice => market::mark_price(obj, conn, sink),
        EventKind::BookTicker => market::book_ticker(obj, conn, sink),
        EventKind::AggTrade | EventKind::Trade => market::trade(obj, conn, sink),
        EventKind::AccountUpdate => user::account_update(obj, conn, sink),
        EventKind::OrderTradeUpdate => user::order_trade_update(obj, conn, sink),
        EventKind::ExecutionReport => user::execution_report(obj, conn, sink),
        EventKind::OutboundAccountPosition => match user::account_position(obj, conn, sink) {
            Ok(Some(emitted)) => Ok(emitted),
            Ok(None) => return Ok(Parsed::Ignored(kind)),
            Err(e) => Err(e),
        },
        EventKind::AccountConfigUpdate => match user::account_config(obj, conn, sink) {
            Ok(Some(emitted)) => Ok(emitted),
            Ok(None) => return Ok(Parsed::Ignored(kind)),
            Err(e) => Err(e),
        },
        EventKind::ListenKeyExpired | EventKind::EventStreamTerminated => {
            return control::stream_end(obj, kind, subscription);
        }
        EventKind::ServerShutdown => return control::server_shutdown(obj),
        _ => return Ok(Parsed::Ignored(kind)),
    };
    match emitted {
        Ok(Emitted { event_ms, count }) => Ok(Parsed::Events { kind, event_ms, count }),
        Err(e) => Err(e.in_event(kind)),
    }
}
