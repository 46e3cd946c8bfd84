//! Bytes off the replication link through the frame decoder: see
//! `state_sync::fuzzing::sync_frame` (replayed by
//! `cargo test -p state-sync --test fuzz_corpus`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| state_sync::fuzzing::sync_frame(data));
