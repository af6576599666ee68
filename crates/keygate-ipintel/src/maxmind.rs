//! MaxMind DB files: which kind each is (from its metadata) and the facts read from it.

use std::net::IpAddr;

use keygate_cel::Place;
use maxminddb::{geoip2, Reader};

use crate::LoadError;

/// What a database answers, told by its `database_type` (`GeoLite2-City`, `GeoIP2-Country`,
/// `GeoLite2-ASN`, `DBIP-City-Lite`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Locations (City, Country and Enterprise databases).
    Geo,
    /// Autonomous systems (ASN and ISP databases).
    Asn,
}

/// One database read into memory (a file replaced while it is mapped would crash the process).
pub(crate) struct Database {
    pub(crate) kind: Kind,
    reader: Reader<Vec<u8>>,
}

impl Database {
    pub(crate) fn read(name: &str, bytes: Vec<u8>) -> Result<Self, LoadError> {
        let invalid = |why: String| LoadError::Database {
            file: name.to_owned(),
            why,
        };
        let reader = Reader::from_source(bytes).map_err(|e| invalid(e.to_string()))?;
        let database_type = &reader.metadata().database_type;
        let kind = if ["ASN", "ISP"].iter().any(|k| database_type.contains(k)) {
            Kind::Asn
        } else if ["City", "Country", "Enterprise"]
            .iter()
            .any(|k| database_type.contains(k))
        {
            Kind::Geo
        } else {
            return Err(invalid(format!(
                "database type `{database_type}` is not a City, Country or ASN database"
            )));
        };
        Ok(Self { kind, reader })
    }

    /// The location and registered location of `ip`, if the database holds it. A corrupt
    /// record reads as absent: the lookup runs on the request path and must not fail it.
    pub(crate) fn places(&self, ip: IpAddr) -> Option<(Place, Place)> {
        let city: geoip2::City = self.reader.lookup(ip).ok()?.decode().ok()??;
        let english = |names: &geoip2::Names| names.english.unwrap_or_default().to_owned();
        let location = Place {
            city: english(&city.city.names),
            continent: city.continent.code.unwrap_or_default().to_owned(),
            country: english(&city.country.names),
            country_code: city.country.iso_code.unwrap_or_default().to_owned(),
            is_eu: city.country.is_in_european_union.unwrap_or(false),
            latitude: city.location.latitude,
            longitude: city.location.longitude,
            metro_code: city.location.metro_code,
            postal_code: city.postal.code.unwrap_or_default().to_owned(),
            radius: city.location.accuracy_radius,
            subdivision: (city.subdivisions.first())
                .map(|s| english(&s.names))
                .unwrap_or_default(),
            timezone: city.location.time_zone.unwrap_or_default().to_owned(),
        };
        // GeoIP2 records only the registered country: its city-level fields stay empty.
        let registered = Place {
            country: english(&city.registered_country.names),
            country_code: (city.registered_country.iso_code)
                .unwrap_or_default()
                .to_owned(),
            is_eu: city
                .registered_country
                .is_in_european_union
                .unwrap_or(false),
            ..Place::default()
        };
        Some((location, registered))
    }

    /// The autonomous system number and organization of `ip`, if the database holds it.
    pub(crate) fn autonomous_system(&self, ip: IpAddr) -> Option<(u32, String)> {
        let asn: geoip2::Asn = self.reader.lookup(ip).ok()?.decode().ok()??;
        Some((
            asn.autonomous_system_number?,
            asn.autonomous_system_organization
                .unwrap_or_default()
                .to_owned(),
        ))
    }
}
