//! [`UsageEvent`]: what the ledger keeps of one AI request.

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize, Serializer};

use crate::cost::usd;
use crate::time::{millis, rfc3339};

/// One AI request, as the gateway settled it: who asked, which provider and model answered, the
/// tokens, the cost and how long it took.
#[derive(Debug, Clone, PartialEq)]
pub struct UsageEvent {
    /// When the request arrived.
    pub time: SystemTime,
    pub request_id: String,
    /// The id (`aigk_...`) of the access key the request authenticated with; never a token.
    pub access_key: Option<String>,
    pub provider: String,
    pub model: String,
    /// The status the client received (a stream that broke off keeps its head's status and
    /// carries `error`).
    pub status: u16,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Input tokens the provider served from its prompt cache.
    pub cached_tokens: u64,
    /// Output tokens spent on reasoning.
    pub reasoning_tokens: u64,
    pub usage_source: UsageSource,
    /// Micro-USD ([`crate::cost_micros`]); `None` when the request used tokens of a model
    /// without a price.
    pub cost_micros: Option<u64>,
    /// From arrival to the end of the response body.
    pub latency: Duration,
    pub time_to_first_token: Option<Duration>,
    /// Upstream attempts made (1 when the first try succeeded).
    pub attempts: u32,
    /// Why the request failed or its response broke off.
    pub error: Option<String>,
    /// Every upstream attempt, in order: which provider, model and (redacted) key was tried and
    /// how it ended. Empty for rows written before the ledger kept them.
    pub tried: Vec<Attempt>,
}

/// One upstream attempt of a request. Never a whole key, a secret or a body: the key is its
/// redacted form, the failure a status line or an error message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    pub provider: String,
    pub model: String,
    /// The provider key sent, redacted (`sk-proj...7890`); `None` when none was sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<String>,
    pub outcome: AttemptOutcome,
    /// The upstream status; 0 when no response came.
    pub status: u16,
    /// Why it failed: `429 Too Many Requests`, `per-request timeout`, a connection error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// From the attempt's start to the first response byte.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_to_first_byte_ms: Option<f64>,
    /// From the attempt's start to its end (for the answering attempt: its response head).
    pub duration_ms: f64,
}

/// How an [`Attempt`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptOutcome {
    /// A 2xx/3xx answer: this attempt served the request.
    Success,
    /// An HTTP status that is not a success.
    Status,
    /// The per-request timeout (or what was left of the total) ran out.
    Timeout,
    /// Connecting, TLS or the protocol failed.
    Unreachable,
    /// The provider needs a key and none was found: no request was sent.
    NoKey,
}

/// Where the token counts came from. Stored as the text `provider` or `estimated`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum UsageSource {
    /// Reported by the provider in its response.
    Provider,
    /// Counted by Keygate because the provider reported none.
    Estimated,
}

impl UsageSource {
    /// The stored text.
    pub fn as_str(self) -> &'static str {
        match self {
            UsageSource::Provider => "provider",
            UsageSource::Estimated => "estimated",
        }
    }

    /// The source stored as `text`, if it is one.
    pub fn parse(text: &str) -> Option<UsageSource> {
        match text {
            "provider" => Some(UsageSource::Provider),
            "estimated" => Some(UsageSource::Estimated),
            _ => None,
        }
    }
}

/// The JSON of one event (`GET /v1/usage/events`): times in RFC 3339, durations in milliseconds,
/// the cost in micro-USD and, for display, USD.
#[derive(Serialize)]
struct EventJson<'a> {
    time: String,
    request_id: &'a str,
    access_key: Option<&'a str>,
    provider: &'a str,
    model: &'a str,
    status: u16,
    input_tokens: u64,
    output_tokens: u64,
    cached_tokens: u64,
    reasoning_tokens: u64,
    usage_source: UsageSource,
    cost_micros: Option<u64>,
    cost_usd: Option<f64>,
    latency_ms: f64,
    time_to_first_token_ms: Option<f64>,
    attempts: u32,
    error: Option<&'a str>,
    #[serde(skip_serializing_if = "<[Attempt]>::is_empty")]
    tried: &'a [Attempt],
}

impl Serialize for UsageEvent {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        EventJson {
            time: rfc3339(self.time),
            request_id: &self.request_id,
            access_key: self.access_key.as_deref(),
            provider: &self.provider,
            model: &self.model,
            status: self.status,
            input_tokens: self.input_tokens,
            output_tokens: self.output_tokens,
            cached_tokens: self.cached_tokens,
            reasoning_tokens: self.reasoning_tokens,
            usage_source: self.usage_source,
            cost_micros: self.cost_micros,
            cost_usd: self.cost_micros.map(usd),
            latency_ms: millis(self.latency),
            time_to_first_token_ms: self.time_to_first_token.map(millis),
            attempts: self.attempts,
            error: self.error.as_deref(),
            tried: &self.tried,
        }
        .serialize(serializer)
    }
}
