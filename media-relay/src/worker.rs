//! Forwarding threads.
//!
//! Each worker owns the sockets of its sessions and runs one `mio` (epoll,
//! edge-triggered) loop. A readable socket is drained with `recvmmsg`
//! batches; every batch is judged under one lock of the session state
//! (latching, stats, rewrite in place) and sent on with one `sendmmsg` from
//! the peer socket. A socket that still has data after a few full batches is
//! put at the back of the round, so one busy stream cannot starve the rest.
//!
//! The control side talks to a worker through a channel *without* waking
//! it: the worker handles queued commands whenever it wakes up (first
//! thing, before the events), and wakes at least every `REAP_INTERVAL`
//! while it has sessions. The control side registers a new session's
//! sockets with the worker's poll itself (a cloned `mio::Registry`); a
//! session added before its first packet is therefore in place before that
//! packet's event is handled. A removal marks the session state (nothing
//! more is forwarded or counted), and the worker lets go of the sockets at
//! its next wake-up: their port pairs go back to the pool with the two
//! sockets still bound and registered (parked), so that the next session
//! on the pair needs no new sockets. A worker without sessions for a while
//! sleeps without timeout and is woken by the next command.
//!
//! Tokens name port pairs of the pool (`pair * 4 + k`), not sessions: a
//! parked pair keeps its registration, and an event for a pair no session
//! of this worker uses is only noted (`PairSlot::seen`; its sockets are
//! read once a session gets them).
//!
//! Each of a session's four ports has an unconnected socket, which receives
//! everything (the RTCP port of a side whose peer multiplexes RTCP on the
//! RTP port, RFC 5761, has none unless that side once did not: such a call
//! holds two sockets, not four; what comes in on an RTP port is routed by
//! its class, RTP or RTCP, see `SessionState::route`), and, once the port has latched (and `connect_latched` is on),
//! a second socket on the same port `connect`ed to the latched peer. The
//! kernel delivers the peer's packets to the connected socket and caches the
//! route for what is sent through it. The connected socket changes nothing
//! in the logic: its packets go through the same checks with their real
//! source address, and it is used for sending only while its peer is the
//! destination; it is replaced or closed when the latch moves.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsFd;
use std::sync::atomic::{fence, AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Registry, Token, Waker};
use socket2::SockAddr;

use crate::config::RelayConfig;
use crate::error::{Error, Result};
use crate::fastpath::FastPath;
use crate::pool::PortPool;
use crate::relay::connected_socket;
use crate::rtp::{self, Kind};
use crate::session::{Peer, Port, SessionId, SessionState, Side, Verdict};
use crate::stats::DropReason;
use crate::sys::{pin_current_thread, RecvBatch, SendBatch};

const WAKER: Token = Token(usize::MAX);
/// Full batches read from one socket before it yields to the others.
const MAX_ROUNDS: usize = 4;
/// Tokens per port pair: its RTP and RTCP sockets, then the sockets
/// connected to their latched peers.
const TOKENS: usize = 4;
/// A worker with sessions acts on queued commands at least this often,
/// even when no packet wakes it (commands do not wake it).
pub(crate) const REAP_INTERVAL: Duration = Duration::from_millis(20);
/// A worker without sessions for this long sleeps until a command wakes it.
const IDLE_AFTER: Duration = Duration::from_secs(1);
/// Commands queued without a wake-up before the next one wakes the worker
/// (bounds the queue, and the pairs waiting to be released, under load).
const WAKE_EVERY: usize = 64;

/// What the control side and a worker signal each other besides commands.
#[repr(align(128))]
#[derive(Debug, Default)]
struct Signals {
    /// Set by the worker before it sleeps without a timeout.
    asleep: AtomicBool,
    /// Commands sent since the worker last looked at its queue.
    queued: AtomicUsize,
}

pub(crate) type SharedState = Arc<Mutex<SessionState>>;

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Token of socket `k` of port pair `pair` (0 = RTP, 1 = RTCP, 2 and 3 =
/// their connected sockets).
pub(crate) fn pair_token(pair: usize, k: usize) -> Token {
    Token(pair * TOKENS + k)
}

/// Port `i` of a session: 0 = A RTP, 1 = A RTCP, 2 = B RTP, 3 = B RTCP.
/// What arrives on port `i` leaves through port `i ^ 2`.
fn port_role(i: usize) -> (Side, Port) {
    let side = if i < 2 { Side::A } else { Side::B };
    let port = if i.is_multiple_of(2) {
        Port::Rtp
    } else {
        Port::Rtcp
    };
    (side, port)
}

/// A socket connected to the latched peer of one port.
/// The peer in its compact form: 24 bytes a connection where a
/// `SocketAddr` made it 36, and every session keeps room for four.
pub(crate) struct Conn {
    sock: UdpSocket,
    peer: Peer,
}

/// The sockets of a free port pair (RTP, and RTCP unless its last session
/// multiplexed RTCP on that side), kept bound for the next session that
/// gets the pair. They stay registered with the poll of worker `home`,
/// which does not read them while no session of its own uses them.
pub(crate) struct Parked {
    pub rtp: UdpSocket,
    pub rtcp: Option<UdpSocket>,
    pub ip: IpAddr,
    pub home: usize,
}

/// The port pool, shared by the control side and the workers.
pub(crate) struct SharedPool {
    pub pool: Mutex<PortPool<Parked>>,
    /// Signalled when a releasing pair comes back (only if
    /// `PortPool::waiters` says someone waits).
    pub released: Condvar,
}

/// A session as handed to its worker. Its sockets are already registered
/// with the worker's poll, under the tokens of their pairs.
pub(crate) struct WorkerSession {
    pub id: SessionId,
    pub state: SharedState,
    /// Unconnected sockets of the four ports (an RTCP port of a side that
    /// multiplexes has none).
    pub sockets: [Option<UdpSocket>; 4],
    /// Connected sockets, per port.
    pub conns: [Option<Conn>; 4],
    /// Peer a connected socket could not be made for, per port (not
    /// retried for that peer). Boxed, made at the first failure: most
    /// sessions never have one, and inline it took 128 bytes of each.
    pub no_conn: Option<Box<[Option<SocketAddr>; 4]>>,
    /// Pool indexes of the two port pairs (they name the sockets' tokens).
    pub pairs: [usize; 2],
}

impl WorkerSession {
    /// The local address of port `p` (RTP and RTCP of side A, then of B),
    /// from the session's state: read when a connected socket is made and
    /// for a log line, so a copy here (42 bytes a session) is not worth
    /// keeping. Never called with the state locked.
    pub(crate) fn local(&self, p: usize) -> SocketAddr {
        let local = lock(&self.state).sides[p / 2].local;
        match p % 2 {
            0 => local.rtp_addr(),
            _ => local.rtcp_addr(),
        }
    }

    fn no_conn(&self, p: usize) -> Option<SocketAddr> {
        self.no_conn.as_ref().and_then(|n| n[p])
    }

    fn set_no_conn(&mut self, p: usize, peer: SocketAddr) {
        self.no_conn.get_or_insert_with(Default::default)[p] = Some(peer);
    }
}

pub(crate) enum Command {
    Add(Box<WorkerSession>),
    /// The session was removed (its state is marked): close or park its
    /// sockets and give its ports back.
    Remove(SessionId),
    /// A late RTCP socket for side `side` of a session (its peer does not
    /// multiplex after all), already registered with the worker's poll.
    AttachRtcp {
        id: SessionId,
        side: Side,
        sock: UdpSocket,
    },
    Shutdown,
}

/// Counters of one worker (one writer; padded against false sharing).
#[repr(align(128))]
#[derive(Debug, Default)]
pub(crate) struct WorkerCounters {
    pub packets_relayed: AtomicU64,
    pub bytes_relayed: AtomicU64,
    pub dropped: [AtomicU64; DropReason::COUNT],
}

impl WorkerCounters {
    fn add(&self, c: &AtomicU64, n: u64) {
        if n > 0 {
            c.fetch_add(n, Ordering::Relaxed);
        }
    }
}

pub(crate) struct WorkerHandle {
    tx: mpsc::Sender<Command>,
    waker: Arc<Waker>,
    signals: Arc<Signals>,
    /// The worker's poll registry (epoll_ctl is thread-safe): the control
    /// side registers sockets for it.
    pub registry: Registry,
    pub counters: Arc<WorkerCounters>,
    thread: Option<JoinHandle<()>>,
}

impl WorkerHandle {
    /// Queues a command; gives it back if the worker is gone. The worker is
    /// not woken for it (it acts on it at its next wake-up: a packet, or
    /// `REAP_INTERVAL`), unless it sleeps idle or `WAKE_EVERY` commands
    /// are waiting.
    pub(crate) fn send(&self, cmd: Command) -> Result<(), Command> {
        self.tx.send(cmd).map_err(|e| e.0)?;
        let sig = &self.signals;
        if sig.queued.fetch_add(1, Ordering::Relaxed) + 1 == WAKE_EVERY {
            self.wake();
            return Ok(());
        }
        // Pairs with the fence between `asleep = true` and the last
        // `try_recv` of the worker: either it sees the command, or this
        // sees the flag.
        fence(Ordering::SeqCst);
        if sig.asleep.load(Ordering::Relaxed) && sig.asleep.swap(false, Ordering::Relaxed) {
            self.wake();
        }
        Ok(())
    }

    /// Wakes the worker now.
    pub(crate) fn wake(&self) {
        // A failed wake means the poller is gone; the next send will fail.
        let _ = self.waker.wake();
    }
}

impl Drop for WorkerHandle {
    fn drop(&mut self) {
        if self.tx.send(Command::Shutdown).is_ok() {
            self.wake();
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

pub(crate) fn spawn(
    index: usize,
    config: &RelayConfig,
    pool: Arc<SharedPool>,
    pairs: usize,
    fast_path: Option<Arc<FastPath>>,
) -> Result<WorkerHandle> {
    let start = |source: io::Error| Error::WorkerStart {
        worker: index,
        source,
    };
    let poll = Poll::new().map_err(start)?;
    let registry = poll.registry().try_clone().map_err(start)?;
    let waker = Arc::new(Waker::new(poll.registry(), WAKER).map_err(start)?);
    let signals = Arc::new(Signals::default());
    let (tx, rx) = mpsc::channel();
    let counters = Arc::new(WorkerCounters::default());
    let core = (!config.cpu_affinity.is_empty())
        .then(|| config.cpu_affinity[index % config.cpu_affinity.len()]);
    let mut worker = Worker {
        index,
        config: config.clone(),
        poll,
        rx,
        slots: Vec::new(),
        free_slots: Vec::new(),
        by_id: HashMap::new(),
        pairs: vec![PairSlot::default(); pairs],
        recv: RecvBatch::new(config.batch_size),
        send: SendBatch::new(),
        keep: vec![0; config.batch_size],
        pending: Vec::new(),
        counters: counters.clone(),
        pool,
        signals: signals.clone(),
        fast_path,
    };
    let thread = std::thread::Builder::new()
        .name(format!("media-relay-{index}"))
        .spawn(move || {
            if let Some(core) = core {
                if let Err(e) = pin_current_thread(core) {
                    tracing::warn!(worker = index, core, "cannot pin media relay worker: {e}");
                }
            }
            worker.run();
        })
        .map_err(start)?;
    Ok(WorkerHandle {
        tx,
        waker,
        signals,
        registry,
        counters,
        thread: Some(thread),
    })
}

/// What a worker knows of one port pair of the pool.
#[derive(Clone, Copy, Debug, Default)]
struct PairSlot {
    /// Slot and side of the session of this worker using the pair.
    owner: Option<(u32, u8)>,
    /// An event came while no session of this worker used the pair: its
    /// sockets are read once a session gets them.
    seen: bool,
}

struct Worker {
    index: usize,
    config: RelayConfig,
    poll: Poll,
    rx: mpsc::Receiver<Command>,
    /// Boxed as the control side made them: a slot costs 8 bytes, and the
    /// vector's spare capacity (it doubles) no whole sessions.
    slots: Vec<Option<Box<WorkerSession>>>,
    free_slots: Vec<usize>,
    by_id: HashMap<SessionId, usize>,
    pairs: Vec<PairSlot>,
    recv: RecvBatch,
    send: SendBatch,
    /// Per packet of the batch: 0 dropped, else its route group (1, 2).
    keep: Vec<u8>,
    pending: Vec<usize>,
    counters: Arc<WorkerCounters>,
    pool: Arc<SharedPool>,
    signals: Arc<Signals>,
    /// The RTP kernel fast path: latched streams are handed to it after a
    /// batch (see `fastpath.rs`).
    fast_path: Option<Arc<FastPath>>,
}

pub(crate) fn unix_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

impl Worker {
    fn run(&mut self) {
        let mut events = Events::with_capacity(1024);
        let mut round = Vec::new();
        let spin = Duration::from_micros(self.config.busy_poll_us);
        let mut last_busy = Instant::now();
        let mut empty_since = Some(Instant::now());
        loop {
            let timeout =
                if !self.pending.is_empty() || (!spin.is_zero() && last_busy.elapsed() < spin) {
                    Some(Duration::ZERO)
                } else if empty_since.is_some_and(|t| t.elapsed() >= IDLE_AFTER) {
                    // Nothing to reap: sleep until a packet or a command
                    // (which wakes a sleeping worker) comes.
                    self.signals.asleep.store(true, Ordering::Relaxed);
                    fence(Ordering::SeqCst);
                    match self.rx.try_recv() {
                        Ok(cmd) => {
                            self.signals.asleep.store(false, Ordering::Relaxed);
                            if !self.command(cmd) {
                                return;
                            }
                            if !self.by_id.is_empty() {
                                empty_since = None;
                            }
                            continue;
                        }
                        Err(mpsc::TryRecvError::Disconnected) => return,
                        Err(mpsc::TryRecvError::Empty) => None,
                    }
                } else {
                    Some(REAP_INTERVAL)
                };
            let polled = self.poll.poll(&mut events, timeout);
            if timeout.is_none() {
                self.signals.asleep.store(false, Ordering::Relaxed);
            }
            if let Err(e) = polled {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                tracing::error!(worker = self.index, "media relay poll failed: {e}");
                return;
            }
            if !events.is_empty() && !spin.is_zero() {
                last_busy = Instant::now();
            }
            // Commands first: a session added before its first packet came
            // is in place before that packet's event is handled.
            if !self.commands() {
                return;
            }
            if !self.by_id.is_empty() {
                empty_since = None;
            } else if empty_since.is_none() {
                empty_since = Some(Instant::now());
            }
            // Sockets left over from the last round go after this round's
            // fresh events.
            std::mem::swap(&mut round, &mut self.pending);
            for ev in events.iter() {
                if ev.token() != WAKER {
                    self.drain(ev.token().0);
                }
            }
            for t in round.drain(..) {
                self.drain(t);
            }
        }
    }

    /// Handles queued commands; false means stop.
    fn commands(&mut self) -> bool {
        self.signals.queued.store(0, Ordering::Relaxed);
        loop {
            match self.rx.try_recv() {
                Ok(cmd) => {
                    if !self.command(cmd) {
                        return false;
                    }
                }
                Err(mpsc::TryRecvError::Empty) => return true,
                Err(mpsc::TryRecvError::Disconnected) => return false,
            }
        }
    }

    /// Handles one command; false means stop.
    fn command(&mut self, cmd: Command) -> bool {
        match cmd {
            Command::Add(s) => self.add(s),
            Command::Remove(id) => self.remove(id),
            Command::AttachRtcp { id, side, sock } => self.attach_rtcp(id, side, sock),
            Command::Shutdown => return false,
        }
        true
    }

    fn add(&mut self, s: Box<WorkerSession>) {
        let slot = self.free_slots.pop().unwrap_or_else(|| {
            self.slots.push(None);
            self.slots.len() - 1
        });
        for (side, &pair) in s.pairs.iter().enumerate() {
            let e = &mut self.pairs[pair];
            e.owner = Some((slot as u32, side as u8));
            if std::mem::take(&mut e.seen) {
                // Something arrived before the session was in place.
                self.pending.push(pair_token(pair, 0).0);
                self.pending.push(pair_token(pair, 1).0);
            }
        }
        self.by_id.insert(s.id, slot);
        self.slots[slot] = Some(s);
    }

    fn attach_rtcp(&mut self, id: SessionId, side: Side, mut sock: UdpSocket) {
        let slot = self.by_id.get(&id).copied();
        let Some(Some(s)) = slot.and_then(|slot| self.slots.get_mut(slot)) else {
            // Removed meanwhile: the control side gives the port back with
            // the session's pair; the socket is closed here.
            let _ = self.poll.registry().deregister(&mut sock);
            return;
        };
        let p = side.index() * 2 + 1;
        if let Some(mut old) = s.sockets[p].replace(sock) {
            let _ = self.poll.registry().deregister(&mut old);
        }
        // What arrived before this command was handled: its event was
        // already consumed (edge-triggered) while the slot was empty.
        self.pending.push(pair_token(s.pairs[side.index()], 1).0);
    }

    /// Lets go of a removed session's sockets: its connected sockets are
    /// closed, its port pairs go back to the pool with their two sockets
    /// parked (still registered here) while the pool has room, else closed
    /// first.
    fn remove(&mut self, id: SessionId) {
        let Some(slot) = self.by_id.remove(&id) else {
            return;
        };
        self.free_slots.push(slot);
        let Some(s) = self.slots[slot].take() else {
            return;
        };
        // The RTP ports of side A and side B go back to the pool; the IPs
        // stay with parked sockets.
        let (ports, local_ips) = {
            let st = lock(&s.state);
            let [a, b] = [st.sides[0].local, st.sides[1].local];
            ([a.rtp_port, b.rtp_port], [a.ip, b.ip])
        };
        let WorkerSession {
            sockets,
            mut conns,
            pairs,
            ..
        } = *s;
        let registry = self.poll.registry();
        for c in conns.iter_mut().flatten() {
            let _ = registry.deregister(&mut c.sock);
        }
        drop(conns); // closed before the ports are reused
        for pair in pairs {
            self.pairs[pair] = PairSlot::default();
        }
        let [a_rtp, a_rtcp, b_rtp, b_rtcp] = sockets;
        let parked = |rtp: Option<UdpSocket>, rtcp, ip: IpAddr| {
            rtp.map(|rtp| Parked {
                rtp,
                rtcp,
                ip,
                home: self.index,
            })
        };
        let mut sides = [
            parked(a_rtp, a_rtcp, local_ips[0]),
            parked(b_rtp, b_rtcp, local_ips[1]),
        ];
        let shared = &self.pool;
        let mut close = false;
        {
            let mut pool = lock(&shared.pool);
            for (side, port) in sides.iter_mut().zip(ports) {
                if pool.parking_room() {
                    pool.give_back(port, side.take(), self.index);
                } else {
                    close = true;
                }
            }
            if pool.waiters > 0 {
                shared.released.notify_all();
            }
        }
        if close {
            // No room to park: close the sockets before their ports can be
            // handed out again.
            let mut closed = [None; 2];
            for ((side, port), c) in sides.iter_mut().zip(ports).zip(&mut closed) {
                if let Some(parked) = side.take() {
                    drop(parked);
                    *c = Some(port);
                }
            }
            let mut pool = lock(&shared.pool);
            for port in closed.into_iter().flatten() {
                pool.give_back(port, None, self.index);
            }
            if pool.waiters > 0 {
                shared.released.notify_all();
            }
        }
    }

    /// Reads socket `token` until it is empty (or has had its share), then
    /// brings the port's connected socket in line with its latch.
    fn drain(&mut self, token: usize) {
        let (pair, k) = (token / TOKENS, token % TOKENS);
        let Some(entry) = self.pairs.get_mut(pair) else {
            return;
        };
        let Some((slot, side)) = entry.owner else {
            // A parked pair (strays are drained when it is reused), or a
            // pair on its way to a session.
            entry.seen = true;
            return;
        };
        let (slot, p) = (slot as usize, usize::from(side) * 2 + k % 2);
        let i = if k < 2 { p } else { p + 4 };
        match self.drain_socket(slot, i) {
            Drained::Done(latched) => {
                if self.config.connect_latched {
                    self.align_conn(slot, p, latched);
                }
            }
            Drained::Busy(latched) => {
                if self.config.connect_latched {
                    self.align_conn(slot, p, latched);
                }
                self.pending.push(token);
            }
            Drained::Gone => {}
        }
    }

    fn drain_socket(&mut self, slot: usize, i: usize) -> Drained {
        let Some(Some(sess)) = self.slots.get(slot) else {
            return Drained::Gone;
        };
        let p = i % 4;
        let sock = if i < 4 {
            match &sess.sockets[p] {
                Some(s) => s,
                None => return Drained::Gone,
            }
        } else {
            match &sess.conns[p] {
                Some(c) => &c.sock,
                None => return Drained::Gone,
            }
        };
        let (side, port) = port_role(p);
        let rx = side.index();
        let mut latched = None;
        for _ in 0..MAX_ROUNDS {
            let n = match self.recv.recv(sock.as_fd()) {
                Ok(n) => n,
                Err(e) => match e.kind() {
                    io::ErrorKind::WouldBlock => return Drained::Done(latched),
                    io::ErrorKind::Interrupted => continue,
                    // A connected socket reports ICMP errors of its peer.
                    io::ErrorKind::ConnectionRefused => {
                        lock(&sess.state).stats[rx].on_refused(1, Instant::now());
                        continue;
                    }
                    _ => {
                        tracing::debug!(session = %sess.id, "recv on port {}: {e}", sess.local(p));
                        return Drained::Done(latched);
                    }
                },
            };
            let now = Instant::now();
            let now_us = unix_us();
            let mut drops = [0u64; DropReason::COUNT];
            let mut forward = 0u64;
            // Where the kept packets go: group 1 by the port's own class,
            // group 2 (RTCP multiplexed on an RTP port, when its route
            // differs: the other side does not multiplex) elsewhere.
            let routes = {
                let mut st = lock(&sess.state);
                if st.removed {
                    // Waiting to be reaped: nothing more is counted.
                    if n < self.recv.capacity() {
                        return Drained::Done(None);
                    }
                    continue;
                }
                let fast = self.fast_path.as_ref().filter(|_| port == Port::Rtp);
                if let Some(fp) = fast {
                    fp.catch_up(&mut st, side, now_us);
                }
                for k in 0..n {
                    let verdict = match self.recv.source(k) {
                        Some(src) if !self.recv.truncated(k) => {
                            st.on_packet(side, port, self.recv.packet_mut(k), src, now, now_us)
                        }
                        _ => {
                            st.stats[rx].on_drop(DropReason::Malformed, 1);
                            Verdict::Drop(DropReason::Malformed)
                        }
                    };
                    self.keep[k] = match verdict {
                        Verdict::Forward => {
                            forward += 1;
                            1
                        }
                        Verdict::Drop(r) => {
                            drops[r as usize] += 1;
                            0
                        }
                    };
                }
                if let (Some(fp), true) = (fast, forward > 0) {
                    fp.sync(&mut st, now_us);
                }
                latched = st.latched(side, port);
                let own = st.route(side, port, port);
                let rtcp = st.route(side, port, Port::Rtcp);
                let mut counts = [forward, 0];
                if port == Port::Rtp && rtcp != own && forward > 0 {
                    for k in 0..n {
                        if self.keep[k] == 1 && rtp::classify(self.recv.packet(k)) == Kind::Rtcp {
                            self.keep[k] = 2;
                            counts[0] -= 1;
                            counts[1] += 1;
                        }
                    }
                }
                let routes = [(own, counts[0]), (rtcp, counts[1])];
                for ((_, dest), count) in routes {
                    if dest.is_none() && count > 0 {
                        st.stats[rx].on_drop(DropReason::NoDestination, count);
                        drops[DropReason::NoDestination as usize] += count;
                    }
                }
                routes
            };
            for (group, ((out_port, dest), count)) in routes.into_iter().enumerate() {
                let Some(dest) = dest.filter(|_| count > 0) else {
                    continue;
                };
                // The other side's socket for that port; an RTCP socket
                // not attached yet falls back to the side's RTP socket.
                let rtp_out = (side.index() ^ 1) * 2;
                let out = rtp_out + usize::from(out_port == Port::Rtcp);
                let addr = SockAddr::from(dest);
                let (via, name) = match (&sess.conns[out], &sess.sockets[out]) {
                    (Some(c), _) if c.peer == Some(dest) => (&c.sock, None),
                    (_, Some(s)) => (s, Some(&addr)),
                    (_, None) => match &sess.sockets[rtp_out] {
                        Some(s) => (s, Some(&addr)),
                        None => continue,
                    },
                };
                let (recv, keep) = (&self.recv, &self.keep);
                let wanted = group as u8 + 1;
                let res = self.send.send(
                    via.as_fd(),
                    (0..n)
                        .filter(|&k| keep[k] == wanted)
                        .map(|k| (recv.packet(k), name)),
                );
                let c = &self.counters;
                c.add(&c.packets_relayed, res.sent as u64);
                c.add(&c.bytes_relayed, res.bytes as u64);
                if res.refused > 0 {
                    lock(&sess.state).stats[rx ^ 1].on_refused(res.refused as u64, now);
                }
                if res.failed > 0 {
                    drops[DropReason::SendError as usize] += res.failed as u64;
                    lock(&sess.state).stats[rx].on_drop(DropReason::SendError, res.failed as u64);
                    if let Some(e) = res.last_error {
                        tracing::debug!(session = %sess.id, "send from {} to {dest}: {e}", sess.local(out));
                    }
                }
            }
            for (c, n) in self.counters.dropped.iter().zip(drops) {
                self.counters.add(c, n);
            }
            if n < self.recv.capacity() {
                return Drained::Done(latched); // the queue was empty when recvmmsg stopped
            }
        }
        Drained::Busy(latched)
    }

    /// Makes port `p`'s connected socket match its latched peer: opens one
    /// when the port has latched, replaces it when the latch moved.
    fn align_conn(&mut self, slot: usize, p: usize, latched: Option<SocketAddr>) {
        let Some(Some(sess)) = self.slots.get_mut(slot) else {
            return;
        };
        let current = sess.conns[p].as_ref().and_then(|c| c.peer.get());
        if current == latched || latched.is_none() || sess.no_conn(p) == latched {
            // Unlatched (by the control side) leaves the old socket in
            // place: it is not used for sending to anyone else, and what it
            // receives is judged like any other packet.
            return;
        }
        let registry = self.poll.registry();
        if let Some(mut old) = sess.conns[p].take() {
            let _ = registry.deregister(&mut old.sock);
        }
        let peer = latched.expect("checked above");
        match connected_socket(&self.config, sess.local(p), peer) {
            Ok(s) => {
                let mut sock = UdpSocket::from_std(s);
                let pair = sess.pairs[p / 2];
                let token = pair_token(pair, 2 + p % 2);
                if let Err(e) = registry.register(&mut sock, token, Interest::READABLE) {
                    tracing::debug!(session = %sess.id, "cannot register connected socket: {e}");
                    sess.set_no_conn(p, peer);
                    return;
                }
                sess.conns[p] = Some(Conn {
                    sock,
                    peer: peer.into(),
                });
                // Packets that reached the unconnected socket while the
                // connected one was being set up.
                self.pending.push(pair_token(pair, p % 2).0);
            }
            Err(e) => {
                tracing::debug!(session = %sess.id, local = %sess.local(p), %peer, "no connected socket: {e}");
                sess.set_no_conn(p, peer);
            }
        }
    }
}

enum Drained {
    /// The socket is empty; the port's latched peer.
    Done(Option<SocketAddr>),
    /// The socket had its share and still has data.
    Busy(Option<SocketAddr>),
    /// No such socket (session removed).
    Gone,
}
