//! `examples/fastapi` end to end on both drivers: the example's FastAPI app on uvicorn, and the
//! real binary on the example's own `ringstream.toml` (only its addresses and paths
//! rewritten): the API through the proxy, the app's auth hook deciding who joins which news
//! topic and who may send telemetry, an announcement from the app reaching a member through
//! `/publish`, a download, `/health` and `/stats`.
#![allow(clippy::unwrap_used, reason = "tests")]

mod support;

use std::io::Write;
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use support::http_framing::read_any_response;
use support::upstream::{Uvicorn, free_port, repo_root};
use support::ws::{TEXT, connect_to, expect_close, frame, read_frame, upgrade_request};
use support::{DRIVERS, PATIENCE, Response, Server, TempFile, read_response};

const ALICE: &str = "alice-token";
const BOB: &str = "bob-token";
const EVE: &str = "eve-token";

fn example_dir() -> PathBuf {
    repo_root().join("examples/fastapi")
}

/// Replaces `from` (which must occur) by `to` in `text`.
fn rewrite(text: &str, from: &str, to: &str) -> String {
    assert!(
        text.contains(from),
        "examples/fastapi/ringstream.toml no longer holds {from:?}: update this test"
    );
    text.replace(from, to)
}

/// The example's config with the app on `app_port`, the files root as an absolute path and
/// the telemetry file at `sink`.
fn config(app_port: u16, sink: &TempFile) -> String {
    let text = std::fs::read_to_string(example_dir().join("ringstream.toml")).unwrap();
    let text = rewrite(&text, "127.0.0.1:8000", &format!("127.0.0.1:{app_port}"));
    // Replaced anyway by the helpers' --listen 127.0.0.1:0; loopback all the same.
    let text = rewrite(
        &text,
        "listen = \"0.0.0.0:8080\"",
        "listen = \"127.0.0.1:0\"",
    );
    let public = example_dir().join("public");
    let text = rewrite(
        &text,
        "root = \"public\"",
        &format!("root = \"{}\"", public.display()),
    );
    rewrite(
        &text,
        "sink_file = \"telemetry.jsonl\"",
        &format!("sink_file = \"{}\"", sink.path.display()),
    )
}

/// ringstream on the example's config, then the example app on the port that config names,
/// told where ringstream listens (for `/api/announce`). Tried again on another port when
/// uvicorn cannot take the one picked.
fn start(driver: &str, sink: &TempFile) -> (Server, Uvicorn) {
    let mut failures = Vec::new();
    for _ in 0..3 {
        let port = free_port();
        let server = Server::with_config(
            &config(port, sink),
            &["--workers", "2", "--io-driver", driver],
        );
        let url = format!("http://{}", server.addr);
        match Uvicorn::start_app(&example_dir(), "app:app", port, &[("RINGSTREAM_URL", &url)]) {
            Ok(app) => return (server, app),
            Err(why) => failures.push(why),
        }
    }
    panic!("the example app did not start:\n{}", failures.join("\n"));
}

/// One request on a fresh connection, with an optional bearer token and JSON body; the whole
/// response, any framing.
fn ask(server: &Server, method: &str, path: &str, token: Option<&str>, json: &str) -> Response {
    let authorization = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let body = if json.is_empty() {
        String::new()
    } else {
        format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            json.len()
        )
    };
    let mut stream = server.connect();
    let raw = format!(
        "{method} {path} HTTP/1.1\r\nHost: app.example\r\n{authorization}{body}Connection: close\r\n\r\n{json}"
    );
    stream.write_all(raw.as_bytes()).unwrap();
    read_any_response(&mut stream).expect("a response")
}

fn json(response: &Response) -> serde_json::Value {
    serde_json::from_slice(&response.body).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {} {:?}",
            response.status,
            String::from_utf8_lossy(&response.body)
        )
    })
}

/// The answer to a WebSocket upgrade on `path` with `token`.
fn upgrade_status(server: &Server, path: &str, token: Option<&str>) -> Response {
    let authorization = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let mut stream = server.connect();
    stream
        .write_all(&upgrade_request(path, &authorization))
        .unwrap();
    read_response(&mut stream).expect("an answer to the upgrade")
}

/// A member of `/stream/news/{topic}` with `token`.
fn join(server: &Server, topic: &str, token: &str) -> TcpStream {
    connect_to(
        server.addr,
        &format!("/stream/news/{topic}"),
        &format!("Authorization: Bearer {token}\r\n"),
    )
    .0
}

/// The next text message on `member`, skipping pings.
fn next_text(member: &mut TcpStream) -> String {
    loop {
        let frame = read_frame(member).expect("a message");
        if frame.opcode == TEXT {
            return String::from_utf8(frame.payload).unwrap();
        }
    }
}

#[test]
fn the_fastapi_example_runs_behind_ringstream() {
    let started = Instant::now();
    for driver in DRIVERS {
        let sink = TempFile::new("jsonl", b"");
        let (server, app) = start(driver, &sink);

        // The API, forwarded to the app; its own auth answers on its own routes.
        let items = ask(&server, "GET", "/api/items", None, "");
        assert_eq!(items.status, 200, "{driver}: {items:?}");
        assert_eq!(
            items.header("content-type"),
            Some("application/json"),
            "{driver}"
        );
        assert!(
            json(&items).as_array().is_some_and(|a| !a.is_empty()),
            "{driver}"
        );
        let me = ask(&server, "GET", "/api/me", Some(ALICE), "");
        assert_eq!(me.status, 200, "{driver}: {me:?}");
        let me = json(&me);
        assert_eq!(me["user"], "alice", "{driver}");
        assert_eq!(
            me["topics"],
            serde_json::json!(["world", "tech"]),
            "{driver}"
        );
        assert_eq!(
            me["client"], "127.0.0.1",
            "{driver}: the app sees the client ringstream accepted"
        );
        assert!(me["request_id"].is_string(), "{driver}: {me}");
        let anonymous = ask(&server, "GET", "/api/me", None, "");
        assert_eq!(
            (anonymous.status, anonymous.header("www-authenticate")),
            (401, Some("Bearer")),
            "{driver}"
        );
        let created = ask(
            &server,
            "POST",
            "/api/items",
            Some(BOB),
            r#"{"name":"cable","price":4.5}"#,
        );
        assert_eq!(created.status, 201, "{driver}: {created:?}");
        assert_eq!(json(&created)["owner"], "bob", "{driver}");
        let too_big = format!(r#"{{"name":"{}","price":1}}"#, "x".repeat(70 * 1024));
        assert_eq!(
            ask(&server, "POST", "/api/items", Some(BOB), &too_big).status,
            413,
            "{driver}: max_body_size refuses before the app sees a byte"
        );

        // The news streams: the app's /auth decides who joins which topic.
        let mut alice = join(&server, "world", ALICE);
        for (topic, token, status) in [
            ("sports", Some(ALICE), 403),
            ("world", Some(BOB), 403),
            ("world", Some(EVE), 403),
            ("world", Some("nobody"), 401),
            ("world", None, 401),
        ] {
            let answer = upgrade_status(&server, &format!("/stream/news/{topic}"), token);
            assert_eq!(answer.status, status, "{driver}: {topic} with {token:?}");
            if status == 401 {
                assert_eq!(
                    answer.header("www-authenticate"),
                    Some("Bearer"),
                    "{driver}"
                );
            }
        }
        // An announcement through the API reaches the member through /publish.
        let announced = ask(
            &server,
            "POST",
            "/api/announce",
            Some(ALICE),
            r#"{"topic":"world","text":"hello, world"}"#,
        );
        assert_eq!(announced.status, 200, "{driver}: {announced:?}");
        let announced = json(&announced);
        assert_eq!(
            (&announced["topic"], &announced["subscribers"]),
            (&serde_json::json!("world"), &serde_json::json!(1)),
            "{driver}"
        );
        let message: serde_json::Value = serde_json::from_str(&next_text(&mut alice)).unwrap();
        assert_eq!(
            message,
            serde_json::json!({"from": "alice", "text": "hello, world"}),
            "{driver}"
        );
        assert_eq!(
            ask(
                &server,
                "POST",
                "/api/announce",
                Some(BOB),
                r#"{"topic":"world","text":"x"}"#
            )
            .status,
            403,
            "{driver}: the app refuses a topic the user may not use"
        );
        // A member may not exceed the route's message size: close 1009.
        alice
            .write_all(&frame(true, 0, TEXT, &vec![b'x'; 5 * 1024]))
            .unwrap();
        assert_eq!(expect_close(&mut alice).0, 1009, "{driver}");

        // Telemetry: the same hook, then one JSON line per message.
        assert_eq!(
            upgrade_status(&server, "/ws/telemetry", None).status,
            401,
            "{driver}"
        );
        let (mut telemetry, _) = connect_to(
            server.addr,
            "/ws/telemetry",
            &format!("Authorization: Bearer {BOB}\r\n"),
        );
        telemetry
            .write_all(&frame(true, 0, TEXT, br#"{"cpu":0.25}"#))
            .unwrap();
        let deadline = Instant::now() + PATIENCE;
        loop {
            let written = std::fs::read_to_string(&sink.path).unwrap();
            if let Some(line) = written.lines().next() {
                let line: serde_json::Value = serde_json::from_str(line).unwrap();
                assert_eq!(line["text"], r#"{"cpu":0.25}"#, "{driver}");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{driver}: no telemetry line written"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        drop(telemetry);

        // A download, byte for byte; /health; /stats (loopback).
        let download = ask(&server, "GET", "/downloads/sample.txt", None, "");
        assert_eq!(download.status, 200, "{driver}");
        assert_eq!(
            download.body,
            std::fs::read(example_dir().join("public/sample.txt")).unwrap(),
            "{driver}"
        );
        let health = ask(&server, "GET", "/health", None, "");
        assert_eq!(
            (health.status, health.body.as_slice()),
            (200, &b"ok"[..]),
            "{driver}"
        );
        let stats = ask(&server, "GET", "/stats", None, "");
        assert_eq!(stats.status, 200, "{driver}");
        json(&stats);
        assert!(
            !app.log().contains("Traceback"),
            "{driver}: the app failed:\n{}",
            app.log()
        );
    }
    println!("both drivers in {:?}", started.elapsed());
}
