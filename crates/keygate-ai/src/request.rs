//! The client's request body: the fields the gateway reads (`model`, `models`, `stream`,
//! `stream_options.include_usage`) and the top-level keys, with the bytes kept verbatim for
//! forwarding. The whole object is parsed into a JSON tree only when something needs it (a body
//! to rewrite, an input-token estimate): most requests are forwarded as sent.

use std::sync::OnceLock;

use bytes::Bytes;
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::{Map, Value};

use crate::tokens::{estimate_input_tokens, prompt_field, Text, Tokenizer};

/// Most entries accepted in `models`: each may cost upstream attempts, so the list is bounded.
pub const MAX_MODELS: usize = 32;

/// Model names that ask the gateway to choose (ngrok's `ngrok/auto`, and Keygate's own name for it).
const AUTO_MODELS: [&str; 2] = ["ngrok/auto", "keygate/auto"];

/// A parsed client request body.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientRequest {
    /// The body as the client sent it (forwarded as is when nothing needs to change).
    pub raw: Bytes,
    /// The top-level keys, in the order sent (each once: duplicates are refused).
    pub keys: Vec<String>,
    /// The whole JSON object, parsed from `raw` on first use.
    body: OnceLock<Map<String, Value>>,
    /// `model`, if sent.
    pub model: Option<String>,
    /// `models`, the fallback list (an ngrok extension).
    pub models: Vec<String>,
    /// `stream: true`.
    pub stream: bool,
    /// `stream_options.include_usage: true`.
    pub include_usage: bool,
    /// The smallest output-token limit sent (`max_tokens`, `max_completion_tokens`,
    /// `max_output_tokens`), if any.
    pub max_output_tokens: Option<u64>,
    /// Estimated input tokens by the character heuristic (see `tokens`), counted while the body
    /// is checked; [`Self::input_estimate_for`] counts with a model's own vocabulary.
    pub input_estimate: u64,
}

/// A request's input tokens for one model, counted when first asked for (a BPE count costs
/// about 24 µs per KB of prompt, so only what needs it pays it).
#[derive(Debug)]
pub struct InputEstimate {
    raw: Bytes,
    tokenizer: Tokenizer,
    tokens: OnceLock<u64>,
}

impl InputEstimate {
    /// The estimate.
    pub fn tokens(&self) -> u64 {
        *self.tokens.get_or_init(|| {
            // `raw` was checked to be one JSON object when the request was parsed.
            let body: Map<String, Value> = serde_json::from_slice(&self.raw).unwrap_or_default();
            estimate_input_tokens(&body, self.tokenizer)
        })
    }
}

/// A malformed request body (`ERR_KEYGATE_3801`, 400).
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum RequestError {
    #[error("request body is not valid JSON: {0}")]
    NotJson(String),
    #[error("request body must be a JSON object")]
    NotObject,
    #[error("'model' must be a string")]
    ModelNotString,
    #[error("'models' must be a list of strings")]
    ModelsNotList,
    #[error("'models[{0}]' must be a string")]
    ModelsEntryNotString(usize),
    #[error("'stream' must be a boolean")]
    StreamNotBool,
    #[error("'models' may list at most {MAX_MODELS} models")]
    TooManyModels,
    /// A top-level key sent twice: parsers disagree on which one counts, so a provider could read
    /// another `model` than the one the policy checked.
    #[error("duplicate key '{0}'")]
    DuplicateKey(String),
}

impl ClientRequest {
    /// Parses a request body: checks that it is one JSON object without duplicate top-level
    /// keys and reads the fields the gateway needs; other values are checked but not kept.
    pub fn parse(raw: Bytes) -> Result<ClientRequest, RequestError> {
        let top = match serde_json::from_slice::<TopLevel>(&raw) {
            Ok(top) => top,
            Err(e) if e.classify() == serde_json::error::Category::Data => {
                return Err(RequestError::NotObject)
            }
            Err(e) => return Err(RequestError::NotJson(e.to_string())),
        };
        if let Some(key) = first_duplicate(&top.keys) {
            return Err(RequestError::DuplicateKey(key.to_owned()));
        }
        let model = match top.model {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s),
            Some(_) => return Err(RequestError::ModelNotString),
        };
        let models = match top.models {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) if items.len() > MAX_MODELS => {
                return Err(RequestError::TooManyModels)
            }
            Some(Value::Array(items)) => items
                .into_iter()
                .enumerate()
                .map(|(i, v)| match v {
                    Value::String(s) => Ok(s),
                    _ => Err(RequestError::ModelsEntryNotString(i)),
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(RequestError::ModelsNotList),
        };
        let stream = match top.stream {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => b,
            Some(_) => return Err(RequestError::StreamNotBool),
        };
        let include_usage = top
            .stream_options
            .as_ref()
            .and_then(|o| o.get("include_usage"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
        Ok(ClientRequest {
            raw,
            keys: top.keys,
            body: OnceLock::new(),
            model,
            models,
            stream,
            include_usage,
            max_output_tokens: top.max_output_tokens,
            input_estimate: Text::prompt_total(top.prompt_tokens),
        })
    }

    /// The input tokens for a model counted with `tokenizer`: the heuristic's count is known
    /// already, a BPE count is made from the body when first asked for.
    pub fn input_estimate_for(&self, tokenizer: Tokenizer) -> InputEstimate {
        InputEstimate {
            raw: self.raw.clone(),
            tokenizer,
            tokens: match tokenizer {
                Tokenizer::Heuristic => OnceLock::from(self.input_estimate),
                _ => OnceLock::new(),
            },
        }
    }

    /// The whole JSON object, unknown fields included (parsed on first use).
    pub fn body(&self) -> &Map<String, Value> {
        self.body.get_or_init(|| {
            // `raw` was checked to be one JSON object when the request was parsed.
            serde_json::from_slice(&self.raw).unwrap_or_default()
        })
    }

    /// Whether the client sent top-level `key`.
    pub fn has_key(&self, key: &str) -> bool {
        self.keys.iter().any(|k| k == key)
    }

    /// The models the client named, `model` first then `models`, without auto markers or repeats.
    pub fn requested(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for name in self.model.iter().chain(&self.models) {
            let name = name.trim();
            if name.is_empty() || is_auto(name) || out.iter().any(|o| o.eq_ignore_ascii_case(name))
            {
                continue;
            }
            out.push(name.to_owned());
        }
        out
    }
}

/// A key sent twice at the top level, if any (sorting keeps this linear-logarithmic for bodies
/// with many keys).
fn first_duplicate(keys: &[String]) -> Option<&str> {
    let mut sorted: Vec<&str> = keys.iter().map(String::as_str).collect();
    sorted.sort_unstable();
    sorted.windows(2).find(|w| w[0] == w[1]).map(|w| w[0])
}

/// The top level of the object: every key, and the values of the fields the gateway reads.
/// Every other value is checked as [`Text`] checks it, and skipped without building a tree.
struct TopLevel {
    keys: Vec<String>,
    model: Option<Value>,
    models: Option<Value>,
    stream: Option<Value>,
    stream_options: Option<Value>,
    max_output_tokens: Option<u64>,
    /// The estimated tokens of the prompt fields.
    prompt_tokens: u64,
}

impl<'de> Deserialize<'de> for TopLevel {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor;
        impl<'de> Visitor<'de> for ObjectVisitor {
            type Value = TopLevel;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<TopLevel, A::Error> {
                let mut top = TopLevel {
                    keys: Vec::new(),
                    model: None,
                    models: None,
                    stream: None,
                    stream_options: None,
                    max_output_tokens: None,
                    prompt_tokens: 0,
                };
                while let Some(key) = access.next_key::<String>()? {
                    let slot = match key.as_str() {
                        "model" => &mut top.model,
                        "models" => &mut top.models,
                        "stream" => &mut top.stream,
                        "stream_options" => &mut top.stream_options,
                        "max_tokens" | "max_completion_tokens" | "max_output_tokens" => {
                            if let Some(max) = access.next_value::<Value>()?.as_u64() {
                                let smallest = top.max_output_tokens.map_or(max, |m| m.min(max));
                                top.max_output_tokens = Some(smallest);
                            }
                            top.keys.push(key);
                            continue;
                        }
                        _ => {
                            // Every value is checked; prompt fields are counted in the same pass.
                            let text = access.next_value::<Text>()?;
                            if let Some(messages) = prompt_field(&key) {
                                top.prompt_tokens += text.prompt_tokens(messages);
                            }
                            top.keys.push(key);
                            continue;
                        }
                    };
                    // A duplicate keeps the first value; `parse` refuses the body anyway.
                    let value = access.next_value::<Value>()?;
                    slot.get_or_insert(value);
                    top.keys.push(key);
                }
                Ok(top)
            }
        }
        deserializer.deserialize_map(ObjectVisitor)
    }
}

/// Whether `name` asks the gateway to pick the model (`ngrok/auto`, `keygate/auto`).
pub fn is_auto(name: &str) -> bool {
    AUTO_MODELS.iter().any(|a| a.eq_ignore_ascii_case(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_fields_it_needs_and_keeps_the_rest() {
        let req = ClientRequest::parse(Bytes::from_static(
            br#"{"model":"gpt-4o","models":["claude-haiku-4-5","GPT-4o"],"stream":true,
                 "stream_options":{"include_usage":true},"messages":[],"x_vendor":{"a":1}}"#,
        ))
        .unwrap();
        assert_eq!(req.model.as_deref(), Some("gpt-4o"));
        assert!(req.stream && req.include_usage);
        assert_eq!(req.requested(), ["gpt-4o", "claude-haiku-4-5"]);
        assert_eq!(req.body()["x_vendor"]["a"], 1);
        assert_eq!(
            req.keys,
            [
                "model",
                "models",
                "stream",
                "stream_options",
                "messages",
                "x_vendor"
            ]
        );
        assert!(req.has_key("x_vendor") && !req.has_key("temperature"));
        assert_eq!(req.max_output_tokens, None);
    }

    #[test]
    fn the_output_limit_is_the_smallest_sent() {
        let parse = |body: &'static str| ClientRequest::parse(Bytes::from(body)).unwrap();
        let limit = |body| parse(body).max_output_tokens;
        assert_eq!(limit(r#"{"max_tokens": 300}"#), Some(300));
        assert_eq!(
            limit(r#"{"max_tokens": 300, "max_completion_tokens": 200}"#),
            Some(200)
        );
        assert_eq!(
            limit(r#"{"max_output_tokens": 50, "model": "x"}"#),
            Some(50)
        );
        assert_eq!(limit(r#"{"max_tokens": null, "max_tokens_x": 5}"#), None);
        assert_eq!(
            parse(r#"{"max_tokens": 9, "stream": true}"#).keys,
            ["max_tokens", "stream"]
        );
    }

    #[test]
    fn auto_and_missing_models() {
        let req = ClientRequest::parse(Bytes::from_static(
            br#"{"model":"ngrok/auto","messages":[]}"#,
        ))
        .unwrap();
        assert!(req.requested().is_empty());
        let req = ClientRequest::parse(Bytes::from_static(br#"{"messages":[]}"#)).unwrap();
        assert!(req.model.is_none() && !req.stream);
    }

    #[test]
    fn malformed_bodies_are_3801() {
        let many = format!(
            "{{\"models\":{}}}",
            serde_json::json!(vec!["m"; MAX_MODELS + 1])
        );
        assert_eq!(
            ClientRequest::parse(many.into()),
            Err(RequestError::TooManyModels)
        );
        let mut wide: Vec<String> = (0..5000).map(|i| format!("\"k{i}\":[{i}]")).collect();
        wide.push("\"k17\":{}".to_owned());
        assert_eq!(
            ClientRequest::parse(format!("{{{}}}", wide.join(",")).into()),
            Err(RequestError::DuplicateKey("k17".into()))
        );
        // What a JSON tree refuses deep inside a value is refused here too, although the value
        // is not kept: a lone surrogate, invalid UTF-8, a number out of range.
        for body in [
            &br#"{"model":"gpt-4o","messages":[{"content":"\ud800"}]}"#[..],
            &b"{\"model\":\"gpt-4o\",\"messages\":[{\"content\":\"\xff\"}]}"[..],
            &br#"{"model":"gpt-4o","temperature":1e400}"#[..],
            // Also in the parts of a prompt the token estimate does not count.
            &br#"{"messages":[{"content":[{"type":"image_url","image_url":{"url":"\ud800"}}]}]}"#[..],
        ] {
            assert!(serde_json::from_slice::<Value>(body).is_err());
            let err = ClientRequest::parse(Bytes::copy_from_slice(body)).unwrap_err();
            assert!(matches!(err, RequestError::NotJson(_)), "{err:?}");
        }
        let cases: [(&'static [u8], RequestError); 9] = [
            (b"{", RequestError::NotJson(String::new())),
            (b"[1]", RequestError::NotObject),
            (b"\"text\"", RequestError::NotObject),
            (b"{\"a\":1} x", RequestError::NotJson(String::new())),
            (
                br#"{"model":"gpt-4o","messages":[],"model":"o1-pro"}"#,
                RequestError::DuplicateKey("model".into()),
            ),
            (br#"{"model":5}"#, RequestError::ModelNotString),
            (br#"{"models":"gpt-4o"}"#, RequestError::ModelsNotList),
            (
                br#"{"models":["a",1]}"#,
                RequestError::ModelsEntryNotString(1),
            ),
            (br#"{"stream":"yes"}"#, RequestError::StreamNotBool),
        ];
        for (body, expected) in cases {
            let err = ClientRequest::parse(Bytes::from_static(body)).unwrap_err();
            match expected {
                RequestError::NotJson(_) => assert!(matches!(err, RequestError::NotJson(_))),
                expected => assert_eq!(err, expected),
            }
        }
    }
}
