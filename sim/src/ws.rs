//! WebSocket connections: the upgrade, the per-connection loop (queued frames out, requests in,
//! server pings with a pong deadline, the maximum age, connection faults), market-stream control
//! (SUBSCRIBE, UNSUBSCRIBE, LIST_SUBSCRIPTIONS, SET_PROPERTY, GET_PROPERTY), the futures private
//! stream, and the spot WebSocket API's listen-token subscriptions.
//!
//! One blocking thread per connection, polling its socket every `http::POLL`; it never holds the
//! exchange lock while touching the socket.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::Instant;

use serde_json::Value;
use tungstenite::protocol::{Role, WebSocketConfig};
use tungstenite::{Message, WebSocket};

use crate::http::{self, Request, Response, Stream, would_block};
use crate::hub::{ApiSub, CloseReason, Conn, ConnKind, Out};
use crate::json::Obj;
use crate::rest::Port;
use crate::{Shared, now_ms};

/// What a WebSocket URL asks for.
struct Target {
    kind: ConnKind,
    streams: Vec<String>,
    combined: bool,
    listen_key: Option<String>,
    events: Option<Vec<String>>,
    /// The path as recorded (listen key hidden).
    shown: String,
}

fn query_param(query: &str, key: &str) -> Option<String> {
    query.split('&').find_map(|part| {
        let (k, v) = part.split_once('=')?;
        (k == key).then(|| percent_decode(v))
    })
}

fn percent_decode(text: &str) -> String {
    let mut out = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(v) = text.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn split_streams(text: &str) -> Vec<String> {
    text.split('/').filter(|s| !s.is_empty()).map(percent_decode).collect()
}

/// Market streams under a route prefix (`/ws/<streams>`, `/ws`, `/stream?streams=`).
fn market_target(kind: ConnKind, rest: &str, query: &str, shown: String) -> Option<Target> {
    let (streams, combined) = if rest == "/ws" {
        (Vec::new(), false)
    } else if let Some(names) = rest.strip_prefix("/ws/") {
        (split_streams(names), false)
    } else if rest == "/stream" {
        (query_param(query, "streams").map(|s| split_streams(&s)).unwrap_or_default(), true)
    } else {
        return None;
    };
    Some(Target { kind, streams, combined, listen_key: None, events: None, shown })
}

fn target(port: Port, path: &str, query: &str) -> Option<Target> {
    match port {
        Port::Spot if path == "/ws-api/v3" => Some(Target {
            kind: ConnKind::SpotWsApi,
            streams: Vec::new(),
            combined: false,
            listen_key: None,
            events: None,
            shown: path.into(),
        }),
        Port::Spot => market_target(ConnKind::SpotMarket, path, query, path.into()),
        Port::Usdm => {
            if let Some(rest) = path.strip_prefix("/public") {
                market_target(ConnKind::UsdmPublic, rest, query, path.into())
            } else if let Some(rest) = path.strip_prefix("/market") {
                market_target(ConnKind::UsdmMarket, rest, query, path.into())
            } else if let Some(rest) = path.strip_prefix("/private") {
                let events = query_param(query, "events").map(|e| split_streams(&e));
                let (key, combined, shown) = if let Some(key) = rest.strip_prefix("/ws/") {
                    (Some(percent_decode(key)), false, "/private/ws/***".to_owned())
                } else if rest == "/ws" {
                    (query_param(query, "listenKey"), false, "/private/ws?listenKey=***".into())
                } else if rest == "/stream" {
                    (query_param(query, "listenKey"), true, "/private/stream?listenKey=***".into())
                } else {
                    return None;
                };
                Some(Target {
                    kind: ConnKind::UsdmPrivate,
                    streams: Vec::new(),
                    combined,
                    listen_key: key,
                    events,
                    shown,
                })
            } else {
                market_target(ConnKind::UsdmUnrouted, path, query, path.into())
            }
        }
    }
}

/// Upgrades `req` to a WebSocket and serves it until it ends.
pub(crate) fn serve(
    shared: &Arc<Shared>,
    mut stream: Stream,
    leftover: Vec<u8>,
    req: &Request,
    port: Port,
) {
    let Some(target) = target(port, &req.path, &req.query) else {
        let body = Obj::new().int("code", -1000).str("msg", "Unknown stream path.").end();
        let _ = http::write_response(&mut stream, req, &Response::json(404, body));
        return;
    };
    let key = req.header("sec-websocket-key").map(str::to_owned);
    let Some(key) = key.filter(|_| req.header("sec-websocket-version") == Some("13")) else {
        let body = Obj::new().int("code", -1000).str("msg", "Bad WebSocket handshake.").end();
        let _ = http::write_response(&mut stream, req, &Response::json(400, body));
        return;
    };
    if target.kind == ConnKind::UsdmPrivate {
        let valid = target
            .listen_key
            .as_deref()
            .is_some_and(|k| shared.ex().listen_key_valid(k, Instant::now()));
        if !valid {
            // The key is unknown or expired: no stream to attach to; the client needs a new key.
            let body =
                Obj::new().int("code", -1125).str("msg", "This listenKey does not exist.").end();
            let _ = http::write_response(&mut stream, req, &Response::json(400, body));
            return;
        }
    }
    // Registered before the handshake completes, so that a client that got its 101 is always
    // in the record already.
    let (tx, rx) = mpsc::channel();
    let socket = stream.tcp().try_clone().ok();
    let conn = shared.hub.register(target.kind, target.shown.clone(), socket, tx, now_ms());
    {
        let mut subs = conn.subs();
        subs.streams = target.streams.clone();
        subs.combined = target.combined;
    }
    *lock(&conn.listen_key) = target.listen_key.clone();
    *lock(&conn.event_filter) = target.events.clone();
    let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
    let head = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
    );
    if http::write_all(&mut stream, head.as_bytes())
        .and_then(|()| http::flush(&mut stream))
        .is_err()
    {
        shared.hub.unregister(conn.id, CloseReason::Error);
        return;
    }
    // From here the thread parks between polls and is woken by whoever queues a frame: reads
    // must not block.
    if stream.tcp().set_nonblocking(true).is_err() {
        shared.hub.unregister(conn.id, CloseReason::Error);
        return;
    }
    conn.set_waker();
    let config = WebSocketConfig::default().max_write_buffer_size(16 << 20);
    let ws = WebSocket::from_partially_read(stream, leftover, Role::Server, Some(config));
    let reason = run(shared, &conn, ws, &rx);
    // A drop may surface first as the client's EOF inside a read: the fault is the cause.
    let reason = if conn.killed.load(Ordering::Relaxed) { CloseReason::Dropped } else { reason };
    shared.hub.unregister(conn.id, reason);
    conn.kill();
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Half a payload: never valid JSON, the malformed-frame fault's garbage.
fn garble(text: &str) -> String {
    let mut cut = text.len() / 2;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    text[..cut].to_owned()
}

fn ok_or_blocked(r: tungstenite::Result<()>) -> Result<(), CloseReason> {
    match r {
        Ok(()) => Ok(()),
        Err(tungstenite::Error::Io(e)) if would_block(&e) => Ok(()),
        Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {
            Err(CloseReason::ClientClosed)
        }
        Err(tungstenite::Error::Io(_)) => Err(CloseReason::ClientClosed),
        Err(_) => Err(CloseReason::Error),
    }
}

fn run(
    shared: &Arc<Shared>,
    conn: &Arc<Conn>,
    mut ws: WebSocket<Stream>,
    rx: &mpsc::Receiver<Out>,
) -> CloseReason {
    let cfg = &shared.cfg;
    let opened = Instant::now();
    let mut next_ping = opened + cfg.ping_every;
    let mut outstanding: Vec<Vec<u8>> = Vec::new();
    let mut pong_deadline: Option<Instant> = None;
    let mut pings: u64 = 0;
    loop {
        if shared.shutdown.load(Ordering::Relaxed) {
            return CloseReason::Shutdown;
        }
        if conn.killed.load(Ordering::Relaxed) {
            return CloseReason::Dropped;
        }
        let now = Instant::now();
        if conn.frozen.load(Ordering::Relaxed) {
            // Half-closed: the socket stays open but nothing is read or written, so only the
            // client's own pings can tell.
            while rx.try_recv().is_ok() {}
            std::thread::park_timeout(http::POLL);
            continue;
        }
        while let Ok(out) = rx.try_recv() {
            let text = match out {
                Out::Data(_) if conn.stalled(now) => continue,
                Out::Data(text) => {
                    let garbled = conn
                        .malformed_left
                        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                        .is_ok();
                    if garbled { garble(&text) } else { text }
                }
                Out::Reply(text) => text,
                Out::Close(reason) => {
                    let _ = ws.close(None);
                    let _ = ws.flush();
                    return reason;
                }
            };
            if let Err(reason) = ok_or_blocked(ws.write(Message::text(text))) {
                return reason;
            }
        }
        if now >= next_ping {
            pings += 1;
            let payload = pings.to_string().into_bytes();
            outstanding.push(payload.clone());
            pong_deadline.get_or_insert(now + cfg.pong_timeout);
            next_ping = now + cfg.ping_every;
            if let Err(reason) = ok_or_blocked(ws.write(Message::Ping(payload.into()))) {
                return reason;
            }
        }
        if pong_deadline.is_some_and(|d| now >= d) {
            return CloseReason::PongTimeout;
        }
        if now.duration_since(opened) >= cfg.max_conn_age {
            let _ = ws.close(None);
            let _ = ws.flush();
            return CloseReason::MaxAge;
        }
        if let Err(reason) = ok_or_blocked(ws.flush()) {
            return reason;
        }
        // Everything the client sent so far; requests and pongs wait at most one poll.
        loop {
            match ws.read() {
                Ok(Message::Text(text)) => {
                    let reply = match conn.kind {
                        ConnKind::SpotWsApi => api_request(shared, conn, text.as_str()),
                        _ => stream_request(conn, text.as_str()),
                    };
                    if let Err(reason) = ok_or_blocked(ws.write(Message::text(reply))) {
                        return reason;
                    }
                }
                Ok(Message::Pong(payload)) => {
                    // Only an echo of a ping counts: unsolicited pongs do not keep a
                    // connection alive.
                    if outstanding.iter().any(|p| p.as_slice() == payload.as_ref()) {
                        outstanding.clear();
                        pong_deadline = None;
                    }
                }
                Ok(Message::Close(_)) => {
                    let _ = ws.flush();
                    return CloseReason::ClientClosed;
                }
                Ok(_) => {}
                Err(tungstenite::Error::Io(e)) if would_block(&e) => break,
                Err(e) => {
                    if let Err(reason) = ok_or_blocked(Err(e)) {
                        return reason;
                    }
                    break;
                }
            }
        }
        if let Err(reason) = ok_or_blocked(ws.flush()) {
            return reason;
        }
        std::thread::park_timeout(http::POLL);
    }
}

fn id_of(value: &Value) -> Value {
    value.get("id").cloned().unwrap_or(Value::Null)
}

fn stream_error(code: i64, msg: &str, id: &Value) -> String {
    Obj::new().int("code", code).str("msg", msg).raw("id", &id.to_string()).end()
}

fn stream_result(result: &str, id: &Value) -> String {
    Obj::new().raw("result", result).raw("id", &id.to_string()).end()
}

/// SUBSCRIBE and friends on a market (or private) stream, replies as BINANCE.md §1 gives them.
fn stream_request(conn: &Conn, text: &str) -> String {
    let value: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => return stream_error(3, &format!("Invalid JSON: {e}"), &Value::Null),
    };
    let id = id_of(&value);
    let Some(method) = value.get("method").and_then(Value::as_str) else {
        return stream_error(2, "Invalid request: method must be a string", &id);
    };
    let params = value.get("params");
    let names = || -> Option<Vec<String>> {
        params?.as_array()?.iter().map(|v| v.as_str().map(str::to_owned)).collect()
    };
    match method {
        "SUBSCRIBE" | "UNSUBSCRIBE" => {
            let Some(names) = names() else {
                return stream_error(2, "Invalid request: params must be an array of strings", &id);
            };
            let mut subs = conn.subs();
            for name in names {
                let present = subs.streams.iter().position(|s| *s == name);
                match (method, present) {
                    ("SUBSCRIBE", None) => subs.streams.push(name),
                    ("UNSUBSCRIBE", Some(i)) => {
                        subs.streams.remove(i);
                    }
                    _ => {}
                }
            }
            stream_result("null", &id)
        }
        "LIST_SUBSCRIPTIONS" => {
            let list = Value::from(conn.subs().streams.clone());
            stream_result(&list.to_string(), &id)
        }
        "SET_PROPERTY" => match params.and_then(Value::as_array).map(Vec::as_slice) {
            Some([name, flag]) if name == "combined" => match flag.as_bool() {
                Some(on) => {
                    conn.subs().combined = on;
                    stream_result("null", &id)
                }
                None => stream_error(2, "Invalid request: property value must be a boolean", &id),
            },
            Some([_, _]) => stream_error(0, "Unknown property", &id),
            _ => stream_error(2, "Invalid request: params must be [property, value]", &id),
        },
        "GET_PROPERTY" => match params.and_then(Value::as_array).map(Vec::as_slice) {
            Some([name]) if name == "combined" => {
                stream_result(if conn.subs().combined { "true" } else { "false" }, &id)
            }
            Some([_]) => stream_error(0, "Unknown property", &id),
            _ => stream_error(2, "Invalid request: params must be [property]", &id),
        },
        _ => stream_error(2, "Invalid request: unknown method", &id),
    }
}

fn api_ok(id: &Value, result: &str) -> String {
    Obj::new().raw("id", &id.to_string()).int("status", 200).raw("result", result).end()
}

fn api_err(id: &Value, status: i64, code: i64, msg: &str) -> String {
    let error = Obj::new().int("code", code).str("msg", msg).end();
    Obj::new().raw("id", &id.to_string()).int("status", status).raw("error", &error).end()
}

/// The spot WebSocket API, as much of it as margin user data needs.
fn api_request(shared: &Shared, conn: &Conn, text: &str) -> String {
    let value: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(_) => return api_err(&Value::Null, 400, -1000, "Malformed request."),
    };
    let id = id_of(&value);
    let params = value.get("params");
    let Some(method) = value.get("method").and_then(Value::as_str) else {
        return api_err(&id, 400, -1102, "Mandatory parameter 'method' was not sent.");
    };
    match method {
        "ping" => api_ok(&id, "{}"),
        "time" => api_ok(&id, &Obj::new().uint("serverTime", now_ms()).end()),
        "userDataStream.subscribe.listenToken" => {
            let Some(token) = params.and_then(|p| p.get("listenToken")).and_then(Value::as_str)
            else {
                return api_err(
                    &id,
                    400,
                    -1102,
                    "Mandatory parameter 'listenToken' was not sent, was empty/null, or malformed.",
                );
            };
            let found = {
                let ex = shared.ex();
                ex.token_lookup(token, Instant::now()).map(|t| (t.symbol, t.expires_ms))
            };
            let Some((symbol, expires_ms)) = found else {
                return api_err(&id, 400, -1209, "Invalid listenToken.");
            };
            let mut subs = conn.api_subs();
            if subs.iter().any(|s| s.token == token) {
                return api_err(&id, 400, -2035, "User Data Stream subscription already active.");
            }
            let sub_id = conn.next_sub_id.fetch_add(1, Ordering::Relaxed);
            subs.push(ApiSub { id: sub_id, token: token.to_owned(), symbol });
            let result =
                Obj::new().uint("subscriptionId", sub_id).uint("expirationTime", expires_ms).end();
            api_ok(&id, &result)
        }
        "userDataStream.unsubscribe" => {
            let wanted = params.and_then(|p| p.get("subscriptionId")).and_then(Value::as_u64);
            let mut subs = conn.api_subs();
            let before = subs.len();
            subs.retain(|s| wanted.is_some_and(|w| w != s.id));
            if subs.len() == before {
                return api_err(&id, 400, -2036, "User Data Stream subscription not active.");
            }
            api_ok(&id, "{}")
        }
        "session.subscriptions" => {
            let list = conn
                .api_subs()
                .iter()
                .map(|s| Obj::new().uint("subscriptionId", s.id).end())
                .collect::<Vec<_>>();
            api_ok(&id, &crate::json::array(list))
        }
        _ => api_err(&id, 400, -1102, "Unknown method."),
    }
}
