//! Topic-selecting connections (Mercure subscribers) in the engine: what an event costs to
//! route when many connections hold templates and patterns, and that each connection gets an
//! event once whatever number of its selectors match.

use futures_util::StreamExt;
use herald_hub::{
    ChannelName, ClientOptions, ClientStream, EventData, Hub, HubConfig, NewEvent, Target,
    TopicFilter, TopicSelector,
};
use std::time::{Duration, Instant};

fn topic(name: &str) -> ChannelName {
    ChannelName::topic(name).expect("a valid topic")
}

fn open(hub: &Hub, selectors: Vec<TopicSelector>) -> ClientStream {
    let (stream, _) = hub
        .add_topic_client(
            ClientOptions::default(),
            TopicFilter::new(selectors, Vec::new()),
        )
        .expect("the hub is running");
    stream
}

/// Frames already queued on `stream` (after its opening), without waiting for more.
async fn queued(stream: &mut ClientStream) -> usize {
    let mut frames = 0;
    while let Ok(Some(chunk)) = tokio::time::timeout(Duration::from_millis(50), stream.next()).await
    {
        frames += String::from_utf8_lossy(&chunk).matches("\ndata: ").count();
    }
    frames
}

#[tokio::test]
async fn an_event_reaches_a_connection_once_however_many_selectors_match() {
    let hub = Hub::new(HubConfig::default());
    let mut stream = open(
        &hub,
        vec![
            TopicSelector::exact("https://example.com/books/1").expect("valid"),
            TopicSelector::uri_template("https://example.com/books/{id}").expect("valid"),
            TopicSelector::url_pattern("https://example.com/*").expect("valid"),
            TopicSelector::exact("*").expect("valid"),
        ],
    );
    let topics = vec![topic("https://example.com/books/1"), topic("urn:other")];
    hub.publish(
        Target::Channels(topics),
        NewEvent::new(EventData::text("x")),
    )
    .await
    .expect("published");
    assert_eq!(queued(&mut stream).await, 1);
}

/// Prints what one event costs to route with many pattern subscribers (not asserted: the
/// machine's load varies). Run with `--nocapture` to read it.
#[tokio::test]
async fn routing_cost_with_many_pattern_subscribers_is_printed() {
    const SUBSCRIBERS: usize = 10_000;
    const EVENTS: usize = 200;
    let hub = Hub::new(HubConfig {
        queue_capacity: EVENTS + 8,
        ..HubConfig::default()
    });
    let mut streams = Vec::with_capacity(SUBSCRIBERS);
    for n in 0..SUBSCRIBERS {
        let selector = match n % 2 {
            0 => TopicSelector::uri_template(&format!("https://example.com/users/{n}/{{item}}")),
            _ => TopicSelector::url_pattern(&format!("https://example.com/teams/{n}/:item")),
        };
        streams.push(open(&hub, vec![selector.expect("valid")]));
    }
    // One subscriber of every 100 matches each event.
    let started = Instant::now();
    for n in 0..EVENTS {
        let to = format!(
            "https://example.com/users/{}/orders",
            (n * 100) % SUBSCRIBERS
        );
        hub.publish(
            Target::Channels(vec![topic(&to)]),
            NewEvent::new(EventData::text("x")),
        )
        .await
        .expect("published");
    }
    let per_event = started.elapsed() / EVENTS as u32;
    eprintln!(
        "routing: {SUBSCRIBERS} pattern subscribers, {per_event:?} per event \
         ({:.0} ns per selector checked)",
        per_event.as_nanos() as f64 / SUBSCRIBERS as f64
    );
    let mut exact = Vec::new();
    for n in 0..SUBSCRIBERS {
        exact.push(open(
            &hub,
            vec![TopicSelector::exact(&format!("https://example.com/items/{n}")).expect("valid")],
        ));
    }
    let started = Instant::now();
    for n in 0..EVENTS {
        let to = format!("https://example.com/items/{n}");
        hub.publish(
            Target::Channels(vec![topic(&to)]),
            NewEvent::new(EventData::text("x")),
        )
        .await
        .expect("published");
    }
    eprintln!(
        "routing: {SUBSCRIBERS} exact subscribers (and the pattern ones), {:?} per event",
        started.elapsed() / EVENTS as u32
    );
    drop(streams);
    drop(exact);
}
