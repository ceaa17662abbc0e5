//! The CIDR parser on any text: it never panics; a range it accepts prints in a canonical
//! form that parses back to the same range; it contains the address it was written with (and
//! that address IPv4-mapped, for IPv4 ranges) and the address with a host bit flipped (unless
//! that makes it IPv4-mapped: such a peer is an IPv4 client, outside every IPv6 range), but not
//! the address with its last prefix bit flipped; and a bare address is always accepted, as a
//! single host.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use libfuzzer_sys::fuzz_target;
use ringstream_limits::cidr::{Cidr, CidrSet, canonical};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = text.parse::<Cidr>();
    let address_text = text.split_once('/').map_or(text, |(address, _)| address);
    let address = address_text.parse::<IpAddr>().ok().map(canonical);
    let cidr = match parsed {
        Ok(cidr) => cidr,
        Err(error) => {
            assert!(!error.to_string().is_empty());
            if !text.contains('/') {
                assert!(
                    address.is_none(),
                    "a bare address is a host range: {text:?}"
                );
            }
            return;
        }
    };
    let address = address.expect("an accepted range starts with an address");
    let printed = cidr.to_string();
    assert_eq!(printed.parse::<Cidr>(), Ok(cidr), "{printed}");
    assert_eq!(
        printed.parse::<Cidr>().map(|c| c.to_string()),
        Ok(printed.clone())
    );
    let (network, prefix) = printed.split_once('/').expect("printed as ADDRESS/PREFIX");
    let network: IpAddr = network.parse().expect("the network is an address");
    assert_eq!(prefix.parse::<u8>(), Ok(cidr.prefix()));
    assert_eq!(Cidr::new(network, cidr.prefix()), Some(cidr));
    assert!(cidr.contains(network) && cidr.contains(address));
    assert!(CidrSet::new(vec![cidr]).contains(address));
    let width = match address {
        IpAddr::V4(v4) => {
            assert!(cidr.contains(IpAddr::V6(v4.to_ipv6_mapped())));
            32
        }
        IpAddr::V6(_) => 128,
    };
    assert!(cidr.prefix() <= width);
    if cidr.prefix() > 0 {
        let outside = flip_bit(address, cidr.prefix() - 1);
        assert!(!cidr.contains(outside), "{cidr} contains {outside}");
    }
    // An IPv6 neighbour that is IPv4-mapped is an IPv4 client, which no IPv6 range holds.
    let inside = (cidr.prefix() < width)
        .then(|| flip_bit(address, cidr.prefix()))
        .filter(|&inside| canonical(inside) == inside);
    if let Some(inside) = inside {
        assert!(cidr.contains(inside), "{cidr} misses {inside}");
    }
});

/// `address` with bit `bit` (0 = most significant) flipped.
fn flip_bit(address: IpAddr, bit: u8) -> IpAddr {
    match address {
        IpAddr::V4(v4) => IpAddr::V4(Ipv4Addr::from(u32::from(v4) ^ (1 << (31 - bit)))),
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) ^ (1 << (127 - bit)))),
    }
}
