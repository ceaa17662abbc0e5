//! Receiving through one multishot receive per connection into the worker's provided-buffer
//! ring (`IORING_OP_RECV` with `IORING_RECV_MULTISHOT`): the receive is armed once for the
//! connection's life instead of once per read, and the kernel picks a ring buffer only when
//! bytes arrive, so a connection waiting for its next message holds no buffer of its own.
//!
//! What a ring buffer brings is copied into the reader's buffer (at most its spare room; the
//! rest waits in the ring buffer for the next read) and the ring buffer goes back to the ring,
//! so frames are still parsed and unmasked in a buffer the connection owns. When the ring runs
//! dry (`ENOBUFS`, every buffer held by completions not yet taken), the connection takes its
//! next reads with a plain receive into its own buffer, then arms the ring again: a dry ring
//! slows reads down, it never stalls them.
//!
//! Only WebSocket sessions arm the ring, with `receive = "auto"` only once their first bursts
//! were small ([`RingUse`]): for a session the engine serves, the ring costs more than a
//! receive per read for messages of 8 KiB and more, and it would for a connection that lives
//! for one request. A proxied tunnel arms it on both sides at its start (the upstream's side
//! through `server/upstream.rs`): there it costs no more for small messages, and its read
//! buffers, held only while bytes are in them, make idle tunnels smaller and large messages
//! cheaper.

use std::cell::{OnceCell, RefCell};
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use compio::driver::op::{RecvFlags, RecvMulti};
use compio::driver::{BufferRef, SharedFd};
use compio::runtime::{Runtime, SubmitMultiStream};
use futures_util::Stream;

use crate::server::socket_ops::{ReceiveAppend, ReceiveHint, Socket};
use crate::server::spare_buffers;

/// Receives that found the ring dry, in every worker (`/stats`, `/metrics`).
static DRY: AtomicU64 = AtomicU64::new(0);

/// How many receives found a worker's ring dry since the start.
pub fn dry_count() -> u64 {
    DRY.load(Ordering::Relaxed)
}

/// Sessions that armed their multishot receive, in every worker (`/stats`, `/metrics`).
static ARMED: AtomicU64 = AtomicU64::new(0);

/// How many WebSocket sessions armed the ring since the start.
pub fn armed_count() -> u64 {
    ARMED.load(Ordering::Relaxed)
}

thread_local! {
    /// Whether this worker's ring could be set up, asked when its first session arms it.
    static AVAILABLE: OnceCell<bool> = const { OnceCell::new() };
}

/// Whether this worker can receive through its ring: the kernel refuses provided-buffer rings
/// before Linux 5.19, and the worker's sessions then receive per read (said once per worker)
/// instead of failing at their first read. Asked of the kernel once, at the first session that
/// arms the ring, so a worker that never does registers none.
pub fn available() -> bool {
    AVAILABLE.with(|available| {
        *available.get_or_init(|| match Runtime::current().buffer_pool() {
            Ok(_) => true,
            Err(e) => {
                tracing::warn!(error = %e, "no receive ring on this worker: receiving per read");
                false
            }
        })
    })
}

/// When a worker's WebSocket sessions arm their multishot receive (`receive`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RingUse {
    /// Never: every read is a plain receive (`per_read`, or the poll driver). A worker whose
    /// kernel refuses the ring receives per read whatever this says ([`available`]).
    Never,
    /// At the session's start (`receive = "ring"`).
    AtSessionStart,
    /// Once the session's first [`SMALL_BURSTS_BEFORE_RING`] bursts were each at most
    /// [`SMALL_BURST`] bytes (`receive = "auto"`). A session armed stays armed: stopping a
    /// multishot receive can lose what it queued.
    AfterSmallBursts,
}

impl RingUse {
    /// Whether a session that has read `small_bursts` small bursts in a row (0 at its start)
    /// arms the ring now.
    pub fn arms(self, small_bursts: u8) -> bool {
        match self {
            Self::Never => false,
            Self::AtSessionStart => true,
            Self::AfterSmallBursts => small_bursts >= SMALL_BURSTS_BEFORE_RING,
        }
    }
}

/// The largest burst (bytes a client sent between two moments its connection's buffer held
/// nothing) that counts as small: up to 4 KiB a message costs no more through the ring than
/// with a receive per read, from 8 KiB on it costs 1.3–2.8× as much (BENCHMARKS.md,
/// "Receiving, a third time").
pub const SMALL_BURST: usize = 4 * 1024;

/// Small bursts in a row after which a session on `receive = "auto"` arms the ring.
pub const SMALL_BURSTS_BEFORE_RING: u8 = 4;

/// Plain receives a connection takes after the ring ran dry, before it arms the ring again.
const PLAIN_AFTER_DRY: u8 = 8;

/// A connection's armed multishot receive: the completions not yet taken queue inside it.
type Completions = Pin<Box<dyn Stream<Item = io::Result<BufferRef>>>>;

/// What [`RingReceive::poll_read_into`] found.
#[derive(Debug)]
enum Received {
    /// This many bytes were appended to the buffer (0: the peer closed its side).
    Bytes(usize),
    /// The receive failed.
    Failed(io::Error),
    /// Take this read with a plain receive (the ring ran dry a moment ago).
    Plain,
}

/// One connection's receive from the ring.
#[derive(Default)]
pub struct RingReceive {
    /// The armed receive, made at the first read.
    completions: Option<Completions>,
    /// A ring buffer whose bytes from this offset on did not fit the reader's buffer.
    rest: Option<(BufferRef, usize)>,
    /// Plain receives still to take before the ring is armed again.
    plain_reads: u8,
    /// The peer closed its side: every read from now on returns 0.
    closed: bool,
}

impl std::fmt::Debug for RingReceive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RingReceive")
            .field("armed", &self.completions.is_some())
            .field(
                "rest",
                &self.rest.as_ref().map(|(buffer, at)| buffer.len() - at),
            )
            .field("plain_reads", &self.plain_reads)
            .finish()
    }
}

impl RingReceive {
    /// A session's receive from the ring, counted in [`armed_count`]; armed at its first read.
    pub fn start() -> Box<RefCell<Self>> {
        ARMED.fetch_add(1, Ordering::Relaxed);
        Box::default()
    }

    /// Waits until a read would complete at once: a completion (kept for the read), the
    /// peer's FIN, or a dry ring (the read then takes a plain receive).
    fn poll_wait(&mut self, cx: &mut Context<'_>, fd: &SharedFd<Socket>) -> Poll<io::Result<()>> {
        if self.rest.is_some() || self.plain_reads > 0 || self.closed {
            return Poll::Ready(Ok(()));
        }
        match self.armed(fd).as_mut().poll_next(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(buffer))) => {
                self.rest = Some((buffer, 0));
                Poll::Ready(Ok(()))
            }
            Poll::Ready(None) => {
                self.closed = true;
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Some(Err(e))) if ring_dry(&e) => {
                DRY.fetch_add(1, Ordering::Relaxed);
                self.plain_reads = PLAIN_AFTER_DRY;
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Err(e)),
        }
    }

    /// The connection's multishot receive, armed on `fd` at its first use (and armed again by
    /// the stream itself whenever the kernel ends it).
    fn armed(&mut self, fd: &SharedFd<Socket>) -> &mut Completions {
        self.completions.get_or_insert_with(|| {
            let fd = fd.clone();
            let runtime = Runtime::current();
            Box::pin(SubmitMultiStream::new(move || {
                let pool = runtime.buffer_pool()?;
                let receive = RecvMulti::new(fd.clone(), &pool, 0, RecvFlags::empty())?;
                Ok(runtime.submit_multi(receive).into_managed(pool))
            }))
        })
    }

    /// Appends what the connection received next to `buf`, at most its spare room (some room
    /// is made if it has none): what is left of a ring buffer first, else the next completion
    /// of the armed receive (armed on `fd` here when it is not).
    fn poll_read_into(
        &mut self,
        cx: &mut Context<'_>,
        fd: &SharedFd<Socket>,
        buf: &mut Vec<u8>,
    ) -> Poll<Received> {
        if let Some((buffer, at)) = self.rest.take() {
            return Poll::Ready(Received::Bytes(self.take(buffer, at, buf)));
        }
        if self.closed {
            return Poll::Ready(Received::Bytes(0));
        }
        if self.plain_reads > 0 {
            self.plain_reads -= 1;
            return Poll::Ready(Received::Plain);
        }
        match self.armed(fd).as_mut().poll_next(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(buffer))) => {
                Poll::Ready(Received::Bytes(self.take(buffer, 0, buf)))
            }
            // The stream ends at the peer's FIN.
            Poll::Ready(None) => {
                self.closed = true;
                Poll::Ready(Received::Bytes(0))
            }
            Poll::Ready(Some(Err(e))) if ring_dry(&e) => {
                // The receive ended; the stream arms it again once the plain reads are done.
                DRY.fetch_add(1, Ordering::Relaxed);
                self.plain_reads = PLAIN_AFTER_DRY - 1;
                Poll::Ready(Received::Plain)
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Received::Failed(e)),
        }
    }

    /// Copies `buffer[at..]` into `buf`'s spare room and keeps what does not fit.
    fn take(&mut self, buffer: BufferRef, at: usize, buf: &mut Vec<u8>) -> usize {
        let bytes = &buffer[at..];
        if buf.capacity() == buf.len() {
            buf.reserve(bytes.len());
        }
        let n = bytes.len().min(buf.capacity() - buf.len());
        buf.extend_from_slice(&bytes[..n]);
        if at + n < buffer.len() {
            self.rest = Some((buffer, at + n));
        }
        n
    }
}

/// Whether a receive failed because the ring had no free buffer: `ENOBUFS` from io_uring,
/// "busy" from the poll driver's emulated pool.
fn ring_dry(error: &io::Error) -> bool {
    error.raw_os_error() == Some(libc::ENOBUFS) || error.kind() == io::ErrorKind::ResourceBusy
}

/// Reads into `buf` through `ring`, the receive of socket `fd` (see
/// [`crate::server::transport::Transport::read_append`]). An empty buffer is given up while
/// the connection waits (an idle connection holds no read buffer; the worker keeps a few
/// spares, see [`spare_buffers`]) and one as large is taken once bytes are there; a dry ring
/// sends the read to a plain receive into `buf`.
pub async fn read_from_ring(
    ring: &RefCell<RingReceive>,
    fd: SharedFd<Socket>,
    hint: &ReceiveHint,
    mut buf: Vec<u8>,
) -> (io::Result<usize>, Vec<u8>) {
    let idle_capacity = if buf.is_empty() {
        let capacity = buf.capacity();
        spare_buffers::give(std::mem::take(&mut buf));
        capacity
    } else {
        0
    };
    // Borrowed within each poll only: nothing else borrows it, and a dropped read leaves the
    // armed receive (and what it received) for the next one.
    let received = poll_fn(|cx| {
        let mut ring = ring.borrow_mut();
        if idle_capacity > 0 && buf.capacity() == 0 {
            match ring.poll_wait(cx, &fd) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Received::Failed(e)),
                Poll::Ready(Ok(())) => buf = spare_buffers::take(idle_capacity),
            }
        }
        ring.poll_read_into(cx, &fd, &mut buf)
    })
    .await;
    match received {
        Received::Bytes(n) => (Ok(n), buf),
        Received::Failed(e) => (Err(e), buf),
        Received::Plain => {
            // Boxed: a dry ring is rare, and this future must stay smaller than the plain
            // receive's (see `TcpTransport::read_append`).
            Box::pin(ReceiveAppend::new(fd, hint, buf)).await
        }
    }
}
