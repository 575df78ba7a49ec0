//! One client of `restart`: its stream, its bitmap of events, and its reconnects with
//! `Last-Event-ID` after the hub is killed; plus what the clients, the publisher and the run share.
//!
//! It records what arrived and when; it does not judge the run (`restart` does).

use crate::subscriber::Subscriber;
use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};
use tokio::sync::watch;

/// Shared between the publisher, the clients and the run.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) epoch: Instant,
    /// Events acknowledged so far; acknowledged events are numbered 0, 1, 2… in order.
    pub(crate) acked: AtomicU64,
    /// Set at the kill: clients whose stream ends from then on count as cut.
    pub(crate) killed: AtomicBool,
    /// Set when the run is over: clients stop.
    pub(crate) stop: AtomicBool,
    pub(crate) cut: AtomicUsize,
    pub(crate) back: AtomicUsize,
    pub(crate) caught_up: AtomicUsize,
}

impl Shared {
    pub(crate) fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }
}

/// What one client saw.
#[derive(Debug, Default)]
pub(crate) struct Client {
    pub(crate) seen: Vec<u64>,
    /// Every event below this one has arrived.
    pub(crate) prefix: u64,
    pub(crate) distinct: u64,
    pub(crate) duplicates: u64,
    pub(crate) last_id: Option<String>,
    /// Events acknowledged when the client came back: what it must have to be caught up.
    pub(crate) owed: Option<u64>,
    pub(crate) was_cut: bool,
    pub(crate) back_ns: u64,
    pub(crate) caught_up_ns: u64,
    /// Events received after coming back that were published before it.
    pub(crate) replayed: u64,
    pub(crate) failed_attempts: u64,
    /// Why attempts failed, by the error's first line, with counts.
    pub(crate) failures: std::collections::BTreeMap<String, u64>,
    pub(crate) resumed_false: u64,
}

impl Client {
    pub(crate) fn has(&self, seq: u64) -> bool {
        self.seen
            .get((seq / 64) as usize)
            .is_some_and(|word| word & (1 << (seq % 64)) != 0)
    }

    /// Whether every event below `count` arrived; advances the known complete prefix.
    fn has_all_below(&mut self, count: u64) -> bool {
        while self.prefix < count && self.has(self.prefix) {
            self.prefix += 1;
        }
        self.prefix >= count
    }

    fn record(&mut self, seq: u64, sent_ns: u64) {
        let word = (seq / 64) as usize;
        if self.seen.len() <= word {
            self.seen.resize(word + 1, 0);
        }
        if self.seen[word] & (1 << (seq % 64)) != 0 {
            self.duplicates += 1;
            return;
        }
        self.seen[word] |= 1 << (seq % 64);
        self.distinct += 1;
        if self.back_ns > 0 && sent_ns < self.back_ns {
            self.replayed += 1;
        }
    }
}

/// A small deterministic spread (splitmix64) for reconnect delays.
fn spread(seed: u64, max: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (z ^ (z >> 31)) % max.max(1)
}

/// Where and how a client reconnects.
#[derive(Debug, Clone)]
pub(crate) struct Reconnect {
    /// The nodes it may reconnect to, taking turns.
    pub(crate) addrs: Vec<SocketAddr>,
    /// The stream's path.
    pub(crate) path: String,
    /// The longest first delay, and the pause between failed attempts.
    pub(crate) retry: Duration,
}

/// One client (number `index`, first on node `first`): reads its stream, and after a cut
/// reconnects with `Last-Event-ID` as `reconnect` says until the run stops.
pub(crate) async fn client(
    (index, first): (usize, usize),
    reconnect: Reconnect,
    shared: Arc<Shared>,
    mut subscriber: Subscriber,
    mut stop_rx: watch::Receiver<bool>,
) -> Client {
    let Reconnect { addrs, path, retry } = reconnect;
    let mut state = Client::default();
    let mut attempt = first;
    loop {
        let mut lines_ok = true;
        loop {
            let read = tokio::select! {
                read = subscriber.read() => read,
                _ = stop_rx.changed() => { lines_ok = false; Ok(true) }
            };
            if !lines_ok || !matches!(read, Ok(true)) {
                break;
            }
            let received_ns = shared.now_ns();
            let _ = subscriber.drain_lines(&mut |line| {
                if let Some(id) = line.strip_prefix(b"id: ") {
                    state.last_id = Some(String::from_utf8_lossy(id).into_owned());
                } else if let Some(data) = line.strip_prefix(b"data: ") {
                    if data.starts_with(b"{") {
                        if data.windows(15).any(|w| w == b"\"resumed\":false") {
                            state.resumed_false += 1;
                        }
                    } else if let Some((seq, sent_ns)) = parse_data(data) {
                        state.record(seq, sent_ns);
                    }
                }
            });
            if let Some(owed) = state.owed {
                if state.caught_up_ns == 0 && state.has_all_below(owed) {
                    state.caught_up_ns = received_ns;
                    shared.caught_up.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        if shared.stop.load(Ordering::Relaxed) {
            return state;
        }
        // The stream was cut: close its socket before opening another, so a client never
        // holds two.
        drop(subscriber);
        if shared.killed.load(Ordering::Relaxed) && !state.was_cut {
            state.was_cut = true;
            shared.cut.fetch_add(1, Ordering::Relaxed);
        }
        tokio::time::sleep(Duration::from_millis(spread(
            index as u64,
            retry.as_millis() as u64,
        )))
        .await;
        let headers = state
            .last_id
            .as_ref()
            .map(|id| format!("Last-Event-ID: {id}\r\n"))
            .unwrap_or_default();
        subscriber = loop {
            if shared.stop.load(Ordering::Relaxed) {
                return state;
            }
            let addr = addrs[attempt % addrs.len()];
            attempt += 1;
            match Subscriber::open(addr, &path, &headers).await {
                Ok(subscriber) => break subscriber,
                Err(err) => {
                    state.failed_attempts += 1;
                    let why = format!("{:#}", err);
                    let why = why.lines().next().unwrap_or_default();
                    *state
                        .failures
                        .entry(why.chars().take(120).collect())
                        .or_default() += 1;
                    tokio::time::sleep(retry).await;
                }
            }
        };
        if state.was_cut && state.back_ns == 0 {
            state.back_ns = shared.now_ns();
            let owed = shared.acked.load(Ordering::Acquire);
            state.owed = Some(owed);
            shared.back.fetch_add(1, Ordering::Relaxed);
            if state.has_all_below(owed) {
                state.caught_up_ns = state.back_ns;
                shared.caught_up.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Parses `"<seq> <sent_ns>"`.
fn parse_data(data: &[u8]) -> Option<(u64, u64)> {
    let mut fields = std::str::from_utf8(data).ok()?.split(' ');
    Some((fields.next()?.parse().ok()?, fields.next()?.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_is_caught_up_only_with_every_event_it_is_owed() {
        let mut client = Client {
            back_ns: 100,
            ..Client::default()
        };
        client.record(0, 50);
        client.record(2, 150);
        client.record(2, 150);
        assert!(client.has_all_below(1));
        assert!(!client.has_all_below(3), "event 1 is missing");
        client.record(1, 60);
        assert!(client.has_all_below(3));
        assert_eq!((client.distinct, client.duplicates), (3, 1));
        assert_eq!(
            client.replayed, 2,
            "events 0 and 1 were published before it came back"
        );
    }
}
