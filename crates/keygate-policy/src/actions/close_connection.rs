//! `close-connection`: drop the client connection without an answer.

use serde::Deserialize;

use crate::action::{ready, Action, ActionFuture, ActionKind, Flow, Phase, Termination};
use crate::build::BuildContext;
use crate::diagnostic::Diagnostic;
use crate::exchange::Exchange;

pub const KIND: ActionKind = ActionKind {
    name: "close-connection",
    result_name: "close_connection",
    phases: &[Phase::OnTcpConnect, Phase::OnHttpRequest],
    termination: Termination::Always,
    needs_config: false,
    build,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {}

struct CloseConnection;

fn build(cx: &BuildContext<'_>) -> Result<Box<dyn Action>, Diagnostic> {
    let Config {} = cx.config()?;
    Ok(Box::new(CloseConnection))
}

impl Action for CloseConnection {
    fn run<'a>(&'a self, _ex: &'a mut Exchange) -> ActionFuture<'a> {
        ready(Ok(Flow::Close))
    }
}
