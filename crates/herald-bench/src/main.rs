//! `herald-bench`: whole-hub load figures in one command.
//!
//! It starts `herald serve` on a loopback port as a child process (or, with `--redis-nodes`, a
//! `redis-server` and N hub nodes over it; with `--fsync`, a hub with a durable log in a temporary
//! folder), loads it through real sockets, reads the hub's CPU and memory from `/proc`, stops it,
//! and prints the results as a table or one JSON object. The hub and the load generator are
//! separate processes, so each has its own open-file limit. Linux only. Not part of the test
//! suite; `docs/benchmarks.md` records runs.
//!
//! # Layout
//! - `fanout`, `publish` and `idle`: the three modes, each with its flags and its measurements;
//!   `restart`: a hub killed and restarted (or a cluster node replaced) under its clients.
//! - `floor`: the floor, a minimal server run as `herald-bench floor-serve`, which `fanout
//!   --vs-floor` loads after the hub to give hub/floor ratios from one run.
//! - `deployment`: what runs under test (standalone, durable, or a cluster) and its processes.
//! - `hub`: a `herald serve` child process and its log; `redis`: a `redis-server` child process;
//!   `temp_dir`: the folders they use, removed afterwards.
//! - `swarm` and `subscriber`: many open event streams, and one.
//! - `api` and `http`: the hub's API as used here, over a minimal hand-written HTTP/1.1 client.
//! - `transport`: plain HTTP/1.1, TLS, or event streams over HTTP/2 (`--transport`).
//! - `proc`: memory, CPU time and limits from `/proc`.
//! - `latency`: quantiles of a set of latencies.
//! - `report`: the table and the JSON.

mod api;
mod deployment;
mod fanout;
mod floor;
mod http;
mod hub;
mod idle;
mod latency;
mod proc;
mod publish;
mod redis;
mod report;
mod restart;
mod subscriber;
mod swarm;
mod temp_dir;
mod transport;

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// Files the load generator needs beyond its streams (stdio, the runtime, stats requests).
const SPARE_FILES: u64 = 64;

/// Load a herald hub and report latency, throughput, CPU per delivered event and memory per
/// connection. Starts its own hub.
#[derive(Debug, Parser)]
#[command(name = "herald-bench", version, about)]
struct Cli {
    /// The herald binary to run [default: `herald` next to this executable].
    #[arg(long, global = true)]
    herald_bin: Option<PathBuf>,
    /// An extra argument for `herald serve`; repeat for more (e.g.
    /// `--hub-arg=--queue-capacity=4096`).
    #[arg(long = "hub-arg", global = true, allow_hyphen_values = true)]
    hub_args: Vec<String>,
    /// Print one JSON object instead of a table.
    #[arg(long, global = true)]
    json: bool,
    #[command(flatten)]
    deployment: deployment::DeploymentArgs,
    #[command(flatten)]
    transport: transport::TransportArgs,
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Debug, Subcommand)]
enum Mode {
    /// N subscribers on one channel, M events at a steady rate: latency, deliveries per second,
    /// hub CPU per delivery, hub memory per connection, and a check that nothing was missed.
    Fanout(fanout::FanoutArgs),
    /// C connections publishing as fast as the hub answers, for a fixed time: publishes per
    /// second, publish latency (request → answer), hub CPU per publish; with a durable log, bytes
    /// written per publish; in a cluster, Redis's CPU and memory.
    Publish(publish::PublishArgs),
    /// N idle streams: hub memory per connection while open, and after they all close.
    Idle(idle::IdleArgs),
    /// A deploy under load: the hub (with `--fsync`) or node 0 of a cluster (`--redis-nodes 2`)
    /// is killed and started again while its clients reconnect with `Last-Event-ID`: time until
    /// it serves, until every client has what it missed, CPU, publish latency, nothing lost.
    Restart(restart::RestartArgs),
    /// Runs the floor server (see `fanout --vs-floor`) until killed.
    #[command(hide = true)]
    FloorServe {
        /// Address to listen on.
        #[arg(long)]
        listen: std::net::SocketAddr,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Mode::FloorServe { listen } = cli.mode {
        return floor::serve(listen);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let bin = cli.herald_bin.clone().unwrap_or_else(hub::default_bin);
    let Cli {
        mut hub_args,
        json,
        deployment: deployment_args,
        transport: transport_args,
        mode,
        ..
    } = cli;
    let transport = transport_args.kind();
    anyhow::ensure!(
        transport == transport::Kind::H1
            || matches!(&mode, Mode::Fanout(args) if !args.vs_floor())
            || matches!(mode, Mode::Idle(_)),
        "--transport {} is for fanout (without --vs-floor) and idle",
        transport.name()
    );
    let hub_tls = transport::install(&transport_args)?;
    let load_at_start = proc::load_average();
    let extra_args = hub_args.len();
    if let Some(tls) = &hub_tls {
        hub_args.extend(tls.serve_args.iter().cloned());
    }
    let (mut report, setup, floor) = runtime.block_on(async {
        let streams = match &mode {
            Mode::Fanout(args) => args.subscribers(),
            Mode::Publish(args) => args.subscribers(),
            Mode::Idle(args) => args.connections(),
            Mode::Restart(args) => args.clients(),
            Mode::FloorServe { .. } => 0,
        };
        proc::ensure_open_files(streams as u64 + SPARE_FILES)?;
        anyhow::ensure!(
            !matches!(mode, Mode::Idle(_)) || deployment_args.node_count() == 1,
            "idle loads one hub; run it with --redis-nodes 1 at most"
        );
        let mut deployment =
            deployment::Deployment::start(&bin, &hub_args, &deployment_args).await?;
        let setup_description = deployment.description().to_owned();
        let mut floor = None;
        let report = match mode {
            Mode::Fanout(args) => {
                let report = fanout::run(&mut deployment, &args).await?;
                if args.vs_floor() {
                    drop(deployment);
                    eprintln!("the same load against the floor…");
                    let mut floor_deployment = deployment::Deployment::start_floor()?;
                    floor = Some(fanout::run(&mut floor_deployment, &args).await?);
                    deployment = floor_deployment;
                }
                Ok(report)
            }
            Mode::Publish(args) => publish::run(&mut deployment, args).await,
            Mode::Restart(args) => restart::run(&mut deployment, &args).await,
            Mode::Idle(args) => {
                let hub = deployment.single_node()?;
                idle::run(hub, &args).await
            }
            Mode::FloorServe { .. } => unreachable!("served before the runtime starts"),
        }?;
        drop(deployment);
        anyhow::Ok((report, setup_description, floor))
    })?;
    report.section("hub");
    report.add("hubSetup", "under test", setup, "");
    report.add("herald", "binary", bin.display().to_string(), "");
    report.add("transport", "transport", transport.name(), "");
    if let Some(load) = load_at_start {
        report.add(
            "loadAverage",
            "load average at start (1, 5, 15 min)",
            load,
            "",
        );
    }
    if transport == transport::Kind::H2Tls {
        report.add(
            "h2StreamsPerConnection",
            "streams per HTTP/2 connection",
            transport_args.streams_per_connection(),
            "",
        );
    }
    if extra_args > 0 {
        report.add(
            "hubArgs",
            "extra serve arguments",
            hub_args[..extra_args].join(" "),
            "",
        );
    }
    drop(hub_tls);
    match floor {
        None if json => println!("{}", report.to_json()),
        None => print!("{}", report.to_table()),
        Some(floor) => {
            let comparison = fanout::floor_comparison(&report, &floor);
            if json {
                let all = serde_json::json!({
                    "herald": report.to_json(),
                    "floor": floor.to_json(),
                    "ratios": comparison.to_json(),
                });
                println!("{all}");
            } else {
                print!("{}", report.to_table());
                print!("\n--- floor ---\n{}", floor.to_table());
                print!("\n--- ratios ---\n{}", comparison.to_table());
            }
        }
    }
    Ok(())
}
