//! Mailgun: the body carries `timestamp`, `token` and `signature`, the hex HMAC-SHA256 of
//! timestamp + token under the webhook signing key: in a `signature` object in JSON webhooks,
//! as form fields in legacy form-encoded ones.

use serde::Deserialize;
use subtle::ConstantTimeEq;

use super::scheme::{check_age, AnyMac, Digest, TimeFormat};
use super::Failure;

#[derive(Deserialize)]
struct Fields {
    timestamp: String,
    token: String,
    signature: String,
}

#[derive(Deserialize)]
struct JsonBody {
    signature: Fields,
}

/// Checks the signature, then that the timestamp is within `tolerance` seconds of `now`.
pub fn verify(secret: &str, body: &[u8], tolerance: u64, now: i64) -> Result<(), Failure> {
    let fields = read(body).ok_or(Failure::Body(
        "Mailgun's timestamp, token and signature fields are missing from the body",
    ))?;
    let presented = hex::decode(fields.signature.trim())
        .map_err(|_| Failure::Body("the body's signature field is not hex"))?;
    let at = TimeFormat::UnixSeconds
        .parse(&fields.timestamp)
        .ok_or(Failure::Body(
            "the body's timestamp field is not Unix seconds",
        ))?;
    let mut mac = AnyMac::new(Digest::Sha256, secret.as_bytes());
    mac.update(fields.timestamp.as_bytes());
    mac.update(fields.token.as_bytes());
    if !bool::from(mac.finalize().as_slice().ct_eq(&presented)) {
        return Err(Failure::Mismatch);
    }
    check_age(at, now, tolerance)
}

fn read(body: &[u8]) -> Option<Fields> {
    if let Ok(json) = serde_json::from_slice::<JsonBody>(body) {
        return Some(json.signature);
    }
    let mut timestamp = None;
    let mut token = None;
    let mut signature = None;
    for (name, value) in url::form_urlencoded::parse(body) {
        match &*name {
            "timestamp" => timestamp = Some(value.into_owned()),
            "token" => token = Some(value.into_owned()),
            "signature" => signature = Some(value.into_owned()),
            _ => {}
        }
    }
    Some(Fields {
        timestamp: timestamp?,
        token: token?,
        signature: signature?,
    })
}
