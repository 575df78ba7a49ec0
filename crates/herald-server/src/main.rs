//! The `herald` binary: `herald serve` runs the hub; `herald tail` and `herald publish` talk to one.
//!
//! Only wiring lives here: parse flags, set up tracing, bind, and hand over to the `herald`
//! library. Errors are reported with `anyhow` at this edge.

mod config;

use anyhow::Context;
use clap::{Parser, Subcommand};
use config::ServeArgs;
use herald::Hub;
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
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = args.resolve()?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let local = listener.local_addr().context("reading the bound address")?;
    let hub = Hub::new(config.hub);
    let router = herald::http::router(hub.clone(), config.limits);
    // Tests and scripts read this line to learn the port when listening on port 0.
    tracing::info!(addr = %local, "herald listening on http://{local}");
    herald::http::serve(listener, router, hub, config.serve, shutdown_signal()).await?;
    tracing::info!("herald stopped");
    Ok(())
}

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
