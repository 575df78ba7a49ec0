//! The polling endpoints, the REST twin of every stream: `GET /api/channels/{channel}/events` and
//! `GET /api/events?channel=…`.
//!
//! Owns the page request (`after`, or `lastEventId`, as the cursor; `limit`) and the subscribe
//! right it needs, the same as a stream's. The page itself is the hub's
//! ([`crate::Hub::events_after`]). It never walks history.

use super::{
    streams::{channels_from_query, check_channel_count},
    Api,
};
use crate::{
    http::{
        auth::{check_app_subscribe, Caller, Subscriber},
        error::ApiError,
        extract::{ApiPath, QueryParams},
    },
    hub::POLL_LIMIT_MAX,
    ChannelName,
};
use axum::{
    extract::State,
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
) -> Result<Response, ApiError> {
    let channel = ChannelName::new(&channel)?;
    poll(&api, &caller, &[channel], &query)
}

pub(super) async fn poll_channels(
    State(api): State<Api>,
    Subscriber(caller): Subscriber,
    query: QueryParams,
) -> Result<Response, ApiError> {
    let channels = channels_from_query(&query)?;
    if channels.is_empty() {
        return Err(ApiError::invalid_query("give at least one `channel`"));
    }
    poll(&api, &caller, &channels, &query)
}

fn poll(
    api: &Api,
    caller: &Caller,
    channels: &[ChannelName],
    query: &QueryParams,
) -> Result<Response, ApiError> {
    check_channel_count(api, channels)?;
    let by_app = caller.check_subscribe(channels, api.hub.namespaces())?;
    check_app_subscribe(&by_app)?;
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
