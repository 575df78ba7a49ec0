//! `publish`: C connections publishing to one channel as fast as the hub answers, for a fixed time.
//!
//! Measures publishes per second and each publish's latency, request written → answer read: with
//! a durable log that spans the commit and its fsync, in a cluster the trip through Redis and back
//! to the node that was asked. Each connection keeps `--pipeline` requests in flight and writes the
//! next as soon as an answer frees a place, so the load is closed-loop: the hub's answer time sets
//! the rate. Optional subscribers (spread over the nodes) count what they receive, so a run also
//! shows whether anything acknowledged was lost. It does not measure delivery latency; `fanout`
//! does.
//!
//! One file on purpose (about 570 lines before its tests): the closed-loop publishers, the
//! optional subscribers and the report share one run's state. The load tool is not part of the
//! product.

use crate::{
    api,
    deployment::{Deployment, PublishTo},
    http::{self, ResponseReader},
    latency::Latencies,
    proc::CpuTime,
    report::{CpuPer, Report},
    subscriber::Subscriber,
    swarm,
};
use anyhow::Context;
use std::{
    collections::BTreeMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};
use tokio::{
    io::AsyncWriteExt,
    net::TcpStream,
    sync::{mpsc, watch, Semaphore},
    time::Instant,
};

/// Time the hub gets to settle after start-up before the run.
const SETTLE: Duration = Duration::from_millis(500);
/// Time the hub gets to register every stream in its stats.
const REGISTER_TIMEOUT: Duration = Duration::from_secs(30);
/// Pause between two looks at the delivery count while draining.
const DRAIN_POLL_INTERVAL: Duration = Duration::from_millis(20);

/// Flags of `herald-bench publish`.
#[derive(Debug, clap::Args)]
pub(crate) struct PublishArgs {
    /// Keep-alive connections publishing at once.
    #[arg(long, default_value_t = 1)]
    publishers: usize,
    /// Requests each connection keeps in flight (pipelined); 1 waits for each answer before
    /// writing the next request.
    #[arg(long, default_value_t = 1)]
    pipeline: usize,
    /// Seconds to publish for.
    #[arg(long, default_value_t = 10.0)]
    duration_secs: f64,
    /// Streams open on the channel while publishing, spread over the nodes; each counts the
    /// events it receives.
    #[arg(long, default_value_t = 0)]
    subscribers: usize,
    /// Length of each event's data text, padded with `x`; anything shorter than the publisher and
    /// sequence numbers it carries, such as 0, sends just those.
    #[arg(long, default_value_t = 0)]
    payload_bytes: usize,
    /// Give every event a publisher id (`"id": "p<publisher>-<seq>"`), which the hub records for
    /// idempotency (in a cluster, a Redis key per event that lives as long as history's age
    /// limit).
    #[arg(long)]
    with_ids: bool,
    /// The channel used.
    #[arg(long, default_value = "bench")]
    channel: String,
    /// In a cluster, which node each publisher uses: `first`, or `round-robin` (publisher `i`
    /// uses node `i mod N`).
    #[arg(long, value_enum, default_value_t = PublishTo::First)]
    publish_to: PublishTo,
    /// Stream handshakes in flight at once.
    #[arg(long, default_value_t = swarm::CONNECT_CONCURRENCY_DEFAULT)]
    connect_concurrency: usize,
    /// Seconds to wait after the last answer for the subscribers' last deliveries.
    #[arg(long, default_value_t = 10)]
    drain_timeout_secs: u64,
}

impl PublishArgs {
    /// Streams this run opens.
    pub(crate) fn subscribers(&self) -> usize {
        self.subscribers
    }
}

/// What one publishing connection saw.
#[derive(Debug, Default)]
struct PublisherTally {
    /// 2xx answers.
    acknowledged: u64,
    /// Answers that were not 2xx.
    failures: u64,
    /// The first answer that was not 2xx, verbatim.
    first_problem: Option<String>,
    /// Request written → answer read, for every answer.
    latencies_ns: Vec<u64>,
    /// When the last answer was read.
    last_answer: Option<Instant>,
}

/// The data text of event `seq` of publisher `publisher`, padded to `len` bytes.
fn data_text(publisher: usize, seq: u64, len: usize) -> String {
    let mut text = format!("{publisher} {seq}");
    if text.len() + 1 < len {
        text.push(' ');
        let pad = len - text.len();
        text.push_str(&"x".repeat(pad));
    }
    text
}

/// The JSON body of event `seq` of publisher `publisher`.
fn request_body(args: &PublishArgs, publisher: usize, seq: u64) -> Vec<u8> {
    let data = data_text(publisher, seq, args.payload_bytes);
    let body = if args.with_ids {
        serde_json::json!({ "id": format!("p{publisher}-{seq}"), "data": data })
    } else {
        serde_json::json!({ "data": data })
    };
    body.to_string().into_bytes()
}

/// Publishes on `socket` until `deadline`, `args.pipeline` requests in flight at a time.
async fn publish_until(
    socket: TcpStream,
    publisher: usize,
    args: Arc<PublishArgs>,
    deadline: Instant,
) -> anyhow::Result<PublisherTally> {
    let (read_half, mut write_half) = socket.into_split();
    let window = Arc::new(Semaphore::new(args.pipeline.max(1)));
    let (sent_at_tx, mut sent_at_rx) = mpsc::unbounded_channel::<Instant>();
    let answers = tokio::spawn({
        let window = window.clone();
        async move {
            let mut reader = ResponseReader::new(read_half);
            let mut tally = PublisherTally::default();
            while let Some(sent_at) = sent_at_rx.recv().await {
                let (status, body) = reader.read_response().await?;
                let answered_at = Instant::now();
                window.add_permits(1);
                tally
                    .latencies_ns
                    .push((answered_at - sent_at).as_nanos() as u64);
                tally.last_answer = Some(answered_at);
                if (200..300).contains(&status) {
                    tally.acknowledged += 1;
                } else {
                    tally.failures += 1;
                    tally.first_problem.get_or_insert_with(|| {
                        format!("{status} {}", String::from_utf8_lossy(&body))
                    });
                }
            }
            anyhow::Ok(tally)
        }
    });
    let path = api::publish_path(&args.channel);
    for seq in 0.. {
        window
            .acquire()
            .await
            .expect("the window semaphore is never closed")
            .forget();
        if Instant::now() >= deadline {
            break;
        }
        let request = http::post_json_request(&path, &request_body(&args, publisher, seq));
        let _ = sent_at_tx.send(Instant::now());
        write_half
            .write_all(&request)
            .await
            .context("writing a publish request")?;
    }
    drop(sent_at_tx);
    answers
        .await
        .context("the publish answer reader panicked")?
        .context("reading publish answers")
}

/// Counts the `data:` lines of one stream into `received` until `stop_rx` fires; returns why the
/// stream ended if the hub ended it first.
async fn count(
    mut subscriber: Subscriber,
    received: Arc<AtomicU64>,
    mut stop_rx: watch::Receiver<bool>,
) -> Option<String> {
    let mut closing: Option<String> = None;
    loop {
        let read = tokio::select! {
            read = subscriber.read() => read,
            _ = stop_rx.changed() => return None,
        };
        match read {
            Ok(true) => {}
            Ok(false) => return Some(closing.unwrap_or_else(|| "ended by the hub".into())),
            Err(err) => return Some(format!("read failed: {err}")),
        }
        let mut lines = 0;
        let drained = subscriber.drain_lines(&mut |line| {
            if line.starts_with(b"data: ") {
                lines += 1;
            } else if line.starts_with(b": closed") {
                closing = Some(String::from_utf8_lossy(&line[2..]).into_owned());
            }
        });
        received.fetch_add(lines, Ordering::Relaxed);
        if let Err(err) = drained {
            return Some(format!("bad framing: {err}"));
        }
    }
}

/// Runs the publish benchmark against `deployment`.
///
/// # Errors
/// When a hub cannot be reached, a stream fails to open, or a hub dies.
pub(crate) async fn run(deployment: &mut Deployment, args: PublishArgs) -> anyhow::Result<Report> {
    anyhow::ensure!(args.publishers > 0, "--publishers must be positive");
    anyhow::ensure!(args.pipeline > 0, "--pipeline must be positive");
    anyhow::ensure!(args.duration_secs > 0.0, "--duration-secs must be positive");
    let args = Arc::new(args);
    let addrs = deployment.addrs();
    deployment.stats().await?;
    tokio::time::sleep(SETTLE).await;

    let received = Arc::new(AtomicU64::new(0));
    let (stop_tx, stop_rx) = watch::channel(false);
    let shares = deployment.spread(args.subscribers);
    let mut subscriber_tasks = Vec::with_capacity(args.subscribers);
    if args.subscribers > 0 {
        eprintln!("connecting {} subscribers…", args.subscribers);
        for (&addr, &share) in addrs.iter().zip(&shares) {
            let received = received.clone();
            let stop_rx = stop_rx.clone();
            let (tasks, _) = swarm::spawn(
                addr,
                &api::stream_path(&args.channel),
                share,
                args.connect_concurrency,
                move |subscriber| count(subscriber, received.clone(), stop_rx.clone()),
            )
            .await?;
            subscriber_tasks.extend(tasks);
        }
        for (&addr, &share) in addrs.iter().zip(&shares) {
            api::wait_for_connections(addr, share as u64, REGISTER_TIMEOUT).await?;
        }
    }

    let mut sockets = Vec::with_capacity(args.publishers);
    for publisher in 0..args.publishers {
        let addr = addrs[args.publish_to.node_for(publisher, addrs.len())];
        let socket = TcpStream::connect(addr)
            .await
            .context("connecting a publisher")?;
        socket.set_nodelay(true)?;
        sockets.push(socket);
    }
    let stats_before = deployment.stats().await?;
    let redis_before = deployment.redis_usage().await?;
    let writes_before = deployment.storage_write_bytes()?;
    let memory_before = deployment.memory()?;
    deployment.ensure_running()?;

    eprintln!(
        "publishing for {} s on {} connection(s), {} in flight each…",
        args.duration_secs, args.publishers, args.pipeline
    );
    let hub_cpu_before = deployment.cpu_time()?;
    let node_cpu_before = deployment.cpu_time_by_node()?;
    let redis_cpu_before = deployment.redis().map(|r| r.cpu_time()).transpose()?;
    let bench_cpu_before = crate::proc::cpu_time(std::process::id())?;
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(args.duration_secs);
    let publishers: Vec<_> = sockets
        .into_iter()
        .enumerate()
        .map(|(publisher, socket)| {
            tokio::spawn(publish_until(socket, publisher, args.clone(), deadline))
        })
        .collect();
    let mut tallies = Vec::with_capacity(publishers.len());
    for publisher in publishers {
        tallies.push(publisher.await.context("a publisher panicked")??);
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

    let acknowledged: u64 = tallies.iter().map(|t| t.acknowledged).sum();
    let failures: u64 = tallies.iter().map(|t| t.failures).sum();
    let first_problem = tallies.iter().find_map(|t| t.first_problem.clone());
    let last_answer = tallies
        .iter()
        .filter_map(|t| t.last_answer)
        .max()
        .unwrap_or(started);
    let window_s = (last_answer - started).as_secs_f64();
    let latencies = Latencies::from_unsorted(
        tallies
            .iter_mut()
            .flat_map(|t| std::mem::take(&mut t.latencies_ns))
            .collect(),
    );

    let expected_deliveries = acknowledged * args.subscribers as u64;
    let drain_deadline = Instant::now() + Duration::from_secs(args.drain_timeout_secs);
    while received.load(Ordering::Relaxed) < expected_deliveries && Instant::now() < drain_deadline
    {
        tokio::time::sleep(DRAIN_POLL_INTERVAL).await;
    }
    let _ = stop_tx.send(true);
    let mut ends: BTreeMap<String, u64> = BTreeMap::new();
    for task in subscriber_tasks {
        if let Some(end) = task.await.context("a subscriber task panicked")?.flatten() {
            *ends.entry(end).or_default() += 1;
        }
    }
    let delivered = received.load(Ordering::Relaxed);

    deployment.ensure_running()?;
    let stats_after = deployment.stats().await?;
    let memory_after = deployment.memory()?;
    let redis_after = deployment.redis_usage().await?;
    let writes = deployment
        .storage_write_bytes()?
        .saturating_sub(writes_before);

    let mut report = Report::new("publish");
    report.section("load");
    report.add(
        "publishers",
        "publishing connections",
        args.publishers as u64,
        "",
    );
    report.add(
        "pipeline",
        "requests in flight per connection",
        args.pipeline as u64,
        "",
    );
    if addrs.len() > 1 {
        let nodes_used = (0..args.publishers)
            .map(|publisher| args.publish_to.node_for(publisher, addrs.len()))
            .collect::<std::collections::BTreeSet<_>>()
            .len();
        report.add(
            "publishNodes",
            "nodes taking publishes",
            nodes_used as u64,
            "",
        );
    }
    report.add(
        "durationSeconds",
        "publishing time asked",
        args.duration_secs,
        "s",
    );
    report.add("withIds", "publisher ids", args.with_ids, "");
    let data_len = data_text(args.publishers - 1, acknowledged, args.payload_bytes).len();
    report.add("dataBytes", "data text per event", data_len as u64, "bytes");
    report.add("subscribers", "subscribers", args.subscribers as u64, "");

    report.section("publishes (request written → answer read)");
    report.add("acknowledged", "answered 2xx", acknowledged, "");
    report.add("publishFailures", "answered otherwise", failures, "");
    if let Some(problem) = first_problem {
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
        stats_after
            .events_published
            .saturating_sub(stats_before.events_published),
        "",
    );
    report.add(
        "windowSeconds",
        "first request → last answer",
        window_s,
        "s",
    );
    let per_second = if window_s > 0.0 {
        acknowledged as f64 / window_s
    } else {
        0.0
    };
    report.add(
        "publishesPerSecond",
        "publishes per second",
        per_second,
        "/s",
    );
    latencies.add_to(&mut report);
    report.add(
        "hubLogProblems",
        "hub WARN/ERROR log lines",
        deployment.problems(),
        "",
    );

    if args.subscribers > 0 {
        report.section("delivery (counted, not timed)");
        report.add(
            "deliveriesExpected",
            "acknowledged × subscribers",
            expected_deliveries,
            "",
        );
        report.add("deliveries", "data lines received", delivered, "");
        report.add(
            "missing",
            "missing",
            expected_deliveries.saturating_sub(delivered),
            "",
        );
        report.add(
            "extra",
            "more than expected",
            delivered.saturating_sub(expected_deliveries),
            "",
        );
        let ended: u64 = ends.values().sum();
        report.add("streamsEnded", "streams the hub ended", ended, "");
        if ended > 0 {
            let why = ends
                .into_iter()
                .map(|(reason, count)| format!("{count} × {reason}"))
                .collect::<Vec<_>>()
                .join("; ");
            report.add("streamsEndedWhy", "why", why, "");
        }
    }

    report.section("CPU (utime+stime, 10 ms ticks) while publishing");
    let per_publish = CpuPer {
        count: acknowledged,
        keys: [
            "hubCpuPerPublishUs",
            "hubUserPerPublishUs",
            "hubSystemPerPublishUs",
        ],
        label: "hub CPU per acknowledged publish",
    };
    report.add_hub_cpu(hub_cpu, &node_cpu, &per_publish);
    if let Some(redis_cpu) = redis_cpu {
        report.add(
            "redisCpuSeconds",
            "redis-server CPU",
            redis_cpu.total().as_secs_f64(),
            "s",
        );
        report.add(
            "redisCpuPerPublishUs",
            "redis-server CPU per acknowledged publish",
            per_publish.micros(redis_cpu.total()),
            "µs",
        );
    }
    report.add(
        "benchCpuSeconds",
        "load generator CPU (same cores)",
        bench_cpu.total().as_secs_f64(),
        "s",
    );

    report.section("hub memory (history holds what was published, within its bounds)");
    report.add(
        "rssBeforeKib",
        "VmRSS before publishing",
        memory_before.rss_kib,
        "KiB",
    );
    report.add(
        "rssAfterKib",
        "VmRSS after publishing",
        memory_after.rss_kib,
        "KiB",
    );
    report.add(
        "rssPerAcknowledgedBytes",
        "VmRSS growth per acknowledged publish",
        if acknowledged > 0 {
            memory_after.rss_kib.saturating_sub(memory_before.rss_kib) as f64 * 1024.0
                / acknowledged as f64
        } else {
            0.0
        },
        "bytes",
    );

    if let Some(bytes) = deployment.data_dir_bytes() {
        report.section("durable log");
        report.add(
            "storageWriteBytes",
            "hub bytes written to storage (/proc/<pid>/io)",
            writes,
            "bytes",
        );
        report.add(
            "storageWriteBytesPerPublish",
            "  per acknowledged publish",
            if acknowledged > 0 {
                writes as f64 / acknowledged as f64
            } else {
                0.0
            },
            "bytes",
        );
        report.add("dataFileBytes", "data folder after the run", bytes, "bytes");
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
            "redisKeysAdded",
            "keys added during the run",
            after.keys as i64 - before.keys as i64,
            "",
        );
        let growth = after.used_memory as i64 - before.used_memory as i64;
        report.add(
            "redisUsedMemoryGrowthBytes",
            "used_memory growth during the run",
            growth,
            "bytes",
        );
        report.add(
            "redisUsedMemoryPerPublishBytes",
            "  per acknowledged publish",
            if acknowledged > 0 {
                growth as f64 / acknowledged as f64
            } else {
                0.0
            },
            "bytes",
        );
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_text_is_padded_to_length() {
        assert_eq!(data_text(3, 17, 0), "3 17");
        let text = data_text(3, 17, 64);
        assert_eq!(text.len(), 64);
        assert!(text.starts_with("3 17 x"));
    }
}
