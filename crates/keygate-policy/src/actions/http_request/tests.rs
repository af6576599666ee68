use keygate_cel::Compiler;

use crate::build::Deps;
use crate::policy::Policy;

fn policy(config: &str) -> String {
    let mut text = String::from(
        "on_http_request:\n  - actions:\n      - type: http-request\n        config:\n",
    );
    for line in config.lines() {
        text.push_str("          ");
        text.push_str(line);
        text.push('\n');
    }
    text
}

fn errors(config: &str) -> Vec<String> {
    match Policy::compile(
        "p.yml",
        &policy(config),
        &Compiler::new(),
        &Deps::for_test(),
    ) {
        Ok(_) => Vec::new(),
        Err(err) => err
            .diagnostics
            .iter()
            .map(|d| d.in_file("p.yml").to_string())
            .collect(),
    }
}

fn error(config: &str) -> String {
    let errors = errors(config);
    assert_eq!(errors.len(), 1, "{config}: {errors:#?}");
    errors[0].clone()
}

#[test]
fn a_full_config_loads() {
    let config = "\
url: \"http://127.0.0.1:9/check/${req.url.path}\"
method: POST
headers:
  authorization: \"Bearer ${secrets.get('vault', 'token')}\"
  User-Agent: my-agent
query_params:
  - key: user
    value: \"${req.headers['x-user'][0]}\"
body: '{\"path\": \"${req.url.path}\"}'
timeout: 10s
max_redirects: 10
retry_condition: \"attempts < 3 && last_attempt.res.status_code >= 500\"
on_error: halt";
    assert_eq!(errors(config), Vec::<String>::new());
}

#[test]
fn bad_fields_are_named() {
    let cases = [
        (
            "url: 'ftp://x/'",
            "config.url: the URL must be absolute http:// or https://",
        ),
        ("url: '/relative'", "config.url: invalid URL"),
        (
            "url: 'http://x/${req.nope}'",
            "config.url: invalid interpolation",
        ),
        ("url: 'http://x/${'", "config.url: invalid interpolation"),
        (
            "url: http://x/\nmethod: get",
            "config.method: unknown method 'get'",
        ),
        (
            "url: http://x/\nbody: hi",
            "config.body: a body is only sent with POST, PUT or PATCH, not GET",
        ),
        (
            "url: http://x/\nmethod: PUT\nbody: '${1 +}'",
            "config.body: invalid interpolation",
        ),
        (
            "url: http://x/\ntimeout: 500ms",
            "config.timeout: timeout must be a duration from 1s to 30s, got '500ms'",
        ),
        (
            "url: http://x/\ntimeout: 31s",
            "config.timeout: timeout must be a duration from 1s to 30s",
        ),
        (
            "url: http://x/\nmax_redirects: 11",
            "config.max_redirects: max_redirects must be 0-10, got 11",
        ),
        (
            "url: http://x/\nmax_redirects: -1",
            "config.max_redirects: max_redirects must be 0-10, got -1",
        ),
        (
            "url: http://x/\non_error: retry",
            "config.on_error: unknown variant `retry`",
        ),
        (
            "url: http://x/\nretry_condition: 'attempts <'",
            "config.retry_condition: invalid expression",
        ),
        (
            "url: http://x/\nretry_condition: 'last_atempt.res.status_code == 500'",
            "config.retry_condition: invalid expression: unknown variable 'last_atempt'",
        ),
        (
            "url: http://x/\nheaders:\n  X-Forwarded-For: 1.2.3.4",
            "config.headers.X-Forwarded-For: header 'X-Forwarded-For' is set by Keygate",
        ),
        (
            "url: http://x/\nheaders:\n  keygate-req-type: x",
            "config.headers.keygate-req-type: header 'keygate-req-type' is set by Keygate",
        ),
        (
            "url: http://x/\nheaders:\n  x-a: '${req.nope}'",
            "config.headers.x-a: invalid interpolation",
        ),
        (
            "url: http://x/\nquery_params:\n  - key: ''\n    value: v",
            "config.query_params[0].key: a query parameter key has 1-128 characters",
        ),
        (
            "url: http://x/\nquery_params:\n  - key: k\n    value: '${'",
            "config.query_params[0].value: invalid interpolation",
        ),
        (
            "url: http://x/\nquery_params:\n  - key: k",
            "config.query_params[0]: missing field `value`",
        ),
        (
            "url: http://x/\nbogus: 1",
            "config.bogus: unknown field `bogus`",
        ),
    ];
    for (config, expected) in cases {
        let error = error(config);
        assert!(
            error.contains(expected),
            "{config}:\n  got {error}\n  want {expected}"
        );
    }
}

#[test]
fn header_and_parameter_counts_are_capped() {
    let headers: String = (0..11).map(|i| format!("  x-h{i}: v\n")).collect();
    let too_many = error(&format!("url: http://x/\nheaders:\n{headers}"));
    assert!(
        too_many.contains("config.headers: at most 10 headers, got 11"),
        "{too_many}"
    );
    let params: String = (0..33)
        .map(|i| format!("  - key: k{i}\n    value: v\n"))
        .collect();
    let too_many = error(&format!("url: http://x/\nquery_params:\n{params}"));
    assert!(
        too_many.contains("config.query_params: at most 32 query parameters, got 33"),
        "{too_many}"
    );
}

#[test]
fn results_mask_secrets_and_credentials() {
    use super::results::Shown;
    let mut shown = Shown::new("http://127.0.0.1:9/a?x=1", false);
    shown.query_param("token", "s3cret", true);
    shown.query_param("q", "plain", false);
    shown.header(
        &http::header::AUTHORIZATION,
        &http::HeaderValue::from_static("Bearer abc"),
        false,
    );
    shown.header(
        &http::HeaderName::from_static("x-plain"),
        &http::HeaderValue::from_static("visible"),
        false,
    );
    shown.body("secret body", true);
    let planned = super::Planned {
        method: http::Method::POST,
        url: super::target("http://127.0.0.1:9/a?x=1"),
        headers: http::HeaderMap::new(),
        body: None,
        shown,
    };
    let value = keygate_cel::to_json(&super::results::value(&planned, &[], None));
    assert_eq!(
        value["req"]["url"],
        "http://127.0.0.1:9/a?x=1&token=...&q=plain"
    );
    assert_eq!(value["req"]["header"]["authorization"][0], "...");
    assert_eq!(value["req"]["header"]["x-plain"][0], "visible");
    assert_eq!(value["req"]["body"], "...");
    assert_eq!(value["res"]["status_code"], 0);
    assert_eq!(value["error"]["code"], "");
    let secret_url = Shown::new("http://127.0.0.1:9/key/s3cret", true);
    assert_eq!(secret_url.url(), "http://127.0.0.1:9/...");
}

/// A loopback server on `ip`: `/hop/N` redirects (302) to `/hop/N-1` until `/hop/0` answers;
/// `/to/<url>` redirects to that URL; `/post` answers 303 to `/method`; `/method` answers the
/// method; `/auth` answers the Authorization header (or `none`); `/huge` answers 300 KiB.
async fn server(ip: &str) -> std::net::SocketAddr {
    use http_body_util::Full;
    fn full(bytes: impl Into<bytes::Bytes>) -> Full<bytes::Bytes> {
        Full::new(bytes.into())
    }
    let listener = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let service = hyper::service::service_fn(|request: http::Request<_>| async move {
                let path = request.uri().path().to_owned();
                let response = http::Response::builder();
                let response = if let Some(n) = path.strip_prefix("/hop/") {
                    let n: u32 = n.parse().unwrap();
                    match n {
                        0 => response.body(full("done")),
                        _ => response
                            .status(302)
                            .header("location", format!("/hop/{}", n - 1))
                            .body(full("")),
                    }
                } else if let Some(url) = path.strip_prefix("/to/") {
                    response
                        .status(307)
                        .header("location", format!("http://{url}"))
                        .body(full(""))
                } else {
                    match path.as_str() {
                        "/post" => response
                            .status(303)
                            .header("location", "/method")
                            .body(full("")),
                        "/method" => response.body(full(request.method().to_string())),
                        "/auth" => {
                            let auth = request
                                .headers()
                                .get("authorization")
                                .map_or("none".to_owned(), |v| v.to_str().unwrap().to_owned());
                            response.body(full(auth))
                        }
                        "/huge" => response.body(full(vec![b'x'; 300 * 1024])),
                        _ => response.status(404).body(full("")),
                    }
                };
                Ok::<_, std::convert::Infallible>(response.unwrap())
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service),
            );
        }
    });
    addr
}

/// Runs a request-phase policy of one `http-request` with `config`; the results and the answer
/// the phase gave, if any.
async fn run(config: &str) -> (serde_json::Value, Option<http::Response<crate::body::Body>>) {
    run_with(config, false).await
}

async fn run_with(
    config: &str,
    offline: bool,
) -> (serde_json::Value, Option<http::Response<crate::body::Body>>) {
    let deps = Deps {
        offline,
        ..Deps::for_test()
    };
    let policy = Policy::compile("p.yml", &policy(config), &Compiler::new(), &deps)
        .unwrap_or_else(|err| panic!("{:?}", err.diagnostics));
    let (head, ()) = http::Request::get("/client").body(()).unwrap().into_parts();
    let mut ex = crate::exchange::Exchange::for_test(
        head,
        bytes::Bytes::new(),
        0,
        std::sync::Arc::new(keygate_cel::MemorySecrets::default()),
    );
    let answer = match policy.on_http_request(&mut ex).await {
        crate::engine::Outcome::Respond(response) => Some(response),
        _ => None,
    };
    let results = ex
        .results
        .get("http_request")
        .map(keygate_cel::to_json)
        .unwrap_or_default();
    (results, answer)
}

#[tokio::test]
async fn redirects_follow_the_limit() {
    let addr = server("127.0.0.1").await;
    // Not followed by default: the 302 is the answer.
    let (results, _) = run(&format!("url: http://{addr}/hop/2")).await;
    assert_eq!(results["res"]["status_code"], 302);
    assert_eq!(results["error"]["code"], "");
    // Followed up to the limit.
    let (results, _) = run(&format!("url: http://{addr}/hop/2\nmax_redirects: 2")).await;
    assert_eq!(results["res"]["status_code"], 200);
    assert_eq!(results["res"]["body"], "done");
    assert_eq!(results["res"]["resolved_ip"], "127.0.0.1");
    // One more fails the request.
    let (results, answer) = run(&format!(
        "url: http://{addr}/hop/3\nmax_redirects: 2\non_error: halt"
    ))
    .await;
    assert_eq!(results["error"]["code"], "ERR_KEYGATE_3214");
    assert_eq!(answer.expect("halted").status(), 502);
    // 303 after a POST continues as GET, without the body.
    let (results, _) = run(&format!(
        "url: http://{addr}/post\nmethod: POST\nbody: hello\nmax_redirects: 1"
    ))
    .await;
    assert_eq!(results["res"]["body"], "GET");
}

#[tokio::test]
async fn credentials_do_not_follow_a_redirect_to_another_origin() {
    let here = server("127.0.0.1").await;
    let there = server("127.0.0.2").await;
    let config = |target: String| {
        format!("url: http://{here}/to/{target}\nmax_redirects: 1\nheaders:\n  authorization: Bearer abc")
    };
    let (results, _) = run(&config(format!("{here}/auth"))).await;
    assert_eq!(results["res"]["body"], "Bearer abc");
    let (results, _) = run(&config(format!("{there}/auth"))).await;
    assert_eq!(results["res"]["body"], "none");
    // The results never show the credential.
    assert_eq!(results["req"]["header"]["authorization"][0], "...");
}

#[tokio::test]
async fn failures_are_recorded_or_answered() {
    let addr = server("127.0.0.1").await;
    let (results, answer) = run(&format!("url: http://{addr}/huge")).await;
    assert!(answer.is_none(), "on_error: continue goes on");
    assert_eq!(results["error"]["code"], "ERR_KEYGATE_3601");
    assert_eq!(results["res"]["status_code"], 0);
    assert_eq!(results["attempts"].as_array().unwrap().len(), 1);

    // A port nothing listens on any more.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (results, answer) = run(&format!("url: http://{closed}/x\non_error: halt")).await;
    assert_eq!(results["error"]["code"], "ERR_KEYGATE_3600");
    let answer = answer.expect("halted");
    assert_eq!(answer.status(), 502);
    let body = http_body_util::BodyExt::collect(answer.into_body())
        .await
        .unwrap()
        .to_bytes();
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["error"]["code"], "ERR_KEYGATE_3600");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with(&format!(
                "http-request failed: request to http://{closed} failed"
            )),
        "{body}"
    );

    // A URL that renders to no target fails the request, not the rule.
    let (results, answer) = run("url: \"${'not a url'}\"").await;
    assert!(answer.is_none());
    assert_eq!(results["error"]["code"], "ERR_KEYGATE_3600");
    assert_eq!(results["attempts"][0]["error"]["code"], "ERR_KEYGATE_3600");
}

#[tokio::test]
async fn retry_condition_sees_attempts_and_is_capped() {
    let addr = server("127.0.0.1").await;
    let (results, _) = run(&format!(
        "url: http://{addr}/missing\nretry_condition: last_attempt.res.statusCode == 404"
    ))
    .await;
    // The first attempt and three retries.
    assert_eq!(results["attempts"].as_array().unwrap().len(), 4);
    let (results, _) = run(&format!(
        "url: http://{addr}/missing\nretry_condition: attempts < 2"
    ))
    .await;
    assert_eq!(results["attempts"].as_array().unwrap().len(), 2);
    assert_eq!(results["attempts"][1]["response_status_code"], 404);
}

#[tokio::test]
async fn nothing_is_sent_offline() {
    let addr = server("127.0.0.1").await;
    let (results, answer) = run_with(&format!("url: http://{addr}/method"), true).await;
    assert!(answer.is_none());
    assert_eq!(results["res"]["status_code"], 0);
    assert_eq!(results["error"]["code"], "ERR_KEYGATE_3600");
    assert!(results["error"]["message"]
        .as_str()
        .unwrap()
        .contains("not made offline"));
}
