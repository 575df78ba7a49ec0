//! Operations: `/metrics` after a known sequence, `/livez` and `/readyz` in memory and in a cluster
//! whose Redis stops, who may read them under `--auth jwt`, JSON logs that carry no token, and a
//! hub started with defaults that prints no warning.

mod common;

use common::{eventually, http, RedisServer, SseStream, TestHub, PATIENCE};
use serde_json::{json, Value};
use std::{
    collections::{HashMap, HashSet},
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};
use tokio::io::AsyncWriteExt;

/// A scrape, parsed: each sample keyed by `name{label="value",...}` (labels sorted).
#[derive(Debug)]
struct Scrape(HashMap<String, f64>);

impl Scrape {
    fn get(&self, key: &str) -> f64 {
        *self
            .0
            .get(key)
            .unwrap_or_else(|| panic!("no sample {key} in {:?}", self.0.keys()))
    }
}

/// Parses the Prometheus text exposition format (0.0.4) strictly enough to catch a broken one:
/// every sample's family has a `# TYPE` line before it, names and labels are well formed, values
/// are numbers, no series appears twice, and histogram buckets are cumulative.
fn parse_exposition(text: &str) -> Scrape {
    let mut types: HashMap<String, String> = HashMap::new();
    let mut samples = HashMap::new();
    let is_name = |name: &str| {
        !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
            && !name.starts_with(|c: char| c.is_ascii_digit())
    };
    for line in text.lines() {
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("# TYPE name kind");
            assert!(is_name(name), "{line}");
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "{line}"
            );
            assert!(
                types.insert(name.to_owned(), kind.to_owned()).is_none(),
                "one TYPE per family: {line}"
            );
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        assert!(!line.starts_with('#'), "unknown comment: {line}");
        let (series, value) = line.rsplit_once(' ').expect("a sample is `series value`");
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("a number: {line}")),
        };
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => {
                let body = rest.strip_suffix('}').expect("labels end with }");
                let mut labels: Vec<String> = body
                    .split("\",")
                    .filter(|l| !l.is_empty())
                    .map(|l| {
                        let (key, value) = l.split_once("=\"").expect("label=\"value\"");
                        assert!(is_name(key), "{line}");
                        format!("{key}=\"{}\"", value.trim_end_matches('"'))
                    })
                    .collect();
                labels.sort();
                (name, labels)
            }
            None => (series, Vec::new()),
        };
        assert!(is_name(name), "{line}");
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| {
                name.strip_suffix(suffix)
                    .filter(|base| types.get(*base).is_some_and(|t| t == "histogram"))
            })
            .unwrap_or(name);
        assert!(types.contains_key(family), "no # TYPE before {line}");
        let key = if labels.is_empty() {
            name.to_owned()
        } else {
            format!("{name}{{{}}}", labels.join(","))
        };
        assert!(
            samples.insert(key, value).is_none(),
            "a series appears once: {line}"
        );
    }
    for (family, kind) in &types {
        if kind != "histogram" {
            continue;
        }
        let mut buckets: Vec<(f64, f64)> = samples
            .iter()
            .filter_map(|(key, value)| {
                let le = key.strip_prefix(&format!("{family}_bucket{{le=\""))?;
                let le = le.strip_suffix("\"}")?;
                let bound = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().ok()?
                };
                Some((bound, *value))
            })
            .collect();
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        assert!(
            buckets.windows(2).all(|w| w[0].1 <= w[1].1),
            "{family}: cumulative buckets"
        );
        assert_eq!(
            buckets.last().map(|b| b.1),
            samples.get(&format!("{family}_count")).copied(),
            "{family}: the +Inf bucket is the count"
        );
    }
    Scrape(samples)
}

async fn scrape_with(hub: &TestHub, bearer: Option<&str>) -> (u16, String) {
    let mut request = http().get(hub.url("/metrics"));
    if let Some(token) = bearer {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("the hub answers");
    let status = response.status().as_u16();
    if status == 200 {
        let content_type = response.headers()["content-type"]
            .to_str()
            .expect("ascii")
            .to_owned();
        assert!(
            content_type.starts_with("text/plain; version=0.0.4"),
            "{content_type}"
        );
    }
    (status, response.text().await.expect("a body"))
}

async fn scrape(hub: &TestHub) -> Scrape {
    let (status, text) = scrape_with(hub, None).await;
    assert_eq!(status, 200, "{text}");
    parse_exposition(&text)
}

async fn status_and_json(hub: &TestHub, path: &str) -> (u16, Value) {
    let response = http().get(hub.url(path)).send().await.expect("answers");
    let status = response.status().as_u16();
    (status, response.json().await.expect("a JSON body"))
}

/// Opens a stream from a socket with a tiny receive buffer and never reads it: the hub's queue
/// for it fills as soon as a few large events are published.
async fn stalled_stream(hub: &TestHub, path: &str) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
    socket.set_recv_buffer_size(4096).expect("a small buffer");
    let mut stream = socket
        .connect(([127, 0, 0, 1], hub.port).into())
        .await
        .expect("connects");
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nhost: localhost\r\n\r\n").as_bytes())
        .await
        .expect("the request is sent");
    stream
}

#[tokio::test]
async fn metrics_count_a_known_sequence_in_the_prometheus_format() {
    let hub = TestHub::start(&[
        "--metrics-channels",
        "orders",
        "--queue-capacity",
        "8",
        "--heartbeat-interval",
        "200ms",
    ]);

    let mut live = hub.stream("/api/channels/orders/stream").await;
    live.connected().await;
    for n in 1..=3 {
        let body = json!({"event": "created", "id": format!("o-{n}"), "data": {"n": n}});
        hub.publish("/api/channels/orders/events", body).await;
    }
    let again = json!({"event": "created", "id": "o-3", "data": {"n": 3}});
    assert_eq!(
        hub.publish("/api/channels/orders/events", again).await["duplicate"],
        true
    );
    let (status, _) = hub
        .post("/api/clients/nobody/events", json!({"data": "x"}))
        .await;
    assert_eq!(status, 404);
    for _ in 0..3 {
        live.next_event().await;
    }

    let mut resumed = SseStream::open(
        &hub.url("/api/channels/orders/stream"),
        &[("last-event-id", "o-1")],
    )
    .await;
    assert_eq!(resumed.connected().await["resumed"], true);
    assert_eq!(resumed.next_event().await.id, "o-2");
    assert_eq!(resumed.next_event().await.id, "o-3");
    drop(resumed);
    let mut unknown = SseStream::open(
        &hub.url("/api/channels/orders/stream"),
        &[("last-event-id", "not-in-history")],
    )
    .await;
    assert_eq!(unknown.connected().await["resumed"], false);
    drop(unknown);
    drop(live);

    // A subscriber that stops reading is cut once its queue of 8 is full.
    eventually("the first streams are closed", || async {
        scrape(&hub).await.get("herald_streams_open") == 0.0
    })
    .await;
    let stalled = stalled_stream(&hub, "/api/channels/bulk/stream").await;
    eventually("the stalled stream is open", || async {
        scrape(&hub).await.get("herald_streams_open") == 1.0
    })
    .await;
    let payload = "x".repeat(60_000);
    let mut bulk = 0.0;
    let deadline = Instant::now() + PATIENCE;
    while scrape(&hub).await.get("herald_slow_consumer_cuts_total") == 0.0 {
        assert!(
            Instant::now() < deadline,
            "the stalled stream is cut: {bulk} published, {:?}",
            scrape_with(&hub, None).await.1
        );
        for _ in 0..20 {
            hub.publish("/api/channels/bulk/events", json!({"data": payload}))
                .await;
            bulk += 1.0;
        }
    }
    drop(stalled);

    eventually("every stream is closed", || async {
        scrape(&hub).await.get("herald_streams_open") == 0.0
    })
    .await;
    let m = scrape(&hub).await;
    assert_eq!(m.get("herald_streams_opened_total"), 4.0);
    assert_eq!(
        m.get("herald_streams_closed_total{reason=\"client_gone\"}"),
        3.0
    );
    assert_eq!(
        m.get("herald_streams_closed_total{reason=\"slow_consumer\"}"),
        1.0
    );
    assert_eq!(
        m.get("herald_streams_closed_total{reason=\"shutdown\"}"),
        0.0
    );
    assert_eq!(m.get("herald_slow_consumer_cuts_total"), 1.0);
    assert_eq!(
        m.get("herald_events_published_total{result=\"accepted\"}"),
        3.0 + bulk
    );
    assert_eq!(
        m.get("herald_events_published_total{result=\"duplicate\"}"),
        1.0
    );
    assert_eq!(
        m.get("herald_events_published_total{result=\"client_not_found\"}"),
        1.0
    );
    assert_eq!(m.get("herald_publish_duration_seconds_count"), 4.0 + bulk);
    assert!(m.get("herald_publish_duration_seconds_sum") > 0.0);
    assert_eq!(m.get("herald_replayed_events_total"), 2.0);
    assert!(
        m.get("herald_deliveries_total") >= 5.0,
        "3 live and 2 replayed at least"
    );
    assert_eq!(m.get("herald_resumes_total{resumed=\"true\"}"), 1.0);
    assert_eq!(m.get("herald_resumes_total{resumed=\"false\"}"), 1.0);
    assert_eq!(m.get("herald_history_events"), 3.0 + bulk);
    assert!(m.get("herald_history_bytes") > 60_000.0 * bulk);
    assert_eq!(m.get("herald_log_ready{backend=\"memory\"}"), 1.0);
    assert_eq!(
        m.get("herald_channel_events_total{channel=\"orders\"}"),
        3.0
    );
    assert_eq!(
        m.get("herald_channel_recipients_total{channel=\"orders\"}"),
        3.0
    );
    assert!(
        !m.0.keys().any(|k| k.contains("channel=\"bulk\"")),
        "an unlisted channel has no series"
    );
}

#[tokio::test]
async fn health_endpoints_answer_in_memory() {
    let hub = TestHub::start(&[]);
    for path in ["/livez", "/readyz", "/healthz"] {
        let (status, body) = status_and_json(&hub, path).await;
        assert_eq!((status, body), (200, json!({"status": "ok"})), "{path}");
    }
}

#[tokio::test]
async fn a_cluster_node_is_alive_but_not_ready_while_redis_is_down() {
    let mut redis = RedisServer::start();
    let hub = TestHub::start(&["--redis-url", &redis.url(), "--node-id", "ops-1"]);
    eventually("the node is ready", || async {
        status_and_json(&hub, "/readyz").await.0 == 200
    })
    .await;
    let m = scrape(&hub).await;
    assert_eq!(m.get("herald_redis_reachable"), 1.0);
    assert_eq!(m.get("herald_log_ready{backend=\"cluster\"}"), 1.0);
    assert!(m.get("herald_log_read_age_seconds") < 10.0);

    redis.stop();
    eventually("the node is not ready", || async {
        status_and_json(&hub, "/readyz").await.0 == 503
    })
    .await;
    let (_, body) = status_and_json(&hub, "/readyz").await;
    assert_eq!(body["error"]["code"], "unavailable", "{body}");
    assert_eq!(status_and_json(&hub, "/livez").await.0, 200);
    let m = scrape(&hub).await;
    assert_eq!(m.get("herald_redis_reachable"), 0.0);
    assert_eq!(m.get("herald_log_ready{backend=\"cluster\"}"), 0.0);

    redis.restart();
    eventually("the node is ready again", || async {
        status_and_json(&hub, "/readyz").await.0 == 200
    })
    .await;
}

#[tokio::test]
async fn with_jwt_auth_health_is_open_and_metrics_take_an_admin_right() {
    let api_key = "metrics-scraper-key-0123456789";
    let hub = TestHub::start(&[
        "--auth",
        "jwt",
        "--jwt-secret",
        "0123456789abcdef0123456789abcdef",
        "--api-keys",
        api_key,
    ]);
    assert_eq!(status_and_json(&hub, "/livez").await.0, 200);
    assert_eq!(status_and_json(&hub, "/readyz").await.0, 200);
    assert_eq!(scrape_with(&hub, None).await.0, 401);
    assert_eq!(scrape_with(&hub, Some("not-a-key-not-a-key")).await.0, 401);
    let (status, text) = scrape_with(&hub, Some(api_key)).await;
    assert_eq!(status, 200);
    parse_exposition(&text);
}

#[tokio::test]
async fn json_logs_have_an_access_line_per_request_and_stream_and_no_token() {
    const SECRET: &str = "SECRET-c0ffee";
    let mut child = Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json"])
        .args(["--heartbeat-interval", "200ms"])
        .env("HERALD_LOG", "info")
        .env_remove("HERALD_LISTEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the herald binary starts");
    let lines = Arc::new(Mutex::new(Vec::new()));
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let readers: Vec<_> = [
        Box::new(child.stderr.take().expect("piped")) as Box<dyn std::io::Read + Send>,
        Box::new(child.stdout.take().expect("piped")),
    ]
    .into_iter()
    .map(|output| {
        let (lines, addr_tx) = (lines.clone(), addr_tx.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(output).lines() {
                let Ok(line) = line else { break };
                if let Ok(value) = serde_json::from_str::<Value>(&line) {
                    if let Some(addr) = value["addr"].as_str() {
                        let _ = addr_tx.send(addr.to_owned());
                    }
                }
                lines.lock().expect("lock").push(line);
            }
        })
    })
    .collect();
    let addr = addr_rx
        .recv_timeout(PATIENCE)
        .expect("the hub logs its address");
    let base = format!("http://{addr}");

    let cookie = format!("herald_token={SECRET}");
    let bearer = format!("Bearer {SECRET}");
    let with_secrets = |request: reqwest::RequestBuilder| {
        request
            .header("cookie", &cookie)
            .header("authorization", &bearer)
    };
    let mut stream = SseStream::open(
        &format!("{base}/api/channels/orders/stream?token={SECRET}"),
        &[
            ("cookie", cookie.as_str()),
            ("authorization", bearer.as_str()),
        ],
    )
    .await;
    stream.connected().await;
    let published =
        with_secrets(http().post(format!("{base}/api/channels/orders/events?token={SECRET}")))
            .json(&json!({"data": "hello"}))
            .send()
            .await
            .expect("answers");
    let publish_status = published.status().as_u16();
    let polled = with_secrets(http().get(format!("{base}/api/channels?token={SECRET}")))
        .send()
        .await
        .expect("answers");
    let poll_status = polled.status().as_u16();
    let missing = with_secrets(http().get(format!("{base}/nowhere?token={SECRET}")))
        .send()
        .await
        .expect("answers");
    assert_eq!(missing.status().as_u16(), 404);
    drop(stream);

    eventually("the stream's close is logged", || async {
        is_logged_in(&lines.lock().expect("lock"), "stream closed")
    })
    .await;
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    let _ = child.wait();
    for reader in readers {
        let _ = reader.join();
    }

    let lines = lines.lock().expect("lock").clone();
    assert!(!lines.is_empty());
    let mut requests = HashSet::new();
    for line in &lines {
        let value: Value = serde_json::from_str(line)
            .unwrap_or_else(|err| panic!("every line is one JSON object ({err}): {line}"));
        assert!(value.is_object(), "{line}");
        assert!(!line.contains(SECRET), "a token reached the log: {line}");
        if value["target"] == "herald::access" && value["message"] == "request" {
            assert!(value["duration_ms"].is_number(), "{line}");
            assert!(
                value["peer"]
                    .as_str()
                    .is_some_and(|p| p.starts_with("127.0.0.1:")),
                "{line}"
            );
            requests.insert((
                value["method"].as_str().unwrap_or_default().to_owned(),
                value["path"].as_str().unwrap_or_default().to_owned(),
                value["status"].as_u64().unwrap_or_default(),
            ));
        }
        if value["message"] == "stream closed" {
            assert_eq!(value["reason"], "client_gone", "{line}");
            assert!(value["duration_ms"].is_number(), "{line}");
        }
    }
    for expected in [
        (
            "POST",
            "/api/channels/orders/events",
            u64::from(publish_status),
        ),
        ("GET", "/api/channels", u64::from(poll_status)),
        ("GET", "/nowhere", 404),
    ] {
        let expected = (expected.0.to_owned(), expected.1.to_owned(), expected.2);
        assert!(requests.contains(&expected), "{expected:?} in {requests:?}");
    }
    assert!(is_logged_in(&lines, "stream opened"), "{lines:?}");
}

fn is_logged_in(lines: &[String], message: &str) -> bool {
    lines
        .iter()
        .any(|line| line.contains(&format!("\"message\":\"{message}\"")))
}

#[tokio::test]
async fn a_hub_started_with_defaults_prints_no_warning() {
    let hub = TestHub::start(&[]);
    // One request, so anything logged on the first one is seen too.
    assert_eq!(status_and_json(&hub, "/readyz").await.0, 200);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let warnings: Vec<String> = hub
        .log()
        .into_iter()
        .filter(|line| line.contains("WARN") || line.contains("ERROR"))
        .collect();
    assert!(warnings.is_empty(), "{warnings:?}");
}

#[tokio::test]
async fn a_hub_on_loopback_without_auth_lets_loopback_pages_call_it_and_no_one_else() {
    let hub = TestHub::start(&[]);
    let allow_origin = |origin: &'static str| {
        let url = hub.url("/api/channels");
        async move {
            let answer = http()
                .get(url)
                .header("origin", origin)
                .send()
                .await
                .expect("answers");
            answer
                .headers()
                .get("access-control-allow-origin")
                .map(|v| v.to_str().expect("ascii").to_owned())
        }
    };
    for origin in ["http://localhost:5173", "http://127.0.0.1:8000"] {
        assert_eq!(allow_origin(origin).await.as_deref(), Some(origin));
    }
    for origin in ["https://evil.example", "http://localhost.evil.example:5173"] {
        assert_eq!(allow_origin(origin).await, None, "{origin}");
    }

    // Listing origins replaces the default.
    let listed = TestHub::start(&["--cors-origins", "https://app.example.com"]);
    let answer = http()
        .get(listed.url("/api/channels"))
        .header("origin", "http://localhost:5173")
        .send()
        .await
        .expect("answers");
    assert_eq!(answer.headers().get("access-control-allow-origin"), None);
}

/// Metric names in `text`: `herald_` and the rest of the name, histogram suffixes removed.
fn metric_names(text: &str) -> HashSet<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|word| word.starts_with("herald_"))
        .map(|word| {
            ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| word.strip_suffix(suffix))
                .unwrap_or(word)
                .to_owned()
        })
        .collect()
}

#[tokio::test]
async fn every_metric_is_documented_and_the_dashboard_uses_only_those() {
    let operations_md = include_str!("../../../docs/operations.md");
    let dashboard = include_str!("../../../deploy/grafana-dashboard.json");
    let documented: HashSet<String> = operations_md
        .lines()
        .filter(|line| line.starts_with("| `herald_"))
        .flat_map(metric_names)
        .collect();
    let data_dir = std::env::temp_dir().join(format!("herald-ops-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data_dir);
    let hub = TestHub::start(&[
        "--data-dir",
        data_dir.to_str().expect("utf-8"),
        "--metrics-channels",
        "orders",
    ]);
    hub.publish("/api/channels/orders/events", json!({"data": 1}))
        .await;
    let (_, text) = scrape_with(&hub, None).await;
    let exposed: HashSet<String> = text
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.split(' ').next())
        .map(str::to_owned)
        .collect();
    assert!(
        exposed.contains("herald_log_commit_duration_seconds"),
        "{exposed:?}"
    );
    for name in &exposed {
        assert!(documented.contains(name), "docs/operations.md lacks {name}");
    }
    for name in metric_names(dashboard) {
        assert!(
            documented.contains(&name),
            "the dashboard uses {name}, which is not a metric"
        );
    }
    drop(hub);
    let _ = std::fs::remove_dir_all(&data_dir);
}
