//! The `text/event-stream` parser: bytes in, events out, exactly as the WHATWG HTML
//! standard's "interpreting an event stream" describes.
//!
//! The parser is incremental and owns only what one stream needs between chunks: the
//! partial line, the data and event type buffers, and the last event ID. Where a chunk ends
//! never changes what it produces. It does no I/O, never waits, and knows nothing of HTTP
//! or reconnection: the client, [`crate::EventSource`], drives it.
//!
//! # Decoding
//!
//! The stream is UTF-8. One leading byte order mark is skipped, only at the very start of
//! the stream. Lines end at CR, LF or CRLF, and a CR that ends one chunk followed by an LF
//! that starts the next is one line end. Line ends are ASCII and never part of a multibyte
//! sequence, so each complete line is decoded on its own; invalid or truncated sequences
//! become U+FFFD (the standard's "maximal subpart" replacement), and a character split
//! across chunks is decoded whole.

use std::borrow::Cow;
use std::time::Duration;

/// The byte order mark the stream may start with.
const BYTE_ORDER_MARK: [u8; 3] = [0xEF, 0xBB, 0xBF];

/// The event type reported when the stream names none.
const DEFAULT_EVENT_TYPE: &str = "message";

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Event {
    /// The stream's last event ID when this event was dispatched: set by the latest `id:`
    /// field, even one from an earlier event, and empty if none was ever sent. This is the
    /// value to resume from.
    pub id: String,
    /// The event type: the `event:` field, or `"message"` when the event had none.
    pub event: String,
    /// The `data:` lines, joined with LF.
    pub data: String,
}

/// What the parser produces from a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// A complete event, ended by a blank line, whose data was not empty.
    Event(Event),
    /// A valid `retry:` field: the server asks for this reconnection delay.
    Retry(Duration),
    /// A comment line (one that starts with `:`), without the colon and without one
    /// leading space. The standard ignores comments; servers send them as heartbeats.
    Comment(String),
}

/// The stream broke a limit set with [`Parser::with_max_event_bytes`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("event larger than {limit} bytes")]
pub struct EventTooLarge {
    /// The limit that was exceeded, in bytes.
    pub limit: usize,
}

/// An incremental `text/event-stream` parser for one stream.
///
/// Feed it chunks as they arrive; it returns whatever they complete. It never panics on any
/// input. Create a new parser for each connection (a new stream starts with a new BOM check
/// and empty buffers); [`Parser::with_last_event_id`] carries the last event ID over, as
/// browsers do.
///
/// # Examples
///
/// ```
/// use herald_client::parser::{Item, Parser};
///
/// let mut parser = Parser::new();
/// let mut items = Vec::new();
/// parser.feed(b"id: 7\r\ndata: hel", &mut items).unwrap();
/// parser.feed(b"lo\r", &mut items).unwrap();
/// parser.feed(b"\n\n", &mut items).unwrap();
/// let [Item::Event(event)] = items.as_slice() else { panic!("one event: {items:?}") };
/// assert_eq!((event.id.as_str(), event.event.as_str(), event.data.as_str()), ("7", "message", "hello"));
/// assert_eq!(parser.last_event_id(), "7");
/// ```
#[derive(Debug, Clone)]
pub struct Parser {
    /// Bytes of the current line that have not met their line end yet.
    line: Vec<u8>,
    /// The previous chunk ended with CR, so an LF starting the next chunk ends nothing.
    is_after_cr: bool,
    /// How many bytes of a leading BOM have been seen; `None` once the start is settled.
    bom_matched: Option<usize>,
    /// The standard's data buffer.
    data: String,
    /// The standard's event type buffer.
    event_type: String,
    /// The standard's last event ID buffer: set by `id:`, never reset by a dispatch.
    last_event_id_buffer: String,
    /// The last event ID as of the latest dispatch; what a reconnect must send.
    last_event_id: String,
    /// Largest pending line plus data buffer, in bytes; `None` means no limit.
    max_event_bytes: Option<usize>,
}

impl Default for Parser {
    fn default() -> Self {
        Self::new()
    }
}

impl Parser {
    /// A parser for a new stream, with no last event ID and no size limit.
    pub fn new() -> Self {
        Self {
            line: Vec::new(),
            is_after_cr: false,
            bom_matched: Some(0),
            data: String::new(),
            event_type: String::new(),
            last_event_id_buffer: String::new(),
            last_event_id: String::new(),
            max_event_bytes: None,
        }
    }

    /// A parser for a new stream that resumes from `last_event_id`: events report it until
    /// the stream sends an `id:` field of its own.
    pub fn with_last_event_id(last_event_id: impl Into<String>) -> Self {
        let last_event_id = last_event_id.into();
        Self {
            last_event_id_buffer: last_event_id.clone(),
            last_event_id,
            ..Self::new()
        }
    }

    /// Limits the bytes held for one event (the pending line plus the data collected so
    /// far) to `max_bytes`. Default: no limit. Without one, a server that never ends a line
    /// can make the parser hold any amount of memory.
    pub fn with_max_event_bytes(mut self, max_bytes: usize) -> Self {
        self.max_event_bytes = Some(max_bytes);
        self
    }

    /// The last event ID as of the latest dispatch (a blank line), the value a reconnect
    /// sends as `Last-Event-ID`. An `id:` field whose event is not complete yet is not
    /// counted.
    pub fn last_event_id(&self) -> &str {
        &self.last_event_id
    }

    /// Parses the next chunk of the stream and appends what it completes to `out`.
    ///
    /// Chunks may be cut anywhere, even inside a character or between CR and LF. A line
    /// without its line end stays buffered for the next chunk; at the end of the stream
    /// it is simply dropped with the parser, as the standard says.
    ///
    /// # Errors
    ///
    /// [`EventTooLarge`] when a limit was set and one event outgrew it. Items completed
    /// before that point are in `out`; the parser drops the pending line and event, and
    /// the caller should close the stream.
    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<Item>) -> Result<(), EventTooLarge> {
        let mut rest = chunk;
        if let Some(matched) = self.bom_matched {
            let mut matched = matched;
            while matched < BYTE_ORDER_MARK.len() && rest.first() == Some(&BYTE_ORDER_MARK[matched])
            {
                matched += 1;
                rest = &rest[1..];
            }
            if matched == BYTE_ORDER_MARK.len() {
                self.bom_matched = None;
            } else if rest.is_empty() {
                // Still a possible BOM: wait for more bytes to decide.
                self.bom_matched = Some(matched);
                return Ok(());
            } else {
                // Not a BOM after all: the bytes taken so far are the start of a line.
                self.bom_matched = None;
                self.feed_lines(&BYTE_ORDER_MARK[..matched], out)?;
            }
        }
        self.feed_lines(rest, out)
    }

    /// Splits bytes into lines, keeping the unfinished tail for the next chunk.
    fn feed_lines(&mut self, chunk: &[u8], out: &mut Vec<Item>) -> Result<(), EventTooLarge> {
        let mut rest = chunk;
        if rest.is_empty() {
            return Ok(());
        }
        if self.is_after_cr {
            self.is_after_cr = false;
            if rest[0] == b'\n' {
                rest = &rest[1..];
            }
        }
        while let Some(end) = rest.iter().position(|&b| b == b'\r' || b == b'\n') {
            self.line.extend_from_slice(&rest[..end]);
            self.check_size()?;
            let is_cr = rest[end] == b'\r';
            rest = &rest[end + 1..];
            if is_cr {
                match rest.first() {
                    Some(b'\n') => rest = &rest[1..],
                    Some(_) => {}
                    None => self.is_after_cr = true,
                }
            }
            let line = std::mem::take(&mut self.line);
            self.process_line(&line, out);
            // Keep the allocation for the next line.
            self.line = line;
            self.line.clear();
        }
        self.line.extend_from_slice(rest);
        self.check_size()
    }

    /// Fails, dropping the pending event, if the limit is set and broken.
    fn check_size(&mut self) -> Result<(), EventTooLarge> {
        let Some(limit) = self.max_event_bytes else {
            return Ok(());
        };
        if self.line.len() + self.data.len() <= limit {
            return Ok(());
        }
        self.line.clear();
        self.data.clear();
        self.event_type.clear();
        Err(EventTooLarge { limit })
    }

    /// Interprets one complete line (without its line end).
    fn process_line(&mut self, line: &[u8], out: &mut Vec<Item>) {
        if line.is_empty() {
            self.dispatch(out);
            return;
        }
        if let Some(comment) = line.strip_prefix(b":") {
            let comment = comment.strip_prefix(b" ").unwrap_or(comment);
            out.push(Item::Comment(decode(comment).into_owned()));
            return;
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &b""[..]),
        };
        // Field names are compared as bytes: a name with invalid UTF-8 decodes to
        // something with U+FFFD in it, which matches no known name either.
        match field {
            b"event" => self.event_type = decode(value).into_owned(),
            b"data" => {
                self.data.push_str(&decode(value));
                self.data.push('\n');
            }
            // An id holding U+0000 is ignored; U+0000 only ever comes from a 0x00 byte.
            b"id" if !value.contains(&0) => {
                self.last_event_id_buffer = decode(value).into_owned();
            }
            b"retry" => {
                if let Some(millis) = parse_retry(value) {
                    out.push(Item::Retry(Duration::from_millis(millis)));
                }
            }
            _ => {}
        }
    }

    /// Ends the current event at a blank line.
    fn dispatch(&mut self, out: &mut Vec<Item>) {
        if self.last_event_id != self.last_event_id_buffer {
            self.last_event_id.clone_from(&self.last_event_id_buffer);
        }
        if self.data.is_empty() {
            self.event_type.clear();
            return;
        }
        if self.data.ends_with('\n') {
            self.data.pop();
        }
        let event = if self.event_type.is_empty() {
            DEFAULT_EVENT_TYPE.to_owned()
        } else {
            std::mem::take(&mut self.event_type)
        };
        out.push(Item::Event(Event {
            id: self.last_event_id.clone(),
            event,
            data: std::mem::take(&mut self.data),
        }));
    }
}

/// Decodes UTF-8, replacing invalid sequences with U+FFFD.
fn decode(bytes: &[u8]) -> Cow<'_, str> {
    String::from_utf8_lossy(bytes)
}

/// A `retry:` value in milliseconds: only ASCII digits, at least one. A value too large
/// for a `u64` is ignored like any other invalid value.
fn parse_retry(value: &[u8]) -> Option<u64> {
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(value).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(input: &[u8]) -> Vec<Item> {
        let mut parser = Parser::new();
        let mut items = Vec::new();
        parser.feed(input, &mut items).expect("no limit is set");
        items
    }

    #[test]
    fn a_partial_bom_followed_by_other_bytes_is_kept_as_text() {
        let mut parser = Parser::new();
        let mut items = Vec::new();
        parser.feed(&[0xEF, 0xBB], &mut items).unwrap();
        parser.feed(b"data: x\n\n", &mut items).unwrap();
        // EF BB followed by 'd' is an invalid sequence inside the field name.
        assert!(items.is_empty(), "{items:?}");
        assert_eq!(
            parse_all(b"\xEF\xBB\xBFdata: x\n\n"),
            vec![Item::Event(Event {
                id: String::new(),
                event: "message".into(),
                data: "x".into()
            })]
        );
    }

    #[test]
    fn id_without_dispatch_does_not_move_the_last_event_id() {
        let mut parser = Parser::with_last_event_id("3");
        let mut items = Vec::new();
        parser.feed(b"id: 4\ndata: x\n", &mut items).unwrap();
        assert_eq!(parser.last_event_id(), "3");
        parser.feed(b"\n", &mut items).unwrap();
        assert_eq!(parser.last_event_id(), "4");
    }

    #[test]
    fn resumed_parser_reports_the_carried_id() {
        let mut parser = Parser::with_last_event_id("41");
        let mut items = Vec::new();
        parser.feed(b"data: x\n\n", &mut items).unwrap();
        assert_eq!(
            items,
            vec![Item::Event(Event {
                id: "41".into(),
                event: "message".into(),
                data: "x".into()
            })]
        );
    }

    #[test]
    fn oversized_event_fails_and_drops_only_that_event() {
        let mut parser = Parser::new().with_max_event_bytes(8);
        let mut items = Vec::new();
        parser.feed(b"data: ok\n\n", &mut items).unwrap();
        assert_eq!(items.len(), 1);
        let err = parser
            .feed(b"data: 0123456789\n\n", &mut items)
            .unwrap_err();
        assert_eq!(err, EventTooLarge { limit: 8 });
        assert_eq!(items.len(), 1);
    }

    #[test]
    fn many_data_lines_count_toward_the_limit() {
        let mut parser = Parser::new().with_max_event_bytes(10);
        let mut items = Vec::new();
        let result = (0..10).try_for_each(|_| parser.feed(b"data: abc\n", &mut items));
        assert_eq!(result, Err(EventTooLarge { limit: 10 }));
    }

    #[test]
    fn retry_values_too_large_for_u64_are_ignored() {
        assert_eq!(parse_all(b"retry: 99999999999999999999999\n"), vec![]);
        assert_eq!(
            parse_all(b"retry: 000000000000000000000000250\n"),
            vec![Item::Retry(Duration::from_millis(250))]
        );
    }
}
