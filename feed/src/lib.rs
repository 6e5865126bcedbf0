//! Everything that speaks Binance (issue 3; not built yet).
//!
//! This crate will own the wire protocol for both venues: the non-blocking WebSocket client
//! (mio + tungstenite + rustls) for market and user-data streams, the simd-json parsers that turn
//! frames into the engine's fixed-point events, the signed REST client the I/O thread uses, and the
//! loopback simulator that tests and `robsond demo` run against. It must never hold trading state or
//! decide anything: decisions belong to `engine`, durability to `persist`.
