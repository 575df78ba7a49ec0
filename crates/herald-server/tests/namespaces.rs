//! Namespaces through the real binary: a job's every step survives a reconnect while a busy
//! channel passes the default history (memory, durable across a restart, and a cluster node that
//! joins late), grace after close, caps, subscribe and publish rules, subscriber limits.

mod app_backend;
mod auth_support;
mod common;

use app_backend::{Backend, Reply};
use auth_support::{get, jwt_hub, post, token_for, API_KEY};
use axum::http::StatusCode;
use common::{eventually, RedisServer, SseStream, TestHub};
use serde_json::json;
use std::{path::PathBuf, time::Duration};

/// The default history keeps 50 events; `job:*` keeps everything until closed (then 2 s), within
/// 1000 events; `room:*` lets anyone subscribe, one subscriber per channel; `private:*` asks the
/// application; `inbox:*` needs any credential.
const CONFIG: &str = r#"
history_max_events = 50

[[namespace]]
name = "jobs"
channels = "job:*"
history = "until_closed"
grace = "2s"
max_events = 1000

[[namespace]]
name = "rooms"
channels = "room:*"
subscribe = "anyone"
max_subscribers = 1

[[namespace]]
name = "private"
channels = "private:*"
subscribe = "app"

[[namespace]]
name = "inbox"
channels = "inbox:*"
subscribe = "authenticated"
publish = "authenticated"
"#;

fn config_file(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("herald-ns-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("herald.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

fn start(name: &str, extra: &[&str]) -> TestHub {
    let config = config_file(name, CONFIG);
    let mut args = vec!["--config", config.to_str().expect("utf-8 path")];
    args.extend_from_slice(extra);
    TestHub::start(&args)
}

/// Publishes steps 1 to 3 of `job:42`, with `ticks` events to `prices` before steps 2 and 3;
/// returns the id of step 1.
async fn run_job_among_ticks(hub: &TestHub, ticks: usize) -> String {
    let first = hub
        .publish("/api/channels/job:42/events", json!({"data": "step 1"}))
        .await;
    for step in 2..=3 {
        for n in 0..ticks {
            hub.publish("/api/channels/prices/events", json!({ "data": n }))
                .await;
        }
        hub.publish(
            "/api/channels/job:42/events",
            json!({ "data": format!("step {step}") }),
        )
        .await;
    }
    first["id"].as_str().expect("an id").to_owned()
}

/// Resumes `job:42` after `last_event_id` on `hub` and checks that steps 2 and 3 come back.
async fn resume_gets_every_later_step(hub: &TestHub, last_event_id: &str) {
    let mut stream = SseStream::open(
        &hub.url("/api/channels/job:42/stream"),
        &[("Last-Event-ID", last_event_id)],
    )
    .await;
    assert_eq!(stream.connected().await["resumed"], json!(true));
    let steps: Vec<String> = stream
        .next_events(2)
        .await
        .into_iter()
        .map(|(_, data)| data)
        .collect();
    assert_eq!(steps, ["step 2", "step 3"]);
}

#[tokio::test]
async fn a_job_survives_a_reconnect_while_a_busy_channel_passes_the_default_history() {
    let hub = start("memory", &[]);
    let first = run_job_among_ticks(&hub, 200).await;
    resume_gets_every_later_step(&hub, &first).await;
    let mut busy = SseStream::open(
        &hub.url("/api/channels/prices/stream"),
        &[("Last-Event-ID", &first)],
    )
    .await;
    assert_eq!(
        busy.connected().await["resumed"],
        json!(false),
        "the busy channel's reader lost events and is told"
    );
    let stats = hub.stats().await;
    let held = stats["history"]["events"].as_u64().expect("history size");
    assert!(held <= 50 + 3, "the default history stays bounded: {held}");
}

#[tokio::test]
async fn a_job_survives_a_restart_of_a_durable_hub() {
    let dir = std::env::temp_dir().join(format!("herald-ns-data-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let data_dir = dir.to_str().expect("utf-8 path").to_owned();
    let mut hub = start("durable", &["--data-dir", &data_dir, "--fsync", "5ms"]);
    let first = run_job_among_ticks(&hub, 120).await;
    let status = hub
        .signal_and_wait("TERM", Duration::from_secs(5))
        .expect("stops");
    assert!(status.success());
    drop(hub);
    let hub = start("durable", &["--data-dir", &data_dir]);
    resume_gets_every_later_step(&hub, &first).await;
    let page = hub.get_json("/api/channels/prices/events?limit=1000").await;
    let ticks = page["events"].as_array().expect("events").len();
    assert!(ticks <= 50, "the busy channel kept its own window: {ticks}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_node_that_joins_late_still_has_every_step_of_a_job() {
    let redis = RedisServer::start();
    let node = |name: &str| {
        start(
            &format!("cluster-{name}"),
            &["--redis-url", &redis.url(), "--node-id", name],
        )
    };
    let a = node("a");
    let first = run_job_among_ticks(&a, 300).await;
    // The global stream is trimmed near 50 entries: step 1 left it long ago.
    let late = node("late");
    eventually("the late node joins", || async {
        late.get_json("/readyz")
            .await
            .get("status")
            .is_some_and(|s| s == "ok")
    })
    .await;
    resume_gets_every_later_step(&late, &first).await;
    resume_gets_every_later_step(&a, &first).await;
}

#[tokio::test]
async fn a_closed_job_is_served_for_its_grace_then_forgotten() {
    let hub = start("grace", &["--heartbeat-interval", "300ms"]);
    let first = hub
        .publish("/api/channels/job:7/events", json!({"data": "step 1"}))
        .await;
    let first = first["id"].as_str().expect("id").to_owned();
    hub.publish("/api/channels/job:7/events", json!({"data": "step 2"}))
        .await;
    let (status, _) = hub
        .post(
            "/api/channels/job:7/close",
            json!({"event": "done", "data": "ok"}),
        )
        .await;
    assert_eq!(status, 200);
    let mut late = SseStream::open(
        &hub.url("/api/channels/job:7/stream"),
        &[("Last-Event-ID", &first)],
    )
    .await;
    assert_eq!(late.connected().await["resumed"], json!(true));
    let events = late.events_until_end().await;
    let data: Vec<&str> = events.iter().map(|e| e.data.as_str()).collect();
    assert_eq!(
        data,
        ["step 2", "ok"],
        "the rest and the final event, then the end"
    );
    eventually("the grace ends and the job's history goes", || async {
        let page = hub.get_json("/api/channels/job:7/events").await;
        page["events"].as_array().is_some_and(Vec::is_empty)
    })
    .await;
}

#[tokio::test]
async fn subscribe_and_publish_follow_each_namespace_rule() {
    let config = config_file("rules", CONFIG);
    let hub = jwt_hub(&["--config", config.to_str().expect("utf-8 path")]);
    let reader = token_for("7", json!({"subscribe": ["news"]}));

    // anyone: no credential needed.
    let mut room = SseStream::open(&hub.url("/api/channels/room:1/stream"), &[]).await;
    room.connected().await;
    // max_subscribers = 1: the next is refused with a stable code.
    let full = get(&hub, "/api/channels/room:1/stream", None).await;
    assert_eq!(full.status, 429);
    assert_eq!(full.code(), Some("channel_full"));
    // claims (the default namespace): no token is 401, a token without the claim 403.
    assert_eq!(
        get(&hub, "/api/channels/orders/stream", None).await.status,
        401
    );
    let other = get(&hub, "/api/channels/orders/stream", Some(&reader)).await;
    assert_eq!(other.status, 403);
    // authenticated: any valid token, whatever its claims.
    assert_eq!(
        get(&hub, "/api/channels/inbox:1/events", None).await.status,
        401
    );
    assert_eq!(
        get(&hub, "/api/channels/inbox:1/events", Some(&reader))
            .await
            .status,
        200
    );
    let published = post(
        &hub,
        "/api/channels/inbox:1/events",
        Some(&reader),
        json!({"data": 1}),
    )
    .await;
    assert_eq!(
        published.status, 200,
        "authenticated publish needs no publish claim"
    );
    let refused = post(
        &hub,
        "/api/channels/orders/events",
        Some(&reader),
        json!({"data": 1}),
    )
    .await;
    assert_eq!(refused.status, 403, "claims publish does");
    // app: refused until an application auth is configured.
    let app = get(&hub, "/api/channels/private:1/events", Some(&reader)).await;
    assert_eq!(app.status, 503);
    assert_eq!(app.code(), Some("app_auth_unavailable"));
    // One publish, two namespaces: refused, nothing kept.
    let mixed = post(
        &hub,
        "/api/events",
        Some(API_KEY),
        json!({"channels": ["job:1", "news"], "data": 1}),
    )
    .await;
    assert_eq!(mixed.status, 400);
    assert_eq!(mixed.code(), Some("namespace_mismatch"));
}

#[tokio::test]
async fn a_namespace_that_asks_the_application_leaves_the_others_to_tokens() {
    // The application lets the session cookie `s=ok` hear `private:*` channels, as user 9.
    let app = Backend::start("/can-subscribe", |request, _| {
        let body = request.json();
        let cookie = request.header("cookie").unwrap_or_default();
        let asked: Vec<&str> = body["channels"]
            .as_array()
            .expect("channels")
            .iter()
            .filter_map(|c| c.as_str())
            .collect();
        if cookie.contains("s=ok") && asked.iter().all(|c| c.starts_with("private:")) {
            Reply::Json(
                StatusCode::OK,
                json!({"allow": true, "user": "9", "channels": asked}),
            )
        } else {
            Reply::Json(StatusCode::FORBIDDEN, json!({"allow": false}))
        }
    })
    .await;
    let config = config_file("app-namespace", CONFIG);
    let hub = jwt_hub(&[
        "--config",
        config.to_str().expect("utf-8 path"),
        "--auth-app-url",
        &app.url,
    ]);
    let cookie = [("cookie", "s=ok")];
    let mut private = SseStream::open(&hub.url("/api/channels/private:1/stream"), &cookie).await;
    private.connected().await;
    let asked = app.received();
    assert_eq!(asked.len(), 1, "the application was asked once");
    assert_eq!(asked[0].json()["channels"], json!(["private:1"]));
    // Without the session the application refuses; the cookie alone opens no channel of the
    // default namespace, which still takes a token's claims (the application is not asked).
    let refused = get(&hub, "/api/channels/private:1/stream", None).await;
    assert_eq!(refused.status, 403);
    let before = app.received().len();
    let claims = get(&hub, "/api/channels/orders/stream", None).await;
    assert_eq!(claims.status, 401);
    assert_eq!(app.received().len(), before, "tokens decide `orders`");
    // An event on the private channel reaches the stream the application allowed.
    let published = post(
        &hub,
        "/api/channels/private:1/events",
        Some(API_KEY),
        json!({"data": "hello"}),
    )
    .await;
    assert_eq!(published.status, 200);
    let event = private.next_event().await;
    assert_eq!(event.data, "hello");
}

#[tokio::test]
async fn a_namespace_can_keep_presence_while_the_hub_setting_is_off() {
    let config = config_file(
        "presence",
        "[[namespace]]\nname = \"rooms\"\nchannels = \"room:*\"\npresence = true\n",
    );
    let hub = TestHub::start(&["--config", config.to_str().expect("utf-8 path")]);
    let mut stream = SseStream::open(&hub.url("/api/channels/room:1/stream"), &[]).await;
    stream.connected().await;
    let room = get(&hub, "/api/channels/room:1/presence", None).await;
    assert_eq!(room.status, 200);
    assert_eq!(room.body["connections"], 1);
    let other = get(&hub, "/api/channels/news/presence", None).await;
    assert_eq!(other.status, 404);
    assert_eq!(other.code(), Some("presence_disabled"));
}

#[tokio::test]
async fn a_namespace_open_to_anyone_takes_publishes_without_a_credential() {
    let config = config_file(
        "open-publish",
        "[[namespace]]\nname = \"board\"\nchannels = \"board:*\"\nsubscribe = \"anyone\"\npublish = \"anyone\"\n",
    );
    let hub = jwt_hub(&["--config", config.to_str().expect("utf-8 path")]);
    let mut board = SseStream::open(&hub.url("/api/channels/board:1/stream"), &[]).await;
    board.connected().await;
    let open = post(
        &hub,
        "/api/channels/board:1/events",
        None,
        json!({"data": "hi"}),
    )
    .await;
    assert_eq!(open.status, 200, "{:?}", open.body);
    assert_eq!(board.next_event().await.data, "hi");
    // Everything else still takes a credential.
    for (path, body) in [
        ("/api/channels/orders/events", json!({"data": 1})),
        (
            "/api/events",
            json!({"channels": ["board:1", "board:2", "orders"], "data": 1}),
        ),
        ("/api/broadcast", json!({"data": 1})),
    ] {
        let refused = post(&hub, path, None, body).await;
        assert!(
            refused.status == 401 || refused.code() == Some("namespace_mismatch"),
            "{path}: {} {:?}",
            refused.status,
            refused.body
        );
    }
    assert_eq!(get(&hub, "/api/clients", None).await.status, 401);
}
