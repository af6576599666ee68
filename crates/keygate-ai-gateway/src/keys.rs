//! Where the keys of an attempt come from. The runtime only asks, once per candidate and only
//! when the loop reaches it, so a key source that evaluates templates or looks keys up pays for
//! the candidates actually tried.

use keygate_ai::Candidate;

/// A credential for one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    pub value: String,
    /// Owned by the gateway (configured, attached to an access key...), as opposed to the
    /// client's own key passed through: account-scoped client headers are then not forwarded.
    pub server: bool,
}

/// The keys to try for a candidate, in order.
pub trait KeySource {
    /// Why keys could not be produced; handed back unchanged in `CallError::Key`.
    type Error;

    /// `Some(keys)`: one attempt per entry, `None` meaning "send no credential" (a provider that
    /// needs none). `Ok(None)`: the candidate needs a key and there is none; the loop records it
    /// and moves on to the next candidate.
    fn keys(&self, candidate: &Candidate) -> Result<Option<Vec<Option<Credential>>>, Self::Error>;
}
