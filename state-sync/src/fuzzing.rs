//! Entry point of the `sync_frame` fuzz target (`fuzz/fuzz_targets/`),
//! kept here so that the committed corpus replays through exactly the same
//! code as an ordinary `cargo test` (`tests/fuzz_corpus.rs`). Not an API:
//! it panics when a property of the frame decoder does not hold.
//!
//! Frame format 2: a cleartext header (magic, format, session, counter,
//! length) and a ChaCha20-Poly1305 sealed body. A stranger cannot get past
//! the tag, so the input is also taken as an opened body's plaintext: that
//! is where the parser that matters ([`frame::parse`]) runs.

use crate::frame::{self, FrameKey, Seal};

/// The key both the raw and the sealed inputs are decoded with.
fn key() -> FrameKey {
    FrameKey::new(b"fuzzing key of sync_frame target")
}

/// Bytes off the replication link, and the same bytes as the plaintext of
/// an opened frame. Nothing may panic; a plaintext that parses serializes
/// to the same bytes, and sealed with the key it opens to the same frame.
pub fn sync_frame(data: &[u8]) {
    let key = key();
    if let Ok(total) = frame::check(data) {
        assert!(total <= data.len());
        assert!(frame::session(data).is_ok());
    }
    if let Ok((_, _, total)) = frame::decode(&key, data) {
        assert!(total <= data.len());
    }

    let Ok(envelope) = frame::parse(data) else {
        return;
    };
    let plain = frame::serialize(envelope.epoch, &envelope.frame);
    assert_eq!(&plain[..], data, "parse then serialize is the identity");
    let seal = Seal {
        session: 7,
        counter: data.len() as u64,
    };
    let sealed = frame::encode(&key, seal, envelope.epoch, &envelope.frame);
    match frame::decode(&key, &sealed) {
        Ok((opened_seal, opened, total)) => {
            assert_eq!(total, sealed.len());
            assert_eq!(opened_seal, seal);
            assert_eq!(opened, envelope);
        }
        // A body over MAX_BODY is refused by length: fine.
        Err(frame::FrameError::TooLarge(_)) => return,
        Err(e) => panic!("a frame sealed with the key fails with {e}"),
    }
    // The stream is cut correctly when the next frame follows at once.
    let mut two = sealed.to_vec();
    two.extend_from_slice(&sealed);
    assert_eq!(frame::check(&two), Ok(sealed.len()));
}
