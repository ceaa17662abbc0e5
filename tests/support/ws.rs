//! A raw WebSocket client for tests: hand-built frames, so that every malformed case can be sent.
#![allow(
    dead_code,
    reason = "each test file uses a different part of the helpers"
)]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers fail the test loudly"
)]

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};

use super::{PATIENCE, Response, Server, read_response};

pub const CONTINUATION: u8 = 0x0;
pub const TEXT: u8 = 0x1;
pub const BINARY: u8 = 0x2;
pub const CLOSE: u8 = 0x8;
pub const PING: u8 = 0x9;
pub const PONG: u8 = 0xA;

/// The RFC 6455 §1.3 example key, and the accept value it must produce.
pub const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
pub const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// An upgrade request for `path` with `extra` header lines (each ending in CRLF).
pub fn upgrade_request(path: &str, extra: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
    .into_bytes()
}

/// Connects and upgrades on `path`; panics unless the answer is a correct 101.
pub fn connect(server: &Server, path: &str) -> TcpStream {
    connect_to(server.addr, path, "").0
}

/// Connects to `addr` and upgrades on `path` with `extra` header lines; panics unless the
/// answer is a correct 101, which is returned with the stream.
pub fn connect_to(addr: SocketAddr, path: &str, extra: &str) -> (TcpStream, Response) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    stream.set_nodelay(true).unwrap();
    stream.write_all(&upgrade_request(path, extra)).unwrap();
    let response = read_response(&mut stream).expect("a 101");
    assert_eq!(response.status, 101);
    assert_eq!(response.header("sec-websocket-accept"), Some(ACCEPT));
    (stream, response)
}

/// A client frame: masked, with `fin` and `opcode` as given (RSV bits in `rsv`, 0..=7).
pub fn frame(fin: bool, rsv: u8, opcode: u8, payload: &[u8]) -> Vec<u8> {
    frame_with_mask(fin, rsv, opcode, payload, Some([0x37, 0xfa, 0x21, 0x3d]))
}

/// A frame with an optional mask (`None` builds the unmasked frame a client must not send).
pub fn frame_with_mask(
    fin: bool,
    rsv: u8,
    opcode: u8,
    payload: &[u8],
    mask: Option<[u8; 4]>,
) -> Vec<u8> {
    let mut out = vec![(u8::from(fin) << 7) | (rsv << 4) | opcode];
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => out.push(mask_bit | n as u8),
        n if n <= usize::from(u16::MAX) => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    match mask {
        Some(key) => {
            out.extend_from_slice(&key);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        }
        None => out.extend_from_slice(payload),
    }
    out
}

/// A client close frame with `code` and `reason`.
pub fn close_frame(code: u16, reason: &str) -> Vec<u8> {
    let mut payload = code.to_be_bytes().to_vec();
    payload.extend_from_slice(reason.as_bytes());
    frame(true, 0, CLOSE, &payload)
}

/// A frame as the server sent it.
#[derive(Debug, PartialEq, Eq)]
pub struct ServerFrame {
    pub fin: bool,
    /// The RSV bits (RSV1 = 4: a compressed message, with permessage-deflate).
    pub rsv: u8,
    pub opcode: u8,
    pub payload: Vec<u8>,
}

impl ServerFrame {
    /// The close code and reason of a close frame.
    pub fn close(&self) -> (u16, String) {
        assert_eq!(self.opcode, CLOSE, "expected a close frame, got {self:?}");
        assert!(self.payload.len() >= 2, "close frame without a code");
        let code = u16::from_be_bytes([self.payload[0], self.payload[1]]);
        (code, String::from_utf8(self.payload[2..].to_vec()).unwrap())
    }
}

/// Reads one server frame; `None` on EOF or reset. Server frames must not be masked.
pub fn read_frame(stream: &mut impl Read) -> Option<ServerFrame> {
    let mut head = [0u8; 2];
    read_exact(stream, &mut head)?;
    assert_eq!(head[1] & 0x80, 0, "server frames are never masked");
    let len = match head[1] & 0x7f {
        126 => {
            let mut n = [0u8; 2];
            read_exact(stream, &mut n)?;
            u64::from(u16::from_be_bytes(n))
        }
        127 => {
            let mut n = [0u8; 8];
            read_exact(stream, &mut n)?;
            u64::from_be_bytes(n)
        }
        n => u64::from(n),
    };
    let mut payload = vec![0; usize::try_from(len).unwrap()];
    read_exact(stream, &mut payload)?;
    Some(ServerFrame {
        fin: head[0] & 0x80 != 0,
        rsv: (head[0] >> 4) & 0x07,
        opcode: head[0] & 0x0f,
        payload,
    })
}

/// Reads frames until a close frame; returns its code and reason (skipping pings and pongs).
pub fn expect_close(stream: &mut TcpStream) -> (u16, String) {
    loop {
        let frame = read_frame(stream).expect("a close frame before the connection ended");
        if frame.opcode != PING && frame.opcode != PONG {
            return frame.close();
        }
    }
}

fn read_exact(stream: &mut impl Read, buf: &mut [u8]) -> Option<()> {
    match stream.read_exact(buf) {
        Ok(()) => Some(()),
        Err(e)
            if matches!(
                e.kind(),
                ErrorKind::UnexpectedEof | ErrorKind::ConnectionReset
            ) =>
        {
            None
        }
        Err(e) => panic!("reading a frame: {e}"),
    }
}

/// A client that sends `bytes` on `stream` `times` over from a thread of its own and reads
/// nothing meanwhile (`stream` stays with the caller, to read what came back later).
pub fn send_without_reading(
    stream: &TcpStream,
    bytes: Vec<u8>,
    times: usize,
) -> std::thread::JoinHandle<()> {
    let mut writer = stream.try_clone().unwrap();
    std::thread::spawn(move || {
        for _ in 0..times {
            writer.write_all(&bytes).unwrap();
        }
    })
}
