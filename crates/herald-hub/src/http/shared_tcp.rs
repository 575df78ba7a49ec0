//! A plain TCP event stream's socket, shared by the connection's task and the hub's direct writer.
//!
//! Owns the connection task's side of a stream served by `stream_conn` over plain TCP: it reads
//! and writes the socket through [`SharedTcp`] (`AsyncRead`/`AsyncWrite`), while the hub's direct
//! writer writes one chunk at a time to the same [`DirectSocket`], never waiting. Who may write
//! when is the connection queue's rule (`client::Writer`), not this module's. TLS streams are not
//! shared (a TLS session is one writer's state), so they are always written by their own task.
//!
//! Written over tokio's readiness API (`poll_*_ready` and `try_*`) because tokio's own split
//! halves of a `TcpStream` either borrow it (no second owner) or own half of it (no non-blocking
//! write through a shared reference).

use crate::direct::DirectSocket;
use std::{
    io::{self, IoSlice},
    pin::Pin,
    sync::Arc,
    task::{ready, Context, Poll},
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpStream,
};

/// The connection task's handle on its stream's [`DirectSocket`].
#[derive(Debug)]
pub(super) struct SharedTcp(Arc<DirectSocket>);

impl SharedTcp {
    pub(super) fn new(socket: TcpStream) -> Self {
        Self(Arc::new(DirectSocket::new(socket)))
    }

    /// The handle the hub's direct writer writes chunks through.
    pub(super) fn direct(&self) -> Arc<DirectSocket> {
        self.0.clone()
    }
}

impl AsyncRead for SharedTcp {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let socket = self.0.tcp();
        loop {
            ready!(socket.poll_read_ready(cx))?;
            match socket.try_read(buf.initialize_unfilled()) {
                Ok(read) => {
                    buf.advance(read);
                    return Poll::Ready(Ok(()));
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
                Err(err) => return Poll::Ready(Err(err)),
            }
        }
    }
}

impl AsyncWrite for SharedTcp {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let socket = self.0.tcp();
        loop {
            ready!(socket.poll_write_ready(cx))?;
            match socket.try_write(buf) {
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
                written => return Poll::Ready(written),
            }
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let socket = self.0.tcp();
        loop {
            ready!(socket.poll_write_ready(cx))?;
            match socket.try_write_vectored(bufs) {
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
                written => return Poll::Ready(written),
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let shut = socket2::SockRef::from(self.0.tcp()).shutdown(std::net::Shutdown::Write);
        Poll::Ready(match shut {
            Err(err) if err.kind() == io::ErrorKind::NotConnected => Ok(()),
            other => other,
        })
    }
}
