//! Publishing: the one path every event takes, whatever the log.
//!
//! [`Hub::publish`] validates, then hands the event to the log ([`crate::log::Log::append`]). The
//! log gives it its position and id and calls [`Shared::apply`], here, which is the only way into
//! history: duplicate check, client check, position, encode once, fan out, record, trim, all under
//! one lock. In a cluster the reader calls the same function for every entry of the stream. It
//! never waits on a subscriber and never holds the lock across an `.await`.

use super::{Hub, Shared, State};
use super::{PublishError, SendError};
use crate::metrics::PublishResult;
use crate::{
    channel::ChannelName,
    event::{ClientId, EventData, NewEvent},
    log::Entry,
    record::{Audience, Draft, Record, RecordKind, Target},
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
    fn of(record: &Record, duplicate: bool) -> Self {
        Self {
            id: record.id().to_owned(),
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
    fn duplicate_of(&self, id: Option<&str>) -> Option<Published> {
        Some(Published::of(self.history.get_by_id(id?)?, true))
    }

    fn precheck(&self, entry: &Entry) -> Precheck {
        if let Some(duplicate) = self.duplicate_of(entry.event.id.as_deref()) {
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

    /// The answer for the event with subscriber-visible id `id` (after the log's reader applied it).
    pub(crate) fn published_of(&self, id: &str, duplicate: bool) -> Published {
        let state = self.state();
        state.history.get_by_id(id).map_or_else(
            || Published {
                id: id.to_owned(),
                recipients: 0,
                duplicate,
                seq: 0,
            },
            |record| Published::of(record, duplicate),
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
        } = entry;
        let mut state = self.state();
        let shown_id = event.id.as_deref().or(log_id.as_deref());
        if let Some(duplicate) = state.duplicate_of(shown_id) {
            return Ok(duplicate);
        }
        if let (Apply::Publish, Target::Client(id)) = (how, &target) {
            if !state.is_client_known(id) {
                return Err(PublishError::ClientNotFound(id.clone()));
            }
        }
        let seq = state.history.next_seq();
        let assigned;
        let id = match shown_id {
            Some(id) => id,
            None => {
                assigned = state.history.assign_id(seq);
                &assigned
            }
        };
        let draft = Draft {
            id,
            is_publisher_id: event.id.is_some(),
            event: event.event.as_deref(),
            data: &event.data,
            kind,
        };
        let now = state.history.ms_since_origin(Instant::now());
        let mut record = Record::new(seq, &draft, Audience::from_target(target), now);
        if how != Apply::History {
            if let Some(frame) = record.delivered_frame() {
                let (delivered, cut) =
                    state
                        .fanout
                        .deliver(&record.audience, seq, frame, self.config.queue_capacity);
                self.counters.slow_consumers_cut(cut);
                record.recipients = u32::try_from(delivered).unwrap_or(u32::MAX);
            }
            for channel in record.audience.channels() {
                self.counters
                    .channel_event(channel.as_str(), u64::from(record.recipients));
            }
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
        let published = Published::of(&record, false);
        self.log.recorded(&record);
        state.history.append(record);
        self.trim(&mut state, Instant::now());
        Ok(published)
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

    async fn submit(
        &self,
        target: Target,
        event: NewEvent,
        kind: RecordKind,
    ) -> Result<Published, PublishError> {
        let valid = event
            .validate()
            .map_err(PublishError::from)
            .and_then(|()| match &target {
                Target::Channels(channels) if channels.is_empty() => Err(PublishError::NoChannel),
                _ => Ok(()),
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
    })
}
