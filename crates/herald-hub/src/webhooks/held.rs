//! The hold on `channel_vacated` notices: each waits out the vacated delay, and one whose channel
//! is occupied again meanwhile is dropped with that `channel_occupied`.
//!
//! Owns the held notices and their release order, bounded by the queue's capacity. It never
//! sends anything and never reads the clock except to stamp a hold (the sender asks what is
//! due).

use super::Notice;
use crate::ChannelName;
use std::{
    collections::{HashMap, VecDeque},
    time::Duration,
};
use tokio::time::Instant;

/// `channel_vacated` notices held for the vacated delay; one for a channel occupied again
/// meanwhile is dropped with that `channel_occupied`. Holds at most the queue's capacity (past
/// it, a vacated goes out at once).
pub(super) struct Held {
    delay: Duration,
    capacity: usize,
    /// Release times in order (the delay is fixed, so arrival order is release order), with the
    /// channel and the hold's generation; an entry whose hold was cancelled is skipped.
    order: VecDeque<(Instant, ChannelName, u64)>,
    /// The live holds by channel: generation and notice.
    live: HashMap<ChannelName, (u64, Notice)>,
    next_generation: u64,
}

impl Held {
    pub(super) fn new(delay: Duration, capacity: usize) -> Self {
        Self {
            delay,
            capacity,
            order: VecDeque::new(),
            live: HashMap::new(),
            next_generation: 0,
        }
    }

    /// Holds a `channel_vacated`; gives it back when it must go now (no delay, or no room).
    pub(super) fn hold(&mut self, channel: ChannelName, notice: Notice) -> Option<Notice> {
        if self.delay.is_zero() || self.live.len() >= self.capacity {
            return Some(notice);
        }
        self.next_generation += 1;
        let generation = self.next_generation;
        self.order
            .push_back((Instant::now() + self.delay, channel.clone(), generation));
        self.live.insert(channel, (generation, notice));
        None
    }

    /// Drops the held `channel_vacated` of `channel`, if any: true when there was one (then the
    /// `channel_occupied` that cancels it is dropped too).
    pub(super) fn cancel(&mut self, channel: &ChannelName) -> bool {
        self.live.remove(channel).is_some()
    }

    /// When the next hold ends, if any.
    pub(super) fn next_release(&self) -> Option<Instant> {
        self.order.front().map(|(at, _, _)| *at)
    }

    /// Moves every hold that has ended (and, past twice the capacity of entries, the oldest)
    /// into `batch`, oldest first.
    pub(super) fn release_due(&mut self, now: Instant, batch: &mut Vec<Notice>) {
        while let Some((at, _, _)) = self.order.front() {
            if *at > now && self.order.len() <= self.capacity.saturating_mul(2) {
                break;
            }
            let (_, channel, generation) = self.order.pop_front().expect("front exists");
            if self
                .live
                .get(&channel)
                .is_some_and(|(g, _)| *g == generation)
            {
                let (_, notice) = self.live.remove(&channel).expect("checked above");
                batch.push(notice);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vacated(name: &str) -> (ChannelName, Notice) {
        let channel = ChannelName::new(name).expect("valid channel");
        let notice = Notice::ChannelVacated {
            channel: channel.clone(),
            time_ms: 0,
        };
        (channel, notice)
    }

    fn channels_of(batch: &[Notice]) -> Vec<String> {
        batch
            .iter()
            .map(|n| serde_json::to_value(n).expect("serializable")["channel"].to_string())
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn a_vacated_is_held_then_released_unless_cancelled() {
        let mut held = Held::new(Duration::from_secs(5), 10);
        let (a, vacated_a) = vacated("a");
        let (b, vacated_b) = vacated("b");
        assert!(held.hold(a.clone(), vacated_a).is_none());
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(held.hold(b, vacated_b).is_none());
        assert!(held.cancel(&a), "a was occupied again within the hold");
        assert!(!held.cancel(&a));
        let mut batch = Vec::new();
        held.release_due(Instant::now(), &mut batch);
        assert!(batch.is_empty(), "nothing is due yet");
        tokio::time::advance(Duration::from_secs(5)).await;
        held.release_due(Instant::now(), &mut batch);
        assert_eq!(channels_of(&batch), ["\"b\""]);
        assert_eq!(held.next_release(), None);
    }

    #[test]
    fn without_a_delay_or_room_a_vacated_goes_out_at_once() {
        let (a, vacated_a) = vacated("a");
        assert!(Held::new(Duration::ZERO, 10).hold(a, vacated_a).is_some());
        let mut full = Held::new(Duration::from_secs(5), 1);
        let (a, vacated_a) = vacated("a");
        let (b, vacated_b) = vacated("b");
        assert!(full.hold(a, vacated_a).is_none());
        assert!(full.hold(b, vacated_b).is_some());
    }
}
