//! The answers of the built-in HTTP routes (`health`, `static_text`), of a missing route and
//! of a request over its rate.

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

/// Appends the response of `kind` to `out`, with `extra` headers (the rate headers).
pub fn respond(
    kind: &RouteKind,
    method: MethodClass,
    date: &HttpDate,
    close: bool,
    extra: &[(&str, &[u8])],
    out: &mut Vec<u8>,
) {
    let page = Page {
        method,
        date,
        close,
        extra,
    };
    match kind {
        RouteKind::Health => page.read_only(b"ok", TEXT_PLAIN, out),
        RouteKind::StaticText { body, content_type } => {
            page.read_only(body.as_bytes(), content_type.as_bytes(), out);
        }
        // Upgrades are answered before a route's response is written; a request that gets
        // here on a WebSocket route was refused by the upgrade decision already. `/stats`,
        // `/metrics` and `/dashboard` are answered by `observe`, publish routes by `publish`, proxy routes by
        // their upstream.
        RouteKind::Echo { .. }
        | RouteKind::Handler { .. }
        | RouteKind::Broadcast { .. }
        | RouteKind::Publish { .. }
        | RouteKind::Sink { .. }
        | RouteKind::Files(_)
        | RouteKind::Upload(_)
        | RouteKind::Proxy(_)
        | RouteKind::Stats { .. }
        | RouteKind::Metrics { .. }
        | RouteKind::Dashboard { .. } => {}
    }
}

/// Appends a 429 that keeps the connection open; `extra` holds `Retry-After` and the rate
/// headers.
pub fn too_many_requests(
    method: MethodClass,
    date: &HttpDate,
    extra: &[(&str, &[u8])],
    out: &mut Vec<u8>,
) {
    let page = Page {
        method,
        date,
        close: false,
        extra,
    };
    page.write(429, TEXT_PLAIN, b"429 Too Many Requests\n", out);
}

/// Appends a 404 for a path no route serves.
pub fn not_found(method: MethodClass, date: &HttpDate, close: bool, out: &mut Vec<u8>) {
    let page = Page {
        method,
        date,
        close,
        extra: &[],
    };
    page.write(404, TEXT_PLAIN, b"404 Not Found\n", out);
}

/// What every response of one request shares.
#[derive(Debug, Clone, Copy)]
pub struct Page<'a> {
    /// The request's method (`HEAD` gets no body).
    pub method: MethodClass,
    /// The `Date` value.
    pub date: &'a HttpDate,
    /// Whether the response ends the connection.
    pub close: bool,
    /// Headers added after `Content-Type`.
    pub extra: &'a [(&'a str, &'a [u8])],
}

impl Page<'_> {
    /// A fixed body for `GET` and `HEAD`; 405 with `Allow` for any other method.
    pub fn read_only(&self, body: &[u8], content_type: &[u8], out: &mut Vec<u8>) {
        match self.method {
            MethodClass::Get | MethodClass::Head => self.write(200, content_type, body, out),
            MethodClass::Other => self.not_read_only(out),
        }
    }

    /// 405 with `Allow: GET, HEAD`.
    pub fn not_read_only(&self, out: &mut Vec<u8>) {
        let page = Page {
            extra: &[ALLOW_READ],
            ..*self
        };
        page.write(405, TEXT_PLAIN, b"405 Method Not Allowed\n", out);
    }

    /// A response with a `Content-Length` body, which a `HEAD` request gets without the body
    /// (RFC 9110 §9.3.2).
    pub fn write(&self, status: u16, content_type: &[u8], body: &[u8], out: &mut Vec<u8>) {
        let mut headers: [(&str, &[u8]); 4] = [("", b""); 4];
        headers[0] = ("Content-Type", content_type);
        let extra = self.extra.len().min(headers.len() - 1);
        headers[1..=extra].copy_from_slice(&self.extra[..extra]);
        let headers = &headers[..=extra];
        write_response_head(
            out,
            status,
            self.date,
            headers,
            Some(body.len() as u64),
            self.close,
        );
        if self.method != MethodClass::Head {
            out.extend_from_slice(body);
        }
    }
}
