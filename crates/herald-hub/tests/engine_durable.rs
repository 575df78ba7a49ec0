//! `Hub::open` in process: what a hub recorded in its data folder is there again after a restart.

mod support;

use herald_hub::{
    ChannelName, ClientOptions, ConnectError, EventData, FsyncPolicy, Hub, HubConfig, NewEvent,
    Published, Target,
};
use support::{eventually, ids, Sse, TempDir};

fn channel(name: &str) -> ChannelName {
    ChannelName::new(name).expect("a valid channel name")
}

async fn publish(hub: &Hub, to: &str, event: NewEvent) -> Published {
    hub.publish(Target::Channels(vec![channel(to)]), event)
        .await
        .expect("the publish is accepted")
}

fn text(data: &str) -> NewEvent {
    NewEvent::new(EventData::text(data))
}

/// Opens the folder again once the previous hub has let go of it (its writer thread closes the
/// database after the hub is dropped).
async fn reopen(dir: &TempDir) -> Hub {
    eventually("the data folder to be free again", || async {
        Hub::open(HubConfig::default(), &dir.0, FsyncPolicy::Always).ok()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reopened_hub_resumes_from_an_id_of_its_previous_life() {
    let dir = TempDir::new("durable");
    let hub = Hub::open(HubConfig::default(), &dir.0, FsyncPolicy::Always).expect("opens");
    let mut before = Vec::new();
    for n in 0..5 {
        before.push(
            publish(&hub, "orders", text(&format!("order {n}")))
                .await
                .id,
        );
    }
    hub.shutdown();
    drop(hub);

    let hub = reopen(&dir).await;
    let mut sse = Sse::new(
        hub.add_client(ClientOptions {
            channels: vec![channel("orders")],
            last_event_id: Some(before[1].clone()),
            ..ClientOptions::default()
        })
        .expect("open"),
    );
    assert_eq!(
        sse.connected().await["resumed"],
        true,
        "the id is known again"
    );
    let after = publish(&hub, "orders", text("order 5")).await;
    assert!(
        !before.contains(&after.id),
        "a new event never takes an id of the previous life: {after:?}"
    );
    let events = sse.events_through(&after.id).await;
    let expected: Vec<String> = before[2..].iter().cloned().chain([after.id]).collect();
    assert_eq!(ids(&events), expected, "exactly what was missed, then live");
    assert_eq!(events[0].data, "order 2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publisher_ids_and_closed_channels_survive_a_restart() {
    let dir = TempDir::new("durable-state");
    let hub = Hub::open(HubConfig::default(), &dir.0, FsyncPolicy::Always).expect("opens");
    let original = publish(&hub, "orders", text("order 7").with_id("order-7")).await;
    hub.close_channel(channel("job-1"), Some(text("done")))
        .await
        .expect("closed");
    hub.shutdown();
    drop(hub);

    let hub = reopen(&dir).await;
    let retried = publish(&hub, "orders", text("order 7").with_id("order-7")).await;
    assert!(
        retried.duplicate,
        "a retry after a restart is still recognised"
    );
    assert_eq!(retried.id, original.id);
    assert_eq!(
        hub.add_client(ClientOptions {
            channels: vec![channel("job-1")],
            ..ClientOptions::default()
        })
        .err(),
        Some(ConnectError::ChannelClosed(channel("job-1"))),
        "a channel closed before the restart stays closed"
    );
}
