//! The registry of live connections on this node: who is connected, and which channels each hears.
//!
//! Owns the maps channel → connections and client id → connection, and the fan-out of one encoded
//! event to every addressed queue. It never waits on a connection (pushes are `try`-style), never
//! encodes, and drops a channel's entry with its last subscriber so idle channels cost nothing.
//! A channel's entry appearing and going are what "occupied" and "vacated" mean: the
//! [`ChannelWatcher`], if any, is told of both. Every method runs under the hub's state lock. It
//! keeps the presence roster up to date as connections attach to and detach from channels (the
//! roster itself is `presence`'s).

use crate::{
    channel::ChannelName,
    client::{ClientShared, EndReason, PushOutcome},
    direct::Claims,
    event::ClientId,
    hooks::ChannelWatcher,
    presence::Roster,
    record::Audience,
    topic::may_read,
};
use bytes::Bytes;
use std::{
    collections::{hash_map, HashMap},
    sync::Arc,
    time::Instant,
};

/// What one delivery did.
#[derive(Debug)]
pub(crate) struct Delivered {
    /// Connections the event was queued to.
    pub(crate) recipients: usize,
    /// Connections cut because their queue was full, now unregistered.
    pub(crate) overflowed: Vec<Arc<ClientShared>>,
    /// Connections whose event waits for the hub's direct writer (see `direct`): the caller
    /// hands them over once it has released the hub's lock.
    pub(crate) claimed: Claims,
}

/// One registered connection and its channels.
#[derive(Debug)]
pub(crate) struct Entry {
    pub(crate) client: Arc<ClientShared>,
    pub(crate) channels: Vec<ChannelName>,
}

#[derive(Debug, Default)]
pub(crate) struct Fanout {
    entries: HashMap<u64, Entry>,
    key_by_id: HashMap<ClientId, u64>,
    by_channel: HashMap<ChannelName, HashMap<u64, Arc<ClientShared>>>,
    /// Keys of each user's connections, oldest first: the per-user limit closes from the front.
    by_user: HashMap<Arc<str>, Vec<u64>>,
    /// Connections per channel and user, for presence.
    roster: Roster,
    /// Told when a channel's entry appears (occupied) or goes (vacated).
    watcher: Option<Arc<dyn ChannelWatcher>>,
    /// Connections with a non-exact topic selector (`*`, a template, a pattern): checked for
    /// every event published to channels. Their exact selectors are in `by_channel`.
    by_pattern: HashMap<u64, Arc<ClientShared>>,
}

impl Fanout {
    /// An empty registry whose channels keep presence as `roster` decides.
    pub(crate) fn new(roster: Roster) -> Self {
        Self {
            roster,
            ..Self::default()
        }
    }

    pub(crate) fn roster(&self) -> &Roster {
        &self.roster
    }

    pub(crate) fn roster_mut(&mut self) -> &mut Roster {
        &mut self.roster
    }

    /// Tells `watcher` from now on when a channel is occupied or vacated on this node.
    pub(crate) fn set_watcher(&mut self, watcher: Arc<dyn ChannelWatcher>) {
        self.watcher = Some(watcher);
    }

    /// Adds `client` to `channel`'s subscribers and to the roster, telling the watcher when it is
    /// the first.
    fn attach(&mut self, channel: &ChannelName, key: u64, client: Arc<ClientShared>) {
        self.roster.attach(channel, client.user.as_ref());
        match self.by_channel.entry(channel.clone()) {
            hash_map::Entry::Occupied(mut subscribers) => {
                subscribers.get_mut().insert(key, client);
            }
            hash_map::Entry::Vacant(slot) => {
                slot.insert(HashMap::from([(key, client)]));
                if let Some(watcher) = &self.watcher {
                    watcher.occupied(channel);
                }
            }
        }
    }

    /// Registers a connection. A connection already holding the same client id is returned, so the
    /// caller can end it (the newer connection takes the id over).
    pub(crate) fn insert(
        &mut self,
        client: Arc<ClientShared>,
        channels: Vec<ChannelName>,
    ) -> Option<Arc<ClientShared>> {
        let key = client.key;
        let replaced = self
            .key_by_id
            .insert(client.id.clone(), key)
            .and_then(|old| self.remove_entry(old, false));
        for channel in &channels {
            self.attach(channel, key, client.clone());
        }
        if let Some(user) = &client.user {
            self.by_user.entry(user.clone()).or_default().push(key);
        }
        if client.filter.as_ref().is_some_and(|f| f.has_patterns()) {
            self.by_pattern.insert(key, client.clone());
        }
        self.entries.insert(key, Entry { client, channels });
        replaced.map(|entry| entry.client)
    }

    /// Removes a connection by key; `None` when it was already gone.
    pub(crate) fn remove(&mut self, key: u64) -> Option<Entry> {
        self.remove_entry(key, true)
    }

    fn remove_entry(&mut self, key: u64, drop_id: bool) -> Option<Entry> {
        let entry = self.entries.remove(&key)?;
        for channel in &entry.channels {
            self.detach(channel, key);
        }
        self.by_pattern.remove(&key);
        if drop_id && self.key_by_id.get(&entry.client.id) == Some(&key) {
            self.key_by_id.remove(&entry.client.id);
        }
        if let Some(user) = &entry.client.user {
            if let Some(keys) = self.by_user.get_mut(user) {
                keys.retain(|k| *k != key);
                if keys.is_empty() {
                    self.by_user.remove(user);
                }
            }
        }
        Some(entry)
    }

    /// Unregisters `user`'s oldest connections until fewer than `max` remain, so one more fits.
    /// `spare` (the connection a new one is about to replace by client id) is neither counted nor
    /// removed. Returns the removed entries, oldest first; the caller ends them.
    pub(crate) fn evict_oldest_of_user(
        &mut self,
        user: &str,
        max: usize,
        spare: Option<u64>,
    ) -> Vec<Entry> {
        let Some(keys) = self.by_user.get(user) else {
            return Vec::new();
        };
        let counted: Vec<u64> = keys.iter().copied().filter(|k| Some(*k) != spare).collect();
        let excess = (counted.len() + 1).saturating_sub(max);
        counted
            .into_iter()
            .take(excess)
            .filter_map(|key| self.remove(key))
            .collect()
    }

    fn detach(&mut self, channel: &ChannelName, key: u64) {
        if let Some(subscribers) = self.by_channel.get_mut(channel) {
            if let Some(client) = subscribers.remove(&key) {
                self.roster
                    .detach(channel, client.user.as_ref(), Instant::now());
            }
            if subscribers.is_empty() {
                self.by_channel.remove(channel);
                if let Some(watcher) = &self.watcher {
                    watcher.vacated(channel);
                }
            }
        }
    }

    pub(crate) fn key_of(&self, id: &ClientId) -> Option<u64> {
        self.key_by_id.get(id).copied()
    }

    pub(crate) fn get_by_id(&self, id: &ClientId) -> Option<&Entry> {
        self.key_of(id).and_then(|key| self.entries.get(&key))
    }

    /// Adds a channel to a live connection. Returns false when the connection is unknown.
    pub(crate) fn subscribe(&mut self, key: u64, channel: ChannelName) -> bool {
        let Some(entry) = self.entries.get_mut(&key) else {
            return false;
        };
        if !entry.channels.contains(&channel) {
            let client = entry.client.clone();
            entry.channels.push(channel.clone());
            self.attach(&channel, key, client);
        }
        true
    }

    /// Removes a channel from a live connection. Returns whether it was subscribed.
    pub(crate) fn unsubscribe(&mut self, key: u64, channel: &ChannelName) -> bool {
        let Some(entry) = self.entries.get_mut(&key) else {
            return false;
        };
        let Some(pos) = entry.channels.iter().position(|c| c == channel) else {
            return false;
        };
        entry.channels.swap_remove(pos);
        self.detach(channel, key);
        true
    }

    /// Queues `frame` (the event at `seq`) to every connection `target` addresses, each at most
    /// once. Connections whose queue overflows are ended and unregistered (and returned, so the
    /// hub records them as departed).
    ///
    /// An event to channels reaches the channels' subscribers (indexed) and the connections
    /// whose topic selectors select one of the channels (each selector checked once per event:
    /// the cost of routing is one hash lookup per channel plus one match per non-exact selector
    /// on this node). A private event reaches only connections granted one of its channels; a
    /// broadcast to everyone reaches only connections without topic selectors. With `may_claim`,
    /// connections whose task sleeps are claimed for the direct writer (see `direct`).
    pub(crate) fn deliver(
        &mut self,
        audience: &Audience,
        seq: u64,
        frame: &Bytes,
        capacity: usize,
        is_private: bool,
        may_claim: bool,
    ) -> Delivered {
        let mut recipients = 0;
        let mut overflowed = Vec::new();
        let mut claimed = Vec::new();
        let mut push =
            |client: &Arc<ClientShared>| match client.push_event(seq, frame, capacity, may_claim) {
                PushOutcome::Queued => recipients += 1,
                PushOutcome::Claimed => {
                    recipients += 1;
                    claimed.push(client.clone());
                }
                PushOutcome::Overflowed => overflowed.push(client.key),
                PushOutcome::AlreadyQueued | PushOutcome::Ended => {}
            };
        match audience {
            Audience::Channel(_) | Audience::Channels(_) => {
                let topics = audience.channels();
                let may_read = |client: &&Arc<ClientShared>| {
                    may_read(client.filter.as_deref(), topics, is_private)
                };
                for channel in topics {
                    self.by_channel
                        .get(channel)
                        .into_iter()
                        .flat_map(HashMap::values)
                        .filter(may_read)
                        .for_each(&mut push);
                }
                self.by_pattern
                    .values()
                    .filter(|client| {
                        client
                            .filter
                            .as_ref()
                            .is_some_and(|f| f.selects_by_pattern(topics))
                    })
                    .filter(may_read)
                    .for_each(&mut push);
            }
            Audience::Client(id) => {
                if let Some(entry) = self.get_by_id(id) {
                    push(&entry.client);
                }
            }
            Audience::All => self
                .entries
                .values()
                .filter(|entry| entry.client.filter.is_none())
                .for_each(|entry| push(&entry.client)),
        }
        let overflowed = overflowed
            .into_iter()
            .filter_map(|key| self.remove(key))
            .map(|entry| entry.client)
            .collect();
        Delivered {
            recipients,
            overflowed,
            claimed,
        }
    }

    /// Queues `frame` (presence events, kept in no history) to every connection on `channel` that
    /// asked for presence. Connections whose queue overflows are ended, unregistered and returned.
    pub(crate) fn deliver_presence(
        &mut self,
        channel: &ChannelName,
        frame: &Bytes,
        capacity: usize,
    ) -> Vec<Arc<ClientShared>> {
        let overflowed: Vec<u64> = self
            .by_channel
            .get(channel)
            .into_iter()
            .flat_map(HashMap::values)
            .filter(|client| client.wants_presence)
            .filter(|client| client.push_transient(frame, capacity) == PushOutcome::Overflowed)
            .map(|client| client.key)
            .collect();
        overflowed
            .into_iter()
            .filter_map(|key| self.remove(key))
            .map(|entry| entry.client)
            .collect()
    }

    /// Ends every connection on `channel` after its final event: a single-channel stream ends,
    /// a multi-channel stream only leaves the channel.
    pub(crate) fn close_channel(&mut self, channel: &ChannelName) {
        let Some(subscribers) = self.by_channel.remove(channel) else {
            return;
        };
        let now = Instant::now();
        for client in subscribers.values() {
            self.roster.detach(channel, client.user.as_ref(), now);
        }
        if let Some(watcher) = &self.watcher {
            watcher.vacated(channel);
        }
        for key in subscribers.into_keys() {
            let Some(entry) = self.entries.get_mut(&key) else {
                continue;
            };
            entry.channels.retain(|c| c != channel);
            if entry.channels.is_empty() {
                entry.client.end(EndReason::ChannelClosed, true);
                self.remove(key);
            }
        }
    }

    pub(crate) fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.entries.values()
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Each channel with its subscriber count.
    pub(crate) fn channel_counts(&self) -> impl Iterator<Item = (&ChannelName, usize)> {
        self.by_channel
            .iter()
            .map(|(channel, subscribers)| (channel, subscribers.len()))
    }

    /// How many connections hear `channel` (one hash lookup).
    pub(crate) fn subscriber_count(&self, channel: &ChannelName) -> usize {
        self.by_channel
            .get(channel)
            .map_or(0, |subscribers| subscribers.len())
    }

    pub(crate) fn subscribers(&self, channel: &ChannelName) -> impl Iterator<Item = &Entry> {
        self.by_channel
            .get(channel)
            .into_iter()
            .flat_map(|subscribers| subscribers.keys())
            .filter_map(|key| self.entries.get(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connect(fanout: &mut Fanout, key: u64, user: &str) {
        let id = ClientId::new(&format!("c{key}")).expect("valid id");
        let client = Arc::new(ClientShared::new(
            key,
            id,
            Some(Arc::from(user)),
            None,
            None,
        ));
        fanout.insert(client, Vec::new());
    }

    #[test]
    fn a_user_at_the_limit_loses_its_oldest_connections_first() {
        let mut fanout = Fanout::default();
        for key in 1..=3 {
            connect(&mut fanout, key, "ann");
        }
        connect(&mut fanout, 4, "bob");
        let evicted = fanout.evict_oldest_of_user("ann", 2, None);
        let keys: Vec<u64> = evicted.iter().map(|e| e.client.key).collect();
        assert_eq!(keys, [1, 2]);
        assert_eq!(fanout.len(), 2);
        assert!(fanout.evict_oldest_of_user("bob", 2, None).is_empty());
    }

    #[test]
    fn the_connection_about_to_be_replaced_is_not_counted() {
        let mut fanout = Fanout::default();
        connect(&mut fanout, 1, "ann");
        connect(&mut fanout, 2, "ann");
        assert!(fanout.evict_oldest_of_user("ann", 2, Some(1)).is_empty());
        fanout.remove(1);
        fanout.remove(2);
        assert!(
            fanout.by_user.is_empty(),
            "a user's entry goes with its last connection"
        );
    }

    /// Records occupancy changes, as webhooks would queue them.
    #[derive(Debug, Default)]
    struct Recorder(std::sync::Mutex<Vec<String>>);

    impl ChannelWatcher for Recorder {
        fn occupied(&self, channel: &ChannelName) {
            self.0.lock().expect("lock").push(format!("+{channel}"));
        }
        fn vacated(&self, channel: &ChannelName) {
            self.0.lock().expect("lock").push(format!("-{channel}"));
        }
        fn presence_changed(&self, _: &ChannelName, _: &[&str], _: &[&str]) {}
    }

    fn channel(name: &str) -> ChannelName {
        ChannelName::new(name).expect("valid channel")
    }

    fn client(key: u64) -> Arc<ClientShared> {
        let id = ClientId::new(&format!("c{key}")).expect("valid id");
        Arc::new(ClientShared::new(key, id, None, None, None))
    }

    #[test]
    fn the_watcher_hears_a_channels_first_subscriber_and_its_last() {
        let recorder = Arc::new(Recorder::default());
        let mut fanout = Fanout::default();
        fanout.set_watcher(recorder.clone());
        fanout.insert(client(1), vec![channel("a"), channel("b")]);
        fanout.insert(client(2), vec![channel("a")]);
        fanout.subscribe(2, channel("c"));
        fanout.subscribe(2, channel("c"));
        fanout.remove(1);
        fanout.unsubscribe(2, &channel("c"));
        fanout.close_channel(&channel("a"));
        assert_eq!(
            *recorder.0.lock().expect("lock"),
            ["+a", "+b", "+c", "-b", "-c", "-a"]
        );
    }
}
