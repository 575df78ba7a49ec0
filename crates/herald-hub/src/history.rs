//! The in-memory event log: an ordered, bounded history that gives every event its position.
//!
//! Owns positions (`seq`), the id index used for resume and idempotent publish, and trimming by
//! count, bytes and age. Finding where to resume is O(1): a hash lookup from id to position, then an
//! index into the ring. It never fans out and never knows connections.

use crate::{
    channel::ChannelName,
    config::HistoryConfig,
    event::{ClientId, EventData},
};
use bytes::Bytes;
use std::{
    collections::{HashMap, VecDeque},
    sync::Arc,
    time::{Instant, SystemTime, UNIX_EPOCH},
};

/// Who an event is addressed to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// Every connection subscribed to any of these channels (de-duplicated per connection).
    Channels(Vec<ChannelName>),
    /// One connection, by client id.
    Client(ClientId),
    /// Every connection, whatever its channels.
    All,
}

impl Target {
    /// Whether a connection with this id and these channels is addressed, and on which channel.
    pub(crate) fn matches<'a>(
        &'a self,
        client: &ClientId,
        channels: &[ChannelName],
    ) -> Option<Option<&'a ChannelName>> {
        match self {
            Target::Channels(targets) => targets.iter().find(|c| channels.contains(c)).map(Some),
            Target::Client(id) => (id == client).then_some(None),
            Target::All => Some(None),
        }
    }
}

/// What a record in history stands for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum RecordKind {
    /// An ordinary event.
    Event,
    /// The end of a channel, with an optional final event in the record's frame.
    Close { has_final_event: bool },
}

/// One entry of history: the event as published and its encoded frame, shared by every reader.
#[derive(Debug)]
pub(crate) struct Record {
    pub(crate) seq: u64,
    pub(crate) id: Arc<str>,
    pub(crate) target: Target,
    pub(crate) kind: RecordKind,
    pub(crate) event: Option<Box<str>>,
    pub(crate) data: EventData,
    /// The SSE bytes of the event, encoded once; empty for a close without a final event.
    pub(crate) frame: Bytes,
    /// Connections the event was queued to when it was published.
    pub(crate) recipients: usize,
    pub(crate) published_at: Instant,
}

impl Record {
    fn cost_bytes(&self) -> usize {
        self.frame.len() + self.data.as_str().len() + self.id.len() + std::mem::size_of::<Record>()
    }
}

/// The bounded in-memory history.
#[derive(Debug)]
pub(crate) struct History {
    records: VecDeque<Arc<Record>>,
    seq_by_id: HashMap<Arc<str>, u64>,
    bytes: usize,
    limits: HistoryConfig,
    /// Marks this process's ids, so an id from an earlier run is never taken for a current one.
    epoch: String,
    next_seq: u64,
}

/// Where a resume starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ResumePoint {
    /// The id is in history: replay what follows this position.
    After(u64),
    /// The id is unknown or has left history.
    Unknown,
}

impl History {
    pub(crate) fn new(limits: HistoryConfig) -> Self {
        let millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let mut epoch = to_base36(millis);
        epoch.extend((0..4).map(|_| fastrand::alphanumeric().to_ascii_lowercase()));
        Self {
            records: VecDeque::new(),
            seq_by_id: HashMap::new(),
            bytes: 0,
            limits,
            epoch,
            next_seq: 1,
        }
    }

    /// History recovered from the durable log: `records` in position order. Ids keep their stored
    /// text; new ids get a fresh epoch, so an id handed out but never made durable before a crash
    /// can never name a different event after it.
    pub(crate) fn restore(limits: HistoryConfig, records: Vec<Record>) -> Self {
        let mut history = Self::new(limits);
        for record in records {
            history.next_seq = record.seq;
            history.append(record);
        }
        history
    }

    /// Channels whose closing is in history and that were not published to since.
    pub(crate) fn closed_channels(&self) -> HashMap<ChannelName, u64> {
        let mut closed = HashMap::new();
        for record in &self.records {
            if let Target::Channels(channels) = &record.target {
                for channel in channels {
                    match record.kind {
                        RecordKind::Close { .. } => closed.insert(channel.clone(), record.seq),
                        RecordKind::Event => closed.remove(channel),
                    };
                }
            }
        }
        closed
    }

    /// The position the next event will take.
    pub(crate) fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// The position of the newest event, 0 when none was ever published.
    pub(crate) fn head_seq(&self) -> u64 {
        self.next_seq - 1
    }

    /// A fresh id for the event at `seq`: `{epoch}-{seq}`.
    pub(crate) fn assign_id(&self, seq: u64) -> Arc<str> {
        let mut id = format!("{}-{seq}", self.epoch);
        while self.seq_by_id.contains_key(id.as_str()) {
            // Only a publisher who forged an id of ours can get here; keep ours unique anyway.
            id.push('x');
        }
        Arc::from(id)
    }

    /// The record holding `id`, if it is still in history.
    pub(crate) fn get_by_id(&self, id: &str) -> Option<&Arc<Record>> {
        self.seq_by_id.get(id).and_then(|seq| self.get(*seq))
    }

    pub(crate) fn resume_point(&self, last_event_id: &str) -> ResumePoint {
        match self.seq_by_id.get(last_event_id) {
            Some(seq) => ResumePoint::After(*seq),
            None => ResumePoint::Unknown,
        }
    }

    /// The record at position `seq`, if still in history.
    pub(crate) fn get(&self, seq: u64) -> Option<&Arc<Record>> {
        let first = self.records.front()?.seq;
        let index = seq.checked_sub(first)?;
        self.records.get(usize::try_from(index).ok()?)
    }

    /// The position of the oldest event still in history.
    pub(crate) fn first_seq(&self) -> Option<u64> {
        self.records.front().map(|r| r.seq)
    }

    /// Records after position `after`, oldest first. `None` when some of them already left
    /// history (the reader has a gap it must be told about).
    pub(crate) fn after(&self, after: u64) -> Option<impl Iterator<Item = &Arc<Record>>> {
        let start = match self.records.front() {
            None => 0,
            Some(front) if after + 1 >= front.seq => {
                usize::try_from(after + 1 - front.seq).unwrap_or(usize::MAX)
            }
            Some(_) => return None,
        };
        Some(self.records.iter().skip(start))
    }

    /// Appends a record whose `seq` is [`Self::next_seq`], then trims to the limits.
    pub(crate) fn append(&mut self, record: Record) -> Arc<Record> {
        debug_assert_eq!(
            record.seq, self.next_seq,
            "records are appended in position order"
        );
        self.next_seq = record.seq + 1;
        let record = Arc::new(record);
        self.bytes += record.cost_bytes();
        self.seq_by_id.insert(record.id.clone(), record.seq);
        self.records.push_back(record.clone());
        self.trim(Instant::now());
        record
    }

    /// Drops the oldest records until every limit holds. Returns the records dropped.
    pub(crate) fn trim(&mut self, now: Instant) -> Vec<Arc<Record>> {
        let mut dropped = Vec::new();
        while let Some(front) = self.records.front() {
            let too_old = now.saturating_duration_since(front.published_at) > self.limits.max_age;
            if self.records.len() <= self.limits.max_events
                && self.bytes <= self.limits.max_bytes
                && !too_old
            {
                break;
            }
            let front = self.records.pop_front().expect("front was just seen");
            self.bytes -= front.cost_bytes();
            self.seq_by_id.remove(&front.id);
            dropped.push(front);
        }
        dropped
    }

    pub(crate) fn len(&self) -> usize {
        self.records.len()
    }

    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }
}

fn to_base36(mut n: u64) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).expect("base-36 digits are ASCII")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(history: &History, id: Option<&str>) -> Record {
        let seq = history.next_seq();
        Record {
            seq,
            id: id.map_or_else(|| history.assign_id(seq), Arc::from),
            target: Target::All,
            kind: RecordKind::Event,
            event: None,
            data: EventData::text("x"),
            frame: Bytes::from_static(b"data: x\n\n"),
            recipients: 0,
            published_at: Instant::now(),
        }
    }

    fn limits(max_events: usize) -> HistoryConfig {
        HistoryConfig {
            max_events,
            ..HistoryConfig::default()
        }
    }

    #[test]
    fn resume_finds_the_position_of_a_known_id_and_reads_what_follows() {
        let mut history = History::new(limits(10));
        for _ in 0..5 {
            let r = record(&history, None);
            history.append(r);
        }
        let third = history.get(3).expect("in history").id.clone();
        let ResumePoint::After(seq) = history.resume_point(&third) else {
            panic!("known id")
        };
        let seqs: Vec<u64> = history.after(seq).expect("no gap").map(|r| r.seq).collect();
        assert_eq!(seqs, vec![4, 5]);
    }

    #[test]
    fn trimming_by_count_forgets_ids_and_reports_the_gap() {
        let mut history = History::new(limits(3));
        let first = record(&history, Some("first"));
        history.append(first);
        for _ in 0..4 {
            let r = record(&history, None);
            history.append(r);
        }
        assert_eq!(history.len(), 3);
        assert_eq!(history.resume_point("first"), ResumePoint::Unknown);
        assert!(history.after(1).is_none(), "position 2 left history");
        assert!(
            history.after(2).is_some(),
            "everything after 2 is still here"
        );
    }

    #[test]
    fn ids_of_two_histories_never_collide() {
        let a = History::new(limits(3));
        let b = History::new(limits(3));
        assert_ne!(a.assign_id(1), b.assign_id(1));
    }

    #[test]
    fn trimming_by_age_drops_old_events() {
        let mut history = History::new(HistoryConfig {
            max_age: std::time::Duration::from_secs(1),
            ..limits(10)
        });
        let r = record(&history, None);
        history.append(r);
        let dropped = history.trim(Instant::now() + std::time::Duration::from_secs(2));
        assert_eq!(dropped.len(), 1);
        assert_eq!(history.len(), 0);
        assert_eq!(history.bytes(), 0);
    }
}
