//! Times as the ledger stores them (whole microseconds since the Unix epoch, UTC) and shows them
//! (RFC 3339 in UTC).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, SecondsFormat, Utc};

/// Microseconds since the Unix epoch, negative before it, saturating far outside SQLite's range.
pub(crate) fn to_micros(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => duration_micros(after),
        Err(before) => -duration_micros(before.duration()),
    }
}

/// The inverse of [`to_micros`].
pub(crate) fn from_micros(micros: i64) -> SystemTime {
    let offset = Duration::from_micros(micros.unsigned_abs());
    if micros >= 0 {
        UNIX_EPOCH + offset
    } else {
        UNIX_EPOCH - offset
    }
}

/// A duration in whole microseconds, saturating.
pub(crate) fn duration_micros(duration: Duration) -> i64 {
    i64::try_from(duration.as_micros()).unwrap_or(i64::MAX)
}

/// A duration in milliseconds with microsecond precision, for JSON.
pub(crate) fn millis(duration: Duration) -> f64 {
    duration_micros(duration) as f64 / 1000.0
}

/// `2026-01-31T12:00:00.123456Z`: to the microsecond, as stored and compared, and always six
/// digits (as the access log writes times), so the texts sort as the times do.
pub fn rfc3339(time: SystemTime) -> String {
    DateTime::<Utc>::from(time).to_rfc3339_opts(SecondsFormat::Micros, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn micros_round_trip_on_both_sides_of_the_epoch() {
        for micros in [0, 1, -1, 1_795_000_000_123_456, -86_400_000_000] {
            assert_eq!(to_micros(from_micros(micros)), micros);
        }
        assert_eq!(
            rfc3339(from_micros(1_795_000_000_123_456)),
            "2026-11-18T11:06:40.123456Z"
        );
        assert_eq!(rfc3339(from_micros(0)), "1970-01-01T00:00:00.000000Z");
        let nanos = UNIX_EPOCH + Duration::from_nanos(1_500_999);
        assert_eq!(rfc3339(nanos), "1970-01-01T00:00:00.001500Z");
    }
}
