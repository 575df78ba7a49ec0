//! Notifications: an axum service that stores notifications in SQLite, pushes each new one to
//! its user's open tabs at once, and keeps an unread-count badge right as notifications are read.
//!
//! It shows the hub inside an application: the app's own stream route over the channel
//! `user:{id}` (resumable with `Last-Event-ID`), a first event built from the database on
//! connect, and a publish after each write.
//!
//! Run it (listens on 127.0.0.1:3000, or on `$PORT`; the database is `$HERALD_EXAMPLE_DB`, by default
//! `herald-notifications.db` in the system's temporary folder):
//!
//! ```sh
//! cargo run -p herald-hub --example notifications
//! ```
//!
//! Try it:
//!
//! ```sh
//! curl -N localhost:3000/users/7/stream          # event: unread, data: {"count":0}
//! curl -X POST localhost:3000/users/7/notifications \
//!      -H 'content-type: application/json' -d '{"text":"Your order has shipped"}'
//!                                                 # the stream gets `notification`, then `unread` 1
//! curl -X POST localhost:3000/notifications/1/read    # the stream gets `unread` 0
//! curl localhost:3000/users/7/notifications
//! ```
//!
//! The user id comes from the path to keep the example short; a real service takes it from the
//! caller's session.

use axum::{
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{get, post},
    Json, Router,
};
use herald_hub::{
    http::{LastEventId, ServeOptions},
    ChannelName, ClientOptions, ConnectError, Hub, HubConfig, SendError,
};
use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// One stored notification, as the API and the `notification` event show it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Notification {
    /// Its id, for `POST /notifications/{id}/read`.
    pub id: i64,
    /// Whose it is.
    pub user_id: i64,
    /// What it says.
    pub text: String,
    /// When it was created (UTC, RFC 3339).
    pub created_at: String,
    /// Whether the user has read it.
    pub read: bool,
}

/// The body of `POST /users/{id}/notifications`.
#[derive(Debug, Deserialize)]
struct NewNotification {
    text: String,
}

/// The `unread` event: the badge's number.
#[derive(Debug, Serialize)]
struct Unread {
    count: i64,
}

#[derive(Clone)]
struct AppState {
    hub: Hub,
    /// Every handler writes, then publishes, under this lock, so the events of two requests
    /// reach a stream in the order their writes happened (a badge never goes back to a stale
    /// count). Nothing awaits while it is held.
    /// An async mutex: it is held across the hub's `.await` so a write's `unread` count is never
    /// overtaken by an older one.
    db: Arc<tokio::sync::Mutex<Connection>>,
}

const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS notifications (
        id         INTEGER PRIMARY KEY,
        user_id    INTEGER NOT NULL,
        text       TEXT NOT NULL,
        created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
        read_at    TEXT
    );
    CREATE INDEX IF NOT EXISTS notifications_unread ON notifications (user_id) WHERE read_at IS NULL;
";

/// The service's routes over `hub`, storing notifications in `db` (its table is created if
/// missing).
///
/// # Errors
/// The database's error when the schema cannot be created.
pub fn app(hub: Hub, db: Connection) -> rusqlite::Result<Router> {
    db.execute_batch(SCHEMA)?;
    let state = AppState {
        hub,
        db: Arc::new(tokio::sync::Mutex::new(db)),
    };
    Ok(Router::new()
        .route("/users/{id}/stream", get(stream))
        .route(
            "/users/{id}/notifications",
            post(create_notification).get(list_notifications),
        )
        .route("/notifications/{id}/read", post(mark_read))
        .with_state(state))
}

/// `GET /users/{id}/stream`: the user's channel as an event stream, opening with the current
/// unread count.
async fn stream(
    State(app): State<AppState>,
    Path(user_id): Path<i64>,
    LastEventId(last_event_id): LastEventId,
) -> Result<Response, AppError> {
    let db = app.db.lock().await;
    // Register first, then read the count: a notification created in between is both counted
    // and delivered, never lost. The lock keeps a concurrent write's `unread` from overtaking
    // this one.
    let stream = app.hub.add_client(ClientOptions {
        channels: vec![user_channel(user_id)],
        user: Some(user_id.to_string()),
        last_event_id,
        ..ClientOptions::default()
    })?;
    let count = unread_count(&db, user_id)?;
    if let Err(err) = app
        .hub
        .send_to(stream.client_id(), "unread", &Unread { count }, None)
        .await
    {
        eprintln!("could not send the unread count: {err}");
    }
    Ok(stream.into_response())
}

/// `POST /users/{id}/notifications`: stores a notification, then pushes it and the new unread
/// count to the user.
async fn create_notification(
    State(app): State<AppState>,
    Path(user_id): Path<i64>,
    Json(new): Json<NewNotification>,
) -> Result<(StatusCode, Json<Notification>), AppError> {
    let db = app.db.lock().await;
    let notification = db.query_row(
        "INSERT INTO notifications (user_id, text) VALUES (?1, ?2)
         RETURNING id, user_id, text, created_at, read_at IS NOT NULL",
        params![user_id, new.text],
        notification_from_row,
    )?;
    let count = unread_count(&db, user_id)?;
    let channel = user_channel(user_id);
    app.hub
        .broadcast(channel.as_str(), "notification", &notification, None)
        .await?;
    app.hub
        .broadcast(channel.as_str(), "unread", &Unread { count }, None)
        .await?;
    Ok((StatusCode::CREATED, Json(notification)))
}

/// `POST /notifications/{id}/read`: marks it read and pushes the user's new unread count.
async fn mark_read(
    State(app): State<AppState>,
    Path(id): Path<i64>,
) -> Result<Json<Notification>, AppError> {
    let db = app.db.lock().await;
    let was_unread = db.execute(
        "UPDATE notifications SET read_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
         WHERE id = ?1 AND read_at IS NULL",
        params![id],
    )? == 1;
    let notification = db
        .query_row(
            "SELECT id, user_id, text, created_at, read_at IS NOT NULL
             FROM notifications WHERE id = ?1",
            params![id],
            notification_from_row,
        )
        .optional()?
        .ok_or(AppError::NotFound)?;
    if was_unread {
        let count = unread_count(&db, notification.user_id)?;
        let channel = user_channel(notification.user_id);
        app.hub
            .broadcast(channel.as_str(), "unread", &Unread { count }, None)
            .await?;
    }
    Ok(Json(notification))
}

/// `GET /users/{id}/notifications`: the user's notifications, newest first.
async fn list_notifications(
    State(app): State<AppState>,
    Path(user_id): Path<i64>,
) -> Result<Json<Vec<Notification>>, AppError> {
    let db = app.db.lock().await;
    let mut query = db.prepare(
        "SELECT id, user_id, text, created_at, read_at IS NOT NULL
         FROM notifications WHERE user_id = ?1 ORDER BY id DESC LIMIT 100",
    )?;
    let notifications = query
        .query_map(params![user_id], notification_from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(Json(notifications))
}

/// The channel that reaches every open tab of `user_id`.
fn user_channel(user_id: i64) -> ChannelName {
    ChannelName::for_user(&user_id.to_string()).expect("a number makes a valid channel name")
}

fn unread_count(db: &Connection, user_id: i64) -> rusqlite::Result<i64> {
    db.query_row(
        "SELECT count(*) FROM notifications WHERE user_id = ?1 AND read_at IS NULL",
        params![user_id],
        |row| row.get(0),
    )
}

fn notification_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Notification> {
    Ok(Notification {
        id: row.get(0)?,
        user_id: row.get(1)?,
        text: row.get(2)?,
        created_at: row.get(3)?,
        read: row.get(4)?,
    })
}

/// What a handler can fail with, as an HTTP answer.
#[derive(Debug)]
enum AppError {
    NotFound,
    Database(rusqlite::Error),
    Publish(SendError),
    Connect(ConnectError),
}

impl From<rusqlite::Error> for AppError {
    fn from(err: rusqlite::Error) -> Self {
        Self::Database(err)
    }
}

impl From<SendError> for AppError {
    fn from(err: SendError) -> Self {
        Self::Publish(err)
    }
}

impl From<ConnectError> for AppError {
    fn from(err: ConnectError) -> Self {
        Self::Connect(err)
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        match self {
            Self::NotFound => (StatusCode::NOT_FOUND, "no such notification").into_response(),
            Self::Connect(err) => err.into_response(),
            Self::Database(err) => {
                eprintln!("database error: {err}");
                StatusCode::INTERNAL_SERVER_ERROR.into_response()
            }
            Self::Publish(err) => {
                eprintln!("publish refused: {err}");
                StatusCode::INTERNAL_SERVER_ERROR.into_response()
            }
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let hub = Hub::new(HubConfig::default());
    // `$HERALD_EXAMPLE_DB`, or a file in the system's temporary folder (never the working tree).
    let db_path = std::env::var_os("HERALD_EXAMPLE_DB").map_or_else(
        || std::env::temp_dir().join("herald-notifications.db"),
        std::path::PathBuf::from,
    );
    let app = app(hub.clone(), Connection::open(&db_path)?)?;
    let port: u16 = std::env::var("PORT").map_or(Ok(3000), |port| port.parse())?;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("notifications on http://{}", listener.local_addr()?);
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    herald_hub::http::serve(listener, app, hub, ServeOptions::default(), ctrl_c).await?;
    Ok(())
}
