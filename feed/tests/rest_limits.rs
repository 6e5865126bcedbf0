//! The rate limiter at, just under and just over each limit; the close reserve; headers; bans.

use feed::rest::limits::{DEFAULT_RESERVE_PCT, FUTURES_LIMITS, SPOT_LIMITS};
use feed::rest::{
    ApiError, Cost, LimitKind, Priority, RateLimiter, RestError, Verdict, classify_response,
};

const MIN: u64 = 60_000;
/// Some time well into a minute, 10-second window and day: 2026-01-01T00:00:05Z.
const T0: u64 = 1_767_225_605_000;
const NEXT_MINUTE: u64 = T0 - 5_000 + MIN;
const NEXT_10S: u64 = T0 - 5_000 + 10_000;

fn futures() -> RateLimiter {
    RateLimiter::new(&FUTURES_LIMITS, DEFAULT_RESERVE_PCT)
}

fn weight_limit() -> Option<feed::rest::Limit> {
    Some(FUTURES_LIMITS[0])
}

#[test]
fn weight_up_to_the_budget_then_wait_for_the_next_minute() {
    let mut limiter = futures();
    // Normal budget is 90 % of 2400 = 2160; exactly reaching it is allowed.
    assert_eq!(limiter.acquire(T0, Cost::request(2159), Priority::Normal), Verdict::Send);
    assert_eq!(limiter.acquire(T0, Cost::request(1), Priority::Normal), Verdict::Send);
    assert_eq!(limiter.used(T0, LimitKind::RequestWeight, MIN), Some(2160));
    // One more is over: wait for the minute to roll.
    let over = limiter.acquire(T0, Cost::request(1), Priority::Normal);
    assert_eq!(over, Verdict::Wait { at_ms: NEXT_MINUTE, limit: weight_limit() });
    assert_eq!(
        limiter.used(T0, LimitKind::RequestWeight, MIN),
        Some(2160),
        "a refusal is not counted"
    );
    // A close may spend the reserve up to the hard limit, and no further.
    assert_eq!(limiter.acquire(T0, Cost::order(240), Priority::Close), Verdict::Send);
    assert_eq!(
        limiter.acquire(T0, Cost::order(1), Priority::Close),
        Verdict::Wait { at_ms: NEXT_MINUTE, limit: weight_limit() }
    );
    // The last millisecond of the window is still full; its end is a fresh window.
    assert!(matches!(
        limiter.check(NEXT_MINUTE - 1, Cost::request(1), Priority::Close),
        Verdict::Wait { .. }
    ));
    assert_eq!(limiter.check(NEXT_MINUTE, Cost::request(2160), Priority::Normal), Verdict::Send);
}

#[test]
fn orders_per_ten_seconds_with_the_close_reserve() {
    let mut limiter = futures();
    // Futures new orders cost no IP weight, only order count: 270 normal of 300.
    for i in 0..270 {
        assert_eq!(
            limiter.acquire(T0, Cost::order(0), Priority::Normal),
            Verdict::Send,
            "order {i}"
        );
    }
    assert_eq!(
        limiter.check(T0, Cost::order(0), Priority::Normal),
        Verdict::Wait { at_ms: NEXT_10S, limit: Some(FUTURES_LIMITS[2]) }
    );
    // Queries are not orders and still pass.
    assert_eq!(limiter.check(T0, Cost::request(1), Priority::Normal), Verdict::Send);
    for _ in 270..300 {
        assert_eq!(limiter.acquire(T0, Cost::order(0), Priority::Close), Verdict::Send);
    }
    assert!(matches!(limiter.check(T0, Cost::order(0), Priority::Close), Verdict::Wait { .. }));
    assert_eq!(limiter.check(NEXT_10S, Cost::order(0), Priority::Close), Verdict::Send);
    assert_eq!(limiter.used(NEXT_10S, LimitKind::Orders, 10_000), Some(0));
    assert_eq!(
        limiter.used(NEXT_10S, LimitKind::Orders, MIN),
        Some(300),
        "the minute still counts them"
    );
}

#[test]
fn when_several_limits_are_full_the_latest_reset_decides() {
    let mut limiter = futures();
    limiter.observe(T0, LimitKind::Orders, 10_000, 300);
    limiter.observe(T0, LimitKind::Orders, MIN, 1200);
    assert_eq!(
        limiter.check(T0, Cost::order(0), Priority::Close),
        Verdict::Wait { at_ms: NEXT_MINUTE, limit: Some(FUTURES_LIMITS[1]) }
    );
}

#[test]
fn headers_raise_the_count_and_never_lower_it() {
    let mut limiter = futures();
    limiter.observe_headers(T0, [("X-MBX-USED-WEIGHT-1M", "2300"), ("x-mbx-order-count-10s", "3")]);
    assert_eq!(limiter.used(T0, LimitKind::RequestWeight, MIN), Some(2300));
    assert_eq!(limiter.used(T0, LimitKind::Orders, 10_000), Some(3));
    assert!(matches!(limiter.check(T0, Cost::request(1), Priority::Normal), Verdict::Wait { .. }));
    assert_eq!(limiter.check(T0, Cost::request(100), Priority::Close), Verdict::Send);
    assert!(matches!(limiter.check(T0, Cost::request(101), Priority::Close), Verdict::Wait { .. }));
    // An older, lower count (a response that predates requests in flight) changes nothing.
    limiter.observe_headers(T0 + 10, [("x-mbx-used-weight-1m", "12")]);
    assert_eq!(limiter.used(T0 + 10, LimitKind::RequestWeight, MIN), Some(2300));
    // In the next window a header starts the count afresh.
    limiter.observe_headers(NEXT_MINUTE + 1, [("X-MBX-USED-WEIGHT-1M", "12")]);
    assert_eq!(limiter.used(NEXT_MINUTE + 1, LimitKind::RequestWeight, MIN), Some(12));
    // Headers robsond does not track, or cannot read, are ignored.
    limiter.observe_headers(
        T0,
        [
            ("x-mbx-used-weight", "9999"),
            ("x-mbx-used-weight-1x", "9999"),
            ("x-mbx-used-weight-m", "9999"),
            ("x-mbx-order-count-1m", "abc"),
            ("x-mbx-used-weight-5m", "9999"),
        ],
    );
    assert_eq!(limiter.used(NEXT_MINUTE + 1, LimitKind::RequestWeight, MIN), Some(12));
    assert_eq!(limiter.used(T0, LimitKind::Orders, MIN), Some(0));
}

#[test]
fn spot_daily_order_count_and_raw_requests() {
    let mut limiter = RateLimiter::new(&SPOT_LIMITS, DEFAULT_RESERVE_PCT);
    let tomorrow = T0 - 5_000 + 86_400_000;
    limiter.observe_headers(T0, [(b"X-MBX-ORDER-COUNT-1D".as_slice(), b"159999".as_slice())]);
    assert_eq!(
        limiter.check(T0, Cost::order(1), Priority::Normal),
        Verdict::Wait { at_ms: tomorrow, limit: Some(SPOT_LIMITS[2]) }
    );
    assert_eq!(limiter.acquire(T0, Cost::order(1), Priority::Close), Verdict::Send);
    assert!(matches!(limiter.check(T0, Cost::order(1), Priority::Close), Verdict::Wait { .. }));
    // Raw requests have no header: robsond's own count is all there is.
    assert_eq!(limiter.used(T0, LimitKind::RawRequests, 5 * MIN), Some(1));
}

#[test]
fn a_cost_beyond_the_whole_budget_can_never_go() {
    let limiter = futures();
    assert_eq!(
        limiter.check(T0, Cost::request(2401), Priority::Close),
        Verdict::TooCostly(FUTURES_LIMITS[0])
    );
    assert_eq!(
        limiter.check(T0, Cost::request(2161), Priority::Normal),
        Verdict::TooCostly(FUTURES_LIMITS[0])
    );
    assert_eq!(limiter.check(T0, Cost::request(2400), Priority::Close), Verdict::Send);
}

#[test]
fn retry_after_and_bans_block_everything_including_closes() {
    let mut limiter = futures();
    let e = classify_response(429, [("Retry-After", "30")], b"").unwrap_err();
    limiter.on_error(T0, &e);
    let until = T0 + 30_000;
    assert_eq!(
        limiter.check(T0, Cost::order(0), Priority::Close),
        Verdict::Wait { at_ms: until, limit: None }
    );
    assert_eq!(
        limiter.check(until - 1, Cost::request(1), Priority::Normal),
        Verdict::Wait { at_ms: until, limit: None }
    );
    assert_eq!(limiter.check(until, Cost::request(1), Priority::Normal), Verdict::Send);
    // A 429 without advice waits out the current minute.
    let mut limiter = futures();
    limiter.on_error(T0, &RestError::RateLimited { retry_after_s: None, error: None });
    assert_eq!(limiter.blocked_until_ms(), NEXT_MINUTE);
    // A 418 without advice: Binance's shortest ban, two minutes.
    let mut limiter = futures();
    limiter.on_error(T0, &RestError::Banned { retry_after_s: None, error: None });
    assert_eq!(limiter.blocked_until_ms(), T0 + 2 * MIN);
    // A ban whose end the body names.
    let body = br#"{"code":-1003,"msg":"Way too much request weight used; IP banned until 1767229200000. Please use WebSocket Streams."}"#;
    limiter.on_error(T0, &classify_response(418, [("x", "y")], body).unwrap_err());
    assert_eq!(limiter.blocked_until_ms(), 1_767_229_200_000);
    // An earlier end never shortens a ban.
    limiter.block_until(T0 + 1);
    assert_eq!(limiter.blocked_until_ms(), 1_767_229_200_000);
    // Errors that say nothing about limits leave it alone.
    let mut limiter = futures();
    for e in [
        RestError::Firewall,
        RestError::OutcomeUnknown { status: 500, error: None },
        RestError::Api { status: 400, error: ApiError::Overloaded },
    ] {
        limiter.on_error(T0, &e);
    }
    assert_eq!(limiter.blocked_until_ms(), 0);
    // A -1003 that arrives with another status still blocks.
    limiter.on_error(
        T0,
        &RestError::Api {
            status: 400,
            error: ApiError::TooManyRequests { code: -1003, banned_until_ms: None },
        },
    );
    assert_eq!(limiter.blocked_until_ms(), NEXT_MINUTE);
}

#[test]
fn a_reserve_of_everything_leaves_only_closes() {
    let limiter = RateLimiter::new(&FUTURES_LIMITS, 200);
    assert_eq!(
        limiter.check(T0, Cost::request(1), Priority::Normal),
        Verdict::TooCostly(FUTURES_LIMITS[0])
    );
    assert_eq!(limiter.check(T0, Cost::order(1), Priority::Close), Verdict::Send);
}
