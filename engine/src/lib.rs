//! The ringstream engine: a thread-per-core HTTP/1.1 server on io_uring (or the poll driver),
//! with the protections of PROTECTIONS.md enforced before any request reaches a route.
//!
//! Each worker is a thread pinned to one core, running its own completion driver and its own
//! `SO_REUSEPORT` listener; workers share only the server-wide connection count and the drain
//! signal. Protocol parsing lives in `ringstream-protocol` (sans-IO); this crate owns sockets,
//! timers, threads and every `unsafe` block that touches the kernel.
//!
//! # Layout
//!
//! | folder | owns | may use |
//! |---|---|---|
//! | [`server`] | the core: start-up and signals, pinned workers and their listeners, the driver, the runtime and the byte-stream `Transport` (the only places compio is named), each worker's connection registry (deadlines, drain), clocks, the worker context, counters | `config`, protocol, limits |
//! | `conn` | the connection state machines: HTTP/1.1 (heads, bodies, refusals, answers, the upgrade) and WebSocket after the 101 (frames, heartbeats, the idle timeout, the close handshake) | `server`, `protections`, `routes` |
//! | `protections` | per-client admission and rules shared by every worker (`gate`), the loopback warning, a WebSocket connection's frame quotas | `server`, `config`, limits |
//! | `routes` | one folder per route kind: `plain`, `observe`, `echo`, `broadcast`, `sink`, `files`, `upload`, `handler`; `ask` (what a request asks of its route) and `role` (what a WebSocket connection does), the two enums the state machines dispatch on; the router and what routes share across workers | `server`, `protections`, `config` |
//! | [`config`] | the resolved, validated configuration the engine runs with | limits |
//!
//! The public API is [`config`], [`run`] / [`Server`], the WebSocket [`handler`] API with its
//! [`task`]s, and the few route types the command line needs.

mod cluster;
pub mod config;
mod routes;
pub mod server;

mod conn;
mod error;
mod protections;

pub use routes::broadcast;
pub use routes::broadcast::member_queue as subscriber_queue;
pub use routes::handler;
pub use routes::handler::task;
pub use routes::sink::file as sink_file;
pub use server::coarse_clock;

/// The policy crate, for the types [`config::ClientLimits`] is built from.
pub use ringstream_limits as limits;

pub use error::EngineError;
pub use server::driver::ChosenDriver;
pub use server::reload::ReloadSource;
pub use server::{Server, run, run_reloadable};
