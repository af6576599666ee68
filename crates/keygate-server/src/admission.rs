//! Admission: the caps on open client connections (`--max-connections`) and on requests in
//! progress (`--max-requests`), and the drain state `/readyz` reports after SIGTERM.
//!
//! A place is a semaphore permit taken without waiting: over a cap the answer is an immediate
//! 503, never a queue, so an overloaded gateway sheds load instead of stacking latency.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use http::header::{CONNECTION, RETRY_AFTER};
use http::{HeaderValue, Response};
use keygate_policy::body::Body;
use keygate_policy::{ErrorCode, GatewayError};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The caps and the drain state of one gateway.
pub struct Admission {
    connections: Arc<Semaphore>,
    requests: Arc<Semaphore>,
    draining: AtomicBool,
}

/// A connection's or a request's place under its cap, given back when dropped.
pub struct Place {
    _permit: OwnedSemaphorePermit,
}

impl Place {
    /// A free place among `places`, without waiting.
    fn take(places: &Arc<Semaphore>) -> Option<Place> {
        let permit = Arc::clone(places).try_acquire_owned().ok()?;
        Some(Place { _permit: permit })
    }
}

impl Admission {
    pub fn new(max_connections: usize, max_requests: usize) -> Self {
        Self {
            connections: Arc::new(Semaphore::new(max_connections)),
            requests: Arc::new(Semaphore::new(max_requests)),
            draining: AtomicBool::new(false),
        }
    }

    /// A place for a new client connection, if one is free.
    pub fn connection(&self) -> Option<Place> {
        Place::take(&self.connections)
    }

    /// A place for a new request, if one is free.
    pub fn request(&self) -> Option<Place> {
        Place::take(&self.requests)
    }

    /// SIGTERM arrived: `/readyz` answers 503 from now on.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }
}

/// Which cap refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cap {
    Connections,
    Requests,
}

impl Cap {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Cap::Connections => "connections",
            Cap::Requests => "requests",
        }
    }

    /// The 503 answered over this cap, with `Retry-After: 1`.
    pub fn error(self) -> GatewayError {
        let message = match self {
            Cap::Connections => "the gateway is serving as many connections as it may (--max-connections); retry shortly",
            Cap::Requests => "the gateway is running as many requests as it may (--max-requests); retry shortly",
        };
        GatewayError::new(ErrorCode::Overloaded, message)
            .with_header(RETRY_AFTER, HeaderValue::from(1))
    }

    /// Marks `response` (this cap's answer) so that a connection over `--max-connections` is
    /// closed after it (`Connection: close`; HTTP/2 drops the header and keeps answering 503).
    pub fn finish(self, response: &mut Response<Body>) {
        if self == Cap::Connections {
            (response.headers_mut()).insert(CONNECTION, HeaderValue::from_static("close"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_are_given_back_when_dropped() {
        let admission = Admission::new(1, 2);
        let connection = admission.connection().expect("a free place");
        assert!(admission.connection().is_none());
        let requests = [admission.request(), admission.request()];
        assert!(requests.iter().all(Option::is_some));
        assert!(admission.request().is_none());
        drop(connection);
        drop(requests);
        assert!(admission.connection().is_some());
        assert!(admission.request().is_some());
    }

    #[test]
    fn over_a_cap_the_answer_is_a_503_in_the_clients_format() {
        for (cap, format, closes) in [
            (Cap::Connections, keygate_ai::ApiFormat::Anthropic, true),
            (Cap::Requests, keygate_ai::ApiFormat::OpenAi, false),
        ] {
            let mut response = cap.error().into_response(format);
            cap.finish(&mut response);
            assert_eq!(response.status(), 503);
            assert_eq!(response.headers()[RETRY_AFTER], "1");
            assert_eq!(response.headers().get(CONNECTION).is_some(), closes);
        }
    }
}
