//! Category lists: text files of `CIDR CATEGORY` lines (blocklists, Tor exit lists, service
//! ranges), indexed by prefix length so that a lookup costs one hash probe per length in use.

use std::collections::HashMap;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::LoadError;

/// Every category of every network in the files read.
#[derive(Debug, Default)]
pub(crate) struct Categories {
    /// Each label with its parents (`com`, `com.cloudflare`, `com.cloudflare.ipv4`).
    labels: Vec<Vec<String>>,
    label_ids: HashMap<String, u32>,
    v4: Vec<(u8, HashMap<u32, Vec<u32>>)>,
    v6: Vec<(u8, HashMap<u128, Vec<u32>>)>,
}

impl Categories {
    /// Adds the lines of file `name`: `CIDR CATEGORY` (a bare address is a /32 or /128); blank
    /// lines and `#` comments are skipped.
    pub(crate) fn add_file(&mut self, name: &str, text: &str) -> Result<(), LoadError> {
        for (i, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or_default().trim();
            if line.is_empty() {
                continue;
            }
            let invalid = |why: String| LoadError::Categories {
                file: name.to_owned(),
                line: i + 1,
                why,
            };
            let mut parts = line.split_whitespace();
            let (Some(network), Some(label), None) = (parts.next(), parts.next(), parts.next())
            else {
                return Err(invalid("want `CIDR CATEGORY`".to_owned()));
            };
            let network = parse_network(network).map_err(invalid)?;
            check_label(label).map_err(invalid)?;
            self.add(network, label);
        }
        Ok(())
    }

    fn add(&mut self, network: IpNet, label: &str) {
        let next = u32::try_from(self.labels.len()).unwrap_or(u32::MAX);
        let id = *self.label_ids.entry(label.to_owned()).or_insert(next);
        if id == next {
            self.labels.push(with_parents(label));
        }
        match network {
            IpNet::V4(net) => {
                let ids = table(&mut self.v4, net.prefix_len()).entry(u32::from(net.network()));
                push_unique(ids.or_default(), id);
            }
            IpNet::V6(net) => {
                let ids = table(&mut self.v6, net.prefix_len()).entry(u128::from(net.network()));
                push_unique(ids.or_default(), id);
            }
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The labels (with parents) of every network holding `ip`, sorted, without duplicates.
    pub(crate) fn lookup(&self, ip: IpAddr) -> Vec<String> {
        let mut ids: Vec<u32> = Vec::new();
        match ip {
            IpAddr::V4(v4) => {
                let bits = u32::from(v4);
                for (len, networks) in &self.v4 {
                    let mask = u32::MAX.checked_shl(32 - u32::from(*len)).unwrap_or(0);
                    ids.extend(networks.get(&(bits & mask)).into_iter().flatten());
                }
            }
            IpAddr::V6(v6) => {
                let bits = u128::from(v6);
                for (len, networks) in &self.v6 {
                    let mask = u128::MAX.checked_shl(128 - u32::from(*len)).unwrap_or(0);
                    ids.extend(networks.get(&(bits & mask)).into_iter().flatten());
                }
            }
        }
        let mut out: Vec<String> = ids
            .into_iter()
            .filter_map(|id| self.labels.get(id as usize))
            .flatten()
            .cloned()
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }
}

/// The table for prefix length `len`, created on first use.
fn table<K>(tables: &mut Vec<(u8, HashMap<K, Vec<u32>>)>, len: u8) -> &mut HashMap<K, Vec<u32>> {
    let at = match tables.iter().position(|(l, _)| *l == len) {
        Some(at) => at,
        None => {
            tables.push((len, HashMap::new()));
            tables.len() - 1
        }
    };
    &mut tables[at].1
}

fn push_unique(ids: &mut Vec<u32>, id: u32) {
    if !ids.contains(&id) {
        ids.push(id);
    }
}

/// `1.2.3.0/24`, `2001:db8::/32`, or a bare address; host bits are cleared.
fn parse_network(text: &str) -> Result<IpNet, String> {
    let network = match text.parse::<IpNet>() {
        Ok(network) => network,
        Err(_) => text
            .parse::<IpAddr>()
            .map(IpNet::from)
            .map_err(|_| format!("`{text}` is not a CIDR network or an IP address"))?,
    };
    Ok(match network {
        // IPv4-mapped IPv6 (`::ffff:1.2.3.0/120`) is kept as written: clients are matched as
        // IPv4, so such an entry matches nothing; say so rather than guess.
        IpNet::V6(v6) if v6.network().to_ipv4_mapped().is_some() => {
            return Err(format!(
                "`{text}` is IPv4-mapped IPv6: write the IPv4 network"
            ))
        }
        other => other.trunc(),
    })
}

/// Labels are dot-separated words: `blocklist.firehol.level1`, `proxy.anonymous.tor`.
fn check_label(label: &str) -> Result<(), String> {
    let word = |w: &str| {
        !w.is_empty()
            && w.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    };
    if label.split('.').all(word) {
        Ok(())
    } else {
        Err(format!(
            "category `{label}`: want dot-separated words of letters, digits, `_` and `-`"
        ))
    }
}

/// `a.b.c` → `a`, `a.b`, `a.b.c`.
fn with_parents(label: &str) -> Vec<String> {
    label
        .match_indices('.')
        .map(|(at, _)| label[..at].to_owned())
        .chain([label.to_owned()])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn categories(text: &str) -> Categories {
        let mut c = Categories::default();
        c.add_file("cats.txt", text).unwrap();
        c
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn networks_of_every_length_match_with_parent_labels() {
        let c = categories(
            "# Tor exits\n\
             127.0.0.3 proxy.anonymous.tor\n\
             127.0.0.0/24   blocklist.firehol.level1  # a comment\n\
             \n\
             10.1.2.3/8 com.example\n\
             2001:db8::/32 com.cloudflare.ipv6\n",
        );
        assert_eq!(
            c.lookup(ip("127.0.0.3")),
            [
                "blocklist",
                "blocklist.firehol",
                "blocklist.firehol.level1",
                "proxy",
                "proxy.anonymous",
                "proxy.anonymous.tor"
            ]
        );
        assert_eq!(
            c.lookup(ip("127.0.0.9")),
            ["blocklist", "blocklist.firehol", "blocklist.firehol.level1"]
        );
        assert_eq!(c.lookup(ip("10.200.0.1")), ["com", "com.example"]);
        assert_eq!(
            c.lookup(ip("2001:db8::1")),
            ["com", "com.cloudflare", "com.cloudflare.ipv6"]
        );
        assert!(c.lookup(ip("127.0.1.1")).is_empty());
        assert!(c.lookup(ip("2001:db9::1")).is_empty());
    }

    #[test]
    fn a_label_given_twice_is_listed_once() {
        let c = categories("0.0.0.0/0 any\n127.0.0.0/8 any\n127.0.0.1 any.local\n");
        assert_eq!(c.lookup(ip("127.0.0.1")), ["any", "any.local"]);
    }

    #[test]
    fn bad_lines_name_the_file_and_line() {
        for (text, why) in [
            ("127.0.0.1\n", "want `CIDR CATEGORY`"),
            ("1.2.3.4 a b\n", "want `CIDR CATEGORY`"),
            ("\n300.1.1.1 tor\n", "not a CIDR network"),
            ("1.2.3.4 proxy..tor\n", "dot-separated words"),
            ("::ffff:1.2.3.4 tor\n", "IPv4-mapped"),
        ] {
            let err = Categories::default()
                .add_file("cats.txt", text)
                .unwrap_err()
                .to_string();
            assert!(err.starts_with("cats.txt:"), "{err}");
            assert!(err.contains(why), "{err}");
        }
        let err = Categories::default()
            .add_file("cats.txt", "\n# c\n300.1.1.1 tor\n")
            .unwrap_err();
        assert!(err.to_string().starts_with("cats.txt:3:"), "{err}");
    }
}
