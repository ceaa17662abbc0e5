//! The WebSocket load: `echo` (verified echoes of binary or text messages on open
//! connections) and `handshake` (connect, upgrade, close handshake, disconnect).
//!
//! Every client frame of a connection uses the same mask key (a benchmark may: the server
//! cannot tell), so a message costs the client eight XORs for its counter and one compare.

use std::cell::{Cell, RefCell};
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Instant;

use compio::BufResult;
use compio::io::{AsyncReadExt, AsyncWriteExt};
use compio::net::TcpStream;
use ringstream_protocol::ws::{FrameHeader, OpCode, apply_mask};

use super::Phase;
use super::stats::Stats;

/// The mask key of every client frame.
pub(super) const KEY: [u8; 4] = [0x5c, 0x1e, 0xa7, 0x33];
/// RFC 6455 §1.3's example key, and the accept value the server must answer with.
const CLIENT_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// Where to connect and what to ask for.
#[derive(Debug, Clone)]
pub struct Target {
    /// Server address.
    pub addr: SocketAddr,
    /// Upgrade request bytes.
    pub upgrade: Rc<[u8]>,
}

impl Target {
    /// The target of `ws://HOST:PORT/PATH`.
    pub fn from_url(url: &str) -> Result<Self, String> {
        let rest = url
            .strip_prefix("ws://")
            .ok_or_else(|| format!("{url}: only ws:// URLs are supported"))?;
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let addr = authority
            .parse()
            .map_err(|e| format!("{authority}: not an IP:PORT address ({e})"))?;
        let upgrade = format!(
            "GET /{path} HTTP/1.1\r\nHost: {authority}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: {CLIENT_KEY}\r\n\
             Sec-WebSocket-Version: 13\r\n\r\n"
        );
        Ok(Self {
            addr,
            upgrade: upgrade.into_bytes().into(),
        })
    }

    /// The same target, its upgrade request carrying `header` (`Name: value`, without CRLF).
    pub fn with_header(&self, header: &str) -> Self {
        let mut upgrade = self.upgrade[..self.upgrade.len() - 2].to_vec();
        upgrade.extend_from_slice(header.as_bytes());
        upgrade.extend_from_slice(b"\r\n\r\n");
        Self {
            addr: self.addr,
            upgrade: upgrade.into(),
        }
    }
}

/// One client connection with its read buffer.
pub(super) struct Client {
    pub(super) stream: TcpStream,
    /// Bytes read; `buf[pos..]` is not parsed yet.
    pub(super) buf: Vec<u8>,
    pub(super) pos: usize,
    /// The 101 agreed permessage-deflate.
    pub(super) deflate_agreed: bool,
}

impl Client {
    /// Connects and upgrades; checks the 101 and its accept value.
    pub(super) async fn open(target: &Target) -> io::Result<Self> {
        let stream = TcpStream::connect(target.addr).await?;
        stream.set_nodelay(true)?;
        let mut client = Self {
            stream,
            buf: Vec::with_capacity(64 * 1024),
            pos: 0,
            deflate_agreed: false,
        };
        let BufResult(result, _) = client.stream.write_all(target.upgrade.to_vec()).await;
        result?;
        let head_end = loop {
            if let Some(i) = client.buf[client.pos..]
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
            {
                break client.pos + i + 4;
            }
            client.fill().await?;
        };
        let head = String::from_utf8_lossy(&client.buf[..head_end]);
        if !head.starts_with("HTTP/1.1 101") || !head.contains(ACCEPT) {
            return Err(io::Error::other(format!(
                "upgrade refused: {}",
                head.lines().next().unwrap_or("")
            )));
        }
        client.pos = head_end;
        client.deflate_agreed = head.lines().any(|line| {
            let line = line.to_ascii_lowercase();
            line.starts_with("sec-websocket-extensions:") && line.contains("permessage-deflate")
        });
        Ok(client)
    }

    /// Reads more bytes into the buffer; an error at EOF.
    async fn fill(&mut self) -> io::Result<()> {
        if self.pos > 0 && self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        }
        if self.buf.len() == self.buf.capacity() {
            self.buf.reserve(self.buf.capacity());
        }
        let BufResult(result, buf) = self.stream.append(std::mem::take(&mut self.buf)).await;
        self.buf = buf;
        match result? {
            0 => Err(io::Error::from(io::ErrorKind::UnexpectedEof)),
            _ => Ok(()),
        }
    }

    /// Reads one server frame; returns its header and the payload's range in `self.buf`.
    async fn read_frame(&mut self) -> io::Result<(FrameHeader, std::ops::Range<usize>)> {
        loop {
            if let Some((header, len)) = FrameHeader::parse(&self.buf[self.pos..])
                .map_err(|e| io::Error::other(format!("bad server frame: {e:?}")))?
            {
                let payload = usize::try_from(header.payload_len).map_err(io::Error::other)?;
                let start = self.pos + len;
                if self.buf.len() >= start + payload {
                    if header.mask.is_some() {
                        return Err(io::Error::other("masked server frame"));
                    }
                    self.pos = start + payload;
                    return Ok((header, start..start + payload));
                }
                self.buf.reserve(start + payload - self.buf.len());
            }
            self.fill().await?;
        }
    }
}

impl Client {
    /// Reads the next message and checks that it is the echo of message `n` (`expected` is
    /// scratch of the message's size); the error says what went wrong.
    pub(super) async fn read_echo(
        &mut self,
        payload: Payload,
        n: u64,
        expected: &mut [u8],
    ) -> Result<(), String> {
        let (header, range) = self
            .read_message()
            .await
            .map_err(|e| format!("read: {e}"))?;
        expected_payload(payload, n, expected);
        if header.opcode != payload.opcode() || self.buf[range] != expected[..] {
            return Err(format!("wrong echo of message {n}"));
        }
        Ok(())
    }

    /// Reads the next data or close frame; answers the server's heartbeat pings on the way
    /// (the server pings every `heartbeat_interval`, busy or not) and skips pongs.
    pub(super) async fn read_message(
        &mut self,
    ) -> io::Result<(FrameHeader, std::ops::Range<usize>)> {
        loop {
            let (header, range) = self.read_frame().await?;
            match header.opcode {
                OpCode::Ping => {
                    let mut pong = Vec::with_capacity(range.len() + 6);
                    FrameHeader {
                        fin: true,
                        rsv: 0,
                        opcode: OpCode::Pong,
                        mask: Some(KEY),
                        payload_len: range.len() as u64,
                    }
                    .write(&mut pong);
                    let start = pong.len();
                    pong.extend_from_slice(&self.buf[range]);
                    apply_mask(&mut pong[start..], KEY, 0);
                    let BufResult(result, _) = self.stream.write_all(pong).await;
                    result?;
                }
                OpCode::Pong => {}
                _ => return Ok((header, range)),
            }
        }
    }
}

/// What the messages of an `echo` load carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Payload {
    /// Binary frames: the message's counter (little-endian), then a pattern of every byte
    /// value.
    Binary,
    /// Text frames: the counter in hexadecimal digits, then printable ASCII (valid UTF-8).
    Text,
}

impl Payload {
    fn opcode(self) -> OpCode {
        match self {
            Self::Binary => OpCode::Binary,
            Self::Text => OpCode::Text,
        }
    }

    /// The first (up to) 8 payload bytes of message `n`: its counter.
    fn counter(self, n: u64) -> [u8; 8] {
        match self {
            Self::Binary => n.to_le_bytes(),
            Self::Text => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                let mut digits = [0u8; 8];
                for (i, digit) in digits.iter_mut().enumerate() {
                    *digit = HEX[((n >> (4 * i)) & 0xf) as usize];
                }
                digits
            }
        }
    }

    /// Payload byte `i` past the counter.
    fn pattern(self, i: usize) -> u8 {
        match self {
            Self::Binary => (i as u8).wrapping_mul(31),
            Self::Text => b' ' + (i % 95) as u8,
        }
    }
}

/// The messages of one `echo` connection.
#[derive(Debug, Clone, Copy)]
pub struct EchoShape {
    /// Payload bytes per message.
    pub size: usize,
    /// Messages in flight.
    pub depth: usize,
    /// Binary or text frames.
    pub payload: Payload,
}

/// The unmasked payload of message `n`: a counter, then a fixed pattern.
fn expected_payload(payload: Payload, n: u64, out: &mut [u8]) {
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = payload.pattern(i);
    }
    let counter = payload.counter(n);
    let len = out.len().min(8);
    out[..len].copy_from_slice(&counter[..len]);
}

/// Writes message `n`'s counter, masked, over the start of a client frame's `payload` (the
/// first 8 bytes at most).
pub(super) fn stamp_counter(payload: Payload, n: u64, masked: &mut [u8]) {
    let counter = payload.counter(n);
    for (i, byte) in masked.iter_mut().take(8).enumerate() {
        *byte = counter[i] ^ KEY[i % 4];
    }
}

/// A masked client frame of `size` bytes.
pub(super) fn client_frame(payload: Payload, size: usize, n: u64) -> Vec<u8> {
    let mut frame = Vec::with_capacity(size + 14);
    FrameHeader {
        fin: true,
        rsv: 0,
        opcode: payload.opcode(),
        mask: Some(KEY),
        payload_len: size as u64,
    }
    .write(&mut frame);
    let start = frame.len();
    frame.resize(start + size, 0);
    expected_payload(payload, n, &mut frame[start..]);
    apply_mask(&mut frame[start..], KEY, 0);
    frame
}

/// One connection of the `echo` load: `shape.depth` messages of `shape.size` bytes in
/// flight, each echo compared with what was sent, byte for byte and frame type.
pub async fn echo(
    target: Target,
    shape: EchoShape,
    phase: Rc<Cell<Phase>>,
    stats: Rc<RefCell<Stats>>,
) {
    let EchoShape {
        size,
        depth,
        payload,
    } = shape;
    let mut client = match Client::open(&target).await {
        Ok(client) => client,
        Err(e) => return stats.borrow_mut().error(format!("connect: {e}")),
    };
    // The template is built once; per message only the 8 counter bytes change.
    let template = client_frame(payload, size, 0);
    let mut batch = Vec::with_capacity(template.len() * depth);
    let mut expected = vec![0u8; size];
    let mut n: u64 = 0;
    while phase.get() != Phase::Done {
        batch.clear();
        for k in 0..depth as u64 {
            batch.extend_from_slice(&template);
            let at = batch.len() - size;
            stamp_counter(payload, n + k, &mut batch[at..]);
        }
        let sent = Instant::now();
        let BufResult(result, returned) = client.stream.write_all(batch).await;
        batch = returned;
        if let Err(e) = result {
            return stats.borrow_mut().error(format!("write: {e}"));
        }
        for _ in 0..depth {
            if let Err(e) = client.read_echo(payload, n, &mut expected).await {
                return stats.borrow_mut().error(e);
            }
            n += 1;
            if phase.get() == Phase::Measure {
                stats.borrow_mut().record(sent.elapsed());
            }
        }
    }
}

/// One worker of the `handshake` load: connect, upgrade, close handshake, disconnect, again.
pub async fn handshake(target: Target, phase: Rc<Cell<Phase>>, stats: Rc<RefCell<Stats>>) {
    let mut close = Vec::new();
    FrameHeader {
        fin: true,
        rsv: 0,
        opcode: OpCode::Close,
        mask: Some(KEY),
        payload_len: 2,
    }
    .write(&mut close);
    close.extend_from_slice(&[0x03 ^ KEY[0], 0xe8 ^ KEY[1]]);
    while phase.get() != Phase::Done {
        let started = Instant::now();
        match one_handshake(&target, close.clone()).await {
            Ok(()) if phase.get() == Phase::Measure => stats.borrow_mut().record(started.elapsed()),
            Ok(()) => {}
            Err(e) => {
                stats.borrow_mut().error(format!("handshake: {e}"));
                return;
            }
        }
    }
}

async fn one_handshake(target: &Target, close: Vec<u8>) -> io::Result<()> {
    let mut client = Client::open(target).await?;
    let BufResult(result, _) = client.stream.write_all(close).await;
    result?;
    let (header, range) = client.read_message().await?;
    if header.opcode != OpCode::Close || client.buf[range] != [0x03, 0xe8] {
        return Err(io::Error::other(
            "the server did not answer the close with 1000",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;
    use ringstream_protocol::ws::apply_mask;

    #[test]
    fn client_frames_unmask_to_the_expected_payload() {
        for kind in [Payload::Binary, Payload::Text] {
            for size in [0usize, 3, 8, 32, 300, 70_000] {
                let frame = client_frame(kind, size, 0x0102_0304_0506_0708);
                let (header, len) = FrameHeader::parse(&frame).unwrap().unwrap();
                assert_eq!(header.opcode, kind.opcode());
                assert_eq!(header.payload_len, size as u64);
                let mut payload = frame[len..].to_vec();
                apply_mask(&mut payload, header.mask.unwrap(), 0);
                let mut expected = vec![0; size];
                expected_payload(kind, 0x0102_0304_0506_0708, &mut expected);
                assert_eq!(payload, expected);
            }
        }
    }

    #[test]
    fn text_payloads_are_ascii_and_carry_the_counter() {
        let mut payload = vec![0; 300];
        expected_payload(Payload::Text, 0xfedc_ba98, &mut payload);
        assert!(payload.iter().all(|b| (b' '..=b'~').contains(b)));
        assert_eq!(&payload[..8], b"89abcdef");
        let mut other = vec![0; 300];
        expected_payload(Payload::Text, 0xfedc_ba99, &mut other);
        assert_ne!(payload, other);
    }

    #[test]
    fn urls() {
        let target = Target::from_url("ws://127.0.0.1:8080/ws/echo").unwrap();
        assert_eq!(target.addr, "127.0.0.1:8080".parse().unwrap());
        assert!(target.upgrade.starts_with(b"GET /ws/echo HTTP/1.1\r\n"));
        assert!(Target::from_url("http://x").is_err());
    }

    #[test]
    fn an_extra_header_goes_before_the_blank_line() {
        let target = Target::from_url("ws://127.0.0.1:8080/ws/echo").unwrap();
        let offered = target.with_header("Sec-WebSocket-Extensions: permessage-deflate");
        let request = std::str::from_utf8(&offered.upgrade).unwrap();
        assert!(request.ends_with(
            "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n"
        ));
    }
}
