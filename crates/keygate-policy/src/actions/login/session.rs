//! What the two sealed cookies hold: a signed-in session, and a login in progress (state, nonce,
//! PKCE verifier and where to go back to). Also the session's result variables.

use std::collections::HashMap;

use keygate_cel::Value;
use serde::{Deserialize, Serialize};

use super::cookies::Sealer;
use super::idp::{Identity, Tokens};

/// Browsers keep cookies up to 4096 bytes (name, value and attributes): a session whose tokens
/// would not fit drops the least needed ones.
const MAX_COOKIE_VALUE: usize = 3800;

/// A login in progress; lives at most [`Pending::LIFETIME`] seconds.
#[derive(Serialize, Deserialize)]
pub(super) struct Pending {
    pub state: String,
    pub nonce: String,
    pub verifier: String,
    /// Path (and query) to return to once signed in.
    pub return_to: String,
    pub created: i64,
}

impl Pending {
    /// Seconds a login may take, from the redirect to the provider until the callback.
    pub const LIFETIME: i64 = 600;
}

/// A signed-in session. Field names are short: the whole value travels in every request.
#[derive(Serialize, Deserialize, Clone, Default)]
pub(super) struct Session {
    #[serde(rename = "i")]
    pub id: String,
    #[serde(rename = "e")]
    pub email: String,
    #[serde(rename = "n")]
    pub name: String,
    #[serde(rename = "s", default)]
    pub provider_session: String,
    /// When the user signed in (Unix seconds).
    #[serde(rename = "c")]
    pub created: i64,
    /// Last activity the cookie records (renewed at most every few seconds of idle timeout).
    #[serde(rename = "a")]
    pub active: i64,
    /// When userinfo was last read.
    #[serde(rename = "u")]
    pub userinfo_at: i64,
    #[serde(rename = "at", default, skip_serializing_if = "Option::is_none")]
    pub access_token: Option<String>,
    #[serde(rename = "rt", default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// Kept for the `id_token_hint` of an OpenID Connect logout.
    #[serde(rename = "it", default, skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
    /// When the access token expires (Unix seconds).
    #[serde(rename = "x", default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
}

impl Session {
    /// A session starting `now` for `identity`, with the tokens the provider gave.
    pub fn new(identity: Identity, tokens: Tokens, now: i64) -> Self {
        Self {
            id: identity.id,
            email: identity.email,
            name: identity.name,
            provider_session: identity.provider_session,
            created: now,
            active: now,
            userinfo_at: now,
            access_token: tokens.access_token,
            refresh_token: tokens.refresh_token,
            id_token: tokens.id_token,
            expires_at: tokens.expires_in.map(|secs| now.saturating_add(secs)),
        }
    }

    /// Replaces who this is with a fresh userinfo reading.
    pub fn update(&mut self, identity: Identity, now: i64) {
        self.email = identity.email;
        self.name = identity.name;
        self.userinfo_at = now;
    }

    /// The sealed cookie value; tokens that would make it too large for a browser are dropped
    /// (refresh token first, then the ID token, then the access token).
    pub fn seal(&self, sealer: &Sealer, name: &str) -> String {
        let mut session = self.clone();
        loop {
            let sealed = sealer.seal(name, &session);
            if sealed.len() <= MAX_COOKIE_VALUE {
                return sealed;
            }
            if session.refresh_token.take().is_none()
                && session.id_token.take().is_none()
                && session.access_token.take().is_none()
            {
                return sealed;
            }
        }
    }

    /// `actions.ngrok.<oauth|oidc>` for a request with this session.
    pub fn results(&self, userinfo_refreshed: bool) -> Value {
        let text = |s: &str| Value::from(s.to_owned());
        let expires_at = self
            .expires_at
            .and_then(|at| chrono::DateTime::from_timestamp(at, 0))
            .map(|at| at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .unwrap_or_default();
        Value::from(HashMap::from([
            (
                "identity",
                Value::from(HashMap::from([
                    ("id", text(&self.id)),
                    ("email", text(&self.email)),
                    ("name", text(&self.name)),
                    ("provider_user_id", text(&self.id)),
                    ("current_provider_session_id", text(&self.provider_session)),
                ])),
            ),
            (
                "access_token",
                text(self.access_token.as_deref().unwrap_or_default()),
            ),
            (
                "refresh_token",
                text(self.refresh_token.as_deref().unwrap_or_default()),
            ),
            ("expires_at", Value::from(expires_at)),
            ("session_timed_out", Value::Bool(false)),
            ("session_max_duration_reached", Value::Bool(false)),
            ("userinfo_refreshed", Value::Bool(userinfo_refreshed)),
        ]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::SessionKey;

    #[test]
    fn oversized_tokens_are_dropped_to_fit_a_cookie() {
        let sealer = Sealer::new(&SessionKey::random(), "p");
        let identity = Identity {
            id: "u1".into(),
            email: "u@x.test".into(),
            name: "U".into(),
            provider_session: String::new(),
        };
        let tokens = Tokens {
            access_token: Some("a".repeat(1000)),
            refresh_token: Some("r".repeat(2000)),
            id_token: Some("i".repeat(1000)),
            expires_in: Some(60),
        };
        let session = Session::new(identity, tokens, 1_000);
        let sealed = session.seal(&sealer, "kg");
        assert!(sealed.len() <= MAX_COOKIE_VALUE);
        let opened: Session = sealer.open("kg", &sealed).unwrap();
        assert!(opened.refresh_token.is_none());
        assert_eq!(opened.access_token.as_deref().map(str::len), Some(1000));
        assert_eq!(opened.expires_at, Some(1_060));
    }
}
