//! HTTP Digest authentication for SIP (RFC 3261 §22, RFC 7616, RFC 8760):
//! MD5, SHA-256 and SHA-512-256 with qop=auth, both sides (the registrar
//! challenges and verifies; test UACs answer challenges).
//!
//! Nonces need no server state: a nonce is the time it was issued plus an
//! HMAC over that time and the realm with a node key ([`NonceKey`]); the
//! pair derives the same key from its shared secret, so a takeover does not
//! re-challenge every phone. A nonce older than its lifetime is answered
//! with `stale=true`. Replays of one nonce are caught by a bounded local
//! cache of nonce counts ([`NonceCounts`]), not replicated.
//!
//! SKELETON: signatures agreed between the registrar and its users; bodies
//! are being written.
#![allow(dead_code, unused_variables)]

/// A digest algorithm (RFC 7616 §3.3, RFC 8760 §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Algorithm {
    Md5,
    Sha256,
    Sha512_256,
}

impl Algorithm {
    /// Every algorithm, strongest first.
    pub const ALL: [Algorithm; 3] = [Algorithm::Sha512_256, Algorithm::Sha256, Algorithm::Md5];

    /// `MD5`, `SHA-256`, `SHA-512-256` (case-insensitive); the `-sess`
    /// variants are not supported (None).
    pub fn parse(s: &str) -> Option<Algorithm> {
        todo!()
    }

    pub fn as_str(self) -> &'static str {
        todo!()
    }

    /// The hash of `data` as lower-case hex.
    pub fn hex_digest(self, data: &[u8]) -> String {
        todo!()
    }

    /// HA1 = H(user:realm:password), lower-case hex.
    pub fn ha1(self, user: &str, realm: &str, password: &str) -> String {
        todo!()
    }
}

/// What a nonce turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceCheck {
    /// Ours and fresh; issued at this Unix time (seconds).
    Valid { issued: u64 },
    /// Ours but older than its lifetime: challenge again with stale=true.
    Stale,
    /// Not made with our key (or malformed).
    Invalid,
}

/// The key of stateless nonces.
#[derive(Clone)]
pub struct NonceKey {
    key: [u8; 32],
}

impl NonceKey {
    /// Derived (domain-separated) from a secret, e.g. the pair's.
    pub fn from_secret(secret: &[u8]) -> NonceKey {
        todo!()
    }

    /// A nonce issued at `now_s` (Unix seconds) for `realm`.
    pub fn issue(&self, now_s: u64, realm: &str) -> String {
        todo!()
    }

    /// Checks a nonce at `now_s` with lifetime `max_age_s`.
    pub fn check(&self, nonce: &str, now_s: u64, realm: &str, max_age_s: u64) -> NonceCheck {
        todo!()
    }
}

/// A challenge (the value of WWW-Authenticate or Proxy-Authenticate).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub realm: String,
    pub nonce: String,
    pub algorithm: Algorithm,
    pub opaque: Option<String>,
    pub stale: bool,
    /// qop="auth" offered.
    pub qop_auth: bool,
}

impl Challenge {
    /// `Digest realm="…", nonce="…", algorithm=…, qop="auth"[, stale=true]`.
    pub fn to_header_value(&self) -> String {
        todo!()
    }

    /// Parses a header value (client side); bounded, never panics.
    pub fn parse(value: &str) -> Result<Challenge, DigestError> {
        todo!()
    }
}

/// The parsed Authorization / Proxy-Authorization header (owned).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub realm: String,
    pub nonce: String,
    pub uri: String,
    pub response: String,
    /// MD5 when the header names none (RFC 7616 §3.4).
    pub algorithm: Algorithm,
    pub cnonce: Option<String>,
    /// The nonce count (hex in the header).
    pub nc: Option<u32>,
    pub qop: Option<String>,
    pub opaque: Option<String>,
}

impl Credentials {
    /// Parses a `Digest …` header value; bounded, never panics.
    pub fn parse(value: &str) -> Result<Credentials, DigestError> {
        todo!()
    }

    /// Whether `response` is right for `method` and `ha1` (compared in
    /// constant time). Accepts qop=auth, and no qop (RFC 2069 clients).
    pub fn verify(&self, method: &str, ha1: &str) -> bool {
        todo!()
    }
}

/// The expected `response` value (RFC 7616 §3.4.1).
#[allow(clippy::too_many_arguments)]
pub fn response(
    algorithm: Algorithm,
    ha1: &str,
    nonce: &str,
    nc: Option<u32>,
    cnonce: Option<&str>,
    qop: Option<&str>,
    method: &str,
    uri: &str,
) -> String {
    todo!()
}

/// Client side: the Authorization value answering `challenge`.
pub fn authorization(
    challenge: &Challenge,
    user: &str,
    password: &str,
    method: &str,
    uri: &str,
    cnonce: &str,
    nc: u32,
) -> String {
    todo!()
}

/// The highest nonce count seen per nonce, in a table of fixed size (least
/// recently used evicted): a replayed (nonce, nc) is refused.
pub struct NonceCounts {
    seen: lru::LruCache<String, u32>,
}

impl NonceCounts {
    pub fn new(capacity: usize) -> NonceCounts {
        todo!()
    }

    /// Records `nc` for `nonce`; false when it is not higher than the
    /// highest seen (a replay).
    pub fn check_and_record(&mut self, nonce: &str, nc: u32) -> bool {
        todo!()
    }
}

/// Why a digest header could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    #[error("not a Digest header")]
    NotDigest,
    #[error("missing parameter `{0}`")]
    Missing(&'static str),
    #[error("bad parameter `{0}`")]
    Bad(&'static str),
    #[error("unsupported algorithm")]
    Algorithm,
    #[error("header too long")]
    TooLong,
}
