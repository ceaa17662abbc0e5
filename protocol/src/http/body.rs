//! The request body: how it is delimited, and an incremental, zero-copy decoder for it.

use std::ops::Range;

use super::chunked::ChunkedDecoder;
use super::error::BodyError;

/// How a request body is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BodyKind {
    /// No body: neither `Content-Length` nor `Transfer-Encoding` (§6.3 item 7).
    None,
    /// Exactly this many bytes (`Content-Length`).
    Length(u64),
    /// `Transfer-Encoding: chunked`, ended by a zero-size chunk (RFC 9112 §7.1).
    Chunked,
}

/// What one [`BodyDecoder::decode`] call did with its input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// Input bytes used up: framing and data. The caller drops them; the rest (part of
    /// the body still to decode, or the next pipelined request once `done`) stays.
    pub consumed: usize,
    /// The body bytes found, as a range of the input (empty if none); at most one piece
    /// per call, so chunk data is never copied to be joined.
    pub data: Range<usize>,
    /// The body is complete; nothing after `consumed` belongs to it.
    pub done: bool,
}

/// Decodes a request body from bytes as they arrive, split anywhere.
///
/// ```
/// use ringstream_protocol::http::{BodyDecoder, BodyKind};
///
/// let mut decoder = BodyDecoder::new(BodyKind::Chunked, 1024);
/// let mut input: &[u8] = b"4\r\nWiki\r\n5\r\npedia\r\n0\r\n\r\n";
/// let mut body = Vec::new();
/// // A real caller reads more when `input` runs out before `done`.
/// while !decoder.is_done() {
///     let decoded = decoder.decode(input)?;
///     body.extend_from_slice(&input[decoded.data.clone()]);
///     input = &input[decoded.consumed..];
/// }
/// assert_eq!(body, b"Wikipedia");
/// # Ok::<(), ringstream_protocol::http::BodyError>(())
/// ```
#[derive(Debug, Clone)]
pub struct BodyDecoder {
    /// The framing being decoded and how far it got.
    kind: Kind,
}

/// Per-framing decoder state.
#[derive(Debug, Clone)]
enum Kind {
    /// A `Content-Length` body in progress.
    Length {
        /// Body bytes still to come.
        remaining: u64,
    },
    /// A chunked body in progress.
    Chunked(ChunkedDecoder),
    /// A `Content-Length` above `max_body`: every call refuses.
    TooLarge,
    /// Nothing more belongs to the body.
    Done,
}

impl BodyDecoder {
    /// A decoder for a body delimited as `kind`, refusing (413) more than `max_body`
    /// bytes of body data.
    ///
    /// The caller should refuse a `Content-Length` above `max_body` before reading
    /// anything (and before `100 Continue`); if it does not, the first `decode` does.
    pub fn new(kind: BodyKind, max_body: u64) -> Self {
        let kind = match kind {
            BodyKind::None | BodyKind::Length(0) => Kind::Done,
            BodyKind::Length(n) if n > max_body => Kind::TooLarge,
            BodyKind::Length(n) => Kind::Length { remaining: n },
            BodyKind::Chunked => Kind::Chunked(ChunkedDecoder::new(max_body)),
        };
        Self { kind }
    }

    /// Decodes from `input`, the unconsumed bytes after the head or the previous call.
    ///
    /// Consumes at least one byte of any non-empty input until `done`, and then none:
    /// call again with what is left while it is non-empty and the body not done, else
    /// read more. Framing bytes after a data piece are consumed in the same call, so the
    /// last piece usually arrives with `done` set. An error refuses the whole body
    /// (answer `status()`, close); a piece found earlier in the same call is dropped.
    pub fn decode(&mut self, input: &[u8]) -> Result<Decoded, BodyError> {
        match &mut self.kind {
            Kind::Length { remaining } => {
                // `min` with the input length, so the cast cannot truncate.
                let take = (*remaining).min(input.len() as u64) as usize;
                *remaining -= take as u64;
                let done = *remaining == 0;
                if done {
                    self.kind = Kind::Done;
                }
                Ok(Decoded {
                    consumed: take,
                    data: 0..take,
                    done,
                })
            }
            Kind::Chunked(chunked) => chunked.decode(input),
            Kind::TooLarge => Err(BodyError::TooLarge),
            Kind::Done => Ok(Decoded {
                consumed: 0,
                data: 0..0,
                done: true,
            }),
        }
    }

    /// Whether the whole body has been decoded.
    pub fn is_done(&self) -> bool {
        match &self.kind {
            Kind::Done => true,
            Kind::Chunked(chunked) => chunked.is_done(),
            Kind::Length { .. } | Kind::TooLarge => false,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
