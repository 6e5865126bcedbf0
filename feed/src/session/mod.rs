//! The slow, periodic side of talking to Binance: the user-data stream credentials' lifecycle
//! (futures listen key, margin listen tokens on the WebSocket API), the REST reconciliation
//! poll, and the REST price fallback while a market stream is stale.
//!
//! Everything here is a pure schedule: it is told the time (epoch milliseconds, corrected to
//! the server's clock by the caller) and the outcome of each call, and answers with what to do
//! next. The I/O thread makes the REST calls and the hot thread sends the WebSocket frames;
//! neither logic nor tests need a socket or a sleeping clock. It never decides anything about a
//! position: snapshots and prices go to the engine as events.

mod listen_key;
mod listen_token;
mod schedule;

pub use listen_key::{ListenKeyCall, ListenKeyConfig, ListenKeyLifecycle};
pub use listen_token::{ListenTokenConfig, MarginUserSession, SessionNews};
pub use schedule::{PriceFallback, ReconcileCall, Reconciler};

/// Capped exponential backoff for REST retries. No jitter: these calls are few, per account,
/// and a deterministic schedule keeps the tests exact; the WebSocket reconnects, where many
/// clients retry at once after an outage, are the ones that jitter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    pub first_ms: u64,
    pub max_ms: u64,
}

impl Backoff {
    pub const fn new(first_ms: u64, max_ms: u64) -> Self {
        Backoff { first_ms, max_ms }
    }

    /// The wait after `failures` consecutive failures (1 → `first_ms`, doubling up to `max_ms`).
    pub fn delay_ms(&self, failures: u32) -> u64 {
        let doublings = failures.saturating_sub(1).min(32);
        self.first_ms.saturating_mul(1u64 << doublings).min(self.max_ms)
    }
}
