//! The server-wide topic registry: a topic by name, and its subscriber count on each worker.
//!
//! A worker looks a topic up when its first member of that topic joins (and keeps the `Arc`
//! while it has members) and when an HTTP publish names it; delivering a frame never touches
//! the registry. The registry holds topics weakly, so a topic with no member anywhere and no
//! frame in flight is freed; dead entries are swept as the registry is used.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};

use crate::cluster::Cluster;

/// Longest topic name, in bytes.
pub const MAX_TOPIC_LEN: usize = 128;
/// Registry shards (each a mutex over a map), so joins on different cores rarely meet.
const SHARDS: usize = 16;
/// A shard drops its dead entries after this many insertions.
const SWEEP_EVERY: u32 = 64;

/// Whether `name` can name a topic: 1 to [`MAX_TOPIC_LEN`] visible ASCII characters, no `/`.
pub fn valid_topic(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_TOPIC_LEN
        && name.bytes().all(|b| b.is_ascii_graphic() && b != b'/')
}

/// One topic: its name and how many members it has on each worker.
#[derive(Debug)]
pub struct Topic {
    name: Box<str>,
    /// Members per worker; a publishing core posts to the workers whose count is not 0.
    subscribers: Box<[AtomicU32]>,
    /// Members on every worker: the cluster is told when it leaves or reaches 0.
    members: AtomicU32,
    /// The cluster, when the node is one of several.
    cluster: Option<Arc<Cluster>>,
}

impl Topic {
    /// The topic's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Members on `worker`.
    pub fn on_worker(&self, worker: usize) -> u32 {
        // SeqCst pairs with `joined`: a member whose 101 was sent before a publish started is
        // seen by that publish.
        self.subscribers
            .get(worker)
            .map_or(0, |count| count.load(Ordering::SeqCst))
    }

    /// Members on every worker.
    pub fn total(&self) -> u64 {
        (0..self.subscribers.len())
            .map(|w| u64::from(self.on_worker(w)))
            .sum()
    }

    /// Workers, as indices, with at least one member.
    pub fn workers(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.subscribers.len()).filter(|&w| self.on_worker(w) > 0)
    }

    /// Members on this node.
    pub fn members(&self) -> u32 {
        self.members.load(Ordering::SeqCst)
    }

    /// Counts a member joining on `worker` (before its 101 is sent).
    pub(crate) fn joined(&self, worker: usize) {
        if let Some(count) = self.subscribers.get(worker) {
            count.fetch_add(1, Ordering::SeqCst);
            if self.members.fetch_add(1, Ordering::SeqCst) == 0 {
                self.presence_changed();
            }
        }
    }

    /// Counts a member leaving `worker`.
    pub(crate) fn left(&self, worker: usize) {
        if let Some(count) = self.subscribers.get(worker) {
            count.fetch_sub(1, Ordering::SeqCst);
            if self.members.fetch_sub(1, Ordering::SeqCst) == 1 {
                self.presence_changed();
            }
        }
    }

    /// The node's first member joined or its last left: the cluster subscribes or leaves.
    fn presence_changed(&self) {
        if let Some(cluster) = &self.cluster {
            cluster.topic_changed(&self.name);
        }
    }
}

#[derive(Debug, Default)]
struct Shard {
    topics: HashMap<Box<str>, Weak<Topic>>,
    inserts: u32,
}

/// Every live topic of the server, by name.
#[derive(Debug)]
pub struct TopicRegistry {
    shards: Box<[Mutex<Shard>]>,
    hasher: RandomState,
    workers: usize,
    /// The cluster every topic reports its presence to, when the node is one of several.
    cluster: OnceLock<Arc<Cluster>>,
}

impl TopicRegistry {
    /// An empty registry for a server of `workers` workers.
    pub fn new(workers: usize) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            hasher: RandomState::new(),
            workers: workers.max(1),
            cluster: OnceLock::new(),
        }
    }

    /// Shares topics with the other nodes of `cluster`: topics made from now on report their
    /// presence to it (set before any member joins).
    pub fn join_cluster(&self, cluster: Arc<Cluster>) {
        let _ = self.cluster.set(cluster);
    }

    /// The cluster, when the node is one of several.
    pub fn cluster(&self) -> Option<&Arc<Cluster>> {
        self.cluster.get()
    }

    fn shard(&self, name: &str) -> std::sync::MutexGuard<'_, Shard> {
        let index = (self.hasher.hash_one(name) as usize) % self.shards.len();
        self.shards[index]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The topic `name`, created if no one holds it.
    pub fn get_or_create(&self, name: &str) -> Arc<Topic> {
        let mut shard = self.shard(name);
        if let Some(topic) = shard.topics.get(name).and_then(Weak::upgrade) {
            return topic;
        }
        let topic = Arc::new(Topic {
            name: name.into(),
            subscribers: (0..self.workers).map(|_| AtomicU32::new(0)).collect(),
            members: AtomicU32::new(0),
            cluster: self.cluster.get().cloned(),
        });
        shard.topics.insert(name.into(), Arc::downgrade(&topic));
        shard.inserts += 1;
        if shard.inserts >= SWEEP_EVERY {
            shard.inserts = 0;
            shard.topics.retain(|_, topic| topic.strong_count() > 0);
        }
        topic
    }

    /// The topic `name` if it is alive (it has members, or frames in flight).
    pub fn get(&self, name: &str) -> Option<Arc<Topic>> {
        self.shard(name).topics.get(name).and_then(Weak::upgrade)
    }

    /// Live topics (dead entries are dropped as they are counted).
    pub fn live(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| {
                let mut shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
                shard.topics.retain(|_, topic| topic.strong_count() > 0);
                shard.topics.len()
            })
            .sum()
    }

    /// Up to `limit` live topics with their member counts, most members first, and the number
    /// of live topics.
    pub fn presence(&self, limit: usize) -> (Vec<(String, u64)>, usize) {
        let mut all = Vec::new();
        for shard in self.shards.iter() {
            let mut shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
            shard.topics.retain(|_, topic| topic.strong_count() > 0);
            all.extend(shard.topics.values().filter_map(Weak::upgrade));
        }
        let live = all.len();
        let mut counts: Vec<(String, u64)> = all
            .iter()
            .map(|topic| (topic.name().to_owned(), topic.total()))
            .filter(|(_, members)| *members > 0)
            .collect();
        counts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        counts.truncate(limit);
        (counts, live)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn a_topic_lives_while_held_and_counts_members_per_worker() {
        let registry = TopicRegistry::new(2);
        let topic = registry.get_or_create("room");
        assert!(Arc::ptr_eq(&topic, &registry.get_or_create("room")));
        topic.joined(0);
        topic.joined(1);
        topic.joined(1);
        assert_eq!(
            (topic.on_worker(0), topic.on_worker(1), topic.total()),
            (1, 2, 3)
        );
        assert_eq!(topic.workers().collect::<Vec<_>>(), [0, 1]);
        topic.left(0);
        assert_eq!(topic.workers().collect::<Vec<_>>(), [1]);
        assert_eq!(registry.presence(10), (vec![("room".to_owned(), 2)], 1));
        assert_eq!(registry.live(), 1);
        drop(topic);
        assert!(registry.get("room").is_none());
        assert_eq!(registry.presence(10), (vec![], 0));
    }

    #[test]
    fn dead_topics_are_swept_as_the_registry_is_used() {
        let registry = TopicRegistry::new(1);
        for i in 0..10_000 {
            drop(registry.get_or_create(&format!("t{i}")));
        }
        let entries: usize = registry
            .shards
            .iter()
            .map(|s| s.lock().unwrap().topics.len())
            .sum();
        assert!(entries <= SHARDS * SWEEP_EVERY as usize, "{entries}");
    }

    #[test]
    fn topic_names() {
        assert!(valid_topic("prices.EURUSD"));
        assert!(valid_topic(&"x".repeat(MAX_TOPIC_LEN)));
        for bad in ["", "a/b", "a b", "é", &"x".repeat(MAX_TOPIC_LEN + 1)] {
            assert!(!valid_topic(bad), "{bad:?}");
        }
    }
}
