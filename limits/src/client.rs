//! Who a client is: the key every per-client limit is counted under.
//!
//! By default a client is its IP address, with IPv6 addresses grouped by their /64 (one host
//! gets a whole /64 and can rotate through it). The address is the TCP peer's, unless the
//! peer is a trusted proxy: then it is the right-most address in `Forwarded` (or
//! `X-Forwarded-For`) that is not itself a trusted proxy. A client may instead be named by a
//! header or a query parameter (an API key); without one, it falls back to its address.
//! Named keys are hashed with a per-process secret, so keys have a fixed size and a client
//! cannot choose names that collide.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::net::IpAddr;

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
}

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

/// How clients are told apart: the configured source, the trusted proxies and the IPv6
/// grouping.
#[derive(Debug, Clone)]
pub struct ClientIdentity {
    source: ClientIdSource,
    trusted_proxies: CidrSet,
    ipv6_prefix: u8,
    secret: RandomState,
}

impl ClientIdentity {
    /// Identities from `source`; forwarding headers are believed only from `trusted_proxies`;
    /// IPv6 clients are grouped by `ipv6_prefix` bits (64 by default; 128 = one address).
    pub fn new(source: ClientIdSource, trusted_proxies: CidrSet, ipv6_prefix: u8) -> Self {
        Self {
            source,
            trusted_proxies,
            ipv6_prefix: ipv6_prefix.min(128),
            secret: RandomState::new(),
        }
    }

    /// What identifies clients.
    pub fn source(&self) -> &ClientIdSource {
        &self.source
    }

    /// The client's address: `peer`, or, when `peer` is a trusted proxy, the right-most
    /// untrusted address of `Forwarded` (preferred) or `X-Forwarded-For`. A header that does
    /// not parse is ignored (the proxy's address is used), never half-believed.
    pub fn client_address(
        &self,
        peer: IpAddr,
        forwarded: Option<&[u8]>,
        x_forwarded_for: Option<&[u8]>,
    ) -> IpAddr {
        let peer = canonical(peer);
        if !self.trusted_proxies.contains(peer) {
            return peer;
        }
        let chain = match (forwarded, x_forwarded_for) {
            (Some(value), _) => parse_forwarded(value),
            (None, Some(value)) => parse_x_forwarded_for(value),
            (None, None) => return peer,
        };
        let Some(chain) = chain else {
            return peer;
        };
        chain
            .into_iter()
            .rev()
            .map(canonical)
            .find(|hop| !self.trusted_proxies.contains(*hop))
            .unwrap_or(peer)
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
            ClientIdSource::Ip => None,
            ClientIdSource::Header(name) => header(name).filter(|v| !v.is_empty()),
            ClientIdSource::Query(name) => query
                .and_then(|q| query_value(q, name))
                .filter(|v| !v.is_empty())
                .map(str::as_bytes),
        };
        match named {
            Some(value) => ClientKey::Named(self.secret.hash_one(value)),
            None => self.address_key(address),
        }
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

/// `X-Forwarded-For: client, proxy1, proxy2` as addresses, left to right; `None` if any entry
/// is not an address.
fn parse_x_forwarded_for(value: &[u8]) -> Option<Vec<IpAddr>> {
    let text = std::str::from_utf8(value).ok()?;
    text.split(',').map(|hop| parse_node(hop.trim())).collect()
}

/// The `for=` parameters of `Forwarded` (RFC 7239), left to right; `None` if an element has
/// no usable `for=` (obfuscated identifiers and `unknown` included: a proxy that hides the
/// client leaves the proxy as the client).
fn parse_forwarded(value: &[u8]) -> Option<Vec<IpAddr>> {
    let text = std::str::from_utf8(value).ok()?;
    text.split(',')
        .map(|element| {
            let node = element.split(';').find_map(|pair| {
                let (key, value) = pair.trim().split_once('=')?;
                key.eq_ignore_ascii_case("for").then_some(value.trim())
            })?;
            parse_node(node.trim_matches('"'))
        })
        .collect()
}

/// An address, possibly with a port: `192.0.2.1`, `192.0.2.1:80`, `[2001:db8::1]:80`,
/// `2001:db8::1`.
fn parse_node(node: &str) -> Option<IpAddr> {
    if let Ok(address) = node.parse() {
        return Some(address);
    }
    if let Some(rest) = node.strip_prefix('[') {
        return rest.split_once(']')?.0.parse().ok();
    }
    let (host, port) = node.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    host.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
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
        CidrSet::new(vec!["10.0.0.0/8".parse().unwrap(), "::1".parse().unwrap()])
    }

    fn by_ip() -> ClientIdentity {
        ClientIdentity::new(ClientIdSource::Ip, proxies(), 64)
    }

    #[test]
    fn forwarding_headers_are_believed_only_from_trusted_proxies() {
        let id = by_ip();
        let xff = Some(&b"198.51.100.7, 10.0.0.2"[..]);
        // An untrusted peer cannot claim another address.
        assert_eq!(
            id.client_address(ip("203.0.113.1"), None, xff),
            ip("203.0.113.1")
        );
        // Through trusted proxies: the right-most untrusted hop.
        assert_eq!(
            id.client_address(ip("10.0.0.1"), None, xff),
            ip("198.51.100.7")
        );
        // A client that prepends a fake hop does not move its identity.
        let spoofed = Some(&b"1.2.3.4, 198.51.100.7"[..]);
        assert_eq!(
            id.client_address(ip("10.0.0.1"), None, spoofed),
            ip("198.51.100.7")
        );
        // Garbage is not half-believed: the proxy itself is the client.
        let garbage = Some(&b"198.51.100.7, nonsense"[..]);
        assert_eq!(
            id.client_address(ip("10.0.0.1"), None, garbage),
            ip("10.0.0.1")
        );
        assert_eq!(
            id.client_address(ip("10.0.0.1"), None, None),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn forwarded_is_preferred_and_parsed_with_ports_and_brackets() {
        let id = by_ip();
        let forwarded = Some(&br#"for=192.0.2.60;proto=http, For="[2001:db8:cafe::17]:4711""#[..]);
        let xff = Some(&b"198.51.100.7"[..]);
        assert_eq!(
            id.client_address(ip("::1"), forwarded, xff),
            ip("2001:db8:cafe::17")
        );
        let v4_port = Some(&b"for=192.0.2.43:8080"[..]);
        assert_eq!(
            id.client_address(ip("::1"), v4_port, None),
            ip("192.0.2.43")
        );
        let hidden = Some(&b"for=unknown"[..]);
        assert_eq!(id.client_address(ip("::1"), hidden, None), ip("::1"));
    }

    #[test]
    fn ipv6_clients_are_grouped_by_their_64() {
        let id = by_ip();
        let a = id.address_key(ip("2001:db8:1:2:aaaa::1"));
        let b = id.address_key(ip("2001:db8:1:2:bbbb::2"));
        let other = id.address_key(ip("2001:db8:1:3::1"));
        assert_eq!(a, b);
        assert_ne!(a, other);
        let exact = ClientIdentity::new(ClientIdSource::Ip, CidrSet::default(), 128);
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
            64,
        );
        let q = by_query.key(ip("192.0.2.1"), |_| None, Some("a=1&token=xyz"));
        assert!(matches!(q, ClientKey::Named(_)));
        assert_eq!(
            q,
            by_query.key(ip("192.0.2.2"), |_| None, Some("token=xyz"))
        );
    }
}
