//! The non-blocking WebSocket client the hot thread reads Binance through (issue 3).
//!
//! It owns sockets, TLS, the WebSocket protocol and the life of each connection: connect,
//! subscribe, keep alive, detect a dead or silent peer, reconnect with backoff, rotate before
//! Binance's 24-hour cut. It never parses market or account data (that is `feed::wire`, which
//! the caller runs on the frames handed to it) and never holds trading state.
//!
//! # How the hot loop drives it
//! The caller owns the `mio::Poll`; [`WsClient::new`] registers its sockets there with tokens
//! from `first_token` up ([`WsClient::owns`] tells them apart). The loop polls with a timeout
//! no later than [`WsClient::next_deadline`], passes each event with [`WsClient::owns`] to
//! [`WsClient::on_ready`], then calls [`WsClient::on_timer`]. Time is always passed in, never
//! read, so tests drive timers with real sockets and short intervals. Frames and events go to
//! a [`WsSink`]; frames arrive as `&mut [u8]`, ready for `FrameParser::parse` to work in place.
//!
//! Nothing here blocks: DNS runs on a helper thread (see `resolver`), TCP connect, the TLS
//! handshake and the WebSocket upgrade all resume on readiness. In steady state reading a frame
//! allocates nothing on `ws://`; on `wss://` rustls 0.23 allocates once per TLS record received
//! (DESIGN.md section 7's known exemption; `feed/tests/ws_no_alloc.rs` measures both).
//!
//! # Connection kinds
//! - [`WsClient::open_streams`]: a combined-stream market connection. The stream set lives here:
//!   it goes into the URL (`<base>/stream?streams=a/b/c`, as many as fit in
//!   [`WsConfig::max_url_len`], the rest as SUBSCRIBE once connected) on every (re)connect, and
//!   [`WsClient::subscribe`]/[`WsClient::unsubscribe`] change it at run time. The client tracks
//!   its request ids: a refused request is a [`WsEvent::RequestFailed`] and its streams leave the
//!   set, so a bad name is not put back into the next URL.
//! - [`WsClient::open`]: a raw URL, e.g. the futures user-data stream `/private/ws/<listenKey>`;
//!   [`WsClient::retarget`] moves it to a new URL (a new listen key) without a gap.
//! - [`WsClient::open_api`]: the spot WebSocket API. The caller sends its requests with
//!   [`WsClient::send_text`] and reads the replies and user-data events as frames; after every
//!   [`WsEvent::Connected`] it must log on and subscribe again itself.
//!
//! # Liveness, staleness, limits
//! Server pings are answered at once with the same payload (tungstenite queues the pong and the
//! read loop flushes it). After [`WsConfig::ping_every`] without any frame the client pings; after
//! [`WsConfig::dead_after`] without any frame the connection is dead and replaced. Separately, no
//! data frame for [`WsConfig::stale_after`] is [`WsEvent::Stale`] (the hot loop fails /readyz and
//! starts the REST price fallback on it), and the next data frame is [`WsEvent::Fresh`];
//! staleness belongs to the logical connection and keeps counting through reconnects. A frame
//! over [`WsConfig::max_frame`] is refused from its header, before any buffer is reserved for it,
//! reported ([`WsEvent::FrameTooLarge`]) and the connection is replaced. Every message we send
//! (pings, SUBSCRIBEs, text) is paced under [`WsConfig::outbound_per_sec`] per connection in any
//! 1.1 s window, requests keeping one of those for our ping (a burst of SUBSCRIBEs must not
//! starve the liveness check); pongs are not delayed but are counted, so paced messages make
//! room for them. A peer is only declared dead once our ping has actually gone out and stayed
//! unanswered, so pacing cannot fake a dead peer. One call reads at most a few hundred
//! messages from a socket before the others get their turn; the rest is read from `on_timer`.
//!
//! # Reconnects and rotation
//! A lost connection is [`WsEvent::Disconnected`] with its [`Reason`]; attempts are spaced by
//! capped exponential backoff with full jitter (each failure is [`WsEvent::ConnectFailed`]), and
//! the next [`WsEvent::Connected`] carries the length of the gap. The backoff resets once a
//! connection has stayed up for [`WsConfig::stable_after`].
//!
//! Rotation is make-before-break. [`WsConfig::rotate_after`] after a connection came up (or on
//! [`WsClient::rotate_now`], e.g. on Binance's `serverShutdown`), a second connection is opened
//! with the same URL and streams while the first keeps delivering. Market and raw connections
//! switch when the new one delivers its first data frame (or [`WsConfig::rotate_grace`] after
//! it is up, for a quiet stream); a retarget switches as soon as the new URL is up; an API
//! connection gets [`WsEvent::RotationReady`] so the caller can set its session up on the new
//! connection, and switches on [`WsClient::finish_rotation`] or after the grace. At the switch the
//! old connection is read one last time (what it already received is delivered), then closed;
//! frames it receives after that are never delivered. What the consumer may see at the switch:
//! the same event twice (delivered by the old connection and again as the new one's first frame)
//! and, rarely, an event the old connection had not yet received is missed, when it was
//! published before the new connection's subscription started and the old path was slower. Prices
//! are state, so neither matters to a stop; user data is reconciled over REST. During an API
//! rotation, frames of both connections are delivered until the switch. A switch is
//! [`WsEvent::Rotated`]: no Disconnected, no Connected, no gap.
//!
//! A URL can hold a listen key: no URL or path ever appears in an error, an event or `Debug`.

mod client;
mod pacing;
mod reply;
mod resolver;
mod transport;
mod url;

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub use client::WsClient;
pub use pacing::backoff_cap;
pub use transport::ExtraCaProblem;

/// Per-connection settings. The constructors give Binance-sane defaults per kind of connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WsConfig {
    /// Largest message accepted, in bytes; larger ones are refused from their header.
    pub max_frame: usize,
    /// Ping when nothing has been received for this long.
    pub ping_every: Duration,
    /// Nothing received (no data, no ping, no pong) for this long: the peer is dead.
    pub dead_after: Duration,
    /// No data frame for this long: [`WsEvent::Stale`]. None for quiet streams (user data).
    pub stale_after: Option<Duration>,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// A connection up this long resets the backoff.
    pub stable_after: Duration,
    /// Rotate this long after a connection came up. None: never (tests).
    pub rotate_after: Option<Duration>,
    /// How long an open rotation candidate may wait for its first data frame (or for
    /// [`WsClient::finish_rotation`]) before the switch happens anyway.
    pub rotate_grace: Duration,
    /// Resolve + TCP + TLS + WebSocket upgrade must finish within this.
    pub connect_timeout: Duration,
    /// A SUBSCRIBE/UNSUBSCRIBE unanswered this long fails and the connection is replaced.
    pub reply_timeout: Duration,
    /// Messages we may send per connection in any window of 1.1 s (Binance: 5/s spot, 10/s
    /// futures, pings, pongs and JSON all counted). Leave one for the pong, which is never held.
    pub outbound_per_sec: u32,
    /// Longest request path (with its query) for a combined-stream URL.
    pub max_url_len: usize,
    /// Most streams on one connection (Binance: 1024).
    pub max_streams: usize,
    /// Most streams per SUBSCRIBE/UNSUBSCRIBE request.
    pub subscribe_batch: usize,
    /// Most messages waiting for the pacing budget on one connection.
    pub max_queued: usize,
}

impl WsConfig {
    /// Spot market streams (`wss://stream.binance.com:9443`): 5 messages/s allowed.
    pub fn spot_market() -> WsConfig {
        WsConfig {
            max_frame: 64 * 1024,
            ping_every: Duration::from_secs(10),
            dead_after: Duration::from_secs(30),
            stale_after: Some(Duration::from_secs(5)),
            backoff_min: Duration::from_millis(200),
            backoff_max: Duration::from_secs(10),
            stable_after: Duration::from_secs(30),
            rotate_after: Some(Duration::from_secs(23 * 3600)),
            rotate_grace: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
            reply_timeout: Duration::from_secs(10),
            outbound_per_sec: 4,
            max_url_len: 2048,
            max_streams: 1024,
            subscribe_batch: 100,
            max_queued: 256,
        }
    }

    /// USD-M futures market streams (`/public`, `/market`): 10 messages/s allowed.
    pub fn usdm_market() -> WsConfig {
        WsConfig { outbound_per_sec: 9, ..WsConfig::spot_market() }
    }

    /// The futures user-data stream (`/private/ws/<listenKey>`): quiet, so no staleness.
    pub fn usdm_user() -> WsConfig {
        WsConfig { stale_after: None, ..WsConfig::usdm_market() }
    }

    /// The spot WebSocket API (`wss://ws-api.binance.com/ws-api/v3`): requests and user data.
    pub fn spot_api() -> WsConfig {
        WsConfig { stale_after: None, ..WsConfig::spot_market() }
    }

    fn validate(&self) -> Result<(), WsError> {
        let bad = |what| Err(WsError::BadConfig(what));
        if self.max_frame < 1024 {
            return bad("max_frame below 1 KiB");
        }
        if self.ping_every.is_zero() || self.dead_after <= self.ping_every {
            return bad("dead_after must exceed a non-zero ping_every");
        }
        if self.backoff_min.is_zero() || self.backoff_max < self.backoff_min {
            return bad("backoff_min must be non-zero and at most backoff_max");
        }
        if self.connect_timeout.is_zero() || self.reply_timeout.is_zero() {
            return bad("timeouts must be non-zero");
        }
        if self.outbound_per_sec == 0 || self.outbound_per_sec as usize > pacing::MAX_BUDGET {
            return bad("outbound_per_sec must be within 1..=64");
        }
        if self.max_url_len < 64 || self.max_streams == 0 || self.subscribe_batch == 0 {
            return bad("max_url_len, max_streams and subscribe_batch too small");
        }
        if self.max_queued == 0 {
            return bad("max_queued must be non-zero");
        }
        Ok(())
    }
}

/// Client-wide settings.
#[derive(Clone, Debug, Default)]
pub struct ClientOptions {
    /// How many logical connections the client can hold at once (tokens are reserved for them).
    pub max_connections: usize,
    /// A PEM file of extra CA certificates to trust besides Mozilla's roots.
    pub extra_ca_pem: Option<PathBuf>,
}

/// A logical connection: stable across reconnects, rotations and retargets, dead after
/// [`WsClient::close`] (its slot is then reused under a new generation).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConnId {
    slot: u32,
    generation: u32,
}

impl ConnId {
    /// A small dense index (below `max_connections`) for the caller's per-connection arrays.
    pub fn index(self) -> usize {
        self.slot as usize
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnKind {
    /// A fixed URL (user-data stream, single raw stream).
    Raw,
    /// A combined-stream market connection whose stream set the client keeps.
    Streams,
    /// A WebSocket API connection (requests from the caller).
    Api,
}

/// Receives what the client reads. Called from inside [`WsClient::on_ready`] and
/// [`WsClient::on_timer`]; it must not block.
pub trait WsSink {
    /// One text (or binary) message, copied into the connection's buffer: parse it in place.
    fn frame(&mut self, conn: ConnId, frame: &mut [u8], received: Instant);
    fn event(&mut self, event: WsEvent);
}

/// Something about a connection's life. Copy and allocation-free, so the hot loop can forward
/// it to its event ring as it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WsEvent {
    /// Connected (WebSocket upgrade done). `gap` is None on the first connection and, on a
    /// reconnection, the time since the previous one was lost. An API caller sets up its
    /// session again now.
    Connected { conn: ConnId, gap: Option<Duration> },
    /// The connection was lost. `retry_in` is when the next attempt starts (None: an attempt
    /// was already under way, a rotation candidate, and carries on).
    Disconnected { conn: ConnId, reason: Reason, retry_in: Option<Duration> },
    /// An attempt to (re)connect failed; the next one starts in `retry_in`.
    ConnectFailed { conn: ConnId, reason: Reason, retry_in: Duration },
    /// No data frame for `silent_for` (at least `stale_after`).
    Stale { conn: ConnId, silent_for: Duration },
    /// Data again after being stale for `stale_for`.
    Fresh { conn: ConnId, stale_for: Duration },
    /// API connections: the rotation candidate is up; set the session up on it (sends now go to
    /// it) and call [`WsClient::finish_rotation`].
    RotationReady { conn: ConnId },
    /// Switched to a new connection without a gap.
    Rotated { conn: ConnId, cause: Rotation },
    /// A rotation candidate failed; the current connection carries on and the candidate is
    /// tried again in `retry_in`.
    RotationFailed { conn: ConnId, reason: Reason, retry_in: Duration },
    /// The server accepted the request `id`. Requests still outstanding when their connection
    /// is lost get no event: their streams, still wanted, are in the next connection's URL.
    RequestAcked { conn: ConnId, id: u64, method: Method },
    /// The server refused the request `id` with `code`, or did not answer in time (None). A
    /// refused SUBSCRIBE's streams are dropped from the connection's set.
    RequestFailed { conn: ConnId, id: u64, method: Method, code: Option<i64> },
    /// A message of `len` bytes (over `max`) was refused; the connection is replaced.
    FrameTooLarge { conn: ConnId, len: u64, max: usize },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Subscribe,
    Unsubscribe,
}

impl Method {
    fn as_str(self) -> &'static str {
        match self {
            Method::Subscribe => "SUBSCRIBE",
            Method::Unsubscribe => "UNSUBSCRIBE",
        }
    }
}

/// Why a connection was replaced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rotation {
    /// `rotate_after` elapsed (ahead of Binance's 24-hour cut).
    Scheduled,
    /// [`WsClient::rotate_now`].
    Requested,
    /// [`WsClient::retarget`].
    Retarget,
    /// The current connection failed while an open candidate was ready: it took over at once.
    PrimaryLost(Reason),
}

/// Why a connection or an attempt ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// The host name did not resolve.
    Resolve(io::ErrorKind),
    /// A `ws://localhost` name resolved to no loopback address.
    NoLoopbackAddress,
    /// A socket error (connect refused, reset…).
    Io(io::ErrorKind),
    Tls(TlsFailure),
    /// The server answered the upgrade with this HTTP status.
    Refused {
        status: u16,
    },
    /// The upgrade response was not a valid WebSocket handshake.
    Handshake,
    /// `connect_timeout` elapsed before the connection was up.
    Timeout,
    /// The server sent a close frame with this code (1005: none).
    PeerClosed {
        code: u16,
    },
    /// The TCP (or TLS) stream ended without a close frame.
    Eof,
    /// Nothing received for `dead_after`.
    DeadPeer,
    /// A message over `max_frame`.
    FrameTooLarge,
    /// A WebSocket protocol violation by the server.
    Protocol,
    /// A request went unanswered for `reply_timeout`.
    ReplyTimeout,
    /// Our outgoing buffer overflowed (the server does not read).
    WriteOverflow,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsFailure {
    /// The server's certificate was not trusted or not valid for the host.
    Certificate,
    /// The server sent a TLS alert.
    Alert,
    Other,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Resolve(kind) => write!(f, "name resolution failed: {kind}"),
            Reason::NoLoopbackAddress => write!(f, "ws:// host resolved to no loopback address"),
            Reason::Io(kind) => write!(f, "socket error: {kind}"),
            Reason::Tls(t) => write!(f, "TLS failure: {t:?}"),
            Reason::Refused { status } => write!(f, "upgrade refused with HTTP {status}"),
            Reason::Handshake => write!(f, "bad WebSocket handshake"),
            Reason::Timeout => write!(f, "connect timed out"),
            Reason::PeerClosed { code } => write!(f, "closed by the server ({code})"),
            Reason::Eof => write!(f, "connection ended without a close frame"),
            Reason::DeadPeer => write!(f, "no frame nor pong in time"),
            Reason::FrameTooLarge => write!(f, "frame over the size limit"),
            Reason::Protocol => write!(f, "WebSocket protocol violation"),
            Reason::ReplyTimeout => write!(f, "request unanswered"),
            Reason::WriteOverflow => write!(f, "outgoing buffer overflow"),
        }
    }
}

/// A connection's state, for /readyz and metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnStatus {
    pub kind: ConnKind,
    /// A connection is up and delivering.
    pub up: bool,
    pub stale: bool,
    /// When the last data frame arrived (or the connection was opened, before any).
    pub last_data: Instant,
    pub streams: usize,
    pub reconnects: u64,
    pub rotations: u64,
    pub frames_too_large: u64,
}

/// A refused call. None of these carries a URL: it may hold a listen key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WsError {
    BadUrl(&'static str),
    /// `ws://` to something other than 127.0.0.0/8, ::1 or localhost.
    PlainNotLoopback,
    /// The stream name at this position of the list is empty, too long, or has a character
    /// outside `[A-Za-z0-9@_!.:+-]`.
    BadStreamName {
        index: usize,
    },
    TooManyStreams {
        max: usize,
    },
    BadConfig(&'static str),
    /// Every connection slot is taken.
    NoFreeSlot,
    /// Closed, or never opened by this client.
    UnknownConnection,
    /// SUBSCRIBE/UNSUBSCRIBE on a connection that is not a combined-stream one.
    NotAStreamConnection,
    /// Nothing is connected to send on.
    NotConnected,
    /// `max_queued` messages are already waiting for the pacing budget.
    QueueFull,
    ExtraCa(ExtraCaProblem),
    TlsSetup,
    /// Registering with the caller's `Poll`, or starting the resolver thread.
    Io(io::ErrorKind),
}

impl fmt::Display for WsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WsError::BadUrl(what) => write!(f, "bad WebSocket URL: {what}"),
            WsError::PlainNotLoopback => write!(f, "ws:// is only allowed to a loopback address"),
            WsError::BadStreamName { index } => write!(f, "stream name #{index} is not valid"),
            WsError::TooManyStreams { max } => write!(f, "more than {max} streams"),
            WsError::BadConfig(what) => write!(f, "bad WebSocket config: {what}"),
            WsError::NoFreeSlot => write!(f, "no free connection slot"),
            WsError::UnknownConnection => write!(f, "unknown connection"),
            WsError::NotAStreamConnection => write!(f, "not a combined-stream connection"),
            WsError::NotConnected => write!(f, "not connected"),
            WsError::QueueFull => write!(f, "outgoing queue full"),
            WsError::ExtraCa(problem) => write!(f, "extra CA file unusable: {problem:?}"),
            WsError::TlsSetup => write!(f, "TLS configuration failed"),
            WsError::Io(kind) => write!(f, "I/O setup failed: {kind}"),
        }
    }
}

impl std::error::Error for WsError {}
