//! Herald: a real-time event hub that pushes events to browsers and apps over Server-Sent Events.
//!
//! Publishers hand events to a [`Hub`]; every subscriber of the event's channels gets it on its
//! `text/event-stream`, and a subscriber that reconnects with its last event id gets back what it
//! missed while that is still in history.
//!
//! The hub runs inside any tokio application. A complete axum service with a stream route and a
//! publish route:
//!
//! ```no_run
//! use axum::{extract::State, http::StatusCode, routing::{get, post}, Json, Router};
//! use herald_hub::{http::LastEventId, ChannelName, ClientOptions, ClientStream, ConnectError};
//! use herald_hub::{Hub, HubConfig, Published};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize)]
//! struct Order {
//!     id: u64,
//!     total_cents: u64,
//! }
//!
//! /// `GET /orders/stream`: the `orders` channel as `text/event-stream`. A browser that
//! /// reconnects sends `Last-Event-ID` and gets what it missed.
//! async fn stream(
//!     State(hub): State<Hub>,
//!     LastEventId(last_event_id): LastEventId,
//! ) -> Result<ClientStream, ConnectError> {
//!     let channels = vec![ChannelName::new("orders").expect("a valid channel name")];
//!     hub.add_client(ClientOptions { channels, last_event_id, ..ClientOptions::default() })
//! }
//!
//! /// `POST /orders`: tells every subscriber of `orders`.
//! async fn create(
//!     State(hub): State<Hub>,
//!     Json(order): Json<Order>,
//! ) -> Result<Json<Published>, (StatusCode, String)> {
//!     let published = hub
//!         .broadcast("orders", "created", &order, None)
//!         .await
//!         .map_err(|err| (StatusCode::INTERNAL_SERVER_ERROR, err.to_string()))?;
//!     Ok(Json(published))
//! }
//!
//! #[tokio::main]
//! async fn main() -> std::io::Result<()> {
//!     let hub = Hub::new(HubConfig::default());
//!     let app = Router::new()
//!         .route("/orders", post(create))
//!         .route("/orders/stream", get(stream))
//!         .with_state(hub.clone())
//!         // Herald's own HTTP API (publish, poll, admin), under /herald.
//!         .nest("/herald", herald_hub::http::router(hub.clone(), herald_hub::http::HttpConfig::default()));
//!     let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//!     axum::serve(listener, app)
//!         .with_graceful_shutdown(async move {
//!             let _ = tokio::signal::ctrl_c().await;
//!             // An event stream never ends by itself: end them all, so `serve` can finish.
//!             hub.shutdown();
//!         })
//!         .await
//! }
//! ```
//!
//! Without HTTP, a connection is a stream of SSE bytes:
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use futures_util::StreamExt;
//! use herald_hub::{ChannelName, ClientOptions, Hub, HubConfig};
//!
//! let hub = Hub::new(HubConfig::default());
//! let channels = vec![ChannelName::new("orders")?];
//! let mut stream = hub.add_client(ClientOptions { channels, ..ClientOptions::default() })?;
//! hub.broadcast("orders", "created", &serde_json::json!({"id": 7}), None).await?;
//!
//! // One block: the retry interval, the id the stream starts from, and `connected`.
//! let opening = stream.next().await.expect("a stream opens with `retry:` and `connected`");
//! let opening = std::str::from_utf8(&opening)?;
//! assert!(opening.starts_with("retry: 3000\nid: "));
//! assert!(opening.contains("\nevent: connected\ndata: {"));
//! let event = stream.next().await.expect("the event is queued");
//! assert!(event.ends_with(b"event: created\ndata: {\"id\":7}\n\n"));
//! # Ok(())
//! # }
//! ```
//!
//! `docs/embedding.md` covers configuration in code, nesting the router, hooks and shutdown; the
//! crate's `examples/` folder holds three small real services.
//!
//! # Layout
//! - [`Hub`] (`hub/`): the front door. `hub/publish.rs` holds the one path every event takes,
//!   `hub/connect.rs` connections and resume, `hub/query.rs` clients, channels and stats,
//!   `hub/poll.rs` pages of history, `hub/sweep.rs` the one timer, `hub/topics.rs` Mercure-style
//!   topic-selecting connections, `hub/error.rs` the errors.
//! - `log/`: the log seam (`log/mod.rs`, the `Log` trait) and its three implementations:
//!   `log/memory.rs`, `log/durable.rs` (redb, behind [`Hub::open`]) and `log/cluster/` (Redis,
//!   behind [`Hub::join_cluster`]: `mod.rs` appends, `reader.rs` follows the stream,
//!   `registry.rs` the live nodes). `log/entry.rs` is the one stored form of an event.
//! - `history`: the bounded, ordered records that give every event its position, kept per
//!   namespace (`history/ring.rs`), each trimmed by its own rules.
//! - `namespace`: rules per channel prefix (history, access, presence, subscriber limit) and the
//!   lookup from a channel to its namespace.
//! - `record`: one event in history, laid out once; its encoded frame is the only copy of it.
//! - `fanout`: the registry of live connections by channel and by client id.
//! - `hooks`: application code told when a connection opens or ends, and the watcher told when a
//!   channel is occupied or vacated.
//! - `presence`: who is on a channel, and coalesced `join` / `leave` events
//!   ([`Hub::presence`], [`PresenceSink`]); `hub/presence.rs` runs its tick.
//! - `webhooks` (feature `axum`): those changes, and presence, `POST`ed to the application,
//!   signed, from a bounded queue ([`Webhooks`]).
//! - `client` and `stream`: one connection's bounded queue, and the byte stream
//!   ([`ClientStream`]) that drains it.
//! - `direct`: the one task that writes events to connections whose own task sleeps.
//! - `wire`: SSE encoding, done once per event.
//! - `metrics`: the lock-free counters behind [`Hub::metrics`] (and `GET /metrics`).
//! - `channel`, `event`: validated names, ids and payloads ([`ChannelName`], [`EventData`]).
//! - `topic`: topic selectors (exact, `*`, URI templates, URL patterns) and the private-update
//!   grants of topic-selecting connections ([`TopicFilter`], used by Mercure subscribers).
//! - `config`: settings and their defaults ([`HubConfig`]).
//! - [`http`] (feature `axum`, on by default): the HTTP API and the server loop.
//!
//! Every public type has one path: the crate root, or [`http`] for the HTTP layer.

mod channel;
mod client;
mod config;
mod direct;
mod event;
mod fanout;
mod history;
mod hooks;
mod hub;
mod log;
mod metrics;
mod namespace;
mod presence;
mod record;
mod stream;
mod topic;
mod wire;

#[cfg(feature = "axum")]
pub mod http;
#[cfg(feature = "axum")]
mod webhooks;

pub use channel::{ChannelName, ChannelNameError, CHANNEL_NAME_LEN_MAX, TOPIC_LEN_MAX};
pub use config::{
    HistoryConfig, HubConfig, PresenceConfig, CLIENT_LINGER_DEFAULT,
    CONNECTIONS_PER_USER_MAX_DEFAULT, HEARTBEAT_INTERVAL_DEFAULT, HISTORY_AGE_MAX_DEFAULT,
    HISTORY_BYTES_MAX_DEFAULT, HISTORY_LEN_MAX_DEFAULT, PRESENCE_LINGER_DEFAULT,
    PRESENCE_NODE_TIMEOUT_DEFAULT, QUEUE_CAPACITY_DEFAULT, RETRY_INTERVAL_DEFAULT,
};
pub use event::{
    validate_event_id, validate_event_name, ClientId, EventData, FieldError, NewEvent,
    CLIENT_ID_LEN_MAX, EVENT_ID_LEN_MAX, EVENT_NAME_LEN_MAX,
};
pub use hub::{
    ChannelInfo, ClientInfo, ClientOptions, ConnectError, EventPage, HistoryStats, Hub,
    PolledEvent, PublishError, Published, SendError, Stats, SubscriptionError, POLL_LIMIT_MAX,
};
pub use log::{
    ClusterConfig, ClusterError, FsyncPolicy, LogError, StoreError, DATA_FILE_NAME,
    KEY_PREFIX_DEFAULT, REDIS_URL_DEFAULT,
};
pub use metrics::{
    ChannelMetrics, CloseReason, Histogram, LogHealth, Metrics, PublishResult, WebhookMetrics,
    LATENCY_BUCKETS_SECONDS,
};
pub use namespace::{
    ByteSize, HistoryKeep, NamespaceConfig, NamespaceError, NamespaceRules, Namespaces,
    PublishRule, Retention, SubscribeRule, DEFAULT_NAMESPACE, GRACE_DEFAULT, NAMESPACES_MAX,
};
pub use presence::{
    Presence, PresenceChange, PresenceError, PresenceKind, PresenceSink, PresenceUser,
    PRESENCE_TICK,
};
pub use record::{Target, PUBLISH_CHANNELS_MAX};
pub use stream::ClientStream;
pub use topic::{SelectorError, TopicFilter, TopicSelector};
#[cfg(feature = "axum")]
pub use webhooks::{
    WebhookConfig, WebhookError, Webhooks, DELIVERY_ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER,
    WEBHOOK_ATTEMPTS_MAX, WEBHOOK_BATCH_MAX, WEBHOOK_QUEUE_DEFAULT, WEBHOOK_RETRY_DELAY_FIRST,
    WEBHOOK_RETRY_DELAY_MAX, WEBHOOK_SECRET_LEN_MIN, WEBHOOK_TIMEOUT_DEFAULT,
    WEBHOOK_VACATED_DELAY_DEFAULT,
};
