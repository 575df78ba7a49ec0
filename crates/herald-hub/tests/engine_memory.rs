//! The engine in memory, driven in process: the resume boundary, closed channels and duplicate
//! publishes, read from the exact SSE bytes a connection would write.

mod support;

use herald_hub::{
    ChannelName, ClientOptions, ConnectError, EventData, Hub, HubConfig, NewEvent, Published,
    Target,
};
use std::sync::{
    atomic::{AtomicUsize, Ordering},
    Arc,
};
use support::{ids, Sse};

fn channel(name: &str) -> ChannelName {
    ChannelName::new(name).expect("a valid channel name")
}

fn on(channels: &[&str]) -> ClientOptions {
    ClientOptions {
        channels: channels.iter().map(|c| channel(c)).collect(),
        ..ClientOptions::default()
    }
}

fn resuming(channels: &[&str], last_event_id: &str) -> ClientOptions {
    ClientOptions {
        last_event_id: Some(last_event_id.to_owned()),
        ..on(channels)
    }
}

async fn publish(hub: &Hub, to: &str, event: NewEvent) -> Published {
    hub.publish(Target::Channels(vec![channel(to)]), event)
        .await
        .expect("the publish is accepted")
}

fn text(data: &str) -> NewEvent {
    NewEvent::new(EventData::text(data))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_published_during_a_replay_is_neither_lost_nor_doubled() {
    const BACKLOG: usize = 2_000;
    const LIVE: usize = 2_000;
    // Room for everything in history and in each queue: a cut connection would end the test.
    let mut config = HubConfig {
        queue_capacity: 10 * (BACKLOG + LIVE),
        ..HubConfig::default()
    };
    config.history.max_events = 10 * (BACKLOG + LIVE);
    let hub = Hub::new(config);
    let mut backlog = Vec::new();
    for n in 0..BACKLOG {
        backlog.push(publish(&hub, "ticks", text(&n.to_string())).await.id);
    }

    let published_live = Arc::new(AtomicUsize::new(0));
    let publisher = tokio::spawn({
        let hub = hub.clone();
        let published_live = published_live.clone();
        async move {
            let mut ids = Vec::new();
            for n in BACKLOG..BACKLOG + LIVE {
                let event = if n + 1 == BACKLOG + LIVE {
                    text(&n.to_string()).with_id("last")
                } else {
                    text(&n.to_string())
                };
                ids.push(publish(&hub, "ticks", event).await.id);
                published_live.fetch_add(1, Ordering::Relaxed);
                tokio::task::yield_now().await;
            }
            ids
        }
    });

    // Clients resume from early, middle and late ids while the publisher runs. Each reads its
    // first replayed event, then lets the publisher go on before reading the rest of the replay
    // (chunks of a few hundred events), so events are published between the registration and the
    // end of the replay, for sure.
    let mut readers = Vec::new();
    for (from, when_live) in [(0, 0), (10, 100), (BACKLOG / 2, 500), (BACKLOG - 2, 1_000)] {
        while published_live.load(Ordering::Relaxed) < when_live {
            tokio::task::yield_now().await;
        }
        let stream = hub
            .add_client(resuming(&["ticks"], &backlog[from]))
            .expect("the channel is open");
        let published_live = published_live.clone();
        readers.push((
            from,
            tokio::spawn(async move {
                let mut sse = Sse::new(stream);
                let connected = sse.connected().await;
                assert_eq!(connected["resumed"], true, "{connected}");
                let first = sse.next_event().await;
                while published_live.load(Ordering::Relaxed) < when_live + 200 {
                    tokio::task::yield_now().await;
                }
                let mut received = vec![first.id.clone()];
                if first.id != "last" {
                    received.extend(ids(&sse.events_through("last").await));
                }
                received
            }),
        ));
    }
    let live = publisher.await.expect("the publisher finishes");
    let all: Vec<String> = backlog.into_iter().chain(live).collect();
    for (from, reader) in readers {
        let received = reader.await.expect("the reader finishes");
        let expected = &all[from + 1..];
        assert_eq!(
            received.len(),
            expected.len(),
            "resumed after event {from}: every later event exactly once"
        );
        assert!(
            received == expected,
            "resumed after event {from}: the events in publish order"
        );
    }
}

#[tokio::test]
async fn closing_a_channel_sends_the_final_event_then_ends_its_streams() {
    let hub = Hub::new(HubConfig::default());
    let mut sse = Sse::new(hub.add_client(on(&["news"])).expect("open"));
    sse.connected().await;
    let before = publish(&hub, "news", text("before")).await;
    let closing = hub
        .close_channel(channel("news"), Some(text("bye").named("final")))
        .await
        .expect("the final event is valid");

    let (events, comments) = sse.rest_until_end().await;
    assert_eq!(ids(&events), [before.id, closing.id.clone()]);
    assert_eq!(
        (events[1].event.as_str(), events[1].data.as_str()),
        ("final", "bye")
    );
    assert!(
        comments.iter().any(|c| c == "closed: channel closed"),
        "the stream says why it ended: {comments:?}"
    );
    assert_eq!(
        hub.add_client(on(&["news"])).err(),
        Some(ConnectError::ChannelClosed(channel("news"))),
        "a new stream to a closed channel is refused"
    );
    assert_eq!(
        hub.add_client(resuming(&["news"], &closing.id)).err(),
        Some(ConnectError::ChannelClosed(channel("news"))),
        "a client that already has the closing is refused too"
    );
}

#[tokio::test]
async fn closing_a_channel_without_a_final_event_ends_its_streams_with_no_event() {
    let hub = Hub::new(HubConfig::default());
    let mut sse = Sse::new(hub.add_client(on(&["jobs"])).expect("open"));
    sse.connected().await;
    hub.close_channel(channel("jobs"), None)
        .await
        .expect("closing without a final event");
    let (events, comments) = sse.rest_until_end().await;
    assert!(events.is_empty(), "no event is made up: {events:?}");
    assert_eq!(comments, ["closed: channel closed"]);
    assert!(matches!(
        hub.add_client(on(&["jobs"])),
        Err(ConnectError::ChannelClosed(_))
    ));
}

#[tokio::test]
async fn a_client_resuming_from_before_the_closing_gets_the_rest_and_the_final_event() {
    let hub = Hub::new(HubConfig::default());
    let first = publish(&hub, "job-7", text("10%")).await;
    let second = publish(&hub, "job-7", text("60%")).await;
    let third = publish(&hub, "job-7", text("100%")).await;
    let closing = hub
        .close_channel(channel("job-7"), Some(text("done").named("finished")))
        .await
        .expect("closed");

    let mut sse = Sse::new(
        hub.add_client(resuming(&["job-7"], &first.id))
            .expect("a client from before the closing is served"),
    );
    assert_eq!(sse.connected().await["resumed"], true);
    let (events, comments) = sse.rest_until_end().await;
    assert_eq!(ids(&events), [second.id, third.id, closing.id]);
    assert_eq!(events[2].event, "finished");
    assert_eq!(comments, ["closed: channel closed"]);
}

#[tokio::test]
async fn publishing_to_a_closed_channel_reopens_it() {
    let hub = Hub::new(HubConfig::default());
    hub.close_channel(channel("room"), None)
        .await
        .expect("closed");
    assert!(hub.add_client(on(&["room"])).is_err());

    publish(&hub, "room", text("reopening")).await;
    let mut sse = Sse::new(
        hub.add_client(on(&["room"]))
            .expect("publishing reopened the channel"),
    );
    sse.connected().await;
    let later = publish(&hub, "room", text("later")).await;
    let event = sse.next_event().await;
    assert_eq!((event.id, event.data), (later.id, "later".to_owned()));
}

#[tokio::test]
async fn a_stream_on_several_channels_leaves_only_the_closed_one() {
    let hub = Hub::new(HubConfig::default());
    let mut sse = Sse::new(hub.add_client(on(&["a", "b"])).expect("open"));
    sse.connected().await;
    hub.close_channel(channel("a"), None).await.expect("closed");
    let on_b = publish(&hub, "b", text("still here")).await;
    let event = sse.next_event().await;
    assert_eq!(event.id, on_b.id, "the stream goes on for `b`");
    assert_eq!(hub.clients_by_channel(&channel("a")).len(), 0);
    assert_eq!(hub.clients_by_channel(&channel("b")).len(), 1);
}

#[tokio::test]
async fn the_same_publisher_id_twice_makes_one_event() {
    let hub = Hub::new(HubConfig::default());
    let mut sse = Sse::new(hub.add_client(on(&["orders"])).expect("open"));
    sse.connected().await;
    let first = publish(&hub, "orders", text("order 7 created").with_id("order-7")).await;
    let again = publish(
        &hub,
        "orders",
        text("order 7 created, retried").with_id("order-7"),
    )
    .await;
    assert!(!first.duplicate);
    assert!(again.duplicate, "the retry is recognised");
    assert_eq!(again.id, first.id, "the retry gets the original's answer");
    let next = publish(&hub, "orders", text("order 8 created")).await;

    let events = sse.events_through(&next.id).await;
    assert_eq!(ids(&events), [first.id, next.id]);
    assert_eq!(
        events[0].data, "order 7 created",
        "the original is what was delivered"
    );
    assert_eq!(
        hub.stats().history.events,
        2,
        "history holds the event once"
    );
}
