//! `basic-auth`: require HTTP Basic credentials (RFC 7617) from a configured list.

use std::collections::HashMap;

use base64::Engine as _;
use http::HeaderValue;
use keygate_cel::{Template, Value};
use serde::Deserialize;
use subtle::ConstantTimeEq;

use crate::action::{
    ready, Action, ActionError, ActionFuture, ActionKind, Flow, Phase, Termination,
};
use crate::build::BuildContext;
use crate::diagnostic::Diagnostic;
use crate::error::{ErrorCode, GatewayError};
use crate::exchange::Exchange;

pub const KIND: ActionKind = ActionKind {
    name: "basic-auth",
    result_name: "basic_auth",
    phases: &[Phase::OnHttpRequest],
    termination: Termination::Sometimes,
    needs_config: true,
    build,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    credentials: Vec<String>,
    realm: Option<String>,
    enforce: Option<bool>,
}

struct BasicAuth {
    credentials: Vec<Template>,
    challenge: HeaderValue,
    enforce: bool,
}

fn build(cx: &BuildContext<'_>) -> Result<Box<dyn Action>, Diagnostic> {
    let config: Config = cx.config()?;
    if config.credentials.is_empty() || config.credentials.len() > 10 {
        return Err(cx.error("credentials", "give 1 to 10 credentials"));
    }
    let mut credentials = Vec::with_capacity(config.credentials.len());
    for (i, source) in config.credentials.iter().enumerate() {
        let field = format!("credentials[{i}]");
        let template = cx.template(&field, source)?;
        if let Some(literal) = template.as_literal() {
            check_credential(literal).map_err(|message| cx.error(&field, message))?;
        }
        credentials.push(template);
    }
    let realm = config.realm.unwrap_or_else(|| "ngrok".to_owned());
    if realm.len() > 128
        || !realm
            .chars()
            .all(|c| c.is_ascii() && c != '"' && !c.is_ascii_control())
    {
        return Err(cx.error(
            "realm",
            "realm must be at most 128 printable ASCII characters without quotes",
        ));
    }
    let challenge = HeaderValue::from_str(&format!("Basic realm=\"{realm}\""))
        .map_err(|_| cx.error("realm", "realm is not valid in a header"))?;
    Ok(Box::new(BasicAuth {
        credentials,
        challenge,
        enforce: config.enforce.unwrap_or(true),
    }))
}

/// `user:password`, user non-empty, password 8-128 characters.
fn check_credential(credential: &str) -> Result<(), String> {
    let Some((user, password)) = credential.split_once(':') else {
        return Err("a credential is 'user:password'".into());
    };
    if user.is_empty() {
        return Err("the user name is empty".into());
    }
    if !(8..=128).contains(&password.chars().count()) {
        return Err("the password must be 8 to 128 characters".into());
    }
    Ok(())
}

impl Action for BasicAuth {
    fn run<'a>(&'a self, ex: &'a mut Exchange) -> ActionFuture<'a> {
        ready(self.check(ex))
    }
}

impl BasicAuth {
    fn check(&self, ex: &mut Exchange) -> Result<Flow, ActionError> {
        let presented = presented_credential(&ex.request.headers);
        let mut authorized = false;
        if let Some(presented) = &presented {
            let scope = ex.scope();
            for template in &self.credentials {
                let expected = template.eval_string(&scope)?;
                // Compare every configured credential, in constant time each.
                authorized |= bool::from(expected.as_bytes().ct_eq(presented.as_bytes()));
            }
        }
        let username = presented
            .as_deref()
            .and_then(|c| c.split_once(':'))
            .map_or("", |(user, _)| user);
        ex.results.set(
            KIND.result_name,
            Value::from(HashMap::from([
                (
                    "credentials",
                    Value::from(HashMap::from([(
                        "presented",
                        Value::Bool(presented.is_some()),
                    )])),
                ),
                ("username", Value::from(username.to_owned())),
                ("authorized", Value::Bool(authorized)),
            ])),
        );
        if authorized || !self.enforce {
            return Ok(Flow::Continue);
        }
        Err(GatewayError::new(
            ErrorCode::Unauthorized,
            "valid basic-auth credentials are required",
        )
        .with_header(http::header::WWW_AUTHENTICATE, self.challenge.clone())
        .into())
    }
}

/// The decoded `user:password` of an `Authorization: Basic ...` header.
fn presented_credential(headers: &http::HeaderMap) -> Option<String> {
    let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    String::from_utf8(decoded).ok()
}

#[cfg(test)]
mod tests {
    use super::check_credential;

    #[test]
    fn credential_rules() {
        assert!(check_credential("alice:correct-horse").is_ok());
        assert!(check_credential("alice").is_err());
        assert!(check_credential(":password123").is_err());
        assert!(check_credential("alice:short").is_err());
    }
}
