//! The hub as a library: the convenience publishing calls, hooks, and the axum response of a
//! stream, without a server.

use axum::{
    http::{Request, StatusCode},
    response::IntoResponse,
    routing::get,
    Router,
};
use futures_util::StreamExt;
use herald_client::{Event, Item, Parser};
use herald_hub::{
    http::LastEventId, hub::PublishError, ChannelName, ClientInfo, ClientOptions, ClientStream,
    ConnectError, Hub, HubConfig, SendError,
};
use serde_json::json;
use std::{
    sync::{Arc, Mutex},
    time::Duration,
};
use tower::ServiceExt;

fn channels(names: &[&str]) -> ClientOptions {
    ClientOptions {
        channels: names
            .iter()
            .map(|name| ChannelName::new(name).expect("a valid channel name"))
            .collect(),
        ..ClientOptions::default()
    }
}

/// Reads `stream` until it has produced `count` events (the opening `connected` included).
async fn read_events(stream: &mut ClientStream, count: usize) -> Vec<Event> {
    let mut parser = Parser::new();
    let mut events = Vec::new();
    while events.len() < count {
        let chunk = tokio::time::timeout(Duration::from_secs(5), stream.next())
            .await
            .expect("the events are queued")
            .expect("the stream is open");
        let mut items = Vec::new();
        parser.feed(&chunk, &mut items).expect("within limits");
        events.extend(items.into_iter().filter_map(|item| match item {
            Item::Event(event) => Some(event),
            _ => None,
        }));
    }
    events
}

#[tokio::test]
async fn broadcast_sends_a_named_json_event_and_plain_text_to_a_channel() {
    let hub = Hub::new(HubConfig::default());
    let mut stream = hub.add_client(channels(&["orders"])).expect("connects");
    let published = hub
        .broadcast("orders", "created", &json!({"id": 7}), None)
        .await
        .expect("a valid event");
    assert_eq!(published.recipients, 1);
    hub.broadcast("orders", None, "line one\nline two", "chosen-id")
        .await
        .expect("a valid event");
    hub.broadcast("elsewhere", "ignored", &1, None)
        .await
        .expect("a valid event");
    hub.broadcast_all("notice", &json!(["to", "everyone"]), None)
        .await
        .expect("a valid event");

    let events = read_events(&mut stream, 4).await;
    let seen: Vec<(&str, &str)> = events[1..]
        .iter()
        .map(|e| (e.event.as_str(), e.data.as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            ("created", r#"{"id":7}"#),
            ("message", "line one\nline two"),
            ("notice", r#"["to","everyone"]"#),
        ]
    );
    assert_eq!(events[1].id, published.id);
    assert_eq!(events[2].id, "chosen-id");
}

#[tokio::test]
async fn broadcast_refuses_a_bad_channel_event_name_or_payload_with_a_typed_error() {
    let hub = Hub::new(HubConfig::default());
    assert!(matches!(
        hub.broadcast("two words", None, "x", None).await,
        Err(SendError::InvalidChannel(_))
    ));
    assert!(matches!(
        hub.broadcast("news", "bad\nname", "x", None).await,
        Err(SendError::Publish(PublishError::InvalidField(_)))
    ));
    let not_json = std::collections::HashMap::from([((1, 2), "a map with tuple keys")]);
    assert!(matches!(
        hub.broadcast_all(None, &not_json, None).await,
        Err(SendError::InvalidData(_))
    ));
    assert_eq!(hub.stats().events_published, 0, "nothing was published");
}

#[tokio::test]
async fn send_to_is_true_for_a_connected_or_recently_departed_client_and_false_otherwise() {
    let hub = Hub::new(HubConfig::default());
    let mut stream = hub.add_client(channels(&[])).expect("connects");
    let id = stream.client_id().clone();
    assert!(hub.send_to(&id, "welcome", &json!({"n": 1}), None).await);
    let events = read_events(&mut stream, 2).await;
    assert_eq!(
        (events[1].event.as_str(), events[1].data.as_str()),
        ("welcome", r#"{"n":1}"#)
    );
    assert!(
        !hub.send_to(&id, "bad\nname", "x", None).await,
        "an invalid event"
    );

    drop(stream);
    assert!(
        hub.send_to(&id, "later", "waits in history", None).await,
        "a client that just left may come back for it"
    );
    let stranger = herald_hub::ClientId::new("never-seen").expect("a valid id");
    assert!(!hub.send_to(&stranger, "x", "y", None).await);
}

#[tokio::test]
async fn hooks_see_each_connection_open_and_end_exactly_once_whatever_ends_it() {
    let hub = Hub::new(HubConfig::default());
    let log = Arc::new(Mutex::new(Vec::<String>::new()));
    let connects = log.clone();
    hub.on_connect(move |client: &ClientInfo| {
        let channels: Vec<&str> = client.channels.iter().map(ChannelName::as_str).collect();
        let line = format!(
            "+{} {}",
            client.user.as_deref().unwrap_or("-"),
            channels.join(",")
        );
        connects.lock().expect("not poisoned").push(line);
    });
    let disconnects = log.clone();
    hub.on_disconnect(move |client: &ClientInfo| {
        let line = format!("-{}", client.user.as_deref().unwrap_or("-"));
        disconnects.lock().expect("not poisoned").push(line);
    });
    let take = || std::mem::take(&mut *log.lock().expect("not poisoned"));

    let ann = hub
        .add_client(ClientOptions {
            user: Some("ann".into()),
            ..channels(&["b", "a"])
        })
        .expect("connects");
    assert_eq!(take(), ["+ann a,b"]);
    drop(ann);
    assert_eq!(take(), ["-ann"], "the client went away");

    let bob = hub
        .add_client(ClientOptions {
            user: Some("bob".into()),
            ..channels(&["a"])
        })
        .expect("connects");
    let bob_id = bob.client_id().clone();
    assert!(hub.remove_client(&bob_id));
    assert!(
        take().iter().all(|line| line.starts_with('+')),
        "not gone until dropped"
    );
    drop(bob);
    assert_eq!(take(), ["-bob"], "removed, then its stream dropped");

    let mut job = hub.add_client(channels(&["job:1"])).expect("connects");
    hub.close_channel(ChannelName::new("job:1").expect("valid"), None)
        .await
        .expect("closes");
    while job.next().await.is_some() {}
    drop(job);
    assert_eq!(take(), ["+- job:1", "--"], "its only channel closed");
}

#[tokio::test]
async fn a_connect_hook_may_spawn_a_task_that_sends_the_first_event() {
    let hub = Hub::new(HubConfig::default());
    let handle = hub.clone();
    hub.on_connect(move |client| {
        // Hooks are synchronous: publishing from one happens on a task it spawns.
        let (handle, id, clients) = (handle.clone(), client.id.clone(), handle.clients().len());
        tokio::spawn(async move {
            assert!(
                handle
                    .send_to(&id, "hello", &json!({ "clients": clients }), None)
                    .await
            );
        });
    });
    let mut stream = hub.add_client(channels(&["news"])).expect("connects");
    let events = read_events(&mut stream, 2).await;
    assert_eq!(
        (events[1].event.as_str(), events[1].data.as_str()),
        ("hello", r#"{"clients":1}"#)
    );
}

#[tokio::test]
async fn a_client_stream_is_an_sse_response_and_a_refused_one_is_204_or_503() {
    let hub = Hub::new(HubConfig::default());
    let response = hub
        .add_client(channels(&["news"]))
        .expect("connects")
        .into_response();
    assert_eq!(response.status(), StatusCode::OK);
    let headers = response.headers();
    assert_eq!(headers["content-type"], "text/event-stream");
    assert_eq!(headers["cache-control"], "no-cache");
    assert_eq!(headers["x-accel-buffering"], "no");

    hub.close_channel(ChannelName::new("done").expect("valid"), None)
        .await
        .expect("closes");
    let refused = hub.add_client(channels(&["done"])).expect_err("closed");
    assert!(matches!(refused, ConnectError::ChannelClosed(_)));
    assert_eq!(refused.into_response().status(), StatusCode::NO_CONTENT);

    hub.shutdown();
    let refused = hub
        .add_client(channels(&["news"]))
        .expect_err("shutting down");
    assert_eq!(
        refused.into_response().status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
}

#[tokio::test]
async fn the_last_event_id_extractor_reads_the_header_and_treats_empty_as_none() {
    let app = Router::new().route(
        "/",
        get(|LastEventId(id): LastEventId| async move { format!("{id:?}") }),
    );
    let cases = [
        (Some("abc-7"), StatusCode::OK, r#"Some("abc-7")"#),
        (Some(""), StatusCode::OK, "None"),
        (None, StatusCode::OK, "None"),
    ];
    for (header, status, body) in cases {
        let mut request = Request::get("/");
        if let Some(value) = header {
            request = request.header("last-event-id", value);
        }
        let response = app
            .clone()
            .oneshot(request.body(axum::body::Body::empty()).expect("a request"))
            .await
            .expect("infallible");
        assert_eq!(response.status(), status);
        let bytes = axum::body::to_bytes(response.into_body(), 1024)
            .await
            .expect("a short body");
        assert_eq!(bytes, body.as_bytes());
    }
    let not_ascii = Request::get("/")
        .header(
            "last-event-id",
            axum::http::HeaderValue::from_bytes(&[0xE9]).expect("obs-text is a valid value"),
        )
        .body(axum::body::Body::empty())
        .expect("a request");
    let response = app.oneshot(not_ascii).await.expect("infallible");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
}
