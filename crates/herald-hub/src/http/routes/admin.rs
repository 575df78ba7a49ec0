//! The admin endpoints: live clients and their subscriptions, channels, and stats, for this node
//! or (`?scope=cluster`) the whole cluster.
//!
//! Owns the admin right check and the answers' shapes. It reads what the hub reports and never
//! walks the engine's structures; a cluster query the hub cannot answer is
//! `503 unavailable`, mapped once ([`registry_unavailable`]), whatever error type the hub gives.

use super::Api;
use crate::{
    http::{
        auth::Publisher,
        error::ApiError,
        extract::{ApiPath, JsonBody, QueryParams},
    },
    ChannelName, ClientId,
};
use axum::{
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
    Json,
};
use serde::Deserialize;

pub(super) async fn list_clients(
    State(api): State<Api>,
    Publisher(caller): Publisher,
    query: QueryParams,
) -> Result<Response, ApiError> {
    caller.check_admin()?;
    if is_cluster_scope(&query)? {
        let mut clients = api
            .hub
            .cluster_clients()
            .await
            .map_err(registry_unavailable)?;
        if let Some(channel) = query.last("channel") {
            let channel = ChannelName::new(channel)?;
            clients.retain(|c| {
                c["channels"]
                    .as_array()
                    .is_some_and(|cs| cs.iter().any(|x| x == channel.as_str()))
            });
        }
        return Ok(
            Json(serde_json::json!({"scope": "cluster", "clients": clients})).into_response(),
        );
    }
    let clients = match query.last("channel") {
        Some(channel) => api.hub.clients_by_channel(&ChannelName::new(channel)?),
        None => api.hub.clients(),
    };
    Ok(Json(serde_json::json!({"clients": clients})).into_response())
}

pub(super) async fn get_client(
    State(api): State<Api>,
    Publisher(caller): Publisher,
    ApiPath(client): ApiPath<String>,
) -> Result<Response, ApiError> {
    caller.check_admin()?;
    let id = ClientId::new(&client)?;
    match api.hub.get_client(&id) {
        Some(info) => Ok(Json(info).into_response()),
        None => Err(client_not_found(&id)),
    }
}

pub(super) async fn remove_client(
    State(api): State<Api>,
    Publisher(caller): Publisher,
    ApiPath(client): ApiPath<String>,
) -> Result<Response, ApiError> {
    caller.check_admin()?;
    let id = ClientId::new(&client)?;
    if api.hub.remove_client(&id) {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(client_not_found(&id))
    }
}

fn client_not_found(id: &ClientId) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "client_not_found",
        format!("client {id} is not connected"),
    )
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SubscribeBody {
    channel: String,
}

pub(super) async fn subscribe(
    State(api): State<Api>,
    Publisher(caller): Publisher,
    ApiPath(client): ApiPath<String>,
    JsonBody(body): JsonBody<SubscribeBody>,
) -> Result<Response, ApiError> {
    caller.check_admin()?;
    let id = ClientId::new(&client)?;
    let channel = ChannelName::new(&body.channel)?;
    api.hub.subscribe(&id, channel)?;
    client_answer(&api, &id)
}

pub(super) async fn unsubscribe(
    State(api): State<Api>,
    Publisher(caller): Publisher,
    ApiPath((client, channel)): ApiPath<(String, String)>,
) -> Result<Response, ApiError> {
    caller.check_admin()?;
    let id = ClientId::new(&client)?;
    let channel = ChannelName::new(&channel)?;
    api.hub.unsubscribe(&id, &channel)?;
    client_answer(&api, &id)
}

fn client_answer(api: &Api, id: &ClientId) -> Result<Response, ApiError> {
    api.hub
        .get_client(id)
        .map(|info| Json(info).into_response())
        .ok_or_else(|| client_not_found(id))
}

pub(super) async fn list_channels(
    State(api): State<Api>,
    Publisher(caller): Publisher,
) -> Result<Response, ApiError> {
    caller.check_admin()?;
    Ok(Json(serde_json::json!({"channels": api.hub.channels()})).into_response())
}

pub(super) async fn stats(
    State(api): State<Api>,
    Publisher(caller): Publisher,
    query: QueryParams,
) -> Result<Response, ApiError> {
    caller.check_admin()?;
    if is_cluster_scope(&query)? {
        return Ok(Json(
            api.hub
                .cluster_stats()
                .await
                .map_err(registry_unavailable)?,
        )
        .into_response());
    }
    Ok(Json(api.hub.stats()).into_response())
}

/// `?scope=cluster` asks for the whole cluster; `?scope=node` (the default) for this node.
fn is_cluster_scope(query: &QueryParams) -> Result<bool, ApiError> {
    match query.last("scope") {
        None | Some("node") => Ok(false),
        Some("cluster") => Ok(true),
        Some(other) => Err(ApiError::invalid_query(format!(
            "scope must be `node` or `cluster`, not {other:?}"
        ))),
    }
}

/// A cluster-wide query the hub could not answer (the registry cannot be read): `503 unavailable`.
fn registry_unavailable(err: impl std::error::Error) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        err.to_string(),
    )
}
