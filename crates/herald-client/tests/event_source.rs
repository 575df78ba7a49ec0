//! The reconnecting client against scripted HTTP/1.1 servers on 127.0.0.1:0.
//!
//! Each test server is a raw `TcpListener` that answers its n-th connection with the n-th
//! scripted reply, byte for byte and write by write, and records every request head it
//! receives. Delays are tens to hundreds of milliseconds, so every test ends well within
//! two seconds.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use herald_client::{Backoff, Error, EventSource, EventSourceBuilder, Jitter, Update};
use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// Longest wait for any single update before a test fails instead of hanging.
const UPDATE_TIMEOUT_MS: u64 = 2000;

/// What the test server does with one connection.
#[derive(Clone)]
struct Reply {
    /// Written one after another, each with its own `write` call.
    writes: Vec<Vec<u8>>,
    /// Pause between two writes, so that each tends to arrive as its own chunk.
    gap: Duration,
    /// What happens once everything is written.
    then: After,
}

#[derive(Clone, Copy)]
enum After {
    /// Close the connection: the end of the body.
    Close,
    /// Keep the connection open until the client closes it.
    Hold,
}

impl Reply {
    /// A 200 `text/event-stream` answer with `body` in one write.
    fn sse(body: &str, then: After) -> Self {
        Self::sse_writes(vec![body.as_bytes().to_vec()], Duration::ZERO, then)
    }

    /// A 200 `text/event-stream` answer whose body goes out in exactly these writes.
    fn sse_writes(body_writes: Vec<Vec<u8>>, gap: Duration, then: After) -> Self {
        let head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\nconnection: close\r\n\r\n".to_vec();
        let mut writes = vec![head];
        writes.extend(body_writes);
        Self { writes, gap, then }
    }

    /// A complete non-streaming answer.
    fn status(status_line: &str, extra_headers: &str, body: &str) -> Self {
        let response = format!(
            "HTTP/1.1 {status_line}\r\n{extra_headers}content-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        Self {
            writes: vec![response.into_bytes()],
            gap: Duration::ZERO,
            then: After::Close,
        }
    }

    /// Reads the request and never answers, until the client goes away.
    fn silent() -> Self {
        Self {
            writes: Vec::new(),
            gap: Duration::ZERO,
            then: After::Hold,
        }
    }
}

/// One request head as the server received it.
#[derive(Debug)]
struct ReceivedRequest {
    /// The request line, such as `GET /stream HTTP/1.1`.
    request_line: String,
    /// Header names in lower case, with their values.
    headers: Vec<(String, String)>,
    /// When the head was complete.
    at: Instant,
}

impl ReceivedRequest {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(header, _)| header == name)
            .map(|(_, value)| value.as_str())
    }
}

struct TestServer {
    /// Base URL, `http://127.0.0.1:PORT`.
    url: String,
    /// Every request head, in arrival order.
    requests_rx: mpsc::UnboundedReceiver<ReceivedRequest>,
    /// One message each time a held connection sees the client close it.
    disconnects_rx: mpsc::UnboundedReceiver<()>,
}

impl TestServer {
    async fn next_request(&mut self) -> ReceivedRequest {
        tokio::time::timeout(
            Duration::from_millis(UPDATE_TIMEOUT_MS),
            self.requests_rx.recv(),
        )
        .await
        .expect("a request should arrive in time")
        .expect("the server task outlives the test")
    }

    /// Asserts that no further request arrives within `window`.
    async fn assert_no_request_within(&mut self, window: Duration) {
        if let Ok(Some(request)) = tokio::time::timeout(window, self.requests_rx.recv()).await {
            panic!("unexpected request: {request:?}");
        }
    }
}

/// Starts a server answering connection n with `replies[n]` (the last reply repeats).
async fn start_server(replies: Vec<Reply>) -> TestServer {
    assert!(!replies.is_empty(), "a server needs at least one reply");
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binding port 0 on loopback works");
    let url = format!("http://{}", listener.local_addr().expect("bound"));
    let (requests_tx, requests_rx) = mpsc::unbounded_channel();
    let (disconnects_tx, disconnects_rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        for connection_index in 0.. {
            let Ok((socket, _)) = listener.accept().await else {
                return;
            };
            let reply = replies[connection_index.min(replies.len() - 1)].clone();
            let requests_tx = requests_tx.clone();
            let disconnects_tx = disconnects_tx.clone();
            tokio::spawn(serve_connection(socket, reply, requests_tx, disconnects_tx));
        }
    });
    TestServer {
        url,
        requests_rx,
        disconnects_rx,
    }
}

async fn serve_connection(
    mut socket: TcpStream,
    reply: Reply,
    requests_tx: mpsc::UnboundedSender<ReceivedRequest>,
    disconnects_tx: mpsc::UnboundedSender<()>,
) {
    socket
        .set_nodelay(true)
        .expect("loopback sockets take nodelay");
    let Some(request) = read_request_head(&mut socket).await else {
        return;
    };
    let _ = requests_tx.send(request);
    for (index, bytes) in reply.writes.iter().enumerate() {
        if index > 0 && !reply.gap.is_zero() {
            tokio::time::sleep(reply.gap).await;
        }
        if socket.write_all(bytes).await.is_err() {
            return;
        }
        let _ = socket.flush().await;
    }
    match reply.then {
        After::Close => {
            let _ = socket.shutdown().await;
        }
        After::Hold => {
            let mut scratch = [0u8; 512];
            loop {
                match socket.read(&mut scratch).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
            let _ = disconnects_tx.send(());
        }
    }
}

/// Reads up to the blank line that ends a request head (GET requests have no body).
async fn read_request_head(socket: &mut TcpStream) -> Option<ReceivedRequest> {
    let mut head = Vec::new();
    let mut buffer = [0u8; 1024];
    while !head.windows(4).any(|window| window == b"\r\n\r\n") {
        let read = socket.read(&mut buffer).await.ok()?;
        if read == 0 {
            return None;
        }
        head.extend_from_slice(&buffer[..read]);
    }
    let at = Instant::now();
    let text = String::from_utf8_lossy(&head).into_owned();
    let mut lines = text.split("\r\n");
    let request_line = lines.next()?.to_owned();
    let headers = lines
        .take_while(|line| !line.is_empty())
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    Some(ReceivedRequest {
        request_line,
        headers,
        at,
    })
}

/// A client for `server` with short, jitter-free delays.
fn client(server: &TestServer) -> EventSourceBuilder {
    EventSource::builder(format!("{}/stream", server.url))
        .retry(Duration::from_millis(20))
        .backoff(Backoff::new().with_jitter(Jitter::None))
}

async fn next_update(updates: &mut EventSource) -> Update {
    tokio::time::timeout(Duration::from_millis(UPDATE_TIMEOUT_MS), updates.next())
        .await
        .expect("an update should arrive in time")
        .expect("the client should not have ended")
}

/// Takes the next update, failing unless it is an event, and returns `(id, type, data)`.
async fn next_event(updates: &mut EventSource) -> (String, String, String) {
    match next_update(updates).await {
        Update::Event(event) => (event.id, event.event, event.data),
        other => panic!("expected an event, got {other:?}"),
    }
}

async fn expect_connecting_then_open(updates: &mut EventSource) {
    assert!(matches!(next_update(updates).await, Update::Connecting));
    let update = next_update(updates).await;
    assert!(
        matches!(update, Update::Open),
        "expected open, got {update:?}"
    );
}

/// Takes the next update, failing unless it is `Retrying`.
async fn next_retrying(updates: &mut EventSource) -> (Duration, u32, Error) {
    match next_update(updates).await {
        Update::Retrying {
            delay,
            attempt,
            reason,
        } => (delay, attempt, reason),
        other => panic!("expected retrying, got {other:?}"),
    }
}

/// Takes the next update, failing unless it is `Closed`, and checks the stream then ends.
async fn next_closed(updates: &mut EventSource) -> Error {
    let reason = match next_update(updates).await {
        Update::Closed { reason } => reason,
        other => panic!("expected closed, got {other:?}"),
    };
    assert!(updates.next().await.is_none(), "nothing follows closed");
    reason
}

fn owned(id: &str, event: &str, data: &str) -> (String, String, String) {
    (id.to_owned(), event.to_owned(), data.to_owned())
}

#[tokio::test]
async fn no_content_stops_the_client() {
    let mut server = start_server(vec![Reply::status("204 No Content", "", "")]).await;
    let mut updates = client(&server).build().expect("valid config");

    assert!(matches!(
        next_update(&mut updates).await,
        Update::Connecting
    ));
    let reason = next_closed(&mut updates).await;
    assert!(matches!(reason, Error::NoContent), "{reason:?}");
    assert!(!reason.is_retryable());

    server.next_request().await;
    server
        .assert_no_request_within(Duration::from_millis(100))
        .await;
}

#[tokio::test]
async fn server_error_then_success_retries_and_receives_events() {
    let mut server = start_server(vec![
        Reply::status(
            "500 Internal Server Error",
            "content-type: application/json\r\n",
            r#"{"error":{"code":"boom","message":"try later"}}"#,
        ),
        Reply::sse(
            "retry: 3000\nevent: connected\ndata: {}\n\ndata: hi\n\n",
            After::Hold,
        ),
    ])
    .await;
    let mut updates = client(&server).build().expect("valid config");

    assert!(matches!(
        next_update(&mut updates).await,
        Update::Connecting
    ));
    let (delay, attempt, reason) = next_retrying(&mut updates).await;
    assert_eq!((delay, attempt), (Duration::from_millis(20), 1));
    match reason {
        Error::Status { status, body, .. } => {
            assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
            assert!(body.contains("boom"), "{body}");
        }
        other => panic!("expected a status error, got {other:?}"),
    }
    expect_connecting_then_open(&mut updates).await;
    assert_eq!(next_event(&mut updates).await, owned("", "connected", "{}"));
    assert_eq!(next_event(&mut updates).await, owned("", "message", "hi"));

    server.next_request().await;
    server.next_request().await;
}

#[tokio::test]
async fn retry_field_sets_the_reconnect_delay() {
    let mut server = start_server(vec![
        Reply::sse("retry: 300\ndata: a\n\n", After::Close),
        Reply::sse("data: b\n\n", After::Hold),
    ])
    .await;
    let mut updates = client(&server).build().expect("valid config");

    expect_connecting_then_open(&mut updates).await;
    assert_eq!(next_event(&mut updates).await, owned("", "message", "a"));
    let (delay, attempt, reason) = next_retrying(&mut updates).await;
    assert_eq!((delay, attempt), (Duration::from_millis(300), 1));
    assert!(matches!(reason, Error::Eof), "{reason:?}");
    expect_connecting_then_open(&mut updates).await;
    assert_eq!(next_event(&mut updates).await, owned("", "message", "b"));

    let first = server.next_request().await;
    let second = server.next_request().await;
    let waited = second.at - first.at;
    assert!(
        waited >= Duration::from_millis(300),
        "reconnected after {waited:?}"
    );
    assert!(
        waited < Duration::from_millis(900),
        "reconnected after {waited:?}"
    );
}

#[tokio::test]
async fn one_byte_writes_and_split_line_ends_parse_the_same() {
    let body = "\u{FEFF}id: 1\r\ndata: é世\r\n\r\ndata: two\rdata: lines\r\revent: x\ndata: 🎉\n\n";
    let one_byte_writes = body.bytes().map(|byte| vec![byte]).collect();
    let mut server = start_server(vec![Reply::sse_writes(
        one_byte_writes,
        Duration::from_millis(1),
        After::Hold,
    )])
    .await;
    let mut updates = client(&server).build().expect("valid config");

    expect_connecting_then_open(&mut updates).await;
    assert_eq!(next_event(&mut updates).await, owned("1", "message", "é世"));
    assert_eq!(
        next_event(&mut updates).await,
        owned("1", "message", "two\nlines")
    );
    assert_eq!(next_event(&mut updates).await, owned("1", "x", "🎉"));
    server.next_request().await;
}

#[tokio::test]
async fn crlf_split_across_writes_is_one_line_end() {
    let writes = [
        &b"data: a\r"[..],
        b"\n",
        b"\r",
        b"\ndata: b\xE4",
        b"\xB8\x96\r",
        b"\n\r",
        b"\n",
    ]
    .iter()
    .map(|write| write.to_vec())
    .collect();
    let mut server = start_server(vec![Reply::sse_writes(
        writes,
        Duration::from_millis(10),
        After::Hold,
    )])
    .await;
    let mut updates = client(&server).build().expect("valid config");

    expect_connecting_then_open(&mut updates).await;
    assert_eq!(next_event(&mut updates).await, owned("", "message", "a"));
    assert_eq!(next_event(&mut updates).await, owned("", "message", "b世"));
    server.next_request().await;
}

#[tokio::test]
async fn wrong_content_type_stops_the_client() {
    let mut server = start_server(vec![Reply::status(
        "200 OK",
        "content-type: text/html; charset=utf-8\r\n",
        "<html></html>",
    )])
    .await;
    let mut updates = client(&server).build().expect("valid config");

    assert!(matches!(
        next_update(&mut updates).await,
        Update::Connecting
    ));
    match next_closed(&mut updates).await {
        Error::ContentType { content_type } => {
            assert_eq!(content_type, "text/html; charset=utf-8");
        }
        other => panic!("expected a content type error, got {other:?}"),
    }
    server.next_request().await;
    server
        .assert_no_request_within(Duration::from_millis(100))
        .await;
}

#[tokio::test]
async fn dropped_stream_reconnects_with_the_last_event_id() {
    let mut server = start_server(vec![
        // The third event never gets its blank line: its id must not count.
        Reply::sse(
            "id: 1\ndata: a\n\nid: 2\ndata: b\n\nid: 3\ndata: cut",
            After::Close,
        ),
        Reply::sse("data: c\n\n", After::Hold),
    ])
    .await;
    let mut updates = client(&server)
        .last_event_id("0")
        .build()
        .expect("valid config");

    expect_connecting_then_open(&mut updates).await;
    assert_eq!(next_event(&mut updates).await, owned("1", "message", "a"));
    assert_eq!(next_event(&mut updates).await, owned("2", "message", "b"));
    let (_, _, reason) = next_retrying(&mut updates).await;
    assert!(matches!(reason, Error::Eof), "{reason:?}");
    expect_connecting_then_open(&mut updates).await;
    assert_eq!(next_event(&mut updates).await, owned("2", "message", "c"));

    let first = server.next_request().await;
    assert_eq!(first.header("last-event-id"), Some("0"));
    let second = server.next_request().await;
    assert_eq!(second.header("last-event-id"), Some("2"));
}

#[tokio::test]
async fn custom_and_protocol_headers_arrive() {
    let mut server = start_server(vec![Reply::sse("", After::Hold)]).await;
    let mut updates =
        EventSource::builder(format!("{}/api/stream?channel=a&channel=b", server.url))
            .header("x-herald-client", "tests")
            .header("Authorization", "Bearer t0ken")
            .build()
            .expect("valid config");

    expect_connecting_then_open(&mut updates).await;
    let request = server.next_request().await;
    assert_eq!(
        request.request_line,
        "GET /api/stream?channel=a&channel=b HTTP/1.1"
    );
    assert_eq!(request.header("accept"), Some("text/event-stream"));
    assert_eq!(request.header("cache-control"), Some("no-cache"));
    assert_eq!(request.header("x-herald-client"), Some("tests"));
    assert_eq!(request.header("authorization"), Some("Bearer t0ken"));
    assert_eq!(request.header("last-event-id"), None);
}

#[tokio::test]
async fn not_found_stops_but_too_many_requests_is_retried_after_retry_after() {
    let mut server = start_server(vec![
        Reply::status("429 Too Many Requests", "retry-after: 5\r\n", ""),
        Reply::status(
            "404 Not Found",
            "content-type: application/json\r\n",
            r#"{"error":{"code":"not_found","message":"no such channel"}}"#,
        ),
    ])
    .await;
    let mut updates = client(&server)
        .backoff(
            Backoff::new()
                .with_jitter(Jitter::None)
                .with_cap(Duration::from_millis(200)),
        )
        .build()
        .expect("valid config");

    assert!(matches!(
        next_update(&mut updates).await,
        Update::Connecting
    ));
    let (delay, attempt, reason) = next_retrying(&mut updates).await;
    // Retry-After asks for 5 s; the cap bounds it to 200 ms.
    assert_eq!((delay, attempt), (Duration::from_millis(200), 1));
    assert!(
        matches!(
            reason,
            Error::Status { status: StatusCode::TOO_MANY_REQUESTS, retry_after: Some(asked), .. }
                if asked == Duration::from_secs(5)
        ),
        "{reason:?}"
    );
    assert!(matches!(
        next_update(&mut updates).await,
        Update::Connecting
    ));
    match next_closed(&mut updates).await {
        Error::Status { status, body, .. } => {
            assert_eq!(status, StatusCode::NOT_FOUND);
            assert!(body.contains("no such channel"), "{body}");
        }
        other => panic!("expected a status error, got {other:?}"),
    }
    server.next_request().await;
    server.next_request().await;
}

#[tokio::test]
async fn retries_stop_after_max_attempts() {
    let mut server = start_server(vec![Reply::status("503 Service Unavailable", "", "")]).await;
    let mut updates = client(&server)
        .backoff(
            Backoff::new()
                .with_jitter(Jitter::None)
                .with_max_attempts(2),
        )
        .build()
        .expect("valid config");

    for expected_attempt in 1..=2 {
        assert!(matches!(
            next_update(&mut updates).await,
            Update::Connecting
        ));
        let (_, attempt, _) = next_retrying(&mut updates).await;
        assert_eq!(attempt, expected_attempt);
    }
    assert!(matches!(
        next_update(&mut updates).await,
        Update::Connecting
    ));
    match next_closed(&mut updates).await {
        Error::RetriesExhausted { attempts, last } => {
            assert_eq!(attempts, 2);
            assert!(matches!(*last, Error::Status { .. }), "{last:?}");
        }
        other => panic!("expected retries exhausted, got {other:?}"),
    }
    for _ in 0..3 {
        server.next_request().await;
    }
    server
        .assert_no_request_within(Duration::from_millis(100))
        .await;
}

#[tokio::test]
async fn backoff_grows_on_failures_and_resets_after_an_open() {
    let error = Reply::status("500 Internal Server Error", "", "");
    let mut server = start_server(vec![
        error.clone(),
        error.clone(),
        Reply::sse("data: a\n\n", After::Close),
        error,
    ])
    .await;
    let mut updates = client(&server).build().expect("valid config");

    let mut delays = Vec::new();
    for _ in 0..2 {
        assert!(matches!(
            next_update(&mut updates).await,
            Update::Connecting
        ));
        let (delay, attempt, _) = next_retrying(&mut updates).await;
        delays.push((delay.as_millis(), attempt));
    }
    expect_connecting_then_open(&mut updates).await;
    next_event(&mut updates).await;
    // The stream ends: the first failure since the open.
    let (delay, attempt, reason) = next_retrying(&mut updates).await;
    assert!(matches!(reason, Error::Eof), "{reason:?}");
    delays.push((delay.as_millis(), attempt));
    assert!(matches!(
        next_update(&mut updates).await,
        Update::Connecting
    ));
    let (delay, attempt, _) = next_retrying(&mut updates).await;
    delays.push((delay.as_millis(), attempt));

    assert_eq!(delays, [(20, 1), (40, 2), (20, 1), (40, 2)]);
    for _ in 0..4 {
        server.next_request().await;
    }
}

#[tokio::test]
async fn connection_refused_is_retried() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/stream", listener.local_addr().expect("bound"));
    drop(listener);
    let mut updates = EventSource::builder(url)
        .retry(Duration::from_millis(10))
        .backoff(
            Backoff::new()
                .with_jitter(Jitter::None)
                .with_max_attempts(1),
        )
        .build()
        .expect("valid config");

    assert!(matches!(
        next_update(&mut updates).await,
        Update::Connecting
    ));
    let (_, _, reason) = next_retrying(&mut updates).await;
    assert!(matches!(reason, Error::Request(_)), "{reason:?}");
    assert!(reason.is_retryable());
    assert!(matches!(
        next_update(&mut updates).await,
        Update::Connecting
    ));
    let reason = next_closed(&mut updates).await;
    assert!(matches!(
        reason,
        Error::RetriesExhausted { attempts: 1, .. }
    ));
}

#[tokio::test]
async fn idle_timeout_reconnects_a_silent_stream() {
    let mut server = start_server(vec![
        Reply::sse("data: a\n\n", After::Hold),
        Reply::sse("data: b\n\n", After::Hold),
    ])
    .await;
    let mut updates = client(&server)
        .idle_timeout(Duration::from_millis(150))
        .build()
        .expect("valid config");

    expect_connecting_then_open(&mut updates).await;
    assert_eq!(next_event(&mut updates).await, owned("", "message", "a"));
    let (_, _, reason) = next_retrying(&mut updates).await;
    assert!(matches!(reason, Error::IdleTimeout { .. }), "{reason:?}");
    expect_connecting_then_open(&mut updates).await;
    assert_eq!(next_event(&mut updates).await, owned("", "message", "b"));

    server.next_request().await;
    server.next_request().await;
    // The silent connection was closed by the client when it gave up on it.
    tokio::time::timeout(Duration::from_secs(1), server.disconnects_rx.recv())
        .await
        .expect("the first connection is closed");
}

#[tokio::test]
async fn comments_are_reported_when_asked() {
    let mut server = start_server(vec![Reply::sse(": ping\ndata: a\n\n", After::Hold)]).await;
    let mut updates = client(&server)
        .report_comments(true)
        .build()
        .expect("valid config");

    expect_connecting_then_open(&mut updates).await;
    match next_update(&mut updates).await {
        Update::Comment(text) => assert_eq!(text, "ping"),
        other => panic!("expected a comment, got {other:?}"),
    }
    assert_eq!(next_event(&mut updates).await, owned("", "message", "a"));
    server.next_request().await;
}

#[tokio::test]
async fn an_oversized_event_closes_the_client() {
    let big = format!("data: {}\n\n", "x".repeat(200));
    let mut server = start_server(vec![Reply::sse(
        &format!("data: small\n\n{big}"),
        After::Hold,
    )])
    .await;
    let mut updates = client(&server)
        .max_event_bytes(64)
        .build()
        .expect("valid config");

    expect_connecting_then_open(&mut updates).await;
    assert_eq!(
        next_event(&mut updates).await,
        owned("", "message", "small")
    );
    let reason = next_closed(&mut updates).await;
    assert!(matches!(reason, Error::EventTooLarge(_)), "{reason:?}");
    server.next_request().await;
}

#[tokio::test]
async fn dropping_the_client_closes_an_open_stream() {
    let mut server = start_server(vec![Reply::sse("data: a\n\n", After::Hold)]).await;
    let mut updates = client(&server).build().expect("valid config");

    expect_connecting_then_open(&mut updates).await;
    next_event(&mut updates).await;
    drop(updates);
    tokio::time::timeout(Duration::from_secs(1), server.disconnects_rx.recv())
        .await
        .expect("dropping the client closes its connection");
}

#[tokio::test]
async fn dropping_the_client_cancels_a_pending_request() {
    let mut server = start_server(vec![Reply::silent()]).await;
    let mut updates = client(&server).build().expect("valid config");

    assert!(matches!(
        next_update(&mut updates).await,
        Update::Connecting
    ));
    // The server reads the request and never answers: the client is waiting on it.
    assert!(
        tokio::time::timeout(Duration::from_millis(100), updates.next())
            .await
            .is_err(),
        "no answer, no update"
    );
    server.next_request().await;
    drop(updates);
    tokio::time::timeout(Duration::from_secs(1), server.disconnects_rx.recv())
        .await
        .expect("dropping the client closes the pending request's connection");
}
