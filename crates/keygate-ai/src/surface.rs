//! The client-facing API surfaces (`/v1/chat/completions`, `/v1/messages`, ...): the path fixes the
//! surface, and the surface fixes the API format.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::sse::FinalEvent;
use crate::ApiFormat;

/// One client-facing endpoint of the AI gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Surface {
    /// `POST /v1/chat/completions` (OpenAI).
    ChatCompletions,
    /// `POST /v1/completions` (OpenAI legacy completions).
    Completions,
    /// `POST /v1/embeddings` (OpenAI).
    Embeddings,
    /// `POST /v1/responses` (OpenAI Responses API).
    Responses,
    /// `POST /v1/messages` (Anthropic Messages).
    Messages,
    /// `POST /v1/messages/count_tokens` (Anthropic).
    CountTokens,
    /// `GET /v1/models` (OpenAI list shape), answered by the gateway itself.
    Models,
}

impl Surface {
    /// How many surfaces there are (`surface as usize` indexes per-surface tables): `Models` is
    /// the last variant.
    pub const COUNT: usize = Surface::Models as usize + 1;

    /// Every surface that is forwarded to a provider (all but [`Surface::Models`]).
    pub const FORWARDED: [Surface; 6] = [
        Surface::ChatCompletions,
        Surface::Completions,
        Surface::Embeddings,
        Surface::Responses,
        Surface::Messages,
        Surface::CountTokens,
    ];

    /// The surface a request's method and path (without query) address, if any.
    pub fn from_request(method: &http::Method, path: &str) -> Option<Surface> {
        let path = path.strip_suffix('/').unwrap_or(path);
        let surface = match path {
            "/v1/models" => Surface::Models,
            "/v1/chat/completions" => Surface::ChatCompletions,
            "/v1/completions" => Surface::Completions,
            "/v1/embeddings" => Surface::Embeddings,
            "/v1/responses" => Surface::Responses,
            "/v1/messages" => Surface::Messages,
            "/v1/messages/count_tokens" => Surface::CountTokens,
            _ => return None,
        };
        let expected = if surface == Surface::Models {
            http::Method::GET
        } else {
            http::Method::POST
        };
        (*method == expected).then_some(surface)
    }

    /// The surface's name in configuration (`chat-completions`, `messages`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Surface::ChatCompletions => "chat-completions",
            Surface::Completions => "completions",
            Surface::Embeddings => "embeddings",
            Surface::Responses => "responses",
            Surface::Messages => "messages",
            Surface::CountTokens => "count-tokens",
            Surface::Models => "models",
        }
    }

    /// The API format requests on this surface use.
    pub fn format(self) -> ApiFormat {
        match self {
            Surface::Messages | Surface::CountTokens => ApiFormat::Anthropic,
            _ => ApiFormat::OpenAi,
        }
    }

    /// The path clients call, e.g. `/v1/chat/completions`.
    pub fn client_path(self) -> &'static str {
        match self {
            Surface::ChatCompletions => "/v1/chat/completions",
            Surface::Completions => "/v1/completions",
            Surface::Embeddings => "/v1/embeddings",
            Surface::Responses => "/v1/responses",
            Surface::Messages => "/v1/messages",
            Surface::CountTokens => "/v1/messages/count_tokens",
            Surface::Models => "/v1/models",
        }
    }

    /// The path below a versioned base URL (`/chat/completions` under `https://api.openai.com/v1`).
    pub fn suffix(self) -> &'static str {
        &self.client_path()[3..]
    }

    /// The event that ends a complete stream on this surface (Responses also ends with
    /// `response.incomplete` or `response.failed`, which are complete streams of an unfinished
    /// or failed response).
    pub fn final_event(self) -> Option<FinalEvent> {
        match self {
            Surface::ChatCompletions | Surface::Completions => Some(FinalEvent::Done),
            Surface::Responses => Some(FinalEvent::Named(&[
                "response.completed",
                "response.incomplete",
                "response.failed",
            ])),
            Surface::Messages => Some(FinalEvent::Named(&["message_stop"])),
            Surface::Embeddings | Surface::CountTokens | Surface::Models => None,
        }
    }

    /// Whether requests on this surface may ask for a streamed (SSE) answer.
    pub fn can_stream(self) -> bool {
        matches!(
            self,
            Surface::ChatCompletions
                | Surface::Completions
                | Surface::Responses
                | Surface::Messages
        )
    }
}

impl fmt::Display for Surface {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Method;

    #[test]
    fn paths_map_to_surfaces_and_formats() {
        let post = Method::POST;
        assert_eq!(
            Surface::from_request(&post, "/v1/chat/completions"),
            Some(Surface::ChatCompletions)
        );
        assert_eq!(
            Surface::from_request(&post, "/v1/messages/count_tokens"),
            Some(Surface::CountTokens)
        );
        assert_eq!(
            Surface::from_request(&post, "/v1/responses/"),
            Some(Surface::Responses)
        );
        assert_eq!(
            Surface::from_request(&Method::GET, "/v1/models"),
            Some(Surface::Models)
        );
        assert_eq!(Surface::from_request(&post, "/v1/models"), None);
        assert_eq!(
            Surface::from_request(&Method::GET, "/v1/chat/completions"),
            None
        );
        assert_eq!(Surface::from_request(&post, "/v2/chat/completions"), None);
        for surface in Surface::FORWARDED {
            assert_eq!(
                Surface::from_request(&post, surface.client_path()),
                Some(surface)
            );
            assert_eq!(surface.format(), ApiFormat::for_path(surface.client_path()));
        }
        assert_eq!(Surface::CountTokens.suffix(), "/messages/count_tokens");
        assert_eq!(Surface::ChatCompletions.suffix(), "/chat/completions");
    }

    #[test]
    fn names_round_trip_through_serde() {
        for surface in Surface::FORWARDED {
            let json = serde_json::to_string(&surface).unwrap();
            assert_eq!(json, format!("\"{}\"", surface.name()));
            assert_eq!(serde_json::from_str::<Surface>(&json).unwrap(), surface);
        }
    }
}
