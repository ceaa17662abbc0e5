//! The link's `control` task, one per Redis server: the connection's state, and keeping that
//! server and this node in step (subscriptions, mirrored counts, bans, leases, the heartbeat)
//! for the topics and clients it holds. What it does when the server comes back and when the
//! node stops is in `resync`.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use fred::prelude::{
    Expiration, HashesInterface, KeysInterface, LuaInterface, PubsubInterface, Value,
};
use ringstream_limits::identity::ClientKey;

use super::link::{Link, ShardLink};
use super::shards::lock;
use super::wire::{self, Control};

/// How often the control task looks at the connection when nothing wakes it.
const TICK: Duration = Duration::from_millis(100);
/// How often this node says it is alive.
const HEARTBEAT: Duration = Duration::from_secs(1);
/// How long this node's counts outlive it in Redis if it dies without a word.
pub(super) const COUNTS_TTL_SECONDS: i64 = 10;
/// A resync this soon after the last one is not logged.
const QUIET_RESYNC: Duration = Duration::from_secs(2);

pub(super) type Outcome = Result<(), fred::error::Error>;

impl Link {
    /// Runs until the node stops.
    pub(super) async fn control(&self, shard: &ShardLink) {
        let work = self.cluster.shards.get(shard.index);
        let mut stop = self.cluster.stop.subscribe();
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut beat = Instant::now();
        let mut last_top_up = Instant::now();
        let mut last_resync = Instant::now();
        loop {
            tokio::select! {
                _ = stop.wait_for(|stopping| *stopping) => return,
                () = work.wake.notified() => {}
                _ = tick.tick() => {}
            }
            let connected = shard.is_connected();
            let reachable = self.cluster.shards.reachable(shard.index);
            if connected && (!reachable || shard.resync_needed.swap(false, Ordering::AcqRel)) {
                match self.resync(shard).await {
                    Ok(()) if !reachable => self.came_back(shard),
                    // The first connection is announced late as a reconnection too: a resync
                    // right after the last one is not news.
                    Ok(()) if last_resync.elapsed() < QUIET_RESYNC => {}
                    Ok(()) => {
                        self.cluster
                            .counters
                            .reconnected
                            .fetch_add(1, Ordering::Relaxed);
                        tracing::info!(
                            node = self.node(),
                            redis = self.cluster.shards.label(shard.index),
                            "cluster: a Redis connection came back; subscriptions and counts \
                         written again"
                        );
                    }
                    Err(error) => {
                        shard.resync_needed.store(true, Ordering::Release);
                        tracing::debug!(%error, "cluster: resync failed; retrying");
                    }
                }
                beat = Instant::now();
                last_resync = beat;
            } else if !connected && reachable {
                self.went_away(shard);
            }
            let (join, leave) = self.follow_topics(shard);
            let changes = self.cluster.mirror.take_changes(shard.index);
            self.take_renewals(shard);
            let now = Instant::now();
            if !self.cluster.shards.reachable(shard.index) {
                // `resync` subscribes to every topic followed and writes every count when the
                // server is back; bans wait for it; leases are topped up at this node's share.
                let nodes = self.cluster.nodes();
                lock(&shard.leases).top_up_alone(nodes, now.duration_since(last_top_up));
                last_top_up = now;
                continue;
            }
            last_top_up = now;
            let bans = std::mem::take(&mut *lock(&work.bans));
            let outcome = async {
                if !join.is_empty() {
                    shard.subscriber.subscribe(join).await?;
                }
                if !leave.is_empty() {
                    shard.subscriber.unsubscribe(leave).await?;
                }
                self.mirror_counts(shard, &changes).await?;
                self.spread_bans(shard, &bans).await?;
                self.grant_leases(shard).await?;
                if beat.elapsed() >= HEARTBEAT {
                    lock(&shard.leases).sweep(Instant::now());
                    beat = Instant::now();
                    self.heartbeat(shard).await?;
                    let gone = lock(&shard.nodes).expire(&self.cluster.remote, beat);
                    for node in gone {
                        tracing::info!(node, "cluster: a node stopped answering; its connections are no longer counted");
                    }
                    self.count_nodes();
                }
                Ok::<(), fred::error::Error>(())
            }
            .await;
            if let Err(error) = outcome {
                tracing::debug!(%error, "cluster: a write to Redis failed");
            }
        }
    }

    fn came_back(&self, shard: &ShardLink) {
        self.cluster.shards.set_reachable(shard.index, true);
        self.count_nodes();
        self.cluster
            .counters
            .became_reachable
            .fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            node = self.node(),
            redis = self.cluster.shards.label(shard.index),
            nodes = self.cluster.nodes(),
            "cluster: Redis reachable; its topics and per-client counts are shared"
        );
    }

    fn went_away(&self, shard: &ShardLink) {
        self.cluster.shards.set_reachable(shard.index, false);
        self.cluster
            .counters
            .became_unreachable
            .fetch_add(1, Ordering::Relaxed);
        lock(&shard.nodes).clear(&self.cluster.remote);
        tracing::warn!(
            node = self.node(),
            redis = self.cluster.shards.label(shard.index),
            last_known_nodes = self.cluster.nodes(),
            policy = self.cluster.default_policy().name(),
            "cluster: Redis is away; members here still get this node's messages, other \
             nodes' messages on its topics are lost until it returns, and per-client rules of \
             the clients it holds follow on_redis_error"
        );
    }

    /// Follows the topics whose presence on this node changed (it reads their member count
    /// now, so changes that crossed are never misordered): the channels to subscribe to and
    /// those to leave.
    fn follow_topics(&self, shard: &ShardLink) -> (Vec<String>, Vec<String>) {
        let work = self.cluster.shards.get(shard.index);
        let names = std::mem::take(&mut *lock(&work.topics));
        let (mut join, mut leave) = (Vec::new(), Vec::new());
        let mut subscribed = lock(&shard.subscribed);
        for name in names {
            let wanted = self.hub.topics.get(&name).is_some_and(|t| t.members() > 0);
            if wanted && subscribed.insert(name.to_string()) {
                join.push(wire::topic_channel(&name));
            } else if !wanted && subscribed.remove(&*name) {
                leave.push(wire::topic_channel(&name));
            }
        }
        (join, leave)
    }

    pub(super) async fn mirror_counts(
        &self,
        shard: &ShardLink,
        changes: &[(ClientKey, u32)],
    ) -> Outcome {
        if changes.is_empty() {
            return Ok(());
        }
        let key = wire::counts_key(self.node());
        let pipeline = shard.publisher.pipeline();
        for &(client, count) in changes {
            let field = wire::client_text(client);
            if count > 0 {
                let _: Outcome = pipeline.hset(&key, (field, count)).await;
            } else {
                let _: Outcome = pipeline.hdel(&key, field).await;
            }
            let control = Control::Count {
                node: self.node().to_owned(),
                client,
                count,
            };
            let _: Outcome = pipeline.publish(wire::CONTROL, control.encode()).await;
        }
        let _: Outcome = pipeline.expire(&key, COUNTS_TTL_SECONDS, None).await;
        pipeline.all::<()>().await
    }

    /// Files the workers' lease renewals (a client that already left is skipped).
    fn take_renewals(&self, shard: &ShardLink) {
        let work = self.cluster.shards.get(shard.index);
        let renewals = std::mem::take(&mut *lock(&work.renewals));
        if renewals.is_empty() {
            return;
        }
        let now = Instant::now();
        let mut book = lock(&shard.leases);
        for renewal in renewals {
            if let Some(key) = self.cluster.mirror.key_of(&renewal.client) {
                book.ask(renewal, key, now);
            }
        }
    }

    /// Asks Redis for the cells the leases due want: one script call each, all in flight at
    /// once (the client writes them back to back).
    async fn grant_leases(&self, shard: &ShardLink) -> Outcome {
        let asks = lock(&shard.leases).due(Instant::now());
        if asks.is_empty() {
            return Ok(());
        }
        let sha = lock(&shard.lease_script).clone();
        let calls = asks.iter().map(|ask| {
            let args: Vec<Value> = ask
                .args
                .iter()
                .map(|&a| Value::Integer(i64::try_from(a).unwrap_or(i64::MAX)))
                .collect();
            shard
                .publisher
                .evalsha::<Value, _, _, _>(sha.as_str(), ask.key.as_str(), args)
        });
        let answers = futures_util::future::join_all(calls).await;
        let now = Instant::now();
        let mut book = lock(&shard.leases);
        for (ask, answer) in asks.iter().zip(answers) {
            let (cells, wait) = match answer? {
                Value::Array(pair) if pair.len() == 2 => {
                    (pair[0].as_u64().unwrap_or(0), pair[1].as_u64().unwrap_or(0))
                }
                _ => (0, 0),
            };
            book.granted(ask.id, cells, wait, now);
            self.cluster
                .counters
                .lease_cells
                .fetch_add(cells, Ordering::Relaxed);
        }
        self.cluster
            .counters
            .lease_calls
            .fetch_add(asks.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    async fn spread_bans(&self, shard: &ShardLink, bans: &[(ClientKey, Duration)]) -> Outcome {
        for &(client, duration) in bans {
            let millis = u64::try_from(duration.as_millis())
                .unwrap_or(u64::MAX)
                .max(1);
            let expiry = Expiration::PX(i64::try_from(millis).unwrap_or(i64::MAX));
            let () = shard
                .publisher
                .set(wire::ban_key(client), 1, Some(expiry), None, false)
                .await?;
            let control = Control::Ban { client, millis };
            let _: i64 = shard
                .publisher
                .publish(wire::CONTROL, control.encode())
                .await?;
        }
        Ok(())
    }

    /// Says this node is alive, and which shard of how many it takes this server to be.
    pub(super) async fn heartbeat(&self, shard: &ShardLink) -> Outcome {
        let ttl = i64::try_from(super::counts::NODE_TTL.as_millis()).unwrap_or(i64::MAX);
        let pipeline = shard.publisher.pipeline();
        let _: Outcome = pipeline
            .set(
                wire::node_key(self.node()),
                wire::shard_place(shard.index, self.shards.len()),
                Some(Expiration::PX(ttl)),
                None,
                false,
            )
            .await;
        let _: Outcome = pipeline
            .expire(wire::counts_key(self.node()), COUNTS_TTL_SECONDS, None)
            .await;
        let alive = Control::Alive {
            node: self.node().to_owned(),
        };
        let _: Outcome = pipeline.publish(wire::CONTROL, alive.encode()).await;
        pipeline.all::<()>().await
    }
}
