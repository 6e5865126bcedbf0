//! Shared by the `e2e_*` test binaries: `feed`'s real parts (WsClient on a caller-owned
//! `mio::Poll`, FrameParser, RestClient, OrderExecutor, the session schedules) wired to a running
//! simulator over real loopback TCP and, where asked, TLS trusted through the simulator's CA.
//!
//! The driver pumps the client the way the hot loop does (poll until the next deadline, hand over
//! readiness, run timers) and records, in arrival order, every `WsEvent` and every frame with
//! what the connection's own `FrameParser` made of it. Tests wait on that record with a generous
//! deadline that is only a failure guard, never a measurement. Nothing here asserts on time.
//!
//! It owns no test logic: which prices, orders and faults to use is each test's business.

#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use engine::events::{OrderIntent, OrderUpdate};
use engine::types::{Modality, OrderPurpose, OrderTag, PositionId};
use engine::{AccountId, ClientOrderId, Event, MarketKey, PositionKey, Price, Qty, Side, Symbol};
use engine::{Venue, events::Origin};
use feed::rest::{
    Api, ApiKey, Credentials, EventSink, HttpConfig, Note, OrderExecutor, RestClient, RestConfig,
    Secret, SystemClock,
};
use feed::wire::{Control, FrameError, FrameParser, Parsed};
use feed::ws::{ClientOptions, ConnId, WsClient, WsConfig, WsEvent, WsSink};
use mio::{Events, Poll};
use sim::{Sim, SimConfig};

/// Every wait's failure guard. Generous: the machine is shared and the build is unoptimised.
pub const T: Duration = Duration::from_secs(10);

pub const ACCOUNT: AccountId = AccountId(0);

pub fn btc() -> Symbol {
    Symbol::lit("BTCUSDT")
}

pub fn eth() -> Symbol {
    Symbol::lit("ETHUSDT")
}

pub fn market(venue: Venue, symbol: Symbol) -> MarketKey {
    MarketKey { venue, symbol }
}

/// Wall-clock epoch milliseconds: the clock `SystemClock` signs with and the sessions run on.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_millis() as u64
}

/// A simulator whose prices move only by `set_price`; `tick` publishes them on its own clock
/// (None: only `Sim::step` publishes).
pub fn start_sim(tls: bool, tick: Option<Duration>) -> Sim {
    Sim::start(SimConfig { tls, tick, ..SimConfig::manual() }).expect("simulator starts")
}

// ---- REST ----

pub fn credentials() -> Credentials {
    Credentials::hmac(
        ApiKey::new(SimConfig::DEMO_API_KEY.to_owned()),
        &Secret::from_string(SimConfig::DEMO_SECRET.to_owned()),
    )
}

pub fn http_config(sim: &Sim) -> HttpConfig {
    HttpConfig { extra_ca_pem: sim.ca_file().map(Path::to_path_buf), ..HttpConfig::default() }
}

pub fn rest_client(sim: &Sim, api: Api) -> RestClient {
    rest_client_with(sim, api, &RestConfig::default())
}

pub fn rest_client_with(sim: &Sim, api: Api, config: &RestConfig) -> RestClient {
    let base = match api {
        Api::Futures => &sim.urls().usdm_rest,
        Api::Spot => &sim.urls().spot_rest,
    };
    RestClient::new(
        api,
        base,
        &http_config(sim),
        config,
        Some(credentials()),
        Arc::new(SystemClock),
    )
    .expect("REST client")
}

/// A MARKET intent as the engine would emit it.
pub fn intent(
    key: PositionKey,
    purpose: OrderPurpose,
    modality: Modality,
    position: u64,
    sequence: u32,
    qty: Qty,
) -> OrderIntent {
    let cid = ClientOrderId::new(OrderTag {
        modality,
        purpose,
        position: PositionId(position),
        sequence,
    });
    let order_side = match purpose {
        OrderPurpose::Entry => key.side.opening_order(),
        OrderPurpose::Close => key.side.closing_order(),
    };
    OrderIntent { cid, key, order_side, qty, purpose, modality }
}

pub fn key(venue: Venue, symbol: Symbol, side: Side) -> PositionKey {
    PositionKey { account: ACCOUNT, venue, symbol, side }
}

/// What the executor handed back: engine events and its notes, in order.
#[derive(Debug, Default)]
pub struct ExecOut {
    pub events: Vec<Event>,
    pub notes: Vec<Note>,
}

impl EventSink for ExecOut {
    fn event(&mut self, event: Event) {
        self.events.push(event);
    }

    fn note(&mut self, note: Note) {
        self.notes.push(note);
    }
}

impl ExecOut {
    pub fn orders(&self) -> Vec<OrderUpdate> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::Order(u) => Some(*u),
                _ => None,
            })
            .collect()
    }
}

/// Polls the executor on the wall clock, sleeping to its next due time, until `cond` holds.
pub fn poll_until(
    exec: &mut OrderExecutor,
    out: &mut ExecOut,
    what: &str,
    cond: impl Fn(&ExecOut) -> bool,
) {
    let deadline = Instant::now() + T;
    loop {
        let outcome = exec.poll(now_ms(), out);
        if cond(out) {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}; executor gave {out:#?}");
        let wait = outcome.next_due_ms.map_or(10, |due| due.saturating_sub(now_ms()).clamp(1, 50));
        std::thread::sleep(Duration::from_millis(wait));
    }
}

// ---- WebSocket driver ----

/// One frame as the client handed it over, and what its connection's parser made of it.
#[derive(Debug)]
pub struct Frame {
    pub conn: ConnId,
    pub text: String,
    pub parsed: Result<Parsed, FrameError>,
    pub events: Vec<Event>,
}

#[derive(Debug)]
pub enum Item {
    Ws(WsEvent),
    Frame(Frame),
}

/// The sink: parses each frame in place with its connection's parser and keeps everything.
pub struct Collector {
    parsers: Vec<Option<FrameParser>>,
    pub log: Vec<Item>,
}

impl WsSink for Collector {
    fn frame(&mut self, conn: ConnId, frame: &mut [u8], _received: Instant) {
        let text = String::from_utf8_lossy(frame).into_owned();
        let parser = self
            .parsers
            .get_mut(conn.index())
            .and_then(Option::as_mut)
            .expect("every connection is opened with its parser");
        let mut events = Vec::new();
        let parsed = parser.parse(frame, |e| events.push(e));
        self.log.push(Item::Frame(Frame { conn, text, parsed, events }));
    }

    fn event(&mut self, event: WsEvent) {
        self.log.push(Item::Ws(event));
    }
}

impl Collector {
    /// A cursor: what arrives from now on starts at this index.
    pub fn len(&self) -> usize {
        self.log.len()
    }

    pub fn is_empty(&self) -> bool {
        self.log.is_empty()
    }

    pub fn ws_events(&self, from: usize) -> Vec<WsEvent> {
        self.log[from..]
            .iter()
            .filter_map(|i| match i {
                Item::Ws(e) => Some(*e),
                Item::Frame(_) => None,
            })
            .collect()
    }

    pub fn frames(&self, from: usize, conn: ConnId) -> Vec<&Frame> {
        self.log[from..]
            .iter()
            .filter_map(|i| match i {
                Item::Frame(f) if f.conn == conn => Some(f),
                _ => None,
            })
            .collect()
    }

    /// Engine events of the frames that parsed, in wire order.
    pub fn events(&self, from: usize, conn: ConnId) -> Vec<Event> {
        self.frames(from, conn).iter().flat_map(|f| f.events.iter().copied()).collect()
    }

    pub fn controls(&self, from: usize, conn: ConnId) -> Vec<Control> {
        self.frames(from, conn)
            .iter()
            .filter_map(|f| match f.parsed {
                Ok(Parsed::Control(c)) => Some(c),
                _ => None,
            })
            .collect()
    }

    pub fn errors(&self, from: usize, conn: ConnId) -> Vec<FrameError> {
        self.frames(from, conn).iter().filter_map(|f| f.parsed.err()).collect()
    }

    pub fn connected_count(&self, conn: ConnId) -> usize {
        self.ws_events(0)
            .iter()
            .filter(|e| matches!(e, WsEvent::Connected { conn: c, .. } if *c == conn))
            .count()
    }

    /// Index of the first item at or after `from` that satisfies `pred`.
    pub fn position(&self, from: usize, pred: impl FnMut(&Item) -> bool) -> Option<usize> {
        self.log[from..].iter().position(pred).map(|i| i + from)
    }

    /// A short account of what arrived, for failure messages (frame texts left out: private
    /// frames can name a listen key).
    pub fn summary(&self, from: usize) -> String {
        let mut out = String::new();
        for item in &self.log[from.min(self.log.len())..] {
            match item {
                Item::Ws(e) => out.push_str(&format!("  {e:?}\n")),
                Item::Frame(f) => {
                    out.push_str(&format!("  frame {:?}: {:?} {:?}\n", f.conn, f.parsed, f.events))
                }
            }
        }
        out
    }
}

pub const FIRST_TOKEN: usize = 10;

/// The client on a real `mio::Poll`, pumped as the hot loop pumps it.
pub struct Driver {
    poll: Poll,
    events: Events,
    pub client: WsClient,
    pub got: Collector,
}

impl Driver {
    /// Trusts `extra_ca` (the simulator's CA) besides the webpki roots.
    pub fn new(extra_ca: Option<&Path>) -> Driver {
        let poll = Poll::new().expect("poll");
        let options =
            ClientOptions { max_connections: 4, extra_ca_pem: extra_ca.map(Path::to_path_buf) };
        let client = WsClient::new(poll.registry(), FIRST_TOKEN, options).expect("WsClient");
        Driver {
            poll,
            events: Events::with_capacity(64),
            client,
            got: Collector { parsers: (0..4).map(|_| None).collect(), log: Vec::new() },
        }
    }

    fn adopt(&mut self, conn: ConnId, parser: FrameParser) -> ConnId {
        self.got.parsers[conn.index()] = Some(parser);
        conn
    }

    pub fn open_streams(
        &mut self,
        base: &str,
        streams: &[&str],
        cfg: &WsConfig,
        parser: FrameParser,
    ) -> ConnId {
        let conn =
            self.client.open_streams(base, streams, cfg, Instant::now()).expect("open_streams");
        self.adopt(conn, parser)
    }

    pub fn open(&mut self, url: &str, cfg: &WsConfig, parser: FrameParser) -> ConnId {
        let conn = self.client.open(url, cfg, Instant::now()).expect("open");
        self.adopt(conn, parser)
    }

    pub fn open_api(&mut self, url: &str, cfg: &WsConfig, parser: FrameParser) -> ConnId {
        let conn = self.client.open_api(url, cfg, Instant::now()).expect("open_api");
        self.adopt(conn, parser)
    }

    /// One turn of the loop: poll until the client's next deadline (at most `max_wait`), hand
    /// over the readiness events, run the timers.
    pub fn turn(&mut self, max_wait: Duration) {
        let now = Instant::now();
        let wait = match self.client.next_deadline() {
            Some(t) => t.saturating_duration_since(now).min(max_wait),
            None => max_wait,
        };
        self.poll.poll(&mut self.events, Some(wait)).expect("poll");
        for event in self.events.iter() {
            assert!(self.client.owns(event.token()), "only the client registers here");
            self.client.on_ready(event, Instant::now(), &mut self.got);
        }
        self.client.on_timer(Instant::now(), &mut self.got);
    }

    /// Turns until `cond` gives a value; panics with `what` and the record after `T`.
    pub fn run_until<R>(&mut self, what: &str, cond: impl FnMut(&Collector) -> Option<R>) -> R {
        self.run_until_within(what, T, cond)
    }

    /// `run_until` with its own guard, for a wait whose failure is expected to be reported.
    pub fn run_until_within<R>(
        &mut self,
        what: &str,
        guard: Duration,
        mut cond: impl FnMut(&Collector) -> Option<R>,
    ) -> R {
        let start = self.got.len();
        let deadline = Instant::now() + guard;
        loop {
            if let Some(r) = cond(&self.got) {
                return r;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; since the wait began:\n{}",
                self.got.summary(start)
            );
            self.turn(Duration::from_millis(10));
        }
    }

    /// Turns until the connection's `n`-th `Connected` (counted from its opening).
    pub fn until_connected(&mut self, conn: ConnId, n: usize) {
        self.run_until(&format!("connection #{n} of {conn:?}"), |g| {
            (g.connected_count(conn) >= n).then_some(())
        });
    }

    /// Turns for `d` regardless (to show that something does NOT happen).
    pub fn run_for(&mut self, d: Duration) {
        let end = Instant::now() + d;
        while Instant::now() < end {
            self.turn(Duration::from_millis(10));
        }
    }
}

/// Quick intervals for loopback tests; each test sets what it exercises.
pub fn fast(base: WsConfig) -> WsConfig {
    WsConfig {
        ping_every: Duration::from_millis(150),
        dead_after: Duration::from_millis(600),
        stale_after: None,
        backoff_min: Duration::from_millis(20),
        backoff_max: Duration::from_millis(200),
        rotate_after: None,
        connect_timeout: Duration::from_secs(5),
        reply_timeout: Duration::from_secs(5),
        outbound_per_sec: 20,
        ..base
    }
}

// ---- reading engine events ----

pub fn marks(events: &[Event], symbol: Symbol) -> Vec<Price> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Mark { market, price, origin: Origin::Stream } if market.symbol == symbol => {
                Some(*price)
            }
            _ => None,
        })
        .collect()
}

pub fn trades(events: &[Event], symbol: Symbol) -> Vec<Price> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Trade { market, price, origin: Origin::Stream } if market.symbol == symbol => {
                Some(*price)
            }
            _ => None,
        })
        .collect()
}

pub fn books(events: &[Event], symbol: Symbol) -> Vec<(Price, Price)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Book { market, bid, ask, origin: Origin::Stream } if market.symbol == symbol => {
                Some((*bid, *ask))
            }
            _ => None,
        })
        .collect()
}

pub fn order_updates(events: &[Event]) -> Vec<OrderUpdate> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Order(u) => Some(*u),
            _ => None,
        })
        .collect()
}

/// `(side, qty, entry)` of every position event.
pub fn positions(events: &[Event]) -> Vec<(PositionKey, Qty, Price)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Position { key, qty, entry, .. } => Some((*key, *qty, *entry)),
            _ => None,
        })
        .collect()
}
