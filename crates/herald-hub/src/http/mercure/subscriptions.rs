//! Active subscriptions (`--mercure-subscriptions`): the subscription events and the
//! subscriptions API at `/.well-known/mercure/subscriptions[/{match_type}/{match}[/{subscriber}]]`.
//!
//! Owns the registry of this node's active Mercure subscriptions (one entry per connection,
//! removed with it: bounded by the stream limit), the private `mercure` events published when a
//! subscription starts and ends (topic `/.well-known/mercure/subscriptions/{match_type}/{match}/
//! {subscriber}`, each variable percent-encoded once), and the API's answers. Subscriber ids are
//! random (`urn:uuid:…`), one per connection. Documents follow the current draft and also carry
//! draft-07's `topic`. The API lists this node's subscriptions; in a cluster, the events reach
//! every node. It never publishes other than through [`Hub::publish`].

use super::{token, Mercure};
use crate::{
    http::{error::ApiError, extract::QueryParams},
    ChannelName, EventData, Hub, NewEvent, Target, TopicSelector,
};
use axum::{
    extract::State,
    http::{header, HeaderMap, HeaderValue, StatusCode, Uri},
    response::{IntoResponse, Response},
};
use serde::Serialize;
use std::{collections::HashMap, sync::Mutex};

/// Where subscription topics and the API live.
const SUBSCRIPTIONS_PATH: &str = "/.well-known/mercure/subscriptions";

/// One subscription, as its events and the API describe it.
#[derive(Debug, Clone, Serialize)]
struct Subscription {
    id: String,
    #[serde(rename = "type")]
    kind: &'static str,
    match_type: &'static str,
    #[serde(rename = "match")]
    selector: String,
    /// Draft-07's name of the matcher.
    topic: String,
    subscriber: String,
    active: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload: Option<serde_json::Value>,
}

/// This node's active subscriptions, by subscriber.
#[derive(Debug, Default)]
pub(super) struct Registry(Mutex<HashMap<String, Vec<Subscription>>>);

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<Subscription>>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Ends a connection's subscriptions when dropped (with its stream): unregisters them and
/// publishes their end.
pub(super) struct Tracker {
    hub: Hub,
    mercure: Mercure,
    subscriber: String,
}

impl Drop for Tracker {
    fn drop(&mut self) {
        let Some(shared) = self.mercure.0.as_ref() else {
            return;
        };
        let Some(mut ended) = shared.subscriptions.lock().remove(&self.subscriber) else {
            return;
        };
        for subscription in &mut ended {
            subscription.active = false;
        }
        let hub = self.hub.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { announce(&hub, &ended).await });
        }
    }
}

/// Registers a new connection's subscriptions and publishes their start.
pub(super) async fn open(
    hub: &Hub,
    mercure: &Mercure,
    selectors: &[(&'static str, TopicSelector)],
    grants: Option<&token::Grants>,
) -> Option<Tracker> {
    let shared = mercure.0.as_ref().filter(|s| s.config.subscriptions)?;
    let subscriber = random_urn();
    let subscriptions: Vec<Subscription> = selectors
        .iter()
        .map(|(match_type, selector)| Subscription {
            id: format!(
                "{SUBSCRIPTIONS_PATH}/{match_type}/{}/{}",
                encode(selector.as_str()),
                encode(&subscriber)
            ),
            kind: "subscription",
            match_type,
            selector: selector.as_str().to_owned(),
            topic: selector.as_str().to_owned(),
            subscriber: subscriber.clone(),
            active: true,
            payload: grants.and_then(|g| g.payload_for(selector.as_str())),
        })
        .collect();
    shared
        .subscriptions
        .lock()
        .insert(subscriber.clone(), subscriptions.clone());
    announce(hub, &subscriptions).await;
    Some(Tracker {
        hub: hub.clone(),
        mercure: mercure.clone(),
        subscriber,
    })
}

/// Publishes one private `mercure` event per subscription.
async fn announce(hub: &Hub, subscriptions: &[Subscription]) {
    for subscription in subscriptions {
        let Ok(topic) = ChannelName::topic(&subscription.id) else {
            continue;
        };
        let json = serde_json::to_string(subscription).expect("a subscription serializes");
        let event = NewEvent::new(EventData::text(json))
            .named("mercure")
            .private();
        if let Err(err) = hub.publish(Target::Channels(vec![topic]), event).await {
            tracing::warn!(error = %err, "a subscription event was not published");
        }
    }
}

/// `GET /.well-known/mercure/subscriptions[/{match_type}/{match}[/{subscriber}]]`.
pub(in crate::http) async fn list(
    State(mercure): State<Mercure>,
    State(hub): State<Hub>,
    uri: Uri,
    query: QueryParams,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let config = mercure.config()?;
    let shared = mercure.0.as_ref().expect("config() checked Mercure is on");
    if !config.subscriptions {
        return Err(ApiError::route_not_found());
    }
    let path = uri.path();
    let (token, _) = token::find(&headers, Some(&query))
        .ok_or_else(|| ApiError::unauthorized("the subscriptions API needs a token"))?;
    let key = config
        .subscriber_key
        .as_ref()
        .or(config.publisher_key.as_ref())
        .ok_or_else(|| ApiError::unauthorized("this hub verifies no subscriber tokens"))?;
    if !key.verify(&token)?.may_subscribe(path) {
        return Err(ApiError::forbidden(
            "the token does not grant subscribing to this URL",
            Vec::new(),
        ));
    }
    let rest = path
        .strip_prefix(SUBSCRIPTIONS_PATH)
        .ok_or_else(ApiError::route_not_found)?;
    let parts: Vec<String> = rest
        .split('/')
        .skip(1)
        .filter(|s| !s.is_empty())
        .map(decode)
        .collect();
    let last_event_id = hub.with_history(crate::history::History::start_id);
    let all: Vec<Subscription> = shared
        .subscriptions
        .lock()
        .values()
        .flatten()
        .cloned()
        .collect();
    let body = match parts.as_slice() {
        [] => collection(path, all),
        [match_type, selector] => collection(
            path,
            all.into_iter()
                .filter(|s| s.match_type == match_type && &s.selector == selector)
                .collect(),
        ),
        [match_type, selector, subscriber] => serde_json::to_value(
            all.into_iter()
                .find(|s| {
                    s.match_type == match_type
                        && &s.selector == selector
                        && &s.subscriber == subscriber
                })
                .ok_or_else(|| {
                    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such subscription")
                })?,
        )
        .expect("a subscription serializes"),
        _ => return Err(ApiError::route_not_found()),
    };
    let link = format!(
        "</.well-known/mercure>; rel=\"mercure\"; last-event-id=\"{last_event_id}\"; \
         type=\"mercure\"; content-type=\"application/json\""
    );
    let mut response = axum::Json(body).into_response();
    if let Ok(link) = HeaderValue::from_str(&link) {
        response.headers_mut().insert(header::LINK, link);
    }
    Ok(response)
}

fn collection(id: &str, subscriptions: Vec<Subscription>) -> serde_json::Value {
    serde_json::json!({
        "id": id,
        "type": "subscriptions",
        "subscriptions": subscriptions,
    })
}

/// A fresh `urn:uuid:` (version 4) from the operating system's generator.
fn random_urn() -> String {
    let mut bytes = [0u8; 16];
    getrandom::getrandom(&mut bytes).expect("the operating system provides random bytes");
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "urn:uuid:{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// Percent-encodes everything but unreserved characters, once.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn decode(segment: &str) -> String {
    form_urlencoded::parse(format!("x={}", segment.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, value)| value.into_owned())
        .unwrap_or_default()
}
