//! HTTP/1.1 as an intermediary (RFC 9110 §7.6, RFC 9112 §6.3), no I/O: the hop-by-hop fields
//! a proxy never forwards, the chunked framing it writes itself, and the upstream's response
//! head, parsed and judged strictly.
//!
//! A proxy re-frames every body it forwards: it decodes what it receives (a request with
//! [`super::BodyDecoder`], a response by [`ResponseBody`]) and writes the bytes with its own
//! `Content-Length` or chunks, so that no framing one side chose reaches the other.

use httparse::Header;

use super::fields::{Fields, list_members};
use super::request::Version;

/// Fields that describe one connection, not the message (RFC 9110 §7.6.1), and the framing
/// fields the proxy writes itself; never forwarded, in either direction. `Upgrade` is set
/// anew for a WebSocket tunnel.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
    "proxy-connection",
];

/// Whether a field called `name` stays on this hop: one of [`HOP_BY_HOP`], any `Proxy-*`
/// field (`Proxy-Authorization` is for this proxy, not the next), or one that a `Connection`
/// field of `headers` lists.
pub fn is_hop_by_hop(name: &str, headers: &[Header<'_>]) -> bool {
    HOP_BY_HOP.iter().any(|h| h.eq_ignore_ascii_case(name))
        || name
            .get(..6)
            .is_some_and(|prefix| prefix.eq_ignore_ascii_case("proxy-"))
        || headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("connection"))
            .flat_map(|h| list_members(h.value))
            .any(|listed| listed.eq_ignore_ascii_case(name.as_bytes()))
}

/// Appends one chunk of `len` bytes' framing before its data (RFC 9112 §7.1); the caller
/// appends the data, then [`CHUNK_END`].
pub fn write_chunk_size(out: &mut Vec<u8>, len: usize) {
    use std::io::Write;
    let _ = write!(out, "{len:x}\r\n");
}

/// What follows the data of a chunk.
pub const CHUNK_END: &[u8] = b"\r\n";

/// The last chunk of a chunked body, without trailers.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// How an upstream's response body is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseBody {
    /// No body: the answer to `HEAD`, 1xx, 204 and 304.
    None,
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked, ended by a zero-size chunk.
    Chunked,
    /// Until the upstream closes the connection.
    UntilClose,
}

/// Why an upstream's response head cannot be forwarded: the proxy answers 502.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseError {
    /// Not an HTTP/1.x status line and fields (bare LF, obs-fold, a bad byte...).
    Syntax,
    /// More fields than the slots given, or a head longer than allowed.
    TooLarge,
    /// Content-Length values that disagree or do not parse.
    BadLength,
    /// A transfer coding other than one `chunked`: its body could not be re-framed without
    /// changing what it means.
    Coding,
}

/// An upstream's complete response head, borrowing the read buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead<'b, 'h> {
    /// The status code.
    pub status: u16,
    /// The reason phrase, as sent.
    pub reason: &'b str,
    /// Every field in order.
    pub headers: &'h [Header<'b>],
    /// Bytes of the head, up to and including its final CRLF.
    pub head_len: usize,
    /// How the body is delimited.
    pub body: ResponseBody,
    /// Whether the upstream connection may carry another request after this response.
    pub keep_alive: bool,
}

/// Parses the response head at the start of `buf`: `Ok(None)` until it is complete (at most
/// `max_head` bytes are looked at). `to_head` is whether the request was `HEAD`, whose
/// response has no body whatever its fields say.
///
/// ```
/// use ringstream_protocol::http::{EMPTY_HEADER, ResponseBody, parse_response};
///
/// let mut slots = [EMPTY_HEADER; 16];
/// let buf = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
/// let head = parse_response(buf, &mut slots, false, 8192).unwrap().unwrap();
/// assert_eq!((head.status, head.body, head.keep_alive), (200, ResponseBody::Length(2), true));
/// assert_eq!(&buf[head.head_len..], b"ok");
/// ```
pub fn parse_response<'b, 'h>(
    buf: &'b [u8],
    slots: &'h mut [Header<'b>],
    to_head: bool,
    max_head: usize,
) -> Result<Option<ResponseHead<'b, 'h>>, ResponseError> {
    let seen = &buf[..buf.len().min(max_head.saturating_add(1))];
    let mut parsed = httparse::Response::new(slots);
    let head_len = match parsed.parse(seen) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if seen.len() > max_head => {
            return Err(ResponseError::TooLarge);
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(ResponseError::TooLarge),
        Err(_) => return Err(ResponseError::Syntax),
    };
    let (Some(status), Some(minor)) = (parsed.code, parsed.version) else {
        return Err(ResponseError::Syntax);
    };
    let version = Version::from_minor(minor);
    let headers: &'h [Header<'b>] = parsed.headers;
    let fields = Fields::read(headers);
    let no_body = to_head || (100..200).contains(&status) || status == 204 || status == 304;
    let (body, suspect) = if no_body {
        (ResponseBody::None, false)
    } else if fields.codings.seen() {
        // RFC 9112 §6.3 item 3: Transfer-Encoding overrides Content-Length (a message with
        // both is suspect: the connection is not reused). Another coding would reach the
        // client without its name once the body is re-framed: refused.
        if !fields.codings.is_chunked_only() {
            return Err(ResponseError::Coding);
        }
        (ResponseBody::Chunked, fields.content_length.is_some())
    } else {
        match fields.content_length {
            None => (ResponseBody::UntilClose, false),
            Some(Ok(n)) => (ResponseBody::Length(n), false),
            Some(Err(_)) => return Err(ResponseError::BadLength),
        }
    };
    let persistent = match version {
        Version::Http11 => !fields.close,
        Version::Http10 => fields.keep_alive && !fields.close,
    };
    Ok(Some(ResponseHead {
        status,
        reason: parsed.reason.unwrap_or(""),
        headers,
        head_len,
        body,
        keep_alive: persistent && !suspect && body != ResponseBody::UntilClose,
    }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;
    use httparse::EMPTY_HEADER;

    fn parse(
        buf: &[u8],
        to_head: bool,
    ) -> Result<Option<(u16, ResponseBody, bool)>, ResponseError> {
        let mut slots = [EMPTY_HEADER; 8];
        parse_response(buf, &mut slots, to_head, 1024)
            .map(|head| head.map(|h| (h.status, h.body, h.keep_alive)))
    }

    #[test]
    fn framing_follows_rfc_9112_section_6_3() {
        type Case = (&'static [u8], bool, (u16, ResponseBody, bool));
        let cases: [Case; 8] = [
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
                false,
                (200, ResponseBody::Length(5), true),
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
                true,
                (200, ResponseBody::None, true),
            ),
            (
                b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n",
                false,
                (204, ResponseBody::None, true),
            ),
            (
                b"HTTP/1.1 304 Not Modified\r\n\r\n",
                false,
                (304, ResponseBody::None, true),
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                false,
                (200, ResponseBody::Chunked, true),
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
                false,
                (200, ResponseBody::Chunked, false),
            ),
            (
                b"HTTP/1.1 200 OK\r\n\r\n",
                false,
                (200, ResponseBody::UntilClose, false),
            ),
            (
                b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n",
                false,
                (200, ResponseBody::Length(1), false),
            ),
        ];
        for (buf, to_head, expected) in cases {
            assert_eq!(
                parse(buf, to_head),
                Ok(Some(expected)),
                "{}",
                String::from_utf8_lossy(buf)
            );
        }
        assert_eq!(
            parse(
                b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\n",
                false
            ),
            Ok(Some((200, ResponseBody::Length(1), true)))
        );
        assert_eq!(
            parse(
                b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\n",
                false
            ),
            Ok(Some((200, ResponseBody::Length(1), false)))
        );
    }

    #[test]
    fn bad_heads_are_refused_and_partial_ones_wait() {
        assert_eq!(parse(b"HTTP/1.1 200 OK\r\nContent-Le", false), Ok(None));
        assert_eq!(
            parse(b"NOT HTTP AT ALL\r\n\r\n", false),
            Err(ResponseError::Syntax)
        );
        assert_eq!(
            parse(
                b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                false
            ),
            Err(ResponseError::BadLength)
        );
        assert_eq!(
            parse(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", false),
            Err(ResponseError::BadLength)
        );
        for coding in ["gzip", "gzip, chunked", "chunked, chunked"] {
            let head = format!("HTTP/1.1 200 OK\r\nTransfer-Encoding: {coding}\r\n\r\n");
            assert_eq!(
                parse(head.as_bytes(), false),
                Err(ResponseError::Coding),
                "{coding}"
            );
        }
        assert_eq!(
            parse(b"HTTP/1.1 200 OK\r\nA: b\r\n c\r\n\r\n", false),
            Err(ResponseError::Syntax),
            "obs-fold"
        );
        let many = format!("HTTP/1.1 200 OK\r\n{}\r\n", "A: b\r\n".repeat(9));
        assert_eq!(parse(many.as_bytes(), false), Err(ResponseError::TooLarge));
        let long = format!("HTTP/1.1 200 OK\r\nA: {}", "b".repeat(1100));
        assert_eq!(parse(long.as_bytes(), false), Err(ResponseError::TooLarge));
    }

    #[test]
    fn hop_by_hop_fields_and_those_connection_lists() {
        let headers = [
            Header {
                name: "Connection",
                value: b"close, X-Secret",
            },
            Header {
                name: "X-Secret",
                value: b"1",
            },
        ];
        for name in [
            "Connection",
            "keep-alive",
            "TE",
            "Trailer",
            "Transfer-Encoding",
            "Upgrade",
            "Content-Length",
            "Proxy-Authorization",
            "proxy-connection",
            "x-secret",
        ] {
            assert!(is_hop_by_hop(name, &headers), "{name}");
        }
        for name in ["Cookie", "Authorization", "Content-Type", "X-Other", "Prox"] {
            assert!(!is_hop_by_hop(name, &headers), "{name}");
        }
    }

    #[test]
    fn chunks_are_framed_in_hex() {
        let mut out = Vec::new();
        write_chunk_size(&mut out, 255);
        out.extend_from_slice(b"..");
        out.extend_from_slice(CHUNK_END);
        out.extend_from_slice(LAST_CHUNK);
        assert_eq!(out, b"ff\r\n..\r\n0\r\n\r\n");
    }
}
