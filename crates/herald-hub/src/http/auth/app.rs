//! Asking the application who may subscribe: the auth proxy (`--auth app`).
//!
//! Owns the call to the application's endpoint when a stream opens or a poll is made: the JSON
//! body (the channels asked for), the request headers forwarded ([`FORWARDED_HEADERS`] and
//! `X-Forwarded-For`), the reading of the answer into an [`AppGrant`] or a refusal, the short cache
//! of decisions, the bound on calls in flight, and the one deadline over all of it. When the
//! application cannot answer (slow, down, 5xx, a redirect, a malformed answer) it fails closed
//! with `503 app_auth_unavailable`: a hub that cannot ask cannot know, and letting anyone in
//! while the application is down would open private channels to whoever waits for (or causes)
//! an outage. It never follows a redirect, never logs or echoes a forwarded header, and never
//! decides a right itself (`caller` turns a grant into a caller).

use crate::{http::error::ApiError, ChannelName};
use axum::http::{header, HeaderMap, HeaderName, StatusCode};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::{
    collections::HashMap,
    fmt,
    net::SocketAddr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};
use tokio::sync::Semaphore;

/// Default time the application has to answer, waiting for a free call slot included: 2 s.
pub const APP_AUTH_TIMEOUT_DEFAULT: Duration = Duration::from_secs(2);
/// Default time a decision (allow or refuse) is reused for the same credentials and channels:
/// 10 s. Zero turns the cache off.
pub const APP_AUTH_CACHE_TTL_DEFAULT: Duration = Duration::from_secs(10);
/// Most decisions cached; past it, expired ones are dropped first, then any one.
pub const APP_AUTH_CACHE_ENTRIES_MAX: usize = 10_000;
/// Most calls to the application in flight at once; more wait (within the timeout) for a slot.
pub const APP_AUTH_CONCURRENCY_MAX: usize = 64;
/// Largest answer read from the application: 64 KiB.
const APP_ANSWER_BYTES_MAX: usize = 64 * 1024;
/// Longest `user` taken from an answer, in bytes.
const APP_USER_LEN_MAX: usize = 256;
/// At most one warning a second about an unavailable application, however many streams fail.
const UNAVAILABLE_WARN_INTERVAL: Duration = Duration::from_secs(1);

/// The request headers forwarded to the application as they came: the session (`Cookie`,
/// `Authorization`), where the page is (`Origin`), and what the client is (`User-Agent`).
/// `X-Forwarded-For` is also sent: the incoming chain with the peer's address appended. The
/// decision cache is keyed by `Cookie`, `Authorization`, `Origin` and the channels.
pub const FORWARDED_HEADERS: [HeaderName; 4] = [
    header::COOKIE,
    header::AUTHORIZATION,
    header::ORIGIN,
    header::USER_AGENT,
];

/// The forwarded headers a decision depends on: the cache key's.
const KEYED_HEADERS: [HeaderName; 3] = [header::COOKIE, header::AUTHORIZATION, header::ORIGIN];

/// Why an [`AppAuth`] could not be built.
#[derive(Debug, thiserror::Error)]
pub enum AppAuthError {
    /// The URL is not an absolute `http` or `https` URL.
    #[error("the application auth URL {url:?} is not an http:// or https:// URL")]
    InvalidUrl {
        /// The URL as given.
        url: String,
    },
    /// The HTTP client could not be built (TLS roots).
    #[error("the HTTP client for the application could not be built")]
    Client(#[source] reqwest::Error),
}

/// What the application granted: who the caller is and which of the channels asked for it may
/// hear.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppGrant {
    /// The user the application named (`user`), if any: the connection's user, as a token's
    /// `sub` is (the per-user limit, `user:{id}` channels, the admin API).
    pub user: Option<String>,
    /// The channels granted, among those asked for.
    pub channels: Vec<ChannelName>,
}

/// The application's answer, as `200 OK` carries it.
#[derive(Deserialize)]
struct Answer {
    allow: bool,
    #[serde(default)]
    user: Option<String>,
    /// Absent: every channel asked for.
    #[serde(default)]
    channels: Option<Vec<String>>,
}

/// Counters of the auth proxy, for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct AppAuthMetrics {
    /// Calls the application answered with an allow.
    pub allowed: u64,
    /// Calls the application answered with a refusal (401, 403, `allow: false`, channels not
    /// granted).
    pub denied: u64,
    /// Calls that got no usable answer (timeout, refused connection, 5xx, redirect, bad JSON).
    pub unavailable: u64,
    /// Authorizations answered from the cache.
    pub cache_hits: u64,
    /// Decisions in the cache now.
    pub cache_entries: u64,
}

#[derive(Debug, Default)]
struct Counters {
    allowed: AtomicU64,
    denied: AtomicU64,
    unavailable: AtomicU64,
    cache_hits: AtomicU64,
}

/// The auth proxy: asks the application whether a request may hear channels. Cheap to clone.
///
/// ```no_run
/// use herald_hub::http::{AppAuth, AuthConfig};
/// let app = AppAuth::new("http://127.0.0.1:3000/herald/authorize")?;
/// let auth = AuthConfig::none().with_app(app).with_api_keys(["server-to-server-key-0123"])?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct AppAuth {
    inner: Arc<Inner>,
}

struct Inner {
    client: reqwest::Client,
    url: reqwest::Url,
    timeout: Duration,
    cache_ttl: Duration,
    /// Bounds the calls in flight to [`APP_AUTH_CONCURRENCY_MAX`].
    permits: Semaphore,
    /// Decisions by the SHA-256 of the keyed headers and the channels; bounded by
    /// [`APP_AUTH_CACHE_ENTRIES_MAX`].
    cache: Mutex<HashMap<[u8; 32], Cached>>,
    counters: Counters,
    /// When the last "unavailable" warning was logged, in ms since `started`.
    last_warned_ms: AtomicU64,
    started: Instant,
}

struct Cached {
    expires_at: Instant,
    decision: Result<AppGrant, ApiError>,
}

impl fmt::Debug for AppAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppAuth")
            .field("host", &self.inner.url.host_str())
            .field("timeout", &self.inner.timeout)
            .field("cache_ttl", &self.inner.cache_ttl)
            .finish()
    }
}

impl AppAuth {
    /// Asks `url` with the default timeout ([`APP_AUTH_TIMEOUT_DEFAULT`]) and cache lifetime
    /// ([`APP_AUTH_CACHE_TTL_DEFAULT`]).
    ///
    /// # Errors
    /// [`AppAuthError::InvalidUrl`] when `url` is not `http(s)://`; [`AppAuthError::Client`] when
    /// the HTTP client cannot be built.
    pub fn new(url: &str) -> Result<Self, AppAuthError> {
        Self::with_limits(url, APP_AUTH_TIMEOUT_DEFAULT, APP_AUTH_CACHE_TTL_DEFAULT)
    }

    /// Asks `url`, giving it `timeout` to answer and reusing a decision for `cache_ttl` (zero:
    /// no cache).
    ///
    /// # Errors
    /// As [`AppAuth::new`].
    pub fn with_limits(
        url: &str,
        timeout: Duration,
        cache_ttl: Duration,
    ) -> Result<Self, AppAuthError> {
        let invalid = || AppAuthError::InvalidUrl {
            url: url.to_owned(),
        };
        let parsed = reqwest::Url::parse(url).map_err(|_| invalid())?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
            return Err(invalid());
        }
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .build()
            .map_err(AppAuthError::Client)?;
        Ok(Self {
            inner: Arc::new(Inner {
                client,
                url: parsed,
                timeout,
                cache_ttl,
                permits: Semaphore::new(APP_AUTH_CONCURRENCY_MAX),
                cache: Mutex::new(HashMap::new()),
                counters: Counters::default(),
                last_warned_ms: AtomicU64::new(0),
                started: Instant::now(),
            }),
        })
    }

    /// Asks the application whether the request whose `headers` came from `peer` may hear every
    /// one of `channels`; a decision cached for the same credentials and channels is reused.
    ///
    /// # Errors
    /// - 401 `unauthorized` when the application answers 401 (it does not know the caller);
    /// - 403 `forbidden` when it answers 403 or `{"allow": false}`, or grants fewer channels
    ///   than asked (the channels not granted are named: a stream is refused whole, as with
    ///   tokens, never narrowed behind the client's back);
    /// - 503 `app_auth_unavailable` when it does not answer within the timeout, cannot be
    ///   reached, answers 5xx, another status, a redirect (never followed) or a body that is not
    ///   the expected JSON.
    pub async fn authorize(
        &self,
        headers: &HeaderMap,
        peer: Option<SocketAddr>,
        channels: &[ChannelName],
    ) -> Result<AppGrant, ApiError> {
        let key = cache_key(headers, channels);
        if let Some(decision) = self.cached(&key) {
            self.inner
                .counters
                .cache_hits
                .fetch_add(1, Ordering::Relaxed);
            return decision;
        }
        let decision =
            match tokio::time::timeout(self.inner.timeout, self.ask(headers, peer, channels)).await
            {
                Ok(Ok(answer)) => {
                    decide(answer, channels).unwrap_or_else(|why| Err(self.unavailable(&why)))
                }
                Ok(Err(unavailable)) => Err(self.unavailable(&unavailable)),
                Err(_) => Err(self.unavailable(&format!(
                    "no answer within {}",
                    humantime::format_duration(self.inner.timeout)
                ))),
            };
        let counter = match &decision {
            Ok(_) => &self.inner.counters.allowed,
            Err(err) if err.code() == "app_auth_unavailable" => {
                self.inner
                    .counters
                    .unavailable
                    .fetch_add(1, Ordering::Relaxed);
                return decision;
            }
            Err(_) => &self.inner.counters.denied,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        self.remember(key, &decision);
        decision
    }

    /// The proxy's counters now.
    pub fn metrics(&self) -> AppAuthMetrics {
        let counters = &self.inner.counters;
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        AppAuthMetrics {
            allowed: load(&counters.allowed),
            denied: load(&counters.denied),
            unavailable: load(&counters.unavailable),
            cache_hits: load(&counters.cache_hits),
            cache_entries: self.lock_cache().len() as u64,
        }
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Cached>> {
        // Every mutation completes under the guard: a poisoned map is still a valid map.
        self.inner
            .cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn cached(&self, key: &[u8; 32]) -> Option<Result<AppGrant, ApiError>> {
        if self.inner.cache_ttl.is_zero() {
            return None;
        }
        let mut cache = self.lock_cache();
        let cached = cache.get(key)?;
        if cached.expires_at > Instant::now() {
            return Some(cached.decision.clone());
        }
        cache.remove(key);
        None
    }

    fn remember(&self, key: [u8; 32], decision: &Result<AppGrant, ApiError>) {
        if self.inner.cache_ttl.is_zero() {
            return;
        }
        let now = Instant::now();
        let mut cache = self.lock_cache();
        if cache.len() >= APP_AUTH_CACHE_ENTRIES_MAX && !cache.contains_key(&key) {
            cache.retain(|_, cached| cached.expires_at > now);
            if cache.len() >= APP_AUTH_CACHE_ENTRIES_MAX {
                if let Some(any) = cache.keys().next().copied() {
                    cache.remove(&any);
                }
            }
        }
        cache.insert(
            key,
            Cached {
                expires_at: now + self.inner.cache_ttl,
                decision: decision.clone(),
            },
        );
    }

    /// One call to the application: the status and the answer's bytes, or why there is none.
    async fn ask(
        &self,
        headers: &HeaderMap,
        peer: Option<SocketAddr>,
        channels: &[ChannelName],
    ) -> Result<(StatusCode, Vec<u8>), String> {
        let _permit = self
            .inner
            .permits
            .acquire()
            .await
            .map_err(|_| "the call slots are closed".to_owned())?;
        let mut request = self
            .inner
            .client
            .post(self.inner.url.clone())
            .header(header::ACCEPT, "application/json")
            .json(&serde_json::json!({ "channels": channels }));
        for name in &FORWARDED_HEADERS {
            for value in headers.get_all(name) {
                request = request.header(name, value);
            }
        }
        if let Some(forwarded_for) = forwarded_for(headers, peer) {
            request = request.header("x-forwarded-for", forwarded_for);
        }
        let mut response = request
            .send()
            .await
            .map_err(|err| format!("{}", err.without_url()))?;
        let status = response.status();
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|err| format!("reading the answer: {}", err.without_url()))?
        {
            if body.len() + chunk.len() > APP_ANSWER_BYTES_MAX {
                return Err(format!("an answer over {APP_ANSWER_BYTES_MAX} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        Ok((status, body))
    }

    /// The 503 for an application that gave no usable answer; logs why (at most once a second),
    /// never with a forwarded header.
    fn unavailable(&self, why: &str) -> ApiError {
        let now_ms = u64::try_from(self.inner.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let last = self.inner.last_warned_ms.load(Ordering::Relaxed);
        let interval_ms = UNAVAILABLE_WARN_INTERVAL.as_millis() as u64;
        if (last == 0 || now_ms.saturating_sub(last) >= interval_ms)
            && self
                .inner
                .last_warned_ms
                .compare_exchange(last, now_ms.max(1), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                reason = why,
                host = self.inner.url.host_str().unwrap_or_default(),
                "the application's auth endpoint gave no usable answer: streams are refused (503) until it does"
            );
        } else {
            tracing::debug!(reason = why, "application auth unavailable");
        }
        app_auth_unavailable()
    }
}

/// 503 `app_auth_unavailable`.
fn app_auth_unavailable() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "app_auth_unavailable",
        "the application that decides who may subscribe did not answer; try again shortly",
    )
}

/// The application's decision from its status and body: a grant or a refusal; or, as the outer
/// error, why the answer is not usable (the caller answers 503 and logs it).
fn decide(
    (status, body): (StatusCode, Vec<u8>),
    channels: &[ChannelName],
) -> Result<Result<AppGrant, ApiError>, String> {
    match status {
        StatusCode::OK => {}
        StatusCode::UNAUTHORIZED => {
            return Ok(Err(ApiError::unauthorized(
                "the application does not recognise the caller (no session or an expired one)",
            )))
        }
        StatusCode::FORBIDDEN => return Ok(Err(refused(channels))),
        other if other.is_redirection() => {
            return Err(format!(
                "a redirect ({other}), which is not followed: answer 401 or 403 to refuse"
            ))
        }
        other => return Err(format!("status {other}")),
    }
    let answer: Answer = serde_json::from_slice(&body)
        .map_err(|err| format!("an answer that is not the expected JSON: {err}"))?;
    if !answer.allow {
        return Ok(Err(refused(channels)));
    }
    let user = match answer.user {
        Some(user) if user.len() > APP_USER_LEN_MAX || user.is_empty() => {
            return Err(format!(
                "a user that is empty or over {APP_USER_LEN_MAX} bytes"
            ))
        }
        user => user,
    };
    let granted: Vec<ChannelName> = match &answer.channels {
        None => channels.to_vec(),
        Some(names) => channels
            .iter()
            .filter(|asked| names.iter().any(|name| name == asked.as_str()))
            .cloned()
            .collect(),
    };
    let refused_channels: Vec<ChannelName> = channels
        .iter()
        .filter(|asked| !granted.contains(asked))
        .cloned()
        .collect();
    if !refused_channels.is_empty() {
        let names: Vec<&str> = refused_channels.iter().map(ChannelName::as_str).collect();
        return Ok(Err(ApiError::forbidden(
            format!("the application does not allow: {}", names.join(", ")),
            refused_channels,
        )));
    }
    Ok(Ok(AppGrant {
        user,
        channels: granted,
    }))
}

fn refused(channels: &[ChannelName]) -> ApiError {
    ApiError::forbidden(
        "the application does not allow this caller to subscribe to these channels",
        channels.to_vec(),
    )
}

/// The incoming `X-Forwarded-For` chain with the peer's address appended.
fn forwarded_for(headers: &HeaderMap, peer: Option<SocketAddr>) -> Option<String> {
    let incoming: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .collect();
    let mut chain = incoming.join(", ");
    if let Some(peer) = peer {
        if !chain.is_empty() {
            chain.push_str(", ");
        }
        chain.push_str(&peer.ip().to_string());
    }
    (!chain.is_empty()).then_some(chain)
}

/// SHA-256 over the keyed headers (name and every value) and the channels, sorted.
fn cache_key(headers: &HeaderMap, channels: &[ChannelName]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for name in &KEYED_HEADERS {
        hasher.update(name.as_str().as_bytes());
        hasher.update([0]);
        for value in headers.get_all(name) {
            hasher.update((value.len() as u64).to_be_bytes());
            hasher.update(value.as_bytes());
        }
        hasher.update([0xff]);
    }
    let mut names: Vec<&str> = channels.iter().map(ChannelName::as_str).collect();
    names.sort_unstable();
    names.dedup();
    for name in names {
        hasher.update((name.len() as u64).to_be_bytes());
        hasher.update(name.as_bytes());
    }
    hasher.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn channels(names: &[&str]) -> Vec<ChannelName> {
        names
            .iter()
            .map(|n| ChannelName::new(n).expect("valid channel"))
            .collect()
    }

    fn ok(body: &str) -> (StatusCode, Vec<u8>) {
        (StatusCode::OK, body.as_bytes().to_vec())
    }

    #[test]
    fn an_allow_without_channels_grants_every_channel_asked() {
        let asked = channels(&["orders", "user:7"]);
        let grant = decide(ok(r#"{"allow": true, "user": "7"}"#), &asked)
            .expect("usable")
            .expect("allowed");
        assert_eq!(grant.user.as_deref(), Some("7"));
        assert_eq!(grant.channels, asked);
    }

    #[test]
    fn a_partial_grant_refuses_the_stream_naming_what_was_not_granted() {
        let asked = channels(&["orders", "billing"]);
        let err = decide(
            ok(r#"{"allow": true, "channels": ["orders", "extra"]}"#),
            &asked,
        )
        .expect("usable")
        .expect_err("billing not granted");
        assert_eq!(err.code(), "forbidden");
        assert_eq!(err.channels(), channels(&["billing"]));
    }

    #[test]
    fn refusals_and_unusable_answers_have_their_codes() {
        let asked = channels(&["orders"]);
        let code = |answer| match decide(answer, &asked) {
            Ok(Ok(_)) => panic!("allowed"),
            Ok(Err(refusal)) => refusal.code(),
            Err(_unusable) => "app_auth_unavailable",
        };
        assert_eq!(code(ok(r#"{"allow": false}"#)), "forbidden");
        assert_eq!(code((StatusCode::FORBIDDEN, Vec::new())), "forbidden");
        assert_eq!(code((StatusCode::UNAUTHORIZED, Vec::new())), "unauthorized");
        assert_eq!(
            code((StatusCode::FOUND, Vec::new())),
            "app_auth_unavailable"
        );
        assert_eq!(
            code((StatusCode::BAD_GATEWAY, Vec::new())),
            "app_auth_unavailable"
        );
        assert_eq!(code(ok("not json")), "app_auth_unavailable");
        assert_eq!(code(ok(r#"{"user": "7"}"#)), "app_auth_unavailable");
    }

    #[test]
    fn the_cache_key_follows_credentials_and_channels_but_not_their_order() {
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_static("session=a"));
        let ab = cache_key(&headers, &channels(&["a", "b"]));
        assert_eq!(ab, cache_key(&headers, &channels(&["b", "a"])));
        assert_ne!(ab, cache_key(&headers, &channels(&["a"])));
        headers.insert(header::USER_AGENT, HeaderValue::from_static("curl"));
        assert_eq!(ab, cache_key(&headers, &channels(&["a", "b"])));
        headers.insert(header::COOKIE, HeaderValue::from_static("session=b"));
        assert_ne!(ab, cache_key(&headers, &channels(&["a", "b"])));
    }

    #[test]
    fn the_peer_is_appended_to_the_forwarded_chain() {
        let peer = Some(SocketAddr::from(([10, 0, 0, 9], 4000)));
        assert_eq!(
            forwarded_for(&HeaderMap::new(), peer).as_deref(),
            Some("10.0.0.9")
        );
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", HeaderValue::from_static("203.0.113.7"));
        assert_eq!(
            forwarded_for(&headers, peer).as_deref(),
            Some("203.0.113.7, 10.0.0.9")
        );
    }

    #[test]
    fn urls_other_than_http_are_refused() {
        assert!(AppAuth::new("ftp://example.com/x").is_err());
        assert!(AppAuth::new("not a url").is_err());
    }
}
