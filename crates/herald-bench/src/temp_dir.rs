//! A folder of this run's own under the system's temporary directory, removed when dropped.
//!
//! Holds the hub's durable log (`--data-dir`) and the working folder of the `redis-server` the
//! benchmark starts, so a run leaves nothing behind in the repository or in `/tmp`. It does not
//! know what is put in it.

use anyhow::Context;
use std::{
    path::{Path, PathBuf},
    time::{SystemTime, UNIX_EPOCH},
};

/// A new, empty folder; it and everything in it are removed on drop.
#[derive(Debug)]
pub(crate) struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Creates `herald-bench-<purpose>-<pid>-<ns>` under the system's temporary directory.
    ///
    /// # Errors
    /// When the folder cannot be created (or, by a clash of names, already exists).
    pub(crate) fn new(purpose: &str) -> anyhow::Result<Self> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_nanos());
        let path = std::env::temp_dir().join(format!(
            "herald-bench-{purpose}-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Self { path })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes in the files directly inside the folder (the durable log is one file).
    pub(crate) fn file_bytes(&self) -> u64 {
        std::fs::read_dir(&self.path)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .filter_map(|entry| entry.metadata().ok())
                    .filter(std::fs::Metadata::is_file)
                    .map(|metadata| metadata.len())
                    .sum()
            })
            .unwrap_or(0)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if let Err(err) = std::fs::remove_dir_all(&self.path) {
            eprintln!("could not remove {}: {err}", self.path.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_folder_and_its_files_are_removed_on_drop() {
        let dir = TempDir::new("test").expect("a temporary folder can be made");
        std::fs::write(dir.path().join("a"), b"12345").expect("writable");
        assert_eq!(dir.file_bytes(), 5);
        let path = dir.path().to_owned();
        drop(dir);
        assert!(!path.exists());
    }
}
