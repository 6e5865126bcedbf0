//! Frames that are not a bare event: combined-stream and WebSocket API envelopes, the spot book
//! ticker (no `e` at all), replies to requests, and the events that end a stream.

use engine::Event;

use super::error::{ErrorKind, FrameError};
use super::tape::{Obj, Val, int, object, text, uint};
use super::{Connection, Control, EventKind, IdText, Parsed, RequestId, event, market};

type Res<T> = Result<T, FrameError>;

#[cold]
fn err<T>(kind: ErrorKind, field: &'static str) -> Res<T> {
    Err(FrameError::new(kind, field))
}

/// An object whose first key is not `e`: find out what it is from its keys.
pub(super) fn envelope<F: FnMut(Event)>(
    obj: Obj<'_, '_>,
    conn: &Connection,
    sink: &mut F,
) -> Res<Parsed> {
    let mut k = Keys::default();
    for (key, v) in obj.iter() {
        let slot = match key {
            b"e" => &mut k.e,
            b"stream" => &mut k.stream,
            b"data" => &mut k.data,
            b"event" => &mut k.event,
            b"subscriptionId" => &mut k.subscription,
            b"id" => &mut k.id,
            b"status" => &mut k.status,
            b"result" => &mut k.result,
            b"error" => &mut k.error,
            b"code" => &mut k.code,
            b"u" | b"s" | b"b" | b"a" => {
                k.book_keys += 1;
                continue;
            }
            _ => continue,
        };
        slot.get_or_insert(v);
    }
    if let Some(e) = k.e {
        return event(obj, e, None, conn, sink);
    }
    if let Some(data) = k.data {
        return combined(k.stream, data, conn, sink);
    }
    if k.event.is_some() {
        let inner = object(k.event, "event")?;
        let subscription = match k.subscription {
            Some(_) => Some(uint(k.subscription, "subscriptionId")?),
            None => None,
        };
        let Some(e) = inner.get(b"e") else {
            return err(ErrorKind::MissingField, "event.e");
        };
        return event(inner, e, subscription, conn, sink);
    }
    if k.status.is_some() {
        return api_reply(&k).map_err(|e| e.in_event(EventKind::ApiReply));
    }
    if k.result.is_some() {
        let id = request_id(k.id).map_err(|e| e.in_event(EventKind::StreamReply))?;
        return Ok(Parsed::Control(Control::StreamReply { id }));
    }
    if k.code.is_some() {
        let id = request_id(k.id).map_err(|e| e.in_event(EventKind::StreamError))?;
        let code = int(k.code, "code").map_err(|e| e.in_event(EventKind::StreamError))?;
        return Ok(Parsed::Control(Control::StreamError { id, code }));
    }
    // Spot `<symbol>@bookTicker` on a raw stream: `{"u","s","b","B","a","A"}`, no `e`.
    if k.book_keys == 4 {
        return book_ticker(obj, conn, sink);
    }
    err(ErrorKind::UnknownEvent, "")
}

#[derive(Default)]
struct Keys<'t, 'a> {
    e: Option<Val<'t, 'a>>,
    stream: Option<Val<'t, 'a>>,
    data: Option<Val<'t, 'a>>,
    event: Option<Val<'t, 'a>>,
    subscription: Option<Val<'t, 'a>>,
    id: Option<Val<'t, 'a>>,
    status: Option<Val<'t, 'a>>,
    result: Option<Val<'t, 'a>>,
    error: Option<Val<'t, 'a>>,
    code: Option<Val<'t, 'a>>,
    book_keys: u8,
}

/// `{"stream":"btcusdt@markPrice","data":{…}}`. The payload says what it is when it has an `e`;
/// the spot book ticker does not, so the stream name (or, failing that, its keys) decides.
fn combined<F: FnMut(Event)>(
    stream: Option<Val<'_, '_>>,
    data: Val<'_, '_>,
    conn: &Connection,
    sink: &mut F,
) -> Res<Parsed> {
    if let Some(items) = data.array() {
        return market::event_array(items, conn, sink);
    }
    let Some(obj) = data.object() else {
        return err(ErrorKind::WrongType, "data");
    };
    if let Some(e) = obj.get(b"e") {
        return event(obj, e, None, conn, sink);
    }
    let name = text(stream, "stream")?;
    let has_book_keys = || [b"u", b"s", b"b", b"a"].iter().all(|k| obj.get(*k).is_some());
    if name.ends_with(b"@bookTicker") || has_book_keys() {
        return book_ticker(obj, conn, sink);
    }
    err(ErrorKind::UnknownEvent, "data")
}

fn book_ticker<F: FnMut(Event)>(obj: Obj<'_, '_>, conn: &Connection, sink: &mut F) -> Res<Parsed> {
    let kind = EventKind::BookTicker;
    match market::book_ticker(obj, conn, sink) {
        Ok(emitted) => {
            Ok(Parsed::Events { kind, event_ms: emitted.event_ms, count: emitted.count })
        }
        Err(e) => Err(e.in_event(kind)),
    }
}

/// `{"id","status","result"?,"error"?:{"code","msg","data"?:{"retryAfter"}},"rateLimits"?}`.
fn api_reply(k: &Keys<'_, '_>) -> Res<Parsed> {
    let id = request_id(k.id)?;
    let Ok(status) = u16::try_from(uint(k.status, "status")?) else {
        return err(ErrorKind::OutOfRange, "status");
    };
    let (mut error_code, mut retry_after_ms) = (None, None);
    if k.error.is_some() {
        let error = object(k.error, "error")?;
        error_code = Some(int(error.get(b"code"), "error.code")?);
        if let Some(data) = error.get(b"data").and_then(Val::object) {
            let retry = data.get(b"retryAfter");
            if retry.is_some() {
                retry_after_ms = Some(uint(retry, "error.data.retryAfter")?);
            }
        }
    }
    let subscription = k.result.and_then(Val::object).and_then(|r| r.get(b"subscriptionId"));
    let subscription_id = match subscription {
        Some(_) => Some(uint(subscription, "result.subscriptionId")?),
        None => None,
    };
    Ok(Parsed::Control(Control::ApiReply {
        id,
        status,
        error_code,
        subscription_id,
        retry_after_ms,
    }))
}

/// An absent id reads as null: a market-stream error about an unparseable request has none.
fn request_id(v: Option<Val<'_, '_>>) -> Res<RequestId> {
    let Some(val) = v else {
        return Ok(RequestId::Null);
    };
    if val.is_null() {
        return Ok(RequestId::Null);
    }
    if let Some(s) = val.str() {
        return match IdText::new(s) {
            Some(id) => Ok(RequestId::Text(id)),
            None => err(ErrorKind::OutOfRange, "id"),
        };
    }
    Ok(RequestId::Int(int(v, "id")?))
}

/// `listenKeyExpired` and `eventStreamTerminated`: `{"e","E",…}`. `E` has been a string in some
/// versions of the listenKeyExpired docs; `uint` takes both.
pub(super) fn stream_end(
    obj: Obj<'_, '_>,
    kind: EventKind,
    subscription: Option<u64>,
) -> Res<Parsed> {
    let event_ms = uint(obj.get(b"E"), "E").map_err(|e| e.in_event(kind))?;
    Ok(Parsed::Control(match kind {
        EventKind::ListenKeyExpired => Control::ListenKeyExpired { event_ms },
        _ => Control::EventStreamTerminated { subscription_id: subscription, event_ms },
    }))
}

/// `serverShutdown`: its time is informative only, so a missing one does not hide the warning.
pub(super) fn server_shutdown(obj: Obj<'_, '_>) -> Res<Parsed> {
    let e = obj.get(b"E");
    let event_ms = match e {
        Some(_) => Some(uint(e, "E").map_err(|e| e.in_event(EventKind::ServerShutdown))?),
        None => None,
    };
    Ok(Parsed::Control(Control::ServerShutdown { event_ms }))
}
