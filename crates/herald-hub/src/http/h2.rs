//! HTTP/2 connections (over TLS, chosen by ALPN): hyper's server, with its abuse bounds set.
//!
//! Owns the HTTP/2 settings of the listener and serving one connection with them. Every HTTP/2
//! stream is a request through the same router as HTTP/1.1, so the stream limits (total, per
//! address, per user) count each event stream, not each connection. The known HTTP/2 abuses are
//! bounded here: streams per connection, the header list's size (which also bounds a
//! CONTINUATION flood: the h2 crate refuses a header block once it passes that size), streams the
//! client resets before the server accepts them and those the server resets for the client's
//! errors (rapid reset), and a keep-alive PING that closes a connection whose peer stopped
//! answering. SETTINGS and PING floods are bounded by the h2 crate itself: it answers one frame
//! before it reads the next, so a client that does not read its answers stops being read. It
//! never knows routes and never counts streams itself.

use axum::{extract::ConnectInfo, Router};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::{net::SocketAddr, time::Duration};
use tokio::io::{AsyncRead, AsyncWrite};
use tower::ServiceExt;

/// Most streams one HTTP/2 connection has open at once: 100 (browsers open a few per page).
pub(super) const STREAMS_PER_CONNECTION_MAX: u32 = 100;
/// Largest header list of one HTTP/2 request (decoded): 16 KiB, as HTTP/1.1's head.
pub(super) const HEADER_LIST_BYTES_MAX: u32 = 16 * 1024;
/// Streams a client may reset before the server has accepted them (rapid reset); past that the
/// connection is closed with `ENHANCE_YOUR_CALM`.
pub(super) const PENDING_ACCEPT_RESETS_MAX: usize = 20;
/// Streams the server may reset for a client's protocol errors before closing the connection.
pub(super) const LOCAL_ERROR_RESETS_MAX: usize = 64;
/// How often an idle connection is pinged: 20 s.
pub(super) const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(20);
/// How long a ping may go unanswered before the connection is closed: 20 s.
pub(super) const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(20);
/// Most bytes buffered for sending per stream: 64 KiB, an event's largest payload by default.
/// A slower reader waits on flow control; the hub's queue, not this buffer, holds its events.
const SEND_BUFFER_BYTES_MAX: usize = 64 * 1024;

/// The listener's HTTP/2 settings.
pub(super) fn builder() -> hyper::server::conn::http2::Builder<TokioExecutor> {
    let mut http = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    http.timer(TokioTimer::new())
        .max_concurrent_streams(STREAMS_PER_CONNECTION_MAX)
        .max_header_list_size(HEADER_LIST_BYTES_MAX)
        .max_pending_accept_reset_streams(PENDING_ACCEPT_RESETS_MAX)
        .max_local_error_reset_streams(LOCAL_ERROR_RESETS_MAX)
        .keep_alive_interval(KEEP_ALIVE_INTERVAL)
        .keep_alive_timeout(KEEP_ALIVE_TIMEOUT)
        .max_send_buf_size(SEND_BUFFER_BYTES_MAX);
    http
}

/// Serves one HTTP/2 connection's streams until it ends (or the graceful shutdown ends it).
pub(super) async fn serve_connection<S>(
    io: S,
    peer: SocketAddr,
    router: Router,
    http: &hyper::server::conn::http2::Builder<TokioExecutor>,
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
        tracing::debug!(client.addr = %peer, error = %err, "HTTP/2 connection ended with an error");
    }
}
