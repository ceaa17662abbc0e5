//! The cluster layer: several nodes sharing broadcast topics, per-client connection counts,
//! rates and bans through Redis (`[cluster]`).
//!
//! - [`Cluster`] (this file): what workers, the hub and the gate call. Nothing here waits on
//!   Redis: a publish is queued on a bounded queue (its overflow counted), a topic's or a
//!   client's change and a lease's renewal are marked for the link, and admission reads counts
//!   already at hand.
//! - `link`: one thread running the Redis client (`fred`, on its own tokio runtime), which
//!   publishes, delivers other nodes' messages through the hub and reads their control
//!   messages; `sync`: one control task per Redis server (the connection's state,
//!   subscriptions, mirrored counts, bans, leases, the heartbeat); `resync`: what it does when
//!   its server comes back and when the node stops.
//! - `shards`: which Redis server holds a topic or a client when `redis` lists several, each
//!   one's reachability and the work the workers leave for its link.
//! - `mirror`: this node's clients' connection counts as they change.
//! - `counts`: the other nodes' counts, summed per client for admission.
//! - `leases`: the leases of per-client rates and the script that grants them.
//! - `wire`: channel and key names and the messages nodes exchange.
//!
//! Without `[cluster]` none of this exists: no thread, no queue, no lookup.

mod counts;
mod leases;
mod link;
mod mirror;
mod resync;
mod shards;
mod sync;
pub mod wire;

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use ringstream_limits::client_table::{ClientState, ClientTable, CountWatcher};
use ringstream_limits::identity::ClientKey;
use tokio::sync::{mpsc, oneshot, watch};

use crate::config::{ClusterConfig, RedisErrorPolicy};
use crate::routes::broadcast::{Hub, Topic};
use counts::RemoteCounts;
use leases::Renewal;
use mirror::Mirror;
use ringstream_limits::gcra::{Gcra, LeaseTerms};
use shards::{Shards, lock};

/// Messages waiting for the link to publish them; past this, publishes are dropped and
/// counted.
const OUTBOX: usize = 16_384;
/// A lease holds about this much of a rate's sustained flow.
const LEASE_SPAN: Duration = Duration::from_millis(250);

/// A message for the other nodes.
#[derive(Debug)]
enum Outgoing {
    /// A frame for the members of a topic; `reply` (an HTTP publish) is told how many other
    /// nodes Redis handed it to.
    Publish {
        topic: Arc<Topic>,
        frame: Bytes,
        reply: Option<oneshot::Sender<u64>>,
    },
}

/// How admission counts a client's connections on other nodes now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SharedCount {
    /// Redis is reachable: this many connections of the client are open elsewhere.
    Elsewhere(u32),
    /// Redis is away, policy `local`: the cap divided by this many nodes.
    Divided(u32),
    /// Redis is away, policy `open`: this node's own count against the whole cap.
    Open,
    /// Redis is away, policy `closed`: refuse (503).
    Closed,
}

/// The cluster's counters, for `/metrics` and `/stats`.
#[derive(Debug, Default)]
pub struct ClusterCounters {
    /// Topic messages sent to other nodes.
    pub sent: AtomicU64,
    /// Topic messages received from other nodes.
    pub received: AtomicU64,
    /// Messages dropped because the link's queue was full.
    pub dropped_queue_full: AtomicU64,
    /// Messages not sent because Redis was away.
    pub dropped_redis_away: AtomicU64,
    /// Messages from Redis the link could not keep up with.
    pub dropped_lagged: AtomicU64,
    /// Times a Redis server became reachable.
    pub became_reachable: AtomicU64,
    /// Times a Redis server went away.
    pub became_unreachable: AtomicU64,
    /// Times another node was seen to number a Redis server differently (`redis` lists
    /// differ between nodes).
    pub shard_mismatches: AtomicU64,
    /// Times a connection to Redis dropped and came back before it was seen away.
    pub reconnected: AtomicU64,
    /// Admissions decided without the other nodes' counts while Redis was away.
    pub decided_alone: AtomicU64,
    /// Admissions refused with 503 while Redis was away (`closed`).
    pub refused_redis_away: AtomicU64,
    /// Bans received from other nodes.
    pub bans_received: AtomicU64,
    /// Lease requests sent to Redis (one script call each).
    pub lease_calls: AtomicU64,
    /// Cells Redis granted to leases (about one per decision allowed from a lease; counted by
    /// the link, so decisions pay nothing for it).
    pub lease_cells: AtomicU64,
}

/// What this node shares with the others, and the link that does it.
#[derive(Debug)]
pub struct Cluster {
    config: ClusterConfig,
    outbox: mpsc::Sender<Outgoing>,
    /// The Redis servers, each one's reachability and the work waiting for its link.
    shards: Arc<Shards>,
    mirror: Arc<Mirror>,
    remote: RemoteCounts,
    /// Nodes known alive, this one included (kept when Redis goes away: `local` divides by it).
    nodes: AtomicU32,
    /// The counters.
    pub counters: ClusterCounters,
    link: Mutex<Option<JoinHandle<()>>>,
    stop: watch::Sender<bool>,
}

impl Cluster {
    /// Starts the link to Redis for `config`: it delivers other nodes' messages through `hub`
    /// and applies their bans to `table`, whose connection counts it mirrors. Returns at once;
    /// the link connects (and reconnects) in the background.
    pub fn start(
        config: ClusterConfig,
        hub: &Arc<Hub>,
        table: &Arc<ClientTable>,
    ) -> std::io::Result<Arc<Self>> {
        let (outbox, queue) = mpsc::channel(OUTBOX);
        let shards = Arc::new(Shards::new(&config.redis));
        let mirror = Arc::new(Mirror::new(Arc::clone(&shards)));
        let cluster = Arc::new(Self {
            config,
            outbox,
            shards,
            mirror: Arc::clone(&mirror),
            remote: RemoteCounts::default(),
            nodes: AtomicU32::new(1),
            counters: ClusterCounters::default(),
            link: Mutex::new(None),
            stop: watch::Sender::new(false),
        });
        table.watch_counts(mirror as Arc<dyn CountWatcher>);
        let handle = link::spawn(
            Arc::clone(&cluster),
            Arc::clone(hub),
            Arc::clone(table),
            queue,
        )?;
        *lock(&cluster.link) = Some(handle);
        Ok(cluster)
    }

    /// This node's id.
    pub fn node_id(&self) -> &str {
        &self.config.node_id
    }

    /// Whether every Redis server is reachable now.
    pub fn is_reachable(&self) -> bool {
        self.shards.all_reachable()
    }

    /// How many Redis servers the cluster has.
    pub fn redis_servers(&self) -> usize {
        self.shards.len()
    }

    /// How many of them are reachable now.
    pub fn redis_servers_reachable(&self) -> usize {
        self.shards.reachable_count()
    }

    /// Whether the Redis server holding `client`'s budgets is reachable (one load while every
    /// server is).
    pub fn is_reachable_for(&self, client: &Arc<ClientState>) -> bool {
        if self.shards.all_reachable() {
            return true;
        }
        self.mirror
            .key_of(client)
            .is_some_and(|key| self.shards.reachable(self.shards.of_client(key)))
    }

    /// Clients with connections open on other nodes.
    pub fn clients_elsewhere(&self) -> usize {
        self.remote.clients()
    }

    /// Nodes known alive, this one included.
    pub fn nodes(&self) -> u32 {
        self.nodes.load(Ordering::Relaxed)
    }

    /// Sends `frame` to the members of `topic` on the other nodes (never waits: when the
    /// queue is full or Redis is away the message is dropped and counted).
    pub fn publish(&self, topic: &Arc<Topic>, frame: &Bytes) {
        self.send(topic, frame, None);
    }

    /// As [`Self::publish`], and the answer says how many other nodes had members of `topic`
    /// (Redis's count of subscribers; `None`: Redis is away or the queue is full, and the
    /// message did not leave).
    pub fn publish_counted(
        &self,
        topic: &Arc<Topic>,
        frame: &Bytes,
    ) -> Option<oneshot::Receiver<u64>> {
        let (reply, answer) = oneshot::channel();
        self.send(topic, frame, Some(reply)).then_some(answer)
    }

    fn send(&self, topic: &Arc<Topic>, frame: &Bytes, reply: Option<oneshot::Sender<u64>>) -> bool {
        if !self.shards.all_reachable()
            && !self.shards.reachable(self.shards.of_topic(topic.name()))
        {
            self.counters
                .dropped_redis_away
                .fetch_add(1, Ordering::Relaxed);
            return false;
        }
        let message = Outgoing::Publish {
            // The topic's `Arc`, not its name: no allocation per message on the worker.
            topic: Arc::clone(topic),
            frame: frame.clone(),
            reply,
        };
        if self.outbox.try_send(message).is_err() {
            self.counters
                .dropped_queue_full
                .fetch_add(1, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// Topic `name`'s member count on this node went to or from 0: the link subscribes or
    /// unsubscribes (it reads the count itself, so changes that cross are never misordered).
    pub fn topic_changed(&self, name: &str) {
        let shard = self.shards.get(self.shards.of_topic(name));
        let first = {
            let mut topics = lock(&shard.topics);
            topics.insert(name.into());
            topics.len() == 1
        };
        if first {
            shard.wake.notify_one();
        }
    }

    /// This node banned `client` for `duration`: the other nodes ban it too.
    pub fn banned(&self, client: &Arc<ClientState>, duration: Duration) {
        let Some(key) = self.mirror.key_of(client) else {
            return;
        };
        let shard = self.shards.get(self.shards.of_client(key));
        shard.push(&shard.bans, (key, duration));
    }

    /// How a rule with `quota` is leased while `nodes()` nodes share it: a chunk of about
    /// [`LEASE_SPAN`] of its rate, at most a share of its burst that leaves every node room.
    pub fn lease_terms(&self, quota: &Gcra) -> LeaseTerms {
        let interval_ns = quota.emission_interval_ns().max(1);
        let span = u64::try_from(LEASE_SPAN.as_nanos()).unwrap_or(u64::MAX) / interval_ns;
        let share = quota.burst() / (2 * u64::from(self.nodes().max(1)));
        LeaseTerms {
            chunk: span.min(share).max(1),
            interval_ns,
        }
    }

    /// `client`'s lease in `bucket` (rule `rule`, quota `quota`) wants `want` more cells.
    pub fn renew(
        &self,
        client: &Arc<ClientState>,
        bucket: usize,
        rule: &Arc<str>,
        quota: Gcra,
        want: u64,
    ) {
        let index = match self.shards.len() {
            1 => 0,
            _ => match self.mirror.key_of(client) {
                Some(key) => self.shards.of_client(key),
                None => return,
            },
        };
        let renewal = Renewal {
            client: Arc::clone(client),
            bucket,
            rule: Arc::clone(rule),
            quota,
            want,
        };
        let shard = self.shards.get(index);
        shard.push(&shard.renewals, renewal);
    }

    /// How admission counts `client`'s connections elsewhere, under `policy` while Redis is
    /// away (counted when it decides without the other nodes).
    pub fn shared_count(&self, client: ClientKey, policy: RedisErrorPolicy) -> SharedCount {
        if self.shards.all_reachable() || self.shards.reachable(self.shards.of_client(client)) {
            return SharedCount::Elsewhere(self.remote.of(client));
        }
        let counter = match policy {
            RedisErrorPolicy::Closed => &self.counters.refused_redis_away,
            _ => &self.counters.decided_alone,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        match policy {
            RedisErrorPolicy::Local => SharedCount::Divided(self.nodes().max(1)),
            RedisErrorPolicy::Open => SharedCount::Open,
            RedisErrorPolicy::Closed => SharedCount::Closed,
        }
    }

    /// The policy per-client rules follow while Redis is away, unless `[limits]` says.
    pub fn default_policy(&self) -> RedisErrorPolicy {
        self.config.on_redis_error
    }

    /// Stops the link: this node's counts leave Redis and the other nodes are told it is
    /// gone. Waits up to a second.
    pub fn shutdown(&self) {
        self.stop.send_replace(true);
        let handle = lock(&self.link).take();
        if let Some(handle) = handle {
            let deadline = std::time::Instant::now() + Duration::from_secs(1);
            while !handle.is_finished() && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if handle.is_finished() {
                let _ = handle.join();
            }
        }
    }
}
