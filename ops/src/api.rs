//! The HTTP side: probes, metrics and the authenticated control API on tiny_http.
//!
//! This module turns requests into commands for the hot thread and answers into JSON. It owns
//! no trading state: commands cross to the hot thread over a crossbeam channel with a reply
//! channel each, and the engine's answer is what the client sees. Probes and metrics read what
//! the daemon publishes through [`Probes`]; they never reach into the hot thread.
//!
//! Every request is answered: 400 with the field and the reason for bad input, 401 for a missing
//! or wrong token, 403 when no token is configured (the control API is off), 404 for an unknown
//! route, 405 for a known route with the wrong method, 413 above 64 KiB, 503 when the hot thread
//! does not answer in time. Nothing a request sends can panic the daemon: parsing is total and
//! the handler thread catches what it cannot foresee.

use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, bounded};
use engine::events::{ArmParams, ArmRejection, DisarmRejection, Event, Reply};
use engine::types::{AccountId, MarketKey, PositionId, PositionKey, Side, Symbol, Venue};
use engine::{Amount, Nanos, PositionView, Price, Ratio, State};
use serde_json::{Map, Value, json};

/// Largest request body accepted.
pub const MAX_BODY: usize = 64 * 1024;

/// What the hot thread is asked to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// An engine event (arm, disarm, halt, resume, safety-net percent).
    Engine(Event),
    Positions,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    Engine(Reply),
    /// Every position, and the engine's clock, for ages.
    Positions(Vec<PositionView>, Nanos),
}

/// A command and where its answer goes.
pub struct Envelope {
    pub command: Command,
    pub reply: Sender<Answer>,
}

/// What the probes and `/metrics` read; the daemon implements it over its atomics.
pub trait Probes: Send + Sync {
    /// The process and its hot loop are alive; the body names each check.
    fn health(&self) -> (bool, Value);
    /// Ready to protect positions; the body names each check. With `standby_ok`, an instance
    /// that lacks only the lease counts as ready (to take over in a rolling update).
    fn readiness(&self, standby_ok: bool) -> (bool, Value);
    /// Prometheus text exposition.
    fn metrics(&self) -> String;
}

pub struct ApiConfig {
    /// None: the control API is off; probes and metrics still answer.
    pub token: Option<Vec<u8>>,
    pub account: AccountId,
    /// How long a control request waits for the hot thread.
    pub command_timeout: Duration,
}

/// A failed request: status, the field at fault (if one), and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub field: Option<String>,
    pub reason: String,
}

fn refuse(status: u16, field: Option<&str>, reason: impl Into<String>) -> Refusal {
    Refusal { status, field: field.map(str::to_owned), reason: reason.into() }
}

fn bad(field: &str, reason: impl Into<String>) -> Refusal {
    refuse(400, Some(field), reason)
}

/// One parsed control request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    Health,
    Ready { standby_ok: bool },
    Metrics,
    Control(Command),
}

/// Method, path and body to a route, or the reason it is refused. Pure and total.
pub fn route(method: &str, path: &str, body: &[u8], account: AccountId) -> Result<Route, Refusal> {
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    let standby_ok = query.split('&').any(|kv| kv == "standby=ok");
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
    let allow = |methods: &[&str]| -> Result<(), Refusal> {
        if methods.contains(&method) {
            Ok(())
        } else {
            Err(refuse(405, None, format!("use {}", methods.join(" or "))))
        }
    };
    match segments.as_slice() {
        ["healthz"] => allow(&["GET"]).map(|()| Route::Health),
        ["readyz"] => allow(&["GET"]).map(|()| Route::Ready { standby_ok }),
        ["metrics"] => allow(&["GET"]).map(|()| Route::Metrics),
        ["v1", "arm"] => {
            allow(&["POST"])?;
            arm(&object(body)?, account).map(|e| Route::Control(Command::Engine(e)))
        }
        ["v1", "arm", id] => {
            allow(&["DELETE"])?;
            let id: u64 = id.parse().map_err(|_| bad("id", "expected a position id"))?;
            Ok(Route::Control(Command::Engine(Event::Disarm { id: PositionId(id) })))
        }
        ["v1", "positions"] => allow(&["GET"]).map(|()| Route::Control(Command::Positions)),
        ["v1", "safety-net", symbol] => {
            allow(&["PUT"])?;
            let symbol = symbol_of("symbol", symbol)?;
            let body = object(body)?;
            let venue = match body.get("venue") {
                None => Venue::Usdm,
                Some(v) => venue_of(v)?,
            };
            let pct = match body.get("pct") {
                Some(Value::Null) => None,
                Some(v) => Some(percent("pct", v)?),
                None => {
                    return Err(bad(
                        "pct",
                        "required: a percent such as \"2\", or null for the default",
                    ));
                }
            };
            let market = MarketKey { venue, symbol };
            Ok(Route::Control(Command::Engine(Event::SetSafetyPct { market, pct })))
        }
        ["v1", "halt"] => {
            allow(&["POST"])?;
            let flatten = if body.iter().all(u8::is_ascii_whitespace) {
                false
            } else {
                match object(body)?.get("flatten") {
                    None => false,
                    Some(Value::Bool(b)) => *b,
                    Some(_) => return Err(bad("flatten", "expected true or false")),
                }
            };
            Ok(Route::Control(Command::Engine(Event::Halt { flatten })))
        }
        ["v1", "resume"] => {
            allow(&["POST"]).map(|()| Route::Control(Command::Engine(Event::Resume)))
        }
        _ => Err(refuse(404, None, format!("no route {path}"))),
    }
}

fn object(body: &[u8]) -> Result<Map<String, Value>, Refusal> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(bad("body", "expected a JSON object")),
        Err(e) => Err(bad("body", format!("not JSON: {e}"))),
    }
}

fn arm(body: &Map<String, Value>, account: AccountId) -> Result<Event, Refusal> {
    const KNOWN: [&str; 8] =
        ["venue", "symbol", "side", "capital", "risk_pct", "technical_stop", "ma_fast", "ma_slow"];
    if let Some(unknown) = body.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(bad(unknown, "unknown field"));
    }
    let venue =
        venue_of(body.get("venue").ok_or_else(|| bad("venue", "required: usdm or margin"))?)?;
    let symbol = match body.get("symbol") {
        Some(Value::String(s)) => symbol_of("symbol", s)?,
        _ => return Err(bad("symbol", "required: a symbol such as \"BTCUSDT\"")),
    };
    let side = match body.get("side").and_then(Value::as_str) {
        Some("long") | Some("LONG") => Side::Long,
        Some("short") | Some("SHORT") => Side::Short,
        _ => return Err(bad("side", "required: long or short")),
    };
    let decimal = |field: &str| -> Result<Option<i64>, Refusal> {
        body.get(field).map(|v| units(field, v)).transpose()
    };
    let period = |field: &str| -> Result<Option<u32>, Refusal> {
        match body.get(field) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .filter(|n| *n > 0)
                .map(Some)
                .ok_or_else(|| bad(field, "expected a whole number of trades above 0")),
        }
    };
    let params = ArmParams {
        capital: decimal("capital")?.map(Amount::from_units),
        risk: body.get("risk_pct").map(|v| percent("risk_pct", v)).transpose()?,
        technical_stop: decimal("technical_stop")?.map(Price::from_units),
        ma_fast: period("ma_fast")?,
        ma_slow: period("ma_slow")?,
    };
    Ok(Event::Arm { key: PositionKey { account, venue, symbol, side }, params })
}

fn venue_of(value: &Value) -> Result<Venue, Refusal> {
    match value.as_str() {
        Some("usdm") => Ok(Venue::Usdm),
        Some("margin") => Ok(Venue::Margin),
        _ => Err(bad("venue", "expected usdm or margin")),
    }
}

fn symbol_of(field: &str, text: &str) -> Result<Symbol, Refusal> {
    Symbol::new(text.to_ascii_uppercase().as_bytes())
        .map_err(|_| bad(field, format!("{text:?} is not a Binance symbol")))
}

/// Money arrives as a decimal string (or a JSON integer): a JSON fraction would have passed
/// through a float on the client's side already.
fn units(field: &str, value: &Value) -> Result<i64, Refusal> {
    let text = match value {
        Value::String(s) => s.clone(),
        Value::Number(n) if n.is_i64() => n.to_string(),
        _ => return Err(bad(field, "expected a decimal string such as \"1000.5\"")),
    };
    let units = engine::money::parse_units(text.as_bytes())
        .map_err(|e| bad(field, format!("{text:?} is not a decimal: {e:?}")))?;
    if units <= 0 {
        return Err(bad(field, "must be above zero"));
    }
    Ok(units)
}

fn percent(field: &str, value: &Value) -> Result<Ratio, Refusal> {
    let units = units(field, value)?;
    if units > 100 * engine::money::SCALE {
        return Err(bad(field, "at most 100 (percent)"));
    }
    if units % 100 != 0 {
        return Err(bad(field, "at most 6 decimals"));
    }
    Ok(Ratio::from_units(units / 100))
}

/// Constant-time comparison, so the token cannot be guessed byte by byte from response times.
fn token_matches(given: &[u8], expected: &[u8]) -> bool {
    let mut diff = given.len() ^ expected.len();
    for (i, e) in expected.iter().enumerate() {
        diff |= usize::from(given.get(i).copied().unwrap_or(0) ^ e);
    }
    diff == 0
}

/// The JSON for one position (`GET /v1/positions`).
pub fn position_json(view: &PositionView, now: Nanos) -> Value {
    let state = match view.state {
        State::Core(s) => format!("{s:?}").to_lowercase(),
        State::Safety(s) => format!("{s:?}").to_lowercase(),
    };
    json!({
        "id": view.id.0,
        "venue": view.key.venue.as_str(),
        "symbol": view.key.symbol.as_str(),
        "side": view.key.side.as_str(),
        "modality": match view.modality { engine::types::Modality::Core => "core", _ => "safety_net" },
        "state": state,
        "qty": view.qty.to_string(),
        "entry": view.entry.to_string(),
        "stop": view.stop.to_string(),
        "trigger": view.trigger.map(|p| p.to_string()),
        "age_ms": now.millis_since(view.since),
        "order": view.live_order.map(|c| c.as_str().to_owned()),
    })
}

fn answer_json(command: Command, answer: Answer) -> (u16, Value) {
    match (command, answer) {
        (_, Answer::Positions(views, now)) => (
            200,
            json!({ "positions": views.iter().map(|v| position_json(v, now)).collect::<Vec<_>>() }),
        ),
        (Command::Engine(Event::Arm { .. }), Answer::Engine(Reply::Armed(id))) => {
            (201, json!({ "id": id.0, "state": "armed" }))
        }
        (_, Answer::Engine(Reply::ArmRejected(reason))) => {
            let why = match reason {
                ArmRejection::AlreadyArmed => "the key is already armed or held by Core",
                ArmRejection::BadPeriods => "ma_fast must be below ma_slow, both within range",
                ArmRejection::BadRisk => "risk_pct must be above 0 and at most 100",
                ArmRejection::BadCapital => "capital must be above zero",
                ArmRejection::BadTechnicalStop => "technical_stop must be above zero",
            };
            let status = if reason == ArmRejection::AlreadyArmed { 409 } else { 400 };
            (status, json!({ "error": why, "reason": format!("{reason:?}") }))
        }
        (_, Answer::Engine(Reply::DisarmRejected(reason))) => match reason {
            DisarmRejection::UnknownId => {
                (404, json!({ "error": "no armed position with this id" }))
            }
            DisarmRejection::NotArmed => (
                409,
                json!({ "error": "the position has entered; use halt with flatten to close it" }),
            ),
        },
        (_, Answer::Engine(_)) => (200, json!({ "ok": true })),
    }
}

/// Serves until the server is dropped; one thread, since every request is short and the hot
/// thread does the work.
pub fn serve(
    server: Arc<tiny_http::Server>,
    config: ApiConfig,
    commands: Sender<Envelope>,
    probes: Arc<dyn Probes>,
) {
    for mut request in server.incoming_requests() {
        let (status, body, content_type) =
            handle(&mut request, &config, &commands, probes.as_ref());
        let header = tiny_http::Header::from_bytes(&b"Content-Type"[..], content_type.as_bytes())
            .expect("a static, valid header");
        let response =
            tiny_http::Response::from_string(body).with_status_code(status).with_header(header);
        // A client that hung up is its own problem.
        let _ = request.respond(response);
    }
}

fn handle(
    request: &mut tiny_http::Request,
    config: &ApiConfig,
    commands: &Sender<Envelope>,
    probes: &dyn Probes,
) -> (u16, String, &'static str) {
    let refusal = |r: Refusal| {
        let mut body = json!({ "error": r.reason });
        if let Some(field) = r.field {
            body["field"] = Value::String(field);
        }
        (r.status, body.to_string(), "application/json")
    };
    if request.body_length().is_some_and(|n| n > MAX_BODY) {
        return refusal(refuse(413, None, format!("bodies are limited to {MAX_BODY} bytes")));
    }
    let mut body = Vec::new();
    let read = request.as_reader().take(MAX_BODY as u64 + 1).read_to_end(&mut body);
    if read.is_err() {
        return refusal(refuse(400, Some("body"), "could not read the body"));
    }
    if body.len() > MAX_BODY {
        return refusal(refuse(413, None, format!("bodies are limited to {MAX_BODY} bytes")));
    }
    let method = request.method().as_str().to_owned();
    let path = request.url().to_owned();
    let is_control = path.starts_with("/v1/");
    if is_control {
        let Some(expected) = &config.token else {
            return refusal(refuse(403, None, "the control API is off: set ROBSON_API_TOKEN"));
        };
        let given = request
            .headers()
            .iter()
            .find(|h| h.field.equiv("Authorization"))
            .and_then(|h| h.value.as_str().strip_prefix("Bearer "))
            .map(str::as_bytes);
        if !given.is_some_and(|g| token_matches(g, expected)) {
            return refusal(refuse(401, None, "missing or wrong bearer token"));
        }
    }
    let route = match route(&method, &path, &body, config.account) {
        Ok(route) => route,
        Err(r) => return refusal(r),
    };
    match route {
        Route::Health => {
            let (ok, body) = probes.health();
            (if ok { 200 } else { 503 }, body.to_string(), "application/json")
        }
        Route::Ready { standby_ok } => {
            let (ok, body) = probes.readiness(standby_ok);
            (if ok { 200 } else { 503 }, body.to_string(), "application/json")
        }
        Route::Metrics => (200, probes.metrics(), "text/plain; version=0.0.4"),
        Route::Control(command) => {
            let (reply, answer) = bounded(1);
            if commands.send(Envelope { command, reply }).is_err() {
                return refusal(refuse(503, None, "the engine is not running"));
            }
            match answer.recv_timeout(config.command_timeout) {
                Ok(answer) => {
                    let (status, body) = answer_json(command, answer);
                    (status, body.to_string(), "application/json")
                }
                Err(_) => refusal(refuse(503, None, "the engine did not answer in time")),
            }
        }
    }
}

/// For the hot thread: answers every pending command without blocking.
pub fn drain_commands(
    commands: &Receiver<Envelope>,
    mut apply: impl FnMut(Command) -> Answer,
) -> usize {
    let mut n = 0;
    while let Ok(envelope) = commands.try_recv() {
        let answer = apply(envelope.command);
        // The requester may have timed out and gone: the command still took effect.
        let _ = envelope.reply.send(answer);
        n += 1;
    }
    n
}
