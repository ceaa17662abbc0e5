//! One worker's members per topic, and delivering a frame to them.
//!
//! Everything here belongs to one worker thread: delivering takes no lock. Each member has a
//! [`SubscriberQueue`] bounded by `max_backpressure`; delivery offers the shared frame to every
//! queue (compressed once for the members that agreed permessage-deflate, [`super::compress`])
//! and wakes the member's connection, which writes what is queued in one vectored write.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use slab::Slab;

use super::compress::{FrameVariants, FreshCompressors};
use super::topics::Topic;
use crate::routes::broadcast::member_queue::{Offered, SlowConsumer, SubscriberQueue};

/// A member's side of the topic: its queue and the connection waiting on it.
#[derive(Debug)]
pub struct Member {
    state: RefCell<MemberState>,
    /// The server window the member agreed for permessage-deflate (`None`: not agreed).
    deflate_window_bits: Option<u8>,
}

#[derive(Debug)]
struct MemberState {
    queue: SubscriberQueue,
    /// The member's connection, while it waits for frames.
    waker: Option<Waker>,
    /// The policy decided to close this member.
    close: bool,
}

impl Member {
    /// Ready when frames wait or the member must be closed.
    pub fn poll_ready(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut state = self.state.borrow_mut();
        if state.close || !state.queue.is_empty() {
            return Poll::Ready(());
        }
        match &state.waker {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            _ => state.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// Ready once the slow-consumer policy has closed this member.
    pub fn poll_closed(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut state = self.state.borrow_mut();
        if state.close {
            return Poll::Ready(());
        }
        match &state.waker {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            _ => state.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// Moves up to `max` queued frames into `batch`, oldest first.
    pub fn take_frames(&self, batch: &mut Vec<Bytes>, max: usize) {
        let mut state = self.state.borrow_mut();
        while batch.len() < max
            && let Some(frame) = state.queue.pop()
        {
            batch.push(frame);
        }
    }

    /// Whether the slow-consumer policy closed this member.
    pub fn must_close(&self) -> bool {
        self.state.borrow().close
    }

    /// Offers a frame; wakes the connection when there is something to do.
    fn offer(&self, frame: Bytes, outcome: &mut Delivery) {
        let waker = {
            let mut state = self.state.borrow_mut();
            if state.close {
                return;
            }
            match state.queue.offer(frame) {
                Offered::Queued => outcome.queued += 1,
                Offered::QueuedDropping { dropped } => {
                    outcome.queued += 1;
                    outcome.dropped += dropped as u64;
                }
                Offered::Dropped => {
                    outcome.dropped += 1;
                    return;
                }
                Offered::Close => {
                    state.close = true;
                    outcome.closed += 1;
                }
            }
            state.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// A connection's place in a topic on its worker; leaving is dropping it.
#[derive(Debug)]
pub struct Membership {
    topics: Rc<RefCell<LocalTopics>>,
    topic: Arc<Topic>,
    key: usize,
    member: Rc<Member>,
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.topics.borrow_mut().leave(&self.topic, self.key);
    }
}

impl Membership {
    /// The member's queue.
    pub fn member(&self) -> &Rc<Member> {
        &self.member
    }

    /// The topic.
    pub fn topic(&self) -> &Arc<Topic> {
        &self.topic
    }

    /// The member's key among the topic's members on this worker (to skip the sender).
    pub fn key(&self) -> usize {
        self.key
    }
}

/// What one delivery did, for the counters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    /// Frames queued to members.
    pub queued: u64,
    /// Frames dropped by `drop` / `keep_latest`.
    pub dropped: u64,
    /// Members the `close` policy closed.
    pub closed: u64,
}

/// One worker's topics that have members on it, keyed by the topic's address (the same for
/// every worker while the topic lives: each member's [`Membership`] holds the topic).
#[derive(Debug)]
pub struct LocalTopics {
    worker: usize,
    topics: HashMap<usize, Slab<Rc<Member>>>,
    /// The worker's compressors, shared with its echo replies.
    compressors: Rc<RefCell<FreshCompressors>>,
}

fn topic_key(topic: &Topic) -> usize {
    std::ptr::from_ref(topic) as usize
}

impl LocalTopics {
    /// No topics yet, on worker `worker`, compressing with `compressors`.
    pub fn new(worker: usize, compressors: Rc<RefCell<FreshCompressors>>) -> Self {
        Self {
            worker,
            topics: HashMap::new(),
            compressors,
        }
    }

    /// Adds a member to `topic` on this worker, with a queue of `max_bytes` under `policy`,
    /// sent compressed frames when it agreed permessage-deflate with the server window
    /// `deflate_window_bits`. Counted in the topic before it returns, so a publish that starts
    /// afterwards on any core reaches the member.
    pub fn join(
        topics: &Rc<RefCell<Self>>,
        topic: Arc<Topic>,
        max_bytes: usize,
        policy: SlowConsumer,
        deflate_window_bits: Option<u8>,
    ) -> Membership {
        let member = Rc::new(Member {
            state: RefCell::new(MemberState {
                queue: SubscriberQueue::new(max_bytes, policy),
                waker: None,
                close: false,
            }),
            deflate_window_bits,
        });
        let key = {
            let mut this = topics.borrow_mut();
            topic.joined(this.worker);
            let members = this.topics.entry(topic_key(&topic)).or_default();
            members.insert(Rc::clone(&member))
        };
        Membership {
            topics: Rc::clone(topics),
            topic,
            key,
            member,
        }
    }

    /// Removes member `member` of `topic`; the topic is forgotten on this worker with its last
    /// member.
    fn leave(&mut self, topic: &Topic, member: usize) {
        let key = topic_key(topic);
        let Some(members) = self.topics.get_mut(&key) else {
            return;
        };
        if members.try_remove(member).is_some() {
            topic.left(self.worker);
        }
        if members.is_empty() {
            self.topics.remove(&key);
        }
    }

    /// Offers `frame` to every member of `topic` on this worker except `skip`.
    pub fn deliver(&self, topic: &Topic, frame: &Bytes, skip: Option<usize>) -> Delivery {
        let mut outcome = Delivery::default();
        if let Some(members) = self.topics.get(&topic_key(topic)) {
            let mut variants = FrameVariants::new(frame);
            let mut compressors = self.compressors.borrow_mut();
            for (key, member) in members {
                if Some(key) != skip {
                    let frame = variants.for_member(member.deflate_window_bits, &mut compressors);
                    member.offer(frame, &mut outcome);
                }
            }
        }
        outcome
    }

    /// Members of `topic` on this worker.
    pub fn members(&self, topic: &Topic) -> usize {
        self.topics.get(&topic_key(topic)).map_or(0, Slab::len)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;
    use crate::routes::broadcast::TopicRegistry;

    fn frames(member: &Member) -> Vec<u8> {
        let mut batch = Vec::new();
        member.take_frames(&mut batch, usize::MAX);
        batch.iter().map(|f| f[0]).collect()
    }

    fn join(
        local: &Rc<RefCell<LocalTopics>>,
        topic: &Arc<Topic>,
        max: usize,
        policy: SlowConsumer,
    ) -> Membership {
        LocalTopics::join(local, Arc::clone(topic), max, policy, None)
    }

    #[test]
    fn members_get_every_frame_but_the_skipped_sender() {
        let registry = TopicRegistry::new(1);
        let local = Rc::new(RefCell::new(LocalTopics::new(0, Rc::default())));
        let topic = registry.get_or_create("t");
        let a = join(&local, &topic, 1024, SlowConsumer::Close);
        let b = join(&local, &topic, 1024, SlowConsumer::Close);
        assert_eq!(topic.total(), 2);
        let outcome = local
            .borrow()
            .deliver(&topic, &Bytes::from_static(&[1]), None);
        assert_eq!(outcome.queued, 2);
        local
            .borrow()
            .deliver(&topic, &Bytes::from_static(&[2]), Some(a.key()));
        assert_eq!(frames(a.member()), [1]);
        assert_eq!(frames(b.member()), [1, 2]);
        drop(a);
        assert_eq!((topic.total(), local.borrow().members(&topic)), (1, 1));
        drop(b);
        assert_eq!((topic.total(), local.borrow().topics.len()), (0, 0));
    }

    #[test]
    fn a_full_member_is_dropped_or_closed_per_policy_and_the_rest_still_receive() {
        let registry = TopicRegistry::new(1);
        let local = Rc::new(RefCell::new(LocalTopics::new(0, Rc::default())));
        let topic = registry.get_or_create("t");
        let slow_close = join(&local, &topic, 2, SlowConsumer::Close);
        let slow_drop = join(&local, &topic, 2, SlowConsumer::Drop);
        let fast = join(&local, &topic, 1024, SlowConsumer::Close);
        let mut total = Delivery::default();
        for n in 0..5u8 {
            let d = local.borrow().deliver(&topic, &Bytes::from(vec![n]), None);
            total.queued += d.queued;
            total.dropped += d.dropped;
            total.closed += d.closed;
        }
        assert_eq!(total.closed, 1);
        assert_eq!(total.dropped, 3);
        assert!(slow_close.member().must_close());
        assert!(!slow_drop.member().must_close());
        assert_eq!(frames(slow_drop.member()), [0, 1]);
        assert_eq!(frames(fast.member()), [0, 1, 2, 3, 4]);
    }
}
