//! The REST side: request signing, Binance error codes, and REST response bodies.
//!
//! Everything here is pure: bytes and times in, values out. The HTTP client that moves the
//! bytes comes later and owns no protocol knowledge. REST is the cold path (start-up snapshots,
//! order placement, queries after an unknown outcome), so bodies go through simd-json's DOM
//! rather than the hand-rolled frame parsers of `wire`; money still never touches a float.

pub mod account;
pub mod error;
pub mod general;
mod json;
pub mod limits;
pub mod order;
pub mod sign;
pub mod trades;
pub mod user_stream;

pub use account::{
    IsolatedMarginAccount, IsolatedMarginPair, PositionRisk, PositionRisks, PositionSnapshot,
    parse_isolated_margin_account, parse_position_risk,
};
pub use error::{ApiError, FilterKind, RestError, classify_response};
pub use general::{
    ExchangeInfo, SkippedSymbol, SymbolInfo, parse_exchange_info, parse_filters, parse_ping,
    parse_server_time, rules_from_filters,
};
pub use json::BodyError;
pub use limits::{Cost, Limit, LimitKind, Priority, RateLimiter, Verdict};
pub use order::{OrderReport, PositionSide, parse_order, parse_orders};
pub use sign::{
    ApiKey, HexSignature, HmacSigner, Query, Secret, SignedQuery, SignedWsParams, Signer, WsParams,
    percent_encode_into, sign_hmac_sha256,
};
pub use user_stream::{ListenKey, ListenToken, parse_listen_key, parse_listen_token};
