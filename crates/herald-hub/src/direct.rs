//! The hub's direct writer: one task that writes events to connections whose own task sleeps.
//!
//! Owns the hand-over of claimed connections (see `client`: a push to a parked connection with
//! a direct socket claims it) from fan-out to the one task that writes them. Fan-out runs under
//! the hub's lock and never writes a socket; after the lock, one event (framed once as a chunk of
//! the stream) and its claims go here as one batch, and this task writes it to each connection
//! with one non-blocking write (with what was queued since, if anything, as one chunk), then
//! parks the connection again or hands it back to its own task. Nothing is claimed while a batch
//! is in flight: a burst is written by each connection's own task, which coalesces it. So an event to 1 000 idle
//! subscribers wakes one task, not 1 000, and costs one system call per subscriber (the
//! benchmark's floor server's way); a busy connection is written by its own task, which
//! coalesces what waited. It never waits on a socket (a write the socket does not take whole
//! goes back to the connection's task) and never decides who hears an event.
//!
//! Memory: a connection is claimed at most once at a time, so the batches waiting here hold at
//! most one entry per connection (the channel is unbounded, the entries are not), and a batch
//! holds one copy of its event.
//!
//! A connection can be written here only when the HTTP layer gave it a [`DirectSocket`]: a plain
//! TCP stream whose body is `chunked` and written off hyper (a TLS session or an HTTP/2 stream
//! has one writer's state, so those are always written by their own task).

use crate::{
    client::ClientShared,
    hub::Shared,
    wire::{chunk_size_line, CHUNK_SIZE_LINE_BYTES_MAX},
};
use bytes::Bytes;
use std::{
    io::{self, IoSlice},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Weak,
    },
};
use tokio::{net::TcpStream, sync::mpsc};

/// The socket of a plain TCP event stream, shared by the connection's task (which reads and
/// writes it through tokio's readiness API) and the direct writer (which writes one chunk at a
/// time and never waits).
#[derive(Debug)]
pub(crate) struct DirectSocket(TcpStream);

impl DirectSocket {
    pub(crate) fn new(socket: TcpStream) -> Self {
        Self(socket)
    }

    /// The socket, for the connection's task.
    pub(crate) fn tcp(&self) -> &TcpStream {
        &self.0
    }

    /// Writes `bytes` (a piece already framed as a chunk: see [`chunk_of`]) with one write,
    /// without waiting. `Ok(None)`: all of it; `Ok(Some(rest))`: part of it, and `rest` is what is
    /// left, to be written as it is before anything else; `Err`: none of it.
    pub(crate) fn try_write(&self, bytes: &Bytes) -> io::Result<Option<Bytes>> {
        match self.0.try_write(bytes)? {
            0 => Err(io::ErrorKind::WouldBlock.into()),
            written if written == bytes.len() => Ok(None),
            written => Ok(Some(bytes.slice(written..))),
        }
    }

    /// Writes `piece` as one chunk of the `chunked` body (size line, bytes, CRLF) with one
    /// vectored write, without waiting. `Ok(None)`: all of it; `Ok(Some(rest))`: part of it, and
    /// `rest` is what is left of the chunk, to be written as it is before anything else; `Err`:
    /// none of it (the socket is full, or failed).
    pub(crate) fn try_write_chunk(&self, piece: &[u8]) -> io::Result<Option<Bytes>> {
        let mut size_line = [0u8; CHUNK_SIZE_LINE_BYTES_MAX];
        let size_line = chunk_size_line(piece.len(), &mut size_line);
        let parts = [size_line, piece, b"\r\n"];
        let total: usize = parts.iter().map(|part| part.len()).sum();
        let written = self.0.try_write_vectored(&parts.map(IoSlice::new))?;
        if written == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        if written == total {
            return Ok(None);
        }
        // The socket took part of it (its buffer is full): what is left is copied once, for the
        // connection's task to write when the socket drains.
        let mut rest = Vec::with_capacity(total - written);
        let mut skip = written;
        for part in parts {
            let taken = skip.min(part.len());
            skip -= taken;
            rest.extend_from_slice(&part[taken..]);
        }
        Ok(Some(Bytes::from(rest)))
    }
}

/// Connections written before the writer lets other tasks run (about 1 ms of writes).
const WRITES_PER_SLICE: usize = 256;

/// The connections one event claimed.
pub(crate) type Claims = Vec<Arc<ClientShared>>;

/// One event's claims, with the event.
#[derive(Debug)]
struct Batch {
    seq: u64,
    frame: Bytes,
    /// `frame` framed once as a chunk of the stream, for every connection it is written to alone.
    chunk: Bytes,
    claims: Claims,
}

/// `frame` as one chunk of a `chunked` body: its size line, its bytes, CRLF.
pub(crate) fn chunk_of(frame: &[u8]) -> Bytes {
    let mut size_line = [0u8; CHUNK_SIZE_LINE_BYTES_MAX];
    let size_line = chunk_size_line(frame.len(), &mut size_line);
    let mut chunk = Vec::with_capacity(size_line.len() + frame.len() + 2);
    chunk.extend_from_slice(size_line);
    chunk.extend_from_slice(frame);
    chunk.extend_from_slice(b"\r\n");
    Bytes::from(chunk)
}

/// Where fan-out sends its claims.
#[derive(Debug)]
pub(crate) struct DirectWriter {
    claims: mpsc::UnboundedSender<Batch>,
    /// Batches sent and not yet written.
    in_flight: Arc<AtomicUsize>,
}

impl DirectWriter {
    /// A writer and the receiving end its task drains (see [`run`]).
    pub(crate) fn new() -> (Self, Receiver) {
        let (claims, receiver) = mpsc::unbounded_channel();
        let in_flight = Arc::new(AtomicUsize::new(0));
        let receiver = Receiver {
            claims: receiver,
            in_flight: in_flight.clone(),
        };
        (Self { claims, in_flight }, receiver)
    }

    /// Whether every batch sent has been written. Fan-out claims connections only then: while
    /// events come faster than one batch is written, each connection's own task writes, and
    /// coalesces what waited into one write.
    pub(crate) fn is_idle(&self) -> bool {
        self.in_flight.load(Ordering::Relaxed) == 0
    }

    /// Hands `claims` of the event at `seq` (encoded as `frame`) to the writer task. If the task
    /// is gone (the hub is stopping, or its runtime ended), each connection's own task writes
    /// instead.
    pub(crate) fn write(&self, seq: u64, frame: &Bytes, claims: Claims) {
        if claims.is_empty() {
            return;
        }
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        let batch = Batch {
            seq,
            frame: frame.clone(),
            chunk: chunk_of(frame),
            claims,
        };
        if let Err(unsent) = self.claims.send(batch) {
            self.in_flight.fetch_sub(1, Ordering::Relaxed);
            let batch = unsent.0;
            for client in batch.claims {
                client.release_claim(batch.seq, &batch.frame);
            }
        }
    }
}

/// The writer task's end of a [`DirectWriter`].
#[derive(Debug)]
pub(crate) struct Receiver {
    claims: mpsc::UnboundedReceiver<Batch>,
    in_flight: Arc<AtomicUsize>,
}

/// The writer task: writes every batch of claims as it arrives, counting what it delivered.
pub(crate) async fn run(hub: Weak<Shared>, mut receiver: Receiver) {
    while let Some(batch) = receiver.claims.recv().await {
        let mut delivered = 0;
        for (i, client) in batch.claims.iter().enumerate() {
            delivered += client.write_claimed(batch.seq, &batch.frame, &batch.chunk);
            // A batch to tens of thousands of connections takes tens of ms: let the runtime
            // run other tasks between slices of it rather than hold a worker that long.
            if (i + 1) % WRITES_PER_SLICE == 0 {
                tokio::task::yield_now().await;
            }
        }
        receiver.in_flight.fetch_sub(1, Ordering::Relaxed);
        let Some(hub) = hub.upgrade() else {
            break;
        };
        crate::Hub::from_shared(hub).count_delivered(delivered);
    }
    // Whatever is still waiting goes back to each connection's own task.
    receiver.claims.close();
    while let Ok(batch) = receiver.claims.try_recv() {
        for client in &batch.claims {
            client.release_claim(batch.seq, &batch.frame);
        }
    }
}
