//! The cluster log: one Redis Stream that every hub node appends to and reads from, plus one
//! retained copy per configured namespace.
//!
//! Owns the Redis side of `--redis-url`: its settings and errors, the connection for commands, and
//! appending an event with the cross-node idempotency check. The global stream (`log`) gives the
//! one order and feeds every node; it is trimmed by count, like the default namespace. An event
//! of a configured namespace is also copied, in the same script and with the same entry id, to
//! that namespace's stream (`ns:{name}`), trimmed by the namespace's own cap and age: a node that
//! joins reads those copies along with the global stream's tail, so a job's early steps survive
//! a busy channel that pushed them out of the global stream. The reader (`reader`) feeds every
//! entry, in stream order, to this node's hub; the registry (`registry`) lets any node answer for
//! the whole cluster. A node's own publishes reach its subscribers through the stream too, never by
//! a local shortcut, so every node sees one order. It never fans out itself and never holds the
//! hub's lock.

mod presence;
mod reader;
mod registry;

use crate::{
    channel::ChannelName,
    config::PresenceConfig,
    hub::{Precheck, PublishError, Published, Shared},
    log::{Entry, Log, LogError, LogFuture, NodeClients, NodeStats, RegistryChange, StoredEntry},
    namespace::Namespaces,
    presence::{Drained, Presence, PresenceChange},
    record::Target,
};
use presence::ClusterPresence;
use reader::{EntryId, ReaderState};
use redis::{aio::MultiplexedConnection, AsyncConnectionConfig, Client};
use registry::Registry;
use std::{
    sync::{Arc, Weak},
    time::Duration,
};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

/// Most time a request waits for Redis.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest a cluster publish waits for this node to read its event back from Redis.
const APPLY_TIMEOUT: Duration = Duration::from_secs(5);
/// Default prefix of every key Herald uses.
pub const KEY_PREFIX_DEFAULT: &str = "herald";
/// Default Redis URL.
pub const REDIS_URL_DEFAULT: &str = "redis://127.0.0.1:6379/";

/// Settings of the cluster log.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// `redis://host:port/db`. Default [`REDIS_URL_DEFAULT`].
    pub redis_url: String,
    /// Prefix of every key Herald uses, so several hubs can share one Redis. Default
    /// [`KEY_PREFIX_DEFAULT`].
    pub key_prefix: String,
    /// This node's name in stats; unique per node. Default: `node-` and 8 random characters.
    pub node_id: String,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        let mut node_id = String::from("node-");
        node_id.extend((0..8).map(|_| fastrand::alphanumeric().to_ascii_lowercase()));
        Self {
            redis_url: REDIS_URL_DEFAULT.to_owned(),
            key_prefix: KEY_PREFIX_DEFAULT.to_owned(),
            node_id,
        }
    }
}

/// Why the cluster log failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// The URL is not a Redis URL.
    #[error("invalid redis url")]
    InvalidUrl(#[source] redis::RedisError),
    /// Redis cannot be reached or answered with an error.
    #[error("redis is unavailable")]
    Unavailable(#[source] redis::RedisError),
    /// Redis took the event but this node did not read it back in time (it may be lost to Redis
    /// or just slow): retry with the same publisher id to be safe.
    #[error("this node has not read the event back from redis in time")]
    ReadBackTimeout,
    /// Redis answered something Herald never asks for (another program uses its keys?).
    #[error("redis answered unexpectedly: {0}")]
    UnexpectedReply(String),
}

impl ClusterError {
    /// Whether Redis could not serve the request now (retry later, maybe on another node).
    pub fn is_unavailable(&self) -> bool {
        !matches!(self, Self::InvalidUrl(_))
    }

    /// Whether the configured URL is not a Redis URL.
    pub fn is_invalid_url(&self) -> bool {
        matches!(self, Self::InvalidUrl(_))
    }
}

/// Appends an event unless its publisher id was already used in its scope (within `ttl`),
/// atomically, and decides once for every node whether the publisher's id is the event's wire id:
/// it is unless another event (of another scope) has it on the wire already (field `w`).
/// KEYS: the log, the idempotency key (publisher id and scope), the wire key (publisher id), the
/// owner key of the addressed client id (or the empty string), the stream of the event's
/// namespace (or the empty string for the default one; ARGV[6] its cap in events, ARGV[7] its
/// age in ms or the empty string). An event for a client id keeps
/// its owner binding alive for as long as the event can be in history.
const APPEND_SCRIPT: &str = r#"
local fields = {'e', ARGV[4]}
if ARGV[1] ~= '' then
  if not redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[2]) then
    return false
  end
  if redis.call('SET', KEYS[3], '1', 'NX', 'PX', ARGV[2]) then
    fields = {'e', ARGV[4], 'w', '1'}
  end
end
if KEYS[4] ~= '' then
  redis.call('PEXPIRE', KEYS[4], ARGV[5])
end
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[3], '*', unpack(fields))
if KEYS[5] ~= '' then
  -- A copy that cannot be added (its stream is ahead of the log's ids, say after the log was
  -- deleted alone) must not fail an event the log already holds.
  redis.pcall('XADD', KEYS[5], 'MAXLEN', '~', ARGV[6], id, unpack(fields))
  if ARGV[7] ~= '' then
    local now = redis.call('TIME')
    local min_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) - tonumber(ARGV[7])
    redis.pcall('XTRIM', KEYS[5], 'MINID', '~', string.format('%d', min_ms))
  end
end
return id
"#;

/// Binds a client id to an owner (`ARGV[1]`) unless another owner holds it; refreshes the
/// binding's time to live (`ARGV[2]` ms). Returns 1 when the id is the owner's, 0 when not.
const CLAIM_SCRIPT: &str = r#"
local owner = redis.call('GET', KEYS[1])
if owner and owner ~= ARGV[1] then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"#;

/// The scope a publisher id is idempotent in, as a Redis key part: the sorted channels, one
/// client id, or everyone. Channel names and client ids hold no `,` nor space.
fn scope_of(target: &Target) -> String {
    match target {
        Target::Channels(channels) => {
            let names: Vec<&str> = channels.iter().map(|c| c.as_str()).collect();
            format!("c:{}", names.join(","))
        }
        Target::Client(id) => format!("k:{id}"),
        Target::All => "*".to_owned(),
    }
}

/// The cluster log the hub holds.
#[derive(Debug)]
pub(crate) struct ClusterLog {
    redis: Redis,
    /// What the reader has read, for publishers and resumes waiting on it.
    reader: ReaderState,
    registry: Registry,
    max_len: usize,
    /// Which events are copied to a namespace's stream, and how it is trimmed.
    namespaces: Arc<Namespaces>,
    idempotency_ttl: Duration,
    /// How long a client id stays bound to its owner after the last claim, event for it,
    /// departure or refresh (live connections are refreshed every quarter of it).
    binding_ttl: Duration,
    /// Presence shared across nodes.
    presence: ClusterPresence,
}

/// The Redis client and the shared connection for commands.
#[derive(Debug)]
struct Redis {
    client: Client,
    key_prefix: String,
    /// The connection for appends and registry commands; `None` until (re)connected.
    command_conn: Mutex<Option<MultiplexedConnection>>,
}

/// A request for [`Redis::run`].
enum Request {
    Cmd(redis::Cmd),
    Pipe(redis::Pipeline),
}

impl Redis {
    fn key(&self, suffix: &str) -> String {
        format!("{}:{suffix}", self.key_prefix)
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
            .map_err(ClusterError::Unavailable)
    }

    /// Runs one request on the shared connection, reconnecting once if the connection was lost.
    async fn run<T: redis::FromRedisValue>(&self, request: &Request) -> Result<T, ClusterError> {
        let mut attempt = 0;
        loop {
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
                    attempt += 1;
                    if attempt == 2 || !is_lost {
                        return Err(ClusterError::Unavailable(err));
                    }
                }
            }
        }
    }
}

impl ClusterLog {
    pub(crate) fn new(
        config: ClusterConfig,
        max_len: usize,
        idempotency_ttl: Duration,
        client_linger: Duration,
        presence: &PresenceConfig,
        namespaces: Arc<Namespaces>,
    ) -> Result<Self, ClusterError> {
        let client = Client::open(config.redis_url.as_str()).map_err(ClusterError::InvalidUrl)?;
        Ok(Self {
            redis: Redis {
                client,
                key_prefix: config.key_prefix,
                command_conn: Mutex::new(None),
            },
            reader: ReaderState::default(),
            registry: Registry::new(config.node_id),
            max_len: max_len.max(1),
            namespaces,
            idempotency_ttl,
            binding_ttl: idempotency_ttl.max(client_linger),
            presence: ClusterPresence::new(presence.enabled, presence.node_timeout),
        })
    }

    /// The stream holding the retained copies of namespace `name`'s events.
    fn namespace_key(&self, name: &str) -> String {
        self.redis.key(&format!("ns:{name}"))
    }

    /// The streams of every configured namespace, with their caps in events.
    fn namespace_streams(&self) -> Vec<(String, usize)> {
        self.namespaces
            .iter()
            .skip(1)
            .map(|rules| {
                (
                    self.namespace_key(rules.name()),
                    rules.retention().max_events,
                )
            })
            .collect()
    }

    fn ms(duration: Duration) -> u64 {
        u64::try_from(duration.as_millis().max(1)).unwrap_or(u64::MAX)
    }

    /// Binds client id `id` to `owner` in Redis unless another owner holds it.
    async fn claim(&self, id: &str, owner: &str) -> Result<bool, ClusterError> {
        let mut eval = redis::cmd("EVAL");
        eval.arg(CLAIM_SCRIPT)
            .arg(1)
            .arg(self.redis.key(&format!("owner:{id}")))
            .arg(owner)
            .arg(Self::ms(self.binding_ttl));
        let claimed: i64 = self.redis.run(&Request::Cmd(eval)).await?;
        Ok(claimed == 1)
    }

    /// Appends an entry. `Ok(None)`: its publisher id was already used in the cluster.
    async fn push(&self, entry: &Entry) -> Result<Option<EntryId>, ClusterError> {
        let payload = serde_json::to_string(&StoredEntry::from_entry(entry))
            .expect("a stored entry is plain data and always serializes");
        let id = entry.event.id.as_deref().unwrap_or("");
        let owner_key = match &entry.target {
            Target::Client(client) => self.redis.key(&format!("owner:{client}")),
            _ => String::new(),
        };
        let namespace = match &entry.target {
            Target::Channels(channels) => channels
                .first()
                .map_or(0, |channel| self.namespaces.index_of(channel)),
            Target::Client(_) | Target::All => 0,
        };
        let (namespace_key, namespace_cap, namespace_age) = match namespace {
            0 => (String::new(), 0, String::new()),
            index => {
                let rules = self.namespaces.at(index);
                let retention = rules.retention();
                (
                    self.namespace_key(rules.name()),
                    retention.max_events,
                    retention
                        .max_age
                        .map_or(String::new(), |age| Self::ms(age).to_string()),
                )
            }
        };
        let mut eval = redis::cmd("EVAL");
        eval.arg(APPEND_SCRIPT)
            .arg(5)
            .arg(self.redis.key("log"))
            .arg(
                self.redis
                    .key(&format!("idem:{} {id}", scope_of(&entry.target))),
            )
            .arg(self.redis.key(&format!("wire:{id}")))
            .arg(owner_key)
            .arg(namespace_key)
            .arg(id)
            .arg(Self::ms(self.idempotency_ttl))
            .arg(self.max_len)
            .arg(&payload)
            .arg(Self::ms(self.binding_ttl))
            .arg(namespace_cap)
            .arg(namespace_age);
        let id: Option<String> = self.redis.run(&Request::Cmd(eval)).await?;
        match id {
            None => Ok(None),
            Some(id) => EntryId::parse(&id)
                .map(Some)
                .ok_or(ClusterError::UnexpectedReply(id)),
        }
    }

    async fn publish(&self, hub: &Shared, entry: Entry) -> Result<Published, PublishError> {
        let unavailable = |err: ClusterError| PublishError::Unavailable(LogError::Cluster(err));
        // Lock 1: a duplicate here, or a client this node does not know.
        match hub.precheck(&entry) {
            Precheck::Duplicate(duplicate) => return Ok(duplicate),
            Precheck::UnknownClient(id) => {
                let is_known = self
                    .registry
                    .has_client(&self.redis, id.as_str())
                    .await
                    .map_err(unavailable)?;
                if !is_known {
                    return Err(PublishError::ClientNotFound(id));
                }
            }
            Precheck::Fresh => {}
        }
        let appended = self.push(&entry).await.map_err(unavailable)?;
        let log_id = match appended {
            Some(entry_id) => {
                // Lock 2 is the reader's, applying the entry on this node as on every other.
                self.reader
                    .wait_read(entry_id, APPLY_TIMEOUT)
                    .await
                    .map_err(unavailable)?;
                entry_id.to_string()
            }
            None => String::new(),
        };
        // Lock 3: the answer (recipients) as this node's reader recorded it.
        Ok(hub.published_of(
            &entry.target,
            entry.event.id.as_deref(),
            &log_id,
            appended.is_none(),
        ))
    }
}

impl Log for ClusterLog {
    fn append<'a>(
        &'a self,
        hub: &'a Shared,
        entry: Entry,
    ) -> LogFuture<'a, Result<Published, PublishError>> {
        Box::pin(self.publish(hub, entry))
    }

    fn is_ready(&self) -> bool {
        self.reader.is_current()
    }

    fn health(&self) -> crate::metrics::LogHealth {
        let (is_reading, since_last_read) = self.reader.read_health();
        crate::metrics::LogHealth {
            backend: "cluster",
            is_ready: self.is_ready(),
            redis_reachable: Some(is_reading),
            since_last_read,
            ..Default::default()
        }
    }

    fn start(self: Arc<Self>, hub: Weak<Shared>, shutdown: CancellationToken) {
        let history_len = self.max_len;
        tokio::spawn(reader::read_loop(
            self.clone(),
            hub.clone(),
            history_len,
            shutdown.clone(),
        ));
        if self.presence.is_enabled() {
            tokio::spawn(presence::listen_loop(
                self.clone(),
                hub.clone(),
                shutdown.clone(),
            ));
        }
        tokio::spawn(registry::report_loop(self, hub, shutdown));
    }

    fn catch_up(&self, last_event_id: &str) -> Option<LogFuture<'static, ()>> {
        self.reader.catch_up(last_event_id)
    }

    fn opening_wait(&self) -> Option<LogFuture<'static, ()>> {
        self.reader.first_contact_wait()
    }

    fn node_id(&self) -> &str {
        self.registry.node_id()
    }

    fn claim_client_id<'a>(
        &'a self,
        id: &'a str,
        owner: &'a str,
    ) -> LogFuture<'a, Result<bool, LogError>> {
        Box::pin(async move { Ok(self.claim(id, owner).await?) })
    }

    fn client_changed(&self, change: &dyn Fn() -> RegistryChange) {
        self.registry.client_changed(change());
    }

    fn node_stats(&self) -> LogFuture<'_, Result<Option<Vec<NodeStats>>, LogError>> {
        Box::pin(async move { Ok(Some(self.registry.node_stats(&self.redis).await?)) })
    }

    fn node_clients(&self) -> LogFuture<'_, Result<Option<Vec<NodeClients>>, LogError>> {
        Box::pin(async move { Ok(Some(self.registry.node_clients(&self.redis).await?)) })
    }

    fn presence_report<'a>(
        &'a self,
        drained: &'a Drained,
    ) -> Option<LogFuture<'a, Result<Vec<PresenceChange>, LogError>>> {
        Some(Box::pin(async move {
            Ok(self
                .presence
                .report(&self.redis, self.registry.node_id(), drained)
                .await?)
        }))
    }

    fn presence_needs_full(&self) -> bool {
        self.presence.take_needs_full()
    }

    fn presence_of<'a>(
        &'a self,
        channel: &'a ChannelName,
    ) -> Option<LogFuture<'a, Result<Presence, LogError>>> {
        Some(Box::pin(async move {
            Ok(presence::presence_of(&self.redis, channel).await?)
        }))
    }
}
