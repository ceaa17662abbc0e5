//! The server's counters, read by `/stats` and `/metrics`.
//!
//! Traffic counters are per worker: each worker writes only its own block (a plain load and
//! store, no locked instruction, no cache line shared with another core), and a reader sums
//! the blocks. Violations are rare and counted in shared atomics. Every refusal a protection
//! answers (an HTTP status, or a WebSocket close code the server sends) is counted per status
//! or code, so each row of PROTECTIONS.md has a counter. Each worker also publishes how many
//! connections it holds ([`OpenGauge`]), and the uploads and downloads in progress are listed
//! in [`Transfers`].

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

use ringstream_limits::client_table::Rule;

use crate::config::LimitMode;
use crate::server::route_traffic::RouteCounters;
use crate::server::transfers::Transfers;

/// A counter written by one thread only and read by any: `add` is a load and a store, which
/// is exact as long as the single-writer rule holds.
#[derive(Debug, Default)]
pub struct LocalCounter(AtomicU64);

impl LocalCounter {
    /// Adds `n` (only ever called by the owning worker).
    pub fn add(&self, n: u64) {
        let value = self.0.load(Ordering::Relaxed).wrapping_add(n);
        self.0.store(value, Ordering::Relaxed);
    }

    /// The current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// What a route (or the whole server) has served.
#[derive(Debug, Default)]
pub struct Traffic {
    /// HTTP requests answered (upgrades included).
    pub requests: LocalCounter,
    /// WebSocket upgrades accepted.
    pub upgrades: LocalCounter,
    /// WebSocket frames received.
    pub messages_in: LocalCounter,
    /// WebSocket messages sent (echoes, handler messages).
    pub messages_out: LocalCounter,
    /// WebSocket frame bytes received.
    pub bytes_in: LocalCounter,
    /// WebSocket frame bytes sent.
    pub bytes_out: LocalCounter,
    /// Frames dropped by `on_limit = "drop"`.
    pub dropped: LocalCounter,
}

/// Sums of one counter over every worker.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TrafficTotals {
    /// See [`Traffic::requests`].
    pub requests: u64,
    /// See [`Traffic::upgrades`].
    pub upgrades: u64,
    /// See [`Traffic::messages_in`].
    pub messages_in: u64,
    /// See [`Traffic::messages_out`].
    pub messages_out: u64,
    /// See [`Traffic::bytes_in`].
    pub bytes_in: u64,
    /// See [`Traffic::bytes_out`].
    pub bytes_out: u64,
    /// See [`Traffic::dropped`].
    pub dropped: u64,
}

impl TrafficTotals {
    /// Adds one block's counts.
    pub fn add(&mut self, traffic: &Traffic) {
        self.requests += traffic.requests.get();
        self.upgrades += traffic.upgrades.get();
        self.messages_in += traffic.messages_in.get();
        self.messages_out += traffic.messages_out.get();
        self.bytes_in += traffic.bytes_in.get();
        self.bytes_out += traffic.bytes_out.get();
        self.dropped += traffic.dropped.get();
    }

    /// Adds another sum.
    pub fn merge(&mut self, other: &Self) {
        self.requests += other.requests;
        self.upgrades += other.upgrades;
        self.messages_in += other.messages_in;
        self.messages_out += other.messages_out;
        self.bytes_in += other.bytes_in;
        self.bytes_out += other.bytes_out;
        self.dropped += other.dropped;
    }
}

/// What broadcast routes did on one worker.
#[derive(Debug, Default)]
pub struct BroadcastCounters {
    /// Messages published (by members and by HTTP publishes) from this worker.
    pub published: LocalCounter,
    /// Frames queued to members on this worker.
    pub delivered: LocalCounter,
    /// Frames the slow-consumer policy dropped on this worker (`drop`, `keep_latest`).
    pub dropped: LocalCounter,
    /// Members the slow-consumer policy closed on this worker (`close`).
    pub slow_closed: LocalCounter,
}

/// [`BroadcastCounters`] summed over every worker.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BroadcastTotals {
    /// See [`BroadcastCounters::published`].
    pub published: u64,
    /// See [`BroadcastCounters::delivered`].
    pub delivered: u64,
    /// See [`BroadcastCounters::dropped`].
    pub dropped: u64,
    /// See [`BroadcastCounters::slow_closed`].
    pub slow_closed: u64,
}

/// The HTTP statuses protections answer with, counted in `ringstream_http_refusals_total`.
pub const REFUSAL_STATUSES: [u16; 16] = [
    400, 401, 403, 408, 409, 413, 414, 426, 429, 431, 500, 501, 502, 503, 504, 507,
];
/// The close codes the server sends, counted in `ringstream_websocket_closes_total`.
pub const CLOSE_CODES: [u16; 8] = [1000, 1001, 1002, 1007, 1008, 1009, 1011, 1013];

/// One counter per entry of a fixed list of codes; other codes are not counted.
#[derive(Debug)]
pub struct CodeCounters<const N: usize> {
    codes: &'static [u16; N],
    counts: [LocalCounter; N],
}

impl<const N: usize> CodeCounters<N> {
    fn new(codes: &'static [u16; N]) -> Self {
        Self {
            codes,
            counts: std::array::from_fn(|_| LocalCounter::default()),
        }
    }

    /// Counts one answer with `code` (only ever called by the owning worker).
    pub fn count(&self, code: u16) {
        if let Some(i) = self.codes.iter().position(|&c| c == code) {
            self.counts[i].add(1);
        }
    }
}

/// One worker's counters, on cache lines of their own.
#[derive(Debug)]
#[repr(align(128))]
pub struct WorkerCounters {
    /// Connections accepted (refused ones included).
    pub accepted: LocalCounter,
    /// Refusals per HTTP status ([`REFUSAL_STATUSES`]).
    pub refusals: CodeCounters<{ REFUSAL_STATUSES.len() }>,
    /// Server-sent WebSocket closes per code ([`CLOSE_CODES`]).
    pub closes: CodeCounters<{ CLOSE_CODES.len() }>,
    /// Broadcast deliveries, drops and slow-consumer closes.
    pub broadcast: BroadcastCounters,
    /// Proxy routes' upstream connections opened, and requests sent on pooled ones.
    pub proxy: ProxyCounters,
    /// TLS handshakes, by outcome (`[tls]`).
    pub tls: TlsCounters,
    /// Connections open on this worker now, stored by its registry ([`OpenGauge`]).
    open: AtomicUsize,
}

/// One worker's TLS handshakes, by how they ended.
#[derive(Debug, Default)]
pub struct TlsCounters {
    /// Completed: the connection is served.
    pub done: LocalCounter,
    /// Failed: the peer closed, sent what is not TLS, or the TLS failed (an alert was sent).
    pub failed: LocalCounter,
    /// Cut at `header_timeout`.
    pub timed_out: LocalCounter,
    /// The client spoke plain HTTP (answered 400).
    pub plain_http: LocalCounter,
}

/// TLS handshakes over every worker, by outcome.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TlsTotals {
    /// See [`TlsCounters::done`].
    pub done: u64,
    /// See [`TlsCounters::failed`].
    pub failed: u64,
    /// See [`TlsCounters::timed_out`].
    pub timed_out: u64,
    /// See [`TlsCounters::plain_http`].
    pub plain_http: u64,
}

/// One worker's proxy counters: with both, the pool's reuse rate.
#[derive(Debug, Default)]
pub struct ProxyCounters {
    /// Upstream connections opened.
    pub connects: LocalCounter,
    /// Requests sent on a pooled (kept-alive) upstream connection.
    pub reuses: LocalCounter,
}

impl WorkerCounters {
    fn new() -> Self {
        Self {
            accepted: LocalCounter::default(),
            refusals: CodeCounters::new(&REFUSAL_STATUSES),
            closes: CodeCounters::new(&CLOSE_CODES),
            broadcast: BroadcastCounters::default(),
            proxy: ProxyCounters::default(),
            tls: TlsCounters::default(),
            open: AtomicUsize::new(0),
        }
    }
}

/// Every counter of the server.
#[derive(Debug)]
pub struct Metrics {
    workers: Box<[WorkerCounters]>,
    /// Every route's traffic, by path.
    routes: RouteCounters,
    /// Per rule: [enforced, shadow].
    violations: [[AtomicU64; 2]; Rule::ALL.len()],
    /// Violation log lines left out by the log's own rate limit.
    pub suppressed_logs: AtomicU64,
    /// Configuration reloads: [taken, refused].
    reloads: [AtomicU64; 2],
    started: Instant,
    /// Uploads and downloads in progress.
    transfers: Arc<Transfers>,
}

/// Where one worker's connection registry publishes how many connections it holds: a relaxed
/// store of the registry's length each time a connection opens or closes, on that worker
/// only, so the reader of `/stats` on any worker sees every worker's count.
#[derive(Debug, Clone)]
pub struct OpenGauge {
    metrics: Arc<Metrics>,
    index: usize,
}

impl OpenGauge {
    /// Records that the worker holds `open` connections now.
    pub fn set(&self, open: usize) {
        self.metrics
            .worker(self.index)
            .open
            .store(open, Ordering::Relaxed);
    }
}

impl Metrics {
    /// Counters for `workers` workers.
    pub fn new(workers: usize) -> Self {
        Self {
            workers: (0..workers).map(|_| WorkerCounters::new()).collect(),
            routes: RouteCounters::new(workers),
            violations: std::array::from_fn(|_| [AtomicU64::new(0), AtomicU64::new(0)]),
            suppressed_logs: AtomicU64::new(0),
            reloads: [AtomicU64::new(0), AtomicU64::new(0)],
            started: Instant::now(),
            transfers: Arc::default(),
        }
    }

    /// The gauge worker `index`'s registry keeps its count of open connections in.
    pub fn open_gauge(self: &Arc<Self>, index: usize) -> OpenGauge {
        OpenGauge {
            metrics: Arc::clone(self),
            index,
        }
    }

    /// Connections open on each worker, in worker order.
    pub fn open_per_worker(&self) -> Vec<usize> {
        self.workers
            .iter()
            .map(|w| w.open.load(Ordering::Relaxed))
            .collect()
    }

    /// Uploads and downloads in progress.
    pub fn transfers(&self) -> &Arc<Transfers> {
        &self.transfers
    }

    /// The block worker `index` writes.
    pub fn worker(&self, index: usize) -> &WorkerCounters {
        &self.workers[index.min(self.workers.len() - 1)]
    }

    /// Counts one violation of `rule`.
    pub fn violation(&self, rule: Rule, mode: LimitMode) {
        let column = usize::from(mode == LimitMode::Shadow);
        self.violations[rule.index()][column].fetch_add(1, Ordering::Relaxed);
    }

    /// Violations of `rule` so far: (enforced, shadow).
    pub fn violations(&self, rule: Rule) -> (u64, u64) {
        let [enforced, shadow] = &self.violations[rule.index()];
        (
            enforced.load(Ordering::Relaxed),
            shadow.load(Ordering::Relaxed),
        )
    }

    /// Connections accepted by all workers.
    pub fn accepted(&self) -> u64 {
        self.workers.iter().map(|w| w.accepted.get()).sum()
    }

    /// Every route's counters, by path.
    pub fn routes(&self) -> &RouteCounters {
        &self.routes
    }

    /// Totals over every route (every route the server has had) and worker.
    pub fn totals(&self) -> TrafficTotals {
        self.routes.totals()
    }

    /// Refusals per HTTP status over all workers, in [`REFUSAL_STATUSES`] order.
    pub fn refusals(&self) -> Vec<(u16, u64)> {
        code_totals(&REFUSAL_STATUSES, self.workers.iter().map(|w| &w.refusals))
    }

    /// Server-sent WebSocket closes per code over all workers, in [`CLOSE_CODES`] order.
    pub fn closes(&self) -> Vec<(u16, u64)> {
        code_totals(&CLOSE_CODES, self.workers.iter().map(|w| &w.closes))
    }

    /// Broadcast counters over all workers.
    pub fn broadcast(&self) -> BroadcastTotals {
        let mut totals = BroadcastTotals::default();
        for worker in self.workers.iter() {
            let b = &worker.broadcast;
            totals.published += b.published.get();
            totals.delivered += b.delivered.get();
            totals.dropped += b.dropped.get();
            totals.slow_closed += b.slow_closed.get();
        }
        totals
    }

    /// TLS handshakes over every worker.
    pub fn tls(&self) -> TlsTotals {
        let mut totals = TlsTotals::default();
        for worker in self.workers.iter() {
            let t = &worker.tls;
            totals.done += t.done.get();
            totals.failed += t.failed.get();
            totals.timed_out += t.timed_out.get();
            totals.plain_http += t.plain_http.get();
        }
        totals
    }

    /// Upstream connections opened and requests sent on pooled ones, over every worker.
    pub fn proxy(&self) -> (u64, u64) {
        self.workers
            .iter()
            .fold((0, 0), |(connects, reuses), worker| {
                (
                    connects + worker.proxy.connects.get(),
                    reuses + worker.proxy.reuses.get(),
                )
            })
    }

    /// Counts a reload that took over (`true`) or was refused.
    pub fn count_reload(&self, taken: bool) {
        self.reloads[usize::from(!taken)].fetch_add(1, Ordering::Relaxed);
    }

    /// Reloads so far: (taken, refused).
    pub fn reloads(&self) -> (u64, u64) {
        (
            self.reloads[0].load(Ordering::Relaxed),
            self.reloads[1].load(Ordering::Relaxed),
        )
    }

    /// Seconds since the server started.
    pub fn uptime_secs(&self) -> u64 {
        self.started.elapsed().as_secs()
    }
}

fn code_totals<'a, const N: usize>(
    codes: &[u16; N],
    blocks: impl Iterator<Item = &'a CodeCounters<N>>,
) -> Vec<(u16, u64)> {
    let mut totals: Vec<(u16, u64)> = codes.iter().map(|&c| (c, 0)).collect();
    for block in blocks {
        for (total, count) in totals.iter_mut().zip(&block.counts) {
            total.1 += count.get();
        }
    }
    totals
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_count_apart_and_readers_sum() {
        let metrics = Metrics::new(2);
        let routes = metrics.routes().for_routes(["/a"]);
        routes.get(Some(0)).worker(0).messages_in.add(3);
        routes.get(Some(0)).worker(1).messages_in.add(4);
        routes.get(None).worker(1).requests.add(1);
        metrics.worker(0).accepted.add(2);
        assert_eq!(routes.get(Some(0)).totals().messages_in, 7);
        assert_eq!(routes.get(None).totals().requests, 1);
        assert_eq!(metrics.totals().messages_in, 7);
        assert_eq!(metrics.totals().requests, 1);
        assert_eq!(metrics.accepted(), 2);
        metrics.violation(Rule::RequestRate, LimitMode::Shadow);
        metrics.violation(Rule::RequestRate, LimitMode::Enforce);
        metrics.violation(Rule::RequestRate, LimitMode::Enforce);
        assert_eq!(metrics.violations(Rule::RequestRate), (2, 1));
    }

    #[test]
    fn refusals_and_closes_are_counted_per_code() {
        let metrics = Metrics::new(2);
        metrics.worker(0).refusals.count(431);
        metrics.worker(1).refusals.count(431);
        metrics.worker(1).refusals.count(404);
        metrics.worker(0).closes.count(1009);
        metrics.worker(0).closes.count(4001);
        assert!(metrics.refusals().contains(&(431, 2)));
        assert_eq!(metrics.refusals().iter().map(|r| r.1).sum::<u64>(), 2);
        assert!(metrics.closes().contains(&(1009, 1)));
        assert_eq!(metrics.closes().iter().map(|r| r.1).sum::<u64>(), 1);
    }

    #[test]
    fn each_worker_publishes_its_open_connections() {
        let metrics = Arc::new(Metrics::new(3));
        metrics.open_gauge(0).set(4);
        metrics.open_gauge(2).set(1);
        metrics.open_gauge(0).set(3);
        assert_eq!(metrics.open_per_worker(), vec![3, 0, 1]);
    }
}
