//! Per-client admission, shared by every worker: who a client is, the allow and deny lists,
//! bans, and the per-client rules of PROTECTIONS.md (concurrent connections, connection rate,
//! request rate, WebSocket message and byte rates across a client's connections).
//!
//! A connection is admitted once, at accept when its address names the client, or at its
//! request heads when the client is named by a header, a query parameter or a trusted proxy's
//! forwarding header, or (`client_id = "auth"`) by the answer of the route's auth hook, once it
//! came. Admission yields a [`ClientSlot`] the connection keeps to its end: it holds
//! the client's place in the connection count (released on drop, on every path) and the
//! client's shared state, so each later check is an atomic compare-and-swap, exact across
//! cores. Every refusal is a violation: one log line and a counter (in shadow mode the same,
//! and the traffic goes through).
//!
//! This file builds the [`ClientGate`] from the configuration and keeps what every check
//! shares; the checks are one file each: `admission` (at accept and at the first request),
//! `requests` (request rates and their `RateLimit` headers), `frames` (WebSocket rates across
//! a client's connections), `violations` (counting and logging what a rule refused),
//! `refusal` (what a refused client gets, with its `Retry-After`), and `report` (the top
//! clients, for `/stats`).

mod admission;
mod buckets;
mod frames;
mod refusal;
mod report;
mod requests;
mod shared;
mod violations;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use ringstream_limits::bans::BanPolicy;
use ringstream_limits::client_table::{ClientTable, ConnectionPolicy};
use ringstream_limits::clock::nanos;
use ringstream_limits::gcra::{AtomicGcraState, Decision, Gcra};
use ringstream_limits::identity::ClientIdentity;

use crate::cluster::Cluster;
use crate::config::{ClientLimits, RouteKind, ServerConfig};
use crate::protections::loopback_watch::{LoopbackShare, LoopbackWatch};
use crate::server::coarse_clock;
use crate::server::metrics::Metrics;

pub use admission::{Admission, ClientSlot};
pub use refusal::Refusal;
pub use report::BudgetName;
pub use requests::{RateHeaders, RequestCheck};

use buckets::{BucketNumbers, BucketRule};
use requests::RequestQuota;

/// Whether `exempt` holds the loopback addresses.
fn loopback_exempt(exempt: &ringstream_limits::cidr::CidrSet) -> bool {
    exempt.contains(IpAddr::from([127, 0, 0, 1]))
        || exempt.contains(IpAddr::from(std::net::Ipv6Addr::LOCALHOST))
}

/// Clients unseen for this long are forgotten (unless their bans or quotas need longer).
const MIN_CLIENT_MEMORY: Duration = Duration::from_secs(120);

/// The server's per-client admission and rules. A reloaded configuration gets a gate of its
/// own ([`ClientGate::reloaded`]) that shares the clients (their counts, rates and bans), the
/// bucket numbering and the violation log's budget with the one before.
#[derive(Debug)]
pub struct ClientGate {
    limits: ClientLimits,
    identity: ClientIdentity,
    table: Arc<ClientTable>,
    buckets: Arc<BucketNumbers>,
    connections: ConnectionPolicy,
    bans: Option<BanPolicy>,
    /// Per route, then one for requests no route matched.
    requests: Box<[Option<RequestQuota>]>,
    messages: Option<(usize, Gcra)>,
    bytes: Option<(usize, Gcra)>,
    /// Per route: a files route's `client_bandwidth` budget, with its bucket.
    bandwidth: Box<[Option<(usize, Gcra)>]>,
    metrics: Arc<Metrics>,
    log_budget: Arc<AtomicGcraState>,
    log_quota: Option<Gcra>,
    loopback: Arc<LoopbackWatch>,
    /// The last top-clients report, reused for a while (see `report`).
    top: report::TopCache,
    /// The other nodes' counts and bans, when the node is one of several.
    cluster: Option<Arc<Cluster>>,
    /// Per bucket, the name its rule is shared under across nodes (`None`: kept per node).
    shared: Box<[Option<Arc<str>>]>,
    /// `connections_per_minute` shared across nodes, with its bucket (a cluster only).
    connection_rate: Option<(usize, Gcra)>,
}

impl ClientGate {
    /// The gate for `config`, counting into `metrics`.
    pub fn new(config: &ServerConfig, metrics: Arc<Metrics>) -> Self {
        let limits = &config.clients;
        let memory = MIN_CLIENT_MEMORY
            .max(limits.ban_window)
            .max(limits.ban_duration);
        let buckets = Arc::new(BucketNumbers::default());
        // Numbered first, so that these budgets sit in a client's inline buckets.
        for rule in [
            BucketRule::ServerRequests,
            BucketRule::Messages,
            BucketRule::Bytes,
        ] {
            buckets.number(rule);
        }
        let table = Arc::new(ClientTable::new(
            limits.max_tracked_clients,
            nanos(memory),
            buckets.count(),
        ));
        let loopback = Arc::new(LoopbackWatch::new(
            limits.trusted_proxies.is_empty(),
            loopback_exempt(&limits.exempt),
        ));
        Self::with_clients(
            config,
            metrics,
            table,
            buckets,
            Arc::new(AtomicGcraState::default()),
            loopback,
        )
    }

    /// The gate of a reloaded `config`: the clients (their connection counts, rates and
    /// bans), the bucket numbering, the counters and the violation log's budget carry over.
    /// `max_tracked_clients` and how long idle clients are remembered stay as they were.
    pub fn reloaded(&self, config: &ServerConfig) -> Self {
        let limits = &config.clients;
        self.loopback.reconfigure(
            limits.trusted_proxies.is_empty(),
            loopback_exempt(&limits.exempt),
        );
        let mut gate = Self::with_clients(
            config,
            Arc::clone(&self.metrics),
            Arc::clone(&self.table),
            Arc::clone(&self.buckets),
            Arc::clone(&self.log_budget),
            Arc::clone(&self.loopback),
        );
        gate.identity = gate.identity.with_secret_of(&self.identity);
        if self.cluster.is_some() {
            gate.cluster.clone_from(&self.cluster);
            gate.share_connection_rate();
        }
        gate
    }

    /// This gate, counting clients across the nodes of `cluster` (whose link watches this
    /// gate's table).
    pub fn with_cluster(mut self, cluster: Arc<Cluster>, secret: &[u8]) -> Self {
        self.identity = self.identity.with_shared_secret(secret);
        self.cluster = Some(cluster);
        self.share_connection_rate();
        self
    }

    /// In a cluster, `connections_per_minute` is decided from a lease in a bucket of its own
    /// (`admission`), not from the client's own connection-rate state.
    fn share_connection_rate(&mut self) {
        if let Some(rate) = self.connections.rate.take() {
            let bucket = self.buckets.number(BucketRule::Connections);
            self.table.reserve_buckets(self.buckets.count());
            self.shared = self.buckets.shared_names();
            self.connection_rate = Some((bucket, rate));
        }
    }

    /// The shared client table, for the cluster's link.
    pub fn shared_table(&self) -> &Arc<ClientTable> {
        &self.table
    }

    fn with_clients(
        config: &ServerConfig,
        metrics: Arc<Metrics>,
        table: Arc<ClientTable>,
        buckets: Arc<BucketNumbers>,
        log_budget: Arc<AtomicGcraState>,
        loopback: Arc<LoopbackWatch>,
    ) -> Self {
        let limits = config.clients.clone();
        let minute = Duration::from_secs(60);
        let requests = requests::request_quotas(config, &buckets);
        let messages = Gcra::new(limits.client_messages_per_minute, minute, {
            limits.client_messages_per_minute
        })
        .map(|q| (buckets.number(BucketRule::Messages), q));
        let bytes = Gcra::new(limits.client_bytes_per_minute, minute, {
            limits.client_bytes_per_minute
        })
        .map(|q| (buckets.number(BucketRule::Bytes), q));
        let bandwidth: Box<[Option<(usize, Gcra)>]> = config
            .routes
            .iter()
            .map(|route| {
                if !matches!(route.kind, RouteKind::Files(_)) {
                    return None;
                }
                let rate = route.limits.bandwidth.per_client;
                let burst = crate::routes::files::pace::cap_burst(rate);
                let quota = Gcra::new(rate, Duration::from_secs(1), burst)?;
                Some((
                    buckets.number(BucketRule::Bandwidth(route.path.clone())),
                    quota,
                ))
            })
            .collect();
        table.reserve_buckets(buckets.count());
        let shared = buckets.shared_names();
        let bans = (limits.ban_after_violations > 0).then(|| BanPolicy {
            after_violations: limits.ban_after_violations,
            window_ns: nanos(limits.ban_window),
            duration_ns: nanos(limits.ban_duration),
        });
        Self {
            identity: ClientIdentity::new(
                limits.client_id.clone(),
                limits.trusted_proxies.clone(),
                limits.forwarded_header,
                limits.ipv6_prefix,
            ),
            table,
            buckets,
            connections: ConnectionPolicy {
                max_concurrent: limits.max_concurrent_connections,
                rate: Gcra::new(
                    u64::from(limits.connections_per_minute),
                    minute,
                    u64::from(limits.connections_per_minute),
                ),
                bans,
            },
            bans,
            requests,
            messages,
            bytes,
            bandwidth,
            metrics,
            log_budget,
            log_quota: violations::log_quota(),
            loopback,
            top: report::TopCache::default(),
            cluster: None,
            connection_rate: None,
            shared,
            limits,
        }
    }

    /// Ends a window of the loopback watch; see [`LoopbackWatch::end_window`].
    pub fn end_loopback_window(&self) -> Option<LoopbackShare> {
        self.loopback.end_window()
    }

    /// The shared client table (for `/stats` and the sweeper).
    pub fn table(&self) -> &ClientTable {
        &self.table
    }

    /// Asks the `client_bandwidth` budget of files route `route` for `bytes` at `now`, for
    /// the client of `slot` (a client the limits do not track, such as an exempt one, has
    /// no budget: always allowed).
    pub fn check_bandwidth(
        &self,
        slot: &ClientSlot,
        route: usize,
        bytes: u64,
        now: u64,
    ) -> Decision {
        match (slot.limited(), self.bandwidth.get(route)) {
            (Some(client), Some(Some((bucket, quota)))) => client.check(*bucket, quota, now, bytes),
            _ => Decision::Allow {
                remaining: 0,
                reset_after: Duration::ZERO,
            },
        }
    }

    /// Nanoseconds on the gate's clock (the coarse monotonic clock).
    pub fn now(&self) -> u64 {
        coarse_clock::now_ns()
    }
}
