//! The watched subscriber's progress, which closes each publisher's window end to end.
//!
//! A publisher's message stays outstanding until it is back at the publisher and has reached
//! the first subscriber. On one server the two come at about the same time; when the
//! subscribers are on another node (`--subscribe-url`) the publisher's own copy comes back
//! through its local hub long before the others cross the nodes, and a window counted on it
//! alone would not bound what waits between the nodes.

use std::cell::Cell;
use std::fmt;
use std::future::poll_fn;
use std::task::{Poll, Waker};

/// Per publisher, how many of its messages the watched subscriber received; and the task of
/// the publisher waiting for more, if it waits.
pub(super) struct Watch {
    received: Vec<Cell<u64>>,
    waiting: Vec<Cell<Option<Waker>>>,
    /// The watched subscriber stopped: windows count on the publishers' own copies alone.
    closed: Cell<bool>,
}

impl Watch {
    /// Nothing received yet from `publishers` publishers.
    pub(super) fn new(publishers: usize) -> Self {
        Self {
            received: (0..publishers).map(|_| Cell::new(0)).collect(),
            waiting: (0..publishers).map(|_| Cell::new(None)).collect(),
            closed: Cell::new(false),
        }
    }

    /// How many messages of `publisher` the watched subscriber received, or `None` once it
    /// stopped (or for a publisher index out of range).
    pub(super) fn received(&self, publisher: u64) -> Option<u64> {
        if self.closed.get() {
            return None;
        }
        Some(self.received.get(index(publisher)?)?.get())
    }

    /// The watched subscriber received the next message of `publisher` (already verified).
    pub(super) fn advance(&self, publisher: u64) {
        let Some(i) = index(publisher) else { return };
        if let (Some(count), Some(waiting)) = (self.received.get(i), self.waiting.get(i)) {
            count.set(count.get() + 1);
            if let Some(waker) = waiting.take() {
                waker.wake();
            }
        }
    }

    /// The watched subscriber stopped (done or failed): nobody waits for it any more.
    pub(super) fn close(&self) {
        self.closed.set(true);
        for waiting in &self.waiting {
            if let Some(waker) = waiting.take() {
                waker.wake();
            }
        }
    }

    /// Waits until the watched subscriber has received more than `seen` messages of
    /// `publisher`, or stopped. One publisher waits on its own index at a time.
    pub(super) async fn wait_past(&self, publisher: u64, seen: u64) {
        poll_fn(|cx| match self.received(publisher) {
            Some(received) if received <= seen => {
                if let Some(waiting) = index(publisher).and_then(|i| self.waiting.get(i)) {
                    waiting.set(Some(cx.waker().clone()));
                    return Poll::Pending;
                }
                Poll::Ready(())
            }
            _ => Poll::Ready(()),
        })
        .await;
    }
}

impl fmt::Debug for Watch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let received: Vec<u64> = self.received.iter().map(Cell::get).collect();
        f.debug_struct("Watch")
            .field("received", &received)
            .field("closed", &self.closed.get())
            .finish_non_exhaustive()
    }
}

fn index(publisher: u64) -> Option<usize> {
    usize::try_from(publisher).ok()
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::pin::pin;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::{Context, Wake};

    use super::*;

    /// Counts its wake-ups.
    struct Counter(AtomicUsize);

    impl Wake for Counter {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn a_wait_ends_when_its_publisher_advances_past_what_was_seen() {
        let watch = Watch::new(2);
        let counter = Arc::new(Counter(AtomicUsize::new(0)));
        let waker = Waker::from(Arc::clone(&counter));
        let mut cx = Context::from_waker(&waker);
        let mut wait = pin!(watch.wait_past(1, 0));
        assert!(wait.as_mut().poll(&mut cx).is_pending());
        // Another publisher's progress does not wake it.
        watch.advance(0);
        assert_eq!(counter.0.load(Ordering::Relaxed), 0);
        assert!(wait.as_mut().poll(&mut cx).is_pending());
        watch.advance(1);
        assert_eq!(counter.0.load(Ordering::Relaxed), 1);
        assert!(wait.as_mut().poll(&mut cx).is_ready());
        assert_eq!((watch.received(0), watch.received(1)), (Some(1), Some(1)));
        // Already past: ready at once.
        assert!(pin!(watch.wait_past(1, 0)).poll(&mut cx).is_ready());
    }

    #[test]
    fn closing_releases_every_wait_and_hides_the_counts() {
        let watch = Watch::new(1);
        let counter = Arc::new(Counter(AtomicUsize::new(0)));
        let waker = Waker::from(Arc::clone(&counter));
        let mut cx = Context::from_waker(&waker);
        let mut wait = pin!(watch.wait_past(0, 5));
        assert!(wait.as_mut().poll(&mut cx).is_pending());
        watch.close();
        assert_eq!(counter.0.load(Ordering::Relaxed), 1);
        assert!(wait.as_mut().poll(&mut cx).is_ready());
        assert_eq!(watch.received(0), None);
        // Out-of-range publishers neither panic nor wait.
        watch.advance(7);
        assert!(pin!(Watch::new(1).wait_past(7, 0)).poll(&mut cx).is_ready());
    }
}
