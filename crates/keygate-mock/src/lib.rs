//! A fast mock LLM provider for Keygate's tests and benchmarks.
//!
//! [`MockServer`] speaks OpenAI (`/v1/chat/completions`, `/v1/completions`, `/v1/embeddings`,
//! `/v1/responses`, `/v1/models`) and Anthropic (`/v1/messages`, `/v1/messages/count_tokens`)
//! wire formats, streamed and not, echoing the last user message. The prompt scripts tool calls
//! (`mock-tool: NAME {json}` lines), a conversation ending with tool results is acknowledged
//! (`tool result: ...`), and thinking / reasoning and prompt-cache usage are reported when asked
//! (`x-mock-cache-read`, `x-mock-cache-write`). Tests script failures with
//! request headers (`x-mock-status`, `x-mock-delay-ms`, `x-mock-chunk-delay-ms`, `x-mock-chunks`,
//! `x-mock-drop`) or with words in the API key (`fail429`, `slow250`, `drop-mid`, ...); see
//! `docs/testing.md`. Every request is recorded and readable in process ([`MockServer::requests`]) or
//! over HTTP (`GET`/`DELETE /_mock/requests`). The model list `GET .../models` answers can be
//! set ([`MockConfig::with_models`], [`MockServer::set_models`], `PUT /_mock/models`), to play a
//! self-hosted server whose models Keygate discovers.
//!
//! With [`MockConfig::with_tls`] it serves HTTPS (ALPN `h2` and `http/1.1`); [`certs`] makes the
//! test certificates.
//!
//! [`idp`] is a local OpenID Connect provider for the login actions' tests.
//!
//! The [`load`] module is the fixed-rate load generator behind the `keygate-load` binary.

mod anthropic;
mod body;
pub mod certs;
mod config;
mod conn;
mod controls;
mod errors;
pub mod idp;
pub mod load;
mod openai;
mod record;
mod reply;
mod responses;
mod router;
mod script;
mod server;
mod text;
mod tls;

pub use config::{MockConfig, MockTls};
pub use record::RecordedRequest;
pub use server::{MockServer, StartError};
