//! What one call leaves behind for the access log and the token metrics: which provider and
//! model answered, how many attempts it took, and the token usage the metered body fills in
//! while the response passes (so the counts are final only once the body has ended).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// What one call did.
#[derive(Debug, Clone)]
pub struct AiRecord {
    pub provider: String,
    pub model: String,
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
    pub input_tokens: AtomicU64,
    pub output_tokens: AtomicU64,
    pub complete: AtomicBool,
    /// Set when the provider's response broke off after its head went to the client.
    pub broken: OnceLock<BrokenStream>,
}

/// A provider response that ended before its end: why, and how far it got.
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
}

impl Usage {
    /// Records the provider-reported counts.
    pub fn record(&self, input: u64, output: u64) {
        self.input_tokens.store(input, Ordering::Relaxed);
        self.output_tokens.store(output, Ordering::Relaxed);
    }
}
