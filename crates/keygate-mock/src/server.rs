//! The listener: accepts connections (TCP_NODELAY; HTTP/1.1 and h2c, or HTTPS with ALPN) and
//! serves the mock on them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;

use crate::config::MockConfig;
use crate::conn::{Conn, ResetSwitch};
use crate::record::{RecordedRequest, Recorder};
use crate::router::{handle, State};
use crate::text::Ids;

/// Why the mock could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The TLS certificate, key or client CA cannot be used.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
}

/// A running mock provider. Dropping it stops the server (without waiting).
#[derive(Debug)]
pub struct MockServer {
    /// The address the server listens on (the real port when `:0` was asked for).
    pub addr: SocketAddr,
    state: Arc<State>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl MockServer {
    /// Binds `config.listen` and serves in the background on the current tokio runtime.
    pub async fn start(config: MockConfig) -> Result<MockServer, StartError> {
        let tls = match &config.tls {
            Some(tls) => Some(crate::tls::acceptor(tls, config.http1_only)?),
            None => None,
        };
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| StartError::Bind {
                    addr: config.listen,
                    source,
                })?;
        let addr = listener.local_addr().map_err(|source| StartError::Bind {
            addr: config.listen,
            source,
        })?;
        let state = Arc::new(State {
            recorder: Recorder::new(config.max_records),
            models: std::sync::Mutex::new(config.models.clone()),
            config,
            ids: Ids::default(),
        });
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(accept_loop(listener, tls, Arc::clone(&state), stopped));
        Ok(MockServer {
            addr,
            state,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// `http://ADDR` (`https://` with TLS), the root URL (Anthropic-style base URL).
    pub fn url(&self) -> String {
        let scheme = if self.state.config.tls.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.addr)
    }

    /// `http://ADDR/v1` (`https://` with TLS), the OpenAI-style base URL (for
    /// `--provider-url openai=...`).
    pub fn openai_base_url(&self) -> String {
        format!("{}/v1", self.url())
    }

    /// Every request recorded so far, oldest first (requests to `/_mock/*` are not recorded).
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state.recorder.snapshot()
    }

    /// Forgets the recorded requests.
    pub fn clear_requests(&self) {
        self.state.recorder.clear();
    }

    /// Makes `GET .../models` list these ids from now on (both shapes), as a self-hosted
    /// server whose models change would (`PUT /_mock/models` over HTTP).
    pub fn set_models<I, S>(&self, ids: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.state
            .set_models(Some(ids.into_iter().map(Into::into).collect()));
    }

    /// The model ids `GET .../models` lists now; `None` for the built-in lists.
    pub fn models(&self) -> Option<Vec<String>> {
        self.state.models()
    }

    /// Stops accepting, closes every open connection and waits for the server task to end.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    state: Arc<State>,
    mut stopped: oneshot::Receiver<()>,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(state.config.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(state.config.max_concurrent_streams);
    if state.config.http1_only {
        builder = builder.http1_only();
    }
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut stopped => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => {
                let Ok((stream, _peer)) = accepted else {
                    // Out of file descriptors or a connection reset before accept: back off.
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let builder = builder.clone();
                let state = Arc::clone(&state);
                let tls = tls.clone();
                connections.spawn(async move {
                    let reset = ResetSwitch::default();
                    let conn = Conn::new(stream, reset.clone());
                    let service =
                        service_fn(move |req| handle(Arc::clone(&state), req, reset.clone()));
                    match tls {
                        None => {
                            let _ = builder.serve_connection(TokioIo::new(conn), service).await;
                        }
                        Some(tls) => {
                            // A refused handshake (untrusted client, missing client certificate)
                            // just ends the connection.
                            let Ok(stream) = tls.accept(conn).await else {
                                return;
                            };
                            let _ = builder.serve_connection(TokioIo::new(stream), service).await;
                        }
                    }
                });
            }
        }
    }
    connections.shutdown().await;
}
