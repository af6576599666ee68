//! Client API formats and the error body each one's SDK understands.

use serde::{Deserialize, Serialize};
use serde_json::json;

/// The wire format a client speaks, fixed by the request path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApiFormat {
    /// OpenAI-style (`/v1/chat/completions`, ...) and every non-AI path.
    #[default]
    OpenAi,
    /// Anthropic Messages (`/v1/messages`, `/v1/messages/count_tokens`).
    Anthropic,
}

impl ApiFormat {
    /// The format a request path implies.
    pub fn for_path(path: &str) -> Self {
        if path == "/v1/messages" || path.starts_with("/v1/messages/") {
            ApiFormat::Anthropic
        } else {
            ApiFormat::OpenAi
        }
    }
}

impl ApiFormat {
    /// The format's name in configuration (`openai`, `anthropic`).
    pub fn name(self) -> &'static str {
        match self {
            ApiFormat::OpenAi => "openai",
            ApiFormat::Anthropic => "anthropic",
        }
    }
}

/// A JSON error body in the client's format.
///
/// OpenAI: `{"error": {"message", "type", "code"}}`; Anthropic:
/// `{"type": "error", "error": {"type", "message", "code"}}` (Anthropic SDKs ignore the extra `code`).
pub fn error_body(format: ApiFormat, kind: &str, message: &str, code: &str) -> Vec<u8> {
    let body = match format {
        ApiFormat::OpenAi => json!({"error": {"message": message, "type": kind, "code": code}}),
        ApiFormat::Anthropic => {
            json!({"type": "error", "error": {"type": kind, "message": message, "code": code}})
        }
    };
    body.to_string().into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_picks_format() {
        assert_eq!(ApiFormat::for_path("/v1/messages"), ApiFormat::Anthropic);
        assert_eq!(
            ApiFormat::for_path("/v1/messages/count_tokens"),
            ApiFormat::Anthropic
        );
        assert_eq!(ApiFormat::for_path("/v1/messagesx"), ApiFormat::OpenAi);
        assert_eq!(
            ApiFormat::for_path("/v1/chat/completions"),
            ApiFormat::OpenAi
        );
    }

    #[test]
    fn shapes_match_the_sdks() {
        let openai: serde_json::Value =
            serde_json::from_slice(&error_body(ApiFormat::OpenAi, "t", "m", "ERR_KEYGATE_1"))
                .unwrap();
        assert_eq!(openai["error"]["code"], "ERR_KEYGATE_1");
        assert_eq!(openai["error"]["message"], "m");
        let anthropic: serde_json::Value =
            serde_json::from_slice(&error_body(ApiFormat::Anthropic, "t", "m", "ERR_KEYGATE_1"))
                .unwrap();
        assert_eq!(anthropic["type"], "error");
        assert_eq!(anthropic["error"]["type"], "t");
    }
}
