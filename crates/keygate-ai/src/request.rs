//! The client's request body: the fields the gateway reads (`model`, `models`, `stream`,
//! `stream_options.include_usage`), with every other field kept verbatim for forwarding.

use bytes::Bytes;
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::{Map, Value};

/// Most entries accepted in `models`: each may cost upstream attempts, so the list is bounded.
pub const MAX_MODELS: usize = 32;

/// Model names that ask the gateway to choose (reference 4.6).
const AUTO_MODELS: [&str; 2] = ["ngrok/auto", "keygate/auto"];

/// A parsed client request body.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientRequest {
    /// The body as the client sent it (forwarded as is when nothing needs to change).
    pub raw: Bytes,
    /// The whole JSON object, unknown fields included.
    pub body: Map<String, Value>,
    /// `model`, if sent.
    pub model: Option<String>,
    /// `models`, the fallback list (an ngrok extension).
    pub models: Vec<String>,
    /// `stream: true`.
    pub stream: bool,
    /// `stream_options.include_usage: true`.
    pub include_usage: bool,
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
    /// Parses a request body.
    pub fn parse(raw: Bytes) -> Result<ClientRequest, RequestError> {
        let body = match serde_json::from_slice::<TopLevel>(&raw) {
            Ok(TopLevel {
                duplicate: Some(key),
                ..
            }) => return Err(RequestError::DuplicateKey(key)),
            Ok(TopLevel { map, .. }) => map,
            Err(e) if e.classify() == serde_json::error::Category::Data => {
                return Err(RequestError::NotObject)
            }
            Err(e) => return Err(RequestError::NotJson(e.to_string())),
        };
        let model = match body.get("model") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => return Err(RequestError::ModelNotString),
        };
        let models = match body.get("models") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) if items.len() > MAX_MODELS => {
                return Err(RequestError::TooManyModels)
            }
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    v.as_str()
                        .map(str::to_owned)
                        .ok_or(RequestError::ModelsEntryNotString(i))
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(RequestError::ModelsNotList),
        };
        let stream = match body.get("stream") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(RequestError::StreamNotBool),
        };
        let include_usage = body
            .get("stream_options")
            .and_then(|o| o.get("include_usage"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
        Ok(ClientRequest {
            raw,
            body,
            model,
            models,
            stream,
            include_usage,
        })
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

/// The top-level object, noting the first key sent twice (anything else is a type error).
struct TopLevel {
    map: Map<String, Value>,
    duplicate: Option<String>,
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
                    map: Map::new(),
                    duplicate: None,
                };
                while let Some(key) = access.next_key::<String>()? {
                    let value = access.next_value::<Value>()?;
                    if top.map.contains_key(&key) {
                        top.duplicate.get_or_insert(key);
                    } else {
                        top.map.insert(key, value);
                    }
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
        assert_eq!(req.body["x_vendor"]["a"], 1);
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
