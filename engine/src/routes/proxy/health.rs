//! Active health checks of a proxy route's upstreams (`health_check = "/healthz"`): each
//! worker asks every upstream for the path every `health_interval`, and an upstream that does
//! not answer 2xx or 3xx within `connect_timeout` and `upstream_timeout` (at most the interval)
//! is left out of this worker's choices until a check passes again. Requests never wait for a
//! check; passive health (`max_fails`) works beside it.

use std::rc::Rc;
use std::time::Instant;

use ringstream_protocol::http::{EMPTY_HEADER, parse_response};

use crate::config::{ProxyConfig, RouteKind};
use crate::server::context::WorkerContext;
use crate::server::runtime::{sleep, spawn_detached, timeout};
use crate::server::upstream::UpstreamConn;

/// A health answer's head must fit in this.
const ANSWER_BUFFER: usize = 8 * 1024;

/// Starts this worker's checks for every proxy route that asks for them.
pub fn spawn_checks(ctx: &Rc<WorkerContext>) {
    for (index, route) in ctx.router.routes().iter().enumerate() {
        if let RouteKind::Proxy(config) = &route.kind
            && config.health_check.is_some()
        {
            spawn_detached(check_forever(Rc::clone(ctx), index));
        }
    }
}

/// Checks route `index`'s upstreams every `health_interval` until the worker stops or a
/// reload replaces the configuration.
async fn check_forever(ctx: Rc<WorkerContext>, index: usize) {
    let RouteKind::Proxy(config) = &ctx.router.routes()[index].kind else {
        return;
    };
    let Some(path) = &config.health_check else {
        return;
    };
    loop {
        // A reloaded configuration checks its own upstreams.
        if ctx.draining.get() || ctx.retired.get() {
            return;
        }
        for upstream in 0..config.upstreams.len() {
            let healthy = check(config, upstream, path).await;
            let now = Instant::now();
            let mut pools = ctx.upstreams.borrow_mut();
            let pool = pools.route(index, config);
            if pool.set_health(upstream, healthy, now, config) {
                let addr = &config.upstreams[upstream];
                if healthy {
                    tracing::info!(upstream = %addr, "proxy: health check passes again");
                } else {
                    tracing::warn!(upstream = %addr, path = %path, "proxy: health check failed; upstream left out");
                }
            }
        }
        sleep(config.health_interval).await;
    }
}

/// Whether upstream `upstream` answers `GET path` with 2xx or 3xx in time.
async fn check(config: &ProxyConfig, upstream: usize, path: &str) -> bool {
    let limit = config.upstream_timeout.min(config.health_interval);
    let addr = &config.upstreams[upstream];
    let Some(Ok(conn)) = timeout(config.connect_timeout, UpstreamConn::connect(addr)).await else {
        return false;
    };
    let host = config.host.clone().unwrap_or_else(|| addr.to_string());
    let head = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    let exchange = async {
        if conn.write_all(head.into_bytes()).await.0.is_err() {
            return false;
        }
        let answer = Vec::with_capacity(ANSWER_BUFFER);
        let (Ok(true), buf) = conn.read_head(answer, ANSWER_BUFFER).await else {
            return false;
        };
        let mut slots = [EMPTY_HEADER; 64];
        match parse_response(&buf, &mut slots, false, ANSWER_BUFFER - 1) {
            Ok(Some(head)) => (200..400).contains(&head.status),
            Ok(None) | Err(_) => false,
        }
    };
    timeout(limit, exchange).await.unwrap_or(false)
}
