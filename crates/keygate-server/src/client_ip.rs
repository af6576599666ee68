//! Which address is the client: the TCP peer, or `X-Forwarded-For` behind trusted proxies.

use std::net::IpAddr;

use http::{HeaderMap, HeaderName};
use ipnet::IpNet;

/// The header proxies append client addresses to.
pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// The client address for a request from `peer` (`--trust-forwarded-for`): only when the
/// peer is trusted, the right-most `X-Forwarded-For` address that is not itself trusted.
pub fn resolve(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if trusted.is_empty() || !is_trusted(&peer) {
        return peer;
    }
    let hops = headers
        .get_all(X_FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|hop| {
            hop.trim()
                .parse::<IpAddr>()
                .ok()
                .map(|ip| ip.to_canonical())
        })
        .collect::<Vec<_>>();
    hops.iter()
        .rev()
        .copied()
        .find(|ip| !is_trusted(ip))
        .unwrap_or(peer)
}

/// Appends the address as text (`127.0.0.1`, `::1`): IPv4 without the formatting machinery.
pub fn push_text(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            let mut digits = itoa::Buffer::new();
            for (index, octet) in v4.octets().into_iter().enumerate() {
                if index > 0 {
                    out.push(b'.');
                }
                out.extend_from_slice(digits.format(octet).as_bytes());
            }
        }
        IpAddr::V6(v6) => {
            use std::io::Write;
            let _ = write!(out, "{v6}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(xff: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", xff.parse().unwrap());
        h
    }

    #[test]
    fn mapped_forwarded_addresses_become_ipv4() {
        let trusted: Vec<IpNet> = vec!["127.0.0.0/8".parse().unwrap()];
        let peer: IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(
            resolve(peer, &headers("::ffff:203.0.113.9"), &trusted),
            "203.0.113.9".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn forwarded_for_only_from_trusted_peers() {
        let trusted: Vec<IpNet> = vec!["127.0.0.0/8".parse().unwrap()];
        let peer: IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(
            resolve(peer, &headers("203.0.113.9, 127.0.0.5"), &trusted),
            "203.0.113.9".parse::<IpAddr>().unwrap()
        );
        assert_eq!(resolve(peer, &headers("203.0.113.9"), &[]), peer);
        let untrusted: IpAddr = "10.1.1.1".parse().unwrap();
        assert_eq!(
            resolve(untrusted, &headers("203.0.113.9"), &trusted),
            untrusted
        );
        assert_eq!(resolve(peer, &headers("garbage"), &trusted), peer);
    }
}
