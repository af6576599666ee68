//! The model list `GET .../models` answers: built in, set by the config, changed while running
//! (in process and over `/_mock/models`), and the binary's `--model`.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};

use common::{get, send, Reap};
use http::Method;
use keygate_mock::{MockConfig, MockServer};
use serde_json::{json, Value};

fn ids(list: &Value) -> Vec<String> {
    list["data"]
        .as_array()
        .expect("data is a list")
        .iter()
        .map(|m| m["id"].as_str().expect("id").to_owned())
        .collect()
}

#[tokio::test]
async fn the_config_sets_the_list_in_both_shapes() {
    let mock = MockServer::start(MockConfig::default().with_models(["smollm2", "qwen2.5:0.5b"]))
        .await
        .expect("mock starts");
    assert_eq!(
        mock.models(),
        Some(vec!["smollm2".into(), "qwen2.5:0.5b".into()])
    );
    let openai = get(mock.addr, "/v1/models", &[]).await.json();
    assert_eq!(ids(&openai), ["smollm2", "qwen2.5:0.5b"]);
    assert_eq!(openai["object"], "list");
    assert_eq!(openai["data"][0]["object"], "model");
    let anthropic = get(
        mock.addr,
        "/v1/models",
        &[("anthropic-version", "2023-06-01")],
    )
    .await
    .json();
    assert_eq!(ids(&anthropic), ["smollm2", "qwen2.5:0.5b"]);
    assert_eq!(anthropic["first_id"], "smollm2");
    assert_eq!(anthropic["last_id"], "qwen2.5:0.5b");
    assert_eq!(anthropic["data"][1]["display_name"], "qwen2.5:0.5b");
    // A prefixed base URL (`/openai/v1`) lists the same.
    let prefixed = get(mock.addr, "/openai/v1/models", &[]).await.json();
    assert_eq!(ids(&prefixed), ["smollm2", "qwen2.5:0.5b"]);
}

#[tokio::test]
async fn the_list_changes_in_process_and_over_http() {
    let mock = MockServer::start(MockConfig::default())
        .await
        .expect("mock starts");
    assert_eq!(mock.models(), None);
    let builtin = ids(&get(mock.addr, "/v1/models", &[]).await.json());
    assert!(builtin.contains(&"gpt-4o".to_owned()), "{builtin:?}");

    mock.set_models(["a"]);
    assert_eq!(ids(&get(mock.addr, "/v1/models", &[]).await.json()), ["a"]);

    let put = send(
        mock.addr,
        Method::PUT,
        "/_mock/models",
        &[],
        r#"["b", "c"]"#,
    )
    .await
    .expect("PUT");
    assert_eq!(put.status, 200);
    assert_eq!(put.json(), json!({"models": ["b", "c"]}));
    assert_eq!(
        ids(&get(mock.addr, "/v1/models", &[]).await.json()),
        ["b", "c"]
    );
    assert_eq!(
        get(mock.addr, "/_mock/models", &[]).await.json(),
        json!({"models": ["b", "c"]})
    );

    let empty = send(mock.addr, Method::PUT, "/_mock/models", &[], "[]")
        .await
        .expect("PUT");
    assert_eq!(empty.status, 200);
    assert!(ids(&get(mock.addr, "/v1/models", &[]).await.json()).is_empty());

    let bad = send(
        mock.addr,
        Method::PUT,
        "/_mock/models",
        &[],
        r#"{"id": "x"}"#,
    )
    .await
    .expect("PUT");
    assert_eq!(bad.status, 400, "{}", bad.text());
    let wrong = send(mock.addr, Method::POST, "/_mock/models", &[], "[]")
        .await
        .expect("POST");
    assert_eq!(wrong.status, 405);

    let reset = send(mock.addr, Method::DELETE, "/_mock/models", &[], "")
        .await
        .expect("DELETE");
    assert_eq!(reset.json(), json!({"models": null}));
    assert_eq!(
        ids(&get(mock.addr, "/v1/models", &[]).await.json()),
        builtin
    );

    // The control endpoint is not recorded; the listings are.
    let paths: Vec<String> = mock.requests().into_iter().map(|r| r.path).collect();
    assert!(paths.iter().all(|p| p == "/v1/models"), "{paths:?}");
}

#[tokio::test]
async fn the_binary_takes_model_flags() {
    let mut child = Reap(
        Command::new(env!("CARGO_BIN_EXE_keygate-mock"))
            .args([
                "--listen",
                "127.0.0.1:0",
                "--model",
                "smollm2",
                "--model",
                "phi3",
            ])
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn keygate-mock"),
    );
    let stdout = child.0.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).expect("banner");
    let addr: SocketAddr = line
        .trim()
        .strip_prefix("keygate-mock listening on http://")
        .expect("banner names the address")
        .parse()
        .expect("socket address");
    assert_eq!(
        ids(&get(addr, "/v1/models", &[]).await.json()),
        ["smollm2", "phi3"]
    );
}
