//! Differential against tungstenite 0.30 (the client the root package's tests use): the same
//! bytes read by ringstream's frame parser and session, and by tungstenite's frame header
//! parser and a server-role `WebSocket` over an in-memory stream, must give the same headers,
//! the same messages (text, binary, ping, pong, close code and reason, in order) and the same
//! accept or reject.
//!
//! Input: the first byte picks the limit (bits 1-7: 125 plus a multiple of 128 bytes) and how
//! the rest is read (bit 0 clear: raw bytes; set: records turned into masked client frames, see
//! `client_frames`).
//!
//! What "same" allows, where the two legitimately differ:
//! - Limits: both get the same limit as message size (ringstream's `max_message_size`,
//!   tungstenite's `max_message_size` and `max_frame_size`); it is never below 125, since
//!   tungstenite applies its frame limit to control frames too. ringstream's fragment-count
//!   limit, which tungstenite lacks, is set out of reach.
//! - When: ringstream refuses on the header (size, RSV, mask, control rules) before the
//!   payload arrives; tungstenite reads the whole frame first. If the input ends inside the
//!   refused frame, tungstenite's "connection reset" counts as the same refusal. Only accept
//!   and reject are compared, not the reason: with several faults in one frame the two check
//!   them in different orders.
//! - Length encoding: ringstream refuses a length not in its shortest form (RFC 6455 §5.2,
//!   "MUST"); tungstenite reads it. After such a refusal only the messages before it are
//!   compared.
//! - Close codes: ringstream refuses a code a peer may not send (1002); tungstenite reports
//!   the close with its code replaced by 1002 "Protocol violation", and also accepts 1012
//!   and 1013, which IANA registered after RFC 6455 for servers to send. A refused close and
//!   one of those count as the same.
//! - The end: ringstream stops at a valid close (the engine reads no further); so does the
//!   comparison.
#![no_main]

use std::io::{self, Cursor, Read, Write};

use libfuzzer_sys::fuzz_target;
use ringstream_fuzz::client_frames::frame_stream;
use ringstream_fuzz::session_run::{End, Run, Seen, run_session};
use ringstream_protocol::ws::session::{ProtocolError, SessionLimits};
use ringstream_protocol::ws::{FrameError, FrameHeader};
use tungstenite::protocol::frame::FrameHeader as TFrameHeader;
use tungstenite::protocol::{Role, WebSocket, WebSocketConfig};
use tungstenite::{Error as TError, Message};

fuzz_target!(|data: &[u8]| {
    let Some((&control, rest)) = data.split_first() else {
        return;
    };
    let limit = 125 + usize::from(control >> 1) * 128;
    let stream = &*frame_stream(control, rest);
    compare_headers(stream);
    compare_sessions(stream, limit);
});

/// Walks the frames with both header parsers: the same fields and header length, or
/// waiting for more bytes, or a refusal.
fn compare_headers(stream: &[u8]) {
    let mut at = 0;
    loop {
        let bytes = &stream[at..];
        let mut cursor = Cursor::new(bytes);
        let theirs = TFrameHeader::parse(&mut cursor);
        let (header, header_len) = match FrameHeader::parse(bytes) {
            Ok(Some(parsed)) => parsed,
            Ok(None) => {
                assert!(matches!(theirs, Ok(None)), "{theirs:?}");
                return;
            }
            Err(FrameError::ReservedOpcode) => {
                // tungstenite reads the whole header before looking at the opcode.
                assert!(!matches!(theirs, Ok(Some(_))), "{theirs:?}");
                return;
            }
            // A longer length form than needed, which tungstenite accepts; or a 64-bit
            // length with its top bit set, which it takes as a length.
            Err(_) => return,
        };
        let Ok(Some((theirs, payload_len))) = theirs else {
            panic!("ringstream accepted {header:?}, tungstenite said {theirs:?}");
        };
        assert_eq!(cursor.position(), header_len as u64);
        assert_eq!(payload_len, header.payload_len);
        assert_eq!(theirs.is_final, header.fin);
        let rsv = u8::from(theirs.rsv1) << 2 | u8::from(theirs.rsv2) << 1 | u8::from(theirs.rsv3);
        assert_eq!(rsv, header.rsv);
        assert_eq!(u8::from(theirs.opcode), header.opcode.bits());
        assert_eq!(theirs.mask, header.mask);
        let next = usize::try_from(payload_len)
            .ok()
            .and_then(|len| (at + header_len).checked_add(len))
            .filter(|&next| next <= stream.len());
        let Some(next) = next else {
            return;
        };
        at = next;
    }
}

/// Reads the stream with both sessions and compares what they delivered and how they ended.
fn compare_sessions(stream: &[u8], limit: usize) {
    let limits = SessionLimits {
        max_message_size: limit as u64,
        max_fragments: usize::MAX,
    };
    let ours = run_session(limits, stream, &[stream.len()]);
    let (mut theirs, their_end) = tungstenite_run(stream, limit);
    match ours.end {
        End::Failed(ProtocolError::Frame(FrameError::BadLength)) => {
            assert!(theirs.starts_with(&ours.seen), "{ours:?} / {theirs:?}");
            return;
        }
        End::Failed(ProtocolError::InvalidClose) if their_end == End::Closed => {
            let Some(Seen::Close(Some(code), reason)) = theirs.pop() else {
                panic!("tungstenite ended on a close without a code: {theirs:?}");
            };
            let replaced = code == 1002 && reason == b"Protocol violation";
            assert!(replaced || matches!(code, 1012 | 1013), "close code {code}");
        }
        End::Failed(_) if their_end == End::NeedMore => {
            assert!(refused_inside_last_frame(stream, &ours), "{ours:?}");
        }
        End::Failed(_) => assert!(matches!(their_end, End::Failed(_)), "{their_end:?}"),
        End::NeedMore | End::Closed => assert_eq!(their_end, ours.end, "{ours:?}"),
    }
    assert_eq!(theirs, ours.seen);
}

/// Whether the frame ringstream refused runs past the end of the input, so tungstenite,
/// which reads a whole frame before judging it, could not have refused it yet.
fn refused_inside_last_frame(stream: &[u8], ours: &Run) -> bool {
    let rest = &stream[ours.consumed..];
    match TFrameHeader::parse(&mut Cursor::new(rest)) {
        Ok(None) => true,
        Ok(Some((theirs, len))) => {
            let header_len = theirs.len(len) as u64;
            header_len.saturating_add(len) > rest.len() as u64
        }
        Err(_) => false,
    }
}

/// The client side of an in-memory connection: the input to read, then end of file.
#[derive(Debug)]
struct Peer<'a> {
    input: Cursor<&'a [u8]>,
}

impl Read for Peer<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.input.read(buf)
    }
}

impl Write for Peer<'_> {
    /// The server's answers (pongs, the close reply) are not compared.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// tungstenite's messages for the stream, in `Seen` terms, and how it ended.
fn tungstenite_run(stream: &[u8], limit: usize) -> (Vec<Seen>, End) {
    let config = WebSocketConfig::default()
        .max_message_size(Some(limit))
        .max_frame_size(Some(limit));
    let peer = Peer {
        input: Cursor::new(stream),
    };
    let mut socket = WebSocket::from_raw_socket(peer, Role::Server, Some(config));
    let mut seen = Vec::new();
    loop {
        let message = match socket.read() {
            Ok(message) => message,
            Err(TError::Protocol(
                tungstenite::error::ProtocolError::ResetWithoutClosingHandshake,
            )) => {
                return (seen, End::NeedMore);
            }
            // The session's own error type stands in for "refused"; which one is not compared.
            Err(_) => return (seen, End::Failed(ProtocolError::StrayContinuation)),
        };
        seen.push(match message {
            Message::Text(text) => Seen::Text(text.as_bytes().to_vec()),
            Message::Binary(bytes) => Seen::Binary(bytes.to_vec()),
            Message::Ping(bytes) => Seen::Ping(bytes.to_vec()),
            Message::Pong(bytes) => Seen::Pong(bytes.to_vec()),
            Message::Close(frame) => {
                seen.push(match frame {
                    None => Seen::Close(None, Vec::new()),
                    Some(frame) => {
                        Seen::Close(Some(frame.code.into()), frame.reason.as_bytes().to_vec())
                    }
                });
                return (seen, End::Closed);
            }
            Message::Frame(_) => unreachable!("read() returns messages, not raw frames"),
        });
    }
}
