//! A loopback Binance: USD-M futures and spot/isolated-margin REST, market streams, user-data
//! streams and the spot WebSocket API, over real TCP (optionally TLS with a generated CA), for
//! tests across the workspace and for `robsond demo`.
//!
//! Its encoding of Binance's protocol is written from BINANCE.md and the fixtures, independently
//! of `feed`'s parsers, so that a misreading on one side shows up as a failure rather than
//! agreeing with itself. Threads, locks and allocation are fine here and stay here: nothing of
//! this crate belongs on robsond's hot path.
//!
//! ```no_run
//! use sim::{Sim, SimConfig};
//! let sim = Sim::start(SimConfig::default()).unwrap();
//! let urls = sim.urls();
//! // Futures REST at urls.usdm_rest, market streams at urls.usdm_ws + "/market/ws/btcusdt@markPrice".
//! # drop(urls);
//! sim.shutdown();
//! ```
//!
//! What is simulated, and how (the choices a test may depend on):
//! - **Ports.** One for futures (REST `/fapi/...`, WebSockets `/public`, `/market`, `/private`, and
//!   the legacy unrouted `/ws`, `/stream`, which get `/public` streams only), one for spot and
//!   margin (REST `/api/v3/...`, `/sapi/v1/...`, WebSockets `/ws`, `/stream`, `/ws-api/v3`).
//! - **Prices.** See `PricePath`. Each step (the clock thread's `tick`, or `Sim::step`) every
//!   market publishes one trade at its price, its book (price ± `half_spread_ticks`) and, on
//!   futures, its mark price (the trade price `mark_lag_steps` steps ago; `@markPrice` and
//!   `@markPrice@1s` both get every step, the step being the cadence). `Sim::set_price` moves a
//!   price; the next step publishes it.
//! - **Matching.** A market order fills whole at the best price on its side (buy at the ask, sell
//!   at the bid): the book has no depth. Futures are one-way mode (`positionSide` BOTH; LONG/SHORT
//!   → -4061), cross margin, volume-weighted entry on increase, realized PnL on decrease, the
//!   entry reset to the fill price on a flip. Taker fees (`usdm_fee`, `margin_fee`) are charged;
//!   funding and interest are not. Futures LIMIT orders rest and fill at their price when the
//!   market reaches them; margin takes MARKET only. Only isolated margin exists (`isIsolated`
//!   other than TRUE → -3003).
//! - **Reduce-only** (futures): -2022 when there is no position or the order would increase it; a
//!   quantity above the position is cut to the position (the order fills that much and is
//!   FILLED with `origQty` cut too), which is what Binance does for reduce-only orders, rather
//!   than refusing them.
//! - **User data.** Futures: `ORDER_TRADE_UPDATE` NEW, then per fill `TRADE_LITE`,
//!   `ORDER_TRADE_UPDATE` TRADE and `ACCOUNT_UPDATE` (reason ORDER), to every `/private`
//!   connection on the active listen key. Margin: `executionReport` NEW, `executionReport` TRADE,
//!   `outboundAccountPosition`, to every listen-token subscription on the pair.
//! - **Faults** (`Fault`) act on the connections open when they are given and on the next REST
//!   requests; `Fault::DelayFills` holds API orders live (NEW) for a while, not manual ones.
//! - **Choices where Binance's documents are silent**: `recvWindow` above 60 000 is -1131 on both
//!   venues; checks run key (-2014/-2015), mandatory parameters (-1102), signature (-1022), then
//!   timestamp (-1021); a `/private` connection on an unknown or expired listen key is refused at
//!   the handshake (HTTP 400, -1125 body); an invalid listen token is -1209 "Invalid
//!   listenToken."; a second subscription with the same token on one session is -2035.
//! - **Not simulated**: hedge mode, cross margin, spot (non-margin) trading, depth streams, the
//!   incoming-message rate limit, `rateLimits` in WebSocket API replies, the `X-SAPI-USED-*`
//!   headers (every response carries `X-MBX-USED-WEIGHT-1M`), interest, funding, liquidation.

mod config;
mod exchange;
mod http;
mod hub;
mod json;
mod market;
mod path;
mod rest;
mod ws;

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use engine::money::{Amount, Price, Qty};
use engine::types::{OrderSide, Symbol, Venue};

pub use config::{ApiKeySpec, KeyAuth, PricePath, SimConfig, SymbolSpec, VenueRules};
pub use exchange::{
    Fill, FuturesPosition, IsolatedPair, OrderOutcome, OrderRecord, OrderSource, SideEffect,
};
pub use hub::{CloseReason, ConnKind, ConnRecord};
pub use rest::RestRecord;

use exchange::{Exchange, Kind, NewOrder, Outbox};
use hub::Hub;
use rest::{Limits, Port};

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicked holder left plain data behind; the simulator keeps serving.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The simulator's clock: wall time in ms, as Binance stamps everything.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// How a REST request is made to fail (see `Fault::FailRest`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RestFailure {
    /// Answer with this status without executing anything. 503 carries "Service Unavailable."
    /// (a known failure); other statuses an unknown-error body, as a proxy would.
    RejectBefore { status: u16 },
    /// Execute the request, then answer 503 "Unknown error, please check your request or try
    /// again later.": the order exists but the client cannot know it.
    ExecuteThen503,
    /// Execute the request, then leave it unanswered for `hold` and close the connection: a
    /// client time-out with the order placed.
    ExecuteThenTimeout { hold: Duration },
    /// 429 with `Retry-After`, without counting or executing.
    TooManyRequests,
    /// 418 with `Retry-After` (an IP ban), without executing.
    Banned,
}

/// Something to go wrong, on demand. `kind: None` means every connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Close the TCP connections at once, without a WebSocket close frame. (A true RST needs
    /// `SO_LINGER` 0, which std cannot set without unsafe code: the client sees EOF, or a reset
    /// if it writes afterwards.)
    DropConnections { kind: Option<ConnKind> },
    /// Stop reading and writing but keep the TCP connection open: only pings can tell.
    HalfClose { kind: Option<ConnKind> },
    /// Send no stream data for `duration` (pings and replies continue); the data is lost.
    Stall { kind: Option<ConnKind>, duration: Duration },
    /// Garble the next `count` data frames on each matching connection (truncated JSON).
    MalformedFrames { kind: Option<ConnKind>, count: u32 },
    /// Hold the next `count` REST requests whose path starts with `path_prefix` for `delay`.
    DelayRest { path_prefix: String, delay: Duration, count: u32 },
    /// Fail the next `count` REST requests whose path starts with `path_prefix`.
    FailRest { path_prefix: String, count: u32, failure: RestFailure },
    /// The next `orders` API orders stay NEW (live) for `delay`, then fill at the book as it is
    /// then.
    DelayFills { delay: Duration, orders: u32 },
    /// Expire the futures listen key now: `listenKeyExpired` on its streams, PUT → -1125.
    ExpireListenKey,
    /// End every margin listen-token subscription now: `eventStreamTerminated`.
    TerminateListenTokens,
    /// Spot's `serverShutdown` event on spot streams and the WebSocket API.
    ServerShutdown,
    /// Forget pending REST faults and fill delays.
    Clear,
}

/// Why `Sim::manual_order` (or another direct call) did not do what was asked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SimError {
    UnknownMarket {
        venue: Venue,
        symbol: Symbol,
    },
    /// Binance would refuse it, with this code and message.
    Rejected {
        code: i64,
        msg: String,
    },
    /// Accepted but not filled (it expired).
    NotFilled,
}

impl core::fmt::Display for SimError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            SimError::UnknownMarket { venue, symbol } => {
                write!(f, "no {} market for {symbol}", venue.as_str())
            }
            SimError::Rejected { code, msg } => write!(f, "rejected {code}: {msg}"),
            SimError::NotFilled => f.write_str("order did not fill"),
        }
    }
}

impl std::error::Error for SimError {}

/// An order "from the Binance app": same validation, same events, a `web_…` client id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ManualOrder {
    pub venue: Venue,
    pub symbol: Symbol,
    pub side: OrderSide,
    pub qty: Qty,
    /// Futures only.
    pub reduce_only: bool,
    /// Margin only.
    pub side_effect: SideEffect,
}

impl ManualOrder {
    /// A plain market order; margin orders borrow what they lack and repay from the proceeds,
    /// as the app's auto borrow/repay mode does.
    pub fn market(venue: Venue, symbol: Symbol, side: OrderSide, qty: Qty) -> ManualOrder {
        ManualOrder {
            venue,
            symbol,
            side,
            qty,
            reduce_only: false,
            side_effect: SideEffect::AutoBorrowRepay,
        }
    }
}

/// Where the simulator listens. WebSocket bases take the path (`/public/ws/…`, `/ws/…`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimUrls {
    /// `http(s)://127.0.0.1:P`: `/fapi/...`.
    pub usdm_rest: String,
    /// `ws(s)://127.0.0.1:P`: append `/public`, `/market` or `/private` and the stream path.
    pub usdm_ws: String,
    /// `http(s)://127.0.0.1:Q`: `/api/v3/...`, `/sapi/v1/...`.
    pub spot_rest: String,
    /// `ws(s)://127.0.0.1:Q`: append `/ws/...` or `/stream?streams=...`.
    pub spot_ws: String,
    /// `ws(s)://127.0.0.1:Q/ws-api/v3`.
    pub spot_wsapi: String,
}

#[derive(Clone, Debug)]
pub(crate) enum RestAction {
    Delay(Duration),
    Fail(RestFailure),
}

struct PendingRest {
    prefix: String,
    left: u32,
    action: RestAction,
}

#[derive(Default)]
struct Faults {
    rest: Vec<PendingRest>,
    fill_delay: Option<(Duration, u32)>,
}

/// Everything the threads share.
pub(crate) struct Shared {
    pub(crate) cfg: SimConfig,
    ex: Mutex<Exchange>,
    pub(crate) hub: Hub,
    faults: Mutex<Faults>,
    pub(crate) limits: Mutex<Limits>,
    pub(crate) rest_log: Mutex<Vec<RestRecord>>,
    pub(crate) shutdown: AtomicBool,
}

impl Shared {
    pub(crate) fn ex(&self) -> MutexGuard<'_, Exchange> {
        lock(&self.ex)
    }

    /// Hands user-data events to their connections. Called with the exchange locked, so that
    /// events of concurrent orders reach every socket in the order they happened.
    pub(crate) fn deliver(&self, ex: &Exchange, out: Outbox, now: Instant) {
        if !out.usdm.is_empty() {
            self.hub.send_usdm_user(ex.active_listen_key(now).as_deref(), &out.usdm);
        }
        for (symbol, payload) in &out.margin {
            self.hub.send_margin_user(*symbol, payload);
        }
    }

    pub(crate) fn take_rest_faults(&self, path: &str) -> Vec<RestAction> {
        let mut faults = lock(&self.faults);
        let mut actions = Vec::new();
        for f in faults.rest.iter_mut() {
            if f.left > 0 && path.starts_with(&f.prefix) {
                f.left -= 1;
                actions.push(f.action.clone());
            }
        }
        faults.rest.retain(|f| f.left > 0);
        actions
    }

    /// The hold the delayed-fill fault puts on the next API order, if any.
    pub(crate) fn fill_delay(&self) -> Option<Duration> {
        lock(&self.faults).fill_delay.map(|(delay, _)| delay)
    }

    /// An order took the hold: one fewer left.
    pub(crate) fn fill_delay_used(&self) {
        let mut faults = lock(&self.faults);
        if let Some((delay, left)) = faults.fill_delay {
            faults.fill_delay = (left > 1).then(|| (delay, left - 1));
        }
    }

    fn step_once(&self) {
        let wanted = self.hub.wanted();
        let mut ex = self.ex();
        let mut out = Outbox::default();
        let is_wanted = |venue: Venue, stream: &str| wanted.contains(&(venue, stream.to_owned()));
        let frames = ex.step(now_ms(), &is_wanted, &mut out);
        self.deliver(&ex, out, Instant::now());
        self.hub.broadcast_market(&frames);
    }

    /// Delayed fills that came due, listen keys and tokens that expired.
    fn housekeeping(&self) {
        let now = Instant::now();
        let mut ex = self.ex();
        let mut out = Outbox::default();
        ex.release_due(now, now_ms(), &mut out);
        self.deliver(&ex, out, now);
        if let Some(key) = ex.expire_listen_key(now, false) {
            self.hub.listen_key_expired(&key, now_ms());
        }
        let ended = ex.expire_tokens(now, false);
        self.hub.tokens_terminated(&ended, now_ms());
    }
}

/// A running simulator. Dropping it shuts it down.
pub struct Sim {
    shared: Arc<Shared>,
    urls: SimUrls,
    tls: Option<Arc<http::Tls>>,
    addrs: [SocketAddr; 2],
    threads: Vec<JoinHandle<()>>,
}

static INSTANCES: AtomicU64 = AtomicU64::new(0);

impl Sim {
    /// Binds both ports, generates the TLS material when asked, and starts the clock thread.
    pub fn start(cfg: SimConfig) -> io::Result<Sim> {
        let exchange = Exchange::new(&cfg)?;
        let tls = if cfg.tls {
            Some(Arc::new(http::Tls::generate(INSTANCES.fetch_add(1, Ordering::Relaxed))?))
        } else {
            None
        };
        let usdm = TcpListener::bind((cfg.bind, 0))?;
        let spot = TcpListener::bind((cfg.bind, 0))?;
        let addrs = [usdm.local_addr()?, spot.local_addr()?];
        let (http_scheme, ws_scheme) =
            if tls.is_some() { ("https", "wss") } else { ("http", "ws") };
        let urls = SimUrls {
            usdm_rest: format!("{http_scheme}://{}", addrs[0]),
            usdm_ws: format!("{ws_scheme}://{}", addrs[0]),
            spot_rest: format!("{http_scheme}://{}", addrs[1]),
            spot_ws: format!("{ws_scheme}://{}", addrs[1]),
            spot_wsapi: format!("{ws_scheme}://{}/ws-api/v3", addrs[1]),
        };
        let shared = Arc::new(Shared {
            limits: Mutex::new(Limits::new(Instant::now())),
            cfg,
            ex: Mutex::new(exchange),
            hub: Hub::default(),
            faults: Mutex::new(Faults::default()),
            rest_log: Mutex::new(Vec::new()),
            shutdown: AtomicBool::new(false),
        });
        let mut threads = Vec::new();
        for (listener, port) in [(usdm, Port::Usdm), (spot, Port::Spot)] {
            let shared = shared.clone();
            let tls = tls.clone();
            threads.push(
                std::thread::Builder::new()
                    .name("sim-accept".into())
                    .spawn(move || accept_loop(shared, listener, port, tls))?,
            );
        }
        let clock = shared.clone();
        threads.push(std::thread::Builder::new().name("sim-clock".into()).spawn(move || {
            clock_loop(&clock);
        })?);
        Ok(Sim { shared, urls, tls, addrs, threads })
    }

    pub fn urls(&self) -> &SimUrls {
        &self.urls
    }

    /// The generated CA's PEM file, for a client's extra-CA option (TLS only). Removed at
    /// shutdown.
    pub fn ca_file(&self) -> Option<&Path> {
        self.tls.as_deref().map(http::Tls::ca_file)
    }

    fn unknown(venue: Venue, symbol: Symbol) -> SimError {
        SimError::UnknownMarket { venue, symbol }
    }

    /// Moves a market's price (rounded to its tick); the next step publishes it.
    pub fn set_price(&self, venue: Venue, symbol: Symbol, price: Price) -> Result<(), SimError> {
        if self.shared.ex().set_price(venue, symbol, price.units()) {
            Ok(())
        } else {
            Err(Sim::unknown(venue, symbol))
        }
    }

    /// The last trade price.
    pub fn price(&self, venue: Venue, symbol: Symbol) -> Option<Price> {
        self.shared.ex().market(venue, symbol).map(|m| Price::from_units(m.last))
    }

    /// The futures mark price.
    pub fn mark_price(&self, symbol: Symbol) -> Option<Price> {
        self.shared.ex().market(Venue::Usdm, symbol).map(|m| Price::from_units(m.mark))
    }

    /// Best bid and ask.
    pub fn book(&self, venue: Venue, symbol: Symbol) -> Option<(Price, Price)> {
        let half = self.shared.cfg.half_spread_ticks;
        self.shared
            .ex()
            .market(venue, symbol)
            .map(|m| (Price::from_units(m.bid(half)), Price::from_units(m.ask(half))))
    }

    /// One step of the price path, published at once (see the crate doc).
    pub fn step(&self) {
        self.shared.step_once();
    }

    /// A market order "from the Binance app" (see `ManualOrder::market`).
    pub fn manual_order(
        &self,
        venue: Venue,
        symbol: Symbol,
        side: OrderSide,
        qty: Qty,
    ) -> Result<Fill, SimError> {
        self.manual_order_with(ManualOrder::market(venue, symbol, side, qty))
    }

    pub fn manual_order_with(&self, order: ManualOrder) -> Result<Fill, SimError> {
        let mut ex = self.shared.ex();
        if ex.market(order.venue, order.symbol).is_none() {
            return Err(Sim::unknown(order.venue, order.symbol));
        }
        let cid = format!("web_{}", ex.random_text(20));
        let new = NewOrder {
            venue: order.venue,
            symbol: order.symbol,
            side: order.side,
            kind: Kind::Market,
            qty: order.qty.units(),
            qty_decimals: engine::money::decimals_of_step(order.qty.units()),
            reduce_only: order.reduce_only,
            side_effect: order.side_effect,
            cid: Some(cid),
            source: OrderSource::Manual,
            delay: None,
        };
        let now = Instant::now();
        let mut out = Outbox::default();
        let placed = ex.place(new, now_ms(), now, &mut out);
        self.shared.deliver(&ex, out, now);
        let idx = placed.map_err(|e| SimError::Rejected { code: e.code, msg: e.msg })?;
        let o = &ex.orders[idx];
        if o.executed == 0 {
            return Err(SimError::NotFilled);
        }
        Ok(Fill {
            order_id: o.order_id,
            client_order_id: o.cid.clone(),
            price: Price::from_units(o.avg_price()),
            qty: Qty::from_units(o.executed),
        })
    }

    /// A deposit into (negative: a withdrawal from) the futures wallet: `ACCOUNT_UPDATE`.
    pub fn deposit_usdm(&self, amount: Amount) {
        let mut ex = self.shared.ex();
        let mut out = Outbox::default();
        ex.usdm_deposit(amount.units(), now_ms(), &mut out);
        self.shared.deliver(&ex, out, Instant::now());
    }

    /// A transfer into (negative: out of) an isolated pair's base or quote asset:
    /// `balanceUpdate` then `outboundAccountPosition`.
    pub fn transfer_isolated(
        &self,
        symbol: Symbol,
        base_asset: bool,
        amount: Amount,
    ) -> Result<(), SimError> {
        let mut ex = self.shared.ex();
        let mut out = Outbox::default();
        if !ex.margin_transfer(symbol, base_asset, amount.units(), now_ms(), &mut out) {
            return Err(Sim::unknown(Venue::Margin, symbol));
        }
        self.shared.deliver(&ex, out, Instant::now());
        Ok(())
    }

    pub fn fault(&self, fault: Fault) {
        let now = Instant::now();
        match fault {
            Fault::DropConnections { kind } => {
                for c in self.shared.hub.matching(kind) {
                    c.kill();
                }
            }
            Fault::HalfClose { kind } => {
                for c in self.shared.hub.matching(kind) {
                    c.frozen.store(true, Ordering::Relaxed);
                }
            }
            Fault::Stall { kind, duration } => {
                for c in self.shared.hub.matching(kind) {
                    *lock(&c.stall_until) = Some(now + duration);
                }
            }
            Fault::MalformedFrames { kind, count } => {
                for c in self.shared.hub.matching(kind) {
                    c.malformed_left.store(count, Ordering::Relaxed);
                }
            }
            Fault::DelayRest { path_prefix, delay, count } => {
                lock(&self.shared.faults).rest.push(PendingRest {
                    prefix: path_prefix,
                    left: count,
                    action: RestAction::Delay(delay),
                });
            }
            Fault::FailRest { path_prefix, count, failure } => {
                lock(&self.shared.faults).rest.push(PendingRest {
                    prefix: path_prefix,
                    left: count,
                    action: RestAction::Fail(failure),
                });
            }
            Fault::DelayFills { delay, orders } => {
                lock(&self.shared.faults).fill_delay = (orders > 0).then_some((delay, orders));
            }
            Fault::ExpireListenKey => {
                let key = self.shared.ex().expire_listen_key(now, true);
                if let Some(key) = key {
                    self.shared.hub.listen_key_expired(&key, now_ms());
                }
            }
            Fault::TerminateListenTokens => {
                let ended = self.shared.ex().expire_tokens(now, true);
                self.shared.hub.tokens_terminated(&ended, now_ms());
            }
            Fault::ServerShutdown => {
                let event = json::Obj::new().str("e", "serverShutdown").uint("E", now_ms()).end();
                for c in self.shared.hub.matching(Some(ConnKind::SpotMarket)) {
                    let text = if c.subs().combined {
                        json::Obj::new().str("stream", "!serverShutdown").raw("data", &event).end()
                    } else {
                        event.clone()
                    };
                    c.send(hub::Out::Reply(text));
                }
                for c in self.shared.hub.matching(Some(ConnKind::SpotWsApi)) {
                    c.send(hub::Out::Reply(json::Obj::new().raw("event", &event).end()));
                }
            }
            Fault::Clear => {
                let mut faults = lock(&self.shared.faults);
                faults.rest.clear();
                faults.fill_delay = None;
            }
        }
    }

    /// Every order clients sent, in arrival order, with what became of it.
    pub fn orders(&self) -> Vec<OrderRecord> {
        self.shared.ex().records.clone()
    }

    /// Every connection accepted, in order, with how it ended.
    pub fn connections(&self) -> Vec<ConnRecord> {
        self.shared.hub.records()
    }

    /// Every REST request answered (or held), in order.
    pub fn requests(&self) -> Vec<RestRecord> {
        lock(&self.shared.rest_log).clone()
    }

    /// The futures position on `symbol` (zero when flat or never traded).
    pub fn position(&self, symbol: Symbol) -> FuturesPosition {
        self.positions().into_iter().find(|p| p.symbol == symbol).unwrap_or(FuturesPosition {
            symbol,
            amount: Qty::ZERO,
            entry: Price::ZERO,
            realized: Amount::ZERO,
        })
    }

    pub fn positions(&self) -> Vec<FuturesPosition> {
        self.shared.ex().futures_positions()
    }

    /// The futures USDT wallet balance (realized PnL and fees included).
    pub fn usdm_wallet(&self) -> Amount {
        Amount::from_units(self.shared.ex().wallet)
    }

    pub fn isolated(&self, symbol: Symbol) -> Option<IsolatedPair> {
        self.shared.ex().isolated_pair(symbol)
    }

    /// Stops every thread and closes every connection.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if self.shared.shutdown.swap(true, Ordering::SeqCst) {
            return;
        }
        self.shared.hub.shutdown_all();
        for addr in self.addrs {
            // Wakes the blocking accept so that its thread sees the flag.
            let _ = TcpStream::connect_timeout(&addr, Duration::from_millis(200));
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        if let Some(tls) = &self.tls {
            tls.remove_files();
        }
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        self.stop();
    }
}

fn accept_loop(
    shared: Arc<Shared>,
    listener: TcpListener,
    port: Port,
    tls: Option<Arc<http::Tls>>,
) {
    for incoming in listener.incoming() {
        if shared.shutdown.load(Ordering::SeqCst) {
            return;
        }
        let Ok(tcp) = incoming else { continue };
        let shared = shared.clone();
        let tls = tls.clone();
        let spawned = std::thread::Builder::new()
            .name("sim-conn".into())
            .spawn(move || serve_connection(&shared, tcp, port, tls.as_deref()));
        if spawned.is_err() {
            // Out of threads: the connection is dropped, as an overloaded server would.
            continue;
        }
    }
}

/// One TCP connection: REST requests until it closes, or a WebSocket upgrade.
fn serve_connection(shared: &Arc<Shared>, tcp: TcpStream, port: Port, tls: Option<&http::Tls>) {
    let _ = tcp.set_nodelay(true);
    if tcp.set_read_timeout(Some(http::POLL)).is_err()
        || tcp.set_write_timeout(Some(http::POLL)).is_err()
    {
        return;
    }
    let raw = tcp.try_clone().ok();
    let mut stream = match tls {
        Some(tls) => match tls.accept(tcp) {
            Ok(s) => s,
            Err(_) => return,
        },
        None => http::Stream::Plain(tcp),
    };
    let mut buf = Vec::new();
    let mut conn: Option<Arc<hub::Conn>> = None;
    let reason = loop {
        let stop = || {
            shared.shutdown.load(Ordering::Relaxed)
                || conn.as_ref().is_some_and(|c| c.killed.load(Ordering::Relaxed))
        };
        let req = match http::read_request(&mut stream, &mut buf, &stop) {
            Ok(http::ReadResult::Request(req)) => req,
            Ok(http::ReadResult::Closed) | Err(_) => break CloseReason::ClientClosed,
        };
        if req.is_websocket() && conn.is_none() {
            let leftover = std::mem::take(&mut buf);
            ws::serve(shared, stream, leftover, &req, port);
            return;
        }
        let c = conn.get_or_insert_with(|| {
            let kind = match port {
                Port::Usdm => ConnKind::UsdmRest,
                Port::Spot => ConnKind::SpotRest,
            };
            let (tx, _rx) = std::sync::mpsc::channel();
            let socket = raw.as_ref().and_then(|s| s.try_clone().ok());
            shared.hub.register(kind, req.path.clone(), socket, tx, now_ms())
        });
        if c.killed.load(Ordering::Relaxed) {
            break CloseReason::Dropped;
        }
        match rest::handle(shared, port, &req) {
            rest::Reply::Respond(resp) => match http::write_response(&mut stream, &req, &resp) {
                Ok(true) => {}
                Ok(false) => break CloseReason::ClientClosed,
                Err(_) => break CloseReason::Error,
            },
            rest::Reply::HoldThenDrop(hold) => {
                let until = Instant::now() + hold;
                while Instant::now() < until && !shared.shutdown.load(Ordering::Relaxed) {
                    std::thread::sleep(http::POLL);
                }
                break CloseReason::Dropped;
            }
        }
    };
    if let Some(c) = conn {
        let reason = if c.killed.load(Ordering::Relaxed) { CloseReason::Dropped } else { reason };
        shared.hub.unregister(c.id, reason);
        c.kill();
    } else if let Some(raw) = raw {
        let _ = raw.shutdown(std::net::Shutdown::Both);
    }
}

fn clock_loop(shared: &Shared) {
    let mut next_tick = shared.cfg.tick.map(|t| Instant::now() + t);
    while !shared.shutdown.load(Ordering::SeqCst) {
        let now = Instant::now();
        if let (Some(due), Some(tick)) = (next_tick, shared.cfg.tick)
            && now >= due
        {
            shared.step_once();
            // A late step does not bunch up: the next one is a full tick away.
            next_tick = Some((due + tick).max(now));
        }
        shared.housekeeping();
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_simulator_can_be_shared_across_threads() {
        fn shareable<T: Send + Sync>() {}
        shareable::<Sim>();
    }

    #[test]
    fn debug_output_hides_secrets() {
        let cfg = SimConfig::default();
        let text = format!("{cfg:?}");
        assert!(!text.contains(SimConfig::DEMO_SECRET), "{text}");
        assert!(text.contains(SimConfig::DEMO_API_KEY));
    }
}
