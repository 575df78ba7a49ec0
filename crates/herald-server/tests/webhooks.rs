//! Webhooks against the real binary and a real small application: channel occupied and vacated,
//! signed so the application can check them, retried after a failure, dropped and counted when
//! the queue is full, and never in the way of delivery.

mod app_backend;
mod auth_support;
mod common;

use app_backend::{Backend, Received, Reply};
use auth_support::{jwt_hub, token_for};
use axum::http::StatusCode;
use common::{eventually, http, TestHub, PATIENCE};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use std::time::{Duration, Instant};

const SECRET: &str = "webhook-secret-0123456789";

fn webhook_hub(url: &str, extra: &[&str]) -> TestHub {
    let mut args = vec!["--webhook-url", url, "--webhook-secret", SECRET];
    args.extend_from_slice(extra);
    TestHub::start(&args)
}

/// What an application does with a webhook: checks the signature over `{timestamp}.{body}` in
/// constant time, and refuses a timestamp more than five minutes away.
fn is_genuine(request: &Received, secret: &str) -> bool {
    let (Some(timestamp), Some(signature)) = (
        request.header("x-herald-timestamp"),
        request.header("x-herald-signature"),
    ) else {
        return false;
    };
    let Ok(sent_at) = timestamp.parse::<u64>() else {
        return false;
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    if now.abs_diff(sent_at) > 300 {
        return false;
    }
    let Some(hex) = signature.strip_prefix("sha256=") else {
        return false;
    };
    let Some(expected) = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()
    else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(&request.body);
    mac.verify_slice(&expected).is_ok()
}

/// Every notification the application got, in order.
fn notices(app: &Backend) -> Vec<Value> {
    app.received()
        .iter()
        .flat_map(|r| r.json()["events"].as_array().cloned().unwrap_or_default())
        .collect()
}

fn kinds_for(app: &Backend, channel: &str) -> Vec<String> {
    notices(app)
        .iter()
        .filter(|n| n["channel"] == channel)
        .map(|n| n["type"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test]
async fn occupied_and_vacated_are_signed_so_the_application_can_check_them() {
    let app = Backend::start("/hooks", |_, _| Reply::Status(StatusCode::NO_CONTENT)).await;
    let hub = webhook_hub(&app.url, &["--webhook-vacated-delay", "300ms"]);
    let mut first = hub.stream("/api/channels/orders/stream").await;
    first.connected().await;
    let mut second = hub.stream("/api/channels/orders/stream").await;
    second.connected().await;
    eventually("orders is occupied", || async {
        kinds_for(&app, "orders") == ["channel_occupied"]
    })
    .await;
    drop(first);
    // One subscriber left: still occupied.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(kinds_for(&app, "orders"), ["channel_occupied"]);
    drop(second);
    eventually("orders is vacated", || async {
        kinds_for(&app, "orders") == ["channel_occupied", "channel_vacated"]
    })
    .await;

    for request in app.received() {
        assert!(is_genuine(&request, SECRET), "the signature verifies");
        assert!(!is_genuine(&request, "another-secret-0123456789"));
        let mut tampered = request.clone();
        let mut body = request.body.to_vec();
        body.reverse();
        tampered.body = body.into();
        assert!(
            !is_genuine(&tampered, SECRET),
            "a changed body does not verify"
        );
        let body = request.json();
        assert_eq!(
            request.header("x-herald-webhook-id").as_deref(),
            body["id"].as_str()
        );
        assert_eq!(body["node"], "standalone");
        for notice in body["events"].as_array().expect("events") {
            assert!(notice["timeMs"]
                .as_u64()
                .is_some_and(|t| t > 1_600_000_000_000));
        }
    }
}

#[tokio::test]
async fn a_reconnect_within_the_hold_sends_neither_vacated_nor_occupied() {
    let app = Backend::start("/hooks", |_, _| Reply::Status(StatusCode::OK)).await;
    let hub = webhook_hub(&app.url, &["--webhook-vacated-delay", "2s"]);
    let mut stream = hub.stream("/api/channels/feed/stream").await;
    stream.connected().await;
    eventually("feed is occupied", || async {
        kinds_for(&app, "feed") == ["channel_occupied"]
    })
    .await;
    // The client blips: gone, and back at once.
    drop(stream);
    eventually("the hub saw it leave", || async {
        hub.stats().await["connections"] == 0
    })
    .await;
    let mut back = hub.stream("/api/channels/feed/stream").await;
    back.connected().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        kinds_for(&app, "feed"),
        ["channel_occupied"],
        "the application never saw the channel empty"
    );
    // Gone for good: vacated, once the hold ends.
    drop(back);
    let left_at = Instant::now();
    eventually("feed is vacated", || async {
        kinds_for(&app, "feed") == ["channel_occupied", "channel_vacated"]
    })
    .await;
    assert!(
        left_at.elapsed() >= Duration::from_millis(1500),
        "held about 2s: {:?}",
        left_at.elapsed()
    );
}

#[tokio::test]
async fn a_failed_webhook_is_retried_with_the_same_id() {
    let app = Backend::start("/hooks", |_, before| {
        if before == 0 {
            Reply::Status(StatusCode::INTERNAL_SERVER_ERROR)
        } else {
            Reply::Status(StatusCode::OK)
        }
    })
    .await;
    let hub = webhook_hub(&app.url, &[]);
    let mut stream = hub.stream("/api/channels/jobs/stream").await;
    stream.connected().await;
    eventually("the webhook is retried", || async { app.count() >= 2 }).await;
    let received = app.received();
    assert_eq!(received[0].body, received[1].body, "the same notifications");
    assert_eq!(
        received[0].header("x-herald-webhook-id"),
        received[1].header("x-herald-webhook-id")
    );
    assert!(is_genuine(&received[1], SECRET), "each attempt is signed");
    eventually("stats count the retry and the delivery", || async {
        let stats = hub.stats().await;
        stats["webhooks"]["retried"] == 1 && stats["webhooks"]["delivered"] == 1
    })
    .await;
}

#[tokio::test]
async fn a_full_queue_drops_and_counts_while_delivery_goes_on() {
    // The application never answers in time: the sender is stuck on its first request.
    let app = Backend::start("/hooks", |_, _| Reply::Late(Duration::from_secs(120))).await;
    let hub = webhook_hub(&app.url, &["--webhook-queue", "2"]);
    let mut first = hub.stream("/api/channels/c0/stream").await;
    first.connected().await;
    eventually("the sender is waiting on the application", || async {
        app.count() == 1
    })
    .await;
    // Twenty more channels occupied at once, while the sender waits: two fit in the queue.
    let channels: Vec<String> = (1..=20).map(|i| format!("channel=c{i}")).collect();
    let mut many = hub
        .stream(&format!("/api/stream?{}", channels.join("&")))
        .await;
    many.connected().await;

    // Delivery is not slowed by the stuck application.
    let started = Instant::now();
    for i in 0..50 {
        hub.publish(
            "/api/channels/c3/events",
            json!({"event": "tick", "data": i}),
        )
        .await;
    }
    for i in 0..50 {
        let event = many.next_event().await;
        assert_eq!(event.data, i.to_string());
    }
    assert!(
        started.elapsed() < PATIENCE,
        "50 events published and delivered while webhooks are stuck"
    );

    let stats = hub.stats().await;
    assert_eq!(stats["webhooks"]["dropped"], 18, "{stats}");
    assert_eq!(stats["webhooks"]["queued"], 2, "{stats}");
    let metrics = http()
        .get(hub.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("herald_webhooks_dropped_total 18"),
        "{metrics}"
    );
}

#[test]
fn webhooks_are_always_signed() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(["--webhook-url", "http://127.0.0.1:1/hooks"])
        .env_remove("HERALD_WEBHOOK_SECRET")
        .output()
        .expect("herald runs");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("--webhook-secret"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_cluster_occupancy_is_per_node_and_names_the_node() {
    let redis = common::RedisServer::start();
    let app = Backend::start("/hooks", |_, _| Reply::Status(StatusCode::OK)).await;
    let node = |name: &str| {
        TestHub::start(&[
            "--redis-url",
            &redis.url(),
            "--node-id",
            name,
            "--webhook-url",
            &app.url,
            "--webhook-secret",
            SECRET,
            "--webhook-vacated-delay",
            "0",
        ])
    };
    let (a, b) = (node("a"), node("b"));
    // How many `kind` notices for `room` came from `node`.
    let on = |node: &str, kind: &str| {
        app.received()
            .iter()
            .map(Received::json)
            .filter(|body| body["node"] == node)
            .flat_map(|body| body["events"].as_array().cloned().unwrap_or_default())
            .filter(|notice| notice["channel"] == "room" && notice["type"] == kind)
            .count()
    };
    let mut on_a = a.stream("/api/channels/room/stream").await;
    on_a.connected().await;
    let mut on_b = b.stream("/api/channels/room/stream").await;
    on_b.connected().await;
    eventually("each node reports its own first subscriber", || async {
        on("a", "channel_occupied") == 1 && on("b", "channel_occupied") == 1
    })
    .await;
    // An event published on a reaches b's subscriber: delivery does not depend on webhooks.
    a.publish("/api/channels/room/events", json!({"data": "hi"}))
        .await;
    assert_eq!(on_b.next_event().await.data, "hi");
    drop(on_b);
    eventually("b reports its last subscriber leaving", || async {
        on("b", "channel_vacated") == 1
    })
    .await;
    assert_eq!(on("a", "channel_vacated"), 0, "a still has its subscriber");
    for request in app.received() {
        assert!(is_genuine(&request, SECRET));
    }
}

#[tokio::test]
async fn presence_changes_reach_the_application_signed() {
    let app = Backend::start("/hooks", |_, _| Reply::Status(StatusCode::NO_CONTENT)).await;
    let hub = jwt_hub(&[
        "--presence",
        "on",
        "--presence-linger",
        "200ms",
        "--webhook-url",
        &app.url,
        "--webhook-secret",
        SECRET,
        "--webhook-vacated-delay",
        "0s",
    ]);
    let token = token_for("ann", json!({"subscribe": ["room"]}));
    let mut stream = common::SseStream::open(
        &hub.url(&format!("/api/channels/room/stream?token={token}")),
        &[],
    )
    .await;
    stream.connected().await;
    let changes = |app: &Backend| -> Vec<(Value, Value)> {
        notices(app)
            .iter()
            .filter(|n| n["type"] == "presence_changed" && n["channel"] == "room")
            .map(|n| (n["joined"].clone(), n["left"].clone()))
            .collect()
    };
    eventually("ann's join reaches the application", || async {
        changes(&app) == [(json!(["ann"]), json!([]))]
    })
    .await;
    drop(stream);
    eventually("ann's leave reaches the application", || async {
        changes(&app) == [(json!(["ann"]), json!([])), (json!([]), json!(["ann"]))]
    })
    .await;
    for request in app.received() {
        assert!(is_genuine(&request, SECRET), "the signature verifies");
    }
}
