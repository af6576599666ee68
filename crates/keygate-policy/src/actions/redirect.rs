//! `redirect`: answer with a 3xx to a rewritten URL (the phase ends when it fires).

use std::collections::{BTreeMap, HashMap};

use http::{HeaderValue, Response, StatusCode};
use keygate_cel::{EvalError, Template, Value};
use serde::Deserialize;

use crate::action::{
    ready, Action, ActionError, ActionFuture, ActionKind, Flow, Phase, Termination,
};
use crate::actions::header_templates::HeaderTemplates;
use crate::actions::url_pattern::{request_url, rewrite, Pattern};
use crate::body::empty;
use crate::build::BuildContext;
use crate::diagnostic::Diagnostic;
use crate::exchange::Exchange;

pub const KIND: ActionKind = ActionKind {
    name: "redirect",
    result_name: "redirect",
    phases: &[Phase::OnHttpRequest],
    termination: Termination::Sometimes,
    needs_config: true,
    build,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    from: Option<String>,
    to: String,
    status_code: Option<i64>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

struct Redirect {
    from: Option<Pattern>,
    to: Template,
    status: StatusCode,
    headers: HeaderTemplates,
}

fn build(cx: &BuildContext<'_>) -> Result<Box<dyn Action>, Diagnostic> {
    let config: Config = cx.config()?;
    let code = config.status_code.unwrap_or(302);
    let status = match code {
        301 | 302 | 303 | 307 | 308 => StatusCode::from_u16(code as u16)
            .map_err(|_| cx.error("status_code", "invalid status"))?,
        _ => {
            return Err(cx.error(
                "status_code",
                format!("status_code must be 301, 302, 303, 307 or 308, got {code}"),
            ))
        }
    };
    let from = config
        .from
        .as_deref()
        .map(|from| Pattern::build(cx, "from", from))
        .transpose()?;
    Ok(Box::new(Redirect {
        from,
        to: cx.template("to", &config.to)?,
        status,
        headers: HeaderTemplates::build(cx, "headers", &config.headers)?,
    }))
}

impl Action for Redirect {
    fn run<'a>(&'a self, ex: &'a mut Exchange) -> ActionFuture<'a> {
        ready(self.redirect(ex))
    }
}

impl Redirect {
    fn redirect(&self, ex: &mut Exchange) -> Result<Flow, ActionError> {
        let url = request_url(ex);
        let scope = ex.scope();
        let (target, matches) = rewrite(self.from.as_ref(), &self.to, &url, &scope, false)?;
        let target = absolute(&target, &url);
        let headers = self.headers.render(&scope)?;
        let fired = target != url;
        ex.results.set(
            KIND.result_name,
            Value::from(HashMap::from([
                ("matches", Value::List(matches.into())),
                ("url", Value::from(target.clone())),
            ])),
        );
        if !fired {
            return Ok(Flow::Continue);
        }
        let location = HeaderValue::from_str(&target).map_err(|_| EvalError {
            message: "redirect target is not a valid Location header".into(),
        })?;
        let mut response = Response::new(empty());
        *response.status_mut() = self.status;
        response
            .headers_mut()
            .insert(http::header::LOCATION, location);
        for (name, value) in headers {
            response.headers_mut().append(name, value);
        }
        Ok(Flow::Respond(response))
    }
}

/// Resolves a path-only target (`/new?x=1`) against the request's scheme and authority.
fn absolute(target: &str, original: &str) -> String {
    if !target.starts_with('/') || target.starts_with("//") {
        return target.to_owned();
    }
    let origin_end = original
        .find("://")
        .map(|i| i + 3)
        .and_then(|start| original[start..].find('/').map(|slash| start + slash));
    match origin_end {
        Some(end) => format!("{}{target}", &original[..end]),
        None => format!("{original}{target}"),
    }
}

#[cfg(test)]
mod tests {
    use super::absolute;

    #[test]
    fn relative_targets_keep_the_origin() {
        assert_eq!(absolute("/b?x=1", "https://h:8/a"), "https://h:8/b?x=1");
        assert_eq!(
            absolute("https://other/x", "https://h/a"),
            "https://other/x"
        );
    }
}
