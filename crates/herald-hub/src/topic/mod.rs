//! Topic selectors: which topics (channels) a connection hears beyond the channels it names.
//!
//! Owns the selector kinds Mercure subscribers and tokens use (exact topics, `*`, RFC 6570 URI
//! templates, URL patterns), compiled once when a connection opens, and [`TopicFilter`]: a
//! connection's selectors with the grants that let it read private updates. Exact selectors are
//! plain channel subscriptions (indexed by `fanout`, as Herald's own); the others are checked per
//! event, on the channels of that event. It never registers a connection (`fanout` does) and
//! never reads a token (the HTTP layer does).

mod matcher;
mod pattern;
mod template;

use crate::channel::ChannelName;
use matcher::Budget;
use std::fmt;

/// Why a selector was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    /// The selector is empty or not a valid topic.
    #[error("selector is not a valid topic: {0}")]
    Topic(#[from] crate::ChannelNameError),
    /// The selector's syntax is broken.
    #[error("selector is invalid: {0}")]
    Invalid(&'static str),
    /// The selector uses syntax this hub does not implement.
    #[error("selector uses {0}, which this hub does not support")]
    Unsupported(&'static str),
    /// The selector holds more variables than the bound allows.
    #[error("selector holds more than 16 variables")]
    TooComplex,
}

/// One compiled topic selector.
#[derive(Clone, PartialEq, Eq)]
pub struct TopicSelector {
    kind: Kind,
    source: Box<str>,
}

#[derive(Clone, PartialEq, Eq)]
enum Kind {
    /// `*`: every topic.
    Any,
    /// One topic, byte for byte.
    Exact(ChannelName),
    /// A template or a pattern, compiled.
    Compiled(Vec<matcher::Part>),
}

impl TopicSelector {
    fn new(source: &str, kind: Kind) -> Self {
        Self {
            kind,
            source: source.into(),
        }
    }

    /// `*` (every topic) or one exact topic.
    ///
    /// # Errors
    /// [`SelectorError::Topic`] when `selector` is not a valid topic.
    pub fn exact(selector: &str) -> Result<Self, SelectorError> {
        if selector == "*" {
            return Ok(Self::new(selector, Kind::Any));
        }
        Ok(Self::new(
            selector,
            Kind::Exact(ChannelName::topic(selector)?),
        ))
    }

    /// `*`, or an RFC 6570 URI template (a selector without expressions is an exact topic).
    ///
    /// ```
    /// use herald_hub::TopicSelector;
    ///
    /// let books = TopicSelector::uri_template("https://example.com/books/{id}")?;
    /// assert!(books.matches("https://example.com/books/1"));
    /// assert!(!books.matches("https://example.com/films/1"));
    /// # Ok::<(), herald_hub::SelectorError>(())
    /// ```
    ///
    /// # Errors
    /// [`SelectorError`] when the template is malformed or not a valid topic.
    pub fn uri_template(selector: &str) -> Result<Self, SelectorError> {
        if selector == "*" {
            return Ok(Self::new(selector, Kind::Any));
        }
        ChannelName::topic(selector)?;
        match template::compile(selector)? {
            Some(parts) => Ok(Self::new(selector, Kind::Compiled(parts))),
            None => Self::exact(selector),
        }
    }

    /// `*`, or a URL pattern (`https://example.com/books/:id`, `/users/42/*`).
    ///
    /// # Errors
    /// [`SelectorError`] when the pattern is malformed, uses unsupported syntax, or is not a
    /// valid topic.
    pub fn url_pattern(selector: &str) -> Result<Self, SelectorError> {
        if selector == "*" {
            return Ok(Self::new(selector, Kind::Any));
        }
        ChannelName::topic(selector)?;
        Ok(Self::new(
            selector,
            Kind::Compiled(pattern::compile(selector)?),
        ))
    }

    /// Whether `topic` is selected.
    pub fn matches(&self, topic: &str) -> bool {
        self.matches_within(topic, &mut Budget::per_event())
    }

    /// Whether `topic` is selected, spending the match's work from `budget` (shared by one
    /// connection's selectors for one event; a spent budget selects nothing more).
    pub(crate) fn matches_within(&self, topic: &str, budget: &mut Budget) -> bool {
        match &self.kind {
            Kind::Any => true,
            Kind::Exact(channel) => channel.as_str() == topic,
            Kind::Compiled(parts) => matcher::is_match_within(parts, topic, budget),
        }
    }

    /// The selector as it was written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The one channel an exact selector names.
    pub(crate) fn as_exact(&self) -> Option<&ChannelName> {
        match &self.kind {
            Kind::Exact(channel) => Some(channel),
            Kind::Any | Kind::Compiled(_) => None,
        }
    }
}

impl fmt::Debug for TopicSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.source, f)
    }
}

/// What a topic-selecting connection (a Mercure subscriber) hears: the topics it selects, and
/// the topics its credential lets it read private updates of.
///
/// A connection with a filter gets only events published to channels (never broadcasts to
/// everyone), and a private event only when one of its grants matches one of the event's
/// channels. A connection without one (Herald's API) never gets a private event.
///
/// A public event is read only when one of its channels is open to this connection
/// ([`TopicFilter::with_open_topics`]: by default every topic is), or one of its grants matches
/// one of them: a channel Herald's own rules keep to some callers is, on a topic connection, as
/// private as a private update.
#[derive(Clone, Default)]
pub struct TopicFilter {
    selectors: Vec<TopicSelector>,
    private_grants: Vec<TopicSelector>,
    open_topics: Option<OpenTopics>,
}

/// Which topics a connection may read without a grant.
type OpenTopics = std::sync::Arc<dyn Fn(&ChannelName) -> bool + Send + Sync>;

impl fmt::Debug for TopicFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TopicFilter")
            .field("selectors", &self.selectors)
            .field("private_grants", &self.private_grants)
            .field("open_topics", &self.open_topics.as_ref().map(|_| "…"))
            .finish()
    }
}

impl TopicFilter {
    /// A filter selecting `selectors`, reading private updates of topics `private_grants`
    /// match (empty: none).
    pub fn new(selectors: Vec<TopicSelector>, private_grants: Vec<TopicSelector>) -> Self {
        Self {
            selectors,
            private_grants,
            open_topics: None,
        }
    }

    /// The same filter, reading public events only on topics `is_open` admits (or that a
    /// grant matches); the others are read as private updates are.
    #[must_use]
    pub fn with_open_topics(
        mut self,
        is_open: impl Fn(&ChannelName) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.open_topics = Some(std::sync::Arc::new(is_open));
        self
    }

    /// Whether one of `topics` is open to this connection without a grant.
    fn is_open(&self, topics: &[ChannelName]) -> bool {
        self.open_topics
            .as_ref()
            .is_none_or(|is_open| topics.iter().any(|t| is_open(t)))
    }

    /// The selectors, as given.
    pub fn selectors(&self) -> &[TopicSelector] {
        &self.selectors
    }

    /// The channels of its exact selectors: plain subscriptions.
    pub(crate) fn exact_channels(&self) -> impl Iterator<Item = &ChannelName> {
        self.selectors.iter().filter_map(TopicSelector::as_exact)
    }

    /// Whether some selector is not exact (the connection is checked per event).
    pub(crate) fn has_patterns(&self) -> bool {
        self.selectors.iter().any(|s| s.as_exact().is_none())
    }

    /// Whether one of the non-exact selectors selects one of `topics`.
    pub(crate) fn selects_by_pattern(&self, topics: &[ChannelName]) -> bool {
        let mut budget = Budget::per_event();
        self.selectors
            .iter()
            .filter(|s| s.as_exact().is_none())
            .any(|s| any_selected(s, topics, &mut budget))
    }

    /// Whether some selector selects one of `topics`.
    pub(crate) fn selects(&self, topics: &[ChannelName]) -> bool {
        let mut budget = Budget::per_event();
        self.selectors
            .iter()
            .any(|s| any_selected(s, topics, &mut budget))
    }

    /// Whether a private event on `topics` may be read: a grant matches one of them.
    pub(crate) fn may_read_private(&self, topics: &[ChannelName]) -> bool {
        let mut budget = Budget::per_event();
        self.private_grants
            .iter()
            .any(|g| any_selected(g, topics, &mut budget))
    }
}

/// Whether `selector` selects one of `topics`, within what is left of `budget`.
fn any_selected(selector: &TopicSelector, topics: &[ChannelName], budget: &mut Budget) -> bool {
    topics
        .iter()
        .any(|t| !budget.is_spent() && selector.matches_within(t.as_str(), budget))
}

/// Whether a connection with `filter` (`None`: Herald's API) may get an event on `topics`
/// that is `is_private`. Selection is checked by the caller.
pub(crate) fn may_read(
    filter: Option<&TopicFilter>,
    topics: &[ChannelName],
    is_private: bool,
) -> bool {
    match filter {
        None => !is_private,
        Some(filter) => (!is_private && filter.is_open(topics)) || filter.may_read_private(topics),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A URL pattern that backtracks on a long topic and never matches.
    fn crafted() -> TopicSelector {
        TopicSelector::url_pattern(&format!("https://example.com/{}!", "*".repeat(15)))
            .expect("valid")
    }

    #[test]
    fn crafted_selectors_spend_only_their_connections_budget() {
        let long = topics(&[&format!("https://example.com/{}", "a".repeat(900))]);
        let honest = TopicSelector::url_pattern("https://example.com/*").expect("a valid pattern");
        // A few crafted selectors leave enough for an honest one after them.
        let mut few: Vec<TopicSelector> = (0..3).map(|_| crafted()).collect();
        few.push(honest.clone());
        assert!(TopicFilter::new(few, Vec::new()).selects(&long));
        // Many of them spend the connection's budget for this event: the connection holding
        // them is the one that misses it, and its work stops at the bound.
        let mut many: Vec<TopicSelector> = (0..10).map(|_| crafted()).collect();
        many.push(honest.clone());
        assert!(!TopicFilter::new(many, Vec::new()).selects(&long));
        // Another connection is not affected.
        assert!(TopicFilter::new(vec![honest], Vec::new()).selects(&long));
    }

    fn topics(names: &[&str]) -> Vec<ChannelName> {
        names
            .iter()
            .map(|n| ChannelName::topic(n).expect("valid"))
            .collect()
    }

    #[test]
    fn private_events_need_a_grant_on_one_of_their_topics() {
        let filter = TopicFilter::new(
            vec![TopicSelector::url_pattern("https://example.com/books/:id").expect("valid")],
            vec![TopicSelector::url_pattern("https://example.com/users/42/*").expect("valid")],
        );
        let book = topics(&["https://example.com/books/1"]);
        let both = topics(&[
            "https://example.com/books/1",
            "https://example.com/users/42/books/1",
        ]);
        assert!(filter.selects(&book));
        assert!(may_read(Some(&filter), &book, false));
        assert!(!may_read(Some(&filter), &book, true));
        assert!(may_read(Some(&filter), &both, true));
        assert!(
            !may_read(None, &both, true),
            "Herald's API never reads private events"
        );
    }

    #[test]
    fn a_closed_topic_is_read_only_with_a_grant() {
        let any = || vec![TopicSelector::exact("*").expect("valid")];
        let closed = |t: &ChannelName| t.as_str() != "payroll";
        let anonymous = TopicFilter::new(any(), Vec::new()).with_open_topics(closed);
        let granted = TopicFilter::new(any(), any()).with_open_topics(closed);
        let payroll = topics(&["payroll"]);
        assert!(!may_read(Some(&anonymous), &payroll, false));
        assert!(may_read(Some(&granted), &payroll, false));
        assert!(
            may_read(Some(&anonymous), &topics(&["payroll", "news"]), false),
            "an event also on an open topic is readable there anyway"
        );
        assert!(may_read(Some(&anonymous), &topics(&["news"]), false));
        assert!(
            may_read(None, &payroll, false),
            "Herald's API checks its own rights"
        );
    }

    #[test]
    fn star_is_every_topic_whatever_the_kind() {
        for selector in [
            TopicSelector::exact("*"),
            TopicSelector::uri_template("*"),
            TopicSelector::url_pattern("*"),
        ] {
            assert!(selector.expect("valid").matches("urn:anything"));
        }
    }
}
