//! The admin dashboard at `/admin/`: its sign-in, its CSRF and origin checks over plain HTTP, and
//! the page itself in a real headless Chromium, against a standalone hub and a two-node cluster.
//!
//! The browser is driven over the DevTools protocol on a pipe (`--remote-debugging-pipe`: fd 3
//! in, fd 4 out, NUL-separated JSON), so the test types into the real form, clicks the real
//! buttons and reads the real DOM. Requirements: Debian's `chromium` at `/usr/bin/chromium`, and
//! `redis-server` for the cluster test; `HERALD_SKIP_BROWSER=1` skips the browser tests.
//! `HERALD_WRITE_SCREENSHOT=1` also writes the standalone page to `docs/dashboard.png`.
//!
//! Not covered here: a peer other than loopback in `none` mode (the unit tests of the guard
//! cover the check), and TLS (`Secure` cookies).

mod common;

use common::{eventually, http, RedisServer, SseStream, TestHub};
use serde_json::{json, Value};
use std::{
    fs,
    io::{Read, Write},
    os::unix::process::CommandExt,
    path::PathBuf,
    process::{Child, ChildStdin, Command, Stdio},
    sync::{
        atomic::{AtomicU32, Ordering},
        mpsc,
    },
    time::{Duration, Instant},
};
use tokio::sync::Mutex;

const API_KEY: &str = "dashboard-test-key-0123456789";
const CHROMIUM_PATH: &str = "/usr/bin/chromium";
const SKIP_BROWSER_ENV: &str = "HERALD_SKIP_BROWSER";
const SCREENSHOT_ENV: &str = "HERALD_WRITE_SCREENSHOT";
/// Longest wait for one DevTools answer (Chromium's start included).
const DEVTOOLS_PATIENCE: Duration = Duration::from_secs(30);
/// Longest wait for the page to show something: generous, for a loaded machine.
const PAGE_PATIENCE: Duration = Duration::from_secs(30);

/// One browser at a time: Chromium is heavy and these machines have few cores.
static BROWSER_SLOT: Mutex<()> = Mutex::const_new(());
static NEXT_BROWSER_NUMBER: AtomicU32 = AtomicU32::new(0);

// ---------------------------------------------------------------------------------------------
// Plain HTTP: sign-in, cookie, CSRF, origin.

/// Signs in with `credential` from `origin`; returns the answer.
async fn sign_in(hub: &TestHub, credential: &str, origin: Option<&str>) -> reqwest::Response {
    let mut request = http()
        .post(hub.url("/admin/session"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("credential={credential}"));
    if let Some(origin) = origin {
        request = request.header("origin", origin);
    }
    request.send().await.expect("the hub answers")
}

async fn error_code(answer: reqwest::Response) -> (u16, String) {
    let status = answer.status().as_u16();
    let body: Value = answer.json().await.unwrap_or(Value::Null);
    (
        status,
        body["error"]["code"].as_str().unwrap_or("").to_owned(),
    )
}

/// Signs in with the API key; returns the `Cookie` header value and the CSRF token.
async fn signed_in(hub: &TestHub) -> (String, String) {
    let answer = sign_in(hub, API_KEY, Some(&hub.base)).await;
    assert_eq!(answer.status().as_u16(), 200);
    let set_cookie = answer
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .expect("signing in sets the cookie")
        .to_owned();
    let body: Value = answer.json().await.expect("JSON");
    let cookie = set_cookie.split(';').next().expect("a pair").to_owned();
    (
        cookie,
        body["csrf"].as_str().expect("a CSRF token").to_owned(),
    )
}

#[tokio::test]
async fn signing_in_takes_an_admin_credential_and_sets_a_strict_cookie_without_it() {
    let hub = TestHub::start(&["--api-keys", API_KEY]);
    let (status, code) =
        error_code(sign_in(&hub, "not-the-key-0123456789", Some(&hub.base)).await).await;
    assert_eq!((status, code.as_str()), (401, "unauthorized"));
    let (status, code) = error_code(sign_in(&hub, "", Some(&hub.base)).await).await;
    assert_eq!((status, code.as_str()), (401, "unauthorized"));
    let (status, code) = error_code(sign_in(&hub, API_KEY, None).await).await;
    assert_eq!((status, code.as_str()), (403, "cross_origin"), "login CSRF");
    let (status, code) =
        error_code(sign_in(&hub, API_KEY, Some("http://evil.example")).await).await;
    // The hub-wide origin check answers before the dashboard's own.
    assert_eq!((status, code.as_str()), (403, "origin_not_allowed"));

    let answer = sign_in(&hub, API_KEY, Some(&hub.base)).await;
    assert_eq!(answer.status().as_u16(), 200);
    let set_cookie = answer.headers()["set-cookie"]
        .to_str()
        .expect("ascii")
        .to_owned();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/admin"] {
        assert!(set_cookie.contains(attribute), "{set_cookie}");
    }
    assert!(
        !set_cookie.contains(API_KEY),
        "the cookie never holds the credential"
    );
    assert!(
        !set_cookie.contains("Secure"),
        "a plain-HTTP page gets no Secure cookie"
    );

    let (cookie, csrf) = signed_in(&hub).await;
    let info: Value = http()
        .get(hub.url("/admin/session"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("the hub answers")
        .json()
        .await
        .expect("JSON");
    assert_eq!(info["csrf"], csrf.as_str());
    let (status, code) = error_code(
        http()
            .get(hub.url("/admin/session"))
            .header("cookie", "herald_admin=0123")
            .send()
            .await
            .expect("the hub answers"),
    )
    .await;
    assert_eq!((status, code.as_str()), (401, "unauthorized"));
}

#[tokio::test]
async fn an_open_hub_lets_loopback_sign_in_without_a_credential() {
    let hub = TestHub::start(&[]);
    let answer = sign_in(&hub, "", Some(&hub.base)).await;
    assert_eq!(
        answer.status().as_u16(),
        200,
        "none auth, no keys, loopback"
    );
}

#[tokio::test]
async fn actions_need_the_csrf_token_and_the_same_origin_and_change_nothing_otherwise() {
    let hub = TestHub::start(&["--api-keys", API_KEY]);
    let (cookie, csrf) = signed_in(&hub).await;
    let mut subscriber = hub.stream("/api/channels/orders/stream").await;
    subscriber.connected().await;
    let client = first_client_id(&hub).await;
    let disconnect = |csrf: Option<&str>, origin: &str| {
        let mut request = http()
            .delete(hub.url(&format!("/admin/clients/{client}")))
            .header("cookie", &cookie)
            .header("origin", origin);
        if let Some(csrf) = csrf {
            request = request.header("x-csrf-token", csrf);
        }
        request.send()
    };
    let refused = disconnect(None, &hub.base).await.expect("the hub answers");
    assert_eq!(error_code(refused).await, (403, "csrf".to_owned()));
    let refused = disconnect(Some("0000"), &hub.base)
        .await
        .expect("the hub answers");
    assert_eq!(error_code(refused).await, (403, "csrf".to_owned()));
    let refused = disconnect(Some(&csrf), "http://evil.example")
        .await
        .expect("answers");
    // The hub-wide origin check answers before the dashboard's own.
    assert_eq!(
        error_code(refused).await,
        (403, "origin_not_allowed".to_owned())
    );
    let publish = http()
        .post(hub.url("/admin/channels/orders/events"))
        .header("cookie", &cookie)
        .header("origin", &hub.base)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("data=forged")
        .send()
        .await
        .expect("the hub answers");
    assert_eq!(error_code(publish).await, (403, "csrf".to_owned()));
    let stats = admin_get(&hub, "/api/stats").await;
    assert_eq!(stats["connections"], 1, "nothing was disconnected");
    assert_eq!(stats["eventsPublished"], 0, "nothing was published");

    let accepted = disconnect(Some(&csrf), &hub.base)
        .await
        .expect("the hub answers");
    assert_eq!(accepted.status().as_u16(), 204);
    eventually("the client is gone", || async {
        admin_get(&hub, "/api/stats").await["connections"] == 0
    })
    .await;
}

#[tokio::test]
async fn a_feed_without_a_session_says_signed_out_and_ends() {
    let hub = TestHub::start(&["--api-keys", API_KEY]);
    let mut feed = SseStream::open(&hub.url("/admin/feed"), &[]).await;
    let events = feed.events_until_end().await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].event, "signed-out");
    let error: Value = serde_json::from_str(&events[0].data).expect("a JSON error");
    assert_eq!(error["error"]["code"], "unauthorized");

    let (cookie, _) = signed_in(&hub).await;
    let mut feed = SseStream::open(&hub.url("/admin/feed"), &[("cookie", &cookie)]).await;
    let event = feed.next_event().await;
    assert_eq!(event.event, "figures");
    let figures: Value = serde_json::from_str(&event.data).expect("JSON figures");
    assert_eq!(figures["node"]["node"], "standalone");
    assert_eq!(figures["node"]["connections"], 0);
    assert_eq!(
        figures["retention"]["max_age"], "1h",
        "the default history age"
    );
}

#[tokio::test]
async fn a_signed_in_feed_ends_when_the_hub_shuts_down() {
    let mut hub = TestHub::start(&["--api-keys", API_KEY]);
    let (cookie, _) = signed_in(&hub).await;
    let mut feed = SseStream::open(&hub.url("/admin/feed"), &[("cookie", &cookie)]).await;
    assert_eq!(feed.next_event().await.event, "figures");
    let status = hub.signal_and_wait("TERM", Duration::from_secs(10));
    assert!(
        status.is_some_and(|s| s.success()),
        "the hub stops with a feed open: {status:?}"
    );
    assert!(
        !hub.log()
            .iter()
            .any(|line| line.contains("still open after the grace period")),
        "the feed ended by itself, before the grace period ran out"
    );
    feed.events_until_end().await;
    assert!(feed.is_ended());
}

async fn admin_get(hub: &TestHub, path: &str) -> Value {
    http()
        .get(hub.url(path))
        .bearer_auth(API_KEY)
        .send()
        .await
        .expect("the hub answers")
        .json()
        .await
        .expect("JSON")
}

async fn first_client_id(hub: &TestHub) -> String {
    let clients = admin_get(hub, "/api/clients").await;
    clients["clients"][0]["id"]
        .as_str()
        .expect("a connected client")
        .to_owned()
}

async fn publish(hub: &TestHub, channel: &str, data: &str) -> Value {
    let answer = http()
        .post(hub.url(&format!("/api/channels/{channel}/events")))
        .bearer_auth(API_KEY)
        .json(&json!({"data": data}))
        .send()
        .await
        .expect("the hub answers");
    assert_eq!(answer.status().as_u16(), 200);
    answer.json().await.expect("JSON")
}

// ---------------------------------------------------------------------------------------------
// The page in Chromium.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_follows_a_standalone_hub_and_its_buttons_act() {
    let Some(_slot) = browser_slot("the_page_follows_a_standalone_hub_and_its_buttons_act").await
    else {
        return;
    };
    let hub = TestHub::start(&["--api-keys", API_KEY]);
    let mut page = Page::open(&hub.url("/admin/"));
    page.wait_for(
        "the sign-in form",
        "!document.getElementById('signin').hidden",
    )
    .await;

    page.sign_in("wrong-key-0123456789");
    page.wait_for(
        "the sign-in error",
        "document.getElementById('signin-error').textContent.includes('unauthorized')",
    )
    .await;
    page.sign_in(API_KEY);
    page.wait_for(
        "the first figures",
        "Number(document.body.dataset.updates) >= 1",
    )
    .await;

    let mut subscribers = Vec::new();
    for channel in ["orders", "orders", "news"] {
        let mut stream = hub.stream(&format!("/api/channels/{channel}/stream")).await;
        stream.connected().await;
        subscribers.push(stream);
    }
    for n in 0..3 {
        publish(&hub, "orders", &format!("order {n}")).await;
    }
    page.wait_until_it_matches_the_api(&hub).await;
    page.wait_for(
        "orders ranked first with 2 subscribers",
        "(() => { const row = document.querySelector('#channels tbody tr');
           return row && row.dataset.channel === 'orders' && row.cells[1].textContent === '2'; })()",
    )
    .await;
    page.wait_for(
        "three clients listed, with their address and age",
        "(() => { const rows = [...document.querySelectorAll('#clients tbody tr')];
           return rows.length === 3 && rows.every((r) =>
             r.cells[3].textContent.startsWith('127.0.0.1:') && /^\\d+s$/.test(r.cells[5].textContent)); })()",
    )
    .await;

    // The publish form reaches a subscriber; the channel panel shows the event.
    page.eval("watch('orders'); true");
    page.wait_for(
        "the channel watch connected",
        "document.querySelectorAll('#clients tbody tr').length === 4",
    )
    .await;
    page.eval(
        "document.getElementById('publish-event').value = 'note';
         document.getElementById('publish-data').value = 'from the dashboard';
         document.getElementById('publish-form').requestSubmit(); true",
    );
    let mut event = subscribers[0].next_event().await;
    while event.data.starts_with("order ") {
        event = subscribers[0].next_event().await;
    }
    assert_eq!(
        (event.event.as_str(), event.data.as_str()),
        ("note", "from the dashboard")
    );
    page.wait_for(
        "the event in the channel panel",
        "document.getElementById('channel-events').textContent.includes('note: from the dashboard')",
    )
    .await;
    page.wait_until_it_matches_the_api(&hub).await;

    // A request without the CSRF token is refused, from the page itself.
    let refused = page.eval(
        "fetch('clients/anyone', {method: 'DELETE'}).then(async (a) => [a.status, (await a.json()).error.code])",
    );
    assert_eq!(refused, json!([403, "csrf"]));

    if std::env::var(SCREENSHOT_ENV).as_deref() == Ok("1") {
        for n in 0..60u64 {
            let channel = if n % 3 == 0 { "news" } else { "orders" };
            for _ in 0..(n % 7) {
                publish(&hub, channel, &format!("tick {n}")).await;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        page.wait_until_it_matches_the_api(&hub).await;
        page.screenshot(
            &PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/dashboard.png"),
        );
    }

    // The disconnect button removes that client.
    let news_client = admin_get(&hub, "/api/clients?channel=news").await["clients"][0]["id"]
        .as_str()
        .expect("the news subscriber")
        .to_owned();
    page.eval(&format!(
        "document.querySelector('#clients tr[data-client=\"{news_client}\"] button').click(); true"
    ));
    eventually("the news subscriber is disconnected", || async {
        admin_get(&hub, "/api/clients?channel=news").await["clients"]
            .as_array()
            .is_some_and(Vec::is_empty)
    })
    .await;
    page.wait_until_it_matches_the_api(&hub).await;

    // Signing out ends the feed and shows the form again.
    page.eval("document.getElementById('sign-out').click(); true");
    page.wait_for(
        "the sign-in form again",
        "!document.getElementById('signin').hidden",
    )
    .await;
    page.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_shows_every_node_of_a_cluster() {
    let Some(_slot) = browser_slot("the_page_shows_every_node_of_a_cluster").await else {
        return;
    };
    let redis = RedisServer::start();
    let node = |name: &str| {
        TestHub::start(&[
            "--redis-url",
            &redis.url(),
            "--node-id",
            name,
            "--api-keys",
            API_KEY,
        ])
    };
    let a = node("a");
    let b = node("b");
    let mut page = Page::open(&a.url("/admin/"));
    page.wait_for(
        "the sign-in form",
        "!document.getElementById('signin').hidden",
    )
    .await;
    page.sign_in(API_KEY);
    let mut on_b = b.stream("/api/channels/orders/stream").await;
    on_b.connected().await;
    publish(&a, "orders", "to b").await;
    assert_eq!(on_b.next_event().await.data, "to b");
    page.wait_for(
        "both nodes listed",
        "[...document.querySelectorAll('#nodes tbody tr')].map((r) => r.dataset.node).sort().join() === 'a,b'",
    )
    .await;
    page.wait_for(
        "node b's client, without a disconnect button on node a's page",
        "(() => { const rows = [...document.querySelectorAll('#clients tbody tr')];
           return rows.length === 1 && rows[0].cells[4].textContent === 'b' && !rows[0].querySelector('button'); })()",
    )
    .await;
    let deadline = Instant::now() + PAGE_PATIENCE;
    loop {
        let cluster = admin_get(&a, "/api/stats?scope=cluster").await;
        let node_b = cluster["nodes"]
            .as_array()
            .and_then(|nodes| nodes.iter().find(|n| n["node"] == "b"))
            .cloned()
            .unwrap_or(Value::Null);
        let shown = page.eval(
            "[...document.querySelector('#nodes tr[data-node=\"b\"]').cells].map((c) => c.textContent)",
        );
        let expected = json!([
            node_b["connections"].to_string(),
            node_b["eventsDelivered"].to_string()
        ]);
        if json!([shown[1], shown[3]]) == expected && node_b["eventsDelivered"] == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "node b shows {shown}, the API says {node_b}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    page.close();
}

/// Takes the browser, or `None` when browser tests are skipped.
async fn browser_slot(name: &str) -> Option<tokio::sync::MutexGuard<'static, ()>> {
    if std::env::var(SKIP_BROWSER_ENV).as_deref() == Ok("1") {
        eprintln!("{name}: skipped ({SKIP_BROWSER_ENV}=1)");
        return None;
    }
    assert!(
        PathBuf::from(CHROMIUM_PATH).exists(),
        "{CHROMIUM_PATH} is missing (scripts/setup installs it; {SKIP_BROWSER_ENV}=1 skips)"
    );
    Some(BROWSER_SLOT.lock().await)
}

/// A headless Chromium with one page, driven over the DevTools protocol on a pipe.
struct Page {
    child: Child,
    home: PathBuf,
    commands: ChildStdin,
    answers: mpsc::Receiver<Value>,
    next_id: u64,
    session: String,
}

impl Page {
    fn open(url: &str) -> Self {
        let number = NEXT_BROWSER_NUMBER.fetch_add(1, Ordering::Relaxed);
        let home =
            std::env::temp_dir().join(format!("herald-dashboard-{}-{number}", std::process::id()));
        let _ = fs::remove_dir_all(&home);
        fs::create_dir_all(home.join("profile")).expect("the temp directory is writable");
        let log = fs::File::create(home.join("chromium.log")).expect("writable");
        // The shell hands our pipes to Chromium as fds 3 (commands) and 4 (answers).
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(r#"exec "$0" "$@" 3<&0 4>&1 </dev/null >/dev/null"#)
            .arg(CHROMIUM_PATH)
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
                "--hide-scrollbars",
                "--window-size=1280,1000",
                "--remote-debugging-pipe",
            ])
            .arg(format!(
                "--user-data-dir={}",
                home.join("profile").display()
            ))
            .arg("about:blank")
            .env("HOME", &home)
            .env("XDG_CONFIG_HOME", home.join("config"))
            .env("XDG_CACHE_HOME", home.join("cache"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|err| panic!("{CHROMIUM_PATH} could not be started: {err}"));
        let commands = child.stdin.take().expect("stdin is piped");
        let mut from_browser = child.stdout.take().expect("stdout is piped");
        let (answers_tx, answers) = mpsc::channel();
        std::thread::spawn(move || {
            let mut pending = Vec::new();
            let mut buf = [0u8; 64 * 1024];
            while let Ok(n) = from_browser.read(&mut buf) {
                if n == 0 {
                    break;
                }
                pending.extend_from_slice(&buf[..n]);
                while let Some(end) = pending.iter().position(|&b| b == 0) {
                    let message: Vec<u8> = pending.drain(..=end).collect();
                    if let Ok(value) = serde_json::from_slice(&message[..end]) {
                        if answers_tx.send(value).is_err() {
                            return;
                        }
                    }
                }
            }
        });
        let mut page = Self {
            child,
            home,
            commands,
            answers,
            next_id: 0,
            session: String::new(),
        };
        let target = page.call("Target.createTarget", json!({"url": "about:blank"}));
        let attached = page.call(
            "Target.attachToTarget",
            json!({"targetId": target["targetId"], "flatten": true}),
        );
        page.session = attached["sessionId"]
            .as_str()
            .expect("a session")
            .to_owned();
        page.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": 1280, "height": 1000, "deviceScaleFactor": 1, "mobile": false}),
        );
        page.call("Page.navigate", json!({"url": url}));
        page
    }

    /// Sends one DevTools command (to the page once attached) and waits for its answer.
    fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({"id": id, "method": method, "params": params});
        if !self.session.is_empty() {
            message["sessionId"] = json!(self.session);
        }
        let mut bytes = serde_json::to_vec(&message).expect("JSON");
        bytes.push(0);
        self.commands
            .write_all(&bytes)
            .and_then(|()| self.commands.flush())
            .unwrap_or_else(|err| panic!("Chromium is gone: {err}\n{}", self.log_tail()));
        let deadline = Instant::now() + DEVTOOLS_PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let answer = self
                .answers
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no answer to {method}\n{}", self.log_tail()));
            if answer["id"] == id {
                if let Some(error) = answer.get("error") {
                    panic!("{method} failed: {error}");
                }
                return answer["result"].clone();
            }
        }
    }

    /// The value of `expression` in the page (promises awaited).
    fn eval(&mut self, expression: &str) -> Value {
        let result = self.call(
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
        );
        if let Some(exception) = result.get("exceptionDetails") {
            panic!("the page threw on {expression}: {exception}");
        }
        result["result"]["value"].clone()
    }

    /// Waits until `expression` is true in the page.
    async fn wait_for(&mut self, what: &str, expression: &str) {
        let deadline = Instant::now() + PAGE_PATIENCE;
        loop {
            let result = self.call(
                "Runtime.evaluate",
                json!({"expression": expression, "returnByValue": true}),
            );
            if result["result"]["value"] == true {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the page never showed {what}\n{}",
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn sign_in(&mut self, credential: &str) {
        self.eval(&format!(
            "document.getElementById('credential').value = {};
             document.getElementById('signin-form').requestSubmit(); true",
            json!(credential)
        ));
    }

    /// Waits until the page's cards show what `/api/stats` says.
    async fn wait_until_it_matches_the_api(&mut self, hub: &TestHub) {
        let deadline = Instant::now() + PAGE_PATIENCE;
        loop {
            let stats = admin_get(hub, "/api/stats").await;
            let shown = self.eval(
                "['stat-connections', 'stat-published', 'stat-delivered', 'stat-closed']
                   .map((id) => document.getElementById(id).textContent.replaceAll(',', ''))",
            );
            let expected = json!([
                stats["connections"].to_string(),
                stats["eventsPublished"].to_string(),
                stats["eventsDelivered"].to_string(),
                stats["connectionsClosed"].to_string(),
            ]);
            if shown == expected {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the page shows {shown}, /api/stats says {expected}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn screenshot(&mut self, path: &PathBuf) {
        let shot = self.call("Page.captureScreenshot", json!({"format": "png"}));
        let png = base64_decode(shot["data"].as_str().expect("base64 data"));
        fs::write(path, png).expect("the docs folder is writable");
    }

    fn log_tail(&self) -> String {
        let log = fs::read_to_string(self.home.join("chromium.log")).unwrap_or_default();
        let lines: Vec<_> = log.lines().filter(|line| !line.contains("dbus")).collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    fn close(self) {}
}

impl Drop for Page {
    fn drop(&mut self) {
        let group = self.child.id();
        let _ = Command::new("kill")
            .args(["-s", "KILL", "--", &format!("-{group}")])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.wait();
        // Helpers that left the group still carry the profile's path.
        let home = self.home.to_string_lossy().into_owned();
        if let Ok(entries) = fs::read_dir("/proc") {
            for pid in entries.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok()) {
                if pid != std::process::id()
                    && fs::read(format!("/proc/{pid}/cmdline"))
                        .is_ok_and(|c| String::from_utf8_lossy(&c).contains(&home))
                {
                    let _ = Command::new("kill")
                        .args(["-s", "KILL", &pid.to_string()])
                        .stderr(Stdio::null())
                        .status();
                }
            }
        }
        let _ = fs::remove_dir_all(&self.home);
    }
}

fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {c}"),
    };
    let digits: Vec<u8> = text.bytes().filter(|&c| c != b'=').map(value).collect();
    digits
        .chunks(4)
        .flat_map(|chunk| {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |n, (i, &d)| n | u32::from(d) << (18 - 6 * i));
            let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
            bytes.into_iter().take(chunk.len() - 1)
        })
        .collect()
}
