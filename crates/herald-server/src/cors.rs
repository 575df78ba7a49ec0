//! Cross-origin rules for browsers: which origins may open streams and call the API.
//!
//! Owns the translation of `--cors-origins` into a `tower-http` CORS layer, and so the one answer
//! to "which browser origins may call this hub". Listed origins get credentials (cookies) allowed;
//! `*` allows any origin without credentials. With no list, a hub that listens on loopback with
//! `--auth none` (a developer's machine) allows pages served from loopback itself
//! (`http://localhost:<any port>`, `http://127.0.0.1:<any port>`, `http://[::1]:<any port>`), so
//! the README's browser snippet works as written; anywhere else, no list adds no CORS headers at
//! all, so other origins' pages cannot read anything.

use anyhow::Context;
use axum::http::{header, HeaderName, HeaderValue, Method};
use std::time::Duration;
use tower_http::cors::{AllowCredentials, AllowOrigin, CorsLayer};

/// How long browsers may cache a preflight answer.
const PREFLIGHT_MAX_AGE: Duration = Duration::from_secs(600);

/// Who may call the hub from a browser page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unlisted {
    /// Only the listed origins (none when the list is empty).
    ListedOnly,
    /// With an empty list: pages served from loopback (a hub on loopback with `--auth none`).
    Loopback,
}

impl Unlisted {
    /// `Loopback` for a hub that only loopback can reach and that asks for no token.
    pub(crate) fn of(listen: std::net::SocketAddr, is_auth_none: bool) -> Self {
        if listen.ip().is_loopback() && is_auth_none {
            Self::Loopback
        } else {
            Self::ListedOnly
        }
    }
}

/// Whether `origin` (an `Origin` header's value) is a page served from this machine's loopback:
/// `http` or `https`, host `localhost`, `127.0.0.1` or `[::1]`, any port.
pub(crate) fn is_loopback_origin(origin: &[u8]) -> bool {
    let Ok(origin) = std::str::from_utf8(origin) else {
        return false;
    };
    let Some(authority) = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
    else {
        return false;
    };
    let host = match authority.strip_prefix("[::1]") {
        Some(rest) => return rest.is_empty() || is_port(rest),
        None => authority.split_once(':').map_or(authority, |(host, port)| {
            if is_port(&format!(":{port}")) {
                host
            } else {
                ""
            }
        }),
    };
    host == "localhost" || host == "127.0.0.1"
}

/// `:` and one to five digits.
fn is_port(text: &str) -> bool {
    text.strip_prefix(':').is_some_and(|digits| {
        (1..=5).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit())
    })
}

/// The CORS layer for `origins`, or `None` when no origin is allowed.
pub(crate) fn layer(origins: &[String], unlisted: Unlisted) -> anyhow::Result<Option<CorsLayer>> {
    let base = CorsLayer::new()
        .allow_methods([Method::GET, Method::POST, Method::DELETE, Method::OPTIONS])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            HeaderName::from_static("last-event-id"),
        ])
        .max_age(PREFLIGHT_MAX_AGE);
    if origins.is_empty() {
        return Ok((unlisted == Unlisted::Loopback).then(|| {
            base.allow_origin(AllowOrigin::predicate(|origin, _| {
                is_loopback_origin(origin.as_bytes())
            }))
            .allow_credentials(AllowCredentials::predicate(|origin, _| {
                is_loopback_origin(origin.as_bytes())
            }))
        }));
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_origins_are_pages_served_from_this_machine() {
        for origin in [
            "http://localhost:5173",
            "http://localhost",
            "http://127.0.0.1:8000",
            "https://localhost:3000",
            "http://[::1]:8080",
        ] {
            assert!(is_loopback_origin(origin.as_bytes()), "{origin}");
        }
        for origin in [
            "http://localhost.evil.com",
            "http://evil.com:5173",
            "http://127.0.0.1.nip.io:80",
            "http://localhost:abc",
            "http://localhost:5173/path",
            "file://localhost",
            "null",
            "http://[::1]x",
        ] {
            assert!(!is_loopback_origin(origin.as_bytes()), "{origin}");
        }
    }
}
