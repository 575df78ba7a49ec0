//! `GET /healthz`: whether this node should receive traffic.
//!
//! Answers `200 {"status": "ok"}`, or `503` while the hub shuts down (`shutting_down`) or cannot
//! read its log (`unavailable`). It never changes anything.

use super::Api;
use crate::http::error::ApiError;
use axum::{
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
    Json,
};

pub(super) async fn healthz(State(api): State<Api>) -> Response {
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
            "this node cannot read the cluster log (redis lost); it delivers no events until it can",
        )
        .into_response()
    } else {
        Json(serde_json::json!({"status": "ok"})).into_response()
    }
}
