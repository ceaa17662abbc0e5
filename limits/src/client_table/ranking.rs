//! The busiest clients of the table, for reports (`/stats`, the dashboard): the top clients by
//! open connections and by how much of their rate budgets they use. Found by one walk of every
//! shard when asked; nothing is counted per request or per message for it.
//!
//! The table keeps no per-client request or message counts (that would be a shared write on
//! every request); what it keeps is each rate budget's GCRA state, whose distance ahead of
//! `now` is the part of the budget a client has taken and not yet earned back. A client is
//! ranked by the largest share of any budget it uses: the one closest to being refused first.

use std::sync::Arc;

use super::{ClientState, ClientTable, lock};
use crate::gcra::Gcra;
use crate::identity::ClientKey;

/// One rate budget clients are ranked by: the bucket it is kept in and its quota.
#[derive(Debug, Clone, Copy)]
pub struct RateBudget {
    /// The bucket the budget's state is kept in.
    pub bucket: usize,
    /// Its quota.
    pub quota: Gcra,
}

/// One client of a ranking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientRank {
    /// The key the client is counted under.
    pub key: ClientKey,
    /// Connections open now, across all cores.
    pub connections: u32,
    /// Per budget asked for, in that order: cells in use now (of the quota's burst).
    pub used: Vec<u64>,
}

/// The top clients, busiest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopClients {
    /// By open connections (clients with none are left out).
    pub by_connections: Vec<ClientRank>,
    /// By the largest share of any budget in use (clients using none are left out).
    pub by_rate: Vec<ClientRank>,
}

/// The `n` best-scored entries seen so far, best first, ties kept in the order seen.
struct Best {
    n: usize,
    entries: Vec<(u64, ClientRank)>,
}

impl Best {
    fn new(n: usize) -> Self {
        Self {
            n,
            entries: Vec::with_capacity(n + 1),
        }
    }

    /// Offers an entry scored `score` (0 is never kept); `make` builds it only when it is.
    fn offer(&mut self, score: u64, make: impl FnOnce() -> ClientRank) {
        if score == 0 || self.n == 0 {
            return;
        }
        if self.entries.len() == self.n && self.entries.last().is_some_and(|(s, _)| *s >= score) {
            return;
        }
        let at = self.entries.partition_point(|(s, _)| *s >= score);
        self.entries.insert(at, (score, make()));
        self.entries.truncate(self.n);
    }

    fn into_ranks(self) -> Vec<ClientRank> {
        self.entries.into_iter().map(|(_, rank)| rank).collect()
    }
}

/// Parts per million of `burst` that `used` is (0 for nothing used or no burst). `used` is at
/// most the burst, which is far below `u64::MAX / 1_000_000` for any configured quota.
fn share(used: u64, burst: u64) -> u64 {
    if used == 0 || burst == 0 {
        return 0;
    }
    used.saturating_mul(1_000_000) / burst
}

impl ClientTable {
    /// The `n` clients with the most open connections, and the `n` that use the largest share
    /// of any of `budgets` at `now`. Walks every client once, one shard lock at a time.
    pub fn top_clients(&self, n: usize, budgets: &[RateBudget], now: u64) -> TopClients {
        let mut by_connections = Best::new(n);
        let mut by_rate = Best::new(n);
        let mut used = Vec::with_capacity(budgets.len());
        for shard in self.shards.iter() {
            let shard = lock(shard);
            for (key, state) in shard.iter() {
                let connections = state.connections();
                used.clear();
                used.extend(budgets.iter().map(|b| state.used(b.bucket, &b.quota, now)));
                let rank = |state: &Arc<ClientState>| ClientRank {
                    key: *key,
                    connections: state.connections(),
                    used: used.clone(),
                };
                by_connections.offer(u64::from(connections), || rank(state));
                let busiest = budgets
                    .iter()
                    .zip(&used)
                    .map(|(b, &u)| share(u, b.quota.burst()))
                    .max()
                    .unwrap_or(0);
                by_rate.offer(busiest, || rank(state));
            }
        }
        TopClients {
            by_connections: by_connections.into_ranks(),
            by_rate: by_rate.into_ranks(),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use std::time::Duration;

    use super::*;
    use crate::client_table::ConnectionPolicy;

    const SECOND: u64 = 1_000_000_000;

    #[test]
    fn the_top_clients_by_connections_are_the_n_with_the_most_open() {
        let table = ClientTable::new(1000, 60 * SECOND, 0);
        let policy = ConnectionPolicy::default();
        let mut passes = Vec::new();
        for client in 1..=5u32 {
            let state = table.client(ClientKey::V4(client), 0);
            for _ in 0..client {
                let key = ClientKey::V4(client);
                passes.push(table.admit_connection(key, &state, &policy, 0, 0).0);
            }
        }
        table.client(ClientKey::V4(99), 0);
        let top = table.top_clients(3, &[], 0);
        let ranked: Vec<(ClientKey, u32)> = top
            .by_connections
            .iter()
            .map(|r| (r.key, r.connections))
            .collect();
        assert_eq!(
            ranked,
            vec![
                (ClientKey::V4(5), 5),
                (ClientKey::V4(4), 4),
                (ClientKey::V4(3), 3)
            ]
        );
        assert!(top.by_rate.is_empty(), "no budget, no rate ranking");
        drop(passes);
        assert!(table.top_clients(3, &[], 0).by_connections.is_empty());
    }

    #[test]
    fn the_top_clients_by_rate_use_the_largest_share_of_a_budget() {
        let table = ClientTable::new(1000, 60 * SECOND, 2);
        let requests = Gcra::new(60, Duration::from_secs(60), 10).unwrap();
        let messages = Gcra::new(600, Duration::from_secs(60), 100).unwrap();
        let budgets = [
            RateBudget {
                bucket: 0,
                quota: requests,
            },
            RateBudget {
                bucket: 1,
                quota: messages,
            },
        ];
        // Client 1: 5 of 10 requests (50%); client 2: 80 of 100 messages (80%);
        // client 3: 1 request (10%); client 4: nothing.
        let one = table.client(ClientKey::V4(1), 0);
        assert!(one.check(0, &requests, 0, 5).is_allowed());
        let two = table.client(ClientKey::V4(2), 0);
        assert!(two.check(1, &messages, 0, 80).is_allowed());
        let three = table.client(ClientKey::V4(3), 0);
        assert!(three.check(0, &requests, 0, 1).is_allowed());
        table.client(ClientKey::V4(4), 0);
        let top = table.top_clients(2, &budgets, 0);
        let ranked: Vec<(ClientKey, Vec<u64>)> =
            top.by_rate.into_iter().map(|r| (r.key, r.used)).collect();
        assert_eq!(
            ranked,
            vec![
                (ClientKey::V4(2), vec![0, 80]),
                (ClientKey::V4(1), vec![5, 0])
            ]
        );
        // A second later, client 1 has earned one request back.
        let later = table.top_clients(3, &budgets, SECOND);
        assert_eq!(later.by_rate[1].used, vec![4, 0]);
        // Long after, nobody uses anything.
        assert!(
            table
                .top_clients(3, &budgets, 600 * SECOND)
                .by_rate
                .is_empty()
        );
    }

    #[test]
    fn best_keeps_the_n_highest_and_builds_only_those() {
        let mut best = Best::new(2);
        let mut built = 0;
        for score in [3, 1, 5, 0, 4, 2] {
            best.offer(score, || {
                built += 1;
                ClientRank {
                    key: ClientKey::V4(u32::try_from(score).unwrap()),
                    connections: 0,
                    used: Vec::new(),
                }
            });
        }
        let keys: Vec<ClientKey> = best.into_ranks().into_iter().map(|r| r.key).collect();
        assert_eq!(keys, vec![ClientKey::V4(5), ClientKey::V4(4)]);
        assert_eq!(built, 4, "1, 0 and 2 were never built");
    }
}
