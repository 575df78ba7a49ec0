//! `restart`: a deploy under load. The hub (or node 0 of a cluster) is killed with `SIGKILL` and
//! started again on its address while its clients reconnect with `Last-Event-ID`, and a publisher
//! keeps publishing throughout.
//!
//! Measures the time until the restarted hub serves again (its address printed, its first publish
//! answered), the time until every cut client is back and has every event published before it
//! came back, the hub's CPU over that storm, publish latency (request → answer) during the storm
//! and over the whole run, and that every client ends with every acknowledged event (a bitmap per
//! client). It compares the storm with the time the same clients took to connect fresh at the
//! start. Before the clients connect, the hub's history is filled (`--history` events), so a
//! restarted hub has that much to recover. It does not measure delivery latency (see `fanout`).
//!
//! # Layout
//! - `client`: one client's stream, bitmap and reconnects, and the state all share.
//! - `publisher`: the steady publisher and the filling of the history.

mod client;
mod publisher;

use crate::{
    api, deployment::Deployment, latency::Latencies, report::Report, subscriber::Subscriber,
};
use anyhow::Context;
use client::{client, Reconnect, Shared};
use publisher::{fill_history, publisher};
use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};
use tokio::sync::{watch, Semaphore};

/// How long the last events get to reach every client at the end.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(15);
/// The node that is killed and restarted.
const KILLED_NODE: usize = 0;

/// Flags of `herald-bench restart`.
#[derive(Debug, clap::Args)]
pub(crate) struct RestartArgs {
    /// Streams open on the channel.
    #[arg(long, default_value_t = 19_000)]
    clients: usize,
    /// Events put in the hub's history before the clients connect.
    #[arg(long, default_value_t = 100_000)]
    history: u64,
    /// Events published per second throughout (one request at a time, retried until answered).
    #[arg(long, default_value_t = 100.0)]
    rate: f64,
    /// Seconds of publishing before the kill.
    #[arg(long, default_value_t = 2.0)]
    before_secs: f64,
    /// Seconds of publishing after every cut client has caught up.
    #[arg(long, default_value_t = 2.0)]
    after_secs: f64,
    /// A cut client waits a delay spread over [0, this] before reconnecting, and this long
    /// between failed attempts, in milliseconds.
    #[arg(long, default_value_t = 250)]
    retry_ms: u64,
    /// Seconds the cut clients get to catch up before the run fails.
    #[arg(long, default_value_t = 120)]
    timeout_secs: u64,
    /// The channel used.
    #[arg(long, default_value = "bench")]
    channel: String,
    /// Stream handshakes in flight at once, at the start.
    #[arg(long, default_value_t = crate::swarm::CONNECT_CONCURRENCY_DEFAULT)]
    connect_concurrency: usize,
}

impl RestartArgs {
    /// Streams this run opens.
    pub(crate) fn clients(&self) -> usize {
        self.clients
    }
}

/// Runs the restart benchmark.
///
/// # Errors
/// When the deployment is not durable or a cluster of two or more, a stream fails to open at the
/// start, the hub does not come back, or the clients do not catch up in time.
pub(crate) async fn run(deployment: &mut Deployment, args: &RestartArgs) -> anyhow::Result<Report> {
    anyhow::ensure!(
        deployment.data_dir_bytes().is_some() || deployment.addrs().len() >= 2,
        "restart needs a hub that keeps its history across a restart: --fsync POLICY, or a \
         cluster of at least two nodes (--redis-nodes 2)"
    );
    let addrs = deployment.addrs();
    let is_cluster = addrs.len() > 1;
    let publish_addr = *addrs.last().expect("a deployment has a node");
    let path = api::stream_path(&args.channel);
    let publish_path = api::publish_path(&args.channel);

    eprintln!("filling the history with {} events…", args.history);
    let fill_started = Instant::now();
    fill_history(publish_addr, &publish_path, args.history).await?;
    let fill_time = fill_started.elapsed();

    let shared = Arc::new(Shared {
        epoch: Instant::now(),
        acked: AtomicU64::new(0),
        killed: AtomicBool::new(false),
        stop: AtomicBool::new(false),
        cut: AtomicUsize::new(0),
        back: AtomicUsize::new(0),
        caught_up: AtomicUsize::new(0),
    });
    let shares = deployment.spread(args.clients);
    eprintln!("connecting {} clients…", args.clients);
    let connect_started = Instant::now();
    let permits = Arc::new(Semaphore::new(args.connect_concurrency.max(1)));
    let mut opening = Vec::with_capacity(args.clients);
    let mut index = 0;
    for (node, &share) in shares.iter().enumerate() {
        for _ in 0..share {
            let (permits, path, addr) = (permits.clone(), path.clone(), addrs[node]);
            opening.push((
                index,
                node,
                tokio::spawn(async move {
                    let _permit = permits.acquire_owned().await.expect("never closed");
                    Subscriber::connect(addr, &path).await
                }),
            ));
            index += 1;
        }
    }
    let retry = Duration::from_millis(args.retry_ms);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut clients = Vec::with_capacity(args.clients);
    for (index, node, task) in opening {
        let subscriber = task.await.context("a connecting task panicked")??;
        let reconnect = Reconnect {
            addrs: addrs.clone(),
            path: path.clone(),
            retry,
        };
        clients.push(tokio::spawn(client(
            (index, node),
            reconnect,
            shared.clone(),
            subscriber,
            stop_rx.clone(),
        )));
    }
    let connect_time = connect_started.elapsed();
    for (&addr, &share) in addrs.iter().zip(&shares) {
        api::wait_for_connections(addr, share as u64, Duration::from_secs(60)).await?;
    }
    let expected_cut = shares[KILLED_NODE];
    eprintln!(
        "connected in {:.2} s; publishing at {}/s, killing {} in {} s…",
        connect_time.as_secs_f64(),
        args.rate,
        if is_cluster { "node 0" } else { "the hub" },
        args.before_secs
    );

    let stop_publishing = Arc::new(AtomicBool::new(false));
    // The publisher runs on a thread and a runtime of its own: its latency is the hub's, not the
    // time this process's 19 000 reconnecting clients keep its runtime busy.
    let publishing = {
        let (path, shared, stop) = (
            publish_path.clone(),
            shared.clone(),
            stop_publishing.clone(),
        );
        let rate = args.rate;
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("publisher".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a runtime for the publisher");
                let log = runtime.block_on(publisher(publish_addr, path, rate, shared, stop));
                let _ = done_tx.send(log);
            })
            .context("starting the publisher's thread")?;
        done_rx
    };
    tokio::time::sleep(Duration::from_secs_f64(args.before_secs)).await;

    let other_cpu_before: Vec<_> = (0..addrs.len())
        .filter(|&node| node != KILLED_NODE)
        .map(|node| crate::proc::cpu_time(deployment.node_pid(node)))
        .collect::<Result<_, _>>()?;
    let bench_cpu_before = crate::proc::cpu_time(std::process::id())?;
    shared.killed.store(true, Ordering::Relaxed);
    let kill_ns = shared.now_ns();
    deployment.kill_node(KILLED_NODE);
    let acked_at_kill = shared.acked.load(Ordering::Acquire);
    let started_ns = shared.now_ns();
    tokio::task::block_in_place(|| deployment.restart_node(KILLED_NODE))?;
    let listening_ns = shared.now_ns();
    let new_pid = deployment.node_pid(KILLED_NODE);
    eprintln!("restarted as pid {new_pid}; waiting for the clients…");
    let first_answer_ns = first_publish_answer(addrs[KILLED_NODE], &shared).await?;

    let deadline = Instant::now() + Duration::from_secs(args.timeout_secs);
    let mut all_back_ns = 0;
    while shared.caught_up.load(Ordering::Relaxed) < expected_cut {
        if all_back_ns == 0 && shared.back.load(Ordering::Relaxed) >= expected_cut {
            all_back_ns = shared.now_ns();
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "after {} s, {} of {expected_cut} cut clients were back and {} caught up",
            args.timeout_secs,
            shared.back.load(Ordering::Relaxed),
            shared.caught_up.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let caught_up_ns = shared.now_ns();
    if all_back_ns == 0 {
        all_back_ns = caught_up_ns;
    }
    let restarted_cpu = crate::proc::cpu_time(new_pid)?;
    let other_cpu: Vec<_> = (0..addrs.len())
        .filter(|&node| node != KILLED_NODE)
        .zip(other_cpu_before)
        .map(|(node, before)| {
            crate::proc::cpu_time(deployment.node_pid(node)).map(|now| now.since(before))
        })
        .collect::<Result<_, _>>()?;
    let bench_cpu = crate::proc::cpu_time(std::process::id())?.since(bench_cpu_before);
    let restarted_memory = crate::proc::memory(new_pid)?;

    tokio::time::sleep(Duration::from_secs_f64(args.after_secs)).await;
    stop_publishing.store(true, Ordering::Relaxed);
    let log = publishing.await.context("the publisher panicked")?;
    let acked = shared.acked.load(Ordering::Acquire);
    let drain_deadline = Instant::now() + DRAIN_TIMEOUT;
    while Instant::now() < drain_deadline {
        let stats = deployment.stats().await?;
        if stats.connections as usize >= args.clients {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    shared.stop.store(true, Ordering::Relaxed);
    let _ = stop_tx.send(true);
    let mut results = Vec::with_capacity(clients.len());
    for task in clients {
        results.push(task.await.context("a client panicked")?);
    }
    deployment.ensure_running()?;

    let (mut missing, mut incomplete, mut duplicates, mut replayed) = (0u64, 0u64, 0u64, 0u64);
    let (mut failed, mut resumed_false, mut cut) = (0u64, 0u64, 0u64);
    let mut catch_up_ns = Vec::new();
    let mut failures: std::collections::BTreeMap<String, u64> = std::collections::BTreeMap::new();
    for client in &results {
        let lacking = (0..acked).filter(|&seq| !client.has(seq)).count() as u64;
        missing += lacking;
        incomplete += u64::from(lacking > 0);
        duplicates += client.duplicates;
        replayed += client.replayed;
        failed += client.failed_attempts;
        for (why, count) in &client.failures {
            *failures.entry(why.clone()).or_default() += count;
        }
        resumed_false += client.resumed_false;
        if client.was_cut {
            cut += 1;
            catch_up_ns.push(client.caught_up_ns.saturating_sub(started_ns));
        }
    }
    // The latencies of the publishes sent within `sent_ns`.
    let sent_within = |sent_ns: std::ops::Range<u64>| -> Vec<u64> {
        log.answers
            .iter()
            .filter(|(sent, _)| sent_ns.contains(sent))
            .map(|&(_, latency)| latency)
            .collect()
    };
    let storm = sent_within(started_ns..caught_up_ns + 1);
    // The storm's publishes sent once the restarted hub had answered one: what a publisher sees
    // once the hub serves, apart from those that waited for it to start.
    let serving = sent_within(first_answer_ns..caught_up_ns + 1);
    // Before the kill, the same publisher to the same hub with no storm: the baseline.
    let before = sent_within(0..kill_ns);
    let gap_ns = log
        .answers
        .windows(2)
        .map(|pair| pair[1].0 + pair[1].1 - (pair[0].0 + pair[0].1))
        .max()
        .unwrap_or(0);
    let whole = Latencies::from_unsorted(log.answers.iter().map(|&(_, l)| l).collect());
    let storm_count = storm.len() as u64;
    let storm = Latencies::from_unsorted(storm);
    let before_count = before.len() as u64;
    let before = Latencies::from_unsorted(before);
    let serving_count = serving.len() as u64;
    let serving = Latencies::from_unsorted(serving);
    let catch_up = Latencies::from_unsorted(catch_up_ns);
    let secs = |ns: u64| ns as f64 / 1e9;

    let mut report = Report::new("restart");
    report.section("load");
    report.add("clients", "clients", args.clients as u64, "");
    report.add("clientsCut", "clients cut by the kill", cut, "");
    report.add(
        "historyEvents",
        "events in history before",
        args.history,
        "",
    );
    report.add(
        "fillSeconds",
        "time to fill the history",
        fill_time.as_secs_f64(),
        "s",
    );
    report.add("rate", "publish rate", args.rate, "events/s");
    report.add("acknowledged", "events acknowledged", acked, "");
    report.add(
        "acknowledgedAtKill",
        "  of which before the kill",
        acked_at_kill,
        "",
    );
    report.add(
        "freshConnectSeconds",
        "time to connect every client fresh (start)",
        connect_time.as_secs_f64(),
        "s",
    );

    report.section("recovery (from the restarted process's start)");
    report.add(
        "killToStartMs",
        "kill → new process started",
        (started_ns - kill_ns) as f64 / 1e6,
        "ms",
    );
    report.add(
        "listeningSeconds",
        "start → address printed",
        secs(listening_ns - started_ns),
        "s",
    );
    report.add(
        "servingSeconds",
        "start → first publish answered by it",
        secs(first_answer_ns.saturating_sub(started_ns)),
        "s",
    );
    report.add(
        "allBackSeconds",
        "start → every cut client reconnected",
        secs(all_back_ns - started_ns),
        "s",
    );
    report.add(
        "caughtUpSeconds",
        "start → every cut client has what it missed",
        secs(caught_up_ns - started_ns),
        "s",
    );
    report.add(
        "caughtUpVsFresh",
        "  ÷ time of the fresh connects",
        secs(caught_up_ns - started_ns) / connect_time.as_secs_f64().max(1e-9),
        "×",
    );
    report.add(
        "catchUpP50Seconds",
        "per client caught up, p50",
        secs(catch_up.quantile_ns(0.5)),
        "s",
    );
    report.add(
        "catchUpP99Seconds",
        "per client caught up, p99",
        secs(catch_up.quantile_ns(0.99)),
        "s",
    );
    report.add(
        "replayedEvents",
        "events replayed to cut clients",
        replayed,
        "",
    );
    report.add(
        "resumedFalse",
        "connected events with resumed:false",
        resumed_false,
        "",
    );
    report.add(
        "failedAttempts",
        "client connect attempts failed",
        failed,
        "",
    );
    let mut failures: Vec<(String, u64)> = failures.into_iter().collect();
    failures.sort_by_key(|(_, count)| std::cmp::Reverse(*count));
    let why = failures
        .iter()
        .take(3)
        .map(|(why, count)| format!("{count} × {why}"))
        .collect::<Vec<_>>()
        .join("; ");
    report.add("failedAttemptsWhy", "  most common", why, "");

    report.section("CPU and memory, start → every client caught up");
    report.add(
        "restartedCpuSeconds",
        "restarted hub CPU (all of its life)",
        restarted_cpu.total().as_secs_f64(),
        "s",
    );
    report.add(
        "restartedUserSeconds",
        "  of which user",
        restarted_cpu.user.as_secs_f64(),
        "s",
    );
    for time in &other_cpu {
        report.add(
            "otherNodeCpuSeconds",
            "other node CPU",
            time.total().as_secs_f64(),
            "s",
        );
    }
    report.add(
        "benchCpuSeconds",
        "load generator CPU",
        bench_cpu.total().as_secs_f64(),
        "s",
    );
    report.add(
        "restartedRssKib",
        "restarted hub VmRSS at catch-up",
        restarted_memory.rss_kib,
        "KiB",
    );

    report.section("publishes (request written → answer read)");
    report.add(
        "publishFailedAttempts",
        "attempts failed (hub down)",
        log.failed_attempts,
        "",
    );
    report.add(
        "publishGapSeconds",
        "longest time between two answers",
        secs(gap_ns),
        "s",
    );
    report.add(
        "beforeKillPublishes",
        "answered before the kill (no storm)",
        before_count,
        "",
    );
    report.add(
        "beforeKillP50Ms",
        "  those, p50",
        before.quantile_ns(0.5) as f64 / 1e6,
        "ms",
    );
    report.add(
        "beforeKillP99Ms",
        "  those, p99",
        before.quantile_ns(0.99) as f64 / 1e6,
        "ms",
    );
    report.add(
        "stormPublishes",
        "answered during the storm",
        storm_count,
        "",
    );
    report.add(
        "stormP50Ms",
        "storm p50",
        storm.quantile_ns(0.5) as f64 / 1e6,
        "ms",
    );
    report.add(
        "stormP99Ms",
        "storm p99",
        storm.quantile_ns(0.99) as f64 / 1e6,
        "ms",
    );
    let slowest = log
        .answers
        .iter()
        .filter(|(sent, _)| (started_ns..=caught_up_ns).contains(sent))
        .max_by_key(|&&(_, latency)| latency);
    report.add(
        "stormSlowestSentSeconds",
        "  the slowest sent this long after start",
        slowest.map_or(0.0, |&(sent, _)| secs(sent - started_ns)),
        "s",
    );
    report.add(
        "stormMaxMs",
        "storm max",
        storm.quantile_ns(1.0) as f64 / 1e6,
        "ms",
    );
    report.add(
        "stormServingPublishes",
        "  of which sent once it served (after its first answer)",
        serving_count,
        "",
    );
    report.add(
        "stormServingP50Ms",
        "  those, p50",
        serving.quantile_ns(0.5) as f64 / 1e6,
        "ms",
    );
    report.add(
        "stormServingP99Ms",
        "  those, p99",
        serving.quantile_ns(0.99) as f64 / 1e6,
        "ms",
    );
    report.add(
        "wholeP50Ms",
        "whole run p50",
        whole.quantile_ns(0.5) as f64 / 1e6,
        "ms",
    );
    report.add(
        "wholeP99Ms",
        "whole run p99",
        whole.quantile_ns(0.99) as f64 / 1e6,
        "ms",
    );

    report.section("nothing lost (every client, every acknowledged event)");
    report.add("missing", "missing", missing, "");
    report.add(
        "incompleteClients",
        "clients missing events",
        incomplete,
        "",
    );
    report.add("duplicates", "duplicates", duplicates, "");
    report.add(
        "hubLogProblems",
        "hub WARN/ERROR log lines",
        deployment.problems(),
        "",
    );
    Ok(report)
}

/// Publishes to a channel nobody reads on `addr` until it answers 2xx; returns when.
async fn first_publish_answer(addr: SocketAddr, shared: &Shared) -> anyhow::Result<u64> {
    api::wait_until_publishing(addr, Duration::from_secs(30)).await?;
    Ok(shared.now_ns())
}
