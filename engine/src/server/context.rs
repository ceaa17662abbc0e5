//! What every connection on one worker shares: routes, limits, the date cache, the registry of
//! open connections and whether the server is draining.
//!
//! A worker has one context per configuration generation ([`crate::server::generation`]): a
//! reload gives it a new one for the connections it accepts from then on, sharing the
//! registry, the drain flag, the topics and the access log batch with the one before, which
//! lives on while connections that started with it do.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use ringstream_protocol::http::HeadLimits;

use bytes::Bytes;

use crate::config::{HttpLimits, ServerConfig};
use crate::protections::gate::ClientGate;
use crate::routes::broadcast::compress::FreshCompressors;
use crate::routes::broadcast::local::Delivery;
use crate::routes::broadcast::{Hub, LocalTopics, Topic};
use crate::routes::proxy::pool::UpstreamPools;
use crate::routes::router::Router;
use crate::routes::state::{RouteState, RouteStates};
use crate::server::access_log::{AccessLog, WorkerAccessLog};
use crate::server::conn_count::ConnectionCounter;
use crate::server::date_cache::DateCache;
use crate::server::generation::Generation;
use crate::server::metrics::{Metrics, Traffic, WorkerCounters};
use crate::server::registry::ConnRegistry;
use crate::server::route_traffic::RouteSlots;

/// What a worker keeps across configurations.
struct Worker {
    registry: ConnRegistry,
    draining: Rc<Cell<bool>>,
    refusals_in_flight: Rc<Cell<usize>>,
    topics: Rc<RefCell<LocalTopics>>,
    compressors: Rc<RefCell<FreshCompressors>>,
    access_log: Option<Rc<WorkerAccessLog>>,
    connections: Arc<ConnectionCounter>,
    metrics: Arc<Metrics>,
    hub: Arc<Hub>,
}

/// One worker's shared, single-threaded state.
#[derive(Debug)]
pub struct WorkerContext {
    /// The route table.
    pub router: Router,
    /// The global `[limits]`: they govern a connection until a request head names its route.
    pub limits: HttpLimits,
    /// Bounds for reading any request head: the loosest of the global and every route's
    /// values, so that no route's allowance is cut short; each route's own values are checked
    /// once the head has been parsed.
    pub head_limits: HeadLimits,
    /// The cached `Date` header value.
    pub date: DateCache,
    /// Open connections, for the drain.
    pub registry: ConnRegistry,
    /// Set when the drain starts: idle connections close, responses carry `Connection: close`.
    pub draining: Rc<Cell<bool>>,
    /// Connections currently being refused at accept (bounded so a flood cannot pile them up).
    pub refusals_in_flight: Rc<Cell<usize>>,
    /// Per-client admission and rules, shared by every worker.
    pub gate: Arc<ClientGate>,
    /// The server's counters.
    pub metrics: Arc<Metrics>,
    /// The server-wide connection count, for `/stats`.
    pub connections: Arc<ConnectionCounter>,
    /// The configuration, for `/stats`.
    pub config: Arc<ServerConfig>,
    /// Broadcast topics of every worker and their inboxes.
    pub hub: Arc<Hub>,
    /// This worker's members per topic.
    pub topics: Rc<RefCell<LocalTopics>>,
    /// This worker's permessage-deflate compressors for messages compressed afresh (a topic's,
    /// and echoes where the server keeps no context).
    pub compressors: Rc<RefCell<FreshCompressors>>,
    /// What routes share (sink files, files roots), by route index.
    pub routes: RouteStates,
    /// This worker's connections to the upstreams of proxy routes.
    pub upstreams: RefCell<UpstreamPools>,
    /// This worker's side of the access log, when it is on.
    pub access_log: Option<Rc<WorkerAccessLog>>,
    /// The counters of this configuration's routes.
    pub route_traffic: RouteSlots,
    /// The configuration generation this context serves.
    pub generation: u64,
    /// Set when a reload replaced this context's configuration (its background tasks stop).
    pub retired: Cell<bool>,
    /// This worker's index (its block of counters).
    index: usize,
}

/// What every worker shares whatever the configuration, handed to each worker's context.
#[derive(Debug, Clone)]
pub struct SharedState {
    /// The server-wide connection count.
    pub connections: Arc<ConnectionCounter>,
    /// The server's counters.
    pub metrics: Arc<Metrics>,
    /// Broadcast topics and every worker's inbox.
    pub hub: Arc<Hub>,
    /// The access log, when it is on.
    pub access_log: Option<Arc<AccessLog>>,
}

impl WorkerContext {
    /// Builds worker `index`'s first context, for `generation`, with what workers share.
    pub fn new(generation: &Generation, index: usize, shared: SharedState) -> Self {
        let SharedState {
            connections,
            metrics,
            hub,
            access_log,
        } = shared;
        let registry =
            ConnRegistry::new(Arc::clone(connections.budget()), metrics.open_gauge(index));
        let compressors = Rc::<RefCell<FreshCompressors>>::default();
        Self::build(
            generation,
            index,
            Worker {
                registry,
                draining: Rc::default(),
                refusals_in_flight: Rc::default(),
                topics: Rc::new(RefCell::new(LocalTopics::new(
                    index,
                    Rc::clone(&compressors),
                ))),
                compressors,
                access_log: access_log.map(|log| Rc::new(WorkerAccessLog::new(log))),
                connections,
                metrics,
                hub,
            },
        )
    }

    /// This worker's context for a reloaded `generation`: what the worker keeps (its
    /// connections, the drain, its topic members, its access log batch, the counters) is
    /// shared with this one; this one's idle upstream connections are closed (its client
    /// connections still reuse upstream connections while they last).
    pub fn reloaded(&self, generation: &Generation) -> Self {
        self.retired.set(true);
        self.upstreams.borrow_mut().close_idle();
        Self::build(
            generation,
            self.index,
            Worker {
                registry: self.registry.clone(),
                draining: Rc::clone(&self.draining),
                refusals_in_flight: Rc::clone(&self.refusals_in_flight),
                topics: Rc::clone(&self.topics),
                compressors: Rc::clone(&self.compressors),
                access_log: self.access_log.clone(),
                connections: Arc::clone(&self.connections),
                metrics: Arc::clone(&self.metrics),
                hub: Arc::clone(&self.hub),
            },
        )
    }

    fn build(generation: &Generation, index: usize, worker: Worker) -> Self {
        let config = &generation.config;
        let all = std::iter::once(&config.limits).chain(config.routes.iter().map(|r| &r.limits));
        let mut head_limits = HeadLimits {
            max_head_bytes: 0,
            max_headers: 0,
            max_uri_bytes: 0,
        };
        for limits in all {
            head_limits.max_head_bytes = head_limits.max_head_bytes.max(limits.max_header_bytes);
            head_limits.max_headers = head_limits.max_headers.max(limits.max_headers);
            head_limits.max_uri_bytes = head_limits.max_uri_bytes.max(limits.max_uri_bytes);
        }
        let Worker {
            registry,
            draining,
            refusals_in_flight,
            topics,
            compressors,
            access_log,
            connections,
            metrics,
            hub,
        } = worker;
        Self {
            router: Router::new(config.routes.clone()),
            limits: config.limits.clone(),
            head_limits,
            date: DateCache::new(),
            registry,
            draining,
            refusals_in_flight,
            connections,
            gate: Arc::clone(&generation.gate),
            route_traffic: metrics
                .routes()
                .for_routes(config.routes.iter().map(|r| r.path.as_str())),
            metrics,
            config: Arc::clone(config),
            hub,
            routes: Arc::clone(&generation.routes),
            upstreams: RefCell::default(),
            access_log,
            topics,
            compressors,
            generation: generation.number,
            retired: Cell::new(false),
            index,
        }
    }

    /// What route `index` shares with the other workers.
    pub fn route_state(&self, index: usize) -> Option<&RouteState> {
        self.routes.get(index).map(Arc::as_ref)
    }

    /// This worker's counters of route `index` (`None`: no route matched).
    pub fn route_traffic(&self, index: Option<usize>) -> &Traffic {
        self.route_traffic.get(index).worker(self.index)
    }

    /// This worker's index.
    pub fn index(&self) -> usize {
        self.index
    }

    /// Publishes an encoded frame to `topic`: offered to this worker's members at once (except
    /// the member `skip`), posted once to each other worker with members, and handed to the
    /// cluster for the other nodes. Returns what happened on this worker.
    pub fn publish(&self, topic: &Arc<Topic>, frame: &Bytes, skip: Option<usize>) -> Delivery {
        let local = self.deliver_here(topic, frame, skip);
        if let Some(cluster) = self.hub.topics.cluster() {
            cluster.publish(topic, frame);
        }
        local
    }

    /// As [`Self::publish`], on this node only.
    pub fn deliver_here(&self, topic: &Arc<Topic>, frame: &Bytes, skip: Option<usize>) -> Delivery {
        self.counters().broadcast.published.add(1);
        let local = self.topics.borrow().deliver(topic, frame, skip);
        self.count_delivery(local);
        for worker in topic.workers() {
            if worker != self.index {
                self.hub.post(worker, topic, frame);
            }
        }
        local
    }

    /// Counts what a delivery on this worker did.
    pub fn count_delivery(&self, delivery: Delivery) {
        let counters = &self.counters().broadcast;
        counters.delivered.add(delivery.queued);
        counters.dropped.add(delivery.dropped);
        counters.slow_closed.add(delivery.closed);
    }

    /// The counters this worker writes.
    pub fn counters(&self) -> &WorkerCounters {
        self.metrics.worker(self.index)
    }

    /// The time a refusal or final response may take to leave.
    pub fn send_timeout(&self) -> Duration {
        self.limits.send_timeout
    }
}
