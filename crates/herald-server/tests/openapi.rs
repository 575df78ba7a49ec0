//! The OpenAPI document (`crates/herald-hub/openapi.json`) kept true against the real binary: it is valid
//! OpenAPI 3.1; every request example of `docs/api.md` is sent and answered as the document says;
//! the error codes of the document, of api.md's table and of the hub's answers are one set; every
//! documented route exists and nothing else under `/api` does.
//!
//! The document is checked with real validators (`openapi-spec-validator` and `jsonschema`, in the
//! Python venv `scripts/setup` makes under `target/venv`; `HERALD_VENV` points elsewhere), through
//! `tests/openapi/validate.py`.

mod auth_support;
mod common;

use auth_support::{jwt_hub, raw_connect, read_until_closed, send, token_for, Answer};
use common::{eventually, RedisServer, SseStream, TestHub};
use serde_json::{json, Value};
use std::{
    collections::{BTreeMap, BTreeSet},
    path::PathBuf,
    process::Command,
    time::Duration,
};

/// Documented paths the hub does not serve yet; each is still checked to answer 404 until then,
/// so this list cannot go stale silently.
const NOT_SERVED_YET: &[&str] = &[];

/// Error codes of api.md's table that no request from outside provokes, and why.
const NOT_PROVOKED: &[(&str, &str)] = &[(
    "shutting_down",
    "a stopping hub stops accepting at once, so no new request reaches it from outside",
)];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn document() -> Value {
    let text = std::fs::read_to_string(repo().join("crates/herald-hub/openapi.json"))
        .expect("crates/herald-hub/openapi.json is in the repository");
    serde_json::from_str(&text).expect("crates/herald-hub/openapi.json is JSON")
}

fn api_md() -> String {
    std::fs::read_to_string(repo().join("docs/api.md")).expect("docs/api.md is in the repository")
}

/// Runs `validate.py` with the venv's Python; panics with its output when it disagrees.
fn validate(args: &[&str]) -> String {
    let venv = std::env::var_os("HERALD_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target/venv"));
    let python = venv.join("bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/setup (it makes the venv with openapi-spec-validator)",
        python.display()
    );
    let output = Command::new(python)
        .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/openapi/validate.py"))
        .arg(repo().join("crates/herald-hub/openapi.json"))
        .args(args)
        .output()
        .expect("python runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "the document disagrees:\n{text}");
    text
}

/// The document's path template that `path` (query dropped) falls under.
fn template_for(doc: &Value, path: &str) -> Option<String> {
    let path = path.split('?').next().unwrap_or_default();
    let segments: Vec<&str> = path.split('/').collect();
    doc["paths"]
        .as_object()?
        .keys()
        .find(|template| {
            let parts: Vec<&str> = template.split('/').collect();
            parts.len() == segments.len()
                && parts.iter().zip(&segments).all(|(part, segment)| {
                    (part.starts_with('{') && !segment.is_empty()) || part == segment
                })
        })
        .cloned()
}

/// Answers and bodies to check against the document in one run of the validator.
struct Samples {
    doc: Value,
    list: Vec<Value>,
}

impl Samples {
    fn new() -> Self {
        Self {
            doc: document(),
            list: Vec::new(),
        }
    }

    /// Records an answer of `method path` (a concrete path) for the validator.
    fn answer(&mut self, method: &str, path: &str, answer: &Answer) {
        let template = template_for(&self.doc, path)
            .unwrap_or_else(|| panic!("{method} {path} is under no documented path"));
        let headers: serde_json::Map<String, Value> = answer
            .headers
            .iter()
            .map(|(name, value)| {
                (
                    name.as_str().to_owned(),
                    json!(value.to_str().unwrap_or_default()),
                )
            })
            .collect();
        self.list.push(json!({
            "method": method,
            "path": template,
            "status": answer.status,
            "contentType": answer.header("content-type"),
            "headers": headers,
            "body": answer.body,
        }));
    }

    /// Records a value that must match the component schema `name`.
    fn schema(&mut self, name: &str, body: Value) {
        self.list.push(json!({"schema": name, "body": body}));
    }

    /// Runs the validator over everything recorded.
    fn check(self) {
        let file = std::env::temp_dir().join(format!(
            "herald-openapi-samples-{}-{}.json",
            std::process::id(),
            fastrand_suffix()
        ));
        std::fs::write(
            &file,
            serde_json::to_vec(&self.list).expect("samples serialize"),
        )
        .expect("the temp dir is writable");
        let file_arg = file.to_string_lossy().into_owned();
        validate(&["check", &file_arg]);
        let _ = std::fs::remove_file(file);
    }
}

fn fastrand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or_default()
}

/// Sends `method path` with a JSON body (or none) and records the answer.
async fn call(
    samples: &mut Samples,
    hub: &TestHub,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> Answer {
    let answer = send(
        hub,
        method,
        path,
        headers,
        body.map(|b| b.to_string().into_bytes()),
    )
    .await;
    samples.answer(method, path, &answer);
    answer
}

#[test]
fn the_document_is_valid_openapi_3_1() {
    let out = validate(&["spec"]);
    assert!(out.contains("valid OpenAPI 3.1"), "{out}");
}

/// Every `METHOD /path` example of api.md: the lines of plain code blocks and the inline code
/// spans that start with a method.
fn request_examples(markdown: &str) -> BTreeSet<String> {
    let is_request = |text: &str| {
        ["GET /", "POST /", "DELETE /"]
            .iter()
            .any(|m| text.starts_with(m))
    };
    let mut examples = BTreeSet::new();
    let mut fence: Option<String> = None;
    for line in markdown.lines() {
        if let Some(lang) = line.trim_start().strip_prefix("```") {
            fence = match fence {
                Some(_) => None,
                None => Some(lang.trim().to_owned()),
            };
            continue;
        }
        match &fence {
            Some(lang) if lang.is_empty() => {
                // `POST /path        body: …`: the request is what comes before the comment.
                let request = line.split("  ").next().unwrap_or_default().trim();
                if is_request(request) {
                    examples.insert(request.to_owned());
                }
            }
            Some(_) => {}
            None => {
                for (index, span) in line.split('`').enumerate() {
                    if index % 2 == 1 && is_request(span) {
                        examples.insert(span.trim().to_owned());
                    }
                }
            }
        }
    }
    examples
}

/// The ```json blocks of api.md and the `data:` lines of its plain blocks (the `connected`
/// event), each with the component schema it shows; `…` (an elided part) is dropped.
fn json_examples(markdown: &str) -> Vec<(&'static str, Value)> {
    let mut found = Vec::new();
    let mut fence: Option<(String, String)> = None;
    let mut event_name = "";
    for line in markdown.lines() {
        if let Some(lang) = line.trim_start().strip_prefix("```") {
            fence = match fence.take() {
                Some((lang, text)) => {
                    if lang == "json" {
                        let value: Value = serde_json::from_str(&text.replace('…', ""))
                            .unwrap_or_else(|e| {
                                panic!("api.md has a JSON block that is not JSON ({e}): {text}")
                            });
                        found.push((schema_of(&value), value));
                    }
                    None
                }
                None => Some((lang.trim().to_owned(), String::new())),
            };
            continue;
        }
        if let Some((lang, text)) = &mut fence {
            if lang.is_empty() {
                if let Some(data) = line.strip_prefix("data: {") {
                    let value = serde_json::from_str(&format!("{{{}", data.replace('…', "")))
                        .expect("an event example's data is JSON");
                    let schema = match event_name {
                        "join" | "leave" => "PresenceEventData",
                        _ => "ConnectedEventData",
                    };
                    found.push((schema, value));
                }
                event_name = line.strip_prefix("event: ").unwrap_or(event_name);
            }
            text.push_str(line);
            text.push('\n');
        }
    }
    found
}

/// The component schema a JSON example of api.md shows, told by its keys.
fn schema_of(value: &Value) -> &'static str {
    let has = |key: &str| value.get(key).is_some();
    if has("error") {
        "Error"
    } else if has("recipients") {
        "Published"
    } else if has("cursor") {
        "EventPage"
    } else if has("uptimeSeconds") {
        "Stats"
    } else if has("anonymous") {
        "Presence"
    } else if has("connectedAt") {
        "Client"
    } else if has("data") {
        "PublishRequest"
    } else {
        panic!("api.md shows JSON this test cannot place; name its schema in schema_of: {value}")
    }
}

/// A request example of api.md and the request the test sends for it, in order: `{id}` in the
/// path is replaced by the id of the first publish.
struct Example {
    example: &'static str,
    method: &'static str,
    path: &'static str,
    body: Option<&'static str>,
}

const fn ex(
    example: &'static str,
    method: &'static str,
    path: &'static str,
    body: Option<&'static str>,
) -> Example {
    Example {
        example,
        method,
        path,
        body,
    }
}

const EXAMPLES: &[Example] = &[
    ex("GET /healthz", "GET", "/healthz", None),
    ex("GET /api/openapi.json", "GET", "/api/openapi.json", None),
    ex("GET /livez", "GET", "/livez", None),
    ex("GET /readyz", "GET", "/readyz", None),
    ex("GET /metrics", "GET", "/metrics", None),
    ex(
        "POST /api/channels/{channel}/events",
        "POST",
        "/api/channels/a/events",
        Some(r#"{"event": "created", "data": {"id": 7}, "id": "order-7-created"}"#),
    ),
    ex(
        "POST /api/events",
        "POST",
        "/api/events",
        Some(r#"{"channels": ["a", "b"], "data": "to a and b"}"#),
    ),
    ex(
        "POST /api/broadcast",
        "POST",
        "/api/broadcast",
        Some(r#"{"data": "to everyone"}"#),
    ),
    ex(
        "POST /api/users/{userId}/events",
        "POST",
        "/api/users/42/events",
        Some(r#"{"event": "note", "data": {"text": "hi"}}"#),
    ),
    ex(
        "POST /api/clients/{clientId}/events",
        "POST",
        "/api/clients/c1/events",
        Some(r#"{"data": "just for c1"}"#),
    ),
    ex(
        "GET /api/channels/{channel}/events?after={id}&limit={n}",
        "GET",
        "/api/channels/a/events?after={id}&limit=10",
        None,
    ),
    ex(
        "GET /api/events?channel=a&channel=b&after={id}&limit={n}",
        "GET",
        "/api/events?channel=a&channel=b&after={id}&limit=10",
        None,
    ),
    ex(
        "POST /api/clients/{clientId}/subscriptions",
        "POST",
        "/api/clients/c1/subscriptions",
        Some(r#"{"channel": "c"}"#),
    ),
    ex(
        "DELETE /api/clients/{clientId}/subscriptions/{channel}",
        "DELETE",
        "/api/clients/c1/subscriptions/c",
        None,
    ),
    ex("GET /api/clients", "GET", "/api/clients?channel=a", None),
    ex(
        "GET /api/clients/{clientId}",
        "GET",
        "/api/clients/c1",
        None,
    ),
    ex("GET /api/channels", "GET", "/api/channels", None),
    ex(
        "GET /api/channels/{channel}/presence",
        "GET",
        "/api/channels/a/presence",
        None,
    ),
    ex("GET /api/stats", "GET", "/api/stats", None),
    ex(
        "GET /api/stats?scope=cluster",
        "GET",
        "/api/stats?scope=cluster",
        None,
    ),
    ex(
        "GET /api/clients?scope=cluster",
        "GET",
        "/api/clients?scope=cluster",
        None,
    ),
    ex(
        "DELETE /api/clients/{clientId}",
        "DELETE",
        "/api/clients/c1",
        None,
    ),
    ex(
        "DELETE /api/clients/{id}",
        "DELETE",
        "/api/clients/c2",
        None,
    ),
    ex(
        "POST /api/channels/{channel}/close",
        "POST",
        "/api/channels/job-1/close",
        Some(r#"{"event":"done","data":{"ok":true}}"#),
    ),
    // The streams are opened first (below) and stay open for the requests above.
    ex(
        "GET /api/channels/{channel}/stream",
        "GET",
        "/api/channels/b/stream?clientId=c2",
        None,
    ),
    ex(
        "GET /api/stream?channel=a&channel=b",
        "GET",
        "/api/stream?channel=a&channel=b&clientId=c1",
        None,
    ),
];

#[tokio::test]
async fn every_request_example_in_api_md_is_sent_and_answered_as_documented() {
    let markdown = api_md();
    let documented = request_examples(&markdown);
    let sent: BTreeSet<String> = EXAMPLES.iter().map(|e| e.example.to_owned()).collect();
    let unsent: Vec<_> = documented.difference(&sent).collect();
    assert!(
        unsent.is_empty(),
        "api.md shows requests this test does not send: {unsent:?}"
    );
    let stale: Vec<_> = sent.difference(&documented).collect();
    assert!(
        stale.is_empty(),
        "this test sends examples api.md no longer shows: {stale:?}"
    );

    let mut samples = Samples::new();
    for (schema, value) in json_examples(&markdown) {
        samples.schema(schema, value);
    }
    let hub = TestHub::start(&["--presence", "on"]);
    let (streams, requests): (Vec<&Example>, Vec<&Example>) =
        EXAMPLES.iter().partition(|e| e.path.contains("stream"));
    let mut open = Vec::new();
    for example in streams {
        let mut stream = SseStream::open(&hub.url(example.path), &[]).await;
        let headers = stream.response.headers().clone();
        samples.answer(
            "GET",
            example.path,
            &Answer {
                status: 200,
                headers,
                body: Value::Null,
            },
        );
        samples.schema("ConnectedEventData", stream.connected().await);
        open.push(stream);
    }
    let mut first_id = None;
    for example in requests {
        let path = example
            .path
            .replace("{id}", first_id.as_deref().unwrap_or_default());
        let body = example
            .body
            .map(|b| serde_json::from_str(b).expect("the example body is JSON"));
        let answer = call(&mut samples, &hub, example.method, &path, &[], body).await;
        assert!(
            (200..300).contains(&answer.status),
            "{} {path} answered {}: {}",
            example.method,
            answer.status,
            answer.body
        );
        if first_id.is_none() && example.method == "POST" {
            first_id = answer.body["id"].as_str().map(str::to_owned);
        }
        if example.path.contains("?after=") {
            assert!(
                answer.body["events"]
                    .as_array()
                    .is_some_and(|e| !e.is_empty()),
                "polling after the first event finds the later ones: {}",
                answer.body
            );
        }
    }
    // The closed channel answers 204 to a new subscriber, as documented.
    let closed = call(
        &mut samples,
        &hub,
        "GET",
        "/api/channels/job-1/stream",
        &[],
        None,
    )
    .await;
    assert_eq!(closed.status, 204);
    samples.check();
}

/// `(status, code)` of every row of api.md's error table.
fn api_md_error_table(markdown: &str) -> BTreeSet<(u16, String)> {
    markdown
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let status = cells.get(1)?.parse::<u16>().ok()?;
            let code = cells.get(2)?.trim_matches('`').to_owned();
            Some((status, code))
        })
        .collect()
}

/// `(status, code)` for every error response the document's operations list, and every code of
/// its `ErrorCode` enum.
fn document_error_codes(doc: &Value) -> (BTreeSet<(u16, String)>, BTreeSet<String>) {
    let resolve = |reference: &str| -> Value {
        let mut node = doc;
        for part in reference.trim_start_matches("#/").split('/') {
            node = &node[part.replace("~1", "/")];
        }
        node.clone()
    };
    let mut pairs = BTreeSet::new();
    for operations in doc["paths"].as_object().expect("paths").values() {
        for operation in operations.as_object().expect("operations").values() {
            for (status, response) in operation["responses"].as_object().expect("responses") {
                let Some(reference) = response["$ref"].as_str() else {
                    continue;
                };
                let response = resolve(reference);
                let Some(schema) =
                    response["content"]["application/json"]["schema"]["$ref"].as_str()
                else {
                    continue;
                };
                let schema = resolve(schema);
                for code in schema["properties"]["error"]["properties"]["code"]["enum"]
                    .as_array()
                    .into_iter()
                    .flatten()
                {
                    let status = status.parse().expect("a numeric status");
                    pairs.insert((status, code.as_str().expect("a code").to_owned()));
                }
            }
        }
    }
    // 405 is answered for any undocumented method, so no operation lists it.
    let not_allowed = resolve("#/components/schemas/MethodNotAllowedError");
    for code in not_allowed["properties"]["error"]["properties"]["code"]["enum"]
        .as_array()
        .expect("405 codes")
    {
        pairs.insert((405, code.as_str().expect("a code").to_owned()));
    }
    let all = doc["components"]["schemas"]["ErrorCode"]["enum"]
        .as_array()
        .expect("ErrorCode is an enum")
        .iter()
        .map(|c| c.as_str().expect("a code").to_owned())
        .collect();
    (pairs, all)
}

/// Records a provoked error: its answer goes to the validator, and `(status, code)` to the set.
fn provoked(
    seen: &mut BTreeMap<String, u16>,
    samples: &mut Samples,
    method: &str,
    path: &str,
    answer: &Answer,
) {
    let code = answer
        .code()
        .unwrap_or_else(|| {
            panic!(
                "{method} {path} answered {} without an error code: {}",
                answer.status, answer.body
            )
        })
        .to_owned();
    if template_for(&samples.doc, path).is_some() && method != "PUT" {
        samples.answer(method, path, answer);
    }
    seen.insert(code, answer.status);
}

#[tokio::test]
async fn error_codes_agree_between_api_md_the_document_and_the_hub() {
    let doc = document();
    let table = api_md_error_table(&api_md());
    let (pairs, all_codes) = document_error_codes(&doc);
    assert_eq!(
        pairs, table,
        "the document's (status, code) pairs and api.md's error table differ"
    );
    let table_codes: BTreeSet<String> = table.iter().map(|(_, c)| c.clone()).collect();
    assert_eq!(
        all_codes, table_codes,
        "ErrorCode lists exactly the codes of api.md's table"
    );

    let mut samples = Samples::new();
    let mut seen = BTreeMap::new();
    let publish = |data: Value| Some(data.to_string().into_bytes());

    let hub = TestHub::start(&[]);
    let mut live = SseStream::open(&hub.url("/api/stream?channel=a&clientId=c1"), &[]).await;
    live.connected().await;
    let cases: Vec<(&str, String, Option<Vec<u8>>)> = vec![
        (
            "POST",
            "/api/channels/bad%20name/events".into(),
            publish(json!({"data": 1})),
        ),
        (
            "POST",
            "/api/channels/a/events".into(),
            publish(json!({"data": 1, "nope": 2})),
        ),
        (
            "POST",
            "/api/channels/a/events".into(),
            publish(json!({"data": 1, "event": ""})),
        ),
        (
            "POST",
            "/api/channels/a/events".into(),
            publish(json!({"data": 1, "id": "a\nb"})),
        ),
        ("GET", "/api/clients/bad%20id".into(), None),
        ("GET", "/api/channels/a/events?limit=0".into(), None),
        ("GET", "/api/channels/%FF/events".into(), None),
        (
            "GET",
            format!(
                "/api/events?{}",
                (0..51)
                    .map(|n| format!("channel=c{n}"))
                    .collect::<Vec<_>>()
                    .join("&")
            ),
            None,
        ),
        ("GET", "/api/nope".into(), None),
        ("GET", "/api/channels/a/presence".into(), None),
        ("GET", "/api/channels/a/stream?presence=maybe".into(), None),
        ("GET", "/api/clients/nobody".into(), None),
        ("DELETE", "/api/clients/c1/subscriptions/zzz".into(), None),
        ("PUT", "/api/stats".into(), None),
        ("POST", "/api/channels/done/close".into(), None),
        (
            "POST",
            "/api/clients/c1/subscriptions".into(),
            publish(json!({"channel": "done"})),
        ),
        (
            "POST",
            "/api/channels/a/events".into(),
            publish(json!({"data": "x".repeat(1024 * 1024 + 1)})),
        ),
        (
            "POST",
            "/api/channels/a/events".into(),
            publish(json!({"data": "x".repeat(70_000)})),
        ),
    ];
    for (method, path, body) in cases {
        let answer = send(&hub, method, &path, &[], body).await;
        if answer.status == 200 {
            continue; // the close that makes `done` closed
        }
        if method == "PUT" {
            assert!(
                answer.header("allow").is_some(),
                "405 names the allowed methods"
            );
        }
        provoked(&mut seen, &mut samples, method, &path, &answer);
    }

    // Cross-site defences: a foreign page, a body that is not JSON, a rebound DNS name.
    let answer = send(
        &hub,
        "POST",
        "/api/channels/a/events",
        &[("origin", "http://evil.example")],
        publish(json!({"data": 1})),
    )
    .await;
    provoked(
        &mut seen,
        &mut samples,
        "POST",
        "/api/channels/a/events",
        &answer,
    );
    for (request, status) in [
        (
            &b"POST /api/channels/a/events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\nContent-Length: 10\r\n\r\n{\"data\":1}"[..],
            "415",
        ),
        (
            &b"GET /api/channels HTTP/1.1\r\nHost: rebound.example\r\nConnection: close\r\n\r\n"[..],
            "421",
        ),
    ] {
        let mut socket = raw_connect(&hub, request);
        let (raw, _) = read_until_closed(&mut socket, Duration::from_secs(5));
        let raw = String::from_utf8_lossy(&raw);
        let (head, body) = raw.split_once("\r\n\r\n").expect("an HTTP answer");
        assert!(head.starts_with(&format!("HTTP/1.1 {status}")), "{raw}");
        let body: Value = serde_json::from_str(body.trim()).expect("a JSON error");
        seen.insert(
            body["error"]["code"].as_str().expect("a code").to_owned(),
            status.parse().expect("a status"),
        );
    }

    let secured = jwt_hub(&[]);
    for (method, path, token) in [
        ("GET", "/api/channels/a/events", None),
        (
            "POST",
            "/api/channels/a/events",
            Some(token_for("7", json!({"subscribe": ["a"]}))),
        ),
    ] {
        let auth = token.map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> =
            auth.iter().map(|a| ("authorization", a.as_str())).collect();
        let answer = send(
            &secured,
            method,
            path,
            &headers,
            publish(json!({"data": 1})),
        )
        .await;
        provoked(&mut seen, &mut samples, method, path, &answer);
    }

    let full = TestHub::start(&["--max-connections", "1", "--body-read-timeout", "300ms"]);
    let _only = SseStream::open(&full.url("/api/channels/a/stream"), &[]).await;
    let answer = send(&full, "GET", "/api/channels/a/stream", &[], None).await;
    provoked(
        &mut seen,
        &mut samples,
        "GET",
        "/api/channels/a/stream",
        &answer,
    );
    let mut slow = raw_connect(
        &full,
        b"POST /api/channels/a/events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 20\r\n\r\n{",
    );
    let (raw, _) = read_until_closed(&mut slow, Duration::from_secs(5));
    let raw = String::from_utf8_lossy(&raw);
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .expect("an HTTP answer to the slow body");
    assert!(head.starts_with("HTTP/1.1 408"), "{raw}");
    let body: Value = serde_json::from_str(body.trim()).expect("a JSON error");
    seen.insert(
        body["error"]["code"].as_str().expect("a code").to_owned(),
        408,
    );

    let crowded = TestHub::start(&[
        "--max-connections-per-address",
        "1",
        "--trusted-proxies",
        "127.0.0.1",
    ]);
    let from = [("x-forwarded-for", "203.0.113.7")];
    let _first = SseStream::open(&crowded.url("/api/channels/a/stream"), &from).await;
    let answer = send(&crowded, "GET", "/api/channels/a/stream", &from, None).await;
    provoked(
        &mut seen,
        &mut samples,
        "GET",
        "/api/channels/a/stream",
        &answer,
    );

    // Namespaces: one subscriber per `room:*` channel, `private:*` left to an application that
    // is not configured, and one publish across two namespaces.
    let config =
        std::env::temp_dir().join(format!("herald-openapi-ns-{}.toml", std::process::id()));
    std::fs::write(
        &config,
        "[[namespace]]\nname = \"rooms\"\nchannels = \"room:*\"\nmax_subscribers = 1\n\n\
         [[namespace]]\nname = \"private\"\nchannels = \"private:*\"\nsubscribe = \"app\"\n",
    )
    .expect("write the namespaces");
    let namespaced = TestHub::start(&["--config", config.to_str().expect("utf-8 path")]);
    let _seated = SseStream::open(&namespaced.url("/api/channels/room:1/stream"), &[]).await;
    for (method, path, body) in [
        ("GET", "/api/channels/room:1/stream", None),
        ("GET", "/api/channels/private:1/stream", None),
        (
            "POST",
            "/api/events",
            publish(json!({"channels": ["room:1", "news"], "data": 1})),
        ),
    ] {
        let answer = send(&namespaced, method, path, &[], body).await;
        provoked(&mut seen, &mut samples, method, path, &answer);
    }

    let mut redis = RedisServer::start();
    let node = TestHub::start(&["--redis-url", &redis.url(), "--node-id", "n1"]);
    redis.stop();
    eventually("the node sees Redis gone", || async {
        send(&node, "GET", "/healthz", &[], None).await.status == 503
    })
    .await;
    let health = send(&node, "GET", "/healthz", &[], None).await;
    provoked(&mut seen, &mut samples, "GET", "/healthz", &health);
    let answer = send(
        &node,
        "POST",
        "/api/channels/a/events",
        &[],
        publish(json!({"data": 1})),
    )
    .await;
    provoked(
        &mut seen,
        &mut samples,
        "POST",
        "/api/channels/a/events",
        &answer,
    );

    for (code, status) in &seen {
        assert!(
            table.contains(&(*status, code.clone())),
            "the hub answered {status} {code}, which api.md's table and the document lack"
        );
    }
    let not_provoked: BTreeSet<String> =
        NOT_PROVOKED.iter().map(|(c, _)| (*c).to_owned()).collect();
    let provoked_codes: BTreeSet<String> = seen.keys().cloned().collect();
    let missing: Vec<_> = table_codes
        .iter()
        .filter(|c| !provoked_codes.contains(*c) && !not_provoked.contains(*c))
        .collect();
    assert!(
        missing.is_empty(),
        "codes neither provoked nor explained in NOT_PROVOKED: {missing:?}"
    );
    let stale: Vec<_> = not_provoked.intersection(&provoked_codes).collect();
    assert!(
        stale.is_empty(),
        "NOT_PROVOKED names codes the hub now answers: {stale:?}"
    );
    samples.check();
}

/// A concrete path for a documented template, and a body its POST takes.
fn concrete(template: &str) -> (String, Value) {
    let path = template
        .replace("{channel}", "routes")
        .replace("{clientId}", "c_live")
        .replace("{userId}", "42");
    let body = if template.ends_with("/subscriptions") {
        json!({"channel": "other"})
    } else if template == "/api/events" {
        json!({"channels": ["routes"], "data": 1})
    } else {
        json!({"data": 1})
    };
    (path, body)
}

#[tokio::test]
async fn every_documented_route_exists_and_undocumented_api_paths_are_404() {
    let doc = document();
    let hub = TestHub::start(&[]);
    let mut live =
        SseStream::open(&hub.url("/api/channels/routes/stream?clientId=c_live"), &[]).await;
    live.connected().await;
    let mut samples = Samples::new();
    for (template, operations) in doc["paths"].as_object().expect("paths") {
        let (path, body) = concrete(template);
        for method in ["GET", "POST", "DELETE", "PUT", "PATCH"] {
            let documented = operations.get(method.to_lowercase()).is_some();
            let answer = send(
                &hub,
                method,
                &path,
                &[],
                Some(body.to_string().into_bytes()),
            )
            .await;
            if NOT_SERVED_YET.contains(&template.as_str()) {
                assert_eq!(
                    answer.status, 404,
                    "{template} is served now: take it off NOT_SERVED_YET"
                );
                continue;
            }
            if documented {
                assert_ne!(
                    answer.code(),
                    Some("not_found"),
                    "{method} {template} is documented but not routed"
                );
                assert_ne!(
                    answer.status, 405,
                    "{method} {template} is documented but not routed"
                );
                samples.answer(method, &path, &answer);
            } else {
                assert_eq!(
                    answer.status, 405,
                    "{method} {template} is not documented, yet answered {}",
                    answer.status
                );
                assert_eq!(answer.code(), Some("method_not_allowed"));
            }
        }
    }
    for path in [
        "/api",
        "/api/",
        "/api/nope",
        "/api/channels/a",
        "/api/channels/a/nope",
        "/api/channels/a/events/more",
        "/api/clients/c/nope",
        "/api/users/u",
        "/api/users/u/stream",
        "/api/stream/more",
        "/healthz/more",
    ] {
        let answer = send(&hub, "GET", path, &[], None).await;
        assert_eq!(
            (answer.status, answer.code()),
            (404, Some("not_found")),
            "GET {path}"
        );
    }
    samples.check();
}

#[tokio::test]
async fn the_hub_serves_this_document() {
    let hub = TestHub::start(&[]);
    let answer = send(&hub, "GET", "/api/openapi.json", &[], None).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("content-type"), Some("application/json"));
    assert_eq!(
        answer.body,
        document(),
        "the hub serves crates/herald-hub/openapi.json as it is"
    );
}
