//! Questions about the hub: its connections, channels and counters, on this node or across the
//! cluster.
//!
//! Owns the shapes the admin API shows ([`ClientInfo`], [`ChannelInfo`], [`Stats`]). Each answer is
//! built under one short lock, or from the log's registry for cluster-wide answers. It never
//! changes anything.

use super::Hub;
use crate::{channel::ChannelName, client::ClientShared, log::LogError};
use serde::Serialize;
use std::collections::BTreeMap;

/// A connection as the admin API shows it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ClientInfo {
    /// Client id.
    pub id: crate::event::ClientId,
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
    /// What the webhook sender has done (queued, delivered, retried, failed, dropped).
    pub webhooks: crate::WebhookMetrics,
}

/// What history holds now.
#[derive(Debug, Clone, Serialize)]
pub struct HistoryStats {
    /// Events in history.
    pub events: usize,
    /// Bytes accounted to history: every byte its records hold (frames, names, bookkeeping).
    pub bytes: usize,
}

/// A connection as [`ClientInfo`] shows it, on `channels`.
pub(super) fn info_of(client: &ClientShared, mut channels: Vec<ChannelName>) -> ClientInfo {
    channels.sort();
    ClientInfo {
        id: client.id.clone(),
        channels,
        user: client.user.as_deref().map(str::to_owned),
        connected_at: humantime::format_rfc3339_millis(client.connected_at).to_string(),
        remote_addr: client.remote_addr.map(|a| a.to_string()),
    }
}

fn sorted(mut clients: Vec<ClientInfo>) -> Vec<ClientInfo> {
    clients.sort_by(|a, b| {
        a.connected_at
            .cmp(&b.connected_at)
            .then_with(|| a.id.cmp(&b.id))
    });
    clients
}

impl Hub {
    /// Every live connection.
    pub fn clients(&self) -> Vec<ClientInfo> {
        let state = self.state();
        sorted(
            state
                .fanout
                .entries()
                .map(|e| info_of(&e.client, e.channels.clone()))
                .collect(),
        )
    }

    /// The live connections subscribed to `channel`.
    pub fn clients_by_channel(&self, channel: &ChannelName) -> Vec<ClientInfo> {
        let state = self.state();
        sorted(
            state
                .fanout
                .subscribers(channel)
                .map(|e| info_of(&e.client, e.channels.clone()))
                .collect(),
        )
    }

    /// Who holds client id `id`: `Some(user)` while a connection has it, or had it less than
    /// [`crate::HubConfig::client_linger`] ago (events sent to it wait for its return); `None`
    /// when the id is free. Lets an application refuse a client id another user holds.
    pub fn client_id_holder(&self, id: &crate::event::ClientId) -> Option<Option<String>> {
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
    pub fn get_client(&self, id: &crate::event::ClientId) -> Option<ClientInfo> {
        self.state()
            .fanout
            .get_by_id(id)
            .map(|e| info_of(&e.client, e.channels.clone()))
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
        let counters = &self.shared.counters;
        Stats {
            node: self.shared.log.node_id().to_owned(),
            connections: state.fanout.len(),
            connections_by_channel: state
                .fanout
                .channel_counts()
                .map(|(c, n)| (c.clone(), n))
                .collect(),
            oldest_connection: oldest.map(|e| info_of(&e.client, e.channels.clone())),
            events_published: counters.published_accepted(),
            events_delivered: counters.delivered_total(),
            connections_closed: self.connections_closed(),
            uptime_seconds: self.shared.started_at.elapsed().as_secs(),
            history: HistoryStats {
                events: state.history.len(),
                bytes: state.history.bytes(),
            },
            webhooks: counters.webhook_metrics(),
        }
    }

    /// This hub's stats summed over every live node of its cluster, with each node's own stats
    /// under `nodes`; a standalone hub answers for itself. Nodes report once a second, so the
    /// figures are up to about a second old.
    ///
    /// # Errors
    /// [`LogError`] when the cluster's registry cannot be read.
    pub async fn cluster_stats(&self) -> Result<serde_json::Value, LogError> {
        let reports = match self.shared.log.node_stats().await? {
            Some(reports) => reports,
            None => vec![(
                self.shared.log.node_id().to_owned(),
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
            "node": self.shared.log.node_id(),
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
    /// [`LogError`] when the cluster's registry cannot be read.
    pub async fn cluster_clients(&self) -> Result<Vec<serde_json::Value>, LogError> {
        let reports = match self.shared.log.node_clients().await? {
            Some(reports) => reports,
            None => {
                let clients = self
                    .clients()
                    .iter()
                    .filter_map(|c| serde_json::to_value(c).ok())
                    .collect();
                vec![(self.shared.log.node_id().to_owned(), clients)]
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
}
