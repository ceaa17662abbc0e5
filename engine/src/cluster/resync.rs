//! What a Redis server's control task does when the server comes (back) up: subscribe again,
//! write this node's counts anew, read the other nodes' counts and the bans in force, and
//! check that every node numbers the server alike; and what it does when the node stops.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use fred::prelude::{ClientLike, HashesInterface, KeysInterface, LuaInterface, PubsubInterface};
use futures_util::StreamExt;

use super::leases::LEASE_SCRIPT;
use super::link::{Link, ShardLink};
use super::shards::lock;
use super::sync::Outcome;
use super::wire::{self, Control};
use crate::server::coarse_clock;

/// Keys asked for per `SCAN` step.
const SCAN_COUNT: u32 = 500;

impl Link {
    /// `shard`'s server is (back) up: subscribe again, write this node's counts of the clients
    /// it holds anew, read the other nodes' counts and the bans in force.
    pub(super) async fn resync(&self, shard: &ShardLink) -> Outcome {
        let sha: String = shard.publisher.script_load(LEASE_SCRIPT).await?;
        *lock(&shard.lease_script) = sha;
        let mut channels = vec![wire::CONTROL.to_owned()];
        channels.extend(
            lock(&shard.subscribed)
                .iter()
                .map(|t| wire::topic_channel(t)),
        );
        shard.subscriber.subscribe(channels).await?;
        // The other nodes forget what this one said before (a count that fell to 0 while the
        // connection was down was never said), then hear every count anew, in order.
        let key = wire::counts_key(self.node());
        let () = shard.publisher.del(&key).await.map(|_: i64| ())?;
        let reset = Control::Reset {
            node: self.node().to_owned(),
        };
        let _: i64 = shard
            .publisher
            .publish(wire::CONTROL, reset.encode())
            .await?;
        let mine = self.cluster.mirror.all(shard.index);
        self.mirror_counts(shard, &mine).await?;
        self.heartbeat(shard).await?;
        lock(&shard.nodes).begin_seed(&self.cluster.remote);
        let read = self.read_counts(shard).await;
        lock(&shard.nodes).end_seed();
        read?;
        self.count_nodes();
        for key in self.scan(shard, wire::BANS_PATTERN).await? {
            let Some(client) = wire::ban_client(&key) else {
                continue;
            };
            let left: i64 = shard.publisher.pttl(&key).await?;
            if let Ok(millis) = u64::try_from(left) {
                let clock = coarse_clock::now_ns();
                self.table
                    .client(client, clock)
                    .impose_ban(clock, Duration::from_millis(millis));
            }
        }
        Ok(())
    }

    /// Reads every live node's counts from its hash (between `begin_seed` and `end_seed`),
    /// and checks it numbers this server as this node does.
    async fn read_counts(&self, shard: &ShardLink) -> Outcome {
        let keys = self.scan(shard, wire::NODES_PATTERN).await?;
        let now = Instant::now();
        let mine = wire::shard_place(shard.index, self.shards.len());
        for (key, node) in keys
            .iter()
            .filter_map(|key| Some((key, wire::key_node(key)?)))
        {
            if node == self.node() {
                continue;
            }
            let place: Option<String> = shard.publisher.get(key).await?;
            if let Some(theirs) = place.as_deref().map(wire::parse_shard_place)
                && theirs != mine
            {
                self.cluster
                    .counters
                    .shard_mismatches
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::error!(
                    node = self.node(),
                    other = node,
                    redis = self.cluster.shards.label(shard.index),
                    here = mine,
                    there = theirs,
                    "cluster: another node numbers this Redis server differently (shard here \
                     and there, as index/servers): every node must list the same [cluster] \
                     redis servers in the same order, or topics and clients are split"
                );
            }
            let counts: HashMap<String, u32> =
                shard.publisher.hgetall(wire::counts_key(node)).await?;
            let mut known = lock(&shard.nodes);
            known.heard(node, now);
            for (field, count) in counts {
                if let Some(client) = wire::parse_client(&field) {
                    known.seed(&self.cluster.remote, node, client, count, now);
                }
            }
        }
        Ok(())
    }

    async fn scan(
        &self,
        shard: &ShardLink,
        pattern: &str,
    ) -> Result<Vec<String>, fred::error::Error> {
        let mut keys = Vec::new();
        let mut stream = std::pin::pin!(shard.publisher.scan_buffered(
            pattern,
            Some(SCAN_COUNT),
            None
        ));
        while let Some(key) = stream.next().await {
            if let Some(text) = key?.as_str() {
                keys.push(text.to_owned());
            }
        }
        Ok(keys)
    }

    /// The node stops: its counts and liveness leave `shard`'s server and the others are told.
    pub(super) async fn farewell(&self, shard: &ShardLink) {
        if !self.cluster.shards.reachable(shard.index) {
            return;
        }
        let pipeline = shard.publisher.pipeline();
        let _: Outcome = pipeline.del(wire::counts_key(self.node())).await;
        let _: Outcome = pipeline.del(wire::node_key(self.node())).await;
        let gone = Control::Gone {
            node: self.node().to_owned(),
        };
        let _: Outcome = pipeline.publish(wire::CONTROL, gone.encode()).await;
        let _ = pipeline.all::<()>().await;
        let _ = shard.publisher.quit().await;
        let _ = shard.subscriber.quit().await;
    }
}
