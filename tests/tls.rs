//! https and wss (`[tls]`) against the real binary on both drivers: a client that verifies the
//! certificate gets answers, a file and a WebSocket echo over TLS; a handshake that stalls is
//! cut at `header_timeout`; plain HTTP on the TLS port is told to use https; bytes that are not
//! TLS are closed on; SNI picks a certificate by name; a reload takes up a new certificate.
#![allow(clippy::unwrap_used, reason = "tests")]

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Instant;

use support::files::drop_from_page_cache;
use support::tls::{Certs, TlsStream};
use support::ws::{CLOSE, TEXT, close_frame, frame, read_frame, upgrade_request};
use support::{DRIVERS, PATIENCE, Server, TempFile, ask, read_response};

const BIG: usize = 3 * 1024 * 1024 + 17;

/// `[tls]` with `tls_extra`, `header_timeout = "1s"`, and health, echo, stats and files routes.
fn config(certs: &Certs, tls_extra: &str) -> String {
    config_with_limits(certs, tls_extra, "")
}

/// [`config`] with `limits` in `[limits]`.
fn config_with_limits(certs: &Certs, tls_extra: &str, limits: &str) -> String {
    format!(
        r#"
[limits]
header_timeout = "1s"
{limits}

{tls}

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
path = "/files/"
kind = "files"
root = "{root}"
"#,
        tls = certs.section(tls_extra),
        root = certs.root().display()
    )
}

fn server(certs: &Certs, tls_extra: &str, driver: &str) -> Server {
    Server::with_config(&config(certs, tls_extra), &["--io-driver", driver])
}

/// `/stats` over TLS.
fn stats(certs: &Certs, server: &Server) -> serde_json::Value {
    let mut stream = certs.connect(server, "localhost").unwrap();
    let response = ask(
        &mut stream,
        "GET /stats HTTP/1.1\r\nHost: localhost\r\n\r\n",
    );
    assert_eq!(response.status, 200);
    serde_json::from_slice(&response.body).unwrap()
}

/// Waits until `/stats` over TLS satisfies `pick`.
fn wait_for_tls_stats(certs: &Certs, server: &Server, pick: impl Fn(&serde_json::Value) -> bool) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let stats = stats(certs, server);
        if pick(&stats) {
            return;
        }
        assert!(Instant::now() < deadline, "{stats}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Whether the server closed `stream` (EOF or reset) before [`PATIENCE`] passed.
fn closed(stream: &mut TcpStream) -> bool {
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut buf = [0u8; 256];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) => return e.kind() != std::io::ErrorKind::WouldBlock,
        }
    }
}

#[test]
fn https_and_wss_work_with_a_certificate_the_client_verifies() {
    let certs = Certs::new("serve");
    let big = certs.file("big.bin", BIG);
    for driver in DRIVERS {
        let server = server(&certs, "", driver);
        let mut stream: TlsStream = certs.connect(&server, "localhost").unwrap();
        assert_eq!(
            stream.conn.alpn_protocol(),
            Some(&b"http/1.1"[..]),
            "{driver}"
        );
        for _ in 0..2 {
            let response = ask(
                &mut stream,
                "GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n",
            );
            assert_eq!(response.status, 200, "{driver}: kept alive over TLS");
        }
        // Cold, then cached: the pieces the page cache does not hold are read on the
        // blocking pool, and encrypted like the others.
        let dropped = drop_from_page_cache(&certs.root().join("big.bin"));
        for _ in 0..2 {
            let response = ask(
                &mut stream,
                "GET /files/big.bin HTTP/1.1\r\nHost: localhost\r\n\r\n",
            );
            assert_eq!(response.status, 200, "{driver}");
            assert!(response.body == big, "{driver}: the file, whole, over TLS");
        }
        if dropped {
            let cold = stats(&certs, &server)["files"]["cold_pieces"].as_u64();
            assert!(cold >= Some(1), "{driver}: no piece was read as cold");
        }

        let mut ws = certs.connect(&server, "localhost").unwrap();
        ws.write_all(&upgrade_request("/ws/echo", "")).unwrap();
        assert_eq!(read_response(&mut ws).unwrap().status, 101, "{driver}");
        for size in [5, 60_000] {
            let payload = vec![b'x'; size];
            ws.write_all(&frame(true, 0, TEXT, &payload)).unwrap();
            let echoed = read_frame(&mut ws).unwrap();
            assert_eq!(
                (echoed.opcode, echoed.payload.len()),
                (TEXT, size),
                "{driver}"
            );
        }
        ws.write_all(&close_frame(1000, "bye")).unwrap();
        let close = read_frame(&mut ws).unwrap();
        assert_eq!(close.opcode, CLOSE, "{driver}");
        assert_eq!(close.close().0, 1000, "{driver}");

        let stats = stats(&certs, &server);
        assert!(
            stats["tls"]["handshakes"].as_u64().unwrap() >= 3,
            "{driver}: {stats}"
        );
    }
}

#[test]
fn a_stalled_handshake_is_cut_and_plain_http_is_told_to_use_https() {
    let certs = Certs::new("stall");
    for driver in DRIVERS {
        let server = server(&certs, "", driver);
        // A ClientHello's record header announcing 200 bytes, then nothing.
        let mut stalled = TcpStream::connect(server.addr).unwrap();
        stalled.write_all(&[0x16, 0x03, 0x01, 0x00, 0xc8]).unwrap();
        assert!(closed(&mut stalled), "{driver}: cut at header_timeout");
        wait_for_tls_stats(&certs, &server, |s| s["tls"]["timed_out"] == 1);

        let mut plain = TcpStream::connect(server.addr).unwrap();
        let response = ask(&mut plain, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(response.status, 400, "{driver}");
        let body = String::from_utf8(response.body).unwrap();
        assert!(body.contains("https://"), "{driver}: {body}");
        assert!(closed(&mut plain), "{driver}");

        let mut garbage = TcpStream::connect(server.addr).unwrap();
        garbage.write_all(&[0x00; 64]).unwrap();
        assert!(closed(&mut garbage), "{driver}: not TLS");

        // A client that does not trust the certificate gives up; the server goes on.
        let other = Certs::new("stranger");
        assert!(other.connect(&server, "localhost").is_err(), "{driver}");
        wait_for_tls_stats(&certs, &server, |s| {
            s["tls"]["plain_http"] == 1 && s["tls"]["failed"].as_u64() >= Some(2)
        });
    }
}

#[test]
fn a_flood_of_stalled_handshakes_holds_little_memory_and_is_cut() {
    const FLOOD: usize = 400;
    let certs = Certs::new("flood");
    for driver in DRIVERS {
        let server = server(&certs, "", driver);
        let before = server.rss_kib();
        let mut stalled: Vec<TcpStream> = (0..FLOOD)
            .map(|_| {
                let mut stream = TcpStream::connect(server.addr).unwrap();
                stream.write_all(&[0x16, 0x03, 0x01, 0x00, 0xc8]).unwrap();
                stream
            })
            .collect();
        std::thread::sleep(std::time::Duration::from_millis(300));
        let grown = server.rss_kib().saturating_sub(before);
        // About 15 KB each (BENCHMARKS.md, "TLS"); generous for a loaded machine.
        assert!(
            grown < (FLOOD as u64) * 32,
            "{driver}: {grown} KiB for {FLOOD} stalled handshakes"
        );
        for stream in &mut stalled {
            assert!(closed(stream), "{driver}: cut at header_timeout");
        }
        wait_for_tls_stats(&certs, &server, |s| s["tls"]["timed_out"] == FLOOD);
    }
}

#[test]
fn a_connection_refused_at_accept_is_closed_without_a_handshake() {
    let certs = Certs::new("refused");
    let limits = "exempt = []\nmax_concurrent_connections = 1";
    for driver in DRIVERS {
        let config = config_with_limits(&certs, "", limits);
        let server = Server::with_config(&config, &["--io-driver", driver]);
        let mut first = certs.connect(&server, "localhost").unwrap();
        let response = ask(&mut first, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(response.status, 200, "{driver}");
        assert!(
            certs.connect(&server, "localhost").is_err(),
            "{driver}: the client's second connection is closed unanswered"
        );
        let response = ask(&mut first, "GET /stats HTTP/1.1\r\nHost: x\r\n\r\n");
        let stats: serde_json::Value = serde_json::from_slice(&response.body).unwrap();
        assert_eq!(stats["http_refusals"]["429"], 1, "{driver}: {stats}");
        assert_eq!(stats["tls"]["handshakes"], 1, "{driver}: {stats}");
    }
}

#[test]
fn handshakes_per_client_per_minute_are_limited_like_connections() {
    let certs = Certs::new("per-minute");
    let limits = "exempt = []\nconnections_per_minute = 2";
    for driver in DRIVERS {
        let config = config_with_limits(&certs, "", limits);
        let server = Server::with_config(&config, &["--io-driver", driver]);
        let mut first = certs.connect(&server, "localhost").unwrap();
        assert_eq!(
            ask(&mut first, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n").status,
            200,
            "{driver}"
        );
        let mut second = certs.connect(&server, "localhost").unwrap();
        assert_eq!(
            ask(&mut second, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n").status,
            200,
            "{driver}"
        );
        assert!(
            certs.connect(&server, "localhost").is_err(),
            "{driver}: the third connection within the minute is closed before its handshake"
        );
        let response = ask(&mut first, "GET /stats HTTP/1.1\r\nHost: x\r\n\r\n");
        let stats: serde_json::Value = serde_json::from_slice(&response.body).unwrap();
        assert_eq!(stats["tls"]["handshakes"], 2, "{driver}: {stats}");
    }
}

#[test]
fn sni_picks_the_certificate_of_the_name_asked_for() {
    let certs = Certs::new("sni");
    let sni = format!(
        "[[tls.sni]]\nname = \"other.test\"\ncert = \"{}\"\nkey = \"{}\"\n",
        certs.path("other.pem").display(),
        certs.path("other.key").display()
    );
    for driver in DRIVERS {
        let server = server(&certs, &sni, driver);
        for host in ["other.test", "localhost"] {
            let mut stream = certs.connect(&server, host).unwrap();
            let response = ask(&mut stream, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
            assert_eq!(response.status, 200, "{driver}: {host}");
        }
        assert!(
            certs.connect(&server, "unknown.test").is_err(),
            "{driver}: an unknown name gets the default certificate, not valid for it"
        );
    }
}

#[test]
fn a_reload_takes_up_a_new_certificate() {
    let certs = Certs::new("reload");
    for driver in DRIVERS {
        let file = TempFile::new("toml", config(&certs, "").as_bytes());
        let server = Server::with_config_file(&file.path, &["--io-driver", driver]);
        assert!(certs.connect(&server, "other.test").is_err(), "{driver}");
        let renewed = config(&certs, "")
            .replace("server.pem", "other.pem")
            .replace("server.key", "other.key");
        std::fs::write(&file.path, renewed).unwrap();
        server.signal(libc::SIGHUP);
        let deadline = Instant::now() + PATIENCE;
        while certs.connect(&server, "other.test").is_err() {
            assert!(Instant::now() < deadline, "{driver}: {}", server.log());
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}
