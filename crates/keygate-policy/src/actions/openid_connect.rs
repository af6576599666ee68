//! `openid-connect`: sign browsers in with any OpenID Connect provider (discovered from
//! `issuer_url`) and let only signed-in requests through; the flow is in [`super::login`].

use std::collections::HashMap;
use std::sync::Arc;

use serde::Deserialize;

use super::login::{Backend, CommonConfig, LoginFlow, Oidc};
use crate::action::{Action, ActionKind, Phase, Termination};
use crate::build::BuildContext;
use crate::diagnostic::Diagnostic;

pub const KIND: ActionKind = ActionKind {
    name: "openid-connect",
    result_name: "oidc",
    phases: &[Phase::OnHttpRequest],
    termination: Termination::Sometimes,
    needs_config: true,
    build,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    issuer_url: String,
    client_id: Option<String>,
    client_secret: Option<String>,
    scopes: Option<Vec<String>>,
    authz_url_params: Option<HashMap<String, String>>,
    max_session_duration: Option<String>,
    idle_session_duration: Option<String>,
    userinfo_refresh_interval: Option<String>,
    allow_cors_preflight: Option<bool>,
    auth_cookie_domain: Option<String>,
}

fn build(cx: &BuildContext<'_>) -> Result<Box<dyn Action>, Diagnostic> {
    let config: Config = cx.config()?;
    let oidc = Oidc::new(config.issuer_url.trim(), cx.deps.http.clone())
        .map_err(|err| cx.error("issuer_url", err))?;
    if oidc.insecure() {
        cx.warn(
            "issuer_url",
            "the issuer is plain http: use https outside local testing",
        );
    }
    let oidc = Arc::new(oidc);
    // Discovery runs in the background: an unreachable provider never stops a policy from
    // loading; requests retry it and get 502 until it succeeds.
    if !cx.deps.offline {
        oidc.start();
    }
    let common = CommonConfig {
        client_id: config.client_id,
        client_secret: config.client_secret,
        scopes: config.scopes,
        authz_url_params: config.authz_url_params,
        max_session_duration: config.max_session_duration,
        idle: ("idle_session_duration", config.idle_session_duration),
        userinfo_refresh_interval: config.userinfo_refresh_interval,
        allow_cors_preflight: config.allow_cors_preflight,
        auth_cookie_domain: config.auth_cookie_domain,
    };
    let flow = LoginFlow::build(
        cx,
        KIND.result_name,
        Backend::Oidc(oidc),
        common,
        "oidc",
        &["openid", "profile", "email"],
    )?;
    Ok(Box::new(flow))
}
