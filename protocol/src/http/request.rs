//! The request head: parsed in place by httparse, then held to the limits and framing rules.

use std::mem::MaybeUninit;

use httparse::Header;

use super::body::BodyKind;
use super::error::RequestError;
use super::fields::{Fields, list_members};

/// Default for [`HeadLimits::max_head_bytes`] (PROTECTIONS.md: `max_header_bytes`).
pub const DEFAULT_MAX_HEAD_BYTES: usize = 16 * 1024;
/// Default for [`HeadLimits::max_headers`] (PROTECTIONS.md: `max_headers`).
pub const DEFAULT_MAX_HEADERS: usize = 64;
/// Default for [`HeadLimits::max_uri_bytes`] (PROTECTIONS.md: `max_uri_bytes`).
pub const DEFAULT_MAX_URI_BYTES: usize = 8 * 1024;
/// How many header slots a caller should give [`parse_request`]: enough for any sane
/// `max_headers`, and 256 slots of 32 bytes (8 KiB) fit comfortably on a stack.
pub const HEADER_SLOTS: usize = 256;

/// The size limits a request head is held to while it is parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadLimits {
    /// Longest head, request line to the empty line included (431 beyond).
    pub max_head_bytes: usize,
    /// Most header fields (431 beyond); also capped by the number of slots given.
    pub max_headers: usize,
    /// Longest request-target (414 beyond).
    pub max_uri_bytes: usize,
}

impl Default for HeadLimits {
    fn default() -> Self {
        Self {
            max_head_bytes: DEFAULT_MAX_HEAD_BYTES,
            max_headers: DEFAULT_MAX_HEADERS,
            max_uri_bytes: DEFAULT_MAX_URI_BYTES,
        }
    }
}

/// A request method (RFC 9110 §9); methods are case-sensitive, so `get` is `Other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method<'b> {
    /// `GET`
    Get,
    /// `HEAD`
    Head,
    /// `POST`
    Post,
    /// `PUT`
    Put,
    /// `DELETE`
    Delete,
    /// `OPTIONS`
    Options,
    /// `PATCH` (RFC 5789)
    Patch,
    /// `CONNECT`
    Connect,
    /// `TRACE`
    Trace,
    /// Any other token, as sent.
    Other(&'b str),
}

impl<'b> Method<'b> {
    /// The method for a token httparse has already validated.
    fn from_token(token: &'b str) -> Self {
        match token {
            "GET" => Self::Get,
            "HEAD" => Self::Head,
            "POST" => Self::Post,
            "PUT" => Self::Put,
            "DELETE" => Self::Delete,
            "OPTIONS" => Self::Options,
            "PATCH" => Self::Patch,
            "CONNECT" => Self::Connect,
            "TRACE" => Self::Trace,
            other => Self::Other(other),
        }
    }

    /// The method token as sent.
    pub fn as_str(&self) -> &'b str {
        match self {
            Self::Get => "GET",
            Self::Head => "HEAD",
            Self::Post => "POST",
            Self::Put => "PUT",
            Self::Delete => "DELETE",
            Self::Options => "OPTIONS",
            Self::Patch => "PATCH",
            Self::Connect => "CONNECT",
            Self::Trace => "TRACE",
            Self::Other(token) => token,
        }
    }
}

/// The HTTP versions served; any other is refused with 505.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Version {
    /// HTTP/1.0: close after the response unless `Connection: keep-alive`.
    Http10,
    /// HTTP/1.1: persistent unless `Connection: close`.
    Http11,
}

impl Version {
    /// The version of httparse's minor number (httparse accepts exactly HTTP/1.0 and 1.1).
    pub(crate) fn from_minor(minor: u8) -> Self {
        if minor == 1 {
            Self::Http11
        } else {
            Self::Http10
        }
    }
}

/// A complete, accepted request head, borrowing the read buffer and the header slots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request<'b, 'h> {
    /// The method.
    pub method: Method<'b>,
    /// The raw request-target: origin-form (`/a?b`), absolute-form, authority-form
    /// (`CONNECT`) or `*` (RFC 9112 §3.2).
    pub target: &'b str,
    /// The protocol version.
    pub version: Version,
    /// Every header field in order, names and values as sent (values without the
    /// surrounding whitespace).
    pub headers: &'h [Header<'b>],
    /// Bytes of the buffer the head took, up to and including its final CRLF; the body
    /// or the next pipelined request starts here.
    pub head_len: usize,
    /// How the body is delimited.
    pub body: BodyKind,
    /// Whether the connection may carry another request after this one (RFC 9112 §9.3).
    pub keep_alive: bool,
    /// `Expect: 100-continue` on an HTTP/1.1 request (RFC 9110 §10.1.1 says to ignore it
    /// on HTTP/1.0): send `100 Continue` before reading the body, or refuse first.
    pub expect_continue: bool,
    /// The `Host` value (at most one is accepted). For an absolute-form target the
    /// target's authority overrides it (RFC 9112 §3.2.2).
    pub host: Option<&'b [u8]>,
    /// The first `Upgrade` value, if any; see [`is_upgrade_to`](Self::is_upgrade_to).
    pub upgrade: Option<&'b [u8]>,
}

impl<'b> Request<'b, '_> {
    /// The target without its query.
    pub fn path(&self) -> &'b str {
        self.target
            .split_once('?')
            .map_or(self.target, |(path, _)| path)
    }

    /// The query, without its `?`; `None` when the target has no `?`.
    pub fn query(&self) -> Option<&'b str> {
        self.target.split_once('?').map(|(_, query)| query)
    }

    /// The value of the first field called `name`, compared case-insensitively.
    pub fn header(&self, name: &str) -> Option<&'b [u8]> {
        self.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    }

    /// Whether any `Connection` field lists `token` (case-insensitive; RFC 9110 §7.6.1).
    pub fn connection_has_token(&self, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("connection"))
            .flat_map(|h| list_members(h.value))
            .any(|option| option.eq_ignore_ascii_case(token.as_bytes()))
    }

    /// Whether the client asks to switch to `protocol`: `Connection` lists `upgrade`
    /// and `Upgrade` lists `protocol` (RFC 9110 §7.8), e.g. `is_upgrade_to("websocket")`.
    pub fn is_upgrade_to(&self, protocol: &str) -> bool {
        self.upgrade.is_some_and(|upgrade| {
            list_members(upgrade).any(|p| p.eq_ignore_ascii_case(protocol.as_bytes()))
        }) && self.connection_has_token("upgrade")
    }
}

/// Parses the request head at the start of `buf` in place.
///
/// `Ok(None)`: the head is not complete yet; read more and call again with the whole
/// buffer. `Ok(Some(request))`: `request.head_len` bytes are the head. `Err(e)`: answer
/// `e.status()` and close.
///
/// `headers` are the slots httparse fills; give [`HEADER_SLOTS`] of them, e.g.
/// `[const { MaybeUninit::uninit() }; HEADER_SLOTS]` on the stack. The effective field
/// limit is the smaller of `limits.max_headers` and `headers.len()`.
///
/// The answer depends only on the bytes, never on how they were split into reads:
/// a buffer gets the answer its shortest prefix that is not `Ok(None)` gets. For the
/// limits that means:
/// - 414 as soon as more than `max_uri_bytes` bytes of the target are buffered, even
///   without the rest of the request line, so a huge target is refused after
///   `max_uri_bytes` plus the method, not after `max_head_bytes`;
/// - 431 once more than `max_head_bytes` bytes are buffered without a complete head
///   (or the head is longer), or the field after the last allowed one is complete;
/// - when both apply, the one whose limit the byte stream crossed first. So when
///   `max_head_bytes` is smaller than the method plus `max_uri_bytes`, a long target
///   gets 431; with the defaults (16 KiB, 8 KiB) it gets 414.
///
/// For a complete head the checks then run in this order: bare CR/LF, `Host`, framing
/// (Transfer-Encoding in HTTP/1.0, Content-Length with Transfer-Encoding, the codings,
/// the Content-Length values). Syntax errors get the status their position decides; when
/// several 400 causes are present, the variant is a best guess for the log.
///
/// ```
/// use std::mem::MaybeUninit;
/// use ringstream_protocol::http::{HEADER_SLOTS, HeadLimits, Method, parse_request};
///
/// let buf = b"GET /hello?x=1 HTTP/1.1\r\nHost: example.com\r\n\r\nGET /next";
/// let mut slots = [const { MaybeUninit::uninit() }; HEADER_SLOTS];
/// let limits = HeadLimits::default();
/// assert!(parse_request(&buf[..20], &mut slots, &limits)?.is_none());
/// let request = parse_request(buf, &mut slots, &limits)?.expect("complete head");
/// assert_eq!(request.method, Method::Get);
/// assert_eq!(request.path(), "/hello");
/// assert_eq!(&buf[request.head_len..], b"GET /next");
/// # Ok::<(), ringstream_protocol::http::RequestError>(())
/// ```
pub fn parse_request<'b, 'h>(
    buf: &'b [u8],
    headers: &'h mut [MaybeUninit<Header<'b>>],
    limits: &HeadLimits,
) -> Result<Option<Request<'b, 'h>>, RequestError> {
    // Bytes past the head limit are never looked at: a client sending the same bytes
    // one at a time would have been refused at that point, so the answer cannot depend
    // on them.
    let seen = &buf[..buf.len().min(limits.max_head_bytes.saturating_add(1))];
    let slots = headers.len().min(limits.max_headers);
    let (headers, _) = headers.split_at_mut(slots);
    let mut parsed = httparse::Request::new(&mut []);
    let status = parsed.parse_with_uninit_headers(seen, headers);
    let target = TargetSeen::of(&parsed, seen);
    match status {
        Ok(httparse::Status::Complete(head_len)) => {
            check_limits(target, head_len, limits)?;
            accept(parsed, &seen[..head_len]).map(Some)
        }
        Ok(httparse::Status::Partial) => {
            check_limits(target, seen.len(), limits)?;
            Ok(None)
        }
        Err(error) => {
            // An error inside or after an over-long target comes after its limit.
            check_limits(target, 0, limits)?;
            Err(classify(error, seen, target))
        }
    }
}

/// Where the request-target starts in the buffer and how many of its bytes are there.
#[derive(Debug, Clone, Copy)]
struct TargetSeen {
    /// Offset of the target's first byte.
    start: usize,
    /// Target bytes buffered so far (all of it once the request line is parsed).
    len: usize,
}

impl TargetSeen {
    /// Reads the target's position from what httparse got through, even partly.
    fn of(parsed: &httparse::Request<'_, '_>, seen: &[u8]) -> Self {
        let Some(method) = parsed.method else {
            return Self { start: 0, len: 0 };
        };
        // httparse returns sub-slices of `seen`, so the offset is an address difference;
        // the method is followed by exactly one SP.
        let start = (method.as_ptr().addr().saturating_sub(seen.as_ptr().addr()))
            .saturating_add(method.len() + 1);
        let len = match parsed.path {
            Some(path) => path.len(),
            // Still streaming or stopped at a bad byte: count the target bytes
            // (`URI_MAP` in httparse: anything above SP but DEL).
            None => seen
                .get(start..)
                .unwrap_or_default()
                .iter()
                .take_while(|&&b| b > b' ' && b != 0x7f)
                .count(),
        };
        Self { start, len }
    }
}

/// 414 if the buffered target is too long, else 431 if `head_seen` bytes are too many.
///
/// 414 is checked first: `seen` stops one byte past the head limit, so a target found
/// too long in it crossed its limit no later than the head crossed its own.
fn check_limits(
    target: TargetSeen,
    head_seen: usize,
    limits: &HeadLimits,
) -> Result<(), RequestError> {
    if target.len > limits.max_uri_bytes {
        Err(RequestError::UriTooLong)
    } else if head_seen > limits.max_head_bytes {
        Err(RequestError::HeadTooLarge)
    } else {
        Ok(())
    }
}

/// Turns a complete head within the limits into a [`Request`], or refuses it.
fn accept<'b, 'h>(
    parsed: httparse::Request<'h, 'b>,
    head: &'b [u8],
) -> Result<Request<'b, 'h>, RequestError> {
    check_line_endings(head)?;
    let (Some(method), Some(target), Some(minor)) = (parsed.method, parsed.path, parsed.version)
    else {
        return Err(RequestError::InvalidRequestLine);
    };
    let version = Version::from_minor(minor);
    let headers: &'h [Header<'b>] = parsed.headers;
    let fields = Fields::read(headers);
    // RFC 9112 §3.2: "A server MUST respond with a 400 (Bad Request) status code to any
    // HTTP/1.1 request message that lacks a Host header field and to any request message
    // that contains more than one Host header field line".
    if fields.duplicate_host {
        return Err(RequestError::DuplicateHost);
    }
    if version == Version::Http11 && fields.host.is_none() {
        return Err(RequestError::MissingHost);
    }
    let body = fields.body_kind(version)?;
    // RFC 9112 §9.3: HTTP/1.1 persists unless "close"; HTTP/1.0 only with "keep-alive".
    let keep_alive = !fields.close && (version == Version::Http11 || fields.keep_alive);
    Ok(Request {
        method: Method::from_token(method),
        target,
        version,
        headers,
        head_len: head.len(),
        body,
        keep_alive,
        expect_continue: version == Version::Http11 && fields.expect_continue,
        host: fields.host,
        upgrade: fields.upgrade,
    })
}

/// Refuses a bare CR or bare LF anywhere in the head.
///
/// httparse accepts LF alone as a line end (RFC 9112 §2.2 lets a recipient do so), but a
/// proxy in front may not, and then the two disagree on where fields end. Lines must end
/// in CRLF: every byte is a CR exactly when the next one is an LF, and the head neither
/// starts with LF nor ends with CR. One branch-free pass that vectorises (about 25 ns
/// for a 500-byte head), rather than a stop at every line end.
fn check_line_endings(head: &[u8]) -> Result<(), RequestError> {
    let next = head.get(1..).unwrap_or_default();
    let mismatch = head.iter().zip(next).fold(false, |mismatch, (&b, &after)| {
        mismatch | ((b == b'\r') != (after == b'\n'))
    });
    if mismatch || head.first() == Some(&b'\n') || head.last() == Some(&b'\r') {
        Err(RequestError::BareLineEnding)
    } else {
        Ok(())
    }
}

/// Names an httparse error; only runs on the refusal path, so it may look around.
fn classify(error: httparse::Error, seen: &[u8], target: TargetSeen) -> RequestError {
    match error {
        httparse::Error::TooManyHeaders => RequestError::TooManyHeaders,
        httparse::Error::Version => {
            // The version starts after the target and its SP.
            let at = target.start + target.len + 1;
            classify_version(seen.get(at..).unwrap_or_default())
        }
        _ if has_bare_cr(seen) => RequestError::BareLineEnding,
        httparse::Error::HeaderName if has_obs_fold(seen) => RequestError::ObsFold,
        httparse::Error::HeaderName | httparse::Error::HeaderValue => RequestError::InvalidHeader,
        _ => RequestError::InvalidRequestLine,
    }
}

/// 505 for a well-formed version httparse does not serve, 400 for a malformed one.
///
/// RFC 9112 §2.3: `HTTP-version = "HTTP/" DIGIT "." DIGIT`. httparse stops at the major
/// digit when it is not `1`, and after eight bytes when the minor one is not `0` or `1`;
/// only the bytes it had read decide, so the answer does not depend on what follows.
fn classify_version(version: &[u8]) -> RequestError {
    match version {
        [b'H', b'T', b'T', b'P', b'/', major, ..] if major.is_ascii_digit() && *major != b'1' => {
            RequestError::VersionNotSupported
        }
        [b'H', b'T', b'T', b'P', b'/', b'1', b'.', minor, ..] if minor.is_ascii_digit() => {
            RequestError::VersionNotSupported
        }
        _ => RequestError::InvalidRequestLine,
    }
}

/// A CR followed by anything but LF.
fn has_bare_cr(bytes: &[u8]) -> bool {
    bytes
        .windows(2)
        .any(|pair| matches!(pair, [b'\r', next] if *next != b'\n'))
}

/// A line starting with SP or HTAB: obs-fold (RFC 9112 §5.2), which a server must
/// either refuse or unfold; unfolding would change what a proxy in front saw.
fn has_obs_fold(bytes: &[u8]) -> bool {
    bytes
        .windows(2)
        .any(|pair| matches!(pair, [b'\n', b' ' | b'\t']))
}

#[cfg(test)]
mod tests;
