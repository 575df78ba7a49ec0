//! The dashboard's page, script and style sheet, embedded in the binary (no build step).
//!
//! Owns serving `assets/dashboard/` and the headers that keep the page to itself: a strict
//! Content-Security-Policy (its own script and style only), no framing, no referrer, no caching
//! of the page. The page is the same for everyone: it holds no data and no token; what it shows
//! comes from the feeds once signed in. It never checks a session.

use axum::{
    http::{header, HeaderName, HeaderValue},
    response::{IntoResponse, Redirect, Response},
};

const INDEX_HTML: &str = include_str!("../../../assets/dashboard/index.html");
const DASHBOARD_JS: &str = include_str!("../../../assets/dashboard/dashboard.js");
const DASHBOARD_CSS: &str = include_str!("../../../assets/dashboard/dashboard.css");

/// What every dashboard asset answers with besides its type.
const SECURITY_HEADERS: [(HeaderName, &str); 5] = [
    (
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
         img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    ),
    (header::X_FRAME_OPTIONS, "DENY"),
    (header::REFERRER_POLICY, "no-referrer"),
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::CACHE_CONTROL, "no-cache"),
];

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    for (name, value) in SECURITY_HEADERS {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

pub(in crate::http) async fn index() -> Response {
    asset("text/html; charset=utf-8", INDEX_HTML)
}

pub(in crate::http) async fn script() -> Response {
    asset("text/javascript; charset=utf-8", DASHBOARD_JS)
}

pub(in crate::http) async fn style() -> Response {
    asset("text/css; charset=utf-8", DASHBOARD_CSS)
}

/// `/admin` without its slash: the page's relative URLs need the slash.
pub(in crate::http) async fn to_index() -> Redirect {
    Redirect::permanent("/admin/")
}
