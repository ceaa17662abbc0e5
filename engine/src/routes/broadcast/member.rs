//! One broadcast connection: what it publishes, and the frames other members published to it,
//! written in batches under the slow-consumer policy.

use std::cell::Cell;
use std::future::poll_fn;
use std::pin::pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::future::{Either, select};

use super::{Membership, encode_frame};
use crate::routes::role::{RoleEnd, RoleIo};
use crate::server::context::WorkerContext;
use crate::server::transport::Transport;

/// Most broadcast frames gathered into one write (well under the kernel's `IOV_MAX`).
const MAX_FRAMES_PER_WRITE: usize = 256;
/// How long the frames in flight get to leave once the slow-consumer policy closes a member.
const CLOSE_WAIT: Duration = Duration::from_secs(2);
/// Close reason of `slow_consumer = "close"` (PROTECTIONS.md).
const SLOW_CONSUMER_REASON: &str = "slow consumer";

/// A broadcast connection's membership and its write batch.
pub struct BroadcastMember {
    membership: Membership,
    echo_to_sender: bool,
    /// The frames of the write in progress (kept for its allocation).
    batch: Cell<Vec<Bytes>>,
}

impl std::fmt::Debug for BroadcastMember {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BroadcastMember")
            .field("membership", &self.membership)
            .field("echo_to_sender", &self.echo_to_sender)
            .finish_non_exhaustive()
    }
}

impl BroadcastMember {
    /// A member by `membership`; `echo_to_sender`: it also receives its own messages.
    pub fn new(membership: Membership, echo_to_sender: bool) -> Self {
        Self {
            membership,
            echo_to_sender,
            batch: Cell::new(Vec::new()),
        }
    }

    /// Publishes one message to the topic's members on every worker.
    pub fn publish(&self, ctx: &WorkerContext, text: bool, body: &[u8]) {
        let membership = &self.membership;
        let skip = (!self.echo_to_sender).then(|| membership.key());
        let frame = encode_frame(text, body);
        ctx.publish(membership.topic(), &frame, skip);
    }

    /// Ready when frames wait for this member (or it must be closed).
    pub fn poll_ready(&self, cx: &mut Context<'_>) -> Poll<()> {
        self.membership.member().poll_ready(cx)
    }

    /// Writes the frames queued for this member, in batches, each within `send_timeout`.
    /// When the slow-consumer policy closes the member, the batch in flight gets
    /// [`CLOSE_WAIT`] to leave (so the close frame follows whole frames), then the connection
    /// closes with `slow_code`.
    pub async fn write_frames<C: RoleIo>(&self, conn: &C, slow_code: u16) -> Result<(), RoleEnd> {
        let mut batch = self.batch.take();
        let member = self.membership.member();
        let slow = || RoleEnd::Close(slow_code, SLOW_CONSUMER_REASON.into());
        loop {
            if member.must_close() {
                return Err(slow());
            }
            batch.clear();
            member.take_frames(&mut batch, MAX_FRAMES_PER_WRITE);
            if batch.is_empty() {
                break;
            }
            let bytes = batch.iter().map(|f| f.len()).sum();
            conn.count_out(batch.len() as u64, bytes);
            let deadline = Instant::now() + conn.send_timeout();
            let mut write = pin!(conn.io().write_frames(batch));
            let closed = poll_fn(|cx| member.poll_closed(cx));
            let written = match conn
                .guard()
                .within_pinned(deadline, pin!(select(write.as_mut(), closed)))
                .await
            {
                Some(Either::Left((written, _))) => written,
                Some(Either::Right(((), _))) => {
                    let grace = Instant::now() + CLOSE_WAIT;
                    return match conn.guard().within_pinned(grace, write).await {
                        Some((Ok(()), _)) => Err(slow()),
                        _ => Err(RoleEnd::Gone),
                    };
                }
                None => return Err(RoleEnd::Gone),
            };
            batch = match written {
                (Ok(()), batch) => batch,
                (Err(_), _) => return Err(RoleEnd::Gone),
            };
        }
        self.batch.set(batch);
        Ok(())
    }
}
