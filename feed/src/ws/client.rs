//! The connection state machine: logical connections (what the caller asked for) over physical
//! ones (sockets), at most two per logical connection so that rotation can be make-before-break.
//!
//! Tokens: logical slot `s` uses `first_token + 2s` and `first_token + 2s + 1`, one per physical
//! side; the resolver's wake-up pipe takes `first_token + 2 * max_connections`. A side's token
//! is fixed, so a side keeps its token when it becomes the primary. A readiness event left over
//! from a socket already replaced is harmless: every I/O here is non-blocking and a spurious
//! event ends in `WouldBlock`.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::event::Event;
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use rustls::pki_types::ServerName;
use tungstenite::client::IntoClientRequest;
use tungstenite::error::{CapacityError, ProtocolError};
use tungstenite::handshake::client::ClientHandshake;
use tungstenite::handshake::{HandshakeError, MidHandshake};
use tungstenite::protocol::WebSocketConfig;
use tungstenite::{Bytes, Message, WebSocket};

use super::pacing::{SendWindow, backoff};
use super::reply::{self, Reply};
use super::resolver::{Resolved, Resolver};
use super::transport::{self, TlsStream, Transport};
use super::url::{Target, check_stream_name};
use super::{
    ClientOptions, ConnId, ConnKind, ConnStatus, Method, Reason, Rotation, WsConfig, WsError,
    WsEvent, WsSink,
};

/// Our pings carry a fixed payload: any frame proves the peer alive, so there is nothing to match.
const PING_PAYLOAD: &[u8] = b"robsond";

/// Budget kept free from requests for our ping.
const PING_RESERVE: usize = 1;

/// Messages read from one socket per call before the others get their turn: a flooding market
/// connection must not hold back the user-data one for long. The rest is read from `on_timer`,
/// which `next_deadline` makes due at once.
const READ_BUDGET: usize = 256;

/// The non-blocking WebSocket client. See the module documentation.
pub struct WsClient {
    shared: Shared,
    slots: Vec<Slot>,
}

/// What every connection uses.
struct Shared {
    registry: Registry,
    tls: Arc<rustls::ClientConfig>,
    resolver: Resolver,
    first_token: usize,
    max_connections: usize,
    rng: fastrand::Rng,
    next_seq: u64,
    next_request_id: u64,
    /// Events raised by calls that have no sink (open, subscribe, retarget…), handed over at the
    /// start of the next `on_ready`/`on_timer`.
    deferred: Vec<WsEvent>,
    /// The `now` of the call that deferred the first of them: `next_deadline` is due then.
    deferred_at: Option<Instant>,
}

struct Slot {
    generation: u32,
    conn: Option<Box<Logical>>,
}

/// What the caller opened: a URL (and streams), kept alive across physical connections.
struct Logical {
    id: ConnId,
    kind: ConnKind,
    cfg: WsConfig,
    target: Target,
    /// Streams the caller wants (combined-stream connections).
    wanted: Vec<String>,
    phys: [Option<Phys>; 2],
    /// The side whose frames are delivered, or whose attempt is the (re)connection.
    primary: usize,
    /// `phys[primary]` is open.
    up: bool,
    down_since: Option<Instant>,
    /// Consecutive failures, for the backoff.
    attempts: u32,
    retry_at: Option<Instant>,
    /// Why the other side exists (or will, at `rotate_at`).
    rotation: Option<Rotation>,
    rotation_attempts: u32,
    /// When to start the rotation candidate.
    rotate_at: Option<Instant>,
    /// An open candidate switches by then at the latest.
    switch_by: Option<Instant>,
    last_data: Instant,
    stale: bool,
    /// Each message is copied here and handed to the sink as `&mut [u8]`.
    frame_buf: Vec<u8>,
    reconnects: u64,
    rotations: u64,
    frames_too_large: u64,
}

/// One socket's life: connect, TLS, upgrade, open.
struct Phys {
    stage: Stage,
    token: Token,
    /// Attempt number, to recognise this attempt's DNS answer.
    seq: u64,
    target: Target,
    request_url: String,
    max_frame: usize,
    deadline: Instant,
    opened_at: Option<Instant>,
    last_rx: Instant,
    last_ping: Option<Instant>,
    ping_due: bool,
    window: SendWindow,
    queue: VecDeque<Outbound>,
    awaiting: Vec<Pending>,
    /// Streams this connection carries as far as we know (URL + requested).
    has: Vec<String>,
    /// The last read stopped at [`READ_BUDGET`], not at `WouldBlock`: more is waiting, and
    /// edge-triggered readiness will not say so again.
    backlog: bool,
}

enum Stage {
    Resolving,
    Connecting { sock: TcpStream, addrs: Vec<SocketAddr>, next: usize },
    Tls(Box<TlsStream>),
    Upgrading(Box<MidHandshake<ClientHandshake<Transport>>>),
    Open(Box<WebSocket<Transport>>),
    Gone,
}

enum Outbound {
    Request(Pending, String),
    Text(String),
}

struct Pending {
    id: u64,
    method: Method,
    streams: Vec<String>,
    sent_at: Instant,
}

/// What moving a connecting socket along gave.
enum Step {
    Waiting,
    Opened,
    Open,
    Failed(Reason),
}

/// What one read gave.
enum Item {
    /// A message, now in the frame buffer.
    Frame,
    Ping,
    Pong,
    Closed(u16),
    TooLarge {
        len: u64,
        max: usize,
    },
    Blocked,
    Failed(Reason),
}

/// Collects events raised where no sink was given.
struct Deferred<'a>(&'a mut Vec<WsEvent>);

impl WsSink for Deferred<'_> {
    fn frame(&mut self, _: ConnId, _: &mut [u8], _: Instant) {}

    fn event(&mut self, event: WsEvent) {
        self.0.push(event);
    }
}

impl WsClient {
    /// Reserves tokens `first_token ..= first_token + 2 * max_connections` in `registry` and
    /// starts the resolver thread. Builds the TLS trust store (webpki roots + extra CA) once.
    pub fn new(
        registry: &Registry,
        first_token: usize,
        options: ClientOptions,
    ) -> Result<WsClient, WsError> {
        if options.max_connections == 0 || options.max_connections > 1 << 20 {
            return Err(WsError::BadConfig("max_connections must be within 1..=2^20"));
        }
        let tls = transport::client_config(options.extra_ca_pem.as_deref())?;
        let registry = registry.try_clone().map_err(|e| WsError::Io(e.kind()))?;
        let resolver_token = Token(first_token + 2 * options.max_connections);
        let resolver =
            Resolver::start(&registry, resolver_token).map_err(|e| WsError::Io(e.kind()))?;
        let slots =
            (0..options.max_connections).map(|_| Slot { generation: 0, conn: None }).collect();
        Ok(WsClient {
            shared: Shared {
                registry,
                tls,
                resolver,
                first_token,
                max_connections: options.max_connections,
                rng: fastrand::Rng::new(),
                next_seq: 0,
                next_request_id: 0,
                deferred: Vec::with_capacity(64),
                deferred_at: None,
            },
            slots,
        })
    }

    /// The tokens this client registers, so the caller can route events.
    pub fn owns(&self, token: Token) -> bool {
        let first = self.shared.first_token;
        (first..=first + 2 * self.shared.max_connections).contains(&token.0)
    }

    /// A combined-stream market connection to `<base>/stream?streams=…`.
    pub fn open_streams(
        &mut self,
        base: &str,
        streams: &[&str],
        cfg: &WsConfig,
        now: Instant,
    ) -> Result<ConnId, WsError> {
        let target = Target::parse(base)?;
        target.check_stream_base()?;
        let wanted = checked_streams(streams, &[], cfg)?;
        self.open_kind(ConnKind::Streams, target, wanted, cfg, now)
    }

    /// A connection to exactly `url` (a user-data stream, a raw stream).
    pub fn open(&mut self, url: &str, cfg: &WsConfig, now: Instant) -> Result<ConnId, WsError> {
        self.open_kind(ConnKind::Raw, Target::parse(url)?, Vec::new(), cfg, now)
    }

    /// A WebSocket API connection: the caller sends requests with [`WsClient::send_text`].
    pub fn open_api(&mut self, url: &str, cfg: &WsConfig, now: Instant) -> Result<ConnId, WsError> {
        self.open_kind(ConnKind::Api, Target::parse(url)?, Vec::new(), cfg, now)
    }

    fn open_kind(
        &mut self,
        kind: ConnKind,
        target: Target,
        wanted: Vec<String>,
        cfg: &WsConfig,
        now: Instant,
    ) -> Result<ConnId, WsError> {
        cfg.validate()?;
        let Some(slot) = self.slots.iter().position(|s| s.conn.is_none()) else {
            return Err(WsError::NoFreeSlot);
        };
        let entry = &mut self.slots[slot];
        entry.generation = entry.generation.wrapping_add(1);
        let id = ConnId { slot: slot as u32, generation: entry.generation };
        let mut logical = Box::new(Logical {
            id,
            kind,
            cfg: cfg.clone(),
            target,
            wanted,
            phys: [None, None],
            primary: 0,
            up: false,
            down_since: None,
            attempts: 0,
            retry_at: None,
            rotation: None,
            rotation_attempts: 0,
            rotate_at: None,
            switch_by: None,
            last_data: now,
            stale: false,
            frame_buf: Vec::with_capacity(cfg.max_frame),
            reconnects: 0,
            rotations: 0,
            frames_too_large: 0,
        });
        deferring(&mut self.shared, now, |sh, sink| logical.start_attempt(sh, 0, now, sink));
        entry.conn = Some(logical);
        Ok(id)
    }

    /// Adds streams to a combined-stream connection. They are sent as SUBSCRIBE now if it is up
    /// (paced), and are part of every later connection's URL. Returns the id of the request
    /// sent on the current connection, if one was needed; its outcome comes as
    /// [`WsEvent::RequestAcked`] or [`WsEvent::RequestFailed`].
    pub fn subscribe(
        &mut self,
        conn: ConnId,
        streams: &[&str],
        now: Instant,
    ) -> Result<Option<u64>, WsError> {
        let (sh, logical) = self.get(conn)?;
        if logical.kind != ConnKind::Streams {
            return Err(WsError::NotAStreamConnection);
        }
        let added = checked_streams(streams, &logical.wanted, &logical.cfg)?;
        logical.wanted.extend(added);
        Ok(logical.sync_all(sh, now))
    }

    /// Removes streams from a combined-stream connection (UNSUBSCRIBE now if it is up).
    pub fn unsubscribe(
        &mut self,
        conn: ConnId,
        streams: &[&str],
        now: Instant,
    ) -> Result<Option<u64>, WsError> {
        let (sh, logical) = self.get(conn)?;
        if logical.kind != ConnKind::Streams {
            return Err(WsError::NotAStreamConnection);
        }
        for (index, s) in streams.iter().enumerate() {
            if !check_stream_name(s) {
                return Err(WsError::BadStreamName { index });
            }
        }
        logical.wanted.retain(|w| !streams.contains(&w.as_str()));
        Ok(logical.sync_all(sh, now))
    }

    /// The streams a combined-stream connection currently wants.
    pub fn streams(&self, conn: ConnId) -> Option<&[String]> {
        self.find(conn).map(|l| l.wanted.as_slice())
    }

    /// Sends a text message (a WebSocket API request) on the connection, paced with the rest.
    /// During an API rotation it goes to the new connection once [`WsEvent::RotationReady`]
    /// was given.
    pub fn send_text(&mut self, conn: ConnId, text: &str, now: Instant) -> Result<(), WsError> {
        let (sh, logical) = self.get(conn)?;
        let side = logical.send_side().ok_or(WsError::NotConnected)?;
        let max_queued = logical.cfg.max_queued;
        let phys = logical.phys[side].as_mut().ok_or(WsError::NotConnected)?;
        if phys.queue.len() >= max_queued {
            return Err(WsError::QueueFull);
        }
        phys.queue.push_back(Outbound::Text(text.to_string()));
        logical.pump_or_defer(sh, side, now);
        Ok(())
    }

    /// Points the connection at a new URL (a new listen key). If it is up, the new URL is
    /// connected alongside and takes over as soon as it is up ([`WsEvent::Rotated`]);
    /// otherwise the next attempt starts now with it.
    pub fn retarget(&mut self, conn: ConnId, url: &str, now: Instant) -> Result<(), WsError> {
        let target = Target::parse(url)?;
        let (sh, logical) = self.get(conn)?;
        if logical.kind == ConnKind::Streams {
            target.check_stream_base()?;
        }
        logical.target = target;
        deferring(sh, now, |sh, sink| {
            if logical.up {
                let candidate = logical.candidate();
                if let Some(mut old) = logical.phys[candidate].take() {
                    old.shutdown(&sh.registry);
                }
                logical.start_rotation(sh, Rotation::Retarget, now, sink);
            } else {
                let primary = logical.primary;
                if let Some(mut attempt) = logical.phys[primary].take() {
                    attempt.shutdown(&sh.registry);
                }
                logical.retry_at = None;
                logical.start_attempt(sh, primary, now, sink);
            }
        });
        Ok(())
    }

    /// Starts a make-before-break rotation now (e.g. on Binance's `serverShutdown`). Does
    /// nothing if the connection is down or already rotating.
    pub fn rotate_now(&mut self, conn: ConnId, now: Instant) -> Result<(), WsError> {
        let (sh, logical) = self.get(conn)?;
        if logical.up && logical.phys[logical.candidate()].is_none() {
            deferring(sh, now, |sh, sink| {
                logical.start_rotation(sh, Rotation::Requested, now, sink);
            });
        }
        Ok(())
    }

    /// API connections: the session is set up on the rotation candidate; switch to it now.
    pub fn finish_rotation(
        &mut self,
        conn: ConnId,
        now: Instant,
        sink: &mut dyn WsSink,
    ) -> Result<(), WsError> {
        self.flush_deferred(sink);
        let (sh, logical) = self.get(conn)?;
        let candidate = logical.candidate();
        if logical.up && logical.phys[candidate].as_ref().is_some_and(Phys::is_open) {
            logical.drain_and_switch(sh, now, sink);
        }
        Ok(())
    }

    /// Closes the connection (close frame, best effort) and frees its slot. No event follows.
    pub fn close(&mut self, conn: ConnId) {
        let Ok((sh, logical)) = self.get(conn) else {
            return;
        };
        for side in logical.phys.iter_mut() {
            if let Some(mut phys) = side.take() {
                phys.shutdown(&sh.registry);
            }
        }
        self.slots[conn.index()].conn = None;
    }

    pub fn status(&self, conn: ConnId) -> Option<ConnStatus> {
        self.find(conn).map(|l| ConnStatus {
            kind: l.kind,
            up: l.up,
            stale: l.stale,
            last_data: l.last_data,
            streams: l.wanted.len(),
            reconnects: l.reconnects,
            rotations: l.rotations,
            frames_too_large: l.frames_too_large,
        })
    }

    /// Handles a readiness event for one of this client's tokens ([`WsClient::owns`]).
    pub fn on_ready(&mut self, event: &Event, now: Instant, sink: &mut dyn WsSink) {
        self.on_token(event.token(), now, sink);
    }

    /// [`WsClient::on_ready`] by token.
    pub fn on_token(&mut self, token: Token, now: Instant, sink: &mut dyn WsSink) {
        self.flush_deferred(sink);
        let Some(offset) = token.0.checked_sub(self.shared.first_token) else {
            return;
        };
        if offset == 2 * self.shared.max_connections {
            self.shared.resolver.drain_wake();
            self.take_resolved(now, sink);
            return;
        }
        let (slot, side) = (offset / 2, offset % 2);
        let Some(Some(logical)) = self.slots.get_mut(slot).map(|s| s.conn.as_deref_mut()) else {
            return;
        };
        logical.on_ready(&mut self.shared, side, now, sink);
    }

    /// Runs every timer due at `now`: reconnects, connect timeouts, pings, dead peers, pacing,
    /// request timeouts, rotation, staleness. Call it after every poll wake-up.
    pub fn on_timer(&mut self, now: Instant, sink: &mut dyn WsSink) {
        self.flush_deferred(sink);
        // A lost wake-up byte must not strand an answer.
        self.take_resolved(now, sink);
        for slot in self.slots.iter_mut() {
            if let Some(logical) = slot.conn.as_deref_mut() {
                logical.on_timer(&mut self.shared, now, sink);
            }
        }
    }

    /// The earliest instant `on_timer` has something to do (possibly already past).
    pub fn next_deadline(&self) -> Option<Instant> {
        let deferred = self.shared.deferred_at;
        let conns = self
            .slots
            .iter()
            .filter_map(|s| s.conn.as_deref())
            .filter_map(Logical::next_deadline)
            .min();
        match (deferred, conns) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn flush_deferred(&mut self, sink: &mut dyn WsSink) {
        self.shared.deferred_at = None;
        if !self.shared.deferred.is_empty() {
            for event in self.shared.deferred.drain(..) {
                sink.event(event);
            }
        }
    }

    fn take_resolved(&mut self, now: Instant, sink: &mut dyn WsSink) {
        while let Some(answer) = self.shared.resolver.try_next() {
            let Resolved { slot, seq, addrs } = answer;
            let Some(Some(logical)) = self.slots.get_mut(slot).map(|s| s.conn.as_deref_mut())
            else {
                continue;
            };
            logical.on_resolved(&mut self.shared, seq, addrs, now, sink);
        }
    }

    fn get(&mut self, conn: ConnId) -> Result<(&mut Shared, &mut Logical), WsError> {
        match self.slots.get_mut(conn.index()) {
            Some(Slot { generation, conn: Some(logical) }) if *generation == conn.generation => {
                Ok((&mut self.shared, logical))
            }
            _ => Err(WsError::UnknownConnection),
        }
    }

    fn find(&self, conn: ConnId) -> Option<&Logical> {
        match self.slots.get(conn.index()) {
            Some(Slot { generation, conn: Some(logical) }) if *generation == conn.generation => {
                Some(logical)
            }
            _ => None,
        }
    }
}

/// Runs `f` with a sink that keeps its events for the next `on_ready`/`on_timer`. Not nested:
/// only the public calls that have no sink of their own use it.
fn deferring<R>(
    sh: &mut Shared,
    now: Instant,
    f: impl FnOnce(&mut Shared, &mut dyn WsSink) -> R,
) -> R {
    let mut events = std::mem::take(&mut sh.deferred);
    let result = f(sh, &mut Deferred(&mut events));
    if !events.is_empty() {
        sh.deferred_at.get_or_insert(now);
    }
    sh.deferred = events;
    result
}

/// The names in `streams` that are not in `have` yet, checked, without duplicates.
fn checked_streams(
    streams: &[&str],
    have: &[String],
    cfg: &WsConfig,
) -> Result<Vec<String>, WsError> {
    let mut added: Vec<String> = Vec::new();
    for (index, s) in streams.iter().enumerate() {
        if !check_stream_name(s) {
            return Err(WsError::BadStreamName { index });
        }
        if !have.iter().chain(added.iter()).any(|h| h == s) {
            added.push((*s).to_string());
        }
    }
    if have.len() + added.len() > cfg.max_streams {
        return Err(WsError::TooManyStreams { max: cfg.max_streams });
    }
    Ok(added)
}

impl Logical {
    fn token(&self, sh: &Shared, side: usize) -> Token {
        Token(sh.first_token + 2 * self.id.index() + side)
    }

    fn candidate(&self) -> usize {
        1 - self.primary
    }

    /// Where a caller's text goes: the API rotation candidate once it is open, else the primary.
    fn send_side(&self) -> Option<usize> {
        let candidate = self.candidate();
        if self.kind == ConnKind::Api && self.phys[candidate].as_ref().is_some_and(Phys::is_open) {
            return Some(candidate);
        }
        self.up.then_some(self.primary)
    }

    /// Frames of this side reach the sink: the primary's, and an API candidate's (the replies to
    /// the session the caller is setting up on it).
    fn delivers(&self, side: usize) -> bool {
        side == self.primary || self.kind == ConnKind::Api
    }

    // ---- attempts ----

    fn start_attempt(&mut self, sh: &mut Shared, side: usize, now: Instant, sink: &mut dyn WsSink) {
        sh.next_seq += 1;
        let (path, carried) = match self.kind {
            ConnKind::Streams => self.target.combined_path(&self.wanted, self.cfg.max_url_len),
            _ => (self.target.path.clone(), 0),
        };
        let mut phys = Phys {
            stage: Stage::Resolving,
            token: self.token(sh, side),
            seq: sh.next_seq,
            target: self.target.clone(),
            request_url: self.target.request_url(&path),
            max_frame: self.cfg.max_frame,
            deadline: now + self.cfg.connect_timeout,
            opened_at: None,
            last_rx: now,
            last_ping: None,
            ping_due: false,
            window: SendWindow::new(self.cfg.outbound_per_sec as usize, now),
            queue: VecDeque::with_capacity(16),
            awaiting: Vec::with_capacity(16),
            has: self.wanted[..carried].to_vec(),
            backlog: false,
        };
        let started = match phys.target.ip {
            Some(ip) => phys.connect(sh, vec![SocketAddr::new(ip, phys.target.port)], 0),
            None => {
                sh.resolver.request(self.id.index(), phys.seq, &phys.target.host, phys.target.port);
                Ok(())
            }
        };
        self.phys[side] = Some(phys);
        if let Err(reason) = started {
            self.phys_failed(sh, side, reason, now, sink);
        }
    }

    fn on_resolved(
        &mut self,
        sh: &mut Shared,
        seq: u64,
        addrs: Result<Vec<SocketAddr>, io::ErrorKind>,
        now: Instant,
        sink: &mut dyn WsSink,
    ) {
        let Some(side) = (0..2).find(|&side| {
            self.phys[side]
                .as_ref()
                .is_some_and(|p| p.seq == seq && matches!(p.stage, Stage::Resolving))
        }) else {
            return;
        };
        let result = match addrs {
            Ok(addrs) => self.phys[side].as_mut().map_or(Ok(()), |p| p.connect(sh, addrs, 0)),
            Err(kind) => Err(Reason::Resolve(kind)),
        };
        if let Err(reason) = result {
            self.phys_failed(sh, side, reason, now, sink);
        }
    }

    fn start_rotation(
        &mut self,
        sh: &mut Shared,
        cause: Rotation,
        now: Instant,
        sink: &mut dyn WsSink,
    ) {
        self.rotation = Some(cause);
        self.rotate_at = None;
        self.switch_by = None;
        let candidate = self.candidate();
        self.start_attempt(sh, candidate, now, sink);
    }

    // ---- readiness ----

    fn on_ready(&mut self, sh: &mut Shared, side: usize, now: Instant, sink: &mut dyn WsSink) {
        let Some(phys) = self.phys[side].as_mut() else {
            return;
        };
        match phys.advance(sh) {
            Step::Waiting => {}
            Step::Failed(reason) => self.phys_failed(sh, side, reason, now, sink),
            Step::Opened => {
                self.on_open(sh, side, now, sink);
                // Frames may have come in with the upgrade response: read them now, no event
                // will announce them again.
                self.read(sh, side, now, sink);
            }
            Step::Open => {
                if side != self.primary && self.waits_for_first_frame() {
                    // Deliver what the old connection already has before the new one may take
                    // over on its first data frame.
                    self.read(sh, self.primary, now, sink);
                }
                self.read(sh, side, now, sink);
            }
        }
    }

    /// A market or raw rotation candidate switches on its first data frame.
    fn waits_for_first_frame(&self) -> bool {
        self.kind != ConnKind::Api
            && self.up
            && matches!(self.rotation, Some(Rotation::Scheduled | Rotation::Requested))
            && self.phys[self.candidate()].as_ref().is_some_and(Phys::is_open)
    }

    fn on_open(&mut self, sh: &mut Shared, side: usize, now: Instant, sink: &mut dyn WsSink) {
        if let Some(phys) = self.phys[side].as_mut() {
            phys.opened_at = Some(now);
            phys.last_rx = now;
        }
        if side == self.primary {
            self.up = true;
            self.retry_at = None;
            self.rotation = None;
            self.rotate_at = self.cfg.rotate_after.map(|d| now + d);
            let gap = self.down_since.take().map(|since| now.saturating_duration_since(since));
            if gap.is_some() {
                self.reconnects += 1;
            }
            sink.event(WsEvent::Connected { conn: self.id, gap });
            self.sync(sh, side, now);
            self.pump_side(sh, side, now, sink);
            return;
        }
        // A rotation candidate.
        self.sync(sh, side, now);
        self.pump_side(sh, side, now, sink);
        if self.phys[side].is_none() {
            // Failed on its first write: already reported, retried later.
            return;
        }
        match self.rotation {
            Some(Rotation::Retarget) => self.drain_and_switch(sh, now, sink),
            _ if self.kind == ConnKind::Api => {
                self.switch_by = Some(now + self.cfg.rotate_grace);
                sink.event(WsEvent::RotationReady { conn: self.id });
            }
            _ => self.switch_by = Some(now + self.cfg.rotate_grace),
        }
    }

    /// Reads `side` until it would block (or [`READ_BUDGET`] messages), delivering frames, then
    /// sends what the pacing budget allows.
    fn read(&mut self, sh: &mut Shared, side: usize, now: Instant, sink: &mut dyn WsSink) {
        for _ in 0..READ_BUDGET {
            let Some(phys) = self.phys[side].as_mut() else {
                return;
            };
            phys.backlog = true;
            match phys.read_one(&mut self.frame_buf) {
                Item::Blocked => {
                    phys.backlog = false;
                    break;
                }
                Item::Frame => {
                    phys.last_rx = now;
                    self.on_frame(sh, side, now, sink);
                }
                Item::Ping => {
                    // tungstenite has queued the pong; the next read flushes it. It counts.
                    phys.last_rx = now;
                    phys.window.record(now);
                }
                Item::Pong => phys.last_rx = now,
                Item::Closed(code) => {
                    phys.flush();
                    return self.phys_failed(sh, side, Reason::PeerClosed { code }, now, sink);
                }
                Item::TooLarge { len, max } => {
                    self.frames_too_large += 1;
                    sink.event(WsEvent::FrameTooLarge { conn: self.id, len, max });
                    return self.phys_failed(sh, side, Reason::FrameTooLarge, now, sink);
                }
                Item::Failed(reason) => return self.phys_failed(sh, side, reason, now, sink),
            }
        }
        self.pump_side(sh, side, now, sink);
    }

    fn on_frame(&mut self, sh: &mut Shared, side: usize, now: Instant, sink: &mut dyn WsSink) {
        let reply = match self.kind {
            ConnKind::Streams => reply::scan(&self.frame_buf),
            _ => None,
        };
        match reply {
            Some(reply) => self.on_reply(side, reply, sink),
            None => {
                if side != self.primary && self.waits_for_first_frame() {
                    let cause = self.rotation.unwrap_or(Rotation::Scheduled);
                    self.switch(sh, cause, now, sink);
                }
                if self.delivers(side) {
                    if self.stale {
                        self.stale = false;
                        let stale_for = now.saturating_duration_since(self.last_data);
                        sink.event(WsEvent::Fresh { conn: self.id, stale_for });
                    }
                    self.last_data = now;
                }
            }
        }
        if self.delivers(side) {
            sink.frame(self.id, &mut self.frame_buf, now);
        }
    }

    fn on_reply(&mut self, side: usize, reply: Reply, sink: &mut dyn WsSink) {
        let Some(phys) = self.phys[side].as_mut() else {
            return;
        };
        // An error without an id answers the oldest request: Binance answers in order.
        let position = match reply.id {
            Some(id) => phys.awaiting.iter().position(|p| i64::try_from(p.id) == Ok(id)),
            None if reply.code.is_some() && !phys.awaiting.is_empty() => Some(0),
            None => None,
        };
        let Some(position) = position else {
            return;
        };
        let pending = phys.awaiting.remove(position);
        let (conn, id, method) = (self.id, pending.id, pending.method);
        match reply.code {
            None => sink.event(WsEvent::RequestAcked { conn, id, method }),
            Some(code) => {
                if method == Method::Subscribe {
                    self.forget_streams(&pending.streams);
                }
                sink.event(WsEvent::RequestFailed { conn, id, method, code: Some(code) });
            }
        }
    }

    /// A refused SUBSCRIBE: the streams leave the set, so the next URL does not carry them.
    fn forget_streams(&mut self, streams: &[String]) {
        self.wanted.retain(|w| !streams.contains(w));
        for phys in self.phys.iter_mut().flatten() {
            phys.has.retain(|h| !streams.contains(h));
        }
    }

    // ---- switching and failures ----

    fn drain_and_switch(&mut self, sh: &mut Shared, now: Instant, sink: &mut dyn WsSink) {
        let cause = self.rotation.unwrap_or(Rotation::Requested);
        self.read(sh, self.primary, now, sink);
        // Reading may have lost the old connection, which promotes the candidate on its own.
        if self.up && self.phys[self.candidate()].as_ref().is_some_and(Phys::is_open) {
            self.switch(sh, cause, now, sink);
        }
    }

    /// The open candidate takes over; the old connection is closed, unread frames and all.
    fn switch(&mut self, sh: &mut Shared, cause: Rotation, now: Instant, sink: &mut dyn WsSink) {
        if let Some(mut old) = self.phys[self.primary].take() {
            old.shutdown(&sh.registry);
        }
        self.primary = self.candidate();
        self.up = true;
        self.rotation = None;
        self.rotation_attempts = 0;
        self.switch_by = None;
        self.rotate_at = self.cfg.rotate_after.map(|d| now + d);
        self.rotations += 1;
        sink.event(WsEvent::Rotated { conn: self.id, cause });
    }

    fn phys_failed(
        &mut self,
        sh: &mut Shared,
        side: usize,
        reason: Reason,
        now: Instant,
        sink: &mut dyn WsSink,
    ) {
        let Some(mut phys) = self.phys[side].take() else {
            return;
        };
        phys.shutdown(&sh.registry);
        let conn = self.id;
        if side != self.primary {
            let retry_in = backoff(
                &mut sh.rng,
                self.cfg.backoff_min,
                self.cfg.backoff_max,
                self.rotation_attempts,
            );
            self.rotation_attempts = self.rotation_attempts.saturating_add(1);
            self.rotate_at = Some(now + retry_in);
            self.switch_by = None;
            sink.event(WsEvent::RotationFailed { conn, reason, retry_in });
            return;
        }
        let candidate = self.candidate();
        if self.up {
            self.up = false;
            match self.phys[candidate].as_ref().map(Phys::is_open) {
                Some(true) => {
                    // `switch` moves from the current primary to the candidate itself.
                    self.switch(sh, Rotation::PrimaryLost(reason), now, sink);
                }
                Some(false) => {
                    // The candidate's attempt becomes the reconnection.
                    self.primary = candidate;
                    self.rotation = None;
                    self.switch_by = None;
                    self.down_since = Some(now);
                    sink.event(WsEvent::Disconnected { conn, reason, retry_in: None });
                }
                None => {
                    self.down_since = Some(now);
                    let retry_in = self.schedule_retry(sh, now);
                    sink.event(WsEvent::Disconnected { conn, reason, retry_in: Some(retry_in) });
                }
            }
        } else {
            let retry_in = self.schedule_retry(sh, now);
            sink.event(WsEvent::ConnectFailed { conn, reason, retry_in });
        }
    }

    fn schedule_retry(&mut self, sh: &mut Shared, now: Instant) -> Duration {
        let delay = backoff(&mut sh.rng, self.cfg.backoff_min, self.cfg.backoff_max, self.attempts);
        self.attempts = self.attempts.saturating_add(1);
        self.retry_at = Some(now + delay);
        delay
    }

    // ---- outbound ----

    /// Brings each open connection's streams in line with `wanted`. Returns the id of the first
    /// request queued on the primary.
    fn sync_all(&mut self, sh: &mut Shared, now: Instant) -> Option<u64> {
        let mut first = None;
        for side in [self.primary, self.candidate()] {
            if self.phys[side].as_ref().is_some_and(Phys::is_open) {
                let id = self.sync(sh, side, now);
                if side == self.primary {
                    first = id;
                }
                self.pump_or_defer(sh, side, now);
            }
        }
        first
    }

    /// Queues SUBSCRIBE for wanted streams this connection lacks and UNSUBSCRIBE for the ones it
    /// has and is no longer asked for, in batches.
    fn sync(&mut self, sh: &mut Shared, side: usize, now: Instant) -> Option<u64> {
        if self.kind != ConnKind::Streams {
            return None;
        }
        let batch = self.cfg.subscribe_batch;
        let phys = self.phys[side].as_mut()?;
        let add: Vec<String> =
            self.wanted.iter().filter(|w| !phys.has.contains(w)).cloned().collect();
        let remove: Vec<String> =
            phys.has.iter().filter(|h| !self.wanted.contains(h)).cloned().collect();
        let mut first = None;
        for (method, streams) in [(Method::Subscribe, add), (Method::Unsubscribe, remove)] {
            for chunk in streams.chunks(batch) {
                sh.next_request_id += 1;
                let id = sh.next_request_id;
                first.get_or_insert(id);
                let text = request_json(method, chunk, id);
                let pending = Pending { id, method, streams: chunk.to_vec(), sent_at: now };
                phys.queue.push_back(Outbound::Request(pending, text));
            }
            match method {
                Method::Subscribe => phys.has.extend(streams),
                Method::Unsubscribe => phys.has.retain(|h| !streams.contains(h)),
            }
        }
        first
    }

    /// Sends what the budget allows, outside of a sink call: a failure becomes a deferred event.
    fn pump_or_defer(&mut self, sh: &mut Shared, side: usize, now: Instant) {
        deferring(sh, now, |sh, sink| self.pump_side(sh, side, now, sink));
    }

    fn pump_side(&mut self, sh: &mut Shared, side: usize, now: Instant, sink: &mut dyn WsSink) {
        let Some(phys) = self.phys[side].as_mut() else {
            return;
        };
        if let Err(reason) = phys.pump(now) {
            self.phys_failed(sh, side, reason, now, sink);
        }
    }

    // ---- timers ----

    fn on_timer(&mut self, sh: &mut Shared, now: Instant, sink: &mut dyn WsSink) {
        if self.phys[self.primary].is_none() && self.retry_at.is_some_and(|t| now >= t) {
            self.retry_at = None;
            self.start_attempt(sh, self.primary, now, sink);
        }
        for side in [self.primary, self.candidate()] {
            if self.phys[side].as_ref().is_some_and(|p| p.backlog) {
                self.read(sh, side, now, sink);
            }
            self.side_timers(sh, side, now, sink);
        }
        if self.up && self.attempts > 0 {
            let opened = self.phys[self.primary].as_ref().and_then(|p| p.opened_at);
            if opened.is_some_and(|t| now.saturating_duration_since(t) >= self.cfg.stable_after) {
                self.attempts = 0;
            }
        }
        let candidate = self.candidate();
        if self.up && self.phys[candidate].is_none() && self.rotate_at.is_some_and(|t| now >= t) {
            let cause = self.rotation.unwrap_or(Rotation::Scheduled);
            self.start_rotation(sh, cause, now, sink);
        }
        if self.switch_by.is_some_and(|t| now >= t) {
            self.switch_by = None;
            if self.up && self.phys[candidate].as_ref().is_some_and(Phys::is_open) {
                self.drain_and_switch(sh, now, sink);
            }
        }
        if let Some(stale_after) = self.cfg.stale_after {
            let silent_for = now.saturating_duration_since(self.last_data);
            if !self.stale && silent_for >= stale_after {
                self.stale = true;
                sink.event(WsEvent::Stale { conn: self.id, silent_for });
            }
        }
    }

    fn side_timers(&mut self, sh: &mut Shared, side: usize, now: Instant, sink: &mut dyn WsSink) {
        let (dead_after, ping_every, reply_timeout) =
            (self.cfg.dead_after, self.cfg.ping_every, self.cfg.reply_timeout);
        let conn = self.id;
        let Some(phys) = self.phys[side].as_mut() else {
            return;
        };
        if !phys.is_open() {
            if now >= phys.deadline {
                self.phys_failed(sh, side, Reason::Timeout, now, sink);
            }
            return;
        }
        let silent = now.saturating_duration_since(phys.last_rx);
        if silent >= dead_after && phys.unanswered_ping(now, dead_after - ping_every) {
            return self.phys_failed(sh, side, Reason::DeadPeer, now, sink);
        }
        let overdue = |p: &&Pending| now.saturating_duration_since(p.sent_at) >= reply_timeout;
        if phys.awaiting.iter().any(|p| overdue(&p)) {
            for p in phys.awaiting.iter().filter(overdue) {
                let (id, method) = (p.id, p.method);
                sink.event(WsEvent::RequestFailed { conn, id, method, code: None });
            }
            return self.phys_failed(sh, side, Reason::ReplyTimeout, now, sink);
        }
        // One ping per silence: another would restart the wait `unanswered_ping` measures.
        let ping_outstanding = phys.last_ping.is_some_and(|t| t >= phys.last_rx);
        if silent >= ping_every && !ping_outstanding {
            phys.ping_due = true;
        }
        self.pump_side(sh, side, now, sink);
    }

    fn next_deadline(&self) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        let mut at = |t: Instant| next = Some(next.map_or(t, |n| n.min(t)));
        if let (None, Some(t)) = (&self.phys[self.primary], self.retry_at) {
            at(t);
        }
        for phys in self.phys.iter().flatten() {
            if !phys.is_open() {
                at(phys.deadline);
                continue;
            }
            if phys.backlog {
                // Due now: last_rx is in the past.
                at(phys.last_rx);
            }
            let pong_wait = self.cfg.dead_after - self.cfg.ping_every;
            // Dead only once a ping went unanswered; until then the ping time rules.
            if let Some(p) = phys.last_ping.filter(|p| *p >= phys.last_rx) {
                at((phys.last_rx + self.cfg.dead_after).max(p + pong_wait));
            }
            if !phys.ping_due {
                let since = phys.last_ping.map_or(phys.last_rx, |p| p.max(phys.last_rx));
                at(since + self.cfg.ping_every);
            }
            // With room in the window it is due already (last_rx is in the past).
            if phys.ping_due {
                at(phys.window.free_at(0).unwrap_or(phys.last_rx));
            }
            if !phys.queue.is_empty() {
                at(phys.window.free_at(PING_RESERVE).unwrap_or(phys.last_rx));
            }
            if let Some(oldest) = phys.awaiting.iter().map(|p| p.sent_at).min() {
                at(oldest + self.cfg.reply_timeout);
            }
        }
        if self.up {
            if let (None, Some(t)) = (&self.phys[self.candidate()], self.rotate_at) {
                at(t);
            }
            let opened = self.phys[self.primary].as_ref().and_then(|p| p.opened_at);
            if let (true, Some(opened)) = (self.attempts > 0, opened) {
                at(opened + self.cfg.stable_after);
            }
        }
        if let Some(t) = self.switch_by {
            at(t);
        }
        if let (Some(stale_after), false) = (self.cfg.stale_after, self.stale) {
            at(self.last_data + stale_after);
        }
        next
    }
}

fn request_json(method: Method, streams: &[String], id: u64) -> String {
    let mut text = String::with_capacity(48 + streams.iter().map(|s| s.len() + 3).sum::<usize>());
    let _ = write!(text, r#"{{"method":"{}","params":["#, method.as_str());
    for (i, s) in streams.iter().enumerate() {
        let sep = if i == 0 { "" } else { "," };
        // Names were checked: nothing in them needs escaping.
        let _ = write!(text, r#"{sep}"{s}""#);
    }
    let _ = write!(text, r#"],"id":{id}}}"#);
    text
}

impl Phys {
    fn is_open(&self) -> bool {
        matches!(self.stage, Stage::Open(_))
    }

    /// Starts a TCP connect to the first of `addrs[next..]` that accepts one.
    fn connect(
        &mut self,
        sh: &Shared,
        addrs: Vec<SocketAddr>,
        mut next: usize,
    ) -> Result<(), Reason> {
        // Plain text only ever goes to loopback, whatever `localhost` resolved to.
        let plain = !self.target.tls;
        let mut last = Reason::Resolve(io::ErrorKind::NotFound);
        if plain && !addrs.is_empty() && addrs.iter().all(|a| !a.ip().to_canonical().is_loopback())
        {
            last = Reason::NoLoopbackAddress;
        }
        while let Some(&addr) = addrs.get(next) {
            next += 1;
            if plain && !addr.ip().to_canonical().is_loopback() {
                continue;
            }
            match TcpStream::connect(addr) {
                Ok(mut sock) => {
                    let _ = sock.set_nodelay(true);
                    let interest = Interest::READABLE | Interest::WRITABLE;
                    if let Err(e) = sh.registry.register(&mut sock, self.token, interest) {
                        last = Reason::Io(e.kind());
                        continue;
                    }
                    self.stage = Stage::Connecting { sock, addrs, next };
                    return Ok(());
                }
                Err(e) => last = Reason::Io(e.kind()),
            }
        }
        self.stage = Stage::Gone;
        Err(last)
    }

    /// Moves a connecting socket through TCP, TLS and the upgrade as far as it can go now.
    fn advance(&mut self, sh: &Shared) -> Step {
        loop {
            match std::mem::replace(&mut self.stage, Stage::Gone) {
                Stage::Resolving => {
                    self.stage = Stage::Resolving;
                    return Step::Waiting;
                }
                Stage::Connecting { mut sock, addrs, next } => match connect_status(&mut sock) {
                    Ok(false) => {
                        self.stage = Stage::Connecting { sock, addrs, next };
                        return Step::Waiting;
                    }
                    Ok(true) => {
                        if self.target.tls {
                            let name = match server_name(&self.target) {
                                Ok(name) => name,
                                Err(reason) => {
                                    let _ = sh.registry.deregister(&mut sock);
                                    return Step::Failed(reason);
                                }
                            };
                            match TlsStream::new(&sh.tls, name, sock) {
                                Ok(tls) => self.stage = Stage::Tls(Box::new(tls)),
                                Err(reason) => return Step::Failed(reason),
                            }
                        } else if let Err(reason) = self.upgrade(Transport::Plain(sock)) {
                            return Step::Failed(reason);
                        }
                    }
                    Err(e) => {
                        let _ = sh.registry.deregister(&mut sock);
                        drop(sock);
                        if let Err(reason) = self.connect(sh, addrs, next) {
                            // Report the first address's error when it was the only one.
                            let reason = match reason {
                                Reason::Resolve(_) => Reason::Io(e.kind()),
                                other => other,
                            };
                            return Step::Failed(reason);
                        }
                    }
                },
                Stage::Tls(mut tls) => match tls.handshake() {
                    Ok(true) => {
                        if let Err(reason) = self.upgrade(Transport::Tls(tls)) {
                            return Step::Failed(reason);
                        }
                    }
                    Ok(false) => {
                        self.stage = Stage::Tls(tls);
                        return Step::Waiting;
                    }
                    Err(e) => return Step::Failed(io_reason(&e)),
                },
                Stage::Upgrading(mid) => match (*mid).handshake() {
                    Ok((ws, _response)) => {
                        self.stage = Stage::Open(Box::new(ws));
                        return Step::Opened;
                    }
                    Err(HandshakeError::Interrupted(mid)) => {
                        self.stage = Stage::Upgrading(Box::new(mid));
                        return Step::Waiting;
                    }
                    Err(HandshakeError::Failure(e)) => return Step::Failed(classify(&e)),
                },
                Stage::Open(ws) => {
                    self.stage = Stage::Open(ws);
                    return Step::Open;
                }
                Stage::Gone => return Step::Failed(Reason::Eof),
            }
        }
    }

    fn upgrade(&mut self, transport: Transport) -> Result<(), Reason> {
        let request =
            self.request_url.as_str().into_client_request().map_err(|_| Reason::Handshake)?;
        let max_frame = self.max_frame;
        let config = WebSocketConfig::default()
            .read_buffer_size((max_frame + 64).max(16 * 1024))
            .write_buffer_size(0)
            .max_write_buffer_size(1 << 20)
            .max_message_size(Some(max_frame))
            .max_frame_size(Some(max_frame));
        let mid =
            ClientHandshake::start(transport, request, Some(config)).map_err(|e| classify(&e))?;
        self.stage = Stage::Upgrading(Box::new(mid));
        Ok(())
    }

    fn read_one(&mut self, buf: &mut Vec<u8>) -> Item {
        let Stage::Open(ws) = &mut self.stage else {
            return Item::Blocked;
        };
        match ws.read() {
            Ok(Message::Text(text)) => {
                buf.clear();
                buf.extend_from_slice(text.as_bytes());
                Item::Frame
            }
            Ok(Message::Binary(bytes)) => {
                buf.clear();
                buf.extend_from_slice(&bytes);
                Item::Frame
            }
            Ok(Message::Ping(_)) => Item::Ping,
            Ok(Message::Pong(_)) | Ok(Message::Frame(_)) => Item::Pong,
            Ok(Message::Close(frame)) => Item::Closed(frame.map_or(1005, |f| u16::from(f.code))),
            Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                Item::Blocked
            }
            Err(tungstenite::Error::Capacity(CapacityError::MessageTooLong { size, max_size })) => {
                Item::TooLarge { len: size as u64, max: max_size }
            }
            Err(e) => Item::Failed(classify(&e)),
        }
    }

    /// Sends the due ping and queued messages the budget allows, then flushes.
    fn pump(&mut self, now: Instant) -> Result<(), Reason> {
        let Stage::Open(ws) = &mut self.stage else {
            return Ok(());
        };
        loop {
            let ping = self.ping_due && self.window.can_send(now, 0);
            let request = !self.queue.is_empty() && self.window.can_send(now, PING_RESERVE);
            if !ping && !request {
                break;
            }
            let message = if ping {
                self.ping_due = false;
                self.last_ping = Some(now);
                Message::Ping(Bytes::from_static(PING_PAYLOAD))
            } else {
                match self.queue.pop_front() {
                    Some(Outbound::Request(mut pending, text)) => {
                        pending.sent_at = now;
                        self.awaiting.push(pending);
                        Message::text(text)
                    }
                    Some(Outbound::Text(text)) => Message::text(text),
                    None => break,
                }
            };
            self.window.record(now);
            match ws.write(message) {
                Ok(()) => {}
                // Queued in tungstenite's buffer: it goes on the next writable event.
                Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(classify(&e)),
            }
        }
        match ws.flush() {
            Ok(()) => Ok(()),
            Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
            Err(e) => Err(classify(&e)),
        }
    }

    /// A ping sent after the last frame received, and unanswered for `wait`. Until our ping
    /// has actually gone out (pacing may hold it), silence alone proves nothing.
    fn unanswered_ping(&self, now: Instant, wait: Duration) -> bool {
        self.last_ping
            .is_some_and(|p| p >= self.last_rx && now.saturating_duration_since(p) >= wait)
    }

    fn flush(&mut self) {
        if let Stage::Open(ws) = &mut self.stage {
            let _ = ws.flush();
        }
    }

    /// Closes the socket (a close frame first if open, best effort) and deregisters it.
    fn shutdown(&mut self, registry: &Registry) {
        match std::mem::replace(&mut self.stage, Stage::Gone) {
            Stage::Connecting { mut sock, .. } => {
                let _ = registry.deregister(&mut sock);
            }
            Stage::Tls(mut tls) => {
                let _ = registry.deregister(tls.tcp());
            }
            Stage::Upgrading(mut mid) => {
                let _ = registry.deregister(mid.get_mut().get_mut().tcp());
            }
            Stage::Open(mut ws) => {
                let _ = ws.close(None);
                let _ = ws.flush();
                ws.get_mut().close_notify();
                let _ = registry.deregister(ws.get_mut().tcp());
            }
            Stage::Resolving | Stage::Gone => {}
        }
    }
}

fn connect_status(sock: &mut TcpStream) -> io::Result<bool> {
    if let Some(e) = sock.take_error()? {
        return Err(e);
    }
    match sock.peer_addr() {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
        Err(e) => Err(e),
    }
}

fn server_name(target: &Target) -> Result<ServerName<'static>, Reason> {
    match target.ip {
        Some(ip) => Ok(ServerName::IpAddress(ip.into())),
        None => ServerName::try_from(target.host.clone())
            .map_err(|_| Reason::Tls(super::TlsFailure::Other)),
    }
}

fn io_reason(e: &io::Error) -> Reason {
    if let Some(tls) = transport::tls_failure_in(e) {
        return Reason::Tls(tls);
    }
    match e.kind() {
        io::ErrorKind::UnexpectedEof => Reason::Eof,
        kind => Reason::Io(kind),
    }
}

fn classify(e: &tungstenite::Error) -> Reason {
    use tungstenite::Error as E;
    match e {
        E::ConnectionClosed | E::AlreadyClosed => Reason::Eof,
        E::Io(e) => io_reason(e),
        E::Tls(_) => Reason::Tls(super::TlsFailure::Other),
        E::Capacity(_) => Reason::FrameTooLarge,
        E::Protocol(ProtocolError::ResetWithoutClosingHandshake) => Reason::Eof,
        E::Protocol(_) | E::Utf8(_) | E::AttackAttempt => Reason::Protocol,
        E::WriteBufferFull(_) => Reason::WriteOverflow,
        E::Http(response) => Reason::Refused { status: response.status().as_u16() },
        E::HttpFormat(_) | E::Url(_) => Reason::Handshake,
    }
}
