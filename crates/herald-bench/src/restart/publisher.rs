//! The publishers of `restart`: the steady one that runs through the kill (each event retried
//! until answered, under a publisher id so a retry is never a second event), and the filling of
//! the history before the clients connect.
//!
//! They publish and time answers; they never read streams.

use super::client::Shared;
use crate::http::{self, ResponseReader};
use anyhow::Context;
use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};
use tokio::{io::AsyncWriteExt, net::TcpStream};

/// Connections that fill the history, each pipelining its share.
const FILL_CONNECTIONS: usize = 8;
/// Requests written before their answers are read, per filling connection.
const FILL_BATCH: u64 = 256;
/// Pause before a publisher retries after a failed attempt.
const PUBLISH_RETRY: Duration = Duration::from_millis(10);

/// Each acknowledged publish: when its last attempt was written, and how long its answer took.
#[derive(Debug, Default)]
pub(crate) struct PublishLog {
    pub(crate) answers: Vec<(u64, u64)>,
    pub(crate) failed_attempts: u64,
}

/// Publishes at `rate` to `addr`, one request at a time, each retried until answered 2xx, until
/// `stop_publishing` is set.
pub(crate) async fn publisher(
    addr: SocketAddr,
    path: String,
    rate: f64,
    shared: Arc<Shared>,
    stop_publishing: Arc<AtomicBool>,
) -> PublishLog {
    let mut log = PublishLog::default();
    let interval = Duration::from_secs_f64(1.0 / rate);
    let start = tokio::time::Instant::now();
    let mut connection: Option<ResponseReader<TcpStream>> = None;
    let mut seq = 0u64;
    while !stop_publishing.load(Ordering::Relaxed) {
        let due = start + interval.mul_f64(seq as f64);
        tokio::time::sleep_until(due).await;
        loop {
            let sent_ns = shared.now_ns();
            let body = serde_json::json!({
                "id": format!("r{seq}"),
                "data": format!("{seq} {sent_ns}"),
            });
            let request = http::post_json_request(&path, body.to_string().as_bytes());
            let answered = async {
                if connection.is_none() {
                    let socket = TcpStream::connect(addr).await?;
                    socket.set_nodelay(true)?;
                    connection = Some(ResponseReader::new(socket));
                }
                let reader = connection.as_mut().expect("connected above");
                let (socket, _) = reader.parts_mut();
                socket.write_all(&request).await?;
                let (status, _) = reader.read_response().await?;
                anyhow::Ok(status)
            }
            .await;
            match answered {
                Ok(status) if (200..300).contains(&status) => {
                    log.answers.push((sent_ns, shared.now_ns() - sent_ns));
                    shared.acked.store(seq + 1, Ordering::Release);
                    break;
                }
                _ => {
                    connection = None;
                    log.failed_attempts += 1;
                    tokio::time::sleep(PUBLISH_RETRY).await;
                }
            }
        }
        seq += 1;
    }
    log
}

/// Puts `count` events in the channel's history through `addr`, pipelined.
pub(crate) async fn fill_history(addr: SocketAddr, path: &str, count: u64) -> anyhow::Result<()> {
    let mut tasks = Vec::new();
    for connection in 0..FILL_CONNECTIONS as u64 {
        let path = path.to_owned();
        tasks.push(tokio::spawn(async move {
            let socket = TcpStream::connect(addr).await?;
            let mut reader = ResponseReader::new(socket);
            let mine: Vec<u64> = (connection..count).step_by(FILL_CONNECTIONS).collect();
            for batch in mine.chunks(FILL_BATCH as usize) {
                let mut requests = Vec::new();
                for seq in batch {
                    let body = format!(r#"{{"data":"fill {seq}"}}"#);
                    requests.extend(http::post_json_request(&path, body.as_bytes()));
                }
                reader.parts_mut().0.write_all(&requests).await?;
                for _ in batch {
                    let (status, body) = reader.read_response().await?;
                    anyhow::ensure!(
                        (200..300).contains(&status),
                        "filling the history: {status} {}",
                        String::from_utf8_lossy(&body)
                    );
                }
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await.context("a filling task panicked")??;
    }
    Ok(())
}
