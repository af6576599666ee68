//! The upstream connection pools: one per thread, listing connections per origin.
//!
//! **Why per thread.** The gateway serves each client connection on one core's runtime; an
//! upstream connection opened there is driven by a task on the same runtime and is only ever
//! used by requests running there. So a request never wakes another thread, and the lists need
//! no lock: a thread-local `Vec` of origins, each with a `Vec` of connections, found by a scan
//! (a thread talks to few origins). A general pool that hashes the origin, locks a mutex and
//! spawns a task to return each connection costs a noticeable share of a proxied request.
//!
//! **Keys.** An origin is its authority (`host:port`) plus, for `https://`, the id of the TLS
//! settings its connections were opened with: a provider with its own CA or client certificate
//! never shares connections with one that has other settings. `http://` origins have no TLS id.
//!
//! **HTTP/1.1 connections** serve one request at a time. A request takes the first ready
//! connection out of its origin's list (closed ones met on the way are dropped; connections kept
//! first are the likeliest to have finished, so the scan is usually short), hands it its request
//! and puts it straight back, busy; it is ready again once hyper has read the response. A request
//! that a reused connection closed on before taking it is sent once more on a new connection.
//!
//! **HTTP/2 connections** (chosen by ALPN over TLS) carry many streams, but never more than the
//! peer's `SETTINGS_MAX_CONCURRENT_STREAMS`: past it hyper would queue requests behind each
//! other, and a long LLM stream can hold a slot for minutes. So each HTTP/2 connection counts
//! its open streams (`streams`): a request takes a slot, its response body gives it back when it ends or is
//! dropped (a request that failed gives it back at once). The connection's driver publishes the
//! peer's current limit after every poll (hyper has no other way to read the peer's SETTINGS),
//! and a new connection is handed out only once the peer's first SETTINGS have arrived, so the
//! limit compared against is always the peer's. A request uses an
//! HTTP/2 connection with a free slot and stays in the list; when every connection is full it
//! opens another one.
//!
//! **Opening.** When a TLS origin has no connection with room and a connection to it is being
//! opened, a request whose origin may speak HTTP/2 (not known yet, or known to) waits for that
//! connection instead of opening its own: a burst of requests to a new HTTP/2 origin then opens
//! one connection per `max_concurrent_streams` requests, not one per request. The opener wakes
//! the waiters when it is done (a watch channel closing); if it failed, each waiter opens its own
//! connection rather than waiting behind the next attempt. Origins known to speak HTTP/1.1, and
//! all `http://` origins, open connections in parallel without waiting.
//!
//! **Limits and sweeps.** At most [`MAX_PER_ORIGIN`] connections are listed per origin, busy or
//! idle; beyond that, extra connections serve their request and close. A sweep drops closed
//! connections, idle ones unused for [`IDLE_TIMEOUT`] and idle ones beyond
//! [`MAX_IDLE_PER_ORIGIN`] (an HTTP/2 connection is idle when it has no open stream): every
//! [`SWEEP_EVERY`] checkouts of an origin, and every [`SWEEP_INTERVAL`] from a timer task that
//! runs while the thread lists any connection, so idle connections close even without traffic.

use std::cell::{Cell, RefCell};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::header::{HeaderValue, HOST};
use http::uri::{Authority, PathAndQuery};
use http::{Request, Response, Uri};
use hyper::client::conn::{http1, http2};
use tokio::sync::watch;
use tokio_rustls::TlsConnector;

use crate::body::Body;
use crate::connect::{Connector, Fresh};
use crate::error::SendError;
use crate::response::ResponseBody;
use crate::streams::{StreamSlot, Streams};

/// Connections listed per origin by each thread, busy or idle; beyond this, extra connections
/// serve one request and close (so many requests in flight do not churn connections).
const MAX_PER_ORIGIN: usize = 1024;
/// Idle connections kept per origin by each thread after a sweep: enough for a busy core, few
/// enough that a past burst does not keep holding every connection's buffers.
const MAX_IDLE_PER_ORIGIN: usize = 64;
/// A connection unused this long is closed by the next sweep.
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// Checkouts between two sweeps of an origin's list.
const SWEEP_EVERY: u32 = 64;
/// How often the timer task sweeps a thread's lists.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// Which connections may serve a request.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Key {
    pub authority: Authority,
    /// The TLS settings' id for `https://`; `None` for `http://`.
    pub tls: Option<u64>,
}

enum Sender {
    Http1(http1::SendRequest<Body>),
    Http2(http2::SendRequest<Body>, Arc<Streams>),
}

impl Sender {
    fn is_closed(&self) -> bool {
        match self {
            Sender::Http1(sender) => sender.is_closed(),
            Sender::Http2(sender, _) => sender.is_closed(),
        }
    }

    fn is_idle(&self) -> bool {
        match self {
            Sender::Http1(sender) => sender.is_ready(),
            Sender::Http2(_, streams) => streams.is_idle(),
        }
    }
}

struct Connection {
    sender: Sender,
    last_used: Instant,
}

/// What an origin's connections negotiated, as far as this thread knows.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Protocol {
    Unknown,
    Http1,
    Http2,
}

/// The connections of one origin.
struct Origin {
    key: Key,
    connections: Vec<Connection>,
    checkouts: u32,
    protocol: Protocol,
    /// Set while a request opens a connection others wait for; `true` is sent if it failed.
    opening: Option<watch::Receiver<bool>>,
}

impl Origin {
    fn new(key: Key) -> Self {
        Self {
            key,
            connections: Vec::new(),
            checkouts: 0,
            protocol: Protocol::Unknown,
            opening: None,
        }
    }

    /// A connection with room for one more request, dropping closed ones met on the way. A
    /// ready HTTP/1.1 connection leaves the list (it goes back once it has its request); an
    /// HTTP/2 one stays and lends a stream slot.
    fn take_ready(&mut self) -> Option<Ready> {
        let mut index = 0;
        while let Some(connection) = self.connections.get_mut(index) {
            match &connection.sender {
                sender if sender.is_closed() => {
                    self.connections.swap_remove(index);
                }
                Sender::Http1(sender) if sender.is_ready() => {
                    if let Sender::Http1(sender) = self.connections.swap_remove(index).sender {
                        return Some(Ready::Http1(sender));
                    }
                }
                Sender::Http2(sender, streams) if streams.has_room() => {
                    let ready = Ready::Http2(sender.clone(), streams.take());
                    connection.last_used = Instant::now();
                    return Some(ready);
                }
                _ => index += 1,
            }
        }
        None
    }

    /// Drops closed connections, idle ones unused for [`IDLE_TIMEOUT`], and idle ones beyond
    /// [`MAX_IDLE_PER_ORIGIN`].
    fn sweep(&mut self, now: Instant) {
        let mut idle = 0;
        self.connections.retain(|c| {
            if c.sender.is_closed() {
                return false;
            }
            if !c.sender.is_idle() {
                return true;
            }
            idle += 1;
            idle <= MAX_IDLE_PER_ORIGIN && now.duration_since(c.last_used) <= IDLE_TIMEOUT
        });
    }

    /// Whether a request is opening a connection right now.
    fn is_opening(&self) -> bool {
        self.opening
            .as_ref()
            .is_some_and(|opening| opening.has_changed().is_ok())
    }

    /// No connection has room: wait for the one being opened when it may speak HTTP/2 (it will
    /// likely have room for this request too), else open one, announcing it when waiting is
    /// allowed.
    fn open_or_wait(&mut self, may_wait: bool) -> Checkout {
        if !may_wait || self.protocol == Protocol::Http1 {
            return Checkout::Open(None);
        }
        if self.is_opening() {
            if let Some(opening) = &self.opening {
                return Checkout::Wait(opening.clone());
            }
        }
        let (done, opening) = watch::channel(false);
        self.opening = Some(opening);
        Checkout::Open(Some(done))
    }
}

/// A connection a request can be sent on.
enum Ready {
    Http1(http1::SendRequest<Body>),
    Http2(http2::SendRequest<Body>, StreamSlot),
}

enum Checkout {
    Ready(Ready),
    /// Another request is opening a connection: wait until it is done.
    Wait(watch::Receiver<bool>),
    /// Open a connection; with a sender, others wait for it (send `true` if it fails).
    Open(Option<watch::Sender<bool>>),
}

thread_local! {
    static ORIGINS: RefCell<Vec<Origin>> = const { RefCell::new(Vec::new()) };
    /// A sweeper task is running for this thread's lists.
    static SWEEPER: Cell<bool> = const { Cell::new(false) };
}

/// Sends `request` (an absolute URI with a `Host` header) on a pooled connection, or a new one
/// opened by `connector`, over TLS when `tls` (its settings' id and connector) is given.
pub(crate) async fn send(
    connector: &Connector,
    tls: Option<(u64, &TlsConnector)>,
    mut request: Request<Body>,
) -> Result<Response<ResponseBody>, SendError> {
    let target = request.uri().clone();
    let authority = target.authority().ok_or(SendError::NoHost)?.clone();
    let key = Key {
        authority,
        tls: tls.map(|(id, _)| id),
    };
    let tls = tls.map(|(_, connector)| connector);
    let mut reused = true;
    let mut may_wait = true;
    let mut ready = loop {
        match checkout(&key, may_wait) {
            Checkout::Ready(ready) => break ready,
            Checkout::Wait(mut opening) => {
                let _ = opening.changed().await;
                // The connection waited for failed: open one rather than queue again.
                may_wait = !*opening.borrow();
            }
            Checkout::Open(announced) => {
                reused = false;
                match connector.open(&target, &key.authority, tls).await {
                    Ok(fresh) => break opened(&key, fresh),
                    Err(err) => {
                        if let Some(announced) = announced {
                            let _ = announced.send(true);
                        }
                        return Err(err);
                    }
                }
            }
        }
    };
    loop {
        let sent = match ready {
            Ready::Http1(mut sender) => {
                // HTTP/1.1 requests carry the origin form; the Host header names the origin.
                *request.uri_mut() = Uri::from(
                    target
                        .path_and_query()
                        .cloned()
                        .unwrap_or_else(|| PathAndQuery::from_static("/")),
                );
                let response = sender.try_send_request(request);
                keep(&key, Sender::Http1(sender));
                response
                    .await
                    .map(|r| r.map(|b| ResponseBody::new(b, None)))
            }
            Ready::Http2(mut sender, slot) => {
                to_http2_form(&mut request, &target);
                let response = sender.try_send_request(request).await;
                response.map(|r| r.map(|b| ResponseBody::new(b, Some(slot))))
            }
        };
        match sent {
            Ok(response) => return Ok(response),
            Err(mut error) => match error.take_message() {
                Some(unsent) if reused => {
                    request = unsent;
                    reused = false;
                    ensure_host(&mut request, Some(&key.authority));
                    ready = opened(&key, connector.open(&target, &key.authority, tls).await?);
                }
                _ => return Err(SendError::Http(error.into_error())),
            },
        }
    }
}

/// Sets `Host` to `authority` (or the URI's) when the request has none.
pub(crate) fn ensure_host(request: &mut Request<Body>, authority: Option<&Authority>) {
    if request.headers().contains_key(HOST) {
        return;
    }
    // `host[:port]`: userinfo (`user:pass@`) never goes into Host.
    let host = authority
        .or_else(|| request.uri().authority())
        .and_then(|a| a.as_str().rsplit('@').next())
        .and_then(|host| HeaderValue::from_str(host).ok());
    if let Some(host) = host {
        request.headers_mut().insert(HOST, host);
    }
}

/// HTTP/2 carries the host in `:authority`, taken from the URI, and a client must not send a
/// `Host` that differs from it: the request's `Host` (which a proxy may keep from its client)
/// becomes the URI's authority.
fn to_http2_form(request: &mut Request<Body>, target: &Uri) {
    let host = request.headers_mut().remove(HOST);
    let authority = host.and_then(|h| Authority::try_from(h.as_bytes()).ok());
    let mut parts = target.clone().into_parts();
    if let Some(authority) = authority {
        parts.authority = Some(authority);
    }
    if let Ok(uri) = Uri::from_parts(parts) {
        *request.uri_mut() = uri;
    }
}

/// A connection to `key` from this thread's list, or what to do without one.
fn checkout(key: &Key, may_wait: bool) -> Checkout {
    ORIGINS.with_borrow_mut(|origins| {
        let Some(index) = origins.iter().position(|o| o.key == *key) else {
            if key.tls.is_none() {
                return Checkout::Open(None);
            }
            let mut origin = Origin::new(key.clone());
            let checkout = origin.open_or_wait(may_wait);
            origins.push(origin);
            return checkout;
        };
        let origin = &mut origins[index];
        origin.checkouts = origin.checkouts.wrapping_add(1);
        if origin.checkouts % SWEEP_EVERY == 0 {
            origin.sweep(Instant::now());
        }
        if let Some(ready) = origin.take_ready() {
            return Checkout::Ready(ready);
        }
        if key.tls.is_some() {
            return origin.open_or_wait(may_wait);
        }
        // A plain origin left with no connection is forgotten.
        if origin.connections.is_empty() {
            origins.swap_remove(index);
        }
        Checkout::Open(None)
    })
}

/// A connection just opened, as a [`Ready`]: an HTTP/2 one is listed at once (with this
/// request's stream taken) so waiting requests find it; what was negotiated is remembered.
fn opened(key: &Key, fresh: Fresh) -> Ready {
    let (ready, protocol, listed) = match fresh {
        Fresh::Http1(sender) => (Ready::Http1(sender), Protocol::Http1, None),
        Fresh::Http2(sender, streams) => {
            let slot = streams.take();
            let listed = Sender::Http2(sender.clone(), streams);
            (Ready::Http2(sender, slot), Protocol::Http2, Some(listed))
        }
    };
    if key.tls.is_some() {
        with_origin(key, |origin| {
            origin.protocol = protocol;
            if let Some(listed) = listed {
                list(origin, listed);
            }
        });
    }
    ready
}

/// Puts an HTTP/1.1 connection (now busy with a request) back in this thread's list.
fn keep(key: &Key, sender: Sender) {
    with_origin(key, |origin| list(origin, sender));
}

fn list(origin: &mut Origin, sender: Sender) {
    if origin.connections.len() < MAX_PER_ORIGIN {
        origin.connections.push(Connection {
            sender,
            last_used: Instant::now(),
        });
    }
}

/// Runs `f` on `key`'s origin in this thread's list (added if missing), and makes sure the
/// sweeper runs.
fn with_origin(key: &Key, f: impl FnOnce(&mut Origin)) {
    ORIGINS.with_borrow_mut(|origins| {
        let index = match origins.iter().position(|o| o.key == *key) {
            Some(index) => index,
            None => {
                origins.push(Origin::new(key.clone()));
                origins.len() - 1
            }
        };
        f(&mut origins[index]);
    });
    if !SWEEPER.replace(true) {
        // On a worker (a current-thread runtime) the task runs on this same thread.
        tokio::spawn(sweep_while_connections_are_listed());
    }
}

/// Sweeps this thread's lists every [`SWEEP_INTERVAL`] until they hold no connection.
async fn sweep_while_connections_are_listed() {
    loop {
        tokio::time::sleep(SWEEP_INTERVAL).await;
        let any = ORIGINS.with_borrow_mut(|origins| {
            let now = Instant::now();
            for origin in origins.iter_mut() {
                origin.sweep(now);
            }
            origins.retain(|o| !o.connections.is_empty() || o.is_opening());
            !origins.is_empty()
        });
        if !any {
            SWEEPER.set(false);
            return;
        }
    }
}

/// Open connections listed for `authority` by this thread (any TLS settings).
#[cfg(test)]
pub(crate) fn listed(authority: &str) -> usize {
    ORIGINS.with_borrow(|origins| {
        origins
            .iter()
            .filter(|o| o.key.authority.as_str() == authority)
            .map(|o| {
                o.connections
                    .iter()
                    .filter(|c| !c.sender.is_closed())
                    .count()
            })
            .sum()
    })
}

#[cfg(test)]
mod tests;
