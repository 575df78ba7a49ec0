//! The reconnecting client: one HTTP request after another, parsed into one stream of
//! [`Update`]s.
//!
//! It owns the connection loop: sending the request with `Last-Event-ID`, telling a stream
//! that may be retried from one that must stop, waiting out the backoff, and resuming. It
//! never spawns a task: the whole loop lives inside the stream, so dropping the
//! [`EventSource`] drops the request in flight and closes its connection. It never parses
//! bytes itself ([`crate::parser`] does) and never decides delays ([`crate::backoff`] does).
//!
//! Longer than most files here (about 550 lines before its tests) on purpose: the builder, the
//! public stream and the connection loop share one set of private fields and phases, and
//! splitting them would widen those internals to the whole crate.

use std::collections::VecDeque;
use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::stream::{self, BoxStream, Fuse, FusedStream, Stream, StreamExt};
use reqwest::header::{self, HeaderMap, HeaderName, HeaderValue};
use reqwest::{Response, StatusCode, Url};
use tracing::Instrument;

use crate::backoff::Backoff;
use crate::error::{BuildError, Error};
use crate::parser::{Event, Item, Parser};

/// The reconnection time used until the server sends `retry:`: 3 seconds, as in browsers.
pub const DEFAULT_RETRY: Duration = Duration::from_millis(3000);

/// The default limit on one event's size: 8 MiB.
pub const DEFAULT_MAX_EVENT_BYTES: usize = 8 * 1024 * 1024;

/// How long the default HTTP client waits for a TCP connection before the attempt fails.
const CONNECT_TIMEOUT_SECS: u64 = 10;

/// How much of an error response's body is kept for [`Error::Status`].
const ERROR_BODY_MAX_BYTES: usize = 4 * 1024;

/// How long reading an error response's body may take before it is cut short.
const ERROR_BODY_READ_TIMEOUT_MS: u64 = 1000;

/// What the client reports: events, and every change of connection state.
#[derive(Debug)]
#[non_exhaustive]
pub enum Update {
    /// A request is being sent (the first one, or a reconnect after [`Update::Retrying`]).
    Connecting,
    /// The server answered 200 with `text/event-stream`; events follow.
    Open,
    /// An event arrived.
    Event(Event),
    /// A comment line arrived (often a heartbeat). Only reported when enabled with
    /// [`EventSourceBuilder::report_comments`].
    Comment(String),
    /// The connection failed or ended; the client waits `delay`, then reconnects.
    Retrying {
        /// How long the client waits before the next request.
        delay: Duration,
        /// Consecutive failures so far, counted from 1; back to 0 when a connection opens.
        attempt: u32,
        /// What failed.
        reason: Error,
    },
    /// The client stopped for good; the stream ends after this.
    Closed {
        /// Why it stopped: the server asked it to (204, 4xx, wrong content type), an event
        /// was too large, or the retries ran out.
        reason: Error,
    },
}

/// Configures an [`EventSource`]. Made by [`EventSource::builder`].
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct EventSourceBuilder {
    /// The stream's URL, parsed at build time.
    url: String,
    /// Extra request headers, validated at build time.
    headers: Vec<(String, String)>,
    /// Sent as `Last-Event-ID` on the first request.
    last_event_id: String,
    /// The reconnection time until the server sends `retry:`.
    retry: Duration,
    /// How reconnect delays grow.
    backoff: Backoff,
    /// Longest silence tolerated while waiting for the answer or for the next bytes.
    idle_timeout: Option<Duration>,
    /// Whether comment lines become [`Update::Comment`].
    is_comment_reported: bool,
    /// Largest event accepted, in bytes.
    max_event_bytes: usize,
    /// A caller-provided HTTP client, used instead of the default one.
    http_client: Option<reqwest::Client>,
}

impl EventSourceBuilder {
    /// Adds a request header, sent on every request. It replaces a default header of the
    /// same name (`Accept`, `Cache-Control`); `Last-Event-ID` is always the client's own.
    /// Names and values are checked by [`build`](Self::build).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// The `Last-Event-ID` for the first request, to resume where an earlier client left
    /// off. Default: none.
    pub fn last_event_id(mut self, id: impl Into<String>) -> Self {
        self.last_event_id = id.into();
        self
    }

    /// The reconnection time until the server sends a `retry:` field. Default: 3 s
    /// ([`DEFAULT_RETRY`]).
    pub fn retry(mut self, retry: Duration) -> Self {
        self.retry = retry;
        self
    }

    /// How reconnect delays grow. Default: [`Backoff::new`].
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Treats a connection that stays silent this long (no response head, or no bytes on
    /// the open stream) as lost, and reconnects. Pick a value well above the server's
    /// heartbeat interval. Default: none, wait forever.
    pub fn idle_timeout(mut self, idle: Duration) -> Self {
        self.idle_timeout = Some(idle);
        self
    }

    /// Reports comment lines as [`Update::Comment`]. Default: `false`, comments are skipped
    /// as the standard says.
    pub fn report_comments(mut self, is_reported: bool) -> Self {
        self.is_comment_reported = is_reported;
        self
    }

    /// The largest event accepted, in bytes; a larger one closes the client with
    /// [`Error::EventTooLarge`]. Default: 8 MiB ([`DEFAULT_MAX_EVENT_BYTES`]).
    pub fn max_event_bytes(mut self, max_bytes: usize) -> Self {
        self.max_event_bytes = max_bytes;
        self
    }

    /// Uses this HTTP client (for its proxy, TLS or pool settings) instead of the default
    /// one, which has a 10 s connect timeout and follows up to 10 redirects.
    pub fn http_client(mut self, client: reqwest::Client) -> Self {
        self.http_client = Some(client);
        self
    }

    /// Checks the configuration and makes the client. Nothing is sent until the
    /// [`EventSource`] is polled.
    ///
    /// # Errors
    ///
    /// [`BuildError`] if the URL does not parse or is not http(s), a header name or value
    /// is invalid, the last event ID cannot be a header, or the HTTP client cannot be made.
    pub fn build(self) -> Result<EventSource, BuildError> {
        let url = Url::parse(&self.url).map_err(|source| BuildError::InvalidUrl {
            url: self.url.clone(),
            source,
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(BuildError::UnsupportedScheme {
                scheme: url.scheme().to_owned(),
            });
        }

        let mut headers = HeaderMap::new();
        headers.insert(
            header::ACCEPT,
            HeaderValue::from_static("text/event-stream"),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        for (name, value) in &self.headers {
            let header_name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| BuildError::InvalidHeaderName { name: name.clone() })?;
            let header_value = HeaderValue::from_str(value)
                .map_err(|_| BuildError::InvalidHeaderValue { name: name.clone() })?;
            headers.insert(header_name, header_value);
        }
        headers.remove(LAST_EVENT_ID);
        if HeaderValue::from_str(&self.last_event_id).is_err() {
            return Err(BuildError::InvalidLastEventId {
                id: self.last_event_id,
            });
        }

        let http = match self.http_client {
            Some(client) => client,
            None => reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(CONNECT_TIMEOUT_SECS))
                .build()
                .map_err(BuildError::HttpClient)?,
        };

        let span = tracing::debug_span!(
            "event_source",
            url.host = url.host_str().unwrap_or_default(),
            url.path = url.path(),
        );
        let connection = Connection {
            http,
            url,
            headers,
            last_event_id: self.last_event_id,
            retry: self.retry,
            backoff: self.backoff,
            idle_timeout: self.idle_timeout,
            is_comment_reported: self.is_comment_reported,
            max_event_bytes: self.max_event_bytes,
            failed_attempts: 0,
            rng: fastrand::Rng::new(),
            phase: Phase::Connect,
            pending: VecDeque::new(),
            parsed: Vec::new(),
        };
        let updates = stream::unfold(connection, move |mut connection| {
            let span = span.clone();
            async move {
                let update = connection.next_update().await?;
                Some((update, connection))
            }
            .instrument(span)
        });
        Ok(EventSource {
            updates: updates.boxed().fuse(),
        })
    }
}

/// A reconnecting Server-Sent Events client: a [`Stream`] of [`Update`]s.
///
/// It connects when first polled, reconnects after failures with the configured
/// [`Backoff`], resumes with `Last-Event-ID`, and ends after [`Update::Closed`]. Dropping
/// it cancels whatever is in flight; no task is left behind.
pub struct EventSource {
    /// The connection loop, boxed so the type can be named.
    updates: Fuse<BoxStream<'static, Update>>,
}

impl EventSource {
    /// Starts configuring a client for `url`.
    pub fn builder(url: impl Into<String>) -> EventSourceBuilder {
        EventSourceBuilder {
            url: url.into(),
            headers: Vec::new(),
            last_event_id: String::new(),
            retry: DEFAULT_RETRY,
            backoff: Backoff::new(),
            idle_timeout: None,
            is_comment_reported: false,
            max_event_bytes: DEFAULT_MAX_EVENT_BYTES,
            http_client: None,
        }
    }

    /// A client for `url` with every default.
    ///
    /// # Errors
    ///
    /// As [`EventSourceBuilder::build`].
    pub fn new(url: impl Into<String>) -> Result<Self, BuildError> {
        Self::builder(url).build()
    }
}

impl fmt::Debug for EventSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventSource")
            .field("is_terminated", &self.updates.is_terminated())
            .finish_non_exhaustive()
    }
}

impl Stream for EventSource {
    type Item = Update;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Update>> {
        self.updates.poll_next_unpin(cx)
    }
}

impl FusedStream for EventSource {
    fn is_terminated(&self) -> bool {
        self.updates.is_terminated()
    }
}

/// The `Last-Event-ID` request header.
const LAST_EVENT_ID: HeaderName = HeaderName::from_static("last-event-id");

/// Where the connection loop is.
enum Phase {
    /// About to report [`Update::Connecting`].
    Connect,
    /// Sending the request and checking the answer.
    Request,
    /// Reading an open stream (boxed: it is far larger than the other phases).
    Streaming(Box<OpenStream>),
    /// Waiting before the next request.
    Waiting(Duration),
    /// Stopped for good.
    Closed,
}

/// An open response and the parser for its body.
struct OpenStream {
    /// The open response, read chunk by chunk.
    response: Response,
    /// The parser for this response's body.
    parser: Parser,
}

/// The state of the connection loop, owned by the stream.
struct Connection {
    /// Sends the requests.
    http: reqwest::Client,
    /// The stream's URL.
    url: Url,
    /// Headers for every request, without `Last-Event-ID`.
    headers: HeaderMap,
    /// The latest last event ID: sent with the next request.
    last_event_id: String,
    /// The reconnection time, updated by `retry:` fields.
    retry: Duration,
    /// How reconnect delays grow.
    backoff: Backoff,
    /// Longest silence tolerated, if any.
    idle_timeout: Option<Duration>,
    /// Whether comments are reported.
    is_comment_reported: bool,
    /// Largest event accepted, in bytes.
    max_event_bytes: usize,
    /// Failures since the last open.
    failed_attempts: u32,
    /// Drives the jitter.
    rng: fastrand::Rng,
    /// Where the loop is.
    phase: Phase,
    /// Updates decided but not yet handed out: one chunk may complete many events.
    pending: VecDeque<Update>,
    /// Scratch space for the parser's output, reused across chunks.
    parsed: Vec<Item>,
}

impl Connection {
    /// Runs the loop until it has the next update; `None` once closed.
    async fn next_update(&mut self) -> Option<Update> {
        loop {
            if let Some(update) = self.pending.pop_front() {
                return Some(update);
            }
            match std::mem::replace(&mut self.phase, Phase::Closed) {
                Phase::Closed => return None,
                Phase::Connect => {
                    self.phase = Phase::Request;
                    tracing::debug!(last_event_id = %self.last_event_id, "connecting");
                    return Some(Update::Connecting);
                }
                Phase::Request => match self.open().await {
                    Ok(response) => {
                        self.failed_attempts = 0;
                        let parser = Parser::with_last_event_id(self.last_event_id.clone())
                            .with_max_event_bytes(self.max_event_bytes);
                        self.phase = Phase::Streaming(Box::new(OpenStream { response, parser }));
                        tracing::debug!("open");
                        return Some(Update::Open);
                    }
                    Err(error) => return Some(self.fail(error)),
                },
                Phase::Streaming(mut open) => match self.read_chunk(&mut open.response).await {
                    Ok(Some(chunk)) => {
                        let parsed = open.parser.feed(&chunk, &mut self.parsed);
                        if self.last_event_id != open.parser.last_event_id() {
                            self.last_event_id = open.parser.last_event_id().to_owned();
                        }
                        self.queue_parsed();
                        match parsed {
                            Ok(()) => self.phase = Phase::Streaming(open),
                            Err(too_large) => {
                                let update = self.fail(too_large.into());
                                self.pending.push_back(update);
                            }
                        }
                    }
                    Ok(None) => return Some(self.fail(Error::Eof)),
                    Err(error) => return Some(self.fail(error)),
                },
                Phase::Waiting(delay) => {
                    tokio::time::sleep(delay).await;
                    self.phase = Phase::Connect;
                }
            }
        }
    }

    /// Sends one request and accepts only a 200 `text/event-stream` answer.
    async fn open(&self) -> Result<Response, Error> {
        let mut request = self
            .http
            .get(self.url.clone())
            .headers(self.headers.clone());
        if !self.last_event_id.is_empty() {
            match HeaderValue::from_str(&self.last_event_id) {
                Ok(value) => request = request.header(LAST_EVENT_ID, value),
                // Ids come from lines, so they hold no CR, LF or NUL; other control
                // characters are possible and cannot be sent.
                Err(_) => tracing::warn!(
                    last_event_id = ?self.last_event_id,
                    "last event id cannot be sent as a header; reconnecting without it"
                ),
            }
        }
        let mut response = self
            .within_idle_timeout(request.send())
            .await?
            .map_err(Error::Request)?;

        let status = response.status();
        if status == StatusCode::NO_CONTENT {
            return Err(Error::NoContent);
        }
        if status != StatusCode::OK {
            let retry_after = retry_after(response.headers());
            let body = read_error_body(&mut response).await;
            return Err(Error::Status {
                status,
                body,
                retry_after,
            });
        }
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
            .unwrap_or_default();
        if !is_event_stream(&content_type) {
            return Err(Error::ContentType { content_type });
        }
        Ok(response)
    }

    /// Reads the next chunk of the open stream; `None` at its end.
    async fn read_chunk(&self, response: &mut Response) -> Result<Option<bytes::Bytes>, Error> {
        self.within_idle_timeout(response.chunk())
            .await?
            .map_err(Error::Body)
    }

    /// Runs `future` under the idle timeout, if one is set.
    async fn within_idle_timeout<T>(
        &self,
        future: impl std::future::Future<Output = T>,
    ) -> Result<T, Error> {
        match self.idle_timeout {
            Some(idle) => tokio::time::timeout(idle, future)
                .await
                .map_err(|_| Error::IdleTimeout { idle }),
            None => Ok(future.await),
        }
    }

    /// Turns what the parser produced into updates.
    fn queue_parsed(&mut self) {
        for item in self.parsed.drain(..) {
            match item {
                Item::Event(event) => self.pending.push_back(Update::Event(event)),
                Item::Retry(retry) => {
                    tracing::debug!(retry_ms = retry.as_millis(), "server set the retry delay");
                    self.retry = retry;
                }
                Item::Comment(comment) => {
                    if self.is_comment_reported {
                        self.pending.push_back(Update::Comment(comment));
                    }
                }
            }
        }
    }

    /// Decides what follows a failure: a wait and a reconnect, or the end.
    fn fail(&mut self, error: Error) -> Update {
        if !error.is_retryable() {
            tracing::debug!(reason = %error, "closed");
            self.phase = Phase::Closed;
            return Update::Closed { reason: error };
        }
        let attempt = self.failed_attempts.saturating_add(1);
        self.failed_attempts = attempt;
        if !self.backoff.is_attempt_allowed(attempt) {
            tracing::debug!(reason = %error, attempts = attempt - 1, "closed: retries exhausted");
            self.phase = Phase::Closed;
            return Update::Closed {
                reason: Error::RetriesExhausted {
                    attempts: attempt - 1,
                    last: Box::new(error),
                },
            };
        }
        let mut delay = self
            .backoff
            .delay_before(self.retry, attempt, self.rng.f64());
        if let Error::Status {
            retry_after: Some(asked),
            ..
        } = &error
        {
            // Honour Retry-After, but no further than the backoff itself may go.
            let ceiling = self.backoff.cap().max(self.retry);
            delay = delay.max((*asked).min(ceiling));
        }
        tracing::debug!(reason = %error, attempt, delay_ms = delay.as_millis(), "retrying");
        self.phase = Phase::Waiting(delay);
        Update::Retrying {
            delay,
            attempt,
            reason: error,
        }
    }
}

/// Whether a `Content-Type` value is `text/event-stream`, parameters aside.
fn is_event_stream(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    essence.eq_ignore_ascii_case("text/event-stream")
}

/// The `Retry-After` header, when it is a number of seconds (dates are ignored).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let seconds = headers.get(header::RETRY_AFTER)?.to_str().ok()?.trim();
    seconds.parse().ok().map(Duration::from_secs)
}

/// Reads the start of an error response's body, bounded in size and time.
async fn read_error_body(response: &mut Response) -> String {
    let mut body = Vec::new();
    let read = async {
        while body.len() < ERROR_BODY_MAX_BYTES {
            match response.chunk().await {
                Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                Ok(None) | Err(_) => break,
            }
        }
    };
    // A body that is cut short is still worth reporting as far as it got.
    let _ = tokio::time::timeout(Duration::from_millis(ERROR_BODY_READ_TIMEOUT_MS), read).await;
    body.truncate(ERROR_BODY_MAX_BYTES);
    String::from_utf8_lossy(&body).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_type_check_ignores_case_and_parameters() {
        assert!(is_event_stream("text/event-stream"));
        assert!(is_event_stream("Text/Event-Stream; charset=utf-8"));
        assert!(is_event_stream(" text/event-stream ;x=y"));
        assert!(!is_event_stream(""));
        assert!(!is_event_stream("text/plain"));
        assert!(!is_event_stream("text/event-streams"));
    }

    #[test]
    fn retry_after_accepts_seconds_only() {
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert(header::RETRY_AFTER, HeaderValue::from_static(" 7 "));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(7)));
        headers.insert(
            header::RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&headers), None);
    }

    #[test]
    fn builder_rejects_bad_input() {
        assert!(matches!(
            EventSource::new("not a url"),
            Err(BuildError::InvalidUrl { .. })
        ));
        assert!(matches!(
            EventSource::new("ftp://example.com/stream"),
            Err(BuildError::UnsupportedScheme { .. })
        ));
        assert!(matches!(
            EventSource::builder("http://127.0.0.1/")
                .header("bad header", "x")
                .build(),
            Err(BuildError::InvalidHeaderName { .. })
        ));
        assert!(matches!(
            EventSource::builder("http://127.0.0.1/")
                .header("x-token", "a\r\nb")
                .build(),
            Err(BuildError::InvalidHeaderValue { .. })
        ));
        assert!(matches!(
            EventSource::builder("http://127.0.0.1/")
                .last_event_id("a\u{1}b")
                .build(),
            Err(BuildError::InvalidLastEventId { .. })
        ));
    }

    #[test]
    fn event_source_is_send_and_unpin() {
        fn assert_send_unpin<T: Send + Unpin>() {}
        assert_send_unpin::<EventSource>();
    }
}
