//! Digest authentication of requests from phones: REGISTER (401 +
//! WWW-Authenticate / Authorization) and INVITE (407 + Proxy-Authenticate
//! / Proxy-Authorization).
//!
//! Plain data: a request and the time in, an [`AuthOutcome`] out. What
//! each case comes to:
//!
//! | request                                   | outcome                   | a failure? |
//! |-------------------------------------------|---------------------------|------------|
//! | no credentials for our realm              | challenge                 | no         |
//! | (source, user) locked out                 | ignored (dropped)         | no (counted apart) |
//! | nonce not ours / from the future          | fresh challenge           | yes        |
//! | nonce stale, response right               | challenge, `stale=true`   | no         |
//! | nonce stale, response wrong               | 403                       | yes        |
//! | algorithm not offered, `uri` not the Request-URI | 403                | yes        |
//! | unknown user or wrong response            | 403, the same answer      | yes        |
//! | replayed nonce count                      | fresh challenge           | yes        |
//! | right                                     | authenticated             | clears     |
//!
//! An unknown user and a wrong password get the same 403, after the same
//! work (the response is checked against a dummy HA1 for an unknown user),
//! so a scanner cannot tell which user names exist.
//!
//! Nonce counts are recorded only after the response is verified: only a
//! holder of a password can put entries into the bounded table, so no
//! stranger can push a nonce's count out of it to replay a request.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use sipcore::digest::{
    Algorithm, Challenge, Credentials as DigestCredentials, NonceCheck, NonceCounts, NonceKey,
};
use sipcore::message::Message;

use super::credentials::Credentials;
use super::lockout::AuthFailures;

/// The challenges offered by default: MD5 alone.
///
/// Why not the stronger ones too, strongest first as RFC 8760 §2.3 asks?
/// Because the phones and tools in use today break on it (checked against
/// Debian's packages with a responder sending several WWW-Authenticate
/// headers in a 401, and in their sources):
/// * SIPp 3.6.1 (`sip-tester`) joins all WWW-Authenticate headers and
///   reads the first `algorithm=`: with SHA-256 listed first it stops with
///   "createAuthHeader: authentication must use MD5 or AKAv1-MD5"; with
///   MD5 first it answers MD5 and registers.
/// * baresip 1.0 (libre 1.x `sip/auth.c`, `auth_handler`) walks every
///   WWW-Authenticate header and gives up on the whole 401 with ENOSYS
///   ("Register: Function not implemented") at the first one whose
///   algorithm is not MD5 — whatever the order, one SHA-256 challenge
///   in the response is enough to stop it registering.
///
/// So a registrar that must serve such phones offers MD5 only (as
/// Kamailio's `auth` module does by default). A fleet of phones that do
/// RFC 8760 should be given `SHA-256` (or `SHA-512-256`) first, then `MD5`
/// for the rest: RFC 8760 §2.4 clients take the topmost algorithm they
/// support.
pub const DEFAULT_ALGORITHMS: [Algorithm; 1] = [Algorithm::Md5];

/// Nonce counts remembered (see [`NonceCounts`]): one per phone
/// registering within a nonce lifetime, with room to spare for a few
/// thousand phones.
const NONCE_COUNTS_CAPACITY: usize = 65_536;
/// (source, user) pairs with recent failures remembered.
const FAILURES_CAPACITY: usize = 16_384;
/// Credential header lines looked at per request (one per realm is
/// normal): a request stuffed with hundreds costs no more than this.
const MAX_CREDENTIAL_HEADERS: usize = 8;

/// Settings of the authenticator (from `[registrar]`). The defaults
/// ([`AuthSettings::default`]) are what an operator gets without setting
/// anything but the realm.
#[derive(Debug, Clone)]
pub struct AuthSettings {
    pub realm: String,
    /// Offered in this order, one challenge header each. Default
    /// [`DEFAULT_ALGORITHMS`] (MD5 only; see there why).
    pub algorithms: Vec<Algorithm>,
    /// A nonce older than this is stale. Default 300 s.
    pub nonce_lifetime: Duration,
    /// Lockout: failures per (source, user) within `failure_window`
    /// before it is ignored for `failure_ban`. Defaults 5, 60 s, 300 s.
    pub max_failures: u32,
    pub failure_window: Duration,
    pub failure_ban: Duration,
}

impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings {
            realm: String::new(),
            algorithms: DEFAULT_ALGORITHMS.to_vec(),
            nonce_lifetime: Duration::from_secs(300),
            max_failures: 5,
            failure_window: Duration::from_secs(60),
            failure_ban: Duration::from_secs(300),
        }
    }
}

/// Which challenge a request gets: 401 for REGISTER, 407 for others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthKind {
    /// Authorization / WWW-Authenticate, 401.
    Www,
    /// Proxy-Authorization / Proxy-Authenticate, 407.
    Proxy,
}

impl AuthKind {
    /// The header carrying the client's credentials.
    fn credentials_header(self) -> &'static str {
        match self {
            AuthKind::Www => "Authorization",
            AuthKind::Proxy => "Proxy-Authorization",
        }
    }
}

/// What a request's authentication comes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthOutcome {
    /// Right credentials for `user`.
    Authenticated { user: String },
    /// Answer with 401/407 and these headers (one challenge per
    /// algorithm; `stale=true` when the nonce only aged).
    Challenge {
        status: u16,
        reason: &'static str,
        headers: Vec<(&'static str, String)>,
    },
    /// Wrong credentials: counted; answered 403 "Forbidden" with no
    /// headers (the same for an unknown user as for a wrong password).
    Failed {
        status: u16,
        reason: &'static str,
        headers: Vec<(&'static str, String)>,
    },
    /// (source, user) is locked out: drop silently (counted).
    Ignored,
}

pub struct Authenticator {
    settings: AuthSettings,
    key: NonceKey,
    credentials: Credentials,
    nonce_counts: NonceCounts,
    failures: AuthFailures,
    failures_total: u64,
    ignored_total: u64,
}

impl Authenticator {
    pub fn new(settings: AuthSettings, key: NonceKey, credentials: Credentials) -> Self {
        let settings = with_algorithms(settings);
        let failures = AuthFailures::new(
            settings.max_failures,
            settings.failure_window,
            settings.failure_ban,
            FAILURES_CAPACITY,
        );
        Authenticator {
            settings,
            key,
            credentials,
            nonce_counts: NonceCounts::new(NONCE_COUNTS_CAPACITY),
            failures,
            failures_total: 0,
            ignored_total: 0,
        }
    }

    /// The credentials file's HA1s (also those of the central realm, for
    /// dual registration).
    pub fn credentials(&self) -> &Credentials {
        &self.credentials
    }

    /// New credentials (SIGHUP).
    pub fn set_credentials(&mut self, credentials: Credentials) {
        self.credentials = credentials;
    }

    /// New settings (SIGHUP); failures and bans so far are kept.
    pub fn set_settings(&mut self, settings: AuthSettings) {
        self.failures.set_limits(
            settings.max_failures,
            settings.failure_window,
            settings.failure_ban,
        );
        self.settings = with_algorithms(settings);
    }

    /// Checks `request` from `source` at `now` (`wall_s`: Unix seconds,
    /// for nonces).
    pub fn check(
        &mut self,
        request: &Message,
        kind: AuthKind,
        source: IpAddr,
        now: Instant,
        wall_s: u64,
    ) -> AuthOutcome {
        // Our realm's credentials; headers for other realms (another hop's)
        // and ones that do not parse are not ours to judge.
        let credentials = request
            .headers(kind.credentials_header())
            .take(MAX_CREDENTIAL_HEADERS)
            .filter_map(|value| DigestCredentials::parse(value).ok())
            .find(|c| c.realm == self.settings.realm);
        let Some(credentials) = credentials else {
            return self.challenge(kind, wall_s, false);
        };
        let user = credentials.username.as_str();
        if self.failures.banned(source, user, now) {
            self.ignored_total += 1;
            return AuthOutcome::Ignored;
        }
        let lifetime_s = self.settings.nonce_lifetime.as_secs();
        match self
            .key
            .check(&credentials.nonce, wall_s, &self.settings.realm, lifetime_s)
        {
            NonceCheck::Valid { .. } => {}
            NonceCheck::Invalid => {
                self.failed(source, user, now);
                return self.challenge(kind, wall_s, false);
            }
            // stale=true tells the phone its password was right and only
            // the nonce aged (RFC 7616 §3.3), so say it only when it was.
            NonceCheck::Stale if self.response_right(&credentials, request) => {
                return self.challenge(kind, wall_s, true);
            }
            NonceCheck::Stale => return self.failed(source, user, now),
        }
        let offered = self.settings.algorithms.contains(&credentials.algorithm);
        let uri_matches = digest_uri_matches(request, credentials.uri.trim());
        if !offered || !uri_matches || !self.response_right(&credentials, request) {
            return self.failed(source, user, now);
        }
        // Without qop (RFC 2069) there is no count: such a nonce is good
        // for one request.
        let nc = if credentials.qop.is_some() {
            credentials.nc.unwrap_or(0)
        } else {
            1
        };
        if !self.nonce_counts.check_and_record(&credentials.nonce, nc) {
            self.failed(source, user, now);
            return self.challenge(kind, wall_s, false);
        }
        self.failures.succeeded(source, user);
        AuthOutcome::Authenticated {
            user: credentials.username,
        }
    }

    /// Failed authentications counted so far (for the metric).
    pub fn failures_total(&self) -> u64 {
        self.failures_total
    }

    /// Requests dropped because their (source, user) was locked out.
    pub fn ignored_total(&self) -> u64 {
        self.ignored_total
    }

    /// Whether the response is right for the user's HA1. An unknown user
    /// is checked against a dummy HA1 of the same length, so that it
    /// costs what a known one does.
    fn response_right(&self, credentials: &DigestCredentials, request: &Message) -> bool {
        let method = request.method().map_or("", |m| m.as_str());
        let algorithm = credentials.algorithm;
        match self
            .credentials
            .ha1(&self.settings.realm, &credentials.username, algorithm)
        {
            Some(ha1) => credentials.verify(method, ha1),
            None => {
                let dummy = "0".repeat(algorithm.hex_len());
                let _ = credentials.verify(method, &dummy);
                false
            }
        }
    }

    /// Counts a failure (perhaps starting a ban) and gives the 403.
    fn failed(&mut self, source: IpAddr, user: &str, now: Instant) -> AuthOutcome {
        self.failures_total += 1;
        if self.failures.failed(source, user, now) {
            tracing::warn!(
                %source,
                user = ?user,
                ban = ?self.settings.failure_ban,
                "authentication: too many failures, ignoring this source and user for a while"
            );
        }
        AuthOutcome::Failed {
            status: 403,
            reason: "Forbidden",
            headers: Vec::new(),
        }
    }

    /// A 401/407 with one challenge per algorithm offered, all with one
    /// fresh nonce.
    fn challenge(&self, kind: AuthKind, wall_s: u64, stale: bool) -> AuthOutcome {
        let (status, reason, header) = match kind {
            AuthKind::Www => (401, "Unauthorized", "WWW-Authenticate"),
            AuthKind::Proxy => (407, "Proxy Authentication Required", "Proxy-Authenticate"),
        };
        let nonce = self.key.issue(wall_s, &self.settings.realm);
        let headers = self
            .settings
            .algorithms
            .iter()
            .map(|&algorithm| {
                let challenge = Challenge {
                    realm: self.settings.realm.clone(),
                    nonce: nonce.clone(),
                    algorithm,
                    opaque: None,
                    stale,
                    qop_auth: true,
                };
                (header, challenge.to_header_value())
            })
            .collect();
        AuthOutcome::Challenge {
            status,
            reason,
            headers,
        }
    }
}

/// Whether the credentials' `uri` names this request's resource: the
/// Request-URI itself, or a SIP URI of the same host, or of an IP
/// address (the server the phone sent to). The last is how SIPp 3.6.1
/// fills it — always `sip:SERVER-IP:PORT`, whatever the Request-URI —
/// and is safe to allow: the uri is inside the hashed response, and a
/// replayed header is refused by its nonce count, so the check only
/// keeps a header made for another domain's resource from counting.
fn digest_uri_matches(request: &Message, uri: &str) -> bool {
    let Some(ruri) = request.request_uri_str().map(str::trim) else {
        return false;
    };
    if ruri == uri {
        return true;
    }
    let (Ok(theirs), Some(ours)) = (sipcore::message::Uri::parse(uri), request.request_uri())
    else {
        return false;
    };
    if !theirs.is_sip() {
        return false;
    }
    let host = theirs.host.trim_start_matches('[').trim_end_matches(']');
    theirs.host.eq_ignore_ascii_case(ours.host) || host.parse::<std::net::IpAddr>().is_ok()
}

/// `settings` with at least one algorithm (a challenge without any is
/// no challenge; the config refuses an empty list, this is the backstop).
fn with_algorithms(mut settings: AuthSettings) -> AuthSettings {
    if settings.algorithms.is_empty() {
        settings.algorithms = DEFAULT_ALGORITHMS.to_vec();
    }
    settings
}

#[cfg(test)]
mod tests;
