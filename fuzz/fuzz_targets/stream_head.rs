//! Fuzzes the request-head parser of the hub's lean stream path (`http/stream_conn.rs`): the first
//! bytes every accepted connection sends reach it before any other code. It must never panic, a
//! head it takes must be a complete `GET` of a stream route, and no shorter prefix of that head
//! may be taken. Runs the parser only; no socket, no router.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    herald_hub::http::fuzz_stream_head(data);
});
