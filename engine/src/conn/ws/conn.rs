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

mod compression;
mod frames;
mod memory;
mod role_io;
mod write;

use std::borrow::Cow;
use std::future::poll_fn;
use std::net::{IpAddr, Ipv4Addr};
use std::pin::pin;
use std::rc::Rc;

use std::time::{Duration, Instant};

use futures_util::future::{Either, select};

use ringstream_limits::client_table::Rule;
use ringstream_protocol::ws::deflate::DeflateParams;
use ringstream_protocol::ws::session::{Event, Payload, Session, SessionLimits};
use ringstream_protocol::ws::{OpCode, close_code, write_close_frame, write_frame_header};

use crate::config::{OnLimit, Route, RouteKind, WsLimits};
use crate::conn::ws::session_log::SessionLog;
use crate::protections::frame_quotas::{FrameRates, close_reason};
use crate::protections::gate::ClientSlot;
use crate::routes::echo::in_place::{InPlaceEchoes, rewrite_in_place};
use crate::routes::role::{Attachment, Role, RoleEnd, RoleIo, Wake};
use crate::server::access_log::ClosedBy;
use crate::server::conn_count::ConnSlot;
use crate::server::context::WorkerContext;
use crate::server::metrics::Traffic;
use crate::server::registry::{Activity, ConnGuard, Registered};
use crate::server::ring_receive::{SMALL_BURST, SMALL_BURSTS_BEFORE_RING};
use crate::server::transport::Transport;

/// Least read buffer of a WebSocket connection: every idle connection keeps one while its
/// receive is pending, so it is small (a client's frame of up to 248 bytes of payload fits;
/// a larger one costs one more read, and the buffer then stays as large as the client's
/// bursts). It grows to hold a large frame (at most `max_message_size` plus a header) and
/// shrinks again once the frame is answered (`memory.rs`: growth beyond this size is taken
/// from the server-wide buffer budget).
const INITIAL_BUFFER: usize = 256;
/// The read buffer doubles after a read that filled it (the client had more to say), up to
/// this size; beyond it, only a single larger frame grows it, and only until it is answered.
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

/// Serves a WebSocket route on `stream` after the 101 was sent: echo, or the pump of a handler
/// route (which starts the handler with `head`). `client` is the admitted client (its rates
/// span its connections). `buf[pos..]` holds bytes the client sent right after its handshake.
/// `conn_slot` is the connection's place in the server-wide count, released at the end.
#[allow(
    clippy::too_many_arguments,
    reason = "the whole state of an upgraded connection"
)]
pub fn serve<T: Transport>(
    stream: Registered<T>,
    ctx: Rc<WorkerContext>,
    route_index: usize,
    attachment: Attachment,
    client: Option<ClientSlot>,
    mut buf: Vec<u8>,
    pos: usize,
    log: Option<Box<SessionLog>>,
    deflate: Option<DeflateParams>,
    conn_slot: ConnSlot,
) -> impl Future<Output = ()> {
    // Set up here and not in an `async fn`: an `async fn` moves its arguments into locals of
    // its future and keeps both, and every open WebSocket keeps that future. The block below
    // captures the connection once and lends it to `serve`.
    stream.guard().set_activity(Activity::WebSocket);
    let _ = stream.io().offer_ring(0);
    // The HTTP phase's buffer is larger than an idle WebSocket needs: it grows again with the
    // first frame that needs more (BENCHMARKS.md, idle memory). A new, smaller buffer rather
    // than the old one shrunk in place: shrinking splits the old block, and the part left free
    // sits between live blocks where no later connection's larger blocks fit, while the old
    // block freed whole serves the next connection's HTTP phase.
    let buf = if buf.capacity() > INITIAL_BUFFER && buf.len() - pos <= INITIAL_BUFFER {
        let mut smaller = Vec::with_capacity(INITIAL_BUFFER);
        smaller.extend_from_slice(&buf[pos..]);
        smaller
    } else {
        buf.drain(..pos);
        buf.reserve(INITIAL_BUFFER.saturating_sub(buf.len()));
        buf
    };
    let route = &ctx.router.routes()[route_index];
    let peer = || {
        client
            .as_ref()
            .map(ClientSlot::address)
            .or_else(|| stream.io().peer_addr().ok().map(|a| a.ip()))
            .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
    };
    let role = Role::start(route, ctx.route_state(route_index), attachment, peer);
    let mut conn = WsConnection {
        stream,
        session: {
            let limits = SessionLimits {
                max_message_size: route.ws.max_message_size,
                max_fragments: route.ws.max_fragments,
            };
            match &deflate {
                Some(params) => Session::with_deflate(limits, params),
                None => Session::new(limits),
            }
        },
        rates: FrameRates::new(&route.ws),
        // Echoes leave from the read buffer; the batch is only for pings, pongs and pipelined
        // messages, so it is allocated when first needed.
        out: Vec::new(),
        in_place: InPlaceEchoes::default(),
        send_timeout: route.limits.send_timeout,
        role,
        check_client_rates: ctx.gate.has_frame_rates(),
        small_bursts: 0,
        client,
        route_index,
        log,
        compression: deflate.map(|params| Box::new(compression::Compression::new(params))),
        ctx,
        _open: conn_slot,
    };
    async move { conn.serve(buf).await }
}

// `repr(C)`: fields in the order written, those every message touches first, so that what a
// message reads of the connection sits in its first cache lines rather than across all of
// them (BENCHMARKS.md, 500 connections).
#[repr(C)]
struct WsConnection<T> {
    /// The stream, and its place in the worker's registry (deadlines, the drain).
    stream: Registered<T>,
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
    /// Small bursts in a row the client sent, counted up to the number that arms the worker's
    /// buffer ring (`receive = "auto"`, `server::ring_receive::RingUse`).
    small_bursts: u8,
    rates: FrameRates,
    session: Session,
    /// The route's `send_timeout`.
    send_timeout: Duration,
    /// The admitted client: holds its place in the client's connection count until the end.
    client: Option<ClientSlot>,
    /// The session's access log line, when the log is on.
    log: Option<Box<SessionLog>>,
    /// Compression of the echoes, when permessage-deflate was agreed.
    compression: Option<Box<compression::Compression>>,
    /// The connection's place in the server-wide count, released when the session ends.
    _open: ConnSlot,
}

impl<T> Drop for WsConnection<T> {
    /// A pump that ends on any path (even dropped mid-await) releases its handler.
    fn drop(&mut self) {
        if let Some(link) = self.role.link() {
            link.finish(close_code::ABNORMAL);
        }
    }
}

/// What a wait on the socket ended with.
enum Woke<R> {
    /// The read completed.
    Read(R),
    /// The role needs the loop (a handler's frames, a broadcast member's).
    Role(Wake),
    /// The deadline passed (next ping, idle timeout) or the drain woke the connection.
    Deadline,
}

impl From<RoleEnd> for End {
    fn from(end: RoleEnd) -> Self {
        match end {
            RoleEnd::Close(code, reason) => Self::Close(code, reason),
            RoleEnd::Gone => Self::Gone,
        }
    }
}

impl<T: Transport> WsConnection<T> {
    /// The connection from its first frame to its end. This and `run` are plain functions
    /// returning `async` blocks: an `async fn` would keep its arguments twice in the future of
    /// every open connection.
    #[allow(
        clippy::manual_async_fn,
        reason = "an async fn keeps its arguments twice in every open connection's future"
    )]
    fn serve(&mut self, buf: Vec<u8>) -> impl Future<Output = ()> + '_ {
        async move {
            let ctx = Rc::clone(&self.ctx);
            let route = &ctx.router.routes()[self.route_index];
            let end = self.run(route, buf).await;
            // A sink's last lines are kept whatever ended the connection; a handler learns at
            // once that nothing more will arrive or leave.
            let code = match &end {
                End::Close(code, _) | End::Fail(code, _) | End::Answered(code) => *code,
                End::Gone => close_code::ABNORMAL,
            };
            self.role.finish(ctx.route_state(self.route_index), code);
            // Who ended the session, for its access log line.
            let end_side = match &end {
                End::Close(code, _) | End::Fail(code, _) => Some((ClosedBy::Server, Some(*code))),
                End::Answered(code) => Some((ClosedBy::Client, Some(*code))),
                End::Gone => None,
            };
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
                        let _ = self.stream.io().shutdown_write().await;
                    }
                }
                End::Gone => {}
            }
            if let (Some(log), Some(access_log)) = (self.log.take(), &ctx.access_log) {
                let (closed_by, code) = match end_side {
                    Some(side) => side,
                    None => (ClosedBy::Client, None),
                };
                log.finish(access_log, &route.path, closed_by, code);
            }
        }
    }

    #[allow(
        clippy::manual_async_fn,
        reason = "an async fn keeps its arguments twice in every open connection's future"
    )]
    fn run<'a>(&'a mut self, route: &'a Route, mut buf: Vec<u8>) -> impl Future<Output = End> + 'a {
        async move {
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
            // Bytes read since the buffer last held nothing (the client's last burst: a batch of
            // pipelined frames may take several reads), and whether the last read filled the
            // buffer's spare room (more was waiting). The buffer is kept as large as a burst, so
            // that the next one arrives in one read and leaves in one write.
            let mut last_read = 0;
            let mut filled = false;
            loop {
                // Everything buffered is answered before waiting for more.
                if let Some(end) = self.process(&mut buf, &mut pos, prefix, route) {
                    return end;
                }
                // The idle clock runs from the last whole frame: a client that trickles a frame a
                // byte at a time is idle, and is closed at `timeout` like a silent one.
                if pos > 0 {
                    last_heard = Instant::now();
                }
                if !self.in_place.is_empty() {
                    // Echoes in place come from this read's frames: `last_heard` is now.
                    let deadline = last_heard + self.send_timeout;
                    // A lone echo is one plain write; several are one vectored write.
                    let written = if let Some(frame) = self.in_place.take_one() {
                        let write = self.stream.io().write_range(buf, frame);
                        self.stream.guard().within(deadline, write).await
                    } else {
                        let write = self
                            .stream
                            .io()
                            .write_ranges(buf, self.in_place.take_many());
                        let written = self.stream.guard().within(deadline, write).await;
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
                if !matches!(self.role, Role::Echo) {
                    let state = self.ctx.route_state(self.route_index);
                    self.role.hand_over(state);
                    if !self.role.has_room(state) {
                        // Boxed: sink and handler states stay out of the future every echo
                        // connection keeps while it idles (BENCHMARKS.md, idle memory).
                        let wait = Box::pin(self.role.make_room(&*self, state, &mut next_ping));
                        if let Err(end) = wait.await {
                            return end.into();
                        }
                        // Nothing was read while the role was behind: the client was not idle,
                        // and what a handler left unread is taken now.
                        last_heard = Instant::now();
                        continue;
                    }
                }
                if let Some(pause) = self.size_read_buffer(&mut buf, last_read, filled) {
                    // Boxed: the pause's state stays out of the future every connection keeps.
                    let paused = Box::pin(self.pause_for_budget(pause, last_heard, &mut next_ping));
                    if let Err(end) = paused.await {
                        return end;
                    }
                    continue;
                }
                let room = buf.capacity() - buf.len();
                let burst_continues = !buf.is_empty();
                let received = self.receive(buf, last_heard, &mut next_ping, limits).await;
                let (result, returned) = match received {
                    Ok(done) => done,
                    Err(end) => return end,
                };
                buf = returned;
                match result {
                    Ok(0) | Err(_) => return End::Gone,
                    Ok(n) => {
                        if !burst_continues {
                            // The client's last burst ended before this read.
                            self.count_burst(last_read);
                        }
                        last_read = if burst_continues { last_read + n } else { n };
                        filled = n >= room;
                    }
                }
            }
        }
    }

    /// Counts a burst of `bytes` the client sent (0: none yet) toward arming the worker's buffer
    /// ring: small bursts in a row, up to the number that arms it. Called between reads.
    fn count_burst(&mut self, bytes: usize) {
        if bytes == 0 || self.small_bursts >= SMALL_BURSTS_BEFORE_RING {
            return;
        }
        self.small_bursts = if bytes <= SMALL_BURST {
            self.small_bursts + 1
        } else {
            0
        };
        let _ = self.stream.io().offer_ring(self.small_bursts);
    }

    /// Waits for a read into `buf`, which stays pending across the heartbeats it sends and the
    /// role's wake-ups; ends the connection at the idle timeout (counted from `last_heard`) or
    /// the drain. Its own `async fn`, so that its state sits in the connection's future only
    /// while it waits, not beside every other wait of the loop (BENCHMARKS.md, idle memory).
    ///
    /// A plain function returning an `async` block: an `async fn` would keep its arguments
    /// twice, as they came and as its locals.
    #[allow(
        clippy::manual_async_fn,
        reason = "an async fn keeps its arguments twice in every idle connection's future"
    )]
    fn receive<'a>(
        &'a self,
        buf: Vec<u8>,
        last_heard: Instant,
        next_ping: &'a mut Instant,
        limits: &'a WsLimits,
    ) -> impl Future<Output = Result<(std::io::Result<usize>, Vec<u8>), End>> + 'a {
        async move {
            let mut read = std::pin::pin!(self.stream.io().read_append(buf));
            loop {
                if self.ctx.draining.get() {
                    return Err(End::Close(close_code::GOING_AWAY, DRAIN_REASON.into()));
                }
                let idle_at = last_heard + limits.timeout;
                let wake_at = idle_at.min(*next_ping);
                let woke = if matches!(self.role, Role::Echo | Role::Sink(_)) {
                    match self.stream.guard().until(wake_at, read.as_mut()).await {
                        Some(done) => Woke::Read(done),
                        None => Woke::Deadline,
                    }
                } else {
                    let role = poll_fn(|cx| self.role.poll_wake(cx));
                    let either = pin!(select(read.as_mut(), role));
                    match self.stream.guard().until(wake_at, either).await {
                        Some(Either::Left((done, _))) => Woke::Read(done),
                        Some(Either::Right((wake, _))) => Woke::Role(wake),
                        None => Woke::Deadline,
                    }
                };
                match woke {
                    Woke::Read(done) => return Ok(done),
                    Woke::Role(wake) => {
                        // Boxed: handler and broadcast states stay out of the future every
                        // echo connection keeps while it idles (BENCHMARKS.md, idle memory).
                        let slow_code = limits.slow_consumer_code;
                        let acted = Box::pin(self.role.on_wake(&*self, wake, slow_code)).await;
                        if let Err(end) = acted {
                            return Err(end.into());
                        }
                        continue;
                    }
                    Woke::Deadline => {}
                }
                if Instant::now() >= idle_at {
                    return Err(End::Close(close_code::NORMAL, IDLE_REASON.into()));
                }
                // Boxed: a ping's write would otherwise sit beside the pending read in the
                // future every connection keeps while it idles (BENCHMARKS.md, idle memory);
                // it runs once per heartbeat.
                if let Err(end) = Box::pin(self.keep_alive(next_ping)).await {
                    return Err(end.into());
                }
            }
        }
    }
}
