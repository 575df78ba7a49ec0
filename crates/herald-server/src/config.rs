//! `herald serve`'s settings: command-line flags, environment variables and an optional TOML file.
//!
//! Owns the merge order (flag, then environment, then file, then default) and the conversion into
//! the engine's config types, including reading the JWT public key file. It never starts anything.

use anyhow::Context;
use clap::{Args, ValueEnum};
use herald_hub::{
    http::{AuthConfig, HttpConfig, HttpLimits, ServeOptions},
    ClusterConfig, FsyncPolicy, HistoryConfig, HubConfig,
};
use serde::Deserialize;
use std::{
    fmt,
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    str::FromStr,
    time::Duration,
};

/// Default listen address: loopback only, port 8080.
pub(crate) const LISTEN_DEFAULT: &str = "127.0.0.1:8080";

/// Flags of `herald serve`. Every flag also reads an environment variable; unset ones fall back to
/// the TOML file given with `--config`, then to the default.
#[derive(Debug, Args, Default)]
pub(crate) struct ServeArgs {
    /// TOML file with the same settings (keys in snake_case, e.g. `heartbeat_interval = "15s"`).
    #[arg(long, env = "HERALD_CONFIG")]
    pub(crate) config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, env = "HERALD_LISTEN")]
    pub(crate) listen: Option<SocketAddr>,
    /// Period of the `: heartbeat` comment on every stream; 0 turns it off [default: 15s].
    #[arg(long, env = "HERALD_HEARTBEAT_INTERVAL", value_parser = parse_duration)]
    pub(crate) heartbeat_interval: Option<Duration>,
    /// The `retry:` a new stream is told: how long clients wait before reconnecting [default: 3s].
    #[arg(long, env = "HERALD_RETRY_INTERVAL", value_parser = parse_duration)]
    pub(crate) retry_interval: Option<Duration>,
    /// Events a connection may have waiting; a slower one is closed and resumes from history
    /// [default: 1024].
    #[arg(long, env = "HERALD_QUEUE_CAPACITY")]
    pub(crate) queue_capacity: Option<usize>,
    /// Most events kept in history [default: 100000].
    #[arg(long, env = "HERALD_HISTORY_MAX_EVENTS")]
    pub(crate) history_max_events: Option<usize>,
    /// Most bytes kept in history [default: 67108864, 64 MiB].
    #[arg(long, env = "HERALD_HISTORY_MAX_BYTES")]
    pub(crate) history_max_bytes: Option<usize>,
    /// Oldest event kept in history [default: 1h].
    #[arg(long, env = "HERALD_HISTORY_MAX_AGE", value_parser = parse_duration)]
    pub(crate) history_max_age: Option<Duration>,
    /// How long a departed client id still takes events for its return [default: 5m].
    #[arg(long, env = "HERALD_CLIENT_LINGER", value_parser = parse_duration)]
    pub(crate) client_linger: Option<Duration>,
    /// Largest request body in bytes [default: 1048576, 1 MiB].
    #[arg(long, env = "HERALD_MAX_BODY_BYTES")]
    pub(crate) max_body_bytes: Option<usize>,
    /// Most channels one stream may subscribe to [default: 50].
    #[arg(long, env = "HERALD_MAX_CHANNELS_PER_CONNECTION")]
    pub(crate) max_channels_per_connection: Option<usize>,
    /// Time a client has to send its request headers [default: 10s].
    #[arg(long, env = "HERALD_HEADER_READ_TIMEOUT", value_parser = parse_duration)]
    pub(crate) header_read_timeout: Option<Duration>,
    /// Time open connections get to finish on shutdown [default: 5s].
    #[arg(long, env = "HERALD_SHUTDOWN_GRACE", value_parser = parse_duration)]
    pub(crate) shutdown_grace: Option<Duration>,
    /// Browser origins allowed to call the hub cross-origin, comma-separated (e.g.
    /// `https://app.example.com`); `*` allows any origin without credentials [default: none].
    #[arg(long, env = "HERALD_CORS_ORIGINS", value_delimiter = ',')]
    pub(crate) cors_origins: Option<Vec<String>>,
    /// Keep history in a durable log in this folder, so it survives restarts and crashes
    /// [default: none, history in memory].
    #[arg(long, env = "HERALD_DATA_DIR")]
    pub(crate) data_dir: Option<PathBuf>,
    /// With --data-dir: `always` (fsync before each answer; concurrent publishes share an fsync)
    /// or an interval such as `10ms` (fsync at most that often) [default: always].
    #[arg(long, env = "HERALD_FSYNC", value_parser = parse_fsync)]
    pub(crate) fsync: Option<FsyncPolicy>,
    /// Join a cluster of hubs sharing this Redis (`redis://host:port/db`) [default: none].
    #[arg(long, env = "HERALD_REDIS_URL")]
    pub(crate) redis_url: Option<String>,
    /// Prefix of every Redis key, so several clusters can share one Redis [default: herald].
    #[arg(long, env = "HERALD_REDIS_KEY_PREFIX")]
    pub(crate) redis_key_prefix: Option<String>,
    /// This node's name in cluster stats; unique per node [default: node- and random letters].
    #[arg(long, env = "HERALD_NODE_ID")]
    pub(crate) node_id: Option<String>,
    /// How subscribers and publishers prove who they are: `none` (anyone; for local development)
    /// or `jwt` (signed tokens) [default: none].
    #[arg(long, env = "HERALD_AUTH")]
    pub(crate) auth: Option<AuthMode>,
    /// HS256 secret that signs tokens, at least 32 bytes (`--auth jwt`).
    #[arg(long, env = "HERALD_JWT_SECRET", hide_env_values = true)]
    pub(crate) jwt_secret: Option<Secret>,
    /// PEM file with the public key that verifies tokens (`--auth jwt`); its type decides the
    /// algorithm: RSA → RS256, EC P-256 → ES256, P-384 → ES384, Ed25519 → EdDSA.
    #[arg(long, env = "HERALD_JWT_PUBLIC_KEY")]
    pub(crate) jwt_public_key: Option<PathBuf>,
    /// Static API keys for server-to-server calls, comma-separated, each at least 16 characters;
    /// sent as `Authorization: Bearer <key>`, they hold every right [default: none].
    #[arg(
        long,
        env = "HERALD_API_KEYS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub(crate) api_keys: Option<Vec<Secret>>,
    /// Most streams one user (a token's `sub`) holds; a newer one closes the oldest; 0 is no limit
    /// [default: 5].
    #[arg(long, env = "HERALD_MAX_CONNECTIONS_PER_USER")]
    pub(crate) max_connections_per_user: Option<usize>,
    /// Most streams one client address holds (IPv6: per /64; loopback is not counted); 0 is no
    /// limit [default: 100].
    #[arg(long, env = "HERALD_MAX_CONNECTIONS_PER_ADDRESS")]
    pub(crate) max_connections_per_address: Option<usize>,
    /// Most streams open at once, lowered to fit the open-file limit; 0 is no limit
    /// [default: 100000].
    #[arg(long, env = "HERALD_MAX_CONNECTIONS")]
    pub(crate) max_connections: Option<usize>,
    /// Largest event payload in bytes [default: 65536, 64 KiB].
    #[arg(long, env = "HERALD_MAX_EVENT_BYTES")]
    pub(crate) max_event_bytes: Option<usize>,
    /// Time a request body has to arrive in full [default: 10s].
    #[arg(long, env = "HERALD_BODY_READ_TIMEOUT", value_parser = parse_duration)]
    pub(crate) body_read_timeout: Option<Duration>,
    /// Reverse proxies whose `X-Forwarded-For` is believed, comma-separated IP addresses
    /// [default: none].
    #[arg(long, env = "HERALD_TRUSTED_PROXIES", value_delimiter = ',')]
    pub(crate) trusted_proxies: Option<Vec<IpAddr>>,
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
}

/// A secret from a flag, the environment or the file; its `Debug` never shows it.
#[derive(Clone, Default, Deserialize)]
#[serde(transparent)]
pub(crate) struct Secret(String);

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

/// The same settings as read from a TOML file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<SocketAddr>,
    #[serde(default, with = "humantime_serde::option")]
    heartbeat_interval: Option<Duration>,
    #[serde(default, with = "humantime_serde::option")]
    retry_interval: Option<Duration>,
    queue_capacity: Option<usize>,
    history_max_events: Option<usize>,
    history_max_bytes: Option<usize>,
    #[serde(default, with = "humantime_serde::option")]
    history_max_age: Option<Duration>,
    #[serde(default, with = "humantime_serde::option")]
    client_linger: Option<Duration>,
    max_body_bytes: Option<usize>,
    max_channels_per_connection: Option<usize>,
    #[serde(default, with = "humantime_serde::option")]
    header_read_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde::option")]
    shutdown_grace: Option<Duration>,
    cors_origins: Option<Vec<String>>,
    auth: Option<AuthMode>,
    jwt_secret: Option<Secret>,
    jwt_public_key: Option<PathBuf>,
    api_keys: Option<Vec<Secret>>,
    max_connections_per_user: Option<usize>,
    max_connections_per_address: Option<usize>,
    max_connections: Option<usize>,
    max_event_bytes: Option<usize>,
    #[serde(default, with = "humantime_serde::option")]
    body_read_timeout: Option<Duration>,
    trusted_proxies: Option<Vec<IpAddr>>,
    data_dir: Option<PathBuf>,
    fsync: Option<String>,
    redis_url: Option<String>,
    redis_key_prefix: Option<String>,
    node_id: Option<String>,
}

/// Everything `serve` needs, merged and checked.
#[derive(Debug)]
pub(crate) struct ServeConfig {
    pub(crate) listen: SocketAddr,
    pub(crate) hub: HubConfig,
    pub(crate) http: HttpConfig,
    pub(crate) serve: ServeOptions,
    pub(crate) cors_origins: Vec<String>,
    /// The durable log's folder and fsync policy; `None`: history in memory.
    pub(crate) data_dir: Option<(PathBuf, FsyncPolicy)>,
    /// The cluster to join; `None`: a standalone hub.
    pub(crate) cluster: Option<ClusterConfig>,
}

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

fn parse_duration(text: &str) -> Result<Duration, humantime::DurationError> {
    if text.trim() == "0" {
        return Ok(Duration::ZERO);
    }
    humantime::parse_duration(text)
}

impl ServeArgs {
    pub(crate) fn resolve(self) -> anyhow::Result<ServeConfig> {
        let file = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                toml::from_str::<FileConfig>(&text)
                    .with_context(|| format!("parsing {}", path.display()))?
            }
            None => FileConfig::default(),
        };
        let hub_defaults = HubConfig::default();
        let history_defaults = HistoryConfig::default();
        let limit_defaults = HttpLimits::default();
        let serve_defaults = ServeOptions::default();
        let auth = resolve_auth(
            self.auth.or(file.auth).unwrap_or_default(),
            self.jwt_secret.or(file.jwt_secret),
            self.jwt_public_key.or(file.jwt_public_key),
            self.api_keys.or(file.api_keys).unwrap_or_default(),
        )?;
        let config = ServeConfig {
            listen: self
                .listen
                .or(file.listen)
                .unwrap_or_else(|| LISTEN_DEFAULT.parse().expect("the default address parses")),
            hub: HubConfig {
                retry_interval: self
                    .retry_interval
                    .or(file.retry_interval)
                    .unwrap_or(hub_defaults.retry_interval),
                heartbeat_interval: self
                    .heartbeat_interval
                    .or(file.heartbeat_interval)
                    .unwrap_or(hub_defaults.heartbeat_interval),
                queue_capacity: self
                    .queue_capacity
                    .or(file.queue_capacity)
                    .unwrap_or(hub_defaults.queue_capacity),
                history: HistoryConfig {
                    max_events: self
                        .history_max_events
                        .or(file.history_max_events)
                        .unwrap_or(history_defaults.max_events),
                    max_bytes: self
                        .history_max_bytes
                        .or(file.history_max_bytes)
                        .unwrap_or(history_defaults.max_bytes),
                    max_age: self
                        .history_max_age
                        .or(file.history_max_age)
                        .unwrap_or(history_defaults.max_age),
                },
                client_linger: self
                    .client_linger
                    .or(file.client_linger)
                    .unwrap_or(hub_defaults.client_linger),
                max_connections_per_user: self
                    .max_connections_per_user
                    .or(file.max_connections_per_user)
                    .unwrap_or(hub_defaults.max_connections_per_user),
            },
            http: HttpConfig {
                limits: HttpLimits {
                    body_bytes_max: self
                        .max_body_bytes
                        .or(file.max_body_bytes)
                        .unwrap_or(limit_defaults.body_bytes_max),
                    channels_per_connection_max: self
                        .max_channels_per_connection
                        .or(file.max_channels_per_connection)
                        .unwrap_or(limit_defaults.channels_per_connection_max),
                    event_bytes_max: self
                        .max_event_bytes
                        .or(file.max_event_bytes)
                        .unwrap_or(limit_defaults.event_bytes_max),
                    body_read_timeout: self
                        .body_read_timeout
                        .or(file.body_read_timeout)
                        .unwrap_or(limit_defaults.body_read_timeout),
                    connections_max: self
                        .max_connections
                        .or(file.max_connections)
                        .unwrap_or(limit_defaults.connections_max),
                    connections_per_address_max: self
                        .max_connections_per_address
                        .or(file.max_connections_per_address)
                        .unwrap_or(limit_defaults.connections_per_address_max),
                },
                auth,
                trusted_proxies: self
                    .trusted_proxies
                    .or(file.trusted_proxies)
                    .unwrap_or_default(),
            },
            serve: ServeOptions {
                header_read_timeout: self
                    .header_read_timeout
                    .or(file.header_read_timeout)
                    .unwrap_or(serve_defaults.header_read_timeout),
                shutdown_grace: self
                    .shutdown_grace
                    .or(file.shutdown_grace)
                    .unwrap_or(serve_defaults.shutdown_grace),
            },
            cors_origins: self.cors_origins.or(file.cors_origins).unwrap_or_default(),
            data_dir: match self.data_dir.or(file.data_dir) {
                Some(dir) => {
                    let fsync = match (self.fsync, file.fsync) {
                        (Some(fsync), _) => fsync,
                        (None, Some(text)) => {
                            parse_fsync(&text).map_err(|e| anyhow::anyhow!("fsync: {e}"))?
                        }
                        (None, None) => FsyncPolicy::Always,
                    };
                    Some((dir, fsync))
                }
                None => None,
            },
            cluster: self
                .redis_url
                .or(file.redis_url)
                .map(|redis_url| ClusterConfig {
                    redis_url,
                    key_prefix: self
                        .redis_key_prefix
                        .or(file.redis_key_prefix)
                        .unwrap_or_else(|| "herald".to_owned()),
                    node_id: self.node_id.or(file.node_id).unwrap_or_else(|| {
                        let letters: String = (0..6)
                            .map(|_| fastrand::alphanumeric().to_ascii_lowercase())
                            .collect();
                        format!("node-{letters}")
                    }),
                }),
        };
        anyhow::ensure!(
            config.hub.queue_capacity > 0,
            "queue_capacity must be at least 1"
        );
        anyhow::ensure!(
            config.hub.history.max_events > 0,
            "history_max_events must be at least 1"
        );
        anyhow::ensure!(
            !config.hub.retry_interval.is_zero(),
            "retry_interval must be more than 0"
        );
        anyhow::ensure!(
            !config.http.limits.body_read_timeout.is_zero(),
            "body_read_timeout must be more than 0"
        );
        Ok(config)
    }
}

/// The auth settings, checked: `jwt` takes exactly one key; `none` takes none.
fn resolve_auth(
    mode: AuthMode,
    secret: Option<Secret>,
    public_key: Option<PathBuf>,
    api_keys: Vec<Secret>,
) -> anyhow::Result<AuthConfig> {
    let auth = match (mode, secret, public_key) {
        (AuthMode::None, None, None) => AuthConfig::none(),
        (AuthMode::None, _, _) => anyhow::bail!(
            "a JWT secret or public key is set but auth is `none`: add --auth jwt (HERALD_AUTH=jwt)"
        ),
        (AuthMode::Jwt, Some(_), Some(_)) => {
            anyhow::bail!("give either a JWT secret or a JWT public key, not both")
        }
        (AuthMode::Jwt, None, None) => anyhow::bail!(
            "--auth jwt needs --jwt-secret (HERALD_JWT_SECRET) or --jwt-public-key (HERALD_JWT_PUBLIC_KEY)"
        ),
        (AuthMode::Jwt, Some(Secret(secret)), None) => {
            AuthConfig::jwt_secret(secret.as_bytes()).context("the JWT secret")?
        }
        (AuthMode::Jwt, None, Some(path)) => {
            let pem = std::fs::read(&path)
                .with_context(|| format!("reading the JWT public key {}", path.display()))?;
            AuthConfig::jwt_public_key_pem(&pem)
                .with_context(|| format!("the JWT public key {}", path.display()))?
        }
    };
    auth.with_api_keys(api_keys.iter().map(|Secret(key)| key.as_str()))
        .context("the API keys")
}

/// File descriptors kept free for publishers, pollers and the listener when the stream limit is
/// fitted to the open-file limit: a tenth of it, at most 512.
const FILE_DESCRIPTORS_RESERVED_MAX: usize = 512;

/// Lowers `connections_max` so streams cannot use up the process's open-file limit (the hub
/// could then no longer accept a publisher's request). Returns the limit and the lowered value
/// when it had to lower it.
pub(crate) fn fit_to_open_file_limit(limits: &mut HttpLimits) -> Option<(usize, usize)> {
    let open_files = open_file_limit()?;
    let reserved = (open_files / 10).min(FILE_DESCRIPTORS_RESERVED_MAX);
    let fitting = open_files.saturating_sub(reserved).max(1);
    if limits.connections_max == 0 || limits.connections_max <= fitting {
        return None;
    }
    limits.connections_max = fitting;
    Some((open_files, fitting))
}

/// The soft open-file limit (`ulimit -n`), where the platform tells it.
fn open_file_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.trim_start_matches("Max open files")
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_over_the_file_and_the_file_over_defaults() {
        let dir = std::env::temp_dir().join(format!("herald-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("herald.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:9999\"\nheartbeat_interval = \"20s\"\nqueue_capacity = 7\n",
        )
        .expect("write config");
        let args = ServeArgs {
            config: Some(path),
            queue_capacity: Some(9),
            ..ServeArgs::default()
        };
        let config = args.resolve().expect("valid config");
        assert_eq!(config.listen.port(), 9999);
        assert_eq!(config.hub.heartbeat_interval, Duration::from_secs(20));
        assert_eq!(config.hub.queue_capacity, 9);
        assert_eq!(config.hub.retry_interval, Duration::from_secs(3));
    }

    #[test]
    fn auth_settings_merge_like_the_others_and_are_checked() {
        let dir = std::env::temp_dir().join(format!("herald-config-auth-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("herald.toml");
        std::fs::write(
            &path,
            "auth = \"jwt\"\njwt_secret = \"0123456789abcdef0123456789abcdef\"\n\
             max_connections_per_user = 3\nmax_event_bytes = 1000\n",
        )
        .expect("write config");
        let args = ServeArgs {
            config: Some(path.clone()),
            max_event_bytes: Some(2000),
            api_keys: Some(vec![Secret("server-key-0123456789".into())]),
            ..ServeArgs::default()
        };
        let config = args.resolve().expect("valid config");
        assert!(config.http.auth.is_jwt());
        assert!(config.http.auth.has_api_keys());
        assert_eq!(config.hub.max_connections_per_user, 3);
        assert_eq!(config.http.limits.event_bytes_max, 2000);
        assert_eq!(config.http.limits.connections_per_address_max, 100);

        let none_with_secret = ServeArgs {
            config: Some(path),
            auth: Some(AuthMode::None),
            ..ServeArgs::default()
        };
        assert!(none_with_secret.resolve().is_err());
        let jwt_without_key = ServeArgs {
            auth: Some(AuthMode::Jwt),
            ..ServeArgs::default()
        };
        assert!(jwt_without_key.resolve().is_err());
        let short_secret = ServeArgs {
            auth: Some(AuthMode::Jwt),
            jwt_secret: Some(Secret("short".into())),
            ..ServeArgs::default()
        };
        let err = short_secret.resolve().expect_err("too short");
        assert!(
            !format!("{err:#}").contains("short\""),
            "the secret is not echoed: {err:#}"
        );
    }

    #[test]
    fn secrets_never_show_in_debug_output() {
        let args = ServeArgs {
            jwt_secret: Some(Secret("do-not-print-me".into())),
            ..ServeArgs::default()
        };
        assert!(!format!("{args:?}").contains("do-not-print-me"));
    }

    #[test]
    fn an_unknown_key_in_the_file_is_an_error() {
        let dir = std::env::temp_dir().join(format!("herald-config-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("herald.toml");
        std::fs::write(&path, "heartbeat = \"20s\"\n").expect("write config");
        let err = ServeArgs {
            config: Some(path),
            ..ServeArgs::default()
        }
        .resolve()
        .expect_err("unknown key");
        assert!(format!("{err:#}").contains("heartbeat"), "{err:#}");
    }
}
