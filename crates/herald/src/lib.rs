//! Herald: a real-time event hub that pushes events to browsers and apps over Server-Sent Events.
//!
//! Publishers hand events to a [`Hub`]; every subscriber of the event's channels gets it on its
//! `text/event-stream`, and a subscriber that reconnects with its last event id gets back what it
//! missed while that is still in history.
//!
//! # Layout
//! - [`hub`]: the front door ([`Hub`]): publish, subscribe, clients, stats, shutdown.
//! - `history`: the bounded, ordered event log that gives every event its position and id.
//! - `fanout`: the registry of live connections by channel and by client id.
//! - `client` and [`stream`]: one connection's bounded queue, and the byte stream that drains it.
//! - `wire`: SSE encoding, done once per event.
//! - [`channel`], [`event`]: validated names, ids and payloads.
//! - [`store`]: the durable log (redb) behind `--data-dir`: recovery and group commit.
//! - [`config`]: settings and their defaults.
//! - [`http`] (feature `axum`, on by default): the HTTP API and the server loop.

pub mod channel;
mod client;
pub mod config;
pub mod event;
mod fanout;
mod history;
pub mod hub;
pub mod store;
pub mod stream;
mod wire;

#[cfg(feature = "axum")]
pub mod http;

pub use channel::ChannelName;
pub use config::{HistoryConfig, HubConfig};
pub use event::{ClientId, EventData, NewEvent};
pub use history::Target;
pub use hub::{ClientOptions, Hub, Published};
pub use stream::ClientStream;
