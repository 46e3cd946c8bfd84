//! The control API used by the proxy.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mio::net::UdpSocket;
use serde::{Deserialize, Serialize};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::sync::oneshot;

use crate::config::{RelayConfig, SessionOptions};
use crate::error::{Error, Result};
use crate::pool::PortPool;
use crate::session::{
    LocalPorts, RelaySnapshot, SessionId, SessionInfo, SessionParams, SessionSnapshot,
    SessionState, SessionStats, Side, SideState,
};
use crate::stats::DropReason;
use crate::worker::{self, lock, Command, SharedState, WorkerHandle, WorkerSession};

/// Relay-wide counters, for Prometheus.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayCounters {
    /// Sessions now.
    pub sessions_active: usize,
    /// Datagrams (RTP and RTCP) sent on.
    pub packets_relayed: u64,
    /// Their bytes (UDP payload).
    pub bytes_relayed: u64,
    /// Dropped: unexpected source after latching.
    pub dropped_wrong_source: u64,
    /// Dropped: malformed, too short or truncated.
    pub dropped_malformed: u64,
    /// Dropped: the other side had no address yet.
    pub dropped_no_destination: u64,
    /// Dropped: the kernel refused to send.
    pub dropped_send_error: u64,
    /// Free RTP/RTCP port pairs.
    pub port_pairs_free: usize,
    /// All port pairs of the range.
    pub port_pairs_total: usize,
}

struct Entry {
    worker: usize,
    state: SharedState,
}

#[derive(Default)]
struct Registry {
    sessions: HashMap<SessionId, Entry>,
    load: Vec<usize>,
}

/// The media relay: worker threads forwarding RTP/RTCP, and the session
/// table. Share it as `Arc<MediaRelay>`; every method takes `&self`.
///
/// All methods are non-blocking (they take short mutexes and make a few
/// socket system calls) and can be called from async tasks, except
/// [`remove_session`](Self::remove_session), which is `async` because it
/// waits for the worker to close the session's sockets.
pub struct MediaRelay {
    config: RelayConfig,
    pool: Arc<Mutex<PortPool>>,
    registry: Mutex<Registry>,
    workers: Vec<WorkerHandle>,
}

impl std::fmt::Debug for MediaRelay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaRelay")
            .field("local_ip", &self.config.local_ip)
            .field("workers", &self.workers.len())
            .field("sessions", &self.active_sessions())
            .finish()
    }
}

impl MediaRelay {
    /// Validates the config and starts the worker threads.
    pub fn new(config: RelayConfig) -> Result<MediaRelay> {
        config.validate()?;
        let pool = Arc::new(Mutex::new(PortPool::new(config.port_min, config.port_max)));
        let n = config.worker_count();
        let workers = (0..n)
            .map(|i| worker::spawn(i, &config, pool.clone()))
            .collect::<Result<Vec<_>>>()?;
        Ok(MediaRelay {
            registry: Mutex::new(Registry {
                sessions: HashMap::new(),
                load: vec![0; n],
            }),
            config,
            pool,
            workers,
        })
    }

    /// The config in force.
    pub fn config(&self) -> &RelayConfig {
        &self.config
    }

    /// Allocates ports for both sides, binds the four sockets and starts
    /// forwarding. Returns the local addresses to put into SDP.
    pub fn create_session(&self, id: SessionId, params: SessionParams) -> Result<SessionInfo> {
        let options = params.options.unwrap_or(self.config.session_defaults);
        options.validate("options.clock_rate")?;
        let mut reg = lock(&self.registry);
        if reg.sessions.contains_key(&id) {
            return Err(Error::SessionExists(id));
        }
        let ip = self.config.local_ip;
        let (port_a, socks_a) = self.bind_side(id, ip, None)?;
        let (port_b, socks_b) = match self.bind_side(id, ip, None) {
            Ok(x) => x,
            Err(e) => {
                drop(socks_a);
                lock(&self.pool).release(port_a);
                return Err(e);
            }
        };
        let state = SessionState::new(
            id,
            options,
            SideState::new(LocalPorts::new(ip, port_a), params.remote_a),
            SideState::new(LocalPorts::new(ip, port_b), params.remote_b),
        );
        self.install(&mut reg, state, socks_a, socks_b)
    }

    /// Re-creates a session from a snapshot: the same ports (taken from the
    /// pool), local IP, remotes, latched addresses and continuity state, so
    /// that forwarding resumes at once. Stats start from zero.
    pub fn restore_session(&self, snap: &SessionSnapshot) -> Result<SessionInfo> {
        let id = snap.id;
        snap.options.validate("options.clock_rate")?;
        let mut reg = lock(&self.registry);
        if reg.sessions.contains_key(&id) {
            return Err(Error::SessionExists(id));
        }
        let (a, b) = (&snap.side_a.local, &snap.side_b.local);
        let (port_a, socks_a) = self.bind_side(id, a.ip, Some(a.rtp_port))?;
        let (port_b, socks_b) = match self.bind_side(id, b.ip, Some(b.rtp_port)) {
            Ok(x) => x,
            Err(e) => {
                drop(socks_a);
                lock(&self.pool).release(port_a);
                return Err(e);
            }
        };
        debug_assert_eq!((port_a, port_b), (a.rtp_port, b.rtp_port));
        let state = SessionState::from_snapshot(snap);
        self.install(&mut reg, state, socks_a, socks_b)
    }

    /// Restores every session of a table snapshot; one result per session,
    /// in snapshot order.
    pub fn restore(&self, snap: &RelaySnapshot) -> Vec<Result<SessionInfo>> {
        snap.sessions
            .iter()
            .map(|s| self.restore_session(s))
            .collect()
    }

    fn install(
        &self,
        reg: &mut Registry,
        state: SessionState,
        socks_a: [UdpSocket; 2],
        socks_b: [UdpSocket; 2],
    ) -> Result<SessionInfo> {
        let id = state.id;
        let info = state.info();
        let state = Arc::new(Mutex::new(state));
        let worker = (0..reg.load.len())
            .min_by_key(|&w| reg.load[w])
            .unwrap_or(0);
        let [a_rtp, a_rtcp] = socks_a;
        let [b_rtp, b_rtcp] = socks_b;
        let session = WorkerSession {
            id,
            state: state.clone(),
            sockets: [a_rtp, a_rtcp, b_rtp, b_rtcp],
            local: [
                info.side_a.rtp_addr(),
                info.side_a.rtcp_addr(),
                info.side_b.rtp_addr(),
                info.side_b.rtcp_addr(),
            ],
            conns: Default::default(),
            no_conn: [None; 4],
            ports: [info.side_a.rtp_port, info.side_b.rtp_port],
        };
        if let Err(cmd) = self.workers[worker].send(Command::Add(Box::new(session))) {
            drop(cmd);
            let mut pool = lock(&self.pool);
            pool.release(info.side_a.rtp_port);
            pool.release(info.side_b.rtp_port);
            return Err(Error::WorkerGone {
                worker,
                session: id,
            });
        }
        reg.load[worker] += 1;
        reg.sessions.insert(id, Entry { worker, state });
        tracing::debug!(session = %id, worker, a = info.side_a.rtp_port, b = info.side_b.rtp_port, "media session created");
        Ok(info)
    }

    /// Takes a port pair (a given one, or the next free one) and binds its
    /// two sockets.
    fn bind_side(
        &self,
        id: SessionId,
        ip: IpAddr,
        want: Option<u16>,
    ) -> Result<(u16, [UdpSocket; 2])> {
        if let Some(port) = want {
            lock(&self.pool)
                .reserve(port)
                .map_err(|reason| Error::PortUnavailable {
                    session: id,
                    port,
                    reason,
                })?;
            return match self.bind_pair(ip, port) {
                Ok(s) => Ok((port, s)),
                Err((addr, source)) => {
                    lock(&self.pool).release(port);
                    Err(Error::Bind {
                        session: id,
                        addr,
                        source,
                    })
                }
            };
        }
        let attempts = lock(&self.pool).total_pairs().min(16);
        let mut last = None;
        for _ in 0..attempts {
            let port = lock(&self.pool).allocate().ok_or(Error::PortsExhausted {
                session: id,
                min: self.config.port_min,
                max: self.config.port_max,
            })?;
            match self.bind_pair(ip, port) {
                Ok(s) => return Ok((port, s)),
                Err((addr, source)) => {
                    // Taken by another program: put it at the back and try
                    // the next pair.
                    lock(&self.pool).release(port);
                    let in_use = source.kind() == io::ErrorKind::AddrInUse;
                    last = Some(Error::Bind {
                        session: id,
                        addr,
                        source,
                    });
                    if !in_use {
                        break;
                    }
                }
            }
        }
        Err(last.unwrap_or(Error::PortsExhausted {
            session: id,
            min: self.config.port_min,
            max: self.config.port_max,
        }))
    }

    fn bind_pair(
        &self,
        ip: IpAddr,
        rtp_port: u16,
    ) -> std::result::Result<[UdpSocket; 2], (SocketAddr, io::Error)> {
        let rtp = SocketAddr::new(ip, rtp_port);
        let rtcp = SocketAddr::new(ip, rtp_port + 1);
        let a = bind_socket(&self.config, rtp).map_err(|e| (rtp, e))?;
        let b = bind_socket(&self.config, rtcp).map_err(|e| (rtcp, e))?;
        Ok([UdpSocket::from_std(a), UdpSocket::from_std(b)])
    }

    fn state(&self, id: SessionId) -> Result<SharedState> {
        lock(&self.registry)
            .sessions
            .get(&id)
            .map(|e| e.state.clone())
            .ok_or(Error::NoSuchSession(id))
    }

    fn with_state<T>(&self, id: SessionId, f: impl FnOnce(&mut SessionState) -> T) -> Result<T> {
        let state = self.state(id)?;
        let mut st = lock(&state);
        Ok(f(&mut st))
    }

    /// Sets the RTP address of `side` from its SDP (RTCP defaults to RTP+1).
    /// A different address than before re-arms latching for that side.
    pub fn set_remote(&self, id: SessionId, side: Side, addr: SocketAddr) -> Result<()> {
        self.with_state(id, |st| st.set_remote(side, addr))
    }

    /// Sets the RTCP address of `side` (SDP `a=rtcp`).
    pub fn set_remote_rtcp(&self, id: SessionId, side: Side, addr: SocketAddr) -> Result<()> {
        self.with_state(id, |st| st.set_remote_rtcp(side, addr))
    }

    /// Moves leg B to a new media server at `addr` (its RTP address; RTCP
    /// at +1 until it sends from elsewhere). Side B re-latches; packets from
    /// the old server's addresses are dropped; with the session's
    /// `continuity` option, leg A keeps receiving one continuous stream
    /// (same SSRC, consecutive sequence numbers, plausible timestamps).
    pub fn switch_upstream(&self, id: SessionId, addr: SocketAddr) -> Result<()> {
        self.with_state(id, |st| st.switch_upstream(addr))
    }

    /// Changes a session's options (clock rate, continuity, re-latching).
    pub fn set_options(&self, id: SessionId, options: SessionOptions) -> Result<()> {
        options.validate("options.clock_rate")?;
        self.with_state(id, |st| st.options = options)
    }

    /// Stats of both streams of a session.
    pub fn stats(&self, id: SessionId) -> Result<SessionStats> {
        self.with_state(id, |st| st.stats(Instant::now()))
    }

    /// How long since `side` last received RTP (None: never). Cheaper than
    /// [`stats`](Self::stats); for inactivity detection.
    pub fn idle_time(&self, id: SessionId, side: Side) -> Result<Option<Duration>> {
        let now = Instant::now();
        self.with_state(id, |st| {
            st.stats[side.index()]
                .last_packet()
                .map(|t| now.saturating_duration_since(t))
        })
    }

    /// Local addresses of a session.
    pub fn session_info(&self, id: SessionId) -> Result<SessionInfo> {
        self.with_state(id, |st| st.info())
    }

    /// Plain-data copy of one session.
    pub fn session_snapshot(&self, id: SessionId) -> Result<SessionSnapshot> {
        self.with_state(id, |st| st.snapshot())
    }

    /// Plain-data copy of every session, ordered by id.
    pub fn snapshot(&self) -> RelaySnapshot {
        let states: Vec<SharedState> = lock(&self.registry)
            .sessions
            .values()
            .map(|e| e.state.clone())
            .collect();
        let mut sessions: Vec<_> = states.iter().map(|s| lock(s).snapshot()).collect();
        sessions.sort_by_key(|s| s.id);
        RelaySnapshot { sessions }
    }

    /// Number of sessions.
    pub fn active_sessions(&self) -> usize {
        lock(&self.registry).sessions.len()
    }

    /// Ids of all sessions, sorted.
    pub fn session_ids(&self) -> Vec<SessionId> {
        let mut ids: Vec<_> = lock(&self.registry).sessions.keys().copied().collect();
        ids.sort();
        ids
    }

    /// Relay-wide counters.
    pub fn counters(&self) -> RelayCounters {
        let mut c = RelayCounters {
            sessions_active: self.active_sessions(),
            ..Default::default()
        };
        {
            let pool = lock(&self.pool);
            c.port_pairs_free = pool.free_pairs();
            c.port_pairs_total = pool.total_pairs();
        }
        for w in &self.workers {
            let wc = &w.counters;
            let get = |r: DropReason| wc.dropped[r as usize].load(Ordering::Relaxed);
            c.packets_relayed += wc.packets_relayed.load(Ordering::Relaxed);
            c.bytes_relayed += wc.bytes_relayed.load(Ordering::Relaxed);
            c.dropped_wrong_source += get(DropReason::WrongSource);
            c.dropped_malformed += get(DropReason::Malformed);
            c.dropped_no_destination += get(DropReason::NoDestination);
            c.dropped_send_error += get(DropReason::SendError);
        }
        c
    }

    /// Ends a session: its worker stops forwarding and closes the sockets,
    /// then the ports go back to the pool (at the back of the queue).
    /// Returns the final stats. If the future is dropped early, the removal
    /// still completes.
    pub async fn remove_session(&self, id: SessionId) -> Result<SessionStats> {
        let (worker, state) = {
            let mut reg = lock(&self.registry);
            let e = reg.sessions.remove(&id).ok_or(Error::NoSuchSession(id))?;
            reg.load[e.worker] -= 1;
            (e.worker, e.state)
        };
        let gone = Error::WorkerGone {
            worker,
            session: id,
        };
        let (done, wait) = oneshot::channel();
        if self.workers[worker]
            .send(Command::Remove { id, done })
            .is_err()
        {
            return Err(gone);
        }
        wait.await.map_err(|_| gone)?;
        tracing::debug!(session = %id, "media session removed");
        let stats = lock(&state).stats(Instant::now());
        Ok(stats)
    }
}

/// A non-blocking UDP socket bound to `addr`, with the configured options.
pub(crate) fn bind_socket(
    config: &RelayConfig,
    addr: SocketAddr,
) -> io::Result<std::net::UdpSocket> {
    let sock = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if config.freebind {
        match addr {
            SocketAddr::V4(_) => sock.set_freebind(true)?,
            SocketAddr::V6(_) => sock.set_freebind_ipv6(true)?,
        }
    }
    if config.recv_buffer_bytes > 0 {
        sock.set_recv_buffer_size(config.recv_buffer_bytes)?;
    }
    if config.send_buffer_bytes > 0 {
        sock.set_send_buffer_size(config.send_buffer_bytes)?;
    }
    if config.connect_latched {
        // Lets the connected per-peer socket share the port.
        sock.set_reuse_port(true)?;
    }
    sock.set_nonblocking(true)?;
    sock.bind(&addr.into())?;
    Ok(sock.into())
}

/// A second socket on `local`, connected to `peer` (see
/// `RelayConfig::connect_latched`).
pub(crate) fn connected_socket(
    config: &RelayConfig,
    local: SocketAddr,
    peer: SocketAddr,
) -> io::Result<std::net::UdpSocket> {
    let sock = bind_socket(config, local)?;
    sock.connect(peer)?;
    Ok(sock)
}

#[cfg(test)]
mod tests;
