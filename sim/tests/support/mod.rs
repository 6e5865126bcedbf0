//! Independent clients for the simulator's tests: ureq for REST with signing done here (not by
//! `feed`), a tungstenite client for WebSockets (plain or rustls with the simulator's CA), and
//! helpers that push what the simulator sends through `feed`'s parsers.
#![allow(dead_code)]

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use ed25519_dalek::Signer as _;
use engine::Event;
use feed::wire::{Connection, FrameParser, Parsed};
use hmac::{Hmac, KeyInit, Mac};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use sha2::Sha256;
use sim::SimConfig;
use tungstenite::{Message, WebSocket};

pub const KEY: &str = SimConfig::DEMO_API_KEY;
pub const SECRET: &str = SimConfig::DEMO_SECRET;

pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

pub fn hmac_hex(secret: &str, payload: &str) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(payload.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// Base64 Ed25519 signature, percent-encoded for a query string.
pub fn ed25519_sig(key: &ed25519_dalek::SigningKey, payload: &str) -> String {
    let sig = key.sign(payload.as_bytes());
    let b64 = base64::engine::general_purpose::STANDARD.encode(sig.to_bytes());
    b64.replace('+', "%2B").replace('/', "%2F").replace('=', "%3D")
}

/// A REST answer.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn code(&self) -> Option<i64> {
        let v: serde_json::Value = serde_json::from_str(&self.body).ok()?;
        v.get("code")?.as_i64()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }

    pub fn bytes(&self) -> Vec<u8> {
        self.body.clone().into_bytes()
    }

    /// Asserts success and returns the body's bytes, for a feed parser.
    pub fn ok(&self) -> Vec<u8> {
        assert_eq!(self.status, 200, "{}", self.body);
        self.bytes()
    }
}

pub struct Rest {
    agent: ureq::Agent,
    pub base: String,
    pub key: String,
    pub secret: String,
}

impl Rest {
    pub fn new(base: &str, ca: Option<&Path>) -> Rest {
        let mut config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(10)));
        if let Some(ca) = ca {
            let pem = std::fs::read(ca).unwrap();
            let cert = ureq::tls::Certificate::from_pem(&pem).unwrap();
            let tls = ureq::tls::TlsConfig::builder()
                .root_certs(ureq::tls::RootCerts::new_with_certs(&[cert]))
                .build();
            config = config.tls_config(tls);
        }
        Rest {
            agent: config.build().into(),
            base: base.into(),
            key: KEY.into(),
            secret: SECRET.into(),
        }
    }

    pub fn raw(&self, method: &str, path_and_query: &str, body: &str, key: Option<&str>) -> Resp {
        let url = format!("{}{}", self.base, path_and_query);
        let result = match method {
            "GET" => {
                let mut r = self.agent.get(&url);
                if let Some(k) = key {
                    r = r.header("X-MBX-APIKEY", k);
                }
                r.call()
            }
            "DELETE" => {
                let mut r = self.agent.delete(&url);
                if let Some(k) = key {
                    r = r.header("X-MBX-APIKEY", k);
                }
                r.call()
            }
            "POST" | "PUT" => {
                let mut r =
                    if method == "POST" { self.agent.post(&url) } else { self.agent.put(&url) };
                if let Some(k) = key {
                    r = r.header("X-MBX-APIKEY", k);
                }
                r.header("Content-Type", "application/x-www-form-urlencoded").send(body)
            }
            other => panic!("method {other}"),
        };
        let mut resp = result.unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
            .collect();
        let body = resp.body_mut().read_to_string().unwrap_or_default();
        Resp { status, headers, body }
    }

    /// Like `raw`, but a transport error (connection closed without an answer) is a value.
    pub fn try_raw(&self, method: &str, path_and_query: &str, body: &str) -> Result<Resp, String> {
        let url = format!("{}{}", self.base, path_and_query);
        let r = match method {
            "POST" => self
                .agent
                .post(&url)
                .header("X-MBX-APIKEY", &self.key)
                .header("Content-Type", "application/x-www-form-urlencoded")
                .send(body),
            _ => self.agent.get(&url).header("X-MBX-APIKEY", &self.key).call(),
        };
        let mut resp = r.map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let body = resp.body_mut().read_to_string().map_err(|e| e.to_string())?;
        Ok(Resp { status, headers: Vec::new(), body })
    }

    pub fn public(&self, path_and_query: &str) -> Resp {
        self.raw("GET", path_and_query, "", None)
    }

    pub fn key_only(&self, method: &str, path: &str) -> Resp {
        self.raw(method, path, "", Some(&self.key))
    }

    /// `params` plus timestamp, HMAC-signed; in the query for GET/DELETE, the body otherwise.
    pub fn signed(&self, method: &str, path: &str, params: &str) -> Resp {
        let sep = if params.is_empty() { "" } else { "&" };
        let payload = format!("{params}{sep}timestamp={}", now_ms());
        let sig = hmac_hex(&self.secret, &payload);
        self.send_signed(method, path, &format!("{payload}&signature={sig}"))
    }

    pub fn send_signed(&self, method: &str, path: &str, signed: &str) -> Resp {
        match method {
            "GET" | "DELETE" => self.raw(method, &format!("{path}?{signed}"), "", Some(&self.key)),
            _ => self.raw(method, path, signed, Some(&self.key)),
        }
    }
}

// ---- WebSocket client ----

pub enum ClientStream {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Read for ClientStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            ClientStream::Plain(s) => s.read(buf),
            ClientStream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for ClientStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            ClientStream::Plain(s) => s.write(buf),
            ClientStream::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            ClientStream::Plain(s) => s.flush(),
            ClientStream::Tls(s) => s.flush(),
        }
    }
}

pub struct Ws {
    pub ws: WebSocket<ClientStream>,
}

fn blocked(e: &tungstenite::Error) -> bool {
    matches!(e, tungstenite::Error::Io(io) if matches!(io.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut))
}

/// What a read found.
#[derive(Debug, PartialEq, Eq)]
pub enum Got {
    Text(String),
    Ping(Vec<u8>),
    Closed,
    Nothing,
}

impl Ws {
    pub fn connect(url: &str, ca: Option<&Path>) -> Result<Ws, String> {
        let (scheme, rest) = url.split_once("://").ok_or("no scheme")?;
        let host_port = rest.split('/').next().unwrap_or(rest);
        let tcp = TcpStream::connect(host_port).map_err(|e| e.to_string())?;
        tcp.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
        tcp.set_nodelay(true).unwrap();
        let stream = if scheme == "wss" {
            let ca = ca.ok_or("wss needs a CA")?;
            let mut roots = rustls::RootCertStore::empty();
            roots.add(CertificateDer::from_pem_file(ca).map_err(|e| e.to_string())?).unwrap();
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth();
            let host = host_port.rsplit_once(':').map_or(host_port, |(h, _)| h).to_owned();
            let name = ServerName::try_from(host).map_err(|e| e.to_string())?;
            let conn =
                rustls::ClientConnection::new(Arc::new(config), name).map_err(|e| e.to_string())?;
            ClientStream::Tls(Box::new(rustls::StreamOwned::new(conn, tcp)))
        } else {
            ClientStream::Plain(tcp)
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut attempt = tungstenite::client(url, stream);
        loop {
            match attempt {
                Ok((ws, _)) => return Ok(Ws { ws }),
                Err(tungstenite::HandshakeError::Interrupted(mid)) if Instant::now() < deadline => {
                    attempt = mid.handshake();
                }
                Err(tungstenite::HandshakeError::Interrupted(_)) => {
                    return Err("handshake timed out".into());
                }
                Err(tungstenite::HandshakeError::Failure(e)) => return Err(e.to_string()),
            }
        }
    }

    pub fn send(&mut self, text: &str) {
        self.ws.send(Message::text(text.to_owned())).unwrap();
    }

    /// One read (answering pings, as any client does).
    pub fn poll(&mut self) -> Got {
        match self.ws.read() {
            Ok(Message::Text(t)) => Got::Text(t.as_str().to_owned()),
            Ok(Message::Ping(p)) => {
                let _ = self.ws.flush();
                Got::Ping(p.to_vec())
            }
            Ok(Message::Close(_)) => Got::Closed,
            Ok(_) => Got::Nothing,
            Err(e) if blocked(&e) => {
                let _ = self.ws.flush();
                Got::Nothing
            }
            Err(_) => Got::Closed,
        }
    }

    /// The next text frame within `timeout`.
    pub fn next_text(&mut self, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            match self.poll() {
                Got::Text(t) => return Some(t),
                Got::Closed => return None,
                _ => {}
            }
        }
        None
    }

    /// The first text frame containing `needle`, skipping others, within `timeout`.
    pub fn wait_for(&mut self, needle: &str, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            match self.poll() {
                Got::Text(t) if t.contains(needle) => return Some(t),
                Got::Closed => return None,
                _ => {}
            }
        }
        None
    }

    /// Every text frame until `quiet` passes with none.
    pub fn drain(&mut self, quiet: Duration) -> Vec<String> {
        let mut out = Vec::new();
        let mut deadline = Instant::now() + quiet;
        while Instant::now() < deadline {
            match self.poll() {
                Got::Text(t) => {
                    out.push(t);
                    deadline = Instant::now() + quiet;
                }
                Got::Closed => break,
                _ => {}
            }
        }
        out
    }

    /// Whether the server closes the connection within `timeout`.
    pub fn closes_within(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.poll() == Got::Closed {
                return true;
            }
        }
        false
    }
}

/// Parses one frame with `feed`'s hot-path parser.
pub fn parse_frame(parser: &mut FrameParser, text: &str) -> (Parsed, Vec<Event>) {
    let mut bytes = text.as_bytes().to_vec();
    let mut events = Vec::new();
    let parsed = parser
        .parse(&mut bytes, |e| events.push(e))
        .unwrap_or_else(|e| panic!("feed refused {text}: {e:?}"));
    (parsed, events)
}

pub fn parser(conn: Connection) -> FrameParser {
    FrameParser::with_max_frame(conn, 16 * 1024)
}

/// Waits until `cond` holds (a failure guard, not a timing assertion).
pub fn eventually(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    cond()
}

pub const T: Duration = Duration::from_secs(5);
