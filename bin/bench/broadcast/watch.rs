//! How far every subscriber has got, which closes each publisher's window end to end.
//!
//! A publisher's message stays outstanding until it is back at the publisher and every
//! subscriber has it. On one server the publisher's own copy comes about when the last
//! subscriber's does; when the subscribers are on another node (`--subscribe-url`) it comes
//! back through its local hub long before the others cross the nodes, and a window counted on
//! it alone would not bound what waits between them. Counting every subscriber (not only the
//! first one the server writes to) makes the window the backlog of the slowest, the same in
//! every placement.
//!
//! Per publisher, a ring of `window` counters: message `seq` is counted in slot
//! `seq % window` by each subscriber that gets it, and when the oldest outstanding message's
//! count reaches the number of subscribers it is no longer outstanding. A publisher never has
//! more than `window` messages past that point, so a slot is free again before it is reused.

use std::cell::Cell;
use std::fmt;
use std::future::poll_fn;
use std::task::{Poll, Waker};

/// Every subscriber's progress per publisher, and the publishers waiting for it.
pub(super) struct Watch {
    subscribers: u32,
    publishers: Vec<Progress>,
    /// A subscriber stopped: windows count on the publishers' own copies alone.
    closed: Cell<bool>,
}

/// One publisher's messages as the subscribers get them.
struct Progress {
    /// Messages every subscriber has.
    everyone: Cell<u64>,
    /// Subscribers that have message `seq`, in slot `seq % window`, for the outstanding ones.
    arrivals: Box<[Cell<u32>]>,
    /// The publisher, when it waits for `everyone` to grow.
    waiting: Cell<Option<Waker>>,
}

impl Watch {
    /// Nothing received yet from `publishers` publishers, each with at most `window` messages
    /// outstanding, by `subscribers` subscribers.
    pub(super) fn new(publishers: usize, window: usize, subscribers: usize) -> Self {
        Self {
            subscribers: u32::try_from(subscribers.max(1)).unwrap_or(u32::MAX),
            publishers: (0..publishers)
                .map(|_| Progress {
                    everyone: Cell::new(0),
                    arrivals: (0..window.max(1)).map(|_| Cell::new(0)).collect(),
                    waiting: Cell::new(None),
                })
                .collect(),
            closed: Cell::new(false),
        }
    }

    fn progress(&self, publisher: u64) -> Option<&Progress> {
        self.publishers.get(usize::try_from(publisher).ok()?)
    }

    /// How many messages of `publisher` every subscriber has, or `None` once a subscriber
    /// stopped (or for a publisher index out of range).
    pub(super) fn everyone(&self, publisher: u64) -> Option<u64> {
        if self.closed.get() {
            return None;
        }
        Some(self.progress(publisher)?.everyone.get())
    }

    /// A subscriber got message `seq` of `publisher` (verified: in order, intact).
    pub(super) fn arrived(&self, publisher: u64, seq: u64) {
        if self.closed.get() {
            return;
        }
        let Some(progress) = self.progress(publisher) else {
            return;
        };
        let ring = progress.arrivals.len() as u64;
        let slot = |seq: u64| &progress.arrivals[(seq % ring) as usize];
        slot(seq).set(slot(seq).get() + 1);
        let mut everyone = progress.everyone.get();
        if seq != everyone {
            return;
        }
        while slot(everyone).get() >= self.subscribers {
            slot(everyone).set(0);
            everyone += 1;
        }
        if everyone != progress.everyone.get() {
            progress.everyone.set(everyone);
            if let Some(waker) = progress.waiting.take() {
                waker.wake();
            }
        }
    }

    /// A subscriber stopped (done or failed): nobody waits for the subscribers any more.
    pub(super) fn close(&self) {
        self.closed.set(true);
        for progress in &self.publishers {
            if let Some(waker) = progress.waiting.take() {
                waker.wake();
            }
        }
    }

    /// Waits until every subscriber has more than `seen` messages of `publisher`, or a
    /// subscriber stopped. One publisher waits on its own index at a time.
    pub(super) async fn wait_past(&self, publisher: u64, seen: u64) {
        poll_fn(
            |cx| match (self.everyone(publisher), self.progress(publisher)) {
                (Some(everyone), Some(progress)) if everyone <= seen => {
                    progress.waiting.set(Some(cx.waker().clone()));
                    Poll::Pending
                }
                _ => Poll::Ready(()),
            },
        )
        .await;
    }
}

impl fmt::Debug for Watch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let everyone: Vec<u64> = self.publishers.iter().map(|p| p.everyone.get()).collect();
        f.debug_struct("Watch")
            .field("subscribers", &self.subscribers)
            .field("everyone", &everyone)
            .field("closed", &self.closed.get())
            .finish_non_exhaustive()
    }
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

    fn waker() -> (Arc<Counter>, Waker) {
        let counter = Arc::new(Counter(AtomicUsize::new(0)));
        let waker = Waker::from(Arc::clone(&counter));
        (counter, waker)
    }

    #[test]
    fn a_message_counts_once_every_subscriber_has_it_whatever_the_order() {
        let watch = Watch::new(2, 4, 3);
        let arrive = |seqs: std::ops::Range<u64>| seqs.for_each(|seq| watch.arrived(1, seq));
        // Subscriber 0 is a whole window ahead, subscriber 2 behind.
        arrive(0..4);
        arrive(0..3);
        assert_eq!(watch.everyone(1), Some(0));
        arrive(0..1);
        assert_eq!(watch.everyone(1), Some(1));
        arrive(1..3);
        assert_eq!(watch.everyone(1), Some(3));
        // Across the ring's wrap: 4, 5 and 6 reuse the slots of 0, 1 and 2.
        arrive(4..7);
        arrive(3..7);
        assert_eq!(watch.everyone(1), Some(3));
        arrive(3..4);
        assert_eq!(watch.everyone(1), Some(4));
        arrive(4..7);
        assert_eq!((watch.everyone(0), watch.everyone(1)), (Some(0), Some(7)));
    }

    #[test]
    fn a_wait_ends_when_every_subscriber_has_more() {
        let watch = Watch::new(2, 8, 2);
        let (counter, waker) = waker();
        let mut cx = Context::from_waker(&waker);
        let mut wait = pin!(watch.wait_past(1, 0));
        assert!(wait.as_mut().poll(&mut cx).is_pending());
        // One subscriber, or another publisher, is not enough.
        watch.arrived(1, 0);
        watch.arrived(0, 0);
        watch.arrived(0, 0);
        assert_eq!(counter.0.load(Ordering::Relaxed), 0);
        assert!(wait.as_mut().poll(&mut cx).is_pending());
        watch.arrived(1, 0);
        assert_eq!(counter.0.load(Ordering::Relaxed), 1);
        assert!(wait.as_mut().poll(&mut cx).is_ready());
        // Already past: ready at once.
        assert!(pin!(watch.wait_past(1, 0)).poll(&mut cx).is_ready());
    }

    #[test]
    fn closing_releases_every_wait_and_hides_the_counts() {
        let watch = Watch::new(1, 4, 1);
        let (counter, waker) = waker();
        let mut cx = Context::from_waker(&waker);
        let mut wait = pin!(watch.wait_past(0, 5));
        assert!(wait.as_mut().poll(&mut cx).is_pending());
        watch.close();
        assert_eq!(counter.0.load(Ordering::Relaxed), 1);
        assert!(wait.as_mut().poll(&mut cx).is_ready());
        assert_eq!(watch.everyone(0), None);
        // Out-of-range publishers neither panic nor wait.
        watch.arrived(7, 0);
        assert!(
            pin!(Watch::new(1, 4, 1).wait_past(7, 0))
                .poll(&mut cx)
                .is_ready()
        );
    }
}
