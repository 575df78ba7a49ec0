//! HTTPS end to end: streams and publishes over HTTP/1.1 and HTTP/2 (ALPN), the stream limits
//! counting HTTP/2 streams, a certificate reload under open streams, the handshake timeout, the
//! CLI over `https://`, and a node reaching Redis over TLS (`rediss://`).
//!
//! Every certificate is made by the test run's own authority (`tls_support`), trusted through
//! `SSL_CERT_FILE`.

mod common;
mod tls_support;

use common::{TestHub, PATIENCE};
use serde_json::{json, Value};
use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    time::{Duration, Instant},
};
use tls_support::{http1, http2, test_ca};
use tokio::io::AsyncReadExt;

/// Starts a hub serving HTTPS with a fresh certificate named `name`, plus `args`.
fn start_https_hub(name: &str, args: &[&str]) -> (TestHub, tls_support::ServerCert) {
    let cert = test_ca().issue(name);
    let mut all: Vec<String> = cert.args();
    all.extend(args.iter().map(|arg| (*arg).to_owned()));
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    let hub = TestHub::start(&all);
    assert!(hub.base.starts_with("https://"), "{}", hub.base);
    (hub, cert)
}

/// `https://localhost:PORT/path`: the certificate names `localhost`.
fn url(hub: &TestHub, path: &str) -> String {
    format!("https://localhost:{}{path}", hub.port)
}

/// Reads a stream's body until it holds `needle`; panics after [`PATIENCE`].
async fn read_until(response: &mut reqwest::Response, seen: &mut String, needle: &str) {
    let deadline = Instant::now() + PATIENCE;
    while !seen.contains(needle) {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, response.chunk()).await {
            Ok(Ok(Some(chunk))) => seen.push_str(&String::from_utf8_lossy(&chunk)),
            other => panic!("the stream ended or stalled before {needle:?} ({other:?}): {seen}"),
        }
    }
}

async fn open_stream(client: &reqwest::Client, hub: &TestHub, channel: &str) -> reqwest::Response {
    let mut response = client
        .get(url(hub, &format!("/api/channels/{channel}/stream")))
        .send()
        .await
        .expect("the stream opens");
    assert_eq!(response.status(), 200);
    let mut seen = String::new();
    read_until(&mut response, &mut seen, "event: connected").await;
    response
}

async fn publish(client: &reqwest::Client, hub: &TestHub, channel: &str, data: Value) -> Value {
    let response = client
        .post(url(hub, &format!("/api/channels/{channel}/events")))
        .json(&json!({ "data": data }))
        .send()
        .await
        .expect("the publish reaches the hub");
    assert_eq!(response.status(), 200);
    response.json().await.expect("a JSON answer")
}

async fn connections(hub: &TestHub) -> u64 {
    let stats: Value = http1()
        .get(url(hub, "/api/stats"))
        .send()
        .await
        .expect("stats answer")
        .json()
        .await
        .expect("JSON stats");
    stats["connections"].as_u64().expect("a count")
}

#[tokio::test]
async fn https_serves_streams_and_publishes_over_http1_and_http2() {
    let (hub, _cert) = start_https_hub("both-protocols", &[]);
    let (h1, h2) = (http1(), http2());
    let mut over_h1 = open_stream(&h1, &hub, "orders").await;
    let mut over_h2 = open_stream(&h2, &hub, "orders").await;
    assert_eq!(over_h1.version(), reqwest::Version::HTTP_11);
    assert_eq!(over_h2.version(), reqwest::Version::HTTP_2);

    let answer = publish(&h2, &hub, "orders", json!({"n": 1})).await;
    assert_eq!(answer["recipients"], 2);
    let answer = publish(&h1, &hub, "orders", json!({"n": 2})).await;
    assert_eq!(answer["recipients"], 2);
    for stream in [&mut over_h1, &mut over_h2] {
        let mut seen = String::new();
        read_until(stream, &mut seen, r#"data: {"n":2}"#).await;
        assert!(seen.contains(r#"data: {"n":1}"#), "{seen}");
    }
    // Plain HTTP on the TLS port is not served.
    let plain = common::http()
        .get(format!("http://127.0.0.1:{}/healthz", hub.port))
        .send()
        .await;
    assert!(
        plain.map(|r| !r.status().is_success()).unwrap_or(true),
        "plain HTTP must not be answered on an HTTPS listener"
    );
}

#[tokio::test]
async fn http2_streams_each_count_against_the_stream_limit() {
    let (hub, _cert) = start_https_hub("stream-limit", &["--max-connections", "3"]);
    let client = http2();
    let mut held = Vec::new();
    for _ in 0..3 {
        let stream = open_stream(&client, &hub, "limited").await;
        assert_eq!(stream.version(), reqwest::Version::HTTP_2);
        held.push(stream);
    }
    let refused = client
        .get(url(&hub, "/api/channels/limited/stream"))
        .send()
        .await
        .expect("the hub answers");
    assert_eq!(refused.status(), 503);
    let body: Value = refused.json().await.expect("a JSON error");
    assert_eq!(body["error"]["code"], "at_capacity", "{body}");
    // Closing one HTTP/2 stream (not its connection) gives its slot back.
    held.pop();
    common::eventually("a closed HTTP/2 stream frees its slot", || async {
        connections(&hub).await == 2
    })
    .await;
    let again = open_stream(&client, &hub, "limited").await;
    assert_eq!(again.version(), reqwest::Version::HTTP_2);
}

#[tokio::test]
async fn sighup_reloads_the_certificate_and_open_streams_keep_receiving() {
    let ca = test_ca();
    let (hub, cert) = start_https_hub("before-reload", &[]);
    let presented = |alpn: &'static [u8]| async move {
        let stream = ca.connect(hub.port, &[alpn]).await;
        let (_, session) = stream.get_ref();
        session.peer_certificates().expect("a certificate")[0].to_vec()
    };
    assert_eq!(presented(b"http/1.1").await, cert.der);
    let (h1, h2) = (http1(), http2());
    let mut over_h1 = open_stream(&h1, &hub, "renewed").await;
    let mut over_h2 = open_stream(&h2, &hub, "renewed").await;

    let renewed = ca.issue_to("after-reload", &cert.cert_path, &cert.key_path);
    hub.signal("HUP");
    common::eventually("the hub reloads its certificate", || async {
        hub.log()
            .iter()
            .any(|line| line.contains("TLS certificate reloaded"))
    })
    .await;
    assert_eq!(presented(b"http/1.1").await, renewed);
    assert_eq!(presented(b"h2").await, renewed);

    // The streams opened under the old certificate are still live.
    let answer = publish(&http1(), &hub, "renewed", json!("after")).await;
    assert_eq!(answer["recipients"], 2);
    for stream in [&mut over_h1, &mut over_h2] {
        let mut seen = String::new();
        read_until(stream, &mut seen, "data: after\n").await;
    }

    // A broken renewal leaves the certificate in use, and says why.
    std::fs::write(&cert.cert_path, "not a certificate").expect("overwrites");
    hub.signal("HUP");
    common::eventually("the hub refuses the broken certificate", || async {
        hub.log().iter().any(|line| line.contains("not reloaded"))
    })
    .await;
    assert_eq!(presented(b"http/1.1").await, renewed);
    let answer = publish(&http2(), &hub, "renewed", json!("still")).await;
    assert_eq!(answer["recipients"], 2);
}

#[tokio::test]
async fn a_client_that_stalls_in_the_handshake_is_dropped() {
    let (hub, _cert) = start_https_hub("stalled", &["--header-read-timeout", "1s"]);
    let mut socket = tokio::net::TcpStream::connect(("127.0.0.1", hub.port))
        .await
        .expect("connects");
    let started = Instant::now();
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(PATIENCE, socket.read(&mut buf))
        .await
        .expect("the hub closes the stalled connection");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    assert!(started.elapsed() >= Duration::from_millis(900));
    // The hub still serves others.
    let health = http1()
        .get(url(&hub, "/healthz"))
        .send()
        .await
        .expect("answers");
    assert!(health.status().is_success());
}

#[test]
fn tls_cert_without_a_key_is_refused_at_start() {
    let cert = test_ca().issue("lonely");
    let output = Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(["serve", "--listen", "127.0.0.1:0", "--tls-cert"])
        .arg(&cert.cert_path)
        .env_remove("HERALD_TLS_KEY")
        .output()
        .expect("herald runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--tls-key"), "{stderr}");
}

#[test]
fn herald_tail_and_publish_speak_https() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let (hub, _cert) = start_https_hub("cli", &[]);
    let base = url(&hub, "");
    let mut tail = Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(["tail", "orders", "--json", "--hub", &base])
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
        connections(&hub).await == 1
    }));
    let output = Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(["publish", "orders", "--data", r#"{"id":7}"#, "--id", "o-7"])
        .env("HERALD_URL", &base)
        .output()
        .expect("herald publish runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let answer: Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(answer, json!({"id": "o-7", "recipients": 1}));
    let printed = loop {
        let line = lines_rx
            .recv_timeout(PATIENCE)
            .expect("tail prints the event");
        let event: Value = serde_json::from_str(&line).expect("one JSON object a line");
        if event["id"] == "o-7" {
            break event;
        }
    };
    assert_eq!(printed["data"], json!({"id": 7}));
    let _ = tail.kill();
    let _ = tail.wait();

    // Without the authority, the same call fails on the certificate.
    let untrusting = Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(["publish", "orders", "--data", "1", "--hub", &base])
        .env("SSL_CERT_FILE", "/dev/null")
        .env("SSL_CERT_DIR", "/nonexistent")
        .output()
        .expect("herald publish runs");
    assert!(!untrusting.status.success());
}

/// A `redis-server` serving TLS only, with a certificate from the test authority.
struct TlsRedis {
    child: std::process::Child,
    port: u16,
}

impl TlsRedis {
    fn start() -> Self {
        let ca = test_ca();
        let cert = ca.issue("redis");
        let port = common::free_port();
        let child = Command::new("redis-server")
            .args(["--port", "0", "--bind", "127.0.0.1", "--save", ""])
            .args(["--tls-port", &port.to_string(), "--tls-auth-clients", "no"])
            .arg("--tls-cert-file")
            .arg(&cert.cert_path)
            .arg("--tls-key-file")
            .arg(&cert.key_path)
            .arg("--tls-ca-cert-file")
            .arg(&ca.cert_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server runs (scripts/setup installs it)");
        let deadline = Instant::now() + PATIENCE;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { child, port }
    }
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn a_node_reaches_redis_over_tls() {
    test_ca();
    let redis = TlsRedis::start();
    let redis_url = format!("rediss://localhost:{}", redis.port);
    let node = TestHub::start(&["--redis-url", &redis_url]);
    let other = TestHub::start(&["--redis-url", &redis_url]);
    let mut stream = node.stream("/api/channels/secure/stream").await;
    stream.connected().await;
    let answer = other
        .publish("/api/channels/secure/events", json!({"data": "over tls"}))
        .await;
    assert!(answer["id"].is_string(), "{answer}");
    let event = stream.next_event().await;
    assert_eq!(event.data, "over tls");
}

// Multi-threaded: the clients' HTTP/2 connections must answer the hub's closing PING while the
// test thread waits for the exit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_https_streams_over_both_protocols_with_the_closing_comment() {
    let (mut hub, _cert) = start_https_hub("shutdown", &[]);
    let mut over_h1 = open_stream(&http1(), &hub, "closing").await;
    let mut over_h2 = open_stream(&http2(), &hub, "closing").await;
    let started = Instant::now();
    let status = hub
        .signal_and_wait("TERM", Duration::from_secs(5))
        .expect("herald exits within 5s of SIGTERM");
    assert!(status.success(), "exit status {status:?}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "it did not wait out the grace period"
    );
    for stream in [&mut over_h1, &mut over_h2] {
        let mut seen = String::new();
        read_until(stream, &mut seen, ": closed: hub shutting down").await;
        // HTTP/2 may end a stream with an empty DATA frame.
        let end = loop {
            match tokio::time::timeout(PATIENCE, stream.chunk()).await {
                Ok(Ok(Some(chunk))) if chunk.is_empty() => continue,
                other => break other,
            }
        };
        assert!(
            matches!(end, Ok(Ok(None)) | Ok(Err(_))),
            "the stream ends after its closing comment: {end:?}"
        );
    }
}
