//! The cluster's part of `/stats` and `/metrics` (present only with `[cluster]`).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::cluster::Cluster;
use ringstream_protocol::json;

fn read(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

/// `"cluster":{...},` for `/stats`.
pub(super) fn stats_json(s: &mut String, cluster: &Cluster) {
    let c = &cluster.counters;
    s.push_str("\"cluster\":{\"node\":");
    json::push_string(s, cluster.node_id());
    let _ = write!(
        s,
        ",\"redis_reachable\":{},\"redis_servers\":{},\"redis_servers_reachable\":{},\
         \"shard_mismatches\":{},\"nodes\":{},\"clients_elsewhere\":{},\
         \"messages\":{{\"sent\":{},\"received\":{}}},\
         \"lost\":{{\"queue_full\":{},\"redis_away\":{},\"lagged\":{}}},\
         \"redis_changes\":{{\"reachable\":{},\"away\":{},\"reconnected\":{}}},\
         \"without_redis\":{{\"decided_alone\":{},\"refused\":{}}},\"bans_received\":{},\
         \"leases\":{{\"cells_granted\":{},\"redis_calls\":{}}}}},",
        cluster.is_reachable(),
        cluster.redis_servers(),
        cluster.redis_servers_reachable(),
        read(&c.shard_mismatches),
        cluster.nodes(),
        cluster.clients_elsewhere(),
        read(&c.sent),
        read(&c.received),
        read(&c.dropped_queue_full),
        read(&c.dropped_redis_away),
        read(&c.dropped_lagged),
        read(&c.became_reachable),
        read(&c.became_unreachable),
        read(&c.reconnected),
        read(&c.decided_alone),
        read(&c.refused_redis_away),
        read(&c.bans_received),
        read(&c.lease_cells),
        read(&c.lease_calls),
    );
}

/// One metric family: its name after `ringstream_cluster_`, type, help and samples (labels,
/// value).
type Family<'a> = (&'a str, &'a str, &'a str, &'a [(&'a str, u64)]);

/// The `ringstream_cluster_*` families for `/metrics`.
pub(super) fn prometheus_text(s: &mut String, cluster: &Cluster) {
    let c = &cluster.counters;
    let families: [Family<'_>; 11] = [
        (
            "redis_reachable",
            "gauge",
            "Whether every Redis server is reachable now (1) or one is away (0).",
            &[("", u64::from(cluster.is_reachable()))],
        ),
        (
            "redis_servers",
            "gauge",
            "Redis servers the cluster spreads topics and clients over, and those reachable now.",
            &[
                ("state=\"listed\"", cluster.redis_servers() as u64),
                (
                    "state=\"reachable\"",
                    cluster.redis_servers_reachable() as u64,
                ),
            ],
        ),
        (
            "shard_mismatches_total",
            "counter",
            "Times another node was seen to number a Redis server differently (its [cluster] \
             redis list differs from this node's).",
            &[("", read(&c.shard_mismatches))],
        ),
        (
            "nodes",
            "gauge",
            "Nodes known alive, this one included.",
            &[("", u64::from(cluster.nodes()))],
        ),
        (
            "clients_elsewhere",
            "gauge",
            "Clients with connections open on other nodes.",
            &[("", cluster.clients_elsewhere() as u64)],
        ),
        (
            "redis_changes_total",
            "counter",
            "Times Redis became reachable, went away, or dropped a connection and came back \
             before it was seen away.",
            &[
                ("to=\"reachable\"", read(&c.became_reachable)),
                ("to=\"away\"", read(&c.became_unreachable)),
                ("to=\"reconnected\"", read(&c.reconnected)),
            ],
        ),
        (
            "messages_total",
            "counter",
            "Topic messages sent to and received from other nodes.",
            &[
                ("direction=\"sent\"", read(&c.sent)),
                ("direction=\"received\"", read(&c.received)),
            ],
        ),
        (
            "messages_lost_total",
            "counter",
            "Topic messages that did not cross nodes: the link's queue was full, Redis was away, \
             or the link fell behind what Redis delivered.",
            &[
                ("reason=\"queue_full\"", read(&c.dropped_queue_full)),
                ("reason=\"redis_away\"", read(&c.dropped_redis_away)),
                ("reason=\"lagged\"", read(&c.dropped_lagged)),
            ],
        ),
        (
            "decisions_without_redis_total",
            "counter",
            "Per-client admissions while Redis was away: decided from this node's counts alone \
             (on_redis_error local or open), or refused 503 (closed).",
            &[
                ("outcome=\"decided_alone\"", read(&c.decided_alone)),
                ("outcome=\"refused\"", read(&c.refused_redis_away)),
            ],
        ),
        (
            "lease_total",
            "counter",
            "Cells Redis granted to per-client rate leases (about one per decision allowed), and \
             the script calls that granted them.",
            &[
                ("kind=\"cell\"", read(&c.lease_cells)),
                ("kind=\"redis_call\"", read(&c.lease_calls)),
            ],
        ),
        (
            "bans_received_total",
            "counter",
            "Bans other nodes decided, applied here.",
            &[("", read(&c.bans_received))],
        ),
    ];
    for (name, kind, help, samples) in families {
        let _ = write!(
            s,
            "# HELP ringstream_cluster_{name} {help}\n# TYPE ringstream_cluster_{name} {kind}\n"
        );
        for (labels, value) in samples {
            if labels.is_empty() {
                let _ = writeln!(s, "ringstream_cluster_{name} {value}");
            } else {
                let _ = writeln!(s, "ringstream_cluster_{name}{{{labels}}} {value}");
            }
        }
    }
}
