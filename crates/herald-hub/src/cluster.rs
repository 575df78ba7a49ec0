//! The cluster log: one Redis Stream that every hub node appends to and reads from.
//!
//! Owns the Redis side of `--redis-url`: appending an event (with the cross-node idempotency
//! check), the reader that feeds every entry, in stream order, to this node's hub for fan-out,
//! reconnecting with backoff and carrying on from the last entry it read, and the registry of live
//! nodes (their stats and clients) that lets any node answer for the whole cluster.
//! A node's own publishes reach its subscribers through the stream too, never by a local shortcut,
//! so every node sees one order. It never fans out itself and never holds the hub's lock.

use crate::{
    history::{RecordKind, Target},
    store::StoredTarget,
};
use redis::{aio::MultiplexedConnection, AsyncConnectionConfig, Client};
use serde::{Deserialize, Serialize};
use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};
use tokio::sync::{mpsc, watch, Mutex};

/// How long one `XREAD` blocks waiting for entries.
const READ_BLOCK_MS: u64 = 2000;
/// Most entries one `XREAD` returns.
const READ_BATCH_MAX: usize = 512;
/// First reconnect delay after Redis is lost; doubles up to [`RECONNECT_DELAY_MAX`].
const RECONNECT_DELAY_MIN: Duration = Duration::from_millis(100);
/// Longest reconnect delay.
const RECONNECT_DELAY_MAX: Duration = Duration::from_secs(5);
/// How often a node refreshes its entry in the node registry.
pub(crate) const NODE_REFRESH_INTERVAL: Duration = Duration::from_secs(1);
/// A node missing refreshes for this long is taken for dead.
const NODE_TTL: Duration = Duration::from_secs(5);
/// Most client registry changes waiting for the next refresh; past it, the next refresh rewrites
/// the node's whole list.
const REGISTRY_CHANGES_MAX: usize = 65_536;
/// Most time a request waits for Redis.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);

/// Settings of the cluster log.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// `redis://host:port/db`.
    pub redis_url: String,
    /// Prefix of every key Herald uses, so several hubs can share one Redis. Default `herald`.
    pub key_prefix: String,
    /// This node's name in stats; unique per node. Default: a random one.
    pub node_id: String,
}

/// Why the cluster log failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClusterError {
    /// The URL is not a Redis URL.
    #[error("invalid redis url: {0}")]
    InvalidUrl(String),
    /// Redis cannot be reached or answered with an error.
    #[error("redis is unavailable: {0}")]
    Unavailable(String),
}

fn unavailable(err: impl std::fmt::Display) -> ClusterError {
    ClusterError::Unavailable(err.to_string())
}

/// One event as it travels through the stream.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct LogEntry {
    /// The publisher's id; `None`: the stream entry id is the event id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) id: Option<String>,
    pub(crate) target: StoredTarget,
    /// `Some(has_final_event)` for a channel's closing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) close: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) event: Option<String>,
    pub(crate) data: String,
    #[serde(default)]
    pub(crate) is_json: bool,
}

impl LogEntry {
    pub(crate) fn kind(&self) -> RecordKind {
        match self.close {
            None => RecordKind::Event,
            Some(has_final_event) => RecordKind::Close { has_final_event },
        }
    }

    pub(crate) fn target(&self) -> Option<Target> {
        self.target.clone().into_target()
    }
}

/// A stream entry id, `ms-seq`, ordered as Redis orders them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub(crate) struct EntryId(u64, u64);

impl EntryId {
    pub(crate) fn parse(text: &str) -> Option<Self> {
        let (ms, seq) = text.split_once('-')?;
        Some(Self(ms.parse().ok()?, seq.parse().ok()?))
    }
}

impl std::fmt::Display for EntryId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.0, self.1)
    }
}

/// What the reader hands the hub, in stream order.
pub(crate) trait EntrySink: Send + Sync + 'static {
    /// Applies one entry: history, then fan-out to this node's connections.
    fn apply(&self, entry_id: &str, entry: LogEntry);
    /// Entries were lost between what this node read and what Redis still holds.
    fn gap(&self);
}

/// Appends an event unless its publisher id was already used (within `ttl`), atomically.
const APPEND_SCRIPT: &str = r#"
if ARGV[1] ~= '' then
  if not redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[2]) then
    return false
  end
end
return redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[3], '*', 'e', ARGV[4])
"#;

/// The handle the hub keeps.
#[derive(Debug)]
pub(crate) struct Cluster {
    client: Client,
    config: ClusterConfig,
    /// The connection for appends and registry commands; `None` until (re)connected.
    command_conn: Mutex<Option<MultiplexedConnection>>,
    /// The last entry this node has applied.
    applied_tx: watch::Sender<EntryId>,
    max_len: usize,
    idempotency_ttl: Duration,
    /// True while the reader is connected and reading (false while Redis is lost).
    is_reading: AtomicBool,
    /// Client registry changes waiting for the next refresh (bounded; see `client_changed`).
    registry_tx: mpsc::Sender<RegistryChange>,
    registry_rx: Mutex<mpsc::Receiver<RegistryChange>>,
    /// The next refresh must rewrite this node's whole client list (at start, after a failed
    /// refresh, or when changes overflowed).
    needs_resync: AtomicBool,
}

impl Cluster {
    pub(crate) fn new(
        config: ClusterConfig,
        max_len: usize,
        idempotency_ttl: Duration,
    ) -> Result<Arc<Self>, ClusterError> {
        let (registry_tx, registry_rx) = mpsc::channel(REGISTRY_CHANGES_MAX);
        let client = Client::open(config.redis_url.as_str())
            .map_err(|e| ClusterError::InvalidUrl(e.to_string()))?;
        Ok(Arc::new(Self {
            client,
            config,
            command_conn: Mutex::new(None),
            applied_tx: watch::channel(EntryId::default()).0,
            max_len: max_len.max(1),
            is_reading: AtomicBool::new(false),
            registry_tx,
            registry_rx: Mutex::new(registry_rx),
            needs_resync: AtomicBool::new(true),
            idempotency_ttl,
        }))
    }

    /// Whether this node is reading the cluster log now (false while Redis is lost): a node that
    /// is not cannot deliver events to its streams.
    pub(crate) fn is_reading(&self) -> bool {
        self.is_reading.load(Ordering::Relaxed)
    }

    pub(crate) fn node_id(&self) -> &str {
        &self.config.node_id
    }

    fn key(&self, suffix: &str) -> String {
        format!("{}:{suffix}", self.config.key_prefix)
    }

    async fn connect(
        &self,
        response_timeout: Duration,
    ) -> Result<MultiplexedConnection, ClusterError> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(COMMAND_TIMEOUT))
            .set_response_timeout(Some(response_timeout));
        self.client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(unavailable)
    }

    /// Runs one request on the shared connection, reconnecting once if the connection was lost.
    async fn run<T: redis::FromRedisValue>(&self, request: &Request) -> Result<T, ClusterError> {
        for attempt in 0..2 {
            let mut conn = {
                let mut guard = self.command_conn.lock().await;
                match guard.as_ref() {
                    Some(conn) => conn.clone(),
                    None => {
                        let conn = self.connect(COMMAND_TIMEOUT).await?;
                        *guard = Some(conn.clone());
                        conn
                    }
                }
            };
            let result = match request {
                Request::Cmd(cmd) => cmd.query_async::<T>(&mut conn).await,
                Request::Pipe(pipe) => pipe.query_async::<T>(&mut conn).await,
            };
            match result {
                Ok(value) => return Ok(value),
                Err(err) => {
                    *self.command_conn.lock().await = None;
                    let is_lost = err.is_io_error()
                        || err.is_connection_dropped()
                        || err.is_connection_refusal();
                    if attempt == 1 || !is_lost {
                        return Err(unavailable(err));
                    }
                }
            }
        }
        Err(ClusterError::Unavailable("redis connection lost".into()))
    }

    /// Appends an entry. `Ok(None)`: its publisher id was already used in the cluster.
    pub(crate) async fn append(&self, entry: &LogEntry) -> Result<Option<EntryId>, ClusterError> {
        let payload =
            serde_json::to_string(entry).expect("a log entry is plain data and always serializes");
        let mut eval = redis::cmd("EVAL");
        eval.arg(APPEND_SCRIPT)
            .arg(2)
            .arg(self.key("log"))
            .arg(self.key(&format!("id:{}", entry.id.as_deref().unwrap_or(""))))
            .arg(entry.id.as_deref().unwrap_or(""))
            .arg(self.idempotency_ttl.as_millis().max(1) as u64)
            .arg(self.max_len)
            .arg(&payload);
        let id: Option<String> = self.run(&Request::Cmd(eval)).await?;
        match id {
            None => Ok(None),
            Some(id) => EntryId::parse(&id)
                .map(Some)
                .ok_or_else(|| unavailable(format!("odd entry id {id}"))),
        }
    }

    /// Waits until this node has applied `entry_id`, up to `within`.
    pub(crate) async fn wait_applied(
        &self,
        entry_id: EntryId,
        within: Duration,
    ) -> Result<(), ClusterError> {
        let mut applied_rx = self.applied_tx.subscribe();
        let is_applied =
            tokio::time::timeout(within, applied_rx.wait_for(|applied| *applied >= entry_id))
                .await
                .is_ok_and(|waited| waited.is_ok());
        if is_applied {
            Ok(())
        } else {
            Err(ClusterError::Unavailable(
                "this node has not read the event back from redis in time".into(),
            ))
        }
    }

    /// Reads the stream forever (until `shutdown`), feeding `sink`. Loads the most recent
    /// `history_len` entries first.
    pub(crate) async fn read_loop(
        self: Arc<Self>,
        sink: Arc<dyn EntrySink>,
        history_len: usize,
        shutdown: tokio_util::sync::CancellationToken,
    ) {
        let mut last: Option<EntryId> = None;
        let mut delay = RECONNECT_DELAY_MIN;
        loop {
            let outcome = tokio::select! {
                () = shutdown.cancelled() => return,
                outcome = self.read_session(&*sink, &mut last, history_len) => outcome,
            };
            self.is_reading.store(false, Ordering::Relaxed);
            if let Err(err) = outcome {
                tracing::warn!(error = %err, retry_in = ?delay, "redis lost; subscribers keep their streams, publishing answers 503");
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(RECONNECT_DELAY_MAX);
            } else {
                delay = RECONNECT_DELAY_MIN;
            }
        }
    }

    /// One connection's worth of reading; returns on the first error.
    async fn read_session(
        &self,
        sink: &dyn EntrySink,
        last: &mut Option<EntryId>,
        history_len: usize,
    ) -> Result<(), ClusterError> {
        let mut conn = self
            .connect(Duration::from_millis(READ_BLOCK_MS) + COMMAND_TIMEOUT)
            .await?;
        let log_key = self.key("log");
        match *last {
            None => {
                // First contact: load recent history without fan-out (no one is subscribed yet).
                let recent: Entries = redis::cmd("XREVRANGE")
                    .arg(&log_key)
                    .arg("+")
                    .arg("-")
                    .arg("COUNT")
                    .arg(history_len.max(1))
                    .query_async(&mut conn)
                    .await
                    .map_err(unavailable)?;
                let mut newest = EntryId::default();
                for (id, fields) in recent.into_iter().rev() {
                    newest = self.apply_raw(sink, &id, fields).unwrap_or(newest);
                }
                tracing::info!(node = %self.config.node_id, last = %newest, "joined the cluster log");
                *last = Some(newest);
                self.applied_tx.send_replace(newest);
            }
            Some(after) => {
                tracing::info!(node = %self.config.node_id, from = %after, "reading the cluster log again");
            }
        }
        self.is_reading.store(true, Ordering::Relaxed);
        let mut gap_reported_at = None;
        loop {
            let after = last.expect("set above");
            let from = after.to_string();
            // Before each read, check that the last entry read is still in the stream. Redis trims
            // the oldest entries first, so when it is gone, entries after it may be gone too
            // (`max-deleted-entry-id` does not move on `MAXLEN` trims): treat it as a gap.
            let (still_there, reply): (Entries, ReadReply) = redis::pipe()
                .cmd("XRANGE")
                .arg(&log_key)
                .arg(&from)
                .arg(&from)
                .cmd("XREAD")
                .arg("COUNT")
                .arg(READ_BATCH_MAX)
                .arg("BLOCK")
                .arg(READ_BLOCK_MS)
                .arg("STREAMS")
                .arg(&log_key)
                .arg(&from)
                .query_async(&mut conn)
                .await
                .map_err(unavailable)?;
            if still_there.is_empty()
                && after != EntryId::default()
                && gap_reported_at != Some(after)
            {
                tracing::warn!(last_read = %after, "redis trimmed events this node had not read; its clients must reload");
                sink.gap();
                gap_reported_at = Some(after);
            }
            for (_, entries) in reply.unwrap_or_default() {
                for (id, fields) in entries {
                    if let Some(entry_id) = self.apply_raw(sink, &id, fields) {
                        *last = Some(entry_id);
                        self.applied_tx.send_replace(entry_id);
                    }
                }
            }
        }
    }

    fn apply_raw(
        &self,
        sink: &dyn EntrySink,
        id: &str,
        fields: Vec<(String, String)>,
    ) -> Option<EntryId> {
        let entry_id = EntryId::parse(id)?;
        let Some((_, payload)) = fields.into_iter().find(|(name, _)| name == "e") else {
            tracing::warn!(entry = id, "skipping a cluster log entry without a payload");
            return Some(entry_id);
        };
        match serde_json::from_str::<LogEntry>(&payload) {
            Ok(entry) => sink.apply(id, entry),
            Err(err) => {
                tracing::warn!(entry = id, error = %err, "skipping an unreadable cluster log entry")
            }
        }
        Some(entry_id)
    }

    /// Queues a change to this node's entry in the client registry for the next refresh. If too
    /// many are waiting, the next refresh rewrites the whole list instead.
    pub(crate) fn client_changed(&self, change: RegistryChange) {
        if self.registry_tx.try_send(change).is_err() {
            self.needs_resync.store(true, Ordering::Relaxed);
        }
    }

    /// Reports this node to the registry: its stats, and the client changes queued since the last
    /// refresh (`HSET`/`HDEL` on the node's hash), or the whole list (`all_clients`) after a
    /// failure or an overflow. One atomic pipeline, whatever the number of connections.
    pub(crate) async fn refresh_node(
        &self,
        stats: &serde_json::Value,
        all_clients: impl FnOnce() -> Vec<(String, String)>,
    ) -> Result<(), ClusterError> {
        let node = &self.config.node_id;
        let ttl_ms = NODE_TTL.as_millis() as u64;
        let now_ms = unix_ms();
        let nodes_key = self.key("nodes");
        let clients_key = self.clients_key(node);
        let mut changes = Vec::new();
        {
            let mut registry_rx = self.registry_rx.lock().await;
            while let Ok(change) = registry_rx.try_recv() {
                changes.push(change);
            }
        }
        let is_resync = self.needs_resync.swap(false, Ordering::Relaxed);
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("ZADD")
            .arg(&nodes_key)
            .arg(now_ms)
            .arg(node)
            .ignore()
            .cmd("ZREMRANGEBYSCORE")
            .arg(&nodes_key)
            .arg("-inf")
            .arg(now_ms.saturating_sub(ttl_ms))
            .ignore()
            .cmd("SET")
            .arg(self.key(&format!("node:{node}:stats")))
            .arg(stats.to_string())
            .arg("PX")
            .arg(ttl_ms)
            .ignore();
        if is_resync {
            // The snapshot is newer than every change drained above.
            pipe.cmd("DEL").arg(&clients_key).ignore();
            let clients = all_clients();
            if !clients.is_empty() {
                let hset = pipe.cmd("HSET").arg(&clients_key);
                for (id, info) in clients {
                    hset.arg(id).arg(info);
                }
                hset.ignore();
            }
        } else {
            for change in changes {
                match change {
                    RegistryChange::Upsert { id, info } => pipe
                        .cmd("HSET")
                        .arg(&clients_key)
                        .arg(id)
                        .arg(info)
                        .ignore(),
                    RegistryChange::Remove { id } => {
                        pipe.cmd("HDEL").arg(&clients_key).arg(id).ignore()
                    }
                };
            }
        }
        pipe.cmd("PEXPIRE").arg(&clients_key).arg(ttl_ms).ignore();
        let result = self.run::<()>(&Request::Pipe(pipe)).await;
        if result.is_err() {
            self.needs_resync.store(true, Ordering::Relaxed);
        }
        result
    }

    fn clients_key(&self, node: &str) -> String {
        self.key(&format!("node:{node}:clients"))
    }

    /// The nodes that reported in the last few seconds.
    async fn live_nodes(&self) -> Result<Vec<String>, ClusterError> {
        let min = unix_ms().saturating_sub(NODE_TTL.as_millis() as u64);
        let mut range = redis::cmd("ZRANGEBYSCORE");
        range.arg(self.key("nodes")).arg(min).arg("+inf");
        self.run(&Request::Cmd(range)).await
    }

    /// Every live node's stats, as they last reported them.
    pub(crate) async fn node_stats(
        &self,
    ) -> Result<Vec<(String, serde_json::Value)>, ClusterError> {
        let nodes = self.live_nodes().await?;
        if nodes.is_empty() {
            return Ok(Vec::new());
        }
        let mut get = redis::cmd("MGET");
        for node in &nodes {
            get.arg(self.key(&format!("node:{node}:stats")));
        }
        let stats: Vec<Option<String>> = self.run(&Request::Cmd(get)).await?;
        Ok(nodes
            .into_iter()
            .zip(stats)
            .map(|(node, stats)| {
                (
                    node,
                    stats
                        .and_then(|t| serde_json::from_str(&t).ok())
                        .unwrap_or_default(),
                )
            })
            .collect())
    }

    /// Every live node's clients (as JSON documents), by node.
    pub(crate) async fn node_clients(
        &self,
    ) -> Result<Vec<(String, Vec<serde_json::Value>)>, ClusterError> {
        let mut all = Vec::new();
        for node in self.live_nodes().await? {
            let mut values = redis::cmd("HVALS");
            values.arg(self.clients_key(&node));
            let clients: Vec<String> = self.run(&Request::Cmd(values)).await?;
            all.push((
                node,
                clients
                    .iter()
                    .filter_map(|c| serde_json::from_str(c).ok())
                    .collect(),
            ));
        }
        Ok(all)
    }

    /// Whether any live node has a connection with this client id.
    pub(crate) async fn has_client(&self, id: &str) -> Result<bool, ClusterError> {
        for node in self.live_nodes().await? {
            let mut exists = redis::cmd("HEXISTS");
            exists.arg(self.clients_key(&node)).arg(id);
            if self.run::<bool>(&Request::Cmd(exists)).await? {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Stream entries as `XRANGE` returns them: `(entry id, [(field, value)])`.
type Entries = Vec<(String, Vec<(String, String)>)>;
/// An `XREAD` reply: `[(stream key, entries)]`, or nil when the block timed out.
type ReadReply = Option<Vec<(String, Entries)>>;

/// A request for [`Cluster::run`].
enum Request {
    Cmd(redis::Cmd),
    Pipe(redis::Pipeline),
}

/// A change to this node's entry in the cluster's client registry.
#[derive(Debug)]
pub(crate) enum RegistryChange {
    /// A connection opened, or its channels changed: `info` is its `ClientInfo` as JSON.
    Upsert { id: String, info: String },
    /// No connection on this node holds the id any more.
    Remove { id: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_ids_order_like_redis() {
        let a = EntryId::parse("1700000000000-0").expect("valid");
        let b = EntryId::parse("1700000000000-1").expect("valid");
        let c = EntryId::parse("1700000000001-0").expect("valid");
        assert!(a < b && b < c);
        assert_eq!(c.to_string(), "1700000000001-0");
        assert!(EntryId::parse("nope").is_none());
    }
}
