//! The access log against the real binary on both drivers: one JSON line per request with
//! every field checked (status, the bytes the client received, the route, a refusal, a 404,
//! a pipelined pair, a WebSocket upgrade, a file); nginx's `combined` format on stdout; the
//! file reopened on SIGUSR1 after it was moved away; a proxied request logged with the request
//! id its app received; one line per WebSocket session at its end (messages and bytes each
//! way, the close code and who closed), on a route and through a proxy route's tunnel.
#![allow(clippy::unwrap_used, reason = "tests")]

mod support;

use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use support::upstream::{RawUpstream, record_headers};
use support::ws::{TEXT, close_frame, connect_to, expect_close, frame, read_frame};
use support::{DRIVERS, PATIENCE, Server, TempFile};

fn config(log: &str, format: &str, files: &Path) -> String {
    format!(
        r#"access_log = "{log}"
access_log_format = "{format}"

[limits]
max_body_size = "1KiB"

[[routes]]
path = "/health"
kind = "health"

[[routes]]
path = "/text"
kind = "static_text"
body = "hello"

[[routes]]
path = "/files/"
kind = "files"
root = "{}"

[[routes]]
path = "/ws/echo"
kind = "echo"

[[routes]]
path = "/ws/quiet"
kind = "echo"
[routes.limits]
timeout = "1s"
"#,
        files.display()
    )
}

/// A directory holding `a.txt` (11 bytes), removed when dropped.
struct Files(std::path::PathBuf);

impl Files {
    fn new() -> Self {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("ringstream-access-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("a.txt"), b"hello files").unwrap();
        Self(dir)
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Sends `raw` on a fresh connection and reads until the server closes: every byte it sent.
fn exchange(server: &Server, raw: &[u8]) -> Vec<u8> {
    let mut stream = server.connect();
    stream.write_all(raw).unwrap();
    let mut all = Vec::new();
    stream.read_to_end(&mut all).unwrap();
    all
}

/// The file's lines once it holds at least `count` of them.
fn lines(path: &Path, count: usize) -> Vec<String> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(str::to_owned).collect();
        if lines.len() >= count {
            return lines;
        }
        assert!(
            Instant::now() < deadline,
            "{} lines, not {count}: {text}",
            lines.len()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn json(line: &str) -> serde_json::Value {
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"))
}

#[test]
fn every_request_gets_one_json_line_with_its_status_and_bytes() {
    let files = Files::new();
    for driver in DRIVERS {
        let log = TempFile::new("log", b"");
        let toml = config(log.path.to_str().unwrap(), "json", &files.0);
        let server = Server::with_config(&toml, &["--workers", "2", "--io-driver", driver]);
        let text = exchange(
            &server,
            b"GET /text?x=1 HTTP/1.1\r\nHost: h\r\nUser-Agent: tester \"1\"\r\n\
              Referer: http://r.example/\r\nConnection: close\r\n\r\n",
        );
        let missing = exchange(
            &server,
            b"GET /nothing HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
        );
        let refused = exchange(
            &server,
            b"POST /text HTTP/1.1\r\nHost: h\r\nContent-Length: 5000\r\n\r\n",
        );
        let pipelined = exchange(
            &server,
            b"GET /health HTTP/1.1\r\nHost: h\r\n\r\nGET /files/a.txt HTTP/1.0\r\nHost: h\r\n\r\n",
        );
        let (ws, answer) = connect_to(server.addr, "/ws/echo", "");
        assert_eq!(answer.status, 101, "{driver}");
        drop(ws);

        let lines = lines(&log.path, 6);
        let mut by_target: Vec<serde_json::Value> = lines.iter().map(|l| json(l)).collect();
        by_target.sort_by_key(|l| l["target"].as_str().unwrap().to_owned());
        let find = |target: &str| {
            by_target
                .iter()
                .find(|l| l["target"] == target)
                .unwrap_or_else(|| panic!("{driver}: no line for {target}: {lines:?}"))
        };
        let first = find("/text?x=1");
        assert_eq!(first["client"], "127.0.0.1", "{driver}");
        assert_eq!(first["method"], "GET", "{driver}");
        assert_eq!(first["version"], "HTTP/1.1", "{driver}");
        assert_eq!(first["status"], 200, "{driver}");
        assert_eq!(
            first["bytes"],
            text.len(),
            "{driver}: the bytes the client got"
        );
        assert_eq!(first["user_agent"], "tester \"1\"", "{driver}");
        assert_eq!(first["referer"], "http://r.example/", "{driver}");
        assert_eq!(first["route"], "/text", "{driver}");
        assert_eq!(first["request_id"], "", "{driver}");
        assert!(first["duration_ms"].as_f64().unwrap() >= 0.0, "{driver}");
        assert!(first["time"].as_str().unwrap().ends_with('Z'), "{driver}");
        let missing_line = find("/nothing");
        assert_eq!(missing_line["status"], 404, "{driver}");
        assert_eq!(missing_line["bytes"], missing.len(), "{driver}");
        assert_eq!(missing_line["route"], "", "{driver}");
        let refused_line = by_target.iter().find(|l| l["method"] == "POST").unwrap();
        assert_eq!(refused_line["status"], 413, "{driver}");
        assert_eq!(refused_line["bytes"], refused.len(), "{driver}");
        let health = find("/health");
        let file = find("/files/a.txt");
        assert_eq!(
            (health["status"].clone(), file["status"].clone()),
            (200.into(), 200.into())
        );
        assert_eq!(file["version"], "HTTP/1.0", "{driver}");
        assert_eq!(
            health["bytes"].as_u64().unwrap() + file["bytes"].as_u64().unwrap(),
            pipelined.len() as u64,
            "{driver}: the two answers' bytes are the connection's"
        );
        let upgrade = find("/ws/echo");
        assert_eq!(upgrade["status"], 101, "{driver}");
        assert!(upgrade["bytes"].as_u64().unwrap() > 0, "{driver}");
        // Dropped without a close frame: the client ended it, with no code.
        assert_eq!(
            upgrade["websocket"],
            serde_json::json!({"messages_in": 0, "bytes_in": 0, "messages_out": 0,
                "bytes_out": 0, "close_code": null, "closed_by": "client"}),
            "{driver}"
        );
    }
}

#[test]
fn combined_lines_go_to_stdout() {
    let files = Files::new();
    for driver in DRIVERS {
        let toml = config("stdout", "combined", &files.0);
        let mut server = Server::with_config(&toml, &["--io-driver", driver]);
        let got = exchange(
            &server,
            b"GET /text HTTP/1.1\r\nHost: h\r\nUser-Agent: curl/8\r\nConnection: close\r\n\r\n",
        );
        let line = server.stdout_line();
        let (start, rest) = line.split_once(" [").unwrap();
        assert_eq!(start, "127.0.0.1 - -", "{driver}: {line}");
        let (time, rest) = rest.split_once("] ").unwrap();
        assert!(
            time.ends_with(" +0000") && time.len() == 26,
            "{driver}: {line}"
        );
        let expected = format!(
            "\"GET /text HTTP/1.1\" 200 {} \"-\" \"curl/8\" rt=",
            got.len()
        );
        assert!(rest.starts_with(&expected), "{driver}: {line}");
        assert!(rest.ends_with(" id=- route=/text"), "{driver}: {line}");

        // A session's line, at its end: 2 messages and a close in (8 + 8 + 8 bytes), 2 echoes
        // out (4 + 4 bytes), closed by the client with 1000.
        let (mut ws, answer) = connect_to(server.addr, "/ws/echo", "User-Agent: ws-test\r\n");
        assert_eq!(answer.status, 101, "{driver}");
        for message in [&b"hi"[..], b"yo"] {
            ws.write_all(&frame(true, 0, TEXT, message)).unwrap();
            assert_eq!(read_frame(&mut ws).unwrap().payload, message, "{driver}");
        }
        ws.write_all(&close_frame(1000, "")).unwrap();
        assert_eq!(expect_close(&mut ws).0, 1000, "{driver}");
        let line = server.stdout_line();
        assert!(
            line.contains("\"GET /ws/echo HTTP/1.1\" 101 ") && line.contains("\"ws-test\" rt="),
            "{driver}: {line}"
        );
        assert!(
            line.ends_with(" route=/ws/echo ws_in=3/24 ws_out=2/8 close=1000 closed_by=client"),
            "{driver}: {line}"
        );
        let bytes: u64 = line
            .split(" 101 ")
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let head: usize = "HTTP/1.1 101 Switching Protocols\r\n\r\n".len()
            + answer
                .headers
                .iter()
                .map(|(name, value)| name.len() + value.len() + 4)
                .sum::<usize>();
        assert_eq!(
            bytes,
            head as u64 + 8,
            "{driver}: the 101 and the echoes: {line}"
        );
    }
}

/// Upgrades on `path`, has `message` echoed, waits for the idle timeout's close and answers it.
fn echo_once_then_idle(addr: std::net::SocketAddr, path: &str, message: &[u8]) {
    let (mut ws, _) = connect_to(addr, path, "");
    ws.write_all(&frame(true, 0, TEXT, message)).unwrap();
    assert_eq!(read_frame(&mut ws).unwrap().payload, message);
    assert_eq!(expect_close(&mut ws), (1000, "idle timeout".to_owned()));
    ws.write_all(&close_frame(1000, "")).unwrap();
}

#[test]
fn a_websocket_session_is_logged_at_its_end_with_who_closed_it() {
    let files = Files::new();
    for driver in DRIVERS {
        let log = TempFile::new("log", b"");
        let toml = config(log.path.to_str().unwrap(), "json", &files.0);
        let server = Server::with_config(&toml, &["--io-driver", driver]);
        // The idle timeout: ringstream closes with 1000.
        echo_once_then_idle(server.addr, "/ws/quiet", b"once");
        let line = json(&lines(&log.path, 1)[0]);
        assert_eq!(
            (
                line["target"].clone(),
                line["status"].clone(),
                line["route"].clone()
            ),
            ("/ws/quiet".into(), 101.into(), "/ws/quiet".into()),
            "{driver}"
        );
        assert_eq!(
            line["websocket"],
            serde_json::json!({"messages_in": 1, "bytes_in": 10, "messages_out": 1,
                "bytes_out": 6, "close_code": 1000, "closed_by": "server"}),
            "{driver}"
        );
        assert!(
            line["duration_ms"].as_f64().unwrap() >= 1000.0,
            "{driver}: {line}"
        );
    }
}

#[test]
fn a_tunnels_session_is_logged_with_the_upstreams_close() {
    for driver in DRIVERS {
        // The app (a second ringstream's echo route) closes idle sessions after 1 s.
        let app = Server::with_config(
            "[[routes]]\npath = \"/ws/echo\"\nkind = \"echo\"\n[routes.limits]\ntimeout = \"1s\"\n",
            &["--io-driver", driver],
        );
        let log = TempFile::new("log", b"");
        let toml = format!(
            "access_log = \"{}\"\naccess_log_format = \"json\"\n\n[[routes]]\npath = \"/ws/\"\n\
             kind = \"proxy\"\nupstreams = [\"{}\"]\n",
            log.path.display(),
            app.addr
        );
        let proxy = Server::with_config(&toml, &["--io-driver", driver]);
        echo_once_then_idle(proxy.addr, "/ws/echo", b"abc");
        let line = json(&lines(&log.path, 1)[0]);
        assert_eq!(line["status"], 101, "{driver}");
        // In: the message and the close answer; out: the echo (5 bytes) and the app's close
        // frame (2 + 2 + 12 bytes).
        assert_eq!(
            line["websocket"],
            serde_json::json!({"messages_in": 2, "bytes_in": 17, "messages_out": 1,
                "bytes_out": 21, "close_code": 1000, "closed_by": "upstream"}),
            "{driver}"
        );
    }
}

#[test]
fn sigusr1_reopens_the_file_logrotate_moved_away() {
    let files = Files::new();
    for driver in DRIVERS {
        let log = TempFile::new("log", b"");
        let moved = TempFile::new("log-1", b"");
        let toml = config(log.path.to_str().unwrap(), "combined", &files.0);
        let server = Server::with_config(&toml, &["--io-driver", driver]);
        let get = |path: &str| {
            exchange(
                &server,
                format!("GET {path} HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n").as_bytes(),
            )
        };
        get("/health?before");
        lines(&log.path, 1);
        std::fs::rename(&log.path, &moved.path).unwrap();
        server.signal(libc::SIGUSR1);
        // The signal is taken by the main thread; the writer reopens before its next write.
        std::thread::sleep(Duration::from_millis(200));
        get("/health?after");
        let after = lines(&log.path, 1);
        assert_eq!(after.len(), 1, "{driver}: {after:?}");
        assert!(
            after[0].contains("GET /health?after "),
            "{driver}: {after:?}"
        );
        let before = std::fs::read_to_string(&moved.path).unwrap();
        assert!(before.contains("GET /health?before "), "{driver}: {before}");
        assert!(!before.contains("after"), "{driver}: {before}");
    }
}

#[test]
fn a_proxied_request_is_logged_with_the_request_id_the_app_received() {
    let upstream = RawUpstream::start("record");
    for driver in DRIVERS {
        let log = TempFile::new("log", b"");
        let toml = format!(
            "access_log = \"{}\"\naccess_log_format = \"json\"\n\n[[routes]]\npath = \"/api/\"\n\
             kind = \"proxy\"\nupstreams = [\"{}\"]\n",
            log.path.display(),
            upstream.addr()
        );
        let server = Server::with_config(&toml, &["--io-driver", driver]);
        let before = upstream.requests().len();
        let got = exchange(
            &server,
            b"GET /api/items HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
        );
        let line = json(&lines(&log.path, 1)[0]);
        let records = upstream
            .wait_for_records(|r| r.iter().filter(|r| r.get("method").is_some()).count() > before);
        let asked = records
            .iter()
            .filter(|r| r.get("method").is_some())
            .nth(before)
            .unwrap();
        let sent_id = record_headers(asked)
            .into_iter()
            .find(|(name, _)| name.eq_ignore_ascii_case("x-request-id"))
            .map(|(_, value)| value)
            .unwrap();
        assert_eq!(line["request_id"], sent_id.as_str(), "{driver}");
        assert_eq!(sent_id.len(), 32, "{driver}");
        assert_eq!(
            (line["status"].clone(), line["route"].clone()),
            (200.into(), "/api/".into()),
            "{driver}"
        );
        assert_eq!(line["bytes"], got.len(), "{driver}");
    }
}
