//! One compact JWS token: parsing (the header's `alg` must be allowed before any key is looked
//! at), signature verification against candidate keys, and the claim checks.

use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::Algorithm;
use serde_json::{Map, Value};

use super::config::algorithm;
use super::keys::VerifyKey;
use crate::error::ErrorCode;

/// Clock skew tolerated for `exp` and `nbf`, in seconds.
pub(super) const LEEWAY_SECS: i64 = 60;

/// Why a token was refused. Messages are safe for clients: they never quote the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(in crate::actions) enum TokenError {
    #[error("the configured {location} '{name}' is missing")]
    Missing {
        location: &'static str,
        name: String,
    },
    #[error("the token does not start with the configured prefix")]
    PrefixMissing,
    #[error("tokens in the body are only read from POST, PUT and PATCH requests")]
    BodyMethod,
    #[error("the body must be JSON or form-urlencoded to carry a token")]
    BodyContentType,
    #[error("the request body could not be parsed")]
    BodyParse,
    #[error("the token is not a well-formed JWT")]
    Malformed,
    #[error("the token's signing algorithm is not allowed")]
    Algorithm,
    #[error("no key matches the token's key id and algorithm")]
    UnknownKey,
    #[error("the token signature is invalid")]
    Signature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token issuer is not allowed")]
    Issuer,
    #[error("the token audience is not allowed")]
    Audience,
    #[error("signing keys are unavailable: the JWKS could not be fetched")]
    KeysUnavailable,
}

impl TokenError {
    /// The gateway error it answers with (ngrok's numbers for these failures).
    pub fn code(&self) -> ErrorCode {
        match self {
            TokenError::Missing {
                location: "header", ..
            } => ErrorCode::JwtHeaderMissing,
            TokenError::Missing { .. } => ErrorCode::JwtTokenMissing,
            TokenError::PrefixMissing => ErrorCode::JwtPrefixMissing,
            TokenError::BodyMethod => ErrorCode::JwtBodyMethod,
            TokenError::BodyContentType => ErrorCode::JwtBodyContentType,
            TokenError::BodyParse => ErrorCode::JwtBodyUnreadable,
            TokenError::Malformed => ErrorCode::JwtMalformed,
            TokenError::KeysUnavailable => ErrorCode::JwtKeysUnavailable,
            TokenError::Algorithm
            | TokenError::UnknownKey
            | TokenError::Signature
            | TokenError::Expired
            | TokenError::NotYetValid
            | TokenError::Issuer
            | TokenError::Audience => ErrorCode::Unauthorized,
        }
    }
}

/// A token split and decoded, not yet trusted.
#[derive(Debug)]
pub(in crate::actions) struct Parsed<'a> {
    pub header: Map<String, Value>,
    pub payload: Map<String, Value>,
    pub alg: Algorithm,
    pub kid: Option<String>,
    /// `header.payload`, the signed bytes.
    signing_input: &'a str,
    /// The base64url signature segment.
    pub signature: &'a str,
}

/// Decodes `token` and checks its `alg` against `allowed` (never `none` or HMAC: they are not
/// configurable). Only the header and payload are decoded; no key is touched.
pub(in crate::actions) fn parse<'a>(
    token: &'a str,
    allowed: &[Algorithm],
) -> Result<Parsed<'a>, TokenError> {
    let (signing_input, signature) = token.rsplit_once('.').ok_or(TokenError::Malformed)?;
    let (header_b64, payload_b64) = signing_input.split_once('.').ok_or(TokenError::Malformed)?;
    if payload_b64.contains('.') || signature.is_empty() {
        return Err(TokenError::Malformed);
    }
    let header = json_object(header_b64)?;
    let alg_name = header
        .get("alg")
        .and_then(Value::as_str)
        .ok_or(TokenError::Malformed)?;
    let alg = algorithm(alg_name)
        .filter(|alg| allowed.contains(alg))
        .ok_or(TokenError::Algorithm)?;
    // Extensions the token marks critical are not understood here (RFC 7515 4.1.11).
    if header.contains_key("crit") {
        return Err(TokenError::Malformed);
    }
    let kid = match header.get("kid") {
        None => None,
        Some(Value::String(kid)) => Some(kid.clone()),
        Some(_) => return Err(TokenError::Malformed),
    };
    let payload = json_object(payload_b64)?;
    Ok(Parsed {
        header,
        payload,
        alg,
        kid,
        signing_input,
        signature,
    })
}

fn json_object(segment: &str) -> Result<Map<String, Value>, TokenError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| TokenError::Malformed)?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(TokenError::Malformed),
    }
}

impl Parsed<'_> {
    /// True when one of `keys` (each must fit the token's `alg`) verifies the signature.
    pub fn verify(&self, keys: &[Arc<VerifyKey>]) -> bool {
        keys.iter().filter(|key| key.fits(self.alg)).any(|key| {
            jsonwebtoken::crypto::verify(
                self.signature,
                self.signing_input.as_bytes(),
                &key.key,
                self.alg,
            )
            .unwrap_or(false)
        })
    }
}

/// Checks `exp`/`nbf` (with [`LEEWAY_SECS`]), `iss` against `issuers` and, when `audiences` is not
/// empty, `aud`. `now` is seconds since the Unix epoch.
pub(in crate::actions) fn check_claims(
    payload: &Map<String, Value>,
    issuers: &[&str],
    audiences: &[String],
    now: i64,
) -> Result<(), TokenError> {
    if let Some(exp) = time_claim(payload, "exp")? {
        if now > exp.saturating_add(LEEWAY_SECS) {
            return Err(TokenError::Expired);
        }
    }
    if let Some(nbf) = time_claim(payload, "nbf")? {
        if now.saturating_add(LEEWAY_SECS) < nbf {
            return Err(TokenError::NotYetValid);
        }
    }
    let issuer = payload
        .get("iss")
        .and_then(Value::as_str)
        .ok_or(TokenError::Issuer)?;
    if !issuers.contains(&issuer) {
        return Err(TokenError::Issuer);
    }
    if !audiences.is_empty() {
        let allowed = |aud: &str| audiences.iter().any(|a| a == aud);
        let ok = match payload.get("aud") {
            Some(Value::String(aud)) => allowed(aud),
            Some(Value::Array(auds)) => auds.iter().filter_map(Value::as_str).any(allowed),
            _ => false,
        };
        if !ok {
            return Err(TokenError::Audience);
        }
    }
    Ok(())
}

/// A NumericDate claim (seconds; fractions are truncated). Present but not a number: malformed.
fn time_claim(payload: &Map<String, Value>, name: &str) -> Result<Option<i64>, TokenError> {
    match payload.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            .or_else(|| n.as_f64().map(|f| f as i64))
            .map(Some)
            .ok_or(TokenError::Malformed),
        Some(_) => Err(TokenError::Malformed),
    }
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::{encode, EncodingKey, Header};
    use serde_json::json;

    use super::super::keys::parse_jwks;
    use super::super::keys::tests::{EC_JWK, RSA_JWK};
    use super::*;

    const RSA_KEY: &str = include_str!("../../../../keygate/tests/fixtures/jwt/rsa-1.key.pem");
    const RSA_PUB: &str = include_str!("../../../../keygate/tests/fixtures/jwt/rsa-1.pub.pem");
    const RSA2_KEY: &str = include_str!("../../../../keygate/tests/fixtures/jwt/rsa-2.key.pem");
    const EC_KEY: &str = include_str!("../../../../keygate/tests/fixtures/jwt/ec-1.key.pem");
    const ALLOWED: &[Algorithm] = &[Algorithm::RS256, Algorithm::ES256];

    fn keys() -> Vec<Arc<VerifyKey>> {
        let doc = format!("{{\"keys\": [{RSA_JWK}, {EC_JWK}]}}");
        parse_jwks(doc.as_bytes())
            .unwrap()
            .into_iter()
            .map(Arc::new)
            .collect()
    }

    fn claims() -> Value {
        json!({"iss": "https://idp.example/", "aud": "keygate", "sub": "alice", "exp": 2_000_000_000, "scope": "read"})
    }

    fn rsa_token(kid: &str, key_pem: &str, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(kid.into());
        encode(
            &header,
            claims,
            &EncodingKey::from_rsa_pem(key_pem.as_bytes()).unwrap(),
        )
        .unwrap()
    }

    fn b64(value: &Value) -> String {
        URL_SAFE_NO_PAD.encode(value.to_string())
    }

    #[test]
    fn valid_rsa_and_ec_tokens_verify() {
        let rsa = rsa_token("rsa-1", RSA_KEY, &claims());
        let parsed = parse(&rsa, ALLOWED).unwrap();
        assert_eq!(parsed.kid.as_deref(), Some("rsa-1"));
        assert_eq!(parsed.payload["sub"], "alice");
        assert!(parsed.verify(&keys()));

        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some("ec-1".into());
        let ec = encode(
            &header,
            &claims(),
            &EncodingKey::from_ec_pem(EC_KEY.as_bytes()).unwrap(),
        )
        .unwrap();
        assert!(parse(&ec, ALLOWED).unwrap().verify(&keys()));
    }

    #[test]
    fn eddsa_tokens_verify_with_an_okp_key_without_alg() {
        const ED_JWK: &str = include_str!("../../../../keygate/tests/fixtures/jwt/ed-1.jwk.json");
        const ED_KEY: &str = include_str!("../../../../keygate/tests/fixtures/jwt/ed-1.key.pem");
        let doc = format!("{{\"keys\": [{ED_JWK}, {RSA_JWK}]}}");
        let keys: Vec<_> = parse_jwks(doc.as_bytes())
            .unwrap()
            .into_iter()
            .map(Arc::new)
            .collect();
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some("ed-1".into());
        let token = encode(
            &header,
            &claims(),
            &EncodingKey::from_ed_pem(ED_KEY.as_bytes()).unwrap(),
        )
        .unwrap();
        let parsed = parse(&token, &[Algorithm::EdDSA]).unwrap();
        assert!(parsed.verify(&keys));
        assert!(
            !parsed.verify(&keys[1..]),
            "the RSA key never verifies EdDSA"
        );
    }

    #[test]
    fn signature_by_another_key_fails() {
        let forged = rsa_token("rsa-1", RSA2_KEY, &claims());
        assert!(!parse(&forged, ALLOWED).unwrap().verify(&keys()));
        // A tampered payload under the right signature fails too.
        let good = rsa_token("rsa-1", RSA_KEY, &claims());
        let parts: Vec<&str> = good.split('.').collect();
        let mut changed = claims();
        changed["sub"] = json!("mallory");
        let tampered = format!("{}.{}.{}", parts[0], b64(&changed), parts[2]);
        assert!(!parse(&tampered, ALLOWED).unwrap().verify(&keys()));
    }

    #[test]
    fn alg_none_and_hmac_confusion_are_refused_before_keys() {
        let none = format!(
            "{}.{}.",
            b64(&json!({"alg": "none", "typ": "JWT"})),
            b64(&claims())
        );
        assert_eq!(parse(&none, ALLOWED).unwrap_err(), TokenError::Malformed);
        let none_signed = format!("{}.{}.c2ln", b64(&json!({"alg": "none"})), b64(&claims()));
        assert_eq!(
            parse(&none_signed, ALLOWED).unwrap_err(),
            TokenError::Algorithm
        );
        // HS256 with the RSA public key as the HMAC secret (the classic RS/HS confusion).
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("rsa-1".into());
        let hs = encode(
            &header,
            &claims(),
            &EncodingKey::from_secret(RSA_PUB.as_bytes()),
        )
        .unwrap();
        assert_eq!(parse(&hs, ALLOWED).unwrap_err(), TokenError::Algorithm);
        // An allowed algorithm the key does not fit: an RS256 key never verifies an ES256 header.
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some("rsa-1".into());
        let ec = encode(
            &header,
            &claims(),
            &EncodingKey::from_ec_pem(EC_KEY.as_bytes()).unwrap(),
        )
        .unwrap();
        let parsed = parse(&ec, ALLOWED).unwrap();
        let rsa_only: Vec<_> = keys()
            .into_iter()
            .filter(|k| k.kid.as_deref() == Some("rsa-1"))
            .collect();
        assert!(!parsed.verify(&rsa_only));
        // RS256 is not in this allow list.
        let rsa = rsa_token("rsa-1", RSA_KEY, &claims());
        assert_eq!(
            parse(&rsa, &[Algorithm::ES256]).unwrap_err(),
            TokenError::Algorithm
        );
    }

    #[test]
    fn malformed_tokens() {
        for bad in ["", "abc", "a.b", "a.b.c.d", "!!.e30.c2ln", "e30.!!.c2ln"] {
            assert_eq!(
                parse(bad, ALLOWED).unwrap_err(),
                TokenError::Malformed,
                "{bad}"
            );
        }
        let crit = format!(
            "{}.{}.c2ln",
            b64(&json!({"alg": "RS256", "crit": ["x"]})),
            b64(&claims())
        );
        assert_eq!(parse(&crit, ALLOWED).unwrap_err(), TokenError::Malformed);
        let kid_number = format!(
            "{}.{}.c2ln",
            b64(&json!({"alg": "RS256", "kid": 7})),
            b64(&claims())
        );
        assert_eq!(
            parse(&kid_number, ALLOWED).unwrap_err(),
            TokenError::Malformed
        );
        let array_payload = format!(
            "{}.{}.c2ln",
            b64(&json!({"alg": "RS256"})),
            b64(&json!([1]))
        );
        assert_eq!(
            parse(&array_payload, ALLOWED).unwrap_err(),
            TokenError::Malformed
        );
    }

    #[test]
    fn claim_checks() {
        let issuers = ["https://idp.example/"];
        let auds = vec!["keygate".to_string()];
        let now = 1_900_000_000;
        let check = |claims: Value| check_claims(claims.as_object().unwrap(), &issuers, &auds, now);
        assert_eq!(check(claims()), Ok(()));
        let with = |key: &str, value: Value| {
            let mut c = claims();
            c[key] = value;
            c
        };
        assert_eq!(
            check(with("exp", json!(now - 61))),
            Err(TokenError::Expired)
        );
        assert_eq!(check(with("exp", json!(now - 59))), Ok(()), "leeway");
        assert_eq!(
            check(with("nbf", json!(now + 61))),
            Err(TokenError::NotYetValid)
        );
        assert_eq!(check(with("nbf", json!(now + 59))), Ok(()), "leeway");
        assert_eq!(
            check(with("exp", json!("tomorrow"))),
            Err(TokenError::Malformed)
        );
        assert_eq!(
            check(with("iss", json!("https://idp.example"))),
            Err(TokenError::Issuer),
            "exact match, trailing slash"
        );
        assert_eq!(check(with("iss", json!(1))), Err(TokenError::Issuer));
        assert_eq!(
            check(with("aud", json!("other"))),
            Err(TokenError::Audience)
        );
        assert_eq!(check(with("aud", json!(["other", "keygate"]))), Ok(()));
        assert_eq!(check(with("aud", json!([]))), Err(TokenError::Audience));
        let mut no_aud = claims();
        no_aud.as_object_mut().unwrap().remove("aud");
        assert_eq!(check(no_aud.clone()), Err(TokenError::Audience));
        assert_eq!(
            check_claims(no_aud.as_object().unwrap(), &issuers, &[], now),
            Ok(()),
            "audience not configured"
        );
    }
}
