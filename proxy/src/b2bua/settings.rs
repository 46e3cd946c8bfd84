//! The machine's settings as plain values: the shell (`crate::config`)
//! builds them from the configuration file, the machine never sees the
//! file's types.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use sipcore::transport::TransportKind;

/// Everything the call machine needs to know of the configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `host:port` of Tandem, for Via, Contact and loop detection.
    pub advertised: SocketAddr,
    /// `host:port` of Tandem's TLS listener (the advertised host, the TLS
    /// port), for the Via and Contact of TLS legs; none without TLS.
    pub advertised_tls: Option<SocketAddr>,
    /// RFC 3261 T1 and T2 (2xx retransmissions of our own).
    pub t1: Duration,
    pub t2: Duration,
    /// Longest call in seconds; 0: no limit.
    pub max_duration_s: u64,
    /// No RTP on either leg for this long ends a call; 0: never.
    pub media_timeout_s: u64,
    /// How long a member may take to answer leg B's INVITE at all.
    pub member_answer_timeout: Duration,
    /// OPTIONS keepalives to the members: whether, how often, how long an
    /// answer may take.
    pub probing: bool,
    pub probe_interval: Duration,
    /// Calls at once, at most (503 with Retry-After beyond); 0: no cap.
    pub max_calls: usize,
    pub survival: SurvivalSettings,
    /// What a request from an unknown source gets.
    pub unknown_source: UnknownSource,
    /// The pair's peer (its link addresses): not a stranger.
    pub pair_peers: Vec<IpAddr>,
    /// The WANs to central sites (`[[wan]]`), judged every health
    /// interval.
    pub wans: Vec<crate::wan::WanSettings>,
}

impl Settings {
    /// Tandem's `host:port` for `transport`: the TLS listener for TLS (the
    /// advertised address if there is none, which config forbids for a TLS
    /// leg), else the UDP/TCP address.
    pub fn sent_by(&self, transport: TransportKind) -> SocketAddr {
        match transport {
            TransportKind::Tls => self.advertised_tls.unwrap_or(self.advertised),
            TransportKind::Udp | TransportKind::Tcp => self.advertised,
        }
    }
}

/// `sip.unknown_source`: a request from a source that is neither a
/// trunk, a member nor the pair's peer is dropped silently, or answered
/// once with a stateless 403. Either way it is counted, and nothing is
/// retransmitted toward a source that may be spoofed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum UnknownSource {
    #[default]
    Drop,
    Forbid,
}

/// Call survival (see `crate::config::SurvivalConfig` for each key).
#[derive(Debug, Clone)]
pub struct SurvivalSettings {
    pub enabled: bool,
    pub resume_rate: u32,
    pub media_silence_ms: u64,
    pub suspect_probe_timeout_ms: u64,
    pub media_dead_min_calls: usize,
    pub in_dialog_failure: bool,
    /// Keep a call whose media server failed, with no other left, and
    /// retry every second for `hold_retry_s` (else hang up).
    pub hold_on_no_server: bool,
    pub hold_retry_s: u64,
}
