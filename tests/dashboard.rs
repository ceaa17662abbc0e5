//! The dashboard route on both drivers: the page and its headers, its data below it (the
//! `/stats` document with connections per worker, the top clients and the transfers in
//! progress), 403 to clients outside `allowed_clients`; and the page itself in headless
//! Chromium, driven by `tests/dashboard/check.mjs` (playwright-core): it renders, its numbers
//! move under load, and it logs no error.
//!
//! The browser test needs Debian's Chromium and the node module of `tests/dashboard`
//! (`bash tests/dashboard/install.sh`); like the proxy tests without their Python, it fails
//! when they are missing and says what to install, it never skips.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use support::files::Tree;
use support::ws::{self, TEXT, frame, read_frame};
use support::{DRIVERS, PATIENCE, Server};

/// A large file, sent at 64 KiB/s: a download stays in progress for the whole test.
const BIG: usize = 4 * 1024 * 1024;

/// A server on `driver` with every client limited (so loopback clients are in the per-client
/// table), a request and a message budget, the routes of the per-client tests, the dashboard
/// at `/dashboard` and one only `10.0.0.0/8` may read, an upload route and a slow files route.
fn server(tree: &Tree, driver: &str) -> Server {
    std::fs::create_dir_all(tree.0.join("up")).unwrap();
    let routes = format!(
        r#"
[[routes]]
path = "/dashboard"
kind = "dashboard"

[[routes]]
path = "/private"
kind = "dashboard"
allowed_clients = ["10.0.0.0/8"]

[[routes]]
path = "/upload/"
kind = "upload"
upload_dir = "{}"

[[routes]]
path = "/files/"
kind = "files"
root = "{}"
[routes.limits]
rate_limit_bandwidth = "64KiB"
"#,
        tree.0.join("up").display(),
        tree.root().display()
    );
    let limits = "exempt = []\nrate_limit_requests = 600\nclient_messages_per_minute = 60000";
    let config = support::clients::config(limits, &routes);
    Server::with_config(&config, &["--workers", "2", "--io-driver", driver])
}

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").into_bytes()
}

/// Starts a download of the big file that the client does not read: it stays in progress.
fn slow_download(server: &Server) -> TcpStream {
    let mut stream = server.connect();
    stream
        .write_all(b"GET /files/big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    stream
}

/// The `/dashboard/stats` document.
fn dashboard_stats(server: &Server) -> serde_json::Value {
    let response = server.request(&get("/dashboard/stats"));
    assert_eq!(response.status, 200);
    serde_json::from_slice(&response.body).unwrap()
}

#[test]
fn the_page_and_its_data_answer_allowed_clients_only() {
    for driver in DRIVERS {
        let tree = Tree::new(&format!("dashboard-{driver}"));
        tree.file("big.bin", BIG);
        let server = server(&tree, driver);
        let page = server.request(&get("/dashboard"));
        assert_eq!(page.status, 200, "{driver}");
        assert_eq!(
            page.header("content-type"),
            Some("text/html; charset=utf-8")
        );
        assert_eq!(page.header("cache-control"), Some("no-store"));
        assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
        let policy = page.header("content-security-policy").unwrap();
        assert!(policy.starts_with("default-src 'none'; script-src 'sha256-"));
        assert!(policy.contains("; connect-src 'self';"), "{policy}");
        let html = String::from_utf8(page.body).unwrap();
        assert!(html.contains("<title>ringstream dashboard</title>"));
        assert!(!html.contains("http://") && !html.contains("https://"));
        assert_eq!(server.request(&get("/dashboard/")).status, 200);
        assert_eq!(server.request(&get("/dashboard/other")).status, 404);
        let post = b"POST /dashboard HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
        assert_eq!(server.request(post).status, 405);
        for path in ["/private", "/private/stats"] {
            assert_eq!(server.request(&get(path)).status, 403, "{driver} {path}");
        }

        let mut echo = ws::connect(&server, "/ws/echo");
        echo.write_all(&frame(true, 0, TEXT, b"hi")).unwrap();
        assert_eq!(read_frame(&mut echo).unwrap().payload, b"hi");
        let _download = slow_download(&server);
        let mut uploading = server.connect();
        uploading
            .write_all(
                b"PUT /upload/part.bin HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n",
            )
            .unwrap();
        uploading.write_all(&[7; 1000]).unwrap();
        let deadline = Instant::now() + PATIENCE;
        let stats = loop {
            let stats = dashboard_stats(&server);
            // The top clients are a report shared by readers for up to a second.
            let top = &stats["top_clients"];
            let uploaded = stats["transfers"]["list"]
                .as_array()
                .is_some_and(|list| list.iter().any(|t| t["bytes"] == 1000));
            if stats["transfers"]["in_progress"] == 2
                && uploaded
                && stats["totals"]["messages_in"] == 1
                && top["by_connections"][0]["connections"].as_u64() >= Some(4)
                && top["by_rate"][0]["client"] == "127.0.0.1"
            {
                break stats;
            }
            assert!(Instant::now() < deadline, "{driver}: {stats}");
            thread::sleep(Duration::from_millis(20));
        };
        let per_worker = stats["connections_per_worker"].as_array().unwrap();
        assert_eq!(per_worker.len(), 2, "{stats}");
        let open: u64 = per_worker.iter().map(|n| n.as_u64().unwrap()).sum();
        assert!(
            open >= 4,
            "the echo, the download, the upload and this request: {stats}"
        );
        let top = &stats["top_clients"];
        assert_eq!(
            top["budgets"],
            serde_json::json!([
                {"name": "requests", "burst": 600},
                {"name": "messages", "burst": 60000}
            ])
        );
        assert_eq!(top["by_connections"][0]["client"], "127.0.0.1", "{stats}");
        assert_eq!(top["by_rate"][0]["client"], "127.0.0.1", "{stats}");
        let transfers = stats["transfers"]["list"].as_array().unwrap();
        let download = transfers.iter().find(|t| t["direction"] == "download");
        let download = download.expect("the download is listed");
        assert_eq!(download["route"], "/files/");
        assert_eq!(download["name"], "big.bin");
        assert_eq!(download["client"], "127.0.0.1");
        assert_eq!(download["size"], BIG as u64);
        assert!(download["bytes"].as_u64().unwrap() < BIG as u64, "{stats}");
        let upload = transfers.iter().find(|t| t["direction"] == "upload");
        let upload = upload.expect("the upload is listed");
        assert_eq!(upload["route"], "/upload/");
        assert_eq!(upload["name"], "part.bin");
        assert_eq!(
            (upload["bytes"].as_u64(), upload["size"].as_u64()),
            (Some(1000), Some(1_000_000))
        );
        // The old fields are all still there.
        for field in [
            "connections",
            "clients",
            "totals",
            "http_refusals",
            "violations",
        ] {
            assert!(stats.get(field).is_some(), "{field}: {stats}");
        }
    }
}

/// Echo traffic on `count` WebSockets, a message on each every 20 ms, until `stop`.
fn echo_load(server: &Server, count: usize, stop: Arc<AtomicBool>) -> thread::JoinHandle<()> {
    let mut sockets: Vec<TcpStream> = (0..count)
        .map(|_| ws::connect(server, "/ws/echo"))
        .collect();
    thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            for socket in &mut sockets {
                socket.write_all(&frame(true, 0, TEXT, b"load")).unwrap();
                assert_eq!(read_frame(socket).unwrap().payload, b"load");
            }
            thread::sleep(Duration::from_millis(20));
        }
    })
}

#[test]
fn the_page_shows_live_numbers_in_chromium_without_errors() {
    let (chromium, script) = support::browser::tools("check.mjs");
    for driver in DRIVERS {
        let tree = Tree::new(&format!("dashboard-chromium-{driver}"));
        tree.file("big.bin", BIG);
        let server = server(&tree, driver);
        let url = format!("http://{}/dashboard", server.addr);
        let mut check = Command::new("node")
            .arg(&script)
            .arg(&url)
            .env("CHROMIUM", &chromium)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start node");
        let (lines_tx, lines) = mpsc::channel();
        let stdout = check.stdout.take().unwrap();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = lines_tx.send(line);
            }
        });
        let wait_for = |prefix: &str| -> String {
            let deadline = Instant::now() + 3 * PATIENCE;
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                match lines.recv_timeout(left) {
                    Ok(line) if line.starts_with(prefix) || line.starts_with("FAILED") => {
                        return line;
                    }
                    Ok(_) => {}
                    Err(e) => panic!("{driver}: no {prefix} line from check.mjs: {e}"),
                }
            }
        };
        let ready = wait_for("READY");
        assert!(ready.starts_with("READY"), "{driver}: {ready}");

        let stop = Arc::new(AtomicBool::new(false));
        let load = echo_load(&server, 5, Arc::clone(&stop));
        let _download = slow_download(&server);
        let big_head = format!(
            "GET /health HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
            "a".repeat(17 * 1024)
        );
        assert_eq!(server.request(big_head.as_bytes()).status, 431);
        assert_eq!(server.request(&get("/health")).status, 200);
        let want = r#"{"min_connections":6,"min_handshakes":5,"min_messages_in":50,"refusal":"431","client":"127.0.0.1","transfer":true}"#;
        let mut stdin = check.stdin.take().unwrap();
        writeln!(stdin, "LOADED {want}").unwrap();
        let verdict = wait_for("PASSED");
        stop.store(true, Ordering::Relaxed);
        load.join().unwrap();
        let status = check.wait().unwrap();
        assert!(
            verdict.starts_with("PASSED") && status.success(),
            "{driver}: {verdict}"
        );
    }
}
