//! The server core: what runs connections, whatever their route. Start-up and the signal
//! loop, configuration generations and their reload on SIGHUP, one pinned worker thread per core with its own driver and `SO_REUSEPORT` listener,
//! the byte-stream interface the connection state machines speak to (the only place compio is
//! named, with `runtime`, `driver`, `ring_receive`, `socket_ops`, `file_io` and `sendfile`), each worker's connection registry (deadlines and the
//! drain), the clocks, the worker context, the spare read buffers of the receive ring, the
//! counters, the transfers in progress and the page-cache probe of downloads.
//!
//! May use: `config`, the policy and protocol crates. Knows no route kind.

pub mod access_log;
pub mod buffer_budget;
pub mod coarse_clock;
pub mod conn_count;
pub mod context;
pub mod cpus;
pub mod date_cache;
pub mod drain;
pub mod driver;
pub mod file_io;
pub mod generation;
pub mod listener;
pub mod metrics;
pub mod page_cache;
pub mod registry;
pub mod reload;
pub mod ring_receive;
pub mod rlimit;
pub mod route_traffic;
pub mod runtime;
pub mod sendfile;
pub mod signals;
pub(crate) mod socket_ops;
pub mod spare_buffers;
pub mod start;
pub mod tls;
pub mod transfers;
pub mod transport;
pub mod upstream;
pub mod worker;

pub use start::{Server, run, run_reloadable};
