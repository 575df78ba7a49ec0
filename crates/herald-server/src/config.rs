//! `herald serve`'s settings: command-line flags, environment variables and an optional TOML file.
//!
//! Owns the merge order (flag, then environment, then file, then default) and the conversion into
//! the engine's config types. It never starts anything.

use anyhow::Context;
use clap::Args;
use herald::{
    http::{HttpLimits, ServeOptions},
    HistoryConfig, HubConfig,
};
use serde::Deserialize;
use std::{net::SocketAddr, path::PathBuf, time::Duration};

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
}

/// Everything `serve` needs, merged and checked.
#[derive(Debug)]
pub(crate) struct ServeConfig {
    pub(crate) listen: SocketAddr,
    pub(crate) hub: HubConfig,
    pub(crate) limits: HttpLimits,
    pub(crate) serve: ServeOptions,
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
            },
            limits: HttpLimits {
                body_bytes_max: self
                    .max_body_bytes
                    .or(file.max_body_bytes)
                    .unwrap_or(limit_defaults.body_bytes_max),
                channels_per_connection_max: self
                    .max_channels_per_connection
                    .or(file.max_channels_per_connection)
                    .unwrap_or(limit_defaults.channels_per_connection_max),
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
        Ok(config)
    }
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
