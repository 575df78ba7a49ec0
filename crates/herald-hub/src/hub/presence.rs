//! The hub's side of presence: answering who is on a channel, the tick that takes the roster's
//! coalesced joins and leaves and sends them, and delivering them to the connections that asked.
//!
//! Owns the presence tick ([`PRESENCE_TICK`]; it runs only when presence is on) and the order of
//! one tick: drain the roster under the lock, hand the changes to the log (a cluster shares them
//! through Redis and every node delivers what Redis publishes) or deliver them here, then tell
//! the [`PresenceSink`]. It never writes to history and never waits on a subscriber.

use super::{Departed, Hub, Shared};
use crate::{
    channel::ChannelName,
    presence::{self, Presence, PresenceChange, PresenceError, PresenceSink, PRESENCE_TICK},
};
use std::{
    collections::BTreeMap,
    sync::{Arc, Weak},
    time::Instant,
};
use tokio_util::sync::CancellationToken;

impl Hub {
    /// Who is on `channel` now: its users with their connection counts, and its anonymous
    /// connections (in a cluster, across every live node). A user whose last connection ended
    /// stays listed, with no connection, while their `leave` is held back: the list agrees with
    /// the `join` and `leave` events.
    ///
    /// # Errors
    /// [`PresenceError::Disabled`] when the channel keeps no presence;
    /// [`PresenceError::Unavailable`] when the cluster's presence cannot be read (Redis lost).
    pub async fn presence(&self, channel: &ChannelName) -> Result<Presence, PresenceError> {
        if !self.state().fanout.roster().presence_enabled(channel) {
            return Err(PresenceError::Disabled(channel.clone()));
        }
        if let Some(shared) = self.shared.log.presence_of(channel) {
            return shared.await.map_err(PresenceError::Unavailable);
        }
        Ok(self.state().fanout.roster().snapshot(channel))
    }

    /// Sets the code told of every presence change (replacing the previous one). In a cluster,
    /// each change is told on exactly one node. Default: nothing is told.
    pub fn set_presence_sink(&self, sink: Arc<dyn PresenceSink>) {
        self.shared.presence_sink.set(sink);
    }

    /// Presence entries held on this node, leaves lingering, and leaves sent without lingering
    /// because too many lingered (see `docs/presence.md`).
    pub fn presence_sizes(&self) -> (usize, usize, u64) {
        self.state().fanout.roster().sizes()
    }
}

impl Shared {
    /// Sends `changes` as `join` / `leave` events to this node's connections that asked for
    /// presence on their channels: each channel's changes encoded once, as one write.
    pub(crate) fn deliver_presence(&self, changes: &[PresenceChange]) {
        if changes.is_empty() {
            return;
        }
        let mut by_channel: BTreeMap<&ChannelName, Vec<&PresenceChange>> = BTreeMap::new();
        for change in changes {
            by_channel.entry(&change.channel).or_default().push(change);
        }
        let frames: Vec<_> = by_channel
            .into_iter()
            .map(|(channel, changes)| (channel, presence::encode(&changes)))
            .collect();
        let capacity = self.config.queue_capacity;
        let mut state = self.state();
        for (channel, frame) in frames {
            let overflowed = state.fanout.deliver_presence(channel, &frame, capacity);
            self.counters.slow_consumers_cut(overflowed.len());
            for client in overflowed {
                if state.fanout.key_of(&client.id).is_none() {
                    state
                        .departed
                        .insert(client.id.clone(), Departed::of(&client));
                }
            }
        }
    }

    /// One presence tick.
    async fn presence_tick(&self) {
        let is_full = self.log.presence_needs_full();
        let drained = self
            .state()
            .fanout
            .roster_mut()
            .drain(Instant::now(), is_full);
        let report = self.log.presence_report(&drained);
        match report {
            None => {
                self.deliver_presence(&drained.changes);
                self.presence_sink.emit(&drained.changes);
            }
            Some(report) => match report.await {
                Ok(changes) => self.presence_sink.emit(&changes),
                Err(err) => tracing::debug!(error = %err, "could not report presence"),
            },
        };
    }
}

/// Starts the presence tick when presence is on; it stops with the hub's shutdown or when the hub
/// is dropped.
pub(super) fn spawn(shared: &Arc<Shared>) {
    if !shared.state().fanout.roster().is_any_enabled() {
        return;
    }
    tokio::spawn(tick_loop(Arc::downgrade(shared), shared.shutdown.clone()));
}

async fn tick_loop(shared: Weak<Shared>, shutdown: CancellationToken) {
    let mut ticker = tokio::time::interval(PRESENCE_TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let Some(shared) = shared.upgrade() else {
            return;
        };
        shared.presence_tick().await;
    }
}

#[cfg(test)]
mod tests {
    use crate::{
        config::PresenceConfig, ChannelName, ClientOptions, ClientStream, Hub, HubConfig,
        PresenceChange, PresenceKind, PresenceSink,
    };
    use futures_util::StreamExt;
    use std::{
        sync::{Arc, Mutex},
        time::Duration,
    };

    fn hub(linger: Duration) -> Hub {
        Hub::new(HubConfig {
            presence: PresenceConfig {
                enabled: true,
                linger,
                ..PresenceConfig::default()
            },
            ..HubConfig::default()
        })
    }

    fn join(hub: &Hub, user: Option<&str>, presence: bool) -> ClientStream {
        hub.add_client(ClientOptions {
            channels: vec![ChannelName::new("room").expect("valid")],
            user: user.map(str::to_owned),
            presence,
            ..ClientOptions::default()
        })
        .expect("the stream opens")
    }

    /// Everything `stream` has queued within `within`, as text.
    async fn read_for(stream: &mut ClientStream, within: Duration) -> String {
        let mut text = String::new();
        let deadline = tokio::time::Instant::now() + within;
        while let Ok(Some(chunk)) = tokio::time::timeout_at(deadline, stream.next()).await {
            text.push_str(std::str::from_utf8(&chunk).expect("utf-8"));
        }
        text
    }

    #[derive(Default)]
    struct Recorder(Mutex<Vec<PresenceChange>>);

    impl PresenceSink for Recorder {
        fn changed(&self, change: &PresenceChange) {
            self.0.lock().expect("recorder lock").push(change.clone());
        }
    }

    // Real time: the linger is measured with the system clock.
    #[tokio::test]
    async fn only_streams_that_asked_hear_joins_and_leaves_and_the_sink_hears_each_once() {
        let hub = hub(Duration::from_secs(1));
        let recorder = Arc::new(Recorder::default());
        hub.set_presence_sink(recorder.clone());
        let mut asked = join(&hub, Some("watcher"), true);
        let mut quiet = join(&hub, None, false);
        let ann = join(&hub, Some("ann"), false);
        let second = join(&hub, Some("ann"), false);
        let opened = read_for(&mut asked, Duration::from_secs(1)).await;
        assert!(
            opened.contains(
                "event: join\ndata: {\"channel\":\"room\",\"user\":\"ann\",\"connections\":2}"
            ),
            "{opened}"
        );

        drop(ann);
        drop(second);
        let held = read_for(&mut asked, Duration::from_millis(300)).await;
        assert!(!held.contains("event: leave"), "the leave lingers: {held}");
        let gone = read_for(&mut asked, Duration::from_secs(2)).await;
        assert!(
            gone.contains(
                "event: leave\ndata: {\"channel\":\"room\",\"user\":\"ann\",\"connections\":0}"
            ),
            "{gone}"
        );

        let quiet_read = read_for(&mut quiet, Duration::from_millis(100)).await;
        assert!(!quiet_read.contains("event: join") && !quiet_read.contains("event: leave"));
        let kinds: Vec<(String, PresenceKind)> = recorder
            .0
            .lock()
            .expect("recorder lock")
            .iter()
            .map(|c| (c.user.clone(), c.kind))
            .collect();
        assert_eq!(
            kinds,
            [
                ("ann".to_owned(), PresenceKind::Join),
                ("watcher".to_owned(), PresenceKind::Join),
                ("ann".to_owned(), PresenceKind::Leave),
            ]
        );
        let room = ChannelName::new("room").expect("valid");
        let presence = hub.presence(&room).await.expect("presence is on");
        assert_eq!((presence.users.len(), presence.anonymous), (1, 1));
    }
}
