//! The connection's memory against the server-wide buffer budget
//! ([`crate::server::buffer_budget`]): what it gives back when idle or when the budget is
//! spent, what it takes before a read that needs a larger buffer, and the pause (no reads, so
//! TCP holds the client back) while the budget cannot cover it.

use super::*;
use crate::server::buffer_budget::pause_retries;
/// Close reason of a connection paused for the buffer budget until its idle timeout.
const BUSY_REASON: &str = "server busy";

/// Why the connection may not read yet.
#[derive(Debug, Clone, Copy)]
pub(super) enum Pause {
    /// The budget is spent and this connection holds part of a message: wait until it is not.
    UntilUnder,
    /// The next frame needs this many more bytes of buffer than the budget has left.
    ForFrame(usize),
}

impl<T: Transport> WsConnection<T> {
    /// Bytes the connection's buffers hold beyond their idle size, with the read buffer at
    /// `read_capacity`.
    fn buffered_with(&self, read_capacity: usize) -> usize {
        read_capacity.saturating_sub(INITIAL_BUFFER)
            + self.out.capacity()
            + self.session.held_bytes()
    }

    /// Tells the budget what the buffers hold now (growths already made are counted).
    fn account(&self, buf: &[u8], capacity: usize) -> usize {
        debug_assert!(buf.len() <= capacity);
        let now = self.buffered_with(capacity);
        let guard = self.stream.guard();
        if now != guard.held() {
            guard.hold(now);
        }
        now
    }

    /// Frees what the connection need not keep. With `pressed` (the budget is spent): every
    /// buffer that holds no unanswered bytes. Otherwise any buffer that grew past
    /// [`BURST_BUFFER`] for one large message, once that message is answered; and when the
    /// client's last burst (`last_read`: the bytes read since the buffer last held nothing)
    /// used less than an eighth of an empty read buffer (its bursts got smaller, or it went
    /// quiet), the read buffer down to twice that burst, with the write batch and the
    /// reassembly buffer.
    fn give_back(&mut self, buf: &mut Vec<u8>, last_read: usize, pressed: bool) {
        let capacity = buf.capacity();
        let idle = buf.is_empty()
            && (capacity > BURST_BUFFER || (capacity > INITIAL_BUFFER && last_read < capacity / 8));
        let all = pressed || idle;
        if buf.is_empty() && all {
            let keep = if pressed {
                INITIAL_BUFFER
            } else {
                last_read
                    .saturating_mul(2)
                    .next_power_of_two()
                    .clamp(INITIAL_BUFFER, BURST_BUFFER)
            };
            if keep < capacity {
                *buf = Vec::with_capacity(keep);
            }
        }
        let out = self.out.capacity();
        if self.out.is_empty() && (out > BURST_BUFFER || (all && out > 0)) {
            self.out = Vec::new();
        }
        if all || self.session.held_bytes() > BURST_BUFFER {
            // Kept while a message is open or unanswered.
            self.session.release_memory();
        }
    }

    /// Sizes the read buffer for the next read: gives back what is idle, then takes from the
    /// budget what the next frame needs (and, while the client bursts, room for more). `Some`
    /// when the connection must pause instead of reading.
    pub(super) fn size_read_buffer(
        &mut self,
        buf: &mut Vec<u8>,
        last_read: usize,
        filled: bool,
    ) -> Option<Pause> {
        self.give_back(buf, last_read, false);
        let mut held = self.account(buf, buf.capacity());
        if held > 0 && self.stream.guard().budget().over() {
            self.give_back(buf, 0, true);
            held = self.account(buf, buf.capacity());
            if held > 0 {
                return Some(Pause::UntilUnder);
            }
        }
        let want = self.session.bytes_needed(buf);
        let capacity = buf.capacity();
        let guard = self.stream.guard();
        if capacity < want {
            if !guard.try_hold(self.buffered_with(want)) {
                return Some(Pause::ForFrame(want - capacity));
            }
            buf.reserve_exact(want - buf.len());
        } else if buf.len() == capacity || (filled && capacity < BURST_BUFFER) {
            // Pipelined messages are read, answered and written in batches rather than a
            // buffer's worth at a time, if the budget allows: the capacity doubles.
            let doubled = capacity.max(INITIAL_BUFFER / 2) * 2;
            if guard.try_hold(self.buffered_with(doubled)) {
                buf.reserve_exact(doubled - buf.len());
            }
        }
        // The allocator's answer is what counts.
        self.account(buf, buf.capacity());
        None
    }

    /// Waits, reading nothing, until the budget has what `pause` needs. Heartbeats go on; the
    /// drain ends the wait with 1001, and the idle timeout (the clock runs from the last
    /// whole frame) with 1013, since the server, not the client, is behind.
    pub(super) async fn pause_for_budget(
        &self,
        pause: Pause,
        last_heard: Instant,
        next_ping: &mut Instant,
    ) -> Result<(), End> {
        let guard = self.stream.guard();
        let budget = guard.budget();
        budget.count_pause();
        let timeout = self.ctx.router.routes()[self.route_index].ws.timeout;
        let idle_at = last_heard + timeout;
        let mut retries = pause_retries();
        loop {
            let ready = match pause {
                Pause::UntilUnder => !budget.over(),
                Pause::ForFrame(bytes) => budget.has_room(bytes),
            };
            if ready {
                return Ok(());
            }
            self.keep_alive(next_ping).await?;
            let now = Instant::now();
            if now >= idle_at {
                return Err(End::Close(close_code::TRY_AGAIN_LATER, BUSY_REASON.into()));
            }
            // The registry's sweep wakes the wait (and the drain does): no timer of its own.
            let retry = retries.next().unwrap_or(Duration::from_secs(1));
            let wake_at = (now + retry).min(idle_at).min(*next_ping);
            let nothing = pin!(std::future::pending::<()>());
            let _ = guard.until(wake_at, nothing).await;
        }
    }
}
