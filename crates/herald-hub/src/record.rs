//! One event as history holds it, laid out once: the encoded frame is the only copy of its id, name
//! and data.
//!
//! Owns the record's layout and what can be read back from it (id, name, data, kind, target) and
//! what it costs ([`Record::cost_bytes`]). A record is built once, when history takes an event, and
//! never changes after. It never decides retention (`history` does) and never fans out.
//!
//! Layout (64-bit): `seq` 8 B, `frame` 32 B, `target` 24 B, publish time 8 B, `recipients` 4 B,
//! id length 2 B, name length 1 B, flags 1 B: 80 B, plus the frame's bytes (packed with other
//! frames by history, or an allocation of exactly its length) and one slot of the id index. The
//! frame is `id: {id}\n[event: {name}\n]data: …\n\n`, so the id starts at byte 4 and the rest
//! follows from the lengths.

use crate::{
    channel::ChannelName,
    event::{ClientId, EventData},
    history::packed_overhead_bytes,
    wire,
};
use bytes::Bytes;
use std::borrow::Cow;

/// Most distinct channels one publish may name (duplicates are removed first). Every channel
/// name a record holds is kept and indexed in history, so the count is bounded here.
pub const PUBLISH_CHANNELS_MAX: usize = 64;

/// Who an event is addressed to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// Every connection subscribed to any of these channels (de-duplicated per connection).
    /// At most [`PUBLISH_CHANNELS_MAX`] distinct channels.
    Channels(Vec<ChannelName>),
    /// One connection, by client id.
    Client(ClientId),
    /// Every connection, whatever its channels.
    All,
}

/// A [`Target`] as a record keeps it: one channel needs no list of its own. Channels are sorted
/// and de-duplicated, so two publishes to the same set have equal audiences (the scope of a
/// publisher id).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Audience {
    /// One channel.
    Channel(ChannelName),
    /// Several channels.
    Channels(Box<[ChannelName]>),
    /// One connection, by client id.
    Client(ClientId),
    /// Every connection.
    All,
}

impl Audience {
    pub(crate) fn from_target(target: Target) -> Self {
        match target {
            Target::Channels(mut channels) if channels.len() == 1 => {
                Self::Channel(channels.pop().expect("one channel"))
            }
            Target::Channels(mut channels) => {
                channels.sort_unstable();
                channels.dedup();
                if channels.len() == 1 {
                    return Self::Channel(channels.pop().expect("one channel"));
                }
                Self::Channels(channels.into_boxed_slice())
            }
            Target::Client(id) => Self::Client(id),
            Target::All => Self::All,
        }
    }

    /// The channels addressed; empty for a client or everyone.
    pub(crate) fn channels(&self) -> &[ChannelName] {
        match self {
            Self::Channel(channel) => std::slice::from_ref(channel),
            Self::Channels(channels) => channels,
            Self::Client(_) | Self::All => &[],
        }
    }

    /// Whether a reader with this client id (`None` for a poll) and these channels is addressed,
    /// and on which channel (`None` for a client or everyone). Resume and polling share this rule.
    pub(crate) fn matches<'a>(
        &'a self,
        client: Option<&ClientId>,
        channels: &[ChannelName],
    ) -> Option<Option<&'a ChannelName>> {
        match self {
            Self::Channel(_) | Self::Channels(_) => self
                .channels()
                .iter()
                .find(|c| channels.contains(c))
                .map(Some),
            Self::Client(id) => (Some(id) == client).then_some(None),
            Self::All => Some(None),
        }
    }

    /// Bytes this audience holds, and its entries in history's per-channel index: its pointer
    /// in a list and its index slot per channel. The channel names are shared by every record
    /// of the channel (history interns them), so history counts each once, with its index
    /// entry ([`channel_entry_cost_bytes`]).
    fn cost_bytes(&self) -> usize {
        match self {
            Self::Channel(_) => CHANNEL_INDEX_SLOT_BYTES,
            Self::Channels(channels) => {
                LIST_ALLOCATION_BYTES
                    + channels.len()
                        * (std::mem::size_of::<ChannelName>() + CHANNEL_INDEX_SLOT_BYTES)
            }
            Self::Client(id) => id.as_str().len() + NAME_ALLOCATION_BYTES,
            Self::All => CHANNEL_INDEX_SLOT_BYTES,
        }
    }
}

/// What a record stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RecordKind {
    /// An ordinary event.
    Event,
    /// The end of a channel, with or without a final event subscribers receive.
    Close { has_final_event: bool },
}

impl RecordKind {
    /// The kind from its stored form: `None` for an event, `Some(has_final_event)` for a close.
    pub(crate) fn from_close_flag(close: Option<bool>) -> Self {
        match close {
            None => Self::Event,
            Some(has_final_event) => Self::Close { has_final_event },
        }
    }

    /// The stored form of the kind; see [`RecordKind::from_close_flag`].
    pub(crate) fn close_flag(self) -> Option<bool> {
        match self {
            Self::Event => None,
            Self::Close { has_final_event } => Some(has_final_event),
        }
    }
}

const FLAG_JSON: u8 = 1;
const FLAG_CLOSE: u8 = 2;
const FLAG_FINAL_EVENT: u8 = 4;
const FLAG_PUBLISHER_ID: u8 = 8;
const FLAG_PRIVATE: u8 = 16;
const FLAG_RETRY: u8 = 32;
/// The frame is a slice of a block of frames (see `history`), not an allocation of its own.
const FLAG_PACKED: u8 = 64;
/// The wire id is this history's position id for `seq`: history finds it without its id index.
const FLAG_POSITION_ID: u8 = 128;
/// What precedes a `retry:` field at the end of a frame's data.
const RETRY_FIELD: &str = "\nretry: ";

/// Bytes of the id index one record takes (its slot and control byte, at the table's load).
const INDEX_SLOT_BYTES: usize = 16;
/// Bytes around one shared name (`Arc<str>`): its two counts and the allocator's header and
/// rounding.
const NAME_ALLOCATION_BYTES: usize = 32;
/// The allocator's header and rounding around a list of channels.
const LIST_ALLOCATION_BYTES: usize = 16;
/// One position in history's per-channel index (8 bytes, and the list's spare capacity).
const CHANNEL_INDEX_SLOT_BYTES: usize = 16;
/// Bytes the allocator and `Bytes` spend around a frame with an allocation of its own (header
/// and rounding: at most 23; the shared count `Bytes` allocates once it is cloned: 32).
const OWN_FRAME_OVERHEAD_BYTES: usize = 56;
/// One entry of history's per-channel index, beyond its name: the map's slot (key and list
/// header, at the map's load) and the list's allocation header.
const CHANNEL_ENTRY_BYTES: usize = 80;

/// Bytes one channel of history's per-channel index holds however many records name it: its
/// name, interned (one allocation shared by those records), and its entry in the index.
pub(crate) fn channel_entry_cost_bytes(channel: &ChannelName) -> usize {
    channel.as_str().len() + NAME_ALLOCATION_BYTES + CHANNEL_ENTRY_BYTES
}

/// One event of history: its position, its encoded frame and what fan-out and polling need.
#[derive(Clone, Debug)]
pub(crate) struct Record {
    /// Position in this node's history.
    pub(crate) seq: u64,
    /// `id: …\n[event: …\n]data: …\n\n`: the only copy of the id, the name and the data.
    frame: Bytes,
    pub(crate) audience: Audience,
    /// When it was published, in ms since its history's origin.
    pub(crate) published_ms: u64,
    /// Connections the event was queued to when it was published.
    pub(crate) recipients: u32,
    id_len: u16,
    event_len: u8,
    flags: u8,
}

/// An event about to become a record: everything but its position.
#[derive(Debug)]
pub(crate) struct Draft<'a> {
    /// The id subscribers see.
    pub(crate) id: &'a str,
    /// True when the publisher gave the event an id (`id` is that id or, when it is another
    /// event's wire id already, the position id).
    pub(crate) is_publisher_id: bool,
    pub(crate) event: Option<&'a str>,
    pub(crate) data: &'a EventData,
    pub(crate) kind: RecordKind,
    /// Readable only by topic-selecting connections granted one of its channels.
    pub(crate) is_private: bool,
    /// A `retry:` field sent with the event, in ms.
    pub(crate) retry: Option<u64>,
}

impl Draft<'_> {
    /// The exact length of this event's frame.
    pub(crate) fn frame_len(&self) -> usize {
        wire::event_frame_len(Some(self.id), self.event, self.data.as_str(), self.retry)
    }

    /// Appends this event's frame ([`Self::frame_len`] bytes) to `buf`.
    #[cfg(test)]
    pub(crate) fn put_frame(&self, buf: &mut bytes::BytesMut) {
        wire::put_event(
            buf,
            Some(self.id),
            self.event,
            self.data.as_str(),
            self.retry,
        );
    }
}

impl Record {
    /// Encodes `draft` once, into an allocation of its own (history packs small frames instead:
    /// `History::record`). The id and name must be valid (checked by `event`).
    pub(crate) fn new(seq: u64, draft: &Draft<'_>, audience: Audience, published_ms: u64) -> Self {
        let frame = wire::encode_event_with_retry(
            Some(draft.id),
            draft.event,
            draft.data.as_str(),
            draft.retry,
        );
        Self::with_frame(seq, draft, audience, published_ms, frame, false)
    }

    /// A record of `draft` whose frame is already encoded (`frame` holds exactly what
    /// [`Draft::put_frame`] writes); `is_packed` when it is a slice of a block of frames.
    pub(crate) fn with_frame(
        seq: u64,
        draft: &Draft<'_>,
        audience: Audience,
        published_ms: u64,
        frame: Bytes,
        is_packed: bool,
    ) -> Self {
        debug_assert_eq!(frame.len(), draft.frame_len());
        let mut flags = if is_packed { FLAG_PACKED } else { 0 };
        if draft.is_private {
            flags |= FLAG_PRIVATE;
        }
        if draft.retry.is_some() {
            flags |= FLAG_RETRY;
        }
        if draft.data.is_json() {
            flags |= FLAG_JSON;
        }
        if draft.is_publisher_id {
            flags |= FLAG_PUBLISHER_ID;
        }
        if let RecordKind::Close { has_final_event } = draft.kind {
            flags |= FLAG_CLOSE;
            if has_final_event {
                flags |= FLAG_FINAL_EVENT;
            }
        }
        Self {
            seq,
            frame,
            audience,
            published_ms,
            recipients: 0,
            id_len: u16::try_from(draft.id.len()).expect("event ids are at most 256 bytes"),
            event_len: draft.event.map_or(0, |e| {
                u8::try_from(e.len()).expect("event names are at most 128 bytes")
            }),
            flags,
        }
    }

    /// Whether the wire id is history's position id for this record (`{epoch}-{seq}`), found
    /// from the id itself rather than through the id index.
    pub(crate) fn is_position_id(&self) -> bool {
        self.flags & FLAG_POSITION_ID != 0
    }

    /// Says whether the wire id is history's position id for this record; see
    /// [`Self::is_position_id`]. Changes [`Self::cost_bytes`].
    pub(crate) fn set_position_id(&mut self, is_position_id: bool) {
        if is_position_id {
            self.flags |= FLAG_POSITION_ID;
        } else {
            self.flags &= !FLAG_POSITION_ID;
        }
    }

    /// Whether the frame is a slice of a block of frames rather than an allocation of its own.
    pub(crate) fn is_packed(&self) -> bool {
        self.flags & FLAG_PACKED != 0
    }

    /// The encoded frame, whatever the kind (a close without final event is never delivered).
    pub(crate) fn frame_bytes(&self) -> &[u8] {
        &self.frame
    }

    /// Takes `frame`, a packed copy of this record's frame, in place of its own allocation.
    pub(crate) fn set_packed_frame(&mut self, frame: Bytes) {
        debug_assert_eq!(frame, self.frame);
        self.frame = frame;
        self.flags |= FLAG_PACKED;
    }

    fn text(&self, range: std::ops::Range<usize>) -> &str {
        std::str::from_utf8(&self.frame[range]).expect("a frame is encoded from text")
    }

    /// The id subscribers see.
    pub(crate) fn id(&self) -> &str {
        self.text(4..4 + usize::from(self.id_len))
    }

    /// Whether the publisher gave the event an id (its wire id is that id, or the position id
    /// when another event in history already has it on the wire: see `History`).
    pub(crate) fn is_publisher_id(&self) -> bool {
        self.flags & FLAG_PUBLISHER_ID != 0
    }

    /// The event name; `None` is the default `message`.
    pub(crate) fn event(&self) -> Option<&str> {
        let start = 4 + usize::from(self.id_len) + 1 + "event: ".len();
        (self.event_len > 0).then(|| self.text(start..start + usize::from(self.event_len)))
    }

    fn data_start(&self) -> usize {
        let event = if self.event_len > 0 {
            "event: ".len() + usize::from(self.event_len) + 1
        } else {
            0
        };
        4 + usize::from(self.id_len) + 1 + event + "data: ".len()
    }

    /// The payload as published (line ends normalized to LF, as every subscriber reads them).
    pub(crate) fn data(&self) -> Cow<'_, str> {
        let mut body = self.text(self.data_start()..self.frame.len() - 2);
        if self.flags & FLAG_RETRY != 0 {
            // Every data line starts with `data: `, so the last `\nretry: ` is the field.
            body = body.rfind(RETRY_FIELD).map_or(body, |at| &body[..at]);
        }
        if body.contains('\n') {
            Cow::Owned(body.split("\ndata: ").collect::<Vec<_>>().join("\n"))
        } else {
            Cow::Borrowed(body)
        }
    }

    /// Whether only granted topic-selecting connections may read it.
    pub(crate) fn is_private(&self) -> bool {
        self.flags & FLAG_PRIVATE != 0
    }

    /// The `retry:` field sent with it, in ms.
    pub(crate) fn retry(&self) -> Option<u64> {
        if self.flags & FLAG_RETRY == 0 {
            return None;
        }
        let body = self.text(self.data_start()..self.frame.len() - 2);
        let at = body.rfind(RETRY_FIELD)?;
        body[at + RETRY_FIELD.len()..].parse().ok()
    }

    pub(crate) fn is_json(&self) -> bool {
        self.flags & FLAG_JSON != 0
    }

    pub(crate) fn kind(&self) -> RecordKind {
        if self.flags & FLAG_CLOSE == 0 {
            RecordKind::Event
        } else {
            RecordKind::Close {
                has_final_event: self.flags & FLAG_FINAL_EVENT != 0,
            }
        }
    }

    pub(crate) fn is_close(&self) -> bool {
        self.flags & FLAG_CLOSE != 0
    }

    /// The bytes subscribers receive: the frame, or nothing for a close without a final event.
    pub(crate) fn delivered_frame(&self) -> Option<&Bytes> {
        (self.flags & FLAG_CLOSE == 0 || self.flags & FLAG_FINAL_EVENT != 0).then_some(&self.frame)
    }

    /// Every byte this record holds: the struct, its frame with its share of the allocation it
    /// lives in, its target (a client id's name and allocation; for channels, its pointers and
    /// slots in the per-channel index: the names are counted once per channel by history), its
    /// slots in the id index (none when its id is its position id) and the publisher-id index.
    pub(crate) fn cost_bytes(&self) -> usize {
        let frame_overhead = if self.is_packed() {
            packed_overhead_bytes(self.frame.len())
        } else {
            OWN_FRAME_OVERHEAD_BYTES
        };
        std::mem::size_of::<Self>()
            + self.frame.len()
            + frame_overhead
            + self.audience.cost_bytes()
            + (usize::from(!self.is_position_id()) + usize::from(self.is_publisher_id()))
                * INDEX_SLOT_BYTES
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, event: Option<&str>, data: &EventData, kind: RecordKind) -> Record {
        let draft = Draft {
            id,
            is_publisher_id: true,
            event,
            data,
            kind,
            is_private: false,
            retry: None,
        };
        Record::new(1, &draft, Audience::All, 0)
    }

    #[test]
    fn id_name_and_data_are_read_back_from_the_frame() {
        let data = EventData::from_raw_json(r#"{"symbol":"HRLD", "price":12.5}"#).expect("valid");
        let r = record("e-1", Some("tick"), &data, RecordKind::Event);
        assert_eq!(r.id(), "e-1");
        assert_eq!(r.event(), Some("tick"));
        assert_eq!(r.data(), r#"{"symbol":"HRLD", "price":12.5}"#);
        assert!(r.is_json());
        let text = EventData::text("a\nb");
        let r = record(
            "x",
            None,
            &text,
            RecordKind::Close {
                has_final_event: true,
            },
        );
        assert_eq!((r.event(), r.data().as_ref()), (None, "a\nb"));
        assert_eq!(
            r.kind(),
            RecordKind::Close {
                has_final_event: true
            }
        );
    }

    #[test]
    fn a_retry_field_is_read_back_and_kept_out_of_the_data() {
        let data = EventData::text("a\nretry: 1");
        let draft = Draft {
            id: "x",
            is_publisher_id: true,
            event: None,
            data: &data,
            kind: RecordKind::Event,
            is_private: true,
            retry: Some(5000),
        };
        let r = Record::new(1, &draft, Audience::All, 0);
        assert_eq!(r.retry(), Some(5000));
        assert_eq!(r.data(), "a\nretry: 1");
        assert!(r.is_private());
        assert!(r
            .delivered_frame()
            .expect("an event")
            .ends_with(b"data: retry: 1\nretry: 5000\n\n"));
    }

    #[test]
    fn a_close_without_final_event_delivers_nothing() {
        let empty = EventData::text("");
        let r = record(
            "x",
            None,
            &empty,
            RecordKind::Close {
                has_final_event: false,
            },
        );
        assert!(r.delivered_frame().is_none());
        assert_eq!(r.data(), "");
    }

    #[test]
    fn a_record_stays_within_its_overhead_budget() {
        let size = std::mem::size_of::<Record>();
        assert!(size <= 80, "Record grew to {size} bytes");
    }
}
