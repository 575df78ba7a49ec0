//! Many subscribers at once: opens N streams with bounded concurrency, one task per stream.
//!
//! Owns the connect phase (how many handshakes are in flight, when all are in). What each stream
//! does once connected is the caller's closure.

use crate::subscriber::Subscriber;
use anyhow::Context;
use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};
use tokio::{
    sync::{mpsc, Semaphore},
    task::JoinHandle,
    time::Instant,
};

/// Connections in the middle of their handshake at once by default. Kept well under the hub's
/// listen backlog, so no SYN is dropped and retried a second later.
pub(crate) const CONNECT_CONCURRENCY_DEFAULT: usize = 128;

/// Opens `count` streams on `path` and runs `body` on each once it is connected; returns when all
/// are connected, with the tasks and the time the connect phase took. A task yields `None` when
/// its stream never connected.
///
/// # Errors
/// When any stream fails to connect; the tasks already started are aborted.
pub(crate) async fn spawn<T, F, Fut>(
    addr: SocketAddr,
    path: &str,
    count: usize,
    concurrency: usize,
    body: F,
) -> anyhow::Result<(Vec<JoinHandle<Option<T>>>, Duration)>
where
    F: Fn(Subscriber) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let started = Instant::now();
    let permits = Arc::new(Semaphore::new(concurrency.max(1)));
    let (connected_tx, mut connected_rx) = mpsc::unbounded_channel();
    let mut tasks = Vec::with_capacity(count);
    for _ in 0..count {
        let permits = permits.clone();
        let connected_tx = connected_tx.clone();
        let body = body.clone();
        let path = path.to_owned();
        tasks.push(tokio::spawn(async move {
            let permit = permits
                .acquire_owned()
                .await
                .expect("the semaphore is never closed");
            let connected = Subscriber::connect(addr, &path).await;
            drop(permit);
            match connected {
                Ok(subscriber) => {
                    let _ = connected_tx.send(Ok(()));
                    Some(body(subscriber).await)
                }
                Err(err) => {
                    let _ = connected_tx.send(Err(err));
                    None
                }
            }
        }));
    }
    drop(connected_tx);
    for done in 0..count {
        let outcome = connected_rx
            .recv()
            .await
            .context("a subscriber task ended without reporting")?;
        if let Err(err) = outcome {
            tasks.iter().for_each(JoinHandle::abort);
            return Err(err.context(format!("{done} of {count} streams were open")));
        }
    }
    Ok((tasks, started.elapsed()))
}
