//! A small real application for the tests: an axum server on a free loopback port that records
//! every request it gets and answers as the test says (at once, late, or never).

#![allow(dead_code, unreachable_pub)]

use axum::{
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    Router,
};
use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

/// One request the application received.
#[derive(Debug, Clone)]
pub struct Received {
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("the hub sends JSON")
    }
}

/// How the application answers one request.
pub enum Reply {
    /// This status and JSON body.
    Json(StatusCode, serde_json::Value),
    /// This status, empty body.
    Status(StatusCode),
    /// Waits this long, then answers 200 `{"allow": true}`.
    Late(Duration),
}

type Decide = dyn Fn(&Received, usize) -> Reply + Send + Sync;

#[derive(Clone)]
struct AppState {
    received: Arc<Mutex<Vec<Received>>>,
    decide: Arc<Decide>,
}

/// The running application; stops when dropped.
pub struct Backend {
    pub url: String,
    received: Arc<Mutex<Vec<Received>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Backend {
    /// Serves `path`; `decide` gets each request and how many came before it.
    pub async fn start(
        path: &str,
        decide: impl Fn(&Received, usize) -> Reply + Send + Sync + 'static,
    ) -> Self {
        let state = AppState {
            received: Arc::new(Mutex::new(Vec::new())),
            decide: Arc::new(decide),
        };
        let received = state.received.clone();
        let app = Router::new()
            .route(path, axum::routing::post(handle))
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a free port");
        let addr = listener.local_addr().expect("bound");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            url: format!("http://{addr}{path}"),
            received,
            task,
        }
    }

    /// Every request received so far.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().expect("lock").clone()
    }

    pub fn count(&self) -> usize {
        self.received.lock().expect("lock").len()
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let request = Received { headers, body };
    let before = {
        let mut received = state.received.lock().expect("lock");
        received.push(request.clone());
        received.len() - 1
    };
    match (state.decide)(&request, before) {
        Reply::Json(status, body) => (status, axum::Json(body)).into_response(),
        Reply::Status(status) => status.into_response(),
        Reply::Late(delay) => {
            tokio::time::sleep(delay).await;
            axum::Json(serde_json::json!({"allow": true})).into_response()
        }
    }
}
