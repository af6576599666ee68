//! Trying candidates in order (reference 4.12): keys of a provider in listed order, then the
//! next model; the same (model, key) pair is never retried. Next key on connect errors,
//! timeouts, 401, 403, 408, 409, 429 and 5xx; next model on 404; any other 4xx goes back to the
//! client at once. An attempt succeeds only once its first body byte has arrived, so failover
//! always happens before anything reaches the client.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, CONTENT_LENGTH, CONTENT_TYPE, SET_COOKIE};
use http::{Method, Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use keygate_ai::{
    client_credential, mock_respond, prepare_body, redact, set_credential, upstream_headers,
    upstream_url, BodyOptions, Candidate, ClientRequest, Outcome, PreparedBody, Sample, Surface,
};

use super::errors;
use super::pipeline::{Served, Stop};
use super::results::{
    error_body_excerpt, response_headers, AttemptEnd, ModelTried, RequestMade, Trace,
};
use super::stream::{MeteredBody, Scan};
use super::{AiGateway, METRICS};
use crate::body::{full, Body, BoxError};
use crate::exchange::{AiRecord, Exchange, Usage};
use keygate_http::{strip_hop_by_hop, ResponseBody};

/// Largest provider error body read (and passed back when the error goes to the client).
const MAX_ERROR_READ: usize = 64 * 1024;

/// Provider response headers that describe the provider's site, not the gateway's: never
/// passed to the client (besides the hop-by-hop ones).
const PROVIDER_ONLY: [HeaderName; 2] = [SET_COOKIE, HeaderName::from_static("alt-svc")];

const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const X_KEYGATE_PROVIDER: HeaderName = HeaderName::from_static("x-keygate-provider");
const X_KEYGATE_MODEL: HeaderName = HeaderName::from_static("x-keygate-model");

/// Per-request renderings of the action's templates.
pub(super) struct Rendered {
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub query: Vec<(String, String)>,
    pub body: BodyOptions,
}

/// A credential for one attempt.
struct Credential {
    value: String,
    /// Configured in the policy (as opposed to the client's own key passed through).
    server: bool,
}

/// What to do after an attempt.
enum Verdict {
    Success {
        response: Response<Body>,
        first: Option<Bytes>,
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

impl AiGateway {
    /// Runs the attempts until one succeeds, the candidates run out or the total budget does.
    pub(super) async fn failover(
        &self,
        ex: &Exchange,
        request: &ClientRequest,
        surface: Surface,
        candidates: &[Candidate],
        rendered: &Rendered,
        trace: &mut Trace,
    ) -> Result<Served, Stop> {
        let deadline = trace.started + self.total_timeout;
        let mut first_attempt: Option<Instant> = None;
        for candidate in candidates {
            let keys = self.keys_for(candidate, ex)?;
            trace.tried.push(ModelTried {
                provider: candidate.provider.id.clone(),
                model: candidate.model.id.clone(),
                author: candidate.model.author_id.clone().unwrap_or_default(),
                requests: Vec::new(),
            });
            let model_index = trace.tried.len() - 1;
            let Some(keys) = keys else {
                trace.tried[model_index]
                    .requests
                    .push(no_key_request(candidate, surface));
                continue;
            };
            let prepared = prepare_body(request, surface, candidate, &rendered.body);
            for key in &keys {
                let now = Instant::now();
                if now >= deadline {
                    return Err(errors::total_timeout(
                        self.total_timeout.as_secs_f64(),
                        &trace.attempt_list(),
                    )
                    .into());
                }
                let budget = self.per_request_timeout.min(deadline - now);
                let started = *first_attempt.get_or_insert(now);
                let attempt = if candidate.provider.is_mock() {
                    mock_attempt(surface, &prepared)
                } else {
                    self.http_attempt(
                        ex,
                        candidate,
                        surface,
                        &prepared,
                        key.as_ref(),
                        rendered,
                        budget,
                    )
                    .await
                };
                trace.upstream_wait += now.elapsed();
                // Samples feed `m.metrics`; only a strategy that reads them pays for them.
                if self.strategies_read_metrics {
                    record_metrics(candidate, &attempt.made, now.elapsed());
                }
                let timed_out_total =
                    attempt.made.end == AttemptEnd::Timeout && Instant::now() >= deadline;
                let time_to_first_byte = attempt.made.time_to_first_byte;
                trace.tried[model_index].requests.push(attempt.made);
                let request_index = trace.tried[model_index].requests.len() - 1;
                let record = |usage: Arc<Usage>| AiRecord {
                    provider: candidate.provider.id.clone(),
                    model: candidate.model.id.clone(),
                    attempts: trace.attempts(),
                    time_to_first_token: time_to_first_byte
                        .map(|ttfb| (now + ttfb).duration_since(started)),
                    usage,
                };
                match attempt.verdict {
                    Verdict::Success { response, first } => {
                        let usage = Arc::new(Usage::default());
                        let record = record(usage.clone());
                        let response = self
                            .client_response(response, first, surface, &prepared, candidate, usage);
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
                        return Err(errors::total_timeout(
                            self.total_timeout.as_secs_f64(),
                            &trace.attempt_list(),
                        )
                        .into());
                    }
                    Verdict::NextKey => {}
                    Verdict::NextModel => break,
                }
            }
        }
        Err(exhausted(trace).into())
    }

    /// The keys to try for `candidate`: configured keys, else the client's own, else `[None]`
    /// for providers that need none; `None` when a key is needed and there is none.
    fn keys_for(
        &self,
        candidate: &Candidate,
        ex: &Exchange,
    ) -> Result<Option<Vec<Option<Credential>>>, Stop> {
        let configured = candidate
            .provider
            .config_index
            .and_then(|i| self.keys.get(i))
            .filter(|k| !k.is_empty());
        if let Some(templates) = configured {
            let scope = ex.scope();
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
        if !self.server_keys {
            if let Some(value) = client_credential(&ex.request.headers) {
                return Ok(Some(vec![Some(Credential {
                    value,
                    server: false,
                })]));
            }
        }
        let needs_key = candidate.provider.requires_api_key && !candidate.provider.is_mock();
        Ok((!needs_key).then(|| vec![None]))
    }

    #[allow(clippy::too_many_arguments)]
    async fn http_attempt(
        &self,
        ex: &Exchange,
        candidate: &Candidate,
        surface: Surface,
        prepared: &PreparedBody<'_>,
        key: Option<&Credential>,
        rendered: &Rendered,
        budget: Duration,
    ) -> Attempt {
        let target =
            candidate
                .provider
                .upstream_target(surface, ex.request.uri.query(), &rendered.query);
        let shown_key = key.map(|k| redact(&k.value));
        let mut made = RequestMade {
            end: AttemptEnd::Success,
            status_code: 0,
            url: target.shown_url,
            api_key: shown_key,
            response_headers: Default::default(),
            body_on_error: None,
            time_to_first_byte: None,
            total: Duration::ZERO,
        };
        let fail = |mut made: RequestMade, end: AttemptEnd| {
            made.end = end;
            Attempt {
                verdict: Verdict::NextKey,
                made,
            }
        };
        let server = self.server_keys || key.is_some_and(|k| k.server);
        let mut headers = upstream_headers(&ex.request.headers, surface.format(), server);
        strip_hop_by_hop(&mut headers);
        if let Some(key) = key {
            if set_credential(&mut headers, surface.format(), &key.value).is_err() {
                return fail(
                    made,
                    AttemptEnd::Transport("the API key is not a valid header value".into()),
                );
            }
        }
        for (name, value) in &rendered.headers {
            headers.insert(name.clone(), value.clone());
        }
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        // Usually already there, once, copied from the request head the server stamped.
        let mut ids = headers.get_all(X_REQUEST_ID).iter();
        let stamped = matches!((ids.next(), ids.next()), (Some(id), None) if id.as_bytes() == ex.id.as_bytes());
        if !stamped {
            if let Ok(id) = HeaderValue::from_str(&ex.id) {
                headers.insert(X_REQUEST_ID, id);
            }
        }
        let Some(uri) = target.uri else {
            return fail(
                made,
                AttemptEnd::Transport(format!(
                    "invalid upstream URL for provider '{}'",
                    candidate.provider.id
                )),
            );
        };
        let mut upstream = Request::new(full(prepared.to_bytes()));
        *upstream.method_mut() = Method::POST;
        *upstream.uri_mut() = uri;
        *upstream.headers_mut() = headers;
        let start = Instant::now();
        let exchange = async {
            let http = candidate
                .provider
                .config_index
                .and_then(|i| self.provider_http.get(i)?.as_ref())
                .unwrap_or(&self.http);
            let response = http
                .send(upstream)
                .await
                .map_err(|e| AttemptEnd::Transport(e.with_causes()))?;
            let (parts, mut body) = response.into_parts();
            let status = parts.status.as_u16();
            if status < 400 {
                let first = first_chunk(&mut body)
                    .await
                    .map_err(|e| AttemptEnd::Transport(format!("response body failed: {e}")))?;
                Ok((parts, body, first, None))
            } else {
                let error_body = read_capped(&mut body, MAX_ERROR_READ).await;
                Ok((parts, body, None, Some(error_body)))
            }
        };
        let outcome = tokio::time::timeout(budget, exchange).await;
        made.total = start.elapsed();
        let (parts, body, first, error_body) = match outcome {
            Err(_) => return fail(made, AttemptEnd::Timeout),
            Ok(Err(end)) => return fail(made, end),
            Ok(Ok(result)) => result,
        };
        made.status_code = parts.status.as_u16();
        if self.publish_results {
            // Only the published results show provider headers.
            made.response_headers = response_headers(&parts.headers);
        }
        let Some(error_body) = error_body else {
            made.time_to_first_byte = Some(made.total);
            let body = body.boxed();
            return Attempt {
                verdict: Verdict::Success {
                    response: Response::from_parts(parts, body),
                    first,
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
                let mut response = Response::from_parts(parts, full(error_body));
                strip_provider_headers(&mut response);
                response.headers_mut().remove(CONTENT_LENGTH);
                Verdict::Refuse(response)
            }
        };
        Attempt { verdict, made }
    }

    /// The response the client gets: provider head (hop-by-hop and provider-only headers removed)
    /// and a metered body.
    fn client_response(
        &self,
        response: Response<Body>,
        first: Option<Bytes>,
        surface: Surface,
        prepared: &PreparedBody<'_>,
        candidate: &Candidate,
        usage: Arc<Usage>,
    ) -> Response<Body> {
        let (mut parts, body) = response.into_parts();
        let content_type = parts
            .headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let scan = Scan::for_content_type(content_type, surface, prepared.added_include_usage);
        if matches!(scan, Scan::Sse(_)) && prepared.added_include_usage {
            parts.headers.remove(CONTENT_LENGTH);
        }
        parts.version = http::Version::default();
        let metered = MeteredBody::new(first, body, scan, usage, self.stream_idle_timeout);
        let mut response = Response::from_parts(parts, metered.boxed());
        strip_provider_headers(&mut response);
        let headers = response.headers_mut();
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

/// The in-process `mock` provider's answer, as an attempt.
fn mock_attempt(surface: Surface, prepared: &PreparedBody<'_>) -> Attempt {
    let created = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let answer = mock_respond(surface, prepared.json(), created);
    let mut chunks = answer.chunks.into_iter();
    let first = chunks.next();
    let frames = chunks.map(data_frame);
    let body = StreamBody::new(futures_util::stream::iter(frames)).boxed();
    let mut response = Response::new(body);
    *response.status_mut() = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::OK);
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(answer.content_type));
    let made = RequestMade {
        end: AttemptEnd::Success,
        status_code: answer.status,
        url: format!("mock://local{}", surface.client_path()),
        api_key: None,
        response_headers: response_headers(response.headers()),
        body_on_error: None,
        time_to_first_byte: Some(Duration::ZERO),
        total: Duration::ZERO,
    };
    Attempt {
        verdict: Verdict::Success { response, first },
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
    }
}

/// The error when every candidate failed: 3802 when none had a key, 3800 when none could be
/// reached, else 3807.
fn exhausted(trace: &Trace) -> crate::error::GatewayError {
    let requests: Vec<&RequestMade> = trace.tried.iter().flat_map(|m| &m.requests).collect();
    let list = trace.attempt_list();
    if !requests.is_empty() && requests.iter().all(|r| r.end == AttemptEnd::NoKey) {
        let mut providers: Vec<String> = trace.tried.iter().map(|m| m.provider.clone()).collect();
        providers.dedup();
        return errors::no_api_key(&providers);
    }
    if !requests.is_empty()
        && requests
            .iter()
            .all(|r| matches!(r.end, AttemptEnd::Transport(_)))
    {
        return errors::unreachable(&list);
    }
    errors::all_failed(&list)
}

fn record_metrics(candidate: &Candidate, made: &RequestMade, elapsed: Duration) {
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
    };
    METRICS.record(&candidate.provider.id, &candidate.model.id, sample);
}

/// Reads until the first non-empty data frame (`None` for an empty body).
async fn first_chunk(body: &mut ResponseBody) -> Result<Option<Bytes>, BoxError> {
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            if !data.is_empty() {
                return Ok(Some(data));
            }
        }
    }
    Ok(None)
}

/// Reads at most `cap` bytes of a body (errors end the read).
async fn read_capped(body: &mut ResponseBody, cap: usize) -> Bytes {
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

fn data_frame(chunk: Bytes) -> Result<Frame<Bytes>, BoxError> {
    Ok(Frame::data(chunk))
}

/// Removes the headers a provider response must not pass to the client: hop-by-hop ones and
/// [`PROVIDER_ONLY`].
pub(super) fn strip_provider_headers<B>(response: &mut Response<B>) {
    let headers = response.headers_mut();
    strip_hop_by_hop(headers);
    // One pass over the few headers a provider sends instead of a hashed lookup per name.
    if headers.keys().any(|name| PROVIDER_ONLY.contains(name)) {
        for name in &PROVIDER_ONLY {
            headers.remove(name);
        }
    }
}
