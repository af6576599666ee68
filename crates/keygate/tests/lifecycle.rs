//! Hot reload, graceful shutdown, `policy check` and HTTP/2, through the real binary.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{send, EchoUpstream, Gateway, Req, TempDir, BIN};

fn policy_answering(text: &str) -> String {
    format!("on_http_request:\n  - actions:\n      - type: custom-response\n        config:\n          body: {text}\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_under_load_loses_no_request_and_keeps_the_last_good_policy() {
    let gw = Gateway::start(&policy_answering("v1"), &[]);
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicUsize::new(0));
    let seen_v2 = Arc::new(AtomicUsize::new(0));
    let total = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (stop, failures, seen_v2, total, addr) = (
            stop.clone(),
            failures.clone(),
            seen_v2.clone(),
            total.clone(),
            gw.addr,
        );
        clients.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match send(addr, Req::get("/")).await {
                    Ok(reply)
                        if reply.status == 200
                            && (reply.text() == "v1" || reply.text() == "v2") =>
                    {
                        if reply.text() == "v2" {
                            seen_v2.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    _ => {
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                }
                total.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // An editor-style replace: write a temp file and rename it over the policy.
    let tmp = gw.policy_path.with_extension("tmp");
    std::fs::write(&tmp, policy_answering("v2")).unwrap();
    std::fs::rename(&tmp, &gw.policy_path).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while seen_v2.load(Ordering::Relaxed) == 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        seen_v2.load(Ordering::Relaxed) > 0,
        "the new policy never took effect:\n{}",
        gw.output()
    );
    // An invalid policy is rejected; v2 keeps serving.
    std::fs::write(
        &gw.policy_path,
        "on_http_request:\n  - actions:\n      - type: nope\n",
    )
    .unwrap();
    assert!(
        gw.wait_for_output("policy reload rejected", Duration::from_secs(5)),
        "{}",
        gw.output()
    );
    assert!(
        gw.output()
            .contains("policy.yml:3:15: on_http_request[0].actions[0].type"),
        "{}",
        gw.output()
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.unwrap();
    }
    assert_eq!(
        failures.load(Ordering::Relaxed),
        0,
        "requests failed during reload"
    );
    assert!(
        total.load(Ordering::Relaxed) > 50,
        "too few requests to mean anything"
    );
    let after = send(gw.addr, Req::get("/")).await.unwrap();
    assert_eq!(after.text(), "v2");
    // SIGHUP reloads too.
    std::fs::write(&gw.policy_path, policy_answering("v3")).unwrap();
    gw.signal("HUP");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        if send(gw.addr, Req::get("/")).await.unwrap().text() == "v3" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "SIGHUP did not reload"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let metrics = send(gw.admin, Req::get("/metrics")).await.unwrap().text();
    assert!(
        metrics.contains("keygate_policy_reloads_total{result=\"error\"}"),
        "{metrics}"
    );
}

#[tokio::test]
async fn sigterm_drains_in_flight_requests_then_exits_zero() {
    let upstream = EchoUpstream::start().await;
    let mut gw = Gateway::start("on_http_request: []\n", &["--upstream", &upstream.url()]);
    let addr = gw.addr;
    let slow =
        tokio::spawn(
            async move { send(addr, Req::get("/slow").header("x-delay-ms", "700")).await },
        );
    tokio::time::sleep(Duration::from_millis(200)).await;
    gw.signal("TERM");
    let reply = slow.await.unwrap().expect("in-flight request completes");
    assert_eq!(reply.status, 200);
    assert_eq!(gw.wait_exit(Duration::from_secs(10)), Some(0));
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "still accepting after shutdown"
    );
    // The access-log writer batches lines; shutdown flushes the drained request's line.
    let output = gw.output();
    let logged = output
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .any(|line| line["message"] == "request" && line["path"] == "/slow");
    assert!(logged, "no access-log line for /slow:\n{output}");
}

fn check(text: &str) -> (i32, String, String) {
    let dir = TempDir::new("check");
    let path = dir.path().join("policy.yml");
    std::fs::write(&path, text).unwrap();
    let output = std::process::Command::new(BIN)
        .args(["policy", "check"])
        .arg(&path)
        .arg("--data-dir")
        .arg(dir.path().join("none"))
        .output()
        .unwrap();
    let stderr =
        String::from_utf8_lossy(&output.stderr).replace(&path.display().to_string(), "policy.yml");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr,
    )
}

#[test]
fn policy_check_prints_ok_or_every_error() {
    let (code, stdout, _) = check(&policy_answering("hi"));
    assert_eq!((code, stdout.as_str()), (0, "ok\n"));
    let (code, stdout, stderr) = check(
        "on_http_request:\n  - actions:\n      - type: restrict-ips\n        config:\n          allow: [10.0.0.0/33]\n  - expressions: ['req.method ==']\n    actions: [{type: deny}]\n",
    );
    assert_eq!(code, 2);
    assert!(stdout.is_empty());
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{stderr}");
    assert!(
        lines[0].starts_with("policy.yml:5:19: on_http_request[0].actions[0].config.allow[0]: "),
        "{stderr}"
    );
    assert!(lines[0].contains("10.0.0.0/33"), "{stderr}");
    assert!(
        lines[1]
            .starts_with("policy.yml:6:33: on_http_request[1].expressions[0]: invalid expression"),
        "{stderr}"
    );
    let (code, _, stderr) = check("on_http_request: [\n");
    assert_eq!(code, 2);
    assert!(stderr.starts_with("policy.yml:"), "{stderr}");
}

#[tokio::test]
async fn http2_prior_knowledge_is_served() {
    use http_body_util::{BodyExt, Empty};
    let gw = Gateway::start(&policy_answering("over h2"), &[]);
    let stream = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(connection);
    let request = hyper::Request::builder()
        .uri(format!("http://{}/", gw.addr))
        .body(Empty::<bytes::Bytes>::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.version(), hyper::Version::HTTP_2);
    assert!(response.headers().contains_key("x-request-id"));
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"over h2");
}

#[test]
fn an_idle_gateway_does_not_reload_itself() {
    let gw = Gateway::start(&policy_answering("steady"), &[]);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        !gw.output().contains("policy reloaded"),
        "reloads without a change:\n{}",
        gw.output()
    );
    std::fs::write(&gw.policy_path, policy_answering("changed")).unwrap();
    assert!(gw.wait_for_output("policy reloaded", Duration::from_secs(5)));
    std::thread::sleep(Duration::from_millis(1500));
    let reloads = gw.output().matches("policy reloaded").count();
    assert!(reloads <= 2, "one write caused {reloads} reloads");
}

#[test]
fn policy_check_warns_about_secrets_the_data_dir_lacks() {
    let data = TempDir::new("check-secrets");
    common::seed_secrets(
        data.path(),
        &[("gateway-auth", "access-token", "value-123")],
    );
    let policy = data.path().join("policy.yml");
    std::fs::write(
        &policy,
        "on_http_request:\n  - expressions:\n      - \"req.headers['a'][0] != secrets.get('gateway-auth', 'access-token') + secrets.get('gateway-auth', 'missing')\"\n    actions: [{type: deny}]\n",
    )
    .unwrap();
    let output = std::process::Command::new(BIN)
        .args(["policy", "check"])
        .arg(&policy)
        .arg("--data-dir")
        .arg(data.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&output.stdout), "ok\n");
    assert!(
        stderr.contains("warning: secrets.get('gateway-auth', 'missing')"),
        "{stderr}"
    );
    assert!(!stderr.contains("'access-token')"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_flag_sets_the_serving_threads() {
    let gw = Gateway::start(&policy_answering("one"), &["--workers", "1"]);
    // The workers may start after the listener answers, and a new thread shows its parent's
    // name until it has set its own: look for a while, until `expected` workers have their names
    // and no other thread still has the parent's (a wrong count still shows after 5 s).
    let workers = |gw: &Gateway, expected: usize| {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let mut names = gw.thread_names();
            let unnamed = names.iter().filter(|name| *name == "keygate").count();
            names.retain(|name| name.starts_with("kg-worker-"));
            names.sort();
            if (unnamed <= 1 && names.len() >= expected) || std::time::Instant::now() > deadline {
                return names;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    assert_eq!(workers(&gw, 1), ["kg-worker-0"]);
    let three = Gateway::start(&policy_answering("three"), &["--workers", "3"]);
    assert_eq!(
        workers(&three, 3),
        ["kg-worker-0", "kg-worker-1", "kg-worker-2"]
    );
    let clients: Vec<_> = (0..8)
        .map(|_| tokio::spawn(send(gw.addr, Req::get("/"))))
        .collect();
    for client in clients {
        let reply = client.await.unwrap().expect("request");
        assert_eq!((reply.status, reply.text()), (200, "one".to_owned()));
    }

    let output = std::process::Command::new(BIN)
        .args(["serve", "--policy", "unused.yml", "--workers", "0"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--workers"));
}

#[tokio::test]
async fn a_misspelt_reload_is_rejected_with_a_suggestion_and_the_last_good_policy_serves() {
    let good = "on_http_request:\n  - expressions:\n      - req.url.path == '/x'\n    actions:\n      - type: custom-response\n        config:\n          body: good\n";
    let gw = Gateway::start(good, &[]);
    assert_eq!(send(gw.addr, Req::get("/x")).await.unwrap().text(), "good");
    std::fs::write(&gw.policy_path, good.replace("req.url.path", "req.url.pth")).unwrap();
    assert!(
        gw.wait_for_output("policy reload rejected", Duration::from_secs(5)),
        "{}",
        gw.output()
    );
    assert!(
        gw.output().contains(
            "policy.yml:3:17: on_http_request[0].expressions[0]: invalid expression: unknown field 'pth' of 'req.url'; did you mean 'path'?"
        ),
        "{}",
        gw.output()
    );
    assert_eq!(send(gw.addr, Req::get("/x")).await.unwrap().text(), "good");
}
