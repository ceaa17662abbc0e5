//! Sans-IO abuse-protection policy for ringstream: limiter algorithms, bounded keyed tables,
//! client identity, bans and the cross-core client table.
//!
//! The crate reads no clock and touches no socket: callers pass `now` in and act on the
//! decisions it returns, so every policy is unit-testable and benchmarkable alone. The
//! per-client limits of PROTECTIONS.md ("Connections" and the per-client WebSocket rows) are
//! built here; the server-wide `max_connections` count lives in the engine.
//!
//! # Layout
//!
//! - [`gcra`]: the generic cell rate algorithm, a rate with a burst in one integer of state.
//! - [`clock`]: the `Clock` the policies are given time by, and a fake one for tests.
//! - [`cidr`]: address ranges for allow and deny lists, trusted proxies and exemptions.
//! - [`identity`]: who a client is (address, `Forwarded` from trusted proxies, IPv6 /64
//!   grouping, or a header or query value) as a fixed-size key.
//! - [`table`]: a keyed table bounded in count, least recently seen forgotten.
//! - [`bans`]: violations within a window turning into a ban.
//! - [`client_table`]: the table of clients every worker shares: per-client connection counts,
//!   connection rates, bans and rate buckets, exact across cores.
#![forbid(unsafe_code)]

pub mod bans;
pub mod cidr;
pub mod client_table;
pub mod clock;
pub mod gcra;
pub mod identity;
pub mod table;
