//! Cross-origin rules for browsers: which origins may open streams and call the API.
//!
//! Owns the translation of `--cors-origins` into a `tower-http` CORS layer. Listed origins get
//! credentials (cookies) allowed; `*` allows any origin without credentials; an empty list adds no
//! CORS headers at all, so other origins' pages cannot read anything.

use anyhow::Context;
use axum::http::{header, HeaderName, HeaderValue, Method};
use std::time::Duration;
use tower_http::cors::{AllowCredentials, AllowOrigin, CorsLayer};

/// How long browsers may cache a preflight answer.
const PREFLIGHT_MAX_AGE: Duration = Duration::from_secs(600);

/// The CORS layer for `origins`, or `None` when no origin is allowed.
pub(crate) fn layer(origins: &[String]) -> anyhow::Result<Option<CorsLayer>> {
    if origins.is_empty() {
        return Ok(None);
    }
    let base = CorsLayer::new()
        .allow_methods([Method::GET, Method::POST, Method::DELETE, Method::OPTIONS])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            HeaderName::from_static("last-event-id"),
        ])
        .max_age(PREFLIGHT_MAX_AGE);
    if origins.iter().any(|o| o == "*") {
        return Ok(Some(base.allow_origin(AllowOrigin::any())));
    }
    let list = origins
        .iter()
        .map(|origin| {
            HeaderValue::from_str(origin.trim_end_matches('/'))
                .with_context(|| format!("CORS origin {origin:?}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    // Credentials are announced to listed origins only: another origin's page gets no CORS
    // header at all.
    let credentialed = list.clone();
    let credentials =
        AllowCredentials::predicate(move |origin, _parts| credentialed.contains(origin));
    Ok(Some(base.allow_origin(list).allow_credentials(credentials)))
}
