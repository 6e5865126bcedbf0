//! Market streams: mark price, best bid/ask and trades, each one field scan of one object.
//!
//! The symbol comes from the payload's `s` (upper case), never from the stream name (lower
//! case); the venue comes from the connection, since futures and spot share the payload shapes.

use engine::Event;
use engine::events::Origin;
use engine::money::Price;
use engine::types::MarketKey;

use super::error::{ErrorKind, FrameError};
use super::tape::{Arr, Obj, decimal, symbol, uint};
use super::{Connection, Emitted, Parsed, Staged, event};

type Res<T> = Result<T, FrameError>;

/// `E`, `s` and `p` of a market event. Binance writes them near the front (`e`, `E`, `s`, then
/// `p`, or `a`/`t` and `p`): reading stops once all three are seen, so the rest of the object,
/// often half of it, is never touched.
#[inline]
fn time_symbol_price(obj: Obj<'_, '_>, conn: &Connection) -> Res<(u64, MarketKey, Price)> {
    let (mut big_e, mut s, mut p) = (None, None, None);
    for (key, v) in obj.iter() {
        let slot = match key {
            b"E" => &mut big_e,
            b"s" => &mut s,
            b"p" => &mut p,
            _ => continue,
        };
        slot.get_or_insert(v);
        if big_e.is_some() && s.is_some() && p.is_some() {
            break;
        }
    }
    let event_ms = uint(big_e, "E")?;
    let market = MarketKey { venue: conn.venue, symbol: symbol(s, "s")? };
    Ok((event_ms, market, Price::from_units(decimal(p, "p")?)))
}

/// `markPriceUpdate`: `{"e","E","s","p":mark,"ap","i","P","r","T"}`.
#[inline]
pub(super) fn mark_price<F: FnMut(Event)>(
    obj: Obj<'_, '_>,
    conn: &Connection,
    sink: &mut F,
) -> Res<Emitted> {
    let (event_ms, market, price) = time_symbol_price(obj, conn)?;
    sink(Event::Mark { market, price, origin: Origin::Stream });
    Ok(Emitted { event_ms: Some(event_ms), count: 1 })
}

/// `bookTicker`: futures `{"e","u","E","T","s","b","B","a","A"}`, spot the same without `e`, `E`
/// and `T`, so `E` is optional here.
#[inline]
pub(super) fn book_ticker<F: FnMut(Event)>(
    obj: Obj<'_, '_>,
    conn: &Connection,
    sink: &mut F,
) -> Res<Emitted> {
    let (mut big_e, mut s, mut b, mut a) = (None, None, None, None);
    for (key, v) in obj.iter() {
        let slot = match key {
            b"E" => &mut big_e,
            b"s" => &mut s,
            b"b" => &mut b,
            b"a" => &mut a,
            _ => continue,
        };
        slot.get_or_insert(v);
    }
    let event_ms = match big_e {
        Some(_) => Some(uint(big_e, "E")?),
        None => None,
    };
    let market = MarketKey { venue: conn.venue, symbol: symbol(s, "s")? };
    let bid = Price::from_units(decimal(b, "b")?);
    let ask = Price::from_units(decimal(a, "a")?);
    sink(Event::Book { market, bid, ask, origin: Origin::Stream });
    Ok(Emitted { event_ms, count: 1 })
}

/// `aggTrade` (`{"e","E","s","a","p","q","f","l","T","m"…}`) and spot `trade`
/// (`{"e","E","s","t","p","q","T","m"…}`): only the price matters to the engine.
#[inline]
pub(super) fn trade<F: FnMut(Event)>(
    obj: Obj<'_, '_>,
    conn: &Connection,
    sink: &mut F,
) -> Res<Emitted> {
    let (event_ms, market, price) = time_symbol_price(obj, conn)?;
    sink(Event::Trade { market, price, origin: Origin::Stream });
    Ok(Emitted { event_ms: Some(event_ms), count: 1 })
}

/// An array of events (`!markPrice@arr`, raw or as a combined stream's `data`), staged (see
/// `Staged`): a bad element costs the whole frame rather than leaving the engine with half of it.
pub(super) fn event_array<F: FnMut(Event)>(
    items: Arr<'_, '_>,
    conn: &Connection,
    sink: &mut F,
) -> Res<Parsed> {
    let mut staged = Staged::new();
    let parsed = each_event(items, conn, &mut |e| staged.push(e))?;
    if let Parsed::Events { .. } = parsed {
        match staged.held() {
            Some(events) => events.iter().for_each(|&e| sink(e)),
            None => {
                each_event(items, conn, sink)?;
            }
        }
    }
    Ok(parsed)
}

fn each_event<F: FnMut(Event)>(items: Arr<'_, '_>, conn: &Connection, sink: &mut F) -> Res<Parsed> {
    let mut first = None;
    let mut count = 0u32;
    for item in items.iter() {
        let Some(obj) = item.object() else {
            return Err(FrameError::new(ErrorKind::WrongType, "[]"));
        };
        let Some(e) = obj.get(b"e") else {
            return Err(FrameError::new(ErrorKind::MissingField, "[].e"));
        };
        match event(obj, e, None, conn, sink)? {
            Parsed::Events { kind, event_ms, count: n } => {
                first.get_or_insert((kind, event_ms));
                count = count.saturating_add(n);
            }
            Parsed::Ignored(kind) if first.is_none() => return Ok(Parsed::Ignored(kind)),
            _ => return Err(FrameError::new(ErrorKind::UnknownEvent, "[]")),
        }
    }
    match first {
        Some((kind, event_ms)) => Ok(Parsed::Events { kind, event_ms, count }),
        None => Err(FrameError::new(ErrorKind::UnknownEvent, "[]")),
    }
}
