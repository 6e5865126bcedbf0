//! The pure core of robsond: all trading state and every rule of DESIGN.md sections 2 to 6.
//!
//! It owns positions, ownership of keys between Core and the Safety Net, stops, entry signals,
//! sizing, the kill switch and staleness. It never touches a socket, a thread, a clock, a file or
//! a database: time arrives as an argument, and every decision leaves as a value through a sink,
//! so that tests and `robsond replay` see exactly what production decides. Money is decimal
//! fixed-point (`money`), never a float.

mod engine;
pub mod events;
pub mod filters;
pub mod money;
pub mod signal;
pub mod trailing;
pub mod types;

pub use crate::engine::{
    Config, CoreState, Engine, JournalFold, PositionView, RestoreError, SafetyState, State,
};
pub use crate::events::{Event, Intent, Journal, Nanos, Record, Reply, Sink, VecSink};
pub use crate::filters::SymbolRules;
pub use crate::money::{Amount, Price, Qty, Ratio};
pub use crate::types::{
    AccountId, ClientOrderId, MarketKey, Modality, PositionId, PositionKey, Side, Symbol, Venue,
};
