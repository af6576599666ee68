//! Per-key limits: a request rate, a token budget and spend budgets, in the text forms the CLI takes and the
//! store keeps. Amounts are integers of micro-USD throughout, so no float ever touches money.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize, Serializer};

use crate::error::{KeyError, Result};

/// Largest count in a rate. Counts, spend amounts and sums of a few of them then stay exact in a double
/// (53-bit mantissa), the only number type of some shared stores' scripts (Redis Lua).
const MAX_RATE_COUNT: u64 = 1 << 50;
/// Micro-USD in one US dollar.
const MICROS_PER_USD: u64 = 1_000_000;
/// Largest spend limit, 1e9 USD, in micro-USD (below [`MAX_RATE_COUNT`], for the same reason).
const MAX_SPEND_MICROS: u64 = 1_000_000_000 * MICROS_PER_USD;
/// Most decimal places in a USD amount: one micro-USD.
const USD_DECIMALS: usize = 6;

/// The windows a rate may have, in seconds, each with its accepted names, the canonical one first. Each
/// divides a day, so fixed windows aligned to the Unix epoch are aligned to UTC days.
const UNITS: [(u64, &[&str]); 4] = [
    (1, &["s", "sec", "second", "seconds"]),
    (60, &["min", "m", "minute", "minutes"]),
    (3_600, &["h", "hour", "hours"]),
    (86_400, &["day", "d", "days"]),
];

/// The accepted forms of a rate, for error messages.
const RATE_FORMS: &str =
    "expected a whole number from 1 to 2^50, '/' and a unit (s, min, h or day), such as 100/min or \
     50000/day";
/// The accepted forms of a USD amount, for error messages.
const USD_FORMS: &str =
    "expected US dollars above 0 and at most 1000000000, with at most 6 decimal places, such as 5 or \
     0.25";

/// An access key's limits; every field `None` means unlimited.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyLimits {
    /// Requests admitted in any trailing window (sliding, like `rate-limit`).
    pub requests: Option<Rate>,
    /// Input plus output tokens per fixed window aligned to the Unix epoch (so `/day` is a UTC day, `/h` a
    /// UTC hour).
    pub tokens: Option<Rate>,
    /// Spend per UTC calendar day, in micro-USD (1 USD = 1_000_000).
    pub daily_spend_micros: Option<u64>,
    /// Spend per UTC calendar month, in micro-USD.
    pub monthly_spend_micros: Option<u64>,
    /// What the token and spend budgets do while the shared store (Redis) is unreachable.
    pub on_store_failure: StoreFailure,
}

impl KeyLimits {
    /// Whether no limit is set.
    pub fn is_unlimited(&self) -> bool {
        self.requests.is_none() && !self.has_budget()
    }

    /// Whether a token or spend budget is set: the limits that count usage in the shared store.
    pub fn has_budget(&self) -> bool {
        self.tokens.is_some()
            || self.daily_spend_micros.is_some()
            || self.monthly_spend_micros.is_some()
    }
}

/// `N per window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// How many per window.
    pub count: u64,
    /// The window: one second, minute, hour or day.
    pub window: Duration,
}

impl Rate {
    /// The canonical name of the window's unit, if it is one.
    fn unit(&self) -> Option<&'static str> {
        UNITS
            .iter()
            .find(|(seconds, _)| self.window == Duration::from_secs(*seconds))
            .map(|(_, names)| names[0])
    }

    fn is_valid(&self) -> bool {
        (1..=MAX_RATE_COUNT).contains(&self.count) && self.unit().is_some()
    }
}

impl fmt::Display for Rate {
    /// The canonical short form: `10/s`, `100/min`, `3/h`, `50000/day`. A window that is no unit, which only
    /// a hand-built `Rate` has (the store refuses it), shows as a duration.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.unit() {
            Some(unit) => write!(f, "{}/{unit}", self.count),
            None => write!(f, "{}/{:?}", self.count, self.window),
        }
    }
}

impl FromStr for Rate {
    type Err = KeyError;

    /// Parses `N/unit`: a whole number from 1 to 2^50 and `s`, `sec`, `second(s)`, `m`, `min`, `minute(s)`,
    /// `h`, `hour(s)`, `d`, `day(s)`.
    fn from_str(text: &str) -> Result<Self> {
        let invalid = || {
            KeyError::Invalid(format!(
                "invalid rate '{}': {RATE_FORMS}",
                text.escape_debug()
            ))
        };
        let (count, unit) = text.split_once('/').ok_or_else(invalid)?;
        if count.is_empty() || !count.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid());
        }
        let seconds = UNITS
            .iter()
            .find(|(_, names)| names.contains(&unit))
            .map(|(seconds, _)| *seconds)
            .ok_or_else(invalid)?;
        let rate = Self {
            count: count.parse().map_err(|_| invalid())?,
            window: Duration::from_secs(seconds),
        };
        rate.is_valid().then_some(rate).ok_or_else(invalid)
    }
}

/// What the token and spend budgets do while the shared store is unreachable.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum StoreFailure {
    /// Keep enforcing in each gateway's memory.
    #[default]
    Local,
    /// Refuse requests that need a budget.
    Closed,
}

impl fmt::Display for StoreFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Local => "local",
            Self::Closed => "closed",
        })
    }
}

impl FromStr for StoreFailure {
    type Err = KeyError;

    /// Parses `local` or `closed`.
    fn from_str(text: &str) -> Result<Self> {
        match text {
            "local" => Ok(Self::Local),
            "closed" => Ok(Self::Closed),
            _ => Err(KeyError::Invalid(format!(
                "invalid store failure mode '{}': expected local or closed",
                text.escape_debug()
            ))),
        }
    }
}

/// Parses a US dollar amount (`5`, `5.00`, `0.25`, `12.345678`) into micro-USD, exactly: at most 6 decimal
/// places, above 0 and at most 1e9 USD.
pub fn parse_usd(text: &str) -> Result<u64> {
    let invalid = || {
        KeyError::Invalid(format!(
            "invalid amount '{}': {USD_FORMS}",
            text.escape_debug()
        ))
    };
    let digits = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
    let (whole, fraction) = text.split_once('.').unwrap_or((text, "0"));
    if !digits(whole) || !digits(fraction) || fraction.len() > USD_DECIMALS {
        return Err(invalid());
    }
    let whole: u64 = whole.parse().map_err(|_| invalid())?;
    let fraction = fraction
        .bytes()
        .chain(std::iter::repeat(b'0'))
        .take(USD_DECIMALS)
        .fold(0, |micros, digit| micros * 10 + u64::from(digit - b'0'));
    whole
        .checked_mul(MICROS_PER_USD)
        .and_then(|micros| micros.checked_add(fraction))
        .filter(|micros| (1..=MAX_SPEND_MICROS).contains(micros))
        .ok_or_else(invalid)
}

/// Formats micro-USD as US dollars with 2 to 6 decimal places, exactly: `5.00`, `0.25`, `12.345678`.
pub fn format_usd(micros: u64) -> String {
    let fraction = format!("{:06}", micros % MICROS_PER_USD);
    format!(
        "{}.{:0<2}",
        micros / MICROS_PER_USD,
        fraction.trim_end_matches('0')
    )
}

/// Checks limits built in code against the rules the parsers apply.
pub(crate) fn check_limits(limits: &KeyLimits) -> Result<()> {
    for (name, rate) in [
        ("request limit", limits.requests),
        ("token limit", limits.tokens),
    ] {
        if let Some(rate) = rate.filter(|rate| !rate.is_valid()) {
            return Err(KeyError::Invalid(format!(
                "invalid {name} {rate}: {RATE_FORMS}"
            )));
        }
    }
    for (name, micros) in [
        ("daily spend limit", limits.daily_spend_micros),
        ("monthly spend limit", limits.monthly_spend_micros),
    ] {
        if let Some(micros) = micros.filter(|micros| !(1..=MAX_SPEND_MICROS).contains(micros)) {
            return Err(KeyError::Invalid(format!(
                "invalid {name} of {micros} micro-USD: spend limits are above 0 and at most 1e9 USD"
            )));
        }
    }
    // The mode is shown and stored only beside a budget; without one it would be lost on the next read.
    if limits.on_store_failure != StoreFailure::default() && !limits.has_budget() {
        return Err(KeyError::Invalid(format!(
            "on_store_failure {} applies to token and spend limits, and none is set",
            limits.on_store_failure
        )));
    }
    Ok(())
}

/// Limits as stored and shown: only the set fields, rates and amounts as strings.
#[derive(Serialize, Deserialize)]
// A misspelled field in an edited row would otherwise drop a limit unnoticed.
#[serde(deny_unknown_fields)]
struct LimitsJson {
    #[serde(skip_serializing_if = "Option::is_none")]
    requests: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tokens: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    daily_spend_usd: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    monthly_spend_usd: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    on_store_failure: Option<String>,
}

impl From<&KeyLimits> for LimitsJson {
    fn from(limits: &KeyLimits) -> Self {
        Self {
            requests: limits.requests.map(|rate| rate.to_string()),
            tokens: limits.tokens.map(|rate| rate.to_string()),
            daily_spend_usd: limits.daily_spend_micros.map(format_usd),
            monthly_spend_usd: limits.monthly_spend_micros.map(format_usd),
            on_store_failure: limits
                .has_budget()
                .then(|| limits.on_store_failure.to_string()),
        }
    }
}

impl TryFrom<LimitsJson> for KeyLimits {
    type Error = KeyError;

    fn try_from(json: LimitsJson) -> Result<Self> {
        let limits = Self {
            requests: json.requests.as_deref().map(str::parse).transpose()?,
            tokens: json.tokens.as_deref().map(str::parse).transpose()?,
            daily_spend_micros: json.daily_spend_usd.as_deref().map(parse_usd).transpose()?,
            monthly_spend_micros: json
                .monthly_spend_usd
                .as_deref()
                .map(parse_usd)
                .transpose()?,
            on_store_failure: json
                .on_store_failure
                .as_deref()
                .map(str::parse)
                .transpose()?
                .unwrap_or_default(),
        };
        check_limits(&limits)?;
        Ok(limits)
    }
}

/// Limits as stored: compact JSON, `{}` for none.
pub(crate) fn limits_json(limits: &KeyLimits) -> String {
    serde_json::to_string(&LimitsJson::from(limits)).expect("an object of strings serializes")
}

/// Reads stored limits, with the same rules as the CLI's flags.
pub(crate) fn parse_limits_json(text: &str) -> Result<KeyLimits> {
    let json: LimitsJson = serde_json::from_str(text)
        .map_err(|e| KeyError::Invalid(format!("limits are not a valid limits object: {e}")))?;
    json.try_into()
}

/// Serializes limits in their stored form, for [`crate::ApiKey`].
pub(crate) fn serialize_limits<S: Serializer>(
    limits: &KeyLimits,
    serializer: S,
) -> std::result::Result<S::Ok, S::Error> {
    LimitsJson::from(limits).serialize(serializer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(count: u64, seconds: u64) -> Rate {
        Rate {
            count,
            window: Duration::from_secs(seconds),
        }
    }

    fn all_limits() -> KeyLimits {
        KeyLimits {
            requests: Some(rate(100, 60)),
            tokens: Some(rate(50_000, 86_400)),
            daily_spend_micros: Some(5_000_000),
            monthly_spend_micros: Some(50_000_000),
            on_store_failure: StoreFailure::Closed,
        }
    }

    #[test]
    fn rates_parse_every_unit_name_and_show_the_short_one() {
        for (text, expected, shown) in [
            ("10/s", rate(10, 1), "10/s"),
            ("10/sec", rate(10, 1), "10/s"),
            ("10/second", rate(10, 1), "10/s"),
            ("10/seconds", rate(10, 1), "10/s"),
            ("100/m", rate(100, 60), "100/min"),
            ("100/min", rate(100, 60), "100/min"),
            ("100/minute", rate(100, 60), "100/min"),
            ("100/minutes", rate(100, 60), "100/min"),
            ("3/h", rate(3, 3_600), "3/h"),
            ("3/hour", rate(3, 3_600), "3/h"),
            ("3/hours", rate(3, 3_600), "3/h"),
            ("50000/d", rate(50_000, 86_400), "50000/day"),
            ("50000/day", rate(50_000, 86_400), "50000/day"),
            ("50000/days", rate(50_000, 86_400), "50000/day"),
            ("007/min", rate(7, 60), "7/min"),
            ("1125899906842624/s", rate(1 << 50, 1), "1125899906842624/s"),
        ] {
            let parsed: Rate = text.parse().unwrap();
            assert_eq!(parsed, expected, "{text}");
            assert_eq!(parsed.to_string(), shown);
            assert_eq!(shown.parse::<Rate>().unwrap(), parsed);
        }
        assert_eq!(rate(5, 7).to_string(), "5/7s");
    }

    #[test]
    fn rates_outside_the_forms_are_refused() {
        for bad in [
            "",
            "100",
            "/min",
            "100/",
            "0/min",
            "-1/min",
            "+1/min",
            "1.5/min",
            "100/week",
            "100/Min",
            "100/mins",
            " 100/min",
            "100/ min",
            "100/min ",
            "100/min/s",
            "1125899906842625/s",
            "99999999999999999999999/s",
        ] {
            let err = bad.parse::<Rate>().unwrap_err();
            assert!(err.is_invalid_input());
            assert_eq!(
                err.to_string(),
                format!("invalid rate '{bad}': {RATE_FORMS}"),
                "{bad}"
            );
        }
    }

    #[test]
    fn usd_parses_exactly_into_micros() {
        for (text, micros, shown) in [
            ("5", 5_000_000, "5.00"),
            ("5.00", 5_000_000, "5.00"),
            ("5.1", 5_100_000, "5.10"),
            ("0.25", 250_000, "0.25"),
            // Binary floats get these wrong: 0.29 * 1e6 is 289999.99999999994.
            ("0.29", 290_000, "0.29"),
            ("1.005", 1_005_000, "1.005"),
            ("12.345678", 12_345_678, "12.345678"),
            ("0.000001", 1, "0.000001"),
            ("050.50", 50_500_000, "50.50"),
            ("1000000000", 1_000_000_000_000_000, "1000000000.00"),
            ("1000000000.000000", 1_000_000_000_000_000, "1000000000.00"),
        ] {
            assert_eq!(parse_usd(text).unwrap(), micros, "{text}");
            assert_eq!(format_usd(micros), shown);
        }
        for micros in (1..=2_000_000).step_by(997).chain([999_999, 1_000_001]) {
            assert_eq!(parse_usd(&format_usd(micros)).unwrap(), micros);
        }
    }

    #[test]
    fn usd_outside_the_forms_is_refused() {
        for bad in [
            "",
            "0",
            "0.00",
            "0.0000001",
            "5.1234567",
            "1000000000.000001",
            "1000000001",
            "99999999999999999999",
            "18446744073709.999999",
            "-1",
            "+1",
            "1e3",
            ".5",
            "5.",
            "5.0.0",
            "$5",
            " 5",
            "1,000",
            "NaN",
        ] {
            let err = parse_usd(bad).unwrap_err();
            assert!(err.is_invalid_input());
            assert_eq!(
                err.to_string(),
                format!("invalid amount '{bad}': {USD_FORMS}"),
                "{bad}"
            );
        }
    }

    #[test]
    fn store_failure_modes() {
        for mode in [StoreFailure::Local, StoreFailure::Closed] {
            assert_eq!(mode.to_string().parse::<StoreFailure>().unwrap(), mode);
        }
        assert_eq!(StoreFailure::default(), StoreFailure::Local);
        assert_eq!(
            "open".parse::<StoreFailure>().unwrap_err().to_string(),
            "invalid store failure mode 'open': expected local or closed"
        );
    }

    #[test]
    fn unlimited_and_budgets() {
        assert!(KeyLimits::default().is_unlimited() && !KeyLimits::default().has_budget());
        let requests_only = KeyLimits {
            requests: Some(rate(1, 1)),
            ..KeyLimits::default()
        };
        assert!(!requests_only.is_unlimited() && !requests_only.has_budget());
        for budget in [
            KeyLimits {
                tokens: Some(rate(1, 1)),
                ..KeyLimits::default()
            },
            KeyLimits {
                daily_spend_micros: Some(1),
                ..KeyLimits::default()
            },
            KeyLimits {
                monthly_spend_micros: Some(1),
                ..KeyLimits::default()
            },
        ] {
            assert!(!budget.is_unlimited() && budget.has_budget(), "{budget:?}");
        }
    }

    #[test]
    fn json_holds_only_the_set_fields() {
        assert_eq!(limits_json(&KeyLimits::default()), "{}");
        assert_eq!(parse_limits_json("{}").unwrap(), KeyLimits::default());
        let text = limits_json(&all_limits());
        assert_eq!(
            text,
            r#"{"requests":"100/min","tokens":"50000/day","daily_spend_usd":"5.00","monthly_spend_usd":"50.00","on_store_failure":"closed"}"#
        );
        assert_eq!(parse_limits_json(&text).unwrap(), all_limits());
        // The mode goes with the budgets.
        let requests_only = KeyLimits {
            requests: Some(rate(10, 1)),
            ..KeyLimits::default()
        };
        assert_eq!(limits_json(&requests_only), r#"{"requests":"10/s"}"#);
        let spend = KeyLimits {
            daily_spend_micros: Some(250_000),
            ..KeyLimits::default()
        };
        assert_eq!(
            limits_json(&spend),
            r#"{"daily_spend_usd":"0.25","on_store_failure":"local"}"#
        );
        assert_eq!(
            parse_limits_json(r#"{"tokens": "7/hours", "monthly_spend_usd": "3"}"#).unwrap(),
            KeyLimits {
                tokens: Some(rate(7, 3_600)),
                monthly_spend_micros: Some(3_000_000),
                ..KeyLimits::default()
            }
        );
    }

    #[test]
    fn stored_json_follows_the_same_rules() {
        for bad in [
            "",
            "[]",
            r#"{"requests": 100}"#,
            r#"{"requests": "100/week"}"#,
            r#"{"daily_spend_usd": 5.0}"#,
            r#"{"daily_spend_usd": "0"}"#,
            r#"{"monthly_spend_usd": "1.0000001"}"#,
            r#"{"tokens": "1/s", "on_store_failure": "open"}"#,
            r#"{"on_store_failure": "closed"}"#,
            r#"{"token": "1/s"}"#,
        ] {
            assert!(parse_limits_json(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn hand_built_limits_are_checked() {
        assert!(check_limits(&KeyLimits::default()).is_ok());
        assert!(check_limits(&all_limits()).is_ok());
        for (bad, message) in [
            (
                KeyLimits {
                    requests: Some(rate(0, 60)),
                    ..KeyLimits::default()
                },
                "invalid request limit 0/min: expected a whole number",
            ),
            (
                KeyLimits {
                    tokens: Some(rate(5, 7)),
                    ..KeyLimits::default()
                },
                "invalid token limit 5/7s: expected a whole number",
            ),
            (
                KeyLimits {
                    daily_spend_micros: Some(0),
                    ..KeyLimits::default()
                },
                "invalid daily spend limit of 0 micro-USD",
            ),
            (
                KeyLimits {
                    monthly_spend_micros: Some(MAX_SPEND_MICROS + 1),
                    ..KeyLimits::default()
                },
                "invalid monthly spend limit of 1000000000000001 micro-USD",
            ),
            (
                KeyLimits {
                    requests: Some(rate(1, 1)),
                    on_store_failure: StoreFailure::Closed,
                    ..KeyLimits::default()
                },
                "on_store_failure closed applies to token and spend limits, and none is set",
            ),
        ] {
            let err = check_limits(&bad).unwrap_err();
            assert!(err.is_invalid_input());
            assert!(err.to_string().starts_with(message), "{err}");
        }
    }
}
