//! Digest authentication of requests from phones: REGISTER (401 +
//! WWW-Authenticate / Authorization) and INVITE (407 + Proxy-Authenticate
//! / Proxy-Authorization). SKELETON.
#![allow(unused_variables)]

use std::net::IpAddr;
use std::time::{Duration, Instant};

use sipcore::digest::{Algorithm, NonceKey};
use sipcore::message::Message;

use super::credentials::Credentials;

/// Settings of the authenticator (from `[registrar]`).
#[derive(Debug, Clone)]
pub struct AuthSettings {
    pub realm: String,
    /// Offered in this order, one challenge header each.
    pub algorithms: Vec<Algorithm>,
    /// A nonce older than this is stale.
    pub nonce_lifetime: Duration,
    /// Lockout: failures per (source, user) within `failure_window`
    /// before it is ignored for `failure_ban`.
    pub max_failures: u32,
    pub failure_window: Duration,
    pub failure_ban: Duration,
}

/// Which challenge a request gets: 401 for REGISTER, 407 for others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthKind {
    /// Authorization / WWW-Authenticate, 401.
    Www,
    /// Proxy-Authorization / Proxy-Authenticate, 407.
    Proxy,
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
    /// Wrong credentials: counted; answer 403 (or a fresh challenge,
    /// as the implementation documents) — `status` says which.
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
}

impl Authenticator {
    pub fn new(settings: AuthSettings, key: NonceKey, credentials: Credentials) -> Self {
        todo!()
    }

    /// New credentials (SIGHUP).
    pub fn set_credentials(&mut self, credentials: Credentials) {
        todo!()
    }

    pub fn set_settings(&mut self, settings: AuthSettings) {
        todo!()
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
        todo!()
    }

    /// Failed authentications counted so far (for the metric).
    pub fn failures_total(&self) -> u64 {
        todo!()
    }
}
