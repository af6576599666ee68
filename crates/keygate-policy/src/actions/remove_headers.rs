//! `remove-headers`: remove headers from the upstream request or the client response.

use std::collections::HashMap;

use http::HeaderName;
use keygate_cel::Value;
use serde::Deserialize;

use crate::action::{ready, Action, ActionFuture, ActionKind, Flow, Phase, Termination};
use crate::build::BuildContext;
use crate::diagnostic::Diagnostic;
use crate::exchange::Exchange;

pub const KIND: ActionKind = ActionKind {
    name: "remove-headers",
    result_name: "remove_headers",
    phases: &[Phase::OnHttpRequest, Phase::OnHttpResponse],
    termination: Termination::Never,
    needs_config: true,
    build,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    headers: Vec<String>,
}

struct RemoveHeaders {
    headers: Vec<HeaderName>,
}

fn build(cx: &BuildContext<'_>) -> Result<Box<dyn Action>, Diagnostic> {
    let config: Config = cx.config()?;
    if config.headers.is_empty() || config.headers.len() > 10 {
        return Err(cx.error("headers", "give 1 to 10 header names"));
    }
    let mut headers = Vec::with_capacity(config.headers.len());
    for (i, name) in config.headers.iter().enumerate() {
        let field = format!("headers[{i}]");
        let header = HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes())
            .map_err(|_| cx.error(&field, format!("invalid header name '{name}'")))?;
        if header == http::header::USER_AGENT {
            return Err(cx.error(&field, "user-agent may not be removed"));
        }
        headers.push(header);
    }
    Ok(Box::new(RemoveHeaders { headers }))
}

impl Action for RemoveHeaders {
    fn run<'a>(&'a self, ex: &'a mut Exchange) -> ActionFuture<'a> {
        let target = match ex.response.as_mut() {
            Some(response) => &mut response.headers,
            None => &mut ex.request.headers,
        };
        let removed: Vec<Value> = self
            .headers
            .iter()
            .filter(|name| target.remove(*name).is_some())
            .map(|name| Value::from(name.as_str().to_owned()))
            .collect();
        ex.results.set(
            KIND.result_name,
            Value::from(HashMap::from([(
                "headers_removed",
                Value::List(removed.into()),
            )])),
        );
        ready(Ok(Flow::Continue))
    }
}
