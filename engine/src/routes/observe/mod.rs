//! `/stats` (JSON) and `/metrics` (Prometheus text format 0.0.4): the server's counters, its
//! clients and its configured limits. Written by hand: a few dozen lines of formatting need no
//! registry, no global state and no dependency.

use std::fmt::Write as _;
use std::net::IpAddr;

use ringstream_limits::client_table::Rule;
use ringstream_protocol::http::HttpDate;
use ringstream_protocol::json;

use crate::config::{LimitMode, Route, RouteKind};
use crate::routes::Refused;
use crate::routes::plain::{MethodClass, Page};
use crate::routes::sink::file::SinkStats;
use crate::server::context::WorkerContext;
use crate::server::metrics::TrafficTotals;

const JSON: &[u8] = b"application/json";
const PROMETHEUS: &[u8] = b"text/plain; version=0.0.4; charset=utf-8";

/// Appends the answer of a `stats` or `metrics` route to the client at `client`: 403 unless
/// the route's `allowed_clients` hold it.
pub fn respond(
    kind: &RouteKind,
    ctx: &WorkerContext,
    client: Option<IpAddr>,
    method: MethodClass,
    date: &HttpDate,
    close: bool,
    out: &mut Vec<u8>,
) -> Result<(), Refused> {
    let (RouteKind::Stats { allowed_clients } | RouteKind::Metrics { allowed_clients }) = kind
    else {
        return Err(Refused::status(404));
    };
    if !client.is_some_and(|address| allowed_clients.contains(address)) {
        return Err(Refused::status(403));
    }
    let page = Page {
        method,
        date,
        close,
        extra: &[("Cache-Control", b"no-store")],
    };
    if matches!(kind, RouteKind::Stats { .. }) {
        page.read_only(stats_json(ctx).as_bytes(), JSON, out);
    } else {
        page.read_only(prometheus_text(ctx).as_bytes(), PROMETHEUS, out);
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
        "\"buffers\":{{\"held_bytes\":{},\"max_buffered_bytes\":{},\"pauses\":{}}},",
        budget.used(),
        budget.limit(),
        budget.pauses()
    );
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
        route_json(&mut s, route, &metrics.route_totals(Some(i)));
    }
    s.push_str("],\"unrouted\":");
    traffic_json(&mut s, &metrics.route_totals(None));
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

/// The `/metrics` exposition.
fn prometheus_text(ctx: &WorkerContext) -> String {
    let metrics = &ctx.metrics;
    let table = ctx.gate.table();
    let mut s = String::with_capacity(4096);
    let broadcast = metrics.broadcast();
    let topics = ctx.hub.topics.live();
    let budget = ctx.connections.budget();
    let single: [(&str, &str, &str, u64); 15] = [
        (
            "uptime_seconds",
            "gauge",
            "Seconds since start.",
            metrics.uptime_secs(),
        ),
        (
            "connections_active",
            "gauge",
            "Open connections.",
            ctx.connections.open() as u64,
        ),
        (
            "buffered_bytes",
            "gauge",
            "Bytes connections hold beyond their idle buffers (partial messages and bodies).",
            budget.used() as u64,
        ),
        (
            "buffered_bytes_limit",
            "gauge",
            "max_buffered_bytes: past it connections holding partial messages stop reading.",
            budget.limit() as u64,
        ),
        (
            "buffer_pauses_total",
            "counter",
            "Times a connection stopped reading because max_buffered_bytes was reached.",
            budget.pauses(),
        ),
        (
            "connections_accepted_total",
            "counter",
            "Connections accepted, refused ones included.",
            metrics.accepted(),
        ),
        (
            "clients_connected",
            "gauge",
            "Clients with at least one open connection.",
            table.connected_clients() as u64,
        ),
        (
            "clients_tracked",
            "gauge",
            "Clients in the per-client table.",
            table.len() as u64,
        ),
        (
            "client_evictions_total",
            "counter",
            "Clients forgotten because the table was full.",
            table.evictions(),
        ),
        (
            "violation_logs_suppressed_total",
            "counter",
            "Violation log lines left out by the log's rate limit.",
            metrics
                .suppressed_logs
                .load(std::sync::atomic::Ordering::Relaxed),
        ),
        (
            "broadcast_published_total",
            "counter",
            "Messages published to broadcast topics.",
            broadcast.published,
        ),
        (
            "broadcast_delivered_total",
            "counter",
            "Broadcast frames queued to members.",
            broadcast.delivered,
        ),
        (
            "broadcast_dropped_total",
            "counter",
            "Broadcast frames dropped by slow_consumer = \"drop\" or \"keep_latest\".",
            broadcast.dropped,
        ),
        (
            "broadcast_slow_consumer_closes_total",
            "counter",
            "Broadcast members closed by slow_consumer = \"close\".",
            broadcast.slow_closed,
        ),
        (
            "broadcast_topics",
            "gauge",
            "Live broadcast topics.",
            topics as u64,
        ),
    ];
    for (name, kind, help, value) in single {
        let _ = write!(
            s,
            "# HELP ringstream_{name} {help}\n# TYPE ringstream_{name} {kind}\nringstream_{name} {value}\n"
        );
    }
    let routes: Vec<(String, TrafficTotals)> = ctx
        .config
        .routes
        .iter()
        .enumerate()
        .map(|(i, r)| (label(&r.path), metrics.route_totals(Some(i))))
        .chain(std::iter::once((
            "(none)".to_owned(),
            metrics.route_totals(None),
        )))
        .collect();
    type Pick = fn(&TrafficTotals) -> u64;
    let families: [(&str, &str, Option<&str>, Pick); 7] = [
        (
            "http_requests_total",
            "HTTP requests answered.",
            None,
            |t| t.requests,
        ),
        (
            "websocket_upgrades_total",
            "WebSocket upgrades accepted.",
            None,
            |t| t.upgrades,
        ),
        (
            "websocket_messages_total",
            "WebSocket frames received and messages sent.",
            Some("in"),
            |t| t.messages_in,
        ),
        ("websocket_messages_total", "", Some("out"), |t| {
            t.messages_out
        }),
        (
            "websocket_bytes_total",
            "WebSocket bytes received and sent.",
            Some("in"),
            |t| t.bytes_in,
        ),
        ("websocket_bytes_total", "", Some("out"), |t| t.bytes_out),
        (
            "websocket_dropped_total",
            "Frames dropped by on_limit = \"drop\".",
            None,
            |t| t.dropped,
        ),
    ];
    for (name, help, direction, pick) in families {
        if !help.is_empty() {
            let _ = write!(
                s,
                "# HELP ringstream_{name} {help}\n# TYPE ringstream_{name} counter\n"
            );
        }
        for (route, totals) in &routes {
            let _ = match direction {
                Some(d) => writeln!(
                    s,
                    "ringstream_{name}{{route=\"{route}\",direction=\"{d}\"}} {}",
                    pick(totals)
                ),
                None => writeln!(s, "ringstream_{name}{{route=\"{route}\"}} {}", pick(totals)),
            };
        }
    }
    let code_families = [
        (
            "http_refusals_total",
            "HTTP refusals a protection answered, per status.",
            "status",
            metrics.refusals(),
        ),
        (
            "websocket_closes_total",
            "WebSocket closes the server sent, per close code.",
            "code",
            metrics.closes(),
        ),
    ];
    for (name, help, label_name, counts) in code_families {
        let _ = write!(
            s,
            "# HELP ringstream_{name} {help}\n# TYPE ringstream_{name} counter\n"
        );
        for (code, count) in counts {
            let _ = writeln!(s, "ringstream_{name}{{{label_name}=\"{code}\"}} {count}");
        }
    }
    type SinkPick = fn(&SinkStats) -> u64;
    let sink_families: [(&str, &str, SinkPick); 4] = [
        ("sink_lines_total", "Lines written to sink files.", |t| {
            t.lines
        }),
        ("sink_rotations_total", "Sink file rotations.", |t| {
            t.rotations
        }),
        (
            "sink_write_errors_total",
            "Failed sink file opens, writes and rotations.",
            |t| t.write_errors,
        ),
        (
            "sink_dropped_lines_total",
            "Lines a failed sink file open or write dropped.",
            |t| t.dropped_lines,
        ),
    ];
    for (name, help, pick) in sink_families {
        let _ = write!(
            s,
            "# HELP ringstream_{name} {help}\n# TYPE ringstream_{name} counter\n"
        );
        for (route, state) in ctx.config.routes.iter().zip(ctx.routes.iter()) {
            if let Some(sink) = &state.sink {
                let route = label(&route.path);
                let _ = writeln!(
                    s,
                    "ringstream_{name}{{route=\"{route}\"}} {}",
                    pick(&sink.stats())
                );
            }
        }
    }
    s.push_str(
        "# HELP ringstream_violations_total Requests, connections and frames a limit caught.\n\
         # TYPE ringstream_violations_total counter\n",
    );
    for rule in Rule::ALL {
        let (refused, shadow) = metrics.violations(rule);
        let key = rule.key();
        let _ = writeln!(
            s,
            "ringstream_violations_total{{rule=\"{key}\",action=\"refused\"}} {refused}"
        );
        let _ = writeln!(
            s,
            "ringstream_violations_total{{rule=\"{key}\",action=\"shadow\"}} {shadow}"
        );
    }
    s
}

/// A label value with `\`, `"` and newlines escaped.
fn label(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
