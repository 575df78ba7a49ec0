//! `GET /.well-known/mercure`: a Mercure subscriber's event stream.
//!
//! Owns reading a subscription: its topic selectors (`topic=`: exact or URI template, draft-07;
//! `match=`/`match_exact=`: exact and `match_urlpattern=`: URL pattern, current draft; any other
//! `match…` name is refused), its resume point (the `Last-Event-ID` header, else the
//! `last_event_id`, `lastEventID` or `Last-Event-ID` query parameter; `earliest` is all of
//! history), its token (which private updates it may read, and when the stream ends: at the
//! token's `exp`). The answer carries `Last-Event-ID` and `Mercure-Last-Event-ID`: the id the
//! replay starts after, or `earliest`. It never reads a connection's queue.

use super::{subscriptions, token, Mercure};
use crate::{
    http::{
        admission::Admission,
        auth::AuthConfig,
        config::HttpLimits,
        error::ApiError,
        extract::{PeerAddr, QueryParams},
        sse::sse_response,
    },
    ChannelName, ClientOptions, Hub, TopicFilter, TopicSelector,
};
use axum::{
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};
use futures_util::StreamExt;
use std::{
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

/// Query parameters that name a resume point, in order of precedence.
const LAST_EVENT_ID_PARAMS: [&str; 3] = ["last_event_id", "lastEventID", "Last-Event-ID"];

// An axum handler: one argument per extractor.
#[allow(clippy::too_many_arguments)]
pub(in crate::http) async fn subscribe(
    State(mercure): State<Mercure>,
    State(hub): State<Hub>,
    State(admission): State<Arc<Admission>>,
    State(limits): State<HttpLimits>,
    State(auth): State<AuthConfig>,
    query: QueryParams,
    headers: HeaderMap,
    peer: PeerAddr,
) -> Result<Response, ApiError> {
    let config = mercure.config()?;
    let selectors = selectors(&query)?;
    if selectors.len() > limits.channels_per_connection_max {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "too_many_channels",
            format!(
                "a subscription may name at most {} topic selectors",
                limits.channels_per_connection_max
            ),
        ));
    }
    let grants = match token::find(&headers, Some(&query)) {
        Some((token, _)) => {
            let key = config
                .subscriber_key
                .as_ref()
                .or(config.publisher_key.as_ref())
                .ok_or_else(|| ApiError::unauthorized("this hub verifies no subscriber tokens"))?;
            Some(key.verify(&token)?)
        }
        None if config.anonymous => None,
        None => {
            return Err(ApiError::unauthorized(
                "a Mercure subscriber needs a token (anonymous subscribers are off)",
            ))
        }
    };
    let last_event_id = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| {
            LAST_EVENT_ID_PARAMS
                .iter()
                .find_map(|name| query.last(name).map(str::to_owned))
        })
        .filter(|id| !id.is_empty() && crate::event::is_possible_event_id(id));
    let expires_unix_s = grants.as_ref().and_then(|g| g.expires_unix_s);
    let slot = admission.admit(peer.0, &headers)?;
    let tracker = subscriptions::open(&hub, &mercure, &selectors, grants.as_ref()).await;
    let private_grants = grants.map(|g| g.subscribe).unwrap_or_default();
    let selectors = selectors.into_iter().map(|(_, s)| s).collect();
    let options = ClientOptions {
        last_event_id,
        remote_addr: peer.0,
        ..ClientOptions::default()
    };
    // A topic that is also a Herald channel kept to some callers (a token's claims, a user's own
    // channel, the application's say) is read only with a subscribe grant, as a private update.
    let namespaces = hub.namespaces().clone();
    let filter = TopicFilter::new(selectors, private_grants).with_open_topics(move |topic| {
        ChannelName::new(topic.as_str()).map_or(true, |channel| {
            auth.is_open_to_anyone(&channel, &namespaces)
        })
    });
    let (stream, replay_from) = match hub.add_topic_client(options, filter) {
        Ok(opened) => opened,
        Err(refused) => return Ok(refused.into_response()),
    };
    let end = stream.end_signal();
    // The stream ends when the token expires (a timer only for a token with `exp`); its slot
    // and its subscriptions are held by the body.
    let deadline = expires_unix_s.map(|exp| tokio::time::Instant::now() + until(exp));
    let expiry = async move {
        match deadline {
            Some(deadline) => tokio::time::sleep_until(deadline).await,
            None => std::future::pending().await,
        }
    };
    let stream = stream.take_until(expiry).map(move |chunk| {
        let _held = (&slot, &tracker);
        chunk
    });
    let mut response = sse_response(stream, Some(end));
    if let Ok(value) = HeaderValue::from_str(&replay_from) {
        let headers = response.headers_mut();
        headers.insert("last-event-id", value.clone());
        headers.insert("mercure-last-event-id", value);
    }
    Ok(response)
}

/// Time left before `exp` (seconds since the epoch), at most a year (tokio's timer bound).
fn until(exp: u64) -> Duration {
    const YEAR: Duration = Duration::from_secs(365 * 24 * 3600);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    Duration::from_secs(exp.saturating_sub(now)).min(YEAR)
}

/// Every topic selector of the query, compiled, with its matcher type (draft-07's templates are
/// `uritemplate`).
fn selectors(query: &QueryParams) -> Result<Vec<(&'static str, TopicSelector)>, ApiError> {
    let mut selectors = Vec::new();
    for (name, value) in &query.0 {
        let selector = match name.as_str() {
            "topic" => TopicSelector::uri_template(value).map(|s| {
                let kind = if s.as_str() == value && !value.contains('{') {
                    "exact"
                } else {
                    "uritemplate"
                };
                (kind, s)
            }),
            "match" | "match_exact" => TopicSelector::exact(value).map(|s| ("exact", s)),
            "match_urlpattern" => TopicSelector::url_pattern(value).map(|s| ("urlpattern", s)),
            other if other.to_ascii_lowercase().starts_with("match") => {
                return Err(ApiError::invalid_query(format!(
                    "{other:?} is not a matcher type this hub supports (exact, urlpattern)"
                )))
            }
            _ => continue,
        }
        .map_err(|err| ApiError::invalid_query(format!("{name}={value:?}: {err}")))?;
        if !selectors.contains(&selector) {
            selectors.push(selector);
        }
    }
    if selectors.is_empty() {
        return Err(ApiError::invalid_query(
            "a subscription names at least one topic (`topic=`, `match=` or `match_urlpattern=`)",
        ));
    }
    Ok(selectors)
}
