use std::io::{Read, Write};
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Method, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use keygate_cel::{Compiler, MemorySecrets};

use crate::body::{full, Body};
use crate::build::Deps;
use crate::exchange::Exchange;
use crate::policy::Policy;

fn compile(config: &str) -> Result<Policy, Vec<String>> {
    let mut text =
        String::from("on_http_response:\n  - actions:\n      - type: compress-response\n");
    if !config.is_empty() {
        text.push_str("        config:\n");
        for line in config.lines() {
            text.push_str("          ");
            text.push_str(line);
            text.push('\n');
        }
    }
    Policy::compile("p.yml", &text, &Compiler::new(), &Deps::for_test()).map_err(|err| {
        err.diagnostics
            .iter()
            .map(|d| d.in_file("p.yml").to_string())
            .collect()
    })
}

fn exchange(method: Method, accept: Option<&str>) -> Exchange {
    let mut request = http::Request::builder().method(method).uri("/x");
    if let Some(accept) = accept {
        request = request.header("accept-encoding", accept);
    }
    let (head, ()) = request.body(()).unwrap().into_parts();
    Exchange::for_test(head, Bytes::new(), 0, Arc::new(MemorySecrets::default()))
}

fn text(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| b"the quick brown fox jumps over the lazy dog. "[i % 45])
        .collect()
}

/// A 200 with `body`, a Content-Length and the extra `headers`.
fn response(body: &[u8], headers: &[(&str, &str)]) -> Response<Body> {
    let mut builder = Response::builder().header("content-length", body.len());
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(full(body.to_vec())).unwrap()
}

async fn run(
    policy: &Policy,
    ex: &mut Exchange,
    response: Response<Body>,
) -> (http::response::Parts, Vec<u8>) {
    let response = policy
        .on_http_response(ex, response)
        .await
        .expect("a response");
    let (head, body) = response.into_parts();
    let body = body.collect().await.expect("body").to_bytes().to_vec();
    (head, body)
}

fn decode(coding: &str, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match coding {
        "gzip" => flate2::read::GzDecoder::new(data).read_to_end(&mut out),
        "deflate" => flate2::read::ZlibDecoder::new(data).read_to_end(&mut out),
        "br" => brotli::Decompressor::new(data, 4096).read_to_end(&mut out),
        "zstd" => zstd::stream::read::Decoder::new(data).and_then(|mut d| d.read_to_end(&mut out)),
        other => panic!("unexpected coding {other}"),
    }
    .unwrap_or_else(|err| panic!("{coding} does not decode: {err}"));
    out
}

fn results(ex: &Exchange) -> serde_json::Value {
    keygate_cel::to_json(&ex.results.get("compress").expect("results").clone())
}

#[tokio::test]
async fn every_algorithm_round_trips_and_sets_the_head() {
    let policy = compile("algorithms: [zstd, br, gzip, deflate]").unwrap();
    let original = text(100_000);
    for coding in ["gzip", "deflate", "br", "zstd"] {
        let mut ex = exchange(Method::GET, Some(coding));
        let (head, body) = run(
            &policy,
            &mut ex,
            response(&original, &[("etag", "\"v1\""), ("accept-ranges", "bytes")]),
        )
        .await;
        assert_eq!(head.headers["content-encoding"], coding);
        assert!(!head.headers.contains_key("content-length"));
        assert!(!head.headers.contains_key("accept-ranges"));
        assert_eq!(head.headers["vary"], "Accept-Encoding");
        assert_eq!(head.headers["etag"], "W/\"v1\"");
        assert!(body.len() < original.len() / 10, "{coding}: {}", body.len());
        assert_eq!(decode(coding, &body), original, "{coding}");
        let results = results(&ex);
        assert_eq!(results["negotiated_algorithm"], coding);
        assert_eq!(results["already_compressed"], false);
    }
}

#[tokio::test]
async fn responses_left_alone() {
    let policy = compile("").unwrap();
    let big = text(4096);
    // (case, method, Accept-Encoding, response, whether Vary is added)
    type Case<'a> = (&'a str, Method, Option<&'a str>, Response<Body>, bool);
    let cases: Vec<Case> = vec![
        (
            "no accept-encoding",
            Method::GET,
            None,
            response(&big, &[]),
            true,
        ),
        (
            "nothing acceptable",
            Method::GET,
            Some("zstd, compress"),
            response(&big, &[]),
            true,
        ),
        (
            "head",
            Method::HEAD,
            Some("gzip"),
            response(&big, &[]),
            false,
        ),
        (
            "small",
            Method::GET,
            Some("gzip"),
            response(&text(255), &[]),
            false,
        ),
        (
            "event stream",
            Method::GET,
            Some("gzip"),
            response(
                &big,
                &[("content-type", "text/event-stream; charset=utf-8")],
            ),
            false,
        ),
        (
            "no-transform",
            Method::GET,
            Some("gzip"),
            response(&big, &[("cache-control", "public, no-transform")]),
            false,
        ),
        (
            "a range",
            Method::GET,
            Some("gzip"),
            response(&big, &[("content-range", "bytes 0-4095/9000")]),
            false,
        ),
    ];
    for (what, method, accept, response, varies) in cases {
        let mut ex = exchange(method, accept);
        let (head, body) = run(&policy, &mut ex, response).await;
        assert!(!head.headers.contains_key("content-encoding"), "{what}");
        assert!(head.headers.contains_key("content-length"), "{what}");
        assert_eq!(head.headers.contains_key("vary"), varies, "{what}");
        assert!(body.len() == 4096 || body.len() == 255, "{what}");
        assert_eq!(results(&ex)["negotiated_algorithm"], "", "{what}");
    }
    for status in [StatusCode::NO_CONTENT, StatusCode::NOT_MODIFIED] {
        let mut ex = exchange(Method::GET, Some("gzip"));
        let mut response = Response::new(crate::body::empty());
        *response.status_mut() = status;
        let (head, _) = run(&policy, &mut ex, response).await;
        assert!(!head.headers.contains_key("content-encoding"), "{status}");
    }
}

#[tokio::test]
async fn an_encoded_body_is_untouched_and_reported() {
    let policy = compile("").unwrap();
    let mut ex = exchange(Method::GET, Some("gzip, br"));
    let (head, body) = run(
        &policy,
        &mut ex,
        response(&text(1000), &[("content-encoding", "gzip")]),
    )
    .await;
    assert_eq!(head.headers["content-encoding"], "gzip");
    assert_eq!(head.headers["content-length"], "1000");
    assert_eq!(body, text(1000));
    assert!(!head.headers.contains_key("vary"));
    assert_eq!(results(&ex)["already_compressed"], true);
}

#[tokio::test]
async fn an_unknown_length_is_compressed_and_vary_is_not_repeated() {
    let policy = compile("").unwrap();
    let mut ex = exchange(Method::GET, Some("gzip;q=1, br;q=0.5"));
    let chunks = vec![Ok::<_, crate::body::BoxError>(http_body::Frame::data(
        Bytes::from(text(10)),
    ))];
    let body = StreamBody::new(futures_util::stream::iter(chunks)).boxed();
    let response = Response::builder()
        .header("vary", "Origin, accept-encoding")
        .body(body)
        .unwrap();
    let (head, body) = run(&policy, &mut ex, response).await;
    assert_eq!(head.headers["content-encoding"], "gzip");
    assert_eq!(head.headers.get_all("vary").iter().count(), 1);
    assert_eq!(decode("gzip", &body), text(10));
}

#[tokio::test]
async fn each_chunk_is_flushed_when_the_upstream_pauses() {
    let policy = compile("compress_event_streams: true").unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Bytes>();
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        let chunk = rx.recv().await?;
        Some((
            Ok::<_, crate::body::BoxError>(http_body::Frame::data(chunk)),
            rx,
        ))
    });
    let response = Response::builder()
        .header("content-type", "text/event-stream")
        .body(StreamBody::new(stream).boxed())
        .unwrap();
    let mut ex = exchange(Method::GET, Some("gzip"));
    let response = policy.on_http_response(&mut ex, response).await.unwrap();
    assert_eq!(response.headers()["content-encoding"], "gzip");
    let mut body = response.into_body();
    let mut decoder = flate2::write::GzDecoder::new(Vec::new());
    for event in ["data: one\n\n", "data: two\n\n"] {
        tx.send(Bytes::from(event)).unwrap();
        // The upstream has nothing more for now: what it sent must come out whole.
        let frame = body.frame().await.unwrap().unwrap().into_data().unwrap();
        decoder.write_all(&frame).unwrap();
        decoder.flush().unwrap();
        assert!(
            decoder.get_ref().ends_with(event.as_bytes()),
            "{:?}",
            String::from_utf8_lossy(decoder.get_ref())
        );
    }
    drop(tx);
    while let Some(frame) = body.frame().await {
        decoder
            .write_all(&frame.unwrap().into_data().unwrap())
            .unwrap();
    }
    assert_eq!(decoder.finish().unwrap(), b"data: one\n\ndata: two\n\n");
}

#[tokio::test]
async fn trailers_follow_the_last_compressed_bytes() {
    let policy = compile("").unwrap();
    let mut trailers = HeaderMap::new();
    trailers.insert("x-checksum", "abc".parse().unwrap());
    let frames = vec![
        Ok::<_, crate::body::BoxError>(http_body::Frame::data(Bytes::from(text(1000)))),
        Ok(http_body::Frame::trailers(trailers)),
    ];
    let response = Response::new(StreamBody::new(futures_util::stream::iter(frames)).boxed());
    let mut ex = exchange(Method::GET, Some("br"));
    let response = policy.on_http_response(&mut ex, response).await.unwrap();
    let collected = response.into_body().collect().await.unwrap();
    assert_eq!(collected.trailers().unwrap()["x-checksum"], "abc");
    assert_eq!(decode("br", &collected.to_bytes()), text(1000));
}

#[test]
fn config_errors_name_the_field() {
    let cases = [
        ("algorithms: [gzip, lz4]", "p.yml:5:30: on_http_response[0].actions[0].config.algorithms[1]: unknown algorithm 'lz4'"),
        ("algorithms: [gzip, gzip]", "config.algorithms[1]: algorithm 'gzip' is listed twice"),
        ("algorithms: []", "config.algorithms: algorithms must not be empty"),
        ("algorithms: gzip", "config.algorithms: expected a list, found a string"),
        ("compress_event_stream: true", "config.compress_event_stream: unknown field"),
    ];
    for (config, expected) in cases {
        let errors = compile(config).err().unwrap_or_default();
        assert_eq!(errors.len(), 1, "{config}: {errors:?}");
        assert!(
            errors[0].contains(expected),
            "{config}:\n  got {}\n  want {expected}",
            errors[0]
        );
    }
}

#[test]
fn compress_alone_loads_with_a_warning() {
    let policy = compile("algorithms: [compress]").unwrap();
    assert_eq!(policy.warnings.len(), 1);
    assert!(policy.warnings[0]
        .message
        .contains("'compress' is obsolete"));
    assert!(compile("algorithms: [gzip, compress]")
        .unwrap()
        .warnings
        .is_empty());
}
