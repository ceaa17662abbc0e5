//! One member connection of the broadcast load: its one read buffer, the frames it parses in
//! place and verifies, the pongs it answers the server's pings with, its close handshake; and
//! the masked client frames it writes. A message is one binary frame on a plain WebSocket, or
//! a Socket.IO event ([`Framing`], [`super::socketio`]). With permessage-deflate agreed, a
//! compressed frame (RSV1) is inflated before it is checked.

use std::io;
use std::ops::Range;

use compio::BufResult;
use compio::io::{AsyncReadExt, AsyncWriteExt};
use compio::net::TcpStream;
use ringstream_protocol::ws::deflate::{DeflateParams, Inflater};
use ringstream_protocol::ws::{FrameHeader, OpCode, apply_mask};

use super::super::ws::{Client, KEY};
use super::message::{Header, Received, Verifier, Violation, encode_message};
use super::socketio::{self, BINARY_EVENT, PONG, Payload, ServerPacket};

/// Free room a read needs at the end of the buffer; below it, unparsed bytes move to the front.
const MIN_READ_ROOM: usize = 16 * 1024;
/// Largest server frame accepted (the server's `max_message_size` is far below it).
const MAX_FRAME: usize = 16 * 1024 * 1024;

/// Appends a masked client frame carrying `payload`.
pub(super) fn push_client_frame(out: &mut Vec<u8>, opcode: OpCode, payload: &[u8]) {
    push_client_header(out, opcode, payload.len());
    let start = out.len();
    out.extend_from_slice(payload);
    apply_mask(&mut out[start..], KEY, 0);
}

/// Appends the header of a masked client frame of `len` payload bytes.
fn push_client_header(out: &mut Vec<u8>, opcode: OpCode, len: usize) {
    FrameHeader {
        fin: true,
        rsv: 0,
        opcode,
        mask: Some(KEY),
        payload_len: len as u64,
    }
    .write(out);
}

/// How messages travel on a member's connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// One binary frame per message.
    WebSocket,
    /// A Socket.IO event per message, its payload carried as `Payload` says.
    SocketIo(Payload),
}

/// Appends `payload` (an end marker) as one message framed as `framing` says.
pub(super) fn push_payload(out: &mut Vec<u8>, framing: Framing, payload: &[u8]) {
    match framing {
        Framing::WebSocket => push_client_frame(out, OpCode::Binary, payload),
        Framing::SocketIo(Payload::Binary) => {
            push_client_frame(out, OpCode::Text, BINARY_EVENT);
            push_client_frame(out, OpCode::Binary, payload);
        }
        Framing::SocketIo(Payload::Text) => {
            push_text_event(out, payload.len(), |bytes| bytes.copy_from_slice(payload));
        }
    }
}

/// Appends message `header` of `size` payload bytes, framed as `framing` says, building it in
/// place.
pub(super) fn push_message(out: &mut Vec<u8>, framing: Framing, header: Header, size: usize) {
    let opcode = match framing {
        Framing::WebSocket => OpCode::Binary,
        Framing::SocketIo(Payload::Binary) => {
            push_client_frame(out, OpCode::Text, BINARY_EVENT);
            OpCode::Binary
        }
        Framing::SocketIo(Payload::Text) => {
            return push_text_event(out, size, |bytes| encode_message(header, bytes));
        }
    };
    push_client_header(out, opcode, size);
    let start = out.len();
    out.resize(start + size, 0);
    encode_message(header, &mut out[start..]);
    apply_mask(&mut out[start..], KEY, 0);
}

/// Appends a Socket.IO text event whose `size` bytes `encode` writes, as a masked text frame.
fn push_text_event(out: &mut Vec<u8>, size: usize, encode: impl FnOnce(&mut [u8])) {
    let len = socketio::text_event_len(size);
    push_client_header(out, OpCode::Text, len);
    let start = out.len();
    out.resize(start + len, 0);
    socketio::write_text_event(&mut out[start..], size, encode);
    apply_mask(&mut out[start..], KEY, 0);
}

/// What a member makes of the server's frames, framed as `framing` says.
#[derive(Debug)]
struct Decoder {
    framing: Framing,
    /// Socket.IO: an attachment was announced, the next binary frame is the message.
    attachment_due: bool,
    /// Socket.IO text events: the message decoded from its hexadecimal.
    decoded: Vec<u8>,
}

impl Decoder {
    fn new(framing: Framing) -> Self {
        Self {
            framing,
            attachment_due: false,
            decoded: Vec::new(),
        }
    }

    /// One server frame: a message (checked by `verifier`), or `None` for a frame that only
    /// announces one or asks for a pong (queued on `out`). A close or a frame out of place is
    /// an error.
    fn frame(
        &mut self,
        opcode: OpCode,
        payload: &[u8],
        verifier: &mut Verifier,
        out: &mut Vec<u8>,
    ) -> io::Result<Option<Result<Received, Violation>>> {
        match (opcode, self.framing) {
            (OpCode::Binary, Framing::WebSocket) => Ok(Some(verifier.check(payload))),
            (OpCode::Binary, Framing::SocketIo(_)) => {
                if !std::mem::take(&mut self.attachment_due) {
                    return Err(io::Error::other("a binary frame no event announced"));
                }
                Ok(Some(verifier.check(payload)))
            }
            (OpCode::Text, Framing::SocketIo(_)) => {
                if self.attachment_due {
                    return Err(io::Error::other("an event instead of the attachment due"));
                }
                match socketio::parse(payload).map_err(io::Error::other)? {
                    ServerPacket::Ping => push_client_frame(out, OpCode::Text, PONG),
                    ServerPacket::Attachment => self.attachment_due = true,
                    ServerPacket::Hex(hex) => {
                        if !socketio::decode_hex(hex, &mut self.decoded) {
                            return Err(io::Error::other("a text event that is not hex"));
                        }
                        return Ok(Some(verifier.check(&self.decoded)));
                    }
                    ServerPacket::Open | ServerPacket::Connected => {
                        return Err(io::Error::other("a second Socket.IO connect"));
                    }
                }
                Ok(None)
            }
            // The server pings every heartbeat_interval, busy or not.
            (OpCode::Ping, _) => {
                push_client_frame(out, OpCode::Pong, payload);
                Ok(None)
            }
            (OpCode::Pong, _) => Ok(None),
            (OpCode::Close, _) => Err(io::Error::other(format!(
                "closed by the server: {}",
                describe_close(payload)
            ))),
            (other, _) => Err(io::Error::other(format!("unexpected {other:?} frame"))),
        }
    }
}

/// One member connection: its stream, its one read buffer, its verifier.
pub(super) struct Member {
    /// The upgraded connection.
    pub(super) stream: TcpStream,
    /// Bytes read; `buf[pos..]` is not parsed yet.
    buf: Vec<u8>,
    pos: usize,
    /// Pongs and the close waiting to be written (allocated by the first ping).
    out: Vec<u8>,
    /// Checks every message received.
    pub(super) verifier: Verifier,
    decoder: Decoder,
    /// With permessage-deflate agreed: the inflater, and where a message is inflated.
    inflater: Option<Box<Inflater>>,
    inflated: Vec<u8>,
}

/// The client's side of what the server compresses with: any window, and the window kept
/// between messages (a message compressed afresh inflates the same with or without it, and
/// not resetting the inflater per message keeps the load generator's cost down).
const SERVER_COMPRESSION: DeflateParams = DeflateParams {
    server_no_context_takeover: true,
    client_no_context_takeover: false,
    server_max_window_bits: 15,
    client_max_window_bits: 15,
};

impl Member {
    /// A member on an upgraded (and, for Socket.IO, connected) `client` whose messages are
    /// framed as `framing` says, checking what it receives with `verifier`.
    pub(super) fn new(client: Client, framing: Framing, verifier: Verifier) -> Self {
        Self {
            inflater: client
                .deflate_agreed
                .then(|| Box::new(Inflater::new(&SERVER_COMPRESSION))),
            stream: client.stream,
            buf: client.buf,
            pos: client.pos,
            out: Vec::new(),
            verifier,
            decoder: Decoder::new(framing),
            inflated: Vec::new(),
        }
    }

    /// How this member's messages are framed.
    pub(super) fn framing(&self) -> Framing {
        self.decoder.framing
    }

    /// Reads more bytes. Parsed bytes are dropped first, and unparsed ones move to the front
    /// when the room runs low, so the buffer keeps its size however long the stream runs.
    pub(super) async fn read_more(&mut self) -> io::Result<()> {
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        } else if self.buf.capacity() - self.buf.len() < MIN_READ_ROOM {
            self.buf.drain(..self.pos);
            self.pos = 0;
            // Only a frame larger than the buffer needs more.
            self.buf.reserve(MIN_READ_ROOM);
        }
        let BufResult(result, buf) = self.stream.append(std::mem::take(&mut self.buf)).await;
        self.buf = buf;
        match result? {
            0 => Err(io::Error::from(io::ErrorKind::UnexpectedEof)),
            _ => Ok(()),
        }
    }

    /// The next complete frame in the buffer and its payload's range, or `None`.
    fn next_frame(&mut self) -> io::Result<Option<(FrameHeader, Range<usize>)>> {
        let Some((header, len)) = FrameHeader::parse(&self.buf[self.pos..])
            .map_err(|e| io::Error::other(format!("bad server frame: {e:?}")))?
        else {
            return Ok(None);
        };
        let payload = usize::try_from(header.payload_len)
            .ok()
            .filter(|&n| n <= MAX_FRAME)
            .ok_or_else(|| io::Error::other("server frame too large"))?;
        if header.mask.is_some() || !header.fin {
            return Err(io::Error::other("masked or fragmented server frame"));
        }
        if header.rsv != 0 && (header.rsv != 0b100 || self.inflater.is_none()) {
            return Err(io::Error::other(format!(
                "server frame with RSV bits {:03b}",
                header.rsv
            )));
        }
        let start = self.pos + len;
        if self.buf.len() < start + payload {
            return Ok(None);
        }
        self.pos = start + payload;
        Ok(Some((header, start..self.pos)))
    }

    /// Handles every complete frame in the buffer: messages go to `on_message` verified,
    /// pings (WebSocket's and engine.io's) get a pong queued; a close from the server is an
    /// error.
    pub(super) fn take_frames(
        &mut self,
        mut on_message: impl FnMut(Result<Received, Violation>),
    ) -> io::Result<()> {
        while let Some((header, range)) = self.next_frame()? {
            let mut payload = &self.buf[range];
            if header.rsv == 0b100
                && let Some(inflater) = &mut self.inflater
            {
                self.inflated.clear();
                inflater
                    .inflate(payload, MAX_FRAME, &mut self.inflated)
                    .map_err(|e| io::Error::other(format!("a compressed frame: {e:?}")))?;
                payload = &self.inflated;
            }
            if let Some(message) =
                self.decoder
                    .frame(header.opcode, payload, &mut self.verifier, &mut self.out)?
            {
                on_message(message);
            }
        }
        Ok(())
    }

    /// Writes the queued pongs.
    pub(super) async fn flush(&mut self) -> io::Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        let BufResult(result, mut out) = self.stream.write_all(std::mem::take(&mut self.out)).await;
        out.clear();
        self.out = out;
        result
    }

    /// The close handshake (RFC 6455 §5.5.1): sends 1000, reads up to the server's close.
    pub(super) async fn close(mut self) -> io::Result<()> {
        self.out.clear();
        push_client_frame(&mut self.out, OpCode::Close, &1000u16.to_be_bytes());
        self.flush().await?;
        loop {
            while let Some((header, _)) = self.next_frame()? {
                if header.opcode == OpCode::Close {
                    return Ok(());
                }
            }
            self.read_more().await?;
        }
    }
}

/// `1008 slow consumer` from a close frame's payload.
fn describe_close(payload: &[u8]) -> String {
    match payload {
        [hi, lo, reason @ ..] => format!(
            "{} {}",
            u16::from_be_bytes([*hi, *lo]),
            String::from_utf8_lossy(reason)
        ),
        _ => "no status".into(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use ringstream_protocol::ws::{FrameHeader, OpCode, apply_mask};

    use super::super::message::{Header, Received, Verifier, encode_end_marker, encode_message};
    use super::super::socketio::Payload;
    use super::{Decoder, Framing, push_message, push_payload};

    const FRAMINGS: [Framing; 3] = [
        Framing::WebSocket,
        Framing::SocketIo(Payload::Binary),
        Framing::SocketIo(Payload::Text),
    ];

    fn message(header: Header, size: usize) -> Vec<u8> {
        let mut payload = vec![0; size];
        encode_message(header, &mut payload);
        payload
    }

    /// The client frames in `out`, unmasked: what the server reads, and what it sends back.
    fn frames(mut out: &[u8]) -> Vec<(OpCode, Vec<u8>)> {
        let mut frames = Vec::new();
        while !out.is_empty() {
            let (frame, len) = FrameHeader::parse(out).unwrap().unwrap();
            let end = len + frame.payload_len as usize;
            let mut payload = out[len..end].to_vec();
            apply_mask(&mut payload, frame.mask.unwrap(), 0);
            frames.push((frame.opcode, payload));
            out = &out[end..];
        }
        frames
    }

    /// What a member decodes from `frames` sent back to it as server frames.
    fn decode(framing: Framing, frames: &[(OpCode, Vec<u8>)], size: usize) -> Vec<Received> {
        let (mut decoder, mut verifier) = (Decoder::new(framing), Verifier::new(2, size));
        let mut out = Vec::new();
        let received = frames
            .iter()
            .filter_map(|(opcode, payload)| {
                decoder
                    .frame(*opcode, payload, &mut verifier, &mut out)
                    .unwrap()
            })
            .map(Result::unwrap)
            .collect();
        assert!(out.is_empty());
        received
    }

    #[test]
    fn published_messages_and_end_markers_come_back_whole_in_every_framing() {
        let header = Header {
            publisher: 1,
            seq: 0,
            sent_ns: 1234,
        };
        for framing in FRAMINGS {
            for size in [24, 200] {
                let mut out = Vec::new();
                push_message(&mut out, framing, header, size);
                push_payload(&mut out, framing, &encode_end_marker(1, 1));
                let sent = frames(&out);
                let per_message = match framing {
                    Framing::SocketIo(Payload::Binary) => 2,
                    _ => 1,
                };
                assert_eq!(sent.len(), 2 * per_message, "{framing:?}");
                if framing == Framing::WebSocket {
                    assert_eq!(sent[0], (OpCode::Binary, message(header, size)));
                }
                assert_eq!(
                    decode(framing, &sent, size),
                    [Received::Message(header), Received::End { publisher: 1 }],
                    "{framing:?}, {size} B"
                );
            }
        }
    }

    #[test]
    fn pings_of_either_layer_are_answered() {
        let mut verifier = Verifier::new(1, 24);
        for (framing, opcode, ping, pong) in [
            (
                Framing::WebSocket,
                OpCode::Ping,
                b"hi".as_slice(),
                (OpCode::Pong, b"hi".as_slice()),
            ),
            (
                Framing::SocketIo(Payload::Binary),
                OpCode::Ping,
                b"hi",
                (OpCode::Pong, b"hi"),
            ),
            (
                Framing::SocketIo(Payload::Text),
                OpCode::Text,
                b"2",
                (OpCode::Text, b"3"),
            ),
        ] {
            let mut out = Vec::new();
            let got = Decoder::new(framing).frame(opcode, ping, &mut verifier, &mut out);
            assert!(got.unwrap().is_none());
            assert_eq!(frames(&out), [(pong.0, pong.1.to_vec())]);
        }
    }

    #[test]
    fn socketio_frames_out_of_place_are_errors() {
        let (mut verifier, mut out) = (Verifier::new(1, 24), Vec::new());
        let binary = Framing::SocketIo(Payload::Binary);
        let mut decoder = Decoder::new(binary);
        // A binary frame no event announced.
        assert!(
            decoder
                .frame(OpCode::Binary, &[0; 24], &mut verifier, &mut out)
                .is_err()
        );
        // An announcement, then another event instead of its attachment.
        let event = super::BINARY_EVENT;
        assert!(matches!(
            decoder.frame(OpCode::Text, event, &mut verifier, &mut out),
            Ok(None)
        ));
        assert!(
            decoder
                .frame(OpCode::Text, event, &mut verifier, &mut out)
                .is_err()
        );
        // Text frames on a plain WebSocket member, a second connect, a close.
        let mut plain = Decoder::new(Framing::WebSocket);
        assert!(
            plain
                .frame(OpCode::Text, b"2", &mut verifier, &mut out)
                .is_err()
        );
        let mut text = Decoder::new(Framing::SocketIo(Payload::Text));
        assert!(
            text.frame(OpCode::Text, b"40{}", &mut verifier, &mut out)
                .is_err()
        );
        assert!(
            text.frame(OpCode::Text, br#"42["m","0g"]"#, &mut verifier, &mut out)
                .is_err()
        );
        assert!(
            text.frame(OpCode::Close, &[3, 232], &mut verifier, &mut out)
                .is_err()
        );
    }
}
