//! Publishing: the one path every event takes, whatever the log.
//!
//! [`Hub::publish`] validates, then hands the event to the log ([`crate::log::Log::append`]). The
//! log gives it its position and id and calls [`Shared::apply`], here, which is the only way into
//! history: duplicate check, client check, position, wire id, encode once, fan out, record, trim,
//! all under one lock. In a cluster the reader calls the same function for every entry of the
//! stream, in stream order, and never skips one because of its id. It never waits on a subscriber
//! and never holds the lock across an `.await`.
//!
//! Ids (docs/resume.md): a publisher id is idempotent within its scope, the event's audience (the
//! sorted set of channels, one client, or everyone). The wire id is the publisher's id unless
//! another event in history already has it on the wire; then it is the position id. The answer's
//! `id` is always the publisher's id when it gave one, so the answer tells nothing about other
//! scopes.

use super::{Departed, Hub, Shared, State};
use super::{PublishError, SendError};
use crate::metrics::PublishResult;
use crate::{
    channel::ChannelName,
    event::{ClientId, EventData, NewEvent},
    log::Entry,
    record::{Audience, Draft, Record, RecordKind, Target, PUBLISH_CHANNELS_MAX},
};
use serde::Serialize;
use std::time::Instant;

/// The answer to a publish.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Published {
    /// The event's id, as subscribers see it.
    pub id: String,
    /// Connections on this hub the event was queued to.
    pub recipients: usize,
    /// True when the id was already in history: nothing was delivered again, and this is the
    /// original event's answer.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub duplicate: bool,
    /// The event's position in this hub's history (to wait for its durability).
    #[serde(skip)]
    pub(crate) seq: u64,
}

impl Published {
    /// The answer for `record`: its publisher's id if it has one, else its wire id.
    fn of(history: &crate::history::History, record: &Record, duplicate: bool) -> Self {
        Self {
            id: history
                .publisher_id(record)
                .unwrap_or(record.id())
                .to_owned(),
            recipients: record.recipients as usize,
            duplicate,
            seq: record.seq,
        }
    }
}

/// Where an entry handed to [`Shared::apply`] comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Apply {
    /// A publish on this hub: the addressed client must be known here.
    Publish,
    /// An entry another node (or this one) appended to a shared log: fan it out.
    Replicated,
    /// An entry that was in the log before this node read it: history only, never live.
    History,
}

/// What a log that orders events elsewhere learns before appending.
#[derive(Debug)]
pub(crate) enum Precheck {
    /// The publisher id is in history already: this is the original's answer.
    Duplicate(Published),
    /// The event is for a client id this node does not know (it may be on another node).
    UnknownClient(ClientId),
    /// Go ahead.
    Fresh,
}

impl State {
    /// The original's answer when `publisher_id` was already published to `audience` (its
    /// scope) and is still in history.
    fn duplicate_of(&self, audience: &Audience, publisher_id: Option<&str>) -> Option<Published> {
        let record = self.history.get_published(audience, publisher_id?)?;
        Some(Published::of(&self.history, record, true))
    }

    fn precheck(&self, entry: &Entry) -> Precheck {
        let audience = Audience::from_target(entry.target.clone());
        if let Some(duplicate) = self.duplicate_of(&audience, entry.event.id.as_deref()) {
            return Precheck::Duplicate(duplicate);
        }
        match &entry.target {
            Target::Client(id) if !self.is_client_known(id) => Precheck::UnknownClient(id.clone()),
            _ => Precheck::Fresh,
        }
    }
}

impl Shared {
    /// The duplicate and client checks a log that orders events elsewhere runs before appending.
    pub(crate) fn precheck(&self, entry: &Entry) -> Precheck {
        self.state().precheck(entry)
    }

    /// The answer for an event the log's reader applied: found by its publisher id in its scope
    /// when it has one, else by its log id (its wire id).
    pub(crate) fn published_of(
        &self,
        target: &Target,
        publisher_id: Option<&str>,
        log_id: &str,
        duplicate: bool,
    ) -> Published {
        let state = self.state();
        let history = &state.history;
        let record = match publisher_id {
            Some(id) => history.get_published(&Audience::from_target(target.clone()), id),
            None => history.get_by_id(log_id),
        };
        record.map_or_else(
            || Published {
                id: publisher_id.unwrap_or(log_id).to_owned(),
                recipients: 0,
                duplicate,
                seq: 0,
            },
            |record| Published::of(history, record, duplicate),
        )
    }

    /// Puts one event into history and fans it out: the only way in, for every log.
    ///
    /// Under one lock: duplicate check, client check (for [`Apply::Publish`]), position and id,
    /// one encode, fan-out to every addressed queue (not for [`Apply::History`]), closed-channel
    /// bookkeeping, the log's `recorded`, trimming.
    ///
    /// # Errors
    /// [`PublishError::ClientNotFound`] for a publish to a client this hub does not know.
    pub(crate) fn apply(&self, entry: Entry, how: Apply) -> Result<Published, PublishError> {
        let Entry {
            target,
            event,
            kind,
            log_id,
            is_publisher_id_on_wire,
        } = entry;
        let audience = Audience::from_target(target);
        let publisher_id = event.id.as_deref();
        let mut state = self.state();
        // Only a publish on this hub is checked for a duplicate: an entry of a shared log is
        // applied in log order whatever its id (the log deduplicated it when it was appended).
        if how == Apply::Publish {
            if let Some(duplicate) = state.duplicate_of(&audience, publisher_id) {
                return Ok(duplicate);
            }
        }
        if let (Apply::Publish, Audience::Client(id)) = (how, &audience) {
            if !state.is_client_known(id) {
                return Err(PublishError::ClientNotFound(id.clone()));
            }
        }
        let seq = state.history.next_seq();
        let assigned;
        let id = match (publisher_id, log_id.as_deref()) {
            // A shared log decided, where the entry was appended, whether the publisher's id is
            // the wire id: every node shows the same id.
            (Some(publisher_id), Some(_)) if is_publisher_id_on_wire => publisher_id,
            (_, Some(log_id)) => log_id,
            (Some(publisher_id), None) if state.history.get_by_id(publisher_id).is_none() => {
                publisher_id
            }
            (_, None) => {
                assigned = state.history.assign_id(seq);
                &assigned
            }
        };
        let draft = Draft {
            id,
            is_publisher_id: publisher_id.is_some(),
            event: event.event.as_deref(),
            data: &event.data,
            kind,
            is_private: event.private,
            retry: event.retry,
        };
        let now = Instant::now();
        // An entry read as history (a cluster node joining) keeps the age its log id tells
        // (`{unix ms}-{n}`), so ages and graces run from its publish, not from this node's read.
        let published_at = match (how, log_id_ms(log_id.as_deref())) {
            (Apply::History, Some(unix)) => {
                let age = crate::history::unix_ms().saturating_sub(unix);
                now.checked_sub(std::time::Duration::from_millis(age))
                    .unwrap_or(now)
            }
            _ => now,
        };
        let published_ms = state.history.ms_since_origin(published_at);
        let mut record = Record::new(seq, &draft, audience, published_ms);
        let mut claimed = None;
        if how != Apply::History {
            if let Some(frame) = record.delivered_frame() {
                let delivered = state.fanout.deliver(
                    &record.audience,
                    seq,
                    frame,
                    self.config.queue_capacity,
                    record.is_private(),
                    self.direct.is_idle(),
                );
                self.counters.slow_consumers_cut(delivered.overflowed.len());
                if !delivered.claimed.is_empty() {
                    claimed = Some((frame.clone(), delivered.claimed));
                }
                record.recipients = u32::try_from(delivered.recipients).unwrap_or(u32::MAX);
                for client in delivered.overflowed {
                    // A connection cut for a full queue has departed like any other: its id
                    // stays its owner's while events for it wait in history.
                    if state.fanout.key_of(&client.id).is_none() {
                        state
                            .departed
                            .insert(client.id.clone(), Departed::of(&client));
                    }
                }
            }
            for channel in record.audience.channels() {
                self.counters
                    .channel_event(channel.as_str(), u64::from(record.recipients));
            }
        }
        if let Audience::Client(id) = &record.audience {
            state.client_events.insert(id.clone(), seq);
        }
        for channel in record.audience.channels() {
            match kind {
                // Publishing to a closed channel reopens it.
                RecordKind::Event => {
                    state.closed.remove(channel);
                }
                RecordKind::Close { .. } => {
                    state.closed.insert(channel.clone(), seq);
                    if how != Apply::History {
                        state.fanout.close_channel(channel);
                    }
                }
            }
        }
        self.log
            .recorded(&record, publisher_id.filter(|pid| *pid != record.id()));
        let answer = Published {
            id: publisher_id.unwrap_or(record.id()).to_owned(),
            recipients: record.recipients as usize,
            duplicate: false,
            seq,
        };
        state.history.append(record, publisher_id);
        self.trim(&mut state, Instant::now());
        drop(state);
        if let Some((frame, claims)) = claimed {
            self.direct.write(seq, &frame, claims);
        }
        Ok(answer)
    }
}

impl Hub {
    /// Publishes one event to `target` and returns once it is recorded: at once in memory, once
    /// on disk with a durable log, once this node has read it back from Redis in a cluster.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use herald_hub::{ChannelName, EventData, Hub, HubConfig, NewEvent, Target};
    ///
    /// let hub = Hub::new(HubConfig::default());
    /// let orders = ChannelName::new("orders")?;
    /// let event = NewEvent::new(EventData::from_raw_json(r#"{"id":7}"#)?)
    ///     .named("created")
    ///     .with_id("order-7");
    /// let first = hub.publish(Target::Channels(vec![orders.clone()]), event.clone()).await?;
    /// assert_eq!(first.id, "order-7");
    /// let again = hub.publish(Target::Channels(vec![orders]), event).await?;
    /// assert!(again.duplicate, "the same publisher id is published once");
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`PublishError`] when the event is invalid, names no channel, is for a client that is
    /// neither connected nor recently departed, or the log is unavailable. Nothing is published
    /// then (for `Unavailable`, see its note).
    pub async fn publish(
        &self,
        target: Target,
        event: NewEvent,
    ) -> Result<Published, PublishError> {
        self.submit(target, event, RecordKind::Event).await
    }

    /// Refuses a publish whose channels fall in different namespaces (one event is kept by
    /// one namespace's rules). One prefix match per channel.
    fn check_one_namespace(&self, channels: &[ChannelName]) -> Result<(), PublishError> {
        let namespaces = &self.shared.namespaces;
        let Some((first, rest)) = channels.split_first() else {
            return Ok(());
        };
        let first_namespace = namespaces.of(first);
        match rest
            .iter()
            .find(|c| namespaces.of(c).name() != first_namespace.name())
        {
            None => Ok(()),
            Some(other) => Err(PublishError::NamespaceMismatch {
                first: first.clone(),
                first_namespace: first_namespace.name().to_owned(),
                other: other.clone(),
                other_namespace: namespaces.of(other).name().to_owned(),
            }),
        }
    }

    async fn submit(
        &self,
        target: Target,
        event: NewEvent,
        kind: RecordKind,
    ) -> Result<Published, PublishError> {
        let mut target = target;
        let valid = event.validate().map_err(PublishError::from).and_then(|()| {
            let Target::Channels(channels) = &mut target else {
                return Ok(());
            };
            channels.sort_unstable();
            channels.dedup();
            if channels.is_empty() {
                return Err(PublishError::NoChannel);
            }
            if channels.len() > PUBLISH_CHANNELS_MAX {
                return Err(PublishError::TooManyChannels {
                    max: PUBLISH_CHANNELS_MAX,
                    given: channels.len(),
                });
            }
            self.check_one_namespace(channels)
        });
        if let Err(err) = valid {
            self.shared.counters.published(PublishResult::Invalid, None);
            return Err(err);
        }
        let entry = Entry {
            target,
            event,
            kind,
            log_id: None,
            is_publisher_id_on_wire: false,
        };
        let started = Instant::now();
        let answer = self.shared.log.append(&self.shared, entry).await;
        let result = match &answer {
            Ok(published) if published.duplicate => PublishResult::Duplicate,
            Ok(_) => PublishResult::Accepted,
            Err(err) if err.is_unavailable() => PublishResult::Unavailable,
            Err(err) if err.is_client_not_found() => PublishResult::ClientNotFound,
            Err(_) => PublishResult::Invalid,
        };
        let latency = answer.is_ok().then(|| started.elapsed());
        self.shared.counters.published(result, latency);
        answer
    }

    /// Publishes one event to `channel`. [`Hub::publish`] is the general form.
    ///
    /// - `event`: the event's name, or `None` for the default `message` event.
    /// - `data`: any serializable value; a string goes out as its text, anything else as compact
    ///   JSON.
    /// - `id`: a publisher-chosen id (publishing it again while it is in history is a no-op that
    ///   returns the original), or `None` for one the hub assigns.
    ///
    /// # Errors
    /// [`SendError`] when the channel name, the event name or the id breaks its rule, `data`
    /// cannot be serialized as JSON, or the log is unavailable. Nothing is published then.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), herald_hub::SendError> {
    /// use herald_hub::{Hub, HubConfig};
    ///
    /// let hub = Hub::new(HubConfig::default());
    /// let order = serde_json::json!({"id": 7, "total": 12.5});
    /// let published = hub.broadcast("orders", "created", &order, None).await?;
    /// assert_eq!(published.recipients, 0, "nobody listens yet; the event waits in history");
    /// hub.broadcast("news", None, "plain text", "news-1").await?;
    /// assert!(hub.broadcast("not a channel", None, "x", None).await.is_err());
    /// # Ok(())
    /// # }
    /// ```
    pub async fn broadcast<'a, T: Serialize + ?Sized>(
        &self,
        channel: &str,
        event: impl Into<Option<&'a str>>,
        data: &T,
        id: impl Into<Option<&'a str>>,
    ) -> Result<Published, SendError> {
        let channel = ChannelName::new(channel)?;
        let event = new_event(event.into(), data, id.into())?;
        Ok(self.publish(Target::Channels(vec![channel]), event).await?)
    }

    /// Publishes one event to every connection, whatever its channels. The arguments are those of
    /// [`Hub::broadcast`].
    ///
    /// # Errors
    /// [`SendError`] when the event name or the id breaks its rule, `data` cannot be serialized
    /// as JSON, or the log is unavailable. Nothing is published then.
    pub async fn broadcast_all<'a, T: Serialize + ?Sized>(
        &self,
        event: impl Into<Option<&'a str>>,
        data: &T,
        id: impl Into<Option<&'a str>>,
    ) -> Result<Published, SendError> {
        let event = new_event(event.into(), data, id.into())?;
        Ok(self.publish(Target::All, event).await?)
    }

    /// Sends one event to one connection; the other arguments are those of [`Hub::broadcast`].
    ///
    /// The event is accepted when the client is connected (on any node of a cluster), or left
    /// less than [`crate::HubConfig::client_linger`] ago and the event waits in history for its
    /// return (with its client id and `Last-Event-ID`).
    ///
    /// # Errors
    /// [`SendError`]: [`SendError::is_client_not_found`] when no such client is known,
    /// [`SendError::is_unavailable`] when the log (Redis, the disk) cannot take the event now, or
    /// an invalid name, id or payload. Nothing is published then.
    pub async fn send_to<'a, T: Serialize + ?Sized>(
        &self,
        client: &ClientId,
        event: impl Into<Option<&'a str>>,
        data: &T,
        id: impl Into<Option<&'a str>>,
    ) -> Result<Published, SendError> {
        let event = new_event(event.into(), data, id.into())?;
        Ok(self.publish(Target::Client(client.clone()), event).await?)
    }

    /// Closes a channel for good: every stream on it gets `final_event` (if any); a single-channel
    /// stream then ends and a multi-channel stream leaves the channel. While the closing is in
    /// history, new streams to the channel are refused with
    /// [`ConnectError::ChannelClosed`](crate::ConnectError::ChannelClosed). Publishing to the
    /// channel again reopens it.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use herald_hub::{ChannelName, ClientOptions, EventData, Hub, HubConfig, NewEvent};
    ///
    /// let hub = Hub::new(HubConfig::default());
    /// let job = ChannelName::new("job:42")?;
    /// let done = NewEvent::new(EventData::text("finished")).named("done");
    /// hub.close_channel(job.clone(), Some(done)).await?;
    /// let refused = hub.add_client(ClientOptions { channels: vec![job], ..Default::default() });
    /// assert!(refused.is_err(), "a closed channel takes no new streams");
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`PublishError`] when the final event is invalid or the log is unavailable.
    pub async fn close_channel(
        &self,
        channel: ChannelName,
        final_event: Option<NewEvent>,
    ) -> Result<Published, PublishError> {
        let has_final_event = final_event.is_some();
        let event = final_event.unwrap_or_else(|| NewEvent::new(EventData::text("")));
        self.submit(
            Target::Channels(vec![channel]),
            event,
            RecordKind::Close { has_final_event },
        )
        .await
    }
}

/// The Unix time in ms of a log id shaped `{unix ms}-{n}` (a Redis stream entry id).
fn log_id_ms(log_id: Option<&str>) -> Option<u64> {
    log_id?.split_once('-')?.0.parse().ok()
}

/// The event [`Hub::broadcast`] and its siblings build from their arguments.
fn new_event<T: Serialize + ?Sized>(
    event: Option<&str>,
    data: &T,
    id: Option<&str>,
) -> Result<NewEvent, serde_json::Error> {
    Ok(NewEvent {
        event: event.map(str::to_owned),
        data: EventData::json(data)?,
        id: id.map(str::to_owned),
        private: false,
        retry: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{config::HubConfig, event::EventData};

    fn entry(publisher_id: Option<&str>, log_id: &str, is_publisher_id_on_wire: bool) -> Entry {
        Entry {
            target: Target::All,
            event: NewEvent {
                event: None,
                data: EventData::text("x"),
                id: publisher_id.map(str::to_owned),
                private: false,
                retry: None,
            },
            kind: RecordKind::Event,
            log_id: Some(log_id.to_owned()),
            is_publisher_id_on_wire,
        }
    }

    #[tokio::test]
    async fn a_shared_log_entry_is_applied_in_order_whatever_its_id() {
        let hub = Hub::new(HubConfig::default());
        let shared = &hub.shared;
        // An entry whose publisher id has the shape of the next entry's id (as written before
        // such ids were refused, or by another program), then that entry.
        let forged = entry(Some("1700000000001-0"), "1700000000000-0", true);
        shared.apply(forged, Apply::Replicated).expect("applied");
        let next = entry(None, "1700000000001-0", false);
        shared.apply(next, Apply::Replicated).expect("applied");
        let state = shared.state();
        assert_eq!(
            state.history.len(),
            2,
            "no entry is skipped because of its id"
        );
        let newest = state.history.get(2).expect("held");
        assert_eq!(
            state.history.read_start(
                Some("1700000000001-0"),
                crate::namespace::NamespaceMask::ALL
            ),
            crate::history::ReadStart::After(2),
            "the wire id names the newest entry, the one resumes must find"
        );
        assert_eq!(newest.id(), "1700000000001-0");
    }
}
