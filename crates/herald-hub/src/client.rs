//! One connection's shared half: its identity and its bounded queue of encoded frames.
//!
//! Owns the queue policy: publishers push with [`ClientShared::push_event`], which never waits; a
//! push to a full queue ends the connection (the client resumes from history). It also owns who
//! writes the connection's socket at any moment ([`Writer`]): its own task (which
//! [`crate::stream::ClientStream`] drives, draining the queue into the response body), or, while
//! that task is parked on an empty queue and the HTTP layer gave the connection a
//! [`DirectSocket`], the hub's direct writer (`crate::direct`), which writes an event without
//! waking the connection's task: the common case of a few events a second to many subscribers
//! costs one write per delivery and no task wake-up. It never reads history and never touches a
//! socket itself.

use crate::{direct::DirectSocket, event::ClientId, metrics::CloseReason};
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

/// Who writes a connection's socket now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum Writer {
    /// The connection's own task: pushes queue and wake it.
    #[default]
    Task,
    /// The connection's task sleeps on an empty queue, nothing is in flight, and the connection
    /// has a [`DirectSocket`]: the next event is claimed for the direct writer.
    Parked,
    /// The direct writer owns the socket until it hands it back: pushes queue without waking
    /// the task, and the task takes nothing.
    Claimed,
}

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
    /// What a direct write left unwritten of its chunk, always at the front: the connection's
    /// task writes it as it is, before anything else.
    Rest(Bytes),
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
    /// Not queued: the connection is claimed for the hub's direct writer, which must be given
    /// it with the event (the caller hands it over with the other claims of the same event,
    /// after the hub's lock).
    Claimed,
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
    pub(crate) writer: Writer,
    /// Set by the HTTP layer while it serves the stream over a socket the direct writer may use.
    direct: Option<Arc<DirectSocket>>,
}

impl Queue {
    /// Whether the connection's task may take frames now (nothing is claimed or half written).
    pub(crate) fn is_task_writing(&self) -> bool {
        self.writer != Writer::Claimed && !matches!(self.frames.front(), Some(Frame::Rest(_)))
    }

    /// Drops every queued frame but the unwritten end of a chunk already begun (the stream's
    /// framing must stay whole for its closing comment).
    fn clear_frames(&mut self) {
        let rest = match self.frames.pop_front() {
            Some(rest @ Frame::Rest(_)) => Some(rest),
            _ => None,
        };
        self.frames = VecDeque::new();
        self.frames.extend(rest);
    }

    /// Called by the connection's task as it sleeps on an empty queue: with a direct socket, the
    /// next event may be written without waking it.
    pub(crate) fn park(&mut self) {
        if self.direct.is_some()
            && self.frames.is_empty()
            && self.end.is_none()
            && self.is_task_writing()
        {
            self.writer = Writer::Parked;
        }
    }

    /// Gives the socket back to the connection's task and the waker to call, if any.
    fn hand_to_task(&mut self) -> Option<Waker> {
        self.writer = Writer::Task;
        self.waker.take()
    }
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
        self.push(Frame::Transient(bytes.clone()), capacity, false)
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

    /// Queues an event once per `seq`, without waiting. A full queue ends the connection. With
    /// `may_claim`, a parked connection is claimed for the direct writer ([`PushOutcome::Claimed`]).
    pub(crate) fn push_event(
        &self,
        seq: u64,
        bytes: &Bytes,
        capacity: usize,
        may_claim: bool,
    ) -> PushOutcome {
        if self.last_enqueued_seq.swap(seq, Ordering::Relaxed) == seq {
            return PushOutcome::AlreadyQueued;
        }
        let frame = Frame::Event {
            seq,
            bytes: bytes.clone(),
        };
        self.push(frame, capacity, may_claim)
    }

    fn push(&self, frame: Frame, capacity: usize, may_claim: bool) -> PushOutcome {
        let mut queue = self.lock_queue();
        if queue.end.is_some() {
            return PushOutcome::Ended;
        }
        if queue.frames.len() >= capacity {
            queue.clear_frames();
            queue.end = Some(EndReason::Overflow);
            self.wake_writer(queue);
            return PushOutcome::Overflowed;
        }
        if may_claim && queue.writer == Writer::Parked && matches!(frame, Frame::Event { .. }) {
            // The queue is empty: the event goes with the claim, to the direct writer.
            queue.writer = Writer::Claimed;
            return PushOutcome::Claimed;
        }
        queue.frames.push_back(frame);
        self.wake_writer(queue);
        PushOutcome::Queued
    }

    /// After a change to the queue: wakes the connection's task unless the direct writer owns
    /// the socket (it hands the socket back, and wakes the task, when it is done).
    fn wake_writer(&self, mut queue: MutexGuard<'_, Queue>) {
        if queue.writer == Writer::Claimed {
            return;
        }
        let waker = queue.hand_to_task();
        drop(queue);
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Queues a heartbeat if nothing else is waiting (a busy stream needs none).
    pub(crate) fn push_heartbeat(&self) {
        let mut queue = self.lock_queue();
        if queue.end.is_some() || !queue.frames.is_empty() {
            return;
        }
        queue.frames.push_back(Frame::Heartbeat);
        self.wake_writer(queue);
    }

    /// Lets the hub's direct writer use `socket` while the connection's task is parked.
    pub(crate) fn attach_direct(&self, socket: Arc<DirectSocket>) {
        self.lock_queue().direct = Some(socket);
    }

    /// Stops direct writes (the HTTP layer is done with the socket).
    pub(crate) fn detach_direct(&self) {
        let mut queue = self.lock_queue();
        queue.direct = None;
        if queue.writer == Writer::Parked {
            queue.writer = Writer::Task;
        }
    }

    /// Takes the bytes a direct write left unwritten, to be written before anything else.
    pub(crate) fn take_rest(&self) -> Option<Bytes> {
        let mut queue = self.lock_queue();
        if !matches!(queue.frames.front(), Some(Frame::Rest(_))) {
            return None;
        }
        match queue.frames.pop_front() {
            Some(Frame::Rest(rest)) => Some(rest),
            _ => None,
        }
    }

    /// The direct writer's turn at this claimed connection, with the event that claimed it
    /// (`seq`, its `frame`, and `chunk`, the same frame as one chunk of the stream): writes it,
    /// and whatever was queued since, to the direct socket without waiting, then parks the
    /// connection again or, when more is queued, the write was partial or refused, or the stream
    /// is ending, hands the socket back to the connection's task and wakes it. Returns the events
    /// written (counted as delivered here; what goes back to the task is counted by it).
    pub(crate) fn write_claimed(&self, seq: u64, frame: &Bytes, chunk: &Bytes) -> u64 {
        let mut queue = self.lock_queue();
        if queue.writer != Writer::Claimed {
            return 0;
        }
        let claimed = Frame::Event {
            seq,
            bytes: frame.clone(),
        };
        if queue.end.is_some() {
            // The stream is ending: the event goes before its closing comment, from its task.
            queue.frames.push_front(claimed);
            self.wake_writer_after_claim(queue);
            return 0;
        }
        let Some(socket) = queue.direct.clone() else {
            queue.frames.push_front(claimed);
            self.wake_writer_after_claim(queue);
            return 0;
        };
        if !queue.frames.is_empty() {
            // Events came while this one waited: one chunk for all of them.
            queue.frames.push_front(claimed);
            return self.write_claimed_queue(queue, &socket);
        }
        drop(queue);
        let written = socket.try_write(chunk);
        // Refused, the event goes back to the task as an event: the task counts it.
        u64::from(self.end_claim(written, claimed))
    }

    /// [`ClientShared::write_claimed`] when several frames wait: takes them as one chunk.
    fn write_claimed_queue(&self, mut queue: MutexGuard<'_, Queue>, socket: &DirectSocket) -> u64 {
        let Some(chunk) = take_chunk(&mut queue.frames, 0) else {
            self.wake_writer_after_claim(queue);
            return 0;
        };
        drop(queue);
        let written = socket.try_write_chunk(&chunk.bytes);
        // Its events are counted here whatever happens, so refused, it goes back as bytes the
        // task does not count again.
        self.end_claim(written, Frame::Transient(chunk.bytes));
        chunk.events
    }

    /// Ends a claim after a direct write: whole, the connection is parked again (or handed to
    /// its task when more is queued or the stream is ending); partial, its task writes the rest
    /// first; refused (nothing written), its task writes `unwritten` first, and waits for the
    /// socket (or finds it failed) as it always does. Whether anything was written.
    fn end_claim(&self, written: std::io::Result<Option<Bytes>>, unwritten: Frame) -> bool {
        let mut queue = self.lock_queue();
        match written {
            Ok(None) if queue.frames.is_empty() && queue.end.is_none() => {
                queue.writer = Writer::Parked;
                true
            }
            Ok(None) => {
                self.wake_writer_after_claim(queue);
                true
            }
            Ok(Some(rest)) => {
                queue.frames.push_front(Frame::Rest(rest));
                self.wake_writer_after_claim(queue);
                true
            }
            Err(_) => {
                queue.frames.push_front(unwritten);
                self.wake_writer_after_claim(queue);
                false
            }
        }
    }

    /// Gives a claimed connection back to its own task with the event that claimed it,
    /// unwritten (the direct writer is gone).
    pub(crate) fn release_claim(&self, seq: u64, frame: &Bytes) {
        let mut queue = self.lock_queue();
        if queue.writer == Writer::Claimed {
            let bytes = frame.clone();
            queue.frames.push_front(Frame::Event { seq, bytes });
            self.wake_writer_after_claim(queue);
        }
    }

    /// Ends a claim: the connection's task writes from here.
    fn wake_writer_after_claim(&self, mut queue: MutexGuard<'_, Queue>) {
        queue.writer = Writer::Task;
        self.wake_writer(queue);
    }

    /// Ends the connection. With `drain`, frames already queued are written first.
    pub(crate) fn end(&self, reason: EndReason, drain: bool) {
        let mut queue = self.lock_queue();
        if queue.end.is_some() {
            return;
        }
        if !drain {
            queue.clear_frames();
        }
        queue.end = Some(reason);
        self.wake_writer(queue);
    }
}

/// Queued frames taken as one piece of the stream.
#[derive(Debug)]
pub(crate) struct Chunk {
    pub(crate) bytes: Bytes,
    /// Events in it.
    pub(crate) events: u64,
    /// Position of its last event (0: none).
    pub(crate) last_seq: u64,
}

/// Most bytes one chunk of the stream carries; more waits for the next one.
pub(crate) const CHUNK_BYTES_MAX: usize = 64 * 1024;

/// Takes frames from the front of `frames` as one chunk of at most about [`CHUNK_BYTES_MAX`]
/// bytes, skipping events at or below `after_seq` (replayed already); `None` when nothing is
/// left to write. One frame is its own bytes; several are copied into one buffer, so a busy
/// connection costs one write for all that waited.
pub(crate) fn take_chunk(frames: &mut VecDeque<Frame>, after_seq: u64) -> Option<Chunk> {
    let mut first: Option<Bytes> = None;
    let mut rest: Option<bytes::BytesMut> = None;
    let (mut events, mut last_seq) = (0, 0);
    while let Some(frame) = frames.pop_front() {
        let bytes = match frame {
            Frame::Event { seq, .. } if seq <= after_seq => continue,
            Frame::Event { seq, bytes } => {
                last_seq = seq;
                events += 1;
                bytes
            }
            Frame::Heartbeat => Bytes::from_static(crate::wire::HEARTBEAT_FRAME),
            Frame::Transient(bytes) => bytes,
            // Written by the connection's task before any chunk (see `take_rest`).
            rest @ Frame::Rest(_) => {
                frames.push_front(rest);
                break;
            }
        };
        match (&first, &mut rest) {
            (None, _) => first = Some(bytes),
            (Some(head), None) => {
                let mut buf = bytes::BytesMut::with_capacity(head.len() + bytes.len());
                buf.extend_from_slice(head);
                buf.extend_from_slice(&bytes);
                rest = Some(buf);
            }
            (Some(_), Some(buf)) => buf.extend_from_slice(&bytes),
        }
        let len = rest.as_ref().map_or_else(
            || first.as_ref().map_or(0, Bytes::len),
            bytes::BytesMut::len,
        );
        if len >= CHUNK_BYTES_MAX {
            break;
        }
    }
    if frames.is_empty() && frames.capacity() > 0 {
        // Give the queue's buffer back: an idle connection holds no allocation.
        *frames = VecDeque::new();
    }
    let bytes = rest.map(bytes::BytesMut::freeze).or(first)?;
    Some(Chunk {
        bytes,
        events,
        last_seq,
    })
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
        assert_eq!(client.push_event(5, &bytes, 8, true), PushOutcome::Queued);
        assert_eq!(
            client.push_event(5, &bytes, 8, true),
            PushOutcome::AlreadyQueued
        );
        assert_eq!(client.lock_queue().frames.len(), 1);
    }

    #[test]
    fn a_full_queue_ends_the_connection_and_frees_its_frames() {
        let client = client();
        let bytes = Bytes::from_static(b"data: x\n\n");
        for seq in 1..=2 {
            assert_eq!(client.push_event(seq, &bytes, 2, true), PushOutcome::Queued);
        }
        assert_eq!(
            client.push_event(3, &bytes, 2, true),
            PushOutcome::Overflowed
        );
        let queue = client.lock_queue();
        assert!(queue.frames.is_empty());
        assert_eq!(queue.end, Some(EndReason::Overflow));
        drop(queue);
        assert_eq!(client.push_event(4, &bytes, 2, true), PushOutcome::Ended);
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
mod direct_tests {
    use super::*;
    use crate::direct::chunk_of;
    use std::{
        sync::atomic::AtomicUsize,
        task::{Wake, Waker},
    };
    use tokio::io::AsyncReadExt;

    #[derive(Default)]
    struct CountingWaker(AtomicUsize);

    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn wakes(waker: &CountingWaker) -> usize {
        waker.0.load(Ordering::SeqCst)
    }

    /// A connection whose direct socket is one end of a loopback pair (the other end returned),
    /// parked as its task leaves it.
    async fn parked() -> (
        ClientShared,
        Arc<DirectSocket>,
        tokio::net::TcpStream,
        Arc<CountingWaker>,
    ) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binds");
        let addr = listener.local_addr().expect("bound");
        let (connected, accepted) =
            tokio::join!(tokio::net::TcpStream::connect(addr), listener.accept());
        let socket = Arc::new(DirectSocket::new(accepted.expect("accepts").0));
        let client = ClientShared::new(1, ClientId::new("c1").expect("valid"), None, None, None);
        client.attach_direct(socket.clone());
        let wakes = Arc::new(CountingWaker::default());
        let mut queue = client.lock_queue();
        queue.waker = Some(Waker::from(wakes.clone()));
        queue.park();
        assert_eq!(queue.writer, Writer::Parked);
        drop(queue);
        (client, socket, connected.expect("connects"), wakes)
    }

    async fn read_exactly(peer: &mut tokio::net::TcpStream, len: usize) -> Vec<u8> {
        let mut read = vec![0; len];
        peer.read_exact(&mut read).await.expect("reads");
        read
    }

    #[tokio::test]
    async fn an_event_to_a_parked_connection_is_written_without_waking_its_task() {
        let (client, _socket, mut peer, waker) = parked().await;
        let bytes = Bytes::from_static(b"data: a\n\n");
        assert_eq!(client.push_event(1, &bytes, 8, true), PushOutcome::Claimed);
        // Claimed: another event waits in the queue, the task is not woken and takes nothing.
        assert_eq!(client.push_event(2, &bytes, 8, true), PushOutcome::Queued);
        assert!(!client.lock_queue().is_task_writing());
        assert_eq!(wakes(&waker), 0);
        assert_eq!(
            client.write_claimed(1, &bytes, &chunk_of(&bytes)),
            2,
            "both events in one write"
        );
        let chunk = b"12\r\ndata: a\n\ndata: a\n\n\r\n";
        assert_eq!(
            read_exactly(&mut peer, chunk.len()).await,
            chunk,
            "one chunk"
        );
        assert_eq!(client.lock_queue().writer, Writer::Parked);
        assert_eq!(wakes(&waker), 0);
        // Alone, an event is written as the chunk framed once for every connection.
        assert_eq!(client.push_event(3, &bytes, 8, true), PushOutcome::Claimed);
        assert_eq!(client.write_claimed(3, &bytes, &chunk_of(&bytes)), 1);
        let chunk = b"9\r\ndata: a\n\n\r\n";
        assert_eq!(read_exactly(&mut peer, chunk.len()).await, chunk);
        assert_eq!(client.lock_queue().writer, Writer::Parked);
        assert_eq!(wakes(&waker), 0);
        // Heartbeats and presence events go through the task as before.
        client.push_heartbeat();
        assert_eq!(client.lock_queue().writer, Writer::Task);
        assert_eq!(wakes(&waker), 1);
    }

    #[tokio::test]
    async fn while_the_direct_writer_is_busy_the_task_is_woken_as_before() {
        let (client, _socket, _peer, waker) = parked().await;
        let bytes = Bytes::from_static(b"data: a\n\n");
        assert_eq!(client.push_event(1, &bytes, 8, false), PushOutcome::Queued);
        assert_eq!(client.lock_queue().writer, Writer::Task);
        assert_eq!(wakes(&waker), 1);
        assert_eq!(
            client.write_claimed(1, &bytes, &chunk_of(&bytes)),
            0,
            "nothing was claimed"
        );
        assert_eq!(client.lock_queue().frames.len(), 1);
    }

    #[tokio::test]
    async fn an_event_the_socket_refuses_goes_back_to_the_task_whole() {
        let (client, socket, _peer, waker) = parked().await;
        let filler = vec![b'x'; 64 * 1024];
        while socket.tcp().try_write(&filler).is_ok() {}
        let bytes = Bytes::from_static(b"data: a\n\n");
        assert_eq!(client.push_event(1, &bytes, 8, true), PushOutcome::Claimed);
        assert_eq!(
            client.write_claimed(1, &bytes, &chunk_of(&bytes)),
            0,
            "counted by the task that writes it"
        );
        let mut queue = client.lock_queue();
        assert_eq!(queue.writer, Writer::Task);
        assert!(
            matches!(queue.frames.pop_front(), Some(Frame::Event { seq: 1, bytes: b }) if b == bytes)
        );
        drop(queue);
        assert_eq!(wakes(&waker), 1);
    }

    #[tokio::test]
    async fn the_unwritten_end_of_a_chunk_goes_first_and_survives_the_end() {
        let (client, _socket, _peer, _waker) = parked().await;
        let mut queue = client.lock_queue();
        queue.writer = Writer::Task;
        queue
            .frames
            .push_back(Frame::Rest(Bytes::from_static(b"a\n\n\r\n")));
        queue.frames.push_back(Frame::Heartbeat);
        assert!(!queue.is_task_writing(), "the rest goes before any chunk");
        assert!(take_chunk(&mut queue.frames, 0).is_none());
        drop(queue);
        client.end(EndReason::Removed, false);
        assert_eq!(client.take_rest().as_deref(), Some(&b"a\n\n\r\n"[..]));
        assert!(client.lock_queue().frames.is_empty());
    }

    #[tokio::test]
    async fn a_detached_socket_is_never_written() {
        let (client, _socket, mut peer, waker) = parked().await;
        let bytes = Bytes::from_static(b"data: a\n\n");
        assert_eq!(client.push_event(1, &bytes, 8, true), PushOutcome::Claimed);
        client.detach_direct();
        assert_eq!(client.write_claimed(1, &bytes, &chunk_of(&bytes)), 0);
        assert_eq!(client.lock_queue().frames.len(), 1, "the task writes it");
        assert_eq!(wakes(&waker), 1);
        let mut probe = [0u8; 1];
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(50), peer.read(&mut probe))
                .await
                .is_err(),
            "nothing reached the socket"
        );
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
        // 200: the queue's pointer to its direct socket (one allocation, for streams served
        // over plain TCP) took it from 192.
        assert!(shared <= 200, "ClientShared grew to {shared} bytes");
        assert!(stream <= 128, "ClientStream grew to {stream} bytes");
    }
}
