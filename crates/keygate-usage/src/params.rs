//! The textual forms `keygate usage` flags and `/v1/usage` query parameters share: group names,
//! times (RFC 3339, a date, or a duration ago), durations and statuses, and the defaults of a
//! report.

use std::time::{Duration, SystemTime};

use chrono::{DateTime, NaiveDate};

use crate::query::{GroupBy, Query, StatusRange};

/// How far back a report reaches when no `since` is given.
pub const DEFAULT_SINCE: Duration = Duration::from_secs(30 * 86_400);

/// A parameter that could not be used; `param` is its name (`since`, `by`, ...), which is also
/// the flag's name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{param}: {message}")]
pub struct ParamError {
    pub param: &'static str,
    pub message: String,
}

/// The text of the parameters a report or the event log takes; absent ones are `None`.
#[derive(Debug, Clone, Copy, Default)]
pub struct QueryParams<'a> {
    /// `key`, `model`, `provider`, `day` or `hour`.
    pub by: Option<&'a str>,
    /// A time ([`parse_time`]).
    pub since: Option<&'a str>,
    /// A time ([`parse_time`]).
    pub until: Option<&'a str>,
    /// An access key id.
    pub key: Option<&'a str>,
    pub model: Option<&'a str>,
    /// A status or a class ([`parse_status`]).
    pub status: Option<&'a str>,
}

impl QueryParams<'_> {
    /// The query of a report: by key, over the [`DEFAULT_SINCE`] before `now` and up to `now`
    /// unless given.
    pub fn report_query(&self, now: SystemTime) -> Result<Query, ParamError> {
        let mut query = self.query(now)?;
        query.since = query.since.or_else(|| now.checked_sub(DEFAULT_SINCE));
        query.until = query.until.or(Some(now));
        Ok(query)
    }

    /// The query of the event log: no time bounds unless given.
    pub fn events_query(&self, now: SystemTime) -> Result<Query, ParamError> {
        self.query(now)
    }

    fn query(&self, now: SystemTime) -> Result<Query, ParamError> {
        Ok(Query {
            group_by: parse("by", self.by, parse_group_by)?.unwrap_or_default(),
            since: parse("since", self.since, |text| parse_time(text, now))?,
            until: parse("until", self.until, |text| parse_time(text, now))?,
            access_key: self.key.map(str::to_owned),
            model: self.model.map(str::to_owned),
            status: parse("status", self.status, parse_status)?,
        })
    }
}

/// Parses `text` when present, naming `param` in the error.
fn parse<T>(
    param: &'static str,
    text: Option<&str>,
    parse: impl FnOnce(&str) -> Result<T, String>,
) -> Result<Option<T>, ParamError> {
    text.map(parse)
        .transpose()
        .map_err(|message| ParamError { param, message })
}

/// `key`, `model`, `provider`, `day` or `hour`.
pub fn parse_group_by(text: &str) -> Result<GroupBy, String> {
    [
        GroupBy::Key,
        GroupBy::Model,
        GroupBy::Provider,
        GroupBy::Day,
        GroupBy::Hour,
    ]
    .into_iter()
    .find(|group| group.as_str() == text)
    .ok_or_else(|| format!("unknown grouping '{text}': use key, model, provider, day or hour"))
}

/// An RFC 3339 time (`2026-01-31T12:00:00Z`), a UTC date (`2026-01-31`, its midnight) or a
/// duration before `now` (`7d`: seven days ago).
pub fn parse_time(text: &str, now: SystemTime) -> Result<SystemTime, String> {
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Ok(time.into());
    }
    if let Ok(date) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(date.and_time(chrono::NaiveTime::MIN).and_utc().into());
    }
    parse_duration(text)
        .ok()
        .and_then(|ago| now.checked_sub(ago))
        .ok_or_else(|| {
            format!(
                "invalid time '{}': use an RFC 3339 time (2026-01-31T12:00:00Z), a date \
                 (2026-01-31) or a duration ago (7d, 12h, 30m)",
                text.escape_debug()
            )
        })
}

/// Whole numbers with units `w`, `d`, `h`, `m` (minutes) and `s`, alone or combined (`1d12h`);
/// a bare `0` is zero.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let invalid = || {
        format!(
            "invalid duration '{}': use whole numbers with w, d, h, m or s (90d, 12h, 1d12h)",
            text.escape_debug()
        )
    };
    match text {
        "" => return Err(invalid()),
        "0" => return Ok(Duration::ZERO),
        _ => {}
    }
    let mut rest = text;
    let mut seconds: u64 = 0;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .filter(|&digits| digits > 0)
            .ok_or_else(invalid)?;
        let number: u64 = rest[..digits].parse().map_err(|_| invalid())?;
        let unit = match rest.as_bytes()[digits] {
            b'w' => 7 * 86_400,
            b'd' => 86_400,
            b'h' => 3_600,
            b'm' => 60,
            b's' => 1,
            _ => return Err(invalid()),
        };
        seconds = number
            .checked_mul(unit)
            .and_then(|step| seconds.checked_add(step))
            .ok_or_else(invalid)?;
        rest = &rest[digits + 1..];
    }
    Ok(Duration::from_secs(seconds))
}

/// One status (`429`) or a class (`4xx`), 100 to 599.
pub fn parse_status(text: &str) -> Result<StatusRange, String> {
    let invalid = || {
        format!(
            "invalid status '{}': use a status (429) or a class (4xx)",
            text.escape_debug()
        )
    };
    let range = match text.strip_suffix("xx") {
        Some(class) if class.len() == 1 => {
            let class: u16 = class.parse().map_err(|_| invalid())?;
            StatusRange {
                min: class * 100,
                max: class * 100 + 99,
            }
        }
        Some(_) => return Err(invalid()),
        None => {
            let status: u16 = text.parse().map_err(|_| invalid())?;
            StatusRange {
                min: status,
                max: status,
            }
        }
    };
    if !(100..=599).contains(&range.min) || range.max > 599 {
        return Err(invalid());
    }
    Ok(range)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::rfc3339;

    fn now() -> SystemTime {
        DateTime::parse_from_rfc3339("2026-01-31T12:00:00Z")
            .unwrap()
            .into()
    }

    #[test]
    fn times_in_every_form() {
        let at = |text| parse_time(text, now()).map(rfc3339);
        assert_eq!(
            at("2026-01-02T03:04:05+02:00").unwrap(),
            "2026-01-02T01:04:05.000000Z"
        );
        assert_eq!(at("2026-01-02").unwrap(), "2026-01-02T00:00:00.000000Z");
        assert_eq!(at("7d").unwrap(), "2026-01-24T12:00:00.000000Z");
        assert_eq!(at("1d12h").unwrap(), "2026-01-30T00:00:00.000000Z");
        assert_eq!(at("90m").unwrap(), "2026-01-31T10:30:00.000000Z");
        for bad in ["", "yesterday", "7", "d", "2026-13-01", "7y", "1d-2h"] {
            let err = at(bad).unwrap_err();
            assert!(err.contains("RFC 3339"), "{bad}: {err}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("90d"), Ok(Duration::from_secs(90 * 86_400)));
        assert_eq!(parse_duration("2w"), Ok(Duration::from_secs(14 * 86_400)));
        assert_eq!(parse_duration("1h30m5s"), Ok(Duration::from_secs(5_405)));
        for bad in [
            "",
            "h",
            "10",
            "10ms",
            "-1d",
            "1.5h",
            "99999999999999999999d",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn statuses_and_groups() {
        assert_eq!(parse_status("429"), Ok(StatusRange { min: 429, max: 429 }));
        assert_eq!(parse_status("5xx"), Ok(StatusRange { min: 500, max: 599 }));
        for bad in ["6xx", "0xx", "70xx", "99", "600", "xx", "4XX", "abc"] {
            assert!(parse_status(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_group_by("day"), Ok(GroupBy::Day));
        assert!(parse_group_by("Day").unwrap_err().contains("key, model"));
    }

    #[test]
    fn report_defaults_and_named_errors() {
        let query = QueryParams::default().report_query(now()).unwrap();
        assert_eq!(query.group_by, GroupBy::Key);
        assert_eq!(rfc3339(query.since.unwrap()), "2026-01-01T12:00:00.000000Z");
        assert_eq!(query.until, Some(now()));
        let events = QueryParams::default().events_query(now()).unwrap();
        assert_eq!((events.since, events.until), (None, None));
        let params = QueryParams {
            by: Some("model"),
            key: Some("aigk_1"),
            until: Some("2026-01-30"),
            ..QueryParams::default()
        };
        let query = params.report_query(now()).unwrap();
        assert_eq!(query.group_by, GroupBy::Model);
        assert_eq!(query.access_key.as_deref(), Some("aigk_1"));
        assert_eq!(rfc3339(query.until.unwrap()), "2026-01-30T00:00:00.000000Z");
        let err = QueryParams {
            since: Some("last week"),
            ..QueryParams::default()
        }
        .report_query(now())
        .unwrap_err();
        assert_eq!(err.param, "since");
        assert!(err
            .to_string()
            .starts_with("since: invalid time 'last week'"));
    }
}
