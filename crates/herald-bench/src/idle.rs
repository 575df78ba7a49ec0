//! `idle`: N open streams that receive nothing but heartbeats; measures the hub's memory per
//! connection while they are open, and what it gives back once they close.
//!
//! Per-connection figures are the hub's `VmRSS` (or `VmHWM`, or `RssAnon`) over its baseline
//! before any stream opened, divided by N. They include everything the hub holds for a
//! connection in user space (the connection task, hyper's buffers, the registry entry, allocator
//! overhead) and nothing the kernel holds (socket buffers, which are not in RSS).

use crate::{api, hub::HubProcess, proc::Memory, report::Report, subscriber::Subscriber, swarm};
use anyhow::Context;
use std::{collections::BTreeMap, time::Duration};
use tokio::sync::watch;

/// Time the hub gets to settle after start-up, and after the streams close, before its memory is
/// read.
const SETTLE: Duration = Duration::from_millis(500);
/// Time the hub gets to register, or unregister, every stream in its stats.
const REGISTER_TIMEOUT: Duration = Duration::from_secs(60);

/// Flags of `herald-bench idle`.
#[derive(Debug, clap::Args)]
pub(crate) struct IdleArgs {
    /// Streams held open.
    #[arg(long, default_value_t = 19_000)]
    connections: usize,
    /// Seconds to hold them open once all are registered; the default outlasts one heartbeat at
    /// the hub's default interval of 15 s.
    #[arg(long, default_value_t = 20)]
    hold_secs: u64,
    /// Times to open, hold and close every stream; more than one shows whether the memory of
    /// closed streams is reused.
    #[arg(long, default_value_t = 1)]
    rounds: usize,
    /// The channel used.
    #[arg(long, default_value = "bench")]
    channel: String,
    /// Stream handshakes in flight at once.
    #[arg(long, default_value_t = swarm::CONNECT_CONCURRENCY_DEFAULT)]
    connect_concurrency: usize,
}

impl IdleArgs {
    /// Streams this run opens.
    pub(crate) fn connections(&self) -> usize {
        self.connections
    }
}

/// Reads and discards one stream until `stop_rx` fires. Returns why it ended if the hub ended it
/// first.
async fn hold(mut subscriber: Subscriber, mut stop_rx: watch::Receiver<bool>) -> Option<String> {
    let mut closing: Option<String> = None;
    loop {
        tokio::select! {
            read = subscriber.read() => match read {
                Ok(true) => {
                    let drained = subscriber.drain_lines(&mut |line| {
                        if line.starts_with(b": closed") {
                            closing = Some(String::from_utf8_lossy(&line[2..]).into_owned());
                        }
                    });
                    if let Err(err) = drained {
                        return Some(format!("bad framing: {err}"));
                    }
                }
                Ok(false) => return Some(closing.unwrap_or_else(|| "ended by the hub".into())),
                Err(err) => return Some(format!("read failed: {err}")),
            },
            _ = stop_rx.changed() => return None,
        }
    }
}

/// What one open-hold-close round measured.
#[derive(Debug)]
struct Round {
    connect_time: Duration,
    open: Memory,
    held: Memory,
    hold_cpu: Duration,
    connections_held: u64,
    /// Streams the hub ended before the run closed them, by reason.
    ended_early: BTreeMap<String, u64>,
    unregister_time: anyhow::Result<Duration>,
    closed: Memory,
    connections_closed: u64,
}

/// Opens every stream, holds them, closes them, and reads the hub's memory at each step.
async fn round(hub: &mut HubProcess, args: &IdleArgs) -> anyhow::Result<Round> {
    let addr = hub.addr();
    eprintln!("opening {} idle streams…", args.connections);
    let (stop_tx, stop_rx) = watch::channel(false);
    let (tasks, connect_time) = swarm::spawn(
        addr,
        &api::stream_path(&args.channel),
        args.connections,
        args.connect_concurrency,
        move |subscriber| hold(subscriber, stop_rx.clone()),
    )
    .await?;
    api::wait_for_connections(addr, args.connections as u64, REGISTER_TIMEOUT).await?;
    let open = hub.memory()?;

    eprintln!(
        "all open in {:.1} s; holding them {} s…",
        connect_time.as_secs_f64(),
        args.hold_secs
    );
    let cpu_before_hold = hub.cpu_time()?;
    tokio::time::sleep(Duration::from_secs(args.hold_secs)).await;
    hub.ensure_running()?;
    let held = hub.memory()?;
    let hold_cpu = hub.cpu_time()?.since(cpu_before_hold).total();
    let connections_held = api::stats(addr).await?.connections;

    eprintln!("closing them…");
    let _ = stop_tx.send(true);
    let mut ended_early: BTreeMap<String, u64> = BTreeMap::new();
    for task in tasks {
        if let Some(reason) = task.await.context("a stream task panicked")?.flatten() {
            *ended_early.entry(reason).or_default() += 1;
        }
    }
    let unregister_time = api::wait_for_connections(addr, 0, REGISTER_TIMEOUT).await;
    tokio::time::sleep(SETTLE).await;
    hub.ensure_running()?;
    Ok(Round {
        connect_time,
        open,
        held,
        hold_cpu,
        connections_held,
        ended_early,
        unregister_time,
        closed: hub.memory()?,
        connections_closed: api::stats(addr).await?.connections,
    })
}

/// Runs the idle benchmark against `hub`.
///
/// # Errors
/// When the hub cannot be reached, a stream fails to open, the hub dies, or its connection count
/// does not reach N.
pub(crate) async fn run(hub: &mut HubProcess, args: &IdleArgs) -> anyhow::Result<Report> {
    anyhow::ensure!(args.rounds > 0, "--rounds must be positive");
    let count = args.connections as u64;
    api::stats(hub.addr()).await?;
    tokio::time::sleep(SETTLE).await;
    let baseline = hub.memory()?;
    let mut rounds = Vec::with_capacity(args.rounds);
    for _ in 0..args.rounds {
        rounds.push(round(hub, args).await?);
    }
    let first = &rounds[0];
    let mut ended_early: BTreeMap<String, u64> = BTreeMap::new();
    for (reason, n) in rounds.iter().flat_map(|round| &round.ended_early) {
        *ended_early.entry(reason.clone()).or_default() += n;
    }

    let per_connection = |now: u64, before: u64| now.saturating_sub(before) as f64 / count as f64;
    let mut report = Report::new("idle");
    report.section("load");
    report.add("connections", "streams opened", count, "");
    report.add(
        "connectSeconds",
        "time to open all",
        first.connect_time.as_secs_f64(),
        "s",
    );
    report.add("holdSeconds", "held open for", args.hold_secs, "s");
    report.add(
        "connectionsHeld",
        "hub's connections after holding",
        first.connections_held,
        "",
    );
    let ended_early_count: u64 = ended_early.values().sum();
    report.add(
        "endedEarly",
        "streams the hub ended early",
        ended_early_count,
        "",
    );
    if ended_early_count > 0 {
        let reasons = ended_early
            .into_iter()
            .map(|(reason, n)| format!("{n} × {reason}"))
            .collect::<Vec<_>>()
            .join("; ");
        report.add("endedEarlyReasons", "why", reasons, "");
    }
    report.add(
        "hubLogProblems",
        "hub WARN/ERROR log lines",
        hub.problems(),
        "",
    );

    report.section("hub memory with every stream open (over the baseline, divided by N)");
    report.add(
        "rssBaselineKib",
        "VmRSS before opening",
        baseline.rss_kib,
        "KiB",
    );
    report.add(
        "rssOpenKib",
        "VmRSS with all open",
        first.open.rss_kib,
        "KiB",
    );
    report.add(
        "rssPerConnectionKib",
        "VmRSS per connection",
        per_connection(first.open.rss_kib, baseline.rss_kib),
        "KiB",
    );
    report.add(
        "anonPerConnectionKib",
        "RssAnon per connection",
        per_connection(first.open.anon_kib, baseline.anon_kib),
        "KiB",
    );
    report.add(
        "hwmPerConnectionKib",
        "VmHWM per connection",
        per_connection(first.open.hwm_kib, baseline.rss_kib),
        "KiB",
    );
    report.add(
        "rssHeldKib",
        "VmRSS after holding",
        first.held.rss_kib,
        "KiB",
    );
    report.add(
        "rssHeldPerConnectionKib",
        "VmRSS per connection after holding",
        per_connection(first.held.rss_kib, baseline.rss_kib),
        "KiB",
    );
    report.add(
        "hwmHeldPerConnectionKib",
        "VmHWM per connection after holding",
        per_connection(first.held.hwm_kib, baseline.rss_kib),
        "KiB",
    );
    report.add(
        "holdCpuMs",
        "hub CPU while holding",
        first.hold_cpu.as_secs_f64() * 1e3,
        "ms",
    );

    report.section("after closing every stream");
    report.add(
        "connectionsAfterClose",
        "hub's connections",
        first.connections_closed,
        "",
    );
    match &first.unregister_time {
        Ok(time) => report.add(
            "unregisterSeconds",
            "time to reach 0",
            time.as_secs_f64(),
            "s",
        ),
        Err(err) => report.add("unregisterError", "did not reach 0", format!("{err:#}"), ""),
    }
    report.add("rssClosedKib", "VmRSS", first.closed.rss_kib, "KiB");
    report.add(
        "rssRetainedPerConnectionKib",
        "VmRSS still over baseline, per connection",
        per_connection(first.closed.rss_kib, baseline.rss_kib),
        "KiB",
    );
    report.add("hwmClosedKib", "VmHWM", first.closed.hwm_kib, "KiB");

    if rounds.len() > 1 {
        report.section("every round (does memory freed by closed streams get reused?)");
        let by_round =
            |figure: fn(&Round) -> u64| -> Vec<u64> { rounds.iter().map(figure).collect() };
        report.add(
            "rssOpenKibByRound",
            "VmRSS all open",
            by_round(|r| r.open.rss_kib),
            "KiB",
        );
        report.add(
            "rssClosedKibByRound",
            "VmRSS all closed",
            by_round(|r| r.closed.rss_kib),
            "KiB",
        );
        report.add(
            "hwmKibByRound",
            "VmHWM",
            by_round(|r| r.closed.hwm_kib),
            "KiB",
        );
        report.add(
            "connectionsAfterCloseByRound",
            "hub's connections after closing",
            by_round(|r| r.connections_closed),
            "",
        );
    }
    Ok(report)
}
