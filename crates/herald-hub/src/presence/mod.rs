//! Presence: who is on a channel (users and their connection counts), and the `join` and `leave`
//! events subscribers may ask for.
//!
//! Owns the public shapes ([`Presence`], [`PresenceChange`]), the one seam where a change is
//! produced for the application ([`PresenceSink`]), the wire form of `join` and `leave`, and the
//! roster that counts and coalesces (`roster`). It never touches a socket, never holds the hub's
//! lock itself (the hub's `hub/presence.rs` does) and never writes to history: presence events
//! describe the present, so replaying yesterday's joins to a client that resumes would be wrong,
//! and the list is one request away (`GET /api/channels/{channel}/presence`).
//!
//! # Coalescing
//! A user's presence on a channel changes only when their first connection to it opens or their
//! last one ends, and subscribers hear it at the next tick ([`PRESENCE_TICK`]), every channel's
//! changes of the tick in one write. A leave is held back for the linger
//! ([`crate::PresenceConfig::linger`]) and cancelled by a rejoin, so a reconnect storm (every
//! client of a node back within a few seconds) sends no event at all.

mod roster;

pub(crate) use roster::{Count, Drained, Roster};

use crate::{channel::ChannelName, wire};
use bytes::{Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use std::{
    fmt,
    sync::{Arc, RwLock},
    time::Duration,
};

/// How often joins and leaves are sent (each tick batches a channel's changes into one write).
pub const PRESENCE_TICK: Duration = Duration::from_millis(500);

/// Who is on a channel: the answer of `GET /api/channels/{channel}/presence` and
/// [`crate::Hub::presence`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Presence {
    /// The channel asked about.
    pub channel: ChannelName,
    /// Users on the channel, by name: each with a connection, or whose `leave` is held back
    /// for the linger (listed with no connection, as `join` / `leave` subscribers see them).
    pub users: Vec<PresenceUser>,
    /// Connections without a user (counted, never listed).
    pub anonymous: u64,
    /// Every connection on the channel, anonymous ones included.
    pub connections: u64,
}

/// One user on a channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceUser {
    /// The user's id (a token's `sub`).
    pub user: String,
    /// The user's connections on the channel (tabs, devices; across the cluster).
    pub connections: u64,
}

/// Whether a user came or went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PresenceKind {
    /// The user's first connection to the channel opened.
    Join,
    /// The user's last connection to the channel ended (and the linger passed).
    Leave,
}

impl PresenceKind {
    /// The SSE event name: `join` or `leave`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Join => "join",
            Self::Leave => "leave",
        }
    }
}

/// A user joined or left a channel, after coalescing. In a cluster, each change is produced
/// once, on one node, whichever node the connections were on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceChange {
    /// The channel joined or left.
    pub channel: ChannelName,
    /// The user who came or went (anonymous connections never produce a change).
    pub user: String,
    /// Whether they came or went.
    pub kind: PresenceKind,
    /// The user's connections on the channel as the change was produced (0 on a leave).
    pub connections: u32,
}

/// Application code told of every presence change (webhooks, audit). Called on the hub's
/// presence task, with no lock held: keep it short and never block (queue the work).
pub trait PresenceSink: Send + Sync + 'static {
    /// A user joined or left a channel. Default: nothing.
    fn changed(&self, _change: &PresenceChange) {}
}

/// The sink a hub starts with.
struct NoSink;

impl PresenceSink for NoSink {}

/// The hub's one sink, replaceable.
pub(crate) struct SinkSlot(RwLock<Arc<dyn PresenceSink>>);

impl Default for SinkSlot {
    fn default() -> Self {
        Self(RwLock::new(Arc::new(NoSink)))
    }
}

impl fmt::Debug for SinkSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SinkSlot")
    }
}

impl SinkSlot {
    pub(crate) fn set(&self, sink: Arc<dyn PresenceSink>) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = sink;
    }

    /// Hands every change to the sink: the one place a presence change leaves the engine.
    pub(crate) fn emit(&self, changes: &[PresenceChange]) {
        if changes.is_empty() {
            return;
        }
        let sink = self.0.read().unwrap_or_else(|p| p.into_inner()).clone();
        for change in changes {
            sink.changed(change);
        }
    }
}

/// Why presence could not be answered.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PresenceError {
    /// The channel keeps no presence (presence is off).
    #[error("channel {0} keeps no presence")]
    Disabled(ChannelName),
    /// The cluster's presence (in Redis) cannot be read now.
    #[error("presence is unavailable")]
    Unavailable(#[source] crate::log::LogError),
}

/// The `data:` of a `join` or `leave` event.
#[derive(Serialize)]
struct EventData<'a> {
    channel: &'a ChannelName,
    user: &'a str,
    connections: u32,
}

/// Encodes `changes` (all of one channel) once, as one block of `join` / `leave` events without
/// `id:` (they are kept in no history, and a resume position must name history).
pub(crate) fn encode(changes: &[&PresenceChange]) -> Bytes {
    let mut buf = BytesMut::new();
    for change in changes {
        let data = serde_json::to_string(&EventData {
            channel: &change.channel,
            user: &change.user,
            connections: change.connections,
        })
        .expect("presence data is plain data and always serializes");
        buf.extend_from_slice(&wire::encode_event(None, Some(change.kind.as_str()), &data));
    }
    buf.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_carry_no_id_and_escape_the_user() {
        let change = PresenceChange {
            channel: ChannelName::new("room").expect("valid"),
            user: "ann\nevent: x".to_owned(),
            kind: PresenceKind::Join,
            connections: 2,
        };
        let bytes = encode(&[&change]);
        assert_eq!(
            std::str::from_utf8(&bytes).expect("utf-8"),
            "event: join\ndata: {\"channel\":\"room\",\"user\":\"ann\\nevent: x\",\"connections\":2}\n\n"
        );
    }
}
