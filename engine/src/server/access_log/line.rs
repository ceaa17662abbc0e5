//! One access log line, in nginx's `combined` format or as a JSON object.

use std::io::Write as _;
use std::net::IpAddr;
use std::time::Duration;

use ringstream_protocol::http::{common_log_time, rfc3339_millis};
use ringstream_protocol::json;

/// What one line says about a finished request.
#[derive(Debug, Clone, Copy)]
pub struct RequestLine<'a> {
    /// The client (after trusted proxies).
    pub client: IpAddr,
    /// When the request head was read, in milliseconds since 1970-01-01 UTC.
    pub unix_ms: u64,
    /// The request method.
    pub method: &'a str,
    /// The request target as sent.
    pub target: &'a [u8],
    /// `HTTP/1.1` or `HTTP/1.0`.
    pub version: &'a str,
    /// The status answered (`0` when the connection ended before any answer).
    pub status: u16,
    /// Bytes of the response sent to the client (head and body).
    pub bytes: u64,
    /// From the head read to the response sent.
    pub duration: Duration,
    /// `Referer`, empty when absent.
    pub referer: &'a [u8],
    /// `User-Agent`, empty when absent.
    pub user_agent: &'a [u8],
    /// The request id sent upstream (or kept from a trusted proxy), empty when none.
    pub request_id: &'a [u8],
    /// The matched route's path, empty for a 404.
    pub route: &'a str,
}

impl RequestLine<'_> {
    /// Appends the line in nginx's `combined` format, then ` rt=SECONDS id=ID route=PATH`:
    /// `127.0.0.1 - - [01/Dec/2026:20:15:02 +0000] "GET / HTTP/1.1" 200 5 "-" "curl" rt=0.000 id=- route=/`.
    /// Quotes, backslashes and bytes outside printable ASCII are written `\xHH`.
    pub fn write_combined(&self, out: &mut Vec<u8>) {
        let _ = write!(out, "{} - - [", self.client);
        out.extend_from_slice(&common_log_time(self.unix_ms / 1000));
        let _ = write!(out, "] \"{} ", self.method);
        escaped(out, self.target);
        let _ = write!(out, " {}\" {} {} \"", self.version, self.status, self.bytes);
        escaped_or_dash(out, self.referer);
        out.extend_from_slice(b"\" \"");
        escaped_or_dash(out, self.user_agent);
        let _ = write!(out, "\" rt={:.6} id=", self.duration.as_secs_f64());
        escaped_or_dash(out, self.request_id);
        out.extend_from_slice(b" route=");
        escaped_or_dash(out, self.route.as_bytes());
        out.push(b'\n');
    }

    /// Appends the line as one JSON object: `time` (RFC 3339, milliseconds), `client`,
    /// `method`, `target`, `version`, `status`, `bytes`, `duration_ms`, `referer`,
    /// `user_agent`, `request_id`, `route` (absent fields are empty strings).
    pub fn write_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"time\":\"");
        out.extend_from_slice(&rfc3339_millis(self.unix_ms));
        let _ = write!(out, "\",\"client\":\"{}\",\"method\":", self.client);
        json_string(out, self.method.as_bytes());
        out.extend_from_slice(b",\"target\":");
        json_string(out, self.target);
        let _ = write!(
            out,
            ",\"version\":\"{}\",\"status\":{},\"bytes\":{},\"duration_ms\":{:.3},\"referer\":",
            self.version,
            self.status,
            self.bytes,
            self.duration.as_secs_f64() * 1000.0
        );
        json_string(out, self.referer);
        out.extend_from_slice(b",\"user_agent\":");
        json_string(out, self.user_agent);
        out.extend_from_slice(b",\"request_id\":");
        json_string(out, self.request_id);
        out.extend_from_slice(b",\"route\":");
        json_string(out, self.route.as_bytes());
        out.extend_from_slice(b"}\n");
    }
}

/// `bytes` with quotes, backslashes and anything outside printable ASCII as `\xHH` (nginx's
/// escaping), so a line can never be split or its quoted fields closed early.
fn escaped(out: &mut Vec<u8>, bytes: &[u8]) {
    for &b in bytes {
        if b == b' ' || (b.is_ascii_graphic() && b != b'"' && b != b'\\') {
            out.push(b);
        } else {
            let _ = write!(out, "\\x{b:02X}");
        }
    }
}

fn escaped_or_dash(out: &mut Vec<u8>, bytes: &[u8]) {
    if bytes.is_empty() {
        out.push(b'-');
    } else {
        escaped(out, bytes);
    }
}

/// A JSON string of `bytes` (invalid UTF-8 replaced).
fn json_string(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(b'"');
    json::escape_into(out, &String::from_utf8_lossy(bytes));
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    fn line() -> RequestLine<'static> {
        RequestLine {
            client: "203.0.113.9".parse().unwrap(),
            unix_ms: 1_796_156_102_045,
            method: "GET",
            target: b"/api/items?q=\"x\"",
            version: "HTTP/1.1",
            status: 200,
            bytes: 1234,
            duration: Duration::from_micros(1500),
            referer: b"",
            user_agent: b"curl/8.5 \xff",
            request_id: b"abc123",
            route: "/api/",
        }
    }

    #[test]
    fn combined_lines_are_nginxs_with_the_extra_fields_after() {
        let mut out = Vec::new();
        line().write_combined(&mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "203.0.113.9 - - [01/Dec/2026:20:15:02 +0000] \"GET /api/items?q=\\x22x\\x22 HTTP/1.1\" \
             200 1234 \"-\" \"curl/8.5 \\xFF\" rt=0.001500 id=abc123 route=/api/\n"
        );
    }

    #[test]
    fn json_lines_are_one_object_each() {
        let mut out = Vec::new();
        line().write_json(&mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(text.ends_with('\n') && text.matches('\n').count() == 1);
        assert_eq!(
            text,
            "{\"time\":\"2026-12-01T20:15:02.045Z\",\"client\":\"203.0.113.9\",\"method\":\"GET\",\
             \"target\":\"/api/items?q=\\\"x\\\"\",\"version\":\"HTTP/1.1\",\"status\":200,\
             \"bytes\":1234,\"duration_ms\":1.500,\"referer\":\"\",\
             \"user_agent\":\"curl/8.5 \u{fffd}\",\"request_id\":\"abc123\",\"route\":\"/api/\"}\n"
        );
    }

    #[test]
    fn a_line_break_in_a_field_never_splits_the_line() {
        let mut entry = line();
        entry.target = b"/a\r\nforged 200";
        let mut out = Vec::new();
        entry.write_combined(&mut out);
        assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1);
        let mut out = Vec::new();
        entry.write_json(&mut out);
        assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1);
    }
}
