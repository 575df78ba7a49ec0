//! Event-stream connections served without hyper: the lean path for long-lived streams.
//!
//! Owns the first request head of every accepted connection. It reads the head itself (bounded in
//! bytes and in time); when the request is a `GET` of one of the router's stream routes (the one
//! list in `routes`), it routes it through the same axum router as every other request (so auth,
//! CORS and limits are the same code), then writes the answer itself: the head once, then the body
//! straight to the socket, `chunked` (each piece of the stream is one chunk, written with one
//! vectored write: no copy), with `Connection: close` (and `Content-Length` instead when its size
//! is known). Every write of a stream has a deadline ([`STREAM_WRITE_TIMEOUT`]), and a write that
//! is stuck gives the stream's slot back at once when the hub has ended the stream (a full
//! queue): a client that stops reading never keeps its slot, nor its socket past the deadline. Such a connection holds no HTTP read or write buffer
//! for its lifetime, which is most of what hyper keeps per connection (two 8 KiB buffers), and idle
//! streams are most of a hub's connections. Any other request, or a head it does not take, goes to
//! hyper with the bytes already read put back in front (`rewind`). It works on any socket
//! (`AsyncRead + AsyncWrite`), plain TCP or TLS. It never interprets a route beyond asking whether
//! a path is a stream's, never buffers a stream, and always writes an answer whole. Over plain TCP
//! the socket is shared with the hub's direct writer (`shared_tcp`, `crate::direct`), which
//! writes events while the stream's task sleeps; the pump writes first whatever one of those
//! writes left unwritten.

use super::routes::is_stream_path;
use crate::{
    direct::DirectSocket,
    stream::EndSignal,
    wire::{chunk_size_line, CHUNK_SIZE_LINE_BYTES_MAX as SIZE_LINE_BYTES_MAX},
};
use axum::{
    body::{Body, BodyDataStream, Bytes, HttpBody},
    extract::ConnectInfo,
    http::{
        header, response::Parts, HeaderName, HeaderValue, Method, Request, StatusCode, Version,
    },
    Router,
};
use futures_util::{FutureExt, StreamExt};
use std::{
    io::{self, IoSlice},
    net::SocketAddr,
    sync::Arc,
    time::Duration,
};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    time::Instant,
};
use tower::ServiceExt;

/// Most time one write to an event stream may take: a client that stops reading for this long
/// (its socket buffers full) is cut, and its slot freed. 30 s.
pub const STREAM_WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// How often a write that waits on the client checks whether the hub has ended its stream (a
/// queue that overflowed meanwhile): such a stream is cut within this time, not after
/// [`STREAM_WRITE_TIMEOUT`].
const STUCK_WRITE_CHECK_INTERVAL: Duration = Duration::from_millis(250);
/// The last chunk of a chunked body.
const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// Largest request head read here; a longer one goes to hyper, which answers `431`.
const HEAD_BYTES_MAX: usize = 16 * 1024;
/// Most header fields parsed here; more go to hyper.
const HEADERS_MAX: usize = 64;
/// Largest answer body copied into the head's write, so a small answer is one write.
const ANSWER_COALESCE_BYTES_MAX: usize = 16 * 1024;

/// What the first request of a connection turned out to be.
pub(super) enum FirstRequest {
    /// A `GET` of an event stream, ready for the router.
    Stream(Box<Request<Body>>),
    /// Anything else: hand these bytes and the socket to hyper.
    Other(Bytes),
    /// The client closed the connection or never finished its head in time: drop it.
    Gone,
}

/// Reads the first request head, until `deadline` (the whole head's, from the accept).
pub(super) async fn read_first_request<S>(
    socket: &mut S,
    peer: SocketAddr,
    deadline: Instant,
) -> FirstRequest
where
    S: AsyncRead + Unpin,
{
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
    match tokio::time::timeout_at(deadline, read).await {
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

/// Runs the stream path's head parser on `bytes` (the `fuzzing` feature's entry point).
#[cfg(feature = "fuzzing")]
pub(crate) fn fuzz_parse(bytes: &[u8]) {
    let peer = SocketAddr::from(([127, 0, 0, 1], 1));
    if let Parsed::Stream(request) = parse_stream_request(bytes, peer) {
        assert_eq!(request.method(), Method::GET);
        assert!(is_stream_path(request.uri().path()));
        // A head is taken only once complete: any shorter prefix is still being read.
        assert!(matches!(
            parse_stream_request(&bytes[..bytes.len() - 1], peer),
            Parsed::Partial
        ));
    }
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

/// Routes a stream request and writes the answer whole: an answer of known size with its
/// `Content-Length`; any other body (an event stream) `chunked`, chunk by chunk until either side
/// ends it.
///
/// With `direct`, the hub may write the stream's events to the socket itself while the stream's
/// task sleeps (see `shared_tcp`).
pub(super) async fn serve_stream<S>(
    mut socket: S,
    request: Box<Request<Body>>,
    router: Router,
    direct: Option<Arc<DirectSocket>>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let response = match router.oneshot(*request).await {
        Ok(response) => response,
        Err(never) => match never {},
    };
    let (mut parts, body) = response.into_parts();
    let end = parts.extensions.remove::<EndSignal>();
    let has_body = parts.status != StatusCode::NO_CONTENT
        && parts.status != StatusCode::NOT_MODIFIED
        && !parts.status.is_informational();
    let body = if has_body { body } else { Body::empty() };
    let known_len = body.size_hint().exact().filter(|_| has_body);
    let framing = match known_len {
        Some(len) => Framing::Length(len),
        None if has_body => Framing::Chunked,
        None => Framing::Empty,
    };
    let head = encode_head(&parts, framing);
    // The answer's headers and extensions are written: a stream does not keep them.
    drop(parts);
    if framing != Framing::Chunked {
        // Boxed, as every path but the stream's: an idle stream's task is not sized for them.
        Box::pin(async {
            let _ = tokio::time::timeout(STREAM_WRITE_TIMEOUT, async {
                write_answer(&mut socket, head, body).await;
                socket.shutdown().await
            })
            .await;
        })
        .await;
        return;
    }
    if !write_within(ChunkWrite::raw(&mut socket, &head), None, &mut None).await {
        return;
    }
    drop(head);
    pump(socket, body, end, direct).await;
}

/// How an answer's body is delimited (besides `Connection: close`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// No body (`204`, `304`).
    Empty,
    /// `Content-Length`.
    Length(u64),
    /// `Transfer-Encoding: chunked`: an event stream.
    Chunked,
}

/// The response head, its body delimited by `Connection: close` and `framing`.
fn encode_head(parts: &Parts, framing: Framing) -> Vec<u8> {
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
    match framing {
        Framing::Length(len) => {
            head.extend_from_slice(format!("content-length: {len}\r\n").as_bytes());
        }
        Framing::Chunked => head.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        Framing::Empty => {}
    }
    head.extend_from_slice(b"connection: close\r\n\r\n");
    head
}

/// Writes an answer of known size whole, whatever the client does meanwhile (it may have closed
/// its sending side); a small one in the head's write.
async fn write_answer<S: AsyncWrite + Unpin>(socket: &mut S, mut head: Vec<u8>, body: Body) {
    let is_small = body
        .size_hint()
        .exact()
        .is_some_and(|len| len <= ANSWER_COALESCE_BYTES_MAX as u64);
    if is_small {
        let Ok(answer) = axum::body::to_bytes(body, ANSWER_COALESCE_BYTES_MAX).await else {
            return;
        };
        head.extend_from_slice(&answer);
        let _ = write_whole(socket, &head).await;
        return;
    }
    if write_whole(socket, &head).await.is_err() {
        return;
    }
    drop(head);
    let mut chunks = body.into_data_stream();
    while let Some(Ok(bytes)) = chunks.next().await {
        if write_whole(socket, &bytes).await.is_err() {
            return;
        }
    }
}

/// Writes `bytes` and flushes them (a TLS socket holds what is written until flushed).
async fn write_whole<S: AsyncWrite + Unpin>(socket: &mut S, bytes: &[u8]) -> std::io::Result<()> {
    socket.write_all(bytes).await?;
    socket.flush().await
}

/// Writes each chunk of a body of unknown length (an event stream) as it comes, and watches the
/// socket for the client leaving. Ends the body, then the connection, with the last chunk. With
/// `direct` (and the stream's `end` signal), the hub's direct writer may write chunks meanwhile:
/// what one of its writes left unwritten is written here first.
async fn pump<S>(
    mut socket: S,
    body: Body,
    end: Option<EndSignal>,
    direct: Option<Arc<DirectSocket>>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let _detach = match (&end, direct) {
        (Some(end), Some(direct)) => {
            end.attach_direct(direct);
            Some(DetachOnDrop(end.clone()))
        }
        _ => None,
    };
    let mut chunks = Some(body.into_data_stream());
    let mut probe = [0u8; 16];
    while let Some(stream) = chunks.as_mut() {
        tokio::select! {
            biased;
            // Woken by the stream's queue, like the next chunk.
            Some(rest) = direct_rest(end.as_ref()) => {
                let write = ChunkWrite::raw(&mut socket, &rest);
                if !write_within(write, end.as_ref(), &mut chunks).await {
                    return;
                }
            },
            chunk = stream.next() => match chunk {
                // An empty chunk would read as the body's end.
                Some(Ok(bytes)) if bytes.is_empty() => {}
                Some(Ok(bytes)) => {
                    let write = ChunkWrite::chunk(&mut socket, &bytes);
                    if !write_within(write, end.as_ref(), &mut chunks).await {
                        return;
                    }
                }
                // The body ended (an event stream writes its closing comment first): close.
                _ => break,
            },
            read = socket.read(&mut probe) => match read {
                // The client went away.
                Ok(0) | Err(_) => return,
                // A client has nothing to send on a stream; ignore what it does send.
                Ok(_) => {}
            },
        }
    }
    // The stream's slot is free from here.
    drop(chunks);
    Box::pin(finish(&mut socket, Vec::new(), STREAM_WRITE_TIMEOUT)).await;
}

/// Stops the hub's direct writes to a stream's socket when its pump ends.
struct DetachOnDrop(EndSignal);

impl Drop for DetachOnDrop {
    fn drop(&mut self) {
        self.0.detach_direct();
    }
}

/// Resolves to bytes a direct write left unwritten; never resolves without them (the stream's
/// queue wakes the task once there are), and at once to `None` for a stream without an end
/// signal.
fn direct_rest(end: Option<&EndSignal>) -> impl std::future::Future<Output = Option<Bytes>> + '_ {
    std::future::poll_fn(move |_| match end {
        None => std::task::Poll::Ready(None),
        Some(end) => end.take_rest().map_or(std::task::Poll::Pending, |rest| {
            std::task::Poll::Ready(Some(rest))
        }),
    })
}

/// Completes one write to a stream within [`STREAM_WRITE_TIMEOUT`]; `false` when the connection
/// is over (an error, the deadline, or the stream ended while this write waited).
///
/// A write the socket takes at once (the usual case) arms no timer and allocates nothing. One
/// that waits on the client continues boxed, so an idle stream's task is not sized for it. When
/// the hub ends the stream meanwhile (its queue overflowed), the stream is dropped at once, which
/// frees its slot and its registration; what it still had to say (the closing comment) follows
/// the pending write, and the connection is closed, all within what is left of the deadline: a
/// client that reads again learns why.
async fn write_within<S: AsyncWrite + Unpin>(
    mut write: ChunkWrite<'_, S>,
    end: Option<&EndSignal>,
    chunks: &mut Option<BodyDataStream>,
) -> bool {
    match (&mut write).now_or_never() {
        Some(written) => written.is_ok(),
        None => Box::pin(wait_for_write(write, end, chunks)).await,
    }
}

/// The slow path of [`write_within`].
async fn wait_for_write<S: AsyncWrite + Unpin>(
    mut write: ChunkWrite<'_, S>,
    end: Option<&EndSignal>,
    chunks: &mut Option<BodyDataStream>,
) -> bool {
    let mut waited = Duration::ZERO;
    let mut tail: Option<Vec<Bytes>> = None;
    loop {
        match tokio::time::timeout(STUCK_WRITE_CHECK_INTERVAL, &mut write).await {
            Ok(Ok(())) => break,
            Ok(Err(_)) => return false,
            Err(_) => waited += STUCK_WRITE_CHECK_INTERVAL,
        }
        if waited >= STREAM_WRITE_TIMEOUT {
            return false;
        }
        if tail.is_none() && end.is_some_and(EndSignal::is_ended) {
            tail = Some(take_ready(chunks.take()));
        }
    }
    let Some(tail) = tail else {
        return true;
    };
    finish(
        write.socket,
        tail,
        STREAM_WRITE_TIMEOUT.saturating_sub(waited),
    )
    .await;
    false
}

/// Writes the stream's `tail` chunks and the last chunk, then closes, within `deadline`.
async fn finish<S: AsyncWrite + Unpin>(socket: &mut S, tail: Vec<Bytes>, deadline: Duration) {
    let _ = tokio::time::timeout(deadline, async {
        for bytes in tail.iter().filter(|bytes| !bytes.is_empty()) {
            ChunkWrite::chunk(&mut *socket, bytes).await?;
        }
        ChunkWrite::raw(&mut *socket, LAST_CHUNK).await?;
        socket.shutdown().await
    })
    .await;
}

/// What an ended stream yields without waiting (its closing comment), then drops it.
fn take_ready(chunks: Option<BodyDataStream>) -> Vec<Bytes> {
    /// An ended stream has one comment left; never take more than a few pieces.
    const TAIL_CHUNKS_MAX: usize = 4;
    let mut tail = Vec::new();
    if let Some(mut chunks) = chunks {
        while tail.len() < TAIL_CHUNKS_MAX {
            match chunks.next().now_or_never() {
                Some(Some(Ok(bytes))) => tail.push(bytes),
                _ => break,
            }
        }
    }
    tail
}

/// One write of bytes to the socket, as they are or as one chunk (`{len:x}\r\n`, the bytes,
/// `\r\n`), with vectored writes so the bytes are never copied, then a flush (a TLS socket holds
/// what is written until flushed). It holds no reference into itself, so it can move (into a box)
/// after it was first polled.
struct ChunkWrite<'a, S> {
    socket: &'a mut S,
    size_line: [u8; SIZE_LINE_BYTES_MAX],
    size_line_len: u8,
    bytes: &'a [u8],
    trailer: &'static [u8],
    /// Bytes of size line, bytes and trailer written so far.
    written: usize,
}

impl<'a, S: AsyncWrite + Unpin> ChunkWrite<'a, S> {
    /// `bytes` as one chunk.
    fn chunk(socket: &'a mut S, bytes: &'a [u8]) -> Self {
        let mut size_line = [0u8; SIZE_LINE_BYTES_MAX];
        let size_line_len = chunk_size_line(bytes.len(), &mut size_line).len() as u8;
        Self {
            socket,
            size_line,
            size_line_len,
            bytes,
            trailer: b"\r\n",
            written: 0,
        }
    }

    /// `bytes` as they are.
    fn raw(socket: &'a mut S, bytes: &'a [u8]) -> Self {
        Self {
            socket,
            size_line: [0; SIZE_LINE_BYTES_MAX],
            size_line_len: 0,
            bytes,
            trailer: b"",
            written: 0,
        }
    }
}

impl<S: AsyncWrite + Unpin> std::future::Future for ChunkWrite<'_, S> {
    type Output = io::Result<()>;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        use std::task::{ready, Poll};
        let this = self.get_mut();
        let size_line = &this.size_line[..usize::from(this.size_line_len)];
        let total = size_line.len() + this.bytes.len() + this.trailer.len();
        while this.written < total {
            let mut skip = this.written;
            let parts = [size_line, this.bytes, this.trailer].map(|part| {
                let taken = skip.min(part.len());
                skip -= taken;
                IoSlice::new(&part[taken..])
            });
            let socket = std::pin::Pin::new(&mut *this.socket);
            match ready!(socket.poll_write_vectored(cx, &parts)) {
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Ok(written) => this.written += written,
                Err(err) => return Poll::Ready(Err(err)),
            }
        }
        std::pin::Pin::new(&mut *this.socket).poll_flush(cx)
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

    /// Serves `router` on a free loopback port with [`crate::http::serve`]; returns the address
    /// and a handle that stops the server.
    async fn start_server(router: Router) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a free port");
        let addr = listener.local_addr().expect("bound");
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let hub = crate::Hub::new(crate::HubConfig::default());
        tokio::spawn(crate::http::serve(
            listener,
            router,
            hub,
            crate::http::ServeOptions::default(),
            async move {
                let _ = stop_rx.await;
            },
        ));
        (addr, stop_tx)
    }

    /// Sends `GET path` as a connection's first request (then, if `half_close`, closes its
    /// sending side, as `nc -N` does) and reads until the server closes.
    async fn get_raw(addr: SocketAddr, path: &str, half_close: bool) -> (String, Vec<u8>) {
        let mut socket = tokio::net::TcpStream::connect(addr)
            .await
            .expect("connects");
        let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n");
        socket.write_all(request.as_bytes()).await.expect("sent");
        if half_close {
            socket.shutdown().await.expect("half-closes");
        }
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), socket.read_to_end(&mut answer))
            .await
            .expect("the server closes the connection")
            .expect("reads");
        let end = answer
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("a complete head");
        let head = String::from_utf8(answer[..end].to_vec()).expect("an ASCII head");
        (head.to_ascii_lowercase(), answer[end + 4..].to_vec())
    }

    #[tokio::test]
    async fn an_answer_larger_than_64_kib_on_the_stream_path_arrives_whole() {
        let large: String = (0..200_000)
            .map(|i| char::from(b'a' + (i % 26) as u8))
            .collect();
        let expected = large.clone();
        let router = Router::new().route(
            "/api/stream",
            axum::routing::get(move || async move { large.clone() }),
        );
        assert!(
            is_stream_path("/api/stream"),
            "the request takes the lean path"
        );
        let (addr, _stop) = start_server(router).await;
        let (head, body) = get_raw(addr, "/api/stream", false).await;
        assert!(head.starts_with("http/1.1 200 ok"), "{head}");
        assert!(head.contains("content-length: 200000"), "{head}");
        assert_eq!(body, expected.as_bytes());
        // A client that stops sending once its request is out still gets the answer whole.
        let (head, body) = get_raw(addr, "/api/stream", true).await;
        assert!(head.contains("content-length: 200000"), "{head}");
        assert_eq!(body, expected.as_bytes());
    }

    #[tokio::test]
    async fn a_body_of_unknown_length_on_the_stream_path_is_sent_whole_then_closed() {
        let chunks: Vec<Result<Bytes, std::convert::Infallible>> = (0..100)
            .map(|i| Ok(Bytes::from(format!("{i:04}").repeat(1024))))
            .collect();
        let expected: Vec<u8> = chunks
            .iter()
            .flat_map(|c| c.as_ref().expect("ok").to_vec())
            .collect();
        let router = Router::new().route(
            "/api/channels/{channel}/stream",
            axum::routing::get(move || {
                let chunks = chunks.clone();
                async move { Body::from_stream(futures_util::stream::iter(chunks)) }
            }),
        );
        let (addr, _stop) = start_server(router).await;
        let (head, body) = get_raw(addr, "/api/channels/x/stream", false).await;
        assert!(!head.contains("content-length"), "{head}");
        assert!(head.contains("connection: close"), "{head}");
        assert!(head.contains("transfer-encoding: chunked"), "{head}");
        let (body, chunk_sizes) = dechunk(&body);
        assert_eq!(body.len(), expected.len());
        assert_eq!(body, expected);
        assert_eq!(
            chunk_sizes,
            vec![4096; 100],
            "one chunk per piece of the stream"
        );
    }

    /// A chunked body's bytes and chunk sizes; panics unless it is well formed and complete.
    fn dechunk(mut body: &[u8]) -> (Vec<u8>, Vec<usize>) {
        let (mut data, mut sizes) = (Vec::new(), Vec::new());
        loop {
            let line_end = body
                .windows(2)
                .position(|w| w == b"\r\n")
                .expect("a chunk size line");
            let size =
                usize::from_str_radix(std::str::from_utf8(&body[..line_end]).expect("ASCII"), 16)
                    .expect("a hex size");
            body = &body[line_end + 2..];
            if size == 0 {
                assert_eq!(body, b"\r\n", "the body ends with the last chunk");
                return (data, sizes);
            }
            data.extend_from_slice(&body[..size]);
            assert_eq!(&body[size..size + 2], b"\r\n");
            body = &body[size + 2..];
            sizes.push(size);
        }
    }

    #[test]
    fn chunk_sizes_are_lower_case_hex() {
        let mut buf = [0u8; SIZE_LINE_BYTES_MAX];
        for (len, line) in [
            (0, &b"0\r\n"[..]),
            (9, b"9\r\n"),
            (10, b"a\r\n"),
            (255, b"ff\r\n"),
            (65536, b"10000\r\n"),
            (usize::MAX, b"ffffffffffffffff\r\n"),
        ] {
            assert_eq!(chunk_size_line(len, &mut buf), line, "{len}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_reader_that_stops_reading_is_cut_after_the_write_timeout() {
        let (server, _client) = tokio::io::duplex(1024);
        let endless = futures_util::stream::repeat_with(|| {
            Ok::<_, std::convert::Infallible>(Bytes::from_static(&[b'x'; 512]))
        });
        let started = Instant::now();
        let pumped = tokio::time::timeout(
            STREAM_WRITE_TIMEOUT * 2,
            pump(server, Body::from_stream(endless), None, None),
        )
        .await;
        assert!(pumped.is_ok(), "the pump never gave up on a stuck write");
        let waited = started.elapsed();
        assert!(
            waited >= STREAM_WRITE_TIMEOUT
                && waited < STREAM_WRITE_TIMEOUT + Duration::from_secs(1),
            "{waited:?}"
        );
    }

    #[tokio::test]
    async fn a_bodiless_answer_on_the_stream_path_has_no_length_and_no_body() {
        let router = Router::new().route(
            "/api/stream",
            axum::routing::get(|| async { StatusCode::NO_CONTENT }),
        );
        let (addr, _stop) = start_server(router).await;
        let (head, body) = get_raw(addr, "/api/stream", false).await;
        assert!(head.starts_with("http/1.1 204"), "{head}");
        assert!(!head.contains("content-length"), "{head}");
        assert!(body.is_empty());
    }
}
