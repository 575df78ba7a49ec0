//! The one error type every HTTP handler returns, mapped to a status and a stable code in one place.
//!
//! Owns the JSON error shape `{"error": {"code", "message"}}` (plus `"channels"` when a 403 names the
//! refused channels). Bad client input is answered, not logged as an error. It never decides
//! policy; handlers, the auth rules and the hub do.

use crate::{
    channel::{ChannelName, ChannelNameError},
    event::FieldError,
    hub::{PublishError, SubscriptionError},
    presence::PresenceError,
};
use axum::{
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    Json,
};

/// An HTTP API error: status, stable machine-readable code, human message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    /// The channels a 403 refused; empty otherwise.
    channels: Vec<ChannelName>,
}

impl ApiError {
    /// An error with an explicit status and code.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            channels: Vec::new(),
        }
    }

    /// 401 `unauthorized`: a credential is missing, malformed, expired or not valid. The message
    /// says which, never echoing the credential.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// 403 `forbidden`: the credential is valid but does not allow this; `channels` names the
    /// refused channels, if channels were the reason.
    pub fn forbidden(message: impl Into<String>, channels: Vec<ChannelName>) -> Self {
        Self {
            channels,
            ..Self::new(StatusCode::FORBIDDEN, "forbidden", message)
        }
    }

    /// 400 `invalid_body`: the body is not the JSON the endpoint takes.
    pub fn invalid_body(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_body", message)
    }

    /// 400 `invalid_query`: a query parameter is malformed.
    pub fn invalid_query(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_query", message)
    }

    /// 404 `not_found`: no such route.
    pub fn route_not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The stable error code.
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// The channels a 403 refused.
    pub fn channels(&self) -> &[ChannelName] {
        &self.channels
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut error = serde_json::json!({"code": self.code, "message": self.message});
        if !self.channels.is_empty() {
            error["channels"] = serde_json::json!(self.channels);
        }
        let mut response =
            (self.status, Json(serde_json::json!({ "error": error }))).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<ChannelNameError> for ApiError {
    fn from(err: ChannelNameError) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_channel", err.to_string())
    }
}

impl From<FieldError> for ApiError {
    fn from(err: FieldError) -> Self {
        let code = match &err {
            FieldError::Empty { field }
            | FieldError::TooLong { field, .. }
            | FieldError::ControlChar { field }
            | FieldError::InvalidChar { field, .. }
            | FieldError::NotPrintable { field, .. }
            | FieldError::ReservedShape { field } => match *field {
                "event" => "invalid_event_name",
                "id" => "invalid_event_id",
                _ => "invalid_client_id",
            },
        };
        Self::new(StatusCode::BAD_REQUEST, code, err.to_string())
    }
}

impl From<PublishError> for ApiError {
    fn from(err: PublishError) -> Self {
        match err {
            PublishError::InvalidField(field) => field.into(),
            PublishError::ClientNotFound(_) => {
                Self::new(StatusCode::NOT_FOUND, "client_not_found", err.to_string())
            }
            PublishError::TooManyChannels { .. } => Self::new(
                StatusCode::BAD_REQUEST,
                "too_many_channels",
                err.to_string(),
            ),
            PublishError::NoChannel => Self::new(
                StatusCode::BAD_REQUEST,
                "invalid_body",
                "channels must hold at least one channel",
            ),
            PublishError::NamespaceMismatch { .. } => Self::new(
                StatusCode::BAD_REQUEST,
                "namespace_mismatch",
                err.to_string(),
            ),
            PublishError::Unavailable(_) => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                err.to_string(),
            ),
        }
    }
}

/// The stable code of a subscribe refused by a namespace's `max_subscribers` (429).
pub(crate) const CHANNEL_FULL_CODE: &str = "channel_full";

impl From<SubscriptionError> for ApiError {
    fn from(err: SubscriptionError) -> Self {
        let (status, code) = match err {
            SubscriptionError::ClientNotFound(_) => (StatusCode::NOT_FOUND, "client_not_found"),
            SubscriptionError::NotSubscribed(_) => (StatusCode::NOT_FOUND, "not_subscribed"),
            SubscriptionError::ChannelClosed(_) => (StatusCode::CONFLICT, "channel_closed"),
            SubscriptionError::ChannelFull { .. } => {
                (StatusCode::TOO_MANY_REQUESTS, CHANNEL_FULL_CODE)
            }
        };
        Self::new(status, code, err.to_string())
    }
}

impl From<PresenceError> for ApiError {
    fn from(err: PresenceError) -> Self {
        let (status, code) = match err {
            PresenceError::Disabled(_) => (StatusCode::NOT_FOUND, "presence_disabled"),
            PresenceError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        };
        Self::new(status, code, err.to_string())
    }
}
