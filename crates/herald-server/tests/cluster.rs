//! A cluster of hubs over one Redis: cross-node delivery in one order, resume on another node,
//! idempotent publish across nodes, Redis lost and back, and a node killed mid-stream.

mod common;

use common::{RedisServer, SseStream, TestHub};
use serde_json::{json, Value};
use std::time::Duration;

fn node(redis: &RedisServer, name: &str) -> TestHub {
    TestHub::start(&[
        "--redis-url",
        &redis.url(),
        "--node-id",
        name,
        "--heartbeat-interval",
        "300ms",
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_published_on_any_node_reach_every_node_in_one_order() {
    let redis = RedisServer::start();
    let nodes = [node(&redis, "a"), node(&redis, "b"), node(&redis, "c")];
    let mut streams = Vec::new();
    for hub in &nodes {
        let mut stream = hub.stream("/api/channels/orders/stream").await;
        stream.connected().await;
        streams.push(stream);
    }
    let mut publishers = tokio::task::JoinSet::new();
    for (index, hub) in nodes.iter().enumerate() {
        let url = hub.url("/api/channels/orders/events");
        publishers.spawn(async move {
            let client = common::http();
            for n in 0..50 {
                let response = client
                    .post(&url)
                    .json(&json!({"data": format!("{index}:{n}")}))
                    .send()
                    .await
                    .expect("publish");
                assert_eq!(response.status(), 200);
                let answer: Value = response.json().await.expect("json");
                assert_eq!(
                    answer["recipients"], 1,
                    "each node counts its own subscriber"
                );
            }
        });
    }
    while let Some(done) = publishers.join_next().await {
        done.expect("publisher");
    }
    let first = streams[0].next_events(150).await;
    for stream in &mut streams[1..] {
        assert_eq!(
            stream.next_events(150).await,
            first,
            "every node delivers the same events, ids and order"
        );
    }
    for index in 0..3 {
        let from_node: Vec<&str> = first
            .iter()
            .filter(|(_, d)| d.starts_with(&format!("{index}:")))
            .map(|(_, d)| d.as_str())
            .collect();
        let expected: Vec<String> = (0..50).map(|n| format!("{index}:{n}")).collect();
        assert_eq!(
            from_node, expected,
            "one publisher's events keep their order"
        );
    }
}

#[tokio::test]
async fn a_client_resumes_on_another_node_with_no_gap_and_no_duplicate() {
    let redis = RedisServer::start();
    let a = node(&redis, "a");
    let b = node(&redis, "b");
    let c = node(&redis, "c");
    let mut on_a = a.stream("/api/channels/feed/stream").await;
    on_a.connected().await;
    for n in 1..=5 {
        b.publish("/api/channels/feed/events", json!({"data": n}))
            .await;
    }
    let seen = on_a.next_events(5).await;
    drop(on_a);
    for n in 6..=9 {
        a.publish("/api/channels/feed/events", json!({"data": n}))
            .await;
    }
    let last_id = &seen[4].0;
    let mut on_c = SseStream::open(
        &c.url("/api/channels/feed/stream"),
        &[("Last-Event-ID", last_id)],
    )
    .await;
    assert_eq!(on_c.connected().await["resumed"], json!(true));
    let rest: Vec<String> = on_c
        .next_events(4)
        .await
        .into_iter()
        .map(|(_, d)| d)
        .collect();
    assert_eq!(rest, vec!["6", "7", "8", "9"]);
    assert!(on_c
        .next_event_within(Duration::from_millis(300))
        .await
        .is_none());
}

#[tokio::test]
async fn a_publisher_id_is_idempotent_across_nodes() {
    let redis = RedisServer::start();
    let a = node(&redis, "a");
    let b = node(&redis, "b");
    let mut stream = b.stream("/api/channels/pay/stream").await;
    stream.connected().await;
    let first = a
        .publish(
            "/api/channels/pay/events",
            json!({"data": 1, "id": "payment-9"}),
        )
        .await;
    assert_eq!(first["id"], "payment-9");
    assert!(first.get("duplicate").is_none());
    let again = b
        .publish(
            "/api/channels/pay/events",
            json!({"data": 1, "id": "payment-9"}),
        )
        .await;
    assert_eq!(again["duplicate"], json!(true));
    assert_eq!(stream.next_event().await.id, "payment-9");
    assert!(
        stream
            .next_event_within(Duration::from_millis(300))
            .await
            .is_none(),
        "delivered once"
    );
}

#[tokio::test]
async fn sending_to_a_client_works_from_any_node() {
    let redis = RedisServer::start();
    let a = node(&redis, "a");
    let b = node(&redis, "b");
    let mut stream = a.stream("/api/channels/x/stream?clientId=tab-9").await;
    stream.connected().await;
    common::eventually("node b sees tab-9 in the registry", || async {
        let clients = b.get_json("/api/clients?scope=cluster").await;
        clients["clients"]
            .as_array()
            .is_some_and(|list| list.iter().any(|c| c["id"] == "tab-9"))
    })
    .await;
    b.publish(
        "/api/clients/tab-9/events",
        json!({"event": "private", "data": "hi"}),
    )
    .await;
    assert_eq!(stream.next_event().await.event, "private");
    let (status, _) = b
        .post("/api/clients/nobody/events", json!({"data": 1}))
        .await;
    assert_eq!(status, 404);
    let stats = b.get_json("/api/stats?scope=cluster").await;
    assert_eq!(stats["node"], "b");
    assert_eq!(
        stats["connections"], 1,
        "the cluster has one connection, on a"
    );

    // Leaving takes the client out of the registry: other nodes stop listing it.
    drop(stream);
    common::eventually("node b no longer lists tab-9", || async {
        b.get_json("/api/clients?scope=cluster").await["clients"] == json!([])
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_lost_and_back_loses_nothing_acknowledged() {
    let mut redis = RedisServer::start();
    let a = node(&redis, "a");
    let b = node(&redis, "b");
    let mut on_b = b.stream("/api/channels/live/stream").await;
    on_b.connected().await;
    a.publish("/api/channels/live/events", json!({"data": "before"}))
        .await;
    assert_eq!(on_b.next_event().await.data, "before");

    redis.stop();
    common::eventually(
        "a node that cannot read redis says it is not ready",
        || async {
            common::http()
                .get(a.url("/healthz"))
                .send()
                .await
                .is_ok_and(|r| r.status() == 503)
        },
    )
    .await;
    let (status, answer) = a
        .post("/api/channels/live/events", json!({"data": "while down"}))
        .await;
    assert_eq!(status, 503, "{answer}");
    assert_eq!(answer["error"]["code"], "unavailable");
    // The stream stays open and keeps its heartbeats while Redis is away.
    let mut heartbeats = 0;
    while heartbeats < 2 {
        match on_b.next_item_within(Duration::from_secs(3)).await {
            Some(herald_client::Item::Comment(_)) => heartbeats += 1,
            Some(other) => panic!("unexpected {other:?}"),
            None => panic!("the stream went quiet or ended while redis was down"),
        }
    }

    redis.restart();
    common::eventually("the node is ready again", || async {
        common::http()
            .get(a.url("/healthz"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    let mut acknowledged = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while acknowledged.len() < 5 {
        assert!(
            std::time::Instant::now() < deadline,
            "publishing never recovered"
        );
        let (status, _) = a
            .post(
                "/api/channels/live/events",
                json!({"data": format!("after {}", acknowledged.len())}),
            )
            .await;
        if status == 200 {
            acknowledged.push(format!("after {}", acknowledged.len()));
        } else {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let mut received = Vec::new();
    while received.len() < acknowledged.len() {
        received.push(on_b.next_event().await.data);
    }
    assert_eq!(
        received, acknowledged,
        "every acknowledged event arrived once, in order"
    );
}

#[tokio::test]
async fn clients_of_a_killed_node_resume_elsewhere_with_nothing_lost() {
    let redis = RedisServer::start();
    let mut a = node(&redis, "a");
    let b = node(&redis, "b");
    let mut on_a = a.stream("/api/channels/jobs/stream").await;
    on_a.connected().await;
    for n in 1..=3 {
        b.publish("/api/channels/jobs/events", json!({"data": n}))
            .await;
    }
    let seen = on_a.next_events(3).await;
    a.signal_and_wait("KILL", Duration::from_secs(5))
        .expect("killed");
    for n in 4..=6 {
        b.publish("/api/channels/jobs/events", json!({"data": n}))
            .await;
    }
    let mut on_b = SseStream::open(
        &b.url("/api/channels/jobs/stream"),
        &[("Last-Event-ID", &seen[2].0)],
    )
    .await;
    assert_eq!(on_b.connected().await["resumed"], json!(true));
    let rest: Vec<String> = on_b
        .next_events(3)
        .await
        .into_iter()
        .map(|(_, d)| d)
        .collect();
    assert_eq!(rest, vec!["4", "5", "6"]);
}

/// A node that falls behind further than Redis keeps (here: paused while 1 000 events go by with
/// room for about 100) must not skip silently: its streams end, and a resume says
/// `resumed: false` so the client reloads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_falls_behind_the_trimmed_log_tells_its_clients() {
    let redis = RedisServer::start();
    let args = |name: &'static str| {
        [
            "--redis-url".to_owned(),
            redis.url(),
            "--node-id".into(),
            name.into(),
            "--history-max-events".into(),
            "100".into(),
        ]
    };
    let a = TestHub::start(&args("a").iter().map(String::as_str).collect::<Vec<_>>());
    let b = TestHub::start(&args("b").iter().map(String::as_str).collect::<Vec<_>>());
    let mut on_a = a.stream("/api/channels/fast/stream").await;
    on_a.connected().await;
    b.publish("/api/channels/fast/events", json!({"data": 0}))
        .await;
    let first = on_a.next_event().await;

    a.signal("STOP");
    let client = common::http();
    for n in 1..=1000 {
        let response = client
            .post(b.url("/api/channels/fast/events"))
            .json(&json!({"data": n}))
            .send()
            .await
            .expect("publish");
        assert_eq!(response.status(), 200);
    }
    a.signal("CONT");

    let mut last_id = first.id.clone();
    let mut seen = vec![0u32];
    let events = on_a.events_until_end().await;
    for event in events {
        seen.push(event.data.parse().expect("number"));
        last_id = event.id;
    }
    assert!(
        on_a.raw_text()
            .contains(": closed: history moved past this stream"),
        "the stream was not told: saw {} events",
        seen.len()
    );
    assert!(seen.len() < 1001, "it could not have had everything");
    assert!(
        seen.windows(2).all(|w| w[1] == w[0] + 1),
        "what it did get has no hole"
    );
    let mut again = SseStream::open(
        &a.url("/api/channels/fast/stream"),
        &[("Last-Event-ID", &last_id)],
    )
    .await;
    assert_eq!(
        again.connected().await["resumed"],
        json!(false),
        "the client is told to reload"
    );
}
