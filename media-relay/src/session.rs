//! Session state: the per-side addresses (configured, latched), latching and
//! source checks, the continuity state of both directions and the stats of
//! both received streams. [`SessionState::on_packet`] decides the fate of
//! one received datagram; the worker calls it under the session's lock, once
//! per datagram of a received batch.

use std::fmt;
use std::net::{IpAddr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::config::{Latching, SessionOptions};
use crate::continuity::ContinuityState;
use crate::rtp::{self, Kind};
use crate::stats::{DropReason, StreamRecorder, StreamStats};

/// Identifies a media session (chosen by the proxy).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SessionId(pub u64);

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// One side of a session. Side A faces leg A (trunk), side B faces leg B
/// (media server, the "upstream").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Side {
    /// Trunk side.
    A,
    /// Media-server side.
    B,
}

impl Side {
    /// The other side.
    pub fn other(self) -> Side {
        match self {
            Side::A => Side::B,
            Side::B => Side::A,
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::A => "A",
            Side::B => "B",
        })
    }
}

/// Which socket of a side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Port {
    Rtp,
    Rtcp,
}

/// Local address of one side of a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LocalPorts {
    /// Local IP (the configured relay address).
    pub ip: IpAddr,
    /// Even RTP port.
    pub rtp_port: u16,
    /// RTCP port (RTP + 1).
    pub rtcp_port: u16,
}

impl LocalPorts {
    pub(crate) fn new(ip: IpAddr, rtp_port: u16) -> LocalPorts {
        LocalPorts {
            ip,
            rtp_port,
            rtcp_port: rtp_port + 1,
        }
    }

    /// RTP socket address.
    pub fn rtp_addr(&self) -> SocketAddr {
        SocketAddr::new(self.ip, self.rtp_port)
    }

    /// RTCP socket address.
    pub fn rtcp_addr(&self) -> SocketAddr {
        SocketAddr::new(self.ip, self.rtcp_port)
    }
}

/// What `create_session` returns: the local addresses to put into SDP.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInfo {
    /// The session.
    pub id: SessionId,
    /// Local ports facing leg A (put into the SDP sent to leg A).
    pub side_a: LocalPorts,
    /// Local ports facing leg B (put into the SDP sent to leg B).
    pub side_b: LocalPorts,
}

/// Parameters of a new session.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SessionParams {
    /// Leg A's RTP address from its SDP, if known.
    pub remote_a: Option<SocketAddr>,
    /// Leg B's RTP address from its SDP, if known.
    pub remote_b: Option<SocketAddr>,
    /// Options; `None` takes the relay's `session_defaults`.
    pub options: Option<SessionOptions>,
    /// Start both sides as multiplexing RTCP on the RTP port (RFC 5761):
    /// only the two RTP sockets are bound. The caller that learns from the
    /// signalling that a side's peer does not multiplex says so with
    /// [`MediaRelay::set_rtcp_mux`](crate::MediaRelay::set_rtcp_mux), which
    /// binds that side's RTCP socket then. False: four sockets from the
    /// start, RTCP on RTP + 1 on both sides (no signalling needed).
    pub rtcp_mux: bool,
}

/// Most sources refused on a side after upstream switches.
const MAX_REFUSED: usize = 8;

/// Addresses of one side. Plain data: part of the snapshot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SideState {
    /// Local ports.
    pub local: LocalPorts,
    /// RTP address from SDP (where to send until latched).
    pub remote_rtp: Option<SocketAddr>,
    /// RTCP address from SDP (`a=rtcp`); None means RTP port + 1.
    pub remote_rtcp: Option<SocketAddr>,
    /// Source of the RTP actually received (symmetric RTP).
    pub latched_rtp: Option<SocketAddr>,
    /// Source of the RTCP actually received.
    pub latched_rtcp: Option<SocketAddr>,
    /// SSRC of the latched RTP source.
    pub latched_ssrc: Option<u32>,
    /// Sources that may not latch (the previous upstream, after a switch).
    pub refused_sources: Vec<SocketAddr>,
    /// IP the side's SIP messages come from: a peer behind NAT sends its
    /// media from there too. With [`Latching::SignalledIp`] any port on it
    /// may latch. None: not told (only the SDP address counts).
    #[serde(default)]
    pub signalling_ip: Option<IpAddr>,
    /// The side's peer multiplexes RTCP on the RTP port (RFC 5761): RTCP
    /// toward it leaves from the side's RTP socket for its RTP address, and
    /// the side has no RTCP socket of its own unless it once did not
    /// multiplex. False (also in snapshots from before this field): RTCP
    /// has its own port on both ends.
    #[serde(default)]
    pub rtcp_mux: bool,
}

impl SideState {
    pub(crate) fn new(
        local: LocalPorts,
        remote_rtp: Option<SocketAddr>,
        rtcp_mux: bool,
    ) -> SideState {
        SideState {
            local,
            remote_rtp,
            remote_rtcp: None,
            latched_rtp: None,
            latched_rtcp: None,
            latched_ssrc: None,
            refused_sources: Vec::new(),
            signalling_ip: None,
            rtcp_mux,
        }
    }

    /// Where RTP toward this side goes.
    pub fn rtp_destination(&self) -> Option<SocketAddr> {
        LiveSide::from(self).rtp_destination()
    }

    /// Where RTCP toward this side goes: with rtcp-mux the RTP destination,
    /// else the latched RTCP source, else the SDP RTCP address, else the RTP
    /// destination's port + 1.
    pub fn rtcp_destination(&self) -> Option<SocketAddr> {
        LiveSide::from(self).rtcp_destination()
    }
}

/// A peer address as a live session keeps it: an IPv4 address (nearly
/// every peer) inline in 8 bytes, an IPv6 one boxed whole (flow label and
/// scope kept). 16 bytes where an `Option<SocketAddr>` takes 32: a side
/// keeps four, a session two sides, for a held call's whole life.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) enum Peer {
    #[default]
    None,
    V4(SocketAddrV4),
    V6(Box<SocketAddrV6>),
}

impl Peer {
    pub(crate) fn get(&self) -> Option<SocketAddr> {
        match self {
            Peer::None => None,
            Peer::V4(a) => Some(SocketAddr::V4(*a)),
            Peer::V6(a) => Some(SocketAddr::V6(**a)),
        }
    }
}

impl From<Option<SocketAddr>> for Peer {
    fn from(a: Option<SocketAddr>) -> Peer {
        match a {
            None => Peer::None,
            Some(SocketAddr::V4(a)) => Peer::V4(a),
            Some(SocketAddr::V6(a)) => Peer::V6(Box::new(a)),
        }
    }
}

impl From<SocketAddr> for Peer {
    fn from(a: SocketAddr) -> Peer {
        Peer::from(Some(a))
    }
}

impl PartialEq<Option<SocketAddr>> for Peer {
    fn eq(&self, other: &Option<SocketAddr>) -> bool {
        self.get() == *other
    }
}

/// A side as a live session keeps it: the data of [`SideState`] (the
/// public, snapshot form, unchanged) in a compact form, 128 bytes where
/// `SideState` takes 200 (see [`Peer`]; the refused sources, nearly
/// always none, as a slice without spare room).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct LiveSide {
    pub local: LocalPorts,
    pub remote_rtp: Peer,
    pub remote_rtcp: Peer,
    pub latched_rtp: Peer,
    pub latched_rtcp: Peer,
    pub latched_ssrc: Option<u32>,
    pub refused_sources: Box<[SocketAddr]>,
    pub signalling_ip: Option<IpAddr>,
    pub rtcp_mux: bool,
}

impl From<&SideState> for LiveSide {
    fn from(s: &SideState) -> LiveSide {
        LiveSide {
            local: s.local,
            remote_rtp: s.remote_rtp.into(),
            remote_rtcp: s.remote_rtcp.into(),
            latched_rtp: s.latched_rtp.into(),
            latched_rtcp: s.latched_rtcp.into(),
            latched_ssrc: s.latched_ssrc,
            refused_sources: s.refused_sources.as_slice().into(),
            signalling_ip: s.signalling_ip,
            rtcp_mux: s.rtcp_mux,
        }
    }
}

impl From<&LiveSide> for SideState {
    fn from(s: &LiveSide) -> SideState {
        SideState {
            local: s.local,
            remote_rtp: s.remote_rtp.get(),
            remote_rtcp: s.remote_rtcp.get(),
            latched_rtp: s.latched_rtp.get(),
            latched_rtcp: s.latched_rtcp.get(),
            latched_ssrc: s.latched_ssrc,
            refused_sources: s.refused_sources.to_vec(),
            signalling_ip: s.signalling_ip,
            rtcp_mux: s.rtcp_mux,
        }
    }
}

impl LiveSide {
    /// Whether a packet from `src` on `port` may latch this side (or
    /// re-latch it) under `mode`, from what the signalling said: the SDP
    /// address, the SIP source IP, and the sources refused after a move.
    /// Pure: the whole latching policy is here.
    pub(crate) fn may_latch(&self, mode: Latching, port: Port, src: SocketAddr) -> bool {
        if self.refused_sources.contains(&src) {
            return false;
        }
        match mode {
            Latching::Any => true,
            Latching::Strict => {
                let signalled = match port {
                    Port::Rtp => self.remote_rtp.get(),
                    Port::Rtcp => self.sdp_rtcp(),
                };
                signalled.is_some_and(|a| same_addr(a, src))
            }
            Latching::SignalledIp => {
                let ip = src.ip().to_canonical();
                let same = |a: Option<IpAddr>| a.is_some_and(|a| a.to_canonical() == ip);
                same(self.remote_rtp.get().map(|a| a.ip()))
                    || same(self.remote_rtcp.get().map(|a| a.ip()))
                    || same(self.signalling_ip)
            }
        }
    }

    /// The RTCP address the SDP gives: `a=rtcp`, else RTP port + 1.
    fn sdp_rtcp(&self) -> Option<SocketAddr> {
        self.remote_rtcp.get().or_else(|| {
            self.remote_rtp.get().map(|mut a| {
                a.set_port(a.port().wrapping_add(1));
                a
            })
        })
    }

    /// Where RTP toward this side goes.
    pub(crate) fn rtp_destination(&self) -> Option<SocketAddr> {
        self.latched_rtp.get().or(self.remote_rtp.get())
    }

    /// Where RTCP toward this side goes: with rtcp-mux the RTP destination,
    /// else the latched RTCP source, else the SDP RTCP address, else the RTP
    /// destination's port + 1.
    pub(crate) fn rtcp_destination(&self) -> Option<SocketAddr> {
        if self.rtcp_mux {
            return self.rtp_destination();
        }
        self.latched_rtcp
            .get()
            .or(self.remote_rtcp.get())
            .or_else(|| {
                self.rtp_destination().map(|mut a| {
                    a.set_port(a.port().wrapping_add(1));
                    a
                })
            })
    }

    fn unlatch(&mut self) {
        self.latched_rtp = Peer::None;
        self.latched_rtcp = Peer::None;
        self.latched_ssrc = None;
    }
}

/// Plain-data copy of one session: enough to re-create it elsewhere.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionSnapshot {
    /// The session.
    pub id: SessionId,
    /// Its options.
    pub options: SessionOptions,
    /// Side A (trunk).
    pub side_a: SideState,
    /// Side B (media server).
    pub side_b: SideState,
    /// Where leg B's media currently goes (side B's configured remote).
    pub upstream: Option<SocketAddr>,
    /// Upstream switches so far.
    pub upstream_switches: u32,
    /// Rewrite state of the stream sent toward side A.
    pub continuity_toward_a: ContinuityState,
    /// Rewrite state of the stream sent toward side B.
    pub continuity_toward_b: ContinuityState,
}

/// Plain-data copy of the whole session table.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelaySnapshot {
    /// All sessions, by id.
    pub sessions: Vec<SessionSnapshot>,
}

/// Stats of one session.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SessionStats {
    /// The session.
    pub id: SessionId,
    /// The stream received from leg A (on side A) and sent to leg B.
    pub side_a: StreamStats,
    /// The stream received from leg B (on side B) and sent to leg A.
    pub side_b: StreamStats,
    /// Upstream switches so far.
    pub upstream_switches: u32,
}

impl SessionStats {
    /// The stream received on `side`.
    pub fn side(&self, side: Side) -> &StreamStats {
        match side {
            Side::A => &self.side_a,
            Side::B => &self.side_b,
        }
    }
}

/// What to do with one received datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Forward it (it may have been rewritten in place).
    Forward,
    /// Drop it.
    Drop(DropReason),
}

/// Mutable state of a session, behind the session's mutex.
#[derive(Debug)]
pub(crate) struct SessionState {
    pub id: SessionId,
    pub options: SessionOptions,
    pub sides: [LiveSide; 2],
    /// Indexed by the side the stream is sent toward.
    pub continuity: [ContinuityState; 2],
    /// Indexed by the side the stream is received on.
    pub stats: [StreamRecorder; 2],
    pub upstream_switches: u32,
    /// Set by `remove_session`: the worker forwards and counts nothing more
    /// (the stats returned by the removal are final).
    pub removed: bool,
}

impl SessionState {
    pub(crate) fn new(
        id: SessionId,
        options: SessionOptions,
        side_a: SideState,
        side_b: SideState,
    ) -> SessionState {
        SessionState {
            id,
            options,
            sides: [LiveSide::from(&side_a), LiveSide::from(&side_b)],
            continuity: Default::default(),
            stats: [
                StreamRecorder::new(options.clock_rate),
                StreamRecorder::new(options.clock_rate),
            ],
            upstream_switches: 0,
            removed: false,
        }
    }

    pub(crate) fn from_snapshot(s: &SessionSnapshot) -> SessionState {
        let mut st = SessionState::new(s.id, s.options, s.side_a.clone(), s.side_b.clone());
        st.continuity = [s.continuity_toward_a.clone(), s.continuity_toward_b.clone()];
        st.upstream_switches = s.upstream_switches;
        st
    }

    /// Takes the addresses, options and continuity state of `s` (same
    /// session, same local ports); stats are kept.
    pub(crate) fn apply_snapshot(&mut self, s: &SessionSnapshot) {
        self.options = s.options;
        self.sides = [LiveSide::from(&s.side_a), LiveSide::from(&s.side_b)];
        self.continuity = [s.continuity_toward_a.clone(), s.continuity_toward_b.clone()];
        self.upstream_switches = s.upstream_switches;
    }

    pub(crate) fn snapshot(&self) -> SessionSnapshot {
        SessionSnapshot {
            id: self.id,
            options: self.options,
            side_a: SideState::from(&self.sides[0]),
            side_b: SideState::from(&self.sides[1]),
            upstream: self.sides[1].remote_rtp.get(),
            upstream_switches: self.upstream_switches,
            continuity_toward_a: self.continuity[0].clone(),
            continuity_toward_b: self.continuity[1].clone(),
        }
    }

    pub(crate) fn stats(&self, now: Instant) -> SessionStats {
        SessionStats {
            id: self.id,
            side_a: self.stats[0].snapshot(now),
            side_b: self.stats[1].snapshot(now),
            upstream_switches: self.upstream_switches,
        }
    }

    pub(crate) fn info(&self) -> SessionInfo {
        SessionInfo {
            id: self.id,
            side_a: self.sides[0].local,
            side_b: self.sides[1].local,
        }
    }

    /// New SDP address of a side. A different address re-arms latching.
    pub(crate) fn set_remote(&mut self, side: Side, addr: SocketAddr) {
        let s = &mut self.sides[side.index()];
        if s.remote_rtp != Some(addr) {
            s.remote_rtp = addr.into();
            s.remote_rtcp = Peer::None;
            s.unlatch();
            // Refusals were the old peer's.
            self.stats[side.index()].forget_refused();
        }
    }

    /// New SDP RTCP address of a side (`a=rtcp`). Re-arms RTCP latching.
    pub(crate) fn set_remote_rtcp(&mut self, side: Side, addr: SocketAddr) {
        let s = &mut self.sides[side.index()];
        if s.remote_rtcp != Some(addr) {
            s.remote_rtcp = addr.into();
            s.latched_rtcp = Peer::None;
        }
    }

    /// The IP side `side`'s SIP comes from (see
    /// [`SideState::signalling_ip`]). Latches stay: they were allowed when
    /// they were made, and only a new SDP address re-arms latching.
    pub(crate) fn set_signalling_ip(&mut self, side: Side, ip: Option<IpAddr>) {
        self.sides[side.index()].signalling_ip = ip;
    }

    /// Moves leg B to a new media server (RTP at `addr`, SIP from
    /// `signalling_ip`): side B sends there, re-latches — only to a source
    /// the latching mode allows for the new server, so a stranger spraying
    /// ports while the latch is open after the move cannot take it —
    /// refuses the old server's addresses, and (with continuity) the stream
    /// toward side A continues seamlessly.
    pub(crate) fn switch_upstream(&mut self, addr: SocketAddr, signalling_ip: Option<IpAddr>) {
        self.stats[Side::B.index()].forget_refused();
        let b = &mut self.sides[Side::B.index()];
        let old = [
            b.latched_rtp.get(),
            b.latched_rtcp.get(),
            b.remote_rtp.get(),
            b.rtcp_destination(),
        ];
        let mut rtcp_guess = addr;
        rtcp_guess.set_port(addr.port().wrapping_add(1));
        let mut refused = std::mem::take(&mut b.refused_sources).into_vec();
        for a in old.into_iter().flatten() {
            if a != addr && a != rtcp_guess && !refused.contains(&a) {
                refused.push(a);
            }
        }
        refused.retain(|a| *a != addr && *a != rtcp_guess);
        let excess = refused.len().saturating_sub(MAX_REFUSED);
        refused.drain(..excess);
        b.refused_sources = refused.into_boxed_slice();
        b.remote_rtp = addr.into();
        b.remote_rtcp = Peer::None;
        b.signalling_ip = signalling_ip;
        b.unlatch();
        if self.options.continuity {
            self.continuity[Side::A.index()].arm();
        }
        self.upstream_switches += 1;
    }

    /// The latched peer of `side`'s `port`.
    pub(crate) fn latched(&self, side: Side, port: Port) -> Option<SocketAddr> {
        let s = &self.sides[side.index()];
        match port {
            Port::Rtp => s.latched_rtp.get(),
            Port::Rtcp => s.latched_rtcp.get(),
        }
    }

    /// Where a packet of class `class` (RTP or RTCP) received on side
    /// `from`'s port `port` goes: the port of the other side to send it
    /// from, and the address. One leg may multiplex RTCP on the RTP port
    /// (RFC 5761) while the other does not (e.g. after a move to a media
    /// server that refused rtcp-mux): RTCP from a multiplexing side toward
    /// one that does not leaves from that side's RTCP port for its RTCP
    /// address, and RTCP from an RTCP port toward a multiplexing side from
    /// its RTP port for its RTP address. Otherwise a packet leaves by the
    /// port it came in on (so RTCP that a peer multiplexes without the
    /// signalling saying so goes the RTP way, as it always did).
    pub(crate) fn route(&self, from: Side, port: Port, class: Port) -> (Port, Option<SocketAddr>) {
        let to = &self.sides[from.other().index()];
        let out = match (port, class) {
            (_, Port::Rtp) => Port::Rtp,
            (Port::Rtp, Port::Rtcp) if self.sides[from.index()].rtcp_mux && !to.rtcp_mux => {
                Port::Rtcp
            }
            (Port::Rtcp, Port::Rtcp) if to.rtcp_mux => Port::Rtp,
            (port, Port::Rtcp) => port,
        };
        match out {
            Port::Rtp => (Port::Rtp, to.rtp_destination()),
            Port::Rtcp => (Port::Rtcp, to.rtcp_destination()),
        }
    }

    /// Destination of what was received on `from`'s `port` (RTCP on an
    /// RTCP port, RTP on an RTP port).
    #[cfg(test)]
    pub(crate) fn destination(&self, from: Side, port: Port) -> Option<SocketAddr> {
        self.route(from, port, port).1
    }

    /// Whether side `side`'s peer multiplexes RTCP on the RTP port.
    pub(crate) fn set_rtcp_mux(&mut self, side: Side, mux: bool) {
        self.sides[side.index()].rtcp_mux = mux;
    }

    /// Decides about one datagram received on `side`'s `port` from `src`,
    /// latching, counting and rewriting it in place as needed.
    pub(crate) fn on_packet(
        &mut self,
        side: Side,
        port: Port,
        p: &mut [u8],
        src: SocketAddr,
        now: Instant,
        now_unix_us: u64,
    ) -> Verdict {
        let rx = side.index();
        let kind = rtp::classify(p);
        if matches!((port, kind), (_, Kind::Malformed) | (Port::Rtcp, Kind::Rtp)) {
            self.stats[rx].on_drop(DropReason::Malformed, 1);
            return Verdict::Drop(DropReason::Malformed);
        }

        // Source check and latching.
        let relatch = self.options.relatch_on_ssrc_change;
        let s = &mut self.sides[rx];
        let current = match port {
            Port::Rtp => s.latched_rtp.get(),
            Port::Rtcp => s.latched_rtcp.get(),
        };
        let refusal = match current {
            Some(l) if l == src => None,
            _ if !s.may_latch(self.options.latching, port, src) => Some(DropReason::RejectedSource),
            Some(_) => {
                let new_ssrc = relatch
                    && port == Port::Rtp
                    && kind == Kind::Rtp
                    && s.latched_ssrc != Some(rtp::ssrc(p));
                (!new_ssrc).then_some(DropReason::WrongSource)
            }
            None => None,
        };
        if let Some(reason) = refusal {
            self.stats[rx].on_drop(reason, 1);
            return Verdict::Drop(reason);
        }
        if current != Some(src) {
            match port {
                Port::Rtp => {
                    if current.is_some() {
                        // Re-latch: the new source's RTCP latches afresh.
                        s.latched_rtcp = Peer::None;
                    }
                    s.latched_rtp = src.into();
                }
                Port::Rtcp => s.latched_rtcp = src.into(),
            }
        }

        let tx = side.other().index();
        match kind {
            Kind::Rtp => {
                let ssrc = rtp::ssrc(p);
                s.latched_ssrc = Some(ssrc);
                self.stats[rx].on_rtp(rtp::seq(p), rtp::timestamp(p), ssrc, p.len(), now);
                self.continuity[tx].on_rtp(p, now_unix_us, self.options.clock_rate);
            }
            _ => {
                self.stats[rx].on_rtcp(p.len());
                if let Some(rw) = self.continuity[tx].rewrite {
                    rtp::rtcp_map_from_upstream(p, &rw);
                }
                if let Some(rw) = self.continuity[rx].rewrite {
                    rtp::rtcp_map_toward_upstream(p, &rw);
                }
            }
        }
        Verdict::Forward
    }
}

/// Whether two socket addresses are the same (an IPv4 address and its
/// IPv4-mapped IPv6 form count as one).
fn same_addr(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port() && a.ip().to_canonical() == b.ip().to_canonical()
}

#[cfg(test)]
mod tests;
