//! One subscriber: an open `text/event-stream` response, read as lines.
//!
//! Owns the stream (an HTTP/1.1 socket, plain or TLS, or an HTTP/2 stream, as the run's
//! transport says), the chunked decoding and the splitting into lines. It does not interpret
//! fields beyond recognising the hub's `connected` event; what a `data:` line means is the
//! caller's business. It never reconnects: a stream the hub ends stays ended, and the caller
//! counts what it missed.

use crate::{
    http::{self, Dechunker, Framing, ResponseReader},
    transport::{self, BoxIo},
};
use anyhow::bail;
use std::net::SocketAddr;
use tokio::{io::AsyncReadExt, io::AsyncWriteExt};

/// Bytes read from the socket at a time; one buffer of this size per open stream.
const READ_BUFFER_BYTES: usize = 4096;

/// Where a stream's body comes from.
enum Body {
    /// An HTTP/1.1 response on its own connection.
    Http1(BoxIo),
    /// An HTTP/2 stream (its DATA frames carry the body, unframed).
    Http2(h2::RecvStream),
}

/// An open event stream that has received the hub's `connected` event.
pub(crate) struct Subscriber {
    body: Body,
    /// `None` when the body is not chunked (delimited by the connection's end).
    dechunker: Option<Dechunker>,
    /// Bytes read and not yet split into lines.
    read_buf: Vec<u8>,
    /// A line begun in an earlier read.
    partial_line: Vec<u8>,
}

impl Subscriber {
    /// Opens `GET path` on `addr`, checks it is a `200 text/event-stream`, and reads until the
    /// end of the `connected` event, which the hub sends once the connection is registered.
    ///
    /// # Errors
    /// On a connection failure, another status or type, or a stream that ends first.
    pub(crate) async fn connect(addr: SocketAddr, path: &str) -> anyhow::Result<Self> {
        let mut subscriber = Self::open(addr, path, "").await?;
        let mut in_connected_event = false;
        let mut is_connected = false;
        loop {
            subscriber.drain_lines(&mut |line| {
                if line == b"event: connected" {
                    in_connected_event = true;
                } else if line.is_empty() && in_connected_event {
                    is_connected = true;
                }
            })?;
            if is_connected {
                return Ok(subscriber);
            }
            if !subscriber.read().await? {
                bail!("stream ended before its connected event");
            }
        }
    }

    /// Opens `GET path` on `addr` with `extra_headers` (whole `Name: value\r\n` lines) and checks
    /// it is a `200 text/event-stream`; every line of the body, `connected` event included, is
    /// left to [`Subscriber::drain_lines`].
    ///
    /// # Errors
    /// On a connection failure, or another status or type.
    pub(crate) async fn open(
        addr: SocketAddr,
        path: &str,
        extra_headers: &str,
    ) -> anyhow::Result<Self> {
        if transport::streams_over_h2() {
            return Self::open_h2(addr, path, extra_headers).await;
        }
        let mut socket = transport::connect(addr).await?;
        socket
            .write_all(&http::get_request(
                path,
                &format!("Accept: text/event-stream\r\n{extra_headers}"),
            ))
            .await?;
        socket.flush().await?;
        let mut reader = ResponseReader::new(socket);
        let head = reader.read_head().await?;
        if head.status != 200 || !head.content_type.starts_with("text/event-stream") {
            let status = head.status;
            let body = reader.read_body(head.framing).await.unwrap_or_default();
            bail!(
                "GET {path} answered {status} {:?}: {}",
                head.content_type,
                String::from_utf8_lossy(&body)
            );
        }
        let framing = head.framing;
        let (socket, leftover) = reader.into_parts();
        Ok(Self {
            body: Body::Http1(socket),
            dechunker: (framing == Framing::Chunked).then(Dechunker::default),
            read_buf: leftover,
            partial_line: Vec::new(),
        })
    }

    /// [`Subscriber::open`] over HTTP/2.
    async fn open_h2(addr: SocketAddr, path: &str, extra_headers: &str) -> anyhow::Result<Self> {
        let mut headers = vec![("accept", "text/event-stream")];
        headers.extend(extra_headers.split("\r\n").filter_map(|line| {
            let (name, value) = line.split_once(':')?;
            Some((name.trim(), value.trim()))
        }));
        let response = transport::h2_get(addr, path, &headers).await?;
        if response.status != 200 || !response.content_type.starts_with("text/event-stream") {
            bail!(
                "GET {path} answered {} {:?} over HTTP/2",
                response.status,
                response.content_type
            );
        }
        Ok(Self {
            body: Body::Http2(response.body),
            dechunker: None,
            read_buf: Vec::new(),
            partial_line: Vec::new(),
        })
    }

    /// Waits for the next bytes from the hub; `false` when the stream has ended.
    ///
    /// # Errors
    /// On a socket error.
    pub(crate) async fn read(&mut self) -> anyhow::Result<bool> {
        if self.dechunker.as_ref().is_some_and(Dechunker::is_done) {
            return Ok(false);
        }
        match &mut self.body {
            Body::Http1(socket) => {
                let start = self.read_buf.len();
                self.read_buf.resize(start + READ_BUFFER_BYTES, 0);
                let read = socket.read(&mut self.read_buf[start..]).await;
                let read = read.inspect_err(|_| self.read_buf.truncate(start))?;
                self.read_buf.truncate(start + read);
                Ok(read > 0)
            }
            Body::Http2(stream) => match stream.data().await {
                None => Ok(false),
                Some(data) => {
                    let data = data?;
                    let _ = stream.flow_control().release_capacity(data.len());
                    self.read_buf.extend_from_slice(&data);
                    Ok(true)
                }
            },
        }
    }

    /// Hands every complete line read so far to `on_line`, without its line end.
    ///
    /// # Errors
    /// On malformed chunked framing.
    pub(crate) fn drain_lines(&mut self, on_line: &mut impl FnMut(&[u8])) -> anyhow::Result<()> {
        let Self {
            dechunker,
            read_buf,
            partial_line,
            ..
        } = self;
        match dechunker {
            Some(dechunker) => {
                dechunker.feed(read_buf, &mut |data| {
                    split_lines(partial_line, data, on_line)
                })?;
            }
            None => split_lines(partial_line, read_buf, on_line),
        }
        read_buf.clear();
        Ok(())
    }
}

/// Splits `data` into lines, joining the first to `partial` and keeping an unfinished last line.
fn split_lines(partial: &mut Vec<u8>, mut data: &[u8], on_line: &mut impl FnMut(&[u8])) {
    while let Some(pos) = data.iter().position(|&b| b == b'\n') {
        let mut line = &data[..pos];
        if !partial.is_empty() {
            partial.extend_from_slice(line);
            line = partial.as_slice();
        }
        on_line(line.strip_suffix(b"\r").unwrap_or(line));
        partial.clear();
        data = &data[pos + 1..];
    }
    partial.extend_from_slice(data);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_split_across_reads_are_joined() {
        let mut partial = Vec::new();
        let mut lines = Vec::new();
        for part in [&b"data: 1 2\nda"[..], b"ta: 3", b" 4\r\n\n"] {
            split_lines(&mut partial, part, &mut |line| lines.push(line.to_vec()));
        }
        assert_eq!(
            lines,
            [&b"data: 1 2"[..], b"data: 3 4", b""].map(<[u8]>::to_vec)
        );
        assert!(partial.is_empty());
    }
}
