//! Serving a router on a bound listener, with graceful shutdown and a header read timeout.
//!
//! Owns the accept loop and each connection's HTTP/1 settings. Written on hyper directly rather than
//! `axum::serve` because SSE needs two things that does not expose: a header read timeout (a client
//! that never finishes its headers must not hold a connection) and a shutdown that first ends every
//! event stream (an SSE response never finishes on its own), then waits a bounded grace period.
//! It never knows routes or the hub's rules.

use crate::Hub;
use axum::{extract::ConnectInfo, Router};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::{future::Future, net::SocketAddr, time::Duration};
use tokio::net::TcpListener;
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
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            header_read_timeout: HEADER_READ_TIMEOUT_DEFAULT,
            shutdown_grace: SHUTDOWN_GRACE_DEFAULT,
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
        let router = router.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            request
                .extensions_mut()
                .insert(ConnectInfo::<SocketAddr>(peer));
            router.clone().oneshot(request)
        });
        let connection = graceful.watch(http.serve_connection(TokioIo::new(socket), service));
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(client.addr = %peer, error = %err, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tracing::info!("shutting down: ending every stream");
    hub.shutdown();
    if tokio::time::timeout(options.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(grace = ?options.shutdown_grace, "connections still open after the grace period");
    }
    Ok(())
}
