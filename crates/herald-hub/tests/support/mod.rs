//! Shared by the engine tests: read a [`ClientStream`] as SSE (with the client crate's WHATWG
//! parser), wait for a condition within a bound, and run a real `redis-server` on a free port.
//!
//! Every test file uses a different part of it.
#![allow(dead_code)]

use futures_util::StreamExt;
use herald_client::{Event, Item, Parser};
use herald_hub::ClientStream;
use std::{
    collections::VecDeque,
    future::Future,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// How long any one expected thing may take before a test fails.
pub(crate) const PATIENCE: Duration = Duration::from_secs(5);

/// A connection's stream, read as SSE items.
pub(crate) struct Sse {
    stream: ClientStream,
    parser: Parser,
    items: VecDeque<Item>,
    is_ended: bool,
}

impl Sse {
    pub(crate) fn new(stream: ClientStream) -> Self {
        Self {
            stream,
            parser: Parser::new(),
            items: VecDeque::new(),
            is_ended: false,
        }
    }

    /// The next item, `None` once the stream has ended; panics when nothing comes within
    /// [`PATIENCE`] (use [`Sse::next_item_within`] to expect silence).
    pub(crate) async fn next_item(&mut self) -> Option<Item> {
        match self.next_item_within(PATIENCE).await {
            Ok(item) => item,
            Err(Silent) => panic!("the stream was silent for {PATIENCE:?}"),
        }
    }

    /// The next item within `wait`: `Ok(None)` once the stream has ended, `Err(Silent)` when
    /// nothing arrived.
    pub(crate) async fn next_item_within(
        &mut self,
        wait: Duration,
    ) -> Result<Option<Item>, Silent> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(item) = self.items.pop_front() {
                return Ok(Some(item));
            }
            if self.is_ended {
                return Ok(None);
            }
            match tokio::time::timeout_at(deadline, self.stream.next()).await {
                Err(_) => return Err(Silent),
                Ok(None) => self.is_ended = true,
                Ok(Some(chunk)) => {
                    let mut items = Vec::new();
                    self.parser
                        .feed(&chunk, &mut items)
                        .expect("no event exceeds the parser's limit");
                    self.items.extend(items);
                }
            }
        }
    }

    /// The next event (comments and `retry:` skipped); panics if the stream ends first.
    pub(crate) async fn next_event(&mut self) -> Event {
        loop {
            match self.next_item().await {
                Some(Item::Event(event)) => return event,
                Some(_) => continue,
                None => panic!("the stream ended while an event was expected"),
            }
        }
    }

    /// The next event within `wait`, or `None` when none came (comments are skipped).
    pub(crate) async fn event_within(&mut self, wait: Duration) -> Option<Event> {
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_item_within(left).await {
                Ok(Some(Item::Event(event))) => return Some(event),
                Ok(Some(_)) => continue,
                Ok(None) | Err(Silent) => return None,
            }
        }
    }

    /// The `connected` event that opens every stream, as JSON.
    pub(crate) async fn connected(&mut self) -> serde_json::Value {
        let event = self.next_event().await;
        assert_eq!(event.event, "connected", "a stream opens with `connected`");
        serde_json::from_str(&event.data).expect("`connected` carries JSON")
    }

    /// Events until one has id `last_id`, inclusive.
    pub(crate) async fn events_through(&mut self, last_id: &str) -> Vec<Event> {
        let mut events = Vec::new();
        loop {
            let event = self.next_event().await;
            let is_last = event.id == last_id;
            events.push(event);
            if is_last {
                return events;
            }
        }
    }

    /// Every event and comment until the stream ends.
    pub(crate) async fn rest_until_end(&mut self) -> (Vec<Event>, Vec<String>) {
        let mut events = Vec::new();
        let mut comments = Vec::new();
        while let Some(item) = self.next_item().await {
            match item {
                Item::Event(event) => events.push(event),
                Item::Comment(comment) => comments.push(comment),
                Item::Retry(_) => {}
            }
        }
        (events, comments)
    }
}

/// Nothing arrived in time.
#[derive(Debug)]
pub(crate) struct Silent;

/// The ids of `events`, in order.
pub(crate) fn ids(events: &[Event]) -> Vec<String> {
    events.iter().map(|e| e.id.clone()).collect()
}

/// Waits until `check` gives `Some`, trying every 20 ms; panics with `what` after [`PATIENCE`].
pub(crate) async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A fresh, empty folder under the system's temporary folder, removed on drop.
pub(crate) struct TempDir(pub(crate) PathBuf);

impl TempDir {
    pub(crate) fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "herald-hub-{name}-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::create_dir_all(&dir).expect("the temporary folder can be created");
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A `redis-server` on a free loopback port, with its own folder; killed on drop.
pub(crate) struct Redis {
    child: Option<Child>,
    pub(crate) port: u16,
    dir: TempDir,
}

impl Redis {
    /// A server started and accepting connections.
    pub(crate) fn start() -> Self {
        let mut redis = Self::reserved();
        redis.run();
        redis
    }

    /// A port and a folder for a server not started yet (see [`Redis::run`]).
    pub(crate) fn reserved() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        Self {
            child: None,
            port,
            dir: TempDir::new("redis"),
        }
    }

    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts the server (append-only, so a stop and a run keep the log) and waits until it
    /// accepts connections.
    pub(crate) fn run(&mut self) {
        self.stop();
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ])
            .arg("--dir")
            .arg(&self.dir.0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (scripts/setup installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + PATIENCE;
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the server, as a crash would.
    pub(crate) fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}
