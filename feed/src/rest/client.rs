//! The HTTP client the I/O thread talks to Binance's REST API with: ureq 3 over rustls (ring),
//! one keep-alive `Agent` per base URL, requests signed and timed, rate limits obeyed before a
//! byte is sent.
//!
//! Two layers. [`HttpClient`] moves bytes: TLS with webpki's roots plus an optional extra CA,
//! plain `http://` only to loopback, connect and whole-request time-outs, and a transport error
//! that says whether the request can have left the machine. [`RestClient`] speaks Binance on one
//! API family (USD-M futures, or spot with its margin `/sapi` endpoints): the server-time offset,
//! `recvWindow`/`timestamp`/`signature`, `X-MBX-APIKEY`, the [`RateLimiter`] fed from every
//! response's headers, -1021 answered by a resync and one retry, and typed endpoint calls whose
//! bodies go through the `rest` parsers.
//!
//! It never decides anything about orders (the executor and the engine do), never retries a
//! request that may have executed, never sleeps (a request the limiter holds comes back at once
//! as [`CallError::Throttled`]), and never prints key material: credentials, signatures and
//! listen keys stay out of every `Debug`, `Display` and error value.

use core::fmt;
use std::io::{Read as _, Write as _};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use engine::money::DecimalBuf;
use engine::types::OrderSide;
use engine::{ClientOrderId, Symbol};
use ureq::unversioned::resolver::DefaultResolver;
use ureq::unversioned::transport::{
    Buffers, ConnectionDetails, Connector, Either, LazyBuffers, NextTimeout, TcpConnector,
    Transport, TransportAdapter,
};

use super::account::{
    IsolatedMarginAccount, PositionRisks, parse_isolated_margin_account, parse_position_risk,
};
use super::error::{ApiError, RestError, classify_response};
use super::general::{ExchangeInfo, parse_exchange_info, parse_ping, parse_server_time};
use super::json::BodyError;
use super::limits::{Cost, FUTURES_LIMITS, Limit, Priority, RateLimiter, SPOT_LIMITS, Verdict};
use super::market::parse_mark_price;
use super::market::{BookTicker, LastPrice, MarkPrice, parse_book_ticker, parse_last_price};
use super::order::{OrderReport, PositionSide, parse_order, parse_orders};
use super::sign::{ApiKey, Ed25519Signer, HmacSigner, KeyError, Query, Secret, Signer};
use super::trades::{MarginTradeRow, parse_margin_trades};
use super::user_stream::{ListenKey, ListenToken, parse_listen_key, parse_listen_token};

// ---------------------------------------------------------------------------------------------
// Clocks

/// Local wall-clock time in epoch milliseconds. The client reads it right before signing, so a
/// request that waited behind another still carries a fresh `timestamp`.
pub trait Clock: Send + Sync {
    fn now_ms(&self) -> u64;
}

/// The system clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        // A clock before 1970 is a broken host; 0 then makes every signed request fail with
        // -1021, which is reported, rather than panicking the I/O thread.
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }
}

/// A clock that moves only when told to: tests, simulations, replays. Clones share one time.
#[derive(Clone, Debug, Default)]
pub struct ManualClock(Arc<AtomicU64>);

impl ManualClock {
    pub fn new(now_ms: u64) -> ManualClock {
        ManualClock(Arc::new(AtomicU64::new(now_ms)))
    }

    pub fn set(&self, now_ms: u64) {
        self.0.store(now_ms, Ordering::SeqCst);
    }

    pub fn advance(&self, ms: u64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// How far the server's clock is ahead of the local one (negative: behind), from one `/time`
/// round trip: the server read its clock somewhere inside the round trip, and the midpoint is
/// the estimate whose worst-case error (half the round trip) is smallest.
pub fn clock_offset_ms(sent_local_ms: u64, server_ms: u64, received_local_ms: u64) -> i64 {
    let sent = i128::from(sent_local_ms);
    let received = i128::from(received_local_ms).max(sent);
    let midpoint = sent + (received - sent) / 2;
    let offset = i128::from(server_ms) - midpoint;
    i64::try_from(offset).unwrap_or(if offset < 0 { i64::MIN } else { i64::MAX })
}

fn shift(local_ms: u64, offset_ms: i64) -> u64 {
    let shifted = i128::from(local_ms) + i128::from(offset_ms);
    u64::try_from(shifted.max(0)).unwrap_or(u64::MAX)
}

// ---------------------------------------------------------------------------------------------
// HTTP

/// Transport settings for one base URL.
#[derive(Clone, Debug)]
pub struct HttpConfig {
    /// TCP connect plus TLS handshake.
    pub connect_timeout: Duration,
    /// Whole request, connect to last body byte. A request cut short by it may have executed.
    pub request_timeout: Duration,
    /// A PEM file of CA certificates trusted in addition to webpki's roots (a simulator's CA,
    /// a TLS-inspecting proxy's).
    pub extra_ca_pem: Option<PathBuf>,
    /// How long an idle connection stays in the pool. A close sent on a warm connection saves
    /// a TCP and TLS handshake; a connection the server has dropped is detected and replaced.
    pub idle_timeout: Duration,
    /// Idle connections kept per host.
    pub max_idle_connections: usize,
    /// Largest response body read (spot's full exchangeInfo runs to megabytes).
    pub max_body_bytes: u64,
}

impl Default for HttpConfig {
    fn default() -> HttpConfig {
        HttpConfig {
            connect_timeout: Duration::from_secs(3),
            // Shorter than Binance's own 10 s processing time-out: a request cut short is
            // settled by a query anyway, and the I/O thread is blocked for less.
            request_timeout: Duration::from_secs(5),
            extra_ca_pem: None,
            idle_timeout: Duration::from_secs(30),
            max_idle_connections: 4,
            max_body_bytes: 64 << 20,
        }
    }
}

/// Why a client could not be built. Carries no URL or file content.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientError {
    /// The base URL is not `scheme://host[:port]` with scheme `https` or `http`.
    BadUrl(&'static str),
    /// `http://` to a host that is not loopback: credentials and orders would cross the network
    /// in clear.
    PlainHttpNotLoopback,
    /// The extra CA file could not be read.
    CaFile(std::io::ErrorKind),
    /// The extra CA file holds no usable certificate.
    CaPem,
    /// rustls refused the configuration.
    Tls,
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::BadUrl(why) => write!(f, "bad base URL: {why}"),
            ClientError::PlainHttpNotLoopback => {
                f.write_str("plain http:// is only allowed to a loopback host")
            }
            ClientError::CaFile(kind) => write!(f, "extra CA file unreadable: {kind}"),
            ClientError::CaPem => f.write_str("extra CA file holds no PEM certificate"),
            ClientError::Tls => f.write_str("TLS configuration refused"),
        }
    }
}

impl std::error::Error for ClientError {}

/// What went wrong below HTTP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransportKind {
    Resolve,
    Connect,
    Tls,
    Timeout,
    Io(std::io::ErrorKind),
    /// The server's bytes were not HTTP, or a response body could not be decoded.
    Protocol,
    BodyTooLarge,
    Other,
}

/// A request that got no HTTP response. The distinction that matters is whether it can have
/// reached the server: a connection that never opened sent nothing; anything later may have
/// delivered the request, and for an order that means it may have executed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransportError {
    NotSent(TransportKind),
    MaybeSent(TransportKind),
}

impl TransportError {
    pub fn kind(&self) -> TransportKind {
        match self {
            TransportError::NotSent(kind) | TransportError::MaybeSent(kind) => *kind,
        }
    }

    pub fn maybe_sent(&self) -> bool {
        matches!(self, TransportError::MaybeSent(_))
    }
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransportError::NotSent(kind) => write!(f, "not sent: {kind:?}"),
            TransportError::MaybeSent(kind) => write!(f, "failed after sending: {kind:?}"),
        }
    }
}

impl std::error::Error for TransportError {}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Method {
    Get,
    Post,
    Put,
    Delete,
}

impl Method {
    fn as_http(self) -> ureq::http::Method {
        match self {
            Method::Get => ureq::http::Method::GET,
            Method::Post => ureq::http::Method::POST,
            Method::Put => ureq::http::Method::PUT,
            Method::Delete => ureq::http::Method::DELETE,
        }
    }
}

/// One HTTP response, read in full. Its Debug shows the status, header names and body length,
/// never the body: bodies carry listen keys and tokens.
#[derive(Clone)]
pub struct HttpResponse {
    pub status: u16,
    /// Names lower-case, as HTTP/1.1 allows and `http` stores them.
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

impl std::fmt::Debug for HttpResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("HttpResponse")
            .field("status", &self.status)
            .field("headers", &names)
            .field("body_len", &self.body.len())
            .finish()
    }
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_slice())
    }

    fn header_pairs(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.headers.iter().map(|(n, v)| (n.as_bytes(), v.as_slice()))
    }
}

/// `scheme://host[:port]`, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
struct BaseUrl {
    origin: String,
}

fn is_loopback_host(host: &str) -> bool {
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    let bare = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

impl BaseUrl {
    fn parse(url: &str) -> Result<BaseUrl, ClientError> {
        let url = url.trim().trim_end_matches('/');
        let (scheme, rest) = url.split_once("://").ok_or(ClientError::BadUrl("no scheme"))?;
        let scheme = scheme.to_ascii_lowercase();
        let tls = match scheme.as_str() {
            "https" => true,
            "http" => false,
            _ => return Err(ClientError::BadUrl("scheme must be https or http")),
        };
        if rest.is_empty() {
            return Err(ClientError::BadUrl("no host"));
        }
        if rest.contains(['/', '?', '#', '@', ' ']) {
            return Err(ClientError::BadUrl("only scheme://host[:port] is accepted"));
        }
        let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
            let (inside, after) = v6.split_once(']').ok_or(ClientError::BadUrl("bad IPv6"))?;
            inside.parse::<std::net::Ipv6Addr>().map_err(|_| ClientError::BadUrl("bad IPv6"))?;
            (&rest[..inside.len() + 2], after.strip_prefix(':'))
        } else {
            match rest.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (rest, None),
            }
        };
        if let Some(port) = port
            && (port.is_empty()
                || !port.bytes().all(|b| b.is_ascii_digit())
                || port.parse::<u16>().is_err())
        {
            return Err(ClientError::BadUrl("bad port"));
        }
        if host.is_empty()
            || !host.starts_with('[')
                && !host.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
        {
            return Err(ClientError::BadUrl("bad host"));
        }
        if !tls && !is_loopback_host(host) {
            return Err(ClientError::PlainHttpNotLoopback);
        }
        Ok(BaseUrl { origin: format!("{scheme}://{rest}") })
    }
}

fn tls_client_config(
    extra_ca_pem: Option<&std::path::Path>,
) -> Result<Arc<rustls::ClientConfig>, ClientError> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject as _;

    let mut roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    if let Some(path) = extra_ca_pem {
        let pem = std::fs::read(path).map_err(|e| ClientError::CaFile(e.kind()))?;
        let mut added = 0;
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|_| ClientError::CaPem)?;
            roots.add(cert).map_err(|_| ClientError::CaPem)?;
            added += 1;
        }
        if added == 0 {
            return Err(ClientError::CaPem);
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|_| ClientError::Tls)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// rustls on top of ureq's TCP transport, with robsond's own root store: ureq's built-in TLS
/// takes either webpki's roots or a given list, never both, and robsond needs both.
///
/// Built on ureq's `unversioned` transport API, which may change in a minor ureq release; the
/// lock file pins the version, and a change breaks the build, not behaviour.
struct TlsConnector {
    config: Arc<rustls::ClientConfig>,
}

impl fmt::Debug for TlsConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TlsConnector")
    }
}

impl<In: Transport> Connector<In> for TlsConnector {
    type Out = Either<In, TlsTransport>;

    fn connect(
        &self,
        details: &ConnectionDetails,
        chained: Option<In>,
    ) -> Result<Option<Self::Out>, ureq::Error> {
        let Some(transport) = chained else { return Ok(None) };
        if !details.needs_tls() || transport.is_tls() {
            return Ok(Some(Either::A(transport)));
        }
        let host = details.uri.host().ok_or(ureq::Error::Tls("no host to verify"))?;
        let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
        let name = rustls_pki_types::ServerName::try_from(host.to_owned())
            .map_err(|_| ureq::Error::Tls("host is not a valid TLS server name"))?;
        let mut conn = rustls::ClientConnection::new(self.config.clone(), name)?;
        let mut sock = TransportAdapter::new(transport.boxed(), details.current_time.clone());
        sock.set_timeout(details.timeout);
        while conn.is_handshaking() {
            conn.complete_io(&mut sock)?;
        }
        let buffers = LazyBuffers::new(
            details.config.input_buffer_size(),
            details.config.output_buffer_size(),
        );
        Ok(Some(Either::B(TlsTransport { buffers, stream: rustls::StreamOwned::new(conn, sock) })))
    }
}

struct TlsTransport {
    buffers: LazyBuffers,
    stream: rustls::StreamOwned<rustls::ClientConnection, TransportAdapter>,
}

impl fmt::Debug for TlsTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TlsTransport")
    }
}

impl Transport for TlsTransport {
    fn buffers(&mut self) -> &mut dyn Buffers {
        &mut self.buffers
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), ureq::Error> {
        self.stream.sock.set_timeout(timeout);
        let output = &self.buffers.output()[..amount];
        self.stream.write_all(output)?;
        Ok(())
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, ureq::Error> {
        self.stream.sock.set_timeout(timeout);
        let input = self.buffers.input_append_buf();
        let amount = self.stream.read(input)?;
        self.buffers.input_appended(amount);
        Ok(amount > 0)
    }

    fn is_open(&mut self) -> bool {
        self.stream.sock.get_mut().is_open()
    }

    fn is_tls(&self) -> bool {
        true
    }
}

/// Marks every failure inside the connector chain (TCP connect, TLS handshake) as happening
/// before the request was written, which is the one certainty a failed order can have.
#[derive(Debug)]
struct PreSend<C>(C);

#[derive(Debug)]
struct NotSentMarker(TransportKind);

impl fmt::Display for NotSentMarker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "connection failed before sending: {:?}", self.0)
    }
}

impl std::error::Error for NotSentMarker {}

fn is_rustls_io(e: &std::io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<rustls::Error>())
}

fn connect_failure_kind(e: &ureq::Error) -> TransportKind {
    match e {
        ureq::Error::Timeout(_) => TransportKind::Timeout,
        ureq::Error::Tls(_) | ureq::Error::Rustls(_) | ureq::Error::Pem(_) => TransportKind::Tls,
        ureq::Error::Io(io) if is_rustls_io(io) => TransportKind::Tls,
        ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::TimedOut => TransportKind::Timeout,
        ureq::Error::HostNotFound => TransportKind::Resolve,
        _ => TransportKind::Connect,
    }
}

impl<C: Connector<()>> Connector<()> for PreSend<C> {
    type Out = C::Out;

    fn connect(
        &self,
        details: &ConnectionDetails,
        chained: Option<()>,
    ) -> Result<Option<Self::Out>, ureq::Error> {
        self.0
            .connect(details, chained)
            .map_err(|e| ureq::Error::Other(Box::new(NotSentMarker(connect_failure_kind(&e)))))
    }
}

fn transport_error(e: ureq::Error) -> TransportError {
    use TransportError::{MaybeSent, NotSent};
    match e {
        ureq::Error::Other(inner) => match inner.downcast_ref::<NotSentMarker>() {
            Some(marker) => NotSent(marker.0),
            None => MaybeSent(TransportKind::Other),
        },
        ureq::Error::HostNotFound | ureq::Error::Timeout(ureq::Timeout::Resolve) => {
            NotSent(TransportKind::Resolve)
        }
        ureq::Error::Timeout(ureq::Timeout::Connect) => NotSent(TransportKind::Timeout),
        ureq::Error::ConnectionFailed => NotSent(TransportKind::Connect),
        ureq::Error::BadUri(_) | ureq::Error::Http(_) | ureq::Error::RequireHttpsOnly(_) => {
            NotSent(TransportKind::Other)
        }
        ureq::Error::Timeout(_) => MaybeSent(TransportKind::Timeout),
        ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::TimedOut => {
            MaybeSent(TransportKind::Timeout)
        }
        ureq::Error::Io(io) => MaybeSent(TransportKind::Io(io.kind())),
        ureq::Error::BodyExceedsLimit(_) => MaybeSent(TransportKind::BodyTooLarge),
        ureq::Error::Protocol(_)
        | ureq::Error::LargeResponseHeader(..)
        | ureq::Error::Decompress(..) => MaybeSent(TransportKind::Protocol),
        ureq::Error::Tls(_) | ureq::Error::Rustls(_) => MaybeSent(TransportKind::Tls),
        _ => MaybeSent(TransportKind::Other),
    }
}

/// One keep-alive HTTP client for one base URL. Blocking: the I/O thread calls it directly.
pub struct HttpClient {
    agent: ureq::Agent,
    base: BaseUrl,
    max_body_bytes: u64,
}

impl fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpClient").field("base", &self.base.origin).finish()
    }
}

impl HttpClient {
    /// `base_url` is `https://host[:port]`, or `http://` to a loopback host (a simulator).
    pub fn new(base_url: &str, config: &HttpConfig) -> Result<HttpClient, ClientError> {
        let base = BaseUrl::parse(base_url)?;
        let tls = tls_client_config(config.extra_ca_pem.as_deref())?;
        let agent_config = ureq::Agent::config_builder()
            // Binance's 4xx/5xx carry the error code; they are answers, not failures.
            .http_status_as_error(false)
            // Never follow a redirect: a 3xx from an order endpoint is an anomaly to report.
            .max_redirects(0)
            .max_redirects_will_error(false)
            // robsond connects directly; an environment proxy would also need CONNECT
            // handling in the connector chain below.
            .proxy(None)
            .timeout_connect(Some(config.connect_timeout))
            .timeout_global(Some(config.request_timeout))
            .max_idle_age(config.idle_timeout)
            .max_idle_connections_per_host(config.max_idle_connections)
            .max_idle_connections(config.max_idle_connections)
            .build();
        let connector =
            PreSend(().chain(TcpConnector::default()).chain(TlsConnector { config: tls }));
        let agent = ureq::Agent::with_parts(agent_config, connector, DefaultResolver::default());
        Ok(HttpClient { agent, base, max_body_bytes: config.max_body_bytes })
    }

    /// `scheme://host[:port]`.
    pub fn base_url(&self) -> &str {
        &self.base.origin
    }

    /// Sends one request with `query` (already encoded) and reads the whole response.
    pub fn send(
        &self,
        method: Method,
        path: &str,
        query: &str,
        api_key: Option<&ApiKey>,
    ) -> Result<HttpResponse, TransportError> {
        let mut url = String::with_capacity(self.base.origin.len() + path.len() + query.len() + 1);
        url.push_str(&self.base.origin);
        url.push_str(path);
        if !query.is_empty() {
            url.push('?');
            url.push_str(query);
        }
        let mut builder = ureq::http::Request::builder().method(method.as_http()).uri(url);
        if let Some(key) = api_key {
            builder = builder.header("X-MBX-APIKEY", key.as_str());
        }
        // Everything travels in the query; a POST/PUT/DELETE says `Content-Length: 0` rather
        // than sending an empty chunked body, which some servers mis-frame.
        let empty: &[u8] = &[];
        let result = match method {
            Method::Get => builder.body(()).map(|request| self.agent.run(request)),
            _ => builder.body(empty).map(|request| self.agent.run(request)),
        };
        let mut response = result
            .map_err(|_| TransportError::NotSent(TransportKind::Other))?
            .map_err(transport_error)?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(name, value)| (name.as_str().to_owned(), value.as_bytes().to_vec()))
            .collect();
        let body = response
            .body_mut()
            .with_config()
            .limit(self.max_body_bytes)
            .read_to_vec()
            .map_err(transport_error)?;
        Ok(HttpResponse { status, headers, body })
    }
}

// ---------------------------------------------------------------------------------------------
// Binance

/// Which of Binance's REST families a client talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Api {
    /// USD-M futures, `/fapi`.
    Futures,
    /// Spot `/api` and margin `/sapi` on the same host.
    Spot,
}

impl Api {
    pub fn default_limits(self) -> &'static [Limit] {
        match self {
            Api::Futures => &FUTURES_LIMITS,
            Api::Spot => &SPOT_LIMITS,
        }
    }
}

/// Binance's endpoint security types, reduced to what the client must add.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Security {
    /// Market data: nothing.
    Public,
    /// USER_STREAM: the `X-MBX-APIKEY` header only.
    ApiKey,
    /// TRADE / USER_DATA: the header, `recvWindow`, `timestamp` and `signature`.
    Signed,
}

/// One endpoint: how to call it and what it costs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request {
    pub method: Method,
    pub path: &'static str,
    pub security: Security,
    pub cost: Cost,
    /// Binance documents the weight header of some endpoints as wrong (futures tickers);
    /// those responses do not feed the limiter.
    pub weight_header_reliable: bool,
}

impl Request {
    pub const fn new(
        method: Method,
        path: &'static str,
        security: Security,
        cost: Cost,
    ) -> Request {
        Request { method, path, security, cost, weight_header_reliable: true }
    }
}

/// The key pair a client signs with. The secret half never prints.
pub struct Credentials {
    api_key: ApiKey,
    signer: Box<dyn Signer + Send + Sync>,
}

impl Credentials {
    pub fn new(api_key: ApiKey, signer: impl Signer + Send + Sync + 'static) -> Credentials {
        Credentials { api_key, signer: Box::new(signer) }
    }

    pub fn hmac(api_key: ApiKey, secret: &Secret) -> Credentials {
        Credentials::new(api_key, HmacSigner::new(secret))
    }

    /// An Ed25519 key pair from its PKCS#8 PEM private key.
    pub fn ed25519(api_key: ApiKey, private_key_pem: &Secret) -> Result<Credentials, KeyError> {
        Ok(Credentials::new(api_key, Ed25519Signer::from_pkcs8_pem(private_key_pem)?))
    }

    pub fn api_key(&self) -> &ApiKey {
        &self.api_key
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("api_key", &self.api_key)
            .field("signer", &"***")
            .finish()
    }
}

/// Binance-level settings of one client.
#[derive(Clone, Debug)]
pub struct RestConfig {
    /// Milliseconds after `timestamp` the server still accepts a signed request (max 60 000
    /// on spot). It also bounds how long an order of unknown fate can still turn up.
    pub recv_window_ms: u32,
    /// Percent of every limit only closes may use.
    pub reserve_pct: u8,
    /// The limits to pace against until exchangeInfo supplies Binance's own; `None` takes the
    /// documented defaults of the API family.
    pub limits: Option<Vec<Limit>>,
}

impl Default for RestConfig {
    fn default() -> RestConfig {
        RestConfig {
            recv_window_ms: 5_000,
            reserve_pct: super::limits::DEFAULT_RESERVE_PCT,
            limits: None,
        }
    }
}

/// Why a call produced no usable answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CallError {
    /// Not sent: the limiter (robsond's count, the last weight header, or a ban / `Retry-After`)
    /// allows nothing of this cost before `until_ms`, on the server's clock. `limit` is `None`
    /// for a ban or `Retry-After`.
    Throttled { until_ms: u64, limit: Option<Limit> },
    /// Not sent: costs more than a whole window of `Limit` allows, at this priority.
    TooCostly(Limit),
    /// Not sent: the endpoint needs credentials this client was not given.
    NoCredentials,
    /// Not sent: the endpoint does not exist in this client's API family, or a parameter it
    /// needs is missing.
    Unsupported(&'static str),
    /// Not sent: the server time needed to sign could not be read.
    ClockSync(Box<CallError>),
    /// No HTTP response.
    Transport(TransportError),
    /// Binance answered with an error, or a 2xx body that could not be read.
    Rest(RestError),
}

impl CallError {
    /// Whether the request may have executed: only then must an order be queried before
    /// anything else is sent for its position.
    pub fn outcome_unknown(&self) -> bool {
        match self {
            CallError::Transport(e) => e.maybe_sent(),
            CallError::Rest(e) => e.outcome_unknown(),
            CallError::Throttled { .. }
            | CallError::TooCostly(_)
            | CallError::NoCredentials
            | CallError::Unsupported(_)
            | CallError::ClockSync(_) => false,
        }
    }

    /// A refusal on rate-limit grounds (robsond's own, or Binance's 429/418), of the request
    /// or of the clock sync it needed: nothing executed, and the limiter knows when to try
    /// again.
    pub fn is_rate_limit(&self) -> bool {
        match self {
            CallError::Throttled { .. } => true,
            CallError::Rest(RestError::RateLimited { .. } | RestError::Banned { .. }) => true,
            CallError::Rest(e) => matches!(e.api(), Some(ApiError::TooManyRequests { .. })),
            CallError::ClockSync(inner) => inner.is_rate_limit(),
            _ => false,
        }
    }

    /// For a request the limiter kept back: until when (server clock), and which limit (`None`
    /// for a ban or `Retry-After`).
    pub fn held_until(&self) -> Option<(u64, Option<Limit>)> {
        match self {
            CallError::Throttled { until_ms, limit } => Some((*until_ms, *limit)),
            CallError::ClockSync(inner) => inner.held_until(),
            _ => None,
        }
    }

    /// Whether any request (this one, or the clock sync before it) reached the network.
    pub fn reached_server(&self) -> bool {
        match self {
            CallError::Transport(e) => e.maybe_sent(),
            CallError::Rest(_) => true,
            CallError::ClockSync(inner) => inner.reached_server(),
            CallError::Throttled { .. }
            | CallError::TooCostly(_)
            | CallError::NoCredentials
            | CallError::Unsupported(_) => false,
        }
    }

    pub fn rest(&self) -> Option<&RestError> {
        match self {
            CallError::Rest(e) => Some(e),
            _ => None,
        }
    }

    pub fn api(&self) -> Option<&ApiError> {
        self.rest().and_then(RestError::api)
    }
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::Throttled { until_ms, limit: Some(limit) } => {
                write!(f, "held by {:?} limit until {until_ms} ms", limit.kind)
            }
            CallError::Throttled { until_ms, limit: None } => {
                write!(f, "held by a ban or Retry-After until {until_ms} ms")
            }
            CallError::TooCostly(limit) => write!(f, "costs more than a window of {limit:?}"),
            CallError::NoCredentials => f.write_str("no credentials for a keyed endpoint"),
            CallError::Unsupported(what) => write!(f, "unsupported: {what}"),
            CallError::ClockSync(e) => write!(f, "server time unavailable: {e}"),
            CallError::Transport(e) => write!(f, "transport: {e}"),
            CallError::Rest(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for CallError {}

impl From<BodyError> for CallError {
    fn from(e: BodyError) -> CallError {
        CallError::Rest(RestError::Body(e))
    }
}

/// Margin `sideEffectType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SideEffect {
    NoSideEffect,
    /// Borrow what the order needs (an entry: quote for a long, base for a short).
    MarginBuy,
    /// Repay the loan from the proceeds (a close).
    AutoRepay,
}

impl SideEffect {
    fn as_str(self) -> &'static str {
        match self {
            SideEffect::NoSideEffect => "NO_SIDE_EFFECT",
            SideEffect::MarginBuy => "MARGIN_BUY",
            SideEffect::AutoRepay => "AUTO_REPAY",
        }
    }
}

/// The venue-specific parameters of a MARKET order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OrderFlags {
    /// `reduce_only` must be false in hedge mode, where `position_side` says what closes.
    Futures { position_side: PositionSide, reduce_only: bool },
    /// Always `isIsolated=TRUE`: robsond trades isolated margin only.
    IsolatedMargin { side_effect: SideEffect },
}

/// A MARKET order ready to send; the quantity is already text at the symbol's step decimals.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MarketOrder {
    pub symbol: Symbol,
    pub side: OrderSide,
    pub quantity: DecimalBuf,
    pub cid: ClientOrderId,
    pub flags: OrderFlags,
}

impl MarketOrder {
    /// The request parameters, unsigned, in the order they are sent.
    pub fn params(&self) -> Query {
        let mut q = Query::new();
        q.push("symbol", self.symbol.as_str());
        if let OrderFlags::IsolatedMargin { .. } = self.flags {
            q.push("isIsolated", "TRUE");
        }
        q.push("side", self.side.as_str());
        if let OrderFlags::Futures { position_side, .. } = self.flags {
            q.push("positionSide", position_side_str(position_side));
        }
        q.push("type", "MARKET");
        q.push("quantity", self.quantity.as_str());
        match self.flags {
            OrderFlags::Futures { reduce_only: true, .. } => {
                q.push("reduceOnly", "true");
            }
            OrderFlags::Futures { .. } => {}
            OrderFlags::IsolatedMargin { side_effect } => {
                q.push("sideEffectType", side_effect.as_str());
            }
        }
        q.push("newClientOrderId", self.cid.as_str());
        // RESULT: a MARKET order's answer is its final state (FILLED, or EXPIRED with what
        // filled), so the common case needs no user-stream event to conclude.
        q.push("newOrderRespType", "RESULT");
        q
    }
}

fn position_side_str(side: PositionSide) -> &'static str {
    match side {
        PositionSide::Both => "BOTH",
        PositionSide::Long => "LONG",
        PositionSide::Short => "SHORT",
    }
}

const fn weight(w: u32) -> Cost {
    Cost::request(w)
}

/// A signed, rate-limited Binance REST client for one API family and one base URL.
pub struct RestClient {
    http: HttpClient,
    api: Api,
    credentials: Option<Credentials>,
    clock: Arc<dyn Clock>,
    offset_ms: i64,
    synced: bool,
    last_rtt_ms: u64,
    recv_window_ms: u32,
    reserve_pct: u8,
    limiter: RateLimiter,
    last_timestamp_ms: u64,
}

impl fmt::Debug for RestClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RestClient")
            .field("api", &self.api)
            .field("base", &self.http.base_url())
            .field("credentials", &self.credentials)
            .field("offset_ms", &self.offset_ms)
            .field("synced", &self.synced)
            .field("recv_window_ms", &self.recv_window_ms)
            .field("blocked_until_ms", &self.limiter.blocked_until_ms())
            .finish()
    }
}

impl RestClient {
    pub fn new(
        api: Api,
        base_url: &str,
        http: &HttpConfig,
        config: &RestConfig,
        credentials: Option<Credentials>,
        clock: Arc<dyn Clock>,
    ) -> Result<RestClient, ClientError> {
        let http = HttpClient::new(base_url, http)?;
        let limits = config.limits.as_deref().unwrap_or(api.default_limits());
        Ok(RestClient {
            http,
            api,
            credentials,
            clock,
            offset_ms: 0,
            synced: false,
            last_rtt_ms: 0,
            recv_window_ms: config.recv_window_ms,
            reserve_pct: config.reserve_pct,
            limiter: RateLimiter::new(limits, config.reserve_pct),
            last_timestamp_ms: 0,
        })
    }

    pub fn api(&self) -> Api {
        self.api
    }

    pub fn http(&self) -> &HttpClient {
        &self.http
    }

    pub fn limiter(&self) -> &RateLimiter {
        &self.limiter
    }

    pub fn recv_window_ms(&self) -> u32 {
        self.recv_window_ms
    }

    /// Server minus local clock, as last measured (0 before the first sync).
    pub fn offset_ms(&self) -> i64 {
        self.offset_ms
    }

    pub fn is_synced(&self) -> bool {
        self.synced
    }

    /// The round trip of the last sync: the offset is good to half of it.
    pub fn last_sync_rtt_ms(&self) -> u64 {
        self.last_rtt_ms
    }

    pub fn local_now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    /// The server's clock now, as estimated.
    pub fn server_now_ms(&self) -> u64 {
        shift(self.clock.now_ms(), self.offset_ms)
    }

    /// A server time converted to the local clock.
    pub fn local_ms_of(&self, server_ms: u64) -> u64 {
        shift(server_ms, self.offset_ms.saturating_neg())
    }

    /// The `timestamp` of the last signed request sent.
    pub fn last_timestamp_ms(&self) -> u64 {
        self.last_timestamp_ms
    }

    /// Until when (server clock) a ban or `Retry-After` stops every request; 0 if none.
    pub fn blocked_until_ms(&self) -> u64 {
        self.limiter.blocked_until_ms()
    }

    /// Whether a request of `cost` could go now, without counting it.
    pub fn check(&self, cost: Cost, priority: Priority) -> Verdict {
        self.limiter.check(self.server_now_ms(), cost, priority)
    }

    /// Replaces the limits (exchangeInfo's `rateLimits` are authoritative), keeping what has
    /// been counted in windows that carry over, and any ban.
    pub fn apply_rate_limits(&mut self, limits: &[Limit]) {
        if limits.is_empty() {
            return;
        }
        let now = self.server_now_ms();
        let mut next = RateLimiter::new(limits, self.reserve_pct);
        next.block_until(self.limiter.blocked_until_ms());
        for limit in limits {
            if let Some(used) = self.limiter.used(now, limit.kind, limit.window_ms) {
                next.observe(now, limit.kind, limit.window_ms, used);
            }
        }
        self.limiter = next;
    }

    /// Measures the server-time offset from one `/time` round trip.
    pub fn sync_time(&mut self, priority: Priority) -> Result<i64, CallError> {
        let request = match self.api {
            Api::Futures => Request::new(Method::Get, "/fapi/v1/time", Security::Public, weight(1)),
            Api::Spot => Request::new(Method::Get, "/api/v3/time", Security::Public, weight(1)),
        };
        let sent = self.clock.now_ms();
        let mut body = self.send_once(&request, &Query::new(), priority)?;
        let received = self.clock.now_ms();
        let server = parse_server_time(&mut body)?;
        self.offset_ms = clock_offset_ms(sent, server, received);
        self.last_rtt_ms = received.saturating_sub(sent);
        self.synced = true;
        Ok(self.offset_ms)
    }

    /// Sends one request and returns the body of its 2xx answer. A signed request syncs the
    /// clock first if it never was, and after a -1021/-5028 resyncs and is sent once more: that
    /// refusal proves it did not execute.
    pub fn call(
        &mut self,
        request: &Request,
        params: &Query,
        priority: Priority,
    ) -> Result<Vec<u8>, CallError> {
        if request.security != Security::Public && self.credentials.is_none() {
            return Err(CallError::NoCredentials);
        }
        if request.security == Security::Signed && !self.synced {
            // No weight is spent on a sync for a request the limiter would hold anyway.
            match self.check(request.cost, priority) {
                Verdict::Send => {}
                Verdict::Wait { at_ms, limit } => {
                    return Err(CallError::Throttled { until_ms: at_ms, limit });
                }
                Verdict::TooCostly(limit) => return Err(CallError::TooCostly(limit)),
            }
            self.sync_time(priority).map_err(|e| CallError::ClockSync(Box::new(e)))?;
        }
        match self.send_once(request, params, priority) {
            Err(CallError::Rest(e))
                if request.security == Security::Signed
                    && matches!(e.api(), Some(ApiError::TimeSync { .. })) =>
            {
                self.sync_time(priority).map_err(|e| CallError::ClockSync(Box::new(e)))?;
                self.send_once(request, params, priority)
            }
            other => other,
        }
    }

    fn send_once(
        &mut self,
        request: &Request,
        params: &Query,
        priority: Priority,
    ) -> Result<Vec<u8>, CallError> {
        match self.limiter.acquire(self.server_now_ms(), request.cost, priority) {
            Verdict::Send => {}
            Verdict::Wait { at_ms, limit } => {
                return Err(CallError::Throttled { until_ms: at_ms, limit });
            }
            Verdict::TooCostly(limit) => return Err(CallError::TooCostly(limit)),
        }
        let signed;
        let (query, api_key) = match (request.security, &self.credentials) {
            (Security::Public, _) => (params.as_str(), None),
            (Security::ApiKey, Some(creds)) => (params.as_str(), Some(&creds.api_key)),
            (Security::Signed, Some(creds)) => {
                let timestamp = self.server_now_ms();
                self.last_timestamp_ms = timestamp;
                signed = params.clone().sign(creds.signer.as_ref(), self.recv_window_ms, timestamp);
                (signed.as_str(), Some(&creds.api_key))
            }
            (_, None) => return Err(CallError::NoCredentials),
        };
        let result = self.http.send(request.method, request.path, query, api_key);
        let now = self.server_now_ms();
        let response = result.map_err(CallError::Transport)?;
        if request.weight_header_reliable {
            self.limiter.observe_headers(now, response.header_pairs());
        } else {
            let orders_only = response
                .header_pairs()
                .filter(|(name, _)| name.to_ascii_lowercase().starts_with(b"x-mbx-order-count"));
            self.limiter.observe_headers(now, orders_only);
        }
        if let Err(error) =
            classify_response(response.status, response.header_pairs(), &response.body)
        {
            self.limiter.on_error(now, &error);
            return Err(CallError::Rest(error));
        }
        Ok(response.body)
    }

    fn family(&self, api: Api, what: &'static str) -> Result<(), CallError> {
        if self.api == api { Ok(()) } else { Err(CallError::Unsupported(what)) }
    }

    /// `GET /fapi/v1/ping` or `/api/v3/ping`: keeps a pooled connection warm.
    pub fn ping(&mut self) -> Result<(), CallError> {
        let path = match self.api {
            Api::Futures => "/fapi/v1/ping",
            Api::Spot => "/api/v3/ping",
        };
        let request = Request::new(Method::Get, path, Security::Public, weight(1));
        let mut body = self.call(&request, &Query::new(), Priority::Normal)?;
        Ok(parse_ping(&mut body)?)
    }

    /// The server's clock, without touching the stored offset.
    pub fn server_time(&mut self) -> Result<u64, CallError> {
        let path = match self.api {
            Api::Futures => "/fapi/v1/time",
            Api::Spot => "/api/v3/time",
        };
        let request = Request::new(Method::Get, path, Security::Public, weight(1));
        let mut body = self.call(&request, &Query::new(), Priority::Normal)?;
        Ok(parse_server_time(&mut body)?)
    }

    /// exchangeInfo, its `rateLimits` applied to the limiter. Spot is asked for `symbols`
    /// only (its full answer is megabytes); futures has no such filter and returns all.
    pub fn exchange_info(&mut self, symbols: &[Symbol]) -> Result<ExchangeInfo, CallError> {
        let mut params = Query::new();
        let (request, venue) = match self.api {
            Api::Futures => (
                Request::new(Method::Get, "/fapi/v1/exchangeInfo", Security::Public, weight(1)),
                engine::Venue::Usdm,
            ),
            Api::Spot => {
                if !symbols.is_empty() {
                    let list: Vec<String> =
                        symbols.iter().map(|s| format!("\"{}\"", s.as_str())).collect();
                    params.push("symbols", &format!("[{}]", list.join(",")));
                }
                (
                    Request::new(Method::Get, "/api/v3/exchangeInfo", Security::Public, weight(20)),
                    engine::Venue::Margin,
                )
            }
        };
        let mut body = self.call(&request, &params, Priority::Normal)?;
        let info = parse_exchange_info(&mut body, venue)?;
        self.apply_rate_limits(&info.rate_limits);
        Ok(info)
    }

    /// A MARKET order: futures `POST /fapi/v1/order`, margin `POST /sapi/v1/margin/order`.
    pub fn place_market_order(
        &mut self,
        order: &MarketOrder,
        priority: Priority,
    ) -> Result<OrderReport, CallError> {
        let request = match (self.api, order.flags) {
            (Api::Futures, OrderFlags::Futures { .. }) => {
                Request::new(Method::Post, "/fapi/v1/order", Security::Signed, Cost::order(0))
            }
            (Api::Spot, OrderFlags::IsolatedMargin { .. }) => Request::new(
                Method::Post,
                "/sapi/v1/margin/order",
                Security::Signed,
                Cost::order(6),
            ),
            _ => return Err(CallError::Unsupported("order flags of another API family")),
        };
        let mut body = self.call(&request, &order.params(), priority)?;
        Ok(parse_order(&mut body)?)
    }

    /// An order by client id (`origClientOrderId`).
    pub fn query_order(
        &mut self,
        symbol: Symbol,
        cid: ClientOrderId,
        priority: Priority,
    ) -> Result<OrderReport, CallError> {
        let mut params = Query::new();
        params.push("symbol", symbol.as_str());
        let request = match self.api {
            Api::Futures => {
                Request::new(Method::Get, "/fapi/v1/order", Security::Signed, weight(1))
            }
            Api::Spot => {
                params.push("isIsolated", "TRUE");
                Request::new(Method::Get, "/sapi/v1/margin/order", Security::Signed, weight(10))
            }
        };
        params.push("origClientOrderId", cid.as_str());
        let mut body = self.call(&request, &params, priority)?;
        Ok(parse_order(&mut body)?)
    }

    /// Open orders: futures for one symbol or all; isolated margin needs the symbol.
    pub fn open_orders(&mut self, symbol: Option<Symbol>) -> Result<Vec<OrderReport>, CallError> {
        let mut params = Query::new();
        let request = match (self.api, symbol) {
            (Api::Futures, Some(symbol)) => {
                params.push("symbol", symbol.as_str());
                Request::new(Method::Get, "/fapi/v1/openOrders", Security::Signed, weight(1))
            }
            (Api::Futures, None) => {
                Request::new(Method::Get, "/fapi/v1/openOrders", Security::Signed, weight(40))
            }
            (Api::Spot, Some(symbol)) => {
                params.push("symbol", symbol.as_str());
                params.push("isIsolated", "TRUE");
                Request::new(
                    Method::Get,
                    "/sapi/v1/margin/openOrders",
                    Security::Signed,
                    weight(10),
                )
            }
            (Api::Spot, None) => {
                return Err(CallError::Unsupported("isolated-margin open orders need a symbol"));
            }
        };
        let mut body = self.call(&request, &params, Priority::Normal)?;
        Ok(parse_orders(&mut body)?)
    }

    /// `GET /fapi/v3/positionRisk` (only symbols with a position or open orders).
    pub fn position_risk(&mut self, symbol: Option<Symbol>) -> Result<PositionRisks, CallError> {
        self.family(Api::Futures, "positionRisk is a futures endpoint")?;
        let mut params = Query::new();
        if let Some(symbol) = symbol {
            params.push("symbol", symbol.as_str());
        }
        let request =
            Request::new(Method::Get, "/fapi/v3/positionRisk", Security::Signed, weight(5));
        let mut body = self.call(&request, &params, Priority::Normal)?;
        Ok(parse_position_risk(&mut body)?)
    }

    /// `GET /sapi/v1/margin/isolated/account`, for up to five `symbols` (all pairs when none
    /// or more are given).
    pub fn isolated_margin_account(
        &mut self,
        symbols: &[Symbol],
    ) -> Result<IsolatedMarginAccount, CallError> {
        self.family(Api::Spot, "the isolated-margin account is a spot-host endpoint")?;
        let mut params = Query::new();
        if (1..=5).contains(&symbols.len()) {
            let list: Vec<&str> = symbols.iter().map(Symbol::as_str).collect();
            params.push("symbols", &list.join(","));
        }
        let request = Request::new(
            Method::Get,
            "/sapi/v1/margin/isolated/account",
            Security::Signed,
            weight(10),
        );
        let mut body = self.call(&request, &params, Priority::Normal)?;
        Ok(parse_isolated_margin_account(&mut body)?)
    }

    /// `GET /sapi/v1/margin/myTrades` for one isolated pair, oldest first, from `from_id` (None:
    /// the most recent page): the fills margin entries are derived from.
    pub fn margin_trades(
        &mut self,
        symbol: Symbol,
        from_id: Option<u64>,
    ) -> Result<Vec<MarginTradeRow>, CallError> {
        self.family(Api::Spot, "margin trades are a spot-host endpoint")?;
        let mut params = Query::new();
        params.push("symbol", symbol.as_str());
        params.push("isIsolated", "TRUE");
        if let Some(id) = from_id {
            params.push("fromId", &id.to_string());
        }
        params.push("limit", "1000");
        let request =
            Request::new(Method::Get, "/sapi/v1/margin/myTrades", Security::Signed, weight(10));
        let mut body = self.call(&request, &params, Priority::Normal)?;
        Ok(parse_margin_trades(&mut body)?)
    }

    fn listen_key_request(&self, method: Method) -> Result<Request, CallError> {
        self.family(Api::Futures, "listen keys are used on futures only")?;
        Ok(Request::new(method, "/fapi/v1/listenKey", Security::ApiKey, weight(1)))
    }

    /// `POST /fapi/v1/listenKey`: the account's key (an active one is returned and extended).
    pub fn create_listen_key(&mut self) -> Result<ListenKey, CallError> {
        let request = self.listen_key_request(Method::Post)?;
        let mut body = self.call(&request, &Query::new(), Priority::Normal)?;
        Ok(parse_listen_key(&mut body)?)
    }

    /// `PUT /fapi/v1/listenKey`: another 60 minutes. -1125 means the key is gone.
    pub fn keepalive_listen_key(&mut self) -> Result<(), CallError> {
        let request = self.listen_key_request(Method::Put)?;
        self.call(&request, &Query::new(), Priority::Normal).map(|_| ())
    }

    /// `DELETE /fapi/v1/listenKey`.
    pub fn close_listen_key(&mut self) -> Result<(), CallError> {
        let request = self.listen_key_request(Method::Delete)?;
        self.call(&request, &Query::new(), Priority::Normal).map(|_| ())
    }

    /// `POST /sapi/v1/userListenToken` for one isolated pair; `validity_ms` defaults to (and is
    /// capped at) Binance's 24 h. Documented as USER_STREAM: API key, no signature.
    pub fn create_listen_token(
        &mut self,
        symbol: Symbol,
        validity_ms: Option<u64>,
    ) -> Result<ListenToken, CallError> {
        self.family(Api::Spot, "listen tokens are a margin endpoint")?;
        let mut params = Query::new();
        params.push("symbol", symbol.as_str());
        params.push("isIsolated", "true");
        if let Some(ms) = validity_ms {
            params.push_u64("validity", ms);
        }
        let request =
            Request::new(Method::Post, "/sapi/v1/userListenToken", Security::ApiKey, weight(1));
        let mut body = self.call(&request, &params, Priority::Normal)?;
        Ok(parse_listen_token(&mut body)?)
    }

    /// `GET /fapi/v1/premiumIndex?symbol=`: the mark price, for the stale-stream fallback.
    pub fn mark_price(&mut self, symbol: Symbol) -> Result<MarkPrice, CallError> {
        self.family(Api::Futures, "mark price is a futures endpoint")?;
        let mut params = Query::new();
        params.push("symbol", symbol.as_str());
        let request =
            Request::new(Method::Get, "/fapi/v1/premiumIndex", Security::Public, weight(1));
        let mut body = self.call(&request, &params, Priority::Normal)?;
        Ok(parse_mark_price(&mut body)?)
    }

    /// `GET …/ticker/bookTicker?symbol=`: best bid and ask.
    pub fn book_ticker(&mut self, symbol: Symbol) -> Result<BookTicker, CallError> {
        let mut params = Query::new();
        params.push("symbol", symbol.as_str());
        let request = match self.api {
            Api::Futures => Request {
                weight_header_reliable: false,
                ..Request::new(
                    Method::Get,
                    "/fapi/v1/ticker/bookTicker",
                    Security::Public,
                    weight(2),
                )
            },
            Api::Spot => {
                Request::new(Method::Get, "/api/v3/ticker/bookTicker", Security::Public, weight(2))
            }
        };
        let mut body = self.call(&request, &params, Priority::Normal)?;
        Ok(parse_book_ticker(&mut body)?)
    }

    /// `GET …/ticker/price?symbol=`: the last trade price.
    pub fn last_price(&mut self, symbol: Symbol) -> Result<LastPrice, CallError> {
        let mut params = Query::new();
        params.push("symbol", symbol.as_str());
        let request = match self.api {
            Api::Futures => Request {
                weight_header_reliable: false,
                ..Request::new(Method::Get, "/fapi/v1/ticker/price", Security::Public, weight(1))
            },
            Api::Spot => {
                Request::new(Method::Get, "/api/v3/ticker/price", Security::Public, weight(2))
            }
        };
        let mut body = self.call(&request, &params, Priority::Normal)?;
        Ok(parse_last_price(&mut body)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_is_taken_at_the_round_trip_midpoint() {
        assert_eq!(clock_offset_ms(1_000, 1_600, 1_200), 500);
        assert_eq!(clock_offset_ms(1_000, 900, 1_000), -100);
        // A clock that stepped back during the round trip counts as a zero round trip.
        assert_eq!(clock_offset_ms(1_000, 1_500, 900), 500);
        assert_eq!(shift(100, -200), 0);
    }

    #[test]
    fn base_urls_are_validated_and_plain_http_is_loopback_only() {
        for ok in [
            "https://fapi.binance.com",
            "https://api.binance.com/",
            "http://127.0.0.1:8080",
            "http://localhost:9",
            "http://[::1]:80",
            "https://[2001:db8::1]:443",
            "http://127.3.4.5",
        ] {
            assert!(BaseUrl::parse(ok).is_ok(), "{ok}");
        }
        for (bad, why) in [
            ("http://fapi.binance.com", ClientError::PlainHttpNotLoopback),
            ("http://10.0.0.1:80", ClientError::PlainHttpNotLoopback),
            ("http://[2001:db8::1]", ClientError::PlainHttpNotLoopback),
            ("http://127.0.0.1.nip.io", ClientError::PlainHttpNotLoopback),
            ("http://localhost.evil.com", ClientError::PlainHttpNotLoopback),
        ] {
            assert_eq!(BaseUrl::parse(bad), Err(why), "{bad}");
        }
        for bad in [
            "ftp://x",
            "fapi.binance.com",
            "https://",
            "https://host/path",
            "https://user@host",
            "https://host:",
            "https://host:99999",
            "https://ho st",
            "http://127.0.0.1@evil.com",
        ] {
            assert!(matches!(BaseUrl::parse(bad), Err(ClientError::BadUrl(_))), "{bad}");
        }
    }
}
