//! Listeners, TLS, hot reload, upstream proxy, admin endpoints, metrics, access log, shutdown.
