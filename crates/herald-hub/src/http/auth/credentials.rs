//! Where a request's credentials are read from, before any is verified.
//!
//! Owns the sources and their order: the `Authorization: Bearer` header, the [`TOKEN_COOKIE`]
//! cookie, then the [`TOKEN_QUERY_PARAM`] query parameter, and which sources an endpoint takes
//! ([`Access`]). It never verifies a credential and never logs one.

use axum::http::{header, HeaderMap};

/// The cookie a browser's `EventSource` with `withCredentials` sends the token in.
pub const TOKEN_COOKIE: &str = "herald_token";
/// The query parameter that carries the token when neither a header nor a cookie can.
pub const TOKEN_QUERY_PARAM: &str = "token";

/// Which credential sources an endpoint accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Access {
    /// Streams and polling: header, cookie or query parameter.
    Subscribe,
    /// Publishing and admin: the `Authorization` header only.
    Publish,
}

/// The raw credentials a request carries, not yet verified.
#[derive(Default)]
pub(super) struct Credentials {
    /// `Authorization: Bearer <token or API key>`.
    pub(super) bearer: Option<String>,
    /// The [`TOKEN_COOKIE`] cookie.
    pub(super) cookie: Option<String>,
    /// The [`TOKEN_QUERY_PARAM`] query parameter.
    pub(super) query: Option<String>,
}

impl Credentials {
    pub(super) fn from_request(headers: &HeaderMap, query: Option<&str>) -> Self {
        let bearer = bearer_token(headers);
        let cookie = cookie_value(headers, TOKEN_COOKIE);
        let query = query.and_then(|query| {
            form_urlencoded::parse(query.as_bytes())
                .find(|(name, _)| name == TOKEN_QUERY_PARAM)
                .map(|(_, value)| value.into_owned())
        });
        Self {
            bearer,
            cookie,
            query,
        }
        .without_empty()
    }

    fn without_empty(mut self) -> Self {
        for source in [&mut self.bearer, &mut self.cookie, &mut self.query] {
            if source.as_deref().is_some_and(str::is_empty) {
                *source = None;
            }
        }
        self
    }
}

/// The token of an `Authorization: Bearer <token>` header (the scheme in any case), if any.
pub(crate) fn bearer_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| {
            let (scheme, token) = value.trim().split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then(|| token.trim().to_owned())
        })
}

/// The value of the cookie `name` (quotes removed), from any `Cookie` header, if any.
pub(crate) fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .find_map(|pair| {
            let (key, value) = pair.trim().split_once('=')?;
            (key == name).then(|| value.trim_matches('"').to_owned())
        })
}
