//! A resilient Server-Sent Events client: a WHATWG-exact `text/event-stream` parser, and
//! an [`EventSource`] that reconnects with backoff and resumes with `Last-Event-ID`.
//!
//! The client behaves like a browser's `EventSource` where the standard is clear (what
//! counts as an event, which answers stop it for good, how `retry:` and `id:` work) and
//! adds what a long-running service needs: exponential backoff with jitter and a cap,
//! retries on 429 and 5xx, an optional idle timeout, a bound on event size, and every
//! state change reported in the same stream as the events.
//!
//! # Layout
//!
//! - [`parser`]: the incremental stream parser ([`Parser`], [`Event`], [`Item`]). No I/O.
//! - [`EventSource`] and [`EventSourceBuilder`] (module `event_source`): the connection
//!   loop, a `Stream` of [`Update`]s.
//! - [`Backoff`] and [`Jitter`] (module `backoff`): the reconnect delay policy.
//! - [`Error`] and [`BuildError`] (module `error`): why a connection failed, whether that
//!   is worth a retry, and why a client could not be built.
//!
//! # Example
//!
//! ```no_run
//! use std::time::Duration;
//!
//! use futures_util::StreamExt;
//! use herald_client::{Backoff, EventSource, Update};
//!
//! # async fn run() -> Result<(), herald_client::BuildError> {
//! let mut updates = EventSource::builder("http://127.0.0.1:8080/api/channels/news/stream")
//!     .header("authorization", "Bearer secret")
//!     .backoff(Backoff::new().with_cap(Duration::from_secs(10)))
//!     .build()?;
//!
//! while let Some(update) = updates.next().await {
//!     match update {
//!         Update::Event(event) => println!("[{}] {}: {}", event.id, event.event, event.data),
//!         Update::Retrying { delay, reason, .. } => eprintln!("{reason}; retrying in {delay:?}"),
//!         Update::Closed { reason } => eprintln!("closed: {reason}"),
//!         _ => {}
//!     }
//! }
//! # Ok(())
//! # }
//! ```

mod backoff;
mod error;
mod event_source;
pub mod parser;

pub use backoff::{Backoff, Jitter, DEFAULT_BACKOFF_CAP};
pub use error::{BuildError, Error};
pub use event_source::{
    EventSource, EventSourceBuilder, Update, DEFAULT_MAX_EVENT_BYTES, DEFAULT_RETRY,
};
pub use parser::{Event, Item, Parser};
