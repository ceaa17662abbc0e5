//! The upstream's response head, judged and rewritten for the client: its status, reason and
//! end-to-end fields, never a hop-by-hop one, and the body framing ringstream writes itself
//! (the upstream's body is decoded and framed again, as the request's was).

use std::io::Write;

use ringstream_protocol::http::{BodyKind, ResponseBody, ResponseHead};

/// How the client's response body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientFraming {
    /// No body (or a HEAD's: the upstream's `Content-Length` passes as it is).
    None,
    /// `Content-Length`: the upstream's bytes as they come.
    Length,
    /// `Transfer-Encoding: chunked`: each piece as one chunk.
    Chunked,
    /// An HTTP/1.0 client: the body runs until the close.
    UntilClose,
}

/// What the rest of the exchange needs of the upstream's head once its bytes are gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Relayed {
    /// The upstream's status.
    pub status: u16,
    /// How the upstream's body is delimited.
    pub upstream_body: ResponseBody,
    /// How the client's is.
    pub framing: ClientFraming,
    /// Whether the upstream connection may go back to the pool after the body.
    pub upstream_keep_alive: bool,
}

impl Relayed {
    /// The decoder's kind for the upstream body (`None` for no body or one delimited by the
    /// close, which is read as it comes).
    pub fn decoded_as(&self) -> Option<BodyKind> {
        match self.upstream_body {
            ResponseBody::Length(n) => Some(BodyKind::Length(n)),
            ResponseBody::Chunked => Some(BodyKind::Chunked),
            ResponseBody::None | ResponseBody::UntilClose => None,
        }
    }
}

/// Appends the client's response head for `head` to `out`: `client_http10` for an HTTP/1.0
/// client (no chunked framing), `close` when the client's connection ends after it, `extra`
/// fields of ringstream's own (the `RateLimit` fields of `rate_limit_headers`).
pub fn client_head(
    head: &ResponseHead<'_, '_>,
    client_http10: bool,
    close: bool,
    extra: &[(&str, &[u8])],
    out: &mut Vec<u8>,
) -> Relayed {
    let _ = write!(out, "HTTP/1.1 {} ", head.status);
    out.extend_from_slice(head.reason.as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in extra {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    for field in head.headers {
        // A body-less answer keeps the size of what a GET would have had (HEAD, 304).
        let keep_length = head.body == ResponseBody::None
            && head.status != 204
            && field.name.eq_ignore_ascii_case("content-length");
        if !keep_length && ringstream_protocol::http::is_hop_by_hop(field.name, head.headers) {
            continue;
        }
        out.extend_from_slice(field.name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(field.value);
        out.extend_from_slice(b"\r\n");
    }
    if head.status == 101 {
        // The tunnel's answer: the switch is named again (those fields are hop-by-hop).
        out.extend_from_slice(b"Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n");
        return Relayed {
            status: 101,
            upstream_body: ResponseBody::None,
            framing: ClientFraming::None,
            upstream_keep_alive: false,
        };
    }
    let framing = match head.body {
        ResponseBody::None => ClientFraming::None,
        ResponseBody::Length(n) => {
            let _ = write!(out, "Content-Length: {n}\r\n");
            ClientFraming::Length
        }
        ResponseBody::Chunked | ResponseBody::UntilClose if client_http10 => {
            ClientFraming::UntilClose
        }
        ResponseBody::Chunked | ResponseBody::UntilClose => {
            out.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
            ClientFraming::Chunked
        }
    };
    if close || framing == ClientFraming::UntilClose {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    Relayed {
        status: head.status,
        upstream_body: head.body,
        framing,
        upstream_keep_alive: head.keep_alive,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;
    use ringstream_protocol::http::{EMPTY_HEADER, parse_response};

    fn relay(raw: &str, to_head: bool, http10: bool, close: bool) -> (String, Relayed) {
        let mut slots = [EMPTY_HEADER; 16];
        let head = parse_response(raw.as_bytes(), &mut slots, to_head, 8192)
            .unwrap()
            .unwrap();
        let mut out = Vec::new();
        let relayed = client_head(&head, http10, close, &[], &mut out);
        (String::from_utf8(out).unwrap(), relayed)
    }

    #[test]
    fn hop_by_hop_fields_go_and_the_framing_is_ringstreams() {
        let (head, relayed) = relay(
            "HTTP/1.1 200 OK\r\nServer: uvicorn\r\nConnection: keep-alive, X-Internal\r\nX-Internal: 1\r\n\
             Keep-Alive: timeout=5\r\nTransfer-Encoding: chunked\r\nSet-Cookie: a=b\r\n\r\n",
            false,
            false,
            false,
        );
        assert_eq!(
            head,
            "HTTP/1.1 200 OK\r\nServer: uvicorn\r\nSet-Cookie: a=b\r\nTransfer-Encoding: chunked\r\n\r\n"
        );
        assert_eq!(relayed.framing, ClientFraming::Chunked);
        assert_eq!(relayed.decoded_as(), Some(BodyKind::Chunked));
        let (head, relayed) = relay(
            "HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\n",
            false,
            false,
            true,
        );
        assert_eq!(
            head,
            "HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\nConnection: close\r\n\r\n"
        );
        assert_eq!(relayed.framing, ClientFraming::Length);
    }

    #[test]
    fn bodies_delimited_by_the_close_and_http_10_clients() {
        let (head, relayed) = relay("HTTP/1.0 200 OK\r\n\r\n", false, false, false);
        assert_eq!(
            head,
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        );
        assert!(!relayed.upstream_keep_alive);
        assert_eq!(relayed.decoded_as(), None);
        let (head, relayed) = relay(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            false,
            true,
            false,
        );
        assert_eq!(head, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n");
        assert_eq!(relayed.framing, ClientFraming::UntilClose);
    }

    #[test]
    fn a_head_or_304_keeps_its_content_length() {
        let (head, relayed) = relay(
            "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n",
            true,
            false,
            false,
        );
        assert_eq!(head, "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n");
        assert_eq!(relayed.framing, ClientFraming::None);
        let (head, _) = relay(
            "HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n",
            false,
            false,
            false,
        );
        assert_eq!(head, "HTTP/1.1 204 No Content\r\n\r\n");
    }
}
