//! REST authentication, limits and faults: good signatures (HMAC and Ed25519) pass and bad ones
//! are refused with Binance's codes, timestamps are checked against the recvWindow, weight
//! headers count up to a 429 and hammering turns it into a 418, and the REST faults fail before
//! or after executing, as the unknown-outcome paths need. Signing is done here, not by `feed`.

mod support;

use std::time::{Duration, Instant};

use engine::money::Qty;
use engine::types::Symbol;
use feed::rest::{ApiError, RestError, classify_response};
use sim::{ApiKeySpec, Fault, OrderOutcome, RestFailure, Sim, SimConfig};
use support::{Rest, T, ed25519_sig, eventually, hmac_hex, now_ms};

fn classify(r: &support::Resp) -> Result<(), RestError> {
    classify_response(r.status, r.headers.clone(), r.body.as_bytes())
}

#[test]
fn hmac_signatures_keys_and_timestamps_are_checked_as_binance_does() {
    let sim = Sim::start(SimConfig::manual()).unwrap();
    let rest = Rest::new(&sim.urls().usdm_rest, None);
    let path = "/fapi/v1/openOrders";
    assert_eq!(rest.signed("GET", path, "symbol=BTCUSDT").status, 200);

    let ts = now_ms();
    let payload = format!("symbol=BTCUSDT&timestamp={ts}");
    let good = hmac_hex(support::SECRET, &payload);
    // Hex is case-insensitive.
    assert_eq!(
        rest.send_signed("GET", path, &format!("{payload}&signature={}", good.to_uppercase()))
            .status,
        200
    );
    let bad = hmac_hex("another secret", &payload);
    let r = rest.send_signed("GET", path, &format!("{payload}&signature={bad}"));
    assert_eq!((r.status, r.code()), (400, Some(-1022)));
    assert!(matches!(
        classify(&r),
        Err(RestError::Api { error: ApiError::BadCredentials { code: -1022 }, .. })
    ));
    // Signed over one thing, sent with another.
    let r =
        rest.send_signed("GET", path, &format!("symbol=ETHUSDT&timestamp={ts}&signature={good}"));
    assert_eq!(r.code(), Some(-1022));
    let r = rest.send_signed("GET", path, &payload);
    assert_eq!(r.code(), Some(-1102), "no signature: {}", r.body);
    let r = rest.send_signed(
        "GET",
        path,
        &format!("symbol=BTCUSDT&signature={}", hmac_hex(support::SECRET, "symbol=BTCUSDT")),
    );
    assert_eq!(r.code(), Some(-1102), "no timestamp: {}", r.body);
    let r = rest.raw("GET", &format!("{path}?{payload}&signature={good}"), "", Some("unknown-key"));
    assert_eq!((r.status, r.code()), (401, Some(-2015)));
    let r = rest.raw("GET", &format!("{path}?{payload}&signature={good}"), "", None);
    assert_eq!(r.code(), Some(-2014));
    assert_eq!(rest.raw("POST", "/fapi/v1/listenKey", "", None).code(), Some(-2014));

    // totalParams = query + body with no separator; the signature may sit in the body.
    let query = "symbol=BTCUSDT&side=BUY&type=MARKET";
    let body = format!("quantity=0.002&recvWindow=5000&timestamp={}", now_ms());
    let sig = hmac_hex(support::SECRET, &format!("{query}{body}"));
    let r = rest.raw(
        "POST",
        &format!("/fapi/v1/order?{query}"),
        &format!("{body}&signature={sig}"),
        Some(support::KEY),
    );
    assert_eq!(r.status, 200, "{}", r.body);

    // Timestamps: 1 s ahead is refused, recvWindow bounds the past, 60 s is its maximum.
    let at = |ts: u64, extra: &str| {
        let payload = format!("symbol=BTCUSDT{extra}&timestamp={ts}");
        rest.send_signed(
            "GET",
            path,
            &format!("{payload}&signature={}", hmac_hex(support::SECRET, &payload)),
        )
    };
    let ahead = at(now_ms() + 2_000, "");
    assert_eq!(ahead.code(), Some(-1021));
    assert!(
        matches!(
            classify(&ahead),
            Err(RestError::Api { error: ApiError::TimeSync { ahead: true, .. }, .. })
        ),
        "{}",
        ahead.body
    );
    let late = at(now_ms() - 6_000, "");
    assert!(
        matches!(
            classify(&late),
            Err(RestError::Api { error: ApiError::TimeSync { ahead: false, .. }, .. })
        ),
        "{}",
        late.body
    );
    assert_eq!(at(now_ms() - 6_000, "&recvWindow=10000").status, 200);
    assert_eq!(at(now_ms() - 6_000, "&recvWindow=70000").code(), Some(-1131));
    assert_eq!(at(now_ms() + 500, "").status, 200, "within the 1 s allowance");
}

#[test]
fn ed25519_keys_verify_base64_signatures() {
    let signing = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
    let public = signing.verifying_key().to_bytes();
    let mut cfg = SimConfig::manual();
    cfg.api_keys.push(ApiKeySpec::ed25519("ed-key", public));
    let sim = Sim::start(cfg).unwrap();
    let rest = Rest::new(&sim.urls().spot_rest, None);
    let path = "/sapi/v1/margin/openOrders";
    let payload = format!("symbol=BTCUSDT&isIsolated=TRUE&timestamp={}", now_ms());
    let send = |sig: &str| {
        rest.raw("GET", &format!("{path}?{payload}&signature={sig}"), "", Some("ed-key"))
    };
    let r = send(&ed25519_sig(&signing, &payload));
    assert_eq!(r.status, 200, "{}", r.body);
    let other = ed25519_dalek::SigningKey::from_bytes(&[8u8; 32]);
    assert_eq!(send(&ed25519_sig(&other, &payload)).code(), Some(-1022));
    assert_eq!(
        send(&hmac_hex(support::SECRET, &payload)).code(),
        Some(-1022),
        "an Ed25519 key takes no HMAC"
    );
    let tampered = payload.replace("BTCUSDT", "ETHUSDT");
    let r = rest.raw(
        "GET",
        &format!("{path}?{tampered}&signature={}", ed25519_sig(&signing, &payload)),
        "",
        Some("ed-key"),
    );
    assert_eq!(r.code(), Some(-1022));
}

#[test]
fn weight_headers_count_then_429_then_418_when_hammered() {
    let cfg = SimConfig {
        usdm_weight_limit: 5,
        weight_window: Duration::from_secs(30),
        ban_after_429s: 2,
        ban_duration: Duration::from_millis(600),
        ..SimConfig::manual()
    };
    let sim = Sim::start(cfg).unwrap();
    let rest = Rest::new(&sim.urls().usdm_rest, None);
    let mut used = Vec::new();
    for _ in 0..5 {
        let r = rest.public("/fapi/v1/time");
        assert_eq!(r.status, 200);
        used.push(r.header("X-MBX-USED-WEIGHT-1M").unwrap().parse::<u32>().unwrap());
    }
    assert_eq!(used, [1, 2, 3, 4, 5]);
    let r = rest.public("/fapi/v1/time");
    assert_eq!((r.status, r.code()), (429, Some(-1003)));
    assert!(r.header("Retry-After").unwrap().parse::<u64>().unwrap() >= 1);
    assert!(matches!(classify(&r), Err(RestError::RateLimited { retry_after_s: Some(_), .. })));
    assert_eq!(rest.public("/fapi/v1/time").status, 429);
    // Ignoring the 429s gets the IP banned.
    let r = rest.public("/fapi/v1/time");
    assert_eq!(r.status, 418, "{}", r.body);
    assert!(matches!(classify(&r), Err(RestError::Banned { retry_after_s: Some(_), .. })));
    assert!(r.body.contains("banned until"), "{}", r.body);
    // Spot has its own budget.
    let spot = Rest::new(&sim.urls().spot_rest, None);
    assert_eq!(spot.public("/api/v3/time").status, 200);
    // The ban ends.
    assert!(eventually(Duration::from_secs(5), || rest.public("/fapi/v1/ping").status == 200));
}

#[test]
fn rest_faults_fail_before_or_after_executing() {
    let sim = Sim::start(SimConfig::manual()).unwrap();
    let rest = Rest::new(&sim.urls().usdm_rest, None);
    let order = |cid: &str| {
        rest.signed(
            "POST",
            "/fapi/v1/order",
            &format!("symbol=BTCUSDT&side=BUY&type=MARKET&quantity=0.002&newClientOrderId={cid}"),
        )
    };
    let btc = Symbol::lit("BTCUSDT");

    sim.fault(Fault::FailRest {
        path_prefix: "/fapi/v1/order".into(),
        count: 1,
        failure: RestFailure::RejectBefore { status: 503 },
    });
    let r = order("f-1");
    assert_eq!(r.status, 503);
    assert!(matches!(classify(&r), Err(RestError::Unavailable)), "{}", r.body);
    assert!(sim.orders().is_empty(), "nothing was executed");

    sim.fault(Fault::FailRest {
        path_prefix: "/fapi/v1/order".into(),
        count: 1,
        failure: RestFailure::ExecuteThen503,
    });
    let r = order("f-2");
    assert!(
        matches!(classify(&r), Err(RestError::OutcomeUnknown { status: 503, .. })),
        "{}",
        r.body
    );
    assert_eq!(sim.orders()[0].client_order_id, "f-2");
    assert_eq!(sim.orders()[0].outcome, OrderOutcome::Filled);
    // The order is there for whoever asks.
    let q = rest.signed("GET", "/fapi/v1/order", "symbol=BTCUSDT&origClientOrderId=f-2");
    assert_eq!(q.status, 200);

    sim.fault(Fault::FailRest {
        path_prefix: "/fapi/v1/order".into(),
        count: 1,
        failure: RestFailure::ExecuteThenTimeout { hold: Duration::from_millis(200) },
    });
    let ts = now_ms();
    let payload = format!(
        "symbol=BTCUSDT&side=BUY&type=MARKET&quantity=0.002&newClientOrderId=f-3&timestamp={ts}"
    );
    let body = format!("{payload}&signature={}", hmac_hex(support::SECRET, &payload));
    assert!(rest.try_raw("POST", "/fapi/v1/order", &body).is_err(), "no answer, connection closed");
    assert_eq!(sim.orders()[1].client_order_id, "f-3");
    assert_eq!(sim.position(btc).amount, Qty::lit("0.004"));
    assert_eq!(sim.requests().iter().filter(|r| r.status == 0).count(), 1);

    sim.fault(Fault::DelayRest {
        path_prefix: "/fapi/v1/time".into(),
        delay: Duration::from_millis(200),
        count: 1,
    });
    let start = Instant::now();
    assert_eq!(rest.public("/fapi/v1/time").status, 200);
    assert!(start.elapsed() >= Duration::from_millis(200));

    sim.fault(Fault::FailRest {
        path_prefix: "/fapi".into(),
        count: 2,
        failure: RestFailure::TooManyRequests,
    });
    assert_eq!(rest.public("/fapi/v1/ping").status, 429);
    assert_eq!(rest.public("/fapi/v1/ping").status, 429);
    assert_eq!(rest.public("/fapi/v1/ping").status, 200, "only the next two");
    sim.fault(Fault::FailRest {
        path_prefix: String::new(),
        count: 1,
        failure: RestFailure::Banned,
    });
    assert_eq!(rest.public("/fapi/v1/ping").status, 418);
    sim.fault(Fault::FailRest {
        path_prefix: "/fapi".into(),
        count: 5,
        failure: RestFailure::RejectBefore { status: 500 },
    });
    sim.fault(Fault::Clear);
    assert_eq!(rest.public("/fapi/v1/ping").status, 200);

    // A keep-alive REST connection can be dropped too; the next request reconnects.
    sim.fault(Fault::DropConnections { kind: Some(sim::ConnKind::UsdmRest) });
    assert!(eventually(T, || rest
        .try_raw("GET", "/fapi/v1/ping", "")
        .is_ok_and(|r| r.status == 200)));
    assert!(
        sim.connections()
            .iter()
            .any(|c| c.kind == sim::ConnKind::UsdmRest
                && c.closed == Some(sim::CloseReason::Dropped))
    );
}
