//! IP intelligence: `conn.geo.*` and the fields below `conn.client_ip` / `conn.server_ip`
//! (`geo.location.*`, `geo.registered_location.*`, `as.*`, `categories`, `is_on_blocklist`,
//! `is_tor_node`), answered by an [`IpIntel`] source the operator configures.
//!
//! An address is looked up on the first read of one of its fields and the facts are kept in the
//! connection's [`IpIntelCache`]: a policy that reads none costs nothing, one that reads several
//! looks the address up once.

use std::fmt;
use std::net::IpAddr;
use std::sync::OnceLock;

/// A source of facts about IP addresses (MaxMind databases, category lists).
pub trait IpIntel: Send + Sync {
    /// Which kinds of facts the source holds.
    fn provides(&self) -> Provides;

    /// Everything the source knows about `ip`; empty facts for an address it does not hold.
    fn lookup(&self, ip: IpAddr) -> IpFacts;

    /// Re-reads the source's files if they changed (on policy reload). On error the previous
    /// data stays in use.
    fn refresh(&self) -> Result<(), String> {
        Ok(())
    }
}

/// The kinds of facts an [`IpIntel`] source holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Provides {
    /// Locations (`conn.geo.*`, `*.geo.location.*`, `*.geo.registered_location.*`).
    pub geo: bool,
    /// Autonomous systems (`*.as.*`).
    pub asn: bool,
    /// Category labels (`*.categories`, `*.is_on_blocklist`, `*.is_tor_node`).
    pub categories: bool,
}

/// What a source knows about one address. Missing data is empty (`""`, `0`, `false`, `[]`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IpFacts {
    /// Where the address is located.
    pub location: Place,
    /// Where the address is registered.
    pub registered: Place,
    /// Autonomous system number (0 when unknown).
    pub as_number: i64,
    pub as_organization: String,
    /// Category labels with every parent label (`com`, `com.cloudflare`,
    /// `com.cloudflare.ipv4`), sorted, without duplicates.
    pub categories: Vec<String>,
}

/// A location, MaxMind style: English names, ISO codes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Place {
    pub city: String,
    /// Continent code (`EU`, `NA`, ...).
    pub continent: String,
    pub country: String,
    /// ISO 3166-1 alpha-2.
    pub country_code: String,
    pub is_eu: bool,
    pub latitude: Option<f64>,
    pub longitude: Option<f64>,
    pub metro_code: Option<u16>,
    pub postal_code: String,
    /// Accuracy radius in kilometres.
    pub radius: Option<u16>,
    /// The most general subdivision's English name (a state, a region).
    pub subdivision: String,
    /// IANA time zone.
    pub timezone: String,
}

impl IpFacts {
    /// Whether a category under `blocklist` applies.
    pub fn is_on_blocklist(&self) -> bool {
        self.categories.iter().any(|c| c == "blocklist")
    }

    /// Whether the address is a Tor node (`proxy.anonymous.tor`).
    pub fn is_tor_node(&self) -> bool {
        self.categories.iter().any(|c| c == TOR_CATEGORY)
    }
}

const TOR_CATEGORY: &str = "proxy.anonymous.tor";

/// The facts looked up for one connection's addresses, each on its first read (boxed: every
/// connection carries the cache, few fill it).
///
/// A clone starts empty: a copy of a connection may carry another client address (a trusted
/// `X-Forwarded-For`), so facts are never carried over.
#[derive(Default)]
pub struct IpIntelCache {
    client: OnceLock<Box<IpFacts>>,
    server: OnceLock<Box<IpFacts>>,
}

impl IpIntelCache {
    /// The facts for the client (`server` false) or server address, looked up on first use.
    pub(crate) fn get(&self, server: bool, lookup: impl FnOnce() -> IpFacts) -> &IpFacts {
        let slot = if server { &self.server } else { &self.client };
        slot.get_or_init(|| Box::new(lookup()))
    }
}

impl Clone for IpIntelCache {
    fn clone(&self) -> Self {
        Self::default()
    }
}

impl fmt::Debug for IpIntelCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IpIntelCache")
            .field("client", &self.client.get().is_some())
            .field("server", &self.server.get().is_some())
            .finish()
    }
}

/// The kind of fact a variable reads, and what provides it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Need {
    Geo,
    Asn,
    Categories,
}

impl Need {
    pub(crate) fn met_by(self, provides: Provides) -> bool {
        match self {
            Need::Geo => provides.geo,
            Need::Asn => provides.asn,
            Need::Categories => provides.categories,
        }
    }

    /// How an operator supplies this kind of fact.
    pub(crate) fn remedy(self) -> &'static str {
        match self {
            Need::Geo => "a GeoIP2/GeoLite2 City or Country database (--ip-intel-db FILE)",
            Need::Asn => "a GeoIP2/GeoLite2 ASN database (--ip-intel-db FILE)",
            Need::Categories => "an IP categories file (--ip-categories FILE)",
        }
    }
}

/// One IP-intelligence field below `conn.client_ip` / `conn.server_ip` (or `conn.geo`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Field<'f> {
    /// An intermediate name (`geo`, `geo.location`, `as`), answered as a node.
    Node(Need),
    /// A field of the location (`registered` false) or of the registered location.
    Place {
        registered: bool,
        name: &'f str,
    },
    AsNumber,
    AsOrganization,
    Categories,
    IsOnBlocklist,
    IsTorNode,
}

impl Field<'_> {
    pub(crate) fn need(self) -> Need {
        match self {
            Field::Node(need) => need,
            Field::Place { .. } => Need::Geo,
            Field::AsNumber | Field::AsOrganization => Need::Asn,
            Field::Categories | Field::IsOnBlocklist | Field::IsTorNode => Need::Categories,
        }
    }
}

const LOCATION_FIELDS: &[&str] = &[
    "city",
    "continent",
    "country",
    "country_code",
    "is_eu",
    "latitude",
    "longitude",
    "metro_code",
    "postal_code",
    "radius",
    "subdivision",
    "timezone",
];

const REGISTERED_FIELDS: &[&str] = &[
    "city",
    "continent",
    "country",
    "country_code",
    "is_eu",
    "metro_code",
    "subdivision",
    "timezone",
];

/// `conn.geo.*`: the client's location, a subset of `conn.client_ip.geo.location.*`.
const CONN_GEO_FIELDS: &[&str] = &[
    "city",
    "country",
    "country_code",
    "latitude",
    "longitude",
    "radius",
    "subdivision",
];

/// Which address and field a path below `conn` names: `geo.city` (the client),
/// `client_ip.as.number`, `server_ip.categories`, ... `None` for anything else.
pub(crate) fn parse(path: &str) -> Option<(bool, Field<'_>)> {
    if path == "geo" {
        return Some((false, Field::Node(Need::Geo)));
    }
    if let Some(name) = path.strip_prefix("geo.") {
        let known = CONN_GEO_FIELDS.contains(&name);
        return known.then_some((
            false,
            Field::Place {
                registered: false,
                name,
            },
        ));
    }
    let (server, rest) = if let Some(rest) = path.strip_prefix("client_ip.") {
        (false, rest)
    } else {
        (true, path.strip_prefix("server_ip.")?)
    };
    let field = match rest {
        "geo" | "geo.location" | "geo.registered_location" => Field::Node(Need::Geo),
        "as" => Field::Node(Need::Asn),
        "as.number" => Field::AsNumber,
        "as.organization" => Field::AsOrganization,
        "categories" => Field::Categories,
        "is_on_blocklist" => Field::IsOnBlocklist,
        "is_tor_node" => Field::IsTorNode,
        _ => {
            if let Some(name) = rest.strip_prefix("geo.location.") {
                LOCATION_FIELDS.contains(&name).then_some(Field::Place {
                    registered: false,
                    name,
                })?
            } else {
                let name = rest.strip_prefix("geo.registered_location.")?;
                REGISTERED_FIELDS.contains(&name).then_some(Field::Place {
                    registered: true,
                    name,
                })?
            }
        }
    };
    Some((server, field))
}

/// The kind of fact the full variable path `name` (e.g. `conn.geo.country_code`) reads, if it is
/// an IP-intelligence variable.
pub(crate) fn need_of(name: &str) -> Option<Need> {
    let path = name.strip_prefix("conn.")?;
    parse(path).map(|(_, field)| field.need())
}

/// A place field's value, as ngrok gives it: strings (numbers in decimal, `""` when unknown),
/// except `is_eu`.
pub(crate) enum PlaceValue<'p> {
    Text(&'p str),
    Number(Option<String>),
    Flag(bool),
}

pub(crate) fn place_value<'p>(place: &'p Place, name: &str) -> Option<PlaceValue<'p>> {
    let number = |n: Option<String>| Some(PlaceValue::Number(n));
    match name {
        "city" => Some(PlaceValue::Text(&place.city)),
        "continent" => Some(PlaceValue::Text(&place.continent)),
        "country" => Some(PlaceValue::Text(&place.country)),
        "country_code" => Some(PlaceValue::Text(&place.country_code)),
        "postal_code" => Some(PlaceValue::Text(&place.postal_code)),
        "subdivision" => Some(PlaceValue::Text(&place.subdivision)),
        "timezone" => Some(PlaceValue::Text(&place.timezone)),
        "is_eu" => Some(PlaceValue::Flag(place.is_eu)),
        "latitude" => number(place.latitude.map(|v| v.to_string())),
        "longitude" => number(place.longitude.map(|v| v.to_string())),
        "metro_code" => number(place.metro_code.map(|v| v.to_string())),
        "radius" => number(place.radius.map(|v| v.to_string())),
        _ => None,
    }
}

/// Facts for a scope without a source (`keygate policy check`, tests): everything empty.
pub(crate) fn no_facts() -> &'static IpFacts {
    static EMPTY: OnceLock<IpFacts> = OnceLock::new();
    EMPTY.get_or_init(IpFacts::default)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_their_address_and_field() {
        assert_eq!(
            parse("geo.country_code"),
            Some((
                false,
                Field::Place {
                    registered: false,
                    name: "country_code"
                }
            ))
        );
        assert_eq!(
            parse("server_ip.geo.registered_location.timezone"),
            Some((
                true,
                Field::Place {
                    registered: true,
                    name: "timezone"
                }
            ))
        );
        assert_eq!(parse("client_ip.as"), Some((false, Field::Node(Need::Asn))));
        assert_eq!(
            parse("client_ip.is_tor_node"),
            Some((false, Field::IsTorNode))
        );
        // `conn.geo` has no `timezone`; registered locations have no coordinates.
        assert_eq!(parse("geo.timezone"), None);
        assert_eq!(parse("client_ip.geo.registered_location.latitude"), None);
        assert_eq!(parse("client_ip"), None);
        assert_eq!(parse("client_port"), None);
        assert_eq!(need_of("conn.server_ip.categories"), Some(Need::Categories));
        assert_eq!(need_of("req.geo.city"), None);
    }

    #[test]
    fn blocklist_and_tor_read_the_categories() {
        let facts = IpFacts {
            categories: vec!["blocklist".into(), "blocklist.firehol".into()],
            ..IpFacts::default()
        };
        assert!(facts.is_on_blocklist());
        assert!(!facts.is_tor_node());
        let tor = IpFacts {
            categories: vec![
                "proxy".into(),
                "proxy.anonymous".into(),
                TOR_CATEGORY.into(),
            ],
            ..IpFacts::default()
        };
        assert!(tor.is_tor_node());
        assert!(!tor.is_on_blocklist());
    }

    #[test]
    fn a_clone_of_the_cache_starts_empty() {
        let cache = IpIntelCache::default();
        let facts = cache.get(false, || IpFacts {
            as_number: 7,
            ..IpFacts::default()
        });
        assert_eq!(facts.as_number, 7);
        // Filled once: a second lookup is not run.
        assert_eq!(cache.get(false, || unreachable!()).as_number, 7);
        assert_eq!(cache.clone().get(false, IpFacts::default).as_number, 0);
    }
}
