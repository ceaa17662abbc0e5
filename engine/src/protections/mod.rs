//! The protections that need state beyond one parse: per-client admission and rules shared by
//! every worker (`gate`: lists, bans, connection and request rates, frame rates across a
//! client's connections), the warning when most clients come from an exempt loopback address
//! (`loopback_watch`), and one WebSocket connection's own frame quotas (`frame_quotas`). The
//! limits that are a matter of parsing (head sizes, smuggling, frame sizes, UTF-8) are
//! decided in the protocol crate; the timeouts by the connection state machines.
//!
//! May use: `server`, `config`, the policy crate.

pub mod frame_quotas;
pub mod gate;
pub mod loopback_watch;
