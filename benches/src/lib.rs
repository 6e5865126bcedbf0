//! Criterion benchmarks for robsond's hot path live in `benches/benches/`; this library only holds
//! shared fixtures for them. Nothing here ships in the daemon.
