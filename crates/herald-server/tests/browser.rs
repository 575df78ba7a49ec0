//! A real headless Chromium reads the hub through its own `EventSource`: the browser judges the
//! wire format, the reconnects and the end of a closed channel.
//!
//! Each test starts a hub, a page server of its own on `127.0.0.1:0` and a headless Chromium that
//! opens the page. The page subscribes to the hub cross-origin (the hub runs with
//! `--cors-origins` set to the page's origin) and posts everything its `EventSource`s see back to
//! the page server, one report at a time and in order. The test publishes over HTTP and asserts on
//! those reports.
//!
//! Requirements: Debian's `chromium` at `/usr/bin/chromium` (`scripts/setup` installs it). Without
//! it the tests fail and say so; set `HERALD_SKIP_BROWSER=1` to skip them instead (each skipped
//! test says so on stderr). The tests take the browser one at a time, each within
//! [`TEST_TIME_BOUND`], and each kills every Chromium process it started, also when it fails.
//!
//! Not covered here: the exact bytes on the wire (the other integration tests read them), and
//! browsers other than Chromium.

mod common;
mod tls_support;

use axum::{extract::State, response::Html, routing::get, Router};
use common::{eventually, http, TestHub};
use serde::Deserialize;
use serde_json::{json, Value};
use std::{
    fs,
    future::Future,
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};
use tokio::{
    net::TcpListener,
    sync::{mpsc, oneshot, Mutex},
    task::JoinHandle,
};

/// Where Debian's `chromium` package installs the browser.
const CHROMIUM_PATH: &str = "/usr/bin/chromium";
/// The environment variable that, set to `1`, skips the browser tests.
const SKIP_BROWSER_ENV: &str = "HERALD_SKIP_BROWSER";
/// Longest a browser test may run once it holds the browser, Chromium's start included.
const TEST_TIME_BOUND: Duration = Duration::from_secs(30);
/// Longest wait for the page to report something; the first wait includes Chromium's start.
const REPORT_PATIENCE: Duration = Duration::from_secs(15);
/// How often a wait for reports also checks that Chromium is still running.
const CHROMIUM_CHECK_INTERVAL: Duration = Duration::from_millis(200);
/// Longest wait for every Chromium process to be gone once the browser is killed.
const CHROMIUM_EXIT_WAIT: Duration = Duration::from_secs(5);
/// The `retry:` the hub announces in the reconnect tests: short, so reconnects come quickly.
const RETRY_INTERVAL_FLAG: &str = "300ms";
/// The same interval, for the waits that give a browser time to reconnect (or not).
const RETRY_INTERVAL: Duration = Duration::from_millis(300);

/// One browser test at a time: Chromium is heavy and the machines that run these have few cores.
static BROWSER_SLOT: Mutex<()> = Mutex::const_new(());
/// Numbers each Chromium's throwaway home directory within this test process.
static NEXT_BROWSER_NUMBER: AtomicU32 = AtomicU32::new(0);

/// The page every test opens. `report` posts one JSON object to `/report`, strictly in order;
/// `watch` reports an `EventSource`'s `open` and `error` events and every event of the given types.
/// The test's own script runs in a second `<script>`, so that even a syntax error in it is
/// reported.
const PAGE_TEMPLATE: &str = r#"<!doctype html>
<html>
<head><meta charset="utf-8"><title>herald browser test</title></head>
<body>
<script>
"use strict";
const HUB = "__HUB__";
let reportsSent = Promise.resolve();
function report(kind, fields) {
  const body = JSON.stringify(Object.assign({ kind }, fields));
  reportsSent = reportsSent
    .then(() => fetch("/report", { method: "POST", body }))
    .catch(() => {});
}
window.addEventListener("error", (e) => report("page-error", { message: String(e.message) }));
function watch(source, eventSource, eventTypes) {
  eventSource.addEventListener("open", () =>
    report("open", { source, readyState: eventSource.readyState }));
  eventSource.addEventListener("error", () =>
    report("error", { source, readyState: eventSource.readyState }));
  for (const type of eventTypes) {
    eventSource.addEventListener(type, (e) =>
      report("event", { source, type: e.type, data: e.data, lastEventId: e.lastEventId }));
  }
  return eventSource;
}
</script>
<script>
"use strict";
__SCRIPT__
</script>
</body>
</html>
"#;

/// The README's first steps: a page served from this machine talks to a hub started with the
/// defaults (loopback, `--auth none`), with no `--cors-origins`: it streams and it publishes
/// (a JSON `fetch`, so a CORS preflight).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_served_from_loopback_works_with_a_hub_started_with_defaults() {
    run_browser_test(
        "a_page_served_from_loopback_works_with_a_hub_started_with_defaults",
        async {
            let page_listener = PageListener::bind().await;
            let hub = TestHub::start(&[]);
            let script = r#"
            const stream = watch("stream", new EventSource(HUB + "/api/channels/orders/stream"),
                                 ["connected", "created"]);
            stream.addEventListener("connected", () => {
              fetch(HUB + "/api/channels/orders/events", {
                method: "POST",
                headers: { "content-type": "application/json" },
                body: JSON.stringify({ event: "created", data: { id: 7 } }),
              }).then((r) => report("published", { status: r.status }),
                      (e) => report("publish-failed", { message: String(e) }));
            });
        "#;
            let mut page = BrowserPage::open(page_listener, &hub, script);
            page.wait_until("the event the page published itself", |reports| {
                count_events(reports, "created") == 1
            })
            .await;
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_tabs_worth_of_streams_share_one_https_origin_over_http2() {
    run_browser_test(
        "ten_tabs_worth_of_streams_share_one_https_origin_over_http2",
        async {
            let cert = tls_support::test_ca().issue("browser");
            let page_listener = PageListener::bind().await;
            let mut args = cert.args();
            args.extend(["--cors-origins".to_owned(), page_listener.origin.clone()]);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let hub = TestHub::start(&args);
            assert!(hub.base.starts_with("https://"));
            // Over HTTP/1.1 a browser opens at most 6 connections to one origin, so the seventh
            // `EventSource` would never open; over HTTP/2 all ten share one connection.
            let script = r#"
                for (let i = 0; i < 10; i++) {
                    watch("tab-" + i, new EventSource(HUB + "/api/channels/tabs/stream"),
                          ["connected", "ping"]);
                }
            "#;
            let mut page = BrowserPage::open(page_listener, &hub, script);
            page.wait_until("ten connected events", |reports| {
                count_events(reports, "connected") == 10
            })
            .await;
            let answer = hub
                .publish(
                    "/api/channels/tabs/events",
                    json!({"event": "ping", "data": 1}),
                )
                .await;
            assert_eq!(answer["recipients"], 10);
            page.wait_until("the event in every stream", |reports| {
                count_events(reports, "ping") == 10
            })
            .await;
            for tab in 0..10 {
                assert_eq!(page.events_of(&format!("tab-{tab}"), "ping").len(), 1);
            }
            page.close();
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_receives_named_events_from_two_channels() {
    run_browser_test("browser_receives_named_events_from_two_channels", async {
        let page_listener = PageListener::bind().await;
        let hub = TestHub::start(&["--cors-origins", &page_listener.origin]);
        let script = r#"
            watch("stream", new EventSource(HUB + "/api/stream?channel=a&channel=b"),
                  ["connected", "created", "updated", "announced", "message"]);
        "#;
        let mut page = BrowserPage::open(page_listener, &hub, script);
        page.wait_until("the connected event", |reports| {
            count_events(reports, "connected") == 1
        })
        .await;

        // A multi-line text: each line becomes a `data:` line, which the browser joins with LF.
        const ANNOUNCEMENT: &str = "maintenance at noon\r\nback by one";
        let created = json!({"event": "created", "data": {"id": 1, "title": "first"}, "id": "a-1"});
        let created = hub.publish("/api/channels/a/events", created).await;
        let updated = json!({"event": "updated", "data": {"id": 1, "status": "done"}});
        let updated = hub.publish("/api/channels/b/events", updated).await;
        let elsewhere = json!({"event": "created", "data": {"id": 2}});
        let elsewhere = hub.publish("/api/channels/c/events", elsewhere).await;
        let announced = json!({"channels": ["a", "b"], "event": "announced", "data": ANNOUNCEMENT});
        let announced = hub.publish("/api/events", announced).await;
        let plain = json!({"data": "plain text: café ✓"});
        let plain = hub.publish("/api/channels/a/events", plain).await;
        let recipients: Vec<_> = [&created, &updated, &elsewhere, &announced, &plain]
            .iter()
            .map(|answer| answer["recipients"].clone())
            .collect();
        assert_eq!(
            recipients,
            [json!(1), json!(1), json!(0), json!(1), json!(1)],
            "recipients per publish"
        );

        page.wait_until("the unnamed event", |reports| {
            count_events(reports, "message") >= 1
        })
        .await;
        page.collect_for(RETRY_INTERVAL).await;

        let received: Vec<_> = page
            .reports_of("stream")
            .iter()
            .map(|r| r.describe())
            .collect();
        assert_eq!(
            received,
            [
                "open readyState=1".to_owned(),
                r#"connected channels=["a","b"] resumed=false"#.to_owned(),
                r#"created {"id":1,"title":"first"} #a-1"#.to_owned(),
                format!(r#"updated {{"id":1,"status":"done"}} #{}"#, id_of(&updated)),
                format!(
                    "announced \"maintenance at noon\\nback by one\" #{}",
                    id_of(&announced)
                ),
                format!("message \"plain text: café ✓\" #{}", id_of(&plain)),
            ],
            "what the browser received, in order"
        );

        let connected = &page.events_of("stream", "connected")[0];
        let client_id = connected.data_json()["clientId"]
            .as_str()
            .expect("connected names the client")
            .to_owned();
        let clients = hub.get_json("/api/clients").await;
        let listed: Vec<_> = clients["clients"]
            .as_array()
            .expect("the client list is an array")
            .iter()
            .map(|client| (client["id"].clone(), client["channels"].clone()))
            .collect();
        assert_eq!(
            listed,
            [(json!(client_id), json!(["a", "b"]))],
            "the hub lists the browser's one connection"
        );
        page.close();
    })
    .await;
}

/// A browser's `EventSource` as a Mercure subscriber, cross-origin (`--mercure-cors-origins`):
/// a URI template and a URL pattern, anonymous and with draft-07's `authorization` query
/// parameter; only the token's holder sees the private update.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_subscribes_to_mercure_topics() {
    run_browser_test("browser_subscribes_to_mercure_topics", async {
        const SECRET: &str = "!ChangeThisMercureHubJWTSecretKey!";
        let page_listener = PageListener::bind().await;
        let hub = TestHub::start(&[
            "--mercure",
            "--mercure-anonymous",
            "--mercure-publisher-jwt-key",
            SECRET,
            "--mercure-cors-origins",
            &page_listener.origin,
        ]);
        let key = jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes());
        let sign = |claims: Value| {
            jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key)
                .expect("a token")
        };
        let reader = sign(json!({"mercure": {"subscribe": ["https://example.com/books/{id}"]}}));
        let publisher = sign(json!({"mercure": {"publish": ["*"]}}));
        let script = format!(
            r#"
            const url = (query) => HUB + "/.well-known/mercure?" + new URLSearchParams(query);
            watch("anonymous", new EventSource(url([["topic", "https://example.com/books/{{id}}"]])),
                  ["message", "book.updated"]);
            watch("reader", new EventSource(url([
                    ["match_urlpattern", "https://example.com/books/:id"],
                    ["authorization", "{reader}"]])),
                  ["message", "book.updated"]);
            "#
        );
        let mut page = BrowserPage::open(page_listener, &hub, &script);
        page.wait_until("both streams open", |reports| {
            reports.iter().filter(|r| r.kind == "open").count() == 2
        })
        .await;
        let publish = |body: &'static str| {
            http()
                .post(hub.url("/.well-known/mercure"))
                .header("authorization", format!("Bearer {publisher}"))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body)
                .send()
        };
        for body in [
            "topic=https%3A%2F%2Fexample.com%2Fbooks%2F1&type=book.updated&id=book-1-v2&data=%7B%22v%22%3A2%7D",
            "topic=https%3A%2F%2Fexample.com%2Fbooks%2F1&private=on&id=book-1-secret&data=secret",
            "topic=https%3A%2F%2Fexample.com%2Fbooks%2F2&id=book-2&data=line%201%0Aline%202",
        ] {
            let answer = publish(body).await.expect("the hub answers");
            assert_eq!(answer.status().as_u16(), 200);
        }
        page.wait_until("every event", |reports| {
            reports.iter().filter(|r| r.kind == "event").count() == 5
        })
        .await;
        page.collect_for(RETRY_INTERVAL).await;
        let describe = |source: &str| -> Vec<String> {
            page.reports_of(source).iter().map(|r| r.describe()).collect()
        };
        assert_eq!(
            describe("anonymous"),
            [
                "open readyState=1",
                r#"book.updated {"v":2} #book-1-v2"#,
                "message \"line 1\\nline 2\" #book-2",
            ]
        );
        assert_eq!(
            describe("reader"),
            [
                "open readyState=1",
                r#"book.updated {"v":2} #book-1-v2"#,
                "message \"secret\" #book-1-secret",
                "message \"line 1\\nline 2\" #book-2",
            ]
        );
        page.close();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_reconnects_after_the_hub_drops_it_and_misses_nothing() {
    /// Events published in all.
    const EVENT_COUNT: usize = 50;
    /// Events the page must have received before the hub drops it.
    const RECEIVED_BEFORE_DROP: usize = 10;
    /// The first event published after the drop; it waits for the drop.
    const FIRST_EVENT_AFTER_DROP: usize = 21;
    /// Pause between two publishes: the events after the drop span the browser's reconnect.
    const PUBLISH_PAUSE: Duration = Duration::from_millis(20);

    run_browser_test(
        "browser_reconnects_after_the_hub_drops_it_and_misses_nothing",
        async {
            let page_listener = PageListener::bind().await;
            let hub = TestHub::start(&[
                "--cors-origins",
                &page_listener.origin,
                "--retry-interval",
                RETRY_INTERVAL_FLAG,
            ]);
            let script = r#"
            const feed = new EventSource(HUB + "/api/channels/feed/stream");
            watch("feed", feed, ["connected", "message"]);
        "#;
            let mut page = BrowserPage::open(page_listener, &hub, script);
            page.wait_until("the connected event", |reports| {
                count_events(reports, "connected") == 1
            })
            .await;
            let first_connected = page.events_of("feed", "connected")[0].data_json();
            let dropped_client = first_connected["clientId"]
                .as_str()
                .expect("connected names the client")
                .to_owned();

            let (dropped_tx, dropped_rx) = oneshot::channel::<()>();
            let publishing = async {
                let mut dropped_rx = Some(dropped_rx);
                let mut ids = Vec::new();
                for n in 1..=EVENT_COUNT {
                    if n == FIRST_EVENT_AFTER_DROP {
                        let dropped_rx = dropped_rx.take().expect("the drop is awaited once");
                        dropped_rx
                            .await
                            .expect("the dropping side reports the drop");
                    }
                    let answer = hub
                        .publish("/api/channels/feed/events", json!({"data": n}))
                        .await;
                    ids.push(id_of(&answer));
                    tokio::time::sleep(PUBLISH_PAUSE).await;
                }
                ids
            };
            let dropping = async {
                page.wait_until("the first events", |reports| {
                    count_events(reports, "message") >= RECEIVED_BEFORE_DROP
                })
                .await;
                let response = http()
                    .delete(hub.url(&format!("/api/clients/{dropped_client}")))
                    .send()
                    .await
                    .expect("DELETE reaches the hub");
                assert_eq!(
                    response.status().as_u16(),
                    204,
                    "dropping the browser's connection"
                );
                dropped_tx
                    .send(())
                    .expect("the publisher waits for the drop");
                page.wait_until("every event and a second connected event", |reports| {
                    count_events(reports, "message") >= EVENT_COUNT
                        && count_events(reports, "connected") == 2
                })
                .await;
            };
            let (ids, ()) = tokio::join!(publishing, dropping);
            page.collect_for(RETRY_INTERVAL).await;

            let messages = page.events_of("feed", "message");
            let received: Vec<_> = messages.iter().map(|m| m.data.clone()).collect();
            let expected: Vec<_> = (1..=EVENT_COUNT).map(|n| n.to_string()).collect();
            assert_eq!(received, expected, "every event exactly once, in order");
            let last_event_ids: Vec<_> = messages.iter().map(|m| m.last_event_id.clone()).collect();
            assert_eq!(
                last_event_ids, ids,
                "each event carries the id the hub gave it"
            );

            let lifecycle: Vec<_> = page
                .reports_of("feed")
                .iter()
                .filter(|r| !r.is_event("message"))
                .map(|r| r.describe())
                .collect();
            assert_eq!(
                lifecycle,
                [
                    "open readyState=1",
                    r#"connected channels=["feed"] resumed=false"#,
                    "error readyState=0",
                    "open readyState=1",
                    r#"connected channels=["feed"] resumed=true"#,
                ],
                "one drop, one reconnect that resumed"
            );
            let feed = page.reports_of("feed");
            let reconnect = feed
                .iter()
                .rposition(|r| r.is_event("connected"))
                .expect("a second connected event");
            let before_drop = feed[..reconnect]
                .iter()
                .rev()
                .find(|r| r.is_event("message"))
                .expect("events came before the drop");
            assert_eq!(
                feed[reconnect].last_event_id, before_drop.last_event_id,
                "the browser resumed from the last event it saw"
            );

            let clients = hub.get_json("/api/clients").await;
            let ids_now: Vec<_> = clients["clients"]
                .as_array()
                .expect("the client list is an array")
                .iter()
                .map(|c| c["id"].clone())
                .collect();
            assert_eq!(
                ids_now.len(),
                1,
                "one connection after the reconnect: {clients}"
            );
            assert_ne!(
                ids_now[0],
                json!(dropped_client),
                "the dropped connection is gone"
            );
            page.close();
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_stops_reconnecting_to_a_closed_channel() {
    run_browser_test("browser_stops_reconnecting_to_a_closed_channel", async {
        let page_listener = PageListener::bind().await;
        let hub = TestHub::start(&[
            "--cors-origins",
            &page_listener.origin,
            "--retry-interval",
            RETRY_INTERVAL_FLAG,
        ]);
        // The second EventSource subscribes from scratch once the first has given up.
        let script = r#"
            const types = ["connected", "message", "done"];
            const first = watch("first", new EventSource(HUB + "/api/channels/job1/stream"), types);
            first.addEventListener("error", () => {
              if (first.readyState === EventSource.CLOSED) {
                watch("second", new EventSource(HUB + "/api/channels/job1/stream"), types);
              }
            });
        "#;
        let mut page = BrowserPage::open(page_listener, &hub, script);
        page.wait_until("the connected event", |reports| {
            count_events(reports, "connected") == 1
        })
        .await;

        let progress = hub
            .publish("/api/channels/job1/events", json!({"data": "working"}))
            .await;
        let (status, closed) = hub
            .post(
                "/api/channels/job1/close",
                json!({"event": "done", "data": {"ok": true}}),
            )
            .await;
        assert_eq!(status, 200, "closing the channel answered {closed}");
        assert_eq!(
            closed["recipients"],
            json!(1),
            "the browser is the final event's one recipient"
        );

        page.wait_until("the second EventSource to give up", |reports| {
            reports
                .iter()
                .any(|r| r.source == "second" && r.kind == "error" && r.ready_state == 2)
        })
        .await;
        // A browser that still reconnected would do so within the retry interval.
        page.collect_for(RETRY_INTERVAL * 3).await;

        let first: Vec<_> = page
            .reports_of("first")
            .iter()
            .map(|r| r.describe())
            .collect();
        assert_eq!(
            first,
            [
                "open readyState=1".to_owned(),
                r#"connected channels=["job1"] resumed=false"#.to_owned(),
                format!("message \"working\" #{}", id_of(&progress)),
                format!(r#"done {{"ok":true}} #{}"#, id_of(&closed)),
                "error readyState=0".to_owned(),
                "error readyState=2".to_owned(),
            ],
            "the final event, one reconnect that got 204, then CLOSED"
        );
        let second: Vec<_> = page
            .reports_of("second")
            .iter()
            .map(|r| r.describe())
            .collect();
        assert_eq!(
            second,
            ["error readyState=2"],
            "a new subscription to a closed channel never opens"
        );

        eventually("the hub has no connection left", || async {
            hub.stats().await["connections"] == json!(0)
        })
        .await;
        page.close();
    })
    .await;
}

// ---- harness -------------------------------------------------------------------------------

/// Runs one browser test: skips it when `HERALD_SKIP_BROWSER=1`, fails when Chromium is missing,
/// waits for the browser slot, then bounds the test's time.
///
/// # Panics
/// When Chromium is missing, when `test` panics, or when it outlasts [`TEST_TIME_BOUND`].
async fn run_browser_test(name: &str, test: impl Future<Output = ()>) {
    if std::env::var(SKIP_BROWSER_ENV).as_deref() == Ok("1") {
        eprintln!("{name}: skipped because {SKIP_BROWSER_ENV}=1");
        return;
    }
    assert!(
        Path::new(CHROMIUM_PATH).exists(),
        "{CHROMIUM_PATH} is missing: install Debian's `chromium` (scripts/setup does), \
         or set {SKIP_BROWSER_ENV}=1 to skip the browser tests"
    );
    let _slot = BROWSER_SLOT.lock().await;
    let started = Instant::now();
    if tokio::time::timeout(TEST_TIME_BOUND, test).await.is_err() {
        panic!("{name} did not finish within {TEST_TIME_BOUND:?}");
    }
    eprintln!("{name}: browser part took {:?}", started.elapsed());
}

/// The page server's socket, bound before the hub starts because the hub must know its origin.
struct PageListener {
    listener: TcpListener,
    /// `http://127.0.0.1:PORT`, the origin the hub must allow.
    origin: String,
}

impl PageListener {
    async fn bind() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding 127.0.0.1:0 succeeds");
        let port = listener
            .local_addr()
            .expect("a bound socket has an address")
            .port();
        Self {
            listener,
            origin: format!("http://127.0.0.1:{port}"),
        }
    }
}

/// What the page reported about one of its `EventSource`s (or about itself).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Report {
    /// `open`, `error` or `event` from an `EventSource`; `page-error` when the page's script
    /// failed.
    kind: String,
    /// Which of the page's `EventSource`s it is about.
    #[serde(default)]
    source: String,
    /// The event's type: its `event:` name, or `message` (`event` reports only).
    #[serde(rename = "type", default)]
    event_type: String,
    /// The event's data as the browser assembled it (`event` reports only).
    #[serde(default)]
    data: String,
    /// The browser's last event id when the event fired (`event` reports only).
    #[serde(default)]
    last_event_id: String,
    /// `EventSource.readyState` when it was reported: 0 connecting, 1 open, 2 closed.
    #[serde(default)]
    ready_state: u8,
    /// What went wrong (`page-error` reports only).
    #[serde(default)]
    message: String,
}

impl Report {
    fn is_event(&self, event_type: &str) -> bool {
        self.kind == "event" && self.event_type == event_type
    }

    /// The data parsed as JSON; data that is no JSON becomes a JSON string.
    fn data_json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap_or_else(|_| Value::String(self.data.clone()))
    }

    /// One line for exact assertions: `open readyState=1`, `created {"id":1} #a-1`, or for the
    /// `connected` event (whose client id is random) `connected channels=[..] resumed=false`.
    fn describe(&self) -> String {
        match self.kind.as_str() {
            "event" if self.event_type == "connected" => {
                let data = self.data_json();
                format!(
                    "connected channels={} resumed={}",
                    data["channels"], data["resumed"]
                )
            }
            "event" => format!(
                "{} {} #{}",
                self.event_type,
                self.data_json(),
                self.last_event_id
            ),
            kind => format!("{kind} readyState={}", self.ready_state),
        }
    }
}

/// How many events of `event_type` the reports hold, from any `EventSource`.
fn count_events(reports: &[Report], event_type: &str) -> usize {
    reports.iter().filter(|r| r.is_event(event_type)).count()
}

/// The event id in a publish answer.
fn id_of(answer: &Value) -> String {
    answer["id"]
        .as_str()
        .expect("a publish answer has an id")
        .to_owned()
}

/// A page open in headless Chromium, and everything it has reported so far.
struct BrowserPage {
    reports_rx: mpsc::UnboundedReceiver<Report>,
    reports: Vec<Report>,
    server: JoinHandle<()>,
    chromium: Chromium,
}

impl BrowserPage {
    /// Serves the page with `script` on `listener` and opens it in a new Chromium. The script sees
    /// the hub's base URL as `HUB` and the page's `watch` and `report` functions.
    fn open(listener: PageListener, hub: &TestHub, script: &str) -> Self {
        let html = PAGE_TEMPLATE
            .replace("__HUB__", &hub.base)
            .replace("__SCRIPT__", script);
        let (reports_tx, reports_rx) = mpsc::unbounded_channel();
        let router = Router::new()
            .route("/", get(move || async move { Html(html) }))
            .route("/report", axum::routing::post(receive_report))
            .with_state(reports_tx);
        let server = tokio::spawn(async move {
            axum::serve(listener.listener, router)
                .await
                .expect("the page server runs until aborted");
        });
        let chromium = Chromium::launch(&format!("{}/", listener.origin));
        Self {
            reports_rx,
            reports: Vec::new(),
            server,
            chromium,
        }
    }

    /// Collects reports until `is_done` holds for all of them.
    ///
    /// # Panics
    /// When [`REPORT_PATIENCE`] passes first, when Chromium exits, or when the page reports an
    /// error.
    async fn wait_until(&mut self, what: &str, is_done: impl Fn(&[Report]) -> bool) {
        let deadline = tokio::time::Instant::now() + REPORT_PATIENCE;
        while !is_done(&self.reports) {
            if let Some(status) = self.chromium.exit_status() {
                panic!(
                    "chromium exited ({status}) while waiting for {what}\n{}",
                    self.context()
                );
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                panic!(
                    "timed out after {REPORT_PATIENCE:?} waiting for {what}\n{}",
                    self.context()
                );
            }
            let wake = deadline.min(now + CHROMIUM_CHECK_INTERVAL);
            if let Ok(report) = tokio::time::timeout_at(wake, self.reports_rx.recv()).await {
                self.record(report.expect("the page server keeps the report sender while it runs"));
            }
        }
    }

    /// Collects whatever the page reports during `period`.
    async fn collect_for(&mut self, period: Duration) {
        let deadline = tokio::time::Instant::now() + period;
        while let Ok(report) = tokio::time::timeout_at(deadline, self.reports_rx.recv()).await {
            self.record(report.expect("the page server keeps the report sender while it runs"));
        }
    }

    fn record(&mut self, report: Report) {
        if report.kind == "page-error" {
            panic!(
                "the page's script failed: {}\n{}",
                report.message,
                self.context()
            );
        }
        self.reports.push(report);
    }

    /// Every report about the `EventSource` named `source`, in order.
    fn reports_of(&self, source: &str) -> Vec<Report> {
        self.reports
            .iter()
            .filter(|r| r.source == source)
            .cloned()
            .collect()
    }

    /// The events of `event_type` that `source` received, in order.
    fn events_of(&self, source: &str, event_type: &str) -> Vec<Report> {
        self.reports
            .iter()
            .filter(|r| r.source == source && r.is_event(event_type))
            .cloned()
            .collect()
    }

    /// The reports so far and the end of Chromium's log, for a failure message.
    fn context(&self) -> String {
        let reports: Vec<_> = self
            .reports
            .iter()
            .map(|r| format!("  {} {}", r.source, r.describe()))
            .collect();
        format!(
            "page reports:\n{}\nchromium log (end):\n{}",
            reports.join("\n"),
            self.chromium.log_tail()
        )
    }

    /// Kills Chromium and checks that none of its processes is left.
    ///
    /// # Panics
    /// When a Chromium process outlives [`CHROMIUM_EXIT_WAIT`].
    fn close(mut self) {
        let left = self.chromium.kill_all();
        assert!(
            left.is_empty(),
            "chromium processes still alive after being killed: {left:?}"
        );
    }
}

impl Drop for BrowserPage {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// `POST /report`: one report from the page, as JSON (sent as text, so it needs no preflight).
async fn receive_report(State(reports_tx): State<mpsc::UnboundedSender<Report>>, body: String) {
    let report = serde_json::from_str(&body).unwrap_or_else(|err| Report {
        kind: "page-error".to_owned(),
        source: String::new(),
        event_type: String::new(),
        data: String::new(),
        last_event_id: String::new(),
        ready_state: 0,
        message: format!("unreadable report {body:?}: {err}"),
    });
    // The test may be finished with the page already; later reports go nowhere.
    let _ = reports_tx.send(report);
}

/// A headless Chromium in a process group of its own, with a throwaway home and profile.
/// Dropping it kills every one of its processes and removes its directory.
struct Chromium {
    child: Child,
    /// The browser's `HOME`: profile, caches, crash database and `chromium.log` all live here, so
    /// the path also marks its helper processes that leave the process group.
    home: PathBuf,
}

impl Chromium {
    fn launch(url: &str) -> Self {
        let number = NEXT_BROWSER_NUMBER.fetch_add(1, Ordering::Relaxed);
        let home =
            std::env::temp_dir().join(format!("herald-browser-{}-{number}", std::process::id()));
        let _ = fs::remove_dir_all(&home);
        fs::create_dir_all(home.join("profile")).expect("the temp directory is writable");
        let log =
            fs::File::create(home.join("chromium.log")).expect("the temp directory is writable");
        let child = Command::new(CHROMIUM_PATH)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
                // The HTTPS tests' hub presents a certificate of the test run's own authority.
                "--ignore-certificate-errors",
            ])
            .arg(format!(
                "--user-data-dir={}",
                home.join("profile").display()
            ))
            .arg(url)
            .env("HOME", &home)
            .env("XDG_CONFIG_HOME", home.join("config"))
            .env("XDG_CACHE_HOME", home.join("cache"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|err| panic!("{CHROMIUM_PATH} could not be started: {err}"));
        Self { child, home }
    }

    /// The browser's exit status, if it has exited.
    fn exit_status(&mut self) -> Option<ExitStatus> {
        self.child
            .try_wait()
            .expect("waiting on a child of this process works")
    }

    /// The last lines of Chromium's log, without its complaints about the missing D-Bus.
    fn log_tail(&self) -> String {
        let log = fs::read_to_string(self.home.join("chromium.log")).unwrap_or_default();
        let lines: Vec<_> = log.lines().filter(|line| !line.contains("dbus")).collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Kills the browser and every process of its group or its home, then waits for them to go.
    /// Returns the ids of any still alive after [`CHROMIUM_EXIT_WAIT`].
    fn kill_all(&mut self) -> Vec<u32> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let deadline = Instant::now() + CHROMIUM_EXIT_WAIT;
        loop {
            let left = self.processes();
            if left.is_empty() || Instant::now() >= deadline {
                return left;
            }
            let _ = Command::new("sh")
                .arg("-c")
                .arg(r#"kill -s KILL "$@" 2>/dev/null"#)
                .arg("sh")
                .args(left.iter().map(u32::to_string))
                .status();
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Live (not zombie) processes in the browser's process group or started with its home in
    /// their command line.
    fn processes(&self) -> Vec<u32> {
        let group = self.child.id();
        let home = self.home.to_string_lossy().into_owned();
        let Ok(entries) = fs::read_dir("/proc") else {
            return Vec::new();
        };
        entries
            .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .filter(|&pid| pid != std::process::id())
            .filter(|&pid| {
                let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
                    return false;
                };
                // After the command name in parentheses: state, parent id, process group id.
                let mut fields = stat
                    .rsplit_once(')')
                    .map(|(_, rest)| rest)
                    .unwrap_or_default()
                    .split_whitespace();
                let state = fields.next().unwrap_or("Z");
                let process_group = fields.nth(1).and_then(|g| g.parse::<u32>().ok());
                if state == "Z" || state == "X" {
                    return false;
                }
                process_group == Some(group)
                    || fs::read(format!("/proc/{pid}/cmdline"))
                        .is_ok_and(|cmdline| String::from_utf8_lossy(&cmdline).contains(&home))
            })
            .collect()
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        let _ = self.kill_all();
        let _ = fs::remove_dir_all(&self.home);
    }
}
