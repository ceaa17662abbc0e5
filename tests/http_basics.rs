//! Normal HTTP/1.1 service against the real binary: the built-in routes, keep-alive,
//! pipelining, several workers, both drivers, graceful drain and start-up errors.
#![allow(clippy::unwrap_used, reason = "tests")]

mod support;

use std::io::Write;
use std::time::{Duration, Instant};

use support::{PATIENCE, Server, is_closed, read_head_response, read_response, run_binary};

#[test]
fn health_answers_ok_with_keepalive_on_both_drivers_and_two_workers() {
    for driver in ["uring", "poll", "auto"] {
        let server = Server::start(&["--io-driver", driver, "--workers", "2"]);
        let mut stream = server.connect();
        for _ in 0..3 {
            stream
                .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap();
            let response = read_response(&mut stream).unwrap();
            assert_eq!(response.status, 200);
            assert_eq!(response.body, b"ok");
            assert!(response.header("date").unwrap().ends_with(" GMT"));
            assert_eq!(response.header("connection"), None);
        }
        // Connections spread over both workers are all served.
        for _ in 0..20 {
            let response = server.request(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
            assert_eq!(response.status, 200);
        }
    }
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let server = Server::start(&[]);
    let mut stream = server.connect();
    stream
        .write_all(
            b"GET /health HTTP/1.1\r\nHost: x\r\n\r\nGET /nope HTTP/1.1\r\nHost: x\r\n\r\nHEAD /health HTTP/1.1\r\nHost: x\r\n\r\n",
        )
        .unwrap();
    assert_eq!(read_response(&mut stream).unwrap().status, 200);
    assert_eq!(read_response(&mut stream).unwrap().status, 404);
    let head = read_head_response(&mut stream).unwrap();
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), Some("2"));
}

#[test]
fn unknown_path_is_404_and_wrong_method_is_405() {
    let server = Server::start(&[]);
    let response = server.request(b"GET /nothing-here HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(response.status, 404);
    let response = server.request(b"DELETE /health HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(response.status, 405);
    assert_eq!(response.header("allow"), Some("GET, HEAD"));
    // The prefix matches on segment boundaries only.
    let response = server.request(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(response.status, 404);
}

#[test]
fn connection_close_and_http10_end_the_connection() {
    let server = Server::start(&[]);
    let mut stream = server.connect();
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let response = read_response(&mut stream).unwrap();
    assert_eq!(response.header("connection"), Some("close"));
    assert!(is_closed(&mut stream));
    let mut stream = server.connect();
    stream.write_all(b"GET /health HTTP/1.0\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut stream).unwrap().status, 200);
    assert!(is_closed(&mut stream));
}

#[test]
fn request_bodies_are_read_and_the_connection_stays_in_step() {
    let server = Server::start(&[]);
    let mut stream = server.connect();
    stream
        .write_all(b"POST /nothing HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
        .unwrap();
    assert_eq!(read_response(&mut stream).unwrap().status, 404);
    stream
        .write_all(b"POST /nothing HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\n0\r\nTrailer: x\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut stream).unwrap().status, 404);
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut stream).unwrap().status, 200);
}

#[test]
fn static_text_route_serves_its_body() {
    let server = Server::with_config(
        r#"
[[routes]]
path = "/hello"
kind = "static_text"
body = "hello, world"
content_type = "text/html"
"#,
        &[],
    );
    let response = server.request(b"GET /hello/x HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(response.status, 200);
    assert_eq!(response.body, b"hello, world");
    assert_eq!(response.header("content-type"), Some("text/html"));
}

#[test]
fn sigterm_lets_a_slow_request_finish_then_exits_zero() {
    for driver in ["uring", "poll"] {
        let mut server = Server::start(&["--io-driver", driver, "--workers", "2"]);
        let idle = server.connect();
        let mut slow = server.connect();
        slow.write_all(b"POST /health HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nhello")
            .unwrap();
        std::thread::sleep(Duration::from_millis(200));
        server.signal(libc::SIGTERM);
        std::thread::sleep(Duration::from_millis(500));
        slow.write_all(b"world").unwrap();
        let response = read_response(&mut slow).unwrap();
        assert_eq!(response.status, 405);
        assert_eq!(response.header("connection"), Some("close"));
        let status = server.wait_exit(PATIENCE);
        assert_eq!(status.code(), Some(0));
        drop(idle);
    }
}

#[test]
fn sigterm_closes_idle_connections_without_waiting_for_the_drain_timeout() {
    let mut server = Server::start(&[]);
    let mut idle = server.connect();
    idle.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut idle).unwrap().status, 200);
    let started = Instant::now();
    server.signal(libc::SIGTERM);
    assert!(is_closed(&mut idle));
    assert_eq!(server.wait_exit(PATIENCE).code(), Some(0));
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn drain_timeout_closes_what_is_left_and_a_second_signal_exits_at_once() {
    let config = "drain_timeout = \"1s\"\n[[routes]]\npath = \"/health\"\nkind = \"health\"\n";
    let mut server = Server::with_config(config, &[]);
    let mut stuck = server.connect();
    stuck
        .write_all(b"POST /health HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nhel")
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    server.signal(libc::SIGTERM);
    assert!(is_closed(&mut stuck));
    assert_eq!(server.wait_exit(PATIENCE).code(), Some(0));

    let mut server = Server::with_config(&config.replace("1s", "60s"), &[]);
    let mut stuck = server.connect();
    stuck
        .write_all(b"POST /health HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nhel")
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    server.signal(libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(300));
    server.signal(libc::SIGINT);
    let status = server.wait_exit(Duration::from_secs(5));
    assert_ne!(status.code(), Some(0));
}

#[test]
fn a_config_error_names_the_key_and_line_and_nothing_is_bound() {
    let file = support::TempFile::new(
        "toml",
        b"listen = \"127.0.0.1:0\"\n\n[limits]\nmax_headers = 100000\n",
    );
    let path = file.path.to_str().unwrap();
    let (code, stderr) = run_binary(&["serve", "--config", path]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("max_headers"), "{stderr}");
    assert!(stderr.contains(":4"), "{stderr}");
    let file = support::TempFile::new("toml", b"listen = \"127.0.0.1:0\"\nlisten_typo = 1\n");
    let (code, stderr) = run_binary(&["serve", "--config", file.path.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("listen_typo") && stderr.contains(":2"),
        "{stderr}"
    );
}

#[test]
fn a_port_already_served_is_refused() {
    let first = Server::start(&[]);
    let addr = first.addr.to_string();
    let (code, stderr) = run_binary(&["serve", "--listen", &addr]);
    assert_ne!(code, 0);
    assert!(stderr.contains("already in use"), "{stderr}");
}

#[cfg(target_arch = "x86_64")]
#[test]
fn auto_falls_back_to_poll_where_io_uring_is_forbidden_and_uring_refuses_to_start() {
    let server = Server::start_without_io_uring(&["--io-driver", "auto", "--workers", "2"]);
    let response = server.request(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(response.status, 200);
    let log = server.log();
    assert_eq!(
        log.matches("running on the poll driver").count(),
        1,
        "one clear line: {log}"
    );

    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_ringstream"));
    command.args(["serve", "--listen", "127.0.0.1:0", "--io-driver", "uring"]);
    support::deny_io_uring(&mut command, libc::ENOSYS);
    let (code, stderr) = support::run_command(&mut command);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("io_uring is not available"), "{stderr}");
}
