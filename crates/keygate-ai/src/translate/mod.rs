//! Translation between the Anthropic Messages, OpenAI Chat Completions and OpenAI Responses
//! formats: requests, whole answers and SSE streams, both ways. Pure: no I/O.
//!
//! Every format decodes into the neutral types of [`ir`] and encodes from them.

pub mod ir;
