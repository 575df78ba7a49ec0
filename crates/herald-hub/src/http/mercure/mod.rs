//! Mercure at `/.well-known/mercure`: the protocol of the Mercure hub, spoken beside Herald's own
//! API on the same hub (draft-07, as deployed clients speak it, and the current draft).
//!
//! Owns the adapter: `GET` subscribes (`subscribe`), `POST` publishes (`publish`), tokens and
//! what they grant (`token`), and [`MercureConfig`]. A topic is a channel: an update is one event
//! of the hub's history addressed to its topics, so Herald's subscribers of a channel get the
//! public updates of that topic, and Mercure subscribers get what Herald publishes to the
//! channels they select. It never reaches around the [`crate::Hub`] into history or fan-out, and
//! never logs a token. See `docs/mercure.md`.

mod publish;
mod subscribe;
mod subscriptions;
mod token;

pub(super) use publish::publish;
pub(super) use subscribe::subscribe;
pub(super) use subscriptions::list as subscriptions;
pub use token::{MercureKey, MercureKeyError};

use std::sync::Arc;

/// The Mercure endpoint's settings, named after the reference hub's. Default: off (a `None` in
/// [`super::HttpConfig::mercure`]); when on, no key (no publishing), no anonymous subscribers.
#[derive(Debug, Clone, Default)]
pub struct MercureConfig {
    /// Verifies publishers' tokens (`--mercure-publisher-jwt-key`); `None`: nobody publishes.
    pub publisher_key: Option<MercureKey>,
    /// Verifies subscribers' tokens (`--mercure-subscriber-jwt-key`); `None`: the publisher key.
    pub subscriber_key: Option<MercureKey>,
    /// Subscribers without a token are served (public updates only) (`--mercure-anonymous`).
    pub anonymous: bool,
    /// Subscription events and the subscriptions API (`--mercure-subscriptions`).
    pub subscriptions: bool,
    /// Origins whose pages may publish with the `mercureAuthorization` cookie
    /// (`--mercure-publish-origins`; `*` is any). A cookie publish from another origin, or
    /// without an `Origin`, is refused.
    pub publish_origins: Vec<String>,
}

/// What the Mercure handlers share: the settings and the active subscriptions, or `None` when
/// Mercure is off.
#[derive(Debug, Clone, Default)]
pub(super) struct Mercure(Option<Arc<Shared>>);

#[derive(Debug)]
struct Shared {
    config: MercureConfig,
    subscriptions: subscriptions::Registry,
}

impl Mercure {
    pub(super) fn new(config: Option<MercureConfig>) -> Self {
        Self(config.map(|config| {
            Arc::new(Shared {
                config,
                subscriptions: subscriptions::Registry::default(),
            })
        }))
    }

    /// The settings; 404 when Mercure is off, as for any unknown route.
    fn config(&self) -> Result<&MercureConfig, super::error::ApiError> {
        self.0
            .as_deref()
            .map(|shared| &shared.config)
            .ok_or_else(super::error::ApiError::route_not_found)
    }
}
