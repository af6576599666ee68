//! Running a compiled policy: rules top to bottom, actions left to right, until one ends the phase.

use std::sync::Arc;

use http::Response;
use keygate_cel::{ConnInfo, SecretSource};
use tracing::warn;

use crate::action::{ActionError, Flow, Phase};
use crate::body::Body;
use crate::error::GatewayError;
use crate::event_stream;
use crate::exchange::{Exchange, RequestBody, RequestLog};
use crate::observe::{ActionStep, NoObserver, Observer};
use crate::policy::{Policy, Rule};

/// How a phase ended.
pub enum Outcome {
    /// No action answered: forward the request (request phase) or send the response as it is.
    Continue,
    /// Answer the client with this response.
    Respond(Response<Body>),
    /// Drop the client connection.
    Close,
}

/// How `on_tcp_connect` ended for one connection.
pub struct ConnectionVerdict {
    /// False when an action refused the connection (`deny`, `restrict-ips`, `close-connection`
    /// or a failed expression): it is dropped before TLS and HTTP.
    pub accepted: bool,
    /// The matched rules, the refusing action and `log` metadata.
    pub log: RequestLog,
}

impl Policy {
    /// Whether the policy has `on_tcp_connect` rules (the listener skips the phase otherwise).
    pub fn has_tcp_connect_rules(&self) -> bool {
        !self.on_tcp_connect.is_empty()
    }

    /// Runs `on_tcp_connect` for a new connection. Expressions see `conn.*` (without TLS
    /// details: the phase runs before the handshake), `vars.*` and `actions.*`; any answer an
    /// action would give in HTTP (a 403 from `deny` or `restrict-ips`) refuses the connection.
    pub async fn on_tcp_connect(
        &self,
        conn: Arc<ConnInfo>,
        secrets: Arc<dyn SecretSource>,
    ) -> ConnectionVerdict {
        let (head, ()) = http::Request::new(()).into_parts();
        let mut ex = Exchange::new(
            String::new(),
            conn,
            "tcp",
            head,
            RequestBody::Buffered(Default::default()),
            0,
            secrets,
        );
        ex.phase = Phase::OnTcpConnect;
        let outcome = run_phase(&self.on_tcp_connect, &mut ex, &mut NoObserver).await;
        ConnectionVerdict {
            accepted: matches!(outcome, Outcome::Continue),
            log: ex.log,
        }
    }

    /// Runs `on_http_request`.
    pub async fn on_http_request(&self, ex: &mut Exchange) -> Outcome {
        self.on_http_request_observed(ex, &mut NoObserver).await
    }

    /// Runs `on_http_request`, telling `observer` each step (`keygate policy test`).
    pub async fn on_http_request_observed<O: Observer>(
        &self,
        ex: &mut Exchange,
        observer: &mut O,
    ) -> Outcome {
        observer.phase(Phase::OnHttpRequest);
        ex.phase = Phase::OnHttpRequest;
        if let Some(check) = &self.access_keys {
            if let Err(err) = check.run(ex) {
                observer.access_key_refused(err.status());
                return Outcome::Respond(err.into_response(ex.api_format));
            }
        }
        run_phase(&self.on_http_request, ex, observer).await
    }

    /// Runs `on_http_response` over `response` (from upstream or an earlier custom-response) and
    /// returns what goes to the client, or `None` when an action closed the connection. The
    /// exchange's response observers learn the status first, even when there are no rules. An
    /// event stream's events then pass through `on_event_stream_message`.
    pub async fn on_http_response(
        &self,
        ex: &mut Exchange,
        response: Response<Body>,
    ) -> Option<Response<Body>> {
        self.on_http_response_observed(ex, response, &mut NoObserver)
            .await
    }

    /// Runs `on_http_response`, telling `observer` each step (`keygate policy test`).
    pub async fn on_http_response_observed<O: Observer>(
        &self,
        ex: &mut Exchange,
        response: Response<Body>,
        observer: &mut O,
    ) -> Option<Response<Body>> {
        for observe in std::mem::take(&mut ex.response_observers) {
            observe(response.status());
        }
        let response = self.with_event_stream_rules(ex, response);
        if self.on_http_response.is_empty() {
            return Some(response);
        }
        observer.phase(Phase::OnHttpResponse);
        ex.phase = Phase::OnHttpResponse;
        let (head, body) = response.into_parts();
        ex.response = Some(head);
        ex.response_body = Some(body);
        ex.vars = Default::default();
        let outcome = run_phase(&self.on_http_response, ex, observer).await;
        let head = ex.response.take()?;
        let body = ex.response_body.take()?;
        match outcome {
            Outcome::Continue => Some(Response::from_parts(head, body)),
            Outcome::Respond(replacement) => Some(replacement),
            Outcome::Close => None,
        }
    }

    /// Wraps an event stream's body so `on_event_stream_message` runs on each event. The
    /// rules see the request and this response's head as they are now; events are rewritten
    /// before `on_http_response` actions (compression) wrap the body further.
    fn with_event_stream_rules(&self, ex: &Exchange, response: Response<Body>) -> Response<Body> {
        if self.on_event_stream_message.is_empty() || !is_event_stream(&response) {
            return response;
        }
        let (head, body) = response.into_parts();
        let mut events = Exchange::new(
            ex.id.clone(),
            ex.conn.clone(),
            ex.scheme,
            copy_request_head(&ex.request),
            RequestBody::Buffered(Default::default()),
            0,
            ex.secrets.clone(),
        );
        events.response = Some(copy_response_head(&head));
        let body = event_stream::wrap(self.on_event_stream_message.clone(), events, body);
        Response::from_parts(head, body)
    }
}

fn is_event_stream(response: &Response<Body>) -> bool {
    response
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("text/event-stream"))
}

/// The parts CEL reads of a request head (`http::request::Parts` is not `Clone`).
pub(crate) fn copy_request_head(head: &http::request::Parts) -> http::request::Parts {
    let mut request = http::Request::new(());
    *request.method_mut() = head.method.clone();
    *request.uri_mut() = head.uri.clone();
    *request.version_mut() = head.version;
    *request.headers_mut() = head.headers.clone();
    request.into_parts().0
}

fn copy_response_head(head: &http::response::Parts) -> http::response::Parts {
    let mut response = http::Response::new(());
    *response.status_mut() = head.status;
    *response.version_mut() = head.version;
    *response.headers_mut() = head.headers.clone();
    response.into_parts().0
}

/// Runs `rules` in order until an action ends the phase.
pub(crate) async fn run_phase<O: Observer>(
    rules: &[Rule],
    ex: &mut Exchange,
    observer: &mut O,
) -> Outcome {
    for rule in rules {
        observer.rule(&rule.name);
        let matched = matches(rule, ex, observer);
        observer.matched(matched == Ok(true));
        match matched {
            Ok(true) => {}
            Ok(false) => continue,
            Err(()) => {
                return Outcome::Respond(
                    GatewayError::policy_runtime(
                        &rule.name,
                        "an expression could not be evaluated",
                    )
                    .into_response(ex.api_format),
                )
            }
        }
        ex.log.matched_rules.push(rule.name.clone());
        for compiled in &rule.actions {
            match compiled.action.run(ex).await {
                Ok(Flow::Continue) => {
                    observer.action(compiled.kind.name, ActionStep::Continued, ex);
                }
                Ok(Flow::Respond(response)) => {
                    ex.log.terminated_by = Some(compiled.kind.name);
                    observer.action(
                        compiled.kind.name,
                        ActionStep::Responded(response.status()),
                        ex,
                    );
                    return Outcome::Respond(response);
                }
                Ok(Flow::Close) => {
                    ex.log.terminated_by = Some(compiled.kind.name);
                    observer.action(compiled.kind.name, ActionStep::Closed, ex);
                    return Outcome::Close;
                }
                Err(err) => {
                    ex.log.terminated_by = Some(compiled.kind.name);
                    observer.action(compiled.kind.name, ActionStep::Failed(&err), ex);
                    return Outcome::Respond(error_response(rule, compiled.kind.name, err, ex));
                }
            }
        }
    }
    Outcome::Continue
}

/// Evaluates a rule's expressions (all must be true). An error is logged here and fails closed.
fn matches<O: Observer>(rule: &Rule, ex: &Exchange, observer: &mut O) -> Result<bool, ()> {
    if rule.expressions.is_empty() {
        return Ok(true);
    }
    let scope = ex.scope();
    for expression in &rule.expressions {
        let result = expression.eval_bool(&scope);
        observer.expression(expression.source(), result.as_ref().copied());
        match result {
            Ok(true) => {}
            Ok(false) => return Ok(false),
            Err(err) => {
                warn!(request_id = %ex.id, rule = %rule.name, expression = expression.source(), error = %err.message, "policy expression failed");
                return Err(());
            }
        }
    }
    Ok(true)
}

fn error_response(rule: &Rule, action: &str, err: ActionError, ex: &Exchange) -> Response<Body> {
    match err {
        ActionError::Eval(err) => {
            warn!(request_id = %ex.id, rule = %rule.name, action, error = %err.message, "policy action failed");
            GatewayError::policy_runtime(
                &rule.name,
                &format!("action '{action}' could not be evaluated"),
            )
            .into_response(ex.api_format)
        }
        ActionError::Gateway(err) => err.into_response(ex.api_format),
    }
}
