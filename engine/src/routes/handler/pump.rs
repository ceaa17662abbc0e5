//! The pump's side of a handler route: what the connection does when its handler queues
//! frames, asks to close or ends, and the wait while the handler is behind.

use std::future::poll_fn;
use std::pin::pin;
use std::time::Instant;

use ringstream_protocol::ws::close_code;

use super::{Link, Signal};
use crate::routes::role::{RoleEnd, RoleIo};

/// Acts on what the handler asked for: its queued frames are written (within
/// `send_timeout`); a close request or a finished handler ends the connection after them.
pub async fn on_signal<C: RoleIo>(conn: &C, link: &Link, signal: Signal) -> Result<(), RoleEnd> {
    let mut frames = Vec::new();
    let messages = link.take_outbound(&mut frames);
    if !frames.is_empty() {
        conn.count_out(messages, frames.len());
        let frames = conn.send(frames).await.map_err(|()| RoleEnd::Gone)?;
        link.recycle_outbound(frames);
    }
    match signal {
        Signal::Outbound | Signal::Room => Ok(()),
        Signal::Close(code, reason) => Err(RoleEnd::Close(code, reason.into())),
        Signal::HandlerGone(code) => {
            let reason = if code == close_code::INTERNAL_ERROR {
                "internal error"
            } else {
                ""
            };
            Err(RoleEnd::Close(code, reason.into()))
        }
    }
}

/// While the handler's inbound queue is full: reads nothing (TCP holds the client back),
/// keeps the heartbeat and the drain going and serves the handler until it makes room.
pub async fn wait_for_room<C: RoleIo>(
    conn: &C,
    link: &Link,
    next_ping: &mut Instant,
) -> Result<(), RoleEnd> {
    loop {
        conn.keep_alive(next_ping).await?;
        let signal = pin!(poll_fn(|cx| link.poll_signal(cx, true)));
        match conn.guard().until(*next_ping, signal).await {
            Some(Signal::Room) => return Ok(()),
            Some(signal) => on_signal(conn, link, signal).await?,
            None => {}
        }
    }
}
