//! Turns the layered settings into the engine's config types: defaults, checks, and the JWT key.
//!
//! Owns the precedence (flag, then environment, then file, then default: clap has already put a
//! flag over its environment variable, and this module puts both over the file) and every check
//! that spans settings, such as "durable and clustered at once". It never starts anything.

use super::settings::{AuthMode, LogFormat, Secret, ServeArgs, Settings, Switch};
use anyhow::Context;
use herald_hub::{
    http::{
        AppAuth, AuthConfig, HttpConfig, HttpLimits, MercureConfig, MercureKey, ServeOptions, Tls,
        APP_AUTH_CACHE_TTL_DEFAULT, APP_AUTH_TIMEOUT_DEFAULT,
    },
    ClusterConfig, FsyncPolicy, HistoryConfig, HubConfig, NamespaceConfig, PresenceConfig,
    SubscribeRule, WebhookConfig, WEBHOOK_QUEUE_DEFAULT, WEBHOOK_VACATED_DELAY_DEFAULT,
};
use std::{net::SocketAddr, path::PathBuf};

/// Default listen address: loopback only, port 8080.
pub(crate) const LISTEN_DEFAULT: &str = "127.0.0.1:8080";

/// Default algorithm of the Mercure keys, as the reference hub's.
const MERCURE_JWT_ALG_DEFAULT: &str = "HS256";

/// Default prefix of every Redis key.
const REDIS_KEY_PREFIX_DEFAULT: &str = "herald";

/// Everything `serve` needs, merged and checked.
#[derive(Debug)]
pub(crate) struct ServeConfig {
    pub(crate) listen: SocketAddr,
    pub(crate) hub: HubConfig,
    pub(crate) http: HttpConfig,
    pub(crate) serve: ServeOptions,
    pub(crate) cors_origins: Vec<String>,
    /// Whether the operator set `max_connections` (then a value that does not fit the open-file
    /// limit is worth a warning); unset, the limit is fitted silently.
    pub(crate) is_connections_max_explicit: bool,
    pub(crate) log_format: LogFormat,
    /// Where history lives; one of three, never two at once.
    pub(crate) backend: Backend,
    /// Where webhooks go, if anywhere (`--webhook-url`).
    pub(crate) webhooks: Option<WebhookConfig>,
}

/// Where the hub keeps its history. "Durable and clustered at once" has no value here: the
/// product refuses it, and [`ServeArgs::resolve`] says so.
#[derive(Debug, Clone)]
pub(crate) enum Backend {
    /// History in memory (the default).
    Memory,
    /// A durable log in this folder, forced to disk by this policy (`--data-dir`).
    Durable { dir: PathBuf, fsync: FsyncPolicy },
    /// The Redis Stream shared by every node of a cluster (`--redis-url`).
    Cluster(ClusterConfig),
}

impl ServeArgs {
    /// The settings from flags and the environment, over the file's, over the defaults; checked.
    ///
    /// # Errors
    /// The file cannot be read or holds an unknown key or a bad value; a value is out of range;
    /// the auth settings disagree; or both `--data-dir` and `--redis-url` are set.
    pub(crate) fn resolve(self) -> anyhow::Result<ServeConfig> {
        let (file, namespaces) = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                parse_file(&text).with_context(|| format!("parsing {}", path.display()))?
            }
            None => (Settings::default(), Vec::new()),
        };
        let mut config = resolve_settings(self.settings.or(file))?;
        config.hub.namespaces = namespaces;
        let compiled = config
            .hub
            .namespaces()
            .context("[[namespace]] in the configuration file")?;
        let asks_app = compiled
            .iter()
            .any(|namespace| namespace.subscribe() == SubscribeRule::App);
        let auth = &config.http.auth;
        anyhow::ensure!(
            auth.app().is_none() || auth.asks_app_for_every_channel() || asks_app,
            "--auth-app-url is set but nothing asks the application: add --auth app, or a \
             [[namespace]] with subscribe = \"app\""
        );
        Ok(config)
    }
}

/// The configuration file: its flat settings, and its `[[namespace]]` tables (a section of
/// their own: namespaces have no flag nor environment variable).
///
/// # Errors
/// Bad TOML, an unknown key (in the settings or in a namespace), or a bad value.
fn parse_file(text: &str) -> anyhow::Result<(Settings, Vec<NamespaceConfig>)> {
    let mut table: toml::Table = toml::from_str(text)?;
    let namespaces = match table.remove("namespace") {
        None => Vec::new(),
        Some(value) => value
            .try_into::<Vec<NamespaceConfig>>()
            .context("[[namespace]]")?,
    };
    let settings = toml::Value::Table(table).try_into::<Settings>()?;
    Ok((settings, namespaces))
}

/// Applies the defaults to merged settings and checks them.
fn resolve_settings(mut settings: Settings) -> anyhow::Result<ServeConfig> {
    let hub_defaults = HubConfig::default();
    let history_defaults = HistoryConfig::default();
    let limit_defaults = HttpLimits::default();
    let serve_defaults = ServeOptions::default();
    let mercure = resolve_mercure(&mut settings)?;
    let auth = resolve_auth(
        settings.auth.unwrap_or_default(),
        settings.jwt_secret,
        settings.jwt_public_key,
        settings.api_keys.unwrap_or_default(),
    )?;
    let auth = with_app_auth(
        auth,
        settings.auth.unwrap_or_default(),
        settings.auth_app_url,
        settings.auth_app_timeout,
        settings.auth_app_cache,
    )?;
    let webhooks = match (settings.webhook_url, settings.webhook_secret) {
        (Some(url), Some(Secret(secret))) => Some(WebhookConfig {
            queue_capacity: settings.webhook_queue.unwrap_or(WEBHOOK_QUEUE_DEFAULT),
            vacated_delay: settings
                .webhook_vacated_delay
                .unwrap_or(WEBHOOK_VACATED_DELAY_DEFAULT),
            ..WebhookConfig::new(url, secret)
        }),
        (Some(_), None) => anyhow::bail!(
            "--webhook-url needs --webhook-secret (HERALD_WEBHOOK_SECRET): webhooks are always signed"
        ),
        (None, Some(_)) => anyhow::bail!("--webhook-secret is set but --webhook-url is not"),
        (None, None) => None,
    };
    let metrics_channels = settings.metrics_channels.unwrap_or_default();
    for channel in &metrics_channels {
        herald_hub::ChannelName::new(channel)
            .with_context(|| format!("--metrics-channels: {channel:?}"))?;
    }
    let backend = match (settings.data_dir, settings.redis_url) {
        (Some(_), Some(_)) => anyhow::bail!(
            "--data-dir and --redis-url cannot be combined: in a cluster, Redis holds the history"
        ),
        (Some(dir), None) => Backend::Durable {
            dir,
            fsync: settings.fsync.unwrap_or(FsyncPolicy::Always),
        },
        (None, Some(redis_url)) => Backend::Cluster(ClusterConfig {
            redis_url,
            key_prefix: settings
                .redis_key_prefix
                .unwrap_or_else(|| REDIS_KEY_PREFIX_DEFAULT.to_owned()),
            node_id: settings.node_id.unwrap_or_else(random_node_id),
        }),
        (None, None) => Backend::Memory,
    };
    let listen: SocketAddr = settings
        .listen
        .unwrap_or_else(|| LISTEN_DEFAULT.parse().expect("the default address parses"));
    let mut cors_origins = settings.cors_origins.unwrap_or_default();
    if mercure.is_some() {
        // Mercure's origins join the one CORS list (with credentials, for the cookie).
        for origin in settings.mercure_cors_origins.take().unwrap_or_default() {
            if !cors_origins.contains(&origin) {
                cors_origins.push(origin);
            }
        }
    }
    let allowed_hosts = settings.allowed_hosts.unwrap_or_default();
    // Without auth, on loopback, a page that rebinds its own name to 127.0.0.1 could otherwise
    // reach the hub as if from this machine.
    let is_open_on_loopback = auth.is_open() && listen.ip().is_loopback();
    let allowed_hosts = (is_open_on_loopback || !allowed_hosts.is_empty()).then_some(allowed_hosts);
    let tls = match (settings.tls_cert, settings.tls_key) {
        (Some(cert), Some(key)) => Some(Tls::from_pem_files(cert, key).context("loading TLS")?),
        (None, None) => None,
        _ => anyhow::bail!("--tls-cert and --tls-key go together: give both or neither"),
    };
    let config = ServeConfig {
        listen,
        hub: HubConfig {
            retry_interval: settings
                .retry_interval
                .unwrap_or(hub_defaults.retry_interval),
            heartbeat_interval: settings
                .heartbeat_interval
                .unwrap_or(hub_defaults.heartbeat_interval),
            queue_capacity: settings
                .queue_capacity
                .unwrap_or(hub_defaults.queue_capacity),
            history: HistoryConfig {
                max_events: settings
                    .history_max_events
                    .unwrap_or(history_defaults.max_events),
                max_bytes: settings
                    .history_max_bytes
                    .unwrap_or(history_defaults.max_bytes),
                max_age: settings.history_max_age.unwrap_or(history_defaults.max_age),
            },
            client_linger: settings.client_linger.unwrap_or(hub_defaults.client_linger),
            max_connections_per_user: settings
                .max_connections_per_user
                .unwrap_or(hub_defaults.max_connections_per_user),
            metrics_channels,
            presence: PresenceConfig {
                enabled: settings.presence.is_some_and(Switch::is_on),
                linger: settings
                    .presence_linger
                    .unwrap_or(hub_defaults.presence.linger),
                node_timeout: settings
                    .presence_node_timeout
                    .unwrap_or(hub_defaults.presence.node_timeout),
            },
            namespaces: Vec::new(),
        },
        http: HttpConfig {
            limits: HttpLimits {
                body_bytes_max: settings
                    .max_body_bytes
                    .unwrap_or(limit_defaults.body_bytes_max),
                channels_per_connection_max: settings
                    .max_channels_per_connection
                    .unwrap_or(limit_defaults.channels_per_connection_max),
                event_bytes_max: settings
                    .max_event_bytes
                    .unwrap_or(limit_defaults.event_bytes_max),
                body_read_timeout: settings
                    .body_read_timeout
                    .unwrap_or(limit_defaults.body_read_timeout),
                connections_max: settings
                    .max_connections
                    .unwrap_or(limit_defaults.connections_max),
                connections_per_address_max: settings
                    .max_connections_per_address
                    .unwrap_or(limit_defaults.connections_per_address_max),
            },
            auth,
            trusted_proxies: settings.trusted_proxies.unwrap_or_default(),
            allowed_origins: cors_origins.clone(),
            allowed_hosts,
            // The same rule as the CORS layer's default (`cors::Unlisted::Loopback`): CORS stays
            // the one source of which pages may call the hub.
            allow_loopback_origins: is_open_on_loopback && cors_origins.is_empty(),
            mercure,
        },
        serve: ServeOptions {
            header_read_timeout: settings
                .header_read_timeout
                .unwrap_or(serve_defaults.header_read_timeout),
            shutdown_grace: settings
                .shutdown_grace
                .unwrap_or(serve_defaults.shutdown_grace),
            pending_heads_max: serve_defaults.pending_heads_max,
            tls,
        },
        cors_origins,
        is_connections_max_explicit: settings.max_connections.is_some(),
        log_format: settings.log_format.unwrap_or_default(),
        backend,
        webhooks,
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

/// `node-` and six random lower-case letters or digits.
fn random_node_id() -> String {
    let letters: String = (0..6)
        .map(|_| fastrand::alphanumeric().to_ascii_lowercase())
        .collect();
    format!("node-{letters}")
}

/// `auth` with the application asked about subscribers, in `app` mode: which needs the URL and
/// API keys (publishers and admins have no other way in); the URL is refused in other modes.
fn with_app_auth(
    auth: AuthConfig,
    mode: AuthMode,
    url: Option<String>,
    timeout: Option<std::time::Duration>,
    cache: Option<std::time::Duration>,
) -> anyhow::Result<AuthConfig> {
    match (mode, url) {
        (AuthMode::App, None) => anyhow::bail!(
            "--auth app needs --auth-app-url (HERALD_AUTH_APP_URL): the application's endpoint"
        ),
        (AuthMode::App, Some(url)) => {
            anyhow::ensure!(
                auth.has_api_keys(),
                "--auth app needs --api-keys (HERALD_API_KEYS): the application decides who may \
                 subscribe; publishers and admins use an API key"
            );
            let timeout = timeout.unwrap_or(APP_AUTH_TIMEOUT_DEFAULT);
            anyhow::ensure!(!timeout.is_zero(), "auth_app_timeout must be more than 0");
            let cache = cache.unwrap_or(APP_AUTH_CACHE_TTL_DEFAULT);
            let app = AppAuth::with_limits(&url, timeout, cache).context("--auth-app-url")?;
            Ok(auth.with_app(app))
        }
        // Other modes: the application decides only the channels of namespaces with
        // `subscribe = "app"`.
        (_, Some(url)) => {
            let timeout = timeout.unwrap_or(APP_AUTH_TIMEOUT_DEFAULT);
            anyhow::ensure!(!timeout.is_zero(), "auth_app_timeout must be more than 0");
            let cache = cache.unwrap_or(APP_AUTH_CACHE_TTL_DEFAULT);
            let app = AppAuth::with_limits(&url, timeout, cache).context("--auth-app-url")?;
            Ok(auth.with_app_for_namespaces(app))
        }
        (_, None) => Ok(auth),
    }
}

/// The Mercure endpoint's settings; `None` without `--mercure`.
fn resolve_mercure(settings: &mut Settings) -> anyhow::Result<Option<MercureConfig>> {
    if settings.mercure != Some(true) {
        return Ok(None);
    }
    let key = |key: Option<String>, alg: Option<String>, role: &str| {
        key.map(|key| {
            let alg = alg.unwrap_or_else(|| MERCURE_JWT_ALG_DEFAULT.to_owned());
            MercureKey::new(&key, &alg).with_context(|| format!("the Mercure {role} key"))
        })
        .transpose()
    };
    Ok(Some(MercureConfig {
        publisher_key: key(
            settings.mercure_publisher_jwt_key.take(),
            settings.mercure_publisher_jwt_alg.take(),
            "publisher",
        )?,
        subscriber_key: key(
            settings.mercure_subscriber_jwt_key.take(),
            settings.mercure_subscriber_jwt_alg.take(),
            "subscriber",
        )?,
        anonymous: settings.mercure_anonymous.unwrap_or(false),
        subscriptions: settings.mercure_subscriptions.unwrap_or(false),
        publish_origins: settings.mercure_publish_origins.take().unwrap_or_default(),
    }))
}

/// The auth settings, checked: `jwt` takes exactly one key; `none` and `app` take none.
fn resolve_auth(
    mode: AuthMode,
    secret: Option<Secret>,
    public_key: Option<PathBuf>,
    api_keys: Vec<Secret>,
) -> anyhow::Result<AuthConfig> {
    let auth = match (mode, secret, public_key) {
        (AuthMode::None | AuthMode::App, None, None) => AuthConfig::none(),
        (AuthMode::None | AuthMode::App, _, _) => anyhow::bail!(
            "a JWT secret or public key is set but auth is not `jwt`: add --auth jwt (HERALD_AUTH=jwt)"
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A fresh folder holding `herald.toml` with `text`.
    fn config_file(name: &str, text: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("herald-config-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("herald.toml");
        std::fs::write(&path, text).expect("write config");
        path
    }

    fn args(config: Option<PathBuf>, settings: Settings) -> ServeArgs {
        ServeArgs { config, settings }
    }

    #[test]
    fn flags_win_over_the_file_and_the_file_over_defaults() {
        let path = config_file(
            "precedence",
            "listen = \"127.0.0.1:9999\"\nheartbeat_interval = \"20s\"\nqueue_capacity = 7\n",
        );
        let settings = Settings {
            queue_capacity: Some(9),
            ..Settings::default()
        };
        let config = args(Some(path), settings).resolve().expect("valid config");
        assert_eq!(config.listen.port(), 9999);
        assert_eq!(config.hub.heartbeat_interval, Duration::from_secs(20));
        assert_eq!(config.hub.queue_capacity, 9);
        assert_eq!(config.hub.retry_interval, Duration::from_secs(3));
    }

    #[test]
    fn auth_settings_merge_like_the_others_and_are_checked() {
        let path = config_file(
            "auth",
            "auth = \"jwt\"\njwt_secret = \"0123456789abcdef0123456789abcdef\"\n\
             max_connections_per_user = 3\nmax_event_bytes = 1000\n",
        );
        let settings = Settings {
            max_event_bytes: Some(2000),
            api_keys: Some(vec![Secret("server-key-0123456789".into())]),
            ..Settings::default()
        };
        let config = args(Some(path.clone()), settings)
            .resolve()
            .expect("valid config");
        assert!(config.http.auth.is_jwt());
        assert!(config.http.auth.has_api_keys());
        assert_eq!(config.hub.max_connections_per_user, 3);
        assert_eq!(config.http.limits.event_bytes_max, 2000);
        assert_eq!(config.http.limits.connections_per_address_max, 100);

        let none_with_secret = Settings {
            auth: Some(AuthMode::None),
            ..Settings::default()
        };
        assert!(args(Some(path), none_with_secret).resolve().is_err());
        let jwt_without_key = Settings {
            auth: Some(AuthMode::Jwt),
            ..Settings::default()
        };
        assert!(args(None, jwt_without_key).resolve().is_err());
        let short_secret = Settings {
            auth: Some(AuthMode::Jwt),
            jwt_secret: Some(Secret("short".into())),
            ..Settings::default()
        };
        let err = args(None, short_secret).resolve().expect_err("too short");
        assert!(
            !format!("{err:#}").contains("short\""),
            "the secret is not echoed: {err:#}"
        );
    }

    #[test]
    fn hosts_are_checked_without_auth_on_loopback_or_when_listed() {
        let open = args(None, Settings::default()).resolve().expect("valid");
        assert_eq!(open.http.allowed_hosts, Some(Vec::new()));
        let public = Settings {
            listen: Some("0.0.0.0:8080".parse().expect("an address")),
            ..Settings::default()
        };
        let public = args(None, public).resolve().expect("valid");
        assert_eq!(public.http.allowed_hosts, None);
        let listed = Settings {
            listen: Some("0.0.0.0:8080".parse().expect("an address")),
            allowed_hosts: Some(vec!["hub.internal".into()]),
            cors_origins: Some(vec!["https://app.example.com".into()]),
            ..Settings::default()
        };
        let listed = args(None, listed).resolve().expect("valid");
        assert_eq!(
            listed.http.allowed_hosts,
            Some(vec!["hub.internal".to_owned()])
        );
        assert_eq!(listed.http.allowed_origins, ["https://app.example.com"]);
    }

    #[test]
    fn secrets_never_show_in_debug_output() {
        let settings = Settings {
            jwt_secret: Some(Secret("do-not-print-me".into())),
            ..Settings::default()
        };
        assert!(!format!("{:?}", args(None, settings)).contains("do-not-print-me"));
    }

    #[test]
    fn an_unknown_key_in_the_file_is_an_error() {
        let path = config_file("unknown", "heartbeat = \"20s\"\n");
        let err = args(Some(path), Settings::default())
            .resolve()
            .expect_err("unknown key");
        assert!(format!("{err:#}").contains("heartbeat"), "{err:#}");
    }

    #[test]
    fn namespaces_are_read_from_their_own_tables_and_checked() {
        let path = config_file(
            "namespaces",
            "history_max_events = 50\n\
             [[namespace]]\nname = \"jobs\"\nchannels = \"job:*\"\nhistory = \"until_closed\"\n\
             grace = \"10m\"\nmax_events = 1000\nmax_bytes = \"1MiB\"\nsubscribe = \"authenticated\"\n\
             [[namespace]]\nname = \"dash\"\nchannels = \"dash:*\"\nhistory = 20\nmax_subscribers = 3\n",
        );
        let config = args(Some(path), Settings::default())
            .resolve()
            .expect("valid namespaces");
        assert_eq!(
            config.hub.history.max_events, 50,
            "flat settings still read"
        );
        let namespaces = config.hub.namespaces().expect("compiled");
        let job = namespaces.of(&herald_hub::ChannelName::new("job:1").expect("valid"));
        assert_eq!(job.name(), "jobs");
        assert_eq!(job.retention().max_events, 1000);
        assert_eq!(job.retention().max_bytes, 1 << 20);
        assert_eq!(job.subscribe(), herald_hub::SubscribeRule::Authenticated);
        let dash = namespaces.of(&herald_hub::ChannelName::new("dash:x").expect("valid"));
        assert_eq!(dash.retention().max_events, 20);
        assert_eq!(dash.max_subscribers(), Some(3));

        let typo = config_file(
            "namespace-typo",
            "[[namespace]]\nname = \"jobs\"\nchannels = \"job:*\"\nhistroy = 5\n",
        );
        let err = args(Some(typo), Settings::default())
            .resolve()
            .expect_err("unknown key in a namespace");
        assert!(format!("{err:#}").contains("histroy"), "{err:#}");
        let bad = config_file(
            "namespace-bad",
            "[[namespace]]\nname = \"a\"\nchannels = \"a*b\"\n",
        );
        let err = args(Some(bad), Settings::default())
            .resolve()
            .expect_err("bad pattern");
        assert!(format!("{err:#}").contains("a*b"), "{err:#}");
    }

    #[test]
    fn the_config_file_cannot_name_another_config_file() {
        let path = config_file("nested", "config = \"other.toml\"\n");
        let err = args(Some(path), Settings::default())
            .resolve()
            .expect_err("`config` is a flag only");
        assert!(format!("{err:#}").contains("config"), "{err:#}");
    }

    #[test]
    fn the_file_reads_fsync_with_the_flag_rules() {
        let path = config_file("fsync", "data_dir = \"/tmp/x\"\nfsync = \"10ms\"\n");
        let config = args(Some(path), Settings::default())
            .resolve()
            .expect("valid config");
        assert!(matches!(
            config.backend,
            Backend::Durable { fsync: FsyncPolicy::Every(interval), .. }
                if interval == Duration::from_millis(10)
        ));
        let path = config_file(
            "fsync-bad",
            "data_dir = \"/tmp/x\"\nfsync = \"sometimes\"\n",
        );
        let err = args(Some(path), Settings::default())
            .resolve()
            .expect_err("not a policy");
        assert!(
            format!("{err:#}").contains("neither `always` nor an interval"),
            "{err:#}"
        );
    }

    #[test]
    fn durable_and_clustered_at_once_is_refused_from_any_layer() {
        let path = config_file("backend", "redis_url = \"redis://127.0.0.1:1\"\n");
        let settings = Settings {
            data_dir: Some(PathBuf::from("/tmp/herald-data")),
            ..Settings::default()
        };
        let err = args(Some(path), settings)
            .resolve()
            .expect_err("two backends");
        assert_eq!(
            err.to_string(),
            "--data-dir and --redis-url cannot be combined: in a cluster, Redis holds the history"
        );
    }

    #[test]
    fn a_cluster_node_gets_the_default_prefix_and_a_random_name() {
        let settings = Settings {
            redis_url: Some("redis://127.0.0.1:6379".into()),
            ..Settings::default()
        };
        let config = args(None, settings).resolve().expect("valid config");
        let Backend::Cluster(cluster) = config.backend else {
            panic!("a redis url makes a cluster node: {:?}", config.backend);
        };
        assert_eq!(cluster.key_prefix, "herald");
        assert!(cluster.node_id.starts_with("node-") && cluster.node_id.len() == 11);
    }
}
