//! Every HTTP row of PROTECTIONS.md, provoked with raw bytes against the real binary on both
//! drivers, checking the exact status and that the connection is closed where it must be.
#![allow(clippy::unwrap_used, reason = "tests")]

mod support;

use std::io::Write;
use std::thread::sleep;
use std::time::{Duration, Instant};

use support::{PATIENCE, Server, assert_refused, is_closed, read_response};

const DRIVERS: [&str; 2] = ["uring", "poll"];

/// Small limits so each protection is reached with a few bytes or a second of waiting.
const TIGHT: &str = r#"
[limits]
header_timeout = "1s"
keepalive_timeout = "1s"
upload_timeout = "2s"
min_upload_rate = 0
max_body_size = 1000
max_header_bytes = "2KiB"
max_headers = 8
max_uri_bytes = 100
send_timeout = "1s"

[[routes]]
path = "/health"
kind = "health"

[[routes]]
path = "/big"
kind = "static_text"
body = "BIG"
"#;

fn servers(config: &str) -> impl Iterator<Item = Server> {
    DRIVERS
        .into_iter()
        .map(move |driver| Server::with_config(config, &["--io-driver", driver]))
}

#[test]
fn oversized_head_is_431() {
    for server in servers(TIGHT) {
        let mut raw = b"GET /health HTTP/1.1\r\nHost: x\r\n".to_vec();
        raw.extend_from_slice(format!("X-Pad: {}\r\n\r\n", "a".repeat(3000)).as_bytes());
        assert_refused(&server, &raw, 431);
        // An unfinished head past the limit is refused without waiting for its end.
        let raw = format!(
            "GET /health HTTP/1.1\r\nHost: x\r\nX-Pad: {}",
            "a".repeat(3000)
        );
        assert_refused(&server, raw.as_bytes(), 431);
    }
}

#[test]
fn too_many_headers_is_431() {
    for server in servers(TIGHT) {
        let mut raw = b"GET /health HTTP/1.1\r\nHost: x\r\n".to_vec();
        for i in 0..10 {
            raw.extend_from_slice(format!("X-H{i}: v\r\n").as_bytes());
        }
        raw.extend_from_slice(b"\r\n");
        assert_refused(&server, &raw, 431);
    }
}

#[test]
fn long_request_target_is_414() {
    for server in servers(TIGHT) {
        let raw = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(200));
        assert_refused(&server, raw.as_bytes(), 414);
        // Also while the request line is still arriving.
        let raw = format!("GET /{}", "a".repeat(500));
        assert_refused(&server, raw.as_bytes(), 414);
    }
}

#[test]
fn smuggling_and_malformed_framing_are_400() {
    let cases: &[&[u8]] = &[
        b"POST /health HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"POST /health HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
        b"POST /health HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
        b"POST /health HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
        b"GET /health HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n folded\r\n\r\n",
        b"GET /health HTTP/1.1\nHost: x\r\n\r\n",
        b"GET /health HTTP/1.1\r\nHost: x\rX-A: 1\r\n\r\n",
        b"GET /health HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n",
        b"GET /health HTTP/1.1\r\n\r\n",
        b"POST /health HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"POST /health HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
    ];
    for server in servers(TIGHT) {
        for raw in cases {
            assert_refused(&server, raw, 400);
        }
    }
}

#[test]
fn oversized_body_is_413_before_it_is_read() {
    for server in servers(TIGHT) {
        assert_refused(
            &server,
            b"POST /health HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n",
            413,
        );
        // With Expect: 100-continue the refusal comes instead of 100 Continue.
        let response = assert_refused(
            &server,
            b"POST /health HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\nExpect: 100-continue\r\n\r\n",
            413,
        );
        assert!(response.body.starts_with(b"413"));
        // A chunked body is refused as soon as it passes the limit.
        let mut raw =
            b"POST /health HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        for _ in 0..3 {
            raw.extend_from_slice(format!("190\r\n{}\r\n", "b".repeat(400)).as_bytes());
        }
        assert_refused(&server, &raw, 413);
    }
}

#[test]
fn acceptable_body_with_expect_continue_gets_100_then_the_answer() {
    for server in servers(TIGHT) {
        let mut stream = server.connect();
        stream
            .write_all(b"POST /health HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
            .unwrap();
        let interim = read_response(&mut stream).unwrap();
        assert_eq!(interim.status, 100);
        stream.write_all(b"hello").unwrap();
        let response = read_response(&mut stream).unwrap();
        assert_eq!(response.status, 405);
        assert_eq!(response.header("allow"), Some("GET, HEAD"));
    }
}

#[test]
fn slowloris_head_gets_408_then_close() {
    for server in servers(TIGHT) {
        let started = Instant::now();
        let mut stream = server.connect();
        stream.write_all(b"GET /health HTTP/1.1\r\nHo").unwrap();
        let response = read_response(&mut stream).unwrap();
        assert_eq!(response.status, 408);
        assert!(is_closed(&mut stream));
        assert!(started.elapsed() >= Duration::from_millis(900));
        // A client that connects and sends nothing is timed out too.
        let mut silent = server.connect();
        assert_eq!(read_response(&mut silent).unwrap().status, 408);
    }
}

#[test]
fn slow_body_gets_408_then_close() {
    for server in servers(TIGHT) {
        let mut stream = server.connect();
        stream
            .write_all(b"POST /health HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc")
            .unwrap();
        let response = read_response(&mut stream).unwrap();
        assert_eq!(response.status, 408);
        assert!(is_closed(&mut stream));
    }
}

#[test]
fn minimum_upload_rate_is_enforced_after_its_grace_period() {
    let config = TIGHT
        .replace("upload_timeout = \"2s\"", "upload_timeout = \"60s\"")
        .replace(
            "min_upload_rate = 0",
            "min_upload_rate = 1000\nmin_upload_rate_after = \"1s\"",
        );
    for server in servers(&config) {
        let started = Instant::now();
        let mut stream = server.connect();
        stream
            .write_all(b"POST /health HTTP/1.1\r\nHost: x\r\nContent-Length: 900\r\n\r\n")
            .unwrap();
        // 10 bytes every 200 ms is 50 B/s, far below 1000 B/s.
        let response = loop {
            if stream.write_all(&[b'x'; 10]).is_err() {
                break read_response(&mut stream);
            }
            stream
                .set_read_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            let mut probe = [0u8; 1];
            if let Ok(n) = stream.peek(&mut probe) {
                stream.set_read_timeout(Some(PATIENCE)).unwrap();
                assert!(n > 0, "closed without an answer");
                break read_response(&mut stream);
            }
            assert!(started.elapsed() < PATIENCE, "never refused");
        };
        assert_eq!(response.unwrap().status, 408);
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}

#[test]
fn idle_keepalive_connection_is_closed_silently() {
    for server in servers(TIGHT) {
        let mut stream = server.connect();
        stream
            .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        assert_eq!(read_response(&mut stream).unwrap().status, 200);
        let idle = Instant::now();
        assert!(is_closed(&mut stream), "no close after keepalive_timeout");
        assert!(idle.elapsed() >= Duration::from_millis(900));
    }
}

#[test]
fn slow_reader_is_cut_off_by_send_timeout() {
    let body = "x".repeat(8 * 1024 * 1024);
    let config = TIGHT.replace("body = \"BIG\"", &format!("body = \"{body}\""));
    for server in servers(&config) {
        let mut stream = server.connect();
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        // Pipelined requests so the server has far more to send than the socket buffers hold.
        stream
            .write_all(&b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n".repeat(4))
            .unwrap();
        sleep(Duration::from_secs(3));
        let mut received = 0usize;
        let mut chunk = vec![0u8; 1 << 20];
        loop {
            match std::io::Read::read(&mut stream, &mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => received += n,
            }
        }
        assert!(
            received < 4 * body.len(),
            "the server kept sending to a reader that stalled past send_timeout"
        );
    }
}

#[test]
fn max_connections_answers_503_with_retry_after() {
    let config = format!("{TIGHT}\n").replace("[limits]", "[limits]\nmax_connections = 2");
    for server in servers(&config) {
        let held: Vec<_> = (0..2).map(|_| server.connect()).collect();
        // Make sure both are accepted before the third arrives.
        sleep(Duration::from_millis(200));
        let mut third = server.connect();
        third
            .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let response = read_response(&mut third).unwrap();
        assert_eq!(response.status, 503);
        assert!(response.header("retry-after").is_some());
        drop(held);
        // Once the others leave, connections are admitted again.
        let deadline = Instant::now() + PATIENCE;
        loop {
            let response = server.request(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
            if response.status == 200 {
                break;
            }
            assert!(Instant::now() < deadline, "slots never released");
            sleep(Duration::from_millis(50));
        }
    }
}

#[test]
fn slowloris_crowd_does_not_stop_a_normal_client() {
    for server in servers(&TIGHT.replace("header_timeout = \"1s\"", "header_timeout = \"30s\"")) {
        let crowd: Vec<_> = (0..200)
            .map(|_| {
                let mut s = server.connect();
                s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                    .unwrap();
                s
            })
            .collect();
        let started = Instant::now();
        let response = server.request(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(response.status, 200);
        assert!(started.elapsed() < Duration::from_secs(5));
        drop(crowd);
    }
}

#[test]
fn a_bad_request_never_takes_the_worker_down() {
    for server in servers(TIGHT) {
        for garbage in [
            &b"\x00\x01\x02\xff\r\n\r\n"[..],
            b"GET\r\n\r\n",
            b"\r\n\r\n\r\n",
        ] {
            let mut stream = server.connect();
            stream.write_all(garbage).unwrap();
            let _ = read_response(&mut stream);
        }
        let response = server.request(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(response.status, 200);
    }
}
