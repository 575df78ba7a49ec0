//! Request extractors that answer bad input with [`ApiError`] instead of axum's plain-text rejections.
//!
//! Owns body parsing (`JsonBody`, sent as `application/json` and read whole within a deadline),
//! path parameters (`ApiPath`) and repeated query parameters (`QueryParams`). It never validates domain rules such as channel
//! names; handlers do.

use super::error::ApiError;
use axum::{
    body::Bytes,
    extract::{rejection::BytesRejection, FromRef, FromRequest, FromRequestParts, Path, Request},
    http::{header, request::Parts, HeaderMap, StatusCode},
};
use serde::de::DeserializeOwned;
use std::time::Duration;

/// Most query parameters one request may carry.
pub const QUERY_PARAMS_MAX: usize = 256;

/// The most time a request body may take to arrive, from the handler's first read to its last
/// byte: a client that sends its body slowly (Slowloris) is answered `408 body_timeout` and cut.
/// Event streams read no body, so it never applies to them.
#[derive(Debug, Clone, Copy)]
pub(super) struct BodyReadTimeout(pub Duration);

/// Reads the whole body within the state's [`BodyReadTimeout`].
async fn read_body<S>(req: Request, state: &S) -> Result<Bytes, ApiError>
where
    S: Send + Sync,
    BodyReadTimeout: FromRef<S>,
{
    let BodyReadTimeout(deadline) = BodyReadTimeout::from_ref(state);
    match tokio::time::timeout(deadline, Bytes::from_request(req, state)).await {
        Ok(read) => read.map_err(body_rejection),
        Err(_elapsed) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "body_timeout",
            format!("the body did not arrive within {deadline:?}"),
        )),
    }
}

/// Whether the request says its body is JSON: `Content-Type: application/json`, parameters
/// (`; charset=utf-8`) allowed. A cross-site HTML form or a "simple" `fetch` cannot send this type
/// without the browser asking the hub first (a CORS preflight), so requiring it keeps other
/// sites' pages from publishing.
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"))
}

/// 415 `unsupported_media_type`.
fn not_json() -> ApiError {
    ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        "send the body as JSON, with `Content-Type: application/json`",
    )
}

/// A JSON body sent as `application/json`; a missing, oversized, slow or malformed body, or
/// another type, is a JSON error answer.
#[derive(Debug)]
pub(super) struct JsonBody<T>(pub T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
    BodyReadTimeout: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(req.headers()) {
            return Err(not_json());
        }
        let bytes = read_body(req, state).await?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// An optional JSON body: an empty body (of any type, or none) is `None`; any other must be sent
/// as `application/json`.
#[derive(Debug)]
pub(super) struct OptionalJsonBody<T>(pub Option<T>);

impl<S, T> FromRequest<S> for OptionalJsonBody<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
    BodyReadTimeout: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = is_json(req.headers());
        let bytes = read_body(req, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self(None));
        }
        if !is_json {
            return Err(not_json());
        }
        parse_json(&bytes).map(|value| Self(Some(value)))
    }
}

fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.is_empty() {
        return Err(ApiError::invalid_body(
            "the body is empty; send a JSON object",
        ));
    }
    serde_json::from_slice(bytes)
        .map_err(|err| ApiError::invalid_body(format!("the body is not valid: {err}")))
}

fn body_rejection(rejection: BytesRejection) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "the body is larger than the limit",
        )
    } else {
        ApiError::invalid_body(rejection.body_text())
    }
}

/// Path parameters, with malformed percent-encoding answered as a JSON error.
#[derive(Debug)]
pub(super) struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(value)| Self(value))
            .map_err(|rejection| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_path",
                    rejection.body_text(),
                )
            })
    }
}

/// The query string as ordered `(name, value)` pairs, repeated names kept (`channel=a&channel=b`).
#[derive(Debug, Default)]
pub(super) struct QueryParams(pub Vec<(String, String)>);

impl QueryParams {
    /// Every value of `name`, in order.
    pub(super) fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// The last value of `name`.
    pub(super) fn last(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

impl<S: Send + Sync> FromRequestParts<S> for QueryParams {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let Some(query) = parts.uri.query() else {
            return Ok(Self::default());
        };
        let mut params = Vec::new();
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            if params.len() == QUERY_PARAMS_MAX {
                return Err(ApiError::invalid_query(format!(
                    "more than {QUERY_PARAMS_MAX} query parameters"
                )));
            }
            params.push((key.into_owned(), value.into_owned()));
        }
        Ok(Self(params))
    }
}

/// The peer's address when the server recorded it (`ConnectInfo`); `None` inside an application
/// that serves the router without it.
#[derive(Debug, Clone, Copy)]
pub(super) struct PeerAddr(pub Option<std::net::SocketAddr>);

impl<S: Send + Sync> FromRequestParts<S> for PeerAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|info| info.0);
        Ok(Self(peer))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn only_application_json_is_json() {
        let typed = |value: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(value));
            is_json(&headers)
        };
        assert!(typed("application/json"));
        assert!(typed("Application/JSON; charset=utf-8"));
        for other in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data",
            "application/jsonx",
            "json",
        ] {
            assert!(!typed(other), "{other}");
        }
        assert!(!is_json(&HeaderMap::new()), "no type is not JSON");
    }
}
