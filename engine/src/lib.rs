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
//! - [`config`]: the resolved, validated configuration the engine runs with.
//! - [`coarse_clock`]: the cheap monotonic clock rate limits are decided on.
//! - [`file_root`]: a file route's root, and opening files strictly beneath it.
//! - [`upload`]: the upload route: temporary files renamed when complete, per-client caps.
//! - [`files`]: the files route: answers to ranges and validators, bandwidth caps, streaming.
//! - [`server`]: start-up (bind, pick the driver, start the workers) and the signal loop.
//! - [`broadcast`]: pub/sub topics, their per-core members and the cross-core fan-out.
//! - [`sink_file`]: the file a `sink` route appends its messages to as JSON lines, on one
//!   writer thread, with size-based rotation.
//! - [`subscriber_queue`]: one subscriber's bounded queue of shared frames and its
//!   slow-consumer policy (drop, keep latest, close), for broadcast.
//! - [`handler`]: the WebSocket handler API (routes served by application code), and
//!   [`task`], the timers and local tasks handlers use.
//! - `worker`: one pinned thread: its runtime, its accept loop, its drain.
//! - `listener`: binding one `SO_REUSEPORT` socket per worker on a shared port.
//! - `driver`: choosing io_uring or poll, and the io_uring set-up flags.
//! - `runtime`, `transport`: the only places compio is named (spawn, timers, accept, streams).
//! - `http`: the HTTP/1.1 connection state machine, built-in routes and refusals.
//! - `ws`: WebSocket routes: the upgrade decision and the connection after the 101 (echo, or
//!   the pump of a handler route).
//! - `router`: matching a path to a route; `route_state`: what routes share across workers
//!   (sink files, files roots, route-wide bandwidth).
//! - `context`: what the connections of one worker share.
//! - `registry`: each worker's open connections, their deadlines (one sweeper per worker
//!   instead of a timer per operation) and their idle state for the drain.
//! - `drain`: the cross-thread drain signal.
//! - `conn_count`: the server-wide connection counter (`max_connections`).
//! - `gate`: per-client admission and rules (lists, bans, connection and request rates,
//!   WebSocket rates across a client's connections), shared by every worker.
//! - `loopback_watch`: the warning when most clients come from an exempt loopback address
//!   and no proxy is trusted (a reverse proxy the limits cannot see through).
//! - `metrics`: per-worker counters and violation counts, read by `/stats` and `/metrics`.
//! - `clock`: the cached `Date` header.
//! - `signals`, `rlimit`, `cpus`: SIGTERM/SIGINT, the open-file limit, the usable cores.

pub mod broadcast;
pub mod coarse_clock;
pub mod config;
pub mod file_root;
pub mod files;
pub mod handler;
pub mod server;
pub mod sink_file;
pub mod subscriber_queue;
pub mod task;
pub mod upload;

mod clock;
mod conn_count;
mod context;
mod cpus;
mod drain;
mod driver;
mod error;
mod gate;
mod http;
mod listener;
mod loopback_watch;
mod metrics;
mod registry;
mod rlimit;
mod route_state;
mod router;
mod runtime;
mod signals;
mod transport;
mod worker;
mod ws;

/// The policy crate, for the types [`config::ClientLimits`] is built from.
pub use ringstream_limits as limits;

pub use driver::ChosenDriver;
pub use error::EngineError;
pub use server::{Server, run};
