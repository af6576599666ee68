//! A set of CIDR ranges that answers "which listed range holds this address?" with one binary
//! search per lookup, however many ranges it holds.
//!
//! Two CIDR blocks are either disjoint or nested, so the ranges flatten into sorted, disjoint
//! segments, each labelled with the most specific listed range covering it.

use std::net::IpAddr;

use ipnet::{IpNet, Ipv4Net};

/// CIDR ranges (IPv4 and IPv6) flattened for fast lookups. IPv4-mapped IPv6 addresses and ranges
/// inside `::ffff:0:0/96` are treated as IPv4.
#[derive(Debug, Clone, Default)]
pub struct CidrSet {
    nets: Vec<IpNet>,
    v4: Vec<Segment>,
    v6: Vec<Segment>,
}

/// Addresses `start..=end` belong to `nets[net]`.
#[derive(Debug, Clone, Copy)]
struct Segment {
    start: u128,
    end: u128,
    net: usize,
}

impl CidrSet {
    /// Builds the set. When the same range is listed twice, the first listing is reported.
    pub fn new(nets: impl IntoIterator<Item = IpNet>) -> Self {
        let nets: Vec<IpNet> = nets
            .into_iter()
            .map(|net| normalize_net(net).trunc())
            .collect();
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for (i, net) in nets.iter().enumerate() {
            let (start, end) = bounds(net);
            match net {
                IpNet::V4(_) => v4.push((start, end, i)),
                IpNet::V6(_) => v6.push((start, end, i)),
            }
        }
        Self {
            v4: flatten(v4),
            v6: flatten(v6),
            nets,
        }
    }

    /// The most specific listed range that contains `ip`.
    pub fn lookup(&self, ip: IpAddr) -> Option<&IpNet> {
        let (segments, key) = match ip.to_canonical() {
            IpAddr::V4(v4) => (&self.v4, u128::from(u32::from(v4))),
            IpAddr::V6(v6) => (&self.v6, u128::from(v6)),
        };
        let after = segments.partition_point(|segment| segment.start <= key);
        let segment = segments.get(after.checked_sub(1)?)?;
        (key <= segment.end).then(|| &self.nets[segment.net])
    }

    /// The number of ranges listed (duplicates included).
    pub fn len(&self) -> usize {
        self.nets.len()
    }

    /// True when no range is listed.
    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }
}

/// A range inside `::ffff:0:0/96` (`::ffff:10.0.0.0/104`) as the IPv4 range it maps.
pub fn normalize_net(net: IpNet) -> IpNet {
    if let IpNet::V6(v6) = net {
        if v6.prefix_len() >= 96 {
            if let Some(v4) = v6.network().to_ipv4_mapped() {
                if let Ok(v4net) = Ipv4Net::new(v4, v6.prefix_len() - 96) {
                    return IpNet::V4(v4net);
                }
            }
        }
    }
    net
}

fn bounds(net: &IpNet) -> (u128, u128) {
    match net {
        IpNet::V4(n) => (
            u128::from(u32::from(n.network())),
            u128::from(u32::from(n.broadcast())),
        ),
        IpNet::V6(n) => (u128::from(n.network()), u128::from(n.broadcast())),
    }
}

/// Turns nested-or-disjoint ranges into sorted disjoint segments labelled with the innermost range.
fn flatten(mut ranges: Vec<(u128, u128, usize)>) -> Vec<Segment> {
    // Outer ranges before the ranges they contain; the first listing of a duplicate first.
    ranges.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)).then(a.2.cmp(&b.2)));
    ranges.dedup_by(|later, earlier| later.0 == earlier.0 && later.1 == earlier.1);

    let mut segments = Vec::with_capacity(ranges.len() * 2);
    // Ranges that contain the current position, innermost last.
    let mut open: Vec<(u128, usize)> = Vec::new();
    // The first address not yet assigned to a segment (meaningful while `open` is not empty).
    let mut pos: u128 = 0;
    for (start, end, net) in ranges {
        while let Some(&(open_end, open_net)) = open.last() {
            if open_end >= start {
                break;
            }
            push(&mut segments, pos, open_end, open_net);
            // `open_end < start`, so this cannot overflow.
            pos = open_end + 1;
            open.pop();
        }
        if let Some(&(_, parent)) = open.last() {
            if pos < start {
                push(&mut segments, pos, start - 1, parent);
            }
        }
        open.push((end, net));
        pos = start;
    }
    while let Some((open_end, open_net)) = open.pop() {
        push(&mut segments, pos, open_end, open_net);
        match open_end.checked_add(1) {
            Some(next) => pos = next,
            // The range reached the top of the address space: its parents have nothing left.
            None => break,
        }
    }
    segments
}

fn push(segments: &mut Vec<Segment>, start: u128, end: u128, net: usize) {
    if start <= end {
        segments.push(Segment { start, end, net });
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    fn set(nets: &[&str]) -> CidrSet {
        CidrSet::new(nets.iter().map(|n| n.parse::<IpNet>().unwrap()))
    }

    fn hit(set: &CidrSet, ip: &str) -> Option<String> {
        set.lookup(ip.parse().unwrap()).map(|n| n.to_string())
    }

    #[test]
    fn ipv4_lookup_and_bounds() {
        let s = set(&["10.0.0.0/8", "192.168.1.0/24", "203.0.113.7/32"]);
        assert_eq!(hit(&s, "10.0.0.0").as_deref(), Some("10.0.0.0/8"));
        assert_eq!(hit(&s, "10.255.255.255").as_deref(), Some("10.0.0.0/8"));
        assert_eq!(hit(&s, "11.0.0.0"), None);
        assert_eq!(hit(&s, "9.255.255.255"), None);
        assert_eq!(hit(&s, "192.168.1.77").as_deref(), Some("192.168.1.0/24"));
        assert_eq!(hit(&s, "192.168.2.1"), None);
        assert_eq!(hit(&s, "203.0.113.7").as_deref(), Some("203.0.113.7/32"));
        assert_eq!(hit(&s, "203.0.113.8"), None);
        assert_eq!(hit(&s, "::1"), None);
    }

    #[test]
    fn nested_ranges_report_the_most_specific() {
        let s = set(&[
            "0.0.0.0/0",
            "10.0.0.0/8",
            "10.1.0.0/16",
            "10.1.2.0/24",
            "10.200.0.0/16",
        ]);
        assert_eq!(hit(&s, "10.1.2.3").as_deref(), Some("10.1.2.0/24"));
        assert_eq!(hit(&s, "10.1.3.3").as_deref(), Some("10.1.0.0/16"));
        assert_eq!(hit(&s, "10.2.0.0").as_deref(), Some("10.0.0.0/8"));
        assert_eq!(hit(&s, "10.200.9.9").as_deref(), Some("10.200.0.0/16"));
        assert_eq!(hit(&s, "10.255.0.0").as_deref(), Some("10.0.0.0/8"));
        assert_eq!(hit(&s, "8.8.8.8").as_deref(), Some("0.0.0.0/0"));
        assert_eq!(hit(&s, "255.255.255.255").as_deref(), Some("0.0.0.0/0"));
        assert_eq!(hit(&s, "0.0.0.0").as_deref(), Some("0.0.0.0/0"));
    }

    #[test]
    fn ipv6_lookup_including_the_whole_space() {
        let s = set(&[
            "::/0",
            "2001:db8::/32",
            "::1/128",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ff00/120",
        ]);
        assert_eq!(hit(&s, "::1").as_deref(), Some("::1/128"));
        assert_eq!(hit(&s, "::2").as_deref(), Some("::/0"));
        assert_eq!(hit(&s, "2001:db8:1::5").as_deref(), Some("2001:db8::/32"));
        assert_eq!(hit(&s, "2001:db9::").as_deref(), Some("::/0"));
        assert_eq!(
            hit(&s, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff").as_deref(),
            Some("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ff00/120")
        );
        assert_eq!(
            hit(&s, "127.0.0.1"),
            None,
            "IPv4 clients need an IPv4 range"
        );
    }

    #[test]
    fn mapped_addresses_and_ranges_are_ipv4() {
        let s = set(&["127.0.0.2/32", "::ffff:10.0.0.0/104"]);
        assert_eq!(hit(&s, "::ffff:127.0.0.2").as_deref(), Some("127.0.0.2/32"));
        assert_eq!(hit(&s, "127.0.0.3"), None);
        assert_eq!(hit(&s, "10.9.8.7").as_deref(), Some("10.0.0.0/8"));
        assert_eq!(hit(&s, "::ffff:10.9.8.7").as_deref(), Some("10.0.0.0/8"));
    }

    #[test]
    fn duplicates_and_host_bits() {
        let s = set(&["10.0.0.5/8", "10.0.0.0/8"]);
        assert_eq!(s.len(), 2);
        assert_eq!(hit(&s, "10.3.3.3").as_deref(), Some("10.0.0.0/8"));
        assert!(set(&[]).lookup("1.2.3.4".parse().unwrap()).is_none());
    }

    #[test]
    fn agrees_with_a_linear_scan() {
        // Deterministic pseudo-random ranges of mixed sizes, many nested.
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let nets: Vec<IpNet> = (0..400)
            .map(|_| {
                let addr = Ipv4Addr::from((next() as u32) & 0x0fff_ffff);
                let len = 4 + (next() % 29) as u8;
                IpNet::V4(Ipv4Net::new(addr, len).unwrap().trunc())
            })
            .collect();
        let s = CidrSet::new(nets.clone());
        for _ in 0..20_000 {
            let ip = IpAddr::V4(Ipv4Addr::from((next() as u32) & 0x0fff_ffff));
            let expected = nets
                .iter()
                .filter(|n| n.contains(&ip))
                .max_by_key(|n| n.prefix_len());
            assert_eq!(
                s.lookup(ip).map(|n| n.prefix_len()),
                expected.map(|n| n.prefix_len()),
                "{ip}"
            );
            if let (Some(got), Some(want)) = (s.lookup(ip), expected) {
                assert_eq!(got, want);
            }
        }
    }
}
