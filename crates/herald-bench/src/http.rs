//! Just enough HTTP/1.1 client for load: requests written by hand, response heads parsed, bodies
//! framed by `Content-Length` or decoded from `chunked`.
//!
//! Hand-written so that thousands of open streams cost the load generator one socket and one small
//! buffer each. It is not a general client: no redirects, no compression, loopback only; TLS,
//! when the run uses it, is `transport`'s.

use crate::transport;
use anyhow::{bail, Context};
use std::net::SocketAddr;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

/// Bytes asked of the socket per read.
const READ_CHUNK_BYTES: usize = 4096;
/// Largest response head accepted.
const HEAD_BYTES_MAX: usize = 16 * 1024;

/// A `GET` for `path`; `extra_headers` are whole `Name: value\r\n` lines.
pub(crate) fn get_request(path: &str, extra_headers: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra_headers}\r\n").into_bytes()
}

/// A `POST` of a JSON `body` to `path`, keeping the connection open.
pub(crate) fn post_json_request(path: &str, body: &[u8]) -> Vec<u8> {
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    request
}

/// `GET path` on a fresh connection, answered with JSON.
///
/// # Errors
/// On a connection failure, a status other than 200, or a body that is not JSON.
pub(crate) async fn get_json(addr: SocketAddr, path: &str) -> anyhow::Result<serde_json::Value> {
    let mut socket = transport::connect(addr).await?;
    socket
        .write_all(&get_request(path, "Connection: close\r\n"))
        .await?;
    socket.flush().await?;
    let mut reader = ResponseReader::new(socket);
    let (status, body) = reader.read_response().await?;
    if status != 200 {
        bail!(
            "GET {path} answered {status}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    serde_json::from_slice(&body).with_context(|| format!("GET {path} answered non-JSON"))
}

/// `POST` of a JSON `body` to `path` on a fresh connection: the status and body of the answer.
///
/// # Errors
/// On a connection failure or a malformed answer.
pub(crate) async fn post_json(
    addr: SocketAddr,
    path: &str,
    body: &[u8],
) -> anyhow::Result<(u16, Vec<u8>)> {
    let mut socket = transport::connect(addr).await?;
    socket.write_all(&post_json_request(path, body)).await?;
    socket.flush().await?;
    ResponseReader::new(socket).read_response().await
}

/// How a response body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// `Content-Length` bytes.
    Length(usize),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// When the server closes the connection.
    UntilClose,
}

/// A parsed status line and the headers the benchmark needs.
#[derive(Debug, Clone)]
pub(crate) struct Head {
    pub(crate) status: u16,
    /// `Content-Type`, empty when absent.
    pub(crate) content_type: String,
    pub(crate) framing: Framing,
}

/// Reads responses off one connection, keeping bytes that arrived past the current response (the
/// next pipelined response, or the first bytes of a stream's body).
#[derive(Debug)]
pub(crate) struct ResponseReader<R> {
    reader: R,
    buf: Vec<u8>,
}

impl<R: AsyncRead + Unpin> ResponseReader<R> {
    pub(crate) fn new(reader: R) -> Self {
        Self {
            reader,
            buf: Vec::new(),
        }
    }

    /// Reads more bytes into the buffer; `false` at end of stream.
    async fn fill(&mut self) -> anyhow::Result<bool> {
        let start = self.buf.len();
        self.buf.resize(start + READ_CHUNK_BYTES, 0);
        let read = self.reader.read(&mut self.buf[start..]).await;
        let read = read.inspect_err(|_| self.buf.truncate(start))?;
        self.buf.truncate(start + read);
        Ok(read > 0)
    }

    /// Reads the status line and headers.
    ///
    /// # Errors
    /// On end of stream, a read error, or a head that is malformed or larger than 16 KiB.
    pub(crate) async fn read_head(&mut self) -> anyhow::Result<Head> {
        let end = loop {
            if let Some(pos) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break pos + 4;
            }
            if self.buf.len() > HEAD_BYTES_MAX {
                bail!("response head larger than {HEAD_BYTES_MAX} bytes");
            }
            if !self.fill().await? {
                bail!("connection closed before a response head");
            }
        };
        let head = parse_head(&self.buf[..end])?;
        self.buf.drain(..end);
        Ok(head)
    }

    /// Reads a body framed by `framing` to its end.
    ///
    /// # Errors
    /// On a read error, malformed chunking, or a stream that ends early.
    pub(crate) async fn read_body(&mut self, framing: Framing) -> anyhow::Result<Vec<u8>> {
        match framing {
            Framing::Length(len) => {
                while self.buf.len() < len {
                    if !self.fill().await? {
                        bail!("connection closed inside a body");
                    }
                }
                Ok(self.buf.drain(..len).collect())
            }
            Framing::Chunked => {
                let mut dechunker = Dechunker::default();
                let mut body = Vec::new();
                loop {
                    let used =
                        dechunker.feed(&self.buf, &mut |data| body.extend_from_slice(data))?;
                    self.buf.drain(..used);
                    if dechunker.is_done() {
                        return Ok(body);
                    }
                    if !self.fill().await? {
                        bail!("connection closed inside a chunked body");
                    }
                }
            }
            Framing::UntilClose => {
                while self.fill().await? {}
                Ok(std::mem::take(&mut self.buf))
            }
        }
    }

    /// Reads one whole response: its status and body.
    ///
    /// # Errors
    /// As [`Self::read_head`] and [`Self::read_body`].
    pub(crate) async fn read_response(&mut self) -> anyhow::Result<(u16, Vec<u8>)> {
        let head = self.read_head().await?;
        let body = self.read_body(head.framing).await?;
        Ok((head.status, body))
    }

    /// The connection (to write the next request on it) and the bytes read and not yet used.
    pub(crate) fn parts_mut(&mut self) -> (&mut R, &mut Vec<u8>) {
        (&mut self.reader, &mut self.buf)
    }

    /// The connection and the bytes read past the last head or body.
    pub(crate) fn into_parts(self) -> (R, Vec<u8>) {
        (self.reader, self.buf)
    }
}

fn parse_head(head: &[u8]) -> anyhow::Result<Head> {
    let text = std::str::from_utf8(head).context("response head is not UTF-8")?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .strip_prefix("HTTP/1.")
        .and_then(|rest| rest.get(2..5))
        .and_then(|code| code.parse().ok())
        .with_context(|| format!("bad status line {status_line:?}"))?;
    let mut content_type = String::new();
    let mut framing = Framing::UntilClose;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-type") {
            content_type = value.to_owned();
        } else if name.eq_ignore_ascii_case("content-length") {
            framing = Framing::Length(value.parse().context("bad Content-Length")?);
        } else if name.eq_ignore_ascii_case("transfer-encoding")
            && value.to_ascii_lowercase().contains("chunked")
        {
            framing = Framing::Chunked;
        }
    }
    // A 204 or 304 has no body whatever its headers say.
    if status == 204 || status == 304 {
        framing = Framing::Length(0);
    }
    Ok(Head {
        status,
        content_type,
        framing,
    })
}

/// Where a [`Dechunker`] is inside the chunked framing.
#[derive(Debug, Clone, Copy)]
enum ChunkState {
    /// Reading a chunk-size line; `in_extension` after a `;`.
    Size { size: usize, in_extension: bool },
    /// Inside chunk data with this many bytes left.
    Data(usize),
    /// Expecting the CRLF after chunk data.
    DataEnd,
    /// After the last (zero-size) chunk: reading trailer lines until an empty one.
    Trailer { is_line_empty: bool },
    /// The body is complete.
    Done,
}

impl Default for ChunkState {
    fn default() -> Self {
        ChunkState::Size {
            size: 0,
            in_extension: false,
        }
    }
}

/// Incremental decoder of a `Transfer-Encoding: chunked` body.
#[derive(Debug, Default)]
pub(crate) struct Dechunker {
    state: ChunkState,
}

impl Dechunker {
    /// Whether the last chunk and its trailer have been read.
    pub(crate) fn is_done(&self) -> bool {
        matches!(self.state, ChunkState::Done)
    }

    /// Decodes as much of `input` as belongs to this body, handing each run of payload bytes to
    /// `out`. Returns how many bytes of `input` it used (all of them unless the body ended).
    ///
    /// # Errors
    /// On a chunk-size line that is not hexadecimal or overflows.
    pub(crate) fn feed(
        &mut self,
        input: &[u8],
        out: &mut impl FnMut(&[u8]),
    ) -> anyhow::Result<usize> {
        let mut pos = 0;
        while pos < input.len() {
            match &mut self.state {
                ChunkState::Size { size, in_extension } => {
                    let byte = input[pos];
                    pos += 1;
                    match byte {
                        b'\n' if *size == 0 => {
                            self.state = ChunkState::Trailer {
                                is_line_empty: true,
                            }
                        }
                        b'\n' => self.state = ChunkState::Data(*size),
                        b'\r' => {}
                        _ if *in_extension => {}
                        b';' => *in_extension = true,
                        _ => {
                            let digit = (byte as char)
                                .to_digit(16)
                                .with_context(|| format!("bad chunk size byte {byte:#04x}"))?;
                            *size = size
                                .checked_mul(16)
                                .and_then(|size| size.checked_add(digit as usize))
                                .context("chunk size overflows")?;
                        }
                    }
                }
                ChunkState::Data(left) => {
                    let take = (*left).min(input.len() - pos);
                    out(&input[pos..pos + take]);
                    pos += take;
                    *left -= take;
                    if *left == 0 {
                        self.state = ChunkState::DataEnd;
                    }
                }
                ChunkState::DataEnd => {
                    let byte = input[pos];
                    pos += 1;
                    if byte == b'\n' {
                        self.state = ChunkState::default();
                    }
                }
                ChunkState::Trailer { is_line_empty } => {
                    let byte = input[pos];
                    pos += 1;
                    match byte {
                        b'\n' if *is_line_empty => self.state = ChunkState::Done,
                        b'\n' => *is_line_empty = true,
                        b'\r' => {}
                        _ => *is_line_empty = false,
                    }
                }
                ChunkState::Done => break,
            }
        }
        Ok(pos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_in_pieces(wire: &[u8], piece: usize) -> (Vec<u8>, bool, usize) {
        let mut dechunker = Dechunker::default();
        let mut body = Vec::new();
        let mut used = 0;
        for part in wire.chunks(piece) {
            used += dechunker
                .feed(part, &mut |data| body.extend_from_slice(data))
                .expect("valid chunking");
            if dechunker.is_done() {
                break;
            }
        }
        (body, dechunker.is_done(), used)
    }

    #[test]
    fn chunked_body_decodes_whatever_the_read_boundaries() {
        let wire = b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\n\r\nNEXT";
        for piece in 1..wire.len() {
            let (body, is_done, used) = decode_in_pieces(wire, piece);
            assert_eq!(body, b"hello, world", "piece size {piece}");
            assert!(is_done);
            assert_eq!(&wire[used..], b"NEXT", "piece size {piece}");
        }
    }

    #[test]
    fn head_gives_status_type_and_framing() {
        let head = parse_head(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\
              transfer-encoding: chunked\r\n\r\n",
        )
        .expect("valid head");
        assert_eq!(head.status, 200);
        assert_eq!(head.content_type, "text/event-stream");
        assert_eq!(head.framing, Framing::Chunked);
        let head =
            parse_head(b"HTTP/1.1 201 Created\r\ncontent-length: 12\r\n\r\n").expect("valid head");
        assert_eq!((head.status, head.framing), (201, Framing::Length(12)));
    }
}
