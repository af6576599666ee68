//! Credentials: reading the client's key, redacting keys for logs and result variables, and the
//! headers sent upstream (client headers minus credentials, plus the provider credential in the
//! format's header). Hop-by-hop headers are the HTTP client's to remove
//! (`keygate_http::strip_hop_by_hop`).

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION};

use crate::ApiFormat;

/// The Anthropic API version sent when the client named none.
pub const DEFAULT_ANTHROPIC_VERSION: &str = "2023-06-01";

/// Client headers never forwarded upstream: the body is rewritten and re-framed, and
/// credentials belong to the client.
const DROPPED: [&str; 8] = [
    "host",
    "content-length",
    "expect",
    "authorization",
    "x-api-key",
    "api-key",
    "cookie",
    // The gateway reads usage out of response bodies, so it asks for them uncompressed.
    "accept-encoding",
];

/// Client headers dropped when server-side keys are used (they belong to the client's account).
const ACCOUNT_HEADERS: [&str; 2] = ["openai-organization", "openai-project"];

/// The client's own credential: `Authorization: Bearer <key>`, else `x-api-key`, else `api-key`.
pub fn client_credential(headers: &HeaderMap) -> Option<String> {
    bearer_token(headers)
        .or_else(|| header_token(headers, "x-api-key"))
        .or_else(|| header_token(headers, "api-key"))
        .map(str::to_owned)
}

/// The token of `Authorization: Bearer <token>` (the scheme in any case, the token trimmed).
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.get(..7)
                .filter(|p| p.eq_ignore_ascii_case("bearer "))
                .map(|_| v[7..].trim())
        })
        .filter(|v| !v.is_empty())
}

/// The trimmed, non-empty value of the header `name` (`x-api-key`, `api-key`).
pub fn header_token<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// A key shown safely: its first 7 and last 4 characters (`sk-proj...7890`) when it is long
/// enough that this hides most of it, otherwise only `...`.
pub fn redact(key: &str) -> String {
    let count = key.chars().count();
    if count < 20 {
        return "...".to_owned();
    }
    let boundary = |n: usize| key.char_indices().nth(n).map_or(key.len(), |(i, _)| i);
    let (head, tail) = (&key[..boundary(7)], &key[boundary(count - 4)..]);
    let mut out = String::with_capacity(head.len() + 3 + tail.len());
    out.push_str(head);
    out.push_str("...");
    out.push_str(tail);
    out
}

/// Why a key cannot be sent in a header.
#[derive(Debug, Clone, Copy, thiserror::Error, PartialEq, Eq)]
#[error("the provider key contains characters that are not allowed in an HTTP header")]
pub struct InvalidKey;

/// The headers for an upstream request: the client's, minus dropped ones; `server_keys` also
/// drops account-scoped OpenAI headers. Anthropic-format requests get a default `anthropic-version`.
pub fn upstream_headers(client: &HeaderMap, format: ApiFormat, server_keys: bool) -> HeaderMap {
    let mut out = HeaderMap::with_capacity(client.len() + 2);
    for (name, value) in client {
        let lower = name.as_str();
        if DROPPED.contains(&lower) || (server_keys && ACCOUNT_HEADERS.contains(&lower)) {
            continue;
        }
        out.append(name.clone(), value.clone());
    }
    if format == ApiFormat::Anthropic && !out.contains_key("anthropic-version") {
        out.insert(
            HeaderName::from_static("anthropic-version"),
            HeaderValue::from_static(DEFAULT_ANTHROPIC_VERSION),
        );
    }
    out
}

/// Sets the provider credential: `x-api-key` for the Anthropic format, `Authorization: Bearer`
/// otherwise. The value is marked sensitive so HTTP libraries never print it.
pub fn set_credential(
    headers: &mut HeaderMap,
    format: ApiFormat,
    key: &str,
) -> Result<(), InvalidKey> {
    let (name, scheme) = match format {
        ApiFormat::Anthropic => (HeaderName::from_static("x-api-key"), ""),
        ApiFormat::OpenAi => (AUTHORIZATION, "Bearer "),
    };
    let mut text = Vec::with_capacity(scheme.len() + key.len());
    text.extend_from_slice(scheme.as_bytes());
    text.extend_from_slice(key.as_bytes());
    let mut value = HeaderValue::from_maybe_shared(Bytes::from(text)).map_err(|_| InvalidKey)?;
    value.set_sensitive(true);
    headers.insert(name, value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        map
    }

    #[test]
    fn finds_the_client_credential() {
        assert_eq!(
            client_credential(&headers(&[("authorization", "Bearer kg-abc")])).as_deref(),
            Some("kg-abc")
        );
        assert_eq!(
            client_credential(&headers(&[("authorization", "bearer  kg-abc ")])).as_deref(),
            Some("kg-abc")
        );
        assert_eq!(
            client_credential(&headers(&[("x-api-key", "sk-ant")])).as_deref(),
            Some("sk-ant")
        );
        assert_eq!(
            client_credential(&headers(&[
                ("authorization", "Basic eA=="),
                ("x-api-key", "k")
            ]))
            .as_deref(),
            Some("k")
        );
        assert_eq!(
            client_credential(&headers(&[("authorization", "Bearer ")])),
            None
        );
        assert_eq!(client_credential(&HeaderMap::new()), None);
    }

    #[test]
    fn redaction_shows_at_most_seven_and_four() {
        assert_eq!(redact("sk-proj-abcdefghijklmnop7890"), "sk-proj...7890");
        assert_eq!(redact("short-key"), "...");
        assert_eq!(redact(""), "...");
        // Characters, not bytes: a multi-byte key is cut on character boundaries.
        assert_eq!(redact("ключ-абвгдежзийклмнопрст"), "ключ-аб...прст");
    }

    #[test]
    fn client_auth_never_goes_upstream() {
        let client = headers(&[
            ("authorization", "Bearer gateway-token"),
            ("x-api-key", "gateway-token"),
            ("host", "gw"),
            ("accept-encoding", "gzip"),
            ("openai-organization", "org-1"),
            ("x-request-id", "r1"),
            ("anthropic-beta", "tools"),
            ("expect", "100-continue"),
        ]);
        let mut out = upstream_headers(&client, ApiFormat::Anthropic, true);
        assert!(
            out.get("authorization").is_none()
                && out.get("x-api-key").is_none()
                && out.get("host").is_none()
        );
        assert!(out.get("accept-encoding").is_none() && out.get("openai-organization").is_none());
        assert!(out.get("expect").is_none());
        assert_eq!(out["x-request-id"], "r1");
        assert_eq!(out["anthropic-beta"], "tools");
        assert_eq!(out["anthropic-version"], DEFAULT_ANTHROPIC_VERSION);
        set_credential(&mut out, ApiFormat::Anthropic, "sk-ant-server").unwrap();
        assert_eq!(out["x-api-key"], "sk-ant-server");
        assert!(out["x-api-key"].is_sensitive());
        let passthrough = upstream_headers(&client, ApiFormat::OpenAi, false);
        assert_eq!(passthrough["openai-organization"], "org-1");
        assert!(passthrough.get("anthropic-version").is_none());
        let mut openai = HeaderMap::new();
        set_credential(&mut openai, ApiFormat::OpenAi, "sk-server").unwrap();
        assert_eq!(openai["authorization"], "Bearer sk-server");
        assert_eq!(
            set_credential(&mut openai, ApiFormat::OpenAi, "bad\nkey"),
            Err(InvalidKey)
        );
    }

    #[test]
    fn client_anthropic_version_is_kept() {
        let out = upstream_headers(
            &headers(&[("anthropic-version", "2024-01-01")]),
            ApiFormat::Anthropic,
            true,
        );
        assert_eq!(out["anthropic-version"], "2024-01-01");
    }
}
