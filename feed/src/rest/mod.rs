//! The REST side: request signing, Binance error codes, and REST response bodies.
