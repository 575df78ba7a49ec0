//! Channel names: the validated newtype every other module works with.
//!
//! Owns the naming rule (1 to 128 characters of `A-Z a-z 0-9 _ - . : @`). It never allocates a
//! registry entry or knows who subscribes; that is `fanout`'s job.

use serde::{Deserialize, Serialize};
use std::{fmt, sync::Arc};

/// Longest channel name accepted, in bytes (every allowed character is one byte).
pub const CHANNEL_NAME_LEN_MAX: usize = 128;

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
    /// The name is longer than [`CHANNEL_NAME_LEN_MAX`].
    #[error("channel name is longer than {CHANNEL_NAME_LEN_MAX} characters")]
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
}
