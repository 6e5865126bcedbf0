//! User-data events: futures positions, balances and order updates, and the spot/margin
//! `executionReport` that margin positions are rebuilt from.
//!
//! Binance reuses letters with different meanings per event (`a` is an asset here and the best
//! ask in a book ticker; `T` exists both outside and inside `o`), so each event reads its own
//! keys and nothing is shared but the typed readers.

use engine::Event;
use engine::events::{BalanceScope, MarginFill, OrderStatus, OrderUpdate, RejectKind};
use engine::money::{Amount, DecimalError, Price, Qty, SCALE};
use engine::types::{ClientOrderId, MarketKey, OrderSide, PositionKey, Side};

use super::error::{ErrorKind, FrameError};
use super::tape::{Obj, Val, array, average, decimal, int, object, symbol, text, uint};
use super::{Connection, Emitted, Staged};

type Res<T> = Result<T, FrameError>;

#[cold]
fn err<T>(kind: ErrorKind, field: &'static str) -> Res<T> {
    Err(FrameError::new(kind, field))
}

// ---- futures ----

/// `ACCOUNT_UPDATE`: `{"e","E","T","a":{"m","B":[{"a","wb","cw","bc"}],"P":[{"s","pa","ep",
/// "ps",…}]}}`. Staged (see `Staged`), so that a bad entry anywhere refuses the frame before the
/// engine has seen any of it.
pub(super) fn account_update<F: FnMut(Event)>(
    obj: Obj<'_, '_>,
    conn: &Connection,
    sink: &mut F,
) -> Res<Emitted> {
    let (mut big_e, mut big_t, mut a) = (None, None, None);
    for (key, v) in obj.iter() {
        let slot = match key {
            b"E" => &mut big_e,
            b"T" => &mut big_t,
            b"a" => &mut a,
            _ => continue,
        };
        slot.get_or_insert(v);
    }
    let event_ms = uint(big_e, "E")?;
    let exchange_ms = uint(big_t, "T")?;
    let a = object(a, "a")?;
    let mut staged = Staged::new();
    let count = account_items(a, exchange_ms, conn, &mut |e| staged.push(e))?;
    match staged.held() {
        Some(events) => events.iter().for_each(|&e| sink(e)),
        None => {
            account_items(a, exchange_ms, conn, sink)?;
        }
    }
    Ok(Emitted { event_ms: Some(event_ms), count })
}

fn account_items<F: FnMut(Event)>(
    a: Obj<'_, '_>,
    exchange_ms: u64,
    conn: &Connection,
    sink: &mut F,
) -> Res<u32> {
    let (mut balances, mut positions) = (None, None);
    for (key, v) in a.iter() {
        let slot = match key {
            b"B" => &mut balances,
            b"P" => &mut positions,
            _ => continue,
        };
        slot.get_or_insert(v);
    }
    let mut count = 0u32;
    // Both arrays are optional in practice: a crossed FUNDING_FEE pushes balances only.
    if balances.is_some() {
        for item in array(balances, "a.B")?.iter() {
            if let Some(available) = wallet_balance(item, conn)? {
                let scope = BalanceScope::UsdmWallet;
                sink(Event::Balance { account: conn.account, scope, available });
                count += 1;
            }
        }
    }
    if positions.is_some() {
        for item in array(positions, "a.P")?.iter() {
            count += position(item, exchange_ms, conn, sink)?;
        }
    }
    Ok(count)
}

/// The cross wallet balance `cw` of the connection's balance asset; None for other assets.
fn wallet_balance(item: Val<'_, '_>, conn: &Connection) -> Res<Option<Amount>> {
    let Some(obj) = item.object() else {
        return err(ErrorKind::WrongType, "a.B");
    };
    let (mut asset, mut cw) = (None, None);
    for (key, v) in obj.iter() {
        let slot = match key {
            b"a" => &mut asset,
            b"cw" => &mut cw,
            _ => continue,
        };
        slot.get_or_insert(v);
    }
    if text(asset, "a.B.a")? != conn.balance_asset.as_bytes() {
        return Ok(None);
    }
    Ok(Some(Amount::from_units(decimal(cw, "a.B.cw")?)))
}

/// One entry of `a.P`, as one event (hedge mode) or two (one-way mode, see `EventKind`).
fn position<F: FnMut(Event)>(
    item: Val<'_, '_>,
    exchange_ms: u64,
    conn: &Connection,
    sink: &mut F,
) -> Res<u32> {
    let Some(obj) = item.object() else {
        return err(ErrorKind::WrongType, "a.P");
    };
    let (mut s, mut pa, mut ep, mut ps) = (None, None, None, None);
    for (key, v) in obj.iter() {
        let slot = match key {
            b"s" => &mut s,
            b"pa" => &mut pa,
            b"ep" => &mut ep,
            b"ps" => &mut ps,
            _ => continue,
        };
        slot.get_or_insert(v);
    }
    let symbol = symbol(s, "a.P.s")?;
    let amount = decimal(pa, "a.P.pa")?;
    let entry = Price::from_units(average(ep, "a.P.ep")?);
    let qty = Qty::from_units(amount).abs();
    let key = |side| PositionKey { account: conn.account, venue: conn.venue, symbol, side };
    let mut emit =
        |side, qty, entry| sink(Event::Position { key: key(side), qty, entry, exchange_ms });
    match text(ps, "a.P.ps")? {
        b"LONG" => emit(Side::Long, qty, entry),
        b"SHORT" => emit(Side::Short, qty, entry),
        b"BOTH" => {
            // One-way mode: the sign is the side, and the other side is flat by definition.
            let (flat, held) =
                if amount < 0 { (Side::Long, Side::Short) } else { (Side::Short, Side::Long) };
            emit(flat, Qty::ZERO, Price::ZERO);
            emit(held, qty, entry);
            return Ok(2);
        }
        _ => return err(ErrorKind::UnknownValue, "a.P.ps"),
    }
    Ok(1)
}

/// `ORDER_TRADE_UPDATE`: `{"e","E","T","o":{"s","c","X","z","ap","T",…}}`.
pub(super) fn order_trade_update<F: FnMut(Event)>(
    obj: Obj<'_, '_>,
    conn: &Connection,
    sink: &mut F,
) -> Res<Emitted> {
    let (mut big_e, mut big_t, mut o) = (None, None, None);
    for (key, v) in obj.iter() {
        let slot = match key {
            b"E" => &mut big_e,
            b"T" => &mut big_t,
            b"o" => &mut o,
            _ => continue,
        };
        slot.get_or_insert(v);
    }
    let event_ms = uint(big_e, "E")?;
    let o = object(o, "o")?;
    let (mut s, mut c, mut x, mut z, mut ap, mut inner_t) = (None, None, None, None, None, None);
    for (key, v) in o.iter() {
        let slot = match key {
            b"s" => &mut s,
            b"c" => &mut c,
            b"X" => &mut x,
            b"z" => &mut z,
            b"ap" => &mut ap,
            b"T" => &mut inner_t,
            _ => continue,
        };
        slot.get_or_insert(v);
    }
    // The outer transaction time is the clock ACCOUNT_UPDATE's `T` uses; the order's own trade
    // time stands in only if a version ever drops the outer one.
    let exchange_ms = match big_t {
        Some(_) => uint(big_t, "T")?,
        None => uint(inner_t, "o.T")?,
    };
    let update = OrderUpdate {
        account: conn.account,
        venue: conn.venue,
        symbol: symbol(s, "o.s")?,
        cid: client_order_id(c, "o.c")?,
        status: status(text(x, "o.X")?, "o.X")?,
        cum_qty: Qty::from_units(decimal(z, "o.z")?),
        avg_price: Price::from_units(average(ap, "o.ap")?),
        exchange_ms,
    };
    sink(Event::Order(update));
    Ok(Emitted { event_ms: Some(event_ms), count: 1 })
}

/// `ACCOUNT_CONFIG_UPDATE` with `ac` (`{"s","l"}`): the symbol's leverage changed. Multi-assets
/// mode changes (`ai`) concern nothing the engine holds: None, so it reads as Ignored.
pub(super) fn account_config<F: FnMut(Event)>(
    obj: Obj<'_, '_>,
    conn: &Connection,
    sink: &mut F,
) -> Res<Option<Emitted>> {
    let (mut big_e, mut ac) = (None, None);
    for (key, v) in obj.iter() {
        let slot = match key {
            b"E" => &mut big_e,
            b"ac" => &mut ac,
            _ => continue,
        };
        slot.get_or_insert(v);
    }
    if ac.is_none() {
        return Ok(None);
    }
    let event_ms = uint(big_e, "E")?;
    let ac = object(ac, "ac")?;
    let symbol = symbol(ac.get(b"s"), "ac.s")?;
    let leverage = uint(ac.get(b"l"), "ac.l")?;
    let Ok(leverage) = u32::try_from(leverage) else {
        return err(ErrorKind::OutOfRange, "ac.l");
    };
    let market = MarketKey { venue: conn.venue, symbol };
    sink(Event::SetLeverage { market, leverage });
    Ok(Some(Emitted { event_ms: Some(event_ms), count: 1 }))
}

// ---- spot and margin ----

/// `executionReport` (raw, or inside the WebSocket API's `{"subscriptionId","event"}`).
pub(super) fn execution_report<F: FnMut(Event)>(
    obj: Obj<'_, '_>,
    conn: &Connection,
    sink: &mut F,
) -> Res<Emitted> {
    let mut f = ExecFields::default();
    for (key, v) in obj.iter() {
        let slot = match key {
            b"E" => &mut f.big_e,
            b"s" => &mut f.s,
            b"c" => &mut f.c,
            b"C" => &mut f.big_c,
            b"S" => &mut f.side,
            b"x" => &mut f.x,
            b"X" => &mut f.big_x,
            b"z" => &mut f.z,
            b"Z" => &mut f.big_z,
            b"T" => &mut f.big_t,
            b"t" => &mut f.t,
            b"l" => &mut f.l,
            b"L" => &mut f.big_l,
            _ => continue,
        };
        slot.get_or_insert(v);
    }
    let event_ms = uint(f.big_e, "E")?;
    let symbol = symbol(f.s, "s")?;
    let exchange_ms = uint(f.big_t, "T")?;
    // A cancel reports the cancel request's id in `c` and the order's own in `C`.
    let has_original = match f.big_c {
        None => false,
        Some(v) if v.is_null() => false,
        Some(v) => match v.str() {
            Some(original) => !original.is_empty(),
            None => return err(ErrorKind::WrongType, "C"),
        },
    };
    let cid =
        if has_original { client_order_id(f.big_c, "C")? } else { client_order_id(f.c, "c")? };
    let cum = decimal(f.z, "z")?;
    let avg = if cum > 0 { quote_average(decimal(f.big_z, "Z")?, cum)? } else { 0 };
    let update = OrderUpdate {
        account: conn.account,
        venue: conn.venue,
        symbol,
        cid,
        status: status(text(f.big_x, "X")?, "X")?,
        cum_qty: Qty::from_units(cum),
        avg_price: Price::from_units(avg),
        exchange_ms,
    };
    let fill = if text(f.x, "x")? == b"TRADE" {
        let side = match text(f.side, "S")? {
            b"BUY" => OrderSide::Buy,
            b"SELL" => OrderSide::Sell,
            _ => return err(ErrorKind::UnknownValue, "S"),
        };
        let Ok(trade_id) = u64::try_from(int(f.t, "t")?) else {
            // -1 means "no trade", which a TRADE execution cannot be.
            return err(ErrorKind::OutOfRange, "t");
        };
        Some(MarginFill {
            account: conn.account,
            symbol,
            side,
            qty: Qty::from_units(decimal(f.l, "l")?),
            price: Price::from_units(decimal(f.big_l, "L")?),
            trade_id,
            exchange_ms,
        })
    } else {
        None
    };
    // The fill first: it is the position fact the engine settles the order's outcome against.
    if let Some(fill) = fill {
        sink(Event::MarginTrade(fill));
    }
    sink(Event::Order(update));
    Ok(Emitted { event_ms: Some(event_ms), count: 1 + u32::from(fill.is_some()) })
}

#[derive(Default)]
struct ExecFields<'t, 'a> {
    big_e: Option<Val<'t, 'a>>,
    s: Option<Val<'t, 'a>>,
    c: Option<Val<'t, 'a>>,
    big_c: Option<Val<'t, 'a>>,
    side: Option<Val<'t, 'a>>,
    x: Option<Val<'t, 'a>>,
    big_x: Option<Val<'t, 'a>>,
    z: Option<Val<'t, 'a>>,
    big_z: Option<Val<'t, 'a>>,
    big_t: Option<Val<'t, 'a>>,
    t: Option<Val<'t, 'a>>,
    l: Option<Val<'t, 'a>>,
    big_l: Option<Val<'t, 'a>>,
}

/// `Z / z` in 1e-8 units, rounded half away from zero (both are non-negative on the wire; a
/// negative one is refused rather than averaged).
fn quote_average(quote: i64, qty: i64) -> Res<i64> {
    if quote < 0 {
        return err(ErrorKind::Decimal(DecimalError::OutOfRange), "Z");
    }
    let scaled = i128::from(quote) * i128::from(SCALE);
    let qty = i128::from(qty);
    let avg = (scaled + qty / 2) / qty;
    i64::try_from(avg).or_else(|_| err(ErrorKind::Decimal(DecimalError::OutOfRange), "Z"))
}

/// `outboundAccountPosition` (`{"e","E","u","B":[{"a","f","l"}]}`): on an isolated-margin
/// connection, the free amount of its quote asset. None when there is nothing to report (another
/// kind of connection, or the quote asset did not change).
pub(super) fn account_position<F: FnMut(Event)>(
    obj: Obj<'_, '_>,
    conn: &Connection,
    sink: &mut F,
) -> Res<Option<Emitted>> {
    let Some(isolated) = conn.isolated_symbol else {
        return Ok(None);
    };
    let (mut big_e, mut balances) = (None, None);
    for (key, v) in obj.iter() {
        let slot = match key {
            b"E" => &mut big_e,
            b"B" => &mut balances,
            _ => continue,
        };
        slot.get_or_insert(v);
    }
    let event_ms = uint(big_e, "E")?;
    let mut free = None;
    for item in array(balances, "B")?.iter() {
        let Some(entry) = item.object() else {
            return err(ErrorKind::WrongType, "B");
        };
        if text(entry.get(b"a"), "B.a")? == conn.balance_asset.as_bytes() {
            free = Some(decimal(entry.get(b"f"), "B.f")?);
        }
    }
    let Some(free) = free else {
        return Ok(None);
    };
    let scope = BalanceScope::MarginIsolated(isolated);
    sink(Event::Balance { account: conn.account, scope, available: Amount::from_units(free) });
    Ok(Some(Emitted { event_ms: Some(event_ms), count: 1 }))
}

// ---- shared ----

fn client_order_id(v: Option<Val<'_, '_>>, field: &'static str) -> Res<ClientOrderId> {
    match ClientOrderId::from_wire(text(v, field)?) {
        Some(cid) => Ok(cid),
        None => err(ErrorKind::ClientOrderId, field),
    }
}

/// Order status `X`, futures and spot. The pending and liquidation-specific states are still
/// live orders, so they read as `New` (the engine waits on those).
fn status(x: &[u8], field: &'static str) -> Res<OrderStatus> {
    Ok(match x {
        b"NEW" | b"PENDING_NEW" | b"PENDING_CANCEL" | b"NEW_INSURANCE" | b"NEW_ADL" => {
            OrderStatus::New
        }
        b"PARTIALLY_FILLED" => OrderStatus::PartiallyFilled,
        b"FILLED" => OrderStatus::Filled,
        b"CANCELED" => OrderStatus::Canceled,
        // Expired by self-trade prevention is still expired: `z` tells what filled before.
        b"EXPIRED" | b"EXPIRED_IN_MATCH" => OrderStatus::Expired,
        // A stream rejection is the matching engine's verdict on this exact order.
        b"REJECTED" => OrderStatus::Rejected(RejectKind::Permanent),
        _ => return err(ErrorKind::UnknownValue, field),
    })
}
