//! Configuration of one node of a pair. Deserialisable from TOML (the
//! proxy embeds it as its `[ha]` table); unknown keys are errors.
//!
//! The timing keys are those of a telephony switchover system: how often
//! the nodes ping each other, when a ping counts as missed, how many
//! misses make the peer lost, and how long to wait between checks.

use std::net::{IpAddr, SocketAddr};
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
    /// Shared secret authenticating every frame (HMAC-SHA256). At least
    /// 16 bytes.
    pub secret: String,
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
        if self.secret.len() < 16 {
            return Err("secret: at least 16 bytes".into());
        }
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
}
