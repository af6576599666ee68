//! Every action type, one module each, and the registry that finds them by name.

mod find_replace;
mod header_templates;
mod url_pattern;
mod value_template;

mod add_headers;
mod ai_gateway;
mod basic_auth;
mod circuit_breaker;
mod close_connection;
mod compress_response;
mod custom_response;
mod deny;
mod forward_internal;
mod http_request;
mod jwt_validation;
mod log;
mod login;
mod oauth;
mod openid_connect;
mod rate_limit;
mod redirect;
mod remove_headers;
mod request_body_find_replace;
mod response_body_find_replace;
pub mod restrict_ips;
mod set_vars;
mod sse_find_replace;
mod url_rewrite;
mod verify_webhook;

/// ngrok's duration syntax (`30s`, `5m`, `1m30s`, `250ms`), also used by `keygate serve` flags.
pub use ai_gateway::parse_duration;

use crate::action::ActionKind;

/// All supported action types. Adding an action: one module above and one line here.
pub static REGISTRY: &[&ActionKind] = &[
    &add_headers::KIND,
    &ai_gateway::KIND,
    &basic_auth::KIND,
    &circuit_breaker::KIND,
    &close_connection::KIND,
    &compress_response::KIND,
    &custom_response::KIND,
    &deny::KIND,
    &forward_internal::KIND,
    &http_request::KIND,
    &jwt_validation::KIND,
    &log::KIND,
    &oauth::KIND,
    &openid_connect::KIND,
    &rate_limit::KIND,
    &redirect::KIND,
    &remove_headers::KIND,
    &request_body_find_replace::KIND,
    &response_body_find_replace::KIND,
    &restrict_ips::KIND,
    &set_vars::KIND,
    &sse_find_replace::KIND,
    &url_rewrite::KIND,
    &verify_webhook::KIND,
];

/// The action type called `name`.
pub fn find(name: &str) -> Option<&'static ActionKind> {
    REGISTRY.iter().copied().find(|kind| kind.name == name)
}
