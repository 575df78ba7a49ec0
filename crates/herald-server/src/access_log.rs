//! The access log: one line (target `herald::access`) per request that is not an event stream.
//!
//! Owns what such a line holds: method, path without its query string, status, duration in
//! milliseconds and the peer's address. It never logs a query string, a header or a body, so no
//! token (`?token=`, a cookie, `Authorization`) reaches a log. Event streams are logged by the
//! engine when they open and when they close (with their duration and the reason they ended), so
//! their opening answers are skipped here.

use axum::{
    extract::{ConnectInfo, Request},
    http::header,
    middleware::Next,
    response::Response,
};
use std::{net::SocketAddr, time::Instant};

/// Logs one line once `request` is answered, unless the answer is an event stream.
pub(crate) async fn log_request(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    // `uri().path()` never includes the query string, where tokens may travel.
    let path = request.uri().path().to_owned();
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(peer)| *peer);
    let response = next.run(request).await;
    let is_stream = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|t| t.as_bytes().starts_with(b"text/event-stream"));
    if !is_stream {
        let duration_ms = started.elapsed().as_secs_f64() * 1000.0;
        match peer {
            Some(peer) => tracing::info!(
                target: "herald::access",
                method = %method,
                path,
                status = response.status().as_u16(),
                duration_ms,
                peer = %peer,
                "request"
            ),
            None => tracing::info!(
                target: "herald::access",
                method = %method,
                path,
                status = response.status().as_u16(),
                duration_ms,
                "request"
            ),
        }
    }
    response
}
