//! `conn::ws::serve` after a scripted upgrade on an echo route: frames split anywhere, the
//! order of answers, the close handshake, failures, the idle timeout and a client that stops
//! reading.

use std::net::Ipv4Addr;
use std::time::Duration;

use ringstream_protocol::ws::{
    FrameHeader, OpCode, apply_mask, write_close_frame, write_frame_header,
};

use bytes::Bytes;

use super::harness::{Then, assert_deadline, bytewise, script, serve, without_dates};
use crate::config::{Route, RouteKind, ServerConfig};

/// The handshake of RFC 6455 §1.3.
const UPGRADE: &[u8] = b"GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
const SWITCHED: &str = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// An echo route, with `adjust` applied to it.
fn config(adjust: impl FnOnce(&mut Route)) -> ServerConfig {
    let mut config = ServerConfig::new((Ipv4Addr::LOCALHOST, 0).into()).route(
        "/echo",
        RouteKind::Echo {
            response_prefix: Vec::new(),
            subprotocols: Vec::new(),
        },
    );
    adjust(&mut config.routes[0]);
    config
}

/// A client frame: FIN set, masked with [`KEY`] unless `mask` is false.
fn client_frame(opcode: OpCode, payload: &[u8], mask: bool) -> Vec<u8> {
    let mut out = Vec::new();
    FrameHeader {
        fin: true,
        rsv: 0,
        opcode,
        mask: mask.then_some(KEY),
        payload_len: payload.len() as u64,
    }
    .write(&mut out);
    let start = out.len();
    out.extend_from_slice(payload);
    if mask {
        apply_mask(&mut out[start..], KEY, 0);
    }
    out
}

fn masked(opcode: OpCode, payload: &[u8]) -> Vec<u8> {
    client_frame(opcode, payload, true)
}

fn client_close(code: u16, reason: &str) -> Vec<u8> {
    masked(
        OpCode::Close,
        &[&code.to_be_bytes()[..], reason.as_bytes()].concat(),
    )
}

/// A server frame.
fn server_frame(opcode: OpCode, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    write_frame_header(&mut out, opcode, true, payload.len() as u64);
    out.extend_from_slice(payload);
    out
}

fn server_close(code: u16, reason: &str) -> Vec<u8> {
    let mut out = Vec::new();
    write_close_frame(&mut out, Some(code), reason.as_bytes());
    out
}

/// What the client should receive: the 101, then `frames`.
fn switched_then(frames: &[Vec<u8>]) -> Bytes {
    without_dates(&[SWITCHED.as_bytes(), &frames.concat()].concat())
}

#[test]
fn a_text_frame_split_at_every_offset_is_echoed_exactly() {
    let close = client_close(1000, "bye");
    // A 7-bit length and a 16-bit one.
    for payload in ["Hello, wörld".to_string(), "ü".repeat(100)] {
        let frame = masked(OpCode::Text, payload.as_bytes());
        let expected = switched_then(&[
            server_frame(OpCode::Text, payload.as_bytes()),
            server_close(1000, "bye"),
        ]);
        // Cut anywhere, the first part read with the handshake.
        for at in 0..=frame.len() {
            let first = [UPGRADE, &frame[..at]].concat();
            let second = [&frame[at..], &close[..]].concat();
            let served = serve(config(|_| {}), script(vec![first, second], Then::Silent));
            assert_eq!(served.output(), expected, "cut at {at}");
            assert!(served.fin.is_some(), "cut at {at}");
        }
        let mut chunks = vec![UPGRADE.to_vec()];
        chunks.extend(bytewise(&[&frame[..], &close[..]].concat()));
        let served = serve(config(|_| {}), script(chunks, Then::Silent));
        assert_eq!(served.output(), expected, "one byte per read");
    }
}

#[test]
fn pings_get_pongs_in_order_with_the_echoes() {
    let read = [
        masked(OpCode::Text, b"one"),
        masked(OpCode::Ping, b"p"),
        masked(OpCode::Binary, b"two"),
        masked(OpCode::Ping, b""),
        client_close(1000, ""),
    ]
    .concat();
    let served = serve(
        config(|_| {}),
        script(vec![UPGRADE.to_vec(), read], Then::Silent),
    );
    let expected = switched_then(&[
        server_frame(OpCode::Text, b"one"),
        server_frame(OpCode::Pong, b"p"),
        server_frame(OpCode::Binary, b"two"),
        server_frame(OpCode::Pong, b""),
        server_close(1000, ""),
    ]);
    assert_eq!(served.output(), expected);
}

#[test]
fn a_close_frame_gets_its_code_back_and_the_connection_ends() {
    let chunks = vec![UPGRADE.to_vec(), client_close(4000, "bye")];
    // The client never closes its side: the server ends the connection itself.
    let served = serve(config(|_| {}), script(chunks, Then::Silent));
    assert_eq!(served.output(), switched_then(&[server_close(4000, "bye")]));
    assert!(served.fin.is_some());
}

#[test]
fn an_unmasked_frame_fails_the_connection_with_1002() {
    let chunks = vec![UPGRADE.to_vec(), client_frame(OpCode::Text, b"hi", false)];
    let served = serve(config(|_| {}), script(chunks, Then::EofAfterFin));
    assert_eq!(
        served.output(),
        switched_then(&[server_close(1002, "protocol error")])
    );
    assert!(served.fin.is_some());
}

#[test]
fn a_message_over_max_message_size_fails_with_1009_on_its_header() {
    let config = config(|route| route.ws.max_message_size = 16);
    let frame = masked(OpCode::Binary, &[7; 17]);
    let header_len = frame.len() - 17;
    let served = serve(config, move |client| async move {
        client.send(UPGRADE);
        // Only the header: the server must not wait for the payload.
        client.send(&frame[..header_len]);
        client.wait_for(|_, fin| fin).await;
        client.close();
    });
    assert_eq!(
        served.output(),
        switched_then(&[server_close(1009, "message too big")])
    );
}

#[test]
fn an_idle_connection_is_closed_with_1000_idle_timeout() {
    let timeout = Duration::from_millis(200);
    let config = config(|route| route.ws.timeout = timeout);
    let close = server_close(1000, "idle timeout");
    let answer = client_close(1000, "");
    let answer_len = answer.len();
    let served = serve(config, |client| async move {
        client.send(UPGRADE);
        client.wait_for(|output, _| output.ends_with(&close)).await;
        client.send(answer);
    });
    assert_eq!(
        served.output(),
        switched_then(&[server_close(1000, "idle timeout")])
    );
    let [switched, closed] = &served.writes[..] else {
        panic!("two writes: {:?}", served.writes);
    };
    assert_deadline(closed.at - switched.at, timeout);
    // The server read the client's close frame, which ends its wait for it.
    assert_eq!(served.bytes_read, UPGRADE.len() + answer_len);
}

#[test]
fn a_client_that_never_reads_is_cut_after_send_timeout() {
    let timeout = Duration::from_millis(200);
    let config = config(|route| route.limits.send_timeout = timeout);
    let served = serve(config, |client| async move {
        // It reads the 101 and nothing more.
        client.stop_reading_after(SWITCHED.len());
        client.send(UPGRADE);
        client.send(masked(OpCode::Text, b"echo me"));
    });
    assert_eq!(served.output(), switched_then(&[]));
    let stalled = served.writes.last().unwrap();
    assert_deadline(served.elapsed - stalled.at, timeout);
    assert_eq!(served.fin, None);
}
