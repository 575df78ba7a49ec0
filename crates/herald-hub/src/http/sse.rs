//! The SSE response: one place that turns a connection's bytes into a `text/event-stream` answer.
//!
//! Owns the response headers every stream carries and the one mapping of a refused stream
//! ([`ConnectError`]) to an answer: `204` for a closed channel, so a browser's `EventSource` stops
//! reconnecting; `503 shutting_down` (the JSON error shape) while the hub stops, after which it
//! retries. It never registers a connection ([`crate::Hub::add_client`] does) and never knows
//! routes.

use super::error::ApiError;
use crate::{stream::EndSignal, ClientStream, ConnectError};
use axum::{
    body::Body,
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};
use futures_util::StreamExt;
use std::convert::Infallible;

/// Wraps a byte stream in a `text/event-stream` response. `end` (an extension of the response),
/// given for a hub connection, lets the lean stream path learn that the hub has ended the
/// connection while a write is stuck.
pub(crate) fn sse_response(
    stream: impl futures_util::Stream<Item = bytes::Bytes> + Send + 'static,
    end: Option<EndSignal>,
) -> Response {
    let body = Body::from_stream(stream.map(Ok::<_, Infallible>));
    let mut response = Response::new(body);
    if let Some(end) = end {
        response.extensions_mut().insert(end);
    }
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
        let end = self.end_signal();
        sse_response(self, Some(end))
    }
}

/// A refused stream as an HTTP answer: [`ConnectError::ChannelClosed`] is `204 No Content`, which
/// tells a browser's `EventSource` to stop reconnecting (the stream has ended for good);
/// [`ConnectError::ShuttingDown`] is `503 Service Unavailable` with the error code
/// `shutting_down`, after which it retries; [`ConnectError::ChannelFull`] is `429 Too Many
/// Requests` with the code `channel_full`.
impl IntoResponse for ConnectError {
    fn into_response(self) -> Response {
        match self {
            ConnectError::ChannelClosed(_) => StatusCode::NO_CONTENT.into_response(),
            ConnectError::ShuttingDown => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting_down",
                self.to_string(),
            )
            .into_response(),
            ConnectError::ChannelFull { .. } => ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                crate::http::error::CHANNEL_FULL_CODE,
                self.to_string(),
            )
            .into_response(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body_of(response: Response) -> Vec<u8> {
        axum::body::to_bytes(response.into_body(), 1024)
            .await
            .expect("a short body")
            .to_vec()
    }

    #[tokio::test]
    async fn a_refused_stream_is_204_when_closed_and_the_json_error_when_shutting_down() {
        let closed = ConnectError::ChannelClosed(crate::ChannelName::new("done").expect("valid"));
        let response = closed.into_response();
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
        assert!(body_of(response).await.is_empty());

        let response = ConnectError::ShuttingDown.into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body: serde_json::Value =
            serde_json::from_slice(&body_of(response).await).expect("a JSON error");
        assert_eq!(body["error"]["code"], "shutting_down");
    }
}
