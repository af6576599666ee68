//! `deny`: answer with a status (default 403) and no body.

use http::{Response, StatusCode};
use serde::Deserialize;

use crate::action::{ready, Action, ActionFuture, ActionKind, Flow, Phase, Termination};
use crate::body::empty;
use crate::build::BuildContext;
use crate::diagnostic::Diagnostic;
use crate::exchange::Exchange;

pub const KIND: ActionKind = ActionKind {
    name: "deny",
    result_name: "deny",
    phases: &[Phase::OnTcpConnect, Phase::OnHttpRequest],
    termination: Termination::Always,
    needs_config: false,
    build,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    status_code: Option<i64>,
}

struct Deny {
    status: StatusCode,
}

fn build(cx: &BuildContext<'_>) -> Result<Box<dyn Action>, Diagnostic> {
    let config: Config = cx.config()?;
    let code = config.status_code.unwrap_or(403);
    let status = u16::try_from(code)
        .ok()
        .filter(|c| (400..=599).contains(c))
        .and_then(|c| StatusCode::from_u16(c).ok())
        .ok_or_else(|| {
            cx.error(
                "status_code",
                format!("status_code must be 400-599, got {code}"),
            )
        })?;
    Ok(Box::new(Deny { status }))
}

impl Action for Deny {
    fn run<'a>(&'a self, _ex: &'a mut Exchange) -> ActionFuture<'a> {
        let mut response = Response::new(empty());
        *response.status_mut() = self.status;
        ready(Ok(Flow::Respond(response)))
    }
}
