//! Every WebSocket row of PROTECTIONS.md against the real binary: the handshake refusals with
//! their statuses, and each per-connection protection with its exact close code and reason.
#![allow(clippy::unwrap_used, reason = "tests")]

mod support;

use std::io::Write;
use std::time::{Duration, Instant};

use support::ws::{
    BINARY, CLOSE, CONTINUATION, PING, PONG, TEXT, close_frame, connect, expect_close, frame,
    frame_with_mask, read_frame, upgrade_request,
};
use support::{PATIENCE, Server, assert_refused, is_closed, read_response};

const DRIVERS: [&str; 2] = ["uring", "poll"];

const CONFIG: &str = r#"
[limits]
max_message_size = 1000
max_fragments = 4

[[routes]]
path = "/ws/echo"
kind = "echo"

[[routes]]
path = "/ws/prefix"
kind = "echo"
response_prefix = "echo: "

[[routes]]
path = "/ws/proto"
kind = "echo"
subprotocols = ["chat.v2", "chat"]

[[routes]]
path = "/ws/origin"
kind = "echo"
[routes.limits]
allowed_origins = ["https://good.example"]

[[routes]]
path = "/ws/rate"
kind = "echo"
[routes.limits]
rate_limit = 5

[[routes]]
path = "/ws/drop"
kind = "echo"
[routes.limits]
rate_limit = 5
on_limit = "drop"

[[routes]]
path = "/ws/minute"
kind = "echo"
[routes.limits]
messages_per_minute = 3

[[routes]]
path = "/ws/bytes"
kind = "echo"
[routes.limits]
bytes_per_minute = 300

[[routes]]
path = "/ws/idle"
kind = "echo"
[routes.limits]
heartbeat_interval = "300ms"
timeout = "1s"
"#;

fn servers() -> impl Iterator<Item = Server> {
    DRIVERS
        .into_iter()
        .map(|driver| Server::with_config(CONFIG, &["--io-driver", driver]))
}

#[test]
fn echoes_text_binary_and_reassembled_fragments() {
    for server in servers() {
        let mut ws = connect(&server, "/ws/echo");
        for (opcode, payload) in [
            (TEXT, b"hello".to_vec()),
            (BINARY, vec![0u8; 0]),
            (BINARY, (0..=255u8).cycle().take(1000).collect()),
        ] {
            ws.write_all(&frame(true, 0, opcode, &payload)).unwrap();
            let echo = read_frame(&mut ws).unwrap();
            assert_eq!((echo.fin, echo.opcode), (true, opcode));
            assert_eq!(echo.payload, payload);
        }
        // Fragments with a ping in between: the pong comes first, then the whole message.
        let mut batch = frame(false, 0, TEXT, "héllo ".as_bytes());
        batch.extend(frame(true, 0, PING, b"p"));
        batch.extend(frame(false, 0, CONTINUATION, "wörld".as_bytes()));
        batch.extend(frame(true, 0, CONTINUATION, b"!"));
        ws.write_all(&batch).unwrap();
        let pong = read_frame(&mut ws).unwrap();
        assert_eq!((pong.opcode, pong.payload.as_slice()), (PONG, &b"p"[..]));
        let echo = read_frame(&mut ws).unwrap();
        assert_eq!(echo.opcode, TEXT);
        assert_eq!(echo.payload, "héllo wörld!".as_bytes());
        // The client's close is echoed, then the server closes the TCP connection.
        ws.write_all(&close_frame(1000, "bye")).unwrap();
        assert_eq!(read_frame(&mut ws).unwrap().close(), (1000, "bye".into()));
        assert!(is_closed(&mut ws));
    }
}

#[test]
fn response_prefix_and_subprotocol() {
    for server in servers() {
        response_prefix_and_subprotocol_on(&server);
    }
}

fn response_prefix_and_subprotocol_on(server: &Server) {
    let mut ws = connect(server, "/ws/prefix");
    ws.write_all(&frame(true, 0, TEXT, b"hi")).unwrap();
    assert_eq!(read_frame(&mut ws).unwrap().payload, b"echo: hi");

    let mut stream = server.connect();
    stream
        .write_all(&upgrade_request(
            "/ws/proto",
            "Sec-WebSocket-Protocol: other, chat\r\n",
        ))
        .unwrap();
    let response = read_response(&mut stream).unwrap();
    assert_eq!(response.status, 101);
    assert_eq!(response.header("sec-websocket-protocol"), Some("chat"));
    assert_eq!(response.header("sec-websocket-extensions"), None);
}

#[test]
fn bad_handshakes_get_their_status() {
    for server in servers() {
        let good = String::from_utf8(upgrade_request("/ws/echo", "")).unwrap();
        let cases: Vec<(String, u16)> = vec![
            (good.replacen("GET", "POST", 1), 400),
            (good.replace("Upgrade: websocket\r\n", ""), 400),
            (
                good.replace("Connection: Upgrade\r\n", "Connection: keep-alive\r\n"),
                400,
            ),
            (
                good.replace("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", ""),
                400,
            ),
            (good.replace("dGhlIHNhbXBsZSBub25jZQ==", "c2hvcnQ="), 400),
            ("GET /ws/echo HTTP/1.1\r\nHost: x\r\n\r\n".to_owned(), 400),
        ];
        for (request, status) in cases {
            assert_refused(&server, request.as_bytes(), status);
        }
        let response = assert_refused(
            &server,
            good.replace("Version: 13", "Version: 8").as_bytes(),
            426,
        );
        assert_eq!(response.header("sec-websocket-version"), Some("13"));
    }
}

#[test]
fn origin_outside_allowed_origins_is_403() {
    for server in servers() {
        origin_outside_allowed_origins_is_403_on(&server);
    }
}

fn origin_outside_allowed_origins_is_403_on(server: &Server) {
    for origin in ["", "Origin: https://evil.example\r\n"] {
        assert_refused(server, &upgrade_request("/ws/origin", origin), 403);
    }
    let mut stream = server.connect();
    stream
        .write_all(&upgrade_request(
            "/ws/origin",
            "Origin: https://GOOD.example\r\n",
        ))
        .unwrap();
    assert_eq!(read_response(&mut stream).unwrap().status, 101);
}

#[test]
fn oversized_messages_are_closed_with_1009_before_the_payload_arrives() {
    for server in servers() {
        // Only the header of a 5000-byte frame: the announcement alone is refused.
        let mut ws = connect(&server, "/ws/echo");
        let whole = frame(true, 0, BINARY, &[7u8; 5000]);
        ws.write_all(&whole[..8]).unwrap();
        assert_eq!(expect_close(&mut ws).0, 1009);
        // Fragments that add up past the limit.
        let mut ws = connect(&server, "/ws/echo");
        ws.write_all(&frame(false, 0, BINARY, &[1u8; 600])).unwrap();
        ws.write_all(&frame(true, 0, CONTINUATION, &[2u8; 600]))
            .unwrap();
        assert_eq!(expect_close(&mut ws).0, 1009);
        // Too many fragments.
        let mut ws = connect(&server, "/ws/echo");
        ws.write_all(&frame(false, 0, BINARY, b"x")).unwrap();
        for _ in 0..4 {
            ws.write_all(&frame(false, 0, CONTINUATION, b"x")).unwrap();
        }
        assert_eq!(expect_close(&mut ws).0, 1009);
    }
}

#[test]
fn protocol_errors_are_closed_with_1002() {
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("unmasked", frame_with_mask(true, 0, TEXT, b"x", None)),
        ("rsv", frame(true, 1, TEXT, b"x")),
        ("reserved opcode", frame(true, 0, 0x3, b"x")),
        ("stray continuation", frame(true, 0, CONTINUATION, b"x")),
        ("fragmented control", frame(false, 0, PING, b"x")),
        ("control over 125 bytes", frame(true, 0, PING, &[0u8; 126])),
        ("close code 1005", close_frame(1005, "")),
        ("close code 999", close_frame(999, "")),
        ("close code 5000", close_frame(5000, "")),
        ("one-byte close", frame(true, 0, CLOSE, &[3])),
    ];
    for server in servers() {
        for (name, bytes) in &cases {
            let mut ws = connect(&server, "/ws/echo");
            ws.write_all(bytes).unwrap();
            assert_eq!(expect_close(&mut ws).0, 1002, "{name}");
        }
        // A new data frame in the middle of a fragmented message.
        let mut ws = connect(&server, "/ws/echo");
        ws.write_all(&frame(false, 0, TEXT, b"a")).unwrap();
        ws.write_all(&frame(true, 0, TEXT, b"b")).unwrap();
        assert_eq!(expect_close(&mut ws).0, 1002);
    }
}

#[test]
fn invalid_utf8_is_closed_with_1007_even_mid_message() {
    for server in servers() {
        let mut ws = connect(&server, "/ws/echo");
        ws.write_all(&frame(true, 0, TEXT, &[0xff, 0xfe])).unwrap();
        assert_eq!(expect_close(&mut ws).0, 1007);
        // The first fragment is already invalid: refused before the message is complete.
        let mut ws = connect(&server, "/ws/echo");
        ws.write_all(&frame(false, 0, TEXT, &[b'a', 0xc0, 0x80]))
            .unwrap();
        assert_eq!(expect_close(&mut ws).0, 1007);
        let mut ws = connect(&server, "/ws/echo");
        let mut payload = 1000u16.to_be_bytes().to_vec();
        payload.extend_from_slice(&[0xff]);
        ws.write_all(&frame(true, 0, CLOSE, &payload)).unwrap();
        assert_eq!(expect_close(&mut ws).0, 1007);
        // A code point split across fragments is fine.
        let mut ws = connect(&server, "/ws/echo");
        ws.write_all(&frame(false, 0, TEXT, &[0xc3])).unwrap();
        ws.write_all(&frame(true, 0, CONTINUATION, &[0xa9]))
            .unwrap();
        assert_eq!(read_frame(&mut ws).unwrap().payload, "é".as_bytes());
    }
}

#[test]
fn message_rate_is_closed_with_1008_and_pings_count() {
    for server in servers() {
        let mut ws = connect(&server, "/ws/rate");
        for _ in 0..5 {
            ws.write_all(&frame(true, 0, PING, b"")).unwrap();
        }
        ws.write_all(&frame(true, 0, TEXT, b"one too many"))
            .unwrap();
        let (code, reason) = expect_close(&mut ws);
        assert_eq!(code, 1008);
        assert_eq!(reason, "rate limit exceeded: messages per second");
    }
}

#[test]
fn on_limit_drop_drops_and_keeps_the_connection() {
    for server in servers() {
        on_limit_drop_drops_and_keeps_the_connection_on(&server);
    }
}

fn on_limit_drop_drops_and_keeps_the_connection_on(server: &Server) {
    let mut ws = connect(server, "/ws/drop");
    let mut batch = Vec::new();
    for i in 0..8u8 {
        batch.extend(frame(true, 0, BINARY, &[i]));
    }
    ws.write_all(&batch).unwrap();
    let echoed: Vec<u8> = (0..5)
        .map(|_| read_frame(&mut ws).unwrap().payload[0])
        .collect();
    assert_eq!(echoed, [0, 1, 2, 3, 4]);
    std::thread::sleep(Duration::from_millis(1100));
    ws.write_all(&frame(true, 0, BINARY, b"z")).unwrap();
    assert_eq!(read_frame(&mut ws).unwrap().payload, b"z");
}

#[test]
fn messages_per_minute_and_bytes_per_minute_are_closed_with_1008() {
    for server in servers() {
        messages_per_minute_and_bytes_per_minute_are_closed_with_1008_on(&server);
    }
}

fn messages_per_minute_and_bytes_per_minute_are_closed_with_1008_on(server: &Server) {
    let mut ws = connect(server, "/ws/minute");
    for _ in 0..3 {
        ws.write_all(&frame(true, 0, TEXT, b"x")).unwrap();
        assert_eq!(read_frame(&mut ws).unwrap().payload, b"x");
    }
    ws.write_all(&frame(true, 0, TEXT, b"x")).unwrap();
    assert_eq!(
        expect_close(&mut ws),
        (1008, "rate limit exceeded: messages per minute".into())
    );

    let mut ws = connect(server, "/ws/bytes");
    ws.write_all(&frame(true, 0, BINARY, &[0u8; 200])).unwrap();
    assert_eq!(read_frame(&mut ws).unwrap().payload.len(), 200);
    ws.write_all(&frame(true, 0, BINARY, &[0u8; 200])).unwrap();
    assert_eq!(
        expect_close(&mut ws),
        (1008, "rate limit exceeded: bytes per minute".into())
    );
}

#[test]
fn heartbeat_pings_and_idle_timeout_closes_with_1000() {
    for server in servers() {
        let mut ws = connect(&server, "/ws/idle");
        let started = Instant::now();
        let ping = read_frame(&mut ws).unwrap();
        assert_eq!(ping.opcode, PING);
        // A pong keeps the connection alive past the first timeout...
        ws.write_all(&frame(true, 0, PONG, b"")).unwrap();
        // ...then silence ends it.
        assert_eq!(expect_close(&mut ws), (1000, "idle timeout".into()));
        assert!(started.elapsed() >= Duration::from_millis(1000));
        assert!(started.elapsed() < PATIENCE);
        ws.write_all(&close_frame(1000, "")).unwrap();
        assert!(is_closed(&mut ws));
    }
}

#[test]
fn drain_closes_websockets_with_1001() {
    for driver in DRIVERS {
        let mut server = Server::with_config(CONFIG, &["--io-driver", driver]);
        let mut ws = connect(&server, "/ws/echo");
        server.signal(libc::SIGTERM);
        assert_eq!(expect_close(&mut ws).0, 1001);
        ws.write_all(&close_frame(1001, "")).unwrap();
        assert_eq!(server.wait_exit(PATIENCE).code(), Some(0));
    }
}

#[test]
fn a_tungstenite_client_holds_a_normal_session() {
    for server in servers() {
        a_tungstenite_client_holds_a_normal_session_on(&server);
    }
}

fn a_tungstenite_client_holds_a_normal_session_on(server: &Server) {
    use tungstenite::Message;
    let url = format!("ws://{}/ws/echo", server.addr);
    let (mut socket, response) = tungstenite::connect(url).unwrap();
    assert_eq!(response.status(), 101);
    for i in 0..100 {
        let text = format!("message {i}");
        socket.send(Message::text(text.clone())).unwrap();
        assert_eq!(socket.read().unwrap(), Message::text(text));
    }
    socket.send(Message::binary(vec![9u8; 999])).unwrap();
    assert_eq!(socket.read().unwrap(), Message::binary(vec![9u8; 999]));
    socket.close(None).unwrap();
    // The server answers the close, then closes the connection.
    match socket.read() {
        Ok(Message::Close(_)) | Err(tungstenite::Error::ConnectionClosed) => {}
        other => panic!("expected the close handshake, got {other:?}"),
    }
}
