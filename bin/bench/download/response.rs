//! The head of a download's response, without IO: status, `Content-Length`, `Content-Range`
//! and whether the connection stays open.

use std::fmt;

/// Largest response head accepted (nginx sends about 250 bytes).
pub const MAX_HEAD: usize = 16 * 1024;
/// Most header fields parsed.
const MAX_HEADERS: usize = 32;

/// What the client needs from a response head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    /// The status code.
    pub status: u16,
    /// The body's length. RFC 9112 §6.3: without `Transfer-Encoding`, a response to a GET
    /// that has this is exactly this long.
    pub content_length: u64,
    /// `Content-Range: bytes FIRST-LAST/COMPLETE` of a 206.
    pub content_range: Option<ContentRange>,
    /// Whether the server keeps the connection open after the body (RFC 9112 §9.3: HTTP/1.1
    /// persists unless `Connection: close`; HTTP/1.0 closes unless `Connection: keep-alive`).
    pub keep_alive: bool,
}

/// `Content-Range: bytes FIRST-LAST/COMPLETE` (RFC 9110 §14.4), both ends inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContentRange {
    /// Offset of the first byte sent.
    pub first: u64,
    /// Offset of the last byte sent.
    pub last: u64,
    /// The whole representation's length, when the server says (`*` otherwise).
    pub complete: Option<u64>,
}

/// Why a response head was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeadError {
    /// Not an HTTP/1.x response head.
    Malformed(httparse::Error),
    /// Longer than `MAX_HEAD`.
    TooLarge,
    /// No `Content-Length`: a chunked or close-delimited body, which a file download must not
    /// use.
    NoContentLength,
    /// A `Content-Length` that is not one decimal number, or two that differ.
    BadContentLength,
    /// A `Content-Range` that is not `bytes FIRST-LAST/COMPLETE`.
    BadContentRange,
}

impl fmt::Display for HeadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Malformed(e) => write!(f, "malformed response head: {e}"),
            Self::TooLarge => write!(f, "response head over {MAX_HEAD} bytes"),
            Self::NoContentLength => write!(f, "response without Content-Length"),
            Self::BadContentLength => write!(f, "invalid Content-Length"),
            Self::BadContentRange => write!(f, "invalid Content-Range"),
        }
    }
}

impl ResponseHead {
    /// Parses the head at the start of `buf`: `Ok(None)` while it is incomplete, else the
    /// head and its length in bytes (the body starts there).
    pub fn parse(buf: &[u8]) -> Result<Option<(Self, usize)>, HeadError> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut response = httparse::Response::new(&mut headers);
        let len = match response.parse(buf).map_err(HeadError::Malformed)? {
            httparse::Status::Complete(len) => len,
            httparse::Status::Partial if buf.len() >= MAX_HEAD => {
                return Err(HeadError::TooLarge);
            }
            httparse::Status::Partial => return Ok(None),
        };
        let mut content_length = None;
        let mut content_range = None;
        let mut keep_alive = response.version == Some(1);
        for header in response.headers.iter() {
            let name = header.name;
            if name.eq_ignore_ascii_case("content-length") {
                let value = parse_decimal(header.value).ok_or(HeadError::BadContentLength)?;
                if content_length.is_some_and(|seen| seen != value) {
                    return Err(HeadError::BadContentLength);
                }
                content_length = Some(value);
            } else if name.eq_ignore_ascii_case("content-range") {
                content_range =
                    Some(ContentRange::parse(header.value).ok_or(HeadError::BadContentRange)?);
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                // RFC 9112 §6.3: Transfer-Encoding overrides Content-Length.
                return Err(HeadError::NoContentLength);
            } else if name.eq_ignore_ascii_case("connection") {
                for option in header.value.split(|&b| b == b',') {
                    let option = option.trim_ascii();
                    if option.eq_ignore_ascii_case(b"close") {
                        keep_alive = false;
                    } else if option.eq_ignore_ascii_case(b"keep-alive") {
                        keep_alive = true;
                    }
                }
            }
        }
        let head = Self {
            status: response.code.unwrap_or_default(),
            content_length: content_length.ok_or(HeadError::NoContentLength)?,
            content_range,
            keep_alive,
        };
        Ok(Some((head, len)))
    }
}

impl ContentRange {
    /// `bytes FIRST-LAST/COMPLETE` or `bytes FIRST-LAST/*`.
    fn parse(value: &[u8]) -> Option<Self> {
        let value = std::str::from_utf8(value).ok()?.trim();
        let (unit, rest) = value.split_once(' ')?;
        if !unit.eq_ignore_ascii_case("bytes") {
            return None;
        }
        let (range, complete) = rest.trim_start().split_once('/')?;
        let (first, last) = range.split_once('-')?;
        let (first, last) = (
            parse_decimal(first.as_bytes())?,
            parse_decimal(last.as_bytes())?,
        );
        let complete = match complete {
            "*" => None,
            n => Some(parse_decimal(n.as_bytes())?),
        };
        if last < first || complete.is_some_and(|n| last >= n) {
            return None;
        }
        Some(Self {
            first,
            last,
            complete,
        })
    }

    /// Bytes in the range.
    pub fn len(&self) -> u64 {
        self.last - self.first + 1
    }
}

/// Digits only (no sign, no spaces inside), and no overflow.
fn parse_decimal(value: &[u8]) -> Option<u64> {
    let value = value.trim_ascii();
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(value).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    const NGINX_200: &[u8] = b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\n\
        Date: Mon, 23 Nov 2026 12:33:36 GMT\r\nContent-Type: application/octet-stream\r\n\
        Content-Length: 10000000\r\nLast-Modified: Mon, 23 Nov 2026 12:33:35 GMT\r\n\
        Connection: keep-alive\r\nETag: \"6b04329f-989680\"\r\nAccept-Ranges: bytes\r\n\r\n";

    const NGINX_206: &[u8] = b"HTTP/1.1 206 Partial Content\r\nServer: nginx/1.22.1\r\n\
        Content-Length: 5\r\nETag: \"6b04329f-989680\"\r\n\
        Content-Range: bytes 5-9/10000000\r\n\r\nBODY!";

    fn parse(bytes: &[u8]) -> Result<Option<(ResponseHead, usize)>, HeadError> {
        ResponseHead::parse(bytes)
    }

    #[test]
    fn a_200_with_content_length() {
        let (head, len) = parse(NGINX_200).unwrap().unwrap();
        assert_eq!(len, NGINX_200.len());
        assert_eq!(
            head,
            ResponseHead {
                status: 200,
                content_length: 10_000_000,
                content_range: None,
                keep_alive: true,
            }
        );
    }

    #[test]
    fn a_206_with_its_content_range_and_the_body_after_the_head() {
        let (head, len) = parse(NGINX_206).unwrap().unwrap();
        assert_eq!(&NGINX_206[len..], b"BODY!");
        assert_eq!((head.status, head.content_length), (206, 5));
        let range = head.content_range.unwrap();
        assert_eq!(
            range,
            ContentRange {
                first: 5,
                last: 9,
                complete: Some(10_000_000)
            }
        );
        assert_eq!(range.len(), 5);
    }

    #[test]
    fn incomplete_at_every_split_point() {
        for response in [NGINX_200, NGINX_206] {
            let head_len = parse(response).unwrap().unwrap().1;
            for split in 0..head_len {
                assert_eq!(parse(&response[..split]), Ok(None), "split at {split}");
            }
        }
    }

    #[test]
    fn keep_alive_follows_the_version_and_the_connection_header() {
        let keep = |head: &str| parse(head.as_bytes()).unwrap().unwrap().0.keep_alive;
        assert!(keep("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"));
        assert!(!keep(
            "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
        ));
        assert!(!keep(
            "HTTP/1.1 200 OK\r\nconnection: Upgrade, Close\r\nContent-Length: 0\r\n\r\n"
        ));
        assert!(!keep("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n"));
        assert!(keep(
            "HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n"
        ));
    }

    #[test]
    fn refused_heads() {
        let err = |head: &str| parse(head.as_bytes()).unwrap_err();
        assert_eq!(
            err("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"),
            HeadError::NoContentLength
        );
        assert_eq!(err("HTTP/1.1 200 OK\r\n\r\n"), HeadError::NoContentLength);
        for length in ["-1", "1 2", "+5", "", "99999999999999999999"] {
            assert_eq!(
                err(&format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {length}\r\n\r\n"
                )),
                HeadError::BadContentLength,
                "{length:?}"
            );
        }
        assert_eq!(
            err("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"),
            HeadError::BadContentLength
        );
        for range in [
            "bytes 9-5/10",
            "bytes 0-10/10",
            "items 0-1/2",
            "bytes 0-1",
            "bytes */10",
        ] {
            assert_eq!(
                err(&format!(
                    "HTTP/1.1 206 P\r\nContent-Length: 2\r\nContent-Range: {range}\r\n\r\n"
                )),
                HeadError::BadContentRange,
                "{range:?}"
            );
        }
        assert!(matches!(
            err("HTTX/1.1 200 OK\r\n\r\n"),
            HeadError::Malformed(_)
        ));
        let long = format!("HTTP/1.1 200 OK\r\nX: {}", "a".repeat(MAX_HEAD));
        assert_eq!(err(&long), HeadError::TooLarge);
    }

    #[test]
    fn a_content_range_of_unknown_length() {
        let (head, _) =
            parse(b"HTTP/1.1 206 P\r\nContent-Length: 2\r\nContent-Range: bytes 0-1/*\r\n\r\n")
                .unwrap()
                .unwrap();
        assert_eq!(head.content_range.unwrap().complete, None);
    }
}
