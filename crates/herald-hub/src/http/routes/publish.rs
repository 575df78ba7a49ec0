//! The publish endpoints: to a channel, to several, to everyone, to a user, to one client, and
//! closing a channel.
//!
//! Owns the publish body (`{"event", "data", "id"}`, plus `channels` for `POST /api/events`:
//! de-duplicated, at most [`PUBLISH_CHANNELS_MAX`]), the event size limit, and which publish right each target needs. It never encodes or stores an
//! event: [`crate::Hub::publish`] does, and its errors map to answers in `error`.

use super::Api;
use crate::{
    http::{
        auth::{Caller, Publisher},
        config::HttpLimits,
        error::ApiError,
        extract::{ApiPath, JsonBody, OptionalJsonBody},
    },
    ChannelName, ClientId, EventData, NewEvent, PublishError, Target, PUBLISH_CHANNELS_MAX,
};
use axum::{
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
    Json,
};
use serde::Deserialize;

/// The body of every publish endpoint but `POST /api/events`: one event. Unknown fields are
/// refused, and the error names only the fields this body takes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PublishBody {
    event: Option<String>,
    /// Kept as the publisher wrote it (validated, never re-serialized): subscribers get the
    /// publisher's bytes, and the hub spends no CPU rebuilding them.
    data: Box<serde_json::value::RawValue>,
    id: Option<String>,
}

/// The body of `POST /api/events`: one event and the channels it goes to.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PublishToChannelsBody {
    event: Option<String>,
    data: Box<serde_json::value::RawValue>,
    id: Option<String>,
    channels: Vec<String>,
}

impl PublishBody {
    /// The event, checked against the payload size limit.
    fn into_event(self, limits: &HttpLimits) -> Result<NewEvent, ApiError> {
        let data = EventData::from_raw_json(self.data.get())
            .map_err(|err| ApiError::invalid_body(format!("`data`: {err}")))?;
        if data.as_str().len() > limits.event_bytes_max {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "event_too_large",
                format!(
                    "the event's data is {} bytes; the limit is {}",
                    data.as_str().len(),
                    limits.event_bytes_max
                ),
            ));
        }
        Ok(NewEvent {
            event: self.event,
            data,
            id: self.id,
            private: false,
            retry: None,
        })
    }
}

impl PublishToChannelsBody {
    /// The channel names, and the event as every other endpoint takes it.
    fn into_parts(self) -> (Vec<String>, PublishBody) {
        let Self {
            event,
            data,
            id,
            channels,
        } = self;
        (channels, PublishBody { event, data, id })
    }
}

pub(super) async fn publish_to_channel(
    State(api): State<Api>,
    Publisher(caller): Publisher,
    ApiPath(channel): ApiPath<String>,
    JsonBody(body): JsonBody<PublishBody>,
) -> Result<Response, ApiError> {
    publish_to_one(&api, &caller, ChannelName::new(&channel)?, body).await
}

/// Publishes to one channel: `/api/channels/{channel}/events` and `/api/users/{user}/events`.
async fn publish_to_one(
    api: &Api,
    caller: &Caller,
    channel: ChannelName,
    body: PublishBody,
) -> Result<Response, ApiError> {
    caller.check_publish(std::slice::from_ref(&channel), api.hub.namespaces())?;
    publish(api, Target::Channels(vec![channel]), body).await
}

pub(super) async fn publish_to_channels(
    State(api): State<Api>,
    Publisher(caller): Publisher,
    JsonBody(body): JsonBody<PublishToChannelsBody>,
) -> Result<Response, ApiError> {
    let (names, body) = body.into_parts();
    // Duplicates go first (the publisher's order is kept for the answer), then the count is
    // bounded, before any name is checked or kept.
    let mut seen = std::collections::HashSet::with_capacity(names.len().min(1024));
    let names: Vec<String> = names
        .into_iter()
        .filter(|name| seen.insert(name.clone()))
        .collect();
    if names.len() > PUBLISH_CHANNELS_MAX {
        return Err(PublishError::TooManyChannels {
            max: PUBLISH_CHANNELS_MAX,
            given: names.len(),
        }
        .into());
    }
    let channels = names
        .iter()
        .map(|c| ChannelName::new(c))
        .collect::<Result<Vec<_>, _>>()?;
    caller.check_publish(&channels, api.hub.namespaces())?;
    publish(&api, Target::Channels(channels), body).await
}

pub(super) async fn publish_to_all(
    State(api): State<Api>,
    Publisher(caller): Publisher,
    JsonBody(body): JsonBody<PublishBody>,
) -> Result<Response, ApiError> {
    caller.check_publish_anywhere()?;
    publish(&api, Target::All, body).await
}

pub(super) async fn publish_to_user(
    State(api): State<Api>,
    Publisher(caller): Publisher,
    ApiPath(user): ApiPath<String>,
    JsonBody(body): JsonBody<PublishBody>,
) -> Result<Response, ApiError> {
    publish_to_one(&api, &caller, ChannelName::for_user(&user)?, body).await
}

pub(super) async fn publish_to_client(
    State(api): State<Api>,
    Publisher(caller): Publisher,
    ApiPath(client): ApiPath<String>,
    JsonBody(body): JsonBody<PublishBody>,
) -> Result<Response, ApiError> {
    let client = ClientId::new(&client)?;
    caller.check_publish_anywhere()?;
    publish(&api, Target::Client(client), body).await
}

async fn publish(api: &Api, target: Target, body: PublishBody) -> Result<Response, ApiError> {
    let published = api
        .hub
        .publish(target, body.into_event(&api.limits)?)
        .await?;
    Ok(Json(published).into_response())
}

pub(super) async fn close_channel(
    State(api): State<Api>,
    Publisher(caller): Publisher,
    ApiPath(channel): ApiPath<String>,
    OptionalJsonBody(body): OptionalJsonBody<PublishBody>,
) -> Result<Response, ApiError> {
    let channel = ChannelName::new(&channel)?;
    caller.check_publish(std::slice::from_ref(&channel), api.hub.namespaces())?;
    let final_event = match body {
        Some(body) => Some(body.into_event(&api.limits)?),
        None => None,
    };
    let published = api.hub.close_channel(channel, final_event).await?;
    Ok(Json(published).into_response())
}
