//! The HTTP API, version 1: thin handlers that validate input and call the [`Hub`].
//!
//! Owns the URL layout, request and response shapes (the SSE response itself is `sse`'s), and
//! which right each endpoint asks of its caller (see `auth`). It keeps no state of its own beyond
//! the stream counts of `admission`, and never holds a connection's queue; see `docs/api.md` for
//! the reference and `docs/security.md` for the rights and limits.

use super::{
    admission::{Admission, CONNECTIONS_MAX_DEFAULT, CONNECTIONS_PER_ADDRESS_MAX_DEFAULT},
    auth::{AuthConfig, Caller, Publisher, Subscriber},
    error::ApiError,
    extract::{ApiPath, BodyReadTimeout, JsonBody, OptionalJsonBody, PeerAddr, QueryParams},
    sse::sse_response,
};
use crate::{
    channel::ChannelName,
    event::{ClientId, EventData, NewEvent},
    hub::{ClientOptions, ConnectError},
    record::Target,
    Hub,
};
use axum::{
    extract::{DefaultBodyLimit, FromRef, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::{delete, get, post},
    Json, Router,
};
use futures_util::StreamExt;
use serde::Deserialize;
use std::{net::IpAddr, sync::Arc, time::Duration};

/// Default largest request body: 1 MiB.
pub const BODY_BYTES_MAX_DEFAULT: usize = 1024 * 1024;
/// Default most channels one stream may subscribe to.
pub const CHANNELS_PER_CONNECTION_MAX_DEFAULT: usize = 50;
/// Default largest event payload (the `data` as it goes on the wire): 64 KiB.
pub const EVENT_BYTES_MAX_DEFAULT: usize = 64 * 1024;
/// Default time a request body has to arrive in full: 10 s.
pub const BODY_READ_TIMEOUT_DEFAULT: Duration = Duration::from_secs(10);
/// Default number of events a poll returns.
const POLL_LIMIT_DEFAULT: usize = 100;

/// Limits the HTTP layer enforces before the hub sees a request.
#[derive(Debug, Clone)]
pub struct HttpLimits {
    /// Largest request body in bytes; larger is `413 payload_too_large`. Default
    /// [`BODY_BYTES_MAX_DEFAULT`].
    pub body_bytes_max: usize,
    /// Most channels one stream or poll may ask for; more is `400 too_many_channels`. Default
    /// [`CHANNELS_PER_CONNECTION_MAX_DEFAULT`].
    pub channels_per_connection_max: usize,
    /// Largest event payload in bytes (its `data` as sent); larger is `413 event_too_large`, so
    /// one publish cannot fill every subscriber's queue and history. Default
    /// [`EVENT_BYTES_MAX_DEFAULT`].
    pub event_bytes_max: usize,
    /// Time a request body has to arrive in full; slower is `408 body_timeout`. Never applies to
    /// event streams. Default [`BODY_READ_TIMEOUT_DEFAULT`].
    pub body_read_timeout: Duration,
    /// Most event streams open at once; more is `503 at_capacity`. 0 is no limit. Default
    /// [`CONNECTIONS_MAX_DEFAULT`].
    pub connections_max: usize,
    /// Most event streams one client address holds (an IPv6 /64 counts as one address; loopback
    /// is not counted); more is `429 too_many_connections`. 0 is no limit. Default
    /// [`CONNECTIONS_PER_ADDRESS_MAX_DEFAULT`].
    pub connections_per_address_max: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            body_bytes_max: BODY_BYTES_MAX_DEFAULT,
            channels_per_connection_max: CHANNELS_PER_CONNECTION_MAX_DEFAULT,
            event_bytes_max: EVENT_BYTES_MAX_DEFAULT,
            body_read_timeout: BODY_READ_TIMEOUT_DEFAULT,
            connections_max: CONNECTIONS_MAX_DEFAULT,
            connections_per_address_max: CONNECTIONS_PER_ADDRESS_MAX_DEFAULT,
        }
    }
}

/// Everything [`router`] needs besides the hub. Default: default limits, `none` auth, no trusted
/// proxy.
#[derive(Debug, Clone, Default)]
pub struct HttpConfig {
    /// Request and connection limits.
    pub limits: HttpLimits,
    /// How callers authenticate and what each may do.
    pub auth: AuthConfig,
    /// Peers (reverse proxies) whose `X-Forwarded-For` names the client for the per-address
    /// limit. Default: none, so the peer's own address counts.
    pub trusted_proxies: Vec<IpAddr>,
}

impl From<HttpLimits> for HttpConfig {
    fn from(limits: HttpLimits) -> Self {
        Self {
            limits,
            ..Self::default()
        }
    }
}

#[derive(Clone)]
struct Api {
    hub: Hub,
    limits: HttpLimits,
    auth: AuthConfig,
    admission: Arc<Admission>,
}

impl FromRef<Api> for AuthConfig {
    fn from_ref(api: &Api) -> Self {
        api.auth.clone()
    }
}

impl FromRef<Api> for BodyReadTimeout {
    fn from_ref(api: &Api) -> Self {
        BodyReadTimeout(api.limits.body_read_timeout)
    }
}

/// The API's routes over `hub`, ready to serve or to nest into an application's router.
///
/// Takes an [`HttpConfig`], or just [`HttpLimits`] for `none` auth.
pub fn router(hub: Hub, config: impl Into<HttpConfig>) -> Router {
    let HttpConfig {
        limits,
        auth,
        trusted_proxies,
    } = config.into();
    let body_limit = limits.body_bytes_max;
    let admission = Arc::new(Admission::new(
        limits.connections_max,
        limits.connections_per_address_max,
        trusted_proxies,
    ));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/api/stream", get(stream_channels))
        .route("/api/channels", get(list_channels))
        .route("/api/channels/{channel}/stream", get(stream_channel))
        .route(
            "/api/channels/{channel}/events",
            post(publish_to_channel).get(poll_channel),
        )
        .route("/api/channels/{channel}/close", post(close_channel))
        .route("/api/events", post(publish_to_channels).get(poll_channels))
        .route("/api/broadcast", post(publish_to_all))
        .route("/api/users/{user}/events", post(publish_to_user))
        .route("/api/clients", get(list_clients))
        .route(
            "/api/clients/{client}",
            get(get_client).delete(remove_client),
        )
        .route("/api/clients/{client}/events", post(publish_to_client))
        .route("/api/clients/{client}/subscriptions", post(subscribe))
        .route(
            "/api/clients/{client}/subscriptions/{channel}",
            delete(unsubscribe),
        )
        .route("/api/stats", get(stats))
        .fallback(|| async { ApiError::route_not_found() })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this endpoint does not take that method",
            )
        })
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(Api {
            hub,
            limits,
            auth,
            admission,
        })
}

async fn healthz(State(api): State<Api>) -> Response {
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

// ---- streams -------------------------------------------------------------------------------

async fn stream_channel(
    State(api): State<Api>,
    Subscriber(caller): Subscriber,
    ApiPath(channel): ApiPath<String>,
    query: QueryParams,
    headers: HeaderMap,
    peer: PeerAddr,
) -> Result<Response, ApiError> {
    let channel = ChannelName::new(&channel)?;
    open_stream(&api, &caller, vec![channel], &query, &headers, peer)
}

async fn stream_channels(
    State(api): State<Api>,
    Subscriber(caller): Subscriber,
    query: QueryParams,
    headers: HeaderMap,
    peer: PeerAddr,
) -> Result<Response, ApiError> {
    let channels = channels_from_query(&query)?;
    open_stream(&api, &caller, channels, &query, &headers, peer)
}

fn channels_from_query(query: &QueryParams) -> Result<Vec<ChannelName>, ApiError> {
    query
        .all("channel")
        .map(|c| ChannelName::new(c).map_err(ApiError::from))
        .collect()
}

fn open_stream(
    api: &Api,
    caller: &Caller,
    channels: Vec<ChannelName>,
    query: &QueryParams,
    headers: &HeaderMap,
    peer: PeerAddr,
) -> Result<Response, ApiError> {
    check_channel_count(api, &channels)?;
    caller.check_subscribe(&channels)?;
    // The header is what EventSource sends on reconnect, so it wins over the URL's initial value.
    let last_event_id = match headers.get("last-event-id") {
        Some(value) => Some(
            value
                .to_str()
                .map_err(|_| ApiError::invalid_query("Last-Event-ID is not visible ASCII"))?
                .to_owned(),
        ),
        None => query.last("lastEventId").map(str::to_owned),
    }
    .filter(|id| !id.is_empty());
    let client_id = query.last("clientId").map(ClientId::new).transpose()?;
    if let Some(id) = &client_id {
        // Taking over a client id (live, or left recently) closes its stream and inherits what is
        // sent to it: only its own user may.
        if let Some(holder) = api.hub.client_id_holder(id) {
            caller.check_take_over(id, holder.as_deref())?;
        }
    }
    let slot = api.admission.admit(peer.0, headers)?;
    let options = ClientOptions {
        client_id,
        user: caller.user().map(str::to_owned),
        channels,
        last_event_id,
        remote_addr: peer.0,
    };
    match api.hub.add_client(options) {
        Ok(stream) => {
            // The stream's slot is held by its body and freed when the response ends.
            let stream = stream.map(move |chunk| {
                let _slot = &slot;
                chunk
            });
            Ok(sse_response(stream))
        }
        Err(ConnectError::ChannelClosed(_)) => Ok(StatusCode::NO_CONTENT.into_response()),
        Err(err @ ConnectError::ShuttingDown) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            err.to_string(),
        )),
    }
}

fn check_channel_count(api: &Api, channels: &[ChannelName]) -> Result<(), ApiError> {
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

// ---- publishing ----------------------------------------------------------------------------

/// The body of every publish endpoint.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PublishBody {
    event: Option<String>,
    data: serde_json::Value,
    id: Option<String>,
    /// Only for `POST /api/events`.
    channels: Option<Vec<String>>,
}

impl PublishBody {
    /// The event, checked against the payload size limit.
    fn into_event(self, limits: &HttpLimits) -> Result<NewEvent, ApiError> {
        let data = EventData::from_json(self.data);
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
        })
    }

    fn refuse_channels(&self) -> Result<(), ApiError> {
        match self.channels {
            Some(_) => Err(ApiError::invalid_body(
                "`channels` is only taken by POST /api/events",
            )),
            None => Ok(()),
        }
    }
}

async fn publish_to_channel(
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
    caller.check_publish(std::slice::from_ref(&channel))?;
    body.refuse_channels()?;
    publish(api, Target::Channels(vec![channel]), body).await
}

async fn publish_to_channels(
    State(api): State<Api>,
    Publisher(caller): Publisher,
    JsonBody(mut body): JsonBody<PublishBody>,
) -> Result<Response, ApiError> {
    let names = body
        .channels
        .take()
        .ok_or_else(|| ApiError::invalid_body("missing field `channels`"))?;
    let channels = names
        .iter()
        .map(|c| ChannelName::new(c))
        .collect::<Result<Vec<_>, _>>()?;
    caller.check_publish(&channels)?;
    publish(&api, Target::Channels(channels), body).await
}

async fn publish_to_all(
    State(api): State<Api>,
    Publisher(caller): Publisher,
    JsonBody(body): JsonBody<PublishBody>,
) -> Result<Response, ApiError> {
    caller.check_publish_anywhere()?;
    body.refuse_channels()?;
    publish(&api, Target::All, body).await
}

async fn publish_to_user(
    State(api): State<Api>,
    Publisher(caller): Publisher,
    ApiPath(user): ApiPath<String>,
    JsonBody(body): JsonBody<PublishBody>,
) -> Result<Response, ApiError> {
    publish_to_one(&api, &caller, ChannelName::for_user(&user)?, body).await
}

async fn publish_to_client(
    State(api): State<Api>,
    Publisher(caller): Publisher,
    ApiPath(client): ApiPath<String>,
    JsonBody(body): JsonBody<PublishBody>,
) -> Result<Response, ApiError> {
    let client = ClientId::new(&client)?;
    caller.check_publish_anywhere()?;
    body.refuse_channels()?;
    publish(&api, Target::Client(client), body).await
}

async fn publish(api: &Api, target: Target, body: PublishBody) -> Result<Response, ApiError> {
    let published = api
        .hub
        .publish(target, body.into_event(&api.limits)?)
        .await?;
    Ok(Json(published).into_response())
}

async fn close_channel(
    State(api): State<Api>,
    Publisher(caller): Publisher,
    ApiPath(channel): ApiPath<String>,
    OptionalJsonBody(body): OptionalJsonBody<PublishBody>,
) -> Result<Response, ApiError> {
    let channel = ChannelName::new(&channel)?;
    caller.check_publish(std::slice::from_ref(&channel))?;
    let final_event = match body {
        Some(body) => {
            body.refuse_channels()?;
            Some(body.into_event(&api.limits)?)
        }
        None => None,
    };
    let published = api.hub.close_channel(channel, final_event).await?;
    Ok(Json(published).into_response())
}

// ---- polling -------------------------------------------------------------------------------

async fn poll_channel(
    State(api): State<Api>,
    Subscriber(caller): Subscriber,
    ApiPath(channel): ApiPath<String>,
    query: QueryParams,
) -> Result<Response, ApiError> {
    let channel = ChannelName::new(&channel)?;
    poll(&api, &caller, &[channel], &query)
}

async fn poll_channels(
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
    caller.check_subscribe(channels)?;
    let limit = match query.last("limit") {
        None => POLL_LIMIT_DEFAULT,
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=crate::hub::POLL_LIMIT_MAX).contains(n))
            .ok_or_else(|| {
                ApiError::invalid_query(format!(
                    "limit must be 1 to {}",
                    crate::hub::POLL_LIMIT_MAX
                ))
            })?,
    };
    let after = query
        .last("after")
        .or_else(|| query.last("lastEventId"))
        .filter(|a| !a.is_empty());
    Ok(Json(api.hub.events_after(channels, after, limit)).into_response())
}

// ---- admin ---------------------------------------------------------------------------------

async fn list_clients(
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
            .map_err(cluster_unavailable)?;
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

async fn get_client(
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

async fn remove_client(
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
struct SubscribeBody {
    channel: String,
}

async fn subscribe(
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

async fn unsubscribe(
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

async fn list_channels(
    State(api): State<Api>,
    Publisher(caller): Publisher,
) -> Result<Response, ApiError> {
    caller.check_admin()?;
    Ok(Json(serde_json::json!({"channels": api.hub.channels()})).into_response())
}

async fn stats(
    State(api): State<Api>,
    Publisher(caller): Publisher,
    query: QueryParams,
) -> Result<Response, ApiError> {
    caller.check_admin()?;
    if is_cluster_scope(&query)? {
        return Ok(
            Json(api.hub.cluster_stats().await.map_err(cluster_unavailable)?).into_response(),
        );
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

fn cluster_unavailable(err: crate::LogError) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        err.to_string(),
    )
}
