//! The dashboard's live feeds: `GET /admin/feed` (the hub's figures once a second) and
//! `GET /admin/channels/{channel}/feed` (a channel's events as they arrive).
//!
//! Owns what the dashboard shows and how often. The figures come from what the hub reports
//! ([`Hub::stats`], [`Hub::channels`], [`Hub::clients`], and in a cluster
//! [`Hub::cluster_stats`] and [`Hub::cluster_clients`]); rates are left to the page, which
//! differences the counters. A channel feed subscribes through [`Hub::add_client`] like any
//! stream. A feed without a live session answers one `signed-out` event and ends, so the page
//! can say so (an `EventSource` cannot read an error status). Every feed ends when the hub shuts
//! down or the session ends.

use super::{guard::AdminSession, Dashboard};
use crate::{
    http::{error::ApiError, extract::ApiPath, extract::PeerAddr, sse::sse_response},
    ChannelName, ClientOptions, Hub,
};
use axum::{
    body::Bytes,
    extract::{FromRequestParts, Request, State},
    response::{IntoResponse, Response},
};
use futures_util::{stream, StreamExt};
use std::time::Duration;

/// How often the figures are sent.
pub(super) const FEED_INTERVAL: Duration = Duration::from_secs(1);
/// Most channels and most clients one figure update lists (the busiest channels; the oldest
/// clients); the totals are always sent.
const LISTED_MAX: usize = 100;
/// The reconnect delay the feeds announce.
const FEED_RETRY_MS: u64 = 2000;
/// The reconnect delay a refused feed announces: long, as only signing in again helps (the page
/// closes its `EventSource` on `signed-out` anyway).
const SIGNED_OUT_RETRY_MS: u64 = 60_000;
/// Largest JSON error a refused feed carries.
const SIGNED_OUT_BYTES_MAX: usize = 4096;

pub(in crate::http) async fn feed(
    State(dashboard): State<Dashboard>,
    request: Request,
) -> Response {
    let (mut parts, _) = request.into_parts();
    let admin = match AdminSession::from_request_parts(&mut parts, &dashboard).await {
        Ok(admin) => admin,
        Err(refused) => return signed_out(refused).await,
    };
    let first = Bytes::from(format!("retry: {FEED_RETRY_MS}\n\n"));
    let ticks = stream::unfold(
        (dashboard, admin.id, true),
        |(dashboard, id, is_first)| async move {
            if !is_first {
                tokio::time::sleep(FEED_INTERVAL).await;
            }
            if dashboard.hub.is_shutting_down() || dashboard.sessions.get(&id).is_none() {
                return None;
            }
            let figures = figures(&dashboard.hub).await;
            let frame = Bytes::from(format!("event: figures\ndata: {figures}\n\n"));
            Some((frame, (dashboard, id, false)))
        },
    );
    sse_response(stream::once(async { first }).chain(ticks), None)
}

/// One update: this node's stats and history retention, the cluster's stats when there is one,
/// channels ranked by subscribers, and the connected clients.
async fn figures(hub: &Hub) -> serde_json::Value {
    let stats = hub.stats();
    let is_cluster = stats.node != "standalone";
    let mut channels = hub.channels();
    channels.sort_by(|a, b| b.subscribers.cmp(&a.subscribers).then(a.name.cmp(&b.name)));
    let channels_total = channels.len();
    channels.truncate(LISTED_MAX);
    let (cluster, clients, cluster_error) = if is_cluster {
        match (hub.cluster_stats().await, hub.cluster_clients().await) {
            (Ok(cluster), Ok(clients)) => (Some(cluster), clients, None),
            (Err(err), _) | (_, Err(err)) => {
                (None, local_clients(hub, &stats.node), Some(err.to_string()))
            }
        }
    } else {
        (None, local_clients(hub, &stats.node), None)
    };
    let clients_total = clients.len();
    let clients: Vec<_> = clients.into_iter().take(LISTED_MAX).collect();
    serde_json::json!({
        "node": stats,
        "retention": hub.config().history,
        "cluster": cluster,
        "clusterError": cluster_error,
        "channels": channels,
        "channelsTotal": channels_total,
        "clients": clients,
        "clientsTotal": clients_total,
    })
}

/// This node's clients, each with its `node` as the cluster's list has it.
fn local_clients(hub: &Hub, node: &str) -> Vec<serde_json::Value> {
    hub.clients()
        .into_iter()
        .filter_map(|client| serde_json::to_value(client).ok())
        .map(|mut client| {
            client["node"] = serde_json::Value::String(node.to_owned());
            client
        })
        .collect()
}

pub(in crate::http) async fn channel_feed(
    State(dashboard): State<Dashboard>,
    request: Request,
) -> Response {
    let (mut parts, _) = request.into_parts();
    let admin = AdminSession::from_request_parts(&mut parts, &dashboard).await;
    let channel = match ApiPath::<String>::from_request_parts(&mut parts, &dashboard).await {
        Ok(ApiPath(channel)) => ChannelName::new(&channel).map_err(ApiError::from),
        Err(refused) => Err(refused),
    };
    let (admin, channel) = match (admin, channel) {
        (Ok(admin), Ok(channel)) => (admin, channel),
        (Err(refused), _) | (_, Err(refused)) => return signed_out(refused).await,
    };
    let PeerAddr(peer) = PeerAddr::from_request_parts(&mut parts, &dashboard)
        .await
        .unwrap_or(PeerAddr(None));
    let options = ClientOptions {
        client_id: None,
        user: None,
        // No caller's identity looks like this (`user:…`, `key:…`, `token:…`), so nobody else
        // may take the feed's client id over.
        owner: Some("dashboard".to_owned()),
        channels: vec![channel],
        last_event_id: None,
        remote_addr: peer,
        presence: false,
    };
    match dashboard.hub.add_client(options) {
        Ok(stream) => {
            let sessions = dashboard.sessions.clone();
            let id = admin.id;
            let end = stream.end_signal();
            // The stream ends with the session: checked as each event passes, and at least as
            // often as the hub's heartbeats.
            sse_response(
                stream.take_while(move |_| {
                    let is_live = sessions.get(&id).is_some();
                    async move { is_live }
                }),
                Some(end),
            )
        }
        Err(refused) => refused.into_response(),
    }
}

/// A feed refused: one `signed-out` event carrying the JSON error answer, then the end.
async fn signed_out(refused: ApiError) -> Response {
    let answer = refused.into_response().into_body();
    let body = axum::body::to_bytes(answer, SIGNED_OUT_BYTES_MAX)
        .await
        .unwrap_or_default();
    let body = String::from_utf8_lossy(&body).replace(['\r', '\n'], " ");
    let frame = format!("retry: {SIGNED_OUT_RETRY_MS}\n\nevent: signed-out\ndata: {body}\n\n");
    sse_response(stream::once(async move { Bytes::from(frame) }), None)
}
