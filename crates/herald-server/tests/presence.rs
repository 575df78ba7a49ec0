//! Presence against the real binary: who is on a channel through the API and with whose rights,
//! `join` and `leave` delivered only to streams that ask, a reconnect storm coalesced into
//! nothing, and presence across two nodes over a real redis-server, a killed node's users
//! leaving within the node timeout.

mod auth_support;
mod common;

use auth_support::{get, hs256, jwt_hub, now, token_for, API_KEY};
use common::{eventually, RedisServer, SseStream, TestHub};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// A stream of `channel` for `token` (`presence=true` when `presence`).
async fn open(hub: &TestHub, channel: &str, token: &str, presence: bool) -> SseStream {
    let query = if presence { "&presence=true" } else { "" };
    let url = hub.url(&format!(
        "/api/channels/{channel}/stream?token={token}{query}"
    ));
    let mut stream = SseStream::open(&url, &[]).await;
    stream.connected().await;
    stream
}

fn room_token(user: &str) -> String {
    token_for(user, json!({"subscribe": ["room"]}))
}

/// The next `join` or `leave` on `stream` as (kind, user, connections), skipping other events;
/// `None` if none comes within `within`.
async fn next_presence(stream: &mut SseStream, within: Duration) -> Option<(String, String, u64)> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let event = stream.next_event_within(left).await?;
        if event.event == "join" || event.event == "leave" {
            let data: Value = serde_json::from_str(&event.data).expect("presence data is JSON");
            assert_eq!(data["channel"], "room");
            return Some((
                event.event.clone(),
                data["user"].as_str().expect("user").to_owned(),
                data["connections"].as_u64().expect("connections"),
            ));
        }
    }
}

/// Waits for `user`'s `kind` on `stream`, skipping others' presence events.
async fn wait_for(stream: &mut SseStream, kind: &str, user: &str, within: Duration) -> u64 {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let (k, u, n) = next_presence(stream, left)
            .await
            .unwrap_or_else(|| panic!("no {kind} of {user} within {within:?}"));
        if k == kind && u == user {
            return n;
        }
    }
}

/// Presence events read until an event named `marker` arrives.
async fn presence_until_marker(stream: &mut SseStream) -> Vec<(String, String)> {
    let mut seen = Vec::new();
    loop {
        let event = stream.next_event().await;
        match event.event.as_str() {
            "marker" => return seen,
            "join" | "leave" => seen.push((event.event.clone(), event.data.clone())),
            _ => {}
        }
    }
}

async fn publish_marker(hub: &TestHub) {
    let answer = auth_support::post(
        hub,
        "/api/channels/room/events",
        Some(API_KEY),
        json!({"event": "marker", "data": "m"}),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
}

#[tokio::test]
async fn the_presence_api_lists_users_and_counts_anonymous_connections() {
    let hub = jwt_hub(&["--presence", "on"]);
    let ann = room_token("ann");
    let _ann1 = open(&hub, "room", &ann, false).await;
    let _ann2 = open(&hub, "room", &ann, false).await;
    let _bob = open(&hub, "room", &room_token("bob"), false).await;
    let nobody = hs256(json!({"exp": now() + 3600, "herald": {"subscribe": ["room"]}}));
    let _anonymous = open(&hub, "room", &nobody, false).await;

    let answer = get(&hub, "/api/channels/room/presence", Some(&ann)).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(
        answer.body,
        json!({
            "channel": "room",
            "users": [{"user": "ann", "connections": 2}, {"user": "bob", "connections": 1}],
            "anonymous": 1,
            "connections": 4,
        })
    );
    // Like a stream, the endpoint takes the token from the query (for browser code).
    let by_query = get(
        &hub,
        &format!("/api/channels/room/presence?token={ann}"),
        None,
    )
    .await;
    assert_eq!(by_query.status, 200, "{}", by_query.body);
    assert_eq!(by_query.body["connections"], 4);
    // An empty channel is an empty list, not an error.
    let empty = get(&hub, "/api/channels/hall/presence", Some(API_KEY)).await;
    assert_eq!(empty.status, 200, "{}", empty.body);
    assert_eq!(empty.body["users"], json!([]));
    assert_eq!(empty.body["connections"], 0);

    // The right to see who is here is the right to subscribe.
    let elsewhere = token_for("eve", json!({"subscribe": ["hall"]}));
    let refused = get(&hub, "/api/channels/room/presence", Some(&elsewhere)).await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert_eq!(refused.code(), Some("forbidden"));
    let anonymous = get(&hub, "/api/channels/room/presence", None).await;
    assert_eq!(anonymous.status, 401, "{}", anonymous.body);
    let bad = get(&hub, "/api/channels/bad%20name/presence", Some(API_KEY)).await;
    assert_eq!(bad.code(), Some("invalid_channel"), "{}", bad.body);
}

#[tokio::test]
async fn presence_is_off_unless_turned_on() {
    let hub = TestHub::start(&[]);
    let _stream = hub.stream("/api/channels/room/stream?presence=true").await;
    let answer = get(&hub, "/api/channels/room/presence", None).await;
    assert_eq!(answer.status, 404, "{}", answer.body);
    assert_eq!(answer.code(), Some("presence_disabled"));
    let bad = get(&hub, "/api/channels/room/stream?presence=maybe", None).await;
    assert_eq!(bad.status, 400);
    assert_eq!(bad.code(), Some("invalid_query"));
}

#[tokio::test]
async fn join_and_leave_reach_only_the_streams_that_asked() {
    let hub = jwt_hub(&["--presence", "on", "--presence-linger", "1s"]);
    let mut asked = open(&hub, "room", &room_token("watcher"), true).await;
    assert_eq!(
        wait_for(&mut asked, "join", "watcher", common::PATIENCE).await,
        1
    );
    let mut not_asked = open(&hub, "room", &room_token("quiet"), false).await;
    assert_eq!(
        wait_for(&mut asked, "join", "quiet", common::PATIENCE).await,
        1
    );

    let ann = open(&hub, "room", &room_token("ann"), false).await;
    assert_eq!(
        wait_for(&mut asked, "join", "ann", common::PATIENCE).await,
        1
    );
    drop(ann);
    let left_at = Instant::now();
    assert_eq!(
        wait_for(&mut asked, "leave", "ann", common::PATIENCE).await,
        0
    );
    assert!(
        left_at.elapsed() >= Duration::from_millis(900),
        "a leave waits for the linger: {:?}",
        left_at.elapsed()
    );
    // The events carry no id: the stream's resume position is untouched.
    let raw = asked.raw_text();
    let join_block = raw
        .split("\n\n")
        .find(|block| block.contains("event: join"))
        .expect("a join block");
    assert!(!join_block.contains("id:"), "{join_block}");

    publish_marker(&hub).await;
    assert_eq!(
        presence_until_marker(&mut not_asked).await,
        Vec::<(String, String)>::new(),
        "a stream that did not ask gets no presence event"
    );
    // Not kept in history: a poll of the channel shows the marker only.
    let page = get(&hub, "/api/channels/room/events", Some(API_KEY)).await;
    let events = page.body["events"].as_array().expect("events");
    assert_eq!(events.len(), 1, "{}", page.body);
}

#[tokio::test]
async fn a_reconnect_storm_within_the_linger_sends_no_join_nor_leave() {
    const USERS: usize = 40;
    let linger = Duration::from_secs(3);
    let hub = jwt_hub(&["--presence", "on", "--presence-linger", "3s"]);
    let mut watcher = open(&hub, "room", &room_token("watcher"), true).await;
    wait_for(&mut watcher, "join", "watcher", common::PATIENCE).await;
    let tokens: Vec<String> = (0..USERS).map(|n| room_token(&format!("u{n}"))).collect();
    let mut streams = Vec::new();
    for token in &tokens {
        streams.push(open(&hub, "room", token, false).await);
    }
    let mut joined = 0;
    while joined < USERS {
        let (kind, _, _) = next_presence(&mut watcher, common::PATIENCE)
            .await
            .expect("every user's join arrives");
        assert_eq!(kind, "join");
        joined += 1;
    }

    // The storm: every client drops at once and comes back.
    let storm = Instant::now();
    drop(streams);
    let mut streams = Vec::new();
    for token in &tokens {
        streams.push(open(&hub, "room", token, false).await);
    }
    let back_within = storm.elapsed();
    assert!(back_within < linger, "the storm took {back_within:?}");
    // Past the linger and a few ticks: every held leave has been decided.
    tokio::time::sleep(linger + Duration::from_secs(1)).await;
    publish_marker(&hub).await;
    let during = presence_until_marker(&mut watcher).await;
    eprintln!(
        "reconnect storm: {USERS} clients back within {back_within:?}: {} presence events",
        during.len()
    );
    assert_eq!(during, Vec::<(String, String)>::new());
    let answer = get(&hub, "/api/channels/room/presence", Some(API_KEY)).await;
    assert_eq!(
        answer.body["users"].as_array().map(Vec::len),
        Some(USERS + 1)
    );
    drop(streams);
}

fn cluster_node(redis: &RedisServer, name: &str) -> TestHub {
    jwt_hub(&[
        "--redis-url",
        &redis.url(),
        "--node-id",
        name,
        "--presence",
        "on",
        "--presence-linger",
        "1s",
        "--presence-node-timeout",
        "3s",
    ])
}

async fn users_on(hub: &TestHub) -> Vec<(String, u64)> {
    let answer = get(hub, "/api/channels/room/presence", Some(API_KEY)).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    answer.body["users"]
        .as_array()
        .expect("users")
        .iter()
        .map(|u| {
            (
                u["user"].as_str().expect("user").to_owned(),
                u["connections"].as_u64().expect("connections"),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_spans_the_cluster_and_a_killed_nodes_users_leave_within_the_timeout() {
    let redis = RedisServer::start();
    let mut a = cluster_node(&redis, "a");
    let b = cluster_node(&redis, "b");
    let mut watcher = open(&b, "room", &room_token("watcher"), true).await;
    wait_for(&mut watcher, "join", "watcher", common::PATIENCE).await;

    // ann on both nodes: one join, with both connections counted.
    let ann = room_token("ann");
    let _ann_a = open(&a, "room", &ann, false).await;
    wait_for(&mut watcher, "join", "ann", common::PATIENCE).await;
    let _ann_b = open(&b, "room", &ann, false).await;
    let _bob_a = open(&a, "room", &room_token("bob"), false).await;
    wait_for(&mut watcher, "join", "bob", common::PATIENCE).await;
    let expected = vec![
        ("ann".to_owned(), 2),
        ("bob".to_owned(), 1),
        ("watcher".to_owned(), 1),
    ];
    for hub in [&a, &b] {
        let expected = expected.clone();
        eventually("both nodes see every user", || {
            let expected = expected.clone();
            async move { users_on(hub).await == expected }
        })
        .await;
    }

    // Node a dies: bob (only there) leaves within the node timeout; ann stays (still on b).
    a.signal_and_wait("KILL", common::PATIENCE)
        .expect("the node dies");
    let killed = Instant::now();
    let n = wait_for(&mut watcher, "leave", "bob", Duration::from_secs(15)).await;
    let took = killed.elapsed();
    eprintln!("a killed node's user left after {took:?} (node timeout 3s)");
    assert_eq!(n, 0);
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(3 + 5),
        "left after {took:?}"
    );
    let after = users_on(&b).await;
    assert_eq!(
        after,
        vec![("ann".to_owned(), 1), ("watcher".to_owned(), 1)],
        "ann is still on b, with one connection"
    );
    publish_marker(&b).await;
    let rest = presence_until_marker(&mut watcher).await;
    assert!(
        rest.iter()
            .all(|(kind, data)| !(kind == "leave" && data.contains("\"ann\""))),
        "ann never left: {rest:?}"
    );
}
