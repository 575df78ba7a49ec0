//! One namespace's share of history: its records in position order, what they cost, and what it
//! lost.
//!
//! Owns the slots of one namespace (positions are global and grow, but a namespace holds only
//! some of them, so they are not contiguous here), removal from the middle (a channel whose grace
//! ended) as holes compacted in bulk, the caps of its [`Retention`], and where its frames live
//! (packed by its [`FrameArena`] when records leave oldest first). It never indexes ids or
//! channels (history does) and never decides which namespace a record belongs to.
//!
//! The slots are reserved up front for the ring's event cap (up to [`RESERVED_SLOTS_MAX`]), so a
//! full ring has no spare capacity from growth by doubling; the reservation is address space
//! until records fill it.

use super::frames::FrameArena;
use crate::{namespace::Retention, record::Record};
use std::collections::VecDeque;

/// Most slots reserved when a ring is made (80 bytes each); a ring allowed more grows by doubling
/// beyond them.
const RESERVED_SLOTS_MAX: usize = 2 << 20;

/// Holes are compacted away once they outnumber live records by this many: removal from the
/// middle stays amortized O(1) and a ring never holds more than twice its records plus this.
const HOLES_SLACK: usize = 64;

/// A record, or the hole it left when it was removed from the middle.
#[derive(Debug)]
enum Slot {
    Live(Record),
    Gone(u64),
}

impl Slot {
    fn seq(&self) -> u64 {
        match self {
            Self::Live(record) => record.seq,
            Self::Gone(seq) => *seq,
        }
    }

    fn live(&self) -> Option<&Record> {
        match self {
            Self::Live(record) => Some(record),
            Self::Gone(_) => None,
        }
    }
}

/// One namespace's records, oldest first. The front slot is always a live record.
#[derive(Debug)]
pub(super) struct Ring {
    slots: VecDeque<Slot>,
    live: usize,
    bytes: usize,
    pub(super) retention: Retention,
    /// Where small frames are packed; `None` for a ring that removes records from the middle (a
    /// packed frame there could keep a whole block alive).
    pub(super) frames: Option<FrameArena>,
    /// The newest position this ring dropped before its time (caps, count, age): a reader of its
    /// channels that last saw an earlier position has a gap. A channel whose grace ended is not
    /// a loss (it is closed and gone for everyone).
    pub(super) lost_through: u64,
}

impl Ring {
    pub(super) fn new(retention: Retention) -> Self {
        Self {
            slots: VecDeque::with_capacity(reserved_slots(&retention)),
            live: 0,
            bytes: 0,
            frames: retention.until_closed.is_none().then(FrameArena::default),
            retention,
            lost_through: 0,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.live
    }

    pub(super) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Counts `bytes` held for this ring outside its records (an entry of history's indexes).
    pub(super) fn charge(&mut self, bytes: usize) {
        self.bytes += bytes;
    }

    /// Stops counting `bytes` charged with [`Self::charge`].
    pub(super) fn discharge(&mut self, bytes: usize) {
        self.bytes -= bytes;
    }

    pub(super) fn front(&self) -> Option<&Record> {
        self.slots.front().and_then(Slot::live)
    }

    /// Where `seq` is: O(1) while the ring holds every position since its front (one namespace,
    /// no holes), else a binary search.
    fn index_of(&self, seq: u64) -> Option<usize> {
        let first = self.slots.front()?.seq();
        let guess = usize::try_from(seq.checked_sub(first)?).ok()?;
        if self.slots.get(guess).is_some_and(|s| s.seq() == seq) {
            return Some(guess);
        }
        self.slots.binary_search_by_key(&seq, Slot::seq).ok()
    }

    pub(super) fn get(&self, seq: u64) -> Option<&Record> {
        self.slots.get(self.index_of(seq)?)?.live()
    }

    pub(super) fn push(&mut self, record: Record) {
        debug_assert!(self.slots.back().is_none_or(|s| s.seq() < record.seq));
        self.live += 1;
        self.bytes += record.cost_bytes();
        self.slots.push_back(Slot::Live(record));
    }

    /// Changes the record at `seq` with `change`, keeping the count of bytes in step with what
    /// it costs after.
    pub(super) fn update(&mut self, seq: u64, change: impl FnOnce(&mut Record)) {
        let Some(Slot::Live(record)) = self.index_of(seq).map(|i| &mut self.slots[i]) else {
            return;
        };
        self.bytes -= record.cost_bytes();
        change(record);
        self.bytes += record.cost_bytes();
    }

    /// Records after position `after`, oldest first.
    pub(super) fn after(&self, after: u64) -> impl Iterator<Item = &Record> {
        let start = self.slots.partition_point(|s| s.seq() <= after);
        self.slots.range(start..).filter_map(Slot::live)
    }

    /// Whether the oldest record must leave for the caps or the age to hold (`now_ms` and the
    /// records' times share one origin).
    pub(super) fn is_over(&self, now_ms: u64) -> bool {
        let Some(front) = self.front() else {
            return false;
        };
        let max_age_ms = self.retention.max_age.map_or(u64::MAX, |age| {
            u64::try_from(age.as_millis()).unwrap_or(u64::MAX)
        });
        self.live > self.retention.max_events
            || self.bytes > self.retention.max_bytes
            || now_ms.saturating_sub(front.published_ms) > max_age_ms
    }

    /// Takes the oldest record out.
    pub(super) fn pop_front(&mut self) -> Option<Record> {
        let Some(Slot::Live(record)) = self.slots.pop_front() else {
            return None;
        };
        self.forget(&record);
        self.drop_front_holes();
        Some(record)
    }

    /// Takes the record at `seq` out, leaving a hole.
    pub(super) fn remove(&mut self, seq: u64) -> Option<Record> {
        let index = self.index_of(seq)?;
        let slot = std::mem::replace(&mut self.slots[index], Slot::Gone(seq));
        let Slot::Live(record) = slot else {
            return None;
        };
        self.forget(&record);
        self.drop_front_holes();
        if self.slots.len() > 2 * self.live + HOLES_SLACK {
            self.slots.retain(|s| matches!(s, Slot::Live(_)));
        }
        Some(record)
    }

    fn forget(&mut self, record: &Record) {
        self.live -= 1;
        self.bytes -= record.cost_bytes();
    }

    fn drop_front_holes(&mut self) {
        while matches!(self.slots.front(), Some(Slot::Gone(_))) {
            self.slots.pop_front();
        }
        if self.slots.is_empty() && self.slots.capacity() > 1024 {
            // Give the memory back; a fresh reservation is address space until used again.
            self.slots = VecDeque::new();
            self.slots.reserve_exact(reserved_slots(&self.retention));
        }
    }
}

/// Slots a ring reserves: its event cap, and the one record appended before a trim.
fn reserved_slots(retention: &Retention) -> usize {
    retention.max_events.min(RESERVED_SLOTS_MAX) + 1
}
