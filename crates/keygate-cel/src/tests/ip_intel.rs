//! IP-intelligence variables: values from the source, one lookup per connection, empty values
//! for an unknown address, and load errors when the source lacks a kind of fact.

use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::{string, Fixture};
use crate::{Compiler, IpFacts, IpIntel, Place, Provides, Value};

/// Knows 127.0.0.2 (the fixture's client): Dutch, AS 64500, a Tor exit on a blocklist.
struct Fake {
    provides: Provides,
    lookups: AtomicUsize,
}

impl IpIntel for Fake {
    fn provides(&self) -> Provides {
        self.provides
    }

    fn lookup(&self, ip: IpAddr) -> IpFacts {
        self.lookups.fetch_add(1, Ordering::Relaxed);
        if ip.to_string() != "127.0.0.2" {
            return IpFacts::default();
        }
        IpFacts {
            location: Place {
                city: "Amsterdam".into(),
                continent: "EU".into(),
                country: "Netherlands".into(),
                country_code: "NL".into(),
                is_eu: true,
                latitude: Some(52.37),
                longitude: Some(4.89),
                radius: Some(20),
                timezone: "Europe/Amsterdam".into(),
                ..Place::default()
            },
            registered: Place {
                country_code: "DE".into(),
                ..Place::default()
            },
            as_number: 64500,
            as_organization: "Example Transit".into(),
            categories: ["blocklist", "blocklist.firehol", "proxy", "proxy.anonymous"]
                .into_iter()
                .chain(["proxy.anonymous.tor"])
                .map(String::from)
                .collect(),
        }
    }
}

fn fake(provides: Provides) -> Arc<Fake> {
    Arc::new(Fake {
        provides,
        lookups: AtomicUsize::new(0),
    })
}

const ALL: Provides = Provides {
    geo: true,
    asn: true,
    categories: true,
};

fn fixture(source: Arc<Fake>) -> Fixture {
    let mut fx = Fixture::new(&[]);
    fx.compiler = Compiler::new().with_ip_intel(source);
    fx
}

#[test]
fn fields_read_the_client_facts() {
    let fx = fixture(fake(ALL));
    assert_eq!(fx.value("conn.geo.country_code"), string("NL"));
    assert_eq!(fx.value("conn.geo.latitude"), string("52.37"));
    assert_eq!(fx.value("conn.geo.radius"), string("20"));
    assert_eq!(fx.value("conn.geo.subdivision"), string(""));
    assert_eq!(
        fx.value("conn.client_ip.geo.location.timezone"),
        string("Europe/Amsterdam")
    );
    assert_eq!(
        fx.value("conn.client_ip.geo.location.metro_code"),
        string("")
    );
    assert!(fx.truth("conn.client_ip.geo.location.is_eu"));
    assert_eq!(
        fx.value("conn.client_ip.geo.registered_location.country_code"),
        string("DE")
    );
    assert_eq!(fx.value("conn.client_ip.as.number"), Value::Int(64500));
    assert!(fx.truth("conn.client_ip.as.organization.startsWith('Example')"));
    assert!(fx.truth("'proxy.anonymous.tor' in conn.client_ip.categories"));
    assert!(fx.truth("'blocklist' in conn.client_ip.categories"));
    assert!(fx.truth("conn.client_ip.is_tor_node && conn.client_ip.is_on_blocklist"));
    assert!(fx.truth("conn.geo.country_code in ['NL', 'BE']"));
}

#[test]
fn client_ip_is_still_a_string() {
    let fx = fixture(fake(ALL));
    assert!(fx.truth("conn.client_ip == '127.0.0.2'"));
    assert!(fx.truth("conn.client_ip.startsWith('127.') && conn.geo.country_code == 'NL'"));
    assert!(fx.truth("inCidrRange(conn.client_ip, '127.0.0.0/8')"));
}

#[test]
fn nodes_answer_field_selections_and_has() {
    let fx = fixture(fake(ALL));
    assert_eq!(fx.value("conn.geo['country']"), string("Netherlands"));
    assert_eq!(
        fx.value("conn.client_ip.geo.location['city']"),
        string("Amsterdam")
    );
    assert!(fx.truth("has(conn.client_ip.as.number)"));
}

#[test]
fn an_address_the_source_does_not_hold_reads_as_empty() {
    let fx = fixture(fake(ALL));
    // The server address (127.0.0.1) is not in the fake source.
    assert_eq!(fx.value("conn.server_ip.geo.location.country"), string(""));
    assert_eq!(fx.value("conn.server_ip.as.number"), Value::Int(0));
    assert!(!fx.truth("conn.server_ip.is_tor_node"));
    assert_eq!(fx.value("size(conn.server_ip.categories)"), Value::Int(0));
}

#[test]
fn each_address_is_looked_up_once_per_connection() {
    let source = fake(ALL);
    let fx = fixture(source.clone());
    for _ in 0..3 {
        assert!(fx.truth("conn.geo.country_code == 'NL' && conn.client_ip.as.number == 64500"));
    }
    assert_eq!(source.lookups.load(Ordering::Relaxed), 1);
    fx.value("conn.server_ip.geo.location.city");
    assert_eq!(source.lookups.load(Ordering::Relaxed), 2);
}

#[test]
fn expressions_without_intel_fields_never_look_up() {
    let source = fake(ALL);
    let fx = fixture(source.clone());
    assert!(fx.truth("conn.client_ip == '127.0.0.2' && req.method == 'POST'"));
    assert_eq!(fx.value("conn.client_port"), Value::Int(50123));
    assert_eq!(source.lookups.load(Ordering::Relaxed), 0);
}

#[test]
fn a_kind_of_fact_the_source_lacks_is_a_load_error() {
    let geo_only = Compiler::new().with_ip_intel(fake(Provides {
        geo: true,
        ..Provides::default()
    }));
    assert!(geo_only.condition("conn.geo.country_code == 'NL'").is_ok());
    let source = "conn.geo.country_code == 'NL' && conn.client_ip.as.number == 64500";
    let err = geo_only.condition(source).unwrap_err();
    assert!(
        err.message.contains("conn.client_ip.as.number")
            && err.message.contains("ASN database (--ip-intel-db FILE)"),
        "{}",
        err.message
    );
    assert_eq!(err.offset, source.find("conn.client_ip.as"));
    let err = geo_only
        .template("tor: ${conn.server_ip.is_tor_node}")
        .unwrap_err();
    assert!(
        err.message.contains("--ip-categories FILE"),
        "{}",
        err.message
    );
    let none = Compiler::new().with_ip_intel(fake(Provides::default()));
    let err = none
        .condition("conn.geo['country_code'] == 'NL'")
        .unwrap_err();
    assert!(err
        .message
        .starts_with("conn.geo needs a GeoIP2/GeoLite2 City or Country"));
}

#[test]
fn without_a_source_the_fields_are_empty_and_recorded() {
    let fx = Fixture::new(&[]);
    assert_eq!(fx.value("conn.geo.country_code"), string(""));
    assert!(!fx.truth("conn.client_ip.is_tor_node"));
    assert_eq!(fx.value("conn.client_ip.as.number"), Value::Int(0));
    fx.compiler
        .template("${conn.server_ip.as.organization}")
        .unwrap();
    let names: Vec<String> = (fx.compiler.ip_intel_without_source().into_iter())
        .map(|(name, remedy)| format!("{name}: {remedy}"))
        .collect();
    assert_eq!(
        names,
        [
            "conn.client_ip.as.number: a GeoIP2/GeoLite2 ASN database (--ip-intel-db FILE)",
            "conn.client_ip.is_tor_node: an IP categories file (--ip-categories FILE)",
            "conn.geo.country_code: a GeoIP2/GeoLite2 City or Country database (--ip-intel-db FILE)",
            "conn.server_ip.as.organization: a GeoIP2/GeoLite2 ASN database (--ip-intel-db FILE)",
        ]
    );
}

#[test]
fn types_are_checked_at_load() {
    let compiler = Compiler::new();
    let err = compiler.condition("conn.geo.country_code").unwrap_err();
    assert!(err.message.contains("bool"), "{}", err.message);
    assert!(compiler.condition("conn.client_ip.is_tor_node").is_ok());
    let err = compiler
        .condition("conn.client_ip.as.number < '5'")
        .unwrap_err();
    assert!(
        err.message.contains("cannot order int < string"),
        "{}",
        err.message
    );
    let err = compiler.condition("conn.geo.timezone == ''").unwrap_err();
    assert!(
        err.message.contains("unknown field 'timezone'"),
        "{}",
        err.message
    );
}

/// The expressions ngrok's documentation shows for these variables, with their result for the
/// fake client (Amsterdam, AS 64500, a Tor exit on a blocklist).
#[test]
fn ngrok_documented_expressions_evaluate() {
    let fx = fixture(fake(ALL));
    for (source, want) in [
        ("conn.geo.country_code != 'US'", true),
        ("double(conn.geo.latitude) >= 45.0", true),
        ("double(conn.geo.longitude) <= -93.0", false),
        ("conn.geo.radius <= '20'", true),
        ("('proxy.anonymous.tor' in conn.client_ip.categories)", true),
        ("'com.github' in conn.client_ip.categories", false),
        ("conn.client_ip.as.number == 12345", false),
        ("conn.client_ip.as.organization == 'Example Transit'", true),
        ("conn.client_ip.is_on_blocklist == true", true),
        ("conn.client_ip.is_tor_node", true),
        ("conn.client_ip.geo.location.country_code == 'US'", false),
        (
            "conn.client_ip.geo.registered_location.country_code == 'DE'",
            true,
        ),
        ("conn.client_ip in ['::1', '127.0.0.2']", true),
    ] {
        assert_eq!(fx.truth(source), want, "{source}");
    }
}
