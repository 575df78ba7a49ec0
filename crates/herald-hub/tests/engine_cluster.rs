//! Cluster nodes in process over a real `redis-server` on a free port: delivery across nodes, and
//! a node's first contact with Redis (clients that connected before it, a resume id it has not
//! read yet).

mod support;

use herald_hub::{
    ChannelName, ClientOptions, ClusterConfig, EventData, Hub, HubConfig, NewEvent, Published,
    Target,
};
use std::time::Duration;
use support::{eventually, ids, Redis, Sse};

fn channel(name: &str) -> ChannelName {
    ChannelName::new(name).expect("a valid channel name")
}

fn node(redis: &Redis, name: &str) -> Hub {
    Hub::join_cluster(
        HubConfig::default(),
        ClusterConfig {
            redis_url: redis.url(),
            key_prefix: "herald".to_owned(),
            node_id: name.to_owned(),
        },
    )
    .expect("a valid Redis URL")
}

fn on(channels: &[&str], last_event_id: Option<&str>) -> ClientOptions {
    ClientOptions {
        channels: channels.iter().map(|c| channel(c)).collect(),
        last_event_id: last_event_id.map(str::to_owned),
        ..ClientOptions::default()
    }
}

/// Publishes with a publisher id, retrying while the node cannot reach Redis yet (the id makes a
/// retry of a publish that did land harmless).
async fn publish(hub: &Hub, to: &str, id: &str) -> Published {
    eventually(&format!("the node to accept {id}"), || async {
        hub.publish(
            Target::Channels(vec![channel(to)]),
            NewEvent::new(EventData::text(id)).with_id(id),
        )
        .await
        .ok()
    })
    .await
}

async fn ready(hub: &Hub) {
    eventually("the node to read the cluster log", || async {
        hub.is_ready().then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_published_on_one_node_reaches_a_subscriber_on_another() {
    let redis = Redis::start();
    let (a, b) = (node(&redis, "a"), node(&redis, "b"));
    ready(&b).await;
    let mut sse = Sse::new(b.add_client(on(&["room"], None)).expect("open"));
    sse.connected().await;

    let published = publish(&a, "room", "hello").await;
    let event = sse.next_event().await;
    assert_eq!((event.id, event.data), (published.id, "hello".to_owned()));
    a.shutdown();
    b.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_opened_while_a_node_starts_gets_every_event_published_after_connected() {
    let redis = Redis::start();
    let a = node(&redis, "a");
    ready(&a).await;
    for n in 1..=3 {
        publish(&a, "room", &format!("old-{n}")).await;
    }
    // The stream is asked for before `b` has read anything of the log: it opens once `b` has.
    let b = node(&redis, "b");
    let mut sse = Sse::new(b.add_client(on(&["room"], None)).expect("open"));
    assert_eq!(sse.connected().await["resumed"], false);
    let new = publish(&a, "room", "new-1").await;
    let event = sse.next_event().await;
    assert_eq!(
        event.id, new.id,
        "old events are history, the new one is live"
    );
    a.shutdown();
    b.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_connected_before_a_node_first_reaches_redis_are_told_and_get_no_old_events() {
    let mut redis = Redis::start();
    let a = node(&redis, "a");
    for n in 1..=5 {
        publish(&a, "room", &format!("old-{n}")).await;
    }
    redis.stop();
    let late = node(&redis, "late");
    let mut sse = Sse::new(late.add_client(on(&["room"], None)).expect("open"));
    // A new stream waits a bounded time for the node's first contact with the log; Redis stays
    // out of reach for longer, so it opens from no point of the shared log.
    let connected = sse
        .event_within(Duration::from_secs(15))
        .await
        .expect("the stream opens once its wait is over");
    assert_eq!(connected.event, "connected");

    redis.run();
    ready(&late).await;
    // At first contact the open stream ends (nothing replayed into it), so its client comes
    // back and is told where it stands.
    let (events, comments) = sse.rest_until_end().await;
    assert!(
        events.is_empty(),
        "no old event reaches the live stream: {events:?}"
    );
    assert!(
        comments.iter().any(|c| c.starts_with("closed: history")),
        "{comments:?}"
    );
    let mut again = Sse::new(
        late.add_client(on(&["room"], Some(&connected.id)))
            .expect("open"),
    );
    assert_eq!(
        again.connected().await["resumed"],
        false,
        "its position named no point of the shared log: it is told so"
    );
    let new = publish(&late, "room", "new-1").await;
    let event = again.next_event().await;
    assert_eq!(
        event.id, new.id,
        "a live stream gets live events only, not the log's history (got {:?})",
        event.data
    );
    assert!(
        again
            .event_within(Duration::from_millis(300))
            .await
            .is_none(),
        "nothing else follows"
    );
    a.shutdown();
    late.shutdown();
}

#[tokio::test(flavor = "current_thread")]
async fn a_client_resuming_on_a_node_that_has_not_read_its_id_yet_gets_exactly_what_it_missed() {
    let redis = Redis::start();
    let a = node(&redis, "a");
    let mut published = Vec::new();
    for n in 1..=5 {
        published.push(publish(&a, "room", &format!("e{n}")).await.id);
    }

    // On this single-threaded runtime the new node's reader cannot run before the client is
    // added: the node has read nothing of the log when the client names `e2`.
    let b = node(&redis, "b");
    let mut sse = Sse::new(
        b.add_client(on(&["room"], Some(&published[1])))
            .expect("open"),
    );
    assert_eq!(
        sse.connected().await["resumed"],
        true,
        "the id is in the log: the resume is exact"
    );
    let missed = sse.events_through(&published[4]).await;
    assert_eq!(ids(&missed), published[2..], "exactly the missed events");
    let live = publish(&a, "room", "e6").await;
    let event = sse.next_event().await;
    assert_eq!(event.id, live.id, "then live events, none twice");
    a.shutdown();
    b.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_publisher_id_on_two_channels_is_two_events_with_one_wire_id_each_on_every_node() {
    let redis = Redis::start();
    let (a, b) = (node(&redis, "a"), node(&redis, "b"));
    ready(&a).await;
    ready(&b).await;
    let mut sse = Sse::new(b.add_client(on(&["room", "billing"], None)).expect("open"));
    sse.connected().await;

    let first = publish(&a, "room", "order-7").await;
    let second = publish(&b, "billing", "order-7").await;
    assert!(!second.duplicate, "another channel's id is another event");
    assert_eq!(
        (first.id.as_str(), second.id.as_str()),
        ("order-7", "order-7")
    );
    let again = publish(&b, "room", "order-7").await;
    assert!(
        again.duplicate,
        "the same id on the same channel, from any node"
    );

    let seen = [sse.next_event().await, sse.next_event().await];
    assert_eq!(seen[0].id, "order-7");
    assert_ne!(seen[1].id, seen[0].id, "a wire id names one event");
    // Every node shows the same ids: a poll on the other node agrees (once it has read both).
    let asked = [channel("room"), channel("billing")];
    let polled: Vec<String> = eventually("node a to read both events", || {
        let page = a.events_after(&asked, None, 10);
        let ids: Vec<String> = page.events.iter().map(|e| e.id.clone()).collect();
        async move { (ids.len() == 2).then_some(ids) }
    })
    .await;
    assert_eq!(polled, [seen[0].id.clone(), seen[1].id.clone()]);
    a.shutdown();
    b.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_id_bound_on_one_node_is_not_given_to_another_identity_on_another() {
    let redis = Redis::start();
    let (a, b) = (node(&redis, "a"), node(&redis, "b"));
    ready(&a).await;
    ready(&b).await;
    let tab = herald_hub::ClientId::new("tab-1").expect("valid");
    let given = a
        .claim_client_id(Some(tab.clone()), Some("user:alice"))
        .await;
    assert_eq!(given, tab);
    let other = b
        .claim_client_id(Some(tab.clone()), Some("user:mallory"))
        .await;
    assert_ne!(other, tab, "bound to alice on every node");
    let again = b
        .claim_client_id(Some(tab.clone()), Some("user:alice"))
        .await;
    assert_eq!(again, tab, "alice takes it on any node");
    a.shutdown();
    b.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_shaped_like_log_positions_are_refused_and_every_answered_event_is_delivered() {
    let redis = Redis::start();
    let (a, b) = (node(&redis, "a"), node(&redis, "b"));
    ready(&a).await;
    ready(&b).await;
    let mut sse = Sse::new(b.add_client(on(&["room"], None)).expect("open"));
    sse.connected().await;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_millis();
    // Ids of the entries Redis is about to append: a node must never take them for positions.
    for ms in now_ms..now_ms + 2_000 {
        let forged = NewEvent::new(EventData::text("forged")).with_id(format!("{ms}-0"));
        let refused = a
            .publish(Target::Channels(vec![channel("room")]), forged)
            .await;
        assert!(refused.is_err_and(|err| err.is_invalid()));
    }
    let mut answered = Vec::new();
    for n in 0..20 {
        let event = NewEvent::new(EventData::text(format!("real-{n}")));
        let published = a
            .publish(Target::Channels(vec![channel("room")]), event)
            .await
            .expect("accepted");
        answered.push(published.id);
    }
    let delivered = sse.events_through(answered.last().expect("20")).await;
    assert_eq!(
        ids(&delivered),
        answered,
        "every answered event reaches the subscriber"
    );
    a.shutdown();
    b.shutdown();
}
