//! One connection's shared half: its identity and its bounded queue of encoded frames.
//!
//! Owns the queue policy: publishers push with [`ClientShared::push`], which never waits; a push to a
//! full queue ends the connection (the client resumes from history). It never reads history and never
//! touches a socket; [`crate::stream::ClientStream`] drains the queue into the response body.

use crate::{event::ClientId, metrics::CloseReason};
use bytes::Bytes;
use std::{
    collections::VecDeque,
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex, MutexGuard,
    },
    task::Waker,
    time::SystemTime,
};

/// One item waiting in a connection's queue.
#[derive(Debug, Clone)]
pub(crate) enum Frame {
    /// An encoded event at history position `seq`.
    Event { seq: u64, bytes: Bytes },
    /// A `: heartbeat` comment.
    Heartbeat,
    /// Encoded events kept in no history (presence `join` and `leave`): they carry no id, so the
    /// client's resume position is untouched.
    Transient(Bytes),
}

/// Why a connection's stream ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EndReason {
    /// The client fell further behind than its queue.
    Overflow,
    /// The only channel of the stream was closed.
    ChannelClosed,
    /// The hub is shutting down.
    Shutdown,
    /// An operator or the application removed the connection.
    Removed,
    /// A newer connection took over this client id.
    Replaced,
    /// Events this client needed left history before they could be replayed.
    HistoryGap,
    /// Its user opened more connections than `HubConfig::max_connections_per_user`; the oldest goes.
    UserLimit,
}

impl EndReason {
    /// The `reason` label of `herald_streams_closed_total`.
    pub(crate) fn metric(self) -> CloseReason {
        match self {
            EndReason::Overflow => CloseReason::SlowConsumer,
            EndReason::ChannelClosed => CloseReason::ChannelClosed,
            EndReason::Shutdown => CloseReason::Shutdown,
            EndReason::Removed => CloseReason::Removed,
            EndReason::Replaced => CloseReason::Replaced,
            EndReason::HistoryGap => CloseReason::HistoryGap,
            EndReason::UserLimit => CloseReason::UserLimit,
        }
    }

    /// The final comment the client reads before the stream ends.
    pub(crate) fn comment(self) -> &'static str {
        match self {
            EndReason::Overflow => {
                "closed: slow consumer, queue full; reconnect with Last-Event-ID to resume"
            }
            EndReason::ChannelClosed => "closed: channel closed",
            EndReason::Shutdown => {
                "closed: hub shutting down; reconnect with Last-Event-ID to resume"
            }
            EndReason::Removed => "closed: removed by the hub",
            EndReason::Replaced => "closed: another connection took this client id",
            EndReason::HistoryGap => {
                "closed: history moved past this stream; reconnect with Last-Event-ID"
            }
            EndReason::UserLimit => {
                "closed: this user opened a newer connection and has reached the per-user limit"
            }
        }
    }
}

/// What [`ClientShared::push`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PushOutcome {
    Queued,
    /// This event was already queued here through another of the connection's channels.
    AlreadyQueued,
    /// The queue was full: the connection is now ending, its queue freed.
    Overflowed,
    /// The connection was already ending; nothing was queued.
    Ended,
}

#[derive(Debug, Default)]
pub(crate) struct Queue {
    pub(crate) frames: VecDeque<Frame>,
    pub(crate) waker: Option<Waker>,
    pub(crate) end: Option<EndReason>,
}

/// The part of a connection that publishers and the registry see.
///
/// Memory: a few machine words plus the queue, which allocates only while it holds frames.
#[derive(Debug)]
pub(crate) struct ClientShared {
    /// Registry key, unique for the life of the hub (client ids can be reused).
    pub(crate) key: u64,
    pub(crate) id: ClientId,
    pub(crate) user: Option<Arc<str>>,
    /// The identity the client id is bound to (`None`: anonymous): only it may take the id.
    pub(crate) owner: Option<Arc<str>>,
    pub(crate) remote_addr: Option<SocketAddr>,
    pub(crate) connected_at: SystemTime,
    /// Position of the last event queued here; de-duplicates an event sent to several of this
    /// connection's channels. Written only under the hub's state lock.
    pub(crate) last_enqueued_seq: AtomicU64,
    /// True once the stream's opening (`connected`) was decided: the stream has a starting point.
    pub(crate) is_opened: AtomicBool,
    /// The connection asked for presence events (`join`, `leave`) on its channels.
    pub(crate) wants_presence: bool,
    /// What a topic-selecting connection (Mercure) hears; `None` for Herald's API.
    pub(crate) filter: Option<Arc<crate::topic::TopicFilter>>,
    queue: Mutex<Queue>,
}

impl ClientShared {
    pub(crate) fn new(
        key: u64,
        id: ClientId,
        user: Option<Arc<str>>,
        owner: Option<Arc<str>>,
        remote_addr: Option<SocketAddr>,
    ) -> Self {
        Self {
            key,
            id,
            user,
            owner,
            remote_addr,
            connected_at: SystemTime::now(),
            last_enqueued_seq: AtomicU64::new(0),
            is_opened: AtomicBool::new(false),
            wants_presence: false,
            filter: None,
            queue: Mutex::new(Queue::default()),
        }
    }

    /// This connection, asking for presence events or not.
    pub(crate) fn with_presence(mut self, wants_presence: bool) -> Self {
        self.wants_presence = wants_presence;
        self
    }

    /// Queues frames kept in no history, without waiting. A full queue ends the connection.
    pub(crate) fn push_transient(&self, bytes: &Bytes, capacity: usize) -> PushOutcome {
        self.push(Frame::Transient(bytes.clone()), capacity)
    }

    /// The same connection, hearing what `filter` selects.
    pub(crate) fn with_filter(mut self, filter: Option<Arc<crate::topic::TopicFilter>>) -> Self {
        self.filter = filter;
        self
    }

    pub(crate) fn lock_queue(&self) -> MutexGuard<'_, Queue> {
        // A panic while holding this lock leaves a queue of plain data: still consistent.
        self.queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues an event once per `seq`, without waiting. A full queue ends the connection.
    pub(crate) fn push_event(&self, seq: u64, bytes: &Bytes, capacity: usize) -> PushOutcome {
        if self.last_enqueued_seq.swap(seq, Ordering::Relaxed) == seq {
            return PushOutcome::AlreadyQueued;
        }
        self.push(
            Frame::Event {
                seq,
                bytes: bytes.clone(),
            },
            capacity,
        )
    }

    fn push(&self, frame: Frame, capacity: usize) -> PushOutcome {
        let mut queue = self.lock_queue();
        if queue.end.is_some() {
            return PushOutcome::Ended;
        }
        let outcome = if queue.frames.len() >= capacity {
            queue.frames = VecDeque::new();
            queue.end = Some(EndReason::Overflow);
            PushOutcome::Overflowed
        } else {
            queue.frames.push_back(frame);
            PushOutcome::Queued
        };
        let waker = queue.waker.take();
        drop(queue);
        if let Some(waker) = waker {
            waker.wake();
        }
        outcome
    }

    /// Queues a heartbeat if nothing else is waiting (a busy stream needs none).
    pub(crate) fn push_heartbeat(&self) {
        let mut queue = self.lock_queue();
        if queue.end.is_some() || !queue.frames.is_empty() {
            return;
        }
        queue.frames.push_back(Frame::Heartbeat);
        let waker = queue.waker.take();
        drop(queue);
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Ends the connection. With `drain`, frames already queued are written first.
    pub(crate) fn end(&self, reason: EndReason, drain: bool) {
        let mut queue = self.lock_queue();
        if queue.end.is_some() {
            return;
        }
        if !drain {
            queue.frames = VecDeque::new();
        }
        queue.end = Some(reason);
        let waker = queue.waker.take();
        drop(queue);
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> ClientShared {
        ClientShared::new(1, ClientId::new("c1").expect("valid"), None, None, None)
    }

    #[test]
    fn an_event_for_several_channels_is_queued_once() {
        let client = client();
        let bytes = Bytes::from_static(b"data: x\n\n");
        assert_eq!(client.push_event(5, &bytes, 8), PushOutcome::Queued);
        assert_eq!(client.push_event(5, &bytes, 8), PushOutcome::AlreadyQueued);
        assert_eq!(client.lock_queue().frames.len(), 1);
    }

    #[test]
    fn a_full_queue_ends_the_connection_and_frees_its_frames() {
        let client = client();
        let bytes = Bytes::from_static(b"data: x\n\n");
        for seq in 1..=2 {
            assert_eq!(client.push_event(seq, &bytes, 2), PushOutcome::Queued);
        }
        assert_eq!(client.push_event(3, &bytes, 2), PushOutcome::Overflowed);
        let queue = client.lock_queue();
        assert!(queue.frames.is_empty());
        assert_eq!(queue.end, Some(EndReason::Overflow));
        drop(queue);
        assert_eq!(client.push_event(4, &bytes, 2), PushOutcome::Ended);
    }

    #[test]
    fn heartbeats_are_only_queued_on_an_idle_connection() {
        let client = client();
        client.push_heartbeat();
        client.push_heartbeat();
        assert_eq!(client.lock_queue().frames.len(), 1);
    }
}

#[cfg(test)]
mod size_tests {
    /// Every idle connection holds one `ClientShared` and one `ClientStream`: keep them small.
    /// (See docs/architecture.md for the whole per-connection budget.)
    #[test]
    fn per_connection_state_stays_small() {
        let shared = std::mem::size_of::<super::ClientShared>();
        let stream = std::mem::size_of::<crate::stream::ClientStream>();
        eprintln!("ClientShared {shared} bytes, ClientStream {stream} bytes");
        assert!(shared <= 192, "ClientShared grew to {shared} bytes");
        assert!(stream <= 128, "ClientStream grew to {stream} bytes");
    }
}
