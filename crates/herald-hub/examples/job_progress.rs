//! Job progress: a POST starts a long job; its own stream reports `progress` events, then `done`,
//! then ends for good.
//!
//! It shows a short-lived channel per job (`job:{id}`), closed with [`Hub::close_channel`] and the
//! final `done` event: every stream on it gets `done` and ends, and a browser's `EventSource`
//! that reconnects afterwards gets `204 No Content`, which tells it to stop. A stream opened
//! mid-job starts with the job's current progress.
//!
//! Run it (listens on 127.0.0.1:3000, or on `$PORT`):
//!
//! ```sh
//! cargo run -p herald-hub --example job_progress
//! ```
//!
//! Try it:
//!
//! ```sh
//! curl -X POST localhost:3000/jobs                 # {"id":1,"stream":"/jobs/1/stream"}
//! curl -N localhost:3000/jobs/1/stream             # progress … 100%, then done, then it ends
//! curl -i localhost:3000/jobs/1/stream             # HTTP/1.1 204 No Content
//! ```

use axum::{
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{get, post},
    Json, Router,
};
use herald_hub::{
    http::{LastEventId, ServeOptions},
    ChannelName, ClientOptions, EventData, Hub, HubConfig, NewEvent,
};
use serde::Serialize;
use std::{collections::HashMap, sync::Arc, time::Duration};

/// How long a job runs: `steps` steps of `step_time` each. The job stands in for real work (an
/// export, an encode): only its pace matters here.
#[derive(Debug, Clone, Copy)]
pub struct JobSettings {
    /// Steps in a job; `progress` is sent after each.
    pub steps: u32,
    /// Time one step takes.
    pub step_time: Duration,
}

impl Default for JobSettings {
    fn default() -> Self {
        Self {
            steps: 20,
            step_time: Duration::from_millis(250),
        }
    }
}

/// The `progress` event.
#[derive(Debug, Clone, Copy, Serialize)]
struct Progress {
    current: u32,
    total: u32,
    percent: u32,
}

impl Progress {
    fn at(current: u32, total: u32) -> Self {
        Self {
            current,
            total,
            percent: current * 100 / total.max(1),
        }
    }
}

#[derive(Debug)]
struct Job {
    progress: Progress,
    is_finished: bool,
}

#[derive(Default)]
struct Jobs {
    next_id: u64,
    by_id: HashMap<u64, Job>,
}

#[derive(Clone)]
struct AppState {
    hub: Hub,
    settings: JobSettings,
    /// A job's state changes and its events are published under this lock, so a new stream's
    /// first `progress` is never older than one it already read. Nothing awaits while it is held.
    /// An async mutex: it is held across the hub's `.await` so a new subscriber's first
    /// `progress` is never older than one already published.
    jobs: Arc<tokio::sync::Mutex<Jobs>>,
}

/// The service's routes over `hub`; jobs run as `settings` says.
pub fn app(hub: Hub, settings: JobSettings) -> Router {
    let state = AppState {
        hub,
        settings,
        jobs: Arc::default(),
    };
    Router::new()
        .route("/jobs", post(start_job))
        .route("/jobs/{id}/stream", get(stream))
        .with_state(state)
}

/// The answer to `POST /jobs`.
#[derive(Debug, Serialize)]
struct Started {
    id: u64,
    stream: String,
}

/// `POST /jobs`: starts a job in the background and answers at once.
async fn start_job(State(app): State<AppState>) -> (StatusCode, Json<Started>) {
    let id = {
        let mut jobs = app.jobs.lock().await;
        jobs.next_id += 1;
        let id = jobs.next_id;
        let job = Job {
            progress: Progress::at(0, app.settings.steps),
            is_finished: false,
        };
        jobs.by_id.insert(id, job);
        id
    };
    tokio::spawn(run_job(app, id));
    let stream = format!("/jobs/{id}/stream");
    (StatusCode::ACCEPTED, Json(Started { id, stream }))
}

/// Does the job's steps, publishing `progress` after each, then closes its channel with `done`.
async fn run_job(app: AppState, id: u64) {
    let channel = job_channel(id);
    let total = app.settings.steps;
    for current in 1..=total {
        tokio::time::sleep(app.settings.step_time).await;
        let mut jobs = app.jobs.lock().await;
        let Some(job) = jobs.by_id.get_mut(&id) else {
            return;
        };
        job.progress = Progress::at(current, total);
        if let Err(err) = app
            .hub
            .broadcast(channel.as_str(), "progress", &job.progress, None)
            .await
        {
            eprintln!("job {id}: progress not published: {err}");
        }
    }
    let mut jobs = app.jobs.lock().await;
    if let Some(job) = jobs.by_id.get_mut(&id) {
        job.is_finished = true;
    }
    let done = EventData::json(&serde_json::json!({"id": id, "steps": total}))
        .expect("a JSON value serializes");
    if let Err(err) = app
        .hub
        .close_channel(channel, Some(NewEvent::new(done).named("done")))
        .await
    {
        eprintln!("job {id}: `done` not published: {err}");
    }
}

/// `GET /jobs/{id}/stream`: the job's events; `204` once the job has finished.
async fn stream(
    State(app): State<AppState>,
    Path(id): Path<u64>,
    LastEventId(last_event_id): LastEventId,
) -> Response {
    let jobs = app.jobs.lock().await;
    let Some(job) = jobs.by_id.get(&id) else {
        return (StatusCode::NOT_FOUND, "no such job").into_response();
    };
    // A closed channel is refused with `204` while its closing is in the hub's history; a
    // client resuming from before the closing still gets the rest and `done`.
    let stream = match app.hub.add_client(ClientOptions {
        channels: vec![job_channel(id)],
        last_event_id,
        ..ClientOptions::default()
    }) {
        Ok(stream) => stream,
        Err(refused) => return refused.into_response(),
    };
    if !stream.is_resumed() {
        if job.is_finished {
            // The closing has left history: the job's own state still knows it is over.
            return StatusCode::NO_CONTENT.into_response();
        }
        if let Err(err) = app
            .hub
            .send_to(stream.client_id(), "progress", &job.progress, None)
            .await
        {
            eprintln!("could not send the progress: {err}");
        }
    }
    stream.into_response()
}

fn job_channel(id: u64) -> ChannelName {
    ChannelName::new(&format!("job:{id}")).expect("a number makes a valid channel name")
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let hub = Hub::new(HubConfig::default());
    let app = app(hub.clone(), JobSettings::default());
    let port: u16 = std::env::var("PORT").map_or(Ok(3000), |port| port.parse())?;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("job_progress on http://{}", listener.local_addr()?);
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    herald_hub::http::serve(listener, app, hub, ServeOptions::default(), ctrl_c).await?;
    Ok(())
}
