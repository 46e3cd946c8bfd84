//! HTTP Digest authentication for SIP (RFC 3261 §22, RFC 7616, RFC 8760):
//! MD5, SHA-256 and SHA-512-256 with qop=auth, both sides (the registrar
//! challenges and verifies; test UACs answer challenges).
//!
//! Nonces need no server state: a nonce is the time it was issued and a
//! random salt plus an HMAC over them and the realm with a node key
//! ([`NonceKey`]); the
//! pair derives the same key from its shared secret, so a takeover does not
//! re-challenge every phone. A nonce older than its lifetime is answered
//! with `stale=true`. Replays of one nonce are caught by a bounded local
//! cache of nonce counts ([`NonceCounts`]), not replicated.
//!
//! Header values are parsed by one bounded parser ([`MAX_VALUE_LEN`],
//! [`MAX_PARAMS`]): quoted strings with `\\` escapes, bare tokens,
//! parameter names in any case, each parameter at most once. Nothing in it
//! can panic on input from the network.

use std::fmt::Write as _;
use std::num::NonZeroUsize;

use hmac::{Hmac, Mac};
use sha2::Digest as _;
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<sha2::Sha256>;

/// A header value longer than this is refused ([`DigestError::TooLong`]):
/// real ones are a few hundred bytes.
pub const MAX_VALUE_LEN: usize = 4096;
/// A header value with more parameters than this is refused
/// ([`DigestError::TooLong`]); RFC 7616 defines a dozen.
pub const MAX_PARAMS: usize = 32;
/// How far in the future a nonce's issue time may be (the pair's clocks may
/// differ a little) before the nonce is taken as forged.
pub const NONCE_CLOCK_SKEW_S: u64 = 5;

/// Bytes of HMAC in a nonce: 128 bits, the usual floor for a MAC tag.
const NONCE_MAC_LEN: usize = 16;
/// Random bytes in a nonce, so that two challenges in one second differ
/// (two phones answering one nonce with nc=1 would look like a replay).
const NONCE_SALT_LEN: usize = 8;
/// A nonce is 16 hex digits of issue time, 16 of salt, then 32 of MAC.
const NONCE_LEN: usize = 16 + 2 * NONCE_SALT_LEN + 2 * NONCE_MAC_LEN;
/// The label that separates the nonce key from every other use of the
/// secret it is derived from (e.g. the pair link's keys).
const NONCE_KEY_LABEL: &[u8] = b"tandem digest nonce v1";

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
        Algorithm::ALL
            .into_iter()
            .find(|a| a.as_str().eq_ignore_ascii_case(s))
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Sha256 => "SHA-256",
            Algorithm::Sha512_256 => "SHA-512-256",
        }
    }

    /// Length of a hash of this algorithm in hex digits (an HA1, a
    /// `response`).
    pub fn hex_len(self) -> usize {
        match self {
            Algorithm::Md5 => 32,
            Algorithm::Sha256 | Algorithm::Sha512_256 => 64,
        }
    }

    /// The hash of `data` as lower-case hex.
    pub fn hex_digest(self, data: &[u8]) -> String {
        match self {
            Algorithm::Md5 => hex(&md5::Md5::digest(data)),
            Algorithm::Sha256 => hex(&sha2::Sha256::digest(data)),
            // SHA-512/256 of FIPS 180-4 (its own initial values), which is
            // what RFC 7616 means by SHA-512-256, not a cut SHA-512.
            Algorithm::Sha512_256 => hex(&sha2::Sha512_256::digest(data)),
        }
    }

    /// HA1 = H(user:realm:password), lower-case hex.
    pub fn ha1(self, user: &str, realm: &str, password: &str) -> String {
        self.hex_digest(format!("{user}:{realm}:{password}").as_bytes())
    }
}

/// Lower-case hex of `bytes`.
fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        // Writing to a String cannot fail.
        let _ = write!(out, "{b:02x}");
    }
    out
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

impl std::fmt::Debug for NonceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key.
        f.write_str("NonceKey(..)")
    }
}

impl NonceKey {
    /// Derived (domain-separated) from a secret, e.g. the pair's:
    /// HMAC-SHA256(secret, "tandem digest nonce v1"), so the nonce key is
    /// unrelated to any other key made from the same secret.
    pub fn from_secret(secret: &[u8]) -> NonceKey {
        let mut mac = new_hmac(secret);
        mac.update(NONCE_KEY_LABEL);
        NonceKey {
            key: mac.finalize().into_bytes().into(),
        }
    }

    /// A nonce issued at `now_s` (Unix seconds) for `realm`: 16 hex digits
    /// of the time, 16 of random salt, then 32 of HMAC-SHA256(key, time ||
    /// salt || realm) cut to 128 bits. Hex only: safe unquoted, in a URL,
    /// anywhere.
    pub fn issue(&self, now_s: u64, realm: &str) -> String {
        let salt: [u8; NONCE_SALT_LEN] = rand::random();
        let mut nonce = format!("{now_s:016x}");
        nonce.push_str(&hex(&salt));
        nonce.push_str(&hex(&self.mac(now_s, &salt, realm)[..NONCE_MAC_LEN]));
        nonce
    }

    /// Checks a nonce at `now_s` with lifetime `max_age_s`.
    pub fn check(&self, nonce: &str, now_s: u64, realm: &str, max_age_s: u64) -> NonceCheck {
        let Some((issued, salt, tag)) = split_nonce(nonce) else {
            return NonceCheck::Invalid;
        };
        let expected = self.mac(issued, &salt, realm);
        if !bool::from(expected[..NONCE_MAC_LEN].ct_eq(&tag)) {
            return NonceCheck::Invalid;
        }
        if issued > now_s.saturating_add(NONCE_CLOCK_SKEW_S) {
            // Made with our key but for a time to come: only a clock gone
            // wrong or a key leaked does that; trust it no more than a
            // forgery.
            return NonceCheck::Invalid;
        }
        if now_s.saturating_sub(issued) > max_age_s {
            return NonceCheck::Stale;
        }
        NonceCheck::Valid { issued }
    }

    fn mac(&self, issued: u64, salt: &[u8; NONCE_SALT_LEN], realm: &str) -> [u8; 32] {
        let mut mac = new_hmac(&self.key);
        mac.update(&issued.to_be_bytes());
        mac.update(salt);
        mac.update(realm.as_bytes());
        mac.finalize().into_bytes().into()
    }
}

fn new_hmac(key: &[u8]) -> HmacSha256 {
    // HMAC takes a key of any length: `new_from_slice` cannot fail for it.
    match HmacSha256::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC accepts keys of every length"),
    }
}

/// A nonce's issue time, salt and MAC tag, if it has our shape
/// (lower-case hex of the right length).
fn split_nonce(nonce: &str) -> Option<(u64, [u8; NONCE_SALT_LEN], [u8; NONCE_MAC_LEN])> {
    let bytes = nonce.as_bytes();
    if bytes.len() != NONCE_LEN {
        return None;
    }
    let mut issued = 0u64;
    for &b in &bytes[..16] {
        issued = (issued << 4) | u64::from(hex_value(b)?);
    }
    let (salt_hex, tag_hex) = bytes[16..].split_at(2 * NONCE_SALT_LEN);
    let mut salt = [0u8; NONCE_SALT_LEN];
    unhex_into(salt_hex, &mut salt)?;
    let mut tag = [0u8; NONCE_MAC_LEN];
    unhex_into(tag_hex, &mut tag)?;
    Some((issued, salt, tag))
}

/// Decodes lower-case hex `digits` (twice `out`'s length) into `out`.
fn unhex_into(digits: &[u8], out: &mut [u8]) -> Option<()> {
    for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        *byte = (hex_value(pair[0])? << 4) | hex_value(pair[1])?;
    }
    Some(())
}

/// The value of a lower-case hex digit.
fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
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
    /// `Digest realm="…", nonce="…", algorithm=…, qop="auth"[, opaque="…"][, stale=true]`.
    pub fn to_header_value(&self) -> String {
        let mut out = String::with_capacity(128);
        out.push_str("Digest realm=");
        push_quoted(&mut out, &self.realm);
        out.push_str(", nonce=");
        push_quoted(&mut out, &self.nonce);
        out.push_str(", algorithm=");
        out.push_str(self.algorithm.as_str());
        if self.qop_auth {
            out.push_str(", qop=\"auth\"");
        }
        if let Some(opaque) = &self.opaque {
            out.push_str(", opaque=");
            push_quoted(&mut out, opaque);
        }
        if self.stale {
            out.push_str(", stale=true");
        }
        out
    }

    /// Parses a header value (client side); bounded, never panics.
    pub fn parse(value: &str) -> Result<Challenge, DigestError> {
        let params = Params::parse(value)?;
        let algorithm = match params.get("algorithm") {
            None => Algorithm::Md5,
            Some(a) => Algorithm::parse(a).ok_or(DigestError::Algorithm)?,
        };
        // qop is a quoted list ("auth, auth-int"); some servers send it
        // as a bare token.
        let qop_auth = params.get("qop").is_some_and(|q| {
            q.split(',')
                .any(|option| option.trim().eq_ignore_ascii_case("auth"))
        });
        Ok(Challenge {
            realm: params.required("realm")?.to_owned(),
            nonce: params.required("nonce")?.to_owned(),
            algorithm,
            opaque: params.get("opaque").map(str::to_owned),
            stale: params
                .get("stale")
                .is_some_and(|s| s.eq_ignore_ascii_case("true")),
            qop_auth,
        })
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
    ///
    /// With a `qop`, `nc` and `cnonce` are required (RFC 7616 §3.4).
    /// `userhash=true` is refused: we never offer it, so a client sending
    /// it is not answering our challenge.
    pub fn parse(value: &str) -> Result<Credentials, DigestError> {
        let params = Params::parse(value)?;
        let algorithm = match params.get("algorithm") {
            None => Algorithm::Md5,
            Some(a) => Algorithm::parse(a).ok_or(DigestError::Algorithm)?,
        };
        if params
            .get("userhash")
            .is_some_and(|u| u.eq_ignore_ascii_case("true"))
        {
            return Err(DigestError::Bad("userhash"));
        }
        let qop = params.get("qop").map(str::to_owned);
        let nc = match params.get("nc") {
            None => None,
            Some(nc) => Some(parse_nc(nc).ok_or(DigestError::Bad("nc"))?),
        };
        let cnonce = params.get("cnonce").map(str::to_owned);
        if qop.is_some() {
            if nc.is_none() {
                return Err(DigestError::Missing("nc"));
            }
            if cnonce.is_none() {
                return Err(DigestError::Missing("cnonce"));
            }
        }
        Ok(Credentials {
            username: params.required("username")?.to_owned(),
            realm: params.required("realm")?.to_owned(),
            nonce: params.required("nonce")?.to_owned(),
            uri: params.required("uri")?.to_owned(),
            response: params.required("response")?.to_owned(),
            algorithm,
            cnonce,
            nc,
            qop,
            opaque: params.get("opaque").map(str::to_owned),
        })
    }

    /// Whether `response` is right for `method` and `ha1` (compared in
    /// constant time). Accepts qop=auth, and no qop (RFC 2069 clients).
    /// Any other qop (auth-int, which we never offer) is refused.
    pub fn verify(&self, method: &str, ha1: &str) -> bool {
        let qop = match self.qop.as_deref() {
            None => None,
            Some(q) if q.eq_ignore_ascii_case("auth") => Some("auth"),
            Some(_) => return false,
        };
        if qop.is_some() && (self.nc.is_none() || self.cnonce.is_none()) {
            return false;
        }
        let expected = response(
            self.algorithm,
            ha1,
            &self.nonce,
            self.nc,
            self.cnonce.as_deref(),
            qop,
            method,
            &self.uri,
        );
        // Hex digits in either case are the same hash (RFC 7616 asks for
        // lower case; some phones print upper case).
        let given = self.response.to_ascii_lowercase();
        expected.len() == given.len() && bool::from(expected.as_bytes().ct_eq(given.as_bytes()))
    }
}

/// `nc`: exactly 8 hex digits (RFC 7616 §3.4); 1 to 8 are taken, since a
/// count is what is meant either way.
fn parse_nc(nc: &str) -> Option<u32> {
    if nc.is_empty() || nc.len() > 8 || !nc.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(nc, 16).ok()
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
    let ha2 = algorithm.hex_digest(format!("{method}:{uri}").as_bytes());
    let data = match qop {
        Some(qop) => format!(
            "{ha1}:{nonce}:{:08x}:{}:{qop}:{ha2}",
            nc.unwrap_or(0),
            cnonce.unwrap_or("")
        ),
        // RFC 2069: no nc, cnonce or qop in the hash.
        None => format!("{ha1}:{nonce}:{ha2}"),
    };
    algorithm.hex_digest(data.as_bytes())
}

/// Client side: the Authorization value answering `challenge`. With
/// qop=auth offered it answers with qop=auth, `nc` and `cnonce`; without,
/// in the RFC 2069 form (a client must not send a qop the server did not
/// offer).
pub fn authorization(
    challenge: &Challenge,
    user: &str,
    password: &str,
    method: &str,
    uri: &str,
    cnonce: &str,
    nc: u32,
) -> String {
    let ha1 = challenge.algorithm.ha1(user, &challenge.realm, password);
    authorization_with_ha1(challenge, user, &ha1, method, uri, cnonce, nc)
}

/// Client side, like [`authorization`] but from the HA1 (what a
/// credentials file keeps) rather than the password.
pub fn authorization_with_ha1(
    challenge: &Challenge,
    user: &str,
    ha1: &str,
    method: &str,
    uri: &str,
    cnonce: &str,
    nc: u32,
) -> String {
    let qop = challenge.qop_auth.then_some("auth");
    let response = response(
        challenge.algorithm,
        ha1,
        &challenge.nonce,
        Some(nc),
        Some(cnonce),
        qop,
        method,
        uri,
    );
    let mut out = String::with_capacity(256);
    out.push_str("Digest username=");
    push_quoted(&mut out, user);
    out.push_str(", realm=");
    push_quoted(&mut out, &challenge.realm);
    out.push_str(", nonce=");
    push_quoted(&mut out, &challenge.nonce);
    out.push_str(", uri=");
    push_quoted(&mut out, uri);
    out.push_str(", response=\"");
    out.push_str(&response);
    out.push_str("\", algorithm=");
    out.push_str(challenge.algorithm.as_str());
    if qop.is_some() {
        let _ = write!(out, ", qop=auth, nc={nc:08x}, cnonce=");
        push_quoted(&mut out, cnonce);
    }
    if let Some(opaque) = &challenge.opaque {
        out.push_str(", opaque=");
        push_quoted(&mut out, opaque);
    }
    out
}

/// Appends `text` as a quoted-string, escaping `"` and `\`.
fn push_quoted(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
}

/// The highest nonce count seen per nonce, in a table of fixed size (least
/// recently used evicted): a replayed (nonce, nc) is refused.
///
/// Only record counts of requests whose `response` was verified: then only
/// a holder of a password can add entries, and nobody else can evict a
/// nonce's count to replay it. An evicted nonce can be replayed until it
/// goes stale, which bounds the exposure by the nonce lifetime.
pub struct NonceCounts {
    seen: lru::LruCache<String, u32>,
}

impl NonceCounts {
    pub fn new(capacity: usize) -> NonceCounts {
        NonceCounts {
            seen: lru::LruCache::new(NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN)),
        }
    }

    /// Records `nc` for `nonce`; false when it is not higher than the
    /// highest seen (a replay).
    pub fn check_and_record(&mut self, nonce: &str, nc: u32) -> bool {
        match self.seen.get_mut(nonce) {
            Some(highest) if nc <= *highest => false,
            Some(highest) => {
                *highest = nc;
                true
            }
            None => {
                self.seen.put(nonce.to_owned(), nc);
                true
            }
        }
    }

    /// Nonces remembered.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

/// The parameters of a `Digest` header value: lower-cased names, unquoted
/// values, in order.
struct Params {
    list: Vec<(String, String)>,
}

impl Params {
    /// `Digest name=value, name="quoted \"value\"", …`.
    fn parse(value: &str) -> Result<Params, DigestError> {
        if value.len() > MAX_VALUE_LEN {
            return Err(DigestError::TooLong);
        }
        let rest = value.trim_start_matches([' ', '\t']);
        let scheme_end = rest.find([' ', '\t']).unwrap_or(rest.len());
        if !rest[..scheme_end].eq_ignore_ascii_case("Digest") {
            return Err(DigestError::NotDigest);
        }
        let mut cursor = Cursor {
            bytes: &rest.as_bytes()[scheme_end..],
            at: 0,
        };
        let mut list: Vec<(String, String)> = Vec::new();
        loop {
            cursor.skip_space();
            // Empty list elements (`a=1,,b=2`) are allowed (RFC 9110 §5.6.1).
            while cursor.eat(b',') {
                cursor.skip_space();
            }
            if cursor.done() {
                break;
            }
            let name = cursor
                .token()
                .ok_or(DigestError::Malformed("parameter name"))?;
            cursor.skip_space();
            if !cursor.eat(b'=') {
                return Err(DigestError::Malformed("expected `=`"));
            }
            cursor.skip_space();
            let value = if cursor.peek() == Some(b'"') {
                cursor.quoted()?
            } else {
                cursor
                    .token()
                    .ok_or(DigestError::Malformed("parameter value"))?
                    .to_owned()
            };
            cursor.skip_space();
            if !cursor.done() && !cursor.eat(b',') {
                return Err(DigestError::Malformed("expected `,`"));
            }
            if list.len() == MAX_PARAMS {
                return Err(DigestError::TooLong);
            }
            let name = name.to_ascii_lowercase();
            if list.iter().any(|(seen, _)| *seen == name) {
                return Err(DigestError::Malformed("parameter given twice"));
            }
            list.push((name, value));
        }
        Ok(Params { list })
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.list
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn required(&self, name: &'static str) -> Result<&str, DigestError> {
        self.get(name).ok_or(DigestError::Missing(name))
    }
}

/// A position in a header value being parsed.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn done(&self) -> bool {
        self.at >= self.bytes.len()
    }

    fn eat(&mut self, b: u8) -> bool {
        let hit = self.peek() == Some(b);
        if hit {
            self.at += 1;
        }
        hit
    }

    fn skip_space(&mut self) {
        // Folded lines reach us unfolded by the message parser; CR/LF are
        // taken as space in case they do not.
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\r' | b'\n')) {
            self.at += 1;
        }
    }

    /// An RFC 9110 token (tchar*), at least one character.
    fn token(&mut self) -> Option<&'a str> {
        let start = self.at;
        while self.peek().is_some_and(is_tchar) {
            self.at += 1;
        }
        // tchars are ASCII, so the slice is on character boundaries.
        std::str::from_utf8(&self.bytes[start..self.at])
            .ok()
            .filter(|t| !t.is_empty())
    }

    /// A quoted-string, unescaped. The opening quote is next.
    fn quoted(&mut self) -> Result<String, DigestError> {
        self.at += 1;
        let mut out = Vec::new();
        loop {
            let Some(b) = self.peek() else {
                return Err(DigestError::Malformed("unterminated quoted string"));
            };
            self.at += 1;
            match b {
                b'"' => break,
                // quoted-pair = "\" ( HTAB / SP / VCHAR / obs-text )
                // (RFC 7230 §3.2.6): an escaped control character is as
                // bad as a bare one (found by the digest_header fuzzer).
                b'\\' => match self.peek() {
                    Some(escaped) if escaped == b'\t' || (escaped >= 0x20 && escaped != 0x7f) => {
                        out.push(escaped);
                        self.at += 1;
                    }
                    _ => return Err(DigestError::Malformed("bad escape in quoted string")),
                },
                // Control characters other than tab have no place in one.
                b if (b < 0x20 && b != b'\t') || b == 0x7f => {
                    return Err(DigestError::Malformed("control character in quoted string"));
                }
                b => out.push(b),
            }
        }
        // The input was a &str and an escape only drops a backslash before
        // a whole character, so this is UTF-8; refuse rather than trust it.
        String::from_utf8(out).map_err(|_| DigestError::Malformed("quoted string not UTF-8"))
    }
}

/// tchar of RFC 9110 §5.6.2.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
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
    /// Not a well-formed parameter list.
    #[error("malformed header: {0}")]
    Malformed(&'static str),
}

#[cfg(test)]
mod tests;
