//! The registrar (RFC 3261 §10) and location service: phones register
//! their contacts for an address of record (AOR); INVITEs to that AOR are
//! sent to them (the routing action `location`).
//!
//! Plain data, like the call machine, which owns one [`Registrar`]:
//! * [`bindings`] — AOR → contacts, with the §10.3 rules (Call-ID/CSeq
//!   ordering, `*`, expires limits, contacts per AOR, Path, RFC 5626
//!   instance/reg-id) and expiry on time (a heap, not a scan); every
//!   change is noted for replication and the snapshot file.
//! * [`auth`] — digest authentication of REGISTER (401) and of INVITEs
//!   from registered phones (407) with credentials from a file of HA1
//!   hashes ([`credentials`]), and per (source, user) failure lockout
//!   ([`lockout`]).
//!

pub mod auth;
pub mod bindings;
pub mod credentials;
pub mod lockout;
pub mod snapshot;

#[allow(unused_imports)]
pub use auth::{AuthOutcome, Authenticator};
#[allow(unused_imports)]
pub use bindings::{aor_of, Binding, Bindings, Flow, RegisterError};
#[allow(unused_imports)]
pub use credentials::Credentials;

/// What the call machine owns of the registrar: the bindings and the
/// authenticator.
pub struct Registrar {
    pub bindings: Bindings,
    pub auth: Authenticator,
}

impl Registrar {
    pub fn new(bindings: Bindings, auth: Authenticator) -> Registrar {
        Registrar { bindings, auth }
    }

    /// The registrar `[registrar]` describes, with its credentials file
    /// read and its snapshot file (if any) loaded; None when it has no
    /// domains.
    pub fn from_config(
        config: &crate::config::Config,
        wall: crate::b2bua::UnixMillis,
    ) -> anyhow::Result<Option<Registrar>> {
        let Some(rc) = config.registrar.as_ref().filter(|r| r.enabled()) else {
            return Ok(None);
        };
        let creds = load_credentials(config)?;
        let key = config.nonce_key().map_err(|e| anyhow::anyhow!(e))?;
        let mut bindings = Bindings::new(rc.settings());
        if let Some(path) = config.registrar_snapshot_file() {
            let path = &path;
            let started = std::time::Instant::now();
            let n = snapshot::load(&mut bindings, path, wall)
                .map_err(|e| anyhow::anyhow!("registrar.snapshot_file {}: {e}", path.display()))?;
            // A standby that connects gets them (as records) like any
            // change.
            bindings.mark_all_changed();
            tracing::info!(
                file = %path.display(),
                bindings = n,
                ms = started.elapsed().as_millis() as u64,
                "bindings loaded from the snapshot"
            );
        }
        if creds.is_empty() {
            tracing::warn!("registrar: the credentials file has no users: every phone is refused");
        }
        tracing::info!(
            domains = ?rc.domains,
            users = creds.len(),
            "registrar on"
        );
        Ok(Some(Registrar::new(
            bindings,
            Authenticator::new(rc.auth_settings(), key, creds),
        )))
    }

    /// SIGHUP: the credentials file is read again and the limits follow
    /// the new configuration; the bindings stay.
    pub fn reload(&mut self, config: &crate::config::Config) -> anyhow::Result<usize> {
        let Some(rc) = config.registrar.as_ref() else {
            anyhow::bail!("no [registrar]");
        };
        let creds = load_credentials(config)?;
        let users = creds.len();
        self.auth.set_credentials(creds);
        self.auth.set_settings(rc.auth_settings());
        self.bindings.set_settings(rc.settings());
        Ok(users)
    }

    /// Whether `host` (lower-case) is a domain of this registrar.
    pub fn serves(&self, host: &str) -> bool {
        self.bindings.settings().domains.iter().any(|d| d == host)
    }
}

/// The registrar's settings, as the config shell builds them from
/// `[registrar]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrarSettings {
    /// Domains (Request-URI / To hosts) this registrar serves, lower-case;
    /// a REGISTER for another domain gets 403 (we are not a proxy for it).
    pub domains: Vec<String>,
    /// The digest realm (default: the first domain).
    pub realm: String,
    /// Below this an `expires` gets 423 with Min-Expires (seconds).
    pub min_expires: u32,
    /// Longer requests are shortened to this (seconds).
    pub max_expires: u32,
    /// When the REGISTER names none (seconds).
    pub default_expires: u32,
    /// Contacts per AOR at most.
    pub max_contacts: usize,
    pub when_full: WhenFull,
    /// Bindings in all at most (a new AOR beyond: 503); bounds memory.
    pub max_bindings: usize,
    /// INVITEs from phones need digest credentials (407); false: an
    /// INVITE is a phone's when its From AOR has a binding from the
    /// INVITE's source address.
    pub authenticate_invites: bool,
}

impl Default for RegistrarSettings {
    fn default() -> Self {
        RegistrarSettings {
            domains: Vec::new(),
            realm: String::new(),
            min_expires: 60,
            max_expires: 3600,
            default_expires: 3600,
            max_contacts: 5,
            when_full: WhenFull::ReplaceOldest,
            max_bindings: 200_000,
            authenticate_invites: true,
        }
    }
}

/// A REGISTER adding a contact to an AOR that has `max_contacts` already.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WhenFull {
    /// The binding that expires soonest is replaced.
    ReplaceOldest,
    /// 403.
    Reject,
}

/// The credentials file `registrar.credentials_file` names (relative to
/// the configuration file).
fn load_credentials(config: &crate::config::Config) -> anyhow::Result<Credentials> {
    match config.registrar_credentials_file() {
        Some(path) => Ok(Credentials::load(&path)?),
        None => anyhow::bail!("registrar.credentials_file is required"),
    }
}
