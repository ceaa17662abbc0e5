//! `/stats` (JSON), `/metrics` (Prometheus text format 0.0.4) and `/dashboard` (a page that
//! shows `/stats` live): the server's counters, its clients and its configured limits. Written
//! by hand: a few dozen lines of formatting need no registry, no global state and no
//! dependency. `live` writes the parts of `/stats` that describe the moment (connections per
//! worker, the top clients, the transfers in progress); `dashboard` holds the page.

use std::fmt::Write as _;
use std::net::IpAddr;

use ringstream_limits::client_table::Rule;
use ringstream_protocol::json;

use crate::config::{LimitMode, Route, RouteKind};
use crate::routes::Refused;
use crate::routes::plain::{self, Page};
use crate::server::context::WorkerContext;
use crate::server::metrics::TrafficTotals;

const JSON: &[u8] = b"application/json";
const PROMETHEUS: &[u8] = b"text/plain; version=0.0.4; charset=utf-8";
const NO_STORE: (&str, &[u8]) = ("Cache-Control", b"no-store");

mod cluster;
mod dashboard;
mod live;
mod prometheus;
use prometheus::prometheus_text;

/// What a request on an observe route (`stats`, `metrics`, `dashboard`) asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    /// The route's own document: `/stats`'s JSON, `/metrics`'s text, the dashboard's page.
    Own,
    /// The `/stats` document below a dashboard route (`/dashboard/stats`): the page's data,
    /// behind the same `allowed_clients` as the page, whatever other routes there are.
    Stats,
    /// Anything else below a dashboard route: 404.
    Missing,
}

/// What `path` asks of `route`, an observe route.
pub fn view(route: &Route, path: &str) -> View {
    match route.kind {
        RouteKind::Dashboard { .. } => dashboard::view(&route.path, path),
        _ => View::Own,
    }
}

/// Appends the answer of an observe route to the client at `client`: 403 unless the route's
/// `allowed_clients` hold it; `page` is what every answer of the request shares.
pub fn respond(
    kind: &RouteKind,
    view: View,
    ctx: &WorkerContext,
    client: Option<IpAddr>,
    page: Page<'_>,
    out: &mut Vec<u8>,
) -> Result<(), Refused> {
    let (RouteKind::Stats { allowed_clients }
    | RouteKind::Metrics { allowed_clients }
    | RouteKind::Dashboard { allowed_clients }) = kind
    else {
        return Err(Refused::status(404));
    };
    if !client.is_some_and(|address| allowed_clients.contains(address)) {
        return Err(Refused::status(403));
    }
    let no_store = [NO_STORE];
    let counters = Page {
        extra: &no_store,
        ..page
    };
    match (kind, view) {
        (_, View::Missing) => plain::not_found(page.method, page.date, page.close, out),
        (RouteKind::Metrics { .. }, _) => {
            counters.read_only(prometheus_text(ctx).as_bytes(), PROMETHEUS, out);
        }
        (RouteKind::Dashboard { .. }, View::Own) => dashboard::write_page(page, out),
        _ => counters.read_only(stats_json(ctx).as_bytes(), JSON, out),
    }
    Ok(())
}

fn mode_name(mode: LimitMode) -> &'static str {
    match mode {
        LimitMode::Enforce => "enforce",
        LimitMode::Shadow => "shadow",
    }
}

/// The `/stats` document.
fn stats_json(ctx: &WorkerContext) -> String {
    let metrics = &ctx.metrics;
    let config = &ctx.config;
    let clients = &config.clients;
    let table = ctx.gate.table();
    let mut s = String::with_capacity(2048);
    let _ = write!(
        s,
        "{{\"uptime_seconds\":{},\"connections\":{{\"active\":{},\"accepted\":{}}},",
        metrics.uptime_secs(),
        ctx.connections.open(),
        metrics.accepted()
    );
    let _ = write!(
        s,
        "\"clients\":{{\"connected\":{},\"tracked\":{},\"evictions\":{}}},",
        table.connected_clients(),
        table.len(),
        table.evictions()
    );
    let budget = ctx.connections.budget();
    let _ = write!(
        s,
        "\"buffers\":{{\"held_bytes\":{},\"max_buffered_bytes\":{},\"pauses\":{},\
         \"receive_ring_armed\":{},\"receive_ring_dry\":{}}},\
         \"proxy\":{{\"upstream_connects\":{},\"upstream_reuses\":{}}},\
         \"files\":{{\"cold_pieces\":{}}},\
         \"access_log\":{{\"dropped_lines\":{}}},\"reloads\":{{\"ok\":{},\"failed\":{}}},",
        budget.used(),
        budget.limit(),
        budget.pauses(),
        crate::server::ring_receive::armed_count(),
        crate::server::ring_receive::dry_count(),
        metrics.proxy().0,
        metrics.proxy().1,
        crate::server::page_cache::cold_pieces(),
        ctx.access_log
            .as_ref()
            .map_or(0, |log| log.log().dropped_lines()
                + log.log().failed_lines()),
        metrics.reloads().0,
        metrics.reloads().1
    );
    if let Some(cluster) = ctx.hub.topics.cluster() {
        cluster::stats_json(&mut s, cluster);
    }
    if ctx.config.tls.is_some() {
        let t = metrics.tls();
        let _ = write!(
            s,
            "\"tls\":{{\"handshakes\":{},\"failed\":{},\"timed_out\":{},\"plain_http\":{}}},",
            t.done, t.failed, t.timed_out, t.plain_http
        );
    }
    live::workers_json(&mut s, metrics);
    live::top_clients_json(&mut s, ctx);
    live::transfers_json(&mut s, metrics.transfers());
    s.push_str("\"totals\":");
    traffic_json(&mut s, &metrics.totals());
    codes_json(&mut s, "http_refusals", &metrics.refusals());
    codes_json(&mut s, "websocket_closes", &metrics.closes());
    broadcast_json(&mut s, ctx);
    sinks_json(&mut s, ctx);
    s.push_str(",\"violations\":{");
    for (i, rule) in Rule::ALL.into_iter().enumerate() {
        let (refused, shadow) = metrics.violations(rule);
        let comma = if i == 0 { "" } else { "," };
        let _ = write!(
            s,
            "{comma}\"{}\":{{\"refused\":{refused},\"shadow\":{shadow}}}",
            rule.key()
        );
    }
    let _ = write!(
        s,
        "}},\"limits\":{{\"max_connections\":{},\"max_concurrent_connections\":{},\
         \"connections_per_minute\":{},\"client_messages_per_minute\":{},\
         \"client_bytes_per_minute\":{},\"ban_after_violations\":{},\
         \"ban_duration_seconds\":{},\"max_tracked_clients\":{},\"mode\":\"{}\"}},\"routes\":[",
        config.connection_limits.max_connections,
        clients.max_concurrent_connections,
        clients.connections_per_minute,
        clients.client_messages_per_minute,
        clients.client_bytes_per_minute,
        clients.ban_after_violations,
        clients.ban_duration.as_secs(),
        clients.max_tracked_clients,
        mode_name(clients.mode)
    );
    for (i, route) in config.routes.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        route_json(&mut s, route, &ctx.route_traffic.get(Some(i)).totals());
    }
    s.push_str("],\"unrouted\":");
    traffic_json(&mut s, &ctx.route_traffic.get(None).totals());
    s.push_str("}\n");
    s
}

/// Topics shown by name in `/stats` at most (the busiest first).
const PRESENCE_LIMIT: usize = 1000;

/// `,"broadcast":{...}`: deliveries, drops and slow-consumer closes, and the members of each
/// live topic (presence).
fn broadcast_json(s: &mut String, ctx: &WorkerContext) {
    let b = ctx.metrics.broadcast();
    let (presence, topics) = ctx.hub.topics.presence(PRESENCE_LIMIT);
    let _ = write!(
        s,
        ",\"broadcast\":{{\"published\":{},\"delivered\":{},\"dropped\":{},\
         \"slow_consumer_closes\":{},\"topics\":{topics},\"subscribers\":{{",
        b.published, b.delivered, b.dropped, b.slow_closed
    );
    for (i, (name, members)) in presence.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        json::push_string(s, name);
        let _ = write!(s, ":{members}");
    }
    s.push_str("}}");
}

/// `,"sinks":[{"route":..,"lines":..,...}]`: what each sink file's writer has done.
fn sinks_json(s: &mut String, ctx: &WorkerContext) {
    s.push_str(",\"sinks\":[");
    let mut first = true;
    for (route, state) in ctx.config.routes.iter().zip(ctx.routes.iter()) {
        let Some(sink) = &state.sink else { continue };
        let stats = sink.stats();
        if !first {
            s.push(',');
        }
        first = false;
        s.push_str("{\"route\":");
        json::push_string(s, &route.path);
        let _ = write!(
            s,
            ",\"lines\":{},\"bytes\":{},\"rotations\":{},\"write_errors\":{},\"dropped_lines\":{},\"backlog\":{}}}",
            stats.lines,
            stats.bytes,
            stats.rotations,
            stats.write_errors,
            stats.dropped_lines,
            sink.backlog()
        );
    }
    s.push(']');
}

fn route_json(s: &mut String, route: &Route, traffic: &TrafficTotals) {
    s.push_str("{\"path\":");
    json::push_string(s, &route.path);
    let rate = route.limits.request_rate;
    let _ = write!(s, ",\"kind\":\"{}\",\"traffic\":", route.kind.name());
    traffic_json(s, traffic);
    let _ = write!(
        s,
        ",\"limits\":{{\"rate_limit_requests\":{},\"burst\":{},\"mode\":\"{}\"",
        rate.per_minute,
        rate.burst,
        mode_name(route.limits.mode)
    );
    if route.kind.is_websocket() {
        let ws = &route.ws;
        let _ = write!(
            s,
            ",\"max_message_size\":{},\"rate_limit\":{},\"messages_per_minute\":{},\
             \"bytes_per_minute\":{}",
            ws.max_message_size, ws.rate_limit, ws.messages_per_minute, ws.bytes_per_minute
        );
    }
    s.push_str("}}");
}

fn traffic_json(s: &mut String, t: &TrafficTotals) {
    let _ = write!(
        s,
        "{{\"requests\":{},\"websocket_upgrades\":{},\"messages_in\":{},\"messages_out\":{},\
         \"bytes_in\":{},\"bytes_out\":{},\"dropped\":{}}}",
        t.requests, t.upgrades, t.messages_in, t.messages_out, t.bytes_in, t.bytes_out, t.dropped
    );
}

/// `,"NAME":{"CODE":COUNT,...}`.
fn codes_json(s: &mut String, name: &str, counts: &[(u16, u64)]) {
    let _ = write!(s, ",\"{name}\":{{");
    for (i, (code, count)) in counts.iter().enumerate() {
        let comma = if i == 0 { "" } else { "," };
        let _ = write!(s, "{comma}\"{code}\":{count}");
    }
    s.push('}');
}
