//! The hot thread: every WebSocket connection on one `mio::Poll`, frames parsed in place into
//! the engine, the engine's intents and records pushed into rings, answers from the I/O thread
//! and commands from the control API drained every turn.
//!
//! It never blocks on anything but `epoll_wait` (and not even that with `ROBSON_HOT_SPIN`), never
//! locks, and allocates only when something rare happens (a new symbol to watch, a new listen key,
//! the stale-market set changing). A full ring never drops a close: intents and records wait in a
//! pre-sized overflow queue, in order, and the overflow is counted.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use engine::events::{FeedKind, FeedState, FeedStream, Intent, Sink};
use engine::types::{AccountId, MarketKey, Symbol, TriggerSource, Venue};
use engine::{Engine, Event, Modality, Nanos, Record};
use feed::session::{ListenTokenConfig, MarginUserSession};
use feed::wire::{Asset, Connection, Control, FrameParser, Parsed};
use feed::ws::{ClientOptions, ConnId, WsClient, WsConfig, WsEvent, WsSink};
use mio::{Events, Poll};

use super::{ToHot, ToIo};
use crate::api::{self, Answer, Command, Envelope};
use crate::health::Health;
use crate::metrics::{LatencyRecorder, Metrics, OrderOutcome, Stream};

/// What each connection is, for its parser, its counters and its health entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    UsdmMarket,
    UsdmBook,
    UsdmUser,
    SpotMarket,
    /// One WebSocket API connection per isolated pair, index into `HotLoop::margin`.
    MarginUser(usize),
}

impl Role {
    fn stream(self) -> Stream {
        match self {
            Role::UsdmMarket => Stream::UsdmMarket,
            Role::UsdmBook => Stream::UsdmBook,
            Role::UsdmUser => Stream::UsdmUser,
            Role::SpotMarket => Stream::SpotMarket,
            Role::MarginUser(_) => Stream::MarginUser,
        }
    }

    fn feed(self) -> FeedStream {
        let (venue, kind) = match self {
            Role::UsdmMarket => (Venue::Usdm, FeedKind::Market),
            Role::UsdmBook => (Venue::Usdm, FeedKind::Book),
            Role::UsdmUser => (Venue::Usdm, FeedKind::User),
            Role::SpotMarket => (Venue::Margin, FeedKind::Market),
            Role::MarginUser(_) => (Venue::Margin, FeedKind::User),
        };
        FeedStream { venue, kind }
    }

    pub fn health_name(self) -> &'static str {
        self.stream().label()
    }
}

struct Conn {
    role: Role,
    parser: FrameParser,
    /// Index of its entry in `Health::streams` (margin pairs share one, set by their sessions).
    health: Option<usize>,
}

pub struct HotConfig {
    pub usdm_ws: String,
    pub symbols: Vec<Symbol>,
    pub spot_ws: String,
    pub spot_wsapi: String,
    /// Isolated-margin pairs guarded (empty: futures only).
    pub margin_symbols: Vec<Symbol>,
    pub extra_ca: Option<std::path::PathBuf>,
    pub spin: bool,
    pub account: AccountId,
    /// No Postgres: the journal's file lock is the single-instance guard, and the lease is
    /// granted here once the first reconciliation round is in.
    pub local_lease: bool,
    /// Market and user-data connection settings (tests shorten them).
    pub market_ws: WsConfig,
    pub user_ws: WsConfig,
    pub spot_ws_config: WsConfig,
    pub api_ws: WsConfig,
}

/// One isolated pair's user data: its API connection and the listen-token session on it.
struct MarginConn {
    symbol: Symbol,
    conn: ConnId,
    session: MarginUserSession,
}

/// What happened on a margin API connection during one WebSocket callback, applied after it.
enum MarginNews {
    Connected(usize),
    Disconnected(usize),
    Control(usize, Control),
}

pub struct HotLoop {
    engine: Engine,
    poll: Poll,
    ws: WsClient,
    conns: Vec<Option<Conn>>,
    market: Option<ConnId>,
    book: Option<ConnId>,
    user: Option<ConnId>,
    spot: Option<ConnId>,
    margin: Vec<MarginConn>,
    margin_news: Vec<MarginNews>,
    watched: Vec<Symbol>,
    out: OutSink,
    from_io: rtrb::Consumer<ToHot>,
    commands: Receiver<Envelope>,
    health: Arc<Health>,
    metrics: Arc<Metrics>,
    latency: LatencyRecorder,
    stop: Arc<AtomicBool>,
    config: HotConfig,
    start: Instant,
    last_tick: Instant,
    last_publish: Instant,
    stale: Vec<(MarketKey, TriggerSource)>,
    reconciled: bool,
}

/// The engine's outputs: intents to the I/O thread, records to the cold thread, in order, with
/// an overflow queue in front of each ring so nothing is ever dropped.
struct OutSink {
    intents: rtrb::Producer<ToIo>,
    intent_overflow: VecDeque<Intent>,
    io_overflow: VecDeque<ToIo>,
    records: rtrb::Producer<Record>,
    record_overflow: VecDeque<Record>,
    metrics: Arc<Metrics>,
    /// When the frame being processed arrived, for the tick-to-intent latency.
    frame_at: Option<Instant>,
    latencies: [u64; 8],
    latency_count: usize,
}

impl Sink for OutSink {
    fn intent(&mut self, intent: Intent) {
        if let Some(at) = self.frame_at
            && self.latency_count < self.latencies.len()
        {
            self.latencies[self.latency_count] = at.elapsed().as_nanos() as u64;
            self.latency_count += 1;
        }
        if let Intent::Place(_) = intent {
            self.metrics.order(OrderOutcome::Sent);
        }
        if !self.intent_overflow.is_empty() || self.intents.push(ToIo::Intent(intent)).is_err() {
            self.metrics.intent_ring_full.fetch_add(1, Relaxed);
            self.intent_overflow.push_back(intent);
        }
    }

    fn record(&mut self, record: Record) {
        self.metrics.engine_seq.store(record.seq, Relaxed);
        if !self.record_overflow.is_empty() || self.records.push(record).is_err() {
            self.record_overflow.push_back(record);
        }
    }
}

impl OutSink {
    /// A rare message for the I/O thread (a token request, a lost listen key): never dropped,
    /// queued behind anything already waiting.
    fn send_io(&mut self, message: ToIo) {
        if !self.io_overflow.is_empty() {
            self.io_overflow.push_back(message);
        } else if let Err(rtrb::PushError::Full(message)) = self.intents.push(message) {
            self.io_overflow.push_back(message);
        }
    }

    fn flush(&mut self) {
        while let Some(message) = self.io_overflow.pop_front() {
            if let Err(rtrb::PushError::Full(message)) = self.intents.push(message) {
                self.io_overflow.push_front(message);
                break;
            }
        }
        while let Some(intent) = self.intent_overflow.front() {
            if self.intents.push(ToIo::Intent(*intent)).is_err() {
                break;
            }
            self.intent_overflow.pop_front();
        }
        while let Some(record) = self.record_overflow.front() {
            if self.records.push(*record).is_err() {
                break;
            }
            self.record_overflow.pop_front();
        }
        let used = self.intents.buffer().capacity() - self.intents.slots();
        self.metrics.intent_ring_used.store((used + self.intent_overflow.len()) as u64, Relaxed);
        let used = self.records.buffer().capacity() - self.records.slots();
        self.metrics.record_ring_used.store((used + self.record_overflow.len()) as u64, Relaxed);
    }
}

/// What the WebSocket client's callbacks need, borrowed from the loop for one call.
struct FrameSink<'a> {
    engine: &'a mut Engine,
    conns: &'a mut [Option<Conn>],
    out: &'a mut OutSink,
    metrics: &'a Metrics,
    health: &'a Health,
    latency: &'a mut LatencyRecorder,
    now: Nanos,
    /// Symbols seen on the account that no market stream watches yet.
    unwatched: &'a mut Vec<Symbol>,
    watched: &'a [Symbol],
    listen_key_lost: &'a mut bool,
    margin_news: &'a mut Vec<MarginNews>,
}

impl WsSink for FrameSink<'_> {
    fn frame(&mut self, conn: ConnId, frame: &mut [u8], received: Instant) {
        let Some(Some(c)) = self.conns.get_mut(conn.index()) else { return };
        let stats = self.metrics.stream(c.role.stream());
        stats.messages.fetch_add(1, Relaxed);
        if let Some(health) = c.health {
            self.health.streams[health].1.fresh.store(true, Relaxed);
        }
        let (engine, out, now) = (&mut *self.engine, &mut *self.out, self.now);
        out.frame_at = Some(received);
        let unwatched = &mut *self.unwatched;
        let watched = self.watched;
        let parsed = c.parser.parse(frame, |event| {
            if let Event::Position { key, .. } = event
                && key.venue == Venue::Usdm
                && !watched.contains(&key.symbol)
                && !unwatched.contains(&key.symbol)
            {
                unwatched.push(key.symbol);
            }
            engine.on_event(event, now, out);
        });
        out.frame_at = None;
        for i in 0..out.latency_count {
            self.latency.record(out.latencies[i]);
        }
        out.latency_count = 0;
        match (parsed, c.role) {
            (Ok(Parsed::Control(Control::ListenKeyExpired { .. })), Role::UsdmUser) => {
                *self.listen_key_lost = true
            }
            (Ok(Parsed::Control(control)), Role::MarginUser(i)) => {
                self.margin_news.push(MarginNews::Control(i, control))
            }
            (Ok(_), _) => {}
            (Err(_), _) => {
                stats.malformed.fetch_add(1, Relaxed);
            }
        }
    }

    fn event(&mut self, event: WsEvent) {
        let conn = match event {
            WsEvent::Connected { conn, .. }
            | WsEvent::Disconnected { conn, .. }
            | WsEvent::ConnectFailed { conn, .. }
            | WsEvent::Stale { conn, .. }
            | WsEvent::Fresh { conn, .. }
            | WsEvent::RotationReady { conn }
            | WsEvent::Rotated { conn, .. }
            | WsEvent::RotationFailed { conn, .. }
            | WsEvent::RequestAcked { conn, .. }
            | WsEvent::RequestFailed { conn, .. }
            | WsEvent::FrameTooLarge { conn, .. } => conn,
        };
        let Some(Some(c)) = self.conns.get(conn.index()) else { return };
        let role = c.role;
        if let Role::MarginUser(i) = role {
            // The session decides what a margin connection's state means (subscribed or not).
            match event {
                WsEvent::Connected { .. } => self.margin_news.push(MarginNews::Connected(i)),
                WsEvent::Disconnected { .. } => self.margin_news.push(MarginNews::Disconnected(i)),
                _ => {}
            }
        }
        let health = match role {
            Role::MarginUser(_) => None,
            _ => self.health.stream(role.health_name()),
        };
        let state = match event {
            WsEvent::Connected { gap: None, .. } => Some(FeedState::Connected),
            WsEvent::Connected { gap: Some(gap), .. } => {
                self.metrics.stream(role.stream()).reconnects.fetch_add(1, Relaxed);
                Some(FeedState::Reconnected { gap_ms: gap.as_millis() as u64 })
            }
            WsEvent::Disconnected { .. } => Some(FeedState::Disconnected),
            WsEvent::Stale { .. } => Some(FeedState::Stale),
            WsEvent::Fresh { .. } => Some(FeedState::Fresh),
            _ => None,
        };
        if let (Some(health), Some(state)) = (health, state) {
            let connected = !matches!(state, FeedState::Disconnected);
            health.connected.store(connected, Relaxed);
            // A market connection is fresh once data flows (see `frame`), not because it
            // connected; a user-data stream is quiet by nature, so connected is enough.
            let user = matches!(role, Role::UsdmUser);
            let fresh = match state {
                FeedState::Fresh => true,
                FeedState::Connected | FeedState::Reconnected { .. } => user,
                FeedState::Disconnected | FeedState::Stale => false,
            };
            if fresh || !matches!(state, FeedState::Connected | FeedState::Reconnected { .. }) {
                health.fresh.store(fresh, Relaxed);
            }
        }
        if matches!((role, state), (Role::UsdmUser, Some(FeedState::Reconnected { .. }))) {
            // Account events during the gap are lost: reconcile now, not in 20 s.
            self.out.send_io(ToIo::ReconcileNow);
        }
        if let Some(state) = state {
            let stream = role.feed();
            self.engine.on_event(Event::Feed { stream, state }, self.now, self.out);
        }
    }
}

impl HotLoop {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        engine: Engine,
        config: HotConfig,
        to_io: rtrb::Producer<ToIo>,
        from_io: rtrb::Consumer<ToHot>,
        records: rtrb::Producer<Record>,
        commands: Receiver<Envelope>,
        health: Arc<Health>,
        metrics: Arc<Metrics>,
        latency: LatencyRecorder,
        stop: Arc<AtomicBool>,
    ) -> Result<HotLoop, String> {
        let poll = Poll::new().map_err(|e| format!("mio poll: {e}"))?;
        let ws = WsClient::new(
            poll.registry(),
            0,
            ClientOptions { max_connections: 8, extra_ca_pem: config.extra_ca.clone() },
        )
        .map_err(|e| format!("WebSocket client: {e:?}"))?;
        let now = Instant::now();
        Ok(HotLoop {
            engine,
            poll,
            ws,
            conns: (0..8).map(|_| None).collect(),
            market: None,
            book: None,
            user: None,
            spot: None,
            margin: Vec::new(),
            margin_news: Vec::with_capacity(16),
            watched: Vec::new(),
            out: OutSink {
                intents: to_io,
                intent_overflow: VecDeque::with_capacity(4096),
                io_overflow: VecDeque::with_capacity(64),
                records,
                record_overflow: VecDeque::with_capacity(65_536),
                metrics: Arc::clone(&metrics),
                frame_at: None,
                latencies: [0; 8],
                latency_count: 0,
            },
            from_io,
            commands,
            health,
            metrics,
            latency,
            stop,
            config,
            start: now,
            last_tick: now,
            last_publish: now,
            stale: Vec::new(),
            reconciled: false,
        })
    }

    fn health_index(&self, role: Role) -> Option<usize> {
        if matches!(role, Role::MarginUser(_)) {
            return None;
        }
        self.health.streams.iter().position(|(name, _)| *name == role.health_name())
    }

    fn nanos(&self, at: Instant) -> Nanos {
        Nanos(at.saturating_duration_since(self.start).as_nanos() as u64 + 1)
    }

    fn market_streams(symbol: Symbol) -> [String; 2] {
        let s = symbol.as_str().to_ascii_lowercase();
        [format!("{s}@markPrice@1s"), format!("{s}@aggTrade")]
    }

    /// Opens the market and book connections for the configured symbols.
    pub fn open_markets(&mut self) -> Result<(), String> {
        let now = Instant::now();
        let symbols = self.config.symbols.clone();
        let market: Vec<String> =
            symbols.iter().flat_map(|&s| HotLoop::market_streams(s)).collect();
        let book: Vec<String> = symbols
            .iter()
            .map(|s| format!("{}@bookTicker", s.as_str().to_ascii_lowercase()))
            .collect();
        fn refs(v: &[String]) -> Vec<&str> {
            v.iter().map(String::as_str).collect()
        }
        let base = &self.config.usdm_ws;
        let m = self
            .ws
            .open_streams(&format!("{base}/market"), &refs(&market), &self.config.market_ws, now)
            .map_err(|e| format!("market stream: {e:?}"))?;
        let b = self
            .ws
            .open_streams(&format!("{base}/public"), &refs(&book), &self.config.market_ws, now)
            .map_err(|e| format!("book stream: {e:?}"))?;
        self.conns[m.index()] = Some(Conn {
            health: self.health_index(Role::UsdmMarket),
            role: Role::UsdmMarket,
            parser: FrameParser::new(Connection::market(Venue::Usdm)),
        });
        self.conns[b.index()] = Some(Conn {
            health: self.health_index(Role::UsdmBook),
            role: Role::UsdmBook,
            parser: FrameParser::new(Connection::market(Venue::Usdm)),
        });
        self.market = Some(m);
        self.book = Some(b);
        self.watched = symbols;
        self.open_margin(now)
    }

    fn open_margin(&mut self, now: Instant) -> Result<(), String> {
        let symbols = self.config.margin_symbols.clone();
        if symbols.is_empty() {
            return Ok(());
        }
        let streams: Vec<String> = symbols
            .iter()
            .flat_map(|s| {
                let s = s.as_str().to_ascii_lowercase();
                [format!("{s}@trade"), format!("{s}@bookTicker")]
            })
            .collect();
        let refs: Vec<&str> = streams.iter().map(String::as_str).collect();
        let spot = self
            .ws
            .open_streams(&self.config.spot_ws, &refs, &self.config.spot_ws_config, now)
            .map_err(|e| format!("spot market stream: {e:?}"))?;
        self.conns[spot.index()] = Some(Conn {
            health: self.health_index(Role::SpotMarket),
            role: Role::SpotMarket,
            parser: FrameParser::new(Connection::market(Venue::Margin)),
        });
        self.spot = Some(spot);
        let now_ms = wall_ms();
        for (i, &symbol) in symbols.iter().enumerate() {
            let conn = self
                .ws
                .open_api(&self.config.spot_wsapi, &self.config.api_ws, now)
                .map_err(|e| format!("margin user data: {e:?}"))?;
            let parser = FrameParser::new(Connection::isolated_margin_user(
                self.config.account,
                symbol,
                quote_of(symbol),
            ));
            self.conns[conn.index()] =
                Some(Conn { role: Role::MarginUser(i), parser, health: None });
            let session = MarginUserSession::new(ListenTokenConfig::default(), &[symbol], now_ms);
            self.margin.push(MarginConn { symbol, conn, session });
        }
        Ok(())
    }

    /// Applies what the margin connections reported, asks for due tokens, sends the sessions'
    /// requests, and publishes whether every pair is subscribed.
    fn run_margin(&mut self, now: Instant) {
        if self.margin.is_empty() {
            return;
        }
        let now_ms = wall_ms();
        for news in self.margin_news.drain(..) {
            match news {
                MarginNews::Connected(i) => {
                    self.margin[i].session.on_connected(now_ms);
                    // Fills while it was away reach the engine from myTrades, now.
                    self.out.send_io(ToIo::ReconcileNow);
                }
                MarginNews::Disconnected(i) => self.margin[i].session.on_disconnected(),
                MarginNews::Control(i, control) => {
                    let news = self.margin[i].session.on_control(control, now_ms);
                    if matches!(news, feed::session::SessionNews::Lost { .. }) {
                        self.out.send_io(ToIo::ReconcileNow);
                    }
                }
            }
        }
        for m in &mut self.margin {
            m.session.on_timer(now_ms);
            while let Some(symbol) = m.session.due_token_request(now_ms) {
                let validity_ms = m.session.validity_ms();
                self.out.send_io(ToIo::TokenRequest { symbol, validity_ms });
            }
            for frame in m.session.drain_outbox() {
                let _ = self.ws.send_text(m.conn, &frame, now);
            }
        }
        let ready = self.margin.iter().all(|m| m.session.ready());
        if let Some(health) = self.health.stream(Stream::MarginUser.label()) {
            health.connected.store(ready, Relaxed);
            health.fresh.store(ready, Relaxed);
        }
    }

    fn watch(&mut self, symbol: Symbol, now: Instant) {
        if self.watched.contains(&symbol) {
            return;
        }
        self.watched.push(symbol);
        let market = HotLoop::market_streams(symbol);
        let book = format!("{}@bookTicker", symbol.as_str().to_ascii_lowercase());
        if let Some(m) = self.market {
            let _ = self.ws.subscribe(m, &[market[0].as_str(), market[1].as_str()], now);
        }
        if let Some(b) = self.book {
            let _ = self.ws.subscribe(b, &[book.as_str()], now);
        }
    }

    fn user_stream(&mut self, path: &str, now: Instant) {
        let url = format!("{}{}", self.config.usdm_ws, path);
        match self.user {
            Some(conn) => {
                let _ = self.ws.retarget(conn, &url, now);
            }
            None => match self.ws.open(&url, &self.config.user_ws, now) {
                Ok(conn) => {
                    let parser = FrameParser::new(Connection::usdm_user(self.config.account));
                    let health = self.health_index(Role::UsdmUser);
                    self.conns[conn.index()] = Some(Conn { role: Role::UsdmUser, parser, health });
                    self.user = Some(conn);
                }
                // No synchronous log on the hot thread: the stream stays "not connected" in
                // /readyz, and the next listen key retries the open.
                Err(_) => {
                    self.metrics.stream(Stream::UsdmUser).reconnects.fetch_add(1, Relaxed);
                }
            },
        }
    }

    /// Runs until the stop flag is set.
    pub fn run(mut self) -> Engine {
        let mut events = Events::with_capacity(256);
        let mut unwatched: Vec<Symbol> = Vec::with_capacity(16);
        while !self.stop.load(Relaxed) {
            let now = Instant::now();
            let timeout = if self.config.spin {
                Some(Duration::ZERO)
            } else {
                let next = self.ws.next_deadline().map(|d| d.saturating_duration_since(now));
                Some(next.unwrap_or(Duration::from_millis(20)).min(Duration::from_millis(20)))
            };
            let _ = self.poll.poll(&mut events, timeout);
            let now = Instant::now();
            let nanos = self.nanos(now);
            let mut listen_key_lost = false;
            {
                let mut sink = FrameSink {
                    engine: &mut self.engine,
                    conns: &mut self.conns,
                    out: &mut self.out,
                    metrics: &self.metrics,
                    health: &self.health,
                    latency: &mut self.latency,
                    now: nanos,
                    unwatched: &mut unwatched,
                    watched: &self.watched,
                    listen_key_lost: &mut listen_key_lost,
                    margin_news: &mut self.margin_news,
                };
                for event in events.iter() {
                    if self.ws.owns(event.token()) {
                        self.ws.on_ready(event, now, &mut sink);
                    }
                }
                self.ws.on_timer(now, &mut sink);
            }
            if listen_key_lost {
                self.out.send_io(ToIo::ListenKeyLost);
            }
            while let Some(symbol) = unwatched.pop() {
                self.watch(symbol, now);
            }
            self.run_margin(now);
            self.drain_io(now, nanos);
            let engine = &mut self.engine;
            let out = &mut self.out;
            api::drain_commands(&self.commands, |command| match command {
                Command::Engine(event) => Answer::Engine(engine.on_event(event, nanos, out)),
                Command::Positions => Answer::Positions(engine.positions().collect(), nanos),
            });
            if now.duration_since(self.last_tick) >= Duration::from_millis(100) {
                self.last_tick = now;
                self.engine.on_event(Event::Tick, nanos, &mut self.out);
                self.report_stale(nanos);
                self.count_positions();
            }
            self.out.flush();
            if now.duration_since(self.last_publish) >= Duration::from_millis(500) {
                self.last_publish = now;
                self.latency.publish();
            }
            self.health.beat(now);
            self.metrics.hot_loop_turns.fetch_add(1, Relaxed);
        }
        self.out.flush();
        self.engine
    }

    fn drain_io(&mut self, now: Instant, nanos: Nanos) {
        while let Ok(message) = self.from_io.pop() {
            match message {
                ToHot::Engine(event) => {
                    if let Event::Position { key, .. } = event
                        && key.venue == Venue::Usdm
                    {
                        self.watch(key.symbol, now);
                    }
                    if let Event::Order(update) = event {
                        let outcome = match update.status {
                            engine::events::OrderStatus::Filled => Some(OrderOutcome::Filled),
                            engine::events::OrderStatus::Rejected(_) => {
                                Some(OrderOutcome::Rejected)
                            }
                            engine::events::OrderStatus::Unknown => Some(OrderOutcome::Unknown),
                            engine::events::OrderStatus::NotFound => Some(OrderOutcome::NotFound),
                            engine::events::OrderStatus::Canceled
                            | engine::events::OrderStatus::Expired => Some(OrderOutcome::Canceled),
                            _ => None,
                        };
                        if let Some(outcome) = outcome {
                            self.metrics.order(outcome);
                        }
                    }
                    self.engine.on_event(event, nanos, &mut self.out);
                }
                ToHot::UserStream(path) => self.user_stream(&path, now),
                ToHot::Token { symbol, token } => {
                    if let Some(m) = self.margin.iter_mut().find(|m| m.symbol == symbol) {
                        m.session.on_token(symbol, token, wall_ms());
                    }
                }
                ToHot::TokenFailed(symbol) => {
                    if let Some(m) = self.margin.iter_mut().find(|m| m.symbol == symbol) {
                        m.session.on_token_failure(symbol, wall_ms());
                    }
                }
                ToHot::Reconciled => {
                    if !self.reconciled {
                        self.reconciled = true;
                        self.health.reconciled.store(true, Relaxed);
                        if self.config.local_lease && !self.health.draining.load(Relaxed) {
                            self.health.lease.store(true, Relaxed);
                            self.engine.on_event(Event::Lease { held: true }, nanos, &mut self.out);
                        }
                    }
                }
                ToHot::Lease(held) => {
                    self.health.lease.store(held, Relaxed);
                    self.engine.on_event(Event::Lease { held }, nanos, &mut self.out);
                }
            }
        }
    }

    fn report_stale(&mut self, nanos: Nanos) {
        // Compared in place: no allocation unless the set changed.
        let mut now_stale = self.engine.stale_markets(nanos);
        let mut same = true;
        let mut count = 0;
        for (i, market) in now_stale.by_ref().enumerate() {
            count = i + 1;
            if self.stale.get(i).is_none_or(|(m, _)| *m != market) {
                same = false;
                break;
            }
        }
        if same && count == self.stale.len() {
            return;
        }
        let stale: Vec<(MarketKey, TriggerSource)> = self
            .engine
            .stale_markets(nanos)
            .map(|m| (m, TriggerSource::default_for(m.venue)))
            .collect();
        // Remembered only once the I/O thread has it: a full ring retries on the next tick
        // rather than leaving a stale market without its REST fallback.
        if self.out.intents.push(ToIo::Stale(stale.clone())).is_ok() {
            self.stale = stale;
        }
    }

    fn count_positions(&self) {
        let (mut core, mut safety) = (0, 0);
        for view in self.engine.positions() {
            match view.modality {
                Modality::Core => core += 1,
                Modality::SafetyNet => safety += 1,
            }
        }
        self.metrics.positions_core.store(core, Relaxed);
        self.metrics.positions_safety_net.store(safety, Relaxed);
    }
}

/// Pins the calling thread to `cpu` if given (and reports whether it worked).
pub fn pin(cpu: Option<usize>) -> bool {
    cpu.is_some_and(crate::affinity::pin_current)
}

/// Wall-clock milliseconds: listen tokens expire on Binance's clock.
fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The quote asset of an isolated pair, from its name: exchangeInfo's `quoteAsset` is not
/// carried by the parsed rules yet, and these are the quotes Binance's isolated pairs use.
fn quote_of(symbol: Symbol) -> Asset {
    const QUOTES: [&str; 8] = ["FDUSD", "USDT", "USDC", "BUSD", "BTC", "ETH", "BNB", "TRY"];
    let name = symbol.as_str();
    QUOTES
        .iter()
        .find(|q| name.ends_with(*q) && name.len() > q.len())
        .and_then(|q| Asset::new(q.as_bytes()))
        .unwrap_or(Asset::USDT)
}
