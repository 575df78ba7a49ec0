//! One connection's outgoing byte stream: preamble, replay from history, then live frames.
//!
//! Owns the order of what a subscriber reads and the hand-over from replay to live without a gap
//! or a duplicate (live frames at or below the last replayed position are dropped). Frames queued
//! while the writer slept are coalesced into one chunk, so a busy connection costs one write per
//! wake-up; while the hub's direct writer owns the socket (see `client`), it takes nothing. It
//! never fans out, never waits on anything but its own queue, and unregisters its connection
//! when dropped.

use crate::{
    channel::ChannelName,
    client::{take_chunk, ClientShared, EndReason, CHUNK_BYTES_MAX},
    direct::DirectSocket,
    event::ClientId,
    history::History,
    log::LogFuture,
    namespace::NamespaceMask,
    topic::may_read,
    wire, Hub,
};
use bytes::{Bytes, BytesMut};
use futures_util::Stream;
use std::{
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

/// Most history records examined per replay chunk, so one replay never holds the hub's lock long.
const REPLAY_RECORDS_PER_CHUNK_MAX: usize = 512;

/// The replay still to do for a resuming connection: positions `(cursor, until]` on `channels`.
#[derive(Debug)]
pub(crate) struct Replay {
    cursor: u64,
    until: u64,
    channels: Vec<ChannelName>,
}

impl Replay {
    pub(crate) fn new(after: u64, until: u64, channels: Vec<ChannelName>) -> Self {
        Self {
            cursor: after,
            until,
            channels,
        }
    }
}

/// What a stream writes before its live frames.
pub(crate) enum Start {
    /// Waiting for the log to read as far as the id the client resumes from (a cluster node
    /// that is catching up); the opening is decided once it has.
    AwaitLog {
        wait: LogFuture<'static, ()>,
        last_event_id: Option<String>,
        /// Where the stream starts if the id is still unknown once the log has caught up: the
        /// newest event when the connection was registered.
        start_id: String,
        channels: Vec<ChannelName>,
    },
    /// `retry:` and the `connected` event, then the replay, if any.
    Open {
        preamble: Bytes,
        replay: Option<Replay>,
    },
    /// The rest of a replay.
    Replay(Replay),
}

impl std::fmt::Debug for Start {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::AwaitLog { last_event_id, .. } => f
                .debug_struct("AwaitLog")
                .field("last_event_id", last_event_id)
                .finish(),
            Self::Open { replay, .. } => f.debug_struct("Open").field("replay", replay).finish(),
            Self::Replay(replay) => f.debug_tuple("Replay").field(replay).finish(),
        }
    }
}

/// The SSE byte stream of one connection, as returned by [`Hub::add_client`].
///
/// Yields chunks of `text/event-stream` bytes and ends when the connection is closed by the hub
/// (slow consumer, closed channel, removal, shutdown). Dropping it unregisters the connection.
#[derive(Debug)]
pub struct ClientStream {
    hub: Hub,
    client: Arc<ClientShared>,
    /// What comes before live frames; `None` once live (an idle stream holds no allocation).
    start: Option<Box<Start>>,
    /// Position of the last event written; live frames at or below it were replayed already.
    last_sent_seq: u64,
    resumed: bool,
    is_finished: bool,
}

/// Whether the hub has ended a connection (slow consumer, closed channel, removal, shutdown);
/// see [`ClientStream::end_signal`].
#[derive(Debug, Clone)]
pub(crate) struct EndSignal(Arc<ClientShared>);

impl EndSignal {
    /// Whether the connection's end is decided: what is left of its stream is at most a final
    /// comment.
    pub(crate) fn is_ended(&self) -> bool {
        self.0.lock_queue().end.is_some()
    }

    /// Lets the hub write events straight to `socket` while the stream's task sleeps.
    pub(crate) fn attach_direct(&self, socket: Arc<DirectSocket>) {
        self.0.attach_direct(socket);
    }

    /// Stops direct writes to the socket given in [`EndSignal::attach_direct`].
    pub(crate) fn detach_direct(&self) {
        self.0.detach_direct();
    }

    /// Encoded bytes a direct write left unwritten: they go to the socket as they are, before
    /// the stream's next chunk.
    pub(crate) fn take_rest(&self) -> Option<Bytes> {
        self.0.take_rest()
    }
}

/// What one replay step produced.
enum ReplayStep {
    /// Bytes to write; replay continues.
    Chunk(Bytes),
    /// Replay is complete (possibly with a last chunk).
    Done(Option<Bytes>),
    /// The connection must end after this chunk.
    End(Option<Bytes>, EndReason),
}

impl ClientStream {
    pub(crate) fn new(
        hub: Hub,
        client: Arc<ClientShared>,
        start: Start,
        last_sent_seq: u64,
        resumed: bool,
    ) -> Self {
        Self {
            hub,
            client,
            start: Some(Box::new(start)),
            last_sent_seq,
            resumed,
            is_finished: false,
        }
    }

    /// This connection's client id.
    pub fn client_id(&self) -> &ClientId {
        &self.client.id
    }

    /// A handle that tells whether the hub has ended this connection, asked without taking
    /// anything from the stream (the HTTP layer cuts a connection whose socket write is stuck
    /// once the hub has given up on it).
    pub(crate) fn end_signal(&self) -> EndSignal {
        EndSignal(self.client.clone())
    }

    /// Whether the connection resumed from a `Last-Event-ID` found in history (for a stream
    /// still waiting for a cluster log to catch up: false until it has).
    pub fn is_resumed(&self) -> bool {
        self.resumed
    }

    fn replay_step(&mut self) -> ReplayStep {
        let Some(Start::Replay(replay)) = self.start.as_deref_mut() else {
            unreachable!("replay_step is only called while replaying");
        };
        let key = self.client.key;
        let client_id = self.client.id.clone();
        let filter = self.client.filter.clone();
        let mut left_channels = Vec::new();
        let step = self.hub.with_history(|history: &History| {
            // A topic-selecting connection hears channels it does not name: every namespace.
            let mask = if filter.is_some() {
                NamespaceMask::ALL
            } else {
                history.mask_of(&replay.channels)
            };
            let Some(records) = history.after(replay.cursor, mask) else {
                return ReplayStep::End(None, EndReason::HistoryGap);
            };
            let mut chunk = BytesMut::new();
            let mut delivered = 0u64;
            for record in records.take(REPLAY_RECORDS_PER_CHUNK_MAX) {
                if record.seq > replay.until || chunk.len() >= CHUNK_BYTES_MAX {
                    break;
                }
                replay.cursor = record.seq;
                let addressed = match filter.as_deref() {
                    None if record.is_private() => None,
                    None => record.audience.matches(Some(&client_id), &replay.channels),
                    // A topic-selecting connection: its selectors and grants, as live.
                    Some(filter) => {
                        let topics = record.audience.channels();
                        (filter.selects(topics)
                            && may_read(Some(filter), topics, record.is_private()))
                        .then_some(None)
                    }
                };
                let Some(channel) = addressed else {
                    continue;
                };
                if let Some(frame) = record.delivered_frame() {
                    chunk.extend_from_slice(frame);
                    delivered += 1;
                    self.last_sent_seq = record.seq;
                }
                if let (true, Some(channel)) = (record.is_close(), channel) {
                    replay.channels.retain(|c| c != channel);
                    left_channels.push(channel.clone());
                    if replay.channels.is_empty() {
                        self.hub.count_delivered(delivered);
                        self.hub.count_replayed(delivered);
                        return ReplayStep::End(Some(chunk.freeze()), EndReason::ChannelClosed);
                    }
                }
            }
            self.hub.count_delivered(delivered);
            self.hub.count_replayed(delivered);
            let chunk = (!chunk.is_empty()).then(|| chunk.freeze());
            if replay.cursor >= replay.until {
                ReplayStep::Done(chunk)
            } else {
                match chunk {
                    Some(chunk) => ReplayStep::Chunk(chunk),
                    None => ReplayStep::Chunk(Bytes::new()),
                }
            }
        });
        for channel in &left_channels {
            self.hub.leave_closed_channel(key, channel);
        }
        step
    }

    fn poll_live(&mut self, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        let mut queue = self.client.lock_queue();
        if queue.is_task_writing() {
            if let Some(chunk) = take_chunk(&mut queue.frames, self.last_sent_seq) {
                drop(queue);
                self.last_sent_seq = self.last_sent_seq.max(chunk.last_seq);
                self.hub.count_delivered(chunk.events);
                return Poll::Ready(Some(chunk.bytes));
            }
            if let Some(reason) = queue.end {
                drop(queue);
                self.is_finished = true;
                return Poll::Ready(Some(wire::encode_comment(reason.comment())));
            }
            queue.park();
        }
        match &queue.waker {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            _ => queue.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

impl Stream for ClientStream {
    type Item = Bytes;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        let this = &mut *self;
        if this.is_finished {
            return Poll::Ready(None);
        }
        while let Some(start) = this.start.as_deref_mut() {
            match start {
                Start::AwaitLog {
                    wait,
                    last_event_id,
                    start_id,
                    channels,
                } => {
                    if wait.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    let (last_event_id, start_id, channels) = (
                        std::mem::take(last_event_id),
                        std::mem::take(start_id),
                        std::mem::take(channels),
                    );
                    let (opening, resume_after) = this.hub.opening_after_wait(
                        &this.client,
                        channels,
                        last_event_id.as_deref(),
                        &start_id,
                    );
                    if let Some(after) = resume_after {
                        this.last_sent_seq = this.last_sent_seq.max(after);
                        this.resumed = true;
                    }
                    this.start = Some(Box::new(opening));
                }
                Start::Open { preamble, replay } => {
                    let preamble = std::mem::take(preamble);
                    this.start = replay.take().map(|replay| Box::new(Start::Replay(replay)));
                    return Poll::Ready(Some(preamble));
                }
                Start::Replay(_) => match this.replay_step() {
                    ReplayStep::Chunk(chunk) if chunk.is_empty() => continue,
                    ReplayStep::Chunk(chunk) => return Poll::Ready(Some(chunk)),
                    ReplayStep::Done(chunk) => {
                        this.start = None;
                        if let Some(chunk) = chunk {
                            return Poll::Ready(Some(chunk));
                        }
                    }
                    ReplayStep::End(chunk, reason) => {
                        this.start = None;
                        this.client.end(reason, false);
                        let mut bytes = BytesMut::new();
                        if let Some(chunk) = chunk {
                            bytes.extend_from_slice(&chunk);
                        }
                        bytes.extend_from_slice(&wire::encode_comment(reason.comment()));
                        this.is_finished = true;
                        return Poll::Ready(Some(bytes.freeze()));
                    }
                },
            }
        }
        this.poll_live(cx)
    }
}

impl Drop for ClientStream {
    fn drop(&mut self) {
        self.hub.forget(&self.client);
    }
}
