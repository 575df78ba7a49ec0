//! The known HTTP/2 abuses, sent as raw frames over TLS to the real binary: each is bounded, the
//! abusive connection is refused or closed, and the hub keeps serving everyone else.
//!
//! Frames are written by hand (a client library would refuse to misbehave): the connection
//! preface, then HEADERS, CONTINUATION, RST_STREAM, SETTINGS and PING frames as each attack sends
//! them. Header blocks use HPACK's static table and literals without indexing, so no encoder state
//! is needed.

mod common;
mod tls_support;

use common::{TestHub, PATIENCE};
use std::time::{Duration, Instant};
use tls_support::test_ca;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf},
    net::TcpStream,
    sync::mpsc,
};
use tokio_rustls::client::TlsStream;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const CANCEL: u32 = 0x8;
const REFUSED_STREAM: u32 = 0x7;
const ENHANCE_YOUR_CALM: u32 = 0xb;

/// One frame the hub sent.
#[derive(Debug)]
struct Frame {
    kind: u8,
    flags: u8,
    stream: u32,
    payload: Vec<u8>,
}

/// A raw HTTP/2 connection: frames are written by hand, and a task reads the hub's frames.
struct RawH2 {
    writer: WriteHalf<TlsStream<TcpStream>>,
    frames_rx: mpsc::UnboundedReceiver<Frame>,
    /// The read half, when nothing reads it (see [`RawH2::connect_unread`]).
    _unread: Option<ReadHalf<TlsStream<TcpStream>>>,
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).expect("a frame fits");
    let mut bytes = len.to_be_bytes()[1..].to_vec();
    bytes.extend_from_slice(&[kind, flags]);
    bytes.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    bytes.extend_from_slice(payload);
    bytes
}

/// A literal header field without indexing, its name an index of the static table.
fn literal(name_index: u8, value: &[u8]) -> Vec<u8> {
    assert!(name_index < 16 && value.len() < 127);
    let mut bytes = vec![name_index, u8::try_from(value.len()).expect("short")];
    bytes.extend_from_slice(value);
    bytes
}

/// `GET https://localhost{path}`.
fn get_block(path: &str) -> Vec<u8> {
    let mut block = vec![0x82, 0x87]; // :method GET, :scheme https
    block.extend(literal(1, b"localhost")); // :authority
    block.extend(literal(4, path.as_bytes())); // :path
    block
}

async fn read_frame(reader: &mut ReadHalf<TlsStream<TcpStream>>) -> Option<Frame> {
    let mut head = [0u8; 9];
    reader.read_exact(&mut head).await.ok()?;
    let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
    let mut payload = vec![0u8; len];
    reader.read_exact(&mut payload).await.ok()?;
    Some(Frame {
        kind: head[3],
        flags: head[4],
        stream: u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff,
        payload,
    })
}

impl RawH2 {
    /// Connects with ALPN `h2`, exchanges the prefaces and acknowledges the hub's settings; a
    /// task then reads every frame the hub sends.
    async fn connect(hub: &TestHub) -> Self {
        Self::open(hub, true).await
    }

    /// As [`RawH2::connect`], but nothing reads what the hub sends after its settings.
    async fn connect_unread(hub: &TestHub) -> Self {
        Self::open(hub, false).await
    }

    async fn open(hub: &TestHub, is_read: bool) -> Self {
        let stream = test_ca().connect(hub.port, &[b"h2"]).await;
        assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        let (mut reader, mut writer) = tokio::io::split(stream);
        writer.write_all(PREFACE).await.expect("preface");
        writer
            .write_all(&frame(SETTINGS, 0, 0, &[]))
            .await
            .expect("settings");
        loop {
            let settings = read_frame(&mut reader).await.expect("the hub's settings");
            if settings.kind == SETTINGS && settings.flags & ACK == 0 {
                break;
            }
        }
        writer
            .write_all(&frame(SETTINGS, ACK, 0, &[]))
            .await
            .expect("settings ack");
        let (frames_tx, frames_rx) = mpsc::unbounded_channel();
        if !is_read {
            return Self {
                writer,
                frames_rx,
                _unread: Some(reader),
            };
        }
        tokio::spawn(async move {
            while let Some(frame) = read_frame(&mut reader).await {
                if frames_tx.send(frame).is_err() {
                    break;
                }
            }
        });
        Self {
            writer,
            frames_rx,
            _unread: None,
        }
    }

    /// Writes raw bytes; `false` once the hub has closed the connection.
    async fn send(&mut self, bytes: &[u8]) -> bool {
        self.writer.write_all(bytes).await.is_ok()
    }

    /// Frames until the hub closes the connection (or `within` passes: then `None`).
    async fn frames_until_closed(&mut self, within: Duration) -> Option<Vec<Frame>> {
        let mut frames = Vec::new();
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, self.frames_rx.recv()).await {
                Ok(Some(frame)) => frames.push(frame),
                Ok(None) => return Some(frames),
                Err(_) => return None,
            }
        }
    }

    /// The next frame of `kind` on `stream`, within [`PATIENCE`].
    async fn next_on(&mut self, stream: u32, kinds: &[u8]) -> Frame {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let frame = tokio::time::timeout_at(deadline, self.frames_rx.recv())
                .await
                .expect("the hub answers in time")
                .expect("the connection is open");
            if (frame.stream == stream || frame.kind == GOAWAY) && kinds.contains(&frame.kind) {
                return frame;
            }
        }
    }
}

fn goaway_code(frame: &Frame) -> u32 {
    u32::from_be_bytes(frame.payload[4..8].try_into().expect("a GOAWAY code"))
}

fn start_hub() -> TestHub {
    let cert = test_ca().issue("h2-abuse");
    let args = cert.args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    TestHub::start(&args)
}

/// The hub still answers a well-behaved client quickly, and holds no stream of the attacker.
async fn assert_hub_serves_others(hub: &TestHub) {
    let client = tls_support::http2();
    let started = Instant::now();
    let health = client
        .get(format!("https://localhost:{}/healthz", hub.port))
        .send()
        .await
        .expect("the hub answers");
    assert!(health.status().is_success());
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the hub answered slowly: {:?}",
        started.elapsed()
    );
    common::eventually("the attacker holds no stream", || async {
        let stats: serde_json::Value = client
            .get(format!("https://localhost:{}/api/stats", hub.port))
            .send()
            .await
            .expect("stats")
            .json()
            .await
            .expect("JSON");
        stats["connections"] == 0
    })
    .await;
}

#[tokio::test]
async fn a_rapid_reset_flood_closes_the_connection() {
    let hub = start_hub();
    let mut attacker = RawH2::connect(&hub).await;
    let block = get_block("/api/channels/flood/stream");
    let mut sent = 0u32;
    for batch in 0..100u32 {
        let mut bytes = Vec::new();
        for i in 0..100u32 {
            let stream = 2 * (batch * 100 + i) + 1;
            bytes.extend(frame(HEADERS, END_HEADERS | END_STREAM, stream, &block));
            bytes.extend(frame(RST_STREAM, 0, stream, &CANCEL.to_be_bytes()));
        }
        if !attacker.send(&bytes).await {
            break;
        }
        sent += 100;
    }
    let frames = attacker
        .frames_until_closed(PATIENCE)
        .await
        .expect("the hub closes a rapid-reset flood");
    let goaway = frames
        .iter()
        .find(|frame| frame.kind == GOAWAY)
        .expect("the hub says why it closes");
    assert_eq!(goaway_code(goaway), ENHANCE_YOUR_CALM);
    assert!(sent < 10_000, "the hub took all {sent} resets");
    assert_hub_serves_others(&hub).await;
}

#[tokio::test]
async fn an_oversized_header_list_is_refused() {
    let hub = start_hub();
    let mut attacker = RawH2::connect(&hub).await;
    // 130 fields of 100-byte values: 18 KiB as HTTP/2 counts a list (name, value and 32 bytes
    // each), over the 16 KiB bound, in one 15 KiB frame.
    let mut block = get_block("/api/channels/big/stream");
    for i in 0..130 {
        // A literal with a literal name: 0x00, name, value.
        let name = format!("x-filler-{i:03}");
        block.push(0x00);
        block.push(u8::try_from(name.len()).expect("short"));
        block.extend_from_slice(name.as_bytes());
        block.push(100);
        block.extend_from_slice(&[b'a'; 100]);
    }
    assert!(block.len() < 16 * 1024, "one frame carries it");
    attacker
        .send(&frame(HEADERS, END_HEADERS | END_STREAM, 1, &block))
        .await;
    let answer = attacker.next_on(1, &[HEADERS, RST_STREAM, GOAWAY]).await;
    // Never a 200 (`:status 200` is 0x88 in HPACK's static table).
    assert!(
        !(answer.kind == HEADERS && answer.payload.first() == Some(&0x88)),
        "an oversized header list was served: {answer:?}"
    );
    assert_hub_serves_others(&hub).await;
}

#[tokio::test]
async fn a_continuation_flood_closes_the_connection() {
    let hub = start_hub();
    let mut attacker = RawH2::connect(&hub).await;
    attacker
        .send(&frame(
            HEADERS,
            END_STREAM,
            1,
            &get_block("/api/channels/c/stream"),
        ))
        .await;
    // Endless CONTINUATION frames, never END_HEADERS: each adds header fields to the list.
    let mut fragment = Vec::new();
    while fragment.len() < 15 * 1024 {
        fragment.extend_from_slice(&[0x00, 3, b'x', b'-', b'c', 120]);
        fragment.extend_from_slice(&[b'b'; 120]);
    }
    let continuation = frame(CONTINUATION, 0, 1, &fragment);
    let mut sent_bytes = 0usize;
    // Up to 64 MiB: far more than any bound.
    while sent_bytes < 64 * 1024 * 1024 {
        if !attacker.send(&continuation).await {
            break;
        }
        sent_bytes += continuation.len();
    }
    assert!(
        sent_bytes < 64 * 1024 * 1024,
        "the hub read 64 MiB of one header block"
    );
    attacker
        .frames_until_closed(PATIENCE)
        .await
        .expect("the hub closes a CONTINUATION flood");
    assert_hub_serves_others(&hub).await;
}

#[tokio::test]
async fn the_streams_of_one_connection_are_bounded() {
    let hub = start_hub();
    let mut client = RawH2::connect(&hub).await;
    let block = get_block("/api/channels/many/stream");
    let mut bytes = Vec::new();
    for i in 0..101u32 {
        bytes.extend(frame(HEADERS, END_HEADERS | END_STREAM, 2 * i + 1, &block));
    }
    client.send(&bytes).await;
    let refused = client.next_on(201, &[RST_STREAM, GOAWAY]).await;
    if refused.kind == RST_STREAM {
        let code = u32::from_be_bytes(refused.payload[..4].try_into().expect("a code"));
        assert_eq!(code, REFUSED_STREAM);
    }
    drop(client);
    assert_hub_serves_others(&hub).await;
}

/// Sends `frame` three million times without reading any answer (tens of MiB of answers, more
/// than the sockets buffer): the hub stops reading or closes, grows little, and keeps serving
/// everyone else meanwhile.
async fn flood_unread(hub: &TestHub, frame: Vec<u8>) {
    let mut attacker = RawH2::connect_unread(hub).await;
    let rss_before = hub.rss_kib();
    let batch: Vec<u8> = frame.repeat(1000);
    let flood = async {
        for _ in 0..3000 {
            if !attacker.send(&batch).await {
                return false;
            }
        }
        true
    };
    // The flood either fails early (the hub closed) or blocks (the hub stopped reading, as it
    // answers each frame before reading the next): both bound it.
    let is_sent_whole = tokio::time::timeout(Duration::from_secs(3), flood).await;
    assert!(
        !matches!(is_sent_whole, Ok(true)),
        "the hub read the whole flood and kept the connection"
    );
    assert_hub_serves_others(hub).await;
    let grown = hub.rss_kib().saturating_sub(rss_before);
    assert!(
        grown < 32 * 1024,
        "the hub grew {grown} KiB under the flood"
    );
}

#[tokio::test]
async fn a_settings_flood_is_bounded() {
    let hub = start_hub();
    // SETTINGS_INITIAL_WINDOW_SIZE = 65535, again and again.
    let settings = frame(SETTINGS, 0, 0, &[0x00, 0x04, 0x00, 0x00, 0xff, 0xff]);
    flood_unread(&hub, settings).await;
}

#[tokio::test]
async fn a_ping_flood_is_bounded() {
    let hub = start_hub();
    flood_unread(&hub, frame(PING, 0, 0, &[7; 8])).await;
}
