//! The stream routes over raw sockets, on the real binary: the one `Last-Event-ID` rule (an id
//! no event can have starts the stream live, never an error a browser gives up on), and a
//! publisher's non-ASCII id resuming exactly.

mod common;

use common::TestHub;
use serde_json::{json, Value};
use std::time::Duration;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// Opens `path` as a connection's first request with the raw `Last-Event-ID` bytes (if any) and
/// returns its status line and every byte read up to the end of the `connected` event.
async fn open_raw(hub: &TestHub, path: &str, last_event_id: Option<&[u8]>) -> (String, Vec<u8>) {
    let mut socket = TcpStream::connect(("127.0.0.1", hub.port))
        .await
        .expect("connects");
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: test\r\n").into_bytes();
    if let Some(id) = last_event_id {
        request.extend_from_slice(b"Last-Event-ID: ");
        request.extend_from_slice(id);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"\r\n");
    socket.write_all(&request).await.expect("sent");
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    // Read until the `connected` event is complete.
    let read = async {
        loop {
            let n = socket.read(&mut buf).await.expect("reads");
            answer.extend_from_slice(&buf[..n]);
            if n == 0 || answer.windows(16).any(|w| w == b"event: connected") {
                let text = String::from_utf8_lossy(&answer);
                if n == 0 || text.contains("}\n\n") {
                    break;
                }
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("the stream opens in time");
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text.lines().next().unwrap_or_default().to_owned();
    (status, answer)
}

fn connected_data(answer: &[u8]) -> Value {
    let text = String::from_utf8_lossy(answer);
    let line = text
        .split("event: connected\n")
        .nth(1)
        .and_then(|rest| rest.lines().next())
        .expect("a connected event");
    serde_json::from_str(line.trim_start_matches("data: ")).expect("JSON data")
}

#[tokio::test]
async fn an_id_no_event_can_have_opens_the_stream_live_instead_of_an_error() {
    let hub = TestHub::start(&[]);
    hub.publish("/api/channels/orders/events", json!({"data": 1}))
        .await;
    let too_long = "x".repeat(257);
    let unusable: [&[u8]; 3] = [&[0xE9, 0x80, 0xFF], b"  spaced out  ", too_long.as_bytes()];
    for id in unusable {
        let (status, answer) = open_raw(&hub, "/api/channels/orders/stream", Some(id)).await;
        assert_eq!(status, "HTTP/1.1 200 OK", "{}", String::from_utf8_lossy(id));
        assert_eq!(connected_data(&answer)["resumed"], json!(false));
    }
    let query = format!("/api/stream?channel=orders&lastEventId={too_long}");
    let (status, answer) = open_raw(&hub, &query, None).await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(connected_data(&answer)["resumed"], json!(false));
}

#[tokio::test]
async fn a_non_ascii_last_event_id_opens_the_stream_unresumed_never_refused() {
    let hub = TestHub::start(&[]);
    // Publisher ids are printable ASCII (a browser sends them back unchanged), so no event has
    // this id: the stream opens with `resumed: false`, and a browser keeps reconnecting.
    let (status, _) = hub
        .post(
            "/api/channels/orders/events",
            json!({"data": 1, "id": "commande-\u{e9}-1"}),
        )
        .await;
    assert_eq!(status, 400);
    let (status, answer) = open_raw(
        &hub,
        "/api/channels/orders/stream",
        Some("commande-\u{e9}-1".as_bytes()),
    )
    .await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(connected_data(&answer)["resumed"], json!(false));
}
