//! The pair handshake: before a replication connection carries a frame,
//! each side proves it knows the shared secret, over nonces from both
//! sides, and both derive the connection's keys. Pure functions on fixed-
//! size messages; the I/O is in [`crate::link`].
//!
//! ```text
//! initiator (standby)                     responder (active)
//!   hello:     TSYN 2 A1 nonce_i(32)  →
//!                                     ←   challenge: TSYN 2 A2 nonce_r(32)
//!   proof:     TSYN 2 A3 mac_i(32)    →
//!                                     ←   confirm:   TSYN 2 A4 mac_r(32)
//! ```
//!
//! `prk = HKDF-Extract(salt = nonce_i ‖ nonce_r, ikm = secret)`; `mac_i` and
//! `mac_r` are HMAC-SHA256 under `HKDF-Expand(prk, "auth")` of two
//! different labels, so neither side's proof can be reflected as the
//! other's; the stream keys are `HKDF-Expand(prk, "i->r" | "r->i")`. The
//! initiator proves first: a stranger connecting to the active node gets
//! a nonce and nothing it could test guesses of the secret against (the
//! standby only ever dials the configured peer address).
//! Because the responder's nonce is fresh, bytes recorded from an earlier
//! connection (a Hello, a proof) never prove anything again: a replayed
//! proof does not match, and the frames sealed under the old keys do not
//! open under the new ones. The responder accepts the connection (and
//! lets it replace a current standby) only after the initiator's proof.
//!
//! Heartbeats (datagrams, no round trip) are sealed under a key derived
//! from the secret and the sender's random per-boot session id; their
//! counters are checked by [`crate::replay`].

use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

use crate::frame::{FrameError, FrameKey, FORMAT};

pub const NONCE: usize = 32;
const MAC: usize = 32;
const PREFIX: usize = 4 + 1 + 1;
/// Every handshake message: the prefix and 32 bytes (a nonce or a MAC).
pub const MESSAGE_LEN: usize = PREFIX + 32;

const HELLO: u8 = 0xa1;
const CHALLENGE: u8 = 0xa2;
const PROOF: u8 = 0xa3;
const CONFIRM: u8 = 0xa4;

type HmacSha256 = Hmac<Sha256>;

/// One handshake message.
pub type Message = [u8; MESSAGE_LEN];

/// The two keys of one connection, as one side sees them.
#[derive(Debug)]
pub struct SessionKeys {
    pub send: FrameKey,
    pub recv: FrameKey,
}

/// A fresh random nonce (the OS's generator).
pub fn nonce() -> [u8; NONCE] {
    let mut n = [0u8; NONCE];
    rand::rngs::OsRng.fill_bytes(&mut n);
    n
}

/// A fresh random heartbeat session id (never 0, the stream's session).
pub fn session_id() -> u64 {
    loop {
        let s = rand::rngs::OsRng.next_u64();
        if s != 0 {
            return s;
        }
    }
}

fn message(kind: u8, body: &[u8; 32]) -> Message {
    let mut m = [0u8; MESSAGE_LEN];
    m[..4].copy_from_slice(b"TSYN");
    m[4] = FORMAT;
    m[5] = kind;
    m[PREFIX..].copy_from_slice(body);
    m
}

/// The 32 bytes of a handshake message of `kind`, or why it is not one.
fn payload(kind: u8, m: &Message) -> Result<[u8; 32], FrameError> {
    if &m[..4] != b"TSYN" {
        return Err(FrameError::BadMagic);
    }
    if m[4] != FORMAT {
        return Err(FrameError::Format(m[4]));
    }
    if m[5] != kind {
        return Err(FrameError::Handshake("unexpected message"));
    }
    Ok(m[PREFIX..].try_into().expect("fixed length"))
}

struct Derived {
    auth: [u8; 32],
    i_to_r: [u8; 32],
    r_to_i: [u8; 32],
}

fn derive(secret: &[u8], nonce_i: &[u8; NONCE], nonce_r: &[u8; NONCE]) -> Derived {
    let mut salt = [0u8; 2 * NONCE];
    salt[..NONCE].copy_from_slice(nonce_i);
    salt[NONCE..].copy_from_slice(nonce_r);
    let hk = Hkdf::<Sha256>::new(Some(&salt), secret);
    let mut d = Derived {
        auth: [0; 32],
        i_to_r: [0; 32],
        r_to_i: [0; 32],
    };
    for (info, out) in [
        (&b"tandem-sync v2 auth"[..], &mut d.auth),
        (b"tandem-sync v2 i->r", &mut d.i_to_r),
        (b"tandem-sync v2 r->i", &mut d.r_to_i),
    ] {
        hk.expand(info, out)
            .expect("32 bytes is a valid HKDF length");
    }
    d
}

fn mac(auth: &[u8; 32], label: &[u8]) -> HmacSha256 {
    let mut m = HmacSha256::new_from_slice(auth).expect("HMAC takes any key length");
    m.update(label);
    m
}

const INITIATOR: &[u8] = b"initiator proves the secret";
const RESPONDER: &[u8] = b"responder proves the secret";

fn proof_of(d: &Derived, label: &[u8]) -> [u8; MAC] {
    mac(&d.auth, label).finalize().into_bytes().into()
}

/// Initiator: the first message.
pub fn hello(nonce_i: &[u8; NONCE]) -> Message {
    message(HELLO, nonce_i)
}

/// Responder: the initiator's nonce from its hello.
pub fn read_hello(m: &Message) -> Result<[u8; NONCE], FrameError> {
    payload(HELLO, m)
}

/// Responder: its own nonce.
pub fn challenge(nonce_r: &[u8; NONCE]) -> Message {
    message(CHALLENGE, nonce_r)
}

/// Initiator: the responder's nonce from its challenge.
pub fn read_challenge(m: &Message) -> Result<[u8; NONCE], FrameError> {
    payload(CHALLENGE, m)
}

/// Initiator: its proof of the secret over both nonces.
pub fn proof(secret: &[u8], nonce_i: &[u8; NONCE], nonce_r: &[u8; NONCE]) -> Message {
    message(
        PROOF,
        &proof_of(&derive(secret, nonce_i, nonce_r), INITIATOR),
    )
}

/// Responder: checks the initiator's proof; if it holds, its own proof
/// (the confirm message) and the connection's keys.
pub fn read_proof(
    secret: &[u8],
    nonce_i: &[u8; NONCE],
    nonce_r: &[u8; NONCE],
    m: &Message,
) -> Result<(Message, SessionKeys), FrameError> {
    let got = payload(PROOF, m)?;
    let d = derive(secret, nonce_i, nonce_r);
    mac(&d.auth, INITIATOR)
        .verify_slice(&got)
        .map_err(|_| FrameError::Handshake("the initiator does not know the secret"))?;
    let keys = SessionKeys {
        send: FrameKey::new(&d.r_to_i),
        recv: FrameKey::new(&d.i_to_r),
    };
    Ok((message(CONFIRM, &proof_of(&d, RESPONDER)), keys))
}

/// Initiator: checks the responder's proof; the connection's keys if it
/// holds.
pub fn read_confirm(
    secret: &[u8],
    nonce_i: &[u8; NONCE],
    nonce_r: &[u8; NONCE],
    m: &Message,
) -> Result<SessionKeys, FrameError> {
    let got = payload(CONFIRM, m)?;
    let d = derive(secret, nonce_i, nonce_r);
    mac(&d.auth, RESPONDER)
        .verify_slice(&got)
        .map_err(|_| FrameError::Handshake("the responder does not know the secret"))?;
    Ok(SessionKeys {
        send: FrameKey::new(&d.i_to_r),
        recv: FrameKey::new(&d.r_to_i),
    })
}

/// The key sealing the heartbeats of one sender's boot `session`.
pub fn heartbeat_key(secret: &[u8], session: u64) -> FrameKey {
    let hk = Hkdf::<Sha256>::new(Some(&session.to_be_bytes()), secret);
    let mut k = [0u8; 32];
    hk.expand(b"tandem-sync v2 heartbeat", &mut k)
        .expect("32 bytes is a valid HKDF length");
    FrameKey::new(&k)
}

#[cfg(test)]
mod tests;
