//! The committed fuzz corpus of the `rtp_packet` target, replayed through
//! its entry point (see fuzz/README.md).

#[test]
fn rtp_packet_corpus_replays() {
    let n = testkit::replay_fuzz_corpus("rtp_packet", media_relay::fuzzing::rtp_packet);
    eprintln!("{n} rtp_packet inputs");
}
