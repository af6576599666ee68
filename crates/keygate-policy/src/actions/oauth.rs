//! `oauth`: sign browsers in with a well-known OAuth 2.0 provider (amazon, facebook, github,
//! gitlab, google, linkedin, microsoft, twitch) with the operator's own OAuth application, and
//! let only signed-in requests through; the flow is in [`super::login`].

use std::collections::HashMap;

use serde::Deserialize;

use super::login::{Backend, CommonConfig, LoginFlow, Provider, PROVIDERS};
use crate::action::{Action, ActionKind, Phase, Termination};
use crate::build::BuildContext;
use crate::diagnostic::Diagnostic;

pub const KIND: ActionKind = ActionKind {
    name: "oauth",
    result_name: "oauth",
    phases: &[Phase::OnHttpRequest],
    termination: Termination::Sometimes,
    needs_config: true,
    build,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    provider: String,
    auth_id: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    scopes: Option<Vec<String>>,
    authz_url_params: Option<HashMap<String, String>>,
    max_session_duration: Option<String>,
    idle_session_timeout: Option<String>,
    userinfo_refresh_interval: Option<String>,
    allow_cors_preflight: Option<bool>,
    auth_cookie_domain: Option<String>,
}

fn build(cx: &BuildContext<'_>) -> Result<Box<dyn Action>, Diagnostic> {
    let config: Config = cx.config()?;
    let Some(provider) = Provider::find(&config.provider) else {
        let names: Vec<&str> = PROVIDERS.iter().map(|p| p.name).collect();
        return Err(cx.error(
            "provider",
            format!(
                "unknown provider '{}'; use one of: {}",
                config.provider,
                names.join(", ")
            ),
        ));
    };
    match (&config.client_id, &config.client_secret) {
        (None, None) => {
            return Err(cx.error(
                "",
                "client_id and client_secret are required: ngrok-managed OAuth applications \
                 are an ngrok cloud feature; register your own application with the provider",
            ))
        }
        (Some(_), None) => {
            return Err(cx.error("client_secret", "client_secret is required with client_id"))
        }
        (None, Some(_)) => {
            return Err(cx.error("client_id", "client_id is required with client_secret"))
        }
        (Some(_), Some(_)) => {}
    }
    let auth_id = config.auth_id.unwrap_or_else(|| provider.name.to_owned());
    let valid_id = !auth_id.is_empty()
        && auth_id.len() <= 64
        && auth_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !valid_id {
        return Err(cx.error("auth_id", "auth_id is 1 to 64 letters, digits, '-' or '_'"));
    }
    let endpoints = provider.endpoints(&cx.deps.provider_urls).map_err(|err| {
        cx.error(
            "provider",
            format!("--provider-url {}: {err}", provider.override_key()),
        )
    })?;
    let common = CommonConfig {
        client_id: config.client_id,
        client_secret: config.client_secret,
        scopes: config.scopes,
        authz_url_params: config.authz_url_params,
        max_session_duration: config.max_session_duration,
        idle: ("idle_session_timeout", config.idle_session_timeout),
        userinfo_refresh_interval: config.userinfo_refresh_interval,
        allow_cors_preflight: config.allow_cors_preflight,
        auth_cookie_domain: config.auth_cookie_domain,
    };
    let flow = LoginFlow::build(
        cx,
        KIND.result_name,
        Backend::OAuth {
            provider,
            endpoints: Box::new(endpoints),
        },
        common,
        &auth_id,
        provider.default_scopes,
    )?;
    Ok(Box::new(flow))
}
