//! Polling: pages of history for clients that cannot hold a stream open.
//!
//! Owns the page shape ([`EventPage`]) and its cursor. Where a page starts and which events it
//! holds follow the same rules as a resuming stream ([`crate::history::History::read_start`] and
//! the record's audience matching), and a page costs what it returns, never a walk of the whole
//! history. It never registers a connection.

use super::Hub;
use crate::{channel::ChannelName, history::ReadStart};
use serde::Serialize;

/// Most events one poll returns.
pub const POLL_LIMIT_MAX: usize = 1000;

/// One page of history for the polling endpoints.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventPage {
    /// Matching events, oldest first.
    pub events: Vec<PolledEvent>,
    /// Pass as `after` to get the next page: the id of the page's last event; for an empty page,
    /// the id that names the hub's head as a stream's `connected` event does (a hub-assigned id
    /// or a position id `{epoch}-{n}`), never a publisher's id, so it tells nothing of the
    /// events of channels the caller did not ask for. Always set.
    pub cursor: Option<String>,
    /// True when `after` was not found in history (unknown or expired): events may have been
    /// missed, so reload state; the page starts at the oldest event in history.
    pub reset: bool,
    /// True when more matching events may follow this page right away.
    pub has_more: bool,
}

/// One event as the polling endpoints return it.
#[derive(Debug, Clone, Serialize)]
pub struct PolledEvent {
    /// Event id.
    pub id: String,
    /// The channel it was published to (the first requested one); `None` for a broadcast to all.
    pub channel: Option<ChannelName>,
    /// Event name; `None` is the default `message`.
    pub event: Option<String>,
    /// The payload: JSON as published, or a string.
    pub data: serde_json::Value,
    /// True for a channel's closing (its final event, if any, is this item).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub closed: bool,
}

impl Hub {
    /// A page of history on `channels` (and broadcasts to all) after the event `after`.
    /// `after = None` starts at the oldest event in history; `limit` is clamped to
    /// 1..=[`POLL_LIMIT_MAX`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use herald_hub::{ChannelName, Hub, HubConfig};
    ///
    /// let hub = Hub::new(HubConfig::default());
    /// hub.broadcast("news", "headline", &serde_json::json!({"n": 1}), None).await?;
    /// hub.broadcast("news", "headline", &serde_json::json!({"n": 2}), None).await?;
    /// let news = [ChannelName::new("news")?];
    /// let page = hub.events_after(&news, None, 1);
    /// assert_eq!(page.events[0].data, serde_json::json!({"n": 1}));
    /// assert!(page.has_more);
    /// let next = hub.events_after(&news, page.cursor.as_deref(), 10);
    /// assert_eq!(next.events[0].data, serde_json::json!({"n": 2}));
    /// assert!(!next.has_more);
    /// # Ok(())
    /// # }
    /// ```
    pub fn events_after(
        &self,
        channels: &[ChannelName],
        after: Option<&str>,
        limit: usize,
    ) -> EventPage {
        let limit = limit.clamp(1, POLL_LIMIT_MAX);
        let state = self.state();
        let history = &state.history;
        let mask = history.mask_of(channels);
        let (start, reset) = match history.read_start(after, mask) {
            ReadStart::After(seq) => (seq, false),
            ReadStart::Oldest => (history.before_oldest(mask), false),
            ReadStart::Unknown => (history.before_oldest(mask), true),
        };
        let (records, has_more) = history.on_channels_after(channels, start, limit);
        let events: Vec<PolledEvent> = records
            .into_iter()
            .map(|record| {
                let data = record.data();
                let data = if record.is_json() {
                    serde_json::from_str(&data)
                        .unwrap_or_else(|_| serde_json::Value::String(data.into_owned()))
                } else {
                    serde_json::Value::String(data.into_owned())
                };
                PolledEvent {
                    id: record.id().to_owned(),
                    channel: record
                        .audience
                        .matches(None, channels)
                        .and_then(|channel| channel.cloned()),
                    event: record.event().map(str::to_owned),
                    data,
                    closed: record.is_close(),
                }
            })
            .collect();
        // An empty page moves the cursor to the hub's head as a stream's opening names it: a
        // hub-assigned id or a position id, never a publisher's id of a channel not asked for.
        let cursor = match events.last() {
            Some(last) => last.id.clone(),
            None => history.start_id(),
        };
        EventPage {
            events,
            cursor: Some(cursor),
            reset,
            has_more,
        }
    }
}
