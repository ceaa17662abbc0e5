//! The request head parser on any bytes: it never panics, an accepted head keeps the limits
//! and the framing rules, and a refusal maps to a status the server can answer with.
#![no_main]

use std::mem::MaybeUninit;

use libfuzzer_sys::fuzz_target;
use ringstream_protocol::http::{
    BodyDecoder, BodyKind, HEADER_SLOTS, HeadLimits, HttpDate, Method, Request, Version,
    parse_request, reason_phrase, write_error_response,
};

/// Small limits, so the 414 and 431 paths are reached by short inputs too.
const TIGHT: HeadLimits = HeadLimits {
    max_head_bytes: 96,
    max_headers: 3,
    max_uri_bytes: 24,
};

fuzz_target!(|data: &[u8]| {
    for limits in [HeadLimits::default(), TIGHT] {
        let mut slots = [const { MaybeUninit::uninit() }; HEADER_SLOTS];
        match parse_request(data, &mut slots, &limits) {
            Ok(None) => assert!(
                data.len() <= limits.max_head_bytes,
                "431 once past the limit"
            ),
            Ok(Some(request)) => check_request(&request, data, &limits),
            Err(error) => {
                let status = error.status();
                assert!(matches!(status, 400 | 414 | 431 | 501 | 505), "{error:?}");
                assert!(reason_phrase(status).is_some());
                let mut out = Vec::new();
                write_error_response(&mut out, status, &HttpDate::from_unix_secs(0), &[]);
                assert!(out.starts_with(format!("HTTP/1.1 {status} ").as_bytes()));
                assert!(out.windows(19).any(|w| w == b"Connection: close\r\n"));
            }
        }
    }
});

/// What an accepted head promises.
fn check_request(request: &Request<'_, '_>, data: &[u8], limits: &HeadLimits) {
    let head = &data[..request.head_len];
    assert!(request.head_len <= limits.max_head_bytes);
    assert!(request.target.len() <= limits.max_uri_bytes);
    assert!(request.headers.len() <= limits.max_headers);
    assert!(head.ends_with(b"\r\n\r\n"), "lines end in CRLF");
    // Every CR is followed by LF and every LF preceded by CR: no bare line endings.
    for (i, &b) in head.iter().enumerate() {
        match b {
            b'\r' => assert_eq!(head.get(i + 1), Some(&b'\n')),
            b'\n' => assert!(i > 0 && head[i - 1] == b'\r'),
            _ => {}
        }
    }
    // RFC 9112 §2.2: empty lines before the request line are skipped.
    let mut line = head;
    while let Some(rest) = line.strip_prefix(b"\r\n") {
        line = rest;
    }
    let method = request.method.as_str();
    assert!(line.starts_with(method.as_bytes()) && line[method.len()] == b' ');
    assert!(!request.target.is_empty());
    match request.query() {
        Some(query) => assert_eq!(format!("{}?{query}", request.path()), request.target),
        None => assert_eq!(request.path(), request.target),
    }
    let hosts = request
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("host"))
        .count();
    assert!(hosts <= 1, "RFC 9112 §3.2: more than one Host is refused");
    if request.version == Version::Http11 {
        assert!(request.host.is_some(), "RFC 9112 §3.2: HTTP/1.1 needs Host");
    }
    for header in request.headers {
        assert!(!header.name.is_empty());
        assert!(!header.value.iter().any(|&b| b == b'\r' || b == b'\n'));
    }
    let has = |name: &str| request.header(name).is_some();
    match request.body {
        BodyKind::Chunked => {
            assert_eq!(request.version, Version::Http11, "RFC 9112 §6.1");
            assert!(!has("content-length"), "RFC 9112 §6.3 item 3");
        }
        BodyKind::Length(_) => assert!(has("content-length") && !has("transfer-encoding")),
        BodyKind::None => assert!(!has("content-length") && !has("transfer-encoding")),
    }
    if request.expect_continue {
        assert_eq!(request.version, Version::Http11, "RFC 9110 §10.1.1");
    }
    if matches!(request.method, Method::Other(_)) {
        assert!(!matches!(
            method,
            "GET" | "HEAD" | "POST" | "PUT" | "DELETE"
        ));
    }
    let _ = request.is_upgrade_to("websocket");
    let _ = request.connection_has_token("close");

    // The head alone is complete, and parses to the same request.
    let mut slots = [const { MaybeUninit::uninit() }; HEADER_SLOTS];
    let again = parse_request(head, &mut slots, limits);
    assert_eq!(again.as_ref().map(|r| r.as_ref()), Ok(Some(request)));

    // Whatever follows is the body (or the next request); decoding it never panics and
    // never reports more than it was given.
    let mut decoder = BodyDecoder::new(request.body, 1 << 20);
    let mut rest = &data[request.head_len..];
    while !rest.is_empty() && !decoder.is_done() {
        let Ok(decoded) = decoder.decode(rest) else {
            break;
        };
        assert!(decoded.consumed >= 1 && decoded.consumed <= rest.len());
        assert!(decoded.data.end <= decoded.consumed);
        rest = &rest[decoded.consumed..];
    }
}
