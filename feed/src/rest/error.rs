//! Binance's error codes and HTTP statuses, typed by what robsond must do about them.
//!
//! The question that matters for every failed order is not "which error" but "did it execute?".
//! Three answers exist: no (a rejection: retry later, give up, or the position is already gone),
//! and unknown (timeouts, 5xx, -1006/-1007, a duplicate client id): the order may be live or
//! filled, so it must be queried by client order id, never blindly resent, because Binance only
//! deduplicates client ids among OPEN orders (BINANCE.md §5, §7).

use core::fmt;

use engine::events::{OrderStatus, RejectKind};
use simd_json::prelude::ValueObjectAccess;

use super::json::{self, BodyError, Fields};

/// Which exchange filter refused an order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FilterKind {
    PriceFilter,
    PercentPrice,
    LotSize,
    MarketLotSize,
    MinNotional,
    Notional,
    MaxNumOrders,
    MaxPosition,
    /// Futures -4014: price not a multiple of the tick.
    TickSize,
    /// Futures -4023: quantity not a multiple of the step.
    StepSize,
    /// Futures -4003/-4004: quantity zero, negative or below minQty.
    MinQty,
    /// -1111: more decimals than the symbol allows.
    Precision,
    /// A -1013 whose filter name robsond does not know.
    Unrecognized,
}

impl FilterKind {
    fn from_name(name: &str) -> FilterKind {
        match name.trim().trim_end_matches('.') {
            "PRICE_FILTER" => FilterKind::PriceFilter,
            "PERCENT_PRICE" | "PERCENT_PRICE_BY_SIDE" => FilterKind::PercentPrice,
            "LOT_SIZE" => FilterKind::LotSize,
            "MARKET_LOT_SIZE" => FilterKind::MarketLotSize,
            "MIN_NOTIONAL" => FilterKind::MinNotional,
            "NOTIONAL" => FilterKind::Notional,
            "MAX_NUM_ORDERS"
            | "MAX_NUM_ALGO_ORDERS"
            | "EXCHANGE_MAX_NUM_ORDERS"
            | "EXCHANGE_MAX_NUM_ALGO_ORDERS" => FilterKind::MaxNumOrders,
            "MAX_POSITION" => FilterKind::MaxPosition,
            _ => FilterKind::Unrecognized,
        }
    }
}

/// A Binance `{"code":…,"msg":…}` error, classified. Codes are universal, messages vary, so the
/// message is consulted only where one code means several things (-2010, -2011, -1013).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApiError {
    /// -1021 (`ahead`: the local clock runs fast), futures -5028 (matching-engine recvWindow).
    TimeSync {
        code: i32,
        ahead: bool,
    },
    /// -1022 bad signature, -2014 malformed key, -2015 invalid key, IP or permissions.
    BadCredentials {
        code: i32,
    },
    /// -2011 "Unknown order sent.", -2013 "Order does not exist.".
    UnknownOrder {
        code: i32,
    },
    /// -2011 "Order was not canceled due to cancel restrictions."
    CancelRestricted,
    /// -2010 "Duplicate order sent.", futures -4116: an OPEN order already has this client id.
    Duplicate {
        code: i32,
    },
    /// -2010 "Account has insufficient balance…", futures -2019 "Margin is insufficient.".
    InsufficientBalance {
        code: i32,
    },
    /// -1013 "Filter failure: …", -1111, futures -4003, -4004, -4014, -4023, -4164.
    Filter {
        code: i32,
        filter: FilterKind,
    },
    /// Futures -2022 "ReduceOnly Order is rejected.": there is nothing left to reduce.
    ReduceOnlyRejected,
    /// -1003 (request weight; with `banned_until_ms` when the IP is banned), -1015 (orders).
    TooManyRequests {
        code: i32,
        banned_until_ms: Option<u64>,
    },
    /// -1008: server overloaded; the request was refused, not executed.
    Overloaded,
    /// -1000, -1006, -1007: the exchange itself does not know whether it executed.
    UnknownOutcome {
        code: i32,
    },
    /// -1125: the listen key expired or never existed; a new one is needed.
    ListenKeyMissing,
    /// Futures -4120: conditional order types now live on the Algo API.
    UseAlgoApi,
    /// Futures -4061: `positionSide` does not match the account's one-way/hedge setting.
    PositionSideMismatch,
    Other {
        code: i32,
        msg: String,
    },
}

/// "…IP banned until 1659146400000. Please use…" → 1659146400000.
fn banned_until(msg: &str) -> Option<u64> {
    let rest = &msg[msg.find("banned until ")? + "banned until ".len()..];
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    rest[..digits].parse().ok()
}

impl ApiError {
    /// Classifies a code and its message.
    pub fn from_code(code: i32, msg: &str) -> ApiError {
        let lower = msg.to_ascii_lowercase();
        match code {
            -1021 => ApiError::TimeSync { code, ahead: lower.contains("ahead") },
            -5028 => ApiError::TimeSync { code, ahead: false },
            -1022 | -2014 | -2015 => ApiError::BadCredentials { code },
            -2013 => ApiError::UnknownOrder { code },
            -2011 if lower.contains("unknown order") => ApiError::UnknownOrder { code },
            -2011 if lower.contains("cancel restrictions") => ApiError::CancelRestricted,
            -2010 if lower.contains("duplicate order") => ApiError::Duplicate { code },
            -4116 => ApiError::Duplicate { code },
            -2010 if lower.contains("insufficient balance") => {
                ApiError::InsufficientBalance { code }
            }
            -2019 => ApiError::InsufficientBalance { code },
            -1013 => {
                let filter = msg
                    .strip_prefix("Filter failure:")
                    .map_or(FilterKind::Unrecognized, FilterKind::from_name);
                ApiError::Filter { code, filter }
            }
            -1111 => ApiError::Filter { code, filter: FilterKind::Precision },
            -4003 | -4004 => ApiError::Filter { code, filter: FilterKind::MinQty },
            -4014 => ApiError::Filter { code, filter: FilterKind::TickSize },
            -4023 => ApiError::Filter { code, filter: FilterKind::StepSize },
            -4164 => ApiError::Filter { code, filter: FilterKind::MinNotional },
            -2022 => ApiError::ReduceOnlyRejected,
            -1003 | -1015 => ApiError::TooManyRequests { code, banned_until_ms: banned_until(msg) },
            -1008 => ApiError::Overloaded,
            -1000 | -1006 | -1007 => ApiError::UnknownOutcome { code },
            -1125 => ApiError::ListenKeyMissing,
            -4120 => ApiError::UseAlgoApi,
            -4061 => ApiError::PositionSideMismatch,
            _ => ApiError::Other { code, msg: msg.to_owned() },
        }
    }

    /// Parses an error body: REST `{"code","msg"}`, or a WebSocket API response whose `error`
    /// object carries them (and, for a ban, `error.data.retryAfter` in epoch ms).
    ///
    /// Takes the body by shared reference and parses a copy: error paths are cold, and the
    /// caller keeps the original bytes to log.
    pub fn parse(body: &[u8]) -> Result<ApiError, BodyError> {
        let mut copy = body.to_vec();
        let root = json::parse(&mut copy)?;
        let top = Fields::of(&root, "error body")?;
        let fields = match top.get("error") {
            Some(inner) => Fields::of(inner, "error")?,
            None => top,
        };
        let code = fields.i64("code")?;
        let code = i32::try_from(code).map_err(|_| BodyError::BadValue("code"))?;
        let msg = fields.opt_str("msg")?.unwrap_or("");
        let mut error = ApiError::from_code(code, msg);
        if let ApiError::TooManyRequests { banned_until_ms, .. } = &mut error {
            let data = fields.get("data").and_then(|d| d.get("retryAfter"));
            if let Some(retry_after) = data.and_then(|v| json::u64_of(v, "retryAfter").ok()) {
                *banned_until_ms = Some(retry_after);
            }
        }
        Ok(error)
    }

    pub fn code(&self) -> i32 {
        match self {
            ApiError::TimeSync { code, .. }
            | ApiError::BadCredentials { code }
            | ApiError::UnknownOrder { code }
            | ApiError::Duplicate { code }
            | ApiError::InsufficientBalance { code }
            | ApiError::Filter { code, .. }
            | ApiError::TooManyRequests { code, .. }
            | ApiError::UnknownOutcome { code }
            | ApiError::Other { code, .. } => *code,
            ApiError::CancelRestricted => -2011,
            ApiError::ReduceOnlyRejected => -2022,
            ApiError::Overloaded => -1008,
            ApiError::ListenKeyMissing => -1125,
            ApiError::UseAlgoApi => -4120,
            ApiError::PositionSideMismatch => -4061,
        }
    }

    /// Whether an order that drew this error may nevertheless be live or filled.
    ///
    /// A duplicate counts: the rejected send proves an earlier send with the same client id is
    /// still open, and only a query says how far it got.
    pub fn outcome_unknown(&self) -> bool {
        matches!(self, ApiError::UnknownOutcome { .. } | ApiError::Duplicate { .. })
    }

    /// How a rejected order is classified for the engine; `None` when the outcome is unknown
    /// and the order must be queried instead.
    pub fn reject_kind(&self) -> Option<RejectKind> {
        match self {
            ApiError::UnknownOutcome { .. } | ApiError::Duplicate { .. } => None,
            ApiError::TimeSync { .. } | ApiError::TooManyRequests { .. } | ApiError::Overloaded => {
                Some(RejectKind::Transient)
            }
            ApiError::ReduceOnlyRejected => Some(RejectKind::NothingToClose),
            // Insufficient balance is Permanent even for a margin close, where it may mean the
            // base asset is already sold: the error alone cannot tell, and the engine's
            // position snapshot, not a guess here, is what settles it.
            ApiError::BadCredentials { .. }
            | ApiError::UnknownOrder { .. }
            | ApiError::CancelRestricted
            | ApiError::InsufficientBalance { .. }
            | ApiError::Filter { .. }
            | ApiError::ListenKeyMissing
            | ApiError::UseAlgoApi
            | ApiError::PositionSideMismatch
            | ApiError::Other { .. } => Some(RejectKind::Permanent),
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let code = self.code();
        match self {
            ApiError::TimeSync { ahead: true, .. } => {
                write!(f, "Binance {code}: timestamp ahead of server time")
            }
            ApiError::TimeSync { .. } => write!(f, "Binance {code}: timestamp outside recvWindow"),
            ApiError::BadCredentials { .. } => {
                write!(f, "Binance {code}: signature, API key, IP or permission refused")
            }
            ApiError::UnknownOrder { .. } => write!(f, "Binance {code}: unknown order"),
            ApiError::CancelRestricted => write!(f, "Binance {code}: cancel restrictions"),
            ApiError::Duplicate { .. } => write!(f, "Binance {code}: duplicate client order id"),
            ApiError::InsufficientBalance { .. } => {
                write!(f, "Binance {code}: insufficient balance or margin")
            }
            ApiError::Filter { filter, .. } => write!(f, "Binance {code}: filter {filter:?}"),
            ApiError::ReduceOnlyRejected => write!(f, "Binance {code}: reduce-only rejected"),
            ApiError::TooManyRequests { banned_until_ms: Some(until), .. } => {
                write!(f, "Binance {code}: IP banned until {until} ms")
            }
            ApiError::TooManyRequests { .. } => write!(f, "Binance {code}: rate limit"),
            ApiError::Overloaded => write!(f, "Binance {code}: overloaded, not executed"),
            ApiError::UnknownOutcome { .. } => {
                write!(f, "Binance {code}: execution status unknown")
            }
            ApiError::ListenKeyMissing => write!(f, "Binance {code}: listen key does not exist"),
            ApiError::UseAlgoApi => write!(f, "Binance {code}: use the Algo order API"),
            ApiError::PositionSideMismatch => {
                write!(f, "Binance {code}: position side does not match position mode")
            }
            ApiError::Other { msg, .. } => write!(f, "Binance {code}: {msg}"),
        }
    }
}

impl std::error::Error for ApiError {}

/// Why a REST call failed, judged from its HTTP status, headers and body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RestError {
    /// A 4xx (or a -1008 5xx) carrying a Binance error: the error decides.
    Api { status: u16, error: ApiError },
    /// 429: a rate limit broke; nothing executed. `retry_after_s` from `Retry-After`.
    RateLimited { retry_after_s: Option<u64>, error: Option<ApiError> },
    /// 418: the IP is banned for ignoring 429s (2 minutes up to 3 days).
    Banned { retry_after_s: Option<u64>, error: Option<ApiError> },
    /// 403: the web application firewall refused the request before Binance saw it.
    Firewall,
    /// 408 (futures backend timeout) or a 5xx: it may have executed.
    OutcomeUnknown { status: u16, error: Option<ApiError> },
    /// 503 "Service Unavailable.": futures documents this one as a certain failure.
    Unavailable,
    /// A status Binance does not document, with no Binance error in the body.
    Unexpected { status: u16 },
    /// A 2xx whose body could not be read: the request was accepted, its details are unknown.
    Body(BodyError),
}

impl From<BodyError> for RestError {
    fn from(e: BodyError) -> RestError {
        RestError::Body(e)
    }
}

/// `Retry-After` in whole seconds, the only form Binance sends; an HTTP date is ignored (the
/// caller then backs off by its own rule) rather than misread.
fn retry_after_secs<H, K, V>(headers: H) -> Option<u64>
where
    H: IntoIterator<Item = (K, V)>,
    K: AsRef<[u8]>,
    V: AsRef<[u8]>,
{
    headers.into_iter().find_map(|(name, value)| {
        if !name.as_ref().eq_ignore_ascii_case(b"retry-after") {
            return None;
        }
        let text = core::str::from_utf8(value.as_ref()).ok()?.trim();
        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        text.parse().ok()
    })
}

/// Judges a response. `Ok(())` for 2xx: the caller then parses the body with the endpoint's
/// parser. Anything else becomes a [`RestError`]. Never panics, whatever the body holds.
pub fn classify_response<H, K, V>(status: u16, headers: H, body: &[u8]) -> Result<(), RestError>
where
    H: IntoIterator<Item = (K, V)>,
    K: AsRef<[u8]>,
    V: AsRef<[u8]>,
{
    if (200..300).contains(&status) {
        return Ok(());
    }
    let error = ApiError::parse(body).ok();
    Err(match status {
        429 => RestError::RateLimited { retry_after_s: retry_after_secs(headers), error },
        418 => RestError::Banned { retry_after_s: retry_after_secs(headers), error },
        403 => RestError::Firewall,
        408 => RestError::OutcomeUnknown { status, error },
        500..=599 => match error {
            // Futures documents the -1008 throttle and "Service Unavailable." as certain
            // failures; every other 5xx may have executed.
            Some(ApiError::Overloaded) => RestError::Api { status, error: ApiError::Overloaded },
            _ if status == 503 && mentions_service_unavailable(body) => RestError::Unavailable,
            error => RestError::OutcomeUnknown { status, error },
        },
        400..=499 => match error {
            Some(error) => RestError::Api { status, error },
            None => RestError::Unexpected { status },
        },
        _ => RestError::Unexpected { status },
    })
}

/// Futures' "Service Unavailable." 503: Binance's own answer, as its JSON `msg` or as the
/// whole plain-text body. Only an exact match counts: a proxy's or CDN's error page that merely
/// contains the words says nothing about whether the order executed.
fn mentions_service_unavailable(body: &[u8]) -> bool {
    const MESSAGE: &str = "Service Unavailable.";
    let text = body.trim_ascii();
    if text == MESSAGE.as_bytes() {
        return true;
    }
    let mut copy = text.to_vec();
    simd_json::to_borrowed_value(&mut copy).ok().is_some_and(|value| {
        use simd_json::prelude::*;
        value.get("msg").and_then(|m| m.as_str()) == Some(MESSAGE)
    })
}

impl RestError {
    pub fn api(&self) -> Option<&ApiError> {
        match self {
            RestError::Api { error, .. } => Some(error),
            RestError::RateLimited { error, .. }
            | RestError::Banned { error, .. }
            | RestError::OutcomeUnknown { error, .. } => error.as_ref(),
            RestError::Firewall
            | RestError::Unavailable
            | RestError::Unexpected { .. }
            | RestError::Body(_) => None,
        }
    }

    /// Whether the request may have executed (see the module doc). An unreadable 2xx body
    /// counts: the order was accepted, but nothing says how far it got.
    pub fn outcome_unknown(&self) -> bool {
        match self {
            RestError::Api { error, .. } => error.outcome_unknown(),
            RestError::OutcomeUnknown { .. } | RestError::Body(_) => true,
            // A 4xx is the sender's fault and refused; an undocumented 1xx/3xx is not a
            // refusal Binance promised, so it is treated as possibly executed.
            RestError::Unexpected { status } => !(400..500).contains(status),
            RestError::RateLimited { .. }
            | RestError::Banned { .. }
            | RestError::Firewall
            | RestError::Unavailable => false,
        }
    }

    /// The engine's classification of a refused order; `None` when it must be queried.
    pub fn reject_kind(&self) -> Option<RejectKind> {
        if self.outcome_unknown() {
            return None;
        }
        match self {
            RestError::Api { error, .. } => error.reject_kind(),
            // robsond's parameters (fixed-alphabet ids, symbols, decimals) cannot trip the
            // WAF's content rules, so a 403 is taken as a passing block, not a bad order.
            RestError::RateLimited { .. }
            | RestError::Banned { .. }
            | RestError::Firewall
            | RestError::Unavailable
            | RestError::Unexpected { .. } => Some(RejectKind::Transient),
            RestError::OutcomeUnknown { .. } | RestError::Body(_) => None,
        }
    }

    /// What a failed new-order request means for the engine's `OrderUpdate`.
    pub fn place_status(&self) -> OrderStatus {
        match self.reject_kind() {
            Some(kind) => OrderStatus::Rejected(kind),
            None => OrderStatus::Unknown,
        }
    }

    /// What a failed query-by-client-id means: `NotFound` when Binance has no such order (it
    /// never reached the book), `None` when the query itself failed and must be repeated.
    pub fn query_status(&self) -> Option<OrderStatus> {
        match self.api() {
            Some(ApiError::UnknownOrder { .. }) => Some(OrderStatus::NotFound),
            _ => None,
        }
    }

    /// The earliest time (epoch ms) at which Binance allows another request, when it said so.
    pub fn not_before_ms(&self, now_ms: u64) -> Option<u64> {
        let from_header = match self {
            RestError::RateLimited { retry_after_s: Some(s), .. }
            | RestError::Banned { retry_after_s: Some(s), .. } => {
                Some(now_ms.saturating_add(s.saturating_mul(1000)))
            }
            _ => None,
        };
        let from_body = match self.api() {
            Some(ApiError::TooManyRequests { banned_until_ms, .. }) => *banned_until_ms,
            _ => None,
        };
        from_header.max(from_body)
    }
}

impl fmt::Display for RestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RestError::Api { status, error } => write!(f, "HTTP {status}: {error}"),
            RestError::RateLimited { retry_after_s, .. } => {
                write!(f, "HTTP 429 rate limited (retry after {retry_after_s:?} s)")
            }
            RestError::Banned { retry_after_s, .. } => {
                write!(f, "HTTP 418 IP banned (retry after {retry_after_s:?} s)")
            }
            RestError::Firewall => f.write_str("HTTP 403 refused by the WAF"),
            RestError::OutcomeUnknown { status, error: Some(error) } => {
                write!(f, "HTTP {status}, execution status unknown: {error}")
            }
            RestError::OutcomeUnknown { status, error: None } => {
                write!(f, "HTTP {status}, execution status unknown")
            }
            RestError::Unavailable => f.write_str("HTTP 503 Service Unavailable, not executed"),
            RestError::Unexpected { status } => write!(f, "unexpected HTTP {status}"),
            RestError::Body(e) => write!(f, "unreadable 2xx body: {e}"),
        }
    }
}

impl std::error::Error for RestError {}
