//! The cold thread's side of robsond (issue 4, being built).
//!
//! This crate owns durability: the versioned encoding of engine events (`codec`), the crash-safe
//! local journal (`journal`: segments, CRC, batched fsync, file lock), and, to come, the
//! asynchronous Postgres writer with its migrations and the single-instance lease, and the
//! recovery that rebuilds engine state at start-up. It must never sit on the hot path: the hot
//! thread hands it events over a ring and never waits.

pub mod codec;
pub mod cold;
pub mod journal;
pub mod pg;
pub mod recover;
