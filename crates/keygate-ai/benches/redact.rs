//! The cost of `redact` on a streamed answer: a 200-chunk Chat Completions stream (and a
//! 200-delta Messages one) through a `StreamRedactor` with an e-mail and a card-number rule, at
//! the default hold-back and at a short one, and the same text redacted whole. Per-chunk cost =
//! the stream figure / 200.

use std::hint::black_box;
use std::sync::Arc;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use keygate_ai::redaction::DEFAULT_HOLD_BACK;
use keygate_ai::{Redaction, Rule, StreamRedactor, Surface};
use regex::bytes::Regex;
use serde_json::json;

const CHUNKS: usize = 200;

/// The text of delta `i`: words of about a token each, an address every 50 deltas.
fn delta(i: usize) -> String {
    if i % 50 == 25 {
        format!("ann{i}@example.com ")
    } else {
        format!("word{i} ")
    }
}

/// A Chat Completions stream of [`CHUNKS`] content chunks, the finish chunk and `[DONE]`.
fn chat_stream() -> Vec<Bytes> {
    let chunk = |delta: serde_json::Value, finish: serde_json::Value| {
        let chunk = json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": "gpt-4o",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], "usage": null});
        Bytes::from(format!("data: {chunk}\n\n"))
    };
    let mut chunks: Vec<Bytes> = (0..CHUNKS)
        .map(|i| chunk(json!({"content": delta(i)}), json!(null)))
        .collect();
    chunks.push(chunk(json!({}), json!("stop")));
    chunks.push(Bytes::from_static(b"data: [DONE]\n\n"));
    chunks
}

/// A Messages stream of [`CHUNKS`] text deltas in one block.
fn messages_stream() -> Vec<Bytes> {
    let event = |name: &str, data: serde_json::Value| {
        Bytes::from(format!("event: {name}\ndata: {data}\n\n"))
    };
    let mut chunks = vec![event(
        "content_block_start",
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
    )];
    chunks.extend((0..CHUNKS).map(|i| {
        event(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0,
                "delta": {"type": "text_delta", "text": delta(i)}}),
        )
    }));
    chunks.push(event(
        "content_block_stop",
        json!({"type": "content_block_stop", "index": 0}),
    ));
    chunks.push(event("message_stop", json!({"type": "message_stop"})));
    chunks
}

fn redaction(hold_back: usize) -> Arc<Redaction> {
    let rule = |from: &str, to: &str| Rule::new(Regex::new(from).unwrap(), to);
    Arc::new(Redaction::new(
        vec![
            rule(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}", "[email]"),
            rule(
                r"\b(\d{4})[- ]?\d{4}[- ]?\d{4}[- ]?(\d{4})\b",
                "$1-****-****-$2",
            ),
        ],
        hold_back,
    ))
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("redact_200_chunks");
    // "literal": one rule whose literal never occurs, for the cost of reading and re-encoding
    // the events alone.
    let literal = Arc::new(Redaction::new(
        vec![Rule::new(Regex::new("never-there").unwrap(), "")],
        DEFAULT_HOLD_BACK,
    ));
    for (name, surface, stream) in [
        ("chat", Surface::ChatCompletions, chat_stream()),
        ("messages", Surface::Messages, messages_stream()),
    ] {
        let total: usize = stream.iter().map(Bytes::len).sum();
        group.throughput(Throughput::Bytes(total as u64));
        let cases = [
            (
                format!("{name}/hold_{DEFAULT_HOLD_BACK}"),
                redaction(DEFAULT_HOLD_BACK),
            ),
            (format!("{name}/hold_32"), redaction(32)),
            (format!("{name}/literal"), literal.clone()),
        ];
        for (id, redaction) in cases {
            group.bench_function(id, |b| {
                b.iter(|| {
                    let mut redactor = StreamRedactor::new(redaction.clone(), surface).unwrap();
                    for chunk in &stream {
                        black_box(redactor.push(chunk));
                    }
                    black_box(redactor.finish())
                })
            });
        }
    }
    let text: String = (0..CHUNKS).map(delta).collect();
    let redaction = redaction(DEFAULT_HOLD_BACK);
    group.throughput(Throughput::Bytes(text.len() as u64));
    group.bench_function("whole_text", |b| {
        b.iter(|| black_box(redaction.text(black_box(&text))).len())
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
