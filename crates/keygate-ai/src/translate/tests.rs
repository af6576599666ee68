//! Translation across formats: round trips, sealed signatures, estimated usage.
//!
//! The round-trip properties generate random neutral requests, answers and streams with a small
//! deterministic PRNG (fixed seeds, no extra dependencies), restricted to what both formats of a
//! pair can carry and already in the canonical form of the format they start from (each choice
//! is documented where it is made). A body written in format A, translated to B and back, must
//! then read exactly as it did before.

use serde_json::{json, Map, Value};

use super::chat::{Chat, ChatDecoder, ChatEncoder};
use super::events::EventSplitter;
use super::ir::{
    Codec, Delta, Finish, Image, ImageSource, Message, Part, Reasoning, Removed, Request, Response,
    Role, StreamDecoder, StreamEncoder, TextPart, Tool, ToolChoice, Usage,
};
use super::messages::{Messages, MessagesDecoder, MessagesEncoder};
use super::responses::{Responses, ResponsesDecoder, ResponsesEncoder};
use super::{error, request, response, StreamTranslator};
use crate::Surface;

const FORMATS: [Surface; 3] = [
    Surface::Messages,
    Surface::ChatCompletions,
    Surface::Responses,
];

/// Random cases per ordered pair of formats (each property).
const CASES: u64 = 300;

// ---- A deterministic PRNG -------------------------------------------------------------------

/// xorshift64, seeded through splitmix64 so that neighbouring seeds give unrelated streams.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Rng((z ^ (z >> 31)) | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// `0..n`.
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i + 1));
        }
    }
}

/// The seed of case `case` of the pair `home` → `away`.
fn seed(property: u64, home: Surface, away: Surface, case: u64) -> u64 {
    let index = |s: Surface| FORMATS.iter().position(|f| *f == s).unwrap() as u64;
    (property << 48) ^ (index(home) << 40) ^ (index(away) << 32) ^ case
}

/// Words texts are made of: ASCII, multi-byte UTF-8 (so that chunk boundaries fall inside
/// characters), JSON and SSE syntax, escapes and whitespace.
const WORDS: &[&str] = &[
    "hello",
    "world",
    "the",
    "weather",
    "in",
    "Paris",
    "42",
    "-7.5",
    "é",
    "naïve",
    "日本語",
    "🦀",
    "👩‍💻",
    "—",
    "∑",
    "\"quoted\"",
    "back\\slash",
    "tab\there",
    "line\nbreak",
    "\n\n",
    "\r\n",
    "  ",
    "{\"json\": true}",
    "data: [DONE]",
    "event: message_stop",
    "<|im_end|>",
    "\u{0}",
    "\u{7f}",
];

fn text(rng: &mut Rng) -> String {
    let words = rng.range(1, 8);
    let mut text = String::new();
    for i in 0..words {
        if i > 0 && rng.chance(70) {
            text.push(' ');
        }
        text.push_str(rng.pick::<&str>(WORDS));
    }
    text
}

fn plain(text: String) -> TextPart {
    TextPart { text, cache: None }
}

fn text_part(text: String) -> Part {
    Part::Text(plain(text))
}

fn hex(rng: &mut Rng, len: usize) -> String {
    (0..len)
        .map(|_| char::from(b"0123456789abcdef"[rng.below(16)]))
        .collect()
}

const TOOL_NAMES: &[&str] = &[
    "get_weather",
    "search",
    "read_file",
    "run_shell",
    "calc",
    "lookup-user",
    "Edit",
    "mcp__fs__write",
];

const KEYS: &[&str] = &[
    "city",
    "query",
    "path",
    "n",
    "ünits",
    "with space",
    "a",
    "z",
];

/// A random JSON value, at most `depth` levels deep.
fn json_value(rng: &mut Rng, depth: u32) -> Value {
    match rng.below(if depth == 0 { 6 } else { 8 }) {
        0 => Value::Null,
        1 => rng.chance(50).into(),
        2 => (rng.range(0, 2_000_000) as i64 - 1_000_000).into(),
        3 => rng.pick(&[0.5, -0.25, 1.5, 1e21, 3.0e-7]).to_owned().into(),
        4 => u64::MAX.into(),
        5 => text(rng).into(),
        6 => (0..rng.below(3))
            .map(|_| json_value(rng, depth - 1))
            .collect(),
        _ => json_object(rng, depth - 1),
    }
}

fn json_object(rng: &mut Rng, depth: u32) -> Value {
    let mut object = Map::new();
    for _ in 0..rng.below(4) {
        object.insert(rng.pick(KEYS).to_string(), json_value(rng, depth));
    }
    object.into()
}

/// Tool-call arguments: a JSON object as `serde_json` writes it. Canonical: Messages carries
/// arguments as a parsed `input` object and writes it back this way.
fn arguments(rng: &mut Rng) -> String {
    json_object(rng, 2).to_string()
}

/// An object schema, with the `type` Messages would add if it were missing (canonical).
fn schema(rng: &mut Rng) -> Value {
    let kinds = [
        json!({"type": "string"}),
        json!({"type": "integer", "minimum": 0}),
        json!({"type": "array", "items": {"type": "string"}}),
        json!({"type": "string", "enum": ["c", "f"], "description": "Unit"}),
        json!({"type": "object", "properties": {"x": {"type": "number"}}, "required": ["x"]}),
    ];
    let mut properties = Map::new();
    let mut required = Vec::new();
    for _ in 0..rng.below(4) {
        let key = rng.pick(KEYS).to_string();
        if rng.chance(50) {
            required.push(Value::from(key.clone()));
        }
        properties.insert(key, rng.pick(&kinds).clone());
    }
    required.dedup();
    let mut schema = json!({"type": "object", "properties": properties});
    if !required.is_empty() {
        schema["required"] = required.into();
    }
    if rng.chance(30) {
        schema["additionalProperties"] = false.into();
    }
    schema
}

// ---- Per-format helpers ---------------------------------------------------------------------

/// An ordered pair of formats: a body starts in `home` and goes through `away`.
#[derive(Debug, Clone, Copy)]
struct Pair {
    home: Surface,
    away: Surface,
}

impl Pair {
    fn has(self, surface: Surface) -> bool {
        self.home == surface || self.away == surface
    }

    fn all() -> Vec<Pair> {
        let mut pairs = Vec::new();
        for home in FORMATS {
            for away in FORMATS {
                pairs.push(Pair { home, away });
            }
        }
        pairs
    }
}

fn encode_request(surface: Surface, request: &Request) -> (Map<String, Value>, Removed) {
    let mut removed = Removed::default();
    let body = match surface {
        Surface::Messages => Messages::encode_request(request, &mut removed),
        Surface::ChatCompletions => Chat::encode_request(request, &mut removed),
        Surface::Responses => Responses::encode_request(request, &mut removed),
        other => unreachable!("{other}"),
    };
    (body, removed)
}

fn decode_request(surface: Surface, body: &Map<String, Value>) -> (Request, Removed) {
    let mut removed = Removed::default();
    let request = match surface {
        Surface::Messages => Messages::decode_request(body, &mut removed),
        Surface::ChatCompletions => Chat::decode_request(body, &mut removed),
        Surface::Responses => Responses::decode_request(body, &mut removed),
        other => unreachable!("{other}"),
    };
    let request = request.unwrap_or_else(|e| panic!("{surface} request {body:?}: {e}"));
    (request, removed)
}

fn encode_response(surface: Surface, response: &Response) -> Value {
    match surface {
        Surface::Messages => Messages::encode_response(response),
        Surface::ChatCompletions => Chat::encode_response(response),
        Surface::Responses => Responses::encode_response(response),
        other => unreachable!("{other}"),
    }
}

fn decode_response(surface: Surface, body: &[u8]) -> Response {
    let value: Value = serde_json::from_slice(body).expect("an answer is JSON");
    let response = match surface {
        Surface::Messages => Messages::decode_response(&value),
        Surface::ChatCompletions => Chat::decode_response(&value),
        Surface::Responses => Responses::decode_response(&value),
        other => unreachable!("{other}"),
    };
    response.unwrap_or_else(|e| panic!("{surface} answer {value}: {e}"))
}

fn encode_stream(surface: Surface, deltas: &[Delta]) -> Vec<u8> {
    fn run(mut encoder: impl StreamEncoder, deltas: &[Delta]) -> Vec<u8> {
        let mut out = Vec::new();
        for delta in deltas {
            encoder.delta(delta.clone(), &mut out);
        }
        out
    }
    match surface {
        Surface::Messages => run(MessagesEncoder::new(), deltas),
        Surface::ChatCompletions => run(ChatEncoder::new(true), deltas),
        Surface::Responses => run(ResponsesEncoder::new(), deltas),
        other => unreachable!("{other}"),
    }
}

fn decode_stream(surface: Surface, bytes: &[u8]) -> Vec<Delta> {
    fn run<D: StreamDecoder>(bytes: &[u8]) -> Vec<Delta> {
        let mut decoder = D::default();
        let mut splitter = EventSplitter::default();
        let mut out = Vec::new();
        let mut emit = |name: Option<&str>, data: &str| decoder.event(name, data, &mut out);
        splitter.feed(bytes, &mut emit);
        splitter.end(&mut emit);
        out
    }
    match surface {
        Surface::Messages => run::<MessagesDecoder>(bytes),
        Surface::ChatCompletions => run::<ChatDecoder>(bytes),
        Surface::Responses => run::<ResponsesDecoder>(bytes),
        other => unreachable!("{other}"),
    }
}

/// `body` as it arrives over the wire: written as JSON text and read back.
fn wire(body: &Map<String, Value>) -> Map<String, Value> {
    serde_json::from_str(&serde_json::to_string(body).unwrap()).unwrap()
}

fn pretty(body: &Map<String, Value>) -> String {
    serde_json::to_string(body).unwrap()
}

// ---- Random requests ------------------------------------------------------------------------

fn random_tools(rng: &mut Rng, pair: Pair) -> Vec<Tool> {
    let mut names: Vec<&str> = TOOL_NAMES.to_vec();
    rng.shuffle(&mut names);
    names.truncate(rng.below(4));
    names
        .into_iter()
        .map(|name| Tool {
            name: name.to_owned(),
            description: rng.chance(70).then(|| text(rng)),
            parameters: schema(rng),
            // Canonical: Messages has no `strict` (it reads as not strict, `None`); Responses
            // always sends it (`None` reads back as `Some(false)`); Chat carries all three.
            strict: if pair.has(Surface::Messages) {
                (pair.home == Surface::Responses).then_some(false)
            } else if pair.has(Surface::Responses) {
                Some(rng.chance(50))
            } else {
                *rng.pick(&[None, Some(false), Some(true)])
            },
            // Only Messages and Chat have prompt-cache breakpoints, and Chat none on tools.
            cache: None,
        })
        .collect()
}

/// A prompt-cache breakpoint, sometimes, on system text, user text and images, and assistant
/// text. Only Messages carries them: Responses has none, and requests for Chat providers carry
/// none (Chat reads the `cache_control` extension from clients, but does not write it).
fn cache(rng: &mut Rng, pair: Pair) -> Option<Value> {
    if pair.home != Surface::Messages || pair.away != Surface::Messages || !rng.chance(25) {
        return None;
    }
    Some(
        rng.pick(&[
            json!({"type": "ephemeral"}),
            json!({"type": "ephemeral", "ttl": "1h"}),
        ])
        .clone(),
    )
}

fn cached_text(rng: &mut Rng, pair: Pair) -> TextPart {
    TextPart {
        text: text(rng),
        cache: cache(rng, pair),
    }
}

/// A user turn's text and images (at least one part).
fn user_content(rng: &mut Rng, pair: Pair) -> Vec<Part> {
    let mut parts = Vec::new();
    for _ in 0..rng.range(1, 3) {
        let part = match rng.below(4) {
            0 => Part::Image(Image {
                source: ImageSource::Url(format!(
                    "https://example.com/{}.{}",
                    hex(rng, 6),
                    rng.pick(&["png", "jpg"])
                )),
                cache: cache(rng, pair),
            }),
            1 => Part::Image(Image {
                source: ImageSource::Base64 {
                    media_type: rng
                        .pick(&["image/png", "image/jpeg", "image/webp"])
                        .to_string(),
                    data: format!("iVBORw0KGgo{}=", hex(rng, 12)),
                },
                cache: cache(rng, pair),
            }),
            _ => Part::Text(cached_text(rng, pair)),
        };
        parts.push(part);
    }
    parts
}

/// The conversation, as format `pair.home` reads its own encoding of it.
///
/// Canonical choices:
/// - turns alternate user, assistant, user, ... (Messages merges consecutive turns of one
///   role), starting with the user, and no part is empty (Messages drops empty texts);
/// - every tool result answers a call of the assistant turn just before, holds one text (Chat
///   joins several into one string) and is an error only between Messages and Messages;
/// - a user turn holds the results first and then, maybe, text and images: Messages sorts
///   `tool_result` blocks first, and is one message there; Chat (`tool` messages, then a
///   `user` message) and Responses (`function_call_output` items, then a message item) read it
///   back as two user messages, so for them it is generated as two;
/// - an assistant turn holds its texts before its calls when Chat is in the pair (Chat keeps
///   `content` and `tool_calls` apart); Messages and Responses keep any order.
fn random_conversation(rng: &mut Rng, pair: Pair, tools: &[Tool]) -> Vec<Message> {
    let mut messages = Vec::new();
    let mut pending: Vec<String> = Vec::new();
    let mut calls = 0;
    for turn in 0..rng.range(1, 7) {
        if turn % 2 == 0 {
            let results: Vec<Part> = pending
                .drain(..)
                .map(|id| Part::ToolResult {
                    id,
                    content: vec![text_part(text(rng))],
                    is_error: pair.home == Surface::Messages
                        && pair.away == Surface::Messages
                        && rng.chance(30),
                })
                .collect();
            let content = if results.is_empty() || rng.chance(30) {
                user_content(rng, pair)
            } else {
                Vec::new()
            };
            if pair.home == Surface::Messages {
                let mut all = results;
                all.extend(content);
                messages.push(Message {
                    role: Role::User,
                    content: all,
                });
            } else {
                for part in [results, content] {
                    if !part.is_empty() {
                        messages.push(Message {
                            role: Role::User,
                            content: part,
                        });
                    }
                }
            }
        } else {
            let mut texts: Vec<Part> = (0..rng.below(3))
                .map(|_| Part::Text(cached_text(rng, pair)))
                .collect();
            let mut called = Vec::new();
            let wanted = rng.below(3);
            let wanted = if texts.is_empty() {
                wanted.max(1)
            } else {
                wanted
            };
            for _ in 0..wanted {
                calls += 1;
                let id = format!(
                    "{}{calls}{}",
                    rng.pick(&["call_", "toolu_", "fc-", "x"]),
                    hex(rng, 8)
                );
                let name = match tools {
                    [] => rng.pick(TOOL_NAMES).to_string(),
                    tools => rng.pick(tools).name.clone(),
                };
                pending.push(id.clone());
                called.push(Part::ToolCall {
                    id,
                    name,
                    arguments: arguments(rng),
                });
            }
            texts.extend(called);
            if !pair.has(Surface::ChatCompletions) {
                rng.shuffle(&mut texts);
            }
            messages.push(Message {
                role: Role::Assistant,
                content: texts,
            });
        }
    }
    messages
}

/// A client request both formats of `pair` can carry, in `pair.home`'s canonical form.
fn random_request(rng: &mut Rng, pair: Pair) -> Request {
    let messages_in = pair.has(Surface::Messages);
    let tools = random_tools(rng, pair);
    // Canonical: a tool choice only with tools (Messages and Chat drop it without them).
    let tool_choice = (!tools.is_empty() && rng.chance(70)).then(|| match rng.below(4) {
        0 => ToolChoice::Auto,
        1 => ToolChoice::None,
        2 => ToolChoice::Required,
        _ => ToolChoice::Tool(rng.pick(&tools).name.clone()),
    });
    // Canonical: Messages says it as `disable_parallel_tool_use`, inside a tool choice that
    // has the field (auto, any, tool); without a choice it would add `auto`.
    let parallel_possible = !tools.is_empty()
        && (!messages_in
            || matches!(
                tool_choice,
                Some(ToolChoice::Auto | ToolChoice::Required | ToolChoice::Tool(_))
            ));
    let messages = random_conversation(rng, pair, &tools);
    Request {
        model: rng
            .pick(&["claude-sonnet-4-5", "gpt-5", "qwen3:8b", "m"])
            .to_string(),
        // Canonical: one system text (Chat and Responses join several into one string), not
        // empty (Messages drops empty system text).
        system: if rng.chance(60) {
            vec![cached_text(rng, pair)]
        } else {
            Vec::new()
        },
        messages,
        tools,
        tool_choice,
        parallel_tool_calls: (parallel_possible && rng.chance(40)).then(|| rng.chance(50)),
        // Canonical: Messages requires a limit (the translation fills one in), and Responses
        // raises it to at least 16.
        max_tokens: (messages_in || rng.chance(60)).then(|| rng.range(16, 64_000)),
        // Decimals as clients send them, within Anthropic's range.
        temperature: rng.chance(50).then(|| rng.range(0, 100) as f64 / 100.0),
        top_p: rng.chance(40).then(|| rng.range(1, 100) as f64 / 100.0),
        // Responses has no stop sequences.
        stop: if !pair.has(Surface::Responses) && rng.chance(40) {
            (0..rng.range(1, 4)).map(|_| text(rng)).collect()
        } else {
            Vec::new()
        },
        stream: rng.chance(50),
        // Messages turns an effort into a budget and back (lossy): reasoning only between the
        // OpenAI formats, always with an effort (Responses may leave it out, Chat may not).
        reasoning: (!messages_in && rng.chance(40)).then(|| Reasoning {
            budget_tokens: None,
            effort: Some(rng.pick(&["minimal", "low", "medium", "high"]).to_string()),
        }),
        user: rng.chance(40).then(|| format!("user-{}", hex(rng, 6))),
    }
}

#[test]
fn requests_survive_a_round_trip_through_every_format() {
    for pair in Pair::all() {
        let (a, b) = (pair.home, pair.away);
        for case in 0..CASES {
            let mut rng = Rng::new(seed(1, a, b, case));
            let ir = random_request(&mut rng, pair);
            let (body, removed) = encode_request(a, &ir);
            assert!(removed.is_empty(), "{a} case {case}: {removed:?}");
            let (direct, removed) = decode_request(a, &wire(&body));
            assert!(removed.is_empty(), "{a} case {case}: {removed:?}");
            // The generator's canonical form is the home format's own reading.
            assert_eq!(
                direct,
                ir,
                "{a} case {case} is not canonical: {}",
                pretty(&body)
            );

            let there = request(a, b, &wire(&body), 4096)
                .unwrap_or_else(|e| panic!("{a}->{b} case {case}: {e}\n{}", pretty(&body)));
            assert!(
                there.removed.is_empty(),
                "{a}->{b} case {case} removed {:?}\nfrom {}\nto {}",
                there.removed,
                pretty(&body),
                pretty(&there.body)
            );
            let back = request(b, a, &wire(&there.body), 4096)
                .unwrap_or_else(|e| panic!("{b}->{a} case {case}: {e}\n{}", pretty(&there.body)));
            assert!(
                back.removed.is_empty(),
                "{b}->{a} case {case} removed {:?}\nfrom {}\nto {}",
                back.removed,
                pretty(&there.body),
                pretty(&back.body)
            );
            let (round, _) = decode_request(a, &wire(&back.body));
            assert_eq!(
                round,
                direct,
                "{a}->{b}->{a} case {case}\ninput: {}\nvia:   {}\nback:  {}",
                pretty(&body),
                pretty(&there.body),
                pretty(&back.body)
            );
        }
    }
}

// ---- Random answers -------------------------------------------------------------------------

/// A finish both formats carry. Canonical: the OpenAI formats have no stop sequence (it reads
/// as `stop`) and no `pause_turn`; Responses always has a status (no finish reads as
/// completed) and says a completed answer used tools when it holds calls, stopped otherwise.
fn random_finish(rng: &mut Rng, pair: Pair, calls: bool) -> Option<Finish> {
    let mut finishes = vec![
        None,
        Some(Finish::Stop),
        Some(Finish::Length),
        Some(Finish::ToolUse),
        Some(Finish::ContentFilter),
    ];
    if !pair.has(Surface::ChatCompletions) && !pair.has(Surface::Responses) {
        finishes.extend([
            Some(Finish::StopSequence(Some(text(rng)))),
            Some(Finish::StopSequence(None)),
            Some(Finish::Pause),
        ]);
    }
    let finish = rng.pick(&finishes).clone();
    if !pair.has(Surface::Responses) {
        return finish;
    }
    Some(match finish {
        None | Some(Finish::Stop | Finish::ToolUse) if calls => Finish::ToolUse,
        None | Some(Finish::Stop | Finish::ToolUse) => Finish::Stop,
        Some(other) => other,
    })
}

/// Usage both formats carry. Canonical: input includes the cache counts; Chat has no cache
/// writes, Messages no reasoning count.
fn random_usage(rng: &mut Rng, pair: Pair) -> Usage {
    let cache_read = if rng.chance(50) {
        rng.range(0, 50_000)
    } else {
        0
    };
    let cache_write = if !pair.has(Surface::ChatCompletions) && rng.chance(50) {
        rng.range(0, 50_000)
    } else {
        0
    };
    let output = rng.range(0, 30_000);
    Usage {
        input: cache_read + cache_write + rng.range(0, 200_000),
        output,
        cache_read,
        cache_write,
        reasoning: if !pair.has(Surface::Messages) && rng.chance(50) {
            rng.range(0, output)
        } else {
            0
        },
    }
}

fn call_id(rng: &mut Rng, n: usize) -> String {
    format!(
        "{}{n}_{}",
        rng.pick(&["call_", "toolu_01", "fc-"]),
        hex(rng, 10)
    )
}

/// Thinking without a signature, as `pair.home` reads it: Messages always writes `signature`
/// (empty for thinking from another format), the OpenAI formats have none then. Signatures
/// are sealed per hop, so a round trip cannot bring one back as it was: they have their own
/// tests below.
fn unsigned_thinking(rng: &mut Rng, pair: Pair) -> Part {
    Part::Thinking {
        text: text(rng),
        signature: (pair.home == Surface::Messages).then(String::new),
    }
}

/// A whole answer in `pair.home`'s canonical form. Canonical: Messages has no `created`; Chat
/// holds at most one thinking (`reasoning_content`) first, one text (all text is joined into
/// `content`), not empty, next, and its calls last; Messages and Responses keep thinking, texts
/// and calls in any order.
fn random_response(rng: &mut Rng, pair: Pair) -> Response {
    let mut content = Vec::new();
    if pair.has(Surface::ChatCompletions) {
        if rng.chance(40) {
            content.push(unsigned_thinking(rng, pair));
        }
        if rng.chance(70) {
            content.push(text_part(text(rng)));
        }
        for n in 0..rng.below(4) {
            content.push(Part::ToolCall {
                id: call_id(rng, n),
                name: rng.pick(TOOL_NAMES).to_string(),
                arguments: arguments(rng),
            });
        }
    } else {
        for n in 0..rng.below(5) {
            content.push(if rng.chance(20) {
                unsigned_thinking(rng, pair)
            } else if rng.chance(50) {
                text_part(text(rng))
            } else {
                Part::ToolCall {
                    id: call_id(rng, n),
                    name: rng.pick(TOOL_NAMES).to_string(),
                    arguments: arguments(rng),
                }
            });
        }
    }
    let calls = content.iter().any(|p| matches!(p, Part::ToolCall { .. }));
    Response {
        id: format!(
            "{}{}",
            rng.pick(&["msg_01", "chatcmpl-", "resp_"]),
            hex(rng, 12)
        ),
        model: rng
            .pick(&["claude-opus-4-1", "gpt-4.1", "llama"])
            .to_string(),
        created: if pair.has(Surface::Messages) {
            0
        } else {
            rng.range(1, 2_000_000_000)
        },
        finish: random_finish(rng, pair, calls),
        usage: random_usage(rng, pair),
        content,
    }
}

#[test]
fn answers_survive_a_round_trip_through_every_format() {
    for pair in Pair::all() {
        let (a, b) = (pair.home, pair.away);
        for case in 0..CASES {
            let mut rng = Rng::new(seed(2, a, b, case));
            let ir = random_response(&mut rng, pair);
            let body = encode_response(a, &ir).to_string().into_bytes();
            let direct = decode_response(a, &body);
            assert_eq!(direct, ir, "{a} case {case} is not canonical");
            let there =
                response(a, b, &body, 0).unwrap_or_else(|e| panic!("{a}->{b} case {case}: {e}"));
            assert!(!there.estimated, "{a}->{b} case {case}: usage was reported");
            let back = response(b, a, &there.body, 0)
                .unwrap_or_else(|e| panic!("{b}->{a} case {case}: {e}"));
            assert!(!back.estimated, "{b}->{a} case {case}: usage was reported");
            let round = decode_response(a, &back.body);
            assert_eq!(
                round,
                direct,
                "{a}->{b}->{a} case {case}\ninput: {}\nvia:   {}\nback:  {}",
                String::from_utf8_lossy(&body),
                String::from_utf8_lossy(&there.body),
                String::from_utf8_lossy(&back.body)
            );
        }
    }
}

// ---- Random streams -------------------------------------------------------------------------

/// What a client accumulates from a stream.
#[derive(Debug, Default, PartialEq)]
struct Accumulated {
    starts: Vec<(String, String, u64)>,
    /// Text, thinking and calls in order; consecutive text (or thinking) deltas are one item.
    items: Vec<Item>,
    signatures: Vec<String>,
    /// The last usage (a later one replaces an earlier one).
    usage: Option<Usage>,
    finishes: Vec<Finish>,
    errors: Vec<(String, String)>,
    done: usize,
    /// Argument fragments of calls never announced.
    orphans: Vec<(usize, String)>,
}

#[derive(Debug, PartialEq)]
enum Item {
    Text(String),
    Thinking(String),
    Call {
        index: usize,
        id: String,
        name: String,
        arguments: String,
    },
}

fn accumulate(deltas: &[Delta]) -> Accumulated {
    let mut acc = Accumulated::default();
    for delta in deltas {
        match delta.clone() {
            Delta::Start { id, model, created } => acc.starts.push((id, model, created)),
            Delta::Text(text) => match acc.items.last_mut() {
                Some(Item::Text(all)) => all.push_str(&text),
                _ => acc.items.push(Item::Text(text)),
            },
            Delta::Thinking(text) => match acc.items.last_mut() {
                Some(Item::Thinking(all)) => all.push_str(&text),
                _ => acc.items.push(Item::Thinking(text)),
            },
            Delta::ThinkingSignature(signature) => acc.signatures.push(signature),
            Delta::ToolCall { index, id, name } => acc.items.push(Item::Call {
                index,
                id,
                name,
                arguments: String::new(),
            }),
            Delta::ToolArguments { index, fragment } => {
                let call = acc.items.iter_mut().rev().find_map(|item| match item {
                    Item::Call {
                        index: i,
                        arguments,
                        ..
                    } if *i == index => Some(arguments),
                    _ => None,
                });
                match call {
                    Some(arguments) => arguments.push_str(&fragment),
                    None => acc.orphans.push((index, fragment)),
                }
            }
            Delta::Usage(usage) => acc.usage = Some(usage),
            Delta::Finish(finish) => acc.finishes.push(finish),
            Delta::Error { kind, message } => acc.errors.push((kind, message)),
            Delta::Done => acc.done += 1,
        }
    }
    acc
}

/// `text` cut into 1 to 3 pieces at character boundaries.
fn fragments(rng: &mut Rng, text: &str) -> Vec<String> {
    let bounds: Vec<usize> = (1..text.len())
        .filter(|i| text.is_char_boundary(*i))
        .collect();
    let mut cuts: Vec<usize> = (0..rng.below(3))
        .filter(|_| !bounds.is_empty())
        .map(|_| *rng.pick(&bounds))
        .collect();
    cuts.sort_unstable();
    cuts.dedup();
    let mut pieces = Vec::new();
    let mut at = 0;
    for cut in cuts.into_iter().chain([text.len()]) {
        pieces.push(text[at..cut].to_owned());
        at = cut;
    }
    pieces
}

/// A stream as provider `pair.home` would send it, with content both formats carry.
///
/// Canonical choices:
/// - every fragment is non-empty (encoders skip empty ones);
/// - a tool call's arguments stream right after it, before anything else (Messages has one
///   content block open at a time, and Responses closes calls when text follows);
/// - call ids are unique (Responses derives item ids from them);
/// - Messages' `message_start` always carries a usage (zero until `message_delta`), which its
///   reader passes on;
/// - an error or a broken-off stream comes right after the content: usage and finish wait for
///   the end in Messages and Responses;
/// - finish and usage as for whole answers; a Messages stream has no `created`.
fn random_stream(rng: &mut Rng, pair: Pair) -> Vec<Delta> {
    let mut deltas = vec![Delta::Start {
        id: format!(
            "{}{}",
            rng.pick(&["msg_", "chatcmpl-", "resp_"]),
            hex(rng, 8)
        ),
        model: rng
            .pick(&["claude-haiku-4-5", "gpt-5-mini", "llama"])
            .to_string(),
        created: if pair.has(Surface::Messages) {
            0
        } else {
            rng.range(1, 2_000_000_000)
        },
    }];
    if pair.home == Surface::Messages {
        deltas.push(Delta::Usage(Usage::default()));
    }
    let mut calls = 0;
    for _ in 0..rng.below(6) {
        match rng.below(3) {
            0 => {
                for _ in 0..rng.range(1, 3) {
                    deltas.push(Delta::Text(text(rng)));
                }
            }
            1 => {
                for _ in 0..rng.range(1, 3) {
                    deltas.push(Delta::Thinking(text(rng)));
                }
            }
            _ => {
                deltas.push(Delta::ToolCall {
                    index: calls,
                    id: call_id(rng, calls),
                    name: rng.pick(TOOL_NAMES).to_string(),
                });
                if rng.chance(90) {
                    let arguments = arguments(rng);
                    for fragment in fragments(rng, &arguments) {
                        deltas.push(Delta::ToolArguments {
                            index: calls,
                            fragment,
                        });
                    }
                }
                calls += 1;
            }
        }
    }
    match rng.below(10) {
        0 => deltas.push(Delta::Error {
            kind: rng
                .pick(&["overloaded_error", "rate_limit_error", "server_error"])
                .to_string(),
            message: text(rng),
        }),
        1 => {}
        _ => {
            let mut end = vec![Delta::Usage(random_usage(rng, pair))];
            end.extend(random_finish(rng, pair, calls > 0).map(Delta::Finish));
            rng.shuffle(&mut end);
            deltas.extend(end);
            deltas.push(Delta::Done);
        }
    }
    deltas
}

/// How often chunk boundaries fell inside a line and inside a UTF-8 character.
#[derive(Debug, Default)]
struct Cuts {
    mid_line: usize,
    mid_char: usize,
}

/// Translates the SSE `bytes` from `from` to `to`, fed in random chunks; every chunk's output
/// must be whole events.
fn translate_stream(
    rng: &mut Rng,
    from: Surface,
    to: Surface,
    bytes: &[u8],
    cuts: &mut Cuts,
) -> Vec<u8> {
    let mut translator = StreamTranslator::new(from, to, true, 0).unwrap();
    let mut out = Vec::new();
    let max = *rng.pick(&[1usize, 2, 3, 7, 16, 61, 300, 1 << 16]);
    let mut at = 0;
    while at < bytes.len() {
        let end = (at + 1 + rng.below(max)).min(bytes.len());
        if end < bytes.len() {
            cuts.mid_line += usize::from(bytes[end - 1] != b'\n');
            cuts.mid_char += usize::from(bytes[end] & 0b1100_0000 == 0b1000_0000);
        }
        let piece = translator.push(&bytes[at..end]);
        assert!(
            piece.is_empty() || piece.ends_with(b"\n\n"),
            "{from}->{to}: not whole events: {:?}",
            String::from_utf8_lossy(&piece)
        );
        out.extend_from_slice(&piece);
        if rng.chance(5) {
            assert!(translator.push(b"").is_empty());
        }
        at = end;
    }
    let tail = translator.finish();
    assert!(tail.is_empty() || tail.ends_with(b"\n\n"));
    out.extend_from_slice(&tail);
    assert!(
        !translator.estimated(),
        "{from}->{to}: the usage was reported"
    );
    out
}

#[test]
fn streams_survive_a_round_trip_through_every_format_in_any_chunking() {
    let mut cuts = Cuts::default();
    for pair in Pair::all() {
        let (a, b) = (pair.home, pair.away);
        for case in 0..CASES {
            let mut rng = Rng::new(seed(3, a, b, case));
            let deltas = random_stream(&mut rng, pair);
            let expected = accumulate(&deltas);
            let bytes = encode_stream(a, &deltas);
            assert_eq!(
                accumulate(&decode_stream(a, &bytes)),
                expected,
                "{a} case {case} is not canonical: {deltas:?}"
            );
            let there = translate_stream(&mut rng, a, b, &bytes, &mut cuts);
            let back = translate_stream(&mut rng, b, a, &there, &mut cuts);
            assert_eq!(
                accumulate(&decode_stream(a, &back)),
                expected,
                "{a}->{b}->{a} case {case}\ndeltas: {deltas:?}\ninput: {}\nvia: {}\nback: {}",
                String::from_utf8_lossy(&bytes),
                String::from_utf8_lossy(&there),
                String::from_utf8_lossy(&back)
            );
        }
    }
    // The chunkings did cut lines and characters apart.
    assert!(cuts.mid_line > 1000, "{cuts:?}");
    assert!(cuts.mid_char > 100, "{cuts:?}");
}

// ---- Thinking signatures --------------------------------------------------------------------

/// The events of an SSE stream: name and JSON data (`[DONE]` as a string).
fn events(bytes: &[u8]) -> Vec<(Option<String>, Value)> {
    let mut splitter = EventSplitter::default();
    let mut out = Vec::new();
    let mut emit = |name: Option<&str>, data: &str| {
        let data = serde_json::from_str(data).unwrap_or_else(|_| Value::String(data.to_owned()));
        out.push((name.map(str::to_owned), data));
    };
    splitter.feed(bytes, &mut emit);
    splitter.end(&mut emit);
    out
}

fn translate_whole_stream(from: Surface, to: Surface, sse: &str) -> Vec<u8> {
    let mut translator = StreamTranslator::new(from, to, true, 0).unwrap();
    let mut out = translator.push(sse.as_bytes()).to_vec();
    out.extend_from_slice(&translator.finish());
    out
}

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

const CLAUDE_SIGNATURE: &str = "EqQBCkYIBxgCKkDclaude+sig==";

fn claude_answer() -> Value {
    json!({
        "id": "msg_01", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
        "content": [
            {"type": "thinking", "thinking": "The user greets me.", "signature": CLAUDE_SIGNATURE},
            {"type": "text", "text": "Hello!"}
        ],
        "stop_reason": "end_turn", "stop_sequence": null,
        "usage": {"input_tokens": 12, "output_tokens": 30}
    })
}

/// A stateless Responses request (as Codex sends) replaying `output` items after a first
/// user message, then asking again.
fn responses_follow_up(output: &[Value]) -> Map<String, Value> {
    let mut input = vec![json!({"type": "message", "role": "user", "content": "Hi"})];
    input.extend(output.iter().cloned());
    input.push(json!({"type": "message", "role": "user",
        "content": [{"type": "input_text", "text": "Go on"}]}));
    object(json!({
        "model": "claude-sonnet-4-5",
        "input": input,
        "store": false,
        "include": ["reasoning.encrypted_content"],
    }))
}

/// The thinking blocks of a Messages request body.
fn thinking_blocks(body: &Map<String, Value>) -> Vec<Value> {
    body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["content"].as_array())
        .flatten()
        .filter(|block| block["type"] == "thinking")
        .cloned()
        .collect()
}

#[test]
fn a_claude_signature_goes_to_responses_sealed_and_comes_back_to_claude_only() {
    let answer = response(
        Surface::Messages,
        Surface::Responses,
        claude_answer().to_string().as_bytes(),
        0,
    )
    .unwrap();
    let answer: Value = serde_json::from_slice(&answer.body).unwrap();
    let output = answer["output"].as_array().unwrap().clone();
    assert_eq!(output[0]["type"], "reasoning");
    assert_eq!(
        output[0]["encrypted_content"],
        format!("kg-sig:messages:{CLAUDE_SIGNATURE}")
    );
    assert_eq!(output[0]["summary"][0]["text"], "The user greets me.");
    assert_eq!(output[1]["content"][0]["text"], "Hello!");

    // Codex sends the items back: Claude gets its own signature again.
    let follow_up = responses_follow_up(&output);
    let to_claude = request(Surface::Responses, Surface::Messages, &follow_up, 1024).unwrap();
    assert!(to_claude.removed.is_empty(), "{:?}", to_claude.removed);
    assert_eq!(
        to_claude.body["messages"][1]["content"][0],
        json!({"type": "thinking", "thinking": "The user greets me.", "signature": CLAUDE_SIGNATURE})
    );

    // A Chat provider has no place for it: dropped, and named.
    let to_chat = request(
        Surface::Responses,
        Surface::ChatCompletions,
        &follow_up,
        1024,
    )
    .unwrap();
    assert!(
        to_chat.removed.names().contains(&"thinking".to_owned()),
        "{:?}",
        to_chat.removed
    );
    let chat_body = pretty(&to_chat.body);
    assert!(!chat_body.contains(CLAUDE_SIGNATURE), "{chat_body}");
    assert!(!chat_body.contains("kg-sig"), "{chat_body}");
    assert_eq!(to_chat.body["messages"][1]["content"], "Hello!");

    // Nor does a Chat client ever see the signature.
    let chat_answer = response(
        Surface::Messages,
        Surface::ChatCompletions,
        claude_answer().to_string().as_bytes(),
        0,
    )
    .unwrap();
    let chat_answer = String::from_utf8(chat_answer.body).unwrap();
    assert!(!chat_answer.contains("EqQB"), "{chat_answer}");
    assert!(chat_answer.contains("The user greets me."), "{chat_answer}");
}

#[test]
fn a_foreign_or_unsealed_signature_never_reaches_claude() {
    for signature in [
        // OpenAI's own encrypted reasoning, as a Responses client replays it.
        "gAAAAABo-openai-encrypted".to_owned(),
        // Sealed by the gateway for another provider.
        "kg-sig:responses:gAAAAABo-openai-encrypted".to_owned(),
        "kg-sig:chat-completions:abc".to_owned(),
        // Look-alikes of a Messages seal.
        format!("kg-sig:messagesx:{CLAUDE_SIGNATURE}"),
        format!("kg-sig:messages{CLAUDE_SIGNATURE}"),
        format!("kg-sig:Messages:{CLAUDE_SIGNATURE}"),
        "kg-sig:messages:".to_owned(),
    ] {
        let output = [
            json!({"type": "reasoning", "id": "rs_1", "encrypted_content": signature,
                "summary": [{"type": "summary_text", "text": "Thought."}]}),
            json!({"type": "message", "role": "assistant",
                "content": [{"type": "output_text", "text": "Hello!"}]}),
        ];
        let to_claude = request(
            Surface::Responses,
            Surface::Messages,
            &responses_follow_up(&output),
            1024,
        )
        .unwrap();
        assert_eq!(
            thinking_blocks(&to_claude.body),
            Vec::<Value>::new(),
            "{signature}"
        );
        assert_eq!(
            to_claude.removed.names(),
            ["messages[1].content[0].type=thinking"],
            "{signature}"
        );
        let body = pretty(&to_claude.body);
        assert!(!body.contains("Thought."), "{signature}: {body}");
        let inner = signature.rsplit(':').next().unwrap();
        assert!(
            inner.is_empty() || !body.contains(inner),
            "{signature}: {body}"
        );
        assert_eq!(to_claude.body["messages"][1]["content"], "Hello!");
    }

    // Chat's reasoning has no signature at all: Claude never gets it either.
    let chat = object(json!({"model": "m", "messages": [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "reasoning_content": "Thought.", "content": "Hello!"},
        {"role": "user", "content": "Go on"}
    ]}));
    let to_claude = request(Surface::ChatCompletions, Surface::Messages, &chat, 1024).unwrap();
    assert!(thinking_blocks(&to_claude.body).is_empty());
    assert_eq!(
        to_claude.removed.names(),
        ["messages[1].content[0].type=thinking"]
    );
}

/// A Claude stream: thinking with its signature, then text.
fn claude_stream() -> String {
    let events = [
        (
            "message_start",
            json!({"type": "message_start", "message": {"id": "msg_01",
            "type": "message", "role": "assistant", "model": "claude-sonnet-4-5", "content": [],
            "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": 12, "output_tokens": 1}}}),
        ),
        (
            "content_block_start",
            json!({"type": "content_block_start", "index": 0,
            "content_block": {"type": "thinking", "thinking": "", "signature": ""}}),
        ),
        (
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0,
            "delta": {"type": "thinking_delta", "thinking": "The user greets me."}}),
        ),
        (
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0,
            "delta": {"type": "signature_delta", "signature": CLAUDE_SIGNATURE}}),
        ),
        (
            "content_block_stop",
            json!({"type": "content_block_stop", "index": 0}),
        ),
        (
            "content_block_start",
            json!({"type": "content_block_start", "index": 1,
            "content_block": {"type": "text", "text": ""}}),
        ),
        (
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 1,
            "delta": {"type": "text_delta", "text": "Hello!"}}),
        ),
        (
            "content_block_stop",
            json!({"type": "content_block_stop", "index": 1}),
        ),
        (
            "message_delta",
            json!({"type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": null},
            "usage": {"output_tokens": 30}}),
        ),
        ("message_stop", json!({"type": "message_stop"})),
    ];
    events
        .iter()
        .map(|(name, data)| format!("event: {name}\ndata: {data}\n\n"))
        .collect()
}

#[test]
fn a_streamed_claude_signature_is_sealed_for_responses_and_dropped_for_chat() {
    let sealed = format!("kg-sig:messages:{CLAUDE_SIGNATURE}");
    let out = translate_whole_stream(Surface::Messages, Surface::Responses, &claude_stream());
    let events = events(&out);
    let reasoning_done = events
        .iter()
        .find(|(name, data)| {
            name.as_deref() == Some("response.output_item.done")
                && data["item"]["type"] == "reasoning"
        })
        .expect("a reasoning item");
    assert_eq!(reasoning_done.1["item"]["encrypted_content"], sealed);
    let (name, completed) = events.last().unwrap();
    assert_eq!(name.as_deref(), Some("response.completed"));
    let output = completed["response"]["output"].as_array().unwrap().clone();
    assert_eq!(output[0]["encrypted_content"], sealed);
    assert_eq!(output[0]["summary"][0]["text"], "The user greets me.");
    // The bare signature appears nowhere but inside the seal.
    let text = String::from_utf8(out.clone()).unwrap();
    assert_eq!(
        text.matches(CLAUDE_SIGNATURE).count(),
        text.matches(&sealed).count()
    );

    // The streamed items replayed: Claude gets its signature back.
    let to_claude = request(
        Surface::Responses,
        Surface::Messages,
        &responses_follow_up(&output),
        1024,
    )
    .unwrap();
    assert_eq!(
        thinking_blocks(&to_claude.body),
        [
            json!({"type": "thinking", "thinking": "The user greets me.", "signature": CLAUDE_SIGNATURE})
        ]
    );

    // A Chat client gets the reasoning text, never the signature.
    let out = translate_whole_stream(
        Surface::Messages,
        Surface::ChatCompletions,
        &claude_stream(),
    );
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains("The user greets me."), "{text}");
    assert!(!text.contains("EqQB"), "{text}");
    assert!(!text.contains("kg-sig"), "{text}");
}

#[test]
fn a_streamed_openai_signature_reaches_a_messages_client_sealed_and_goes_nowhere_else() {
    let openai = "gAAAAABo-openai-encrypted";
    let events_in = [
        json!({"type": "response.created", "response": {"id": "resp_1", "model": "o4-mini",
            "created_at": 1, "status": "in_progress", "output": []}}),
        json!({"type": "response.output_item.added", "output_index": 0,
            "item": {"type": "reasoning", "id": "rs_1", "summary": []}}),
        json!({"type": "response.reasoning_summary_part.added", "item_id": "rs_1",
            "output_index": 0, "summary_index": 0, "part": {"type": "summary_text", "text": ""}}),
        json!({"type": "response.reasoning_summary_text.delta", "item_id": "rs_1",
            "output_index": 0, "summary_index": 0, "delta": "Thought."}),
        json!({"type": "response.output_item.done", "output_index": 0,
            "item": {"type": "reasoning", "id": "rs_1", "encrypted_content": openai,
                "summary": [{"type": "summary_text", "text": "Thought."}]}}),
        json!({"type": "response.output_item.added", "output_index": 1,
            "item": {"type": "message", "id": "msg_1", "role": "assistant", "content": []}}),
        json!({"type": "response.output_text.delta", "item_id": "msg_1", "output_index": 1,
            "content_index": 0, "delta": "Hello!"}),
        json!({"type": "response.completed", "response": {"id": "resp_1", "model": "o4-mini",
            "status": "completed", "output": [],
            "usage": {"input_tokens": 5, "output_tokens": 9}}}),
    ];
    let sse: String = events_in
        .iter()
        .map(|data| {
            format!(
                "event: {}\ndata: {data}\n\n",
                data["type"].as_str().unwrap()
            )
        })
        .collect();
    let out = translate_whole_stream(Surface::Responses, Surface::Messages, &sse);
    let signatures: Vec<Value> = events(&out)
        .into_iter()
        .filter(|(_, data)| data["delta"]["type"] == "signature_delta")
        .map(|(_, data)| data["delta"]["signature"].clone())
        .collect();
    let sealed = format!("kg-sig:responses:{openai}");
    assert_eq!(signatures, [json!(sealed)]);

    // Replayed by the Messages client toward any other provider, it is not sent.
    let replay = object(json!({"model": "m", "max_tokens": 100, "messages": [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "Thought.", "signature": sealed},
            {"type": "text", "text": "Hello!"}
        ]},
        {"role": "user", "content": "Go on"}
    ]}));
    for to in [Surface::ChatCompletions, Surface::Responses] {
        let translated = request(Surface::Messages, to, &replay, 1024).unwrap();
        let body = pretty(&translated.body);
        assert!(!body.contains(openai), "{to}: {body}");
        assert!(
            !translated.removed.is_empty(),
            "{to}: the thinking is named"
        );
    }
}

// ---- Estimated usage ------------------------------------------------------------------------

fn chat_chunk(delta: Value, finish_reason: Value) -> String {
    let chunk = json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1,
        "model": "llama", "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]});
    format!("data: {chunk}\n\n")
}

/// A Chat stream of a llama.cpp-like server; `usage`: its usage chunk, if it sends one.
fn chat_stream(usage: Option<Value>) -> Vec<String> {
    let mut chunks = vec![
        chat_chunk(json!({"role": "assistant", "content": ""}), Value::Null),
        chat_chunk(
            json!({"content": "The weather in Paris is sunny and warm today."}),
            Value::Null,
        ),
        chat_chunk(json!({}), json!("stop")),
    ];
    if let Some(usage) = usage {
        let chunk = json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1,
            "model": "llama", "choices": [], "usage": usage});
        chunks.push(format!("data: {chunk}\n\n"));
    }
    chunks.push("data: [DONE]\n\n".to_owned());
    chunks
}

/// The `message_delta` usage of a Messages stream.
fn message_delta_usage(bytes: &[u8]) -> Value {
    let events = events(bytes);
    let deltas: Vec<&Value> = events
        .iter()
        .filter(|(name, _)| name.as_deref() == Some("message_delta"))
        .map(|(_, data)| &data["usage"])
        .collect();
    assert_eq!(deltas.len(), 1, "{}", String::from_utf8_lossy(bytes));
    deltas[0].clone()
}

#[test]
fn a_stream_without_usage_gets_an_estimate_and_one_with_usage_keeps_it() {
    let mut translator =
        StreamTranslator::new(Surface::ChatCompletions, Surface::Messages, false, 321).unwrap();
    let chunks = chat_stream(None);
    let (last, rest) = chunks.split_last().unwrap();
    let mut out = Vec::new();
    for chunk in rest {
        out.extend_from_slice(&translator.push(chunk.as_bytes()));
    }
    // Nothing is estimated before the stream is known to have ended without usage.
    assert!(!translator.estimated());
    out.extend_from_slice(&translator.push(last.as_bytes()));
    out.extend_from_slice(&translator.finish());
    assert!(translator.estimated());
    let usage = message_delta_usage(&out);
    assert_eq!(usage["input_tokens"], 321);
    assert!(usage["output_tokens"].as_u64().unwrap() > 0, "{usage}");

    // A Responses client too.
    let mut translator =
        StreamTranslator::new(Surface::ChatCompletions, Surface::Responses, false, 321).unwrap();
    let out: Vec<u8> = chat_stream(None)
        .iter()
        .flat_map(|chunk| translator.push(chunk.as_bytes()))
        .collect();
    assert!(translator.estimated());
    let events = events(&out);
    let (name, completed) = events.last().unwrap();
    assert_eq!(name.as_deref(), Some("response.completed"));
    assert_eq!(completed["response"]["usage"]["input_tokens"], 321);
    assert!(
        completed["response"]["usage"]["output_tokens"]
            .as_u64()
            .unwrap()
            > 0
    );

    // The provider's own numbers pass untouched.
    let usage = json!({"prompt_tokens": 50, "completion_tokens": 7, "total_tokens": 57});
    let mut translator =
        StreamTranslator::new(Surface::ChatCompletions, Surface::Messages, false, 321).unwrap();
    let out: Vec<u8> = chat_stream(Some(usage))
        .iter()
        .flat_map(|chunk| translator.push(chunk.as_bytes()))
        .collect();
    assert!(!translator.estimated());
    let usage = message_delta_usage(&out);
    assert_eq!(usage["input_tokens"], 50);
    assert_eq!(usage["output_tokens"], 7);
}

#[test]
fn a_whole_answer_without_usage_gets_an_estimate() {
    let answer = |usage: Option<Value>| {
        let mut answer = json!({"id": "chatcmpl-1", "object": "chat.completion", "created": 1,
            "model": "llama", "choices": [{"index": 0, "finish_reason": "stop",
                "message": {"role": "assistant", "content": "The weather in Paris is sunny."}}]});
        if let Some(usage) = usage {
            answer["usage"] = usage;
        }
        answer.to_string()
    };
    for usage in [None, Some(Value::Null)] {
        let translated = response(
            Surface::ChatCompletions,
            Surface::Messages,
            answer(usage).as_bytes(),
            99,
        )
        .unwrap();
        assert!(translated.estimated);
        let body: Value = serde_json::from_slice(&translated.body).unwrap();
        assert_eq!(body["usage"]["input_tokens"], 99);
        assert!(
            body["usage"]["output_tokens"].as_u64().unwrap() > 0,
            "{body}"
        );
    }
    let reported = json!({"prompt_tokens": 20, "completion_tokens": 3, "total_tokens": 23});
    let translated = response(
        Surface::ChatCompletions,
        Surface::Messages,
        answer(Some(reported)).as_bytes(),
        99,
    )
    .unwrap();
    assert!(!translated.estimated);
    let body: Value = serde_json::from_slice(&translated.body).unwrap();
    assert_eq!(body["usage"]["input_tokens"], 20);
    assert_eq!(body["usage"]["output_tokens"], 3);
}

// ---- Errors ---------------------------------------------------------------------------------

fn error_json(to: Surface, body: &[u8]) -> Value {
    serde_json::from_slice(&error(to, body)).expect("an error body is JSON")
}

#[test]
fn errors_change_shape_between_anthropic_and_openai() {
    let anthropic =
        br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
    for to in [Surface::ChatCompletions, Surface::Responses] {
        assert_eq!(
            error_json(to, anthropic),
            json!({"error": {"message": "Overloaded", "type": "overloaded_error", "code": ""}})
        );
    }
    let openai = br#"{"error":{"message":"Rate limit reached","type":"requests","param":null,"code":"rate_limit_exceeded"}}"#;
    assert_eq!(
        error_json(Surface::Messages, openai),
        json!({"type": "error", "error": {"type": "requests", "message": "Rate limit reached",
            "code": "rate_limit_exceeded"}})
    );
    // A numeric code, and an error that is only a string.
    let numeric = br#"{"error":{"message":"Bad gateway","code":502}}"#;
    assert_eq!(
        error_json(Surface::Messages, numeric),
        json!({"type": "error", "error": {"type": "api_error", "message": "Bad gateway",
            "code": "502"}})
    );
    assert_eq!(
        error_json(Surface::ChatCompletions, br#"{"error":"model not loaded"}"#)["error"]
            ["message"],
        "model not loaded"
    );
    // Not JSON at all: the text is the message.
    let proxy = b"  upstream connect error or disconnect/reset before headers\n";
    assert_eq!(
        error_json(Surface::Messages, proxy),
        json!({"type": "error", "error": {"type": "api_error",
            "message": "upstream connect error or disconnect/reset before headers", "code": ""}})
    );
    assert_eq!(
        error_json(Surface::ChatCompletions, b"<html>502 Bad Gateway</html>"),
        json!({"error": {"message": "<html>502 Bad Gateway</html>", "type": "api_error",
            "code": ""}})
    );
}

#[test]
fn an_empty_signature_is_no_signature_and_is_not_sealed() {
    // Messages writes `"signature": ""` for thinking it has no signature for (from another
    // format, or from a Messages-compatible server that signs nothing).
    let mut answer = claude_answer();
    answer["content"][0]["signature"] = "".into();
    let translated = response(
        Surface::Messages,
        Surface::Responses,
        answer.to_string().as_bytes(),
        0,
    )
    .unwrap();
    let body: Value = serde_json::from_slice(&translated.body).unwrap();
    assert_eq!(body["output"][0]["type"], "reasoning");
    assert_eq!(body["output"][0].get("encrypted_content"), None, "{body}");

    // The same in a stream: an empty `encrypted_content` gives a Messages client no signature.
    let events_in = [
        json!({"type": "response.created", "response": {"id": "resp_1", "model": "gpt-oss"}}),
        json!({"type": "response.reasoning_summary_text.delta", "item_id": "rs_1",
            "output_index": 0, "summary_index": 0, "delta": "Thought."}),
        json!({"type": "response.output_item.done", "output_index": 0,
            "item": {"type": "reasoning", "id": "rs_1", "encrypted_content": "",
                "summary": [{"type": "summary_text", "text": "Thought."}]}}),
        json!({"type": "response.completed", "response": {"id": "resp_1", "status": "completed",
            "usage": {"input_tokens": 5, "output_tokens": 9}}}),
    ];
    let sse: String = events_in
        .iter()
        .map(|data| format!("data: {data}\n\n"))
        .collect();
    let out = translate_whole_stream(Surface::Responses, Surface::Messages, &sse);
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains("Thought."), "{text}");
    assert!(!text.contains("signature_delta"), "{text}");
}
