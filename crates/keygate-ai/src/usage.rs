//! Token usage reported by providers, from JSON responses and stream events.

use serde::Deserialize;
use serde_json::Value;

/// Provider-reported token counts; `None` where the provider said nothing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenUsage {
    /// Input tokens, cache reads and writes included.
    pub input: Option<u64>,
    pub output: Option<u64>,
    /// Input tokens read from the provider's prompt cache (part of `input`).
    pub cached: Option<u64>,
    /// Output tokens spent on reasoning (part of `output`).
    pub reasoning: Option<u64>,
}

/// The counts a `usage` object may carry; other fields are skipped without being built.
#[derive(Deserialize)]
struct UsageFields {
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    cache_creation_input_tokens: Option<u64>,
    cache_read_input_tokens: Option<u64>,
    /// Chat Completions.
    prompt_tokens_details: Option<Details>,
    completion_tokens_details: Option<Details>,
    /// Responses.
    input_tokens_details: Option<Details>,
    output_tokens_details: Option<Details>,
}

/// The breakdowns OpenAI nests in `usage` (`*_tokens_details`).
#[derive(Deserialize)]
struct Details {
    cached_tokens: Option<u64>,
    reasoning_tokens: Option<u64>,
}

impl From<UsageFields> for TokenUsage {
    fn from(fields: UsageFields) -> Self {
        let cached = fields.cache_creation_input_tokens.unwrap_or(0)
            + fields.cache_read_input_tokens.unwrap_or(0);
        TokenUsage {
            input: fields
                .prompt_tokens
                .or(fields.input_tokens.map(|t| t + cached)),
            output: fields.completion_tokens.or(fields.output_tokens),
            cached: fields
                .cache_read_input_tokens
                .or(detail(&fields.prompt_tokens_details, |d| d.cached_tokens))
                .or(detail(&fields.input_tokens_details, |d| d.cached_tokens)),
            reasoning: detail(&fields.completion_tokens_details, |d| d.reasoning_tokens).or(
                detail(&fields.output_tokens_details, |d| d.reasoning_tokens),
            ),
        }
    }
}

fn detail(details: &Option<Details>, field: fn(&Details) -> Option<u64>) -> Option<u64> {
    details.as_ref().and_then(field)
}

impl TokenUsage {
    /// Reads a `usage` object of any supported shape: OpenAI (`prompt_tokens`,
    /// `completion_tokens`), Responses and Anthropic (`input_tokens`, `output_tokens`; Anthropic
    /// cache reads and writes count as input).
    pub fn from_usage_object(usage: &Value) -> TokenUsage {
        UsageFields::deserialize(usage).map_or_else(|_| TokenUsage::default(), TokenUsage::from)
    }

    /// Usage of a whole (non-streamed) response body; embeddings report no output tokens (0).
    pub fn from_response_body(body: &[u8]) -> TokenUsage {
        match Self::from_trailing_usage(body) {
            Some(usage) if usage.input.is_some() && usage.output.is_some() => usage,
            _ => Self::from_whole_body(body),
        }
    }

    /// Fast path: providers put `"usage": {...}` last, so read only that object (a key preceded
    /// by a backslash is inside a string and is not taken).
    fn from_trailing_usage(body: &[u8]) -> Option<TokenUsage> {
        const KEY: &[u8] = b"\"usage\"";
        // From the end, every `u` (a vectorised reverse scan) is checked for the key around it: a
        // handful of candidates in a response tail, where a reverse substring search costs
        // markedly more per byte (bench/RESULTS.md).
        let at = memchr::memrchr_iter(b'u', body).find_map(|u| {
            let start = u.checked_sub(1)?;
            (body.get(start..start + KEY.len()) == Some(KEY)).then_some(start)
        })?;
        if at > 0 && body[at - 1] == b'\\' {
            return None;
        }
        let rest = &body[at + KEY.len()..];
        let colon = rest.iter().position(|b| !b.is_ascii_whitespace())?;
        if rest[colon] != b':' {
            return None;
        }
        let mut values =
            serde_json::Deserializer::from_slice(&rest[colon + 1..]).into_iter::<UsageFields>();
        values.next()?.ok().map(TokenUsage::from)
    }

    /// Slow path: the whole body, for bodies the fast path cannot read (and embeddings).
    fn from_whole_body(body: &[u8]) -> TokenUsage {
        /// Only the fields read here; everything else is skipped without being built.
        #[derive(serde::Deserialize)]
        struct Envelope<'a> {
            usage: Option<Value>,
            #[serde(borrow)]
            object: Option<std::borrow::Cow<'a, str>>,
        }
        let Ok(envelope) = serde_json::from_slice::<Envelope<'_>>(body) else {
            return TokenUsage::default();
        };
        let Some(usage) = envelope.usage.filter(Value::is_object) else {
            return TokenUsage::default();
        };
        let mut parsed = TokenUsage::from_usage_object(&usage);
        if parsed.input.is_some()
            && parsed.output.is_none()
            && envelope.object.as_deref() == Some("list")
        {
            parsed.output = Some(0);
        }
        parsed
    }

    /// Updates from one streamed event's JSON (`data:` payload), whichever format it is.
    pub fn observe_event(&mut self, event: &Value) {
        match event.get("type").and_then(Value::as_str) {
            Some("message_start") => {
                if let Some(usage) = event.get("message").and_then(|m| m.get("usage")) {
                    self.merge(TokenUsage::from_usage_object(usage));
                }
            }
            Some("response.completed" | "response.incomplete" | "response.failed") => {
                if let Some(usage) = event
                    .get("response")
                    .and_then(|r| r.get("usage"))
                    .filter(|u| u.is_object())
                {
                    self.merge(TokenUsage::from_usage_object(usage));
                }
            }
            _ => {
                if let Some(usage) = event.get("usage").filter(|u| u.is_object()) {
                    self.merge(TokenUsage::from_usage_object(usage));
                }
            }
        }
    }

    fn merge(&mut self, other: TokenUsage) {
        self.input = other.input.or(self.input);
        self.output = other.output.or(self.output);
        self.cached = other.cached.or(self.cached);
        self.reasoning = other.reasoning.or(self.reasoning);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_fast_path_reads_only_the_trailing_usage() {
        let body =
            br#"{"choices":[{"message":{"content":"say \"usage\": {\"prompt_tokens\": 999}"}}],
            "usage": {"prompt_tokens": 12, "completion_tokens": 5}}"#;
        let fast = TokenUsage::from_trailing_usage(body).unwrap();
        assert_eq!((fast.input, fast.output), (Some(12), Some(5)));
        assert_eq!(TokenUsage::from_response_body(body), fast);
        // A key only inside a string is refused by the fast path; the full parse decides.
        let quoted = br#"{"choices":[{"message":{"content":"\"usage\": 1"}}]}"#;
        assert_eq!(TokenUsage::from_trailing_usage(quoted), None);
        assert_eq!(
            TokenUsage::from_response_body(quoted),
            TokenUsage::default()
        );
    }

    #[test]
    fn shapes() {
        let chat = br#"{"object":"chat.completion","usage":{"prompt_tokens":7,"completion_tokens":3,"total_tokens":10}}"#;
        assert_eq!(
            TokenUsage::from_response_body(chat),
            TokenUsage {
                input: Some(7),
                output: Some(3),
                ..TokenUsage::default()
            }
        );
        let emb = br#"{"object":"list","data":[],"usage":{"prompt_tokens":5,"total_tokens":5}}"#;
        assert_eq!(
            TokenUsage::from_response_body(emb),
            TokenUsage {
                input: Some(5),
                output: Some(0),
                ..TokenUsage::default()
            }
        );
        let claude = br#"{"type":"message","usage":{"input_tokens":10,"cache_read_input_tokens":5,"output_tokens":2}}"#;
        assert_eq!(
            TokenUsage::from_response_body(claude),
            TokenUsage {
                input: Some(15),
                output: Some(2),
                cached: Some(5),
                reasoning: None,
            }
        );
        assert_eq!(
            TokenUsage::from_response_body(b"not json"),
            TokenUsage::default()
        );
        assert_eq!(
            TokenUsage::from_response_body(br#"{"input_tokens":3}"#),
            TokenUsage::default()
        );
    }

    #[test]
    fn cached_and_reasoning_breakdowns() {
        let chat = br#"{"usage":{"prompt_tokens":20,"completion_tokens":9,
            "prompt_tokens_details":{"cached_tokens":16},"completion_tokens_details":{"reasoning_tokens":4}}}"#;
        let responses = br#"{"object":"response","usage":{"input_tokens":20,"output_tokens":9,
            "input_tokens_details":{"cached_tokens":16},"output_tokens_details":{"reasoning_tokens":4}}}"#;
        for body in [&chat[..], &responses[..]] {
            assert_eq!(
                TokenUsage::from_response_body(body),
                TokenUsage {
                    input: Some(20),
                    output: Some(9),
                    cached: Some(16),
                    reasoning: Some(4),
                }
            );
        }
    }

    #[test]
    fn stream_events() {
        let mut usage = TokenUsage::default();
        usage.observe_event(&json!({"type": "message_start", "message": {"usage": {"input_tokens": 12, "output_tokens": 1}}}));
        usage.observe_event(&json!({"type": "content_block_delta", "delta": {"text": "hi"}}));
        usage.observe_event(&json!({"type": "message_delta", "usage": {"output_tokens": 9}}));
        assert_eq!(
            usage,
            TokenUsage {
                input: Some(12),
                output: Some(9),
                ..TokenUsage::default()
            }
        );
        let mut usage = TokenUsage::default();
        usage.observe_event(&json!({"choices": [], "usage": null}));
        usage.observe_event(
            &json!({"choices": [], "usage": {"prompt_tokens": 4, "completion_tokens": 6}}),
        );
        assert_eq!(
            usage,
            TokenUsage {
                input: Some(4),
                output: Some(6),
                ..TokenUsage::default()
            }
        );
        let mut usage = TokenUsage::default();
        usage.observe_event(&json!({"type": "response.completed", "response": {"usage": {"input_tokens": 1, "output_tokens": 2}}}));
        assert_eq!(
            usage,
            TokenUsage {
                input: Some(1),
                output: Some(2),
                ..TokenUsage::default()
            }
        );
    }
}
