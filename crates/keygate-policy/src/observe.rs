//! Watching a phase run, rule by rule (`keygate policy test` prints it as a trace).
//!
//! The engine is generic over the observer; the request path runs with [`NoObserver`], whose
//! empty methods compile away, so serving pays nothing for this seam.

use keygate_cel::EvalError;

use crate::action::{ActionError, Phase};
use crate::exchange::Exchange;

/// How one action ended.
pub enum ActionStep<'a> {
    /// The next action (or rule) runs.
    Continued,
    /// The action answered with this status; the phase ends.
    Responded(http::StatusCode),
    /// The action dropped the connection; the phase ends.
    Closed,
    /// The action failed: an expression could not be evaluated (answered 500), or it
    /// produced a gateway error answer.
    Failed(&'a ActionError),
}

/// Receives the steps of a phase as they happen. Every method defaults to doing nothing.
pub trait Observer: Send {
    /// A phase starts (`on_http_response` only when the policy has response rules).
    fn phase(&mut self, _phase: Phase) {}
    /// The access-key check refused the request before the first rule, with `status`.
    fn access_key_refused(&mut self, _status: http::StatusCode) {}
    /// Rule `rule` is about to be evaluated.
    fn rule(&mut self, _rule: &str) {}
    /// One of the rule's expressions was evaluated (later ones are skipped after a `false`).
    fn expression(&mut self, _source: &str, _result: Result<bool, &EvalError>) {}
    /// The rule matched (all expressions true) or not.
    fn matched(&mut self, _matched: bool) {}
    /// Action `action` (its type) ran; `ex` is the exchange after it.
    fn action(&mut self, _action: &'static str, _step: ActionStep<'_>, _ex: &Exchange) {}
}

/// The observer of the request path: sees nothing, costs nothing.
pub struct NoObserver;

impl Observer for NoObserver {}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;
    use futures_util::FutureExt;
    use keygate_cel::{Compiler, MemorySecrets};

    use super::*;
    use crate::{Deps, Outcome, Policy};

    #[derive(Default)]
    struct Steps(Vec<String>);

    impl Observer for Steps {
        fn phase(&mut self, phase: Phase) {
            self.0.push(phase.key().to_owned());
        }
        fn rule(&mut self, rule: &str) {
            self.0.push(format!("rule {rule}"));
        }
        fn expression(&mut self, source: &str, result: Result<bool, &EvalError>) {
            self.0.push(format!("{source} = {:?}", result.ok()));
        }
        fn matched(&mut self, matched: bool) {
            self.0.push(format!("matched {matched}"));
        }
        fn action(&mut self, action: &'static str, step: ActionStep<'_>, _ex: &Exchange) {
            let step = match step {
                ActionStep::Continued => "continued".to_owned(),
                ActionStep::Responded(status) => status.as_u16().to_string(),
                ActionStep::Closed => "closed".to_owned(),
                ActionStep::Failed(_) => "failed".to_owned(),
            };
            self.0.push(format!("{action} {step}"));
        }
    }

    #[test]
    fn the_observer_sees_rules_expressions_and_actions_in_order() {
        let secrets = Arc::new(MemorySecrets::default());
        let deps = Deps::offline(secrets.clone());
        let text = r#"
on_http_request:
  - name: skipped
    expressions: ["req.method == 'POST'", "true"]
    actions: [{type: deny}]
  - name: vars
    actions: [{type: set-vars, config: {vars: [{a: 1}]}}]
  - name: answer
    expressions: ["vars.a == 1"]
    actions: [{type: custom-response, config: {status_code: 418}}]
"#;
        let policy = Policy::compile("t.yml", text, &Compiler::new(), &deps).expect("compiles");
        let (head, ()) = http::Request::get("/").body(()).unwrap().into_parts();
        let mut ex = Exchange::for_test(head, Bytes::new(), 1024, secrets);
        let mut steps = Steps::default();
        let outcome = policy
            .on_http_request_observed(&mut ex, &mut steps)
            .now_or_never()
            .expect("ready");
        assert!(matches!(outcome, Outcome::Respond(r) if r.status() == 418));
        assert_eq!(
            steps.0,
            [
                "on_http_request",
                "rule skipped",
                "req.method == 'POST' = Some(false)",
                "matched false",
                "rule vars",
                "matched true",
                "set-vars continued",
                "rule answer",
                "vars.a == 1 = Some(true)",
                "matched true",
                "custom-response 418",
            ]
        );
    }
}
