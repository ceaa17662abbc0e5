//! The proxy tests' upstreams on their own, spoken to by hand over loopback: the Starlette app
//! on uvicorn (every endpoint the proxy tests use, over TCP and a Unix socket), and the raw
//! upstream in each of its modes.
#![allow(clippy::unwrap_used, reason = "tests")]

mod support;

use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use support::http_framing::{
    read_any_response, read_chunk, read_response_head, write_chunk, write_chunked,
};
use support::upstream::{RawUpstream, Uvicorn, big_body, record_headers, stream_body};
use support::{PATIENCE, is_closed};

fn sha256_hex(data: &[u8]) -> String {
    format!("{:x}", Sha256::digest(data))
}

fn json(body: &[u8]) -> serde_json::Value {
    serde_json::from_slice(body).unwrap()
}

#[test]
fn uvicorn_serves_every_endpoint_of_the_proxy_tests() {
    let upstream = Uvicorn::start();

    let hello = upstream.request(b"GET /api/hello HTTP/1.1\r\nHost: up\r\n\r\n");
    assert_eq!(hello.status, 200);
    assert_eq!(hello.body, b"hello");
    assert!(
        hello
            .header("content-type")
            .unwrap()
            .starts_with("text/plain")
    );

    // The request as uvicorn hands it to the app: names lowercased, order and repeats kept.
    let headers = upstream.request(
        b"GET /api/headers?a=1&b=%20 HTTP/1.1\r\nHost: up\r\nX-Custom: Value One\r\n\
          x-custom: two\r\nX-Latin: caf\xe9\r\n\r\n",
    );
    assert_eq!(headers.status, 200);
    let seen = json(&headers.body);
    assert_eq!(seen["method"], "GET");
    assert_eq!(seen["path"], "/api/headers");
    assert_eq!(seen["query"], "a=1&b=%20");
    assert_eq!(
        seen["headers"],
        serde_json::json!([
            ["host", "up"],
            ["x-custom", "Value One"],
            ["x-custom", "two"],
            ["x-latin", "caf\u{e9}"]
        ])
    );

    let stream = upstream
        .request(b"GET /api/stream?chunks=3&size=1000&delay=0.05 HTTP/1.1\r\nHost: up\r\n\r\n");
    assert_eq!(stream.status, 200);
    assert_eq!(stream.header("transfer-encoding"), Some("chunked"));
    assert_eq!(stream.body, stream_body(3, 1000));

    let big = upstream.request(b"GET /api/big?bytes=1000000 HTTP/1.1\r\nHost: up\r\n\r\n");
    assert_eq!(big.status, 200);
    assert_eq!(big.header("content-length"), Some("1000000"));
    assert_eq!(big.body, big_body(1_000_000));

    for code in [204, 304, 404, 418, 503] {
        let raw = format!("GET /api/status/{code} HTTP/1.1\r\nHost: up\r\n\r\n");
        let answer = upstream.request(raw.as_bytes());
        assert_eq!(answer.status, code);
        assert!(answer.body.is_empty());
    }

    let slow = upstream.request(b"GET /api/slow?seconds=0.1 HTTP/1.1\r\nHost: up\r\n\r\n");
    assert_eq!((slow.status, slow.body.as_slice()), (200, &b"slow"[..]));

    for (authorization, status, client) in [
        ("Bearer good-alice", 200, Some("user-good-alice")),
        ("Bearer forbidden-bob", 403, None),
        ("Bearer nobody", 401, None),
        ("Basic Z29vZDp4", 401, None),
    ] {
        let raw =
            format!("GET /auth HTTP/1.1\r\nHost: up\r\nAuthorization: {authorization}\r\n\r\n");
        let answer = upstream.request(raw.as_bytes());
        assert_eq!(answer.status, status, "{authorization}");
        assert_eq!(answer.header("x-client-id"), client);
    }
    assert_eq!(
        upstream
            .request(b"GET /auth HTTP/1.1\r\nHost: up\r\n\r\n")
            .status,
        401
    );
    assert_eq!(
        upstream
            .request(b"GET /auth/broken HTTP/1.1\r\nHost: up\r\n\r\n")
            .status,
        500
    );
}

#[test]
fn uvicorn_echoes_a_chunked_body_as_it_arrives_and_hashes_a_streamed_one() {
    let upstream = Uvicorn::start();
    let body: Vec<u8> = (0..1 << 20).map(|i: u32| (i * 7 % 256) as u8).collect();

    // The first chunk comes back before the rest of the body is sent.
    let mut stream = upstream.connect();
    stream
        .write_all(
            b"PUT /api/echo HTTP/1.1\r\nHost: up\r\nContent-Type: application/x-test\r\n\
              Transfer-Encoding: chunked\r\n\r\n",
        )
        .unwrap();
    write_chunk(&mut stream, b"first");
    let head = read_response_head(&mut stream).unwrap();
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-type"), Some("application/x-test"));
    assert_eq!(head.header("transfer-encoding"), Some("chunked"));
    assert_eq!(read_chunk(&mut stream).unwrap().unwrap(), b"first");

    // Then 1 MiB, written by another thread while this one reads the echo.
    let mut writer = stream.try_clone().unwrap();
    let sent = body.clone();
    let sender = std::thread::spawn(move || write_chunked(&mut writer, &sent, 64 * 1024));
    let mut echoed = Vec::new();
    while let Some(data) = read_chunk(&mut stream).unwrap() {
        echoed.extend_from_slice(&data);
    }
    sender.join().unwrap();
    assert!(echoed == body, "echo differs ({} bytes back)", echoed.len());

    // Without a content-type the echo says octet-stream; the same connection is kept.
    stream
        .write_all(b"POST /api/echo HTTP/1.1\r\nHost: up\r\nContent-Length: 3\r\n\r\nabc")
        .unwrap();
    let answer = read_any_response(&mut stream).unwrap();
    assert_eq!(answer.body, b"abc");
    assert_eq!(
        answer.header("content-type"),
        Some("application/octet-stream")
    );

    let mut raw = format!(
        "POST /api/sha256 HTTP/1.1\r\nHost: up\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    raw.extend_from_slice(&body);
    let mut writer = stream.try_clone().unwrap();
    let sender = std::thread::spawn(move || writer.write_all(&raw).unwrap());
    let answer = read_any_response(&mut stream).unwrap();
    sender.join().unwrap();
    assert_eq!(answer.status, 200);
    let digest = json(&answer.body);
    assert_eq!(digest["length"], body.len());
    assert_eq!(digest["sha256"], sha256_hex(&body));
}

#[test]
fn uvicorn_serves_on_a_unix_socket() {
    let path = std::env::temp_dir().join(format!("ringstream-uvicorn-{}.sock", std::process::id()));
    let upstream = Uvicorn::start_on_unix(&path);
    let mut stream = UnixStream::connect(&path).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    stream
        .write_all(b"GET /api/hello HTTP/1.1\r\nHost: up\r\nConnection: close\r\n\r\n")
        .unwrap();
    let answer = read_any_response(&mut stream).unwrap();
    assert_eq!(
        (answer.status, answer.body.as_slice()),
        (200, &b"hello"[..])
    );
    drop(upstream);
    assert!(!path.exists(), "socket file left behind");
}

#[test]
fn raw_upstream_records_keepalive_requests_and_refuses_ambiguous_framing() {
    let upstream = RawUpstream::start("record");
    let mut stream = upstream.connect();
    stream
        .write_all(b"POST /one?x=1 HTTP/1.1\r\nHost: up\r\nContent-Length: 5\r\nX-Case: MiXed\r\n\r\nhello")
        .unwrap();
    let first = read_any_response(&mut stream).unwrap();
    assert_eq!((first.status, first.body.as_slice()), (200, &b"ok"[..]));
    stream
        .write_all(
            b"PUT /two HTTP/1.1\r\nHost: up\r\nTransfer-Encoding: chunked\r\n\r\n\
              3\r\nabc\r\n4;ext=1\r\ndefg\r\n0\r\nX-Trailer: t\r\n\r\n",
        )
        .unwrap();
    let second = read_any_response(&mut stream).unwrap();
    assert_eq!((second.status, second.body.as_slice()), (200, &b"ok"[..]));

    let records = upstream.records();
    assert_eq!(records.len(), 3, "{records:?}");
    assert_eq!(records[0], serde_json::json!({"connection": 1}));
    let (one, two) = (&records[1], &records[2]);
    assert_eq!(
        (one["method"].as_str(), one["target"].as_str()),
        (Some("POST"), Some("/one?x=1"))
    );
    assert_eq!(
        record_headers(one),
        [("Host", "up"), ("Content-Length", "5"), ("X-Case", "MiXed")]
            .map(|(n, v)| (n.to_owned(), v.to_owned()))
    );
    assert_eq!(one["body_len"], 5);
    assert_eq!(one["body_sha256"], sha256_hex(b"hello"));
    assert_eq!(
        (two["method"].as_str(), two["target"].as_str()),
        (Some("PUT"), Some("/two"))
    );
    assert_eq!(two["body_len"], 7);
    assert_eq!(two["body_sha256"], sha256_hex(b"abcdefg"));
    assert_eq!(two["trailers"], serde_json::json!([["X-Trailer", "t"]]));

    // Each ambiguous request is logged as a desync and its connection closed unanswered.
    let ambiguous: [(&[u8], &str); 6] = [
        (b"POST / HTTP/1.1\r\nHost: up\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx", "two Content-Length"),
        (b"POST / HTTP/1.1\r\nHost: up\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "Content-Length with Transfer-Encoding"),
        (b"POST / HTTP/1.1\r\nHost: up\r\nTransfer-Encoding: chunked, identity\r\n\r\n", "Transfer-Encoding not ending in chunked"),
        (b"GET / HTTP/1.1\r\nHost: up\r\nX-Folded: a\r\n b\r\n\r\n", "obs-fold"),
        (b"GET / HTTP/1.1\nHost: up\r\n\r\n", "bare LF"),
        (b"POST / HTTP/1.1\r\nHost: up\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n0\r\n\r\n", "chunk data not followed by CRLF"),
    ];
    for (raw, why) in ambiguous {
        let mut stream = upstream.connect();
        stream.write_all(raw).unwrap();
        assert!(is_closed(&mut stream), "left open after {why}");
        let desyncs = upstream.desyncs();
        let last = desyncs.last().unwrap();
        assert!(last.starts_with(why), "{last:?} for {why}");
    }
    assert_eq!(upstream.requests().len(), 2);
    assert_eq!(upstream.connections(), 7);
}

#[test]
fn raw_upstream_resets() {
    let upstream = RawUpstream::start("reset");
    let mut stream = upstream.connect();
    let mut byte = [0u8; 1];
    let err = stream.read(&mut byte).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionReset);
}

#[test]
fn raw_upstream_answers_garbage_or_a_truncated_body() {
    for (mode, answer) in [
        ("garbage", &b"NOT HTTP AT ALL\r\n\r\n"[..]),
        (
            "truncated",
            b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789",
        ),
    ] {
        let upstream = RawUpstream::start(mode);
        let mut stream = upstream.connect();
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: up\r\n\r\n")
            .unwrap();
        let mut got = Vec::new();
        stream.read_to_end(&mut got).unwrap();
        assert_eq!(got, answer, "{mode}");
    }
}

#[test]
fn raw_upstream_stays_silent() {
    let upstream = RawUpstream::start("silent");
    let mut stream = upstream.connect();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: up\r\n\r\n")
        .unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut byte = [0u8; 1];
    let err = stream.read(&mut byte).unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        "{err}"
    );
}

#[test]
fn raw_upstream_closes_idle_connections_after_200_ms() {
    let upstream = RawUpstream::start("close-idle");
    let mut stream = upstream.connect();
    for _ in 0..2 {
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: up\r\n\r\n")
            .unwrap();
        assert_eq!(read_any_response(&mut stream).unwrap().body, b"ok");
    }
    let answered = Instant::now();
    assert!(is_closed(&mut stream));
    let idle = answered.elapsed();
    assert!(idle >= Duration::from_millis(150), "closed after {idle:?}");
    assert_eq!(upstream.connections(), 1);
    assert_eq!(upstream.requests().len(), 2);
}
