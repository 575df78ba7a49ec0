//! The engine's counters: what operators graph and alert on, kept as relaxed atomics.
//!
//! Owns the counters the hub bumps on its paths (streams opened and closed by reason, publishes by
//! result, deliveries, resumes, replayed events, publish latency, per-channel counts for the
//! channels an operator lists) and the plain snapshot ([`Metrics`]) an exporter reads. Bumping
//! costs one relaxed atomic add per event or per fan-out call, never one per delivery. It never
//! takes the hub's lock, never walks live structures and never formats anything (the Prometheus
//! exposition is `http::routes::metrics`').

use serde::Serialize;
use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

/// Upper bounds, in seconds, of the latency histograms' buckets: 0.1 ms to 5 s, about three per
/// decade (the `+Inf` bucket is implied).
pub const LATENCY_BUCKETS_SECONDS: [f64; 15] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// Why a stream ended, as the `reason` label shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CloseReason {
    /// The client went away (closed the tab, lost the network).
    ClientGone,
    /// The client fell further behind than its queue and was cut; it resumes from history.
    SlowConsumer,
    /// The hub shut down.
    Shutdown,
    /// An operator or the application removed the connection.
    Removed,
    /// A newer connection took its client id.
    Replaced,
    /// Its user reached the per-user connection limit with a newer connection.
    UserLimit,
    /// Its only channel was closed.
    ChannelClosed,
    /// Events it needed left history (or the cluster log lost continuity).
    HistoryGap,
}

impl CloseReason {
    /// Every reason, in the order of [`Metrics::streams_closed`].
    pub const ALL: [CloseReason; 8] = [
        Self::ClientGone,
        Self::SlowConsumer,
        Self::Shutdown,
        Self::Removed,
        Self::Replaced,
        Self::UserLimit,
        Self::ChannelClosed,
        Self::HistoryGap,
    ];

    /// The label value: `client_gone`, `slow_consumer`...
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClientGone => "client_gone",
            Self::SlowConsumer => "slow_consumer",
            Self::Shutdown => "shutdown",
            Self::Removed => "removed",
            Self::Replaced => "replaced",
            Self::UserLimit => "user_limit",
            Self::ChannelClosed => "channel_closed",
            Self::HistoryGap => "history_gap",
        }
    }
}

/// What became of a publish, as the `result` label shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PublishResult {
    /// Recorded and fanned out.
    Accepted,
    /// Its publisher id was already in history: answered with the original, nothing delivered.
    Duplicate,
    /// Refused as invalid (a bad field, no channel).
    Invalid,
    /// The log could not take it (Redis lost, the disk failing).
    Unavailable,
    /// Addressed to a client no node knows.
    ClientNotFound,
}

impl PublishResult {
    /// Every result, in the order of [`Metrics::events_published`].
    pub const ALL: [PublishResult; 5] = [
        Self::Accepted,
        Self::Duplicate,
        Self::Invalid,
        Self::Unavailable,
        Self::ClientNotFound,
    ];

    /// The label value: `accepted`, `duplicate`...
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Duplicate => "duplicate",
            Self::Invalid => "invalid",
            Self::Unavailable => "unavailable",
            Self::ClientNotFound => "client_not_found",
        }
    }
}

/// A latency histogram whose buckets are atomics: observing is two relaxed adds and a short
/// scan of [`LATENCY_BUCKETS_SECONDS`], with no lock.
#[derive(Debug, Default)]
pub(crate) struct LatencyHistogram {
    /// Observations per bucket (not cumulative); the last one is `+Inf`.
    buckets: [AtomicU64; LATENCY_BUCKETS_SECONDS.len() + 1],
    sum_ns: AtomicU64,
}

impl LatencyHistogram {
    pub(crate) fn observe(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        let index = LATENCY_BUCKETS_SECONDS
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(LATENCY_BUCKETS_SECONDS.len());
        self.buckets[index].fetch_add(1, Ordering::Relaxed);
        let ns = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> Histogram {
        let mut cumulative = 0;
        let mut buckets = Vec::with_capacity(LATENCY_BUCKETS_SECONDS.len());
        for (bound, count) in LATENCY_BUCKETS_SECONDS.iter().zip(&self.buckets) {
            cumulative += count.load(Ordering::Relaxed);
            buckets.push((*bound, cumulative));
        }
        let count =
            cumulative + self.buckets[LATENCY_BUCKETS_SECONDS.len()].load(Ordering::Relaxed);
        Histogram {
            buckets,
            count,
            sum_seconds: Duration::from_nanos(self.sum_ns.load(Ordering::Relaxed)).as_secs_f64(),
        }
    }
}

/// A histogram as read at one moment, in the exposition's terms.
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    /// `(upper bound in seconds, observations at or below it)`, cumulative, without `+Inf`.
    pub buckets: Vec<(f64, u64)>,
    /// Every observation (the `+Inf` bucket).
    pub count: u64,
    /// Sum of the observations, in seconds.
    pub sum_seconds: f64,
}

/// Counters of one channel an operator asked to watch.
#[derive(Debug, Default)]
struct ChannelCounters {
    events: AtomicU64,
    recipients: AtomicU64,
}

/// The hub's counters. Lives in the hub's shared state; every method is lock-free.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    opened: AtomicU64,
    closed: [AtomicU64; CloseReason::ALL.len()],
    published: [AtomicU64; PublishResult::ALL.len()],
    delivered: AtomicU64,
    replayed: AtomicU64,
    /// Connections cut for a full queue, counted when cut (their stream ends once its writer
    /// notices, which `closed` counts).
    slow_consumer_cuts: AtomicU64,
    /// Streams that asked to resume: `[not resumed, resumed]`.
    resumes: [AtomicU64; 2],
    publish_latency: LatencyHistogram,
    /// Only the channels listed in `HubConfig::metrics_channels`; fixed at start, so reading it
    /// takes no lock.
    channels: HashMap<String, ChannelCounters>,
    /// Shared with the webhook sender, which bumps them from its own task.
    webhooks: Arc<WebhookCounters>,
}

/// The webhook sender's counters (all zero when no webhook is configured).
#[derive(Debug, Default)]
pub(crate) struct WebhookCounters {
    /// Notifications waiting in the queue now.
    pub(crate) queued: AtomicU64,
    /// Notifications the application acknowledged (2xx).
    pub(crate) delivered: AtomicU64,
    /// Attempts that failed and were tried again.
    pub(crate) retried: AtomicU64,
    /// Notifications given up after the last attempt failed.
    pub(crate) failed: AtomicU64,
    /// Notifications dropped because the queue was full.
    pub(crate) dropped: AtomicU64,
}

impl WebhookCounters {
    fn snapshot(&self) -> WebhookMetrics {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        WebhookMetrics {
            queued: load(&self.queued),
            delivered: load(&self.delivered),
            retried: load(&self.retried),
            failed: load(&self.failed),
            dropped: load(&self.dropped),
        }
    }
}

/// What the webhook sender has done since start, as `/metrics` and `/api/stats` show it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct WebhookMetrics {
    /// Notifications waiting in the queue now.
    pub queued: u64,
    /// Notifications the application acknowledged with a 2xx.
    pub delivered: u64,
    /// Attempts that failed (timeout, refused, not 2xx) and were tried again.
    pub retried: u64,
    /// Notifications given up after their last attempt failed.
    pub failed: u64,
    /// Notifications dropped because the queue was full.
    pub dropped: u64,
}

impl Counters {
    /// Counters that also keep per-channel series for `channels`.
    pub(crate) fn new(channels: &[String]) -> Self {
        Self {
            channels: channels
                .iter()
                .map(|name| (name.clone(), ChannelCounters::default()))
                .collect(),
            ..Self::default()
        }
    }

    /// The webhook sender's counters, shared with it.
    pub(crate) fn webhooks(&self) -> Arc<WebhookCounters> {
        self.webhooks.clone()
    }

    pub(crate) fn webhook_metrics(&self) -> WebhookMetrics {
        self.webhooks.snapshot()
    }

    pub(crate) fn stream_opened(&self) {
        self.opened.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn stream_closed(&self, reason: CloseReason) {
        let index = CloseReason::ALL
            .iter()
            .position(|r| *r == reason)
            .expect("ALL lists every reason");
        self.closed[index].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn streams_closed_total(&self) -> u64 {
        self.closed.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    pub(crate) fn published(&self, result: PublishResult, latency: Option<Duration>) {
        let index = PublishResult::ALL
            .iter()
            .position(|r| *r == result)
            .expect("ALL lists every result");
        self.published[index].fetch_add(1, Ordering::Relaxed);
        if let Some(latency) = latency {
            self.publish_latency.observe(latency);
        }
    }

    pub(crate) fn published_accepted(&self) -> u64 {
        self.published[0].load(Ordering::Relaxed)
    }

    /// `events` written to one connection by one write (a batch counts once per event).
    pub(crate) fn delivered(&self, events: u64) {
        self.delivered.fetch_add(events, Ordering::Relaxed);
    }

    pub(crate) fn delivered_total(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed)
    }

    pub(crate) fn slow_consumers_cut(&self, connections: usize) {
        if connections > 0 {
            self.slow_consumer_cuts
                .fetch_add(connections as u64, Ordering::Relaxed);
        }
    }

    pub(crate) fn replayed(&self, events: u64) {
        self.replayed.fetch_add(events, Ordering::Relaxed);
    }

    pub(crate) fn resume(&self, is_resumed: bool) {
        self.resumes[usize::from(is_resumed)].fetch_add(1, Ordering::Relaxed);
    }

    /// One event recorded on `channel` and queued to `recipients` connections: counted when the
    /// operator listed the channel (one hash lookup; none when nothing is listed).
    pub(crate) fn channel_event(&self, channel: &str, recipients: u64) {
        if self.channels.is_empty() {
            return;
        }
        if let Some(counters) = self.channels.get(channel) {
            counters.events.fetch_add(1, Ordering::Relaxed);
            counters.recipients.fetch_add(recipients, Ordering::Relaxed);
        }
    }

    pub(crate) fn snapshot(&self) -> Metrics {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let streams_closed: Vec<(CloseReason, u64)> = CloseReason::ALL
            .iter()
            .zip(&self.closed)
            .map(|(reason, count)| (*reason, load(count)))
            .collect();
        let streams_opened = load(&self.opened);
        let closed: u64 = streams_closed.iter().map(|(_, n)| n).sum();
        let mut channels: Vec<ChannelMetrics> = self
            .channels
            .iter()
            .map(|(name, c)| ChannelMetrics {
                channel: name.clone(),
                events: load(&c.events),
                recipients: load(&c.recipients),
            })
            .collect();
        channels.sort_by(|a, b| a.channel.cmp(&b.channel));
        Metrics {
            streams_open: streams_opened.saturating_sub(closed),
            streams_opened,
            streams_closed,
            events_published: PublishResult::ALL
                .iter()
                .zip(&self.published)
                .map(|(result, count)| (*result, load(count)))
                .collect(),
            deliveries: load(&self.delivered),
            replayed_events: load(&self.replayed),
            slow_consumer_cuts: load(&self.slow_consumer_cuts),
            resumes: [load(&self.resumes[0]), load(&self.resumes[1])],
            publish_latency: self.publish_latency.snapshot(),
            channels,
            history: crate::HistoryStats {
                events: 0,
                bytes: 0,
            },
            log: LogHealth::default(),
            webhooks: self.webhooks.snapshot(),
        }
    }
}

/// Every counter of a hub at one moment, as [`crate::Hub::metrics`] reads it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Metrics {
    /// Streams open now.
    pub streams_open: u64,
    /// Streams opened since start.
    pub streams_opened: u64,
    /// Streams ended since start, by reason.
    pub streams_closed: Vec<(CloseReason, u64)>,
    /// Publishes on this hub since start, by result.
    pub events_published: Vec<(PublishResult, u64)>,
    /// Events written to connections since start (one per connection per event, replays included).
    pub deliveries: u64,
    /// Events written to resuming connections from history.
    pub replayed_events: u64,
    /// Connections cut because their queue was full (counted at the cut; the stream itself is
    /// counted in `streams_closed` with `slow_consumer` once its writer ends).
    pub slow_consumer_cuts: u64,
    /// Streams that asked to resume with a `Last-Event-ID`: `[not resumed (the id was unknown or
    /// had left history), resumed]`.
    pub resumes: [u64; 2],
    /// Time from a publish call to its answer, for accepted and duplicate publishes.
    pub publish_latency: Histogram,
    /// Per-channel counters, for the channels listed in `HubConfig::metrics_channels` only.
    pub channels: Vec<ChannelMetrics>,
    /// What history holds now.
    pub history: crate::HistoryStats,
    /// The log backend's health.
    pub log: LogHealth,
    /// The webhook sender's counters.
    pub webhooks: WebhookMetrics,
}

impl Metrics {
    /// Streams ended for `reason` since start.
    pub fn closed(&self, reason: CloseReason) -> u64 {
        self.streams_closed
            .iter()
            .find(|(r, _)| *r == reason)
            .map_or(0, |(_, n)| *n)
    }

    /// Publishes with `result` since start.
    pub fn published(&self, result: PublishResult) -> u64 {
        self.events_published
            .iter()
            .find(|(r, _)| *r == result)
            .map_or(0, |(_, n)| *n)
    }
}

/// Counters of one listed channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelMetrics {
    /// The channel's name.
    pub channel: String,
    /// Events recorded on it since start (published here or, in a cluster, on another node).
    pub events: u64,
    /// Connections of this node those events were queued to, summed.
    pub recipients: u64,
}

/// The health of the log behind the hub.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct LogHealth {
    /// `memory`, `durable` or `cluster`.
    pub backend: &'static str,
    /// Whether the log can take and deliver events now ([`crate::Hub::is_ready`] without the
    /// shutdown part).
    pub is_ready: bool,
    /// Cluster only: whether this node's reader is connected to Redis.
    pub redis_reachable: Option<bool>,
    /// Cluster only: time since this node's reader last read from Redis successfully (a few
    /// seconds at most while healthy: an idle read returns every couple of seconds).
    pub since_last_read: Option<Duration>,
    /// Durable only: time each commit (write and fsync) took.
    pub commit_latency: Option<Histogram>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_count_everything() {
        let histogram = LatencyHistogram::default();
        histogram.observe(Duration::from_micros(50));
        histogram.observe(Duration::from_millis(3));
        histogram.observe(Duration::from_secs(10));
        let snapshot = histogram.snapshot();
        assert_eq!(snapshot.buckets[0], (0.0001, 1));
        let at_5ms = snapshot.buckets.iter().find(|(b, _)| *b == 0.005);
        assert_eq!(at_5ms, Some(&(0.005, 2)));
        assert_eq!(snapshot.buckets.last(), Some(&(5.0, 2)));
        assert_eq!(snapshot.count, 3);
        assert!((snapshot.sum_seconds - 10.00305).abs() < 1e-9);
    }

    #[test]
    fn only_listed_channels_get_series() {
        let counters = Counters::new(&["orders".to_owned()]);
        counters.channel_event("orders", 3);
        counters.channel_event("other", 5);
        let snapshot = counters.snapshot();
        assert_eq!(
            snapshot.channels,
            vec![ChannelMetrics {
                channel: "orders".into(),
                events: 1,
                recipients: 3
            }]
        );
    }
}
