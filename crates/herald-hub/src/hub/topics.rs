//! Topic-selecting connections (Mercure subscribers): the front door that opens one.
//!
//! Owns the public entry point and its resume rule's vocabulary (`earliest`); the registration
//! itself is `connect`'s, shared with every connection. It never reads a token or a request.

use super::{ClientOptions, ConnectError, Hub};
use crate::{stream::ClientStream, topic::TopicFilter};

/// The `Last-Event-ID` a topic client sends to replay all of history (Mercure's `earliest`).
pub(crate) const EARLIEST: &str = "earliest";

impl Hub {
    /// Registers a topic-selecting connection (a Mercure subscriber): it hears the channels of
    /// `options`, every channel `filter` selects, and private events on channels its grants
    /// match; never broadcasts to everyone. Its stream opens with a comment (no `connected`
    /// event). Returns the stream and the id of the event its replay starts after, or
    /// `earliest` when it replays all of history: a `Last-Event-ID` that is `earliest`, or that
    /// history does not hold (it left, or never was), replays every event history holds that the
    /// connection may read, so a reader is never silently moved past events it missed.
    ///
    /// # Errors
    /// As [`Hub::add_client`].
    pub fn add_topic_client(
        &self,
        options: ClientOptions,
        filter: TopicFilter,
    ) -> Result<(ClientStream, String), ConnectError> {
        self.connect(options, Some(filter))
    }
}
