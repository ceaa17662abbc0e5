//! What can be wrong with a request head or body, and the status code that answers it.

use std::fmt;

/// A request head the server refuses.
///
/// Every variant means the same thing to the caller: send the response with
/// [`status()`](Self::status) (`write_error_response` writes one) and close the
/// connection, because after a refused head nothing says where the next request starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RequestError {
    /// 431: the head is longer than `max_head_bytes`, or that many bytes arrived
    /// without the empty line that ends it.
    HeadTooLarge,
    /// 431: more header fields than `max_headers` (or than header slots given).
    TooManyHeaders,
    /// 414: the request-target is longer than `max_uri_bytes`; found as soon as that
    /// many bytes of it are buffered, before the request line ends.
    UriTooLong,
    /// 400: the request line is not `method SP request-target SP HTTP-version CRLF`
    /// (RFC 9112 §3): a bad method token, an empty or non-UTF-8 target, a malformed version.
    InvalidRequestLine,
    /// 505: a well-formed version other than HTTP/1.0 and HTTP/1.1.
    VersionNotSupported,
    /// 400: a header field name or value holds a byte the grammar forbids (RFC 9110 §5).
    InvalidHeader,
    /// 400: a header line starts with SP or HTAB (obs-fold, RFC 9112 §5.2).
    ObsFold,
    /// 400: a CR not followed by LF, or an LF not preceded by CR, in the head
    /// (RFC 9112 §2.2 allows the server to reject them; lenient parsers disagreeing on
    /// line ends is how requests are smuggled).
    BareLineEnding,
    /// 400: an HTTP/1.1 request without `Host` (RFC 9112 §3.2).
    MissingHost,
    /// 400: more than one `Host` field (RFC 9112 §3.2).
    DuplicateHost,
    /// 400: a `Content-Length` that is not `1*DIGIT` (a sign, a space inside, empty,
    /// more than `u64`), also as one member of a list (RFC 9110 §8.6).
    InvalidContentLength,
    /// 400: `Content-Length` values that differ (RFC 9112 §6.3 item 5).
    ConflictingContentLength,
    /// 400: both `Content-Length` and `Transfer-Encoding` (RFC 9112 §6.3 item 3).
    ContentLengthWithTransferEncoding,
    /// 400: `Transfer-Encoding` in an HTTP/1.0 request (RFC 9112 §6.1).
    TransferEncodingInHttp10,
    /// 400: the final transfer coding is not `chunked`, or `chunked` is applied twice
    /// (RFC 9112 §6.1, §6.3 item 4).
    InvalidTransferEncoding,
    /// 501: a transfer coding before `chunked` (`gzip, chunked`); none is implemented
    /// (RFC 9112 §6.1).
    UnsupportedTransferCoding,
}

impl RequestError {
    /// The status code to answer with.
    pub fn status(&self) -> u16 {
        match self {
            Self::HeadTooLarge | Self::TooManyHeaders => 431,
            Self::UriTooLong => 414,
            Self::VersionNotSupported => 505,
            Self::UnsupportedTransferCoding => 501,
            Self::InvalidRequestLine
            | Self::InvalidHeader
            | Self::ObsFold
            | Self::BareLineEnding
            | Self::MissingHost
            | Self::DuplicateHost
            | Self::InvalidContentLength
            | Self::ConflictingContentLength
            | Self::ContentLengthWithTransferEncoding
            | Self::TransferEncodingInHttp10
            | Self::InvalidTransferEncoding => 400,
        }
    }

    /// A short description for logs and violation events.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::HeadTooLarge => "request head too large",
            Self::TooManyHeaders => "too many header fields",
            Self::UriTooLong => "request-target too long",
            Self::InvalidRequestLine => "invalid request line",
            Self::VersionNotSupported => "HTTP version not supported",
            Self::InvalidHeader => "invalid header field",
            Self::ObsFold => "obsolete line folding",
            Self::BareLineEnding => "bare CR or LF in head",
            Self::MissingHost => "missing Host",
            Self::DuplicateHost => "more than one Host",
            Self::InvalidContentLength => "invalid Content-Length",
            Self::ConflictingContentLength => "conflicting Content-Length values",
            Self::ContentLengthWithTransferEncoding => "both Content-Length and Transfer-Encoding",
            Self::TransferEncodingInHttp10 => "Transfer-Encoding in HTTP/1.0",
            Self::InvalidTransferEncoding => "Transfer-Encoding not ending in chunked",
            Self::UnsupportedTransferCoding => "unsupported transfer coding",
        }
    }
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.as_str(), self.status())
    }
}

impl std::error::Error for RequestError {}

/// A request body the server refuses, part way through reading it.
///
/// As with [`RequestError`]: answer with [`status()`](Self::status), then close; the rest
/// of the body is never read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BodyError {
    /// 400: a chunk size that is empty, not hex, or more than `u64` (RFC 9112 §7.1).
    InvalidChunkSize,
    /// 400: a chunk extension with a control byte or a bare LF (RFC 9112 §7.1.1).
    InvalidChunkExtension,
    /// 400: a chunk-size line (size and extensions) longer than
    /// [`MAX_CHUNK_LINE_BYTES`](super::MAX_CHUNK_LINE_BYTES).
    ChunkLineTooLong,
    /// 400: a chunk-size line or chunk data not followed by CRLF.
    MissingCrlf,
    /// 400: a trailer line with a control byte, a bare CR/LF, or obs-fold (RFC 9112 §7.1.2).
    InvalidTrailer,
    /// 431: the trailer section is longer than
    /// [`MAX_TRAILER_BYTES`](super::MAX_TRAILER_BYTES); trailers are header fields, so
    /// the header answer applies.
    TrailerTooLarge,
    /// 413: the body is longer than the decoder's `max_body`; for chunked bodies found
    /// as soon as a chunk size announces it, before its data is read.
    TooLarge,
}

impl BodyError {
    /// The status code to answer with.
    pub fn status(&self) -> u16 {
        match self {
            Self::TooLarge => 413,
            Self::TrailerTooLarge => 431,
            Self::InvalidChunkSize
            | Self::InvalidChunkExtension
            | Self::ChunkLineTooLong
            | Self::MissingCrlf
            | Self::InvalidTrailer => 400,
        }
    }

    /// A short description for logs and violation events.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::InvalidChunkSize => "invalid chunk size",
            Self::InvalidChunkExtension => "invalid chunk extension",
            Self::ChunkLineTooLong => "chunk-size line too long",
            Self::MissingCrlf => "missing CRLF in chunked body",
            Self::InvalidTrailer => "invalid trailer field",
            Self::TrailerTooLarge => "trailer section too large",
            Self::TooLarge => "body too large",
        }
    }
}

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.as_str(), self.status())
    }
}

impl std::error::Error for BodyError {}
