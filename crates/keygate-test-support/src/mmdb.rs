//! A MaxMind DB writer for tests: GeoLite2 files cannot be downloaded here, so tests write
//! small City-, Country- and ASN-shaped databases with the entries they need.
//!
//! The format (<https://maxmind.github.io/MaxMind-DB/>): a binary search tree over the address
//! bits (an IPv6 tree; IPv4 networks live under `::/96`), 16 zero bytes, a data section of typed
//! values, then a marker and the metadata map. Records are 24 bits wide.

use std::net::IpAddr;

/// A value of the MaxMind DB data section.
#[derive(Debug, Clone, PartialEq)]
pub enum MmdbValue {
    String(String),
    Double(f64),
    U16(u16),
    U32(u32),
    U64(u64),
    Bool(bool),
    Map(Vec<(String, MmdbValue)>),
    Array(Vec<MmdbValue>),
}

impl MmdbValue {
    /// A map from `(key, value)` pairs.
    pub fn map<const N: usize>(entries: [(&str, MmdbValue); N]) -> Self {
        Self::Map(
            entries
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
        )
    }

    /// A string value.
    pub fn text(s: &str) -> Self {
        Self::String(s.to_owned())
    }

    /// `{"en": name}`, the shape of every `names` field.
    pub fn names(english: &str) -> Self {
        Self::map([("en", Self::text(english))])
    }
}

/// A sample European location (the IP-intelligence tests' usual client).
pub const AMSTERDAM: CityRecord<'static> = CityRecord {
    city: "Amsterdam",
    continent_code: "EU",
    country: "Netherlands",
    country_code: "NL",
    is_eu: true,
    latitude: 52.3759,
    longitude: 4.8975,
    radius: 20,
    metro_code: None,
    postal_code: "1012",
    subdivision: "North Holland",
    timezone: "Europe/Amsterdam",
    registered_country: ("NL", "Netherlands"),
};

/// A sample location outside the EU, with a metro code.
pub const BOSTON: CityRecord<'static> = CityRecord {
    city: "Boston",
    continent_code: "NA",
    country: "United States",
    country_code: "US",
    is_eu: false,
    latitude: 42.3601,
    longitude: -71.0589,
    radius: 5,
    metro_code: Some(506),
    postal_code: "02108",
    subdivision: "Massachusetts",
    timezone: "America/New_York",
    registered_country: ("US", "United States"),
};

/// One location, written the way GeoIP2 City databases shape it.
#[derive(Debug, Clone, Default)]
pub struct CityRecord<'a> {
    pub city: &'a str,
    pub continent_code: &'a str,
    pub country: &'a str,
    pub country_code: &'a str,
    pub is_eu: bool,
    pub latitude: f64,
    pub longitude: f64,
    pub radius: u16,
    pub metro_code: Option<u16>,
    pub postal_code: &'a str,
    pub subdivision: &'a str,
    pub timezone: &'a str,
    /// The registered country's ISO code and English name.
    pub registered_country: (&'a str, &'a str),
}

impl CityRecord<'_> {
    /// The record as a GeoIP2 City entry.
    pub fn value(&self) -> MmdbValue {
        let country = |code: &str, name: &str, eu: bool| {
            let mut entries = vec![
                ("iso_code".to_owned(), MmdbValue::text(code)),
                ("names".to_owned(), MmdbValue::names(name)),
            ];
            if eu {
                entries.push(("is_in_european_union".to_owned(), MmdbValue::Bool(true)));
            }
            MmdbValue::Map(entries)
        };
        let mut location = vec![
            ("accuracy_radius".to_owned(), MmdbValue::U16(self.radius)),
            ("latitude".to_owned(), MmdbValue::Double(self.latitude)),
            ("longitude".to_owned(), MmdbValue::Double(self.longitude)),
            ("time_zone".to_owned(), MmdbValue::text(self.timezone)),
        ];
        if let Some(metro) = self.metro_code {
            location.push(("metro_code".to_owned(), MmdbValue::U16(metro)));
        }
        let (reg_code, reg_name) = self.registered_country;
        MmdbValue::map([
            (
                "city",
                MmdbValue::map([("names", MmdbValue::names(self.city))]),
            ),
            (
                "continent",
                MmdbValue::map([("code", MmdbValue::text(self.continent_code))]),
            ),
            (
                "country",
                country(self.country_code, self.country, self.is_eu),
            ),
            ("location", MmdbValue::Map(location)),
            (
                "postal",
                MmdbValue::map([("code", MmdbValue::text(self.postal_code))]),
            ),
            ("registered_country", country(reg_code, reg_name, false)),
            (
                "subdivisions",
                MmdbValue::Array(vec![MmdbValue::map([(
                    "names",
                    MmdbValue::names(self.subdivision),
                )])]),
            ),
        ])
    }
}

/// A GeoLite2 ASN entry.
pub fn asn_value(number: u32, organization: &str) -> MmdbValue {
    MmdbValue::map([
        ("autonomous_system_number", MmdbValue::U32(number)),
        (
            "autonomous_system_organization",
            MmdbValue::text(organization),
        ),
    ])
}

/// A child of a search-tree node.
#[derive(Debug, Clone, Copy)]
enum Child {
    Empty,
    Node(usize),
    Data(usize),
}

/// Builds one database in memory.
pub struct MmdbWriter {
    database_type: String,
    nodes: Vec<[Child; 2]>,
    data: Vec<Vec<u8>>,
}

impl MmdbWriter {
    /// An empty database whose metadata `database_type` is e.g. `GeoLite2-City` or `GeoLite2-ASN`
    /// (readers tell the kinds of database apart by it).
    pub fn new(database_type: &str) -> Self {
        Self {
            database_type: database_type.to_owned(),
            nodes: vec![[Child::Empty; 2]],
            data: Vec::new(),
        }
    }

    /// Adds `network` (`127.0.0.2/32`, `2001:db8::/32`) with `value`. Add a network before the
    /// networks inside it: the rest of it keeps its value, while adding it afterwards would
    /// replace them.
    ///
    /// Panics on a malformed network (test input).
    pub fn insert(&mut self, network: &str, value: &MmdbValue) -> &mut Self {
        let (addr, len) = network.split_once('/').expect("network as ADDRESS/LENGTH");
        let addr: IpAddr = addr.parse().expect("an IP address");
        let len: u32 = len.parse().expect("a prefix length");
        let (bits, len) = match addr {
            IpAddr::V4(v4) => (u128::from(u32::from(v4)), len + 96),
            IpAddr::V6(v6) => (u128::from(v6), len),
        };
        assert!((1..=128).contains(&len), "prefix length out of range");
        let mut buf = Vec::new();
        encode(value, &mut buf);
        self.data.push(buf);
        let data = Child::Data(self.data.len() - 1);
        let mut node = 0;
        for depth in 0..len {
            let bit = usize::from((bits >> (127 - depth)) & 1 == 1);
            if depth + 1 == len {
                self.nodes[node][bit] = data;
                break;
            }
            node = match self.nodes[node][bit] {
                Child::Node(next) => next,
                inherited => {
                    // Empty, or a shorter network whose value the new node's other side keeps.
                    let inherit = match inherited {
                        Child::Data(_) => inherited,
                        _ => Child::Empty,
                    };
                    self.nodes.push([inherit; 2]);
                    let next = self.nodes.len() - 1;
                    self.nodes[node][bit] = Child::Node(next);
                    next
                }
            };
        }
        self
    }

    /// The database file's bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let node_count = self.nodes.len();
        let mut offsets = Vec::with_capacity(self.data.len());
        let mut data = Vec::new();
        for value in &self.data {
            offsets.push(data.len());
            data.extend_from_slice(value);
        }
        let record = |child: Child| -> u32 {
            let value = match child {
                Child::Empty => node_count,
                Child::Node(n) => n,
                Child::Data(d) => node_count + 16 + offsets[d],
            };
            u32::try_from(value).expect("a test database fits 24-bit records")
        };
        let mut out = Vec::new();
        for [left, right] in &self.nodes {
            out.extend_from_slice(&record(*left).to_be_bytes()[1..]);
            out.extend_from_slice(&record(*right).to_be_bytes()[1..]);
        }
        out.extend_from_slice(&[0; 16]);
        out.extend_from_slice(&data);
        out.extend_from_slice(b"\xAB\xCD\xEFMaxMind.com");
        let metadata = MmdbValue::map([
            ("binary_format_major_version", MmdbValue::U16(2)),
            ("binary_format_minor_version", MmdbValue::U16(0)),
            ("build_epoch", MmdbValue::U64(1_765_000_000)),
            ("database_type", MmdbValue::text(&self.database_type)),
            (
                "description",
                MmdbValue::map([("en", MmdbValue::text("Keygate test database"))]),
            ),
            ("ip_version", MmdbValue::U16(6)),
            ("languages", MmdbValue::Array(vec![MmdbValue::text("en")])),
            (
                "node_count",
                MmdbValue::U32(u32::try_from(node_count).expect("node count")),
            ),
            ("record_size", MmdbValue::U16(24)),
        ]);
        encode(&metadata, &mut out);
        out
    }
}

/// Appends `value` in the data-section encoding.
fn encode(value: &MmdbValue, out: &mut Vec<u8>) {
    match value {
        MmdbValue::String(s) => {
            control(2, s.len(), out);
            out.extend_from_slice(s.as_bytes());
        }
        MmdbValue::Double(d) => {
            control(3, 8, out);
            out.extend_from_slice(&d.to_be_bytes());
        }
        MmdbValue::U16(n) => unsigned(5, u64::from(*n), out),
        MmdbValue::U32(n) => unsigned(6, u64::from(*n), out),
        MmdbValue::U64(n) => unsigned(9, *n, out),
        MmdbValue::Bool(b) => control(14, usize::from(*b), out),
        MmdbValue::Map(entries) => {
            control(7, entries.len(), out);
            for (key, value) in entries {
                encode(&MmdbValue::String(key.clone()), out);
                encode(value, out);
            }
        }
        MmdbValue::Array(items) => {
            control(11, items.len(), out);
            items.iter().for_each(|item| encode(item, out));
        }
    }
}

/// An unsigned integer in as few big-endian bytes as it needs.
fn unsigned(kind: u8, n: u64, out: &mut Vec<u8>) {
    let bytes = n.to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count();
    control(kind, 8 - skip, out);
    out.extend_from_slice(&bytes[skip..]);
}

/// The control byte (type and size), the extended-type byte, and the size's extra bytes.
fn control(kind: u8, size: usize, out: &mut Vec<u8>) {
    let (size_bits, extra): (u8, Vec<u8>) = match size {
        0..=28 => (size as u8, Vec::new()),
        29..=284 => (29, vec![(size - 29) as u8]),
        285..=65_820 => (30, ((size - 285) as u16).to_be_bytes().to_vec()),
        _ => (31, ((size - 65_821) as u32).to_be_bytes()[1..].to_vec()),
    };
    if kind <= 7 {
        out.push((kind << 5) | size_bits);
    } else {
        out.push(size_bits);
        out.push(kind - 7);
    }
    out.extend_from_slice(&extra);
}
