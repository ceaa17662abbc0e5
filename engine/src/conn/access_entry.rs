//! One request's access log line in the making: what its head said, kept until its answer
//! (or, for a WebSocket, its session) has ended ([`crate::server::access_log`]). Nothing here
//! runs when the log is off.

use std::net::IpAddr;
use std::time::Instant;

use ringstream_protocol::http::{Request, Version};

use crate::routes::ask::Ask;
use crate::routes::proxy::ProxyAsk;
use crate::routes::proxy::forward::Hop;
use crate::server::access_log::{RequestLine, SessionFields, WorkerAccessLog};

/// Longest field copied into a line (a target, a user agent); longer ones are cut.
const MAX_FIELD: usize = 2048;
/// A field's buffer larger than this is freed once its line is written, so that an idle
/// connection holds little whatever its last request sent.
const KEPT_FIELD: usize = 256;

/// One request's line in the making, reused by the connection's requests.
#[derive(Debug, Default)]
pub(crate) struct AccessEntry {
    /// Whether a request is waiting for its line.
    pub(crate) open: bool,
    started: Option<Instant>,
    unix_ms: u64,
    method: String,
    target: Vec<u8>,
    version: &'static str,
    referer: Vec<u8>,
    user_agent: Vec<u8>,
    request_id: Vec<u8>,
    pub(crate) route: Option<usize>,
    /// Where this request's answer starts in the bytes the connection sends.
    pub(crate) mark: u64,
    /// Bytes the connection has written to the client so far.
    pub(crate) sent: u64,
    /// The answer's status, once its head was seen (0 before).
    pub(crate) status: u16,
}

impl AccessEntry {
    /// Notes what `request` says, for its line (when the access log is on).
    /// `out_len` is what the connection holds unsent; free of the connection, as the head
    /// still borrows its buffer.
    pub(crate) fn begin(
        log: &mut Option<Box<Self>>,
        out_len: usize,
        request: &Request<'_, '_>,
        route: Option<usize>,
        target: Option<&Ask>,
        hop: &dyn Fn() -> Hop,
    ) {
        let entry = log.get_or_insert_with(Box::default);
        let field = |name: &str| request.header(name).unwrap_or_default();
        let copy = |into: &mut Vec<u8>, value: &[u8]| {
            into.clear();
            into.extend_from_slice(&value[..value.len().min(MAX_FIELD)]);
        };
        entry.open = true;
        entry.started = Some(Instant::now());
        entry.unix_ms = wall_clock_ms();
        entry.method.clear();
        entry.method.push_str(request.method.as_str());
        copy(&mut entry.target, request.target.as_bytes());
        entry.version = match request.version {
            Version::Http10 => "HTTP/1.0",
            _ => "HTTP/1.1",
        };
        copy(&mut entry.referer, field("referer"));
        copy(&mut entry.user_agent, field("user-agent"));
        // The id sent upstream, or a trusted proxy's.
        entry.request_id.clear();
        match target {
            Some(Ask::Proxy(ProxyAsk::Forward(forward))) => {
                if let Some(id) = field_of(&forward.head, b"\r\nX-Request-Id: ") {
                    copy(&mut entry.request_id, id);
                }
            }
            _ => {
                // The peer is asked of the kernel only when there is an id to keep.
                if let Some(id) = request.header("x-request-id")
                    && hop().trusted
                {
                    copy(&mut entry.request_id, id);
                }
            }
        }
        entry.route = route;
        entry.mark = entry.sent + out_len as u64;
        entry.status = 0;
    }
}

impl AccessEntry {
    /// Writes the open request's line to `log` and closes it: `bytes` sent for it, `route`
    /// the matched route's path, `session` what a WebSocket carried.
    pub(crate) fn record(
        &mut self,
        log: &WorkerAccessLog,
        client: IpAddr,
        status: u16,
        bytes: u64,
        route: &str,
        session: Option<SessionFields>,
    ) {
        self.open = false;
        log.record(&RequestLine {
            client,
            unix_ms: self.unix_ms,
            method: &self.method,
            target: &self.target,
            version: self.version,
            status,
            bytes,
            duration: self.started.map(|t| t.elapsed()).unwrap_or_default(),
            referer: &self.referer,
            user_agent: &self.user_agent,
            request_id: &self.request_id,
            route,
            session,
        });
        for field in [
            &mut self.target,
            &mut self.referer,
            &mut self.user_agent,
            &mut self.request_id,
        ] {
            if field.capacity() > KEPT_FIELD {
                *field = Vec::new();
            }
        }
    }
}

/// Milliseconds since 1970-01-01 UTC to the kernel's last tick (`CLOCK_REALTIME_COARSE`: a
/// read of the vDSO page, a third of a precise clock read; a line's time is its request's
/// arrival within 1-4 ms).
fn wall_clock_ms() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `clock_gettime` writes one `timespec` through the valid, exclusive pointer it is
    // given; CLOCK_REALTIME_COARSE exists on every Linux since 2.6.32.
    if unsafe { libc::clock_gettime(libc::CLOCK_REALTIME_COARSE, &raw mut ts) } != 0 {
        return 0;
    }
    let secs = u64::try_from(ts.tv_sec).unwrap_or(0);
    let millis = u64::try_from(ts.tv_nsec).unwrap_or(0) / 1_000_000;
    secs.saturating_mul(1000).saturating_add(millis)
}

/// The value of the field `name` (given as `\r\nName: `) in a head this server wrote.
fn field_of<'h>(head: &'h [u8], name: &[u8]) -> Option<&'h [u8]> {
    let start = head.windows(name.len()).position(|w| w == name)? + name.len();
    let rest = &head[start..];
    let end = rest.windows(2).position(|w| w == b"\r\n")?;
    Some(&rest[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_of_a_written_head() {
        let head = b"GET / HTTP/1.1\r\nX-Request-Id: abc\r\nHost: h\r\n\r\n";
        assert_eq!(field_of(head, b"\r\nX-Request-Id: "), Some(&b"abc"[..]));
        assert_eq!(field_of(head, b"\r\nX-Other: "), None);
    }
}
