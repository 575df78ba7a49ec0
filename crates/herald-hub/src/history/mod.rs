//! The in-memory event history: ordered, bounded per namespace, giving every event its position.
//!
//! Owns positions (`seq`: one global order for the whole hub, whatever the namespace), the split
//! of records into one [`Ring`] per namespace (each trimmed by its own caps, count, age, and for
//! `until_closed` namespaces the grace after a channel's closing), what each ring lost (so a
//! reader is told of a gap only in the namespaces it reads), three indexes kept and trimmed with
//! the records (wire id → position for resume and polling; publisher id and scope → position for
//! idempotent publish; channel → positions, so a poll walks only the channels it asks for), and
//! where a reader starts ([`History::read_start`], one rule for resume and polling).
//! Finding where to start is a hash of the id, then an index into a ring (O(1) while the ring has
//! no holes, else a binary search); an id this history assigned (`{epoch}-{seq}`) names its
//! position itself, so those records take no slot in the id index. A wire id names exactly one
//! record. It never fans out, never
//! knows connections and never talks to a log backend: the hub tells the log what trimming
//! dropped ([`Dropped`]).
//!
//! Channel names are interned: a record's channels are the index's own keys, so a channel's
//! name is held once however many records name it (and counted once, with its index entry).
//! Small frames are packed into shared blocks (`frames`) in rings whose records leave oldest
//! first ([`History::record`] encodes there).
//!
//! Longer than the usual module (about 770 lines before its tests): the rings, the three indexes
//! and the closings waiting for their grace change together under one `&mut`, and splitting them
//! would spread that one invariant over several files. The per-namespace storage itself is
//! `ring`.

mod frames;
mod ring;

pub(crate) use frames::packed_overhead_bytes;

use crate::{
    channel::ChannelName,
    namespace::{NamespaceIndex, NamespaceMask, Namespaces},
    record::{channel_entry_cost_bytes, Audience, Record, RecordKind},
};
use hashbrown::HashTable;
use ring::Ring;
use std::{
    collections::{hash_map::Entry, HashMap, VecDeque},
    hash::BuildHasher,
    sync::Arc,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

/// How far back a recovered record's publish time can be told apart (older ones count as this
/// old): the longest age or grace any namespace keeps, at least this.
const TIME_HORIZON_MIN: Duration = Duration::from_secs(24 * 3600);

/// The bounded in-memory history.
#[derive(Debug)]
pub(crate) struct History {
    namespaces: Arc<Namespaces>,
    /// Each ring's name: its namespace's, then [`DIRECT_RING_NAME`].
    ring_names: Vec<Arc<str>>,
    /// One ring per namespace, by namespace index (0: the default namespace), then one for
    /// events to every connection and to one client id (every reader hears those, so they get a
    /// window of their own, with the default namespace's limits, that no busy channel trims).
    rings: Vec<Ring>,
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
    /// Channels of `until_closed` namespaces whose closing is in history, with its time.
    closed_at: HashMap<ChannelName, u64>,
    /// Those closings in time order, with their namespace (grace ends oldest first). At most
    /// each ring's event cap: a closing beyond it ends its grace early.
    closings: VecDeque<(u64, ChannelName, NamespaceIndex)>,
    /// Positions that left outside a trim (a grace ended early on append), for the next
    /// [`Dropped`].
    dropped_early: Vec<u64>,
    hasher: std::collections::hash_map::RandomState,
    /// Marks this process's ids, so an id from an earlier run is never taken for a current one.
    epoch: String,
    next_seq: u64,
    /// Publish times are kept as ms since this instant (set far enough in the past that every
    /// age and grace can be measured for recovered records).
    origin: Instant,
}

/// Where a reader of history starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReadStart {
    /// No id was given: from the oldest event held.
    Oldest,
    /// The id is in history, and nothing the reader hears left history after it: what follows
    /// this position.
    After(u64),
    /// The id is unknown, or events the reader would have heard left history after it.
    Unknown,
}

/// What one trim dropped, for the log to forget.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Dropped {
    /// Every position below this one has left history.
    pub(crate) below: u64,
    /// Positions at or above `below` that left too (namespaces trim on their own).
    pub(crate) seqs: Vec<u64>,
    /// The rings this trim dropped events from before their time, by name, with the newest
    /// position each lost, for a durable log to keep across a
    /// restart.
    pub(crate) lost: Vec<(Arc<str>, u64)>,
}

/// The name under which the ring of events to every connection or one client id keeps its lost
/// mark (no namespace can take it: namespace names have no `*`).
const DIRECT_RING_NAME: &str = "*direct";

impl History {
    pub(crate) fn new(namespaces: Arc<Namespaces>) -> Self {
        let epoch = new_epoch();
        let now = Instant::now();
        let horizon = namespaces
            .iter()
            .map(|ns| {
                let r = ns.retention();
                r.max_age.unwrap_or_default() + r.until_closed.unwrap_or_default()
            })
            .fold(TIME_HORIZON_MIN, Duration::max);
        let direct = Ring::new(namespaces.at(0).retention());
        let rings = namespaces
            .iter()
            .map(|ns| Ring::new(ns.retention()))
            .chain(std::iter::once(direct))
            .collect();
        let ring_names = namespaces
            .iter()
            .map(|ns| Arc::from(ns.name()))
            .chain(std::iter::once(Arc::from(DIRECT_RING_NAME)))
            .collect();
        Self {
            namespaces,
            ring_names,
            rings,
            index: HashTable::new(),
            by_publisher_id: HashTable::new(),
            renamed: HashMap::new(),
            by_channel: HashMap::new(),
            to_all: VecDeque::new(),
            closed_at: HashMap::new(),
            closings: VecDeque::new(),
            dropped_early: Vec::new(),
            hasher: Default::default(),
            origin: now.checked_sub(horizon).unwrap_or(now),
            epoch,
            next_seq: 1,
        }
    }

    /// The namespaces this history keeps records for.
    pub(crate) fn namespaces(&self) -> &Arc<Namespaces> {
        &self.namespaces
    }

    /// The publish time `at` as a record keeps it.
    pub(crate) fn ms_since_origin(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.origin).as_millis()).unwrap_or(u64::MAX)
    }

    /// Channels whose closing is in history and that were not published to since.
    pub(crate) fn closed_channels(&self) -> HashMap<ChannelName, u64> {
        let mut closed = HashMap::new();
        for record in self.merged(NamespaceMask::ALL, 0) {
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

    /// Makes the next record take position `seq` (a recovered log continues its positions,
    /// which need not be contiguous). Call [`Self::mark_lost_before_oldest`] once recovered.
    pub(crate) fn skip_to(&mut self, seq: u64) {
        debug_assert!(seq >= self.next_seq);
        self.next_seq = seq;
    }

    /// After a recovery from `first_seq` on: each ring takes the lost mark it had (`marks`, by
    /// ring name, as [`Dropped::lost`] gave them); a ring without one (a namespace new to this run) counts
    /// every position before the first recovered one as lost.
    pub(crate) fn recovered(&mut self, first_seq: Option<u64>, marks: &[(String, u64)]) {
        let floor = first_seq.map_or(self.head_seq(), |seq| seq - 1);
        for (ring, name) in self.rings.iter_mut().zip(&self.ring_names) {
            let mark = marks.iter().find(|(n, _)| **n == **name).map(|(_, m)| *m);
            ring.lost_through = ring.lost_through.max(mark.unwrap_or(floor));
        }
    }

    /// Gives this history a new epoch: position ids handed out so far name nothing any more
    /// (records that hold one as their wire id are still found by it: they join the id index).
    pub(crate) fn renew_epoch(&mut self) {
        let named: Vec<u64> = self
            .rings
            .iter()
            .flat_map(|ring| ring.after(0))
            .filter(|r| r.is_position_id())
            .map(|r| r.seq)
            .collect();
        for seq in named {
            for ring in &mut self.rings {
                ring.update(seq, |r| r.set_position_id(false));
            }
            let (rings, hasher) = (&self.rings, &self.hasher);
            let at = |seq: u64| record_at(rings, seq).expect("indexed records are in history");
            self.index
                .insert_unique(hasher.hash_one(at(seq).id()), seq, |seq| {
                    hasher.hash_one(at(*seq).id())
                });
        }
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

    /// The record holding `id`, if it is still in history: through the id index, or else the
    /// position the id names when it is a position id (the index wins: a record that took the
    /// id later is the one it names).
    pub(crate) fn get_by_id(&self, id: &str) -> Option<&Record> {
        let hash = self.hasher.hash_one(id);
        let indexed = self
            .index
            .find(hash, |seq| self.get(*seq).is_some_and(|r| r.id() == id));
        match indexed {
            Some(seq) => self.get(*seq),
            None => self
                .own_position(id)
                .and_then(|seq| self.get(seq))
                .filter(|r| r.is_position_id() && r.id() == id),
        }
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

    /// The namespaces a reader of `channels` reads (theirs, and the default one).
    pub(crate) fn mask_of(&self, channels: &[ChannelName]) -> NamespaceMask {
        self.namespaces.mask_of(channels)
    }

    /// Whether a reader of the namespaces in `mask` that last saw position `after` missed
    /// events that left history.
    pub(crate) fn has_gap_after(&self, after: u64, mask: NamespaceMask) -> bool {
        self.rings
            .iter()
            .enumerate()
            .any(|(i, ring)| mask.has(i) && ring.lost_through > after)
    }

    /// Where a reader of the namespaces in `mask` that last saw `last_event_id` starts: the one
    /// rule for resume and polling. An id is either an event's id still in history, or a
    /// position id of this history (`{epoch}-{n}`, what [`Self::start_id`] hands out); either
    /// way, nothing the reader hears may have left history after it.
    pub(crate) fn read_start(&self, last_event_id: Option<&str>, mask: NamespaceMask) -> ReadStart {
        let Some(id) = last_event_id else {
            return ReadStart::Oldest;
        };
        let seq = match self.get_by_id(id) {
            Some(record) => record.seq,
            None => match self.own_position(id) {
                Some(seq) if seq <= self.head_seq() => seq,
                _ => return ReadStart::Unknown,
            },
        };
        if self.has_gap_after(seq, mask) {
            ReadStart::Unknown
        } else {
            ReadStart::After(seq)
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

    /// The position just before the oldest event held in the namespaces of `mask` (where
    /// reading "from the oldest" starts).
    pub(crate) fn before_oldest(&self, mask: NamespaceMask) -> u64 {
        self.rings
            .iter()
            .enumerate()
            .filter(|(i, _)| mask.has(*i))
            .filter_map(|(_, ring)| ring.front())
            .map(|r| r.seq - 1)
            .min()
            .unwrap_or(self.head_seq())
    }

    /// The record at position `seq`, if still in history.
    pub(crate) fn get(&self, seq: u64) -> Option<&Record> {
        record_at(&self.rings, seq)
    }

    /// The position of the oldest event still in history, in any namespace.
    pub(crate) fn first_seq(&self) -> Option<u64> {
        self.rings
            .iter()
            .filter_map(|r| r.front())
            .map(|r| r.seq)
            .min()
    }

    /// Records of the namespaces in `mask` after position `after`, oldest first. `None` when
    /// some the reader would hear already left history (it has a gap it must be told about).
    pub(crate) fn after(
        &self,
        after: u64,
        mask: NamespaceMask,
    ) -> Option<impl Iterator<Item = &Record>> {
        (!self.has_gap_after(after, mask)).then(|| self.merged(mask, after))
    }

    /// The records of the namespaces in `mask` after `after`, merged into position order.
    fn merged(&self, mask: NamespaceMask, after: u64) -> Merged<'_> {
        let mut parts: Vec<_> = self
            .rings
            .iter()
            .enumerate()
            .filter(|(i, ring)| mask.has(*i) && ring.len() > 0)
            .map(|(_, ring)| {
                let part: Box<dyn Iterator<Item = &Record> + '_> = Box::new(ring.after(after));
                part.peekable()
            })
            .collect();
        parts.shrink_to_fit();
        Merged { parts }
    }

    /// The ring a record is kept in: its (first) channel's namespace; the direct ring for events
    /// to every connection or to one client id.
    fn ring_of(&self, audience: &Audience) -> NamespaceIndex {
        audience
            .channels()
            .first()
            .map_or(self.namespaces.len(), |channel| {
                self.namespaces.index_of(channel)
            })
    }

    /// Encodes `draft` as the record at `seq`, its frame packed with others where the ring it
    /// goes to packs frames (see [`Record::new`] for one with a frame of its own). Publishing
    /// fans out a frame of its own and lets [`Self::append`] pack a copy: delivery then counts
    /// clones per frame, not per block.
    #[cfg(test)]
    pub(crate) fn record(
        &mut self,
        seq: u64,
        draft: &crate::record::Draft<'_>,
        audience: Audience,
        published_ms: u64,
    ) -> Record {
        let ring = self.ring_of(&audience);
        match self.rings[ring].frames.as_mut() {
            Some(arena) => {
                let (frame, is_packed) = arena.frame(draft.frame_len(), |buf| draft.put_frame(buf));
                Record::with_frame(seq, draft, audience, published_ms, frame, is_packed)
            }
            None => Record::new(seq, draft, audience, published_ms),
        }
    }

    /// Appends a record whose `seq` is [`Self::next_seq`]; `publisher_id` is the id its
    /// publisher gave when that is not its wire id. The caller trims after. A record made with
    /// [`Record::new`] has its frame packed here when its ring packs frames.
    ///
    /// A wire id names one record: when an older record still holds the same wire id (in a
    /// cluster, only once the log forgot it, past history's age), the older one stops being
    /// found by it.
    pub(crate) fn append(&mut self, mut record: Record, publisher_id: Option<&str>) {
        debug_assert_eq!(
            record.seq, self.next_seq,
            "records are appended in position order"
        );
        self.next_seq = record.seq + 1;
        let seq = record.seq;
        let hash = self.hasher.hash_one(record.id());
        let rings = &self.rings;
        if let Ok(stale) = self.index.find_entry(hash, |s| {
            record_at(rings, *s).is_some_and(|r| r.id() == record.id())
        }) {
            stale.remove();
        }
        if let Some(publisher_id) = publisher_id.filter(|id| *id != record.id()) {
            self.renamed.insert(seq, publisher_id.into());
        }
        let ring = self.ring_of(&record.audience);
        if !record.is_packed() {
            if let Some(frame) = self.rings[ring]
                .frames
                .as_mut()
                .and_then(|arena| arena.pack(record.frame_bytes()))
            {
                record.set_packed_frame(frame);
            }
        }
        match &mut record.audience {
            Audience::Channel(channel) => self.intern(channel),
            Audience::Channels(channels) => channels.iter_mut().for_each(|c| self.intern(c)),
            Audience::Client(_) | Audience::All => {}
        }
        match &record.audience {
            Audience::All => self.to_all.push_back(seq),
            Audience::Client(_) => {}
            channels => {
                let grace = self.rings[ring].retention.until_closed;
                for channel in channels.channels() {
                    match self.by_channel.entry(channel.clone()) {
                        Entry::Occupied(mut seqs) => seqs.get_mut().push_back(seq),
                        Entry::Vacant(entry) => {
                            entry.insert(VecDeque::from([seq]));
                            let owner = self.namespaces.index_of(channel);
                            self.rings[owner].charge(channel_entry_cost_bytes(channel));
                        }
                    }
                    if grace.is_some() {
                        self.note_closing(channel, ring, &record);
                    }
                }
            }
        }
        let is_publisher_id = record.is_publisher_id();
        let is_position_id = self.own_position(record.id()) == Some(seq);
        record.set_position_id(is_position_id);
        self.rings[ring].push(record);
        let (rings, hasher, renamed) = (&self.rings, &self.hasher, &self.renamed);
        let at = |seq: u64| record_at(rings, seq).expect("indexed records are in history");
        if !is_position_id {
            self.index
                .insert_unique(hash, seq, |seq| hasher.hash_one(at(*seq).id()));
        }
        if is_publisher_id {
            let record = at(seq);
            let hash = hasher.hash_one((&record.audience, publisher_id_in(renamed, record)));
            self.by_publisher_id.insert_unique(hash, seq, |seq| {
                let r = at(*seq);
                hasher.hash_one((&r.audience, publisher_id_in(renamed, r)))
            });
        }
    }

    /// Makes `channel` share the name the per-channel index holds, if it holds one.
    fn intern(&self, channel: &mut ChannelName) {
        if let Some((name, _)) = self.by_channel.get_key_value(channel) {
            *channel = name.clone();
        }
    }

    /// Makes room in the id indexes for `additional` more records, so a recovery that knows how
    /// many it holds does not rehash them again and again as they grow. Does nothing once
    /// history holds records (then they would have to be rehashed here).
    pub(crate) fn reserve(&mut self, additional: usize) {
        if self.len() == 0 {
            self.index.reserve(additional, |_| 0);
            self.by_publisher_id.reserve(additional, |_| 0);
        }
    }

    /// Keeps the closing (or reopening) of `channel` of an `until_closed` namespace.
    fn note_closing(&mut self, channel: &ChannelName, ring: NamespaceIndex, record: &Record) {
        if !record.is_close() {
            self.closed_at.remove(channel);
            return;
        }
        self.closed_at.insert(channel.clone(), record.published_ms);
        self.closings
            .push_back((record.published_ms, channel.clone(), ring));
        if self.closings.len() > self.rings[ring].retention.max_events {
            // More closings waiting than the namespace holds events: the oldest ends early.
            if let Some((closed_ms, channel, ring)) = self.closings.pop_front() {
                if self.closed_at.get(&channel) == Some(&closed_ms) {
                    let dropped = self.end_grace(&channel, ring);
                    self.dropped_early.extend(dropped);
                }
            }
        }
    }

    /// Forgets the indexes' entries for `record` as it leaves history.
    fn unindex(&mut self, record: &Record) {
        let seq = record.seq;
        if !record.is_position_id() {
            let hash = self.hasher.hash_one(record.id());
            if let Ok(slot) = self.index.find_entry(hash, |s| *s == seq) {
                slot.remove();
            }
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
            Audience::All => remove_seq(&mut self.to_all, seq),
            Audience::Client(_) => {}
            channels => {
                for channel in channels.channels() {
                    if let Some(seqs) = self.by_channel.get_mut(channel) {
                        remove_seq(seqs, seq);
                        if seqs.is_empty() {
                            self.by_channel.remove(channel);
                            let owner = self.namespaces.index_of(channel);
                            self.rings[owner].discharge(channel_entry_cost_bytes(channel));
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

    /// Drops, in every namespace, the oldest records until its limits hold, and the records of
    /// channels whose grace ended. Returns what left.
    pub(crate) fn trim(&mut self, now: Instant) -> Dropped {
        let now_ms = self.ms_since_origin(now);
        let mut seqs = std::mem::take(&mut self.dropped_early);
        while let Some((closed_ms, _, ring)) = self.closings.front() {
            let grace = self.rings[*ring].retention.until_closed.unwrap_or_default();
            let grace_ms = u64::try_from(grace.as_millis()).unwrap_or(u64::MAX);
            if now_ms.saturating_sub(*closed_ms) < grace_ms {
                break;
            }
            let (closed_ms, channel, ring) = self.closings.pop_front().expect("seen");
            if self.closed_at.get(&channel) == Some(&closed_ms) {
                seqs.extend(self.end_grace(&channel, ring));
            }
        }
        let mut lost = Vec::new();
        for i in 0..self.rings.len() {
            if self.rings[i].is_over(now_ms) {
                lost.push((self.ring_names[i].clone(), 0));
            }
            while self.rings[i].is_over(now_ms) {
                let record = self.rings[i]
                    .pop_front()
                    .expect("an over-full ring has records");
                self.unindex(&record);
                self.rings[i].lost_through = record.seq;
                seqs.push(record.seq);
            }
            if let Some((name, mark)) = lost.last_mut() {
                if **name == *self.ring_names[i] {
                    *mark = self.rings[i].lost_through;
                }
            }
        }
        if self.len() == 0 && self.index.capacity() > 1024 {
            self.index.shrink_to_fit(|_| 0);
            self.by_publisher_id.shrink_to_fit(|_| 0);
            self.to_all.shrink_to_fit();
            self.by_channel.shrink_to_fit();
        }
        let below = self.first_seq().unwrap_or(self.next_seq);
        seqs.retain(|seq| *seq >= below);
        Dropped { below, seqs, lost }
    }

    /// The grace of closed `channel` ended: its records leave, except those addressed to
    /// another channel that is still open. Returns their positions.
    fn end_grace(&mut self, channel: &ChannelName, ring: NamespaceIndex) -> Vec<u64> {
        self.closed_at.remove(channel);
        let Some(seqs) = self.by_channel.get(channel).cloned() else {
            return Vec::new();
        };
        let mut dropped = Vec::new();
        for seq in seqs {
            let is_held_open = self.rings[ring].get(seq).is_some_and(|r| {
                r.audience
                    .channels()
                    .iter()
                    .any(|c| c != channel && !self.closed_at.contains_key(c))
            });
            if is_held_open {
                continue;
            }
            if let Some(record) = self.rings[ring].remove(seq) {
                self.unindex(&record);
                dropped.push(seq);
            }
        }
        dropped
    }

    /// Events held, in every namespace.
    pub(crate) fn len(&self) -> usize {
        self.rings.iter().map(Ring::len).sum()
    }

    /// Bytes held, in every namespace.
    pub(crate) fn bytes(&self) -> usize {
        self.rings.iter().map(Ring::bytes).sum()
    }
}

/// The record at `seq` in whichever ring holds it.
fn record_at(rings: &[Ring], seq: u64) -> Option<&Record> {
    rings.iter().find_map(|ring| ring.get(seq))
}

/// Removes `seq` from an ascending list of positions (usually its front).
fn remove_seq(seqs: &mut VecDeque<u64>, seq: u64) {
    if seqs.front() == Some(&seq) {
        seqs.pop_front();
    } else if let Ok(index) = seqs.binary_search(&seq) {
        seqs.remove(index);
    }
}

/// Several rings' records after one position, merged into position order.
struct Merged<'a> {
    parts: Vec<std::iter::Peekable<Box<dyn Iterator<Item = &'a Record> + 'a>>>,
}

impl<'a> Iterator for Merged<'a> {
    type Item = &'a Record;

    fn next(&mut self) -> Option<&'a Record> {
        if let [only] = self.parts.as_mut_slice() {
            return only.next();
        }
        let (_, part) = self
            .parts
            .iter_mut()
            .enumerate()
            .filter_map(|(i, p)| p.peek().map(|r| (r.seq, i)))
            .min()?;
        self.parts[part].next()
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
    use crate::config::HistoryConfig;
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

    fn limits(max_events: usize) -> Arc<Namespaces> {
        history_of(HistoryConfig {
            max_events,
            ..HistoryConfig::default()
        })
    }

    fn history_of(config: HistoryConfig) -> Arc<Namespaces> {
        Arc::new(Namespaces::compile(&[], &config).expect("no namespaces is valid"))
    }

    const ALL: NamespaceMask = NamespaceMask::ALL;

    #[test]
    fn resume_finds_the_position_of_a_known_id_and_reads_what_follows() {
        let mut history = History::new(limits(10));
        for _ in 0..5 {
            push(&mut history, None);
        }
        let third = history.get(3).expect("in history").id().to_owned();
        let ReadStart::After(seq) = history.read_start(Some(&third), ALL) else {
            panic!("known id")
        };
        let seqs: Vec<u64> = history
            .after(seq, ALL)
            .expect("no gap")
            .map(|r| r.seq)
            .collect();
        assert_eq!(seqs, vec![4, 5]);
    }

    #[test]
    fn the_start_id_resumes_from_where_a_stream_opened() {
        let mut history = History::new(limits(3));
        let empty = history.start_id();
        assert_eq!(history.read_start(Some(&empty), ALL), ReadStart::After(0));
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
            history.read_start(Some(&after_publisher_id), ALL),
            ReadStart::After(2)
        );
        for _ in 0..3 {
            push(&mut history, None);
        }
        assert_eq!(
            history.read_start(Some(&empty), ALL),
            ReadStart::Unknown,
            "position 0 is no longer readable: events after it left history"
        );
        let head = history.head_seq();
        assert_eq!(
            history.read_start(Some(&format!("{}-{}", history.epoch, head + 1)), ALL),
            ReadStart::Unknown,
            "a position not reached yet names nothing"
        );
        let other = History::new(limits(3));
        assert_eq!(other.read_start(Some(&empty), ALL), ReadStart::Unknown);
    }

    #[test]
    fn trimming_by_count_forgets_ids_and_reports_the_gap() {
        let mut history = History::new(limits(3));
        push(&mut history, Some("first"));
        for _ in 0..4 {
            push(&mut history, None);
        }
        assert_eq!(history.len(), 3);
        assert_eq!(history.read_start(Some("first"), ALL), ReadStart::Unknown);
        assert!(history.after(1, ALL).is_none(), "position 2 left history");
        assert!(
            history.after(2, ALL).is_some(),
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
        let mut history = History::new(history_of(HistoryConfig {
            max_age: std::time::Duration::from_secs(1),
            max_events: 10,
            ..HistoryConfig::default()
        }));
        push(&mut history, None);
        let dropped = history.trim(Instant::now() + std::time::Duration::from_secs(2));
        assert_eq!((dropped.below, dropped.seqs), (2, vec![]));
        assert!(
            dropped
                .lost
                .iter()
                .any(|(name, seq)| &**name == DIRECT_RING_NAME && *seq == 1),
            "the loss is reported for the log to keep: {:?}",
            dropped.lost
        );
        assert_eq!(history.len(), 0);
        assert_eq!(history.bytes(), 0);
    }

    fn push_to(history: &mut History, channel: &str) -> u64 {
        let seq = history.next_seq();
        let id = history.assign_id(seq);
        let data = EventData::text("x");
        let draft = Draft {
            id: &id,
            is_publisher_id: false,
            event: None,
            data: &data,
            kind: RecordKind::Event,
            is_private: false,
            retry: None,
        };
        // Parsed per publish, as the HTTP layer does: an allocation of its own.
        let channel = ChannelName::new(channel).expect("valid");
        let now = history.ms_since_origin(Instant::now());
        let record = history.record(seq, &draft, Audience::Channel(channel), now);
        history.append(record, None);
        history.trim(Instant::now());
        seq
    }

    #[test]
    fn an_id_the_history_assigned_is_found_without_the_id_index_even_after_a_new_epoch() {
        let mut history = History::new(limits(10));
        push(&mut history, None);
        push(&mut history, Some("order-7"));
        let assigned = history.get(1).expect("held").id().to_owned();
        assert_eq!(history.index.len(), 1, "only the publisher's id is indexed");
        assert_eq!(history.get_by_id(&assigned).map(|r| r.seq), Some(1));
        assert_eq!(history.get_by_id("order-7").map(|r| r.seq), Some(2));
        let bytes = history.bytes();
        history.renew_epoch();
        assert_eq!(
            history.get_by_id(&assigned).map(|r| r.seq),
            Some(1),
            "an event keeps its id under a new epoch"
        );
        assert!(history.bytes() > bytes, "its index slot is counted now");
        assert_ne!(
            history.position_id(1),
            assigned,
            "position ids name nothing of before"
        );
        for _ in 0..10 {
            push(&mut history, None);
        }
        assert!(history.get_by_id(&assigned).is_none(), "it left history");
        assert_eq!(history.index.len(), 0);
    }

    #[test]
    fn records_of_one_channel_share_its_name_and_count_it_once() {
        let mut history = History::new(limits(3));
        push_to(&mut history, "prices");
        let one = history.bytes();
        push_to(&mut history, "prices");
        let two = history.bytes() - one;
        let names: Vec<*const u8> = (1..=2)
            .map(|seq| {
                history.get(seq).expect("held").audience.channels()[0]
                    .as_str()
                    .as_ptr()
            })
            .collect();
        assert_eq!(
            names[0], names[1],
            "the second record holds the first one's name"
        );
        let name = ChannelName::new("prices").expect("valid");
        assert_eq!(one - two, channel_entry_cost_bytes(&name));
        for _ in 0..3 {
            push_to(&mut history, "other");
        }
        assert_eq!(history.len(), 3);
        assert_eq!(
            history.by_channel.len(),
            1,
            "prices left with its last record"
        );
        let other = ChannelName::new("other").expect("valid");
        assert_eq!(
            history.bytes(),
            3 * history.get(history.head_seq()).expect("held").cost_bytes()
                + channel_entry_cost_bytes(&other),
            "a channel is counted once, and not once it left"
        );
    }

    #[test]
    fn packed_frames_read_back_and_are_counted_near_their_length() {
        let mut history = History::new(limits(1000));
        for _ in 0..1000 {
            push_to(&mut history, "prices");
        }
        let record = history.get(500).expect("held");
        assert!(record.is_packed());
        assert_eq!(record.data(), "x");
        assert_eq!(record.id(), history.position_id(500));
        assert!(
            record.cost_bytes() < std::mem::size_of::<Record>() + record.frame_bytes().len() + 24,
            "a packed frame costs near its length: {}",
            record.cost_bytes()
        );
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
        let mut history = History::new(history_of(HistoryConfig {
            max_events: EVENTS,
            max_bytes: usize::MAX,
            ..HistoryConfig::default()
        }));
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
            // A channel name as a publish parses it: a new allocation each time.
            let channel = ChannelName::new(channel.as_str()).expect("valid");
            let record = history.record(seq, &draft, Audience::Channel(channel), now);
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
