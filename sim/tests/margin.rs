//! Isolated margin against the simulator: listen-token subscriptions on the spot WebSocket API,
//! MARGIN_BUY borrowing, AUTO_REPAY repaying from the proceeds, balance and duplicate checks,
//! and every body and event parsed with `feed` to the values the simulator holds.

mod support;

use std::time::Duration;

use engine::Event;
use engine::events::{BalanceScope, OrderStatus};
use engine::money::{Amount, Price, Qty};
use engine::types::{AccountId, OrderSide, Symbol, Venue};
use feed::rest::{parse_isolated_margin_account, parse_listen_token, parse_order, parse_orders};
use feed::wire::{Asset, Connection, Control, EventKind, Parsed};
use sim::{Fault, OrderOutcome, Sim, SimConfig};
use support::{Rest, T, Ws, eventually, parse_frame, parser};

const BTC: &str = "BTCUSDT";

fn btc() -> Symbol {
    Symbol::lit(BTC)
}

fn conn() -> Connection {
    Connection::isolated_margin_user(AccountId(0), btc(), Asset::new(b"USDT").unwrap())
}

/// A listen token for BTCUSDT and a WebSocket API session subscribed with it.
fn subscribe(sim: &Sim, rest: &Rest, validity: Option<u64>) -> (Ws, u64) {
    let extra = validity.map(|v| format!("&validity={v}")).unwrap_or_default();
    let resp = rest.raw(
        "POST",
        &format!("/sapi/v1/userListenToken?isIsolated=TRUE&symbol={BTC}{extra}"),
        "",
        Some(&rest.key),
    );
    let token = parse_listen_token(&mut resp.ok()).unwrap();
    assert!(token.expires_ms > support::now_ms());
    let mut ws = Ws::connect(&sim.urls().spot_wsapi, None).unwrap();
    ws.send(&format!(
        r#"{{"id":"sub-1","method":"userDataStream.subscribe.listenToken","params":{{"listenToken":"{}"}}}}"#,
        token.expose()
    ));
    let reply = ws.next_text(T).unwrap();
    let (parsed, _) = parse_frame(&mut parser(conn()), &reply);
    let Parsed::Control(Control::ApiReply { status: 200, subscription_id: Some(id), .. }) = parsed
    else {
        panic!("{reply}")
    };
    (ws, id)
}

fn margin_order(rest: &Rest, side: &str, qty: &str, extra: &str) -> support::Resp {
    let params =
        format!("symbol={BTC}&isIsolated=TRUE&side={side}&type=MARKET&quantity={qty}{extra}");
    rest.signed("POST", "/sapi/v1/margin/order", &params)
}

fn amount(v: &serde_json::Value) -> Amount {
    Amount::lit(v.as_str().unwrap())
}

#[test]
fn margin_buy_borrows_auto_repay_repays_and_events_follow_each_fill() {
    let sim = Sim::start(SimConfig::manual()).unwrap();
    let rest = Rest::new(&sim.urls().spot_rest, None);
    let (mut ws, sub) = subscribe(&sim, &rest, None);
    let mut p = parser(conn());
    let (bid, ask) = sim.book(Venue::Margin, btc()).unwrap();
    assert_eq!((bid, ask), (Price::lit("49999.99"), Price::lit("50000.01")));

    // 0.3 BTC costs 15000.003 USDT with 10000 free: MARGIN_BUY borrows the 5000.003 missing.
    let resp =
        margin_order(&rest, "BUY", "0.3", "&sideEffectType=MARGIN_BUY&newClientOrderId=rbd-CE-7-1");
    let body = resp.json();
    assert_eq!(body["marginBuyBorrowAsset"], "USDT");
    assert_eq!(amount(&body["marginBuyBorrowAmount"]), Amount::lit("5000.003"));
    let fee = amount(&body["fills"][0]["commission"]);
    assert_eq!(body["fills"][0]["commissionAsset"], "BTC");
    let report = parse_order(&mut resp.ok()).unwrap();
    assert_eq!(
        (report.status, report.executed_qty, report.avg_price),
        (Some(OrderStatus::Filled), Qty::lit("0.3"), ask)
    );
    assert!(resp.header("X-MBX-ORDER-COUNT-1D").is_some());

    // executionReport NEW, executionReport TRADE, outboundAccountPosition, each wrapped.
    let frames: Vec<String> = (0..3).map(|_| ws.next_text(T).unwrap()).collect();
    for f in &frames {
        assert!(f.starts_with(&format!("{{\"subscriptionId\":{sub},\"event\":")), "{f}");
    }
    let (_, new) = parse_frame(&mut p, &frames[0]);
    assert!(
        matches!(new[..], [Event::Order(u)] if u.status == OrderStatus::New && u.cid.as_str() == "rbd-CE-7-1")
    );
    let (_, trade) = parse_frame(&mut p, &frames[1]);
    let [Event::MarginTrade(fill), Event::Order(done)] = trade[..] else { panic!("{trade:?}") };
    assert_eq!((fill.side, fill.qty, fill.price), (OrderSide::Buy, Qty::lit("0.3"), ask));
    assert_eq!(
        (done.status, done.cum_qty, done.avg_price),
        (OrderStatus::Filled, Qty::lit("0.3"), ask)
    );
    let (_, balance) = parse_frame(&mut p, &frames[2]);
    assert_eq!(
        balance[..],
        [Event::Balance {
            account: AccountId(0),
            scope: BalanceScope::MarginIsolated(btc()),
            available: Amount::ZERO
        }]
    );

    let account = rest.signed("GET", "/sapi/v1/margin/isolated/account", "");
    let account = parse_isolated_margin_account(&mut account.ok()).unwrap();
    let pair = account.pairs.iter().find(|p| p.symbol == btc()).unwrap();
    let held = Qty::lit("0.3").units() - fee.units();
    assert_eq!(pair.base_free, Qty::from_units(held));
    assert_eq!(pair.base_net, Qty::from_units(held));
    assert_eq!((pair.quote_free, pair.quote_borrowed), (Amount::ZERO, Amount::lit("5000.003")));
    assert_eq!(pair.quote_net, Amount::lit("-5000.003"));

    // Selling it all with AUTO_REPAY pays the loan back from the proceeds.
    let qty = Qty::from_units(held).to_string();
    let resp =
        margin_order(&rest, "SELL", &qty, "&sideEffectType=AUTO_REPAY&newOrderRespType=FULL");
    let body = resp.json();
    assert!(body.get("marginBuyBorrowAmount").is_none(), "nothing borrowed: {body}");
    let proceeds = amount(&body["cummulativeQuoteQty"]);
    let fee = amount(&body["fills"][0]["commission"]);
    assert_eq!(body["fills"][0]["commissionAsset"], "USDT");
    let pair = sim.isolated(btc()).unwrap();
    assert_eq!(
        (pair.base_free, pair.base_borrowed, pair.quote_borrowed),
        (Qty::ZERO, Qty::ZERO, Amount::ZERO)
    );
    let left = proceeds.units() - fee.units() - Amount::lit("5000.003").units();
    assert_eq!(pair.quote_free, Amount::from_units(left));
    let texts = ws.drain(Duration::from_millis(200));
    let last = texts.last().unwrap();
    let (_, balance) = parse_frame(&mut p, last);
    assert!(
        matches!(balance[..], [Event::Balance { available, .. }] if available.units() == left),
        "{last}"
    );

    // myTrades lists both fills (robsond rebuilds entries from these at start-up).
    let trades = rest
        .signed("GET", "/sapi/v1/margin/myTrades", &format!("symbol={BTC}&isIsolated=TRUE"))
        .json();
    let trades = trades.as_array().unwrap();
    assert_eq!(trades.len(), 2);
    assert_eq!(
        (trades[0]["isBuyer"].as_bool(), Price::lit(trades[0]["price"].as_str().unwrap())),
        (Some(true), ask)
    );
    assert_eq!(
        (trades[1]["isBuyer"].as_bool(), Price::lit(trades[1]["price"].as_str().unwrap())),
        (Some(false), bid)
    );
    assert_eq!(trades[0]["symbol"], BTC);
}

#[test]
fn balance_duplicates_and_cross_margin_are_refused() {
    let sim = Sim::start(SimConfig::manual()).unwrap();
    let rest = Rest::new(&sim.urls().spot_rest, None);
    let r = margin_order(&rest, "SELL", "0.01", "");
    assert_eq!(
        (r.code(), r.json()["msg"].as_str()),
        (Some(-2010), Some("Account has insufficient balance for requested action."))
    );
    let r = margin_order(&rest, "BUY", "1", "&sideEffectType=NO_SIDE_EFFECT");
    assert_eq!(r.code(), Some(-2010));
    // Borrowing stops at the leverage limit (5×): 2 BTC is 100 000 USDT on 10 000.
    let r = margin_order(&rest, "BUY", "2", "&sideEffectType=MARGIN_BUY");
    assert_eq!(r.code(), Some(-2010));
    let r = rest.signed(
        "POST",
        "/sapi/v1/margin/order",
        &format!("symbol={BTC}&side=BUY&type=MARKET&quantity=0.01"),
    );
    assert_eq!(r.code(), Some(-3003), "cross margin: {}", r.body);
    for (qty, filter) in [
        ("0.000001", "-1013"),
        ("0.00001", "NOTIONAL"),
        ("0.000015", "LOT_SIZE"),
        ("200", "MARKET_LOT_SIZE"),
    ] {
        let r = margin_order(&rest, "BUY", qty, "&sideEffectType=MARGIN_BUY");
        assert_eq!(r.code(), Some(-1013), "{qty}: {}", r.body);
        assert!(r.body.contains(filter) || filter == "-1013", "{qty}: {}", r.body);
    }
    let r = margin_order(&rest, "BUY", "0.01", "&newClientOrderId=has.dot");
    assert_eq!(r.code(), Some(-1100), "no dot in spot ids: {}", r.body);

    // A live order's id is refused; once filled it may be used again.
    sim.fault(Fault::DelayFills { delay: Duration::from_millis(1500), orders: 1 });
    let r = margin_order(&rest, "BUY", "0.01", "&newClientOrderId=m-dup&newOrderRespType=RESULT");
    assert_eq!(parse_order(&mut r.ok()).unwrap().status, Some(OrderStatus::New));
    let open =
        rest.signed("GET", "/sapi/v1/margin/openOrders", &format!("symbol={BTC}&isIsolated=TRUE"));
    let open = parse_orders(&mut open.ok()).unwrap();
    assert_eq!(open.iter().map(|o| o.cid.as_str()).collect::<Vec<_>>(), ["m-dup"]);
    let r = margin_order(&rest, "BUY", "0.01", "&newClientOrderId=m-dup");
    assert_eq!((r.code(), r.json()["msg"].as_str()), (Some(-2010), Some("Duplicate order sent.")));
    assert!(eventually(T, || sim.isolated(btc()).unwrap().base_free.is_positive()));
    let q = rest.signed(
        "GET",
        "/sapi/v1/margin/order",
        &format!("symbol={BTC}&isIsolated=TRUE&origClientOrderId=m-dup"),
    );
    assert_eq!(parse_order(&mut q.ok()).unwrap().status, Some(OrderStatus::Filled));
    let r = margin_order(&rest, "BUY", "0.01", "&newClientOrderId=m-dup&newOrderRespType=ACK");
    let ack = parse_order(&mut r.ok()).unwrap();
    assert_eq!((ack.status, ack.cid.as_str()), (None, "m-dup"));
    let outcomes: Vec<OrderOutcome> =
        sim.orders().iter().filter(|o| o.client_order_id == "m-dup").map(|o| o.outcome).collect();
    assert_eq!(
        outcomes,
        [OrderOutcome::Filled, OrderOutcome::Rejected { code: -2010 }, OrderOutcome::Filled]
    );
    let unknown = rest.signed(
        "GET",
        "/sapi/v1/margin/order",
        &format!("symbol={BTC}&isIsolated=TRUE&orderId=1"),
    );
    assert_eq!(unknown.code(), Some(-2013));

    // A refused order does not use up the delay; the next accepted one is held, and canceled.
    sim.fault(Fault::DelayFills { delay: Duration::from_secs(30), orders: 1 });
    assert_eq!(margin_order(&rest, "SELL", "5", "").code(), Some(-2010));
    let r =
        margin_order(&rest, "BUY", "0.01", "&newClientOrderId=m-cancel&newOrderRespType=RESULT");
    let live = parse_order(&mut r.ok()).unwrap();
    assert_eq!(live.status, Some(OrderStatus::New));
    let path = "/sapi/v1/margin/order";
    let del = rest.signed(
        "DELETE",
        path,
        &format!("symbol={BTC}&isIsolated=TRUE&orderId={}", live.order_id),
    );
    let report = parse_order(&mut del.ok()).unwrap();
    assert_eq!((report.status, report.cid.as_str()), (Some(OrderStatus::Canceled), "m-cancel"));
    let again = rest.signed(
        "DELETE",
        path,
        &format!("symbol={BTC}&isIsolated=TRUE&orderId={}", live.order_id),
    );
    assert_eq!(again.code(), Some(-2011));
}

#[test]
fn manual_orders_transfers_and_token_lifecycle_reach_the_websocket_api() {
    let sim = Sim::start(SimConfig::manual()).unwrap();
    let rest = Rest::new(&sim.urls().spot_rest, None);
    let (mut ws, sub) = subscribe(&sim, &rest, None);
    let mut p = parser(conn());
    let fill = sim.manual_order(Venue::Margin, btc(), OrderSide::Sell, Qty::lit("0.01")).unwrap();
    assert!(fill.client_order_id.starts_with("web_"));
    let frames = ws.drain(Duration::from_millis(200));
    assert_eq!(frames.len(), 3, "{frames:?}");
    let (_, trade) = parse_frame(&mut p, &frames[1]);
    assert!(
        matches!(trade[0], Event::MarginTrade(f) if f.side == OrderSide::Sell && f.qty == Qty::lit("0.01"))
    );
    assert!(matches!(trade[1], Event::Order(u) if u.cid.as_str() == fill.client_order_id));
    // The short was borrowed: base owed, proceeds free.
    let pair = sim.isolated(btc()).unwrap();
    assert_eq!((pair.base_free, pair.base_borrowed), (Qty::ZERO, Qty::lit("0.01")));

    sim.transfer_isolated(btc(), false, Amount::lit("250")).unwrap();
    let update = ws.next_text(T).unwrap();
    let (parsed, _) = parse_frame(&mut p, &update);
    assert_eq!(parsed, Parsed::Ignored(EventKind::BalanceUpdate));
    assert!(update.contains("\"d\":\"250.00000000\""), "{update}");
    let position = ws.next_text(T).unwrap();
    let (_, events) = parse_frame(&mut p, &position);
    assert!(
        matches!(events[..], [Event::Balance { available, .. }] if available == sim.isolated(btc()).unwrap().quote_free)
    );

    // An invalid token is -1209; unsubscribing stops the events; termination ends the rest.
    ws.send(r#"{"id":7,"method":"userDataStream.subscribe.listenToken","params":{"listenToken":"nope"}}"#);
    let reply = ws.next_text(T).unwrap();
    let (parsed, _) = parse_frame(&mut p, &reply);
    assert!(
        matches!(
            parsed,
            Parsed::Control(Control::ApiReply { status: 400, error_code: Some(-1209), .. })
        ),
        "{reply}"
    );
    let (mut ws2, sub2) = subscribe(&sim, &rest, None);
    ws.send(&format!(
        r#"{{"id":8,"method":"userDataStream.unsubscribe","params":{{"subscriptionId":{sub}}}}}"#
    ));
    let reply = ws.next_text(T).unwrap();
    assert!(reply.contains("\"status\":200"), "{reply}");
    sim.manual_order(Venue::Margin, btc(), OrderSide::Buy, Qty::lit("0.01")).unwrap();
    assert_eq!(ws2.drain(Duration::from_millis(200)).len(), 3);
    assert!(ws.drain(Duration::from_millis(100)).is_empty());
    sim.fault(Fault::TerminateListenTokens);
    let end = ws2.next_text(T).unwrap();
    let (parsed, _) = parse_frame(&mut p, &end);
    assert!(
        matches!(parsed, Parsed::Control(Control::EventStreamTerminated { subscription_id: Some(id), .. }) if id == sub2),
        "{end}"
    );
    sim.manual_order(Venue::Margin, btc(), OrderSide::Buy, Qty::lit("0.01")).unwrap();
    assert!(ws2.drain(Duration::from_millis(100)).is_empty());

    // A short validity ends by itself.
    let (mut ws3, sub3) = subscribe(&sim, &rest, Some(800));
    let end = ws3.wait_for("eventStreamTerminated", T).unwrap();
    assert!(end.starts_with(&format!("{{\"subscriptionId\":{sub3},")), "{end}");
    // Validity above the 24 h maximum is refused.
    let r = rest.raw(
        "POST",
        &format!("/sapi/v1/userListenToken?isIsolated=TRUE&symbol={BTC}&validity=90000000"),
        "",
        Some(&rest.key),
    );
    assert_eq!(r.code(), Some(-1130));
    let r = rest.raw("POST", "/sapi/v1/userListenToken?isIsolated=TRUE", "", Some(&rest.key));
    assert_eq!(r.code(), Some(-1102));
}

#[test]
fn spot_public_endpoints_parse_with_feed() {
    let sim = Sim::start(SimConfig::manual()).unwrap();
    let rest = Rest::new(&sim.urls().spot_rest, None);
    feed::rest::parse_ping(&mut rest.public("/api/v3/ping").ok()).unwrap();
    assert!(feed::rest::parse_server_time(&mut rest.public("/api/v3/time").ok()).unwrap() > 0);
    let info = rest.public("/api/v3/exchangeInfo?symbols=%5B%22BTCUSDT%22,%22ETHUSDT%22%5D");
    assert_eq!(info.header("X-MBX-USED-WEIGHT-1M"), Some("22"));
    let info = feed::rest::parse_exchange_info(&mut info.ok(), Venue::Margin).unwrap();
    assert_eq!(info.symbols.len(), 2);
    let rules = info.symbols.iter().find(|s| s.symbol == btc()).unwrap().rules;
    assert_eq!(
        (rules.tick, rules.step, rules.min_qty),
        (Price::lit("0.01"), Qty::lit("0.00001"), Qty::lit("0.00001"))
    );
    assert_eq!((rules.max_qty, rules.min_notional), (Qty::lit("100"), Amount::lit("5")));
    assert_eq!(rest.public("/api/v3/exchangeInfo?symbol=NOPE").code(), Some(-1121));
    let book = rest.public(&format!("/api/v3/ticker/bookTicker?symbol={BTC}")).json();
    assert_eq!(Price::lit(book["bidPrice"].as_str().unwrap()), Price::lit("49999.99"));
    assert_eq!(Price::lit(book["askPrice"].as_str().unwrap()), Price::lit("50000.01"));
}
