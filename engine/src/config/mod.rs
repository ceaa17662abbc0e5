//! The resolved server configuration the engine runs with: typed, validated, defaults applied.
//!
//! Parsing (TOML, command-line overrides, error messages with line numbers) belongs to the
//! `ringstream` binary; the engine only ever sees these checked values. This module holds the
//! server-wide settings (listening, workers, the driver, the connection cap); the protections
//! a route or a client is held to are in `limits`, the routes and their kinds in `routes`, and
//! every type is named from here (`config::HttpLimits`, `config::RouteKind`).

mod access_log;
mod auth;
mod cluster;
mod limits;
mod proxy;
mod routes;
mod tls;

use std::net::SocketAddr;
use std::time::Duration;

pub use access_log::{AccessLogConfig, AccessLogFormat, AccessLogTarget};
pub use auth::{AuthConfig, AuthFailure};
pub use cluster::{
    ClusterConfig, MAX_NODE_ID, MAX_REDIS_SERVERS, RedisErrorPolicy, default_node_id, valid_node_id,
};
pub use limits::{
    Bandwidth, ClientLimits, DEFLATE_LEVEL, DenyAction, HttpLimits, LimitMode, OnLimit,
    RequestRate, WsLimits, bounds, loopback,
};
pub use proxy::{Balance, ProxyConfig, UpstreamAddr};
pub use routes::{FilesConfig, Route, RouteKind, SendPath, TopicSource, UploadConfig};
pub use tls::{CertError, CertPair, TlsConfig, TlsVersion};

/// `backlog` when the configuration does not say.
pub const DEFAULT_BACKLOG: u32 = 4096;
/// `drain_timeout` when the configuration does not say.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Everything one `ringstream serve` process needs to run.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    /// Address every worker binds with `SO_REUSEPORT`; port 0 picks one port shared by all workers.
    pub listen: SocketAddr,
    /// Worker threads, one per core; 0 means one per online CPU.
    pub workers: usize,
    /// `listen(2)` backlog of each worker's socket.
    pub backlog: u32,
    /// Which completion driver the workers run on.
    pub io_driver: IoDriver,
    /// io_uring set-up flags (ignored on the poll driver).
    pub io_uring_setup: RingSetup,
    /// How WebSocket sessions receive: a receive per read, one multishot receive into the
    /// worker's buffer ring, or the ring once a session's bursts were small (HTTP connections
    /// always receive per read; a proxied tunnel arms the ring on both sides at its start
    /// unless this is `per_read`).
    pub receive: ReceiveMode,
    /// How long a graceful drain waits for in-flight requests before closing them.
    pub drain_timeout: Duration,
    /// Start even if another process already serves the port through `SO_REUSEPORT`.
    pub allow_shared_port: bool,
    /// Server-wide connection limits.
    pub connection_limits: ConnectionLimits,
    /// Who clients are and the per-client rules (server-wide).
    pub clients: ClientLimits,
    /// The global `[limits]` table (defaults applied): every route starts from it, and it
    /// governs a connection until a request head has named its route (`header_timeout`,
    /// `keepalive_timeout` are therefore server-wide).
    pub limits: HttpLimits,
    /// Routes in configuration order; the longest matching prefix wins.
    pub routes: Vec<Route>,
    /// One line per HTTP request, when set.
    pub access_log: Option<AccessLogConfig>,
    /// Topics and per-client limits shared with other nodes through Redis, when set.
    pub cluster: Option<ClusterConfig>,
    /// https and wss on `listen` (every connection is TLS), when set.
    pub tls: Option<TlsConfig>,
}

impl ServerConfig {
    /// A server on `listen` with every default and no routes yet: how a program that
    /// registers its own WebSocket handlers starts (`examples/ws_chat.rs`).
    pub fn new(listen: SocketAddr) -> Self {
        Self {
            listen,
            workers: 0,
            backlog: DEFAULT_BACKLOG,
            io_driver: IoDriver::Auto,
            io_uring_setup: RingSetup::default(),
            receive: ReceiveMode::default(),
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
            allow_shared_port: false,
            connection_limits: ConnectionLimits::default(),
            clients: ClientLimits::default(),
            limits: HttpLimits::default(),
            routes: Vec::new(),
            access_log: None,
            cluster: None,
            tls: None,
        }
    }

    /// Adds a route with the server's global limits (adjust `route.limits` / `route.ws` for
    /// per-route values).
    pub fn route(mut self, path: impl Into<String>, kind: RouteKind) -> Self {
        self.routes.push(Route {
            path: path.into(),
            kind,
            limits: self.limits.clone(),
            ws: WsLimits::default(),
            auth: None,
        });
        self
    }
}

/// The I/O driver each worker runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoDriver {
    /// io_uring where it can be set up, otherwise the poll driver with one log line.
    Auto,
    /// io_uring or fail to start.
    Uring,
    /// The readiness (epoll) driver.
    Poll,
}

/// How a WebSocket session receives (`receive` in the config; BENCHMARKS.md, "Receiving").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReceiveMode {
    /// A receive per read until the session's first bursts (the bytes it sent between two
    /// moments its buffer held nothing) were all small, then the ring: the ring where it is
    /// cheaper (small messages) and never where it costs more (large ones, connections that
    /// stay idle); io_uring only, a receive per read on the poll driver.
    #[default]
    Auto,
    /// One receive submitted per read, into the connection's own buffer.
    PerRead,
    /// One multishot receive per WebSocket session into the worker's provided-buffer ring,
    /// armed after the 101 and copied into the connection's buffer when read
    /// (`server::ring_receive`); io_uring only, a receive per read on the poll driver.
    Ring,
}

impl std::fmt::Display for ReceiveMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Auto => "auto",
            Self::PerRead => "per_read",
            Self::Ring => "ring",
        })
    }
}

/// io_uring ring set-up flags; they change the CPU cost of every operation (BENCHMARKS.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RingSetup {
    /// No task-run flags: the kernel interrupts the worker to run completions.
    Default,
    /// `IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG`: completions run when the worker
    /// next enters the kernel, no inter-processor interrupts.
    #[default]
    CoopTaskrun,
    /// `IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN`: completions run only when the
    /// worker waits for them.
    DeferTaskrun,
}

impl std::fmt::Display for RingSetup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Default => "default",
            Self::CoopTaskrun => "coop_taskrun",
            Self::DeferTaskrun => "defer_taskrun",
        })
    }
}

/// Limits that apply to the whole server rather than to one route.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectionLimits {
    /// Open connections across all workers; past it new connections get 503 + `Retry-After`.
    pub max_connections: usize,
    /// Bytes that connections may hold beyond their idle buffers, across all workers, for
    /// partial messages and request bodies; past it connections stop reading
    /// ([`crate::server::buffer_budget`]).
    pub max_buffered_bytes: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            max_connections: 100_000,
            max_buffered_bytes: crate::server::buffer_budget::DEFAULT_MAX_BUFFERED_BYTES,
        }
    }
}

impl ServerConfig {
    /// The most one connection may need to buffer at once: the largest WebSocket message (and
    /// publish body) of any route with its frame header, or the largest request head.
    /// `max_buffered_bytes` must be at least this, or that connection could never go on.
    pub fn largest_buffered_allowance(&self) -> usize {
        let largest = |limits: &HttpLimits, ws: &WsLimits| {
            let message = usize::try_from(ws.max_message_size).unwrap_or(usize::MAX);
            message
                .saturating_add(ringstream_protocol::ws::frame::MAX_HEADER_LEN)
                .max(limits.max_header_bytes)
        };
        self.routes
            .iter()
            .map(|r| largest(&r.limits, &r.ws))
            .fold(self.limits.max_header_bytes, usize::max)
    }
}
