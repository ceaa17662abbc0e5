//! Which Redis server holds what when `[cluster] redis` lists several, and what each one's
//! link has to do.
//!
//! A topic belongs to one server by its name and a client (its connection counts, rate budgets
//! and bans) to one by its key: a stable hash every node computes alike (SipHash-1-3 with fixed
//! keys), then jump consistent hashing (Lamping and Veach, 2014) over the list, so adding a
//! server at its end moves only the share of topics and clients that lands on the new one.
//! Every node must list the same servers in the same order (checked at connection: each node
//! writes which shard of how many it takes a server to be). With one server, everything is on
//! it and nothing is hashed.
//!
//! Each shard has its own reachability (a server that is away suspends only what it holds) and
//! its own queues of work for the link: topics to follow, bans to spread, leases to renew.

use std::collections::HashSet;
use std::hash::Hasher as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use ringstream_limits::identity::ClientKey;
use siphasher::sip::SipHasher13;
use tokio::sync::Notify;

use super::leases::Renewal;

/// The bucket in `0..buckets` that `key` falls in (jump consistent hashing: going from `n` to
/// `n + 1` buckets moves a key only into the new one, and about `1 / (n + 1)` of them).
pub fn jump(mut key: u64, buckets: usize) -> usize {
    let buckets = i64::try_from(buckets).unwrap_or(i64::MAX).max(1);
    let (mut bucket, mut next) = (-1_i64, 0_i64);
    while next < buckets {
        bucket = next;
        key = key.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
        let step = f64::from(1_u32 << 31) / (((key >> 33) + 1) as f64);
        next = ((bucket + 1) as f64 * step) as i64;
    }
    usize::try_from(bucket).unwrap_or(0)
}

/// A hash of `bytes` that every node and every version computes alike.
fn stable_hash(tag: u8, bytes: &[u8]) -> u64 {
    let mut hasher = SipHasher13::new_with_keys(0, 0);
    hasher.write_u8(tag);
    hasher.write(bytes);
    hasher.finish()
}

/// What the workers hand one shard's link, and whether that shard is reachable.
#[derive(Debug, Default)]
pub struct ShardWork {
    /// Whether this shard's server is reachable now.
    pub reachable: AtomicBool,
    /// Wakes the shard's link.
    pub wake: Notify,
    /// Topics whose member count on this node went to or from 0.
    pub topics: Mutex<HashSet<Box<str>>>,
    /// Bans this node decided, for the others.
    pub bans: Mutex<Vec<(ClientKey, Duration)>>,
    /// Leases that asked for more cells.
    pub renewals: Mutex<Vec<Renewal>>,
}

/// Locks `mutex`, whatever a panicking holder left.
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl ShardWork {
    /// Adds `item` to `queue` and wakes the link if the queue was empty.
    pub fn push<T>(&self, queue: &Mutex<Vec<T>>, item: T) {
        let first = {
            let mut queue = lock(queue);
            queue.push(item);
            queue.len() == 1
        };
        if first {
            self.wake.notify_one();
        }
    }
}

/// The Redis servers of a cluster, as every node numbers them.
#[derive(Debug)]
pub struct Shards {
    work: Box<[ShardWork]>,
    /// Servers written for logs (without user or password).
    labels: Box<[String]>,
    /// Whether every shard is reachable (one load on the paths that ask most).
    all_reachable: AtomicBool,
}

impl Shards {
    /// The shards of `urls`, in their order; none reachable yet.
    pub fn new(urls: &[String]) -> Self {
        Self {
            work: urls.iter().map(|_| ShardWork::default()).collect(),
            labels: urls.iter().map(|url| label(url)).collect(),
            all_reachable: AtomicBool::new(false),
        }
    }

    /// How many servers there are.
    pub fn len(&self) -> usize {
        self.work.len()
    }

    /// Shard `index`'s work and state.
    pub fn get(&self, index: usize) -> &ShardWork {
        &self.work[index]
    }

    /// Shard `index`'s server as logs name it.
    pub fn label(&self, index: usize) -> &str {
        &self.labels[index]
    }

    /// The shard holding topic `name`.
    pub fn of_topic(&self, name: &str) -> usize {
        match self.len() {
            1 => 0,
            n => jump(stable_hash(b't', name.as_bytes()), n),
        }
    }

    /// The shard holding `client`'s counts, budgets and bans.
    pub fn of_client(&self, client: ClientKey) -> usize {
        match self.len() {
            1 => 0,
            n => {
                let hash = match client {
                    ClientKey::V4(address) => stable_hash(b'4', &address.to_be_bytes()),
                    ClientKey::V6(network) => stable_hash(b'6', &network.to_be_bytes()),
                    ClientKey::Named(hash) => stable_hash(b'n', &hash.to_be_bytes()),
                };
                jump(hash, n)
            }
        }
    }

    /// Whether shard `index` is reachable.
    pub fn reachable(&self, index: usize) -> bool {
        self.work[index].reachable.load(Ordering::Acquire)
    }

    /// Whether every shard is reachable.
    pub fn all_reachable(&self) -> bool {
        self.all_reachable.load(Ordering::Acquire)
    }

    /// How many shards are reachable.
    pub fn reachable_count(&self) -> usize {
        self.work
            .iter()
            .filter(|w| w.reachable.load(Ordering::Acquire))
            .count()
    }

    /// Shard `index` became reachable or went away.
    pub fn set_reachable(&self, index: usize, reachable: bool) {
        self.work[index]
            .reachable
            .store(reachable, Ordering::Release);
        let all = self
            .work
            .iter()
            .all(|w| w.reachable.load(Ordering::Acquire));
        self.all_reachable.store(all, Ordering::Release);
    }
}

/// `url` without its user and password.
fn label(url: &str) -> String {
    let rest = url.strip_prefix("redis://").unwrap_or(url);
    let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    format!("redis://{host}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jump_hashing_matches_the_published_values_and_moves_keys_only_to_a_new_bucket() {
        // Buckets the paper's C++ code gives (as other implementations test them).
        for (key, bucket) in [
            (10_863_919_174_838_991_u64, 6),
            (2_016_238_256_797_177_309, 3),
            (1_673_758_223_894_951_030, 5),
        ] {
            assert_eq!(jump(key, 11), bucket, "{key}");
        }
        let key = 0xDEAD_BEEF_u64;
        for n in 1..64 {
            let (before, after) = (jump(key, n), jump(key, n + 1));
            assert!(after == before || after == n, "{n}: {before} -> {after}");
        }
        let mut moved = 0;
        for k in 0..10_000_u64 {
            let hash = stable_hash(b't', &k.to_le_bytes());
            let (three, four) = (jump(hash, 3), jump(hash, 4));
            assert!(three == four || four == 3);
            moved += usize::from(three != four);
        }
        assert!(
            (2_000..3_000).contains(&moved),
            "about a quarter moved: {moved}"
        );
    }

    #[test]
    fn topics_and_clients_spread_over_the_shards_and_one_shard_holds_all() {
        let urls: Vec<String> = (0..3).map(|i| format!("redis://h{i}")).collect();
        let shards = Shards::new(&urls);
        let mut per_shard = [0; 3];
        for i in 0..3_000_u32 {
            per_shard[shards.of_topic(&format!("room.{i}"))] += 1;
            per_shard[shards.of_client(ClientKey::V4(i))] += 1;
        }
        assert!(
            per_shard.iter().all(|&n| (1_700..2_300).contains(&n)),
            "{per_shard:?}"
        );
        let one = Shards::new(&urls[..1]);
        assert_eq!(one.of_topic("room.1"), 0);
        assert_eq!(one.of_client(ClientKey::Named(9)), 0);
    }

    #[test]
    fn reachability_is_per_shard_and_labels_hide_passwords() {
        let urls = [
            "redis://u:secret@h1:6379/2".to_owned(),
            "redis://h2".to_owned(),
        ];
        let shards = Shards::new(&urls);
        assert_eq!(shards.label(0), "redis://h1:6379/2");
        assert!(!shards.all_reachable());
        shards.set_reachable(0, true);
        assert!(shards.reachable(0) && !shards.all_reachable());
        shards.set_reachable(1, true);
        assert!(shards.all_reachable());
        assert_eq!(shards.reachable_count(), 2);
        shards.set_reachable(0, false);
        assert!(!shards.all_reachable() && shards.reachable(1));
    }
}
