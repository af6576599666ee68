//! `GET /v1/usage` (the report `keygate usage --json` prints) and `GET /v1/usage/events` (recent
//! events, newest first), from the usage ledger. The parameters take the forms the CLI's flags
//! take (`keygate_usage::QueryParams`). Queries run on the blocking pool: ledger reads block,
//! and the admin listener shares its thread with accept, reload and signals.

use std::borrow::Cow;
use std::time::SystemTime;

use http::StatusCode;
use keygate_usage::{ParamError, QueryParams, Reader, UsageEvent, MAX_EVENTS};
use percent_encoding::percent_decode_str;
use serde::Serialize;
use serde_json::json;
use tracing::warn;

use crate::gateway::Gateway;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Events one page holds unless `limit` says otherwise.
const DEFAULT_LIMIT: u32 = 100;

/// The report: `by`, `since`, `until`, `key`, `model`.
pub async fn report(gateway: &Gateway, query: Option<&str>) -> (StatusCode, String) {
    let query = Params::decode(query, &["by", "since", "until", "key", "model"])
        .and_then(|params| Ok(params.query().report_query(SystemTime::now())?));
    let query = match query {
        Ok(query) => query,
        Err(err) => return bad_request(err),
    };
    read(gateway, move |reader| reader.report(&query)).await
}

/// A page of events: `limit` (1 to 1000, default 100), `offset`, `key`, `model`, `status`,
/// `since`, `until`.
pub async fn events(gateway: &Gateway, query: Option<&str>) -> (StatusCode, String) {
    let known = [
        "limit", "offset", "key", "model", "status", "since", "until",
    ];
    let page = Params::decode(query, &known).and_then(|params| {
        let limit = params.number("limit", 1, MAX_EVENTS.into())?;
        let offset = params.number("offset", 0, u64::MAX)?;
        let query = params.query().events_query(SystemTime::now())?;
        Ok((
            query,
            limit.map_or(DEFAULT_LIMIT, |limit| limit as u32),
            offset.unwrap_or(0),
        ))
    });
    let (query, limit, offset) = match page {
        Ok(page) => page,
        Err(err) => return bad_request(err),
    };
    read(gateway, move |reader| {
        Ok(Page {
            events: reader.events(&query, limit, offset)?,
            limit,
            offset,
        })
    })
    .await
}

/// The answer of `/v1/usage/events`.
#[derive(Serialize)]
struct Page {
    events: Vec<UsageEvent>,
    limit: u32,
    offset: u64,
}

/// Runs `read` on the ledger off this thread and answers with its JSON.
pub(super) async fn read<T: Serialize>(
    gateway: &Gateway,
    read: impl FnOnce(&Reader) -> Result<T, keygate_usage::Error> + Send + 'static,
) -> (StatusCode, String) {
    let Some(ledger) = &gateway.ledger else {
        return error(
            StatusCode::NOT_FOUND,
            json!({"message": "the usage ledger is off (--no-usage-ledger)"}),
        );
    };
    let reader = ledger.reader();
    let answer = tokio::task::spawn_blocking(move || -> Result<String, BoxError> {
        let value = read(&reader)?;
        Ok(serde_json::to_string(&value)?)
    })
    .await;
    match answer {
        Ok(Ok(body)) => (StatusCode::OK, body),
        Ok(Err(err)) => internal(&*err),
        Err(err) => internal(&err),
    }
}

/// A parameter that cannot be used: its name, and why.
pub(super) struct BadParam {
    param: String,
    message: String,
}

impl BadParam {
    pub(super) fn new(param: &str, message: String) -> Self {
        Self {
            param: param.to_owned(),
            message,
        }
    }
}

impl From<ParamError> for BadParam {
    fn from(err: ParamError) -> Self {
        Self {
            param: err.param.to_owned(),
            message: err.to_string(),
        }
    }
}

/// The decoded query parameters of one request.
pub(super) struct Params<'a> {
    pairs: Vec<(&'static str, Cow<'a, str>)>,
}

impl<'a> Params<'a> {
    /// Percent-decodes `query` (a `+` stays a `+`, as in RFC 3339 offsets); a name not in
    /// `known`, or given twice, is an error naming it.
    pub(super) fn decode(query: Option<&'a str>, known: &[&'static str]) -> Result<Self, BadParam> {
        let mut pairs: Vec<(&'static str, Cow<'a, str>)> = Vec::new();
        for pair in query
            .unwrap_or_default()
            .split('&')
            .filter(|p| !p.is_empty())
        {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let name = percent_decode_str(name).decode_utf8_lossy();
            let Some(&param) = known.iter().find(|known| **known == name) else {
                return Err(BadParam {
                    message: format!("unknown parameter '{name}': use {}", known.join(", ")),
                    param: name.into_owned(),
                });
            };
            if pairs.iter().any(|(seen, _)| *seen == param) {
                return Err(BadParam {
                    param: param.to_owned(),
                    message: format!("{param}: given more than once"),
                });
            }
            pairs.push((param, percent_decode_str(value).decode_utf8_lossy()));
        }
        Ok(Self { pairs })
    }

    pub(super) fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(param, _)| *param == name)
            .map(|(_, value)| value.as_ref())
    }

    pub(super) fn query(&self) -> QueryParams<'_> {
        QueryParams {
            by: self.get("by"),
            since: self.get("since"),
            until: self.get("until"),
            key: self.get("key"),
            model: self.get("model"),
            status: self.get("status"),
        }
    }

    /// A whole number in `min..=max`, when given.
    pub(super) fn number(
        &self,
        param: &'static str,
        min: u64,
        max: u64,
    ) -> Result<Option<u64>, BadParam> {
        let Some(text) = self.get(param) else {
            return Ok(None);
        };
        match text.parse::<u64>() {
            Ok(number) if (min..=max).contains(&number) => Ok(Some(number)),
            _ => Err(BadParam {
                param: param.to_owned(),
                message: format!("{param}: expected a whole number from {min} to {max}"),
            }),
        }
    }
}

pub(super) fn bad_request(err: BadParam) -> (StatusCode, String) {
    error(
        StatusCode::BAD_REQUEST,
        json!({"message": err.message, "param": err.param}),
    )
}

fn internal(err: &dyn std::fmt::Display) -> (StatusCode, String) {
    warn!(error = %err, "usage query failed");
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        json!({"message": format!("usage query failed: {err}")}),
    )
}

fn error(status: StatusCode, error: serde_json::Value) -> (StatusCode, String) {
    (status, json!({ "error": error }).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const KNOWN: [&str; 3] = ["since", "key", "limit"];

    #[test]
    fn parameters_are_percent_decoded_and_keep_plus_signs() {
        let params = Params::decode(
            Some("since=2026-01-31T12:00:00+02:00&key=aigk%5F1&limit="),
            &KNOWN,
        )
        .ok()
        .unwrap();
        assert_eq!(params.get("since"), Some("2026-01-31T12:00:00+02:00"));
        assert_eq!(params.get("key"), Some("aigk_1"));
        assert_eq!(params.get("limit"), Some(""));
        assert!(Params::decode(None, &KNOWN).ok().unwrap().pairs.is_empty());
    }

    #[test]
    fn unknown_repeated_and_out_of_range_parameters_name_themselves() {
        let bad = |query| match Params::decode(Some(query), &KNOWN) {
            Ok(params) => params.number("limit", 1, 1000).err().unwrap(),
            Err(err) => err,
        };
        let unknown = bad("sinse=7d");
        assert_eq!(unknown.param, "sinse");
        assert_eq!(
            unknown.message,
            "unknown parameter 'sinse': use since, key, limit"
        );
        assert_eq!(bad("key=a&key=b").message, "key: given more than once");
        let limit = bad("limit=1001");
        assert_eq!(
            (limit.param.as_str(), limit.message.as_str()),
            ("limit", "limit: expected a whole number from 1 to 1000")
        );
    }
}
