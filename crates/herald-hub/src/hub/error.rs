//! The hub's public errors: why a publish, a send, a connection or a subscription change was
//! refused.
//!
//! Owns the error types and their predicates (`is_unavailable()`, `is_client_not_found()`...), so
//! callers branch on what happened without matching strings. Causes stay reachable through
//! `source()`. It never decides anything itself.

use crate::{
    channel::{ChannelName, ChannelNameError},
    event::{ClientId, FieldError},
    log::LogError,
};

/// Why a publish was refused. Nothing was published.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// The event's name or id breaks a rule.
    #[error(transparent)]
    InvalidField(#[from] FieldError),
    /// The event is addressed to a client that is not connected and did not leave recently.
    #[error("client {0} is not connected")]
    ClientNotFound(ClientId),
    /// A publish must name at least one channel.
    #[error("no channel given")]
    NoChannel,
    /// A publish names more distinct channels than [`crate::PUBLISH_CHANNELS_MAX`].
    #[error("a publish may name at most {max} distinct channels; this one names {given}")]
    TooManyChannels {
        /// The limit.
        max: usize,
        /// Distinct channels named.
        given: usize,
    },
    /// The channels of one publish fall in different namespaces (each keeps its own history,
    /// so one event cannot be kept by the rules of two).
    #[error("the channels of one publish must share a namespace: {first} is in {first_namespace}, {other} in {other_namespace}")]
    NamespaceMismatch {
        /// A channel of the first namespace.
        first: ChannelName,
        /// Its namespace.
        first_namespace: String,
        /// A channel of another namespace.
        other: ChannelName,
        /// Its namespace.
        other_namespace: String,
    },
    /// The log behind the hub (the durable log, or Redis in a cluster) cannot take the event
    /// now. It may or may not have been recorded: retry with the same publisher id to be safe.
    #[error("the event log is unavailable")]
    Unavailable(#[source] LogError),
}

impl PublishError {
    /// Whether the log could not take the event now (retry later; 503 in HTTP terms).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }

    /// Whether the event was for a client id no node knows.
    pub fn is_client_not_found(&self) -> bool {
        matches!(self, Self::ClientNotFound(_))
    }

    /// Whether the event itself was refused (a bad field, no channel): retrying cannot help.
    pub fn is_invalid(&self) -> bool {
        matches!(
            self,
            Self::InvalidField(_)
                | Self::NoChannel
                | Self::TooManyChannels { .. }
                | Self::NamespaceMismatch { .. }
        )
    }
}

impl From<LogError> for PublishError {
    fn from(err: LogError) -> Self {
        Self::Unavailable(err)
    }
}

/// Why [`crate::Hub::broadcast`], [`crate::Hub::broadcast_all`] or [`crate::Hub::send_to`]
/// refused an event. Nothing was published.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The channel name breaks the naming rule.
    #[error(transparent)]
    InvalidChannel(#[from] ChannelNameError),
    /// The data cannot be represented as JSON (a map with non-string keys, a failing
    /// `Serialize` implementation).
    #[error("data cannot be serialized as JSON")]
    InvalidData(#[from] serde_json::Error),
    /// The hub refused the event (see [`PublishError`]).
    #[error(transparent)]
    Publish(#[from] PublishError),
}

impl SendError {
    /// Whether the log could not take the event now (retry later).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Publish(err) if err.is_unavailable())
    }

    /// Whether the event was for a client id no node knows.
    pub fn is_client_not_found(&self) -> bool {
        matches!(self, Self::Publish(err) if err.is_client_not_found())
    }
}

/// Why a connection could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The hub is shutting down.
    #[error("the hub is shutting down")]
    ShuttingDown,
    /// Every channel asked for has been closed; a stream would only end at once.
    #[error("channel {0} is closed")]
    ChannelClosed(ChannelName),
    /// A channel asked for already has the most subscribers its namespace allows on this node.
    #[error("channel {channel} has its most subscribers ({max})")]
    ChannelFull {
        /// The channel.
        channel: ChannelName,
        /// Its namespace's `max_subscribers`.
        max: usize,
    },
}

impl ConnectError {
    /// Whether the hub is shutting down (try another node).
    pub fn is_shutting_down(&self) -> bool {
        matches!(self, Self::ShuttingDown)
    }

    /// Whether the channel asked for is closed for good.
    pub fn is_channel_closed(&self) -> bool {
        matches!(self, Self::ChannelClosed(_))
    }
}

/// Why a subscription change failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SubscriptionError {
    /// No live connection has this id.
    #[error("client {0} is not connected")]
    ClientNotFound(ClientId),
    /// The connection is not subscribed to that channel.
    #[error("client is not subscribed to {0}")]
    NotSubscribed(ChannelName),
    /// The channel is closed.
    #[error("channel {0} is closed")]
    ChannelClosed(ChannelName),
    /// The channel already has the most subscribers its namespace allows on this node.
    #[error("channel {channel} has its most subscribers ({max})")]
    ChannelFull {
        /// The channel.
        channel: ChannelName,
        /// Its namespace's `max_subscribers`.
        max: usize,
    },
}

impl SubscriptionError {
    /// Whether no live connection has the client id.
    pub fn is_client_not_found(&self) -> bool {
        matches!(self, Self::ClientNotFound(_))
    }
}
