//! The HTTP layer's settings: request and connection limits, auth, trusted proxies, and the
//! origins and hosts it answers.
//!
//! Owns [`HttpConfig`] and [`HttpLimits`] with their defaults. It never enforces a limit itself:
//! the extractors, the handlers and `admission` do.

use super::{
    admission::{CONNECTIONS_MAX_DEFAULT, CONNECTIONS_PER_ADDRESS_MAX_DEFAULT},
    auth::AuthConfig,
};
use std::{net::IpAddr, time::Duration};

/// Default largest request body: 1 MiB.
pub const BODY_BYTES_MAX_DEFAULT: usize = 1024 * 1024;
/// Default most channels one stream may subscribe to.
pub const CHANNELS_PER_CONNECTION_MAX_DEFAULT: usize = 50;
/// Default largest event payload (the `data` as it goes on the wire): 64 KiB.
pub const EVENT_BYTES_MAX_DEFAULT: usize = 64 * 1024;
/// Default time a request body has to arrive in full: 10 s.
pub const BODY_READ_TIMEOUT_DEFAULT: Duration = Duration::from_secs(10);

/// Limits the HTTP layer enforces before the hub sees a request.
#[derive(Debug, Clone)]
pub struct HttpLimits {
    /// Largest request body in bytes; larger is `413 payload_too_large`. Default
    /// [`BODY_BYTES_MAX_DEFAULT`].
    pub body_bytes_max: usize,
    /// Most channels one stream or poll may ask for; more is `400 too_many_channels`. Default
    /// [`CHANNELS_PER_CONNECTION_MAX_DEFAULT`].
    pub channels_per_connection_max: usize,
    /// Largest event payload in bytes (its `data` as sent); larger is `413 event_too_large`, so
    /// one publish cannot fill every subscriber's queue and history. Default
    /// [`EVENT_BYTES_MAX_DEFAULT`].
    pub event_bytes_max: usize,
    /// Time a request body has to arrive in full; slower is `408 body_timeout`. Never applies to
    /// event streams. Default [`BODY_READ_TIMEOUT_DEFAULT`].
    pub body_read_timeout: Duration,
    /// Most event streams open at once; more is `503 at_capacity`. 0 is no limit. Default
    /// [`CONNECTIONS_MAX_DEFAULT`].
    pub connections_max: usize,
    /// Most event streams one client address holds (an IPv6 /64 counts as one address; loopback
    /// is not counted); more is `429 too_many_connections`. 0 is no limit. Default
    /// [`CONNECTIONS_PER_ADDRESS_MAX_DEFAULT`].
    pub connections_per_address_max: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            body_bytes_max: BODY_BYTES_MAX_DEFAULT,
            channels_per_connection_max: CHANNELS_PER_CONNECTION_MAX_DEFAULT,
            event_bytes_max: EVENT_BYTES_MAX_DEFAULT,
            body_read_timeout: BODY_READ_TIMEOUT_DEFAULT,
            connections_max: CONNECTIONS_MAX_DEFAULT,
            connections_per_address_max: CONNECTIONS_PER_ADDRESS_MAX_DEFAULT,
        }
    }
}

/// Everything [`router`](super::router) needs besides the hub. Default: default limits, `none` auth, no trusted
/// proxy.
#[derive(Debug, Clone, Default)]
pub struct HttpConfig {
    /// Request and connection limits.
    pub limits: HttpLimits,
    /// How callers authenticate and what each may do.
    pub auth: AuthConfig,
    /// Peers (reverse proxies) whose `X-Forwarded-For` names the client for the per-address
    /// limit. Default: none, so the peer's own address counts.
    pub trusted_proxies: Vec<IpAddr>,
    /// Browser origins allowed to call the hub cross-origin (the list CORS allows; `*` is any).
    /// A request that changes something (not `GET`, `HEAD` or `OPTIONS`) from a browser page of
    /// another origin is `403 origin_not_allowed`; the hub's own origin always may. Default: none.
    pub allowed_origins: Vec<String>,
    /// `Host` names answered besides loopback ones (`localhost`, `*.localhost`, loopback
    /// addresses, any port); another is `421 host_not_allowed`, which defeats DNS rebinding.
    /// `None` answers any `Host`. The `herald` server sets it with `none` auth on a loopback
    /// address. Default: `None`.
    pub allowed_hosts: Option<Vec<String>>,
    /// Pages served from a loopback origin (`localhost`, `*.localhost`, a loopback address, any
    /// port, http or https) count as allowed origins, as the CORS layer allows them. The `herald`
    /// server sets it with `none` auth on a loopback address and no `--cors-origins`, so a page a
    /// developer serves locally works with a hub started with defaults. Default: false.
    pub allow_loopback_origins: bool,
    /// Mercure at `/.well-known/mercure` (`None`: off, the route answers 404). Default: off.
    pub mercure: Option<super::MercureConfig>,
}

impl From<HttpLimits> for HttpConfig {
    fn from(limits: HttpLimits) -> Self {
        Self {
            limits,
            ..Self::default()
        }
    }
}
