//! The `herald` binary: `herald serve` runs the hub; `herald tail` and `herald publish` talk to one.
//!
//! Only wiring lives here: parse flags, set up tracing, bind, and hand over to the `herald`
//! library. Errors are reported with `anyhow` at this edge.

mod cli_health;
mod cli_publish;
mod cli_tail;
mod config;
mod cors;
mod memory;

use anyhow::Context;
use clap::{Parser, Subcommand};
use config::ServeArgs;
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
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("HERALD_LOG").unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    match cli.command {
        Command::Serve(args) => runtime.block_on(serve(*args)),
        Command::Tail(args) => runtime.block_on(cli_tail::run(args)),
        Command::Publish(args) => runtime.block_on(cli_publish::run(args)),
        Command::Health(args) => runtime.block_on(cli_health::run(args)),
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = args.resolve()?;
    raise_open_files_limit();
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
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
        tracing::warn!(
            open_files,
            connections_max,
            "the stream limit is lowered to fit the open-file limit; raise `ulimit -n` for more"
        );
    }
    let hub = match config.backend {
        config::Backend::Cluster(cluster) => {
            tracing::info!(node = %cluster.node_id, "joining the cluster");
            Hub::join_cluster(config.hub, cluster).context("joining the cluster")?
        }
        config::Backend::Durable { dir, fsync } => Hub::open(config.hub, &dir, fsync)
            .with_context(|| {
                format!(
                    "the data folder {} cannot be used; refusing to start with empty history",
                    dir.display()
                )
            })?,
        config::Backend::Memory => Hub::new(config.hub),
    };
    tokio::spawn(memory::release_after_disconnects(hub.clone()));
    let mut router = herald_hub::http::router(hub.clone(), http);
    if let Some(cors) = cors::layer(&config.cors_origins)? {
        router = router.layer(cors);
    }
    // Tests and scripts read this line to learn the port when listening on port 0.
    // The SIGHUP handler is in place before the listening line, so a reload right after start
    // never meets the default action (exit).
    if let Some(tls) = config.serve.tls.clone() {
        tokio::spawn(reload_tls_on_hangup(tls, hangup_signal()));
    }
    tracing::info!(addr = %local, "herald listening on {scheme}://{local}");
    herald_hub::http::serve(listener, router, hub, config.serve, shutdown_signal()).await?;
    tracing::info!("herald stopped");
    Ok(())
}

/// Says loudly when anyone who reaches the port may subscribe (and maybe publish).
fn warn_when_exposed(config: &config::ServeConfig) {
    let auth = &config.http.auth;
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

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .expect("installing a SIGTERM handler succeeds in a fresh process");
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}
