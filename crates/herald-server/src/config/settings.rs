//! The one declaration of `herald serve`'s settings, read alike from flags, the environment and
//! the TOML file.
//!
//! Each setting is written once, in [`Settings`]: its flag and environment variable (clap), its
//! file key (serde: the field's name), its help and its documented default (`[default: ...]` in
//! the doc comment, checked against `docs/configuration.md` and against the value in effect by
//! the tests in `config::docs_check`). Every field is an `Option`, so layers stack with
//! [`Settings::or`]. This module never applies defaults or checks values across settings: that is
//! `config::resolve`'s.

use clap::{Args, ValueEnum};
use herald_hub::FsyncPolicy;
use serde::{Deserialize, Deserializer};
use std::{
    fmt,
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    str::FromStr,
    time::Duration,
};

/// Flags of `herald serve`: the file to read, then every setting. Every flag also reads an
/// environment variable; unset ones fall back to the TOML file given with `--config`, then to the
/// default.
#[derive(Debug, Args, Default)]
pub(crate) struct ServeArgs {
    /// TOML file with the same settings (keys in snake_case, e.g. `heartbeat_interval = "15s"`)
    /// [default: none].
    #[arg(long, env = "HERALD_CONFIG")]
    pub(crate) config: Option<PathBuf>,
    /// Every setting, as given by flags and the environment.
    #[command(flatten)]
    pub(crate) settings: Settings,
}

/// Declares the settings struct once and derives its layering from the same field list: each
/// field becomes an `Option` and [`Settings::or`] takes, field by field, the first layer that
/// has a value.
macro_rules! settings {
    (
        $(#[$struct_meta:meta])*
        pub(crate) struct $name:ident {
            $( $(#[$field_meta:meta])* $field:ident : $ty:ty ),* $(,)?
        }
    ) => {
        $(#[$struct_meta])*
        pub(crate) struct $name {
            $( $(#[$field_meta])* pub(crate) $field: Option<$ty>, )*
        }

        impl $name {
            /// These settings, with each one left unset taken from `lower`.
            pub(crate) fn or(self, lower: Self) -> Self {
                Self { $( $field: self.$field.or(lower.$field), )* }
            }
        }
    };
}

settings! {
    /// Every setting of `herald serve`. A field's name is its TOML key; its flag is the name in
    /// kebab-case and its environment variable `HERALD_` and the name in upper case.
    #[derive(Debug, Args, Default, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub(crate) struct Settings {
        /// Address to listen on [default: 127.0.0.1:8080].
        #[arg(long, env = "HERALD_LISTEN")]
        listen: SocketAddr,
        /// Period of the `: heartbeat` comment on every stream; 0 turns it off [default: 15s].
        #[arg(long, env = "HERALD_HEARTBEAT_INTERVAL", value_parser = parse_duration)]
        #[serde(default, with = "humantime_serde::option")]
        heartbeat_interval: Duration,
        /// The `retry:` a new stream is told: how long clients wait before reconnecting
        /// [default: 3s].
        #[arg(long, env = "HERALD_RETRY_INTERVAL", value_parser = parse_duration)]
        #[serde(default, with = "humantime_serde::option")]
        retry_interval: Duration,
        /// Events a connection may have waiting; a slower one is closed and resumes from history
        /// [default: 1024].
        #[arg(long, env = "HERALD_QUEUE_CAPACITY")]
        queue_capacity: usize,
        /// Most events kept in history [default: 100000].
        #[arg(long, env = "HERALD_HISTORY_MAX_EVENTS")]
        history_max_events: usize,
        /// Most bytes kept in history [default: 67108864, 64 MiB].
        #[arg(long, env = "HERALD_HISTORY_MAX_BYTES")]
        history_max_bytes: usize,
        /// Oldest event kept in history [default: 1h].
        #[arg(long, env = "HERALD_HISTORY_MAX_AGE", value_parser = parse_duration)]
        #[serde(default, with = "humantime_serde::option")]
        history_max_age: Duration,
        /// How long a departed client id still takes events for its return [default: 5m].
        #[arg(long, env = "HERALD_CLIENT_LINGER", value_parser = parse_duration)]
        #[serde(default, with = "humantime_serde::option")]
        client_linger: Duration,
        /// Largest request body in bytes [default: 1048576, 1 MiB].
        #[arg(long, env = "HERALD_MAX_BODY_BYTES")]
        max_body_bytes: usize,
        /// Most channels one stream may subscribe to [default: 50].
        #[arg(long, env = "HERALD_MAX_CHANNELS_PER_CONNECTION")]
        max_channels_per_connection: usize,
        /// Time a client has to send its request headers, and to finish the TLS handshake
        /// [default: 10s].
        #[arg(long, env = "HERALD_HEADER_READ_TIMEOUT", value_parser = parse_duration)]
        #[serde(default, with = "humantime_serde::option")]
        header_read_timeout: Duration,
        /// Time open connections get to finish on shutdown [default: 5s].
        #[arg(long, env = "HERALD_SHUTDOWN_GRACE", value_parser = parse_duration)]
        #[serde(default, with = "humantime_serde::option")]
        shutdown_grace: Duration,
        /// Browser origins allowed to call the hub cross-origin, comma-separated (e.g.
        /// `https://app.example.com`); `*` allows any origin without credentials [default: none].
        #[arg(long, env = "HERALD_CORS_ORIGINS", value_delimiter = ',')]
        cors_origins: Vec<String>,
        /// Keep history in a durable log in this folder, so it survives restarts and crashes
        /// [default: none, history in memory].
        #[arg(long, env = "HERALD_DATA_DIR")]
        data_dir: PathBuf,
        /// With --data-dir: `always` (fsync before each answer; concurrent publishes share an
        /// fsync) or an interval such as `10ms` (fsync at most that often) [default: always].
        #[arg(long, env = "HERALD_FSYNC", value_parser = parse_fsync)]
        #[serde(default, deserialize_with = "deserialize_fsync")]
        fsync: FsyncPolicy,
        /// Join a cluster of hubs sharing this Redis (`redis://host:port/db`) [default: none].
        #[arg(long, env = "HERALD_REDIS_URL")]
        redis_url: String,
        /// Prefix of every Redis key, so several clusters can share one Redis [default: herald].
        #[arg(long, env = "HERALD_REDIS_KEY_PREFIX")]
        redis_key_prefix: String,
        /// This node's name in cluster stats; unique per node [default: node- and random
        /// letters].
        #[arg(long, env = "HERALD_NODE_ID")]
        node_id: String,
        /// How subscribers and publishers prove who they are: `none` (anyone; for local
        /// development), `jwt` (signed tokens) or `app` (the application is asked, with the
        /// request's cookies, at --auth-app-url; publishers use --api-keys) [default: none].
        #[arg(long, env = "HERALD_AUTH")]
        auth: AuthMode,
        /// With `--auth app`: the application's URL the hub POSTs `{"channels": [...]}` to, with
        /// the request's `Cookie` and `Authorization`, when a stream opens or a poll is made
        /// [default: none].
        #[arg(long, env = "HERALD_AUTH_APP_URL")]
        auth_app_url: String,
        /// With `--auth app`: time the application has to answer; slower is
        /// `503 app_auth_unavailable` [default: 2s].
        #[arg(long, env = "HERALD_AUTH_APP_TIMEOUT", value_parser = parse_duration)]
        #[serde(default, with = "humantime_serde::option")]
        auth_app_timeout: Duration,
        /// With `--auth app`: how long a decision is reused for the same cookies, `Authorization`,
        /// `Origin` and channels; 0 turns the cache off [default: 10s].
        #[arg(long, env = "HERALD_AUTH_APP_CACHE", value_parser = parse_duration)]
        #[serde(default, with = "humantime_serde::option")]
        auth_app_cache: Duration,
        /// URL the hub POSTs webhooks to (channel occupied and vacated, presence), signed with
        /// --webhook-secret [default: none].
        #[arg(long, env = "HERALD_WEBHOOK_URL")]
        webhook_url: String,
        /// Key of the webhooks' HMAC-SHA256 signature, at least 16 bytes [default: none].
        #[arg(long, env = "HERALD_WEBHOOK_SECRET", hide_env_values = true)]
        webhook_secret: Secret,
        /// Most webhook notifications waiting to be sent; more are dropped and counted
        /// [default: 10000].
        #[arg(long, env = "HERALD_WEBHOOK_QUEUE")]
        webhook_queue: usize,
        /// How long a channel_vacated webhook waits; if the channel is occupied again meanwhile
        /// (a client reconnecting), neither is sent; 0 sends it at once [default: 5s].
        #[arg(long, env = "HERALD_WEBHOOK_VACATED_DELAY", value_parser = parse_duration)]
        #[serde(default, with = "humantime_serde::option")]
        webhook_vacated_delay: Duration,
        /// HS256 secret that signs tokens, at least 32 bytes (`--auth jwt`) [default: none].
        #[arg(long, env = "HERALD_JWT_SECRET", hide_env_values = true)]
        jwt_secret: Secret,
        /// PEM file with the public key that verifies tokens (`--auth jwt`); its type decides the
        /// algorithm: RSA → RS256, EC P-256 → ES256, P-384 → ES384, Ed25519 → EdDSA
        /// [default: none].
        #[arg(long, env = "HERALD_JWT_PUBLIC_KEY")]
        jwt_public_key: PathBuf,
        /// Static API keys for server-to-server calls, comma-separated, each at least 16
        /// characters; sent as `Authorization: Bearer <key>`, they hold every right
        /// [default: none].
        #[arg(long, env = "HERALD_API_KEYS", value_delimiter = ',', hide_env_values = true)]
        api_keys: Vec<Secret>,
        /// Most streams one user (a token's `sub`) holds; a newer one closes the oldest; 0 is no
        /// limit [default: 5].
        #[arg(long, env = "HERALD_MAX_CONNECTIONS_PER_USER")]
        max_connections_per_user: usize,
        /// Most streams one client address holds (IPv6: per /64; loopback is not counted); 0 is
        /// no limit [default: 100].
        #[arg(long, env = "HERALD_MAX_CONNECTIONS_PER_ADDRESS")]
        max_connections_per_address: usize,
        /// Most streams open at once; 0 is no limit. Unset, it is 100000 or what the open-file
        /// limit leaves room for, whichever is lower (a set value that does not fit is lowered,
        /// with a warning) [default: fits the open-file limit, at most 100000].
        #[arg(long, env = "HERALD_MAX_CONNECTIONS")]
        max_connections: usize,
        /// Largest event payload in bytes [default: 65536, 64 KiB].
        #[arg(long, env = "HERALD_MAX_EVENT_BYTES")]
        max_event_bytes: usize,
        /// Time a request body has to arrive in full [default: 10s].
        #[arg(long, env = "HERALD_BODY_READ_TIMEOUT", value_parser = parse_duration)]
        #[serde(default, with = "humantime_serde::option")]
        body_read_timeout: Duration,
        /// Reverse proxies whose `X-Forwarded-For` is believed, comma-separated IP addresses
        /// [default: none].
        #[arg(long, env = "HERALD_TRUSTED_PROXIES", value_delimiter = ',')]
        trusted_proxies: Vec<IpAddr>,
        /// Log lines as `text` (for people) or `json` (one object per line, for collectors)
        /// [default: text].
        #[arg(long, env = "HERALD_LOG_FORMAT")]
        log_format: LogFormat,
        /// Channels that get their own series in `/metrics`, comma-separated; only these, so the
        /// number of series stays bounded [default: none].
        #[arg(long, env = "HERALD_METRICS_CHANNELS", value_delimiter = ',')]
        metrics_channels: Vec<String>,
        /// `Host` names answered besides loopback ones, comma-separated (e.g. `hub.internal`
        /// for a proxy that forwards its own `Host`); with `--auth none` on a loopback address
        /// any other `Host` is refused, against DNS rebinding. A list given applies in every
        /// mode [default: none].
        #[arg(long, env = "HERALD_ALLOWED_HOSTS", value_delimiter = ',')]
        allowed_hosts: Vec<String>,
        /// PEM file with the certificate chain to serve HTTPS (HTTP/1.1 and HTTP/2) with,
        /// leaf first; SIGHUP reloads it (with `--tls-key`) [default: none, plain HTTP].
        #[arg(long, env = "HERALD_TLS_CERT")]
        tls_cert: PathBuf,
        /// PEM file with the certificate's private key (PKCS#8, PKCS#1 or SEC1) [default: none].
        #[arg(long, env = "HERALD_TLS_KEY")]
        tls_key: PathBuf,
        /// Presence: who is on each channel (`GET /api/channels/{channel}/presence`) and `join`
        /// / `leave` events for streams that ask with `presence=true`; `on` or `off`
        /// [default: off].
        #[arg(long, env = "HERALD_PRESENCE")]
        presence: Switch,
        /// How long a user's `leave` is held back after their last connection to a channel
        /// ends; coming back within it sends neither `leave` nor `join` [default: 5s].
        #[arg(long, env = "HERALD_PRESENCE_LINGER", value_parser = parse_duration)]
        #[serde(default, with = "humantime_serde::option")]
        presence_linger: Duration,
        /// With --redis-url: how long a node may stay silent before the others take its
        /// connections off every channel [default: 30s].
        #[arg(long, env = "HERALD_PRESENCE_NODE_TIMEOUT", value_parser = parse_duration)]
        #[serde(default, with = "humantime_serde::option")]
        presence_node_timeout: Duration,
        /// Serve the Mercure protocol at `/.well-known/mercure` (docs/mercure.md)
        /// [default: false].
        #[arg(long, env = "HERALD_MERCURE", num_args = 0..=1, default_missing_value = "true",
              value_parser = clap::builder::BoolishValueParser::new())]
        mercure: bool,
        /// Mercure: the key that verifies publishers' tokens (the secret for HS*, a PEM public
        /// key otherwise); without one, nobody publishes through Mercure [default: none].
        #[arg(long, env = "HERALD_MERCURE_PUBLISHER_JWT_KEY")]
        mercure_publisher_jwt_key: String,
        /// Mercure: the publisher key's algorithm [default: HS256].
        #[arg(long, env = "HERALD_MERCURE_PUBLISHER_JWT_ALG")]
        mercure_publisher_jwt_alg: String,
        /// Mercure: the key that verifies subscribers' tokens [default: none, the publisher key].
        #[arg(long, env = "HERALD_MERCURE_SUBSCRIBER_JWT_KEY")]
        mercure_subscriber_jwt_key: String,
        /// Mercure: the subscriber key's algorithm [default: HS256].
        #[arg(long, env = "HERALD_MERCURE_SUBSCRIBER_JWT_ALG")]
        mercure_subscriber_jwt_alg: String,
        /// Mercure: serve subscribers without a token (public updates only) [default: false].
        #[arg(long, env = "HERALD_MERCURE_ANONYMOUS", num_args = 0..=1,
              default_missing_value = "true", value_parser = clap::builder::BoolishValueParser::new())]
        mercure_anonymous: bool,
        /// Mercure: publish subscription events and serve the subscriptions API
        /// [default: false].
        #[arg(long, env = "HERALD_MERCURE_SUBSCRIPTIONS", num_args = 0..=1,
              default_missing_value = "true", value_parser = clap::builder::BoolishValueParser::new())]
        mercure_subscriptions: bool,
        /// Mercure: browser origins allowed to subscribe and publish cross-origin, with
        /// credentials, comma-separated; added to --cors-origins [default: none].
        #[arg(long, env = "HERALD_MERCURE_CORS_ORIGINS", value_delimiter = ',')]
        mercure_cors_origins: Vec<String>,
        /// Mercure: origins whose pages may publish with the `mercureAuthorization` cookie,
        /// comma-separated; `*` is any [default: none].
        #[arg(long, env = "HERALD_MERCURE_PUBLISH_ORIGINS", value_delimiter = ',')]
        mercure_publish_origins: Vec<String>,
    }
}

/// `--auth`: how callers authenticate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum AuthMode {
    /// No token: anyone may subscribe; publishing takes an API key if any is configured.
    #[default]
    None,
    /// Signed JSON Web Tokens.
    Jwt,
    /// The application decides who may subscribe (asked at `--auth-app-url`); publishers and
    /// admins use API keys.
    App,
}

/// An on/off setting (`--presence`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Switch {
    /// On.
    On,
    /// Off.
    #[default]
    Off,
}

impl Switch {
    pub(crate) fn is_on(self) -> bool {
        self == Switch::On
    }
}

/// `--log-format`: how log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// A secret from a flag, the environment or the file; its `Debug` never shows it.
#[derive(Clone, Default, Deserialize)]
#[serde(transparent)]
pub(crate) struct Secret(pub(crate) String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl FromStr for Secret {
    type Err = std::convert::Infallible;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(Self(text.to_owned()))
    }
}

/// `--fsync`: `always`, or a non-zero interval.
fn parse_fsync(text: &str) -> Result<FsyncPolicy, String> {
    match text.trim() {
        "always" => Ok(FsyncPolicy::Always),
        other => match humantime::parse_duration(other) {
            Ok(interval) if !interval.is_zero() => Ok(FsyncPolicy::Every(interval)),
            _ => Err(format!(
                "{other:?} is neither `always` nor an interval like `10ms`"
            )),
        },
    }
}

/// The file's `fsync` key, read with the same rules as the flag.
fn deserialize_fsync<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<FsyncPolicy>, D::Error> {
    let text = String::deserialize(deserializer)?;
    parse_fsync(&text)
        .map(Some)
        .map_err(|e| serde::de::Error::custom(format!("fsync: {e}")))
}

/// A duration flag: humantime's syntax, and a bare `0` for "off".
fn parse_duration(text: &str) -> Result<Duration, humantime::DurationError> {
    if text.trim() == "0" {
        return Ok(Duration::ZERO);
    }
    humantime::parse_duration(text)
}
