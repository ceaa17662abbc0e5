//! The `proxy` route against the real binary on both drivers, in front of a Starlette app on
//! uvicorn and of a raw upstream that records every byte it is sent (or misbehaves on
//! purpose): bodies streamed both ways and re-framed, the forwarding fields, every error
//! status, the pool's keep-alive and its stale connections, and smuggling attempts that never
//! reach the upstream.
#![allow(clippy::unwrap_used, reason = "tests")]

mod support;

use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use support::http_framing::{read_any_response, write_chunked};
use support::upstream::{RawUpstream, Uvicorn, big_body, record_headers, stream_body};
use support::ws::{BINARY, TEXT, connect_to, frame, read_frame, upgrade_request};
use support::{DRIVERS, Server, is_closed};

/// A one-worker server (one pool) with a proxy route at `/api/` to `upstreams` (TOML strings),
/// `options` in the route and `limits` in its `[routes.limits]`.
fn proxy(driver: &str, upstreams: &[String], options: &str, limits: &str) -> Server {
    let list = upstreams
        .iter()
        .map(|u| format!("\"{u}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let config = format!(
        r#"
[[routes]]
path = "/api/"
kind = "proxy"
upstreams = [{list}]
{options}
[routes.limits]
max_body_size = "16MiB"
{limits}

[[routes]]
path = "/stats"
kind = "stats"
"#
    );
    Server::with_config(&config, &["--workers", "1", "--io-driver", driver])
}

fn to(addr: SocketAddr) -> Vec<String> {
    vec![addr.to_string()]
}

/// Sends `raw` on a new connection and reads the whole response (any framing).
fn ask(server: &Server, raw: &[u8]) -> support::Response {
    let mut stream = server.connect();
    stream.write_all(raw).unwrap();
    read_any_response(&mut stream).expect("a response")
}

fn get(server: &Server, target: &str) -> support::Response {
    ask(
        server,
        format!("GET {target} HTTP/1.1\r\nHost: app.example\r\n\r\n").as_bytes(),
    )
}

#[test]
fn bodies_stream_both_ways_and_are_reframed() {
    let app = Uvicorn::start();
    for driver in DRIVERS {
        let server = proxy(driver, &to(app.addr()), "", "");
        let hello = get(&server, "/api/hello");
        assert_eq!(
            (hello.status, hello.body.as_slice()),
            (200, &b"hello"[..]),
            "{driver}"
        );
        // A body of known length, and a chunked one, come back whole.
        let body = big_body(3 << 20);
        let mut stream = server.connect();
        let head = format!(
            "POST /api/echo HTTP/1.1\r\nHost: h\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).unwrap();
        stream.write_all(&body).unwrap();
        let echoed = read_any_response(&mut stream).unwrap();
        assert_eq!(
            (echoed.status, echoed.body.len()),
            (200, body.len()),
            "{driver}"
        );
        assert!(echoed.body == body, "{driver}: the echo differs");
        // The same connection carries a chunked upload next, counted by the app as it streams.
        stream
            .write_all(
                b"POST /api/sha256 HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n",
            )
            .unwrap();
        write_chunked(&mut stream, &body, 100_000);
        let summed = read_any_response(&mut stream).unwrap();
        let json: serde_json::Value = serde_json::from_slice(&summed.body).unwrap();
        assert_eq!(json["length"], body.len(), "{driver}");
        // A chunked response of unknown length, and a large one with Content-Length.
        let streamed = get(&server, "/api/stream?chunks=20&size=50000");
        assert_eq!(
            streamed.header("transfer-encoding"),
            Some("chunked"),
            "{driver}"
        );
        assert!(streamed.body == stream_body(20, 50_000), "{driver}");
        let large = get(&server, "/api/big?bytes=10000000");
        assert_eq!(large.header("content-length"), Some("10000000"), "{driver}");
        assert!(large.body == big_body(10_000_000), "{driver}");
        // HEAD keeps the size a GET would have; 204 has no body.
        let mut stream = server.connect();
        stream
            .write_all(b"HEAD /api/big?bytes=1234 HTTP/1.1\r\nHost: h\r\n\r\n")
            .unwrap();
        let head = support::http_framing::read_response_head(&mut stream).unwrap();
        assert_eq!(
            (head.status, head.header("content-length")),
            (200, Some("1234")),
            "{driver}"
        );
        let empty = get(&server, "/api/status/204");
        assert_eq!((empty.status, empty.body.len()), (204, 0), "{driver}");
        assert_eq!(get(&server, "/api/status/418").status, 418, "{driver}");
    }
}

#[test]
fn forwarding_fields_are_set_and_spoofed_ones_dropped() {
    let app = Uvicorn::start();
    let spoofed = "GET /api/headers?x=1 HTTP/1.1\r\nHost: app.example\r\nX-Forwarded-For: 6.6.6.6\r\n\
                   X-Forwarded-Proto: https\r\nForwarded: for=6.6.6.6\r\nX-Real-IP: 6.6.6.6\r\n\
                   X-Request-Id: forged\r\nConnection: keep-alive, X-Secret\r\nX-Secret: 1\r\n\
                   Proxy-Authorization: Basic Zm9v\r\nCookie: session=abc\r\n\r\n";
    for driver in DRIVERS {
        let server = proxy(driver, &to(app.addr()), "", "");
        let seen: serde_json::Value =
            serde_json::from_slice(&ask(&server, spoofed.as_bytes()).body).unwrap();
        let headers: Vec<(String, String)> = seen["headers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p[0].as_str().unwrap().to_owned(),
                    p[1].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        let value = |name: &str| {
            let all: Vec<&str> = headers
                .iter()
                .filter(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
                .collect();
            assert!(all.len() <= 1, "{driver}: one {name}: {all:?}");
            all.first().map(|v| (*v).to_owned())
        };
        assert_eq!(seen["query"], "x=1", "{driver}");
        assert_eq!(value("host").as_deref(), Some("app.example"), "{driver}");
        assert_eq!(
            value("x-forwarded-for").as_deref(),
            Some("127.0.0.1"),
            "{driver}"
        );
        assert_eq!(
            value("x-forwarded-proto").as_deref(),
            Some("http"),
            "{driver}"
        );
        assert_eq!(
            value("x-forwarded-host").as_deref(),
            Some("app.example"),
            "{driver}"
        );
        assert_eq!(
            value("forwarded").as_deref(),
            Some("for=127.0.0.1;proto=http;host=\"app.example\""),
            "{driver}"
        );
        assert_eq!(value("cookie").as_deref(), Some("session=abc"), "{driver}");
        let id = value("x-request-id").unwrap();
        assert!(id != "forged" && id.len() == 32, "{driver}: {id}");
        for gone in [
            "x-real-ip",
            "x-secret",
            "proxy-authorization",
            "connection",
            "keep-alive",
        ] {
            assert_eq!(value(gone), None, "{driver}: {gone} must not reach the app");
        }
    }
    // Behind a trusted proxy its chain is kept and this hop appended.
    let config = format!(
        "[limits]\ntrusted_proxies = [\"127.0.0.1/32\"]\n[[routes]]\npath = \"/api/\"\nkind = \"proxy\"\nupstreams = [\"{}\"]\n",
        app.addr()
    );
    let server = Server::with_config(&config, &[]);
    let seen: serde_json::Value =
        serde_json::from_slice(&ask(&server, spoofed.as_bytes()).body).unwrap();
    let text = seen["headers"].to_string();
    assert!(
        text.contains(r#"["x-forwarded-for","6.6.6.6, 127.0.0.1"]"#),
        "{text}"
    );
    assert!(text.contains(r#"["x-forwarded-proto","https"]"#), "{text}");
    assert!(text.contains(r#"["x-request-id","forged"]"#), "{text}");
}

#[test]
fn upstream_failures_answer_502_503_504_and_a_cut_body_closes_the_connection() {
    for driver in DRIVERS {
        // Nobody listens: 502, then the upstream is down (max_fails = 1): 503.
        let nobody = format!("127.0.0.1:{}", support::upstream::free_port());
        let server = proxy(driver, &[nobody], "fail_timeout = \"30s\"", "");
        assert_eq!(get(&server, "/api/hello").status, 502, "{driver}");
        assert_eq!(get(&server, "/api/hello").status, 503, "{driver}");
        // An answer that is not HTTP, and a reset: 502.
        for mode in ["garbage", "reset"] {
            let upstream = RawUpstream::start(mode);
            let server = proxy(driver, &to(upstream.addr()), "max_fails = 0", "");
            assert_eq!(get(&server, "/api/x").status, 502, "{driver}: {mode}");
        }
        // No answer within upstream_timeout: 504.
        let silent = RawUpstream::start("silent");
        let server = proxy(
            driver,
            &to(silent.addr()),
            "upstream_timeout = \"1s\"\nmax_fails = 0",
            "",
        );
        assert_eq!(get(&server, "/api/x").status, 504, "{driver}");
        // A body cut short after its head went out: the client's connection closes, never a
        // fake success.
        let truncated = RawUpstream::start("truncated");
        let server = proxy(driver, &to(truncated.addr()), "max_fails = 0", "");
        let mut stream = server.connect();
        stream
            .write_all(b"GET /api/x HTTP/1.1\r\nHost: h\r\n\r\n")
            .unwrap();
        let head = support::http_framing::read_response_head(&mut stream).unwrap();
        assert_eq!(head.header("content-length"), Some("100"), "{driver}");
        let mut rest = Vec::new();
        let _ = std::io::Read::read_to_end(&mut stream, &mut rest);
        assert!(rest.len() < 100, "{driver}: {} bytes of 100", rest.len());
        assert!(is_closed(&mut stream), "{driver}");
        let stats = server.stats();
        assert!(
            stats["http_refusals"]["502"].as_u64().is_some(),
            "{driver}: {stats}"
        );
    }
}

#[test]
fn pooled_connections_are_reused_and_a_stale_one_never_surfaces_as_502() {
    for driver in DRIVERS {
        let upstream = RawUpstream::start("record");
        let server = proxy(driver, &to(upstream.addr()), "", "");
        for i in 0..10 {
            assert_eq!(get(&server, &format!("/api/{i}")).status, 200, "{driver}");
        }
        upstream.wait_for_records(|r| r.iter().filter(|r| r.get("method").is_some()).count() == 10);
        assert_eq!(
            upstream.connections(),
            1,
            "{driver}: one pooled connection for ten requests"
        );
        let stats = server.stats();
        assert_eq!(stats["proxy"]["upstream_connects"], 1, "{driver}: {stats}");
        assert_eq!(stats["proxy"]["upstream_reuses"], 9, "{driver}: {stats}");
        // An upstream that closes idle connections 200 ms after each answer.
        let closing = RawUpstream::start("close-idle");
        let server = proxy(driver, &to(closing.addr()), "", "");
        for i in 0..3 {
            assert_eq!(
                get(&server, &format!("/api/{i}")).status,
                200,
                "{driver}: request {i}"
            );
            std::thread::sleep(Duration::from_millis(400));
        }
        assert_eq!(closing.connections(), 3, "{driver}");
    }
}

#[test]
fn smuggling_attempts_never_reach_the_upstream() {
    let attempts: [(&str, u16); 7] = [
        (
            "POST /api/a HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /api/smuggled HTTP/1.1\r\nHost: h\r\n\r\n",
            400,
        ),
        (
            "POST /api/a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 40\r\n\r\n0\r\n\r\n",
            400,
        ),
        (
            "POST /api/a HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 30\r\n\r\nxGET /api/smuggled HTTP/1.1\r\n\r\n",
            400,
        ),
        (
            "POST /api/a HTTP/1.1\r\nHost: h\r\nX-Fold: a\r\n b\r\nContent-Length: 0\r\n\r\n",
            400,
        ),
        ("POST /api/a HTTP/1.1\nHost: h\nContent-Length: 0\n\n", 400),
        (
            "POST /api/a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
            400,
        ),
        (
            "POST /api/a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
            501,
        ),
    ];
    for driver in DRIVERS {
        let upstream = RawUpstream::start("record");
        let server = proxy(driver, &to(upstream.addr()), "", "");
        for (raw, status) in attempts {
            assert_eq!(
                ask(&server, raw.as_bytes()).status,
                status,
                "{driver}: {raw:?}"
            );
        }
        // A chunked body with extensions and trailers reaches the upstream re-framed.
        let legit = "POST /api/legit HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n\
                     3;ext=1\r\nabc\r\n0\r\nX-Trailer: t\r\n\r\n";
        assert_eq!(ask(&server, legit.as_bytes()).status, 200, "{driver}");
        let records = upstream.wait_for_records(|r| r.iter().any(|r| r.get("method").is_some()));
        let requests: Vec<_> = records
            .iter()
            .filter(|r| r.get("method").is_some())
            .collect();
        assert_eq!(
            requests.len(),
            1,
            "{driver}: only the legitimate request: {records:?}"
        );
        assert_eq!(requests[0]["target"], "/api/legit", "{driver}");
        assert_eq!(requests[0]["body_len"], 3, "{driver}");
        let names: Vec<String> = record_headers(requests[0])
            .into_iter()
            .map(|(n, _)| n.to_ascii_lowercase())
            .collect();
        assert!(
            names.contains(&"transfer-encoding".to_owned()),
            "{driver}: {names:?}"
        );
        assert!(
            upstream.desyncs().is_empty(),
            "{driver}: {:?}",
            upstream.desyncs()
        );
    }
}

#[test]
fn a_unix_socket_upstream_and_an_upgrade_the_app_refuses() {
    let path = std::env::temp_dir().join(format!("ringstream-proxy-{}.sock", std::process::id()));
    let app = Uvicorn::start_on_unix(&path);
    for driver in DRIVERS {
        let server = proxy(driver, &[format!("unix:{}", path.display())], "", "");
        assert_eq!(get(&server, "/api/hello").body, b"hello", "{driver}");
        // The app has no WebSocket route: its refusal comes back, the connection is no tunnel.
        let upgrade = ask(&server, &upgrade_request("/api/ws", ""));
        assert_eq!(upgrade.status, 403, "{driver}");
        // A tunnel over the Unix socket (on io_uring both sides receive through the ring).
        let (mut ws, answer) = connect_to(server.addr, "/api/ws-echo", "");
        assert_eq!(answer.status, 101, "{driver}");
        let large: Vec<u8> = (0..60_000).map(|i| (i * 31) as u8).collect();
        for (opcode, payload) in [(TEXT, &b"hello"[..]), (BINARY, &large), (TEXT, b"again")] {
            ws.write_all(&frame(true, 0, opcode, payload)).unwrap();
            let echo = read_frame(&mut ws).expect("an echo");
            assert_eq!(echo.opcode, opcode, "{driver}");
            assert!(
                echo.payload == payload,
                "{driver}: {} bytes",
                echo.payload.len()
            );
        }
    }
    drop(app);
}

#[test]
fn an_upstream_failing_its_health_check_is_left_out_until_it_passes() {
    let app = Uvicorn::start();
    for driver in DRIVERS {
        let config = format!(
            r#"
[[routes]]
path = "/api/"
kind = "proxy"
upstreams = ["{app}"]
health_check = "/api/status/503"
health_interval = "200ms"

[[routes]]
path = "/api/hello"
kind = "proxy"
upstreams = ["{app}"]
health_check = "/api/status/204"
health_interval = "200ms"
"#,
            app = app.addr()
        );
        let server = Server::with_config(&config, &["--workers", "1", "--io-driver", driver]);
        // The first route's only upstream fails its check: every request is 503 once it ran.
        let deadline = std::time::Instant::now() + support::PATIENCE;
        while get(&server, "/api/big?bytes=1").status != 503 {
            assert!(
                std::time::Instant::now() < deadline,
                "{driver}: never left out"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        // The second's passes: it keeps answering.
        for _ in 0..5 {
            assert_eq!(get(&server, "/api/hello").status, 200, "{driver}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

#[test]
fn the_request_rate_applies_before_forwarding_and_its_headers_reach_the_client() {
    let app = Uvicorn::start();
    for driver in DRIVERS {
        let config = format!(
            "[limits]\nexempt = []\n[[routes]]\npath = \"/api/\"\nkind = \"proxy\"\nupstreams = [\"{}\"]\n\
             [routes.limits]\nrate_limit_requests = 2\nburst = 2\nrate_limit_headers = true\n",
            app.addr()
        );
        let server = Server::with_config(&config, &["--workers", "1", "--io-driver", driver]);
        let first = get(&server, "/api/hello");
        assert_eq!(first.status, 200, "{driver}");
        assert!(
            first.header("ratelimit").is_some(),
            "{driver}: {:?}",
            first.headers
        );
        assert!(first.header("ratelimit-policy").is_some(), "{driver}");
        assert_eq!(get(&server, "/api/hello").status, 200, "{driver}");
        let refused = get(&server, "/api/hello");
        assert_eq!(refused.status, 429, "{driver}");
        assert!(refused.header("retry-after").is_some(), "{driver}");
    }
}

#[test]
fn a_client_that_leaves_while_the_app_thinks_frees_its_place_at_once() {
    let app = Uvicorn::start();
    for driver in DRIVERS {
        let config = format!(
            "[limits]\nexempt = []\nmax_concurrent_connections = 1\n[[routes]]\npath = \"/api/\"\n\
             kind = \"proxy\"\nupstreams = [\"{}\"]\n",
            app.addr()
        );
        let server = Server::with_config(&config, &["--workers", "1", "--io-driver", driver]);
        let mut leaving = server.connect();
        leaving
            .write_all(b"GET /api/slow?seconds=5 HTTP/1.1\r\nHost: h\r\n\r\n")
            .unwrap();
        std::thread::sleep(Duration::from_millis(300));
        drop(leaving);
        // Its place is free well before the app would have answered.
        let deadline = std::time::Instant::now() + Duration::from_secs(3);
        loop {
            let answer = get(&server, "/api/hello");
            if answer.status == 200 {
                break;
            }
            assert_eq!(answer.status, 429, "{driver}");
            assert!(
                std::time::Instant::now() < deadline,
                "{driver}: the place stayed taken"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}
