//! `compress-response`: compress the response body with a coding the client accepts, streaming.

mod encoder;
mod negotiate;

use std::collections::HashMap;

use http::header::{
    HeaderMap, HeaderValue, ACCEPT_RANGES, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_LENGTH,
    CONTENT_RANGE, CONTENT_TYPE, ETAG, VARY,
};
use http::{Method, StatusCode};
use http_body::Body as _;
use http_body_util::BodyExt;
use keygate_cel::Value;
use serde::Deserialize;

use crate::action::{ready, Action, ActionFuture, ActionKind, Flow, Phase, Termination};
use crate::build::BuildContext;
use crate::diagnostic::Diagnostic;
use crate::exchange::Exchange;
use encoder::{CompressedBody, Encoder};
use negotiate::{negotiate, Algorithm};

pub const KIND: ActionKind = ActionKind {
    name: "compress-response",
    result_name: "compress",
    phases: &[Phase::OnHttpResponse],
    termination: Termination::Never,
    needs_config: false,
    build,
};

/// Bodies known to be smaller than this are sent as they are: compression would save a few bytes
/// at best, and often grows them (gzip alone adds 18 bytes of framing).
const MIN_LENGTH: u64 = 256;

/// ngrok's default set (`gzip, deflate, br, compress`), in Keygate's order of preference:
/// brotli compresses best at the same speed; `compress` is never produced.
const DEFAULT_ALGORITHMS: &[Algorithm] = &[Algorithm::Br, Algorithm::Gzip, Algorithm::Deflate];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    algorithms: Option<Vec<String>>,
    /// Keygate extension: compress `text/event-stream` responses too (off: SSE clients and
    /// proxies often mishandle compressed streams).
    #[serde(default)]
    compress_event_streams: bool,
}

struct CompressResponse {
    /// In order of preference; empty when only `compress` was configured.
    algorithms: Vec<Algorithm>,
    compress_event_streams: bool,
}

fn build(cx: &BuildContext<'_>) -> Result<Box<dyn Action>, Diagnostic> {
    let config: Config = cx.config()?;
    let algorithms = match &config.algorithms {
        None => DEFAULT_ALGORITHMS.to_vec(),
        Some(names) => parse_algorithms(cx, names)?,
    };
    Ok(Box::new(CompressResponse {
        algorithms,
        compress_event_streams: config.compress_event_streams,
    }))
}

/// The configured names, in order: unknown or repeated ones are errors; `compress` (LZW, which no
/// current client asks for) is accepted for ngrok compatibility and dropped.
fn parse_algorithms(cx: &BuildContext<'_>, names: &[String]) -> Result<Vec<Algorithm>, Diagnostic> {
    if names.is_empty() {
        return Err(cx.error("algorithms", "algorithms must not be empty"));
    }
    let mut algorithms = Vec::with_capacity(names.len());
    for (i, name) in names.iter().enumerate() {
        let field = format!("algorithms[{i}]");
        if names[..i].contains(name) {
            return Err(cx.error(&field, format!("algorithm '{name}' is listed twice")));
        }
        let algorithm = match name.as_str() {
            "gzip" => Algorithm::Gzip,
            "deflate" => Algorithm::Deflate,
            "br" => Algorithm::Br,
            "zstd" => Algorithm::Zstd,
            "compress" => continue,
            _ => {
                return Err(cx.error(
                    &field,
                    format!(
                        "unknown algorithm '{name}': use gzip, deflate, br, zstd (or compress, \
                         accepted but never used)"
                    ),
                ))
            }
        };
        algorithms.push(algorithm);
    }
    if algorithms.is_empty() {
        cx.warn(
            "algorithms",
            "'compress' is obsolete and never negotiated: this action compresses nothing",
        );
    }
    Ok(algorithms)
}

impl Action for CompressResponse {
    fn run<'a>(&'a self, ex: &'a mut Exchange) -> ActionFuture<'a> {
        ready(Ok(self.compress(ex)))
    }
}

/// What the action did, for `actions.ngrok.compress.*`.
struct Outcome {
    already_compressed: bool,
    algorithm: Option<Algorithm>,
}

impl CompressResponse {
    fn compress(&self, ex: &mut Exchange) -> Flow {
        let outcome = self.apply(ex);
        ex.results.set(
            KIND.result_name,
            Value::from(HashMap::from([
                (
                    "already_compressed",
                    Value::from(outcome.already_compressed),
                ),
                (
                    "negotiated_algorithm",
                    Value::from(outcome.algorithm.map_or("", Algorithm::name)),
                ),
            ])),
        );
        Flow::Continue
    }

    fn apply(&self, ex: &mut Exchange) -> Outcome {
        let mut outcome = Outcome {
            already_compressed: false,
            algorithm: None,
        };
        let (Some(head), Some(body)) = (ex.response.as_mut(), ex.response_body.as_ref()) else {
            return outcome;
        };
        if head
            .headers
            .get(CONTENT_ENCODING)
            .is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"))
        {
            outcome.already_compressed = true;
            return outcome;
        }
        let known_length = content_length(&head.headers).or(body.size_hint().exact());
        if self.algorithms.is_empty()
            || !compressible(&ex.request.method, head.status, &head.headers)
            || known_length.is_some_and(|len| len < MIN_LENGTH)
            || (is_event_stream(&head.headers) && !self.compress_event_streams)
        {
            return outcome;
        }
        // From here on the answer depends on Accept-Encoding: caches must know.
        append_vary(&mut head.headers);
        let Some(algorithm) = negotiate(&ex.request.headers, &self.algorithms) else {
            return outcome;
        };
        let encoder = match Encoder::new(algorithm) {
            Ok(encoder) => encoder,
            Err(err) => {
                // Only when zstd cannot set up its context: the body goes out as it is.
                tracing::warn!(request_id = %ex.id, error = %err, "compress-response: cannot start the compressor");
                return outcome;
            }
        };
        if let Some(body) = ex.response_body.take() {
            ex.response_body = Some(CompressedBody::new(body, encoder).boxed());
            set_encoding(&mut head.headers, algorithm);
            outcome.algorithm = Some(algorithm);
        }
        outcome
    }
}

/// Whether this response may be compressed at all: it has a body the client will read (not a
/// HEAD answer, 1xx, 204, 304), is not a byte range of the unencoded representation, and does
/// not forbid transformation (RFC 9111 5.2.2.6 `no-transform`).
fn compressible(method: &Method, status: StatusCode, headers: &HeaderMap) -> bool {
    *method != Method::HEAD
        && !status.is_informational()
        && !matches!(
            status,
            StatusCode::NO_CONTENT | StatusCode::NOT_MODIFIED | StatusCode::PARTIAL_CONTENT
        )
        && !headers.contains_key(CONTENT_RANGE)
        && !headers
            .get_all(CACHE_CONTROL)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|directive| directive.trim().eq_ignore_ascii_case("no-transform"))
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn is_event_stream(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim_start().get(..17))
        .is_some_and(|v| v.eq_ignore_ascii_case("text/event-stream"))
}

/// Adds `Accept-Encoding` to `Vary` unless it is there already (or `Vary: *`).
fn append_vary(headers: &mut HeaderMap) {
    let covered = headers
        .get_all(VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|name| name == "*" || name.eq_ignore_ascii_case("accept-encoding"));
    if !covered {
        headers.append(VARY, HeaderValue::from_static("Accept-Encoding"));
    }
}

/// The head of a response whose body is now encoded: no length (the body streams), the coding,
/// a weak validator (the bytes differ from the upstream's) and no byte ranges.
fn set_encoding(headers: &mut HeaderMap, algorithm: Algorithm) {
    headers.remove(CONTENT_LENGTH);
    headers.remove(ACCEPT_RANGES);
    headers.insert(CONTENT_ENCODING, HeaderValue::from_static(algorithm.name()));
    if let Some(etag) = headers
        .get(ETAG)
        .filter(|v| v.as_bytes().starts_with(b"\""))
    {
        let mut weak = b"W/".to_vec();
        weak.extend_from_slice(etag.as_bytes());
        if let Ok(weak) = HeaderValue::from_bytes(&weak) {
            headers.insert(ETAG, weak);
        }
    }
}

#[cfg(test)]
mod tests;
