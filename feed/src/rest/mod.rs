//! The REST side: request signing, Binance error codes, and REST response bodies.
//!
//! The pieces are pure (bytes and times in, values out) except two: `client`, the ureq/rustls
//! HTTP client that signs, paces and sends, and `executor`, which turns the engine's order
//! intents into requests on the I/O thread. REST is the cold path (start-up snapshots, order
//! placement, queries after an unknown outcome), so bodies go through simd-json's DOM rather
//! than the hand-rolled frame parsers of `wire`; money still never touches a float.

pub mod account;
pub mod client;
pub mod error;
pub mod executor;
pub mod general;
mod json;
pub mod limits;
pub mod market;
pub mod order;
pub mod sign;
pub mod trades;
pub mod user_stream;

pub use account::{
    IsolatedMarginAccount, IsolatedMarginPair, PositionRisk, PositionRisks, PositionSnapshot,
    parse_isolated_margin_account, parse_position_risk,
};
pub use client::{
    Api, CallError, ClientError, Clock, Credentials, HttpClient, HttpConfig, HttpResponse,
    ManualClock, MarketOrder, Method, OrderFlags, Request, RestClient, RestConfig, Security,
    SideEffect, SystemClock, TransportError, TransportKind, clock_offset_ms,
};
pub use error::{ApiError, FilterKind, RestError, classify_response};
pub use executor::{
    EventSink, ExecutorConfig, Note, OrderBuildError, OrderExecutor, PollOutcome, PositionMode,
    market_order,
};
pub use general::{
    ExchangeInfo, SkippedSymbol, SymbolInfo, parse_exchange_info, parse_filters, parse_ping,
    parse_server_time, rules_from_filters,
};
pub use json::BodyError;
pub use limits::{Cost, Limit, LimitKind, Priority, RateLimiter, Verdict};
pub use market::{
    BookTicker, LastPrice, MarkPrice, parse_book_ticker, parse_last_price, parse_mark_price,
};
pub use order::{OrderReport, PositionSide, parse_order, parse_orders};
pub use sign::{
    ApiKey, Base64Signature, Ed25519Signer, HexSignature, HmacSigner, KeyError, Query, Secret,
    SignedQuery, SignedWsParams, Signer, WsParams, percent_encode_into, sign_hmac_sha256,
};
pub use user_stream::{ListenKey, ListenToken, parse_listen_key, parse_listen_token};
