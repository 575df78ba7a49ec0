//! Herald's own client and CLI against the real hub: resume after the hub drops a stream, stop on
//! a finished channel, and `herald tail` / `herald publish` end to end.

mod common;

use common::TestHub;
use futures_util::StreamExt;
use herald_client::{Error, EventSource, Update};
use serde_json::json;
use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    time::Duration,
};

async fn next_update(source: &mut EventSource) -> Update {
    tokio::time::timeout(common::PATIENCE, source.next())
        .await
        .expect("an update in time")
        .expect("the client goes on")
}

#[tokio::test]
async fn the_client_resumes_after_the_hub_drops_it_and_misses_nothing() {
    let hub = TestHub::start(&["--retry-interval", "100ms"]);
    let mut source = EventSource::builder(hub.url("/api/channels/feed/stream"))
        .build()
        .expect("a valid client");
    let mut client_ids = Vec::new();
    let mut received = Vec::new();
    let mut reconnects = 0;
    let mut published = 0;
    while received.len() < 20 {
        match next_update(&mut source).await {
            Update::Event(event) if event.event == "connected" => {
                let data: serde_json::Value = serde_json::from_str(&event.data).expect("json");
                assert_eq!(
                    data["resumed"],
                    json!(!client_ids.is_empty()),
                    "every reconnect resumes"
                );
                client_ids.push(data["clientId"].as_str().expect("id").to_owned());
                // Publish the next ten once connected; drop the stream after the first ten.
                for _ in 0..10 {
                    published += 1;
                    hub.publish("/api/channels/feed/events", json!({"data": published}))
                        .await;
                }
            }
            Update::Event(event) => {
                received.push(event.data.parse::<u32>().expect("number"));
                if received.len() == 5 {
                    // Drop the connection mid-stream, then publish while the client is away.
                    let id = client_ids.last().expect("connected");
                    let response = common::http()
                        .delete(hub.url(&format!("/api/clients/{id}")))
                        .send()
                        .await
                        .expect("DELETE");
                    assert_eq!(response.status(), 204);
                }
            }
            Update::Retrying { .. } => reconnects += 1,
            Update::Closed { reason } => panic!("the client stopped: {reason}"),
            _ => {}
        }
    }
    assert_eq!(
        received,
        (1..=20).collect::<Vec<_>>(),
        "every event once, in order"
    );
    assert!(
        reconnects >= 1 && client_ids.len() >= 2,
        "the hub dropped it and it came back"
    );
}

#[tokio::test]
async fn the_client_stops_for_good_on_a_finished_channel() {
    let hub = TestHub::start(&["--retry-interval", "100ms"]);
    let mut source = EventSource::builder(hub.url("/api/channels/job-3/stream"))
        .build()
        .expect("a valid client");
    let mut events = Vec::new();
    loop {
        match next_update(&mut source).await {
            Update::Event(event) if event.event == "connected" && events.is_empty() => {
                hub.post(
                    "/api/channels/job-3/close",
                    json!({"event": "done", "data": 1}),
                )
                .await;
            }
            Update::Event(event) if event.event == "connected" => {}
            Update::Event(event) => events.push(event.event),
            Update::Closed { reason } => {
                assert!(
                    matches!(reason, Error::NoContent),
                    "stopped on 204, not {reason}"
                );
                break;
            }
            _ => {}
        }
    }
    assert_eq!(events, vec!["done"]);
    assert!(
        tokio::time::timeout(Duration::from_millis(300), source.next())
            .await
            .expect("ends")
            .is_none()
    );
}

#[test]
fn herald_publish_and_herald_tail_talk_to_the_hub() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let hub = TestHub::start(&[]);
    let mut tail = Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(["tail", "orders", "--json", "--hub", &hub.base])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("herald tail runs");
    let stdout = tail.stdout.take().expect("piped");
    let (lines_tx, lines_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    runtime.block_on(common::eventually("tail is subscribed", || async {
        hub.stats().await["connections"] == 1
    }));

    let output = Command::new(env!("CARGO_BIN_EXE_herald"))
        .args([
            "publish",
            "orders",
            "--event",
            "created",
            "--data",
            r#"{"id":7}"#,
            "--id",
            "order-7",
        ])
        .env("HERALD_URL", &hub.base)
        .output()
        .expect("herald publish runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let answer: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("the answer is JSON");
    assert_eq!(answer, json!({"id": "order-7", "recipients": 1}));

    let mut printed = Vec::new();
    while let Ok(line) = lines_rx.recv_timeout(common::PATIENCE) {
        let event: serde_json::Value = serde_json::from_str(&line).expect("one JSON object a line");
        let is_created = event["event"] == "created";
        printed.push(event);
        if is_created {
            break;
        }
    }
    let created = printed.last().expect("tail printed the event");
    assert_eq!(
        *created,
        json!({"id": "order-7", "event": "created", "data": {"id": 7}})
    );

    let refused = Command::new(env!("CARGO_BIN_EXE_herald"))
        .args([
            "publish",
            "not a channel",
            "--data",
            "1",
            "--hub",
            &hub.base,
        ])
        .output()
        .expect("herald publish runs");
    assert!(
        !refused.status.success(),
        "a refused publish exits non-zero"
    );
    assert!(String::from_utf8_lossy(&refused.stderr).contains("invalid_channel"));
    let _ = tail.kill();
    let _ = tail.wait();
}
