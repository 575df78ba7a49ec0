//! What Linux's `/proc` says about a process: resident memory, CPU time, bytes written to
//! storage, open-file limit.
//!
//! Reads only; it never changes a limit or signals a process. Linux only.

use anyhow::{bail, Context};
use std::time::Duration;

/// Clock ticks per second of the `utime`/`stime` fields of `/proc/<pid>/stat`. The kernel reports
/// them in `USER_HZ`, which is 100 on every architecture Linux supports today.
const USER_HZ: u64 = 100;

/// A process's memory as `/proc/<pid>/status` reports it, in KiB.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Memory {
    /// `VmRSS`: resident set size now.
    pub(crate) rss_kib: u64,
    /// `VmHWM`: the highest resident set size so far.
    pub(crate) hwm_kib: u64,
    /// `RssAnon`: the anonymous (heap, stacks) part of `VmRSS`, without mapped files.
    pub(crate) anon_kib: u64,
}

/// Reads `VmRSS`, `VmHWM` and `RssAnon` of `pid`.
///
/// # Errors
/// When the process is gone or the file lacks one of the fields.
pub(crate) fn memory(pid: u32) -> anyhow::Result<Memory> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let field = |name: &str| -> anyhow::Result<u64> {
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
            .with_context(|| format!("{path} has no {name}"))
    };
    Ok(Memory {
        rss_kib: field("VmRSS")?,
        hwm_kib: field("VmHWM")?,
        anon_kib: field("RssAnon")?,
    })
}

/// CPU time a process has used so far (all its threads), at 10 ms resolution.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct CpuTime {
    /// `utime`: time running the process's own code.
    pub(crate) user: Duration,
    /// `stime`: time in the kernel on its behalf (system calls; on loopback that includes the
    /// receiving side's TCP processing).
    pub(crate) system: Duration,
}

impl CpuTime {
    pub(crate) fn total(self) -> Duration {
        self.user + self.system
    }

    /// The time used between `earlier` and `self`.
    pub(crate) fn since(self, earlier: CpuTime) -> CpuTime {
        CpuTime {
            user: self.user.saturating_sub(earlier.user),
            system: self.system.saturating_sub(earlier.system),
        }
    }
}

/// Reads `utime` and `stime` of `pid`.
///
/// # Errors
/// When the process is gone or the file cannot be parsed.
pub(crate) fn cpu_time(pid: u32) -> anyhow::Result<CpuTime> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    // The command name (field 2) is in parentheses and may hold spaces: fields after the last ')'
    // start at field 3, so utime (14) and stime (15) are the 12th and 13th of them.
    let after_name = text
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .with_context(|| format!("{path} has no command name"))?;
    let mut fields = after_name.split_whitespace().skip(11);
    let mut ticks = || -> anyhow::Result<Duration> {
        let ticks: u64 = fields
            .next()
            .and_then(|value| value.parse().ok())
            .with_context(|| format!("{path} has no utime/stime"))?;
        Ok(Duration::from_millis(ticks * 1000 / USER_HZ))
    };
    Ok(CpuTime {
        user: ticks()?,
        system: ticks()?,
    })
}

/// `write_bytes` of `/proc/<pid>/io`: bytes this process caused to be sent to storage so far
/// (page cache write-back and direct writes; a file's metadata is not counted).
///
/// # Errors
/// When the process is gone or the file lacks the field.
pub(crate) fn storage_write_bytes(pid: u32) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/io");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    text.lines()
        .find_map(|line| line.strip_prefix("write_bytes:"))
        .and_then(|value| value.trim().parse().ok())
        .with_context(|| format!("{path} has no write_bytes"))
}

/// Checks that this process (and so the hub it spawns, which inherits the limit) may open
/// `needed` files.
///
/// # Errors
/// When the soft `RLIMIT_NOFILE` is lower, with the shell command that raises it.
pub(crate) fn ensure_open_files(needed: u64) -> anyhow::Result<()> {
    let text = std::fs::read_to_string("/proc/self/limits").context("reading /proc/self/limits")?;
    let (soft, hard) = text
        .lines()
        .find_map(|line| {
            let rest = line.strip_prefix("Max open files")?;
            let mut values = rest.split_whitespace();
            let mut limit = || match values.next()? {
                "unlimited" => Some(u64::MAX),
                value => value.parse().ok(),
            };
            Some((limit()?, limit()?))
        })
        .context("/proc/self/limits has no open-files line")?;
    if soft < needed {
        bail!(
            "this run needs {needed} open files but the limit is {soft} (hard limit {hard}); \
             raise it first with `ulimit -n {hard}`"
        );
    }
    Ok(())
}

/// The machine's load average over 1, 5 and 15 minutes, as `/proc/loadavg` gives it.
pub(crate) fn load_average() -> Option<String> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    Some(
        text.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_memory_and_cpu_are_readable() {
        let pid = std::process::id();
        let memory = memory(pid).expect("a live process has a status file");
        assert!(memory.rss_kib > 0 && memory.hwm_kib >= memory.rss_kib);
        cpu_time(pid).expect("a live process has a stat file");
        storage_write_bytes(pid).expect("a live process has an io file");
    }
}
