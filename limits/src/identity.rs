//! Who a client is: the key every per-client limit is counted under.
//!
//! By default a client is its IP address, with IPv6 addresses grouped by their /64 (one host
//! gets a whole /64 and can rotate through it). The address is the TCP peer's, unless the
//! peer is a trusted proxy: then it is read from the one forwarding header the proxy is
//! trusted to set (`forwarded_header`: `X-Forwarded-For` by default, or `Forwarded`); the other
//! header is ignored entirely. Every line of that header counts: repeated lines are one
//! comma-separated list (RFC 9110 §5.3), and the client is the right-most hop of the whole list
//! that is not itself a trusted proxy. When that hop is not an address (`unknown`, an
//! obfuscated `_name`, garbage), the client is unknown ([`UnknownClient`]): it never becomes
//! the proxy. A client may instead be named by a header or a query parameter (an API key);
//! without one, it falls back to its address. Named keys are hashed with a per-process secret,
//! so keys have a fixed size and a client cannot choose names that collide.

use std::borrow::Cow;
use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::BuildHasher;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::cidr::{CidrSet, canonical, mask};

/// What identifies a client (`client_id` in the configuration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientIdSource {
    /// `client_id = "ip"`.
    Ip,
    /// `client_id = "header:NAME"`.
    Header(String),
    /// `client_id = "query:NAME"`.
    Query(String),
    /// `client_id = "auth"`: the `X-Client-Id` of the route's auth answer; its address on a
    /// route without an auth hook (the name is given to [`ClientIdentity::named_key`]).
    Auth,
}

/// The one forwarding header a trusted proxy is trusted to set (`forwarded_header` in the
/// configuration). The other one is never read: a proxy that sets one usually passes the
/// client's own copy of the other through untouched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1, proxy2` (the de facto header; nginx's
    /// `$proxy_add_x_forwarded_for`, HAProxy's `option forwardfor`).
    #[default]
    XForwardedFor,
    /// `Forwarded: for=client, for=proxy1` (RFC 7239).
    Forwarded,
}

impl ForwardedHeader {
    /// The header's name, lower case.
    pub fn name(self) -> &'static str {
        match self {
            Self::XForwardedFor => "x-forwarded-for",
            Self::Forwarded => "forwarded",
        }
    }
}

/// A trusted proxy named a client that is not an address: the right-most untrusted hop of its
/// forwarding header is `unknown`, obfuscated (`_hidden`), not an address at all, or the
/// header names no hop. Such a client has no address, so it can be neither limited by address
/// nor matched by any address list; the server refuses it (400).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnknownClient;

impl fmt::Display for UnknownClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the right-most untrusted hop of the forwarding header is not an address")
    }
}

impl std::error::Error for UnknownClient {}

/// The fixed-size key a client's limits are kept under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientKey {
    /// An IPv4 address.
    V4(u32),
    /// An IPv6 network (the address with host bits cleared to the configured prefix).
    V6(u128),
    /// A header or query value, hashed.
    Named(u64),
}

/// How clients are told apart: the configured source, the trusted proxies, the header they
/// set and the IPv6 grouping.
#[derive(Debug, Clone)]
pub struct ClientIdentity {
    source: ClientIdSource,
    trusted_proxies: CidrSet,
    forwarded_header: ForwardedHeader,
    ipv6_prefix: u8,
    secret: Secret,
}

/// What named clients' keys and fingerprints are hashed with.
#[derive(Debug, Clone)]
enum Secret {
    /// A per-process random key (a server of its own).
    Process(RandomState),
    /// A key derived from a secret every node of a cluster shares.
    Shared(siphasher::sip::SipHasher13),
}

impl Secret {
    fn hash<T: std::hash::Hash + ?Sized>(&self, value: &T) -> u64 {
        match self {
            Self::Process(state) => state.hash_one(value),
            Self::Shared(keyed) => {
                let mut hasher = *keyed;
                value.hash(&mut hasher);
                std::hash::Hasher::finish(&hasher)
            }
        }
    }
}

impl ClientIdentity {
    /// Identities from `source`; `forwarded_header` is believed only from `trusted_proxies`;
    /// IPv6 clients are grouped by `ipv6_prefix` bits (64 by default; 128 = one address).
    pub fn new(
        source: ClientIdSource,
        trusted_proxies: CidrSet,
        forwarded_header: ForwardedHeader,
        ipv6_prefix: u8,
    ) -> Self {
        Self {
            source,
            trusted_proxies,
            forwarded_header,
            ipv6_prefix: ipv6_prefix.min(128),
            secret: Secret::Process(RandomState::new()),
        }
    }

    /// These identities with named clients hashed under `secret`, so that every node of a
    /// cluster given the same secret keeps one named client under one key.
    pub fn with_shared_secret(mut self, secret: &[u8]) -> Self {
        let derive = |label: u8| {
            let mut hasher = siphasher::sip::SipHasher13::new_with_keys(0, u64::from(label));
            std::hash::Hasher::write(&mut hasher, secret);
            std::hash::Hasher::finish(&hasher)
        };
        self.secret = Secret::Shared(siphasher::sip::SipHasher13::new_with_keys(
            derive(1),
            derive(2),
        ));
        self
    }

    /// These identities with the secret of `earlier` (a reloaded configuration keeps its
    /// named clients' keys).
    pub fn with_secret_of(mut self, earlier: &Self) -> Self {
        self.secret = earlier.secret.clone();
        self
    }

    /// What identifies clients.
    pub fn source(&self) -> &ClientIdSource {
        &self.source
    }

    /// The one forwarding header believed from a trusted proxy.
    pub fn forwarded_header(&self) -> ForwardedHeader {
        self.forwarded_header
    }

    /// The client's address. `peer` itself unless it is a trusted proxy; then `lines`, every
    /// line of the [`Self::forwarded_header`] in the order received, are one list (RFC 9110
    /// §5.3), walked from the right past trusted proxies:
    ///
    /// - the first hop that is not a trusted proxy is the client (entries left of it are
    ///   never looked at: anyone may have written them);
    /// - if that hop is not an address, the client is unknown ([`UnknownClient`]), never the
    ///   proxy: the proxy's address may be loopback, exempt and allowed where the client is
    ///   not;
    /// - if every hop is a trusted proxy, the left-most hop is the client;
    /// - with no line at all, the proxy made the request itself: `peer` is the client. A
    ///   header present with no hop in it names nobody: unknown.
    ///
    /// Addresses are canonical (an IPv4-mapped IPv6 address is its IPv4 address).
    pub fn client_address<'v>(
        &self,
        peer: IpAddr,
        lines: impl IntoIterator<Item = &'v [u8]>,
    ) -> Result<IpAddr, UnknownClient> {
        let peer = canonical(peer);
        if !self.trusted_proxies.contains(peer) {
            return Ok(peer);
        }
        let mut present = false;
        // The left-most hop while every hop so far is a trusted proxy.
        let mut leftmost = None;
        // The right-most hop seen so far that is not a trusted proxy (`None` inside: not an
        // address). Walking left to right and keeping the last one is walking right to left
        // and stopping at the first.
        let mut untrusted = None;
        for line in lines {
            present = true;
            for element in list_elements(line) {
                match self.forwarded_header.hop(element).map(canonical) {
                    Some(hop) if self.trusted_proxies.contains(hop) => {
                        leftmost.get_or_insert(hop);
                    }
                    hop => untrusted = Some(hop),
                }
            }
        }
        match (untrusted, leftmost) {
            (Some(Some(client)), _) => Ok(client),
            (Some(None), _) => Err(UnknownClient),
            (None, Some(client)) => Ok(client),
            (None, None) if present => Err(UnknownClient),
            (None, None) => Ok(peer),
        }
    }

    /// The key of a client at `address` (see [`Self::client_address`]); `header` looks up a
    /// request header by name, `query` is the request's query string.
    pub fn key<'a>(
        &self,
        address: IpAddr,
        header: impl Fn(&str) -> Option<&'a [u8]>,
        query: Option<&'a str>,
    ) -> ClientKey {
        let named = match &self.source {
            ClientIdSource::Ip | ClientIdSource::Auth => None,
            ClientIdSource::Header(name) => header(name).filter(|v| !v.is_empty()),
            ClientIdSource::Query(name) => query
                .and_then(|q| query_value(q, name))
                .filter(|v| !v.is_empty())
                .map(str::as_bytes),
        };
        match named {
            Some(value) => self.named_key(value),
            None => self.address_key(address),
        }
    }

    /// The key of a client named `name` (a header or query value, or an auth answer's
    /// `X-Client-Id`), hashed with the per-process secret.
    pub fn named_key(&self, name: &[u8]) -> ClientKey {
        ClientKey::Named(self.secret.hash(name))
    }

    /// A 64-bit fingerprint of `key`, to tell whether two requests name the same client
    /// without keeping the key (an IPv6 key is 16-byte aligned, which would widen every
    /// connection that holds it). Keyed with the per-process secret: collisions cannot be
    /// chosen.
    pub fn fingerprint(&self, key: &ClientKey) -> u64 {
        self.secret.hash(key)
    }

    /// The key of an address: IPv4 as is, IPv6 grouped by the configured prefix.
    pub fn address_key(&self, address: IpAddr) -> ClientKey {
        match canonical(address) {
            IpAddr::V4(v4) => ClientKey::V4(u32::from(v4)),
            v6 @ IpAddr::V6(_) => match mask(v6, self.ipv6_prefix) {
                IpAddr::V6(net) => ClientKey::V6(u128::from(net)),
                IpAddr::V4(v4) => ClientKey::V4(u32::from(v4)),
            },
        }
    }
}

impl ForwardedHeader {
    /// The address of one list element of this header, if it is one.
    fn hop(self, element: &[u8]) -> Option<IpAddr> {
        match self {
            Self::XForwardedFor => parse_node(std::str::from_utf8(element).ok()?),
            Self::Forwarded => parse_node(&forwarded_for(element)?),
        }
    }
}

/// The elements of one line of a list-based field (RFC 9110 §5.6.1): split at commas outside
/// quoted strings, without their surrounding whitespace; empty elements are dropped, as that
/// section asks of a recipient.
fn list_elements(line: &[u8]) -> impl Iterator<Item = &[u8]> {
    split_unquoted(line, b',').filter(|element| !element.is_empty())
}

/// `bytes` split at each `separator` that is not inside a quoted-string (RFC 9110 §5.6.4,
/// with its `\` quoted-pairs), each part trimmed of whitespace.
fn split_unquoted(bytes: &[u8], separator: u8) -> impl Iterator<Item = &[u8]> {
    let mut quoted = false;
    let mut escaped = false;
    bytes
        .split(move |&byte| {
            if escaped {
                escaped = false;
                return false;
            }
            match byte {
                b'\\' if quoted => {
                    escaped = true;
                    false
                }
                b'"' => {
                    quoted = !quoted;
                    false
                }
                _ => !quoted && byte == separator,
            }
        })
        .map(<[u8]>::trim_ascii)
}

/// The node of the `for` parameter of one `Forwarded` element (RFC 7239 §4: `for=node`,
/// parameter names case-insensitive, values a token or a quoted-string). `None` without one,
/// or with two (§4: a parameter occurs at most once per element; which to believe would be a
/// guess).
fn forwarded_for(element: &[u8]) -> Option<Cow<'_, str>> {
    let mut found = None;
    for pair in split_unquoted(element, b';') {
        let Some(eq) = pair.iter().position(|&b| b == b'=') else {
            continue;
        };
        let (name, value) = (pair[..eq].trim_ascii(), pair[eq + 1..].trim_ascii());
        if name.eq_ignore_ascii_case(b"for") {
            if found.is_some() {
                return None;
            }
            found = Some(value);
        }
    }
    unquote(found?)
}

/// A token as is, or the content of a quoted-string with its quoted-pairs undone (RFC 9110
/// §5.6.4); `None` if it is not UTF-8 or a quote is left open.
fn unquote(value: &[u8]) -> Option<Cow<'_, str>> {
    let Some(inner) = value.strip_prefix(b"\"") else {
        return std::str::from_utf8(value).ok().map(Cow::Borrowed);
    };
    let inner = std::str::from_utf8(inner.strip_suffix(b"\"")?).ok()?;
    if !inner.contains('\\') {
        return Some(Cow::Borrowed(inner));
    }
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        out.push(if c == '\\' { chars.next()? } else { c });
    }
    Some(Cow::Owned(out))
}

/// An address, possibly with a port: `192.0.2.1`, `192.0.2.1:80`, `2001:db8::1`,
/// `[2001:db8::1]`, `[2001:db8::1]:80`. RFC 7239 §6's other nodes, `unknown` and obfuscated
/// `_names`, are not addresses (an obfuscated port after an address is fine: §6.3).
fn parse_node(node: &str) -> Option<IpAddr> {
    if let Ok(address) = node.parse() {
        return Some(address);
    }
    if let Some(rest) = node.strip_prefix('[') {
        let (v6, after) = rest.split_once(']')?;
        if !after.is_empty() {
            is_port(after.strip_prefix(':')?).then_some(())?;
        }
        return v6.parse::<Ipv6Addr>().ok().map(IpAddr::V6);
    }
    let (v4, port) = node.rsplit_once(':')?;
    is_port(port).then_some(())?;
    v4.parse::<Ipv4Addr>().ok().map(IpAddr::V4)
}

/// A port number, or an obfuscated one (RFC 7239 §6.3: `_` then letters, digits, `.`, `_`,
/// `-`).
fn is_port(port: &str) -> bool {
    let digits = !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit());
    let obfuscated = port.strip_prefix('_').is_some_and(|rest| {
        !rest.is_empty()
            && rest
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    });
    (digits && port.parse::<u16>().is_ok()) || obfuscated
}

/// The raw value of `name` in a query string.
fn query_value<'q>(query: &'q str, name: &str) -> Option<&'q str> {
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (key == name).then_some(value)
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn proxies() -> CidrSet {
        CidrSet::new(vec![
            "10.0.0.0/8".parse().unwrap(),
            "127.0.0.1/32".parse().unwrap(),
            "::1".parse().unwrap(),
        ])
    }

    fn by_ip() -> ClientIdentity {
        ClientIdentity::new(
            ClientIdSource::Ip,
            proxies(),
            ForwardedHeader::default(),
            64,
        )
    }

    fn by_forwarded() -> ClientIdentity {
        ClientIdentity::new(
            ClientIdSource::Ip,
            proxies(),
            ForwardedHeader::Forwarded,
            64,
        )
    }

    /// The client `id` sees from `peer` with these lines of its header.
    fn client(id: &ClientIdentity, peer: &str, lines: &[&str]) -> Result<IpAddr, UnknownClient> {
        id.client_address(ip(peer), lines.iter().map(|line| line.as_bytes()))
    }

    #[test]
    fn forwarding_headers_are_believed_only_from_trusted_proxies() {
        let id = by_ip();
        let xff = ["198.51.100.7, 10.0.0.2"];
        // An untrusted peer cannot claim another address, nor be refused for garbage.
        assert_eq!(client(&id, "203.0.113.1", &xff), Ok(ip("203.0.113.1")));
        assert_eq!(client(&id, "203.0.113.1", &["junk"]), Ok(ip("203.0.113.1")));
        // Through trusted proxies: the right-most untrusted hop.
        assert_eq!(client(&id, "10.0.0.1", &xff), Ok(ip("198.51.100.7")));
        // A client that prepends a fake hop does not move its identity.
        let spoofed = ["127.0.0.1, 198.51.100.7"];
        assert_eq!(client(&id, "10.0.0.1", &spoofed), Ok(ip("198.51.100.7")));
        // No header: the proxy's own request.
        assert_eq!(client(&id, "10.0.0.1", &[]), Ok(ip("10.0.0.1")));
        // An IPv4-mapped peer is its IPv4 address, trusted as such.
        assert_eq!(
            client(&id, "::ffff:10.0.0.1", &["198.51.100.7"]),
            Ok(ip("198.51.100.7"))
        );
    }

    #[test]
    fn repeated_lines_are_one_list() {
        let id = by_ip();
        // HAProxy's `option forwardfor` appends its own line after the client's.
        let lines = ["127.0.0.1", "8.8.8.8"];
        assert_eq!(client(&id, "127.0.0.1", &lines), Ok(ip("8.8.8.8")));
        let lines = ["127.0.0.1, 1.2.3.4", "8.8.8.8, 10.0.0.3", "10.0.0.2"];
        assert_eq!(client(&id, "127.0.0.1", &lines), Ok(ip("8.8.8.8")));
        // Empty elements and empty lines are dropped (RFC 9110 §5.6.1).
        let lines = [" , 127.0.0.1,,", "", "\t8.8.8.8 ,"];
        assert_eq!(client(&id, "127.0.0.1", &lines), Ok(ip("8.8.8.8")));
    }

    #[test]
    fn only_the_configured_header_is_read() {
        // The engine hands over the lines of `forwarded_header()` only: the other header
        // cannot reach the identity. What each header's syntax makes of the other's value:
        assert_eq!(by_ip().forwarded_header().name(), "x-forwarded-for");
        assert_eq!(by_forwarded().forwarded_header().name(), "forwarded");
        let xff = by_ip();
        let fwd = by_forwarded();
        assert_eq!(
            client(&fwd, "127.0.0.1", &["for=8.8.8.8"]),
            Ok(ip("8.8.8.8"))
        );
        assert_eq!(client(&xff, "127.0.0.1", &["8.8.8.8"]), Ok(ip("8.8.8.8")));
        // A Forwarded value read as X-Forwarded-For (and the reverse) is not an address.
        assert_eq!(
            client(&xff, "127.0.0.1", &["for=127.0.0.1"]),
            Err(UnknownClient)
        );
        assert_eq!(
            client(&fwd, "127.0.0.1", &["127.0.0.1"]),
            Err(UnknownClient)
        );
    }

    #[test]
    fn forwarded_parameters_quotes_ports_and_case() {
        let id = by_forwarded();
        let line = r#"for=192.0.2.60;proto=http;by=203.0.113.43, For="[2001:db8:cafe::17]:4711""#;
        assert_eq!(client(&id, "::1", &[line]), Ok(ip("2001:db8:cafe::17")));
        assert_eq!(
            client(&id, "::1", &["FOR=192.0.2.43:8080"]),
            Ok(ip("192.0.2.43"))
        );
        assert_eq!(
            client(&id, "::1", &[r#" proto=https ; for = "192.0.2.43:_port" "#]),
            Ok(ip("192.0.2.43"))
        );
        // Commas and semicolons inside a quoted string split nothing.
        let quoted = r#"for=192.0.2.9;x="a, for=127.0.0.1; b""#;
        assert_eq!(client(&id, "::1", &[quoted]), Ok(ip("192.0.2.9")));
        // quoted-pairs are undone.
        assert_eq!(
            client(&id, "::1", &[r#"for="\[2001:db8::2\]""#]),
            Ok(ip("2001:db8::2"))
        );
        // A bare IPv6 address is accepted, an IPv4-mapped one is its IPv4 address.
        assert_eq!(
            client(&id, "::1", &["for=2001:db8::3"]),
            Ok(ip("2001:db8::3"))
        );
        assert_eq!(
            client(&id, "::1", &[r#"for="[::ffff:192.0.2.5]""#]),
            Ok(ip("192.0.2.5"))
        );
    }

    #[test]
    fn x_forwarded_for_ipv6_and_ports() {
        let id = by_ip();
        let cases = [
            ("2001:db8::1", "2001:db8::1"),
            ("[2001:db8::1]", "2001:db8::1"),
            ("[2001:db8::1]:4711", "2001:db8::1"),
            ("192.0.2.1:80", "192.0.2.1"),
            ("::ffff:192.0.2.1", "192.0.2.1"),
        ];
        for (hop, expected) in cases {
            let line = format!("127.0.0.1, {hop}, 10.0.0.7");
            assert_eq!(client(&id, "::1", &[&line]), Ok(ip(expected)), "{hop}");
        }
        // An IPv4-mapped trusted proxy is skipped like its IPv4 address.
        let line = "198.51.100.1, ::ffff:10.0.0.7";
        assert_eq!(client(&id, "::1", &[line]), Ok(ip("198.51.100.1")));
    }

    #[test]
    fn garbage_left_of_the_client_does_not_matter() {
        let id = by_ip();
        let lines = ["garbage, unknown, _hidden, \u{0}", "198.51.100.7"];
        assert_eq!(client(&id, "127.0.0.1", &lines), Ok(ip("198.51.100.7")));
        let bytes: [&[u8]; 2] = [b"\xff\xfe, x", b"198.51.100.7, 10.0.0.2"];
        assert_eq!(
            id.client_address(ip("127.0.0.1"), bytes),
            Ok(ip("198.51.100.7"))
        );
        let fwd = by_forwarded();
        let line = "for=unknown, for=_hidden, proto=http, for=\"[oops, for=198.51.100.7";
        assert_eq!(client(&fwd, "127.0.0.1", &[line]), Err(UnknownClient));
        let line = "for=unknown, for=_hidden, proto=http, for=198.51.100.7";
        assert_eq!(client(&fwd, "127.0.0.1", &[line]), Ok(ip("198.51.100.7")));
    }

    #[test]
    fn a_client_that_is_not_an_address_is_unknown_never_the_proxy() {
        let unknown = |id: &ClientIdentity, line: String| {
            assert_eq!(
                client(id, "127.0.0.1", &[&line]),
                Err(UnknownClient),
                "{line}"
            );
        };
        let id = by_ip();
        for hop in [
            "garbage",
            "unknown",
            "_hidden",
            "1.2.3.4:99999",
            "1.2.3",
            "[1.2.3.4]",
            "fe80::1%eth0",
            "[2001:db8::1",
            "\"8.8.8.8\"",
        ] {
            unknown(&id, format!("8.8.8.8, {hop}, 10.0.0.2"));
        }
        let invalid_utf8: [&[u8]; 1] = [b"8.8.8.8, \xff"];
        assert_eq!(
            id.client_address(ip("127.0.0.1"), invalid_utf8),
            Err(UnknownClient)
        );
        // A header present with no hop in it names nobody.
        assert_eq!(client(&id, "127.0.0.1", &[""]), Err(UnknownClient));
        assert_eq!(client(&id, "127.0.0.1", &[" , ,"]), Err(UnknownClient));

        let fwd = by_forwarded();
        for element in [
            "for=unknown",
            "for=_hidden",
            "for=\"_SEVKISEK\"",
            "proto=https",
            "for=8.8.8.8;for=127.0.0.1",
            "for=\"8.8.8.8",
            "for=",
        ] {
            unknown(&fwd, format!("for=8.8.8.8, {element}"));
        }
    }

    #[test]
    fn when_every_hop_is_trusted_the_leftmost_is_the_client() {
        let id = by_ip();
        assert_eq!(
            client(&id, "10.0.0.1", &["10.0.0.3, 10.0.0.2", "127.0.0.1"]),
            Ok(ip("10.0.0.3"))
        );
        assert_eq!(
            client(&by_forwarded(), "::1", &["for=\"[::1]\", for=10.0.0.2"]),
            Ok(ip("::1"))
        );
    }

    #[test]
    fn ipv6_clients_are_grouped_by_their_64() {
        let id = by_ip();
        let a = id.address_key(ip("2001:db8:1:2:aaaa::1"));
        let b = id.address_key(ip("2001:db8:1:2:bbbb::2"));
        let other = id.address_key(ip("2001:db8:1:3::1"));
        assert_eq!(a, b);
        assert_ne!(a, other);
        let exact = ClientIdentity::new(
            ClientIdSource::Ip,
            CidrSet::default(),
            ForwardedHeader::default(),
            128,
        );
        assert_ne!(
            exact.address_key(ip("2001:db8::1")),
            exact.address_key(ip("2001:db8::2"))
        );
        assert_eq!(
            id.address_key(ip("::ffff:192.0.2.1")),
            ClientKey::V4(0xc000_0201)
        );
    }

    #[test]
    fn named_clients_fall_back_to_their_address() {
        let id = ClientIdentity::new(
            ClientIdSource::Header("x-api-key".into()),
            CidrSet::default(),
            ForwardedHeader::default(),
            64,
        );
        let with = |key: &'static [u8]| move |name: &str| (name == "x-api-key").then_some(key);
        let a = id.key(ip("192.0.2.1"), with(b"alpha"), None);
        let a_elsewhere = id.key(ip("192.0.2.99"), with(b"alpha"), None);
        let b = id.key(ip("192.0.2.1"), with(b"beta"), None);
        assert_eq!(a, a_elsewhere);
        assert_ne!(a, b);
        assert!(matches!(a, ClientKey::Named(_)));
        let none = id.key(ip("192.0.2.1"), |_| None, None);
        assert_eq!(none, ClientKey::V4(0xc000_0201));
        let empty = id.key(ip("192.0.2.1"), with(b""), None);
        assert_eq!(empty, none);

        let by_query = ClientIdentity::new(
            ClientIdSource::Query("token".into()),
            CidrSet::default(),
            ForwardedHeader::default(),
            64,
        );
        let q = by_query.key(ip("192.0.2.1"), |_| None, Some("a=1&token=xyz"));
        assert!(matches!(q, ClientKey::Named(_)));
        assert_eq!(
            q,
            by_query.key(ip("192.0.2.2"), |_| None, Some("token=xyz"))
        );
    }

    #[test]
    fn auth_named_clients_are_their_address_until_an_answer_names_them() {
        let id = ClientIdentity::new(
            ClientIdSource::Auth,
            CidrSet::default(),
            ForwardedHeader::default(),
            64,
        );
        let header = |_: &str| Some(&b"alpha"[..]);
        assert_eq!(
            id.key(ip("192.0.2.1"), header, Some("token=alpha")),
            ClientKey::V4(0xc000_0201),
            "headers and queries name nobody"
        );
        let named = id.named_key(b"user-7");
        assert!(matches!(named, ClientKey::Named(_)));
        assert_eq!(named, id.named_key(b"user-7"));
        assert_ne!(named, id.named_key(b"user-8"));
    }

    #[test]
    fn a_shared_secret_gives_every_node_the_same_key_and_a_reload_keeps_the_secret() {
        let new = || {
            ClientIdentity::new(
                ClientIdSource::Auth,
                CidrSet::default(),
                ForwardedHeader::default(),
                64,
            )
        };
        let (a, b) = (new(), new());
        assert_ne!(a.named_key(b"u"), b.named_key(b"u"), "per-process secrets");
        let (a, b) = (
            new().with_shared_secret(b"s3cret"),
            new().with_shared_secret(b"s3cret"),
        );
        assert_eq!(a.named_key(b"u"), b.named_key(b"u"));
        assert_ne!(
            a.named_key(b"u"),
            new().with_shared_secret(b"other").named_key(b"u")
        );
        let single = new();
        assert_eq!(
            new().with_secret_of(&single).named_key(b"u"),
            single.named_key(b"u")
        );
    }
}
