//! One datagram through the relay's RTP/RTCP handling: see
//! `media_relay::fuzzing::rtp_packet` (replayed by
//! `cargo test -p media-relay --test fuzz_corpus`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| media_relay::fuzzing::rtp_packet(data));
