//! Listeners, TLS, hot reload, upstream proxy, admin endpoints, metrics, access log, shutdown.
//!
//! [`run`] serves until SIGTERM/SIGINT; everything a request touches hangs off [`Gateway`].

mod access_log;
mod admin;
mod admission;
mod client_ip;
mod config;
mod gateway;
mod handler;
mod internal;
mod listener;
mod metrics;
mod otlp;
mod proxy;
mod reload;
mod reload_log;
mod request_id;
mod settle;
mod tls;
mod workers;

pub use admin::{AdminToken, KeyAdmin, KeyAdminError, ManagedKey, NewKeyForm};
pub use config::{InternalEndpointConfig, LogFormat, ServerConfig};
pub use gateway::{run, Services};
pub use metrics::Metrics;
