//! The `herald` binary: `herald serve` runs the hub; `herald tail` and `herald publish` talk to one.
//!
//! Only wiring lives here: parse flags, set up tracing, bind, and hand over to the `herald`
//! library. Errors are reported with `anyhow` at this edge.

mod access_log;
mod cli_health;
mod cli_publish;
mod cli_tail;
mod config;
mod cors;
mod memory;

use anyhow::Context;
use clap::{Parser, Subcommand};
use config::{LogFormat, ServeArgs, ServeConfig};
use herald_hub::Hub;
use tracing_subscriber::EnvFilter;

/// Herald: a real-time event hub over Server-Sent Events.
#[derive(Debug, Parser)]
#[command(name = "herald", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the hub.
    Serve(Box<ServeArgs>),
    /// Print a hub's events as they arrive (a channel name, or a stream URL).
    Tail(cli_tail::TailArgs),
    /// Publish one event to a channel.
    Publish(cli_publish::PublishArgs),
    /// Probe a hub's /healthz: exit 0 when it answers 2xx, 1 otherwise (for health checks).
    Health(cli_health::HealthArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // `serve` reads its settings before logging starts: the log format is one of them.
    let command = match cli.command {
        Command::Serve(args) => Ok(args.resolve()?),
        other => Err(other),
    };
    init_logging(command.as_ref().map_or(LogFormat::Text, |c| c.log_format));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    match command {
        Ok(config) => runtime.block_on(serve(config)),
        Err(Command::Tail(args)) => runtime.block_on(cli_tail::run(args)),
        Err(Command::Publish(args)) => runtime.block_on(cli_publish::run(args)),
        Err(Command::Health(args)) => runtime.block_on(cli_health::run(args)),
        Err(Command::Serve(_)) => unreachable!("serve's settings are resolved above"),
    }
}

/// Logs to stderr, filtered by `HERALD_LOG` (default `info`), as text or one JSON object a line.
fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_env("HERALD_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init(),
    }
}

async fn serve(config: ServeConfig) -> anyhow::Result<()> {
    raise_open_files_limit();
    let listener = herald_hub::http::bind(config.listen)
        .with_context(|| format!("binding {}", config.listen))?;
    let local = listener.local_addr().context("reading the bound address")?;
    let scheme = if config.serve.tls.is_some() {
        "https"
    } else {
        "http"
    };
    warn_when_exposed(&config);
    let mut http = config.http;
    if let Some((open_files, connections_max)) = config::fit_to_open_file_limit(&mut http.limits) {
        // The default is meant to fit; only a limit the operator chose is worth a warning.
        if config.is_connections_max_explicit {
            tracing::warn!(
                open_files,
                connections_max,
                "max_connections is lowered to fit the open-file limit; raise `ulimit -n` for more"
            );
        } else {
            tracing::debug!(
                open_files,
                connections_max,
                "the stream limit fits the open-file limit"
            );
        }
    }
    let is_auth_none = http.auth.is_open();
    let mut serve_options = config.serve;
    serve_options.pending_heads_max = pending_heads_max(http.limits.connections_max);
    let unlisted = cors::Unlisted::of(config.listen, is_auth_none);
    let cors = cors::layer(&config.cors_origins, unlisted)?;
    let mut shutdown = Box::pin(shutdown_signal()?);
    // Tests and scripts read this line to learn the port when listening on port 0.
    // The SIGHUP handler is in place before the listening line, so a reload right after start
    // never meets the default action (exit).
    if let Some(tls) = serve_options.tls.clone() {
        tokio::spawn(reload_tls_on_hangup(tls, hangup_signal()));
    }
    // Said before the history is read back: connections are taken from now on, and wait for it.
    tracing::info!(addr = %local, "herald listening on {scheme}://{local}");
    let opening = open_hub(config.hub, config.backend);
    let held_max = http.limits.connections_max;
    let (hub, held) = tokio::select! {
        (hub, held) = herald_hub::http::accept_while_starting(&listener, held_max, opening) => (hub?, held),
        () = &mut shutdown => return Ok(()),
    };
    if !held.is_empty() {
        tracing::info!(
            connections = held.len(),
            "serving the connections that arrived while starting"
        );
    }
    tokio::spawn(memory::release_after_disconnects(hub.clone()));
    // Held until the hub stops: the sender task ends with the hub's shutdown.
    let _webhooks = match config.webhooks {
        Some(webhooks) => {
            Some(herald_hub::Webhooks::start(&hub, webhooks).context("starting webhooks")?)
        }
        None => None,
    };
    let mut router = herald_hub::http::router(hub.clone(), http)
        .layer(axum::middleware::from_fn(access_log::log_request));
    if let Some(cors) = cors {
        router = router.layer(cors);
    }
    herald_hub::http::serve_held(listener, held, router, hub, serve_options, shutdown).await?;
    tracing::info!("herald stopped");
    Ok(())
}

/// The hub of `backend`: a durable one reads its log back on a blocking thread, while the
/// caller accepts connections.
async fn open_hub(hub: herald_hub::HubConfig, backend: config::Backend) -> anyhow::Result<Hub> {
    Ok(match backend {
        config::Backend::Cluster(cluster) => {
            tracing::info!(node = %cluster.node_id, "joining the cluster");
            Hub::join_cluster(hub, cluster).context("joining the cluster")?
        }
        config::Backend::Durable { dir, fsync } => tokio::task::spawn_blocking(move || {
            Hub::open(hub, &dir, fsync).with_context(|| {
                format!(
                    "the data folder {} cannot be used; refusing to start with empty history",
                    dir.display()
                )
            })
        })
        .await
        .context("reading the durable log panicked")??,
        config::Backend::Memory => Hub::new(hub),
    })
}

/// Most connections waiting for their first request head: a quarter of the stream limit (itself
/// fitted to the open-file limit), so silent sockets cannot use up the file descriptors; at least
/// 16, with no upper cap: after a restart, thousands of clients reconnect at once, each a round trip
/// away from sending its head. With no stream limit, the library's default.
fn pending_heads_max(connections_max: usize) -> usize {
    if connections_max == 0 {
        return herald_hub::http::PENDING_HEADS_MAX_DEFAULT;
    }
    (connections_max / 4).max(16)
}

/// Says loudly when anyone who reaches the port may subscribe (and maybe publish).
fn warn_when_exposed(config: &config::ServeConfig) {
    let auth = &config.http.auth;
    if let Some(app) = auth.app() {
        tracing::info!(app = ?app, "auth: app (the application decides who may subscribe)");
        return;
    }
    if let Some(algorithm) = auth.algorithm() {
        tracing::info!(algorithm, api_keys = auth.has_api_keys(), "auth: jwt");
        return;
    }
    if config.listen.ip().is_loopback() {
        return;
    }
    if auth.has_api_keys() {
        tracing::warn!(
            addr = %config.listen,
            "auth is `none` on a non-loopback address: anyone who reaches it may subscribe to any \
             channel; set --auth jwt"
        );
    } else {
        tracing::warn!(
            addr = %config.listen,
            "auth is `none` on a non-loopback address: anyone who reaches it may subscribe, \
             publish and administer; set --auth jwt and --api-keys"
        );
    }
}

/// Every stream holds a socket, so the soft limit on open files (often 1024) would cap
/// connections long before memory does: raise it to the hard limit, as servers commonly do.
fn raise_open_files_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::debug!(limit, "open files limit"),
        Err(err) => tracing::warn!(error = %err, "could not raise the open files limit"),
    }
}

/// SIGHUP, listened to from now on; `None` where it cannot be (logged).
#[cfg(unix)]
fn hangup_signal() -> Option<tokio::signal::unix::Signal> {
    use tokio::signal::unix::{signal, SignalKind};
    signal(SignalKind::hangup())
        .inspect_err(|err| {
            tracing::warn!(error = %err, "no SIGHUP handler: the certificate cannot be reloaded");
        })
        .ok()
}

#[cfg(not(unix))]
fn hangup_signal() -> Option<()> {
    None
}

/// Reloads the certificate and key on every SIGHUP; a pair that does not load leaves the one in
/// use serving, and the log says why.
#[cfg(unix)]
async fn reload_tls_on_hangup(
    tls: herald_hub::http::Tls,
    hangup: Option<tokio::signal::unix::Signal>,
) {
    let Some(mut hangup) = hangup else { return };
    while hangup.recv().await.is_some() {
        match tls.reload() {
            Ok(()) => tracing::info!("TLS certificate reloaded"),
            Err(err) => tracing::warn!(
                error = %err,
                "TLS certificate not reloaded; the previous one stays in use"
            ),
        }
    }
}

#[cfg(not(unix))]
async fn reload_tls_on_hangup(_tls: herald_hub::http::Tls, _hangup: Option<()>) {}

/// A future that resolves on SIGINT or SIGTERM. The handlers are installed by this call, before
/// the hub says it listens, so a signal sent as soon as the port is known is never missed.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut interrupt = signal(SignalKind::interrupt()).context("handling SIGINT")?;
        let mut terminate = signal(SignalKind::terminate()).context("handling SIGTERM")?;
        Ok(async move {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
        })
    }
    #[cfg(not(unix))]
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
    })
}
