//! The `jwt-validation` config as written (ngrok's schema) and the load-time checks that need no
//! CEL: algorithms, token locations and JWKS URLs (both documented shapes of `jws.keys`).

use http::Uri;
use jsonwebtoken::Algorithm;
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Config {
    pub issuer: AllowList,
    pub audience: Option<AllowList>,
    pub http: HttpConfig,
    pub jws: JwsConfig,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AllowList {
    pub allow_list: Vec<AllowValue>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AllowValue {
    pub value: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct HttpConfig {
    pub tokens: Vec<TokenConfig>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TokenConfig {
    #[serde(rename = "type")]
    pub kind: String,
    pub method: String,
    pub name: String,
    pub prefix: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct JwsConfig {
    pub allowed_algorithms: Vec<String>,
    /// An object or a list of objects: interpreted by [`jwks_urls`].
    pub keys: serde_json::Value,
}

/// A problem at `field` (relative to the action's `config`).
#[derive(Debug, PartialEq)]
pub(super) struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Where a token is read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Method {
    Header,
    Body,
}

impl Method {
    /// `header` or `body`, as in the config and in `location` results.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Header => "header",
            Method::Body => "body",
        }
    }
}

const TOKEN_TYPES: [&str; 6] = [
    "jwt",
    "access_token",
    "id_token",
    "at+jwt",
    "it+jwt",
    "plain",
];
const ALGORITHMS: [(&str, Algorithm); 9] = [
    ("RS256", Algorithm::RS256),
    ("RS384", Algorithm::RS384),
    ("RS512", Algorithm::RS512),
    ("PS256", Algorithm::PS256),
    ("PS384", Algorithm::PS384),
    ("PS512", Algorithm::PS512),
    ("ES256", Algorithm::ES256),
    ("ES384", Algorithm::ES384),
    ("EdDSA", Algorithm::EdDSA),
];
/// At most this many JWKS URLs (ngrok's limit on key sources).
const MAX_JKUS: usize = 100;

/// The JOSE algorithm called `name`, if Keygate verifies it (asymmetric algorithms only).
pub(super) fn algorithm(name: &str) -> Option<Algorithm> {
    ALGORITHMS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, alg)| *alg)
}

/// Checks `jws.allowed_algorithms`: known asymmetric algorithms, never `none` or HMAC.
pub(super) fn allowed_algorithms(names: &[String]) -> Result<Vec<Algorithm>, FieldError> {
    if names.is_empty() {
        return Err(FieldError::new(
            "jws.allowed_algorithms",
            "list at least one algorithm, e.g. RS256",
        ));
    }
    let mut algorithms = Vec::with_capacity(names.len());
    for (i, name) in names.iter().enumerate() {
        let field = format!("jws.allowed_algorithms[{i}]");
        let alg = algorithm(name).ok_or_else(|| {
            let message = if name.eq_ignore_ascii_case("none") {
                "'none' is never allowed: tokens must be signed".to_owned()
            } else if name.to_ascii_uppercase().starts_with("HS") {
                format!("'{name}' is not supported: keys come from JWKS URLs, so only asymmetric algorithms can be verified")
            } else {
                let known: Vec<&str> = ALGORITHMS.iter().map(|(n, _)| *n).collect();
                format!("unknown algorithm '{name}': expected one of {}", known.join(", "))
            };
            FieldError::new(&field, message)
        })?;
        if !algorithms.contains(&alg) {
            algorithms.push(alg);
        }
    }
    Ok(algorithms)
}

/// Checks one `http.tokens[i]` entry (type, method, name) and returns its method.
pub(super) fn token_method(i: usize, token: &TokenConfig) -> Result<Method, FieldError> {
    let field = |name: &str| format!("http.tokens[{i}].{name}");
    if !TOKEN_TYPES.contains(&token.kind.as_str()) {
        return Err(FieldError::new(
            field("type"),
            format!(
                "unknown token type '{}': expected one of {}",
                token.kind,
                TOKEN_TYPES.join(", ")
            ),
        ));
    }
    if token.name.trim().is_empty() {
        return Err(FieldError::new(
            field("name"),
            "name the header or body field that carries the token",
        ));
    }
    match token.method.as_str() {
        "header" => Ok(Method::Header),
        "body" => Ok(Method::Body),
        "query" => Err(FieldError::new(
            field("method"),
            "tokens in query parameters are not supported: use header or body",
        )),
        other => Err(FieldError::new(
            field("method"),
            format!("unknown method '{other}': expected header or body"),
        )),
    }
}

/// The JWKS URLs of `jws.keys`, in order. Accepts `{sources: {additional_jkus: [...]}}` and
/// `[{identification: [{token_claims: [kid]}], sources: [{additional_jkus: [...]}]}]`
/// (and either of `sources`/`identification` as an object or a list in both).
pub(super) fn jwks_urls(keys: &serde_json::Value) -> Result<Vec<Uri>, FieldError> {
    let mut urls = Vec::new();
    match keys {
        serde_json::Value::Object(_) => key_entry("jws.keys", keys, &mut urls)?,
        serde_json::Value::Array(entries) => {
            for (i, entry) in entries.iter().enumerate() {
                key_entry(&format!("jws.keys[{i}]"), entry, &mut urls)?;
            }
        }
        _ => {
            return Err(FieldError::new(
                "jws.keys",
                "expected {sources: {additional_jkus: [URL, ...]}}",
            ))
        }
    }
    if urls.is_empty() {
        return Err(FieldError::new(
            "jws.keys",
            "give at least one JWKS URL in sources.additional_jkus",
        ));
    }
    if urls.len() > MAX_JKUS {
        return Err(FieldError::new(
            "jws.keys",
            format!("at most {MAX_JKUS} JWKS URLs are allowed"),
        ));
    }
    Ok(urls)
}

fn key_entry(path: &str, entry: &serde_json::Value, urls: &mut Vec<Uri>) -> Result<(), FieldError> {
    let serde_json::Value::Object(fields) = entry else {
        return Err(FieldError::new(
            path,
            "expected a map with sources (and optionally identification)",
        ));
    };
    for (key, value) in fields {
        let at = format!("{path}.{key}");
        match key.as_str() {
            "sources" => each(&at, value, |at, source| sources(at, source, urls))?,
            "identification" => each(&at, value, identification)?,
            other => {
                return Err(FieldError::new(
                    at,
                    format!("unknown key '{other}': expected sources or identification"),
                ))
            }
        }
    }
    if !fields.contains_key("sources") {
        return Err(FieldError::new(path, "sources.additional_jkus is required"));
    }
    Ok(())
}

/// Applies `f` to an object, or to each object of a list (with `[i]` in the path).
fn each(
    path: &str,
    value: &serde_json::Value,
    mut f: impl FnMut(&str, &serde_json::Map<String, serde_json::Value>) -> Result<(), FieldError>,
) -> Result<(), FieldError> {
    match value {
        serde_json::Value::Object(map) => f(path, map),
        serde_json::Value::Array(items) => {
            items
                .iter()
                .enumerate()
                .try_for_each(|(i, item)| match item {
                    serde_json::Value::Object(map) => f(&format!("{path}[{i}]"), map),
                    _ => Err(FieldError::new(format!("{path}[{i}]"), "expected a map")),
                })
        }
        _ => Err(FieldError::new(path, "expected a map or a list of maps")),
    }
}

fn sources(
    path: &str,
    source: &serde_json::Map<String, serde_json::Value>,
    urls: &mut Vec<Uri>,
) -> Result<(), FieldError> {
    for (key, value) in source {
        let at = format!("{path}.{key}");
        if key != "additional_jkus" {
            return Err(FieldError::new(
                at,
                format!("unknown key '{key}': expected additional_jkus"),
            ));
        }
        let serde_json::Value::Array(items) = value else {
            return Err(FieldError::new(at, "expected a list of JWKS URLs"));
        };
        for (i, item) in items.iter().enumerate() {
            let field = format!("{at}[{i}]");
            let text = item
                .as_str()
                .ok_or_else(|| FieldError::new(&field, "expected a URL string"))?;
            urls.push(jwks_url(text).map_err(|message| FieldError::new(&field, message))?);
        }
    }
    Ok(())
}

fn identification(
    path: &str,
    entry: &serde_json::Map<String, serde_json::Value>,
) -> Result<(), FieldError> {
    for (key, value) in entry {
        let at = format!("{path}.{key}");
        if key != "token_claims" {
            return Err(FieldError::new(
                at,
                format!("unknown key '{key}': expected token_claims"),
            ));
        }
        let claims = value
            .as_array()
            .ok_or_else(|| FieldError::new(&at, "expected a list of claims"))?;
        for (i, claim) in claims.iter().enumerate() {
            if claim.as_str() != Some("kid") {
                return Err(FieldError::new(
                    format!("{at}[{i}]"),
                    "only the 'kid' claim identifies keys",
                ));
            }
        }
    }
    Ok(())
}

/// Parses one JWKS URL: absolute http(s), no interpolation (keys are fetched at load, not per request).
fn jwks_url(text: &str) -> Result<Uri, String> {
    if text.contains("${") {
        return Err(
            "JWKS URLs cannot be interpolated: they are fetched when the policy loads".into(),
        );
    }
    let uri: Uri = text.parse().map_err(|_| format!("invalid URL '{text}'"))?;
    match (uri.scheme_str(), uri.host()) {
        (Some("http" | "https"), Some(host)) if !host.is_empty() => Ok(uri),
        _ => Err(format!("'{text}' is not an absolute http(s) URL")),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn algorithms_are_asymmetric_and_known() {
        assert_eq!(
            allowed_algorithms(&names(&["RS256", "ES256", "RS256"])),
            Ok(vec![Algorithm::RS256, Algorithm::ES256])
        );
        assert_eq!(
            allowed_algorithms(&names(&["EdDSA", "PS512", "ES384"]))
                .unwrap()
                .len(),
            3
        );
        let none = allowed_algorithms(&names(&["RS256", "none"])).unwrap_err();
        assert_eq!(none.field, "jws.allowed_algorithms[1]");
        assert!(
            none.message.contains("'none' is never allowed"),
            "{}",
            none.message
        );
        let hs = allowed_algorithms(&names(&["HS256"])).unwrap_err();
        assert!(hs.message.contains("only asymmetric"), "{}", hs.message);
        let unknown = allowed_algorithms(&names(&["RS257"])).unwrap_err();
        assert_eq!(unknown.field, "jws.allowed_algorithms[0]");
        assert!(
            unknown
                .message
                .starts_with("unknown algorithm 'RS257': expected one of RS256"),
            "{}",
            unknown.message
        );
        assert!(allowed_algorithms(&[]).is_err());
        assert_eq!(algorithm("rs256"), None, "JOSE names are case-sensitive");
    }

    #[test]
    fn token_entries() {
        let token = |kind: &str, method: &str, name: &str| TokenConfig {
            kind: kind.into(),
            method: method.into(),
            name: name.into(),
            prefix: None,
        };
        assert_eq!(
            token_method(0, &token("access_token", "header", "Authorization")),
            Ok(Method::Header)
        );
        assert_eq!(
            token_method(0, &token("at+jwt", "body", "token")),
            Ok(Method::Body)
        );
        assert_eq!(
            token_method(2, &token("cookie", "header", "a"))
                .unwrap_err()
                .field,
            "http.tokens[2].type"
        );
        assert_eq!(
            token_method(0, &token("jwt", "query", "a"))
                .unwrap_err()
                .field,
            "http.tokens[0].method"
        );
        assert_eq!(
            token_method(0, &token("jwt", "header", " "))
                .unwrap_err()
                .field,
            "http.tokens[0].name"
        );
    }

    #[test]
    fn jwks_urls_in_both_shapes() {
        let object =
            json!({"sources": {"additional_jkus": ["https://idp.example/.well-known/jwks.json"]}});
        assert_eq!(
            jwks_urls(&object).unwrap()[0].to_string(),
            "https://idp.example/.well-known/jwks.json"
        );
        let list = json!([{
            "identification": [{"token_claims": ["kid"]}],
            "sources": [{"additional_jkus": ["https://a.example/jwks", "http://127.0.0.1:9000/jwks"]}]
        }]);
        let urls = jwks_urls(&list).unwrap();
        assert_eq!(urls.len(), 2);
        assert_eq!(urls[1].port_u16(), Some(9000));
    }

    #[test]
    fn jwks_url_errors_are_located() {
        let bad = json!({"sources": {"additional_jkus": ["https://a.example/jwks", "not a url"]}});
        assert_eq!(
            jwks_urls(&bad).unwrap_err().field,
            "jws.keys.sources.additional_jkus[1]"
        );
        let relative = json!([{"sources": [{"additional_jkus": ["/jwks.json"]}]}]);
        assert_eq!(
            jwks_urls(&relative).unwrap_err().field,
            "jws.keys[0].sources[0].additional_jkus[0]"
        );
        let ftp = json!({"sources": {"additional_jkus": ["ftp://a.example/jwks"]}});
        assert!(jwks_urls(&ftp)
            .unwrap_err()
            .message
            .contains("not an absolute http(s) URL"));
        let templated = json!({"sources": {"additional_jkus": ["${vars.jwks}"]}});
        assert!(jwks_urls(&templated)
            .unwrap_err()
            .message
            .contains("cannot be interpolated"));
        let claim = json!({"sources": {"additional_jkus": ["https://a.example/j"]}, "identification": {"token_claims": ["iss"]}});
        assert_eq!(
            jwks_urls(&claim).unwrap_err().field,
            "jws.keys.identification.token_claims[0]"
        );
        let unknown =
            json!({"sources": {"additional_jkus": ["https://a.example/j"]}, "cache": true});
        assert_eq!(jwks_urls(&unknown).unwrap_err().field, "jws.keys.cache");
        assert!(jwks_urls(&json!({"sources": {"additional_jkus": []}})).is_err());
        assert!(jwks_urls(&json!({"identification": {"token_claims": ["kid"]}})).is_err());
        assert!(jwks_urls(&json!("https://a.example/j")).is_err());
    }
}
