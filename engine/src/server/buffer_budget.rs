//! The server-wide budget for buffered bytes (`max_buffered_bytes`): memory that connections
//! hold beyond their idle size for partial messages and request bodies.
//!
//! A connection's buffers start small; what they grow beyond that (a WebSocket read buffer
//! that holds a large frame, a fragmented message being reassembled, a publish body, an
//! upload's read buffer and write batch, a large request head) is taken from this budget, and
//! given back when the buffers shrink or the connection ends. A growth the budget cannot
//! cover is not made: the connection stops reading and TCP holds its client back until
//! others give memory back. So the memory a flood of half-sent maximum-size messages can pin
//! is bounded by the budget, not by connections × maximum size.
//!
//! Each connection's share is kept in its registry entry (see
//! [`crate::server::registry::ConnGuard::try_hold`]), so that it is given back on every path
//! the connection ends by. One atomic add per growth and one per give-back, never per read.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use crate::server::registry::SWEEP_INTERVAL;

/// `max_buffered_bytes` when the configuration does not set it.
pub const DEFAULT_MAX_BUFFERED_BYTES: usize = 256 * 1024 * 1024;
/// Longest wait of a paused connection between two looks at the budget.
const MAX_PAUSE_RETRY: Duration = Duration::from_secs(1);

/// How long a paused connection waits before each look at the budget: one sweep of the
/// registry (which wakes it: no timer of its own), then twice as long each time up to a
/// second, so that thousands of paused connections cost little.
pub fn pause_retries() -> impl Iterator<Item = Duration> {
    std::iter::successors(Some(SWEEP_INTERVAL), |d| {
        Some((*d * 2).min(MAX_PAUSE_RETRY))
    })
}

/// Bytes held across all workers against `max_buffered_bytes`.
#[derive(Debug)]
pub struct BufferBudget {
    limit: usize,
    used: AtomicUsize,
    /// Times a connection stopped reading because the budget was spent.
    pauses: AtomicU64,
}

impl Default for BufferBudget {
    /// A budget that never refuses (for servers built in tests without a configuration).
    fn default() -> Self {
        Self::new(usize::MAX)
    }
}

impl BufferBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            used: AtomicUsize::new(0),
            pauses: AtomicU64::new(0),
        }
    }

    /// `max_buffered_bytes`.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Bytes held now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// Times a connection stopped reading because the budget was spent.
    pub fn pauses(&self) -> u64 {
        self.pauses.load(Ordering::Relaxed)
    }

    /// Counts one connection that stopped reading for the budget.
    pub fn count_pause(&self) {
        self.pauses.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether more is held than the budget allows (growths that had already happened were
    /// counted: a fragment appended to its message, a buffer the allocator rounded up).
    pub fn over(&self) -> bool {
        self.used() > self.limit
    }

    /// Whether `bytes` more would fit now (another worker may take them first).
    pub fn has_room(&self, bytes: usize) -> bool {
        self.used().saturating_add(bytes) <= self.limit
    }

    /// Takes `bytes` if they fit in what is left; `false` (nothing taken) otherwise.
    pub fn try_take(&self, bytes: usize) -> bool {
        let before = self.used.fetch_add(bytes, Ordering::Relaxed);
        if before.saturating_add(bytes) > self.limit {
            self.used.fetch_sub(bytes, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// Takes `bytes` whether or not they fit: memory already allocated.
    pub fn take(&self, bytes: usize) {
        self.used.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Gives back `bytes` taken before.
    pub fn give_back(&self, bytes: usize) {
        self.used.fetch_sub(bytes, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_what_fits_and_refuses_the_rest() {
        let budget = BufferBudget::new(100);
        assert!(budget.try_take(60));
        assert!(!budget.try_take(41), "61 + 41 > 100");
        assert_eq!(budget.used(), 60, "a refused take leaves nothing behind");
        assert!(budget.try_take(40));
        assert!(!budget.over());
        budget.take(5);
        assert!(budget.over(), "a forced take may go past the limit");
        budget.give_back(105);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn the_default_never_refuses() {
        let budget = BufferBudget::default();
        assert!(budget.try_take(usize::MAX / 2));
        assert!(budget.try_take(usize::MAX / 4));
        assert!(!budget.over());
    }
}
