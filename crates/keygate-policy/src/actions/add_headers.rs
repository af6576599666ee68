//! `add-headers`: add headers to the upstream request (request phase) or the client response.

use std::collections::{BTreeMap, HashMap};

use http::HeaderMap;
use keygate_cel::Value;
use serde::Deserialize;

use crate::action::{
    ready, Action, ActionError, ActionFuture, ActionKind, Flow, Phase, Termination,
};
use crate::actions::header_templates::HeaderTemplates;
use crate::build::BuildContext;
use crate::diagnostic::Diagnostic;
use crate::exchange::Exchange;

pub const KIND: ActionKind = ActionKind {
    name: "add-headers",
    result_name: "add_headers",
    phases: &[Phase::OnHttpRequest, Phase::OnHttpResponse],
    termination: Termination::Never,
    needs_config: true,
    build,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    headers: BTreeMap<String, String>,
}

struct AddHeaders {
    headers: HeaderTemplates,
}

fn build(cx: &BuildContext<'_>) -> Result<Box<dyn Action>, Diagnostic> {
    let config: Config = cx.config()?;
    if config.headers.is_empty() {
        return Err(cx.error("headers", "headers must not be empty"));
    }
    let headers = HeaderTemplates::build(cx, "headers", &config.headers)?;
    if headers.contains("user-agent") {
        return Err(cx.error("headers.user-agent", "user-agent may not be added"));
    }
    Ok(Box::new(AddHeaders { headers }))
}

impl Action for AddHeaders {
    fn run<'a>(&'a self, ex: &'a mut Exchange) -> ActionFuture<'a> {
        ready(self.add(ex).map(|()| Flow::Continue))
    }
}

impl AddHeaders {
    fn add(&self, ex: &mut Exchange) -> Result<(), ActionError> {
        let rendered = self.headers.render(&ex.scope())?;
        let target: &mut HeaderMap = match ex.response.as_mut() {
            Some(response) => &mut response.headers,
            None => &mut ex.request.headers,
        };
        let mut added = HashMap::with_capacity(rendered.len());
        for (name, value) in rendered {
            added.insert(
                name.as_str().to_owned(),
                Value::from(value.to_str().unwrap_or_default().to_owned()),
            );
            if name == http::header::HOST {
                target.insert(name, value);
            } else {
                target.append(name, value);
            }
        }
        ex.results.set(
            KIND.result_name,
            Value::from(HashMap::from([("headers_added", Value::from(added))])),
        );
        Ok(())
    }
}
