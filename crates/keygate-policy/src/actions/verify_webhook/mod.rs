//! `verify-webhook`: check a webhook's signature with the provider's scheme (see
//! [`providers`]) and refuse unsigned, tampered or replayed requests with 403.

mod ecdsa;
mod handshake;
mod mailgun;
mod providers;
mod request;
mod scheme;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use keygate_cel::{Template, Value};
use p256::ecdsa::VerifyingKey;
use serde::Deserialize;
use subtle::ConstantTimeEq;

use self::providers::{Handshake, Provider, Scheme};
use self::request::Signed;
use crate::action::{Action, ActionError, ActionFuture, ActionKind, Flow, Phase, Termination};
use crate::build::BuildContext;
use crate::diagnostic::Diagnostic;
use crate::error::{ErrorCode, GatewayError};
use crate::exchange::Exchange;

pub const KIND: ActionKind = ActionKind {
    name: "verify-webhook",
    result_name: "verify_webhook",
    phases: &[Phase::OnHttpRequest],
    termination: Termination::Sometimes,
    needs_config: true,
    build,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    provider: String,
    secret: Option<String>,
    enforce: Option<bool>,
}

struct VerifyWebhook {
    provider: &'static Provider,
    secret: Template,
    /// SendGrid's public key when the secret is written literally (parsed once).
    public_key: Option<VerifyingKey>,
    /// Whether the scheme signs the URL (only then is it reconstructed).
    signs_url: bool,
    enforce: bool,
}

/// Why a request did not verify. Messages name headers and rules, never the secret.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    #[error("the {0} header is missing")]
    MissingHeader(&'static str),
    #[error("the {0} header is malformed")]
    Malformed(&'static str),
    #[error("the signature does not match")]
    Mismatch,
    #[error("the signed timestamp is more than {tolerance} seconds away from the gateway's clock")]
    Stale { tolerance: u64 },
    #[error("{0}")]
    Body(&'static str),
    #[error("the configured secret is not {0}")]
    Secret(&'static str),
    #[error("the configured secret is empty")]
    EmptySecret,
    #[error("{0}")]
    Unsupported(&'static str),
}

fn build(cx: &BuildContext<'_>) -> Result<Box<dyn Action>, Diagnostic> {
    let config: Config = cx.config()?;
    let provider = providers::find(&config.provider).ok_or_else(|| {
        let known: Vec<&str> = providers::PROVIDERS.iter().map(|p| p.name).collect();
        cx.error(
            "provider",
            format!(
                "unknown provider '{}': expected one of {}",
                config.provider,
                known.join(", ")
            ),
        )
    })?;
    if let Scheme::Unsupported(reason) = provider.scheme {
        return Err(cx.error(
            "provider",
            format!("provider '{}' is not supported: {reason}", provider.name),
        ));
    }
    let Some(source) = config.secret.as_deref() else {
        return Err(cx.error("", format!("provider '{}' needs a secret", provider.name)));
    };
    let secret = cx.template("secret", source)?;
    let mut public_key = None;
    if let Some(literal) = secret.as_literal() {
        if literal.is_empty() {
            return Err(cx.error("secret", "the secret is empty"));
        }
        if let Scheme::Ecdsa { .. } = provider.scheme {
            let key =
                ecdsa::public_key(literal).map_err(|err| cx.error("secret", err.to_string()))?;
            public_key = Some(key);
        }
    }
    Ok(Box::new(VerifyWebhook {
        provider,
        secret,
        public_key,
        signs_url: matches!(provider.scheme, Scheme::Hmac(hmac) if hmac.signs_url()),
        enforce: config.enforce.unwrap_or(true),
    }))
}

impl Action for VerifyWebhook {
    fn run<'a>(&'a self, ex: &'a mut Exchange) -> ActionFuture<'a> {
        Box::pin(self.verify(ex))
    }
}

impl VerifyWebhook {
    async fn verify(&self, ex: &mut Exchange) -> Result<Flow, ActionError> {
        let secret = self.secret.eval_string(&ex.scope())?;
        let handshake = self.provider.handshake;
        if let Some(answer) = handshake.and_then(|h| handshake::before(h, &secret, &ex.request)) {
            publish(ex, false, None);
            return Ok(Flow::Respond(answer));
        }
        let body = ex.buffer_body().await?;
        let urls = if self.signs_url {
            request::urls(ex.scheme, &ex.request)
        } else {
            Vec::new()
        };
        let signed = Signed {
            method: ex.request.method.as_str(),
            headers: &ex.request.headers,
            body: &body,
            urls: &urls,
            now: unix_now(),
        };
        match check(
            self.provider.scheme,
            self.public_key.as_ref(),
            &secret,
            &signed,
        ) {
            Ok(()) => {
                publish(ex, true, None);
                match handshake.and_then(|h| handshake::after(h, &secret, &body)) {
                    Some(answer) => Ok(Flow::Respond(answer)),
                    None => Ok(Flow::Continue),
                }
            }
            Err(failure) => {
                let rejection = self.rejection(&failure);
                publish(ex, false, Some(&rejection));
                if self.enforce {
                    Err(ActionError::Gateway(rejection))
                } else {
                    Ok(Flow::Continue)
                }
            }
        }
    }

    /// The answer to a request that did not verify: 403, or 401 for Xero, whose intent-to-receive
    /// check expects exactly that.
    fn rejection(&self, failure: &Failure) -> GatewayError {
        let code = match self.provider.handshake {
            Some(Handshake::XeroIntent) => ErrorCode::Unauthorized,
            _ => ErrorCode::WebhookInvalid,
        };
        GatewayError::new(
            code,
            format!(
                "{} webhook verification failed: {failure}",
                self.provider.name
            ),
        )
    }
}

/// Verifies `req` under `scheme` with `secret` (`public_key`: SendGrid's key, when parsed at load).
fn check(
    scheme: Scheme,
    public_key: Option<&VerifyingKey>,
    secret: &str,
    req: &Signed<'_>,
) -> Result<(), Failure> {
    if secret.is_empty() {
        return Err(Failure::EmptySecret);
    }
    match scheme {
        Scheme::Hmac(hmac) => hmac.verify(secret, req),
        Scheme::Token { header } => {
            let presented = scheme::first_header(req.headers, &[header])?;
            if bool::from(presented.as_bytes().ct_eq(secret.as_bytes())) {
                Ok(())
            } else {
                Err(Failure::Mismatch)
            }
        }
        Scheme::Ecdsa {
            signature,
            timestamp,
            tolerance,
        } => {
            let parsed;
            let key = match public_key {
                Some(key) => key,
                None => {
                    parsed = ecdsa::public_key(secret)?;
                    &parsed
                }
            };
            ecdsa::verify(
                key,
                req.headers,
                req.body,
                (signature, timestamp),
                tolerance,
                req.now,
            )
        }
        Scheme::Mailgun { tolerance } => mailgun::verify(secret, req.body, tolerance, req.now),
        // Refused at load; kept total rather than panicking.
        Scheme::Unsupported(reason) => Err(Failure::Unsupported(reason)),
    }
}

/// `actions.ngrok.verify_webhook`: `verified`, and `error.code` / `error.message` on failure.
fn publish(ex: &mut Exchange, verified: bool, error: Option<&GatewayError>) {
    let mut result = HashMap::from([("verified", Value::Bool(verified))]);
    if let Some(error) = error {
        result.insert(
            "error",
            Value::from(HashMap::from([
                ("code", Value::from(error.code.as_str())),
                ("message", Value::from(error.message.clone())),
            ])),
        );
    }
    ex.results.set(KIND.result_name, Value::from(result));
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
