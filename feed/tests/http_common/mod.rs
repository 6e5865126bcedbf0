//! Shared by the `client_*` and `executor_*` test binaries: a loopback Binance REST mock on
//! tiny_http that checks every signed request itself (its own HMAC-SHA256 / Ed25519
//! verification of the received query, and Binance's timestamp rule), answers from the
//! documented fixtures, and records every request with the TCP connection it came on; a TLS
//! front (rustls server, rcgen CA) for the same mock; and client constructors.

#![allow(dead_code)]

use std::collections::{BTreeSet, VecDeque};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use base64::Engine as _;
use feed::rest::{
    Api, ApiKey, Clock, Credentials, HttpConfig, ManualClock, RestClient, RestConfig, Secret,
};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use simd_json::OwnedValue;
use simd_json::prelude::ValueAsMutObject;

pub const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/fixtures/binance/");

pub fn fixture(name: &str) -> String {
    let path = format!("{FIXTURES}{name}");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading fixture {path}: {e}"))
}

/// Binance's own documented HMAC test key (signing_vectors.json).
pub const API_KEY: &str = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A";
pub const SECRET: &str = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j";

/// A minute boundary plus one second: rate-limit windows start predictably.
pub const T0: u64 = 1_700_000_040_000 + 1_000;

pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 3 <= bytes.len() {
            out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).expect("hex escape"));
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).expect("utf-8 parameter")
}

/// How the mock checks signatures.
#[derive(Clone)]
pub enum KeyCheck {
    Hmac(Vec<u8>),
    Ed25519([u8; 32]),
}

/// One request as the mock received it.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    /// The raw query string.
    pub query: String,
    pub params: Vec<(String, String)>,
    pub api_key: Option<String>,
    pub remote: SocketAddr,
    /// `Some(true)` when a `signature` was present and verified.
    pub signature_ok: Option<bool>,
}

impl Recorded {
    pub fn param(&self, key: &str) -> Option<&str> {
        self.params.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// `METHOD /path` — the form sequences are asserted in.
    pub fn line(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// Held this long before answering (a slow server, for time-outs).
    pub delay: Duration,
}

impl Reply {
    pub fn json(status: u16, body: impl Into<String>) -> Reply {
        Reply { status, headers: Vec::new(), body: body.into(), delay: Duration::ZERO }
    }

    pub fn ok(body: impl Into<String>) -> Reply {
        Reply::json(200, body)
    }

    pub fn fixture(status: u16, name: &str) -> Reply {
        Reply::json(status, fixture(name))
    }

    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn delayed(mut self, delay: Duration) -> Reply {
        self.delay = delay;
        self
    }
}

struct Scripted {
    method: String,
    path: String,
    reply: Reply,
}

struct State {
    clock: ManualClock,
    skew_ms: i64,
    key: Option<KeyCheck>,
    requests: Vec<Recorded>,
    script: VecDeque<Scripted>,
}

/// The mock. Dropping it stops its server.
pub struct Mock {
    state: Arc<Mutex<State>>,
    server: Arc<tiny_http::Server>,
    handle: Option<JoinHandle<()>>,
    pub addr: SocketAddr,
}

fn server_now(state: &State) -> u64 {
    let now = i128::from(state.clock.now_ms()) + i128::from(state.skew_ms);
    u64::try_from(now.max(0)).expect("positive time")
}

/// The mock's own signature check: the payload is the query up to `&signature=`, and the
/// signature is compared the way Binance does (hex for HMAC, base64 for Ed25519).
fn verify(key: &KeyCheck, query: &str) -> bool {
    let Some(at) = query.rfind("&signature=") else { return false };
    let (payload, signature) = (&query[..at], &query[at + "&signature=".len()..]);
    match key {
        KeyCheck::Hmac(secret) => {
            let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret).expect("any length");
            mac.update(payload.as_bytes());
            hex::encode(mac.finalize().into_bytes()) == signature.to_ascii_lowercase()
        }
        KeyCheck::Ed25519(public) => {
            let Ok(bytes) =
                base64::engine::general_purpose::STANDARD.decode(percent_decode(signature))
            else {
                return false;
            };
            let Ok(sig) = ed25519_dalek::Signature::from_slice(&bytes) else { return false };
            let Ok(key) = ed25519_dalek::VerifyingKey::from_bytes(public) else { return false };
            ed25519_dalek::Verifier::verify(&key, payload.as_bytes(), &sig).is_ok()
        }
    }
}

fn default_reply(state: &State, method: &str, path: &str) -> Reply {
    match (method, path) {
        ("GET", "/fapi/v1/time" | "/api/v3/time") => {
            Reply::ok(format!("{{\"serverTime\":{}}}", server_now(state)))
        }
        ("GET", "/fapi/v1/ping" | "/api/v3/ping") => Reply::ok("{}"),
        ("GET", "/fapi/v1/exchangeInfo") => {
            Reply::fixture(200, "exchangeInfo_futures_BTCUSDT_excerpt.json")
        }
        ("GET", "/api/v3/exchangeInfo") => {
            Reply::fixture(200, "exchangeInfo_spot_BTCUSDT_excerpt.json")
        }
        // Nothing a test did not script: a status no client treats as success.
        _ => Reply::json(599, "{\"code\":-9999,\"msg\":\"unscripted request\"}"),
    }
}

fn answer(state: &Arc<Mutex<State>>, request: &tiny_http::Request) -> Reply {
    let mut st = state.lock().unwrap();
    let url = request.url().to_owned();
    let (path, query) = url.split_once('?').unwrap_or((&url, ""));
    let params = if query.is_empty() {
        Vec::new()
    } else {
        query
            .split('&')
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                (percent_decode(k), percent_decode(v))
            })
            .collect()
    };
    let api_key = request
        .headers()
        .iter()
        .find(|h| h.field.equiv("X-MBX-APIKEY"))
        .map(|h| h.value.as_str().to_owned());
    let method = request.method().as_str().to_owned();
    let mut recorded = Recorded {
        method: method.clone(),
        path: path.to_owned(),
        query: query.to_owned(),
        params,
        api_key,
        remote: *request.remote_addr().expect("tcp peer"),
        signature_ok: None,
    };
    if recorded.param("signature").is_some() {
        let ok = st.key.as_ref().is_some_and(|key| verify(key, query));
        recorded.signature_ok = Some(ok);
        if !ok {
            st.requests.push(recorded);
            return Reply::fixture(400, "error_-1022.json");
        }
        // Binance's rule: timestamp < serverTime + 1000 and serverTime - timestamp <= recvWindow.
        let now = server_now(&st);
        let timestamp: u64 = recorded.param("timestamp").unwrap().parse().unwrap();
        let window: u64 = recorded.param("recvWindow").map_or(5000, |w| w.parse().unwrap());
        if timestamp >= now + 1000 {
            st.requests.push(recorded);
            return Reply::fixture(400, "error_-1021_ahead.json");
        }
        if now.saturating_sub(timestamp) > window {
            st.requests.push(recorded);
            return Reply::fixture(400, "error_-1021.json");
        }
    }
    let scripted = st.script.iter().position(|s| s.method == method && s.path == path);
    let reply = match scripted {
        Some(i) => st.script.remove(i).expect("index found").reply,
        None => default_reply(&st, &method, path),
    };
    st.requests.push(recorded);
    reply
}

fn respond(request: tiny_http::Request, reply: Reply) {
    let mut response = tiny_http::Response::from_string(reply.body).with_status_code(reply.status);
    response.add_header(
        tiny_http::Header::from_bytes(&b"Content-Type"[..], &b"application/json"[..]).unwrap(),
    );
    for (name, value) in &reply.headers {
        response
            .add_header(tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes()).unwrap());
    }
    // The client may have given up (a time-out test): its connection is gone, which is fine.
    let _ = request.respond(response);
}

impl Mock {
    pub fn start(clock: ManualClock) -> Mock {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").expect("bind mock"));
        let addr = server.server_addr().to_ip().expect("ip listener");
        let state = Arc::new(Mutex::new(State {
            clock,
            skew_ms: 0,
            key: Some(KeyCheck::Hmac(SECRET.as_bytes().to_vec())),
            requests: Vec::new(),
            script: VecDeque::new(),
        }));
        let (srv, st) = (server.clone(), state.clone());
        let handle = std::thread::spawn(move || {
            for request in srv.incoming_requests() {
                let reply = answer(&st, &request);
                if reply.delay.is_zero() {
                    respond(request, reply);
                } else {
                    std::thread::spawn(move || {
                        std::thread::sleep(reply.delay);
                        respond(request, reply);
                    });
                }
            }
        });
        Mock { state, server, handle: Some(handle), addr }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The server clock runs `skew_ms` ahead of the shared clock (behind if negative).
    pub fn set_skew(&self, skew_ms: i64) {
        self.state.lock().unwrap().skew_ms = skew_ms;
    }

    pub fn set_key(&self, key: KeyCheck) {
        self.state.lock().unwrap().key = Some(key);
    }

    /// Queues a reply for the next `method path` request (in script order per route).
    pub fn script(&self, method: &str, path: &str, reply: Reply) {
        self.state.lock().unwrap().script.push_back(Scripted {
            method: method.to_owned(),
            path: path.to_owned(),
            reply,
        });
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.state.lock().unwrap().requests.clone()
    }

    /// `METHOD /path` of every request so far, in arrival order.
    pub fn lines(&self) -> Vec<String> {
        self.requests().iter().map(Recorded::line).collect()
    }

    pub fn count(&self) -> usize {
        self.state.lock().unwrap().requests.len()
    }

    /// Distinct client TCP connections that carried requests.
    pub fn connections(&self) -> usize {
        self.requests().iter().map(|r| r.remote).collect::<BTreeSet<_>>().len()
    }

    /// Every signed request passed the mock's own signature check.
    pub fn assert_signatures_verified(&self) {
        for r in self.requests() {
            if let Some(ok) = r.signature_ok {
                assert!(ok, "{} carried a signature the mock could not verify", r.line());
            }
        }
    }

    pub fn unused_script(&self) -> usize {
        self.state.lock().unwrap().script.len()
    }
}

impl Drop for Mock {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

pub fn hmac_credentials() -> Credentials {
    Credentials::hmac(ApiKey::new(API_KEY.to_owned()), &Secret::from_string(SECRET.to_owned()))
}

pub fn fast_http() -> HttpConfig {
    HttpConfig {
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(5),
        ..HttpConfig::default()
    }
}

pub fn client_with(
    api: Api,
    url: &str,
    http: &HttpConfig,
    config: &RestConfig,
    clock: &ManualClock,
) -> RestClient {
    RestClient::new(api, url, http, config, Some(hmac_credentials()), Arc::new(clock.clone()))
        .expect("client")
}

pub fn client(api: Api, mock: &Mock, clock: &ManualClock) -> RestClient {
    client_with(api, &mock.url(), &fast_http(), &RestConfig::default(), clock)
}

/// A documented order body with the fields a test cares about replaced.
pub fn order_body(name: &str, fields: &[(&str, &str)]) -> String {
    let mut bytes = fixture(name).into_bytes();
    let mut value: OwnedValue = simd_json::to_owned_value(&mut bytes).expect("fixture JSON");
    let object = value.as_object_mut().expect("order object");
    for (key, text) in fields {
        object.insert((*key).to_owned(), OwnedValue::from(*text));
    }
    simd_json::to_string(&value).expect("serialise")
}

/// `futures_order_response.json` as a filled MARKET order with client id `cid`.
pub fn futures_filled(cid: &str, qty: &str, avg: &str) -> String {
    order_body(
        "futures_order_response.json",
        &[
            ("clientOrderId", cid),
            ("status", "FILLED"),
            ("type", "MARKET"),
            ("origType", "MARKET"),
            ("origQty", qty),
            ("executedQty", qty),
            ("cumQty", qty),
            ("avgPrice", avg),
            ("positionSide", "BOTH"),
        ],
    )
}

// ---- TLS ------------------------------------------------------------------------------------

/// A CA and a `localhost`/127.0.0.1 server certificate it signed, and the CA's PEM on disk.
pub struct TestPki {
    pub ca_pem_path: std::path::PathBuf,
    pub server_config: Arc<rustls::ServerConfig>,
}

pub fn test_pki(tag: &str) -> TestPki {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "robsond test CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf_params =
        CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
    let leaf = leaf_params.signed_by(&leaf_key, &ca).unwrap();
    let path = std::env::temp_dir().join(format!(
        "robsond-rest-{tag}-{}-{}.pem",
        std::process::id(),
        fastrand::u64(..)
    ));
    std::fs::write(&path, ca.pem()).unwrap();
    let key_der = rustls_pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server_config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![leaf.der().clone(), ca.der().clone()], key_der)
        .unwrap();
    TestPki { ca_pem_path: path, server_config: Arc::new(server_config) }
}

/// A TLS terminator in front of the mock: each accepted TLS connection is relayed, decrypted,
/// to the mock over its own TCP connection.
pub struct TlsFront {
    pub addr: SocketAddr,
    /// TLS handshakes completed.
    pub handshakes: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

fn relay(
    mut tls: rustls::StreamOwned<rustls::ServerConnection, TcpStream>,
    backend: SocketAddr,
    stop: &AtomicBool,
) {
    let Ok(mut plain) = TcpStream::connect(backend) else { return };
    let _ = plain.set_nodelay(true);
    let tick = Some(Duration::from_millis(5));
    let _ = tls.sock.set_read_timeout(tick);
    let _ = plain.set_read_timeout(tick);
    let mut buf = [0u8; 16 * 1024];
    while !stop.load(Ordering::Relaxed) {
        match tls.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                if plain.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return,
        }
        match plain.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                if tls.write_all(&buf[..n]).and_then(|()| tls.flush()).is_err() {
                    return;
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return,
        }
    }
}

impl TlsFront {
    pub fn start(backend: SocketAddr, config: Arc<rustls::ServerConfig>) -> TlsFront {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let handshakes = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (count, stopping) = (handshakes.clone(), stop.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopping.load(Ordering::Relaxed) {
                    return;
                }
                let Ok(mut stream) = stream else { continue };
                let _ = stream.set_nodelay(true);
                let (config, count, stopping) = (config.clone(), count.clone(), stopping.clone());
                std::thread::spawn(move || {
                    let mut conn = rustls::ServerConnection::new(config).unwrap();
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                    while conn.is_handshaking() {
                        if conn.complete_io(&mut stream).is_err() {
                            return;
                        }
                    }
                    count.fetch_add(1, Ordering::SeqCst);
                    relay(rustls::StreamOwned::new(conn, stream), backend, &stopping);
                });
            }
        });
        TlsFront { addr, handshakes, stop }
    }

    pub fn url(&self) -> String {
        format!("https://localhost:{}", self.addr.port())
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wakes the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
    }
}

// ---- executor ---------------------------------------------------------------------------------

/// Collects what an executor reports.
#[derive(Debug, Default)]
pub struct Collect {
    pub events: Vec<engine::Event>,
    pub notes: Vec<feed::rest::Note>,
}

impl feed::rest::EventSink for Collect {
    fn event(&mut self, event: engine::Event) {
        self.events.push(event);
    }

    fn note(&mut self, note: feed::rest::Note) {
        self.notes.push(note);
    }
}

impl Collect {
    /// `(client id, status)` of every order update, in order; drains them.
    pub fn take(&mut self) -> Vec<(String, engine::events::OrderStatus)> {
        self.events
            .drain(..)
            .map(|event| match event {
                engine::Event::Order(update) => (update.cid.as_str().to_owned(), update.status),
                other => panic!("unexpected event {other:?}"),
            })
            .collect()
    }
}

/// A robsond intent on `symbol`'s long side (account 0): client id `rbd-S<E|X>-<position>-1`.
pub fn intent(
    venue: engine::Venue,
    symbol: &str,
    purpose: engine::types::OrderPurpose,
    position: u64,
    qty: &str,
) -> engine::events::OrderIntent {
    use engine::types::{Modality, OrderPurpose, OrderTag, PositionId, Side};
    let key = engine::PositionKey {
        account: engine::AccountId(0),
        venue,
        symbol: engine::Symbol::lit(symbol),
        side: Side::Long,
    };
    let cid = engine::ClientOrderId::new(OrderTag {
        modality: Modality::SafetyNet,
        purpose,
        position: PositionId(position),
        sequence: 1,
    });
    engine::events::OrderIntent {
        cid,
        key,
        order_side: match purpose {
            OrderPurpose::Entry => Side::Long.opening_order(),
            OrderPurpose::Close => Side::Long.closing_order(),
        },
        qty: engine::Qty::lit(qty),
        purpose,
        modality: Modality::SafetyNet,
    }
}
