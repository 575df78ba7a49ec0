//! The log seam: the one trait every event log behind the hub implements, and its three
//! implementations (memory, durable on redb, cluster on Redis).
//!
//! Owns what a log must do for the hub (append, tell what history trimmed, readiness, feed the hub
//! entries it did not publish, help a resume catch up, share presence across nodes) and the one stored form of an event shared by
//! the durable and cluster encodings (`entry`). It never fans out and never holds the hub's lock:
//! a log reaches history only through [`crate::hub::Shared::apply`].
//!
//! The seam is an open trait rather than a closed enum so that a fourth backend (NATS JetStream,
//! Postgres) is one new module implementing [`Log`], with no `match` to extend in the hub.

pub(crate) mod cluster;
pub(crate) mod durable;
mod entry;
pub(crate) mod memory;

pub(crate) use entry::StoredEntry;

use crate::{
    channel::ChannelName,
    event::NewEvent,
    history::Dropped,
    hub::{PublishError, Published, Shared},
    metrics::LogHealth,
    presence::{Drained, Presence, PresenceChange},
    record::{Record, RecordKind, Target},
};
pub use cluster::{ClusterConfig, ClusterError, KEY_PREFIX_DEFAULT, REDIS_URL_DEFAULT};
pub use durable::{FsyncPolicy, StoreError, DATA_FILE_NAME};
use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::{Arc, Weak},
};
use tokio_util::sync::CancellationToken;

/// A future a log returns; boxed so the seam stays object-safe.
pub(crate) type LogFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// An event on its way into history.
#[derive(Debug)]
pub(crate) struct Entry {
    pub(crate) target: Target,
    /// `event.id` is the publisher's id, if any.
    pub(crate) event: NewEvent,
    pub(crate) kind: RecordKind,
    /// The id the log gave the event (the cluster's stream entry id); `None` when history gives
    /// it one (`{epoch}-{seq}`).
    pub(crate) log_id: Option<String>,
    /// With a `log_id`: whether the log decided, when it appended the entry, that the
    /// publisher's id is the wire id (else `log_id` is). Without one, history decides.
    pub(crate) is_publisher_id_on_wire: bool,
}

/// Why the log behind the hub could not take or serve a request.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogError {
    /// Writing the durable log failed; nothing published since is acknowledged.
    #[error("the durable log is not writable")]
    DurableWrite(#[source] Arc<redb::Error>),
    /// The durable log's writer is gone (the hub is stopping).
    #[error("the durable log has stopped")]
    DurableStopped,
    /// The cluster log (Redis) failed.
    #[error(transparent)]
    Cluster(#[from] ClusterError),
}

impl LogError {
    /// Whether the cause is Redis being unreachable or failing (retry later, maybe elsewhere).
    pub fn is_cluster(&self) -> bool {
        matches!(self, Self::Cluster(_))
    }
}

/// What a log does for the hub. The hub holds one `Arc<dyn Log>` and never asks which it is.
///
/// The one path of an event: [`crate::Hub::publish`] validates it and calls [`Log::append`]; the log
/// gives it its position and id (memory, durable: in [`Shared::apply`], under the hub's lock;
/// cluster: Redis orders it and the log's reader hands it to [`Shared::apply`] on every node), makes
/// it durable or replicated, and answers once it is.
pub(crate) trait Log: fmt::Debug + Send + Sync + 'static {
    /// Appends one event and answers once it is recorded (applied here, on disk, or read back).
    fn append<'a>(
        &'a self,
        hub: &'a Shared,
        entry: Entry,
    ) -> LogFuture<'a, Result<Published, PublishError>>;

    /// Called under the hub's lock, in position order, as history takes `record`;
    /// `publisher_id` is the id its publisher gave when that is not its wire id.
    fn recorded(&self, _record: &Record, _publisher_id: Option<&str>) {}

    /// History dropped records: every one below `dropped.below`, and those at `dropped.seqs`
    /// (namespaces trim on their own, so what leaves is not always a prefix).
    fn trimmed(&self, _dropped: &Dropped) {}

    /// Whether the log can take and deliver events now (readiness).
    fn is_ready(&self) -> bool {
        true
    }

    /// The log's health for `/metrics`: its kind, readiness and backend-specific figures.
    fn health(&self) -> LogHealth {
        LogHealth {
            backend: "memory",
            is_ready: self.is_ready(),
            ..LogHealth::default()
        }
    }

    /// Starts the log's background work, such as the reader that feeds the hub entries other
    /// nodes published. Called once, when the hub starts.
    fn start(self: Arc<Self>, _hub: Weak<Shared>, _shutdown: CancellationToken) {}

    /// When `last_event_id` may name an entry this node has not read yet, a future that resolves
    /// once it has (bounded); `None` when history already answers for it.
    fn catch_up(&self, _last_event_id: &str) -> Option<LogFuture<'static, ()>> {
        None
    }

    /// When this node has not read the log at all yet (a cluster node before its first contact
    /// with Redis), a future that resolves once it has (bounded): a new stream opens after it, so
    /// the stream's starting point is a point of the shared log.
    fn opening_wait(&self) -> Option<LogFuture<'static, ()>> {
        None
    }

    /// This node's name in stats.
    fn node_id(&self) -> &str {
        "standalone"
    }

    /// Binds client id `id` to `owner` across the cluster unless another owner holds it there;
    /// true when the id is `owner`'s. A log without other nodes answers true: the hub's own
    /// binding decides.
    fn claim_client_id<'a>(
        &'a self,
        _id: &'a str,
        _owner: &'a str,
    ) -> LogFuture<'a, Result<bool, LogError>> {
        Box::pin(std::future::ready(Ok(true)))
    }

    /// Tells other nodes about a change to this node's clients (`change` is only built by a log
    /// that keeps a registry).
    fn client_changed(&self, _change: &dyn Fn() -> RegistryChange) {}

    /// Every live node's stats as they last reported them; `None` when this hub is alone and
    /// answers for itself.
    fn node_stats(&self) -> LogFuture<'_, Result<Option<Vec<NodeStats>>, LogError>> {
        Box::pin(std::future::ready(Ok(None)))
    }

    /// Every live node's clients (as JSON documents); `None` when this hub is alone.
    fn node_clients(&self) -> LogFuture<'_, Result<Option<Vec<NodeClients>>, LogError>> {
        Box::pin(std::future::ready(Ok(None)))
    }

    /// Shares one presence tick of this node (its changed counts and its coalesced joins and
    /// leaves) with the other nodes, which each deliver the resulting changes to their own
    /// subscribers; resolves to the changes this report produced (each is produced on one node
    /// only). `None`: this hub is alone and delivers `drained.changes` itself.
    fn presence_report<'a>(
        &'a self,
        _drained: &'a Drained,
    ) -> Option<LogFuture<'a, Result<Vec<PresenceChange>, LogError>>> {
        None
    }

    /// Whether the next presence report must carry every count (at start, after a failed one).
    fn presence_needs_full(&self) -> bool {
        false
    }

    /// Who is on `channel` across every live node; `None` when this hub is alone and answers
    /// from its own roster.
    fn presence_of<'a>(
        &'a self,
        _channel: &'a ChannelName,
    ) -> Option<LogFuture<'a, Result<Presence, LogError>>> {
        None
    }
}

/// A node's name and its stats as JSON.
pub(crate) type NodeStats = (String, serde_json::Value);
/// A node's name and its clients as JSON documents.
pub(crate) type NodeClients = (String, Vec<serde_json::Value>);

/// A change to this node's entry in the cluster's client registry.
#[derive(Debug)]
pub(crate) enum RegistryChange {
    /// A connection opened, or its channels changed: `info` is its `ClientInfo` as JSON.
    Upsert { id: String, info: String },
    /// No connection on this node holds the id any more.
    Remove { id: String },
}
