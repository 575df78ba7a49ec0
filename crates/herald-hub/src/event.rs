//! What a publisher hands the hub: the event's name, id and payload, validated.
//!
//! Owns the rules for event names, ids and client ids (no CR, LF or NUL can reach the wire) and the
//! payload's two forms (text or JSON). It never encodes bytes (`wire` does) nor stores anything.

use serde::{Serialize, Serializer};
use std::{fmt, sync::Arc};

/// Longest event name accepted, in bytes.
pub const EVENT_NAME_LEN_MAX: usize = 128;
/// Longest event id accepted, in bytes.
pub const EVENT_ID_LEN_MAX: usize = 256;
/// Longest client id accepted, in bytes.
pub const CLIENT_ID_LEN_MAX: usize = 128;

/// Why an event field was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldError {
    /// The field is empty.
    #[error("{field} is empty")]
    Empty {
        /// The field's name (`event`, `id`, `clientId`).
        field: &'static str,
    },
    /// The field is longer than its limit.
    #[error("{field} is longer than {max} bytes")]
    TooLong {
        /// The field's name.
        field: &'static str,
        /// Its limit in bytes.
        max: usize,
    },
    /// The field holds CR, LF or NUL, which would break or inject SSE fields.
    #[error("{field} must not contain CR, LF or NUL")]
    ControlChar {
        /// The field's name.
        field: &'static str,
    },
    /// The field holds a character outside its allowed set.
    #[error("{field} holds {found:?}; allowed are A-Z a-z 0-9 _ - . : @")]
    InvalidChar {
        /// The field's name.
        field: &'static str,
        /// The first refused character.
        found: char,
    },
}

fn check_text(field: &'static str, value: &str, max: usize) -> Result<(), FieldError> {
    if value.is_empty() {
        return Err(FieldError::Empty { field });
    }
    if value.len() > max {
        return Err(FieldError::TooLong { field, max });
    }
    if value.contains(['\r', '\n', '\0']) {
        return Err(FieldError::ControlChar { field });
    }
    Ok(())
}

/// Checks an event name: 1 to [`EVENT_NAME_LEN_MAX`] bytes, no CR, LF or NUL.
///
/// # Errors
/// [`FieldError`] naming the rule broken.
pub fn validate_event_name(name: &str) -> Result<(), FieldError> {
    check_text("event", name, EVENT_NAME_LEN_MAX)
}

/// Checks a publisher-chosen event id: 1 to [`EVENT_ID_LEN_MAX`] bytes, no CR, LF or NUL.
///
/// # Errors
/// [`FieldError`] naming the rule broken.
pub fn validate_event_id(id: &str) -> Result<(), FieldError> {
    check_text("id", id, EVENT_ID_LEN_MAX)
}

/// The id of one connection: hub-assigned (`c_…`) or chosen by the client to keep it across
/// reconnects. Same character set as channel names.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientId(Arc<str>);

impl ClientId {
    /// Validates a client-chosen id.
    ///
    /// # Errors
    /// [`FieldError`] when empty, too long or holding a character outside `A-Z a-z 0-9 _ - . : @`.
    pub fn new(id: &str) -> Result<Self, FieldError> {
        const FIELD: &str = "clientId";
        check_text(FIELD, id, CLIENT_ID_LEN_MAX)?;
        if let Some(found) = id
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':' | '@')))
        {
            return Err(FieldError::InvalidChar {
                field: FIELD,
                found,
            });
        }
        Ok(Self(Arc::from(id)))
    }

    /// A fresh random id, `c_` followed by 16 base-36 characters.
    pub(crate) fn random() -> Self {
        let mut id = String::with_capacity(18);
        id.push_str("c_");
        id.extend((0..16).map(|_| fastrand::alphanumeric().to_ascii_lowercase()));
        Self(Arc::from(id))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl Serialize for ClientId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

/// An event's payload as it goes on the wire.
///
/// A JSON string goes out as its text; any other JSON value as compact JSON. The flag keeps the
/// difference so the polling endpoints can give the publisher's JSON back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventData {
    text: Arc<str>,
    is_json: bool,
}

impl EventData {
    /// Plain text, sent as is (one `data:` line per line).
    pub fn text(text: impl Into<Arc<str>>) -> Self {
        Self {
            text: text.into(),
            is_json: false,
        }
    }

    /// A JSON value as a publisher sent it: a string becomes text, anything else compact JSON.
    pub fn from_json(value: serde_json::Value) -> Self {
        match value {
            serde_json::Value::String(text) => Self::text(text),
            other => Self {
                text: Arc::from(other.to_string()),
                is_json: true,
            },
        }
    }

    /// JSON text exactly as a publisher sent it: validated, never re-serialized, so subscribers get
    /// the publisher's key order and spacing (surrounding whitespace is dropped; newlines inside
    /// become separate `data:` lines on the wire). A JSON string becomes its text, as with
    /// [`EventData::from_json`].
    ///
    /// ```
    /// use herald_hub::EventData;
    ///
    /// let data = EventData::from_raw_json(r#" {"symbol":"HRLD", "price":12.5} "#)?;
    /// assert_eq!(data.as_str(), r#"{"symbol":"HRLD", "price":12.5}"#);
    /// assert_eq!(EventData::from_raw_json(r#""hi""#)?.as_str(), "hi");
    /// assert!(EventData::from_raw_json("{nope").is_err());
    /// # Ok::<(), serde_json::Error>(())
    /// ```
    ///
    /// # Errors
    /// The parser's error when `json` is not one valid JSON document.
    pub fn from_raw_json(json: &str) -> Result<Self, serde_json::Error> {
        let json = json.trim_matches(|c| matches!(c, ' ' | '\t' | '\n' | '\r'));
        if json.starts_with('"') {
            return serde_json::from_str::<String>(json).map(Self::text);
        }
        serde_json::from_str::<serde::de::IgnoredAny>(json)?;
        Ok(Self {
            text: Arc::from(json),
            is_json: true,
        })
    }

    /// Serializes any value to compact JSON (a string value is sent as its text).
    ///
    /// # Errors
    /// The serializer's error when `value` cannot be represented as JSON.
    pub fn json<T: Serialize + ?Sized>(value: &T) -> Result<Self, serde_json::Error> {
        Ok(Self::from_json(serde_json::to_value(value)?))
    }

    /// The payload exactly as stored: `text` is compact JSON when `is_json`.
    pub(crate) fn restore(text: String, is_json: bool) -> Self {
        Self {
            text: Arc::from(text),
            is_json,
        }
    }

    /// The text that goes on the wire.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the text is compact JSON (as opposed to a plain string).
    pub fn is_json(&self) -> bool {
        self.is_json
    }

    /// The payload as a JSON value: JSON as it was published, text as a JSON string.
    pub fn to_json(&self) -> serde_json::Value {
        if self.is_json {
            serde_json::from_str(&self.text)
                .unwrap_or_else(|_| serde_json::Value::String(self.text.to_string()))
        } else {
            serde_json::Value::String(self.text.to_string())
        }
    }
}

/// One event to publish: optional name (default `message`), payload and optional id.
#[derive(Clone, Debug)]
pub struct NewEvent {
    /// The SSE event name; `None` is the default `message` event (no `event:` line).
    pub event: Option<String>,
    /// The payload.
    pub data: EventData,
    /// A publisher-chosen id, unique within history; publishing the same id again while it is in
    /// history is a no-op that returns the original. `None`: the hub assigns one.
    pub id: Option<String>,
}

impl NewEvent {
    /// An unnamed event (`message`) with a hub-assigned id.
    pub fn new(data: EventData) -> Self {
        Self {
            event: None,
            data,
            id: None,
        }
    }

    /// Sets the event name.
    pub fn named(mut self, event: impl Into<String>) -> Self {
        self.event = Some(event.into());
        self
    }

    /// Sets a publisher-chosen id.
    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// Checks the name and the id.
    ///
    /// # Errors
    /// [`FieldError`] for the first field that breaks its rule.
    pub fn validate(&self) -> Result<(), FieldError> {
        if let Some(event) = &self.event {
            validate_event_name(event)?;
        }
        if let Some(id) = &self.id {
            validate_event_id(id)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_string_is_sent_as_text_and_others_as_compact_json() {
        assert_eq!(
            EventData::from_json(serde_json::json!("hi\nthere")).as_str(),
            "hi\nthere"
        );
        let object = EventData::from_json(serde_json::json!({"id": 7, "tags": ["a"]}));
        assert_eq!(object.as_str(), r#"{"id":7,"tags":["a"]}"#);
        assert_eq!(
            object.to_json(),
            serde_json::json!({"id": 7, "tags": ["a"]})
        );
    }

    #[test]
    fn raw_json_keeps_the_publishers_bytes() {
        let raw = "{\"symbol\":\"HRLD\",\n  \"price\":12.5}";
        let data = EventData::from_raw_json(raw).expect("valid JSON");
        assert_eq!(data.as_str(), raw);
        assert!(data.is_json());
        assert!(EventData::from_raw_json("{} {}").is_err());
        assert!(EventData::from_raw_json("").is_err());
    }

    #[test]
    fn control_characters_in_names_and_ids_are_refused() {
        for bad in ["a\nb", "a\rb", "a\0b"] {
            assert_eq!(
                validate_event_name(bad),
                Err(FieldError::ControlChar { field: "event" })
            );
            assert_eq!(
                validate_event_id(bad),
                Err(FieldError::ControlChar { field: "id" })
            );
        }
        assert!(validate_event_name("order.created").is_ok());
    }

    #[test]
    fn random_client_ids_are_valid_client_ids() {
        let id = ClientId::random();
        assert!(ClientId::new(id.as_str()).is_ok());
        assert!(id.as_str().starts_with("c_"));
    }
}
