//! The hub: the library's front door, tying history, fan-out and connections together.
//!
//! Owns the one path every event takes (validate → append to history → encode once → fan out) and
//! the rules around it: idempotent ids, resume points, closed channels, heartbeats, shutdown.
//! It never speaks HTTP (see `http`) and never waits on a subscriber: publishing is lock, push
//! bytes into bounded queues, unlock.

use crate::{
    channel::ChannelName,
    client::{ClientShared, EndReason},
    cluster::{Cluster, ClusterConfig, ClusterError, EntrySink, LogEntry, RegistryChange},
    config::HubConfig,
    event::{ClientId, EventData, FieldError, NewEvent},
    fanout::{Entry, Fanout},
    history::{History, Record, RecordKind, ResumePoint, Target},
    hooks::Hooks,
    store::{Durable, FsyncPolicy, Recovered, Store, StoreError, StoredTarget},
    stream::{ClientStream, Replay},
    wire,
};
use serde::Serialize;
use std::path::Path;
use std::{
    collections::{BTreeMap, HashMap},
    net::SocketAddr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, MutexGuard, Weak,
    },
    time::{Duration, Instant},
};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// A cheap-clone handle to one hub. Every clone talks to the same hub.
///
/// Creating a hub spawns one background task (heartbeats and history trimming), so it must be
/// created inside a tokio runtime; the task stops with [`Hub::shutdown`] or when the last handle
/// is dropped.
#[derive(Clone, Debug)]
pub struct Hub {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    config: HubConfig,
    state: Mutex<State>,
    counters: Counters,
    started_at: Instant,
    shutdown: CancellationToken,
    next_key: AtomicU64,
    /// Application code told when a connection opens or ends.
    hooks: Hooks,
    /// Durability progress of the durable log, when there is one.
    durable_rx: Option<watch::Receiver<Durable>>,
    /// The Redis log shared with other nodes, when this hub is part of a cluster.
    cluster: Option<Arc<Cluster>>,
    /// This node's name in stats: the cluster node id, or `standalone`.
    node_id: String,
}

#[derive(Debug, Default)]
struct Counters {
    published: AtomicU64,
    delivered: AtomicU64,
    /// Connections ended since start, whatever ended them.
    closed: AtomicU64,
}

#[derive(Debug)]
struct State {
    history: History,
    fanout: Fanout,
    /// Channels whose closing is still in history, with the position of the closing.
    closed: HashMap<ChannelName, u64>,
    /// Client ids whose connection ended recently: events sent to them wait in history.
    departed: HashMap<ClientId, Departed>,
    is_shutting_down: bool,
    /// The durable log behind `--data-dir`; appended to in position order under this lock.
    store: Option<Store>,
}

/// A client id whose connection ended recently, and the user it belonged to (so another user
/// cannot claim the id and the events waiting for it).
#[derive(Debug)]
struct Departed {
    left_at: Instant,
    user: Option<Arc<str>>,
}

impl Departed {
    fn of(client: &ClientShared) -> Self {
        Self {
            left_at: Instant::now(),
            user: client.user.clone(),
        }
    }
}

/// The answer to a publish.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Published {
    /// The event's id, as subscribers see it.
    pub id: String,
    /// Connections on this hub the event was queued to.
    pub recipients: usize,
    /// True when the id was already in history: nothing was delivered again, and this is the
    /// original event's answer.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub duplicate: bool,
    /// The event's position, to wait for its durability.
    #[serde(skip)]
    seq: u64,
}

/// Why a publish was refused. Nothing was published.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    /// The event's name or id breaks a rule.
    #[error(transparent)]
    InvalidField(#[from] FieldError),
    /// The event is addressed to a client that is not connected and did not leave recently.
    #[error("client {0} is not connected")]
    ClientNotFound(ClientId),
    /// A publish must name at least one channel.
    #[error("no channel given")]
    NoChannel,
    /// The log behind the hub (the durable log, or Redis in a cluster) cannot take the event
    /// now. It may or may not have been recorded: retry with the same publisher id to be safe.
    #[error("the event log is unavailable: {0}")]
    Unavailable(String),
}

/// Why [`Hub::broadcast`] or [`Hub::broadcast_all`] refused an event. Nothing was published.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The channel name breaks the naming rule.
    #[error(transparent)]
    InvalidChannel(#[from] crate::channel::ChannelNameError),
    /// The data cannot be represented as JSON (a map with non-string keys, a failing
    /// `Serialize` implementation).
    #[error("data cannot be serialized as JSON")]
    InvalidData(#[from] serde_json::Error),
    /// The hub refused the event: its name or id breaks a rule.
    #[error(transparent)]
    Publish(#[from] PublishError),
}

/// Why a connection could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectError {
    /// The hub is shutting down.
    #[error("the hub is shutting down")]
    ShuttingDown,
    /// Every channel asked for has been closed; a stream would only end at once.
    #[error("channel {0} is closed")]
    ChannelClosed(ChannelName),
}

/// Why a subscription change failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubscriptionError {
    /// No live connection has this id.
    #[error("client {0} is not connected")]
    ClientNotFound(ClientId),
    /// The connection is not subscribed to that channel.
    #[error("client is not subscribed to {0}")]
    NotSubscribed(ChannelName),
    /// The channel is closed.
    #[error("channel {0} is closed")]
    ChannelClosed(ChannelName),
}

/// How a new connection wants to start.
#[derive(Debug, Clone, Default)]
pub struct ClientOptions {
    /// Keep this client id (so events sent to it while it was away are replayed); `None`: a fresh
    /// random id. A live connection holding the same id is closed in favour of the new one.
    pub client_id: Option<ClientId>,
    /// The authenticated user, if any.
    pub user: Option<String>,
    /// Channels to subscribe to. May be empty: the connection then gets only broadcasts to all and
    /// events sent to it.
    pub channels: Vec<ChannelName>,
    /// Resume after this event id (the `Last-Event-ID` header).
    pub last_event_id: Option<String>,
    /// The peer's address, shown by the admin API.
    pub remote_addr: Option<SocketAddr>,
}

/// A connection as the admin API shows it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ClientInfo {
    /// Client id.
    pub id: ClientId,
    /// Channels it is subscribed to.
    pub channels: Vec<ChannelName>,
    /// The authenticated user, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// When it connected (RFC 3339).
    pub connected_at: String,
    /// The peer's address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote_addr: Option<String>,
}

/// A channel with live subscribers.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ChannelInfo {
    /// Channel name.
    pub name: ChannelName,
    /// Connections subscribed to it on this hub.
    pub subscribers: usize,
}

/// Counters of the hub, as `GET /api/stats` shows them.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    /// The node that answered: its cluster node id, or `standalone`.
    pub node: String,
    /// Live connections.
    pub connections: usize,
    /// Live connections per channel.
    pub connections_by_channel: BTreeMap<ChannelName, usize>,
    /// The connection open the longest, if any.
    pub oldest_connection: Option<ClientInfo>,
    /// Events accepted since start (duplicates not counted).
    pub events_published: u64,
    /// Events written to connections since start (one per connection per event).
    pub events_delivered: u64,
    /// Connections ended since start, whatever ended them.
    pub connections_closed: u64,
    /// Seconds since the hub started.
    pub uptime_seconds: u64,
    /// Events and bytes held in history.
    pub history: HistoryStats,
}

/// What history holds now.
#[derive(Debug, Clone, Serialize)]
pub struct HistoryStats {
    /// Events in history.
    pub events: usize,
    /// Bytes accounted to history.
    pub bytes: usize,
}

/// One page of history for the polling endpoints.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventPage {
    /// Matching events, oldest first.
    pub events: Vec<PolledEvent>,
    /// Pass as `after` to get the next page; `None` while history is empty.
    pub cursor: Option<String>,
    /// True when `after` was not found in history (unknown or expired): events may have been
    /// missed, so reload state; the page starts at the oldest event in history.
    pub reset: bool,
    /// True when more matching events may follow this page right away.
    pub has_more: bool,
}

/// One event as the polling endpoints return it.
#[derive(Debug, Clone, Serialize)]
pub struct PolledEvent {
    /// Event id.
    pub id: String,
    /// The channel it was published to (the first requested one); `None` for a broadcast to all.
    pub channel: Option<ChannelName>,
    /// Event name; `None` is the default `message`.
    pub event: Option<String>,
    /// The payload: JSON as published, or a string.
    pub data: serde_json::Value,
    /// True for a channel's closing (its final event, if any, is this item).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub closed: bool,
}

/// Most events one poll returns.
pub const POLL_LIMIT_MAX: usize = 1000;

impl Hub {
    /// Creates a hub and starts its background task.
    ///
    /// # Panics
    /// When called outside a tokio runtime.
    pub fn new(config: HubConfig) -> Self {
        let history = History::new(config.history.clone());
        Self::start(config, history, None)
    }

    /// Creates a hub whose history lives in a durable log under `data_dir` (created if missing):
    /// events recovered from it can be resumed from, and every publish is answered only once its
    /// event is on disk (see [`FsyncPolicy`]).
    ///
    /// # Errors
    /// [`StoreError`] when the folder or database cannot be used (unreadable, corrupt, or open in
    /// another hub); a hub never silently starts empty.
    ///
    /// # Panics
    /// When called outside a tokio runtime.
    pub fn open(
        config: HubConfig,
        data_dir: &Path,
        fsync: FsyncPolicy,
    ) -> Result<Self, StoreError> {
        let Recovered { store, records } = Store::open(data_dir, fsync)?;
        let recovered = records.len();
        let mut history = History::restore(config.history.clone(), records);
        history.trim(Instant::now());
        if let Some(first) = history.first_seq() {
            store.forget_through(first - 1);
        }
        tracing::info!(events = recovered, kept = history.len(), dir = %data_dir.display(), "recovered the durable log");
        Ok(Self::start(config, history, Some(store)))
    }

    /// Creates a hub that shares its event log with other nodes through Redis: an event published
    /// on any node reaches the subscribers of every node, in one order, with global ids. The node
    /// connects (and reconnects, with backoff) in the background; until it has, publishing answers
    /// [`PublishError::Unavailable`].
    ///
    /// # Errors
    /// [`ClusterError::InvalidUrl`] when the Redis URL is malformed.
    ///
    /// # Panics
    /// When called outside a tokio runtime.
    pub fn join_cluster(config: HubConfig, cluster: ClusterConfig) -> Result<Self, ClusterError> {
        let history_len = config.history.max_events;
        let cluster = Cluster::new(cluster, history_len, config.history.max_age)?;
        let history = History::new(config.history.clone());
        let hub = Self::start_with(config, history, None, Some(cluster.clone()));
        let sink: Arc<dyn EntrySink> = Arc::new(ClusterSink(Arc::downgrade(&hub.shared)));
        tokio::spawn(
            cluster
                .clone()
                .read_loop(sink, history_len, hub.shared.shutdown.clone()),
        );
        tokio::spawn(report_to_cluster(
            Arc::downgrade(&hub.shared),
            cluster,
            hub.shared.shutdown.clone(),
        ));
        Ok(hub)
    }

    fn start(config: HubConfig, history: History, store: Option<Store>) -> Self {
        Self::start_with(config, history, store, None)
    }

    fn start_with(
        config: HubConfig,
        history: History,
        store: Option<Store>,
        cluster: Option<Arc<Cluster>>,
    ) -> Self {
        let closed = history.closed_channels();
        let durable_rx = store.as_ref().map(Store::durable_rx);
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                history,
                fanout: Fanout::default(),
                closed,
                departed: HashMap::new(),
                is_shutting_down: false,
                store,
            }),
            durable_rx,
            node_id: cluster
                .as_ref()
                .map_or_else(|| "standalone".to_owned(), |c| c.node_id().to_owned()),
            cluster,
            config,
            counters: Counters::default(),
            started_at: Instant::now(),
            shutdown: CancellationToken::new(),
            next_key: AtomicU64::new(1),
            hooks: Hooks::default(),
        });
        tokio::spawn(sweep(
            Arc::downgrade(&shared),
            shared.shutdown.clone(),
            sweep_period(&shared.config),
        ));
        Self { shared }
    }

    /// The configuration this hub runs with.
    pub fn config(&self) -> &HubConfig {
        &self.shared.config
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Every mutation of State completes before the guard drops; a poisoned lock still holds
        // consistent data.
        self.shared
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Publishes one event to `target` and returns once it is recorded: at once in memory, once
    /// on disk with a durable log, once this node has read it back from Redis in a cluster.
    ///
    /// # Errors
    /// [`PublishError`] when the event is invalid, names no channel, is for a client that is
    /// neither connected nor recently departed, or the log is unavailable. Nothing is published
    /// then (for `Unavailable`, see its note).
    pub async fn publish(
        &self,
        target: Target,
        event: NewEvent,
    ) -> Result<Published, PublishError> {
        self.submit(target, event, RecordKind::Event).await
    }

    async fn submit(
        &self,
        target: Target,
        event: NewEvent,
        kind: RecordKind,
    ) -> Result<Published, PublishError> {
        event.validate()?;
        if matches!(&target, Target::Channels(channels) if channels.is_empty()) {
            return Err(PublishError::NoChannel);
        }
        if let Some(cluster) = &self.shared.cluster {
            return self.submit_to_cluster(cluster, target, event, kind).await;
        }
        let published = {
            let mut state = self.state();
            if let Some(duplicate) = state.duplicate_of(event.id.as_deref()) {
                duplicate
            } else {
                if let Target::Client(id) = &target {
                    if !state.is_client_known(id) {
                        return Err(PublishError::ClientNotFound(id.clone()));
                    }
                }
                let published =
                    state.append(target, event, kind, self.shared.config.queue_capacity);
                self.shared
                    .counters
                    .published
                    .fetch_add(1, Ordering::Relaxed);
                published
            }
        };
        self.wait_durable(&published).await?;
        Ok(published)
    }

    /// The cluster path: append to Redis, then answer once this node's reader applied the entry,
    /// so `recipients` counts this node's connections like a standalone hub does.
    async fn submit_to_cluster(
        &self,
        cluster: &Cluster,
        target: Target,
        event: NewEvent,
        kind: RecordKind,
    ) -> Result<Published, PublishError> {
        if let Some(duplicate) = self.state().duplicate_of(event.id.as_deref()) {
            return Ok(duplicate);
        }
        if let Target::Client(id) = &target {
            if !self.is_client_known_in_cluster(cluster, id).await? {
                return Err(PublishError::ClientNotFound(id.clone()));
            }
        }
        let entry = LogEntry {
            id: event.id.clone(),
            target: StoredTarget::from_target(&target),
            close: match kind {
                RecordKind::Event => None,
                RecordKind::Close { has_final_event } => Some(has_final_event),
            },
            event: event.event.clone(),
            data: event.data.as_str().to_owned(),
            is_json: event.data.is_json(),
        };
        let unavailable = |err: ClusterError| PublishError::Unavailable(err.to_string());
        let appended = cluster.append(&entry).await.map_err(unavailable)?;
        let (id, duplicate) = match appended {
            Some(entry_id) => {
                cluster
                    .wait_applied(entry_id, CLUSTER_APPLY_TIMEOUT)
                    .await
                    .map_err(unavailable)?;
                self.shared
                    .counters
                    .published
                    .fetch_add(1, Ordering::Relaxed);
                (event.id.unwrap_or_else(|| entry_id.to_string()), false)
            }
            None => (
                event.id.expect("only a publisher id can be taken already"),
                true,
            ),
        };
        let state = self.state();
        let record = state.history.get_by_id(&id);
        Ok(Published {
            recipients: record.map_or(0, |r| r.recipients),
            seq: record.map_or(0, |r| r.seq),
            id,
            duplicate,
        })
    }

    /// Whether a client id is connected (or recently departed) on this node or any live node.
    async fn is_client_known_in_cluster(
        &self,
        cluster: &Cluster,
        id: &ClientId,
    ) -> Result<bool, PublishError> {
        {
            let state = self.state();
            if state.is_client_known(id) {
                return Ok(true);
            }
        }
        cluster
            .has_client(id.as_str())
            .await
            .map_err(|err| PublishError::Unavailable(err.to_string()))
    }

    /// Publishes one event to `channel`. [`Hub::publish`] is the general form.
    ///
    /// - `event`: the event's name, or `None` for the default `message` event.
    /// - `data`: any serializable value; a string goes out as its text, anything else as compact
    ///   JSON.
    /// - `id`: a publisher-chosen id (publishing it again while it is in history is a no-op that
    ///   returns the original), or `None` for one the hub assigns.
    ///
    /// # Errors
    /// [`SendError`] when the channel name, the event name or the id breaks its rule, or `data`
    /// cannot be serialized as JSON. Nothing is published then.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), herald_hub::hub::SendError> {
    /// use herald_hub::{Hub, HubConfig};
    ///
    /// let hub = Hub::new(HubConfig::default());
    /// let order = serde_json::json!({"id": 7, "total": 12.5});
    /// let published = hub.broadcast("orders", "created", &order, None).await?;
    /// assert_eq!(published.recipients, 0, "nobody listens yet; the event waits in history");
    /// hub.broadcast("news", None, "plain text", "news-1").await?;
    /// assert!(hub.broadcast("not a channel", None, "x", None).await.is_err());
    /// # Ok(())
    /// # }
    /// ```
    pub async fn broadcast<'a, T: Serialize + ?Sized>(
        &self,
        channel: &str,
        event: impl Into<Option<&'a str>>,
        data: &T,
        id: impl Into<Option<&'a str>>,
    ) -> Result<Published, SendError> {
        let channel = ChannelName::new(channel)?;
        let event = new_event(event.into(), data, id.into())?;
        Ok(self.publish(Target::Channels(vec![channel]), event).await?)
    }

    /// Publishes one event to every connection, whatever its channels. The arguments are those of
    /// [`Hub::broadcast`].
    ///
    /// # Errors
    /// [`SendError`] when the event name or the id breaks its rule, or `data` cannot be
    /// serialized as JSON. Nothing is published then.
    pub async fn broadcast_all<'a, T: Serialize + ?Sized>(
        &self,
        event: impl Into<Option<&'a str>>,
        data: &T,
        id: impl Into<Option<&'a str>>,
    ) -> Result<Published, SendError> {
        let event = new_event(event.into(), data, id.into())?;
        Ok(self.publish(Target::All, event).await?)
    }

    /// Sends one event to one connection; the other arguments are those of [`Hub::broadcast`].
    ///
    /// Returns true when the event was accepted: the client is connected, or left less than
    /// [`HubConfig::client_linger`] ago and the event waits in history for its return (with its
    /// client id and `Last-Event-ID`). Returns false when no such client is known, or when the
    /// event is invalid; [`Hub::publish`] with [`Target::Client`] says why.
    pub async fn send_to<'a, T: Serialize + ?Sized>(
        &self,
        client: &ClientId,
        event: impl Into<Option<&'a str>>,
        data: &T,
        id: impl Into<Option<&'a str>>,
    ) -> bool {
        let Ok(event) = new_event(event.into(), data, id.into()) else {
            return false;
        };
        self.publish(Target::Client(client.clone()), event)
            .await
            .is_ok()
    }

    /// Adds a hook called once for each new connection, after it is registered and before
    /// [`Hub::add_client`] returns its stream. Hooks run in the order they were added, on the task
    /// that called `add_client`, with no lock of the hub held: a hook may call the hub's
    /// synchronous methods, and spawn a task to publish (say, to [`Hub::send_to`] the new client
    /// its first event).
    ///
    /// Keep hooks short and never block in one: it delays the connection. A hook that holds a
    /// clone of this hub keeps the hub alive for the life of the process.
    ///
    /// # Panics
    /// A panic in a hook reaches the caller of [`Hub::add_client`]; the new connection's stream
    /// is dropped on the way, which ends it (and calls the disconnect hooks).
    pub fn on_connect(&self, hook: impl Fn(&ClientInfo) + Send + Sync + 'static) {
        self.shared.hooks.add_connect(Arc::new(hook));
    }

    /// Adds a hook called once for each connection that ends, whatever the reason (the client
    /// went away, [`Hub::remove_client`], a full queue, a closed channel, shutdown): when its
    /// [`ClientStream`] is dropped. Each connection [`Hub::on_connect`] hooks saw comes here
    /// exactly once, after them. Hooks run in the order they were added, on the task that drops
    /// the stream, with no lock of the hub held.
    ///
    /// `channels` lists those the connection was still registered on; one the hub had already
    /// unregistered (removed, too slow, replaced, its only channel closed) shows none. A client
    /// id taken over by a newer connection sees the newer connection's connect before the older
    /// one's disconnect: count connections, not ids.
    ///
    /// # Panics
    /// A hook must not panic: it runs in the stream's `Drop`, where a panic during unwinding
    /// aborts the process.
    pub fn on_disconnect(&self, hook: impl Fn(&ClientInfo) + Send + Sync + 'static) {
        self.shared.hooks.add_disconnect(Arc::new(hook));
    }

    /// Closes a channel for good: every stream on it gets `final_event` (if any); a single-channel
    /// stream then ends and a multi-channel stream leaves the channel. While the closing is in
    /// history, new streams to the channel are refused with [`ConnectError::ChannelClosed`].
    /// Publishing to the channel again reopens it.
    ///
    /// # Errors
    /// [`PublishError`] when the final event is invalid.
    pub async fn close_channel(
        &self,
        channel: ChannelName,
        final_event: Option<NewEvent>,
    ) -> Result<Published, PublishError> {
        let has_final_event = final_event.is_some();
        let event = final_event.unwrap_or_else(|| NewEvent::new(EventData::text("")));
        self.submit(
            Target::Channels(vec![channel]),
            event,
            RecordKind::Close { has_final_event },
        )
        .await
    }

    /// Registers a connection and returns its stream of SSE bytes. Dropping the stream removes the
    /// connection.
    ///
    /// The connection is registered for live events before history is read, and the replay stops
    /// where live delivery began, so an event published during the replay is neither lost nor sent
    /// twice.
    ///
    /// # Errors
    /// [`ConnectError`] when the hub is shutting down or every channel asked for is closed.
    pub fn add_client(&self, options: ClientOptions) -> Result<ClientStream, ConnectError> {
        let key = self.shared.next_key.fetch_add(1, Ordering::Relaxed);
        let client_id = options.client_id.unwrap_or_else(ClientId::random);
        let user = options.user.map(Arc::from);
        let client = Arc::new(ClientShared::new(
            key,
            client_id.clone(),
            user,
            options.remote_addr,
        ));
        let mut channels = options.channels;
        channels.sort();
        channels.dedup();

        let mut state = self.state();
        if state.is_shutting_down {
            return Err(ConnectError::ShuttingDown);
        }
        let resume_point = options
            .last_event_id
            .as_deref()
            .map(|id| state.history.resume_point(id));
        let resume_after = match resume_point {
            Some(ResumePoint::After(seq)) => Some(seq),
            _ => None,
        };
        // A closed channel is still served to a client resuming from before its closing (it gets
        // the rest and the final event); to anyone else it is gone.
        let requested = channels.len();
        let first_closed = channels
            .iter()
            .find(|c| state.closed.contains_key(*c))
            .cloned();
        channels.retain(|channel| match state.closed.get(channel) {
            Some(closed_at) => resume_after.is_some_and(|after| after < *closed_at),
            None => true,
        });
        if requested > 0 && channels.is_empty() {
            let channel = first_closed.expect("a channel was refused because it is closed");
            return Err(ConnectError::ChannelClosed(channel));
        }
        let head = state.history.head_seq();
        let per_user_max = self.shared.config.max_connections_per_user;
        if let Some(user) = client.user.as_deref().filter(|_| per_user_max > 0) {
            let spare = state.fanout.key_of(&client_id);
            for evicted in state.fanout.evict_oldest_of_user(user, per_user_max, spare) {
                evicted.client.end(EndReason::UserLimit, false);
                state
                    .departed
                    .insert(evicted.client.id.clone(), Departed::of(&evicted.client));
            }
        }
        if let Some(replaced) = state.fanout.insert(client.clone(), channels.clone()) {
            replaced.end(EndReason::Replaced, false);
        }
        state.departed.remove(&client_id);
        drop(state);

        let replay = resume_after
            .filter(|after| *after < head)
            .map(|after| Replay::new(after, head, channels.clone()));
        let connected = serde_json::json!({
            "clientId": client_id,
            "channels": channels,
            "resumed": resume_after.is_some(),
        });
        let mut preamble = wire::encode_retry(self.shared.config.retry_interval).to_vec();
        preamble.extend_from_slice(&wire::encode_event(
            None,
            Some("connected"),
            &connected.to_string(),
        ));
        tracing::debug!(client.id = %client_id, resumed = resume_after.is_some(), "client connected");
        let stream = ClientStream::new(
            self.clone(),
            client.clone(),
            preamble.into(),
            replay,
            resume_after.unwrap_or(0),
            resume_after.is_some(),
        );
        if let Some(cluster) = &self.shared.cluster {
            self.report_client(cluster, &info_of(&client, channels.clone()));
        }
        self.shared.hooks.connected(|| info_of(&client, channels));
        Ok(stream)
    }

    /// Unregisters a connection once its stream is gone, then tells the disconnect hooks.
    pub(crate) fn forget(&self, client: &ClientShared) {
        self.shared.counters.closed.fetch_add(1, Ordering::Relaxed);
        let mut state = self.state();
        let entry = state.fanout.remove(client.key);
        if let Some(entry) = &entry {
            tracing::debug!(client.id = %entry.client.id, "client disconnected");
            let id = entry.client.id.clone();
            if state.fanout.key_of(&id).is_none() {
                state.departed.insert(id, Departed::of(&entry.client));
            }
        }
        let is_id_still_held = state.fanout.key_of(&client.id).is_some();
        drop(state);
        if let (Some(cluster), false) = (&self.shared.cluster, is_id_still_held) {
            cluster.client_changed(RegistryChange::Remove {
                id: client.id.to_string(),
            });
        }
        self.shared.hooks.disconnected(|| match &entry {
            Some(entry) => client_info(entry),
            None => info_of(client, Vec::new()),
        });
    }

    /// Tells the cluster's client registry about a connection (new, or with new channels).
    fn report_client(&self, cluster: &Cluster, info: &ClientInfo) {
        let info_json =
            serde_json::to_string(info).expect("client info is plain data and always serializes");
        cluster.client_changed(RegistryChange::Upsert {
            id: info.id.to_string(),
            info: info_json,
        });
    }

    fn report_channels_changed(&self, state: &State, id: &ClientId) {
        if let (Some(cluster), Some(entry)) = (&self.shared.cluster, state.fanout.get_by_id(id)) {
            self.report_client(cluster, &client_info(entry));
        }
    }

    /// Closes a connection. Returns false when no connection has that id.
    pub fn remove_client(&self, id: &ClientId) -> bool {
        let mut state = self.state();
        let Some(key) = state.fanout.key_of(id) else {
            return false;
        };
        if let Some(entry) = state.fanout.remove(key) {
            entry.client.end(EndReason::Removed, false);
            state
                .departed
                .insert(id.clone(), Departed::of(&entry.client));
        }
        true
    }

    /// Subscribes a live connection to one more channel (from now on; no history is replayed).
    ///
    /// # Errors
    /// [`SubscriptionError::ClientNotFound`] or [`SubscriptionError::ChannelClosed`].
    pub fn subscribe(&self, id: &ClientId, channel: ChannelName) -> Result<(), SubscriptionError> {
        let mut state = self.state();
        if state.closed.contains_key(&channel) {
            return Err(SubscriptionError::ChannelClosed(channel));
        }
        let key = state
            .fanout
            .key_of(id)
            .ok_or_else(|| SubscriptionError::ClientNotFound(id.clone()))?;
        state.fanout.subscribe(key, channel);
        self.report_channels_changed(&state, id);
        Ok(())
    }

    /// Removes one channel from a live connection.
    ///
    /// # Errors
    /// [`SubscriptionError::ClientNotFound`] or [`SubscriptionError::NotSubscribed`].
    pub fn unsubscribe(
        &self,
        id: &ClientId,
        channel: &ChannelName,
    ) -> Result<(), SubscriptionError> {
        let mut state = self.state();
        let key = state
            .fanout
            .key_of(id)
            .ok_or_else(|| SubscriptionError::ClientNotFound(id.clone()))?;
        if state.fanout.unsubscribe(key, channel) {
            self.report_channels_changed(&state, id);
            Ok(())
        } else {
            Err(SubscriptionError::NotSubscribed(channel.clone()))
        }
    }

    /// Every live connection.
    pub fn clients(&self) -> Vec<ClientInfo> {
        let state = self.state();
        let mut clients: Vec<ClientInfo> = state.fanout.entries().map(client_info).collect();
        clients.sort_by(|a, b| {
            a.connected_at
                .cmp(&b.connected_at)
                .then_with(|| a.id.cmp(&b.id))
        });
        clients
    }

    /// The live connections subscribed to `channel`.
    pub fn clients_by_channel(&self, channel: &ChannelName) -> Vec<ClientInfo> {
        let state = self.state();
        let mut clients: Vec<ClientInfo> =
            state.fanout.subscribers(channel).map(client_info).collect();
        clients.sort_by(|a, b| {
            a.connected_at
                .cmp(&b.connected_at)
                .then_with(|| a.id.cmp(&b.id))
        });
        clients
    }

    /// Who holds client id `id`: `Some(user)` while a connection has it, or had it less than
    /// [`HubConfig::client_linger`] ago (events sent to it wait for its return); `None` when the
    /// id is free. Lets an application refuse a client id another user holds.
    pub fn client_id_holder(&self, id: &ClientId) -> Option<Option<String>> {
        let state = self.state();
        if let Some(entry) = state.fanout.get_by_id(id) {
            return Some(entry.client.user.as_deref().map(str::to_owned));
        }
        state
            .departed
            .get(id)
            .map(|departed| departed.user.as_deref().map(str::to_owned))
    }

    /// One live connection.
    pub fn get_client(&self, id: &ClientId) -> Option<ClientInfo> {
        self.state().fanout.get_by_id(id).map(client_info)
    }

    /// Channels with live subscribers, by name.
    pub fn channels(&self) -> Vec<ChannelInfo> {
        let state = self.state();
        let mut channels: Vec<ChannelInfo> = state
            .fanout
            .channel_counts()
            .map(|(name, subscribers)| ChannelInfo {
                name: name.clone(),
                subscribers,
            })
            .collect();
        channels.sort_by(|a, b| a.name.cmp(&b.name));
        channels
    }

    /// The hub's counters.
    pub fn stats(&self) -> Stats {
        let state = self.state();
        let oldest = state
            .fanout
            .entries()
            .min_by_key(|entry| (entry.client.connected_at, entry.client.key));
        Stats {
            node: self.shared.node_id.clone(),
            connections: state.fanout.len(),
            connections_by_channel: state
                .fanout
                .channel_counts()
                .map(|(c, n)| (c.clone(), n))
                .collect(),
            oldest_connection: oldest.map(client_info),
            events_published: self.shared.counters.published.load(Ordering::Relaxed),
            events_delivered: self.shared.counters.delivered.load(Ordering::Relaxed),
            connections_closed: self.connections_closed(),
            uptime_seconds: self.shared.started_at.elapsed().as_secs(),
            history: HistoryStats {
                events: state.history.len(),
                bytes: state.history.bytes(),
            },
        }
    }

    /// A page of history on `channels` (and broadcasts to all) after the event `after`.
    /// `after = None` starts at the oldest event in history.
    pub fn events_after(
        &self,
        channels: &[ChannelName],
        after: Option<&str>,
        limit: usize,
    ) -> EventPage {
        let limit = limit.clamp(1, POLL_LIMIT_MAX);
        let state = self.state();
        let history = &state.history;
        let (start, reset) = match after {
            None => (history.first_seq().map_or(0, |first| first - 1), false),
            Some(id) => match history.resume_point(id) {
                ResumePoint::After(seq) => (seq, false),
                ResumePoint::Unknown => (history.first_seq().map_or(0, |first| first - 1), true),
            },
        };
        let mut events = Vec::new();
        let mut cursor = after.filter(|_| !reset).map(str::to_owned);
        let mut has_more = false;
        for record in history.after(start).into_iter().flatten() {
            if events.len() == limit {
                has_more = true;
                break;
            }
            cursor = Some(record.id.to_string());
            let channel = match &record.target {
                Target::Channels(targets) => match targets.iter().find(|c| channels.contains(c)) {
                    Some(channel) => Some(channel.clone()),
                    None => continue,
                },
                Target::All => None,
                Target::Client(_) => continue,
            };
            let closed = matches!(record.kind, RecordKind::Close { .. });
            events.push(PolledEvent {
                id: record.id.to_string(),
                channel,
                event: record.event.as_deref().map(str::to_owned),
                data: record.data.to_json(),
                closed,
            });
        }
        if cursor.is_none() {
            cursor = history.get(history.head_seq()).map(|r| r.id.to_string());
        }
        EventPage {
            events,
            cursor,
            reset,
            has_more,
        }
    }

    /// Ends every stream (each writes what it has queued, then a closing comment), refuses new
    /// ones and stops the background task. Safe to call more than once.
    pub fn shutdown(&self) {
        let mut state = self.state();
        state.is_shutting_down = true;
        for entry in state.fanout.entries() {
            entry.client.end(EndReason::Shutdown, true);
        }
        drop(state);
        self.shared.shutdown.cancel();
    }

    /// This hub's stats summed over every live node of its cluster, with each node's own stats
    /// under `nodes`; a standalone hub answers for itself. Nodes report once a second, so the
    /// figures are up to about a second old.
    ///
    /// # Errors
    /// [`ClusterError::Unavailable`] when the registry cannot be read.
    pub async fn cluster_stats(&self) -> Result<serde_json::Value, ClusterError> {
        let reports = match &self.shared.cluster {
            Some(cluster) => cluster.node_stats().await?,
            None => vec![(
                self.shared.node_id.clone(),
                serde_json::to_value(self.stats()).unwrap_or_default(),
            )],
        };
        let sum = |field: &str| {
            reports
                .iter()
                .map(|(_, stats)| stats[field].as_u64().unwrap_or(0))
                .sum::<u64>()
        };
        Ok(serde_json::json!({
            "node": self.shared.node_id,
            "scope": "cluster",
            "connections": sum("connections"),
            "eventsPublished": sum("eventsPublished"),
            "eventsDelivered": sum("eventsDelivered"),
            "nodes": reports.into_iter().map(|(_, stats)| stats).collect::<Vec<_>>(),
        }))
    }

    /// Every live connection of every live node, each with the `node` it is on (up to about a
    /// second old); a standalone hub answers with its own.
    ///
    /// # Errors
    /// [`ClusterError::Unavailable`] when the registry cannot be read.
    pub async fn cluster_clients(&self) -> Result<Vec<serde_json::Value>, ClusterError> {
        let reports = match &self.shared.cluster {
            Some(cluster) => cluster.node_clients().await?,
            None => {
                let clients = self
                    .clients()
                    .iter()
                    .filter_map(|c| serde_json::to_value(c).ok())
                    .collect();
                vec![(self.shared.node_id.clone(), clients)]
            }
        };
        Ok(reports
            .into_iter()
            .flat_map(|(node, clients)| {
                clients.into_iter().map(move |mut client| {
                    client["node"] = serde_json::Value::String(node.clone());
                    client
                })
            })
            .collect())
    }

    /// Connections ended since start, whatever ended them (cheap: one counter).
    pub fn connections_closed(&self) -> u64 {
        self.shared.counters.closed.load(Ordering::Relaxed)
    }

    /// Whether this hub can deliver events now: false while it shuts down, and, in a cluster,
    /// while it cannot read the cluster log (Redis lost), so a load balancer sends new streams to
    /// another node.
    pub fn is_ready(&self) -> bool {
        !self.is_shutting_down()
            && self
                .shared
                .cluster
                .as_ref()
                .is_none_or(|cluster| cluster.is_reading())
    }

    /// Whether [`Hub::shutdown`] was called.
    pub fn is_shutting_down(&self) -> bool {
        self.shared.shutdown.is_cancelled()
    }

    pub(crate) fn count_delivered(&self, events: u64) {
        if events > 0 {
            self.shared
                .counters
                .delivered
                .fetch_add(events, Ordering::Relaxed);
        }
    }

    /// Reads the next replay batch for a resuming connection, under the state lock.
    pub(crate) fn with_history<R>(&self, read: impl FnOnce(&History) -> R) -> R {
        read(&self.state().history)
    }

    /// Applies the effect of a replayed closing on a connection's live registration.
    pub(crate) fn leave_closed_channel(&self, key: u64, channel: &ChannelName) {
        let mut state = self.state();
        state.fanout.unsubscribe(key, channel);
    }

    /// Waits until `published` is on disk. Returns at once for a hub without a durable log.
    async fn wait_durable(&self, published: &Published) -> Result<(), PublishError> {
        let Some(durable_rx) = &self.shared.durable_rx else {
            return Ok(());
        };
        let failed = || PublishError::Unavailable("the durable log is not writable".to_owned());
        let mut durable_rx = durable_rx.clone();
        let durable = durable_rx
            .wait_for(|durable| durable.through_seq >= published.seq || durable.is_failed)
            .await
            .map_err(|_| failed())?;
        if durable.through_seq >= published.seq {
            Ok(())
        } else {
            Err(failed())
        }
    }
}

impl State {
    /// Whether `id` is connected here, or left less than `client_linger` ago (events sent to it
    /// then wait in history for its return).
    fn is_client_known(&self, id: &ClientId) -> bool {
        self.fanout.key_of(id).is_some() || self.departed.contains_key(id)
    }

    fn duplicate_of(&self, id: Option<&str>) -> Option<Published> {
        let record = self.history.get_by_id(id?)?;
        Some(Published {
            id: record.id.to_string(),
            recipients: record.recipients,
            duplicate: true,
            seq: record.seq,
        })
    }

    /// Assigns the next position and id, encodes once, fans out, and appends to history.
    fn append(
        &mut self,
        target: Target,
        event: NewEvent,
        kind: RecordKind,
        capacity: usize,
    ) -> Published {
        let seq = self.history.next_seq();
        let id: Arc<str> = match event.id {
            Some(id) => Arc::from(id),
            None => self.history.assign_id(seq),
        };
        let frame = match kind {
            RecordKind::Close {
                has_final_event: false,
            } => bytes::Bytes::new(),
            _ => wire::encode_event(Some(&id), event.event.as_deref(), event.data.as_str()),
        };
        let recipients = if frame.is_empty() {
            0
        } else {
            self.fanout.deliver(&target, seq, &frame, capacity)
        };
        let record = Record {
            seq,
            id: id.clone(),
            target,
            kind,
            event: event.event.map(String::into_boxed_str),
            data: event.data,
            frame,
            recipients,
            published_at: Instant::now(),
        };
        let first_before = self.history.first_seq();
        let record = self.history.append(record);
        if let Target::Channels(channels) = &record.target {
            for channel in channels {
                match record.kind {
                    // Publishing to a closed channel reopens it.
                    RecordKind::Event => {
                        self.closed.remove(channel);
                    }
                    RecordKind::Close { .. } => {
                        self.closed.insert(channel.clone(), seq);
                        self.fanout.close_channel(channel);
                    }
                }
            }
        }
        if let Some(store) = &self.store {
            store.append(record);
            self.forget_trimmed(first_before);
        }
        Published {
            id: id.to_string(),
            recipients,
            duplicate: false,
            seq,
        }
    }

    /// Deletes from the durable log what history just trimmed.
    fn forget_trimmed(&self, first_before: Option<u64>) {
        if let (Some(store), Some(before)) = (&self.store, first_before) {
            let first_now = self.history.first_seq().unwrap_or(self.history.next_seq());
            if first_now > before {
                store.forget_through(first_now - 1);
            }
        }
    }
}

/// The event [`Hub::broadcast`] and its siblings build from their arguments.
fn new_event<T: Serialize + ?Sized>(
    event: Option<&str>,
    data: &T,
    id: Option<&str>,
) -> Result<NewEvent, serde_json::Error> {
    Ok(NewEvent {
        event: event.map(str::to_owned),
        data: EventData::json(data)?,
        id: id.map(str::to_owned),
    })
}

fn client_info(entry: &Entry) -> ClientInfo {
    info_of(&entry.client, entry.channels.clone())
}

/// A connection as [`ClientInfo`] shows it, on `channels`.
fn info_of(client: &ClientShared, mut channels: Vec<ChannelName>) -> ClientInfo {
    channels.sort();
    ClientInfo {
        id: client.id.clone(),
        channels,
        user: client.user.as_deref().map(str::to_owned),
        connected_at: humantime::format_rfc3339_millis(client.connected_at).to_string(),
        remote_addr: client.remote_addr.map(|a| a.to_string()),
    }
}

/// Longest a cluster publish waits for this node to read its event back from Redis.
const CLUSTER_APPLY_TIMEOUT: Duration = Duration::from_secs(5);

/// Feeds the cluster log's entries, in stream order, into this node's history and fan-out.
struct ClusterSink(Weak<Shared>);

impl EntrySink for ClusterSink {
    fn apply(&self, entry_id: &str, entry: LogEntry) {
        let Some(shared) = self.0.upgrade() else {
            return;
        };
        let kind = entry.kind();
        let Some(target) = entry.target() else {
            tracing::warn!(
                entry = entry_id,
                "skipping a cluster log entry with an invalid target"
            );
            return;
        };
        let id = entry.id.unwrap_or_else(|| entry_id.to_owned());
        let event = NewEvent {
            event: entry.event,
            data: EventData::restore(entry.data, entry.is_json),
            id: Some(id),
        };
        let mut state = shared
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if state.duplicate_of(event.id.as_deref()).is_some() {
            return;
        }
        state.append(target, event, kind, shared.config.queue_capacity);
    }

    fn gap(&self) {
        let Some(shared) = self.0.upgrade() else {
            return;
        };
        let mut state = shared
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // What this node holds no longer joins up with the log: forget it, so every resume says
        // `resumed: false`, and end every stream so its client reconnects and reloads.
        state.history = History::new(shared.config.history.clone());
        state.closed.clear();
        for entry in state.fanout.entries() {
            entry.client.end(EndReason::HistoryGap, false);
        }
    }
}

/// Reports this node's stats and clients to the cluster's registry, once a second.
async fn report_to_cluster(
    shared: Weak<Shared>,
    cluster: Arc<Cluster>,
    shutdown: CancellationToken,
) {
    let mut ticker = tokio::time::interval(crate::cluster::NODE_REFRESH_INTERVAL);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let hub = Hub { shared };
        let stats = serde_json::to_value(hub.stats()).unwrap_or_default();
        // The whole list is read only when the registry must be rewritten (at start, after a
        // failure): otherwise a refresh sends only what changed.
        let all_clients = || {
            hub.clients()
                .into_iter()
                .map(|info| {
                    let json = serde_json::to_string(&info)
                        .expect("client info is plain data and always serializes");
                    (info.id.to_string(), json)
                })
                .collect()
        };
        let refreshed = cluster.refresh_node(&stats, all_clients).await;
        drop(hub);
        if let Err(err) = refreshed {
            tracing::debug!(error = %err, "could not report to the cluster registry");
        }
    }
}

fn sweep_period(config: &HubConfig) -> Duration {
    if config.heartbeat_interval.is_zero() {
        Duration::from_secs(5)
    } else {
        config.heartbeat_interval
    }
}

/// The hub's one timer: heartbeats for every connection, then trimming of history by age and of
/// the departed-client list. One sweep serves every connection, so idle connections arm no timer.
async fn sweep(shared: Weak<Shared>, shutdown: CancellationToken, period: Duration) {
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let mut state = shared
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if !shared.config.heartbeat_interval.is_zero() {
            for entry in state.fanout.entries() {
                entry.client.push_heartbeat();
            }
        }
        let now = Instant::now();
        let first_before = state.history.first_seq();
        state.history.trim(now);
        state.forget_trimmed(first_before);
        let first = state.history.first_seq().unwrap_or(u64::MAX);
        state.closed.retain(|_, closed_at| *closed_at >= first);
        let linger = shared.config.client_linger;
        state
            .departed
            .retain(|_, departed| now.saturating_duration_since(departed.left_at) < linger);
        drop(state);
    }
}
