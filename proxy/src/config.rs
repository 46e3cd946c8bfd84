//! Tandem's configuration: one TOML file. Unknown keys and bad values are
//! errors that name the file and the key, so that `tandem check` tells an
//! operator exactly what to fix before a restart, not after.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// A configuration error, naming the file and, where known, the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read: {source}")]
    Read {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Syntax errors, unknown keys, wrong types: the TOML parser's message
    /// carries line, column and key.
    #[error("{file}: {message}")]
    Syntax { file: PathBuf, message: String },
    #[error("{file}: key `{key}`: {message}")]
    Invalid {
        file: PathBuf,
        key: String,
        message: String,
    },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub sip: SipConfig,
    #[serde(default)]
    pub admin: AdminConfig,
    pub media: MediaConfig,
    #[serde(default)]
    pub calls: CallsConfig,
    /// Sources allowed to send INVITEs (trunks, SBCs, gateways).
    #[serde(default, rename = "trunk")]
    pub trunks: Vec<TrunkConfig>,
    /// The media-server group calls are sent to.
    pub pool: PoolConfig,
    #[serde(default)]
    pub survival: SurvivalConfig,
    /// The hot-standby pair (state-sync's configuration); none: a single
    /// node.
    #[serde(default)]
    pub ha: Option<state_sync::SyncConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SipConfig {
    /// Addresses to listen on; each gets UDP and TCP on the same port.
    pub listen: Vec<SocketAddr>,
    /// The address written into Via, Contact and Record-Route. Defaults to
    /// the first listen address (must then not be a wildcard).
    #[serde(default)]
    pub advertise: Option<SocketAddr>,
    #[serde(default = "default_t1")]
    pub t1_ms: u64,
    #[serde(default = "default_t2")]
    pub t2_ms: u64,
    #[serde(default = "default_t4")]
    pub t4_ms: u64,
    #[serde(default = "default_udp_buffer")]
    pub udp_recv_buffer: usize,
    /// New requests waiting for the call engine, at most. When it is full
    /// an initial INVITE is answered 503 with Retry-After at once, other
    /// requests are dropped for their senders to retransmit (counted in
    /// `tandem_sip_overload_total`): a flood costs a bounded amount of
    /// memory and the calls up keep being served.
    #[serde(default = "default_queue_limit")]
    pub queue_limit: usize,
    /// The Retry-After of that 503, in seconds.
    #[serde(default = "default_overload_retry_after")]
    pub overload_retry_after_s: u32,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// The admin API (`/metrics`, `/status`, `/switchover`, `/notify/…`);
    /// none disables it.
    #[serde(default)]
    pub listen: Option<SocketAddr>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MediaConfig {
    /// Local address of the relay's RTP sockets (both legs).
    pub ip: IpAddr,
    pub port_min: u16,
    pub port_max: u16,
    /// Relay worker threads; 0 means one per core.
    #[serde(default)]
    pub workers: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallsConfig {
    /// Headers copied from leg A's INVITE to leg B's. A trailing `*`
    /// matches a prefix (`X-*`: every X- header).
    #[serde(default = "default_carry_headers")]
    pub carry_headers: Vec<String>,
    /// Longest call; 0 disables. Both legs get a BYE when it is reached.
    #[serde(default)]
    pub max_duration_s: u64,
    /// End the call when no RTP arrived on either leg for this long; 0
    /// disables.
    #[serde(default = "default_media_timeout")]
    pub media_timeout_s: u64,
    /// How long to wait for the media server's final answer before trying
    /// the next member (INVITE timer C, shortened: a pool member that does
    /// not answer in seconds is not going to).
    #[serde(default = "default_member_answer_timeout")]
    pub member_answer_timeout_ms: u64,
}

impl Default for CallsConfig {
    fn default() -> Self {
        CallsConfig {
            carry_headers: default_carry_headers(),
            max_duration_s: 0,
            media_timeout_s: default_media_timeout(),
            member_answer_timeout_ms: default_member_answer_timeout(),
        }
    }
}

/// Call survival: answered calls of a media server that fails are resumed
/// on another member while the caller stays on the line.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SurvivalConfig {
    /// Resume answered calls when their media server fails. Off: such
    /// calls are ended (BYE to the caller), as other proxies do.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Most resume INVITEs per second over the whole pool, so that a
    /// server with a thousand calls dying does not flatten the survivors.
    #[serde(default = "default_resume_rate")]
    pub resume_rate: u32,
    /// Leg B's RTP silent this long while leg A's keeps arriving makes the
    /// member suspect (an immediate OPTIONS probe confirms or clears it);
    /// 0 disables media-silence detection. Calls on hold are exempt.
    #[serde(default = "default_media_silence")]
    pub media_silence_ms: u64,
    /// How long the probe of a suspect member may take to be answered
    /// (shorter than the keepalive's: the calls are silent meanwhile, and
    /// a live server answers OPTIONS in milliseconds).
    #[serde(default = "default_suspect_probe_timeout")]
    pub suspect_probe_timeout_ms: u64,
    /// A member whose probe is answered is still failed when at least this
    /// many of its calls are silent and none of them is not (its SIP lives,
    /// its media is dead). One silent call alone never moves: it may be
    /// silence suppression.
    #[serde(default = "default_media_dead_min_calls")]
    pub media_dead_min_calls: usize,
    /// Resume a call whose in-dialog request to the media server times out
    /// or is answered 408, 481 or 503.
    #[serde(default = "default_true")]
    pub in_dialog_failure: bool,
    /// When no member is left for a call: `hangup` (BYE with a Reason to
    /// the caller) or `hold` (keep the caller and retry every second for
    /// `hold_retry_s`).
    #[serde(default)]
    pub on_no_server: OnNoServer,
    #[serde(default = "default_hold_retry")]
    pub hold_retry_s: u64,
    /// Rewrite SSRC, sequence number and timestamp after a switch so that
    /// the trunk sees one continuous RTP stream.
    #[serde(default = "default_true")]
    pub continuity: bool,
}

impl Default for SurvivalConfig {
    fn default() -> Self {
        SurvivalConfig {
            enabled: true,
            resume_rate: default_resume_rate(),
            media_silence_ms: default_media_silence(),
            suspect_probe_timeout_ms: default_suspect_probe_timeout(),
            media_dead_min_calls: default_media_dead_min_calls(),
            in_dialog_failure: true,
            on_no_server: OnNoServer::default(),
            hold_retry_s: default_hold_retry(),
            continuity: true,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnNoServer {
    #[default]
    Hangup,
    Hold,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrunkConfig {
    pub name: String,
    pub networks: Vec<IpNet>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    RoundRobin,
    Sequential,
    Random,
    Weighted,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolConfig {
    #[serde(default = "default_pool_name")]
    pub name: String,
    #[serde(default = "default_strategy")]
    pub strategy: Strategy,
    #[serde(default)]
    pub health: HealthConfig,
    #[serde(rename = "member")]
    pub members: Vec<MemberConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthConfig {
    #[serde(default = "default_true")]
    pub enabled: bool,
    #[serde(default = "default_health_interval")]
    pub interval_ms: u64,
    #[serde(default = "default_health_timeout")]
    pub timeout_ms: u64,
    #[serde(default = "default_failures_to_down")]
    pub failures_to_down: u32,
    #[serde(default = "default_successes_to_up")]
    pub successes_to_up: u32,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            enabled: true,
            interval_ms: default_health_interval(),
            timeout_ms: default_health_timeout(),
            failures_to_down: default_failures_to_down(),
            successes_to_up: default_successes_to_up(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MemberTransport {
    Udp,
    Tcp,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberConfig {
    pub name: String,
    pub address: SocketAddr,
    #[serde(default = "default_member_transport")]
    pub transport: MemberTransport,
    /// For `weighted`: relative share of new calls.
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// For `sequential`: lower is tried first; ties keep file order.
    #[serde(default)]
    pub priority: u32,
}

fn default_t1() -> u64 {
    500
}
fn default_t2() -> u64 {
    4000
}
fn default_t4() -> u64 {
    5000
}
fn default_udp_buffer() -> usize {
    4 * 1024 * 1024
}
fn default_queue_limit() -> usize {
    2048
}
fn default_overload_retry_after() -> u32 {
    5
}
fn default_carry_headers() -> Vec<String> {
    [
        "P-Asserted-Identity",
        "Diversion",
        "User-to-User",
        "Privacy",
        "X-*",
    ]
    .map(String::from)
    .to_vec()
}
fn default_media_timeout() -> u64 {
    60
}
fn default_member_answer_timeout() -> u64 {
    4000
}
fn default_resume_rate() -> u32 {
    200
}
fn default_media_silence() -> u64 {
    500
}
fn default_suspect_probe_timeout() -> u64 {
    250
}
fn default_media_dead_min_calls() -> usize {
    2
}
fn default_hold_retry() -> u64 {
    30
}
fn default_pool_name() -> String {
    "media".into()
}
fn default_strategy() -> Strategy {
    Strategy::RoundRobin
}
fn default_true() -> bool {
    true
}
fn default_health_interval() -> u64 {
    1000
}
fn default_health_timeout() -> u64 {
    500
}
fn default_failures_to_down() -> u32 {
    2
}
fn default_successes_to_up() -> u32 {
    2
}
fn default_member_transport() -> MemberTransport {
    MemberTransport::Udp
}
fn default_weight() -> u32 {
    1
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            file: path.to_owned(),
            source,
        })?;
        Config::parse(&text, path)
    }

    /// Parses and validates config text; `file` is only used in errors.
    pub fn parse(text: &str, file: &Path) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Syntax {
            file: file.to_owned(),
            message: e.to_string().trim_end().replace('\n', " "),
        })?;
        config.validate(file)?;
        Ok(config)
    }

    fn validate(&self, file: &Path) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: String| ConfigError::Invalid {
            file: file.to_owned(),
            key: key.to_owned(),
            message,
        };
        if self.sip.listen.is_empty() {
            return Err(invalid(
                "sip.listen",
                "at least one address is needed".into(),
            ));
        }
        if self.sip.advertise.is_none() && self.sip.listen[0].ip().is_unspecified() {
            return Err(invalid(
                "sip.advertise",
                "required when sip.listen[0] is a wildcard address".into(),
            ));
        }
        if self.sip.queue_limit == 0 {
            return Err(invalid("sip.queue_limit", "must be at least 1".into()));
        }
        if self.sip.t1_ms == 0 || self.sip.t2_ms < self.sip.t1_ms {
            return Err(invalid("sip.t2_ms", "T1 must be > 0 and T2 >= T1".into()));
        }
        if !self.media.port_min.is_multiple_of(2) {
            return Err(invalid(
                "media.port_min",
                "must be even (RTP on even ports)".into(),
            ));
        }
        if self.media.port_max <= self.media.port_min.saturating_add(3) {
            return Err(invalid(
                "media.port_max",
                format!(
                    "must leave room for at least one call above port_min {}",
                    self.media.port_min
                ),
            ));
        }
        let mut names = std::collections::HashSet::new();
        for (i, t) in self.trunks.iter().enumerate() {
            if t.networks.is_empty() {
                return Err(invalid(
                    &format!("trunk[{i}].networks"),
                    "must not be empty".into(),
                ));
            }
            if !names.insert(&t.name) {
                return Err(invalid(
                    &format!("trunk[{i}].name"),
                    format!("duplicate name {:?}", t.name),
                ));
            }
        }
        if self.pool.members.is_empty() {
            return Err(invalid(
                "pool.member",
                "at least one member is needed".into(),
            ));
        }
        let mut names = std::collections::HashSet::new();
        for (i, m) in self.pool.members.iter().enumerate() {
            if !names.insert(&m.name) {
                return Err(invalid(
                    &format!("pool.member[{i}].name"),
                    format!("duplicate name {:?}", m.name),
                ));
            }
            if self.pool.strategy == Strategy::Weighted && m.weight == 0 {
                return Err(invalid(
                    &format!("pool.member[{i}].weight"),
                    "must be > 0 for weighted".into(),
                ));
            }
        }
        let h = &self.pool.health;
        if h.interval_ms == 0 || h.timeout_ms == 0 || h.timeout_ms > h.interval_ms {
            return Err(invalid(
                "pool.health.timeout_ms",
                "interval and timeout must be > 0 and timeout <= interval".into(),
            ));
        }
        if h.failures_to_down == 0 || h.successes_to_up == 0 {
            return Err(invalid(
                "pool.health.failures_to_down",
                "counts must be >= 1".into(),
            ));
        }
        if self.survival.resume_rate == 0 {
            return Err(invalid(
                "survival.resume_rate",
                "must be at least 1 resume per second".into(),
            ));
        }
        if self.survival.media_silence_ms > 0 && self.survival.media_silence_ms < 100 {
            return Err(invalid(
                "survival.media_silence_ms",
                "below 100 ms ordinary jitter looks like a failure (0 disables)".into(),
            ));
        }
        if self.survival.media_dead_min_calls == 0 {
            return Err(invalid(
                "survival.media_dead_min_calls",
                "must be at least 1".into(),
            ));
        }
        if self.survival.suspect_probe_timeout_ms == 0 {
            return Err(invalid(
                "survival.suspect_probe_timeout_ms",
                "must be > 0".into(),
            ));
        }
        if let Some(ha) = &self.ha {
            ha.validate().map_err(|m| {
                let (key, message) = m.split_once(": ").unwrap_or(("", m.as_str()));
                invalid(&format!("ha.{key}"), message.to_string())
            })?;
            if let Some(vip) = &ha.vip {
                let held = |ip: IpAddr| vip.addresses.iter().any(|a| a.addr() == ip);
                if !held(self.media.ip) {
                    return Err(invalid(
                        "media.ip",
                        "must be one of ha.vip.addresses: the standby takes calls over on it"
                            .into(),
                    ));
                }
                if !held(self.sip.listen[0].ip()) {
                    return Err(invalid(
                        "sip.listen",
                        "the first address must be one of ha.vip.addresses".into(),
                    ));
                }
            }
        }
        for (i, name) in self.calls.carry_headers.iter().enumerate() {
            let base = name.strip_suffix('*').unwrap_or(name);
            if base.is_empty()
                || !base
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(invalid(
                    &format!("calls.carry_headers[{i}]"),
                    format!("not a header name: {name:?}"),
                ));
            }
        }
        Ok(())
    }

    /// The address Tandem writes into its own headers.
    pub fn advertised(&self) -> SocketAddr {
        self.sip.advertise.unwrap_or(self.sip.listen[0])
    }

    pub fn timers(&self) -> (Duration, Duration, Duration) {
        (
            Duration::from_millis(self.sip.t1_ms),
            Duration::from_millis(self.sip.t2_ms),
            Duration::from_millis(self.sip.t4_ms),
        )
    }

    /// The trunk a source address belongs to, if any.
    pub fn trunk_for(&self, ip: IpAddr) -> Option<&TrunkConfig> {
        self.trunks
            .iter()
            .find(|t| t.networks.iter().any(|n| n.contains(&ip)))
    }
}

#[cfg(test)]
mod tests;
