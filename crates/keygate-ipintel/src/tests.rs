//! The files read through the real MaxMind DB reader, written by keygate-test-support's writer.

use std::net::IpAddr;
use std::path::PathBuf;

use keygate_cel::{IpIntel, Place, Provides};
use keygate_test_support::mmdb::{asn_value, CityRecord, MmdbWriter, AMSTERDAM};

use crate::IpFiles;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A fresh directory for one test's files.
fn dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("keygate-ipintel-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Registered elsewhere than located, so the two facts can be told apart.
pub(crate) fn amsterdam() -> CityRecord<'static> {
    CityRecord {
        registered_country: ("DE", "Germany"),
        ..AMSTERDAM
    }
}

fn city_db() -> Vec<u8> {
    let boston = CityRecord {
        city: "Boston",
        continent_code: "NA",
        country: "United States",
        country_code: "US",
        is_eu: false,
        metro_code: Some(506),
        timezone: "America/New_York",
        registered_country: ("US", "United States"),
        ..amsterdam()
    };
    MmdbWriter::new("GeoLite2-City")
        .insert("127.0.0.0/24", &boston.value())
        .insert("127.0.0.2/32", &amsterdam().value())
        .insert("2001:db8::/32", &amsterdam().value())
        .to_bytes()
}

fn asn_db() -> Vec<u8> {
    MmdbWriter::new("GeoLite2-ASN")
        .insert("127.0.0.2/31", &asn_value(64500, "Example Transit"))
        .to_bytes()
}

#[test]
fn city_asn_and_categories_answer_together() {
    let dir = dir("together");
    std::fs::write(dir.join("city.mmdb"), city_db()).unwrap();
    std::fs::write(dir.join("asn.mmdb"), asn_db()).unwrap();
    std::fs::write(dir.join("tor.txt"), "127.0.0.3 proxy.anonymous.tor\n").unwrap();
    let files = IpFiles::open(
        &[dir.join("city.mmdb"), dir.join("asn.mmdb")],
        &[dir.join("tor.txt")],
    )
    .unwrap();
    assert_eq!(
        files.provides(),
        Provides {
            geo: true,
            asn: true,
            categories: true
        }
    );
    let facts = files.lookup(ip("127.0.0.2"));
    assert_eq!(
        facts.location,
        Place {
            city: "Amsterdam".into(),
            continent: "EU".into(),
            country: "Netherlands".into(),
            country_code: "NL".into(),
            is_eu: true,
            latitude: Some(52.3759),
            longitude: Some(4.8975),
            metro_code: None,
            postal_code: "1012".into(),
            radius: Some(20),
            subdivision: "North Holland".into(),
            timezone: "Europe/Amsterdam".into(),
        }
    );
    assert_eq!(facts.registered.country_code, "DE");
    assert_eq!(facts.registered.country, "Germany");
    assert_eq!(facts.registered.city, "");
    assert_eq!(
        (facts.as_number, facts.as_organization.as_str()),
        (64500, "Example Transit")
    );
    assert!(facts.categories.is_empty());

    let boston = files.lookup(ip("127.0.0.3"));
    assert_eq!(boston.location.country_code, "US");
    assert_eq!(boston.location.metro_code, Some(506));
    assert!(!boston.location.is_eu);
    assert_eq!(boston.as_number, 64500);
    assert!(boston.is_tor_node());

    let v6 = files.lookup(ip("2001:db8::7"));
    assert_eq!(v6.location.city, "Amsterdam");

    // Not in any file: empty facts, as for any unknown address.
    let unknown = files.lookup(ip("10.0.0.1"));
    assert_eq!(unknown, keygate_cel::IpFacts::default());
}

#[test]
fn a_database_of_another_kind_is_refused() {
    let dir = dir("kind");
    let path = dir.join("anon.mmdb");
    std::fs::write(&path, MmdbWriter::new("GeoIP2-Anonymous-IP").to_bytes()).unwrap();
    let err = IpFiles::open(&[path], &[]).err().unwrap().to_string();
    assert!(
        err.contains("`GeoIP2-Anonymous-IP` is not a City, Country or ASN"),
        "{err}"
    );
    let path = dir.join("junk.mmdb");
    std::fs::write(&path, b"not a database").unwrap();
    let err = IpFiles::open(&[path], &[]).err().unwrap().to_string();
    assert!(
        err.contains("junk.mmdb: not a usable MaxMind DB file"),
        "{err}"
    );
    let err = IpFiles::open(&[dir.join("missing.mmdb")], &[])
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("missing.mmdb"), "{err}");
}

#[test]
fn a_country_database_answers_the_country_fields() {
    let dir = dir("country");
    let path = dir.join("country.mmdb");
    let country = CityRecord {
        city: "",
        ..amsterdam()
    };
    let db = MmdbWriter::new("GeoLite2-Country")
        .insert("127.0.0.2/32", &country.value())
        .to_bytes();
    std::fs::write(&path, db).unwrap();
    let files = IpFiles::open(&[path], &[]).unwrap();
    assert_eq!(
        files.provides(),
        Provides {
            geo: true,
            ..Provides::default()
        }
    );
    assert_eq!(files.lookup(ip("127.0.0.2")).location.country_code, "NL");
}

#[test]
fn refresh_reads_changed_files_and_keeps_the_old_data_on_error() {
    let dir = dir("refresh");
    let cats = dir.join("cats.txt");
    std::fs::write(&cats, "127.0.0.2 blocklist.test\n").unwrap();
    let files = IpFiles::open(&[], std::slice::from_ref(&cats)).unwrap();
    assert!(files.lookup(ip("127.0.0.2")).is_on_blocklist());
    files.refresh().unwrap();
    // A longer file: the length alone tells it changed, whatever the clock's resolution.
    std::fs::write(&cats, "127.0.0.3   blocklist.test\n").unwrap();
    files.refresh().unwrap();
    assert!(!files.lookup(ip("127.0.0.2")).is_on_blocklist());
    assert!(files.lookup(ip("127.0.0.3")).is_on_blocklist());
    std::fs::write(&cats, "127.0.0.3 blocklist..bad\n").unwrap();
    let err = files.refresh().unwrap_err();
    assert!(err.contains("cats.txt:1:"), "{err}");
    assert!(files.lookup(ip("127.0.0.3")).is_on_blocklist());
}
