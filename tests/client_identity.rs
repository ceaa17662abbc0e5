//! Who a client is: `X-Forwarded-For` and `Forwarded` from trusted proxies (every line read,
//! one header believed, hops that are not addresses refused, each request of a proxy's
//! pooled connection its own client's) and clients named by a header, against the real
//! binary.
#![allow(clippy::unwrap_used, reason = "tests")]

mod support;

use support::clients::{config, get, server};
use support::ws::{self, upgrade_request};
use support::{DRIVERS, Server, ask, is_closed};

#[test]
fn clients_behind_a_trusted_proxy_are_told_apart_by_x_forwarded_for() {
    let server = server(
        "trusted_proxies = [\"127.0.0.0/8\"]\nmax_concurrent_connections = 1\n\
         deny = [\"192.0.2.66/32\"]",
        "",
    );
    let xff = |client: &str| format!("X-Forwarded-For: {client}\r\n");
    let upgrade = |client: &str| {
        let mut stream = server.connect();
        let response = ask(&mut stream, upgrade_request("/ws/echo", &xff(client)));
        (stream, response.status)
    };
    let (_first, status) = upgrade("198.51.100.1");
    assert_eq!(status, 101);
    let (_second, status) = upgrade("198.51.100.2");
    assert_eq!(status, 101);
    let (_third, status) = upgrade("198.51.100.1");
    assert_eq!(status, 429);
    let (_denied, status) = upgrade("192.0.2.66");
    assert_eq!(status, 403);
}

#[test]
fn clients_named_by_a_header_have_their_own_budgets() {
    let server = server(
        "client_id = \"header:X-Api-Key\"\nmax_concurrent_connections = 1",
        "",
    );
    let key = |k: &str| format!("X-Api-Key: {k}\r\n");
    let (_a, response) = ws::connect_to(server.addr, "/ws/echo", &key("alpha"));
    assert_eq!(response.status, 101);
    let (_b, response) = ws::connect_to(server.addr, "/ws/echo", &key("beta"));
    assert_eq!(response.status, 101);
    let mut again = server.connect();
    let response = ask(&mut again, upgrade_request("/ws/echo", &key("alpha")));
    assert_eq!(response.status, 429);
}

/// A server behind a local reverse proxy, as the README advises (`trusted_proxies` is
/// 127.0.0.1 and loopback stays exempt), with a publish route, on each I/O driver; `limits`
/// adds keys to `[limits]`.
fn behind_a_local_proxy(limits: &str) -> impl Iterator<Item = Server> {
    let config = config(
        &format!("trusted_proxies = [\"127.0.0.1/32\"]\n{limits}"),
        "[[routes]]\npath = \"/publish/{topic}\"\nkind = \"publish\"\n",
    );
    DRIVERS
        .into_iter()
        .map(move |driver| Server::with_config(&config, &["--workers", "2", "--io-driver", driver]))
}

/// `GET /stats` and `POST /publish/t` with the header lines `lines`, each on a fresh
/// connection from 127.0.0.1 (the proxy): their two statuses.
fn privileged_statuses(server: &Server, lines: &str) -> (u16, u16) {
    let stats = server.request(&get("/stats", lines)).status;
    let publish = format!(
        "POST /publish/t HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n\
         Content-Length: 2\r\n{lines}\r\nhi"
    );
    (stats, server.request(publish.as_bytes()).status)
}

#[test]
fn every_x_forwarded_for_line_is_one_list_and_its_right_most_untrusted_hop_is_the_client() {
    for server in behind_a_local_proxy("") {
        // The proxy's own request, and a client the proxy itself saw on loopback: loopback.
        assert_eq!(privileged_statuses(&server, ""), (200, 200));
        let loopback = "X-Forwarded-For: 127.0.0.1\r\n";
        assert_eq!(privileged_statuses(&server, loopback), (200, 200));
        // HAProxy's `option forwardfor` appends its own line after the client's forged one.
        let appended = "X-Forwarded-For: 127.0.0.1\r\nX-Forwarded-For: 8.8.8.8\r\n";
        assert_eq!(privileged_statuses(&server, appended), (403, 403));
        // nginx's $proxy_add_x_forwarded_for appends in the same line.
        let joined = "X-Forwarded-For: 127.0.0.1, 8.8.8.8\r\n";
        assert_eq!(privileged_statuses(&server, joined), (403, 403));
        // Header names are case-insensitive; the lines need not be adjacent.
        let apart = "x-forwarded-for: 127.0.0.1\r\nAccept: */*\r\nX-FORWARDED-FOR: 8.8.8.8\r\n";
        assert_eq!(privileged_statuses(&server, apart), (403, 403));
    }
}

#[test]
fn only_the_configured_forwarding_header_is_believed() {
    let both = |xff: &str, forwarded: &str| {
        format!("X-Forwarded-For: {xff}\r\nForwarded: {forwarded}\r\n")
    };
    for server in behind_a_local_proxy("") {
        // The default: X-Forwarded-For; a Forwarded the proxy passed through is ignored.
        let lines = both("8.8.8.8", "for=127.0.0.1");
        assert_eq!(privileged_statuses(&server, &lines), (403, 403));
        // Even alone: it is not the header the proxy sets.
        let alone = "Forwarded: for=8.8.8.8\r\n";
        assert_eq!(privileged_statuses(&server, alone), (200, 200));
    }
    for server in behind_a_local_proxy("forwarded_header = \"forwarded\"") {
        let lines = both("8.8.8.8", "for=127.0.0.1");
        assert_eq!(privileged_statuses(&server, &lines), (200, 200));
        let lines = both("127.0.0.1", "for=8.8.8.8");
        assert_eq!(privileged_statuses(&server, &lines), (403, 403));
        let lines = "Forwarded: for=127.0.0.1\r\nForwarded: For=\"[2001:db8::1]:4711\"\r\n";
        assert_eq!(privileged_statuses(&server, lines), (403, 403));
    }
}

#[test]
fn a_client_the_proxy_names_by_something_else_than_an_address_is_refused_400() {
    for server in behind_a_local_proxy("") {
        for lines in [
            "X-Forwarded-For: garbage\r\n",
            "X-Forwarded-For: unknown\r\n",
            "X-Forwarded-For: _hidden\r\n",
            "X-Forwarded-For: 8.8.8.8, 127.0.0.1:notaport\r\n",
            "X-Forwarded-For: 8.8.8.8\r\nX-Forwarded-For: nonsense\r\n",
            "X-Forwarded-For: \r\n",
            "X-Forwarded-For: ,\r\n",
        ] {
            for raw in [get("/stats", lines), get("/health", lines)] {
                let response = support::assert_refused(&server, &raw, 400);
                assert_eq!(response.header("retry-after"), None);
            }
            assert_eq!(privileged_statuses(&server, lines), (400, 400), "{lines:?}");
        }
        // Garbage left of the right-most untrusted hop does not matter.
        let left = "X-Forwarded-For: garbage, _hidden\r\nX-Forwarded-For: 8.8.8.8\r\n";
        assert_eq!(privileged_statuses(&server, left), (403, 403));
        // Each refusal is counted under its status (7 forms, 4 requests each).
        server.wait_for_stats(|stats| stats["http_refusals"]["400"] == 28);
    }
    for server in behind_a_local_proxy("forwarded_header = \"forwarded\"") {
        for lines in [
            "Forwarded: for=_hidden\r\n",
            "Forwarded: for=unknown\r\n",
            "Forwarded: for=\"_SEVKISEK\"\r\n",
            "Forwarded: proto=https\r\n",
            "Forwarded: for=8.8.8.8, for=127.0.0.1;for=127.0.0.2\r\n",
        ] {
            assert_eq!(privileged_statuses(&server, lines), (400, 400), "{lines:?}");
        }
    }
}

#[test]
fn the_connection_cap_counts_the_forwarded_client_whatever_its_first_line() {
    for server in behind_a_local_proxy("max_concurrent_connections = 1") {
        let upgrade = |first: &str, last: &str| {
            let lines = format!("X-Forwarded-For: {first}\r\nX-Forwarded-For: {last}\r\n");
            let mut stream = server.connect();
            let response = ask(&mut stream, upgrade_request("/ws/echo", &lines));
            (stream, response.status)
        };
        let (_held, status) = upgrade("127.0.0.1", "198.51.100.1");
        assert_eq!(status, 101);
        // A fresh first line is the same client: over its cap, and not the exempt loopback.
        for first in ["127.0.0.1", "203.0.113.9", "garbage", "::1"] {
            let (_refused, status) = upgrade(first, "198.51.100.1");
            assert_eq!(status, 429, "first line {first}");
        }
        let (_other, status) = upgrade("127.0.0.1", "198.51.100.2");
        assert_eq!(status, 101);
    }
}

#[test]
fn each_request_on_a_proxys_pooled_connection_is_its_own_clients() {
    // A proxy keeps connections to its backend open and sends one client's request, then
    // another's, on the same one (nginx `keepalive`, HAProxy `http-reuse`).
    for server in behind_a_local_proxy("") {
        let mut pooled = server.connect();
        let local = "X-Forwarded-For: 127.0.0.1\r\n";
        let remote = "X-Forwarded-For: 8.8.8.8\r\n";
        assert_eq!(ask(&mut pooled, get("/stats", local)).status, 200);
        assert_eq!(ask(&mut pooled, get("/api", local)).status, 404);
        // A 403 closes the connection, as every refusal that is not a request rate does.
        assert_eq!(ask(&mut pooled, get("/stats", remote)).status, 403);
        assert!(is_closed(&mut pooled));
    }
    // Request budgets follow the client of each request, not the connection's first.
    let rated = config(
        "trusted_proxies = [\"127.0.0.1/32\"]\nexempt = []",
        "[[routes]]\npath = \"/api\"\nkind = \"static_text\"\nbody = \"data\"\n\
         [routes.limits]\nrate_limit_requests = 1\n",
    );
    for driver in DRIVERS {
        let server = Server::with_config(&rated, &["--workers", "1", "--io-driver", driver]);
        let mut pooled = server.connect();
        let client = |n: u8| format!("X-Forwarded-For: 192.0.2.{n}\r\n");
        assert_eq!(ask(&mut pooled, get("/api", &client(1))).status, 200);
        assert_eq!(ask(&mut pooled, get("/api", &client(2))).status, 200);
        assert_eq!(ask(&mut pooled, get("/api", &client(1))).status, 429);
        assert_eq!(ask(&mut pooled, get("/api", &client(3))).status, 200);
    }
}
