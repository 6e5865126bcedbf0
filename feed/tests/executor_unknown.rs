//! The executor's central rule over real loopback HTTP: an order whose outcome is unknown (5xx,
//! a time-out after sending) is queried by `origClientOrderId` before anything else goes out for
//! its position; found filled, it is never re-sent; "does not exist" is believed only once the
//! order's `recvWindow` has lapsed, and then the held intents go out in order. Each test asserts
//! the exact request sequence the server saw.

mod http_common;

use std::time::Duration;

use engine::Venue;
use engine::events::{Intent, OrderStatus};
use engine::types::OrderPurpose::{Close, Entry};
use engine::{MarketKey, Qty, Symbol, SymbolRules};
use feed::rest::{
    Api, ExecutorConfig, HttpConfig, ManualClock, Note, OrderExecutor, PositionMode, RestConfig,
};
use http_common::{
    Collect, Mock, Reply, T0, client, client_with, fast_http, futures_filled, intent,
};

fn executor(config: ExecutorConfig, rest: feed::rest::RestClient) -> OrderExecutor {
    let mut exec = OrderExecutor::new(config);
    exec.add_venue(engine::AccountId(0), Venue::Usdm, rest, PositionMode::OneWay);
    for symbol in ["BTCUSDT", "ETHUSDT"] {
        exec.set_rules(
            MarketKey { venue: Venue::Usdm, symbol: Symbol::lit(symbol) },
            SymbolRules { step: Qty::lit("0.001"), ..SymbolRules::UNRESTRICTED },
        );
    }
    exec
}

/// `METHOD /path cid` for order requests, `METHOD /path` for the rest.
fn trace(mock: &Mock) -> Vec<String> {
    mock.requests()
        .iter()
        .map(|r| match r.param("newClientOrderId").or(r.param("origClientOrderId")) {
            Some(cid) => format!("{} {cid}", r.line()),
            None => r.line(),
        })
        .collect()
}

#[test]
fn a_5xx_close_that_filled_is_found_by_query_and_never_resent() {
    let clock = ManualClock::new(T0);
    let mock = Mock::start(clock.clone());
    let mut exec = executor(ExecutorConfig::default(), client(Api::Futures, &mock, &clock));
    let a = intent(Venue::Usdm, "BTCUSDT", Close, 1, "0.004");
    let b = intent(Venue::Usdm, "BTCUSDT", Close, 2, "0.004");
    let other = intent(Venue::Usdm, "ETHUSDT", Close, 3, "0.5");
    mock.script("POST", "/fapi/v1/order", Reply::json(500, ""));
    mock.script("POST", "/fapi/v1/order", Reply::ok(futures_filled("rbd-SX-3-1", "0.5", "2000")));
    mock.script("GET", "/fapi/v1/order", Reply::ok(futures_filled("rbd-SX-1-1", "0.004", "30000")));
    mock.script(
        "POST",
        "/fapi/v1/order",
        Reply::ok(futures_filled("rbd-SX-2-1", "0.004", "29990")),
    );
    for i in [a, b, other] {
        exec.submit(Intent::Place(i), T0);
    }
    let mut sink = Collect::default();

    let outcome = exec.poll(T0, &mut sink);
    // A's fate is unknown: its lane (with B) is frozen; the other position's close still went.
    assert_eq!(
        sink.take(),
        [("rbd-SX-1-1".into(), OrderStatus::Unknown), ("rbd-SX-3-1".into(), OrderStatus::Filled)]
    );
    assert_eq!((outcome.queued, outcome.unresolved), (1, 1));
    assert_eq!(outcome.next_due_ms, Some(T0 + 500));
    // The engine asks about A as it does after `Unknown`: that joins the settling query.
    exec.submit(
        Intent::Query {
            account: a.key.account,
            venue: Venue::Usdm,
            symbol: a.key.symbol,
            cid: a.cid,
        },
        T0 + 1,
    );
    let quiet = exec.poll(T0 + 499, &mut sink);
    assert_eq!(quiet.requests, 0);
    assert!(sink.take().is_empty());

    exec.poll(T0 + 500, &mut sink);
    assert_eq!(
        sink.take(),
        [("rbd-SX-1-1".into(), OrderStatus::Filled), ("rbd-SX-2-1".into(), OrderStatus::Filled)]
    );
    assert_eq!(
        trace(&mock),
        [
            "GET /fapi/v1/time",
            "POST /fapi/v1/order rbd-SX-1-1",
            "POST /fapi/v1/order rbd-SX-3-1",
            "GET /fapi/v1/order rbd-SX-1-1",
            "POST /fapi/v1/order rbd-SX-2-1",
        ]
    );
    assert_eq!(mock.unused_script(), 0);
    mock.assert_signatures_verified();
    let done = exec.poll(T0 + 10_000, &mut sink);
    assert_eq!((done.requests, done.queued, done.unresolved, done.next_due_ms), (0, 0, 0, None));
}

#[test]
fn does_not_exist_is_believed_after_the_recv_window_and_then_the_held_intents_go_out() {
    let clock = ManualClock::new(T0);
    let mock = Mock::start(clock.clone());
    let rest_config = RestConfig { recv_window_ms: 2_000, ..RestConfig::default() };
    let rest = client_with(Api::Futures, &mock.url(), &fast_http(), &rest_config, &clock);
    let config = ExecutorConfig {
        first_query_delay_ms: 300,
        not_found_grace_ms: 500,
        ..ExecutorConfig::default()
    };
    let mut exec = executor(config, rest);
    let a = intent(Venue::Usdm, "BTCUSDT", Close, 1, "0.004");
    let e = intent(Venue::Usdm, "BTCUSDT", Entry, 3, "0.004");
    let b = intent(Venue::Usdm, "BTCUSDT", Close, 2, "0.004");
    mock.script(
        "POST",
        "/fapi/v1/order",
        Reply::json(
            503,
            r#"{"code":-1000,"msg":"Unknown error, please check your request or try again later."}"#,
        ),
    );
    mock.script("GET", "/fapi/v1/order", Reply::fixture(400, "error_-2013.json"));
    mock.script("GET", "/fapi/v1/order", Reply::fixture(400, "error_-2013.json"));
    mock.script(
        "POST",
        "/fapi/v1/order",
        Reply::ok(futures_filled("rbd-SE-3-1", "0.004", "29995")),
    );
    mock.script(
        "POST",
        "/fapi/v1/order",
        Reply::ok(futures_filled("rbd-SX-2-1", "0.004", "29990")),
    );
    // One position's queue: held intents keep their order (the entry before the later close).
    exec.submit(Intent::Place(a), T0);
    exec.submit(Intent::Place(e), T0);
    exec.submit(Intent::Place(b), T0);
    let mut sink = Collect::default();

    exec.poll(T0, &mut sink);
    assert_eq!(sink.take(), [("rbd-SX-1-1".into(), OrderStatus::Unknown)]);
    // A was signed at T0 with recvWindow 2 s: it could still arrive until T0 + 2 s (+0.5 s).
    clock.set(T0 + 300);
    let early = exec.poll(T0 + 300, &mut sink);
    assert_eq!(early.requests, 1);
    assert!(sink.take().is_empty(), "an early -2013 is not an answer");
    assert_eq!(early.next_due_ms, Some(T0 + 2_500));
    assert!(sink.notes.contains(&Note::Unresolved { cid: a.cid, next_query_ms: T0 + 2_500 }));
    clock.set(T0 + 2_499);
    assert_eq!(exec.poll(T0 + 2_499, &mut sink).requests, 0);

    clock.set(T0 + 2_500);
    exec.poll(T0 + 2_500, &mut sink);
    assert_eq!(
        sink.take(),
        [
            ("rbd-SX-1-1".into(), OrderStatus::NotFound),
            ("rbd-SE-3-1".into(), OrderStatus::Filled),
            ("rbd-SX-2-1".into(), OrderStatus::Filled),
        ]
    );
    assert_eq!(
        trace(&mock),
        [
            "GET /fapi/v1/time",
            "POST /fapi/v1/order rbd-SX-1-1",
            "GET /fapi/v1/order rbd-SX-1-1",
            "GET /fapi/v1/order rbd-SX-1-1",
            "POST /fapi/v1/order rbd-SE-3-1",
            "POST /fapi/v1/order rbd-SX-2-1",
        ]
    );
    mock.assert_signatures_verified();
}

#[test]
fn a_close_that_timed_out_after_sending_is_queried_not_resent() {
    let clock = ManualClock::new(T0);
    let mock = Mock::start(clock.clone());
    let http = HttpConfig { request_timeout: Duration::from_millis(300), ..fast_http() };
    let rest = client_with(Api::Futures, &mock.url(), &http, &RestConfig::default(), &clock);
    let mut exec = executor(ExecutorConfig::default(), rest);
    let a = intent(Venue::Usdm, "BTCUSDT", Close, 1, "0.004");
    // The server executes the order but answers too late.
    mock.script(
        "POST",
        "/fapi/v1/order",
        Reply::ok(futures_filled("rbd-SX-1-1", "0.004", "30000"))
            .delayed(Duration::from_millis(1500)),
    );
    mock.script("GET", "/fapi/v1/order", Reply::ok(futures_filled("rbd-SX-1-1", "0.004", "30000")));
    exec.submit(Intent::Place(a), T0);
    let mut sink = Collect::default();
    exec.poll(T0, &mut sink);
    assert_eq!(sink.take(), [("rbd-SX-1-1".into(), OrderStatus::Unknown)]);
    assert!(sink.notes.iter().any(|n| matches!(
        n,
        Note::Failed {
            error: feed::rest::CallError::Transport(feed::rest::TransportError::MaybeSent(_)),
            ..
        }
    )));
    clock.set(T0 + 500);
    exec.poll(T0 + 500, &mut sink);
    let events = std::mem::take(&mut sink.events);
    let engine::Event::Order(update) = events[0] else { panic!("{events:?}") };
    assert_eq!((update.status, update.cum_qty), (OrderStatus::Filled, Qty::lit("0.004")));
    assert_eq!(update.avg_price, engine::Price::lit("30000"));
    assert_eq!(
        trace(&mock),
        ["GET /fapi/v1/time", "POST /fapi/v1/order rbd-SX-1-1", "GET /fapi/v1/order rbd-SX-1-1"]
    );
}

#[test]
fn failing_queries_repeat_with_doubling_backoff_while_the_position_stays_frozen() {
    let clock = ManualClock::new(T0);
    let mock = Mock::start(clock.clone());
    let config = ExecutorConfig {
        first_query_delay_ms: 100,
        query_backoff_cap_ms: 350,
        ..ExecutorConfig::default()
    };
    let mut exec = executor(config, client(Api::Futures, &mock, &clock));
    let a = intent(Venue::Usdm, "BTCUSDT", Close, 1, "0.004");
    let entry = intent(Venue::Usdm, "BTCUSDT", Entry, 2, "0.004");
    mock.script("POST", "/fapi/v1/order", Reply::json(502, "<html>Bad Gateway</html>"));
    for _ in 0..3 {
        mock.script("GET", "/fapi/v1/order", Reply::json(504, ""));
    }
    mock.script("GET", "/fapi/v1/order", Reply::ok(futures_filled("rbd-SX-1-1", "0.004", "30000")));
    mock.script(
        "POST",
        "/fapi/v1/order",
        Reply::ok(futures_filled("rbd-SE-2-1", "0.004", "30010")),
    );
    exec.submit(Intent::Place(a), T0);
    exec.submit(Intent::Place(entry), T0);
    let mut sink = Collect::default();
    exec.poll(T0, &mut sink);
    // Queries fall due at +100, then 200, 350 (capped) and 350 later; nothing before.
    let mut at = T0;
    let mut schedule = Vec::new();
    for wait in [100, 200, 350, 350] {
        assert_eq!(
            exec.poll(at + wait - 1, &mut sink).requests,
            0,
            "early at +{}",
            at + wait - 1 - T0
        );
        at += wait;
        clock.set(at);
        let outcome = exec.poll(at, &mut sink);
        schedule.push((at - T0, outcome.requests));
    }
    // The last poll sent two: the query that found the close, then the entry held behind it.
    assert_eq!(schedule, [(100, 1), (300, 1), (650, 1), (1000, 2)]);
    assert_eq!(
        sink.take(),
        [
            ("rbd-SX-1-1".into(), OrderStatus::Unknown),
            ("rbd-SX-1-1".into(), OrderStatus::Filled),
            ("rbd-SE-2-1".into(), OrderStatus::Filled),
        ]
    );
    let failed = sink.notes.iter().filter(|n| matches!(n, Note::Failed { .. })).count();
    assert_eq!(failed, 4, "the 502 and three 504s are reported");
    assert_eq!(
        trace(&mock),
        [
            "GET /fapi/v1/time",
            "POST /fapi/v1/order rbd-SX-1-1",
            "GET /fapi/v1/order rbd-SX-1-1",
            "GET /fapi/v1/order rbd-SX-1-1",
            "GET /fapi/v1/order rbd-SX-1-1",
            "GET /fapi/v1/order rbd-SX-1-1",
            "POST /fapi/v1/order rbd-SE-2-1",
        ]
    );
}

#[test]
fn a_query_about_an_order_from_before_a_restart_waits_out_its_recv_window() {
    let clock = ManualClock::new(T0);
    let mock = Mock::start(clock.clone());
    let mut exec = executor(ExecutorConfig::default(), client(Api::Futures, &mock, &clock));
    // Nothing is known of these ids: a previous owner may have sent them a moment ago, so
    // "does not exist" is believed only from a query signed after such an order's recvWindow
    // (5 s) and the grace (1 s). Queries of one market share a lane: the second waits.
    let symbol = Symbol::lit("BTCUSDT");
    let gone = engine::ClientOrderId::from_wire(b"rbd-SX-9-4").unwrap();
    let live = engine::ClientOrderId::from_wire(b"rbd-SX-8-2").unwrap();
    mock.script("GET", "/fapi/v1/order", Reply::fixture(400, "error_-2013.json"));
    mock.script("GET", "/fapi/v1/order", Reply::fixture(400, "error_-2013.json"));
    mock.script("GET", "/fapi/v1/order", Reply::ok(futures_filled("rbd-SX-8-2", "1", "5")));
    for cid in [gone, live] {
        exec.submit(
            Intent::Query { account: engine::AccountId(0), venue: Venue::Usdm, symbol, cid },
            T0,
        );
    }
    let mut sink = Collect::default();
    let outcome = exec.poll(T0, &mut sink);
    assert_eq!(sink.take(), [], "not believed yet");
    assert_eq!(outcome.unresolved, 1);
    clock.advance(5_999);
    exec.poll(T0 + 5_999, &mut sink);
    assert_eq!(sink.take(), [], "still inside the window");
    clock.advance(1);
    exec.poll(T0 + 6_000, &mut sink);
    assert_eq!(
        sink.take(),
        [("rbd-SX-9-4".into(), OrderStatus::NotFound), ("rbd-SX-8-2".into(), OrderStatus::Filled)]
    );
    assert_eq!(
        trace(&mock),
        [
            "GET /fapi/v1/time",
            "GET /fapi/v1/order rbd-SX-9-4",
            "GET /fapi/v1/order rbd-SX-9-4",
            "GET /fapi/v1/order rbd-SX-8-2",
        ]
    );
}

#[test]
fn a_5xx_whose_body_names_a_rate_limit_is_settled_by_query_not_resent() {
    let clock = ManualClock::new(T0);
    let mock = Mock::start(clock.clone());
    let mut exec = executor(ExecutorConfig::default(), client(Api::Futures, &mock, &clock));
    let close = intent(Venue::Usdm, "BTCUSDT", Close, 1, "0.004");
    // A 5xx may have executed whatever its body says; Binance would not dedupe a re-send.
    let body =
        r#"{"code":-1003,"msg":"Too many requests; please use the websocket for live updates."}"#;
    mock.script("POST", "/fapi/v1/order", Reply::json(503, body));
    mock.script("GET", "/fapi/v1/order", Reply::ok(futures_filled("rbd-SX-1-1", "0.004", "30000")));
    exec.submit(Intent::Place(close), T0);
    let mut sink = Collect::default();
    let mut now = T0;
    // The -1003 also makes the client back off: the query goes out when the limiter allows.
    while now < T0 + 120_000 && sink.events.len() < 2 {
        exec.poll(now, &mut sink);
        now += 250;
        clock.set(now);
    }
    assert_eq!(
        sink.take(),
        [("rbd-SX-1-1".into(), OrderStatus::Unknown), ("rbd-SX-1-1".into(), OrderStatus::Filled)]
    );
    assert_eq!(
        trace(&mock),
        ["GET /fapi/v1/time", "POST /fapi/v1/order rbd-SX-1-1", "GET /fapi/v1/order rbd-SX-1-1"]
    );
}

#[test]
fn one_way_futures_keep_a_close_and_an_opposite_entry_in_order() {
    let clock = ManualClock::new(T0);
    let mock = Mock::start(clock.clone());
    let mut exec = executor(ExecutorConfig::default(), client(Api::Futures, &mock, &clock));
    let close_long = intent(Venue::Usdm, "BTCUSDT", Close, 1, "0.004");
    // Core entering short on the same symbol: in one-way mode, the same exchange position.
    let mut enter_short = intent(Venue::Usdm, "BTCUSDT", Entry, 2, "0.004");
    enter_short.key.side = engine::types::Side::Short;
    enter_short.order_side = engine::types::Side::Short.opening_order();
    mock.script("POST", "/fapi/v1/order", Reply::json(500, ""));
    mock.script("GET", "/fapi/v1/order", Reply::ok(futures_filled("rbd-SX-1-1", "0.004", "30000")));
    mock.script(
        "POST",
        "/fapi/v1/order",
        Reply::ok(futures_filled("rbd-SE-2-1", "0.004", "29990")),
    );
    exec.submit(Intent::Place(close_long), T0);
    exec.submit(Intent::Place(enter_short), T0);
    let mut sink = Collect::default();
    let outcome = exec.poll(T0, &mut sink);
    assert_eq!(outcome.queued, 1, "the entry waits behind the unknown close");
    exec.poll(T0 + 500, &mut sink);
    assert_eq!(
        trace(&mock),
        [
            "GET /fapi/v1/time",
            "POST /fapi/v1/order rbd-SX-1-1",
            "GET /fapi/v1/order rbd-SX-1-1",
            "POST /fapi/v1/order rbd-SE-2-1",
        ]
    );
}
