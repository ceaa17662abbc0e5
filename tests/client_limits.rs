//! The per-client rows of PROTECTIONS.md ("Connections", the request rate, the per-client
//! WebSocket rates) and `/stats` / `/metrics`, against the real binary with two workers.
//!
//! Clients are told apart by their loopback source address (127.0.0.x, bound before connect)
//! or by `X-Forwarded-For` from a trusted proxy. Loopback is exempt by default, so every
//! config here sets `exempt = []`.
#![allow(clippy::unwrap_used, reason = "tests")]

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::thread::sleep;
use std::time::{Duration, Instant};

use socket2::{Domain, Socket, Type};
use support::ws::{self, expect_close, frame, read_frame, upgrade_request};
use support::{PATIENCE, Response, Server, is_closed, read_response};

const TEXT: u8 = 0x1;

fn server(limits: &str, extra_routes: &str) -> Server {
    let config = config(&format!("exempt = []\n{limits}"), extra_routes);
    Server::with_config(&config, &["--workers", "2"])
}

/// The configuration of these tests: `limits` in `[limits]`, then the routes.
fn config(limits: &str, extra_routes: &str) -> String {
    format!(
        r#"
[limits]
{limits}

[[routes]]
path = "/health"
kind = "health"

[[routes]]
path = "/ws/echo"
kind = "echo"

[[routes]]
path = "/stats"
kind = "stats"

[[routes]]
path = "/metrics"
kind = "metrics"
{extra_routes}
"#
    )
}

/// A connection to `server` from the loopback address 127.0.0.`host`.
fn connect_from(server: &Server, host: u8) -> TcpStream {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    let local = SocketAddr::from((Ipv4Addr::new(127, 0, 0, host), 0));
    socket.bind(&local.into()).unwrap();
    socket.connect(&server.addr.into()).unwrap();
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    stream.set_nodelay(true).unwrap();
    stream
}

/// Sends `raw` on `stream` and reads the answer.
fn ask(stream: &mut TcpStream, raw: &[u8]) -> Response {
    stream.write_all(raw).unwrap();
    read_response(stream).expect("a response")
}

/// A WebSocket upgrade from 127.0.0.`host`: the stream and the answer (101 or a refusal).
fn upgrade_from(server: &Server, host: u8) -> (TcpStream, Response) {
    let mut stream = connect_from(server, host);
    let response = ask(&mut stream, &upgrade_request("/ws/echo", ""));
    (stream, response)
}

fn get(path: &str, extra: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: x\r\n{extra}\r\n").into_bytes()
}

/// `/stats` read from 127.0.0.1 (allowed by the route's default allowlist).
fn stats(server: &Server) -> String {
    let response = server.request(&get("/stats", "Connection: close\r\n"));
    assert_eq!(response.status, 200);
    String::from_utf8(response.body).unwrap()
}

/// Polls `/stats` until it contains `needle`.
fn wait_for_stats(server: &Server, needle: &str) -> String {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let stats = stats(server);
        if stats.contains(needle) {
            return stats;
        }
        assert!(Instant::now() < deadline, "{needle} never in {stats}");
        sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_concurrent_cap_holds_across_workers_and_counts_return_to_zero_on_every_path() {
    let server = server(
        "max_concurrent_connections = 6\nheader_timeout = \"1s\"\ntimeout = \"3s\"\n\
         heartbeat_interval = \"10s\"",
        "",
    );
    // Six connections from one client spread over both workers by SO_REUSEPORT.
    let mut open: Vec<TcpStream> = (0..6)
        .map(|_| {
            let (stream, response) = upgrade_from(&server, 2);
            assert_eq!(response.status, 101);
            stream
        })
        .collect();
    for _ in 0..4 {
        let (mut stream, response) = upgrade_from(&server, 2);
        assert_eq!(response.status, 429, "the seventh, before the upgrade");
        assert_eq!(response.header("retry-after"), Some("1"));
        assert!(is_closed(&mut stream));
    }
    // Another client is not affected.
    assert_eq!(upgrade_from(&server, 3).1.status, 101);

    // Leave by every path: a close handshake, an abort, the idle timeout, an HTTP connection
    // that sends nothing (header timeout), and one that finished a request.
    let mut closing = open.pop().unwrap();
    closing
        .write_all(&frame(true, 0, 0x8, &1000u16.to_be_bytes()))
        .unwrap();
    assert_eq!(expect_close(&mut closing).0, 1000);
    let aborted = open.pop().unwrap();
    socket2::SockRef::from(&aborted)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(aborted);
    let mut idle = open.pop().unwrap();
    assert_eq!(expect_close(&mut idle), (1000, "idle timeout".into()));
    drop(open);
    let mut silent = connect_from(&server, 2);
    let timed_out = read_response(&mut silent).expect("a 408");
    assert_eq!(timed_out.status, 408);
    let mut finished = connect_from(&server, 2);
    assert_eq!(
        ask(&mut finished, &get("/health", "Connection: close\r\n")).status,
        200
    );
    assert!(is_closed(&mut finished));

    // Only the /stats request itself is left: one connection, one client.
    let stats = wait_for_stats(&server, "\"connections\":{\"active\":1,");
    assert!(stats.contains("\"clients\":{\"connected\":1,"), "{stats}");
    assert!(
        stats.contains("\"max_concurrent_connections\":{\"refused\":4,\"shadow\":0}"),
        "{stats}"
    );
    // And the full cap is available again.
    let again: Vec<TcpStream> = (0..6)
        .map(|_| {
            let (stream, response) = upgrade_from(&server, 2);
            assert_eq!(response.status, 101);
            stream
        })
        .collect();
    assert_eq!(upgrade_from(&server, 2).1.status, 429);
    drop(again);
}

#[test]
fn new_connections_per_minute_get_429_with_an_honest_retry_after() {
    let server = server("connections_per_minute = 3", "");
    for _ in 0..3 {
        let mut stream = connect_from(&server, 2);
        assert_eq!(ask(&mut stream, &get("/health", "")).status, 200);
    }
    let mut stream = connect_from(&server, 2);
    let response = ask(&mut stream, &get("/health", ""));
    assert_eq!(response.status, 429);
    // One connection every 20 s refills the quota.
    assert_eq!(response.header("retry-after"), Some("20"));
    let mut other = connect_from(&server, 3);
    assert_eq!(ask(&mut other, &get("/health", "")).status, 200);
}

#[test]
fn the_request_rate_answers_429_with_ratelimit_headers_and_keeps_the_connection() {
    let server = server(
        "",
        r#"
[[routes]]
path = "/api"
kind = "static_text"
body = "data"
[routes.limits]
rate_limit_requests = 2
rate_limit_headers = true
"#,
    );
    let mut stream = connect_from(&server, 2);
    let first = ask(&mut stream, &get("/api", ""));
    assert_eq!(first.status, 200);
    assert_eq!(
        first.header("ratelimit-policy"),
        Some("\"requests\";q=2;w=60")
    );
    assert_eq!(first.header("ratelimit"), Some("\"requests\";r=1;t=30"));
    let second = ask(&mut stream, &get("/api", ""));
    assert_eq!(second.header("ratelimit"), Some("\"requests\";r=0;t=60"));
    let refused = ask(&mut stream, &get("/api", ""));
    assert_eq!(refused.status, 429);
    assert_eq!(refused.header("retry-after"), Some("30"));
    assert_eq!(
        refused.header("ratelimit-policy"),
        Some("\"requests\";q=2;w=60")
    );
    assert_eq!(refused.header("ratelimit"), Some("\"requests\";r=0;t=30"));
    assert_eq!(
        refused.header("connection"),
        None,
        "the connection stays open"
    );
    // Other routes have no request rate here.
    assert_eq!(ask(&mut stream, &get("/health", "")).status, 200);
    // A request with a body is refused and closed (its body is never read).
    let post = ask(
        &mut stream,
        b"POST /api HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
    );
    assert_eq!(post.status, 429);
    assert_eq!(post.header("connection"), Some("close"));
    assert!(is_closed(&mut stream));
    let metrics = server.request(&get("/metrics", "Connection: close\r\n"));
    let text = String::from_utf8(metrics.body).unwrap();
    assert!(
        text.contains(
            "ringstream_violations_total{rule=\"rate_limit_requests\",action=\"refused\"} 2"
        ),
        "{text}"
    );
}

#[test]
fn shadow_mode_counts_but_lets_everything_through() {
    let server = server(
        "rate_limit_requests = 1\nmax_concurrent_connections = 1\nmode = \"shadow\"",
        "",
    );
    let mut a = connect_from(&server, 2);
    let mut b = connect_from(&server, 2);
    for _ in 0..3 {
        assert_eq!(ask(&mut a, &get("/health", "")).status, 200);
    }
    assert_eq!(ask(&mut b, &get("/health", "")).status, 200);
    let stats = stats(&server);
    assert!(
        stats.contains("\"rate_limit_requests\":{\"refused\":0,\"shadow\":3}"),
        "{stats}"
    );
    assert!(
        stats.contains("\"max_concurrent_connections\":{\"refused\":0,\"shadow\":1}"),
        "{stats}"
    );
}

#[test]
fn client_message_rate_spans_the_clients_connections() {
    let server = server("client_messages_per_minute = 5", "");
    let (mut a, response) = upgrade_from(&server, 2);
    assert_eq!(response.status, 101);
    let (mut b, response) = upgrade_from(&server, 2);
    assert_eq!(response.status, 101);
    let (mut other, response) = upgrade_from(&server, 3);
    assert_eq!(response.status, 101);
    for (stream, n) in [(&mut a, 3), (&mut b, 2), (&mut other, 5)] {
        for _ in 0..n {
            stream.write_all(&frame(true, 0, TEXT, b"hi")).unwrap();
            assert_eq!(read_frame(stream).unwrap().payload, b"hi");
        }
    }
    b.write_all(&frame(true, 0, TEXT, b"one more")).unwrap();
    assert_eq!(
        expect_close(&mut b),
        (
            1008,
            "rate limit exceeded: client messages per minute".into()
        )
    );
    a.write_all(&frame(true, 0, TEXT, b"and here")).unwrap();
    assert_eq!(expect_close(&mut a).0, 1008);
}

#[test]
fn client_byte_rate_counts_frame_bytes_over_the_clients_connections() {
    // A masked client frame of 2 payload bytes is 8 bytes on the wire: 12 of them use 96 of
    // the 100 bytes, whichever connection they arrive on.
    let server = server("client_bytes_per_minute = 100", "");
    let (mut a, response) = upgrade_from(&server, 4);
    assert_eq!(response.status, 101);
    let (mut b, response) = upgrade_from(&server, 4);
    assert_eq!(response.status, 101);
    for stream in [&mut a, &mut b] {
        for _ in 0..6 {
            stream.write_all(&frame(true, 0, TEXT, b"hi")).unwrap();
            assert_eq!(read_frame(stream).unwrap().payload, b"hi");
        }
    }
    a.write_all(&frame(true, 0, TEXT, b"hi")).unwrap();
    assert_eq!(
        expect_close(&mut a),
        (1008, "rate limit exceeded: client bytes per minute".into())
    );
}

#[test]
fn denied_addresses_get_403_or_a_silent_close_before_anything_is_read() {
    let server = server("deny = [\"127.0.0.2/32\"]", "");
    let mut denied = connect_from(&server, 2);
    // Nothing sent: the answer comes at accept.
    let response = read_response(&mut denied).expect("a 403");
    assert_eq!(response.status, 403);
    let mut allowed = connect_from(&server, 3);
    assert_eq!(ask(&mut allowed, &get("/health", "")).status, 200);

    let silent = self::server("deny = [\"127.0.0.2/32\"]\ndeny_action = \"close\"", "");
    let mut denied = connect_from(&silent, 2);
    let mut byte = [0u8; 1];
    let read = loop {
        match denied.read(&mut byte) {
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            other => break other,
        }
    };
    assert!(
        matches!(read, Ok(0)) || read.is_err(),
        "closed without a byte"
    );

    let allow_only = self::server("allow = [\"127.0.0.3/32\"]", "");
    assert_eq!(upgrade_from(&allow_only, 2).1.status, 403);
    assert_eq!(upgrade_from(&allow_only, 3).1.status, 101);
}

#[test]
fn repeated_violations_ban_the_client_with_403_until_the_ban_ends() {
    let server = server(
        "rate_limit_requests = 1\nburst = 1\nban_after_violations = 2\nban_duration = \"2s\"",
        "",
    );
    let mut stream = connect_from(&server, 2);
    assert_eq!(ask(&mut stream, &get("/health", "")).status, 200);
    assert_eq!(ask(&mut stream, &get("/health", "")).status, 429);
    assert_eq!(ask(&mut stream, &get("/health", "")).status, 429);
    let mut banned = connect_from(&server, 2);
    let response = read_response(&mut banned).expect("a 403 at accept");
    assert_eq!(response.status, 403);
    assert_eq!(response.header("retry-after"), Some("2"));
    let mut other = connect_from(&server, 3);
    assert_eq!(ask(&mut other, &get("/health", "")).status, 200);
    sleep(Duration::from_millis(2100));
    let mut back = connect_from(&server, 2);
    assert_ne!(ask(&mut back, &get("/health", "")).status, 403);
}

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
        let response = ask(&mut stream, &upgrade_request("/ws/echo", &xff(client)));
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
    let response = ask(&mut again, &upgrade_request("/ws/echo", &key("alpha")));
    assert_eq!(response.status, 429);
}

#[test]
fn stats_and_metrics_report_traffic_and_are_restricted_to_their_allowlist() {
    let server = server(
        "",
        r#"
[[routes]]
path = "/private"
kind = "stats"
allowed_clients = ["10.0.0.0/8"]
"#,
    );
    let mut ws = ws::connect(&server, "/ws/echo");
    for _ in 0..3 {
        ws.write_all(&frame(true, 0, TEXT, b"abcd")).unwrap();
        assert_eq!(read_frame(&mut ws).unwrap().payload, b"abcd");
    }
    let stats = wait_for_stats(&server, "\"messages_in\":3,");
    assert!(stats.contains("\"messages_out\":3,"), "{stats}");
    assert!(stats.contains("\"websocket_upgrades\":1,"), "{stats}");
    assert!(
        stats.contains("{\"path\":\"/ws/echo\",\"kind\":\"echo\""),
        "{stats}"
    );
    assert!(
        stats.contains("\"max_concurrent_connections\":64"),
        "{stats}"
    );
    let metrics = server.request(&get("/metrics", "Connection: close\r\n"));
    assert_eq!(metrics.status, 200);
    assert_eq!(
        metrics.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let text = String::from_utf8(metrics.body).unwrap();
    for line in [
        "# TYPE ringstream_connections_active gauge",
        "ringstream_websocket_messages_total{route=\"/ws/echo\",direction=\"in\"} 3",
        "ringstream_websocket_bytes_total{route=\"/ws/echo\",direction=\"out\"} 18",
        "ringstream_websocket_upgrades_total{route=\"/ws/echo\"} 1",
        "ringstream_violations_total{rule=\"deny\",action=\"refused\"} 0",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} not in\n{text}");
    }
    let private = server.request(&get("/private", "Connection: close\r\n"));
    assert_eq!(private.status, 403);
}

#[test]
fn every_refusal_and_server_close_is_counted_per_status_and_code() {
    let server = server(
        "max_header_bytes = \"1KiB\"\nmax_uri_bytes = \"1KiB\"\nmax_message_size = 125",
        "",
    );
    // Two 431s on two connections (either worker may take each) and a 1009.
    for _ in 0..2 {
        let big = format!("X-Big: {}\r\n", "a".repeat(2000));
        let response = server.request(&get("/health", &big));
        assert_eq!(response.status, 431);
    }
    let mut ws = ws::connect(&server, "/ws/echo");
    ws.write_all(&frame(true, 0, TEXT, &[b'x'; 126])).unwrap();
    assert_eq!(expect_close(&mut ws).0, 1009);
    let stats = wait_for_stats(
        &server,
        "\"websocket_closes\":{\"1000\":0,\"1001\":0,\"1002\":0,\"1007\":0,\"1008\":0,\"1009\":1,",
    );
    assert!(stats.contains("\"http_refusals\":{"), "{stats}");
    assert!(stats.contains("\"431\":2,"), "{stats}");
    let metrics = server.request(&get("/metrics", "Connection: close\r\n"));
    let text = String::from_utf8(metrics.body).unwrap();
    for line in [
        "ringstream_http_refusals_total{status=\"431\"} 2",
        "ringstream_http_refusals_total{status=\"408\"} 0",
        "ringstream_websocket_closes_total{code=\"1009\"} 1",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} not in\n{text}");
    }
}

/// The I/O drivers the client identity is tested on (`auto` picks poll wherever io_uring is
/// blocked, so poll is a production path).
const DRIVERS: [&str; 2] = ["uring", "poll"];

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
        wait_for_stats(&server, "\"400\":28,");
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
            let response = ask(&mut stream, &upgrade_request("/ws/echo", &lines));
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
        assert_eq!(ask(&mut pooled, &get("/stats", local)).status, 200);
        assert_eq!(ask(&mut pooled, &get("/api", local)).status, 404);
        // A 403 closes the connection, as every refusal that is not a request rate does.
        assert_eq!(ask(&mut pooled, &get("/stats", remote)).status, 403);
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
        assert_eq!(ask(&mut pooled, &get("/api", &client(1))).status, 200);
        assert_eq!(ask(&mut pooled, &get("/api", &client(2))).status, 200);
        assert_eq!(ask(&mut pooled, &get("/api", &client(1))).status, 429);
        assert_eq!(ask(&mut pooled, &get("/api", &client(3))).status, 200);
    }
}

#[test]
fn an_exempt_client_is_not_limited_per_client_and_a_listed_one_is() {
    // Loopback is exempt by default: two connections from 127.0.0.1 pass a cap of one.
    let start = |limits: &str| Server::with_config(&config(limits, ""), &["--workers", "2"]);
    let loopback = start("max_concurrent_connections = 1");
    let mut first = loopback.connect();
    assert_eq!(ask(&mut first, &get("/health", "")).status, 200);
    let mut second = loopback.connect();
    assert_eq!(ask(&mut second, &get("/health", "")).status, 200);
    drop(first);
    // Exempting a single other address: it passes the cap, its neighbour does not.
    let listed = start("max_concurrent_connections = 1\nexempt = [\"127.0.0.5/32\"]");
    let _held = connect_from(&listed, 5);
    assert_eq!(
        ask(&mut connect_from(&listed, 5), &get("/health", "")).status,
        200
    );
    let mut taken = connect_from(&listed, 6);
    // Answered: the first connection holds the client's place before the second asks.
    assert_eq!(ask(&mut taken, &get("/health", "")).status, 200);
    let refused = ask(&mut connect_from(&listed, 6), &get("/health", ""));
    assert_eq!(refused.status, 429);
}
