use std::mem::MaybeUninit;

use proptest::prelude::*;

use super::*;

fn slots<'b>() -> [MaybeUninit<Header<'b>>; HEADER_SLOTS] {
    [const { MaybeUninit::uninit() }; HEADER_SLOTS]
}

/// The result as text, so results parsed into different slot arrays compare; errors by
/// status only, since the 400 variant is a best guess when several causes are present.
fn answer(buf: &[u8], limits: &HeadLimits) -> String {
    let mut slots = slots();
    match parse_request(buf, &mut slots, limits) {
        Err(e) => format!("Err({})", e.status()),
        ok => format!("{ok:?}"),
    }
}

/// The answer an engine reading `buf` one byte at a time would act on.
fn answer_byte_by_byte(buf: &[u8], limits: &HeadLimits) -> String {
    (0..=buf.len())
        .map(|end| answer(&buf[..end], limits))
        .find(|answer| answer != "Ok(None)")
        .unwrap_or_else(|| "Ok(None)".to_owned())
}

/// Runs `check` on the request `buf` must parse into under the default limits.
fn parsed<R>(buf: &[u8], check: impl FnOnce(&Request<'_, '_>) -> R) -> R {
    let mut slots = slots();
    match parse_request(buf, &mut slots, &HeadLimits::default()) {
        Ok(Some(request)) => check(&request),
        other => panic!("{:?} gave {other:?}", String::from_utf8_lossy(buf)),
    }
}

fn error_with(buf: &[u8], limits: &HeadLimits) -> RequestError {
    let mut slots = slots();
    match parse_request(buf, &mut slots, limits) {
        Err(e) => e,
        other => panic!("{:?} gave {other:?}", String::from_utf8_lossy(buf)),
    }
}

fn error(buf: &[u8]) -> RequestError {
    error_with(buf, &HeadLimits::default())
}

fn limits(max_head_bytes: usize, max_headers: usize, max_uri_bytes: usize) -> HeadLimits {
    HeadLimits {
        max_head_bytes,
        max_headers,
        max_uri_bytes,
    }
}

const GET: &[u8] = b"GET /index.html?q=1&r=2 HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\nX-Twice: a\r\nx-twice: b\r\n\r\n";

/// Requests that must parse, heads and bodies both, for the every-split tests.
pub(crate) const VALID: &[&[u8]] = &[
    GET,
    b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n",
    b"\r\nGET / HTTP/1.0\r\n\r\n",
    b"OPTIONS * HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\r\n",
    b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
    b"PUT /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 3\r\nExpect: 100-continue\r\n\r\nabc",
    b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nWiki\r\n5;a=b\r\npedia\r\n0\r\n\r\n",
    b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: Chunked\r\n\r\n3 ; x=\"q;\"\r\nabc\r\n0;last\r\nExpires: never\r\nX-Sum: 1\r\n\r\n",
    b"PATCH /x HTTP/1.1\r\nHost:\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64)\t\r\nEmpty:\r\n\r\n",
];

#[test]
fn get_request_fields() {
    parsed(GET, |r| {
        assert_eq!(r.method, Method::Get);
        assert_eq!(r.target, "/index.html?q=1&r=2");
        assert_eq!(r.path(), "/index.html");
        assert_eq!(r.query(), Some("q=1&r=2"));
        assert_eq!(r.version, Version::Http11);
        assert_eq!(r.headers.len(), 4);
        assert_eq!(r.head_len, GET.len());
        assert_eq!(r.body, BodyKind::None);
        assert!(r.keep_alive);
        assert!(!r.expect_continue);
        assert_eq!(r.host, Some(&b"example.com"[..]));
        assert_eq!(r.upgrade, None);
        assert_eq!(r.header("ACCEPT"), Some(&b"*/*"[..]));
        assert_eq!(r.header("x-TWICE"), Some(&b"a"[..]));
        assert_eq!(r.header("missing"), None);
    });
}

#[test]
fn target_without_query() {
    parsed(b"GET /a/b HTTP/1.1\r\nHost: x\r\n\r\n", |r| {
        assert_eq!(r.path(), "/a/b");
        assert_eq!(r.query(), None);
    });
    parsed(b"GET /a? HTTP/1.1\r\nHost: x\r\n\r\n", |r| {
        assert_eq!(r.path(), "/a");
        assert_eq!(r.query(), Some(""));
    });
}

#[test]
fn methods() {
    for (token, method) in [
        ("GET", Method::Get),
        ("HEAD", Method::Head),
        ("POST", Method::Post),
        ("PUT", Method::Put),
        ("DELETE", Method::Delete),
        ("OPTIONS", Method::Options),
        ("PATCH", Method::Patch),
        ("CONNECT", Method::Connect),
        ("TRACE", Method::Trace),
        ("get", Method::Other("get")),
        ("PROPFIND", Method::Other("PROPFIND")),
    ] {
        let buf = format!("{token} / HTTP/1.1\r\nHost: x\r\n\r\n");
        parsed(buf.as_bytes(), |r| {
            assert_eq!(r.method, method);
            assert_eq!(r.method.as_str(), token);
        });
    }
}

#[test]
fn keep_alive_follows_version_and_connection() {
    for (head, keep_alive) in [
        ("GET / HTTP/1.1\r\nHost: x\r\n\r\n", true),
        (
            "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            false,
        ),
        (
            "GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, CLOSE\r\n\r\n",
            false,
        ),
        (
            "GET / HTTP/1.1\r\nConnection: foo\r\nHost: x\r\nConnection: close\r\n\r\n",
            false,
        ),
        (
            "GET / HTTP/1.1\r\nHost: x\r\nConnection: closed\r\n\r\n",
            true,
        ),
        ("GET / HTTP/1.0\r\n\r\n", false),
        ("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", true),
        (
            "GET / HTTP/1.0\r\nConnection: Keep-Alive, foo\r\n\r\n",
            true,
        ),
        (
            "GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n",
            false,
        ),
    ] {
        parsed(head.as_bytes(), |r| {
            assert_eq!(r.keep_alive, keep_alive, "{head:?}")
        });
    }
}

#[test]
fn expect_continue_only_on_http11() {
    let head = b"POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\n";
    parsed(head, |r| assert!(r.expect_continue));
    let head = b"POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n";
    parsed(head, |r| assert!(!r.expect_continue));
    let head = b"POST / HTTP/1.1\r\nHost: x\r\nExpect: something-else\r\n\r\n";
    parsed(head, |r| assert!(!r.expect_continue));
}

#[test]
fn upgrade_needs_both_fields() {
    let head = b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, Upgrade\r\nUpgrade: WebSocket\r\n\r\n";
    parsed(head, |r| {
        assert!(r.connection_has_token("upgrade"));
        assert!(r.connection_has_token("Keep-Alive"));
        assert!(!r.connection_has_token("close"));
        assert_eq!(r.upgrade, Some(&b"WebSocket"[..]));
        assert!(r.is_upgrade_to("websocket"));
        assert!(!r.is_upgrade_to("h2c"));
    });
    let head = b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n";
    parsed(head, |r| assert!(!r.is_upgrade_to("websocket")));
    let head = b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\n\r\n";
    parsed(head, |r| assert!(!r.is_upgrade_to("websocket")));
}

#[test]
fn pipelined_requests_parse_one_at_a_time() {
    let first = b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\n";
    let second = b"POST /2 HTTP/1.1\r\nHost: y\r\nContent-Length: 2\r\n\r\nhi";
    let buf = [&first[..], second].concat();
    let head_len = parsed(&buf, |r| {
        assert_eq!(r.target, "/1");
        r.head_len
    });
    assert_eq!(head_len, first.len());
    parsed(&buf[head_len..], |r| {
        assert_eq!(r.target, "/2");
        assert_eq!(r.body, BodyKind::Length(2));
        assert_eq!(r.head_len, second.len() - 2);
    });
}

#[test]
fn body_framing() {
    for (head, body) in [
        (
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 42\r\n\r\n",
            BodyKind::Length(42),
        ),
        (
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
            BodyKind::Length(0),
        ),
        (
            "POST / HTTP/1.1\r\nHost: x\r\ncontent-length: 007\r\n\r\n",
            BodyKind::Length(7),
        ),
        // RFC 9110 §8.6: identical values, as a list or repeated, are one value.
        (
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 5\r\n\r\n",
            BodyKind::Length(5),
        ),
        (
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
            BodyKind::Length(5),
        ),
        (
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 18446744073709551615\r\n\r\n",
            BodyKind::Length(u64::MAX),
        ),
        (
            "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
            BodyKind::Chunked,
        ),
        (
            "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: CHUNKED \r\n\r\n",
            BodyKind::Chunked,
        ),
        (
            "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: , chunked\r\n\r\n",
            BodyKind::Chunked,
        ),
        (
            "POST / HTTP/1.0\r\nContent-Length: 3\r\n\r\n",
            BodyKind::Length(3),
        ),
        ("POST / HTTP/1.0\r\n\r\n", BodyKind::None),
    ] {
        parsed(head.as_bytes(), |r| assert_eq!(r.body, body, "{head:?}"));
    }
}

#[test]
fn host_rules() {
    parsed(b"GET / HTTP/1.0\r\n\r\n", |r| assert_eq!(r.host, None));
    parsed(b"GET / HTTP/1.1\r\nHost:\r\n\r\n", |r| {
        assert_eq!(r.host, Some(&b""[..]))
    });
    parsed(b"GET / HTTP/1.1\r\nhOsT: a:80\r\n\r\n", |r| {
        assert_eq!(r.host, Some(&b"a:80"[..]));
    });
}

#[test]
fn leading_empty_lines_are_skipped() {
    // RFC 9112 §2.2: a server SHOULD ignore at least one empty line before the request.
    parsed(b"\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n", |r| {
        assert_eq!(r.head_len, 31);
        assert_eq!(r.target, "/");
    });
    assert_eq!(
        error(b"\nGET / HTTP/1.1\r\nHost: x\r\n\r\n"),
        RequestError::BareLineEnding
    );
}

#[test]
fn refusals_with_their_status() {
    use RequestError::*;
    let cases: &[(&[u8], RequestError, u16)] = &[
        // Framing and smuggling.
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", ContentLengthWithTransferEncoding, 400),
        (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", ContentLengthWithTransferEncoding, 400),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", ConflictingContentLength, 400),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 6\r\n\r\n", ConflictingContentLength, 400),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n", InvalidContentLength, 400),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", InvalidContentLength, 400),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\n", InvalidContentLength, 400),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1 2\r\n\r\n", InvalidContentLength, 400),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0x10\r\n\r\n", InvalidContentLength, 400),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 18446744073709551616\r\n\r\n", InvalidContentLength, 400),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length:\r\n\r\n", InvalidContentLength, 400),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5,\r\n\r\n", InvalidContentLength, 400),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: x\r\n\r\n", InvalidContentLength, 400),
        (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", InvalidTransferEncoding, 400),
        (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", InvalidTransferEncoding, 400),
        (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n", InvalidTransferEncoding, 400),
        (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", InvalidTransferEncoding, 400),
        (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: \r\n\r\n", InvalidTransferEncoding, 400),
        (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n", InvalidTransferEncoding, 400),
        (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked;q=1\r\n\r\n", InvalidTransferEncoding, 400),
        (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", UnsupportedTransferCoding, 501),
        (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n", UnsupportedTransferCoding, 501),
        (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", TransferEncodingInHttp10, 400),
        (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\nContent-Length: 1\r\n\r\n", TransferEncodingInHttp10, 400),
        (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 1\r\n\r\n", ContentLengthWithTransferEncoding, 400),
        // Line structure.
        (b"GET / HTTP/1.1\r\nHost: x\r\nX-A: b\r\n c\r\n\r\n", ObsFold, 400),
        (b"GET / HTTP/1.1\r\nHost: x\r\nX-A: b\r\n\tc\r\n\r\n", ObsFold, 400),
        (b"GET / HTTP/1.1\r\n Host: x\r\n\r\n", ObsFold, 400),
        (b"GET / HTTP/1.1\nHost: x\r\n\r\n", BareLineEnding, 400),
        (b"GET / HTTP/1.1\r\nHost: x\n\r\n", BareLineEnding, 400),
        (b"GET / HTTP/1.1\r\nHost: x\r\n\n", BareLineEnding, 400),
        (b"GET / HTTP/1.1\nHost: x\n\n", BareLineEnding, 400),
        (b"GET / HTTP/1.1\r\nHost: x\rX-A: b\r\n\r\n", BareLineEnding, 400),
        (b"GET / HTTP/1.1\r\nHost: x\r\nX-A: b\rc\r\n\r\n", BareLineEnding, 400),
        (b"GET / HTTP/1.1\r\nHost: x\r\n\rX\r\n", BareLineEnding, 400),
        (b"GET / HTTP/1.1\rHost: x\r\n\r\n", BareLineEnding, 400),
        // Host.
        (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", DuplicateHost, 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n", DuplicateHost, 400),
        (b"GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n", DuplicateHost, 400),
        (b"GET / HTTP/1.1\r\n\r\n", MissingHost, 400),
        (b"GET / HTTP/1.1\r\nHosts: x\r\n\r\n", MissingHost, 400),
        // Syntax.
        (b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n", InvalidHeader, 400),
        (b"GET / HTTP/1.1\r\nHost : x\r\n\r\n", InvalidHeader, 400),
        (b"GET / HTTP/1.1\r\n: x\r\n\r\n", InvalidHeader, 400),
        (b"GET / HTTP/1.1\r\nHost: a\x00b\r\n\r\n", InvalidHeader, 400),
        (b"GET / HTTP/1.1\r\nHost: a\x7fb\r\n\r\n", InvalidHeader, 400),
        (b"GET  / HTTP/1.1\r\nHost: x\r\n\r\n", InvalidRequestLine, 400),
        (b"GET /  HTTP/1.1\r\nHost: x\r\n\r\n", InvalidRequestLine, 400),
        (b"GET /\x01 HTTP/1.1\r\nHost: x\r\n\r\n", InvalidRequestLine, 400),
        (b"G(T / HTTP/1.1\r\nHost: x\r\n\r\n", InvalidRequestLine, 400),
        (b"GET /\r\n\r\n", InvalidRequestLine, 400),
        (b"GET / HTTP/1.1 \r\nHost: x\r\n\r\n", InvalidRequestLine, 400),
        (b"GET / http/1.1\r\nHost: x\r\n\r\n", InvalidRequestLine, 400),
        (b"GET / HTTP/1.x\r\nHost: x\r\n\r\n", InvalidRequestLine, 400),
        (b"GET / HTTP/11\r\nHost: x\r\n\r\n", InvalidRequestLine, 400),
        (b"GET /\xff HTTP/1.1\r\nHost: x\r\n\r\n", InvalidRequestLine, 400),
        // Versions.
        (b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", VersionNotSupported, 505),
        (b"GET / HTTP/1.2\r\nHost: x\r\n\r\n", VersionNotSupported, 505),
        (b"GET / HTTP/0.9\r\n\r\n", VersionNotSupported, 505),
        (b"GET / HTTP/3\r\n", VersionNotSupported, 505),
    ];
    for &(buf, expected, status) in cases {
        let got = error(buf);
        assert_eq!(got, expected, "{:?}", String::from_utf8_lossy(buf));
        assert_eq!(got.status(), status, "{:?}", String::from_utf8_lossy(buf));
        // Reading byte by byte gives the same status.
        let limits = HeadLimits::default();
        assert_eq!(answer_byte_by_byte(buf, &limits), answer(buf, &limits));
    }
}

#[test]
fn head_limit_incomplete_and_complete() {
    let head = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    // Exactly at the limit is accepted; one byte less is refused.
    parse_ok(head, &limits(head.len(), 64, 100));
    assert_eq!(
        error_with(head, &limits(head.len() - 1, 64, 100)),
        RequestError::HeadTooLarge
    );
    // More than the limit buffered without the end of the head.
    let partial = b"GET / HTTP/1.1\r\nHost: x\r\nX-Long: aaaaaaaaaaaaaaaaaaaaaaaaa";
    let tight = limits(40, 64, 100);
    assert_eq!(error_with(partial, &tight), RequestError::HeadTooLarge);
    assert_eq!(error_with(partial, &tight).status(), 431);
    // Up to the limit it is still just incomplete.
    assert_eq!(answer(&partial[..40], &tight), "Ok(None)");
    // Bytes after a complete head (a body) do not count.
    let with_body = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx";
    parse_ok(with_body, &limits(50, 64, 100));
}

fn parse_ok(buf: &[u8], limits: &HeadLimits) {
    let mut slots = slots();
    let result = parse_request(buf, &mut slots, limits);
    assert!(matches!(result, Ok(Some(_))), "{result:?}");
}

#[test]
fn header_count_limit() {
    let head = b"GET / HTTP/1.1\r\nHost: x\r\nA: 1\r\nB: 2\r\n\r\n";
    parse_ok(head, &limits(1024, 3, 100));
    assert_eq!(
        error_with(head, &limits(1024, 2, 100)),
        RequestError::TooManyHeaders
    );
    assert_eq!(error_with(head, &limits(1024, 2, 100)).status(), 431);
    // Refused as soon as the field after the last allowed one is complete.
    assert_eq!(
        error_with(
            b"GET / HTTP/1.1\r\nHost: x\r\nA: 1\r\nB: 2\r\n",
            &limits(1024, 2, 100)
        ),
        RequestError::TooManyHeaders
    );
    // Fewer slots than `max_headers`: the slots are the limit.
    let mut few = [const { MaybeUninit::uninit() }; 2];
    assert_eq!(
        parse_request(head, &mut few, &limits(1024, 64, 100)),
        Err(RequestError::TooManyHeaders)
    );
    // 256 fields fit the standard slots, 257 do not.
    let mut many = b"GET / HTTP/1.1\r\nHost: x\r\n".to_vec();
    for i in 0..255 {
        many.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
    }
    many.extend_from_slice(b"\r\n");
    parse_ok(&many, &limits(1 << 20, usize::MAX, 100));
    many.truncate(many.len() - 2);
    many.extend_from_slice(b"X-last: v\r\n\r\n");
    assert_eq!(
        error_with(&many, &limits(1 << 20, usize::MAX, 100)),
        RequestError::TooManyHeaders
    );
}

#[test]
fn uri_limit_complete() {
    let uri = "/".repeat(100);
    let head = format!("GET {uri} HTTP/1.1\r\nHost: x\r\n\r\n");
    parse_ok(head.as_bytes(), &limits(1024, 64, 100));
    let refused = error_with(head.as_bytes(), &limits(1024, 64, 99));
    assert_eq!(refused, RequestError::UriTooLong);
    assert_eq!(refused.status(), 414);
}

#[test]
fn uri_limit_is_found_before_the_request_line_ends() {
    // 414 once max_uri_bytes + 1 target bytes are buffered: no LF, no SP after the
    // target yet, and far below the head limit.
    let limits = limits(16 * 1024, 64, 100);
    let streaming = format!("GET /{}", "a".repeat(99));
    assert_eq!(answer(streaming.as_bytes(), &limits), "Ok(None)");
    let streaming = format!("GET /{}", "a".repeat(100));
    assert_eq!(
        error_with(streaming.as_bytes(), &limits),
        RequestError::UriTooLong
    );
    // The method's length does not count against the target.
    let streaming = format!("PROPFIND /{}", "a".repeat(99));
    assert_eq!(answer(streaming.as_bytes(), &limits), "Ok(None)");
    // A target with a bad byte after the limit was already too long.
    let bad = format!("GET /{}\x01 HTTP/1.1\r\n\r\n", "a".repeat(200));
    assert_eq!(
        error_with(bad.as_bytes(), &limits),
        RequestError::UriTooLong
    );
    // With the target over, a later error in the head does not change the answer.
    let late = format!("GET /{} HTTP/9.9\r\n\r\n", "a".repeat(200));
    assert_eq!(
        error_with(late.as_bytes(), &limits),
        RequestError::UriTooLong
    );
}

#[test]
fn head_limit_wins_when_it_is_crossed_first() {
    // max_head_bytes (50) < method + SP + max_uri_bytes (4 + 100): the head limit is
    // crossed first, so 431, however the bytes are split.
    let limits = limits(50, 64, 100);
    let streaming = format!("GET /{}", "a".repeat(200));
    assert_eq!(
        error_with(streaming.as_bytes(), &limits),
        RequestError::HeadTooLarge
    );
    let complete = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(200));
    assert_eq!(
        error_with(complete.as_bytes(), &limits),
        RequestError::HeadTooLarge
    );
    assert_eq!(
        answer_byte_by_byte(complete.as_bytes(), &limits),
        "Err(431)"
    );
    // The other way round (defaults-like): 414 first.
    let limits = super::HeadLimits {
        max_head_bytes: 1000,
        ..limits
    };
    assert_eq!(
        error_with(complete.as_bytes(), &limits),
        RequestError::UriTooLong
    );
    assert_eq!(
        answer_byte_by_byte(complete.as_bytes(), &limits),
        "Err(414)"
    );
}

#[test]
fn every_split_gives_none_then_the_one_shot_result() {
    let limits = HeadLimits::default();
    for &buf in VALID {
        let full = answer(buf, &limits);
        assert!(full.starts_with("Ok(Some("), "{full}");
        let head_len = parsed(buf, |r| r.head_len);
        for end in 0..buf.len() {
            let prefix = answer(&buf[..end], &limits);
            if end < head_len {
                assert_eq!(
                    prefix,
                    "Ok(None)",
                    "{:?}",
                    String::from_utf8_lossy(&buf[..end])
                );
            } else {
                assert_eq!(prefix, full);
            }
        }
    }
}

/// Bytes that make parsers disagree.
const INTERESTING: &[u8] = b" \t\r\n:;,/?=-0159aAfFzZHTP.\x00\x7f\x80\xff";

fn mutated_request() -> impl Strategy<Value = Vec<u8>> {
    let edit = (
        any::<prop::sample::Index>(),
        0..3u8,
        prop::sample::select(INTERESTING),
    );
    (
        prop::sample::select(VALID),
        prop::collection::vec(edit, 0..4),
    )
        .prop_map(|(base, edits)| {
            let mut buf = base.to_vec();
            for (at, op, byte) in edits {
                let i = at.index(buf.len() + 1);
                match op {
                    0 => buf.insert(i, byte),
                    1 if i < buf.len() => {
                        buf.remove(i);
                    }
                    _ if i < buf.len() => buf[i] = byte,
                    _ => buf.push(byte),
                }
            }
            buf
        })
}

fn any_limits() -> impl Strategy<Value = HeadLimits> {
    (0usize..200, 0usize..8, 0usize..60).prop_map(|(h, n, u)| limits(h, n, u))
}

proptest! {
    #[test]
    fn never_panics_on_arbitrary_bytes(
        buf in prop::collection::vec(any::<u8>(), 0..512),
        max_head in prop_oneof![Just(0), Just(usize::MAX), any::<usize>(), 0usize..600],
        max_headers in prop_oneof![Just(0), Just(usize::MAX), 0usize..300],
        max_uri in prop_oneof![Just(0), Just(usize::MAX), any::<usize>(), 0usize..600],
    ) {
        let mut slots = slots();
        let _ = parse_request(&buf, &mut slots, &limits(max_head, max_headers, max_uri));
    }

    #[test]
    fn never_panics_on_near_valid_heads(buf in mutated_request(), limits in any_limits()) {
        let mut slots = slots();
        let _ = parse_request(&buf, &mut slots, &limits);
        let _ = parse_request(&buf, &mut slots, &HeadLimits::default());
    }

    /// The answer does not depend on how the bytes were split into reads.
    #[test]
    fn one_shot_answer_is_the_byte_by_byte_answer(buf in mutated_request(), limits in any_limits()) {
        prop_assert_eq!(answer(&buf, &limits), answer_byte_by_byte(&buf, &limits));
        let defaults = HeadLimits::default();
        prop_assert_eq!(answer(&buf, &defaults), answer_byte_by_byte(&buf, &defaults));
    }
}
