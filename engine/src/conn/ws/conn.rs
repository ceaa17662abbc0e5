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

    /// Handles every complete frame in `buf[*pos..]`; `Some` when the connection must end.
    /// Answers keep the order of the frames they answer: echoes in place are written first,
    /// then `out`, and nothing goes in place once `out` holds something. Every ping gets its
    /// pong (Autobahn 2.10 requires it; RFC 6455 §5.5.3 would allow answering only the
    /// latest). A ping flood cannot queue pongs: nothing more is read until the answers are
    /// written, and pings count against `rate_limit`.
    fn process(
        &mut self,
        buf: &mut [u8],
        pos: &mut usize,
        prefix: &[u8],
        route: &Route,
    ) -> Option<End> {
        let end = self.process_frames(buf, pos, prefix, route);
        if end.is_some() {
            // The closing paths write `out` alone.
            self.spill_in_place(buf);
        }
        end
    }

    /// [`Self::process`] without the hand-over of the echoes in place at the end.
    fn process_frames(
        &mut self,
        buf: &mut [u8],
        pos: &mut usize,
        prefix: &[u8],
        route: &Route,
    ) -> Option<End> {
        loop {
            // A handler that is behind holds the rest until it makes room.
            if self.link().is_some_and(|link| link.inbound_full()) {
                return None;
            }
            let start = *pos;
            let (event, consumed) = match self.session.read(&mut buf[start..]) {
                Ok(Some(found)) => found,
                Ok(None) => return None,
                Err(e) => return Some(End::Fail(e.close_code(), e.reason().into())),
            };
            *pos += consumed;
            let traffic = self.traffic();
            traffic.messages_in.add(1);
            traffic.bytes_in.add(consumed as u64);
            // Every frame counts, control frames too; `bytes_per_minute` counts frame bytes.
            // A close is never dropped: it ends the connection either way.
            if !matches!(event, Event::Close { .. })
                && let Some(rule) = self.over_rate(consumed as u64, route)
            {
                match route.ws.on_limit {
                    OnLimit::Close => {
                        break Some(End::Close(close_code::POLICY, close_reason(rule).into()));
                    }
                    OnLimit::Drop => {
                        self.traffic().dropped.add(1);
                        if matches!(event, Event::Message { .. }) {
                            self.session.finish_message();
                        }
                        continue;
                    }
                }
            }
            if let Event::Message { text, payload } = &event
                && !matches!(self.role, Role::Echo)
            {
                let body = match payload {
                    Payload::InBuffer(range) => &buf[start..][range.clone()],
                    Payload::Assembled => self.session.assembled(),
                };
                match &mut self.role {
                    Role::Handler(link) => link.deliver(*text, body),
                    Role::Sink(sink) => {
                        if sink.to_file {
                            encode_line(&mut sink.lines, unix_ms(), sink.peer, *text, body);
                        }
                    }
                    Role::Broadcast(member) => {
                        let membership = &member.membership;
                        let skip = (!member.echo_to_sender).then(|| membership.key());
                        let frame = encode_frame(*text, body);
                        self.ctx.publish(membership.topic(), &frame, skip);
                    }
                    Role::Echo => {}
                }
                self.session.finish_message();
                continue;
            }
            match event {
                Event::Message {
                    text,
                    payload: Payload::InBuffer(range),
                } if prefix.is_empty()
                    && self.out.is_empty()
                    && self.joins_in_place(range.len()) =>
                {
                    let opcode = if text { OpCode::Text } else { OpCode::Binary };
                    let frame = start + range.start..start + range.end;
                    let frame = rewrite_in_place(buf, frame, opcode);
                    self.count_out(frame.len());
                    self.in_place.push(frame);
                }
                Event::Ping(range) => {
                    let payload = &buf[start..][range];
                    write_frame_header(&mut self.out, OpCode::Pong, true, payload.len() as u64);
                    self.out.extend_from_slice(payload);
                }
                Event::Message { text, payload } => {
                    if self.out.is_empty() {
                        // Small echoes leave in one plain write: those in place go first.
                        self.spill_in_place(buf);
                    }
                    let opcode = if text { OpCode::Text } else { OpCode::Binary };
                    let body: &[u8] = match payload {
                        Payload::InBuffer(range) => &buf[start..][range],
                        Payload::Assembled => self.session.assembled(),
                    };
                    let len = (prefix.len() + body.len()) as u64;
                    let before = self.out.len();
                    write_frame_header(&mut self.out, opcode, true, len);
                    self.out.extend_from_slice(prefix);
                    self.out.extend_from_slice(body);
                    self.count_out(self.out.len() - before);
                    self.session.finish_message();
                }
                Event::Close { code, reason } => {
                    // RFC 6455 §5.5.1: echo the status code; an empty close is answered empty.
                    write_close_frame(&mut self.out, code, &buf[start..][reason]);
                    return Some(End::Answered(code.unwrap_or(close_code::NO_STATUS)));
                }
                Event::Fragment | Event::Pong(_) => {}
            }
        }
    }

    /// The rate rule a frame of `bytes` breaks, if any: the connection's own quotas, then its
    /// client's across connections. Violations are logged and counted; in shadow mode the
    /// frame passes.
    fn over_rate(&mut self, bytes: u64, route: &Route) -> Option<Rule> {
        let mode = route.limits.mode;
        let address = || self.client.as_ref().map(ClientSlot::address);
        if let Err(rule) = self.rates.admit(bytes) {
            if let Some(address) = address() {
                self.ctx
                    .gate
                    .connection_violation(address, &route.path, rule, mode);
            }
            if mode == LimitMode::Enforce {
                return Some(rule);
            }
        }
        match &self.client {
            Some(client) if self.check_client_rates => {
                self.ctx.gate.check_frame(client, bytes, &route.path, mode)
            }
            _ => None,
        }
    }

    /// This connection's route counters.
    fn traffic(&self) -> &Traffic {
        self.ctx.counters().route(Some(self.route_index))
    }

    /// Counts one message of `bytes` (frame included) sent.
    fn count_out(&self, bytes: usize) {
        let traffic = self.traffic();
        traffic.messages_out.add(1);
        traffic.bytes_out.add(bytes as u64);
    }

    /// While the handler's inbound queue is full: reads nothing (TCP holds the client back),
    /// keeps the heartbeat going and serves the handler until it makes room.
    async fn wait_for_room(
        &self,
        link: &Link,
        limits: &WsLimits,
        next_ping: &mut Instant,
    ) -> Result<(), End> {
        loop {
            if self.ctx.draining.get() {
                return Err(End::Close(close_code::GOING_AWAY, DRAIN_REASON.into()));
            }
            let signal = pin!(poll_fn(|cx| link.poll_signal(cx, true)));
            match self.guard.until(*next_ping, signal).await {
                Some(Signal::Room) => return Ok(()),
                Some(signal) => self.on_signal(signal).await?,
                None if Instant::now() >= *next_ping => {
                    *next_ping = Instant::now() + limits.heartbeat_interval;
                    self.ping().await.map_err(|()| End::Gone)?;
                }
                None => {}
            }
        }
    }

    /// Hands the lines encoded so far to the sink file's writer.
    fn hand_over_sink_lines(&mut self) {
        if let Role::Sink(sink) = &mut self.role
            && !sink.lines.is_empty()
            && let Some(writer) = self
                .ctx
                .routes
                .get(self.route_index)
                .and_then(|state| state.sink.as_ref())
        {
            writer.append(std::mem::take(&mut sink.lines));
        }
    }

    /// The route's sink file writer, on a sink route with a file.
    fn sink_writer(&self) -> Option<&SinkWriter> {
        match &self.role {
            Role::Sink(sink) if sink.to_file => {
                self.ctx.routes.get(self.route_index)?.sink.as_ref()
            }
            _ => None,
        }
    }

    /// While the sink file's writer is behind: reads nothing (TCP holds the client back) and
    /// keeps the heartbeat going until the writer has room again.
    async fn wait_for_sink(
        &self,
        writer: &SinkWriter,
        limits: &WsLimits,
        next_ping: &mut Instant,
    ) -> Result<(), End> {
        while !writer.has_room() {
            if self.ctx.draining.get() {
                return Err(End::Close(close_code::GOING_AWAY, DRAIN_REASON.into()));
            }
            crate::server::runtime::sleep(SINK_RETRY).await;
            if Instant::now() >= *next_ping {
                *next_ping = Instant::now() + limits.heartbeat_interval;
                self.ping().await.map_err(|()| End::Gone)?;
            }
        }
        Ok(())
    }

    /// Acts on what the handler asked for: its queued frames are written (within
    /// `send_timeout`); a close request or a finished handler ends the connection after them.
    async fn on_signal(&self, signal: Signal) -> Result<(), End> {
        let Some(link) = self.link() else {
            return Ok(());
        };
        let mut frames = Vec::new();
        let messages = link.take_outbound(&mut frames);
        if !frames.is_empty() {
            let traffic = self.traffic();
            traffic.messages_out.add(messages);
            traffic.bytes_out.add(frames.len() as u64);
            let frames = self.send(frames).await.map_err(|()| End::Gone)?;
            link.recycle_outbound(frames);
        }
        match signal {
            Signal::Outbound | Signal::Room => Ok(()),
            Signal::Close(code, reason) => Err(End::Close(code, reason.into())),
            Signal::HandlerGone(code) => {
                let reason = if code == close_code::INTERNAL_ERROR {
                    "internal error"
                } else {
                    ""
                };
                Err(End::Close(code, reason.into()))
            }
        }
    }

    /// Writes the frames queued for this broadcast member, in batches, each within
    /// `send_timeout`. When the slow-consumer policy closes the member, the batch in flight
    /// gets [`CLOSE_WAIT`] to leave (so the close frame follows whole frames), then the
    /// connection closes with `slow_consumer_code`.
    async fn write_member_frames(&self) -> Result<(), End> {
        let Role::Broadcast(broadcast) = &self.role else {
            return Ok(());
        };
        let mut batch = broadcast.batch.take();
        let member = broadcast.membership.member();
        let code = self.ctx.router.routes()[self.route_index]
            .ws
            .slow_consumer_code;
        let slow = || End::Close(code, SLOW_CONSUMER_REASON.into());
        loop {
            if member.must_close() {
                return Err(slow());
            }
            batch.clear();
            member.take_frames(&mut batch, MAX_FRAMES_PER_WRITE);
            if batch.is_empty() {
                break;
            }
            let traffic = self.traffic();
            traffic.messages_out.add(batch.len() as u64);
            traffic
                .bytes_out
                .add(batch.iter().map(|f| f.len() as u64).sum());
            let deadline = Instant::now() + self.send_timeout;
            let mut write = pin!(self.io.write_frames(batch));
            let closed = poll_fn(|cx| member.poll_closed(cx));
            let written = match self
                .guard
                .within_pinned(deadline, pin!(select(write.as_mut(), closed)))
                .await
            {
                Some(Either::Left((written, _))) => written,
                Some(Either::Right(((), _))) => {
                    let grace = Instant::now() + CLOSE_WAIT;
                    return match self.guard.within_pinned(grace, write).await {
                        Some((Ok(()), _)) => Err(slow()),
                        _ => Err(End::Gone),
                    };
                }
                None => return Err(End::Gone),
            };
            batch = match written {
                (Ok(()), batch) => batch,
                (Err(_), _) => return Err(End::Gone),
            };
        }
        broadcast.batch.set(batch);
        Ok(())
    }

    /// Sends a heartbeat ping.
    async fn ping(&self) -> Result<(), ()> {
        let mut ping = Vec::with_capacity(2);
        write_frame_header(&mut ping, OpCode::Ping, true, 0);
        self.send(ping).await.map(drop)
    }

    /// Whether an echo of `len` payload bytes goes in place: the first of a read always (it
    /// leaves without a copy); more only while every one is large, where one vectored write
    /// beats copying them into the batch (for small ones a plain write of a copy is cheaper).
    fn joins_in_place(&self, len: usize) -> bool {
        match self.in_place.first_len() {
            None => true,
            Some(first) => {
                len >= MIN_GATHERED && first >= MIN_GATHERED && self.in_place.len() < MAX_IN_PLACE
            }
        }
    }

    /// Moves the echoes waiting in the read buffer to the front of the write batch.
    fn spill_in_place(&mut self, buf: &[u8]) {
        if self.in_place.is_empty() {
            return;
        }
        // `out` is empty but on the closing paths: its buffer is kept, not reallocated.
        let queued = (!self.out.is_empty()).then(|| std::mem::take(&mut self.out));
        for range in self.in_place.drain() {
            self.out.extend_from_slice(&buf[range]);
        }
        if let Some(queued) = queued {
            self.out.extend_from_slice(&queued);
        }
    }

    /// Writes the batch of answers within `send_timeout`.
    async fn flush(&mut self) -> Result<(), End> {
        if self.out.is_empty() {
            return Ok(());
        }
        let out = std::mem::take(&mut self.out);
        let mut out = self.send(out).await.map_err(|()| End::Gone)?;
        out.clear();
        self.out = out;
        Ok(())
    }

    /// Writes `frames` within the route's `send_timeout`; gives the buffer back.
    async fn send(&self, frames: Vec<u8>) -> Result<Vec<u8>, ()> {
        let deadline = Instant::now() + self.send_timeout;
        match self.guard.within(deadline, self.io.write_all(frames)).await {
            Some((Ok(()), frames)) => Ok(frames),
            _ => Err(()),
        }
    }

    /// Writes what is queued and a close frame within [`CLOSE_WAIT`]; false if it could not.
    async fn send_close_frame(&mut self, code: u16, reason: &str, deadline: Instant) -> bool {
        let mut frame = std::mem::take(&mut self.out);
        write_close_frame(&mut frame, Some(code), reason.as_bytes());
        matches!(
            self.guard.within(deadline, self.io.write_all(frame)).await,
            Some((Ok(()), _))
        )
    }

    /// Fails the connection: the close frame, then the FIN at once (the server closes the TCP
    /// connection); what the client still sends, its close frame included, is read and
    /// dropped unparsed for up to [`CLOSE_WAIT`], so that its arrival cannot reset the
    /// connection before the close frame is delivered.
    async fn fail(&mut self, code: u16, reason: &str) {
        let deadline = Instant::now() + CLOSE_WAIT;
        if !self.send_close_frame(code, reason, deadline).await {
            return;
        }
        let _ = self.io.shutdown_write().await;
        let mut buf = Vec::with_capacity(256);
        loop {
            buf.clear();
            match self.guard.within(deadline, self.io.read_append(buf)).await {
                Some((Ok(n), returned)) if n > 0 => buf = returned,
                _ => return,
            }
        }
    }

    /// Server-initiated close: the close frame, then up to [`CLOSE_WAIT`] for the client's
    /// close frame (RFC 6455 §7.1.1: the server closes the TCP connection after it).
    async fn close(&mut self, code: u16, reason: &str) {
        let deadline = Instant::now() + CLOSE_WAIT;
        if !self.send_close_frame(code, reason, deadline).await {
            return;
        }
        // Whatever the client still sends is parsed only to find its close frame.
        let mut buf = Vec::with_capacity(256);
        loop {
            let mut pos = 0;
            loop {
                match self.session.read(&mut buf[pos..]) {
                    Ok(Some((Event::Close { .. }, _))) | Err(_) => return,
                    Ok(Some((_, consumed))) => {
                        pos += consumed;
                        self.session.finish_message();
                    }
                    Ok(None) => break,
                }
            }
            buf.drain(..pos);
            let want = self.session.bytes_needed(&buf);
            if buf.capacity() < want.max(buf.len() + 1) {
                buf.reserve(want.max(buf.len() + 256) - buf.len());
            }
            match self.guard.within(deadline, self.io.read_append(buf)).await {
                Some((Ok(n), returned)) if n > 0 => buf = returned,
                _ => return,
            }
        }
    }
}

/// Milliseconds since the Unix epoch, for sink lines.
fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
