//! An in-memory [`Transport`] for tests of the connection state machines: the test scripts
//! what the client sends and reads back what the server wrote, with no socket.
//!
//! Each chunk the test sends is delivered by one read (cut only where the reader's buffer has
//! no more room, as a socket would), so a test decides every split point. A read with nothing
//! scripted is a future that stays pending until the test sends more or closes, and dropping
//! it (a deadline of the connection registry) loses nothing: a chunk leaves the script only in
//! the poll that returns it. Writes complete at once, or, once the test limits what the client
//! reads, stay pending forever like a write to a socket whose peer never reads.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::poll_fn;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::ops::Range;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::server::transport::{FileSource, GatherResult, Transport};

/// The peer address every memory transport reports (loopback, like a local test client).
pub const PEER: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 40000);

/// A connection's two ends: the server's transport and the test's client.
pub fn pair() -> (MemoryTransport, Client) {
    let pipe = Rc::new(RefCell::new(Pipe {
        started: Instant::now(),
        incoming: VecDeque::new(),
        eof: false,
        reader: None,
        read: 0,
        writes: Vec::new(),
        read_budget: None,
        accepted: 0,
        fin: None,
        reads_without_room: 0,
        writes_after_fin: 0,
        watcher: None,
    }));
    let client = Client {
        pipe: Rc::clone(&pipe),
    };
    (MemoryTransport { pipe }, client)
}

/// One write the server made, as the client received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// When the write was made, from the creation of the pair.
    pub at: Duration,
    /// The bytes the client received of it (all of it, but for a write that stalled).
    pub bytes: Vec<u8>,
}

/// What both ends share.
#[derive(Debug)]
struct Pipe {
    started: Instant,
    /// Chunks not yet read, each delivered by one read.
    incoming: VecDeque<Vec<u8>>,
    /// The client closed its sending side: reads return 0 once `incoming` is empty.
    eof: bool,
    /// The pending read.
    reader: Option<Waker>,
    /// Bytes the server has read.
    read: usize,
    writes: Vec<Written>,
    /// Bytes the client takes in before it stops reading (`None`: it reads everything).
    read_budget: Option<usize>,
    /// Bytes the client took in.
    accepted: usize,
    /// When the server shut down its sending side.
    fin: Option<Duration>,
    /// Reads made with no room in the buffer (a socket returns 0, which looks like EOF).
    reads_without_room: usize,
    /// Writes made after the FIN (a socket fails them with `EPIPE`).
    writes_after_fin: usize,
    /// The test waiting for the server's output.
    watcher: Option<Waker>,
}

/// How a write ended.
enum WriteOutcome {
    Done,
    /// The client stopped reading: the write never completes.
    Stalled,
    AfterFin,
}

impl Pipe {
    fn now(&self) -> Duration {
        self.started.elapsed()
    }

    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut Vec<u8>) -> Poll<usize> {
        let Some(chunk) = self.incoming.front_mut() else {
            if self.eof {
                return Poll::Ready(0);
            }
            self.reader = Some(cx.waker().clone());
            return Poll::Pending;
        };
        let room = buf.capacity() - buf.len();
        if room == 0 {
            self.reads_without_room += 1;
            return Poll::Ready(0);
        }
        let n = room.min(chunk.len());
        buf.extend_from_slice(&chunk[..n]);
        if n == chunk.len() {
            self.incoming.pop_front();
        } else {
            chunk.drain(..n);
        }
        self.read += n;
        Poll::Ready(n)
    }

    fn write(&mut self, bytes: &[u8]) -> WriteOutcome {
        if self.fin.is_some() {
            self.writes_after_fin += 1;
            return WriteOutcome::AfterFin;
        }
        let room = self
            .read_budget
            .map_or(usize::MAX, |budget| budget.saturating_sub(self.accepted));
        let taken = room.min(bytes.len());
        self.accepted += taken;
        self.writes.push(Written {
            at: self.now(),
            bytes: bytes[..taken].to_vec(),
        });
        self.wake_watcher();
        if taken == bytes.len() {
            WriteOutcome::Done
        } else {
            WriteOutcome::Stalled
        }
    }

    fn wake_watcher(&mut self) {
        if let Some(waker) = self.watcher.take() {
            waker.wake();
        }
    }
}

/// The server's end.
#[derive(Debug)]
pub struct MemoryTransport {
    pipe: Rc<RefCell<Pipe>>,
}

impl MemoryTransport {
    async fn write(&self, bytes: &[u8]) -> io::Result<()> {
        let outcome = self.pipe.borrow_mut().write(bytes);
        match outcome {
            WriteOutcome::Done => Ok(()),
            WriteOutcome::Stalled => std::future::pending().await,
            WriteOutcome::AfterFin => Err(io::ErrorKind::BrokenPipe.into()),
        }
    }
}

impl Transport for MemoryTransport {
    async fn read_append(&self, mut buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        let n = poll_fn(|cx| self.pipe.borrow_mut().poll_read(cx, &mut buf)).await;
        (Ok(n), buf)
    }

    async fn write_all(&self, buf: Vec<u8>) -> (io::Result<()>, Vec<u8>) {
        let result = self.write(&buf).await;
        (result, buf)
    }

    async fn write_range(&self, buf: Vec<u8>, range: Range<usize>) -> (io::Result<()>, Vec<u8>) {
        let result = self.write(&buf[range]).await;
        (result, buf)
    }

    async fn write_ranges(&self, buf: Vec<u8>, ranges: Vec<Range<usize>>) -> GatherResult {
        let gathered: Vec<u8> = ranges
            .iter()
            .flat_map(|r| &buf[r.clone()])
            .copied()
            .collect();
        let result = self.write(&gathered).await;
        (result, buf, ranges)
    }

    async fn write_frames(&self, frames: Vec<Bytes>) -> (io::Result<()>, Vec<Bytes>) {
        let gathered = frames.concat();
        let result = self.write(&gathered).await;
        (result, frames)
    }

    async fn write_all_zerocopy(&self, buf: Vec<u8>) -> (io::Result<()>, Vec<u8>) {
        self.write_all(buf).await
    }

    async fn send_file(
        &self,
        _file: &FileSource,
        _offset: u64,
        _len: usize,
        _after_pause: bool,
    ) -> io::Result<usize> {
        Err(io::ErrorKind::Unsupported.into())
    }

    async fn send_cold_file(
        &self,
        _file: &FileSource,
        _offset: u64,
        _len: usize,
    ) -> io::Result<usize> {
        Err(io::ErrorKind::Unsupported.into())
    }

    fn set_cork(&self, _on: bool) {}

    async fn shutdown_write(&self) -> io::Result<()> {
        let mut pipe = self.pipe.borrow_mut();
        if pipe.fin.is_none() {
            pipe.fin = Some(pipe.now());
        }
        pipe.wake_watcher();
        Ok(())
    }

    fn peer_addr(&self) -> io::Result<SocketAddr> {
        Ok(PEER)
    }

    fn peer_gone(&self) -> bool {
        false
    }
}

/// The test's end: what the client sends, and what it received.
#[derive(Debug, Clone)]
pub struct Client {
    pipe: Rc<RefCell<Pipe>>,
}

impl Client {
    /// Sends `chunk`, which the server gets in one read (cut only if its buffer is smaller).
    pub fn send(&self, chunk: impl Into<Vec<u8>>) {
        let chunk = chunk.into();
        let mut pipe = self.pipe.borrow_mut();
        // An empty read is how a socket reports EOF: an empty chunk cannot be delivered.
        assert!(!chunk.is_empty(), "an empty chunk cannot be sent");
        assert!(!pipe.eof, "nothing can be sent after close");
        pipe.incoming.push_back(chunk);
        if let Some(waker) = pipe.reader.take() {
            waker.wake();
        }
    }

    /// Closes the client's sending side: once everything sent is read, reads return 0.
    pub fn close(&self) {
        let mut pipe = self.pipe.borrow_mut();
        pipe.eof = true;
        if let Some(waker) = pipe.reader.take() {
            waker.wake();
        }
    }

    /// From now on the client takes in `bytes` more at most, then stops reading: a write
    /// past it delivers what fits and never completes.
    pub fn stop_reading_after(&self, bytes: usize) {
        let mut pipe = self.pipe.borrow_mut();
        pipe.read_budget = Some(pipe.accepted + bytes);
    }

    /// Waits until what the server wrote (and whether it sent its FIN) satisfies `done`.
    pub async fn wait_for(&self, done: impl Fn(&[u8], bool) -> bool) {
        poll_fn(|cx| {
            let mut pipe = self.pipe.borrow_mut();
            if done(&pipe.output(), pipe.fin.is_some()) {
                return Poll::Ready(());
            }
            pipe.watcher = Some(cx.waker().clone());
            Poll::Pending
        })
        .await;
    }

    /// Everything the client received, write by write.
    pub fn writes(&self) -> Vec<Written> {
        self.pipe.borrow().writes.clone()
    }

    /// When the server sent its FIN, if it did.
    pub fn fin(&self) -> Option<Duration> {
        self.pipe.borrow().fin
    }

    /// Bytes the server has read.
    pub fn bytes_read(&self) -> usize {
        self.pipe.borrow().read
    }

    /// Reads with no room in the buffer and writes after the FIN: mistakes of the server's
    /// that a socket would hide (the first looks like EOF, the second fails quietly).
    pub fn misuses(&self) -> (usize, usize) {
        let pipe = self.pipe.borrow();
        (pipe.reads_without_room, pipe.writes_after_fin)
    }
}

impl Pipe {
    fn output(&self) -> Vec<u8> {
        self.writes.iter().flat_map(|w| &w.bytes).copied().collect()
    }
}
