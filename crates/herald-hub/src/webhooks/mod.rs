//! Webhooks: the application told when a channel is occupied or vacated on this node, and when
//! presence changes, by signed `POST`s from a bounded queue.
//!
//! Owns the queue (bounded; a full queue drops the notification and counts it, so the hub never
//! waits on the application), the one sender task (notifications go out in the order they
//! happened, up to [`WEBHOOK_BATCH_MAX`] per request, except that a `channel_vacated` is held for
//! the vacated delay and dropped with the `channel_occupied` that follows within it), the
//! signature
//! ([`SIGNATURE_HEADER`]: HMAC-SHA256 over `{timestamp}.{body}`, with the timestamp in
//! [`TIMESTAMP_HEADER`]), and the retries (exponential backoff from [`WEBHOOK_RETRY_DELAY_FIRST`]
//! up to [`WEBHOOK_RETRY_DELAY_MAX`], [`WEBHOOK_ATTEMPTS_MAX`] attempts, then given up and
//! counted). It never blocks the hub's paths (enqueueing is a `try_send` under the hub's lock),
//! never follows a redirect, and never decides what "occupied" means: `fanout` does (a channel's
//! first subscriber on this node, and its last leaving).

mod held;

use crate::{
    hooks::ChannelWatcher,
    metrics::WebhookCounters,
    presence::{PresenceChange, PresenceKind, PresenceSink},
    ChannelName, Hub,
};
use held::Held;
use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;
use std::{
    fmt,
    sync::{atomic::Ordering, Arc},
    time::{Duration, SystemTime, UNIX_EPOCH},
};
use tokio::{sync::mpsc, time::Instant};
use tokio_util::sync::CancellationToken;

/// Default most notifications waiting to be sent; past it they are dropped and counted.
pub const WEBHOOK_QUEUE_DEFAULT: usize = 10_000;
/// Default time the application has to answer one webhook request: 5 s.
pub const WEBHOOK_TIMEOUT_DEFAULT: Duration = Duration::from_secs(5);
/// Attempts per request before it is given up (the first and five retries).
pub const WEBHOOK_ATTEMPTS_MAX: u32 = 6;
/// Wait before the first retry; each later one waits twice as long as the one before.
pub const WEBHOOK_RETRY_DELAY_FIRST: Duration = Duration::from_millis(500);
/// Longest wait between two attempts.
pub const WEBHOOK_RETRY_DELAY_MAX: Duration = Duration::from_secs(30);
/// Default time a `channel_vacated` is held before it is sent: 5 s. A channel occupied again
/// meanwhile (its only client reconnecting) sends neither, so a blip or a reconnect storm is not
/// a storm of vacated-then-occupied pairs.
pub const WEBHOOK_VACATED_DELAY_DEFAULT: Duration = Duration::from_secs(5);
/// Most notifications in one request: what waits in the queue goes out together.
pub const WEBHOOK_BATCH_MAX: usize = 100;
/// Shortest secret accepted, in bytes.
pub const WEBHOOK_SECRET_LEN_MIN: usize = 16;
/// The signature header: `sha256=` and the hex HMAC-SHA256, keyed by the secret, of the
/// timestamp, a `.`, and the body.
pub const SIGNATURE_HEADER: &str = "x-herald-signature";
/// The timestamp header: Unix seconds when this attempt was signed (signed with the body, so a
/// receiver that refuses old timestamps refuses replays).
pub const TIMESTAMP_HEADER: &str = "x-herald-timestamp";
/// The delivery id header: the same on every attempt of one request (the body's `id`), so the
/// application can drop a retry it already handled.
pub const DELIVERY_ID_HEADER: &str = "x-herald-webhook-id";

/// Where and how webhooks are sent.
#[derive(Clone)]
pub struct WebhookConfig {
    /// The application's URL (`http://` or `https://`), `POST`ed a JSON body.
    pub url: String,
    /// The key of the HMAC-SHA256 signature, at least [`WEBHOOK_SECRET_LEN_MIN`] bytes.
    pub secret: String,
    /// Most notifications waiting; default [`WEBHOOK_QUEUE_DEFAULT`].
    pub queue_capacity: usize,
    /// Time the application has to answer one request; default [`WEBHOOK_TIMEOUT_DEFAULT`].
    pub timeout: Duration,
    /// Wait before the first retry (doubling after); default [`WEBHOOK_RETRY_DELAY_FIRST`].
    pub retry_delay: Duration,
    /// How long a `channel_vacated` is held, and dropped with the `channel_occupied` that
    /// follows within it; zero sends it at once. Default [`WEBHOOK_VACATED_DELAY_DEFAULT`].
    pub vacated_delay: Duration,
}

impl WebhookConfig {
    /// Webhooks to `url` signed with `secret`, with the default queue, timeout and retries.
    pub fn new(url: impl Into<String>, secret: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            secret: secret.into(),
            queue_capacity: WEBHOOK_QUEUE_DEFAULT,
            timeout: WEBHOOK_TIMEOUT_DEFAULT,
            retry_delay: WEBHOOK_RETRY_DELAY_FIRST,
            vacated_delay: WEBHOOK_VACATED_DELAY_DEFAULT,
        }
    }
}

impl fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("url", &self.url)
            .field("secret", &"..")
            .field("queue_capacity", &self.queue_capacity)
            .field("timeout", &self.timeout)
            .field("retry_delay", &self.retry_delay)
            .field("vacated_delay", &self.vacated_delay)
            .finish()
    }
}

/// Why webhooks could not be started.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// The URL is not an absolute `http` or `https` URL.
    #[error("the webhook URL {url:?} is not an http:// or https:// URL")]
    InvalidUrl {
        /// The URL as given.
        url: String,
    },
    /// The secret is shorter than [`WEBHOOK_SECRET_LEN_MIN`].
    #[error("the webhook secret is {len} bytes; it must be at least {WEBHOOK_SECRET_LEN_MIN}")]
    SecretTooShort {
        /// The secret's length in bytes.
        len: usize,
    },
    /// The queue capacity is 0.
    #[error("the webhook queue must hold at least one notification")]
    EmptyQueue,
    /// The HTTP client could not be built (TLS roots).
    #[error("the HTTP client for webhooks could not be built")]
    Client(#[source] reqwest::Error),
}

/// One notification, as the body's `events` lists it.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Notice {
    /// The channel's first subscriber on this node arrived.
    ChannelOccupied {
        channel: ChannelName,
        #[serde(rename = "timeMs")]
        time_ms: u64,
    },
    /// The channel's last subscriber on this node left.
    ChannelVacated {
        channel: ChannelName,
        #[serde(rename = "timeMs")]
        time_ms: u64,
    },
    /// Users joined or left the channel.
    PresenceChanged {
        channel: ChannelName,
        joined: Vec<String>,
        left: Vec<String>,
        #[serde(rename = "timeMs")]
        time_ms: u64,
    },
}

/// The sending side of webhooks: cheap to clone; every clone feeds the same queue.
///
/// [`Webhooks::start`] registers it with the hub for occupancy and as the hub's presence sink.
#[derive(Clone, Debug)]
pub struct Webhooks {
    queue: Arc<Queue>,
}

/// The queue's sending end and the counters, shared by the handle and the hub's watcher.
#[derive(Debug)]
struct Queue {
    notices_tx: mpsc::Sender<Notice>,
    counters: Arc<WebhookCounters>,
}

impl Queue {
    /// Queues `notice`, or drops and counts it when the queue is full. Never waits.
    fn push(&self, notice: Notice) {
        // Counted before the send, so the sender's decrement never comes first.
        self.counters.queued.fetch_add(1, Ordering::Relaxed);
        match self.notices_tx.try_send(notice) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.counters.queued.fetch_sub(1, Ordering::Relaxed);
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            }
            // The sender stopped (the hub shut down): nothing is waiting for it.
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.counters.queued.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }
}

impl ChannelWatcher for Queue {
    fn occupied(&self, channel: &ChannelName) {
        self.push(Notice::ChannelOccupied {
            channel: channel.clone(),
            time_ms: now_ms(),
        });
    }

    fn vacated(&self, channel: &ChannelName) {
        self.push(Notice::ChannelVacated {
            channel: channel.clone(),
            time_ms: now_ms(),
        });
    }

    fn presence_changed(&self, channel: &ChannelName, joined: &[&str], left: &[&str]) {
        let owned = |users: &[&str]| users.iter().map(|u| (*u).to_owned()).collect();
        self.push(Notice::PresenceChanged {
            channel: channel.clone(),
            joined: owned(joined),
            left: owned(left),
            time_ms: now_ms(),
        });
    }
}

/// Presence changes, decided once per change (in a cluster, on the node whose report decided
/// it), become `presence_changed` notifications.
impl PresenceSink for Queue {
    fn changed(&self, change: &PresenceChange) {
        let user = [change.user.as_str()];
        match change.kind {
            PresenceKind::Join => self.presence_changed(&change.channel, &user, &[]),
            PresenceKind::Leave => self.presence_changed(&change.channel, &[], &user),
        }
    }
}

impl Webhooks {
    /// Starts sending `hub`'s webhooks as `config` says: registers for channel occupancy and
    /// spawns the sender task, which stops when the hub shuts down (what is still queued then
    /// is not sent).
    ///
    /// # Errors
    /// A URL that is not `http(s)://`, a secret under [`WEBHOOK_SECRET_LEN_MIN`] bytes, a queue
    /// of 0, or an HTTP client that cannot be built.
    ///
    /// # Panics
    /// When called outside a tokio runtime.
    pub fn start(hub: &Hub, config: WebhookConfig) -> Result<Self, WebhookError> {
        let url = reqwest::Url::parse(&config.url)
            .ok()
            .filter(|url| matches!(url.scheme(), "http" | "https") && url.host_str().is_some())
            .ok_or_else(|| WebhookError::InvalidUrl {
                url: config.url.clone(),
            })?;
        if config.secret.len() < WEBHOOK_SECRET_LEN_MIN {
            return Err(WebhookError::SecretTooShort {
                len: config.secret.len(),
            });
        }
        if config.queue_capacity == 0 {
            return Err(WebhookError::EmptyQueue);
        }
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(config.timeout)
            .build()
            .map_err(WebhookError::Client)?;
        let (notices_tx, notices_rx) = mpsc::channel(config.queue_capacity);
        let counters = hub.webhook_counters();
        let queue = Arc::new(Queue {
            notices_tx,
            counters: counters.clone(),
        });
        let sender = Sender {
            client,
            url,
            secret: config.secret.into_bytes(),
            retry_delay: config.retry_delay,
            node: hub.node_id().to_owned(),
            counters,
            delivery_prefix: format!("wh_{:016x}", fastrand::u64(..)),
            next_delivery: 0,
            held: Held::new(config.vacated_delay, config.queue_capacity),
        };
        tokio::spawn(sender.run(notices_rx, hub.shutdown_token()));
        hub.watch_channels(queue.clone());
        hub.set_presence_sink(queue.clone());
        Ok(Self { queue })
    }

    /// Tells the application that `joined` users joined `channel` and `left` users left it.
    /// Queued at once (never waits); dropped and counted when the queue is full.
    /// (The hub's own presence changes reach the same queue as its [`PresenceSink`].)
    pub fn presence_changed(&self, channel: &ChannelName, joined: &[&str], left: &[&str]) {
        self.queue.presence_changed(channel, joined, left);
    }
}

/// The sender task's state.
struct Sender {
    client: reqwest::Client,
    url: reqwest::Url,
    secret: Vec<u8>,
    retry_delay: Duration,
    node: String,
    counters: Arc<WebhookCounters>,
    /// Random per process, so delivery ids never repeat across restarts.
    delivery_prefix: String,
    next_delivery: u64,
    /// `channel_vacated` notices waiting out the vacated delay.
    held: Held,
}

/// What one attempt came to.
enum Attempt {
    Delivered,
    /// Worth another try: no answer, a 5xx, 408 or 429.
    Retry(String),
    /// Not worth another: any other status (a redirect included, never followed).
    GiveUp(String),
}

impl Sender {
    async fn run(mut self, mut notices_rx: mpsc::Receiver<Notice>, shutdown: CancellationToken) {
        loop {
            let release_at = self.held.next_release();
            let first = tokio::select! {
                notice = notices_rx.recv() => match notice {
                    Some(notice) => Some(notice),
                    None => return,
                },
                () = tokio::time::sleep_until(release_at.unwrap_or_else(Instant::now)),
                    if release_at.is_some() => None,
                () = shutdown.cancelled() => return,
            };
            // Held notices that are due are older than anything received now: they go first.
            let mut batch = Vec::new();
            self.held.release_due(Instant::now(), &mut batch);
            let mut taken = 0;
            let mut next = first;
            loop {
                if let Some(notice) = next {
                    taken += 1;
                    self.admit(notice, &mut batch);
                }
                if taken >= WEBHOOK_BATCH_MAX {
                    break;
                }
                match notices_rx.try_recv() {
                    Ok(notice) => next = Some(notice),
                    Err(_) => break,
                }
            }
            self.counters
                .queued
                .fetch_sub(taken as u64, Ordering::Relaxed);
            if batch.is_empty() {
                continue;
            }
            tokio::select! {
                () = self.send(batch) => {}
                () = shutdown.cancelled() => return,
            }
        }
    }

    /// Puts `notice` in `batch`, or holds it (a `channel_vacated`), or drops it with the held
    /// `channel_vacated` it cancels (a `channel_occupied`).
    fn admit(&mut self, notice: Notice, batch: &mut Vec<Notice>) {
        match notice {
            Notice::ChannelVacated { ref channel, .. } => {
                let channel = channel.clone();
                batch.extend(self.held.hold(channel, notice));
            }
            Notice::ChannelOccupied { ref channel, .. } if self.held.cancel(channel) => {}
            other => batch.push(other),
        }
    }

    /// Sends one batch, retrying with backoff; counts the outcome.
    async fn send(&mut self, batch: Vec<Notice>) {
        let count = batch.len() as u64;
        let id = format!("{}{}", self.delivery_prefix, self.next_delivery);
        self.next_delivery += 1;
        let body = serde_json::json!({
            "id": id,
            "node": self.node,
            "events": batch,
        })
        .to_string();
        let mut delay = self.retry_delay;
        for attempt in 1..=WEBHOOK_ATTEMPTS_MAX {
            let why = match self.attempt(&id, &body).await {
                Attempt::Delivered => {
                    self.counters.delivered.fetch_add(count, Ordering::Relaxed);
                    return;
                }
                Attempt::GiveUp(why) => {
                    tracing::warn!(
                        reason = %why,
                        notifications = count,
                        "webhook refused by the application; not retried"
                    );
                    break;
                }
                Attempt::Retry(why) => why,
            };
            if attempt == WEBHOOK_ATTEMPTS_MAX {
                tracing::warn!(
                    reason = %why,
                    notifications = count,
                    attempts = attempt,
                    "webhook given up"
                );
                break;
            }
            tracing::debug!(reason = %why, attempt, "webhook attempt failed; retrying");
            self.counters.retried.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(WEBHOOK_RETRY_DELAY_MAX);
        }
        self.counters.failed.fetch_add(count, Ordering::Relaxed);
    }

    async fn attempt(&self, id: &str, body: &str) -> Attempt {
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs()
            .to_string();
        let signature = sign(&self.secret, &timestamp, body);
        let sent = self
            .client
            .post(self.url.clone())
            .header("content-type", "application/json")
            .header(TIMESTAMP_HEADER, &timestamp)
            .header(SIGNATURE_HEADER, signature)
            .header(DELIVERY_ID_HEADER, id)
            .body(body.to_owned())
            .send()
            .await;
        match sent {
            Ok(response) if response.status().is_success() => Attempt::Delivered,
            Ok(response) => {
                let status = response.status();
                let why = format!("status {status}");
                if status.is_server_error() || status.as_u16() == 408 || status.as_u16() == 429 {
                    Attempt::Retry(why)
                } else {
                    Attempt::GiveUp(why)
                }
            }
            Err(err) => Attempt::Retry(err.without_url().to_string()),
        }
    }
}

/// `sha256=` and the hex HMAC-SHA256 of `{timestamp}.{body}` keyed by `secret`.
fn sign(secret: &[u8], timestamp: &str, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    let digest = mac.finalize().into_bytes();
    let mut signature = String::with_capacity(7 + digest.len() * 2);
    signature.push_str("sha256=");
    for byte in digest {
        use std::fmt::Write;
        write!(signature, "{byte:02x}").expect("writing to a String never fails");
    }
    signature
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_the_hmac_sha256_of_timestamp_dot_body() {
        // Computed independently: python3 -c "import hmac, hashlib; print(hmac.new(
        // b'0123456789abcdef', b'1700000000.{\"id\":\"x\"}', hashlib.sha256).hexdigest())"
        assert_eq!(
            sign(b"0123456789abcdef", "1700000000", r#"{"id":"x"}"#),
            "sha256=f1cf8ba6a2fa64bd8193b9db564f42cd35d0fc2a46f6a2c2903f897838a7f23a"
        );
        assert_ne!(
            sign(b"0123456789abcdef", "1700000001", r#"{"id":"x"}"#),
            sign(b"0123456789abcdef", "1700000000", r#"{"id":"x"}"#),
            "the timestamp is signed"
        );
    }

    #[test]
    fn notifications_have_a_stable_json_shape() {
        let channel = ChannelName::new("room:7").expect("valid channel");
        let shapes = [
            Notice::ChannelOccupied {
                channel: channel.clone(),
                time_ms: 1,
            },
            Notice::ChannelVacated {
                channel: channel.clone(),
                time_ms: 2,
            },
            Notice::PresenceChanged {
                channel,
                joined: vec!["42".into()],
                left: vec![],
                time_ms: 3,
            },
        ];
        let json = serde_json::to_value(shapes).expect("serializable");
        assert_eq!(
            json,
            serde_json::json!([
                {"type": "channel_occupied", "channel": "room:7", "timeMs": 1},
                {"type": "channel_vacated", "channel": "room:7", "timeMs": 2},
                {"type": "presence_changed", "channel": "room:7", "joined": ["42"], "left": [],
                 "timeMs": 3},
            ])
        );
    }

    #[tokio::test]
    async fn a_full_queue_drops_and_counts_without_waiting() {
        let counters = Arc::new(WebhookCounters::default());
        let (notices_tx, _notices_rx) = mpsc::channel(2);
        let queue = Queue {
            notices_tx,
            counters: counters.clone(),
        };
        let channel = ChannelName::new("orders").expect("valid channel");
        for _ in 0..5 {
            queue.occupied(&channel);
        }
        assert_eq!(counters.queued.load(Ordering::Relaxed), 2);
        assert_eq!(counters.dropped.load(Ordering::Relaxed), 3);
    }
}
