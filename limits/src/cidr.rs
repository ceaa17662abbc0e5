//! Address ranges (`10.0.0.0/8`, `2001:db8::/32`) for allow and deny lists, trusted proxies
//! and exemptions.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// One address range. An IPv4-mapped IPv6 peer (`::ffff:10.1.2.3`) matches IPv4 ranges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    /// The network address, host bits cleared.
    network: IpAddr,
    prefix: u8,
}

/// Why a range could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CidrError {
    /// The address part is not an IPv4 or IPv6 address.
    Address(String),
    /// The prefix length is not a number within the address family's width.
    Prefix(String),
}

impl fmt::Display for CidrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Address(a) => write!(f, "{a:?} is not an IP address"),
            Self::Prefix(p) => write!(
                f,
                "{p:?} is not a valid prefix length (0-32 for IPv4, 0-128 for IPv6)"
            ),
        }
    }
}

impl std::error::Error for CidrError {}

impl Cidr {
    /// The range of `prefix` leading bits of `address`; `None` if `prefix` is too long.
    pub fn new(address: IpAddr, prefix: u8) -> Option<Self> {
        let width = width(&address);
        (prefix <= width).then(|| Self {
            network: mask(address, prefix),
            prefix,
        })
    }

    /// Whether `address` lies in the range.
    pub fn contains(&self, address: IpAddr) -> bool {
        let address = canonical(address);
        match (self.network, address) {
            (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_)) => {
                mask(address, self.prefix) == self.network
            }
            _ => false,
        }
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }
}

impl FromStr for Cidr {
    type Err = CidrError;

    /// `ADDRESS/PREFIX`, or a bare address for a single host.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let address: IpAddr = address
            .parse()
            .map_err(|_| CidrError::Address(address.to_owned()))?;
        let address = canonical(address);
        let prefix = match prefix {
            Some(p) => p
                .parse::<u8>()
                .map_err(|_| CidrError::Prefix(p.to_owned()))?,
            None => width(&address),
        };
        Self::new(address, prefix).ok_or_else(|| CidrError::Prefix(prefix.to_string()))
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// A list of ranges; an address matches if any range contains it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CidrSet {
    ranges: Vec<Cidr>,
}

impl CidrSet {
    /// The set of `ranges`.
    pub fn new(ranges: Vec<Cidr>) -> Self {
        Self { ranges }
    }

    /// Whether any range contains `address`.
    pub fn contains(&self, address: IpAddr) -> bool {
        self.ranges.iter().any(|r| r.contains(address))
    }

    /// Whether the set has no range.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }
}

/// IPv4-mapped IPv6 addresses as IPv4, everything else unchanged.
pub fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

fn width(address: &IpAddr) -> u8 {
    match address {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

/// `address` with all but its first `prefix` bits cleared.
pub(crate) fn mask(address: IpAddr, prefix: u8) -> IpAddr {
    match address {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            let kept = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4((bits & kept).into())
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let kept = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6((bits & kept).into())
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ranges_contain_their_addresses_only() {
        let private: Cidr = "10.0.0.0/8".parse().unwrap();
        assert!(private.contains(ip("10.255.1.2")));
        assert!(!private.contains(ip("11.0.0.1")));
        assert!(
            private.contains(ip("::ffff:10.1.2.3")),
            "IPv4-mapped peers match"
        );
        let doc: Cidr = "2001:db8::/32".parse().unwrap();
        assert!(doc.contains(ip("2001:db8:ffff::1")));
        assert!(!doc.contains(ip("2001:db9::1")));
        assert!(!doc.contains(ip("10.0.0.1")));
        let host: Cidr = "192.0.2.7".parse().unwrap();
        assert_eq!(host.prefix(), 32);
        assert!(host.contains(ip("192.0.2.7")) && !host.contains(ip("192.0.2.8")));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("203.0.113.9")));
    }

    #[test]
    fn host_bits_are_cleared_and_display_round_trips() {
        let cidr: Cidr = "10.1.2.3/16".parse().unwrap();
        assert_eq!(cidr.to_string(), "10.1.0.0/16");
        assert_eq!(cidr.to_string().parse::<Cidr>().unwrap(), cidr);
    }

    #[test]
    fn bad_ranges_say_what_is_wrong() {
        assert_eq!(
            "10.0.0.0/33".parse::<Cidr>(),
            Err(CidrError::Prefix("33".into()))
        );
        assert_eq!(
            "10.0.0/8".parse::<Cidr>(),
            Err(CidrError::Address("10.0.0".into()))
        );
        assert_eq!("::/x".parse::<Cidr>(), Err(CidrError::Prefix("x".into())));
    }

    #[test]
    fn sets_match_any_range() {
        let set = CidrSet::new(vec!["127.0.0.0/8".parse().unwrap(), "::1".parse().unwrap()]);
        assert!(set.contains(ip("127.0.0.1")) && set.contains(ip("::1")));
        assert!(!set.contains(ip("192.0.2.1")));
        assert!(CidrSet::default().is_empty());
    }
}
