//! The server-wide budget for buffered bytes (PROTECTIONS.md, `max_buffered_bytes`) against
//! the real binary on both drivers: a frame the budget cannot hold waits, without being read,
//! until another connection gives memory back; connections that hold nothing go on; a wait
//! past the idle timeout ends in 1013, and a request head that cannot be held in 503.
#![allow(clippy::unwrap_used, reason = "tests")]

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::thread::JoinHandle;
use std::time::Duration;

use support::ws::{BINARY, TEXT, connect, expect_close, frame, read_frame};
use support::{DRIVERS, PATIENCE, Server, read_response};

/// One message of this size fits the budget; two do not.
const MESSAGE: usize = 600 * 1024;

const CONFIG: &str = r#"
[[routes]]
path = "/publish/{topic}"
kind = "publish"
[routes.limits]
upload_timeout = "2s"

[limits]
max_buffered_bytes = "1MiB"
max_message_size = "600KiB"
max_header_bytes = "1MiB"
max_uri_bytes = "8KiB"
header_timeout = "2s"

[[routes]]
path = "/ws/echo"
kind = "echo"

[[routes]]
path = "/ws/patient"
kind = "echo"
[routes.limits]
timeout = "60s"

[[routes]]
path = "/ws/short"
kind = "echo"
[routes.limits]
timeout = "1s"
heartbeat_interval = "300ms"

[[routes]]
path = "/stats"
kind = "stats"

[[routes]]
path = "/health"
kind = "health"
"#;

fn server(driver: &str) -> Server {
    Server::with_config(CONFIG, &["--workers", "2", "--io-driver", driver])
}

/// The routes of [`CONFIG`] and an upload route storing into `dir`.
fn server_with_uploads(driver: &str, dir: &std::path::Path) -> Server {
    let config = format!(
        "{CONFIG}\n[[routes]]\npath = \"/upload/\"\nkind = \"upload\"\nupload_dir = \"{}\"\n",
        dir.display()
    );
    Server::with_config(&config, &["--workers", "2", "--io-driver", driver])
}

/// Opens a WebSocket on `path` and sends the first half of a framed message of `len` bytes:
/// the server then holds a buffer for all of it. Returns the connection and the rest.
fn hold_half(server: &Server, path: &str, len: usize) -> (TcpStream, Vec<u8>) {
    let framed = frame(true, 0, BINARY, &vec![b'h'; len]);
    let mut stream = connect(server, path);
    stream.write_all(&framed[..framed.len() / 2]).unwrap();
    (stream, framed[framed.len() / 2..].to_vec())
}

/// A binary message of `MESSAGE` bytes (`fill` repeated), framed and masked.
fn large_message(fill: u8) -> (Vec<u8>, Vec<u8>) {
    let payload = vec![fill; MESSAGE];
    let framed = frame(true, 0, BINARY, &payload);
    (payload, framed)
}

/// Writes `bytes` on a thread of its own: the server may not be reading (and may close the
/// connection before it has all of them, which the caller checks by its answer).
fn send_in_background(stream: &TcpStream, bytes: Vec<u8>) -> JoinHandle<()> {
    let mut stream = stream.try_clone().unwrap();
    std::thread::spawn(move || {
        let _ = stream.write_all(&bytes);
    })
}

fn held(stats: &serde_json::Value) -> u64 {
    stats["buffers"]["held_bytes"].as_u64().unwrap()
}

fn pauses(stats: &serde_json::Value) -> u64 {
    stats["buffers"]["pauses"].as_u64().unwrap()
}

/// Reads the next data frame, skipping heartbeat pings.
fn next_data(stream: &mut TcpStream) -> (u8, Vec<u8>) {
    loop {
        let frame = read_frame(stream).expect("a frame");
        if frame.opcode == BINARY || frame.opcode == TEXT {
            return (frame.opcode, frame.payload);
        }
    }
}

/// Whether nothing arrives on `stream` for a moment.
fn stays_quiet(stream: &mut TcpStream) -> bool {
    stream
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let quiet = matches!(
        stream.read(&mut [0; 1]),
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
    );
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    quiet
}

#[test]
fn a_frame_the_budget_cannot_hold_waits_unread_until_memory_is_given_back() {
    for driver in DRIVERS {
        let server = server(driver);
        let (payload_a, framed_a) = large_message(b'a');
        let (payload_b, framed_b) = large_message(b'b');
        // A sends half of its message: the server holds a buffer for all of it.
        let mut a = connect(&server, "/ws/patient");
        let half = framed_a.len() / 2;
        a.write_all(&framed_a[..half]).unwrap();
        let stats = server.wait_for_stats(|s| held(s) > MESSAGE as u64 / 2);
        assert!(
            held(&stats) <= 1 << 20,
            "{driver}: within the budget: {stats}"
        );
        // B's whole message does not fit beside it: B is not read.
        let mut b = connect(&server, "/ws/patient");
        let sending_b = send_in_background(&b, framed_b);
        server.wait_for_stats(|s| pauses(s) >= 1);
        assert!(stays_quiet(&mut b), "{driver}: B waits");
        // A connection that holds nothing is read and answered meanwhile.
        let mut c = connect(&server, "/ws/echo");
        c.write_all(&frame(true, 0, TEXT, b"small")).unwrap();
        assert_eq!(next_data(&mut c), (TEXT, b"small".to_vec()), "{driver}");
        // A finishes: its echo, then its memory goes back, and B goes on.
        a.write_all(&framed_a[half..]).unwrap();
        assert_eq!(next_data(&mut a), (BINARY, payload_a), "{driver}: A's echo");
        assert_eq!(next_data(&mut b), (BINARY, payload_b), "{driver}: B's echo");
        sending_b.join().unwrap();
        drop((a, b, c));
        let stats = server.wait_for_stats(|s| held(s) == 0);
        assert!(pauses(&stats) >= 1, "{driver}: {stats}");
    }
}

#[test]
fn a_connection_paused_past_its_idle_timeout_is_closed_with_1013() {
    for driver in DRIVERS {
        let server = server(driver);
        let (_, framed_a) = large_message(b'a');
        let (_, framed_b) = large_message(b'b');
        let mut a = connect(&server, "/ws/patient");
        a.write_all(&framed_a[..framed_a.len() / 2]).unwrap();
        server.wait_for_stats(|s| held(s) > MESSAGE as u64 / 2);
        // B's route idles out after 1 s; heartbeats go on while it waits.
        let mut b = connect(&server, "/ws/short");
        let sending_b = send_in_background(&b, framed_b);
        assert_eq!(
            expect_close(&mut b),
            (1013, "server busy".to_owned()),
            "{driver}"
        );
        drop(b);
        let _ = sending_b.join();
        // A still holds its part and finishes normally.
        a.write_all(&framed_a[framed_a.len() / 2..]).unwrap();
        assert_eq!(next_data(&mut a).1.len(), MESSAGE, "{driver}");
    }
}

#[test]
fn a_request_head_the_budget_cannot_hold_is_answered_503() {
    for driver in DRIVERS {
        let server = server(driver);
        let (_, framed_a) = large_message(b'a');
        let mut a = connect(&server, "/ws/patient");
        a.write_all(&framed_a[..framed_a.len() / 2]).unwrap();
        server.wait_for_stats(|s| held(s) > MESSAGE as u64 / 2);
        // A head of 720 KiB (in few fields: `max_headers` is 64): its buffer grows by
        // doubling and reaches past the budget.
        let mut head = b"GET /health HTTP/1.1\r\nHost: x\r\n".to_vec();
        for i in 0..60 {
            let value = "f".repeat(12 * 1024);
            head.extend_from_slice(format!("X-Filler-{i}: {value}\r\n").as_bytes());
        }
        head.extend_from_slice(b"\r\n");
        let mut client = server.connect();
        let sending = send_in_background(&client, head);
        let response = read_response(&mut client).expect("an answer at the header timeout");
        assert_eq!(response.status, 503, "{driver}");
        assert_eq!(response.header("retry-after"), Some("1"), "{driver}");
        let _ = sending.join();
        // The server goes on.
        let health =
            server.request(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        assert_eq!(health.status, 200, "{driver}");
    }
}

#[test]
fn a_publish_body_the_budget_cannot_hold_is_answered_503() {
    for driver in DRIVERS {
        let server = server(driver);
        let (_a, _) = hold_half(&server, "/ws/patient", MESSAGE);
        server.wait_for_stats(|s| held(s) > MESSAGE as u64 / 2);
        let body = vec![b'p'; 500 * 1024];
        let mut client = server.connect();
        let head = format!(
            "POST /publish/t HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        client.write_all(head.as_bytes()).unwrap();
        let sending = send_in_background(&client, body);
        let response = read_response(&mut client).expect("an answer at the body's deadline");
        assert_eq!(response.status, 503, "{driver}");
        assert_eq!(response.header("retry-after"), Some("1"), "{driver}");
        let _ = sending.join();
    }
}

#[test]
fn an_upload_without_room_for_its_large_buffers_is_stored_in_small_pieces() {
    for driver in DRIVERS {
        let dir = std::env::temp_dir().join(format!(
            "ringstream-budget-upload-{driver}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let server = server_with_uploads(driver, &dir);
        // Two half-sent messages leave less than the upload's large buffers would take.
        let (_a, _) = hold_half(&server, "/ws/patient", MESSAGE);
        let (_b, _) = hold_half(&server, "/ws/patient", 400 * 1024);
        server.wait_for_stats(|s| held(s) > 1_000_000);
        let body: Vec<u8> = (0..700_000u32).map(|i| (i % 251) as u8).collect();
        let mut client = server.connect();
        let head = format!(
            "PUT /upload/small-pieces.bin HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        client.write_all(head.as_bytes()).unwrap();
        client.write_all(&body).unwrap();
        let response = read_response(&mut client).expect("an answer");
        assert_eq!(response.status, 201, "{driver}: {response:?}");
        assert_eq!(
            std::fs::read(dir.join("small-pieces.bin")).unwrap(),
            body,
            "{driver}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn a_message_being_reassembled_from_fragments_counts_against_the_budget() {
    for driver in DRIVERS {
        let server = server(driver);
        // A sends 500 KiB in 10 KiB fragments and holds back the last one.
        let mut a = connect(&server, "/ws/patient");
        let piece = vec![b'f'; 10 * 1024];
        let mut fragments = frame(false, 0, BINARY, &piece);
        for _ in 1..50 {
            fragments.extend(frame(false, 0, 0, &piece));
        }
        a.write_all(&fragments).unwrap();
        server.wait_for_stats(|s| held(s) >= 500 * 1024);
        // B's whole message does not fit beside A's reassembly.
        let (payload_b, framed_b) = large_message(b'b');
        let mut b = connect(&server, "/ws/patient");
        let sending_b = send_in_background(&b, framed_b);
        server.wait_for_stats(|s| pauses(s) >= 1);
        assert!(stays_quiet(&mut b), "{driver}: B waits");
        // A's last fragment: its message is echoed whole, its memory goes back, B goes on.
        a.write_all(&frame(true, 0, 0, &piece)).unwrap();
        let (opcode, echoed) = next_data(&mut a);
        assert_eq!((opcode, echoed.len()), (BINARY, 51 * 10 * 1024), "{driver}");
        assert_eq!(next_data(&mut b), (BINARY, payload_b), "{driver}: B's echo");
        sending_b.join().unwrap();
        // Both answered, their large buffers go back while the connections stay open.
        server.wait_for_stats(|s| held(s) <= 2 * 64 * 1024);
    }
}
