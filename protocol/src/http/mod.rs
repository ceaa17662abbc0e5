//! HTTP/1.1 (RFC 9112): request heads and bodies in, response heads out, no I/O.
//!
//! The engine owns the socket and the buffer and loops: call [`parse_request`] on the
//! buffered bytes until it stops returning `Ok(None)`, then feed the bytes after
//! `head_len` to a [`BodyDecoder`], and write answers with [`write_response_head`].
//! Every refusal is an error value that knows its status code.
//!
//! For file routes: [`file_path`] turns a request path into a path below the root (or a
//! refusal), [`parse_range`] decides 200 / 206 / 416, [`not_modified`] and
//! [`range_applies`] evaluate the conditional headers, and [`attachment`] names a download.

mod body;
mod chunked;
mod conditional;
mod date;
mod disposition;
mod error;
mod fields;
mod file_path;
mod range;
mod request;
mod response;
mod upstream;

pub use body::{BodyDecoder, BodyKind, Decoded};
pub use chunked::{MAX_CHUNK_LINE_BYTES, MAX_TRAILER_BYTES};
pub use conditional::{file_etag, not_modified, range_applies};
pub use date::{HttpDate, common_log_time, parse_http_date, rfc3339_millis};
pub use disposition::attachment;
pub use error::{BodyError, RequestError};
pub use file_path::{PathRefusal, file_path, percent_decode};
pub use httparse::{EMPTY_HEADER, Header};
pub use range::{RangeAnswer, content_range, parse_range, unsatisfied_range};
pub use request::{
    DEFAULT_MAX_HEAD_BYTES, DEFAULT_MAX_HEADERS, DEFAULT_MAX_URI_BYTES, HEADER_SLOTS, HeadLimits,
    Method, Request, Version, parse_request,
};
pub use response::{reason_phrase, write_continue, write_error_response, write_response_head};
pub use upstream::{
    CHUNK_END, LAST_CHUNK, ResponseBody, ResponseError, ResponseHead, is_hop_by_hop,
    parse_response, write_chunk_size,
};
