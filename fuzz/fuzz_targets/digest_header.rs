//! A digest header (credentials or challenge): see
//! `sipcore::fuzzing::digest_header` (replayed by
//! `cargo test -p sipcore --test fuzz_corpus`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| sipcore::fuzzing::digest_header(data));
