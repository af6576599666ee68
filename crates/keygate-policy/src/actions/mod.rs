//! Every action type, one module each, and the registry that finds them by name.

mod header_templates;
mod url_pattern;
mod value_template;

mod add_headers;
mod ai_gateway;
mod basic_auth;
mod close_connection;
mod custom_response;
mod deny;
mod jwt_validation;
mod log;
mod rate_limit;
mod redirect;
mod remove_headers;
pub mod restrict_ips;
mod set_vars;
mod url_rewrite;

/// ngrok's duration syntax (`30s`, `5m`, `1m30s`, `250ms`), also used by `keygate serve` flags.
pub use ai_gateway::parse_duration;

use crate::action::ActionKind;

/// All supported action types. Adding an action: one module above and one line here.
pub static REGISTRY: &[&ActionKind] = &[
    &add_headers::KIND,
    &ai_gateway::KIND,
    &basic_auth::KIND,
    &close_connection::KIND,
    &custom_response::KIND,
    &deny::KIND,
    &jwt_validation::KIND,
    &log::KIND,
    &rate_limit::KIND,
    &redirect::KIND,
    &remove_headers::KIND,
    &restrict_ips::KIND,
    &set_vars::KIND,
    &url_rewrite::KIND,
];

/// The action type called `name`.
pub fn find(name: &str) -> Option<&'static ActionKind> {
    REGISTRY.iter().copied().find(|kind| kind.name == name)
}
