//! Input rules: metadata, provider ids, expiry times, the number of provider keys.

use chrono::{DateTime, Duration, SubsecRound, Utc};
use serde_json::{Map, Value};

use crate::error::{KeyError, Result};

/// Largest metadata object, in bytes of compact JSON.
pub const MAX_METADATA_BYTES: usize = 4096;
/// Most provider keys one access key may hold for one provider.
pub const MAX_PROVIDER_KEYS_PER_PROVIDER: usize = 15;
/// Longest provider id, in characters.
const MAX_PROVIDER_ID_LEN: usize = 64;
/// Longest `--expires-in`, so the expiry stays a representable time.
const MAX_EXPIRES_IN_DAYS: i64 = 100 * 366;

/// Parses metadata: a JSON object of at most [`MAX_METADATA_BYTES`] bytes as compact JSON.
pub fn parse_metadata(text: &str) -> Result<Map<String, Value>> {
    let Ok(Value::Object(map)) = serde_json::from_str(text) else {
        return Err(KeyError::Invalid(
            "metadata must be a JSON object, such as '{\"team\": \"search\"}'".to_owned(),
        ));
    };
    metadata_json(&map)?;
    Ok(map)
}

/// Metadata as stored: compact JSON, at most [`MAX_METADATA_BYTES`] bytes.
pub(crate) fn metadata_json(map: &Map<String, Value>) -> Result<String> {
    let text = serde_json::to_string(map).map_err(|e| KeyError::Invalid(e.to_string()))?;
    if text.len() > MAX_METADATA_BYTES {
        return Err(KeyError::Invalid(format!(
            "metadata is {} bytes long as compact JSON; the limit is {MAX_METADATA_BYTES}",
            text.len()
        )));
    }
    Ok(text)
}

/// Checks a provider id (`openai`, `anthropic`, a custom provider's id): 1 to 64 characters from `a-z`,
/// `0-9`, `_`, `.` and `-`, as in the `provider:model` names clients send.
pub(crate) fn check_provider_id(id: &str) -> Result<()> {
    let valid_chars = id
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'.' | b'-'));
    if id.is_empty() || id.len() > MAX_PROVIDER_ID_LEN || !valid_chars {
        return Err(KeyError::Invalid(format!(
            "invalid provider id '{}': provider ids are 1 to {MAX_PROVIDER_ID_LEN} characters from a-z, 0-9, '_', '.' and '-'",
            id.escape_debug()
        )));
    }
    Ok(())
}

/// The expiry given as an RFC 3339 time (`at`) or as a duration from `now` (`within`: a whole number and a
/// unit `s`, `m`, `h`, `d` or `w`, such as `30d`); `None` when neither is given. Truncated to whole seconds
/// and required to lie in the future.
pub fn parse_expiry(
    at: Option<&str>,
    within: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>> {
    let expiry = match (at, within) {
        (Some(_), Some(_)) => {
            return Err(KeyError::Invalid(
                "give either an expiry time or a duration, not both".to_owned(),
            ))
        }
        (Some(at), None) => parse_time(at)?,
        (None, Some(within)) => now + parse_duration(within)?,
        (None, None) => return Ok(None),
    };
    let expiry = expiry.trunc_subsecs(0);
    check_future(expiry, now)?;
    Ok(Some(expiry))
}

/// An expiry must lie after `now`: a key that could never be used is a mistake.
pub(crate) fn check_future(expiry: DateTime<Utc>, now: DateTime<Utc>) -> Result<()> {
    if expiry <= now {
        return Err(KeyError::Invalid(format!(
            "expiry {} is not in the future",
            keygate_secrets::format_timestamp(expiry)
        )));
    }
    Ok(())
}

fn parse_time(text: &str) -> Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .map(|time| time.with_timezone(&Utc))
        .map_err(|_| {
            KeyError::Invalid(format!(
                "invalid expiry time '{}': expected an RFC 3339 time such as 2026-12-31T23:59:59Z",
                text.escape_debug()
            ))
        })
}

fn parse_duration(text: &str) -> Result<Duration> {
    let invalid = || {
        KeyError::Invalid(format!(
            "invalid duration '{}': expected a positive whole number and a unit (s, m, h, d or w), such as 30d",
            text.escape_debug()
        ))
    };
    let split = text.len().saturating_sub(1);
    let (number, unit) = (text.get(..split).ok_or_else(invalid)?, &text[split..]);
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid());
    }
    let count: i64 = number.parse().map_err(|_| invalid())?;
    let seconds_per_unit = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return Err(invalid()),
    };
    match count.checked_mul(seconds_per_unit) {
        Some(seconds) if seconds > 0 && seconds <= MAX_EXPIRES_IN_DAYS * 86_400 => {
            Ok(Duration::seconds(seconds))
        }
        _ => Err(invalid()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-01-31T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn shown(expiry: Option<DateTime<Utc>>) -> String {
        keygate_secrets::format_timestamp(expiry.unwrap())
    }

    #[test]
    fn expiry_as_a_time_or_a_duration() {
        assert_eq!(parse_expiry(None, None, now()).unwrap(), None);
        let at = parse_expiry(Some("2026-02-01T01:00:00.75+01:00"), None, now()).unwrap();
        assert_eq!(shown(at), "2026-02-01T00:00:00Z");
        for (within, expected) in [
            ("30d", "2026-03-02T12:00:00Z"),
            ("90s", "2026-01-31T12:01:30Z"),
            ("5m", "2026-01-31T12:05:00Z"),
            ("12h", "2026-02-01T00:00:00Z"),
            ("1w", "2026-02-07T12:00:00Z"),
        ] {
            assert_eq!(
                shown(parse_expiry(None, Some(within), now()).unwrap()),
                expected
            );
        }
        for bad in [
            "",
            "d",
            "30",
            "30y",
            "-1d",
            "0d",
            "1.5h",
            " 1d",
            "99999999999999d",
        ] {
            let err = parse_expiry(None, Some(bad), now()).unwrap_err();
            assert!(
                err.to_string().starts_with("invalid duration"),
                "{bad}: {err}"
            );
        }
        let err = parse_expiry(Some("tomorrow"), None, now()).unwrap_err();
        assert!(err.to_string().contains("RFC 3339"), "{err}");
        let err = parse_expiry(Some("2026-01-31T11:59:59Z"), None, now()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "expiry 2026-01-31T11:59:59Z is not in the future"
        );
        assert!(parse_expiry(Some("2027-01-01T00:00:00Z"), Some("1d"), now()).is_err());
    }

    #[test]
    fn metadata_is_a_bounded_json_object() {
        assert_eq!(
            parse_metadata(r#"{"team": "ml", "n": 1}"#).unwrap().len(),
            2
        );
        for bad in ["[]", "\"text\"", "1", "null", "{", ""] {
            let err = parse_metadata(bad).unwrap_err();
            assert!(err.is_invalid_input());
            assert!(
                err.to_string()
                    .starts_with("metadata must be a JSON object"),
                "{err}"
            );
        }
        let big = format!(r#"{{"k": "{}"}}"#, "x".repeat(MAX_METADATA_BYTES));
        assert!(parse_metadata(&big)
            .unwrap_err()
            .to_string()
            .contains("limit is 4096"));
    }

    #[test]
    fn provider_ids_follow_the_charset() {
        for ok in ["openai", "anthropic", "my-vllm.v2", "x_1"] {
            assert!(check_provider_id(ok).is_ok(), "{ok}");
        }
        for bad in ["", "OpenAI", "open ai", "a/b", &"x".repeat(65)] {
            assert!(check_provider_id(bad).is_err(), "{bad}");
        }
    }
}
