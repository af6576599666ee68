use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::BodyExt;
use keygate_cel::Compiler;

use super::*;
use crate::body::full;
use crate::build::Deps;
use crate::engine::Outcome;
use crate::internal::InternalFuture;
use crate::policy::Policy;

/// Serves `api.internal` and `svc.internal:1234`: answers 201 with the path, hops and body it
/// got, and logs one matched rule.
#[derive(Default)]
struct Fake {
    seen: Mutex<Vec<String>>,
}

impl InternalEndpoints for Fake {
    fn contains(&self, name: &str) -> bool {
        matches!(name, "api.internal" | "svc.internal:1234")
    }

    fn serve<'a>(&'a self, name: &'a str, ex: &'a mut Exchange) -> InternalFuture<'a> {
        Box::pin(async move {
            let body = ex.buffer_body().await.unwrap();
            let seen = format!(
                "{name} {} {} hops={} body={}",
                ex.request.method,
                ex.request.uri,
                InternalHops::of(&ex.request),
                String::from_utf8_lossy(&body)
            );
            self.seen.lock().unwrap().push(seen.clone());
            ex.log.matched_rules.push(Arc::from("inner"));
            let mut response = Response::new(full(seen));
            *response.status_mut() = StatusCode::CREATED;
            Some(response)
        })
    }
}

fn deps(endpoints: Option<Arc<Fake>>) -> Deps {
    Deps {
        internal_endpoints: endpoints.map(|e| e as Arc<dyn InternalEndpoints>),
        ..Deps::for_test()
    }
}

fn load_error(config: &str, endpoints: Option<Arc<Fake>>) -> String {
    match compile(config, endpoints) {
        Ok(_) => panic!("{config} loaded"),
        Err(err) => err,
    }
}

fn compile(config: &str, endpoints: Option<Arc<Fake>>) -> Result<Policy, String> {
    let text = format!(
        "on_http_request:\n  - actions:\n      - type: forward-internal\n        config: {{{config}}}\n      - type: custom-response\n        config: {{status_code: 299, body: '${{actions.ngrok.forward_internal.error.code}} ${{actions.ngrok.forward_internal.url}}'}}\n"
    );
    Policy::compile("t.yml", &text, &Compiler::new(), &deps(endpoints)).map_err(|e| {
        e.diagnostics
            .iter()
            .map(|d| format!("{}: {}", d.path, d.message))
            .collect::<Vec<_>>()
            .join("\n")
    })
}

#[test]
fn urls_name_the_endpoint_by_authority() {
    let t = Target::parse("https://API.internal").unwrap();
    assert_eq!(
        t,
        Target {
            name: "api.internal".into(),
            origin: "https://api.internal:443".into(),
            path: None
        }
    );
    let t = Target::parse("http://svc.internal:1234/v2/x?y=1").unwrap();
    assert_eq!(t.name, "svc.internal:1234");
    assert_eq!(t.origin, "http://svc.internal:1234");
    assert_eq!(t.path.unwrap().as_str(), "/v2/x?y=1");
    assert_eq!(Target::parse("http://a.internal/").unwrap().path, None);
    for bad in [
        "api.internal",
        "ftp://api.internal",
        "https://api.example.com",
        "https://.internal",
        "https://user@api.internal",
        "not a url",
    ] {
        assert!(Target::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn load_checks_literal_urls_against_the_declared_endpoints() {
    let fake = Some(Arc::new(Fake::default()));
    compile("url: 'https://api.internal'", fake.clone()).unwrap();
    compile("url: 'https://${req.host}'", fake.clone()).expect("interpolated: checked per request");
    let err = load_error("url: 'https://other.internal'", fake.clone());
    assert!(
        err.contains("config.url: no internal endpoint 'other.internal' is declared"),
        "{err}"
    );
    let err = load_error("url: 'https://example.com'", fake.clone());
    assert!(
        err.contains("config.url: 'https://example.com' is not an internal endpoint URL"),
        "{err}"
    );
    let err = load_error("url: 'https://api.internal', on_error: retry", fake);
    assert!(err.contains("on_error"), "{err}");
    // `policy check` knows no endpoints: any internal name loads.
    compile("url: 'https://other.internal'", None).unwrap();
}

async fn run(policy: &Policy, path: &str, hops: Option<u8>) -> (StatusCode, String) {
    let (mut head, ()) = http::Request::post(path).body(()).unwrap().into_parts();
    if let Some(hops) = hops {
        head.extensions.insert(InternalHops(hops));
    }
    let mut ex = Exchange::for_test(head, Bytes::from("payload"), 1024, Deps::for_test().secrets);
    let Outcome::Respond(response) = policy.on_http_request(&mut ex).await else {
        panic!("no response");
    };
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn the_endpoint_answers_with_the_request_path_and_body() {
    let fake = Arc::new(Fake::default());
    let policy = compile("url: 'https://api.internal'", Some(fake.clone())).unwrap();
    let (status, body) = run(&policy, "/v1/chat?x=1", None).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(body, "api.internal POST /v1/chat?x=1 hops=1 body=payload");

    let policy = compile(
        "url: 'http://svc.internal:1234/replaced?q=2'",
        Some(fake.clone()),
    )
    .unwrap();
    let (_, body) = run(&policy, "/v1/chat?x=1", Some(1)).await;
    assert_eq!(
        body,
        "svc.internal:1234 POST /replaced?q=2 hops=2 body=payload"
    );
    assert_eq!(fake.seen.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn a_fourth_hop_is_a_loop() {
    let fake = Arc::new(Fake::default());
    let policy = compile("url: 'https://api.internal'", Some(fake.clone())).unwrap();
    let (status, body) = run(&policy, "/", Some(3)).await;
    assert_eq!(status, StatusCode::LOOP_DETECTED);
    assert!(body.contains("ERR_KEYGATE_3501"), "{body}");
    assert!(fake.seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn failures_halt_or_continue_with_results() {
    let fake = Some(Arc::new(Fake::default()));
    let halt = compile(
        "url: 'https://${req.url.query_params[\"to\"][0]}.internal'",
        fake.clone(),
    )
    .unwrap();
    let (status, body) = run(&halt, "/?to=nowhere", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        body.contains("ERR_KEYGATE_3200") && body.contains("nowhere.internal"),
        "{body}"
    );

    let go_on = compile(
        "url: 'https://${req.url.query_params[\"to\"][0]}.internal', on_error: continue",
        fake.clone(),
    )
    .unwrap();
    let (status, body) = run(&go_on, "/?to=nowhere", None).await;
    assert_eq!(status.as_u16(), 299);
    assert_eq!(body, "ERR_KEYGATE_3200 https://nowhere.internal:443");
    let (status, body) = run(&go_on, "/?to=api", Some(3)).await;
    assert_eq!(status.as_u16(), 299);
    assert_eq!(body, "ERR_KEYGATE_3501 https://api.internal:443");
    // Without failure the endpoint answers and the next action never runs.
    assert_eq!(run(&go_on, "/?to=api", None).await.0, StatusCode::CREATED);
}

#[tokio::test]
async fn without_endpoints_every_forward_fails() {
    let policy = compile("url: 'https://api.internal'", None).unwrap();
    let (status, body) = run(&policy, "/", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        body.contains("no internal endpoint 'api.internal' is served"),
        "{body}"
    );
}

#[test]
fn the_inner_log_is_carried_over() {
    let mut outer = RequestLog::default();
    outer.matched_rules.push(Arc::from("public"));
    let mut inner = RequestLog::default();
    inner.matched_rules.push(Arc::from("auth"));
    inner.metadata.push(serde_json::json!({"a": 1}));
    inner.error = Some("upstream unreachable".into());
    absorb(&mut outer, "api.internal", inner);
    let rules: Vec<&str> = outer.matched_rules.iter().map(|r| &**r).collect();
    assert_eq!(rules, ["public", "api.internal/auth"]);
    assert_eq!(outer.metadata.len(), 1);
    assert_eq!(outer.error.as_deref(), Some("upstream unreachable"));
}
