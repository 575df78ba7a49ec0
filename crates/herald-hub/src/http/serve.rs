//! Serving a router on a bound listener, with graceful shutdown and a header read timeout.
//!
//! Owns the accept loop and each connection's HTTP/1 settings; a connection whose first request
//! opens an event stream is served by `stream_conn` instead of hyper, with no HTTP buffers. Both
//! paths take any socket; this loop accepts TCP, and with [`Tls`] completes the handshake first
//! (`tls`) and hands HTTP/2 connections to `h2`. Written on hyper directly rather than
//! `axum::serve` because SSE needs two things that does not expose: a header read timeout (a client
//! that never finishes its headers must not hold a connection) and a shutdown that first ends every
//! event stream (an SSE response never finishes on its own), then waits a bounded grace period.
//! It never knows routes or the hub's rules.

use super::{
    h2,
    rewind::Rewind,
    stream_conn::{self, FirstRequest},
    tls::{self, Accepted, Tls},
};
use crate::Hub;
use axum::{extract::ConnectInfo, Router};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::sync::Arc;
use std::{future::Future, net::SocketAddr, time::Duration};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::TcpListener,
};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tower::ServiceExt;

/// Default time a client has to send its request headers: 10 s.
pub const HEADER_READ_TIMEOUT_DEFAULT: Duration = Duration::from_secs(10);
/// Default time given to connections to finish once shutdown begins: 5 s.
pub const SHUTDOWN_GRACE_DEFAULT: Duration = Duration::from_secs(5);

/// Connection-level settings of [`serve`].
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Time a client has to send complete request headers. Default [`HEADER_READ_TIMEOUT_DEFAULT`].
    pub header_read_timeout: Duration,
    /// Time connections get to finish after shutdown begins. Default [`SHUTDOWN_GRACE_DEFAULT`].
    pub shutdown_grace: Duration,
    /// Serve HTTPS (HTTP/1.1 and HTTP/2 by ALPN) with this certificate; the handshake has the
    /// header read timeout to finish. Default: none, plain HTTP/1.1.
    pub tls: Option<Tls>,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            header_read_timeout: HEADER_READ_TIMEOUT_DEFAULT,
            shutdown_grace: SHUTDOWN_GRACE_DEFAULT,
            tls: None,
        }
    }
}

/// Serves `router` on `listener` until `shutdown` resolves; then stops accepting, ends every event
/// stream of `hub`, and waits up to the grace period for connections to finish.
///
/// # Errors
/// Never in practice; accept errors (such as running out of file descriptors) are logged and
/// retried after a short pause.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    hub: Hub,
    options: ServeOptions,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(options.header_read_timeout);
    let http = Arc::new(http);
    let h2 = Arc::new(h2::builder());
    // Every connection task, so shutdown can wait for event streams served off hyper too.
    let connections = TaskTracker::new();
    let stopping = CancellationToken::new();
    tokio::pin!(shutdown);
    loop {
        let (socket, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = socket.set_nodelay(true);
        let (router, http, watcher, stopping) = (
            router.clone(),
            http.clone(),
            graceful.watcher(),
            stopping.clone(),
        );
        let header_read_timeout = options.header_read_timeout;
        let (tls, h2) = (options.tls.clone(), h2.clone());
        connections.spawn(async move {
            let accepted = tokio::select! {
                accepted = tls::accept(socket, tls.as_ref(), header_read_timeout) => accepted,
                () = stopping.cancelled() => return,
            };
            let mut socket = match accepted {
                Some(Accepted::Http1(socket)) => socket,
                Some(Accepted::Http2(socket)) => {
                    Box::pin(h2::serve_connection(socket, peer, router, &h2, watcher)).await;
                    return;
                }
                None => return,
            };
            let first = tokio::select! {
                first = stream_conn::read_first_request(&mut socket, peer, header_read_timeout) => first,
                // An idle connection that has not sent a request yet: nothing to finish.
                () = stopping.cancelled() => return,
            };
            match first {
                FirstRequest::Stream(request) => stream_conn::serve_stream(socket, request, router).await,
                FirstRequest::Other(prefix) => {
                    // Boxed, so a stream connection's task is not sized for hyper's state.
                    Box::pin(serve_with_hyper(Rewind::new(prefix, socket), peer, router, &http, watcher)).await;
                }
                FirstRequest::Gone => {}
            }
        });
    }
    drop(listener);
    tracing::info!("shutting down: ending every stream");
    hub.shutdown();
    stopping.cancel();
    connections.close();
    let finished = async {
        graceful.shutdown().await;
        connections.wait().await;
    };
    if tokio::time::timeout(options.shutdown_grace, finished)
        .await
        .is_err()
    {
        tracing::warn!(grace = ?options.shutdown_grace, "connections still open after the grace period");
    }
    Ok(())
}

/// Serves a connection's requests with hyper (everything but event streams opened first).
async fn serve_with_hyper<S>(
    io: Rewind<S>,
    peer: SocketAddr,
    router: Router,
    http: &hyper::server::conn::http1::Builder,
    watcher: hyper_util::server::graceful::Watcher,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        request
            .extensions_mut()
            .insert(ConnectInfo::<SocketAddr>(peer));
        router.clone().oneshot(request)
    });
    if let Err(err) = watcher
        .watch(http.serve_connection(TokioIo::new(io), service))
        .await
    {
        tracing::debug!(client.addr = %peer, error = %err, "connection ended with an error");
    }
}
