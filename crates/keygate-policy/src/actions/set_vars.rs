//! `set-vars`: define `vars.<name>` for later rules of the same phase.

use serde::Deserialize;

use crate::action::{
    ready, Action, ActionError, ActionFuture, ActionKind, Flow, Phase, Termination,
};
use crate::actions::value_template::ValueTemplate;
use crate::build::BuildContext;
use crate::diagnostic::Diagnostic;
use crate::exchange::Exchange;

pub const KIND: ActionKind = ActionKind {
    name: "set-vars",
    result_name: "set_vars",
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
    vars: Vec<serde_json::Map<String, serde_json::Value>>,
}

struct SetVars {
    vars: Vec<(String, ValueTemplate)>,
}

fn build(cx: &BuildContext<'_>) -> Result<Box<dyn Action>, Diagnostic> {
    let config: Config = cx.config()?;
    if config.vars.is_empty() {
        return Err(cx.error("vars", "vars must not be empty"));
    }
    let mut vars = Vec::with_capacity(config.vars.len());
    for (i, entry) in config.vars.iter().enumerate() {
        let field = format!("vars[{i}]");
        let mut entries = entry.iter();
        let (Some((name, value)), None) = (entries.next(), entries.next()) else {
            return Err(cx.error(&field, "each entry of vars is a map with exactly one name"));
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(cx.error(
                &field,
                format!("invalid variable name '{name}': use letters, digits and _"),
            ));
        }
        vars.push((
            name.clone(),
            ValueTemplate::build(cx, &format!("{field}.{name}"), value)?,
        ));
    }
    Ok(Box::new(SetVars { vars }))
}

impl Action for SetVars {
    fn run<'a>(&'a self, ex: &'a mut Exchange) -> ActionFuture<'a> {
        ready(self.set(ex).map(|()| Flow::Continue))
    }
}

impl SetVars {
    fn set(&self, ex: &mut Exchange) -> Result<(), ActionError> {
        for (name, template) in &self.vars {
            let value = template.eval(&ex.scope())?;
            ex.vars.set(name, value);
        }
        Ok(())
    }
}
