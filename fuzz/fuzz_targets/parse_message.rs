//! SIP bytes as a datagram and as a stream: see
//! `sipcore::fuzzing::parse_message` (the committed corpus replays through
//! the same function in `cargo test -p sipcore --test fuzz_corpus`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| sipcore::fuzzing::parse_message(data));
