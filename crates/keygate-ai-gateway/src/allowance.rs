//! The output budget of one call as its metered stream sees it: output past what is granted is
//! held until more is granted, and a stream whose budget is spent ends with an error event in
//! the surface's format instead of a reset.

use crate::upstream::BoxFuture;

/// Grants output tokens to a running call.
pub trait Allowance: Send + Sync {
    /// Output tokens granted before the call started.
    fn granted(&self) -> u64;

    /// Asks for about `more` output tokens beyond those granted so far: resolves to the tokens
    /// granted (at least 1), or why none are left.
    fn extend(&self, more: u64) -> BoxFuture<'static, Result<u64, Exhausted>>;
}

/// Why an [`Allowance`] grants nothing more: the stream ends with this error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exhausted {
    /// The error `type` (`rate_limit_error`).
    pub kind: &'static str,
    /// The gateway's error code.
    pub code: &'static str,
    /// Names the key and the limit, never a secret.
    pub message: String,
}
