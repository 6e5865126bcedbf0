//! Engine events and journal records as JSON lines for humans and tools (`robsond decode`,
//! `robsond replay`): prices and quantities as decimal strings, never floats, and the same
//! input always prints the same bytes.

use engine::events::{BalanceScope, Event, Origin};
use engine::types::{MarketKey, OrderSide, PositionKey};
use engine::{Journal, Record};
use serde_json::{Value, json};

fn market(m: &MarketKey) -> (Value, Value) {
    (json!(m.venue.as_str()), json!(m.symbol.as_str()))
}

fn key_fields(k: &PositionKey) -> Value {
    json!({
        "account": k.account.0,
        "venue": k.venue.as_str(),
        "symbol": k.symbol.as_str(),
        "side": k.side.as_str(),
    })
}

fn origin(o: Origin) -> &'static str {
    match o {
        Origin::Stream => "stream",
        Origin::RestFallback => "rest_fallback",
    }
}

fn merge(mut base: Value, extra: Value) -> Value {
    if let (Some(base), Value::Object(extra)) = (base.as_object_mut(), extra) {
        base.extend(extra);
    }
    base
}

/// One engine input event.
pub fn event_json(event: &Event) -> Value {
    match event {
        Event::Mark { market: m, price, origin: o } => {
            let (venue, symbol) = market(m);
            json!({"event": "mark", "venue": venue, "symbol": symbol, "price": price.to_string(), "origin": origin(*o)})
        }
        Event::Trade { market: m, price, origin: o } => {
            let (venue, symbol) = market(m);
            json!({"event": "trade", "venue": venue, "symbol": symbol, "price": price.to_string(), "origin": origin(*o)})
        }
        Event::Book { market: m, bid, ask, origin: o } => {
            let (venue, symbol) = market(m);
            json!({"event": "book", "venue": venue, "symbol": symbol, "bid": bid.to_string(), "ask": ask.to_string(), "origin": origin(*o)})
        }
        Event::Position { key, qty, entry, exchange_ms } => merge(
            json!({"event": "position"}),
            merge(
                key_fields(key),
                json!({"qty": qty.to_string(), "entry": entry.to_string(), "exchange_ms": exchange_ms}),
            ),
        ),
        Event::MarginTrade(fill) => json!({
            "event": "margin_trade",
            "account": fill.account.0,
            "symbol": fill.symbol.as_str(),
            "side": match fill.side { OrderSide::Buy => "BUY", OrderSide::Sell => "SELL" },
            "qty": fill.qty.to_string(),
            "price": fill.price.to_string(),
            "trade_id": fill.trade_id,
            "exchange_ms": fill.exchange_ms,
        }),
        Event::Balance { account, scope, available } => {
            let scope = match scope {
                BalanceScope::UsdmWallet => "usdm_wallet".to_owned(),
                BalanceScope::MarginIsolated(s) => format!("margin_isolated:{}", s.as_str()),
            };
            json!({"event": "balance", "account": account.0, "scope": scope, "available": available.to_string()})
        }
        Event::Order(u) => json!({
            "event": "order",
            "account": u.account.0,
            "venue": u.venue.as_str(),
            "symbol": u.symbol.as_str(),
            "cid": u.cid.as_str(),
            "status": format!("{:?}", u.status),
            "cum_qty": u.cum_qty.to_string(),
            "avg_price": u.avg_price.to_string(),
            "exchange_ms": u.exchange_ms,
        }),
        other => json!({"event": "control", "detail": format!("{other:?}")}),
    }
}

/// One journal record: its sequence, time, stable kind name and its fields.
pub fn record_json(record: &Record) -> Value {
    json!({
        "seq": record.seq,
        "at_ns": record.at.0,
        "kind": persist::codec::kind(&record.event),
        "detail": journal_detail(&record.event),
    })
}

fn journal_detail(event: &Journal) -> String {
    // The Debug form prints money through Display (decimal strings) and is deterministic.
    format!("{event:?}")
}
