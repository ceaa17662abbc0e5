//! The few runtime services the engine uses (spawn, timers, accept), wrapped so that compio's
//! API appears here and in `transport`/`driver` only.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use crate::server::ring_receive::RingUse;
use crate::server::transport::TcpTransport;

/// Runs `future` as an independent task on this worker. A panic inside it is caught by the
/// executor and ends that task only, never the worker.
pub fn spawn_detached<F: Future + 'static>(future: F) {
    compio::runtime::spawn(future).detach();
}

/// Waits for `duration`.
pub async fn sleep(duration: Duration) {
    compio::time::sleep(duration).await;
}

/// Runs `future` for at most `duration`; `None` if time ran out (the future is dropped, which
/// cancels any I/O it had in flight).
pub async fn timeout<F: Future>(duration: Duration, future: F) -> Option<F::Output> {
    compio::time::timeout(duration, future).await.ok()
}

/// A worker's listening socket on its runtime.
#[derive(Debug)]
pub struct TcpAcceptor {
    listener: compio::net::TcpListener,
    /// When accepted connections' WebSocket sessions arm the worker's buffer ring.
    ring_use: RingUse,
}

impl TcpAcceptor {
    /// Takes over a socket bound by [`crate::server::listener`]; call on the worker's runtime
    /// thread. `ring_use`: when the accepted connections' WebSocket sessions arm the worker's
    /// buffer ring (its runtime was built with one unless it is [`RingUse::Never`]).
    pub fn from_std(listener: std::net::TcpListener, ring_use: RingUse) -> io::Result<Self> {
        Ok(Self {
            listener: compio::net::TcpListener::from_std(listener)?,
            ring_use,
        })
    }

    /// Accepts the next connection.
    pub async fn accept(&self) -> io::Result<(TcpTransport, SocketAddr)> {
        let (stream, peer) = self.listener.accept().await?;
        Ok((TcpTransport::new(stream, self.ring_use), peer))
    }
}
