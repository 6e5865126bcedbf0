//! Every open connection, what it listens to, and delivery to it: market frames by stream and
//! route, futures user data by listen key, margin user data by listen-token subscription. Also
//! where connection faults land (drop, half-close, stall, malformed frames) and the record of
//! connections opened.
//!
//! Owns no exchange state and never locks the exchange: the exchange's lock may be held while
//! calling in here (that is what keeps events in order), never the other way round.

use std::collections::HashSet;
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use engine::types::{Symbol, Venue};

use crate::json::Obj;

/// What a connection is, by venue and route. REST connections count too (keep-alive sockets
/// can be dropped like any other).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConnKind {
    UsdmRest,
    /// `/public/…`: bookTicker.
    UsdmPublic,
    /// `/market/…`: markPrice, aggTrade, kline.
    UsdmMarket,
    /// `/private/…`: user data by listen key.
    UsdmPrivate,
    /// Legacy `/ws`, `/stream` on the futures host: only `/public` streams reach it.
    UsdmUnrouted,
    SpotRest,
    /// Spot `/ws`, `/stream`.
    SpotMarket,
    /// Spot WebSocket API `/ws-api/v3` (margin user data by listen token).
    SpotWsApi,
}

impl ConnKind {
    pub fn is_websocket(self) -> bool {
        !matches!(self, ConnKind::UsdmRest | ConnKind::SpotRest)
    }
}

/// Why the simulator's side of a connection ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// The client closed it (close frame, EOF or reset).
    ClientClosed,
    /// No pong echoed the server's ping within `pong_timeout`.
    PongTimeout,
    /// `max_conn_age` reached: closed with a close frame, as Binance does at 24 h.
    MaxAge,
    /// The drop fault.
    Dropped,
    /// The listen key was deleted.
    ListenKeyDeleted,
    Shutdown,
    /// A protocol or I/O error on the socket.
    Error,
}

/// One connection the simulator accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnRecord {
    pub id: u64,
    pub kind: ConnKind,
    /// Request path; a listen key in it is replaced by `***`.
    pub path: String,
    pub opened_ms: u64,
    pub closed: Option<CloseReason>,
}

/// A frame queued for a connection's thread.
pub(crate) enum Out {
    /// Stream data: dropped while the stream is stalled, garbled by the malformed-frame fault.
    Data(String),
    /// A request's reply: always delivered.
    Reply(String),
    /// Close the connection (listen key deleted).
    Close(CloseReason),
}

#[derive(Default)]
pub(crate) struct Subs {
    /// In subscription order (LIST_SUBSCRIPTIONS answers in it).
    pub(crate) streams: Vec<String>,
    pub(crate) combined: bool,
}

pub(crate) struct ApiSub {
    pub(crate) id: u64,
    pub(crate) token: String,
    pub(crate) symbol: Option<Symbol>,
}

pub(crate) struct Conn {
    pub(crate) id: u64,
    pub(crate) kind: ConnKind,
    tx: Sender<Out>,
    waker: Mutex<Option<std::thread::Thread>>,
    socket: Option<TcpStream>,
    pub(crate) subs: Mutex<Subs>,
    /// Futures private stream: its listen key and event filter (`events=` in the URL).
    pub(crate) listen_key: Mutex<Option<String>>,
    pub(crate) event_filter: Mutex<Option<Vec<String>>>,
    /// WebSocket API user-data subscriptions.
    pub(crate) api_subs: Mutex<Vec<ApiSub>>,
    pub(crate) next_sub_id: AtomicU64,
    pub(crate) frozen: AtomicBool,
    /// Set by the drop fault: the connection thread ends as soon as it looks.
    pub(crate) killed: AtomicBool,
    pub(crate) stall_until: Mutex<Option<Instant>>,
    pub(crate) malformed_left: AtomicU32,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicked holder left plain data behind; the simulator keeps serving.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Conn {
    pub(crate) fn send(&self, out: Out) {
        // A closed receiver means the connection thread already ended: nothing to deliver to.
        let _ = self.tx.send(out);
        self.wake();
    }

    /// Wakes the connection thread from its park, so that a queued frame leaves now rather
    /// than at the next poll.
    pub(crate) fn wake(&self) {
        if let Some(thread) = lock(&self.waker).as_ref() {
            thread.unpark();
        }
    }

    /// Called by the connection thread itself before it starts parking.
    pub(crate) fn set_waker(&self) {
        *lock(&self.waker) = Some(std::thread::current());
    }

    /// Takes the socket down under the connection thread, whatever it is doing.
    pub(crate) fn kill(&self) {
        self.killed.store(true, Ordering::Relaxed);
        self.wake();
        if let Some(s) = &self.socket {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    pub(crate) fn stalled(&self, now: Instant) -> bool {
        lock(&self.stall_until).is_some_and(|until| until > now)
    }

    pub(crate) fn subs(&self) -> MutexGuard<'_, Subs> {
        lock(&self.subs)
    }

    pub(crate) fn api_subs(&self) -> MutexGuard<'_, Vec<ApiSub>> {
        lock(&self.api_subs)
    }
}

/// A futures stream on `/public` (the rest are `/market`).
fn is_public_stream(stream: &str) -> bool {
    stream.ends_with("@bookTicker") || stream == "!bookTicker" || stream.contains("@depth")
}

/// Whether a connection of `kind` receives `stream` of `venue` at all, subscribed or not.
pub(crate) fn routed(kind: ConnKind, venue: Venue, stream: &str) -> bool {
    match kind {
        ConnKind::SpotMarket => venue == Venue::Margin,
        ConnKind::UsdmPublic | ConnKind::UsdmUnrouted => {
            venue == Venue::Usdm && is_public_stream(stream)
        }
        ConnKind::UsdmMarket => venue == Venue::Usdm && !is_public_stream(stream),
        _ => false,
    }
}

#[derive(Default)]
pub(crate) struct Hub {
    conns: Mutex<Vec<Arc<Conn>>>,
    next_id: AtomicU64,
    log: Mutex<Vec<ConnRecord>>,
}

impl Hub {
    pub(crate) fn register(
        &self,
        kind: ConnKind,
        path: String,
        socket: Option<TcpStream>,
        tx: Sender<Out>,
        now_ms: u64,
    ) -> Arc<Conn> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let conn = Arc::new(Conn {
            id,
            kind,
            tx,
            waker: Mutex::new(None),
            socket,
            subs: Mutex::new(Subs::default()),
            listen_key: Mutex::new(None),
            event_filter: Mutex::new(None),
            api_subs: Mutex::new(Vec::new()),
            next_sub_id: AtomicU64::new(0),
            frozen: AtomicBool::new(false),
            killed: AtomicBool::new(false),
            stall_until: Mutex::new(None),
            malformed_left: AtomicU32::new(0),
        });
        lock(&self.conns).push(conn.clone());
        lock(&self.log).push(ConnRecord { id, kind, path, opened_ms: now_ms, closed: None });
        conn
    }

    pub(crate) fn unregister(&self, id: u64, reason: CloseReason) {
        lock(&self.conns).retain(|c| c.id != id);
        if let Some(rec) = lock(&self.log).iter_mut().find(|r| r.id == id)
            && rec.closed.is_none()
        {
            rec.closed = Some(reason);
        }
    }

    pub(crate) fn records(&self) -> Vec<ConnRecord> {
        lock(&self.log).clone()
    }

    pub(crate) fn matching(&self, kind: Option<ConnKind>) -> Vec<Arc<Conn>> {
        lock(&self.conns).iter().filter(|c| kind.is_none_or(|k| c.kind == k)).cloned().collect()
    }

    /// Every (venue, stream) some connection both subscribed to and is routed for.
    pub(crate) fn wanted(&self) -> HashSet<(Venue, String)> {
        let mut set = HashSet::new();
        for c in lock(&self.conns).iter() {
            let venue = match c.kind {
                ConnKind::SpotMarket => Venue::Margin,
                ConnKind::UsdmPublic | ConnKind::UsdmMarket | ConnKind::UsdmUnrouted => Venue::Usdm,
                _ => continue,
            };
            for s in c.subs().streams.iter() {
                if routed(c.kind, venue, s) {
                    set.insert((venue, s.clone()));
                }
            }
        }
        set
    }

    pub(crate) fn broadcast_market(&self, frames: &[crate::exchange::MarketFrame]) {
        if frames.is_empty() {
            return;
        }
        for c in lock(&self.conns).iter() {
            let subs = c.subs();
            for f in frames {
                if routed(c.kind, f.venue, &f.stream) && subs.streams.contains(&f.stream) {
                    let text = if subs.combined {
                        Obj::new().str("stream", &f.stream).raw("data", &f.payload).end()
                    } else {
                        f.payload.clone()
                    };
                    c.send(Out::Data(text));
                }
            }
        }
    }

    /// Futures user data to every private connection on the active listen key.
    pub(crate) fn send_usdm_user(&self, active_key: Option<&str>, frames: &[String]) {
        let Some(key) = active_key else { return };
        for c in lock(&self.conns).iter().filter(|c| c.kind == ConnKind::UsdmPrivate) {
            if lock(&c.listen_key).as_deref() != Some(key) {
                continue;
            }
            let filter = lock(&c.event_filter).clone();
            let combined = c.subs().combined;
            for f in frames {
                if let Some(events) = &filter
                    && !events.iter().any(|e| event_name(f).as_deref() == Some(e.as_str()))
                {
                    continue;
                }
                c.send(Out::Data(wrap_private(combined, key, f)));
            }
        }
    }

    /// Margin user data to every WebSocket API subscription on this isolated pair.
    pub(crate) fn send_margin_user(&self, symbol: Symbol, payload: &str) {
        for c in lock(&self.conns).iter().filter(|c| c.kind == ConnKind::SpotWsApi) {
            for sub in c.api_subs().iter().filter(|s| s.symbol == Some(symbol)) {
                c.send(Out::Data(wrap_subscription(sub.id, payload)));
            }
        }
    }

    /// `listenKeyExpired` to the connections on `key`; they stay open and get nothing more.
    pub(crate) fn listen_key_expired(&self, key: &str, now_ms: u64) {
        let payload =
            Obj::new().str("e", "listenKeyExpired").uint("E", now_ms).str("listenKey", key).end();
        for c in lock(&self.conns).iter().filter(|c| c.kind == ConnKind::UsdmPrivate) {
            if lock(&c.listen_key).as_deref() == Some(key) {
                let combined = c.subs().combined;
                c.send(Out::Data(wrap_private(combined, key, &payload)));
            }
        }
    }

    /// Closes the private connections on a deleted key.
    pub(crate) fn listen_key_deleted(&self, key: &str) {
        for c in lock(&self.conns).iter().filter(|c| c.kind == ConnKind::UsdmPrivate) {
            if lock(&c.listen_key).as_deref() == Some(key) {
                c.send(Out::Close(CloseReason::ListenKeyDeleted));
            }
        }
    }

    /// `eventStreamTerminated` to every subscription on these tokens, which then end.
    pub(crate) fn tokens_terminated(&self, tokens: &[String], now_ms: u64) {
        if tokens.is_empty() {
            return;
        }
        let payload = Obj::new().str("e", "eventStreamTerminated").uint("E", now_ms).end();
        for c in lock(&self.conns).iter().filter(|c| c.kind == ConnKind::SpotWsApi) {
            let mut subs = c.api_subs();
            subs.retain(|sub| {
                if tokens.contains(&sub.token) {
                    c.send(Out::Data(wrap_subscription(sub.id, &payload)));
                    false
                } else {
                    true
                }
            });
        }
    }

    pub(crate) fn shutdown_all(&self) {
        for c in lock(&self.conns).iter() {
            c.kill();
        }
    }
}

pub(crate) fn wrap_subscription(id: u64, payload: &str) -> String {
    Obj::new().uint("subscriptionId", id).raw("event", payload).end()
}

fn wrap_private(combined: bool, key: &str, payload: &str) -> String {
    if combined {
        Obj::new().str("stream", key).raw("data", payload).end()
    } else {
        payload.to_owned()
    }
}

/// The `e` of an event payload.
fn event_name(payload: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(payload).ok()?;
    value.get("e")?.as_str().map(str::to_owned)
}
