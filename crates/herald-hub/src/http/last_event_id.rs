//! Where a stream resumes: the one reading of `Last-Event-ID` for every stream route.
//!
//! Owns the rule. The `Last-Event-ID` header, which a browser's `EventSource` sends when it
//! reconnects, wins; without it, the `lastEventId` query parameter (for clients that cannot set
//! headers) gives the initial position. An empty value is no id. A value no event id can be (not
//! UTF-8, longer than [`crate::event::EVENT_ID_LEN_MAX`] bytes, holding CR, LF or NUL) is an
//! unknown id, and so is any other id history does not hold (publisher ids are printable ASCII,
//! hub ids have the position shapes publishers may not use): the stream
//! opens from now with `resumed: false`, exactly as for an id that has left history. It never
//! refuses a request, because an `EventSource` answered with an error stops reconnecting for good;
//! the size of the header itself is bounded where request heads are read. It never looks an id up:
//! the hub does.

use axum::{
    extract::FromRequestParts,
    http::{request::Parts, HeaderMap},
};
use std::convert::Infallible;

/// The header `EventSource` sends on reconnect.
const LAST_EVENT_ID_HEADER: &str = "last-event-id";
/// The query parameter that gives a stream's first position.
const LAST_EVENT_ID_QUERY_PARAM: &str = "lastEventId";

/// The id of the last event a client saw, which a browser's `EventSource` sends as
/// `Last-Event-ID` when it reconnects: pass it as [`crate::ClientOptions::last_event_id`] so the
/// stream resumes after it. The query parameter `lastEventId` gives it when the header is absent.
///
/// `None` when neither is present or the value is empty, and also when the value cannot be an
/// event id (not UTF-8, too long, or holding CR, LF or NUL): such an id names no event, so the
/// stream starts from now and says `resumed: false`, as it does for any id not in history.
/// Never rejects a request: an `EventSource` answered with an error would stop reconnecting.
///
/// # Examples
///
/// ```
/// use axum::extract::State;
/// use herald_hub::{http::LastEventId, ChannelName, ClientOptions, ClientStream, ConnectError, Hub};
///
/// async fn stream(
///     State(hub): State<Hub>,
///     LastEventId(last_event_id): LastEventId,
/// ) -> Result<ClientStream, ConnectError> {
///     hub.add_client(ClientOptions {
///         channels: vec![ChannelName::new("news").expect("a valid channel name")],
///         last_event_id,
///         ..ClientOptions::default()
///     })
/// }
/// # let _: axum::Router<Hub> = axum::Router::new().route("/news", axum::routing::get(stream));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LastEventId(pub Option<String>);

impl LastEventId {
    /// The position a request asks for, from its headers and its query string.
    pub(crate) fn from_request(headers: &HeaderMap, query: Option<&str>) -> Self {
        let raw = match headers.get(LAST_EVENT_ID_HEADER) {
            Some(value) => Some(String::from_utf8(value.as_bytes().to_vec()).ok()),
            None => query
                .and_then(|query| {
                    form_urlencoded::parse(query.as_bytes())
                        .filter(|(name, _)| name == LAST_EVENT_ID_QUERY_PARAM)
                        .last()
                })
                .map(|(_, value)| Some(value.into_owned())),
        };
        // `Some(None)`: present but not text, so no event's id.
        let id = raw
            .flatten()
            .filter(|id| crate::event::is_possible_event_id(id));
        Self(id)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for LastEventId {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self::from_request(&parts.headers, parts.uri.query()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn read(header: Option<&[u8]>, query: Option<&str>) -> Option<String> {
        let mut headers = HeaderMap::new();
        if let Some(bytes) = header {
            let value = HeaderValue::from_bytes(bytes).expect("a valid header value");
            headers.insert(LAST_EVENT_ID_HEADER, value);
        }
        LastEventId::from_request(&headers, query).0
    }

    #[test]
    fn the_header_wins_over_the_query_and_the_last_query_value_counts() {
        assert_eq!(
            read(Some(b"e-7"), Some("lastEventId=e-1")),
            Some("e-7".into())
        );
        assert_eq!(
            read(None, Some("lastEventId=e-1&lastEventId=e-2")),
            Some("e-2".into())
        );
        assert_eq!(read(None, Some("channel=a")), None);
        assert_eq!(read(None, None), None);
    }

    #[test]
    fn an_empty_id_is_no_id() {
        assert_eq!(read(Some(b""), Some("lastEventId=e-1")), None);
        assert_eq!(read(None, Some("lastEventId=")), None);
    }

    #[test]
    fn any_text_an_event_id_may_hold_passes_through() {
        let accented = "commande-é-7";
        assert_eq!(read(Some(accented.as_bytes()), None), Some(accented.into()));
        assert_eq!(read(Some(b"a\tb"), None), Some("a\tb".into()));
        let longest = "x".repeat(crate::event::EVENT_ID_LEN_MAX);
        assert_eq!(read(Some(longest.as_bytes()), None), Some(longest));
    }

    #[test]
    fn an_id_no_event_can_have_is_unknown_never_an_error() {
        // Not UTF-8 (obs-text bytes).
        assert_eq!(read(Some(&[0xE9, 0x80]), None), None);
        let too_long = "x".repeat(crate::event::EVENT_ID_LEN_MAX + 1);
        assert_eq!(read(Some(too_long.as_bytes()), None), None);
        assert_eq!(read(None, Some("lastEventId=a%00b")), None);
        assert_eq!(read(None, Some("lastEventId=a%0Ab")), None);
        // A header present but unusable still wins over the query's initial position.
        assert_eq!(read(Some(&[0xFF]), Some("lastEventId=e-1")), None);
    }
}
