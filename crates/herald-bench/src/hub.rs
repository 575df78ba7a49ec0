//! The hub under test: a `herald serve` child process on a loopback port chosen by the kernel.
//!
//! Owns the child's life (it is killed when [`HubProcess`] drops) and watches its log: the address
//! comes from the `herald listening on http://…` (or `https://…`) line, and every later `WARN` or `ERROR` line is
//! counted and echoed, so a misbehaving hub shows in the report. It never talks HTTP.

use crate::proc;
use anyhow::{bail, Context};
use std::{
    io::{BufRead, BufReader},
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicU64, Ordering},
        mpsc, Arc,
    },
    time::Duration,
};

/// The text before the address in the start-up line of the hub (`herald listening on …`) and of
/// the floor (`floor listening on …`).
const LISTENING_MARKER: &str = " listening on ";
/// How long the hub gets to print its address.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// A running hub; killed on drop.
#[derive(Debug)]
pub(crate) struct HubProcess {
    child: Child,
    addr: SocketAddr,
    /// `WARN` and `ERROR` lines the hub has logged since it started listening.
    problems: Arc<AtomicU64>,
}

impl HubProcess {
    /// Starts `bin serve --listen 127.0.0.1:0 extra_args…` and waits for its address. `name`
    /// prefixes the hub's log lines echoed here.
    ///
    /// # Errors
    /// When the binary cannot be run, exits early, or prints no address within 10 s.
    pub(crate) fn spawn(bin: &Path, name: &str, extra_args: &[String]) -> anyhow::Result<Self> {
        Self::spawn_on(bin, name, "127.0.0.1:0", extra_args)
    }

    /// As [`HubProcess::spawn`], on a given address (a restarted hub takes its old port).
    ///
    /// # Errors
    /// As [`HubProcess::spawn`].
    pub(crate) fn spawn_on(
        bin: &Path,
        name: &str,
        listen: &str,
        extra_args: &[String],
    ) -> anyhow::Result<Self> {
        let mut args = vec!["serve".to_owned(), "--listen".to_owned(), listen.to_owned()];
        args.extend_from_slice(extra_args);
        Self::spawn_command(bin, name, &args)
    }

    /// Runs `bin args…`, a server that prints `… listening on http://ADDR`, and waits for its
    /// address.
    ///
    /// # Errors
    /// As [`HubProcess::spawn`].
    pub(crate) fn spawn_command(bin: &Path, name: &str, args: &[String]) -> anyhow::Result<Self> {
        let mut child = Command::new(bin)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| {
                format!(
                    "running {} (build it with `cargo build --release -p herald-server`, \
                     or pass --herald-bin)",
                    bin.display()
                )
            })?;
        let stderr = child.stderr.take().expect("stderr was piped at spawn");
        let problems = Arc::new(AtomicU64::new(0));
        let (addr_tx, addr_rx) = mpsc::channel();
        let problem_count = problems.clone();
        let name = name.to_owned();
        std::thread::spawn(move || watch_log(stderr, &name, addr_tx, &problem_count));
        let addr = match addr_rx.recv_timeout(START_TIMEOUT) {
            Ok(addr) => addr,
            Err(_) => {
                let _ = child.kill();
                let status = child.wait().ok();
                bail!("the hub printed no address within {START_TIMEOUT:?} (exit: {status:?})");
            }
        };
        Ok(Self {
            child,
            addr,
            problems,
        })
    }

    /// The address the hub listens on.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Kills the hub at once (`SIGKILL`, as a crash or `kill -9` would) and reaps it.
    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The hub's process id, for `/proc`.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The hub's resident memory now.
    ///
    /// # Errors
    /// When the process is gone.
    pub(crate) fn memory(&self) -> anyhow::Result<proc::Memory> {
        proc::memory(self.pid())
    }

    /// The hub's CPU time (user plus system, all threads) so far.
    ///
    /// # Errors
    /// When the process is gone.
    pub(crate) fn cpu_time(&self) -> anyhow::Result<proc::CpuTime> {
        proc::cpu_time(self.pid())
    }

    /// `WARN` and `ERROR` lines logged so far.
    pub(crate) fn problems(&self) -> u64 {
        self.problems.load(Ordering::Relaxed)
    }

    /// Fails when the hub has exited.
    ///
    /// # Errors
    /// With the exit status when the process is gone.
    pub(crate) fn ensure_running(&mut self) -> anyhow::Result<()> {
        match self.child.try_wait().context("polling the hub process")? {
            Some(status) => bail!("the hub exited: {status}"),
            None => Ok(()),
        }
    }
}

impl Drop for HubProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where the hub binary is by default: next to this executable (`target/release/herald` for
/// `target/release/herald-bench`).
pub(crate) fn default_bin() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join("herald")))
        .unwrap_or_else(|| PathBuf::from("target/release/herald"))
}

fn watch_log(
    stderr: impl std::io::Read,
    name: &str,
    addr_tx: mpsc::Sender<SocketAddr>,
    problems: &AtomicU64,
) {
    let mut addr_tx = Some(addr_tx);
    for line in BufReader::new(stderr).lines() {
        let Ok(line) = line else { break };
        if let Some(tx) = &addr_tx {
            if let Some(addr) = parse_listening(&line) {
                let _ = tx.send(addr);
                addr_tx = None;
            }
            continue;
        }
        if line.contains("WARN") || line.contains("ERROR") {
            problems.fetch_add(1, Ordering::Relaxed);
            eprintln!("{name}: {line}");
        }
    }
}

fn parse_listening(line: &str) -> Option<SocketAddr> {
    let (_, rest) = line.split_once(LISTENING_MARKER)?;
    let rest = rest
        .strip_prefix("http://")
        .or_else(|| rest.strip_prefix("https://"))?;
    let addr = rest.split(|c: char| c == '/' || c.is_whitespace()).next()?;
    addr.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_is_read_from_the_start_up_line() {
        let line = "2025-01-01T00:00:00Z  INFO herald: herald listening on http://127.0.0.1:4321 \
                    addr=127.0.0.1:4321";
        assert_eq!(
            parse_listening(line),
            Some("127.0.0.1:4321".parse().expect("valid"))
        );
        assert_eq!(parse_listening("INFO something else"), None);
        assert_eq!(
            parse_listening("floor listening on http://127.0.0.1:9"),
            Some("127.0.0.1:9".parse().expect("an address"))
        );
        assert_eq!(
            parse_listening("herald listening on https://127.0.0.1:9 addr=127.0.0.1:9"),
            Some("127.0.0.1:9".parse().expect("valid"))
        );
    }
}
