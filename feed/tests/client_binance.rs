//! The Binance layer against the loopback mock, which verifies every signature with its own HMAC
//! code and applies Binance's timestamp rule: time offset, -1021 resync, the limiter fed by
//! weight headers, 429/418 `Retry-After` on a driven clock, typed errors from the documented
//! fixtures, and every typed endpoint's path, parameters and parsed answer.

mod http_common;

use std::sync::Arc;

use engine::money::Qty;
use engine::types::OrderSide;
use engine::{ClientOrderId, Price, Symbol};
use feed::rest::{
    Api, ApiError, CallError, Clock, Cost, FilterKind, LimitKind, ManualClock, MarketOrder,
    OrderFlags, PositionSide, Priority, RestConfig, RestError, SideEffect, Verdict,
};
use http_common::{
    API_KEY, Mock, Reply, T0, client, client_with, fast_http, fixture, futures_filled, order_body,
};

fn btc() -> Symbol {
    Symbol::lit("BTCUSDT")
}

fn cid(text: &str) -> ClientOrderId {
    ClientOrderId::from_wire(text.as_bytes()).unwrap()
}

fn futures_close(id: &str) -> MarketOrder {
    MarketOrder {
        symbol: btc(),
        side: OrderSide::Sell,
        quantity: Qty::lit("0.004").format(3).unwrap(),
        cid: cid(id),
        flags: OrderFlags::Futures { position_side: PositionSide::Both, reduce_only: true },
    }
}

#[test]
fn signed_calls_sync_first_and_carry_key_window_timestamp_and_a_valid_signature() {
    let clock = ManualClock::new(T0);
    let mock = Mock::start(clock.clone());
    mock.set_skew(7_000);
    mock.script(
        "GET",
        "/fapi/v3/positionRisk",
        Reply::fixture(200, "futures_positionRisk_v3_oneway.json"),
    );
    let mut rest = client(Api::Futures, &mock, &clock);
    let risks = rest.position_risk(None).expect("positionRisk");
    assert_eq!(risks.rows.len(), 1);
    assert_eq!(risks.rows[0].amount, Qty::lit("30"));
    assert_eq!(mock.lines(), ["GET /fapi/v1/time", "GET /fapi/v3/positionRisk"]);
    mock.assert_signatures_verified();
    let signed = &mock.requests()[1];
    assert_eq!(signed.api_key.as_deref(), Some(API_KEY));
    assert_eq!(signed.param("recvWindow"), Some("5000"));
    // With a still clock the offset is exact: the timestamp is the server's own time.
    assert_eq!(rest.offset_ms(), 7_000);
    assert_eq!(signed.param("timestamp"), Some((T0 + 7_000).to_string().as_str()));
    // The signature is the last parameter (futures insists).
    assert_eq!(signed.params.last().unwrap().0, "signature");
    assert!(mock.requests()[0].api_key.is_none(), "public endpoints carry no key");
}

/// A clock that returns scripted readings, then stays at the last one.
struct Readings(std::sync::Mutex<Vec<u64>>);

impl Clock for Readings {
    fn now_ms(&self) -> u64 {
        let mut readings = self.0.lock().unwrap();
        if readings.len() > 1 { readings.remove(0) } else { readings[0] }
    }
}

#[test]
fn the_offset_is_measured_at_the_round_trip_midpoint() {
    // The mock's clock and the client's are separate here: the server says 50 000 while the
    // client read 10 000 before sending and 10 400 after (the limiter's read comes first).
    let server_clock = ManualClock::new(50_000);
    let mock = Mock::start(server_clock);
    let clock = Arc::new(Readings(std::sync::Mutex::new(vec![10_000, 10_000, 10_400])));
    let mut rest = feed::rest::RestClient::new(
        Api::Spot,
        &mock.url(),
        &fast_http(),
        &RestConfig::default(),
        None,
        clock,
    )
    .unwrap();
    let offset = rest.sync_time(Priority::Normal).unwrap();
    assert_eq!(offset, 50_000 - 10_200);
    assert_eq!(rest.last_sync_rtt_ms(), 400);
    assert_eq!(mock.lines(), ["GET /api/v3/time"]);
}

#[test]
fn a_timestamp_refusal_resyncs_the_clock_and_retries_once() {
    let clock = ManualClock::new(T0);
    let mock = Mock::start(clock.clone());
    let mut rest = client(Api::Futures, &mock, &clock);
    rest.sync_time(Priority::Normal).unwrap();
    assert_eq!(rest.offset_ms(), 0);
    // The server's clock jumps 20 s ahead: the next signed request is outside recvWindow.
    mock.set_skew(20_000);
    mock.script("GET", "/fapi/v1/order", Reply::ok(futures_filled("rbd-SX-1-1", "0.004", "100")));
    let report = rest.query_order(btc(), cid("rbd-SX-1-1"), Priority::Close).expect("query");
    assert_eq!(report.executed_qty, Qty::lit("0.004"));
    assert_eq!(
        mock.lines(),
        ["GET /fapi/v1/time", "GET /fapi/v1/order", "GET /fapi/v1/time", "GET /fapi/v1/order"]
    );
    assert_eq!(rest.offset_ms(), 20_000);
    let requests = mock.requests();
    assert_eq!(requests[1].param("timestamp"), Some(T0.to_string().as_str()));
    assert_eq!(requests[3].param("timestamp"), Some((T0 + 20_000).to_string().as_str()));
    mock.assert_signatures_verified();

    // A second refusal after the resync is returned, not retried again.
    mock.set_skew(90_000);
    mock.script("GET", "/fapi/v1/time", Reply::ok(format!("{{\"serverTime\":{}}}", T0 + 20_000)));
    let error = rest.query_order(btc(), cid("rbd-SX-1-1"), Priority::Close).unwrap_err();
    assert!(
        matches!(error.api(), Some(ApiError::TimeSync { code: -1021, ahead: false })),
        "{error:?}"
    );
    assert_eq!(mock.count(), 7, "order, time, order: one retry only");
}

#[test]
fn weight_headers_hold_normal_requests_before_the_limit_and_leave_the_reserve_to_closes() {
    let clock = ManualClock::new(T0);
    let mock = Mock::start(clock.clone());
    let mut rest = client(Api::Futures, &mock, &clock);
    // 2400/min with a 10 % reserve: normal requests may use 2160. Binance says 2158 are used.
    mock.script(
        "GET",
        "/fapi/v1/ping",
        Reply::ok("{}").header("X-MBX-USED-WEIGHT-1M", "2158").header("X-MBX-ORDER-COUNT-10S", "3"),
    );
    rest.ping().unwrap();
    let now = rest.server_now_ms();
    assert_eq!(rest.limiter().used(now, LimitKind::RequestWeight, 60_000), Some(2158));
    assert_eq!(rest.limiter().used(now, LimitKind::Orders, 10_000), Some(3));
    let end_of_minute = T0 - T0 % 60_000 + 60_000;
    assert_eq!(
        rest.check(Cost::request(5), Priority::Normal),
        Verdict::Wait {
            at_ms: end_of_minute,
            limit: Some(feed::rest::Limit {
                kind: LimitKind::RequestWeight,
                window_ms: 60_000,
                max: 2400
            })
        }
    );
    assert_eq!(rest.check(Cost::request(5), Priority::Close), Verdict::Send);

    // positionRisk (weight 5) is held without being sent; a close's query (weight 1) goes.
    let held = rest.position_risk(None).unwrap_err();
    assert!(
        matches!(held, CallError::Throttled { until_ms, limit: Some(_) } if until_ms == end_of_minute)
    );
    assert_eq!(mock.lines(), ["GET /fapi/v1/ping"], "the held request never left");
    mock.script("GET", "/fapi/v1/order", Reply::ok(futures_filled("rbd-SX-1-1", "0.004", "100")));
    rest.query_order(btc(), cid("rbd-SX-1-1"), Priority::Close).expect("close priority passes");
    assert_eq!(mock.lines(), ["GET /fapi/v1/ping", "GET /fapi/v1/time", "GET /fapi/v1/order"]);

    // The next minute's window is empty again.
    clock.set(end_of_minute);
    mock.script(
        "GET",
        "/fapi/v3/positionRisk",
        Reply::fixture(200, "futures_positionRisk_v3_oneway.json"),
    );
    rest.position_risk(None).expect("new window");
    assert_eq!(mock.count(), 4);
}

#[test]
fn a_429_with_retry_after_stops_every_request_until_it_expires() {
    let clock = ManualClock::new(T0);
    let mock = Mock::start(clock.clone());
    let mut rest = client(Api::Spot, &mock, &clock);
    mock.script(
        "GET",
        "/api/v3/ping",
        Reply::json(429, r#"{"code":-1003,"msg":"Too many requests; current limit is 6000 request weight per 1 MINUTE."}"#)
            .header("Retry-After", "30"),
    );
    let error = rest.ping().unwrap_err();
    assert!(matches!(
        error,
        CallError::Rest(RestError::RateLimited { retry_after_s: Some(30), .. })
    ));
    assert!(error.is_rate_limit());
    assert_eq!(rest.blocked_until_ms(), T0 + 30_000);
    for step in [0, 10_000, 19_999] {
        clock.set(T0 + step);
        let held = rest.ping().unwrap_err();
        assert_eq!(held, CallError::Throttled { until_ms: T0 + 30_000, limit: None }, "+{step}");
    }
    assert_eq!(mock.count(), 1, "nothing sent before Retry-After expired");
    clock.set(T0 + 30_000);
    rest.ping().expect("allowed once it expired");
    assert_eq!(mock.count(), 2);
}

#[test]
fn a_418_ban_holds_closes_too() {
    let clock = ManualClock::new(T0);
    let mock = Mock::start(clock.clone());
    let mut rest = client(Api::Futures, &mock, &clock);
    rest.sync_time(Priority::Normal).unwrap();
    mock.script(
        "POST",
        "/fapi/v1/order",
        Reply::json(418, r#"{"code":-1003,"msg":"Way too much request weight used; IP banned until 1700000200000. Please use WebSocket Streams for live updates to avoid bans."}"#)
            .header("Retry-After", "120"),
    );
    let error = rest.place_market_order(&futures_close("rbd-SX-1-1"), Priority::Close).unwrap_err();
    assert!(matches!(error, CallError::Rest(RestError::Banned { retry_after_s: Some(120), .. })));
    assert!(!error.outcome_unknown(), "a ban refuses: nothing executed");
    // The later of Retry-After (T0 + 120 s) and the body's "banned until" wins.
    let until = rest.blocked_until_ms();
    assert_eq!(until, (T0 + 120_000).max(1_700_000_200_000));
    clock.set(until - 1);
    let held = rest.place_market_order(&futures_close("rbd-SX-1-1"), Priority::Close).unwrap_err();
    assert_eq!(held, CallError::Throttled { until_ms: until, limit: None });
    assert_eq!(mock.count(), 2);
    clock.set(until);
    mock.script(
        "POST",
        "/fapi/v1/order",
        Reply::ok(futures_filled("rbd-SX-1-1", "0.004", "101.5")),
    );
    let report = rest.place_market_order(&futures_close("rbd-SX-1-1"), Priority::Close).unwrap();
    assert_eq!(report.avg_price, Price::lit("101.5"));
    assert_eq!(mock.lines(), ["GET /fapi/v1/time", "POST /fapi/v1/order", "POST /fapi/v1/order"]);
}

#[test]
fn binance_error_codes_come_back_typed() {
    let clock = ManualClock::new(T0);
    let mock = Mock::start(clock.clone());
    let mut futures = client(Api::Futures, &mock, &clock);
    let cases = [
        ("error_-2010_insufficient_balance.json", ApiError::InsufficientBalance { code: -2010 }),
        (
            "error_-1013_LOT_SIZE.json",
            ApiError::Filter { code: -1013, filter: FilterKind::LotSize },
        ),
        (
            "error_-4164_futures.json",
            ApiError::Filter { code: -4164, filter: FilterKind::MinNotional },
        ),
        ("error_-2022_futures.json", ApiError::ReduceOnlyRejected),
    ];
    for (name, expected) in cases {
        mock.script("POST", "/fapi/v1/order", Reply::fixture(400, name));
        let error =
            futures.place_market_order(&futures_close("rbd-SX-2-1"), Priority::Close).unwrap_err();
        assert_eq!(
            error,
            CallError::Rest(RestError::Api { status: 400, error: expected }),
            "{name}"
        );
        assert!(!error.outcome_unknown(), "{name}");
    }
    mock.script("GET", "/fapi/v1/order", Reply::fixture(400, "error_-2013.json"));
    let error = futures.query_order(btc(), cid("rbd-SX-2-1"), Priority::Close).unwrap_err();
    assert_eq!(error.api(), Some(&ApiError::UnknownOrder { code: -2013 }));
    assert_eq!(error.rest().unwrap().query_status(), Some(engine::events::OrderStatus::NotFound));
    for (status, body) in [
        (
            503,
            r#"{"code":-1000,"msg":"Unknown error, please check your request or try again later."}"#,
        ),
        (500, ""),
        (
            400,
            r#"{"code":-1007,"msg":"Timeout waiting for response from backend server. Send status unknown; execution status unknown."}"#,
        ),
    ] {
        mock.script("POST", "/fapi/v1/order", Reply::json(status, body));
        let error =
            futures.place_market_order(&futures_close("rbd-SX-3-1"), Priority::Close).unwrap_err();
        assert!(error.outcome_unknown(), "{status} {body}: {error:?}");
    }
    mock.script(
        "POST",
        "/fapi/v1/order",
        Reply::json(503, r#"{"code":-1001,"msg":"Service Unavailable."}"#),
    );
    let error =
        futures.place_market_order(&futures_close("rbd-SX-3-1"), Priority::Close).unwrap_err();
    assert_eq!(error, CallError::Rest(RestError::Unavailable));
    assert!(!error.outcome_unknown());
    assert_eq!(mock.unused_script(), 0);
    mock.assert_signatures_verified();
}

#[test]
fn futures_endpoints_send_what_binance_documents() {
    let clock = ManualClock::new(T0);
    let mock = Mock::start(clock.clone());
    let mut rest = client(Api::Futures, &mock, &clock);

    let info = rest.exchange_info(&[]).unwrap();
    let btc_rules = info.symbols.iter().find(|s| s.symbol == btc()).unwrap().rules;
    assert_eq!(btc_rules.step, Qty::lit("0.001"));
    assert!(!info.rate_limits.is_empty());

    mock.script(
        "POST",
        "/fapi/v1/order",
        Reply::ok(futures_filled("rbd-SX-4-1", "0.004", "25000.5")),
    );
    let report = rest.place_market_order(&futures_close("rbd-SX-4-1"), Priority::Close).unwrap();
    assert_eq!(report.status, Some(engine::events::OrderStatus::Filled));
    let sent = mock.requests().last().unwrap().clone();
    assert_eq!(
        sent.query.split("&recvWindow").next().unwrap(),
        "symbol=BTCUSDT&side=SELL&positionSide=BOTH&type=MARKET&quantity=0.004&reduceOnly=true\
         &newClientOrderId=rbd-SX-4-1&newOrderRespType=RESULT"
    );

    mock.script(
        "GET",
        "/fapi/v1/order",
        Reply::ok(futures_filled("rbd-SX-4-1", "0.004", "25000.5")),
    );
    rest.query_order(btc(), cid("rbd-SX-4-1"), Priority::Normal).unwrap();
    let query = mock.requests().last().unwrap().clone();
    assert_eq!(query.param("origClientOrderId"), Some("rbd-SX-4-1"));
    assert_eq!(query.param("symbol"), Some("BTCUSDT"));

    let open = format!("[{}]", order_body("futures_query_order_response.json", &[]));
    mock.script("GET", "/fapi/v1/openOrders", Reply::ok(open));
    assert_eq!(rest.open_orders(Some(btc())).unwrap().len(), 1);

    mock.script(
        "POST",
        "/fapi/v1/listenKey",
        Reply::fixture(200, "futures_listenKey_create_response.json"),
    );
    let key = rest.create_listen_key().unwrap();
    assert!(key.expose().starts_with("pqia91ma"));
    mock.script(
        "PUT",
        "/fapi/v1/listenKey",
        Reply::fixture(200, "futures_listenKey_keepalive_response.json"),
    );
    rest.keepalive_listen_key().unwrap();
    mock.script("DELETE", "/fapi/v1/listenKey", Reply::ok("{}"));
    rest.close_listen_key().unwrap();
    mock.script("PUT", "/fapi/v1/listenKey", Reply::fixture(400, "error_-1125.json"));
    assert_eq!(rest.keepalive_listen_key().unwrap_err().api(), Some(&ApiError::ListenKeyMissing));

    mock.script(
        "GET",
        "/fapi/v1/premiumIndex",
        Reply::ok(r#"{"symbol":"BTCUSDT","markPrice":"11793.63104562","indexPrice":"11781.80495970","estimatedSettlePrice":"11781.16138815","lastFundingRate":"0.00038246","nextFundingTime":1597392000000,"interestRate":"0.00010000","time":1597370495002}"#),
    );
    assert_eq!(rest.mark_price(btc()).unwrap().mark, Price::lit("11793.63104562"));
    // The futures ticker's weight header is documented as wrong: it must not hold anything.
    mock.script(
        "GET",
        "/fapi/v1/ticker/bookTicker",
        Reply::ok(r#"{"symbol":"BTCUSDT","bidPrice":"4.00000000","bidQty":"431.00000000","askPrice":"4.00000200","askQty":"9.00000000","time":1589437530011}"#)
            .header("X-MBX-USED-WEIGHT-1M", "999999"),
    );
    let book = rest.book_ticker(btc()).unwrap();
    assert_eq!((book.bid, book.ask), (Price::lit("4"), Price::lit("4.000002")));
    assert_eq!(rest.check(Cost::request(1), Priority::Normal), Verdict::Send);

    let lines = mock.lines();
    assert_eq!(
        lines,
        [
            "GET /fapi/v1/exchangeInfo",
            "GET /fapi/v1/time",
            "POST /fapi/v1/order",
            "GET /fapi/v1/order",
            "GET /fapi/v1/openOrders",
            "POST /fapi/v1/listenKey",
            "PUT /fapi/v1/listenKey",
            "DELETE /fapi/v1/listenKey",
            "PUT /fapi/v1/listenKey",
            "GET /fapi/v1/premiumIndex",
            "GET /fapi/v1/ticker/bookTicker",
        ]
    );
    let requests = mock.requests();
    for r in &requests[5..9] {
        assert_eq!(r.api_key.as_deref(), Some(API_KEY), "{}: USER_STREAM needs the key", r.line());
        assert!(r.param("signature").is_none(), "{}: and no signature", r.line());
    }
    assert_eq!(requests[9].query, "symbol=BTCUSDT");
    mock.assert_signatures_verified();
    assert_eq!(mock.connections(), 1);
}

#[test]
fn spot_and_margin_endpoints_send_what_binance_documents() {
    let clock = ManualClock::new(T0);
    let mock = Mock::start(clock.clone());
    let mut rest = client(Api::Spot, &mock, &clock);

    let info = rest.exchange_info(&[btc()]).unwrap();
    assert_eq!(info.symbols.len(), 1);
    assert_eq!(mock.requests()[0].param("symbols"), Some(r#"["BTCUSDT"]"#));

    let order = MarketOrder {
        symbol: btc(),
        side: OrderSide::Sell,
        quantity: Qty::lit("0.001").format(5).unwrap(),
        cid: cid("E156O3KP4gOif65bjuUK5V"),
        flags: OrderFlags::IsolatedMargin { side_effect: SideEffect::AutoRepay },
    };
    mock.script(
        "POST",
        "/sapi/v1/margin/order",
        Reply::fixture(200, "margin_order_response_FULL.json"),
    );
    let report = rest.place_market_order(&order, Priority::Close).unwrap();
    // 65.98253 / 0.001, exactly.
    assert_eq!(report.avg_price, Price::lit("65982.53"));
    let sent = mock.requests().last().unwrap().clone();
    assert_eq!(
        sent.query.split("&recvWindow").next().unwrap(),
        "symbol=BTCUSDT&isIsolated=TRUE&side=SELL&type=MARKET&quantity=0.00100\
         &sideEffectType=AUTO_REPAY&newClientOrderId=E156O3KP4gOif65bjuUK5V&newOrderRespType=RESULT"
    );

    mock.script(
        "GET",
        "/sapi/v1/margin/order",
        Reply::fixture(200, "margin_order_response_FULL.json"),
    );
    rest.query_order(btc(), cid("E156O3KP4gOif65bjuUK5V"), Priority::Close).unwrap();
    let query = mock.requests().last().unwrap().clone();
    assert_eq!(query.param("isIsolated"), Some("TRUE"));
    assert_eq!(query.param("origClientOrderId"), Some("E156O3KP4gOif65bjuUK5V"));

    mock.script(
        "GET",
        "/sapi/v1/margin/isolated/account",
        Reply::fixture(200, "margin_isolated_account_response.json"),
    );
    let account = rest.isolated_margin_account(&[btc()]).unwrap();
    assert!(!account.pairs.is_empty());
    assert_eq!(mock.requests().last().unwrap().param("symbols"), Some("BTCUSDT"));

    mock.script(
        "POST",
        "/sapi/v1/userListenToken",
        Reply::fixture(200, "margin_userListenToken_response.json"),
    );
    let token = rest.create_listen_token(btc(), Some(3_600_000)).unwrap();
    assert_eq!(token.expires_ms, 1758792204196);
    let token_request = mock.requests().last().unwrap().clone();
    assert_eq!(token_request.query, "symbol=BTCUSDT&isIsolated=true&validity=3600000");
    assert_eq!(token_request.api_key.as_deref(), Some(API_KEY));

    mock.script(
        "GET",
        "/api/v3/ticker/bookTicker",
        Reply::ok(r#"{"symbol":"BTCUSDT","bidPrice":"4.00000000","bidQty":"431.00000000","askPrice":"4.00000200","askQty":"9.00000000"}"#),
    );
    assert_eq!(rest.book_ticker(btc()).unwrap().exchange_ms, None);
    mock.script(
        "GET",
        "/api/v3/ticker/price",
        Reply::ok(r#"{"symbol":"BTCUSDT","price":"4.00000200"}"#),
    );
    assert_eq!(rest.last_price(btc()).unwrap().price, Price::lit("4.000002"));

    // Endpoints of the other family are refused without a request.
    assert!(matches!(rest.position_risk(None), Err(CallError::Unsupported(_))));
    assert!(matches!(rest.create_listen_key(), Err(CallError::Unsupported(_))));
    assert!(matches!(rest.open_orders(None), Err(CallError::Unsupported(_))));
    assert_eq!(
        mock.lines(),
        [
            "GET /api/v3/exchangeInfo",
            "GET /api/v3/time",
            "POST /sapi/v1/margin/order",
            "GET /sapi/v1/margin/order",
            "GET /sapi/v1/margin/isolated/account",
            "POST /sapi/v1/userListenToken",
            "GET /api/v3/ticker/bookTicker",
            "GET /api/v3/ticker/price",
        ]
    );
    mock.assert_signatures_verified();
}

#[test]
fn keyed_endpoints_need_credentials() {
    let clock = ManualClock::new(T0);
    let mock = Mock::start(clock.clone());
    let mut anonymous = feed::rest::RestClient::new(
        Api::Futures,
        &mock.url(),
        &fast_http(),
        &RestConfig::default(),
        None,
        Arc::new(clock.clone()),
    )
    .unwrap();
    assert_eq!(anonymous.position_risk(None).unwrap_err(), CallError::NoCredentials);
    assert_eq!(anonymous.create_listen_key().unwrap_err(), CallError::NoCredentials);
    anonymous.ping().expect("public endpoints need none");
    assert_eq!(mock.lines(), ["GET /fapi/v1/ping"]);
}

#[test]
fn a_configured_recv_window_is_sent_and_checked() {
    let clock = ManualClock::new(T0);
    let mock = Mock::start(clock.clone());
    let config = RestConfig { recv_window_ms: 1_500, ..RestConfig::default() };
    let mut rest = client_with(Api::Futures, &mock.url(), &fast_http(), &config, &clock);
    mock.script("GET", "/fapi/v3/positionRisk", Reply::ok("[]"));
    rest.position_risk(None).unwrap();
    assert_eq!(mock.requests()[1].param("recvWindow"), Some("1500"));
    // A server 2 s ahead refuses it, and the client's resync (to +2 s) makes it pass.
    mock.set_skew(2_000);
    mock.script("GET", "/fapi/v3/positionRisk", Reply::ok("[]"));
    rest.position_risk(None).unwrap();
    assert_eq!(mock.count(), 5);
    assert_eq!(rest.offset_ms(), 2_000);
    let _ = fixture("error_-1021.json");
}
