//! Running a compiled policy: rules top to bottom, actions left to right, until one ends the phase.

use http::Response;
use tracing::warn;

use crate::action::{ActionError, Flow, Phase};
use crate::body::Body;
use crate::error::GatewayError;
use crate::exchange::Exchange;
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

impl Policy {
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
        if let Some(check) = &self.access_keys {
            if let Err(err) = check.run(ex) {
                observer.access_key_refused(err.status());
                return Outcome::Respond(err.into_response(ex.api_format));
            }
        }
        run_phase(&self.on_http_request, ex, observer).await
    }

    /// Runs `on_http_response` over `response` (from upstream or an earlier custom-response) and
    /// returns what goes to the client, or `None` when an action closed the connection.
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
        if self.on_http_response.is_empty() {
            return Some(response);
        }
        observer.phase(Phase::OnHttpResponse);
        let (head, body) = response.into_parts();
        ex.response = Some(head);
        ex.vars = Default::default();
        let outcome = run_phase(&self.on_http_response, ex, observer).await;
        let head = ex.response.take()?;
        match outcome {
            Outcome::Continue => Some(Response::from_parts(head, body)),
            Outcome::Respond(replacement) => Some(replacement),
            Outcome::Close => None,
        }
    }
}

async fn run_phase<O: Observer>(rules: &[Rule], ex: &mut Exchange, observer: &mut O) -> Outcome {
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
