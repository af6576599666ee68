//! One request through the action: surface, body, model resolution, selection strategies, the
//! input-token limit, the templates rendered, then the call (`keygate_ai_gateway::Runtime`); and
//! what is recorded afterwards. [`ActionKeys`] is the call's key source: the provider keys
//! attached to the request's access key, else the `api_keys` templates of the candidate's
//! provider, else the client's own credential.

use std::sync::Arc;

use http::{HeaderValue, Response};
use keygate_ai::{
    client_credential, models_list, BodyOptions, Candidate, ClientRequest, ResolveError, Surface,
    Tokenizer,
};
use keygate_ai_gateway::{Allowance, Call, CallError, Credential, KeySource, Rendered};
use keygate_cel::{from_json, to_json, EvalError, Scope, Variable};
use secrecy::ExposeSecret;
use serde_json::{json, Value};

use super::budget::Demand;
use super::config::OnError;
use super::errors;
use super::results::{Outcome, Trace};
use super::strategy::StrategyError;
use super::{AiGateway, KIND, METRICS};
use crate::action::{ActionError, Flow};
use crate::body::{full, Body};
use crate::error::GatewayError;
use crate::exchange::{AiRecord, Exchange, Settlement};

/// Why the action stopped without a provider answer.
pub(super) enum Stop {
    /// A template failed: the engine answers 500 naming the rule.
    Eval(EvalError),
    /// A gateway error (`on_error` decides what happens).
    Gateway(GatewayError),
}

impl From<EvalError> for Stop {
    fn from(err: EvalError) -> Self {
        Stop::Eval(err)
    }
}

impl From<GatewayError> for Stop {
    fn from(err: GatewayError) -> Self {
        Stop::Gateway(err)
    }
}

impl From<CallError<EvalError>> for Stop {
    fn from(err: CallError<EvalError>) -> Self {
        match err {
            CallError::NoApiKey { providers } => errors::no_api_key(&providers).into(),
            CallError::Unreachable { attempts } => errors::unreachable(&attempts).into(),
            CallError::AllFailed { attempts } => errors::all_failed(&attempts).into(),
            CallError::TotalTimeout { seconds, attempts } => {
                errors::total_timeout(seconds, &attempts).into()
            }
            CallError::Key(err) => Stop::Eval(err),
            CallError::Untranslatable(message) => errors::untranslatable(&message).into(),
        }
    }
}

/// A response for the client.
pub(super) enum Served {
    /// A provider answered (or refused the request itself).
    Call(keygate_ai_gateway::Served),
    /// Answered by the gateway (`GET /v1/models`).
    Local(Response<Body>),
}

impl AiGateway {
    /// Publishes `actions.ngrok.ai_gateway.*` when the policy reads it: building the value is
    /// otherwise the costliest part of a request.
    fn publish(&self, ex: &mut Exchange, trace: &Trace, outcome: Outcome<'_>) {
        if self.publish_results {
            ex.results.set(
                KIND.result_name,
                from_json(&trace.to_value(&ex.request, outcome)),
            );
        }
    }

    /// Runs the action for one exchange.
    pub(super) async fn handle(&self, ex: &mut Exchange) -> Result<Flow, ActionError> {
        let mut trace = Trace::new();
        let flow = self.respond(ex, &mut trace).await;
        // The attempts go to the usage ledger and, in a traced request, become its child spans
        // (moved: nothing is copied).
        ex.log.attempts = std::mem::take(&mut trace.call.tried);
        flow
    }

    async fn respond(&self, ex: &mut Exchange, trace: &mut Trace) -> Result<Flow, ActionError> {
        match self.serve(ex, trace).await {
            Ok(Served::Call(keygate_ai_gateway::Served::Provider {
                response,
                success,
                record,
            })) => {
                let (model_index, request_index) = success;
                let outcome = Outcome::Success {
                    model_index,
                    request_index,
                };
                self.publish(ex, trace, outcome);
                ex.log.ai = Some(record);
                Ok(Flow::Respond(response))
            }
            Ok(Served::Call(keygate_ai_gateway::Served::Refused { response, record })) => {
                let outcome = Outcome::Refused {
                    provider: &record.provider,
                    status: response.status(),
                };
                self.publish(ex, trace, outcome);
                ex.log.ai = Some(record);
                Ok(Flow::Respond(response))
            }
            Ok(Served::Local(response)) => Ok(Flow::Respond(response)),
            Err(Stop::Eval(err)) => Err(ActionError::Eval(err)),
            Err(Stop::Gateway(err)) => {
                self.publish(ex, trace, Outcome::Failed(&err));
                if let Some(last) = trace.call.tried.last() {
                    ex.log.error = Some(err.message.clone());
                    ex.log.ai = Some(AiRecord {
                        provider: last.provider.clone(),
                        model: last.model.clone(),
                        attempts: trace.call.attempts(),
                        ..AiRecord::default()
                    });
                }
                if self.on_error == OnError::Continue {
                    Ok(Flow::Continue)
                } else {
                    Err(ActionError::Gateway(err))
                }
            }
        }
    }

    async fn serve(&self, ex: &mut Exchange, trace: &mut Trace) -> Result<Served, Stop> {
        let path = ex.request.uri.path().to_owned();
        let Some(surface) = Surface::from_request(&ex.request.method, &path) else {
            if is_websocket_upgrade(&ex.request.headers)
                && Surface::from_request(&http::Method::POST, &path).is_some()
            {
                return Err(errors::websocket_unsupported(&path).into());
            }
            return Err(errors::not_a_surface(&ex.request.method, &path).into());
        };
        if surface == Surface::Models {
            self.discovery.settle().await;
            return Ok(Served::Local(self.models_response(ex)));
        }
        let bytes = ex.buffer_body().await?;
        let request = ClientRequest::parse(bytes).map_err(|e| errors::invalid_body(&e))?;
        trace.set_requested(request.model.as_deref(), &request.models);
        let chosen = self
            .discovered_candidates(ex, &request, surface, trace)
            .await?;
        let candidates = within_scope(ex, chosen)
            .map_err(|key| errors::access_key_scope(key, &request.requested()))?;
        let limited_key = ex
            .access_key
            .clone()
            .filter(|key| !key.limits().is_unlimited());
        trace.input_estimate = match (self.max_input_tokens, candidates.first()) {
            // The limit counts with the vocabulary of the model tried first (BPE for OpenAI's);
            // otherwise the heuristic's count, known from the parse, is all that is needed.
            (Some(_), Some(first)) => request
                .input_estimate_for(Tokenizer::for_model(&first.model.id))
                .tokens(),
            _ => request.input_estimate,
        };
        if let Some(max) = self
            .max_input_tokens
            .filter(|max| trace.input_estimate > *max)
        {
            return Err(errors::input_too_large(trace.input_estimate, max).into());
        }
        let reservation = match &limited_key {
            Some(key) => {
                let demand = Demand {
                    key,
                    request: &request,
                    candidates: &candidates,
                    input_estimate: trace.input_estimate,
                    output_cap: self.max_output_tokens,
                };
                self.budgets.admit(demand).await?
            }
            None => None,
        };
        let mut rendered = self.render(ex)?;
        if let Some(granted) = reservation.as_ref().and_then(|r| r.output_cap()) {
            // A whole answer cannot be cut short: the provider is asked for no more than the
            // budget granted.
            let cap = &mut rendered.body.max_output_tokens;
            *cap = Some(cap.map_or(granted, |cap| cap.min(granted)));
        }
        let allowance = reservation
            .clone()
            .filter(|_| request.stream)
            .map(|r| r as Arc<dyn Allowance>);
        ex.log.budget = reservation.clone().map(|r| r as Settlement);
        let call = Call {
            request_id: &ex.id,
            client_headers: &ex.request.headers,
            client_query: ex.request.uri.query(),
            request: &request,
            surface,
            candidates: &candidates,
            rendered: &rendered,
            keys: &ActionKeys { gateway: self, ex },
            allowance,
            trace: ex.trace,
        };
        let served = self.runtime.run(call, &mut trace.call).await?;
        if let (Some(reservation), keygate_ai_gateway::Served::Provider { record, .. }) =
            (&reservation, &served)
        {
            reservation.answered_with(record.usage.clone(), record.pricing);
        }
        Ok(Served::Call(served))
    }

    /// `GET /v1/models`: every model this policy can serve. With server-side keys, providers
    /// that need a key and have none configured are left out (they could only answer 3802); with
    /// an access key, so are the models outside its scopes.
    fn models_response(&self, ex: &Exchange) -> Response<Body> {
        let usable: Vec<Candidate> = self
            .registry()
            .available(None)
            .into_iter()
            .filter(|c| {
                let p = &c.provider;
                let has_keys = p
                    .config_index
                    .and_then(|i| self.keys.get(i))
                    .is_some_and(|k| !k.is_empty());
                !self.server_keys || has_keys || !p.requires_api_key || p.is_mock()
            })
            .filter(|c| in_scope(ex, c))
            .collect();
        let body = models_list(&usable).to_string();
        let mut response = Response::new(full(body));
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        response
    }

    /// Config headers, query parameters and body overrides for this request.
    fn render(&self, ex: &Exchange) -> Result<Rendered, Stop> {
        let scope = ex.scope();
        let headers = self.headers.render(&scope)?;
        let query = self
            .query_params
            .iter()
            .map(|(name, template)| Ok((name.clone(), template.eval_string(&scope)?)))
            .collect::<Result<Vec<_>, EvalError>>()?;
        let overrides = match &self.body {
            Some(template) => match to_json(&template.eval(&scope)?) {
                Value::Object(map) => map,
                _ => {
                    return Err(Stop::Eval(EvalError {
                        message: "ai-gateway body must evaluate to a map".into(),
                    }))
                }
            },
            None => serde_json::Map::new(),
        };
        let body = BodyOptions {
            overrides,
            max_output_tokens: self.max_output_tokens,
        };
        Ok(Rendered {
            headers,
            query,
            body,
        })
    }

    /// Steps 3-6 of the pipeline: resolution, allow filters, strategies, client order.
    pub(super) fn candidates(
        &self,
        ex: &Exchange,
        request: &ClientRequest,
        surface: Surface,
        trace: &mut Trace,
    ) -> Result<Vec<Candidate>, Stop> {
        let requested = request.requested();
        let resolved = if requested.is_empty() {
            None
        } else {
            let resolution = self.registry().resolve(&requested, surface).map_err(|e| {
                let (ResolveError::NoMatchingModels { rejected }
                | ResolveError::IncompatibleFormat { rejected, .. }) = &e;
                trace.rejected = rejected.clone();
                errors::unresolved(&e)
            })?;
            trace.rejected = resolution.rejected;
            Some(resolution.candidates)
        };
        if self.strategies.is_empty() {
            return match resolved {
                Some(candidates) => Ok(candidates),
                None => {
                    let configured: Vec<Candidate> = self
                        .registry()
                        .available(Some(surface))
                        .into_iter()
                        .filter(|c| c.model.custom)
                        .collect();
                    if configured.is_empty() {
                        Err(errors::no_model_requested().into())
                    } else {
                        Ok(configured)
                    }
                }
            };
        }
        let mut universe = self.registry().available(Some(surface));
        for candidate in resolved.iter().flatten() {
            if !universe.iter().any(|u| u.same_as(candidate)) {
                universe.push(candidate.clone());
            }
        }
        let ai = ai_value(&universe, self.strategies_read_metrics);
        let extra = [("ai", Variable::new(from_json(&ai)))];
        let scope = Scope {
            extra: &extra,
            ..ex.scope()
        };
        for strategy in &self.strategies {
            let output = match strategy.eval(&scope) {
                Ok(output) => output,
                Err(StrategyError::Eval(detail)) => {
                    return Err(errors::selection_failed(strategy.source(), &detail).into())
                }
                Err(StrategyError::WrongType(detail)) => {
                    return Err(errors::selection_wrong_type(strategy.source(), &detail).into())
                }
            };
            let allowed: Vec<Candidate> =
                output.iter().filter_map(|m| find(&universe, m)).collect();
            let chosen: Vec<Candidate> = match &resolved {
                Some(client) => client
                    .iter()
                    .filter(|c| allowed.iter().any(|a| a.same_as(c)))
                    .cloned()
                    .collect(),
                None => allowed.clone(),
            };
            trace.selection.push(json!({
                "strategy": strategy.source(),
                "error": null,
                "candidates_returned": output.len(),
                "candidates_after_allowed_filter": allowed.len(),
                "candidates_after_client_filter": chosen.len(),
                "models_to_try": chosen.iter().map(Candidate::name).collect::<Vec<_>>(),
            }));
            if !chosen.is_empty() {
                return Ok(chosen);
            }
        }
        Err(errors::selection_empty().into())
    }
}

/// Whether the request's access key, if any, may use `candidate`.
fn in_scope(ex: &Exchange, candidate: &Candidate) -> bool {
    ex.access_key.as_ref().is_none_or(|key| {
        key.allows_provider(&candidate.provider.id)
            && key.allows_model(&candidate.provider.id, &candidate.model.id)
    })
}

/// Drops the candidates the request's access key may not use; `Err` with the key's id when none
/// remain. Runs after resolution and strategies, so scopes narrow what the policy chose rather
/// than steering the choice.
fn within_scope(ex: &Exchange, mut candidates: Vec<Candidate>) -> Result<Vec<Candidate>, &str> {
    candidates.retain(|c| in_scope(ex, c));
    match (&ex.access_key, candidates.is_empty()) {
        (Some(key), true) => Err(key.id()),
        _ => Ok(candidates),
    }
}

/// The strategy environment: `ai.models`, `ai.providers`, `ai.authors`.
fn ai_value(universe: &[Candidate], with_metrics: bool) -> Value {
    let metrics = |c: &Candidate| {
        if with_metrics {
            METRICS.metrics_value(&c.provider.id, &c.model.id)
        } else {
            Value::Null
        }
    };
    let models: Vec<Value> = universe.iter().map(|c| c.to_json(metrics(c))).collect();
    let mut providers: Vec<Value> = Vec::new();
    let mut authors: Vec<Value> = Vec::new();
    for candidate in universe {
        let p = &candidate.provider;
        if !providers.iter().any(|v| v["id"] == p.id.as_str()) {
            providers.push(json!({
                "id": p.id, "id_aliases": p.id_aliases, "display_name": p.display_name.clone().unwrap_or_else(|| p.id.clone()),
                "description": p.description.clone().unwrap_or_default(), "website": p.website.clone().unwrap_or_default(),
                "metadata": Value::Object(p.metadata.clone()),
            }));
        }
        if let Some(author) = &candidate.model.author_id {
            if !authors.iter().any(|v| v["id"] == author.as_str()) {
                authors.push(json!({"id": author, "id_aliases": []}));
            }
        }
    }
    json!({"models": models, "providers": providers, "authors": authors})
}

/// The universe candidate a strategy's `AIModel` value stands for.
fn find(universe: &[Candidate], model: &Value) -> Option<Candidate> {
    let provider = model.get("provider_id")?.as_str()?;
    let id = model.get("id")?.as_str()?;
    universe
        .iter()
        .find(|c| {
            c.provider.id.eq_ignore_ascii_case(provider) && c.model.id.eq_ignore_ascii_case(id)
        })
        .cloned()
}

/// The keys of a candidate for one request.
struct ActionKeys<'a> {
    gateway: &'a AiGateway,
    ex: &'a Exchange,
}

impl ActionKeys<'_> {
    /// The access key's attached keys for `candidate`'s provider, `None` when it has none. A key
    /// whose stored value fails to decrypt fails the request rather than falling back to others.
    fn attached(
        &self,
        candidate: &Candidate,
    ) -> Result<Option<Vec<Option<Credential>>>, EvalError> {
        let Some(access_key) = &self.ex.access_key else {
            return Ok(None);
        };
        let mut keys = Vec::new();
        for attached in access_key.provider_keys_for(&candidate.provider.id) {
            let value = attached.value().ok_or_else(|| EvalError {
                message: format!(
                    "the provider key {} attached to access key {} cannot be decrypted",
                    attached.id(),
                    access_key.id()
                ),
            })?;
            keys.push(Some(Credential {
                value: value.expose_secret().to_owned(),
                server: true,
            }));
        }
        Ok((!keys.is_empty()).then_some(keys))
    }
}

impl KeySource for ActionKeys<'_> {
    type Error = EvalError;

    /// The provider keys attached to the request's access key (newest first; they replace the
    /// configured ones for that provider), else the configured keys (templates rendered now,
    /// empty values skipped), else the client's own when no provider has configured keys, else
    /// `[None]` for providers that need none; `None` when a key is needed and there is none.
    fn keys(&self, candidate: &Candidate) -> Result<Option<Vec<Option<Credential>>>, EvalError> {
        if let Some(attached) = self.attached(candidate)? {
            return Ok(Some(attached));
        }
        let configured = candidate
            .provider
            .config_index
            .and_then(|i| self.gateway.keys.get(i))
            .filter(|k| !k.is_empty());
        if let Some(templates) = configured {
            let scope = self.ex.scope();
            let mut keys = Vec::with_capacity(templates.len());
            for template in templates {
                let value = template.eval_string(&scope)?;
                if !value.is_empty() {
                    keys.push(Some(Credential {
                        value,
                        server: true,
                    }));
                }
            }
            return Ok((!keys.is_empty()).then_some(keys));
        }
        if !self.gateway.server_keys {
            if let Some(value) = client_credential(&self.ex.request.headers) {
                return Ok(Some(vec![Some(Credential {
                    value,
                    server: false,
                })]));
            }
        }
        let needs_key = candidate.provider.requires_api_key && !candidate.provider.is_mock();
        Ok((!needs_key).then(|| vec![None]))
    }
}

/// Whether the request asks to become a WebSocket (`Upgrade: websocket`).
fn is_websocket_upgrade(headers: &http::HeaderMap) -> bool {
    headers
        .get_all(http::header::UPGRADE)
        .iter()
        .any(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"))
}
