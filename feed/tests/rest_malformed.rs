//! Malformed input yields error values, never a panic: arbitrary bytes, damaged fixtures, and
//! JSON-shaped junk built from the tokens Binance bodies use, through every REST parser, the
//! response classifier and the rate limiter.

use engine::Venue;
use feed::rest::limits::FUTURES_LIMITS;
use feed::rest::{
    ApiError, BodyError, Cost, Priority, RateLimiter, classify_response, parse_exchange_info,
    parse_filters, parse_isolated_margin_account, parse_listen_key, parse_listen_token,
    parse_order, parse_orders, parse_ping, parse_position_risk, parse_server_time,
};
use proptest::prelude::*;

/// Runs every body parser on its own copy of `body`; only a panic can fail this.
fn all_parsers(body: &[u8]) {
    let copy = || body.to_vec();
    let _ = parse_order(&mut copy());
    let _ = parse_orders(&mut copy());
    let _ = parse_position_risk(&mut copy());
    let _ = parse_isolated_margin_account(&mut copy());
    let _ = parse_exchange_info(&mut copy(), Venue::Margin);
    let _ = parse_exchange_info(&mut copy(), Venue::Usdm);
    let _ = parse_filters(&mut copy(), Venue::Margin);
    let _ = parse_filters(&mut copy(), Venue::Usdm);
    let _ = parse_server_time(&mut copy());
    let _ = parse_ping(&mut copy());
    let _ = parse_listen_key(&mut copy());
    let _ = parse_listen_token(&mut copy());
    let _ = ApiError::parse(body);
    for status in [200, 400, 403, 408, 418, 429, 500, 503, 302, 0, u16::MAX] {
        if let Err(e) = classify_response(status, [("Retry-After", body)], body) {
            let _ = (e.reject_kind(), e.place_status(), e.query_status(), e.to_string());
            let _ = e.not_before_ms(u64::MAX);
            let mut limiter = RateLimiter::new(&FUTURES_LIMITS, 10);
            limiter.on_error(u64::MAX - 1, &e);
        }
    }
}

const FIXTURES: &[&str] = &[
    "order_response_ACK.json",
    "order_response_RESULT.json",
    "margin_order_response_FULL.json",
    "futures_order_response.json",
    "futures_query_order_response.json",
    "spot_open_orders_response.json",
    "futures_positionRisk_v2_hedge.json",
    "futures_positionRisk_v3_oneway.json",
    "margin_isolated_account_response.json",
    "exchangeInfo_spot_BTCUSDT_excerpt.json",
    "exchangeInfo_futures_BTCUSDT_excerpt.json",
    "spot_exchangeInfo_filters_examples.json",
    "margin_userListenToken_response.json",
    "spot_wsapi_error_418_-1003.json",
    "error_-1013_LOT_SIZE.json",
];

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/../../shared/fixtures/binance/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Tokens that reach past the JSON parser into the field readers and their edge cases.
const TOKENS: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    ",",
    ":",
    "null",
    "true",
    "false",
    "0",
    "-1",
    "1.5",
    "1e999",
    "-0",
    "18446744073709551616",
    "9223372036854775807",
    "0.30000000000000004",
    r#""""#,
    r#""0""#,
    r#""-0.001""#,
    r#""0.000000001""#,
    r#""92233720369""#,
    r#""1e-8""#,
    r#""TRADING""#,
    r#""FILLED""#,
    r#""BOTH""#,
    r#""LONG""#,
    r#""SHORT""#,
    r#""BUY""#,
    r#""symbol""#,
    r#""BTCUSDT""#,
    r#""orderId""#,
    r#""clientOrderId""#,
    r#""origClientOrderId""#,
    r#""status""#,
    r#""executedQty""#,
    r#""cummulativeQuoteQty""#,
    r#""avgPrice""#,
    r#""fills""#,
    r#""price""#,
    r#""qty""#,
    r#""transactTime""#,
    r#""positionAmt""#,
    r#""entryPrice""#,
    r#""positionSide""#,
    r#""symbols""#,
    r#""filters""#,
    r#""filterType""#,
    r#""PRICE_FILTER""#,
    r#""LOT_SIZE""#,
    r#""MARKET_LOT_SIZE""#,
    r#""MIN_NOTIONAL""#,
    r#""NOTIONAL""#,
    r#""tickSize""#,
    r#""stepSize""#,
    r#""minQty""#,
    r#""maxQty""#,
    r#""minPrice""#,
    r#""notional""#,
    r#""minNotional""#,
    r#""rateLimits""#,
    r#""rateLimitType""#,
    r#""REQUEST_WEIGHT""#,
    r#""interval""#,
    r#""DAY""#,
    r#""intervalNum""#,
    r#""limit""#,
    r#""assets""#,
    r#""baseAsset""#,
    r#""quoteAsset""#,
    r#""netAsset""#,
    r#""free""#,
    r#""borrowed""#,
    r#""code""#,
    r#""msg""#,
    r#""error""#,
    r#""data""#,
    r#""retryAfter""#,
    r#""listenKey""#,
    r#""result""#,
    r#""token""#,
    r#""expirationTime""#,
    r#""serverTime""#,
    r#""币安""#,
    r#""\u0000""#,
];

fn junk_json() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(proptest::sample::select(TOKENS), 0..64)
        .prop_map(|tokens| tokens.concat().into_bytes())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..512)) {
        all_parsers(&body);
    }

    #[test]
    fn json_shaped_junk_never_panics(body in junk_json()) {
        all_parsers(&body);
    }

    #[test]
    fn damaged_fixtures_never_panic(
        which in 0..FIXTURES.len(),
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
        cut in proptest::option::of(any::<usize>()),
    ) {
        let mut body = fixture(FIXTURES[which]);
        for (at, byte) in edits {
            let at = at % body.len();
            body[at] = byte;
        }
        if let Some(cut) = cut {
            body.truncate(cut % (body.len() + 1));
        }
        all_parsers(&body);
    }

    #[test]
    fn the_limiter_never_panics(
        steps in proptest::collection::vec(
            (any::<u64>(), any::<u32>(), 0u32..3, any::<bool>(), any::<u32>()),
            0..32,
        ),
    ) {
        let mut limiter = RateLimiter::new(&FUTURES_LIMITS, 10);
        for (now, weight, orders, close, header) in steps {
            let priority = if close { Priority::Close } else { Priority::Normal };
            let _ = limiter.acquire(now, Cost { weight, orders }, priority);
            let header = header.to_string();
            limiter.observe_headers(now, [("x-mbx-used-weight-1m", header.as_str())]);
            limiter.observe_headers(now, [("x-mbx-order-count-99999999999999999999d", "1")]);
        }
    }
}

#[test]
fn every_parser_refuses_empty_and_truncated_bodies_with_a_value() {
    for name in FIXTURES {
        let body = fixture(name);
        let half = &body[..body.len() / 2];
        assert_eq!(parse_order(&mut half.to_vec()).unwrap_err(), BodyError::NotJson, "{name}");
        assert_eq!(parse_position_risk(&mut half.to_vec()).unwrap_err(), BodyError::NotJson);
        assert_eq!(
            parse_exchange_info(&mut half.to_vec(), Venue::Usdm).unwrap_err(),
            BodyError::NotJson
        );
    }
    assert_eq!(parse_order(&mut Vec::new()), Err(BodyError::NotJson));
    assert_eq!(parse_orders(&mut b"{}".to_vec()), Err(BodyError::Shape("orders")));
    assert_eq!(parse_order(&mut b"[]".to_vec()), Err(BodyError::Shape("order")));
    assert_eq!(parse_position_risk(&mut b"{}".to_vec()), Err(BodyError::Shape("positionRisk")));
    assert_eq!(parse_position_risk(&mut b"[[]]".to_vec()), Err(BodyError::Shape("positionRisk[]")));
    assert_eq!(
        parse_isolated_margin_account(&mut b"{}".to_vec()),
        Err(BodyError::Missing("assets"))
    );
    assert_eq!(
        parse_server_time(&mut br#"{"serverTime":"soon"}"#.to_vec()),
        Err(BodyError::BadValue("serverTime"))
    );
    assert_eq!(
        parse_server_time(&mut br#"{"serverTime":true}"#.to_vec()),
        Err(BodyError::WrongType("serverTime"))
    );
    assert_eq!(parse_ping(&mut b"null".to_vec()), Err(BodyError::Shape("ping")));
    assert_eq!(
        parse_listen_token(&mut br#"{"token":"t"}"#.to_vec()),
        Err(BodyError::Missing("expirationTime"))
    );
}
