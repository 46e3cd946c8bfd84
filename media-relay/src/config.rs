//! Relay configuration and per-session options.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Largest receive/send batch (messages per `recvmmsg`/`sendmmsg` call).
pub const MAX_BATCH: usize = 64;

/// Configuration of a [`MediaRelay`](crate::MediaRelay). Deserialisable from
/// TOML; unknown keys are errors.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RelayConfig {
    /// Local address every session socket is bound to (the media address
    /// written into SDP; on an HA pair, the floating IP).
    pub local_ip: IpAddr,
    /// Lowest port of the RTP/RTCP range (rounded up to even).
    pub port_min: u16,
    /// Highest port of the range (an RTP port is used only if RTP+1 fits).
    pub port_max: u16,
    /// Forwarding threads; 0 = one per available core.
    pub workers: usize,
    /// Pin worker `i` to core `cpu_affinity[i % len]` (empty = no pinning).
    pub cpu_affinity: Vec<usize>,
    /// Set IP_FREEBIND on every socket, so that a standby can bind the
    /// floating IP before it owns it.
    pub freebind: bool,
    /// SO_RCVBUF per socket in bytes (0 = kernel default; capped by
    /// `net.core.rmem_max`).
    pub recv_buffer_bytes: usize,
    /// SO_SNDBUF per socket in bytes (0 = kernel default).
    pub send_buffer_bytes: usize,
    /// Datagrams per `recvmmsg`/`sendmmsg` call (1..=64).
    pub batch_size: usize,
    /// Once a side has latched, give it a second socket on the same port,
    /// `connect`ed to the latched peer (sockets use SO_REUSEPORT for this):
    /// the kernel then delivers that peer's packets to it and caches the
    /// route for sends, which saves work per packet. Foreign packets still
    /// reach the unconnected socket, where they are counted and dropped.
    pub connect_latched: bool,
    /// After the last packet, keep polling without sleeping for this many
    /// microseconds before blocking (0 = never spin). Spinning avoids the
    /// cost of being woken per packet at the price of a busy core.
    pub busy_poll_us: u64,
    /// Most port pairs whose two sockets stay open and bound after their
    /// session ends, parked in the port pool for the next session that
    /// gets the pair (no `socket`/`bind`/`close`/`epoll_ctl` per session).
    /// Each parked pair holds two file descriptors. `None` (default): a
    /// a quarter of the process's open-file soft limit at start-up (raise it
    /// first, see `sys::raise_fd_limit`), at most every pair of the range;
    /// `Some(0)`: close the sockets of every ended session.
    pub max_parked_pairs: Option<usize>,
    /// Options a session gets when `create_session` names none.
    pub session_defaults: SessionOptions,
    /// When every pair is taken but some of removed sessions are on their
    /// way back, how long `create_session` waits for one (blocking the
    /// caller). Zero: the workers are woken and the call fails at once
    /// with `PortsExhausted`, for a caller that must never block (a call
    /// engine answering 503 is better than one that stops for a second).
    pub release_wait: Duration,
    /// Forward latched RTP streams in the kernel (a BPF program at tc
    /// ingress, see `fastpath.rs`): `off` (default), `auto` (when the
    /// program loads and attaches), `on` (the relay does not start
    /// without it).
    pub fast_path: crate::fastpath::FastPathMode,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            local_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port_min: 30000,
            port_max: 39999,
            workers: 0,
            cpu_affinity: Vec::new(),
            freebind: false,
            recv_buffer_bytes: 0,
            send_buffer_bytes: 0,
            batch_size: 32,
            connect_latched: true,
            busy_poll_us: 0,
            max_parked_pairs: None,
            session_defaults: SessionOptions::default(),
            release_wait: Duration::from_secs(1),
            fast_path: crate::fastpath::FastPathMode::Off,
        }
    }
}

impl RelayConfig {
    /// Checks ranges and consistency; errors name the key.
    pub fn validate(&self) -> Result<()> {
        let cfg = |key, reason: String| Err(Error::Config { key, reason });
        if self.port_min == 0 {
            return cfg("port_min", "must be at least 1".into());
        }
        if self.port_min > self.port_max {
            return cfg(
                "port_max",
                format!("{} is below port_min {}", self.port_max, self.port_min),
            );
        }
        if crate::pool::PortPool::pair_count(self.port_min, self.port_max) == 0 {
            return cfg(
                "port_max",
                format!(
                    "range {}-{} holds no even/odd port pair",
                    self.port_min, self.port_max
                ),
            );
        }
        if self.batch_size == 0 || self.batch_size > MAX_BATCH {
            return cfg(
                "batch_size",
                format!("{} is not in 1..={MAX_BATCH}", self.batch_size),
            );
        }
        if self.busy_poll_us > 1_000_000 {
            return cfg(
                "busy_poll_us",
                format!("{} is more than one second", self.busy_poll_us),
            );
        }
        self.session_defaults
            .validate("session_defaults.clock_rate")
    }

    /// Port pairs parked at most (see `max_parked_pairs`).
    pub(crate) fn parked_pairs_limit(&self) -> usize {
        let pairs = crate::pool::PortPool::pair_count(self.port_min, self.port_max);
        let limit = self.max_parked_pairs.unwrap_or_else(|| {
            crate::sys::fd_limit().map_or(0, |n| usize::try_from(n / 4).unwrap_or(usize::MAX))
        });
        limit.min(pairs)
    }

    /// Number of worker threads this config starts.
    pub fn worker_count(&self) -> usize {
        if self.workers > 0 {
            self.workers
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        }
    }
}

/// Per-session behaviour.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SessionOptions {
    /// RTP clock rate in Hz, for jitter and for timestamp continuity.
    pub clock_rate: u32,
    /// After an upstream switch, rewrite SSRC/sequence/timestamp of the new
    /// upstream's stream so that leg A keeps seeing one continuous stream.
    pub continuity: bool,
    /// After latching, a packet from another source that carries a new SSRC
    /// re-latches the side to that source (instead of being dropped), if
    /// `latching` lets that source latch.
    pub relatch_on_ssrc_change: bool,
    /// Which sources may latch a side (see [`Latching`]).
    pub latching: Latching,
}

/// Which sources may latch a side (symmetric RTP), so that media toward
/// that side goes to them. A packet from a source that may not latch is
/// dropped and counted (`RelayCounters::dropped_rejected_source`).
///
/// The relay cannot tell a peer behind NAT from an attacker by the packet
/// alone; what it knows is what the signalling said: the address in the
/// side's SDP and the IP the side's SIP messages come from. A peer behind
/// NAT sends RTP from its public IP, which is the IP its SIP comes from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Latching {
    /// Only the exact SDP address: RTP from the SDP's `ip:port`, RTCP from
    /// its RTCP address (`a=rtcp`, else RTP port + 1). Breaks peers behind
    /// NAT that do not say their public address in SDP.
    Strict,
    /// Any port on the SDP's IP or on the IP the side's SIP comes from (the
    /// public address of a peer behind NAT). The default: a stranger on
    /// another address can neither take the stream nor inject into it.
    #[default]
    SignalledIp,
    /// Any source, the first packet wins (the behaviour before this option
    /// existed). Risky: anyone who can reach the relay's ports and sends
    /// before the real peer ("RTP bleed", e.g. by spraying the port range)
    /// hears the call and talks into it, and the real peer is dropped for
    /// the rest of the call.
    Any,
}

impl Default for SessionOptions {
    fn default() -> Self {
        SessionOptions {
            clock_rate: 8000,
            continuity: true,
            relatch_on_ssrc_change: false,
            latching: Latching::default(),
        }
    }
}

impl SessionOptions {
    pub(crate) fn validate(&self, key: &'static str) -> Result<()> {
        if self.clock_rate == 0 || self.clock_rate > 1_000_000 {
            return Err(Error::Config {
                key,
                reason: format!("{} Hz is not in 1..=1000000", self.clock_rate),
            });
        }
        Ok(())
    }
}
