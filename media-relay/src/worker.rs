//! Forwarding threads.
//!
//! Each worker owns the sockets of its sessions and runs one `mio` (epoll,
//! edge-triggered) loop. A readable socket is drained with `recvmmsg`
//! batches; every batch is judged under one lock of the session state
//! (latching, stats, rewrite in place) and sent on with one `sendmmsg` from
//! the peer socket. A socket that still has data after a few full batches is
//! put at the back of the round, so one busy stream cannot starve the rest.
//! The control side talks to a worker through a channel plus a `mio::Waker`.
//!
//! Each of a session's four ports has an unconnected socket, which receives
//! everything, and, once the port has latched (and `connect_latched` is on),
//! a second socket on the same port `connect`ed to the latched peer. The
//! kernel delivers the peer's packets to the connected socket and caches the
//! route for what is sent through it. The connected socket changes nothing
//! in the logic: its packets go through the same checks with their real
//! source address, and it is used for sending only while its peer is the
//! destination; it is replaced or closed when the latch moves.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token, Waker};
use socket2::SockAddr;
use tokio::sync::oneshot;

use crate::config::RelayConfig;
use crate::error::{Error, Result};
use crate::pool::PortPool;
use crate::relay::connected_socket;
use crate::session::{Port, SessionId, SessionState, Side, Verdict};
use crate::stats::DropReason;
use crate::sys::{pin_current_thread, RecvBatch, SendBatch};

const WAKER: Token = Token(usize::MAX);
/// Full batches read from one socket before it yields to the others.
const MAX_ROUNDS: usize = 4;
/// Tokens per session: 4 unconnected sockets, then 4 connected ones.
const TOKENS: usize = 8;

pub(crate) type SharedState = Arc<Mutex<SessionState>>;

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
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
pub(crate) struct Conn {
    sock: UdpSocket,
    peer: SocketAddr,
}

/// A session as handed to its worker.
pub(crate) struct WorkerSession {
    pub id: SessionId,
    pub state: SharedState,
    /// Unconnected sockets of the four ports.
    pub sockets: [UdpSocket; 4],
    /// Their local addresses.
    pub local: [SocketAddr; 4],
    /// Connected sockets, per port.
    pub conns: [Option<Conn>; 4],
    /// Peer a connected socket could not be made for, per port (not
    /// retried for that peer).
    pub no_conn: [Option<SocketAddr>; 4],
    /// RTP ports of side A and side B, returned to the pool on removal.
    pub ports: [u16; 2],
}

pub(crate) enum Command {
    Add(Box<WorkerSession>),
    Remove {
        id: SessionId,
        done: oneshot::Sender<()>,
    },
    Shutdown,
}

/// Counters of one worker (one writer; padded against false sharing).
#[repr(align(128))]
#[derive(Debug, Default)]
pub(crate) struct WorkerCounters {
    pub packets_relayed: AtomicU64,
    pub bytes_relayed: AtomicU64,
    pub dropped: [AtomicU64; 4],
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
    pub counters: Arc<WorkerCounters>,
    thread: Option<JoinHandle<()>>,
}

impl WorkerHandle {
    /// Queues a command; gives it back if the worker is gone.
    pub(crate) fn send(&self, cmd: Command) -> Result<(), Command> {
        self.tx.send(cmd).map_err(|e| e.0)?;
        // A failed wake means the poller is gone; the next send will fail.
        let _ = self.waker.wake();
        Ok(())
    }
}

impl Drop for WorkerHandle {
    fn drop(&mut self) {
        let _ = self.send(Command::Shutdown);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

pub(crate) fn spawn(
    index: usize,
    config: &RelayConfig,
    pool: Arc<Mutex<PortPool>>,
) -> Result<WorkerHandle> {
    let start = |source: io::Error| Error::WorkerStart {
        worker: index,
        source,
    };
    let poll = Poll::new().map_err(start)?;
    let waker = Arc::new(Waker::new(poll.registry(), WAKER).map_err(start)?);
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
        recv: RecvBatch::new(config.batch_size),
        send: SendBatch::new(),
        keep: vec![false; config.batch_size],
        pending: Vec::new(),
        counters: counters.clone(),
        pool,
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
        counters,
        thread: Some(thread),
    })
}

struct Worker {
    index: usize,
    config: RelayConfig,
    poll: Poll,
    rx: mpsc::Receiver<Command>,
    slots: Vec<Option<WorkerSession>>,
    free_slots: Vec<usize>,
    by_id: HashMap<SessionId, usize>,
    recv: RecvBatch,
    send: SendBatch,
    keep: Vec<bool>,
    pending: Vec<usize>,
    counters: Arc<WorkerCounters>,
    pool: Arc<Mutex<PortPool>>,
}

fn unix_us() -> u64 {
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
        loop {
            let timeout =
                if !self.pending.is_empty() || (!spin.is_zero() && last_busy.elapsed() < spin) {
                    Some(Duration::ZERO)
                } else {
                    None
                };
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                tracing::error!(worker = self.index, "media relay poll failed: {e}");
                return;
            }
            if !events.is_empty() && !spin.is_zero() {
                last_busy = Instant::now();
            }
            // Sockets left over from the last round go after this round's
            // fresh events.
            std::mem::swap(&mut round, &mut self.pending);
            let mut commands = false;
            for ev in events.iter() {
                match ev.token() {
                    WAKER => commands = true,
                    Token(t) => self.drain(t),
                }
            }
            for t in round.drain(..) {
                self.drain(t);
            }
            if commands && !self.commands() {
                return;
            }
        }
    }

    /// Handles queued commands; false means stop.
    fn commands(&mut self) -> bool {
        loop {
            match self.rx.try_recv() {
                Ok(Command::Add(s)) => self.add(*s),
                Ok(Command::Remove { id, done }) => {
                    self.remove(id);
                    let _ = done.send(());
                }
                Ok(Command::Shutdown) | Err(mpsc::TryRecvError::Disconnected) => return false,
                Err(mpsc::TryRecvError::Empty) => return true,
            }
        }
    }

    fn add(&mut self, mut s: WorkerSession) {
        let slot = self.free_slots.pop().unwrap_or_else(|| {
            self.slots.push(None);
            self.slots.len() - 1
        });
        for (i, sock) in s.sockets.iter_mut().enumerate() {
            let token = Token(slot * TOKENS + i);
            if let Err(e) = self
                .poll
                .registry()
                .register(sock, token, Interest::READABLE)
            {
                tracing::error!(worker = self.index, session = %s.id, "cannot register socket: {e}");
            }
            // Drain whatever arrived before registration.
            self.pending.push(token.0);
        }
        self.by_id.insert(s.id, slot);
        self.slots[slot] = Some(s);
    }

    fn remove(&mut self, id: SessionId) {
        let Some(slot) = self.by_id.remove(&id) else {
            return;
        };
        if let Some(mut s) = self.slots[slot].take() {
            let registry = self.poll.registry();
            for sock in s.sockets.iter_mut() {
                let _ = registry.deregister(sock);
            }
            for c in s.conns.iter_mut().flatten() {
                let _ = registry.deregister(&mut c.sock);
            }
            let ports = s.ports;
            drop(s); // closes the sockets before their ports are reused
            let mut pool = lock(&self.pool);
            for p in ports {
                pool.release(p);
            }
        }
        self.free_slots.push(slot);
    }

    /// Reads socket `token` until it is empty (or has had its share), then
    /// brings the port's connected socket in line with its latch.
    fn drain(&mut self, token: usize) {
        let (slot, i) = (token / TOKENS, token % TOKENS);
        let p = i % 4;
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
            &sess.sockets[p]
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
                    // A connected socket reports ICMP errors of its peer.
                    io::ErrorKind::Interrupted | io::ErrorKind::ConnectionRefused => continue,
                    _ => {
                        tracing::debug!(session = %sess.id, "recv on port {}: {e}", sess.local[p]);
                        return Drained::Done(latched);
                    }
                },
            };
            let now = Instant::now();
            let now_us = unix_us();
            let mut drops = [0u64; 4];
            let mut forward = 0u64;
            let dest = {
                let mut st = lock(&sess.state);
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
                            true
                        }
                        Verdict::Drop(r) => {
                            drops[r as usize] += 1;
                            false
                        }
                    };
                }
                latched = st.latched(side, port);
                let dest = st.destination(side, port);
                if dest.is_none() && forward > 0 {
                    st.stats[rx].on_drop(DropReason::NoDestination, forward);
                    drops[DropReason::NoDestination as usize] += forward;
                }
                dest
            };
            if let (Some(dest), true) = (dest, forward > 0) {
                let out = p ^ 2;
                let addr = SockAddr::from(dest);
                let (via, name) = match &sess.conns[out] {
                    Some(c) if c.peer == dest => (&c.sock, None),
                    _ => (&sess.sockets[out], Some(&addr)),
                };
                let (recv, keep) = (&self.recv, &self.keep);
                let res = self.send.send(
                    via.as_fd(),
                    (0..n).filter(|&k| keep[k]).map(|k| (recv.packet(k), name)),
                );
                let c = &self.counters;
                c.add(&c.packets_relayed, res.sent as u64);
                c.add(&c.bytes_relayed, res.bytes as u64);
                if res.failed > 0 {
                    drops[DropReason::SendError as usize] += res.failed as u64;
                    lock(&sess.state).stats[rx].on_drop(DropReason::SendError, res.failed as u64);
                    if let Some(e) = res.last_error {
                        tracing::debug!(session = %sess.id, "send from {} to {dest}: {e}", sess.local[out]);
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
        let current = sess.conns[p].as_ref().map(|c| c.peer);
        if current == latched || latched.is_none() || sess.no_conn[p] == latched {
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
        match connected_socket(&self.config, sess.local[p], peer) {
            Ok(s) => {
                let mut sock = UdpSocket::from_std(s);
                let token = Token(slot * TOKENS + 4 + p);
                if let Err(e) = registry.register(&mut sock, token, Interest::READABLE) {
                    tracing::debug!(session = %sess.id, "cannot register connected socket: {e}");
                    sess.no_conn[p] = Some(peer);
                    return;
                }
                sess.conns[p] = Some(Conn { sock, peer });
                // Packets that reached the unconnected socket while the
                // connected one was being set up.
                self.pending.push(slot * TOKENS + p);
            }
            Err(e) => {
                tracing::debug!(session = %sess.id, local = %sess.local[p], %peer, "no connected socket: {e}");
                sess.no_conn[p] = Some(peer);
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
