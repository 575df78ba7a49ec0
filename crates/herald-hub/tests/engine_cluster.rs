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
async fn clients_connected_before_a_node_first_reaches_redis_get_no_old_events() {
    let mut redis = Redis::start();
    let a = node(&redis, "a");
    for n in 1..=5 {
        publish(&a, "room", &format!("old-{n}")).await;
    }
    redis.stop();
    let late = node(&redis, "late");
    let mut sse = Sse::new(late.add_client(on(&["room"], None)).expect("open"));
    assert_eq!(sse.connected().await["resumed"], false);

    redis.run();
    ready(&late).await;
    let new = publish(&late, "room", "new-1").await;
    let event = sse.next_event().await;
    assert_eq!(
        event.id, new.id,
        "a live stream gets live events only, not the log's history (got {:?})",
        event.data
    );
    assert!(
        sse.event_within(Duration::from_millis(300)).await.is_none(),
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
