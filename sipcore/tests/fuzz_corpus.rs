//! The committed fuzz corpora of sipcore's targets, replayed through the
//! targets' own entry points (see fuzz/README.md).

#[test]
fn parse_message_corpus_replays() {
    let n = testkit::replay_fuzz_corpus("parse_message", sipcore::fuzzing::parse_message);
    eprintln!("{n} parse_message inputs");
}

#[test]
fn sdp_rewrite_corpus_replays() {
    let n = testkit::replay_fuzz_corpus("sdp_rewrite", sipcore::fuzzing::sdp_rewrite);
    eprintln!("{n} sdp_rewrite inputs");
}

#[test]
fn digest_header_corpus_replays() {
    let n = testkit::replay_fuzz_corpus("digest_header", sipcore::fuzzing::digest_header);
    eprintln!("{n} digest_header inputs");
}
