//! Event-stream connections served without hyper: the lean path for long-lived streams.
//!
//! Owns the first request head of every accepted connection. It reads the head itself (bounded in
//! bytes and in time); when the request is a `GET` of an event stream, it routes it through the
//! same axum router as every other request (so auth, CORS and limits are the same code), then
//! writes the response itself: the head once, then each chunk of the stream straight to the
//! socket, the body delimited by `Connection: close`. Such a connection holds no HTTP read or
//! write buffer for its lifetime, which is most of what hyper keeps per connection (two 8 KiB
//! buffers), and idle streams are most of a hub's connections. Any other request, or a head it
//! does not take, goes to hyper with the bytes already read put back in front ([`Rewind`]).
//! It never interprets a route beyond recognising a stream path, and never buffers a stream.

use axum::{
    body::{Body, Bytes},
    extract::ConnectInfo,
    http::{header, HeaderName, HeaderValue, Method, Request, StatusCode, Version},
    Router,
};
use futures_util::StreamExt;
use std::{
    io,
    net::SocketAddr,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf},
    net::TcpStream,
};
use tower::ServiceExt;

/// Largest request head read here; a longer one goes to hyper, which answers `431`.
const HEAD_BYTES_MAX: usize = 16 * 1024;
/// Most header fields parsed here; more go to hyper.
const HEADERS_MAX: usize = 64;
/// Largest non-stream answer body written here (errors are small JSON documents).
const ANSWER_BYTES_MAX: usize = 64 * 1024;

/// What the first request of a connection turned out to be.
pub(super) enum FirstRequest {
    /// A `GET` of an event stream, ready for the router.
    Stream(Box<Request<Body>>),
    /// Anything else: hand these bytes and the socket to hyper.
    Other(Bytes),
    /// The client closed the connection or never finished its head in time: drop it.
    Gone,
}

/// Reads the first request head, within `timeout`.
pub(super) async fn read_first_request(
    socket: &mut TcpStream,
    peer: SocketAddr,
    timeout: Duration,
) -> FirstRequest {
    let mut buf = Vec::with_capacity(1024);
    let read = async {
        loop {
            match socket.read_buf(&mut buf).await {
                Ok(0) | Err(_) => {
                    return if buf.is_empty() {
                        FirstRequest::Gone
                    } else {
                        FirstRequest::Other(Bytes::new())
                    }
                }
                Ok(_) => {}
            }
            match parse_stream_request(&buf, peer) {
                Parsed::Stream(request) => return FirstRequest::Stream(request),
                Parsed::Other => return FirstRequest::Other(Bytes::new()),
                Parsed::Partial if buf.len() >= HEAD_BYTES_MAX => {
                    return FirstRequest::Other(Bytes::new())
                }
                Parsed::Partial => {}
            }
        }
    };
    match tokio::time::timeout(timeout, read).await {
        Ok(FirstRequest::Other(_)) => FirstRequest::Other(Bytes::from(buf)),
        Ok(first) => first,
        Err(_) => FirstRequest::Gone,
    }
}

enum Parsed {
    Stream(Box<Request<Body>>),
    Other,
    Partial,
}

fn is_stream_path(path: &str) -> bool {
    path == "/api/stream" || (path.starts_with("/api/channels/") && path.ends_with("/stream"))
}

fn parse_stream_request(buf: &[u8], peer: SocketAddr) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; HEADERS_MAX];
    let mut head = httparse::Request::new(&mut headers);
    let head_len = match head.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(_) => return Parsed::Other,
    };
    let (Some("GET"), Some(target), Some(1)) = (head.method, head.path, head.version) else {
        return Parsed::Other;
    };
    let path = target.split('?').next().unwrap_or_default();
    // Bytes after the head would be a pipelined request: hyper handles those.
    if head_len != buf.len() || !is_stream_path(path) {
        return Parsed::Other;
    }
    let mut request = Request::new(Body::empty());
    *request.method_mut() = Method::GET;
    *request.version_mut() = Version::HTTP_11;
    match target.parse() {
        Ok(uri) => *request.uri_mut() = uri,
        Err(_) => return Parsed::Other,
    }
    for field in head.headers.iter() {
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(field.name.as_bytes()),
            HeaderValue::from_bytes(field.value),
        ) else {
            return Parsed::Other;
        };
        request.headers_mut().append(name, value);
    }
    request.extensions_mut().insert(ConnectInfo(peer));
    Parsed::Stream(Box::new(request))
}

/// Routes a stream request and writes the answer; for an event stream, pumps it until either
/// side ends it.
pub(super) async fn serve_stream(
    mut socket: TcpStream,
    request: Box<Request<Body>>,
    router: Router,
) {
    let response = match router.oneshot(*request).await {
        Ok(response) => response,
        Err(never) => match never {},
    };
    let (parts, body) = response.into_parts();
    let is_event_stream = parts.status == StatusCode::OK
        && parts
            .headers
            .get(header::CONTENT_TYPE)
            .is_some_and(|t| t.as_bytes().starts_with(b"text/event-stream"));
    let mut head = Vec::with_capacity(256);
    head.extend_from_slice(
        format!(
            "HTTP/1.1 {} {}\r\n",
            parts.status.as_u16(),
            parts.status.canonical_reason().unwrap_or("")
        )
        .as_bytes(),
    );
    for (name, value) in &parts.headers {
        if name == header::CONTENT_LENGTH
            || name == header::CONNECTION
            || name == header::TRANSFER_ENCODING
        {
            continue;
        }
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    if !is_event_stream {
        let answer = axum::body::to_bytes(body, ANSWER_BYTES_MAX)
            .await
            .unwrap_or_default();
        if parts.status != StatusCode::NO_CONTENT && parts.status != StatusCode::NOT_MODIFIED {
            head.extend_from_slice(format!("content-length: {}\r\n", answer.len()).as_bytes());
        }
        head.extend_from_slice(b"connection: close\r\n\r\n");
        head.extend_from_slice(&answer);
        let _ = socket.write_all(&head).await;
        let _ = socket.shutdown().await;
        return;
    }
    head.extend_from_slice(b"connection: close\r\n\r\n");
    if socket.write_all(&head).await.is_err() {
        return;
    }
    drop(head);
    pump(socket, body).await;
}

/// Writes each chunk of the stream as it comes, and watches the socket for the client leaving.
async fn pump(mut socket: TcpStream, body: Body) {
    let mut chunks = body.into_data_stream();
    let mut probe = [0u8; 16];
    loop {
        tokio::select! {
            chunk = chunks.next() => match chunk {
                Some(Ok(bytes)) => {
                    if socket.write_all(&bytes).await.is_err() {
                        return;
                    }
                }
                // The hub ended the stream (it wrote its closing comment first): close.
                _ => break,
            },
            readable = socket.readable() => {
                if readable.is_err() {
                    return;
                }
                match socket.try_read(&mut probe) {
                    // The client went away.
                    Ok(0) => return,
                    // A client has nothing to send on a stream; ignore what it does send.
                    Ok(_) => {}
                    Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
                    Err(_) => return,
                }
            }
        }
    }
    let _ = socket.shutdown().await;
}

/// A socket with bytes already read from it put back in front, for hyper.
pub(super) struct Rewind {
    prefix: Bytes,
    inner: TcpStream,
}

impl Rewind {
    pub(super) fn new(prefix: Bytes, inner: TcpStream) -> Self {
        Self { prefix, inner }
    }
}

impl AsyncRead for Rewind {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            if n == self.prefix.len() {
                self.prefix = Bytes::new();
            } else {
                self.prefix = self.prefix.slice(n..);
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Rewind {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> SocketAddr {
        "127.0.0.1:1".parse().expect("an address")
    }

    #[test]
    fn only_a_complete_get_of_a_stream_path_is_taken() {
        let stream = b"GET /api/channels/a/stream?lastEventId=1 HTTP/1.1\r\nHost: h\r\nLast-Event-ID: 7\r\n\r\n";
        let Parsed::Stream(request) = parse_stream_request(stream, peer()) else {
            panic!("a stream request")
        };
        assert_eq!(request.uri().query(), Some("lastEventId=1"));
        assert_eq!(request.headers()["last-event-id"], "7");
        assert!(matches!(
            parse_stream_request(b"GET /api/stream HTTP/1.1\r\nHost: h\r\n", peer()),
            Parsed::Partial
        ));
        for other in [
            &b"GET /api/stats HTTP/1.1\r\n\r\n"[..],
            b"POST /api/channels/a/stream HTTP/1.1\r\n\r\n",
            b"GET /api/stream HTTP/1.1\r\n\r\nGET /healthz HTTP/1.1\r\n\r\n",
            b"GET /api/stream HTTP/1.0\r\n\r\n",
            b"NOT HTTP\r\n\r\n",
        ] {
            assert!(
                matches!(parse_stream_request(other, peer()), Parsed::Other),
                "{}",
                String::from_utf8_lossy(other)
            );
        }
    }
}
