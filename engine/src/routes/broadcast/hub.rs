//! What the workers share for broadcast: the topic registry and one inbox per worker.
//!
//! A publishing core delivers to its own members directly and posts the frame once to each
//! other core with members of the topic; that core's inbox task fans it out locally. An inbox
//! is a mutex over a vector that the owner swaps out whole, so a burst of posts costs the
//! owner one lock and one wake-up; posts from one core keep their order.

use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;

use super::topics::{Topic, TopicRegistry};

/// A frame for the members of `topic` on the receiving core.
#[derive(Debug)]
pub struct Post {
    /// The topic; holding it keeps the topic alive while the frame is in flight.
    pub topic: Arc<Topic>,
    /// The encoded server frame, shared with every other core's members.
    pub frame: Bytes,
}

#[derive(Debug, Default)]
struct InboxState {
    posts: Vec<Post>,
    /// The owner's inbox task, while it waits.
    waker: Option<Waker>,
}

#[derive(Debug, Default)]
struct Inbox {
    state: Mutex<InboxState>,
}

/// The topics and the inboxes of every worker.
#[derive(Debug)]
pub struct Hub {
    /// Every live topic, by name.
    pub topics: TopicRegistry,
    inboxes: Box<[Inbox]>,
}

impl Hub {
    /// A hub for `workers` workers.
    pub fn new(workers: usize) -> Self {
        let workers = workers.max(1);
        Self {
            topics: TopicRegistry::new(workers),
            inboxes: (0..workers).map(|_| Inbox::default()).collect(),
        }
    }

    /// Hands `frame` to worker `worker` for its members of `topic`.
    pub fn post(&self, worker: usize, topic: &Arc<Topic>, frame: &Bytes) {
        let Some(inbox) = self.inboxes.get(worker) else {
            return;
        };
        let waker = {
            let mut state = inbox.state.lock().unwrap_or_else(PoisonError::into_inner);
            state.posts.push(Post {
                topic: Arc::clone(topic),
                frame: frame.clone(),
            });
            state.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Worker `worker`'s side: swaps its pending posts into `batch` (which must be empty), or
    /// registers to be woken by the next post.
    pub fn poll_posts(
        &self,
        worker: usize,
        cx: &mut Context<'_>,
        batch: &mut Vec<Post>,
    ) -> Poll<()> {
        let Some(inbox) = self.inboxes.get(worker) else {
            return Poll::Pending;
        };
        let mut state = inbox.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.posts.is_empty() {
            match &state.waker {
                Some(waker) if waker.will_wake(cx.waker()) => {}
                _ => state.waker = Some(cx.waker().clone()),
            }
            return Poll::Pending;
        }
        std::mem::swap(&mut state.posts, batch);
        Poll::Ready(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    struct CountingWaker(AtomicUsize);

    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn posts_arrive_in_order_and_wake_the_owner_once_per_wait() {
        let hub = Hub::new(2);
        let topic = hub.topics.get_or_create("t");
        let counter = Arc::new(CountingWaker(AtomicUsize::new(0)));
        let waker = Waker::from(Arc::clone(&counter));
        let mut cx = Context::from_waker(&waker);
        let mut batch = Vec::new();
        assert!(hub.poll_posts(1, &mut cx, &mut batch).is_pending());
        for n in 0..3u8 {
            hub.post(1, &topic, &Bytes::from(vec![n]));
        }
        assert_eq!(counter.0.load(Ordering::SeqCst), 1);
        assert!(hub.poll_posts(1, &mut cx, &mut batch).is_ready());
        let frames: Vec<u8> = batch.iter().map(|p| p.frame[0]).collect();
        assert_eq!(frames, [0, 1, 2]);
        batch.clear();
        assert!(hub.poll_posts(0, &mut cx, &mut batch).is_pending());
        assert!(hub.poll_posts(1, &mut cx, &mut batch).is_pending());
    }
}
