//! The REST endpoints robsond uses, for both venues: routing, request weight and the 429 → 418
//! escalation, API-key / signature / timestamp checks exactly as Binance documents them, REST
//! faults, and the response bodies (fixtures `futures_*_response`, `margin_*`, `exchangeInfo_*`).
//!
//! Parses parameters and renders bodies; the decisions about orders belong to `exchange`.

use std::time::{Duration, Instant};

use base64::Engine as _;
use engine::money::{DecimalError, Price, Qty};
use engine::types::{OrderSide, Symbol, Venue};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::config::{KeyAuth, SimConfig};
use crate::exchange::{
    ApiErr, Exchange, Kind, NewOrder, Order, OrderSource, Outbox, RespType, SideEffect, Status,
    TimeInForce,
};
use crate::http::{Request, Response};
use crate::json::{Obj, array, dec, dec8, mul};
use crate::{RestFailure, Shared, lock, now_ms};

/// Which host a request came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Port {
    Usdm,
    Spot,
}

/// One REST request as the simulator saw it: for tests that count calls. Holds no parameters
/// (they may carry keys).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestRecord {
    pub method: String,
    pub path: String,
    pub status: u16,
    /// Binance's error code, when the answer was an error body.
    pub code: Option<i64>,
}

/// What the connection should do with a request.
pub(crate) enum Reply {
    Respond(Response),
    /// Leave the request unanswered for this long, then close the connection.
    HoldThenDrop(Duration),
}

// ---- parameters ----

pub(crate) struct Params {
    pairs: Vec<(String, String)>,
}

fn percent_decode(raw: &str, plus_is_space: bool) -> Option<String> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = raw.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

impl Params {
    /// Query first: on a duplicate key the query string wins, as Binance documents.
    fn parse(query: &str, body: &str) -> Result<Params, ApiErr> {
        let mut pairs = Vec::new();
        for (text, form) in [(query, false), (body, true)] {
            for part in text.split('&').filter(|p| !p.is_empty()) {
                let (k, v) = part.split_once('=').unwrap_or((part, ""));
                let (Some(k), Some(v)) = (percent_decode(k, form), percent_decode(v, form)) else {
                    return Err(ApiErr::new(-1100, "Illegal characters found in a parameter."));
                };
                pairs.push((k, v));
            }
        }
        Ok(Params { pairs })
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.pairs.iter().find(|(k, v)| k == key && !v.is_empty()).map(|(_, v)| v.as_str())
    }

    fn need(&self, key: &str) -> Result<&str, ApiErr> {
        self.get(key).ok_or_else(|| mandatory(key))
    }

    fn symbol(&self) -> Result<Symbol, ApiErr> {
        Symbol::new(self.need("symbol")?.as_bytes()).map_err(|_| invalid_symbol())
    }

    fn opt_symbol(&self) -> Result<Option<Symbol>, ApiErr> {
        self.get("symbol")
            .map(|s| Symbol::new(s.as_bytes()).map_err(|_| invalid_symbol()))
            .transpose()
    }

    fn opt_u64(&self, key: &str) -> Result<Option<u64>, ApiErr> {
        self.get(key)
            .map(|v| {
                if v.bytes().all(|b| b.is_ascii_digit()) {
                    v.parse::<u64>().map_err(|_| illegal(key))
                } else {
                    Err(illegal(key))
                }
            })
            .transpose()
    }

    fn flag(&self, key: &str) -> Result<Option<bool>, ApiErr> {
        match self.get(key) {
            None => Ok(None),
            Some(v) if v.eq_ignore_ascii_case("true") => Ok(Some(true)),
            Some(v) if v.eq_ignore_ascii_case("false") => Ok(Some(false)),
            Some(_) => Err(illegal(key)),
        }
    }
}

fn mandatory(key: &str) -> ApiErr {
    ApiErr::new(
        -1102,
        format!("Mandatory parameter '{key}' was not sent, was empty/null, or malformed."),
    )
}

fn illegal(key: &str) -> ApiErr {
    ApiErr::new(-1100, format!("Illegal characters found in parameter '{key}'."))
}

fn invalid_symbol() -> ApiErr {
    ApiErr::new(-1121, "Invalid symbol.")
}

/// A decimal parameter: its value and significant fractional digits.
fn decimal(params: &Params, key: &str) -> Result<(i64, u32), ApiErr> {
    let text = params.need(key)?;
    match engine::money::parse_units(text.as_bytes()) {
        Ok(units) => Ok((units, engine::money::decimals_of_step(units))),
        Err(DecimalError::TooPrecise) => {
            Err(ApiErr::new(-1111, "Precision is over the maximum defined for this asset."))
        }
        Err(_) => Err(ApiErr::new(
            -1100,
            format!(
                "Illegal characters found in parameter '{key}'; legal range is '^([0-9]{{1,20}})(\\.[0-9]{{1,20}})?$'."
            ),
        )),
    }
}

// ---- limits ----

struct Window {
    start: Instant,
    used: u32,
    over: u32,
    banned_until: Option<Instant>,
    orders: Vec<Instant>,
}

pub(crate) struct Limits {
    usdm: Window,
    spot: Window,
}

impl Limits {
    pub(crate) fn new(now: Instant) -> Limits {
        let w = || Window { start: now, used: 0, over: 0, banned_until: None, orders: Vec::new() };
        Limits { usdm: w(), spot: w() }
    }

    fn window(&mut self, port: Port) -> &mut Window {
        match port {
            Port::Usdm => &mut self.usdm,
            Port::Spot => &mut self.spot,
        }
    }
}

fn retry_after_secs(until: Instant, now: Instant) -> u64 {
    until.saturating_duration_since(now).as_secs_f64().ceil().max(1.0) as u64
}

/// Counts `weight`; a 429 or 418 when the IP is over its limit or banned.
fn charge(shared: &Shared, port: Port, weight: u32, now: Instant) -> Result<u32, Response> {
    let cfg = &shared.cfg;
    let limit = match port {
        Port::Usdm => cfg.usdm_weight_limit,
        Port::Spot => cfg.spot_weight_limit,
    };
    let mut limits = lock(&shared.limits);
    let w = limits.window(port);
    if let Some(until) = w.banned_until {
        if until > now {
            return Err(banned(until, now));
        }
        // Binance's bans outlast its windows: the weight has long been reset when one ends.
        w.banned_until = None;
        w.start = now;
        w.used = 0;
        w.over = 0;
    }
    if now.duration_since(w.start) >= cfg.weight_window {
        w.start = now;
        w.used = 0;
        w.over = 0;
    }
    w.used = w.used.saturating_add(weight);
    if w.used > limit {
        w.over += 1;
        if w.over > cfg.ban_after_429s {
            let until = now + cfg.ban_duration;
            w.banned_until = Some(until);
            return Err(banned(until, now));
        }
        let retry = retry_after_secs(w.start + cfg.weight_window, now);
        let body = ApiErr::new(
            -1003,
            "Too many requests; current limit of IP is exceeded. Please use WebSocket Streams for live updates to avoid polling the API.",
        )
        .body();
        return Err(Response::json(429, body)
            .header("Retry-After", retry)
            .header("X-MBX-USED-WEIGHT-1M", w.used));
    }
    Ok(w.used)
}

fn banned(until: Instant, now: Instant) -> Response {
    let until_ms = now_ms() + until.saturating_duration_since(now).as_millis() as u64;
    let body = ApiErr::new(
        -1003,
        format!("Way too much request weight used; IP banned until {until_ms}. Please use WebSocket Streams for live updates to avoid bans."),
    )
    .body();
    Response::json(418, body).header("Retry-After", retry_after_secs(until, now))
}

fn count_order(shared: &Shared, port: Port, now: Instant) -> Vec<(String, usize)> {
    let mut limits = lock(&shared.limits);
    let w = limits.window(port);
    w.orders.retain(|t| now.duration_since(*t) < Duration::from_secs(86_400));
    w.orders.push(now);
    let within = |d: Duration| w.orders.iter().filter(|t| now.duration_since(**t) < d).count();
    let ten = within(Duration::from_secs(10));
    match port {
        Port::Usdm => vec![
            ("X-MBX-ORDER-COUNT-10S".into(), ten),
            ("X-MBX-ORDER-COUNT-1M".into(), within(Duration::from_secs(60))),
        ],
        Port::Spot => vec![
            ("X-MBX-ORDER-COUNT-10S".into(), ten),
            ("X-MBX-ORDER-COUNT-1D".into(), w.orders.len()),
        ],
    }
}

// ---- authentication ----

#[derive(Clone, Copy, PartialEq, Eq)]
enum Security {
    None,
    /// USER_STREAM: the API key only.
    Key,
    /// TRADE / USER_DATA: key, timestamp, signature.
    Signed,
}

/// `totalParams` without the `signature` pair, and the signature's raw (still encoded) text.
fn split_signature(query: &str, body: &str) -> (String, Option<String>) {
    let mut signature = None;
    let mut strip = |text: &str| -> String {
        let mut kept = Vec::new();
        for part in text.split('&') {
            match part.strip_prefix("signature=") {
                Some(sig) if signature.is_none() => signature = Some(sig.to_owned()),
                _ => kept.push(part),
            }
        }
        kept.join("&")
    };
    let q = strip(query);
    let b = strip(body);
    // totalParams is the query string concatenated with the body, without a separator.
    (format!("{q}{b}"), signature)
}

fn verify(auth: &KeyAuth, payload: &str, signature: &str) -> bool {
    match auth {
        KeyAuth::Hmac { secret } => {
            let Ok(sig) = hex::decode(signature) else { return false };
            let Ok(mut mac) = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes()) else {
                return false;
            };
            mac.update(payload.as_bytes());
            mac.verify_slice(&sig).is_ok()
        }
        KeyAuth::Ed25519 { public_key } => {
            let Some(b64) = percent_decode(signature, false) else { return false };
            let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(b64.as_bytes()) else {
                return false;
            };
            let Ok(bytes) = <[u8; 64]>::try_from(bytes.as_slice()) else { return false };
            let Ok(key) = ed25519_dalek::VerifyingKey::from_bytes(public_key) else {
                return false;
            };
            let sig = ed25519_dalek::Signature::from_bytes(&bytes);
            key.verify_strict(payload.as_bytes(), &sig).is_ok()
        }
    }
}

/// The API key a request authenticated with.
fn authenticate(
    cfg: &SimConfig,
    security: Security,
    req: &Request,
    params: &Params,
) -> Result<Option<String>, ApiErr> {
    if security == Security::None {
        return Ok(None);
    }
    let Some(api_key) = req.header("X-MBX-APIKEY").filter(|k| !k.is_empty()) else {
        return Err(ApiErr::with_status(401, -2014, "API-key format invalid."));
    };
    let Some(spec) = cfg.api_keys.iter().find(|k| k.api_key == api_key) else {
        return Err(ApiErr::with_status(
            401,
            -2015,
            "Invalid API-key, IP, or permissions for action.",
        ));
    };
    if security == Security::Key {
        return Ok(Some(spec.api_key.clone()));
    }
    let timestamp = params.need("timestamp")?;
    let timestamp: i64 = timestamp.parse().map_err(|_| mandatory("timestamp"))?;
    let recv_window = match params.get("recvWindow") {
        Some(v) => v.parse::<i64>().map_err(|_| illegal("recvWindow"))?,
        None => 5000,
    };
    if !(0..=60_000).contains(&recv_window) {
        return Err(ApiErr::new(-1131, "recvWindow must be less than 60000"));
    }
    let (payload, signature) = split_signature(&req.query, &req.body);
    let Some(signature) = signature.filter(|s| !s.is_empty()) else {
        return Err(mandatory("signature"));
    };
    if !verify(&spec.auth, &payload, &signature) {
        return Err(ApiErr::new(-1022, "Signature for this request is not valid."));
    }
    let server = now_ms() as i64;
    if timestamp >= server + 1000 {
        return Err(ApiErr::new(
            -1021,
            "Timestamp for this request was 1000ms ahead of the server's time.",
        ));
    }
    if server - timestamp > recv_window {
        return Err(ApiErr::new(-1021, "Timestamp for this request is outside of the recvWindow."));
    }
    Ok(Some(spec.api_key.clone()))
}

// ---- routing ----

type Handler = fn(&Shared, &Ctx, &Params) -> Result<String, ApiErr>;

struct Endpoint {
    security: Security,
    /// Weight with and without a `symbol` parameter.
    weight: (u32, u32),
    places_order: bool,
    handler: Handler,
}

fn endpoint(port: Port, method: &str, path: &str) -> Option<Endpoint> {
    use Security::{Key, None as Open, Signed};
    let e = |security, weight, handler: Handler| Endpoint {
        security,
        weight,
        places_order: false,
        handler,
    };
    Some(match (port, method, path) {
        (Port::Usdm, "GET", "/fapi/v1/ping") | (Port::Spot, "GET", "/api/v3/ping") => {
            e(Open, (1, 1), |_, _, _| Ok("{}".into()))
        }
        (Port::Usdm, "GET", "/fapi/v1/time") | (Port::Spot, "GET", "/api/v3/time") => {
            e(Open, (1, 1), |_, _, _| Ok(Obj::new().uint("serverTime", now_ms()).end()))
        }
        (Port::Usdm, "GET", "/fapi/v1/exchangeInfo") => e(Open, (1, 1), usdm_exchange_info),
        (Port::Spot, "GET", "/api/v3/exchangeInfo") => e(Open, (20, 20), spot_exchange_info),
        (Port::Usdm, "POST", "/fapi/v1/order") => Endpoint {
            security: Signed,
            weight: (0, 0),
            places_order: true,
            handler: usdm_new_order,
        },
        (Port::Usdm, "GET", "/fapi/v1/order") => e(Signed, (1, 1), usdm_query_order),
        (Port::Usdm, "DELETE", "/fapi/v1/order") => e(Signed, (1, 1), usdm_cancel_order),
        (Port::Usdm, "GET", "/fapi/v1/openOrders") => e(Signed, (1, 40), usdm_open_orders),
        (Port::Usdm, "GET", "/fapi/v3/positionRisk") => e(Signed, (5, 5), position_risk_v3),
        (Port::Usdm, "GET", "/fapi/v2/positionRisk") => e(Signed, (10, 10), position_risk_v2),
        (Port::Usdm, "GET", "/fapi/v1/premiumIndex") => e(Open, (1, 10), premium_index),
        (Port::Usdm, "GET", "/fapi/v1/ticker/bookTicker") => e(Open, (2, 5), usdm_book_ticker),
        (Port::Usdm, "GET", "/fapi/v1/ticker/price") => e(Open, (1, 2), usdm_ticker_price),
        (Port::Usdm, "POST", "/fapi/v1/listenKey") => e(Key, (1, 1), listen_key_create),
        (Port::Usdm, "PUT", "/fapi/v1/listenKey") => e(Key, (1, 1), listen_key_keepalive),
        (Port::Usdm, "DELETE", "/fapi/v1/listenKey") => e(Key, (1, 1), listen_key_delete),
        (Port::Spot, "GET", "/api/v3/ticker/bookTicker") => e(Open, (2, 4), spot_book_ticker),
        (Port::Spot, "GET", "/api/v3/ticker/price") => e(Open, (2, 4), spot_ticker_price),
        (Port::Spot, "POST", "/sapi/v1/userListenToken") => e(Key, (1, 1), listen_token_create),
        (Port::Spot, "POST", "/sapi/v1/margin/order") => Endpoint {
            security: Signed,
            weight: (6, 6),
            places_order: true,
            handler: margin_new_order,
        },
        (Port::Spot, "GET", "/sapi/v1/margin/order") => e(Signed, (10, 10), margin_query_order),
        (Port::Spot, "DELETE", "/sapi/v1/margin/order") => e(Signed, (10, 10), margin_cancel_order),
        (Port::Spot, "GET", "/sapi/v1/margin/openOrders") => {
            e(Signed, (10, 10), margin_open_orders)
        }
        (Port::Spot, "GET", "/sapi/v1/margin/isolated/account") => {
            e(Signed, (10, 10), isolated_account)
        }
        (Port::Spot, "GET", "/sapi/v1/margin/myTrades") => e(Signed, (10, 10), margin_trades),
        _ => return None,
    })
}

/// What a handler knows about the request besides its parameters.
struct Ctx {
    api_key: Option<String>,
    now: Instant,
}

/// Answers one request (see `Reply`).
pub(crate) fn handle(shared: &Shared, port: Port, req: &Request) -> Reply {
    let reply = respond(shared, port, req);
    let (status, code) = match &reply {
        Reply::Respond(r) => (r.status, error_code(&r.body)),
        Reply::HoldThenDrop(_) => (0, None),
    };
    lock(&shared.rest_log).push(RestRecord {
        method: req.method.clone(),
        path: req.path.clone(),
        status,
        code,
    });
    reply
}

fn error_code(body: &str) -> Option<i64> {
    let value: serde_json::Value = serde_json::from_str(body).ok()?;
    value.as_object()?.get("code")?.as_i64()
}

fn respond(shared: &Shared, port: Port, req: &Request) -> Reply {
    let Some(ep) = endpoint(port, &req.method, &req.path) else {
        let body = ApiErr::new(-5000, format!("{} {} is invalid.", req.method, req.path)).body();
        return Reply::Respond(Response::json(404, body));
    };
    let mut after: Option<RestFailure> = None;
    for action in shared.take_rest_faults(&req.path) {
        match action {
            crate::RestAction::Delay(d) => std::thread::sleep(d),
            crate::RestAction::Fail(f) => match f {
                RestFailure::RejectBefore { status } => {
                    let msg = if status == 503 {
                        "Service Unavailable."
                    } else {
                        "An unknown error occurred while processing the request."
                    };
                    let code = if status == 503 { -1001 } else { -1000 };
                    return Reply::Respond(Response::json(status, ApiErr::new(code, msg).body()));
                }
                RestFailure::TooManyRequests => {
                    let body =
                        ApiErr::new(-1003, "Too many requests; current limit of IP is exceeded.")
                            .body();
                    return Reply::Respond(Response::json(429, body).header("Retry-After", 1));
                }
                RestFailure::Banned => {
                    let now = Instant::now();
                    return Reply::Respond(banned(now + shared.cfg.ban_duration, now));
                }
                other => after = Some(other),
            },
        }
    }
    let now = Instant::now();
    let params = match Params::parse(&req.query, &req.body) {
        Ok(p) => p,
        Err(e) => return Reply::Respond(error(e)),
    };
    let weight = if params.get("symbol").is_some() { ep.weight.0 } else { ep.weight.1 };
    let used = match charge(shared, port, weight, now) {
        Ok(used) => used,
        Err(resp) => return Reply::Respond(resp),
    };
    let api_key = match authenticate(&shared.cfg, ep.security, req, &params) {
        Ok(k) => k,
        Err(e) => return Reply::Respond(error(e).header("X-MBX-USED-WEIGHT-1M", used)),
    };
    let ctx = Ctx { api_key, now };
    let result = (ep.handler)(shared, &ctx, &params);
    let mut resp = match result {
        Ok(body) => Response::json(200, body),
        Err(e) => error(e),
    };
    resp = resp.header("X-MBX-USED-WEIGHT-1M", used);
    if ep.places_order && resp.status == 200 {
        for (name, count) in count_order(shared, port, now) {
            resp = resp.header(&name, count);
        }
    }
    match after {
        Some(RestFailure::ExecuteThen503) => {
            let body =
                ApiErr::new(-1000, "Unknown error, please check your request or try again later.")
                    .body();
            Reply::Respond(Response::json(503, body))
        }
        Some(RestFailure::ExecuteThenTimeout { hold }) => Reply::HoldThenDrop(hold),
        _ => Reply::Respond(resp),
    }
}

fn error(e: ApiErr) -> Response {
    Response::json(e.status, e.body())
}

// ---- general ----

fn rate_limits(cfg: &SimConfig, port: Port) -> String {
    let limit = |kind: &str, interval: &str, num: u64, limit: u64| {
        Obj::new()
            .str("rateLimitType", kind)
            .str("interval", interval)
            .uint("intervalNum", num)
            .uint("limit", limit)
            .end()
    };
    match port {
        Port::Usdm => array([
            limit("REQUEST_WEIGHT", "MINUTE", 1, u64::from(cfg.usdm_weight_limit)),
            limit("ORDERS", "MINUTE", 1, 1200),
            limit("ORDERS", "SECOND", 10, 300),
        ]),
        Port::Spot => array([
            limit("REQUEST_WEIGHT", "MINUTE", 1, u64::from(cfg.spot_weight_limit)),
            limit("ORDERS", "SECOND", 10, 50),
            limit("ORDERS", "DAY", 1, 160_000),
            limit("RAW_REQUESTS", "MINUTE", 5, 61_000),
        ]),
    }
}

/// The futures exchangeInfo, in the real response's field order (fixture
/// `exchangeInfo_futures_BTCUSDT_excerpt.json`).
fn usdm_exchange_info(shared: &Shared, _: &Ctx, _: &Params) -> Result<String, ApiErr> {
    let ex = shared.ex();
    let symbols = ex.markets.values().filter(|m| m.venue == Venue::Usdm).map(|m| {
        let r = m.rules;
        let p = |u: Price| m.price_text(u.units());
        let q = |u: Qty| m.qty_text(u.units());
        let filters = array([
            Obj::new()
                .str("minPrice", &p(r.min_price))
                .str("maxPrice", &p(r.max_price))
                .str("filterType", "PRICE_FILTER")
                .str("tickSize", &p(r.tick))
                .end(),
            Obj::new()
                .str("stepSize", &q(r.step))
                .str("filterType", "LOT_SIZE")
                .str("maxQty", &q(r.max_qty))
                .str("minQty", &q(r.min_qty))
                .end(),
            Obj::new()
                .str("stepSize", &q(r.step))
                .str("filterType", "MARKET_LOT_SIZE")
                .str("maxQty", &q(r.market_max_qty))
                .str("minQty", &q(r.min_qty))
                .end(),
            Obj::new().int("limit", 200).str("filterType", "MAX_NUM_ORDERS").end(),
            Obj::new().int("limit", 10).str("filterType", "MAX_NUM_ALGO_ORDERS").end(),
            Obj::new()
                .str("notional", &dec(r.min_notional.units(), 0))
                .str("filterType", "MIN_NOTIONAL")
                .end(),
            Obj::new()
                .str("multiplierDown", "0.9500")
                .str("multiplierUp", "1.0500")
                .str("multiplierDecimal", "4")
                .str("filterType", "PERCENT_PRICE")
                .end(),
        ]);
        let decimals = |u: i64| u64::from(engine::money::decimals_of_step(u));
        Obj::new()
            .str("symbol", m.symbol.as_str())
            .str("pair", m.symbol.as_str())
            .str("contractType", "PERPETUAL")
            .uint("deliveryDate", 4_133_404_800_000)
            .uint("onboardDate", 1_569_398_400_000)
            .str("status", "TRADING")
            .str("maintMarginPercent", "2.5000")
            .str("requiredMarginPercent", "5.0000")
            .str("baseAsset", &m.base)
            .str("quoteAsset", &m.quote)
            .str("marginAsset", &m.quote)
            .uint("pricePrecision", decimals(r.tick.units()))
            .uint("quantityPrecision", decimals(r.step.units()))
            .uint("baseAssetPrecision", 8)
            .uint("quotePrecision", 8)
            .str("underlyingType", "COIN")
            .raw("underlyingSubType", "[]")
            .uint("settlePlan", 0)
            .str("triggerProtect", "0.0500")
            .str("liquidationFee", "0.012500")
            .str("marketTakeBound", "0.05")
            .raw("filters", &filters)
            .raw(
                "orderTypes",
                r#"["LIMIT","MARKET","STOP","STOP_MARKET","TAKE_PROFIT","TAKE_PROFIT_MARKET","TRAILING_STOP_MARKET"]"#,
            )
            .raw("timeInForce", r#"["GTC","IOC","FOK","GTX","GTD"]"#)
            .end()
    });
    let symbols = array(symbols.collect::<Vec<_>>());
    Ok(Obj::new()
        .str("timezone", "UTC")
        .uint("serverTime", now_ms())
        .str("futuresType", "U_MARGINED")
        .raw("rateLimits", &rate_limits(&shared.cfg, Port::Usdm))
        .raw("exchangeFilters", "[]")
        .raw(
            "assets",
            &array([Obj::new()
                .str("asset", "USDT")
                .bool("marginAvailable", true)
                .str("autoAssetExchange", "-10000")
                .end()]),
        )
        .raw("symbols", &symbols)
        .end())
}

/// `symbols=["BTCUSDT","ETHUSDT"]` (JSON array, URL-decoded already).
fn symbol_list(text: &str) -> Result<Vec<Symbol>, ApiErr> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|_| illegal("symbols"))?;
    let items = value.as_array().ok_or_else(|| illegal("symbols"))?;
    items
        .iter()
        .map(|v| {
            let s = v.as_str().ok_or_else(|| illegal("symbols"))?;
            Symbol::new(s.as_bytes()).map_err(|_| invalid_symbol())
        })
        .collect()
}

/// The spot exchangeInfo with the current filter forms (NOTIONAL, not MIN_NOTIONAL).
fn spot_exchange_info(shared: &Shared, _: &Ctx, params: &Params) -> Result<String, ApiErr> {
    let ex = shared.ex();
    let wanted = match (params.opt_symbol()?, params.get("symbols")) {
        (Some(s), _) => Some(vec![s]),
        (None, Some(list)) => Some(symbol_list(list)?),
        (None, None) => None,
    };
    if let Some(list) = &wanted
        && list.iter().any(|s| ex.market(Venue::Margin, *s).is_none())
    {
        return Err(invalid_symbol());
    }
    let symbols = ex
        .markets
        .values()
        .filter(|m| m.venue == Venue::Margin)
        .filter(|m| wanted.as_ref().is_none_or(|w| w.contains(&m.symbol)))
        .map(|m| {
            let r = m.rules;
            let filters = array([
                Obj::new()
                    .str("filterType", "PRICE_FILTER")
                    .str("minPrice", &dec8(r.min_price.units()))
                    .str("maxPrice", &dec8(r.max_price.units()))
                    .str("tickSize", &dec8(r.tick.units()))
                    .end(),
                Obj::new()
                    .str("filterType", "LOT_SIZE")
                    .str("minQty", &dec8(r.min_qty.units()))
                    .str("maxQty", &dec8(r.max_qty.units()))
                    .str("stepSize", &dec8(r.step.units()))
                    .end(),
                Obj::new().str("filterType", "ICEBERG_PARTS").int("limit", 10).end(),
                Obj::new()
                    .str("filterType", "MARKET_LOT_SIZE")
                    .str("minQty", &dec8(0))
                    .str("maxQty", &dec8(r.market_max_qty.units()))
                    .str("stepSize", &dec8(0))
                    .end(),
                Obj::new()
                    .str("filterType", "TRAILING_DELTA")
                    .int("minTrailingAboveDelta", 10)
                    .int("maxTrailingAboveDelta", 2000)
                    .int("minTrailingBelowDelta", 10)
                    .int("maxTrailingBelowDelta", 2000)
                    .end(),
                Obj::new()
                    .str("filterType", "PERCENT_PRICE_BY_SIDE")
                    .str("bidMultiplierUp", "5")
                    .str("bidMultiplierDown", "0.2")
                    .str("askMultiplierUp", "5")
                    .str("askMultiplierDown", "0.2")
                    .int("avgPriceMins", 5)
                    .end(),
                Obj::new()
                    .str("filterType", "NOTIONAL")
                    .str("minNotional", &dec8(r.min_notional.units()))
                    .bool("applyMinToMarket", true)
                    .str("maxNotional", "9000000.00000000")
                    .bool("applyMaxToMarket", false)
                    .int("avgPriceMins", 5)
                    .end(),
                Obj::new().str("filterType", "MAX_NUM_ORDERS").int("maxNumOrders", 200).end(),
                Obj::new()
                    .str("filterType", "MAX_NUM_ALGO_ORDERS")
                    .int("maxNumAlgoOrders", 5)
                    .end(),
            ]);
            Obj::new()
                .str("symbol", m.symbol.as_str())
                .str("status", "TRADING")
                .str("baseAsset", &m.base)
                .int("baseAssetPrecision", 8)
                .str("quoteAsset", &m.quote)
                .int("quotePrecision", 8)
                .int("quoteAssetPrecision", 8)
                .int("baseCommissionPrecision", 8)
                .int("quoteCommissionPrecision", 8)
                .raw(
                    "orderTypes",
                    r#"["LIMIT","LIMIT_MAKER","MARKET","STOP_LOSS_LIMIT","TAKE_PROFIT_LIMIT"]"#,
                )
                .bool("icebergAllowed", true)
                .bool("ocoAllowed", true)
                .bool("otoAllowed", true)
                .bool("quoteOrderQtyMarketAllowed", true)
                .bool("allowTrailingStop", true)
                .bool("cancelReplaceAllowed", true)
                .bool("isSpotTradingAllowed", true)
                .bool("isMarginTradingAllowed", true)
                .raw("filters", &filters)
                .raw("permissions", "[]")
                .raw("permissionSets", r#"[["SPOT","MARGIN"]]"#)
                .str("defaultSelfTradePreventionMode", "EXPIRE_MAKER")
                .raw(
                    "allowedSelfTradePreventionModes",
                    r#"["EXPIRE_TAKER","EXPIRE_MAKER","EXPIRE_BOTH"]"#,
                )
                .end()
        })
        .collect::<Vec<_>>();
    Ok(Obj::new()
        .str("timezone", "UTC")
        .uint("serverTime", now_ms())
        .raw("rateLimits", &rate_limits(&shared.cfg, Port::Spot))
        .raw("exchangeFilters", "[]")
        .raw("symbols", &array(symbols))
        .end())
}

fn markets_for(
    ex: &Exchange,
    venue: Venue,
    symbol: Option<Symbol>,
) -> Result<Vec<&crate::market::Market>, ApiErr> {
    match symbol {
        Some(s) => Ok(vec![ex.market(venue, s).ok_or_else(invalid_symbol)?]),
        None => Ok(ex.markets.values().filter(|m| m.venue == venue).collect()),
    }
}

/// One object for a symbol, an array without one, as Binance answers ticker endpoints.
fn one_or_all(symbol: Option<Symbol>, items: Vec<String>) -> String {
    match (symbol, items.len()) {
        (Some(_), 1) => items.into_iter().next().unwrap_or_default(),
        _ => array(items),
    }
}

fn usdm_book_ticker(shared: &Shared, _: &Ctx, params: &Params) -> Result<String, ApiErr> {
    let ex = shared.ex();
    let half = shared.cfg.half_spread_ticks;
    let symbol = params.opt_symbol()?;
    let items = markets_for(&ex, Venue::Usdm, symbol)?
        .into_iter()
        .map(|m| {
            let qty = m.qty_text(m.book_qty());
            Obj::new()
                .str("symbol", m.symbol.as_str())
                .str("bidPrice", &m.price_text(m.bid(half)))
                .str("bidQty", &qty)
                .str("askPrice", &m.price_text(m.ask(half)))
                .str("askQty", &qty)
                .uint("time", now_ms())
                .uint("lastUpdateId", m.update_id)
                .end()
        })
        .collect();
    Ok(one_or_all(symbol, items))
}

fn spot_book_ticker(shared: &Shared, _: &Ctx, params: &Params) -> Result<String, ApiErr> {
    let ex = shared.ex();
    let half = shared.cfg.half_spread_ticks;
    let symbol = params.opt_symbol()?;
    let items = markets_for(&ex, Venue::Margin, symbol)?
        .into_iter()
        .map(|m| {
            let qty = dec8(m.book_qty());
            Obj::new()
                .str("symbol", m.symbol.as_str())
                .str("bidPrice", &dec8(m.bid(half)))
                .str("bidQty", &qty)
                .str("askPrice", &dec8(m.ask(half)))
                .str("askQty", &qty)
                .end()
        })
        .collect();
    Ok(one_or_all(symbol, items))
}

fn usdm_ticker_price(shared: &Shared, _: &Ctx, params: &Params) -> Result<String, ApiErr> {
    let ex = shared.ex();
    let symbol = params.opt_symbol()?;
    let items = markets_for(&ex, Venue::Usdm, symbol)?
        .into_iter()
        .map(|m| {
            Obj::new()
                .str("symbol", m.symbol.as_str())
                .str("price", &m.price_text(m.last))
                .uint("time", now_ms())
                .end()
        })
        .collect();
    Ok(one_or_all(symbol, items))
}

fn spot_ticker_price(shared: &Shared, _: &Ctx, params: &Params) -> Result<String, ApiErr> {
    let ex = shared.ex();
    let symbol = params.opt_symbol()?;
    let items = markets_for(&ex, Venue::Margin, symbol)?
        .into_iter()
        .map(|m| Obj::new().str("symbol", m.symbol.as_str()).str("price", &dec8(m.last)).end())
        .collect();
    Ok(one_or_all(symbol, items))
}

fn premium_index(shared: &Shared, _: &Ctx, params: &Params) -> Result<String, ApiErr> {
    const EIGHT_HOURS: u64 = 8 * 3_600_000;
    let ex = shared.ex();
    let symbol = params.opt_symbol()?;
    let now = now_ms();
    let items = markets_for(&ex, Venue::Usdm, symbol)?
        .into_iter()
        .map(|m| {
            Obj::new()
                .str("symbol", m.symbol.as_str())
                .str("markPrice", &dec8(m.mark))
                .str("indexPrice", &dec8(m.last))
                .str("estimatedSettlePrice", &dec8(m.mark))
                .str("lastFundingRate", "0.00010000")
                .str("interestRate", "0.00010000")
                .uint("nextFundingTime", (now / EIGHT_HOURS + 1) * EIGHT_HOURS)
                .uint("time", now)
                .end()
        })
        .collect();
    Ok(one_or_all(symbol, items))
}

// ---- futures orders ----

fn side_of(params: &Params) -> Result<OrderSide, ApiErr> {
    match params.need("side")? {
        "BUY" => Ok(OrderSide::Buy),
        "SELL" => Ok(OrderSide::Sell),
        _ => Err(ApiErr::new(-1117, "Invalid side.")),
    }
}

fn futures_cid_ok(cid: &str) -> bool {
    cid.bytes().all(|b| b.is_ascii_alphanumeric() || b".:/_-".contains(&b))
}

fn spot_cid_ok(cid: &str) -> bool {
    cid.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
}

/// Places an API order, holding its fill when the delayed-fill fault says so (a refused order
/// does not use up the fault).
fn place_api_order(
    shared: &Shared,
    mut order: NewOrder,
    now: Instant,
) -> (std::sync::MutexGuard<'_, Exchange>, Result<usize, ApiErr>) {
    order.delay = shared.fill_delay();
    let mut ex = shared.ex();
    let mut out = Outbox::default();
    let placed = ex.place(order, now_ms(), now, &mut out);
    shared.deliver(&ex, out, now);
    if placed.is_ok() {
        shared.fill_delay_used();
    }
    (ex, placed)
}

fn usdm_new_order(shared: &Shared, ctx: &Ctx, params: &Params) -> Result<String, ApiErr> {
    let symbol = params.symbol()?;
    let side = side_of(params)?;
    let kind = match params.need("type")? {
        "MARKET" => Kind::Market,
        "LIMIT" => {
            let tif = match params.need("timeInForce")? {
                "GTC" => TimeInForce::Gtc,
                "IOC" => TimeInForce::Ioc,
                "FOK" => TimeInForce::Fok,
                _ => return Err(ApiErr::new(-1115, "Invalid timeInForce.")),
            };
            let (price, _) = decimal(params, "price")?;
            Kind::Limit { price, tif }
        }
        "STOP" | "STOP_MARKET" | "TAKE_PROFIT" | "TAKE_PROFIT_MARKET" | "TRAILING_STOP_MARKET" => {
            return Err(ApiErr::new(
                -4120,
                "Order type not supported for this endpoint. Please use the Algo Order API endpoints instead.",
            ));
        }
        _ => return Err(ApiErr::new(-1116, "Invalid orderType.")),
    };
    match params.get("positionSide") {
        None | Some("BOTH") => {}
        Some("LONG" | "SHORT") => {
            return Err(ApiErr::new(-4061, "Order's position side does not match user's setting."));
        }
        Some(_) => return Err(illegal("positionSide")),
    }
    if params.flag("closePosition")? == Some(true) {
        return Err(ApiErr::new(-1106, "Parameter 'closePosition' sent when not required."));
    }
    let (qty, qty_decimals) = decimal(params, "quantity")?;
    let reduce_only = params.flag("reduceOnly")?.unwrap_or(false);
    let cid = params.get("newClientOrderId").map(str::to_owned);
    if let Some(cid) = &cid {
        if cid.len() > 36 {
            return Err(ApiErr::new(
                -4015,
                "Client order id length should not be more than 36 chars",
            ));
        }
        if !futures_cid_ok(cid) {
            return Err(ApiErr::new(
                -1100,
                "Illegal characters found in parameter 'newClientOrderId'; legal range is '^[\\.A-Z\\:/a-z0-9_-]{1,36}$'.",
            ));
        }
    }
    let resp = match params.get("newOrderRespType") {
        None | Some("ACK") => RespType::Ack,
        Some("RESULT") => RespType::Result,
        Some(_) => return Err(illegal("newOrderRespType")),
    };
    let source = OrderSource::Api { api_key: ctx.api_key.clone().unwrap_or_default() };
    let order = NewOrder {
        venue: Venue::Usdm,
        symbol,
        side,
        kind,
        qty,
        qty_decimals,
        reduce_only,
        side_effect: SideEffect::NoSideEffect,
        cid,
        delay: None,
        source,
    };
    let (ex, placed) = place_api_order(shared, order, ctx.now);
    let idx = placed?;
    Ok(usdm_order_json(&ex, &ex.orders[idx], resp == RespType::Ack, false))
}

/// A futures order as POST (`ack`: the acceptance snapshot), GET and DELETE show it.
fn usdm_order_json(ex: &Exchange, o: &Order, ack: bool, query: bool) -> String {
    let Some(m) = ex.market(Venue::Usdm, o.symbol) else { return "{}".into() };
    let (executed, cum_quote, avg, status, update) = if ack {
        (0, 0, 0, "NEW", o.time_ms)
    } else {
        (o.executed, o.cum_quote, o.avg_price(), o.status.as_str(), o.update_ms)
    };
    let avg = dec(avg, 5);
    let mut obj = if query {
        Obj::new().str("avgPrice", &avg).str("clientOrderId", &o.cid)
    } else {
        Obj::new().str("clientOrderId", &o.cid).str("cumQty", &m.qty_text(executed))
    };
    obj = obj.str("cumQuote", &dec8(cum_quote)).str("executedQty", &m.qty_text(executed));
    obj = obj.uint("orderId", o.order_id);
    if !query {
        obj = obj.str("avgPrice", &avg);
    }
    obj = obj.str("origQty", &m.qty_text(o.orig_qty));
    if query {
        obj = obj.str("origType", o.type_str());
    }
    obj = obj
        .str("price", &m.price_text(o.price()))
        .bool("reduceOnly", o.reduce_only)
        .str("side", side_name(o.side))
        .str("positionSide", "BOTH")
        .str("status", status)
        .str("stopPrice", "0")
        .bool("closePosition", false)
        .str("symbol", o.symbol.as_str());
    if query {
        obj = obj.uint("time", o.time_ms);
    }
    obj = obj.str("timeInForce", o.tif()).str("type", o.type_str());
    if !query {
        obj = obj.str("origType", o.type_str());
    }
    obj.uint("updateTime", update)
        .str("workingType", "CONTRACT_PRICE")
        .bool("priceProtect", false)
        .str("priceMatch", "NONE")
        .str("selfTradePreventionMode", "EXPIRE_MAKER")
        .int("goodTillDate", 0)
        .end()
}

fn side_name(side: OrderSide) -> &'static str {
    match side {
        OrderSide::Buy => "BUY",
        OrderSide::Sell => "SELL",
    }
}

/// `orderId` / `origClientOrderId` lookup shared by query and cancel.
fn lookup(ex: &Exchange, venue: Venue, params: &Params) -> Result<usize, ApiErr> {
    let symbol = params.symbol()?;
    if ex.market(venue, symbol).is_none() {
        return Err(invalid_symbol());
    }
    let order_id = params.opt_u64("orderId")?;
    let cid = params.get("origClientOrderId");
    if order_id.is_none() && cid.is_none() {
        return Err(ApiErr::new(
            -1102,
            "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!",
        ));
    }
    ex.find_order(venue, symbol, order_id, cid)
        .ok_or_else(|| ApiErr::new(-2013, "Order does not exist."))
}

fn usdm_query_order(shared: &Shared, _: &Ctx, params: &Params) -> Result<String, ApiErr> {
    let ex = shared.ex();
    let idx = lookup(&ex, Venue::Usdm, params)?;
    Ok(usdm_order_json(&ex, &ex.orders[idx], false, true))
}

fn usdm_cancel_order(shared: &Shared, ctx: &Ctx, params: &Params) -> Result<String, ApiErr> {
    let mut ex = shared.ex();
    let idx = lookup(&ex, Venue::Usdm, params)
        .map_err(|e| if e.code == -2013 { ApiErr::new(-2011, "Unknown order sent.") } else { e })?;
    let mut out = Outbox::default();
    let result = ex.cancel(idx, now_ms(), &mut out);
    shared.deliver(&ex, out, ctx.now);
    result?;
    Ok(usdm_order_json(&ex, &ex.orders[idx], false, false))
}

fn usdm_open_orders(shared: &Shared, _: &Ctx, params: &Params) -> Result<String, ApiErr> {
    let ex = shared.ex();
    let symbol = params.opt_symbol()?;
    if let Some(s) = symbol
        && ex.market(Venue::Usdm, s).is_none()
    {
        return Err(invalid_symbol());
    }
    let items = ex
        .orders
        .iter()
        .filter(|o| o.venue == Venue::Usdm && o.status == Status::New)
        .filter(|o| symbol.is_none_or(|s| o.symbol == s))
        .map(|o| usdm_order_json(&ex, o, false, true))
        .collect::<Vec<_>>();
    Ok(array(items))
}

fn position_rows(shared: &Shared, params: &Params, every_symbol: bool) -> Result<String, ApiErr> {
    let ex = shared.ex();
    let symbol = params.opt_symbol()?;
    let lev = i64::from(shared.cfg.usdm_leverage.max(1));
    let rows = markets_for(&ex, Venue::Usdm, symbol)?
        .into_iter()
        .filter_map(|m| {
            let p = ex.positions.get(&m.symbol).copied().unwrap_or_default();
            let open = ex
                .orders
                .iter()
                .any(|o| o.venue == Venue::Usdm && o.symbol == m.symbol && o.status == Status::New);
            if !every_symbol && p.amount == 0 && !open {
                return None;
            }
            let notional = mul(p.amount, m.mark);
            let margin = notional.abs() / lev;
            Some(
                Obj::new()
                    .str("symbol", m.symbol.as_str())
                    .str("positionSide", "BOTH")
                    .str("positionAmt", &m.qty_text(p.amount))
                    .str("entryPrice", &dec8(p.entry))
                    .str("breakEvenPrice", &dec8(ex.break_even(&p)))
                    .str("markPrice", &dec8(m.mark))
                    .str("unRealizedProfit", &dec8(mul(p.amount, m.mark - p.entry)))
                    .str("liquidationPrice", "0")
                    .str("isolatedMargin", "0")
                    .str("notional", &dec8(notional))
                    .str("marginAsset", "USDT")
                    .str("isolatedWallet", "0")
                    .str("initialMargin", &dec8(margin))
                    .str("maintMargin", &dec8(mul(notional.abs(), 400_000)))
                    .str("positionInitialMargin", &dec8(margin))
                    .str("openOrderInitialMargin", "0")
                    .int("adl", 0)
                    .str("bidNotional", "0")
                    .str("askNotional", "0")
                    .uint("updateTime", p.update_ms)
                    .end(),
            )
        })
        .collect::<Vec<_>>();
    Ok(array(rows))
}

fn position_risk_v3(shared: &Shared, _: &Ctx, params: &Params) -> Result<String, ApiErr> {
    // v3 lists only symbols with a position or open orders.
    position_rows(shared, params, false)
}

fn position_risk_v2(shared: &Shared, _: &Ctx, params: &Params) -> Result<String, ApiErr> {
    position_rows(shared, params, true)
}

fn listen_key_create(shared: &Shared, ctx: &Ctx, _: &Params) -> Result<String, ApiErr> {
    let key = shared.ex().listen_key_create(ctx.now);
    Ok(Obj::new().str("listenKey", &key).end())
}

fn listen_key_keepalive(shared: &Shared, ctx: &Ctx, _: &Params) -> Result<String, ApiErr> {
    let key = shared.ex().listen_key_keepalive(ctx.now)?;
    Ok(Obj::new().str("listenKey", &key).end())
}

fn listen_key_delete(shared: &Shared, ctx: &Ctx, _: &Params) -> Result<String, ApiErr> {
    let key = shared.ex().listen_key_delete(ctx.now)?;
    shared.hub.listen_key_deleted(&key);
    Ok("{}".into())
}

// ---- margin ----

fn require_isolated(params: &Params) -> Result<(), ApiErr> {
    match params.get("isIsolated") {
        Some(v) if v.eq_ignore_ascii_case("TRUE") => Ok(()),
        Some(v) if !v.eq_ignore_ascii_case("FALSE") => Err(illegal("isIsolated")),
        // Cross margin is not simulated: robsond trades isolated pairs only.
        _ => Err(ApiErr::new(-3003, "Margin account does not exist.")),
    }
}

fn listen_token_create(shared: &Shared, ctx: &Ctx, params: &Params) -> Result<String, ApiErr> {
    let isolated = params.flag("isIsolated")?.unwrap_or(false);
    let symbol = if isolated {
        let s = params.symbol()?;
        if shared.ex().market(Venue::Margin, s).is_none() {
            return Err(invalid_symbol());
        }
        Some(s)
    } else {
        None
    };
    let max = shared.cfg.listen_token_max_validity;
    let validity = match params.opt_u64("validity")? {
        Some(ms) if Duration::from_millis(ms) > max || ms == 0 => {
            return Err(ApiErr::new(-1130, "Data sent for parameter 'validity' is not valid."));
        }
        Some(ms) => Duration::from_millis(ms),
        None => max,
    };
    let (token, expires) = shared.ex().token_create(symbol, validity, ctx.now, now_ms());
    Ok(Obj::new().str("token", &token).uint("expirationTime", expires).end())
}

fn margin_new_order(shared: &Shared, ctx: &Ctx, params: &Params) -> Result<String, ApiErr> {
    let symbol = params.symbol()?;
    require_isolated(params)?;
    let side = side_of(params)?;
    match params.need("type")? {
        "MARKET" => {}
        // Only MARKET is simulated on margin: it is all robsond sends there.
        _ => return Err(ApiErr::new(-1116, "Invalid orderType.")),
    }
    if params.get("quoteOrderQty").is_some() && params.get("quantity").is_none() {
        return Err(mandatory("quantity"));
    }
    let (qty, qty_decimals) = decimal(params, "quantity")?;
    let side_effect = match params.get("sideEffectType") {
        None => SideEffect::NoSideEffect,
        Some(v) => SideEffect::parse(v).ok_or_else(|| illegal("sideEffectType"))?,
    };
    let cid = params.get("newClientOrderId").map(str::to_owned);
    if let Some(cid) = &cid
        && (cid.len() > 36 || !spot_cid_ok(cid))
    {
        return Err(ApiErr::new(
            -1100,
            "Illegal characters found in parameter 'newClientOrderId'; legal range is '^[a-zA-Z0-9-_]{1,36}$'.",
        ));
    }
    let resp = match params.get("newOrderRespType") {
        None | Some("FULL") => RespType::Full,
        Some("RESULT") => RespType::Result,
        Some("ACK") => RespType::Ack,
        Some(_) => return Err(illegal("newOrderRespType")),
    };
    let source = OrderSource::Api { api_key: ctx.api_key.clone().unwrap_or_default() };
    let order = NewOrder {
        venue: Venue::Margin,
        symbol,
        side,
        kind: Kind::Market,
        qty,
        qty_decimals,
        reduce_only: false,
        side_effect,
        cid,
        delay: None,
        source,
    };
    let (ex, placed) = place_api_order(shared, order, ctx.now);
    let idx = placed?;
    Ok(margin_order_response(&ex.orders[idx], resp))
}

fn margin_order_response(o: &Order, resp: RespType) -> String {
    let obj = Obj::new()
        .str("symbol", o.symbol.as_str())
        .uint("orderId", o.order_id)
        .str("clientOrderId", &o.cid);
    if resp == RespType::Ack {
        return obj.bool("isIsolated", true).uint("transactTime", o.time_ms).end();
    }
    let mut obj = obj
        .uint("transactTime", o.time_ms)
        .str("price", &dec8(o.price()))
        .str("origQty", &dec8(o.orig_qty))
        .str("executedQty", &dec8(o.executed))
        .str("cummulativeQuoteQty", &dec8(o.cum_quote))
        .str("status", o.status.as_str())
        .str("timeInForce", o.tif())
        .str("type", o.type_str())
        .str("side", side_name(o.side))
        .bool("isIsolated", true)
        .str("selfTradePreventionMode", "EXPIRE_MAKER");
    if let Some((asset, amount)) = &o.borrowed {
        obj = obj.str("marginBuyBorrowAmount", &dec8(*amount)).str("marginBuyBorrowAsset", asset);
    }
    if resp == RespType::Full {
        let fills = o.fills.iter().map(|f| {
            Obj::new()
                .str("price", &dec8(f.price))
                .str("qty", &dec8(f.qty))
                .str("commission", &dec8(f.commission))
                .str("commissionAsset", &f.commission_asset)
                .uint("tradeId", f.trade_id)
                .end()
        });
        obj = obj.raw("fills", &array(fills.collect::<Vec<_>>()));
    }
    obj.end()
}

/// `GET /sapi/v1/margin/order` and the open-orders list.
fn margin_order_json(o: &Order) -> String {
    Obj::new()
        .str("clientOrderId", &o.cid)
        .str("cummulativeQuoteQty", &dec8(o.cum_quote))
        .str("executedQty", &dec8(o.executed))
        .str("icebergQty", &dec8(0))
        .bool("isWorking", o.status == Status::New)
        .uint("orderId", o.order_id)
        .str("origQty", &dec8(o.orig_qty))
        .str("price", &dec8(o.price()))
        .str("side", side_name(o.side))
        .str("status", o.status.as_str())
        .str("stopPrice", &dec8(0))
        .str("symbol", o.symbol.as_str())
        .bool("isIsolated", true)
        .uint("time", o.time_ms)
        .str("timeInForce", o.tif())
        .str("type", o.type_str())
        .str("selfTradePreventionMode", "EXPIRE_MAKER")
        .uint("updateTime", o.update_ms)
        .end()
}

fn margin_query_order(shared: &Shared, _: &Ctx, params: &Params) -> Result<String, ApiErr> {
    require_isolated(params)?;
    let ex = shared.ex();
    let idx = lookup(&ex, Venue::Margin, params)?;
    Ok(margin_order_json(&ex.orders[idx]))
}

fn margin_cancel_order(shared: &Shared, ctx: &Ctx, params: &Params) -> Result<String, ApiErr> {
    require_isolated(params)?;
    let mut ex = shared.ex();
    let idx = lookup(&ex, Venue::Margin, params)
        .map_err(|e| if e.code == -2013 { ApiErr::new(-2011, "Unknown order sent.") } else { e })?;
    let mut out = Outbox::default();
    let result = ex.cancel(idx, now_ms(), &mut out);
    shared.deliver(&ex, out, ctx.now);
    result?;
    let o = &ex.orders[idx];
    Ok(Obj::new()
        .str("symbol", o.symbol.as_str())
        .bool("isIsolated", true)
        .str("origClientOrderId", &o.cid)
        .uint("orderId", o.order_id)
        .int("orderListId", -1)
        .str("clientOrderId", &o.cid)
        .str("price", &dec8(o.price()))
        .str("origQty", &dec8(o.orig_qty))
        .str("executedQty", &dec8(o.executed))
        .str("cummulativeQuoteQty", &dec8(o.cum_quote))
        .str("status", o.status.as_str())
        .str("timeInForce", o.tif())
        .str("type", o.type_str())
        .str("side", side_name(o.side))
        .uint("transactTime", o.update_ms)
        .end())
}

fn margin_open_orders(shared: &Shared, _: &Ctx, params: &Params) -> Result<String, ApiErr> {
    require_isolated(params)?;
    let ex = shared.ex();
    let symbol = params.symbol()?;
    if ex.market(Venue::Margin, symbol).is_none() {
        return Err(invalid_symbol());
    }
    let items = ex
        .orders
        .iter()
        .filter(|o| o.venue == Venue::Margin && o.symbol == symbol && o.status == Status::New)
        .map(margin_order_json)
        .collect::<Vec<_>>();
    Ok(array(items))
}

fn isolated_account(shared: &Shared, _: &Ctx, params: &Params) -> Result<String, ApiErr> {
    let ex = shared.ex();
    let wanted: Option<Vec<Symbol>> = match params.get("symbols") {
        Some(list) => Some(
            list.split(',')
                .map(|s| Symbol::new(s.trim().as_bytes()).map_err(|_| invalid_symbol()))
                .collect::<Result<_, _>>()?,
        ),
        None => None,
    };
    let assets = ex
        .pairs
        .iter()
        .filter(|(s, _)| wanted.as_ref().is_none_or(|w| w.contains(s)))
        .filter_map(|(s, p)| {
            let m = ex.market(Venue::Margin, *s)?;
            let asset = |name: &str, free: i64, borrowed: i64| {
                Obj::new()
                    .str("asset", name)
                    .bool("borrowEnabled", true)
                    .str("borrowed", &dec8(borrowed))
                    .str("free", &dec8(free))
                    .str("interest", &dec8(0))
                    .str("locked", &dec8(0))
                    .str("netAsset", &dec8(free - borrowed))
                    .str("netAssetOfBtc", &dec8(0))
                    .bool("repayEnabled", true)
                    .str("totalAsset", &dec8(free))
                    .end()
            };
            let price = m.last;
            let debt = mul(p.base.borrowed, price) + p.quote.borrowed;
            let total = mul(p.base.free, price) + p.quote.free;
            let level =
                if debt == 0 { 999 * engine::money::SCALE } else { crate::json::div(total, debt) };
            Some(
                Obj::new()
                    .raw("baseAsset", &asset(&m.base, p.base.free, p.base.borrowed))
                    .raw("quoteAsset", &asset(&m.quote, p.quote.free, p.quote.borrowed))
                    .str("symbol", s.as_str())
                    .bool("isolatedCreated", true)
                    .bool("enabled", true)
                    .str("marginLevel", &dec8(level))
                    .str("marginLevelStatus", "EXCESSIVE")
                    .str(
                        "marginRatio",
                        &dec8(i64::from(shared.cfg.margin_max_leverage) * engine::money::SCALE),
                    )
                    .str("indexPrice", &dec8(price))
                    .str("liquidatePrice", &dec8(0))
                    .str("liquidateRate", &dec8(0))
                    .bool("tradeEnabled", true)
                    .end(),
            )
        })
        .collect::<Vec<_>>();
    Ok(Obj::new()
        .raw("assets", &array(assets))
        .str("totalAssetOfBtc", &dec8(0))
        .str("totalLiabilityOfBtc", &dec8(0))
        .str("totalNetAssetOfBtc", &dec8(0))
        .end())
}

fn margin_trades(shared: &Shared, _: &Ctx, params: &Params) -> Result<String, ApiErr> {
    require_isolated(params)?;
    let ex = shared.ex();
    let symbol = params.symbol()?;
    if ex.market(Venue::Margin, symbol).is_none() {
        return Err(invalid_symbol());
    }
    let order_id = params.opt_u64("orderId")?;
    let from_id = params.opt_u64("fromId")?;
    let start = params.opt_u64("startTime")?;
    let end = params.opt_u64("endTime")?;
    let limit = params.opt_u64("limit")?.unwrap_or(500).clamp(1, 1000) as usize;
    let items = ex
        .trades
        .iter()
        .filter(|t| t.symbol == symbol)
        .filter(|t| order_id.is_none_or(|id| t.order_id == id))
        .filter(|t| from_id.is_none_or(|id| t.id >= id))
        .filter(|t| start.is_none_or(|s| t.time_ms >= s))
        .filter(|t| end.is_none_or(|e| t.time_ms <= e))
        .take(limit)
        .map(|t| {
            Obj::new()
                .str("commission", &dec8(t.commission))
                .str("commissionAsset", &t.commission_asset)
                .uint("id", t.id)
                .bool("isBestMatch", true)
                .bool("isBuyer", t.is_buyer)
                .bool("isMaker", false)
                .uint("orderId", t.order_id)
                .str("price", &dec8(t.price))
                .str("qty", &dec8(t.qty))
                .str("quoteQty", &dec8(t.quote_qty))
                .str("symbol", t.symbol.as_str())
                .bool("isIsolated", true)
                .uint("time", t.time_ms)
                .end()
        })
        .collect::<Vec<_>>();
    Ok(array(items))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn total_params_join_query_and_body_without_the_signature() {
        let (payload, sig) = split_signature(
            "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC",
            "quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559&signature=abc",
        );
        assert_eq!(
            payload,
            "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTCquantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559"
        );
        assert_eq!(sig.as_deref(), Some("abc"));
    }

    #[test]
    fn hmac_matches_binance_published_vector() {
        let auth = KeyAuth::Hmac {
            secret: "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j".into(),
        };
        let payload = "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559";
        let good = "c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71";
        assert!(verify(&auth, payload, good));
        // Hex is case-insensitive.
        assert!(verify(&auth, payload, &good.to_uppercase()));
        assert!(!verify(&auth, payload, &good.replace('c', "d")));
        assert!(!verify(&auth, &payload.replace("0.1", "0.2"), good));
    }

    #[test]
    fn params_decode_and_the_query_wins() {
        let p = Params::parse("symbol=BTCUSDT&x=%41", "symbol=ETHUSDT&y=a+b").unwrap();
        assert_eq!(p.get("symbol"), Some("BTCUSDT"));
        assert_eq!(p.get("x"), Some("A"));
        assert_eq!(p.get("y"), Some("a b"));
        assert!(Params::parse("x=%zz", "").is_err());
    }
}
