//! Fits the stream limit to the process's open-file limit, so streams cannot starve publishers.
//!
//! Reads the limit only; raising it is `main`'s.

use herald_hub::http::HttpLimits;

/// File descriptors kept free for publishers, pollers and the listener when the stream limit is
/// fitted to the open-file limit: a tenth of it, at most 512.
const FILE_DESCRIPTORS_RESERVED_MAX: usize = 512;

/// Lowers `connections_max` so streams cannot use up the process's open-file limit (the hub
/// could then no longer accept a publisher's request). Returns the limit and the lowered value
/// when it had to lower it.
pub(crate) fn fit_to_open_file_limit(limits: &mut HttpLimits) -> Option<(usize, usize)> {
    let open_files = open_file_limit()?;
    let reserved = (open_files / 10).min(FILE_DESCRIPTORS_RESERVED_MAX);
    let fitting = open_files.saturating_sub(reserved).max(1);
    if limits.connections_max == 0 || limits.connections_max <= fitting {
        return None;
    }
    limits.connections_max = fitting;
    Some((open_files, fitting))
}

/// The soft open-file limit (`ulimit -n`), where the platform tells it.
fn open_file_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.trim_start_matches("Max open files")
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}
