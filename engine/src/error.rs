//! Why the engine could not start or keep running.

use std::io;
use std::net::SocketAddr;

/// Errors that stop the server (per-connection failures never reach this type: they end that
/// connection only).
#[derive(Debug)]
pub enum EngineError {
    /// The listening address could not be bound; nothing was started.
    Bind {
        /// The address that failed.
        addr: SocketAddr,
        /// What the kernel said.
        source: io::Error,
    },
    /// Another socket already listens on the address; nothing was started. Set
    /// `allow_shared_port` to share it deliberately.
    PortInUse {
        /// The contested address.
        addr: SocketAddr,
    },
    /// `io_driver = "uring"` was asked for and io_uring could not be set up.
    UringUnavailable(io::Error),
    /// A worker's runtime could not be built, or the worker died.
    Worker {
        /// Index of the worker.
        index: usize,
        /// What went wrong.
        reason: String,
    },
    /// Any other I/O failure during start-up.
    Io(io::Error),
}

impl std::fmt::Display for EngineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Bind { addr, source } => write!(f, "cannot listen on {addr}: {source}"),
            Self::PortInUse { addr } => write!(
                f,
                "{addr} is already in use by another process (set allow_shared_port = true or \
                 pass --allow-shared-port to share it through SO_REUSEPORT)"
            ),
            Self::UringUnavailable(e) => write!(
                f,
                "io_uring is not available ({e}); use --io-driver poll or auto to run on the poll driver"
            ),
            Self::Worker { index, reason } => write!(f, "worker {index}: {reason}"),
            Self::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for EngineError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Bind { source, .. } => Some(source),
            Self::UringUnavailable(e) | Self::Io(e) => Some(e),
            Self::PortInUse { .. } | Self::Worker { .. } => None,
        }
    }
}

impl From<io::Error> for EngineError {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}
