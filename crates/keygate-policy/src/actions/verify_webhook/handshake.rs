//! Endpoint-verification handshakes, answered by the gateway as each provider expects.
//!
//! The HMAC answers (Twitter, Zoom) are computed with the webhook secret over a token the caller
//! chose, which would let anyone obtain a valid signature for a body of their choosing. Zoom's
//! challenge is therefore only answered once its own signature verified; Twitter's CRC request
//! is unsigned by design, so its token is limited to the characters of a random token, which
//! no JSON event (an object) can match.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use bytes::Bytes;
use http::{header, HeaderValue, Method, Response, StatusCode};
use serde::Deserialize;

use super::providers::Handshake;
use super::scheme::hmac_sha256;
use crate::body::{empty, full, Body};

/// Twitter's CRC tokens are random strings; this bounds what the HMAC oracle will sign.
const MAX_CRC_TOKEN: usize = 256;

/// An answer to a request that is a handshake rather than a webhook, before any signature is
/// checked (Twitter's CRC, Worldline's echo).
pub fn before(
    handshake: Handshake,
    secret: &str,
    head: &http::request::Parts,
) -> Option<Response<Body>> {
    if head.method != Method::GET {
        return None;
    }
    match handshake {
        Handshake::TwitterCrc => {
            let query = head.uri.query()?;
            let token = url::form_urlencoded::parse(query.as_bytes())
                .find(|(name, _)| name == "crc_token")
                .map(|(_, value)| value)?;
            let plausible = !token.is_empty()
                && token.len() <= MAX_CRC_TOKEN
                && token
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_=+/".contains(&b));
            if !plausible {
                return None;
            }
            let digest = hmac_sha256(secret.as_bytes(), token.as_bytes());
            let answer = serde_json::json!({
                "response_token": format!("sha256={}", STANDARD.encode(digest)),
            });
            Some(json(&answer))
        }
        Handshake::WorldlineEcho => {
            let value = head.headers.get("x-gcs-webhooks-endpoint-verification")?;
            let mut response = Response::new(full(Bytes::copy_from_slice(value.as_bytes())));
            let headers = response.headers_mut();
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
            headers.insert(
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            );
            Some(response)
        }
        Handshake::ZoomUrlValidation | Handshake::XeroIntent => None,
    }
}

#[derive(Deserialize)]
struct ZoomEvent {
    event: String,
    payload: ZoomPayload,
}

#[derive(Deserialize)]
struct ZoomPayload {
    #[serde(rename = "plainToken")]
    plain_token: String,
}

#[derive(Deserialize)]
struct XeroEvents {
    events: Vec<serde_json::Value>,
}

/// An answer to a verified request that is a handshake (Zoom's URL validation, Xero's
/// intent to receive).
pub fn after(handshake: Handshake, secret: &str, body: &[u8]) -> Option<Response<Body>> {
    match handshake {
        Handshake::ZoomUrlValidation => {
            let event: ZoomEvent = serde_json::from_slice(body).ok()?;
            if event.event != "endpoint.url_validation" {
                return None;
            }
            let token = event.payload.plain_token;
            let encrypted = hex::encode(hmac_sha256(secret.as_bytes(), token.as_bytes()));
            Some(json(&serde_json::json!({
                "plainToken": token,
                "encryptedToken": encrypted,
            })))
        }
        Handshake::XeroIntent => {
            let events: XeroEvents = serde_json::from_slice(body).ok()?;
            events.events.is_empty().then(|| {
                let mut response = Response::new(empty());
                *response.status_mut() = StatusCode::OK;
                response
            })
        }
        Handshake::TwitterCrc | Handshake::WorldlineEcho => None,
    }
}

fn json(value: &serde_json::Value) -> Response<Body> {
    let mut response = Response::new(full(value.to_string()));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}
