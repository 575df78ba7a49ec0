//! The hub: the library's front door, tying history, the log, fan-out and connections together.
//!
//! Declares the handle ([`Hub`]), its shared state and its constructors, one per log: memory
//! ([`Hub::new`]), durable ([`Hub::open`]) and cluster ([`Hub::join_cluster`]). The hub holds one
//! `Arc<dyn Log>` and never asks which it is; the concepts live in the submodules: `publish` (the
//! one path of an event), `connect` (connections and subscriptions), `query` (clients, channels,
//! stats), `poll` (pages of history), `sweep` (the one timer), `presence` (who is on a channel,
//! and the tick that sends joins and leaves), `topics` (topic-selecting connections), `error`.
//! It never speaks HTTP and never waits on a subscriber.

mod connect;
mod error;
#[cfg(test)]
mod namespace_tests;
mod poll;
mod presence;
mod publish;
mod query;
mod sweep;
mod topics;

pub use connect::ClientOptions;
pub use error::{ConnectError, PublishError, SendError, SubscriptionError};
pub use poll::{EventPage, PolledEvent, POLL_LIMIT_MAX};
pub use publish::Published;
pub(crate) use publish::{Apply, Precheck};
pub use query::{ChannelInfo, ClientInfo, HistoryStats, Stats};

use crate::{
    channel::ChannelName,
    client::{ClientShared, EndReason},
    config::{HubConfig, PresenceConfig},
    direct::DirectWriter,
    event::ClientId,
    fanout::Fanout,
    history::Dropped,
    history::History,
    hooks::Hooks,
    log::{
        cluster::ClusterLog,
        durable::{DurableLog, RecoveredEntry},
        memory::MemoryLog,
        ClusterConfig, ClusterError, Entry, FsyncPolicy, Log, StoreError,
    },
    metrics::{Counters, Metrics},
    namespace::{NamespaceRules, Namespaces},
    presence::{Roster, SinkSlot},
    record::{Audience, Draft, Record},
};
use std::{
    collections::HashMap,
    path::Path,
    sync::{atomic::AtomicU64, Arc, Mutex, MutexGuard},
    time::Instant,
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

/// What every handle and background task of one hub shares.
#[derive(Debug)]
pub(crate) struct Shared {
    config: HubConfig,
    /// The namespaces compiled from `config`, read on every publish and subscribe.
    namespaces: Arc<Namespaces>,
    state: Mutex<State>,
    /// The event log behind history: memory, durable or cluster.
    log: Arc<dyn Log>,
    /// Lock-free counters for `/metrics` and `/api/stats`.
    counters: Counters,
    started_at: Instant,
    shutdown: CancellationToken,
    next_key: AtomicU64,
    /// Application code told when a connection opens or ends.
    hooks: Hooks,
    /// Application code told when a user joins or leaves a channel.
    presence_sink: SinkSlot,
    /// Writes events to connections whose own task sleeps (see `direct`).
    direct: DirectWriter,
}

/// What the hub's lock guards.
#[derive(Debug)]
struct State {
    history: History,
    fanout: Fanout,
    /// Channels whose closing is still in history, with the position of the closing.
    closed: HashMap<ChannelName, u64>,
    /// Client ids whose connection ended, kept while `client_linger` lasts or an event addressed
    /// to them is in history: events sent to them wait there, and the id stays its owner's.
    departed: HashMap<ClientId, Departed>,
    /// The position of the newest event addressed to each client id (trimmed with history by
    /// the sweep): a departed id is kept while one is held.
    client_events: HashMap<ClientId, u64>,
    is_shutting_down: bool,
}

/// A client id whose connection ended, and the identity it belongs to (so nobody else can claim
/// the id and the events waiting for it).
#[derive(Debug)]
struct Departed {
    left_at: Instant,
    user: Option<Arc<str>>,
    owner: Option<Arc<str>>,
}

impl Departed {
    fn of(client: &ClientShared) -> Self {
        Self {
            left_at: Instant::now(),
            user: client.user.clone(),
            owner: client.owner.clone(),
        }
    }
}

impl State {
    /// Whether `id` is connected here, or left less than `client_linger` ago (events sent to it
    /// then wait in history for its return).
    fn is_client_known(&self, id: &ClientId) -> bool {
        self.fanout.key_of(id).is_some() || self.departed.contains_key(id)
    }

    /// Whether client id `id` may be taken by `owner`: it is free, or bound to `owner`.
    fn may_claim(&self, id: &ClientId, owner: Option<&str>) -> bool {
        let bound = match self.fanout.get_by_id(id) {
            Some(entry) => entry.client.owner.as_deref(),
            None => match self.departed.get(id) {
                Some(departed) => departed.owner.as_deref(),
                None => return true,
            },
        };
        bound == owner
    }
}

impl Hub {
    /// Creates a hub with an in-memory log: nothing to install, nothing survives a restart.
    ///
    /// # Panics
    /// When called outside a tokio runtime, or when `config.namespaces` holds a bad rule (check
    /// them first with [`HubConfig::namespaces`]).
    pub fn new(config: HubConfig) -> Self {
        let history = History::new(compile(&config));
        Self::start(config, history, Arc::new(MemoryLog))
    }

    /// Creates a hub whose history is kept in a redb database in `data_dir` (created if missing):
    /// history and ids survive a restart or a crash, and a publish is answered once its event is
    /// on disk (see [`FsyncPolicy`]).
    ///
    /// # Errors
    /// [`StoreError`] when the folder or database cannot be used (unreadable, corrupt, or open in
    /// another hub); a hub never silently starts empty.
    ///
    /// # Panics
    /// When called outside a tokio runtime, or when `config.namespaces` holds a bad rule.
    pub fn open(
        config: HubConfig,
        data_dir: &Path,
        fsync: FsyncPolicy,
    ) -> Result<Self, StoreError> {
        let (log, recovered, lost_marks) = DurableLog::open(data_dir, fsync)?;
        let count = recovered.len();
        let first_seq = recovered.first().map(|r| r.seq);
        let mut history = History::new(compile(&config));
        history.reserve(count);
        restore(&mut history, recovered);
        history.recovered(first_seq, &lost_marks);
        let dropped = history.trim(Instant::now());
        log.trimmed(&dropped);
        tracing::info!(events = count, kept = history.len(), dir = %data_dir.display(), "recovered the durable log");
        Ok(Self::start(config, history, Arc::new(log)))
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
    /// When called outside a tokio runtime, or when `config.namespaces` holds a bad rule.
    pub fn join_cluster(config: HubConfig, cluster: ClusterConfig) -> Result<Self, ClusterError> {
        let namespaces = compile(&config);
        let log = ClusterLog::new(
            cluster,
            config.history.max_events,
            config.history.max_age,
            config.client_linger,
            &PresenceConfig {
                enabled: config.presence.enabled || namespaces.iter().any(NamespaceRules::presence),
                ..config.presence.clone()
            },
            namespaces.clone(),
        )?;
        let history = History::new(namespaces);
        Ok(Self::start(config, history, Arc::new(log)))
    }

    fn start(config: HubConfig, history: History, log: Arc<dyn Log>) -> Self {
        let closed = history.closed_channels();
        let namespaces = history.namespaces().clone();
        let shared_namespaces = namespaces.clone();
        let (direct, claims) = DirectWriter::new();
        let shared = Arc::new(Shared {
            namespaces,
            state: Mutex::new(State {
                history,
                fanout: Fanout::new(
                    Roster::new(config.presence.enabled, config.presence.linger)
                        .with_namespaces(shared_namespaces),
                ),
                closed,
                departed: HashMap::new(),
                client_events: HashMap::new(),
                is_shutting_down: false,
            }),
            log: log.clone(),
            counters: Counters::new(&config.metrics_channels),
            config,
            started_at: Instant::now(),
            shutdown: CancellationToken::new(),
            next_key: AtomicU64::new(1),
            hooks: Hooks::default(),
            presence_sink: SinkSlot::default(),
            direct,
        });
        tokio::spawn(crate::direct::run(Arc::downgrade(&shared), claims));
        sweep::spawn(&shared);
        presence::spawn(&shared);
        log.start(Arc::downgrade(&shared), shared.shutdown.clone());
        Self { shared }
    }

    pub(crate) fn from_shared(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    /// The configuration this hub runs with.
    pub fn config(&self) -> &HubConfig {
        &self.shared.config
    }

    /// The rules of `channel`'s namespace (the first configured namespace whose pattern
    /// matches it, else the default one). Costs a prefix comparison per configured namespace.
    pub fn namespace_of(&self, channel: &ChannelName) -> &NamespaceRules {
        self.shared.namespaces.of(channel)
    }

    /// Every namespace of this hub, the default one first.
    pub fn namespaces(&self) -> &Namespaces {
        &self.shared.namespaces
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.shared.state()
    }

    /// Ends every stream (each writes what it has queued, then a closing comment), refuses new
    /// ones and stops the background tasks. Safe to call more than once.
    pub fn shutdown(&self) {
        let mut state = self.state();
        state.is_shutting_down = true;
        for entry in state.fanout.entries() {
            entry.client.end(EndReason::Shutdown, true);
        }
        drop(state);
        self.shared.shutdown.cancel();
    }

    /// Whether this hub can deliver events now: false while it shuts down, and while its log
    /// cannot (in a cluster: Redis lost, or this node's reader stuck), so a load balancer sends
    /// new streams to another node.
    pub fn is_ready(&self) -> bool {
        !self.is_shutting_down() && self.shared.log.is_ready()
    }

    /// Whether [`Hub::shutdown`] was called.
    pub fn is_shutting_down(&self) -> bool {
        self.shared.shutdown.is_cancelled()
    }

    /// Connections ended since start, whatever ended them (cheap: one counter).
    pub fn connections_closed(&self) -> u64 {
        self.shared.counters.streams_closed_total()
    }

    /// Every counter of this hub, for an exporter such as `GET /metrics`: lock-free reads of the
    /// counters, plus one short lock to read history's two sizes (no walk of anything).
    pub fn metrics(&self) -> Metrics {
        let mut metrics = self.shared.counters.snapshot();
        {
            let state = self.state();
            metrics.history = HistoryStats {
                events: state.history.len(),
                bytes: state.history.bytes(),
            };
        }
        metrics.log = self.shared.log.health();
        metrics
    }

    pub(crate) fn count_delivered(&self, events: u64) {
        if events > 0 {
            self.shared.counters.delivered(events);
        }
    }

    /// Events a resuming connection read from history (also counted as deliveries).
    pub(crate) fn count_replayed(&self, events: u64) {
        if events > 0 {
            self.shared.counters.replayed(events);
        }
    }

    /// Tells `watcher` from now on when a channel is occupied or vacated on this node (webhooks).
    pub(crate) fn watch_channels(&self, watcher: Arc<dyn crate::hooks::ChannelWatcher>) {
        self.state().fanout.set_watcher(watcher);
    }

    /// The webhook sender's counters, which `metrics` and `stats` read.
    pub(crate) fn webhook_counters(&self) -> Arc<crate::metrics::WebhookCounters> {
        self.shared.counters.webhooks()
    }

    /// Cancelled when the hub shuts down: background tasks outside the hub stop on it.
    pub(crate) fn shutdown_token(&self) -> CancellationToken {
        self.shared.shutdown.clone()
    }

    /// This node's cluster id, or `standalone`.
    pub(crate) fn node_id(&self) -> &str {
        self.shared.log.node_id()
    }

    /// Reads the next replay batch for a resuming connection, under the state lock.
    pub(crate) fn with_history<R>(&self, read: impl FnOnce(&History) -> R) -> R {
        read(&self.state().history)
    }
}

impl Shared {
    /// The hub's lock. Every mutation of `State` completes before the guard drops, so a poisoned
    /// lock still holds consistent data: every user of the state goes through here.
    fn state(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Trims history to its limits and tells the log what it dropped ("trim, then tell the log",
    /// written once).
    fn trim(&self, state: &mut State, now: Instant) {
        let dropped = state.history.trim(now);
        if dropped != Dropped::default() {
            self.log.trimmed(&dropped);
            let history = &state.history;
            state
                .closed
                .retain(|_, closed_at| history.get(*closed_at).is_some());
        }
    }

    /// What this node holds no longer joins up with the log: forget it, so every resume says
    /// `resumed: false`, and end every stream so its client reconnects and reloads.
    /// First contact with a shared log: positions handed out before it (a `connected` id of a
    /// stream that opened while the log was out of reach) no longer name anything, and streams
    /// already open are ended so their clients reconnect from a point of the shared log. Streams
    /// still waiting for first contact to open are left alone.
    pub(crate) fn join_log(&self) {
        let mut state = self.state();
        state.history.renew_epoch();
        for entry in state.fanout.entries() {
            if entry
                .client
                .is_opened
                .load(std::sync::atomic::Ordering::Relaxed)
            {
                entry.client.end(EndReason::HistoryGap, false);
            }
        }
    }

    pub(crate) fn reset_history(&self) {
        let mut state = self.state();
        state.history = History::new(self.namespaces.clone());
        state.closed.clear();
        for entry in state.fanout.entries() {
            entry.client.end(EndReason::HistoryGap, false);
        }
    }
}

/// The namespaces of `config`, compiled.
fn compile(config: &HubConfig) -> Arc<Namespaces> {
    Arc::new(
        config
            .namespaces()
            .unwrap_or_else(|err| panic!("the hub's namespaces are not valid: {err}")),
    )
}

/// Rebuilds history from the durable log's entries, oldest first.
fn restore(history: &mut History, recovered: Vec<RecoveredEntry>) {
    let now = Instant::now();
    for RecoveredEntry {
        seq,
        entry,
        publisher_id,
        recipients,
        age,
    } in recovered
    {
        let Entry {
            target,
            event,
            kind,
            ..
        } = entry;
        if seq > history.next_seq() {
            history.skip_to(seq);
        }
        let id = event
            .id
            .as_deref()
            .expect("a durable entry always has its id");
        let draft = Draft {
            id,
            // Recovered ids keep their text, and each stays idempotent in its scope (a hub-assigned
            // id has a shape no publisher id has, so it never matches a publish).
            is_publisher_id: true,
            event: event.event.as_deref(),
            data: &event.data,
            kind,
            is_private: event.private,
            retry: event.retry,
        };
        let published_ms = history.ms_since_origin(now.checked_sub(age).unwrap_or(now));
        let mut record = Record::new(seq, &draft, Audience::from_target(target), published_ms);
        record.recipients = recipients;
        history.append(record, Some(publisher_id.as_deref().unwrap_or(id)));
    }
}
