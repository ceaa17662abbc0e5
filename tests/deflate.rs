//! permessage-deflate (RFC 7692) against the real binary on both drivers: a route that offers
//! it negotiates it and echoes compressed, a real client (Python's `websockets`) round-trips
//! through it, a route without it refuses compressed frames, and a message that inflates past
//! `max_message_size` (10 MiB of zeros, about 10 KiB deflated) is closed with 1009 without the
//! server holding it; byte rates count inflated bytes; a topic's members that agreed the
//! extension get its messages compressed (once per parameter set), the others plain; and
//! headless Chromium negotiates the extension on the echo route and a topic
//! (`tests/dashboard/websocket.mjs`; needs `bash tests/dashboard/install.sh`).
#![allow(clippy::unwrap_used, reason = "tests")]

mod support;

use std::io::Write;
use std::net::TcpStream;

use ringstream_protocol::ws::deflate::{DeflateParams, Deflater, Inflater};
use support::ws::{BINARY, CLOSE, TEXT, frame, read_frame, upgrade_request};
use support::{DRIVERS, Server, read_response};

const OFFER: &str = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n";

/// An echo route with `limits` in its `[routes.limits]`.
fn server(limits: &str, driver: &str) -> Server {
    let config =
        format!("[[routes]]\npath = \"/ws/echo\"\nkind = \"echo\"\n[routes.limits]\n{limits}\n");
    Server::with_config(&config, &["--io-driver", driver])
}

/// Upgrades with `extra` headers: the stream and the 101's `Sec-WebSocket-Extensions`.
fn upgrade(server: &Server, extra: &str) -> (TcpStream, Option<String>) {
    upgrade_at(server, "/ws/echo", extra)
}

/// [`upgrade`] on `path`.
fn upgrade_at(server: &Server, path: &str, extra: &str) -> (TcpStream, Option<String>) {
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream.set_read_timeout(Some(support::PATIENCE)).unwrap();
    stream.write_all(&upgrade_request(path, extra)).unwrap();
    let response = read_response(&mut stream).unwrap();
    assert_eq!(response.status, 101);
    let extensions = response
        .header("sec-websocket-extensions")
        .map(str::to_owned);
    (stream, extensions)
}

/// The client's side of the default parameters.
const PARAMS: DeflateParams = DeflateParams {
    server_no_context_takeover: false,
    client_no_context_takeover: false,
    server_max_window_bits: 15,
    client_max_window_bits: 15,
};

/// A masked frame with RSV1 carrying `message` compressed by `client`.
fn compressed_frame(client: &mut Deflater, opcode: u8, message: &[u8]) -> Vec<u8> {
    let mut wire = Vec::new();
    client.compress(message, &mut wire);
    frame(true, 4, opcode, &wire)
}

#[test]
fn a_route_that_offers_deflate_negotiates_it_and_echoes_compressed() {
    for driver in DRIVERS {
        let server = server(
            "permessage_deflate = true\ndeflate_context_takeover = true",
            driver,
        );
        let (mut stream, extensions) = upgrade(&server, OFFER);
        assert_eq!(
            extensions.as_deref(),
            Some("permessage-deflate"),
            "{driver}"
        );
        let mut client = Deflater::new(&PARAMS, 6);
        let mut inflater = Inflater::new(&PARAMS);
        let text = "ringstream ".repeat(500);
        for message in [text.as_bytes(), b"short", b"", text.as_bytes()] {
            stream
                .write_all(&compressed_frame(&mut client, TEXT, message))
                .unwrap();
            let echoed = read_frame(&mut stream).unwrap();
            assert_eq!(
                (echoed.opcode, echoed.rsv),
                (TEXT, 4),
                "{driver}: compressed"
            );
            let mut back = Vec::new();
            inflater
                .inflate(&echoed.payload, 1 << 20, &mut back)
                .unwrap();
            assert_eq!(back, message, "{driver}");
        }
        // An uncompressed message on the same connection is fine too (echoed as it came,
        // from the read buffer).
        stream.write_all(&frame(true, 0, BINARY, b"plain")).unwrap();
        let echoed = read_frame(&mut stream).unwrap();
        assert_eq!(
            (echoed.rsv, &echoed.payload[..]),
            (0, &b"plain"[..]),
            "{driver}"
        );
    }
}

#[test]
fn without_context_takeover_both_sides_start_each_message_afresh() {
    for driver in DRIVERS {
        let server = server(
            "permessage_deflate = true\ndeflate_context_takeover = false\ndeflate_window_bits = 10",
            driver,
        );
        let (mut stream, extensions) = upgrade(&server, OFFER);
        assert_eq!(
            extensions.as_deref(),
            Some(
                "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
                 server_max_window_bits=10; client_max_window_bits=10"
            ),
            "{driver}"
        );
        let params = DeflateParams {
            server_no_context_takeover: true,
            client_no_context_takeover: true,
            server_max_window_bits: 10,
            client_max_window_bits: 10,
        };
        for _ in 0..3 {
            // A fresh compressor per message: the server must expect no shared window.
            let mut client = Deflater::new(&params, 6);
            stream
                .write_all(&compressed_frame(&mut client, TEXT, b"again and again"))
                .unwrap();
            let echoed = read_frame(&mut stream).unwrap();
            let mut back = Vec::new();
            Inflater::new(&params)
                .inflate(&echoed.payload, 1 << 20, &mut back)
                .unwrap();
            assert_eq!(back, b"again and again", "{driver}");
        }
    }
}

#[test]
fn a_route_without_deflate_refuses_compressed_frames_with_1002() {
    for driver in DRIVERS {
        let server = server("", driver);
        let (mut stream, extensions) = upgrade(&server, OFFER);
        assert_eq!(extensions, None, "{driver}: not offered");
        let mut client = Deflater::new(&PARAMS, 6);
        stream
            .write_all(&compressed_frame(&mut client, TEXT, b"hello"))
            .unwrap();
        let close = read_frame(&mut stream).unwrap();
        assert_eq!((close.opcode, close.close().0), (CLOSE, 1002), "{driver}");
    }
}

#[test]
fn a_deflate_bomb_is_closed_with_1009_without_the_server_holding_it() {
    for driver in DRIVERS {
        let server = server(
            "permessage_deflate = true\nmax_message_size = \"1MiB\"",
            driver,
        );
        let (mut stream, _) = upgrade(&server, OFFER);
        let before = server.rss_kib();
        let mut client = Deflater::new(&PARAMS, 9);
        let bomb = compressed_frame(&mut client, BINARY, &vec![0u8; 10 << 20]);
        assert!(bomb.len() < 32 << 10, "{} bytes on the wire", bomb.len());
        stream.write_all(&bomb).unwrap();
        let close = read_frame(&mut stream).unwrap();
        assert_eq!((close.opcode, close.close().0), (CLOSE, 1009), "{driver}");
        let grown = server.rss_kib().saturating_sub(before);
        assert!(
            grown < 8 << 10,
            "{driver}: grew {grown} KiB for a 10 MiB bomb"
        );
    }
}

#[test]
fn bytes_per_minute_counts_what_a_compressed_message_inflates_to() {
    for driver in DRIVERS {
        let server = server(
            "permessage_deflate = true\nbytes_per_minute = 10000",
            driver,
        );
        let (mut stream, _) = upgrade(&server, OFFER);
        // 6,000 bytes each, a few dozen on the wire: the first fits the budget, the second
        // passes it. Each is compressed afresh (the route keeps no context).
        let message = vec![b'a'; 6000];
        let first = compressed_frame(&mut Deflater::new(&PARAMS, 9), BINARY, &message);
        assert!(first.len() < 100, "{} bytes on the wire", first.len());
        stream.write_all(&first).unwrap();
        assert_eq!(read_frame(&mut stream).unwrap().opcode, BINARY, "{driver}");
        stream.write_all(&first).unwrap();
        let close = read_frame(&mut stream).unwrap();
        assert_eq!(
            (close.opcode, close.close()),
            (
                CLOSE,
                (1008, "rate limit exceeded: bytes per minute".to_owned())
            ),
            "{driver}"
        );
    }
}

#[test]
fn a_topic_sends_compressed_frames_to_the_members_that_agreed_deflate() {
    let config = "[[routes]]\npath = \"/ws/broadcast/{topic}\"\nkind = \"broadcast\"\n\
                  [routes.limits]\npermessage_deflate = true\n";
    for driver in DRIVERS {
        let server = Server::with_config(config, &["--workers", "2", "--io-driver", driver]);
        let path = "/ws/broadcast/prices";
        let (mut wide, _) = upgrade_at(&server, path, OFFER);
        let narrow_offer =
            "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=10\r\n";
        let (mut narrow, agreed) = upgrade_at(&server, path, narrow_offer);
        assert!(
            agreed.unwrap().contains("server_max_window_bits=10"),
            "{driver}"
        );
        let (mut plain, none) = upgrade_at(&server, path, "");
        assert_eq!(none, None, "{driver}");
        let (mut publisher, _) = upgrade_at(&server, path, "");
        let message = "{\"symbol\":\"RING\",\"price\":101.25} ".repeat(100);
        publisher
            .write_all(&frame(true, 0, TEXT, message.as_bytes()))
            .unwrap();
        for (stream, bits) in [(&mut wide, 15), (&mut narrow, 10)] {
            let got = read_frame(stream).unwrap();
            assert_eq!((got.opcode, got.rsv), (TEXT, 4), "{driver}: compressed");
            assert!(got.payload.len() < message.len() / 4, "{driver}");
            let params = DeflateParams {
                client_max_window_bits: bits,
                ..PARAMS
            };
            let mut inflated = Vec::new();
            Inflater::new(&params)
                .inflate(&got.payload, 1 << 20, &mut inflated)
                .unwrap();
            assert_eq!(inflated, message.as_bytes(), "{driver}: window {bits}");
        }
        let got = read_frame(&mut plain).unwrap();
        assert_eq!(
            (got.rsv, &got.payload[..]),
            (0, message.as_bytes()),
            "{driver}"
        );
        // A message compression would not shrink goes out as it is, to every member.
        publisher.write_all(&frame(true, 0, TEXT, b"hi")).unwrap();
        for stream in [&mut wide, &mut narrow, &mut plain] {
            let got = read_frame(stream).unwrap();
            assert_eq!((got.rsv, &got.payload[..]), (0, &b"hi"[..]), "{driver}");
        }
    }
}

#[test]
fn a_real_client_round_trips_through_deflate() {
    let python = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/peers/.env/bin/python");
    if !std::path::Path::new(python).exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "the peers' Python is missing (bash benches/peers/install.sh python)"
        );
        eprintln!("the peers' Python is missing: skipped");
        return;
    }
    let script = r#"
import asyncio, sys, websockets
async def main():
    async with websockets.connect(sys.argv[1]) as ws:
        agreed = ws.response.headers.get("Sec-WebSocket-Extensions")
        assert agreed.startswith("permessage-deflate; server_no_context_takeover"), agreed
        for message in ["hello", "x" * 60000, b"\x00" * 5000, ""]:
            await ws.send(message)
            assert await ws.recv() == message
    print("ok")
asyncio.run(main())
"#;
    for driver in DRIVERS {
        let server = server("permessage_deflate = true", driver);
        let url = format!("ws://{}/ws/echo", server.addr);
        let output = std::process::Command::new(python)
            .args(["-c", script, &url])
            .output()
            .unwrap();
        assert!(
            output.status.success() && output.stdout.starts_with(b"ok"),
            "{driver}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

#[test]
fn chromium_negotiates_deflate_on_the_echo_route_and_a_topic() {
    let (chromium, script) = support::browser::tools("websocket.mjs");
    let config = "[[routes]]\npath = \"/health\"\nkind = \"health\"\n\
                  [[routes]]\npath = \"/ws/echo\"\nkind = \"echo\"\n\
                  [routes.limits]\npermessage_deflate = true\n\
                  [[routes]]\npath = \"/ws/broadcast/{topic}\"\nkind = \"broadcast\"\n\
                  [routes.limits]\npermessage_deflate = true\n";
    for driver in DRIVERS {
        let server = Server::with_config(config, &["--io-driver", driver]);
        let addr = server.addr;
        let output = std::process::Command::new("node")
            .arg(&script)
            .args([
                format!("http://{addr}/health"),
                format!("ws://{addr}/ws/echo"),
                format!("ws://{addr}/ws/broadcast/browser"),
            ])
            .env("CHROMIUM", &chromium)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        let line = stdout
            .lines()
            .find_map(|line| line.strip_prefix("RESULT "))
            .unwrap_or_else(|| {
                panic!(
                    "{driver}: no RESULT line: {stdout} {}",
                    String::from_utf8_lossy(&output.stderr)
                )
            });
        let result: serde_json::Value = serde_json::from_str(line).unwrap();
        for key in ["echo_extensions", "topic_extensions"] {
            let agreed = result[key].as_str().unwrap_or_default();
            assert!(
                agreed.starts_with("permessage-deflate"),
                "{driver}: {key}: {result}"
            );
        }
        assert_eq!(result["echo_ok"], true, "{driver}: {result}");
        assert_eq!(result["topic_ok"], true, "{driver}: {result}");
    }
}
