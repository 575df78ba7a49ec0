//! Connections: opening a stream (with its resume point), ending it, and changing what it hears.
//!
//! Owns the rules of a new connection (shutdown, closed channels, the per-user limit, a client id
//! taken over, registration for live events before history is read) and the one resume entry
//! point, [`ClientOptions::last_event_id`]: an id the hub does not know means `resumed: false`,
//! never an error. It never writes to a socket; [`ClientStream`] does.

use super::topics::EARLIEST;
use super::{query::info_of, ClientInfo, ConnectError, Departed, Hub, State, SubscriptionError};
use crate::{
    channel::ChannelName,
    client::{ClientShared, EndReason},
    event::ClientId,
    history::ReadStart,
    log::RegistryChange,
    metrics::CloseReason,
    namespace::NamespaceMask,
    stream::{ClientStream, Replay, Start},
    topic::TopicFilter,
    wire,
};
use std::{
    net::SocketAddr,
    sync::{atomic::Ordering, Arc},
};

/// How a new connection wants to start.
#[derive(Debug, Clone, Default)]
pub struct ClientOptions {
    /// Keep this client id (so events sent to it while it was away are replayed); `None`: a fresh
    /// random id. A live connection holding the same id is closed in favour of the new one.
    ///
    /// A client id is bound to the identity that created it ([`ClientOptions::owner`]) while a
    /// connection holds it, while `client_linger` lasts after it ends, and while any event sent
    /// to it is in history. Asked for by another identity, the id is not given: the stream gets
    /// a fresh random id instead, exactly as if it had asked for none (its `connected` event
    /// says which id it got), so the answer tells nothing about who holds which id.
    pub client_id: Option<ClientId>,
    /// The authenticated user, if any.
    pub user: Option<String>,
    /// The identity the client id is bound to; `None`: [`ClientOptions::user`] (and with
    /// neither, the id is anonymous: any anonymous caller may take it). Give a stable identity
    /// for callers without a user, such as a hash of their credential.
    pub owner: Option<String>,
    /// Channels to subscribe to. May be empty: the connection then gets only broadcasts to all and
    /// events sent to it.
    pub channels: Vec<ChannelName>,
    /// Resume after this event id (the `Last-Event-ID` header), as the client sent it. An id the
    /// hub does not know, or cannot parse, starts the stream with `resumed: false`; it is never an
    /// error.
    pub last_event_id: Option<String>,
    /// The peer's address, shown by the admin API.
    pub remote_addr: Option<SocketAddr>,
    /// Send this connection `join` and `leave` events (no `id:`, kept in no history) for its
    /// channels that keep presence. Default false: a connection that did not ask never gets one.
    pub presence: bool,
}

impl Hub {
    /// Registers a connection and returns its stream of SSE bytes. Dropping the stream removes the
    /// connection.
    ///
    /// The connection is registered for live events before history is read, and the replay stops
    /// where live delivery began, so an event published during the replay is neither lost nor sent
    /// twice. In a cluster, a `last_event_id` this node has not read yet is waited for (up to 5 s)
    /// before the stream opens, so the resume is exact.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use futures_util::StreamExt;
    /// use herald_hub::{ChannelName, ClientOptions, Hub, HubConfig};
    ///
    /// let hub = Hub::new(HubConfig::default());
    /// let first = hub.broadcast("news", None, "one", None).await?;
    /// hub.broadcast("news", None, "two", None).await?;
    /// let options = ClientOptions {
    ///     channels: vec![ChannelName::new("news")?],
    ///     last_event_id: Some(first.id),
    ///     ..ClientOptions::default()
    /// };
    /// let mut stream = hub.add_client(options)?;
    /// let opening = stream.next().await.expect("the opening");
    /// assert!(String::from_utf8_lossy(&opening).contains(r#""resumed":true"#));
    /// let missed = stream.next().await.expect("the replay");
    /// assert!(missed.ends_with(b"data: two\n\n"));
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`ConnectError`] when the hub is shutting down or every channel asked for is closed.
    pub fn add_client(&self, options: ClientOptions) -> Result<ClientStream, ConnectError> {
        self.connect(options, None).map(|(stream, _)| stream)
    }

    /// Registers a connection, with topic selectors when `filter` is given
    /// ([`Hub::add_topic_client`]); returns its stream and where its replay starts.
    pub(super) fn connect(
        &self,
        options: ClientOptions,
        filter: Option<TopicFilter>,
    ) -> Result<(ClientStream, String), ConnectError> {
        let key = self.shared.next_key.fetch_add(1, Ordering::Relaxed);
        let owner: Option<Arc<str>> = options
            .owner
            .or_else(|| options.user.clone())
            .map(Arc::from);
        let user = options.user.map(Arc::from);
        let mut channels = options.channels;
        if let Some(filter) = &filter {
            channels.extend(filter.exact_channels().cloned());
        }
        channels.sort();
        channels.dedup();

        let mut state = self.state();
        if state.is_shutting_down {
            return Err(ConnectError::ShuttingDown);
        }
        let client_id = match options.client_id {
            Some(id) if state.may_claim(&id, owner.as_deref()) => id,
            // Bound to someone else: answered as a fresh connection would be.
            Some(_) | None => ClientId::random(),
        };
        let client = Arc::new(
            ClientShared::new(key, client_id.clone(), user, owner, options.remote_addr)
                .with_presence(options.presence)
                .with_filter(filter.map(Arc::new)),
        );
        let is_topic_client = client.filter.is_some();
        let last_event_id = options.last_event_id.as_deref();
        let wants_earliest = is_topic_client && last_event_id == Some(EARLIEST);
        // A topic client hears channels it does not name: every namespace is its to read.
        let mask = if is_topic_client {
            NamespaceMask::ALL
        } else {
            state.history.mask_of(&channels)
        };
        let mut resume_after = match state.history.read_start(last_event_id, mask) {
            ReadStart::After(seq) if !wants_earliest => Some(seq),
            ReadStart::After(_) | ReadStart::Oldest | ReadStart::Unknown => None,
        };
        // An id the log has not read as far as yet: open once it has (bounded).
        let catch_up = match (resume_after, last_event_id) {
            (None, Some(_)) if wants_earliest => None,
            (None, Some(id)) => self.shared.log.catch_up(id),
            (None, None) => self.shared.log.opening_wait(),
            (Some(_), _) => None,
        };
        // A topic client whose id history does not hold replays all of history.
        let mut replay_from = None;
        if is_topic_client
            && resume_after.is_none()
            && last_event_id.is_some()
            && catch_up.is_none()
        {
            resume_after = Some(state.history.before_oldest(mask));
            replay_from = Some(EARLIEST.to_owned());
        }
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
        if let Some(full) = self.full_channel(&state, &channels, Some(&client_id)) {
            return Err(full);
        }
        let head = state.history.head_seq();
        let start_id = match (resume_after, last_event_id) {
            (Some(_), Some(id)) => id.to_owned(),
            _ => state.history.start_id(),
        };
        let replay_from = replay_from.unwrap_or_else(|| match last_event_id {
            Some(id) if catch_up.is_some() => id.to_owned(),
            _ => start_id.clone(),
        });
        self.make_room_for(&mut state, &client);
        if let Some(replaced) = state.fanout.insert(client.clone(), channels.clone()) {
            replaced.end(EndReason::Replaced, false);
        }
        state.departed.remove(&client_id);
        drop(state);
        self.shared.counters.stream_opened();
        if catch_up.is_none() && last_event_id.is_some() {
            self.shared.counters.resume(resume_after.is_some());
        }

        let start = match catch_up {
            Some(wait) => Start::AwaitLog {
                wait,
                last_event_id: options.last_event_id,
                start_id,
                channels: channels.clone(),
            },
            None => {
                client.is_opened.store(true, Ordering::Relaxed);
                self.opening(&client, channels.clone(), resume_after, head, &start_id)
            }
        };
        tracing::info!(
            target: "herald::access",
            client_id = %client.id,
            peer = client.remote_addr.map(tracing::field::display),
            user = client.user.as_deref(),
            channels = channels.len(),
            resumed = resume_after.is_some(),
            "stream opened"
        );
        let stream = ClientStream::new(
            self.clone(),
            client.clone(),
            start,
            resume_after.unwrap_or(0),
            resume_after.is_some(),
        );
        self.report_client(|| info_of(&client, channels.clone()));
        self.shared.hooks.connected(|| info_of(&client, channels));
        Ok((stream, replay_from))
    }

    /// The client id a new connection of `owner` gets when it asks for `requested`: that id when
    /// it is free or already `owner`'s, here and (in a cluster) on every node, binding it to
    /// `owner`; else a fresh random id, bound the same way. Pass the result as
    /// [`ClientOptions::client_id`] with the same `owner`. When the cluster cannot be asked
    /// (Redis lost), a requested id is not given.
    pub async fn claim_client_id(
        &self,
        requested: Option<ClientId>,
        owner: Option<&str>,
    ) -> ClientId {
        // In the cluster's binding, the anonymous identity is one more owner.
        let cluster_owner = owner.unwrap_or("anonymous");
        if let Some(id) = requested {
            let is_free_here = self.state().may_claim(&id, owner);
            if is_free_here
                && self
                    .shared
                    .log
                    .claim_client_id(id.as_str(), cluster_owner)
                    .await
                    .unwrap_or(false)
            {
                return id;
            }
        }
        let fresh = ClientId::random();
        // 128 random bits are nobody's yet; the binding makes them this owner's on every node.
        let _ = self
            .shared
            .log
            .claim_client_id(fresh.as_str(), cluster_owner)
            .await;
        fresh
    }

    /// The first of `channels` that already has its namespace's most subscribers on this node
    /// (a connection about to be replaced by `replacing` is not counted), as the error to
    /// answer. One prefix match and one hash lookup per channel.
    fn full_channel(
        &self,
        state: &State,
        channels: &[ChannelName],
        replacing: Option<&ClientId>,
    ) -> Option<ConnectError> {
        let replaced = replacing.and_then(|id| state.fanout.get_by_id(id));
        channels.iter().find_map(|channel| {
            let max = self.shared.namespaces.of(channel).max_subscribers()?;
            let mut count = state.fanout.subscriber_count(channel);
            if replaced.is_some_and(|entry| entry.channels.contains(channel)) {
                count -= 1;
            }
            (count >= max).then(|| ConnectError::ChannelFull {
                channel: channel.clone(),
                max,
            })
        })
    }

    /// Ends the oldest connections of the new connection's user beyond the per-user limit.
    fn make_room_for(&self, state: &mut State, client: &ClientShared) {
        let per_user_max = self.shared.config.max_connections_per_user;
        let Some(user) = client.user.as_deref().filter(|_| per_user_max > 0) else {
            return;
        };
        let spare = state.fanout.key_of(&client.id);
        for evicted in state.fanout.evict_oldest_of_user(user, per_user_max, spare) {
            evicted.client.end(EndReason::UserLimit, false);
            state
                .departed
                .insert(evicted.client.id.clone(), Departed::of(&evicted.client));
        }
    }

    /// The opening of a stream: `retry:`, the `connected` event, then the replay (if resuming).
    /// A topic client's opens with a comment instead (Mercure has no `connected` event).
    fn opening(
        &self,
        client: &ClientShared,
        channels: Vec<ChannelName>,
        resume_after: Option<u64>,
        head: u64,
        start_id: &str,
    ) -> Start {
        let replay = resume_after
            .filter(|after| *after < head)
            .map(|after| Replay::new(after, head, channels.clone()));
        if client.filter.is_some() {
            let preamble = wire::encode_comment("");
            return Start::Open { preamble, replay };
        }
        let client_id = &client.id;
        let connected = serde_json::json!({
            "clientId": client_id,
            "channels": channels,
            "resumed": resume_after.is_some(),
        });
        let preamble = wire::encode_opening(
            self.shared.config.retry_interval,
            start_id,
            &connected.to_string(),
        );
        Start::Open { preamble, replay }
    }

    /// The opening of a stream that waited for the log to read as far as `last_event_id`:
    /// resumes after it if history has it now. Returns the opening and the resume position.
    pub(crate) fn opening_after_wait(
        &self,
        client: &ClientShared,
        channels: Vec<ChannelName>,
        last_event_id: Option<&str>,
        start_id: &str,
    ) -> (Start, Option<u64>) {
        let (resume_after, head, start_id) = {
            let state = self.state();
            let mask = if client.filter.is_some() {
                NamespaceMask::ALL
            } else {
                state.history.mask_of(&channels)
            };
            let after = match state.history.read_start(last_event_id, mask) {
                ReadStart::After(seq) if last_event_id.is_some() => Some(seq),
                // A topic client whose id history still does not hold replays all of it.
                ReadStart::Unknown if client.filter.is_some() && self.shared.log.is_ready() => {
                    Some(state.history.before_oldest(mask))
                }
                ReadStart::After(_) | ReadStart::Oldest | ReadStart::Unknown => None,
            };
            let start_id = match (after, last_event_id) {
                (Some(_), Some(id)) => id.to_owned(),
                // Still unknown while the log cannot be read: keep the client's own position,
                // so its next attempt can still resume exactly.
                (None, Some(id)) if !self.shared.log.is_ready() => id.to_owned(),
                (None, Some(_)) => start_id.to_owned(),
                // A new stream that waited for the node's first contact starts from now.
                (_, None) => state.history.start_id(),
            };
            client.is_opened.store(true, Ordering::Relaxed);
            (after, state.history.head_seq(), start_id)
        };
        if last_event_id.is_some() {
            self.shared.counters.resume(resume_after.is_some());
        }
        tracing::debug!(client.id = %client.id, resumed = resume_after.is_some(), "stream opened after the log caught up");
        (
            self.opening(client, channels, resume_after, head, &start_id),
            resume_after,
        )
    }

    /// Unregisters a connection once its stream is gone, then tells the disconnect hooks.
    pub(crate) fn forget(&self, client: &ClientShared) {
        let end = client.lock_queue().end;
        let reason = end.map_or(CloseReason::ClientGone, EndReason::metric);
        self.shared.counters.stream_closed(reason);
        let duration = client.connected_at.elapsed().unwrap_or_default();
        tracing::info!(
            target: "herald::access",
            client_id = %client.id,
            peer = client.remote_addr.map(tracing::field::display),
            duration_ms = duration.as_secs_f64() * 1000.0,
            reason = reason.as_str(),
            "stream closed"
        );
        let mut state = self.state();
        let entry = state.fanout.remove(client.key);
        if let Some(entry) = &entry {
            let id = entry.client.id.clone();
            if state.fanout.key_of(&id).is_none() {
                state.departed.insert(id, Departed::of(&entry.client));
            }
        }
        let is_id_still_held = state.fanout.key_of(&client.id).is_some();
        drop(state);
        if !is_id_still_held {
            self.shared.log.client_changed(&|| RegistryChange::Remove {
                id: client.id.to_string(),
            });
        }
        self.shared.hooks.disconnected(|| match &entry {
            Some(entry) => info_of(&entry.client, entry.channels.clone()),
            None => info_of(client, Vec::new()),
        });
    }

    /// Tells the log's client registry about a connection (new, or with new channels); `info`
    /// is built only when the log keeps a registry.
    fn report_client(&self, info: impl Fn() -> ClientInfo) {
        self.shared.log.client_changed(&|| {
            let info = info();
            let json = serde_json::to_string(&info)
                .expect("client info is plain data and always serializes");
            RegistryChange::Upsert {
                id: info.id.to_string(),
                info: json,
            }
        });
    }

    fn report_channels_changed(&self, state: &State, id: &ClientId) {
        if let Some(entry) = state.fanout.get_by_id(id) {
            self.report_client(|| info_of(&entry.client, entry.channels.clone()));
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
        let is_new = !state
            .fanout
            .get_by_id(id)
            .is_some_and(|entry| entry.channels.contains(&channel));
        if is_new {
            if let Some(ConnectError::ChannelFull { channel, max }) =
                self.full_channel(&state, std::slice::from_ref(&channel), None)
            {
                return Err(SubscriptionError::ChannelFull { channel, max });
            }
        }
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

    /// Applies the effect of a replayed closing on a connection's live registration.
    pub(crate) fn leave_closed_channel(&self, key: u64, channel: &ChannelName) {
        self.state().fanout.unsubscribe(key, channel);
    }
}
