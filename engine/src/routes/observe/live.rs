//! The parts of `/stats` that describe the moment rather than count since the start: the
//! connections each worker holds, the busiest clients, and the uploads and downloads in
//! progress. Each is read when `/stats` is asked; none adds work to a request.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr};

use ringstream_limits::client_table::ClientRank;
use ringstream_limits::identity::ClientKey;
use ringstream_protocol::json;

use crate::protections::gate::BudgetName;
use crate::server::context::WorkerContext;
use crate::server::metrics::Metrics;
use crate::server::transfers::Transfers;

/// Clients listed in each ranking of `top_clients`.
pub const TOP_CLIENTS: usize = 10;

/// Transfers listed at most, the oldest first (all are counted).
pub const TRANSFERS_LISTED: usize = 100;

/// `"connections_per_worker":[N,...],`: connections open on each worker, in worker order.
pub fn workers_json(s: &mut String, metrics: &Metrics) {
    s.push_str("\"connections_per_worker\":[");
    for (i, open) in metrics.open_per_worker().iter().enumerate() {
        let comma = if i == 0 { "" } else { "," };
        let _ = write!(s, "{comma}{open}");
    }
    s.push_str("],");
}

/// `"top_clients":{"budgets":[..],"by_connections":[..],"by_rate":[..]},`: the clients of the
/// per-client table (exempt clients are not in it) with the most open connections and with
/// the largest share of a rate budget in use; each client lists its use of every budget, in
/// the order of `budgets`. The report may be up to a second old (it is shared by readers).
pub fn top_clients_json(s: &mut String, ctx: &WorkerContext) {
    let report = ctx.gate.top_clients(TOP_CLIENTS);
    s.push_str("\"top_clients\":{\"budgets\":[");
    for (i, (name, budget)) in report.budgets.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str("{\"name\":");
        json::push_string(s, &budget_name(*name, ctx));
        let _ = write!(s, ",\"burst\":{}}}", budget.quota.burst());
    }
    let prefix = ctx.config.clients.ipv6_prefix;
    s.push_str("],\"by_connections\":");
    ranks_json(s, &report.top.by_connections, prefix);
    s.push_str(",\"by_rate\":");
    ranks_json(s, &report.top.by_rate, prefix);
    s.push_str("},");
}

fn budget_name(name: BudgetName, ctx: &WorkerContext) -> String {
    let path = |index: usize| {
        ctx.config
            .routes
            .get(index)
            .map_or("?", |route| route.path.as_str())
    };
    match name {
        BudgetName::Requests(None) => "requests".to_owned(),
        BudgetName::Requests(Some(index)) => format!("requests {}", path(index)),
        BudgetName::Messages => "messages".to_owned(),
        BudgetName::Bytes => "bytes".to_owned(),
        BudgetName::Bandwidth(index) => format!("bandwidth {}", path(index)),
    }
}

fn ranks_json(s: &mut String, ranks: &[ClientRank], ipv6_prefix: u8) {
    s.push('[');
    for (i, rank) in ranks.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str("{\"client\":");
        json::push_string(s, &client_name(rank.key, ipv6_prefix));
        let _ = write!(s, ",\"connections\":{},\"used\":[", rank.connections);
        for (j, used) in rank.used.iter().enumerate() {
            let comma = if j == 0 { "" } else { "," };
            let _ = write!(s, "{comma}{used}");
        }
        s.push_str("]}");
    }
    s.push(']');
}

/// A client's key as reports show it: an IPv4 address, an IPv6 network with its prefix, or
/// `key:` and the keyed hash of a header, query or auth name (the value itself is never kept).
pub fn client_name(key: ClientKey, ipv6_prefix: u8) -> String {
    match key {
        ClientKey::V4(address) => Ipv4Addr::from(address).to_string(),
        ClientKey::V6(network) if ipv6_prefix >= 128 => Ipv6Addr::from(network).to_string(),
        ClientKey::V6(network) => format!("{}/{ipv6_prefix}", Ipv6Addr::from(network)),
        ClientKey::Named(hash) => format!("key:{hash:016x}"),
    }
}

/// `"transfers":{"in_progress":N,"unlisted":N,"list":[..]},`: the uploads and downloads in
/// progress (the oldest [`TRANSFERS_LISTED`]), each with its bytes so far, its size when known
/// and how long it has run; a rate is the difference of two readings.
pub fn transfers_json(s: &mut String, transfers: &Transfers) {
    let (listed, total) = transfers.snapshot(TRANSFERS_LISTED);
    let _ = write!(
        s,
        "\"transfers\":{{\"in_progress\":{total},\"unlisted\":{},\"list\":[",
        transfers.unlisted()
    );
    for (i, t) in listed.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        let _ = write!(
            s,
            "{{\"id\":{},\"direction\":\"{}\",\"route\":",
            t.id,
            t.direction.name()
        );
        json::push_string(s, &t.route);
        s.push_str(",\"name\":");
        json::push_string(s, &t.name);
        match t.client {
            Some(client) => {
                s.push_str(",\"client\":");
                json::push_string(s, &client.to_string());
            }
            None => s.push_str(",\"client\":null"),
        }
        let _ = write!(s, ",\"bytes\":{},\"size\":", t.bytes());
        match t.size {
            Some(size) => {
                let _ = write!(s, "{size}");
            }
            None => s.push_str("null"),
        }
        let _ = write!(s, ",\"elapsed_ms\":{}}}", t.started.elapsed().as_millis());
    }
    s.push_str("]},");
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use std::sync::Arc;

    use super::*;
    use crate::server::transfers::{Direction, NewTransfer};

    #[test]
    fn clients_are_named_as_addresses_networks_or_hashed_keys() {
        assert_eq!(client_name(ClientKey::V4(0x7f00_0001), 64), "127.0.0.1");
        let network = u128::from(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0));
        assert_eq!(client_name(ClientKey::V6(network), 64), "2001:db8::/64");
        assert_eq!(client_name(ClientKey::V6(network), 128), "2001:db8::");
        assert_eq!(
            client_name(ClientKey::Named(0xab), 64),
            "key:00000000000000ab"
        );
    }

    #[test]
    fn workers_and_transfers_are_json() {
        let metrics = Arc::new(Metrics::new(2));
        metrics.open_gauge(1).set(5);
        let mut s = String::from("{");
        workers_json(&mut s, &metrics);
        let upload = metrics.transfers().begin(NewTransfer {
            direction: Direction::Upload,
            route: "/upload/",
            name: "a \"b\".bin",
            client: Some("10.0.0.1".parse().unwrap()),
            size: None,
        });
        upload.as_ref().unwrap().add(42);
        transfers_json(&mut s, metrics.transfers());
        s.pop();
        s.push('}');
        let doc: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(doc["connections_per_worker"], serde_json::json!([0, 5]));
        let transfers = &doc["transfers"];
        assert_eq!(transfers["in_progress"], 1);
        let listed = &transfers["list"][0];
        assert_eq!(listed["direction"], "upload");
        assert_eq!(listed["name"], "a \"b\".bin");
        assert_eq!(listed["client"], "10.0.0.1");
        assert_eq!(listed["bytes"], 42);
        assert!(listed["size"].is_null());
    }
}
