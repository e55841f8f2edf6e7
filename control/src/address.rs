//! Address ranges an API key is limited to: single IPs and CIDR ranges, IPv4 and IPv6.

use std::net::IpAddr;
use std::str::FromStr;

/// Most ranges one key may list.
pub const MAX_RANGES: usize = 50;

/// An IP network: an address and how many leading bits of it must match.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AddressRange {
    network: IpAddr,
    prefix: u8,
}

impl AddressRange {
    /// Whether `address` is in the range. An IPv4 address written as IPv6 (`::ffff:a.b.c.d`,
    /// as a dual-stack listener reports it) counts as that IPv4 address.
    pub fn contains(&self, address: IpAddr) -> bool {
        let address = match address {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
            v4 => v4,
        };
        match (self.network, address) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => same_prefix(&net.octets(), &ip.octets(), self.prefix),
            (IpAddr::V6(net), IpAddr::V6(ip)) => same_prefix(&net.octets(), &ip.octets(), self.prefix),
            _ => false,
        }
    }
}

fn same_prefix(a: &[u8], b: &[u8], prefix: u8) -> bool {
    let (whole, rest) = (usize::from(prefix / 8), prefix % 8);
    if a[..whole] != b[..whole] {
        return false;
    }
    rest == 0 || (a[whole] ^ b[whole]) >> (8 - rest) == 0
}

impl FromStr for AddressRange {
    type Err = String;

    /// `203.0.113.7`, `10.0.0.0/8`, `2001:db8::/32`; host bits set below the prefix are
    /// refused (`10.0.0.1/8` is probably a typo for a single address or a network).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (address, prefix) = match text.trim().split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text.trim(), None),
        };
        let network: IpAddr = address.parse().map_err(|_| format!("`{text}` is not an IP address or CIDR range"))?;
        let bits = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => bits,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= bits)
                .ok_or_else(|| format!("`{text}`: the prefix must be 0 to {bits}"))?,
        };
        let host_bits_clear = match network {
            IpAddr::V4(v4) => prefix == 32 || u32::from(v4) & (u32::MAX >> prefix) == 0,
            IpAddr::V6(v6) => prefix == 128 || u128::from(v6) & (u128::MAX >> prefix) == 0,
        };
        if !host_bits_clear {
            return Err(format!("`{text}` has host bits set below /{prefix}"));
        }
        Ok(Self { network, prefix })
    }
}

impl std::fmt::Display for AddressRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let bits = if self.network.is_ipv4() { 32 } else { 128 };
        if self.prefix == bits { write!(f, "{}", self.network) } else { write!(f, "{}/{}", self.network, self.prefix) }
    }
}

/// `ranges` checked and written canonically (at most [`MAX_RANGES`]).
pub fn normalize(ranges: &[String]) -> Result<Vec<String>, String> {
    if ranges.len() > MAX_RANGES {
        return Err(format!("at most {MAX_RANGES} addresses or ranges"));
    }
    ranges.iter().map(|r| r.parse::<AddressRange>().map(|r| r.to_string())).collect()
}

/// Whether `address` is allowed by `ranges` (stored, canonical); an empty list allows any.
/// A stored entry that no longer parses allows nothing (fail closed).
pub fn allowed(ranges: &[String], address: IpAddr) -> bool {
    ranges.is_empty() || ranges.iter().any(|r| r.parse::<AddressRange>().is_ok_and(|r| r.contains(address)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// Against a brute-force oracle: compare the first `prefix` bits one by one.
    #[test]
    fn ranges_match_exactly_their_prefix() {
        let oracle = |net: &[u8], ip: &[u8], prefix: usize| {
            (0..prefix).all(|bit| (net[bit / 8] >> (7 - bit % 8)) & 1 == (ip[bit / 8] >> (7 - bit % 8)) & 1)
        };
        let base = [10u8, 20, 30, 40];
        for prefix in 0..=32u8 {
            let mask = if prefix == 0 { 0 } else { u32::MAX << (32 - prefix) };
            let net = std::net::Ipv4Addr::from(u32::from_be_bytes(base) & mask);
            let range: AddressRange = format!("{net}/{prefix}").parse().unwrap();
            for flip in 0..32 {
                let probe = std::net::Ipv4Addr::from(u32::from(net) ^ (1 << flip));
                assert_eq!(
                    range.contains(IpAddr::V4(probe)),
                    oracle(&net.octets(), &probe.octets(), usize::from(prefix)),
                    "{range} vs {probe}"
                );
            }
        }
    }

    #[test]
    fn parses_single_addresses_and_ranges_and_refuses_the_rest() {
        assert_eq!(
            normalize(&["203.0.113.7".into(), " 10.0.0.0/8".into(), "2001:DB8::/32".into()]).unwrap(),
            ["203.0.113.7", "10.0.0.0/8", "2001:db8::/32"]
        );
        for bad in ["", "10.0.0.1/8", "10.0.0.0/33", "host.example", "10.0.0.0/x", "::1/129"] {
            assert!(bad.parse::<AddressRange>().is_err(), "{bad}");
        }
        assert!(normalize(&vec!["10.0.0.1".to_owned(); MAX_RANGES + 1]).is_err());
    }

    #[test]
    fn allowed_by_any_listed_range_and_mapped_ipv4_counts() {
        let list = normalize(&["10.0.0.0/8".into(), "2001:db8::1".into()]).unwrap();
        assert!(allowed(&list, ip("10.9.8.7")));
        assert!(allowed(&list, ip("::ffff:10.1.2.3")), "IPv4 seen through a dual-stack socket");
        assert!(allowed(&list, ip("2001:db8::1")));
        assert!(!allowed(&list, ip("11.0.0.1")));
        assert!(!allowed(&list, ip("2001:db8::2")));
        assert!(allowed(&[], ip("192.0.2.1")), "no list: any address");
        assert!(!allowed(&["garbage".to_owned()], ip("192.0.2.1")), "an unreadable entry allows nothing");
    }
}
