//! Helpers for the auth and hostile-input tests: minting tokens, authenticated requests, raw
//! sockets. Builds on `common` (the `TestHub` harness).

#![allow(dead_code, unreachable_pub)]

use crate::common::{http, TestHub};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::Value;
use std::{
    io::{Read, Write},
    net::TcpStream,
    path::PathBuf,
    time::{Duration, Instant},
};

/// The HS256 secret of the test hubs (32 bytes, the least accepted).
pub const SECRET: &str = "test-secret-0123456789abcdef-xyz";
/// A static API key of the test hubs.
pub const API_KEY: &str = "test-api-key-0123456789";

/// Starts a hub in `jwt` mode with [`SECRET`], [`API_KEY`] and extra flags.
pub fn jwt_hub(extra: &[&str]) -> TestHub {
    let mut args = vec![
        "--auth",
        "jwt",
        "--jwt-secret",
        SECRET,
        "--api-keys",
        API_KEY,
    ];
    args.extend_from_slice(extra);
    TestHub::start(&args)
}

/// Seconds since the Unix epoch.
pub fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

/// An HS256 token signed with [`SECRET`].
pub fn hs256(claims: Value) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("HS256 encoding works")
}

/// A token valid for an hour for user `sub` with the given `herald` claim.
pub fn token_for(sub: &str, herald: Value) -> String {
    hs256(serde_json::json!({"sub": sub, "exp": now() + 3600, "herald": herald}))
}

/// Path of a test key file under `tests/keys`.
pub fn key_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/keys")
        .join(name)
}

/// A token signed with one of the test private keys.
pub fn signed_with(algorithm: Algorithm, private_key: &str, claims: Value) -> String {
    let pem = std::fs::read(key_path(private_key)).expect("the test key exists");
    let key = match algorithm {
        Algorithm::RS256 => EncodingKey::from_rsa_pem(&pem),
        Algorithm::ES256 => EncodingKey::from_ec_pem(&pem),
        Algorithm::EdDSA => EncodingKey::from_ed_pem(&pem),
        other => panic!("no test key for {other:?}"),
    }
    .expect("the test key parses");
    jsonwebtoken::encode(&Header::new(algorithm), &claims, &key).expect("signing works")
}

/// Base64url without padding, as JWTs use.
pub fn b64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

/// An unsigned token: `{"alg":"none"}`.
pub fn alg_none(claims: Value) -> String {
    format!(
        "{}.{}.",
        b64url(br#"{"alg":"none","typ":"JWT"}"#),
        b64url(claims.to_string().as_bytes())
    )
}

/// `token` with its payload replaced by `claims`, keeping the original signature.
pub fn forged(token: &str, claims: Value) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    format!(
        "{}.{}.{}",
        parts[0],
        b64url(claims.to_string().as_bytes()),
        parts[2]
    )
}

/// An answer: status, headers, and the body as JSON (Null when it is not JSON).
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Answer {
    /// The error code of a JSON error answer.
    pub fn code(&self) -> Option<&str> {
        self.body["error"]["code"].as_str()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

async fn answer(response: reqwest::Response) -> Answer {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    // A stream that was accepted never ends: read no body then.
    let is_stream = headers
        .get("content-type")
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    let body = if is_stream {
        Value::Null
    } else {
        let text = response.text().await.unwrap_or_default();
        serde_json::from_str(&text).unwrap_or(Value::Null)
    };
    Answer {
        status,
        headers,
        body,
    }
}

/// Sends `method path` with extra headers and a raw body.
pub async fn send(
    hub: &TestHub,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Vec<u8>>,
) -> Answer {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("a valid method");
    let mut request = http().request(method, hub.url(path));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body);
    }
    let response = request.send().await.expect("the request reaches the hub");
    answer(response).await
}

/// GET with an optional bearer token.
pub async fn get(hub: &TestHub, path: &str, bearer: Option<&str>) -> Answer {
    let auth = bearer.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth
        .as_deref()
        .map(|a| vec![("authorization", a)])
        .unwrap_or_default();
    send(hub, "GET", path, &headers, None).await
}

/// POST JSON with an optional bearer token.
pub async fn post(hub: &TestHub, path: &str, bearer: Option<&str>, body: Value) -> Answer {
    let auth = bearer.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth
        .as_deref()
        .map(|a| vec![("authorization", a)])
        .unwrap_or_default();
    send(
        hub,
        "POST",
        path,
        &headers,
        Some(body.to_string().into_bytes()),
    )
    .await
}

/// `/api/stats`, read with the API key.
pub async fn stats(hub: &TestHub) -> Value {
    let answer = get(hub, "/api/stats", Some(API_KEY)).await;
    assert_eq!(answer.status, 200, "stats answered {}", answer.body);
    answer.body
}

/// Events the hub accepted since it started.
pub async fn events_published(hub: &TestHub) -> u64 {
    stats(hub).await["eventsPublished"]
        .as_u64()
        .expect("eventsPublished is a number")
}

/// Live connections on the hub.
pub async fn connections(hub: &TestHub) -> u64 {
    stats(hub).await["connections"]
        .as_u64()
        .expect("connections is a number")
}

/// Reads a raw socket until the peer closes it or `within` passes; returns what was read and
/// whether the peer closed.
pub fn read_until_closed(socket: &mut TcpStream, within: Duration) -> (Vec<u8>, bool) {
    let deadline = Instant::now() + within;
    let mut read = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return (read, false);
        }
        socket
            .set_read_timeout(Some(left))
            .expect("setting a read timeout works");
        match socket.read(&mut buf) {
            Ok(0) => return (read, true),
            Ok(n) => read.extend_from_slice(&buf[..n]),
            Err(err)
                if matches!(
                    err.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return (read, false)
            }
            // A reset is a close too.
            Err(_) => return (read, true),
        }
    }
}

/// Opens a raw connection to the hub and writes `bytes`.
pub fn raw_connect(hub: &TestHub, bytes: &[u8]) -> TcpStream {
    let mut socket = TcpStream::connect(("127.0.0.1", hub.port)).expect("the hub accepts");
    socket.write_all(bytes).expect("the hub reads");
    socket
}
