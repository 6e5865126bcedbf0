//! The cold thread's side of robsond (issue 4; not built yet).
//!
//! This crate will own durability: the versioned encoding of engine events, the crash-safe local
//! journal (segments, CRC, batched fsync, file lock), the asynchronous Postgres writer with its
//! migrations and the single-instance lease, and the recovery that rebuilds engine state at start-up.
//! It must never sit on the hot path: the hot thread hands it events over a ring and never waits.
