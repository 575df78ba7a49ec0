//! The in-memory event history: an ordered, bounded ring that gives every event its position.
//!
//! Owns positions (`seq`), three indexes kept and trimmed with the records (wire id → position for
//! resume and polling; publisher id and scope → position for idempotent publish; channel →
//! positions, so a poll walks only the channels it asks for), where a reader starts
//! ([`History::read_start`], one rule for resume and polling) and trimming by count, bytes and age.
//! Finding where to start is O(1): a hash of the id, then an index into the ring. A wire id names
//! exactly one record. It never fans out, never knows connections and never talks to a log
//! backend: the hub tells the log what trimming dropped.

use crate::{
    channel::ChannelName,
    config::HistoryConfig,
    record::{Audience, Record, RecordKind},
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
    /// Positions by the hash of their record's wire id (the id itself lives in the frame).
    index: HashTable<u64>,
    /// Positions of records with a publisher id, by the hash of (audience, publisher id): the
    /// scope idempotency works in.
    by_publisher_id: HashTable<u64>,
    /// The publisher ids of records whose wire id is their position id instead (another event
    /// had that id on the wire already). Rare: only a publisher id reused across scopes.
    renamed: HashMap<u64, Box<str>>,
    /// Positions of the records addressed to each channel, oldest first.
    by_channel: HashMap<ChannelName, VecDeque<u64>>,
    /// Positions of the records addressed to every connection, oldest first.
    to_all: VecDeque<u64>,
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
        let epoch = new_epoch();
        let now = Instant::now();
        Self {
            records: VecDeque::new(),
            index: HashTable::new(),
            by_publisher_id: HashTable::new(),
            renamed: HashMap::new(),
            by_channel: HashMap::new(),
            to_all: VecDeque::new(),
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

    /// Gives this history a new epoch: position ids handed out so far name nothing any more.
    pub(crate) fn renew_epoch(&mut self) {
        self.epoch = new_epoch();
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

    /// The record published with publisher id `publisher_id` to exactly `audience`, if still in
    /// history: the scope a publisher id is idempotent in.
    pub(crate) fn get_published(&self, audience: &Audience, publisher_id: &str) -> Option<&Record> {
        let hash = self.hasher.hash_one((audience, publisher_id));
        let seq = self.by_publisher_id.find(hash, |seq| {
            self.get(*seq).is_some_and(|r| {
                &r.audience == audience && self.publisher_id(r) == Some(publisher_id)
            })
        })?;
        self.get(*seq)
    }

    /// The id the publisher gave `record`, if any (its wire id may be its position id instead).
    pub(crate) fn publisher_id<'a>(&'a self, record: &'a Record) -> Option<&'a str> {
        record
            .is_publisher_id()
            .then(|| publisher_id_in(&self.renamed, record))
    }

    /// The position id `{epoch}-{seq}` of this history.
    pub(crate) fn position_id(&self, seq: u64) -> String {
        format!("{}-{seq}", self.epoch)
    }

    /// Where a reader that last saw `last_event_id` starts: the one rule for resume and polling.
    /// An id is either an event's id still in history, or a position id of this history
    /// (`{epoch}-{n}`, what [`Self::start_id`] hands out) whose position is still readable.
    pub(crate) fn read_start(&self, last_event_id: Option<&str>) -> ReadStart {
        let Some(id) = last_event_id else {
            return ReadStart::Oldest;
        };
        if let Some(record) = self.get_by_id(id) {
            return ReadStart::After(record.seq);
        }
        match self.own_position(id) {
            Some(seq) if seq >= self.before_oldest() && seq <= self.head_seq() => {
                ReadStart::After(seq)
            }
            _ => ReadStart::Unknown,
        }
    }

    /// The id that names where a stream opened now starts: the newest event's id when the hub
    /// assigned it (in a cluster that id is global, so the client can resume on any node), or
    /// else this history's position id for its head (`{epoch}-{n}`). A publisher's id is never
    /// used: it may belong to a channel the stream does not hear. [`Self::read_start`] resolves
    /// either to the same position while that is still readable.
    pub(crate) fn start_id(&self) -> String {
        let head = self.head_seq();
        match self.get(head) {
            Some(record) if !record.is_publisher_id() => record.id().to_owned(),
            _ => self.position_id(head),
        }
    }

    /// The position named by `{epoch}-{n}` when `epoch` is this history's.
    fn own_position(&self, id: &str) -> Option<u64> {
        let n = id.strip_prefix(self.epoch.as_str())?.strip_prefix('-')?;
        if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        n.parse().ok()
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

    /// Appends a record whose `seq` is [`Self::next_seq`]; `publisher_id` is the id its
    /// publisher gave when that is not its wire id. The caller trims after.
    ///
    /// A wire id names one record: when an older record still holds the same wire id (in a
    /// cluster, only once the log forgot it, past history's age), the older one stops being
    /// found by it.
    pub(crate) fn append(&mut self, record: Record, publisher_id: Option<&str>) {
        debug_assert_eq!(
            record.seq, self.next_seq,
            "records are appended in position order"
        );
        self.next_seq = record.seq + 1;
        self.bytes += record.cost_bytes();
        let seq = record.seq;
        let hash = self.hasher.hash_one(record.id());
        let first = self.records.front().map_or(seq, |r| r.seq);
        let records = &self.records;
        if let Ok(stale) = self
            .index
            .find_entry(hash, |s| records[(*s - first) as usize].id() == record.id())
        {
            stale.remove();
        }
        if let Some(publisher_id) = publisher_id.filter(|id| *id != record.id()) {
            self.renamed.insert(seq, publisher_id.into());
        }
        match &record.audience {
            Audience::All => self.to_all.push_back(seq),
            Audience::Client(_) => {}
            channels => {
                for channel in channels.channels() {
                    self.by_channel
                        .entry(channel.clone())
                        .or_default()
                        .push_back(seq);
                }
            }
        }
        let is_publisher_id = record.is_publisher_id();
        self.records.push_back(record);
        let (records, hasher, renamed) = (&self.records, &self.hasher, &self.renamed);
        let first = records.front().map_or(0, |r| r.seq);
        let at = |seq: u64| &records[(seq - first) as usize];
        self.index
            .insert_unique(hash, seq, |seq| hasher.hash_one(at(*seq).id()));
        if is_publisher_id {
            let record = at(seq);
            let hash = hasher.hash_one((&record.audience, publisher_id_in(renamed, record)));
            self.by_publisher_id.insert_unique(hash, seq, |seq| {
                let r = at(*seq);
                hasher.hash_one((&r.audience, publisher_id_in(renamed, r)))
            });
        }
    }

    /// Forgets the indexes' entries for `record`, the oldest record, as it leaves history.
    fn unindex_front(&mut self, record: &Record) {
        let seq = record.seq;
        let hash = self.hasher.hash_one(record.id());
        if let Ok(slot) = self.index.find_entry(hash, |s| *s == seq) {
            slot.remove();
        }
        if record.is_publisher_id() {
            let hash = self
                .hasher
                .hash_one((&record.audience, publisher_id_in(&self.renamed, record)));
            if let Ok(slot) = self.by_publisher_id.find_entry(hash, |s| *s == seq) {
                slot.remove();
            }
        }
        self.renamed.remove(&seq);
        match &record.audience {
            Audience::All => {
                if self.to_all.front() == Some(&seq) {
                    self.to_all.pop_front();
                }
            }
            Audience::Client(_) => {}
            channels => {
                for channel in channels.channels() {
                    if let Some(seqs) = self.by_channel.get_mut(channel) {
                        if seqs.front() == Some(&seq) {
                            seqs.pop_front();
                        }
                        if seqs.is_empty() {
                            self.by_channel.remove(channel);
                        }
                    }
                }
            }
        }
    }

    /// The records after position `after` addressed to any of `channels` or to every
    /// connection, oldest first, at most `limit` of them, and whether more follow; never a
    /// private event (only topic-selecting connections read those). Walks only
    /// those channels' positions: the cost is what it returns (and a binary search per channel).
    pub(crate) fn on_channels_after(
        &self,
        channels: &[ChannelName],
        after: u64,
        limit: usize,
    ) -> (Vec<&Record>, bool) {
        let mut lists: Vec<std::iter::Peekable<std::collections::vec_deque::Iter<'_, u64>>> =
            channels
                .iter()
                .filter_map(|c| self.by_channel.get(c))
                .chain(std::iter::once(&self.to_all))
                .map(|seqs| {
                    let start = seqs.partition_point(|seq| *seq <= after);
                    seqs.range(start..).peekable()
                })
                .collect();
        let mut found = Vec::new();
        loop {
            let Some(next) = lists.iter_mut().filter_map(|l| l.peek().copied()).min() else {
                return (found, false);
            };
            if found.len() == limit {
                return (found, true);
            }
            for list in &mut lists {
                if list.peek() == Some(&next) {
                    list.next();
                }
            }
            if let Some(record) = self.get(*next).filter(|r| !r.is_private()) {
                found.push(record);
            }
        }
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
            let front = self.records.pop_front().expect("front was just seen");
            self.unindex_front(&front);
            self.bytes -= front.cost_bytes();
            dropped = Some(front.seq);
        }
        if self.records.is_empty() && self.index.capacity() > 1024 {
            self.index.shrink_to_fit(|_| 0);
            self.by_publisher_id.shrink_to_fit(|_| 0);
            self.to_all.shrink_to_fit();
            self.by_channel.shrink_to_fit();
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

/// The publisher id of `record`, which has one: its wire id unless it was renamed.
fn publisher_id_in<'a>(renamed: &'a HashMap<u64, Box<str>>, record: &'a Record) -> &'a str {
    renamed.get(&record.seq).map_or(record.id(), |id| id)
}

/// A fresh epoch: the time in base 36 and four random characters.
fn new_epoch() -> String {
    let mut epoch = to_base36(unix_ms());
    epoch.extend((0..4).map(|_| fastrand::alphanumeric().to_ascii_lowercase()));
    epoch
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
            is_private: false,
            retry: None,
        };
        let now = history.ms_since_origin(Instant::now());
        history.append(Record::new(seq, &draft, Audience::All, now), None);
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
    fn the_start_id_resumes_from_where_a_stream_opened() {
        let mut history = History::new(limits(3));
        let empty = history.start_id();
        assert_eq!(history.read_start(Some(&empty)), ReadStart::After(0));
        push(&mut history, None);
        assert_eq!(
            history.start_id(),
            history.get(1).expect("held").id(),
            "a hub-assigned id names its own position"
        );
        push(&mut history, Some("order-7"));
        let after_publisher_id = history.start_id();
        assert_ne!(
            after_publisher_id, "order-7",
            "a publisher's id is never shown"
        );
        assert_eq!(
            history.read_start(Some(&after_publisher_id)),
            ReadStart::After(2)
        );
        for _ in 0..3 {
            push(&mut history, None);
        }
        assert_eq!(
            history.read_start(Some(&empty)),
            ReadStart::Unknown,
            "position 0 is no longer readable: events after it left history"
        );
        let head = history.head_seq();
        assert_eq!(
            history.read_start(Some(&format!("{}-{}", history.epoch, head + 1))),
            ReadStart::Unknown,
            "a position not reached yet names nothing"
        );
        let other = History::new(limits(3));
        assert_eq!(other.read_start(Some(&empty)), ReadStart::Unknown);
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
                is_private: false,
                retry: None,
            };
            let now = history.ms_since_origin(Instant::now());
            let record = Record::new(seq, &draft, Audience::Channel(channel.clone()), now);
            frames += record.delivered_frame().map_or(0, bytes::Bytes::len);
            history.append(record, None);
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
