//! Binding one `SO_REUSEPORT` listening socket per worker, all on the same port.
//!
//! compio's own `bind` hard-codes a backlog of 128, so sockets are built with socket2 and
//! handed to each worker's runtime afterwards.

use std::io;
use std::net::{SocketAddr, TcpListener};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::error::EngineError;

/// Binds `count` listening sockets on `addr` with `SO_REUSEPORT` so the kernel spreads new
/// connections over them. With port 0 the first bind picks the port and the others share it.
///
/// Unless `allow_shared_port` is set, refuses an address some other socket already listens on:
/// `SO_REUSEPORT` would otherwise let a second server silently take half of the connections.
pub fn bind_reuseport(
    addr: SocketAddr,
    count: usize,
    backlog: u32,
    allow_shared_port: bool,
) -> Result<Vec<TcpListener>, EngineError> {
    if addr.port() != 0 && !allow_shared_port {
        ensure_port_free(addr)?;
    }
    let mut listeners = Vec::with_capacity(count);
    let mut bound = addr;
    for _ in 0..count.max(1) {
        let socket = bind_one(bound, backlog).map_err(|source| EngineError::Bind {
            addr: bound,
            source,
        })?;
        if bound.port() == 0 {
            bound = socket.local_addr()?;
        }
        listeners.push(socket);
    }
    Ok(listeners)
}

fn bind_one(addr: SocketAddr, backlog: u32) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    // Accepted sockets inherit TCP_NODELAY from the listener on Linux, which saves a
    // setsockopt(2) per connection: small responses and WebSocket frames leave at once.
    socket.set_tcp_nodelay(true)?;
    socket.bind(&SockAddr::from(addr))?;
    // listen(2) clamps the backlog to net.core.somaxconn.
    let backlog = i32::try_from(backlog).unwrap_or(i32::MAX);
    socket.listen(backlog)?;
    Ok(socket.into())
}

/// A bind without `SO_REUSEPORT` fails if anyone, with or without it, is bound to `addr`.
fn ensure_port_free(addr: SocketAddr) -> Result<(), EngineError> {
    let probe = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    // SO_REUSEADDR only tolerates TIME_WAIT leftovers of an earlier run, never a live listener.
    probe.set_reuse_address(true)?;
    if addr.is_ipv6() {
        probe.set_only_v6(true)?;
    }
    match probe.bind(&SockAddr::from(addr)) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => Err(EngineError::PortInUse { addr }),
        Err(source) => Err(EngineError::Bind { addr, source }),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn accepted_sockets_inherit_tcp_nodelay() {
        let listener = bind_one("127.0.0.1:0".parse().unwrap(), 8).unwrap();
        listener.set_nonblocking(false).unwrap();
        let _client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (accepted, _) = listener.accept().unwrap();
        assert!(accepted.nodelay().unwrap());
    }

    #[test]
    fn port_zero_is_shared_by_every_worker() {
        let listeners = bind_reuseport("127.0.0.1:0".parse().unwrap(), 3, 64, false).unwrap();
        let port = listeners[0].local_addr().unwrap().port();
        assert_ne!(port, 0);
        assert!(
            listeners
                .iter()
                .all(|l| l.local_addr().unwrap().port() == port)
        );
    }

    #[test]
    fn refuses_a_port_someone_else_listens_on() {
        let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = other.local_addr().unwrap();
        let err = bind_reuseport(addr, 1, 64, false).unwrap_err();
        assert!(matches!(err, EngineError::PortInUse { .. }), "{err}");
    }

    #[test]
    fn shares_a_reuseport_port_only_when_allowed() {
        let first = bind_reuseport("127.0.0.1:0".parse().unwrap(), 1, 64, false).unwrap();
        let addr = first[0].local_addr().unwrap();
        assert!(matches!(
            bind_reuseport(addr, 1, 64, false),
            Err(EngineError::PortInUse { .. })
        ));
        assert_eq!(bind_reuseport(addr, 1, 64, true).unwrap().len(), 1);
    }
}
