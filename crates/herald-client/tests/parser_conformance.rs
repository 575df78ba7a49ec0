//! Conformance of the parser with the WHATWG "interpreting an event stream" rules, and
//! independence from how the stream is cut into chunks.
//!
//! Three checks, on every row of the table and on pseudo-random streams:
//! - the table's expected items (rows are built from the standard's rules and examples);
//! - a second, deliberately naive implementation that follows the standard's text
//!   literally on the whole stream at once (decode everything, split into lines, process);
//! - the same output whatever the chunking: one chunk, every two-chunk split, one byte at a
//!   time, and seeded random chunkings.

use std::time::Duration;

use herald_client::parser::{Event, Item, Parser};

/// A dispatched event: `(id, event type, data)`.
fn event(id: &str, event_type: &str, data: &str) -> Item {
    Item::Event(Event {
        id: id.to_owned(),
        event: event_type.to_owned(),
        data: data.to_owned(),
    })
}

fn message(data: &str) -> Item {
    event("", "message", data)
}

fn retry(millis: u64) -> Item {
    Item::Retry(Duration::from_millis(millis))
}

fn comment(text: &str) -> Item {
    Item::Comment(text.to_owned())
}

/// One row: what the stream is, what it must produce, and which rule it checks.
struct Row {
    rule: &'static str,
    input: &'static [u8],
    expected: Vec<Item>,
}

fn row(rule: &'static str, input: &'static [u8], expected: Vec<Item>) -> Row {
    Row {
        rule,
        input,
        expected,
    }
}

fn table() -> Vec<Row> {
    vec![
        // Dispatch and data.
        row("one event", b"data: hello\n\n", vec![message("hello")]),
        row(
            "data lines are joined with LF",
            b"data: YHOO\ndata: +2\ndata: 10\n\n",
            vec![message("YHOO\n+2\n10")],
        ),
        row(
            "the standard's stock example",
            b"data: This is the first message.\n\ndata: This is the second message, it\ndata: has two lines.\n\ndata: This is the third message.\n\n",
            vec![
                message("This is the first message."),
                message("This is the second message, it\nhas two lines."),
                message("This is the third message."),
            ],
        ),
        row(
            "the standard's id example",
            b": test stream\n\ndata: first event\nid: 1\n\ndata:second event\nid\n\ndata:  third event\n\n",
            vec![
                comment("test stream"),
                event("1", "message", "first event"),
                message("second event"),
                message(" third event"),
            ],
        ),
        row(
            "the standard's empty data example; the last event has no blank line",
            b"data\n\ndata\ndata\n\ndata:\n",
            vec![message(""), message("\n")],
        ),
        row(
            "the standard's space example",
            b"data:test\n\ndata: test\n\n",
            vec![message("test"), message("test")],
        ),
        row(
            "only one space after the colon is removed",
            b"data:  two spaces\n\n",
            vec![message(" two spaces")],
        ),
        row(
            "a tab after the colon is kept",
            b"data:\ttab\n\n",
            vec![message("\ttab")],
        ),
        row(
            "a colon in the value is kept",
            b"data: a:b: c\n\n",
            vec![message("a:b: c")],
        ),
        row(
            "a trailing space in the value is kept",
            b"data: x \n\n",
            vec![message("x ")],
        ),
        row(
            "a line with no colon is a field with an empty value",
            b"data\ndata\n\n",
            vec![message("\n")],
        ),
        row(
            "only the last LF of the data buffer is removed",
            b"data:\ndata:\ndata\n\n",
            vec![message("\n\n")],
        ),
        row(
            "an event without its blank line is dropped at the end",
            b"data: kept\n\ndata: dropped\n",
            vec![message("kept")],
        ),
        row("an unterminated line is dropped", b"data: x", vec![]),
        row("blank lines alone dispatch nothing", b"\n\n\r\n\r\r", vec![]),
        // Line endings.
        row("CRLF line ends", b"data: a\r\n\r\n", vec![message("a")]),
        row(
            "CR line ends",
            b"data: a\r\rdata: b\r\r",
            vec![message("a"), message("b")],
        ),
        row(
            "mixed line ends",
            b"data: a\r\ndata: b\rdata: c\n\r\n",
            vec![message("a\nb\nc")],
        ),
        row(
            "LF CR is two line ends",
            b"data: a\n\rdata: b\n\n",
            vec![message("a"), message("b")],
        ),
        row(
            "a CR at the very end dispatches",
            b"data: a\n\r",
            vec![message("a")],
        ),
        row(
            "CR CR LF is two line ends",
            b"data: a\r\r\ndata: b\n\n",
            vec![message("a"), message("b")],
        ),
        // Event types.
        row(
            "the event field sets the type",
            b"event: add\ndata: 73857293\n\nevent: remove\ndata: 2153\n\n",
            vec![event("", "add", "73857293"), event("", "remove", "2153")],
        ),
        row(
            "the type resets after a dispatch",
            b"event: add\ndata: 1\n\ndata: 2\n\n",
            vec![event("", "add", "1"), message("2")],
        ),
        row(
            "an event with no data is not dispatched but resets the type",
            b"event: add\n\ndata: 2\n\n",
            vec![message("2")],
        ),
        row(
            "an empty event field means message",
            b"event:\ndata: x\n\n",
            vec![message("x")],
        ),
        row(
            "the last event field wins",
            b"event: a\nevent: b\ndata: x\n\n",
            vec![event("", "b", "x")],
        ),
        // Ids.
        row(
            "the id persists across events",
            b"id: 7\ndata: a\n\ndata: b\n\n",
            vec![event("7", "message", "a"), event("7", "message", "b")],
        ),
        row(
            "an empty id resets it",
            b"id: 7\ndata: a\n\nid:\ndata: b\n\n",
            vec![event("7", "message", "a"), message("b")],
        ),
        row(
            "an id containing NUL is ignored",
            b"id: 1\ndata: a\n\nid: 2\x003\ndata: b\n\n",
            vec![event("1", "message", "a"), event("1", "message", "b")],
        ),
        row(
            "an id after the data still counts for that event",
            b"data: a\nid: 9\n\n",
            vec![event("9", "message", "a")],
        ),
        row(
            "an id on an event with no data is carried to the next one",
            b"id: 5\n\ndata: a\n\n",
            vec![event("5", "message", "a")],
        ),
        row(
            "an id may hold spaces and colons",
            b"id:  a: b\ndata: x\n\n",
            vec![event(" a: b", "message", "x")],
        ),
        // Retry.
        row("retry in milliseconds", b"retry: 1500\n", vec![retry(1500)]),
        row("retry with no space", b"retry:0\n", vec![retry(0)]),
        row(
            "retry with leading zeros",
            b"retry: 0042\n",
            vec![retry(42)],
        ),
        row("retry with a letter is ignored", b"retry: 15x\n", vec![]),
        row("a negative retry is ignored", b"retry: -1\n", vec![]),
        row("a fractional retry is ignored", b"retry: 1.5\n", vec![]),
        row(
            "retry with an extra space is ignored",
            b"retry:  1500\n",
            vec![],
        ),
        row("an empty retry is ignored", b"retry\nretry:\n", vec![]),
        row(
            "retry takes effect without a dispatch and alongside data",
            b"data: a\nretry: 10\n\n",
            vec![retry(10), message("a")],
        ),
        // Unknown fields and names.
        row(
            "unknown fields are ignored",
            b"foo: bar\ndata: a\nbaz\n\n",
            vec![message("a")],
        ),
        row(
            "field names are case-sensitive",
            b"Data: a\nDATA: b\n\n",
            vec![],
        ),
        row(
            "a space before the colon is part of the name",
            b"data : a\n\n",
            vec![],
        ),
        // Comments.
        row(
            "comments are reported without colon and one space",
            b": ping\n:\n::x\n:  two\n",
            vec![comment("ping"), comment(""), comment(":x"), comment(" two")],
        ),
        row(
            "a comment inside an event does not end it",
            b"data: a\n: note\ndata: b\n\n",
            vec![comment("note"), message("a\nb")],
        ),
        // Byte order mark.
        row(
            "a leading BOM is skipped",
            b"\xEF\xBB\xBFdata: a\n\n",
            vec![message("a")],
        ),
        row(
            "only one leading BOM is skipped",
            b"\xEF\xBB\xBF\xEF\xBB\xBFdata: a\n\ndata: b\n\n",
            vec![message("b")],
        ),
        row(
            "a BOM later in the stream is text",
            b"data: a\n\n\xEF\xBB\xBFdata: b\n\ndata:\xEF\xBB\xBF\n\n",
            vec![message("a"), message("\u{FEFF}")],
        ),
        row(
            "a partial BOM at the start is not skipped",
            b"\xEF\xBBdata: a\n\ndata: b\n\n",
            vec![message("b")],
        ),
        // UTF-8.
        row(
            "multibyte characters pass through",
            "data: héllo → 世界 🎉\n\n".as_bytes(),
            vec![message("héllo → 世界 🎉")],
        ),
        row(
            "an invalid byte becomes U+FFFD",
            b"data: a\xFFb\n\n",
            vec![message("a\u{FFFD}b")],
        ),
        row(
            "a truncated sequence is one U+FFFD",
            b"data: \xE2\x82\n\n",
            vec![message("\u{FFFD}")],
        ),
        row(
            "a truncated sequence before ASCII is one U+FFFD",
            b"data: \xF0\x9F\x8Ex\n\n",
            vec![message("\u{FFFD}x")],
        ),
        row(
            "an overlong encoding is one U+FFFD per byte",
            b"data: \xC0\xAF\n\n",
            vec![message("\u{FFFD}\u{FFFD}")],
        ),
        row(
            "an encoded surrogate is replaced",
            b"data: \xED\xA0\x80\n\n",
            vec![message("\u{FFFD}\u{FFFD}\u{FFFD}")],
        ),
        row(
            "a lone continuation byte at the end of a line is replaced",
            b"data: \x80\r\n\r\n",
            vec![message("\u{FFFD}")],
        ),
        row(
            "invalid UTF-8 in a field name makes it unknown",
            b"d\xFFta: a\ndata: b\n\n",
            vec![message("b")],
        ),
        row(
            "NUL in data is kept",
            b"data: a\x00b\n\n",
            vec![message("a\u{0}b")],
        ),
    ]
}

/// Feeds `chunks` to a fresh parser and returns everything it produced.
fn parse_chunks<'a>(chunks: impl IntoIterator<Item = &'a [u8]>) -> Vec<Item> {
    let mut parser = Parser::new();
    let mut items = Vec::new();
    for chunk in chunks {
        parser.feed(chunk, &mut items).expect("no limit is set");
    }
    items
}

/// A literal reading of the standard on the whole stream at once, sharing no code with
/// the parser under test.
fn reference_parse(input: &[u8]) -> Vec<Item> {
    let decoded = String::from_utf8_lossy(input);
    let text = decoded.strip_prefix('\u{FEFF}').unwrap_or(&decoded);

    // Split into lines; the text after the last line end is an incomplete line.
    let mut lines = Vec::new();
    let mut current = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' => {
                if chars.peek() == Some(&'\n') {
                    chars.next();
                }
                lines.push(std::mem::take(&mut current));
            }
            '\n' => lines.push(std::mem::take(&mut current)),
            other => current.push(other),
        }
    }

    let mut items = Vec::new();
    let mut data = String::new();
    let mut event_type = String::new();
    let mut last_event_id_buffer = String::new();
    for line in lines {
        if line.is_empty() {
            let last_event_id = last_event_id_buffer.clone();
            if data.is_empty() {
                event_type.clear();
                continue;
            }
            if data.ends_with('\n') {
                data.pop();
            }
            let event_type_or_default = if event_type.is_empty() {
                "message".to_owned()
            } else {
                event_type.clone()
            };
            items.push(Item::Event(Event {
                id: last_event_id,
                event: event_type_or_default,
                data: data.clone(),
            }));
            data.clear();
            event_type.clear();
        } else if let Some(text) = line.strip_prefix(':') {
            items.push(Item::Comment(
                text.strip_prefix(' ').unwrap_or(text).to_owned(),
            ));
        } else {
            let (field, value) = match line.find(':') {
                Some(colon) => {
                    let value = &line[colon + 1..];
                    (&line[..colon], value.strip_prefix(' ').unwrap_or(value))
                }
                None => (line.as_str(), ""),
            };
            match field {
                "event" => event_type = value.to_owned(),
                "data" => {
                    data.push_str(value);
                    data.push('\n');
                }
                "id" if !value.contains('\u{0}') => last_event_id_buffer = value.to_owned(),
                "retry" if !value.is_empty() && value.chars().all(|c| c.is_ascii_digit()) => {
                    if let Ok(millis) = value.parse() {
                        items.push(Item::Retry(Duration::from_millis(millis)));
                    }
                }
                _ => {}
            }
        }
    }
    items
}

/// Every chunking this suite tries for one input, each checked against `expected`.
fn assert_chunking_independent(input: &[u8], expected: &[Item], rng: &mut fastrand::Rng) {
    let whole = parse_chunks([input]);
    assert_eq!(
        whole,
        expected,
        "one chunk: {:?}",
        String::from_utf8_lossy(input)
    );

    let bytewise = parse_chunks(input.chunks(1));
    assert_eq!(bytewise, expected, "one byte at a time: {input:?}");

    for cut in 0..=input.len() {
        let (head, tail) = input.split_at(cut);
        let split = parse_chunks([head, &[][..], tail]);
        assert_eq!(split, expected, "split at {cut}: {input:?}");
    }

    for _ in 0..20 {
        let mut chunks = Vec::new();
        let mut rest = input;
        while !rest.is_empty() {
            let size = rng.usize(0..=rest.len().min(7));
            let (chunk, tail) = rest.split_at(size);
            chunks.push(chunk);
            rest = tail;
        }
        assert_eq!(
            parse_chunks(chunks.iter().copied()),
            expected,
            "random chunks {chunks:?}"
        );
    }
}

#[test]
fn table_rows_match_the_standard() {
    for row in table() {
        assert_eq!(
            parse_chunks([row.input]),
            row.expected,
            "rule: {}",
            row.rule
        );
    }
}

#[test]
fn reference_implementation_agrees_with_the_table() {
    for row in table() {
        assert_eq!(
            reference_parse(row.input),
            row.expected,
            "rule: {}",
            row.rule
        );
    }
}

#[test]
fn table_rows_do_not_depend_on_chunking() {
    let mut rng = fastrand::Rng::with_seed(0x5EED_0001);
    for row in table() {
        assert_chunking_independent(row.input, &row.expected, &mut rng);
    }
}

/// Pieces random streams are made of: field names, separators, line ends of every kind,
/// multibyte and invalid UTF-8, BOM bytes and NUL.
const PIECES: &[&[u8]] = &[
    b"data",
    b"event",
    b"id",
    b"retry",
    b"dat",
    b"foo",
    b":",
    b": ",
    b" ",
    b"x",
    b"hello",
    b"12",
    b"0",
    b"\r",
    b"\n",
    b"\r\n",
    b"\n\n",
    b"\r\r",
    b"\xC3\xA9",
    b"\xE4\xB8\x96",
    b"\xF0\x9F\x8E\x89",
    b"\xFF",
    b"\xC3",
    b"\xE4\xB8",
    b"\x80",
    b"\xEF\xBB\xBF",
    b"\xEF",
    b"\x00",
    b"\t",
];

/// A pseudo-random stream, biased toward well-formed lines so that events do happen.
fn random_stream(rng: &mut fastrand::Rng) -> Vec<u8> {
    let mut stream = Vec::new();
    if rng.u8(..) < 40 {
        stream.extend_from_slice(b"\xEF\xBB\xBF");
    }
    for _ in 0..rng.usize(0..40) {
        if rng.bool() {
            let field: &[u8] =
                [b"data: ".as_slice(), b"id:", b"event:", b"retry: ", b":"][rng.usize(0..5)];
            stream.extend_from_slice(field);
        }
        for _ in 0..rng.usize(0..4) {
            stream.extend_from_slice(PIECES[rng.usize(0..PIECES.len())]);
        }
        let line_end: &[u8] =
            [b"\n".as_slice(), b"\r", b"\r\n", b"\n\n", b"\r\n\r\n"][rng.usize(0..5)];
        stream.extend_from_slice(line_end);
    }
    stream
}

#[test]
fn random_streams_match_the_reference_in_any_chunking() {
    let mut rng = fastrand::Rng::with_seed(0x5EED_0002);
    let mut events_seen = 0;
    for _ in 0..400 {
        let stream = random_stream(&mut rng);
        let expected = reference_parse(&stream);
        events_seen += expected
            .iter()
            .filter(|item| matches!(item, Item::Event(_)))
            .count();
        assert_chunking_independent(&stream, &expected, &mut rng);
    }
    assert!(
        events_seen > 400,
        "the generator should produce events, saw {events_seen}"
    );
}

#[test]
fn last_event_id_is_the_same_in_any_chunking() {
    let mut rng = fastrand::Rng::with_seed(0x5EED_0003);
    for _ in 0..200 {
        let stream = random_stream(&mut rng);
        let mut whole = Parser::new();
        whole.feed(&stream, &mut Vec::new()).unwrap();
        let mut bytewise = Parser::new();
        for byte in stream.chunks(1) {
            bytewise.feed(byte, &mut Vec::new()).unwrap();
        }
        assert_eq!(whole.last_event_id(), bytewise.last_event_id());
    }
}
