//! `url-rewrite`: rewrite the URL sent upstream (the client's URL is unchanged).

use std::collections::HashMap;

use http::Uri;
use keygate_cel::{EvalError, Template, Value};
use serde::Deserialize;

use crate::action::{
    ready, Action, ActionError, ActionFuture, ActionKind, Flow, Phase, Termination,
};
use crate::actions::url_pattern::{request_url, rewrite, Pattern};
use crate::build::BuildContext;
use crate::diagnostic::Diagnostic;
use crate::exchange::Exchange;

pub const KIND: ActionKind = ActionKind {
    name: "url-rewrite",
    result_name: "url_rewrite",
    phases: &[Phase::OnHttpRequest],
    termination: Termination::Never,
    needs_config: true,
    build,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    from: String,
    to: String,
}

struct UrlRewrite {
    from: Pattern,
    to: Template,
}

fn build(cx: &BuildContext<'_>) -> Result<Box<dyn Action>, Diagnostic> {
    let config: Config = cx.config()?;
    Ok(Box::new(UrlRewrite {
        from: Pattern::build(cx, "from", &config.from)?,
        to: cx.template("to", &config.to)?,
    }))
}

impl Action for UrlRewrite {
    fn run<'a>(&'a self, ex: &'a mut Exchange) -> ActionFuture<'a> {
        ready(self.rewrite(ex).map(|()| Flow::Continue))
    }
}

impl UrlRewrite {
    fn rewrite(&self, ex: &mut Exchange) -> Result<(), ActionError> {
        let url = request_url(ex);
        let (rewritten, matches) = rewrite(Some(&self.from), &self.to, &url, &ex.scope(), true)?;
        if rewritten != url {
            let uri: Uri = rewritten.parse().map_err(|_| EvalError {
                message: format!("url-rewrite produced an invalid URL '{rewritten}'"),
            })?;
            let path_and_query = uri.path_and_query().cloned();
            ex.request.uri = Uri::from_parts({
                let mut parts = http::uri::Parts::default();
                parts.path_and_query = path_and_query;
                parts
            })
            .map_err(|_| EvalError {
                message: "url-rewrite produced a URL without a path".into(),
            })?;
            if let Some(authority) = uri.authority() {
                if let Ok(host) = http::HeaderValue::from_str(authority.as_str()) {
                    ex.request.headers.insert(http::header::HOST, host);
                }
            }
        }
        ex.results.set(
            KIND.result_name,
            Value::from(HashMap::from([
                ("matches", Value::List(matches.into())),
                ("url", Value::from(rewritten)),
            ])),
        );
        Ok(())
    }
}
