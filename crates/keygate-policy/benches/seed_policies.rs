//! The seed guide's authorization policies through the policy engine, per request: the request
//! phase of an authorized request (the expensive path: every rule evaluated, nothing answers).

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use futures_util::FutureExt;
use keygate_cel::{Compiler, ConnInfo, MemorySecrets, SecretSource};
use keygate_policy::{Deps, Exchange, Outcome, Policy, RequestBody};

const BEARER: &str = r#"
on_http_request:
  - expressions:
      - req.headers['authorization'][0] != 'Bearer ' + secrets.get('gateway-auth', 'access-token')
    actions:
      - type: custom-response
        config:
          status_code: 401
          headers:
            content-type: application/json
          body: '{"error": {"message": "Invalid or missing authorization token", "type": "authentication_error"}}'
"#;

const MULTIPLE: &str = r#"
on_http_request:
  - actions:
      - type: set-vars
        config:
          vars:
            - valid_auth_headers:
                - ${'Bearer ' + secrets.get('gateway-auth', 'client-a-token')}
                - ${'Bearer ' + secrets.get('gateway-auth', 'client-b-token')}
                - ${'Bearer ' + secrets.get('gateway-auth', 'access-token')}
  - expressions:
      - "!(req.headers['authorization'][0] in vars.valid_auth_headers)"
    actions:
      - type: custom-response
        config:
          status_code: 401
          body: '{"error": {"message": "Invalid or missing authorization token", "type": "authentication_error"}}'
"#;

const API_KEY: &str = r#"
on_http_request:
  - expressions:
      - req.headers['x-api-key'][0] != secrets.get('gateway-auth', 'access-token')
    actions:
      - type: custom-response
        config:
          status_code: 401
          body: '{"error": {"message": "Invalid or missing API key", "type": "authentication_error"}}'
"#;

const TOKEN: &str = "kg-7Qe0vT2nq9sUa4xYh3LmB8cWd1Rj6PzK5fGo0iNt";

fn secrets() -> Arc<dyn SecretSource> {
    let mut secrets = MemorySecrets::default();
    for name in ["access-token", "client-a-token", "client-b-token"] {
        secrets.insert("gateway-auth", name, TOKEN);
    }
    Arc::new(secrets)
}

fn exchange(secrets: &Arc<dyn SecretSource>, conn: &Arc<ConnInfo>) -> Exchange {
    let (head, ()) = http::Request::post("/v1/chat/completions")
        .header("host", "gateway.example.com")
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("x-api-key", TOKEN)
        .header("content-type", "application/json")
        .header("content-length", "120")
        .header("user-agent", "OpenAI/Python 1.99.0")
        .header("accept", "application/json")
        .header("x-stainless-lang", "python")
        .header("x-stainless-os", "Linux")
        .header("x-request-id", "0123456789abcdef")
        .body(())
        .expect("request")
        .into_parts();
    Exchange::new(
        "0123456789abcdef".into(),
        conn.clone(),
        "http",
        head,
        RequestBody::Buffered(bytes::Bytes::new()),
        1 << 20,
        secrets.clone(),
    )
}

fn bench(c: &mut Criterion) {
    let secrets = secrets();
    let deps = Deps::offline(secrets.clone());
    let compiler = Compiler::new();
    let conn = Arc::new(ConnInfo::new(
        "127.0.0.1:50000".parse().expect("addr"),
        "127.0.0.1:8080".parse().expect("addr"),
    ));
    for (name, text) in [
        ("bearer", BEARER),
        ("multiple_tokens", MULTIPLE),
        ("x_api_key", API_KEY),
    ] {
        let policy = Policy::compile(name, text, &compiler, &deps).expect("seed policy compiles");
        c.bench_function(&format!("seed_policy/{name}/authorized"), |b| {
            b.iter_batched(
                || exchange(&secrets, &conn),
                |mut ex| {
                    let outcome = policy
                        .on_http_request(&mut ex)
                        .now_or_never()
                        .expect("ready");
                    assert!(matches!(outcome, Outcome::Continue));
                    ex
                },
                BatchSize::SmallInput,
            )
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
