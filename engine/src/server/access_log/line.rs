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
    /// For a WebSocket session (status 101), what it carried and how it ended.
    pub session: Option<SessionFields>,
}

/// What a WebSocket session's line adds to its upgrade request's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionFields {
    /// Messages (and control frames) the client sent, and their frame bytes.
    pub messages_in: u64,
    /// Frame bytes the client sent.
    pub bytes_in: u64,
    /// Messages sent to the client.
    pub messages_out: u64,
    /// Frame bytes sent to the client.
    pub bytes_out: u64,
    /// The close code of the closing handshake, `None` when the connection ended without one
    /// (1006 in RFC 6455's terms) or the close frame had no code (1005).
    pub close_code: Option<u16>,
    /// Which side closed first.
    pub closed_by: ClosedBy,
}

/// Which side ended a WebSocket session.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ClosedBy {
    /// The client: its close frame, or its connection ended (or stopped reading).
    #[default]
    Client,
    /// ringstream: a protection, the idle timeout, the drain, or the route's handler.
    Server,
    /// A proxy route's upstream: its close frame, or its connection ended.
    Upstream,
}

impl ClosedBy {
    /// The name written in a line.
    pub fn name(self) -> &'static str {
        match self {
            Self::Client => "client",
            Self::Server => "server",
            Self::Upstream => "upstream",
        }
    }
}

impl RequestLine<'_> {
    /// Appends the line in nginx's `combined` format, then ` rt=SECONDS id=ID route=PATH`:
    /// `127.0.0.1 - - [01/Dec/2026:20:15:02 +0000] "GET / HTTP/1.1" 200 5 "-" "curl" rt=0.000 id=- route=/`.
    /// Quotes, backslashes and bytes outside printable ASCII are written `\xHH`.
    pub fn write_combined(&self, out: &mut Vec<u8>) {
        out.reserve(160 + self.variable_len());
        address(out, self.client);
        out.extend_from_slice(b" - - [");
        out.extend_from_slice(&clf_time(self.unix_ms / 1000));
        out.extend_from_slice(b"] \"");
        escaped(out, self.method.as_bytes());
        out.push(b' ');
        escaped(out, self.target);
        out.push(b' ');
        out.extend_from_slice(self.version.as_bytes());
        out.extend_from_slice(b"\" ");
        number(out, u64::from(self.status));
        out.push(b' ');
        number(out, self.bytes);
        out.extend_from_slice(b" \"");
        escaped_or_dash(out, self.referer);
        out.extend_from_slice(b"\" \"");
        escaped_or_dash(out, self.user_agent);
        out.extend_from_slice(b"\" rt=");
        let micros = u64::try_from(self.duration.as_micros()).unwrap_or(u64::MAX);
        fraction(out, micros, 1_000_000);
        out.extend_from_slice(b" id=");
        escaped_or_dash(out, self.request_id);
        out.extend_from_slice(b" route=");
        escaped_or_dash(out, self.route.as_bytes());
        if let Some(ws) = &self.session {
            out.extend_from_slice(b" ws_in=");
            number(out, ws.messages_in);
            out.push(b'/');
            number(out, ws.bytes_in);
            out.extend_from_slice(b" ws_out=");
            number(out, ws.messages_out);
            out.push(b'/');
            number(out, ws.bytes_out);
            out.extend_from_slice(b" close=");
            match ws.close_code {
                Some(code) => number(out, u64::from(code)),
                None => out.push(b'-'),
            }
            out.extend_from_slice(b" closed_by=");
            out.extend_from_slice(ws.closed_by.name().as_bytes());
        }
        out.push(b'\n');
    }

    /// Appends the line as one JSON object: `time` (RFC 3339, milliseconds), `client`,
    /// `method`, `target`, `version`, `status`, `bytes`, `duration_ms`, `referer`,
    /// `user_agent`, `request_id`, `route` (absent fields are empty strings).
    pub fn write_json(&self, out: &mut Vec<u8>) {
        out.reserve(240 + self.variable_len());
        out.extend_from_slice(b"{\"time\":\"");
        out.extend_from_slice(&rfc3339_millis(self.unix_ms));
        out.extend_from_slice(b"\",\"client\":\"");
        address(out, self.client);
        out.extend_from_slice(b"\",\"method\":");
        json_string(out, self.method.as_bytes());
        out.extend_from_slice(b",\"target\":");
        json_string(out, self.target);
        out.extend_from_slice(b",\"version\":\"");
        out.extend_from_slice(self.version.as_bytes());
        out.extend_from_slice(b"\",\"status\":");
        number(out, u64::from(self.status));
        out.extend_from_slice(b",\"bytes\":");
        number(out, self.bytes);
        out.extend_from_slice(b",\"duration_ms\":");
        let micros = u64::try_from(self.duration.as_micros()).unwrap_or(u64::MAX);
        fraction(out, micros, 1000);
        out.extend_from_slice(b",\"referer\":");
        json_string(out, self.referer);
        out.extend_from_slice(b",\"user_agent\":");
        json_string(out, self.user_agent);
        out.extend_from_slice(b",\"request_id\":");
        json_string(out, self.request_id);
        out.extend_from_slice(b",\"route\":");
        json_string(out, self.route.as_bytes());
        if let Some(ws) = &self.session {
            out.extend_from_slice(b",\"websocket\":{\"messages_in\":");
            number(out, ws.messages_in);
            out.extend_from_slice(b",\"bytes_in\":");
            number(out, ws.bytes_in);
            out.extend_from_slice(b",\"messages_out\":");
            number(out, ws.messages_out);
            out.extend_from_slice(b",\"bytes_out\":");
            number(out, ws.bytes_out);
            out.extend_from_slice(b",\"close_code\":");
            match ws.close_code {
                Some(code) => number(out, u64::from(code)),
                None => out.extend_from_slice(b"null"),
            }
            out.extend_from_slice(b",\"closed_by\":\"");
            out.extend_from_slice(ws.closed_by.name().as_bytes());
            out.extend_from_slice(b"\"}");
        }
        out.extend_from_slice(b"}\n");
    }
}

thread_local! {
    /// The last second formatted for a `combined` line, and its text: a worker's lines come
    /// thousands to the second.
    static CLF_TIME: std::cell::Cell<(u64, [u8; 26])> =
        const { std::cell::Cell::new((u64::MAX, [0; 26])) };
}

/// [`common_log_time`] of `secs`, formatted once per second per thread.
fn clf_time(secs: u64) -> [u8; 26] {
    CLF_TIME.with(|last| {
        let (cached, text) = last.get();
        if cached == secs {
            return text;
        }
        let text = common_log_time(secs);
        last.set((secs, text));
        text
    })
}

impl RequestLine<'_> {
    /// Bytes of the fields whose length varies (before any escaping).
    fn variable_len(&self) -> usize {
        self.target.len()
            + self.referer.len()
            + self.user_agent.len()
            + self.request_id.len()
            + self.route.len()
    }
}

/// An address as `Display` writes it, without the formatting machinery for IPv4.
fn address(out: &mut Vec<u8>, address: IpAddr) {
    match address {
        IpAddr::V4(v4) => {
            let mut text = [0u8; 15];
            let mut len = 0;
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    text[len] = b'.';
                    len += 1;
                }
                if octet >= 100 {
                    text[len] = b'0' + octet / 100;
                    len += 1;
                }
                if octet >= 10 {
                    text[len] = b'0' + octet / 10 % 10;
                    len += 1;
                }
                text[len] = b'0' + octet % 10;
                len += 1;
            }
            out.extend_from_slice(&text[..len]);
        }
        IpAddr::V6(v6) => {
            let _ = write!(out, "{v6}");
        }
    }
}

fn number(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// `units` as a decimal number of `per` units with as many decimals as `per` has zeros
/// (`fraction(1500, 1000)` is `1.500`; `per` a power of ten): integer arithmetic, no float
/// formatting. Inlined, so that `per` is a constant and no division is a `div`.
#[inline(always)]
fn fraction(out: &mut Vec<u8>, units: u64, per: u64) {
    number(out, units / per);
    out.push(b'.');
    // `per + rest` is `1` then the decimals with their leading zeros.
    let mut buffer = itoa::Buffer::new();
    let padded = buffer.format(per + units % per).as_bytes();
    out.extend_from_slice(&padded[1..]);
}

/// Whether a byte is written as it is in a `combined` field: a space, or printable ASCII
/// other than `"` and `\\`.
const PLAIN: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let byte = b as u8;
        table[b] = byte == b' ' || (byte.is_ascii_graphic() && byte != b'"' && byte != b'\\');
        b += 1;
    }
    table
};

fn plain(b: u8) -> bool {
    PLAIN[usize::from(b)]
}

/// Eight bytes at a time: bit 7 of each byte of a [`Word`] test is set where the byte fails.
type Word = u64;
const ONES: Word = 0x0101_0101_0101_0101;
const HIGH: Word = 0x8080_8080_8080_8080;

/// Bytes of `x` that are zero (the test of "Bit Twiddling Hacks": exact for "any", which is
/// all it is used for).
fn zero_bytes(x: Word) -> Word {
    x.wrapping_sub(ONES) & !x & HIGH
}

/// Whether every byte of `bytes` passes `word` (eight at a time) and `byte` (the rest).
fn all_bytes(bytes: &[u8], word: impl Fn(Word) -> Word, byte: impl Fn(u8) -> bool) -> bool {
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let mut eight = [0u8; 8];
        eight.copy_from_slice(chunk);
        if word(Word::from_le_bytes(eight)) != 0 {
            return false;
        }
    }
    chunks.remainder().iter().all(|&b| byte(b))
}

/// Whether every byte of `bytes` is [`plain`] (a field's bytes nearly always are, and this
/// runs on every field of every line).
fn all_plain(bytes: &[u8]) -> bool {
    all_bytes(
        bytes,
        |x| {
            let below_space = x.wrapping_sub(ONES * 0x20) & !x & HIGH;
            let above_tilde = (x.wrapping_add(ONES) | x) & HIGH;
            below_space
                | above_tilde
                | zero_bytes(x ^ (ONES * 0x22))
                | zero_bytes(x ^ (ONES * 0x5c))
        },
        plain,
    )
}

/// Whether every byte of `bytes` goes into a JSON string as it is: ASCII from the space up,
/// other than `"` and `\\`.
fn all_json_plain(bytes: &[u8]) -> bool {
    all_bytes(
        bytes,
        |x| {
            let below_space = x.wrapping_sub(ONES * 0x20) & !x & HIGH;
            below_space | (x & HIGH) | zero_bytes(x ^ (ONES * 0x22)) | zero_bytes(x ^ (ONES * 0x5c))
        },
        |b| b.is_ascii() && b >= 0x20 && b != b'"' && b != b'\\',
    )
}

/// `bytes` with quotes, backslashes and anything outside printable ASCII as `\xHH` (nginx's
/// escaping), so a line can never be split or its quoted fields closed early.
fn escaped(out: &mut Vec<u8>, bytes: &[u8]) {
    if all_plain(bytes) {
        out.extend_from_slice(bytes);
        return;
    }
    for &b in bytes {
        if plain(b) {
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
    if all_json_plain(bytes) {
        out.extend_from_slice(bytes);
    } else {
        json::escape_into(out, &String::from_utf8_lossy(bytes));
    }
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
            session: None,
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
    fn durations_are_written_with_integer_arithmetic() {
        let mut out = Vec::new();
        fraction(&mut out, 1_500, 1000);
        out.push(b' ');
        fraction(&mut out, 2_000_007, 1_000_000);
        out.push(b' ');
        fraction(&mut out, 0, 1000);
        assert_eq!(out, b"1.500 2.000007 0.000");
        let mut out = Vec::new();
        address(&mut out, "::1".parse().unwrap());
        out.push(b' ');
        address(&mut out, "10.0.200.3".parse().unwrap());
        assert_eq!(out, b"::1 10.0.200.3");
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

    #[test]
    fn a_websocket_sessions_line_adds_its_traffic_and_its_close() {
        let mut entry = line();
        entry.status = 101;
        entry.session = Some(SessionFields {
            messages_in: 3,
            bytes_in: 60,
            messages_out: 2,
            bytes_out: 44,
            close_code: Some(1000),
            closed_by: ClosedBy::Client,
        });
        let mut out = Vec::new();
        entry.write_combined(&mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.ends_with(" route=/api/ ws_in=3/60 ws_out=2/44 close=1000 closed_by=client\n"),
            "{text}"
        );
        entry.session = entry.session.map(|s| SessionFields {
            close_code: None,
            closed_by: ClosedBy::Upstream,
            ..s
        });
        let mut out = Vec::new();
        entry.write_json(&mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.ends_with(
                "\"route\":\"/api/\",\"websocket\":{\"messages_in\":3,\"bytes_in\":60,\
                 \"messages_out\":2,\"bytes_out\":44,\"close_code\":null,\
                 \"closed_by\":\"upstream\"}}\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn the_word_tests_agree_with_the_byte_tests() {
        for b in 0..=255u8 {
            let json = b.is_ascii() && b >= 0x20 && b != b'"' && b != b'\\';
            // The byte alone among plain ones, at every place of a word and of the rest, and
            // beside every other byte value.
            for at in 0..19 {
                let mut field = *b"abcdefghijklmnopqrs";
                field[at] = b;
                assert_eq!(all_plain(&field), plain(b), "{b:#x} at {at}");
                assert_eq!(all_json_plain(&field), json, "{b:#x} at {at}");
            }
            for other in 0..=255u8 {
                let pair = [other, b, other, b, other, b, other, b];
                assert_eq!(
                    all_plain(&pair),
                    plain(b) && plain(other),
                    "{b:#x} {other:#x}"
                );
                let both =
                    json && other.is_ascii() && other >= 0x20 && other != b'"' && other != b'\\';
                assert_eq!(all_json_plain(&pair), both, "{b:#x} {other:#x}");
            }
        }
    }
}
