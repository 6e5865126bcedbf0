//! USD-M futures against the simulator over real sockets: orders fill at the book, one-way
//! positions follow (VWAP entry, realized PnL, flips), reduce-only and filter rules answer with
//! Binance's codes, duplicate client ids are refused only while live, and every REST body and
//! private-stream frame parses with `feed` to the values the simulator holds.

mod support;

use std::time::Duration;

use engine::Event;
use engine::events::OrderStatus;
use engine::money::{Amount, Price, Qty};
use engine::types::{AccountId, OrderSide, Side, Symbol, Venue};
use feed::rest::{ApiError, PositionSide, classify_response, parse_listen_key, parse_order};
use feed::wire::{Connection, Control, EventKind, Parsed};
use sim::{Fault, OrderOutcome, OrderSource, Sim, SimConfig, SymbolSpec, VenueRules};
use support::{Rest, T, Ws, eventually, parse_frame, parser};

const BTC: &str = "BTCUSDT";

fn btc() -> Symbol {
    Symbol::lit(BTC)
}

fn start() -> (Sim, Rest) {
    let sim = Sim::start(SimConfig::manual()).unwrap();
    let rest = Rest::new(&sim.urls().usdm_rest, None);
    (sim, rest)
}

fn private_stream(sim: &Sim, rest: &Rest) -> Ws {
    let resp = rest.key_only("POST", "/fapi/v1/listenKey");
    let key = parse_listen_key(&mut resp.ok()).unwrap();
    Ws::connect(&format!("{}/private/ws/{}", sim.urls().usdm_ws, key.expose()), None).unwrap()
}

fn market(rest: &Rest, side: &str, qty: &str, extra: &str) -> support::Resp {
    let params = format!("symbol={BTC}&side={side}&type=MARKET&quantity={qty}{extra}");
    rest.signed("POST", "/fapi/v1/order", &params)
}

/// Reads one order's events off the private stream and checks them with feed's parser.
fn order_events(ws: &mut Ws, parser: &mut feed::wire::FrameParser) -> Vec<(EventKind, Vec<Event>)> {
    let mut out = Vec::new();
    while let Some(text) = ws.next_text(T) {
        let (parsed, events) = parse_frame(parser, &text);
        let kind = match parsed {
            Parsed::Events { kind, .. } => kind,
            Parsed::Ignored(kind) => kind,
            Parsed::Control(c) => panic!("unexpected control {c:?}"),
        };
        let done = kind == EventKind::AccountUpdate;
        out.push((kind, events));
        if done {
            break;
        }
    }
    out
}

fn expect_fill_events(
    ws: &mut Ws,
    parser: &mut feed::wire::FrameParser,
    cid: &str,
    cum: Qty,
    avg: Price,
    amount: Qty,
    entry: Price,
) {
    let events = order_events(ws, parser);
    let kinds: Vec<EventKind> = events.iter().map(|(k, _)| *k).collect();
    assert_eq!(
        kinds,
        [
            EventKind::OrderTradeUpdate,
            EventKind::TradeLite,
            EventKind::OrderTradeUpdate,
            EventKind::AccountUpdate
        ]
    );
    let Event::Order(new) = events[0].1[0] else { panic!("{:?}", events[0]) };
    assert_eq!(new.cid.as_str(), cid);
    assert_eq!(new.status, OrderStatus::New);
    let Event::Order(filled) = events[2].1[0] else { panic!("{:?}", events[2]) };
    assert_eq!((filled.status, filled.cum_qty, filled.avg_price), (OrderStatus::Filled, cum, avg));
    // ACCOUNT_UPDATE: the wallet, then both sides of the one-way position.
    let positions: Vec<(Side, Qty, Price)> = events[3]
        .1
        .iter()
        .filter_map(|e| match e {
            Event::Position { key, qty, entry, .. } => Some((key.side, *qty, *entry)),
            _ => None,
        })
        .collect();
    let held = if amount.units() < 0 { Side::Short } else { Side::Long };
    assert!(positions.contains(&(held, amount.abs(), entry)), "{positions:?}");
    assert!(positions.iter().any(|(s, q, _)| *s != held && q.is_zero()), "{positions:?}");
}

#[test]
fn market_orders_fill_at_the_book_and_the_position_follows_increase_decrease_and_flip() {
    let (sim, rest) = start();
    let mut ws = private_stream(&sim, &rest);
    let mut p = parser(Connection::usdm_user(AccountId(0)));
    let (bid, ask) = sim.book(Venue::Usdm, btc()).unwrap();
    assert_eq!((bid, ask), (Price::lit("49999.9"), Price::lit("50000.1")));

    let resp =
        market(&rest, "BUY", "0.010", "&newClientOrderId=rbd-SE-1-1&newOrderRespType=RESULT");
    let report = parse_order(&mut resp.ok()).unwrap();
    assert_eq!(report.status, Some(OrderStatus::Filled));
    assert_eq!(report.executed_qty, Qty::lit("0.010"));
    assert_eq!(report.avg_price, ask);
    assert_eq!(report.position_side, Some(PositionSide::Both));
    assert_eq!(report.cid.as_str(), "rbd-SE-1-1");
    let entry1 = ask;
    expect_fill_events(
        &mut ws,
        &mut p,
        "rbd-SE-1-1",
        Qty::lit("0.01"),
        ask,
        Qty::lit("0.01"),
        entry1,
    );

    // Increase at a higher price: the entry is volume-weighted.
    sim.set_price(Venue::Usdm, btc(), Price::lit("51000")).unwrap();
    let resp =
        market(&rest, "BUY", "0.010", "&newClientOrderId=rbd-SE-1-2&newOrderRespType=RESULT");
    assert_eq!(parse_order(&mut resp.ok()).unwrap().avg_price, Price::lit("51000.1"));
    let vwap = Price::lit("50500.1");
    expect_fill_events(
        &mut ws,
        &mut p,
        "rbd-SE-1-2",
        Qty::lit("0.01"),
        Price::lit("51000.1"),
        Qty::lit("0.02"),
        vwap,
    );
    assert_eq!(sim.position(btc()).entry, vwap);

    // Decrease: the entry stays, the PnL is realized at the bid.
    let resp =
        market(&rest, "SELL", "0.005", "&newClientOrderId=rbd-SE-1-3&newOrderRespType=RESULT");
    assert_eq!(parse_order(&mut resp.ok()).unwrap().avg_price, Price::lit("50999.9"));
    expect_fill_events(
        &mut ws,
        &mut p,
        "rbd-SE-1-3",
        Qty::lit("0.005"),
        Price::lit("50999.9"),
        Qty::lit("0.015"),
        vwap,
    );
    let pos = sim.position(btc());
    assert_eq!((pos.amount, pos.entry), (Qty::lit("0.015"), vwap));
    assert_eq!(pos.realized, Amount::lit("2.499")); // 0.005 × (50999.9 − 50500.1)

    // Flip through zero: the new short's entry is the fill price.
    sim.set_price(Venue::Usdm, btc(), Price::lit("50000")).unwrap();
    let resp =
        market(&rest, "SELL", "0.025", "&newClientOrderId=rbd-SE-1-4&newOrderRespType=RESULT");
    assert_eq!(parse_order(&mut resp.ok()).unwrap().avg_price, bid);
    expect_fill_events(
        &mut ws,
        &mut p,
        "rbd-SE-1-4",
        Qty::lit("0.025"),
        bid,
        Qty::lit("-0.010"),
        bid,
    );
    let pos = sim.position(btc());
    assert_eq!((pos.amount, pos.entry), (Qty::lit("-0.010"), bid));
    // 2.499 + 0.015 × (49999.9 − 50500.1)
    assert_eq!(pos.realized, Amount::lit("-5.004"));

    // The wallet took the realized PnL and a 0.05 % taker fee on every fill's notional.
    let notionals = ["500.001", "510.001", "254.9995", "1249.9975"];
    let fees: i64 = notionals.iter().map(|n| Amount::lit(n).units() * 5 / 10_000).sum();
    let expected = Amount::lit("10000").units() + pos.realized.units() - fees;
    assert_eq!(sim.usdm_wallet(), Amount::from_units(expected));

    // positionRisk agrees (v3 lists the held symbol only; v2 every symbol).
    let resp = rest.signed("GET", "/fapi/v3/positionRisk", "");
    let risks = feed::rest::parse_position_risk(&mut resp.ok()).unwrap();
    assert_eq!(risks.rows.len(), 1);
    assert_eq!(
        (risks.rows[0].symbol, risks.rows[0].amount, risks.rows[0].entry),
        (btc(), Qty::lit("-0.010"), bid)
    );
    let snaps: Vec<_> = risks.snapshots().collect();
    assert!(snaps.iter().any(|s| s.side == Side::Short && s.qty == Qty::lit("0.010")));
    let resp = rest.signed("GET", "/fapi/v2/positionRisk", "");
    assert_eq!(feed::rest::parse_position_risk(&mut resp.ok()).unwrap().rows.len(), 3);

    // The record has every order, in order, with its client id.
    let cids: Vec<String> = sim.orders().iter().map(|o| o.client_order_id.clone()).collect();
    assert_eq!(cids, ["rbd-SE-1-1", "rbd-SE-1-2", "rbd-SE-1-3", "rbd-SE-1-4"]);
    assert!(sim.orders().iter().all(|o| o.outcome == OrderOutcome::Filled));
}

#[test]
fn ack_reports_new_and_query_reports_the_fill() {
    let (sim, rest) = start();
    let resp = market(&rest, "BUY", "0.002", "&newClientOrderId=ack-1");
    let ack = parse_order(&mut resp.ok()).unwrap();
    // Binance's ACK is the order as accepted: NEW, nothing executed yet.
    assert_eq!((ack.status, ack.executed_qty), (Some(OrderStatus::New), Qty::ZERO));
    assert!(resp.header("X-MBX-ORDER-COUNT-10S").is_some());
    assert!(resp.header("X-MBX-ORDER-COUNT-1M").is_some());
    let q = rest.signed("GET", "/fapi/v1/order", &format!("symbol={BTC}&origClientOrderId=ack-1"));
    let got = parse_order(&mut q.ok()).unwrap();
    assert_eq!(got.order_id, ack.order_id);
    assert!(got.order_id > u64::from(u32::MAX), "ids exceed 2^32 as Binance's do");
    assert_eq!(
        (got.status, got.executed_qty, got.avg_price),
        (Some(OrderStatus::Filled), Qty::lit("0.002"), Price::lit("50000.1"))
    );
    let by_id =
        rest.signed("GET", "/fapi/v1/order", &format!("symbol={BTC}&orderId={}", ack.order_id));
    assert_eq!(parse_order(&mut by_id.ok()).unwrap().cid.as_str(), "ack-1");
    let missing =
        rest.signed("GET", "/fapi/v1/order", &format!("symbol={BTC}&origClientOrderId=nope"));
    assert_eq!((missing.status, missing.code()), (400, Some(-2013)));
    let err =
        classify_response(missing.status, Vec::<(String, String)>::new(), missing.body.as_bytes());
    assert!(matches!(
        err,
        Err(feed::rest::RestError::Api { error: ApiError::UnknownOrder { code: -2013 }, .. })
    ));
    drop(sim);
}

#[test]
fn reduce_only_is_refused_when_it_would_increase_and_capped_to_the_position() {
    let (sim, rest) = start();
    let r = market(&rest, "SELL", "0.010", "&reduceOnly=true");
    assert_eq!(r.code(), Some(-2022), "nothing to reduce: {}", r.body);
    market(&rest, "BUY", "0.010", "").ok();
    let r = market(&rest, "BUY", "0.010", "&reduceOnly=true");
    assert_eq!(r.code(), Some(-2022), "same direction increases: {}", r.body);
    assert_eq!(sim.position(btc()).amount, Qty::lit("0.010"));
    let r = market(&rest, "SELL", "0.030", "&reduceOnly=true&newOrderRespType=RESULT");
    let report = parse_order(&mut r.ok()).unwrap();
    assert_eq!(
        (report.executed_qty, report.orig_qty),
        (Qty::lit("0.010"), Some(Qty::lit("0.010")))
    );
    assert_eq!(sim.position(btc()).amount, Qty::ZERO);
    let rejected: Vec<i64> = sim
        .orders()
        .iter()
        .filter_map(|o| match o.outcome {
            OrderOutcome::Rejected { code } => Some(code),
            _ => None,
        })
        .collect();
    assert_eq!(rejected, [-2022, -2022]);
    // Reduce-only is exempt from the minimum notional: 0.001 BTC is 50 USDT < 100.
    market(&rest, "BUY", "0.002", "").ok();
    let r = market(&rest, "SELL", "0.001", "&reduceOnly=true");
    assert_eq!(r.status, 200, "{}", r.body);
    let r = market(&rest, "SELL", "0.001", "");
    assert_eq!(r.code(), Some(-4164), "{}", r.body);
}

#[test]
fn a_live_client_id_is_refused_and_a_filled_one_may_be_reused() {
    let (sim, rest) = start();
    let mut ws = private_stream(&sim, &rest);
    let mut p = parser(Connection::usdm_user(AccountId(0)));
    sim.fault(Fault::DelayFills { delay: Duration::from_millis(1500), orders: 1 });
    let first = market(&rest, "BUY", "0.003", "&newClientOrderId=dup&newOrderRespType=RESULT");
    let first = parse_order(&mut first.ok()).unwrap();
    assert_eq!(first.status, Some(OrderStatus::New));
    let open = rest.signed("GET", "/fapi/v1/openOrders", &format!("symbol={BTC}"));
    let open = feed::rest::parse_orders(&mut open.ok()).unwrap();
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].cid.as_str(), "dup");
    let second = market(&rest, "BUY", "0.003", "&newClientOrderId=dup");
    assert_eq!(second.code(), Some(-4116), "{}", second.body);
    // The delayed fill comes; the id is then free again.
    assert!(eventually(T, || sim.position(btc()).amount == Qty::lit("0.003")));
    let third = market(&rest, "BUY", "0.003", "&newClientOrderId=dup&newOrderRespType=RESULT");
    assert_eq!(parse_order(&mut third.ok()).unwrap().status, Some(OrderStatus::Filled));
    let outcomes: Vec<OrderOutcome> = sim.orders().iter().map(|o| o.outcome).collect();
    assert_eq!(
        outcomes,
        [OrderOutcome::Filled, OrderOutcome::Rejected { code: -4116 }, OrderOutcome::Filled]
    );
    // The live order's events: NEW at once, the fill later.
    let text = ws.next_text(T).unwrap();
    let (_, events) = parse_frame(&mut p, &text);
    assert!(matches!(events[0], Event::Order(u) if u.status == OrderStatus::New));
    let fill = ws.wait_for("\"x\":\"TRADE\"", T).unwrap();
    let (_, events) = parse_frame(&mut p, &fill);
    assert!(
        matches!(events[0], Event::Order(u) if u.status == OrderStatus::Filled && u.cid.as_str() == "dup")
    );

    // A live order can be canceled; a filled one cannot.
    sim.fault(Fault::DelayFills { delay: Duration::from_secs(30), orders: 1 });
    let live =
        parse_order(&mut market(&rest, "BUY", "0.003", "&newClientOrderId=c1").ok()).unwrap();
    let del =
        rest.signed("DELETE", "/fapi/v1/order", &format!("symbol={BTC}&orderId={}", live.order_id));
    assert_eq!(parse_order(&mut del.ok()).unwrap().status, Some(OrderStatus::Canceled));
    let again =
        rest.signed("DELETE", "/fapi/v1/order", &format!("symbol={BTC}&orderId={}", live.order_id));
    assert_eq!(again.code(), Some(-2011));
    let canceled = ws.wait_for("\"X\":\"CANCELED\"", T).unwrap();
    let (_, events) = parse_frame(&mut p, &canceled);
    assert!(matches!(events[0], Event::Order(u) if u.status == OrderStatus::Canceled));
}

#[test]
fn filters_and_parameters_answer_with_binance_codes() {
    let mut cfg = SimConfig::manual();
    // A half-unit tick and a 0.05 step, so that a price or a quantity can be on the precision
    // and still off the grid.
    let mut odd = SymbolSpec::solusdt(Price::lit("100"));
    odd.symbol = Symbol::lit("ODDUSDT");
    odd.usdm = Some(VenueRules {
        tick: Price::lit("0.5"),
        min_price: Price::lit("1"),
        step: Qty::lit("0.05"),
        min_qty: Qty::lit("0.05"),
        ..odd.usdm.unwrap()
    });
    cfg.symbols.push(odd);
    let sim = Sim::start(cfg).unwrap();
    let rest = Rest::new(&sim.urls().usdm_rest, None);
    let order = |params: &str| rest.signed("POST", "/fapi/v1/order", params);
    let cases = [
        (format!("symbol={BTC}&side=BUY&type=MARKET&quantity=0.0015"), -1111),
        (format!("symbol={BTC}&side=BUY&type=MARKET&quantity=0"), -4003),
        (format!("symbol={BTC}&side=BUY&type=MARKET&quantity=200"), -4005),
        (format!("symbol={BTC}&side=BUY&type=MARKET&quantity=1e3"), -1100),
        (format!("symbol={BTC}&side=BUY&type=MARKET"), -1102),
        ("symbol=ETHUSDT&side=BUY&type=MARKET&quantity=0.001".into(), -4164),
        (format!("symbol={BTC}&side=BUY&type=STOP_MARKET&quantity=0.01&stopPrice=1"), -4120),
        (format!("symbol={BTC}&side=BUY&type=MARKET&quantity=0.01&positionSide=LONG"), -4061),
        ("symbol=NOPEUSDT&side=BUY&type=MARKET&quantity=0.01".into(), -1121),
        (
            format!(
                "symbol={BTC}&side=BUY&type=MARKET&quantity=0.01&newClientOrderId={}",
                "x".repeat(37)
            ),
            -4015,
        ),
        (format!("symbol={BTC}&side=BUY&type=MARKET&quantity=0.01&newClientOrderId=a%20b"), -1100),
        ("symbol=ODDUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=100.2".into(), -4014),
        ("symbol=ODDUSDT&side=BUY&type=MARKET&quantity=1.02".into(), -4023),
    ];
    for (params, code) in cases {
        let r = order(&params);
        assert_eq!((r.status, r.code()), (400, Some(code)), "{params}: {}", r.body);
        let classified =
            classify_response(r.status, Vec::<(String, String)>::new(), r.body.as_bytes());
        assert!(matches!(classified, Err(feed::rest::RestError::Api { .. })), "{classified:?}");
    }
    let notional = order("symbol=ETHUSDT&side=BUY&type=MARKET&quantity=0.001");
    assert!(notional.body.contains("no smaller than 20"), "{}", notional.body);
    // A limit off the market rests, and fills at its price once the market reaches it.
    let r = order(
        "symbol=ODDUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=99.5&newOrderRespType=RESULT",
    );
    assert_eq!(parse_order(&mut r.ok()).unwrap().status, Some(OrderStatus::New));
    sim.set_price(Venue::Usdm, Symbol::lit("ODDUSDT"), Price::lit("99")).unwrap();
    sim.step();
    let pos = sim.position(Symbol::lit("ODDUSDT"));
    assert_eq!((pos.amount, pos.entry), (Qty::lit("1"), Price::lit("99.5")));
}

#[test]
fn manual_orders_reach_the_private_stream_like_any_other() {
    let (sim, rest) = start();
    let mut ws = private_stream(&sim, &rest);
    let mut p = parser(Connection::usdm_user(AccountId(3)));
    let fill = sim.manual_order(Venue::Usdm, btc(), OrderSide::Sell, Qty::lit("0.004")).unwrap();
    assert!(fill.client_order_id.starts_with("web_"), "{}", fill.client_order_id);
    assert_eq!((fill.qty, fill.price), (Qty::lit("0.004"), Price::lit("49999.9")));
    let events = order_events(&mut ws, &mut p);
    let (kind, account) = events.last().unwrap();
    assert_eq!(*kind, EventKind::AccountUpdate);
    let short = account.iter().find_map(|e| match e {
        Event::Position { key, qty, entry, .. } if key.side == Side::Short => {
            Some((key.account, *qty, *entry))
        }
        _ => None,
    });
    assert_eq!(short, Some((AccountId(3), Qty::lit("0.004"), Price::lit("49999.9"))));
    let balance = account.iter().find_map(|e| match e {
        Event::Balance { available, .. } => Some(*available),
        _ => None,
    });
    assert_eq!(balance, Some(sim.usdm_wallet()));
    let rec = sim.orders().pop().unwrap();
    assert_eq!(rec.source, OrderSource::Manual);
    assert_eq!(rec.client_order_id, fill.client_order_id);
    // A deposit is an ACCOUNT_UPDATE without positions.
    sim.deposit_usdm(Amount::lit("100"));
    let text = ws.wait_for("DEPOSIT", T).unwrap();
    let (_, events) = parse_frame(&mut p, &text);
    assert!(matches!(events[..], [Event::Balance { .. }]), "{events:?}");
}

#[test]
fn listen_keys_expire_are_kept_alive_and_refused_once_gone() {
    let cfg = SimConfig { listen_key_validity: Duration::from_millis(1500), ..SimConfig::manual() };
    let sim = Sim::start(cfg).unwrap();
    let rest = Rest::new(&sim.urls().usdm_rest, None);
    let mut p = parser(Connection::usdm_user(AccountId(0)));
    assert_eq!(rest.key_only("PUT", "/fapi/v1/listenKey").code(), Some(-1125));
    let k1 = parse_listen_key(&mut rest.key_only("POST", "/fapi/v1/listenKey").ok()).unwrap();
    let k1b = parse_listen_key(&mut rest.key_only("POST", "/fapi/v1/listenKey").ok()).unwrap();
    assert_eq!(k1, k1b, "POST with an active key returns it");
    let mut ws =
        Ws::connect(&format!("{}/private/ws?listenKey={}", sim.urls().usdm_ws, k1.expose()), None)
            .unwrap();
    // Without a keepalive the key lapses by itself.
    let text = ws.wait_for("listenKeyExpired", T).unwrap();
    let (parsed, _) = parse_frame(&mut p, &text);
    assert!(matches!(parsed, Parsed::Control(Control::ListenKeyExpired { .. })), "{parsed:?}");
    assert_eq!(rest.key_only("PUT", "/fapi/v1/listenKey").code(), Some(-1125));
    // Events no longer reach the old key's connection; a new key's connection gets them.
    let k2 = parse_listen_key(&mut rest.key_only("POST", "/fapi/v1/listenKey").ok()).unwrap();
    assert_ne!(k1, k2);
    assert!(
        Ws::connect(&format!("{}/private/ws/{}", sim.urls().usdm_ws, k1.expose()), None).is_err()
    );
    let mut ws2 =
        Ws::connect(&format!("{}/private/ws/{}", sim.urls().usdm_ws, k2.expose()), None).unwrap();
    let put = parse_listen_key(&mut rest.key_only("PUT", "/fapi/v1/listenKey").ok()).unwrap();
    assert_eq!(put, k2);
    sim.manual_order(Venue::Usdm, btc(), OrderSide::Buy, Qty::lit("0.003")).unwrap();
    assert!(ws2.wait_for("ACCOUNT_UPDATE", T).is_some());
    assert!(ws.drain(Duration::from_millis(200)).is_empty());
    // The fault expires it at once.
    sim.fault(Fault::ExpireListenKey);
    let text = ws2.wait_for("listenKeyExpired", T).unwrap();
    assert!(text.contains(k2.expose()));
    // DELETE closes the stream.
    let k3 = parse_listen_key(&mut rest.key_only("POST", "/fapi/v1/listenKey").ok()).unwrap();
    let mut ws3 = Ws::connect(
        &format!(
            "{}/private/stream?listenKey={}&events=ORDER_TRADE_UPDATE",
            sim.urls().usdm_ws,
            k3.expose()
        ),
        None,
    )
    .unwrap();
    sim.manual_order(Venue::Usdm, btc(), OrderSide::Sell, Qty::lit("0.003")).unwrap();
    // Filtered to ORDER_TRADE_UPDATE and wrapped as a combined stream named by the key.
    let frames = ws3.drain(Duration::from_millis(300));
    assert_eq!(frames.len(), 2, "{frames:?}");
    for f in &frames {
        assert!(f.starts_with(&format!("{{\"stream\":\"{}\"", k3.expose())), "{f}");
        let (parsed, _) = parse_frame(&mut p, f);
        assert!(matches!(parsed, Parsed::Events { kind: EventKind::OrderTradeUpdate, .. }));
    }
    assert_eq!(rest.key_only("DELETE", "/fapi/v1/listenKey").status, 200);
    assert!(ws3.closes_within(T));
}

#[test]
fn public_endpoints_parse_with_feed() {
    let (_sim, rest) = start();
    feed::rest::parse_ping(&mut rest.public("/fapi/v1/ping").ok()).unwrap();
    let t = feed::rest::parse_server_time(&mut rest.public("/fapi/v1/time").ok()).unwrap();
    assert!(t.abs_diff(support::now_ms()) < 60_000);
    let info = rest.public("/fapi/v1/exchangeInfo");
    assert_eq!(info.header("X-MBX-USED-WEIGHT-1M"), Some("3"));
    let info = feed::rest::parse_exchange_info(&mut info.ok(), Venue::Usdm).unwrap();
    assert!(info.skipped.is_empty(), "{:?}", info.skipped);
    let btc_rules = info.symbols.iter().find(|s| s.symbol == btc()).unwrap();
    assert!(btc_rules.trading);
    assert_eq!(btc_rules.rules.tick, Price::lit("0.1"));
    assert_eq!(btc_rules.rules.step, Qty::lit("0.001"));
    assert_eq!(btc_rules.rules.min_qty, Qty::lit("0.001"));
    assert_eq!(btc_rules.rules.max_qty, Qty::lit("120"));
    assert_eq!(btc_rules.rules.min_notional, Amount::lit("100"));
    assert_eq!(info.rate_limits.len(), 3);
    let premium = rest.public(&format!("/fapi/v1/premiumIndex?symbol={BTC}")).json();
    assert_eq!(premium["markPrice"], "50000.00000000");
    let book = rest.public(&format!("/fapi/v1/ticker/bookTicker?symbol={BTC}")).json();
    assert_eq!(
        (book["bidPrice"].as_str(), book["askPrice"].as_str()),
        (Some("49999.9"), Some("50000.1"))
    );
    let all = rest.public("/fapi/v1/ticker/bookTicker").json();
    assert_eq!(all.as_array().map(Vec::len), Some(3));
    assert_eq!(rest.public("/fapi/v1/nothing").status, 404);
}
