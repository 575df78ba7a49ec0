//! The SSE response: one place that turns a connection's bytes into a `text/event-stream` answer.
//!
//! Owns the response headers every stream carries, the answers to a refused stream (`204` for a
//! closed channel, so a browser's `EventSource` stops reconnecting; `503` while shutting down), and
//! the [`LastEventId`] extractor an application's own stream handler needs. It never registers a
//! connection ([`crate::Hub::add_client`] does) and never knows routes.

use super::error::ApiError;
use crate::{hub::ConnectError, stream::ClientStream};
use axum::{
    body::Body,
    extract::FromRequestParts,
    http::{header, request::Parts, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};
use futures_util::StreamExt;
use std::convert::Infallible;

/// Wraps a connection's byte stream in a `text/event-stream` response.
pub(crate) fn sse_response(
    stream: impl futures_util::Stream<Item = bytes::Bytes> + Send + 'static,
) -> Response {
    let body = Body::from_stream(stream.map(Ok::<_, Infallible>));
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

/// A stream returned from a handler is a `200 text/event-stream` response whose body is the
/// connection's events (with `Cache-Control: no-cache` and `X-Accel-Buffering: no`, so proxies
/// pass each event on at once). The connection ends when the response body is dropped.
impl IntoResponse for ClientStream {
    fn into_response(self) -> Response {
        sse_response(self)
    }
}

/// A refused stream as an HTTP answer: [`ConnectError::ChannelClosed`] is `204 No Content`, which
/// tells a browser's `EventSource` to stop reconnecting (the stream has ended for good);
/// [`ConnectError::ShuttingDown`] is `503 Service Unavailable`, after which it retries.
impl IntoResponse for ConnectError {
    fn into_response(self) -> Response {
        match self {
            ConnectError::ChannelClosed(_) => StatusCode::NO_CONTENT.into_response(),
            ConnectError::ShuttingDown => {
                (StatusCode::SERVICE_UNAVAILABLE, self.to_string()).into_response()
            }
        }
    }
}

/// The `Last-Event-ID` request header, which a browser's `EventSource` sends when it reconnects:
/// pass it as [`crate::ClientOptions::last_event_id`] so the stream resumes where it stopped.
///
/// `None` when the header is absent or empty.
///
/// # Errors
/// Rejects the request with `400 invalid_header` when the header is not visible ASCII.
///
/// # Examples
///
/// ```
/// use axum::extract::State;
/// use herald_hub::{http::LastEventId, ChannelName, ClientOptions, ClientStream, ConnectError, Hub};
///
/// async fn stream(
///     State(hub): State<Hub>,
///     LastEventId(last_event_id): LastEventId,
/// ) -> Result<ClientStream, ConnectError> {
///     hub.add_client(ClientOptions {
///         channels: vec![ChannelName::new("news").expect("a valid channel name")],
///         last_event_id,
///         ..ClientOptions::default()
///     })
/// }
/// # let _: axum::Router<Hub> = axum::Router::new().route("/news", axum::routing::get(stream));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LastEventId(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for LastEventId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let Some(value) = parts.headers.get("last-event-id") else {
            return Ok(Self(None));
        };
        let id = value.to_str().map_err(|_| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_header",
                "Last-Event-ID is not visible ASCII",
            )
        })?;
        Ok(Self(Some(id.to_owned()).filter(|id| !id.is_empty())))
    }
}
