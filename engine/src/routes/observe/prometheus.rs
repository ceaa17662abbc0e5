//! `/metrics`: the counters of `/stats` in the Prometheus text format 0.0.4.

use std::fmt::Write as _;

use ringstream_limits::client_table::Rule;

use crate::routes::sink::file::SinkStats;
use crate::server::context::WorkerContext;
use crate::server::metrics::TrafficTotals;

/// The `/metrics` exposition.
pub(super) fn prometheus_text(ctx: &WorkerContext) -> String {
    let metrics = &ctx.metrics;
    let table = ctx.gate.table();
    let mut s = String::with_capacity(4096);
    let broadcast = metrics.broadcast();
    let topics = ctx.hub.topics.live();
    let budget = ctx.connections.budget();
    let (proxy_connects, proxy_reuses) = metrics.proxy();
    let log = ctx.access_log.as_ref().map(|log| log.log());
    let log_dropped = log.map_or(0, |log| log.dropped_lines() + log.failed_lines());
    let single: [(&str, &str, &str, u64); 21] = [
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
            "receive_ring_armed_total",
            "counter",
            "Connections that armed a multishot receive into the worker's buffer ring \
             (WebSocket sessions; a proxied tunnel arms one on each side).",
            crate::server::ring_receive::armed_count(),
        ),
        (
            "receive_ring_dry_total",
            "counter",
            "Receives that found the worker's buffer ring empty (the connection then read per read).",
            crate::server::ring_receive::dry_count(),
        ),
        (
            "file_cold_pieces_total",
            "counter",
            "Download pieces read through io_uring because the page cache did not hold them.",
            crate::server::page_cache::cold_pieces(),
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
        (
            "proxy_upstream_connects_total",
            "counter",
            "Connections proxy routes opened to their upstreams.",
            proxy_connects,
        ),
        (
            "proxy_upstream_reuses_total",
            "counter",
            "Requests proxy routes sent on a pooled (kept-alive) upstream connection.",
            proxy_reuses,
        ),
        (
            "access_log_dropped_lines_total",
            "counter",
            "Access log lines dropped: the writer was behind, or the file could not be written.",
            log_dropped,
        ),
    ];
    for (name, kind, help, value) in single {
        let _ = write!(
            s,
            "# HELP ringstream_{name} {help}\n# TYPE ringstream_{name} {kind}\nringstream_{name} {value}\n"
        );
    }
    s.push_str(
        "# HELP ringstream_worker_connections Open connections on each worker.\n\
         # TYPE ringstream_worker_connections gauge\n",
    );
    for (worker, open) in metrics.open_per_worker().iter().enumerate() {
        let _ = writeln!(
            s,
            "ringstream_worker_connections{{worker=\"{worker}\"}} {open}"
        );
    }
    let routes: Vec<(String, TrafficTotals)> = ctx
        .config
        .routes
        .iter()
        .enumerate()
        .map(|(i, r)| (label(&r.path), ctx.route_traffic.get(Some(i)).totals()))
        .chain(std::iter::once((
            "(none)".to_owned(),
            ctx.route_traffic.get(None).totals(),
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
    let (reloaded, refused) = metrics.reloads();
    let _ = write!(
        s,
        "# HELP ringstream_config_reloads_total Configuration reloads (SIGHUP): taken, or refused \
         and the running configuration kept.\n# TYPE ringstream_config_reloads_total counter\n\
         ringstream_config_reloads_total{{result=\"ok\"}} {reloaded}\n\
         ringstream_config_reloads_total{{result=\"failed\"}} {refused}\n"
    );
    if ctx.config.tls.is_some() {
        let t = metrics.tls();
        let _ = write!(
            s,
            "# HELP ringstream_tls_handshakes_total TLS handshakes: completed, failed (closed, not \
             TLS, or a TLS error), cut at header_timeout, or answered 400 for plain HTTP.\n\
             # TYPE ringstream_tls_handshakes_total counter\n\
             ringstream_tls_handshakes_total{{outcome=\"done\"}} {}\n\
             ringstream_tls_handshakes_total{{outcome=\"failed\"}} {}\n\
             ringstream_tls_handshakes_total{{outcome=\"timed_out\"}} {}\n\
             ringstream_tls_handshakes_total{{outcome=\"plain_http\"}} {}\n",
            t.done, t.failed, t.timed_out, t.plain_http
        );
    }
    if let Some(cluster) = ctx.hub.topics.cluster() {
        super::cluster::prometheus_text(&mut s, cluster);
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
