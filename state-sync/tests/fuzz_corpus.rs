//! The committed fuzz corpus of the `sync_frame` target, replayed through
//! its entry point (see fuzz/README.md).

#[test]
fn sync_frame_corpus_replays() {
    let n = testkit::replay_fuzz_corpus("sync_frame", state_sync::fuzzing::sync_frame);
    eprintln!("{n} sync_frame inputs");
}
