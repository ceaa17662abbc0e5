//! The tunnel's two directions, run at once in the connection's task: the client's frames go
//! to the upstream while the upstream's bytes go to the client, each direction waiting only on
//! its own send. A tunnel that finished one send before it read again could hang: an upstream
//! that echoes stops reading while its echoes wait, so a client that sends without reading
//! would leave the proxy waiting on its send to the upstream, and the upstream on its send to
//! the proxy, until `send_timeout`.
//!
//! Each side has at most one operation under way: a read, or the send of what that read
//! brought (the client's reads wait while their frames go to the upstream, which holds the
//! client back). One deadline covers them all: the idle timeout, the next heartbeat and each
//! send's `send_timeout`.

use std::future::poll_fn;
use std::io;
use std::pin::pin;
use std::task::Poll;
use std::time::Instant;

use futures_util::future::{Fuse, FusedFuture, FutureExt};

use ringstream_protocol::ws::{OpCode, close_code, write_frame_header};

use super::{BUFFER, End, Tunnel};
use crate::server::access_log::ClosedBy;
use crate::server::driver::RING_BUFFER_LEN;
use crate::server::transport::Transport;

/// What woke the tunnel.
enum Woke {
    /// The client's read ended (`Ok(0)`: it closed its sending side).
    ClientRead(io::Result<usize>, Vec<u8>),
    /// The upstream's read ended.
    UpstreamRead(io::Result<usize>, Vec<u8>),
    /// The client's frames reached the upstream.
    UpstreamSent(io::Result<()>, Vec<u8>),
    /// The upstream's bytes, or a heartbeat, reached the client.
    ClientSent(io::Result<()>, Vec<u8>),
    /// A deadline passed, or the drain began.
    Deadline,
}

/// What the send to the client under way carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ToClient {
    /// What the upstream's read brought: the upstream is read again once it is sent.
    Relay,
    /// A heartbeat ping, sent while the upstream's read stays armed.
    Ping,
}

/// What the client's frames in a buffer call for.
enum Passing {
    /// Send `buf[..kept]` to the upstream, then drop `buf[..consumed]`; `then` ends the
    /// tunnel once they are sent (the frames before one that ends it still reach the app).
    Send {
        buf: Vec<u8>,
        kept: usize,
        consumed: usize,
        then: Option<End>,
    },
    /// Read more from the client into `buf`.
    Read(Vec<u8>),
    /// End the tunnel.
    End(End),
}

impl<'a, T: Transport> Tunnel<'a, T> {
    /// Runs the tunnel until it ends: `cbuf` holds what the client sent after its handshake.
    /// Sends under way when it ends are finished first (within their deadlines), so that a
    /// close frame lands between frames.
    pub(super) async fn run(&mut self, cbuf: Vec<u8>) -> End {
        let (stream, upstream, route) = (self.stream, self.upstream, self.route);
        let (io, guard) = (stream.io(), stream.guard());
        let send_timeout = route.limits.send_timeout;
        let mut last_heard = Instant::now();
        let mut next_ping = last_heard + route.ws.heartbeat_interval;
        // Through the ring, a read buffer is held only while bytes are in it: as large as a
        // ring buffer, so that one is sent on in one piece.
        let upstream_buffer = if upstream.ring_armed() {
            RING_BUFFER_LEN
        } else {
            BUFFER
        };
        let mut client_read = pin!(Fuse::terminated());
        let mut upstream_read = pin!(
            upstream
                .read_append(Vec::with_capacity(upstream_buffer))
                .fuse()
        );
        let mut to_upstream = pin!(Fuse::terminated());
        let mut to_client = pin!(Fuse::terminated());
        let (mut upstream_due, mut client_due) = (None::<Instant>, None::<Instant>);
        let mut to_client_kind = ToClient::Relay;
        let mut after_send = (0, None);
        // What the client sent that is already here goes first.
        let mut passing = Some(self.pass(cbuf, &mut last_heard));
        let end = loop {
            match passing.take() {
                Some(Passing::Send {
                    buf,
                    kept,
                    consumed,
                    then,
                }) => {
                    upstream_due = Some(last_heard + send_timeout);
                    after_send = (consumed, then);
                    to_upstream.set(upstream.write_prefix(buf, kept).fuse());
                }
                Some(Passing::Read(buf)) => client_read.set(io.read_append(buf).fuse()),
                Some(Passing::End(end)) => break end,
                None => {}
            }
            if self.ctx.draining.get() {
                break End::Close(close_code::GOING_AWAY, "server shutting down".into());
            }
            let idle_at = last_heard + route.ws.timeout;
            let due = [upstream_due, client_due]
                .into_iter()
                .flatten()
                .fold(idle_at.min(next_ping), Instant::min);
            let woke = guard
                .until(
                    due,
                    pin!(poll_fn(|cx| {
                        if let Poll::Ready((result, buf)) = to_upstream.as_mut().poll(cx) {
                            return Poll::Ready(Woke::UpstreamSent(result, buf));
                        }
                        if let Poll::Ready((result, buf)) = to_client.as_mut().poll(cx) {
                            return Poll::Ready(Woke::ClientSent(result, buf));
                        }
                        if let Poll::Ready((result, buf)) = client_read.as_mut().poll(cx) {
                            return Poll::Ready(Woke::ClientRead(result, buf));
                        }
                        // Never while a heartbeat goes to the client: one send at a time.
                        if to_client.is_terminated()
                            && let Poll::Ready((result, buf)) = upstream_read.as_mut().poll(cx)
                        {
                            return Poll::Ready(Woke::UpstreamRead(result, buf));
                        }
                        Poll::Pending
                    })),
                )
                .await
                .unwrap_or(Woke::Deadline);
            match woke {
                Woke::ClientRead(result, buf) => match result {
                    Ok(n) if n > 0 => passing = Some(self.pass(buf, &mut last_heard)),
                    _ => break End::Closed(ClosedBy::Client),
                },
                Woke::UpstreamSent(result, mut buf) => {
                    upstream_due = None;
                    if result.is_err() {
                        break End::Closed(ClosedBy::Upstream);
                    }
                    let (consumed, then) = std::mem::take(&mut after_send);
                    buf.drain(..consumed);
                    passing = Some(match then {
                        Some(end) => Passing::End(end),
                        None => self.read_on(buf),
                    });
                }
                Woke::UpstreamRead(result, buf) => {
                    match result {
                        Ok(n) if n > 0 => {}
                        _ => break End::Closed(ClosedBy::Upstream),
                    }
                    self.follow_upstream(&buf);
                    client_due = Some(Instant::now() + send_timeout);
                    to_client_kind = ToClient::Relay;
                    to_client.set(self.send_to_client(buf).fuse());
                }
                Woke::ClientSent(result, mut buf) => {
                    client_due = None;
                    if result.is_err() {
                        break End::Closed(ClosedBy::Client);
                    }
                    if to_client_kind == ToClient::Relay {
                        buf.clear();
                        upstream_read.set(upstream.read_append(buf).fuse());
                    }
                }
                Woke::Deadline => {
                    let now = Instant::now();
                    if upstream_due.is_some_and(|due| now >= due) {
                        to_upstream.set(Fuse::terminated());
                        break End::Closed(ClosedBy::Upstream);
                    }
                    if client_due.is_some_and(|due| now >= due) {
                        to_client.set(Fuse::terminated());
                        break End::Closed(ClosedBy::Client);
                    }
                    if now >= idle_at {
                        break End::Close(close_code::NORMAL, "idle timeout".into());
                    }
                    // A heartbeat: skipped while the client is being sent something (it is
                    // reading, or `send_timeout` will end it) or inside a frame the upstream
                    // has not finished.
                    if now >= next_ping {
                        next_ping = now + route.ws.heartbeat_interval;
                        if to_client.is_terminated() && self.upstream_frames.at_boundary() {
                            let mut ping = Vec::with_capacity(2);
                            write_frame_header(&mut ping, OpCode::Ping, true, 0);
                            client_due = Some(now + send_timeout);
                            to_client_kind = ToClient::Ping;
                            to_client.set(self.send_to_client(ping).fuse());
                        }
                    }
                }
            }
        };
        // Sends under way finish first.
        if !to_upstream.is_terminated() {
            let due = upstream_due.unwrap_or_else(Instant::now);
            if !matches!(
                guard.within_pinned(due, to_upstream).await,
                Some((Ok(()), _))
            ) {
                return End::Closed(ClosedBy::Upstream);
            }
        }
        if !to_client.is_terminated() {
            let due = client_due.unwrap_or_else(Instant::now);
            if !matches!(guard.within_pinned(due, to_client).await, Some((Ok(()), _))) {
                return End::Closed(ClosedBy::Client);
            }
        }
        end
    }

    /// Takes the client's complete frames from `buf` (see [`Tunnel::take_client_frames`]) and
    /// says what comes next.
    fn pass(&mut self, mut buf: Vec<u8>, last_heard: &mut Instant) -> Passing {
        let (taken, passed) = self.take_client_frames(&mut buf, last_heard);
        if passed.kept > 0 {
            return Passing::Send {
                buf,
                kept: passed.kept,
                consumed: passed.consumed,
                then: taken.err(),
            };
        }
        buf.drain(..passed.consumed);
        match taken {
            Ok(()) => self.read_on(buf),
            Err(end) => Passing::End(end),
        }
    }

    /// The client's next read into `buf` (what is left of a frame still arriving), with room
    /// for the rest of that frame.
    fn read_on(&self, mut buf: Vec<u8>) -> Passing {
        match self.reserve_for_frame(&mut buf) {
            Ok(()) => Passing::Read(buf),
            Err(end) => Passing::End(end),
        }
    }
}
