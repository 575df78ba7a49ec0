//! The HTTP face of the hub (feature `axum`): routes, error answers, extractors, and the server loop.
//!
//! Owns the translation between HTTP and [`crate::Hub`] calls, and what guards it: who may call
//! what ([`AuthConfig`]) and how much ([`HttpLimits`]). See `docs/security.md`.
//!
//! # Layout
//! - `routes`: the one list of routes, and their handlers by concept (streams, publishing,
//!   polling, admin, health).
//! - `auth`: credentials, token verification, asking the application (`app` mode), and rights.
//! - `config`: the layer's settings; `admission`: the connection limits.
//! - `error`: the one error answer; `extract`: request extractors; `last_event_id`: where a
//!   stream resumes; `sse`: the stream answer.
//! - `mercure`: the Mercure protocol at `/.well-known/mercure` (subscribe, publish, tokens).
//! - `origin`: which browser origins and `Host` names may call the hub.
//! - `listen`: the listening socket, and connections taken while the hub starts.
//! - `serve`: the accept loop; `pending`: connections yet to send a request; `stream_conn`: the
//!   lean path for event streams; `shared_tcp`: a plain stream's socket, shared with the hub's
//!   direct writer; `rewind`: a socket with bytes put back for hyper; `tls`: the
//!   certificate and the handshake; `h2`: HTTP/2 connections.

mod admission;
mod auth;
mod config;
mod dashboard;
mod error;
mod extract;
mod h2;
mod last_event_id;
mod listen;
mod mercure;
mod origin;
mod pending;
mod rewind;
mod routes;
mod serve;
mod shared_tcp;
mod sse;
mod stream_conn;
mod tls;

pub use admission::{CONNECTIONS_MAX_DEFAULT, CONNECTIONS_PER_ADDRESS_MAX_DEFAULT};
pub use auth::{
    AppAuth, AppAuthError, AppAuthMetrics, AppGrant, AuthConfig, AuthConfigError, API_KEY_LEN_MIN,
    APP_AUTH_CACHE_ENTRIES_MAX, APP_AUTH_CACHE_TTL_DEFAULT, APP_AUTH_CONCURRENCY_MAX,
    APP_AUTH_TIMEOUT_DEFAULT, FORWARDED_HEADERS, JWT_LEEWAY, JWT_SECRET_LEN_MIN, TOKEN_COOKIE,
    TOKEN_QUERY_PARAM,
};
pub use config::{
    HttpConfig, HttpLimits, BODY_BYTES_MAX_DEFAULT, BODY_READ_TIMEOUT_DEFAULT,
    CHANNELS_PER_CONNECTION_MAX_DEFAULT, EVENT_BYTES_MAX_DEFAULT,
};
pub use error::ApiError;
pub use extract::QUERY_PARAMS_MAX;
pub use last_event_id::LastEventId;
pub use listen::{accept_while_starting, bind, Held, LISTEN_BACKLOG};
pub use mercure::{MercureConfig, MercureKey, MercureKeyError};
pub use routes::router;
pub use serve::{
    serve, serve_held, ServeOptions, HEADER_READ_TIMEOUT_DEFAULT, PENDING_HEADS_MAX_DEFAULT,
    SHUTDOWN_GRACE_DEFAULT,
};
pub use stream_conn::STREAM_WRITE_TIMEOUT;

/// Runs the stream path's request-head parser on `bytes`, checking what it accepts (for the
/// fuzz targets in `fuzz/`).
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub fn fuzz_stream_head(bytes: &[u8]) {
    stream_conn::fuzz_parse(bytes);
}
pub use tls::{Tls, TlsError};
