//! Internal endpoints (`NAME.internal`): policies the server runs in process for
//! `forward-internal`. The server implements [`InternalEndpoints`]; this crate only calls it.

use std::future::Future;
use std::pin::Pin;

use http::Response;

use crate::body::Body;
use crate::exchange::Exchange;

/// What serving an exchange on an internal endpoint yields: the response, or `None` when its
/// policy closed the connection.
pub type InternalFuture<'a> = Pin<Box<dyn Future<Output = Option<Response<Body>>> + Send + 'a>>;

/// The internal endpoints a server declared at start (the set never changes while it runs;
/// their policies may reload).
pub trait InternalEndpoints: Send + Sync {
    /// Whether `name` (a URL's lowercase authority: `api.internal`, `svc.internal:1234`) is one.
    fn contains(&self, name: &str) -> bool;

    /// Runs `ex` through endpoint `name` as a request of its own: its `on_http_request`, its
    /// upstream (404 without one), its `on_http_response`. `name` must be one [`contains`]
    /// accepts.
    ///
    /// [`contains`]: InternalEndpoints::contains
    fn serve<'a>(&'a self, name: &'a str, ex: &'a mut Exchange) -> InternalFuture<'a>;
}

/// How many `forward-internal` hops a request has made, kept in its extensions (absent: none).
/// The proxy adds no `X-Forwarded-For` entry for such a request: the first hop did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InternalHops(pub u8);

impl InternalHops {
    /// The hops `request` has made.
    pub fn of(request: &http::request::Parts) -> u8 {
        request.extensions.get::<InternalHops>().map_or(0, |h| h.0)
    }
}
