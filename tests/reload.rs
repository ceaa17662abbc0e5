//! Reload on SIGHUP against the real binary on both drivers: new connections get the new
//! routes and limits while a WebSocket opened before stays open across two reloads; per-client
//! counts and rates survive; a broken file is refused with its `file:line: key: message`
//! error, counted, and the running configuration kept; a key that needs a restart keeps its
//! running value with a log line; `ringstream reload --pid-file` sends the signal.
#![allow(clippy::unwrap_used, reason = "tests")]

mod support;

use std::io::Write;
use std::time::{Duration, Instant};

use support::upstream::RawUpstream;
use support::ws::{TEXT, connect_to, frame, read_frame, upgrade_request};
use support::{
    DRIVERS, PATIENCE, Server, TempFile, ask, clients, connect_from, read_response, run_binary,
};

/// A config whose `/a` answers `body` five times a minute per client (with the health, echo,
/// stats and metrics routes), every client capped at two connections, and `extra` routes.
fn config(body: &str, extra: &str) -> String {
    let routes = format!(
        "\n[[routes]]\npath = \"/a\"\nkind = \"static_text\"\nbody = \"{body}\"\n\
         [routes.limits]\nrate_limit_requests = 5\n{extra}"
    );
    clients::config("exempt = []\nmax_concurrent_connections = 2", &routes)
}

/// The status and body of `GET path` on a new connection from 127.0.0.2 (another client than
/// the WebSockets' 127.0.0.1, which is at its cap).
fn get(server: &Server, path: &str) -> (u16, String) {
    get_from(server, 2, path)
}

/// The status and body of `GET path` on a new connection from 127.0.0.`host`.
fn get_from(server: &Server, host: u8, path: &str) -> (u16, String) {
    let mut stream = connect_from(server, host);
    let raw = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let response = ask(&mut stream, raw);
    (
        response.status,
        String::from_utf8_lossy(&response.body).into_owned(),
    )
}

/// Waits until the server counted `ok` reloads taken and `failed` refused.
fn wait_for_reloads(server: &Server, ok: u64, failed: u64) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let (status, body) = get(server, "/stats");
        assert_eq!(status, 200, "{body}");
        let stats: serde_json::Value = serde_json::from_str(&body).unwrap();
        if stats["reloads"]["ok"] == ok && stats["reloads"]["failed"] == failed {
            return;
        }
        assert!(Instant::now() < deadline, "never reached: {stats}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends a message on `ws` and expects it back.
fn echoes(ws: &mut std::net::TcpStream, message: &[u8], driver: &str) {
    ws.write_all(&frame(true, 0, TEXT, message)).unwrap();
    assert_eq!(read_frame(ws).unwrap().payload, message, "{driver}");
}

/// The status a third WebSocket of the same client gets.
fn third_upgrade(server: &Server) -> u16 {
    let mut stream = server.connect();
    stream.write_all(&upgrade_request("/ws/echo", "")).unwrap();
    read_response(&mut stream).unwrap().status
}

#[test]
fn sighup_swaps_the_configuration_for_new_connections_and_keeps_open_ones() {
    for driver in DRIVERS {
        let file = TempFile::new("toml", config("one", "").as_bytes());
        let pid_file = TempFile::new("pid", b"");
        let pid_arg = pid_file.path.to_str().unwrap().to_owned();
        let server = Server::with_config_file(
            &file.path,
            &[
                "--workers",
                "2",
                "--io-driver",
                driver,
                "--pid-file",
                &pid_arg,
            ],
        );
        assert_eq!(get(&server, "/a"), (200, "one".into()), "{driver}");
        let (mut first, _) = connect_to(server.addr, "/ws/echo", "");
        let (mut second, _) = connect_to(server.addr, "/ws/echo", "");
        echoes(&mut first, b"before", driver);
        assert_eq!(third_upgrade(&server), 429, "{driver}: at the cap");
        // Another client spends its budget on /a.
        for _ in 0..5 {
            assert_eq!(get_from(&server, 3, "/a").0, 200, "{driver}");
        }
        assert_eq!(get_from(&server, 3, "/a").0, 429, "{driver}");

        // A new body, a new route; sent through `ringstream reload`.
        let next = config("two", "\n[[routes]]\npath = \"/b\"\nkind = \"health\"\n");
        std::fs::write(&file.path, next).unwrap();
        let (code, stderr) = run_binary(&["reload", "--pid-file", &pid_arg]);
        assert_eq!(code, 0, "{driver}: {stderr}");
        wait_for_reloads(&server, 1, 0);
        assert_eq!(get(&server, "/a"), (200, "two".into()), "{driver}");
        assert_eq!(get(&server, "/b").0, 200, "{driver}");
        echoes(&mut first, b"after one reload", driver);
        assert_eq!(
            third_upgrade(&server),
            429,
            "{driver}: the client's two connections are still counted"
        );
        assert_eq!(
            get_from(&server, 3, "/a").0,
            429,
            "{driver}: what the other client spent of /a's rate stays spent"
        );

        // A broken file: refused with its line, counted, the running configuration kept.
        let broken = config("three", "").replace(
            "max_concurrent_connections = 2",
            "max_concurrent_connections = \"many\"",
        );
        let line = 1 + broken.lines().position(|l| l.contains("\"many\"")).unwrap();
        std::fs::write(&file.path, broken).unwrap();
        server.signal(libc::SIGHUP);
        wait_for_reloads(&server, 1, 1);
        let log = server.log();
        let expected = format!(
            "{}:{line}: limits.max_concurrent_connections: \"many\" is not a whole number",
            file.path.display()
        );
        assert!(
            log.contains("reload refused") && log.contains(&expected),
            "{driver}: {log}"
        );
        assert_eq!(get(&server, "/a"), (200, "two".into()), "{driver}");

        // A key that needs a restart keeps its running value, with a line saying so.
        let moved = config("four", "").replace("[limits]", "backlog = 77\n\n[limits]");
        std::fs::write(&file.path, moved).unwrap();
        server.signal(libc::SIGHUP);
        wait_for_reloads(&server, 2, 1);
        assert_eq!(get(&server, "/a"), (200, "four".into()), "{driver}");
        assert_eq!(get(&server, "/b").0, 404, "{driver}: /b is gone again");
        assert!(
            server
                .log()
                .contains("backlog changed, but it needs a restart"),
            "{driver}: {}",
            server.log()
        );
        echoes(&mut first, b"after two reloads", driver);
        echoes(&mut second, b"the other one too", driver);
        drop((first, second));
        // Once the client's connections are closed, its count falls: a new one is admitted.
        let deadline = Instant::now() + PATIENCE;
        while third_upgrade(&server) != 101 {
            assert!(Instant::now() < deadline, "{driver}: the count never fell");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[test]
fn a_keep_alive_connection_from_before_a_reload_still_reuses_upstream_connections() {
    let upstream = RawUpstream::start("record");
    for driver in DRIVERS {
        let proxy = format!(
            "\n[[routes]]\npath = \"/api/\"\nkind = \"proxy\"\nupstreams = [\"{}\"]\n",
            upstream.addr()
        );
        let file = TempFile::new("toml", config("one", &proxy).as_bytes());
        let server =
            Server::with_config_file(&file.path, &["--workers", "1", "--io-driver", driver]);
        let mut kept = connect_from(&server, 4);
        let request = "GET /api/x HTTP/1.1\r\nHost: x\r\n\r\n";
        assert_eq!(ask(&mut kept, request).status, 200, "{driver}");
        std::fs::write(&file.path, config("two", &proxy)).unwrap();
        server.signal(libc::SIGHUP);
        wait_for_reloads(&server, 1, 0);
        let reuses = |server: &Server| {
            let (_, body) = get(server, "/stats");
            let stats: serde_json::Value = serde_json::from_str(&body).unwrap();
            stats["proxy"]["upstream_reuses"].as_u64().unwrap()
        };
        let before = reuses(&server);
        for _ in 0..3 {
            assert_eq!(ask(&mut kept, request).status, 200, "{driver}");
        }
        assert!(
            reuses(&server) >= before + 2,
            "{driver}: the connection's requests reuse an upstream connection after the reload"
        );
    }
}
