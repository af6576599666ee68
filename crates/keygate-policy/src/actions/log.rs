//! `log`: attach metadata to the request's access-log line.

use std::collections::HashMap;

use keygate_cel::{to_json, Value};
use serde::Deserialize;

use crate::action::{
    ready, Action, ActionError, ActionFuture, ActionKind, Flow, Phase, Termination,
};
use crate::actions::value_template::ValueTemplate;
use crate::build::BuildContext;
use crate::diagnostic::Diagnostic;
use crate::exchange::Exchange;

pub const KIND: ActionKind = ActionKind {
    name: "log",
    result_name: "log",
    phases: &[
        Phase::OnTcpConnect,
        Phase::OnHttpRequest,
        Phase::OnHttpResponse,
    ],
    termination: Termination::Never,
    needs_config: true,
    build,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    metadata: serde_json::Map<String, serde_json::Value>,
}

struct Log {
    metadata: ValueTemplate,
}

fn build(cx: &BuildContext<'_>) -> Result<Box<dyn Action>, Diagnostic> {
    let config: Config = cx.config()?;
    if config.metadata.is_empty() {
        return Err(cx.error("metadata", "metadata must not be empty"));
    }
    let metadata =
        ValueTemplate::build(cx, "metadata", &serde_json::Value::Object(config.metadata))?;
    Ok(Box::new(Log { metadata }))
}

impl Action for Log {
    fn run<'a>(&'a self, ex: &'a mut Exchange) -> ActionFuture<'a> {
        ready(self.log(ex).map(|()| Flow::Continue))
    }
}

impl Log {
    fn log(&self, ex: &mut Exchange) -> Result<(), ActionError> {
        let metadata = self.metadata.eval(&ex.scope())?;
        ex.log.metadata.push(to_json(&metadata));
        ex.results.set(
            KIND.result_name,
            Value::from(HashMap::from([("metadata", metadata)])),
        );
        Ok(())
    }
}
