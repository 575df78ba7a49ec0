//! The presence endpoint: `GET /api/channels/{channel}/presence`, who is on a channel.
//!
//! Owns the request and the right it needs: the same as subscribing to the channel (whoever may
//! hear a channel may see who else does; nobody else may). The answer is the hub's
//! ([`crate::Hub::presence`]). It never counts connections itself.

use super::Api;
use crate::{
    http::{
        auth::Subscriber,
        error::ApiError,
        extract::{ApiPath, PeerAddr},
    },
    ChannelName, Presence,
};
use axum::{extract::State, http::HeaderMap, Json};

pub(super) async fn presence(
    State(api): State<Api>,
    Subscriber(caller): Subscriber,
    peer: PeerAddr,
    headers: HeaderMap,
    ApiPath(channel): ApiPath<String>,
) -> Result<Json<Presence>, ApiError> {
    let channel = ChannelName::new(&channel)?;
    api.auth
        .authorize_subscribe(
            caller,
            api.hub.namespaces(),
            &headers,
            peer.0,
            std::slice::from_ref(&channel),
        )
        .await?;
    Ok(Json(api.hub.presence(&channel).await?))
}
