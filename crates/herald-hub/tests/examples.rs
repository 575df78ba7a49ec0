//! Each example's main flow, end to end over real HTTP on 127.0.0.1:0: the example's own `app`,
//! driven with reqwest and read with herald-client's parser.

#[allow(dead_code, unreachable_pub)]
#[path = "../examples/dashboard.rs"]
mod dashboard;
#[allow(dead_code, unreachable_pub)]
#[path = "../examples/job_progress.rs"]
mod job_progress;
#[allow(dead_code, unreachable_pub)]
#[path = "../examples/notifications.rs"]
mod notifications;

use axum::Router;
use bytes::Bytes;
use futures_util::{stream::BoxStream, StreamExt};
use herald_client::{Event, Item, Parser};
use herald_hub::{http::ServeOptions, Hub, HubConfig};
use serde_json::{json, Value};
use std::{
    collections::VecDeque,
    net::SocketAddr,
    time::{Duration, Instant},
};

/// Longest wait for any one answer or event before a test fails.
const WAIT_MAX: Duration = Duration::from_secs(10);

/// Serves `app` on a fresh port of 127.0.0.1 until the test ends; returns its base URL.
async fn start(hub: Hub, app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binding port 0 on loopback");
    let addr: SocketAddr = listener
        .local_addr()
        .expect("a bound listener has an address");
    tokio::spawn(herald_hub::http::serve(
        listener,
        app,
        hub,
        ServeOptions::default(),
        std::future::pending(),
    ));
    format!("http://{addr}")
}

/// One open event stream, read event by event.
struct Events {
    body: BoxStream<'static, reqwest::Result<Bytes>>,
    parser: Parser,
    ready: VecDeque<Event>,
}

impl Events {
    /// Opens `url` and checks it is an event stream.
    async fn open(url: &str) -> Self {
        let response = tokio::time::timeout(WAIT_MAX, reqwest::get(url))
            .await
            .expect("the stream answers in time")
            .expect("the stream request succeeds");
        assert_eq!(response.status(), 200, "GET {url}");
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        Self {
            body: response.bytes_stream().boxed(),
            parser: Parser::new(),
            ready: VecDeque::new(),
        }
    }

    /// The next event, or `None` once the server has ended the stream.
    async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(event) = self.ready.pop_front() {
                return Some(event);
            }
            let chunk = tokio::time::timeout(WAIT_MAX, self.body.next())
                .await
                .expect("an event or the end of the stream arrives in time")?
                .expect("the stream reads without error");
            let mut items = Vec::new();
            self.parser
                .feed(&chunk, &mut items)
                .expect("events are within the parser's limits");
            self.ready
                .extend(items.into_iter().filter_map(|item| match item {
                    Item::Event(event) => Some(event),
                    Item::Retry(_) | Item::Comment(_) => None,
                }));
        }
    }

    /// The next event, which must be named `name`; returns its data as JSON.
    async fn expect(&mut self, name: &str) -> Value {
        let event = self.next().await.expect("the stream is still open");
        assert_eq!(event.event, name, "{event:?}");
        serde_json::from_str(&event.data).expect("event data is JSON")
    }
}

async fn post(url: &str, body: Option<Value>) -> reqwest::Response {
    let client = reqwest::Client::new();
    let mut request = client.post(url);
    if let Some(body) = body {
        request = request.json(&body);
    }
    tokio::time::timeout(WAIT_MAX, request.send())
        .await
        .expect("the server answers in time")
        .expect("the request succeeds")
}

async fn json_of(response: reqwest::Response) -> Value {
    response.json().await.expect("the answer is JSON")
}

#[tokio::test]
async fn notifications_reach_their_user_and_the_unread_badge_follows_creates_and_reads() {
    let hub = Hub::new(HubConfig::default());
    let db = rusqlite::Connection::open_in_memory().expect("an in-memory database opens");
    let app = notifications::app(hub.clone(), db).expect("the schema is created");
    let base = start(hub, app).await;

    let mut user_7 = Events::open(&format!("{base}/users/7/stream")).await;
    assert_eq!(
        user_7.expect("connected").await["channels"],
        json!(["user:7"])
    );
    assert_eq!(user_7.expect("unread").await, json!({"count": 0}));

    let mut created = Vec::new();
    for text in ["Your order has shipped", "Ann replied to you"] {
        let answer = post(
            &format!("{base}/users/7/notifications"),
            Some(json!({ "text": text })),
        )
        .await;
        assert_eq!(answer.status(), 201);
        created.push(json_of(answer).await);
    }
    // Another user's notification must not reach user 7.
    let other = post(
        &format!("{base}/users/8/notifications"),
        Some(json!({"text": "not for 7"})),
    )
    .await;
    assert_eq!(other.status(), 201);

    for (count, notification) in (1..).zip(&created) {
        assert_eq!(user_7.expect("notification").await, *notification);
        assert_eq!(user_7.expect("unread").await, json!({ "count": count }));
    }
    assert_eq!(created[0]["read"], json!(false));

    let first = created[0]["id"].as_i64().expect("a notification has an id");
    let read = post(&format!("{base}/notifications/{first}/read"), None).await;
    assert_eq!(read.status(), 200);
    assert_eq!(json_of(read).await["read"], json!(true));
    assert_eq!(user_7.expect("unread").await, json!({"count": 1}));

    // Reading it again changes nothing and pushes nothing; a new stream starts at the count.
    let again = post(&format!("{base}/notifications/{first}/read"), None).await;
    assert_eq!(again.status(), 200);
    let mut second_tab = Events::open(&format!("{base}/users/7/stream")).await;
    second_tab.expect("connected").await;
    assert_eq!(second_tab.expect("unread").await, json!({"count": 1}));
    let missing = post(&format!("{base}/notifications/999/read"), None).await;
    assert_eq!(missing.status(), 404);

    let listed = reqwest::get(format!("{base}/users/7/notifications"))
        .await
        .expect("the list answers");
    let listed = json_of(listed).await;
    assert_eq!(listed.as_array().map(Vec::len), Some(2), "{listed}");
}

#[tokio::test]
async fn a_job_streams_its_progress_to_100_then_done_then_ends_and_a_reconnect_gets_204() {
    let hub = Hub::new(HubConfig::default());
    let settings = job_progress::JobSettings {
        steps: 5,
        step_time: Duration::from_millis(40),
    };
    let base = start(hub.clone(), job_progress::app(hub, settings)).await;

    let started = post(&format!("{base}/jobs"), None).await;
    assert_eq!(started.status(), 202);
    let started = json_of(started).await;
    let stream_url = format!(
        "{base}{}",
        started["stream"]
            .as_str()
            .expect("the answer names the stream")
    );

    let mut job = Events::open(&stream_url).await;
    assert_eq!(job.expect("connected").await["channels"], json!(["job:1"]));
    let mut last_percent = None;
    loop {
        let event = job
            .next()
            .await
            .expect("the job's stream stays open until `done`");
        let data: Value = serde_json::from_str(&event.data).expect("event data is JSON");
        match event.event.as_str() {
            "progress" => {
                assert_eq!(data["total"], json!(5));
                let percent = data["percent"].as_u64().expect("percent is a number");
                assert!(
                    last_percent.is_none_or(|last| percent > last),
                    "progress goes up: {last_percent:?} then {percent}"
                );
                last_percent = Some(percent);
            }
            "done" => {
                assert_eq!(data, json!({"id": 1, "steps": 5}));
                break;
            }
            other => panic!("unexpected event {other:?}"),
        }
    }
    assert_eq!(last_percent, Some(100), "`done` comes after 100%");
    assert!(job.next().await.is_none(), "the stream ends after `done`");

    let reconnect = reqwest::get(&stream_url)
        .await
        .expect("the reconnect answers");
    assert_eq!(reconnect.status(), 204, "a finished job's stream is over");
    let unknown = reqwest::get(format!("{base}/jobs/99/stream"))
        .await
        .expect("answers");
    assert_eq!(unknown.status(), 404);
}

#[tokio::test]
async fn the_dashboard_page_streams_a_snapshot_then_an_update_every_interval() {
    let hub = Hub::new(HubConfig::default());
    let interval = Duration::from_millis(250);
    let base = start(hub.clone(), dashboard::app(hub, interval)).await;

    let page = reqwest::get(&base).await.expect("the page answers");
    assert_eq!(page.status(), 200);
    assert!(page.headers()["content-type"]
        .to_str()
        .expect("ASCII")
        .starts_with("text/html"));
    assert!(page
        .text()
        .await
        .expect("a body")
        .contains("new EventSource(\"/stream\")"));

    let mut viewer = Events::open(&format!("{base}/stream")).await;
    assert_eq!(
        viewer.expect("connected").await["channels"],
        json!(["dashboard"])
    );
    let snapshot = viewer.expect("stats").await;
    assert_eq!(snapshot["viewers"], json!(1), "{snapshot}");
    assert_eq!(snapshot["pageViews"], json!(1), "{snapshot}");
    let first_tick = snapshot["tick"].as_u64().expect("tick is a number");

    let mut arrivals = Vec::new();
    for n in 1..=2 {
        let update = viewer.expect("stats").await;
        arrivals.push(Instant::now());
        assert_eq!(update["tick"], json!(first_tick + n), "{update}");
        assert!(update["uptimeSeconds"].is_u64());
    }
    let gap = arrivals[1] - arrivals[0];
    assert!(
        gap >= interval / 2,
        "updates come about an interval apart, not in a burst: {gap:?}"
    );

    // The HTTP API is nested under /herald, and the hooks counted the viewer.
    let stats = reqwest::get(format!("{base}/herald/api/stats"))
        .await
        .expect("the nested API answers");
    assert_eq!(stats.status(), 200);
    assert_eq!(json_of(stats).await["connections"], json!(1));
}
