//! The hub's HTTP API as the benchmark uses it: `GET /api/stats`, a probe publish, and the paths of
//! one channel.
//!
//! It knows routes and the JSON fields read; it does not know how a run is measured.

use crate::http;
use anyhow::{bail, Context};
use std::{net::SocketAddr, time::Duration};
use tokio::time::Instant;

/// Pause between two looks at the stats while waiting for a connection count.
const STATS_POLL_INTERVAL: Duration = Duration::from_millis(100);

/// The counters of `GET /api/stats` that the benchmark reads.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Stats {
    pub(crate) connections: u64,
    pub(crate) events_published: u64,
    pub(crate) events_delivered: u64,
}

/// Reads `GET /api/stats`.
///
/// # Errors
/// When the request fails or a counter is missing.
pub(crate) async fn stats(addr: SocketAddr) -> anyhow::Result<Stats> {
    let body = http::get_json(addr, "/api/stats").await?;
    let counter = |name: &str| {
        body.get(name)
            .and_then(serde_json::Value::as_u64)
            .with_context(|| format!("/api/stats has no {name}: {body}"))
    };
    Ok(Stats {
        connections: counter("connections")?,
        events_published: counter("eventsPublished")?,
        events_delivered: counter("eventsDelivered")?,
    })
}

/// Polls the stats until they show `connections`, and returns how long that took.
///
/// # Errors
/// When they do not within `timeout`, with the count last seen.
pub(crate) async fn wait_for_connections(
    addr: SocketAddr,
    connections: u64,
    timeout: Duration,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    loop {
        let seen = stats(addr).await?.connections;
        if seen == connections {
            return Ok(started.elapsed());
        }
        if started.elapsed() > timeout {
            bail!("the hub shows {seen} connections after {timeout:?}, expected {connections}");
        }
        tokio::time::sleep(STATS_POLL_INTERVAL).await;
    }
}

/// Channel that [`wait_until_publishing`] publishes to; no benchmark subscribes to it.
const PROBE_CHANNEL: &str = "bench-probe";

/// Publishes one event to a channel of its own until the hub answers 2xx, and returns how long
/// that took. A cluster node answers 503 until it has joined the Redis log.
///
/// # Errors
/// When it does not within `timeout`, with the last answer.
pub(crate) async fn wait_until_publishing(
    addr: SocketAddr,
    timeout: Duration,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    loop {
        let (status, body) =
            http::post_json(addr, &publish_path(PROBE_CHANNEL), br#"{"data":"probe"}"#).await?;
        if (200..300).contains(&status) {
            return Ok(started.elapsed());
        }
        if started.elapsed() > timeout {
            bail!(
                "the hub at {addr} still answers publishes with {status} after {timeout:?}: {}",
                String::from_utf8_lossy(&body)
            );
        }
        tokio::time::sleep(STATS_POLL_INTERVAL).await;
    }
}

/// The stream path of `channel`.
pub(crate) fn stream_path(channel: &str) -> String {
    format!("/api/channels/{channel}/stream")
}

/// The publish path of `channel`.
pub(crate) fn publish_path(channel: &str) -> String {
    format!("/api/channels/{channel}/events")
}
