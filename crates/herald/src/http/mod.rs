//! The HTTP face of the hub (feature `axum`): routes, error answers, extractors, and the server loop.
//!
//! Owns nothing but the translation between HTTP and [`crate::Hub`] calls.

mod error;
mod extract;
mod routes;
mod serve;

pub use error::ApiError;
pub use extract::QUERY_PARAMS_MAX;
pub use routes::{router, HttpLimits, BODY_BYTES_MAX_DEFAULT, CHANNELS_PER_CONNECTION_MAX_DEFAULT};
pub use serve::{serve, ServeOptions, HEADER_READ_TIMEOUT_DEFAULT, SHUTDOWN_GRACE_DEFAULT};
