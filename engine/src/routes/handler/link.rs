//! The two bounded queues between a connection's pump (the engine side: reads, protections,
//! writes) and its handler task, and the wake-ups between them. Both sides live on the same
//! worker thread; nothing here is shared across threads.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::task::{Context, Poll, Waker};

use bytes::BytesMut;

use ringstream_protocol::ws::{OpCode, write_frame_header};

use super::message::{Closed, Message};

/// Most messages queued for a handler, whatever their size.
const INBOUND_MESSAGES: usize = 256;

/// What the pump must act on, besides the socket.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Signal {
    /// The handler queued frames: write them.
    Outbound,
    /// The handler asked to close with this code and reason.
    Close(u16, String),
    /// The handler's [`super::WebSocket`] is gone; close with this code (1000, or 1011 when the
    /// handler panicked).
    HandlerGone(u16),
    /// The handler made room in the inbound queue: reading may resume.
    Room,
}

/// The state shared by one connection's pump and handler.
#[derive(Debug)]
pub(crate) struct Link {
    state: RefCell<State>,
}

#[derive(Debug)]
struct State {
    inbound: VecDeque<Message>,
    inbound_bytes: usize,
    /// Reading pauses once this many payload bytes wait for the handler (one message of any
    /// allowed size always fits in an empty queue).
    inbound_limit: usize,
    /// Where received payloads are copied; its memory is reused once the handler has dropped
    /// the messages cut from it, so a steady stream of messages allocates nothing.
    arena: BytesMut,
    /// Encoded server frames waiting to be written.
    outbound: Vec<u8>,
    /// The buffer of the previous write, kept for the next swap with `outbound`.
    spare: Vec<u8>,
    /// Messages in `outbound`.
    outbound_messages: u64,
    /// `send` waits while this many bytes are queued.
    outbound_limit: usize,
    close_request: Option<(u16, String)>,
    handler_gone: Option<u16>,
    /// Set when the pump has finished: the code the connection ended with.
    closed: Option<u16>,
    pump: Option<Waker>,
    receiver: Option<Waker>,
    /// Every task waiting in `send` (the handler and the [`super::WsSender`]s it handed out).
    senders: Vec<Waker>,
}

impl State {
    /// Whether the handler has as much waiting as it may have.
    fn inbound_full(&self) -> bool {
        self.inbound.len() >= INBOUND_MESSAGES || self.inbound_bytes >= self.inbound_limit
    }
}

impl Link {
    /// A link whose inbound queue pauses reading at `inbound_limit` bytes and whose outbound
    /// queue makes `send` wait at `outbound_limit` bytes.
    pub(crate) fn new(inbound_limit: usize, outbound_limit: usize) -> Self {
        Self {
            state: RefCell::new(State {
                inbound: VecDeque::new(),
                inbound_bytes: 0,
                inbound_limit,
                arena: BytesMut::new(),
                outbound: Vec::new(),
                spare: Vec::new(),
                outbound_messages: 0,
                outbound_limit,
                close_request: None,
                handler_gone: None,
                closed: None,
                pump: None,
                receiver: None,
                senders: Vec::new(),
            }),
        }
    }

    // The pump's side.

    /// Whether the handler has as much as it may have waiting: the pump stops reading.
    pub(crate) fn inbound_full(&self) -> bool {
        self.state.borrow().inbound_full()
    }

    /// Hands a message that passed every protection to the handler (its payload is copied).
    pub(crate) fn deliver(&self, text: bool, payload: &[u8]) {
        let waker = {
            let mut state = self.state.borrow_mut();
            state.arena.reserve(payload.len());
            state.arena.extend_from_slice(payload);
            let message = Message::received(text, state.arena.split().freeze());
            state.inbound_bytes += message.len();
            state.inbound.push_back(message);
            state.receiver.take()
        };
        wake(waker);
    }

    /// Moves the handler's queued frames to the end of `out`; returns how many messages they
    /// hold.
    pub(crate) fn take_outbound(&self, out: &mut Vec<u8>) -> u64 {
        let (wakers, messages) = {
            let mut state = self.state.borrow_mut();
            let messages = std::mem::take(&mut state.outbound_messages);
            if out.is_empty() {
                std::mem::swap(out, &mut state.outbound);
                state.outbound = std::mem::take(&mut state.spare);
            } else {
                out.extend_from_slice(&state.outbound);
                state.outbound.clear();
            }
            (std::mem::take(&mut state.senders), messages)
        };
        wakers.into_iter().for_each(Waker::wake);
        messages
    }

    /// Keeps a written frame buffer for the next swap (the larger of it and the one kept).
    pub(crate) fn recycle_outbound(&self, mut frames: Vec<u8>) {
        let mut state = self.state.borrow_mut();
        if state.closed.is_none() && frames.capacity() > state.spare.capacity() {
            frames.clear();
            state.spare = frames;
        }
    }

    /// What the pump must do next, if anything; `paused` says whether it waits for room in the
    /// inbound queue.
    pub(crate) fn poll_signal(&self, cx: &mut Context<'_>, paused: bool) -> Poll<Signal> {
        let mut state = self.state.borrow_mut();
        if let Some((code, reason)) = state.close_request.take() {
            return Poll::Ready(Signal::Close(code, reason));
        }
        if !state.outbound.is_empty() {
            return Poll::Ready(Signal::Outbound);
        }
        if let Some(code) = state.handler_gone {
            return Poll::Ready(Signal::HandlerGone(code));
        }
        if paused && !state.inbound_full() {
            return Poll::Ready(Signal::Room);
        }
        match &state.pump {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            _ => state.pump = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// The connection has ended with `code`: the handler's `recv` returns what is left, then
    /// `None`; `send` fails.
    pub(crate) fn finish(&self, code: u16) {
        let wakers = {
            let mut state = self.state.borrow_mut();
            state.closed.get_or_insert(code);
            state.outbound = Vec::new();
            state.spare = Vec::new();
            let mut wakers = std::mem::take(&mut state.senders);
            wakers.extend(state.receiver.take());
            wakers
        };
        wakers.into_iter().for_each(Waker::wake);
    }

    // The handler's side.

    /// The next message, `None` once the connection has ended and the queue is empty.
    pub(crate) fn poll_recv(&self, cx: &mut Context<'_>) -> Poll<Option<Message>> {
        let mut state = self.state.borrow_mut();
        let was_full = state.inbound_full();
        if let Some(message) = state.inbound.pop_front() {
            state.inbound_bytes -= message.len();
            // Only a full queue can have paused the pump; otherwise it need not be woken.
            let waker = if was_full { state.pump.take() } else { None };
            drop(state);
            wake(waker);
            return Poll::Ready(Some(message));
        }
        if state.closed.is_some() {
            return Poll::Ready(None);
        }
        state.receiver = Some(cx.waker().clone());
        Poll::Pending
    }

    /// Queues `message` as one frame once there is room; fails once the connection has ended.
    pub(crate) fn poll_send(
        &self,
        cx: &mut Context<'_>,
        message: &Message,
    ) -> Poll<Result<(), Closed>> {
        if self.is_closing() {
            return Poll::Ready(Err(Closed));
        }
        let mut state = self.state.borrow_mut();
        // A message larger than the limit is accepted into an empty queue.
        if !state.outbound.is_empty() && state.outbound.len() >= state.outbound_limit {
            if !state.senders.iter().any(|w| w.will_wake(cx.waker())) {
                state.senders.push(cx.waker().clone());
            }
            return Poll::Pending;
        }
        let opcode = if message.is_text() {
            OpCode::Text
        } else {
            OpCode::Binary
        };
        write_frame_header(&mut state.outbound, opcode, true, message.len() as u64);
        state.outbound.extend_from_slice(message.data());
        state.outbound_messages += 1;
        let waker = state.pump.take();
        drop(state);
        wake(waker);
        Poll::Ready(Ok(()))
    }

    /// Asks the pump to close with `code` and `reason` (ignored once closing has begun).
    pub(crate) fn request_close(&self, code: u16, reason: String) {
        let waker = {
            let mut state = self.state.borrow_mut();
            if state.closed.is_some() || state.close_request.is_some() {
                return;
            }
            state.close_request = Some((code, reason));
            state.pump.take()
        };
        wake(waker);
    }

    /// The handler dropped its end: the pump closes with `code` once queued frames are out.
    pub(crate) fn handler_gone(&self, code: u16) {
        let waker = {
            let mut state = self.state.borrow_mut();
            state.handler_gone = Some(code);
            state.pump.take()
        };
        wake(waker);
    }

    /// Ready with the code the connection ended with, once it has.
    pub(crate) fn poll_closed(&self, cx: &mut Context<'_>) -> Poll<u16> {
        let mut state = self.state.borrow_mut();
        match state.closed {
            Some(code) => Poll::Ready(code),
            None => {
                state.receiver = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }

    /// Whether the connection has ended or is closing: nothing more can be sent.
    pub(crate) fn is_closing(&self) -> bool {
        let state = self.state.borrow();
        state.closed.is_some() || state.close_request.is_some() || state.handler_gone.is_some()
    }

    /// The code the connection ended with, if it has.
    pub(crate) fn close_code(&self) -> Option<u16> {
        self.state.borrow().closed
    }
}

/// Wakes `waker`, if there is one (called outside the state's borrow).
fn wake(waker: Option<Waker>) {
    if let Some(waker) = waker {
        waker.wake();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    fn cx() -> Context<'static> {
        Context::from_waker(Waker::noop())
    }

    fn text(s: &str) -> Message {
        Message::text(s)
    }

    #[test]
    fn messages_reach_the_handler_in_order_then_none_after_finish() {
        let link = Link::new(1024, 1024);
        link.deliver(true, b"a");
        link.deliver(true, b"b");
        link.finish(1000);
        assert_eq!(link.poll_recv(&mut cx()), Poll::Ready(Some(text("a"))));
        assert_eq!(link.poll_recv(&mut cx()), Poll::Ready(Some(text("b"))));
        assert_eq!(link.poll_recv(&mut cx()), Poll::Ready(None));
        assert_eq!(link.close_code(), Some(1000));
    }

    #[test]
    fn the_inbound_queue_fills_by_bytes_or_count_and_room_wakes_the_pump() {
        let link = Link::new(10, 1024);
        link.deliver(false, &[0; 6]);
        assert!(!link.inbound_full());
        link.deliver(false, &[0; 6]);
        assert!(link.inbound_full());
        assert!(link.poll_signal(&mut cx(), true).is_pending());
        assert!(link.poll_recv(&mut cx()).is_ready());
        assert_eq!(link.poll_signal(&mut cx(), true), Poll::Ready(Signal::Room));
        // Not paused: room is no news.
        assert!(link.poll_signal(&mut cx(), false).is_pending());

        let many = Link::new(usize::MAX, 1024);
        for _ in 0..INBOUND_MESSAGES {
            assert!(!many.inbound_full());
            many.deliver(true, b"");
        }
        assert!(many.inbound_full());
    }

    #[test]
    fn send_encodes_one_frame_and_waits_past_the_backpressure_limit() {
        let link = Link::new(1024, 8);
        assert_eq!(link.poll_send(&mut cx(), &text("hi")), Poll::Ready(Ok(())));
        assert_eq!(
            link.poll_signal(&mut cx(), false),
            Poll::Ready(Signal::Outbound)
        );
        // A message bigger than the limit is accepted into an empty queue only.
        assert_eq!(
            link.poll_send(&mut cx(), &Message::binary(vec![7; 20])),
            Poll::Ready(Ok(()))
        );
        assert!(link.poll_send(&mut cx(), &text("x")).is_pending());
        let mut out = Vec::new();
        link.take_outbound(&mut out);
        assert_eq!(&out[..4], &[0x81, 2, b'h', b'i']);
        assert_eq!(&out[4..6], &[0x82, 20]);
        assert_eq!(out.len(), 26);
        assert_eq!(link.poll_send(&mut cx(), &text("x")), Poll::Ready(Ok(())));
    }

    #[test]
    fn after_the_end_sends_fail_and_queued_frames_are_dropped() {
        let link = Link::new(1024, 1024);
        assert!(link.poll_send(&mut cx(), &text("late")).is_ready());
        link.finish(1006);
        assert_eq!(
            link.poll_send(&mut cx(), &text("x")),
            Poll::Ready(Err(Closed))
        );
        let mut out = Vec::new();
        link.take_outbound(&mut out);
        assert!(out.is_empty());
        // The first end is the one reported.
        link.finish(1000);
        assert_eq!(link.close_code(), Some(1006));
        assert_eq!(link.poll_closed(&mut cx()), Poll::Ready(1006));
    }

    #[test]
    fn a_close_request_comes_before_queued_frames_and_stops_further_sends() {
        let link = Link::new(1024, 1024);
        assert!(link.poll_send(&mut cx(), &text("last words")).is_ready());
        link.request_close(4000, "bye".into());
        assert_eq!(
            link.poll_send(&mut cx(), &text("x")),
            Poll::Ready(Err(Closed))
        );
        assert_eq!(
            link.poll_signal(&mut cx(), false),
            Poll::Ready(Signal::Close(4000, "bye".into()))
        );
        // The pump writes the queued frames before the close frame.
        let mut out = Vec::new();
        link.take_outbound(&mut out);
        assert_eq!(out.len(), 12);
        link.handler_gone(1000);
        assert_eq!(
            link.poll_signal(&mut cx(), false),
            Poll::Ready(Signal::HandlerGone(1000))
        );
    }
}
