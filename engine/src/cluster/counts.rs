//! Other nodes' connection counts: each node's count of each client, as their control
//! messages and counts hashes tell it, and the sum per client that admission reads.
//!
//! The detail per node belongs to the link thread alone ([`NodeCounts`]); workers read only
//! the sums ([`RemoteCounts`], sharded mutexes, one lookup per admission of a limited client,
//! skipped while no other node has a connection open). A node whose heartbeat stops for
//! [`NODE_TTL`] is forgotten with its counts, so a node killed with its connections open leaves
//! no phantom connections behind.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use ringstream_limits::identity::ClientKey;

/// A node silent for this long is gone (its heartbeat comes every second).
pub const NODE_TTL: Duration = Duration::from_secs(5);
const SHARDS: usize = 16;

/// Connections of each client open on the other nodes, summed.
#[derive(Debug)]
pub struct RemoteCounts {
    shards: Box<[Mutex<HashMap<ClientKey, u32>>]>,
    hasher: RandomState,
    /// Clients with a count above 0 (0: admission skips the lookup).
    clients: AtomicUsize,
}

impl Default for RemoteCounts {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            hasher: RandomState::new(),
            clients: AtomicUsize::new(0),
        }
    }
}

impl RemoteCounts {
    /// Connections of `client` open on other nodes.
    pub fn of(&self, client: ClientKey) -> u32 {
        if self.clients.load(Ordering::Acquire) == 0 {
            return 0;
        }
        self.shard(client).get(&client).copied().unwrap_or(0)
    }

    /// Clients with connections on other nodes.
    pub fn clients(&self) -> usize {
        self.clients.load(Ordering::Acquire)
    }

    fn adjust(&self, client: ClientKey, from: u32, to: u32) {
        if from == to {
            return;
        }
        let mut shard = self.shard(client);
        let total = shard.entry(client).or_insert(0);
        let before = *total;
        *total = total.saturating_sub(from).saturating_add(to);
        let after = *total;
        if after == 0 {
            shard.remove(&client);
        }
        drop(shard);
        if before == 0 && after > 0 {
            self.clients.fetch_add(1, Ordering::AcqRel);
        } else if before > 0 && after == 0 {
            self.clients.fetch_sub(1, Ordering::AcqRel);
        }
    }

    fn shard(&self, client: ClientKey) -> std::sync::MutexGuard<'_, HashMap<ClientKey, u32>> {
        let index = (self.hasher.hash_one(client) as usize) % self.shards.len();
        self.shards[index]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

#[derive(Debug)]
struct Node {
    heard: Instant,
    clients: HashMap<ClientKey, u32>,
}

/// Each other node's count of each client (the link thread's own), kept summed in a
/// [`RemoteCounts`].
///
/// After a reconnection the counts are read again from the nodes' hashes while control
/// messages keep arriving on another connection: a count a message brought during that read
/// is newer than (or as new as) the hash's, so the hash's value is kept only for the pairs no
/// message updated meanwhile (every hash write is followed by its message, so what the read
/// missed arrives after it).
#[derive(Debug, Default)]
pub struct NodeCounts {
    nodes: HashMap<String, Node>,
    /// While counts are read from the hashes: the pairs a message updated meanwhile.
    seeding: Option<std::collections::HashSet<(String, ClientKey)>>,
    /// While counts are read from the hashes: the nodes that reset their counts meanwhile
    /// (their hashes may be read from before).
    reset_while_seeding: std::collections::HashSet<String>,
}

impl NodeCounts {
    /// Node `node` has `count` connections of `client` open (heard at `now`).
    pub fn set(
        &mut self,
        totals: &RemoteCounts,
        node: &str,
        client: ClientKey,
        count: u32,
        now: Instant,
    ) {
        if let Some(updated) = &mut self.seeding {
            updated.insert((node.to_owned(), client));
        }
        self.put(totals, node, client, count, now);
    }

    /// Forgets every node and starts reading counts from the hashes ([`Self::seed`]).
    pub fn begin_seed(&mut self, totals: &RemoteCounts) {
        self.clear(totals);
        self.seeding = Some(Default::default());
        self.reset_while_seeding.clear();
    }

    /// Node `node` writes its counts anew: what it said before is forgotten (it stays alive).
    pub fn reset(&mut self, totals: &RemoteCounts, node: &str, now: Instant) {
        self.forget(totals, node);
        self.heard(node, now);
        if self.seeding.is_some() {
            self.reset_while_seeding.insert(node.to_owned());
        }
    }

    /// A count read from node `node`'s hash: kept unless a message updated it since
    /// [`Self::begin_seed`].
    pub fn seed(
        &mut self,
        totals: &RemoteCounts,
        node: &str,
        client: ClientKey,
        count: u32,
        now: Instant,
    ) {
        let newer = self.reset_while_seeding.contains(node)
            || self
                .seeding
                .as_ref()
                .is_some_and(|updated| updated.contains(&(node.to_owned(), client)));
        if !newer {
            self.put(totals, node, client, count, now);
        }
    }

    /// The hashes are read: messages alone update the counts again.
    pub fn end_seed(&mut self) {
        self.seeding = None;
        self.reset_while_seeding.clear();
    }

    fn put(
        &mut self,
        totals: &RemoteCounts,
        node: &str,
        client: ClientKey,
        count: u32,
        now: Instant,
    ) {
        let entry = self.node(node, now);
        let before = if count == 0 {
            entry.clients.remove(&client).unwrap_or(0)
        } else {
            entry.clients.insert(client, count).unwrap_or(0)
        };
        totals.adjust(client, before, count);
    }

    /// The nodes known.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.nodes.keys().map(String::as_str)
    }

    /// Node `node` is alive at `now`.
    pub fn heard(&mut self, node: &str, now: Instant) {
        self.node(node, now);
    }

    /// Forgets node `node` and its counts.
    pub fn forget(&mut self, totals: &RemoteCounts, node: &str) {
        if let Some(gone) = self.nodes.remove(node) {
            for (client, count) in gone.clients {
                totals.adjust(client, count, 0);
            }
        }
    }

    /// Forgets every node silent since `now - NODE_TTL`; returns their ids.
    pub fn expire(&mut self, totals: &RemoteCounts, now: Instant) -> Vec<String> {
        let silent: Vec<String> = self
            .nodes
            .iter()
            .filter(|(_, node)| now.saturating_duration_since(node.heard) >= NODE_TTL)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &silent {
            self.forget(totals, id);
        }
        silent
    }

    /// Forgets every node (Redis went away: what they had is unknown).
    pub fn clear(&mut self, totals: &RemoteCounts) {
        let ids: Vec<String> = self.nodes.keys().cloned().collect();
        for id in ids {
            self.forget(totals, &id);
        }
    }

    /// Other nodes known alive.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    fn node(&mut self, node: &str, now: Instant) -> &mut Node {
        let entry = self.nodes.entry(node.to_owned()).or_insert_with(|| Node {
            heard: now,
            clients: HashMap::new(),
        });
        entry.heard = entry.heard.max(now);
        entry
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: ClientKey = ClientKey::V4(1);
    const B: ClientKey = ClientKey::V4(2);

    #[test]
    fn counts_from_several_nodes_are_summed_and_follow_each_update() {
        let totals = RemoteCounts::default();
        let mut nodes = NodeCounts::default();
        let now = Instant::now();
        assert_eq!(totals.of(A), 0);
        nodes.set(&totals, "n1", A, 2, now);
        nodes.set(&totals, "n2", A, 3, now);
        nodes.set(&totals, "n2", B, 1, now);
        assert_eq!((totals.of(A), totals.of(B), totals.clients()), (5, 1, 2));
        nodes.set(&totals, "n1", A, 1, now);
        assert_eq!(totals.of(A), 4);
        nodes.set(&totals, "n2", B, 0, now);
        assert_eq!((totals.of(B), totals.clients()), (0, 1));
        nodes.forget(&totals, "n2");
        assert_eq!((totals.of(A), nodes.len()), (1, 1));
        nodes.clear(&totals);
        assert_eq!((totals.of(A), totals.clients(), nodes.len()), (0, 0, 0));
    }

    #[test]
    fn a_count_read_from_a_hash_never_overrides_a_message_that_came_meanwhile() {
        let totals = RemoteCounts::default();
        let mut nodes = NodeCounts::default();
        let now = Instant::now();
        nodes.set(&totals, "n1", A, 5, now);
        nodes.begin_seed(&totals);
        assert_eq!(totals.of(A), 0, "forgotten: the hashes say again");
        // The node's last connection closed while its hash was being read.
        nodes.set(&totals, "n1", A, 0, now);
        nodes.seed(&totals, "n1", A, 2, now);
        nodes.seed(&totals, "n1", B, 1, now);
        nodes.end_seed();
        assert_eq!((totals.of(A), totals.of(B)), (0, 1));
        nodes.set(&totals, "n1", A, 3, now);
        assert_eq!(totals.of(A), 3);
        // A node that resets while its hash is read: only what it says after counts.
        nodes.begin_seed(&totals);
        nodes.reset(&totals, "n1", now);
        nodes.seed(&totals, "n1", B, 4, now);
        nodes.end_seed();
        assert_eq!((totals.of(A), totals.of(B), nodes.len()), (0, 0, 1));
    }

    #[test]
    fn a_silent_node_is_forgotten_with_its_counts() {
        let totals = RemoteCounts::default();
        let mut nodes = NodeCounts::default();
        let start = Instant::now();
        nodes.set(&totals, "dead", A, 4, start);
        nodes.set(&totals, "alive", A, 1, start);
        nodes.heard("alive", start + NODE_TTL);
        assert!(nodes.expire(&totals, start + NODE_TTL / 2).is_empty());
        assert_eq!(nodes.expire(&totals, start + NODE_TTL), ["dead"]);
        assert_eq!((totals.of(A), nodes.len()), (1, 1));
    }
}
