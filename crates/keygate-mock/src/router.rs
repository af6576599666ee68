//! The request handler: records the request, resolves its controls, routes it to a surface and
//! turns the reply into a timed hyper response.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::Value;

use crate::body::{full, scripted, Cut, MockBody, Piece};
use crate::config::MockConfig;
use crate::conn::ResetSwitch;
use crate::controls::{resolve, Behaviour, DropPoint};
use crate::errors::{error_reply, scripted_message, Shape};
use crate::record::Recorder;
use crate::reply::{Ctx, Payload, Reply, EVENT_STREAM, JSON};
use crate::text::Ids;
use crate::{anthropic, openai, responses};

/// Path of the record endpoint (`GET` lists, `DELETE` clears).
pub(crate) const RECORDS_PATH: &str = "/_mock/requests";
/// Path of the model-list control (`GET` shows, `PUT` replaces, `DELETE` restores the config's).
pub(crate) const MODELS_PATH: &str = "/_mock/models";

/// Everything a request handler shares with the others.
#[derive(Debug)]
pub(crate) struct State {
    pub(crate) config: MockConfig,
    pub(crate) recorder: Recorder,
    pub(crate) ids: Ids,
    /// What `GET .../models` lists (`None`: the built-in lists); starts as `config.models`.
    pub(crate) models: Mutex<Option<Vec<String>>>,
}

impl State {
    /// The model ids `GET .../models` lists now (`None`: the built-in lists).
    pub(crate) fn models(&self) -> Option<Vec<String>> {
        self.models
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Replaces the listed model ids (`None`: back to the built-in lists).
    pub(crate) fn set_models(&self, ids: Option<Vec<String>>) {
        *self
            .models
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = ids;
    }
}

/// Why the service ends a connection instead of answering.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ServiceError {
    /// `x-mock-drop: before-headers` (or a `drop-before` key) asked for it.
    #[error("connection dropped before the response head as the mock's controls asked")]
    DroppedBeforeHeaders,
    /// The request body could not be read.
    #[error("reading the request body failed: {0}")]
    Body(#[from] hyper::Error),
}

/// The surfaces the mock serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Chat,
    Completions,
    Embeddings,
    Responses,
    Models,
    Messages,
    CountTokens,
    Records,
    ModelsControl,
    NotFound,
}

/// Routes by path suffix, so base URLs with a prefix (`/openai/v1`) work too.
fn route(method: &Method, path: &str) -> Route {
    let post = method == Method::POST;
    if path == RECORDS_PATH {
        Route::Records
    } else if path == MODELS_PATH {
        Route::ModelsControl
    } else if post && path.ends_with("/messages/count_tokens") {
        Route::CountTokens
    } else if post && path.ends_with("/messages") {
        Route::Messages
    } else if post && path.ends_with("/chat/completions") {
        Route::Chat
    } else if post && path.ends_with("/completions") {
        Route::Completions
    } else if post && path.ends_with("/embeddings") {
        Route::Embeddings
    } else if post && path.ends_with("/responses") {
        Route::Responses
    } else if method == Method::GET && path.ends_with("/models") {
        Route::Models
    } else {
        Route::NotFound
    }
}

fn shape_of(route: Route, path: &str, anthropic_client: bool) -> Shape {
    match route {
        Route::Messages | Route::CountTokens => Shape::Anthropic,
        Route::Models if anthropic_client => Shape::Anthropic,
        Route::NotFound if path.contains("/messages") => Shape::Anthropic,
        _ => Shape::OpenAi,
    }
}

/// Handles one request; `reset` makes its connection end with a TCP reset.
pub(crate) async fn handle(
    state: Arc<State>,
    req: Request<Incoming>,
    reset: ResetSwitch,
) -> Result<Response<MockBody>, ServiceError> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await?.to_bytes();
    let route = route(&parts.method, parts.uri.path());
    if route == Route::Records {
        return Ok(records(&state.recorder, &parts.method));
    }
    if route == Route::ModelsControl {
        return Ok(models_control(&state, &parts.method, &body));
    }
    if state.recorder.enabled() {
        state.recorder.push(&parts, &body);
    }
    let anthropic_client = parts.headers.contains_key("anthropic-version");
    let shape = shape_of(route, parts.uri.path(), anthropic_client);
    let behaviour = match resolve(&parts.headers, &state.config) {
        Ok(b) => b,
        Err(e) => {
            let reply = error_reply(shape, StatusCode::BAD_REQUEST, &e.to_string());
            return Ok(respond(reply, None, &state.ids, None));
        }
    };
    if !behaviour.delay.is_zero() {
        tokio::time::sleep(behaviour.delay).await;
    }
    if behaviour.drop == Some(DropPoint::BeforeHeaders) {
        return Err(ServiceError::DroppedBeforeHeaders);
    }
    let reply = match behaviour.status {
        Some(status) if status.as_u16() >= 400 => {
            error_reply(shape, status, &scripted_message(status))
        }
        status => {
            let mut reply = dispatch(route, shape, &body, &behaviour, &state);
            if behaviour.omit_usage {
                reply = reply.without_usage();
            }
            if let Some(status) = status {
                if reply.status == StatusCode::OK {
                    reply.status = status;
                }
            }
            reply
        }
    };
    // HTTP/2 streams share the connection: a broken body resets only its stream.
    let reset = (parts.version < http::Version::HTTP_2).then_some(reset);
    Ok(respond(reply, Some(&behaviour), &state.ids, reset))
}

fn dispatch(
    route: Route,
    shape: Shape,
    body: &Bytes,
    behaviour: &Behaviour,
    state: &State,
) -> Reply {
    let ctx = Ctx {
        chunks: behaviour.chunks,
        ids: &state.ids,
        cache: behaviour.cache,
    };
    match route {
        Route::Models if shape == Shape::Anthropic => {
            return anthropic::models(state.models().as_deref())
        }
        Route::Models => return openai::models(state.models().as_deref()),
        Route::NotFound | Route::Records | Route::ModelsControl => {
            return error_reply(shape, StatusCode::NOT_FOUND, "mock: no such endpoint");
        }
        _ => {}
    }
    let json: Value = match serde_json::from_slice(body) {
        Ok(v @ Value::Object(_)) => v,
        _ => {
            return error_reply(
                shape,
                StatusCode::BAD_REQUEST,
                "We could not parse the JSON body of your request: expected a JSON object.",
            )
        }
    };
    match route {
        Route::Chat => openai::chat(&json, ctx),
        Route::Completions => openai::completions(&json, ctx),
        Route::Embeddings => openai::embeddings(&json),
        Route::Responses => responses::create(&json, ctx),
        Route::Messages => anthropic::messages(&json, ctx),
        _ => anthropic::count_tokens(&json),
    }
}

fn records(recorder: &Recorder, method: &Method) -> Response<MockBody> {
    let (status, body) = if method == Method::GET {
        let list = serde_json::to_vec(&recorder.snapshot()).unwrap_or_default();
        (StatusCode::OK, Bytes::from(list))
    } else if method == Method::DELETE {
        recorder.clear();
        (StatusCode::OK, Bytes::from_static(b"{\"cleared\":true}"))
    } else {
        (
            StatusCode::METHOD_NOT_ALLOWED,
            Bytes::from_static(b"{\"error\":{\"message\":\"use GET or DELETE\"}}"),
        )
    };
    let mut resp = Response::new(full(body));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(JSON));
    resp
}

/// `/_mock/models`: `GET` shows the listed ids (`null`: the built-in lists), `PUT` with a JSON
/// array of ids replaces them, `DELETE` restores the list the mock was started with.
fn models_control(state: &State, method: &Method, body: &Bytes) -> Response<MockBody> {
    let (status, answer) = if method == Method::GET {
        (
            StatusCode::OK,
            serde_json::json!({"models": state.models()}),
        )
    } else if method == Method::PUT {
        match serde_json::from_slice::<Vec<String>>(body) {
            Ok(ids) => {
                state.set_models(Some(ids));
                (
                    StatusCode::OK,
                    serde_json::json!({"models": state.models()}),
                )
            }
            Err(_) => (
                StatusCode::BAD_REQUEST,
                serde_json::json!({"error": {"message": "PUT a JSON array of model ids"}}),
            ),
        }
    } else if method == Method::DELETE {
        state.set_models(state.config.models.clone());
        (
            StatusCode::OK,
            serde_json::json!({"models": state.models()}),
        )
    } else {
        (
            StatusCode::METHOD_NOT_ALLOWED,
            serde_json::json!({"error": {"message": "use GET, PUT or DELETE"}}),
        )
    };
    let mut resp = Response::new(full(Bytes::from(answer.to_string())));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(JSON));
    resp
}

/// Builds the hyper response, applying chunk timing and a mid-stream cut when asked (`reset`:
/// the connection's switch, for a reset).
fn respond(
    reply: Reply,
    behaviour: Option<&Behaviour>,
    ids: &Ids,
    reset: Option<ResetSwitch>,
) -> Response<MockBody> {
    let cut = behaviour
        .and_then(|b| b.drop)
        .and_then(|point| match point {
            DropPoint::BeforeHeaders => None,
            DropPoint::MidStream => Some(Ending::Break(reset)),
            DropPoint::FinMidStream => Some(Ending::Break(None)),
            DropPoint::EndMidStream => Some(Ending::Clean),
        });
    let (content_type, body) = match reply.payload {
        Payload::Json(bytes) => {
            let body = match cut {
                Some(ending) => {
                    let half = bytes.len() / 2;
                    let piece = Piece {
                        bytes: bytes.slice(..half),
                        paced: false,
                    };
                    ending.apply(vec![piece], 1, std::time::Duration::ZERO)
                }
                None => full(bytes),
            };
            (JSON, body)
        }
        Payload::Sse(events) => {
            let after = cut.is_some().then(|| {
                let paced = events.iter().filter(|e| e.paced).count();
                drop_point(&events, paced)
            });
            let pieces = events
                .into_iter()
                .map(|e| Piece {
                    bytes: e.bytes,
                    paced: e.paced,
                })
                .collect();
            let delay = behaviour.map(|b| b.chunk_delay).unwrap_or_default();
            let body = match cut.zip(after) {
                Some((ending, after)) => ending.apply(pieces, after, delay),
                None => scripted(pieces, delay, None),
            };
            (EVENT_STREAM, body)
        }
    };
    let mut resp = Response::new(body);
    *resp.status_mut() = reply.status;
    let headers = resp.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if content_type == EVENT_STREAM {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    }
    if let Ok(id) = HeaderValue::from_str(&ids.next("req_")) {
        headers.insert("x-request-id", id);
    }
    for (name, value) in reply.headers {
        headers.insert(name, value);
    }
    resp
}

/// How a cut body ends after its first pieces.
enum Ending {
    /// The connection breaks: reset when the switch is given, else closed.
    Break(Option<ResetSwitch>),
    /// The body ends as if complete.
    Clean,
}

impl Ending {
    /// The body of `pieces` cut after the first `after`.
    fn apply(self, mut pieces: Vec<Piece>, after: usize, delay: std::time::Duration) -> MockBody {
        match self {
            Ending::Break(reset) => scripted(pieces, delay, Some(Cut { after, reset })),
            Ending::Clean => {
                pieces.truncate(after);
                scripted(pieces, delay, None)
            }
        }
    }
}

/// Number of events to send before dropping: through the first half of the content events
/// (at least one event).
fn drop_point(events: &[crate::reply::SseEvent], paced: usize) -> usize {
    let target = paced.div_ceil(2);
    let mut seen = 0;
    for (i, e) in events.iter().enumerate() {
        if e.paced {
            seen += 1;
            if seen == target {
                return i + 1;
            }
        }
    }
    1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_by_suffix() {
        let post = Method::POST;
        assert_eq!(route(&post, "/v1/chat/completions"), Route::Chat);
        assert_eq!(route(&post, "/openai/v1/chat/completions"), Route::Chat);
        assert_eq!(route(&post, "/v1/completions"), Route::Completions);
        assert_eq!(route(&post, "/v1/embeddings"), Route::Embeddings);
        assert_eq!(route(&post, "/v1/responses"), Route::Responses);
        assert_eq!(route(&post, "/v1/messages"), Route::Messages);
        assert_eq!(
            route(&post, "/v1/messages/count_tokens"),
            Route::CountTokens
        );
        assert_eq!(route(&Method::GET, "/v1/models"), Route::Models);
        assert_eq!(route(&Method::GET, "/v1/chat/completions"), Route::NotFound);
        assert_eq!(route(&Method::GET, RECORDS_PATH), Route::Records);
        assert_eq!(route(&Method::GET, MODELS_PATH), Route::ModelsControl);
        assert_eq!(route(&Method::PUT, MODELS_PATH), Route::ModelsControl);
        assert_eq!(route(&post, "/v2/other"), Route::NotFound);
    }

    #[test]
    fn drop_point_is_after_half_the_content() {
        use crate::reply::SseEvent;
        let ev = |paced| SseEvent {
            bytes: Bytes::new(),
            paced,
        };
        let events = vec![ev(false), ev(true), ev(true), ev(true), ev(true), ev(false)];
        assert_eq!(drop_point(&events, 4), 3);
        let events = vec![ev(false), ev(true), ev(true), ev(true), ev(false)];
        assert_eq!(drop_point(&events, 3), 3);
        assert_eq!(drop_point(&[ev(false), ev(false)], 0), 1);
    }
}
