//! `GET /metrics`: the hub's counters in the Prometheus text exposition format (version 0.0.4).
//!
//! Owns the metric names, their help text and their labels (`docs/operations.md` lists them). It
//! reads one [`crate::Metrics`] snapshot per scrape (lock-free counters and history's two sizes)
//! and never walks the engine's structures. Who may read it is the admin right, as for
//! `/api/stats` (`docs/security.md` says why).
//!
//! The encoder is `prometheus-client`, the Prometheus project's own Rust client. The engine keeps
//! its own atomics (so it depends on no metrics crate and a scrape reads plain numbers); a
//! [`Collector`] turns one snapshot into the exposition at each scrape. Per-channel series exist
//! only for `HubConfig::metrics_channels`, so cardinality stays bounded.

use super::Api;
use crate::{
    http::{auth::Publisher, error::ApiError, AppAuthMetrics},
    Histogram, Hub, Metrics,
};
use axum::{
    extract::State,
    http::{header, StatusCode},
    response::{IntoResponse, Response},
};
use prometheus_client::{
    collector::Collector,
    encoding::{prometheus_text, DescriptorEncoder, EncodeMetric, NoLabelSet},
    metrics::{counter::ConstCounter, gauge::ConstGauge, MetricType},
    registry::{Registry, Unit},
};
use std::fmt;

pub(super) async fn metrics(
    State(api): State<Api>,
    Publisher(caller): Publisher,
) -> Result<Response, ApiError> {
    caller.check_admin()?;
    let app_auth = api.auth.app().map(|app| app.metrics());
    match exposition(&api.hub, app_auth) {
        Ok(text) => Ok((
            [(header::CONTENT_TYPE, prometheus_text::CONTENT_TYPE)],
            text,
        )
            .into_response()),
        Err(fmt::Error) => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the metrics could not be encoded",
        )),
    }
}

/// The exposition text of `hub`'s metrics now, and the auth proxy's in `app` mode.
fn exposition(hub: &Hub, app_auth: Option<AppAuthMetrics>) -> Result<String, fmt::Error> {
    let mut registry = Registry::with_prefix("herald");
    registry.register_collector(Box::new(Snapshot(hub.metrics(), app_auth)));
    let mut text = String::new();
    prometheus_text::encode(&mut text, &registry)?;
    Ok(text)
}

/// One scrape's numbers.
#[derive(Debug)]
struct Snapshot(Metrics, Option<AppAuthMetrics>);

fn counter(encoder: &mut DescriptorEncoder<'_>, name: &str, help: &str, value: u64) -> fmt::Result {
    let metric = ConstCounter::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

fn gauge(encoder: &mut DescriptorEncoder<'_>, name: &str, help: &str, value: i64) -> fmt::Result {
    let metric = ConstGauge::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

/// A counter with one label, one series per `(label value, count)`.
fn labeled_counter<'v>(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    label: &str,
    series: impl IntoIterator<Item = (&'v str, u64)>,
) -> fmt::Result {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (value, count) in series {
        let labels = [(label, value)];
        ConstCounter::new(count).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

fn histogram(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    histogram: &Histogram,
) -> fmt::Result {
    let mut metric =
        encoder.encode_descriptor(name, help, Some(&Unit::Seconds), MetricType::Histogram)?;
    // The encoder sums the buckets itself (and adds `+Inf`): hand it each bucket's own count.
    let mut below = 0;
    let mut buckets: Vec<(f64, u64)> = histogram
        .buckets
        .iter()
        .map(|(bound, cumulative)| {
            let own = cumulative.saturating_sub(below);
            below = *cumulative;
            (*bound, own)
        })
        .collect();
    buckets.push((f64::INFINITY, histogram.count.saturating_sub(below)));
    metric.encode_histogram::<NoLabelSet>(histogram.sum_seconds, histogram.count, &buckets, None)
}

fn as_gauge(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

impl Collector for Snapshot {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let m = &self.0;
        let e = &mut encoder;
        gauge(
            e,
            "streams_open",
            "Event streams open now.",
            as_gauge(m.streams_open),
        )?;
        counter(
            e,
            "streams_opened",
            "Event streams opened.",
            m.streams_opened,
        )?;
        labeled_counter(
            e,
            "streams_closed",
            "Event streams ended, by reason.",
            "reason",
            m.streams_closed.iter().map(|(r, n)| (r.as_str(), *n)),
        )?;
        counter(
            e,
            "slow_consumer_cuts",
            "Streams cut because the client fell further behind than its queue (it resumes from history).",
            m.slow_consumer_cuts,
        )?;
        labeled_counter(
            e,
            "events_published",
            "Publish calls on this node, by result.",
            "result",
            m.events_published.iter().map(|(r, n)| (r.as_str(), *n)),
        )?;
        histogram(
            e,
            "publish_duration",
            "Time from a publish call to its answer (accepted and duplicate publishes).",
            &m.publish_latency,
        )?;
        counter(
            e,
            "deliveries",
            "Events written to connections (one per connection per event, replays included).",
            m.deliveries,
        )?;
        counter(
            e,
            "replayed_events",
            "Events written to resuming connections from history.",
            m.replayed_events,
        )?;
        labeled_counter(
            e,
            "resumes",
            "Streams opened with a Last-Event-ID, by whether they resumed from history.",
            "resumed",
            [("false", m.resumes[0]), ("true", m.resumes[1])],
        )?;
        gauge(
            e,
            "history_events",
            "Events held in history.",
            as_gauge(m.history.events as u64),
        )?;
        gauge(
            e,
            "history_bytes",
            "Bytes held in history (frames and bookkeeping).",
            as_gauge(m.history.bytes as u64),
        )?;
        let log = &m.log;
        let mut ready = e.encode_descriptor(
            "log_ready",
            "Whether the log backend can take and deliver events (1) or not (0).",
            None,
            MetricType::Gauge,
        )?;
        let labels = [("backend", log.backend)];
        ConstGauge::new(i64::from(log.is_ready)).encode(ready.encode_family(&labels)?)?;
        if let Some(reachable) = log.redis_reachable {
            gauge(
                e,
                "redis_reachable",
                "Cluster: whether this node's reader is connected to Redis (1) or not (0).",
                i64::from(reachable),
            )?;
        }
        if let Some(since) = log.since_last_read {
            let metric = ConstGauge::new(since.as_secs_f64());
            metric.encode(e.encode_descriptor(
                "log_read_age",
                "Cluster: time since this node last read the Redis stream successfully.",
                Some(&Unit::Seconds),
                metric.metric_type(),
            )?)?;
        }
        if let Some(commits) = &log.commit_latency {
            histogram(
                e,
                "log_commit_duration",
                "Durable: time each commit of the log (write and fsync) took.",
                commits,
            )?;
        }
        let webhooks = &m.webhooks;
        gauge(
            e,
            "webhooks_queued",
            "Webhook notifications waiting to be sent.",
            as_gauge(webhooks.queued),
        )?;
        counter(
            e,
            "webhooks_delivered",
            "Webhook notifications the application acknowledged (2xx).",
            webhooks.delivered,
        )?;
        counter(
            e,
            "webhooks_retried",
            "Webhook requests that failed and were tried again.",
            webhooks.retried,
        )?;
        counter(
            e,
            "webhooks_failed",
            "Webhook notifications given up after their last attempt failed.",
            webhooks.failed,
        )?;
        counter(
            e,
            "webhooks_dropped",
            "Webhook notifications dropped because the queue was full (--webhook-queue).",
            webhooks.dropped,
        )?;
        if let Some(app) = &self.1 {
            labeled_counter(
                e,
                "app_auth_requests",
                "Calls to the application's auth endpoint, by result.",
                "result",
                [
                    ("allowed", app.allowed),
                    ("denied", app.denied),
                    ("unavailable", app.unavailable),
                ],
            )?;
            counter(
                e,
                "app_auth_cache_hits",
                "Authorizations answered from the decision cache.",
                app.cache_hits,
            )?;
            gauge(
                e,
                "app_auth_cache_entries",
                "Decisions in the auth proxy's cache.",
                as_gauge(app.cache_entries),
            )?;
        }
        if !m.channels.is_empty() {
            labeled_counter(
                e,
                "channel_events",
                "Events recorded on each listed channel (--metrics-channels).",
                "channel",
                m.channels.iter().map(|c| (c.channel.as_str(), c.events)),
            )?;
            labeled_counter(
                e,
                "channel_recipients",
                "Connections of this node the listed channel's events were queued to, summed.",
                "channel",
                m.channels
                    .iter()
                    .map(|c| (c.channel.as_str(), c.recipients)),
            )?;
        }
        Ok(())
    }
}
