//! Verification keys read from a JWKS document, each knowing which algorithms it may verify.

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};

/// The key material's type, which fixes the algorithms it can verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyType {
    Rsa,
    EcP256,
    EcP384,
    Ed25519,
}

/// One public key from a JWKS.
pub(in crate::actions) struct VerifyKey {
    pub kid: Option<String>,
    kind: KeyType,
    /// The JWK's own `alg`, when it names one: then only that algorithm is accepted.
    alg: Option<Algorithm>,
    pub key: DecodingKey,
}

impl std::fmt::Debug for VerifyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyKey")
            .field("kid", &self.kid)
            .field("kind", &self.kind)
            .field("alg", &self.alg)
            .finish()
    }
}

impl VerifyKey {
    /// Whether this key may verify a token signed with `alg` (key type and the JWK's `alg` both fit).
    pub fn fits(&self, alg: Algorithm) -> bool {
        let type_fits = match self.kind {
            KeyType::Rsa => matches!(
                alg,
                Algorithm::RS256
                    | Algorithm::RS384
                    | Algorithm::RS512
                    | Algorithm::PS256
                    | Algorithm::PS384
                    | Algorithm::PS512
            ),
            KeyType::EcP256 => alg == Algorithm::ES256,
            KeyType::EcP384 => alg == Algorithm::ES384,
            KeyType::Ed25519 => alg == Algorithm::EdDSA,
        };
        type_fits && self.alg.is_none_or(|own| own == alg)
    }
}

/// Reads the signature-verification keys of a JWKS document (`{"keys": [...]}`). Keys Keygate
/// cannot use (symmetric `oct` keys, encryption keys, unknown types or curves) are skipped.
pub(super) fn parse_jwks(body: &[u8]) -> Result<Vec<VerifyKey>, String> {
    #[derive(serde::Deserialize)]
    struct Document {
        keys: Vec<serde_json::Value>,
    }
    let document: Document =
        serde_json::from_slice(body).map_err(|err| format!("not a JWKS document: {err}"))?;
    Ok(document
        .keys
        .into_iter()
        .filter_map(|value| serde_json::from_value::<Jwk>(value).ok())
        .filter_map(verify_key)
        .collect())
}

fn verify_key(jwk: Jwk) -> Option<VerifyKey> {
    if matches!(jwk.common.public_key_use, Some(ref use_) if *use_ != PublicKeyUse::Signature) {
        return None;
    }
    let kind = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => KeyType::Rsa,
        AlgorithmParameters::EllipticCurve(params) => match params.curve {
            EllipticCurve::P256 => KeyType::EcP256,
            EllipticCurve::P384 => KeyType::EcP384,
            _ => return None,
        },
        AlgorithmParameters::OctetKeyPair(params) if params.curve == EllipticCurve::Ed25519 => {
            KeyType::Ed25519
        }
        // Symmetric keys never verify anything here: a JWKS is public.
        _ => return None,
    };
    let alg = match jwk.common.key_algorithm {
        None => None,
        Some(own) => Some(signing_algorithm(own)?),
    };
    let key = DecodingKey::from_jwk(&jwk).ok()?;
    Some(VerifyKey {
        kid: jwk.common.key_id,
        kind,
        alg,
        key,
    })
}

/// A JWK `alg` that names a signature algorithm Keygate verifies.
fn signing_algorithm(alg: KeyAlgorithm) -> Option<Algorithm> {
    Some(match alg {
        KeyAlgorithm::RS256 => Algorithm::RS256,
        KeyAlgorithm::RS384 => Algorithm::RS384,
        KeyAlgorithm::RS512 => Algorithm::RS512,
        KeyAlgorithm::PS256 => Algorithm::PS256,
        KeyAlgorithm::PS384 => Algorithm::PS384,
        KeyAlgorithm::PS512 => Algorithm::PS512,
        KeyAlgorithm::ES256 => Algorithm::ES256,
        KeyAlgorithm::ES384 => Algorithm::ES384,
        KeyAlgorithm::EdDSA => Algorithm::EdDSA,
        _ => return None,
    })
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// The public JWK of the fixture RSA key (`kid: rsa-1`).
    pub const RSA_JWK: &str = include_str!("../../../../keygate/tests/fixtures/jwt/rsa-1.jwk.json");
    /// The public JWK of the fixture P-256 key (`kid: ec-1`).
    pub const EC_JWK: &str = include_str!("../../../../keygate/tests/fixtures/jwt/ec-1.jwk.json");

    fn jwks(keys: &[&str]) -> Vec<u8> {
        format!("{{\"keys\": [{}]}}", keys.join(",")).into_bytes()
    }

    #[test]
    fn keys_fit_only_their_algorithms() {
        let keys = parse_jwks(&jwks(&[RSA_JWK, EC_JWK])).unwrap();
        assert_eq!(keys.len(), 2);
        let rsa = keys
            .iter()
            .find(|k| k.kid.as_deref() == Some("rsa-1"))
            .unwrap();
        let ec = keys
            .iter()
            .find(|k| k.kid.as_deref() == Some("ec-1"))
            .unwrap();
        // The fixture JWKs carry alg RS256 / ES256.
        assert!(rsa.fits(Algorithm::RS256));
        assert!(!rsa.fits(Algorithm::PS256), "the JWK's alg pins RS256");
        assert!(!rsa.fits(Algorithm::HS256));
        assert!(!rsa.fits(Algorithm::ES256));
        assert!(ec.fits(Algorithm::ES256));
        assert!(!ec.fits(Algorithm::ES384));
        assert!(!ec.fits(Algorithm::RS256));
    }

    #[test]
    fn rsa_key_without_alg_fits_every_rsa_algorithm() {
        let mut jwk: serde_json::Value = serde_json::from_str(RSA_JWK).unwrap();
        jwk.as_object_mut().unwrap().remove("alg");
        let keys = parse_jwks(&jwks(&[&jwk.to_string()])).unwrap();
        assert!(keys[0].fits(Algorithm::PS384));
        assert!(keys[0].fits(Algorithm::RS512));
        assert!(!keys[0].fits(Algorithm::EdDSA));
    }

    #[test]
    fn unusable_keys_are_skipped() {
        let oct = r#"{"kty":"oct","kid":"h","k":"c2VjcmV0"}"#;
        let mut enc: serde_json::Value = serde_json::from_str(RSA_JWK).unwrap();
        enc["use"] = "enc".into();
        let enc = enc.to_string();
        let junk = r#"{"kty":"XYZ","kid":"x"}"#;
        let keys = parse_jwks(&jwks(&[oct, &enc, junk, EC_JWK])).unwrap();
        assert_eq!(
            keys.iter().map(|k| k.kid.as_deref()).collect::<Vec<_>>(),
            vec![Some("ec-1")]
        );
        assert!(parse_jwks(b"{\"nokeys\": 1}").is_err());
        assert!(parse_jwks(b"<html>").is_err());
    }
}
