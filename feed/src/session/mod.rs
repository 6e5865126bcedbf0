//! User-data stream lifecycle and REST reconciliation (being built).
