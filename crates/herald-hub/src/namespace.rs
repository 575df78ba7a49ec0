//! Namespaces: rules per channel prefix (history, access, presence, subscriber limit), compiled
//! once, and the lookup from a channel to its namespace.
//!
//! Owns the configured form ([`NamespaceConfig`]), its checks ([`NamespaceError`]), the compiled
//! form ([`NamespaceRules`], [`Namespaces`]) and the lookup. A channel takes the first namespace
//! whose pattern matches it, in the order they are configured, else the default namespace, whose
//! rules are the hub's global settings. The lookup is a prefix comparison per configured namespace
//! (a short list, at most [`NAMESPACES_MAX`]), with no allocation: that is its whole cost per
//! event. It never keeps history, never authenticates and never counts subscribers: history,
//! the HTTP layer and fan-out read the rules from here.

use crate::{channel::ChannelName, config::HistoryConfig};
use serde::{Deserialize, Serialize};
use std::{fmt, sync::Arc, time::Duration};

/// Most namespaces besides the default one (history keeps one set of records per namespace plus
/// one for events to every connection or one client id, and a reader's sets fit in one 64-bit
/// mask).
pub const NAMESPACES_MAX: usize = 62;

/// Default grace of an `until_closed` namespace: how long a closed channel's history stays for
/// late readers, 10 minutes.
pub const GRACE_DEFAULT: Duration = Duration::from_secs(600);

/// The name of the namespace every channel falls in when no configured one matches.
pub const DEFAULT_NAMESPACE: &str = "default";

/// One `[[namespace]]` table of the configuration file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamespaceConfig {
    /// Its name, in stats and errors: letters, digits, `_` and `-`; unique; not `default`.
    pub name: String,
    /// The channels it holds: a name (`news`) or a prefix ending in `*` (`job:*`).
    pub channels: String,
    /// What history keeps: the newest events (a count, default the cap `max_events`), or
    /// `"until_closed"`: every event of a channel until the channel is closed, then `grace`.
    #[serde(default)]
    pub history: HistoryKeep,
    /// Oldest event kept. Default: the hub's history age for a window, none for `until_closed`
    /// (the caps still hold).
    #[serde(default, with = "humantime_serde::option")]
    pub history_age: Option<Duration>,
    /// With `until_closed`: how long a closed channel's history stays. Default [`GRACE_DEFAULT`].
    #[serde(default, with = "humantime_serde::option")]
    pub grace: Option<Duration>,
    /// Cap in events for the whole namespace, oldest first. Default: the hub's history length.
    #[serde(default)]
    pub max_events: Option<usize>,
    /// Cap in bytes for the whole namespace (`"64MiB"` or a number). Default: the hub's history
    /// size.
    #[serde(default)]
    pub max_bytes: Option<ByteSize>,
    /// Who may subscribe. Default `claims`.
    #[serde(default)]
    pub subscribe: SubscribeRule,
    /// Who may publish. Default `claims`.
    #[serde(default)]
    pub publish: PublishRule,
    /// Whether presence is kept for its channels. Default false.
    #[serde(default)]
    pub presence: bool,
    /// Most subscribers one channel may have on this node; 0 for no limit (the default).
    #[serde(default)]
    pub max_subscribers: usize,
}

/// What a namespace's history keeps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "HistoryKeepRepr", into = "HistoryKeepRepr")]
pub enum HistoryKeep {
    /// The newest events of the namespace within its caps (the default).
    #[default]
    Newest,
    /// At most this many of the namespace's newest events.
    Count(usize),
    /// Every event of a channel until it is closed, then for the grace period (within the caps).
    UntilClosed,
}

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum HistoryKeepRepr {
    Count(usize),
    Word(String),
}

impl TryFrom<HistoryKeepRepr> for HistoryKeep {
    type Error = String;
    fn try_from(repr: HistoryKeepRepr) -> Result<Self, String> {
        match repr {
            HistoryKeepRepr::Count(0) => Err("history must keep at least 1 event".into()),
            HistoryKeepRepr::Count(n) => Ok(Self::Count(n)),
            HistoryKeepRepr::Word(w) if w == "until_closed" => Ok(Self::UntilClosed),
            HistoryKeepRepr::Word(w) if w == "newest" => Ok(Self::Newest),
            HistoryKeepRepr::Word(w) => Err(format!(
                "history is a count of events, \"newest\" or \"until_closed\", not {w:?}"
            )),
        }
    }
}

impl From<HistoryKeep> for HistoryKeepRepr {
    fn from(keep: HistoryKeep) -> Self {
        match keep {
            HistoryKeep::Newest => Self::Word("newest".into()),
            HistoryKeep::Count(n) => Self::Count(n),
            HistoryKeep::UntilClosed => Self::Word("until_closed".into()),
        }
    }
}

/// A size in bytes, written as a number or with a unit (`"64MiB"`, `"512 KiB"`, `"1GB"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "ByteSizeRepr", into = "u64")]
pub struct ByteSize(pub u64);

#[derive(Deserialize)]
#[serde(untagged)]
enum ByteSizeRepr {
    Number(u64),
    Text(String),
}

impl From<ByteSize> for u64 {
    fn from(size: ByteSize) -> Self {
        size.0
    }
}

impl TryFrom<ByteSizeRepr> for ByteSize {
    type Error = String;
    fn try_from(repr: ByteSizeRepr) -> Result<Self, String> {
        match repr {
            ByteSizeRepr::Number(n) => Ok(Self(n)),
            ByteSizeRepr::Text(text) => Self::parse(&text),
        }
    }
}

impl ByteSize {
    /// Parses `"64MiB"`, `"64 MiB"`, `"1GB"`, `"4096"`.
    ///
    /// # Errors
    /// A message naming the text when it is not a size.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let split = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (digits, unit) = text.split_at(split);
        let number: u64 = digits
            .parse()
            .map_err(|_| format!("{text:?} is not a size such as \"64MiB\""))?;
        let factor: u64 = match unit.trim() {
            "" | "B" => 1,
            "KiB" => 1 << 10,
            "MiB" => 1 << 20,
            "GiB" => 1 << 30,
            "KB" | "kB" => 1_000,
            "MB" => 1_000_000,
            "GB" => 1_000_000_000,
            other => return Err(format!("unknown size unit {other:?} in {text:?}")),
        };
        number
            .checked_mul(factor)
            .map(Self)
            .ok_or_else(|| format!("{text:?} is too large"))
    }
}

/// Who may subscribe to a namespace's channels.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubscribeRule {
    /// Anyone, with or without a credential.
    Anyone,
    /// Any caller with a valid credential (token or API key), whatever its claims.
    Authenticated,
    /// A token whose `subscribe` claims match the channel (or its own `user:{sub}`), or an API
    /// key: the hub's rule without namespaces.
    #[default]
    Claims,
    /// The application decides, through its subscribe proxy.
    App,
}

/// Who may publish to a namespace's channels.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PublishRule {
    /// Anyone, with or without a credential.
    Anyone,
    /// Any caller with a valid credential.
    Authenticated,
    /// A token whose `publish` claims match the channel, or an API key (the default).
    #[default]
    Claims,
}

/// How long a namespace keeps history, compiled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retention {
    /// Most events kept in the namespace (the history count and the cap, whichever is lower).
    pub max_events: usize,
    /// Most bytes kept in the namespace.
    pub max_bytes: usize,
    /// Oldest event kept; `None`: no age limit.
    pub max_age: Option<Duration>,
    /// `Some(grace)`: events stay until their channel is closed, then for `grace`.
    pub until_closed: Option<Duration>,
}

/// The rules of one namespace, compiled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamespaceRules {
    name: Arc<str>,
    /// The channel name or prefix it matches.
    pattern: Box<str>,
    /// Whether `pattern` is a prefix (`job:*`) rather than one name.
    is_prefix: bool,
    retention: Retention,
    subscribe: SubscribeRule,
    publish: PublishRule,
    presence: bool,
    max_subscribers: usize,
}

impl NamespaceRules {
    /// Its name (`default` for the default namespace).
    pub fn name(&self) -> &str {
        &self.name
    }
    /// How long its history keeps events.
    pub fn retention(&self) -> Retention {
        self.retention
    }
    /// Who may subscribe.
    pub fn subscribe(&self) -> SubscribeRule {
        self.subscribe
    }
    /// Who may publish.
    pub fn publish(&self) -> PublishRule {
        self.publish
    }
    /// Whether presence is on for its channels.
    pub fn presence(&self) -> bool {
        self.presence
    }
    /// Most subscribers a channel may have on this node; `None` for no limit.
    pub fn max_subscribers(&self) -> Option<usize> {
        (self.max_subscribers > 0).then_some(self.max_subscribers)
    }

    fn matches(&self, channel: &str) -> bool {
        if self.is_prefix {
            channel.starts_with(&*self.pattern)
        } else {
            channel == &*self.pattern
        }
    }
}

/// Why a namespace's rules are refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum NamespaceError {
    /// The name is empty, not made of letters, digits, `_` and `-`, or reserved.
    #[error("namespace name {0:?} must be letters, digits, '_' or '-', and not \"default\"")]
    InvalidName(String),
    /// Two namespaces share a name.
    #[error("namespace {0:?} is defined twice")]
    DuplicateName(String),
    /// The pattern is empty or has a `*` anywhere but at its end.
    #[error("namespace {name:?}: channels = {pattern:?} must be a channel name or a prefix ending in '*'")]
    InvalidPattern {
        /// The namespace.
        name: String,
        /// Its pattern.
        pattern: String,
    },
    /// A cap is zero.
    #[error("namespace {0:?}: max_events and max_bytes must be at least 1")]
    ZeroCap(String),
    /// `grace` without `history = "until_closed"`.
    #[error("namespace {0:?}: grace only applies with history = \"until_closed\"")]
    GraceWithoutUntilClosed(String),
    /// More namespaces than [`NAMESPACES_MAX`].
    #[error("at most {NAMESPACES_MAX} namespaces may be configured")]
    TooMany,
}

/// Every namespace of a hub, compiled once: the configured ones in order, then the default.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Namespaces {
    /// Index 0 is the default namespace; configured ones follow in their order.
    rules: Box<[NamespaceRules]>,
}

/// The index of a namespace in [`Namespaces`]: 0 is the default one.
pub(crate) type NamespaceIndex = usize;

impl Namespaces {
    /// Compiles `configs`, with the default namespace from the hub's `history` settings.
    ///
    /// # Errors
    /// [`NamespaceError`] for the first bad rule found.
    pub fn compile(
        configs: &[NamespaceConfig],
        history: &HistoryConfig,
    ) -> Result<Self, NamespaceError> {
        if configs.len() > NAMESPACES_MAX {
            return Err(NamespaceError::TooMany);
        }
        let mut rules = Vec::with_capacity(configs.len() + 1);
        rules.push(NamespaceRules {
            name: DEFAULT_NAMESPACE.into(),
            pattern: "".into(),
            is_prefix: true,
            retention: Retention {
                max_events: history.max_events.max(1),
                max_bytes: history.max_bytes.max(1),
                max_age: Some(history.max_age),
                until_closed: None,
            },
            subscribe: SubscribeRule::Claims,
            publish: PublishRule::Claims,
            presence: false,
            max_subscribers: 0,
        });
        for config in configs {
            let name = &config.name;
            let is_name_valid = !name.is_empty()
                && name != DEFAULT_NAMESPACE
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
            if !is_name_valid {
                return Err(NamespaceError::InvalidName(name.clone()));
            }
            if rules.iter().any(|r| &*r.name == name) {
                return Err(NamespaceError::DuplicateName(name.clone()));
            }
            let (pattern, is_prefix) = match config.channels.strip_suffix('*') {
                Some(prefix) => (prefix, true),
                None => (config.channels.as_str(), false),
            };
            if pattern.contains('*') || (!is_prefix && pattern.is_empty()) {
                return Err(NamespaceError::InvalidPattern {
                    name: name.clone(),
                    pattern: config.channels.clone(),
                });
            }
            let cap_events = config.max_events.unwrap_or(history.max_events);
            let cap_bytes = config.max_bytes.map_or(history.max_bytes, |b| {
                usize::try_from(b.0).unwrap_or(usize::MAX)
            });
            if cap_events == 0 || cap_bytes == 0 {
                return Err(NamespaceError::ZeroCap(name.clone()));
            }
            let until_closed = match config.history {
                HistoryKeep::UntilClosed => Some(config.grace.unwrap_or(GRACE_DEFAULT)),
                _ if config.grace.is_some() => {
                    return Err(NamespaceError::GraceWithoutUntilClosed(name.clone()))
                }
                _ => None,
            };
            let max_events = match config.history {
                HistoryKeep::Count(n) => n.min(cap_events),
                HistoryKeep::Newest | HistoryKeep::UntilClosed => cap_events,
            };
            let max_age = match (config.history_age, until_closed) {
                (Some(age), _) => Some(age),
                (None, Some(_)) => None,
                (None, None) => Some(history.max_age),
            };
            rules.push(NamespaceRules {
                name: name.as_str().into(),
                pattern: pattern.into(),
                is_prefix,
                retention: Retention {
                    max_events,
                    max_bytes: cap_bytes,
                    max_age,
                    until_closed,
                },
                subscribe: config.subscribe,
                publish: config.publish,
                presence: config.presence,
                max_subscribers: config.max_subscribers,
            });
        }
        Ok(Self {
            rules: rules.into_boxed_slice(),
        })
    }

    /// The namespace index of `channel`: the first configured namespace that matches, else 0.
    pub(crate) fn index_of(&self, channel: &ChannelName) -> NamespaceIndex {
        let name = channel.as_str();
        self.rules[1..]
            .iter()
            .position(|rules| rules.matches(name))
            .map_or(0, |i| i + 1)
    }

    /// The rules of `channel`'s namespace.
    pub fn of(&self, channel: &ChannelName) -> &NamespaceRules {
        &self.rules[self.index_of(channel)]
    }

    /// The rules at `index`.
    pub(crate) fn at(&self, index: NamespaceIndex) -> &NamespaceRules {
        &self.rules[index]
    }

    /// Every namespace, the default first.
    pub fn iter(&self) -> impl Iterator<Item = &NamespaceRules> {
        self.rules.iter()
    }

    /// How many namespaces there are, the default included.
    pub(crate) fn len(&self) -> usize {
        self.rules.len()
    }

    /// The sets of history a reader of `channels` reads: their namespaces, and the events to
    /// every connection or one client id (index [`Self::len`]).
    pub(crate) fn mask_of(&self, channels: &[ChannelName]) -> NamespaceMask {
        let mut mask = NamespaceMask(1 << self.len());
        for channel in channels {
            mask.0 |= 1 << self.index_of(channel);
        }
        mask
    }
}

impl Default for Namespaces {
    fn default() -> Self {
        Self::compile(&[], &HistoryConfig::default()).expect("no namespaces is valid")
    }
}

/// A set of namespace indexes (at most 64).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct NamespaceMask(pub(crate) u64);

impl NamespaceMask {
    /// Every namespace.
    pub(crate) const ALL: Self = Self(u64::MAX);

    pub(crate) fn has(self, index: NamespaceIndex) -> bool {
        index < 64 && self.0 & (1 << index) != 0
    }
}

impl fmt::Display for NamespaceRules {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns(name: &str, channels: &str) -> NamespaceConfig {
        toml_like(name, channels)
    }

    fn toml_like(name: &str, channels: &str) -> NamespaceConfig {
        serde_json::from_value(serde_json::json!({"name": name, "channels": channels}))
            .expect("a minimal namespace parses")
    }

    fn channel(name: &str) -> ChannelName {
        ChannelName::new(name).expect("valid")
    }

    #[test]
    fn a_channel_takes_the_first_namespace_that_matches_else_the_default() {
        let namespaces = Namespaces::compile(
            &[ns("jobs", "job:*"), ns("all-j", "j*"), ns("news", "news")],
            &HistoryConfig::default(),
        )
        .expect("valid");
        assert_eq!(namespaces.of(&channel("job:7")).name(), "jobs");
        assert_eq!(namespaces.of(&channel("jx")).name(), "all-j");
        assert_eq!(namespaces.of(&channel("news")).name(), "news");
        assert_eq!(namespaces.of(&channel("news2")).name(), "default");
        assert_eq!(namespaces.of(&channel("other")).name(), "default");
    }

    #[test]
    fn bad_rules_are_refused_with_their_reason() {
        let history = HistoryConfig::default();
        let twice = Namespaces::compile(&[ns("a", "a:*"), ns("a", "b:*")], &history);
        assert_eq!(twice, Err(NamespaceError::DuplicateName("a".into())));
        let star = Namespaces::compile(&[ns("a", "a*b")], &history);
        assert!(matches!(star, Err(NamespaceError::InvalidPattern { .. })));
        let reserved = Namespaces::compile(&[ns("default", "a")], &history);
        assert!(matches!(reserved, Err(NamespaceError::InvalidName(_))));
        let mut grace = ns("g", "g:*");
        grace.grace = Some(Duration::from_secs(1));
        assert_eq!(
            Namespaces::compile(&[grace], &history),
            Err(NamespaceError::GraceWithoutUntilClosed("g".into()))
        );
        let unknown = serde_json::from_value::<NamespaceConfig>(
            serde_json::json!({"name": "a", "channels": "a", "histroy": 5}),
        );
        assert!(unknown.is_err(), "unknown keys are refused");
    }

    #[test]
    fn history_settings_compile_to_a_retention() {
        let history = HistoryConfig::default();
        let config: NamespaceConfig = serde_json::from_value(serde_json::json!({
            "name": "jobs", "channels": "job:*", "history": "until_closed",
            "grace": "10m", "max_events": 1000, "max_bytes": "1MiB",
        }))
        .expect("parses");
        let mut dash = ns("dash", "dash:*");
        dash.history = HistoryKeep::Count(50);
        let namespaces = Namespaces::compile(&[config, dash], &history).expect("valid");
        let jobs = namespaces.of(&channel("job:1")).retention();
        assert_eq!(jobs.max_events, 1000);
        assert_eq!(jobs.max_bytes, 1 << 20);
        assert_eq!(jobs.max_age, None);
        assert_eq!(jobs.until_closed, Some(Duration::from_secs(600)));
        let dash = namespaces.of(&channel("dash:1")).retention();
        assert_eq!(dash.max_events, 50);
        assert_eq!(dash.max_age, Some(history.max_age));
    }

    #[test]
    fn sizes_read_with_units() {
        assert_eq!(ByteSize::parse("64MiB"), Ok(ByteSize(64 << 20)));
        assert_eq!(ByteSize::parse("2 KB"), Ok(ByteSize(2000)));
        assert_eq!(ByteSize::parse("10"), Ok(ByteSize(10)));
        assert!(ByteSize::parse("10 parsecs").is_err());
    }
}
