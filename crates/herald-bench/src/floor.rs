//! The floor: a minimal event server that costs one `write` per delivery and nothing else.
//!
//! `herald-bench floor-serve` runs it as its own process, so `fanout --vs-floor` measures it with
//! the same load, the same `/proc` readings and the same machine as the hub, in one run. It
//! answers the three requests `fanout` makes (`GET …/stream`, `POST …/events`, `GET /api/stats`)
//! in the hub's wire format, and does nothing a real hub needs: no queues, no history, no ids
//! worth resuming from, no authentication, no heartbeats. A subscriber whose socket cannot take a
//! whole event at once is dropped (with the default 20 events/s to 1 000 subscribers this never
//! happens; the report's `missing` would show it).
//!
//! Hand-written rather than an existing server because the point is what is *not* there: one
//! thread (a tokio current-thread runtime, i.e. one epoll loop), and a publish that walks the
//! subscriber list and calls `write` once per socket from the publishing request's own task, so
//! no subscriber task wakes for an event. Anything a general server adds would be measured as
//! the floor. It must never grow a feature that `fanout` does not need.

use anyhow::Context;
use std::{
    cell::{Cell, RefCell},
    collections::HashMap,
    net::SocketAddr,
    rc::Rc,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

/// Largest request (head plus body) the floor reads.
const REQUEST_BYTES_MAX: usize = 64 * 1024;

/// The response head and first event of a stream; `Subscriber::connect` waits for `connected`.
const STREAM_HEAD: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\
cache-control: no-cache\r\n\r\nretry: 1000\nevent: connected\ndata: {}\n\n";

/// The floor's state: its open streams and two counters. One thread, so no locks.
#[derive(Default)]
struct Floor {
    subscribers: RefCell<HashMap<u64, Rc<TcpStream>>>,
    next_id: Cell<u64>,
    published: Cell<u64>,
    delivered: Cell<u64>,
}

/// Serves on `listen` until killed; prints `floor listening on http://ADDR` to stderr first.
///
/// # Errors
/// When the runtime cannot start or the address cannot be bound.
pub(crate) fn serve(listen: SocketAddr) -> anyhow::Result<()> {
    let listener =
        std::net::TcpListener::bind(listen).with_context(|| format!("binding {listen}"))?;
    eprintln!("floor listening on http://{}", listener.local_addr()?);
    serve_on(listener)
}

/// Serves on a bound `listener` until killed.
///
/// # Errors
/// When the runtime cannot start or accepting fails.
fn serve_on(listener: std::net::TcpListener) -> anyhow::Result<()> {
    listener.set_nonblocking(true)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .context("starting the floor's runtime")?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async move {
        let listener = TcpListener::from_std(listener)?;
        let floor = Rc::new(Floor::default());
        loop {
            let (socket, _) = listener.accept().await.context("accepting")?;
            socket.set_nodelay(true)?;
            tokio::task::spawn_local(connection(socket, floor.clone()));
        }
    })
}

/// One connection: requests in order until it closes or opens a stream.
async fn connection(mut socket: TcpStream, floor: Rc<Floor>) {
    let mut buf = Vec::with_capacity(1024);
    loop {
        let Some((method, path, body)) = read_request(&mut socket, &mut buf).await else {
            return;
        };
        let answer = match (method.as_str(), path.as_str()) {
            ("GET", p) if p.ends_with("/stream") => {
                if socket.write_all(STREAM_HEAD).await.is_ok() {
                    hold_stream(socket, &floor).await;
                }
                return;
            }
            ("POST", p) if p.ends_with("/events") => json(200, &publish(&floor, &body)),
            ("GET", "/api/stats") => json(
                200,
                &format!(
                    r#"{{"connections":{},"eventsPublished":{},"eventsDelivered":{}}}"#,
                    floor.subscribers.borrow().len(),
                    floor.published.get(),
                    floor.delivered.get()
                ),
            ),
            _ => json(404, r#"{"error":"not_found"}"#),
        };
        if socket.write_all(&answer).await.is_err() {
            return;
        }
    }
}

/// Keeps `socket` in the subscriber list until the client closes it.
async fn hold_stream(socket: TcpStream, floor: &Floor) {
    let id = floor.next_id.get();
    floor.next_id.set(id + 1);
    let socket = Rc::new(socket);
    floor.subscribers.borrow_mut().insert(id, socket.clone());
    let mut scratch = [0u8; 64];
    loop {
        if socket.readable().await.is_err() {
            break;
        }
        match socket.try_read(&mut scratch) {
            Ok(0) => break,
            Ok(_) => {}
            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => break,
        }
        if !floor.subscribers.borrow().contains_key(&id) {
            break;
        }
    }
    floor.subscribers.borrow_mut().remove(&id);
}

/// Writes one event to every subscriber, one `write` each, and returns the answer's JSON.
fn publish(floor: &Floor, body: &[u8]) -> String {
    let data = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|value| Some(value.get("data")?.as_str()?.to_owned()))
        .unwrap_or_default();
    let seq = floor.published.get();
    floor.published.set(seq + 1);
    let frame = format!("id: {seq}\ndata: {data}\n\n");
    let mut dropped = Vec::new();
    let mut recipients = 0u64;
    for (&id, socket) in floor.subscribers.borrow().iter() {
        match socket.try_write(frame.as_bytes()) {
            Ok(written) if written == frame.len() => recipients += 1,
            _ => dropped.push(id),
        }
    }
    let mut subscribers = floor.subscribers.borrow_mut();
    for id in dropped {
        subscribers.remove(&id);
    }
    floor.delivered.set(floor.delivered.get() + recipients);
    format!(r#"{{"id":"{seq}","recipients":{recipients}}}"#)
}

fn json(status: u16, body: &str) -> Vec<u8> {
    let reason = if status == 200 { "OK" } else { "Not Found" };
    format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Reads one request off `socket` (bytes beyond it stay in `buf` for the next): method, path and
/// body. `None` when the connection closes or sends something unusable.
async fn read_request(
    socket: &mut TcpStream,
    buf: &mut Vec<u8>,
) -> Option<(String, String, Vec<u8>)> {
    loop {
        if let Some(head_end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = std::str::from_utf8(&buf[..head_end]).ok()?;
            let mut lines = head.split("\r\n");
            let mut first = lines.next()?.split(' ');
            let (method, path) = (first.next()?.to_owned(), first.next()?.to_owned());
            let length = lines
                .filter_map(|line| line.split_once(':'))
                .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
                .and_then(|(_, value)| value.trim().parse::<usize>().ok())
                .unwrap_or(0);
            let total = head_end + 4 + length;
            if total > REQUEST_BYTES_MAX {
                return None;
            }
            if buf.len() >= total {
                let body = buf[head_end + 4..total].to_vec();
                buf.drain(..total);
                return Some((method, path, body));
            }
        } else if buf.len() > REQUEST_BYTES_MAX {
            return None;
        }
        let mut chunk = [0u8; 4096];
        match socket.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(read) => buf.extend_from_slice(&chunk[..read]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    /// Reads from `socket` until `text` has arrived; everything read so far.
    fn read_until(socket: &mut std::net::TcpStream, text: &str) -> String {
        let mut seen = Vec::new();
        let mut buf = [0u8; 1024];
        while !String::from_utf8_lossy(&seen).contains(text) {
            let read = socket.read(&mut buf).expect("the floor answers");
            assert!(
                read > 0,
                "closed before {text:?}: {}",
                String::from_utf8_lossy(&seen)
            );
            seen.extend_from_slice(&buf[..read]);
        }
        String::from_utf8_lossy(&seen).into_owned()
    }

    #[test]
    fn a_publish_reaches_a_stream_in_the_hubs_wire_format() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        let addr = listener.local_addr().expect("bound");
        std::thread::spawn(move || serve_on(listener));

        let mut stream = std::net::TcpStream::connect(addr).expect("connects");
        stream
            .write_all(b"GET /api/channels/a/stream HTTP/1.1\r\nHost: x\r\n\r\n")
            .expect("sent");
        let head = read_until(&mut stream, "event: connected\ndata: {}\n\n");
        assert!(head.starts_with("HTTP/1.1 200 OK\r\ncontent-type: text/event-stream"));

        let mut publisher = std::net::TcpStream::connect(addr).expect("connects");
        let body = br#"{"data":"7 123"}"#;
        let request = format!(
            "POST /api/channels/a/events HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        publisher.write_all(request.as_bytes()).expect("sent");
        publisher.write_all(body).expect("sent");
        let answer = read_until(&mut publisher, "}");
        assert!(answer.contains(r#""recipients":1"#), "{answer}");
        assert!(read_until(&mut stream, "data: 7 123\n\n").contains("id: 0\n"));
    }
}
