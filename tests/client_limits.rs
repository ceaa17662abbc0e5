//! The per-client rows of PROTECTIONS.md ("Connections", the request rate, the per-client
//! WebSocket rates) and `/stats` / `/metrics`, against the real binary with two workers.
//!
//! Clients are told apart by their loopback source address (127.0.0.x, bound before connect);
//! how a client is identified behind a proxy is `tests/client_identity.rs`. Loopback is
//! exempt by default, so every config here sets `exempt = []`.
#![allow(clippy::unwrap_used, reason = "tests")]

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::thread::sleep;
use std::time::{Duration, Instant};

use support::clients::{config, get, server, upgrade_from};
use support::ws::{self, expect_close, frame, read_frame};
use support::{PATIENCE, Server, ask, connect_from, is_closed, read_response};

const TEXT: u8 = 0x1;

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
        ask(&mut finished, get("/health", "Connection: close\r\n")).status,
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
        assert_eq!(ask(&mut stream, get("/health", "")).status, 200);
    }
    let mut stream = connect_from(&server, 2);
    let response = ask(&mut stream, get("/health", ""));
    assert_eq!(response.status, 429);
    // One connection every 20 s refills the quota.
    assert_eq!(response.header("retry-after"), Some("20"));
    let mut other = connect_from(&server, 3);
    assert_eq!(ask(&mut other, get("/health", "")).status, 200);
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
    let first = ask(&mut stream, get("/api", ""));
    assert_eq!(first.status, 200);
    assert_eq!(
        first.header("ratelimit-policy"),
        Some("\"requests\";q=2;w=60")
    );
    assert_eq!(first.header("ratelimit"), Some("\"requests\";r=1;t=30"));
    let second = ask(&mut stream, get("/api", ""));
    assert_eq!(second.header("ratelimit"), Some("\"requests\";r=0;t=60"));
    let refused = ask(&mut stream, get("/api", ""));
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
    assert_eq!(ask(&mut stream, get("/health", "")).status, 200);
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
        assert_eq!(ask(&mut a, get("/health", "")).status, 200);
    }
    assert_eq!(ask(&mut b, get("/health", "")).status, 200);
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
    assert_eq!(ask(&mut allowed, get("/health", "")).status, 200);

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
    assert_eq!(ask(&mut stream, get("/health", "")).status, 200);
    assert_eq!(ask(&mut stream, get("/health", "")).status, 429);
    assert_eq!(ask(&mut stream, get("/health", "")).status, 429);
    let mut banned = connect_from(&server, 2);
    let response = read_response(&mut banned).expect("a 403 at accept");
    assert_eq!(response.status, 403);
    assert_eq!(response.header("retry-after"), Some("2"));
    let mut other = connect_from(&server, 3);
    assert_eq!(ask(&mut other, get("/health", "")).status, 200);
    sleep(Duration::from_millis(2100));
    let mut back = connect_from(&server, 2);
    assert_ne!(ask(&mut back, get("/health", "")).status, 403);
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
        "# TYPE ringstream_worker_connections gauge",
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

#[test]
fn an_exempt_client_is_not_limited_per_client_and_a_listed_one_is() {
    // Loopback is exempt by default: two connections from 127.0.0.1 pass a cap of one.
    let start = |limits: &str| Server::with_config(&config(limits, ""), &["--workers", "2"]);
    let loopback = start("max_concurrent_connections = 1");
    let mut first = loopback.connect();
    assert_eq!(ask(&mut first, get("/health", "")).status, 200);
    let mut second = loopback.connect();
    assert_eq!(ask(&mut second, get("/health", "")).status, 200);
    drop(first);
    // Exempting a single other address: it passes the cap, its neighbour does not.
    let listed = start("max_concurrent_connections = 1\nexempt = [\"127.0.0.5/32\"]");
    let _held = connect_from(&listed, 5);
    assert_eq!(
        ask(&mut connect_from(&listed, 5), get("/health", "")).status,
        200
    );
    let mut taken = connect_from(&listed, 6);
    // Answered: the first connection holds the client's place before the second asks.
    assert_eq!(ask(&mut taken, get("/health", "")).status, 200);
    let refused = ask(&mut connect_from(&listed, 6), get("/health", ""));
    assert_eq!(refused.status, 429);
}
