//! `POST /.well-known/mercure`: a Mercure publisher's update.
//!
//! Owns reading an update (form-encoded `topic` (repeatable; the first is canonical), `data`,
//! `private`, `id`, `type`, `retry`; other fields are ignored), checking it against the protocol's
//! rules and the token's publish grants (every topic must be granted), and the answer: `200
//! text/plain` with the event's id (the publisher's `id` when it gave one). A token from the
//! cookie publishes only from an origin of [`super::MercureConfig::publish_origins`]. The update
//! goes through [`crate::Hub::publish`] like any other event. It never fans out itself.

use super::{token, Mercure};
use crate::{
    http::{config::HttpLimits, error::ApiError},
    validate_event_id, validate_event_name, ChannelName, EventData, Hub, NewEvent, Target,
};
use axum::{
    body::Bytes,
    extract::State,
    http::{header, HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};

/// The path every hub-generated topic lives under; publishers may not use it.
const RESERVED_PATH: &str = "/.well-known/mercure";

/// One update as a publisher sent it.
#[derive(Debug, Default)]
struct Update {
    topics: Vec<String>,
    data: Option<String>,
    is_private: bool,
    id: Option<String>,
    event: Option<String>,
    retry: Option<String>,
}

impl Update {
    fn parse(body: &[u8]) -> Self {
        let mut update = Self::default();
        for (name, value) in form_urlencoded::parse(body) {
            let value = value.into_owned();
            match &*name {
                "topic" => update.topics.push(value),
                "data" => update.data = Some(value),
                "private" => update.is_private = true,
                "id" => update.id = Some(value),
                "type" => update.event = Some(value),
                "retry" => update.retry = Some(value),
                _ => {}
            }
        }
        update
    }
}

pub(in crate::http) async fn publish(
    State(mercure): State<Mercure>,
    State(hub): State<Hub>,
    State(limits): State<HttpLimits>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let config = mercure.config()?;
    let (token, source) = token::find(&headers, None)
        .ok_or_else(|| ApiError::unauthorized("a Mercure publisher needs a token"))?;
    if source == token::Source::Cookie && !is_publish_origin(&config.publish_origins, &headers) {
        return Err(ApiError::forbidden(
            "a publish authorized by cookie needs an Origin listed in --mercure-publish-origins",
            Vec::new(),
        ));
    }
    let key = config
        .publisher_key
        .as_ref()
        .ok_or_else(|| ApiError::unauthorized("this hub verifies no publisher tokens"))?;
    let grants = key.verify(&token)?;
    let update = Update::parse(&body);
    let (topics, event) = validate(update, &limits)?;
    if !grants.may_publish(&topics) {
        return Err(ApiError::forbidden(
            "the token does not grant publishing to every topic of the update",
            topics,
        ));
    }
    let published = hub.publish(Target::Channels(topics), event).await?;
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        published.id,
    )
        .into_response())
}

/// Whether the request's `Origin` is one cookie publishes may come from.
fn is_publish_origin(origins: &[String], headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) else {
        return false;
    };
    origins
        .iter()
        .any(|allowed| allowed == "*" || allowed.trim_end_matches('/').eq_ignore_ascii_case(origin))
}

/// The update's channels and event, or the first rule it breaks (400; 413 for a large `data`).
fn validate(update: Update, limits: &HttpLimits) -> Result<(Vec<ChannelName>, NewEvent), ApiError> {
    let invalid =
        |message: String| ApiError::new(StatusCode::BAD_REQUEST, "invalid_update", message);
    if update.topics.is_empty() {
        return Err(invalid("an update names at least one `topic`".into()));
    }
    let mut topics = Vec::with_capacity(update.topics.len());
    for topic in &update.topics {
        if topic == "*" {
            return Err(invalid(
                "`*` is not a topic (it selects every topic)".into(),
            ));
        }
        if is_reserved(topic) {
            return Err(invalid(format!(
                "topic {topic:?} is in {RESERVED_PATH}, which only the hub publishes to"
            )));
        }
        topics.push(
            ChannelName::topic(topic).map_err(|err| invalid(format!("topic {topic:?}: {err}")))?,
        );
    }
    if let Some(id) = &update.id {
        if id.starts_with('#') || id == "earliest" {
            return Err(invalid(format!("id {id:?} is reserved for the hub")));
        }
        validate_event_id(id)?;
    }
    if let Some(event) = &update.event {
        if event == "mercure" {
            return Err(invalid("type `mercure` is reserved for the hub".into()));
        }
        validate_event_name(event)?;
    }
    let retry = match &update.retry {
        Some(retry) if !retry.is_empty() && retry.bytes().all(|b| b.is_ascii_digit()) => Some(
            retry
                .parse()
                .map_err(|_| invalid("`retry` is too large".into()))?,
        ),
        Some(_) => return Err(invalid("`retry` is ASCII digits".into())),
        None => None,
    };
    let data = update.data.unwrap_or_default();
    if data.len() > limits.event_bytes_max {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "event_too_large",
            format!(
                "the update's data is {} bytes; the limit is {}",
                data.len(),
                limits.event_bytes_max
            ),
        ));
    }
    let event = NewEvent {
        event: update.event,
        data: EventData::text(data),
        id: update.id,
        private: update.is_private,
        retry,
    };
    Ok((topics, event))
}

/// Whether `topic`'s path is the hub's reserved namespace (`/.well-known/mercure` and below),
/// with dot segments removed and percent-encoded unreserved characters decoded.
fn is_reserved(topic: &str) -> bool {
    let after_scheme = match topic.find("://") {
        Some(at) => &topic[at + 3..],
        None if topic.starts_with("//") => &topic[2..],
        None => {
            if !topic.starts_with('/') {
                return false;
            }
            topic
        }
    };
    let path_start = if topic.starts_with('/') && !topic.starts_with("//") {
        0
    } else {
        match after_scheme.find('/') {
            Some(at) => at,
            None => return false,
        }
    };
    let path = &after_scheme[path_start..];
    let path = path.split(['?', '#']).next().unwrap_or_default();
    let decoded = decode_unreserved(path);
    let mut segments: Vec<&str> = Vec::new();
    for segment in decoded.split('/').skip(1) {
        match segment {
            "." => {}
            ".." => {
                segments.pop();
            }
            other => segments.push(other),
        }
    }
    let normalized = format!("/{}", segments.join("/"));
    normalized == RESERVED_PATH || normalized.starts_with(&format!("{RESERVED_PATH}/"))
}

/// `path` with percent-encoded unreserved characters decoded (others kept encoded).
fn decode_unreserved(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && bytes[i + 1].is_ascii_hexdigit()
            && bytes[i + 2].is_ascii_hexdigit()
        {
            let hex = &path[i + 1..i + 3];
            if let Ok(byte) = u8::from_str_radix(hex, 16) {
                let c = char::from(byte);
                if c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~') {
                    out.push(c);
                    i += 3;
                    continue;
                }
            }
        }
        let c = path[i..].chars().next().expect("inside the string");
        out.push(c);
        i += c.len_utf8();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reserved_namespace_is_found_however_it_is_spelled() {
        for reserved in [
            "/.well-known/mercure",
            "/.well-known/mercure/subscriptions/a/b",
            "https://hub.example.com/.well-known/mercure/subscriptions/x",
            "https://hub.example.com/.well-known/%6Dercure/x",
            "https://hub.example.com/a/../.well-known/mercure",
        ] {
            assert!(is_reserved(reserved), "{reserved}");
        }
        for free in [
            "https://example.com/books/1",
            "/.well-known/mercurex",
            "orders",
            "urn:uuid:1",
        ] {
            assert!(!is_reserved(free), "{free}");
        }
    }
}
