//! The `ai-gateway` `redact` option through the real binary against `keygate-mock`, whose
//! echo is streamed in `x-mock-chunks` pieces so that an e-mail address arrives split over
//! several events: Chat Completions, Messages and Responses streams and whole answers, every
//! event parsed as JSON and the text put back together; a Messages client on an OpenAI model
//! (redacted after translation); `sse-find-replace` shown to miss the split address; the
//! official `openai` and `anthropic` Python SDKs reading redacted streams when they are
//! installed.

mod common;

use common::{send, Gateway, Reply, Req, TempDir};
use keygate_mock::{MockConfig, MockServer};
use keygate_test_support::{parts, require};
use serde_json::{json, Value};

const EMAIL: &str = r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}";
const PROMPT: &str = "Please write to john.doe@example.com before noon.";
const REDACTED: &str = "Please write to [email] before noon.";
/// Pieces the mock streams the 49-character echo in: about 3 characters each.
const CHUNKS: &str = "16";

fn policy(hold_back: usize) -> String {
    format!(
        "on_http_request:
  - actions:
      - type: ai-gateway
        config:
          providers:
            - id: openai
              api_keys:
                - value: sk-redact-test
            - id: anthropic
              api_keys:
                - value: sk-ant-redact-test
          redact:
            hold_back_bytes: {hold_back}
            replacements:
              - from: '{EMAIL}'
                to: '[email]'
"
    )
}

/// The policy ngrok users would write: each event rewritten on its own.
fn sse_find_replace_policy() -> String {
    format!(
        "on_http_request:
  - actions:
      - type: ai-gateway
        config:
          providers:
            - id: openai
              api_keys:
                - value: sk-redact-test
on_event_stream_message:
  - actions:
      - type: sse-find-replace
        config:
          replacements:
            - from: '{EMAIL}'
              to: '[email]'
"
    )
}

async fn start(policy: &str) -> (MockServer, Gateway, TempDir) {
    let mock = MockServer::start(MockConfig::default()).await.unwrap();
    let data = TempDir::new("redact-data");
    let gw = Gateway::start_on_mock(policy, &mock.openai_base_url(), data.path(), &[]);
    (mock, gw, data)
}

async fn post(gw: &Gateway, path: &str, body: &Value) -> Reply {
    let req = Req::post(path, body.to_string()).header("x-mock-chunks", CHUNKS);
    let reply = send(gw.addr, req).await.expect("request");
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply
}

/// Every event of an SSE reply: its name and its data parsed as JSON (`[DONE]` as a string);
/// fails on data that is not JSON.
fn events(reply: &Reply) -> Vec<(Option<String>, Value)> {
    assert!(reply
        .header("content-type")
        .is_some_and(|t| t.starts_with("text/event-stream")));
    let text = reply.text().replace("\r\n", "\n");
    text.split("\n\n")
        .filter(|block| !block.trim().is_empty())
        .map(|block| {
            let mut name = None;
            let mut data = String::new();
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    name = Some(v.trim().to_owned());
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.trim_start());
                }
            }
            let value = if data == "[DONE]" {
                Value::String(data)
            } else {
                serde_json::from_str(&data).unwrap_or_else(|e| panic!("{e}: {data}"))
            };
            (name, value)
        })
        .collect()
}

/// The text of the events named `name` (any name when `None`) at `pointer`, joined, and how
/// many non-empty pieces it came in.
fn joined(
    events: &[(Option<String>, Value)],
    name: Option<&str>,
    pointer: &str,
) -> (String, usize) {
    let pieces: Vec<&str> = events
        .iter()
        .filter(|(n, _)| name.is_none() || n.as_deref() == name)
        .filter_map(|(_, v)| v.pointer(pointer)?.as_str())
        .filter(|piece| !piece.is_empty())
        .collect();
    (pieces.concat(), pieces.len())
}

fn chat(stream: bool) -> Value {
    json!({"model": "gpt-4o", "stream": stream,
        "messages": [{"role": "user", "content": PROMPT}]})
}

fn messages(model: &str, stream: bool) -> Value {
    json!({"model": model, "max_tokens": 200, "stream": stream,
        "messages": [{"role": "user", "content": PROMPT}]})
}

fn responses(stream: bool) -> Value {
    json!({"model": "gpt-4o", "stream": stream, "input": PROMPT})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_split_over_stream_events_is_redacted_in_every_format() {
    // 24 bytes hold the 20-byte address whole and let the text before it go early.
    let (_mock, gw, _data) = start(&policy(24)).await;

    let chat_events = events(&post(&gw, "/v1/chat/completions", &chat(true)).await);
    let (text, pieces) = joined(&chat_events, None, "/choices/0/delta/content");
    assert_eq!(text, REDACTED);
    assert!(
        pieces >= 3,
        "text went out as it became safe: {pieces} pieces"
    );
    let finish = chat_events
        .iter()
        .position(|(_, v)| v["choices"][0]["finish_reason"] == "stop")
        .expect("a finish chunk");
    let last_text = chat_events
        .iter()
        .rposition(|(_, v)| {
            v.pointer("/choices/0/delta/content")
                .is_some_and(|c| c != "")
        })
        .unwrap();
    assert!(
        last_text < finish,
        "the held text comes before finish_reason"
    );
    assert_eq!(chat_events.last().unwrap().1, "[DONE]");

    let message_events =
        events(&post(&gw, "/v1/messages", &messages("claude-haiku-4-5", true)).await);
    let (text, _) = joined(&message_events, Some("content_block_delta"), "/delta/text");
    assert_eq!(text, REDACTED);
    let names: Vec<&str> = message_events
        .iter()
        .filter_map(|(n, _)| n.as_deref())
        .collect();
    let stop = names
        .iter()
        .position(|n| *n == "content_block_stop")
        .unwrap();
    let last_delta = names
        .iter()
        .rposition(|n| *n == "content_block_delta")
        .unwrap();
    assert!(last_delta < stop, "{names:?}");
    assert_eq!(names.last(), Some(&"message_stop"));

    let response_events = events(&post(&gw, "/v1/responses", &responses(true)).await);
    let (text, _) = joined(
        &response_events,
        Some("response.output_text.delta"),
        "/delta",
    );
    assert_eq!(text, REDACTED);
    let whole = |name: &str, pointer: &str| {
        let event = response_events
            .iter()
            .find(|(n, _)| n.as_deref() == Some(name));
        event.and_then(|(_, v)| v.pointer(pointer)?.as_str().map(str::to_owned))
    };
    assert_eq!(
        whole("response.output_text.done", "/text").as_deref(),
        Some(REDACTED)
    );
    assert_eq!(
        whole("response.completed", "/response/output/0/content/0/text").as_deref(),
        Some(REDACTED)
    );
    let numbers: Vec<u64> = response_events
        .iter()
        .filter_map(|(_, v)| v["sequence_number"].as_u64())
        .collect();
    assert!(numbers.windows(2).all(|w| w[1] == w[0] + 1), "{numbers:?}");

    for (_, value) in chat_events
        .iter()
        .chain(&message_events)
        .chain(&response_events)
    {
        assert!(!value.to_string().contains("john"), "{value}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_answers_are_redacted_alike_and_a_translated_stream_too() {
    let (_mock, gw, _data) = start(&policy(64)).await;
    let answer = post(&gw, "/v1/chat/completions", &chat(false)).await;
    assert_eq!(answer.json()["choices"][0]["message"]["content"], REDACTED);
    let answer = post(&gw, "/v1/messages", &messages("claude-haiku-4-5", false)).await;
    assert_eq!(answer.json()["content"][0]["text"], REDACTED);
    let answer = post(&gw, "/v1/responses", &responses(false)).await;
    assert_eq!(answer.json()["output"][0]["content"][0]["text"], REDACTED);
    assert!(answer
        .header("content-length")
        .is_none_or(|l| l == answer.body.len().to_string()));

    // A Messages client on an OpenAI model: the rules run on the translated (client's) stream.
    let reply = post(&gw, "/v1/messages", &messages("gpt-4o", true)).await;
    assert_eq!(reply.header("x-keygate-provider"), Some("openai"));
    let (text, _) = joined(&events(&reply), Some("content_block_delta"), "/delta/text");
    assert_eq!(text, REDACTED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_find_replace_rewrites_each_event_on_its_own_and_misses_the_split_address() {
    let (_mock, gw, _data) = start(&sse_find_replace_policy()).await;
    let chat_events = events(&post(&gw, "/v1/chat/completions", &chat(true)).await);
    let (text, pieces) = joined(&chat_events, None, "/choices/0/delta/content");
    assert_eq!(text, PROMPT, "no single event holds the whole address");
    assert!(pieces >= 10, "the mock split the answer: {pieces} pieces");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_sdks_read_redacted_streams() {
    let Some(python) = require(parts::python_sdks()) else {
        return;
    };
    let (_mock, gw, _data) = start(&policy(24)).await;
    let script = r#"
import os, sys, anthropic, openai
base, prompt, chunks = os.environ["BASE"], os.environ["PROMPT"], {"x-mock-chunks": os.environ["CHUNKS"]}
oai = openai.OpenAI(base_url=base + "/v1", api_key="unused", max_retries=0)
stream = oai.chat.completions.create(model="gpt-4o", stream=True, extra_headers=chunks,
                                     messages=[{"role": "user", "content": prompt}])
print("chat", "".join(c.choices[0].delta.content or "" for c in stream if c.choices))
with oai.responses.stream(model="gpt-4o", input=prompt, extra_headers=chunks) as stream:
    deltas = "".join(e.delta for e in stream if e.type == "response.output_text.delta")
    final = stream.get_final_response()
print("responses", deltas)
print("responses-final", final.output_text)
ant = anthropic.Anthropic(base_url=base, api_key="unused", max_retries=0)
with ant.messages.stream(model="claude-haiku-4-5", max_tokens=200, extra_headers=chunks,
                         messages=[{"role": "user", "content": prompt}]) as stream:
    text = "".join(stream.text_stream)
    final = stream.get_final_message()
print("messages", text)
print("messages-final", final.content[0].text)
"#;
    let output = tokio::process::Command::new(python)
        .args(["-c", script])
        .env("BASE", format!("http://{}", gw.addr))
        .env("PROMPT", PROMPT)
        .env("CHUNKS", CHUNKS)
        .env("NO_PROXY", "*")
        .output()
        .await
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for label in [
        "chat",
        "responses",
        "responses-final",
        "messages",
        "messages-final",
    ] {
        assert!(
            stdout
                .lines()
                .any(|line| line == format!("{label} {REDACTED}")),
            "{label}: {stdout}"
        );
    }
}
