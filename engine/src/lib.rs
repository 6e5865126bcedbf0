//! The pure core of robsond: all trading state and every rule of DESIGN.md sections 2 to 6.
//!
//! It owns positions, ownership of keys between Core and the Safety Net, stops, entry signals,
//! sizing, the kill switch and staleness. It never touches a socket, a thread, a clock, a file or
//! a database: time arrives as an argument, and every decision leaves as a value through a sink,
//! so that tests and `robsond replay` see exactly what production decides. Money is decimal
//! fixed-point (`money`), never a float.

pub mod filters;
pub mod money;
pub mod types;
