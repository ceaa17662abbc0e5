//! Sans-IO codecs for ringstream: bytes in, decisions and bytes out.
//!
//! Nothing here reads a socket or a clock. The engine hands in what it has buffered
//! and gets back either "need more bytes" (`Ok(None)`), a parsed value borrowing the
//! buffer, or an error that already knows the answer to send (`status()`), so every
//! protection in PROTECTIONS.md that concerns the wire format is decided here and can
//! be tested without a network.
//!
//! # Layout
//!
//! - [`http`]: HTTP/1.1. Request heads are parsed in place and checked against the
//!   size limits and the request-smuggling rules; bodies are decoded incrementally
//!   (`Content-Length` and chunked) without copying; response heads, `100 Continue`
//!   and small error responses are written into the output buffer, with a `Date`
//!   value formatted from a Unix time.
//! - [`ws`]: WebSocket (RFC 6455), server side. The opening handshake, frame headers
//!   with the checks a server applies to client frames, masking, and a session that
//!   reassembles messages under `max_message_size` / `max_fragments`, validates UTF-8
//!   incrementally and validates close frames; every violation knows its close code.
//! - [`json`]: JSON string escaping for the answers and lines written as JSON.

#![forbid(unsafe_code)]

pub mod http;
pub mod json;
pub mod ws;
