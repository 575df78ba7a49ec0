//! The cluster log's reader: follows the Redis Stream and feeds every entry, in stream order, to
//! this node's hub, reconnecting with backoff and carrying on from the last entry it read.
//!
//! Owns what this node has read (the position publishers and resumes wait on), first contact
//! (entries already in the log are history for resume, never live events), gap detection, and
//! whether the reader is current (readiness). It never fans out itself: entries enter the hub
//! through [`Shared::apply`], the path every event takes.

use super::{ClusterError, ClusterLog, COMMAND_TIMEOUT};
use crate::{
    history::unix_ms,
    hub::{Apply, Shared},
    log::{LogFuture, StoredEntry},
};
use std::{
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Weak,
    },
    time::Duration,
};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// How long one `XREAD` blocks waiting for entries.
const READ_BLOCK_MS: u64 = 2000;
/// Most entries one `XREAD` returns.
const READ_BATCH_MAX: usize = 512;
/// First reconnect delay after Redis is lost; doubles up to [`RECONNECT_DELAY_MAX`], and starts
/// again from here after a session that read successfully.
const RECONNECT_DELAY_MIN: Duration = Duration::from_millis(100);
/// Longest reconnect delay.
const RECONNECT_DELAY_MAX: Duration = Duration::from_secs(5);
/// A reader with no successful read for this long is stuck: the node is not ready.
const READ_STALL_MAX_MS: u64 = READ_BLOCK_MS + 3000;
/// Longest a resume waits for the reader to reach the id it names.
const RESUME_WAIT_MAX: Duration = Duration::from_secs(5);

/// A stream entry id, `ms-seq`, ordered as Redis orders them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub(super) struct EntryId(u64, u64);

impl EntryId {
    pub(super) fn parse(text: &str) -> Option<Self> {
        let (ms, seq) = text.split_once('-')?;
        Some(Self(ms.parse().ok()?, seq.parse().ok()?))
    }
}

impl std::fmt::Display for EntryId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.0, self.1)
    }
}

/// What the reader has read, shared with publishers and resumes.
#[derive(Debug)]
pub(super) struct ReaderState {
    /// The last entry this node has applied (0-0 before first contact).
    read_tx: watch::Sender<EntryId>,
    /// True from first contact to the next lost connection.
    is_reading: AtomicBool,
    /// Unix ms of the last successful read.
    read_ok_at_ms: AtomicU64,
    /// True from this node's first contact with the log on.
    joined_tx: watch::Sender<bool>,
    /// True once a read came back short of a full batch (this node had reached the log's end at
    /// that moment); false again when the connection is lost.
    caught_up_tx: watch::Sender<bool>,
}

impl Default for ReaderState {
    fn default() -> Self {
        Self {
            read_tx: watch::channel(EntryId::default()).0,
            is_reading: AtomicBool::new(false),
            read_ok_at_ms: AtomicU64::new(0),
            caught_up_tx: watch::channel(false).0,
            joined_tx: watch::channel(false).0,
        }
    }
}

impl ReaderState {
    /// Whether the reader is connected and read successfully within [`READ_STALL_MAX_MS`].
    pub(super) fn is_current(&self) -> bool {
        self.is_reading.load(Ordering::Relaxed)
            && unix_ms().saturating_sub(self.read_ok_at_ms.load(Ordering::Relaxed))
                <= READ_STALL_MAX_MS
    }

    /// Whether the reader is connected to Redis, and the time since its last successful read
    /// (`None` before the first).
    pub(super) fn read_health(&self) -> (bool, Option<std::time::Duration>) {
        let read_at_ms = self.read_ok_at_ms.load(Ordering::Relaxed);
        let since = (read_at_ms > 0)
            .then(|| std::time::Duration::from_millis(unix_ms().saturating_sub(read_at_ms)));
        (self.is_reading.load(Ordering::Relaxed), since)
    }

    fn mark_read(&self, through: Option<EntryId>, is_at_end: bool) {
        self.read_ok_at_ms.store(unix_ms(), Ordering::Relaxed);
        self.is_reading.store(true, Ordering::Relaxed);
        if let Some(through) = through {
            self.read_tx.send_replace(through);
        }
        self.caught_up_tx.send_if_modified(|caught_up| {
            let was = *caught_up;
            *caught_up = is_at_end;
            was != is_at_end
        });
    }

    /// A wait for this node's first contact with the log, when it has not happened yet.
    pub(super) fn first_contact_wait(&self) -> Option<LogFuture<'static, ()>> {
        if *self.joined_tx.borrow() {
            return None;
        }
        let mut joined_rx = self.joined_tx.subscribe();
        Some(Box::pin(async move {
            let _ =
                tokio::time::timeout(RESUME_WAIT_MAX, joined_rx.wait_for(|joined| *joined)).await;
        }))
    }

    fn mark_lost(&self) {
        self.is_reading.store(false, Ordering::Relaxed);
        self.caught_up_tx.send_replace(false);
    }

    /// Waits until this node has applied `entry_id`, up to `within`.
    pub(super) async fn wait_read(
        &self,
        entry_id: EntryId,
        within: Duration,
    ) -> Result<(), ClusterError> {
        let mut read_rx = self.read_tx.subscribe();
        let is_read = tokio::time::timeout(within, read_rx.wait_for(|read| *read >= entry_id))
            .await
            .is_ok_and(|waited| waited.is_ok());
        is_read.then_some(()).ok_or(ClusterError::ReadBackTimeout)
    }

    /// A wait for the reader to reach `last_event_id` when this node may not have read it yet
    /// (it started while Redis was down, was frozen, or is catching up). A stream entry id is
    /// waited for exactly; any other id (a publisher's) waits until the reader has reached the
    /// log's end, since only then does "not in history" mean unknown.
    pub(super) fn catch_up(&self, last_event_id: &str) -> Option<LogFuture<'static, ()>> {
        let Some(wanted) = EntryId::parse(last_event_id) else {
            if *self.caught_up_tx.borrow() && self.is_current() {
                return None;
            }
            let mut caught_up_rx = self.caught_up_tx.subscribe();
            return Some(Box::pin(async move {
                let _ = tokio::time::timeout(
                    RESUME_WAIT_MAX,
                    caught_up_rx.wait_for(|caught_up| *caught_up),
                )
                .await;
            }));
        };
        if *self.read_tx.borrow() >= wanted {
            return None;
        }
        let mut read_rx = self.read_tx.subscribe();
        Some(Box::pin(async move {
            let _ = tokio::time::timeout(RESUME_WAIT_MAX, read_rx.wait_for(|read| *read >= wanted))
                .await;
        }))
    }
}

/// Reads the stream until `shutdown` or until the hub is gone. On first contact, loads the most
/// recent `history_len` entries into history.
pub(super) async fn read_loop(
    log: Arc<ClusterLog>,
    hub: Weak<Shared>,
    history_len: usize,
    shutdown: CancellationToken,
) {
    let mut last: Option<EntryId> = None;
    let mut delay = RECONNECT_DELAY_MIN;
    loop {
        let mut has_read = false;
        let outcome = tokio::select! {
            () = shutdown.cancelled() => return,
            outcome = read_session(&log, &hub, &mut last, history_len, &mut has_read) => outcome,
        };
        log.reader.mark_lost();
        let Err(err) = outcome else {
            return;
        };
        if has_read {
            // That session worked: the next outage starts from the shortest delay again.
            delay = RECONNECT_DELAY_MIN;
        }
        tracing::warn!(error = %err, retry_in = ?delay, "redis lost; subscribers keep their streams, publishing answers 503");
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(RECONNECT_DELAY_MAX);
    }
}

/// One connection's worth of reading; returns on the first error, or `Ok` once the hub is gone.
async fn read_session(
    log: &ClusterLog,
    hub: &Weak<Shared>,
    last: &mut Option<EntryId>,
    history_len: usize,
    has_read: &mut bool,
) -> Result<(), ClusterError> {
    let mut conn = log
        .redis
        .connect(Duration::from_millis(READ_BLOCK_MS) + COMMAND_TIMEOUT)
        .await?;
    let log_key = log.redis.key("log");
    let node = log.registry.node_id();
    match *last {
        None => {
            // First contact: what the log already holds is history for resume, not live events,
            // even for connections that opened while Redis was out of reach.
            let recent: Entries = redis::cmd("XREVRANGE")
                .arg(&log_key)
                .arg("+")
                .arg("-")
                .arg("COUNT")
                .arg(history_len.max(1))
                .query_async(&mut conn)
                .await
                .map_err(ClusterError::Unavailable)?;
            let newest_in_log = recent.first().and_then(|(id, _)| EntryId::parse(id));
            let mut recent: Vec<_> = recent.into_iter().rev().collect();
            // The namespaces' retained copies, up to the newest entry just read (later ones
            // come through the global stream like every live event).
            if let Some(newest) = newest_in_log {
                for (key, cap) in log.namespace_streams() {
                    let retained: Entries = redis::cmd("XREVRANGE")
                        .arg(&key)
                        .arg(newest.to_string())
                        .arg("-")
                        .arg("COUNT")
                        .arg(cap.max(1))
                        .query_async(&mut conn)
                        .await
                        .map_err(ClusterError::Unavailable)?;
                    recent.extend(retained);
                }
                recent.sort_by_key(|(id, _)| EntryId::parse(id).unwrap_or_default());
                recent.dedup_by(|a, b| a.0 == b.0);
            }
            let Some(shared) = hub.upgrade() else {
                return Ok(());
            };
            // Streams that opened before this (Redis was out of reach for longer than a stream
            // waits) started from no point of the shared log: tell them, so they reconnect.
            shared.join_log();
            let mut newest = EntryId::default();
            for (id, fields) in recent {
                newest = apply_raw(&shared, &id, fields, Apply::History).unwrap_or(newest);
            }
            drop(shared);
            tracing::info!(node, last = %newest, "joined the cluster log");
            *last = Some(newest);
            log.reader.mark_read(Some(newest), true);
            log.reader.joined_tx.send_replace(true);
        }
        Some(after) => {
            tracing::info!(node, from = %after, "reading the cluster log again");
        }
    }
    *has_read = true;
    let mut gap_reported_at = None;
    loop {
        let after = last.expect("set above");
        let from = after.to_string();
        // Before each read, check that the last entry read is still in the stream. Redis trims
        // the oldest entries first, so when it is gone, entries after it may be gone too
        // (`max-deleted-entry-id` does not move on `MAXLEN` trims): treat it as a gap.
        let (still_there, reply): (Entries, ReadReply) = redis::pipe()
            .cmd("XRANGE")
            .arg(&log_key)
            .arg(&from)
            .arg(&from)
            .cmd("XREAD")
            .arg("COUNT")
            .arg(READ_BATCH_MAX)
            .arg("BLOCK")
            .arg(READ_BLOCK_MS)
            .arg("STREAMS")
            .arg(&log_key)
            .arg(&from)
            .query_async(&mut conn)
            .await
            .map_err(ClusterError::Unavailable)?;
        let Some(shared) = hub.upgrade() else {
            return Ok(());
        };
        if still_there.is_empty() && after != EntryId::default() && gap_reported_at != Some(after) {
            tracing::warn!(last_read = %after, "redis trimmed events this node had not read; its clients must reload");
            shared.reset_history();
            gap_reported_at = Some(after);
        }
        let mut read = 0;
        for (_, entries) in reply.unwrap_or_default() {
            read += entries.len();
            for (id, fields) in entries {
                if let Some(entry_id) = apply_raw(&shared, &id, fields, Apply::Replicated) {
                    *last = Some(entry_id);
                }
            }
        }
        log.reader.mark_read(*last, read < READ_BATCH_MAX);
    }
}

/// Applies one raw stream entry; returns its id when it is a valid one (even if the entry itself
/// is unreadable and skipped).
fn apply_raw(
    shared: &Shared,
    id: &str,
    fields: Vec<(String, String)>,
    how: Apply,
) -> Option<EntryId> {
    let entry_id = EntryId::parse(id)?;
    let is_publisher_id_on_wire = fields
        .iter()
        .any(|(name, value)| name == "w" && value == "1");
    let Some((_, payload)) = fields.into_iter().find(|(name, _)| name == "e") else {
        tracing::warn!(entry = id, "skipping a cluster log entry without a payload");
        return Some(entry_id);
    };
    let entry = serde_json::from_str::<StoredEntry>(&payload)
        .ok()
        .and_then(StoredEntry::into_entry);
    match entry {
        Some(mut entry) => {
            entry.log_id = Some(id.to_owned());
            entry.is_publisher_id_on_wire = is_publisher_id_on_wire;
            // Applied whatever its id: only its position (after the last one read) decides.
            let _ = shared.apply(entry, how);
        }
        None => tracing::warn!(entry = id, "skipping an unreadable cluster log entry"),
    }
    Some(entry_id)
}

/// Stream entries as `XRANGE` returns them: `(entry id, [(field, value)])`.
type Entries = Vec<(String, Vec<(String, String)>)>;
/// An `XREAD` reply: `[(stream key, entries)]`, or nil when the block timed out.
type ReadReply = Option<Vec<(String, Entries)>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_ids_order_like_redis() {
        let a = EntryId::parse("1700000000000-0").expect("valid");
        let b = EntryId::parse("1700000000000-1").expect("valid");
        let c = EntryId::parse("1700000000001-0").expect("valid");
        assert!(a < b && b < c);
        assert_eq!(c.to_string(), "1700000000001-0");
        assert!(EntryId::parse("nope").is_none());
    }

    #[test]
    fn a_resume_waits_for_what_the_reader_has_not_read_yet() {
        let reader = ReaderState::default();
        assert!(
            reader.catch_up("publisher-id").is_some(),
            "before first contact any id may still be in the log"
        );
        assert!(reader.catch_up("5-0").is_some(), "not read yet");
        reader.mark_read(EntryId::parse("7-0"), false);
        assert!(reader.catch_up("5-0").is_none(), "already read");
        assert!(
            reader.catch_up("publisher-id").is_some(),
            "a full batch: the reader is still behind the log's end"
        );
        reader.mark_read(EntryId::parse("8-0"), true);
        assert!(reader.catch_up("publisher-id").is_none(), "at the end");
        assert!(reader.is_current());
        reader.mark_lost();
        assert!(
            reader.catch_up("publisher-id").is_some(),
            "lost: maybe behind"
        );
    }
}
