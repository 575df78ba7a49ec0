//! The health probes: `GET /livez` (the process serves), `GET /readyz` and `GET /healthz`
//! (whether this node should receive traffic).
//!
//! `/livez` answers `200 {"status": "ok"}` whenever the process answers at all. `/readyz` (and
//! `/healthz`, its older name) answer `200 {"status": "ok"}`, or `503` while the hub shuts down
//! (`shutting_down`) or its log cannot take and deliver events (`unavailable`). They are open to
//! anyone, whatever the auth mode, and never change anything.

use super::Api;
use crate::http::error::ApiError;
use axum::{
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
    Json,
};

/// `GET /livez`: the process is alive and serving requests.
pub(super) async fn livez() -> Response {
    Json(serde_json::json!({"status": "ok"})).into_response()
}

/// `GET /readyz` and `GET /healthz`: whether this node should get new streams and publishes.
pub(super) async fn readyz(State(api): State<Api>) -> Response {
    if api.hub.is_shutting_down() {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "the hub is shutting down",
        )
        .into_response()
    } else if !api.hub.is_ready() {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the event log cannot take or deliver events now (redis lost, or the disk failing)",
        )
        .into_response()
    } else {
        Json(serde_json::json!({"status": "ok"})).into_response()
    }
}
