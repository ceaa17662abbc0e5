//! This node's clients' connection counts, as they change, for the link to mirror into Redis.
//!
//! The client table tells the mirror of every opening (with the client's key) and every
//! closing (by the client's state) through [`CountWatcher`]. The mirror keeps each client with
//! connections under its state's address, marks it changed for the Redis server that holds
//! the client, and wakes that server's link, which reads the counts of the changed clients
//! when it gets to them: a burst of changes to one client is one write. A client is forgotten
//! once the link has mirrored a count of 0.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::shards::Shards;
use ringstream_limits::client_table::{ClientState, CountWatcher};
use ringstream_limits::identity::ClientKey;

const SHARDS: usize = 16;

#[derive(Debug)]
struct Tracked {
    key: ClientKey,
    /// The Redis server holding the client.
    shard: usize,
    state: Arc<ClientState>,
    /// The count last handed to the link.
    mirrored: u32,
}

/// The clients with connections on this node, and which of them changed.
#[derive(Debug)]
pub struct Mirror {
    shards: Box<[Mutex<HashMap<usize, Tracked>>]>,
    hasher: RandomState,
    /// Per Redis server, the clients whose count changed.
    changed: Box<[Mutex<HashSet<usize>>]>,
    servers: Arc<Shards>,
}

fn address(client: &Arc<ClientState>) -> usize {
    Arc::as_ptr(client) as usize
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Mirror {
    /// An empty mirror for the Redis servers `servers` (it wakes their links).
    pub fn new(servers: Arc<Shards>) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            hasher: RandomState::new(),
            changed: (0..servers.len()).map(|_| Mutex::default()).collect(),
            servers,
        }
    }

    fn shard(&self, at: usize) -> MutexGuard<'_, HashMap<usize, Tracked>> {
        lock(&self.shards[(self.hasher.hash_one(at) as usize) % SHARDS])
    }

    fn mark(&self, at: usize, server: usize) {
        let first = {
            let mut changed = lock(&self.changed[server]);
            changed.insert(at);
            changed.len() == 1
        };
        if first {
            self.servers.get(server).wake.notify_one();
        }
    }

    /// The key of `client`, while it has connections on this node.
    pub fn key_of(&self, client: &Arc<ClientState>) -> Option<ClientKey> {
        let at = address(client);
        self.shard(at).get(&at).map(|tracked| tracked.key)
    }

    /// The clients of Redis server `server` whose count changed since the last call, with
    /// their counts now; a client at 0 is forgotten.
    pub fn take_changes(&self, server: usize) -> Vec<(ClientKey, u32)> {
        let changed = std::mem::take(&mut *lock(&self.changed[server]));
        let mut out = Vec::with_capacity(changed.len());
        for at in changed {
            let mut shard = self.shard(at);
            let Some(tracked) = shard.get_mut(&at) else {
                continue;
            };
            let count = tracked.state.connections();
            if count != tracked.mirrored {
                tracked.mirrored = count;
                out.push((tracked.key, count));
            }
            if count == 0 {
                shard.remove(&at);
            }
        }
        out
    }

    /// Every client of Redis server `server` with connections here and its count (to write
    /// again after that server returns).
    pub fn all(&self, server: usize) -> Vec<(ClientKey, u32)> {
        let mut out = Vec::new();
        for shard in self.shards.iter() {
            for tracked in lock(shard).values_mut().filter(|t| t.shard == server) {
                tracked.mirrored = tracked.state.connections();
                if tracked.mirrored > 0 {
                    out.push((tracked.key, tracked.mirrored));
                }
            }
        }
        out
    }
}

impl CountWatcher for Mirror {
    fn opened(&self, key: ClientKey, client: &Arc<ClientState>) {
        let at = address(client);
        let server = self
            .shard(at)
            .entry(at)
            .or_insert_with(|| Tracked {
                key,
                shard: self.servers.of_client(key),
                state: Arc::clone(client),
                mirrored: 0,
            })
            .shard;
        self.mark(at, server);
    }

    fn closed(&self, client: &Arc<ClientState>) {
        let at = address(client);
        let server = self.shard(at).get(&at).map(|tracked| tracked.shard);
        if let Some(server) = server {
            self.mark(at, server);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;
    use ringstream_limits::client_table::{ClientTable, ConnectionPolicy};

    #[test]
    fn changes_are_read_once_coalesced_and_a_client_at_zero_is_forgotten() {
        let servers = Arc::new(Shards::new(&["redis://a".to_owned()]));
        let mirror = Arc::new(Mirror::new(servers));
        let table = ClientTable::new(100, 1_000_000_000, 0);
        assert!(table.watch_counts(Arc::clone(&mirror) as Arc<dyn CountWatcher>));
        let key = ClientKey::V4(7);
        let client = table.client(key, 0);
        let policy = ConnectionPolicy::default();
        let (a, _) = table.admit_connection(key, &client, &policy, 0, 0);
        let (b, _) = table.admit_connection(key, &client, &policy, 0, 0);
        assert_eq!(mirror.key_of(&client), Some(key));
        assert_eq!(mirror.take_changes(0), [(key, 2)]);
        assert!(mirror.take_changes(0).is_empty());
        assert_eq!(mirror.all(0), [(key, 2)]);
        drop(a);
        drop(b);
        assert_eq!(mirror.take_changes(0), [(key, 0)]);
        assert_eq!(mirror.key_of(&client), None);
        let (c, _) = table.admit_connection(key, &client, &policy, 0, 0);
        drop(c);
        assert!(
            mirror.take_changes(0).is_empty(),
            "0 -> 1 -> 0 unseen: nothing to write"
        );
    }
}
