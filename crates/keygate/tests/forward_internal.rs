//! End to end: `forward-internal` to internal endpoints declared with `--internal-endpoint`,
//! through the real binary: one adds a header and forwards to its upstream, one answers itself,
//! two forward to each other until the hop limit stops them; `on_error: continue`; an internal
//! policy file reloads like the main one; an unknown name is a start error.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{send, EchoUpstream, Gateway, Req, TempDir, BIN};

const PUBLIC: &str = r#"
on_http_request:
  - expressions: ["req.url.path.startsWith('/api')"]
    actions:
      - type: forward-internal
        config:
          url: https://api.internal
  - expressions: ["req.url.path == '/static'"]
    actions:
      - type: forward-internal
        config:
          url: http://static.internal:8080/answer?from=public
  - expressions: ["req.url.path == '/loop'"]
    actions:
      - type: forward-internal
        config:
          url: https://loop-a.internal
  - expressions: ["req.url.path == '/pick'"]
    actions:
      - type: forward-internal
        config:
          url: "https://${req.url.query_params['to'][0]}.internal"
          on_error: continue
      - type: custom-response
        config:
          status_code: 502
          body: "${actions.ngrok.forward_internal.error.code} ${actions.ngrok.forward_internal.url}"
"#;

fn api_policy(tag: &str) -> String {
    format!(
        r#"
on_http_request:
  - actions:
      - type: add-headers
        config:
          headers:
            x-internal: {tag}
"#
    )
}

const STATIC: &str = r#"
on_http_request:
  - actions:
      - type: custom-response
        config:
          status_code: 200
          body: "static ${req.url.path}?${req.url.query} host=${req.host} xff=${req.headers['x-forwarded-for'][0]}"
"#;

fn forward_to(name: &str) -> String {
    format!(
        "on_http_request:\n  - actions:\n      - type: forward-internal\n        config:\n          url: https://{name}\n"
    )
}

struct Setup {
    upstream: EchoUpstream,
    gateway: Gateway,
    /// Holds the internal policy files: keep it for the test's length.
    _dir: TempDir,
    api: std::path::PathBuf,
}

async fn start() -> Setup {
    let upstream = EchoUpstream::start().await;
    let dir = TempDir::new("internal");
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    let api = write("api.yml", &api_policy("v1"));
    let args = [
        format!("api.internal={api},upstream={}", upstream.url()),
        format!("static.internal:8080={}", write("static.yml", STATIC)),
        format!(
            "loop-a.internal={}",
            write("a.yml", &forward_to("loop-b.internal"))
        ),
        format!(
            "loop-b.internal={}",
            write("b.yml", &forward_to("loop-a.internal"))
        ),
    ]
    .into_iter()
    .flat_map(|value| ["--internal-endpoint".to_owned(), value])
    .collect::<Vec<_>>();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let gateway = Gateway::start(PUBLIC, &args);
    Setup {
        upstream,
        gateway,
        api: api.into(),
        _dir: dir,
    }
}

#[tokio::test]
async fn internal_endpoints_answer_for_the_public_one() {
    let Setup {
        upstream,
        gateway,
        _dir,
        ..
    } = start().await;
    let host = gateway.addr.to_string();

    // api.internal: its policy adds a header, then its upstream answers; path, query, body,
    // the original Host and the forwarding headers arrive.
    let reply = send(gateway.addr, Req::post("/api/v1/items?q=1", "{\"a\":1}"))
        .await
        .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("x-upstream"), Some("echo"));
    let received = upstream.requests();
    assert_eq!(received.len(), 1);
    let got = &received[0];
    assert_eq!(
        (got.method.as_str(), got.path.as_str()),
        ("POST", "/api/v1/items?q=1")
    );
    assert_eq!(got.body, b"{\"a\":1}");
    let header = |name: &str| got.headers.get(name).cloned().unwrap_or_default();
    assert_eq!(header("x-internal"), ["v1"]);
    assert_eq!(header("host"), [host.as_str()]);
    assert_eq!(header("x-forwarded-host"), [host.as_str()]);
    assert_eq!(header("x-forwarded-proto"), ["http"]);
    assert_eq!(header("x-forwarded-for"), ["127.0.0.1"], "added once");

    // static.internal:8080 answers itself; the URL's path and query replace the request's.
    let reply = send(gateway.addr, Req::get("/static?dropped=1"))
        .await
        .unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.text(),
        format!("static /answer?from=public host={host} xff=127.0.0.1")
    );
    assert_eq!(upstream.requests().len(), 1);

    // loop-a -> loop-b -> loop-a -> loop-b: the fourth hop is refused.
    let reply = send(gateway.addr, Req::get("/loop")).await.unwrap();
    assert_eq!(reply.status, 508, "{}", reply.text());
    assert_eq!(reply.json()["error"]["code"], "ERR_KEYGATE_3501");

    // on_error: continue records the failure for the next action.
    let reply = send(gateway.addr, Req::get("/pick?to=nowhere"))
        .await
        .unwrap();
    assert_eq!(reply.status, 502);
    assert_eq!(
        reply.text(),
        "ERR_KEYGATE_3200 https://nowhere.internal:443"
    );
    let reply = send(gateway.addr, Req::get("/pick?to=api")).await.unwrap();
    assert_eq!(reply.status, 200, "a target chosen per request");
    assert_eq!(upstream.requests().len(), 2);

    // Nothing matched and the public endpoint has no upstream.
    assert_eq!(
        send(gateway.addr, Req::get("/other")).await.unwrap().status,
        404
    );
}

#[tokio::test]
async fn an_internal_policy_reloads_and_keeps_its_last_good_version() {
    let Setup {
        upstream,
        gateway,
        api,
        _dir,
    } = start().await;
    let tag = |n: usize| upstream.requests()[n].headers["x-internal"].clone();
    assert_eq!(
        send(gateway.addr, Req::get("/api")).await.unwrap().status,
        200
    );
    assert_eq!(tag(0), ["v1"]);

    std::fs::write(&api, api_policy("v2")).unwrap();
    assert!(gateway.wait_for_output("internal endpoint policy reloaded", Duration::from_secs(10)));
    assert_eq!(
        send(gateway.addr, Req::get("/api")).await.unwrap().status,
        200
    );
    assert_eq!(tag(1), ["v2"]);

    std::fs::write(&api, "on_http_request: [{actions: [{type: nope}]}]").unwrap();
    assert!(gateway.wait_for_output("reload rejected", Duration::from_secs(10)));
    assert_eq!(
        send(gateway.addr, Req::get("/api")).await.unwrap().status,
        200
    );
    assert_eq!(tag(2), ["v2"]);
}

#[test]
fn an_undeclared_endpoint_is_a_start_error() {
    let dir = TempDir::new("internal-start");
    let policy = dir.path().join("policy.yml");
    std::fs::write(&policy, forward_to("nope.internal")).unwrap();
    let output = serve(
        &policy,
        dir.path(),
        &[
            "--internal-endpoint",
            &format!("api.internal={}", policy.display()),
        ],
    );
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("no internal endpoint 'nope.internal' is declared"),
        "{stderr}"
    );

    let output = serve(
        &policy,
        dir.path(),
        &["--internal-endpoint", "api.example.com=x.yml"],
    );
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("invalid internal endpoint name"));
}

fn serve(policy: &Path, dir: &Path, extra: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .arg("serve")
        .arg("--policy")
        .arg(policy)
        .arg("--data-dir")
        .arg(dir.join("data"))
        .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
        .args(extra)
        .env_remove("KEYGATE_MASTER_KEY")
        .output()
        .expect("run keygate serve")
}

fn example(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .join(name)
}

#[tokio::test]
async fn the_example_runs() {
    let upstream = EchoUpstream::start().await;
    let public = std::fs::read_to_string(example("forward-internal.yml")).unwrap();
    let internal = format!(
        "llm.internal={},upstream={}",
        example("forward-internal.llm.yml").display(),
        upstream.url()
    );
    let gateway = Gateway::start(&public, &["--internal-endpoint", &internal]);
    let reply = send(gateway.addr, Req::get("/v1/models")).await.unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(
        upstream.requests()[0].headers["x-served-by"],
        ["llm.internal"]
    );
    let reply = send(gateway.addr, Req::get("/elsewhere")).await.unwrap();
    assert_eq!(reply.status, 404);
    assert_eq!(upstream.requests().len(), 1);
}
