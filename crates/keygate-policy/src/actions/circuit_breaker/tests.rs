use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::BodyExt;
use keygate_cel::Compiler;

use crate::body::empty;
use crate::build::Deps;
use crate::engine::Outcome;
use crate::exchange::Exchange;
use crate::policy::Policy;

fn compile(config: &str) -> Result<Policy, String> {
    let text = format!(
        "on_http_request:\n  - actions:\n      - type: circuit-breaker\n        config: {{{config}}}\n"
    );
    Policy::compile("t.yml", &text, &Compiler::new(), &Deps::for_test()).map_err(|e| {
        e.diagnostics
            .iter()
            .map(|d| format!("{}: {}", d.path, d.message))
            .collect::<Vec<_>>()
            .join("\n")
    })
}

#[test]
fn config_defaults_and_bounds() {
    compile("").expect("every field has a default");
    compile("error_threshold: 0, volume_threshold: 2000000000, window_duration: 2m, tripped_duration: 1s, num_buckets: 10, enforce: false")
        .expect("extremes");
    compile("error_threshold: 1").expect("an integer threshold");
    for (config, needle) in [
        (
            "error_threshold: 1.5",
            "config.error_threshold: error_threshold must be from 0.0 to 1.0",
        ),
        ("error_threshold: -0.1", "config.error_threshold:"),
        (
            "volume_threshold: 0",
            "config.volume_threshold: volume_threshold must be from 1",
        ),
        ("volume_threshold: 2000000001", "config.volume_threshold:"),
        (
            "window_duration: 500ms",
            "config.window_duration: window_duration must be from 1s to 2m",
        ),
        (
            "tripped_duration: 3m",
            "config.tripped_duration: tripped_duration must be from 1s to 2m",
        ),
        (
            "tripped_duration: soon",
            "config.tripped_duration: invalid duration 'soon'",
        ),
        (
            "num_buckets: 20",
            "config.num_buckets: num_buckets is fixed at 10, got 20",
        ),
        ("threshold: 1", "threshold"),
    ] {
        let Err(err) = compile(config) else {
            panic!("{config} loaded");
        };
        assert!(err.contains(needle), "{config}: {err}");
    }
}

/// Runs one request through `policy`; when it reaches the "upstream", that answers `status`.
async fn request(policy: &Policy, status: u16) -> Response<crate::body::Body> {
    let (head, ()) = http::Request::get("/v1/chat/completions")
        .body(())
        .unwrap()
        .into_parts();
    let mut ex = Exchange::for_test(head, Bytes::new(), 1024, Deps::for_test().secrets);
    let response = match policy.on_http_request(&mut ex).await {
        Outcome::Respond(response) => response,
        Outcome::Continue => {
            let mut response = Response::new(empty());
            *response.status_mut() = StatusCode::from_u16(status).unwrap();
            response
        }
        Outcome::Close => panic!("closed"),
    };
    policy.on_http_response(&mut ex, response).await.unwrap()
}

#[tokio::test]
async fn five_hundreds_trip_it_and_it_answers_503_in_the_client_format() {
    let policy = compile("volume_threshold: 4, error_threshold: 0.5").unwrap();
    for status in [200, 500, 404, 502] {
        assert_eq!(request(&policy, status).await.status().as_u16(), status);
    }
    // 2 errors (500, 502) of 4: tripped.
    let refused = request(&policy, 200).await;
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    let retry: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=10).contains(&retry), "{retry}");
    let body = refused.into_body().collect().await.unwrap().to_bytes();
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["error"]["code"], "ERR_KEYGATE_3202");
}

#[tokio::test]
async fn client_errors_are_successes() {
    let policy = compile("volume_threshold: 2, error_threshold: 0.1").unwrap();
    for _ in 0..20 {
        assert_eq!(request(&policy, 404).await.status(), StatusCode::NOT_FOUND);
    }
}

#[tokio::test]
async fn not_enforcing_counts_but_never_refuses() {
    let policy = compile("volume_threshold: 2, enforce: false").unwrap();
    for _ in 0..10 {
        assert_eq!(
            request(&policy, 503).await.status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(request(&policy, 200).await.status(), StatusCode::OK);
    }
}

#[tokio::test]
async fn a_request_without_a_response_is_not_counted() {
    let policy = compile("volume_threshold: 1").unwrap();
    let (head, ()) = http::Request::get("/").body(()).unwrap().into_parts();
    let mut ex = Exchange::for_test(head, Bytes::new(), 1024, Deps::for_test().secrets);
    assert!(matches!(
        policy.on_http_request(&mut ex).await,
        Outcome::Continue
    ));
    assert_eq!(ex.response_observers.len(), 1);
    drop(ex);
    assert_eq!(request(&policy, 200).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn each_loaded_policy_has_its_own_breaker() {
    let tripped = compile("volume_threshold: 1").unwrap();
    request(&tripped, 500).await;
    assert_eq!(
        request(&tripped, 200).await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    let reloaded = compile("volume_threshold: 1").unwrap();
    assert_eq!(request(&reloaded, 200).await.status(), StatusCode::OK);
}
