//! The usage dashboard on the admin listener: static pages at `/ui/` (embedded in the binary;
//! no token needed, they hold no data) and their JSON API at `/ui/api/*` (the admin token
//! required). Also the admin token's check on `/v1/usage*`. `--no-ui` turns `/ui` off.

use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use keygate_usage::{parse_group_by, GroupBy, Span, MAX_EVENTS};
use serde_json::{json, Value};

use super::auth::{self, error, Refusal};
use super::keys;
use super::usage::{bad_request, read, BadParam, Params};
use crate::gateway::Gateway;

/// The largest request body the API reads (a key form).
const MAX_BODY: usize = 64 * 1024;
/// Events one logs page holds unless `limit` says otherwise.
const DEFAULT_PAGE: u32 = 50;

/// The embedded files: name under `/ui/`, content type, bytes.
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "",
        "text/html; charset=utf-8",
        include_str!("ui/index.html"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("ui/app.js"),
    ),
    (
        "api.js",
        "text/javascript; charset=utf-8",
        include_str!("ui/api.js"),
    ),
    (
        "charts.js",
        "text/javascript; charset=utf-8",
        include_str!("ui/charts.js"),
    ),
    (
        "pages.js",
        "text/javascript; charset=utf-8",
        include_str!("ui/pages.js"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_str!("ui/style.css"),
    ),
];

/// Nothing from elsewhere, no inline script or style, no framing.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
    connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

type Answer = Response<Full<Bytes>>;

/// Answers the dashboard's requests, and refuses `/v1/usage*` without the admin token; gives
/// every other request back.
pub async fn route(
    gateway: &Arc<Gateway>,
    request: Request<Incoming>,
) -> Result<Answer, Request<Incoming>> {
    let path = request.uri().path();
    if path == "/v1/usage" || path.starts_with("/v1/usage/") {
        if !gateway.config.open_usage_api {
            if let Err(refusal) = auth::check(gateway, request.headers()) {
                return Ok(json_answer(refusal));
            }
        }
        return Err(request);
    }
    if !gateway.config.ui || !(path == "/ui" || path.starts_with("/ui/")) {
        return Err(request);
    }
    if let Some(rest) = path.strip_prefix("/ui/api/") {
        let rest = rest.to_owned();
        if let Err(refusal) = auth::check(gateway, request.headers()) {
            return Ok(json_answer(refusal));
        }
        let answer = api(gateway, request, &rest).await;
        return Ok(json_answer(match answer {
            Ok((status, value)) => (status, value.to_string()),
            Err(refusal) => refusal,
        }));
    }
    Ok(asset(request.method(), path))
}

/// A static file.
fn asset(method: &Method, path: &str) -> Answer {
    if path == "/ui" {
        let mut answer = Response::new(Full::default());
        *answer.status_mut() = StatusCode::PERMANENT_REDIRECT;
        answer
            .headers_mut()
            .insert(http::header::LOCATION, HeaderValue::from_static("/ui/"));
        return answer;
    }
    if method != Method::GET && method != Method::HEAD {
        return json_answer(error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"));
    }
    let name = path.strip_prefix("/ui/").unwrap_or_default();
    let Some((_, content_type, body)) = ASSETS.iter().find(|(file, _, _)| *file == name) else {
        return json_answer(error(StatusCode::NOT_FOUND, "not found"));
    };
    let mut answer = Response::new(Full::from(Bytes::from_static(body.as_bytes())));
    let headers = answer.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static(content_type),
    );
    headers.insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache"),
    );
    headers.insert(
        http::header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    secure(headers);
    answer
}

fn secure(headers: &mut http::HeaderMap) {
    headers.insert(
        http::header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        http::header::X_FRAME_OPTIONS,
        HeaderValue::from_static("DENY"),
    );
    headers.insert(
        http::header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
}

fn json_answer((status, body): Refusal) -> Answer {
    let mut answer = Response::new(Full::from(body));
    *answer.status_mut() = status;
    let headers = answer.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    );
    if status == StatusCode::UNAUTHORIZED {
        headers.insert(
            http::header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"keygate-admin\""),
        );
    }
    secure(headers);
    answer
}

/// Turns `read`'s answer (status, JSON text) into a value.
fn parsed((status, body): (StatusCode, String)) -> Result<(StatusCode, Value), Refusal> {
    if status.is_success() {
        serde_json::from_str(&body)
            .map(|value| (status, value))
            .map_err(|err| error(StatusCode::INTERNAL_SERVER_ERROR, &err.to_string()))
    } else {
        Err((status, body))
    }
}

fn ok(value: Value) -> Result<(StatusCode, Value), Refusal> {
    Ok((StatusCode::OK, value))
}

/// One `/ui/api/REST` request, its token already checked.
async fn api(
    gateway: &Arc<Gateway>,
    request: Request<Incoming>,
    rest: &str,
) -> Result<(StatusCode, Value), Refusal> {
    let method = request.method().clone();
    let query = request.uri().query().map(str::to_owned);
    let query = query.as_deref();
    let segments: Vec<&str> = rest.split('/').collect();
    match (&method, segments.as_slice()) {
        (&Method::GET, ["session"]) => ok(json!({
            "ok": true,
            "ledger": gateway.ledger.is_some(),
            "keys": gateway.key_admin.is_some(),
            "version": env!("CARGO_PKG_VERSION"),
        })),
        (&Method::GET, ["overview"]) => {
            let span = span(query, &["range"]).map_err(bad_request)?.0;
            let window = span.overview_window(SystemTime::now());
            parsed(read(gateway, move |reader| reader.overview(&window)).await)
        }
        (&Method::GET, ["breakdown"]) => {
            let (span, params) = span(query, &["range", "by"]).map_err(bad_request)?;
            let by = match params.get("by") {
                None => GroupBy::Model,
                Some(text) => match parse_group_by(text) {
                    Ok(by @ (GroupBy::Key | GroupBy::Model | GroupBy::Provider)) => by,
                    _ => {
                        return Err(bad_request(BadParam::new(
                            "by",
                            format!("by: unknown breakdown '{text}': use key, model or provider"),
                        )))
                    }
                },
            };
            let window = span.breakdown_window(SystemTime::now());
            parsed(read(gateway, move |reader| reader.breakdown(by, &window)).await)
        }
        (&Method::GET, ["events"]) => events(gateway, query).await,
        (&Method::GET, ["events", id]) => {
            let Ok(id) = id.parse::<i64>() else {
                return Err(error(StatusCode::NOT_FOUND, "no such event"));
            };
            let (status, value) = parsed(read(gateway, move |reader| reader.event(id)).await)?;
            if value.is_null() {
                return Err(error(StatusCode::NOT_FOUND, "no such event"));
            }
            Ok((status, json!({ "event": value })))
        }
        (&Method::GET, ["keys"]) => ok(keys::list(gateway).await?),
        (&Method::POST, ["keys"]) => {
            let body = body(request).await?;
            Ok((StatusCode::CREATED, keys::create(gateway, &body).await?))
        }
        (&Method::PATCH, ["keys", id]) => {
            let id = (*id).to_owned();
            let body = body(request).await?;
            ok(keys::update(gateway, id, &body).await?)
        }
        (&Method::DELETE, ["keys", id]) => ok(keys::delete(gateway, (*id).to_owned()).await?),
        (&Method::GET, ["policy"]) => ok(gateway.policy_status()),
        (_, ["session" | "overview" | "breakdown" | "events" | "keys" | "policy", ..]) => {
            Err(error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"))
        }
        _ => Err(error(StatusCode::NOT_FOUND, "not found")),
    }
}

/// The `range` parameter (default 24h) and the decoded parameters.
fn span<'a>(
    query: Option<&'a str>,
    known: &[&'static str],
) -> Result<(Span, Params<'a>), BadParam> {
    let params = Params::decode(query, known)?;
    let span = Span::parse(params.get("range").unwrap_or("24h"))
        .map_err(|message| BadParam::new("range", format!("range: {message}")))?;
    Ok((span, params))
}

/// `GET /ui/api/events`: a page of events, newest first, each with its row id; `has_more` says
/// whether another page follows.
async fn events(gateway: &Gateway, query: Option<&str>) -> Result<(StatusCode, Value), Refusal> {
    let known = [
        "limit", "offset", "key", "model", "status", "since", "until",
    ];
    let page = Params::decode(query, &known)
        .and_then(|params| {
            let limit = params.number("limit", 1, MAX_EVENTS.into())?;
            let offset = params.number("offset", 0, u64::MAX)?;
            let query = params.query().events_query(SystemTime::now())?;
            Ok((
                query,
                limit.map_or(DEFAULT_PAGE, |limit| limit as u32),
                offset.unwrap_or(0),
            ))
        })
        .map_err(bad_request)?;
    let (query, limit, offset) = page;
    parsed(
        read(gateway, move |reader| {
            // One more than the page, to know whether another follows.
            let mut events = reader.stored_events(&query, limit + 1, offset)?;
            let has_more = events.len() > limit as usize;
            events.truncate(limit as usize);
            Ok(json!({
                "events": events,
                "limit": limit,
                "offset": offset,
                "has_more": has_more,
            }))
        })
        .await,
    )
}

/// The request body, at most [`MAX_BODY`] bytes.
async fn body(request: Request<Incoming>) -> Result<Bytes, Refusal> {
    Limited::new(request.into_body(), MAX_BODY)
        .collect()
        .await
        .map(|collected| collected.to_bytes())
        .map_err(|err| {
            error(
                StatusCode::BAD_REQUEST,
                &format!("cannot read the request body (at most {MAX_BODY} bytes): {err}"),
            )
        })
}
