//! `GET /api/openapi.json`: the API's OpenAPI 3.1 document, served to anyone.
//!
//! The document is `crates/herald-hub/openapi.json`, compiled into the binary as it is; the test
//! `crates/herald-server/tests/openapi.rs` holds it against the running hub, so it cannot drift
//! from the routes, fields and error codes. It never reads a credential: describing the API is
//! not a capability.

use axum::{http::header, response::IntoResponse};

/// The document, as written in the repository.
const DOCUMENT: &str = include_str!("../../../openapi.json");

pub(super) async fn document() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], DOCUMENT)
}
