//! The one stored form of an event, shared by the durable log (a redb row) and the cluster log (a
//! Redis Stream entry), so both encodings read and write the same JSON.
//!
//! Owns the conversion between a [`Record`] or an event being published and that form. It never
//! writes anywhere itself.

use crate::{
    channel::ChannelName,
    event::{ClientId, EventData, NewEvent},
    log::Entry,
    record::{Audience, Record, RecordKind, Target},
};
use serde::{Deserialize, Serialize};

/// One event as a log stores it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct StoredEntry {
    /// The id subscribers see: always set in the durable log; in the cluster log only the
    /// publisher's id (`None`: the stream entry id is the event id; the entry's `w` field says
    /// whether the publisher's id is the wire id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) id: Option<String>,
    /// Durable log only: the publisher's id when it is not `id` (another event had it on the
    /// wire), so idempotency still holds after a restart.
    #[serde(default, rename = "pid", skip_serializing_if = "Option::is_none")]
    pub(crate) publisher_id: Option<String>,
    pub(crate) target: StoredTarget,
    /// `Some(has_final_event)` for a channel's closing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) close: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) event: Option<String>,
    pub(crate) data: String,
    #[serde(default)]
    pub(crate) is_json: bool,
    /// Connections it was queued to on the node that recorded it (durable log only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) recipients: Option<u32>,
    /// When it was published (durable log only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) published_unix_ms: Option<u64>,
    /// Readable only by granted topic-selecting connections (Mercure's `private`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(crate) private: bool,
    /// A `retry:` field sent with the event, in ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) retry: Option<u64>,
}

/// A [`Target`] as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum StoredTarget {
    /// Read with the topic rule: a log holds what either API published.
    Channels(#[serde(deserialize_with = "crate::channel::deserialize_stored")] Vec<ChannelName>),
    Client(String),
    All,
}

impl StoredTarget {
    fn from_target(target: &Target) -> Self {
        match target {
            Target::Channels(channels) => Self::Channels(channels.clone()),
            Target::Client(id) => Self::Client(id.as_str().to_owned()),
            Target::All => Self::All,
        }
    }

    fn from_audience(audience: &Audience) -> Self {
        match audience {
            Audience::Client(id) => Self::Client(id.as_str().to_owned()),
            Audience::All => Self::All,
            channels => Self::Channels(channels.channels().to_vec()),
        }
    }

    /// `None` when a stored client id is not a valid one (the entry was not written by Herald).
    fn into_target(self) -> Option<Target> {
        Some(match self {
            Self::Channels(channels) => Target::Channels(channels),
            Self::Client(id) => Target::Client(ClientId::new(&id).ok()?),
            Self::All => Target::All,
        })
    }
}

impl StoredEntry {
    /// An event being published, as the cluster log appends it.
    pub(crate) fn from_entry(entry: &Entry) -> Self {
        Self {
            id: entry.event.id.clone(),
            publisher_id: None,
            target: StoredTarget::from_target(&entry.target),
            close: entry.kind.close_flag(),
            event: entry.event.event.clone(),
            data: entry.event.data.as_str().to_owned(),
            is_json: entry.event.data.is_json(),
            recipients: None,
            published_unix_ms: None,
            private: entry.event.private,
            retry: entry.event.retry,
        }
    }

    /// A record of history, as the durable log writes it.
    pub(crate) fn from_record(
        record: &Record,
        publisher_id: Option<&str>,
        published_unix_ms: u64,
    ) -> Self {
        Self {
            id: Some(record.id().to_owned()),
            publisher_id: publisher_id.map(str::to_owned),
            target: StoredTarget::from_audience(&record.audience),
            close: record.kind().close_flag(),
            event: record.event().map(str::to_owned),
            data: record.data().into_owned(),
            is_json: record.is_json(),
            recipients: Some(record.recipients),
            published_unix_ms: Some(published_unix_ms),
            private: record.is_private(),
            retry: record.retry(),
        }
    }

    /// The event to apply; `None` when the stored target is invalid.
    pub(crate) fn into_entry(self) -> Option<Entry> {
        Some(Entry {
            target: self.target.into_target()?,
            kind: RecordKind::from_close_flag(self.close),
            event: NewEvent {
                event: self.event,
                data: EventData::restore(self.data, self.is_json),
                id: self.id,
                private: self.private,
                retry: self.retry,
            },
            log_id: None,
            is_publisher_id_on_wire: false,
        })
    }
}
