//! The hub with namespaces, driven in process: history kept per namespace, grace after close,
//! caps, one namespace per publish, subscriber limits.

use crate::{
    config::{HistoryConfig, HubConfig},
    namespace::{HistoryKeep, NamespaceConfig},
    ChannelName, ClientOptions, ClientStream, ConnectError, Hub, PublishError, Target,
};
use futures_util::StreamExt;
use std::time::Duration;

fn channel(name: &str) -> ChannelName {
    ChannelName::new(name).expect("valid channel")
}

fn namespace(name: &str, channels: &str) -> NamespaceConfig {
    serde_json::from_value(serde_json::json!({"name": name, "channels": channels}))
        .expect("a minimal namespace parses")
}

/// A hub whose default history keeps 50 events, with a `jobs` namespace (`job:*`, kept until
/// closed, then `grace`, capped at `job_cap` events).
fn job_hub(job_cap: usize, grace: Duration) -> Hub {
    let mut jobs = namespace("jobs", "job:*");
    jobs.history = HistoryKeep::UntilClosed;
    jobs.grace = Some(grace);
    jobs.max_events = Some(job_cap);
    Hub::new(HubConfig {
        history: HistoryConfig {
            max_events: 50,
            ..HistoryConfig::default()
        },
        namespaces: vec![jobs],
        ..HubConfig::default()
    })
}

async fn publish(hub: &Hub, to: &str, data: &str) -> String {
    hub.broadcast(to, None, data, None)
        .await
        .expect("published")
        .id
}

/// Opens a stream on `channels` resuming after `last_event_id`; returns what it wrote first
/// (the opening and any replay), as text.
async fn resume(hub: &Hub, channels: &[&str], last_event_id: &str) -> String {
    let stream = hub
        .add_client(ClientOptions {
            channels: channels.iter().map(|c| channel(c)).collect(),
            last_event_id: Some(last_event_id.to_owned()),
            ..ClientOptions::default()
        })
        .expect("the stream opens");
    read_for_a_while(stream).await
}

async fn read_for_a_while(mut stream: ClientStream) -> String {
    let mut text = String::new();
    while let Ok(Some(chunk)) =
        tokio::time::timeout(Duration::from_millis(300), stream.next()).await
    {
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    text
}

#[tokio::test]
async fn a_job_keeps_every_step_while_a_busy_channel_passes_the_default_history() {
    let hub = job_hub(1000, Duration::from_secs(600));
    let first = publish(&hub, "job:1", "step 1").await;
    for step in 2..=5 {
        for n in 0..300 {
            publish(&hub, "prices", &format!("tick {n}")).await;
        }
        publish(&hub, "job:1", &format!("step {step}")).await;
    }
    let opened = resume(&hub, &["job:1"], &first).await;
    assert!(opened.contains(r#""resumed":true"#), "{opened}");
    for step in 2..=5 {
        assert!(opened.contains(&format!("data: step {step}\n")), "{opened}");
    }
    assert!(
        !opened.contains("tick"),
        "only the job's channel is replayed"
    );
    let page = hub.events_after(&[channel("job:1")], None, 100);
    assert_eq!(page.events.len(), 5, "every step is in history");
    assert!(!page.reset);

    let busy = resume(&hub, &["prices"], &first).await;
    assert!(
        busy.contains(r#""resumed":false"#),
        "a reader of the busy channel lost events and is told: {busy}"
    );
}

#[tokio::test]
async fn a_job_past_its_namespace_cap_loses_its_oldest_steps_and_its_reader_is_told() {
    let hub = job_hub(3, Duration::from_secs(600));
    let first = publish(&hub, "job:1", "step 1").await;
    for step in 2..=5 {
        publish(&hub, "job:1", &format!("step {step}")).await;
    }
    let page = hub.events_after(&[channel("job:1")], None, 100);
    let steps: Vec<_> = page.events.iter().map(|e| e.data.clone()).collect();
    assert_eq!(steps, ["step 3", "step 4", "step 5"], "oldest first");
    let opened = resume(&hub, &["job:1"], &first).await;
    assert!(opened.contains(r#""resumed":false"#), "{opened}");
    let page = hub.events_after(&[channel("job:1")], Some(&first), 100);
    assert!(page.reset, "a poll from a lost position is told to reload");
    assert_eq!(hub.metrics().history.events, 3);
}

#[tokio::test]
async fn a_closed_job_keeps_its_history_for_the_grace_then_lets_it_go() {
    let hub = job_hub(1000, Duration::from_secs(1));
    let first = publish(&hub, "job:1", "step 1").await;
    publish(&hub, "job:1", "step 2").await;
    publish(&hub, "job:2", "other job").await;
    hub.close_channel(channel("job:1"), None)
        .await
        .expect("closed");
    let late = resume(&hub, &["job:1"], &first).await;
    assert!(late.contains("data: step 2\n"), "within the grace: {late}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        // Publishing trims, as the hub's sweep does every tick.
        publish(&hub, "elsewhere", "x").await;
        if hub
            .events_after(&[channel("job:1")], None, 100)
            .events
            .is_empty()
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the grace never ended"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let other = hub.events_after(&[channel("job:2")], None, 100);
    assert_eq!(other.events.len(), 1, "an open job keeps its history");
    let reopened = hub.add_client(ClientOptions {
        channels: vec![channel("job:1")],
        ..ClientOptions::default()
    });
    assert!(
        reopened.is_ok(),
        "once its closing is gone the name is free"
    );
}

#[tokio::test]
async fn one_publish_cannot_span_two_namespaces() {
    let hub = job_hub(10, Duration::from_secs(1));
    let refused = hub
        .publish(
            Target::Channels(vec![channel("job:1"), channel("news")]),
            crate::NewEvent::new(crate::EventData::text("x")),
        )
        .await;
    assert!(
        matches!(refused, Err(PublishError::NamespaceMismatch { .. })),
        "{refused:?}"
    );
    assert_eq!(hub.metrics().history.events, 0, "nothing was kept");
    let same = hub
        .publish(
            Target::Channels(vec![channel("job:1"), channel("job:2")]),
            crate::NewEvent::new(crate::EventData::text("x")),
        )
        .await;
    assert!(same.is_ok(), "channels of one namespace publish together");
}

#[tokio::test]
async fn a_channel_at_its_most_subscribers_refuses_the_next() {
    let mut rooms = namespace("rooms", "room:*");
    rooms.max_subscribers = 2;
    let hub = Hub::new(HubConfig {
        namespaces: vec![rooms],
        ..HubConfig::default()
    });
    let open = |name: &str| {
        hub.add_client(ClientOptions {
            channels: vec![channel(name)],
            ..ClientOptions::default()
        })
    };
    let first = open("room:1").expect("first");
    let _second = open("room:1").expect("second");
    let third = open("room:1");
    assert!(
        matches!(&third, Err(ConnectError::ChannelFull { max: 2, .. })),
        "{:?}",
        third.as_ref().err()
    );
    assert!(open("room:2").is_ok(), "the limit is per channel");
    assert!(open("lobby").is_ok(), "other namespaces have no limit");
    drop(first);
    assert!(open("room:1").is_ok(), "a leaving subscriber makes room");
}

#[tokio::test]
async fn a_durable_hub_keeps_a_job_and_its_namespaces_losses_across_a_restart() {
    let dir = std::env::temp_dir().join(format!("herald-ns-engine-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let config = job_hub(1000, Duration::from_secs(600)).config().clone();
    let open = || Hub::open(config.clone(), &dir, crate::FsyncPolicy::Always).expect("opens");
    let first = {
        let hub = open();
        let first = publish(&hub, "job:1", "step 1").await;
        for n in 0..120 {
            publish(&hub, "prices", &format!("tick {n}")).await;
        }
        publish(&hub, "job:1", "step 2").await;
        hub.shutdown();
        first
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let hub = open();
    let opened = resume(&hub, &["job:1"], &first).await;
    assert!(opened.contains(r#""resumed":true"#), "{opened}");
    assert!(opened.contains("data: step 2\n"), "{opened}");
    let busy = resume(&hub, &["prices"], &first).await;
    assert!(
        busy.contains(r#""resumed":false"#),
        "the busy channel's loss is remembered"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Cost of a publish with no namespaces and with eight (the channel in the last one, so every
/// pattern is compared), history full so every publish also trims.
/// `cargo test --release -p herald-hub --lib -- --ignored --nocapture publish_cost`
#[tokio::test]
#[ignore = "measures time: run alone, in release"]
async fn publish_cost_with_and_without_namespaces() {
    const EVENTS: u32 = 200_000;
    let eight: Vec<NamespaceConfig> = (0..8)
        .map(|i| namespace(&format!("ns{i}"), &format!("prefix{i}:*")))
        .collect();
    for (label, namespaces, channel) in [
        ("no namespaces", Vec::new(), "prefix7:x"),
        ("8 namespaces", eight, "prefix7:x"),
    ] {
        let hub = Hub::new(HubConfig {
            history: HistoryConfig {
                max_events: 10_000,
                ..HistoryConfig::default()
            },
            namespaces,
            ..HubConfig::default()
        });
        let started = std::time::Instant::now();
        for _ in 0..EVENTS {
            hub.broadcast(channel, None, "x", None)
                .await
                .expect("published");
        }
        let per_event = started.elapsed() / EVENTS;
        eprintln!("{label}: {per_event:?} per publish");
    }
}

#[tokio::test]
async fn history_read_from_a_shared_log_keeps_its_age_so_a_grace_runs_from_the_closing() {
    use crate::{hub::Apply, log::Entry, record::RecordKind};
    let hub = job_hub(1000, Duration::from_secs(1));
    let closed_unix_ms = crate::history::unix_ms() - 5_000;
    let entry = |n: u64, kind: RecordKind| Entry {
        target: Target::Channels(vec![channel("job:1")]),
        event: crate::NewEvent::new(crate::EventData::text("step")),
        kind,
        log_id: Some(format!("{}-{n}", closed_unix_ms - 10 + n)),
        is_publisher_id_on_wire: false,
    };
    hub.shared
        .apply(entry(0, RecordKind::Event), Apply::History)
        .expect("applied");
    hub.shared
        .apply(
            entry(
                1,
                RecordKind::Close {
                    has_final_event: false,
                },
            ),
            Apply::History,
        )
        .expect("applied");
    publish(&hub, "elsewhere", "trims").await;
    assert!(
        hub.events_after(&[channel("job:1")], None, 10)
            .events
            .is_empty(),
        "closed five seconds ago with a one-second grace: gone at once"
    );
}
