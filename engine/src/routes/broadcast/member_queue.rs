//! One subscriber's queue of outgoing frames, bounded in bytes, with the slow-consumer policy
//! of PROTECTIONS.md ("slow subscriber (broadcast)").
//!
//! A broadcast frame is encoded once and shared: every subscriber's queue holds a refcounted
//! [`Bytes`] view of the same allocation, so a queued frame costs a pointer, not a copy. What
//! is bounded is the bytes a subscriber has not taken yet (`max_backpressure`); past it the
//! policy decides: drop the new frame, drop the oldest ones to make room for it (for
//! streams where only the latest value matters), or close the subscriber. A subscriber that
//! never reads therefore holds at most `max_backpressure` bytes (plus one frame under
//! `keep_latest`, when a single frame is larger than the bound).

use std::collections::VecDeque;

use bytes::Bytes;

/// What happens to a frame that does not fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlowConsumer {
    /// The new frame is dropped (and counted); the subscriber keeps what it had.
    Drop,
    /// The oldest frames are dropped (and counted) until the new one fits.
    KeepLatest,
    /// The subscriber is closed (1008, or 1013 when configured).
    Close,
}

/// The outcome of [`SubscriberQueue::offer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offered {
    /// The frame is queued.
    Queued,
    /// The frame is queued after `dropped` older frames were dropped to make room.
    QueuedDropping {
        /// Older frames dropped.
        dropped: usize,
    },
    /// The frame was dropped.
    Dropped,
    /// The subscriber is too slow and must be closed; nothing was queued.
    Close,
}

/// A subscriber's pending frames.
#[derive(Debug)]
pub struct SubscriberQueue {
    frames: VecDeque<Bytes>,
    queued_bytes: usize,
    max_bytes: usize,
    policy: SlowConsumer,
    dropped: u64,
}

impl SubscriberQueue {
    /// An empty queue holding at most `max_bytes` (`max_backpressure`) under `policy`.
    pub fn new(max_bytes: usize, policy: SlowConsumer) -> Self {
        Self {
            frames: VecDeque::new(),
            queued_bytes: 0,
            max_bytes,
            policy,
            dropped: 0,
        }
    }

    /// Offers one encoded frame to the subscriber.
    pub fn offer(&mut self, frame: Bytes) -> Offered {
        if self.queued_bytes + frame.len() <= self.max_bytes {
            self.push(frame);
            return Offered::Queued;
        }
        match self.policy {
            SlowConsumer::Drop => {
                self.dropped += 1;
                Offered::Dropped
            }
            SlowConsumer::Close => Offered::Close,
            SlowConsumer::KeepLatest => {
                let mut dropped = 0;
                while self.queued_bytes + frame.len() > self.max_bytes {
                    let Some(oldest) = self.frames.pop_front() else {
                        break;
                    };
                    self.queued_bytes -= oldest.len();
                    dropped += 1;
                }
                self.dropped += dropped as u64;
                self.push(frame);
                Offered::QueuedDropping { dropped }
            }
        }
    }

    /// Takes the oldest pending frame, for the writer.
    pub fn pop(&mut self) -> Option<Bytes> {
        let frame = self.frames.pop_front()?;
        self.queued_bytes -= frame.len();
        Some(frame)
    }

    /// Moves every pending frame into `batch` (oldest first), for one vectored write.
    pub fn drain_into(&mut self, batch: &mut Vec<Bytes>) {
        batch.extend(self.frames.drain(..));
        self.queued_bytes = 0;
    }

    /// Bytes waiting to be written.
    pub fn queued_bytes(&self) -> usize {
        self.queued_bytes
    }

    /// Frames waiting to be written.
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Frames dropped by the policy so far.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    fn push(&mut self, frame: Bytes) {
        self.queued_bytes += frame.len();
        self.frames.push_back(frame);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;
    use proptest::prelude::*;

    fn frame(tag: u8, len: usize) -> Bytes {
        Bytes::from(vec![tag; len])
    }

    fn tags(queue: &mut SubscriberQueue) -> Vec<u8> {
        let mut batch = Vec::new();
        queue.drain_into(&mut batch);
        batch.iter().map(|f| f[0]).collect()
    }

    #[test]
    fn frames_fit_until_the_bound_then_drop_drops_the_new_one() {
        let mut queue = SubscriberQueue::new(10, SlowConsumer::Drop);
        assert_eq!(queue.offer(frame(1, 4)), Offered::Queued);
        assert_eq!(queue.offer(frame(2, 6)), Offered::Queued);
        assert_eq!(queue.offer(frame(3, 1)), Offered::Dropped);
        assert_eq!(
            (queue.queued_bytes(), queue.len(), queue.dropped()),
            (10, 2, 1)
        );
        assert_eq!(queue.pop().unwrap()[0], 1);
        assert_eq!(queue.offer(frame(4, 4)), Offered::Queued);
        assert_eq!(tags(&mut queue), [2, 4]);
        assert_eq!(queue.queued_bytes(), 0);
    }

    #[test]
    fn keep_latest_drops_the_oldest_until_the_new_frame_fits() {
        let mut queue = SubscriberQueue::new(10, SlowConsumer::KeepLatest);
        for tag in 1..=5 {
            queue.offer(frame(tag, 3));
        }
        // 3 frames of 3 bytes fit in 10; each newer one pushed the oldest out.
        assert_eq!(queue.dropped(), 2);
        assert_eq!(
            queue.offer(frame(6, 7)),
            Offered::QueuedDropping { dropped: 2 }
        );
        assert_eq!(tags(&mut queue), [5, 6]);
        // A frame larger than the bound alone is still delivered, as the latest value.
        assert_eq!(queue.offer(frame(7, 3)), Offered::Queued);
        assert_eq!(
            queue.offer(frame(8, 20)),
            Offered::QueuedDropping { dropped: 1 }
        );
        assert_eq!(tags(&mut queue), [8]);
    }

    #[test]
    fn close_queues_nothing_and_asks_for_the_close() {
        let mut queue = SubscriberQueue::new(4, SlowConsumer::Close);
        assert_eq!(queue.offer(frame(1, 4)), Offered::Queued);
        assert_eq!(queue.offer(frame(2, 1)), Offered::Close);
        assert_eq!(queue.len(), 1);
        assert_eq!(queue.dropped(), 0);
    }

    #[test]
    fn queued_frames_share_the_encoded_bytes() {
        let shared = frame(9, 64);
        let mut a = SubscriberQueue::new(1024, SlowConsumer::Drop);
        let mut b = SubscriberQueue::new(1024, SlowConsumer::Drop);
        a.offer(shared.clone());
        b.offer(shared.clone());
        assert_eq!(a.pop().unwrap().as_ptr(), shared.as_ptr());
        assert_eq!(b.pop().unwrap().as_ptr(), shared.as_ptr());
    }

    proptest! {
        #[test]
        fn a_subscriber_that_never_reads_stays_bounded(
            lens in proptest::collection::vec(1usize..300, 1..200),
            keep_latest in any::<bool>(),
        ) {
            let policy = if keep_latest { SlowConsumer::KeepLatest } else { SlowConsumer::Drop };
            let mut queue = SubscriberQueue::new(1000, policy);
            let mut offered = 0u64;
            for len in lens {
                let outcome = queue.offer(frame(0, len));
                offered += 1;
                prop_assert!(queue.queued_bytes() <= 1000);
                prop_assert_ne!(outcome, Offered::Close);
            }
            prop_assert_eq!(queue.len() as u64 + queue.dropped(), offered);
        }
    }
}
