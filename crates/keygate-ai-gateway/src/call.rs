//! One call: the candidates in order, the keys of each in order, until an attempt succeeds, the
//! candidates run out or the total budget does. The same (model, key) pair is never retried.
//!
//! | attempt outcome | next |
//! |---|---|
//! | transport failure, per-attempt timeout | next key |
//! | 401, 403, 408, 409, 429, 5xx | next key |
//! | 404 | next model (its other keys skipped) |
//! | any other 4xx | the provider's answer goes back to the client ([`Served::Refused`]) |
//! | 2xx/3xx with its first body chunk read | success ([`Served::Provider`]) |
//!
//! An attempt succeeds only once its first body chunk has arrived (or its body ended empty),
//! and nothing reaches the client before that: failover always happens before the first byte.
//!
//! With [`Runtime::health`], candidates whose provider recently gave no answer are tried after
//! the others (`crate::health`); the trace lists the attempts in the order they were made.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, CONTENT_LENGTH, CONTENT_TYPE, SET_COOKIE};
use http::{HeaderMap, Response};
use http_body_util::BodyExt;
use keygate_ai::translate::{self, StreamTranslator};
use keygate_ai::{
    prepare_body, redact, upstream_url, BodyOptions, Candidate, ClientRequest, MetricsStore,
    Outcome, PreparedBody, Redaction, Sample, StreamRedactor, Surface, Tokenizer,
};
use keygate_http::{full, strip_hop_by_hop, Body, BoxError};

use crate::allowance::Allowance;
use crate::health::{CallHealth, Health};
use crate::keys::{Credential, KeySource};
use crate::metered::{MeteredBody, Scan, UsageFill};
use crate::rewritten::{Rewrite, RewrittenStream};
use crate::trace::{
    error_body_excerpt, response_headers, AttemptEnd, ModelTried, RequestMade, Trace,
};
use crate::trace_context::{SpanId, TraceContext};
use crate::upstream::{Upstream, UpstreamBody, UpstreamRequest, Upstreams};
use crate::usage::{AiRecord, Usage};

/// Largest provider error body read (and passed back when the error goes to the client).
const MAX_ERROR_READ: usize = 64 * 1024;

/// Provider response headers that describe the provider's site, not the gateway's: never
/// passed to the client (besides the hop-by-hop ones).
const PROVIDER_ONLY: [HeaderName; 2] = [SET_COOKIE, HeaderName::from_static("alt-svc")];

const X_KEYGATE_PROVIDER: HeaderName = HeaderName::from_static("x-keygate-provider");
const X_KEYGATE_MODEL: HeaderName = HeaderName::from_static("x-keygate-model");
/// Client fields a translation dropped, comma-separated.
const X_KEYGATE_REMOVED_PARAMS: HeaderName = HeaderName::from_static("x-keygate-removed-params");

/// Largest provider answer translated or redacted whole (a larger one fails the attempt).
const MAX_REWRITTEN_READ: usize = 16 << 20;

/// The caller's per-request additions to every attempt (rendered once per request).
#[derive(Debug, Default)]
pub struct Rendered {
    /// Set on the upstream request, replacing the client's.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Appended to the upstream URL's query.
    pub query: Vec<(String, String)>,
    /// Body overrides and the output-token cap, applied per candidate.
    pub body: BodyOptions,
}

/// One LLM call: the client's request and the candidates chosen for it.
pub struct Call<'a, K> {
    /// Sent upstream as `x-request-id`.
    pub request_id: &'a str,
    pub client_headers: &'a HeaderMap,
    pub client_query: Option<&'a str>,
    pub request: &'a ClientRequest,
    pub surface: Surface,
    /// In the order they are tried.
    pub candidates: &'a [Candidate],
    pub rendered: &'a Rendered,
    pub keys: &'a K,
    /// The output budget of a streamed answer, when the request has one.
    pub allowance: Option<Arc<dyn Allowance>>,
    /// The request's trace when it is exported: each attempt gets a span id, sent upstream in
    /// `traceparent` (replacing the client's) and recorded in [`RequestMade::span_id`].
    pub trace: Option<TraceContext>,
}

/// What runs calls: built once per action when the policy loads.
pub struct Runtime {
    pub upstreams: Upstreams,
    /// Bounds each attempt up to its response head and first body chunk.
    pub per_request_timeout: Duration,
    /// Bounds the whole loop from [`Trace::started`]; a stream that started is not cut.
    pub total_timeout: Duration,
    /// Longest silence between two chunks of a response body once it streams.
    pub stream_idle_timeout: Duration,
    /// Some provider has gateway-owned keys: the client's account headers never go upstream.
    pub server_keys: bool,
    /// Keep provider response headers in the trace (only worth it when someone reads them).
    pub keep_response_headers: bool,
    /// Where attempt samples go; `None` when nothing reads them.
    pub metrics: Option<&'static MetricsStore>,
    /// Slow-provider demotion: providers that stopped answering are tried after the healthy
    /// ones (`None`: the candidates' order is kept).
    pub health: Option<Health>,
    /// Rewrites the text of answers (`redact`): a stream's text deltas as they pass, a whole
    /// answer before any of it is sent.
    pub redaction: Option<Arc<Redaction>>,
}

/// A response for the client.
pub enum Served {
    /// A provider answered 2xx/3xx; `success` is (model, request) index in the trace. The body is
    /// metered: `record.usage` fills in as it passes.
    Provider {
        response: Response<Body>,
        success: (usize, usize),
        record: AiRecord,
    },
    /// A provider refused the request itself (400, 413, 422, ...): its answer, passed back.
    Refused {
        response: Response<Body>,
        record: AiRecord,
    },
}

/// Why a call produced no provider answer. Message texts are the caller's.
#[derive(Debug, Clone, PartialEq)]
pub enum CallError<E> {
    /// No candidate had a key; the providers in order (repeats in a row once).
    NoApiKey { providers: Vec<String> },
    /// Every attempt failed in transport.
    Unreachable { attempts: String },
    /// Every candidate failed otherwise.
    AllFailed { attempts: String },
    /// `total_timeout` ran out.
    TotalTimeout { seconds: f64, attempts: String },
    /// The key source failed.
    Key(E),
    /// The client's body could not be read for translation into a candidate's format.
    Untranslatable(String),
}

/// What to do after an attempt.
enum Verdict {
    Success {
        response: Response<Body>,
        first: Option<Bytes>,
        /// A translated whole answer carries estimated usage (the provider reported none).
        estimated: bool,
    },
    NextKey,
    NextModel,
    /// The provider refused the request itself: this response goes to the client.
    Refuse(Response<Body>),
}

/// One finished attempt.
struct Attempt {
    verdict: Verdict,
    made: RequestMade,
}

impl Runtime {
    /// Runs the attempts of `call`, recording them in `trace`.
    pub async fn run<K: KeySource>(
        &self,
        call: Call<'_, K>,
        trace: &mut Trace,
    ) -> Result<Served, CallError<K::Error>> {
        let deadline = trace.started + self.total_timeout;
        let mut first_attempt: Option<Instant> = None;
        let mut health = self.health.map(|h| CallHealth::begin(h, call.candidates));
        for position in 0..call.candidates.len() {
            let index = health.as_ref().map_or(position, |h| h.index(position));
            let candidate = &call.candidates[index];
            let keys = call.keys.keys(candidate).map_err(CallError::Key)?;
            trace.tried.push(ModelTried {
                provider: candidate.provider.id.clone(),
                model: candidate.model.id.clone(),
                author: candidate.model.author_id.clone().unwrap_or_default(),
                requests: Vec::new(),
            });
            let model_index = trace.tried.len() - 1;
            let Some(keys) = keys else {
                let surface = candidate.upstream_surface(call.surface);
                trace.tried[model_index]
                    .requests
                    .push(no_key_request(candidate, surface.unwrap_or(call.surface)));
                continue;
            };
            let prepared = prepare_body(call.request, call.surface, candidate, &call.rendered.body)
                .map_err(|e| CallError::Untranslatable(e.to_string()))?;
            let upstream = self.upstreams.upstream_for(candidate);
            for key in &keys {
                let now = Instant::now();
                if now >= deadline {
                    return Err(self.total_timeout_error(trace));
                }
                let budget = self.per_request_timeout.min(deadline - now);
                let started = *first_attempt.get_or_insert(now);
                let attempt = self
                    .attempt(upstream, &call, candidate, &prepared, key.as_ref(), budget)
                    .await;
                trace.upstream_wait += now.elapsed();
                if let Some(metrics) = self.metrics {
                    record_metrics(metrics, candidate, &attempt.made, now.elapsed());
                }
                if let Some(health) = &mut health {
                    let full_budget = budget == self.per_request_timeout;
                    health.record(candidate, &attempt.made.end, full_budget);
                }
                let timed_out_total =
                    attempt.made.end == AttemptEnd::Timeout && Instant::now() >= deadline;
                let time_to_first_byte = attempt.made.time_to_first_byte;
                trace.tried[model_index].requests.push(attempt.made);
                let request_index = trace.tried[model_index].requests.len() - 1;
                let record = |usage: Arc<Usage>| AiRecord {
                    provider: candidate.provider.id.clone(),
                    model: candidate.model.id.clone(),
                    pricing: candidate.model.pricing,
                    attempts: trace.attempts(),
                    time_to_first_token: time_to_first_byte
                        .map(|ttfb| (now + ttfb).duration_since(started)),
                    usage,
                };
                match attempt.verdict {
                    Verdict::Success {
                        response,
                        first,
                        estimated,
                    } => {
                        let usage = Arc::new(Usage::default());
                        usage.estimated.store(estimated, Ordering::Relaxed);
                        let record = record(usage.clone());
                        let response = self
                            .client_response(response, first, &call, &prepared, candidate, usage);
                        return Ok(Served::Provider {
                            response,
                            success: (model_index, request_index),
                            record,
                        });
                    }
                    Verdict::Refuse(response) => {
                        let record = record(Arc::new(Usage::default()));
                        return Ok(Served::Refused { response, record });
                    }
                    Verdict::NextKey if timed_out_total => {
                        return Err(self.total_timeout_error(trace));
                    }
                    Verdict::NextKey => {}
                    Verdict::NextModel => break,
                }
            }
        }
        Err(exhausted(trace))
    }

    /// The redaction answers on `surface` get, if any (surfaces without generated text get none).
    fn redaction_for(&self, surface: Surface) -> Option<&Arc<Redaction>> {
        (self.redaction.as_ref()).filter(|_| StreamRedactor::covers(surface))
    }

    fn total_timeout_error<E>(&self, trace: &Trace) -> CallError<E> {
        CallError::TotalTimeout {
            seconds: self.total_timeout.as_secs_f64(),
            attempts: trace.attempt_list(),
        }
    }

    /// One attempt through `upstream`, bounded by `budget` up to its first body chunk.
    async fn attempt<K>(
        &self,
        upstream: &dyn Upstream,
        call: &Call<'_, K>,
        candidate: &Candidate,
        prepared: &PreparedBody<'_>,
        key: Option<&Credential>,
        budget: Duration,
    ) -> Attempt {
        let span_id = call.trace.map(|_| SpanId::random());
        let traceparent = call.trace.zip(span_id).map(|(t, span)| t.traceparent(span));
        let sent = upstream.send(UpstreamRequest {
            request_id: call.request_id,
            client_headers: call.client_headers,
            client_query: call.client_query,
            rendered: call.rendered,
            candidate,
            surface: prepared.surface,
            client_format: call.surface.format(),
            body: prepared,
            credential: key,
            server_credentials: self.server_keys || key.is_some_and(|k| k.server),
            traceparent,
        });
        let start = Instant::now();
        let mut made = RequestMade {
            end: AttemptEnd::Success,
            status_code: 0,
            url: sent.url,
            api_key: key
                .filter(|_| sent.credential_sent)
                .map(|k| redact(&k.value)),
            response_headers: Default::default(),
            body_on_error: None,
            time_to_first_byte: None,
            total: Duration::ZERO,
            started: start,
            span_id,
        };
        let translated = prepared.is_translated(call.surface);
        let redaction = self.redaction_for(call.surface).map(Arc::as_ref);
        let exchange = async {
            let response = sent
                .response
                .await
                .map_err(|e| AttemptEnd::Transport(e.0))?;
            let (parts, mut body) = response.into_parts();
            if parts.status.as_u16() < 400 {
                let first = first_chunk(&mut body)
                    .await
                    .map_err(|e| AttemptEnd::Transport(format!("response body failed: {e}")))?;
                let json = content_type(&parts.headers).starts_with("application/json");
                if json && (translated || redaction.is_some()) {
                    let whole = read_whole(first, body).await;
                    let (answer, estimated) = whole
                        .and_then(|whole| rewrite_whole(whole, prepared.surface, call, redaction))
                        .map_err(AttemptEnd::Transport)?;
                    let first = Some(Bytes::from(answer));
                    return Ok((
                        parts,
                        UpstreamBody::Boxed(Body::default()),
                        first,
                        None,
                        estimated,
                    ));
                }
                Ok((parts, body, first, None, false))
            } else {
                let error_body = read_capped(&mut body, MAX_ERROR_READ).await;
                Ok((parts, body, None, Some(error_body), false))
            }
        };
        let outcome = tokio::time::timeout(budget, exchange).await;
        made.total = start.elapsed();
        let (parts, body, first, error_body, estimated) = match outcome {
            Err(_) => return next_key(made, AttemptEnd::Timeout),
            Ok(Err(end)) => return next_key(made, end),
            Ok(Ok(result)) => result,
        };
        made.status_code = parts.status.as_u16();
        if self.keep_response_headers {
            made.response_headers = response_headers(&parts.headers);
        }
        let Some(error_body) = error_body else {
            made.time_to_first_byte = Some(made.total);
            return Attempt {
                verdict: Verdict::Success {
                    response: Response::from_parts(parts, body.into_body()),
                    first,
                    estimated,
                },
                made,
            };
        };
        made.end = AttemptEnd::Status(made.status_code);
        made.body_on_error = Some(error_body_excerpt(
            &error_body,
            key.map(|k| k.value.as_str()),
        ));
        let verdict = match made.status_code {
            404 => Verdict::NextModel,
            401 | 403 | 408 | 409 | 429 | 500.. => Verdict::NextKey,
            _ => {
                let error_body = if translated {
                    translate::error(call.surface, &error_body).into()
                } else {
                    error_body
                };
                let mut response = Response::from_parts(parts, full(error_body));
                strip_provider_headers(&mut response);
                let headers = response.headers_mut();
                headers.remove(CONTENT_LENGTH);
                if translated {
                    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                }
                Verdict::Refuse(response)
            }
        };
        Attempt { verdict, made }
    }

    /// The response the client gets: provider head (hop-by-hop and provider-only headers removed)
    /// and a metered body.
    fn client_response<K>(
        &self,
        response: Response<Body>,
        first: Option<Bytes>,
        call: &Call<'_, K>,
        prepared: &PreparedBody<'_>,
        candidate: &Candidate,
        usage: Arc<Usage>,
    ) -> Response<Body> {
        let surface = call.surface;
        let (mut parts, mut body) = response.into_parts();
        let mut first = first;
        let content_type = content_type(&parts.headers);
        let scan = Scan::for_content_type(content_type, surface, prepared.added_include_usage);
        let redaction = self.redaction_for(surface);
        if prepared.is_translated(surface) || redaction.is_some() {
            parts.headers.remove(CONTENT_LENGTH);
        }
        if prepared.is_translated(surface) {
            let translator = matches!(scan, Scan::Sse(_))
                .then(|| {
                    let request = call.request;
                    StreamTranslator::new(
                        prepared.surface,
                        surface,
                        request.include_usage,
                        request.input_estimate,
                    )
                })
                .flatten();
            if let Some(translator) = translator {
                (first, body) = rewritten(first, body, translator, &usage);
            }
        }
        let redactor = redaction
            .filter(|_| matches!(scan, Scan::Sse(_)))
            .and_then(|redaction| StreamRedactor::new(redaction.clone(), surface));
        if let Some(redactor) = redactor {
            (first, body) = rewritten(first, body, redactor, &usage);
        }
        if matches!(scan, Scan::Sse(_)) && prepared.added_include_usage {
            parts.headers.remove(CONTENT_LENGTH);
        }
        parts.version = http::Version::default();
        let tokenizer = Tokenizer::for_model(&candidate.model.id);
        let mut metered = MeteredBody::new(first, body, scan, usage, self.stream_idle_timeout)
            .counting_with(tokenizer)
            .with_input_estimate(call.request.input_estimate_for(tokenizer))
            .answered_by(candidate.clone());
        // A provider known to report a stream's usage needs no estimate of it (a budget adds
        // one: `with_allowance`).
        if !candidate.provider.stream_usage.reported() {
            metered = metered.estimating_output(surface);
        }
        if let Some(allowance) = &call.allowance {
            metered = metered.with_allowance(allowance.clone(), surface);
        }
        if let Some(metrics) = self.metrics {
            metered = metered.with_token_metrics(metrics);
        }
        let object = match surface {
            Surface::ChatCompletions => Some("chat.completion.chunk"),
            Surface::Completions => Some("text_completion"),
            _ => None,
        };
        if let Some(object) = object.filter(|_| call.request.include_usage) {
            metered = metered.with_usage_fill(UsageFill {
                object,
                model: candidate.model.id.clone(),
            });
        }
        let mut response = Response::from_parts(parts, metered.boxed());
        strip_provider_headers(&mut response);
        let headers = response.headers_mut();
        if !prepared.removed.is_empty() {
            if let Ok(value) = HeaderValue::from_str(&prepared.removed.names().join(", ")) {
                headers.insert(X_KEYGATE_REMOVED_PARAMS, value);
            }
        }
        for (name, value) in [
            (X_KEYGATE_PROVIDER, &candidate.provider.id),
            (X_KEYGATE_MODEL, &candidate.model.id),
        ] {
            if let Ok(value) = HeaderValue::from_str(value) {
                headers.insert(name, value);
            }
        }
        response
    }
}

/// A failed attempt: the next key is tried.
fn next_key(mut made: RequestMade, end: AttemptEnd) -> Attempt {
    made.end = end;
    Attempt {
        verdict: Verdict::NextKey,
        made,
    }
}

/// The trace entry for a candidate that had no key to try.
fn no_key_request(candidate: &Candidate, surface: Surface) -> RequestMade {
    RequestMade {
        end: AttemptEnd::NoKey,
        status_code: 0,
        url: upstream_url(&candidate.provider.base_url, surface, None, &[]),
        api_key: None,
        response_headers: Default::default(),
        body_on_error: None,
        time_to_first_byte: None,
        total: Duration::ZERO,
        started: Instant::now(),
        span_id: None,
    }
}

/// The error when every candidate failed: no key anywhere, every attempt unreachable, or else
/// all failed.
fn exhausted<E>(trace: &Trace) -> CallError<E> {
    let ends = || trace.tried.iter().flat_map(|m| &m.requests).map(|r| &r.end);
    let any = ends().next().is_some();
    if any && ends().all(|end| *end == AttemptEnd::NoKey) {
        let mut providers: Vec<String> = trace.tried.iter().map(|m| m.provider.clone()).collect();
        providers.dedup();
        return CallError::NoApiKey { providers };
    }
    let attempts = trace.attempt_list();
    if any && ends().all(|end| matches!(end, AttemptEnd::Transport(_))) {
        return CallError::Unreachable { attempts };
    }
    CallError::AllFailed { attempts }
}

fn record_metrics(
    metrics: &MetricsStore,
    candidate: &Candidate,
    made: &RequestMade,
    elapsed: Duration,
) {
    let outcome = match &made.end {
        AttemptEnd::Success => Outcome::Success,
        AttemptEnd::Status(code) => Outcome::from_status(*code),
        AttemptEnd::Timeout => Outcome::Timeout,
        AttemptEnd::Transport(_) | AttemptEnd::NoKey => Outcome::Transport,
    };
    let sample = Sample {
        outcome,
        upstream: made.total,
        gateway: elapsed.saturating_sub(made.total),
        time_to_first_token: made.time_to_first_byte,
        input_tokens: 0,
        output_tokens: 0,
        estimated: false,
    };
    metrics.record(&candidate.provider.id, &candidate.model.id, sample);
}

/// Reads until the first non-empty data frame (`None` for an empty body).
async fn first_chunk(body: &mut UpstreamBody) -> Result<Option<Bytes>, BoxError> {
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            if !data.is_empty() {
                return Ok(Some(data));
            }
        }
    }
    Ok(None)
}

/// The content type of a response head (empty when absent or not text).
fn content_type(headers: &HeaderMap) -> &str {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

/// `body` after its `first` chunk, run through `rewrite` (the first chunk at once).
fn rewritten<R: Rewrite>(
    first: Option<Bytes>,
    body: Body,
    mut rewrite: R,
    usage: &Arc<Usage>,
) -> (Option<Bytes>, Body) {
    let first = first
        .map(|chunk| rewrite.push(&chunk))
        .filter(|chunk| !chunk.is_empty());
    (
        first,
        RewrittenStream::new(body, rewrite, usage.clone()).boxed(),
    )
}

/// Reads the rest of a whole JSON answer after its `first` chunk. Runs inside the attempt's
/// time budget, so an answer that cannot be read fails over like any broken attempt.
async fn read_whole(first: Option<Bytes>, mut body: UpstreamBody) -> Result<Vec<u8>, String> {
    let mut whole = first.map(Vec::from).unwrap_or_default();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| format!("response body failed: {e}"))?;
        if let Ok(data) = frame.into_data() {
            if whole.len() + data.len() > MAX_REWRITTEN_READ {
                return Err(format!(
                    "the answer is over {} MiB, too large to rewrite",
                    MAX_REWRITTEN_READ >> 20
                ));
            }
            whole.extend_from_slice(&data);
        }
    }
    Ok(whole)
}

/// A whole answer for the client: translated from the provider's surface `from` to the
/// client's (when they differ), then its text redacted. Also whether the translation made the
/// usage up.
fn rewrite_whole<K>(
    whole: Vec<u8>,
    from: Surface,
    call: &Call<'_, K>,
    redaction: Option<&Redaction>,
) -> Result<(Vec<u8>, bool), String> {
    let to = call.surface;
    let (mut answer, estimated) = if from == to {
        (whole, false)
    } else {
        let translated = translate::response(from, to, &whole, call.request.input_estimate)
            .map_err(|e| format!("the {from} answer could not be translated to {to}: {e}"))?;
        (translated.body, translated.estimated)
    };
    if let Some(redacted) = redaction.and_then(|r| r.answer(to, &answer)) {
        answer = redacted;
    }
    Ok((answer, estimated))
}

/// Reads at most `cap` bytes of a body (errors end the read).
async fn read_capped(body: &mut UpstreamBody, cap: usize) -> Bytes {
    let mut out = Vec::new();
    while out.len() < cap {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    out.extend_from_slice(&data[..data.len().min(cap - out.len())]);
                }
            }
            Some(Err(_)) | None => break,
        }
    }
    Bytes::from(out)
}

/// Removes the headers a provider response must not pass to the client: hop-by-hop ones and
/// the provider-only ones (`set-cookie`, `alt-svc`).
pub fn strip_provider_headers<B>(response: &mut Response<B>) {
    let headers = response.headers_mut();
    strip_hop_by_hop(headers);
    // One pass over the few headers a provider sends instead of a hashed lookup per name.
    if headers.keys().any(|name| PROVIDER_ONLY.contains(name)) {
        for name in &PROVIDER_ONLY {
            headers.remove(name);
        }
    }
}
