//! The dashboard's actions: publish to a channel (`POST /admin/channels/{channel}/events`) and
//! disconnect a client (`DELETE /admin/clients/{client}`).
//!
//! Owns turning a signed-in, same-origin request carrying the CSRF token into a [`crate::Hub`]
//! call. Each action is checked by `guard` before anything happens; a refused action changes
//! nothing. It never reads a credential and never reaches past the hub.

use super::{guard::AdminSession, Dashboard};
use crate::{
    http::{error::ApiError, extract::ApiPath},
    ChannelName, ClientId, EventData, NewEvent, Target,
};
use axum::{
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    Json,
};

/// Publishes the form's `data` (text) as event `event` (optional) to the channel. The form is
/// form-encoded; its CSRF token comes in the `X-CSRF-Token` header or the `csrf` field.
pub(in crate::http) async fn publish(
    State(dashboard): State<Dashboard>,
    admin: AdminSession,
    ApiPath(channel): ApiPath<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let form: Vec<(String, String)> = form_urlencoded::parse(&body).into_owned().collect();
    let field = |name: &str| {
        form.iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    admin.check_write(&headers, field("csrf"))?;
    let channel = ChannelName::new(&channel)?;
    let data = field("data").unwrap_or_default();
    if data.len() > dashboard.event_bytes_max {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "event_too_large",
            format!(
                "an event's data may be at most {} bytes",
                dashboard.event_bytes_max
            ),
        ));
    }
    let mut event = NewEvent::new(EventData::text(data));
    if let Some(name) = field("event").filter(|name| !name.is_empty()) {
        event = event.named(name);
    }
    let published = dashboard
        .hub
        .publish(Target::Channels(vec![channel]), event)
        .await?;
    Ok((StatusCode::CREATED, Json(published)).into_response())
}

pub(in crate::http) async fn disconnect(
    State(dashboard): State<Dashboard>,
    admin: AdminSession,
    ApiPath(client): ApiPath<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    admin.check_write(&headers, None)?;
    let id = ClientId::new(&client)?;
    if dashboard.hub.remove_client(&id) {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "client_not_found",
            format!("client {id} is not connected to this node"),
        ))
    }
}
