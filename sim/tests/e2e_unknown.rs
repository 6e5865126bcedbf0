//! Orders of unknown fate end to end: the simulator executes a close and then answers 503 (or
//! holds the answer past the client's time-out), or refuses it before executing with a 5xx
//! that does not say so. `OrderExecutor` must report Unknown, settle it by a query on
//! `origClientOrderId` before anything else goes out for the position, and never send the close
//! twice: the simulator's own order record is the judge. "Does not exist" is believed only once
//! the order's recvWindow has lapsed.

mod e2e_common;

use std::sync::Arc;
use std::time::Duration;

use e2e_common::{
    ACCOUNT, Driver, ExecOut, btc, credentials, fast, http_config, intent, key, now_ms,
    order_updates, poll_until, rest_client_with, start_sim,
};
use engine::events::{Intent, OrderStatus, RejectKind};
use engine::types::{Modality, OrderPurpose, OrderSide};
use engine::{Qty, Side, Venue};
use feed::rest::{
    Api, ExecutorConfig, HttpConfig, Note, OrderExecutor, PositionMode, RestClient, RestConfig,
    SystemClock,
};
use feed::wire::{Connection, FrameParser};
use feed::ws::WsConfig;
use sim::{Fault, OrderOutcome, RestFailure, RestRecord, Sim};

const ORDER_PATH: &str = "/fapi/v1/order";

fn executor(sim: &Sim, client: RestClient, config: ExecutorConfig) -> OrderExecutor {
    let mut exec = OrderExecutor::new(config);
    exec.add_venue(ACCOUNT, Venue::Usdm, client, PositionMode::OneWay);
    exec.load_rules(ACCOUNT, Venue::Usdm, &[btc()]).unwrap();
    // The position the close is for, opened "in the app".
    sim.manual_order(Venue::Usdm, btc(), OrderSide::Buy, Qty::lit("0.01")).unwrap();
    exec
}

fn quick() -> ExecutorConfig {
    ExecutorConfig {
        first_query_delay_ms: 50,
        query_backoff_cap_ms: 200,
        not_found_grace_ms: 200,
        ..ExecutorConfig::default()
    }
}

/// `METHOD status code` of every order-path request, in order.
fn order_requests(sim: &Sim) -> Vec<(String, u16, Option<i64>)> {
    sim.requests()
        .into_iter()
        .filter(|r: &RestRecord| r.path == ORDER_PATH)
        .map(|r| (r.method, r.status, r.code))
        .collect()
}

fn req(method: &str, status: u16, code: Option<i64>) -> (String, u16, Option<i64>) {
    (method.to_owned(), status, code)
}

#[test]
fn a_close_executed_then_answered_503_is_found_filled_and_never_resent() {
    let sim = start_sim(true, None);
    let client = rest_client_with(&sim, Api::Futures, &RestConfig::default());
    let mut exec = executor(&sim, client, quick());
    let mut d = Driver::new(sim.ca_file());
    let listen_key = exec.client_mut(ACCOUNT, Venue::Usdm).unwrap().create_listen_key().unwrap();
    let user = d.open(
        &format!("{}/private/ws/{}", sim.urls().usdm_ws, listen_key.expose()),
        &fast(WsConfig::usdm_user()),
        FrameParser::new(Connection::usdm_user(ACCOUNT)),
    );
    d.until_connected(user, 1);
    let (bid, _) = sim.book(Venue::Usdm, btc()).unwrap();

    let long = key(Venue::Usdm, btc(), Side::Long);
    let close = intent(long, OrderPurpose::Close, Modality::SafetyNet, 4, 1, Qty::lit("0.01"));
    // Queued behind it on the same position: must wait for the query's answer.
    let again = intent(long, OrderPurpose::Close, Modality::SafetyNet, 4, 2, Qty::lit("0.01"));
    sim.fault(Fault::FailRest {
        path_prefix: ORDER_PATH.into(),
        count: 1,
        failure: RestFailure::ExecuteThen503,
    });
    let from = d.got.len();
    exec.submit(Intent::Place(close), now_ms());
    exec.submit(Intent::Place(again), now_ms());
    let mut out = ExecOut::default();
    let first = exec.poll(now_ms(), &mut out);
    assert_eq!((first.requests, first.queued, first.unresolved), (1, 1, 1));
    let statuses: Vec<_> = out.orders().iter().map(|u| (u.cid, u.status)).collect();
    assert_eq!(statuses, [(close.cid, OrderStatus::Unknown)]);
    assert!(out.notes.iter().any(|n| matches!(n, Note::Failed { cid, .. } if *cid == close.cid)));
    assert!(
        out.notes.iter().any(|n| matches!(n, Note::Unresolved { cid, .. } if *cid == close.cid))
    );
    // The engine asks about the unknown order, as it does: that joins the settling query.
    exec.submit(
        Intent::Query { account: ACCOUNT, venue: Venue::Usdm, symbol: btc(), cid: close.cid },
        now_ms(),
    );
    poll_until(&mut exec, &mut out, "the queued close's answer", |o| {
        o.orders().iter().any(|u| u.cid == again.cid)
    });

    let updates = out.orders();
    let got: Vec<_> = updates.iter().map(|u| (u.cid, u.status, u.cum_qty, u.avg_price)).collect();
    assert_eq!(
        got,
        [
            (close.cid, OrderStatus::Unknown, Qty::ZERO, engine::Price::ZERO),
            (close.cid, OrderStatus::Filled, Qty::lit("0.01"), bid),
            // Only after the query: a reduce-only close of a flat position, refused.
            (
                again.cid,
                OrderStatus::Rejected(RejectKind::NothingToClose),
                Qty::ZERO,
                engine::Price::ZERO
            ),
        ]
    );
    assert_eq!(
        order_requests(&sim),
        [req("POST", 503, Some(-1000)), req("GET", 200, None), req("POST", 400, Some(-2022))],
        "one send, one query, and the next intent only after it"
    );
    let records: Vec<_> = sim
        .orders()
        .into_iter()
        .filter(|o| o.client_order_id == close.cid.as_str())
        .map(|o| (o.outcome, o.executed_qty))
        .collect();
    assert_eq!(records, [(OrderOutcome::Filled, Qty::lit("0.01"))], "closed exactly once");
    assert_eq!(sim.position(btc()).amount, Qty::ZERO);

    // The user stream knew all along.
    let stream = d.run_until("the close's fill on the stream", |g| {
        let filled: Vec<_> = order_updates(&g.events(from, user))
            .into_iter()
            .filter(|u| u.cid == close.cid && u.status == OrderStatus::Filled)
            .collect();
        (!filled.is_empty()).then_some(filled)
    });
    assert_eq!(stream, [updates[1]]);
}

#[test]
fn a_close_held_past_the_client_time_out_is_settled_by_query_not_resent() {
    let sim = start_sim(true, None);
    let http = HttpConfig { request_timeout: Duration::from_millis(300), ..http_config(&sim) };
    let client = RestClient::new(
        Api::Futures,
        &sim.urls().usdm_rest,
        &http,
        &RestConfig::default(),
        Some(credentials()),
        Arc::new(SystemClock),
    )
    .unwrap();
    let mut exec = executor(&sim, client, quick());
    let (bid, _) = sim.book(Venue::Usdm, btc()).unwrap();
    let long = key(Venue::Usdm, btc(), Side::Long);
    let close = intent(long, OrderPurpose::Close, Modality::Core, 5, 1, Qty::lit("0.01"));
    sim.fault(Fault::FailRest {
        path_prefix: ORDER_PATH.into(),
        count: 1,
        failure: RestFailure::ExecuteThenTimeout { hold: Duration::from_secs(1) },
    });
    exec.submit(Intent::Place(close), now_ms());
    let mut out = ExecOut::default();
    poll_until(&mut exec, &mut out, "the close settled", |o| {
        o.orders().iter().any(|u| u.status != OrderStatus::Unknown)
    });
    let got: Vec<_> = out.orders().iter().map(|u| (u.status, u.cum_qty, u.avg_price)).collect();
    assert_eq!(
        got,
        [
            (OrderStatus::Unknown, Qty::ZERO, engine::Price::ZERO),
            (OrderStatus::Filled, Qty::lit("0.01"), bid)
        ]
    );
    let posts = order_requests(&sim).iter().filter(|r| r.0 == "POST").count();
    assert_eq!(posts, 1, "{:?}", order_requests(&sim));
    let closes = sim.orders().iter().filter(|o| o.client_order_id == close.cid.as_str()).count();
    assert_eq!(closes, 1);
}

#[test]
fn a_close_refused_before_executing_is_not_found_only_once_its_recv_window_lapsed() {
    let sim = start_sim(true, None);
    let recv_window_ms = 500;
    let client = rest_client_with(
        &sim,
        Api::Futures,
        &RestConfig { recv_window_ms, ..RestConfig::default() },
    );
    let config = quick();
    let mut exec = executor(&sim, client, config);
    let long = key(Venue::Usdm, btc(), Side::Long);
    let close = intent(long, OrderPurpose::Close, Modality::SafetyNet, 6, 1, Qty::lit("0.01"));
    // A 500 whose body says nothing: for all the client knows, it executed.
    sim.fault(Fault::FailRest {
        path_prefix: ORDER_PATH.into(),
        count: 1,
        failure: RestFailure::RejectBefore { status: 500 },
    });
    let sent_ms = now_ms();
    exec.submit(Intent::Place(close), sent_ms);
    let mut out = ExecOut::default();
    poll_until(&mut exec, &mut out, "the close settled", |o| {
        o.orders().iter().any(|u| u.status != OrderStatus::Unknown)
    });
    let updates = out.orders();
    let statuses: Vec<_> = updates.iter().map(|u| (u.cid, u.status)).collect();
    assert_eq!(statuses, [(close.cid, OrderStatus::Unknown), (close.cid, OrderStatus::NotFound)]);
    // Believed no earlier than timestamp + recvWindow + grace on the server's clock (the
    // timestamp is at least `sent_ms`, less the offset estimate's error on loopback).
    let settled_after = sent_ms + u64::from(recv_window_ms) + config.not_found_grace_ms;
    assert!(
        updates[1].exchange_ms + 50 >= settled_after,
        "{} < {settled_after}",
        updates[1].exchange_ms
    );
    let requests = order_requests(&sim);
    assert_eq!(requests[0], req("POST", 500, Some(-1000)));
    assert!(requests[1..].iter().all(|r| *r == req("GET", 400, Some(-2013))), "{requests:?}");
    assert!(requests.len() >= 2);
    assert!(sim.orders().iter().all(|o| o.client_order_id != close.cid.as_str()), "never placed");
    assert_eq!(sim.position(btc()).amount, Qty::lit("0.01"), "still open");

    // The engine retries with the next sequence: it goes out once and fills.
    let retry = intent(long, OrderPurpose::Close, Modality::SafetyNet, 6, 2, Qty::lit("0.01"));
    exec.submit(Intent::Place(retry), now_ms());
    let mut out = ExecOut::default();
    poll_until(&mut exec, &mut out, "the retry", |o| !o.orders().is_empty());
    assert_eq!(out.orders()[0].status, OrderStatus::Filled);
    assert_eq!(sim.position(btc()).amount, Qty::ZERO);
    assert_eq!(sim.orders().len(), 2, "the manual entry and one close");
}

#[test]
fn service_unavailable_is_a_known_refusal_and_nothing_is_queried() {
    let sim = start_sim(true, None);
    let client = rest_client_with(&sim, Api::Futures, &RestConfig::default());
    let mut exec = executor(&sim, client, quick());
    let long = key(Venue::Usdm, btc(), Side::Long);
    let close = intent(long, OrderPurpose::Close, Modality::SafetyNet, 7, 1, Qty::lit("0.01"));
    sim.fault(Fault::FailRest {
        path_prefix: ORDER_PATH.into(),
        count: 1,
        failure: RestFailure::RejectBefore { status: 503 },
    });
    exec.submit(Intent::Place(close), now_ms());
    let mut out = ExecOut::default();
    let outcome = exec.poll(now_ms(), &mut out);
    assert_eq!((outcome.requests, outcome.unresolved, outcome.next_due_ms), (1, 0, None));
    let statuses: Vec<_> = out.orders().iter().map(|u| u.status).collect();
    assert_eq!(statuses, [OrderStatus::Rejected(RejectKind::Transient)]);
    assert_eq!(order_requests(&sim), [req("POST", 503, Some(-1001))]);
    assert_eq!(sim.orders().len(), 1, "only the manual entry");
}
