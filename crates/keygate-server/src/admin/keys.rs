//! The dashboard's access keys: the list with what each key used of its limits (from the usage
//! ledger), and create, disable/enable and delete through [`KeyAdmin`], which the binary
//! implements on the data directory's key store with the CLI's rules
//! (`keygate api ai-gateway-api-keys ...`).

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, Datelike, TimeZone, Utc};
use http::StatusCode;
use keygate_usage::{Reader, Totals};
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::{error, Refusal};
use crate::gateway::Gateway;

/// What the dashboard does with access keys. Every method blocks (a SQLite store): the server
/// calls them on its blocking pool.
pub trait KeyAdmin: Send + Sync {
    /// Every access key, oldest first.
    fn list(&self) -> Result<Vec<ManagedKey>, KeyAdminError>;
    /// Creates a key as `keygate api ai-gateway-api-keys create` does with these flags; the
    /// answer (the CLI's JSON) holds the token, shown this once.
    fn create(&self, form: &NewKeyForm) -> Result<Value, KeyAdminError>;
    /// `update ID --disabled true|false`; the answer is the key's JSON.
    fn set_disabled(&self, id: &str, disabled: bool) -> Result<Value, KeyAdminError>;
    /// `delete ID`: the key and its provider keys; its token stops working.
    fn delete(&self, id: &str) -> Result<(), KeyAdminError>;
}

/// One key as the CLI shows it, with its limits in numbers.
#[derive(Debug, Clone)]
pub struct ManagedKey {
    pub id: String,
    /// The JSON `keygate api ai-gateway-api-keys get` prints (never a token).
    pub json: Value,
    /// Requests per trailing window.
    pub request_limit: Option<(u64, Duration)>,
    /// Tokens per window aligned to the Unix epoch.
    pub token_limit: Option<(u64, Duration)>,
    pub daily_spend_micros: Option<u64>,
    pub monthly_spend_micros: Option<u64>,
}

/// The dashboard's "new key" form: the CLI's `create` flags by name, as text.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewKeyForm {
    #[serde(default)]
    pub description: String,
    /// A JSON object, as `--metadata` takes it.
    pub metadata: Option<String>,
    pub expires_at: Option<String>,
    pub expires_in: Option<String>,
    pub allowed_providers: Option<String>,
    pub allowed_models: Option<String>,
    pub request_limit: Option<String>,
    pub token_limit: Option<String>,
    pub daily_spend_limit: Option<String>,
    pub monthly_spend_limit: Option<String>,
    pub on_store_failure: Option<String>,
}

/// Why a key operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum KeyAdminError {
    /// The input breaks a rule (the message is the CLI's).
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    /// The store failed.
    #[error("{0}")]
    Failed(String),
}

impl KeyAdminError {
    fn refusal(&self) -> Refusal {
        let status = match self {
            KeyAdminError::Invalid(_) => StatusCode::BAD_REQUEST,
            KeyAdminError::NotFound(_) => StatusCode::NOT_FOUND,
            KeyAdminError::Failed(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        error(status, &self.to_string())
    }
}

/// Runs `f` with the key admin on the blocking pool.
async fn with_keys<T: Send + 'static>(
    gateway: &Gateway,
    f: impl FnOnce(&dyn KeyAdmin, Option<&Reader>) -> Result<T, Refusal> + Send + 'static,
) -> Result<T, Refusal> {
    let Some(keys) = gateway.key_admin.clone() else {
        return Err(error(
            StatusCode::NOT_FOUND,
            "access keys cannot be managed from this gateway",
        ));
    };
    let ledger = gateway.ledger.as_ref().map(|l| l.reader());
    match tokio::task::spawn_blocking(move || f(keys.as_ref(), ledger.as_deref())).await {
        Ok(result) => result,
        Err(err) => Err(error(StatusCode::INTERNAL_SERVER_ERROR, &err.to_string())),
    }
}

/// `GET /ui/api/keys`: every key with its usage against its limits.
pub async fn list(gateway: &Gateway) -> Result<Value, Refusal> {
    with_keys(gateway, |keys, ledger| {
        let list = keys.list().map_err(|err| err.refusal())?;
        let mut usage = Usage {
            reader: ledger,
            since: HashMap::new(),
        };
        let now = SystemTime::now();
        let mut rows = Vec::with_capacity(list.len());
        for key in list {
            let mut row = key.json.clone();
            row["usage"] = usage.of(&key, now)?;
            rows.push(row);
        }
        Ok(json!({ "keys": rows, "ledger": ledger.is_some() }))
    })
    .await
}

/// `POST /ui/api/keys`.
pub async fn create(gateway: &Gateway, body: &[u8]) -> Result<Value, Refusal> {
    let form: NewKeyForm = serde_json::from_slice(body)
        .map_err(|err| error(StatusCode::BAD_REQUEST, &format!("invalid key form: {err}")))?;
    with_keys(gateway, move |keys, _| {
        keys.create(&form).map_err(|err| err.refusal())
    })
    .await
}

/// `PATCH /ui/api/keys/ID` with `{"disabled": true|false}`.
pub async fn update(gateway: &Gateway, id: String, body: &[u8]) -> Result<Value, Refusal> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Change {
        disabled: bool,
    }
    let change: Change = serde_json::from_slice(body).map_err(|err| {
        error(
            StatusCode::BAD_REQUEST,
            &format!("expected {{\"disabled\": true|false}}: {err}"),
        )
    })?;
    with_keys(gateway, move |keys, _| {
        keys.set_disabled(&id, change.disabled)
            .map_err(|err| err.refusal())
    })
    .await
}

/// `DELETE /ui/api/keys/ID`.
pub async fn delete(gateway: &Gateway, id: String) -> Result<Value, Refusal> {
    with_keys(gateway, move |keys, _| {
        keys.delete(&id).map_err(|err| err.refusal())?;
        Ok(json!({ "deleted": id }))
    })
    .await
}

/// Ledger totals per key since a time, each read once per listing.
struct Usage<'a> {
    reader: Option<&'a Reader>,
    since: HashMap<SystemTime, HashMap<String, Totals>>,
}

impl Usage<'_> {
    fn totals(&mut self, id: &str, since: SystemTime) -> Result<Totals, Refusal> {
        let Some(reader) = self.reader else {
            return Ok(Totals::default());
        };
        let totals = match self.since.entry(since) {
            std::collections::hash_map::Entry::Occupied(entry) => entry.into_mut(),
            std::collections::hash_map::Entry::Vacant(entry) => entry.insert(
                reader
                    .key_totals(since)
                    .map_err(|err| error(StatusCode::INTERNAL_SERVER_ERROR, &err.to_string()))?,
            ),
        };
        Ok(totals.get(id).copied().unwrap_or_default())
    }

    /// Today's totals and one bar per limit the key has.
    fn of(&mut self, key: &ManagedKey, now: SystemTime) -> Result<Value, Refusal> {
        let day = aligned(now, Duration::from_secs(86_400));
        let today = self.totals(&key.id, day)?;
        let mut budgets = Vec::new();
        if let Some((limit, window)) = key.request_limit {
            let used = self.totals(&key.id, now - window)?.requests;
            budgets.push(bar("requests", rate(limit, window), used, limit));
        }
        if let Some((limit, window)) = key.token_limit {
            let totals = self.totals(&key.id, aligned(now, window))?;
            let used = totals.input_tokens + totals.output_tokens;
            budgets.push(bar("tokens", rate(limit, window), used, limit));
        }
        if let Some(limit) = key.daily_spend_micros {
            budgets.push(bar(
                "daily_spend",
                "per UTC day".into(),
                today.cost_micros,
                limit,
            ));
        }
        if let Some(limit) = key.monthly_spend_micros {
            let used = self.totals(&key.id, month_start(now))?.cost_micros;
            budgets.push(bar("monthly_spend", "per UTC month".into(), used, limit));
        }
        Ok(json!({
            "today": {
                "requests": today.requests,
                "errors": today.errors,
                "input_tokens": today.input_tokens,
                "output_tokens": today.output_tokens,
                "cost_micros": today.cost_micros,
                "cost_usd": today.cost_usd(),
            },
            "budgets": budgets,
        }))
    }
}

/// One budget bar; spend is in micro-USD.
fn bar(kind: &str, window: String, used: u64, limit: u64) -> Value {
    json!({ "kind": kind, "window": window, "used": used, "limit": limit })
}

/// `100/min`, as the CLI shows a rate.
fn rate(count: u64, window: Duration) -> String {
    let unit = match window.as_secs() {
        1 => "s",
        60 => "min",
        3_600 => "h",
        86_400 => "day",
        other => return format!("{count}/{other}s"),
    };
    format!("{count}/{unit}")
}

/// The start of the window of `length` (aligned to the Unix epoch) holding `now`.
fn aligned(now: SystemTime, length: Duration) -> SystemTime {
    let since_epoch = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let length = length.as_secs().max(1);
    UNIX_EPOCH + Duration::from_secs(since_epoch - since_epoch % length)
}

/// Midnight UTC on the first of `now`'s month.
fn month_start(now: SystemTime) -> SystemTime {
    let now: DateTime<Utc> = now.into();
    Utc.with_ymd_and_hms(now.year(), now.month(), 1, 0, 0, 0)
        .single()
        .map_or(now.into(), Into::into)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_align_to_utc() {
        let at = |text: &str| -> SystemTime { DateTime::parse_from_rfc3339(text).unwrap().into() };
        let now = at("2026-03-17T13:45:12Z");
        assert_eq!(month_start(now), at("2026-03-01T00:00:00Z"));
        assert_eq!(
            aligned(now, Duration::from_secs(3_600)),
            at("2026-03-17T13:00:00Z")
        );
        assert_eq!(
            aligned(now, Duration::from_secs(86_400)),
            at("2026-03-17T00:00:00Z")
        );
        assert_eq!(rate(100, Duration::from_secs(60)), "100/min");
    }
}
