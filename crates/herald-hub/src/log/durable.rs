//! The durable log: history persisted in an embedded redb database under `--data-dir`.
//!
//! Owns the on-disk format, recovery at start, and group commit: one writer thread takes every
//! event appended since its last commit and writes them in one transaction with an fsync, either
//! as soon as there is something to write (`fsync = always`) or every N ms (`fsync = 10ms`).
//! Publishers are answered once their event is on disk, so an answered event survives `kill -9`
//! and power loss. The hub's state lock never waits on the disk. Retention applies on disk too:
//! the writer deletes what history trimmed. It never fans out and never decides retention.

use crate::{
    history::{unix_ms, Dropped},
    hub::{Apply, PublishError, Published, Shared},
    log::{Entry, Log, LogError, LogFuture, StoredEntry},
    metrics::{LatencyHistogram, LogHealth},
    record::Record,
};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use std::{
    path::{Path, PathBuf},
    sync::{mpsc, Arc, Mutex},
    time::{Duration, Instant},
};
use tokio::sync::watch;

const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
/// The newest position each namespace lost before its time (by namespace name), so a resume
/// after a restart is still told of a gap and nothing else is.
const LOST: TableDefinition<&str, u64> = TableDefinition::new("lost");
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

/// Why the durable log could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
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
}

fn open_error(path: &Path, err: impl Into<redb::Error>) -> StoreError {
    StoreError::Open {
        path: path.to_owned(),
        source: Box::new(err.into()),
    }
}

/// What the writer thread is asked to do, in order.
#[derive(Debug)]
enum WriteOp {
    /// Write this record (with its publisher's id when that is not its wire id), published at
    /// this Unix time.
    Append(Record, Option<Box<str>>, u64),
    /// Delete every event below `below`, and those at `seqs` (history trimmed them); keep the
    /// namespaces' lost marks when given.
    Forget {
        below: u64,
        seqs: Vec<u64>,
        lost: Vec<(Arc<str>, u64)>,
    },
}

/// Progress of the writer, as publishers see it.
#[derive(Debug, Clone)]
struct Durable {
    /// Every event at or below this position is on disk.
    through_seq: u64,
    /// A write failed: nothing after `through_seq` will be acknowledged.
    failed: Option<Arc<redb::Error>>,
}

/// The durable log the hub holds: send writes to the writer thread, watch durability.
#[derive(Debug)]
pub(crate) struct DurableLog {
    /// Sends happen under the hub's lock, in position order; the mutex only makes the sender
    /// `Sync` and is never contended.
    ops_tx: Mutex<mpsc::Sender<WriteOp>>,
    durable_rx: watch::Receiver<Durable>,
    /// Time each commit (write and fsync) took, for `/metrics`.
    commit_latency: Arc<LatencyHistogram>,
}

/// Each namespace's newest lost position, by namespace name, as stored.
pub(crate) type LostMarks = Vec<(String, u64)>;

/// One event found on disk at start, with its position.
#[derive(Debug)]
pub(crate) struct RecoveredEntry {
    pub(crate) seq: u64,
    /// The event, with its wire id (always stored).
    pub(crate) entry: Entry,
    /// The publisher's id when it is not the wire id.
    pub(crate) publisher_id: Option<String>,
    /// Connections it was queued to when it was published.
    pub(crate) recipients: u32,
    /// How long ago it was published.
    pub(crate) age: Duration,
}

impl DurableLog {
    /// Opens (or creates) the database in `dir` and reads back every stored event, oldest first,
    /// and the namespaces' lost marks.
    pub(crate) fn open(
        dir: &Path,
        fsync: FsyncPolicy,
    ) -> Result<(Self, Vec<RecoveredEntry>, LostMarks), StoreError> {
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
        write
            .open_table(LOST)
            .map_err(|err| open_error(&path, err))?;
        write.commit().map_err(|err| open_error(&path, err))?;

        let read = db.begin_read().map_err(|err| open_error(&path, err))?;
        let table = read
            .open_table(EVENTS)
            .map_err(|err| open_error(&path, err))?;
        let now_unix_ms = unix_ms();
        let mut records: Vec<RecoveredEntry> = Vec::new();
        for row in table.iter().map_err(|err| open_error(&path, err))? {
            let (seq, bytes) = row.map_err(|err| open_error(&path, err))?;
            let seq = seq.value();
            let entry: StoredEntry =
                serde_json::from_slice(bytes.value()).map_err(|source| StoreError::Corrupt {
                    path: path.clone(),
                    seq,
                    source,
                })?;
            let published = entry.published_unix_ms.unwrap_or(now_unix_ms);
            let recipients = entry.recipients.unwrap_or(0);
            let publisher_id = entry.publisher_id.clone();
            let entry = match entry.into_entry() {
                // Positions grow but need not be contiguous: namespaces trim on their own.
                Some(entry) if entry.event.id.is_some() => entry,
                _ => return Err(StoreError::Invalid { path, seq }),
            };
            records.push(RecoveredEntry {
                seq,
                entry,
                publisher_id,
                recipients,
                age: Duration::from_millis(now_unix_ms.saturating_sub(published)),
            });
        }
        drop(table);
        let marks = read
            .open_table(LOST)
            .map_err(|err| open_error(&path, err))?;
        let mut lost = Vec::new();
        for row in marks.iter().map_err(|err| open_error(&path, err))? {
            let (name, seq) = row.map_err(|err| open_error(&path, err))?;
            lost.push((name.value().to_owned(), seq.value()));
        }
        drop(marks);
        drop(read);
        let head = records.last().map_or(0, |r| r.seq);
        let (durable_tx, durable_rx) = watch::channel(Durable {
            through_seq: head,
            failed: None,
        });
        let (ops_tx, ops_rx) = mpsc::channel();
        let commit_latency = Arc::new(LatencyHistogram::default());
        let observed = commit_latency.clone();
        std::thread::Builder::new()
            .name("herald-store".into())
            .spawn(move || write_loop(db, ops_rx, durable_tx, fsync, &observed))
            .map_err(|source| StoreError::Folder {
                path: dir.to_owned(),
                source,
            })?;
        let log = Self {
            ops_tx: Mutex::new(ops_tx),
            durable_rx,
            commit_latency,
        };
        Ok((log, records, lost))
    }

    fn send(&self, op: WriteOp) {
        // A send fails only when the writer thread is gone, which `wait_durable` reports.
        let _ = self
            .ops_tx
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .send(op);
    }

    /// Waits until the event at `seq` is on disk.
    async fn wait_durable(&self, seq: u64) -> Result<(), LogError> {
        let mut durable_rx = self.durable_rx.clone();
        let gone = || LogError::DurableStopped;
        let durable = durable_rx
            .wait_for(|durable| durable.through_seq >= seq || durable.failed.is_some())
            .await
            .map_err(|_| gone())?;
        match &durable.failed {
            _ if durable.through_seq >= seq => Ok(()),
            Some(err) => Err(LogError::DurableWrite(err.clone())),
            None => Err(gone()),
        }
    }
}

impl Log for DurableLog {
    fn is_ready(&self) -> bool {
        self.durable_rx.borrow().failed.is_none()
    }

    fn health(&self) -> LogHealth {
        LogHealth {
            backend: "durable",
            is_ready: self.is_ready(),
            commit_latency: Some(self.commit_latency.snapshot()),
            ..LogHealth::default()
        }
    }

    fn append<'a>(
        &'a self,
        hub: &'a Shared,
        entry: Entry,
    ) -> LogFuture<'a, Result<Published, PublishError>> {
        Box::pin(async move {
            let published = hub.apply(entry, Apply::Publish)?;
            self.wait_durable(published.seq)
                .await
                .map_err(PublishError::Unavailable)?;
            Ok(published)
        })
    }

    fn recorded(&self, record: &Record, publisher_id: Option<&str>) {
        self.send(WriteOp::Append(
            record.clone(),
            publisher_id.map(Box::from),
            unix_ms(),
        ));
    }

    fn trimmed(&self, dropped: &Dropped) {
        self.send(WriteOp::Forget {
            below: dropped.below,
            seqs: dropped.seqs.clone(),
            lost: dropped.lost.clone(),
        });
    }
}

/// The writer thread: drains every waiting op into one transaction, commits with fsync, reports.
fn write_loop(
    db: Database,
    ops_rx: mpsc::Receiver<WriteOp>,
    durable_tx: watch::Sender<Durable>,
    fsync: FsyncPolicy,
    commit_latency: &LatencyHistogram,
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
        let started = Instant::now();
        let committed = commit(&db, &ops);
        commit_latency.observe(started.elapsed());
        match committed {
            Ok(Some(seq)) => through_seq = through_seq.max(seq),
            Ok(None) => {}
            Err(err) => {
                tracing::error!(error = %err, "writing the durable log failed; publishes are refused from now on");
                durable_tx.send_replace(Durable {
                    through_seq,
                    failed: Some(Arc::new(err)),
                });
                return;
            }
        }
        last_commit = Instant::now();
        durable_tx.send_replace(Durable {
            through_seq,
            failed: None,
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
                WriteOp::Append(record, publisher_id, published_unix_ms) => {
                    let stored = StoredEntry::from_record(
                        record,
                        publisher_id.as_deref(),
                        *published_unix_ms,
                    );
                    let bytes = serde_json::to_vec(&stored)
                        .expect("a stored entry is plain data and always serializes");
                    table.insert(record.seq, bytes.as_slice())?;
                    highest = Some(record.seq);
                }
                WriteOp::Forget { below, seqs, lost } => {
                    table.retain_in(..*below, |_, _| false)?;
                    for seq in seqs {
                        table.remove(*seq)?;
                    }
                    if !lost.is_empty() {
                        let mut marks = write.open_table(LOST)?;
                        for (name, seq) in lost {
                            marks.insert(&**name, *seq)?;
                        }
                    }
                }
            }
        }
    }
    write.commit()?;
    Ok(highest)
}
