//! `forward-internal`: hands the request to an internal endpoint (`NAME.internal`) this gateway
//! serves, in process: that endpoint's policy, upstream and response phase run as for a request
//! of its own, and its answer is this action's. The URL's host names the endpoint; the request
//! keeps its path and query unless the URL gives a path (or query) of its own.

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use http::uri::PathAndQuery;
use http::Uri;
use keygate_cel::{Template, Value};
use serde::Deserialize;

use crate::action::{Action, ActionError, ActionFuture, ActionKind, Flow, Phase, Termination};
use crate::actions::ai_gateway::OnError;
use crate::build::BuildContext;
use crate::diagnostic::Diagnostic;
use crate::engine::copy_request_head;
use crate::error::{ErrorCode, GatewayError};
use crate::exchange::{Exchange, RequestBody, RequestLog};
use crate::internal::{InternalEndpoints, InternalHops};

pub const KIND: ActionKind = ActionKind {
    name: "forward-internal",
    result_name: "forward_internal",
    phases: &[Phase::OnHttpRequest],
    termination: Termination::Sometimes,
    needs_config: true,
    build,
};

/// Internal hops one request may make: a fourth is refused as a loop.
const MAX_HOPS: u8 = 3;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    url: String,
    #[serde(default)]
    on_error: OnError,
}

struct ForwardInternal {
    url: Template,
    on_error: OnError,
    /// Weak: the endpoints own the policies that hold this action.
    endpoints: Option<Weak<dyn InternalEndpoints>>,
}

/// Where a URL points.
#[derive(Debug, PartialEq, Eq)]
struct Target {
    /// The endpoint: the URL's lowercase authority (`api.internal`, `svc.internal:1234`).
    name: String,
    /// `scheme://host:port`, published on failure.
    origin: String,
    /// The URL's own path and query, when it gives one.
    path: Option<PathAndQuery>,
}

fn build(cx: &BuildContext<'_>) -> Result<Box<dyn Action>, Diagnostic> {
    let config: Config = cx.config()?;
    let url = cx.template("url", &config.url)?;
    let endpoints = cx.deps.internal_endpoints.as_ref();
    if let Some(literal) = url.as_literal() {
        let target = Target::parse(literal).map_err(|message| cx.error("url", message))?;
        if endpoints.is_some_and(|e| !e.contains(&target.name)) {
            return Err(cx.error(
                "url",
                format!(
                    "no internal endpoint '{}' is declared (keygate serve --internal-endpoint {}=POLICY)",
                    target.name, target.name
                ),
            ));
        }
    }
    Ok(Box::new(ForwardInternal {
        url,
        on_error: config.on_error,
        endpoints: endpoints.map(Arc::downgrade),
    }))
}

impl Target {
    fn parse(url: &str) -> Result<Self, String> {
        let invalid = || {
            format!(
                "'{url}' is not an internal endpoint URL: use http(s)://NAME.internal[:PORT][/PATH]"
            )
        };
        let uri: Uri = url.trim().parse().map_err(|_| invalid())?;
        let scheme = uri.scheme_str().map(str::to_ascii_lowercase);
        let default_port = match scheme.as_deref() {
            Some("http") => 80,
            Some("https") => 443,
            _ => return Err(invalid()),
        };
        let authority = uri.authority().ok_or_else(invalid)?;
        let host = authority.host().to_ascii_lowercase();
        let label = host.strip_suffix(".internal").ok_or_else(invalid)?;
        if label.is_empty() || authority.as_str().contains('@') {
            return Err(invalid());
        }
        let port = authority.port_u16();
        Ok(Target {
            name: match port {
                Some(port) => format!("{host}:{port}"),
                None => host.clone(),
            },
            origin: format!(
                "{}://{host}:{}",
                scheme.unwrap_or_default(),
                port.unwrap_or(default_port)
            ),
            path: uri
                .path_and_query()
                .filter(|pq| !matches!(pq.as_str(), "" | "/"))
                .cloned(),
        })
    }
}

impl Action for ForwardInternal {
    fn run<'a>(&'a self, ex: &'a mut Exchange) -> ActionFuture<'a> {
        Box::pin(self.forward(ex))
    }
}

impl ForwardInternal {
    async fn forward(&self, ex: &mut Exchange) -> Result<Flow, ActionError> {
        let url = self.url.eval_string(&ex.scope())?;
        let target = match Target::parse(&url) {
            Ok(target) => target,
            Err(message) => {
                let err = GatewayError::new(ErrorCode::InternalEndpointMissing, message);
                return self.failed(ex, &url, err);
            }
        };
        let endpoints = match self.reachable(&target, ex) {
            Ok(endpoints) => endpoints,
            Err(err) => return self.failed(ex, &target.origin, err),
        };
        let mut inner = hop(ex, target.path);
        let response = endpoints.serve(&target.name, &mut inner).await;
        absorb(&mut ex.log, &target.name, inner.log);
        ex.response_headers.extend(inner.response_headers);
        Ok(response.map_or(Flow::Close, Flow::Respond))
    }

    /// The endpoints, when `target` is one of them and the request may make another hop.
    fn reachable(
        &self,
        target: &Target,
        ex: &Exchange,
    ) -> Result<Arc<dyn InternalEndpoints>, GatewayError> {
        let endpoints = self
            .endpoints
            .as_ref()
            .and_then(Weak::upgrade)
            .filter(|e| e.contains(&target.name))
            .ok_or_else(|| {
                GatewayError::new(
                    ErrorCode::InternalEndpointMissing,
                    format!("no internal endpoint '{}' is served", target.name),
                )
            })?;
        if InternalHops::of(&ex.request) >= MAX_HOPS {
            return Err(GatewayError::new(
                ErrorCode::InternalLoop,
                format!(
                    "the request already went through {MAX_HOPS} internal endpoints (a forward-internal loop?)"
                ),
            ));
        }
        Ok(endpoints)
    }

    /// `on_error: continue` records the failure and goes on; `halt` answers with it.
    fn failed(&self, ex: &mut Exchange, url: &str, err: GatewayError) -> Result<Flow, ActionError> {
        if self.on_error == OnError::Halt {
            return Err(err.into());
        }
        let error = HashMap::from([
            ("code", Value::from(err.code.as_str().to_owned())),
            ("message", Value::from(err.message)),
        ]);
        ex.results.set(
            KIND.result_name,
            Value::from(HashMap::from([
                ("url", Value::from(url.to_owned())),
                ("error", Value::from(error)),
            ])),
        );
        Ok(Flow::Continue)
    }
}

/// The exchange the internal endpoint serves: this request's head (with `path` when the URL
/// gave one, and one more hop counted) and its body, which it takes.
fn hop(ex: &mut Exchange, path: Option<PathAndQuery>) -> Exchange {
    let mut head = copy_request_head(&ex.request);
    if let Some(path) = path {
        let mut parts = std::mem::take(&mut head.uri).into_parts();
        parts.path_and_query = Some(path);
        head.uri = Uri::from_parts(parts).unwrap_or_default();
    }
    let hops = InternalHops::of(&ex.request);
    head.extensions.insert(InternalHops(hops + 1));
    let body = std::mem::replace(&mut ex.body, RequestBody::Buffered(Default::default()));
    let mut inner = Exchange::new(
        ex.id.clone(),
        ex.conn.clone(),
        ex.scheme,
        head,
        body,
        ex.max_body_bytes,
        ex.secrets.clone(),
    );
    inner.trace = ex.trace;
    inner
}

/// Carries what the internal endpoint's run logged into this request's log: its matched rules
/// (as `ENDPOINT/RULE`), `log` metadata, AI call and budget (settled when this response ends).
fn absorb(outer: &mut RequestLog, name: &str, inner: RequestLog) {
    outer.matched_rules.extend(
        inner
            .matched_rules
            .iter()
            .map(|rule| Arc::from(format!("{name}/{rule}"))),
    );
    outer.metadata.extend(inner.metadata);
    outer.attempts.extend(inner.attempts);
    outer.ai = inner.ai.or(outer.ai.take());
    outer.error = inner.error.or(outer.error.take());
    outer.access_key = outer.access_key.take().or(inner.access_key);
    outer.budget = inner.budget.or(outer.budget.take());
}

#[cfg(test)]
mod tests;
