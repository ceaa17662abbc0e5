//! Connections from a worker to an upstream server (a proxy route's side): TCP or a Unix
//! socket, opened and driven on the worker's compio runtime like accepted connections, with
//! owned buffers handed back as in [`crate::server::transport`] and the same lean receives and
//! sends ([`crate::server::socket_ops`]).

use std::cell::{OnceCell, RefCell};
use std::io;
use std::os::fd::{AsRawFd, RawFd};

use futures_util::future::Either;

use compio::driver::{SharedFd, ToSharedFd};
use compio::net::{TcpStream, UnixStream};

use crate::config::UpstreamAddr;
use crate::server::ring_receive::{self, RingReceive, read_from_ring};
use crate::server::socket_ops::{ReceiveAppend, ReceiveHint, Socket, send_range};

/// An open connection to an upstream.
#[derive(Debug)]
pub struct UpstreamConn {
    stream: Stream,
    /// Whether the last plain receive left the socket empty.
    receive_hint: ReceiveHint,
    /// The connection's multishot receive into the worker's buffer ring, once a tunnel armed
    /// it ([`UpstreamConn::arm_ring`]); a receive per read until then.
    ring: OnceCell<Box<RefCell<RingReceive>>>,
}

#[derive(Debug)]
enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl UpstreamConn {
    /// Opens a connection to `addr` (Nagle off on TCP: heads and small bodies leave at once).
    pub async fn connect(addr: &UpstreamAddr) -> io::Result<Self> {
        let stream = match addr {
            UpstreamAddr::Tcp(addr) => {
                let stream = TcpStream::connect(*addr).await?;
                stream.set_nodelay(true)?;
                Stream::Tcp(stream)
            }
            UpstreamAddr::Unix(path) => Stream::Unix(UnixStream::connect(path).await?),
        };
        Ok(Self {
            stream,
            receive_hint: ReceiveHint::default(),
            ring: OnceCell::new(),
        })
    }

    /// Reads at least one byte into the spare capacity of `buf`; `Ok(0)` when the upstream
    /// closed its sending side. Through the worker's buffer ring once armed (an empty `buf`
    /// is then freed while the read waits, and comes back as large).
    pub fn read_append(&self, buf: Vec<u8>) -> impl Future<Output = (io::Result<usize>, Vec<u8>)> {
        match self.ring.get() {
            Some(ring) => Either::Left(read_from_ring(
                ring,
                self.shared_fd(),
                &self.receive_hint,
                buf,
            )),
            None => Either::Right(ReceiveAppend::new(
                self.shared_fd(),
                &self.receive_hint,
                buf,
            )),
        }
    }

    /// From the next read on, receives through the worker's buffer ring (one multishot
    /// receive for the connection's life), if the worker has one. Only for a connection that
    /// never goes back to the pool: its staleness check polls the socket, which an armed
    /// receive would empty first. Called with no read pending.
    pub fn arm_ring(&self) {
        if self.ring.get().is_none() && ring_receive::available() {
            self.ring.get_or_init(RingReceive::start);
        }
    }

    /// Whether the connection receives through the worker's buffer ring.
    pub fn ring_armed(&self) -> bool {
        self.ring.get().is_some()
    }

    /// Reads into `buf` until it holds a whole response head (up to its empty line) or
    /// `limit` bytes: `Ok(true)` then, `Ok(false)` when the upstream closed first. For the
    /// short answers of auth endpoints and health checks; a proxied response is read piece
    /// by piece instead.
    pub async fn read_head(&self, mut buf: Vec<u8>, limit: usize) -> (io::Result<bool>, Vec<u8>) {
        loop {
            if buf.len() >= limit || buf.windows(4).any(|w| w == b"\r\n\r\n") {
                return (Ok(true), buf);
            }
            if buf.len() == buf.capacity() {
                buf.reserve(limit - buf.len());
            }
            let (read, returned) = self.read_append(buf).await;
            buf = returned;
            match read {
                Ok(0) => return (Ok(false), buf),
                Ok(_) => {}
                Err(e) => return (Err(e), buf),
            }
        }
    }

    /// Writes all of `buf`.
    pub fn write_all(&self, buf: Vec<u8>) -> impl Future<Output = (io::Result<()>, Vec<u8>)> {
        send_range(self.shared_fd(), buf, ..)
    }

    /// Writes `buf[..len]` straight from `buf` (no copy) and gives it back.
    pub fn write_prefix(
        &self,
        buf: Vec<u8>,
        len: usize,
    ) -> impl Future<Output = (io::Result<()>, Vec<u8>)> {
        send_range(self.shared_fd(), buf, ..len)
    }

    /// Shuts down the sending side (FIN) after everything queued has been sent.
    pub async fn shutdown_write(&self) -> io::Result<()> {
        // SAFETY: the descriptor belongs to `self.stream`, open for as long as `self` lives;
        // `shutdown` touches no memory of this process.
        let rc = unsafe { libc::shutdown(self.raw_fd(), libc::SHUT_WR) };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    /// Whether an idle pooled connection can no longer carry a request: the upstream closed
    /// it, reset it, or sent something unasked (an idle HTTP/1.1 connection has nothing to
    /// say). One `poll(2)` that does not wait.
    pub fn is_stale(&self) -> bool {
        let mut pollfd = libc::pollfd {
            fd: self.raw_fd(),
            events: libc::POLLIN | libc::POLLRDHUP,
            revents: 0,
        };
        // SAFETY: `pollfd` is one valid entry for the duration of the call, and its descriptor
        // is open (owned by `self.stream`); a zero timeout never waits.
        let ready = unsafe { libc::poll(&raw mut pollfd, 1, 0) };
        ready != 0
    }

    fn shared_fd(&self) -> SharedFd<Socket> {
        match &self.stream {
            Stream::Tcp(stream) => stream.to_shared_fd(),
            Stream::Unix(stream) => stream.to_shared_fd(),
        }
    }

    fn raw_fd(&self) -> RawFd {
        match &self.stream {
            Stream::Tcp(stream) => stream.as_raw_fd(),
            Stream::Unix(stream) => stream.as_raw_fd(),
        }
    }
}
