//! The server-wide counts of what connections hold, shared by every worker: their places
//! (against `max_connections`) and, through [`BufferBudget`], their buffered bytes.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::server::buffer_budget::BufferBudget;

/// Open connections across all workers, against `max_connections`. One atomic add and one
/// subtract per connection (not per request), so sharing it across cores costs nothing that
/// shows.
#[derive(Debug)]
pub struct ConnectionCounter {
    open: AtomicUsize,
    max: usize,
    /// Bytes held beyond idle buffers, against `max_buffered_bytes`.
    budget: Arc<BufferBudget>,
}

impl ConnectionCounter {
    /// A counter admitting at most `max` connections at once, which together hold at most
    /// `max_buffered_bytes` beyond their idle buffers.
    pub fn new(max: usize, max_buffered_bytes: usize) -> Arc<Self> {
        Arc::new(Self {
            open: AtomicUsize::new(0),
            max,
            budget: Arc::new(BufferBudget::new(max_buffered_bytes)),
        })
    }

    /// The server-wide budget for buffered bytes.
    pub fn budget(&self) -> &Arc<BufferBudget> {
        &self.budget
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    /// Admits one more connection, or `None` when the server is full.
    pub fn try_acquire(self: &Arc<Self>) -> Option<ConnSlot> {
        let previous = self.open.fetch_add(1, Ordering::AcqRel);
        if previous >= self.max {
            self.open.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(ConnSlot {
            counter: Arc::clone(self),
        })
    }
}

/// One admitted connection; releases its place on every path, because it is released on drop.
#[derive(Debug)]
pub struct ConnSlot {
    counter: Arc<ConnectionCounter>,
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        self.counter.open.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_up_to_max_and_releases_on_drop() {
        let counter = ConnectionCounter::new(2, usize::MAX);
        let a = counter.try_acquire();
        let b = counter.try_acquire();
        assert!(a.is_some() && b.is_some());
        assert!(counter.try_acquire().is_none());
        assert_eq!(counter.open.load(Ordering::Acquire), 2);
        drop(a);
        assert!(counter.try_acquire().is_some());
        drop(b);
        assert_eq!(counter.open.load(Ordering::Acquire), 0);
    }
}
