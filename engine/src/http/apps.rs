//! The answers of the built-in HTTP routes (`health`, `static_text`) and of a missing route.

use ringstream_protocol::http::{HttpDate, Method, write_response_head};

use crate::config::RouteKind;

const TEXT_PLAIN: &[u8] = b"text/plain; charset=utf-8";
const ALLOW_READ: (&str, &[u8]) = ("Allow", b"GET, HEAD");

/// The request methods the built-in routes tell apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MethodClass {
    /// `GET`.
    Get,
    /// `HEAD`: the `GET` answer without its body (RFC 9110 §9.3.2).
    Head,
    /// Anything else.
    Other,
}

impl MethodClass {
    /// Classifies a parsed method.
    pub fn of(method: &Method<'_>) -> Self {
        match method {
            Method::Get => Self::Get,
            Method::Head => Self::Head,
            _ => Self::Other,
        }
    }
}

/// Appends the response of `kind` to `out`.
pub fn respond(
    kind: &RouteKind,
    method: MethodClass,
    date: &HttpDate,
    close: bool,
    out: &mut Vec<u8>,
) {
    match kind {
        RouteKind::Health => read_only(method, b"ok", TEXT_PLAIN, date, close, out),
        RouteKind::StaticText { body, content_type } => read_only(
            method,
            body.as_bytes(),
            content_type.as_bytes(),
            date,
            close,
            out,
        ),
        // Upgrades are answered before a route's response is written; a request that gets
        // here on a WebSocket route was refused by the upgrade decision already.
        RouteKind::Echo { .. } | RouteKind::Handler { .. } => {}
    }
}

/// Appends a 404 for a path no route serves.
pub fn not_found(method: MethodClass, date: &HttpDate, close: bool, out: &mut Vec<u8>) {
    let headers = [("Content-Type", TEXT_PLAIN)];
    write_with_body(out, 404, &headers, b"404 Not Found\n", method, date, close);
}

/// A fixed body for `GET` and `HEAD`; 405 with `Allow` for any other method.
fn read_only(
    method: MethodClass,
    body: &[u8],
    content_type: &[u8],
    date: &HttpDate,
    close: bool,
    out: &mut Vec<u8>,
) {
    match method {
        MethodClass::Get | MethodClass::Head => {
            let headers = [("Content-Type", content_type)];
            write_with_body(out, 200, &headers, body, method, date, close);
        }
        MethodClass::Other => {
            let headers = [("Content-Type", TEXT_PLAIN), ALLOW_READ];
            let body = b"405 Method Not Allowed\n";
            write_with_body(out, 405, &headers, body, method, date, close);
        }
    }
}

/// A response with a `Content-Length` body, which a `HEAD` request gets without the body
/// (RFC 9110 §9.3.2).
fn write_with_body(
    out: &mut Vec<u8>,
    status: u16,
    headers: &[(&str, &[u8])],
    body: &[u8],
    method: MethodClass,
    date: &HttpDate,
    close: bool,
) {
    write_response_head(out, status, date, headers, Some(body.len() as u64), close);
    if method != MethodClass::Head {
        out.extend_from_slice(body);
    }
}
