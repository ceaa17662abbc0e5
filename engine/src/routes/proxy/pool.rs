//! Each worker's connections to the upstreams of its proxy routes (thread-per-core: no lock,
//! no connection crosses cores): the idle ones kept for the next request, the choice of an
//! upstream (fewest exchanges in progress, or in turn), and passive health (an upstream that
//! fails `max_fails` times within `fail_timeout` is left out for `fail_timeout`).

use std::collections::HashMap;
use std::rc::Rc;
use std::time::Instant;

use crate::config::{Balance, ProxyConfig};
use crate::server::context::WorkerContext;
use crate::server::upstream::UpstreamConn;

/// An exchange in progress with one upstream (a request, or a WebSocket tunnel): counted for
/// `least_conn` while it lives.
#[derive(Debug)]
pub struct ActiveExchange {
    ctx: Rc<WorkerContext>,
    /// The proxy route's index.
    pub route: usize,
    /// The upstream's index in the route's list.
    pub upstream: usize,
}

impl ActiveExchange {
    /// Counts an exchange of route `route` with upstream `upstream`, until dropped.
    pub fn begin(
        ctx: &Rc<WorkerContext>,
        route: usize,
        upstream: usize,
        config: &ProxyConfig,
    ) -> Self {
        ctx.upstreams
            .borrow_mut()
            .route(route, config)
            .begin(upstream);
        Self {
            ctx: Rc::clone(ctx),
            route,
            upstream,
        }
    }
}

impl Drop for ActiveExchange {
    fn drop(&mut self) {
        if let Some(pool) = self.ctx.upstreams.borrow_mut().existing(self.route) {
            pool.end(self.upstream);
        }
    }
}

/// How long an idle connection to an auth endpoint is kept.
const AUTH_IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(4);
/// Idle connections kept per auth endpoint and worker.
const AUTH_POOL_SIZE: usize = 16;

/// This worker's pools, by route index: the upstreams of proxy routes, and the auth endpoints
/// of routes with an auth hook.
#[derive(Debug, Default)]
pub struct UpstreamPools {
    routes: HashMap<usize, RoutePool>,
    auth: HashMap<usize, Vec<(UpstreamConn, Instant)>>,
}

impl UpstreamPools {
    /// The pool of route `index`, made on first use.
    pub fn route(&mut self, index: usize, config: &ProxyConfig) -> &mut RoutePool {
        self.routes.entry(index).or_insert_with(|| RoutePool {
            upstreams: config
                .upstreams
                .iter()
                .map(|_| Upstream::default())
                .collect(),
            turn: 0,
        })
    }

    /// Closes every idle connection: the pools of a configuration a reload replaced. The
    /// client connections that started before the reload still use them (and keep at most
    /// `pool_size` idle again), so they go on reusing upstream connections; the pools go
    /// with the last of those.
    pub fn close_idle(&mut self) {
        self.auth.clear();
        for pool in self.routes.values_mut() {
            for upstream in &mut pool.upstreams {
                upstream.idle.clear();
            }
        }
    }

    /// An idle connection to the auth endpoint of route `index`, still fit to use.
    pub fn take_auth(&mut self, index: usize, now: Instant) -> Option<UpstreamConn> {
        let idle = self.auth.get_mut(&index)?;
        while let Some((conn, since)) = idle.pop() {
            if now.duration_since(since) < AUTH_IDLE_TIMEOUT && !conn.is_stale() {
                return Some(conn);
            }
        }
        None
    }

    /// Keeps a connection to the auth endpoint of route `index` for the next question.
    pub fn give_back_auth(&mut self, index: usize, conn: UpstreamConn, now: Instant) {
        let idle = self.auth.entry(index).or_default();
        if idle.len() >= AUTH_POOL_SIZE {
            idle.remove(0);
        }
        idle.push((conn, now));
    }

    /// The pool of route `index` if it was made.
    pub fn existing(&mut self, index: usize) -> Option<&mut RoutePool> {
        self.routes.get_mut(&index)
    }
}

/// One proxy route's upstreams on this worker.
#[derive(Debug)]
pub struct RoutePool {
    upstreams: Vec<Upstream>,
    /// Where the next round-robin choice (or least-connections tie) starts.
    turn: usize,
}

#[derive(Debug, Default)]
struct Upstream {
    /// Idle connections with the time they became idle; the most recent last.
    idle: Vec<(UpstreamConn, Instant)>,
    /// Exchanges in progress.
    active: usize,
    /// Failures counted since `window_start`.
    fails: u32,
    window_start: Option<Instant>,
    /// Left out until then.
    down_until: Option<Instant>,
}

impl Upstream {
    fn is_down(&self, now: Instant) -> bool {
        self.down_until.is_some_and(|until| now < until)
    }
}

impl RoutePool {
    /// The upstream the next attempt goes to, leaving out those in `tried` and those marked
    /// down; `None` when none is left.
    pub fn choose(&mut self, config: &ProxyConfig, now: Instant, tried: &[usize]) -> Option<usize> {
        let count = self.upstreams.len();
        let candidates = (0..count)
            .map(|offset| (self.turn + offset) % count)
            .filter(|&i| !tried.contains(&i) && !self.upstreams[i].is_down(now));
        let chosen = match config.balance {
            Balance::RoundRobin => candidates.min_by_key(|_| 0),
            Balance::LeastConn => candidates.min_by_key(|&i| self.upstreams[i].active),
        }?;
        self.turn = (chosen + 1) % count;
        Some(chosen)
    }

    /// Whether every upstream is marked down.
    pub fn all_down(&self, now: Instant) -> bool {
        self.upstreams.iter().all(|u| u.is_down(now))
    }

    /// An idle connection to upstream `i` still fit to use, if any: those idle longer than
    /// `pool_idle_timeout`, or that the upstream closed meanwhile, are dropped on the way.
    pub fn take_idle(
        &mut self,
        i: usize,
        now: Instant,
        config: &ProxyConfig,
    ) -> Option<UpstreamConn> {
        let idle = &mut self.upstreams[i].idle;
        while let Some((conn, since)) = idle.pop() {
            if now.duration_since(since) < config.pool_idle_timeout && !conn.is_stale() {
                return Some(conn);
            }
        }
        None
    }

    /// Keeps `conn` to upstream `i` for the next request (the oldest one goes when the pool
    /// is full).
    pub fn give_back(&mut self, i: usize, conn: UpstreamConn, now: Instant, config: &ProxyConfig) {
        let idle = &mut self.upstreams[i].idle;
        if config.pool_size == 0 {
            return;
        }
        if idle.len() >= config.pool_size {
            idle.remove(0);
        }
        idle.push((conn, now));
    }

    /// An exchange with upstream `i` begins.
    pub fn begin(&mut self, i: usize) {
        self.upstreams[i].active += 1;
    }

    /// An exchange with upstream `i` ended.
    pub fn end(&mut self, i: usize) {
        let upstream = &mut self.upstreams[i];
        upstream.active = upstream.active.saturating_sub(1);
    }

    /// Records an active health check of upstream `i`: a failed one leaves it out until a
    /// check passes again (a check runs at least every `health_interval`), a passing one takes
    /// it back and forgets its failures. `true` when that changed whether it is left out.
    pub fn set_health(
        &mut self,
        i: usize,
        healthy: bool,
        now: Instant,
        config: &ProxyConfig,
    ) -> bool {
        let upstream = &mut self.upstreams[i];
        let was_down = upstream.is_down(now);
        if healthy {
            upstream.down_until = None;
            upstream.fails = 0;
            upstream.window_start = None;
        } else {
            // Until past the next check, which says again.
            let until = now + config.health_interval * 2 + config.connect_timeout;
            upstream.down_until = Some(upstream.down_until.map_or(until, |d| d.max(until)));
            upstream.idle.clear();
        }
        was_down == healthy
    }

    /// Upstream `i` answered: its failures are forgotten.
    pub fn succeeded(&mut self, i: usize) {
        let upstream = &mut self.upstreams[i];
        upstream.fails = 0;
        upstream.window_start = None;
    }

    /// Upstream `i` failed; `true` when that marks it down. Its idle connections go with it.
    pub fn failed(&mut self, i: usize, now: Instant, config: &ProxyConfig) -> bool {
        let upstream = &mut self.upstreams[i];
        upstream.idle.clear();
        if config.max_fails == 0 {
            return false;
        }
        let window_open = upstream
            .window_start
            .is_some_and(|start| now.duration_since(start) < config.fail_timeout);
        if !window_open {
            upstream.window_start = Some(now);
            upstream.fails = 0;
        }
        upstream.fails += 1;
        if upstream.fails >= config.max_fails {
            upstream.down_until = Some(now + config.fail_timeout);
            upstream.fails = 0;
            upstream.window_start = None;
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;
    use crate::config::UpstreamAddr;
    use std::time::Duration;

    fn config(count: usize, balance: Balance, max_fails: u32) -> ProxyConfig {
        let addrs = (0..count)
            .map(|i| UpstreamAddr::Tcp(format!("127.0.0.1:{}", 1000 + i).parse().unwrap()))
            .collect();
        let mut config = ProxyConfig::new(addrs);
        config.balance = balance;
        config.max_fails = max_fails;
        config
    }

    #[test]
    fn round_robin_takes_each_in_turn_and_skips_what_was_tried() {
        let config = config(3, Balance::RoundRobin, 1);
        let mut pools = UpstreamPools::default();
        let pool = pools.route(0, &config);
        let now = Instant::now();
        let picks: Vec<_> = (0..4)
            .map(|_| pool.choose(&config, now, &[]).unwrap())
            .collect();
        assert_eq!(picks, [0, 1, 2, 0]);
        assert_eq!(pool.choose(&config, now, &[1, 2]), Some(0));
        assert_eq!(pool.choose(&config, now, &[0, 1, 2]), None);
    }

    #[test]
    fn least_conn_prefers_the_least_busy() {
        let config = config(3, Balance::LeastConn, 1);
        let mut pools = UpstreamPools::default();
        let pool = pools.route(0, &config);
        let now = Instant::now();
        pool.begin(0);
        pool.begin(0);
        pool.begin(1);
        assert_eq!(pool.choose(&config, now, &[]), Some(2));
        pool.begin(2);
        pool.begin(2);
        assert_eq!(pool.choose(&config, now, &[]), Some(1));
        pool.end(0);
        pool.end(0);
        assert_eq!(pool.choose(&config, now, &[]), Some(0));
    }

    #[test]
    fn a_failed_health_check_leaves_an_upstream_out_until_one_passes() {
        let config = config(2, Balance::RoundRobin, 1);
        let mut pools = UpstreamPools::default();
        let pool = pools.route(0, &config);
        let t0 = Instant::now();
        assert!(pool.set_health(0, false, t0, &config), "now left out");
        assert!(!pool.set_health(0, false, t0, &config), "already out");
        let later = t0 + Duration::from_secs(1);
        assert_eq!(pool.choose(&config, t0, &[]), Some(1));
        assert_eq!(pool.choose(&config, t0, &[]), Some(1), "0 stays out");
        assert!(pool.set_health(0, true, later, &config), "back");
        assert!(!pool.set_health(1, true, later, &config), "never out");
    }

    #[test]
    fn max_fails_within_fail_timeout_marks_an_upstream_down_for_fail_timeout() {
        let config = config(2, Balance::RoundRobin, 2);
        let mut pools = UpstreamPools::default();
        let pool = pools.route(0, &config);
        let t0 = Instant::now();
        assert!(!pool.failed(0, t0, &config));
        // A failure outside the window starts a new count.
        assert!(!pool.failed(0, t0 + Duration::from_secs(11), &config));
        assert!(pool.failed(0, t0 + Duration::from_secs(12), &config));
        let down = t0 + Duration::from_secs(13);
        assert_eq!(pool.choose(&config, down, &[]), Some(1));
        assert_eq!(pool.choose(&config, down, &[]), Some(1));
        assert!(!pool.all_down(down));
        assert!(pool.failed(1, down, &config) || pool.failed(1, down, &config));
        assert!(pool.all_down(down));
        assert_eq!(pool.choose(&config, down, &[]), None);
        let back = t0 + Duration::from_secs(23);
        assert_eq!(
            pool.choose(&config, back, &[]),
            Some(0),
            "back after fail_timeout"
        );
        // A success forgets the count.
        pool.failed(1, back + Duration::from_secs(20), &config);
        pool.succeeded(1);
        assert!(!pool.failed(1, back + Duration::from_secs(21), &config));
    }
}
