//! HTTP/1.1 framing for the proxy's tests, on any byte stream: chunked bodies written by
//! hand, and responses read whatever their framing (Content-Length, chunked, or up to the
//! close), so that what a proxy sent can be checked byte for byte.
#![allow(
    dead_code,
    reason = "each test file uses a different part of the helpers"
)]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers fail the test loudly"
)]

use std::io::{ErrorKind, Read, Write};

use super::Response;

/// Writes `body` as chunks of at most `chunk` bytes, then the last chunk (no trailers).
pub fn write_chunked(stream: &mut impl Write, body: &[u8], chunk: usize) {
    for piece in body.chunks(chunk) {
        write_chunk(stream, piece);
    }
    stream.write_all(b"0\r\n\r\n").unwrap();
}

/// Writes one chunk (an empty `data` would be the last chunk: not allowed here).
pub fn write_chunk(stream: &mut impl Write, data: &[u8]) {
    assert!(!data.is_empty(), "an empty chunk ends the body");
    let mut out = format!("{:x}\r\n", data.len()).into_bytes();
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
    stream.write_all(&out).unwrap();
}

/// Reads one response of any framing (Content-Length, chunked, or up to the close) to a
/// request other than `HEAD`; `None` if the connection closed before the head. Panics on a
/// body cut short.
pub fn read_any_response(stream: &mut impl Read) -> Option<Response> {
    let mut response = read_response_head(stream)?;
    response.body = read_response_body(stream, &response, false)
        .unwrap_or_else(|partial| panic!("body cut short after {} bytes", partial.len()));
    Some(response)
}

/// Reads a response head (status and headers; the body left empty and unread). `None` if
/// the connection closed, or was reset, before the head ended.
pub fn read_response_head(stream: &mut impl Read) -> Option<Response> {
    let mut buf = Vec::new();
    while !buf.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        match read_some(stream, &mut byte) {
            Some(0) | None => return None,
            Some(_) => buf.push(byte[0]),
        }
    }
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut parsed = httparse::Response::new(&mut headers);
    parsed.parse(&buf).expect("valid response head");
    Some(Response {
        status: parsed.code.unwrap(),
        headers: parsed
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_owned(),
                    String::from_utf8_lossy(h.value).into_owned(),
                )
            })
            .collect(),
        body: Vec::new(),
    })
}

/// Reads the body `head` announces (none for 1xx, 204, 304 and answers to `HEAD`); `Err` with
/// the bytes read when the connection ends first.
pub fn read_response_body(
    stream: &mut impl Read,
    head: &Response,
    to_head_request: bool,
) -> Result<Vec<u8>, Vec<u8>> {
    if to_head_request || head.status < 200 || head.status == 204 || head.status == 304 {
        return Ok(Vec::new());
    }
    let chunked = head
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("transfer-encoding"))
        .any(|(_, v)| v.to_ascii_lowercase().trim_end().ends_with("chunked"));
    if chunked {
        let mut body = Vec::new();
        loop {
            match read_chunk(stream) {
                Ok(Some(data)) => body.extend_from_slice(&data),
                Ok(None) => return Ok(body),
                Err(partial) => {
                    body.extend_from_slice(&partial);
                    return Err(body);
                }
            }
        }
    }
    match head.header("content-length") {
        Some(len) => {
            let len: usize = len.trim().parse().expect("a numeric Content-Length");
            let mut body = vec![0; len];
            let mut filled = 0;
            while filled < len {
                match read_some(stream, &mut body[filled..]) {
                    Some(0) | None => {
                        body.truncate(filled);
                        return Err(body);
                    }
                    Some(n) => filled += n,
                }
            }
            Ok(body)
        }
        None => {
            // Delimited by the close.
            let mut body = Vec::new();
            let mut buf = [0u8; 64 * 1024];
            loop {
                match read_some(stream, &mut buf) {
                    Some(0) => return Ok(body),
                    Some(n) => body.extend_from_slice(&buf[..n]),
                    None => return Err(body),
                }
            }
        }
    }
}

/// Reads one chunk of a chunked body: `Ok(None)` for the last chunk (its trailers are read
/// and dropped), `Err` with the data read when the connection ends inside the chunk. Panics
/// on a malformed chunk.
pub fn read_chunk(stream: &mut impl Read) -> Result<Option<Vec<u8>>, Vec<u8>> {
    let line = read_line(stream).ok_or_else(Vec::new)?;
    let size = line.split(';').next().unwrap().trim();
    let size =
        usize::from_str_radix(size, 16).unwrap_or_else(|_| panic!("bad chunk size line {line:?}"));
    if size == 0 {
        while !read_line(stream).ok_or_else(Vec::new)?.is_empty() {}
        return Ok(None);
    }
    let mut data = vec![0; size];
    let mut filled = 0;
    while filled < size {
        match read_some(stream, &mut data[filled..]) {
            Some(0) | None => {
                data.truncate(filled);
                return Err(data);
            }
            Some(n) => filled += n,
        }
    }
    let mut crlf = [0u8; 2];
    for byte in &mut crlf {
        let mut one = [0u8; 1];
        match read_some(stream, &mut one) {
            Some(1) => *byte = one[0],
            _ => return Err(data),
        }
    }
    assert_eq!(&crlf, b"\r\n", "chunk data not followed by CRLF");
    Ok(Some(data))
}

/// A CRLF-terminated line without its CRLF; `None` when the connection ends first.
fn read_line(stream: &mut impl Read) -> Option<String> {
    let mut line = Vec::new();
    while !line.ends_with(b"\r\n") {
        let mut byte = [0u8; 1];
        match read_some(stream, &mut byte)? {
            0 => return None,
            _ => line.push(byte[0]),
        }
    }
    line.truncate(line.len() - 2);
    Some(String::from_utf8(line).expect("an ASCII line"))
}

/// One read: `Some(0)` at EOF, `None` on a reset; retried on EINTR; panics on a timeout.
fn read_some(stream: &mut impl Read, buf: &mut [u8]) -> Option<usize> {
    loop {
        match stream.read(buf) {
            Ok(n) => return Some(n),
            // A socket with a receive timeout reports an interruption as EINTR.
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return None,
            Err(e) => panic!("reading a response: {e}"),
        }
    }
}
