//! An SDP body through the proxy's rewrite: see
//! `sipcore::fuzzing::sdp_rewrite` (replayed by
//! `cargo test -p sipcore --test fuzz_corpus`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| sipcore::fuzzing::sdp_rewrite(data));
