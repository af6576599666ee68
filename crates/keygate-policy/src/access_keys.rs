//! Access keys at the door: when the policy's `ai-gateway` action sets `access_keys`, every
//! request's `kg-` token is checked before the first rule runs, so the rules (a `rate-limit`
//! bucketed by key, a rule branching on its metadata) see the key as the `access_key` variable.
//!
//! A token with the access-key shape is never treated as anything else: unknown, expired,
//! disabled or deleted is a 401, never a provider key passed through. The header that carried
//! it is removed from the request, so it cannot reach a provider or an `--upstream`.

use std::sync::Arc;

use http::header::{HeaderMap, HeaderValue, AUTHORIZATION, WWW_AUTHENTICATE};
use http::HeaderName;
use keygate_cel::Variable;
use keygate_keys::{AuthenticatedKey, KeyCache, Rejection, TOKEN_PREFIX};
use serde::Deserialize;
use serde_json::json;

use crate::error::{ErrorCode, GatewayError};
use crate::exchange::Exchange;

const X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");

/// The CEL variable holding the authenticated key: `id`, `name`, `description`, `metadata`,
/// `allowed_providers`, `allowed_models`.
pub const VARIABLE: &str = "access_key";

/// Looks up presented tokens (the key store's in-memory cache in a running gateway).
pub trait AccessKeys: Send + Sync {
    /// The key `token` names, or why it is refused.
    fn authenticate(&self, token: &[u8]) -> Result<Arc<AuthenticatedKey>, Rejection>;
}

impl AccessKeys for KeyCache {
    fn authenticate(&self, token: &[u8]) -> Result<Arc<AuthenticatedKey>, Rejection> {
        KeyCache::authenticate(self, token)
    }
}

/// `ai-gateway`'s `access_keys` (a Keygate extension).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccessKeyMode {
    /// Every request needs a valid access key: built-in authorization, no policy rule needed.
    Required,
    /// A `kg-` token is checked (and refused when invalid); requests without one go on to the
    /// policy's own rules, which may authorize them another way.
    Optional,
}

/// The check a compiled policy runs before its first rule.
pub(crate) struct AccessKeyCheck {
    pub keys: Arc<dyn AccessKeys>,
    pub mode: AccessKeyMode,
}

/// Which request headers carry the presented token.
struct Presented<'a> {
    token: &'a [u8],
    in_authorization: bool,
    in_x_api_key: bool,
}

impl AccessKeyCheck {
    /// Authenticates the exchange's access key, if any: on success the key is on the exchange,
    /// in its CEL scope and in its log, and the token's headers are gone from the request.
    pub(crate) fn run(&self, ex: &mut Exchange) -> Result<(), GatewayError> {
        let Some(presented) = presented(&ex.request.headers) else {
            return match self.mode {
                AccessKeyMode::Required => Err(refused(
                    "an access key is required: send it as 'Authorization: Bearer kg-...' or 'x-api-key: kg-...'",
                )),
                AccessKeyMode::Optional => {
                    // Rules can then test `access_key == null` instead of failing on a name
                    // that does not exist.
                    ex.set_extra(VARIABLE, Variable::new(keygate_cel::Value::Null));
                    Ok(())
                }
            };
        };
        let (in_authorization, in_x_api_key) = (presented.in_authorization, presented.in_x_api_key);
        let key = self
            .keys
            .authenticate(presented.token)
            .map_err(|rejection| refused(&format!("{} access key", rejected_as(rejection))))?;
        if in_authorization {
            ex.request.headers.remove(AUTHORIZATION);
        }
        if in_x_api_key {
            ex.request.headers.remove(X_API_KEY);
        }
        ex.log.access_key = Some(key.id().to_owned());
        ex.set_extra(VARIABLE, variable(&key));
        ex.access_key = Some(key);
        Ok(())
    }
}

/// The key as CEL sees it, made once per loaded key rather than per request.
fn variable(key: &AuthenticatedKey) -> Variable {
    let make = |key: &AuthenticatedKey| {
        Variable::new(keygate_cel::from_json(&json!({
            "id": key.id(),
            "name": key.display_name(),
            "description": key.description(),
            "metadata": key.metadata(),
            "allowed_providers": key.allowed_providers(),
            "allowed_models": key.allowed_models(),
        })))
    };
    key.derived(make).cloned().unwrap_or_else(|| make(key))
}

/// The access-key token the request presents: `Authorization: Bearer kg-...` (OpenAI SDKs,
/// current Anthropic SDKs) or `x-api-key: kg-...` (older Anthropic SDKs), read as the gateway reads
/// any client credential.
fn presented(headers: &HeaderMap) -> Option<Presented<'_>> {
    let is_key = |token: &&str| token.starts_with(TOKEN_PREFIX);
    let from_authorization = keygate_ai::bearer_token(headers).filter(is_key);
    let from_x_api_key = keygate_ai::header_token(headers, X_API_KEY.as_str()).filter(is_key);
    Some(Presented {
        token: from_authorization.or(from_x_api_key)?.as_bytes(),
        in_authorization: from_authorization.is_some(),
        in_x_api_key: from_x_api_key.is_some(),
    })
}

fn rejected_as(rejection: Rejection) -> &'static str {
    match rejection {
        Rejection::Unknown => "unknown or deleted",
        Rejection::Expired => "expired",
        Rejection::Disabled => "disabled",
    }
}

fn refused(message: &str) -> GatewayError {
    GatewayError::new(ErrorCode::AccessKeyInvalid, message).with_header(
        WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"keygate\""),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(n, v)| (HeaderName::from_static(n), HeaderValue::from_static(v)))
            .collect()
    }

    #[test]
    fn the_token_comes_from_bearer_or_x_api_key_and_only_with_the_key_prefix() {
        let h = headers(&[("authorization", "Bearer kg-abc")]);
        let p = presented(&h).unwrap();
        assert_eq!(
            (p.token, p.in_authorization, p.in_x_api_key),
            (&b"kg-abc"[..], true, false)
        );
        let h = headers(&[("x-api-key", "kg-xyz")]);
        let p = presented(&h).unwrap();
        assert_eq!(
            (p.token, p.in_authorization, p.in_x_api_key),
            (&b"kg-xyz"[..], false, true)
        );
        // Both carry one: Authorization wins and both headers are marked for removal.
        let h = headers(&[("authorization", "Bearer kg-a"), ("x-api-key", "kg-b")]);
        let p = presented(&h).unwrap();
        assert_eq!(
            (p.token, p.in_authorization, p.in_x_api_key),
            (&b"kg-a"[..], true, true)
        );
        // The scheme is case-insensitive, as for every client credential.
        let h = headers(&[("authorization", "bearer kg-low")]);
        assert_eq!(presented(&h).unwrap().token, b"kg-low");
        for other in [
            headers(&[("authorization", "Bearer sk-provider-key")]),
            headers(&[("authorization", "kg-without-bearer")]),
            headers(&[("x-api-key", "sk-ant-key")]),
            HeaderMap::new(),
        ] {
            assert!(presented(&other).is_none());
        }
    }

    #[test]
    fn refusals_are_401_with_a_challenge_and_name_the_reason() {
        let err = refused(&format!("{} access key", rejected_as(Rejection::Expired)));
        assert_eq!(err.status(), http::StatusCode::UNAUTHORIZED);
        assert_eq!(err.code.as_str(), "ERR_KEYGATE_27007");
        assert_eq!(err.message, "expired access key");
        assert!(err.headers.iter().any(|(n, _)| n == WWW_AUTHENTICATE));
    }
}
