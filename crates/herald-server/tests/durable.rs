//! The durable log behind `--data-dir`: what was acknowledged survives `kill -9`, retention holds on
//! disk, and a damaged folder stops the hub instead of starting it empty.

mod common;

use common::{SseStream, TestHub};
use serde_json::json;
use std::{path::PathBuf, process::Command, time::Duration};

fn data_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("herald-durable-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn start(dir: &std::path::Path, extra: &[&str]) -> TestHub {
    let mut args = vec!["--data-dir", dir.to_str().expect("utf-8 path")];
    args.extend_from_slice(extra);
    TestHub::start(&args)
}

#[tokio::test]
async fn acknowledged_events_survive_kill_9_and_resume_exactly_after_the_last_id() {
    let dir = data_dir("kill");
    let mut hub = start(&dir, &[]);
    let mut ids = Vec::new();
    for n in 1..=20 {
        let answer = hub
            .publish(
                "/api/channels/orders/events",
                json!({"event": "n", "data": n}),
            )
            .await;
        ids.push(answer["id"].as_str().expect("id").to_owned());
    }
    hub.signal_and_wait("KILL", Duration::from_secs(5))
        .expect("killed");

    let hub = start(&dir, &[]);
    let mut stream = SseStream::open(
        &hub.url("/api/channels/orders/stream"),
        &[("Last-Event-ID", &ids[9])],
    )
    .await;
    assert_eq!(stream.connected().await["resumed"], json!(true));
    for n in 11..=20 {
        let event = stream.next_event().await;
        assert_eq!(
            (event.data.as_str(), event.id.as_str()),
            (n.to_string().as_str(), ids[n - 1].as_str())
        );
    }
    assert!(
        stream
            .next_event_within(Duration::from_millis(300))
            .await
            .is_none(),
        "exactly the events after it"
    );

    let new = hub
        .publish("/api/channels/orders/events", json!({"data": 21}))
        .await;
    assert!(!ids.contains(&new["id"].as_str().expect("id").to_owned()));
    assert_eq!(stream.next_event().await.data, "21");
    let page = hub
        .get_json(&format!("/api/channels/orders/events?after={}", ids[19]))
        .await;
    assert_eq!(
        page["events"][0]["data"], 21,
        "new positions continue after the recovered ones"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn idempotent_ids_and_closed_channels_survive_a_restart() {
    let dir = data_dir("restart");
    let mut hub = start(&dir, &["--fsync", "5ms"]);
    hub.publish(
        "/api/channels/jobs/events",
        json!({"data": 1, "id": "job-7-started"}),
    )
    .await;
    hub.post(
        "/api/channels/job-7/close",
        json!({"event": "done", "data": {"ok": true}}),
    )
    .await;
    let status = hub
        .signal_and_wait("TERM", Duration::from_secs(5))
        .expect("stops");
    assert!(status.success());

    let hub = start(&dir, &[]);
    let again = hub
        .publish(
            "/api/channels/jobs/events",
            json!({"data": 2, "id": "job-7-started"}),
        )
        .await;
    assert_eq!(again["duplicate"], json!(true));
    let response = common::http()
        .get(hub.url("/api/channels/job-7/stream"))
        .send()
        .await
        .expect("GET");
    assert_eq!(response.status(), 204, "the closing is still in history");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn retention_applies_on_disk_too() {
    let dir = data_dir("retention");
    let mut hub = start(&dir, &["--history-max-events", "10"]);
    let payload = "x".repeat(4096);
    let mut last = String::new();
    for n in 0..500 {
        let answer = hub
            .publish(
                "/api/channels/big/events",
                json!({"data": format!("{n} {payload}")}),
            )
            .await;
        last = answer["id"].as_str().expect("id").to_owned();
    }
    hub.signal_and_wait("KILL", Duration::from_secs(5))
        .expect("killed");
    let file_bytes = std::fs::metadata(dir.join("herald.redb"))
        .expect("the database file exists")
        .len();
    // 500 events of 4 KiB would be 2 MiB; ten of them with redb's page overhead fit well under 1 MiB.
    assert!(
        file_bytes < 1024 * 1024,
        "the data file holds {file_bytes} bytes"
    );

    let hub = start(&dir, &["--history-max-events", "10"]);
    let page = hub.get_json("/api/channels/big/events").await;
    let events = page["events"].as_array().expect("events");
    assert_eq!(events.len(), 10, "only the retained events came back");
    assert_eq!(events[9]["id"], last.as_str());
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs `herald serve --data-dir dir` to its exit (it must refuse to start).
fn serve_once(dir: &std::path::Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .output()
        .expect("the herald binary runs")
}

#[test]
fn a_corrupt_data_folder_stops_the_hub_with_a_clear_message() {
    let dir = data_dir("corrupt");
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(dir.join("herald.redb"), vec![0xAB; 64 * 1024]).expect("garbage");
    let output = serve_once(&dir);
    assert!(
        !output.status.success(),
        "the hub must not start on a corrupt folder"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cannot be used") && stderr.contains("herald.redb"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_unwritable_data_folder_stops_the_hub() {
    let dir = data_dir("file-not-folder");
    std::fs::write(&dir, b"not a folder").expect("a file where the folder should be");
    let output = serve_once(&dir);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("cannot be used"));
    let _ = std::fs::remove_file(&dir);
}

#[tokio::test]
async fn requests_made_while_history_loads_wait_for_it_and_are_served() {
    let dir = data_dir("loading");
    let limits = ["--history-max-bytes", "1000000000"];
    let mut hub = start(&dir, &limits);
    // Enough stored bytes that reading them back takes far longer than connecting does.
    let payload = "x".repeat(40 * 1024);
    let mut publishing = tokio::task::JoinSet::new();
    for worker in 0..8 {
        let (url, payload) = (hub.url("/api/channels/bulk/events"), payload.clone());
        publishing.spawn(async move {
            let client = common::http();
            for n in 0..150 {
                let sent = client
                    .post(&url)
                    .json(&json!({"data": format!("{worker} {n} {payload}")}))
                    .send()
                    .await
                    .expect("POST");
                assert_eq!(sent.status(), 200);
            }
        });
    }
    while let Some(done) = publishing.join_next().await {
        done.expect("a publisher panicked");
    }
    let last = hub
        .publish("/api/channels/orders/events", json!({"data": "before"}))
        .await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    hub.signal_and_wait("KILL", Duration::from_secs(5))
        .expect("killed");

    // Right after the listening line: the history is still being read back.
    let hub = start(&dir, &limits);
    let url = hub.url("/api/channels/orders/stream");
    let resume = tokio::spawn(async move {
        let mut stream = SseStream::open(&url, &[("Last-Event-ID", &last)]).await;
        let connected = stream.connected().await;
        (connected, stream.next_event().await.data)
    });
    let (status, answer) = hub
        .post("/api/channels/orders/events", json!({"data": "after"}))
        .await;
    assert_eq!(
        status, 200,
        "a publish waits for history, it is not refused: {answer}"
    );
    let (connected, data) = tokio::time::timeout(Duration::from_secs(30), resume)
        .await
        .expect("the stream is served")
        .expect("the stream task");
    assert_eq!(
        connected["resumed"],
        json!(true),
        "it resumed in the loaded history"
    );
    assert_eq!(data, "after");
    let log = hub.log();
    let recovered = log
        .iter()
        .position(|line| line.contains("recovered the durable log"))
        .expect("the log was read back");
    let served = log
        .iter()
        .position(|line| line.contains("serving the connections that arrived while starting"))
        .unwrap_or_else(|| panic!("no connection arrived while history loaded: {log:?}"));
    assert!(recovered < served);
    let _ = std::fs::remove_dir_all(&dir);
}
