use super::*;

const DATE: &str = "Sun, 06 Nov 1994 08:49:37 GMT";

fn date() -> HttpDate {
    HttpDate::from_unix_secs(784_111_777)
}

fn head(status: u16, headers: &[(&str, &[u8])], body_len: Option<u64>, close: bool) -> String {
    let mut out = Vec::new();
    write_response_head(&mut out, status, &date(), headers, body_len, close);
    String::from_utf8(out).expect("ASCII")
}

#[test]
fn ok_with_length() {
    assert_eq!(
        head(200, &[("Content-Type", b"text/plain")], Some(2), false),
        format!(
            "HTTP/1.1 200 OK\r\nDate: {DATE}\r\nServer: ringstream\r\n\
             Content-Type: text/plain\r\nContent-Length: 2\r\n\r\n"
        )
    );
}

#[test]
fn not_found_closing() {
    assert_eq!(
        head(404, &[], Some(14), true),
        format!(
            "HTTP/1.1 404 Not Found\r\nDate: {DATE}\r\nServer: ringstream\r\n\
             Content-Length: 14\r\nConnection: close\r\n\r\n"
        )
    );
}

#[test]
fn switching_protocols_without_length() {
    let headers: &[(&str, &[u8])] = &[
        ("Upgrade", b"websocket"),
        ("Connection", b"Upgrade"),
        ("Sec-WebSocket-Accept", b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
    ];
    assert_eq!(
        head(101, headers, None, false),
        format!(
            "HTTP/1.1 101 Switching Protocols\r\nDate: {DATE}\r\nServer: ringstream\r\n\
             Upgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
        )
    );
}

#[test]
fn no_content_length_for_1xx_and_204() {
    assert!(!head(204, &[], Some(0), false).contains("Content-Length"));
    assert!(!head(101, &[], Some(5), false).contains("Content-Length"));
    assert!(head(304, &[], Some(5), false).contains("Content-Length: 5\r\n"));
    assert!(
        head(200, &[], Some(u64::MAX), false).contains("Content-Length: 18446744073709551615\r\n")
    );
    assert!(head(200, &[], Some(0), false).contains("Content-Length: 0\r\n"));
}

#[test]
fn unknown_status_has_an_empty_reason() {
    assert!(head(299, &[], None, false).starts_with("HTTP/1.1 299 \r\n"));
}

#[test]
fn invalid_fields_are_left_out() {
    let headers: &[(&str, &[u8])] = &[
        ("X-Split", b"a\r\nSet-Cookie: evil=1"),
        ("Bad Name", b"v"),
        ("", b"v"),
        ("X-Nul", b"a\x00b"),
        ("X-Ok", b"tab\tand obs-text \xff"),
    ];
    let mut out = Vec::new();
    write_response_head(&mut out, 200, &date(), headers, None, false);
    let expected = format!("HTTP/1.1 200 OK\r\nDate: {DATE}\r\nServer: ringstream\r\n");
    let expected = [expected.as_bytes(), b"X-Ok: tab\tand obs-text \xff\r\n\r\n"].concat();
    assert_eq!(out, expected);
}

#[test]
fn continue_line() {
    let mut out = b"before".to_vec();
    write_continue(&mut out);
    assert_eq!(out, b"beforeHTTP/1.1 100 Continue\r\n\r\n");
}

#[test]
fn error_response_is_complete() {
    let mut out = Vec::new();
    write_error_response(&mut out, 431, &date(), &[]);
    assert_eq!(
        String::from_utf8(out).expect("ASCII"),
        format!(
            "HTTP/1.1 431 Request Header Fields Too Large\r\nDate: {DATE}\r\nServer: ringstream\r\n\
             Content-Type: text/plain; charset=utf-8\r\nContent-Length: 36\r\n\
             Connection: close\r\n\r\n431 Request Header Fields Too Large\n"
        )
    );
    let mut out = Vec::new();
    write_error_response(&mut out, 503, &date(), &[("Retry-After", b"1")]);
    assert_eq!(
        String::from_utf8(out).expect("ASCII"),
        format!(
            "HTTP/1.1 503 Service Unavailable\r\nDate: {DATE}\r\nServer: ringstream\r\n\
             Content-Type: text/plain; charset=utf-8\r\nRetry-After: 1\r\nContent-Length: 24\r\n\
             Connection: close\r\n\r\n503 Service Unavailable\n"
        )
    );
}

#[test]
fn error_response_without_content() {
    let mut out = Vec::new();
    write_error_response(&mut out, 304, &date(), &[]);
    assert_eq!(
        String::from_utf8(out).expect("ASCII"),
        format!(
            "HTTP/1.1 304 Not Modified\r\nDate: {DATE}\r\nServer: ringstream\r\n\
             Connection: close\r\n\r\n"
        )
    );
}

#[test]
fn every_status_sent_has_a_reason() {
    for status in [
        100, 101, 200, 201, 204, 206, 301, 304, 400, 403, 404, 405, 408, 409, 413, 414, 416, 426,
        429, 431, 500, 501, 503, 505,
    ] {
        assert!(
            reason_phrase(status).is_some_and(|r| !r.is_empty()),
            "{status}"
        );
    }
    assert_eq!(reason_phrase(418), None);
}

#[test]
fn every_refusal_status_has_a_reason() {
    use crate::http::{BodyError, RequestError};
    let statuses = [
        RequestError::HeadTooLarge.status(),
        RequestError::UriTooLong.status(),
        RequestError::InvalidHeader.status(),
        RequestError::VersionNotSupported.status(),
        RequestError::UnsupportedTransferCoding.status(),
        BodyError::TooLarge.status(),
        BodyError::TrailerTooLarge.status(),
    ];
    for status in statuses {
        assert!(reason_phrase(status).is_some(), "{status}");
    }
}

#[test]
fn decimals() {
    for n in [0, 7, 10, 99, 100, 12345, u64::MAX] {
        let mut out = Vec::new();
        write_decimal(&mut out, n);
        assert_eq!(out, n.to_string().as_bytes());
    }
}

#[test]
fn token_bytes() {
    let tchars: Vec<u8> = (0..=255u8).filter(|&b| TCHAR[usize::from(b)]).collect();
    let mut expected: Vec<u8> = b"!#$%&'*+-.^_`|~0123456789".to_vec();
    expected.extend(b'A'..=b'Z');
    expected.extend(b'a'..=b'z');
    expected.sort_unstable();
    assert_eq!(tchars, expected);
    assert!(is_token(b"X-Custom_1"));
    assert!(!is_token(b""));
    assert!(!is_token(b"a:b"));
    assert!(is_field_value(b""));
    assert!(is_field_value(b"a\tb \x80\xff~"));
    for bad in [&b"\r"[..], b"\n", b"\x00", b"\x7f", b"\x1f"] {
        assert!(!is_field_value(bad), "{bad:?}");
    }
}

#[test]
fn status_lines_match_reasons() {
    for status in 0..1000 {
        let expected = reason_phrase(status).map(|r| format!("HTTP/1.1 {status} {r}\r\n"));
        let line = status_line(status).map(|l| String::from_utf8_lossy(l).into_owned());
        assert_eq!(line, expected);
    }
}
