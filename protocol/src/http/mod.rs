//! HTTP/1.1 (RFC 9112): request heads and bodies in, response heads out, no I/O.
//!
//! The engine owns the socket and the buffer and loops: call [`parse_request`] on the
//! buffered bytes until it stops returning `Ok(None)`, then feed the bytes after
//! `head_len` to a [`BodyDecoder`], and write answers with [`write_response_head`].
//! Every refusal is an error value that knows its status code.

mod body;
mod chunked;
mod date;
mod error;
mod fields;
mod request;
mod response;

pub use body::{BodyDecoder, BodyKind, Decoded};
pub use chunked::{MAX_CHUNK_LINE_BYTES, MAX_TRAILER_BYTES};
pub use date::HttpDate;
pub use error::{BodyError, RequestError};
pub use httparse::Header;
pub use request::{
    DEFAULT_MAX_HEAD_BYTES, DEFAULT_MAX_HEADERS, DEFAULT_MAX_URI_BYTES, HEADER_SLOTS, HeadLimits,
    Method, Request, Version, parse_request,
};
pub use response::{reason_phrase, write_continue, write_error_response, write_response_head};
