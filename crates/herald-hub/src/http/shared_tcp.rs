//! A plain TCP event stream's socket, shared by the connection's task and the hub's direct writer.
//!
//! Owns the socket of a stream served by `stream_conn` over plain TCP once its head is written:
//! the connection's task reads and writes it through [`SharedTcp`] (`AsyncRead`/`AsyncWrite`),
//! and the hub's direct writer writes one chunk of the stream at a time through
//! [`DirectSocket::try_write`], never waiting. Who may write when is the connection queue's rule
//! (`client::Writer`), not this module's: it only frames and writes. TLS streams are not shared
//! (a TLS session is one writer's state), so they are always written by their own task.
//!
//! Written over tokio's readiness API (`poll_*_ready` and `try_*`) because tokio's own split
//! halves of a `TcpStream` either borrow it (no second owner) or own half of it (no non-blocking
//! write through a shared reference).

use super::stream_conn::{chunk_size_line, SIZE_LINE_BYTES_MAX};
use crate::client::DirectSocket;
use bytes::Bytes;
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

/// The socket of one plain TCP event stream.
#[derive(Debug)]
pub(super) struct StreamSocket(TcpStream);

/// The connection task's handle on its [`StreamSocket`].
#[derive(Debug)]
pub(super) struct SharedTcp(Arc<StreamSocket>);

impl SharedTcp {
    pub(super) fn new(socket: TcpStream) -> Self {
        Self(Arc::new(StreamSocket(socket)))
    }

    /// The handle the hub's direct writer writes chunks through.
    pub(super) fn direct(&self) -> Arc<dyn DirectSocket> {
        self.0.clone()
    }
}

impl DirectSocket for StreamSocket {
    /// Writes `piece` as one chunk of the `chunked` body (size line, bytes, CRLF) with one
    /// vectored write.
    fn try_write(&self, piece: &[u8]) -> io::Result<Option<Bytes>> {
        let mut size_line = [0u8; SIZE_LINE_BYTES_MAX];
        let size_line = chunk_size_line(piece.len(), &mut size_line);
        let parts = [size_line, piece, b"\r\n"];
        let total: usize = parts.iter().map(|part| part.len()).sum();
        let slices = parts.map(IoSlice::new);
        let written = self.0.try_write_vectored(&slices)?;
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

impl AsyncRead for SharedTcp {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let socket = &self.0 .0;
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
        let socket = &self.0 .0;
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
        let socket = &self.0 .0;
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
        let shut = socket2::SockRef::from(&self.0 .0).shutdown(std::net::Shutdown::Write);
        Poll::Ready(match shut {
            Err(err) if err.kind() == io::ErrorKind::NotConnected => Ok(()),
            other => other,
        })
    }
}
