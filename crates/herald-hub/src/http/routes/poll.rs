//! The polling endpoints, the REST twin of every stream: `GET /api/channels/{channel}/events` and
//! `GET /api/events?channel=…`.
//!
//! Owns the page request (`after`, or `lastEventId`, as the cursor; `limit`) and the subscribe
//! right it needs, the same as a stream's (in `app` mode, the application is asked). The page itself is the hub's
//! ([`crate::Hub::events_after`]). It never walks history.

use super::{
    streams::{channels_from_query, check_channel_count},
    Api,
};
use crate::{
    http::{
        auth::{Caller, Subscriber},
        error::ApiError,
        extract::{ApiPath, PeerAddr, QueryParams},
    },
    hub::POLL_LIMIT_MAX,
    ChannelName,
};
use axum::{
    extract::State,
    http::HeaderMap,
    response::{IntoResponse, Response},
    Json,
};

/// Default number of events a poll returns.
const POLL_LIMIT_DEFAULT: usize = 100;

pub(super) async fn poll_channel(
    State(api): State<Api>,
    Subscriber(caller): Subscriber,
    ApiPath(channel): ApiPath<String>,
    query: QueryParams,
    headers: HeaderMap,
    peer: PeerAddr,
) -> Result<Response, ApiError> {
    let channel = ChannelName::new(&channel)?;
    poll(&api, caller, &[channel], &query, (&headers, peer)).await
}

pub(super) async fn poll_channels(
    State(api): State<Api>,
    Subscriber(caller): Subscriber,
    query: QueryParams,
    headers: HeaderMap,
    peer: PeerAddr,
) -> Result<Response, ApiError> {
    let channels = channels_from_query(&query)?;
    if channels.is_empty() {
        return Err(ApiError::invalid_query("give at least one `channel`"));
    }
    poll(&api, caller, &channels, &query, (&headers, peer)).await
}

async fn poll(
    api: &Api,
    caller: Caller,
    channels: &[ChannelName],
    query: &QueryParams,
    (headers, peer): (&HeaderMap, PeerAddr),
) -> Result<Response, ApiError> {
    check_channel_count(api, channels)?;
    api.auth
        .authorize_subscribe(caller, api.hub.namespaces(), headers, peer.0, channels)
        .await?;
    let limit = match query.last("limit") {
        None => POLL_LIMIT_DEFAULT,
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=POLL_LIMIT_MAX).contains(n))
            .ok_or_else(|| {
                ApiError::invalid_query(format!("limit must be 1 to {}", POLL_LIMIT_MAX))
            })?,
    };
    let after = query
        .last("after")
        .or_else(|| query.last("lastEventId"))
        .filter(|a| !a.is_empty());
    Ok(Json(api.hub.events_after(channels, after, limit)).into_response())
}
