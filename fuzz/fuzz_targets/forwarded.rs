//! Client identity from forwarding headers (`ClientIdentity::client_address`) on any header
//! lines: it never panics; an untrusted peer is always its own client; a client is a
//! canonical address; repeated lines are one list (RFC 9110 §5.3), so joining them with commas
//! changes nothing (lines whose quotes are balanced); a client found at an untrusted hop stays
//! the client when a trusted proxy appends itself on the right, or anyone adds lines on the
//! left, and a header naming that address alone names it again.
//!
//! Input: the first byte picks the header (bit 0: `Forwarded`, else `X-Forwarded-For`) and the
//! peer (bits 1-2: trusted IPv4, trusted IPv6, IPv4-mapped trusted, untrusted); the rest is
//! the header's lines, separated by LF (none when it is empty).
#![no_main]

use std::net::IpAddr;

use libfuzzer_sys::fuzz_target;
use ringstream_limits::cidr::{CidrSet, canonical};
use ringstream_limits::identity::{ClientIdSource, ClientIdentity, ClientKey, ForwardedHeader};

const PEERS: [&str; 4] = ["10.0.0.1", "::1", "::ffff:10.9.8.7", "203.0.113.1"];

fuzz_target!(|data: &[u8]| {
    let Some((&control, rest)) = data.split_first() else {
        return;
    };
    let header = if control & 1 == 0 {
        ForwardedHeader::XForwardedFor
    } else {
        ForwardedHeader::Forwarded
    };
    let peer: IpAddr = PEERS[usize::from(control >> 1 & 3)]
        .parse()
        .expect("an address");
    let trusted = CidrSet::new(
        ["10.0.0.0/8", "::1", "2001:db8:ffff::/48"]
            .iter()
            .map(|r| r.parse().expect("a range"))
            .collect(),
    );
    let identity = ClientIdentity::new(ClientIdSource::Ip, trusted.clone(), header, 64);
    let lines: Vec<&[u8]> = if rest.is_empty() {
        Vec::new()
    } else {
        rest.split(|&b| b == b'\n').collect()
    };
    let answer = identity.client_address(peer, lines.iter().copied());

    if !trusted.contains(canonical(peer)) {
        assert_eq!(
            answer,
            Ok(canonical(peer)),
            "an untrusted peer is its own client"
        );
        return;
    }
    if let Ok(client) = answer {
        assert_eq!(client, canonical(client), "clients are canonical");
        match identity.address_key(client) {
            ClientKey::V4(_) => assert!(client.is_ipv4()),
            ClientKey::V6(net) => assert_eq!(net & u128::from(u64::MAX), 0, "grouped by /64"),
            ClientKey::Named(_) => panic!("an address is never a named key"),
        }
    }
    if lines.len() > 1 && lines.iter().all(|line| quotes_balanced(line)) {
        let joined = lines.join(&b", "[..]);
        let one_line = identity.client_address(peer, [&joined[..]]);
        assert_eq!(one_line, answer, "lines are one list");
    }
    let Ok(client) = answer else {
        return;
    };
    if trusted.contains(client) {
        return;
    }
    let (proxy_hop, junk, alone) = match header {
        ForwardedHeader::XForwardedFor => (
            "10.0.0.7".to_owned(),
            "unknown, _hidden, 198.51.100.1",
            client.to_string(),
        ),
        ForwardedHeader::Forwarded => (
            "for=10.0.0.7".to_owned(),
            "for=unknown, for=_hidden;by=x, for=198.51.100.1",
            format!("for=\"{}\"", node(client)),
        ),
    };
    let appended: Vec<&[u8]> = lines
        .iter()
        .copied()
        .chain([proxy_hop.as_bytes()])
        .collect();
    assert_eq!(
        identity.client_address(peer, appended),
        answer,
        "a proxy appended itself"
    );
    let prepended: Vec<&[u8]> = [junk.as_bytes()]
        .into_iter()
        .chain(lines.iter().copied())
        .collect();
    assert_eq!(
        identity.client_address(peer, prepended),
        answer,
        "entries on the left"
    );
    assert_eq!(
        identity.client_address(peer, [alone.as_bytes()]),
        answer,
        "named alone"
    );
});

/// Whether `line` ends outside a quoted-string (RFC 9110 §5.6.4, `\` escaping inside one).
fn quotes_balanced(line: &[u8]) -> bool {
    let mut quoted = false;
    let mut escaped = false;
    for &byte in line {
        if escaped {
            escaped = false;
        } else if byte == b'\\' && quoted {
            escaped = true;
        } else if byte == b'"' {
            quoted = !quoted;
        }
    }
    !quoted
}

/// An address as a `Forwarded` node (RFC 7239 §6: IPv6 in brackets).
fn node(address: IpAddr) -> String {
    match address {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}
