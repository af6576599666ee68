//! What one call leaves behind for the access log and the token metrics: which provider and
//! model answered, how many attempts it took, and the token usage the metered body fills in
//! while the response passes (so the counts are final only once the body has ended).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use keygate_ai::{Pricing, TokenUsage};

/// What one call did.
#[derive(Debug, Clone, Default)]
pub struct AiRecord {
    pub provider: String,
    pub model: String,
    /// The answering model's catalog price, for the cost of the call.
    pub pricing: Option<Pricing>,
    /// Upstream attempts made (1 when the first try succeeded).
    pub attempts: u32,
    /// Time from the start of the first attempt to the first response byte.
    pub time_to_first_token: Option<Duration>,
    /// Token counts, filled in as the (possibly streamed) response passes.
    pub usage: Arc<Usage>,
}

/// Token usage read from a response; updated while a stream passes, `complete` when it ended.
#[derive(Debug, Default)]
pub struct Usage {
    /// Input tokens, prompt-cache reads and writes included.
    pub input_tokens: AtomicU64,
    pub output_tokens: AtomicU64,
    /// Input tokens read from the provider's prompt cache (part of `input_tokens`).
    pub cached_input_tokens: AtomicU64,
    /// Output tokens spent on reasoning (part of `output_tokens`).
    pub reasoning_tokens: AtomicU64,
    /// The counts are the gateway's estimate: the provider reported none.
    pub estimated: AtomicBool,
    pub complete: AtomicBool,
    /// Set when the provider's response broke off (or carried an error event) after its head
    /// went to the client.
    pub broken: OnceLock<BrokenStream>,
}

/// A provider response that ended before its end, or with an error event: why, and how far it
/// got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokenStream {
    pub cause: StreamFailure,
    /// Stream events received before it ended (0 for a body that is not an event stream).
    pub events: u64,
}

/// Why a provider response ended early. The texts go to the access log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamFailure {
    #[error("upstream stream ended early: connection reset")]
    Reset,
    #[error("upstream stream ended early: the connection closed before the end of the stream")]
    Closed,
    #[error("upstream stream ended early: {0}")]
    Read(String),
    #[error("upstream sent nothing for {} ms", .0.as_millis())]
    Idle(Duration),
    /// The body ended as HTTP frames it, but without the surface's final event (`[DONE]`,
    /// `message_stop`, ...): the provider stopped partway.
    #[error("stream ended before its final event")]
    Unfinished,
    /// The gateway ended the stream: its output budget was spent.
    #[error("stream ended by the gateway: {0}")]
    Cut(String),
    /// The provider sent an error event (`event: error`, `event: response.failed`, or a chunk
    /// holding `error`), however the stream ended after it.
    #[error("upstream sent an error event")]
    ErrorEvent,
}

impl Usage {
    /// Records the provider-reported counts (absent ones as 0).
    pub fn record(&self, reported: TokenUsage) {
        self.input_tokens
            .store(reported.input.unwrap_or(0), Ordering::Relaxed);
        self.output_tokens
            .store(reported.output.unwrap_or(0), Ordering::Relaxed);
        self.cached_input_tokens
            .store(reported.cached.unwrap_or(0), Ordering::Relaxed);
        self.reasoning_tokens
            .store(reported.reasoning.unwrap_or(0), Ordering::Relaxed);
    }
}
