use std::sync::Arc;

use regex::bytes::Regex;
use serde_json::{json, Value};

use super::*;
use crate::Surface;

const EMAIL: &str = r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}";

fn redaction(rules: &[(&str, &str)], hold_back: usize) -> Redaction {
    let rules = rules
        .iter()
        .map(|(from, to)| Rule::new(Regex::new(from).unwrap(), to))
        .collect();
    Redaction::new(rules, hold_back)
}

fn emails(hold_back: usize) -> Redaction {
    redaction(&[(EMAIL, "[email]")], hold_back)
}

/// Feeds `deltas` to one block; returns what each push sent, then what the flush sent.
fn stream(redaction: &Redaction, deltas: &[&str]) -> (Vec<String>, String) {
    let mut held = HeldText::default();
    let sent = deltas
        .iter()
        .map(|delta| {
            let mut out = Vec::new();
            held.push(redaction, delta, &mut out);
            assert!(held.held() <= redaction.hold_back(), "held {}", held.held());
            String::from_utf8(out).unwrap()
        })
        .collect();
    let mut rest = Vec::new();
    held.flush(redaction, &mut rest);
    (sent, String::from_utf8(rest).unwrap())
}

#[test]
fn a_match_split_over_two_deltas_is_replaced_before_any_of_it_is_sent() {
    let long = "x".repeat(40);
    let first = format!("{long} write to john.d");
    let (sent, rest) = stream(&emails(16), &[&first, "oe@example.com please", "!"]);
    // Only what lies 16 bytes before the end can go; the address's start waits.
    assert_eq!(sent[0], long);
    assert_eq!(
        sent[1], " write to [email]",
        "the whole match, past the cut"
    );
    assert_eq!(sent[2], "");
    assert_eq!(rest, " please!");
    assert!(!sent.concat().contains("john"));
}

#[test]
fn a_match_split_over_three_deltas() {
    let (sent, rest) = stream(&emails(64), &["mail john.d", "oe@exam", "ple.com now"]);
    assert_eq!(sent, ["", "", ""], "all within the hold-back");
    assert_eq!(rest, "mail [email] now");
    // The same deltas with a longer text after them: the match goes out as soon as it is safe.
    let tail = "y".repeat(80);
    let (sent, rest) = stream(&emails(64), &["mail john.d", "oe@exam", "ple.com ", &tail]);
    assert_eq!(sent[3], format!("mail [email] {}", "y".repeat(16)));
    assert_eq!(rest, "y".repeat(64));
}

#[test]
fn the_held_tail_never_splits_a_character() {
    // "é" is 2 bytes, "€" 3: a hold-back of 4 bytes falls inside them.
    let (sent, rest) = stream(&emails(4), &["aé€b", "€€"]);
    for piece in &sent {
        assert!(std::str::from_utf8(piece.as_bytes()).is_ok());
    }
    assert_eq!(sent[0], "aé", "€b (4 bytes) is held, not a cut €");
    assert_eq!(
        sent[1], "€b€",
        "the last 4 bytes start inside a €: 3 are held"
    );
    assert_eq!(rest, "€");
    // A match in multi-byte text across deltas.
    let (sent, rest) = stream(
        &redaction(&[("日本語", "[jp]")], 8),
        &["これは日", "本語です"],
    );
    assert_eq!(sent.concat() + &rest, "これは[jp]です");
}

#[test]
fn what_is_held_is_sent_redacted_at_the_end_of_the_block() {
    let (sent, rest) = stream(&emails(256), &["reach me at ", "ana@example.org"]);
    assert_eq!(sent.concat(), "");
    assert_eq!(rest, "reach me at [email]");
}

#[test]
fn memory_stays_bounded_by_the_hold_back() {
    let redaction = emails(32);
    let mut held = HeldText::default();
    let mut sent = 0;
    for i in 0..10_000 {
        let mut out = Vec::new();
        held.push(&redaction, &format!("word{i} "), &mut out);
        sent += out.len();
        assert!(held.held() <= 32);
    }
    let mut rest = Vec::new();
    held.flush(&redaction, &mut rest);
    assert_eq!(
        sent + rest.len(),
        (0..10_000)
            .map(|i| format!("word{i} ").len())
            .sum::<usize>()
    );
}

#[test]
fn a_match_longer_than_the_hold_back_is_replaced_in_parts() {
    let digits = redaction(&[(r"\d+", "#")], 4);
    let (sent, rest) = stream(&digits, &["1234567", "89"]);
    // "1234567" was sent as one match; "89", held, is another.
    assert_eq!(sent, ["#", ""]);
    assert_eq!(rest, "#");
}

#[test]
fn rules_run_together_earliest_match_first_and_groups_expand() {
    let rules = redaction(
        &[
            (EMAIL, "[email]"),
            (
                r"\b(\d{4})[- ]?\d{4}[- ]?\d{4}[- ]?(\d{4})\b",
                "$1-****-****-$2",
            ),
            ("john", "[name]"),
        ],
        64,
    );
    let text = "john paid 4111 1111 1111 1234, mail john@x.io";
    assert_eq!(
        rules.text(text),
        "[name] paid 4111-****-****-1234, mail [email]"
    );
    let pieces: Vec<String> = text.chars().map(String::from).collect();
    let pieces: Vec<&str> = pieces.iter().map(String::as_str).collect();
    let (sent, rest) = stream(&rules, &pieces);
    assert_eq!(sent.concat() + &rest, rules.text(text));
}

#[test]
fn word_boundaries_see_the_text_already_sent() {
    let word = redaction(&[(r"\bcat\b", "[pet]")], 3);
    let (sent, rest) = stream(&word, &["concat", "enate a cat"]);
    assert_eq!(sent.concat() + &rest, "concatenate a [pet]");
    assert_eq!(word.text("tomcat cat"), "tomcat [pet]");
}

#[test]
fn empty_matches_are_ignored() {
    let stars = redaction(&[("x*", "-")], 8);
    assert_eq!(stars.text("abxxc"), "ab-c");
    let (sent, rest) = stream(&stars, &["abx", "xc"]);
    assert_eq!(sent.concat() + &rest, "ab-c");
}

#[test]
fn text_without_a_match_is_borrowed() {
    assert!(matches!(
        emails(8).text("nothing here"),
        std::borrow::Cow::Borrowed(_)
    ));
}

/// Runs `events` through a redactor on `surface`, one byte at a time when `bytewise`.
fn redact_stream(surface: Surface, hold_back: usize, events: &str, bytewise: bool) -> String {
    let mut redactor = StreamRedactor::new(Arc::new(emails(hold_back)), surface).unwrap();
    let mut out = Vec::new();
    if bytewise {
        for byte in events.as_bytes() {
            out.extend_from_slice(&redactor.push(std::slice::from_ref(byte)));
        }
    } else {
        out.extend_from_slice(&redactor.push(events.as_bytes()));
    }
    out.extend_from_slice(&redactor.finish());
    assert_eq!(redactor.held(), 0);
    String::from_utf8(out).unwrap()
}

/// (event name, data JSON or string) of each event with data.
fn events(stream: &str) -> Vec<(Option<String>, Value)> {
    stream
        .replace("\r\n", "\n")
        .split("\n\n")
        .filter_map(|event| {
            let name = event
                .lines()
                .find_map(|l| l.strip_prefix("event: "))
                .map(str::to_owned);
            let data = event.lines().find_map(|l| l.strip_prefix("data: "))?;
            let value = serde_json::from_str(data).unwrap_or(Value::String(data.into()));
            Some((name, value))
        })
        .collect()
}

fn chat_chunk(delta: Value, finish: Value) -> String {
    let chunk = json!({"id": "c1", "object": "chat.completion.chunk", "created": 7, "model": "m",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
    format!("data: {chunk}\n\n")
}

#[test]
fn a_chat_stream_keeps_its_shape_and_loses_the_address() {
    let input = [
        ": comment kept\n\n".to_owned(),
        chat_chunk(json!({"role": "assistant", "content": ""}), Value::Null),
        chat_chunk(json!({"content": "write john.d"}), Value::Null),
        chat_chunk(json!({"content": "oe@exam"}), Value::Null),
        chat_chunk(json!({"content": "ple.com today"}), Value::Null),
        chat_chunk(json!({}), json!("stop")),
        "data: {\"id\":\"c1\",\"choices\":[],\"usage\":{\"prompt_tokens\":3}}\n\n".to_owned(),
        "data: [DONE]\n\n".to_owned(),
    ]
    .concat();
    for bytewise in [false, true] {
        let out = redact_stream(Surface::ChatCompletions, 64, &input, bytewise);
        assert!(out.starts_with(": comment kept\n\n"));
        assert!(out.ends_with("data: [DONE]\n\n"));
        let events = events(&out);
        assert_eq!(events.len(), 8, "one chunk added: {out}");
        let text: String = events
            .iter()
            .filter_map(|(_, v)| v.pointer("/choices/0/delta/content")?.as_str())
            .collect();
        assert_eq!(text, "write [email] today");
        let added = &events[4].1;
        assert_eq!(added["id"], "c1");
        assert_eq!(added["model"], "m");
        assert_eq!(
            added["choices"][0]["delta"]["content"],
            "write [email] today"
        );
        assert_eq!(added["choices"][0]["finish_reason"], Value::Null);
        assert_eq!(events[5].1["choices"][0]["finish_reason"], "stop");
        assert_eq!(events[6].1["usage"]["prompt_tokens"], 3);
    }
}

#[test]
fn a_chat_choice_without_finish_sends_its_text_before_done() {
    let input = [
        chat_chunk(json!({"content": "bob@example.com"}), Value::Null),
        "data: [DONE]\n\n".to_owned(),
    ]
    .concat();
    let out = redact_stream(Surface::ChatCompletions, 64, &input, false);
    let events = events(&out);
    assert_eq!(events[0].1["choices"][0]["delta"]["content"], "");
    assert_eq!(events[1].1["choices"][0]["delta"]["content"], "[email]");
    assert_eq!(events[2].1, "[DONE]");
}

#[test]
fn completions_text_is_redacted() {
    let chunk = |text: &str, finish: Value| {
        let chunk = json!({"id": "t", "object": "text_completion",
            "choices": [{"index": 0, "text": text, "finish_reason": finish}]});
        format!("data: {chunk}\n\n")
    };
    let input = [
        chunk("ana@exa", Value::Null),
        chunk("mple.com", json!("length")),
    ]
    .concat();
    let out = redact_stream(Surface::Completions, 64, &input, false);
    let events = events(&out);
    let text: String = events
        .iter()
        .filter_map(|(_, v)| v.pointer("/choices/0/text")?.as_str())
        .collect();
    assert_eq!(text, "[email]");
    assert_eq!(events[2].1["choices"][0]["finish_reason"], "length");
}

#[test]
fn a_messages_stream_sends_the_held_text_before_content_block_stop() {
    let event = |name: &str, data: Value| format!("event: {name}\ndata: {data}\n\n");
    let delta = |index: u64, text: &str| {
        event(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": index,
                "delta": {"type": "text_delta", "text": text}}),
        )
    };
    let input = [
        event(
            "message_start",
            json!({"type": "message_start", "message": {"id": "m"}}),
        ),
        event(
            "content_block_start",
            json!({"type": "content_block_start", "index": 0,
                "content_block": {"type": "text", "text": ""}}),
        ),
        delta(0, "john.d"),
        delta(0, "oe@exam"),
        "event: ping\r\ndata: {\"type\": \"ping\"}\r\n\r\n".to_owned(),
        delta(0, "ple.com"),
        event(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 1,
                "delta": {"type": "input_json_delta", "partial_json": "{\"to\":\"a@b.io\"}"}}),
        ),
        event(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": 0}),
        ),
        event("message_stop", json!({"type": "message_stop"})),
    ]
    .concat();
    let out = redact_stream(Surface::Messages, 64, &input, true);
    assert!(out.contains("event: ping\r\ndata: {\"type\": \"ping\"}\r\n\r\n"));
    let events = events(&out);
    let names: Vec<&str> = events.iter().filter_map(|(n, _)| n.as_deref()).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "ping",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_stop"
        ]
    );
    let text: String = events
        .iter()
        .filter(|(_, v)| v.pointer("/delta/type") == Some(&json!("text_delta")))
        .filter_map(|(_, v)| v.pointer("/delta/text")?.as_str())
        .collect();
    assert_eq!(text, "[email]");
    assert_eq!(events[7].1["index"], 0);
    // Tool input is not text: passed as it came.
    assert_eq!(events[6].1["delta"]["partial_json"], "{\"to\":\"a@b.io\"}");
}

#[test]
fn a_responses_stream_redacts_deltas_and_whole_texts_and_renumbers() {
    let event = |data: Value| {
        let name = data["type"].as_str().unwrap().to_owned();
        format!("event: {name}\ndata: {data}\n\n")
    };
    let delta = |seq: u64, text: &str| {
        event(
            json!({"type": "response.output_text.delta", "item_id": "msg_1",
            "output_index": 0, "content_index": 0, "delta": text, "sequence_number": seq}),
        )
    };
    let whole = "mail john.doe@example.com";
    let message = json!({"type": "message", "id": "msg_1", "role": "assistant",
        "content": [{"type": "output_text", "text": whole, "annotations": []}]});
    let input = [
        event(json!({"type": "response.created", "sequence_number": 0,
            "response": {"id": "r", "output": []}})),
        delta(1, "mail john.d"),
        delta(2, "oe@example.com"),
        event(
            json!({"type": "response.output_text.done", "item_id": "msg_1",
            "output_index": 0, "content_index": 0, "text": whole, "sequence_number": 3}),
        ),
        event(
            json!({"type": "response.content_part.done", "item_id": "msg_1",
            "output_index": 0, "content_index": 0, "sequence_number": 4,
            "part": {"type": "output_text", "text": whole}}),
        ),
        event(
            json!({"type": "response.output_item.done", "output_index": 0,
            "sequence_number": 5, "item": message}),
        ),
        event(json!({"type": "response.completed", "sequence_number": 6,
            "response": {"id": "r", "output": [message]}})),
    ]
    .concat();
    let out = redact_stream(Surface::Responses, 64, &input, false);
    let events = events(&out);
    let numbers: Vec<u64> = events
        .iter()
        .map(|(_, v)| v["sequence_number"].as_u64().unwrap())
        .collect();
    assert_eq!(numbers, [0, 1, 2, 3, 4, 5, 6, 7]);
    let text: String = events
        .iter()
        .filter(|(n, _)| n.as_deref() == Some("response.output_text.delta"))
        .map(|(_, v)| v["delta"].as_str().unwrap())
        .collect();
    let redacted = "mail [email]";
    assert_eq!(text, redacted);
    assert_eq!(events[3].1["item_id"], "msg_1");
    assert_eq!(events[4].1["text"], redacted);
    assert_eq!(events[5].1["part"]["text"], redacted);
    assert_eq!(events[6].1["item"]["content"][0]["text"], redacted);
    assert_eq!(
        events[7].1["response"]["output"][0]["content"][0]["text"],
        redacted
    );
}

#[test]
fn whole_answers_are_redacted_like_streams() {
    let redaction = emails(64);
    let cases = [
        (
            Surface::ChatCompletions,
            json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": "to a@b.io"}}]}),
            "/choices/0/message/content",
        ),
        (
            Surface::Completions,
            json!({"choices": [{"index": 0, "text": "to a@b.io"}]}),
            "/choices/0/text",
        ),
        (
            Surface::Messages,
            json!({"content": [{"type": "thinking", "thinking": "a@b.io"},
                {"type": "text", "text": "to a@b.io"}]}),
            "/content/1/text",
        ),
        (
            Surface::Responses,
            json!({"output": [{"type": "message", "content": [{"type": "output_text", "text": "to a@b.io"}]}]}),
            "/output/0/content/0/text",
        ),
    ];
    for (surface, answer, pointer) in cases {
        let body = redaction
            .answer(surface, answer.to_string().as_bytes())
            .unwrap();
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body.pointer(pointer).unwrap(), "to [email]", "{surface:?}");
    }
    let thinking = json!({"content": [{"type": "thinking", "thinking": "a@b.io"}]});
    assert_eq!(
        redaction.answer(Surface::Messages, thinking.to_string().as_bytes()),
        None
    );
    assert_eq!(redaction.answer(Surface::Messages, b"not json"), None);
}

#[test]
fn only_the_text_field_of_an_event_changes() {
    let event = concat!(
        "id: 7\r\n",
        "data: {\"z\":1, \"choices\" : [ {\"delta\":{\"content\":\"mail a@b.io ok\"} , ",
        "\"index\":0 } ],\"a\":[\"}\"],\"s\":\"caf\\u00e9\"}\r\n\r\n"
    );
    let mut redactor = StreamRedactor::new(Arc::new(emails(2)), Surface::ChatCompletions).unwrap();
    let out = redactor.push(event.as_bytes());
    assert_eq!(
        String::from_utf8(out.to_vec()).unwrap(),
        event.replace("mail a@b.io ok", "mail [email] ")
    );
    assert_eq!(redactor.held(), 2);
}

#[test]
fn choices_are_separate_texts() {
    let chunk = |choices: Value| format!("data: {}\n\n", json!({"id": "c", "choices": choices}));
    let delta = |index: u64, text: &str| json!({"index": index, "delta": {"content": text}});
    let input = [
        chunk(json!([delta(0, "a@exa"), delta(1, "b@exa")])),
        chunk(json!([delta(1, "mple.com"), delta(0, "mple.org")])),
        chunk(json!([
            {"index": 0, "delta": {}, "finish_reason": "stop"},
            {"index": 1, "delta": {}, "finish_reason": "stop"}
        ])),
        "data: [DONE]\n\n".to_owned(),
    ]
    .concat();
    let out = redact_stream(Surface::ChatCompletions, 32, &input, false);
    let events = events(&out);
    let added = &events[2].1["choices"];
    assert_eq!(
        added[0],
        json!({"index": 0, "delta": {"content": "[email]"}, "finish_reason": null, "logprobs": null})
    );
    assert_eq!(added[1]["delta"]["content"], "[email]");
    assert_eq!(events[3].1["choices"][1]["finish_reason"], "stop");
    assert!(!out.contains("exa"), "{out}");
}

#[test]
fn a_messages_text_block_that_opens_with_text_is_redacted_too() {
    let start = json!({"type": "content_block_start", "index": 0,
        "content_block": {"type": "text", "text": "to ann@exa"}});
    let delta = json!({"type": "content_block_delta", "index": 0,
        "delta": {"type": "text_delta", "text": "mple.com"}});
    let stop = json!({"type": "content_block_stop", "index": 0});
    let input = format!(
        "event: content_block_start\ndata: {start}\n\nevent: content_block_delta\ndata: {delta}\n\nevent: content_block_stop\ndata: {stop}\n\n"
    );
    let out = redact_stream(Surface::Messages, 64, &input, false);
    let events = events(&out);
    assert_eq!(events[0].1["content_block"]["text"], "");
    assert_eq!(events[1].1["delta"]["text"], "");
    assert_eq!(events[2].1["delta"]["text"], "to [email]");
    assert_eq!(events[3].0.as_deref(), Some("content_block_stop"));
}
