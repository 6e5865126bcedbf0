//! The bytes on the wire below REST and WebSocket: plain TCP or rustls, one HTTP/1.1 request at a
//! time (keep-alive, `Content-Length` bodies), responses, and the TLS certificates.
//!
//! A minimal server rather than tiny_http: tiny_http 0.12's TLS is tied to rustls 0.20, and the
//! faults need a server that can leave a request unanswered, hold a socket open or drop it at
//! any byte. It knows nothing about Binance.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{ServerConfig, ServerConnection, StreamOwned};

/// Reads give up after this long so that a connection thread can look at its queue and flags.
pub(crate) const POLL: Duration = Duration::from_millis(5);
const MAX_HEAD: usize = 16 * 1024;
const MAX_BODY: usize = 1024 * 1024;

pub(crate) enum Stream {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ServerConnection, TcpStream>>),
}

impl Stream {
    pub(crate) fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => s.get_ref(),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

/// A read that found nothing yet (the poll timeout), as opposed to a real failure.
pub(crate) fn would_block(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut)
}

pub(crate) struct Request {
    pub(crate) method: String,
    /// Path without the query string.
    pub(crate) path: String,
    /// The raw query string (still percent-encoded, as signed).
    pub(crate) query: String,
    pub(crate) headers: Vec<(String, String)>,
    /// The raw body (as signed).
    pub(crate) body: String,
}

impl Request {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub(crate) fn is_websocket(&self) -> bool {
        self.header("upgrade").is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
    }

    fn keep_alive(&self) -> bool {
        !self.header("connection").is_some_and(|v| v.eq_ignore_ascii_case("close"))
    }
}

/// What one attempt to read a request found.
pub(crate) enum ReadResult {
    Request(Request),
    /// The client closed the connection (or sent garbage: either way, done).
    Closed,
}

/// Reads one request. `buf` carries bytes past the previous request (pipelining) and, after an
/// upgrade, the first WebSocket bytes. `stop` is asked between polls.
pub(crate) fn read_request(
    stream: &mut Stream,
    buf: &mut Vec<u8>,
    stop: &dyn Fn() -> bool,
) -> io::Result<ReadResult> {
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(pos) = find(buf, b"\r\n\r\n") {
            break pos + 4;
        }
        if buf.len() > MAX_HEAD {
            return Ok(ReadResult::Closed);
        }
        if !fill(stream, buf, &mut chunk, stop)? {
            return Ok(ReadResult::Closed);
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap_or("").split(' ');
    let (Some(method), Some(target)) = (first.next(), first.next()) else {
        return Ok(ReadResult::Closed);
    };
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let length = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(0);
    if length > MAX_BODY {
        return Ok(ReadResult::Closed);
    }
    while buf.len() < head_end + length {
        if !fill(stream, buf, &mut chunk, stop)? {
            return Ok(ReadResult::Closed);
        }
    }
    let body = String::from_utf8_lossy(&buf[head_end..head_end + length]).into_owned();
    buf.drain(..head_end + length);
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_owned(), q.to_owned()),
        None => (target.to_owned(), String::new()),
    };
    Ok(ReadResult::Request(Request { method: method.to_owned(), path, query, headers, body }))
}

/// One read into `buf`; false on EOF or when asked to stop.
fn fill(
    stream: &mut Stream,
    buf: &mut Vec<u8>,
    chunk: &mut [u8],
    stop: &dyn Fn() -> bool,
) -> io::Result<bool> {
    loop {
        if stop() {
            return Ok(false);
        }
        match stream.read(chunk) {
            Ok(0) => return Ok(false),
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                return Ok(true);
            }
            Err(e) if would_block(&e) => continue,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn reason(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        418 => "I'm a teapot",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

pub(crate) struct Response {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: String,
}

impl Response {
    pub(crate) fn json(status: u16, body: String) -> Response {
        Response { status, headers: Vec::new(), body }
    }

    pub(crate) fn header(mut self, name: &str, value: impl ToString) -> Response {
        self.headers.push((name.to_owned(), value.to_string()));
        self
    }
}

/// Writes a response; whether the connection may serve another request.
pub(crate) fn write_response(
    stream: &mut Stream,
    req: &Request,
    resp: &Response,
) -> io::Result<bool> {
    let keep = req.keep_alive();
    let mut head = format!("HTTP/1.1 {} {}\r\n", resp.status, reason(resp.status));
    head.push_str("Content-Type: application/json;charset=UTF-8\r\n");
    head.push_str(&format!("Content-Length: {}\r\n", resp.body.len()));
    for (k, v) in &resp.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(if keep {
        "Connection: keep-alive\r\n\r\n"
    } else {
        "Connection: close\r\n\r\n"
    });
    write_all(stream, head.as_bytes())?;
    write_all(stream, resp.body.as_bytes())?;
    flush(stream)?;
    Ok(keep)
}

/// Writes everything, riding out the poll timeouts a slow reader causes.
pub(crate) fn write_all(stream: &mut Stream, mut bytes: &[u8]) -> io::Result<()> {
    let mut stalls = 0;
    while !bytes.is_empty() {
        match stream.write(bytes) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                bytes = &bytes[n..];
                stalls = 0;
            }
            Err(e) if would_block(&e) && stalls < 2000 => stalls += 1,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

pub(crate) fn flush(stream: &mut Stream) -> io::Result<()> {
    let mut stalls = 0;
    loop {
        match stream.flush() {
            Ok(()) => return Ok(()),
            Err(e) if would_block(&e) && stalls < 2000 => stalls += 1,
            Err(e) => return Err(e),
        }
    }
}

/// A CA generated at start, a leaf for `127.0.0.1`/`localhost` signed by it, and the CA's PEM
/// written to a file clients can trust.
pub(crate) struct Tls {
    pub(crate) config: Arc<ServerConfig>,
    pub(crate) ca_file: PathBuf,
    dir: PathBuf,
}

impl Tls {
    pub(crate) fn generate(tag: u64) -> io::Result<Tls> {
        let err = |e: rcgen::Error| io::Error::other(format!("certificate generation: {e}"));
        let mut ca_params = rcgen::CertificateParams::new(Vec::new()).map_err(err)?;
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(rcgen::DnType::CommonName, "robsond simulator CA");
        ca_params.key_usages =
            vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::DigitalSignature];
        let ca_key = rcgen::KeyPair::generate().map_err(err)?;
        let ca_cert = ca_params.self_signed(&ca_key).map_err(err)?;
        let issuer = rcgen::Issuer::new(ca_params, ca_key);

        let mut leaf_params =
            rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .map_err(err)?;
        leaf_params.distinguished_name.push(rcgen::DnType::CommonName, "localhost");
        leaf_params.use_authority_key_identifier_extension = true;
        leaf_params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let leaf_key = rcgen::KeyPair::generate().map_err(err)?;
        let leaf_cert = leaf_params.signed_by(&leaf_key, &issuer).map_err(err)?;

        let chain: Vec<CertificateDer<'static>> = vec![leaf_cert.der().clone()];
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| io::Error::other(format!("TLS versions: {e}")))?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|e| io::Error::other(format!("TLS certificate: {e}")))?;

        let dir = std::env::temp_dir().join(format!("robsond-sim-{}-{tag}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let ca_file = dir.join("ca.pem");
        std::fs::write(&ca_file, ca_cert.pem())?;
        Ok(Tls { config: Arc::new(config), ca_file, dir })
    }

    pub(crate) fn ca_file(&self) -> &Path {
        &self.ca_file
    }

    pub(crate) fn accept(&self, tcp: TcpStream) -> io::Result<Stream> {
        let conn = ServerConnection::new(self.config.clone())
            .map_err(|e| io::Error::other(format!("TLS: {e}")))?;
        Ok(Stream::Tls(Box::new(StreamOwned::new(conn, tcp))))
    }
}

impl Tls {
    /// Removes the CA file: connection threads may outlive the simulator by a poll, holding
    /// this value, so shutdown does not wait for the last of them to drop it.
    pub(crate) fn remove_files(&self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Drop for Tls {
    fn drop(&mut self) {
        self.remove_files();
    }
}
