//! The executor under rate limits and refusals, over real loopback HTTP with a driven clock:
//! a ban holds even a close (reported, not hammered) and the same close goes out when it ends;
//! an order-count header holds entries while closes use the reserve; entries expire, closes do
//! not; closes overtake entries and a poll's request budget is respected; Binance's refusals
//! become the engine's reject kinds without freezing the position; margin closes carry
//! AUTO_REPAY.

mod http_common;

use engine::Venue;
use engine::events::{Intent, OrderStatus, RejectKind};
use engine::types::OrderPurpose::{Close, Entry};
use engine::{AccountId, MarketKey, Qty, Symbol, SymbolRules};
use feed::rest::{Api, ExecutorConfig, ManualClock, Note, OrderExecutor, PositionMode};
use http_common::{Collect, Mock, Reply, T0, client, futures_filled, intent};

fn futures_executor(config: ExecutorConfig, mock: &Mock, clock: &ManualClock) -> OrderExecutor {
    let mut exec = OrderExecutor::new(config);
    exec.add_venue(
        AccountId(0),
        Venue::Usdm,
        client(Api::Futures, mock, clock),
        PositionMode::OneWay,
    );
    for symbol in ["BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT"] {
        exec.set_rules(
            MarketKey { venue: Venue::Usdm, symbol: Symbol::lit(symbol) },
            SymbolRules { step: Qty::lit("0.001"), ..SymbolRules::UNRESTRICTED },
        );
    }
    exec
}

fn cids_sent(mock: &Mock) -> Vec<String> {
    mock.requests()
        .iter()
        .filter(|r| r.path == "/fapi/v1/order" && r.method == "POST")
        .map(|r| r.param("newClientOrderId").unwrap().to_owned())
        .collect()
}

#[test]
fn a_ban_holds_a_close_without_hammering_and_the_same_close_goes_when_it_ends() {
    let clock = ManualClock::new(T0);
    let mock = Mock::start(clock.clone());
    let config = ExecutorConfig { entry_max_wait_ms: 5_000, ..ExecutorConfig::default() };
    let mut exec = futures_executor(config, &mock, &clock);
    let close = intent(Venue::Usdm, "BTCUSDT", Close, 1, "0.004");
    let entry = intent(Venue::Usdm, "ETHUSDT", Entry, 2, "0.5");
    mock.script(
        "POST",
        "/fapi/v1/order",
        Reply::json(418, r#"{"code":-1003,"msg":"Way too many requests; IP banned."}"#)
            .header("Retry-After", "60"),
    );
    exec.submit(Intent::Place(close), T0);
    let mut sink = Collect::default();
    exec.poll(T0, &mut sink);
    assert!(sink.take().is_empty(), "a banned close is kept, not reported refused");
    assert_eq!(sink.notes, [Note::Held { cid: close.cid, until_ms: T0 + 60_000, banned: true }]);

    // During the ban: the engine's query merges, a new entry waits and then expires unsent.
    exec.submit(
        Intent::Query {
            account: AccountId(0),
            venue: Venue::Usdm,
            symbol: close.key.symbol,
            cid: close.cid,
        },
        T0 + 1_000,
    );
    exec.submit(Intent::Place(entry), T0 + 1_000);
    for at in [T0 + 1_000, T0 + 5_000, T0 + 30_000, T0 + 59_999] {
        clock.set(at);
        let outcome = exec.poll(at, &mut sink);
        assert_eq!(outcome.requests, 0, "+{}", at - T0);
    }
    assert_eq!(sink.take(), [("rbd-SE-2-1".into(), OrderStatus::Rejected(RejectKind::Transient))]);
    assert!(sink.notes.contains(&Note::EntryExpired { cid: entry.cid }));
    let held_notes = sink.notes.iter().filter(|n| matches!(n, Note::Held { .. })).count();
    assert_eq!(held_notes, 2, "the close's hold reported once, the entry's once");
    assert_eq!(mock.count(), 2, "time sync and the one banned order");

    clock.set(T0 + 60_000);
    mock.script(
        "POST",
        "/fapi/v1/order",
        Reply::ok(futures_filled("rbd-SX-1-1", "0.004", "30000")),
    );
    let outcome = exec.poll(T0 + 60_000, &mut sink);
    assert_eq!(outcome.requests, 1);
    assert_eq!(sink.take(), [("rbd-SX-1-1".into(), OrderStatus::Filled)]);
    assert_eq!(cids_sent(&mock), ["rbd-SX-1-1", "rbd-SX-1-1"], "the same order, never the entry");
    assert_eq!(mock.lines(), ["GET /fapi/v1/time", "POST /fapi/v1/order", "POST /fapi/v1/order"]);
}

#[test]
fn an_order_count_near_the_limit_holds_entries_while_closes_use_the_reserve() {
    let clock = ManualClock::new(T0);
    let mock = Mock::start(clock.clone());
    let config = ExecutorConfig { entry_max_wait_ms: 60_000, ..ExecutorConfig::default() };
    let mut exec = futures_executor(config, &mock, &clock);
    // Futures allow 300 orders per 10 s; with the 10 % reserve an entry may use 270.
    mock.script(
        "POST",
        "/fapi/v1/order",
        Reply::ok(futures_filled("rbd-SX-1-1", "0.004", "30000"))
            .header("X-MBX-ORDER-COUNT-10S", "270"),
    );
    mock.script(
        "POST",
        "/fapi/v1/order",
        Reply::ok(futures_filled("rbd-SX-3-1", "0.004", "30000")),
    );
    mock.script("POST", "/fapi/v1/order", Reply::ok(futures_filled("rbd-SE-2-1", "0.5", "2000")));
    let first_close = intent(Venue::Usdm, "BTCUSDT", Close, 1, "0.004");
    let entry = intent(Venue::Usdm, "ETHUSDT", Entry, 2, "0.5");
    let second_close = intent(Venue::Usdm, "SOLUSDT", Close, 3, "0.004");
    exec.submit(Intent::Place(first_close), T0);
    exec.submit(Intent::Place(entry), T0);
    let mut sink = Collect::default();
    let outcome = exec.poll(T0, &mut sink);
    let window_end = T0 - T0 % 10_000 + 10_000;
    assert_eq!(sink.take(), [("rbd-SX-1-1".into(), OrderStatus::Filled)]);
    assert!(sink.notes.contains(&Note::Held {
        cid: entry.cid,
        until_ms: window_end,
        banned: false
    }));
    assert_eq!(outcome.next_due_ms, Some(window_end));
    // A close arriving now still passes: it may spend the reserve.
    exec.submit(Intent::Place(second_close), T0 + 10);
    exec.poll(T0 + 10, &mut sink);
    assert_eq!(sink.take(), [("rbd-SX-3-1".into(), OrderStatus::Filled)]);
    clock.set(window_end);
    exec.poll(window_end, &mut sink);
    assert_eq!(sink.take(), [("rbd-SE-2-1".into(), OrderStatus::Filled)]);
    assert_eq!(cids_sent(&mock), ["rbd-SX-1-1", "rbd-SX-3-1", "rbd-SE-2-1"]);
}

#[test]
fn closes_overtake_entries_and_a_poll_sends_no_more_than_its_budget() {
    let clock = ManualClock::new(T0);
    let mock = Mock::start(clock.clone());
    let config = ExecutorConfig { max_requests_per_poll: 2, ..ExecutorConfig::default() };
    let mut exec = futures_executor(config, &mock, &clock);
    let entries = [
        intent(Venue::Usdm, "BTCUSDT", Entry, 1, "0.001"),
        intent(Venue::Usdm, "ETHUSDT", Entry, 2, "0.001"),
        intent(Venue::Usdm, "SOLUSDT", Entry, 3, "0.001"),
    ];
    let close = intent(Venue::Usdm, "XRPUSDT", Close, 4, "0.001");
    for cid in ["rbd-SX-4-1", "rbd-SE-1-1", "rbd-SE-2-1", "rbd-SE-3-1"] {
        mock.script("POST", "/fapi/v1/order", Reply::ok(futures_filled(cid, "0.001", "10")));
    }
    for e in entries {
        exec.submit(Intent::Place(e), T0);
    }
    exec.submit(Intent::Place(close), T0);
    let mut sink = Collect::default();
    let first = exec.poll(T0, &mut sink);
    assert_eq!(first.requests, 2);
    assert_eq!(first.next_due_ms, Some(T0), "work left over is due at once");
    assert_eq!((first.queued, first.queued_closes), (2, 0));
    exec.poll(T0, &mut sink);
    assert_eq!(cids_sent(&mock), ["rbd-SX-4-1", "rbd-SE-1-1", "rbd-SE-2-1", "rbd-SE-3-1"]);
    assert_eq!(sink.take().len(), 4);
}

#[test]
fn refusals_map_to_reject_kinds_and_do_not_freeze_the_position() {
    let clock = ManualClock::new(T0);
    let mock = Mock::start(clock.clone());
    let mut exec = futures_executor(ExecutorConfig::default(), &mock, &clock);
    let replies = [
        Reply::fixture(400, "error_-2010_insufficient_balance.json"),
        Reply::fixture(400, "error_-2022_futures.json"),
        Reply::fixture(400, "error_-4164_futures.json"),
        Reply::fixture(400, "error_-1013_LOT_SIZE.json"),
        Reply::json(503, r#"{"code":-1001,"msg":"Service Unavailable."}"#),
        Reply::fixture(503, "error_-1008_futures.json"),
    ];
    for (i, reply) in replies.into_iter().enumerate() {
        mock.script("POST", "/fapi/v1/order", reply);
        exec.submit(
            Intent::Place(intent(Venue::Usdm, "BTCUSDT", Close, i as u64 + 1, "0.004")),
            T0,
        );
    }
    let mut sink = Collect::default();
    exec.poll(T0, &mut sink);
    let statuses: Vec<OrderStatus> = sink.take().into_iter().map(|(_, s)| s).collect();
    assert_eq!(
        statuses,
        [
            OrderStatus::Rejected(RejectKind::Permanent),
            OrderStatus::Rejected(RejectKind::NothingToClose),
            OrderStatus::Rejected(RejectKind::Permanent),
            OrderStatus::Rejected(RejectKind::Permanent),
            OrderStatus::Rejected(RejectKind::Transient),
            OrderStatus::Rejected(RejectKind::Transient),
        ]
    );
    assert_eq!(cids_sent(&mock).len(), 6, "each refusal left the lane free for the next");
    assert_eq!(exec.backlog(), (0, 0));
}

#[test]
fn intents_that_cannot_be_sent_are_refused_locally() {
    let clock = ManualClock::new(T0);
    let mock = Mock::start(clock.clone());
    let mut exec = futures_executor(ExecutorConfig::default(), &mock, &clock);
    let off_step = intent(Venue::Usdm, "BTCUSDT", Close, 1, "0.0045");
    let no_venue = intent(Venue::Margin, "BTCUSDT", Close, 2, "0.004");
    exec.submit(Intent::Place(off_step), T0);
    exec.submit(Intent::Place(no_venue), T0);
    let mut sink = Collect::default();
    let outcome = exec.poll(T0, &mut sink);
    assert_eq!(outcome.requests, 0);
    assert_eq!(
        sink.take(),
        [
            ("rbd-SX-1-1".into(), OrderStatus::Rejected(RejectKind::Permanent)),
            ("rbd-SX-2-1".into(), OrderStatus::Rejected(RejectKind::Permanent)),
        ]
    );
    assert!(sink.notes.contains(&Note::BadQuantity { cid: off_step.cid }));
    assert!(sink.notes.contains(&Note::NoVenue {
        cid: no_venue.cid,
        account: AccountId(0),
        venue: Venue::Margin
    }));
    assert_eq!(mock.count(), 0);
}

#[test]
fn a_margin_close_repays_and_its_unknown_outcome_is_queried_on_the_margin_endpoint() {
    let clock = ManualClock::new(T0);
    let mock = Mock::start(clock.clone());
    let mut exec = OrderExecutor::new(ExecutorConfig::default());
    exec.add_venue(
        AccountId(0),
        Venue::Margin,
        client(Api::Spot, &mock, &clock),
        PositionMode::OneWay,
    );
    assert_eq!(exec.load_rules(AccountId(0), Venue::Margin, &[Symbol::lit("BTCUSDT")]), Ok(1));
    let close = intent(Venue::Margin, "BTCUSDT", Close, 1, "0.001");
    mock.script("POST", "/sapi/v1/margin/order", Reply::json(504, ""));
    let filled = http_common::order_body(
        "margin_order_response_FULL.json",
        &[("clientOrderId", "rbd-SX-1-1")],
    );
    mock.script("GET", "/sapi/v1/margin/order", Reply::ok(filled));
    exec.submit(Intent::Place(close), T0);
    let mut sink = Collect::default();
    exec.poll(T0, &mut sink);
    clock.set(T0 + 500);
    exec.poll(T0 + 500, &mut sink);
    assert_eq!(
        sink.take(),
        [("rbd-SX-1-1".into(), OrderStatus::Unknown), ("rbd-SX-1-1".into(), OrderStatus::Filled)]
    );
    let requests = mock.requests();
    assert_eq!(
        requests.iter().map(http_common::Recorded::line).collect::<Vec<_>>(),
        [
            "GET /api/v3/exchangeInfo",
            "GET /api/v3/time",
            "POST /sapi/v1/margin/order",
            "GET /sapi/v1/margin/order",
        ]
    );
    let order = &requests[2];
    assert_eq!(order.param("isIsolated"), Some("TRUE"));
    assert_eq!(order.param("sideEffectType"), Some("AUTO_REPAY"));
    assert_eq!(order.param("side"), Some("SELL"));
    // The spot excerpt's LOT_SIZE step is 0.00001000: five decimals.
    assert_eq!(order.param("quantity"), Some("0.00100"));
    assert_eq!(requests[3].param("origClientOrderId"), Some("rbd-SX-1-1"));
    mock.assert_signatures_verified();
}
