//! Shared by the `ws_*` test binaries: a loopback WebSocket server (tungstenite's server side on
//! std threads, plain or over a rustls server with an rcgen certificate the client trusts
//! through its extra-CA file) that the tests steer and watch, and a harness that runs the client
//! on a real `mio::Poll` as the hot loop would.
//!
//! The server logs everything it sees, in order, with the time it saw it: connections opened
//! (with their request path) and closed, every message received (text, ping, pong). Data frames
//! it sends are the documented `markPriceUpdate` in the combined envelope, with `E` set to
//! `connection number * 1_000_000 + sequence`, so a test can tell which server connection a
//! parsed frame came from.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use engine::Event;
use feed::wire::{FrameError, FrameParser, Parsed};
use feed::ws::{ClientOptions, ConnId, WsClient, WsConfig, WsEvent, WsSink};
use mio::{Events, Poll, Token};
use simd_json::prelude::*;
use tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tungstenite::protocol::CloseFrame;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::{Bytes, Message};

/// The fixture directory: `shared/` sits beside the repository, here and in CI.
pub const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/fixtures/binance/");

pub fn fixture_str(name: &str) -> String {
    let path = format!("{FIXTURES}{name}");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading fixture {path}: {e}"))
}

/// The documented markPrice payload for the stream's symbol, in the combined envelope, with
/// `E` = `e`.
pub fn mark_frame(stream: &str, e: u64) -> String {
    let symbol = stream.split('@').next().unwrap_or("btcusdt").to_ascii_uppercase();
    let payload = fixture_str("futures_markPrice.json")
        .replace("BTCUSDT", &symbol)
        .replace("1562305380000", &e.to_string());
    format!(r#"{{"stream":"{stream}","data":{payload}}}"#)
}

/// A config with intervals in tens of milliseconds; tests adjust the rest.
pub fn fast_config() -> WsConfig {
    WsConfig {
        ping_every: Duration::from_millis(100),
        dead_after: Duration::from_millis(400),
        stale_after: None,
        backoff_min: Duration::from_millis(20),
        backoff_max: Duration::from_millis(200),
        stable_after: Duration::from_secs(30),
        rotate_after: None,
        rotate_grace: Duration::from_secs(2),
        connect_timeout: Duration::from_secs(3),
        reply_timeout: Duration::from_secs(3),
        outbound_per_sec: 20,
        ..WsConfig::usdm_market()
    }
}

// ---- TLS material ----

pub struct TestTls {
    /// The self-signed certificate as PEM, in a temporary file: the client's extra CA.
    pub ca_path: PathBuf,
    pub server: Arc<rustls::ServerConfig>,
}

impl Drop for TestTls {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.ca_path);
    }
}

static TEMP_FILES: AtomicUsize = AtomicUsize::new(0);

pub fn temp_path(what: &str) -> PathBuf {
    let n = TEMP_FILES.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!("robsond-ws-{}-{n}-{what}", std::process::id()))
}

/// A self-signed certificate for `names` (host names or IP literals).
pub fn test_tls(names: &[&str]) -> TestTls {
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let certified = rcgen::generate_simple_self_signed(names).expect("rcgen");
    let ca_path = temp_path("ca.pem");
    std::fs::write(&ca_path, certified.cert.pem()).expect("writing the CA file");
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(vec![certified.cert.der().clone()], key)
        .expect("server certificate");
    TestTls { ca_path, server: Arc::new(server) }
}

// ---- the server ----

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Seen {
    /// TCP accepted (before the upgrade): the connection exists for the server.
    Opened {
        conn: usize,
    },
    /// Upgrade done.
    Accepted {
        conn: usize,
        path: String,
    },
    Closed {
        conn: usize,
    },
    Text {
        conn: usize,
        text: String,
    },
    Ping {
        conn: usize,
        payload: Vec<u8>,
    },
    Pong {
        conn: usize,
        payload: Vec<u8>,
    },
}

impl Seen {
    pub fn conn(&self) -> usize {
        match self {
            Seen::Opened { conn }
            | Seen::Accepted { conn, .. }
            | Seen::Closed { conn }
            | Seen::Text { conn, .. }
            | Seen::Ping { conn, .. }
            | Seen::Pong { conn, .. } => *conn,
        }
    }

    /// A message the client sent (Binance counts all three against its limit).
    pub fn is_incoming_message(&self) -> bool {
        matches!(self, Seen::Text { .. } | Seen::Ping { .. } | Seen::Pong { .. })
    }
}

/// How the server behaves towards new connections; change it at any time.
#[derive(Clone, Debug, Default)]
pub struct Behaviour {
    /// Send one data frame per stream of each connection this often.
    pub tick: Option<Duration>,
    /// A SUBSCRIBE naming one of these is refused with code 2.
    pub refuse_streams: Vec<String>,
    /// Drop this many next connections right after accepting them.
    pub drop_next: usize,
    /// Answer this many next upgrades with HTTP 400.
    pub reject_next: usize,
    /// Never answer requests (they are still logged).
    pub mute: bool,
}

pub enum Command {
    Send(String),
    /// Bytes written to the stream as they are, outside WebSocket framing.
    Raw(Vec<u8>),
    Ping(Vec<u8>),
    /// Close frame, then drop.
    Close,
    /// Drop the TCP connection without a close frame.
    Drop,
    /// Stop reading and writing, keep the TCP connection (a dead peer).
    Silence,
    /// Stop (true) or resume (false) the data ticks; pings are still answered.
    Pause(bool),
    /// `frames` data frames on `stream` back to back (blocking on the client's pace), with a
    /// ping every `ping_every` frames.
    Flood {
        stream: String,
        frames: u64,
        ping_every: u64,
    },
}

#[derive(Default)]
struct State {
    log: Vec<(Instant, Seen)>,
    /// Connection numbers, 1-based in TCP accept order (dropped ones get none).
    opened: usize,
    conns: std::collections::BTreeMap<usize, mpsc::Sender<Command>>,
    behaviour: Behaviour,
}

#[derive(Clone)]
pub struct Server {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
}

impl Server {
    pub fn plain(behaviour: Behaviour) -> Server {
        Server::start(None, behaviour)
    }

    pub fn tls(tls: &TestTls, behaviour: Behaviour) -> Server {
        Server::start(Some(Arc::clone(&tls.server)), behaviour)
    }

    fn start(tls: Option<Arc<rustls::ServerConfig>>, behaviour: Behaviour) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let state = Arc::new(Mutex::new(State { behaviour, ..State::default() }));
        let server = Server { addr, state };
        let accepting = server.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let handler = accepting.clone();
                let tls = tls.clone();
                std::thread::spawn(move || handler.serve(stream, tls));
            }
        });
        server
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn set_behaviour(&self, f: impl FnOnce(&mut Behaviour)) {
        f(&mut self.state.lock().unwrap().behaviour);
    }

    /// Everything seen so far, in order.
    pub fn log(&self) -> Vec<Seen> {
        self.state.lock().unwrap().log.iter().map(|(_, s)| s.clone()).collect()
    }

    pub fn timed_log(&self) -> Vec<(Instant, Seen)> {
        self.state.lock().unwrap().log.clone()
    }

    /// Sends a command to server connection `conn`, waiting for the server to finish accepting
    /// it (the client may see the upgrade done a moment before).
    pub fn command(&self, conn: usize, command: Command) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            {
                let state = self.state.lock().unwrap();
                if let Some(tx) = state.conns.get(&conn) {
                    let _ = tx.send(command);
                    return;
                }
            }
            assert!(Instant::now() < deadline, "server connection {conn} never accepted");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    pub fn accepted(&self) -> Vec<(usize, String)> {
        self.log()
            .into_iter()
            .filter_map(|s| match s {
                Seen::Accepted { conn, path } => Some((conn, path)),
                _ => None,
            })
            .collect()
    }

    /// Waits until `n` connections were upgraded (the client can see its upgrade done a moment
    /// before the server thread logs it).
    pub fn wait_accepted(&self, n: usize) {
        let done = self.wait_for(Duration::from_secs(10), |log| {
            log.iter().filter(|s| matches!(s, Seen::Accepted { .. })).count() >= n
        });
        assert!(done, "{n} upgrades expected: {:?}", self.log());
    }

    /// Waits (up to `timeout`) for `cond` on the log; false on timeout.
    pub fn wait_for(&self, timeout: Duration, cond: impl Fn(&[Seen]) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if cond(&self.log()) {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn record(&self, seen: Seen) {
        self.state.lock().unwrap().log.push((Instant::now(), seen));
    }

    fn serve(&self, stream: TcpStream, tls: Option<Arc<rustls::ServerConfig>>) {
        let conn = {
            let mut state = self.state.lock().unwrap();
            if state.behaviour.drop_next > 0 {
                state.behaviour.drop_next -= 1;
                return;
            }
            state.opened += 1;
            let conn = state.opened;
            state.log.push((Instant::now(), Seen::Opened { conn }));
            conn
        };
        let _ = stream.set_nodelay(true);
        stream.set_read_timeout(Some(Duration::from_millis(2))).expect("read timeout");
        match tls {
            None => self.serve_ws(conn, stream),
            Some(config) => {
                let tls = rustls::ServerConnection::new(config).expect("server connection");
                self.serve_ws(conn, rustls::StreamOwned::new(tls, stream));
            }
        }
        self.record(Seen::Closed { conn });
    }

    fn serve_ws<S: Read + Write>(&self, conn: usize, stream: S) {
        let reject = {
            let mut state = self.state.lock().unwrap();
            let reject = state.behaviour.reject_next > 0;
            state.behaviour.reject_next = state.behaviour.reject_next.saturating_sub(1);
            reject
        };
        let path = Arc::new(Mutex::new(String::new()));
        let seen_path = Arc::clone(&path);
        // tungstenite's callback signature, not ours to shrink.
        #[allow(clippy::result_large_err)]
        let callback = move |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
            *seen_path.lock().unwrap() = req.uri().to_string();
            if reject {
                let mut refusal = ErrorResponse::new(Some("no".to_string()));
                *refusal.status_mut() = tungstenite::http::StatusCode::BAD_REQUEST;
                return Err(refusal);
            }
            Ok(resp)
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        // Every message its own write (and TLS record), as a server pushing events as they
        // happen does.
        let config = tungstenite::protocol::WebSocketConfig::default().write_buffer_size(0);
        let mut attempt = tungstenite::accept_hdr_with_config(stream, callback, Some(config));
        let mut ws = loop {
            match attempt {
                Ok(ws) => break ws,
                Err(tungstenite::HandshakeError::Interrupted(mid)) if Instant::now() < deadline => {
                    attempt = mid.handshake();
                }
                Err(_) => return,
            }
        };
        let path = path.lock().unwrap().clone();
        let (tx, rx) = mpsc::channel();
        {
            let mut state = self.state.lock().unwrap();
            state.conns.insert(conn, tx);
            state.log.push((Instant::now(), Seen::Accepted { conn, path: path.clone() }));
        }
        let mut streams: Vec<String> = streams_in_path(&path);
        let mut seq = 0u64;
        let mut paused = false;
        let mut next_tick = Instant::now();
        'serve: loop {
            while let Ok(command) = rx.try_recv() {
                let sent = match command {
                    Command::Send(text) => ws.send(Message::text(text)),
                    Command::Raw(bytes) => {
                        let stream = ws.get_mut();
                        let _ = stream.write_all(&bytes).and_then(|()| stream.flush());
                        Ok(())
                    }
                    Command::Ping(payload) => ws.send(Message::Ping(Bytes::from(payload))),
                    Command::Close => {
                        let _ = ws.close(Some(CloseFrame {
                            code: CloseCode::Away,
                            reason: "bye".into(),
                        }));
                        let _ = ws.flush();
                        break 'serve;
                    }
                    Command::Drop => break 'serve,
                    Command::Silence => {
                        // Hold the socket open, never read nor write again.
                        std::thread::sleep(Duration::from_secs(30));
                        break 'serve;
                    }
                    Command::Pause(on) => {
                        paused = on;
                        Ok(())
                    }
                    Command::Flood { stream, frames, ping_every } => {
                        let mut sent = Ok(());
                        for i in 1..=frames {
                            seq += 1;
                            let frame = mark_frame(&stream, conn as u64 * 1_000_000 + seq);
                            sent = ws.write(Message::text(frame));
                            if sent.is_ok() && i % ping_every == 0 {
                                sent = ws.write(Message::Ping(Bytes::from_static(b"flood")));
                            }
                            if sent.is_err() {
                                break;
                            }
                        }
                        sent.and_then(|()| ws.flush())
                    }
                };
                if sent.is_err() {
                    break 'serve;
                }
            }
            let tick = self.state.lock().unwrap().behaviour.tick;
            if let (Some(every), false) = (tick, paused)
                && Instant::now() >= next_tick
            {
                next_tick = Instant::now() + every;
                seq += 1;
                for stream in &streams {
                    let frame = mark_frame(stream, conn as u64 * 1_000_000 + seq);
                    if ws.send(Message::text(frame)).is_err() {
                        break 'serve;
                    }
                }
            }
            match ws.read() {
                Ok(Message::Text(text)) => {
                    let text = text.to_string();
                    self.record(Seen::Text { conn, text: text.clone() });
                    if let Some(reply) = self.answer(&text, &mut streams)
                        && ws.send(Message::text(reply)).is_err()
                    {
                        break;
                    }
                }
                Ok(Message::Ping(payload)) => {
                    self.record(Seen::Ping { conn, payload: payload.to_vec() })
                }
                Ok(Message::Pong(payload)) => {
                    self.record(Seen::Pong { conn, payload: payload.to_vec() })
                }
                Ok(Message::Close(_)) => {
                    let _ = ws.flush();
                    break;
                }
                Ok(_) => {}
                Err(tungstenite::Error::Io(e))
                    if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {}
                Err(_) => break,
            }
        }
    }

    /// Answers SUBSCRIBE/UNSUBSCRIBE as Binance does (and any other request with a 200), after
    /// checking that what the client sent is valid JSON.
    fn answer(&self, text: &str, streams: &mut Vec<String>) -> Option<String> {
        if self.state.lock().unwrap().behaviour.mute {
            return None;
        }
        let mut bytes = text.as_bytes().to_vec();
        let value = simd_json::to_owned_value(&mut bytes).expect("the client sent invalid JSON");
        let method = value.get("method").and_then(|m| m.as_str()).expect("no method").to_string();
        let id = match value.get("id") {
            Some(id) => match id.as_str() {
                Some(text) => format!("\"{text}\""),
                None => id.to_string(),
            },
            None => "null".into(),
        };
        let params: Vec<String> = value
            .get("params")
            .and_then(|p| p.as_array())
            .map(|a| a.iter().filter_map(|p| p.as_str().map(str::to_string)).collect())
            .unwrap_or_default();
        match method.as_str() {
            "SUBSCRIBE" => {
                let refused = self.state.lock().unwrap().behaviour.refuse_streams.clone();
                if params.iter().any(|p| refused.contains(p)) {
                    return Some(format!(
                        r#"{{"code":2,"msg":"Invalid request: unknown stream","id":{id}}}"#
                    ));
                }
                for p in params {
                    if !streams.contains(&p) {
                        streams.push(p);
                    }
                }
                Some(format!(r#"{{"result":null,"id":{id}}}"#))
            }
            "UNSUBSCRIBE" => {
                streams.retain(|s| !params.contains(s));
                Some(format!(r#"{{"result":null,"id":{id}}}"#))
            }
            other => Some(format!(r#"{{"id":{id},"status":200,"result":{{"echo":"{other}"}}}}"#)),
        }
    }
}

/// The streams in `/…/stream?streams=a/b/c` (with `%2B` decoded).
pub fn streams_in_path(path: &str) -> Vec<String> {
    match path.split_once("streams=") {
        Some((_, list)) => {
            list.split('/').filter(|s| !s.is_empty()).map(|s| s.replace("%2B", "+")).collect()
        }
        None => Vec::new(),
    }
}

// ---- the client harness ----

/// What the sink received, in order.
#[derive(Clone, Debug)]
pub enum Got {
    Frame { conn: ConnId, text: String, at: Instant },
    Event { event: WsEvent, at: Instant },
}

#[derive(Default)]
pub struct Recorder {
    pub got: Vec<Got>,
    /// When set, every frame is also parsed in place, on the buffer the client handed over.
    pub parser: Option<FrameParser>,
    pub parsed: Vec<(ConnId, Result<Parsed, FrameError>, Vec<Event>)>,
}

impl WsSink for Recorder {
    fn frame(&mut self, conn: ConnId, frame: &mut [u8], received: Instant) {
        let text = String::from_utf8(frame.to_vec()).expect("frames are UTF-8");
        self.got.push(Got::Frame { conn, text, at: received });
        if let Some(parser) = self.parser.as_mut() {
            let mut events = Vec::new();
            let result = parser.parse(frame, |e| events.push(e));
            self.parsed.push((conn, result, events));
        }
    }

    fn event(&mut self, event: WsEvent) {
        self.got.push(Got::Event { event, at: Instant::now() });
    }
}

impl Recorder {
    pub fn events(&self) -> Vec<WsEvent> {
        self.got
            .iter()
            .filter_map(|g| match g {
                Got::Event { event, .. } => Some(*event),
                _ => None,
            })
            .collect()
    }

    pub fn frames(&self) -> Vec<String> {
        self.got
            .iter()
            .filter_map(|g| match g {
                Got::Frame { text, .. } => Some(text.clone()),
                _ => None,
            })
            .collect()
    }

    pub fn count(&self, pred: impl Fn(&WsEvent) -> bool) -> usize {
        self.events().iter().filter(|e| pred(e)).count()
    }
}

pub const FIRST_TOKEN: usize = 100;

/// The client on a real `mio::Poll`, driven the way the hot loop drives it.
pub struct Harness {
    pub poll: Poll,
    events: Events,
    pub client: WsClient,
    pub sink: Recorder,
    /// Tokens the harness saw that were not the client's (must stay empty).
    pub foreign: VecDeque<Token>,
}

impl Harness {
    pub fn new(extra_ca: Option<PathBuf>) -> Harness {
        let poll = Poll::new().expect("poll");
        let options = ClientOptions { max_connections: 4, extra_ca_pem: extra_ca };
        let client = WsClient::new(poll.registry(), FIRST_TOKEN, options).expect("client");
        Harness {
            poll,
            events: Events::with_capacity(64),
            client,
            sink: Recorder::default(),
            foreign: VecDeque::new(),
        }
    }

    /// One turn of the loop: poll until the client's next deadline (at most `max_wait`), hand
    /// it the events, run its timers.
    pub fn step(&mut self, max_wait: Duration) {
        let now = Instant::now();
        let wait = match self.client.next_deadline() {
            Some(t) => t.saturating_duration_since(now).min(max_wait),
            None => max_wait,
        };
        self.poll.poll(&mut self.events, Some(wait)).expect("poll");
        for event in self.events.iter() {
            if self.client.owns(event.token()) {
                self.client.on_ready(event, Instant::now(), &mut self.sink);
            } else {
                self.foreign.push_back(event.token());
            }
        }
        self.client.on_timer(Instant::now(), &mut self.sink);
    }

    /// Steps until `cond` holds; panics with `what` after `timeout` (a failure guard only).
    pub fn run_until(&mut self, what: &str, timeout: Duration, cond: impl Fn(&Recorder) -> bool) {
        let deadline = Instant::now() + timeout;
        while !cond(&self.sink) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; the sink got: {:#?}",
                self.sink.events()
            );
            self.step(Duration::from_millis(10));
        }
    }

    /// Steps until the server's log satisfies `cond`; panics with `what` after `timeout`.
    pub fn run_until_server(
        &mut self,
        server: &Server,
        what: &str,
        timeout: Duration,
        cond: impl Fn(&[Seen]) -> bool,
    ) {
        let deadline = Instant::now() + timeout;
        while !cond(&server.log()) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; the server saw: {:#?}",
                server.log()
            );
            self.step(Duration::from_millis(5));
        }
    }

    /// Steps for `d` regardless.
    pub fn run_for(&mut self, d: Duration) {
        let end = Instant::now() + d;
        while Instant::now() < end {
            self.step(Duration::from_millis(10));
        }
    }
}

pub fn connected(conn: ConnId) -> impl Fn(&Recorder) -> bool {
    move |r: &Recorder| {
        r.events().iter().any(|e| matches!(e, WsEvent::Connected { conn: c, .. } if *c == conn))
    }
}

pub fn connected_times(conn: ConnId, n: usize) -> impl Fn(&Recorder) -> bool {
    move |r: &Recorder| {
        r.count(|e| matches!(e, WsEvent::Connected { conn: c, .. } if *c == conn)) >= n
    }
}
