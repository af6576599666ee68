//! The admin token: what the dashboard's JSON API (`/ui/api/*`) and the usage API
//! (`/v1/usage*`, unless `--open-usage-api`) require as `Authorization: Bearer`. It is a value
//! (the token file's) or a vault secret read through the secret cache on every check, so
//! rotating the secret takes effect within the cache's refresh. Compared in constant time.

use std::sync::Arc;

use http::{HeaderMap, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::gateway::Gateway;

/// Where the admin token comes from.
#[derive(Debug, Clone)]
pub enum AdminToken {
    /// The token itself (read from `--admin-token-file`).
    Value(Arc<SecretString>),
    /// A vault secret (`--admin-token-secret VAULT/NAME`), read on every check.
    Secret { vault: String, name: String },
}

/// Why a request was refused: its status and JSON body.
pub type Refusal = (StatusCode, String);

/// `Ok` when `headers` carry the admin token (or none is configured).
pub fn check(gateway: &Gateway, headers: &HeaderMap) -> Result<(), Refusal> {
    let Some(token) = &gateway.config.admin_token else {
        return Ok(());
    };
    let expected = match token {
        AdminToken::Value(value) => value.clone(),
        AdminToken::Secret { vault, name } => match gateway.deps.secrets.get(vault, name) {
            Ok(value) => value,
            Err(err) => {
                tracing::warn!(error = %err, "the admin token secret cannot be read");
                return Err(error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &format!("the admin token cannot be read: {err}"),
                ));
            }
        },
    };
    let given = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    match given {
        Some(given) if same(given.as_bytes(), expected.expose_secret().as_bytes()) => Ok(()),
        Some(_) => Err(unauthorized("invalid admin token")),
        None => Err(unauthorized(
            "missing admin token: send Authorization: Bearer <admin token> (the file \
             DATA_DIR/admin-token unless --admin-token-file or --admin-token-secret says otherwise)",
        )),
    }
}

/// Constant-time equality that does not reveal the expected token's length either: both sides
/// are hashed first.
fn same(given: &[u8], expected: &[u8]) -> bool {
    let given = Sha256::digest(given);
    let expected = Sha256::digest(expected);
    given.ct_eq(&expected).into()
}

fn unauthorized(message: &str) -> Refusal {
    error(StatusCode::UNAUTHORIZED, message)
}

/// The repo's JSON error shape: `{"error": {"message": ...}}`.
pub fn error(status: StatusCode, message: &str) -> Refusal {
    (status, json!({"error": {"message": message}}).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_whole() {
        assert!(same(b"kgadm-abc", b"kgadm-abc"));
        assert!(!same(b"kgadm-ab", b"kgadm-abc"));
        assert!(!same(b"", b"kgadm-abc"));
        assert!(!same(b"kgadm-abd", b"kgadm-abc"));
    }
}
