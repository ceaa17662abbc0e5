//! The server-wide count of open connections, shared by every worker.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Open connections across all workers, against `max_connections`. One atomic add and one
/// subtract per connection (not per request), so sharing it across cores costs nothing that
/// shows.
#[derive(Debug)]
pub struct ConnectionCounter {
    open: AtomicUsize,
    max: usize,
}

impl ConnectionCounter {
    /// A counter admitting at most `max` connections at once.
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            open: AtomicUsize::new(0),
            max,
        })
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
        let counter = ConnectionCounter::new(2);
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
