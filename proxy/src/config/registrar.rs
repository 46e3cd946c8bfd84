//! `[registrar]`: the registrar and location service (RFC 3261 §10) for
//! phones, with digest authentication.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use sipcore::digest::Algorithm;

use super::ConfigError;
use crate::registrar::auth::AuthSettings;
use crate::registrar::{RegistrarSettings, WhenFull};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistrarConfig {
    /// Domains served (Request-URI / To hosts of REGISTER, AOR domains);
    /// an empty list turns the registrar off.
    #[serde(default)]
    pub domains: Vec<String>,
    /// The digest realm (default: the first domain).
    #[serde(default)]
    pub realm: Option<String>,
    #[serde(default = "default_min_expires")]
    pub min_expires: u32,
    #[serde(default = "default_max_expires")]
    pub max_expires: u32,
    #[serde(default = "default_max_expires")]
    pub default_expires: u32,
    #[serde(default = "default_max_contacts")]
    pub max_contacts: usize,
    #[serde(default = "default_when_full")]
    pub when_full: WhenFull,
    #[serde(default = "default_max_bindings")]
    pub max_bindings: usize,
    /// HA1 hashes per realm, user and algorithm (`tandem passwd` writes
    /// them); mode 0600 or stricter.
    #[serde(default)]
    pub credentials_file: Option<PathBuf>,
    /// Challenges offered, in this order (one header each).
    #[serde(default = "default_algorithms")]
    pub auth_algorithms: Vec<String>,
    #[serde(default = "default_nonce_lifetime_s")]
    pub nonce_lifetime_s: u64,
    /// Failed authentications per (source address, user) within
    /// `auth_failure_window_s` before that pair is ignored for
    /// `auth_failure_ban_s`.
    #[serde(default = "default_max_auth_failures")]
    pub max_auth_failures: u32,
    #[serde(default = "default_auth_failure_window_s")]
    pub auth_failure_window_s: u64,
    #[serde(default = "default_auth_failure_ban_s")]
    pub auth_failure_ban_s: u64,
    /// Where the bindings are kept across restarts (written atomically,
    /// at most every 2 s when they changed, and at a clean stop).
    #[serde(default)]
    pub snapshot_file: Option<PathBuf>,
}

fn default_min_expires() -> u32 {
    60
}
fn default_max_expires() -> u32 {
    3600
}
fn default_max_contacts() -> usize {
    5
}
fn default_when_full() -> WhenFull {
    WhenFull::ReplaceOldest
}
fn default_max_bindings() -> usize {
    200_000
}
fn default_algorithms() -> Vec<String> {
    vec!["SHA-256".into(), "MD5".into()]
}
fn default_nonce_lifetime_s() -> u64 {
    300
}
fn default_max_auth_failures() -> u32 {
    10
}
fn default_auth_failure_window_s() -> u64 {
    60
}
fn default_auth_failure_ban_s() -> u64 {
    300
}

impl RegistrarConfig {
    pub fn enabled(&self) -> bool {
        !self.domains.is_empty()
    }

    pub fn realm(&self) -> String {
        self.realm
            .clone()
            .or_else(|| self.domains.first().cloned())
            .unwrap_or_default()
    }

    pub fn settings(&self) -> RegistrarSettings {
        RegistrarSettings {
            domains: self
                .domains
                .iter()
                .map(|d| d.to_ascii_lowercase())
                .collect(),
            realm: self.realm(),
            min_expires: self.min_expires,
            max_expires: self.max_expires,
            default_expires: self.default_expires,
            max_contacts: self.max_contacts,
            when_full: self.when_full,
            max_bindings: self.max_bindings,
        }
    }

    /// The algorithms, parsed (validated at load).
    pub fn algorithms(&self) -> Vec<Algorithm> {
        self.auth_algorithms
            .iter()
            .filter_map(|a| Algorithm::parse(a))
            .collect()
    }

    pub fn auth_settings(&self) -> AuthSettings {
        AuthSettings {
            realm: self.realm(),
            algorithms: self.algorithms(),
            nonce_lifetime: Duration::from_secs(self.nonce_lifetime_s),
            max_failures: self.max_auth_failures,
            failure_window: Duration::from_secs(self.auth_failure_window_s),
            failure_ban: Duration::from_secs(self.auth_failure_ban_s),
        }
    }

    pub(super) fn validate(&self, file: &Path) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: String| ConfigError::Invalid {
            file: file.to_owned(),
            key: format!("registrar.{key}"),
            message,
        };
        if !self.enabled() {
            return Ok(());
        }
        for d in &self.domains {
            if d.is_empty() || d.contains([' ', ':', '@', ';', '/']) {
                return Err(invalid("domains", format!("{d:?} is not a domain name")));
            }
        }
        if self.min_expires == 0 {
            return Err(invalid("min_expires", "must be at least 1".into()));
        }
        if self.max_expires < self.min_expires {
            return Err(invalid(
                "max_expires",
                format!("must be at least min_expires ({})", self.min_expires),
            ));
        }
        if !(self.min_expires..=self.max_expires).contains(&self.default_expires) {
            return Err(invalid(
                "default_expires",
                "must be between min_expires and max_expires".into(),
            ));
        }
        if !(1..=100).contains(&self.max_contacts) {
            return Err(invalid("max_contacts", "must be 1 to 100".into()));
        }
        if !(1..=10_000_000).contains(&self.max_bindings) {
            return Err(invalid("max_bindings", "must be 1 to 10000000".into()));
        }
        match &self.credentials_file {
            None => {
                return Err(invalid(
                    "credentials_file",
                    "required: phones are authenticated (write it with `tandem passwd`)".into(),
                ))
            }
            Some(p) if !p.is_absolute() => {
                return Err(invalid(
                    "credentials_file",
                    "must be an absolute path".into(),
                ))
            }
            Some(_) => {}
        }
        if self.auth_algorithms.is_empty() {
            return Err(invalid("auth_algorithms", "at least one is needed".into()));
        }
        for a in &self.auth_algorithms {
            if Algorithm::parse(a).is_none() {
                return Err(invalid(
                    "auth_algorithms",
                    format!("{a:?} is not one of \"SHA-512-256\", \"SHA-256\", \"MD5\""),
                ));
            }
        }
        if !(10..=86_400).contains(&self.nonce_lifetime_s) {
            return Err(invalid("nonce_lifetime_s", "must be 10 to 86400".into()));
        }
        if self.max_auth_failures == 0 {
            return Err(invalid("max_auth_failures", "must be at least 1".into()));
        }
        if self.auth_failure_window_s == 0 || self.auth_failure_ban_s == 0 {
            return Err(invalid(
                "auth_failure_window_s",
                "auth_failure_window_s and auth_failure_ban_s must be at least 1".into(),
            ));
        }
        if let Some(p) = &self.snapshot_file {
            if !p.is_absolute() {
                return Err(invalid("snapshot_file", "must be an absolute path".into()));
            }
        }
        Ok(())
    }
}
