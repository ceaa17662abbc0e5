//! One WebSocket connection after the 101: frames in, protections checked, answers out.
//!
//! The read buffer is parsed in place by the protocol crate's [`Session`]: a payload is
//! unmasked where it landed and, for the echo route, copied once into the write batch behind a
//! server frame header. The frame-size checks happen on the header, before the payload is
//! buffered. One read stays pending across heartbeats (it is never cancelled while the
//! connection lives); the connection table's deadline wakes the loop for the next ping, the
//! idle timeout and the drain.
//!
//! On a handler route the same loop is the connection's pump: whole messages that passed the
//! protections go to the handler's inbound queue instead of back to the client, and the wait
//! for the socket also wakes for what the handler queued (see [`crate::routes::handler`]). On a
//! broadcast route each message is published to the connection's topic, and the wait also
//! wakes for the frames other members published, which leave in one vectored write (see
//! [`crate::routes::broadcast`]). On a sink route messages are only counted and, with a sink file,
//! encoded as JSON lines and queued for the file's writer thread once per read; reading
//! pauses while the writer is behind (see [`crate::routes::sink::file`]).

mod frames;
mod roles;
mod write;

use std::borrow::Cow;
use std::cell::Cell;
use std::future::poll_fn;
use std::net::{IpAddr, Ipv4Addr};
use std::pin::pin;
use std::rc::Rc;

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::future::{Either, select};

use ringstream_limits::client_table::Rule;
use ringstream_protocol::ws::session::{Event, Payload, Session, SessionLimits};
use ringstream_protocol::ws::{OpCode, close_code, write_close_frame, write_frame_header};

use crate::config::{LimitMode, OnLimit, Route, RouteKind, WsLimits};
use crate::protections::frame_quotas::{FrameRates, close_reason};
use crate::protections::gate::ClientSlot;
use crate::routes::broadcast::{Membership, encode_frame};
use crate::routes::echo::in_place::{InPlaceEchoes, rewrite_in_place};
use crate::routes::handler::{Link, RequestHead, Signal, WebSocket};
use crate::routes::sink::file::{SinkWriter, encode_line};
use crate::server::context::WorkerContext;
use crate::server::metrics::Traffic;
use crate::server::registry::{Activity, ConnGuard};
use crate::server::transport::Transport;

/// Least read buffer of a WebSocket connection (it inherits the HTTP one, which is small
/// because an idle connection keeps it); it grows to hold the largest frame seen (at most
/// `max_message_size` plus a header).
const INITIAL_BUFFER: usize = 512;
/// The read buffer doubles after a read that filled it (the client had more to say), up to
/// this size; beyond it, only a single larger frame grows it.
const BURST_BUFFER: usize = 64 * 1024;
/// Most echoes of one read written in place (one vectored write, far below `IOV_MAX`); the
/// rest of the read's echoes are copied into the write batch.
const MAX_IN_PLACE: usize = 64;
/// Least payload of echoes gathered from the read buffer into one vectored write; smaller
/// ones are copied into the write batch.
const MIN_GATHERED: usize = 4096;
/// How long the server waits for the client's close frame after sending its own.
const CLOSE_WAIT: Duration = Duration::from_secs(2);
/// Close reason of the idle timeout (PROTECTIONS.md).
const IDLE_REASON: &str = "idle timeout";
/// Close reason of the drain.
const DRAIN_REASON: &str = "server shutting down";
/// Close reason of `slow_consumer = "close"` (PROTECTIONS.md).
const SLOW_CONSUMER_REASON: &str = "slow consumer";
/// How often a sink connection looks again whether the file's writer has caught up.
const SINK_RETRY: Duration = Duration::from_millis(5);
/// Most broadcast frames gathered into one write (well under the kernel's `IOV_MAX`).
const MAX_FRAMES_PER_WRITE: usize = 256;

/// What a WebSocket route's connection brings from its upgrade.
#[derive(Debug)]
pub enum Attachment {
    /// Nothing: an echo route.
    None,
    /// A handler route: the request head the handler is given.
    Handler(Box<RequestHead>),
    /// A broadcast route: the connection's place in its topic, taken before the 101.
    Broadcast(Membership),
}

/// What the connection does with the messages it receives, besides the protections.
enum Role {
    /// Sends them back.
    Echo,
    /// Hands them to a handler task, and writes what it queues.
    Handler(Rc<Link>),
    /// Publishes them to a topic, and writes what the topic's members publish.
    Broadcast(Box<BroadcastMember>),
    /// Counts them, and appends them to the route's sink file if it has one.
    Sink(Box<SinkMember>),
}

/// A sink connection's lines of the current read.
struct SinkMember {
    /// Whether the route has a sink file (its writer is in the route's shared state).
    to_file: bool,
    /// Named in each line.
    peer: IpAddr,
    /// Lines encoded since the last hand-over to the writer.
    lines: Vec<u8>,
}

/// A broadcast connection's membership and its write batch.
struct BroadcastMember {
    membership: Membership,
    echo_to_sender: bool,
    /// The frames of the write in progress (kept for its allocation).
    batch: Cell<Vec<Bytes>>,
}

/// How the connection ends.
#[derive(Debug)]
enum End {
    /// Send a close frame with this code and reason, wait briefly for the client's, close.
    Close(u16, Cow<'static, str>),
    /// The client broke the protocol (1002, 1007, 1009): send a close frame with this code
    /// and reason and close the TCP connection, reading nothing more of what the client sends
    /// (RFC 6455 §7.1.7: _Fail the WebSocket Connection_).
    Fail(u16, Cow<'static, str>),
    /// The client sent a close frame with this code (1005 for none); the answer is queued:
    /// send it, then close.
    Answered(u16),
    /// The client vanished or stopped reading: close the socket.
    Gone,
}

/// Serves a WebSocket route on `io` after the 101 was sent: echo, or the pump of a handler
/// route (which starts the handler with `head`). `client` is the admitted client (its rates
/// span its connections). `buf[pos..]` holds bytes the client sent right after its handshake.
#[allow(
    clippy::too_many_arguments,
    reason = "the whole state of an upgraded connection"
)]
pub fn serve<T: Transport>(
    guard: ConnGuard,
    io: T,
    ctx: Rc<WorkerContext>,
    route_index: usize,
    attachment: Attachment,
    client: Option<ClientSlot>,
    mut buf: Vec<u8>,
    pos: usize,
) -> impl Future<Output = ()> {
    // Set up here and not in an `async fn`: an `async fn` moves its arguments into locals of
    // its future and keeps both, and every open WebSocket keeps that future. The block below
    // captures the connection once and lends it to `serve`.
    guard.set_activity(Activity::WebSocket);
    buf.drain(..pos);
    // The HTTP phase's buffer is larger than an idle WebSocket needs: it grows again with the
    // first frame that needs more (BENCHMARKS.md, idle memory).
    buf.shrink_to(INITIAL_BUFFER);
    buf.reserve(INITIAL_BUFFER.saturating_sub(buf.len()));
    let route = &ctx.router.routes()[route_index];
    let role = match (&route.kind, attachment) {
        (RouteKind::Handler { handler, .. }, Attachment::Handler(head)) => {
            let inbound_limit = usize::try_from(route.ws.max_message_size).unwrap_or(usize::MAX);
            let link = Rc::new(Link::new(inbound_limit, route.ws.max_backpressure));
            handler.start(WebSocket::new(Rc::clone(&link), *head));
            Role::Handler(link)
        }
        (RouteKind::Broadcast { echo_to_sender, .. }, Attachment::Broadcast(membership)) => {
            Role::Broadcast(Box::new(BroadcastMember {
                membership,
                echo_to_sender: *echo_to_sender,
                batch: Cell::new(Vec::new()),
            }))
        }
        (RouteKind::Sink { .. }, _) => Role::Sink(Box::new(SinkMember {
            to_file: ctx
                .routes
                .get(route_index)
                .is_some_and(|state| state.sink.is_some()),
            peer: client
                .as_ref()
                .map(ClientSlot::address)
                .or_else(|| io.peer_addr().ok().map(|a| a.ip()))
                .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
            lines: Vec::new(),
        })),
        _ => Role::Echo,
    };
    let mut conn = WsConnection {
        guard,
        io,
        session: Session::new(SessionLimits {
            max_message_size: route.ws.max_message_size,
            max_fragments: route.ws.max_fragments,
        }),
        rates: FrameRates::new(&route.ws),
        // Echoes leave from the read buffer; the batch is only for pings, pongs and pipelined
        // messages, so it is allocated when first needed.
        out: Vec::new(),
        in_place: InPlaceEchoes::default(),
        send_timeout: route.limits.send_timeout,
        role,
        check_client_rates: ctx.gate.has_frame_rates(),
        client,
        route_index,
        ctx,
    };
    async move { conn.serve(buf).await }
}

// `repr(C)`: fields in the order written, those every message touches first, so that what a
// message reads of the connection sits in its first cache lines rather than across all of
// them (BENCHMARKS.md, 500 connections).
#[repr(C)]
struct WsConnection<T> {
    /// Declared before `io` so that it drops first (see `registry`).
    guard: ConnGuard,
    io: T,
    ctx: Rc<WorkerContext>,
    /// Frames waiting to be written.
    out: Vec<u8>,
    /// Echoes rewritten in place in the read buffer, to be sent from there (the turbo path).
    /// They are written before `out`, and none is added once `out` holds something.
    in_place: InPlaceEchoes,
    /// Echo, handler pump or broadcast member.
    role: Role,
    route_index: usize,
    /// Whether per-client frame rates are configured (frames are checked against them).
    check_client_rates: bool,
    rates: FrameRates,
    session: Session,
    /// The route's `send_timeout`.
    send_timeout: Duration,
    /// The admitted client: holds its place in the client's connection count until the end.
    client: Option<ClientSlot>,
}

impl<T> Drop for WsConnection<T> {
    /// A pump that ends on any path (even dropped mid-await) releases its handler.
    fn drop(&mut self) {
        if let Some(link) = self.link() {
            link.finish(close_code::ABNORMAL);
        }
    }
}

/// What a wait on the socket ended with.
enum Woke<R> {
    /// The read completed.
    Read(R),
    /// The handler needs the pump.
    Handler(Signal),
    /// Broadcast frames wait to be written (or the member must be closed).
    Frames,
    /// The deadline passed (next ping, idle timeout) or the drain woke the connection.
    Deadline,
}

impl<T> WsConnection<T> {
    /// On a handler route: the queues to and from the handler.
    fn link(&self) -> Option<&Rc<Link>> {
        match &self.role {
            Role::Handler(link) => Some(link),
            Role::Echo | Role::Broadcast(_) | Role::Sink(_) => None,
        }
    }
}

impl<T: Transport> WsConnection<T> {
    /// The connection from its first frame to its end.
    async fn serve(&mut self, buf: Vec<u8>) {
        let ctx = Rc::clone(&self.ctx);
        let route = &ctx.router.routes()[self.route_index];
        let end = self.run(route, buf).await;
        // Lines of the last read are kept whatever ended the connection.
        self.hand_over_sink_lines();
        // The handler learns at once that nothing more will arrive or leave.
        if let Some(link) = self.link() {
            link.finish(match &end {
                End::Close(code, _) | End::Fail(code, _) | End::Answered(code) => *code,
                End::Gone => close_code::ABNORMAL,
            });
        }
        match end {
            End::Close(code, reason) => {
                self.ctx.counters().closes.count(code);
                self.close(code, &reason).await;
            }
            End::Fail(code, reason) => {
                self.ctx.counters().closes.count(code);
                self.fail(code, &reason).await;
            }
            End::Answered(_) => {
                // RFC 6455 §7.1.1: after the close handshake the server closes the TCP
                // connection.
                if self.flush().await.is_ok() {
                    let _ = self.io.shutdown_write().await;
                }
            }
            End::Gone => {}
        }
    }

    async fn run(&mut self, route: &Route, mut buf: Vec<u8>) -> End {
        let limits = &route.ws;
        let prefix: &[u8] = match &route.kind {
            RouteKind::Echo {
                response_prefix, ..
            } => response_prefix,
            _ => &[],
        };
        let mut last_heard = Instant::now();
        let mut next_ping = last_heard + limits.heartbeat_interval;
        let mut pos = 0;
        // Whether the last read filled the buffer's spare room: more was waiting.
        let mut filled = false;
        loop {
            // Everything buffered is answered before waiting for more.
            if let Some(end) = self.process(&mut buf, &mut pos, prefix, route) {
                return end;
            }
            if !self.in_place.is_empty() {
                let deadline = Instant::now() + self.send_timeout;
                // A lone echo is one plain write; several are one vectored write.
                let written = if let Some(frame) = self.in_place.take_one() {
                    let write = self.io.write_range(buf, frame);
                    self.guard.within(deadline, write).await
                } else {
                    let write = self.io.write_ranges(buf, self.in_place.take_many());
                    let written = self.guard.within(deadline, write).await;
                    written.map(|(result, returned, ranges)| {
                        self.in_place.restore(ranges);
                        (result, returned)
                    })
                };
                match written {
                    Some((Ok(()), returned)) => buf = returned,
                    _ => return End::Gone,
                }
            }
            // Tested here too: a lone echo leaves in place, and `flush` is not even entered.
            if !self.out.is_empty()
                && let Err(end) = self.flush().await
            {
                return end;
            }
            buf.drain(..pos);
            pos = 0;
            self.hand_over_sink_lines();
            if let Some(writer) = self.sink_writer()
                && !writer.has_room()
            {
                let wait = Box::pin(self.wait_for_sink(writer, limits, &mut next_ping));
                if let Err(end) = wait.await {
                    return end;
                }
                last_heard = Instant::now();
            }
            if let Some(link) = self.link().cloned()
                && link.inbound_full()
            {
                // Boxed, like `on_signal` below: handler-only states stay out of the future
                // every echo connection keeps while it idles (BENCHMARKS.md, idle memory).
                let wait = Box::pin(self.wait_for_room(&link, limits, &mut next_ping));
                if let Err(end) = wait.await {
                    return end;
                }
                // Nothing was read while the handler was behind: the client was not idle.
                last_heard = Instant::now();
                continue;
            }
            let want = self.session.bytes_needed(&buf);
            if buf.capacity() < want {
                buf.reserve(want - buf.len());
            } else if buf.len() == buf.capacity() || (filled && buf.capacity() < BURST_BUFFER) {
                // Pipelined messages are read, answered and written in batches rather than
                // a buffer's worth at a time. The capacity doubles: `reserve` counts from the
                // length, which is 0 when every frame of the last read was answered.
                let doubled = buf.capacity().max(INITIAL_BUFFER / 2) * 2;
                buf.reserve(doubled - buf.len());
            }
            let room = buf.capacity() - buf.len();
            let read = self.io.read_append(buf);
            let mut read = std::pin::pin!(read);
            let (result, returned) = loop {
                if self.ctx.draining.get() {
                    return End::Close(close_code::GOING_AWAY, DRAIN_REASON.into());
                }
                let idle_at = last_heard + limits.timeout;
                let wake_at = idle_at.min(next_ping);
                let woke = match &self.role {
                    Role::Echo | Role::Sink(_) => {
                        match self.guard.until(wake_at, read.as_mut()).await {
                            Some(done) => Woke::Read(done),
                            None => Woke::Deadline,
                        }
                    }
                    Role::Broadcast(member) => {
                        let member = member.membership.member();
                        let frames = poll_fn(|cx| member.poll_ready(cx));
                        let either = pin!(select(read.as_mut(), frames));
                        match self.guard.until(wake_at, either).await {
                            Some(Either::Left((done, _))) => Woke::Read(done),
                            Some(Either::Right(((), _))) => Woke::Frames,
                            None => Woke::Deadline,
                        }
                    }
                    Role::Handler(link) => {
                        let signal = poll_fn(|cx| link.poll_signal(cx, false));
                        let either = pin!(select(read.as_mut(), signal));
                        match self.guard.until(wake_at, either).await {
                            Some(Either::Left((done, _))) => Woke::Read(done),
                            Some(Either::Right((signal, _))) => Woke::Handler(signal),
                            None => Woke::Deadline,
                        }
                    }
                };
                match woke {
                    Woke::Read(done) => break done,
                    Woke::Handler(signal) => {
                        if let Err(end) = Box::pin(self.on_signal(signal)).await {
                            return end;
                        }
                        continue;
                    }
                    Woke::Frames => {
                        if let Err(end) = Box::pin(self.write_member_frames()).await {
                            return end;
                        }
                        continue;
                    }
                    Woke::Deadline => {}
                }
                let now = Instant::now();
                if now >= idle_at {
                    return End::Close(close_code::NORMAL, IDLE_REASON.into());
                }
                if now >= next_ping {
                    next_ping = now + limits.heartbeat_interval;
                    if self.ping().await.is_err() {
                        return End::Gone;
                    }
                }
            };
            buf = returned;
            match result {
                Ok(0) | Err(_) => return End::Gone,
                Ok(n) => {
                    last_heard = Instant::now();
                    filled = n == room;
                }
            }
        }
    }
}
