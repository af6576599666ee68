//! What a chat surface answers, whatever its wire format: the echo of the last user message,
//! tool calls scripted by `mock-tool:` lines in it, or the tool-result acknowledgement when the
//! conversation ends with tool results; plus the thinking text, the deterministic ids and the
//! token figures. Chat Completions, Anthropic Messages and Responses only render a [`Turn`].

use base64::Engine as _;
use serde_json::Value;

use crate::controls::Cache;
use crate::text::{content_text, estimate_tokens, split_chunks, text_parts};

/// Start of a line that scripts a tool call: `mock-tool: NAME {json args}`.
pub(crate) const DIRECTIVE: &str = "mock-tool:";
/// Start of the answer to tool results.
const RESULT_PREFIX: &str = "tool result: ";
/// Separator of several tool results in the answer.
const RESULT_SEPARATOR: &str = "; ";
/// Start of the thinking text.
const THINKING_PREFIX: &str = "thinking about: ";
/// Characters of the prompt the thinking text quotes.
const THINKING_QUOTE: usize = 40;
/// Fewest pieces streamed tool-call arguments are split into.
const MIN_ARGUMENT_PIECES: usize = 2;

/// One tool call scripted by a `mock-tool:` line.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ToolCall {
    pub(crate) name: String,
    /// The arguments as compact JSON text, keys in the order they were written.
    pub(crate) arguments: String,
    /// The arguments parsed (Anthropic's `input`).
    pub(crate) input: Value,
}

/// The visible answer of a turn.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Answer {
    /// Assistant text.
    Text(String),
    /// One or more (parallel) tool calls, never empty.
    Tools(Vec<ToolCall>),
}

/// What one request is answered with.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Turn {
    pub(crate) answer: Answer,
    /// What the thinking text quotes: the first 40 characters of the last user message's text,
    /// or in a tool-result turn of the joined results.
    quote: String,
    /// Number of items in the conversation (part of the ids' seed).
    items: usize,
}

impl Turn {
    /// The turn answering an array of conversation items: chat `messages`, Anthropic
    /// `messages` or a Responses `input` array.
    ///
    /// When the last item is a tool result (a chat `tool` message, an Anthropic user message
    /// with `tool_result` blocks, a Responses `function_call_output`), the answer is
    /// `tool result: R1; R2` over the trailing results. Otherwise the last `role: user` item is
    /// the prompt: its `mock-tool:` lines make tool calls, and without any its text is echoed.
    pub(crate) fn of_items(items: &[Value]) -> Self {
        let results = trailing_results(items);
        if !results.is_empty() {
            let joined = results.join(RESULT_SEPARATOR);
            let quote = quote(&joined);
            return Self::new(
                Answer::Text(format!("{RESULT_PREFIX}{joined}")),
                quote,
                items.len(),
            );
        }
        let content = items
            .iter()
            .rev()
            .find(|item| item.get("role").and_then(Value::as_str) == Some("user"))
            .and_then(|item| item.get("content"));
        match content {
            Some(content) => Self::of_prompt(content, items.len()),
            None => Self::new(Answer::Text(String::new()), String::new(), items.len()),
        }
    }

    /// The turn answering a Responses string `input`.
    pub(crate) fn of_text(input: &Value) -> Self {
        Self::of_prompt(input, 1)
    }

    fn of_prompt(content: &Value, items: usize) -> Self {
        let text = content_text(content);
        let quote = quote(&text);
        let calls = directives(content);
        let answer = if calls.is_empty() {
            Answer::Text(text)
        } else {
            Answer::Tools(calls)
        };
        Self::new(answer, quote, items)
    }

    fn new(answer: Answer, quote: String, items: usize) -> Self {
        Self {
            answer,
            quote,
            items,
        }
    }

    /// Seed of the ids derived for this turn: a hash of the answer (the calls' names and
    /// arguments, or the text) and of the number of items. Computed on demand: echo replies,
    /// the benchmark's, need no id.
    fn seed(&self) -> Fnv {
        let mut hash = Fnv::new();
        match &self.answer {
            Answer::Text(text) => hash.write(text.as_bytes()),
            Answer::Tools(calls) => {
                for call in calls {
                    hash.write(call.name.as_bytes());
                    hash.write(b"\0");
                    hash.write(call.arguments.as_bytes());
                    hash.write(b"\n");
                }
            }
        }
        hash.write(&(self.items as u64).to_le_bytes());
        hash
    }

    /// The text of the visible answer (`None` for tool calls).
    pub(crate) fn text(&self) -> Option<&str> {
        match &self.answer {
            Answer::Text(text) => Some(text),
            Answer::Tools(_) => None,
        }
    }

    /// Estimated tokens of the visible answer: its text, or the calls' names and arguments.
    pub(crate) fn answer_tokens(&self) -> u64 {
        let chars = match &self.answer {
            Answer::Text(text) => text.chars().count(),
            Answer::Tools(calls) => calls
                .iter()
                .map(|c| c.name.chars().count() + c.arguments.chars().count())
                .sum(),
        };
        estimate_tokens(chars)
    }

    /// The thinking / reasoning text: `thinking about: ` and the first 40 characters of the
    /// prompt.
    pub(crate) fn thinking(&self) -> String {
        format!("{THINKING_PREFIX}{}", self.quote)
    }

    /// A deterministic id for output `index` of this turn, in the provider's style for
    /// `prefix`: `call_` + 24 letters and digits (OpenAI tool calls), `toolu_01` + 22
    /// (Anthropic), else `prefix` + 48 hex digits (Responses `fc_`, `rs_` items).
    pub(crate) fn id(&self, prefix: &str, index: usize) -> String {
        let mut hash = self.seed();
        hash.write(prefix.as_bytes());
        hash.write(&(index as u64).to_le_bytes());
        let (head, len, alphabet): (&str, usize, &[u8]) = match prefix {
            "call_" => ("call_", 24, BASE62),
            "toolu_" => ("toolu_01", 22, BASE62),
            _ => (prefix, 48, HEX),
        };
        let mut id = String::with_capacity(head.len() + len);
        id.push_str(head);
        let mut state = hash.0;
        id.extend((0..len).map(|_| {
            let n = splitmix(&mut state);
            char::from(alphabet[(n % alphabet.len() as u64) as usize])
        }));
        id
    }

    /// The token figures of a reply to this turn: `input_chars` of prompt, the cache figures,
    /// and, when `reasoning` is asked, the thinking text's tokens.
    pub(crate) fn tokens(&self, input_chars: usize, cache: Cache, reasoning: bool) -> Tokens {
        Tokens {
            input: estimate_tokens(input_chars),
            cache,
            output: self.answer_tokens(),
            reasoning: if reasoning {
                estimate_tokens(self.thinking().chars().count())
            } else {
                0
            },
        }
    }
}

/// Token figures of one reply, rendered by each surface in its own terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tokens {
    /// Estimated tokens of the request's text: the uncached prompt (Anthropic `input_tokens`).
    pub(crate) input: u64,
    /// Cached prompt tokens, on top of `input`.
    pub(crate) cache: Cache,
    /// Estimated tokens of the visible answer.
    pub(crate) output: u64,
    /// Estimated tokens of the thinking / reasoning text (0 when none was asked).
    pub(crate) reasoning: u64,
}

impl Tokens {
    /// The whole prompt, cached tokens included (OpenAI `prompt_tokens` / `input_tokens`).
    pub(crate) fn prompt(&self) -> u64 {
        self.input + self.cache.read + self.cache.write
    }

    /// Everything generated, reasoning included (as both providers count output).
    pub(crate) fn completion(&self) -> u64 {
        self.output + self.reasoning
    }
}

/// The first characters of `text` the thinking text quotes.
fn quote(text: &str) -> String {
    text.chars().take(THINKING_QUOTE).collect()
}

/// The pieces streamed tool-call arguments are sent in: `chunks` of them, at least two (fewer
/// only for arguments shorter than two characters).
pub(crate) fn argument_pieces(arguments: &str, chunks: usize) -> Vec<&str> {
    split_chunks(arguments, chunks.max(MIN_ARGUMENT_PIECES))
}

/// A deterministic opaque token derived from `text` (`bytes` bytes, base64): Anthropic's
/// thinking `signature`, the Responses `encrypted_content`.
pub(crate) fn opaque(text: &str, salt: &str, bytes: usize) -> String {
    let mut hash = Fnv::new();
    hash.write(salt.as_bytes());
    hash.write(text.as_bytes());
    let mut state = hash.0;
    let raw: Vec<u8> = (0..bytes)
        .map(|_| (splitmix(&mut state) >> 56) as u8)
        .collect();
    base64::engine::general_purpose::STANDARD.encode(raw)
}

/// The `mock-tool:` lines of a prompt's text parts, in order (each part scanned on its own, so
/// a line never spans two parts).
fn directives(content: &Value) -> Vec<ToolCall> {
    text_parts(content)
        .filter(|part| part.contains(DIRECTIVE))
        .flat_map(str::lines)
        .filter_map(directive)
        .collect()
}

/// One `mock-tool: NAME {json}` line: NAME runs to the first space or `{`; the rest, when
/// present, must be a JSON object (else the line is no directive).
fn directive(line: &str) -> Option<ToolCall> {
    let rest = line.trim().strip_prefix(DIRECTIVE)?.trim_start();
    let end = rest
        .find(|c: char| c.is_whitespace() || c == '{')
        .unwrap_or(rest.len());
    let (name, arguments) = rest.split_at(end);
    if name.is_empty() {
        return None;
    }
    let arguments = match arguments.trim() {
        "" => "{}",
        json => json,
    };
    let input: Value = serde_json::from_str(arguments).ok()?;
    input.is_object().then(|| ToolCall {
        name: name.to_owned(),
        arguments: compact(arguments),
        input,
    })
}

/// Valid JSON text without the whitespace outside its strings.
fn compact(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    let (mut in_string, mut escaped) = (false, false);
    for c in json.chars() {
        if in_string {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
        } else if c.is_whitespace() {
            continue;
        }
        out.push(c);
    }
    out
}

/// The texts of a tool-result item: a chat `tool` message (its content), a Responses
/// `function_call_output` or other `*_call_output` item (its `output`), or an Anthropic user
/// message with `tool_result` blocks (each block's content).
fn tool_results(item: &Value) -> Option<Vec<String>> {
    let role = item.get("role").and_then(Value::as_str);
    if role == Some("tool") {
        return Some(vec![item
            .get("content")
            .map(content_text)
            .unwrap_or_default()]);
    }
    let kind = item.get("type").and_then(Value::as_str).unwrap_or_default();
    if kind.ends_with("_call_output") {
        return Some(vec![item
            .get("output")
            .map(content_text)
            .unwrap_or_default()]);
    }
    if role != Some("user") {
        return None;
    }
    let texts: Vec<String> = item
        .get("content")?
        .as_array()?
        .iter()
        .filter(|block| block.get("type").and_then(Value::as_str) == Some("tool_result"))
        .map(|block| block.get("content").map(content_text).unwrap_or_default())
        .collect();
    (!texts.is_empty()).then_some(texts)
}

/// Whether a Responses item is model output that may sit between tool results (`function_call`
/// and other `*_call` items, `reasoning`).
fn is_call_item(item: &Value) -> bool {
    item.get("type")
        .and_then(Value::as_str)
        .is_some_and(|kind| kind.ends_with("_call") || kind == "reasoning")
}

/// The results of the tool results that end the conversation, in order (empty when the last
/// item is not a tool result). Responses call items between the outputs are passed over.
fn trailing_results(items: &[Value]) -> Vec<String> {
    let mut groups = Vec::new();
    for item in items.iter().rev() {
        match tool_results(item) {
            Some(texts) => groups.push(texts),
            None if !groups.is_empty() && is_call_item(item) => {}
            None => break,
        }
    }
    groups.into_iter().rev().flatten().collect()
}

const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const HEX: &[u8] = b"0123456789abcdef";

/// FNV-1a, 64 bits.
struct Fnv(u64);

impl Fnv {
    fn new() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// The next value of a splitmix64 sequence.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn items(v: Value) -> Turn {
        Turn::of_items(v.as_array().expect("array"))
    }

    #[test]
    fn echoes_the_last_user_message() {
        let turn = items(json!([
            {"role": "system", "content": "sys"},
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": "reply"},
            {"role": "user", "content": [{"type": "text", "text": "hel"}, {"type": "image_url"}, {"type": "text", "text": "lo"}]},
        ]));
        assert_eq!(turn.answer, Answer::Text("hello".into()));
        assert_eq!(turn.thinking(), "thinking about: hello");
        assert_eq!(
            items(json!([{"role": "assistant", "content": "x"}])).text(),
            Some("")
        );
        assert_eq!(Turn::of_text(&json!("hi")).text(), Some("hi"));
    }

    #[test]
    fn directive_lines_make_tool_calls() {
        let turn = items(json!([{"role": "user", "content": [
            {"type": "text", "text": "<system-reminder>x</system-reminder>"},
            {"type": "text", "text": "Please:\n  mock-tool: get_weather {\"city\": \"Paris\", \"units\": [\"c\"]}\nmock-tool: Bash{ \"command\" : \"echo a b\" }\nmock-tool: now\nmock-tool: bad {not json}\nmock-tool: arr [1]\nmock-tool:   \n"}
        ]}]));
        let Answer::Tools(calls) = &turn.answer else {
            panic!("tool calls expected: {turn:?}");
        };
        let got: Vec<(&str, &str)> = calls
            .iter()
            .map(|c| (c.name.as_str(), c.arguments.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("get_weather", r#"{"city":"Paris","units":["c"]}"#),
                ("Bash", r#"{"command":"echo a b"}"#),
                ("now", "{}"),
            ]
        );
        assert_eq!(calls[0].input, json!({"city": "Paris", "units": ["c"]}));
        assert_eq!(
            turn.answer_tokens(),
            estimate_tokens(11 + 30 + 4 + 22 + 3 + 2)
        );
        // Text mentioning the directive mid-line is echoed.
        let echo = Turn::of_text(&json!("say mock-tool: x"));
        assert_eq!(echo.text(), Some("say mock-tool: x"));
    }

    #[test]
    fn ids_are_deterministic_and_distinct() {
        let prompt = json!([{"role": "user", "content": "mock-tool: a\nmock-tool: b {\"x\":1}"}]);
        let (one, two) = (items(prompt.clone()), items(prompt));
        assert_eq!(one.id("call_", 0), two.id("call_", 0));
        assert_ne!(one.id("call_", 0), one.id("call_", 1));
        let call = one.id("call_", 0);
        assert!(call.starts_with("call_") && call.len() == 29, "{call}");
        assert!(call[5..].bytes().all(|b| b.is_ascii_alphanumeric()));
        let toolu = one.id("toolu_", 1);
        assert!(
            toolu.starts_with("toolu_01") && toolu.len() == 30,
            "{toolu}"
        );
        let fc = one.id("fc_", 0);
        assert!(fc.starts_with("fc_") && fc.len() == 51, "{fc}");
        assert!(fc[3..].bytes().all(|b| b.is_ascii_hexdigit()));
        let other = items(json!([{"role": "user", "content": "mock-tool: a"}]));
        assert_ne!(other.id("call_", 0), call);
    }

    #[test]
    fn trailing_tool_results_in_each_format() {
        let chat = items(json!([
            {"role": "user", "content": "mock-tool: a\nmock-tool: b"},
            {"role": "assistant", "content": null, "tool_calls": []},
            {"role": "tool", "tool_call_id": "1", "content": "one"},
            {"role": "tool", "tool_call_id": "2", "content": [{"type": "text", "text": "two"}]},
        ]));
        assert_eq!(chat.text(), Some("tool result: one; two"));
        assert_eq!(chat.thinking(), "thinking about: one; two");
        let anthropic = items(json!([
            {"role": "user", "content": "mock-tool: a"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "a", "input": {}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "t", "content": [{"type": "text", "text": "one"}]},
                {"type": "tool_result", "tool_use_id": "u", "content": "two"},
                {"type": "text", "text": "mock-tool: ignored"}
            ]},
        ]));
        assert_eq!(anthropic.text(), Some("tool result: one; two"));
        let responses = items(json!([
            {"role": "user", "content": [{"type": "input_text", "text": "mock-tool: a"}]},
            {"type": "reasoning", "id": "rs_1", "summary": []},
            {"type": "function_call", "call_id": "c1", "name": "a", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": "one"},
            {"type": "function_call", "call_id": "c2", "name": "a", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c2", "output": "two"},
        ]));
        assert_eq!(responses.text(), Some("tool result: one; two"));
        // A result followed by a new user message is history: the new prompt counts.
        let later = items(json!([
            {"role": "tool", "tool_call_id": "1", "content": "one"},
            {"role": "user", "content": "next"},
        ]));
        assert_eq!(later.text(), Some("next"));
    }

    #[test]
    fn tokens_add_cache_and_reasoning() {
        let turn = Turn::of_text(&json!("12345678"));
        let cache = Cache {
            read: 100,
            write: 7,
        };
        let t = turn.tokens(8, cache, true);
        assert_eq!((t.input, t.output), (2, 2));
        assert_eq!(
            t.reasoning,
            estimate_tokens("thinking about: 12345678".len())
        );
        assert_eq!(t.prompt(), 109);
        assert_eq!(t.completion(), 2 + t.reasoning);
        assert_eq!(turn.tokens(8, Cache::default(), false).reasoning, 0);
    }

    #[test]
    fn argument_pieces_are_at_least_two() {
        assert_eq!(argument_pieces("{}", 1), ["{", "}"]);
        assert_eq!(argument_pieces(r#"{"a":1}"#, 5).concat(), r#"{"a":1}"#);
        assert_eq!(argument_pieces(r#"{"a":1}"#, 5).len(), 5);
    }

    #[test]
    fn opaque_tokens_are_deterministic() {
        assert_eq!(opaque("x", "sig", 8), opaque("x", "sig", 8));
        assert_ne!(opaque("x", "sig", 8), opaque("y", "sig", 8));
        assert_eq!(opaque("x", "sig", 48).len(), 64);
    }
}
