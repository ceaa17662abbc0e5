//! Rates every node of a cluster shares: a decision on such a rule takes cells from the lease
//! the client's bucket holds (one compare-and-swap, as a local decision does) and asks the
//! cluster for more ahead of need; while the Redis server holding the client is away
//! `on_redis_error` decides. Without a
//! cluster, or for a rule each node keeps to itself, it is the bucket's own GCRA.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use ringstream_limits::client_table::ClientState;
use ringstream_limits::gcra::{Decision, Gcra, Leased};

use super::ClientGate;
use crate::config::RedisErrorPolicy;

/// What a shared decision answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Taken {
    /// The rule decided.
    Decided(Decision),
    /// Redis is away under `on_redis_error = "closed"`: a request is refused with 503 (the
    /// caller counts it).
    RedisAway,
}

impl ClientGate {
    /// Counts a shared rule decided while Redis is away under `closed`: `refused` (a request's
    /// 503) or let through (a WebSocket frame).
    pub(super) fn count_redis_away(&self, refused: bool) {
        if let Some(cluster) = &self.cluster {
            let counters = &cluster.counters;
            let counter = if refused {
                &counters.refused_redis_away
            } else {
                &counters.decided_alone
            };
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Takes `cost` cells of `quota` from `client`'s bucket `bucket` at `now`.
    pub(super) fn take(
        &self,
        client: &Arc<ClientState>,
        bucket: usize,
        quota: &Gcra,
        now: u64,
        cost: u64,
    ) -> Taken {
        let (Some(cluster), Some(Some(rule))) = (&self.cluster, self.shared.get(bucket)) else {
            return Taken::Decided(client.check(bucket, quota, now, cost));
        };
        if !cluster.is_reachable_for(client) {
            let policy = self
                .limits
                .on_redis_error
                .unwrap_or_else(|| cluster.default_policy());
            let counters = &cluster.counters;
            match policy {
                RedisErrorPolicy::Local => {}
                RedisErrorPolicy::Open => {
                    counters.decided_alone.fetch_add(1, Ordering::Relaxed);
                    return Taken::Decided(Decision::Allow {
                        remaining: 0,
                        reset_after: Duration::ZERO,
                    });
                }
                RedisErrorPolicy::Closed => return Taken::RedisAway,
            }
        }
        let terms = cluster.lease_terms(quota);
        match client.take_leased(bucket, cost, terms) {
            Leased::Allow { remaining, renew } => {
                if let Some(want) = renew {
                    cluster.renew(client, bucket, rule, *quota, want);
                }
                let used = quota.burst().saturating_sub(remaining);
                Taken::Decided(Decision::Allow {
                    remaining,
                    reset_after: Duration::from_nanos(
                        quota.emission_interval_ns().saturating_mul(used),
                    ),
                })
            }
            Leased::Deny { retry_after, renew } => {
                cluster.renew(client, bucket, rule, *quota, renew);
                Taken::Decided(Decision::Deny {
                    retry_after: Some(retry_after),
                })
            }
        }
    }
}
