//! Sans-IO abuse-protection policy for ringstream: limiter algorithms, per-core keyed tables,
//! client identity, bans and the cross-core connection table.
//!
//! The crate reads no clock and touches no socket: callers pass `now` in and act on the
//! decisions it returns, so every policy is unit-testable and benchmarkable alone. The
//! per-client limits of PROTECTIONS.md ("Connections" and the per-client WebSocket rows) are
//! built here; the server-wide `max_connections` count lives in the engine.
//!
//! # Layout
//!
//! - [`gcra`]: the generic cell rate algorithm, a rate with a burst in one integer of state.
#![forbid(unsafe_code)]

pub mod gcra;
