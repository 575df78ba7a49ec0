//! Mercure at `/.well-known/mercure`, checked against the protocol text (draft-07 and the current
//! draft): subscribe with exact topics, `*`, URI templates and URL patterns; publish with
//! form-encoded updates; tokens from the header, the cookie and the query; private updates;
//! resume with `Last-Event-ID` and `earliest`; a stream that ends with its token; one name space
//! for topics and Herald's channels; the same in memory, durable and cluster modes.

mod common;

use common::{RedisServer, SseStream, TestHub, PATIENCE};
use serde_json::{json, Value};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const SECRET: &str = "!ChangeThisMercureHubJWTSecretKey!";
/// How long a test waits to be sure an event does not come.
const SILENCE: Duration = Duration::from_millis(700);

fn mercure_args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["--mercure", "--mercure-publisher-jwt-key", SECRET];
    args.extend_from_slice(extra);
    args
}

fn mercure_hub(extra: &[&str]) -> TestHub {
    TestHub::start(&mercure_args(extra))
}

fn token(claims: Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("a token")
}

fn publisher_token() -> String {
    token(json!({"mercure": {"publish": ["*"]}}))
}

fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

fn form(fields: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (name, value) in fields {
        if !out.is_empty() {
            out.push('&');
        }
        out.push_str(&encode(name));
        out.push('=');
        out.push_str(&encode(value));
    }
    out
}

fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// POSTs an update; returns (status, content type, body).
async fn publish_with(
    hub: &TestHub,
    headers: &[(&str, &str)],
    fields: &[(&str, &str)],
) -> (u16, String, String) {
    let mut request = common::http()
        .post(hub.url("/.well-known/mercure"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(fields));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.expect("the hub answers");
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (
        status,
        content_type,
        response.text().await.unwrap_or_default(),
    )
}

/// Publishes with a token granting every topic; returns the answered id.
async fn publish(hub: &TestHub, fields: &[(&str, &str)]) -> String {
    let bearer = format!("Bearer {}", publisher_token());
    let (status, content_type, body) =
        publish_with(hub, &[("authorization", &bearer)], fields).await;
    assert_eq!(status, 200, "publish answered {status}: {body}");
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    body
}

fn subscribe_url(hub: &TestHub, query: &[(&str, &str)]) -> String {
    hub.url(&format!("/.well-known/mercure?{}", form(query)))
}

async fn subscribe(hub: &TestHub, query: &[(&str, &str)], headers: &[(&str, &str)]) -> SseStream {
    SseStream::open(&subscribe_url(hub, query), headers).await
}

async fn status_of_get(url: &str, headers: &[(&str, &str)]) -> u16 {
    let mut request = common::http().get(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request
        .send()
        .await
        .expect("the hub answers")
        .status()
        .as_u16()
}

#[tokio::test]
async fn an_update_reaches_exact_star_template_and_pattern_subscribers_once_each() {
    let hub = mercure_hub(&["--mercure-anonymous"]);
    let topic = "https://example.com/books/1";
    let mut exact = subscribe(&hub, &[("topic", topic)], &[]).await;
    let mut star = subscribe(&hub, &[("topic", "*")], &[]).await;
    let mut template = subscribe(&hub, &[("topic", "https://example.com/books/{id}")], &[]).await;
    let mut pattern = subscribe(
        &hub,
        &[("match_urlpattern", "https://example.com/books/:id")],
        &[],
    )
    .await;
    let mut current_exact = subscribe(&hub, &[("match", topic)], &[]).await;
    let mut twice = subscribe(
        &hub,
        &[("topic", topic), ("topic", "https://example.com/{+rest}")],
        &[],
    )
    .await;
    let mut other = subscribe(&hub, &[("topic", "https://example.com/films/{id}")], &[]).await;

    let id = publish(
        &hub,
        &[
            ("topic", topic),
            ("data", "line one\n\nline three"),
            ("id", "urn:uuid:book-1-v2"),
            ("type", "book.updated"),
        ],
    )
    .await;
    assert_eq!(id, "urn:uuid:book-1-v2", "the answer is the publisher's id");
    for stream in [
        &mut exact,
        &mut star,
        &mut template,
        &mut pattern,
        &mut current_exact,
        &mut twice,
    ] {
        let event = stream.next_event().await;
        assert_eq!(event.id, "urn:uuid:book-1-v2");
        assert_eq!(event.event, "book.updated");
        assert_eq!(event.data, "line one\n\nline three");
    }
    assert!(
        twice.next_event_within(SILENCE).await.is_none(),
        "a subscriber matching twice gets the update once"
    );
    assert!(other.next_event_within(SILENCE).await.is_none());
}

#[tokio::test]
async fn an_update_with_several_topics_is_one_event_for_any_of_them() {
    let hub = mercure_hub(&["--mercure-anonymous"]);
    let mut second = subscribe(&hub, &[("topic", "urn:example:alternate")], &[]).await;
    let mut both = subscribe(
        &hub,
        &[
            ("topic", "urn:example:canonical"),
            ("topic", "urn:example:alternate"),
        ],
        &[],
    )
    .await;
    let id = publish(
        &hub,
        &[
            ("topic", "urn:example:canonical"),
            ("topic", "urn:example:alternate"),
            ("data", "x"),
        ],
    )
    .await;
    assert_eq!(
        second.next_event().await.id,
        id,
        "without an id, the hub's id"
    );
    assert_eq!(both.next_event().await.id, id);
    assert!(both.next_event_within(SILENCE).await.is_none());
}

#[tokio::test]
async fn private_updates_reach_only_subscribers_granted_one_of_their_topics() {
    let hub = mercure_hub(&["--mercure-anonymous"]);
    let books = "https://example.com/books/{id}";
    let granted = token(json!({"mercure": {"subscribe": [books]}}));
    let alternate_only = token(json!({"authorization_details": [{
            "type": "https://mercure.rocks/authorization-detail",
            "actions": ["subscribe"],
            "topics": [{"match": "https://example.com/users/42/*", "match_type": "urlpattern"}]
        }], "exp": now_s() + 600}));
    let mut anonymous = subscribe(&hub, &[("topic", books)], &[]).await;
    let bearer = format!("Bearer {granted}");
    let mut reader = subscribe(&hub, &[("topic", books)], &[("authorization", &bearer)]).await;
    let cookie = format!("mercureAuthorization={alternate_only}");
    let mut by_alternate = subscribe(
        &hub,
        &[("match_urlpattern", "https://example.com/books/:id")],
        &[("cookie", &cookie)],
    )
    .await;

    publish(
        &hub,
        &[
            ("topic", "https://example.com/books/1"),
            ("data", "secret"),
            ("private", "on"),
        ],
    )
    .await;
    assert_eq!(reader.next_event().await.data, "secret");
    assert!(
        anonymous.next_event_within(SILENCE).await.is_none(),
        "no grant, no private update"
    );
    assert!(by_alternate.next_event_within(SILENCE).await.is_none());

    publish(
        &hub,
        &[
            ("topic", "https://example.com/books/2"),
            ("topic", "https://example.com/users/42/books/2"),
            ("data", "shared"),
            ("private", ""),
        ],
    )
    .await;
    assert_eq!(
        by_alternate.next_event().await.data,
        "shared",
        "a grant on the alternate topic"
    );
    assert_eq!(reader.next_event().await.data, "shared");
    publish(
        &hub,
        &[("topic", "https://example.com/books/3"), ("data", "public")],
    )
    .await;
    assert_eq!(anonymous.next_event().await.data, "public");
}

#[tokio::test]
async fn a_topic_and_a_herald_channel_of_the_same_name_are_one() {
    let hub = mercure_hub(&["--mercure-anonymous"]);
    let mut herald = hub.stream("/api/channels/orders/stream").await;
    herald.connected().await;
    let mut mercure = subscribe(&hub, &[("topic", "orders")], &[]).await;

    let published = hub
        .publish(
            "/api/channels/orders/events",
            json!({"event": "created", "data": {"id": 7}}),
        )
        .await;
    let event = mercure.next_event().await;
    assert_eq!(event.event, "created");
    assert_eq!(event.data, r#"{"id":7}"#);
    assert_eq!(event.id, published["id"].as_str().expect("an id"));
    assert_eq!(herald.next_event().await.data, r#"{"id":7}"#);

    publish(&hub, &[("topic", "orders"), ("data", "from mercure")]).await;
    assert_eq!(herald.next_event().await.data, "from mercure");
    assert_eq!(mercure.next_event().await.data, "from mercure");

    publish(
        &hub,
        &[("topic", "orders"), ("data", "private"), ("private", "on")],
    )
    .await;
    publish(&hub, &[("topic", "orders"), ("data", "after")]).await;
    assert_eq!(
        herald.next_event().await.data,
        "after",
        "Herald's API never gets a private update"
    );
    let page = hub.get_json("/api/channels/orders/events").await;
    let data: Vec<&str> = page["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["data"].as_str())
        .collect();
    assert!(!data.contains(&"private"), "nor does polling: {data:?}");

    let everyone = hub
        .publish("/api/broadcast", json!({"data": "to all"}))
        .await;
    assert!(everyone["id"].is_string());
    assert_eq!(herald.next_event().await.data, "to all");
    assert_eq!(
        mercure.next_event().await.data,
        "after",
        "a broadcast to every Herald connection is not a topic"
    );
    assert!(mercure.next_event_within(SILENCE).await.is_none());
}

/// With `--auth jwt`, a Herald channel is kept to the tokens that claim it (and a user's channel
/// to that user): a Mercure subscriber, anonymous or not, reads its events only with a
/// subscribe grant matching it, live or on resume, as it would a private update.
#[tokio::test]
async fn herald_channels_kept_to_some_callers_need_a_mercure_grant() {
    const API_KEY: &str = "server-to-server-key-0123";
    let hub = mercure_hub(&[
        "--mercure-anonymous",
        "--auth",
        "jwt",
        "--jwt-secret",
        "0123456789abcdef0123456789abcdef-herald",
        "--api-keys",
        API_KEY,
    ]);
    let mut anonymous = subscribe(&hub, &[("topic", "*")], &[]).await;
    let mut exact = subscribe(&hub, &[("topic", "user:alice")], &[]).await;
    let reader = format!(
        "Bearer {}",
        token(json!({"mercure": {"subscribe": ["payroll"]}}))
    );
    let mut granted = subscribe(&hub, &[("topic", "*")], &[("authorization", &reader)]).await;

    for (path, data) in [
        ("/api/users/alice/events", "alice's own"),
        ("/api/channels/payroll/events", "payroll"),
    ] {
        let status = common::http()
            .post(hub.url(path))
            .bearer_auth(API_KEY)
            .json(&json!({ "data": data }))
            .send()
            .await
            .expect("the hub answers")
            .status();
        assert_eq!(status, 200, "{path}");
    }
    publish(
        &hub,
        &[("topic", "https://example.com/books/1"), ("data", "public")],
    )
    .await;

    assert_eq!(
        anonymous.next_event().await.data,
        "public",
        "an anonymous subscriber reads no channel Herald keeps to token holders"
    );
    assert!(
        exact.next_event_within(SILENCE).await.is_none(),
        "nor by naming it"
    );
    assert_eq!(granted.next_event().await.data, "payroll");
    assert_eq!(granted.next_event().await.data, "public");

    let mut resumed = subscribe(
        &hub,
        &[
            ("topic", "payroll"),
            ("topic", "https://example.com/books/1"),
            ("last_event_id", "earliest"),
        ],
        &[],
    )
    .await;
    assert_eq!(resumed.next_event().await.data, "public", "nor on resume");
}

#[tokio::test]
async fn publishing_needs_a_token_granting_every_topic() {
    let hub = mercure_hub(&["--mercure-publish-origins", "https://app.example.com"]);
    let fields = [
        ("topic", "https://example.com/a"),
        ("topic", "https://example.com/b"),
        ("data", "x"),
    ];
    assert_eq!(publish_with(&hub, &[], &fields).await.0, 401);
    let bad = format!("Bearer {}x", publisher_token());
    assert_eq!(
        publish_with(&hub, &[("authorization", &bad)], &fields)
            .await
            .0,
        401
    );
    let only_a = format!(
        "Bearer {}",
        token(json!({"mercure": {"publish": ["https://example.com/a"]}}))
    );
    assert_eq!(
        publish_with(&hub, &[("authorization", &only_a)], &fields)
            .await
            .0,
        403
    );
    let both = format!(
        "Bearer {}",
        token(json!({"mercure": {"publish": ["https://example.com/{x}"]}}))
    );
    assert_eq!(
        publish_with(&hub, &[("authorization", &both)], &fields)
            .await
            .0,
        200
    );
    let expired = format!(
        "Bearer {}",
        token(json!({"mercure": {"publish": ["*"]}, "exp": now_s() - 3600}))
    );
    assert_eq!(
        publish_with(&hub, &[("authorization", &expired)], &fields)
            .await
            .0,
        401
    );

    let cookie = format!("mercureAuthorization={}", publisher_token());
    assert_eq!(
        publish_with(&hub, &[("cookie", &cookie)], &fields).await.0,
        403,
        "a cookie publish without Origin"
    );
    assert_eq!(
        publish_with(
            &hub,
            &[("cookie", &cookie), ("origin", "https://evil.example.com")],
            &fields
        )
        .await
        .0,
        403
    );
    let (status, _, body) = publish_with(
        &hub,
        &[("cookie", &cookie), ("origin", "https://app.example.com")],
        &fields,
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn updates_breaking_the_protocol_rules_are_refused() {
    let hub = mercure_hub(&[]);
    let bearer = format!("Bearer {}", publisher_token());
    let auth = [("authorization", bearer.as_str())];
    for fields in [
        vec![("data", "no topic")],
        vec![("topic", "*")],
        vec![("topic", "/.well-known/mercure/subscriptions/a/b")],
        vec![("topic", "https://hub.example.com/.well-known/%6Dercure/x")],
        vec![("topic", "a"), ("type", "mercure")],
        vec![("topic", "a"), ("retry", "1a")],
        vec![("topic", "a"), ("id", "#7")],
        vec![("topic", "a"), ("id", "earliest")],
        vec![("topic", "a"), ("id", "a\u{1}b")],
        vec![("topic", "a b")],
    ] {
        let (status, _, body) = publish_with(&hub, &auth, &fields).await;
        assert_eq!(status, 400, "{fields:?}: {body}");
    }
    let (status, _, _) = publish_with(&hub, &auth, &[("topic", "a"), ("unknown", "ignored")]).await;
    assert_eq!(status, 200, "unknown fields are ignored");
}

#[tokio::test]
async fn subscribers_need_a_token_unless_anonymous_is_on() {
    let hub = mercure_hub(&[]);
    let url = subscribe_url(&hub, &[("topic", "a")]);
    assert_eq!(status_of_get(&url, &[]).await, 401);
    let subscriber = token(json!({"mercure": {"subscribe": []}, "exp": now_s() + 600}));
    let bearer = format!("Bearer {subscriber}");
    assert_eq!(
        status_of_get(&url, &[("authorization", &bearer)]).await,
        200
    );
    let by_query = subscribe_url(&hub, &[("topic", "a"), ("authorization", &subscriber)]);
    assert_eq!(
        status_of_get(&by_query, &[]).await,
        200,
        "draft-07's query parameter"
    );
    let forged = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"mercure": {"subscribe": ["*"]}}),
        &jsonwebtoken::EncodingKey::from_secret(b"another key of thirty-two bytes or more"),
    )
    .expect("a token");
    let forged = format!("Bearer {forged}");
    assert_eq!(
        status_of_get(&url, &[("authorization", &forged)]).await,
        401
    );
    let anonymous = mercure_hub(&["--mercure-anonymous"]);
    for bad in [
        vec![],
        vec![("match_regex", "a.*")],
        vec![("MATCH_exact", "a")],
        vec![("match_urlpattern", "https://example.com/:id(\\d+)")],
    ] {
        let url = subscribe_url(&anonymous, &bad);
        assert_eq!(status_of_get(&url, &[]).await, 400, "{bad:?}");
    }
    let without_mercure = TestHub::start(&[]);
    assert_eq!(
        status_of_get(&subscribe_url(&without_mercure, &[("topic", "a")]), &[]).await,
        404
    );
}

fn header(stream: &SseStream, name: &str) -> String {
    stream
        .response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// Publishes `a`, a private update, `b`, `c` on `topic`; returns the ids of a, b, c.
async fn publish_three(hub: &TestHub, topic: &str) -> [String; 3] {
    let id = format!("ev-a-{topic}");
    let a = publish(hub, &[("topic", topic), ("data", "a"), ("id", &id)]).await;
    publish(
        hub,
        &[("topic", topic), ("data", "hidden"), ("private", "on")],
    )
    .await;
    let b = publish(hub, &[("topic", topic), ("data", "b")]).await;
    let c = publish(hub, &[("topic", topic), ("data", "c"), ("retry", "5000")]).await;
    [a, b, c]
}

async fn datas(stream: &mut SseStream, count: usize) -> Vec<String> {
    let mut seen = Vec::new();
    for _ in 0..count {
        seen.push(stream.next_event().await.data);
    }
    assert!(
        stream.next_event_within(SILENCE).await.is_none(),
        "nothing more: {seen:?}"
    );
    seen
}

/// Resume checks shared by the three modes, run against `subscriber_hub` after publishing on
/// `publisher_hub`.
async fn check_resume(publisher_hub: &TestHub, subscriber_hub: &TestHub, t: &str) {
    let [a, _b, c] = publish_three(publisher_hub, t).await;
    let mut after_a = subscribe(subscriber_hub, &[("topic", t)], &[("last-event-id", &a)]).await;
    assert_eq!(header(&after_a, "last-event-id"), a);
    assert_eq!(header(&after_a, "mercure-last-event-id"), a);
    assert_eq!(datas(&mut after_a, 2).await, ["b", "c"]);
    assert!(
        after_a.raw_text().contains("retry: 5000\n"),
        "retry reaches the wire"
    );

    let mut by_query = subscribe(subscriber_hub, &[("topic", t), ("last_event_id", &a)], &[]).await;
    assert_eq!(datas(&mut by_query, 2).await, ["b", "c"]);
    let mut draft07 = subscribe(subscriber_hub, &[("topic", t), ("lastEventID", &a)], &[]).await;
    assert_eq!(datas(&mut draft07, 2).await, ["b", "c"]);

    let mut earliest = subscribe(
        subscriber_hub,
        &[("topic", t), ("last_event_id", "earliest")],
        &[],
    )
    .await;
    assert_eq!(header(&earliest, "mercure-last-event-id"), "earliest");
    assert_eq!(datas(&mut earliest, 3).await, ["a", "b", "c"]);

    let mut unknown = subscribe(
        subscriber_hub,
        &[("topic", t)],
        &[("last-event-id", "never-published")],
    )
    .await;
    assert_eq!(
        header(&unknown, "last-event-id"),
        "earliest",
        "an id history does not hold is told, and all of history is sent"
    );
    assert_eq!(datas(&mut unknown, 3).await, ["a", "b", "c"]);

    let reader = format!("Bearer {}", token(json!({"mercure": {"subscribe": [t]}})));
    let mut granted = subscribe(
        subscriber_hub,
        &[("topic", t), ("last_event_id", "earliest")],
        &[("authorization", &reader)],
    )
    .await;
    assert_eq!(
        datas(&mut granted, 4).await,
        ["a", "hidden", "b", "c"],
        "replay applies the same grants as live delivery"
    );

    let mut live = subscribe(subscriber_hub, &[("topic", t)], &[]).await;
    assert_eq!(
        header(&live, "last-event-id"),
        c,
        "a new stream starts after the newest event"
    );
    publish(publisher_hub, &[("topic", t), ("data", "d")]).await;
    assert_eq!(live.next_event().await.data, "d");
}

#[tokio::test]
async fn resume_from_last_event_id_or_earliest_in_memory() {
    let hub = mercure_hub(&["--mercure-anonymous"]);
    check_resume(&hub, &hub, "t").await;
    let mut everything =
        subscribe(&hub, &[("topic", "*"), ("last_event_id", "earliest")], &[]).await;
    assert_eq!(
        datas(&mut everything, 4).await,
        ["a", "b", "c", "d"],
        "a `*` selector, naming no channel, replays history too"
    );
}

#[tokio::test]
async fn resume_and_private_updates_survive_a_restart_with_a_data_dir() {
    let dir = std::env::temp_dir().join(format!("herald-mercure-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let dir_arg = dir.to_str().expect("a UTF-8 path").to_owned();
    let args = ["--mercure-anonymous", "--data-dir", dir_arg.as_str()];
    let hub = mercure_hub(&args);
    let [a, ..] = publish_three(&hub, "t").await;
    drop(hub);
    let hub = mercure_hub(&args);
    let mut after_a = subscribe(&hub, &[("topic", "t")], &[("last-event-id", &a)]).await;
    assert_eq!(
        datas(&mut after_a, 2).await,
        ["b", "c"],
        "the private update stays private"
    );
    assert!(after_a.raw_text().contains("retry: 5000\n"));
    check_resume(&hub, &hub, "t2").await;
    drop(hub);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn an_update_published_on_one_node_reaches_mercure_subscribers_on_another() {
    let redis = RedisServer::start();
    let url = redis.url();
    let node = |name: &'static str| {
        mercure_hub(&[
            "--mercure-anonymous",
            "--redis-url",
            &url,
            "--node-id",
            name,
        ])
    };
    let a = node("a");
    let b = node("b");
    let mut on_b = subscribe(
        &b,
        &[("match_urlpattern", "https://example.com/books/:id")],
        &[],
    )
    .await;
    let id = publish(
        &a,
        &[
            ("topic", "https://example.com/books/9"),
            ("data", "clustered"),
        ],
    )
    .await;
    let event = on_b.next_event().await;
    assert_eq!(
        (event.id.as_str(), event.data.as_str()),
        (id.as_str(), "clustered")
    );
    check_resume(&a, &b, "t").await;
}

#[tokio::test]
async fn a_stream_ends_when_its_token_expires() {
    let hub = mercure_hub(&[]);
    let short = token(json!({"mercure": {"subscribe": ["*"]}, "exp": now_s() + 2}));
    let bearer = format!("Bearer {short}");
    let mut stream = subscribe(&hub, &[("topic", "t")], &[("authorization", &bearer)]).await;
    let started = std::time::Instant::now();
    while stream.next_item_within(PATIENCE).await.is_some() {
        assert!(
            started.elapsed() < PATIENCE,
            "the stream outlived its token"
        );
    }
    assert!(stream.is_ended(), "the stream ended");
}

#[tokio::test]
async fn current_draft_access_tokens_publish_and_subscribe() {
    let hub = mercure_hub(&[]);
    let at_jwt = |actions: Value| {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        header.typ = Some("at+jwt".into());
        jsonwebtoken::encode(
            &header,
            &json!({
                "aud": "https://localhost/.well-known/mercure",
                "iss": "https://localhost",
                "exp": now_s() + 600,
                "authorization_details": [{
                    "type": "https://mercure.rocks/authorization-detail",
                    "actions": actions,
                    "topics": [{"match": "*"}]
                }]
            }),
            &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .expect("a token")
    };
    let subscriber = format!("Bearer {}", at_jwt(json!(["subscribe"])));
    let mut stream = subscribe(&hub, &[("match", "t")], &[("authorization", &subscriber)]).await;
    let publisher = format!("Bearer {}", at_jwt(json!(["publish"])));
    let (status, _, id) = publish_with(
        &hub,
        &[("authorization", &publisher)],
        &[("topic", "t"), ("data", "p"), ("private", "on")],
    )
    .await;
    assert_eq!(status, 200);
    let event = stream.next_event().await;
    assert_eq!((event.id, event.data), (id, "p".to_owned()));
    let (status, _, _) =
        publish_with(&hub, &[("authorization", &subscriber)], &[("topic", "t")]).await;
    assert_eq!(status, 403, "a subscribe grant does not publish");
}

#[tokio::test]
async fn subscription_events_and_the_subscriptions_api_show_who_listens() {
    let hub = mercure_hub(&["--mercure-anonymous", "--mercure-subscriptions"]);
    let watcher_token = token(json!({
        "mercure": {"subscribe": ["/.well-known/mercure/subscriptions{/rest*}"]},
        "exp": now_s() + 600,
    }));
    let watcher_bearer = format!("Bearer {watcher_token}");
    let mut watcher = subscribe(
        &hub,
        &[("match_urlpattern", "/.well-known/mercure/subscriptions/*")],
        &[("authorization", &watcher_bearer)],
    )
    .await;
    let mut outsider = subscribe(&hub, &[("topic", "*")], &[]).await;

    let payload_token = token(json!({
        "authorization_details": [{
            "type": "https://mercure.rocks/authorization-detail",
            "actions": ["subscribe"],
            "topics": [{"match": "*"}],
            "payload": {"user": "ann"}
        }],
        "exp": now_s() + 600,
    }));
    let bearer = format!("Bearer {payload_token}");
    let books = subscribe(
        &hub,
        &[("match_urlpattern", "https://example.com/books/:id")],
        &[("authorization", &bearer)],
    )
    .await;
    // The watcher also sees the outsider's subscription (and its own, depending on timing).
    let started = loop {
        let event = watcher.next_event().await;
        assert_eq!(event.event, "mercure");
        let document: Value = serde_json::from_str(&event.data).expect("a JSON document");
        if document["match"] == "https://example.com/books/:id" {
            break document;
        }
    };
    assert_eq!(started["type"], "subscription");
    assert_eq!(started["match_type"], "urlpattern");
    assert_eq!(started["match"], "https://example.com/books/:id");
    assert_eq!(started["active"], true);
    assert_eq!(started["payload"], json!({"user": "ann"}));
    let subscriber = started["subscriber"]
        .as_str()
        .expect("a subscriber")
        .to_owned();
    assert!(subscriber.starts_with("urn:uuid:"));
    let id = started["id"].as_str().expect("an id").to_owned();
    assert_eq!(
        id,
        format!(
            "/.well-known/mercure/subscriptions/urlpattern/{}/{}",
            encode("https://example.com/books/:id"),
            encode(&subscriber)
        )
    );
    assert!(
        outsider.next_event_within(SILENCE).await.is_none(),
        "subscription events are private"
    );

    let list = common::http()
        .get(hub.url("/.well-known/mercure/subscriptions"))
        .header("authorization", &watcher_bearer)
        .send()
        .await
        .expect("an answer");
    assert_eq!(list.status().as_u16(), 200);
    assert!(list
        .headers()
        .get("link")
        .and_then(|l| l.to_str().ok())
        .is_some_and(|l| l.contains("rel=\"mercure\"") && l.contains("last-event-id=")));
    let list: Value = list.json().await.expect("JSON");
    assert_eq!(list["type"], "subscriptions");
    assert!(list["subscriptions"]
        .as_array()
        .expect("a list")
        .iter()
        .any(|s| s["id"] == id.as_str()));
    let one: Value = common::http()
        .get(hub.url(&id))
        .header("authorization", &watcher_bearer)
        .send()
        .await
        .expect("an answer")
        .json()
        .await
        .expect("JSON");
    assert_eq!(one["subscriber"], subscriber.as_str());
    let refused = common::http()
        .get(hub.url("/.well-known/mercure/subscriptions"))
        .send()
        .await
        .expect("an answer");
    assert_eq!(refused.status().as_u16(), 401);

    drop(books);
    let ended = watcher.next_event().await;
    let ended: Value = serde_json::from_str(&ended.data).expect("JSON");
    assert_eq!(
        (ended["id"].as_str(), ended["active"].as_bool()),
        (Some(id.as_str()), Some(false))
    );
}

/// The PHP program that publishes with Symfony's Mercure component (Debian's
/// `php-symfony-mercure`), as a Symfony application would.
const SYMFONY_PUBLISHER: &str = r#"<?php
require_once 'Symfony/Component/Mercure/autoload.php';
use Symfony\Component\Mercure\Hub;
use Symfony\Component\Mercure\Jwt\StaticTokenProvider;
use Symfony\Component\Mercure\Update;
$hub = new Hub(getenv('HUB_URL'), new StaticTokenProvider(getenv('HUB_TOKEN')));
echo $hub->publish(new Update(
    ['https://example.com/books/1', 'https://example.com/authors/7'],
    json_encode(['title' => "L'Étranger"], JSON_UNESCAPED_UNICODE),
    false,
    'book-1-v3',
    'book.updated',
    3000
)), "\n";
echo $hub->publish(new Update('https://example.com/books/1', 'second')), "\n";
"#;

#[tokio::test]
async fn symfonys_mercure_component_publishes_unchanged() {
    if std::env::var("HERALD_SKIP_PHP").as_deref() == Ok("1") {
        eprintln!("skipped: HERALD_SKIP_PHP=1");
        return;
    }
    let hub = mercure_hub(&["--mercure-anonymous"]);
    let mut stream = subscribe(&hub, &[("topic", "https://example.com/books/{id}")], &[]).await;
    let mut php = std::process::Command::new("php");
    php.arg("-r")
        .arg(SYMFONY_PUBLISHER.trim_start_matches("<?php"))
        .env("HUB_URL", hub.url("/.well-known/mercure"))
        .env("HUB_TOKEN", publisher_token());
    let output = tokio::task::spawn_blocking(move || php.output())
        .await
        .expect("the publisher ran")
        .expect("php runs (install php-cli and php-symfony-mercure: scripts/setup)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let ids: Vec<&str> = stdout.lines().collect();
    assert_eq!(ids[0], "book-1-v3", "Symfony reads the answered id");
    let first = stream.next_event().await;
    assert_eq!(
        (first.id.as_str(), first.event.as_str(), first.data.as_str()),
        ("book-1-v3", "book.updated", r#"{"title":"L'Étranger"}"#)
    );
    assert!(stream.raw_text().contains("retry: 3000\n"));
    let second = stream.next_event().await;
    assert_eq!(
        (second.id.as_str(), second.data.as_str()),
        (ids[1], "second")
    );
}
