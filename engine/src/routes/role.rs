//! The one enum of WebSocket roles: what a connection does with the messages that passed the
//! protections, and what else it waits for besides its socket. The frame loop (`conn::ws`)
//! reads, enforces the protections, answers pings and echoes, and writes; a role is handed
//! whole messages, and writes through its connection's [`RoleIo`]. Each role's own code lives
//! in its route's folder.

use std::borrow::Cow;
use std::net::IpAddr;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use crate::config::Route;
use crate::routes::broadcast::Membership;
use crate::routes::broadcast::member::BroadcastMember;
use crate::routes::handler::{Link, RequestHead, Signal, WebSocket, WsHandler};
use crate::routes::sink::member::SinkMember;
use crate::routes::state::RouteState;
use crate::server::context::WorkerContext;
use crate::server::registry::ConnGuard;
use crate::server::transport::Transport;

/// What a WebSocket connection brings from its upgrade to its role.
#[derive(Debug)]
pub enum Attachment {
    /// An echo route.
    Echo,
    /// A sink route.
    Sink,
    /// A handler route: the handler, and the request head it is given.
    Handler(WsHandler, Box<RequestHead>),
    /// A broadcast route: the connection's place in its topic, taken before the 101, and
    /// whether it also receives its own messages.
    Broadcast(Membership, bool),
}

/// What a WebSocket connection does with the messages it receives, besides the protections.
#[derive(Debug)]
pub enum Role {
    /// Sends them back (the frame loop answers them in place).
    Echo,
    /// Hands them to a handler task, and writes what it queues (`routes/handler/pump.rs`).
    Handler(Rc<Link>),
    /// Publishes them to a topic, and writes what the topic's members publish
    /// (`routes/broadcast/member.rs`).
    Broadcast(Box<BroadcastMember>),
    /// Counts them, and appends them to the route's sink file if it has one
    /// (`routes/sink/member.rs`).
    Sink(Box<SinkMember>),
}

/// What a role's wait beside the socket brought.
#[derive(Debug)]
pub enum Wake {
    /// The handler needs the pump.
    Handler(Signal),
    /// Broadcast frames wait to be written (or the member must be closed).
    Frames,
}

/// How a role ends its connection.
#[derive(Debug)]
pub enum RoleEnd {
    /// Send a close frame with this code and reason, then close.
    Close(u16, Cow<'static, str>),
    /// The client vanished or stopped reading: close the socket.
    Gone,
}

/// What a role may use of its connection: the stream, the deadlines, the counters, and the
/// loop's own writes and heartbeat.
#[allow(async_fn_in_trait)]
pub trait RoleIo {
    /// The connection's stream.
    type Io: Transport;
    /// The stream.
    fn io(&self) -> &Self::Io;
    /// The connection's place in the worker's registry (deadline waits).
    fn guard(&self) -> &ConnGuard;
    /// The route's `send_timeout`.
    fn send_timeout(&self) -> Duration;
    /// Counts `messages` in `bytes` of frames sent to the client (the route's counters, and
    /// the session's access log line).
    fn count_out(&self, messages: u64, bytes: usize);
    /// Writes encoded frames within `send_timeout`; gives the buffer back.
    async fn send(&self, frames: Vec<u8>) -> Result<Vec<u8>, ()>;
    /// The drain check, then the heartbeat: ends the connection with 1001 when the server
    /// drains; sends a ping and moves `next_ping` on when it is due.
    async fn keep_alive(&self, next_ping: &mut Instant) -> Result<(), RoleEnd>;
}

impl Role {
    /// The role of a connection on `route` with what it brought from its upgrade; a handler is
    /// started here, on this worker. `peer` names a sink's client in its lines.
    pub fn start(
        route: &Route,
        state: Option<&RouteState>,
        attachment: Attachment,
        peer: impl FnOnce() -> IpAddr,
    ) -> Self {
        match attachment {
            Attachment::Echo => Self::Echo,
            Attachment::Sink => Self::Sink(Box::new(SinkMember::new(
                state.is_some_and(|state| state.sink.is_some()),
                peer(),
            ))),
            Attachment::Handler(handler, head) => {
                let inbound_limit =
                    usize::try_from(route.ws.max_message_size).unwrap_or(usize::MAX);
                let link = Rc::new(Link::new(inbound_limit, route.ws.max_backpressure));
                handler.start(WebSocket::new(Rc::clone(&link), *head));
                Self::Handler(link)
            }
            Attachment::Broadcast(membership, echo_to_sender) => {
                Self::Broadcast(Box::new(BroadcastMember::new(membership, echo_to_sender)))
            }
        }
    }

    /// On a handler route: the queues to and from the handler.
    pub fn link(&self) -> Option<&Rc<Link>> {
        match self {
            Self::Handler(link) => Some(link),
            Self::Echo | Self::Broadcast(_) | Self::Sink(_) => None,
        }
    }

    /// Whether the role takes no more messages for now (a handler behind): the loop reads
    /// nothing more until it has room.
    pub fn is_full(&self) -> bool {
        self.link().is_some_and(|link| link.inbound_full())
    }

    /// Takes a whole message that passed the protections (not called for echo, which the
    /// loop answers itself).
    pub fn take_message(
        &mut self,
        ctx: &WorkerContext,
        text: bool,
        body: &[u8],
        unix_ms: impl FnOnce() -> u64,
    ) {
        match self {
            Self::Echo => {}
            Self::Handler(link) => link.deliver(text, body),
            Self::Broadcast(member) => member.publish(ctx, text, body),
            Self::Sink(sink) => sink.encode(text, body, unix_ms),
        }
    }

    /// Polls what the role waits for besides the socket; never ready for echo and sink.
    pub fn poll_wake(&self, cx: &mut Context<'_>) -> Poll<Wake> {
        match self {
            Self::Echo | Self::Sink(_) => Poll::Pending,
            Self::Handler(link) => link.poll_signal(cx, false).map(Wake::Handler),
            Self::Broadcast(member) => member.poll_ready(cx).map(|()| Wake::Frames),
        }
    }

    /// Acts on what woke the role: writes the handler's frames or the member's.
    pub async fn on_wake<C: RoleIo>(
        &self,
        conn: &C,
        wake: Wake,
        slow_code: u16,
    ) -> Result<(), RoleEnd> {
        match (self, wake) {
            (Self::Handler(link), Wake::Handler(signal)) => {
                crate::routes::handler::pump::on_signal(conn, link, signal).await
            }
            (Self::Broadcast(member), Wake::Frames) => member.write_frames(conn, slow_code).await,
            // Each role is woken only by what its own `poll_wake` returns.
            (Self::Echo | Self::Sink(_), _)
            | (Self::Handler(_), Wake::Frames)
            | (Self::Broadcast(_), Wake::Handler(_)) => Ok(()),
        }
    }

    /// Hands a sink's lines of the last read to its file's writer.
    pub fn hand_over(&mut self, state: Option<&RouteState>) {
        if let Self::Sink(sink) = self {
            sink.hand_over(state.and_then(|state| state.sink.as_ref()));
        }
    }

    /// Whether the role can take more messages now: false while a sink's writer is behind
    /// or a handler's inbound queue is full (see [`Self::make_room`]).
    pub fn has_room(&self, state: Option<&RouteState>) -> bool {
        match self {
            Self::Echo | Self::Broadcast(_) => true,
            Self::Sink(sink) => sink.has_room(state.and_then(|state| state.sink.as_ref())),
            Self::Handler(link) => !link.inbound_full(),
        }
    }

    /// Waits until [`Self::has_room`], reading nothing meanwhile (TCP holds the client back;
    /// the heartbeat and the drain go on).
    pub async fn make_room<C: RoleIo>(
        &self,
        conn: &C,
        state: Option<&RouteState>,
        next_ping: &mut Instant,
    ) -> Result<(), RoleEnd> {
        match self {
            Self::Echo | Self::Broadcast(_) => Ok(()),
            Self::Sink(sink) => {
                let writer = state.and_then(|state| state.sink.as_ref());
                sink.wait_for_writer(conn, writer, next_ping).await
            }
            Self::Handler(link) => {
                crate::routes::handler::pump::wait_for_room(conn, link, next_ping).await
            }
        }
    }

    /// Once the connection ends with `code`: a sink's last lines go to its writer, a handler
    /// learns that nothing more will arrive or leave.
    pub fn finish(&mut self, state: Option<&RouteState>, code: u16) {
        match self {
            Self::Echo | Self::Broadcast(_) => {}
            Self::Sink(sink) => sink.hand_over(state.and_then(|state| state.sink.as_ref())),
            Self::Handler(link) => link.finish(code),
        }
    }
}
