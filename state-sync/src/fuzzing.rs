//! Entry point of the `sync_frame` fuzz target (`fuzz/fuzz_targets/`),
//! kept here so that the committed corpus replays through exactly the same
//! code as an ordinary `cargo test` (`tests/fuzz_corpus.rs`). Not an API:
//! it panics when a property of the frame decoder does not hold.
//!
//! Written against the decoder of frame format 1 (HMAC-SHA256 envelope);
//! when the envelope changes, only [`seal`] follows it.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::frame::{self, FrameError, FORMAT, MAX_BODY};

/// The secret both the raw and the sealed inputs are decoded with.
pub const SECRET: &[u8] = b"fuzzing secret of the sync_frame target";

/// Bytes off the replication link. Decoded as they are (a stranger, who
/// cannot get past the MAC) and, so that the fuzzer reaches the body
/// parser, also sealed as the peer would: the first byte is the frame type,
/// the next 8 the epoch, the rest the body. Nothing may panic; a sealed
/// frame is whole and authentic, and a frame that decodes encodes to the
/// same bytes.
pub fn sync_frame(data: &[u8]) {
    if let Ok(total) = frame::check(data) {
        assert!(total <= data.len());
    }
    if let Ok((_, total)) = frame::decode(SECRET, data) {
        assert!(total <= data.len());
    }

    let Some((&kind, rest)) = data.split_first() else {
        return;
    };
    let Some((epoch, body)) = rest.split_first_chunk::<8>() else {
        return;
    };
    if body.len() > MAX_BODY {
        return;
    }
    let sealed = seal(kind, *epoch, body);
    match frame::decode(SECRET, &sealed) {
        Ok((envelope, total)) => {
            assert_eq!(total, sealed.len());
            assert_eq!(envelope.epoch, u64::from_be_bytes(*epoch));
            let again = frame::encode(SECRET, envelope.epoch, &envelope.frame);
            assert_eq!(
                &again[..],
                &sealed[..],
                "decode then encode is the identity"
            );
        }
        Err(FrameError::Malformed(_)) => {}
        Err(e) => panic!("a sealed frame fails with {e}"),
    }
    // The stream is cut correctly when the next frame follows at once.
    let mut two = sealed.clone();
    two.extend_from_slice(&sealed);
    assert_eq!(frame::check(&two), Ok(sealed.len()));
}

/// A format 1 frame of type `kind` as a peer knowing [`SECRET`] sends it.
fn seal(kind: u8, epoch: [u8; 8], body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(18 + body.len() + 32);
    out.extend_from_slice(b"TSYN");
    out.push(FORMAT);
    out.push(kind);
    out.extend_from_slice(&epoch);
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(body);
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET).expect("HMAC takes any key length");
    mac.update(&out);
    out.extend_from_slice(&mac.finalize().into_bytes());
    out
}
