//! Configuration of one node of a pair. Deserialisable from TOML (the
//! proxy embeds it as its `[ha]` table); unknown keys are errors.
//!
//! The timing keys are those of a telephony switchover system: how often
//! the nodes ping each other, when a ping counts as missed, how many
//! misses make the peer lost, and how long to wait between checks.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::vip::VipConfig;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncConfig {
    /// This node's name (in logs, metrics and frames); must differ from
    /// the peer's.
    pub node: String,
    /// When both nodes start without an active one, the higher priority
    /// becomes active (equal: the lower name).
    #[serde(default = "default_priority")]
    pub priority: u8,
    /// The file holding the pair's shared secret (the same on both
    /// nodes), from which every connection's keys and the heartbeat keys
    /// are derived. An absolute path; the file must not be readable or
    /// writable by group or others (mode 0600 or 0400). Its content (one
    /// line; surrounding whitespace ignored) must be at least 32 bytes of
    /// real randomness: `head -c 32 /dev/urandom | base64 > FILE`.
    pub secret_file: PathBuf,
    /// Inline secrets are refused (they end up in backups, tickets and
    /// version control with the rest of the file): this key only exists
    /// to say so clearly.
    #[serde(default, skip_serializing)]
    pub secret: Option<String>,
    /// The replication link: the TCP stream of records and the main
    /// heartbeats (UDP, same address and port).
    pub link: LinkConfig,
    /// A second heartbeat path on another interface (heartbeats only):
    /// the peer counts as lost only when both links are silent.
    #[serde(default)]
    pub aux: Option<LinkConfig>,
    #[serde(default)]
    pub heartbeat: HeartbeatConfig,
    #[serde(default)]
    pub fencing: FencingConfig,
    /// The floating address(es) the active node holds (with
    /// `external_role`, leave it out: the external program moves it).
    #[serde(default)]
    pub vip: Option<VipConfig>,
    /// Roles are decided by an external program that owns the floating
    /// address (keepalived, say), which reports each change with
    /// `tandem notify master|backup|fault`: no takeover of this node's
    /// own, no fencing, no address moves. Replication and the epoch rule
    /// work as usual. Not the default.
    #[serde(default)]
    pub external_role: bool,
    /// `SCHED_FIFO` priority of the node's thread (heartbeats, roles,
    /// replication), so that a busy machine does not look dead to its
    /// peer; 0 leaves it at normal priority. Needs root (CAP_SYS_NICE).
    #[serde(default = "default_realtime")]
    pub realtime_priority: u8,
    /// Changes kept for a standby that reconnects (beyond them it takes
    /// a snapshot).
    #[serde(default = "default_journal")]
    pub journal_capacity: usize,
}

/// One path between the two nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkConfig {
    /// Where this node listens (its own address on that interface).
    pub listen: SocketAddr,
    /// Where the peer listens.
    pub peer: SocketAddr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HeartbeatConfig {
    /// Ping interval: a heartbeat is sent on every link this often.
    pub interval_ms: u64,
    /// Ping timeout: no heartbeat for this long is the first miss…
    pub timeout_ms: u64,
    /// …and after this many misses (one more per interval) the peer is
    /// lost and the fencing checks run.
    pub failures: u32,
    /// Wait between two rounds of checks that did not allow a takeover.
    pub retry_delay_ms: u64,
    /// Replication connects tried at `reconnect_interval_ms` before the
    /// standby slows down to `retry_delay_ms` (and says so in the log).
    pub reconnect_attempts: u32,
    pub reconnect_interval_ms: u64,
    /// On start, how long to listen for the peer before deciding alone.
    pub start_wait_ms: u64,
}

impl Default for HeartbeatConfig {
    /// The default profile: the peer is lost after 500 ms of silence
    /// (timeout 300 ms + 2 more intervals of 100 ms).
    fn default() -> Self {
        HeartbeatConfig {
            interval_ms: 100,
            timeout_ms: 300,
            failures: 3,
            retry_delay_ms: 500,
            reconnect_attempts: 10,
            reconnect_interval_ms: 200,
            start_wait_ms: 2000,
        }
    }
}

impl HeartbeatConfig {
    pub fn interval(&self) -> Duration {
        Duration::from_millis(self.interval_ms)
    }

    /// Silence after which the peer is lost.
    pub fn dead_after(&self) -> Duration {
        Duration::from_millis(
            self.timeout_ms + self.interval_ms * u64::from(self.failures.saturating_sub(1)),
        )
    }
}

/// "Am I the one cut off?" — checked before any takeover.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FencingConfig {
    /// Hosts (gateways, "net test" hosts) of which at least one must
    /// answer an ICMP echo. Empty: this check is off.
    pub probe_hosts: Vec<IpAddr>,
    /// Deadline of each check (ICMP echo, the owner's service probe of
    /// the floating address).
    pub timeout_ms: u64,
}

impl Default for FencingConfig {
    fn default() -> Self {
        FencingConfig {
            probe_hosts: Vec::new(),
            timeout_ms: 200,
        }
    }
}

fn default_priority() -> u8 {
    100
}

fn default_realtime() -> u8 {
    10
}

fn default_journal() -> usize {
    100_000
}

impl SyncConfig {
    /// Checks values that parse but cannot work; the error names the key.
    pub fn validate(&self) -> Result<(), String> {
        if self.node.is_empty() {
            return Err("node: must not be empty".into());
        }
        if self.secret.is_some() {
            return Err(
                "secret: inline secrets are not accepted; put the secret in a file of its own \
                 (mode 0600) and name it with secret_file"
                    .into(),
            );
        }
        self.load_secret()?;
        let h = &self.heartbeat;
        if h.interval_ms == 0 {
            return Err("heartbeat.interval_ms: must be > 0".into());
        }
        if h.timeout_ms < h.interval_ms {
            return Err("heartbeat.timeout_ms: must be ≥ heartbeat.interval_ms".into());
        }
        if h.failures == 0 {
            return Err("heartbeat.failures: must be ≥ 1".into());
        }
        if h.reconnect_interval_ms == 0 || h.retry_delay_ms == 0 {
            return Err("heartbeat.reconnect_interval_ms / retry_delay_ms: must be > 0".into());
        }
        if self.fencing.timeout_ms == 0 {
            return Err("fencing.timeout_ms: must be > 0".into());
        }
        if self.link.listen == self.link.peer {
            return Err("link.peer: must differ from link.listen".into());
        }
        if self.realtime_priority > 99 {
            return Err("realtime_priority: 0 (off) or 1..=99".into());
        }
        if self.external_role && self.vip.is_some() {
            return Err(
                "vip: leave it out with external_role (the external program owns the address)"
                    .into(),
            );
        }
        if self.journal_capacity == 0 {
            return Err("journal_capacity: must be > 0".into());
        }
        Ok(())
    }

    /// Reads the shared secret from `secret_file`, refusing a file others
    /// can read and a weak secret; the error names the key and the file.
    pub fn load_secret(&self) -> Result<Vec<u8>, String> {
        let path = &self.secret_file;
        let fail = |why: String| format!("secret_file: {}: {why}", path.display());
        if !path.is_absolute() {
            return Err(fail("must be an absolute path".into()));
        }
        let text = read_private_file(path, MAX_SECRET_FILE).map_err(fail)?;
        let secret = text.trim_ascii();
        check_secret(secret).map_err(fail)?;
        Ok(secret.to_vec())
    }
}

/// Secrets that appeared in Tandem's examples, documentation or tests at
/// some time: anybody can read them, so they are refused.
const KNOWN_SECRETS: &[&str] = &[
    "testbed pair secret, change me",
    "a shared secret of the pair",
    "not the pair's secret",
    "pair secret",
];

/// Words that give a made-up passphrase away.
const GIVEAWAYS: &[&str] = &["change me", "changeme", "example", "secret", "password"];

/// Largest secret file read, in bytes.
const MAX_SECRET_FILE: u64 = 4096;

/// Shortest secret accepted, in bytes.
pub const MIN_SECRET: usize = 32;

/// Whether `secret` is fit to protect the pair link: not a published
/// example, long, and not obviously made up or repetitive. (A weak secret
/// is guessable offline from one recorded handshake.)
pub fn check_secret(secret: &[u8]) -> Result<(), String> {
    let lower = String::from_utf8_lossy(secret).to_lowercase();
    if KNOWN_SECRETS.iter().any(|k| lower == *k) {
        return Err("this secret is a published example; generate one: \
                    head -c 32 /dev/urandom | base64"
            .into());
    }
    if secret.len() < MIN_SECRET {
        return Err(format!(
            "the secret has {} bytes, at least {MIN_SECRET} are needed; generate one: \
             head -c 32 /dev/urandom | base64",
            secret.len()
        ));
    }
    if let Some(word) = GIVEAWAYS.iter().find(|w| lower.contains(*w)) {
        return Err(format!(
            "the secret contains {word:?}, a made-up passphrase; generate one: \
             head -c 32 /dev/urandom | base64"
        ));
    }
    let mut seen = [false; 256];
    for b in secret {
        seen[usize::from(*b)] = true;
    }
    let distinct = seen.iter().filter(|s| **s).count();
    if distinct < 12 {
        return Err(format!(
            "the secret uses only {distinct} different characters (low entropy); generate one: \
             head -c 32 /dev/urandom | base64"
        ));
    }
    Ok(())
}

/// The content of a file that only its owner may read or write (no group
/// or other permission bits), as a secret file must be: the pair's secret
/// here, the admin tokens in the proxy. At most `max_bytes` are read (a
/// secret is short; a huge file is a mistake). The error says what is
/// wrong, without the file's name (the caller adds key and file).
pub fn read_private_file(path: &Path, max_bytes: u64) -> Result<Vec<u8>, String> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read: {e}"))?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "mode {mode:04o} lets group or others read or write it; `chmod 600` it"
        ));
    }
    if meta.len() > max_bytes {
        return Err(format!("larger than {max_bytes} bytes"));
    }
    std::fs::read(path).map_err(|e| format!("cannot read: {e}"))
}

#[cfg(test)]
mod tests;
