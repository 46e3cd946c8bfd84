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
    /// The media-server group calls are sent to. It is also a destination
    /// group named `pool.name`, and without `[[rule]]` tables the implicit
    /// default rule sends every call to it (today's behaviour).
    pub pool: PoolConfig,
    /// More destination groups (media servers, a central PBX, carriers,
    /// a local gateway), for rules to route to.
    #[serde(default, rename = "group")]
    pub groups: Vec<GroupConfig>,
    /// Routing rules, first match wins (see `routing`). None: every call
    /// goes to `[pool]`.
    #[serde(default, rename = "rule")]
    pub rules: Vec<RuleConfig>,
    #[serde(default)]
    pub survival: SurvivalConfig,
    /// How destination-group members named by DNS (`[[group.dns]]`) are
    /// resolved.
    #[serde(default)]
    pub dns: DnsConfig,
    /// What sources that are not trusted may send, and the caps that
    /// bound what a flood costs.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// The hot-standby pair (state-sync's configuration); none: a single
    /// node.
    #[serde(default)]
    pub ha: Option<state_sync::SyncConfig>,
    /// The registrar and location service (`[registrar]`); none, or no
    /// `domains`: REGISTER is not served.
    #[serde(default)]
    pub registrar: Option<RegistrarConfig>,
    /// WANs to central sites, judged from evidence (`[[wan]]`); rules
    /// may depend on their state (`wan = "down"`).
    #[serde(default, rename = "wan")]
    pub wans: Vec<WanConfig>,
    /// How a lone node stops on SIGTERM (`[shutdown]`).
    #[serde(default)]
    pub shutdown: ShutdownConfig,
    /// Export of every SIP message to a Homer collector over HEP3
    /// (`[hep]`); none: no export.
    #[serde(default)]
    pub hep: Option<HepConfig>,
    /// Call detail records to a file of their own (`[cdr]`); none: only
    /// the `cdr` log line at info.
    #[serde(default)]
    pub cdr: Option<crate::cdr::CdrConfig>,
    /// The file this was read from, for errors found after parsing (the
    /// routing rules' compilation).
    #[serde(skip)]
    pub file: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SipConfig {
    /// The address to listen on: UDP and TCP on the same port. A list for
    /// compatibility, but exactly one address: the endpoint is one socket
    /// pair that Via, Contact and Record-Route name, so a second address
    /// would need its own endpoint and a choice of source per message.
    /// More than one is refused rather than silently left unbound.
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
    /// What a request from a source that is neither a trunk, a member nor
    /// the pair's peer gets: `"drop"` (nothing; the default) or `"403"`
    /// (one stateless 403, never retransmitted). Its source may be
    /// spoofed: either way Tandem sends no more than it received.
    #[serde(default)]
    pub unknown_source: UnknownSourceConfig,
    /// Limits of the SIP TCP listener (`[sip.tcp]`); they apply to TLS
    /// connections too.
    #[serde(default)]
    pub tcp: SipTcpConfig,
    /// SIP over TLS (`[sip.tls]`); none: no TLS listener.
    #[serde(default)]
    pub tls: Option<SipTlsConfig>,
    /// Signalling threads (see `crate::shard`): each has its own endpoint,
    /// transactions, timers and calls; an SK_REUSEPORT program steers each
    /// UDP datagram to the shard of its Call-ID. 1 (the default): one
    /// thread, as before.
    #[serde(default = "default_shards")]
    pub shards: usize,
}

fn default_shards() -> usize {
    1
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum UnknownSourceConfig {
    #[default]
    #[serde(rename = "drop")]
    Drop,
    #[serde(rename = "403")]
    Forbid,
}

/// `[sip.tls]`: a TLS listener (RFC 3261 §26.2) on the IP of `sip.listen`.
/// The certificate files are read again on SIGHUP: new handshakes then
/// use the new certificate, connections up keep theirs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SipTlsConfig {
    /// The TLS port (RFC 3261: 5061).
    #[serde(default = "default_tls_port")]
    pub port: u16,
    /// PEM certificate chain, leaf first.
    pub cert_file: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// PEM CA certificates: when set, every TLS client must present a
    /// certificate signed by one of them (mutual TLS), or the handshake
    /// fails.
    #[serde(default)]
    pub client_ca_file: Option<PathBuf>,
    /// PEM CA certificates that verify members reached over TLS
    /// (`transport = "tls"`); required when a member uses TLS.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

impl SipTlsConfig {
    /// The rustls server config from the files (read now).
    pub fn server_config(&self) -> sipcore::Result<std::sync::Arc<rustls::ServerConfig>> {
        self.server_config_with(self.client_ca_file.as_deref())
    }

    /// The listener's certificate, client certificates checked against
    /// `client_ca_file`.
    fn server_config_with(
        &self,
        client_ca_file: Option<&Path>,
    ) -> sipcore::Result<std::sync::Arc<rustls::ServerConfig>> {
        sipcore::transport::tls::server_config(&self.cert_file, &self.key_file, client_ca_file)
    }

    /// The listener's server configs (files read now): the default, and
    /// one per trunk with `tls_client_ca_file`, chosen by the client's
    /// address. Errors name the key of the file that failed.
    pub fn server_configs(
        &self,
        trunks: &[TrunkConfig],
    ) -> Result<sipcore::transport::ServerConfigs, (String, sipcore::Error)> {
        let default = self
            .server_config()
            .map_err(|e| ("sip.tls.cert_file".to_owned(), e))?;
        // Every trunk, in order, so that the trunk whose CA is checked is
        // the one the call is from (the first whose networks hold the
        // client, as routing finds it); one without a CA of its own gets
        // the default.
        let mut by_network = Vec::new();
        for (i, t) in trunks.iter().enumerate() {
            let config = match &t.tls_client_ca_file {
                Some(ca) => self
                    .server_config_with(Some(ca))
                    .map_err(|e| (format!("trunk[{i}].tls_client_ca_file"), e))?,
                None => default.clone(),
            };
            by_network.push((t.networks.clone(), config));
        }
        Ok(sipcore::transport::ServerConfigs {
            default,
            by_network,
        })
    }
}

/// `[sip.tcp]`: what one TCP peer may hold. A peer that opens connections
/// and sends nothing, or a byte at a time, otherwise holds descriptors
/// (and the table) for as long as it likes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SipTcpConfig {
    /// Open inbound connections at most; lowered at start to fit the
    /// open-file limit (raised to its hard limit) after the media relay's
    /// ports.
    #[serde(default = "default_tcp_max_connections")]
    pub max_connections: usize,
    /// Open inbound connections from one source IP (IPv6: one /64) at
    /// most; more are closed at once.
    #[serde(default = "default_tcp_max_connections_per_ip")]
    pub max_connections_per_ip: usize,
    /// A new connection is closed unless a complete message arrives within
    /// this many milliseconds.
    #[serde(default = "default_tcp_message_timeout")]
    pub first_message_timeout_ms: u64,
    /// Once a message's first byte arrived, the whole message must arrive
    /// within this many milliseconds, or the connection is closed.
    #[serde(default = "default_tcp_message_timeout")]
    pub message_timeout_ms: u64,
    /// A connection without traffic (CRLF keep-alives count) for this many
    /// seconds is closed. RFC 5626 clients ping every 95–120 s.
    #[serde(default = "default_tcp_idle_timeout")]
    pub idle_timeout_s: u64,
}

impl Default for SipTcpConfig {
    fn default() -> Self {
        SipTcpConfig {
            max_connections: default_tcp_max_connections(),
            max_connections_per_ip: default_tcp_max_connections_per_ip(),
            first_message_timeout_ms: default_tcp_message_timeout(),
            message_timeout_ms: default_tcp_message_timeout(),
            idle_timeout_s: default_tcp_idle_timeout(),
        }
    }
}

impl SipTcpConfig {
    /// The transport's settings from these keys (socket options stay at
    /// the transport's defaults).
    pub fn apply(&self, tcp: &mut sipcore::transport::TcpConfig) {
        tcp.max_connections = self.max_connections;
        tcp.max_connections_per_ip = self.max_connections_per_ip;
        tcp.first_message_timeout = Duration::from_millis(self.first_message_timeout_ms);
        tcp.message_timeout = Duration::from_millis(self.message_timeout_ms);
        tcp.idle_timeout = Duration::from_secs(self.idle_timeout_s);
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// The admin API (`/metrics`, `/status`, `/switchover`, `/notify/…`);
    /// none disables it.
    #[serde(default)]
    pub listen: Option<SocketAddr>,
    /// A file holding the admin token (one line; mode 0600 or stricter;
    /// a relative path is relative to this configuration file). Every
    /// POST needs it (`Authorization: Bearer …` or a session cookie from
    /// `/login`), and every GET too when `listen` is not a loopback
    /// address. Required then; without it POSTs are refused.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// A second token that opens `GET /metrics` only (for the scraper);
    /// when set, `/metrics` needs it or the admin token.
    #[serde(default)]
    pub metrics_token_file: Option<PathBuf>,
    /// A Unix socket serving the same API (mode 0600: its file
    /// permissions are the credential, no token is asked on it); the CLI
    /// uses it when `--config` names one. Relative to this file.
    #[serde(default)]
    pub socket: Option<PathBuf>,
    /// The token read from `token_file` when the configuration was loaded.
    #[serde(skip)]
    pub token: Option<AdminToken>,
    /// The token read from `metrics_token_file`.
    #[serde(skip)]
    pub metrics_token: Option<AdminToken>,
}

/// A token of the admin API. Its `Debug` does not show it: configurations
/// are logged.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminToken(String);

impl AdminToken {
    /// Fewer characters than this is guessable (a random token of 16
    /// base64 characters carries 96 bits).
    pub const MIN_LEN: usize = 16;
    /// A token file is one short line; a larger file is a wrong path.
    const MAX_FILE_BYTES: u64 = 4096;

    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }

    #[cfg(test)]
    pub fn for_tests(token: &str) -> Self {
        AdminToken(token.to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Reads a token file: a regular file no one but its owner may read
    /// or write (a token readable by every local user protects nothing),
    /// one line of at least [`AdminToken::MIN_LEN`] visible ASCII
    /// characters (it travels in an HTTP header); the trailing newline is
    /// dropped. The error says what is wrong, without the file's name.
    pub fn read_file(path: &Path) -> Result<AdminToken, String> {
        let bytes = state_sync::config::read_private_file(path, Self::MAX_FILE_BYTES)?;
        let text = String::from_utf8(bytes).map_err(|_| "not UTF-8 text".to_string())?;
        let token = text.strip_suffix('\n').unwrap_or(&text);
        let token = token.strip_suffix('\r').unwrap_or(token);
        if token.is_empty() {
            return Err("empty".into());
        }
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(
                "one line of visible ASCII characters expected (no spaces or control characters)"
                    .into(),
            );
        }
        if token.len() < Self::MIN_LEN {
            return Err(format!(
                "too short: at least {} characters (`head -c 32 /dev/urandom | base64`)",
                Self::MIN_LEN
            ));
        }
        Ok(AdminToken(token.to_owned()))
    }
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(…)")
    }
}

impl AdminConfig {
    /// Reads the token files and checks that a non-loopback listener has
    /// a token. `file` is the configuration file: relative token paths
    /// are relative to its directory, and errors name it.
    fn load_tokens(&mut self, file: &Path) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: String| ConfigError::Invalid {
            file: file.to_owned(),
            key: key.to_owned(),
            message,
        };
        let dir = file.parent().unwrap_or(Path::new("."));
        if let Some(socket) = &mut self.socket {
            if socket.as_os_str().is_empty() {
                return Err(invalid("admin.socket", "must not be empty".into()));
            }
            *socket = dir.join(&*socket);
        }
        let read = |key: &str, path: &Path| {
            let path = dir.join(path);
            AdminToken::read_file(&path)
                .map_err(|m| invalid(key, format!("{}: {m}", path.display())))
        };
        self.token = match &self.token_file {
            Some(path) => Some(read("admin.token_file", path)?),
            None => None,
        };
        self.metrics_token = match &self.metrics_token_file {
            Some(path) => Some(read("admin.metrics_token_file", path)?),
            None => None,
        };
        if let Some(listen) = self.listen {
            if !listen.ip().is_loopback() && self.token.is_none() {
                return Err(invalid(
                    "admin.token_file",
                    format!(
                        "required: admin.listen {listen} is not a loopback address, and the \
                         admin API must not be open to the network without a token"
                    ),
                ));
            }
        }
        Ok(())
    }
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
    /// Which sources may latch a call's media (`"strict"`: exactly the SDP
    /// address; `"signalled-ip"`: any port on the SDP's IP or on the leg's
    /// SIP source IP; `"any"`: the first packet from anyone, which lets a
    /// stranger spraying the port range take calls). New calls follow a
    /// SIGHUP reload.
    #[serde(default)]
    pub latching: media_relay::Latching,
    /// Forward latched RTP streams in the kernel (a BPF program at tc
    /// ingress of the relay's interface): `"off"` (default: the user-space
    /// relay forwards everything), `"auto"` (when the program loads and
    /// attaches, else the user-space relay and one warning saying why),
    /// `"on"` (Tandem does not start without it). Needs CAP_BPF and
    /// CAP_NET_ADMIN. Read at start only.
    #[serde(default)]
    pub fast_path: media_relay::FastPathMode,
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
    /// Calls from this trunk at once, at most; more are answered 503 with
    /// Retry-After. None: no cap of its own (`limits.max_calls` still
    /// applies).
    #[serde(default)]
    pub max_calls: Option<usize>,
    /// PEM CA certificates: a TLS client connecting from this trunk's
    /// networks must present a certificate signed by one of them (its
    /// handshake fails otherwise), whatever `sip.tls.client_ca_file` says.
    /// Needs `[sip.tls]`. The trunk is the first whose networks hold the
    /// client, as for routing. Read again on SIGHUP with the listener's
    /// certificate.
    #[serde(default)]
    pub tls_client_ca_file: Option<PathBuf>,
}

/// `[shutdown]`: what SIGTERM does on a node that serves calls without a
/// standby to hand them to (a pair's active node switches over instead).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShutdownConfig {
    /// New calls are refused (503 + Retry-After) and the calls up may end
    /// normally for this long; then the rest get a BYE on both legs
    /// (Reason `shutdown`, CDR reason `shutdown`) and the process exits.
    #[serde(default = "default_drain_s")]
    pub drain_s: u64,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        ShutdownConfig {
            drain_s: default_drain_s(),
        }
    }
}

fn default_drain_s() -> u64 {
    30
}

/// Longest drain accepted: systemd's stop timeout must cover it, and an
/// hour is already more than any on-call engineer wants to wait.
const MAX_DRAIN_S: u64 = 3600;

/// `[limits]`. Trusted sources — the trunks' networks, the destination
/// groups' members (DNS-resolved ones included) and the HA peer — are
/// never rate-limited or banned; every other source (a stranger) is, per
/// source address (per /64 for IPv6), before its messages are parsed.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Messages per second a stranger may send (its token bucket's
    /// refill); 0: strangers are not rate-limited.
    #[serde(default = "default_stranger_rate")]
    pub stranger_rate: u32,
    /// What a stranger may send at once (the bucket's size).
    #[serde(default = "default_stranger_burst")]
    pub stranger_burst: u32,
    /// A stranger over its rate is banned this long: its messages are
    /// dropped unparsed (`tandem_sip_dropped_total{reason="banned"}`).
    #[serde(default = "default_ban_s")]
    pub ban_s: u64,
    /// Strangers tracked at most (the least recently seen is forgotten
    /// first): bounds the memory a flood of spoofed sources can take.
    #[serde(default = "default_sources_tracked")]
    pub sources_tracked: usize,
    /// Strangers' messages waiting to be parsed, at most, and their share
    /// of `sip.queue_limit` (the rest is kept for trusted sources).
    #[serde(default = "default_stranger_queue")]
    pub stranger_queue: usize,
    /// Live server transactions at once (not yet finally answered, or a
    /// non-2xx waiting for its ACK), at most; a new INVITE beyond it is
    /// answered 503 with Retry-After, other requests are dropped.
    #[serde(default = "default_max_transactions")]
    pub max_transactions: usize,
    /// Of those, strangers' at most (beyond it their requests are dropped
    /// without an answer); also strangers' share of
    /// `waiting_transactions`.
    #[serde(default = "default_stranger_transactions")]
    pub stranger_transactions: usize,
    /// Server transactions finally answered and only absorbing
    /// retransmissions for up to 64*T1 (Timer J, L, I), at most, counted
    /// apart from `max_transactions` so that a sustained call rate never
    /// fills it; beyond it the oldest ends early
    /// (`tandem_sip_server_transactions_evicted_total`).
    #[serde(default = "default_waiting_transactions")]
    pub waiting_transactions: usize,
    /// Calls at once over all trunks, at most (503 with Retry-After
    /// beyond); 0: no cap.
    #[serde(default)]
    pub max_calls: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            stranger_rate: default_stranger_rate(),
            stranger_burst: default_stranger_burst(),
            ban_s: default_ban_s(),
            sources_tracked: default_sources_tracked(),
            stranger_queue: default_stranger_queue(),
            max_transactions: default_max_transactions(),
            stranger_transactions: default_stranger_transactions(),
            waiting_transactions: default_waiting_transactions(),
            max_calls: 0,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    RoundRobin,
    Sequential,
    Random,
    Weighted,
    /// A stable hash of the Call-ID onto the healthy members: every
    /// request of a call (and its retries elsewhere) is spread the same
    /// way on every node of a pair.
    HashCallId,
    /// A stable hash of the From user: one caller always lands on the
    /// same member while it is up.
    HashFromUser,
}

impl Strategy {
    /// The hash strategies pick by a key of the request, which the caller
    /// of `Pool::select_for` must pass.
    pub fn is_hash(self) -> bool {
        matches!(self, Strategy::HashCallId | Strategy::HashFromUser)
    }

    /// The name as written in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::RoundRobin => "round-robin",
            Strategy::Sequential => "sequential",
            Strategy::Random => "random",
            Strategy::Weighted => "weighted",
            Strategy::HashCallId => "hash-call-id",
            Strategy::HashFromUser => "hash-from-user",
        }
    }
}

/// How a group learns that a member is down.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Probe {
    /// OPTIONS keepalives every `health.interval_ms`.
    #[default]
    Options,
    /// No keepalives: `health.failures_to_down` consecutive failures of
    /// real requests mark a member down, and only a down member is
    /// probed until it answers again (Kamailio dispatcher's default). For
    /// carriers that do not answer OPTIONS or bill them.
    Off,
}

/// A destination group: `[[group]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupConfig {
    pub name: String,
    #[serde(default = "default_strategy")]
    pub strategy: Strategy,
    #[serde(default)]
    pub probe: Probe,
    /// Resume answered calls on another member when theirs fails (call
    /// survival). On by default: the point of media-server groups; turn
    /// it off for carriers and PBXs, which own their calls' state.
    #[serde(default = "default_true")]
    pub resume: bool,
    /// Probe timing and hysteresis. `enabled` is not used here: `probe =
    /// "off"` is the one switch.
    #[serde(default)]
    pub health: HealthConfig,
    /// Members given by address. A group needs at least one member of
    /// either kind.
    #[serde(default, rename = "member")]
    pub members: Vec<MemberConfig>,
    /// Members named by DNS, resolved per RFC 3263 (see `routing::dns`).
    #[serde(default, rename = "dns")]
    pub dns_members: Vec<DnsMemberConfig>,
}

/// Members of a group named by DNS: `[[group.dns]]`. Exactly one of
/// `name`, `srv`, `host` is given.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsMemberConfig {
    /// A SIP domain, resolved as RFC 3263 §4 says: NAPTR, then SRV, then
    /// A/AAAA on port 5060.
    #[serde(default)]
    pub name: Option<String>,
    /// An SRV name (`_sip._udp.pbx.example.net`), resolved directly; its
    /// `_udp`/`_tcp` label gives the transport.
    #[serde(default)]
    pub srv: Option<String>,
    /// A host name, resolved to A/AAAA records only; with `port`.
    #[serde(default)]
    pub host: Option<String>,
    /// With `host`: the port (default 5060).
    #[serde(default)]
    pub port: Option<u16>,
    /// With `name`: only this transport's NAPTR/SRV records are used. With
    /// `host`: the transport (default UDP). With `srv`: must agree with
    /// its label.
    #[serde(default)]
    pub transport: Option<MemberTransport>,
}

/// `[dns]`: the resolver of `[[group.dns]]` members.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsConfig {
    /// Name servers (`"127.0.0.53:53"`); none: those of /etc/resolv.conf.
    #[serde(default)]
    pub servers: Vec<SocketAddr>,
    /// How long one query may take before it is retried or fails.
    #[serde(default = "default_dns_timeout")]
    pub timeout_ms: u64,
    /// Resolved members are kept at least this long, whatever the TTLs
    /// say, so that a zone with TTL 0 does not make Tandem resolve for
    /// every call.
    #[serde(default = "default_dns_min_ttl")]
    pub min_ttl_s: u32,
    /// And at most this long, so that a change in DNS is seen within it
    /// even when a zone's TTLs are days.
    #[serde(default = "default_dns_max_ttl")]
    pub max_ttl_s: u32,
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            servers: Vec::new(),
            timeout_ms: default_dns_timeout(),
            min_ttl_s: default_dns_min_ttl(),
            max_ttl_s: default_dns_max_ttl(),
        }
    }
}

/// A routing rule: `[[rule]]`. Every match key given must match (none:
/// the rule matches every call); exactly one action key is given.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    pub name: String,
    /// The source's name: a `[[trunk]]` name.
    #[serde(default)]
    pub source: Option<String>,
    /// The Request-URI user, exactly.
    #[serde(default)]
    pub ruri_user: Option<String>,
    /// The Request-URI user starts with this.
    #[serde(default)]
    pub ruri_user_prefix: Option<String>,
    /// A regex found in the Request-URI user (anchor it with `^…$` to
    /// match the whole user).
    #[serde(default)]
    pub ruri_user_regex: Option<String>,
    /// The Request-URI host, exactly (ASCII case-insensitive, no port).
    #[serde(default)]
    pub ruri_host: Option<String>,
    /// The From user, exactly (a regex on it: `header = { name = "From",
    /// regex = "…" }`).
    #[serde(default)]
    pub from_user: Option<String>,
    /// A regex found in a value of the named header.
    #[serde(default)]
    pub header: Option<HeaderMatchConfig>,
    /// `"HH:MM-HH:MM"`, UTC; start inclusive, end exclusive; it may wrap
    /// midnight (`"22:00-06:00"`).
    #[serde(default)]
    pub time: Option<String>,
    /// Action: route to this group (failover among its members).
    #[serde(default)]
    pub group: Option<String>,
    /// Action: answer 302 with this group's members as Contacts.
    #[serde(default)]
    pub redirect: Option<String>,
    /// Action: answer with this status.
    #[serde(default)]
    pub reject: Option<RejectConfig>,
    /// Action: the registrar's bindings of the AOR `user@domain` (the
    /// Request-URI user after `strip`/`prefix`/`replace`; the Request-URI
    /// host when it is a registrar domain, else the first domain).
    #[serde(default)]
    pub location: Option<bool>,
    /// With `location`: ring every contact at once (`parallel`, the
    /// default) or one after another by q (`sequential`).
    #[serde(default)]
    pub fork: Option<ForkMode>,
    /// With `location = true, fork = "sequential"`: how long one contact
    /// rings before the next is tried (seconds; default 20).
    #[serde(default)]
    pub fork_timeout_s: Option<u32>,
    /// With `location`: the group that gets the call when the AOR has no
    /// contact (a voicemail group); none: 404. With `group`: the group
    /// that gets the call, once, when no member of `group` is left to
    /// try (all down, or each failed: no answer in time, 5xx) — a branch's
    /// local gateway behind its central PBX, so a call placed before the
    /// WAN is judged down still gets out; none: 503.
    #[serde(default)]
    pub fallback: Option<String>,
    /// Matches only while the WAN is `"down"` (or `"up"`): the branch's
    /// fallback routes are ordinary rules.
    #[serde(default)]
    pub wan: Option<WanCondition>,
    /// Which `[[wan]]` `wan` means (needed when there are several).
    #[serde(default)]
    pub wan_name: Option<String>,
    /// With `group` or `redirect`: drop this many leading characters of
    /// the Request-URI user. Applied first.
    #[serde(default)]
    pub strip: Option<usize>,
    /// With `group` or `redirect`: then put this in front of the user.
    #[serde(default)]
    pub prefix: Option<String>,
    /// With `group` or `redirect`: then replace the first match of
    /// `regex` in the user by `with` (`$1`, `${1}`: captures).
    #[serde(default)]
    pub replace: Option<ReplaceConfig>,
}

/// A rule's WAN condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WanCondition {
    Up,
    Down,
}

/// `[[wan]]`: a WAN to a central site (see `crate::wan`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WanConfig {
    pub name: String,
    /// Destination groups across this WAN: their members' answers are
    /// evidence that it is up.
    #[serde(default)]
    pub groups: Vec<String>,
    /// SIP hosts across the WAN probed with OPTIONS of the WAN's own (any
    /// answer, even an error, shows the path alive), besides the members
    /// of `groups` — give hosts that answer OPTIONS when the media servers
    /// do not.
    #[serde(default)]
    pub probe_hosts: Vec<SocketAddr>,
    /// How often each probe target gets an OPTIONS (milliseconds).
    #[serde(default = "default_wan_probe_interval")]
    pub probe_interval_ms: u64,
    /// How long a round is (milliseconds): a round is alive when anything
    /// across the WAN answered in it.
    #[serde(default = "default_wan_round")]
    pub round_ms: u64,
    /// Rounds with no answer across the WAN before it is down.
    #[serde(default = "default_wan_failures")]
    pub failures_to_down: u32,
    /// Rounds with answers in a row before it is up again...
    #[serde(default = "default_wan_successes")]
    pub successes_to_up: u32,
    /// ...and at least this long after it went down (seconds).
    #[serde(default = "default_wan_hold_down")]
    pub hold_down_s: u64,
}

fn default_wan_probe_interval() -> u64 {
    250
}
fn default_wan_round() -> u64 {
    1000
}
fn default_wan_failures() -> u32 {
    3
}
fn default_wan_successes() -> u32 {
    5
}
fn default_wan_hold_down() -> u64 {
    10
}

impl WanConfig {
    pub fn settings(&self) -> crate::wan::WanSettings {
        crate::wan::WanSettings {
            name: self.name.clone(),
            groups: self.groups.clone(),
            probe_hosts: self.probe_hosts.clone(),
            failures_to_down: self.failures_to_down,
            successes_to_up: self.successes_to_up,
            hold_down: Duration::from_secs(self.hold_down_s),
            round: Duration::from_millis(self.round_ms),
            probe_interval: Duration::from_millis(self.probe_interval_ms),
        }
    }
}

/// How a call to an AOR with several contacts rings them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ForkMode {
    Parallel,
    Sequential,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderMatchConfig {
    pub name: String,
    pub regex: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RejectConfig {
    pub code: u16,
    pub reason: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplaceConfig {
    pub regex: String,
    pub with: String,
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

impl PoolConfig {
    /// `[pool]` as a destination group: its probes are OPTIONS unless
    /// `health.enabled` is off, and its answered calls are resumed when
    /// `survival.enabled` is on, exactly as before groups existed.
    pub fn as_group(&self, resume: bool) -> GroupConfig {
        GroupConfig {
            name: self.name.clone(),
            strategy: self.strategy,
            probe: if self.health.enabled {
                Probe::Options
            } else {
                Probe::Off
            },
            resume,
            health: self.health.clone(),
            members: self.members.clone(),
            dns_members: Vec::new(),
        }
    }
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
    /// TLS (RFC 3261 §26.2): needs `[sip.tls]` with `ca_file`, which
    /// verifies the member's certificate (for the member's IP address).
    /// Members by address only; DNS members are UDP or TCP.
    Tls,
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

/// `[hep]`: every SIP message received and sent, as HEP3 over UDP to a
/// Homer collector (see `hep`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HepConfig {
    /// The collector's `ip:port` (heplify-server listens on 9060).
    pub collector: SocketAddr,
    /// The capture agent id the collector shows (HEP chunk 12).
    #[serde(default)]
    pub agent_id: u32,
    /// The collector's password (HEP chunk 14, sent in clear); none: no
    /// authentication key.
    #[serde(default)]
    pub password: Option<String>,
    /// Messages waiting to be encoded and sent, at most; more are dropped
    /// and counted (`tandem_hep_dropped_total{reason="queue_full"}`), so a
    /// slow export never slows calls.
    #[serde(default = "default_hep_queue_limit")]
    pub queue_limit: usize,
}

fn default_hep_queue_limit() -> usize {
    4096
}

impl HepConfig {
    pub fn settings(&self) -> crate::hep::HepSettings {
        crate::hep::HepSettings {
            collector: self.collector,
            agent: crate::hep::Agent {
                id: self.agent_id,
                password: self.password.clone(),
            },
            queue_limit: self.queue_limit,
        }
    }

    fn validate(&self, invalid: &impl Fn(&str, String) -> ConfigError) -> Result<(), ConfigError> {
        if self.collector.ip().is_unspecified() || self.collector.port() == 0 {
            return Err(invalid(
                "hep.collector",
                format!("{} is not an address to send to", self.collector),
            ));
        }
        if let Some(password) = &self.password {
            // Chunk 14 is a string to the collector: printable, and short
            // enough to leave the packet room for the message.
            if password.is_empty()
                || password.len() > 256
                || password.chars().any(|c| c.is_control())
            {
                return Err(invalid(
                    "hep.password",
                    "must be 1 to 256 bytes without control characters".into(),
                ));
            }
        }
        if !(1..=1_000_000).contains(&self.queue_limit) {
            return Err(invalid(
                "hep.queue_limit",
                format!("{} is not between 1 and 1000000", self.queue_limit),
            ));
        }
        Ok(())
    }
}

/// `[registrar]`: phones register to Tandem (RFC 3261 §10) with digest
/// authentication (RFC 7616, RFC 8760).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistrarConfig {
    /// The domains served (Request-URI and To hosts of REGISTER); none:
    /// the registrar is off.
    #[serde(default)]
    pub domains: Vec<String>,
    /// The digest realm; default: the first domain.
    #[serde(default)]
    pub realm: Option<String>,
    /// Shorter registrations get 423 with Min-Expires (seconds).
    #[serde(default = "default_min_expires")]
    pub min_expires: u32,
    /// Longer ones are shortened to this (seconds).
    #[serde(default = "default_max_expires")]
    pub max_expires: u32,
    /// When a REGISTER names no expiry (seconds).
    #[serde(default = "default_default_expires")]
    pub default_expires: u32,
    /// Contacts per AOR at most.
    #[serde(default = "default_max_contacts")]
    pub max_contacts: usize,
    /// A new contact for a full AOR: `"replace-oldest"` (the binding that
    /// expires soonest goes) or `"reject"` (403).
    #[serde(default = "default_when_full")]
    pub when_full: crate::registrar::WhenFull,
    /// Bindings in all at most (beyond: 503 + Retry-After); bounds the
    /// memory phones can take.
    #[serde(default = "default_max_bindings")]
    pub max_bindings: usize,
    /// The file of HA1 hashes (`tandem passwd` writes its lines); required
    /// when `domains` is set. Read again on SIGHUP.
    #[serde(default)]
    pub credentials_file: Option<PathBuf>,
    /// Digest algorithms offered, one challenge each, in this order:
    /// `"SHA-512-256"`, `"SHA-256"`, `"MD5"`.
    #[serde(default = "default_auth_algorithms")]
    pub auth_algorithms: Vec<AuthAlgorithm>,
    /// A nonce older than this is stale (a new challenge with
    /// `stale=true`, no failure counted).
    #[serde(default = "default_nonce_lifetime")]
    pub nonce_lifetime_s: u64,
    /// Failed authentications of one (source address, user) within
    /// `auth_failure_window_s` before that pair is ignored for
    /// `auth_failure_ban_s`.
    #[serde(default = "default_max_auth_failures")]
    pub max_auth_failures: u32,
    #[serde(default = "default_auth_failure_window")]
    pub auth_failure_window_s: u64,
    #[serde(default = "default_auth_failure_ban")]
    pub auth_failure_ban_s: u64,
    /// Bindings are written here (atomically) and read at start, so that
    /// a lone node's restart keeps them; none: not kept.
    #[serde(default)]
    pub snapshot_file: Option<PathBuf>,
    /// INVITEs from registered phones (From in a served domain, from a
    /// source that is not a trunk) must authenticate (407).
    #[serde(default = "default_true")]
    pub authenticate_invites: bool,
    /// Dual registration (`[registrar.upstream]`): the phones' AORs are
    /// registered with the central registrar too, Contact = Tandem.
    #[serde(default)]
    pub upstream: Option<UpstreamConfig>,
}

/// `[registrar.upstream]`: Tandem registers every AOR that has local
/// bindings with the central registrar on the phone's behalf (see
/// `crate::upstream`).
///
/// The centre is one address, not a destination group: a registration
/// lives at one registrar (a group's failover would scatter an AOR's
/// bindings over several), and the call path uses no DNS.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// The central registrar, `IP:port`.
    pub registrar: SocketAddr,
    /// The central digest realm; its HA1 lines are in
    /// `registrar.credentials_file` (`tandem passwd --realm REALM ...`).
    pub realm: String,
    /// The AOR domain at the centre; default: the first of
    /// `registrar.domains`.
    #[serde(default)]
    pub domain: Option<String>,
    /// The registration time asked for (seconds).
    #[serde(default = "default_upstream_expires")]
    pub expires_s: u32,
    /// Renewals after a WAN outage, a start or a takeover are spread over
    /// this many seconds (no registration storm at the centre).
    #[serde(default = "default_renew_window")]
    pub renew_window_s: u64,
    /// The `[[wan]]` the centre lies across: while it is down nothing is
    /// sent upstream.
    #[serde(default)]
    pub wan: Option<String>,
}

fn default_upstream_expires() -> u32 {
    600
}
fn default_renew_window() -> u64 {
    60
}

impl UpstreamConfig {
    fn validate(
        &self,
        wans: &[WanConfig],
        invalid: &impl Fn(&str, String) -> ConfigError,
    ) -> Result<(), ConfigError> {
        if !is_realm(&self.realm) {
            return Err(invalid(
                "registrar.upstream.realm",
                "must be 1 to 128 characters without quotes, backslashes or control characters"
                    .into(),
            ));
        }
        if let Some(domain) = &self.domain {
            if !is_domain(domain) {
                return Err(invalid(
                    "registrar.upstream.domain",
                    format!(
                        "{domain:?} is not a host name or IP address (no scheme, user or port)"
                    ),
                ));
            }
        }
        if !(60..=86_400).contains(&self.expires_s) {
            return Err(invalid(
                "registrar.upstream.expires_s",
                "must be 60 to 86400".into(),
            ));
        }
        if !(1..=3600).contains(&self.renew_window_s) {
            return Err(invalid(
                "registrar.upstream.renew_window_s",
                "must be 1 to 3600".into(),
            ));
        }
        if self.registrar.port() == 0 || self.registrar.ip().is_unspecified() {
            return Err(invalid(
                "registrar.upstream.registrar",
                "must be an address and port to send to".into(),
            ));
        }
        match &self.wan {
            Some(wan) if !wans.iter().any(|w| &w.name == wan) => Err(invalid(
                "registrar.upstream.wan",
                format!("no [[wan]] named {wan:?}"),
            )),
            _ => Ok(()),
        }
    }
}

/// A digest algorithm as named in the configuration (RFC 7616 §3.3, RFC
/// 8760 §2); the `-sess` variants are not supported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum AuthAlgorithm {
    #[serde(rename = "MD5")]
    Md5,
    #[serde(rename = "SHA-256")]
    Sha256,
    #[serde(rename = "SHA-512-256")]
    Sha512_256,
}

impl AuthAlgorithm {
    pub fn algorithm(self) -> sipcore::digest::Algorithm {
        match self {
            AuthAlgorithm::Md5 => sipcore::digest::Algorithm::Md5,
            AuthAlgorithm::Sha256 => sipcore::digest::Algorithm::Sha256,
            AuthAlgorithm::Sha512_256 => sipcore::digest::Algorithm::Sha512_256,
        }
    }
}

impl RegistrarConfig {
    /// Whether REGISTER is served (some domain is configured).
    pub fn enabled(&self) -> bool {
        !self.domains.is_empty()
    }

    /// The digest realm: `realm`, else the first domain (lower-case).
    pub fn realm(&self) -> String {
        match &self.realm {
            Some(realm) => realm.clone(),
            None => self
                .domains
                .first()
                .map(|d| d.to_ascii_lowercase())
                .unwrap_or_default(),
        }
    }

    pub fn settings(&self) -> crate::registrar::RegistrarSettings {
        crate::registrar::RegistrarSettings {
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
            authenticate_invites: self.authenticate_invites,
        }
    }

    /// The authenticator's settings.
    pub fn auth_settings(&self) -> crate::registrar::auth::AuthSettings {
        crate::registrar::auth::AuthSettings {
            realm: self.realm(),
            algorithms: self.auth_algorithms.iter().map(|a| a.algorithm()).collect(),
            nonce_lifetime: Duration::from_secs(self.nonce_lifetime_s),
            max_failures: self.max_auth_failures,
            failure_window: Duration::from_secs(self.auth_failure_window_s),
            failure_ban: Duration::from_secs(self.auth_failure_ban_s),
        }
    }

    fn validate(&self, invalid: &impl Fn(&str, String) -> ConfigError) -> Result<(), ConfigError> {
        let mut seen = std::collections::HashSet::new();
        for (i, domain) in self.domains.iter().enumerate() {
            let key = format!("registrar.domains[{i}]");
            if !is_domain(domain) {
                return Err(invalid(
                    &key,
                    format!(
                        "{domain:?} is not a host name or IP address (no scheme, user or port)"
                    ),
                ));
            }
            if !seen.insert(domain.to_ascii_lowercase()) {
                return Err(invalid(&key, format!("{domain:?} is listed twice")));
            }
        }
        if let Some(realm) = &self.realm {
            // Sent inside a quoted string of every challenge.
            if !is_realm(realm) {
                return Err(invalid(
                    "registrar.realm",
                    "must be 1 to 128 characters without quotes, backslashes or control characters"
                        .into(),
                ));
            }
        }
        if self.min_expires == 0 {
            return Err(invalid(
                "registrar.min_expires",
                "must be at least 1".into(),
            ));
        }
        if self.max_expires < self.min_expires {
            return Err(invalid(
                "registrar.max_expires",
                format!(
                    "must be at least registrar.min_expires ({})",
                    self.min_expires
                ),
            ));
        }
        if !(self.min_expires..=self.max_expires).contains(&self.default_expires) {
            return Err(invalid(
                "registrar.default_expires",
                format!(
                    "must be between registrar.min_expires ({}) and registrar.max_expires ({})",
                    self.min_expires, self.max_expires
                ),
            ));
        }
        if !(1..=100).contains(&self.max_contacts) {
            return Err(invalid("registrar.max_contacts", "must be 1 to 100".into()));
        }
        if !(1..=10_000_000).contains(&self.max_bindings) {
            return Err(invalid(
                "registrar.max_bindings",
                "must be 1 to 10000000".into(),
            ));
        }
        if self.enabled() && self.credentials_file.is_none() {
            return Err(invalid(
                "registrar.credentials_file",
                "required when registrar.domains is set (phones must authenticate)".into(),
            ));
        }
        if self.auth_algorithms.is_empty() {
            return Err(invalid(
                "registrar.auth_algorithms",
                "at least one is needed".into(),
            ));
        }
        for (i, a) in self.auth_algorithms.iter().enumerate() {
            if self.auth_algorithms[..i].contains(a) {
                return Err(invalid(
                    &format!("registrar.auth_algorithms[{i}]"),
                    "listed twice".into(),
                ));
            }
        }
        for (key, value) in [
            ("registrar.nonce_lifetime_s", self.nonce_lifetime_s),
            (
                "registrar.max_auth_failures",
                u64::from(self.max_auth_failures),
            ),
            (
                "registrar.auth_failure_window_s",
                self.auth_failure_window_s,
            ),
            ("registrar.auth_failure_ban_s", self.auth_failure_ban_s),
        ] {
            if value == 0 {
                return Err(invalid(key, "must be at least 1".into()));
            }
        }
        if let Some(file) = &self.snapshot_file {
            // Caught by `tandem check`, not at the first write minutes later.
            if file.is_dir() {
                return Err(invalid(
                    "registrar.snapshot_file",
                    format!("{} is a directory", file.display()),
                ));
            }
            match file.parent() {
                Some(dir) if !dir.as_os_str().is_empty() && !dir.is_dir() => {
                    return Err(invalid(
                        "registrar.snapshot_file",
                        format!("directory {} does not exist", dir.display()),
                    ));
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// A digest realm: sent inside a quoted string of every challenge.
fn is_realm(realm: &str) -> bool {
    !realm.is_empty()
        && realm.len() <= 128
        && !realm
            .chars()
            .any(|c| c == '"' || c == '\\' || c.is_control())
}

/// A host name or IP address as it appears in a SIP URI, nothing else.
fn is_domain(domain: &str) -> bool {
    let uri = format!("sip:{domain}");
    sipcore::message::Uri::parse(&uri).is_ok_and(|u| {
        u.user.is_none()
            && u.port.is_none()
            && u.params.is_empty()
            && u.headers.is_empty()
            && u.host == domain
    })
}

fn default_min_expires() -> u32 {
    60
}
fn default_max_expires() -> u32 {
    3600
}
fn default_default_expires() -> u32 {
    3600
}
fn default_max_contacts() -> usize {
    5
}
fn default_when_full() -> crate::registrar::WhenFull {
    crate::registrar::WhenFull::ReplaceOldest
}
fn default_max_bindings() -> usize {
    200_000
}
/// MD5 alone: Debian's SIPp and baresip fail on any other challenge in
/// the 401 (see `registrar::auth::DEFAULT_ALGORITHMS`).
fn default_auth_algorithms() -> Vec<AuthAlgorithm> {
    vec![AuthAlgorithm::Md5]
}
fn default_nonce_lifetime() -> u64 {
    300
}
fn default_max_auth_failures() -> u32 {
    10
}
fn default_auth_failure_window() -> u64 {
    60
}
fn default_auth_failure_ban() -> u64 {
    300
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
fn default_tls_port() -> u16 {
    5061
}
fn default_tcp_max_connections() -> usize {
    16 * 1024
}
fn default_tcp_max_connections_per_ip() -> usize {
    64
}
fn default_tcp_message_timeout() -> u64 {
    10_000
}
fn default_tcp_idle_timeout() -> u64 {
    300
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
fn default_stranger_rate() -> u32 {
    20
}
fn default_stranger_burst() -> u32 {
    40
}
fn default_ban_s() -> u64 {
    60
}
fn default_sources_tracked() -> usize {
    65536
}
fn default_stranger_queue() -> usize {
    256
}
fn default_max_transactions() -> usize {
    100_000
}
fn default_stranger_transactions() -> usize {
    5_000
}
/// 10,000 calls a second, each leaving two server transactions (its INVITE
/// and one BYE) waiting 32 s.
fn default_waiting_transactions() -> usize {
    640_000
}
fn default_dns_timeout() -> u64 {
    2000
}
fn default_dns_min_ttl() -> u32 {
    10
}
fn default_dns_max_ttl() -> u32 {
    3600
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
        let mut config: Config = toml::from_str(text).map_err(|e| ConfigError::Syntax {
            file: file.to_owned(),
            message: e.to_string().trim_end().replace('\n', " "),
        })?;
        config.file = file.to_owned();
        config.validate(file)?;
        config.admin.load_tokens(file)?;
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
        if self.sip.listen.len() > 1 {
            return Err(invalid(
                "sip.listen",
                format!(
                    "exactly one address is supported, {} given (only one would be bound)",
                    self.sip.listen.len()
                ),
            ));
        }
        if self.sip.advertise.is_none() && self.sip.listen[0].ip().is_unspecified() {
            return Err(invalid(
                "sip.advertise",
                "required when sip.listen[0] is a wildcard address".into(),
            ));
        }
        self.validate_shards(&invalid)?;
        let tcp = &self.sip.tcp;
        if tcp.max_connections == 0 {
            return Err(invalid(
                "sip.tcp.max_connections",
                "must be at least 1".into(),
            ));
        }
        if tcp.max_connections_per_ip == 0 || tcp.max_connections_per_ip > tcp.max_connections {
            return Err(invalid(
                "sip.tcp.max_connections_per_ip",
                format!(
                    "must be between 1 and max_connections ({})",
                    tcp.max_connections
                ),
            ));
        }
        for (key, ms) in [
            (
                "sip.tcp.first_message_timeout_ms",
                tcp.first_message_timeout_ms,
            ),
            ("sip.tcp.message_timeout_ms", tcp.message_timeout_ms),
        ] {
            if !(100..=600_000).contains(&ms) {
                return Err(invalid(key, format!("{ms} is not between 100 and 600000")));
            }
        }
        if self.shutdown.drain_s > MAX_DRAIN_S {
            return Err(invalid(
                "shutdown.drain_s",
                format!(
                    "{} is more than {MAX_DRAIN_S} (an hour)",
                    self.shutdown.drain_s
                ),
            ));
        }
        if tcp.idle_timeout_s == 0 {
            return Err(invalid(
                "sip.tcp.idle_timeout_s",
                "must be at least 1".into(),
            ));
        }
        if let Some(tls) = &self.sip.tls {
            if tls.port == self.sip.listen[0].port() && tls.port != 0 {
                return Err(invalid(
                    "sip.tls.port",
                    "must differ from the port of sip.listen (TCP is bound there)".into(),
                ));
            }
            // Read the files now, so that `tandem check` and a SIGHUP
            // refuse a certificate that would not load.
            tls.server_configs(&self.trunks)
                .map_err(|(key, e)| invalid(&key, e.to_string()))?;
            if let Some(ca) = &tls.ca_file {
                sipcore::transport::tls::client_config(ca)
                    .map_err(|e| invalid("sip.tls.ca_file", e.to_string()))?;
            }
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
            if t.max_calls == Some(0) {
                return Err(invalid(
                    &format!("trunk[{i}].max_calls"),
                    "must be at least 1 (leave it out for no cap)".into(),
                ));
            }
            if t.tls_client_ca_file.is_some() && self.sip.tls.is_none() {
                return Err(invalid(
                    &format!("trunk[{i}].tls_client_ca_file"),
                    "needs [sip.tls] (a TLS listener)".into(),
                ));
            }
        }
        self.validate_limits(&invalid)?;
        if let Some(r) = &self.registrar {
            if r.enabled() {
                if let Some(i) = self
                    .trunks
                    .iter()
                    .position(|t| t.name == crate::b2bua::PHONE_SOURCE)
                {
                    return Err(invalid(
                        &format!("trunk[{i}].name"),
                        "\"phone\" names the calls of registered phones in rules; choose another trunk name".into(),
                    ));
                }
            }
        }
        let tls_out = self.sip.tls.as_ref().is_some_and(|t| t.ca_file.is_some());
        validate_group(&self.pool.as_group(true), "pool", tls_out, &invalid)?;
        let mut groups = std::collections::HashSet::from([self.pool.name.as_str()]);
        for (i, g) in self.groups.iter().enumerate() {
            let key = format!("group[{i}]");
            if !groups.insert(g.name.as_str()) {
                return Err(invalid(
                    &format!("{key}.name"),
                    format!(
                        "duplicate group name {:?} (`pool.name` is a group too)",
                        g.name
                    ),
                ));
            }
            if !g.health.enabled {
                return Err(invalid(
                    &format!("{key}.health.enabled"),
                    "not used in a group: `probe = \"off\"` turns the keepalives off".into(),
                ));
            }
            validate_group(g, &key, tls_out, &invalid)?;
        }
        // A member is known by its name everywhere (health records,
        // metrics, CDRs): one name, one member, across all groups.
        let mut members = std::collections::HashSet::new();
        let all = std::iter::once(("pool".to_owned(), &self.pool.members)).chain(
            self.groups
                .iter()
                .enumerate()
                .map(|(i, g)| (format!("group[{i}]"), &g.members)),
        );
        for (key, group_members) in all {
            for (i, m) in group_members.iter().enumerate() {
                if !members.insert(m.name.as_str()) {
                    return Err(invalid(
                        &format!("{key}.member[{i}].name"),
                        format!("{:?} is already a member of another group", m.name),
                    ));
                }
            }
        }
        self.validate_rules(&groups, &invalid)?;
        self.validate_dns(&invalid)?;
        if let Some(registrar) = &self.registrar {
            registrar.validate(&invalid)?;
            if let Some(upstream) = &registrar.upstream {
                if !registrar.enabled() {
                    return Err(invalid(
                        "registrar.upstream",
                        "needs the registrar: registrar.domains".into(),
                    ));
                }
                upstream.validate(&self.wans, &invalid)?;
            }
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
            if !is_header_name(base) {
                return Err(invalid(
                    &format!("calls.carry_headers[{i}]"),
                    format!("not a header name: {name:?}"),
                ));
            }
        }
        if let Some(hep) = &self.hep {
            hep.validate(&invalid)?;
        }
        if let Some(cdr) = &self.cdr {
            cdr.validate(&invalid)?;
        }
        // What only compiling tells: regexes, time windows.
        crate::routing::Router::compile(self)?;
        Ok(())
    }

    /// `sip.shards`: its range, and the parts of Tandem that keep one
    /// state for the whole node and are not shared between shards yet
    /// (refused rather than run per shard, which would be wrong: a cap
    /// per shard, a registrar that knows half the phones, a pair that
    /// replicates one shard).
    fn validate_shards(
        &self,
        invalid: &impl Fn(&str, String) -> ConfigError,
    ) -> Result<(), ConfigError> {
        let shards = self.sip.shards;
        if !(1..=crate::shard::MAX_SHARDS).contains(&shards) {
            return Err(invalid(
                "sip.shards",
                format!("{shards} is not between 1 and {}", crate::shard::MAX_SHARDS),
            ));
        }
        if shards == 1 {
            return Ok(());
        }
        let not_yet = |with: &str| {
            invalid(
                "sip.shards",
                format!("sip.shards > 1 is not yet supported with {with}"),
            )
        };
        if self.ha.is_some() {
            return Err(not_yet("[ha]"));
        }
        if self.registrar.is_some() {
            return Err(not_yet("[registrar]"));
        }
        if !self.wans.is_empty() {
            return Err(not_yet("[[wan]]"));
        }
        // `[cdr]` (one writer, a sender per shard) and the call caps (a
        // node-wide tally, `shard::tally`) are shared; the rest keep one
        // state for the node that one shard alone cannot keep.
        if self.sip.tls.is_some() {
            return Err(not_yet("[sip.tls]"));
        }
        Ok(())
    }

    fn validate_limits(
        &self,
        invalid: &impl Fn(&str, String) -> ConfigError,
    ) -> Result<(), ConfigError> {
        let l = &self.limits;
        if l.stranger_rate > 0 && l.stranger_burst == 0 {
            return Err(invalid(
                "limits.stranger_burst",
                "must be at least 1 (limits.stranger_rate = 0 turns the limit off)".into(),
            ));
        }
        if l.ban_s == 0 {
            return Err(invalid("limits.ban_s", "must be at least 1".into()));
        }
        if !(1..=10_000_000).contains(&l.sources_tracked) {
            return Err(invalid(
                "limits.sources_tracked",
                "must be 1 to 10000000".into(),
            ));
        }
        if l.stranger_queue == 0 || l.stranger_queue >= self.sip.queue_limit {
            return Err(invalid(
                "limits.stranger_queue",
                format!(
                    "must be at least 1 and below sip.queue_limit ({}): the rest is kept for trusted sources",
                    self.sip.queue_limit
                ),
            ));
        }
        if l.max_transactions == 0 {
            return Err(invalid(
                "limits.max_transactions",
                "must be at least 1".into(),
            ));
        }
        if l.stranger_transactions >= l.max_transactions {
            return Err(invalid(
                "limits.stranger_transactions",
                format!(
                    "must be below limits.max_transactions ({}): the rest is kept for trusted sources",
                    l.max_transactions
                ),
            ));
        }
        if l.waiting_transactions <= l.stranger_transactions {
            return Err(invalid(
                "limits.waiting_transactions",
                format!(
                    "must be above limits.stranger_transactions ({}), strangers' share of it: the rest is kept for trusted sources",
                    l.stranger_transactions
                ),
            ));
        }
        Ok(())
    }

    fn validate_dns(
        &self,
        invalid: &impl Fn(&str, String) -> ConfigError,
    ) -> Result<(), ConfigError> {
        let d = &self.dns;
        if d.timeout_ms == 0 {
            return Err(invalid("dns.timeout_ms", "must be > 0".into()));
        }
        if d.max_ttl_s == 0 {
            return Err(invalid("dns.max_ttl_s", "must be > 0".into()));
        }
        if d.min_ttl_s > d.max_ttl_s {
            return Err(invalid(
                "dns.min_ttl_s",
                format!("must be <= dns.max_ttl_s ({})", d.max_ttl_s),
            ));
        }
        for (i, g) in self.groups.iter().enumerate() {
            for (j, m) in g.dns_members.iter().enumerate() {
                if m.transport == Some(MemberTransport::Tls) {
                    return Err(invalid(
                        &format!("group[{i}].dns[{j}].transport"),
                        "\"tls\" is for members by address (DNS members: udp or tcp)".into(),
                    ));
                }
                crate::routing::dns::DnsTarget::from_config(m).map_err(|(k, message)| {
                    invalid(&format!("group[{i}].dns[{j}].{k}"), message)
                })?;
            }
        }
        Ok(())
    }

    fn validate_rules(
        &self,
        groups: &std::collections::HashSet<&str>,
        invalid: &impl Fn(&str, String) -> ConfigError,
    ) -> Result<(), ConfigError> {
        let mut wan_names = std::collections::HashSet::new();
        for (i, w) in self.wans.iter().enumerate() {
            let key = |k: &str| format!("wan[{i}].{k}");
            if w.name.is_empty() || !wan_names.insert(w.name.as_str()) {
                return Err(invalid(&key("name"), "must be non-empty and unique".into()));
            }
            if w.groups.is_empty() && w.probe_hosts.is_empty() {
                return Err(invalid(
                    &key("groups"),
                    "a WAN needs evidence: groups across it, probe_hosts, or both".into(),
                ));
            }
            if let Some(g) = w.groups.iter().find(|g| !groups.contains(g.as_str())) {
                return Err(invalid(&key("groups"), format!("unknown group {g:?}")));
            }
            if w.failures_to_down == 0 || w.successes_to_up == 0 {
                return Err(invalid(
                    &key("failures_to_down"),
                    "failures_to_down and successes_to_up must be at least 1".into(),
                ));
            }
            // Below 50 ms the probes are a load, not evidence; a probe
            // interval longer than the round leaves rounds without a try.
            if w.probe_interval_ms < 50 || w.round_ms < w.probe_interval_ms {
                return Err(invalid(
                    &key("probe_interval_ms"),
                    format!(
                        "must be >= 50 and <= round_ms ({}), is {}",
                        w.round_ms, w.probe_interval_ms
                    ),
                ));
            }
        }
        let mut names = std::collections::HashSet::new();
        for (i, r) in self.rules.iter().enumerate() {
            let key = |k: &str| format!("rule[{i}].{k}");
            if r.wan.is_some() {
                let named = match &r.wan_name {
                    Some(n) => wan_names.contains(n.as_str()),
                    None => self.wans.len() == 1,
                };
                if !named {
                    return Err(invalid(
                        &key("wan_name"),
                        "wan needs a [[wan]]: the only one, or the one wan_name names".into(),
                    ));
                }
            } else if r.wan_name.is_some() {
                return Err(invalid(
                    &key("wan_name"),
                    "goes with wan = \"down\" or \"up\"".into(),
                ));
            }
            if r.name.is_empty() {
                return Err(invalid(&key("name"), "must not be empty".into()));
            }
            if !names.insert(&r.name) {
                return Err(invalid(
                    &key("name"),
                    format!("duplicate rule name {:?}", r.name),
                ));
            }
            if let Some(source) = &r.source {
                let phones = source == crate::b2bua::PHONE_SOURCE && self.registrar_enabled();
                if !phones && !self.trunks.iter().any(|t| &t.name == source) {
                    return Err(invalid(
                        &key("source"),
                        format!("unknown source {source:?}: not a [[trunk]] name"),
                    ));
                }
            }
            let user_forms = [&r.ruri_user, &r.ruri_user_prefix, &r.ruri_user_regex];
            if user_forms.iter().filter(|f| f.is_some()).count() > 1 {
                return Err(invalid(
                    &key("ruri_user"),
                    "give one of ruri_user, ruri_user_prefix, ruri_user_regex".into(),
                ));
            }
            if let Some(h) = &r.header {
                if !is_header_name(&h.name) {
                    return Err(invalid(
                        &key("header.name"),
                        format!("not a header name: {:?}", h.name),
                    ));
                }
            }
            let actions = [
                r.group.is_some(),
                r.redirect.is_some(),
                r.reject.is_some(),
                r.location.is_some(),
            ];
            if actions.iter().filter(|a| **a).count() != 1 {
                return Err(invalid(
                    &key("group"),
                    "exactly one action is needed: group, redirect, reject or location".into(),
                ));
            }
            match r.location {
                Some(true) if !self.registrar_enabled() => {
                    return Err(invalid(
                        &key("location"),
                        "needs the registrar: a [registrar] table with domains".into(),
                    ))
                }
                Some(false) => {
                    return Err(invalid(
                        &key("location"),
                        "only `location = true` is an action".into(),
                    ))
                }
                _ => {}
            }
            if r.location.is_none() && (r.fork.is_some() || r.fork_timeout_s.is_some()) {
                return Err(invalid(
                    &key("fork"),
                    "fork and fork_timeout_s go with location = true".into(),
                ));
            }
            if r.location.is_none() && r.group.is_none() && r.fallback.is_some() {
                return Err(invalid(
                    &key("fallback"),
                    "goes with location = true or group".into(),
                ));
            }
            if let Some(g) = &r.fallback {
                if !groups.contains(g.as_str()) {
                    return Err(invalid(&key("fallback"), format!("unknown group {g:?}")));
                }
            }
            for (k, target) in [("group", &r.group), ("redirect", &r.redirect)] {
                if let Some(target) = target {
                    if !groups.contains(target.as_str()) {
                        let mut known: Vec<&str> = groups.iter().copied().collect();
                        known.sort_unstable();
                        return Err(invalid(
                            &key(k),
                            format!("unknown group {target:?} (groups: {})", known.join(", ")),
                        ));
                    }
                }
            }
            if let Some(reject) = &r.reject {
                if !(300..=699).contains(&reject.code) {
                    return Err(invalid(
                        &key("reject.code"),
                        format!("{} is not a 3xx-6xx status", reject.code),
                    ));
                }
                if reject.reason.is_empty() || reject.reason.contains(['\r', '\n']) {
                    return Err(invalid(
                        &key("reject.reason"),
                        "must be one non-empty line".into(),
                    ));
                }
            }
            if r.reject.is_some() {
                for (k, given) in [
                    ("strip", r.strip.is_some()),
                    ("prefix", r.prefix.is_some()),
                    ("replace", r.replace.is_some()),
                ] {
                    if given {
                        return Err(invalid(
                            &key(k),
                            "only with group or redirect: a rejected call has no Request-URI to rewrite"
                                .into(),
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// Every destination group: `[pool]` first, then the `[[group]]`
    /// tables in file order.
    pub fn destination_groups(&self) -> Vec<GroupConfig> {
        std::iter::once(self.pool.as_group(self.survival.enabled))
            .chain(self.groups.iter().cloned())
            .collect()
    }

    /// The call machine's settings, as plain values.
    pub fn machine_settings(&self) -> crate::b2bua::Settings {
        use crate::b2bua::settings::SurvivalSettings;
        let s = &self.survival;
        let (t1, t2, _) = self.timers();
        let groups = self.destination_groups();
        let probed = groups.iter().filter(|g| g.probe == Probe::Options);
        crate::b2bua::Settings {
            advertised: self.advertised(),
            advertised_tls: self
                .sip
                .tls
                .as_ref()
                .map(|t| SocketAddr::new(self.advertised().ip(), t.port)),
            t1,
            t2,
            max_duration_s: self.calls.max_duration_s,
            media_timeout_s: self.calls.media_timeout_s,
            member_answer_timeout: Duration::from_millis(self.calls.member_answer_timeout_ms),
            // One tick for all probing groups: the shortest interval; each
            // member is probed at its own group's interval on that tick.
            probing: probed.clone().next().is_some(),
            // The tick also carries the WANs' probes and rounds.
            probe_interval: Duration::from_millis(
                probed
                    .map(|g| g.health.interval_ms)
                    .chain(self.wans.iter().map(|w| w.probe_interval_ms))
                    .min()
                    .unwrap_or(1000),
            ),
            max_calls: self.limits.max_calls,
            survival: SurvivalSettings {
                enabled: s.enabled,
                resume_rate: s.resume_rate,
                media_silence_ms: s.media_silence_ms,
                suspect_probe_timeout_ms: s.suspect_probe_timeout_ms,
                media_dead_min_calls: s.media_dead_min_calls,
                in_dialog_failure: s.in_dialog_failure,
                hold_on_no_server: s.on_no_server == OnNoServer::Hold,
                hold_retry_s: s.hold_retry_s,
            },
            unknown_source: match self.sip.unknown_source {
                UnknownSourceConfig::Drop => crate::b2bua::UnknownSource::Drop,
                UnknownSourceConfig::Forbid => crate::b2bua::UnknownSource::Forbid,
            },
            pair_peers: self
                .ha
                .iter()
                .flat_map(|ha| std::iter::once(ha.link).chain(ha.aux))
                .map(|link| link.peer.ip())
                .collect(),
            wans: self.wans.iter().map(WanConfig::settings).collect(),
        }
    }

    /// The key of the branches Tandem makes and accepts answers to: from
    /// the pair's shared secret (so the standby recognises answers to
    /// what the old active sent), else a random key of this process.
    /// Reads the secret file again (validated when the config was read).
    pub fn branch_key(&self) -> Result<sipcore::transaction::BranchKey, String> {
        self.pair_keyed(
            sipcore::transaction::BranchKey::from_secret,
            sipcore::transaction::BranchKey::random,
        )
    }

    /// A key derived from the pair's secret (the same on both nodes), or
    /// `random()` without a pair.
    fn pair_keyed<K>(
        &self,
        from_secret: impl FnOnce(&[u8]) -> K,
        random: impl FnOnce() -> K,
    ) -> Result<K, String> {
        match &self.ha {
            Some(ha) => ha
                .load_secret()
                .map(|secret| from_secret(&secret))
                .map_err(|e| format!("ha.{e}")),
            None => Ok(random()),
        }
    }

    /// The key of the registrar's digest nonces: from the pair's secret
    /// (both nodes accept each other's nonces, so a takeover does not
    /// challenge every phone again), else one of this process.
    pub fn nonce_key(&self) -> Result<sipcore::digest::NonceKey, String> {
        self.pair_keyed(sipcore::digest::NonceKey::from_secret, || {
            sipcore::digest::NonceKey::from_secret(&rand::random::<[u8; 32]>())
        })
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

    /// The sources the gate in front of the parser trusts: the trunks'
    /// networks, every destination-group member given by address (with
    /// the DNS-resolved ones when `self` is the effective configuration)
    /// and the HA peer.
    pub fn trusted_sources(&self) -> sipcore::gate::TrustedSources {
        self.trusted_sources_with(std::iter::empty())
    }

    /// [`Config::trusted_sources`] and the addresses `extra` (the source
    /// addresses of registered phones).
    pub fn trusted_sources_with(
        &self,
        extra: impl Iterator<Item = IpAddr>,
    ) -> sipcore::gate::TrustedSources {
        let networks = self.trunks.iter().flat_map(|t| t.networks.iter().copied());
        let members = self
            .destination_groups()
            .into_iter()
            .flat_map(|g| g.members.into_iter().map(|m| m.address.ip()));
        let peers = self.ha.iter().flat_map(|ha| {
            std::iter::once(ha.link.peer.ip()).chain(ha.aux.as_ref().map(|a| a.peer.ip()))
        });
        sipcore::gate::TrustedSources::new(networks, members.chain(peers).chain(extra))
    }

    /// The gate's per-source limit, as sipcore takes it.
    pub fn rate_limit(&self) -> sipcore::gate::RateLimit {
        let l = &self.limits;
        sipcore::gate::RateLimit {
            rate_per_s: l.stranger_rate,
            burst: l.stranger_burst,
            ban: Duration::from_secs(l.ban_s),
            table_size: l.sources_tracked,
        }
    }

    /// The trunk a source address belongs to, if any.
    pub fn trunk_for(&self, ip: IpAddr) -> Option<&TrunkConfig> {
        self.trunks
            .iter()
            .find(|t| t.networks.iter().any(|n| n.contains(&ip)))
    }
}

/// Checks of `[pool]` and each `[[group]]`; `key` is the table's key.
/// `tls_out`: `[sip.tls]` has a `ca_file`, so members may use TLS.
fn validate_group(
    g: &GroupConfig,
    key: &str,
    tls_out: bool,
    invalid: &impl Fn(&str, String) -> ConfigError,
) -> Result<(), ConfigError> {
    if g.name.is_empty() {
        return Err(invalid(&format!("{key}.name"), "must not be empty".into()));
    }
    if g.members.is_empty() && g.dns_members.is_empty() {
        return Err(invalid(
            &format!("{key}.member"),
            "at least one member is needed ([[…member]] or, in a [[group]], [[group.dns]])".into(),
        ));
    }
    let mut names = std::collections::HashSet::new();
    for (i, m) in g.members.iter().enumerate() {
        if !names.insert(&m.name) {
            return Err(invalid(
                &format!("{key}.member[{i}].name"),
                format!("duplicate name {:?}", m.name),
            ));
        }
        if m.transport == MemberTransport::Tls && !tls_out {
            return Err(invalid(
                &format!("{key}.member[{i}].transport"),
                "\"tls\" needs [sip.tls] with ca_file (to verify the member)".into(),
            ));
        }
        if g.strategy == Strategy::Weighted && m.weight == 0 {
            return Err(invalid(
                &format!("{key}.member[{i}].weight"),
                "must be > 0 for weighted".into(),
            ));
        }
    }
    let h = &g.health;
    if h.interval_ms == 0 || h.timeout_ms == 0 || h.timeout_ms > h.interval_ms {
        return Err(invalid(
            &format!("{key}.health.timeout_ms"),
            "interval and timeout must be > 0 and timeout <= interval".into(),
        ));
    }
    if h.failures_to_down == 0 || h.successes_to_up == 0 {
        return Err(invalid(
            &format!("{key}.health.failures_to_down"),
            "counts must be >= 1".into(),
        ));
    }
    Ok(())
}

/// A header name as RFC 3261 allows it (a token), restricted to what
/// real headers use.
fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests;

impl Config {
    /// The `[[wan]]` a rule's `wan` condition means.
    pub fn wan_of_rule(&self, rule: &RuleConfig) -> Option<String> {
        rule.wan?;
        match &rule.wan_name {
            Some(n) => Some(n.clone()),
            None => self.wans.first().map(|w| w.name.clone()),
        }
    }

    /// `registrar.snapshot_file`, if set (a relative path is relative to
    /// this configuration file, as token files are).
    pub fn registrar_snapshot_file(&self) -> Option<std::path::PathBuf> {
        let file = self
            .registrar
            .as_ref()
            .filter(|r| r.enabled())?
            .snapshot_file
            .as_ref()?;
        Some(self.beside(file))
    }

    /// `registrar.credentials_file`, relative to this file's directory.
    pub fn registrar_credentials_file(&self) -> Option<std::path::PathBuf> {
        let file = self.registrar.as_ref()?.credentials_file.as_ref()?;
        Some(self.beside(file))
    }

    /// `path` as given, or relative to this configuration's directory.
    fn beside(&self, path: &Path) -> PathBuf {
        match self.file.parent() {
            Some(dir) if path.is_relative() => dir.join(path),
            _ => path.to_owned(),
        }
    }

    /// `[registrar.upstream]` as the machine's settings, if set (and the
    /// registrar on).
    pub fn upstream_settings(&self) -> Option<crate::upstream::UpstreamSettings> {
        let r = self.registrar.as_ref().filter(|r| r.enabled())?;
        let u = r.upstream.as_ref()?;
        Some(crate::upstream::UpstreamSettings {
            registrar: u.registrar,
            realm: u.realm.clone(),
            domain: u
                .domain
                .clone()
                .or_else(|| r.domains.first().cloned())
                .unwrap_or_default()
                .to_ascii_lowercase(),
            expires_s: u.expires_s,
            renew_window: Duration::from_secs(u.renew_window_s),
            wan: u.wan.clone(),
        })
    }

    /// Whether `[registrar]` serves at least one domain.
    pub fn registrar_enabled(&self) -> bool {
        self.registrar
            .as_ref()
            .is_some_and(RegistrarConfig::enabled)
    }
}
