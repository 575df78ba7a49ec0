//! Hostile input against the real binary: each request is refused with its status and error code,
//! nothing is published, no subscriber hears anything, and the hub keeps serving others.

mod auth_support;
mod common;

use auth_support::*;
use common::SseStream;
use jsonwebtoken::Algorithm;
use serde_json::json;
use std::{
    io::Write,
    time::{Duration, Instant},
};

/// The hub every case runs against: small limits so each is cheap to pass.
fn hostile_hub() -> common::TestHub {
    jwt_hub(&[
        "--header-read-timeout",
        "1s",
        "--body-read-timeout",
        "1s",
        "--max-body-bytes",
        "4096",
        "--max-event-bytes",
        "1024",
        "--max-channels-per-connection",
        "3",
    ])
}

/// One hostile request and the answer it must get.
struct Case {
    name: &'static str,
    method: &'static str,
    path: String,
    token: Option<String>,
    body: Option<Vec<u8>>,
    status: u16,
    code: Option<&'static str>,
    /// Extra request headers (such as a browser's `Origin`).
    headers: Vec<(&'static str, &'static str)>,
    /// The body's `Content-Type`; `None` sends none.
    content_type: Option<&'static str>,
}

fn case(name: &'static str, method: &'static str, path: impl Into<String>) -> Case {
    Case {
        name,
        method,
        path: path.into(),
        token: None,
        body: None,
        status: 0,
        code: None,
        headers: Vec::new(),
        content_type: Some("application/json"),
    }
}

impl Case {
    fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = Some(body.into());
        self
    }

    fn json(self, body: serde_json::Value) -> Self {
        self.body(body.to_string())
    }

    fn expect(mut self, status: u16, code: &'static str) -> Self {
        self.status = status;
        self.code = Some(code);
        self
    }

    fn header(mut self, name: &'static str, value: &'static str) -> Self {
        self.headers.push((name, value));
        self
    }

    fn content_type(mut self, content_type: Option<&'static str>) -> Self {
        self.content_type = content_type;
        self
    }
}

fn cases() -> Vec<Case> {
    let publisher = token_for("svc", json!({"publish": ["*"]}));
    let subscriber = token_for("7", json!({"subscribe": ["orders"]}));
    let everything = token_for("7", json!({"subscribe": ["*"], "publish": ["*"]}));
    let claims_everything = json!({
        "sub": "7", "exp": now() + 3600, "herald": {"subscribe": ["*"], "publish": ["*"], "admin": true}
    });
    let weak = token_for("7", json!({}));
    let expired = hs256(json!({"sub": "svc", "exp": now() - 3600, "herald": {"publish": ["*"]}}));
    let other_secret = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(Algorithm::HS256),
        &claims_everything,
        &jsonwebtoken::EncodingKey::from_secret(b"another-secret-0123456789abcdefgh"),
    )
    .expect("encoding works");
    let hs512 = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(Algorithm::HS512),
        &claims_everything,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("encoding works");
    let rs256 = signed_with(
        Algorithm::RS256,
        "rs256-private.pem",
        claims_everything.clone(),
    );
    let publish = "/api/channels/orders/events";
    let event = json!({"data": "hostile"});
    let many_params = format!("/api/stream?channel=orders{}", "&x=1".repeat(5000));
    let long_channel = "x".repeat(129);
    let too_many_channels: Vec<String> = (0..65).map(|n| format!("c{n}")).collect();

    vec![
        // Tokens.
        case("forged signature", "POST", publish)
            .token(forged(&weak, claims_everything.clone()))
            .json(event.clone())
            .expect(401, "unauthorized"),
        case("token signed with another secret", "POST", publish)
            .token(other_secret)
            .json(event.clone())
            .expect(401, "unauthorized"),
        case("expired token", "POST", publish)
            .token(expired)
            .json(event.clone())
            .expect(401, "unauthorized"),
        case("token for another algorithm (HS512)", "POST", publish)
            .token(hs512)
            .json(event.clone())
            .expect(401, "unauthorized"),
        case("token for another algorithm (RS256)", "POST", publish)
            .token(rs256)
            .json(event.clone())
            .expect(401, "unauthorized"),
        case("alg none", "POST", publish)
            .token(alg_none(claims_everything.clone()))
            .json(event.clone())
            .expect(401, "unauthorized"),
        case("alg none on a stream", "GET", "/api/channels/orders/stream")
            .token(alg_none(claims_everything.clone()))
            .expect(401, "unauthorized"),
        case("no token", "POST", publish)
            .json(event.clone())
            .expect(401, "unauthorized"),
        case("garbage bearer", "POST", publish)
            .token("garbage.garbage.garbage")
            .json(event.clone())
            .expect(401, "unauthorized"),
        // Rights.
        case(
            "channel outside the claims",
            "GET",
            "/api/channels/secret/stream",
        )
        .token(subscriber.clone())
        .expect(403, "forbidden"),
        case(
            "polling outside the claims",
            "GET",
            "/api/channels/secret/events",
        )
        .token(subscriber.clone())
        .expect(403, "forbidden"),
        case("publishing with a subscribe-only token", "POST", publish)
            .token(subscriber.clone())
            .json(event.clone())
            .expect(403, "forbidden"),
        case(
            "broadcast with a subscribe-only token",
            "POST",
            "/api/broadcast",
        )
        .token(subscriber.clone())
        .json(event.clone())
        .expect(403, "forbidden"),
        case("stats with a publish token", "GET", "/api/stats")
            .token(publisher.clone())
            .expect(403, "forbidden"),
        // Limits.
        case(
            "too many channels",
            "GET",
            "/api/stream?channel=a&channel=b&channel=c&channel=d",
        )
        .token(everything.clone())
        .expect(400, "too_many_channels"),
        case("oversized body", "POST", publish)
            .token(publisher.clone())
            .json(json!({"data": "x".repeat(8 * 1024)}))
            .expect(413, "payload_too_large"),
        case("oversized event", "POST", publish)
            .token(publisher.clone())
            .json(json!({"data": "x".repeat(2000)}))
            .expect(413, "event_too_large"),
        case("thousands of query parameters", "GET", many_params)
            .token(everything.clone())
            .expect(400, "invalid_query"),
        // Malformed input.
        case("invalid UTF-8 body", "POST", publish)
            .token(publisher.clone())
            .body(b"{\"data\": \"\xff\xfe\"}".to_vec())
            .expect(400, "invalid_body"),
        case(
            "invalid UTF-8 in the path",
            "POST",
            "/api/channels/%FF%FE/events",
        )
        .token(publisher.clone())
        .json(event.clone())
        .expect(400, "invalid_path"),
        case(
            "invalid UTF-8 in the query",
            "GET",
            "/api/stream?channel=%FF",
        )
        .token(everything.clone())
        .expect(400, "invalid_channel"),
        case("not JSON", "POST", publish)
            .token(publisher.clone())
            .body("data=x")
            .expect(400, "invalid_body"),
        case("unknown field", "POST", publish)
            .token(publisher.clone())
            .json(json!({"data": "x", "admin": true}))
            .expect(400, "invalid_body"),
        case("CR in an event name", "POST", publish)
            .token(publisher.clone())
            .json(json!({"event": "a\rdata: injected", "data": "x"}))
            .expect(400, "invalid_event_name"),
        case("LF in an event name", "POST", publish)
            .token(publisher.clone())
            .json(json!({"event": "a\ndata: injected", "data": "x"}))
            .expect(400, "invalid_event_name"),
        case("NUL in an event name", "POST", publish)
            .token(publisher.clone())
            .json(json!({"event": "a\u{0}b", "data": "x"}))
            .expect(400, "invalid_event_name"),
        case("CR in an event id", "POST", publish)
            .token(publisher.clone())
            .json(json!({"id": "1\rid: 2", "data": "x"}))
            .expect(400, "invalid_event_id"),
        case("LF in an event id", "POST", publish)
            .token(publisher.clone())
            .json(json!({"id": "1\nretry: 1", "data": "x"}))
            .expect(400, "invalid_event_id"),
        case("NUL in an event id", "POST", publish)
            .token(publisher.clone())
            .json(json!({"id": "1\u{0}", "data": "x"}))
            .expect(400, "invalid_event_id"),
        case(
            "channel name with a space",
            "POST",
            "/api/channels/a%20b/events",
        )
        .token(publisher.clone())
        .json(event.clone())
        .expect(400, "invalid_channel"),
        case(
            "channel name with a newline",
            "GET",
            "/api/stream?channel=a%0Ab",
        )
        .token(everything.clone())
        .expect(400, "invalid_channel"),
        case("channel name too long", "POST", "/api/events")
            .token(publisher.clone())
            .json(json!({"channels": [long_channel], "data": "x"}))
            .expect(400, "invalid_channel"),
        case("empty channel name in a list", "POST", "/api/events")
            .token(publisher.clone())
            .json(json!({"channels": ["orders", ""], "data": "x"}))
            .expect(400, "invalid_channel"),
        case(
            "client id with a newline",
            "GET",
            "/api/channels/orders/stream?clientId=a%0Ab",
        )
        .token(subscriber.clone())
        .expect(400, "invalid_client_id"),
        // Cross-site requests: a body a page could send without a preflight, a foreign origin.
        case("publish as text/plain", "POST", publish)
            .token(API_KEY)
            .json(event.clone())
            .content_type(Some("text/plain"))
            .expect(415, "unsupported_media_type"),
        case("publish as a form", "POST", "/api/broadcast")
            .token(API_KEY)
            .body("data=x")
            .content_type(Some("application/x-www-form-urlencoded"))
            .expect(415, "unsupported_media_type"),
        case("publish without a content type", "POST", publish)
            .token(API_KEY)
            .json(event.clone())
            .content_type(None)
            .expect(415, "unsupported_media_type"),
        case(
            "subscribe a client as text/plain",
            "POST",
            "/api/clients/c1/subscriptions",
        )
        .token(API_KEY)
        .json(json!({"channels": ["orders"]}))
        .content_type(Some("text/plain"))
        .expect(415, "unsupported_media_type"),
        case("publish from a cross-site page", "POST", publish)
            .token(API_KEY)
            .json(event.clone())
            .header("origin", "http://evil.example")
            .expect(403, "origin_not_allowed"),
        case(
            "remove a client from a cross-site page",
            "DELETE",
            "/api/clients/c1",
        )
        .token(API_KEY)
        .header("origin", "http://evil.example")
        .expect(403, "origin_not_allowed"),
        case(
            "close a channel from a sandboxed page",
            "POST",
            "/api/channels/orders/close",
        )
        .token(API_KEY)
        .header("origin", "null")
        .expect(403, "origin_not_allowed"),
        // Records are bounded: a publish names at most 64 distinct channels.
        case("65 distinct channels in one publish", "POST", "/api/events")
            .token(publisher.clone())
            .json(json!({"channels": too_many_channels, "data": "x"}))
            .expect(400, "too_many_channels"),
        // Ids a browser can resume from: printable ASCII without spaces.
        case("event id with a leading space", "POST", publish)
            .token(publisher.clone())
            .json(json!({"id": " order-7", "data": "x"}))
            .expect(400, "invalid_event_id"),
        case("event id with a trailing space", "POST", publish)
            .token(publisher.clone())
            .json(json!({"id": "order-7 ", "data": "x"}))
            .expect(400, "invalid_event_id"),
        case("non-ASCII event id", "POST", publish)
            .token(publisher.clone())
            .json(json!({"id": "\u{fc}-1", "data": "x"}))
            .expect(400, "invalid_event_id"),
        // Never mistaken for a log position.
        case("event id shaped like a Redis entry id", "POST", publish)
            .token(publisher.clone())
            .json(json!({"id": "1700000000000-0", "data": "x"}))
            .expect(400, "invalid_event_id"),
        case("event id shaped like a hub position id", "POST", publish)
            .token(publisher.clone())
            .json(json!({"id": "mfx3k2a0abcd-17", "data": "x"}))
            .expect(400, "invalid_event_id"),
    ]
}

/// Sends one case: its token, headers, and body with its content type.
async fn send_case(hub: &common::TestHub, case: &Case) -> Answer {
    let method = reqwest::Method::from_bytes(case.method.as_bytes()).expect("a valid method");
    let mut request = common::http().request(method, hub.url(&case.path));
    if let Some(token) = &case.token {
        request = request.bearer_auth(token);
    }
    for (name, value) in &case.headers {
        request = request.header(*name, *value);
    }
    if let Some(body) = &case.body {
        if let Some(content_type) = case.content_type {
            request = request.header("content-type", content_type);
        }
        request = request.body(body.clone());
    }
    let response = request.send().await.expect("the request reaches the hub");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap_or_default();
    Answer {
        status,
        headers,
        body: serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
    }
}

#[tokio::test]
async fn hostile_requests_are_refused_and_publish_nothing() {
    let hub = hostile_hub();
    let listener = token_for("listener", json!({"subscribe": ["orders", "secret"]}));
    let auth = format!("Bearer {listener}");
    let mut subscriber = SseStream::open(
        &hub.url("/api/stream?channel=orders&channel=secret"),
        &[("authorization", auth.as_str())],
    )
    .await;
    subscriber.connected().await;
    let published_before = events_published(&hub).await;

    let mut failures = Vec::new();
    for case in cases() {
        let answer = send_case(&hub, &case).await;
        if answer.status != case.status || answer.code() != case.code {
            failures.push(format!(
                "{}: expected {} {:?}, got {} {}",
                case.name, case.status, case.code, answer.status, answer.body
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");

    assert_eq!(events_published(&hub).await, published_before);
    assert_eq!(
        subscriber
            .next_event_within(Duration::from_millis(300))
            .await,
        None,
        "a hostile request reached a subscriber"
    );
    assert_eq!(
        connections(&hub).await,
        1,
        "only the subscriber is connected"
    );

    // Still serving.
    let sent = post(
        &hub,
        "/api/channels/orders/events",
        Some(API_KEY),
        json!({"data": "ok"}),
    )
    .await;
    assert_eq!(sent.status, 200, "{}", sent.body);
    assert_eq!(subscriber.next_event().await.data, "ok");
}

#[tokio::test]
async fn a_header_that_never_ends_is_cut_after_the_header_read_timeout() {
    let hub = hostile_hub();
    let started = Instant::now();
    let mut slow = raw_connect(
        &hub,
        b"GET /api/stream HTTP/1.1\r\nHost: herald\r\nX-Slow: a",
    );
    // Keep trickling, as a Slowloris client does.
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(200));
        if slow.write_all(b"a").is_err() {
            break;
        }
    }
    let (_, closed) = read_until_closed(&mut slow, Duration::from_secs(5));
    let elapsed = started.elapsed();
    assert!(closed, "the hub kept a header open for {elapsed:?}");
    assert!(
        elapsed >= Duration::from_millis(800) && elapsed < Duration::from_secs(4),
        "closed after {elapsed:?}, expected about 1 s"
    );
    assert_eq!(get(&hub, "/healthz", None).await.status, 200);
}

#[tokio::test]
async fn a_body_that_arrives_too_slowly_is_answered_408_and_cut() {
    let hub = hostile_hub();
    let published_before = events_published(&hub).await;
    let head = format!(
        "POST /api/channels/orders/events HTTP/1.1\r\nHost: herald\r\nAuthorization: Bearer {API_KEY}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"data\": "
    );
    let started = Instant::now();
    let mut slow = raw_connect(&hub, head.as_bytes());
    let (answer, closed) = read_until_closed(&mut slow, Duration::from_secs(5));
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("body_timeout"), "{answer}");
    assert!(closed, "the connection stayed open");
    assert!(started.elapsed() < Duration::from_secs(4));
    assert_eq!(events_published(&hub).await, published_before);
}

#[tokio::test]
async fn a_header_flood_is_refused_without_harm() {
    let hub = hostile_hub();
    let mut request = String::from("GET /healthz HTTP/1.1\r\nHost: herald\r\n");
    for i in 0..2000 {
        request.push_str(&format!("X-Flood-{i}: {}\r\n", "v".repeat(32)));
    }
    request.push_str("\r\n");
    let mut flood = raw_connect(&hub, request.as_bytes());
    let (answer, _) = read_until_closed(&mut flood, Duration::from_secs(5));
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    assert_eq!(get(&hub, "/healthz", None).await.status, 200);
}

#[tokio::test]
async fn a_stream_is_not_cut_by_the_body_read_timeout() {
    let hub = hostile_hub();
    let auth = format!(
        "Bearer {}",
        token_for("7", json!({"subscribe": ["orders"]}))
    );
    let mut stream = SseStream::open(
        &hub.url("/api/channels/orders/stream"),
        &[("authorization", auth.as_str())],
    )
    .await;
    stream.connected().await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let sent = post(
        &hub,
        "/api/channels/orders/events",
        Some(API_KEY),
        json!({"data": "late"}),
    )
    .await;
    assert_eq!(sent.status, 200);
    assert_eq!(stream.next_event().await.data, "late");
}

/// A stream on a hub that allows `limit` streams, then a client that never reads, then enough
/// events to fill its socket and overflow its queue.
async fn stuck_reader_then_flood(hub: &common::TestHub) -> std::net::TcpStream {
    let stuck = raw_connect(
        hub,
        b"GET /api/channels/orders/stream HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    );
    common::eventually("the reader is connected", || async {
        hub.stats().await["connections"] == 1
    })
    .await;
    let data = "x".repeat(60_000);
    for _ in 0..300 {
        hub.publish("/api/channels/orders/events", json!({ "data": data }))
            .await;
    }
    stuck
}

#[tokio::test]
async fn a_reader_that_stops_reading_loses_its_socket_and_its_slot_when_its_queue_overflows() {
    let hub = common::TestHub::start(&["--max-connections", "3", "--queue-capacity", "8"]);
    let mut stuck = stuck_reader_then_flood(&hub).await;
    let flooded = Instant::now();
    let _second = hub.stream("/api/channels/orders/stream").await;
    let _third = hub.stream("/api/channels/orders/stream").await;
    // The stuck reader's slot comes back at once, not after the write deadline.
    let mut answered = 0;
    while flooded.elapsed() < Duration::from_secs(3) {
        answered = get(&hub, "/api/channels/orders/stream", None).await.status;
        if answered == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        answered,
        200,
        "a third new stream was still refused after {:?}",
        flooded.elapsed()
    );
    // Reading again, it learns why it was cut, and the stream ends.
    let (read, closed) = read_until_closed(&mut stuck, Duration::from_secs(10));
    assert!(closed, "the hub kept the stuck reader's socket open");
    assert!(
        read.ends_with(b"\r\n0\r\n\r\n"),
        "the stream ends with its last chunk"
    );
    assert!(
        String::from_utf8_lossy(&read).contains(": closed: slow consumer"),
        "the reader is told why"
    );
}

#[tokio::test]
async fn a_reader_that_pauses_gets_every_event_whole_and_in_order() {
    // Events larger than what the socket takes at once: the hub's writes to a reader that does
    // not read end part-way through a chunk, and the stream must go on from exactly there.
    const EVENTS: usize = 120;
    let hub = common::TestHub::start(&[]);
    let mut paused = raw_connect(
        &hub,
        b"GET /api/channels/orders/stream HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    );
    common::eventually("the reader is connected", || async {
        hub.stats().await["connections"] == 1
    })
    .await;
    let filler = "y".repeat(50_000);
    for i in 0..EVENTS {
        hub.publish(
            "/api/channels/orders/events",
            json!({ "data": format!("<{i:04}>{filler}") }),
        )
        .await;
    }
    hub.publish(
        "/api/channels/orders/close",
        json!({"event": "done", "data": "end"}),
    )
    .await;
    let (read, closed) = read_until_closed(&mut paused, Duration::from_secs(30));
    assert!(closed, "the stream ends once its channel is closed");
    let head_end = read
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head");
    let body = dechunk(&read[head_end + 4..]);
    let body = String::from_utf8(body).expect("an event stream is text");
    let data: Vec<&str> = body
        .lines()
        .filter_map(|line| line.strip_prefix("data: "))
        .filter(|data| data.contains(&filler))
        .collect();
    assert_eq!(data.len(), EVENTS, "every event arrives once");
    for (i, data) in data.iter().enumerate() {
        assert!(
            data.contains(&format!("<{i:04}>{filler}")),
            "event {i} arrives whole and in order"
        );
    }
    assert!(
        body.contains(": closed: channel closed"),
        "{}",
        &body[body.len().saturating_sub(200)..]
    );
}

/// A `chunked` body's bytes; panics unless every chunk is well formed and the body ends with
/// the last chunk.
fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut data = Vec::new();
    loop {
        let line_end = body
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("a chunk size line");
        let size = std::str::from_utf8(&body[..line_end])
            .ok()
            .and_then(|hex| usize::from_str_radix(hex, 16).ok())
            .expect("a hex chunk size");
        body = &body[line_end + 2..];
        if size == 0 {
            assert_eq!(body, b"\r\n", "nothing follows the last chunk");
            return data;
        }
        data.extend_from_slice(&body[..size]);
        assert_eq!(&body[size..size + 2], b"\r\n", "a chunk ends with CRLF");
        body = &body[size + 2..];
    }
}

/// Opens a stream as if through the trusted proxy on loopback, with this `X-Forwarded-For`.
async fn stream_forwarded_for(hub: &common::TestHub, forwarded_for: &str) -> Answer {
    send(
        hub,
        "GET",
        "/api/channels/orders/stream",
        &[("x-forwarded-for", forwarded_for)],
        None,
    )
    .await
}

#[tokio::test]
async fn a_malformed_or_loopback_forwarded_for_never_escapes_the_per_address_limit() {
    let hub = common::TestHub::start(&[
        "--max-connections-per-address",
        "2",
        "--trusted-proxies",
        "127.0.0.1",
    ]);
    let _a = SseStream::open(
        &hub.url("/api/channels/orders/stream"),
        &[("x-forwarded-for", "garbage")],
    )
    .await;
    let _b = SseStream::open(
        &hub.url("/api/channels/orders/stream"),
        &[("x-forwarded-for", "203.0.113.5:4000")],
    )
    .await;
    for forwarded_for in [
        "garbage",
        "127.0.0.1",
        "203.0.113.5:4000",
        "198.51.100.7, ::1",
        "",
    ] {
        let third = stream_forwarded_for(&hub, forwarded_for).await;
        assert_eq!(
            (third.status, third.code()),
            (429, Some("too_many_connections")),
            "X-Forwarded-For {forwarded_for:?}"
        );
    }
    let other = stream_forwarded_for(&hub, "198.51.100.7").await;
    assert_eq!(
        other.status, 200,
        "another client's address has its own count"
    );
}

#[tokio::test]
async fn silent_connections_cannot_keep_the_hub_from_answering() {
    let hub = common::TestHub::start(&["--max-connections", "100", "--header-read-timeout", "5s"]);
    // Few file descriptors, as on a host with a low `ulimit -n`.
    let limited = std::process::Command::new("prlimit")
        .arg(format!("--pid={}", hub.pid()))
        .arg("--nofile=128:128")
        .status()
        .expect("prlimit runs");
    assert!(limited.success());
    let silent: Vec<std::net::TcpStream> = (0..300)
        .map(|_| std::net::TcpStream::connect(("127.0.0.1", hub.port)).expect("connects"))
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let health = tokio::time::timeout(Duration::from_secs(10), get(&hub, "/healthz", None))
        .await
        .expect("/healthz answers");
    assert_eq!(health.status, 200);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "/healthz took {:?} behind silent sockets",
        started.elapsed()
    );
    let accept_failures = hub
        .log()
        .iter()
        .filter(|line| line.contains("accept failed"))
        .count();
    assert!(
        accept_failures <= 1,
        "{accept_failures} accept failures logged"
    );
    drop(silent);
}

#[tokio::test]
async fn a_request_head_has_one_deadline_even_past_16_kib() {
    let hub = common::TestHub::start(&["--header-read-timeout", "3s"]);
    let line = format!("X-Pad: {}\r\n", "p".repeat(1000));
    let started = Instant::now();
    let mut slow = raw_connect(
        &hub,
        format!(
            "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n{}",
            line.repeat(8)
        )
        .as_bytes(),
    );
    // Past 16 KiB late: the rest of the head goes to the general HTTP path.
    std::thread::sleep(Duration::from_secs(2));
    let _ = slow.write_all(line.repeat(9).as_bytes());
    for _ in 0..40 {
        std::thread::sleep(Duration::from_millis(100));
        if slow.write_all(b"X-Slow: 1\r\n").is_err() {
            break;
        }
    }
    let (_, closed) = read_until_closed(&mut slow, Duration::from_secs(8));
    let elapsed = started.elapsed();
    assert!(closed, "the head was never cut");
    assert!(
        elapsed >= Duration::from_millis(2800) && elapsed < Duration::from_millis(4000),
        "cut after {elapsed:?}, expected about 3 s"
    );
}

#[tokio::test]
async fn a_hub_without_auth_on_loopback_answers_only_its_own_names_and_pages() {
    let hub = common::TestHub::start(&["--allowed-hosts", "hub.internal"]);
    let own_origin = format!("http://127.0.0.1:{}", hub.port);
    let published_before = hub.stats().await["eventsPublished"].clone();
    let broadcast =
        |host: Option<&'static str>, origin: Option<String>, content_type: &'static str| {
            let mut request = common::http()
                .post(hub.url("/api/broadcast"))
                .header("content-type", content_type)
                .body(json!({"data": "x"}).to_string());
            if let Some(host) = host {
                request = request.header("host", host);
            }
            if let Some(origin) = origin {
                request = request.header("origin", origin);
            }
            async move {
                let answer = request.send().await.expect("reaches the hub");
                let status = answer.status().as_u16();
                let body: serde_json::Value = answer.json().await.unwrap_or_default();
                (status, body["error"]["code"].as_str().map(str::to_owned))
            }
        };
    let refused = [
        (
            broadcast(None, Some("http://evil.example".into()), "text/plain").await,
            403,
            "origin_not_allowed",
        ),
        (
            broadcast(None, Some("http://evil.example".into()), "application/json").await,
            403,
            "origin_not_allowed",
        ),
        (
            broadcast(None, None, "text/plain").await,
            415,
            "unsupported_media_type",
        ),
        (
            broadcast(Some("evil.example:8080"), None, "application/json").await,
            421,
            "host_not_allowed",
        ),
        (
            broadcast(
                Some("rebound.example"),
                Some("http://rebound.example".into()),
                "application/json",
            )
            .await,
            421,
            "host_not_allowed",
        ),
    ];
    for ((status, code), want_status, want_code) in refused {
        assert_eq!((status, code.as_deref()), (want_status, Some(want_code)));
    }
    assert_eq!(
        hub.stats().await["eventsPublished"],
        published_before,
        "nothing was published"
    );
    let stream = common::http()
        .get(hub.url("/api/channels/orders/stream"))
        .header("host", "evil.example")
        .send()
        .await
        .expect("reaches the hub");
    assert_eq!(
        stream.status().as_u16(),
        421,
        "a rebound page cannot read streams either"
    );
    for (host, origin) in [
        (None, None),
        (None, Some(own_origin)),
        (Some("localhost:1234"), None),
        (Some("hub.internal"), Some("http://hub.internal".to_owned())),
    ] {
        assert_eq!(
            broadcast(host, origin, "application/json").await.0,
            200,
            "{host:?}"
        );
    }
}

/// Cases that need more than one request: each names the defect it guards (issue 11).
///
/// | case | expected answer |
/// | --- | --- |
/// | 20 publishes naming `"a"` 200 000 times | 200; one channel each; history and RSS stay small |
/// | a token without `sub` asks for an API-key stream's `clientId` | 200, with a fresh client id |
/// | an empty poll of `orders` after a publish on `secret` | 200; the cursor names no event of `secret` |
#[tokio::test]
async fn a_flood_of_duplicate_channel_names_is_one_channel_and_costs_one_name() {
    let hub = jwt_hub(&[]);
    let names = vec!["a"; 200_000];
    let rss_before = hub.rss_kib();
    for _ in 0..20 {
        let sent = post(
            &hub,
            "/api/events",
            Some(API_KEY),
            json!({"channels": names, "data": "x"}),
        )
        .await;
        assert_eq!(sent.status, 200, "{}", sent.body);
    }
    let history_bytes = stats(&hub).await["history"]["bytes"]
        .as_u64()
        .expect("history bytes");
    assert!(
        history_bytes < 20 * 1024,
        "history holds {history_bytes} bytes"
    );
    let grown_kib = hub.rss_kib().saturating_sub(rss_before);
    assert!(grown_kib < 40 * 1024, "RSS grew by {grown_kib} KiB");
}

#[tokio::test]
async fn a_token_without_a_user_cannot_take_an_api_key_streams_client_id() {
    let hub = hostile_hub();
    let url = hub.url("/api/channels/orders/stream?clientId=k-1");
    let key = format!("Bearer {API_KEY}");
    let mut owner = SseStream::open(&url, &[("authorization", key.as_str())]).await;
    assert_eq!(owner.connected().await["clientId"], "k-1");
    let no_sub = hs256(json!({"exp": now() + 3600, "herald": {"subscribe": ["orders"]}}));
    let no_sub = format!("Bearer {no_sub}");
    let mut other = SseStream::open(&url, &[("authorization", no_sub.as_str())]).await;
    let given = other.connected().await["clientId"].clone();
    assert_ne!(given, "k-1", "answered as a fresh connection");
    let sent = post(
        &hub,
        "/api/clients/k-1/events",
        Some(API_KEY),
        json!({"data": "for the key's stream"}),
    )
    .await;
    assert_eq!(sent.status, 200, "{}", sent.body);
    assert_eq!(owner.next_event().await.data, "for the key's stream");
    assert_eq!(
        other.next_event_within(Duration::from_millis(300)).await,
        None,
        "nothing of the key's stream reaches the token"
    );
}

#[tokio::test]
async fn an_empty_poll_names_no_event_of_another_channel() {
    let hub = hostile_hub();
    let secret = post(
        &hub,
        "/api/channels/secret/events",
        Some(API_KEY),
        json!({"id": "inv-99", "data": "elsewhere"}),
    )
    .await;
    assert_eq!(secret.status, 200);
    let secret_id = secret.body["id"].clone();
    let orders = token_for("7", json!({"subscribe": ["orders"]}));
    let page = get(&hub, "/api/channels/orders/events", Some(&orders)).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(page.body["events"], json!([]));
    assert_ne!(
        page.body["cursor"], secret_id,
        "the cursor leaks secret's id"
    );
    assert_eq!(secret_id, "inv-99");
    let cursor = page.body["cursor"].as_str().expect("a cursor").to_owned();
    post(
        &hub,
        "/api/channels/orders/events",
        Some(API_KEY),
        json!({"data": "mine"}),
    )
    .await;
    let next = get(
        &hub,
        &format!("/api/channels/orders/events?after={cursor}"),
        Some(&orders),
    )
    .await;
    assert_eq!(next.body["reset"], false);
    assert_eq!(next.body["events"][0]["data"], "mine");
}
