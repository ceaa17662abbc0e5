//! Option (b): RESP2 spoken directly on a compio `TcpStream` inside the worker thread, with
//! `redis-protocol` as the codec and no other runtime.
//!
//! [`RespLink`] is a request/response connection. Commands are encoded into one output buffer
//! as they are issued; a writer task sends everything queued in one write, so commands issued
//! while a write is in flight go out together (pipelining). A reader task decodes replies in
//! order and hands each to the command that is first in line: nothing for a PUBLISH whose
//! answer nobody awaits, a oneshot for a call.
//!
//! [`RespSubscriber`] is a connection in subscribed mode: it only reads and decodes pushes.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::poll_fn;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::task::{Poll, Waker};

use bytes::{Bytes, BytesMut};
use compio::BufResult;
use compio::io::{AsyncReadExt, AsyncWriteExt};
use compio::net::TcpStream;
use compio::runtime::JoinHandle;
use futures_channel::oneshot;
use redis_protocol::resp2::decode::{decode, decode_bytes_mut, decode_range};
use redis_protocol::resp2::encode::extend_encode_borrowed;
use redis_protocol::resp2::types::{BorrowedFrame, BytesFrame, OwnedFrame, RangeFrame};

use crate::link::{CHANNEL, LEASE_ARGS, LeaseReply, Link, LinkError, Message, MessageSource};

/// Read buffers grow by this much when they run out of room.
const READ_CHUNK: usize = 64 * 1024;

/// Wakes the tasks of this thread waiting on it. Each waiter re-checks its own condition
/// (buffer not empty, room for a command) before waiting, and a wait ends at the first
/// notification after it began.
#[derive(Default)]
struct LocalEvent {
    generation: Cell<u64>,
    waiters: RefCell<Vec<Waker>>,
}

impl std::fmt::Debug for LocalEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalEvent")
            .field("generation", &self.generation.get())
            .finish_non_exhaustive()
    }
}

impl LocalEvent {
    fn notify(&self) {
        self.generation.set(self.generation.get().wrapping_add(1));
        // Take the list first: a woken waker may run code that waits again.
        let waiters = std::mem::take(&mut *self.waiters.borrow_mut());
        for waker in waiters {
            waker.wake();
        }
    }

    async fn wait(&self) {
        let start = self.generation.get();
        poll_fn(|cx| {
            if self.generation.get() != start {
                Poll::Ready(())
            } else {
                let mut waiters = self.waiters.borrow_mut();
                if !waiters.iter().any(|w| w.will_wake(cx.waker())) {
                    waiters.push(cx.waker().clone());
                }
                Poll::Pending
            }
        })
        .await;
    }
}

/// Who gets the reply of a command sent on a [`RespLink`].
#[derive(Debug)]
enum Awaiting {
    /// A PUBLISH nobody awaits: the reply is counted.
    Publish,
    /// A call: the reply frame goes to the caller.
    Call(oneshot::Sender<Result<OwnedFrame, LinkError>>),
}

#[derive(Debug)]
struct Shared {
    stream: TcpStream,
    /// Commands encoded and not written yet.
    out: RefCell<BytesMut>,
    /// One entry per command written or queued, in order.
    awaiting: RefCell<VecDeque<Awaiting>>,
    /// Set when the connection failed: no command is taken any more.
    closed: Cell<bool>,
    /// Wakes the writer when `out` gets bytes.
    writer: LocalEvent,
    /// Wakes the tasks waiting for room when replies have come in.
    room: LocalEvent,
    max_in_flight: usize,
    publishes_answered: Cell<u64>,
    publish_errors: Cell<u64>,
}

/// A request/response RESP2 connection driven by the worker's own runtime.
#[derive(Debug)]
pub struct RespLink {
    shared: Rc<Shared>,
    /// SHA1 of the lease script loaded on the server.
    lease_sha: String,
    // Dropping the link cancels its two tasks, which closes the socket.
    _writer: JoinHandle<()>,
    _reader: JoinHandle<()>,
}

impl RespLink {
    /// Connects and starts the writer and reader tasks; at most `max_in_flight` commands are
    /// queued or unanswered at a time. `lease_sha` names the loaded lease script.
    pub async fn connect(
        addr: SocketAddr,
        max_in_flight: usize,
        lease_sha: String,
    ) -> io::Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let shared = Rc::new(Shared {
            stream,
            out: RefCell::new(BytesMut::with_capacity(READ_CHUNK)),
            awaiting: RefCell::new(VecDeque::with_capacity(max_in_flight)),
            closed: Cell::new(false),
            writer: LocalEvent::default(),
            room: LocalEvent::default(),
            max_in_flight,
            publishes_answered: Cell::new(0),
            publish_errors: Cell::new(0),
        });
        let writer = compio::runtime::spawn(write_loop(Rc::clone(&shared)));
        let reader = compio::runtime::spawn(read_loop(Rc::clone(&shared)));
        Ok(Self {
            shared,
            lease_sha,
            _writer: writer,
            _reader: reader,
        })
    }

    /// Commands queued or unanswered.
    pub fn in_flight(&self) -> usize {
        self.shared.awaiting.borrow().len()
    }

    /// Sends a command and waits for its reply (an error reply becomes [`LinkError::Server`]).
    pub async fn call<const N: usize>(&self, args: [&[u8]; N]) -> Result<OwnedFrame, LinkError> {
        while self.in_flight() >= self.shared.max_in_flight {
            self.wait_for_room().await?;
        }
        let (reply_tx, reply_rx) = oneshot::channel();
        self.queue(args, Awaiting::Call(reply_tx))?;
        match reply_rx.await {
            Ok(Ok(OwnedFrame::Error(e))) => Err(LinkError::Server(e)),
            Ok(reply) => reply,
            Err(oneshot::Canceled) => Err(LinkError::Closed),
        }
    }

    fn queue<const N: usize>(&self, args: [&[u8]; N], awaiting: Awaiting) -> Result<(), LinkError> {
        if self.shared.closed.get() {
            return Err(LinkError::Closed);
        }
        encode_command(&mut self.shared.out.borrow_mut(), args)?;
        self.shared.awaiting.borrow_mut().push_back(awaiting);
        self.shared.writer.notify();
        Ok(())
    }

    async fn wait_for_room(&self) -> Result<(), LinkError> {
        if self.shared.closed.get() {
            return Err(LinkError::Closed);
        }
        self.shared.room.wait().await;
        Ok(())
    }
}

impl Link for RespLink {
    fn try_publish(&self, message: &Message) -> Result<(), LinkError> {
        if self.in_flight() >= self.shared.max_in_flight {
            return Err(LinkError::Full);
        }
        self.queue(
            [b"PUBLISH", CHANNEL.as_bytes(), message.as_bytes()],
            Awaiting::Publish,
        )
    }

    async fn publish(&self, message: &Message) -> Result<(), LinkError> {
        loop {
            match self.try_publish(message) {
                Err(LinkError::Full) => self.wait_for_room().await?,
                done => return done,
            }
        }
    }

    fn publishes_answered(&self) -> u64 {
        self.shared.publishes_answered.get()
    }

    fn publish_errors(&self) -> u64 {
        self.shared.publish_errors.get()
    }

    async fn renew_lease(&self, key: &str) -> Result<LeaseReply, LinkError> {
        let [interval, burst, tokens] = LEASE_ARGS;
        let reply = self
            .call([
                b"EVALSHA",
                self.lease_sha.as_bytes(),
                b"1",
                key.as_bytes(),
                interval.as_bytes(),
                burst.as_bytes(),
                tokens.as_bytes(),
            ])
            .await?;
        match reply {
            OwnedFrame::Array(items) => {
                let values: Vec<i64> = items
                    .iter()
                    .map(|item| match item {
                        OwnedFrame::Integer(i) => Ok(*i),
                        other => Err(LinkError::Protocol(format!("lease reply item {other:?}"))),
                    })
                    .collect::<Result<_, _>>()?;
                LeaseReply::from_pair(&values)
            }
            other => Err(LinkError::Protocol(format!("lease reply {other:?}"))),
        }
    }
}

/// Appends one command (an array of bulk strings) to `out`.
fn encode_command<const N: usize>(out: &mut BytesMut, args: [&[u8]; N]) -> Result<(), LinkError> {
    let parts = args.map(BorrowedFrame::BulkString);
    extend_encode_borrowed(out, &BorrowedFrame::Array(&parts), false)?;
    Ok(())
}

/// Marks the link closed and fails every command still waiting for a reply.
fn fail(shared: &Shared) {
    shared.closed.set(true);
    for awaiting in shared.awaiting.borrow_mut().drain(..) {
        if let Awaiting::Call(reply) = awaiting {
            // The caller may have gone away; nothing to tell it then.
            let _ = reply.send(Err(LinkError::Closed));
        }
    }
    shared.room.notify();
    shared.writer.notify();
}

async fn write_loop(shared: Rc<Shared>) {
    let mut sending = BytesMut::with_capacity(READ_CHUNK);
    loop {
        while shared.out.borrow().is_empty() {
            if shared.closed.get() {
                return;
            }
            shared.writer.wait().await;
        }
        // Take everything queued; commands issued during the write go into the other buffer.
        std::mem::swap(&mut *shared.out.borrow_mut(), &mut sending);
        let BufResult(written, buf) = (&shared.stream).write_all(sending).await;
        sending = buf;
        sending.clear();
        if written.is_err() {
            fail(&shared);
            return;
        }
    }
}

async fn read_loop(shared: Rc<Shared>) {
    let mut buf = Vec::with_capacity(READ_CHUNK);
    loop {
        if buf.capacity() - buf.len() < READ_CHUNK / 4 {
            buf.reserve(READ_CHUNK);
        }
        let BufResult(read, returned) = (&shared.stream).append(buf).await;
        buf = returned;
        if !matches!(read, Ok(n) if n > 0) {
            fail(&shared);
            return;
        }
        let mut used = 0;
        loop {
            match decode_range(&buf[used..]) {
                Ok(Some((frame, len))) => {
                    if deliver(&shared, &buf[used..used + len], &frame).is_err() {
                        fail(&shared);
                        return;
                    }
                    used += len;
                }
                Ok(None) => break,
                Err(_) => {
                    fail(&shared);
                    return;
                }
            }
        }
        buf.drain(..used);
        if used > 0 {
            shared.room.notify();
        }
    }
}

/// Hands one decoded reply to the command first in line.
fn deliver(shared: &Shared, bytes: &[u8], frame: &RangeFrame) -> Result<(), LinkError> {
    let awaiting = shared.awaiting.borrow_mut().pop_front();
    match awaiting {
        Some(Awaiting::Publish) => {
            shared
                .publishes_answered
                .set(shared.publishes_answered.get() + 1);
            if matches!(frame, RangeFrame::Error(_)) {
                shared.publish_errors.set(shared.publish_errors.get() + 1);
            }
            Ok(())
        }
        Some(Awaiting::Call(reply)) => {
            // Calls are rare next to publishes: decode the reply again, as an owned frame.
            let owned = decode(bytes)?
                .map(|(frame, _)| frame)
                .ok_or(LinkError::Protocol("reply cut short".into()))?;
            // The caller may have stopped waiting (timeout); the reply is dropped then.
            let _ = reply.send(Ok(owned));
            Ok(())
        }
        None => Err(LinkError::Protocol("a reply nobody asked for".into())),
    }
}

/// A connection in subscribed mode, read by the worker itself.
#[derive(Debug)]
pub struct RespSubscriber {
    stream: TcpStream,
    buf: BytesMut,
}

impl RespSubscriber {
    /// Connects, subscribes to `channel` and waits for the server's confirmation.
    pub async fn connect(addr: SocketAddr, channel: &str) -> Result<Self, LinkError> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let mut out = BytesMut::new();
        encode_command(&mut out, [b"SUBSCRIBE", channel.as_bytes()])?;
        let BufResult(written, _) = (&stream).write_all(out).await;
        written?;
        let mut subscriber = Self {
            stream,
            buf: BytesMut::with_capacity(READ_CHUNK),
        };
        match subscriber.next_frame().await? {
            BytesFrame::Array(items) if is_kind(&items, b"subscribe") => Ok(subscriber),
            other => Err(LinkError::Protocol(format!("subscribe reply {other:?}"))),
        }
    }

    async fn next_frame(&mut self) -> Result<BytesFrame, LinkError> {
        loop {
            if let Some((frame, _, _)) = decode_bytes_mut(&mut self.buf)? {
                return Ok(frame);
            }
            self.fill().await?;
        }
    }

    async fn fill(&mut self) -> Result<(), LinkError> {
        self.buf.reserve(READ_CHUNK);
        let buf = std::mem::take(&mut self.buf);
        let BufResult(read, buf) = (&self.stream).append(buf).await;
        self.buf = buf;
        match read? {
            0 => Err(LinkError::Closed),
            _ => Ok(()),
        }
    }
}

impl MessageSource for RespSubscriber {
    async fn next_batch(&mut self, out: &mut Vec<Bytes>) -> Result<(), LinkError> {
        let start = out.len();
        loop {
            while let Some((frame, _, _)) = decode_bytes_mut(&mut self.buf)? {
                // ["message", channel, payload]; anything else (a late confirmation) is skipped.
                if let BytesFrame::Array(mut items) = frame
                    && items.len() == 3
                    && is_kind(&items, b"message")
                    && let Some(BytesFrame::BulkString(payload)) = items.pop()
                {
                    out.push(payload);
                }
            }
            if out.len() > start {
                return Ok(());
            }
            self.fill().await?;
        }
    }
}

fn is_kind(items: &[BytesFrame], kind: &[u8]) -> bool {
    matches!(items.first(), Some(BytesFrame::BulkString(k)) if k.as_ref() == kind)
}
