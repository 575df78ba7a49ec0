//! Who may subscribe and publish where, against the real binary: token sources and their order,
//! the rights of each claim, API keys, the connection limits, and CORS.

mod auth_support;
mod common;

use auth_support::*;
use common::{eventually, SseStream, TestHub, PATIENCE};
use jsonwebtoken::Algorithm;
use serde_json::json;
use std::time::Duration;

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

#[tokio::test]
async fn the_header_wins_over_the_cookie_and_the_cookie_over_the_query() {
    let hub = jwt_hub(&[]);
    let good = token_for("7", json!({"subscribe": ["orders"]}));
    let bad = "not.a.token";
    let cookie = |t: &str| format!("herald_token={t}");
    let path = |t: &str| format!("/api/channels/orders/stream?token={t}");

    // Each source alone.
    let (h, c) = (bearer(&good), cookie(&good));
    for (path, headers) in [
        (
            "/api/channels/orders/stream".to_owned(),
            vec![("authorization", h.as_str())],
        ),
        (
            "/api/channels/orders/stream".to_owned(),
            vec![("cookie", c.as_str())],
        ),
        (path(&good), vec![]),
    ] {
        let answer = send(&hub, "GET", &path, &headers, None).await;
        assert_eq!(answer.status, 200, "{path} {headers:?}");
    }
    // A bad token earlier in the order is not rescued by a good one later.
    let (hb, cb) = (bearer(bad), cookie(bad));
    let cases = [
        (
            path(bad),
            vec![("authorization", h.as_str()), ("cookie", cb.as_str())],
            200,
        ),
        (
            path(&good),
            vec![("authorization", hb.as_str()), ("cookie", c.as_str())],
            401,
        ),
        (path(bad), vec![("cookie", c.as_str())], 200),
        (path(&good), vec![("cookie", cb.as_str())], 401),
    ];
    for (path, headers, status) in cases {
        let answer = send(&hub, "GET", &path, &headers, None).await;
        assert_eq!(answer.status, status, "{path} {headers:?}: {}", answer.body);
    }
    // The cookie is found among others.
    let many = format!("theme=dark; herald_token={good}; lang=en");
    let answer = send(
        &hub,
        "GET",
        "/api/channels/orders/events",
        &[("cookie", many.as_str())],
        None,
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
}

#[tokio::test]
async fn missing_bad_and_expired_tokens_are_answered_401() {
    let hub = jwt_hub(&[]);
    let expired = hs256(json!({"sub": "7", "exp": now() - 120, "herald": {"subscribe": ["*"]}}));
    let not_yet = hs256(json!({
        "sub": "7", "exp": now() + 3600, "nbf": now() + 600, "herald": {"subscribe": ["*"]}
    }));
    let no_exp = hs256(json!({"sub": "7", "herald": {"subscribe": ["*"]}}));
    for token in [
        None,
        Some("garbage"),
        Some(&*expired),
        Some(&*not_yet),
        Some(&*no_exp),
    ] {
        for path in ["/api/channels/orders/stream", "/api/channels/orders/events"] {
            let answer = get(&hub, path, token).await;
            assert_eq!(answer.status, 401, "{path} with {token:?}");
            assert_eq!(answer.code(), Some("unauthorized"));
            assert_eq!(answer.header("www-authenticate"), Some("Bearer"));
        }
    }
    assert_eq!(connections(&hub).await, 0);
}

#[tokio::test]
async fn a_subscriber_may_always_subscribe_to_its_own_user_channel() {
    let hub = jwt_hub(&[]);
    let token = token_for("42", json!({}));
    let auth = bearer(&token);
    let mut stream = SseStream::open(
        &hub.url("/api/channels/user:42/stream"),
        &[("authorization", auth.as_str())],
    )
    .await;
    stream.connected().await;
    let refused = get(&hub, "/api/channels/user:43/stream", Some(&token)).await;
    assert_eq!(refused.status, 403);
    assert_eq!(refused.body["error"]["channels"], json!(["user:43"]));

    // The connection's user is the token's `sub`, and events to that user reach it.
    let clients = get(&hub, "/api/clients", Some(API_KEY)).await;
    assert_eq!(clients.body["clients"][0]["user"], "42");
    let sent = post(
        &hub,
        "/api/users/42/events",
        Some(API_KEY),
        json!({"data": "hi"}),
    )
    .await;
    assert_eq!(sent.status, 200, "{}", sent.body);
    assert_eq!(stream.next_event().await.data, "hi");
}

#[tokio::test]
async fn a_channel_outside_the_claims_is_refused_by_name_and_nothing_is_subscribed() {
    let hub = jwt_hub(&[]);
    let token = token_for("7", json!({"subscribe": ["orders", "team:7:*"]}));
    let answer = get(
        &hub,
        "/api/stream?channel=orders&channel=billing&channel=team:7:chat&channel=team:8:chat",
        Some(&token),
    )
    .await;
    assert_eq!(answer.status, 403, "{}", answer.body);
    assert_eq!(answer.code(), Some("forbidden"));
    assert_eq!(
        answer.body["error"]["channels"],
        json!(["billing", "team:8:chat"])
    );
    let message = answer.body["error"]["message"].as_str().expect("a message");
    assert!(
        message.contains("billing") && message.contains("team:8:chat"),
        "{message}"
    );
    assert_eq!(connections(&hub).await, 0);

    // Polling asks for the same rights.
    let poll = get(
        &hub,
        "/api/events?channel=orders&channel=billing",
        Some(&token),
    )
    .await;
    assert_eq!(poll.status, 403);
    assert_eq!(poll.body["error"]["channels"], json!(["billing"]));
    let poll = get(
        &hub,
        "/api/events?channel=orders&channel=team:7:x",
        Some(&token),
    )
    .await;
    assert_eq!(poll.status, 200, "{}", poll.body);
}

#[tokio::test]
async fn publish_rights_follow_the_publish_patterns() {
    let hub = jwt_hub(&[]);
    let team = token_for("svc", json!({"publish": ["team:7:*"]}));
    let subscriber_only = token_for("7", json!({"subscribe": ["*"]}));
    let everywhere = token_for("svc", json!({"publish": ["*"]}));
    let admin = token_for("ops", json!({"admin": true}));
    let event = json!({"data": "x"});
    let with_channels = |c: serde_json::Value| json!({"channels": c, "data": "x"});

    let cases: Vec<(&str, &str, serde_json::Value, u16)> = vec![
        (
            &team,
            "/api/channels/team:7:chat/events",
            event.clone(),
            200,
        ),
        (&team, "/api/channels/orders/events", event.clone(), 403),
        (
            &team,
            "/api/events",
            with_channels(json!(["team:7:a", "team:7:b"])),
            200,
        ),
        (
            &team,
            "/api/events",
            with_channels(json!(["team:7:a", "orders"])),
            403,
        ),
        (&team, "/api/broadcast", event.clone(), 403),
        (&team, "/api/users/9/events", event.clone(), 403),
        (
            &team,
            "/api/channels/team:7:chat/close",
            json!({"data": "bye"}),
            200,
        ),
        (
            &team,
            "/api/channels/orders/close",
            json!({"data": "bye"}),
            403,
        ),
        (
            &subscriber_only,
            "/api/channels/orders/events",
            event.clone(),
            403,
        ),
        (&subscriber_only, "/api/broadcast", event.clone(), 403),
        (&everywhere, "/api/broadcast", event.clone(), 200),
        (&everywhere, "/api/users/9/events", event.clone(), 200),
        (&admin, "/api/broadcast", event.clone(), 200),
        (API_KEY, "/api/broadcast", event.clone(), 200),
        (API_KEY, "/api/channels/anything/events", event.clone(), 200),
    ];
    for (token, path, body, status) in cases {
        let answer = post(&hub, path, Some(token), body.clone()).await;
        assert_eq!(answer.status, status, "{path} {body}: {}", answer.body);
        if status == 403 {
            assert_eq!(answer.code(), Some("forbidden"));
        }
    }
    let refused = post(
        &hub,
        "/api/events",
        Some(&team),
        with_channels(json!(["team:7:a", "orders", "billing"])),
    )
    .await;
    assert_eq!(
        refused.body["error"]["channels"],
        json!(["orders", "billing"])
    );

    // Sending to one client id takes the `*` pattern.
    let auth = bearer(&subscriber_only);
    let mut stream = SseStream::open(
        &hub.url("/api/channels/orders/stream?clientId=tab-1"),
        &[("authorization", auth.as_str())],
    )
    .await;
    stream.connected().await;
    let to_client = "/api/clients/tab-1/events";
    assert_eq!(
        post(&hub, to_client, Some(&team), event.clone())
            .await
            .status,
        403
    );
    assert_eq!(
        post(&hub, to_client, Some(&everywhere), event.clone())
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn a_client_id_cannot_be_taken_over_by_another_user() {
    let hub = jwt_hub(&[]);
    let owner = bearer(&token_for("7", json!({"subscribe": ["orders"]})));
    let url = hub.url("/api/channels/orders/stream?clientId=tab-1");
    let mut first = SseStream::open(&url, &[("authorization", owner.as_str())]).await;
    first.connected().await;
    // Another user asking for the id is answered as a fresh connection: a new id, and nothing
    // that tells the id exists.
    let intruder = bearer(&token_for("8", json!({"subscribe": ["orders"]})));
    let mut other = SseStream::open(&url, &[("authorization", intruder.as_str())]).await;
    let given = other.connected().await["clientId"].clone();
    assert_ne!(given, "tab-1", "another user's id is never given");
    drop(other);
    let clients = get(&hub, "/api/clients", Some(API_KEY)).await;
    assert_eq!(clients.body["clients"][0]["id"], "tab-1");
    assert_eq!(clients.body["clients"][0]["user"], "7");
    // The owner's own reconnect takes its id back.
    let mut second = SseStream::open(&url, &[("authorization", owner.as_str())]).await;
    assert_eq!(second.connected().await["clientId"], "tab-1");
    first.events_until_end().await;

    // After the owner leaves, the id (and what is sent to it meanwhile) still belongs to it.
    drop(second);
    common::eventually("the owner's stream is gone", || async {
        get(&hub, "/api/clients", Some(API_KEY)).await.body["clients"] == json!([])
    })
    .await;
    let mut other = SseStream::open(&url, &[("authorization", intruder.as_str())]).await;
    assert_ne!(
        other.connected().await["clientId"],
        "tab-1",
        "a departed id is still its user's"
    );
    drop(other);
    let mut back = SseStream::open(&url, &[("authorization", owner.as_str())]).await;
    assert_eq!(back.connected().await["clientId"], "tab-1");
}

#[tokio::test]
async fn admin_endpoints_take_the_admin_claim_or_an_api_key() {
    let hub = jwt_hub(&[]);
    let everywhere = token_for("svc", json!({"publish": ["*"], "subscribe": ["*"]}));
    let admin = token_for("ops", json!({"admin": true}));
    for path in [
        "/api/stats",
        "/api/clients",
        "/api/channels",
        "/api/clients/nobody",
    ] {
        assert_eq!(get(&hub, path, None).await.status, 401, "{path}");
        let answer = get(&hub, path, Some(&everywhere)).await;
        assert_eq!(answer.status, 403, "{path}");
        assert_eq!(answer.code(), Some("forbidden"));
        assert_ne!(get(&hub, path, Some(&admin)).await.status, 403, "{path}");
        assert_ne!(get(&hub, path, Some(API_KEY)).await.status, 403, "{path}");
    }
    let subscribe = "/api/clients/nobody/subscriptions";
    let body = json!({"channel": "orders"});
    assert_eq!(
        post(&hub, subscribe, Some(&everywhere), body.clone())
            .await
            .status,
        403
    );
    assert_eq!(
        post(&hub, subscribe, Some(&admin), body.clone())
            .await
            .status,
        404
    );
    let delete = send(
        &hub,
        "DELETE",
        "/api/clients/nobody",
        &[("authorization", &bearer(&everywhere))],
        None,
    )
    .await;
    assert_eq!(delete.status, 403);
    // A wrong API key is not a token either.
    let wrong = get(&hub, "/api/stats", Some("test-api-key-0123456780")).await;
    assert_eq!(wrong.status, 401);
}

#[tokio::test]
async fn publishing_takes_the_header_not_the_cookie_or_the_query() {
    let hub = jwt_hub(&[]);
    let token = token_for("svc", json!({"publish": ["*"], "admin": true}));
    let cookie = format!("herald_token={token}");
    let answer = send(
        &hub,
        "POST",
        "/api/channels/orders/events",
        &[("cookie", cookie.as_str())],
        Some(br#"{"data": "x"}"#.to_vec()),
    )
    .await;
    assert_eq!(answer.status, 401, "{}", answer.body);
    let answer = send(
        &hub,
        "POST",
        &format!("/api/channels/orders/events?token={token}"),
        &[],
        Some(br#"{"data": "x"}"#.to_vec()),
    )
    .await;
    assert_eq!(answer.status, 401, "{}", answer.body);
    assert_eq!(events_published(&hub).await, 0);
}

#[tokio::test]
async fn none_mode_with_api_keys_takes_a_key_to_publish_but_not_to_subscribe() {
    let hub = TestHub::start(&["--api-keys", API_KEY]);
    let mut stream = hub.stream("/api/channels/orders/stream").await;
    stream.connected().await;
    let refused = post(
        &hub,
        "/api/channels/orders/events",
        None,
        json!({"data": "x"}),
    )
    .await;
    assert_eq!(refused.status, 401);
    assert_eq!(get(&hub, "/api/stats", None).await.status, 401);
    let sent = post(
        &hub,
        "/api/channels/orders/events",
        Some(API_KEY),
        json!({"data": "ok"}),
    )
    .await;
    assert_eq!(sent.status, 200, "{}", sent.body);
    assert_eq!(stream.next_event().await.data, "ok");
}

#[tokio::test]
async fn none_mode_without_keys_stays_open_for_local_development() {
    let hub = TestHub::start(&[]);
    assert_eq!(
        post(&hub, "/api/broadcast", None, json!({"data": "x"}))
            .await
            .status,
        200
    );
    assert_eq!(get(&hub, "/api/stats", None).await.status, 200);
}

#[tokio::test]
async fn public_keys_verify_rs256_es256_and_eddsa_and_refuse_algorithm_confusion() {
    for (algorithm, name) in [
        (Algorithm::RS256, "rs256"),
        (Algorithm::ES256, "es256"),
        (Algorithm::EdDSA, "eddsa"),
    ] {
        let public = key_path(&format!("{name}-public.pem"));
        let hub = TestHub::start(&[
            "--auth",
            "jwt",
            "--jwt-public-key",
            public.to_str().expect("a UTF-8 path"),
        ]);
        let claims = json!({"sub": "7", "exp": now() + 60, "herald": {"subscribe": ["orders"]}});
        let token = signed_with(algorithm, &format!("{name}-private.pem"), claims.clone());
        let answer = get(&hub, "/api/channels/orders/events", Some(&token)).await;
        assert_eq!(answer.status, 200, "{name}: {}", answer.body);

        // HS256 with the public key as the secret: the classic confusion attack.
        let pem = std::fs::read(&public).expect("the public key exists");
        let confused = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(Algorithm::HS256),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(&pem),
        )
        .expect("encoding works");
        let answer = get(&hub, "/api/channels/orders/events", Some(&confused)).await;
        assert_eq!(answer.status, 401, "{name} accepted HS256");
        let answer = get(&hub, "/api/channels/orders/events", Some(&alg_none(claims))).await;
        assert_eq!(answer.status, 401, "{name} accepted alg none");
    }
}

#[tokio::test]
async fn a_users_oldest_connection_is_closed_when_one_more_arrives() {
    let hub = jwt_hub(&["--max-connections-per-user", "2"]);
    let auth = bearer(&token_for("7", json!({"subscribe": ["orders"]})));
    let other = bearer(&token_for("8", json!({"subscribe": ["orders"]})));
    let open = |auth: String| {
        let url = hub.url("/api/channels/orders/stream");
        async move {
            let mut stream = SseStream::open(&url, &[("authorization", auth.as_str())]).await;
            stream.connected().await;
            stream
        }
    };
    let mut oldest = open(auth.clone()).await;
    let mut second = open(auth.clone()).await;
    let mut someone_else = open(other.clone()).await;
    let mut newest = open(auth.clone()).await;

    oldest.events_until_end().await;
    assert!(
        oldest.raw_text().contains("per-user limit"),
        "{}",
        oldest.raw_text()
    );
    assert_eq!(connections(&hub).await, 3);
    let sent = post(
        &hub,
        "/api/channels/orders/events",
        Some(API_KEY),
        json!({"data": "x"}),
    )
    .await;
    assert_eq!(sent.body["recipients"], 3);
    for stream in [&mut second, &mut someone_else, &mut newest] {
        assert_eq!(stream.next_event().await.data, "x");
    }
}

#[tokio::test]
async fn the_per_address_limit_answers_429_and_frees_slots_as_streams_end() {
    let hub = jwt_hub(&[
        "--heartbeat-interval",
        "200ms",
        "--max-connections-per-address",
        "2",
        "--trusted-proxies",
        "127.0.0.1",
    ]);
    let auth = bearer(&token_for("7", json!({"subscribe": ["*"]})));
    let from = |address: &'static str| {
        let url = hub.url("/api/channels/orders/stream");
        let auth = auth.clone();
        async move {
            SseStream::open(
                &url,
                &[
                    ("authorization", auth.as_str()),
                    ("x-forwarded-for", address),
                ],
            )
            .await
        }
    };
    let first = from("203.0.113.7").await;
    let _second = from("203.0.113.7").await;
    let refused = send(
        &hub,
        "GET",
        "/api/channels/orders/stream",
        &[
            ("authorization", auth.as_str()),
            ("x-forwarded-for", "203.0.113.7"),
        ],
        None,
    )
    .await;
    assert_eq!(refused.status, 429, "{}", refused.body);
    assert_eq!(refused.code(), Some("too_many_connections"));
    let _elsewhere = from("203.0.113.8").await;
    // Loopback (no forwarded address) is not limited per address.
    let _local = SseStream::open(
        &hub.url("/api/channels/orders/stream"),
        &[("authorization", auth.as_str())],
    )
    .await;
    drop(first);
    eventually("the closed stream's slot is free", || async {
        connections(&hub).await == 3
    })
    .await;
    let _again = from("203.0.113.7").await;
}

#[tokio::test]
async fn the_total_limit_answers_503() {
    let hub = jwt_hub(&["--max-connections", "2"]);
    let auth = bearer(&token_for("7", json!({"subscribe": ["*"]})));
    let url = hub.url("/api/channels/orders/stream");
    let _a = SseStream::open(&url, &[("authorization", auth.as_str())]).await;
    let _b = SseStream::open(&url, &[("authorization", auth.as_str())]).await;
    let refused = get(
        &hub,
        "/api/channels/orders/stream",
        Some(&token_for("8", json!({"subscribe": ["*"]}))),
    )
    .await;
    assert_eq!(refused.status, 503, "{}", refused.body);
    assert_eq!(refused.code(), Some("at_capacity"));
    // Requests other than streams are still served.
    let sent = post(
        &hub,
        "/api/channels/orders/events",
        Some(API_KEY),
        json!({"data": "x"}),
    )
    .await;
    assert_eq!(sent.status, 200);
}

#[tokio::test]
async fn cors_answers_preflights_for_listed_origins_with_credentials() {
    let hub = jwt_hub(&["--cors-origins", "https://app.example.com"]);
    let preflight = send(
        &hub,
        "OPTIONS",
        "/api/channels/orders/stream",
        &[
            ("origin", "https://app.example.com"),
            ("access-control-request-method", "GET"),
            (
                "access-control-request-headers",
                "authorization, last-event-id",
            ),
        ],
        None,
    )
    .await;
    assert_eq!(preflight.status, 200);
    assert_eq!(
        preflight.header("access-control-allow-origin"),
        Some("https://app.example.com")
    );
    assert_eq!(
        preflight.header("access-control-allow-credentials"),
        Some("true")
    );
    let allowed_headers = preflight
        .header("access-control-allow-headers")
        .unwrap_or_default()
        .to_ascii_lowercase();
    assert!(
        allowed_headers.contains("authorization"),
        "{allowed_headers}"
    );
    assert!(
        allowed_headers.contains("last-event-id"),
        "{allowed_headers}"
    );

    // An EventSource with `withCredentials` sends the cookie; the answer is readable by the page.
    let cookie = format!(
        "herald_token={}",
        token_for("7", json!({"subscribe": ["orders"]}))
    );
    let mut stream = SseStream::open(
        &hub.url("/api/channels/orders/stream"),
        &[
            ("origin", "https://app.example.com"),
            ("cookie", cookie.as_str()),
        ],
    )
    .await;
    let headers = stream.response.headers();
    assert_eq!(
        headers
            .get("access-control-allow-origin")
            .and_then(|v| v.to_str().ok()),
        Some("https://app.example.com")
    );
    assert_eq!(
        headers
            .get("access-control-allow-credentials")
            .and_then(|v| v.to_str().ok()),
        Some("true")
    );
    stream.connected().await;

    // A refusal is readable too, so the page can tell 401 from a network error.
    let refused = send(
        &hub,
        "GET",
        "/api/channels/orders/stream",
        &[("origin", "https://app.example.com")],
        None,
    )
    .await;
    assert_eq!(refused.status, 401);
    assert_eq!(
        refused.header("access-control-allow-origin"),
        Some("https://app.example.com")
    );
}

#[tokio::test]
async fn cors_gives_nothing_to_other_origins() {
    let hub = jwt_hub(&["--cors-origins", "https://app.example.com"]);
    let preflight = send(
        &hub,
        "OPTIONS",
        "/api/channels/orders/events",
        &[
            ("origin", "https://evil.example"),
            ("access-control-request-method", "POST"),
            ("access-control-request-headers", "authorization"),
        ],
        None,
    )
    .await;
    assert_eq!(preflight.header("access-control-allow-origin"), None);
    assert_eq!(preflight.header("access-control-allow-credentials"), None);
    let answer = send(
        &hub,
        "GET",
        "/healthz",
        &[("origin", "https://evil.example")],
        None,
    )
    .await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("access-control-allow-origin"), None);

    // With no origin configured, no CORS header is ever sent.
    let closed = jwt_hub(&[]);
    let answer = send(
        &closed,
        "GET",
        "/healthz",
        &[("origin", "https://app.example.com")],
        None,
    )
    .await;
    assert_eq!(answer.header("access-control-allow-origin"), None);
}

#[tokio::test]
async fn a_token_never_reaches_the_log() {
    let hub = jwt_hub(&[]);
    let good = token_for("7", json!({"subscribe": ["orders"]}));
    let expired = hs256(json!({"sub": "7", "exp": now() - 600}));
    let forged_token = forged(
        &good,
        json!({"sub": "7", "exp": now() + 60, "herald": {"admin": true}}),
    );
    let mut stream = SseStream::open(
        &hub.url(&format!("/api/channels/orders/stream?token={good}")),
        &[],
    )
    .await;
    stream.connected().await;
    for token in [&expired, &forged_token] {
        assert_eq!(
            get(&hub, "/api/channels/orders/events", Some(token))
                .await
                .status,
            401
        );
        let path = format!("/api/channels/orders/events?token={token}");
        assert_eq!(get(&hub, &path, None).await.status, 401);
    }
    assert_eq!(
        get(&hub, "/api/stats", Some("wrong-key-but-long-enough"))
            .await
            .status,
        401
    );
    drop(stream);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let log = hub.log().join("\n");
    assert!(
        log.contains("token refused"),
        "the refusals are logged: {log}"
    );
    for secret in [
        good.as_str(),
        expired.as_str(),
        forged_token.as_str(),
        API_KEY,
        SECRET,
        "wrong-key-but-long-enough",
    ] {
        // A token's signature part is what makes it a credential.
        let tail = secret.rsplit('.').next().unwrap_or(secret);
        assert!(!log.contains(tail), "the log holds a credential: {log}");
    }
}

#[test]
fn the_hub_warns_when_it_listens_unauthenticated_beyond_loopback() {
    use std::io::{BufRead, BufReader};
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(["serve", "--listen", "0.0.0.0:0"])
        .env_remove("HERALD_LISTEN")
        .env_remove("HERALD_AUTH")
        .env("HERALD_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the herald binary starts");
    let stderr = child.stderr.take().expect("stderr is piped");
    let (lines_tx, lines_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let mut warned = false;
    while let Ok(line) = lines_rx.recv_timeout(PATIENCE) {
        warned |= line.contains("WARN") && line.contains("auth is `none`");
        let listening = line.contains("herald listening");
        seen.push(line);
        if listening {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(warned, "no warning in {seen:#?}");
}
