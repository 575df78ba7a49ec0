//! Resume without loss: history, Last-Event-ID, idempotent publish, slow consumers, the polling
//! pair and finished streams, on the real binary.

mod common;

use common::{http, SseStream, TestHub, PATIENCE};
use serde_json::{json, Value};
use std::time::Duration;

const QUIET: Duration = Duration::from_millis(300);

async fn publish_n(
    hub: &TestHub,
    channel: &str,
    range: std::ops::RangeInclusive<u32>,
) -> Vec<String> {
    let mut ids = Vec::new();
    for n in range {
        let answer = hub
            .publish(
                &format!("/api/channels/{channel}/events"),
                json!({"data": n}),
            )
            .await;
        ids.push(answer["id"].as_str().expect("id").to_owned());
    }
    ids
}

fn data_numbers(events: &[herald_client::Event]) -> Vec<u32> {
    events
        .iter()
        .map(|e| e.data.parse().expect("numeric data"))
        .collect()
}

#[tokio::test]
async fn last_event_id_header_replays_what_was_missed_then_goes_live() {
    let hub = TestHub::start(&[]);
    let ids = publish_n(&hub, "orders", 1..=5).await;
    let mut stream = SseStream::open(
        &hub.url("/api/channels/orders/stream"),
        &[("Last-Event-ID", &ids[1])],
    )
    .await;
    assert_eq!(stream.connected().await["resumed"], json!(true));
    let mut replayed = Vec::new();
    for _ in 0..3 {
        replayed.push(stream.next_event().await);
    }
    assert_eq!(data_numbers(&replayed), vec![3, 4, 5]);
    assert_eq!(
        replayed.iter().map(|e| e.id.clone()).collect::<Vec<_>>(),
        ids[2..].to_vec()
    );
    publish_n(&hub, "orders", 6..=6).await;
    assert_eq!(stream.next_event().await.data, "6");
    assert!(
        stream.next_event_within(QUIET).await.is_none(),
        "nothing twice"
    );
}

#[tokio::test]
async fn last_event_id_query_parameter_resumes_too() {
    let hub = TestHub::start(&[]);
    let ids = publish_n(&hub, "orders", 1..=3).await;
    let mut stream = hub
        .stream(&format!(
            "/api/channels/orders/stream?lastEventId={}",
            ids[0]
        ))
        .await;
    assert_eq!(stream.connected().await["resumed"], json!(true));
    assert_eq!(stream.next_event().await.data, "2");
    assert_eq!(stream.next_event().await.data, "3");
}

#[tokio::test]
async fn an_unknown_id_starts_live_with_resumed_false() {
    let hub = TestHub::start(&[]);
    publish_n(&hub, "orders", 1..=3).await;
    let mut stream = SseStream::open(
        &hub.url("/api/channels/orders/stream"),
        &[("Last-Event-ID", "nope-17")],
    )
    .await;
    assert_eq!(stream.connected().await["resumed"], json!(false));
    assert!(
        stream.next_event_within(QUIET).await.is_none(),
        "no replay for an unknown id"
    );
    publish_n(&hub, "orders", 4..=4).await;
    assert_eq!(stream.next_event().await.data, "4");
}

#[tokio::test]
async fn an_id_from_an_earlier_run_is_never_taken_for_a_current_one() {
    let first = TestHub::start(&[]);
    let old_ids = publish_n(&first, "orders", 1..=3).await;
    drop(first);
    let hub = TestHub::start(&[]);
    let new_ids = publish_n(&hub, "orders", 1..=3).await;
    assert!(
        old_ids.iter().all(|id| !new_ids.contains(id)),
        "{old_ids:?} vs {new_ids:?}"
    );
    let mut stream = SseStream::open(
        &hub.url("/api/channels/orders/stream"),
        &[("Last-Event-ID", &old_ids[0])],
    )
    .await;
    assert_eq!(stream.connected().await["resumed"], json!(false));
    assert!(stream.next_event_within(QUIET).await.is_none());
}

#[tokio::test]
async fn an_expired_id_is_unknown() {
    let hub = TestHub::start(&["--history-max-events", "3"]);
    let ids = publish_n(&hub, "orders", 1..=5).await;
    let mut stream = SseStream::open(
        &hub.url("/api/channels/orders/stream"),
        &[("Last-Event-ID", &ids[0])],
    )
    .await;
    assert_eq!(stream.connected().await["resumed"], json!(false));
    let mut stream = SseStream::open(
        &hub.url("/api/channels/orders/stream"),
        &[("Last-Event-ID", &ids[2])],
    )
    .await;
    assert_eq!(stream.connected().await["resumed"], json!(true));
    assert_eq!(
        data_numbers(&[stream.next_event().await, stream.next_event().await]),
        vec![4, 5]
    );
}

#[tokio::test]
async fn publishing_an_id_again_is_idempotent() {
    let hub = TestHub::start(&[]);
    let mut stream = hub.stream("/api/channels/orders/stream").await;
    stream.connected().await;
    let first = hub
        .publish(
            "/api/channels/orders/events",
            json!({"data": 1, "id": "order-1"}),
        )
        .await;
    assert_eq!(first, json!({"id": "order-1", "recipients": 1}));
    let again = hub
        .publish(
            "/api/channels/orders/events",
            json!({"data": 2, "id": "order-1"}),
        )
        .await;
    assert_eq!(
        again,
        json!({"id": "order-1", "recipients": 1, "duplicate": true})
    );
    assert_eq!(stream.next_event().await.data, "1");
    assert!(
        stream.next_event_within(QUIET).await.is_none(),
        "the retry delivered nothing"
    );
    assert_eq!(hub.stats().await["eventsPublished"], 1);
}

#[tokio::test]
async fn a_multi_channel_stream_resumes_on_all_its_channels_in_order() {
    let hub = TestHub::start(&[]);
    let start = hub
        .publish("/api/channels/a/events", json!({"data": 0}))
        .await;
    hub.publish("/api/channels/a/events", json!({"data": 1}))
        .await;
    hub.publish("/api/channels/other/events", json!({"data": 99}))
        .await;
    hub.publish("/api/channels/b/events", json!({"data": 2}))
        .await;
    hub.publish("/api/events", json!({"channels": ["a", "b"], "data": 3}))
        .await;
    hub.publish("/api/broadcast", json!({"data": 4})).await;
    let last_id = start["id"].as_str().expect("id");
    let mut stream = SseStream::open(
        &hub.url("/api/stream?channel=a&channel=b"),
        &[("Last-Event-ID", last_id)],
    )
    .await;
    assert_eq!(stream.connected().await["resumed"], json!(true));
    let events = [
        stream.next_event().await,
        stream.next_event().await,
        stream.next_event().await,
        stream.next_event().await,
    ];
    assert_eq!(data_numbers(&events), vec![1, 2, 3, 4]);
    assert!(stream.next_event_within(QUIET).await.is_none());
}

#[tokio::test]
async fn events_sent_to_a_client_while_it_was_away_are_replayed_when_it_returns() {
    let hub = TestHub::start(&[]);
    let mut stream = hub.stream("/api/channels/room/stream?clientId=tab-1").await;
    assert_eq!(stream.connected().await["clientId"], "tab-1");
    let seen = hub
        .publish("/api/clients/tab-1/events", json!({"data": "before"}))
        .await;
    assert_eq!(stream.next_event().await.data, "before");
    drop(stream);
    common::eventually("the client is gone", || async {
        hub.stats().await["connections"] == 0
    })
    .await;
    let away = hub
        .publish("/api/clients/tab-1/events", json!({"data": "while away"}))
        .await;
    assert_eq!(away["recipients"], 0, "queued to nobody, kept in history");
    let seen_id = seen["id"].as_str().expect("id");
    let mut back = SseStream::open(
        &hub.url("/api/channels/room/stream?clientId=tab-1"),
        &[("Last-Event-ID", seen_id)],
    )
    .await;
    assert_eq!(back.connected().await["resumed"], json!(true));
    assert_eq!(back.next_event().await.data, "while away");
}

#[tokio::test]
async fn a_newer_connection_with_the_same_client_id_replaces_the_older() {
    let hub = TestHub::start(&[]);
    let mut old = hub.stream("/api/channels/room/stream?clientId=tab-2").await;
    old.connected().await;
    let mut new = hub.stream("/api/channels/room/stream?clientId=tab-2").await;
    new.connected().await;
    old.events_until_end().await;
    assert!(old
        .raw_text()
        .contains("another connection took this client id"));
    let answer = hub
        .publish("/api/clients/tab-2/events", json!({"data": "x"}))
        .await;
    assert_eq!(answer["recipients"], 1);
    assert_eq!(new.next_event().await.data, "x");
}

/// Reconnects over and over while a publisher runs flat out; what the client ends up with is
/// exactly what was published, once each, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resuming_while_events_are_published_loses_and_repeats_nothing() {
    const EVENTS: u32 = 3000;
    let hub = std::sync::Arc::new(TestHub::start(&[]));
    let mut stream = hub.stream("/api/channels/race/stream").await;
    stream.connected().await;
    let publisher = {
        let hub = hub.clone();
        tokio::spawn(async move {
            let client = http();
            for n in 1..=EVENTS {
                let response = client
                    .post(hub.url("/api/channels/race/events"))
                    .json(&json!({"data": n}))
                    .send()
                    .await
                    .expect("publish");
                assert_eq!(response.status(), 200);
            }
        })
    };
    let mut received: Vec<u32> = Vec::new();
    let mut last_id = String::new();
    let mut reconnects = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while received.last() != Some(&EVENTS) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "received {} of {EVENTS}",
            received.len()
        );
        // Read a few events, then drop the connection and resume from the last id.
        for _ in 0..(7 + reconnects % 13) {
            match stream.next_event_within(Duration::from_secs(5)).await {
                Some(event) => {
                    received.push(event.data.parse().expect("number"));
                    last_id = event.id;
                }
                None => break,
            }
            if received.last() == Some(&EVENTS) {
                break;
            }
        }
        if received.last() == Some(&EVENTS) {
            break;
        }
        reconnects += 1;
        stream = SseStream::open(
            &hub.url("/api/channels/race/stream"),
            &[("Last-Event-ID", &last_id)],
        )
        .await;
        let connected = stream.connected().await;
        assert_eq!(
            connected["resumed"],
            json!(!last_id.is_empty()),
            "{connected}"
        );
    }
    publisher.await.expect("publisher finished");
    let expected: Vec<u32> = (1..=EVENTS).collect();
    assert_eq!(
        received.len(),
        expected.len(),
        "after {reconnects} reconnects"
    );
    assert_eq!(received, expected, "after {reconnects} reconnects");
    assert!(
        reconnects > 20,
        "the race was exercised: {reconnects} reconnects"
    );
}

/// A client that stops reading is cut when its queue overflows, told why, and gets everything
/// back on resume; a fast client on the same channel is not slowed meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_client_is_cut_and_resumes_everything_while_a_fast_one_keeps_up() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const EVENTS: u32 = 10_000;
    let hub = TestHub::start(&["--queue-capacity", "256"]);
    // The stalled client: a raw socket with a tiny receive buffer that stops reading.
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .set_recv_buffer_size(4096)
        .expect("small receive buffer");
    let mut stalled = socket
        .connect(([127, 0, 0, 1], hub.port).into())
        .await
        .expect("connect");
    let request = format!(
        "GET /api/channels/flow/stream HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n\r\n",
        hub.port
    );
    stalled
        .write_all(request.as_bytes())
        .await
        .expect("request");
    let mut fast = hub.stream("/api/channels/flow/stream").await;
    fast.connected().await;
    common::eventually("both subscribed", || async {
        hub.stats().await["connections"] == 2
    })
    .await;

    let payload = "x".repeat(512);
    let publish_started = std::time::Instant::now();
    let publisher = {
        let url = hub.url("/api/channels/flow/events");
        tokio::spawn(async move {
            let client = http();
            for n in 1..=EVENTS {
                let response = client
                    .post(&url)
                    .json(&json!({"data": format!("{n} {payload}")}))
                    .send()
                    .await
                    .expect("publish");
                assert_eq!(response.status(), 200);
            }
        })
    };
    let mut fast_seen = 0u32;
    while fast_seen < EVENTS {
        let event = fast.next_event().await;
        fast_seen += 1;
        let n: u32 = event
            .data
            .split(' ')
            .next()
            .and_then(|n| n.parse().ok())
            .expect("numbered");
        assert_eq!(n, fast_seen, "the fast client gets every event in order");
    }
    let fast_elapsed = publish_started.elapsed();
    publisher.await.expect("publisher finished");

    // Now read what the stalled client's socket holds: some events, then the reason, then the end.
    let mut raw = Vec::new();
    let read_all = async {
        let mut buf = vec![0u8; 65536];
        loop {
            let n = stalled.read(&mut buf).await.expect("read");
            if n == 0 {
                break;
            }
            raw.extend_from_slice(&buf[..n]);
            if raw.ends_with(b"\r\n0\r\n\r\n") {
                break; // the last chunk: the response (the stream) is over
            }
        }
    };
    tokio::time::timeout(PATIENCE, read_all)
        .await
        .expect("the stalled stream was ended by the hub");
    let text = String::from_utf8_lossy(&raw);
    assert!(
        text.contains(": closed: slow consumer"),
        "the client is told why"
    );
    let mut parser = herald_client::Parser::new();
    let mut items = Vec::new();
    let body_start = text.find("\r\n\r\n").expect("headers end") + 4;
    // The stream's body is delimited by the connection's end, or chunked: follow the head.
    let is_chunked = text[..body_start]
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let body = if is_chunked {
        dechunk(&raw[body_start..])
    } else {
        raw[body_start..].to_vec()
    };
    parser.feed(&body, &mut items).expect("parse");
    let mut numbers = Vec::new();
    let mut last_id = String::new();
    for item in items {
        if let herald_client::Item::Event(event) = item {
            if event.event == "message" {
                numbers.push(
                    event
                        .data
                        .split(' ')
                        .next()
                        .and_then(|n| n.parse::<u32>().ok())
                        .expect("numbered"),
                );
                last_id = event.id;
            }
        }
    }
    assert!(
        (numbers.len() as u32) < EVENTS,
        "the stalled client was cut before the end"
    );
    let mut resumed = SseStream::open(
        &hub.url("/api/channels/flow/stream"),
        &[("Last-Event-ID", &last_id)],
    )
    .await;
    assert_eq!(
        resumed.connected().await["resumed"],
        json!(!last_id.is_empty())
    );
    while numbers.len() < EVENTS as usize {
        let event = resumed.next_event().await;
        numbers.push(
            event
                .data
                .split(' ')
                .next()
                .and_then(|n| n.parse().ok())
                .expect("numbered"),
        );
    }
    assert_eq!(
        numbers,
        (1..=EVENTS).collect::<Vec<_>>(),
        "every event exactly once, in order"
    );
    eprintln!("fast client received {EVENTS} events in {fast_elapsed:?}");
}

/// Undoes HTTP/1.1 chunked transfer coding.
fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(line_end) = body.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size = usize::from_str_radix(
            std::str::from_utf8(&body[..line_end])
                .expect("hex size")
                .trim(),
            16,
        )
        .expect("chunk size");
        body = &body[line_end + 2..];
        if size == 0 || body.len() < size {
            out.extend_from_slice(&body[..size.min(body.len())]);
            return out;
        }
        out.extend_from_slice(&body[..size]);
        body = &body[(size + 2).min(body.len())..];
    }
}

#[tokio::test]
async fn polling_pages_through_history_with_a_cursor() {
    let hub = TestHub::start(&[]);
    let ids = publish_n(&hub, "jobs", 1..=5).await;
    hub.publish("/api/channels/elsewhere/events", json!({"data": 100}))
        .await;
    hub.publish(
        "/api/channels/jobs/events",
        json!({"event": "named", "data": "text"}),
    )
    .await;

    let page = hub.get_json("/api/channels/jobs/events?limit=2").await;
    assert_eq!(
        page["events"],
        json!([
            {"id": ids[0], "channel": "jobs", "event": null, "data": 1},
            {"id": ids[1], "channel": "jobs", "event": null, "data": 2},
        ])
    );
    assert_eq!(page["reset"], json!(false));
    assert_eq!(page["hasMore"], json!(true));
    let cursor = page["cursor"].as_str().expect("cursor").to_owned();
    assert_eq!(cursor, ids[1]);

    let page = hub
        .get_json(&format!(
            "/api/channels/jobs/events?after={cursor}&limit=10"
        ))
        .await;
    let data: Vec<Value> = page["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["data"].clone())
        .collect();
    assert_eq!(data, vec![json!(3), json!(4), json!(5), json!("text")]);
    assert_eq!(page["events"][3]["event"], "named");
    assert_eq!(page["hasMore"], json!(false));
    let cursor = page["cursor"].as_str().expect("cursor").to_owned();

    let empty = hub
        .get_json(&format!("/api/channels/jobs/events?after={cursor}"))
        .await;
    assert_eq!(empty["events"], json!([]));
    assert_eq!(
        empty["cursor"],
        cursor.as_str(),
        "an empty page keeps the cursor"
    );
}

#[tokio::test]
async fn polling_several_channels_and_an_expired_cursor_sets_reset() {
    let hub = TestHub::start(&["--history-max-events", "4"]);
    let a = publish_n(&hub, "a", 1..=2).await;
    publish_n(&hub, "b", 3..=3).await;
    publish_n(&hub, "c", 4..=4).await;
    publish_n(&hub, "a", 5..=5).await;
    let page = hub.get_json("/api/events?channel=a&channel=b").await;
    let data: Vec<Value> = page["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["data"].clone())
        .collect();
    assert_eq!(
        data,
        vec![json!(2), json!(3), json!(5)],
        "oldest first, only a and b, within history"
    );
    assert_eq!(page["events"][1]["channel"], "b");
    // The event `a[0]` names left history, but every event after it is still there: the page
    // follows on exactly.
    let just_left = hub
        .get_json(&format!("/api/events?channel=a&channel=b&after={}", a[0]))
        .await;
    assert_eq!(
        just_left["reset"],
        json!(false),
        "nothing after the cursor left"
    );
    assert_eq!(just_left["events"].as_array().expect("events").len(), 3);
    publish_n(&hub, "c", 6..=7).await;
    let expired = hub
        .get_json(&format!("/api/events?channel=a&channel=b&after={}", a[0]))
        .await;
    assert_eq!(
        expired["reset"],
        json!(true),
        "events after the cursor left history"
    );
    assert_eq!(expired["events"].as_array().expect("events").len(), 1);
    let response = http()
        .get(hub.url("/api/events?channel=a&limit=0"))
        .send()
        .await
        .expect("GET");
    assert_eq!(response.status(), 400);
    let response = http()
        .get(hub.url("/api/events"))
        .send()
        .await
        .expect("GET");
    assert_eq!(response.status(), 400);
}

#[tokio::test]
async fn closing_a_channel_sends_the_final_event_ends_single_streams_and_answers_204_after() {
    let hub = TestHub::start(&[]);
    let mut single = hub.stream("/api/channels/job-1/stream").await;
    single.connected().await;
    let mut multi = hub.stream("/api/stream?channel=job-1&channel=other").await;
    multi.connected().await;
    let progress = hub
        .publish(
            "/api/channels/job-1/events",
            json!({"event": "progress", "data": {"percent": 50}}),
        )
        .await;
    let (status, _) = hub
        .post(
            "/api/channels/job-1/close",
            json!({"event": "done", "data": {"ok": true}}),
        )
        .await;
    assert_eq!(status, 200);

    let events = single.events_until_end().await;
    assert_eq!(
        events.iter().map(|e| e.event.as_str()).collect::<Vec<_>>(),
        vec!["progress", "done"]
    );
    assert!(single.raw_text().ends_with(": closed: channel closed\n\n"));

    assert_eq!(multi.next_event().await.event, "progress");
    assert_eq!(multi.next_event().await.event, "done");
    hub.publish(
        "/api/channels/other/events",
        json!({"event": "still-here", "data": 1}),
    )
    .await;
    assert_eq!(
        multi.next_event().await.event,
        "still-here",
        "a multi-channel stream only leaves the channel"
    );
    let info = hub.get_json("/api/clients").await;
    assert_eq!(info["clients"][0]["channels"], json!(["other"]));

    let response = http()
        .get(hub.url("/api/channels/job-1/stream"))
        .send()
        .await
        .expect("GET");
    assert_eq!(
        response.status(),
        204,
        "a finished channel tells EventSource to stop"
    );

    // A subscriber that dropped before the end and resumes still gets the rest, then the end.
    let progress_id = progress["id"].as_str().expect("id");
    let mut late = SseStream::open(
        &hub.url("/api/channels/job-1/stream"),
        &[("Last-Event-ID", progress_id)],
    )
    .await;
    assert_eq!(late.connected().await["resumed"], json!(true));
    let events = late.events_until_end().await;
    assert_eq!(
        events.iter().map(|e| e.event.as_str()).collect::<Vec<_>>(),
        vec!["done"]
    );
}

#[tokio::test]
async fn closing_without_a_final_event_just_ends_the_streams() {
    let hub = TestHub::start(&[]);
    let mut stream = hub.stream("/api/channels/job-2/stream").await;
    stream.connected().await;
    let response = http()
        .post(hub.url("/api/channels/job-2/close"))
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status(), 200);
    assert!(stream.events_until_end().await.is_empty());
    let page = hub.get_json("/api/channels/job-2/events").await;
    assert_eq!(page["events"][0]["closed"], json!(true));
}
