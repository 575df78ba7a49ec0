//! The SSE wire format: turns events into `text/event-stream` bytes.
//!
//! Owns the exact bytes Herald writes (fields, line splitting, comments, and the size line of
//! each chunk of a stream written off hyper). It never validates
//! publisher input (that is [`crate::event`]'s job) and never touches a socket: every function here
//! returns [`Bytes`] that are encoded once and then shared by every subscriber.

use bytes::{BufMut, Bytes, BytesMut};
use std::time::Duration;

/// Most bytes of an HTTP/1.1 chunk size line: 16 hex digits and CRLF.
pub(crate) const CHUNK_SIZE_LINE_BYTES_MAX: usize = 2 * std::mem::size_of::<usize>() + 2;

/// The size line of an HTTP/1.1 `chunked` body's chunk of `len` bytes (lower-case hex and
/// CRLF), written into `buf`: the framing of every piece of a stream written off hyper.
pub(crate) fn chunk_size_line(len: usize, buf: &mut [u8; CHUNK_SIZE_LINE_BYTES_MAX]) -> &[u8] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digits = (usize::BITS - len.leading_zeros()).div_ceil(4).max(1) as usize;
    for (i, slot) in buf[..digits].iter_mut().enumerate() {
        let shift = 4 * (digits - 1 - i);
        *slot = HEX[(len >> shift) & 0xf];
    }
    buf[digits] = b'\r';
    buf[digits + 1] = b'\n';
    &buf[..digits + 2]
}

/// The comment a connection receives on every heartbeat tick.
pub(crate) const HEARTBEAT_FRAME: &[u8] = b": heartbeat\n\n";

/// Encodes one event: `id:`, optional `event:`, then one `data:` line per line of `data`.
///
/// `data` is split on CRLF, CR and LF, the three line ends the SSE parser accepts, so no payload
/// can inject a field. `id` and `event` must already be free of CR, LF and NUL.
pub(crate) fn encode_event(id: Option<&str>, event: Option<&str>, data: &str) -> Bytes {
    encode_event_with_retry(id, event, data, None)
}

/// [`encode_event`] with a `retry:` field after the data, when `retry` is set. The frame is
/// allocated at its exact length.
pub(crate) fn encode_event_with_retry(
    id: Option<&str>,
    event: Option<&str>,
    data: &str,
    retry: Option<u64>,
) -> Bytes {
    let mut buf = BytesMut::with_capacity(event_frame_len(id, event, data, retry));
    put_event(&mut buf, id, event, data, retry);
    buf.freeze()
}

/// The exact length of what [`put_event`] writes for these fields.
pub(crate) fn event_frame_len(
    id: Option<&str>,
    event: Option<&str>,
    data: &str,
    retry: Option<u64>,
) -> usize {
    let field = |name: &str, value_len: usize| name.len() + ": ".len() + value_len + 1;
    id.map_or(0, |id| field("id", id.len()))
        + event.map_or(0, |event| field("event", event.len()))
        + split_lines(data)
            .map(|line| field("data", line.len()))
            .sum::<usize>()
        + retry.map_or(0, |retry| field("retry", decimal_len(retry)))
        + 1
}

/// Appends the frame of [`encode_event_with_retry`] to `buf`.
pub(crate) fn put_event(
    buf: &mut BytesMut,
    id: Option<&str>,
    event: Option<&str>,
    data: &str,
    retry: Option<u64>,
) {
    if let Some(id) = id {
        put_field(buf, b"id", id);
    }
    if let Some(event) = event {
        put_field(buf, b"event", event);
    }
    for line in split_lines(data) {
        put_field(buf, b"data", line);
    }
    if let Some(retry) = retry {
        put_field(buf, b"retry", &retry.to_string());
    }
    buf.put_u8(b'\n');
}

/// Digits of `n` in decimal.
fn decimal_len(n: u64) -> usize {
    n.checked_ilog10().map_or(1, |log| log as usize + 1)
}

/// Encodes the block that opens every stream: `retry:`, then the `connected` event with the id
/// the stream starts from, in one block. One block, not two, because several popular clients
/// hand a block without `data:` to the application as an empty event, and some attach `retry:`
/// only to an event that has data; the `id:` lets a client that saw nothing else resume exactly.
pub(crate) fn encode_opening(retry: Duration, start_id: &str, connected: &str) -> Bytes {
    let event = encode_event(Some(start_id), Some("connected"), connected);
    let mut buf = BytesMut::with_capacity(event.len() + 20);
    buf.put_slice(format!("retry: {}\n", retry.as_millis()).as_bytes());
    buf.put_slice(&event);
    buf.freeze()
}

/// Encodes a comment line (ignored by clients, used for heartbeats and for the reason a stream ends).
pub(crate) fn encode_comment(text: &str) -> Bytes {
    let mut buf = BytesMut::with_capacity(text.len() + 4);
    for line in split_lines(text) {
        buf.put_slice(b": ");
        buf.put_slice(line.as_bytes());
        buf.put_u8(b'\n');
    }
    buf.put_u8(b'\n');
    buf.freeze()
}

fn put_field(buf: &mut BytesMut, name: &[u8], value: &str) {
    buf.put_slice(name);
    buf.put_slice(b": ");
    buf.put_slice(value.as_bytes());
    buf.put_u8(b'\n');
}

/// Splits on CRLF, CR or LF; an empty string is one empty line (an event with empty data).
fn split_lines(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(text);
    std::iter::from_fn(move || {
        let current = rest?;
        match current.find(['\r', '\n']) {
            Some(pos) => {
                let skip = if current[pos..].starts_with("\r\n") {
                    2
                } else {
                    1
                };
                rest = Some(&current[pos + skip..]);
                Some(&current[..pos])
            }
            None => {
                rest = None;
                Some(current)
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_with_every_field_is_encoded_in_order() {
        let bytes = encode_event(Some("7"), Some("created"), "{\"id\":7}");
        assert_eq!(&bytes[..], b"id: 7\nevent: created\ndata: {\"id\":7}\n\n");
    }

    #[test]
    fn every_line_end_in_data_becomes_a_new_data_line() {
        let bytes = encode_event(None, None, "a\nb\r\nc\rd");
        assert_eq!(&bytes[..], b"data: a\ndata: b\ndata: c\ndata: d\n\n");
    }

    #[test]
    fn empty_data_is_one_empty_data_line() {
        assert_eq!(&encode_event(Some("1"), None, "")[..], b"id: 1\ndata: \n\n");
    }

    #[test]
    fn trailing_newline_in_data_keeps_an_empty_last_line() {
        assert_eq!(&encode_event(None, None, "a\n")[..], b"data: a\ndata: \n\n");
    }

    #[test]
    fn an_event_frame_is_allocated_at_its_exact_length() {
        for (id, event, data, retry) in [
            (Some("e-1"), Some("tick"), "a\r\nb\rc\n", Some(0)),
            (None, None, "", Some(1_000_000)),
            (Some("x"), None, "\n\n", None),
        ] {
            let frame = encode_event_with_retry(id, event, data, retry);
            assert_eq!(frame.len(), event_frame_len(id, event, data, retry));
        }
    }

    #[test]
    fn comment_cannot_smuggle_a_field() {
        assert_eq!(&encode_comment("bye\ndata: x")[..], b": bye\n: data: x\n\n");
    }
}
