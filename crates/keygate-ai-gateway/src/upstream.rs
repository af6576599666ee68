//! The [`Upstream`] seam: what answers one attempt. [`HttpUpstream`] sends it over a
//! [`HttpClient`]; [`MockUpstream`] answers in process with [`keygate_ai::mock_respond`]. An
//! upstream only builds and sends the request; the call loop does everything that must be the
//! same for every upstream (status classification, first-chunk and error-body reads, the
//! per-attempt timeout, the trace entry, the metrics sample).

use std::future::{ready, Future};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::{BodyExt, StreamBody};
use keygate_ai::{
    mock_respond, set_credential, upstream_headers, ApiFormat, Candidate, PreparedBody, Surface,
};
use keygate_http::{full, strip_hop_by_hop, Body, BoxError, HttpClient, ResponseBody};

use crate::call::Rendered;
use crate::keys::Credential;
use crate::trace_context::TRACEPARENT;

const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// A boxed, sendable future: one per attempt.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why an attempt got no response: connect, TLS, protocol or request-building failure. The text
/// goes to the trace, the error message and the access log, so it never holds a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Transport(pub String);

/// Everything one attempt is made of.
pub struct UpstreamRequest<'a> {
    /// `x-request-id` sent upstream.
    pub request_id: &'a str,
    /// The client's request headers (credentials and framing headers are dropped on the way).
    pub client_headers: &'a HeaderMap,
    /// The client's query string, forwarded.
    pub client_query: Option<&'a str>,
    pub rendered: &'a Rendered,
    pub candidate: &'a Candidate,
    /// The surface the request goes to (the body's, translated or not).
    pub surface: Surface,
    /// The format the client speaks: when it is not the surface's, the client's headers of its
    /// own provider family (`anthropic-*`, `openai-*`) stay home.
    pub client_format: ApiFormat,
    pub body: &'a PreparedBody<'a>,
    pub credential: Option<&'a Credential>,
    /// Some credential of this call is the gateway's: the client's account headers stay home.
    pub server_credentials: bool,
    /// The attempt's `traceparent` when the request is traced: it replaces the client's.
    pub traceparent: Option<HeaderValue>,
}

/// An attempt on its way.
pub struct Sent<'a> {
    /// Where it went, as the trace shows it: no query (config query parameters may hold secrets).
    pub url: String,
    /// The credential went upstream (the trace then shows it, redacted).
    pub credential_sent: bool,
    /// The response head; its body streams.
    pub response: BoxFuture<'a, Result<Response<UpstreamBody>, Transport>>,
}

/// The body of an upstream response. The HTTP client's body stays unboxed while the loop reads
/// its first chunk or its error body, so an attempt that fails over allocates no body box; it is
/// boxed once ([`UpstreamBody::into_body`]) when it goes to the client.
pub enum UpstreamBody {
    Http(ResponseBody),
    Boxed(Body),
}

impl UpstreamBody {
    /// The body as the client's response carries it.
    pub fn into_body(self) -> Body {
        match self {
            UpstreamBody::Http(body) => body.boxed(),
            UpstreamBody::Boxed(body) => body,
        }
    }
}

impl HttpBody for UpstreamBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            UpstreamBody::Http(body) => Pin::new(body).poll_frame(cx),
            UpstreamBody::Boxed(body) => Pin::new(body).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            UpstreamBody::Http(body) => body.is_end_stream(),
            UpstreamBody::Boxed(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            UpstreamBody::Http(body) => body.size_hint(),
            UpstreamBody::Boxed(body) => body.size_hint(),
        }
    }
}

/// What answers the attempts for a candidate.
pub trait Upstream: Send + Sync {
    /// Builds the request for `attempt` and starts sending it. Building is synchronous, so the
    /// future borrows only the upstream, not the attempt.
    fn send<'a>(&'a self, attempt: UpstreamRequest<'a>) -> Sent<'a>;
}

/// Providers reached over HTTP(S).
pub struct HttpUpstream {
    client: HttpClient,
}

impl HttpUpstream {
    /// Sends through `client` (a provider with a `tls` block has a client of its own).
    pub fn new(client: HttpClient) -> Self {
        Self { client }
    }

    fn request(
        attempt: &UpstreamRequest<'_>,
        uri: Option<http::Uri>,
    ) -> Result<Request<Body>, Transport> {
        let format = attempt.surface.format();
        let mut headers =
            upstream_headers(attempt.client_headers, format, attempt.server_credentials);
        strip_hop_by_hop(&mut headers);
        if attempt.client_format != format {
            drop_family_headers(&mut headers, attempt.client_format);
        }
        if let Some(key) = attempt.credential {
            if set_credential(&mut headers, format, &key.value).is_err() {
                return Err(Transport("the API key is not a valid header value".into()));
            }
        }
        for (name, value) in &attempt.rendered.headers {
            headers.insert(name.clone(), value.clone());
        }
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(traceparent) = &attempt.traceparent {
            headers.insert(TRACEPARENT, traceparent.clone());
        }
        // Usually already there, once, copied from the request head the server stamped.
        let id = attempt.request_id;
        let mut ids = headers.get_all(X_REQUEST_ID).iter();
        let stamped =
            matches!((ids.next(), ids.next()), (Some(v), None) if v.as_bytes() == id.as_bytes());
        if !stamped {
            if let Ok(id) = HeaderValue::from_str(id) {
                headers.insert(X_REQUEST_ID, id);
            }
        }
        let Some(uri) = uri else {
            return Err(Transport(format!(
                "invalid upstream URL for provider '{}'",
                attempt.candidate.provider.id
            )));
        };
        let mut request = Request::new(full(attempt.body.to_bytes()));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = uri;
        *request.headers_mut() = headers;
        Ok(request)
    }
}

impl Upstream for HttpUpstream {
    fn send<'a>(&'a self, attempt: UpstreamRequest<'a>) -> Sent<'a> {
        let target = attempt.candidate.provider.upstream_target(
            attempt.surface,
            attempt.client_query,
            &attempt.rendered.query,
        );
        let response: BoxFuture<'a, _> = match Self::request(&attempt, target.uri) {
            Ok(request) => Box::pin(async move {
                let response = self
                    .client
                    .send(request)
                    .await
                    .map_err(|e| Transport(e.with_causes()))?;
                Ok(response.map(UpstreamBody::Http))
            }),
            Err(err) => Box::pin(ready(Err(err))),
        };
        Sent {
            url: target.shown_url,
            credential_sent: attempt.credential.is_some(),
            response,
        }
    }
}

/// The built-in `mock` provider: answers from the prepared body, no network, no key.
#[derive(Debug, Default, Clone, Copy)]
pub struct MockUpstream;

impl Upstream for MockUpstream {
    fn send<'a>(&'a self, attempt: UpstreamRequest<'a>) -> Sent<'a> {
        let created = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let answer = mock_respond(attempt.surface, attempt.body.json(), created);
        let frames = answer.chunks.into_iter().map(data_frame);
        let body = StreamBody::new(futures_util::stream::iter(frames)).boxed();
        let mut response = Response::new(UpstreamBody::Boxed(body));
        *response.status_mut() = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::OK);
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(answer.content_type));
        Sent {
            url: format!("mock://local{}", attempt.surface.client_path()),
            credential_sent: false,
            response: Box::pin(ready(Ok(response))),
        }
    }
}

/// Removes the headers of `format`'s provider family (`anthropic-version`, `anthropic-beta`,
/// `openai-beta`, ...): they mean nothing, or something else, to a provider of another format.
fn drop_family_headers(headers: &mut HeaderMap, format: ApiFormat) {
    let prefix = match format {
        ApiFormat::Anthropic => "anthropic-",
        ApiFormat::OpenAi => "openai-",
    };
    let family: Vec<HeaderName> = headers
        .keys()
        .filter(|name| name.as_str().starts_with(prefix))
        .cloned()
        .collect();
    for name in family {
        headers.remove(name);
    }
}

fn data_frame(chunk: Bytes) -> Result<Frame<Bytes>, BoxError> {
    Ok(Frame::data(chunk))
}

/// The upstream of each candidate, chosen when the action is built: the mock for `mock:`
/// providers, a provider's own upstream when it has one (its `tls` block), else the default.
pub struct Upstreams {
    default: Box<dyn Upstream>,
    by_provider: Vec<Option<Box<dyn Upstream>>>,
    mock: Box<dyn Upstream>,
}

impl Upstreams {
    /// Every candidate goes to `default` (the mock provider to [`MockUpstream`]).
    pub fn new(default: impl Upstream + 'static) -> Self {
        Self {
            default: Box::new(default),
            by_provider: Vec::new(),
            mock: Box::new(MockUpstream),
        }
    }

    /// HTTP through `client`, or through `by_provider[i]` for the provider of config index `i`.
    pub fn http(client: HttpClient, by_provider: Vec<Option<HttpClient>>) -> Self {
        Self {
            default: Box::new(HttpUpstream::new(client)),
            by_provider: by_provider
                .into_iter()
                .map(|c| c.map(|c| Box::new(HttpUpstream::new(c)) as Box<dyn Upstream>))
                .collect(),
            mock: Box::new(MockUpstream),
        }
    }

    /// The upstream answering `candidate`'s attempts.
    pub fn upstream_for(&self, candidate: &Candidate) -> &dyn Upstream {
        let provider = &candidate.provider;
        if provider.is_mock() {
            return &*self.mock;
        }
        provider
            .config_index
            .and_then(|i| self.by_provider.get(i)?.as_deref())
            .unwrap_or(&*self.default)
    }
}

#[cfg(test)]
mod tests {
    use keygate_ai::{prepare_body, BodyOptions, Catalog, ClientRequest, GatewaySpec, Registry};

    use super::*;

    /// The headers of an attempt for a client that sent `client` headers.
    fn sent_headers(client: &HeaderMap, traceparent: Option<HeaderValue>) -> HeaderMap {
        let registry = Registry::new(&GatewaySpec::default(), Catalog::builtin()).unwrap();
        let candidates = registry
            .resolve(&["gpt-4o".to_owned()], Surface::ChatCompletions)
            .unwrap()
            .candidates;
        let body = Bytes::from_static(br#"{"model":"gpt-4o","messages":[]}"#);
        let request = ClientRequest::parse(body).unwrap();
        let options = BodyOptions::default();
        let prepared =
            prepare_body(&request, Surface::ChatCompletions, &candidates[0], &options).unwrap();
        let rendered = Rendered::default();
        let attempt = UpstreamRequest {
            request_id: "req-1",
            client_headers: client,
            client_query: None,
            rendered: &rendered,
            candidate: &candidates[0],
            surface: Surface::ChatCompletions,
            client_format: ApiFormat::OpenAi,
            body: &prepared,
            credential: None,
            server_credentials: true,
            traceparent,
        };
        let uri = "https://api.openai.com/v1/chat/completions".parse().ok();
        HttpUpstream::request(&attempt, uri)
            .unwrap()
            .headers()
            .clone()
    }

    #[test]
    fn the_attempt_traceparent_replaces_the_clients_and_none_is_added_untraced() {
        const CLIENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        const OURS: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-1111111111111111-01";
        let mut client = HeaderMap::new();
        client.insert(TRACEPARENT, HeaderValue::from_static(CLIENT));
        let values = |headers: &HeaderMap| -> Vec<String> {
            headers
                .get_all(TRACEPARENT)
                .iter()
                .map(|v| v.to_str().unwrap().to_owned())
                .collect()
        };
        let traced = sent_headers(&client, Some(HeaderValue::from_static(OURS)));
        assert_eq!(values(&traced), [OURS]);
        // Tracing off: the client's header passes as before, and nothing is added.
        assert_eq!(values(&sent_headers(&client, None)), [CLIENT]);
        assert!(values(&sent_headers(&HeaderMap::new(), None)).is_empty());
    }
}
