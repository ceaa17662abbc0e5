//! The link to Redis: one thread running the Redis client (`fred`) on its own tokio runtime,
//! so no worker ever waits on Redis. It holds two connections to each Redis server (a
//! publisher and a subscriber) and runs these tasks:
//! - `send` takes the workers' publishes off the bounded queue and publishes them in
//!   pipelines, one per server holding topics of the batch, one batch in flight, in queue
//!   order (so a publisher's messages to a topic keep theirs);
//! - `receive`, one per server, takes what it delivers: other nodes' topic messages go to the
//!   workers with members through the hub (one post per worker, the frame as the origin
//!   encoded it), and control messages update the other nodes' counts, their liveness and bans;
//! - `control`, one per server (`sync`), keeps that server and this node in step. While a
//!   server is away nothing is queued for it, and only what it holds waits.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use fred::clients::SubscriberClient;
use fred::prelude::{
    Builder, Client, ClientLike, Config, EventInterface, PubsubInterface, ReconnectPolicy, Value,
};
use fred::types::Message;
use ringstream_limits::client_table::ClientTable;
use tokio::sync::{broadcast, mpsc};

use super::counts::NodeCounts;
use super::leases::LeaseBook;
use super::shards::lock;
use super::wire::{self, Control};
use super::{Cluster, Outgoing};
use crate::routes::broadcast::Hub;
use crate::server::coarse_clock;

/// Publishes sent to Redis in one pipeline at most.
const BATCH: usize = 256;
/// Timeout of any one command (a slow Redis fails commands, it never stalls the link).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);
/// Messages Redis may deliver before the link reads them; past it they are dropped, counted.
const RECEIVE_BUFFER: usize = 4096;

/// Starts the link's thread.
pub(super) fn spawn(
    cluster: Arc<Cluster>,
    hub: Arc<Hub>,
    table: Arc<ClientTable>,
    queue: mpsc::Receiver<Outgoing>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("ringstream-cluster".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(e) => {
                    tracing::error!(error = %e, "cluster: the link's runtime did not start");
                    return;
                }
            };
            runtime.block_on(run(cluster, hub, table, queue));
        })
}

/// Reconnect delays: 100 ms doubling to 2 s, each with up to 1 s of jitter, so nodes that lost
/// Redis together do not come back together.
fn reconnect_policy() -> ReconnectPolicy {
    let mut policy = ReconnectPolicy::new_exponential(0, 100, 2_000, 2);
    policy.set_jitter(1_000);
    policy
}

fn builder(config: Config) -> Builder {
    let mut builder = Builder::from_config(config);
    builder
        .with_connection_config(|c| {
            c.connection_timeout = COMMAND_TIMEOUT;
            c.internal_command_timeout = COMMAND_TIMEOUT;
            c.max_command_attempts = 1;
        })
        .with_performance_config(|p| {
            p.default_command_timeout = COMMAND_TIMEOUT;
            p.broadcast_channel_capacity = RECEIVE_BUFFER;
        })
        .set_policy(reconnect_policy());
    builder
}

async fn run(
    cluster: Arc<Cluster>,
    hub: Arc<Hub>,
    table: Arc<ClientTable>,
    queue: mpsc::Receiver<Outgoing>,
) {
    let mut shards = Vec::new();
    for (index, url) in cluster.config.redis.iter().enumerate() {
        let clients = Config::from_url(url).and_then(|config| {
            let publisher = builder(config.clone()).build()?;
            let subscriber = builder(config).build_subscriber_client()?;
            Ok((publisher, subscriber))
        });
        match clients {
            Ok((publisher, subscriber)) => {
                shards.push(ShardLink::new(index, publisher, subscriber))
            }
            Err(e) => {
                tracing::error!(error = %e, redis = cluster.shards.label(index), "cluster: no Redis client could be made; this node runs alone");
                return;
            }
        }
    }
    let link = Arc::new(Link {
        cluster,
        hub,
        table,
        shards,
    });
    for shard in &link.shards {
        let mut errors = shard.publisher.error_rx();
        tokio::spawn(async move {
            // Errors are seen as the connection's state by `control`; this only empties the
            // channel.
            while let Ok((error, _)) = errors.recv().await {
                tracing::debug!(%error, "cluster: Redis connection error");
            }
        });
        let reconnects = [
            shard.publisher.reconnect_rx(),
            shard.subscriber.reconnect_rx(),
        ];
        for mut reconnected in reconnects {
            let link = Arc::clone(&link);
            let index = shard.index;
            tokio::spawn(async move {
                // A connection that came back between two looks at its state (a Redis
                // restarted within 100 ms) has lost its subscriptions, and Redis maybe its
                // data: resync.
                while reconnected.recv().await.is_ok() {
                    link.shards[index]
                        .resync_needed
                        .store(true, Ordering::Release);
                    link.cluster.shards.get(index).wake.notify_one();
                }
            });
        }
        tokio::spawn(Arc::clone(&link).receive(shard.index, shard.subscriber.message_rx()));
        // Each client's connection task runs (and reconnects) on its own; its handle is not
        // needed.
        drop(shard.publisher.connect());
        drop(shard.subscriber.connect());
    }
    tokio::spawn(Arc::clone(&link).send(queue));
    let controls = link.shards.iter().map(|shard| async {
        link.control(shard).await;
        link.farewell(shard).await;
    });
    futures_util::future::join_all(controls).await;
}

/// The link's state for one Redis server.
pub(super) struct ShardLink {
    /// Its place in `[cluster] redis`.
    pub(super) index: usize,
    pub(super) publisher: Client,
    pub(super) subscriber: SubscriberClient,
    /// The other nodes and their counts of the clients this server holds.
    pub(super) nodes: Mutex<NodeCounts>,
    /// Topics on this server this node has members of (subscribed while it is reachable).
    pub(super) subscribed: Mutex<HashSet<String>>,
    /// The leases of the per-client rates of the clients this server holds.
    pub(super) leases: Mutex<LeaseBook>,
    /// The SHA-1 of the script that grants them, as the server answered loading it (at each
    /// resync).
    pub(super) lease_script: Mutex<String>,
    /// A connection came back: subscribe and write this node's state again.
    pub(super) resync_needed: AtomicBool,
}

impl ShardLink {
    fn new(index: usize, publisher: Client, subscriber: SubscriberClient) -> Self {
        Self {
            index,
            publisher,
            subscriber,
            nodes: Mutex::default(),
            subscribed: Mutex::default(),
            leases: Mutex::default(),
            lease_script: Mutex::default(),
            resync_needed: AtomicBool::new(false),
        }
    }

    /// Whether both connections are up.
    pub(super) fn is_connected(&self) -> bool {
        self.publisher.is_connected() && self.subscriber.is_connected()
    }
}

/// What the link's tasks share.
pub(super) struct Link {
    pub(super) cluster: Arc<Cluster>,
    pub(super) hub: Arc<Hub>,
    pub(super) table: Arc<ClientTable>,
    /// One per Redis server, in `[cluster] redis` order.
    pub(super) shards: Vec<ShardLink>,
}

/// A publish waiting in a batch for its server's pipeline.
type Queued = (
    Arc<crate::routes::broadcast::Topic>,
    Bytes,
    Option<tokio::sync::oneshot::Sender<u64>>,
);

impl Link {
    pub(super) fn node(&self) -> &str {
        self.cluster.node_id()
    }

    /// Publishes the workers' messages in order, a batch at a time: one pipeline per server
    /// holding topics of the batch, all in flight together.
    async fn send(self: Arc<Self>, mut queue: mpsc::Receiver<Outgoing>) {
        let mut batch = Vec::with_capacity(BATCH);
        let mut per_shard: Vec<Vec<Queued>> = self.shards.iter().map(|_| Vec::new()).collect();
        while queue.recv_many(&mut batch, BATCH).await > 0 {
            for Outgoing::Publish {
                topic,
                frame,
                reply,
            } in batch.drain(..)
            {
                let index = self.cluster.shards.of_topic(topic.name());
                per_shard[index].push((topic, frame, reply));
            }
            let pipelines = per_shard
                .iter_mut()
                .zip(&self.shards)
                .filter(|(queued, _)| !queued.is_empty())
                .map(|(queued, shard)| self.publish(shard, queued));
            futures_util::future::join_all(pipelines).await;
        }
    }

    /// Publishes `queued` (emptied) to `shard` in one pipeline.
    async fn publish(&self, shard: &ShardLink, queued: &mut Vec<Queued>) {
        let counters = &self.cluster.counters;
        let count = queued.len() as u64;
        if !shard.publisher.is_connected() {
            queued.clear();
            counters
                .dropped_redis_away
                .fetch_add(count, Ordering::Relaxed);
            return;
        }
        let pipeline = shard.publisher.pipeline();
        let mut replies = Vec::new();
        for (index, (topic, frame, reply)) in queued.drain(..).enumerate() {
            let message = wire::topic_message(self.node(), &frame);
            if let Some(reply) = reply {
                // Redis counts this node too when it has members of the topic.
                let here = lock(&shard.subscribed).contains(topic.name());
                replies.push((index, u64::from(here), reply));
            }
            let _: Result<(), _> = pipeline
                .publish(wire::topic_channel(topic.name()), message)
                .await;
        }
        match pipeline.all::<Vec<Value>>().await {
            Ok(answers) => {
                counters.sent.fetch_add(count, Ordering::Relaxed);
                for (index, here, reply) in replies {
                    let reached = answers.get(index).and_then(Value::as_u64).unwrap_or(0);
                    let _ = reply.send(reached.saturating_sub(here));
                }
            }
            Err(_) => {
                counters
                    .dropped_redis_away
                    .fetch_add(count, Ordering::Relaxed);
            }
        }
    }

    /// Takes what Redis server `index` delivers until its client is dropped.
    async fn receive(self: Arc<Self>, index: usize, mut messages: broadcast::Receiver<Message>) {
        loop {
            match messages.recv().await {
                Ok(message) => self.on_message(&self.shards[index], message),
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    self.cluster
                        .counters
                        .dropped_lagged
                        .fetch_add(missed, Ordering::Relaxed);
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    }

    fn on_message(&self, shard: &ShardLink, message: Message) {
        let channel: &str = &message.channel;
        if channel == wire::CONTROL {
            if let Some(control) = message.value.as_str().and_then(|t| Control::decode(&t)) {
                self.on_control(shard, control);
            }
            return;
        }
        let Some(name) = wire::channel_topic(channel) else {
            return;
        };
        let Some(payload) = message.value.into_bytes() else {
            return;
        };
        self.deliver(name, &payload);
    }

    /// Hands another node's message for `name` to the workers with members of it.
    fn deliver(&self, name: &str, payload: &Bytes) {
        let Some((origin, frame)) = wire::split_topic_message(payload) else {
            return;
        };
        if origin == self.node().as_bytes() {
            return;
        }
        self.cluster
            .counters
            .received
            .fetch_add(1, Ordering::Relaxed);
        if let Some(topic) = self.hub.topics.get(name) {
            for worker in topic.workers() {
                self.hub.post(worker, &topic, &frame);
            }
        }
    }

    fn on_control(&self, shard: &ShardLink, control: Control) {
        let now = Instant::now();
        let nodes = &shard.nodes;
        match control {
            Control::Count {
                node,
                client,
                count,
            } if node != self.node() => {
                lock(nodes).set(&self.cluster.remote, &node, client, count, now);
            }
            Control::Count { .. } => {}
            Control::Ban { client, millis } => {
                let clock = coarse_clock::now_ns();
                self.table
                    .client(client, clock)
                    .impose_ban(clock, Duration::from_millis(millis));
                self.cluster
                    .counters
                    .bans_received
                    .fetch_add(1, Ordering::Relaxed);
            }
            Control::Alive { node } if node != self.node() => lock(nodes).heard(&node, now),
            Control::Alive { .. } => {}
            Control::Gone { node } => lock(nodes).forget(&self.cluster.remote, &node),
            Control::Reset { node } if node != self.node() => {
                lock(nodes).reset(&self.cluster.remote, &node, now);
            }
            Control::Reset { .. } => {}
        }
        self.count_nodes();
    }

    /// Counts the nodes alive: those heard on any reachable server, and this one (while no
    /// server is reachable, the last count stands).
    pub(super) fn count_nodes(&self) {
        let reachable = |shard: &&ShardLink| self.cluster.shards.reachable(shard.index);
        let others = if let [shard] = &self.shards[..] {
            // One server (the usual case): no set of names to build per control message.
            if !reachable(&shard) {
                return;
            }
            lock(&shard.nodes).len()
        } else {
            let known: Vec<_> = self
                .shards
                .iter()
                .filter(reachable)
                .map(|shard| lock(&shard.nodes))
                .collect();
            if known.is_empty() {
                return;
            }
            known
                .iter()
                .flat_map(|nodes| nodes.ids())
                .collect::<HashSet<&str>>()
                .len()
        };
        let nodes = u32::try_from(others + 1).unwrap_or(u32::MAX);
        self.cluster.nodes.store(nodes, Ordering::Relaxed);
    }
}
