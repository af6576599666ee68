//! Running a compiled policy: rules top to bottom, actions left to right, until one ends the phase.

use http::Response;
use tracing::warn;

use crate::action::{ActionError, Flow};
use crate::body::Body;
use crate::error::GatewayError;
use crate::exchange::Exchange;
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
        if let Some(check) = &self.access_keys {
            if let Err(err) = check.run(ex) {
                return Outcome::Respond(err.into_response(ex.api_format));
            }
        }
        run_phase(&self.on_http_request, ex).await
    }

    /// Runs `on_http_response` over `response` (from upstream or an earlier custom-response) and
    /// returns what goes to the client, or `None` when an action closed the connection.
    pub async fn on_http_response(
        &self,
        ex: &mut Exchange,
        response: Response<Body>,
    ) -> Option<Response<Body>> {
        if self.on_http_response.is_empty() {
            return Some(response);
        }
        let (head, body) = response.into_parts();
        ex.response = Some(head);
        ex.vars = Default::default();
        let outcome = run_phase(&self.on_http_response, ex).await;
        let head = ex.response.take()?;
        match outcome {
            Outcome::Continue => Some(Response::from_parts(head, body)),
            Outcome::Respond(replacement) => Some(replacement),
            Outcome::Close => None,
        }
    }
}

async fn run_phase(rules: &[Rule], ex: &mut Exchange) -> Outcome {
    for rule in rules {
        match matches(rule, ex) {
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
                Ok(Flow::Continue) => {}
                Ok(Flow::Respond(response)) => {
                    ex.log.terminated_by = Some(compiled.kind.name);
                    return Outcome::Respond(response);
                }
                Ok(Flow::Close) => {
                    ex.log.terminated_by = Some(compiled.kind.name);
                    return Outcome::Close;
                }
                Err(err) => {
                    ex.log.terminated_by = Some(compiled.kind.name);
                    return Outcome::Respond(error_response(rule, compiled.kind.name, err, ex));
                }
            }
        }
    }
    Outcome::Continue
}

/// Evaluates a rule's expressions (all must be true). An error is logged here and fails closed.
fn matches(rule: &Rule, ex: &Exchange) -> Result<bool, ()> {
    if rule.expressions.is_empty() {
        return Ok(true);
    }
    let scope = ex.scope();
    for expression in &rule.expressions {
        match expression.eval_bool(&scope) {
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
