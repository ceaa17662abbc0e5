//! The handler's end of a WebSocket connection.

use std::future::poll_fn;
use std::rc::Rc;

use ringstream_protocol::ws::{close_code, is_sendable_close_code};

use super::head::RequestHead;
use super::link::Link;
use super::message::{CloseError, Closed, Message};

/// Longest close reason: a close frame's payload is at most 125 bytes, two of them the code.
const MAX_REASON: usize = 123;

/// One WebSocket connection as its handler sees it. Dropping it closes the connection with
/// 1000 (or 1011 if the handler panicked) once queued messages are written.
#[derive(Debug)]
pub struct WebSocket {
    link: Rc<Link>,
    head: RequestHead,
}

impl WebSocket {
    pub(crate) fn new(link: Rc<Link>, head: RequestHead) -> Self {
        Self { link, head }
    }

    /// The upgrade request: path, query, headers, peer address, subprotocol.
    pub fn request(&self) -> &RequestHead {
        &self.head
    }

    /// The next message from the client; `None` once the connection has ended (the client
    /// closed, a protection closed it, the server drains, or it failed) and every message
    /// received before that was returned. Cancel-safe: a message is taken only when this
    /// returns it, so it can sit in a `select` beside other work.
    pub async fn recv(&mut self) -> Option<Message> {
        poll_fn(|cx| self.link.poll_recv(cx)).await
    }

    /// Queues `message` for the client. Waits while `max_backpressure` bytes are already
    /// queued (a client that does not read slows its handler down, and `send_timeout` closes
    /// it). Cancel-safe: a message is queued whole or not at all.
    pub async fn send(&mut self, message: impl Into<Message>) -> Result<(), Closed> {
        send(&self.link, message.into()).await
    }

    /// A handle that sends to this client from another task of the same worker (a task that
    /// forwards a room's messages while the handler waits in `recv`). It does not keep the
    /// connection open: once the handler drops its `WebSocket`, sends fail with [`Closed`].
    pub fn sender(&self) -> WsSender {
        WsSender {
            link: Rc::clone(&self.link),
        }
    }

    /// Closes the connection with `code` and `reason` (cut to 123 bytes on a character
    /// boundary) after the messages already queued, and waits until the engine has taken the
    /// close over: from then on `recv` returns `None`, and messages the client still sends are
    /// dropped while the engine waits (up to two seconds) for its close frame. Closing a
    /// connection that has already ended does nothing.
    pub async fn close(&mut self, code: u16, reason: &str) -> Result<(), CloseError> {
        if !is_sendable_close_code(code) {
            return Err(CloseError::InvalidCode(code));
        }
        let mut end = reason.len().min(MAX_REASON);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        self.link.request_close(code, reason[..end].to_owned());
        poll_fn(|cx| self.link.poll_closed(cx)).await;
        Ok(())
    }

    /// How the connection ended, once it has: the code of the close frame the server sent or
    /// received, 1005 if the client's close carried none, 1006 if the connection was lost.
    pub fn close_code(&self) -> Option<u16> {
        self.link.close_code()
    }
}

/// Sends to one client from any task of its worker; see [`WebSocket::sender`].
#[derive(Debug, Clone)]
pub struct WsSender {
    link: Rc<Link>,
}

impl WsSender {
    /// Queues `message` for the client, like [`WebSocket::send`].
    pub async fn send(&self, message: impl Into<Message>) -> Result<(), Closed> {
        send(&self.link, message.into()).await
    }

    /// Whether the connection has ended (or is closing): every send would fail.
    pub fn is_closed(&self) -> bool {
        self.link.is_closing()
    }
}

async fn send(link: &Link, message: Message) -> Result<(), Closed> {
    poll_fn(|cx| link.poll_send(cx, &message)).await
}

impl Drop for WebSocket {
    fn drop(&mut self) {
        let code = if std::thread::panicking() {
            close_code::INTERNAL_ERROR
        } else {
            close_code::NORMAL
        };
        self.link.handler_gone(code);
    }
}
