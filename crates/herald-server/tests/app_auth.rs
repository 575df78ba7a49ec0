//! `--auth app` against the real binary and a real small application: allow, deny, a partial
//! grant, a slow and a dead application, what is forwarded (and never logged), and the cache.

mod app_backend;
mod common;

use app_backend::{Backend, Received, Reply};
use axum::http::StatusCode;
use common::{http, SseStream, TestHub};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const API_KEY: &str = "server-to-server-key-0123";
const ALICE_COOKIE: &str = "session=alice-secret-cookie-5f1c";
const BEARER: &str = "Bearer app-session-token-9d2e";

/// The application's rule: alice may hear `orders` and `user:alice`; anyone else is refused.
fn alice_only(request: &Received, _before: usize) -> Reply {
    let cookie = request.header("cookie").unwrap_or_default();
    if !cookie.contains("session=alice") {
        return Reply::Status(StatusCode::UNAUTHORIZED);
    }
    Reply::Json(
        StatusCode::OK,
        json!({"allow": true, "user": "alice", "channels": ["orders", "user:alice"]}),
    )
}

fn app_hub(url: &str, extra: &[&str]) -> TestHub {
    let mut args = vec![
        "--auth",
        "app",
        "--auth-app-url",
        url,
        "--api-keys",
        API_KEY,
    ];
    args.extend_from_slice(extra);
    TestHub::start_with_env(&args, &[("HERALD_LOG", "debug")])
}

/// GETs `path` with `headers`; the status and the JSON error code, if any.
async fn get(hub: &TestHub, path: &str, headers: &[(&str, &str)]) -> (u16, Value) {
    let mut request = http().get(hub.url(path));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.expect("the hub answers");
    let status = response.status().as_u16();
    let body = if status == 200 && path.ends_with("/stream") {
        Value::Null
    } else {
        response.json().await.unwrap_or(Value::Null)
    };
    (status, body)
}

#[tokio::test]
async fn the_application_allows_a_stream_and_names_its_user() {
    let app = Backend::start("/herald/authorize", alice_only).await;
    let hub = app_hub(&app.url, &[]);
    let mut stream = SseStream::open(
        &hub.url("/api/stream?channel=orders&channel=user:alice"),
        &[
            ("cookie", ALICE_COOKIE),
            ("authorization", BEARER),
            ("origin", "https://app.example.test"),
            ("user-agent", "herald-test/1"),
        ],
    )
    .await;
    stream.connected().await;

    // What the application was asked, with which headers.
    let asked = app.received();
    assert_eq!(asked.len(), 1);
    assert_eq!(
        asked[0].json(),
        json!({"channels": ["orders", "user:alice"]})
    );
    assert_eq!(asked[0].header("cookie").as_deref(), Some(ALICE_COOKIE));
    assert_eq!(asked[0].header("authorization").as_deref(), Some(BEARER));
    assert_eq!(
        asked[0].header("origin").as_deref(),
        Some("https://app.example.test")
    );
    assert_eq!(
        asked[0].header("user-agent").as_deref(),
        Some("herald-test/1")
    );
    assert_eq!(
        asked[0].header("x-forwarded-for").as_deref(),
        Some("127.0.0.1")
    );

    // The application's user is the connection's: events to the user reach it.
    let published = http()
        .post(hub.url("/api/users/alice/events"))
        .bearer_auth(API_KEY)
        .json(&json!({"event": "hello", "data": 1}))
        .send()
        .await
        .expect("publish");
    assert_eq!(published.status().as_u16(), 200);
    let event = stream.next_event().await;
    assert_eq!(event.event, "hello");

    // Publishing still takes an API key: the application only grants subscriptions.
    let anonymous = http()
        .post(hub.url("/api/channels/orders/events"))
        .header("cookie", ALICE_COOKIE)
        .json(&json!({"data": 1}))
        .send()
        .await
        .expect("publish");
    assert_eq!(anonymous.status().as_u16(), 401);
}

#[tokio::test]
async fn refusals_are_the_applications_401_and_403() {
    let app = Backend::start("/auth", |request, _| {
        match request.header("cookie").as_deref() {
            Some("session=bob") => Reply::Json(StatusCode::OK, json!({"allow": false})),
            Some("session=carol") => Reply::Status(StatusCode::FORBIDDEN),
            _ => Reply::Status(StatusCode::UNAUTHORIZED),
        }
    })
    .await;
    let hub = app_hub(&app.url, &[]);
    let (status, body) = get(&hub, "/api/channels/orders/stream", &[]).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("unauthorized"))
    );
    for cookie in ["session=bob", "session=carol"] {
        let (status, body) = get(&hub, "/api/channels/orders/stream", &[("cookie", cookie)]).await;
        assert_eq!(status, 403, "{cookie}: {body}");
        assert_eq!(body["error"]["code"], "forbidden");
        assert_eq!(body["error"]["channels"], json!(["orders"]));
    }
    // Polling asks the same question.
    let (status, _) = get(
        &hub,
        "/api/channels/orders/events",
        &[("cookie", "session=bob")],
    )
    .await;
    assert_eq!(status, 403);
}

#[tokio::test]
async fn a_partial_grant_refuses_the_stream_and_names_what_was_not_granted() {
    let app = Backend::start("/auth", alice_only).await;
    let hub = app_hub(&app.url, &[]);
    let (status, body) = get(
        &hub,
        "/api/stream?channel=orders&channel=billing",
        &[("cookie", ALICE_COOKIE)],
    )
    .await;
    assert_eq!(status, 403);
    assert_eq!(body["error"]["code"], "forbidden");
    assert_eq!(body["error"]["channels"], json!(["billing"]));
    // The granted part alone is fine; so is a poll of it.
    let (status, _) = get(
        &hub,
        "/api/channels/orders/stream",
        &[("cookie", ALICE_COOKIE)],
    )
    .await;
    assert_eq!(status, 200);
    let (status, page) = get(
        &hub,
        "/api/channels/orders/events",
        &[("cookie", ALICE_COOKIE)],
    )
    .await;
    assert_eq!(status, 200, "{page}");
}

#[tokio::test]
async fn a_slow_application_fails_closed_within_the_timeout() {
    let app = Backend::start("/auth", |_, _| Reply::Late(Duration::from_secs(30))).await;
    let hub = app_hub(&app.url, &["--auth-app-timeout", "500ms"]);
    let started = Instant::now();
    let (status, body) = get(
        &hub,
        "/api/channels/orders/stream",
        &[("cookie", ALICE_COOKIE)],
    )
    .await;
    let waited = started.elapsed();
    assert_eq!(status, 503);
    assert_eq!(body["error"]["code"], "app_auth_unavailable");
    assert!(
        waited >= Duration::from_millis(450),
        "waited the timeout: {waited:?}"
    );
    assert!(
        waited < Duration::from_secs(10),
        "and not much more: {waited:?}"
    );
    // A failure is never cached: the next request asks again.
    let _ = get(
        &hub,
        "/api/channels/orders/stream",
        &[("cookie", ALICE_COOKIE)],
    )
    .await;
    assert_eq!(app.count(), 2);
}

#[tokio::test]
async fn a_dead_or_failing_application_fails_closed() {
    // Nobody listens on this port.
    let dead = format!("http://127.0.0.1:{}/auth", common::free_port());
    let hub = app_hub(&dead, &[]);
    let (status, body) = get(
        &hub,
        "/api/channels/orders/stream",
        &[("cookie", ALICE_COOKIE)],
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (503, Some("app_auth_unavailable"))
    );

    let failing = Backend::start("/auth", |_, before| match before {
        0 => Reply::Status(StatusCode::INTERNAL_SERVER_ERROR),
        1 => Reply::Status(StatusCode::FOUND),
        _ => Reply::Json(StatusCode::OK, json!({"nonsense": true})),
    })
    .await;
    let hub = app_hub(&failing.url, &[]);
    for what in ["a 500", "a redirect", "an answer without allow"] {
        let (status, body) = get(
            &hub,
            "/api/channels/orders/stream",
            &[("cookie", ALICE_COOKIE)],
        )
        .await;
        assert_eq!(status, 503, "{what}: {body}");
        assert_eq!(body["error"]["code"], "app_auth_unavailable", "{what}");
    }
}

#[tokio::test]
async fn forwarded_credentials_never_reach_the_log() {
    let app = Backend::start("/auth", |request, _| {
        if request.header("cookie").as_deref() == Some(ALICE_COOKIE) {
            Reply::Status(StatusCode::INTERNAL_SERVER_ERROR)
        } else {
            Reply::Status(StatusCode::FORBIDDEN)
        }
    })
    .await;
    let hub = app_hub(&app.url, &["--auth-app-timeout", "1s"]);
    let headers = [("cookie", ALICE_COOKIE), ("authorization", BEARER)];
    let (status, _) = get(&hub, "/api/channels/orders/stream", &headers).await;
    assert_eq!(status, 503);
    let (status, _) = get(
        &hub,
        "/api/channels/orders/stream",
        &[
            ("cookie", "session=other-secret-7a7a"),
            ("authorization", BEARER),
        ],
    )
    .await;
    assert_eq!(status, 403);
    // The log had time to be written: the warning about the unavailable application is there.
    common::eventually("the hub logs the unavailable application", || async {
        hub.log()
            .iter()
            .any(|line| line.contains("gave no usable answer"))
    })
    .await;
    let log = hub.log().join("\n");
    for secret in [
        "alice-secret-cookie-5f1c",
        "other-secret-7a7a",
        "app-session-token-9d2e",
    ] {
        assert!(!log.contains(secret), "{secret} is in the log:\n{log}");
    }
}

#[tokio::test]
async fn a_decision_is_cached_for_the_same_credentials_and_channels() {
    let app = Backend::start("/auth", alice_only).await;
    let hub = app_hub(&app.url, &["--auth-app-cache", "30s"]);
    let alice = [("cookie", ALICE_COOKIE)];
    for _ in 0..3 {
        let (status, _) = get(&hub, "/api/channels/orders/events", &alice).await;
        assert_eq!(status, 200);
    }
    assert_eq!(app.count(), 1, "one question for three polls");
    // Another channel, or other credentials, is another question; a refusal is cached too.
    let (status, _) = get(&hub, "/api/channels/user:alice/events", &alice).await;
    assert_eq!(status, 200);
    assert_eq!(app.count(), 2);
    for _ in 0..2 {
        let (status, _) = get(
            &hub,
            "/api/channels/orders/events",
            &[("cookie", "session=eve")],
        )
        .await;
        assert_eq!(status, 401);
    }
    assert_eq!(app.count(), 3);
    // The cache is counted in /metrics.
    let metrics = http()
        .get(hub.url("/metrics"))
        .bearer_auth(API_KEY)
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("herald_app_auth_cache_hits_total 3"),
        "{metrics}"
    );
    assert!(
        metrics.contains("herald_app_auth_requests_total{result=\"allowed\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("herald_app_auth_cache_entries 3"),
        "{metrics}"
    );

    // With the cache off, every request asks.
    let uncached = Backend::start("/auth", alice_only).await;
    let hub = app_hub(&uncached.url, &["--auth-app-cache", "0"]);
    for _ in 0..2 {
        let (status, _) = get(&hub, "/api/channels/orders/events", &alice).await;
        assert_eq!(status, 200);
    }
    assert_eq!(uncached.count(), 2);
}

#[test]
fn app_mode_needs_its_url_and_api_keys() {
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_herald"))
            .arg("serve")
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .env_remove("HERALD_AUTH")
            .output()
            .expect("herald runs")
    };
    let no_url = run(&["--auth", "app", "--api-keys", API_KEY]);
    assert!(!no_url.status.success());
    assert!(String::from_utf8_lossy(&no_url.stderr).contains("--auth-app-url"));
    let no_keys = run(&["--auth", "app", "--auth-app-url", "http://127.0.0.1:1/auth"]);
    assert!(!no_keys.status.success());
    assert!(String::from_utf8_lossy(&no_keys.stderr).contains("--api-keys"));
    let wrong_mode = run(&["--auth-app-url", "http://127.0.0.1:1/auth"]);
    assert!(!wrong_mode.status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_of_a_cluster_asks_the_application() {
    let redis = common::RedisServer::start();
    let app = Backend::start("/auth", alice_only).await;
    let node = |name: &str| {
        TestHub::start(&[
            "--redis-url",
            &redis.url(),
            "--node-id",
            name,
            "--auth",
            "app",
            "--auth-app-url",
            &app.url,
            "--api-keys",
            API_KEY,
        ])
    };
    let (a, b) = (node("a"), node("b"));
    let alice = [("cookie", ALICE_COOKIE)];
    let mut on_a = SseStream::open(&a.url("/api/channels/orders/stream"), &alice).await;
    on_a.connected().await;
    let published = http()
        .post(b.url("/api/channels/orders/events"))
        .bearer_auth(API_KEY)
        .json(&json!({"data": "from b"}))
        .send()
        .await
        .expect("publish on b");
    assert_eq!(published.status().as_u16(), 200);
    let event = on_a.next_event().await;
    assert_eq!(event.data, "from b");
    // Resuming on the other node asks the application there too (each node has its own cache).
    let last_id = event.id.clone();
    let mut on_b = SseStream::open(
        &b.url("/api/channels/orders/stream"),
        &[("cookie", ALICE_COOKIE), ("last-event-id", &last_id)],
    )
    .await;
    assert_eq!(on_b.connected().await["resumed"], true);
    assert_eq!(app.count(), 2);
    let (status, _) = get(
        &b,
        "/api/channels/orders/stream",
        &[("cookie", "session=eve")],
    )
    .await;
    assert_eq!(status, 401);
}
