//! The request head a proxy route sends upstream, written while the client's head is at hand:
//! its method and target (less `strip_prefix`), every end-to-end field, never a hop-by-hop one
//! (RFC 9110 §7.6.1), the body framing ringstream chose, and the forwarding fields set by
//! ringstream itself. A client's own `X-Forwarded-*`, `Forwarded`, `X-Real-IP` and
//! `X-Request-Id` are dropped, unless the client is a trusted proxy: then its chain is kept and
//! this hop appended.

use std::cell::Cell;
use std::io::Write;
use std::net::IpAddr;

use ringstream_protocol::http::{BodyKind, Request, is_hop_by_hop};

use crate::config::ProxyConfig;

/// Fields ringstream sets itself, never copied from the client as they are.
const SET_HERE: [&str; 8] = [
    "host",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "forwarded",
    "x-real-ip",
    "x-request-id",
    "expect",
];

/// Longest `X-Request-Id` kept from a trusted proxy.
const MAX_REQUEST_ID: usize = 200;

/// Who sent the request: the TCP peer, and whether it is a trusted proxy.
#[derive(Debug, Clone, Copy)]
pub struct Hop {
    /// The TCP peer's address.
    pub peer: IpAddr,
    /// Whether the peer is in `trusted_proxies` (its forwarding fields are kept).
    pub trusted: bool,
}

/// Writes the head of `request` as sent to the upstream, with the body framing the proxy
/// writes (the client's is decoded and written again). With `upgrade`, a WebSocket handshake:
/// `Upgrade` and `Connection` say so again, and `Sec-WebSocket-Extensions` is left out (the
/// tunnel reads the client's frames to apply the route's protections, so no extension may
/// change them).
pub fn upstream_head(
    request: &Request<'_, '_>,
    config: &ProxyConfig,
    hop: Hop,
    upgrade: bool,
    out: &mut Vec<u8>,
) {
    out.extend_from_slice(request.method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(upstream_target(request.target, &config.strip_prefix).as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let client_host = request.host.unwrap_or_default();
    out.extend_from_slice(b"Host: ");
    match &config.host {
        Some(host) => out.extend_from_slice(host.as_bytes()),
        None => out.extend_from_slice(client_host),
    }
    out.extend_from_slice(b"\r\n");
    for header in request.headers {
        let name = header.name;
        if is_hop_by_hop(name, request.headers)
            || SET_HERE.iter().any(|s| s.eq_ignore_ascii_case(name))
            || (upgrade && name.eq_ignore_ascii_case("sec-websocket-extensions"))
        {
            continue;
        }
        field(out, name, header.value);
    }
    let headers = request.headers;
    let trusted = |name: &'static str| {
        headers
            .iter()
            .filter(move |h| hop.trusted && h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    };
    // X-Forwarded-For: the trusted chain (every line one list), then this hop's peer.
    out.extend_from_slice(b"X-Forwarded-For: ");
    for value in trusted("x-forwarded-for") {
        out.extend_from_slice(value);
        out.extend_from_slice(b", ");
    }
    let _ = write!(out, "{}\r\n", hop.peer);
    let proto = trusted("x-forwarded-proto").next().unwrap_or(b"http");
    field(out, "X-Forwarded-Proto", proto);
    let forwarded_host = trusted("x-forwarded-host").next().unwrap_or(client_host);
    if !forwarded_host.is_empty() {
        field(out, "X-Forwarded-Host", forwarded_host);
    }
    out.extend_from_slice(b"Forwarded: ");
    for value in trusted("forwarded") {
        out.extend_from_slice(value);
        out.extend_from_slice(b", ");
    }
    match hop.peer {
        IpAddr::V4(v4) => {
            let _ = write!(out, "for={v4}");
        }
        IpAddr::V6(v6) => {
            let _ = write!(out, "for=\"[{v6}]\"");
        }
    }
    out.extend_from_slice(b";proto=http");
    if is_token_or_host(client_host) && !client_host.is_empty() {
        out.extend_from_slice(b";host=\"");
        out.extend_from_slice(client_host);
        out.push(b'"');
    }
    out.extend_from_slice(b"\r\n");
    match trusted("x-request-id")
        .next()
        .filter(|id| is_request_id(id))
    {
        Some(id) => field(out, "X-Request-Id", id),
        None => {
            out.extend_from_slice(b"X-Request-Id: ");
            new_request_id(out);
            out.extend_from_slice(b"\r\n");
        }
    }
    match request.body {
        BodyKind::None => {}
        BodyKind::Length(n) => {
            let _ = write!(out, "Content-Length: {n}\r\n");
        }
        BodyKind::Chunked => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
    }
    if upgrade {
        out.extend_from_slice(b"Connection: Upgrade\r\nUpgrade: websocket\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// `target` with `strip_prefix` removed from its path (on a segment boundary), never empty.
fn upstream_target<'t>(target: &'t str, strip_prefix: &str) -> std::borrow::Cow<'t, str> {
    let prefix = strip_prefix.trim_end_matches('/');
    if prefix.is_empty() {
        return target.into();
    }
    match target.strip_prefix(prefix) {
        Some("") => "/".into(),
        Some(rest) if rest.starts_with('?') => format!("/{rest}").into(),
        Some(rest) if rest.starts_with('/') => rest.into(),
        _ => target.into(),
    }
}

fn field(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Whether a `Host` value can go into `Forwarded`'s quoted `host=` as it is.
fn is_token_or_host(value: &[u8]) -> bool {
    value
        .iter()
        .all(|&b| b.is_ascii_alphanumeric() || b".-_:[]".contains(&b))
}

/// Whether a trusted proxy's request id is kept: visible ASCII, not too long.
fn is_request_id(id: &[u8]) -> bool {
    !id.is_empty() && id.len() <= MAX_REQUEST_ID && id.iter().all(|b| b.is_ascii_graphic())
}

thread_local! {
    /// This worker's request-id stream: a random 64-bit key and a counter.
    static REQUEST_IDS: Cell<(u64, u64)> = Cell::new((random_key(), 0));
}

/// Appends a new request id: 32 hex digits, unique in this process and hard to guess.
fn new_request_id(out: &mut Vec<u8>) {
    let (key, count) = REQUEST_IDS.with(|ids| {
        let (key, count) = ids.get();
        ids.set((key, count.wrapping_add(1)));
        (key, count)
    });
    // The counter is mixed (a bijection, so ids never repeat) and keyed per worker.
    let mixed = splitmix(count ^ key);
    let _ = write!(out, "{key:016x}{mixed:016x}");
}

/// A random key from the kernel (the clock if that fails).
fn random_key() -> u64 {
    let mut bytes = [0u8; 8];
    // SAFETY: `bytes` is a valid, writable buffer of the length given.
    let got = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
    if got == 8 {
        return u64::from_ne_bytes(bytes);
    }
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    splitmix(now.map_or(0, |d| d.as_nanos() as u64))
}

/// SplitMix64's finaliser: a bijection of `u64` that spreads every bit.
fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;
    use crate::config::UpstreamAddr;
    use ringstream_protocol::http::{HEADER_SLOTS, HeadLimits, parse_request};
    use std::mem::MaybeUninit;

    fn forward(raw: &str, config: &ProxyConfig, hop: Hop) -> String {
        let mut slots = [const { MaybeUninit::uninit() }; HEADER_SLOTS];
        let request = parse_request(raw.as_bytes(), &mut slots, &HeadLimits::default())
            .unwrap()
            .unwrap();
        let mut out = Vec::new();
        upstream_head(&request, config, hop, false, &mut out);
        String::from_utf8(out).unwrap()
    }

    fn config() -> ProxyConfig {
        ProxyConfig::new(vec![UpstreamAddr::Tcp("127.0.0.1:1".parse().unwrap())])
    }

    const CLIENT: Hop = Hop {
        peer: IpAddr::V4(std::net::Ipv4Addr::new(203, 0, 113, 7)),
        trusted: false,
    };

    /// The head without its generated request id.
    fn without_id(head: &str) -> String {
        head.lines()
            .filter(|l| !l.starts_with("X-Request-Id: "))
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn hop_by_hop_and_spoofed_fields_are_dropped_and_the_body_reframed() {
        let head = forward(
            "POST /api/items?x=1 HTTP/1.1\r\nHost: app.example\r\nConnection: keep-alive, X-Hop\r\n\
             X-Hop: 1\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\nProxy-Authorization: secret\r\n\
             X-Forwarded-For: 127.0.0.1\r\nForwarded: for=127.0.0.1\r\nX-Real-IP: 127.0.0.1\r\n\
             X-Request-Id: mine\r\nCookie: a=b\r\nTransfer-Encoding: chunked\r\n\
             Expect: 100-continue\r\n\r\n",
            &config(),
            CLIENT,
        );
        assert_eq!(
            without_id(&head),
            "POST /api/items?x=1 HTTP/1.1\nHost: app.example\nCookie: a=b\n\
             X-Forwarded-For: 203.0.113.7\nX-Forwarded-Proto: http\nX-Forwarded-Host: app.example\n\
             Forwarded: for=203.0.113.7;proto=http;host=\"app.example\"\n\
             Transfer-Encoding: chunked\n"
        );
        let id = head
            .lines()
            .find_map(|l| l.strip_prefix("X-Request-Id: "))
            .unwrap();
        assert_eq!(id.len(), 32);
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
    }

    #[test]
    fn a_trusted_proxys_chain_is_kept_and_this_hop_appended() {
        let hop = Hop {
            peer: "::1".parse().unwrap(),
            trusted: true,
        };
        let head = forward(
            "GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 198.51.100.1\r\nX-Forwarded-For: 10.0.0.1\r\n\
             X-Forwarded-Proto: https\r\nX-Forwarded-Host: public.example\r\n\
             Forwarded: for=198.51.100.1\r\nX-Request-Id: abc-123\r\n\r\n",
            &config(),
            hop,
        );
        assert!(
            head.contains("X-Forwarded-For: 198.51.100.1, 10.0.0.1, ::1\r\n"),
            "{head}"
        );
        assert!(head.contains("X-Forwarded-Proto: https\r\n"), "{head}");
        assert!(
            head.contains("X-Forwarded-Host: public.example\r\n"),
            "{head}"
        );
        assert!(
            head.contains("Forwarded: for=198.51.100.1, for=\"[::1]\";proto=http;host=\"h\"\r\n"),
            "{head}"
        );
        assert!(head.contains("X-Request-Id: abc-123\r\n"), "{head}");
    }

    #[test]
    fn strip_prefix_and_host_override() {
        let mut config = config();
        config.strip_prefix = "/api/".into();
        config.host = Some("backend.internal".into());
        for (target, sent) in [
            ("/api/users?id=1", "/users?id=1"),
            ("/api", "/"),
            ("/api?q", "/?q"),
            ("/apix/y", "/apix/y"),
            ("/other", "/other"),
        ] {
            let head = forward(
                &format!("GET {target} HTTP/1.1\r\nHost: h\r\n\r\n"),
                &config,
                CLIENT,
            );
            assert!(
                head.starts_with(&format!(
                    "GET {sent} HTTP/1.1\r\nHost: backend.internal\r\n"
                )),
                "{head}"
            );
        }
    }

    #[test]
    fn request_ids_do_not_repeat() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..10_000 {
            let mut out = Vec::new();
            new_request_id(&mut out);
            assert!(seen.insert(out));
        }
    }
}
