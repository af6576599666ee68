//! The LLM domain: provider catalog, model resolution, selection, wire formats, SSE scanning,
//! token estimates, error shapes. No HTTP server or policy dependencies.

pub mod api_format;

pub use api_format::{error_body, ApiFormat};
