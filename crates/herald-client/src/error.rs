//! Why a connection failed, and whether that failure is worth another attempt.
//!
//! The client never returns these as `Err`: it reports them inside
//! [`Update::Retrying`](crate::Update::Retrying) and [`Update::Closed`](crate::Update::Closed),
//! so callers branch on the variant (or on [`Error::is_retryable`]), never on the message.
//! Building a client fails with the separate [`BuildError`].

use std::time::Duration;

use reqwest::StatusCode;

use crate::parser::EventTooLarge;

/// What went wrong with one connection.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The request could not be sent or its answer not received: refused, reset, DNS
    /// failure, timeout. Retried.
    #[error("request failed")]
    Request(#[source] reqwest::Error),

    /// The server answered `204 No Content`: it asks the client to stop. Not retried.
    #[error("server answered 204 no content")]
    NoContent,

    /// The server answered with a status other than 200 and 204. Retried for 429 and 5xx,
    /// final for anything else.
    #[error("server answered {status}")]
    Status {
        /// The status the server answered.
        status: StatusCode,
        /// The start of the response body, for diagnostics (at most a few KiB, decoded
        /// lossily; empty if it could not be read in time).
        body: String,
        /// The delay the server asked for in `Retry-After`, when given in seconds.
        retry_after: Option<Duration>,
    },

    /// The server answered 200 with a content type other than `text/event-stream`. Not
    /// retried.
    #[error("server answered content type {content_type:?}, not text/event-stream")]
    ContentType {
        /// The `Content-Type` header, empty if there was none.
        content_type: String,
    },

    /// Reading the open stream failed. Retried.
    #[error("reading the stream failed")]
    Body(#[source] reqwest::Error),

    /// The server ended the stream. Retried: an event stream is never meant to end.
    #[error("the server ended the stream")]
    Eof,

    /// Nothing arrived on the open stream for the configured idle timeout. Retried.
    #[error("nothing received for {idle:?}")]
    IdleTimeout {
        /// The idle timeout that elapsed.
        idle: Duration,
    },

    /// One event outgrew the configured limit. Not retried: the same event would come
    /// back.
    #[error(transparent)]
    EventTooLarge(#[from] EventTooLarge),

    /// The limit on consecutive reconnect attempts was reached and the next one failed
    /// too; that last failure is the source.
    #[error("gave up after {attempts} reconnect attempts")]
    RetriesExhausted {
        /// How many reconnects were tried since the last open (the limit that was set).
        attempts: u32,
        /// The failure of the last attempt.
        #[source]
        last: Box<Error>,
    },
}

impl Error {
    /// Whether the client tries again after this failure: network and body errors, 429,
    /// 5xx, a stream that ended and an idle timeout are worth a retry; everything else
    /// means the server wants the client to stop (204, another 4xx or 3xx, a wrong
    /// content type) or that a retry cannot help.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Request(error) => !error.is_builder(),
            Self::Status { status, .. } => {
                *status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()
            }
            Self::Body(_) | Self::Eof | Self::IdleTimeout { .. } => true,
            Self::NoContent
            | Self::ContentType { .. }
            | Self::EventTooLarge(_)
            | Self::RetriesExhausted { .. } => false,
        }
    }
}

/// Why a client could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The URL does not parse.
    #[error("invalid url {url:?}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// Why it does not parse.
        #[source]
        source: UrlParseError,
    },

    /// The URL is not `http` or `https`.
    #[error("unsupported url scheme {scheme:?}: only http and https")]
    UnsupportedScheme {
        /// The scheme as given.
        scheme: String,
    },

    /// A header name is not a valid HTTP header name.
    #[error("invalid header name {name:?}")]
    InvalidHeaderName {
        /// The name as given.
        name: String,
    },

    /// A header value is not a valid HTTP header value (for example it holds CR or LF).
    /// The value itself is left out: it may be a secret.
    #[error("invalid value for header {name:?}")]
    InvalidHeaderValue {
        /// The header's name.
        name: String,
    },

    /// The initial last event ID cannot be sent as a header (it holds CR, LF or another
    /// control character).
    #[error("last event id {id:?} cannot be sent as a header")]
    InvalidLastEventId {
        /// The ID as given.
        id: String,
    },

    /// The HTTP client could not be created.
    #[error("creating the http client failed")]
    HttpClient(#[source] reqwest::Error),
}

/// The URL parse error, named through reqwest's URL type so this crate needs no direct
/// dependency on the `url` crate.
type UrlParseError = <reqwest::Url as std::str::FromStr>::Err;
