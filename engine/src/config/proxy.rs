//! A `proxy` route's settings: where the upstreams are, how one is chosen, and how long each
//! step of a proxied exchange may take.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Where an upstream listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamAddr {
    /// A TCP address (`127.0.0.1:8000`).
    Tcp(SocketAddr),
    /// A Unix socket path (`unix:/run/app.sock`).
    Unix(PathBuf),
}

impl fmt::Display for UpstreamAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tcp(addr) => write!(f, "{addr}"),
            Self::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// How a request's upstream is chosen among those not marked down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Balance {
    /// The one with the fewest exchanges in progress on this worker (ties: in turn).
    #[default]
    LeastConn,
    /// Each in turn.
    RoundRobin,
}

/// A `proxy` route: requests below its path are forwarded to an upstream after every
/// protection of the route has passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyConfig {
    /// The upstreams, balanced.
    pub upstreams: Vec<UpstreamAddr>,
    /// How long a connection to an upstream may take to open (504 past it).
    pub connect_timeout: Duration,
    /// How long the upstream may take to start its response once the request is sent, and
    /// between two reads of its response (504 before the response head, a close after).
    pub upstream_timeout: Duration,
    /// How an upstream is chosen.
    pub balance: Balance,
    /// Failures (refused or failed connections, invalid heads, timeouts) within
    /// `fail_timeout` that mark an upstream down for `fail_timeout`; 0 never marks it.
    pub max_fails: u32,
    /// The window failures are counted in, and how long an upstream stays down.
    pub fail_timeout: Duration,
    /// How long an idle pooled connection is kept (below the upstream's own keep-alive:
    /// uvicorn closes idle connections after 5 s).
    pub pool_idle_timeout: Duration,
    /// Idle connections kept per upstream and worker.
    pub pool_size: usize,
    /// Removed from the start of the path before it is sent upstream (`/api` turns
    /// `/api/users` into `/users`).
    pub strip_prefix: String,
    /// The `Host` sent upstream; `None` sends the client's.
    pub host: Option<String>,
    /// A path each worker asks every upstream for, every `health_interval`: an upstream that
    /// does not answer 2xx or 3xx is left out until it does again. `None`: passive health only.
    pub health_check: Option<String>,
    /// How often the health check runs.
    pub health_interval: Duration,
}

impl ProxyConfig {
    /// A proxy to `upstreams` with every default.
    pub fn new(upstreams: Vec<UpstreamAddr>) -> Self {
        Self {
            upstreams,
            connect_timeout: Duration::from_secs(5),
            upstream_timeout: Duration::from_secs(60),
            balance: Balance::LeastConn,
            max_fails: 1,
            fail_timeout: Duration::from_secs(10),
            pool_idle_timeout: Duration::from_secs(4),
            pool_size: 64,
            strip_prefix: String::new(),
            host: None,
            health_check: None,
            health_interval: Duration::from_secs(5),
        }
    }
}
