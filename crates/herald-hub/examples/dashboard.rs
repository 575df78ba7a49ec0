//! Dashboard: a web page whose numbers update every second from an event stream.
//!
//! It shows a stream that opens with the current state (the handler registers the client, then
//! [`Hub::send_to`] sends it a snapshot), one publish per tick to every viewer, connect and
//! disconnect hooks (the viewer counts), Herald's own HTTP API nested under `/herald`, and
//! `axum::serve` with a graceful shutdown that ends the event streams.
//!
//! Run it (listens on 127.0.0.1:3000, or on `$PORT`), then open <http://localhost:3000/>:
//!
//! ```sh
//! cargo run -p herald-hub --example dashboard
//! ```
//!
//! Or watch it with curl:
//!
//! ```sh
//! curl -N localhost:3000/stream                    # a `stats` snapshot, then one a second
//! curl localhost:3000/herald/api/stats             # the hub's own counters, as JSON
//! ```

use axum::{extract::State, response::Html, routing::get, Router};
use herald_hub::{
    http::HttpConfig, ChannelName, ClientOptions, ClientStream, ConnectError, Hub, HubConfig,
};
use serde::Serialize;
use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

/// The one channel every viewer listens to.
const CHANNEL: &str = "dashboard";

/// The `stats` event: everything the page shows.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Snapshot {
    /// Which tick this is; a snapshot sent on connect repeats the latest.
    tick: u64,
    viewers: u64,
    peak_viewers: u64,
    page_views: u64,
    events_published: u64,
    events_delivered: u64,
    uptime_seconds: u64,
}

struct Dashboard {
    hub: Hub,
    /// The latest tick. Each tick is published under this lock, and a new viewer gets its
    /// snapshot under it too, so a viewer never reads an older tick after a newer one.
    /// Held while a tick is published or a snapshot sent, so a new viewer never gets an older
    /// snapshot after a newer tick (an async mutex: it is held across the hub's `.await`).
    tick: tokio::sync::Mutex<u64>,
    /// Open streams, kept by the hooks.
    viewers: AtomicU64,
    peak_viewers: AtomicU64,
    page_views: AtomicU64,
}

impl Dashboard {
    fn snapshot(&self, tick: u64) -> Snapshot {
        let stats = self.hub.stats();
        Snapshot {
            tick,
            viewers: self.viewers.load(Ordering::Relaxed),
            peak_viewers: self.peak_viewers.load(Ordering::Relaxed),
            page_views: self.page_views.load(Ordering::Relaxed),
            events_published: stats.events_published,
            events_delivered: stats.events_delivered,
            uptime_seconds: stats.uptime_seconds,
        }
    }

    /// Publishes the next tick to every viewer.
    async fn publish_tick(&self) {
        let mut tick = self.tick.lock().await;
        *tick += 1;
        if let Err(err) = self
            .hub
            .broadcast(CHANNEL, "stats", &self.snapshot(*tick), None)
            .await
        {
            eprintln!("tick {tick} not published: {err}");
        }
    }
}

/// The page and its stream over `hub`, publishing a tick every `interval`; Herald's HTTP API is
/// under `/herald`. Spawns the ticker, which stops when the hub shuts down.
///
/// # Panics
/// When called outside a tokio runtime.
pub fn app(hub: Hub, interval: Duration) -> Router {
    let dashboard = Arc::new(Dashboard {
        hub: hub.clone(),
        tick: tokio::sync::Mutex::new(0),
        viewers: AtomicU64::new(0),
        peak_viewers: AtomicU64::new(0),
        page_views: AtomicU64::new(0),
    });
    let counts = Arc::downgrade(&dashboard);
    hub.on_connect(move |_client| {
        if let Some(dashboard) = counts.upgrade() {
            let now = dashboard.viewers.fetch_add(1, Ordering::Relaxed) + 1;
            dashboard.peak_viewers.fetch_max(now, Ordering::Relaxed);
        }
    });
    let counts = Arc::downgrade(&dashboard);
    hub.on_disconnect(move |_client| {
        if let Some(dashboard) = counts.upgrade() {
            dashboard.viewers.fetch_sub(1, Ordering::Relaxed);
        }
    });
    tokio::spawn(tick_every(interval, dashboard.clone()));
    Router::new()
        .route("/", get(page))
        .route("/stream", get(stream))
        .with_state(dashboard)
        .nest(
            "/herald",
            herald_hub::http::router(hub, HttpConfig::default()),
        )
}

async fn tick_every(interval: Duration, dashboard: Arc<Dashboard>) {
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        if dashboard.hub.is_shutting_down() {
            return;
        }
        dashboard.publish_tick().await;
    }
}

/// `GET /stream`: a snapshot now, then every tick. A reconnecting page gets a fresh snapshot, so
/// `Last-Event-ID` is not needed here.
async fn stream(State(dashboard): State<Arc<Dashboard>>) -> Result<ClientStream, ConnectError> {
    let tick = dashboard.tick.lock().await;
    let channels = vec![ChannelName::new(CHANNEL).expect("a valid channel name")];
    let stream = dashboard.hub.add_client(ClientOptions {
        channels,
        ..ClientOptions::default()
    })?;
    let snapshot = dashboard.snapshot(*tick);
    dashboard
        .hub
        .send_to(stream.client_id(), "stats", &snapshot, None)
        .await;
    Ok(stream)
}

/// `GET /`: the page.
async fn page(State(dashboard): State<Arc<Dashboard>>) -> Html<&'static str> {
    dashboard.page_views.fetch_add(1, Ordering::Relaxed);
    Html(PAGE)
}

const PAGE: &str = r#"<!doctype html>
<html lang="en">
<meta charset="utf-8">
<title>Herald dashboard</title>
<style>
  body { font: 16px system-ui, sans-serif; margin: 2rem; }
  dl { display: grid; grid-template-columns: max-content max-content; gap: .5rem 2rem; }
  dd { margin: 0; font-weight: bold; font-variant-numeric: tabular-nums; }
</style>
<h1>Dashboard</h1>
<dl>
  <dt>Viewers now</dt><dd id="viewers">…</dd>
  <dt>Most viewers at once</dt><dd id="peakViewers">…</dd>
  <dt>Page views</dt><dd id="pageViews">…</dd>
  <dt>Events published</dt><dd id="eventsPublished">…</dd>
  <dt>Events delivered</dt><dd id="eventsDelivered">…</dd>
  <dt>Uptime (s)</dt><dd id="uptimeSeconds">…</dd>
</dl>
<p id="status">connecting…</p>
<script>
  const status = document.getElementById("status");
  const source = new EventSource("/stream");
  source.addEventListener("stats", (event) => {
    for (const [key, value] of Object.entries(JSON.parse(event.data))) {
      const cell = document.getElementById(key);
      if (cell) cell.textContent = value.toLocaleString();
    }
  });
  source.onopen = () => { status.textContent = "live"; };
  source.onerror = () => { status.textContent = "reconnecting…"; };
</script>
</html>
"#;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let hub = Hub::new(HubConfig::default());
    let app = app(hub.clone(), Duration::from_secs(1));
    let port: u16 = std::env::var("PORT").map_or(Ok(3000), |port| port.parse())?;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("dashboard on http://{}", listener.local_addr()?);
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = tokio::signal::ctrl_c().await;
            // Event streams never end by themselves: end them, so `serve` can finish.
            hub.shutdown();
        })
        .await?;
    Ok(())
}
