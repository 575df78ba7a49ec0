//! The roster: this node's count of connections per channel and user, and the coalescing of
//! joins and leaves.
//!
//! Owns the counts (kept up to date by `fanout` as connections attach to and detach from
//! channels, under the hub's lock), which users subscribers have been told are present
//! ("announced"), the linger that holds a leave back, and the set of entries changed since the
//! last tick. It never delivers, never encodes and never waits: [`Roster::drain`] hands the
//! tick's changes to the caller.
//!
//! Bound: an entry exists only for a (channel, user) pair with a live subscription on this node,
//! or one announced whose leave is lingering; lingering entries are capped at
//! [`LINGERING_MAX`] (past it, a leave is no longer held back: more events, never more memory).
//! Channels with an entry are channels with live subscribers (or a lingering leave).

use super::{Presence, PresenceChange, PresenceKind, PresenceUser};
use crate::{
    channel::ChannelName,
    namespace::{NamespaceRules, Namespaces},
};
use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::{Duration, Instant},
};

/// Most entries whose leave may linger at once; past it, a leave is sent at the next tick.
pub(crate) const LINGERING_MAX: usize = 65_536;

/// A user on a channel; `None` is every anonymous connection together (counted, never listed
/// nor announced).
pub(crate) type UserKey = Option<Arc<str>>;

#[derive(Debug, Default)]
struct Entry {
    connections: u32,
    /// Subscribers were told this user is here (a `join` went out, its `leave` has not).
    is_announced: bool,
    /// When the last connection ended, while a leave lingers.
    empty_since: Option<Instant>,
}

/// One (channel, user) count as it stands after a tick, for a log that shares counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Count {
    pub(crate) channel: ChannelName,
    pub(crate) user: UserKey,
    pub(crate) connections: u32,
    pub(crate) is_announced: bool,
}

/// What one tick took from the roster.
#[derive(Debug, Default)]
pub(crate) struct Drained {
    /// This node's joins and leaves, coalesced, in channel order.
    pub(crate) changes: Vec<PresenceChange>,
    /// The counts that changed (every count when `is_full`).
    pub(crate) counts: Vec<Count>,
    /// `counts` is the whole roster: anything not in it is zero on this node.
    pub(crate) is_full: bool,
}

/// This node's presence counts.
#[derive(Debug)]
pub(crate) struct Roster {
    /// `--presence on`: every channel keeps presence.
    is_enabled: bool,
    /// Channels of namespaces with `presence = true` keep it too.
    namespaces: Option<Arc<Namespaces>>,
    linger: Duration,
    channels: HashMap<ChannelName, HashMap<UserKey, Entry>>,
    /// Entries changed since the last tick, and entries whose leave lingers.
    dirty: HashSet<(ChannelName, UserKey)>,
    lingering: usize,
    /// Leaves sent without lingering because [`LINGERING_MAX`] was reached.
    linger_skipped_total: u64,
}

impl Default for Roster {
    fn default() -> Self {
        Self::new(false, Duration::ZERO)
    }
}

impl Roster {
    pub(crate) fn new(is_enabled: bool, linger: Duration) -> Self {
        Self {
            is_enabled,
            namespaces: None,
            linger,
            channels: HashMap::new(),
            dirty: HashSet::new(),
            lingering: 0,
            linger_skipped_total: 0,
        }
    }

    /// This roster, keeping presence also for the channels of `namespaces` whose rule says so.
    pub(crate) fn with_namespaces(mut self, namespaces: Arc<Namespaces>) -> Self {
        self.namespaces = Some(namespaces);
        self
    }

    /// Whether `channel` keeps presence: the hub-level setting, or its namespace's rule. The one
    /// place this is decided.
    pub(crate) fn presence_enabled(&self, channel: &ChannelName) -> bool {
        self.is_enabled
            || self
                .namespaces
                .as_ref()
                .is_some_and(|namespaces| namespaces.of(channel).presence())
    }

    /// Whether any channel may keep presence (the hub runs the presence tick).
    pub(crate) fn is_any_enabled(&self) -> bool {
        self.is_enabled
            || self
                .namespaces
                .as_ref()
                .is_some_and(|namespaces| namespaces.iter().any(NamespaceRules::presence))
    }

    /// A connection of `user` began hearing `channel`.
    pub(crate) fn attach(&mut self, channel: &ChannelName, user: Option<&Arc<str>>) {
        if !self.presence_enabled(channel) {
            return;
        }
        let key: UserKey = user.cloned();
        let entry = self
            .channels
            .entry(channel.clone())
            .or_default()
            .entry(key.clone())
            .or_default();
        entry.connections += 1;
        if entry.empty_since.take().is_some() {
            self.lingering -= 1;
        }
        self.dirty.insert((channel.clone(), key));
    }

    /// A connection of `user` stopped hearing `channel`.
    pub(crate) fn detach(&mut self, channel: &ChannelName, user: Option<&Arc<str>>, now: Instant) {
        if !self.presence_enabled(channel) {
            return;
        }
        let key: UserKey = user.cloned();
        let Some(entry) = self
            .channels
            .get_mut(channel)
            .and_then(|users| users.get_mut(&key))
        else {
            return;
        };
        entry.connections = entry.connections.saturating_sub(1);
        if entry.connections == 0 && entry.is_announced {
            if self.lingering < LINGERING_MAX {
                self.lingering += 1;
                entry.empty_since = Some(now);
            } else {
                // Sent at the next tick: the bound holds, at the cost of a possible leave/join.
                self.linger_skipped_total += 1;
            }
        }
        self.dirty.insert((channel.clone(), key));
    }

    /// Takes the tick's changes: a user with connections and not yet announced joins; one
    /// announced whose connections have all been gone for the linger leaves; a user who left and
    /// came back within the linger does neither. With `full`, every count is reported.
    pub(crate) fn drain(&mut self, now: Instant, full: bool) -> Drained {
        let mut drained = Drained {
            is_full: full,
            ..Drained::default()
        };
        let mut dirty: Vec<(ChannelName, UserKey)> = self.dirty.drain().collect();
        dirty.sort();
        for (channel, key) in dirty {
            let Some(users) = self.channels.get_mut(&channel) else {
                continue;
            };
            let Some(entry) = users.get_mut(&key) else {
                continue;
            };
            if let Some(user) = &key {
                if entry.connections > 0 && !entry.is_announced {
                    entry.is_announced = true;
                    drained.changes.push(PresenceChange {
                        channel: channel.clone(),
                        user: user.to_string(),
                        kind: PresenceKind::Join,
                        connections: entry.connections,
                    });
                } else if entry.connections == 0 && entry.is_announced {
                    let is_due = entry
                        .empty_since
                        .is_none_or(|since| now.saturating_duration_since(since) >= self.linger);
                    if is_due {
                        if entry.empty_since.take().is_some() {
                            self.lingering -= 1;
                        }
                        entry.is_announced = false;
                        drained.changes.push(PresenceChange {
                            channel: channel.clone(),
                            user: user.to_string(),
                            kind: PresenceKind::Leave,
                            connections: 0,
                        });
                    } else {
                        self.dirty.insert((channel.clone(), key.clone()));
                    }
                }
            }
            if !full {
                drained.counts.push(Count {
                    channel: channel.clone(),
                    user: key.clone(),
                    connections: entry.connections,
                    is_announced: entry.is_announced,
                });
            }
            if entry.connections == 0 && !entry.is_announced {
                users.remove(&key);
                if users.is_empty() {
                    self.channels.remove(&channel);
                }
            }
        }
        if full {
            for (channel, users) in &self.channels {
                for (key, entry) in users {
                    drained.counts.push(Count {
                        channel: channel.clone(),
                        user: key.clone(),
                        connections: entry.connections,
                        is_announced: entry.is_announced,
                    });
                }
            }
        }
        drained
    }

    /// Who is on `channel` on this node now, as subscribers of `join` and `leave` see it: a user
    /// whose leave lingers is still listed, with no connection.
    pub(crate) fn snapshot(&self, channel: &ChannelName) -> Presence {
        let mut snapshot = Presence {
            channel: channel.clone(),
            users: Vec::new(),
            anonymous: 0,
            connections: 0,
        };
        for (key, entry) in self.channels.get(channel).into_iter().flatten() {
            if entry.connections == 0 && !entry.is_announced {
                continue;
            }
            snapshot.connections += u64::from(entry.connections);
            match key {
                Some(user) => snapshot.users.push(PresenceUser {
                    user: user.to_string(),
                    connections: u64::from(entry.connections),
                }),
                None => snapshot.anonymous += u64::from(entry.connections),
            }
        }
        snapshot.users.sort_by(|a, b| a.user.cmp(&b.user));
        snapshot
    }

    /// Entries held (channel and user pairs), leaves lingering, and leaves that could not linger.
    pub(crate) fn sizes(&self) -> (usize, usize, u64) {
        let entries = self.channels.values().map(HashMap::len).sum();
        (entries, self.lingering, self.linger_skipped_total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn channel(name: &str) -> ChannelName {
        ChannelName::new(name).expect("valid channel")
    }

    fn user(name: &str) -> Arc<str> {
        Arc::from(name)
    }

    fn kinds(drained: &Drained) -> Vec<(String, PresenceKind, u32)> {
        drained
            .changes
            .iter()
            .map(|c| (c.user.clone(), c.kind, c.connections))
            .collect()
    }

    const LINGER: Duration = Duration::from_secs(5);

    #[test]
    fn a_user_joins_once_whatever_their_number_of_connections() {
        let mut roster = Roster::new(true, LINGER);
        let room = channel("room");
        let ann = user("ann");
        let now = Instant::now();
        roster.attach(&room, Some(&ann));
        roster.attach(&room, Some(&ann));
        roster.attach(&room, None);
        assert_eq!(
            kinds(&roster.drain(now, false)),
            [("ann".to_owned(), PresenceKind::Join, 2)]
        );
        let snapshot = roster.snapshot(&room);
        assert_eq!(snapshot.users.len(), 1);
        assert_eq!(snapshot.users[0].connections, 2);
        assert_eq!((snapshot.anonymous, snapshot.connections), (1, 3));
        roster.attach(&room, Some(&ann));
        assert!(roster.drain(now, false).changes.is_empty());
    }

    #[test]
    fn a_leave_waits_for_the_linger_and_a_rejoin_cancels_it() {
        let mut roster = Roster::new(true, LINGER);
        let room = channel("room");
        let ann = user("ann");
        let start = Instant::now();
        roster.attach(&room, Some(&ann));
        roster.drain(start, false);
        roster.detach(&room, Some(&ann), start);
        assert!(roster
            .drain(start + Duration::from_secs(1), false)
            .changes
            .is_empty());
        let lingering = roster.snapshot(&room);
        assert_eq!(lingering.users.len(), 1, "listed until the leave is sent");
        assert_eq!(
            (lingering.users[0].connections, lingering.connections),
            (0, 0)
        );
        roster.attach(&room, Some(&ann));
        let back = roster.drain(start + Duration::from_secs(2), false);
        assert!(back.changes.is_empty(), "{:?}", back.changes);
        assert!(roster.drain(start + LINGER * 3, false).changes.is_empty());
        assert_eq!(roster.sizes().1, 0, "nothing lingers");

        roster.detach(&room, Some(&ann), start + LINGER * 3);
        assert!(roster.drain(start + LINGER * 3, false).changes.is_empty());
        let gone = roster.drain(start + LINGER * 4, false);
        assert_eq!(kinds(&gone), [("ann".to_owned(), PresenceKind::Leave, 0)]);
        assert_eq!(roster.sizes(), (0, 0, 0), "the entry goes with the leave");
    }

    #[test]
    fn a_visit_shorter_than_a_tick_sends_nothing() {
        let mut roster = Roster::new(true, LINGER);
        let room = channel("room");
        let ann = user("ann");
        let now = Instant::now();
        roster.attach(&room, Some(&ann));
        roster.detach(&room, Some(&ann), now);
        let drained = roster.drain(now, false);
        assert!(drained.changes.is_empty());
        assert_eq!(
            drained.counts.len(),
            1,
            "the count (zero) is still reported"
        );
        assert_eq!(roster.sizes().0, 0);
    }

    #[test]
    fn a_reconnect_storm_within_the_linger_sends_no_event() {
        let mut roster = Roster::new(true, LINGER);
        let room = channel("room");
        let users: Vec<Arc<str>> = (0..1000).map(|n| user(&format!("u{n}"))).collect();
        let start = Instant::now();
        for u in &users {
            roster.attach(&room, Some(u));
        }
        assert_eq!(roster.drain(start, false).changes.len(), 1000);
        for u in &users {
            roster.detach(&room, Some(u), start);
        }
        let mid = roster.drain(start + Duration::from_secs(1), false);
        assert!(mid.changes.is_empty());
        for u in &users {
            roster.attach(&room, Some(u));
        }
        for tick in 2..20 {
            let later = roster.drain(start + Duration::from_secs(tick), false);
            assert!(
                later.changes.is_empty(),
                "tick {tick}: {:?}",
                later.changes.len()
            );
        }
    }

    #[test]
    fn lingering_leaves_are_bounded() {
        let mut roster = Roster::new(true, LINGER);
        let room = channel("room");
        let now = Instant::now();
        let count = LINGERING_MAX + 10;
        let users: Vec<Arc<str>> = (0..count).map(|n| user(&format!("u{n}"))).collect();
        for u in &users {
            roster.attach(&room, Some(u));
        }
        roster.drain(now, false);
        for u in &users {
            roster.detach(&room, Some(u), now);
        }
        assert_eq!(roster.sizes().1, LINGERING_MAX);
        assert_eq!(roster.sizes().2, 10);
        let drained = roster.drain(now, false);
        assert_eq!(
            drained.changes.len(),
            10,
            "the leaves past the cap go at once"
        );
    }

    #[test]
    fn a_full_drain_reports_every_count() {
        let mut roster = Roster::new(true, LINGER);
        let now = Instant::now();
        roster.attach(&channel("a"), Some(&user("ann")));
        roster.attach(&channel("b"), None);
        roster.drain(now, false);
        let full = roster.drain(now, true);
        assert!(full.is_full);
        assert_eq!(full.counts.len(), 2);
    }

    #[test]
    fn a_disabled_roster_keeps_nothing() {
        let mut roster = Roster::default();
        roster.attach(&channel("room"), Some(&user("ann")));
        assert_eq!(roster.sizes().0, 0);
        assert!(roster.drain(Instant::now(), false).changes.is_empty());
    }
}
