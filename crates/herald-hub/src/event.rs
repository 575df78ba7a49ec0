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
    /// An event id holds a character a browser cannot send back in `Last-Event-ID` unchanged
    /// (a space, a control character, anything outside ASCII).
    #[error(
        "{field} holds {found:?}; an event id is printable ASCII without spaces (0x21 to 0x7E)"
    )]
    NotPrintable {
        /// The field's name.
        field: &'static str,
        /// The first refused character.
        found: char,
    },
    /// An event id has the shape of the hub's log positions (`123-4`, or twelve lower-case
    /// letters or digits, `-` and digits), which only the hub assigns.
    #[error(
        "{field} has the shape of a log position (digits-digits, or 12 of [0-9a-z]-digits), \
         which is reserved for the ids the hub assigns"
    )]
    ReservedShape {
        /// The field's name.
        field: &'static str,
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

/// Checks a publisher-chosen event id: 1 to [`EVENT_ID_LEN_MAX`] bytes of printable ASCII
/// without spaces (`0x21..=0x7E`: what a browser sends back in `Last-Event-ID` unchanged), and
/// not shaped like a log position (`^[0-9]+-[0-9]+$`, or the hub's `^[0-9a-z]{12}-[0-9]+$`).
///
/// ```
/// use herald_hub::validate_event_id;
///
/// assert!(validate_event_id("order-7.created").is_ok());
/// assert!(validate_event_id(" order-7").is_err(), "a browser trims the space");
/// assert!(validate_event_id("\u{fc}-1").is_err(), "not ASCII");
/// assert!(validate_event_id("1700000000000-0").is_err(), "a Redis entry id's shape");
/// ```
///
/// # Errors
/// [`FieldError`] naming the rule broken.
pub fn validate_event_id(id: &str) -> Result<(), FieldError> {
    const FIELD: &str = "id";
    check_text(FIELD, id, EVENT_ID_LEN_MAX)?;
    if let Some(found) = id.chars().find(|c| !matches!(c, '\x21'..='\x7e')) {
        return Err(FieldError::NotPrintable {
            field: FIELD,
            found,
        });
    }
    if is_position_shaped(id) {
        return Err(FieldError::ReservedShape { field: FIELD });
    }
    Ok(())
}

/// Whether some event could have `id` (hub-assigned or a publisher's): 1 to
/// [`EVENT_ID_LEN_MAX`] bytes, no CR, LF or NUL. Looser than [`validate_event_id`], which also
/// refuses the shapes only the hub assigns: a reader may name any event, a publisher may not.
pub(crate) fn is_possible_event_id(id: &str) -> bool {
    check_text("id", id, EVENT_ID_LEN_MAX).is_ok()
}

/// Whether `id` has the shape of a hub-assigned position: a Redis entry id (`<ms>-<n>`, digits
/// on both sides) or a standalone position (`{epoch}-{n}`, the epoch being 12 of `[0-9a-z]`).
/// Publisher ids never have it, so an id is never mistaken for a log position.
pub(crate) fn is_position_shaped(id: &str) -> bool {
    let Some((head, n)) = id.split_once('-') else {
        return false;
    };
    let is_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !is_digits(n) {
        return false;
    }
    is_digits(head)
        || (head.len() == 12
            && head
                .bytes()
                .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase()))
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

    /// A fresh random id: `c_` and 26 base-32 characters, 128 bits from the operating system's
    /// cryptographic generator, so an id cannot be guessed from others.
    ///
    /// # Panics
    /// When the operating system has no random source (`getrandom` fails).
    pub(crate) fn random() -> Self {
        const BASE32: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
        let mut bytes = [0u8; 16];
        getrandom::getrandom(&mut bytes).expect("the operating system provides random bytes");
        let mut bits = u128::from_le_bytes(bytes);
        let mut id = String::with_capacity(28);
        id.push_str("c_");
        for _ in 0..26 {
            id.push(char::from(BASE32[(bits & 31) as usize]));
            bits >>= 5;
        }
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
    /// A private event reaches only topic-selecting connections whose grants match one of its
    /// channels (Mercure's `private`), never Herald's API. Default false.
    pub private: bool,
    /// The reconnection time (SSE `retry:`) sent with the event, in ms. Default `None`.
    pub retry: Option<u64>,
}

impl NewEvent {
    /// An unnamed event (`message`) with a hub-assigned id.
    pub fn new(data: EventData) -> Self {
        Self {
            event: None,
            data,
            id: None,
            private: false,
            retry: None,
        }
    }

    /// Marks the event private (see [`NewEvent::private`]).
    pub fn private(mut self) -> Self {
        self.private = true;
        self
    }

    /// Sends `retry: {ms}` with the event.
    pub fn with_retry(mut self, ms: u64) -> Self {
        self.retry = Some(ms);
        self
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
        assert_eq!(id.as_str().len(), 28, "c_ and 26 base-32 characters");
        assert_ne!(ClientId::random(), ClientId::random());
    }

    #[test]
    fn publisher_ids_are_printable_ascii_and_never_shaped_like_positions() {
        for good in [
            "order-7",
            "a",
            "inv-99.created",
            "x-1-2",
            "ABCDEFGHIJKL-5",
            "~!#$%",
        ] {
            assert_eq!(validate_event_id(good), Ok(()), "{good}");
        }
        for bad in [" x", "x ", "a b", "\u{fc}-1", "a\tb", "\u{7f}"] {
            assert!(
                matches!(validate_event_id(bad), Err(FieldError::NotPrintable { .. })),
                "{bad:?}"
            );
        }
        for reserved in ["1700000000000-0", "0-0", "mfx3k2a0abcd-17"] {
            assert_eq!(
                validate_event_id(reserved),
                Err(FieldError::ReservedShape { field: "id" }),
                "{reserved}"
            );
        }
        assert!(validate_event_id(&"x".repeat(257)).is_err());
    }
}
