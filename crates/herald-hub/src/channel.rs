//! Channel names: the validated newtype every other module works with.
//!
//! Owns the naming rules: Herald's own API names channels with 1 to 128 characters of
//! `A-Z a-z 0-9 _ - . : @` ([`ChannelName::new`]); Mercure topics (IRIs such as
//! `https://example.com/books/1`) are channels too, with a looser rule only the Mercure adapter
//! reaches ([`ChannelName::topic`]): one name space, so a topic and a channel of the same name are
//! one. It never allocates a registry entry or knows who subscribes; that is `fanout`'s job.

use serde::{Deserialize, Serialize};
use std::{fmt, sync::Arc};

/// Longest channel name accepted, in bytes (every allowed character is one byte).
pub const CHANNEL_NAME_LEN_MAX: usize = 128;

/// Longest Mercure topic accepted as a channel name, in bytes.
pub const TOPIC_LEN_MAX: usize = 1024;

/// A valid channel name, cheap to clone.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct ChannelName(Arc<str>);

/// Why a channel name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChannelNameError {
    /// The name is empty.
    #[error("channel name is empty")]
    Empty,
    /// The name is longer than [`CHANNEL_NAME_LEN_MAX`] (or a topic than [`TOPIC_LEN_MAX`]).
    #[error("channel name is too long (at most {CHANNEL_NAME_LEN_MAX} characters; a topic {TOPIC_LEN_MAX} bytes)")]
    TooLong,
    /// The name holds a character outside `A-Z a-z 0-9 _ - . : @`.
    #[error("channel name holds {0:?}; allowed are A-Z a-z 0-9 _ - . : @")]
    InvalidChar(char),
}

impl ChannelName {
    /// Validates `name`.
    ///
    /// # Errors
    /// [`ChannelNameError`] when the name is empty, too long or holds a character outside the set.
    pub fn new(name: &str) -> Result<Self, ChannelNameError> {
        if name.is_empty() {
            return Err(ChannelNameError::Empty);
        }
        if let Some(bad) = name.chars().find(|c| !is_channel_char(*c)) {
            return Err(ChannelNameError::InvalidChar(bad));
        }
        if name.len() > CHANNEL_NAME_LEN_MAX {
            return Err(ChannelNameError::TooLong);
        }
        Ok(Self(Arc::from(name)))
    }

    /// Validates a Mercure topic (an IRI, or any opaque name): 1 to [`TOPIC_LEN_MAX`] bytes
    /// of UTF-8 without whitespace or control characters. Every name [`ChannelName::new`]
    /// accepts is a valid topic, and is the same channel.
    ///
    /// ```
    /// use herald_hub::ChannelName;
    ///
    /// let topic = ChannelName::topic("https://example.com/books/1?lang=fr#top")?;
    /// assert_eq!(topic, ChannelName::topic("https://example.com/books/1?lang=fr#top")?);
    /// assert_eq!(ChannelName::topic("orders")?, ChannelName::new("orders")?);
    /// assert!(ChannelName::topic("a b").is_err());
    /// # Ok::<(), herald_hub::ChannelNameError>(())
    /// ```
    ///
    /// # Errors
    /// [`ChannelNameError`] when the topic is empty, too long or holds whitespace or a control
    /// character.
    pub fn topic(name: &str) -> Result<Self, ChannelNameError> {
        if name.is_empty() {
            return Err(ChannelNameError::Empty);
        }
        if let Some(bad) = name.chars().find(|c| c.is_whitespace() || c.is_control()) {
            return Err(ChannelNameError::InvalidChar(bad));
        }
        if name.len() > TOPIC_LEN_MAX {
            return Err(ChannelNameError::TooLong);
        }
        Ok(Self(Arc::from(name)))
    }

    /// The channel that addresses every connection of user `user_id`: `user:{user_id}`.
    ///
    /// # Errors
    /// [`ChannelNameError`] when the resulting name is not valid.
    pub fn for_user(user_id: &str) -> Result<Self, ChannelNameError> {
        Self::new(&format!("user:{user_id}"))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn is_channel_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':' | '@')
}

impl fmt::Display for ChannelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ChannelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl<'de> Deserialize<'de> for ChannelName {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::new(&text).map_err(serde::de::Error::custom)
    }
}

/// Reads stored channel names with the topic rule: a log holds what either API published.
pub(crate) fn deserialize_stored<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<ChannelName>, D::Error> {
    Vec::<String>::deserialize(deserializer)?
        .iter()
        .map(|name| ChannelName::topic(name).map_err(serde::de::Error::custom))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_the_allowed_set_are_accepted() {
        for name in [
            "orders",
            "user:42",
            "team:7:chat",
            "a.b-c_d@e",
            &"x".repeat(128),
        ] {
            assert!(ChannelName::new(name).is_ok(), "{name}");
        }
    }

    #[test]
    fn bad_names_are_refused_with_the_reason() {
        assert_eq!(ChannelName::new(""), Err(ChannelNameError::Empty));
        assert_eq!(
            ChannelName::new(&"x".repeat(129)),
            Err(ChannelNameError::TooLong)
        );
        assert_eq!(
            ChannelName::new("a b"),
            Err(ChannelNameError::InvalidChar(' '))
        );
        assert_eq!(
            ChannelName::new("a\nb"),
            Err(ChannelNameError::InvalidChar('\n'))
        );
        assert_eq!(
            ChannelName::new("é"),
            Err(ChannelNameError::InvalidChar('é'))
        );
    }

    #[test]
    fn topics_are_iris_within_their_bound() {
        assert!(ChannelName::topic("https://example.com/books/{id}").is_ok());
        assert!(ChannelName::topic("urn:uuid:e1ee88e2-532a-4d6f").is_ok());
        assert!(ChannelName::topic("https://example.com/l\u{e9}gumes").is_ok());
        assert_eq!(
            ChannelName::topic(&"x".repeat(TOPIC_LEN_MAX + 1)),
            Err(ChannelNameError::TooLong)
        );
        assert_eq!(
            ChannelName::topic("a\tb"),
            Err(ChannelNameError::InvalidChar('\t'))
        );
        assert!(ChannelName::new("https://example.com/books/1").is_err());
    }
}
