//! Branches that prove they are ours.
//!
//! A response is matched to a client transaction by the branch of its top
//! Via (RFC 3261 §17.1.3), and a 2xx that outlived its transaction
//! (RFC 6026) matches none: whoever sends one decides what we do next.
//! So every branch Tandem makes carries a tag only a holder of the key can
//! compute: `z9hG4bK<nonce>.<tag>`, the tag being HMAC-SHA256 of the nonce
//! under a node key, cut to [`TAG_BYTES`] and written in hex. Copying our
//! sent-by is not enough to pass a forged response off as an answer to us;
//! a stranger would need one of our branches, which it only sees if it is
//! on the path.
//!
//! The key comes from the hot-standby pair's shared secret when there is a
//! pair (the standby, after a takeover, still recognises answers to what
//! the old active sent), else from the OS's random generator per process.

use std::fmt;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::layer::MAGIC_COOKIE;

type HmacSha256 = Hmac<Sha256>;

/// Bytes of the MAC kept in a branch: 80 bits, beyond guessing at any
/// packet rate (and each guess costs the guesser a packet).
pub const TAG_BYTES: usize = 10;

/// Separates the nonce from the tag; not in the nonce's alphabet.
const SEPARATOR: char = '.';

/// The key of a node's branch tags. Its `Debug` hides the key.
#[derive(Clone)]
pub struct BranchKey {
    key: [u8; 32],
    /// HMAC's keyed state (the key's inner and outer pad already
    /// compressed), cloned for each tag: half the SHA-256 compressions of
    /// keying anew, for every branch made and every response checked
    /// (issue 15: about 3 % of a call's instructions).
    keyed: HmacSha256,
}

impl PartialEq for BranchKey {
    fn eq(&self, other: &BranchKey) -> bool {
        self.key == other.key
    }
}

impl Eq for BranchKey {}

impl fmt::Debug for BranchKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BranchKey(..)")
    }
}

impl BranchKey {
    /// The key derived from a secret (the pair's shared secret): both
    /// nodes of a pair derive the same key. Derived, not the secret
    /// itself, so the frame MAC key is never used for anything else.
    pub fn from_secret(secret: &[u8]) -> BranchKey {
        let mut mac = mac(secret);
        mac.update(b"tandem sip branch key v1");
        BranchKey::new(mac.finalize().into_bytes().into())
    }

    /// A key of this process only, from the OS's random generator.
    pub fn random() -> BranchKey {
        BranchKey::new(rand::random())
    }

    fn new(key: [u8; 32]) -> BranchKey {
        BranchKey {
            key,
            keyed: mac(&key),
        }
    }

    /// The branch for `nonce` (unique per request, `[a-z0-9-]`):
    /// `z9hG4bK<nonce>.<tag>`.
    pub fn branch(&self, nonce: &str) -> String {
        let tag = self.tag(nonce);
        let mut out = String::with_capacity(MAGIC_COOKIE.len() + nonce.len() + 1 + 2 * TAG_BYTES);
        out.push_str(MAGIC_COOKIE);
        out.push_str(nonce);
        out.push(SEPARATOR);
        const HEX: &[u8; 16] = b"0123456789abcdef";
        for &b in tag.iter().take(TAG_BYTES) {
            out.push(HEX[usize::from(b >> 4)] as char);
            out.push(HEX[usize::from(b & 0xf)] as char);
        }
        out
    }

    /// Whether `branch` was made by [`Self::branch`] with this key
    /// (constant-time comparison of the tag).
    pub fn verify(&self, branch: &str) -> bool {
        let Some(rest) = branch.strip_prefix(MAGIC_COOKIE) else {
            return false;
        };
        let Some((nonce, tag_hex)) = rest.rsplit_once(SEPARATOR) else {
            return false;
        };
        let Some(tag) = decode_hex::<TAG_BYTES>(tag_hex) else {
            return false;
        };
        let mut m = self.keyed.clone();
        m.update(nonce.as_bytes());
        m.verify_truncated_left(&tag).is_ok()
    }

    fn tag(&self, nonce: &str) -> [u8; 32] {
        let mut m = self.keyed.clone();
        m.update(nonce.as_bytes());
        m.finalize().into_bytes().into()
    }
}

fn mac(key: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length: this cannot fail.
    <HmacSha256 as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!())
}

/// `N` bytes from exactly `2N` lower- or upper-case hex digits.
fn decode_hex<const N: usize>(text: &str) -> Option<[u8; N]> {
    let digits = text.as_bytes();
    if digits.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        let &[hi, lo] = pair else {
            return None;
        };
        let hi = (hi as char).to_digit(16)?;
        let lo = (lo as char).to_digit(16)?;
        *byte = (hi * 16 + lo) as u8;
    }
    Some(out)
}

#[cfg(test)]
#[path = "branch_tests.rs"]
mod tests;
