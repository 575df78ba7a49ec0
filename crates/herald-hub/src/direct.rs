//! The hub's direct writer: one task that writes events to connections whose own task sleeps.
//!
//! Owns the hand-over of claimed connections (see `client`: a push to a parked connection with
//! a direct socket claims it) from fan-out to the one task that writes them. Fan-out runs under
//! the hub's lock and never writes a socket; after the lock, the claims of one event go here as
//! one batch, and this task writes each connection's queue with one non-blocking write, then
//! parks the connection again or hands it back to its own task. So an event to 1 000 idle
//! subscribers wakes one task, not 1 000, and costs one system call per subscriber (the
//! benchmark's floor server's way); a busy connection is written by its own task, which
//! coalesces what waited. It never waits on a socket (a write the socket does not take whole
//! goes back to the connection's task) and never decides who hears an event.
//!
//! Memory: a connection is claimed at most once at a time, so the batches waiting here hold at
//! most one entry per connection (the channel is unbounded, the entries are not).

use crate::{client::ClientShared, hub::Shared};
use std::sync::{Arc, Weak};
use tokio::sync::mpsc;

/// The connections one event claimed.
pub(crate) type Claims = Vec<Arc<ClientShared>>;

/// Where fan-out sends its claims.
#[derive(Debug)]
pub(crate) struct DirectWriter {
    claims: mpsc::UnboundedSender<Claims>,
}

impl DirectWriter {
    /// A writer and the receiving end its task drains (see [`run`]).
    pub(crate) fn new() -> (Self, mpsc::UnboundedReceiver<Claims>) {
        let (claims, receiver) = mpsc::unbounded_channel();
        (Self { claims }, receiver)
    }

    /// Hands `claims` to the writer task. If the task is gone (the hub is stopping, or its
    /// runtime ended), each connection's own task writes instead.
    pub(crate) fn write(&self, claims: Claims) {
        if claims.is_empty() {
            return;
        }
        if let Err(unsent) = self.claims.send(claims) {
            for client in unsent.0 {
                client.release_claim();
            }
        }
    }
}

/// The writer task: writes every batch of claims as it arrives, counting what it delivered.
pub(crate) async fn run(hub: Weak<Shared>, mut receiver: mpsc::UnboundedReceiver<Claims>) {
    while let Some(claims) = receiver.recv().await {
        let delivered: u64 = claims.iter().map(|client| client.write_claimed()).sum();
        let Some(hub) = hub.upgrade() else {
            break;
        };
        crate::Hub::from_shared(hub).count_delivered(delivered);
    }
    // Whatever is still waiting goes back to each connection's own task.
    receiver.close();
    while let Ok(claims) = receiver.try_recv() {
        claims.iter().for_each(|client| client.release_claim());
    }
}
