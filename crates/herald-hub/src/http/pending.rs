//! Connections that have not sent their first request head yet: how many may wait at once.
//!
//! Owns the bound on such connections (each holds a socket and a file descriptor while it sends
//! nothing) and the choice of what to do at it. The accept loop waits for room before it accepts
//! ([`PendingHeads::wait_for_room`]): a slot frees as soon as a head arrives, so during a reconnect
//! storm, when thousands of live clients are a round trip (or a busy machine) away from sending
//! their heads, the next ones wait in the kernel's listen queue instead of being closed. Only a
//! connection that has been silent for [`EVICT_AFTER_SILENT`] is closed to make room, the one that
//! has waited longest, so silent sockets still cannot keep the hub from accepting the clients that
//! do speak. It never reads a socket and never times anything out: the accept loop's head deadline
//! does.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};
use tokio::{
    sync::{oneshot, Notify},
    time::Instant,
};

/// How long a connection may send nothing before it can be closed to make room for a new one:
/// 1 s. Far longer than a live client takes to send its head once connected, even across a
/// continent or from a busy machine; far shorter than the head deadline, so silent sockets hold
/// up accepting for at most this long.
pub(super) const EVICT_AFTER_SILENT: Duration = Duration::from_secs(1);

/// The connections waiting for their first request head, oldest first.
#[derive(Debug)]
pub(super) struct PendingHeads {
    /// Most connections waiting at once; 0 is no limit.
    max: usize,
    inner: Mutex<Waiters>,
    /// Signalled when a connection leaves, for [`Self::wait_for_room`].
    left: Notify,
}

#[derive(Debug, Default)]
struct Waiters {
    next_ticket: u64,
    /// Ticket (accept order) → when it entered, and what closes that connection when dropped.
    by_ticket: BTreeMap<u64, (Instant, oneshot::Sender<()>)>,
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
            left: Notify::new(),
        }
    }

    /// Resolves when one more connection may wait without closing a live one: at once below the
    /// bound; at the bound, when one leaves (its head arrived), or when the one that has waited
    /// longest has been silent for [`EVICT_AFTER_SILENT`], which is then closed.
    pub(super) async fn wait_for_room(&self) {
        loop {
            let left = self.left.notified();
            tokio::pin!(left);
            left.as_mut().enable();
            let oldest_entered = {
                let waiters = self.waiters();
                if self.max == 0 || waiters.by_ticket.len() < self.max {
                    return;
                }
                match waiters.by_ticket.first_key_value() {
                    Some((_, (entered, _))) => *entered,
                    None => return,
                }
            };
            tokio::select! {
                () = left => {}
                () = tokio::time::sleep_until(oldest_entered + EVICT_AFTER_SILENT) => {
                    self.evict_oldest();
                    return;
                }
            }
        }
    }

    fn waiters(&self) -> MutexGuard<'_, Waiters> {
        // Plain bookkeeping: still consistent after a panic elsewhere.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Registers a new connection; when the bound is reached (the caller did not wait for room),
    /// the one that has waited longest is told to close.
    pub(super) fn enter(self: &Arc<Self>) -> Waiting {
        let (evict_tx, evicted_rx) = oneshot::channel();
        let mut waiters = self.waiters();
        if self.max > 0 && waiters.by_ticket.len() >= self.max {
            waiters.by_ticket.pop_first();
        }
        let ticket = waiters.next_ticket;
        waiters.next_ticket += 1;
        waiters.by_ticket.insert(ticket, (Instant::now(), evict_tx));
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
        self.pending.left.notify_one();
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

    #[tokio::test(start_paused = true)]
    async fn at_the_bound_a_new_connection_waits_for_a_head_rather_than_closing_a_live_one() {
        let pending = Arc::new(PendingHeads::new(2));
        let mut first = pending.enter();
        let second = pending.enter();
        let room = tokio::spawn({
            let pending = pending.clone();
            async move { pending.wait_for_room().await }
        });
        tokio::time::sleep(EVICT_AFTER_SILENT / 2).await;
        assert!(!room.is_finished(), "no room while both wait, for a while");
        drop(second);
        room.await.expect("waits without panicking");
        assert!(
            !is_evicted(&mut first).await,
            "a head arriving made room: nobody is closed"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_silent_past_the_limit_is_closed_to_make_room() {
        let pending = Arc::new(PendingHeads::new(2));
        let mut first = pending.enter();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut second = pending.enter();
        let started = Instant::now();
        pending.wait_for_room().await;
        assert_eq!(
            started.elapsed(),
            EVICT_AFTER_SILENT - Duration::from_millis(300),
            "room once the oldest has been silent for the limit"
        );
        assert!(is_evicted(&mut first).await, "the oldest made room");
        assert!(!is_evicted(&mut second).await);
        assert_eq!(pending.len(), 1);
    }
}
