//! Everything that speaks Binance (issue 3, being built).
//!
//! This crate owns the wire protocol for both venues: the simd-json parsers that turn frames into
//! the engine's fixed-point events (`wire`), the signed REST side the I/O thread uses (`rest`),
//! and, to come, the non-blocking WebSocket client (mio + tungstenite + rustls) and the loopback
//! simulator that tests and `robsond demo` run against. It must never hold trading state or decide
//! anything: decisions belong to `engine`, durability to `persist`.

pub mod rest;
pub mod session;
pub mod wire;
pub mod ws;
