//! The hub: the library's front door, tying history, fan-out and connections together.
//!
//! Owns the one path every event takes (validate → append to history → encode once → fan out) and
//! the rules around it: idempotent ids, resume points, closed channels, heartbeats, shutdown.
//! It never speaks HTTP (see `http`) and never waits on a subscriber: publishing is lock, push
//! bytes into bounded queues, unlock.

use crate::{
    channel::ChannelName,
    client::{ClientShared, EndReason},
    config::HubConfig,
    event::{ClientId, EventData, FieldError, NewEvent},
    fanout::{Entry, Fanout},
    history::{History, Record, RecordKind, ResumePoint, Target},
    store::{Durable, FsyncPolicy, Recovered, Store, StoreError},
    stream::{ClientStream, Replay},
    wire,
};
use std::path::Path;
use tokio::sync::watch;
use serde::Serialize;
use std::{
    collections::{BTreeMap, HashMap},
    net::SocketAddr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, MutexGuard, Weak,
    },
    time::{Duration, Instant},
};
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
    /// Durability progress of the durable log, when there is one.
    durable_rx: Option<watch::Receiver<Durable>>,
}

#[derive(Debug, Default)]
struct Counters {
    published: AtomicU64,
    delivered: AtomicU64,
}

#[derive(Debug)]
struct State {
    history: History,
    fanout: Fanout,
    /// Channels whose closing is still in history, with the position of the closing.
    closed: HashMap<ChannelName, u64>,
    /// Client ids whose connection ended recently: events sent to them wait in history.
    departed: HashMap<ClientId, Instant>,
    is_shutting_down: bool,
    /// The durable log behind `--data-dir`; appended to in position order under this lock.
    store: Option<Store>,
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

/// The durable log failed: the event may not be on disk and was not acknowledged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the durable log is not writable; the event was not acknowledged")]
pub struct DurabilityError;

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
    pub fn open(config: HubConfig, data_dir: &Path, fsync: FsyncPolicy) -> Result<Self, StoreError> {
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

    fn start(config: HubConfig, history: History, store: Option<Store>) -> Self {
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
            config,
            counters: Counters::default(),
            started_at: Instant::now(),
            shutdown: CancellationToken::new(),
            next_key: AtomicU64::new(1),
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

    /// Publishes one event to `target`.
    ///
    /// # Errors
    /// [`PublishError`] when the event is invalid, names no channel, or is for a client that is
    /// neither connected nor recently departed. Nothing is published then.
    pub fn publish(&self, target: Target, event: NewEvent) -> Result<Published, PublishError> {
        event.validate()?;
        if matches!(&target, Target::Channels(channels) if channels.is_empty()) {
            return Err(PublishError::NoChannel);
        }
        let mut state = self.state();
        if let Some(duplicate) = state.duplicate_of(event.id.as_deref()) {
            return Ok(duplicate);
        }
        if let Target::Client(id) = &target {
            if state.fanout.key_of(id).is_none() && !state.departed.contains_key(id) {
                return Err(PublishError::ClientNotFound(id.clone()));
            }
        }
        if let Target::Channels(channels) = &target {
            for channel in channels {
                state.closed.remove(channel);
            }
        }
        let published = state.append(
            target,
            event,
            RecordKind::Event,
            self.shared.config.queue_capacity,
        );
        drop(state);
        self.shared
            .counters
            .published
            .fetch_add(1, Ordering::Relaxed);
        Ok(published)
    }

    /// Publishes `event` to one channel.
    ///
    /// # Errors
    /// See [`Hub::publish`].
    pub fn broadcast(
        &self,
        channel: ChannelName,
        event: NewEvent,
    ) -> Result<Published, PublishError> {
        self.publish(Target::Channels(vec![channel]), event)
    }

    /// Publishes `event` to every connection, whatever its channels.
    ///
    /// # Errors
    /// See [`Hub::publish`].
    pub fn broadcast_all(&self, event: NewEvent) -> Result<Published, PublishError> {
        self.publish(Target::All, event)
    }

    /// Sends `event` to one connection.
    ///
    /// # Errors
    /// [`PublishError::ClientNotFound`] when that client is gone; see [`Hub::publish`].
    pub fn send_to(&self, client: &ClientId, event: NewEvent) -> Result<Published, PublishError> {
        self.publish(Target::Client(client.clone()), event)
    }

    /// Closes a channel for good: every stream on it gets `final_event` (if any); a single-channel
    /// stream then ends and a multi-channel stream leaves the channel. While the closing is in
    /// history, new streams to the channel are refused with [`ConnectError::ChannelClosed`].
    /// Publishing to the channel again reopens it.
    ///
    /// # Errors
    /// [`PublishError`] when the final event is invalid.
    pub fn close_channel(
        &self,
        channel: ChannelName,
        final_event: Option<NewEvent>,
    ) -> Result<Published, PublishError> {
        if let Some(event) = &final_event {
            event.validate()?;
        }
        let mut state = self.state();
        let has_final_event = final_event.is_some();
        let event = final_event.unwrap_or_else(|| NewEvent::new(EventData::text("")));
        if let Some(duplicate) = state.duplicate_of(event.id.as_deref()) {
            return Ok(duplicate);
        }
        let target = Target::Channels(vec![channel.clone()]);
        let published = state.append(
            target,
            event,
            RecordKind::Close { has_final_event },
            self.shared.config.queue_capacity,
        );
        let seq = state.history.head_seq();
        state.closed.insert(channel.clone(), seq);
        state.fanout.close_channel(&channel);
        drop(state);
        self.shared
            .counters
            .published
            .fetch_add(1, Ordering::Relaxed);
        Ok(published)
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
                    .insert(evicted.client.id.clone(), Instant::now());
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
        Ok(ClientStream::new(
            self.clone(),
            client,
            preamble.into(),
            replay,
            resume_after.unwrap_or(0),
            resume_after.is_some(),
        ))
    }

    /// Unregisters a connection by key once its stream is gone.
    pub(crate) fn forget(&self, key: u64) {
        let mut state = self.state();
        if let Some(entry) = state.fanout.remove(key) {
            tracing::debug!(client.id = %entry.client.id, "client disconnected");
            let id = entry.client.id.clone();
            if state.fanout.key_of(&id).is_none() {
                state.departed.insert(id, Instant::now());
            }
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
            state.departed.insert(id.clone(), Instant::now());
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
            connections: state.fanout.len(),
            connections_by_channel: state
                .fanout
                .channel_counts()
                .map(|(c, n)| (c.clone(), n))
                .collect(),
            oldest_connection: oldest.map(client_info),
            events_published: self.shared.counters.published.load(Ordering::Relaxed),
            events_delivered: self.shared.counters.delivered.load(Ordering::Relaxed),
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
    ///
    /// # Errors
    /// [`DurabilityError`] when the durable log failed before the event reached the disk.
    pub async fn wait_durable(&self, published: &Published) -> Result<(), DurabilityError> {
        let Some(durable_rx) = &self.shared.durable_rx else { return Ok(()) };
        let mut durable_rx = durable_rx.clone();
        let durable = durable_rx
            .wait_for(|durable| durable.through_seq >= published.seq || durable.is_failed)
            .await
            .map_err(|_| DurabilityError)?;
        if durable.through_seq >= published.seq {
            Ok(())
        } else {
            Err(DurabilityError)
        }
    }
}

impl State {
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

fn client_info(entry: &Entry) -> ClientInfo {
    let mut channels = entry.channels.clone();
    channels.sort();
    ClientInfo {
        id: entry.client.id.clone(),
        channels,
        user: entry.client.user.as_deref().map(str::to_owned),
        connected_at: humantime::format_rfc3339_millis(entry.client.connected_at).to_string(),
        remote_addr: entry.client.remote_addr.map(|a| a.to_string()),
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
            .retain(|_, left_at| now.saturating_duration_since(*left_at) < linger);
        drop(state);
    }
}
