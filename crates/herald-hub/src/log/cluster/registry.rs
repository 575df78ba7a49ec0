//! The cluster's registry of live nodes: each node's stats and clients, refreshed once a second,
//! so any node can answer for the whole cluster.
//!
//! Owns the registry keys in Redis and this node's queue of client changes (bounded; an overflow
//! rewrites the node's whole list at the next refresh). It never touches the event log.

use super::{ClusterError, ClusterLog, Redis, Request};
use crate::{
    history::unix_ms,
    hub::{Hub, Shared},
    log::{NodeClients, NodeStats, RegistryChange},
};
use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Weak,
    },
    time::Duration,
};
use tokio::sync::{mpsc, Mutex};
use tokio_util::sync::CancellationToken;

/// How often a node refreshes its entry in the node registry.
const NODE_REFRESH_INTERVAL: Duration = Duration::from_secs(1);
/// A node missing refreshes for this long is taken for dead.
const NODE_TTL: Duration = Duration::from_secs(5);
/// Most client registry changes waiting for the next refresh; past it, the next refresh rewrites
/// the node's whole list.
const REGISTRY_CHANGES_MAX: usize = 65_536;

/// This node's side of the registry.
#[derive(Debug)]
pub(super) struct Registry {
    node_id: String,
    /// Client registry changes waiting for the next refresh (bounded; see `client_changed`).
    changes_tx: mpsc::Sender<RegistryChange>,
    changes_rx: Mutex<mpsc::Receiver<RegistryChange>>,
    /// The next refresh must rewrite this node's whole client list (at start, after a failed
    /// refresh, or when changes overflowed).
    needs_resync: AtomicBool,
}

fn ttl_ms() -> u64 {
    u64::try_from(NODE_TTL.as_millis()).unwrap_or(u64::MAX)
}

impl Registry {
    pub(super) fn new(node_id: String) -> Self {
        let (changes_tx, changes_rx) = mpsc::channel(REGISTRY_CHANGES_MAX);
        Self {
            node_id,
            changes_tx,
            changes_rx: Mutex::new(changes_rx),
            needs_resync: AtomicBool::new(true),
        }
    }

    pub(super) fn node_id(&self) -> &str {
        &self.node_id
    }

    /// Queues a change to this node's entry in the client registry for the next refresh. If too
    /// many are waiting, the next refresh rewrites the whole list instead.
    pub(super) fn client_changed(&self, change: RegistryChange) {
        if self.changes_tx.try_send(change).is_err() {
            self.needs_resync.store(true, Ordering::Relaxed);
        }
    }

    fn clients_key(redis: &Redis, node: &str) -> String {
        redis.key(&format!("node:{node}:clients"))
    }

    /// Reports this node: its stats, and the client changes queued since the last refresh
    /// (`HSET`/`HDEL` on the node's hash), or the whole list (`all_clients`) after a failure or an
    /// overflow. One atomic pipeline, whatever the number of connections.
    async fn refresh(
        &self,
        redis: &Redis,
        stats: &serde_json::Value,
        all_clients: impl FnOnce() -> Vec<(String, String)>,
        binding_ttl_ms: u64,
    ) -> Result<(), ClusterError> {
        let node = &self.node_id;
        let now_ms = unix_ms();
        let nodes_key = redis.key("nodes");
        let clients_key = Self::clients_key(redis, node);
        let mut changes = Vec::new();
        {
            let mut changes_rx = self.changes_rx.lock().await;
            while let Ok(change) = changes_rx.try_recv() {
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
            .arg(now_ms.saturating_sub(ttl_ms()))
            .ignore()
            .cmd("SET")
            .arg(redis.key(&format!("node:{node}:stats")))
            .arg(stats.to_string())
            .arg("PX")
            .arg(ttl_ms())
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
                        // The id's owner binding runs from its departure (linger, history age).
                        pipe.cmd("PEXPIRE")
                            .arg(redis.key(&format!("owner:{id}")))
                            .arg(binding_ttl_ms)
                            .ignore();
                        pipe.cmd("HDEL").arg(&clients_key).arg(id).ignore()
                    }
                };
            }
        }
        pipe.cmd("PEXPIRE").arg(&clients_key).arg(ttl_ms()).ignore();
        let result = redis.run::<()>(&Request::Pipe(pipe)).await;
        if result.is_err() {
            self.needs_resync.store(true, Ordering::Relaxed);
        }
        result
    }

    /// The nodes that reported in the last few seconds.
    async fn live_nodes(&self, redis: &Redis) -> Result<Vec<String>, ClusterError> {
        let min = unix_ms().saturating_sub(ttl_ms());
        let mut range = redis::cmd("ZRANGEBYSCORE");
        range.arg(redis.key("nodes")).arg(min).arg("+inf");
        redis.run(&Request::Cmd(range)).await
    }

    /// Every live node's stats, as they last reported them.
    pub(super) async fn node_stats(&self, redis: &Redis) -> Result<Vec<NodeStats>, ClusterError> {
        let nodes = self.live_nodes(redis).await?;
        if nodes.is_empty() {
            return Ok(Vec::new());
        }
        let mut get = redis::cmd("MGET");
        for node in &nodes {
            get.arg(redis.key(&format!("node:{node}:stats")));
        }
        let stats: Vec<Option<String>> = redis.run(&Request::Cmd(get)).await?;
        Ok(nodes
            .into_iter()
            .zip(stats)
            .map(|(node, stats)| {
                let stats = stats
                    .and_then(|t| serde_json::from_str(&t).ok())
                    .unwrap_or_default();
                (node, stats)
            })
            .collect())
    }

    /// Every live node's clients (as JSON documents), by node.
    pub(super) async fn node_clients(
        &self,
        redis: &Redis,
    ) -> Result<Vec<NodeClients>, ClusterError> {
        let mut all = Vec::new();
        for node in self.live_nodes(redis).await? {
            let mut values = redis::cmd("HVALS");
            values.arg(Self::clients_key(redis, &node));
            let clients: Vec<String> = redis.run(&Request::Cmd(values)).await?;
            let clients = clients
                .iter()
                .filter_map(|c| serde_json::from_str(c).ok())
                .collect();
            all.push((node, clients));
        }
        Ok(all)
    }

    /// Whether any live node has a connection with this client id.
    pub(super) async fn has_client(&self, redis: &Redis, id: &str) -> Result<bool, ClusterError> {
        for node in self.live_nodes(redis).await? {
            let mut exists = redis::cmd("HEXISTS");
            exists.arg(Self::clients_key(redis, &node)).arg(id);
            if redis.run::<bool>(&Request::Cmd(exists)).await? {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

/// Reports this node's stats and clients to the registry, once a second.
pub(super) async fn report_loop(
    log: Arc<ClusterLog>,
    hub: Weak<Shared>,
    shutdown: CancellationToken,
) {
    let mut ticker = tokio::time::interval(NODE_REFRESH_INTERVAL);
    let mut bindings_refreshed_at = std::time::Instant::now();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let Some(shared) = hub.upgrade() else {
            return;
        };
        let hub = Hub::from_shared(shared);
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
        let binding_ttl_ms = ClusterLog::ms(log.binding_ttl);
        let refreshed = log
            .registry
            .refresh(&log.redis, &stats, all_clients, binding_ttl_ms)
            .await;
        if let Err(err) = refreshed {
            tracing::debug!(error = %err, "could not report to the cluster registry");
        }
        if bindings_refreshed_at.elapsed() >= log.binding_ttl / 4 {
            // Live connections keep their client ids bound however long they last.
            let mut pipe = redis::pipe();
            let clients = hub.clients();
            for info in &clients {
                pipe.cmd("PEXPIRE")
                    .arg(log.redis.key(&format!("owner:{}", info.id)))
                    .arg(binding_ttl_ms)
                    .ignore();
            }
            if clients.is_empty() || log.redis.run::<()>(&Request::Pipe(pipe)).await.is_ok() {
                bindings_refreshed_at = std::time::Instant::now();
            }
        }
        drop(hub);
    }
}
