//! What is under test: one standalone hub (history in memory, or in a durable log in a temporary
//! folder), or N hub nodes sharing a `redis-server` started for the run.
//!
//! Owns every process and folder of the run and stops or removes them when dropped. It sums what
//! the report needs over the nodes (CPU time, memory, stats counters) and says which node takes
//! which subscriber or publisher; it does not measure a run itself.

use crate::{
    api,
    hub::HubProcess,
    proc::{self, CpuTime, Memory},
    redis::{RedisProcess, RedisUsage},
    temp_dir::TempDir,
};
use anyhow::{bail, Context};
use std::{net::SocketAddr, path::PathBuf, time::Duration};

/// The Redis stream of Herald's cluster log, under the default key prefix.
const LOG_STREAM_KEY: &str = "herald:log";
/// How long a cluster node gets to join the Redis log and answer a publish.
const JOIN_TIMEOUT: Duration = Duration::from_secs(15);

/// Flags that choose what runs under the benchmark; every mode takes them.
#[derive(Debug, Default, clap::Args)]
pub(crate) struct DeploymentArgs {
    /// Give the hub a durable log: `--data-dir` in a new temporary folder (removed afterwards)
    /// with this `--fsync` policy, `always` or an interval such as `10ms` [default: history in
    /// memory].
    #[arg(long, global = true, value_name = "POLICY")]
    fsync: Option<String>,
    /// Run this many hub nodes over a `redis-server` that the benchmark starts on a free port
    /// (`--save '' --appendonly no`) and stops afterwards; subscribers are spread evenly over
    /// the nodes [default: one standalone hub, no Redis].
    #[arg(long, global = true, value_name = "N")]
    redis_nodes: Option<usize>,
    /// The `redis-server` binary for `--redis-nodes`.
    #[arg(long, global = true, default_value = "redis-server")]
    redis_server_bin: PathBuf,
}

impl DeploymentArgs {
    /// How many hub nodes these flags start.
    pub(crate) fn node_count(&self) -> usize {
        self.redis_nodes.unwrap_or(1)
    }
}

/// Which node each publisher uses in a cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub(crate) enum PublishTo {
    /// Every publish goes to the first node.
    #[default]
    First,
    /// Publisher (or event) `i` goes to node `i mod N`.
    RoundRobin,
}

impl PublishTo {
    /// The node that publisher or event `index` uses, out of `nodes`.
    pub(crate) fn node_for(self, index: usize, nodes: usize) -> usize {
        match self {
            PublishTo::First => 0,
            PublishTo::RoundRobin => index % nodes.max(1),
        }
    }
}

/// The processes and folders of one run; stopped and removed on drop.
#[derive(Debug)]
pub(crate) struct Deployment {
    /// The hub nodes (one unless over Redis). Declared first, so they stop before Redis does.
    nodes: Vec<HubProcess>,
    redis: Option<RedisProcess>,
    /// The durable log's folder, removed once the hub is gone.
    data_dir: Option<TempDir>,
    description: String,
    /// How each node was started (binary, then its `serve` arguments after `--listen`), so it can
    /// be started again on its address.
    bin: PathBuf,
    node_args: Vec<Vec<String>>,
}

impl Deployment {
    /// Starts what `args` asks for, with `hub_args` added to every node's `herald serve`, and
    /// waits until every cluster node answers a publish.
    ///
    /// # Errors
    /// When a process cannot be started, a folder cannot be made, the flags contradict each
    /// other, or a node does not join the cluster within 15 s.
    pub(crate) async fn start(
        bin: &std::path::Path,
        hub_args: &[String],
        args: &DeploymentArgs,
    ) -> anyhow::Result<Self> {
        match (args.redis_nodes, &args.fsync) {
            (Some(_), Some(_)) => bail!("--fsync and --redis-nodes cannot be combined"),
            (Some(0), None) => bail!("--redis-nodes must be at least 1"),
            (Some(count), None) => Self::start_cluster(bin, hub_args, args, count).await,
            (None, Some(policy)) => {
                let data_dir = TempDir::new("data")?;
                let mut node_args = vec![
                    "--data-dir".to_owned(),
                    data_dir
                        .path()
                        .to_str()
                        .context("the temporary folder's path is not UTF-8")?
                        .to_owned(),
                    "--fsync".to_owned(),
                    policy.clone(),
                ];
                node_args.extend_from_slice(hub_args);
                let hub = HubProcess::spawn(bin, "hub", &node_args)?;
                eprintln!(
                    "hub pid {} on http://{}, data in {}",
                    hub.pid(),
                    hub.addr(),
                    data_dir.path().display()
                );
                Ok(Self {
                    nodes: vec![hub],
                    redis: None,
                    data_dir: Some(data_dir),
                    description: format!("durable log (--data-dir, --fsync {policy})"),
                    bin: bin.to_owned(),
                    node_args: vec![node_args],
                })
            }
            (None, None) => {
                let hub = HubProcess::spawn(bin, "hub", hub_args)?;
                eprintln!("hub pid {} on http://{}", hub.pid(), hub.addr());
                Ok(Self {
                    nodes: vec![hub],
                    redis: None,
                    data_dir: None,
                    description: "standalone, history in memory".to_owned(),
                    bin: bin.to_owned(),
                    node_args: vec![hub_args.to_vec()],
                })
            }
        }
    }

    async fn start_cluster(
        bin: &std::path::Path,
        hub_args: &[String],
        args: &DeploymentArgs,
        count: usize,
    ) -> anyhow::Result<Self> {
        let redis = RedisProcess::spawn(&args.redis_server_bin)?;
        eprintln!("redis-server pid {} on {}", redis.pid(), redis.url());
        let mut nodes = Vec::with_capacity(count);
        let mut all_args = Vec::with_capacity(count);
        for index in 0..count {
            let name = format!("node-{index}");
            let mut node_args = vec![
                "--redis-url".to_owned(),
                redis.url(),
                "--node-id".to_owned(),
                name.clone(),
            ];
            node_args.extend_from_slice(hub_args);
            let node = HubProcess::spawn(bin, &name, &node_args)?;
            eprintln!("{name} pid {} on http://{}", node.pid(), node.addr());
            nodes.push(node);
            all_args.push(node_args);
        }
        for node in &nodes {
            api::wait_until_publishing(node.addr(), JOIN_TIMEOUT).await?;
        }
        let description = format!(
            "{count} node{} over one Redis (--redis-url)",
            if count == 1 { "" } else { "s" }
        );
        Ok(Self {
            nodes,
            redis: Some(redis),
            data_dir: None,
            description,
            bin: bin.to_owned(),
            node_args: all_args,
        })
    }

    /// Starts the floor (`herald-bench floor-serve`, this same executable; see `floor`) as the one
    /// node under test.
    ///
    /// # Errors
    /// When this executable cannot be found or the floor does not start.
    pub(crate) fn start_floor() -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("finding this executable")?;
        let args = ["floor-serve", "--listen", "127.0.0.1:0"].map(str::to_owned);
        let floor = HubProcess::spawn_command(&exe, "floor", &args)?;
        eprintln!("floor pid {} on http://{}", floor.pid(), floor.addr());
        Ok(Self {
            nodes: vec![floor],
            redis: None,
            data_dir: None,
            description: "the floor (herald-bench floor-serve: one thread, one write per delivery)"
                .to_owned(),
            bin: exe,
            node_args: Vec::new(),
        })
    }

    /// Kills node `index` with `SIGKILL`, as a crash or a `kill -9` would.
    ///
    /// # Panics
    /// When there is no such node.
    pub(crate) fn kill_node(&mut self, index: usize) {
        self.nodes[index].kill();
    }

    /// Starts node `index` again, on its old address with its old arguments (the same data
    /// folder, the same Redis, the same node id), and waits for its address.
    ///
    /// # Errors
    /// When it does not start (its log says why).
    pub(crate) fn restart_node(&mut self, index: usize) -> anyhow::Result<()> {
        let args = self
            .node_args
            .get(index)
            .context("this deployment cannot restart its nodes")?;
        let addr = self.nodes[index].addr().to_string();
        let name = format!("node-{index}");
        self.nodes[index] = HubProcess::spawn_on(&self.bin, &name, &addr, args)?;
        Ok(())
    }

    /// Node `index`'s process id.
    pub(crate) fn node_pid(&self, index: usize) -> u32 {
        self.nodes[index].pid()
    }

    /// What runs, in words, for the report.
    pub(crate) fn description(&self) -> &str {
        &self.description
    }

    pub(crate) fn addrs(&self) -> Vec<SocketAddr> {
        self.nodes.iter().map(HubProcess::addr).collect()
    }

    /// The single hub, for the modes that load one process.
    ///
    /// # Errors
    /// When there are several nodes.
    pub(crate) fn single_node(&mut self) -> anyhow::Result<&mut HubProcess> {
        match self.nodes.as_mut_slice() {
            [hub] => Ok(hub),
            _ => bail!("this mode loads one hub; run it with --redis-nodes 1 at most"),
        }
    }

    pub(crate) fn redis(&self) -> Option<&RedisProcess> {
        self.redis.as_ref()
    }

    /// How many of `total` subscribers each node takes (see [`spread`]).
    pub(crate) fn spread(&self, total: usize) -> Vec<usize> {
        spread(total, self.nodes.len())
    }

    /// The nodes' CPU time, summed.
    ///
    /// # Errors
    /// When a node is gone.
    pub(crate) fn cpu_time(&self) -> anyhow::Result<CpuTime> {
        self.nodes.iter().try_fold(CpuTime::default(), |sum, node| {
            let time = node.cpu_time()?;
            Ok(CpuTime {
                user: sum.user + time.user,
                system: sum.system + time.system,
            })
        })
    }

    /// Each node's CPU time.
    ///
    /// # Errors
    /// When a node is gone.
    pub(crate) fn cpu_time_by_node(&self) -> anyhow::Result<Vec<CpuTime>> {
        self.nodes.iter().map(HubProcess::cpu_time).collect()
    }

    /// The nodes' memory, summed (`hwm_kib` is the sum of each node's peak).
    ///
    /// # Errors
    /// When a node is gone.
    pub(crate) fn memory(&self) -> anyhow::Result<Memory> {
        self.nodes.iter().try_fold(
            Memory {
                rss_kib: 0,
                hwm_kib: 0,
                anon_kib: 0,
            },
            |sum, node| {
                let memory = node.memory()?;
                Ok(Memory {
                    rss_kib: sum.rss_kib + memory.rss_kib,
                    hwm_kib: sum.hwm_kib + memory.hwm_kib,
                    anon_kib: sum.anon_kib + memory.anon_kib,
                })
            },
        )
    }

    /// Bytes the nodes have caused to be written to storage so far.
    ///
    /// # Errors
    /// When a node is gone.
    pub(crate) fn storage_write_bytes(&self) -> anyhow::Result<u64> {
        self.nodes
            .iter()
            .map(|node| proc::storage_write_bytes(node.pid()))
            .sum()
    }

    /// Each node's own `GET /api/stats` counters, summed.
    ///
    /// # Errors
    /// When a node does not answer.
    pub(crate) async fn stats(&self) -> anyhow::Result<api::Stats> {
        let mut sum = api::Stats {
            connections: 0,
            events_published: 0,
            events_delivered: 0,
        };
        for node in &self.nodes {
            let stats = api::stats(node.addr()).await?;
            sum.connections += stats.connections;
            sum.events_published += stats.events_published;
            sum.events_delivered += stats.events_delivered;
        }
        Ok(sum)
    }

    /// `WARN` and `ERROR` lines logged by the nodes so far.
    pub(crate) fn problems(&self) -> u64 {
        self.nodes.iter().map(HubProcess::problems).sum()
    }

    /// Fails when a node has exited.
    ///
    /// # Errors
    /// With the exit status of the first node found gone.
    pub(crate) fn ensure_running(&mut self) -> anyhow::Result<()> {
        for (index, node) in self.nodes.iter_mut().enumerate() {
            node.ensure_running()
                .with_context(|| format!("node {index}"))?;
        }
        Ok(())
    }

    /// Bytes in the durable log's folder, when there is one.
    pub(crate) fn data_dir_bytes(&self) -> Option<u64> {
        self.data_dir.as_ref().map(TempDir::file_bytes)
    }

    /// What Redis holds now, when there is a Redis.
    ///
    /// # Errors
    /// When Redis does not answer.
    pub(crate) async fn redis_usage(&self) -> anyhow::Result<Option<RedisUsage>> {
        match &self.redis {
            Some(redis) => Ok(Some(redis.usage(LOG_STREAM_KEY).await?)),
            None => Ok(None),
        }
    }
}

/// `total` split over `parts` as evenly as it divides, the first parts taking one more.
fn spread(total: usize, parts: usize) -> Vec<usize> {
    let parts = parts.max(1);
    (0..parts)
        .map(|index| total / parts + usize::from(index < total % parts))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscribers_spread_evenly_over_the_nodes() {
        assert_eq!(spread(1000, 3), [334, 333, 333]);
        assert_eq!(spread(2, 3), [1, 1, 0]);
        assert_eq!(spread(7, 1), [7]);
    }

    #[test]
    fn publishers_go_to_the_first_node_or_take_turns() {
        assert_eq!(PublishTo::First.node_for(5, 3), 0);
        let turns: Vec<usize> = (0..5)
            .map(|index| PublishTo::RoundRobin.node_for(index, 3))
            .collect();
        assert_eq!(turns, [0, 1, 2, 0, 1]);
    }
}
