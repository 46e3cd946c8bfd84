use super::*;
use crate::frame::{self, Frame, Seal};

const SECRET: &[u8] = b"the pair's secret, 32 bytes long";

/// Runs a whole handshake; the keys of both sides.
fn handshake(
    initiator_secret: &[u8],
    responder_secret: &[u8],
) -> Result<(SessionKeys, SessionKeys), FrameError> {
    let nonce_i = nonce();
    let nonce_r = nonce();
    let got_i = read_hello(&hello(&nonce_i))?;
    let got_r = read_challenge(&challenge(&nonce_r))?;
    let proof = proof(initiator_secret, &nonce_i, &got_r);
    let (confirm, responder) = read_proof(responder_secret, &got_i, &nonce_r, &proof)?;
    let initiator = read_confirm(initiator_secret, &nonce_i, &got_r, &confirm)?;
    Ok((initiator, responder))
}

fn ack(seq: u64) -> Frame {
    Frame::Ack { seq }
}

#[test]
fn both_sides_derive_keys_that_open_each_others_frames() {
    let (i, r) = handshake(SECRET, SECRET).unwrap();
    let seal = Seal {
        session: 0,
        counter: 1,
    };
    let b = frame::encode(&i.send, seal, 3, &ack(7));
    let (got, env, _) = frame::decode(&r.recv, &b).unwrap();
    assert_eq!((got, env.epoch, env.frame), (seal, 3, ack(7)));
    let b = frame::encode(&r.send, seal, 3, &ack(8));
    assert_eq!(frame::decode(&i.recv, &b).unwrap().1.frame, ack(8));
    // The two directions have different keys: a frame does not come back
    // as one of the other direction.
    assert_eq!(frame::decode(&r.recv, &b), Err(FrameError::BadMac));
}

#[test]
fn a_side_without_the_secret_fails_either_way() {
    assert!(matches!(
        handshake(b"another secret entirely", SECRET),
        Err(FrameError::Handshake(_))
    ));
    assert!(matches!(
        handshake(SECRET, b"another secret entirely"),
        Err(FrameError::Handshake(_))
    ));
}

#[test]
fn a_recorded_proof_does_not_hold_against_a_fresh_responder_nonce() {
    let nonce_i = nonce();
    let first_r = nonce();
    let recorded = proof(SECRET, &nonce_i, &first_r);
    read_proof(SECRET, &nonce_i, &first_r, &recorded).unwrap();
    // The same hello and proof replayed: the responder's nonce is new.
    let second_r = nonce();
    assert_ne!(first_r, second_r);
    assert!(matches!(
        read_proof(SECRET, &nonce_i, &second_r, &recorded),
        Err(FrameError::Handshake(_))
    ));
}

#[test]
fn one_sides_proof_is_not_taken_as_the_others() {
    let nonce_i = nonce();
    let nonce_r = nonce();
    let (confirm, _) = read_proof(
        SECRET,
        &nonce_i,
        &nonce_r,
        &proof(SECRET, &nonce_i, &nonce_r),
    )
    .unwrap();
    // Reflect the responder's confirm back as a proof, and the other way.
    let mut reflected = confirm;
    reflected[5] = PROOF;
    assert!(read_proof(SECRET, &nonce_i, &nonce_r, &reflected).is_err());
    let mut reflected = proof(SECRET, &nonce_i, &nonce_r);
    reflected[5] = CONFIRM;
    assert!(read_confirm(SECRET, &nonce_i, &nonce_r, &reflected).is_err());
}

#[test]
fn messages_of_the_wrong_kind_or_format_are_refused() {
    let h = hello(&nonce());
    let mut wrong = h;
    wrong[5] = PROOF;
    assert!(read_hello(&wrong).is_err());
    let mut old = h;
    old[4] = 1;
    assert_eq!(read_hello(&old), Err(FrameError::Format(1)));
    let mut junk = h;
    junk[0] = b'G';
    assert_eq!(read_hello(&junk), Err(FrameError::BadMagic));
}

#[test]
fn heartbeat_keys_differ_per_session_and_secret() {
    let seal = Seal {
        session: 42,
        counter: 1,
    };
    let b = frame::encode(&heartbeat_key(SECRET, 42), seal, 1, &ack(1));
    assert!(frame::decode(&heartbeat_key(SECRET, 42), &b).is_ok());
    assert_eq!(
        frame::decode(&heartbeat_key(SECRET, 43), &b),
        Err(FrameError::BadMac)
    );
    assert_eq!(
        frame::decode(&heartbeat_key(b"not the secret at all", 42), &b),
        Err(FrameError::BadMac)
    );
    assert_eq!(frame::session(&b), Ok(42));
}
