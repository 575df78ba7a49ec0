//! The durable log: history persisted in an embedded redb database under `--data-dir`.
//!
//! Owns the on-disk format, recovery at start, and group commit: one writer thread takes every
//! event appended since its last commit and writes them in one transaction with an fsync, either
//! as soon as there is something to write (`fsync = always`) or every N ms (`fsync = 10ms`).
//! Publishers are answered once their event is on disk, so an answered event survives `kill -9`
//! and power loss. The hub's state lock never waits on the disk. Retention applies on disk too:
//! the writer deletes what history trimmed. It never fans out and never decides retention.

use crate::{
    channel::ChannelName,
    event::{ClientId, EventData},
    history::{Record, RecordKind, Target},
    wire,
};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use std::{
    path::{Path, PathBuf},
    sync::{mpsc, Arc},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};
use tokio::sync::watch;

const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
/// The database file inside the data folder.
pub const DATA_FILE_NAME: &str = "herald.redb";

/// When the writer forces events to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// Commit and fsync as soon as events are waiting; concurrent publishes share one fsync.
    Always,
    /// Commit and fsync at most once per interval; publishes wait up to that long for their answer.
    Every(Duration),
}

/// Why the durable log failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The data folder could not be created or read.
    #[error("cannot use data folder {path}: {source}")]
    Folder {
        /// The folder.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The database could not be opened (corrupt, not a Herald database, or used by another hub).
    #[error("cannot open {path}: {source}")]
    Open {
        /// The database file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: Box<redb::Error>,
    },
    /// A stored event could not be decoded.
    #[error("{path} holds an unreadable event at position {seq}: {source}")]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// The event's position.
        seq: u64,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// A stored event is not one Herald could have written, or positions have a hole.
    #[error("{path} holds an invalid event at position {seq}")]
    Invalid {
        /// The database file.
        path: PathBuf,
        /// The event's position.
        seq: u64,
    },
    /// Writing to the database failed; events published since are not acknowledged.
    #[error("writing the durable log failed: {0}")]
    Write(String),
}

fn open_error(path: &Path, err: impl Into<redb::Error>) -> StoreError {
    StoreError::Open {
        path: path.to_owned(),
        source: Box::new(err.into()),
    }
}

/// One event as stored on disk.
#[derive(Debug, Serialize, Deserialize)]
struct StoredRecord {
    id: String,
    target: StoredTarget,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    close: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    event: Option<String>,
    data: String,
    #[serde(default)]
    is_json: bool,
    recipients: usize,
    published_unix_ms: u64,
}

/// A [`Target`] as written to disk or to the cluster log.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum StoredTarget {
    Channels(Vec<ChannelName>),
    Client(String),
    All,
}

impl StoredTarget {
    pub(crate) fn from_target(target: &Target) -> Self {
        match target {
            Target::Channels(channels) => Self::Channels(channels.clone()),
            Target::Client(id) => Self::Client(id.as_str().to_owned()),
            Target::All => Self::All,
        }
    }

    /// `None` when a stored client id is not a valid one (the entry was not written by Herald).
    pub(crate) fn into_target(self) -> Option<Target> {
        Some(match self {
            Self::Channels(channels) => Target::Channels(channels),
            Self::Client(id) => Target::Client(ClientId::new(&id).ok()?),
            Self::All => Target::All,
        })
    }
}

fn unix_ms(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl StoredRecord {
    fn from_record(record: &Record) -> Self {
        let age = record.published_at.elapsed();
        Self {
            id: record.id.to_string(),
            target: StoredTarget::from_target(&record.target),
            close: match record.kind {
                RecordKind::Event => None,
                RecordKind::Close { has_final_event } => Some(has_final_event),
            },
            event: record.event.as_deref().map(str::to_owned),
            data: record.data.as_str().to_owned(),
            is_json: record.data.is_json(),
            recipients: record.recipients,
            published_unix_ms: unix_ms(SystemTime::now() - age),
        }
    }

    fn into_record(self, seq: u64, now: Instant, now_unix_ms: u64) -> Option<Record> {
        let target = self.target.into_target()?;
        let kind = match self.close {
            None => RecordKind::Event,
            Some(has_final_event) => RecordKind::Close { has_final_event },
        };
        let data = EventData::restore(self.data, self.is_json);
        let frame = match kind {
            RecordKind::Close {
                has_final_event: false,
            } => bytes::Bytes::new(),
            _ => wire::encode_event(Some(&self.id), self.event.as_deref(), data.as_str()),
        };
        let age = Duration::from_millis(now_unix_ms.saturating_sub(self.published_unix_ms));
        Some(Record {
            seq,
            id: Arc::from(self.id),
            target,
            kind,
            event: self.event.map(String::into_boxed_str),
            data,
            frame,
            recipients: self.recipients,
            published_at: now.checked_sub(age).unwrap_or(now),
        })
    }
}

/// What the writer thread is asked to do, in order.
#[derive(Debug)]
enum WriteOp {
    Append(Arc<Record>),
    /// Delete every event at or below this position (history trimmed it).
    ForgetThrough(u64),
}

/// Progress of the writer, as publishers see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Durable {
    /// Every event at or below this position is on disk.
    pub(crate) through_seq: u64,
    /// A write failed: nothing after `through_seq` will be acknowledged.
    pub(crate) is_failed: bool,
}

/// The handle the hub keeps: send writes, watch durability.
#[derive(Debug)]
pub(crate) struct Store {
    ops_tx: mpsc::Sender<WriteOp>,
    durable_rx: watch::Receiver<Durable>,
}

/// What was found on disk at start.
#[derive(Debug)]
pub(crate) struct Recovered {
    pub(crate) store: Store,
    pub(crate) records: Vec<Record>,
}

impl Store {
    /// Opens (or creates) the database in `dir` and reads back every stored event.
    pub(crate) fn open(dir: &Path, fsync: FsyncPolicy) -> Result<Recovered, StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Folder {
            path: dir.to_owned(),
            source,
        })?;
        let path = dir.join(DATA_FILE_NAME);
        let db = Database::create(&path).map_err(|err| open_error(&path, err))?;
        let write = db.begin_write().map_err(|err| open_error(&path, err))?;
        write
            .open_table(EVENTS)
            .map_err(|err| open_error(&path, err))?;
        write.commit().map_err(|err| open_error(&path, err))?;

        let read = db.begin_read().map_err(|err| open_error(&path, err))?;
        let table = read
            .open_table(EVENTS)
            .map_err(|err| open_error(&path, err))?;
        let now = Instant::now();
        let now_unix_ms = unix_ms(SystemTime::now());
        let mut records = Vec::new();
        for row in table.iter().map_err(|err| open_error(&path, err))? {
            let (seq, bytes) = row.map_err(|err| open_error(&path, err))?;
            let seq = seq.value();
            let stored: StoredRecord =
                serde_json::from_slice(bytes.value()).map_err(|source| StoreError::Corrupt {
                    path: path.clone(),
                    seq,
                    source,
                })?;
            let is_contiguous = records
                .last()
                .is_none_or(|last: &Record| last.seq + 1 == seq);
            match stored.into_record(seq, now, now_unix_ms) {
                Some(record) if is_contiguous => records.push(record),
                _ => return Err(StoreError::Invalid { path, seq }),
            }
        }
        drop(table);
        drop(read);
        let head = records.last().map_or(0, |r| r.seq);
        let (durable_tx, durable_rx) = watch::channel(Durable {
            through_seq: head,
            is_failed: false,
        });
        let (ops_tx, ops_rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("herald-store".into())
            .spawn(move || write_loop(db, ops_rx, durable_tx, fsync))
            .map_err(|source| StoreError::Folder {
                path: dir.to_owned(),
                source,
            })?;
        Ok(Recovered {
            store: Store { ops_tx, durable_rx },
            records,
        })
    }

    pub(crate) fn append(&self, record: Arc<Record>) {
        // A send fails only when the writer thread is gone, which `wait_durable` reports.
        let _ = self.ops_tx.send(WriteOp::Append(record));
    }

    pub(crate) fn forget_through(&self, seq: u64) {
        let _ = self.ops_tx.send(WriteOp::ForgetThrough(seq));
    }

    pub(crate) fn durable_rx(&self) -> watch::Receiver<Durable> {
        self.durable_rx.clone()
    }
}

/// The writer thread: drains every waiting op into one transaction, commits with fsync, reports.
fn write_loop(
    db: Database,
    ops_rx: mpsc::Receiver<WriteOp>,
    durable_tx: watch::Sender<Durable>,
    fsync: FsyncPolicy,
) {
    let mut through_seq = durable_tx.borrow().through_seq;
    let mut last_commit = Instant::now();
    while let Ok(first) = ops_rx.recv() {
        if let FsyncPolicy::Every(interval) = fsync {
            let next = last_commit + interval;
            let now = Instant::now();
            if next > now {
                std::thread::sleep(next - now);
            }
        }
        let mut ops = vec![first];
        ops.extend(ops_rx.try_iter());
        match commit(&db, &ops) {
            Ok(Some(seq)) => through_seq = through_seq.max(seq),
            Ok(None) => {}
            Err(err) => {
                tracing::error!(error = %err, "writing the durable log failed; publishes are refused from now on");
                durable_tx.send_replace(Durable {
                    through_seq,
                    is_failed: true,
                });
                return;
            }
        }
        last_commit = Instant::now();
        durable_tx.send_replace(Durable {
            through_seq,
            is_failed: false,
        });
    }
}

fn commit(db: &Database, ops: &[WriteOp]) -> Result<Option<u64>, redb::Error> {
    let mut write = db.begin_write()?;
    write.set_durability(Durability::Immediate)?;
    let mut highest = None;
    {
        let mut table = write.open_table(EVENTS)?;
        for op in ops {
            match op {
                WriteOp::Append(record) => {
                    let bytes = serde_json::to_vec(&StoredRecord::from_record(record))
                        .expect("a stored record is plain data and always serializes");
                    table.insert(record.seq, bytes.as_slice())?;
                    highest = Some(record.seq);
                }
                WriteOp::ForgetThrough(seq) => {
                    table.retain_in(..=*seq, |_, _| false)?;
                }
            }
        }
    }
    write.commit()?;
    Ok(highest)
}
