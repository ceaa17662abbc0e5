//! A WebSocket session fed a byte stream the way the engine feeds it, checking each event
//! against what the session promises, with the payloads copied out for comparison.

use std::ops::Range;

use ringstream_protocol::ws::session::{Event, Payload, ProtocolError, Session, SessionLimits};
use ringstream_protocol::ws::{FrameHeader, is_sendable_close_code, is_valid_close_code};

/// One event, with its payload copied out of the read buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// A complete text message (valid UTF-8).
    Text(Vec<u8>),
    /// A complete binary message.
    Binary(Vec<u8>),
    /// A ping and its payload.
    Ping(Vec<u8>),
    /// A pong and its payload.
    Pong(Vec<u8>),
    /// A close frame: its code (none for an empty payload) and reason.
    Close(Option<u16>, Vec<u8>),
}

/// How the stream ended for the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// Every complete frame was read; the rest (possibly nothing) is an incomplete frame.
    NeedMore,
    /// A valid close frame arrived; the engine reads nothing after it.
    Closed,
    /// The session failed the connection.
    Failed(ProtocolError),
}

/// What a session made of a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    /// The events, in order (fragments, which carry nothing, left out).
    pub seen: Vec<Seen>,
    /// How it ended.
    pub end: End,
    /// Bytes of the stream the session consumed.
    pub consumed: usize,
}

/// Runs a fresh session over `stream`, delivered in reads ending at `cuts` (ascending, the
/// last one `stream.len()`; see [`crate::cuts`]), and panics if an event breaks a promise of
/// the session: ranges inside the frame, text that is UTF-8, messages within the limits, close
/// codes a peer may send, `bytes_needed` asking for more than is there.
pub fn run_session(limits: SessionLimits, stream: &[u8], cuts: &[usize]) -> Run {
    let mut session = Session::new(limits);
    let mut buf = Vec::with_capacity(stream.len());
    let mut seen = Vec::new();
    let mut pos = 0;
    let mut fragments = 0usize;
    for &cut in cuts {
        buf.extend_from_slice(&stream[buf.len()..cut]);
        loop {
            let (event, used) = match session.read(&mut buf[pos..]) {
                Ok(Some(read)) => read,
                Ok(None) => {
                    let unparsed = &buf[pos..];
                    assert!(session.bytes_needed(unparsed) > unparsed.len());
                    break;
                }
                Err(error) => {
                    check_error(error);
                    return Run {
                        seen,
                        end: End::Failed(error),
                        consumed: pos,
                    };
                }
            };
            let frame = &buf[pos..pos + used];
            assert!(used >= 2, "a frame is at least its two header bytes");
            let item = match event {
                Event::Fragment => {
                    fragments += 1;
                    None
                }
                Event::Message { text, payload } => {
                    let bytes = match payload {
                        Payload::InBuffer(range) => {
                            assert_eq!(fragments, 0, "a one-frame message");
                            assert_eq!(range.end, used, "the payload ends the frame");
                            frame[range].to_vec()
                        }
                        Payload::Assembled => {
                            assert!(fragments >= 1, "assembled from fragments");
                            session.assembled().to_vec()
                        }
                    };
                    assert!(fragments < limits.max_fragments.max(1));
                    assert!(bytes.len() as u64 <= limits.max_message_size);
                    session.finish_message();
                    fragments = 0;
                    if text {
                        assert!(std::str::from_utf8(&bytes).is_ok(), "text is UTF-8");
                        Some(Seen::Text(bytes))
                    } else {
                        Some(Seen::Binary(bytes))
                    }
                }
                Event::Ping(range) => Some(Seen::Ping(control_payload(frame, range))),
                Event::Pong(range) => Some(Seen::Pong(control_payload(frame, range))),
                Event::Close { code, reason } => {
                    assert!(session.peer_closed());
                    assert_eq!(reason.end, used);
                    let reason = frame[reason].to_vec();
                    match code {
                        None => assert!(reason.is_empty()),
                        Some(code) => assert!(is_valid_close_code(code)),
                    }
                    assert!(reason.len() <= 123 && std::str::from_utf8(&reason).is_ok());
                    seen.push(Seen::Close(code, reason));
                    return Run {
                        seen,
                        end: End::Closed,
                        consumed: pos + used,
                    };
                }
            };
            seen.extend(item);
            pos += used;
        }
    }
    Run {
        seen,
        end: End::NeedMore,
        consumed: pos,
    }
}

/// A ping or pong payload: it ends the frame and fits a control frame.
fn control_payload(frame: &[u8], range: Range<usize>) -> Vec<u8> {
    assert_eq!(range.end, frame.len());
    assert!(range.len() <= 125, "RFC 6455 §5.5");
    frame[range].to_vec()
}

/// A failure closes with a code the server may send, and the close frame that carries it
/// is a valid control frame.
fn check_error(error: ProtocolError) {
    let code = error.close_code();
    assert!(matches!(code, 1002 | 1007 | 1009), "{error:?}: {code}");
    assert!(is_sendable_close_code(code));
    let mut out = Vec::new();
    ringstream_protocol::ws::write_close_frame(&mut out, Some(code), error.reason().as_bytes());
    let parsed = FrameHeader::parse(&out).expect("a close frame the server writes parses");
    let (header, header_len) = parsed.expect("and is complete");
    assert!(header.fin && header.payload_len <= 125);
    assert_eq!(header_len as u64 + header.payload_len, out.len() as u64);
}
