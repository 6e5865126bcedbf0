//! A loopback Binance for tests and `robsond demo` (issue 3, being built).
