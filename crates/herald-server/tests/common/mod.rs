//! Test harness: starts the real `herald` binary on an ephemeral port and talks to it over HTTP.
//!
//! `TestHub::start` spawns `herald serve --listen 127.0.0.1:0`, waits for its "listening" line and
//! kills it on drop. `SseStream` reads a live stream through Herald's own SSE parser.

#![allow(dead_code, unreachable_pub)]

use herald_client::{Event, Item, Parser};
use serde_json::Value;
use std::{
    collections::VecDeque,
    io::{BufRead, BufReader},
    process::{Child, Command, ExitStatus, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

/// How long a test waits for something that should happen at once.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// A running `herald serve` process.
pub struct TestHub {
    child: Child,
    pub base: String,
    pub port: u16,
    log: Arc<Mutex<Vec<String>>>,
}

impl TestHub {
    /// Starts a hub with extra `serve` flags.
    pub fn start(args: &[&str]) -> Self {
        Self::start_with_env(args, &[])
    }

    /// Starts a hub with extra `serve` flags and environment variables.
    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_herald"));
        command
            .arg("serve")
            .arg("--listen")
            .arg("127.0.0.1:0")
            .args(args);
        command
            .env("HERALD_LOG", "info,herald=debug")
            .env_remove("HERALD_LISTEN");
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the herald binary starts");
        let stderr = child.stderr.take().expect("stderr is piped");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let log_writer = log.clone();
        std::thread::spawn(move || {
            let mut ready_tx = Some(ready_tx);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.split("herald listening on ").nth(1) {
                    // `http://ADDR` or `https://ADDR`.
                    let addr = rest
                        .split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_owned();
                    if let Some(tx) = ready_tx.take() {
                        let _ = tx.send(addr);
                    }
                }
                log_writer.lock().expect("log lock").push(line);
            }
        });
        let addr = match ready_rx.recv_timeout(PATIENCE) {
            Ok(addr) => addr,
            Err(_) => {
                let _ = child.kill();
                panic!("herald did not start: {:?}", log.lock().expect("log lock"));
            }
        };
        let (scheme, addr) = addr
            .split_once("://")
            .expect("the listening line has a URL");
        let port = addr
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("the listening line has a port");
        Self {
            child,
            base: format!("{scheme}://{addr}"),
            port,
            log,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the hub logged so far.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().expect("log lock").clone()
    }

    /// Sends a signal (e.g. "STOP", "CONT") and returns at once.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status();
        assert!(
            status.map(|s| s.success()).unwrap_or(false),
            "kill -{signal} failed"
        );
    }

    /// Sends a signal (e.g. "TERM", "INT", "KILL") and waits for the exit, up to `within`.
    pub fn signal_and_wait(&mut self, signal: &str, within: Duration) -> Option<ExitStatus> {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status();
        assert!(
            status.map(|s| s.success()).unwrap_or(false),
            "kill -{signal} failed"
        );
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait works") {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Resident memory of the hub process, in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("the hub process is alive");
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kib| kib.parse().ok())
            .expect("VmRSS is in /proc/PID/status")
    }

    pub async fn get_json(&self, path: &str) -> Value {
        let response = http()
            .get(self.url(path))
            .send()
            .await
            .expect("GET reaches the hub");
        response.json().await.expect("the answer is JSON")
    }

    pub async fn stats(&self) -> Value {
        self.get_json("/api/stats").await
    }

    /// POSTs JSON and returns (status, body as JSON or Null).
    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let response = http()
            .post(self.url(path))
            .json(&body)
            .send()
            .await
            .expect("POST reaches the hub");
        let status = response.status().as_u16();
        let text = response.text().await.expect("the answer has a body");
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// DELETEs `path` and returns the status.
    pub async fn delete(&self, path: &str) -> u16 {
        http()
            .delete(self.url(path))
            .send()
            .await
            .expect("DELETE reaches the hub")
            .status()
            .as_u16()
    }

    /// POSTs JSON to a publish endpoint and expects 200.
    pub async fn publish(&self, path: &str, body: Value) -> Value {
        let (status, answer) = self.post(path, body).await;
        assert_eq!(status, 200, "publish to {path} answered {answer}");
        answer
    }

    /// Opens a stream and expects 200 `text/event-stream`.
    pub async fn stream(&self, path: &str) -> SseStream {
        SseStream::open(&self.url(path), &[]).await
    }
}

impl Drop for TestHub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One shared HTTP client without connection reuse surprises.
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("a plain HTTP client builds")
}

/// A live SSE stream, read with Herald's parser.
pub struct SseStream {
    pub response: reqwest::Response,
    parser: Parser,
    pending: VecDeque<Item>,
    pub raw: Vec<u8>,
    ended: bool,
}

impl SseStream {
    pub async fn open(url: &str, headers: &[(&str, &str)]) -> Self {
        let mut request = http().get(url);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request
            .send()
            .await
            .expect("the stream request reaches the hub");
        assert_eq!(
            response.status().as_u16(),
            200,
            "stream {url} answered {}",
            response.status()
        );
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        assert_eq!(content_type, "text/event-stream");
        Self {
            response,
            parser: Parser::new(),
            pending: VecDeque::new(),
            raw: Vec::new(),
            ended: false,
        }
    }

    /// The next parsed item, or `None` at the end of the stream or after `within`.
    pub async fn next_item_within(&mut self, within: Duration) -> Option<Item> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(item) = self.pending.pop_front() {
                return Some(item);
            }
            if self.ended {
                return None;
            }
            let chunk = match tokio::time::timeout_at(deadline, self.response.chunk()).await {
                Err(_) => return None,
                Ok(Ok(Some(chunk))) => chunk,
                Ok(Ok(None)) | Ok(Err(_)) => {
                    self.ended = true;
                    continue;
                }
            };
            self.raw.extend_from_slice(&chunk);
            let mut items = Vec::new();
            self.parser
                .feed(&chunk, &mut items)
                .expect("events fit the parser's limit");
            self.pending.extend(items);
        }
    }

    /// The next event (comments and retry skipped); panics if none comes in time.
    pub async fn next_event(&mut self) -> Event {
        self.next_event_within(PATIENCE)
            .await
            .expect("an event arrives in time")
    }

    /// The next `count` events, as (id, data).
    pub async fn next_events(&mut self, count: usize) -> Vec<(String, String)> {
        let mut seen = Vec::with_capacity(count);
        while seen.len() < count {
            let event = self.next_event().await;
            seen.push((event.id, event.data));
        }
        seen
    }

    pub async fn next_event_within(&mut self, within: Duration) -> Option<Event> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_item_within(left).await? {
                Item::Event(event) => return Some(event),
                _ => continue,
            }
        }
    }

    /// Reads the `connected` event that opens every stream and returns its data.
    pub async fn connected(&mut self) -> Value {
        let event = self.next_event().await;
        assert_eq!(event.event, "connected");
        serde_json::from_str(&event.data).expect("connected carries JSON")
    }

    /// Reads until the stream ends; returns the events read. Panics if it does not end in time.
    pub async fn events_until_end(&mut self) -> Vec<Event> {
        let mut events = Vec::new();
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_item_within(left).await {
                Some(Item::Event(event)) => events.push(event),
                Some(_) => {}
                None => {
                    assert!(self.ended, "the stream did not end within {PATIENCE:?}");
                    return events;
                }
            }
        }
    }

    /// Whether the stream has ended (read to its end).
    pub fn is_ended(&self) -> bool {
        self.ended
    }

    /// The raw bytes read so far, as text.
    pub fn raw_text(&self) -> String {
        String::from_utf8_lossy(&self.raw).into_owned()
    }
}

/// Polls `check` until it returns true or `PATIENCE` passes.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + PATIENCE;
    while Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out waiting for: {what}");
}

/// A `redis-server` started for one test on a free port, in its own folder; stopped on drop.
pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    dir: std::path::PathBuf,
}

impl RedisServer {
    /// Starts redis-server with append-only persistence (so a restart keeps the stream).
    pub fn start() -> Self {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("herald-redis-{}-{port}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("redis dir");
        let mut server = Self {
            child: None,
            port,
            dir,
        };
        server.restart();
        server
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server (as a crash would).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port and folder.
    pub fn restart(&mut self) {
        self.stop();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .args(["--appendonly", "yes", "--appendfsync", "always", "--dir"])
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server runs (scripts/setup installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + PATIENCE;
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}
