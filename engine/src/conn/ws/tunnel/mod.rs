//! A WebSocket through a proxy route, once the upstream's 101 went to the client: the client's
//! frames are parsed under the route's protections (message size, fragments, UTF-8, the
//! connection's and the client's rates, the idle timeout) and passed on exactly as the client
//! sent them (masked again after the check); the upstream's bytes go to the client as they
//! come. Close frames pass both ways, and a half-close on either side reaches the other. A
//! protection's close, and the drain's 1001, go to both sides. Heartbeat pings go to the
//! client (its pongs pass to the upstream, where an unsolicited pong is allowed). The two
//! directions run at once ([`duplex`]); on io_uring both sides receive through the worker's
//! buffer ring.

mod duplex;

use std::borrow::Cow;
use std::rc::Rc;
use std::time::{Duration, Instant};

use ringstream_protocol::ws::session::{Event, Payload, Session, SessionLimits};
use ringstream_protocol::ws::{
    FrameFollower, FrameHeader, apply_mask, close_code, write_close_frame,
};

use crate::config::{OnLimit, Route};
use crate::conn::ws::session_log::SessionLog;
use crate::protections::frame_quotas::{FrameRates, close_reason, frame_rule};
use crate::protections::gate::ClientSlot;
use crate::routes::proxy::pool::ActiveExchange;
use crate::server::access_log::ClosedBy;
use crate::server::context::WorkerContext;
use crate::server::registry::{Activity, Registered};
use crate::server::ring_receive::SMALL_BURSTS_BEFORE_RING;
use crate::server::transport::{Transport, read_and_drop};
use crate::server::upstream::UpstreamConn;

/// How long each side gets to finish its close once the tunnel ends.
const CLOSE_WAIT: Duration = Duration::from_secs(2);
/// Read buffer of each direction; the client's grows for a large frame.
const BUFFER: usize = 4096;
/// A client buffer larger than this is given back once its frame has passed.
const MAX_IDLE_BUFFER: usize = 64 * 1024;

/// The upstream side of a tunnel, handed over with the 101.
#[derive(Debug)]
pub struct UpstreamTunnel {
    /// The upgraded upstream connection.
    pub conn: UpstreamConn,
    /// What the upstream sent after its 101, for the client.
    pub rest: Vec<u8>,
    /// Counts the tunnel as the upstream's exchange while it lives.
    pub active: ActiveExchange,
}

/// What [`Tunnel::take_client_frames`] did with the start of the client's buffer.
#[derive(Debug, Default, Clone, Copy)]
struct Passed {
    /// Bytes of whole frames read (the rest is a frame still arriving).
    consumed: usize,
    /// Bytes at the start of the buffer to pass to the upstream.
    kept: usize,
}

/// How the tunnel ends.
enum End {
    /// A protection or the drain: this close frame to both sides.
    Close(u16, Cow<'static, str>),
    /// The client broke the protocol: its close code to both sides, nothing more read.
    Fail(u16, &'static str),
    /// One side (the client or the upstream) closed its connection (after its close frame,
    /// or without), or stopped reading: the other side's sending half is shut once what it
    /// was sent has left.
    Closed(ClosedBy),
}

/// Serves the tunnel of proxy route `route_index`: `buf[pos..]` holds what the client sent
/// after its handshake; `log` is the session's access log line.
#[allow(
    clippy::too_many_arguments,
    reason = "the whole state of an upgraded connection"
)]
pub async fn serve<T: Transport>(
    stream: Registered<T>,
    ctx: Rc<WorkerContext>,
    route_index: usize,
    client: Option<ClientSlot>,
    mut buf: Vec<u8>,
    pos: usize,
    tunnel: Box<UpstreamTunnel>,
    log: Option<Box<SessionLog>>,
) {
    stream.guard().set_activity(Activity::WebSocket);
    buf.drain(..pos);
    let UpstreamTunnel {
        conn: upstream,
        rest,
        active,
    } = *tunnel;
    let route = &ctx.router.routes()[route_index];
    let mut tunnel = Tunnel {
        stream: &stream,
        upstream: &upstream,
        ctx: &ctx,
        route,
        route_index,
        session: Session::new(SessionLimits {
            max_message_size: route.ws.max_message_size,
            max_fragments: route.ws.max_fragments,
        }),
        rates: FrameRates::new(&route.ws),
        client: client.as_ref(),
        log,
        upstream_frames: FrameFollower::default(),
    };
    tunnel.follow_upstream(&rest);
    tunnel.arm_rings();
    let end = if rest.is_empty() || tunnel.to_client(rest).await.is_some() {
        tunnel.run(buf).await
    } else {
        End::Closed(ClosedBy::Client)
    };
    let ended = match &end {
        End::Close(code, _) | End::Fail(code, _) => (ClosedBy::Server, Some(*code)),
        End::Closed(side) => (*side, None),
    };
    tunnel.finish(end).await;
    drop(active);
    if let (Some(log), Some(access_log)) = (tunnel.log.take(), &ctx.access_log) {
        log.finish(access_log, &route.path, ended.0, ended.1);
    }
}

struct Tunnel<'a, T> {
    stream: &'a Registered<T>,
    upstream: &'a UpstreamConn,
    ctx: &'a Rc<WorkerContext>,
    route: &'a Route,
    route_index: usize,
    session: Session,
    rates: FrameRates,
    client: Option<&'a ClientSlot>,
    /// The session's access log line, when the log is on.
    log: Option<Box<SessionLog>>,
    /// Where the upstream's bytes are in its frames.
    upstream_frames: FrameFollower,
}

impl<'a, T: Transport> Tunnel<'a, T> {
    /// Follows what the upstream sent before it goes to the client: its frame boundaries (a
    /// heartbeat or a close frame of ringstream's never lands inside a frame) and, for the
    /// session's access log line, its messages and its close frame.
    fn follow_upstream(&mut self, bytes: &[u8]) {
        let before = self.upstream_frames.messages();
        self.upstream_frames.follow(bytes);
        if let Some(log) = &self.log {
            log.count_out(self.upstream_frames.messages() - before, bytes.len());
            if let Some(code) = self.upstream_frames.close() {
                log.saw_close(ClosedBy::Upstream, code);
            }
        }
    }

    /// Both sides receive through the worker's buffer ring from now on, if the worker's
    /// `receive` mode arms it at all (`auto` or `ring` on io_uring): a multishot receive on
    /// each side, armed once, and read buffers held only while bytes are in them, so an idle
    /// tunnel holds none and the upstream's can be as large as a ring buffer (BENCHMARKS.md,
    /// "Both sides of a tunnel through the buffer ring").
    fn arm_rings(&self) {
        if self.stream.io().offer_ring(SMALL_BURSTS_BEFORE_RING) {
            self.upstream.arm_ring();
        }
    }

    /// Checks every complete frame of `buf`, masks it again as the client sent it and keeps
    /// it, in order, at the start of `buf` (a dropped message is left out); what the frames
    /// took and kept is in [`Passed`]. `last_heard` is the time of the read when a frame was
    /// in it.
    fn take_client_frames(
        &mut self,
        buf: &mut [u8],
        last_heard: &mut Instant,
    ) -> (Result<(), End>, Passed) {
        let mut passed = Passed::default();
        let result = loop {
            let unparsed = &mut buf[passed.consumed..];
            let header = FrameHeader::parse(unparsed).ok().flatten();
            let (event, len) = match self.session.read(unparsed) {
                Ok(Some(found)) => found,
                Ok(None) => break Ok(()),
                Err(e) => break Err(End::Fail(e.close_code(), e.reason())),
            };
            if passed.consumed == 0 {
                *last_heard = Instant::now();
            }
            let frame = passed.consumed..passed.consumed + len;
            passed.consumed += len;
            let traffic = self.ctx.route_traffic(Some(self.route_index));
            traffic.messages_in.add(1);
            traffic.bytes_in.add(len as u64);
            if let Some(log) = &self.log {
                log.count_in(len);
                if let Event::Close { code, .. } = event {
                    log.saw_close(ClosedBy::Client, code);
                }
            }
            let whole_message = matches!(
                event,
                Event::Message {
                    payload: Payload::InBuffer(_),
                    ..
                }
            );
            if !matches!(event, Event::Close { .. }) {
                let client_rates = self.ctx.gate.has_frame_rates();
                let gate = &self.ctx.gate;
                let rule = frame_rule(
                    &mut self.rates,
                    gate,
                    self.client,
                    client_rates,
                    len as u64,
                    self.route,
                );
                if let Some(rule) = rule {
                    // A whole message may be dropped; a fragment or a control frame cannot
                    // be taken out of the stream the upstream reads.
                    if self.route.ws.on_limit == OnLimit::Drop && whole_message {
                        traffic.dropped.add(1);
                        continue;
                    }
                    break Err(End::Close(close_code::POLICY, close_reason(rule).into()));
                }
            }
            if let Some((header, header_len)) = header
                && let Some(key) = header.mask
            {
                apply_mask(&mut buf[frame.start + header_len..frame.end], key, 0);
            }
            // Behind a dropped message, the frames move up to close the gap.
            if passed.kept != frame.start {
                buf.copy_within(frame.clone(), passed.kept);
            }
            passed.kept += len;
            if matches!(event, Event::Message { .. }) {
                self.session.finish_message();
            }
        };
        (result, passed)
    }

    /// Makes room in the client's buffer for the rest of the frame it holds, from the buffer
    /// budget (`max_buffered_bytes`): a frame it cannot hold ends the tunnel with 1013 (the
    /// tunnel does not pause, since the app's frames would wait too). A buffer grown past
    /// [`MAX_IDLE_BUFFER`] is given back once it is empty.
    fn reserve_for_frame(&self, buf: &mut Vec<u8>) -> Result<(), End> {
        let guard = self.stream.guard();
        let want = self.session.bytes_needed(buf).max(buf.len() + BUFFER);
        if buf.capacity() < want {
            if !guard.try_hold(want.saturating_sub(BUFFER)) {
                return Err(End::Close(
                    close_code::TRY_AGAIN_LATER,
                    "server busy".into(),
                ));
            }
            buf.reserve_exact(want - buf.len());
        } else if buf.is_empty() && buf.capacity() > MAX_IDLE_BUFFER {
            *buf = Vec::with_capacity(BUFFER);
            guard.hold(0);
        }
        Ok(())
    }

    /// Writes `bytes` to the upstream within `send_timeout`; gives the buffer back.
    async fn to_upstream(&self, bytes: Vec<u8>) -> Option<Vec<u8>> {
        let deadline = Instant::now() + self.route.limits.send_timeout;
        match self
            .stream
            .guard()
            .within(deadline, self.upstream.write_all(bytes))
            .await
        {
            Some((Ok(()), bytes)) => Some(bytes),
            _ => None,
        }
    }

    /// The send of `bytes` to the client, counted in the route's traffic.
    fn send_to_client(
        &self,
        bytes: Vec<u8>,
    ) -> impl Future<Output = (std::io::Result<()>, Vec<u8>)> + use<'a, T> {
        let traffic = self.ctx.route_traffic(Some(self.route_index));
        traffic.bytes_out.add(bytes.len() as u64);
        self.stream.io().write_all(bytes)
    }

    /// Writes `bytes` to the client within `send_timeout`; gives the buffer back.
    async fn to_client(&self, bytes: Vec<u8>) -> Option<Vec<u8>> {
        let deadline = Instant::now() + self.route.limits.send_timeout;
        match self
            .stream
            .guard()
            .within(deadline, self.send_to_client(bytes))
            .await
        {
            Some((Ok(()), bytes)) => Some(bytes),
            _ => None,
        }
    }

    /// Ends the tunnel: a close frame to each side when ringstream closes it, then each
    /// side's sending half shut, and what the client still sends read and dropped for a
    /// moment (its arrival must not reset the connection before the close frame is read).
    async fn finish(&mut self, end: End) {
        let close = match end {
            End::Close(code, reason) => Some((code, reason)),
            End::Fail(code, reason) => Some((code, Cow::Borrowed(reason))),
            End::Closed(_) => None,
        };
        if let Some((code, reason)) = close {
            self.ctx.counters().closes.count(code);
            // Not inside a frame the upstream has not finished (the client could not read
            // it): the client then sees its connection end.
            if self.upstream_frames.at_boundary() {
                let mut to_client = Vec::with_capacity(4 + reason.len());
                write_close_frame(&mut to_client, Some(code), reason.as_bytes());
                let _ = self.to_client(to_client).await;
            }
            let _ = self.to_upstream(masked_close(code, &reason)).await;
        }
        let _ = self.upstream.shutdown_write().await;
        if self.stream.io().shutdown_write().await.is_ok() {
            let deadline = Instant::now() + CLOSE_WAIT;
            Box::pin(read_and_drop(self.stream.io(), deadline, usize::MAX)).await;
        }
    }
}

/// A close frame as a client sends it (masked), for the upstream.
fn masked_close(code: u16, reason: &str) -> Vec<u8> {
    let mut payload = code.to_be_bytes().to_vec();
    payload.extend_from_slice(reason.as_bytes());
    let key = mask_key();
    let mut frame = vec![0x80 | 0x8, 0x80 | payload.len() as u8];
    frame.extend_from_slice(&key);
    apply_mask(&mut payload, key, 0);
    frame.extend_from_slice(&payload);
    frame
}

/// A masking key from the kernel's random source (the clock's nanoseconds if that fails).
fn mask_key() -> [u8; 4] {
    let mut key = [0u8; 4];
    // SAFETY: `key` is a valid, writable buffer of the length given.
    let got = unsafe { libc::getrandom(key.as_mut_ptr().cast(), key.len(), 0) };
    if got != 4 {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        key = nanos.to_le_bytes();
    }
    key
}
