//! The hub's one timer: heartbeats for every connection, then trimming history by age and
//! forgetting departed client ids. One sweep serves every connection, so idle connections arm no
//! timer.
//!
//! Owns the sweep's period and order. It never publishes and holds the hub's lock only for one
//! pass.

use super::Shared;
use crate::config::HubConfig;
use std::{
    sync::{Arc, Weak},
    time::{Duration, Instant},
};
use tokio_util::sync::CancellationToken;

/// The sweep period when heartbeats are off (history still ages out).
const SWEEP_PERIOD_WITHOUT_HEARTBEAT: Duration = Duration::from_secs(5);

fn sweep_period(config: &HubConfig) -> Duration {
    if config.heartbeat_interval.is_zero() {
        SWEEP_PERIOD_WITHOUT_HEARTBEAT
    } else {
        config.heartbeat_interval
    }
}

/// Starts the sweep; it stops with the hub's shutdown or when the hub is dropped.
pub(super) fn spawn(shared: &Arc<Shared>) {
    tokio::spawn(sweep(
        Arc::downgrade(shared),
        shared.shutdown.clone(),
        sweep_period(&shared.config),
    ));
}

async fn sweep(shared: Weak<Shared>, shutdown: CancellationToken, period: Duration) {
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let mut state = shared.state();
        if !shared.config.heartbeat_interval.is_zero() {
            for entry in state.fanout.entries() {
                entry.client.push_heartbeat();
            }
        }
        let now = Instant::now();
        shared.trim(&mut state, now);
        let linger = shared.config.client_linger;
        let first = state.history.first_seq().unwrap_or(u64::MAX);
        let state = &mut *state;
        state.client_events.retain(|_, newest| *newest >= first);
        let client_events = &state.client_events;
        // A departed id stays its owner's while it lingers or an event for it is in history.
        state.departed.retain(|id, departed| {
            now.saturating_duration_since(departed.left_at) < linger
                || client_events.contains_key(id)
        });
    }
}
