//! The connection's memory against the server-wide buffer budget
//! ([`crate::server::buffer_budget`]): a request head's read buffer beyond its first size, a
//! publish body, an upload's large read buffer and write batch. A growth the budget cannot
//! cover pauses the connection (nothing is read, TCP holds the client back) until it can, or
//! until the wait's deadline: then 503 with `Retry-After`.

use std::time::{Duration, Instant};

use super::{Connection, INITIAL_BUFFER, Stop};
use crate::routes::Refused;
use crate::server::buffer_budget::pause_retries;
use crate::server::transport::Transport;

/// The answer to a request whose head or body the budget could not hold before its deadline.
pub(super) const BUSY: Refused = Refused {
    status: 503,
    headers: &[("Retry-After", b"1")],
};

impl<T: Transport> Connection<T> {
    /// Takes `more` bytes from the buffer budget, pausing (no reads) until they fit; `Err`
    /// (503) once `deadline` passes first.
    pub(super) async fn hold_more(&self, more: usize, deadline: Instant) -> Result<(), Stop> {
        let guard = self.stream.guard();
        let total = |held: usize| held.saturating_add(more);
        if guard.try_hold(total(guard.held())) {
            return Ok(());
        }
        guard.budget().count_pause();
        let mut retries = pause_retries();
        loop {
            let now = Instant::now();
            if now >= deadline {
                return Err(Stop::RefuseWith(BUSY));
            }
            let retry = retries.next().unwrap_or(Duration::from_secs(1));
            let nothing = std::pin::pin!(std::future::pending::<()>());
            let _ = guard
                .within_pinned((now + retry).min(deadline), nothing)
                .await;
            if guard.try_hold(total(guard.held())) {
                return Ok(());
            }
        }
    }

    /// Gives `less` bytes back to the buffer budget.
    pub(super) fn hold_less(&self, less: usize) {
        let guard = self.stream.guard();
        guard.hold(guard.held().saturating_sub(less));
    }

    /// Between requests (no body held): a read buffer that grew for a large head or a body
    /// goes back to its first size, or as near as its unanswered bytes allow.
    pub(super) fn give_back_read_buffer(&mut self) {
        if self.buf.capacity() > INITIAL_BUFFER {
            if self.pos == self.buf.len() {
                self.buf = Vec::with_capacity(INITIAL_BUFFER);
                self.pos = 0;
            } else {
                self.buf.shrink_to(INITIAL_BUFFER.max(self.buf.len()));
            }
        }
        let guard = self.stream.guard();
        guard.hold(self.buf.capacity().saturating_sub(INITIAL_BUFFER));
    }

    /// Grows a full read buffer (a head longer than it; the parser bounds heads) by as much
    /// again, once the budget holds the growth.
    pub(super) async fn grow_read_buffer(&mut self, deadline: Instant) -> Result<(), Stop> {
        let capacity = self.buf.capacity();
        let grown = capacity.max(INITIAL_BUFFER) * 2;
        self.hold_more(grown - capacity, deadline).await?;
        self.buf.reserve_exact(grown - self.buf.len());
        Ok(())
    }
}
