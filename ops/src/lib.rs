//! The `robsond` daemon (issue 5, being built).
//!
//! It wires `engine`, `feed` and `persist` into the threads of DESIGN.md section 7 (pinned hot
//! loop, I/O thread, cold thread, tiny_http) and owns everything an operator touches:
//! configuration, CLI, probes, metrics, the control API and `robsond demo`. It must not hold
//! trading rules: those live in `engine`, so that replay and tests see exactly what production
//! decides.

pub mod affinity;
pub mod api;
pub mod client;
pub mod config;
pub mod daemon;
pub mod decode;
pub mod demo;
pub mod health;
pub mod json;
pub mod metrics;
