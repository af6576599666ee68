//! The LLM domain: provider catalog, model resolution, wire formats (request transformation,
//! upstream URL and headers), SSE scanning, usage and token estimates, the in-process mock
//! provider, rolling metrics and error shapes. No HTTP server, policy or CEL dependencies.

pub mod api_format;
pub mod catalog;
pub mod credentials;
pub mod discovery;
pub mod metrics;
pub mod mock;
pub mod models_list;
pub mod redaction;
pub mod registry;
pub mod request;
pub mod spec;
pub mod sse;
pub mod surface;
pub mod tokens;
pub mod transform;
pub mod translate;
pub mod url;
pub mod usage;

pub use api_format::{error_body, ApiFormat};
pub use catalog::{Catalog, CatalogError};
pub use credentials::{
    bearer_token, client_credential, header_token, redact, set_credential, upstream_headers,
    InvalidKey, DEFAULT_ANTHROPIC_VERSION,
};
pub use discovery::{parse_model_list, DiscoveredModels, ModelListError};
pub use metrics::{MetricsStore, Outcome, Sample};
pub use mock::{respond as mock_respond, MockResponse};
pub use models_list::models_list;
pub use redaction::{Redaction, Rule, StreamRedactor};
pub use registry::{
    Candidate, GatewaySpec, Model, Provider, Registry, RegistryError, RejectReason, Rejection,
    Resolution, ResolveError, Restriction, StreamUsage, UpstreamTarget,
};
pub use request::{is_auto, ClientRequest, InputEstimate, RequestError};
pub use spec::{ModelSpec, ParamName, Pricing, ProviderSpec, SurfaceSpec};
pub use sse::{error_event, fill_usage_event, FinalEvent, SseScanner};
pub use surface::Surface;
pub use tokens::{estimate_input_tokens, estimate_text_tokens, OutputEstimate, Tokenizer};
pub use transform::{prepare_body, BodyOptions, PreparedBody};
pub use url::upstream_url;
pub use usage::TokenUsage;
