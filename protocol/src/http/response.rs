//! Response heads and small complete error responses, written straight into an output buffer.

use super::date::HttpDate;

/// The interim response that lets a client waiting on `Expect: 100-continue` send its
/// body (RFC 9110 §15.2.1).
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// Defines [`reason_phrase`] and the matching whole status lines from one table.
macro_rules! statuses {
    ($($code:literal => $reason:literal,)*) => {
        /// The reason phrase for every status this server sends (RFC 9110 §15, RFC 6585
        /// for 429 and 431); `None` for others, which then go out with an empty phrase.
        pub fn reason_phrase(status: u16) -> Option<&'static str> {
            match status {
                $($code => Some($reason),)*
                _ => None,
            }
        }

        /// `HTTP/1.1 {status} {reason}` and CRLF, ready to copy, for the same statuses.
        fn status_line(status: u16) -> Option<&'static [u8]> {
            match status {
                $($code => Some(concat!("HTTP/1.1 ", $code, " ", $reason, "\r\n").as_bytes()),)*
                _ => None,
            }
        }
    };
}

statuses! {
    100 => "Continue",
    101 => "Switching Protocols",
    200 => "OK",
    201 => "Created",
    204 => "No Content",
    206 => "Partial Content",
    301 => "Moved Permanently",
    304 => "Not Modified",
    400 => "Bad Request",
    401 => "Unauthorized",
    403 => "Forbidden",
    404 => "Not Found",
    405 => "Method Not Allowed",
    408 => "Request Timeout",
    409 => "Conflict",
    413 => "Content Too Large",
    414 => "URI Too Long",
    416 => "Range Not Satisfiable",
    426 => "Upgrade Required",
    429 => "Too Many Requests",
    431 => "Request Header Fields Too Large",
    500 => "Internal Server Error",
    501 => "Not Implemented",
    502 => "Bad Gateway",
    503 => "Service Unavailable",
    504 => "Gateway Timeout",
    505 => "HTTP Version Not Supported",
    // RFC 4918 §11.5: the server cannot store what the request needs.
    507 => "Insufficient Storage",
}

/// Appends a response head to `out`: status line, `Date`, `Server`, `headers` in order,
/// `Content-Length` if `body_len` is given, `Connection: close` if `close`, empty line.
///
/// A header whose name is not a token or whose value holds a control byte other than
/// HTAB is left out rather than written, so a value carrying CRLF cannot split the
/// response (RFC 9110 §5.5). `Content-Length` is never sent with 1xx or 204
/// (RFC 9110 §8.6). `Transfer-Encoding` and `Connection` are the caller's to add in
/// `headers` when needed (e.g. `Connection: Upgrade` with 101).
pub fn write_response_head(
    out: &mut Vec<u8>,
    status: u16,
    date: &HttpDate,
    headers: &[(&str, &[u8])],
    body_len: Option<u64>,
    close: bool,
) {
    out.reserve(
        128 + headers
            .iter()
            .map(|(n, v)| n.len() + v.len() + 4)
            .sum::<usize>(),
    );
    if let Some(line) = status_line(status) {
        out.extend_from_slice(line);
    } else {
        // RFC 9112 §4: the reason-phrase may be empty, the SP before it may not.
        out.extend_from_slice(b"HTTP/1.1 ");
        write_decimal(out, u64::from(status));
        out.extend_from_slice(b" \r\n");
    }
    out.extend_from_slice(b"Date: ");
    out.extend_from_slice(date.as_bytes());
    out.extend_from_slice(b"\r\nServer: ringstream\r\n");
    for &(name, value) in headers {
        if is_token(name.as_bytes()) && is_field_value(value) {
            write_field(out, name.as_bytes(), value);
        }
    }
    if let Some(len) = body_len.filter(|_| may_have_content_length(status)) {
        out.extend_from_slice(b"Content-Length: ");
        write_decimal(out, len);
        out.extend_from_slice(b"\r\n");
    }
    if close {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Appends `HTTP/1.1 100 Continue` and its empty line to `out`.
pub fn write_continue(out: &mut Vec<u8>) {
    out.extend_from_slice(CONTINUE);
}

/// Appends a complete response for a refusal: the head with `extra_headers` and
/// `Connection: close`, and a one-line text body such as
/// `431 Request Header Fields Too Large\n` (none for 1xx, 204 and 304, which end at
/// the empty line, RFC 9112 §6.3 item 1).
pub fn write_error_response(
    out: &mut Vec<u8>,
    status: u16,
    date: &HttpDate,
    extra_headers: &[(&str, &[u8])],
) {
    let has_content = !(100..200).contains(&status) && status != 204 && status != 304;
    // A refusal is rare, so two small allocations are fine here.
    let mut body = Vec::with_capacity(48);
    write_decimal(&mut body, u64::from(status));
    if let Some(reason) = reason_phrase(status) {
        body.push(b' ');
        body.extend_from_slice(reason.as_bytes());
    }
    body.push(b'\n');
    let mut headers = Vec::with_capacity(extra_headers.len() + 1);
    if has_content {
        headers.push(("Content-Type", &b"text/plain; charset=utf-8"[..]));
    }
    headers.extend_from_slice(extra_headers);
    let length = has_content.then_some(body.len() as u64);
    write_response_head(out, status, date, &headers, length, true);
    if has_content {
        out.extend_from_slice(&body);
    }
}

/// RFC 9110 §8.6: "A server MUST NOT send a Content-Length header field in any response
/// with a status code of 1xx (Informational) or 204 (No Content)."
fn may_have_content_length(status: u16) -> bool {
    !(100..200).contains(&status) && status != 204
}

/// Appends `name: value` and CRLF.
fn write_field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Appends `n` in decimal without going through `fmt`.
fn write_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[start..]);
}

/// `tchar` (RFC 9110 §5.6.2) by byte value.
static TCHAR: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric()
            || matches!(c, b'!' | b'#'..=b'\'' | b'*' | b'+')
            || matches!(c, b'-' | b'.' | b'^' | b'_' | b'`' | b'|' | b'~');
        b += 1;
    }
    table
};

/// `token = 1*tchar`: a valid field name. Branch-free, since every response checks
/// every name.
fn is_token(name: &[u8]) -> bool {
    !name.is_empty() && name.iter().fold(true, |ok, &b| ok & TCHAR[usize::from(b)])
}

/// No control byte but HTAB (RFC 9110 §5.5: field-value excludes CR, LF and NUL; the
/// other controls are refused by recipients too). A branch-free pass that vectorises.
fn is_field_value(value: &[u8]) -> bool {
    !value.iter().fold(false, |bad, &b| {
        bad | (b < 0x20 && b != b'\t') | (b == 0x7f)
    })
}

#[cfg(test)]
mod tests;
