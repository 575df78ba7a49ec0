//! `fanout`: N subscribers on one channel, M events published at a steady rate.
//!
//! Measures deliveries per second, publish-to-receive latency, the hub's CPU time per delivered
//! event and its resident memory per connection, and checks that every subscriber got every
//! event. Each event's data is `"<seq> <ns since the run's epoch>"` (padded with `x` to
//! `--payload-bytes`), stamped just before its request is written, so latency includes the
//! publish request's trip through the hub's HTTP layer. Publishing is pipelined on keep-alive
//! connections (`--publish-connections` per node it goes to), so the publish rate does not depend
//! on the hub's answer time as long as one connection's answers keep up with its share of the rate.
//! In a cluster the subscribers are spread evenly over the nodes and the figures are summed over
//! them (Redis's own CPU time is shown apart).
//!
//! One file on purpose (about 700 lines before its tests): the run's phases (connect, publish,
//! drain, report) share the subscribers' bitmaps and the hub's readings, and reading it top to
//! bottom is reading one run. The load tool is not part of the product.

use crate::{
    api,
    deployment::{Deployment, PublishTo},
    http::{self, ResponseReader},
    latency::Latencies,
    proc::CpuTime,
    report::{CpuPer, Report},
    subscriber::Subscriber,
    swarm,
    transport::{self, BoxIo},
};
use anyhow::Context;
use std::{
    collections::BTreeMap,
    net::SocketAddr,
    time::{Duration, Instant},
};
use tokio::{io::AsyncWriteExt, sync::watch};

/// Time the hub gets to settle after start-up before its baseline memory is read.
const SETTLE: Duration = Duration::from_millis(500);
/// Time the hub gets to register every stream in its stats.
const REGISTER_TIMEOUT: Duration = Duration::from_secs(30);

/// Flags of `herald-bench fanout`.
#[derive(Debug, clap::Args)]
pub(crate) struct FanoutArgs {
    /// Streams open on the channel.
    #[arg(long, default_value_t = 1000)]
    subscribers: usize,
    /// Events published.
    #[arg(long, default_value_t = 200)]
    events: u64,
    /// Events published per second.
    #[arg(long, default_value_t = 20.0)]
    rate: f64,
    /// Length of each event's data text, padded with `x`; anything shorter than the sequence
    /// number and timestamp it carries (about 20 bytes), such as 0, sends just those.
    #[arg(long, default_value_t = 0)]
    payload_bytes: usize,
    /// The channel used.
    #[arg(long, default_value = "bench")]
    channel: String,
    /// Stream handshakes in flight at once.
    #[arg(long, default_value_t = swarm::CONNECT_CONCURRENCY_DEFAULT)]
    connect_concurrency: usize,
    /// Seconds to wait after the last publish for the last deliveries.
    #[arg(long, default_value_t = 10)]
    drain_timeout_secs: u64,
    /// In a cluster, which node takes the publishes: `first`, or `round-robin` (event `i` goes to
    /// node `i mod N`).
    #[arg(long, value_enum, default_value_t = PublishTo::First)]
    publish_to: PublishTo,
    /// Pipelined publish connections per node that takes publishes; events take turns over
    /// them. A hub answers one connection's requests in order, so one connection carries at most
    /// one publish per answer time (in a cluster, a round trip through Redis).
    #[arg(long, default_value_t = 1)]
    publish_connections: usize,
    /// After the hub, run the same load against the floor (`herald-bench floor-serve`: one
    /// thread, one `write` per delivery, nothing else) and report the hub/floor ratios.
    #[arg(long)]
    vs_floor: bool,
}

impl FanoutArgs {
    /// Streams this run opens.
    pub(crate) fn subscribers(&self) -> usize {
        self.subscribers
    }

    /// Whether the floor runs after the hub.
    pub(crate) fn vs_floor(&self) -> bool {
        self.vs_floor
    }
}

/// The figures compared between the hub and the floor, with their labels.
const FLOOR_FIGURES: [(&str, &str); 6] = [
    ("hubCpuPerDeliveryUs", "CPU per delivered event"),
    ("hubUserPerDeliveryUs", "  of which user"),
    ("hubSystemPerDeliveryUs", "  of which system"),
    ("latencyP50Ms", "latency p50"),
    ("latencyP99Ms", "latency p99"),
    ("deliveriesPerSecond", "deliveries per second"),
];

/// The hub's figures beside the floor's, as ratios (hub ÷ floor).
pub(crate) fn floor_comparison(hub: &Report, floor: &Report) -> Report {
    let mut report = Report::new("fanout --vs-floor");
    report.section("hub ÷ floor, same load, same run");
    for (key, label) in FLOOR_FIGURES {
        if let (Some(h), Some(f)) = (hub.number(key), floor.number(key)) {
            let ratio = if f > 0.0 { h / f } else { 0.0 };
            report.add(key, label, format!("{h:.3} / {f:.3} = {ratio:.2}×"), "");
        }
    }
    report
}

/// What one subscriber received.
#[derive(Debug)]
struct Tally {
    /// Bit `seq` is set once event `seq` arrived.
    seen: Vec<u64>,
    distinct: u64,
    duplicates: u64,
    /// `data:` lines that are not one of this run's events.
    foreign: u64,
    latencies_ns: Vec<u64>,
    last_received_ns: u64,
    /// Why the stream stopped before every event arrived.
    end: Option<String>,
}

impl Tally {
    fn new(events: u64) -> Self {
        Self {
            seen: vec![0; events.div_ceil(64) as usize],
            distinct: 0,
            duplicates: 0,
            foreign: 0,
            latencies_ns: Vec::with_capacity(events as usize),
            last_received_ns: 0,
            end: None,
        }
    }

    fn record_line(&mut self, line: &[u8], received_ns: u64, events: u64) {
        if let Some(data) = line.strip_prefix(b"data: ") {
            let Some((seq, sent_ns)) = parse_data(data).filter(|(seq, _)| *seq < events) else {
                self.foreign += 1;
                return;
            };
            let (word, bit) = ((seq / 64) as usize, 1u64 << (seq % 64));
            if self.seen[word] & bit != 0 {
                self.duplicates += 1;
                return;
            }
            self.seen[word] |= bit;
            self.distinct += 1;
            self.latencies_ns.push(received_ns.saturating_sub(sent_ns));
            self.last_received_ns = received_ns;
        } else if line.starts_with(b": closed") {
            self.end = Some(String::from_utf8_lossy(&line[2..]).into_owned());
        }
    }
}

/// Parses `"<seq> <sent_ns>[ padding]"`.
fn parse_data(data: &[u8]) -> Option<(u64, u64)> {
    let mut fields = data.split(|&b| b == b' ');
    let mut number = || -> Option<u64> { std::str::from_utf8(fields.next()?).ok()?.parse().ok() };
    Some((number()?, number()?))
}

/// The data text of event `seq`, stamped `sent_ns` and padded to `len` bytes.
fn data_text(seq: u64, sent_ns: u64, len: usize) -> String {
    let mut text = format!("{seq} {sent_ns}");
    if text.len() + 1 < len {
        text.push(' ');
        let pad = len - text.len();
        text.push_str(&"x".repeat(pad));
    }
    text
}

/// Reads one stream until every event arrived, the stream ended, or `stop_rx` fires.
async fn receive(
    mut subscriber: Subscriber,
    events: u64,
    epoch: Instant,
    mut stop_rx: watch::Receiver<bool>,
) -> Tally {
    let mut tally = Tally::new(events);
    while tally.distinct < events {
        let read = tokio::select! {
            read = subscriber.read() => read,
            _ = stop_rx.changed() => {
                tally.end.get_or_insert_with(|| "still waiting at the drain deadline".into());
                break;
            }
        };
        match read {
            Ok(true) => {}
            Ok(false) => {
                tally.end.get_or_insert_with(|| "ended by the hub".into());
                break;
            }
            Err(err) => {
                tally.end = Some(format!("read failed: {err}"));
                break;
            }
        }
        let received_ns = epoch.elapsed().as_nanos() as u64;
        let drained =
            subscriber.drain_lines(&mut |line| tally.record_line(line, received_ns, events));
        if let Err(err) = drained {
            tally.end = Some(format!("bad framing: {err}"));
            break;
        }
    }
    tally
}

/// What the publisher saw.
#[derive(Debug, Default)]
struct Published {
    first_sent_ns: u64,
    last_sent_ns: u64,
    /// Answers that were not 2xx.
    failures: u64,
    /// 2xx answers whose `recipients` differed from the number of subscribers on the node that
    /// answered (in a cluster a node counts only its own connections).
    recipient_mismatches: u64,
    /// The first unexpected answer, verbatim.
    first_problem: Option<String>,
}

/// A node that takes publishes, and the `recipients` its answers should report: the subscribers
/// connected to that node.
#[derive(Debug, Clone, Copy)]
struct PublishTarget {
    addr: SocketAddr,
    recipients: u64,
}

/// Publishes `args.events` events at `args.rate` per second; event `seq` goes to target
/// `seq mod targets.len()`, each target on its own pipelined keep-alive connection.
async fn publish(
    targets: &[PublishTarget],
    args: &FanoutArgs,
    epoch: Instant,
) -> anyhow::Result<Published> {
    let events = args.events;
    let mut write_halves = Vec::with_capacity(targets.len());
    let mut answer_readers = Vec::with_capacity(targets.len());
    for (index, target) in targets.iter().enumerate() {
        let socket = transport::connect(target.addr)
            .await
            .context("connecting the publisher")?;
        let (read_half, write_half) = tokio::io::split(socket);
        write_halves.push(write_half);
        let answers = (index as u64..events).step_by(targets.len()).count() as u64;
        answer_readers.push(tokio::spawn(read_answers(
            read_half,
            answers,
            target.recipients,
        )));
    }

    let path = api::publish_path(&args.channel);
    let interval = Duration::from_secs_f64(1.0 / args.rate);
    let start = tokio::time::Instant::now();
    let (mut first_sent_ns, mut last_sent_ns) = (0, 0);
    for seq in 0..events {
        let due = start + interval.mul_f64(seq as f64);
        if due > tokio::time::Instant::now() {
            tokio::time::sleep_until(due).await;
        }
        let sent_ns = epoch.elapsed().as_nanos() as u64;
        if seq == 0 {
            first_sent_ns = sent_ns;
        }
        last_sent_ns = sent_ns;
        let body = serde_json::json!({ "data": data_text(seq, sent_ns, args.payload_bytes) });
        let request = http::post_json_request(&path, body.to_string().as_bytes());
        let write_half = &mut write_halves[seq as usize % targets.len()];
        write_half
            .write_all(&request)
            .await
            .context("writing a publish request")?;
        // Over TLS, what the socket did not take yet waits in the session until a flush.
        write_half
            .flush()
            .await
            .context("writing a publish request")?;
    }
    let mut published = Published {
        first_sent_ns,
        last_sent_ns,
        ..Published::default()
    };
    for reader in answer_readers {
        let answers = reader
            .await
            .context("the publish answer reader panicked")?
            .context("reading publish answers")?;
        published.failures += answers.failures;
        published.recipient_mismatches += answers.recipient_mismatches;
        if published.first_problem.is_none() {
            published.first_problem = answers.first_problem;
        }
    }
    Ok(published)
}

/// Reads `answers` publish answers off one connection, expecting `subscribers` recipients each.
async fn read_answers(
    read_half: tokio::io::ReadHalf<BoxIo>,
    answers: u64,
    subscribers: u64,
) -> anyhow::Result<Published> {
    let mut reader = ResponseReader::new(read_half);
    let mut published = Published::default();
    for _ in 0..answers {
        let (status, body) = reader.read_response().await?;
        let recipients = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|answer| answer.get("recipients")?.as_u64());
        let is_failure = !(200..300).contains(&status);
        if is_failure {
            published.failures += 1;
        } else if recipients != Some(subscribers) {
            published.recipient_mismatches += 1;
        }
        if (is_failure || recipients != Some(subscribers)) && published.first_problem.is_none() {
            published.first_problem = Some(format!("{status} {}", String::from_utf8_lossy(&body)));
        }
    }
    Ok(published)
}

/// `[334, 333, 333]` as `"334 / 333 / 333"`.
fn join(counts: &[usize]) -> String {
    counts
        .iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join(" / ")
}

/// Runs the fan-out benchmark against `hub`.
///
/// # Errors
/// When the hub cannot be reached, a stream fails to open, or the hub dies.
pub(crate) async fn run(deployment: &mut Deployment, args: &FanoutArgs) -> anyhow::Result<Report> {
    anyhow::ensure!(args.rate > 0.0, "--rate must be positive");
    anyhow::ensure!(args.events > 0, "--events must be positive");
    let addrs = deployment.addrs();
    let shares = deployment.spread(args.subscribers);
    let epoch = Instant::now();
    deployment.stats().await?;
    tokio::time::sleep(SETTLE).await;
    let baseline = deployment.memory()?;

    eprintln!(
        "connecting {} subscribers ({} per node)…",
        args.subscribers,
        join(&shares)
    );
    let (stop_tx, stop_rx) = watch::channel(false);
    let events = args.events;
    let connect_started = Instant::now();
    let mut tasks = Vec::with_capacity(args.subscribers);
    for (&addr, &share) in addrs.iter().zip(&shares) {
        let stop_rx = stop_rx.clone();
        let (node_tasks, _) = swarm::spawn(
            addr,
            &api::stream_path(&args.channel),
            share,
            args.connect_concurrency,
            move |subscriber| receive(subscriber, events, epoch, stop_rx.clone()),
        )
        .await?;
        tasks.extend(node_tasks);
    }
    let connect_time = connect_started.elapsed();
    for (&addr, &share) in addrs.iter().zip(&shares) {
        api::wait_for_connections(addr, share as u64, REGISTER_TIMEOUT).await?;
    }
    let connected = deployment.memory()?;
    let stats_before = deployment.stats().await?;
    let redis_before = deployment.redis_usage().await?;
    deployment.ensure_running()?;

    let publish_nodes = match args.publish_to {
        PublishTo::First => 1,
        PublishTo::RoundRobin => addrs.len(),
    };
    // Connection `i` goes to node `i mod publish_nodes`, so consecutive events take turns.
    let targets: Vec<PublishTarget> = (0..publish_nodes * args.publish_connections.max(1))
        .map(|index| {
            let node = index % publish_nodes;
            PublishTarget {
                addr: addrs[node],
                recipients: shares[node] as u64,
            }
        })
        .collect();
    eprintln!(
        "connected in {:.1} s; publishing {} events at {}/s to {} node(s) on {} connection(s)…",
        connect_time.as_secs_f64(),
        args.events,
        args.rate,
        publish_nodes,
        targets.len()
    );
    let hub_cpu_before = deployment.cpu_time()?;
    let node_cpu_before = deployment.cpu_time_by_node()?;
    let redis_cpu_before = deployment.redis().map(|r| r.cpu_time()).transpose()?;
    let bench_cpu_before = crate::proc::cpu_time(std::process::id())?;
    let published = publish(&targets, args, epoch).await?;

    let deadline = tokio::time::Instant::now() + Duration::from_secs(args.drain_timeout_secs);
    let mut tallies = Vec::with_capacity(tasks.len());
    let mut is_stopped = false;
    for mut task in tasks {
        let tally = match tokio::time::timeout_at(deadline, &mut task).await {
            Ok(joined) => joined,
            Err(_) => {
                if !is_stopped {
                    let _ = stop_tx.send(true);
                    is_stopped = true;
                }
                task.await
            }
        };
        tallies.push(tally.context("a subscriber task panicked")?);
    }
    let hub_cpu = deployment.cpu_time()?.since(hub_cpu_before);
    let node_cpu: Vec<CpuTime> = deployment
        .cpu_time_by_node()?
        .into_iter()
        .zip(node_cpu_before)
        .map(|(now, before)| now.since(before))
        .collect();
    let redis_cpu = match (deployment.redis(), redis_cpu_before) {
        (Some(redis), Some(before)) => Some(redis.cpu_time()?.since(before)),
        _ => None,
    };
    let bench_cpu = crate::proc::cpu_time(std::process::id())?.since(bench_cpu_before);
    let after = deployment.memory()?;
    deployment.ensure_running()?;
    let stats_after = deployment.stats().await?;
    let redis_after = deployment.redis_usage().await?;

    let subscribers = args.subscribers as u64;
    let expected = subscribers * args.events;
    // Tasks were spawned node by node, so the first `shares[0]` tallies are node 0's, and so on.
    let node_of_tally = shares
        .iter()
        .enumerate()
        .flat_map(|(node, &share)| std::iter::repeat_n(node, share));
    let mut latencies_by_node: Vec<Vec<u64>> = vec![Vec::new(); shares.len()];
    let (mut delivered, mut duplicates, mut foreign, mut incomplete) = (0u64, 0u64, 0u64, 0u64);
    let mut last_received_ns = 0;
    let mut ends: BTreeMap<String, u64> = BTreeMap::new();
    for (tally, node) in tallies.into_iter().zip(node_of_tally) {
        let Some(tally) = tally else { continue };
        delivered += tally.distinct;
        duplicates += tally.duplicates;
        foreign += tally.foreign;
        last_received_ns = last_received_ns.max(tally.last_received_ns);
        if tally.distinct < args.events {
            incomplete += 1;
            *ends
                .entry(tally.end.unwrap_or_else(|| "unknown".into()))
                .or_default() += 1;
        }
        latencies_by_node[node].extend(tally.latencies_ns);
    }
    let node_latencies: Vec<Latencies> = latencies_by_node
        .into_iter()
        .map(Latencies::from_unsorted)
        .collect();
    let latencies = Latencies::merge(&node_latencies);
    let window_s = (last_received_ns.saturating_sub(published.first_sent_ns)) as f64 / 1e9;
    let publish_span_s = (published
        .last_sent_ns
        .saturating_sub(published.first_sent_ns)) as f64
        / 1e9;

    let mut report = Report::new("fanout");
    report.section("load");
    report.add("subscribers", "subscribers", subscribers, "");
    if shares.len() > 1 {
        report.add(
            "subscribersPerNode",
            "subscribers per node",
            join(&shares),
            "",
        );
        report.add(
            "publishNodes",
            "nodes taking publishes",
            publish_nodes as u64,
            "",
        );
    }
    report.add(
        "publishConnections",
        "publish connections",
        targets.len() as u64,
        "",
    );
    report.add("events", "events published", args.events, "");
    report.add("rateTarget", "publish rate asked", args.rate, "events/s");
    let achieved = if publish_span_s > 0.0 {
        (args.events - 1) as f64 / publish_span_s
    } else {
        0.0
    };
    report.add(
        "rateAchieved",
        "publish rate achieved",
        achieved,
        "events/s",
    );
    let data_len = data_text(args.events - 1, published.last_sent_ns, args.payload_bytes).len();
    report.add("dataBytes", "data text per event", data_len as u64, "bytes");
    report.add(
        "connectSeconds",
        "time to connect all",
        connect_time.as_secs_f64(),
        "s",
    );

    report.section("delivery");
    report.add("deliveriesExpected", "deliveries expected", expected, "");
    report.add("deliveries", "deliveries received", delivered, "");
    report.add("missing", "missing", expected - delivered, "");
    report.add("duplicates", "duplicates", duplicates, "");
    report.add("foreignDataLines", "unexpected data lines", foreign, "");
    report.add(
        "incompleteSubscribers",
        "subscribers missing events",
        incomplete,
        "",
    );
    let ends = ends
        .into_iter()
        .map(|(reason, count)| format!("{count} × {reason}"))
        .collect::<Vec<_>>()
        .join("; ");
    if incomplete > 0 {
        report.add("incompleteReasons", "why", ends, "");
    }
    report.add(
        "publishFailures",
        "publish answers not 2xx",
        published.failures,
        "",
    );
    report.add(
        "recipientMismatches",
        "publish answers with unexpected recipients",
        published.recipient_mismatches,
        "",
    );
    if let Some(problem) = published.first_problem {
        report.add(
            "firstPublishProblem",
            "first unexpected answer",
            problem,
            "",
        );
    }
    report.add(
        "hubEventsPublished",
        "hub's eventsPublished during the run",
        stats_after.events_published - stats_before.events_published,
        "",
    );
    report.add(
        "hubEventsDelivered",
        "hub's eventsDelivered during the run",
        stats_after.events_delivered - stats_before.events_delivered,
        "",
    );
    report.add(
        "hubLogProblems",
        "hub WARN/ERROR log lines",
        deployment.problems(),
        "",
    );

    report.section("throughput and latency (publish request written → data line read)");
    report.add(
        "windowSeconds",
        "first publish → last delivery",
        window_s,
        "s",
    );
    let per_second = if window_s > 0.0 {
        delivered as f64 / window_s
    } else {
        0.0
    };
    report.add(
        "deliveriesPerSecond",
        "deliveries per second",
        per_second,
        "/s",
    );
    latencies.add_to(&mut report);
    if node_latencies.len() > 1 {
        let by_node = node_latencies
            .iter()
            .map(|node| {
                format!(
                    "{:.1}/{:.1}",
                    node.quantile_ns(0.50) as f64 / 1e6,
                    node.quantile_ns(0.99) as f64 / 1e6
                )
            })
            .collect::<Vec<_>>()
            .join(" ");
        report.add(
            "latencyP50P99ByNodeMs",
            "latency p50/p99 by node",
            by_node,
            "ms",
        );
    }

    report.section("hub CPU (utime+stime, 10 ms ticks) from first publish to last delivery");
    let per_delivery = CpuPer {
        count: delivered,
        keys: [
            "hubCpuPerDeliveryUs",
            "hubUserPerDeliveryUs",
            "hubSystemPerDeliveryUs",
        ],
        label: "hub CPU per delivered event",
    };
    report.add_hub_cpu(hub_cpu, &node_cpu, &per_delivery);
    report.add(
        "benchCpuSeconds",
        "load generator CPU (same cores)",
        bench_cpu.total().as_secs_f64(),
        "s",
    );
    if let Some(redis_cpu) = redis_cpu {
        report.add(
            "redisCpuSeconds",
            "redis-server CPU",
            redis_cpu.total().as_secs_f64(),
            "s",
        );
        report.add(
            "clusterCpuPerDeliveryUs",
            "nodes + redis CPU per delivered event",
            per_delivery.micros(hub_cpu.total() + redis_cpu.total()),
            "µs",
        );
    }
    if let (Some(before), Some(after)) = (redis_before, redis_after) {
        report.section("redis");
        report.add(
            "redisStreamEntries",
            "entries in the log stream after the run",
            after.stream_len,
            "",
        );
        report.add(
            "redisUsedMemoryGrowthBytes",
            "used_memory growth during the run",
            after.used_memory as i64 - before.used_memory as i64,
            "bytes",
        );
    }

    report.section(if shares.len() > 1 {
        "hub memory (summed over the nodes)"
    } else {
        "hub memory"
    });
    report.add(
        "rssBaselineKib",
        "VmRSS before connecting",
        baseline.rss_kib,
        "KiB",
    );
    report.add(
        "rssConnectedKib",
        "VmRSS with all connected",
        connected.rss_kib,
        "KiB",
    );
    let per_connection =
        |now: u64, before: u64| now.saturating_sub(before) as f64 / args.subscribers.max(1) as f64;
    report.add(
        "rssPerConnectionKib",
        "VmRSS per connection",
        per_connection(connected.rss_kib, baseline.rss_kib),
        "KiB",
    );
    report.add(
        "anonPerConnectionKib",
        "RssAnon per connection",
        per_connection(connected.anon_kib, baseline.anon_kib),
        "KiB",
    );
    report.add("rssAfterKib", "VmRSS after the run", after.rss_kib, "KiB");
    report.add("hwmAfterKib", "VmHWM after the run", after.hwm_kib, "KiB");
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_text_round_trips_and_pads_to_length() {
        let text = data_text(42, 123_456_789, 64);
        assert_eq!(text.len(), 64);
        assert_eq!(parse_data(text.as_bytes()), Some((42, 123_456_789)));
        assert_eq!(data_text(1, 2, 0), "1 2");
    }

    #[test]
    fn tally_counts_each_event_once() {
        let mut tally = Tally::new(3);
        for line in [
            &b"data: 0 10"[..],
            b"data: 2 10",
            b"data: 2 10",
            b"data: {}",
            b"id: 7",
        ] {
            tally.record_line(line, 15, 3);
        }
        tally.record_line(b": closed: slow consumer", 20, 3);
        assert_eq!((tally.distinct, tally.duplicates, tally.foreign), (2, 1, 1));
        assert_eq!(tally.latencies_ns, [5, 5]);
        assert_eq!(tally.end.as_deref(), Some("closed: slow consumer"));
    }
}
