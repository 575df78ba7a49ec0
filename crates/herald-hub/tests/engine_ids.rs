//! Ids, records and polling under attack, in process on the memory log: what a hostile publisher
//! or subscriber can do with channel lists, publisher ids, client ids and polls (issue 11).

mod support;

use herald_hub::{
    ChannelName, ClientId, ClientOptions, EventData, Hub, HubConfig, NewEvent, Published, Target,
    PUBLISH_CHANNELS_MAX,
};
use std::time::{Duration, Instant};
use support::Sse;

fn channel(name: &str) -> ChannelName {
    ChannelName::new(name).expect("a valid channel name")
}

fn to(channels: &[&str]) -> Target {
    Target::Channels(channels.iter().map(|c| channel(c)).collect())
}

fn text(data: &str) -> NewEvent {
    NewEvent::new(EventData::text(data))
}

fn on(channels: &[&str]) -> ClientOptions {
    ClientOptions {
        channels: channels.iter().map(|c| channel(c)).collect(),
        ..ClientOptions::default()
    }
}

async fn publish(hub: &Hub, channels: &[&str], event: NewEvent) -> Published {
    hub.publish(to(channels), event)
        .await
        .expect("the publish is accepted")
}

#[tokio::test]
async fn a_publish_names_a_bounded_set_of_channels_and_history_counts_every_name() {
    let hub = Hub::new(HubConfig::default());
    let names: Vec<String> = (0..=PUBLISH_CHANNELS_MAX)
        .map(|n| format!("c{n}"))
        .collect();
    let too_many: Vec<&str> = names.iter().map(String::as_str).collect();
    let refused = hub.publish(to(&too_many), text("x")).await;
    assert!(
        refused.as_ref().is_err_and(|err| err.is_invalid()),
        "{refused:?}"
    );
    assert_eq!(hub.stats().history.events, 0, "nothing was published");

    // Duplicates count once: 10 000 times the same name is one channel.
    let same = vec!["a"; 10_000];
    publish(&hub, &same, text("x")).await;
    let one_name = hub.stats().history.bytes;
    assert!(one_name < 1_000, "one name costs {one_name} bytes");

    // The largest list allowed is counted in full: every name's bytes at least.
    let long: Vec<String> = (0..PUBLISH_CHANNELS_MAX)
        .map(|n| format!("{n:0>128}"))
        .collect();
    let long: Vec<&str> = long.iter().map(String::as_str).collect();
    publish(&hub, &long, text("x")).await;
    let counted = hub.stats().history.bytes - one_name;
    assert!(
        counted >= PUBLISH_CHANNELS_MAX * (128 + 16),
        "64 names of 128 bytes counted as {counted} bytes"
    );
}

#[tokio::test]
async fn a_publisher_id_is_idempotent_only_within_its_own_channels() {
    let hub = Hub::new(HubConfig::default());
    let mut both = Sse::new(hub.add_client(on(&["a", "billing"])).expect("open"));
    both.connected().await;

    let on_a = publish(&hub, &["a"], text("a's").with_id("order-7")).await;
    let on_billing = publish(&hub, &["billing"], text("billing's").with_id("order-7")).await;
    assert!(
        !on_billing.duplicate,
        "another channel's event is not suppressed"
    );
    assert_eq!(
        (on_a.id.as_str(), on_billing.id.as_str()),
        ("order-7", "order-7"),
        "the answer is the publisher's id, whatever another scope holds"
    );
    assert_eq!(on_billing.recipients, 1, "delivered");
    let again = publish(&hub, &["a"], text("a's").with_id("order-7")).await;
    assert!(
        again.duplicate,
        "the same id on the same channel is a no-op"
    );
    let reordered = publish(&hub, &["billing", "a", "a"], text("x").with_id("m-1")).await;
    let same_set = publish(&hub, &["a", "billing"], text("x").with_id("m-1")).await;
    assert!(
        !reordered.duplicate && same_set.duplicate,
        "the scope is the set of channels"
    );

    // A subscriber of both sees two events with two different ids, and each resumes exactly.
    let first = both.next_event().await;
    let second = both.next_event().await;
    assert_eq!(first.id, "order-7", "the publisher's id is the wire id");
    assert_ne!(second.id, first.id, "a wire id names one event");
    for (resume_from, expected) in [(&first.id, "billing's"), (&second.id, "x")] {
        let mut resumed = Sse::new(
            hub.add_client(ClientOptions {
                last_event_id: Some(resume_from.clone()),
                ..on(&["a", "billing"])
            })
            .expect("open"),
        );
        assert_eq!(resumed.connected().await["resumed"], true);
        assert_eq!(resumed.next_event().await.data, expected);
    }
}

#[tokio::test]
async fn publisher_ids_a_browser_cannot_resume_from_or_shaped_like_positions_are_refused() {
    let hub = Hub::new(HubConfig::default());
    for bad in [
        " order-7",
        "order-7 ",
        "a b",
        "\u{fc}-1",
        "1700000000000-0",
        "0-0",
        "mfx3k2a0abcd-17",
    ] {
        let refused = hub.publish(to(&["a"]), text("x").with_id(bad)).await;
        assert!(
            refused.as_ref().is_err_and(|err| err.is_invalid()),
            "{bad:?}: {refused:?}"
        );
    }
    assert_eq!(hub.stats().history.events, 0);
    // An id the hub does not know, of any shape, opens the stream with `resumed: false`.
    for unknown in ["\u{fc}-1", " x", "1700000000000-0"] {
        let mut sse = Sse::new(
            hub.add_client(ClientOptions {
                last_event_id: Some(unknown.to_owned()),
                ..on(&["a"])
            })
            .expect("an unknown id never refuses a stream"),
        );
        assert_eq!(sse.connected().await["resumed"], false, "{unknown:?}");
    }
}

fn as_user(user: &str, client_id: &str) -> ClientOptions {
    ClientOptions {
        client_id: Some(ClientId::new(client_id).expect("a valid client id")),
        user: Some(user.to_owned()),
        ..on(&["a"])
    }
}

/// Asks for `client_id` as `user` the way the HTTP layer does, and returns the id given and
/// the stream.
async fn claim(hub: &Hub, user: &str, client_id: &str) -> (String, Sse) {
    let requested = ClientId::new(client_id).expect("a valid client id");
    let given = hub.claim_client_id(Some(requested), Some(user)).await;
    let mut sse = Sse::new(
        hub.add_client(ClientOptions {
            client_id: Some(given),
            ..as_user(user, client_id)
        })
        .expect("open"),
    );
    let connected = sse.connected().await;
    let id = connected["clientId"]
        .as_str()
        .expect("connected names the client id")
        .to_owned();
    (id, sse)
}

#[tokio::test]
async fn a_client_id_stays_its_owners_while_events_for_it_are_in_history() {
    let mut config = HubConfig {
        client_linger: Duration::from_millis(50),
        heartbeat_interval: Duration::from_millis(20),
        ..HubConfig::default()
    };
    config.history.max_events = 100;
    let hub = Hub::new(config);
    let (id, victim) = claim(&hub, "alice", "tab-1").await;
    assert_eq!(id, "tab-1");
    drop(victim);
    hub.send_to(
        &ClientId::new("tab-1").expect("valid"),
        None,
        "alice's secret",
        None,
    )
    .await
    .expect("the id lingers");
    // Long past the linger: the event for tab-1 is still in history, so the id is still alice's.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (given, mut intruder) = claim(&hub, "mallory", "tab-1").await;
    assert_ne!(
        given, "tab-1",
        "another identity gets a fresh id, as if it asked for none"
    );
    assert!(given.starts_with("c_") && given.len() == 28, "{given}");
    let mut resumed = Sse::new(
        hub.add_client(ClientOptions {
            client_id: Some(ClientId::new(&given).expect("valid")),
            last_event_id: Some("nothing-known".to_owned()),
            ..as_user("mallory", &given)
        })
        .expect("open"),
    );
    resumed.connected().await;
    assert!(
        intruder
            .event_within(Duration::from_millis(100))
            .await
            .is_none()
            && resumed
                .event_within(Duration::from_millis(100))
                .await
                .is_none(),
        "nothing of alice's reaches mallory"
    );
    // Alice herself gets it back.
    let (id, _back) = claim(&hub, "alice", "tab-1").await;
    assert_eq!(id, "tab-1");
}

#[tokio::test]
async fn a_client_id_cut_for_a_full_queue_stays_its_owners() {
    let hub = Hub::new(HubConfig {
        queue_capacity: 2,
        ..HubConfig::default()
    });
    let (_, victim) = claim(&hub, "alice", "tab-1").await;
    for n in 0..5 {
        publish(&hub, &["a"], text(&n.to_string())).await;
    }
    // The victim's queue overflowed; its stream object is still alive (a reader that stopped).
    let (given, _intruder) = claim(&hub, "mallory", "tab-1").await;
    assert_ne!(
        given, "tab-1",
        "an overflowed id is still bound to its owner"
    );
    drop(victim);
}

#[tokio::test]
async fn an_empty_poll_names_no_event_of_another_channel() {
    let hub = Hub::new(HubConfig::default());
    let mine = [channel("mine")];
    let first = hub.events_after(&mine, None, 10);
    let other = publish(&hub, &["other"], text("elsewhere").with_id("inv-99")).await;
    let page = hub.events_after(&mine, first.cursor.as_deref(), 10);
    assert!(page.events.is_empty() && !page.reset);
    let cursor = page.cursor.expect("a cursor to go on from");
    assert_ne!(
        cursor, other.id,
        "the cursor names another channel's publisher id"
    );
    let mine_event = publish(&hub, &["mine"], text("mine")).await;
    let next = hub.events_after(&mine, Some(&cursor), 10);
    assert_eq!(ids_of(&next), vec![mine_event.id.clone()]);
    assert!(!next.reset);
    let after_mine = hub.events_after(&mine, next.cursor.as_deref(), 10);
    assert!(after_mine.events.is_empty() && !after_mine.reset);
}

fn ids_of(page: &herald_hub::EventPage) -> Vec<String> {
    page.events.iter().map(|e| e.id.clone()).collect()
}

#[tokio::test]
async fn a_poll_merges_its_channels_and_broadcasts_in_order_and_pages() {
    let hub = Hub::new(HubConfig::default());
    let mut expected = Vec::new();
    for n in 0..6 {
        let published = match n % 3 {
            0 => publish(&hub, &["x"], text(&n.to_string())).await,
            1 => hub.broadcast_all(None, &n, None).await.expect("accepted"),
            _ => publish(&hub, &["x", "y"], text(&n.to_string())).await,
        };
        publish(&hub, &["z"], text("not asked for")).await;
        expected.push(published.id);
    }
    let asked = [channel("x"), channel("y")];
    let page = hub.events_after(&asked, None, 4);
    assert!(page.has_more);
    let rest = hub.events_after(&asked, page.cursor.as_deref(), 4);
    assert!(!rest.has_more);
    let mut got = ids_of(&page);
    got.extend(ids_of(&rest));
    assert_eq!(got, expected, "each event once, in order, none of z's");
    assert_eq!(rest.events[1].channel, Some(channel("x")));
}

/// `cargo test -p herald-hub --release --test engine_ids -- --ignored --nocapture empty_poll`
#[tokio::test]
#[ignore = "measures time: run alone, in release"]
async fn an_empty_poll_costs_nothing_with_a_hundred_thousand_events_of_history() {
    const EVENTS: usize = 100_000;
    let mut config = HubConfig::default();
    config.history.max_events = EVENTS;
    let hub = Hub::new(config);
    for n in 0..EVENTS {
        publish(&hub, &["busy"], text(&n.to_string())).await;
    }
    let quiet = [channel("quiet")];
    let rounds = 200;
    let started = Instant::now();
    for _ in 0..rounds {
        let page = hub.events_after(&quiet, None, 100);
        assert!(page.events.is_empty());
    }
    let per_poll = started.elapsed() / rounds;
    eprintln!("empty poll with {EVENTS} events of history: {per_poll:?}");
    assert!(per_poll < Duration::from_millis(1), "{per_poll:?}");
}
