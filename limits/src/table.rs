//! One core's per-client state, bounded: at most `capacity` clients are tracked; past it the
//! least recently seen client is forgotten (and counted), and clients idle for longer than
//! the idle time are dropped as the table is used.
//!
//! An attacker rotating source addresses therefore cannot grow memory past the bound: the
//! table degrades to forgetting the oldest entries, which [`KeyedTable::evictions`] counts for
//! the metrics. Every operation is O(1): a hash map from key to slot, and the slots linked in
//! order of last use.
//!
//! An entry can be *pinned* (the `_with` methods take the test): a pinned entry is never
//! forgotten, it is moved to the recent end instead. The engine pins clients with open
//! connections, whose counts must survive; there are at most `max_connections` of them, so the
//! table may then hold up to that many entries beyond its capacity.

use std::collections::HashMap;
use std::hash::Hash;

use slab::Slab;

/// No neighbour in the recency list.
const NIL: usize = usize::MAX;
/// Pinned entries moved aside per eviction or idle sweep before giving up.
const MAX_ROTATIONS: usize = 8;

#[derive(Debug)]
struct Node<K, V> {
    key: K,
    value: V,
    last_seen: u64,
    /// Towards the least recently seen end.
    older: usize,
    /// Towards the most recently seen end.
    newer: usize,
}

/// Per-client values of type `V` under keys of type `K`, bounded in count.
#[derive(Debug)]
pub struct KeyedTable<K, V> {
    index: HashMap<K, usize>,
    nodes: Slab<Node<K, V>>,
    /// Least recently seen.
    oldest: usize,
    /// Most recently seen.
    newest: usize,
    capacity: usize,
    idle_ns: u64,
    evictions: u64,
}

impl<K: Hash + Eq + Copy, V> KeyedTable<K, V> {
    /// A table of at most `capacity` clients (at least 1) that forgets a client unseen for
    /// `idle_ns` nanoseconds.
    pub fn new(capacity: usize, idle_ns: u64) -> Self {
        Self {
            index: HashMap::new(),
            nodes: Slab::new(),
            oldest: NIL,
            newest: NIL,
            capacity: capacity.max(1),
            idle_ns,
            evictions: 0,
        }
    }

    /// The value of `key` seen at `now`, created by `init` if the client is new (forgetting the
    /// least recently seen client if the table is full). Clients idle past the idle time are
    /// dropped first, a few per call.
    pub fn entry(&mut self, key: K, now: u64, init: impl FnOnce() -> V) -> &mut V {
        self.entry_with(key, now, init, |_| false)
    }

    /// [`Self::entry`], never forgetting an entry for which `pinned` holds.
    pub fn entry_with(
        &mut self,
        key: K,
        now: u64,
        init: impl FnOnce() -> V,
        pinned: impl Fn(&V) -> bool,
    ) -> &mut V {
        self.drop_idle_with(now, 2, &pinned);
        let slot = match self.index.get(&key) {
            Some(&slot) => {
                self.unlink(slot);
                slot
            }
            None => {
                if self.nodes.len() >= self.capacity {
                    self.evict_oldest(now, &pinned);
                }
                let slot = self.nodes.insert(Node {
                    key,
                    value: init(),
                    last_seen: now,
                    older: NIL,
                    newer: NIL,
                });
                self.index.insert(key, slot);
                slot
            }
        };
        self.push_newest(slot, now);
        &mut self.nodes[slot].value
    }

    /// The value of `key`, if tracked, without marking it seen.
    pub fn get(&self, key: &K) -> Option<&V> {
        self.index.get(key).map(|&slot| &self.nodes[slot].value)
    }

    /// Forgets `key`; returns its value.
    pub fn remove(&mut self, key: &K) -> Option<V> {
        let slot = self.index.remove(key)?;
        self.unlink(slot);
        Some(self.nodes.remove(slot).value)
    }

    /// Drops up to `budget` clients unseen since `now - idle`; returns how many it dropped.
    pub fn drop_idle(&mut self, now: u64, budget: usize) -> usize {
        self.drop_idle_with(now, budget, |_| false)
    }

    /// [`Self::drop_idle`], moving entries for which `pinned` holds to the recent end instead.
    pub fn drop_idle_with(
        &mut self,
        now: u64,
        budget: usize,
        pinned: impl Fn(&V) -> bool,
    ) -> usize {
        let mut dropped = 0;
        let mut rotations = 0;
        while dropped < budget
            && self.oldest != NIL
            && now.saturating_sub(self.nodes[self.oldest].last_seen) >= self.idle_ns
        {
            let oldest = self.oldest;
            if pinned(&self.nodes[oldest].value) {
                if rotations == MAX_ROTATIONS {
                    break;
                }
                rotations += 1;
                self.touch(oldest, now);
                continue;
            }
            let key = self.nodes[oldest].key;
            self.remove(&key);
            dropped += 1;
        }
        dropped
    }

    /// Every tracked key with its value, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.nodes.iter().map(|(_, node)| (&node.key, &node.value))
    }

    /// Every tracked value, in no particular order.
    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.nodes.iter().map(|(_, node)| &node.value)
    }

    /// Clients tracked now.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether no client is tracked.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Clients forgotten because the table was full (not because they were idle).
    pub fn evictions(&self) -> u64 {
        self.evictions
    }

    /// Forgets the least recently seen unpinned entry, if one is found within a few steps.
    fn evict_oldest(&mut self, now: u64, pinned: impl Fn(&V) -> bool) {
        for _ in 0..=MAX_ROTATIONS {
            let oldest = self.oldest;
            if oldest == NIL {
                return;
            }
            if pinned(&self.nodes[oldest].value) {
                self.touch(oldest, now);
                continue;
            }
            let key = self.nodes[oldest].key;
            self.remove(&key);
            self.evictions += 1;
            return;
        }
    }

    /// Marks `slot` seen at `now`.
    fn touch(&mut self, slot: usize, now: u64) {
        self.unlink(slot);
        self.push_newest(slot, now);
    }

    fn unlink(&mut self, slot: usize) {
        let (older, newer) = {
            let node = &self.nodes[slot];
            (node.older, node.newer)
        };
        match older {
            NIL => self.oldest = newer,
            o => self.nodes[o].newer = newer,
        }
        match newer {
            NIL => self.newest = older,
            n => self.nodes[n].older = older,
        }
    }

    fn push_newest(&mut self, slot: usize, now: u64) {
        let previous = self.newest;
        {
            let node = &mut self.nodes[slot];
            node.last_seen = node.last_seen.max(now);
            node.older = previous;
            node.newer = NIL;
        }
        match previous {
            NIL => self.oldest = slot,
            p => self.nodes[p].newer = slot,
        }
        self.newest = slot;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;
    use proptest::prelude::*;

    const SECOND: u64 = 1_000_000_000;

    #[test]
    fn a_full_table_forgets_the_least_recently_seen_client() {
        let mut table = KeyedTable::new(3, 60 * SECOND);
        for key in [1, 2, 3] {
            *table.entry(key, 0, || 0) += key;
        }
        // 1 is seen again, so 2 is now the oldest.
        *table.entry(1, 1, || 0) += 10;
        table.entry(4, 2, || 4);
        assert_eq!(table.len(), 3);
        assert_eq!(table.evictions(), 1);
        assert!(table.get(&2).is_none());
        assert_eq!(table.get(&1), Some(&11));
        assert_eq!(table.get(&3), Some(&3));
        assert_eq!(table.get(&4), Some(&4));
    }

    #[test]
    fn idle_clients_are_dropped_without_counting_as_evictions() {
        let mut table = KeyedTable::new(100, 10 * SECOND);
        table.entry(1, 0, || ());
        table.entry(2, 5 * SECOND, || ());
        table.entry(3, 12 * SECOND, || ());
        assert!(table.get(&1).is_none(), "idle for 12 s");
        assert!(table.get(&2).is_some());
        assert_eq!(table.drop_idle(100 * SECOND, usize::MAX), 2);
        assert!(table.is_empty());
        assert_eq!(table.evictions(), 0);
    }

    #[test]
    fn pinned_entries_are_never_forgotten() {
        let mut table = KeyedTable::new(2, 10 * SECOND);
        let pinned = |v: &u32| *v == 1;
        table.entry_with(1, 0, || 1, pinned);
        table.entry_with(2, 0, || 2, pinned);
        // Full: 1 is the oldest but pinned, so 2 goes.
        table.entry_with(3, 1, || 3, pinned);
        assert!(table.get(&1).is_some());
        assert!(table.get(&2).is_none());
        assert_eq!(table.evictions(), 1);
        // Long idle: 3 is dropped, 1 is kept.
        assert_eq!(table.drop_idle_with(100 * SECOND, usize::MAX, pinned), 1);
        assert_eq!(table.len(), 1);
        assert!(table.get(&1).is_some());
        // Only pinned entries left and the table full: the new one is let in beyond capacity.
        table.entry_with(4, 101 * SECOND, || 1, pinned);
        table.entry_with(5, 101 * SECOND, || 1, pinned);
        assert_eq!(table.len(), 3);
    }

    proptest! {
        /// Whatever the keys, the table never holds more than its capacity, every key it holds
        /// maps to its own value, and the recency list and the index agree.
        #[test]
        fn memory_stays_bounded_under_rotating_keys(
            ops in prop::collection::vec((0u32..64, 0u64..5, any::<bool>()), 1..400),
            capacity in 1usize..16,
        ) {
            let mut table = KeyedTable::new(capacity, 1_000);
            let mut now = 0;
            for (key, step, remove) in ops {
                now += step;
                if remove {
                    table.remove(&key);
                } else {
                    let value = table.entry(key, now, || key);
                    prop_assert_eq!(*value, key);
                }
                prop_assert!(table.len() <= capacity);
                prop_assert_eq!(table.len(), table.index.len());
                let mut walked = 0;
                let mut slot = table.oldest;
                let mut last = 0;
                while slot != NIL {
                    let node = &table.nodes[slot];
                    prop_assert!(node.last_seen >= last, "ordered by last use");
                    prop_assert_eq!(table.index.get(&node.key), Some(&slot));
                    last = node.last_seen;
                    slot = node.newer;
                    walked += 1;
                }
                prop_assert_eq!(walked, table.len());
            }
        }
    }
}
