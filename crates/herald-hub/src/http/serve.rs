//! Serving a router on a bound listener, with graceful shutdown and a header read timeout.
//!
//! Owns the accept loop and each connection's HTTP/1 settings; a connection whose first request
//! opens an event stream is served by `stream_conn` instead of hyper, with no HTTP buffers. Both
//! paths take any socket; this loop accepts TCP, and with [`Tls`] completes the handshake first
//! (`tls`) and hands HTTP/2 connections to `h2`. Written on hyper directly rather than
//! `axum::serve` because SSE needs two things that does not expose: a header read timeout (a client
//! that never finishes its headers must not hold a connection) and a shutdown that first ends every
//! event stream (an SSE response never finishes on its own), then waits a bounded grace period.
//!
//! Before its first request, a connection is under two bounds: one deadline for its whole first
//! head (from the accept, also when the head is handed to hyper half-read), and a most number of
//! connections waiting for their first head (`pending`), past which the oldest is closed; a
//! connection whose client has already sent bytes when it is accepted closes nobody (it is not
//! silent), so the clients of a reconnect storm never close one another. Connections accepted
//! while the hub started (`listen`) are served first. Accept failures (out of file descriptors)
//! back off and are logged once per interval.
//! It never knows routes or the hub's rules.

use super::{
    h2,
    listen::Held,
    pending::{PendingHeads, Waiting},
    rewind::Rewind,
    shared_tcp::SharedTcp,
    stream_conn::{self, FirstRequest},
    tls::{self, Accepted, Tls, Transport},
};
use crate::Hub;
use axum::{extract::ConnectInfo, Router};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::sync::{
    atomic::{AtomicBool, Ordering},
    Arc,
};
use std::{future::Future, net::SocketAddr, time::Duration};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::{TcpListener, TcpStream},
    time::Instant,
};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tower::ServiceExt;

/// Default time a client has to send its request headers: 10 s.
pub const HEADER_READ_TIMEOUT_DEFAULT: Duration = Duration::from_secs(10);
/// Default time given to connections to finish once shutdown begins: 5 s.
pub const SHUTDOWN_GRACE_DEFAULT: Duration = Duration::from_secs(5);
/// Default most connections waiting for their first request head: 1024. Past it, the one that
/// has waited longest is closed.
pub const PENDING_HEADS_MAX_DEFAULT: usize = 1024;
/// First pause after a failed accept; it doubles up to [`ACCEPT_BACKOFF_MAX`].
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);
/// Longest pause after failed accepts.
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// Accept failures are logged at most once per this interval, with how many there were.
const ACCEPT_ERROR_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Connection-level settings of [`serve`].
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Time a client has to send its complete first request head, from the accept (later
    /// requests on a kept-alive connection get the same time each). Default
    /// [`HEADER_READ_TIMEOUT_DEFAULT`].
    pub header_read_timeout: Duration,
    /// Time connections get to finish after shutdown begins. Default [`SHUTDOWN_GRACE_DEFAULT`].
    pub shutdown_grace: Duration,
    /// Most connections waiting for their first request head; one more closes the one that has
    /// waited longest. 0 is no limit. Default [`PENDING_HEADS_MAX_DEFAULT`].
    pub pending_heads_max: usize,
    /// Serve HTTPS (HTTP/1.1 and HTTP/2 by ALPN) with this certificate; the handshake has the
    /// header read timeout to finish. Default: none, plain HTTP/1.1.
    pub tls: Option<Tls>,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            header_read_timeout: HEADER_READ_TIMEOUT_DEFAULT,
            shutdown_grace: SHUTDOWN_GRACE_DEFAULT,
            pending_heads_max: PENDING_HEADS_MAX_DEFAULT,
            tls: None,
        }
    }
}

/// Serves `router` on `listener` until `shutdown` resolves; then stops accepting, ends every event
/// stream of `hub`, and waits up to the grace period for connections to finish.
///
/// # Errors
/// Never in practice; accept errors (such as running out of file descriptors) close the
/// connection that has waited longest for its first head, back off, and are logged at most once
/// per 10 s.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    hub: Hub,
    options: ServeOptions,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    serve_held(listener, Held::default(), router, hub, options, shutdown).await
}

/// [`serve`], first serving the connections `held` while the hub started (see
/// [`accept_while_starting`](super::accept_while_starting)), in the order they came. Their first
/// head has the header read timeout from now, and they do not count among those waiting for a
/// head: their clients have written it long since.
///
/// # Errors
/// As [`serve`].
pub async fn serve_held(
    listener: TcpListener,
    held: Held,
    router: Router,
    hub: Hub,
    options: ServeOptions,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(options.header_read_timeout);
    let connections = Connections {
        router,
        http: Arc::new(http),
        h2: Arc::new(h2::builder()),
        graceful: hyper_util::server::graceful::GracefulShutdown::new(),
        tracker: TaskTracker::new(),
        stopping: CancellationToken::new(),
        pending: Arc::new(PendingHeads::new(options.pending_heads_max)),
        options,
    };
    for (socket, peer) in held.into_sockets() {
        connections.spawn(socket, peer, None);
    }
    let mut accept_errors = AcceptErrors::default();
    tokio::pin!(shutdown);
    loop {
        let (socket, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => {
                    accept_errors.succeeded();
                    accepted
                }
                Err(err) => {
                    // Out of file descriptors, most likely: free the one held longest by a
                    // connection that has sent nothing yet.
                    connections.pending.evict_oldest();
                    let pause = accept_errors.failed(&err);
                    tokio::select! {
                        () = tokio::time::sleep(pause) => continue,
                        () = &mut shutdown => break,
                    }
                }
            },
            () = &mut shutdown => break,
        };
        // A client that has already sent bytes is not silent: it closes nobody to make room, so
        // a reconnect storm's clients do not close one another.
        let waiting = if has_bytes_waiting(&socket) {
            connections.pending.enter_speaking()
        } else {
            connections.pending.enter()
        };
        connections.spawn(socket, peer, Some(waiting));
    }
    drop(listener);
    tracing::info!("shutting down: ending every stream");
    hub.shutdown();
    let Connections {
        graceful,
        tracker,
        stopping,
        options,
        ..
    } = connections;
    stopping.cancel();
    tracker.close();
    let finished = async {
        graceful.shutdown().await;
        tracker.wait().await;
    };
    if tokio::time::timeout(options.shutdown_grace, finished)
        .await
        .is_err()
    {
        tracing::warn!(grace = ?options.shutdown_grace, "connections still open after the grace period");
    }
    Ok(())
}

/// What every accepted connection is served with.
struct Connections {
    router: Router,
    http: Arc<hyper::server::conn::http1::Builder>,
    h2: Arc<hyper::server::conn::http2::Builder<hyper_util::rt::TokioExecutor>>,
    graceful: hyper_util::server::graceful::GracefulShutdown,
    /// Every connection task, so shutdown can wait for event streams served off hyper too.
    tracker: TaskTracker,
    stopping: CancellationToken,
    pending: Arc<PendingHeads>,
    options: ServeOptions,
}

impl Connections {
    /// Serves one accepted connection in a task of its own; `waiting` is its place among those
    /// yet to send a head (`None`: not counted there).
    fn spawn(&self, socket: TcpStream, peer: SocketAddr, waiting: Option<Waiting>) {
        let _ = socket.set_nodelay(true);
        let (router, http, watcher, stopping) = (
            self.router.clone(),
            self.http.clone(),
            self.graceful.watcher(),
            self.stopping.clone(),
        );
        let header_read_timeout = self.options.header_read_timeout;
        let head_deadline = Instant::now() + header_read_timeout;
        let (tls, h2) = (self.options.tls.clone(), self.h2.clone());
        self.tracker.spawn(async move {
            let accepted = tokio::select! {
                accepted = tls::accept(socket, tls.as_ref(), header_read_timeout) => accepted,
                () = stopping.cancelled() => return,
            };
            let mut socket = match accepted {
                Some(Accepted::Http1(socket)) => socket,
                Some(Accepted::Http2(socket)) => {
                    drop(waiting);
                    Box::pin(h2::serve_connection(socket, peer, router, &h2, watcher)).await;
                    return;
                }
                None => return,
            };
            let first = first_request(&mut socket, peer, head_deadline, waiting, &stopping).await;
            match first {
                FirstRequest::Stream(request) => match socket {
                    Transport::Plain(socket) => {
                        let socket = SharedTcp::new(socket);
                        let direct = socket.direct();
                        stream_conn::serve_stream(socket, request, router, Some(direct)).await
                    }
                    socket => stream_conn::serve_stream(socket, request, router, None).await,
                },
                FirstRequest::Other(prefix) => {
                    // Boxed, so a stream connection's task is not sized for hyper's state.
                    Box::pin(serve_with_hyper(
                        Rewind::new(prefix, socket),
                        peer,
                        router,
                        &http,
                        watcher,
                        head_deadline,
                    ))
                    .await;
                }
                FirstRequest::Gone => {}
            }
        });
    }
}

/// Whether bytes from the client are already waiting on a just-accepted socket (a peek that
/// never blocks and consumes nothing).
fn has_bytes_waiting(socket: &TcpStream) -> bool {
    let mut byte = [std::mem::MaybeUninit::<u8>::uninit()];
    matches!(socket2::SockRef::from(socket).peek(&mut byte), Ok(n) if n > 0)
}

/// Reads a connection's first request head, as one of those waiting for theirs: nothing
/// ([`FirstRequest::Gone`]) when it is closed to make room, or the server stops first.
async fn first_request<S: AsyncRead + Unpin>(
    socket: &mut S,
    peer: SocketAddr,
    head_deadline: Instant,
    waiting: Option<Waiting>,
    stopping: &CancellationToken,
) -> FirstRequest {
    let evicted = async {
        match waiting {
            Some(mut waiting) => waiting.evicted().await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        first = stream_conn::read_first_request(socket, peer, head_deadline) => first,
        // An idle connection that has not sent a request yet: nothing to finish.
        () = stopping.cancelled() => FirstRequest::Gone,
        // Too many connections wait for their first head, and this one waited longest.
        () = evicted => FirstRequest::Gone,
    }
}

/// Serves a connection's requests with hyper (everything but event streams opened first). The
/// first request's head must be complete by `head_deadline`, however much of it was read
/// before hyper took over: hyper's own header timer starts only when it does.
async fn serve_with_hyper<S>(
    io: Rewind<S>,
    peer: SocketAddr,
    router: Router,
    http: &hyper::server::conn::http1::Builder,
    watcher: hyper_util::server::graceful::Watcher,
    head_deadline: Instant,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let is_head_read = Arc::new(AtomicBool::new(false));
    let head_read = is_head_read.clone();
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        head_read.store(true, Ordering::Relaxed);
        request
            .extensions_mut()
            .insert(ConnectInfo::<SocketAddr>(peer));
        router.clone().oneshot(request)
    });
    let serving = watcher.watch(http.serve_connection(TokioIo::new(io), service));
    tokio::pin!(serving);
    let served = tokio::select! {
        served = &mut serving => served,
        () = tokio::time::sleep_until(head_deadline) => {
            if !is_head_read.load(Ordering::Relaxed) {
                tracing::debug!(client.addr = %peer, "request head not complete in time");
                return;
            }
            serving.await
        }
    };
    if let Err(err) = served {
        tracing::debug!(client.addr = %peer, error = %err, "connection ended with an error");
    }
}

/// Failed accepts in a row: how long to pause, and when to say so in the log.
#[derive(Debug, Default)]
struct AcceptErrors {
    /// Failures since the last accept that worked.
    in_a_row: u32,
    /// Failures not yet logged.
    unlogged: u64,
    last_logged: Option<Instant>,
}

impl AcceptErrors {
    fn succeeded(&mut self) {
        self.in_a_row = 0;
    }

    /// Records a failure; returns the pause before the next accept.
    fn failed(&mut self, err: &std::io::Error) -> Duration {
        self.unlogged += 1;
        let now = Instant::now();
        if self
            .last_logged
            .is_none_or(|at| now.duration_since(at) >= ACCEPT_ERROR_LOG_INTERVAL)
        {
            tracing::warn!(
                error = %err,
                failures = self.unlogged,
                "accept failed; backing off (at most one such line per 10 s)"
            );
            self.unlogged = 0;
            self.last_logged = Some(now);
        }
        let pause = ACCEPT_BACKOFF_MIN.saturating_mul(1 << self.in_a_row.min(10));
        self.in_a_row = self.in_a_row.saturating_add(1);
        pause.min(ACCEPT_BACKOFF_MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_failures_back_off_up_to_a_second() {
        let mut errors = AcceptErrors::default();
        let err = std::io::Error::from_raw_os_error(24);
        let pauses: Vec<Duration> = (0..12).map(|_| errors.failed(&err)).collect();
        assert_eq!(pauses[0], ACCEPT_BACKOFF_MIN);
        assert!(pauses.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(pauses[11], ACCEPT_BACKOFF_MAX);
        errors.succeeded();
        assert_eq!(errors.failed(&err), ACCEPT_BACKOFF_MIN);
    }
}
