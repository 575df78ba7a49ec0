//! Fuzzes the `text/event-stream` parser: it must never panic, and cutting the same
//! stream into different chunks must never change what it produces.
//!
//! Input layout: byte 0 says how many chunk-size bytes follow (1 to 8), byte 1 sets an
//! event size limit, then come the chunk sizes, and the rest is the stream. This target
//! only checks the parser; it never touches the network.

#![no_main]

use herald_client::parser::{EventTooLarge, Item, Parser};
use libfuzzer_sys::fuzz_target;

/// What one run of the parser produced.
#[derive(Debug, PartialEq)]
struct Outcome {
    items: Vec<Item>,
    last_event_id: String,
    /// The limit error, if the stream broke it.
    too_large: Option<EventTooLarge>,
}

/// Feeds `chunks` to `parser`, stopping at the first error as a client would.
fn run<'a>(mut parser: Parser, chunks: impl IntoIterator<Item = &'a [u8]>) -> Outcome {
    let mut items = Vec::new();
    let mut too_large = None;
    for chunk in chunks {
        if let Err(error) = parser.feed(chunk, &mut items) {
            too_large = Some(error);
            break;
        }
    }
    Outcome {
        items,
        last_event_id: parser.last_event_id().to_owned(),
        too_large,
    }
}

/// Cuts `stream` with sizes taken in turn from `sizes`: the low 4 bits plus one give the
/// length, and a set high bit adds an empty chunk first.
fn cut<'a>(stream: &'a [u8], sizes: &[u8]) -> Vec<&'a [u8]> {
    let mut chunks = Vec::new();
    let mut rest = stream;
    for &size in sizes.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        if size & 0x80 != 0 {
            chunks.push(&rest[..0]);
        }
        let (chunk, tail) = rest.split_at(rest.len().min(usize::from(size & 0x0F) + 1));
        chunks.push(chunk);
        rest = tail;
    }
    chunks
}

/// Properties every item must have, whatever the input.
fn check_items(items: &[Item]) {
    for item in items {
        match item {
            Item::Event(event) => {
                assert!(!event.event.is_empty(), "an event always has a type");
                for text in [&event.id, &event.event, &event.data] {
                    assert!(!text.contains('\r'), "no CR survives line splitting");
                }
                assert!(!event.id.contains('\n') && !event.event.contains('\n'));
                assert!(!event.id.contains('\0'), "ids with NUL are ignored");
            }
            Item::Comment(text) => assert!(!text.contains(['\r', '\n'])),
            Item::Retry(_) => {}
        }
    }
}

fuzz_target!(|input: &[u8]| {
    let [count, limit, rest @ ..] = input else {
        return;
    };
    let size_count = usize::from(count % 8) + 1;
    if rest.len() < size_count {
        return;
    }
    let (sizes, stream) = rest.split_at(size_count);

    let whole = run(Parser::new(), [stream]);
    assert!(whole.too_large.is_none(), "no limit was set");
    check_items(&whole.items);
    assert_eq!(run(Parser::new(), cut(stream, sizes)), whole);
    assert_eq!(run(Parser::new(), stream.chunks(1)), whole);

    let max_bytes = usize::from(*limit) * 4;
    let limited = || Parser::new().with_max_event_bytes(max_bytes);
    let limited_whole = run(limited(), [stream]);
    assert_eq!(run(limited(), cut(stream, sizes)), limited_whole);
    assert_eq!(run(limited(), stream.chunks(1)), limited_whole);
});
