//! Plain-HTTP (`http://`) upstreams: HTTP/1.1 connections kept per thread and per origin, reused
//! without hashing, locking or a task per request.
//!
//! hyper-util's pool (used for `https://`, where TLS, ALPN and HTTP/2 live) hashes the origin
//! three times per request, locks a mutex twice and spawns a task to put each connection back;
//! that was ~8k of a proxied request's ~60k instructions. Here a connection stays in its
//! thread's list while it serves a request, and the next request takes the first one that is
//! ready again; every so often a sweep drops closed connections and idle ones beyond the cap.

use std::cell::{Cell, RefCell};
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use http::uri::{Authority, PathAndQuery};
use http::{Request, Response, Uri};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::client::legacy::connect::HttpConnector;
use tower_service::Service;

use super::SendError;
use crate::body::Body;

/// Connections kept per origin by each thread, busy or idle; beyond this, extra connections
/// serve one request and close (so many requests in flight do not churn connections).
const MAX_PER_ORIGIN: usize = 1024;
/// Idle connections kept per origin by each thread after a sweep (each holds ~20 KiB).
const MAX_IDLE_PER_ORIGIN: usize = 64;
/// A connection unused this long is closed by the next sweep.
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// Checkouts between two sweeps of an origin's list.
const SWEEP_EVERY: u32 = 64;
/// While a thread keeps more idle connections than the cap allows, a timer sweeps its lists this
/// often, so a burst's connections are released without waiting for more traffic.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

static CONNECTOR: LazyLock<HttpConnector> = LazyLock::new(super::tcp_connector);

struct Connection {
    sender: SendRequest<Body>,
    last_used: Instant,
}

/// The connections of one origin (`host:port`).
struct Origin {
    authority: Authority,
    connections: Vec<Connection>,
    checkouts: u32,
}

impl Origin {
    /// Takes the first ready connection, dropping closed ones met on the way. Connections that
    /// were kept first are the likeliest to have finished, so the scan is usually short.
    fn take_ready(&mut self) -> Option<SendRequest<Body>> {
        let mut index = 0;
        while let Some(connection) = self.connections.get(index) {
            if connection.sender.is_closed() {
                self.connections.swap_remove(index);
            } else if connection.sender.is_ready() {
                return Some(self.connections.swap_remove(index).sender);
            } else {
                index += 1;
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
            if !c.sender.is_ready() {
                return true;
            }
            idle += 1;
            idle <= MAX_IDLE_PER_ORIGIN && now.duration_since(c.last_used) <= IDLE_TIMEOUT
        });
    }
}

thread_local! {
    static ORIGINS: RefCell<Vec<Origin>> = const { RefCell::new(Vec::new()) };
    /// A sweeper task is running for this thread's lists.
    static SWEEPER: Cell<bool> = const { Cell::new(false) };
}

/// Sends `request` (an `http://` URI and a `Host` header) on a pooled connection, or a new one.
/// A request that a reused connection closed on before taking it is sent once more on a new
/// connection.
pub(super) async fn send(mut request: Request<Body>) -> Result<Response<Incoming>, SendError> {
    let target = request.uri().clone();
    let authority = target.authority().ok_or(SendError::NoHost)?.clone();
    // HTTP/1.1 requests carry the origin form (`/path?query`); the Host header names the origin.
    *request.uri_mut() = Uri::from(
        target
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/")),
    );
    let mut reused = true;
    let mut sender = match checkout(&authority) {
        Some(sender) => sender,
        None => {
            reused = false;
            connect(&target).await?
        }
    };
    loop {
        let response = sender.try_send_request(request);
        keep(&authority, sender);
        match response.await {
            Ok(response) => return Ok(response),
            Err(mut error) => match error.take_message() {
                Some(unsent) if reused => {
                    request = unsent;
                    reused = false;
                    sender = connect(&target).await?;
                }
                _ => return Err(SendError::Http(error.into_error())),
            },
        }
    }
}

/// A ready connection to `authority` from this thread's list.
fn checkout(authority: &Authority) -> Option<SendRequest<Body>> {
    ORIGINS.with_borrow_mut(|origins| {
        let index = origins.iter().position(|o| o.authority == *authority)?;
        let origin = &mut origins[index];
        origin.checkouts = origin.checkouts.wrapping_add(1);
        if origin.checkouts % SWEEP_EVERY == 0 {
            origin.sweep(Instant::now());
        }
        let ready = origin.take_ready();
        // An origin left with no connection is forgotten.
        if ready.is_none() && origin.connections.is_empty() {
            origins.swap_remove(index);
        }
        ready
    })
}

/// Puts a connection (now busy with a request) back in this thread's list, if there is room.
fn keep(authority: &Authority, sender: SendRequest<Body>) {
    ORIGINS.with_borrow_mut(|origins| {
        let index = match origins.iter().position(|o| o.authority == *authority) {
            Some(index) => index,
            None => {
                origins.push(Origin {
                    authority: authority.clone(),
                    connections: Vec::new(),
                    checkouts: 0,
                });
                origins.len() - 1
            }
        };
        let connections = &mut origins[index].connections;
        if connections.len() < MAX_PER_ORIGIN {
            connections.push(Connection {
                sender,
                last_used: Instant::now(),
            });
        }
        if connections.len() > MAX_IDLE_PER_ORIGIN && !SWEEPER.replace(true) {
            // On a worker (a current-thread runtime) the task runs on this same thread.
            tokio::spawn(sweep_while_over_the_cap());
        }
    });
}

/// Sweeps this thread's lists every [`SWEEP_INTERVAL`] until none holds more connections than
/// the idle cap.
async fn sweep_while_over_the_cap() {
    loop {
        tokio::time::sleep(SWEEP_INTERVAL).await;
        let over = ORIGINS.with_borrow_mut(|origins| {
            let now = Instant::now();
            for origin in origins.iter_mut() {
                origin.sweep(now);
            }
            origins.retain(|o| !o.connections.is_empty());
            origins
                .iter()
                .any(|o| o.connections.len() > MAX_IDLE_PER_ORIGIN)
        });
        if !over {
            SWEEPER.set(false);
            return;
        }
    }
}

/// Opens a connection and drives it on this thread's runtime.
async fn connect(target: &Uri) -> Result<SendRequest<Body>, SendError> {
    let stream = CONNECTOR
        .clone()
        .call(target.clone())
        .await
        .map_err(|error| SendError::Connect(error.into()))?;
    let (sender, connection) = http1::handshake(stream).await.map_err(SendError::Http)?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(%error, "upstream connection ended with an error");
        }
    });
    Ok(sender)
}

/// Open connections to `authority` kept by this thread (busy or idle).
#[cfg(test)]
pub(super) fn kept(authority: &str) -> usize {
    ORIGINS.with_borrow(|origins| {
        origins
            .iter()
            .find(|o| o.authority.as_str() == authority)
            .map_or(0, |o| o.connections.len())
    })
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use http::header::HOST;
    use http_body_util::BodyExt;
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;

    use super::*;
    use crate::body::full;

    /// An HTTP/1.1 server on 127.0.0.1 that counts the connections it accepted; each answer
    /// waits `delay` first. Answers `ok`.
    async fn server(delay: Duration) -> (Authority, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let authority: Authority = listener.local_addr().unwrap().to_string().parse().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let service = service_fn(move |_request| async move {
                        tokio::time::sleep(delay).await;
                        Ok::<_, std::convert::Infallible>(Response::new(full("ok")))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        (authority, accepted)
    }

    async fn get(authority: &Authority) -> String {
        let request = Request::get(format!("http://{authority}/path?q=1"))
            .header(HOST, authority.as_str())
            .body(full(""))
            .unwrap();
        let response = send(request).await.expect("response");
        let body = response.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(body.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn sequential_requests_share_one_connection() {
        let (authority, accepted) = server(Duration::ZERO).await;
        for _ in 0..5 {
            assert_eq!(get(&authority).await, "ok");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
        assert_eq!(kept(authority.as_str()), 1);
    }

    #[tokio::test]
    async fn concurrent_requests_open_connections_that_are_then_reused() {
        let (authority, accepted) = server(Duration::from_millis(50)).await;
        let (a, b, c) = tokio::join!(get(&authority), get(&authority), get(&authority));
        assert_eq!([a, b, c], ["ok", "ok", "ok"]);
        assert_eq!(accepted.load(Ordering::SeqCst), 3);
        for _ in 0..3 {
            assert_eq!(get(&authority).await, "ok");
        }
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            3,
            "idle connections are reused"
        );
        assert_eq!(kept(authority.as_str()), 3);
    }

    #[tokio::test]
    async fn a_connection_the_server_closed_is_replaced() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let authority: Authority = listener.local_addr().unwrap().to_string().parse().unwrap();
        // Answers one request per connection, then closes it without saying so.
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let service = service_fn(|_request| async {
                        Ok::<_, std::convert::Infallible>(Response::new(full("ok")))
                    });
                    let connection = hyper::server::conn::http1::Builder::new()
                        .keep_alive(true)
                        .serve_connection(TokioIo::new(stream), service);
                    let _ = tokio::time::timeout(Duration::from_millis(20), connection).await;
                });
            }
        });
        for _ in 0..3 {
            assert_eq!(get(&authority).await, "ok");
            tokio::time::sleep(Duration::from_millis(60)).await;
        }
        assert!(
            kept(authority.as_str()) <= 1,
            "closed connections are dropped"
        );
    }

    async fn burst(authority: &Authority) {
        let burst = MAX_IDLE_PER_ORIGIN + 16;
        let replies = futures_util::future::join_all((0..burst).map(|_| get(authority))).await;
        assert!(replies.iter().all(|r| r == "ok"));
        assert_eq!(kept(authority.as_str()), burst);
    }

    #[tokio::test]
    async fn traffic_sweeps_idle_connections_down_to_the_cap() {
        let (authority, _) = server(Duration::from_millis(20)).await;
        burst(&authority).await;
        // A sweep runs every SWEEP_EVERY checkouts; sequential requests reach one.
        for _ in 0..SWEEP_EVERY {
            assert_eq!(get(&authority).await, "ok");
        }
        assert_eq!(kept(authority.as_str()), MAX_IDLE_PER_ORIGIN);
    }

    #[tokio::test]
    async fn without_traffic_a_timer_sweeps_a_burst_down_to_the_cap() {
        let (authority, _) = server(Duration::from_millis(20)).await;
        burst(&authority).await;
        tokio::time::sleep(SWEEP_INTERVAL + Duration::from_millis(300)).await;
        assert_eq!(kept(authority.as_str()), MAX_IDLE_PER_ORIGIN);
    }

    #[tokio::test]
    async fn connection_refused_is_a_connect_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let authority = listener.local_addr().unwrap().to_string();
        drop(listener);
        let request = Request::get(format!("http://{authority}/"))
            .header(HOST, authority.as_str())
            .body(full(""))
            .unwrap();
        assert!(matches!(send(request).await, Err(SendError::Connect(_))));
    }
}
