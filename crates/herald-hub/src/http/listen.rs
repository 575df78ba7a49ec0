//! The listening socket, and the connections it takes while the hub is still starting.
//!
//! Owns how deep the kernel's queue of connections not yet accepted is ([`bind`]: as deep as
//! the system allows, not the usual 1024, since every client of a restarted hub reconnects within
//! a fraction of a second and a connection that does not fit costs its client a one-second SYN
//! retry), and holding connections accepted before the hub can serve them
//! ([`accept_while_starting`]: a durable hub reading back its log), so a deploy's clients wait in
//! the hub rather than in SYN retries. It never reads or answers a connection: the accept loop
//! (`serve`) serves the held ones, in order, once the hub is ready.

use std::{future::Future, net::SocketAddr};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

/// Length asked for the kernel's queue of connections not yet accepted; the kernel caps it at
/// its own limit (Linux: `net.core.somaxconn`, 4096 by default since 5.4).
pub const LISTEN_BACKLOG: u32 = 65_535;

/// Connections accepted before the hub was ready, unread, oldest first.
#[derive(Debug, Default)]
pub struct Held {
    sockets: Vec<(TcpStream, SocketAddr)>,
}

impl Held {
    /// How many are held.
    pub fn len(&self) -> usize {
        self.sockets.len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.sockets.is_empty()
    }

    pub(super) fn into_sockets(self) -> Vec<(TcpStream, SocketAddr)> {
        self.sockets
    }
}

/// Binds `addr` (with `SO_REUSEADDR`, as [`TcpListener::bind`] does) with a listen queue of
/// [`LISTEN_BACKLOG`].
///
/// # Errors
/// When the address cannot be bound (in use, not local, no permission).
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Accepts on `listener` until `starting` completes, holding each connection unread; returns
/// what `starting` gave and the connections held, for [`serve_held`](super::serve_held).
///
/// At most `held_max` are held (0 is no limit); past it the rest wait in the kernel's queue. A
/// failed accept (out of file descriptors) stops accepting until `starting` completes.
pub async fn accept_while_starting<T>(
    listener: &TcpListener,
    held_max: usize,
    starting: impl Future<Output = T>,
) -> (T, Held) {
    let mut held = Held::default();
    tokio::pin!(starting);
    let mut is_accepting = true;
    loop {
        let is_room = held_max == 0 || held.len() < held_max;
        tokio::select! {
            biased;
            started = &mut starting => return (started, held),
            accepted = listener.accept(), if is_accepting && is_room => match accepted {
                Ok(accepted) => held.sockets.push(accepted),
                Err(err) => {
                    tracing::warn!(error = %err, "accept failed while starting; the rest wait in the listen queue");
                    is_accepting = false;
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn connections_made_while_starting_are_held_unread_up_to_the_bound() {
        let listener = bind("127.0.0.1:0".parse().unwrap()).expect("binds");
        let addr = listener.local_addr().unwrap();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<&str>();
        let clients = tokio::spawn(async move {
            let mut clients = Vec::new();
            for n in 0..3u8 {
                let mut client = TcpStream::connect(addr).await.expect("connects");
                client.write_all(&[n]).await.unwrap();
                clients.push(client);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            ready_tx.send("ready").unwrap();
            clients
        });
        let (started, held) =
            accept_while_starting(&listener, 2, async { ready_rx.await.unwrap() }).await;
        let _clients = clients.await.unwrap();
        assert_eq!(started, "ready");
        assert_eq!(held.len(), 2, "no more than the bound are held");
        for (n, (mut socket, _)) in held.into_sockets().into_iter().enumerate() {
            let mut byte = [0u8];
            socket.read_exact(&mut byte).await.unwrap();
            assert_eq!(byte[0] as usize, n, "held in the order they came, unread");
        }
        let (mut third, _) = listener
            .accept()
            .await
            .expect("the third waited in the queue");
        let mut byte = [0u8];
        third.read_exact(&mut byte).await.unwrap();
        assert_eq!(byte[0], 2);
    }
}
