//! The engine's own byte-stream interface, so that compio appears in a few files of `server`
//! only.
//!
//! compio's minor releases change its I/O traits; the connection code speaks to [`Transport`]
//! and an upgrade touches this module alone. Buffers are owned and handed back with the result,
//! because a completion-based driver owns them while the kernel works on them: if a future is
//! dropped before its completion arrives (a timeout), compio cancels the operation and keeps
//! the buffer alive until the kernel is done with it, so no read or write can land in freed
//! memory; the buffer is then lost to the caller, which only ever happens on a path that
//! closes the connection.

use std::cell::{OnceCell, RefCell};
use std::io;
use std::net::SocketAddr;
use std::ops::Range;
use std::os::fd::{AsRawFd, RawFd};
use std::time::Instant;

use bytes::Bytes;
use compio::BufResult;
use compio::buf::{IntoInner, IoBuf, IoVectoredBuf};
use compio::io::AsyncWriteZerocopy;
use futures_util::FutureExt;
use futures_util::future::Either;

use compio::driver::ToSharedFd;
use compio::net::TcpStream;

pub use crate::server::file_io::{FileSink, FileSource};
use crate::server::ring_receive::{self, RingReceive, RingUse, read_from_ring};
use crate::server::sendfile;
use crate::server::socket_ops::{Gathered, ReceiveAppend, ReceiveHint, SendAll, send_range};

/// An accepted connection's byte stream. Reads and writes take `&self` so that one read can
/// stay pending while a write goes out (a WebSocket heartbeat must never cancel a read: a
/// completion racing the cancellation would lose its data).
#[allow(async_fn_in_trait)]
pub trait Transport {
    /// Reads at least one byte into the spare capacity of `buf` (after its current length);
    /// `Ok(0)` means the peer closed its sending side. `buf` comes back with at least its
    /// capacity (a transport receiving from a ring frees an empty one while it waits).
    async fn read_append(&self, buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>);
    /// Writes all of `buf`.
    async fn write_all(&self, buf: Vec<u8>) -> (io::Result<()>, Vec<u8>);
    /// Writes `buf[range]` straight from `buf` (no copy) and gives it back.
    async fn write_range(&self, buf: Vec<u8>, range: Range<usize>) -> (io::Result<()>, Vec<u8>);
    /// Writes `buf[range]` for every range of `ranges`, in order, straight from `buf` (no
    /// copy; several ranges go out in one vectored write), and gives both back.
    async fn write_ranges(&self, buf: Vec<u8>, ranges: Vec<Range<usize>>) -> GatherResult;
    /// Writes every frame of `frames` in order, gathered into as few writes as the kernel
    /// allows (no copy); gives the vector back.
    async fn write_frames(&self, frames: Vec<Bytes>) -> (io::Result<()>, Vec<Bytes>);
    /// Writes all of `buf` with `IORING_OP_SEND_ZC` (the kernel sends from `buf` without
    /// copying it into the socket); gives `buf` back once the kernel has let go of it.
    async fn write_all_zerocopy(&self, buf: Vec<u8>) -> (io::Result<()>, Vec<u8>);
    /// Sends up to `len` bytes of `file` from `offset` with `sendfile(2)`: straight from the
    /// page cache, no copy through a buffer. Waits (on the ring) while the socket is full;
    /// returns the bytes sent, 0 only at the end of the file. `after_pause`: the download has
    /// just waited on its bandwidth cap's timer, which let the worker's other connections run
    /// (otherwise the piece first waits for room through the driver, so that a client that
    /// keeps up does not hold its worker for piece after piece).
    async fn send_file(
        &self,
        file: &FileSource,
        offset: u64,
        len: usize,
        after_pause: bool,
    ) -> io::Result<usize>;
    /// [`Transport::send_file`] for a piece whose pages are not all in the page cache: the
    /// worker never waits for the disk.
    async fn send_cold_file(&self, file: &FileSource, offset: u64, len: usize)
    -> io::Result<usize>;
    /// Tells the transport that a WebSocket session served by the engine has read
    /// `small_bursts` small bursts in a row (0 at its start; see
    /// [`crate::server::ring_receive::RingUse`]): from the next read on it receives through the
    /// worker's buffer ring if the worker's `receive` mode says so now. Called with no read
    /// pending; says whether the connection receives through the ring from now on. A proxied
    /// tunnel offers it as a session past its small bursts. Nothing else arms the ring: a
    /// connection that lives for one HTTP request would arm a multishot receive it hardly
    /// uses (BENCHMARKS.md, "Receiving").
    fn offer_ring(&self, _small_bursts: u8) -> bool {
        false
    }
    /// Sets `TCP_CORK`: while on, only full segments leave (the head waits for the file's
    /// first bytes); turning it off sends what is queued (nginx's `tcp_nopush`).
    fn set_cork(&self, on: bool);
    /// Shuts down the sending side (FIN) after everything queued has been sent.
    async fn shutdown_write(&self) -> io::Result<()>;
    /// The peer's address.
    fn peer_addr(&self) -> io::Result<SocketAddr>;
    /// Whether the peer has closed or reset the connection, asked without reading (what it
    /// sent and this side has not read stays where it is): one `poll(2)` that does not wait.
    fn peer_gone(&self) -> bool;
}

/// Reads and drops what the peer still sends, after this side's FIN, until the peer closes,
/// `deadline` passes or `max_bytes` were dropped: closing a socket that holds unread bytes
/// makes the kernel send a reset, which can destroy the last answer before the peer reads it.
pub async fn read_and_drop<T: Transport>(io: &T, deadline: Instant, max_bytes: usize) {
    let mut dropped = 0;
    let mut buf = Vec::with_capacity(max_bytes.min(16 * 1024));
    while dropped < max_bytes {
        let Some(left) = deadline.checked_duration_since(Instant::now()) else {
            return;
        };
        buf.clear();
        match crate::server::runtime::timeout(left, io.read_append(buf)).await {
            Some((Ok(n), returned)) if n > 0 => {
                dropped += n;
                buf = returned;
            }
            _ => return,
        }
    }
}

/// What [`Transport::write_ranges`] gives back: the result, the buffer and the ranges.
pub type GatherResult = (io::Result<()>, Vec<u8>, Vec<Range<usize>>);

/// Ranges of one buffer, written as one vectored write.
struct Gather {
    buf: Vec<u8>,
    ranges: Vec<Range<usize>>,
}

impl IoVectoredBuf for Gather {
    fn iter_slice(&self) -> impl Iterator<Item = &[u8]> {
        self.ranges.iter().map(|range| &self.buf[range.clone()])
    }
}

/// A TCP connection on the worker's compio runtime.
#[derive(Debug)]
pub struct TcpTransport {
    stream: TcpStream,
    /// The connection's multishot receive into the worker's buffer ring, once its WebSocket
    /// session armed it ([`Transport::offer_ring`]); a receive per read until then.
    ring: OnceCell<Box<RefCell<RingReceive>>>,
    /// When a WebSocket session arms the ring (the worker's `receive`).
    ring_use: RingUse,
    /// Whether the last plain receive left the socket empty.
    receive_hint: ReceiveHint,
}

impl TcpTransport {
    /// Wraps an accepted stream (Nagle is already off: `TCP_NODELAY` is inherited from the
    /// listener, see `listener.rs`); `ring_use`: when its WebSocket session, if it has one,
    /// arms the worker's buffer ring.
    pub fn new(stream: TcpStream, ring_use: RingUse) -> Self {
        Self {
            stream,
            ring: OnceCell::new(),
            ring_use,
            receive_hint: ReceiveHint::default(),
        }
    }

    /// The raw descriptor, for the worker's connection registry (drain and forced close).
    pub fn raw_fd(&self) -> RawFd {
        self.stream.as_raw_fd()
    }
}

impl Transport for TcpTransport {
    /// Two futures, not one `async fn` holding both: the future of a connection that waits
    /// for a read is as large as its read's, and every idle connection keeps one.
    fn read_append(&self, buf: Vec<u8>) -> impl Future<Output = (io::Result<usize>, Vec<u8>)> {
        match self.ring.get() {
            Some(ring) => Either::Left(read_from_ring(
                ring,
                self.stream.to_shared_fd(),
                &self.receive_hint,
                buf,
            )),
            None => Either::Right(ReceiveAppend::new(
                self.stream.to_shared_fd(),
                &self.receive_hint,
                buf,
            )),
        }
    }

    fn write_all(&self, buf: Vec<u8>) -> impl Future<Output = (io::Result<()>, Vec<u8>)> {
        send_range(self.stream.to_shared_fd(), buf, ..)
    }

    fn write_range(
        &self,
        buf: Vec<u8>,
        range: Range<usize>,
    ) -> impl Future<Output = (io::Result<()>, Vec<u8>)> {
        send_range(self.stream.to_shared_fd(), buf, range)
    }

    fn write_ranges(
        &self,
        buf: Vec<u8>,
        ranges: Vec<Range<usize>>,
    ) -> impl Future<Output = GatherResult> {
        SendAll::new(self.stream.to_shared_fd(), Gathered(Gather { buf, ranges }))
            .map(|(result, Gathered(gather))| (result, gather.buf, gather.ranges))
    }

    fn write_frames(
        &self,
        frames: Vec<Bytes>,
    ) -> impl Future<Output = (io::Result<()>, Vec<Bytes>)> {
        SendAll::new(self.stream.to_shared_fd(), Gathered(frames))
            .map(|(result, Gathered(frames))| (result, frames))
    }

    async fn write_all_zerocopy(&self, mut buf: Vec<u8>) -> (io::Result<()>, Vec<u8>) {
        let mut sent = 0;
        while sent < buf.len() {
            let BufResult(result, ready) =
                AsyncWriteZerocopy::write_zerocopy(&mut &self.stream, buf.slice(sent..)).await;
            buf = ready.await.into_inner();
            match result {
                Ok(0) => return (Err(io::ErrorKind::WriteZero.into()), buf),
                Ok(n) => sent += n,
                Err(e) => return (Err(e), buf),
            }
        }
        (Ok(()), buf)
    }

    /// `sendfile(2)` is a plain system call on the worker thread, made on a non-blocking
    /// socket, so a full socket returns `EAGAIN` instead of stopping the worker; the wait for
    /// room is a driver poll. The kernel reads the file's pages from the page cache (a page not
    /// cached is read from disk inside the call, as nginx's `sendfile` does). The whole piece
    /// is sent before it returns, unless the file ends.
    ///
    /// The socket's mode belongs to the driver: the poll driver keeps every socket
    /// non-blocking (it tries a `recv` before it waits for readiness, so a blocking socket
    /// would stop the whole worker), while io_uring's accepted sockets are blocking. A
    /// blocking socket is switched for the piece and switched back whichever way the call
    /// ends, even when it is dropped mid-wait; a non-blocking one is left untouched.
    async fn send_file(
        &self,
        file: &FileSource,
        offset: u64,
        len: usize,
        after_pause: bool,
    ) -> io::Result<usize> {
        sendfile::send_on_worker(&self.stream, file, offset, len, after_pause).await
    }

    /// `sendfile(2)` on the runtime's blocking pool, as nginx's `aio threads` sends: no part
    /// of the disk read happens on the worker, and the bytes still go without a copy through
    /// a buffer.
    async fn send_cold_file(
        &self,
        file: &FileSource,
        offset: u64,
        len: usize,
    ) -> io::Result<usize> {
        sendfile::send_in_pool(&self.stream, file, offset, len).await
    }

    fn offer_ring(&self, small_bursts: u8) -> bool {
        if self.ring.get().is_none()
            && self.ring_use.arms(small_bursts)
            && ring_receive::available()
        {
            self.ring.get_or_init(RingReceive::start);
        }
        self.ring.get().is_some()
    }

    fn set_cork(&self, on: bool) {
        let value = libc::c_int::from(on);
        // SAFETY: the descriptor is open while `self` lives; setsockopt reads one `int` from
        // a pointer valid for the call. A failure only costs a few more segments.
        unsafe {
            libc::setsockopt(
                self.stream.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_CORK,
                (&raw const value).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }

    /// A plain `shutdown(2)` call, not an io_uring operation: the kernel always hands
    /// `IORING_OP_SHUTDOWN` to an io-wq worker thread (it has no non-blocking path), which cost
    /// about 15% of a WebSocket handshake's server CPU in thread wake-ups (BENCHMARKS.md). On a
    /// TCP socket the call never blocks: it queues the FIN behind the data already sent.
    async fn shutdown_write(&self) -> io::Result<()> {
        // SAFETY: the descriptor belongs to `self.stream`, which is open for as long as `self`
        // lives; `shutdown` touches no memory of this process.
        let rc = unsafe { libc::shutdown(self.stream.as_raw_fd(), libc::SHUT_WR) };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.stream.peer_addr()
    }

    fn peer_gone(&self) -> bool {
        let mut pollfd = libc::pollfd {
            fd: self.stream.as_raw_fd(),
            events: libc::POLLRDHUP,
            revents: 0,
        };
        // SAFETY: `pollfd` is one valid entry for the duration of the call, and its descriptor
        // is open (owned by `self.stream`); a zero timeout never waits.
        let ready = unsafe { libc::poll(&raw mut pollfd, 1, 0) };
        ready > 0 && pollfd.revents & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) != 0
    }
}
