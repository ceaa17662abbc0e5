//! The link's `control` task: the connection's state, and keeping Redis and this node in step
//! (subscriptions, mirrored counts, bans, the heartbeat), with what it does when Redis comes
//! back and when the node stops.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use fred::prelude::{
    ClientLike, Expiration, HashesInterface, KeysInterface, LuaInterface, PubsubInterface, Value,
};
use futures_util::StreamExt;
use ringstream_limits::identity::ClientKey;

use super::leases::LEASE_SCRIPT;
use super::link::{Link, lock};
use super::wire::{self, Control};
use crate::server::coarse_clock;

/// How often the control task looks at the connection when nothing wakes it.
const TICK: Duration = Duration::from_millis(100);
/// How often this node says it is alive.
const HEARTBEAT: Duration = Duration::from_secs(1);
/// How long this node's counts outlive it in Redis if it dies without a word.
const COUNTS_TTL_SECONDS: i64 = 10;
/// A resync this soon after the last one is not logged.
const QUIET_RESYNC: Duration = Duration::from_secs(2);
/// Keys asked for per `SCAN` step.
const SCAN_COUNT: u32 = 500;

type Outcome = Result<(), fred::error::Error>;

impl Link {
    /// Runs until the node stops.
    pub(super) async fn control(&self) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut beat = Instant::now();
        let mut last_top_up = Instant::now();
        let mut last_resync = Instant::now();
        loop {
            tokio::select! {
                () = self.cluster.stop.notified() => return,
                () = self.cluster.wake.notified() => {}
                _ = tick.tick() => {}
            }
            let connected = self.publisher.is_connected() && self.subscriber.is_connected();
            let reachable = self.cluster.is_reachable();
            if connected && (!reachable || self.resync_needed.swap(false, Ordering::AcqRel)) {
                match self.resync().await {
                    Ok(()) if !reachable => self.came_back(),
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
                            "cluster: a Redis connection came back; subscriptions and counts \
                         written again"
                        );
                    }
                    Err(error) => {
                        self.resync_needed.store(true, Ordering::Release);
                        tracing::debug!(%error, "cluster: resync failed; retrying");
                    }
                }
                beat = Instant::now();
                last_resync = beat;
            } else if !connected && reachable {
                self.went_away();
            }
            let (join, leave) = self.follow_topics();
            let changes = self.cluster.mirror.take_changes();
            self.take_renewals();
            let now = Instant::now();
            if !self.cluster.is_reachable() {
                // `resync` subscribes to every topic followed and writes every count when Redis
                // is back; bans wait for it; leases are topped up at this node's share.
                let nodes = self.cluster.nodes();
                lock(&self.leases).top_up_alone(nodes, now.duration_since(last_top_up));
                last_top_up = now;
                continue;
            }
            last_top_up = now;
            let bans = std::mem::take(&mut *lock(&self.cluster.bans));
            let outcome = async {
                if !join.is_empty() {
                    self.subscriber.subscribe(join).await?;
                }
                if !leave.is_empty() {
                    self.subscriber.unsubscribe(leave).await?;
                }
                self.mirror_counts(&changes).await?;
                self.spread_bans(&bans).await?;
                self.grant_leases().await?;
                if beat.elapsed() >= HEARTBEAT {
                    lock(&self.leases).sweep(Instant::now());
                    beat = Instant::now();
                    self.heartbeat().await?;
                    let gone = lock(&self.nodes).expire(&self.cluster.remote, beat);
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

    fn came_back(&self) {
        self.cluster.reachable.store(true, Ordering::Release);
        self.cluster
            .counters
            .became_reachable
            .fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            node = self.node(),
            nodes = self.cluster.nodes(),
            "cluster: Redis reachable; topics and per-client counts are shared"
        );
    }

    fn went_away(&self) {
        self.cluster.reachable.store(false, Ordering::Release);
        self.cluster
            .counters
            .became_unreachable
            .fetch_add(1, Ordering::Relaxed);
        lock(&self.nodes).clear(&self.cluster.remote);
        tracing::warn!(
            node = self.node(),
            last_known_nodes = self.cluster.nodes(),
            policy = self.cluster.default_policy().name(),
            "cluster: Redis is away; members here still get this node's messages, other \
             nodes' are lost until it returns, and per-client rules follow on_redis_error"
        );
    }

    /// Follows the topics whose presence on this node changed (it reads their member count
    /// now, so changes that crossed are never misordered): the channels to subscribe to and
    /// those to leave.
    fn follow_topics(&self) -> (Vec<String>, Vec<String>) {
        let names = std::mem::take(&mut *lock(&self.cluster.topics));
        let (mut join, mut leave) = (Vec::new(), Vec::new());
        let mut subscribed = lock(&self.subscribed);
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

    async fn mirror_counts(&self, changes: &[(ClientKey, u32)]) -> Outcome {
        if changes.is_empty() {
            return Ok(());
        }
        let key = wire::counts_key(self.node());
        let pipeline = self.publisher.pipeline();
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
    fn take_renewals(&self) {
        let renewals = std::mem::take(&mut *lock(&self.cluster.renewals));
        if renewals.is_empty() {
            return;
        }
        let now = Instant::now();
        let mut book = lock(&self.leases);
        for renewal in renewals {
            if let Some(key) = self.cluster.mirror.key_of(&renewal.client) {
                book.ask(renewal, key, now);
            }
        }
    }

    /// Asks Redis for the cells the leases due want: one script call each, all in flight at
    /// once (the client writes them back to back).
    async fn grant_leases(&self) -> Outcome {
        let asks = lock(&self.leases).due(Instant::now());
        if asks.is_empty() {
            return Ok(());
        }
        let sha = lock(&self.lease_script).clone();
        let calls = asks.iter().map(|ask| {
            let args: Vec<Value> = ask
                .args
                .iter()
                .map(|&a| Value::Integer(i64::try_from(a).unwrap_or(i64::MAX)))
                .collect();
            self.publisher
                .evalsha::<Value, _, _, _>(sha.as_str(), ask.key.as_str(), args)
        });
        let answers = futures_util::future::join_all(calls).await;
        let now = Instant::now();
        let mut book = lock(&self.leases);
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

    async fn spread_bans(&self, bans: &[(ClientKey, Duration)]) -> Outcome {
        for &(client, duration) in bans {
            let millis = u64::try_from(duration.as_millis())
                .unwrap_or(u64::MAX)
                .max(1);
            let expiry = Expiration::PX(i64::try_from(millis).unwrap_or(i64::MAX));
            let () = self
                .publisher
                .set(wire::ban_key(client), 1, Some(expiry), None, false)
                .await?;
            let control = Control::Ban { client, millis };
            let _: i64 = self
                .publisher
                .publish(wire::CONTROL, control.encode())
                .await?;
        }
        Ok(())
    }

    async fn heartbeat(&self) -> Outcome {
        let ttl = i64::try_from(super::counts::NODE_TTL.as_millis()).unwrap_or(i64::MAX);
        let pipeline = self.publisher.pipeline();
        let _: Outcome = pipeline
            .set(
                wire::node_key(self.node()),
                1,
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

    /// Redis is (back) up: subscribe again, write this node's counts anew, read the others'
    /// counts and the bans in force.
    async fn resync(&self) -> Outcome {
        let sha: String = self.publisher.script_load(LEASE_SCRIPT).await?;
        *lock(&self.lease_script) = sha;
        let mut channels = vec![wire::CONTROL.to_owned()];
        channels.extend(
            lock(&self.subscribed)
                .iter()
                .map(|t| wire::topic_channel(t)),
        );
        self.subscriber.subscribe(channels).await?;
        // The other nodes forget what this one said before (a count that fell to 0 while the
        // connection was down was never said), then hear every count anew, in order.
        let key = wire::counts_key(self.node());
        let () = self.publisher.del(&key).await.map(|_: i64| ())?;
        let reset = Control::Reset {
            node: self.node().to_owned(),
        };
        let _: i64 = self
            .publisher
            .publish(wire::CONTROL, reset.encode())
            .await?;
        let mine = self.cluster.mirror.all();
        self.mirror_counts(&mine).await?;
        self.heartbeat().await?;
        lock(&self.nodes).begin_seed(&self.cluster.remote);
        let read = self.read_counts().await;
        lock(&self.nodes).end_seed();
        read?;
        self.count_nodes();
        for key in self.scan(wire::BANS_PATTERN).await? {
            let Some(client) = wire::ban_client(&key) else {
                continue;
            };
            let left: i64 = self.publisher.pttl(&key).await?;
            if let Ok(millis) = u64::try_from(left) {
                let clock = coarse_clock::now_ns();
                self.table
                    .client(client, clock)
                    .impose_ban(clock, Duration::from_millis(millis));
            }
        }
        Ok(())
    }

    /// Reads every live node's counts from its hash (between `begin_seed` and `end_seed`).
    async fn read_counts(&self) -> Outcome {
        let nodes = self.scan(wire::NODES_PATTERN).await?;
        let now = Instant::now();
        for node in nodes.iter().filter_map(|key| wire::key_node(key)) {
            if node == self.node() {
                continue;
            }
            let counts: HashMap<String, u32> =
                self.publisher.hgetall(wire::counts_key(node)).await?;
            let mut known = lock(&self.nodes);
            known.heard(node, now);
            for (field, count) in counts {
                if let Some(client) = wire::parse_client(&field) {
                    known.seed(&self.cluster.remote, node, client, count, now);
                }
            }
        }
        Ok(())
    }

    async fn scan(&self, pattern: &str) -> Result<Vec<String>, fred::error::Error> {
        let mut keys = Vec::new();
        let mut stream = std::pin::pin!(self.publisher.scan_buffered(
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

    /// The node stops: its counts and liveness leave Redis and the others are told.
    pub(super) async fn farewell(&self) {
        if !self.cluster.is_reachable() {
            return;
        }
        let pipeline = self.publisher.pipeline();
        let _: Outcome = pipeline.del(wire::counts_key(self.node())).await;
        let _: Outcome = pipeline.del(wire::node_key(self.node())).await;
        let gone = Control::Gone {
            node: self.node().to_owned(),
        };
        let _: Outcome = pipeline.publish(wire::CONTROL, gone.encode()).await;
        let _ = pipeline.all::<()>().await;
        let _ = self.publisher.quit().await;
        let _ = self.subscriber.quit().await;
    }
}
