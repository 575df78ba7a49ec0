//! The in-memory event history: an ordered, bounded ring that gives every event its position.
//!
//! Owns positions (`seq`), the id index used for resume, polling and idempotent publish, where a
//! reader starts ([`History::read_start`], one rule for resume and polling) and trimming by count,
//! bytes and age. Finding where to start is O(1): a hash of the id, then an index into the ring.
//! It never fans out, never knows connections and never talks to a log backend: the hub tells the
//! log what trimming dropped.

use crate::{
    channel::ChannelName,
    config::HistoryConfig,
    record::{Record, RecordKind},
};
use hashbrown::HashTable;
use std::{
    collections::{HashMap, VecDeque},
    hash::BuildHasher,
    time::{Instant, SystemTime, UNIX_EPOCH},
};

/// The bounded in-memory history.
#[derive(Debug)]
pub(crate) struct History {
    records: VecDeque<Record>,
    /// Positions by the hash of their record's id (the id itself lives in the frame).
    index: HashTable<u64>,
    hasher: std::collections::hash_map::RandomState,
    bytes: usize,
    limits: HistoryConfig,
    /// Marks this process's ids, so an id from an earlier run is never taken for a current one.
    epoch: String,
    next_seq: u64,
    /// Publish times are kept as ms since this instant (set `max_age` in the past, so a recovered
    /// record older than that saturates to 0 and is trimmed as too old).
    origin: Instant,
}

/// Where a reader of history starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReadStart {
    /// No id was given: from the oldest event held.
    Oldest,
    /// The id is in history: what follows this position.
    After(u64),
    /// The id is unknown or has left history.
    Unknown,
}

impl History {
    pub(crate) fn new(limits: HistoryConfig) -> Self {
        let mut epoch = to_base36(unix_ms());
        epoch.extend((0..4).map(|_| fastrand::alphanumeric().to_ascii_lowercase()));
        let now = Instant::now();
        Self {
            records: VecDeque::new(),
            index: HashTable::new(),
            hasher: Default::default(),
            bytes: 0,
            origin: now.checked_sub(limits.max_age).unwrap_or(now),
            limits,
            epoch,
            next_seq: 1,
        }
    }

    /// The publish time `at` as a record keeps it.
    pub(crate) fn ms_since_origin(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.origin).as_millis()).unwrap_or(u64::MAX)
    }

    /// Channels whose closing is in history and that were not published to since.
    pub(crate) fn closed_channels(&self) -> HashMap<ChannelName, u64> {
        let mut closed = HashMap::new();
        for record in &self.records {
            for channel in record.audience.channels() {
                match record.kind() {
                    RecordKind::Close { .. } => closed.insert(channel.clone(), record.seq),
                    RecordKind::Event => closed.remove(channel),
                };
            }
        }
        closed
    }

    /// The position the next event will take.
    pub(crate) fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Makes the next record take position `seq` (a recovered log continues its positions).
    pub(crate) fn skip_to(&mut self, seq: u64) {
        debug_assert!(self.records.is_empty() && seq >= self.next_seq);
        self.next_seq = seq;
    }

    /// The position of the newest event, 0 when none was ever published.
    pub(crate) fn head_seq(&self) -> u64 {
        self.next_seq - 1
    }

    /// A fresh id for the event at `seq`: `{epoch}-{seq}`.
    pub(crate) fn assign_id(&self, seq: u64) -> String {
        let mut id = format!("{}-{seq}", self.epoch);
        while self.get_by_id(&id).is_some() {
            // Only a publisher who forged an id of ours can get here; keep ours unique anyway.
            id.push('x');
        }
        id
    }

    /// The record holding `id`, if it is still in history.
    pub(crate) fn get_by_id(&self, id: &str) -> Option<&Record> {
        let hash = self.hasher.hash_one(id);
        let seq = self
            .index
            .find(hash, |seq| self.get(*seq).is_some_and(|r| r.id() == id))?;
        self.get(*seq)
    }

    /// Where a reader that last saw `last_event_id` starts: the one rule for resume and polling.
    pub(crate) fn read_start(&self, last_event_id: Option<&str>) -> ReadStart {
        match last_event_id {
            None => ReadStart::Oldest,
            Some(id) => self
                .get_by_id(id)
                .map_or(ReadStart::Unknown, |record| ReadStart::After(record.seq)),
        }
    }

    /// The position just before the oldest event held (where reading "from the oldest" starts).
    pub(crate) fn before_oldest(&self) -> u64 {
        self.records.front().map_or(self.head_seq(), |r| r.seq - 1)
    }

    /// The record at position `seq`, if still in history.
    pub(crate) fn get(&self, seq: u64) -> Option<&Record> {
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
    pub(crate) fn after(&self, after: u64) -> Option<impl Iterator<Item = &Record>> {
        let start = match self.records.front() {
            None => 0,
            Some(front) if after + 1 >= front.seq => {
                usize::try_from(after + 1 - front.seq).unwrap_or(usize::MAX)
            }
            Some(_) => return None,
        };
        Some(self.records.iter().skip(start))
    }

    /// Appends a record whose `seq` is [`Self::next_seq`]. The caller trims after.
    pub(crate) fn append(&mut self, record: Record) {
        debug_assert_eq!(
            record.seq, self.next_seq,
            "records are appended in position order"
        );
        self.next_seq = record.seq + 1;
        self.bytes += record.cost_bytes();
        let hash = self.hasher.hash_one(record.id());
        let seq = record.seq;
        self.records.push_back(record);
        let (records, hasher) = (&self.records, &self.hasher);
        self.index.insert_unique(hash, seq, |seq| {
            let first = records.front().map_or(0, |r| r.seq);
            hasher.hash_one(records[(seq - first) as usize].id())
        });
    }

    /// Drops the oldest records until every limit holds. Returns the position of the last record
    /// dropped, if any (the log forgets through it).
    pub(crate) fn trim(&mut self, now: Instant) -> Option<u64> {
        let now_ms = self.ms_since_origin(now);
        let max_age_ms = u64::try_from(self.limits.max_age.as_millis()).unwrap_or(u64::MAX);
        let mut dropped = None;
        while let Some(front) = self.records.front() {
            let too_old = now_ms.saturating_sub(front.published_ms) > max_age_ms;
            if self.records.len() <= self.limits.max_events
                && self.bytes <= self.limits.max_bytes
                && !too_old
            {
                break;
            }
            let hash = self.hasher.hash_one(front.id());
            let seq = front.seq;
            if let Ok(slot) = self.index.find_entry(hash, |s| *s == seq) {
                slot.remove();
            }
            let front = self.records.pop_front().expect("front was just seen");
            self.bytes -= front.cost_bytes();
            dropped = Some(seq);
        }
        if self.records.is_empty() && self.index.capacity() > 1024 {
            self.index.shrink_to_fit(|_| 0);
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

/// Milliseconds since the Unix epoch, 0 before it.
pub(crate) fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
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
    use crate::{
        event::EventData,
        record::{Audience, Draft},
    };

    fn push(history: &mut History, id: Option<&str>) {
        let seq = history.next_seq();
        let assigned = history.assign_id(seq);
        let data = EventData::text("x");
        let draft = Draft {
            id: id.unwrap_or(&assigned),
            is_publisher_id: id.is_some(),
            event: None,
            data: &data,
            kind: RecordKind::Event,
        };
        let now = history.ms_since_origin(Instant::now());
        history.append(Record::new(seq, &draft, Audience::All, now));
        history.trim(Instant::now());
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
            push(&mut history, None);
        }
        let third = history.get(3).expect("in history").id().to_owned();
        let ReadStart::After(seq) = history.read_start(Some(&third)) else {
            panic!("known id")
        };
        let seqs: Vec<u64> = history.after(seq).expect("no gap").map(|r| r.seq).collect();
        assert_eq!(seqs, vec![4, 5]);
    }

    #[test]
    fn trimming_by_count_forgets_ids_and_reports_the_gap() {
        let mut history = History::new(limits(3));
        push(&mut history, Some("first"));
        for _ in 0..4 {
            push(&mut history, None);
        }
        assert_eq!(history.len(), 3);
        assert_eq!(history.read_start(Some("first")), ReadStart::Unknown);
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
        push(&mut history, None);
        let dropped = history.trim(Instant::now() + std::time::Duration::from_secs(2));
        assert_eq!(dropped, Some(1));
        assert_eq!(history.len(), 0);
        assert_eq!(history.bytes(), 0);
    }

    /// Resident bytes of this process (Linux).
    fn rss_bytes() -> usize {
        let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
        let pages: usize = statm
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        pages * 4096
    }

    /// Memory of a million ten-byte events held in history, over the process's baseline.
    /// `cargo test -p herald-hub --lib -- --ignored --nocapture history_of_a_million`
    #[test]
    #[ignore = "measures memory: run alone"]
    fn history_of_a_million_small_events_stays_near_its_frames() {
        const EVENTS: usize = 1_000_000;
        let mut history = History::new(HistoryConfig {
            max_events: EVENTS,
            max_bytes: usize::MAX,
            ..HistoryConfig::default()
        });
        let channel = crate::channel::ChannelName::new("prices").expect("valid");
        let data = EventData::from_raw_json(r#"{"p":12.5}"#).expect("ten bytes of JSON");
        let before = rss_bytes();
        let mut frames = 0;
        for _ in 0..EVENTS {
            let seq = history.next_seq();
            let id = history.assign_id(seq);
            let draft = Draft {
                id: &id,
                is_publisher_id: false,
                event: None,
                data: &data,
                kind: RecordKind::Event,
            };
            let now = history.ms_since_origin(Instant::now());
            let record = Record::new(seq, &draft, Audience::Channel(channel.clone()), now);
            frames += record.delivered_frame().map_or(0, bytes::Bytes::len);
            history.append(record);
        }
        let rss_per_event = (rss_bytes() - before) / EVENTS;
        let cost_per_event = history.bytes() / EVENTS;
        eprintln!(
            "{EVENTS} events: {rss_per_event} B resident and {cost_per_event} B accounted per event, \
             of which {} B frame",
            frames / EVENTS
        );
        assert!(
            cost_per_event + 16 >= rss_per_event,
            "cost_bytes undercounts: {cost_per_event} B accounted, {rss_per_event} B held"
        );
        assert!(
            rss_per_event < 250,
            "history costs {rss_per_event} B per event"
        );
    }
}
