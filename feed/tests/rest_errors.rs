//! Every error fixture to its typed error, its engine classification and whether the outcome is
//! unknown; then HTTP status handling from (status, headers, body).

use engine::events::{OrderStatus, RejectKind};
use feed::rest::{ApiError, BodyError, FilterKind, RestError, classify_response};

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/fixtures/binance/");

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{DIR}{name}")).unwrap_or_else(|e| panic!("{name}: {e}"))
}

const NO_HEADERS: [(&str, &str); 0] = [];

use ApiError as E;
use RejectKind::{NothingToClose, Permanent, Transient};

/// (file, expected error, expected reject kind; `None` = outcome unknown, query first).
fn table() -> Vec<(&'static str, ApiError, Option<RejectKind>)> {
    let other = |code, msg: &str| E::Other { code, msg: msg.to_owned() };
    vec![
        ("error_-1008_futures.json", E::Overloaded, Some(Transient)),
        (
            "error_-1013_LOT_SIZE.json",
            E::Filter { code: -1013, filter: FilterKind::LotSize },
            Some(Permanent),
        ),
        (
            "error_-1013_NOTIONAL.json",
            E::Filter { code: -1013, filter: FilterKind::Notional },
            Some(Permanent),
        ),
        (
            "error_-1013_PRICE_FILTER.json",
            E::Filter { code: -1013, filter: FilterKind::PriceFilter },
            Some(Permanent),
        ),
        ("error_-1021.json", E::TimeSync { code: -1021, ahead: false }, Some(Transient)),
        ("error_-1021_ahead.json", E::TimeSync { code: -1021, ahead: true }, Some(Transient)),
        ("error_-1022.json", E::BadCredentials { code: -1022 }, Some(Permanent)),
        (
            "error_-1100_newClientOrderId.json",
            other(
                -1100,
                "Illegal characters found in parameter 'newClientOrderId'; legal range is \
                 '^[a-zA-Z0-9-_]{1,36}$'.",
            ),
            Some(Permanent),
        ),
        ("error_-1125.json", E::ListenKeyMissing, Some(Permanent)),
        ("error_-2010_duplicate_order.json", E::Duplicate { code: -2010 }, None),
        (
            "error_-2010_insufficient_balance.json",
            E::InsufficientBalance { code: -2010 },
            Some(Permanent),
        ),
        ("error_-2011_cancel_restrictions.json", E::CancelRestricted, Some(Permanent)),
        ("error_-2011_unknown_order.json", E::UnknownOrder { code: -2011 }, Some(Permanent)),
        ("error_-2013.json", E::UnknownOrder { code: -2013 }, Some(Permanent)),
        ("error_-2015.json", E::BadCredentials { code: -2015 }, Some(Permanent)),
        ("error_-2019_futures.json", E::InsufficientBalance { code: -2019 }, Some(Permanent)),
        ("error_-2022_futures.json", E::ReduceOnlyRejected, Some(NothingToClose)),
        (
            "error_-4015_futures.json",
            other(-4015, "Client order id length should not be more than 36 chars"),
            Some(Permanent),
        ),
        ("error_-4116_futures.json", E::Duplicate { code: -4116 }, None),
        ("error_-4120_futures.json", E::UseAlgoApi, Some(Permanent)),
        (
            "error_-4164_futures.json",
            E::Filter { code: -4164, filter: FilterKind::MinNotional },
            Some(Permanent),
        ),
        (
            "error_-4531_futures.json",
            other(
                -4531,
                "Position mode change requires syncing UM and CM. Please close any open \
                 positions or orders in CM and try again.",
            ),
            Some(Permanent),
        ),
        (
            "error_-5022_futures.json",
            other(
                -5022,
                "Due to the order could not be executed as maker, the Post Only order will be \
                 rejected.",
            ),
            Some(Permanent),
        ),
        ("error_generic_-1121.json", other(-1121, "Invalid symbol."), Some(Permanent)),
        // WebSocket API envelopes: the same classification from `error`.
        ("spot_wsapi_error_-2010.json", E::InsufficientBalance { code: -2010 }, Some(Permanent)),
        (
            "spot_wsapi_error_418_-1003.json",
            E::TooManyRequests { code: -1003, banned_until_ms: Some(1_659_146_400_000) },
            Some(Transient),
        ),
        (
            "futures_wsapi_error_-1102.json",
            other(
                -1102,
                "Mandatory parameter 'quantity' was not sent, was empty/null, or malformed.",
            ),
            Some(Permanent),
        ),
    ]
}

#[test]
fn every_error_fixture_is_in_the_table() {
    let listed: Vec<&str> = table().iter().map(|(f, _, _)| *f).collect();
    let mut found = 0;
    for entry in std::fs::read_dir(DIR).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name.starts_with("error_") && name.ends_with(".json") {
            found += 1;
            assert!(listed.contains(&name.as_str()), "{name} has no expectation");
        }
    }
    assert_eq!(found, 24);
}

#[test]
fn each_error_fixture_parses_to_its_type_and_classification() {
    for (file, expected, kind) in table() {
        let error = ApiError::parse(&fixture(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(error, expected, "{file}");
        assert_eq!(error.reject_kind(), kind, "{file}");
        assert_eq!(error.outcome_unknown(), kind.is_none(), "{file}");
        // As the body of an HTTP 400 (429 and 418 are covered below).
        let status = 400;
        let rest = classify_response(status, NO_HEADERS, &fixture(file)).unwrap_err();
        assert_eq!(rest, RestError::Api { status, error: expected.clone() }, "{file}");
        assert_eq!(rest.reject_kind(), kind, "{file}");
        let place = match kind {
            Some(kind) => OrderStatus::Rejected(kind),
            None => OrderStatus::Unknown,
        };
        assert_eq!(rest.place_status(), place, "{file}");
        let not_found = matches!(expected, E::UnknownOrder { .. });
        assert_eq!(rest.query_status(), not_found.then_some(OrderStatus::NotFound), "{file}");
        assert_eq!(error.code(), file_code(file), "{file}");
    }
}

/// The code in the file name: `error_-2010_…` → -2010.
fn file_code(file: &str) -> i32 {
    let start = file.find("_-").unwrap() + 1;
    let digits = file[start + 1..].bytes().take_while(u8::is_ascii_digit).count();
    file[start..start + 1 + digits].parse().unwrap()
}

#[test]
fn unlisted_codes_and_messages_classify_by_code() {
    assert_eq!(
        E::from_code(-5028, "Timestamp outside of the ME recvWindow"),
        E::TimeSync { code: -5028, ahead: false }
    );
    assert_eq!(E::from_code(-2014, "API-key format invalid."), E::BadCredentials { code: -2014 });
    assert_eq!(
        E::from_code(-1111, "Precision is over the maximum defined for this asset."),
        E::Filter { code: -1111, filter: FilterKind::Precision }
    );
    assert_eq!(
        E::from_code(-4014, "Price not increased by tick size."),
        E::Filter { code: -4014, filter: FilterKind::TickSize }
    );
    assert_eq!(
        E::from_code(-4023, "Quantity not increased by step size."),
        E::Filter { code: -4023, filter: FilterKind::StepSize }
    );
    assert_eq!(
        E::from_code(-1013, "Filter failure: MARKET_LOT_SIZE"),
        E::Filter { code: -1013, filter: FilterKind::MarketLotSize }
    );
    assert_eq!(
        E::from_code(-1013, "Filter failure: MIN_NOTIONAL"),
        E::Filter { code: -1013, filter: FilterKind::MinNotional }
    );
    assert_eq!(
        E::from_code(-1013, "Invalid quantity."),
        E::Filter { code: -1013, filter: FilterKind::Unrecognized }
    );
    assert_eq!(
        E::from_code(-4061, "Order's position side does not match user's setting."),
        E::PositionSideMismatch
    );
    for code in [-1000, -1006, -1007] {
        let e = E::from_code(code, "Timeout waiting for response from backend server.");
        assert_eq!(e, E::UnknownOutcome { code });
        assert!(e.outcome_unknown() && e.reject_kind().is_none());
    }
    assert_eq!(
        E::from_code(-1015, "Too many new orders."),
        E::TooManyRequests { code: -1015, banned_until_ms: None }
    );
    // -2010 with a reason robsond does not single out stays a plain permanent rejection.
    let closed = E::from_code(-2010, "Market is closed.");
    assert_eq!(closed, E::Other { code: -2010, msg: "Market is closed.".into() });
    assert_eq!(closed.reject_kind(), Some(Permanent));
    assert_eq!(closed.to_string(), "Binance -2010: Market is closed.");
}

#[test]
fn error_bodies_that_are_not_errors_are_refused() {
    assert_eq!(ApiError::parse(b""), Err(BodyError::NotJson));
    assert_eq!(ApiError::parse(b"<html>502</html>"), Err(BodyError::NotJson));
    assert_eq!(ApiError::parse(b"[]"), Err(BodyError::Shape("error body")));
    assert_eq!(ApiError::parse(br#"{"msg":"x"}"#), Err(BodyError::Missing("code")));
    assert_eq!(ApiError::parse(br#"{"code":-99999999999}"#), Err(BodyError::BadValue("code")));
    // Type drift: a code as a string is still the code; a missing msg is empty.
    assert_eq!(ApiError::parse(br#"{"code":"-2013"}"#), Ok(E::UnknownOrder { code: -2013 }));
}

#[test]
fn success_statuses_pass() {
    for status in [200, 201, 204] {
        assert_eq!(classify_response(status, NO_HEADERS, b"{}"), Ok(()));
    }
}

#[test]
fn status_429_is_rate_limited_with_retry_after() {
    let body = br#"{"code":-1003,"msg":"Too much request weight used; current limit is 6000 request weight per 1 MINUTE."}"#;
    let e = classify_response(429, [("Retry-After", "7")], body).unwrap_err();
    assert_eq!(
        e,
        RestError::RateLimited {
            retry_after_s: Some(7),
            error: Some(E::TooManyRequests { code: -1003, banned_until_ms: None }),
        }
    );
    assert!(!e.outcome_unknown());
    assert_eq!(e.reject_kind(), Some(Transient));
    assert_eq!(e.place_status(), OrderStatus::Rejected(Transient));
    assert_eq!(e.not_before_ms(1_000), Some(8_000));
    // Header names are case-insensitive; a date form of Retry-After is not guessed at.
    let e = classify_response(429, [("RETRY-AFTER", "12")], b"").unwrap_err();
    assert_eq!(e, RestError::RateLimited { retry_after_s: Some(12), error: None });
    let e = classify_response(429, [("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT")], b"")
        .unwrap_err();
    assert_eq!(e, RestError::RateLimited { retry_after_s: None, error: None });
    assert_eq!(e.not_before_ms(1_000), None);
}

#[test]
fn status_418_is_a_ban_until_the_later_of_header_and_body() {
    let body = fixture("spot_wsapi_error_418_-1003.json");
    let e = classify_response(418, [("Retry-After", "3493")], &body).unwrap_err();
    let RestError::Banned { retry_after_s: Some(3493), error: Some(_) } = &e else {
        panic!("{e:?}")
    };
    assert_eq!(e.reject_kind(), Some(Transient));
    assert_eq!(e.not_before_ms(1_659_142_907_531), Some(1_659_146_400_531));
    let e = classify_response(418, NO_HEADERS, &body).unwrap_err();
    assert_eq!(e.not_before_ms(0), Some(1_659_146_400_000));
    // The ban's end from a plain REST message, without the WS `data` object.
    let rest = br#"{"code":-1003,"msg":"Way too much request weight used; IP banned until 1659146400000. Please use WebSocket Streams for live updates to avoid bans."}"#;
    let e = classify_response(418, NO_HEADERS, rest).unwrap_err();
    assert_eq!(e.not_before_ms(0), Some(1_659_146_400_000));
}

#[test]
fn status_403_and_408() {
    let waf = classify_response(403, NO_HEADERS, b"<html>Forbidden</html>").unwrap_err();
    assert_eq!(waf, RestError::Firewall);
    assert_eq!(waf.reject_kind(), Some(Transient));
    let timeout = classify_response(408, NO_HEADERS, b"").unwrap_err();
    assert_eq!(timeout, RestError::OutcomeUnknown { status: 408, error: None });
    assert!(timeout.outcome_unknown());
    assert_eq!(timeout.reject_kind(), None);
    assert_eq!(timeout.place_status(), OrderStatus::Unknown);
}

#[test]
fn status_5xx_is_unknown_except_the_documented_certain_failures() {
    for (status, body) in [(500, &b""[..]), (502, b"<html>Bad Gateway</html>"), (504, b"")] {
        let e = classify_response(status, NO_HEADERS, body).unwrap_err();
        assert_eq!(e, RestError::OutcomeUnknown { status, error: None });
        assert_eq!(e.place_status(), OrderStatus::Unknown);
    }
    let unknown =
        br#"{"code":-1000,"msg":"Unknown error, please check your request or try again later."}"#;
    let e = classify_response(503, NO_HEADERS, unknown).unwrap_err();
    assert_eq!(
        e,
        RestError::OutcomeUnknown { status: 503, error: Some(E::UnknownOutcome { code: -1000 }) }
    );
    let e = classify_response(500, NO_HEADERS, br#"{"code":-1007,"msg":"Timeout waiting for response from backend server. Send status unknown; execution status unknown."}"#).unwrap_err();
    assert_eq!(e.place_status(), OrderStatus::Unknown);
    // -1008: throttled, refused, not counted; closes are exempt but may still see it.
    let e = classify_response(503, NO_HEADERS, &fixture("error_-1008_futures.json")).unwrap_err();
    assert_eq!(e, RestError::Api { status: 503, error: E::Overloaded });
    assert!(!e.outcome_unknown());
    assert_eq!(e.place_status(), OrderStatus::Rejected(Transient));
    // "Service Unavailable.": a certain failure, as JSON or as text.
    for body in [&br#"{"code":-1001,"msg":"Service Unavailable."}"#[..], b"Service Unavailable."] {
        let e = classify_response(503, NO_HEADERS, body).unwrap_err();
        assert_eq!(e, RestError::Unavailable);
        assert_eq!(e.reject_kind(), Some(Transient));
    }
}

#[test]
fn undocumented_statuses() {
    let e = classify_response(404, NO_HEADERS, b"<html>Not Found</html>").unwrap_err();
    assert_eq!(e, RestError::Unexpected { status: 404 });
    assert_eq!(e.reject_kind(), Some(Transient));
    let e = classify_response(302, NO_HEADERS, b"").unwrap_err();
    assert!(e.outcome_unknown(), "a redirect is not a refusal Binance promised");
    let e = RestError::from(BodyError::Missing("orderId"));
    assert!(e.outcome_unknown(), "a 2xx order whose body is unreadable must be queried");
    assert_eq!(e.place_status(), OrderStatus::Unknown);
}
