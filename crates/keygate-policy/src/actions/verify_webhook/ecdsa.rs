//! SendGrid's Event Webhook: an ECDSA P-256 / SHA-256 signature (base64 DER) over the
//! timestamp header followed by the body, checked with the account's public verification key.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::pkcs8::DecodePublicKey;

use super::scheme::{check_age, first_header, TimeFormat};
use super::Failure;

/// The verification key: base64 of its DER `SubjectPublicKeyInfo`, as SendGrid shows it, or the
/// same inside PEM armour.
pub fn public_key(secret: &str) -> Result<VerifyingKey, Failure> {
    let base64: String = secret
        .lines()
        .filter(|line| !line.starts_with("-----"))
        .flat_map(|line| line.chars().filter(|c| !c.is_ascii_whitespace()))
        .collect();
    let der = STANDARD
        .decode(base64)
        .map_err(|_| Failure::Secret("a base64 P-256 public key"))?;
    VerifyingKey::from_public_key_der(&der).map_err(|_| Failure::Secret("a P-256 public key"))
}

/// Checks the signature, then that the timestamp is within `tolerance` seconds of `now`.
pub fn verify(
    key: &VerifyingKey,
    headers: &http::HeaderMap,
    body: &[u8],
    names: (&'static str, &'static str),
    tolerance: u64,
    now: i64,
) -> Result<(), Failure> {
    let (signature_name, timestamp_name) = names;
    let signature = first_header(headers, &[signature_name])?;
    let timestamp = first_header(headers, &[timestamp_name])?;
    let signature = STANDARD
        .decode(signature.trim())
        .ok()
        .and_then(|der| Signature::from_der(&der).ok())
        .ok_or(Failure::Malformed(signature_name))?;
    let at = TimeFormat::UnixSeconds
        .parse(timestamp)
        .ok_or(Failure::Malformed(timestamp_name))?;
    let mut message = Vec::with_capacity(timestamp.len() + body.len());
    message.extend_from_slice(timestamp.as_bytes());
    message.extend_from_slice(body);
    key.verify(&message, &signature)
        .map_err(|_| Failure::Mismatch)?;
    check_age(at, now, tolerance)
}
