//! The control API used by the proxy.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use mio::net::UdpSocket;
use mio::Interest;
use serde::{Deserialize, Serialize};
use socket2::{Domain, Protocol, Socket, Type};

use crate::config::{RelayConfig, SessionOptions};
use crate::error::{Error, Result};
use crate::fastpath::{FastPath, FastPathMode};
use crate::pool::{PortPool, Unavailable};
use crate::session::{
    LocalPorts, RelaySnapshot, SessionId, SessionInfo, SessionParams, SessionSnapshot,
    SessionState, SessionStats, Side, SideState,
};
use crate::stats::DropReason;
use crate::worker::{
    self, lock, pair_token, Command, Parked, SharedPool, SharedState, WorkerHandle, WorkerSession,
    REAP_INTERVAL,
};
use crate::Map;

/// Most datagrams read off a reused socket before a session gets it.
const MAX_STRAYS: usize = 4096;

/// Relay-wide counters, for Prometheus.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayCounters {
    /// Sessions now.
    pub sessions_active: usize,
    /// Datagrams (RTP and RTCP) sent on.
    pub packets_relayed: u64,
    /// Their bytes (UDP payload).
    pub bytes_relayed: u64,
    /// RTP packets the kernel fast path forwarded (not in
    /// `packets_relayed`: the user-space relay never saw them).
    #[serde(default)]
    pub fast_path_packets: u64,
    /// Their bytes (UDP payload).
    #[serde(default)]
    pub fast_path_bytes: u64,
    /// Dropped: unexpected source after latching.
    pub dropped_wrong_source: u64,
    /// Dropped: a source that may not latch the side (by the latching
    /// mode, or a media server the call moved away from). Strangers'
    /// packets: a port-range spray ("RTP bleed") shows here.
    #[serde(default)]
    pub dropped_rejected_source: u64,
    /// Dropped: malformed, too short or truncated.
    pub dropped_malformed: u64,
    /// Dropped: the other side had no address yet.
    pub dropped_no_destination: u64,
    /// Dropped: the kernel refused to send.
    pub dropped_send_error: u64,
    /// Dropped: stray datagrams found on a parked socket when its port
    /// pair was given to a new session (sent to an ended session).
    pub dropped_stray: u64,
    /// Free RTP/RTCP port pairs (not used by any session).
    pub port_pairs_free: usize,
    /// Free pairs whose sockets are kept bound for reuse.
    pub port_pairs_parked: usize,
    /// All port pairs of the range.
    pub port_pairs_total: usize,
}

struct Entry {
    worker: usize,
    state: SharedState,
    /// Whether side A's and side B's RTCP sockets are bound (a side that
    /// multiplexes RTCP on the RTP port has none until it stops).
    rtcp_open: [bool; 2],
}

#[derive(Default)]
struct Registry {
    sessions: Map<SessionId, Entry>,
    load: Vec<usize>,
}

/// One port pair made ready for a session: its RTP socket, and its RTCP
/// socket unless the side multiplexes RTCP (RFC 5761).
struct ReadyPair {
    port: u16,
    index: usize,
    socks: [Option<UdpSocket>; 2],
}

/// The media relay: worker threads forwarding RTP/RTCP, and the session
/// table. Share it as `Arc<MediaRelay>`; every method takes `&self`.
///
/// All methods are non-blocking (they take short mutexes and make a few
/// socket system calls) and can be called from async tasks.
/// [`remove_session`](Self::remove_session) is `async` for compatibility;
/// it does not wait for the worker.
pub struct MediaRelay {
    config: RelayConfig,
    /// First RTP port of the range (pair index 0).
    first_port: u16,
    pool: Arc<SharedPool>,
    registry: Mutex<Registry>,
    workers: Vec<WorkerHandle>,
    dropped_stray: AtomicU64,
    /// The RTP kernel fast path, when on (see `fastpath.rs`).
    fast_path: Option<Arc<FastPath>>,
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
        let n = config.worker_count();
        let pool = PortPool::with_parking(
            config.port_min,
            config.port_max,
            config.parked_pairs_limit(),
            n,
            PARKED_REUSE_AFTER,
        );
        let pairs = pool.total_pairs();
        let pool = Arc::new(SharedPool {
            pool: Mutex::new(pool),
            released: Condvar::new(),
        });
        let fast_path = start_fast_path(&config, pairs)?;
        let workers = (0..n)
            .map(|i| worker::spawn(i, &config, pool.clone(), pairs, fast_path.clone()))
            .collect::<Result<Vec<_>>>()?;
        Ok(MediaRelay {
            registry: Mutex::new(Registry {
                sessions: Map::default(),
                load: vec![0; n],
            }),
            first_port: config.port_min + config.port_min % 2,
            config,
            pool,
            workers,
            dropped_stray: AtomicU64::new(0),
            fast_path,
        })
    }

    /// Whether latched RTP is forwarded in the kernel.
    pub fn fast_path_active(&self) -> bool {
        self.fast_path.is_some()
    }

    /// The config in force.
    pub fn config(&self) -> &RelayConfig {
        &self.config
    }

    /// Allocates ports for both sides, makes their four sockets ready (two
    /// with [`SessionParams::rtcp_mux`]: RTP only) and starts forwarding.
    /// Returns the local addresses to put into SDP. The RTCP port of a side
    /// stays reserved for it even while unbound.
    ///
    /// A pair whose sockets are parked from an ended session gets them
    /// back (drained of anything that arrived since); otherwise new
    /// sockets are bound.
    pub fn create_session(&self, id: SessionId, params: SessionParams) -> Result<SessionInfo> {
        let options = params.options.unwrap_or(self.config.session_defaults);
        options.validate("options.clock_rate")?;
        let mut reg = lock(&self.registry);
        if reg.sessions.contains_key(&id) {
            return Err(Error::SessionExists(id));
        }
        let ip = self.config.local_ip;
        let worker = Self::least_loaded(&reg.load);
        let rtcp = !params.rtcp_mux;
        let a = self.take_pair(id, ip, None, worker, rtcp)?;
        let b = match self.take_pair(id, ip, None, worker, rtcp) {
            Ok(x) => x,
            Err(e) => {
                self.discard(a);
                return Err(e);
            }
        };
        let state = SessionState::new(
            id,
            options,
            SideState::new(
                LocalPorts::new(ip, a.port),
                params.remote_a,
                params.rtcp_mux,
            ),
            SideState::new(
                LocalPorts::new(ip, b.port),
                params.remote_b,
                params.rtcp_mux,
            ),
        );
        self.install(&mut reg, worker, state, a, b)
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
        let (la, lb) = (&snap.side_a.local, &snap.side_b.local);
        let worker = Self::least_loaded(&reg.load);
        let a = self.take_pair(id, la.ip, Some(la.rtp_port), worker, !snap.side_a.rtcp_mux)?;
        let b = match self.take_pair(id, lb.ip, Some(lb.rtp_port), worker, !snap.side_b.rtcp_mux) {
            Ok(x) => x,
            Err(e) => {
                self.discard(a);
                return Err(e);
            }
        };
        debug_assert_eq!((a.port, b.port), (la.rtp_port, lb.rtp_port));
        let state = SessionState::from_snapshot(snap);
        let info = self.install(&mut reg, worker, state, a, b)?;
        drop(reg);
        // A restored session is latched already (a standby taking over):
        // its streams go to the kernel at once.
        self.with_state_synced(id, |_| ())?;
        Ok(info)
    }

    /// Brings a session in line with a newer snapshot of it (a standby
    /// following its active node): the same local ports keep their
    /// sockets; other ports mean a new session in its place.
    pub fn update_session(&self, snap: &SessionSnapshot) -> Result<SessionInfo> {
        let same_ports = self
            .with_state(snap.id, |st| {
                let info = st.info();
                info.side_a == snap.side_a.local && info.side_b == snap.side_b.local
            })
            .ok();
        match same_ports {
            Some(true) => {
                snap.options.validate("options.clock_rate")?;
                let info = self.with_state_synced(snap.id, |st| {
                    st.apply_snapshot(snap);
                    st.info()
                })?;
                // A side that stopped multiplexing RTCP gets its socket;
                // each side tried even when the other's bind fails.
                let mut bound = Ok(());
                for (side, s) in [(Side::A, &snap.side_a), (Side::B, &snap.side_b)] {
                    if !s.rtcp_mux {
                        if let Err(e) = self.open_rtcp(snap.id, side) {
                            bound = bound.and(Err(e));
                        }
                    }
                }
                bound.map(|()| info)
            }
            Some(false) => Err(Error::SessionExists(snap.id)),
            None => self.restore_session(snap),
        }
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
        worker: usize,
        state: SessionState,
        a: ReadyPair,
        b: ReadyPair,
    ) -> Result<SessionInfo> {
        let id = state.id;
        let info = state.info();
        let state = Arc::new(Mutex::new(state));
        let rtcp_open = [a.socks[1].is_some(), b.socks[1].is_some()];
        let [a_rtp, a_rtcp] = a.socks;
        let [b_rtp, b_rtcp] = b.socks;
        let session = WorkerSession {
            id,
            state: state.clone(),
            sockets: [a_rtp, a_rtcp, b_rtp, b_rtcp],
            conns: Default::default(),
            no_conn: None,
            pairs: [a.index, b.index],
        };
        if let Err(cmd) = self.workers[worker].send(Command::Add(Box::new(session))) {
            drop(cmd); // closes the sockets
            let mut pool = lock(&self.pool.pool);
            pool.give_back(a.port, None, 0);
            pool.give_back(b.port, None, 0);
            return Err(Error::WorkerGone {
                worker,
                session: id,
            });
        }
        reg.load[worker] += 1;
        reg.sessions.insert(
            id,
            Entry {
                worker,
                state,
                rtcp_open,
            },
        );
        tracing::debug!(session = %id, worker, a = info.side_a.rtp_port, b = info.side_b.rtp_port, "media session created");
        Ok(info)
    }

    /// Closes the sockets of a pair taken for a session that could not be
    /// created, then gives the pair back.
    fn discard(&self, pair: ReadyPair) {
        let port = pair.port;
        drop(pair);
        lock(&self.pool.pool).give_back(port, None, 0);
    }

    /// The worker for a new session.
    fn least_loaded(load: &[usize]) -> usize {
        (0..load.len()).min_by_key(|&w| load[w]).unwrap_or(0)
    }

    /// Takes a port pair (a given one, or the next free one, preferably
    /// one parked at worker `w`) and makes its sockets ready for `w`: RTP,
    /// and RTCP if `rtcp`.
    fn take_pair(
        &self,
        id: SessionId,
        ip: IpAddr,
        want: Option<u16>,
        w: usize,
        rtcp: bool,
    ) -> Result<ReadyPair> {
        if let Some(port) = want {
            let parked = self.take_given(id, port)?;
            return self
                .ready_pair(ip, port, parked, w, rtcp)
                .map_err(|(addr, source)| {
                    lock(&self.pool.pool).give_back(port, None, 0);
                    Error::Bind {
                        session: id,
                        addr,
                        source,
                    }
                });
        }
        let attempts = lock(&self.pool.pool).total_pairs().min(16);
        let mut last = None;
        for _ in 0..attempts {
            let (port, parked) = self.take_next(id, w)?;
            match self.ready_pair(ip, port, parked, w, rtcp) {
                Ok(p) => return Ok(p),
                Err((addr, source)) => {
                    // Taken by another program: put it at the back and try
                    // the next pair.
                    let mut pool = lock(&self.pool.pool);
                    pool.give_back(port, None, 0);
                    drop(pool);
                    let retry = self.unpark_if_out_of_fds(&source);
                    let in_use = source.kind() == io::ErrorKind::AddrInUse || retry;
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
        Err(last.unwrap_or(self.exhausted(id)))
    }

    /// Out of file descriptors: closes some parked sockets (a cache) so
    /// that a live session gets its own; true if any were closed (worth a
    /// retry).
    fn unpark_if_out_of_fds(&self, e: &io::Error) -> bool {
        if !is_out_of_fds(e) {
            return false;
        }
        let unparked = lock(&self.pool.pool).unpark(UNPARK_BATCH);
        let closed = unparked.len();
        drop(unparked);
        if closed > 0 {
            tracing::debug!(closed, "out of file descriptors: closed parked port pairs");
        }
        closed > 0
    }

    fn exhausted(&self, id: SessionId) -> Error {
        Error::PortsExhausted {
            session: id,
            min: self.config.port_min,
            max: self.config.port_max,
        }
    }

    /// Takes the next free pair for worker `w`. When none is free but pairs of removed
    /// sessions are on their way back, wakes the workers and waits for
    /// them (up to `release_wait`).
    fn take_next(&self, id: SessionId, w: usize) -> Result<(u16, Option<Parked>)> {
        let mut pool = lock(&self.pool.pool);
        let mut deadline = None;
        loop {
            if let Some(taken) = pool.take(Some(w)) {
                return Ok(taken);
            }
            if pool.releasing_pairs() == 0 {
                return Err(self.exhausted(id));
            }
            pool = self
                .wait_release(pool, &mut deadline)
                .ok_or(self.exhausted(id))?;
        }
    }

    /// Takes a given pair, waiting like [`take_next`](Self::take_next) if
    /// its session was just removed.
    fn take_given(&self, id: SessionId, port: u16) -> Result<Option<Parked>> {
        let mut pool = lock(&self.pool.pool);
        let mut deadline = None;
        let busy = |reason| Error::PortUnavailable {
            session: id,
            port,
            reason,
        };
        loop {
            match pool.take_port(port) {
                Ok(parked) => return Ok(parked),
                Err(Unavailable::Refused(reason)) => return Err(busy(reason)),
                Err(Unavailable::Releasing) => {
                    pool = self
                        .wait_release(pool, &mut deadline)
                        .ok_or(busy("still held by a removed session"))?;
                }
            }
        }
    }

    /// One wait for a releasing pair; None when the deadline has passed.
    fn wait_release<'a>(
        &self,
        mut pool: MutexGuard<'a, PortPool<Parked>>,
        deadline: &mut Option<Instant>,
    ) -> Option<MutexGuard<'a, PortPool<Parked>>> {
        let now = Instant::now();
        let end = *deadline.get_or_insert_with(|| {
            for w in &self.workers {
                w.wake();
            }
            now + self.config.release_wait
        });
        let left = end.saturating_duration_since(now);
        if left.is_zero() {
            return None;
        }
        pool.waiters += 1;
        let (mut pool, _) = self
            .pool
            .released
            .wait_timeout(pool, left.min(REAP_INTERVAL))
            .unwrap_or_else(PoisonError::into_inner);
        pool.waiters -= 1;
        Some(pool)
    }

    /// The sockets of pair `port` for a session of worker `w` (RTCP only if
    /// `rtcp`): the parked ones (moved to `w`'s poll if they were
    /// registered with another worker, and drained of stray datagrams),
    /// else new ones. A parked RTCP socket the session does not want is
    /// closed, so that a multiplexing call holds two sockets, not four.
    fn ready_pair(
        &self,
        ip: IpAddr,
        port: u16,
        parked: Option<Parked>,
        w: usize,
        rtcp: bool,
    ) -> std::result::Result<ReadyPair, (SocketAddr, io::Error)> {
        let index = self.pair_index(port);
        let addr = |k: usize| SocketAddr::new(ip, port + k as u16);
        let mut socks: [Option<UdpSocket>; 2] = [None, None];
        match parked {
            Some(parked) if parked.ip == ip => {
                let Parked {
                    rtp,
                    rtcp: parked_rtcp,
                    home,
                    ..
                } = parked;
                socks = [Some(rtp), parked_rtcp];
                if !rtcp {
                    if let Some(mut s) = socks[1].take() {
                        let _ = self.workers[home].registry.deregister(&mut s);
                    }
                }
                for (k, s) in socks.iter_mut().enumerate() {
                    let Some(s) = s else { continue };
                    if home != w {
                        let _ = self.workers[home].registry.deregister(s);
                        self.workers[w]
                            .registry
                            .register(s, pair_token(index, k), Interest::READABLE)
                            .map_err(|e| (addr(k), e))?;
                    }
                }
                let strays = drain_pair(&socks);
                if strays > 0 {
                    self.dropped_stray
                        .fetch_add(strays as u64, Ordering::Relaxed);
                    tracing::debug!(port, strays, "stray datagrams dropped on port reuse");
                }
            }
            // Bound to another address: closed before binding anew.
            other => drop(other),
        }
        for (k, sock) in socks.iter_mut().enumerate().take(1 + usize::from(rtcp)) {
            if sock.is_none() {
                *sock = Some(self.bind_registered(addr(k), w, pair_token(index, k))?);
            }
        }
        Ok(ReadyPair { port, index, socks })
    }

    /// Pool index of the pair whose RTP port is `rtp_port`.
    fn pair_index(&self, rtp_port: u16) -> usize {
        usize::from((rtp_port - self.first_port) / 2)
    }

    /// A new socket bound to `addr` and registered with worker `w`'s poll
    /// under `token`.
    fn bind_registered(
        &self,
        addr: SocketAddr,
        w: usize,
        token: mio::Token,
    ) -> std::result::Result<UdpSocket, (SocketAddr, io::Error)> {
        let mut sock = UdpSocket::from_std(bind_socket(&self.config, addr).map_err(|e| (addr, e))?);
        self.workers[w]
            .registry
            .register(&mut sock, token, Interest::READABLE)
            .map_err(|e| (addr, e))?;
        Ok(sock)
    }

    /// Binds side `side`'s RTCP socket if it has none (its peer stopped
    /// multiplexing RTCP, or never did) and hands it to the worker.
    pub fn open_rtcp(&self, id: SessionId, side: Side) -> Result<()> {
        let mut reg = lock(&self.registry);
        let entry = reg.sessions.get_mut(&id).ok_or(Error::NoSuchSession(id))?;
        if entry.rtcp_open[side.index()] {
            return Ok(());
        }
        let local = lock(&entry.state).sides[side.index()].local;
        let token = pair_token(self.pair_index(local.rtp_port), 1);
        let bound = match self.bind_registered(local.rtcp_addr(), entry.worker, token) {
            Err((_, e)) if self.unpark_if_out_of_fds(&e) => {
                self.bind_registered(local.rtcp_addr(), entry.worker, token)
            }
            other => other,
        };
        let sock = bound.map_err(|(addr, source)| Error::Bind {
            session: id,
            addr,
            source,
        })?;
        let worker = entry.worker;
        if self.workers[worker]
            .send(Command::AttachRtcp { id, side, sock })
            .is_err()
        {
            return Err(Error::WorkerGone {
                worker,
                session: id,
            });
        }
        entry.rtcp_open[side.index()] = true;
        tracing::debug!(session = %id, %side, port = local.rtcp_port, "late RTCP socket bound");
        Ok(())
    }

    fn state(&self, id: SessionId) -> Result<SharedState> {
        lock(&self.registry)
            .sessions
            .get(&id)
            .map(|e| e.state.clone())
            .ok_or(Error::NoSuchSession(id))
    }

    /// A session's snapshot, its continuity state first brought up to
    /// what the kernel fast path sent (a standby taking over continues
    /// from there).
    fn snapshot_of(&self, st: &mut SessionState) -> SessionSnapshot {
        if let Some(fp) = &self.fast_path {
            let now = worker::unix_us();
            fp.catch_up(st, Side::A, now);
            fp.catch_up(st, Side::B, now);
        }
        st.snapshot()
    }

    fn with_state<T>(&self, id: SessionId, f: impl FnOnce(&mut SessionState) -> T) -> Result<T> {
        let state = self.state(id)?;
        let mut st = lock(&state);
        Ok(f(&mut st))
    }

    /// [`with_state`](Self::with_state) for a change that may move the
    /// session's kernel entries: they follow it under the same lock.
    fn with_state_synced<T>(
        &self,
        id: SessionId,
        f: impl FnOnce(&mut SessionState) -> T,
    ) -> Result<T> {
        self.with_state(id, |st| {
            let out = f(st);
            if let Some(fp) = &self.fast_path {
                fp.sync(st, worker::unix_us());
            }
            out
        })
    }

    /// Sets the RTP address of `side` from its SDP (RTCP defaults to RTP+1).
    /// A different address than before re-arms latching for that side.
    pub fn set_remote(&self, id: SessionId, side: Side, addr: SocketAddr) -> Result<()> {
        self.with_state_synced(id, |st| st.set_remote(side, addr))
    }

    /// Whether the peer of `side` multiplexes RTCP on the RTP port (RFC
    /// 5761; both its SDP and the SDP it was sent carry `a=rtcp-mux`).
    /// RTCP toward a multiplexing side goes to its RTP address from the
    /// side's RTP port; a side that does not multiplex gets its RTCP socket
    /// now if it had none (sessions created with
    /// [`SessionParams::rtcp_mux`]). The socket then stays until the
    /// session ends.
    pub fn set_rtcp_mux(&self, id: SessionId, side: Side, mux: bool) -> Result<()> {
        self.with_state(id, |st| st.set_rtcp_mux(side, mux))?;
        if mux {
            Ok(())
        } else {
            self.open_rtcp(id, side)
        }
    }

    /// Sets the RTCP address of `side` (SDP `a=rtcp`).
    pub fn set_remote_rtcp(&self, id: SessionId, side: Side, addr: SocketAddr) -> Result<()> {
        self.with_state(id, |st| st.set_remote_rtcp(side, addr))
    }

    /// Tells the relay the IP `side`'s SIP messages come from (None: not
    /// known). With [`Latching::SignalledIp`](crate::Latching) a source on
    /// that IP may latch the side even though its SDP names another
    /// address: a peer behind NAT.
    pub fn set_signalling_ip(&self, id: SessionId, side: Side, ip: Option<IpAddr>) -> Result<()> {
        self.with_state(id, |st| st.set_signalling_ip(side, ip))
    }

    /// Moves leg B to a new media server at `addr` (its RTP address; RTCP
    /// at +1 until it sends from elsewhere) whose SIP comes from
    /// `signalling_ip`. Side B re-latches, to a source the session's
    /// latching mode allows for the new server only; packets from the old
    /// server's addresses are dropped; with the session's `continuity`
    /// option, leg A keeps receiving one continuous stream (same SSRC,
    /// consecutive sequence numbers, plausible timestamps).
    pub fn switch_upstream(
        &self,
        id: SessionId,
        addr: SocketAddr,
        signalling_ip: Option<IpAddr>,
    ) -> Result<()> {
        self.with_state_synced(id, |st| st.switch_upstream(addr, signalling_ip))
    }

    /// Changes a session's options (clock rate, continuity, re-latching).
    pub fn set_options(&self, id: SessionId, options: SessionOptions) -> Result<()> {
        options.validate("options.clock_rate")?;
        self.with_state_synced(id, |st| st.options = options)
    }

    /// Stats of both streams of a session.
    pub fn stats(&self, id: SessionId) -> Result<SessionStats> {
        let mut stats = self.with_state(id, |st| st.stats(Instant::now()))?;
        if let Some(fp) = &self.fast_path {
            fp.add_stats(id, &mut stats);
        }
        Ok(stats)
    }

    /// How long since `side` last received RTP (None: never). Cheaper than
    /// [`stats`](Self::stats); for inactivity detection.
    pub fn idle_time(&self, id: SessionId, side: Side) -> Result<Option<Duration>> {
        let now = Instant::now();
        let user = self.with_state(id, |st| {
            st.stats[side.index()]
                .last_packet()
                .map(|t| now.saturating_duration_since(t))
        })?;
        let kernel = self
            .fast_path
            .as_ref()
            .and_then(|fp| fp.idle_time(id, side));
        Ok(match (user, kernel) {
            (Some(u), Some(k)) => Some(u.min(k)),
            (u, k) => u.or(k),
        })
    }

    /// How long since the peer of `side` last refused a packet (ICMP port
    /// unreachable; None: never): on a LAN, the sign that a media server's
    /// process died, long before its silence says so.
    pub fn refused_since(&self, id: SessionId, side: Side) -> Result<Option<Duration>> {
        let now = Instant::now();
        self.with_state(id, |st| {
            st.stats[side.index()]
                .last_refused()
                .map(|t| now.saturating_duration_since(t))
        })
    }

    /// Local addresses of a session.
    pub fn session_info(&self, id: SessionId) -> Result<SessionInfo> {
        self.with_state(id, |st| st.info())
    }

    /// Plain-data copy of one session.
    pub fn session_snapshot(&self, id: SessionId) -> Result<SessionSnapshot> {
        self.with_state(id, |st| self.snapshot_of(st))
    }

    /// Plain-data copy of every session, ordered by id.
    pub fn snapshot(&self) -> RelaySnapshot {
        let states: Vec<SharedState> = lock(&self.registry)
            .sessions
            .values()
            .map(|e| e.state.clone())
            .collect();
        let mut sessions: Vec<_> = states
            .iter()
            .map(|s| self.snapshot_of(&mut lock(s)))
            .collect();
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
            let pool = lock(&self.pool.pool);
            c.port_pairs_free = pool.free_pairs() + pool.releasing_pairs();
            c.port_pairs_parked = pool.parked_pairs();
            c.port_pairs_total = pool.total_pairs();
        }
        c.dropped_stray = self.dropped_stray.load(Ordering::Relaxed);
        if let Some(fp) = &self.fast_path {
            (c.fast_path_packets, c.fast_path_bytes) = fp.totals();
        }
        for w in &self.workers {
            let wc = &w.counters;
            let get = |r: DropReason| wc.dropped[r as usize].load(Ordering::Relaxed);
            c.packets_relayed += wc.packets_relayed.load(Ordering::Relaxed);
            c.bytes_relayed += wc.bytes_relayed.load(Ordering::Relaxed);
            c.dropped_wrong_source += get(DropReason::WrongSource);
            c.dropped_rejected_source += get(DropReason::RejectedSource);
            c.dropped_malformed += get(DropReason::Malformed);
            c.dropped_no_destination += get(DropReason::NoDestination);
            c.dropped_send_error += get(DropReason::SendError);
        }
        c
    }

    /// Ends a session: nothing more is forwarded or counted for it, and
    /// its final stats are returned. Its worker lets go of the sockets at
    /// its next wake-up (at most a few tens of ms later; it is not woken
    /// for this); only then do the ports go back to the pool (at the back
    /// of the queue), with their sockets parked for reuse. Does not wait
    /// for the worker.
    pub async fn remove_session(&self, id: SessionId) -> Result<SessionStats> {
        self.remove_session_now(id)
    }

    /// [`MediaRelay::remove_session`] without the future: it never waits
    /// (short locks, a command queued for the worker), so the call engine
    /// removes its sessions inline rather than through a task per call.
    pub fn remove_session_now(&self, id: SessionId) -> Result<SessionStats> {
        let (worker, state) = {
            let mut reg = lock(&self.registry);
            let e = reg.sessions.remove(&id).ok_or(Error::NoSuchSession(id))?;
            reg.load[e.worker] -= 1;
            (e.worker, e.state)
        };
        let (stats, ports) = {
            let mut st = lock(&state);
            st.removed = true;
            let ports = [st.sides[0].local.rtp_port, st.sides[1].local.rtp_port];
            let mut stats = st.stats(Instant::now());
            if let Some(fp) = &self.fast_path {
                fp.remove(&mut st, &mut stats, worker::unix_us());
            }
            (stats, ports)
        };
        {
            let mut pool = lock(&self.pool.pool);
            for port in ports {
                pool.mark_releasing(port);
            }
        }
        if self.workers[worker].send(Command::Remove(id)).is_err() {
            return Err(Error::WorkerGone {
                worker,
                session: id,
            });
        }
        tracing::debug!(session = %id, "media session removed");
        Ok(stats)
    }
}

/// Reads and drops whatever waits on a reused socket (sent to the session
/// that had the port before). Returns how many datagrams.
/// A parked pair goes to its worker's next session once it rested this
/// long: the last call's peers have long stopped sending by then (a late
/// straggler is drained on reuse and latching ignores a foreign source),
/// and at a few thousand calls a second the sockets of the pairs freed in
/// one second are all that has to stay parked.
/// Loads and attaches the kernel fast path as `fast_path` says: `auto`
/// logs once why not and goes on without it, `on` refuses to start.
fn start_fast_path(config: &RelayConfig, pairs: usize) -> Result<Option<Arc<FastPath>>> {
    if config.fast_path == FastPathMode::Off {
        return Ok(None);
    }
    // Two entries per session, two pairs per session.
    let entries = u32::try_from(pairs).unwrap_or(u32::MAX);
    match FastPath::start(config.local_ip, entries) {
        Ok(fp) => Ok(Some(Arc::new(fp))),
        Err(reason) if config.fast_path == FastPathMode::Auto => {
            tracing::warn!(
                "media.fast_path = \"auto\": the RTP kernel fast path is unavailable \
                 ({reason}); the user-space relay forwards all media"
            );
            Ok(None)
        }
        Err(reason) => Err(Error::FastPathUnavailable(Box::new(reason))),
    }
}

const PARKED_REUSE_AFTER: Duration = Duration::from_millis(500);

/// Parked pairs closed at once when the process runs out of descriptors.
const UNPARK_BATCH: usize = 64;

/// `EMFILE` (process limit) or `ENFILE` (system limit).
fn is_out_of_fds(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE))
}

/// Drains both sockets of a reused pair; returns how many datagrams. One
/// `poll` first: most reused sockets are empty, and it saves a `recv`
/// ending in `EAGAIN` per socket (two per pair, four per call).
fn drain_pair(socks: &[Option<UdpSocket>; 2]) -> usize {
    use std::os::fd::AsFd;
    if let Ok(false) = crate::sys::any_readable(socks.iter().flatten().map(|s| s.as_fd())) {
        return 0;
    }
    socks.iter().flatten().map(drain_strays).sum()
}

fn drain_strays(sock: &UdpSocket) -> usize {
    let mut buf = [0u8; 1]; // dropped anyway: truncation is fine
    let mut n = 0;
    while n < MAX_STRAYS {
        match sock.recv(&mut buf) {
            Ok(_) => n += 1,
            Err(e) => match e.kind() {
                io::ErrorKind::Interrupted | io::ErrorKind::ConnectionRefused => continue,
                _ => break, // WouldBlock: empty
            },
        }
    }
    n
}

/// A non-blocking UDP socket bound to `addr`, with the configured options.
pub(crate) fn bind_socket(
    config: &RelayConfig,
    addr: SocketAddr,
) -> io::Result<std::net::UdpSocket> {
    // Non-blocking (and close-on-exec) from the start: no fcntl calls.
    let sock = Socket::new(
        Domain::for_address(addr),
        Type::DGRAM.nonblocking(),
        Some(Protocol::UDP),
    )?;
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
