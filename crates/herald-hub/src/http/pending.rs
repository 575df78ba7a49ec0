//! Connections that have not sent their first request head yet: how many may wait at once.
//!
//! Owns the bound on such connections (each holds a socket and a file descriptor while it sends
//! nothing) and the choice of which to close past it: the one that has waited longest, so silent
//! sockets cannot keep the hub from accepting the clients that do speak. A connection whose client
//! had already sent bytes when it was accepted closes nobody until [`SPEAKING_BOUND_FACTOR`]
//! times the bound wait (in a reconnect storm thousands of live clients are mid-head at once,
//! and must not close one another; one byte sent at once must not buy an unbounded wait). It never reads a socket
//! and never times anything out: the accept loop's head deadline does.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex, MutexGuard},
};
use tokio::sync::oneshot;

/// How many times the bound connections whose client had already spoken may wait at once
/// (`herald serve` sets the bound to a quarter of `--max-connections`, so they may wait up to
/// the stream limit itself).
const SPEAKING_BOUND_FACTOR: usize = 4;

/// The connections waiting for their first request head, oldest first.
#[derive(Debug)]
pub(super) struct PendingHeads {
    /// Most connections waiting at once; 0 is no limit.
    max: usize,
    inner: Mutex<Waiters>,
}

#[derive(Debug, Default)]
struct Waiters {
    next_ticket: u64,
    /// Ticket (accept order) → what closes that connection when dropped.
    by_ticket: BTreeMap<u64, oneshot::Sender<()>>,
}

/// One connection's place among those waiting; dropping it (the head arrived) leaves.
#[derive(Debug)]
pub(super) struct Waiting {
    pending: Arc<PendingHeads>,
    ticket: u64,
    evicted_rx: oneshot::Receiver<()>,
}

impl PendingHeads {
    pub(super) fn new(max: usize) -> Self {
        Self {
            max,
            inner: Mutex::new(Waiters::default()),
        }
    }

    fn waiters(&self) -> MutexGuard<'_, Waiters> {
        // Plain bookkeeping: still consistent after a panic elsewhere.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Registers a new connection; when the bound is reached, the one that has waited longest is
    /// told to close.
    pub(super) fn enter(self: &Arc<Self>) -> Waiting {
        self.register(true)
    }

    /// Registers a new connection whose client has already sent bytes: it closes nobody to make
    /// room (it is not silent, so it may take the place a silent one would have had), and can
    /// itself be closed to make room like any other until its head is complete.
    pub(super) fn enter_speaking(self: &Arc<Self>) -> Waiting {
        self.register(false)
    }

    fn register(self: &Arc<Self>, is_evicting: bool) -> Waiting {
        let (evict_tx, evicted_rx) = oneshot::channel();
        let mut waiters = self.waiters();
        // Speaking clients wait past the bound, but not without end: a client that sends one byte
        // at once and then nothing must not hold descriptors without limit.
        let bound = if is_evicting {
            self.max
        } else {
            self.max.saturating_mul(SPEAKING_BOUND_FACTOR)
        };
        if self.max > 0 && waiters.by_ticket.len() >= bound {
            waiters.by_ticket.pop_first();
        }
        let ticket = waiters.next_ticket;
        waiters.next_ticket += 1;
        waiters.by_ticket.insert(ticket, evict_tx);
        drop(waiters);
        Waiting {
            pending: self.clone(),
            ticket,
            evicted_rx,
        }
    }

    /// Tells the connection that has waited longest to close (to free its file descriptor).
    pub(super) fn evict_oldest(&self) {
        let evicted = self.waiters().by_ticket.pop_first();
        drop(evicted);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.waiters().by_ticket.len()
    }
}

impl Waiting {
    /// Resolves when this connection must close to make room.
    pub(super) async fn evicted(&mut self) {
        let _ = (&mut self.evicted_rx).await;
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        let left = self.pending.waiters().by_ticket.remove(&self.ticket);
        drop(left);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    async fn is_evicted(waiting: &mut Waiting) -> bool {
        tokio::time::timeout(Duration::from_millis(10), waiting.evicted())
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn past_the_bound_the_oldest_waiting_connection_is_closed() {
        let pending = Arc::new(PendingHeads::new(2));
        let mut first = pending.enter();
        let mut second = pending.enter();
        assert!(!is_evicted(&mut first).await);
        let mut third = pending.enter();
        assert!(is_evicted(&mut first).await, "the oldest makes room");
        assert!(!is_evicted(&mut second).await);
        assert!(!is_evicted(&mut third).await);
        drop(second);
        assert_eq!(pending.len(), 1, "a connection whose head arrived leaves");
        pending.evict_oldest();
        assert!(is_evicted(&mut third).await);
        assert_eq!(pending.len(), 0);
    }

    #[tokio::test]
    async fn a_connection_that_already_spoke_closes_nobody_but_can_be_closed() {
        let pending = Arc::new(PendingHeads::new(2));
        let mut first = pending.enter();
        let mut second = pending.enter();
        let mut speaking = pending.enter_speaking();
        assert!(
            !is_evicted(&mut first).await,
            "a speaking client closes nobody"
        );
        assert!(!is_evicted(&mut second).await);
        assert_eq!(pending.len(), 3);
        let _silent = pending.enter();
        assert!(
            is_evicted(&mut first).await,
            "a silent newcomer still makes room"
        );
        assert!(!is_evicted(&mut speaking).await);
        pending.evict_oldest();
        pending.evict_oldest();
        assert!(
            is_evicted(&mut speaking).await,
            "and can be closed in its turn"
        );
    }

    #[tokio::test]
    async fn speaking_clients_wait_past_the_bound_but_not_without_end() {
        let pending = Arc::new(PendingHeads::new(2));
        let mut oldest = pending.enter_speaking();
        let mut others: Vec<_> = (1..2 * SPEAKING_BOUND_FACTOR)
            .map(|_| pending.enter_speaking())
            .collect();
        assert_eq!(pending.len(), 2 * SPEAKING_BOUND_FACTOR);
        assert!(!is_evicted(&mut oldest).await, "within the speaking bound");
        let _one_more = pending.enter_speaking();
        assert!(
            is_evicted(&mut oldest).await,
            "past it, the one that waited longest makes room"
        );
        assert_eq!(pending.len(), 2 * SPEAKING_BOUND_FACTOR);
        assert!(!is_evicted(&mut others[0]).await);
    }
}
