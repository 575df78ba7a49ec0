//! The stream endpoints: `GET /api/channels/{channel}/stream` and `GET /api/stream?channel=…`.
//!
//! Owns opening an event stream over HTTP: the channels asked for, the caller's right to hear
//! them (in `app` mode, the application's answer), the identity a `clientId` is bound to (a
//! `clientId` bound to another identity is not given: the stream gets a fresh id, as if it had
//! asked for none), the opt-in to presence events (`presence=true`), the connection limits
//! (`admission`), and the resume position
//! ([`LastEventId`]). The stream itself is the hub's ([`crate::ClientStream`]); its answer and
//! the answer to a refused stream are `sse`'s. It never reads a connection's queue.

use super::Api;
use crate::{
    http::{
        auth::{Caller, Subscriber},
        error::ApiError,
        extract::{ApiPath, PeerAddr, QueryParams},
        last_event_id::LastEventId,
        sse::sse_response,
    },
    ChannelName, ClientId, ClientOptions,
};
use axum::{
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use futures_util::StreamExt;

/// What a stream request asks for besides its channels.
struct StreamRequest {
    caller: Caller,
    query: QueryParams,
    last_event_id: LastEventId,
    headers: HeaderMap,
    peer: PeerAddr,
}

pub(super) async fn stream_channel(
    State(api): State<Api>,
    Subscriber(caller): Subscriber,
    ApiPath(channel): ApiPath<String>,
    query: QueryParams,
    last_event_id: LastEventId,
    headers: HeaderMap,
    peer: PeerAddr,
) -> Result<Response, ApiError> {
    let channel = ChannelName::new(&channel)?;
    let request = StreamRequest {
        caller,
        query,
        last_event_id,
        headers,
        peer,
    };
    open_stream(&api, vec![channel], request).await
}

pub(super) async fn stream_channels(
    State(api): State<Api>,
    Subscriber(caller): Subscriber,
    query: QueryParams,
    last_event_id: LastEventId,
    headers: HeaderMap,
    peer: PeerAddr,
) -> Result<Response, ApiError> {
    let channels = channels_from_query(&query)?;
    let request = StreamRequest {
        caller,
        query,
        last_event_id,
        headers,
        peer,
    };
    open_stream(&api, channels, request).await
}

/// Every `channel` query parameter, validated.
pub(super) fn channels_from_query(query: &QueryParams) -> Result<Vec<ChannelName>, ApiError> {
    query
        .all("channel")
        .map(|c| ChannelName::new(c).map_err(ApiError::from))
        .collect()
}

async fn open_stream(
    api: &Api,
    channels: Vec<ChannelName>,
    request: StreamRequest,
) -> Result<Response, ApiError> {
    let StreamRequest {
        caller,
        query,
        last_event_id: LastEventId(last_event_id),
        headers,
        peer,
    } = request;
    check_channel_count(api, &channels)?;
    let requested = query.last("clientId").map(ClientId::new).transpose()?;
    let presence = wants_presence(&query)?;
    let caller = api
        .auth
        .authorize_subscribe(caller, api.hub.namespaces(), &headers, peer.0, &channels)
        .await?;
    let slot = api.admission.admit(peer.0, &headers)?;
    // Taking a client id (live, or left while events for it wait) closes its stream and inherits
    // what is sent to it: only the identity it is bound to may; anyone else gets a fresh id.
    let owner = caller.identity().map(str::to_owned);
    let client_id = api.hub.claim_client_id(requested, owner.as_deref()).await;
    let options = ClientOptions {
        client_id: Some(client_id),
        owner,
        user: caller.user().map(str::to_owned),
        channels,
        last_event_id,
        remote_addr: peer.0,
        presence,
    };
    match api.hub.add_client(options) {
        Ok(stream) => {
            let end = stream.end_signal();
            // The stream's slot is held by its body and freed when the response ends.
            let stream = stream.map(move |chunk| {
                let _slot = &slot;
                chunk
            });
            Ok(sse_response(stream, Some(end)))
        }
        Err(refused) => Ok(refused.into_response()),
    }
}

/// The `presence` query parameter: `true` (or `1`) asks for `join` and `leave` events on the
/// stream's channels that keep presence; absent, `false` or `0` does not.
///
/// # Errors
/// 400 `invalid_query` for any other value.
fn wants_presence(query: &QueryParams) -> Result<bool, ApiError> {
    match query.last("presence") {
        None | Some("false" | "0") => Ok(false),
        Some("true" | "1") => Ok(true),
        Some(_) => Err(ApiError::invalid_query("presence must be true or false")),
    }
}

/// Refuses a stream or poll naming more channels than the limit allows.
///
/// # Errors
/// 400 `too_many_channels`.
pub(super) fn check_channel_count(api: &Api, channels: &[ChannelName]) -> Result<(), ApiError> {
    let max = api.limits.channels_per_connection_max;
    if channels.len() > max {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "too_many_channels",
            format!("a stream or poll may name at most {max} channels"),
        ));
    }
    Ok(())
}
