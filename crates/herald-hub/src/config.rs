//! The hub's settings, with the defaults a production user can keep.
//!
//! Owns only values and their defaults; it never reads files, flags or the environment (the binary
//! does that) and never starts anything.

use crate::namespace::{NamespaceConfig, NamespaceError, Namespaces};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Default `retry:` sent to every new stream: 3 s.
pub const RETRY_INTERVAL_DEFAULT: Duration = Duration::from_millis(3000);
/// Default heartbeat period: 15 s, under the 30 to 60 s idle timeouts of common proxies.
pub const HEARTBEAT_INTERVAL_DEFAULT: Duration = Duration::from_secs(15);
/// Default per-connection queue capacity, in events.
pub const QUEUE_CAPACITY_DEFAULT: usize = 1024;
/// Default history length, in events.
pub const HISTORY_LEN_MAX_DEFAULT: usize = 100_000;
/// Default history size, in bytes of encoded events (64 MiB).
pub const HISTORY_BYTES_MAX_DEFAULT: usize = 64 * 1024 * 1024;
/// Default history age: one hour.
pub const HISTORY_AGE_MAX_DEFAULT: Duration = Duration::from_secs(3600);
/// Default time a departed client's id still accepts events for its return: 5 minutes.
pub const CLIENT_LINGER_DEFAULT: Duration = Duration::from_secs(300);
/// Default most live connections of one user: 5 (a few browser tabs and a phone).
pub const CONNECTIONS_PER_USER_MAX_DEFAULT: usize = 5;
/// Default time a user's leave is held back, cancelled by a rejoin: 5 s (a reconnect storm
/// comes back within the `retry:` interval, 3 s by default).
pub const PRESENCE_LINGER_DEFAULT: Duration = Duration::from_secs(5);
/// Default time after which a silent cluster node's connections leave every channel: 30 s.
pub const PRESENCE_NODE_TIMEOUT_DEFAULT: Duration = Duration::from_secs(30);

/// Everything that shapes a [`crate::Hub`]'s behaviour.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HubConfig {
    /// The `retry:` field that opens every stream: how long a browser waits before reconnecting.
    /// Default [`RETRY_INTERVAL_DEFAULT`].
    #[serde(with = "humantime_serde")]
    pub retry_interval: Duration,
    /// How often every connection gets a `: heartbeat` comment, so proxies keep idle streams and dead
    /// peers are found. Zero turns heartbeats off. Default [`HEARTBEAT_INTERVAL_DEFAULT`].
    #[serde(with = "humantime_serde")]
    pub heartbeat_interval: Duration,
    /// Events a connection may have queued and not yet written. A connection that falls further
    /// behind is closed with a final comment and resumes from history. Default
    /// [`QUEUE_CAPACITY_DEFAULT`].
    pub queue_capacity: usize,
    /// How much history the hub keeps for resume and polling.
    pub history: HistoryConfig,
    /// How long after a connection ends its client id still takes events addressed to it (they
    /// wait in history for its return with `clientId` and `Last-Event-ID`). Default
    /// [`CLIENT_LINGER_DEFAULT`].
    #[serde(with = "humantime_serde")]
    pub client_linger: Duration,
    /// Most live connections one user (`ClientOptions::user`) may hold. A new connection beyond it
    /// closes that user's oldest, as a new browser tab would expect; 0 turns the limit off.
    /// Connections without a user are not counted. Default [`CONNECTIONS_PER_USER_MAX_DEFAULT`].
    pub max_connections_per_user: usize,
    /// Channels that get their own series in [`crate::Hub::metrics`] (and `/metrics`). Only listed
    /// channels do, so the number of series stays bounded whatever publishers do. Default none.
    pub metrics_channels: Vec<String>,
    /// Who is on a channel, and join and leave events for subscribers who ask for them.
    pub presence: PresenceConfig,
    /// Rules per channel prefix (history, access, presence, subscriber limit); a channel takes
    /// the first that matches, else the default namespace, whose rules are the settings above.
    /// Check them with [`HubConfig::namespaces`]. Default none.
    pub namespaces: Vec<NamespaceConfig>,
}

impl HubConfig {
    /// The namespaces compiled, the default one built from `history`.
    ///
    /// # Errors
    /// [`NamespaceError`] for the first bad rule.
    pub fn namespaces(&self) -> Result<Namespaces, NamespaceError> {
        Namespaces::compile(&self.namespaces, &self.history)
    }
}

impl Default for HubConfig {
    fn default() -> Self {
        Self {
            retry_interval: RETRY_INTERVAL_DEFAULT,
            heartbeat_interval: HEARTBEAT_INTERVAL_DEFAULT,
            queue_capacity: QUEUE_CAPACITY_DEFAULT,
            history: HistoryConfig::default(),
            client_linger: CLIENT_LINGER_DEFAULT,
            max_connections_per_user: CONNECTIONS_PER_USER_MAX_DEFAULT,
            metrics_channels: Vec::new(),
            presence: PresenceConfig::default(),
            namespaces: Vec::new(),
        }
    }
}

/// Bounds of the event history: an event leaves when any bound is passed, oldest first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HistoryConfig {
    /// Most events kept. Default [`HISTORY_LEN_MAX_DEFAULT`].
    pub max_events: usize,
    /// Most bytes kept, counting each event's encoded frame and payload. Default
    /// [`HISTORY_BYTES_MAX_DEFAULT`].
    pub max_bytes: usize,
    /// Oldest event kept. Default [`HISTORY_AGE_MAX_DEFAULT`].
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
}

impl Default for HistoryConfig {
    fn default() -> Self {
        Self {
            max_events: HISTORY_LEN_MAX_DEFAULT,
            max_bytes: HISTORY_BYTES_MAX_DEFAULT,
            max_age: HISTORY_AGE_MAX_DEFAULT,
        }
    }
}

/// Presence: who is on a channel (see `docs/presence.md`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PresenceConfig {
    /// Whether channels keep presence (the users on them and their connection counts) and send
    /// `join` and `leave` to subscribers who ask. Default off: presence costs a count per user and
    /// channel, and in a cluster a few Redis commands per tick.
    pub enabled: bool,
    /// How long a user's leave is held back after their last connection to a channel ends; a
    /// connection of theirs coming back within it cancels both the leave and the join. Default
    /// [`PRESENCE_LINGER_DEFAULT`].
    #[serde(with = "humantime_serde")]
    pub linger: Duration,
    /// In a cluster: how long a node may miss its presence heartbeats before the other nodes take
    /// it for dead and its connections leave. Default [`PRESENCE_NODE_TIMEOUT_DEFAULT`].
    #[serde(with = "humantime_serde")]
    pub node_timeout: Duration,
}

impl Default for PresenceConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            linger: PRESENCE_LINGER_DEFAULT,
            node_timeout: PRESENCE_NODE_TIMEOUT_DEFAULT,
        }
    }
}
