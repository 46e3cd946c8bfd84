//! The RTP kernel fast path: latched RTP streams forwarded by a BPF
//! program at tc ingress (`bpf/fastpath.bpf.c`) instead of the workers.
//!
//! User space keeps everything but the forwarding of a latched stream's RTP:
//! set-up, latching, RTCP, the first packets, upstream switches. After each
//! change of a session (a worker's batch, a control call) [`FastPath::sync`]
//! compares the entries the session *should* have — one per direction whose
//! receiving side has latched and whose other side has a destination, and
//! whose continuity mapping is known — with those installed, and fixes the
//! difference (event in, map writes out). An entry that goes away hands its
//! counters and the newest packet it sent back to the session: the packet
//! counts stay whole and the continuity state (`continuity.rs`) continues
//! from what the kernel last sent, so a media-server move computes its
//! mapping from the real stream.
//!
//! The program is attached through a TCX link on kernels that have it
//! (>= 6.6): the link belongs to this process's file descriptor, so it goes
//! away when the process does, however it ends, and the program of another
//! relay on the same interface runs beside it (a miss passes to the next
//! program). Older kernels get a netlink clsact filter, removed on drop.

use std::cell::Cell;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::AsFd;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use aya::maps::{HashMap as BpfHashMap, IterableMap, MapData, PerCpuHashMap, PerCpuValues};
use aya::programs::{tc, SchedClassifier, TcAttachType};
use aya::{Ebpf, EbpfLoader};
use serde::{Deserialize, Serialize};

use crate::continuity::{ContinuityState, SentPoint};
use crate::error::{Error, Result};
use crate::session::{SessionId, SessionState, SessionStats, Side};

mod sys;

use sys::{FlowKey, Route, StreamCounters};

/// The BPF object built by `build.rs` (empty when clang was missing).
static OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/fastpath.bpf.o"));
const PROGRAM: &str = "tandem_rtp_fastpath";

/// Whether the relay forwards latched RTP in the kernel
/// (`media.fast_path`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FastPathMode {
    /// When the BPF program loads and attaches; otherwise the user-space
    /// relay, with one log line saying why.
    Auto,
    /// Always: the relay does not start without it.
    On,
    /// Never: the user-space relay forwards everything.
    #[default]
    Off,
}

/// What the kernel forwarded for one stream (receiving side) of a session.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct KernelStream {
    pub packets: u64,
    pub bytes: u64,
    /// The newest packet sent: SSRC, sequence, timestamp (as sent) and its
    /// `bpf_ktime_get_ns` time.
    pub last: Option<(u32, u16, u32, u64)>,
}

impl KernelStream {
    fn from_cpus(values: &[StreamCounters]) -> KernelStream {
        let mut k = KernelStream::default();
        let mut newest = 0;
        for v in values {
            k.packets += v.packets;
            k.bytes += v.bytes;
            if v.packets > 0 && v.last_ns >= newest {
                newest = v.last_ns;
                k.last = Some((v.last_ssrc, v.last_seq, v.last_ts, v.last_ns));
            }
        }
        k
    }

    fn add(&mut self, o: &KernelStream) {
        self.packets += o.packets;
        self.bytes += o.bytes;
        if o.last.map(|l| l.3) > self.last.map(|l| l.3) {
            self.last = o.last;
        }
    }
}

/// The entry one direction should have: key (packets received on
/// `rx`'s RTP socket from its latched peer) and route (out of the other
/// side's RTP socket to its destination, with the continuity mapping of
/// the stream sent there). None: user space forwards that direction.
pub(crate) fn desired(st: &SessionState, rx: Side) -> Option<(FlowKey, Route)> {
    if st.removed {
        return None;
    }
    let tx = rx.other();
    let (from, to) = (&st.sides[rx.index()], &st.sides[tx.index()]);
    let continuity = &st.continuity[tx.index()];
    if continuity.remap_pending {
        // The next packet starts a new mapping: user space computes it.
        return None;
    }
    let local = v4(from.local.rtp_addr())?;
    let peer = v4(from.latched_rtp.get()?)?;
    let out_src = v4(to.local.rtp_addr())?;
    let out_dst = v4(to.rtp_destination()?)?;
    let key = FlowKey {
        local_ip: sys::ip_be(*local.ip()),
        peer_ip: sys::ip_be(*peer.ip()),
        local_port: sys::port_be(local.port()),
        peer_port: sys::port_be(peer.port()),
    };
    let mut route = Route {
        out_src_ip: sys::ip_be(*out_src.ip()),
        out_dst_ip: sys::ip_be(*out_dst.ip()),
        out_src_port: sys::port_be(out_src.port()),
        out_dst_port: sys::port_be(out_dst.port()),
        ..Route::default()
    };
    if let Some(rw) = continuity.rewrite {
        route.flags = sys::ROUTE_REWRITE;
        route.in_ssrc = rw.in_ssrc;
        route.out_ssrc = rw.out_ssrc;
        route.seq_delta = rw.seq_delta;
        route.ts_delta = rw.ts_delta;
    }
    Some((key, route))
}

fn v4(a: SocketAddr) -> Option<std::net::SocketAddrV4> {
    match a.ip().to_canonical() {
        IpAddr::V4(ip) if !ip.is_unspecified() => Some(std::net::SocketAddrV4::new(ip, a.port())),
        _ => None,
    }
}

/// Moves the continuity point of a direction to the newest packet the
/// kernel sent, if that is newer than what user space sent.
pub(crate) fn fold_last_sent(
    c: &mut ContinuityState,
    k: &KernelStream,
    now_mono_ns: u64,
    now_unix_us: u64,
) {
    let Some((ssrc, seq, timestamp, at_ns)) = k.last else {
        return;
    };
    let age_us = now_mono_ns.saturating_sub(at_ns) / 1000;
    let at_unix_us = now_unix_us.saturating_sub(age_us);
    if c.last_sent.is_some_and(|l| l.at_unix_us > at_unix_us) {
        return;
    }
    c.last_sent = Some(SentPoint {
        ssrc,
        seq,
        timestamp,
        at_unix_us,
    });
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Installed {
    key: FlowKey,
    route: Route,
}

/// A session's entries, by receiving side, and what entries now gone
/// forwarded.
#[derive(Debug, Default)]
struct Entries {
    dir: [Option<Installed>; 2],
    retired: [KernelStream; 2],
}

struct Inner {
    routes: BpfHashMap<MapData, FlowKey, Route>,
    counters: PerCpuHashMap<MapData, FlowKey, StreamCounters>,
    sessions: HashMap<SessionId, Entries>,
    cpus: usize,
    /// What the entries of removed sessions forwarded: packets, bytes.
    removed: (u64, u64),
    /// Map writes refused so far (the map full): logged once.
    refused: u64,
    /// Egress interface by destination (0: this host), found at `.1`
    /// (monotonic ns): a route write asks the kernel's routing (a socket
    /// and an interface list) once per destination and TTL, not 2–3 times
    /// per call under the session lock and this mutex.
    egress: HashMap<Ipv4Addr, (u32, u64)>,
    /// The latest batched read of the live entries' counters.
    sweep: Sweep,
    /// Counter map lookups made (system calls: one per single read, one
    /// per chunk of a sweep), for the tests to see what a read costs.
    lookups: Cell<u64>,
}

/// Every live entry's counters as one batched read (`BPF_MAP_LOOKUP_BATCH`,
/// a few thousand entries per system call) found them. The silence checks
/// ask [`FastPath::idle_time`] for both sides of every answered call every
/// 50 ms: one read per side was two `bpf` calls per call per check, this is
/// one per few thousand streams. The price: a packet forwarded since the
/// sweep is seen up to [`SWEEP_MAX_AGE_NS`] late, next to silence
/// thresholds of hundreds of milliseconds.
struct Sweep {
    /// None: the kernel refused a batch lookup (before 5.6), entries are
    /// read one at a time.
    buffers: Option<sys::CounterSweep>,
    /// When it was taken (monotonic ns).
    at_ns: u64,
    /// By key; at most the map's size (the kernel's bound).
    streams: HashMap<FlowKey, KernelStream>,
}

/// How old a sweep may be and still answer: less than the 50 ms between
/// silence checks, so each check takes one sweep, and the checks of all
/// calls in one tick share it.
const SWEEP_MAX_AGE_NS: u64 = 20_000_000;
/// Bytes of per-CPU values one sweep call may fill: chunks of a few
/// thousand entries on a small host, fewer on one with many CPUs.
const SWEEP_CHUNK_BYTES: usize = 256 * 1024;

/// How long a cached egress interface is trusted: a route or address
/// change reaches new entries within this, and a re-latched peer's address
/// is looked up afresh at once ([`FastPath::sync`]). Only the interface is
/// cached, never a MAC: the program's `bpf_redirect_neigh` resolves the
/// next hop in the kernel's neighbour table for every packet, so a peer
/// whose MAC changes under the same IP is reached as soon as the kernel's
/// ARP knows (its gratuitous ARP, or the entry's re-probe once stale) —
/// as for traffic the host sends itself, on a real interface at once, on
/// `lo` trivially (no neighbours: a destination on this host goes up the
/// stack). An entry already installed keeps its interface until its route
/// is written again (a new destination, mapping or latch).
const EGRESS_TTL_NS: u64 = 10_000_000_000;
/// Destinations come from SDP (a stranger's data): the cache is emptied
/// when it reaches this many.
const EGRESS_CACHE_MAX: usize = 4096;

/// Where a hit leaves, given the egress of its destination and of its
/// source (0: this host), or None: user space forwards the stream. A
/// destination on this host is reached by passing the packet up the stack,
/// which is right only for a packet that came in on loopback (its source
/// on this host too): one from a real interface now bearing this host's
/// address as source, or a 127.x destination, is a martian the stack
/// drops.
pub(crate) fn out_interface(dst_egress: u32, src_egress: u32) -> Option<u32> {
    match (dst_egress, src_egress) {
        (0, 0) => Some(0),
        (0, _) => None,
        (out, _) => Some(out),
    }
}

/// The loaded and attached program, its maps and the installed entries.
pub(crate) struct FastPath {
    inner: Mutex<Inner>,
    interfaces: Vec<String>,
    /// Owns the program and its links: dropping it detaches them. Last
    /// field: dropped after the maps.
    _ebpf: Ebpf,
}

impl std::fmt::Debug for FastPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FastPath")
            .field("interfaces", &self.interfaces)
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl FastPath {
    /// Loads the program, sizes its maps for `max_entries` streams and
    /// attaches it at ingress of the interface(s) `local_ip` arrives on.
    /// The error says why not, for the log or the refusal to start.
    pub(crate) fn start(local_ip: IpAddr, max_entries: u32) -> Result<FastPath> {
        if OBJECT.is_empty() {
            return Err(load_error(
                "the BPF program was not built (clang was missing when \
                 media-relay was compiled)",
            ));
        }
        let IpAddr::V4(ip) = local_ip.to_canonical() else {
            return Err(load_error(format!(
                "media.ip {local_ip} is not IPv4 (the program handles IPv4)"
            )));
        };
        let interfaces = attach_interfaces(ip)?;
        if let Err(e) = sys::raise_memlock() {
            // Only kernels < 5.11 need it; the load below says if it fails.
            tracing::debug!("raising RLIMIT_MEMLOCK for the BPF maps: {e}");
        }
        let max_entries = max_entries.max(64);
        let mut ebpf = EbpfLoader::new()
            .map_max_entries("routes", max_entries)
            .map_max_entries("counters", max_entries)
            .load(OBJECT)
            .map_err(|e| load_error(format!("loading the BPF program: {}", chain(&e))))?;
        let prog: &mut SchedClassifier = ebpf
            .program_mut(PROGRAM)
            .ok_or_else(|| load_error(format!("the BPF object has no program {PROGRAM}")))?
            .try_into()
            .map_err(|e| load_error(format!("BPF program type: {}", chain(&e))))?;
        prog.load()
            .map_err(|e| load_error(format!("loading the BPF program: {}", chain(&e))))?;
        let tcx = aya::util::KernelVersion::current()
            .is_ok_and(|v| v >= aya::util::KernelVersion::new(6, 6, 0));
        for name in &interfaces {
            if !tcx {
                // Netlink filters need the clsact qdisc (one may be there
                // already; it is shared and left in place).
                let _ = tc::qdisc_add_clsact(name);
                // A netlink filter outlives its process: one left by a
                // relay that crashed would still forward to its old
                // entries' view of the world (its maps live on with it).
                // A second relay on the same host and kernel loses its
                // filter too; kernels >= 6.6 (TCX links) have neither
                // problem.
                if tc::qdisc_detach_program(name, TcAttachType::Ingress, PROGRAM).is_ok() {
                    tracing::warn!(interface = %name, "removed a stale RTP fast path filter");
                }
            }
            prog.attach(name, TcAttachType::Ingress)
                .map_err(|e| Error::FastPathAttach {
                    interface: name.clone(),
                    reason: chain(&e),
                })?;
        }
        let routes = ebpf
            .take_map("routes")
            .ok_or_else(|| load_error("the BPF object has no map `routes`"))?;
        let counters = ebpf
            .take_map("counters")
            .ok_or_else(|| load_error("the BPF object has no map `counters`"))?;
        let routes = BpfHashMap::try_from(routes)
            .map_err(|e| load_error(format!("map routes: {}", chain(&e))))?;
        let counters = PerCpuHashMap::try_from(counters)
            .map_err(|e| load_error(format!("map counters: {}", chain(&e))))?;
        let cpus = aya::util::nr_cpus().map_err(|(what, e)| load_error(format!("{what}: {e}")))?;
        tracing::info!(interfaces = ?interfaces, max_entries, "RTP kernel fast path attached");
        Ok(FastPath {
            inner: Mutex::new(Inner {
                routes,
                counters,
                sessions: HashMap::new(),
                cpus,
                removed: (0, 0),
                refused: 0,
                egress: HashMap::new(),
                sweep: Sweep {
                    buffers: Some(sys::CounterSweep::new(cpus, sweep_chunk(cpus))),
                    at_ns: 0,
                    streams: HashMap::new(),
                },
                lookups: Cell::new(0),
            }),
            interfaces,
            _ebpf: ebpf,
        })
    }

    /// Brings the session's kernel entries in line with its state (see the
    /// module comment). Called under the session's lock after anything
    /// that may change latching, destinations or the continuity mapping.
    pub(crate) fn sync(&self, st: &mut SessionState, now_unix_us: u64) {
        let mut inner = lock(&self.inner);
        let inner = &mut *inner;
        // A peer that latched anew (a new address: a restarted or moved
        // host, a NAT rebinding) has its egress asked of the kernel's
        // routing again, for both directions' routes, not taken from the
        // cache (see `EGRESS_TTL_NS`).
        for rx in [Side::A, Side::B] {
            let have = inner.sessions.get(&st.id).and_then(|e| e.dir[rx.index()]);
            if let (Some(h), Some((key, _))) = (have, desired(st, rx)) {
                if (h.key.peer_ip, h.key.peer_port) != (key.peer_ip, key.peer_port) {
                    inner
                        .egress
                        .remove(&Ipv4Addr::from(u32::from_be(key.peer_ip)));
                }
            }
        }
        for rx in [Side::A, Side::B] {
            let want = desired(st, rx).map(|(key, route)| Installed { key, route });
            // No entry is made for a session that wants none: a sync
            // racing its removal must not leave one behind.
            let have = inner.sessions.get(&st.id).and_then(|e| e.dir[rx.index()]);
            if have == want {
                continue;
            }
            if let (Some(h), Some(w)) = (have, want) {
                // Same stream, new destination or mapping: the counters
                // stay.
                if h.key == w.key && matches!(inner.write_route(&w), Ok(true)) {
                    inner.sessions.entry(st.id).or_default().dir[rx.index()] = want;
                    continue;
                }
            }
            if let Some(h) = have {
                let k = inner.retire(&h.key);
                let entries = inner.sessions.entry(st.id).or_default();
                entries.retired[rx.index()].add(&k);
                entries.dir[rx.index()] = None;
                fold_last_sent(
                    &mut st.continuity[rx.other().index()],
                    &k,
                    sys::monotonic_ns(),
                    now_unix_us,
                );
            }
            if let Some(w) = want {
                if inner.install(&w) {
                    inner.sessions.entry(st.id).or_default().dir[rx.index()] = Some(w);
                }
            }
        }
    }

    /// The continuity state of the direction received on `rx` catches up
    /// with what the kernel sent: before user space handles RTP of that
    /// direction (the kernel passed it up: a new SSRC, say), and before a
    /// snapshot is taken (for the standby).
    pub(crate) fn catch_up(&self, st: &mut SessionState, rx: Side, now_unix_us: u64) {
        let inner = lock(&self.inner);
        let Some(Some(h)) = inner.sessions.get(&st.id).map(|e| e.dir[rx.index()]) else {
            return;
        };
        let k = inner.read(&h.key);
        drop(inner);
        if let Some((sent_ssrc, ..)) = k.last {
            // The SSRC the kernel received: `relatch_on_ssrc_change`
            // compares a new source's with it.
            st.sides[rx.index()].latched_ssrc = Some(if h.route.flags & sys::ROUTE_REWRITE != 0 {
                h.route.in_ssrc
            } else {
                sent_ssrc
            });
        }
        fold_last_sent(
            &mut st.continuity[rx.other().index()],
            &k,
            sys::monotonic_ns(),
            now_unix_us,
        );
    }

    /// Removes the session's entries; what they forwarded is added to
    /// `stats` (the session's final stats).
    pub(crate) fn remove(&self, st: &mut SessionState, stats: &mut SessionStats, now_unix_us: u64) {
        self.sync(st, now_unix_us); // `removed` is set: retires both
        let entries = {
            let mut inner = lock(&self.inner);
            let e = inner.sessions.remove(&st.id);
            for k in e.iter().flat_map(|e| &e.retired) {
                inner.removed.0 += k.packets;
                inner.removed.1 += k.bytes;
            }
            e
        };
        if let Some(e) = entries {
            merge(stats, &e.retired[0], &e.retired[1], sys::monotonic_ns());
        }
    }

    /// Adds what the kernel forwarded for the session to `stats`.
    pub(crate) fn add_stats(&self, id: SessionId, stats: &mut SessionStats) {
        let [a, b] = self.kernel_streams(id);
        merge(stats, &a, &b, sys::monotonic_ns());
    }

    /// Time since the kernel last forwarded a packet received on `side`,
    /// as of a sweep at most [`SWEEP_MAX_AGE_NS`] old (the silence checks
    /// ask this for both sides of every answered call every 50 ms: see
    /// [`Sweep`]).
    pub(crate) fn idle_time(&self, id: SessionId, side: Side) -> Option<Duration> {
        let k = {
            let mut inner = lock(&self.inner);
            let e = inner.sessions.get(&id)?;
            let mut k = e.retired[side.index()];
            if let Some(h) = e.dir[side.index()] {
                inner.refresh_sweep();
                k.add(&inner.swept(&h.key));
            }
            k
        };
        let now = sys::monotonic_ns();
        k.last
            .map(|l| Duration::from_nanos(now.saturating_sub(l.3)))
    }

    /// Packets and bytes forwarded so far, by all sessions, as of a sweep
    /// at most [`SWEEP_MAX_AGE_NS`] old (for a metrics scrape).
    pub(crate) fn totals(&self) -> (u64, u64) {
        let mut inner = lock(&self.inner);
        inner.refresh_sweep();
        let (mut packets, mut bytes) = inner.removed;
        for e in inner.sessions.values() {
            for k in &e.retired {
                packets += k.packets;
                bytes += k.bytes;
            }
            for h in e.dir.iter().flatten() {
                let k = inner.swept(&h.key);
                packets += k.packets;
                bytes += k.bytes;
            }
        }
        (packets, bytes)
    }

    /// Retired plus live counters of both receiving sides.
    fn kernel_streams(&self, id: SessionId) -> [KernelStream; 2] {
        let inner = lock(&self.inner);
        let Some(e) = inner.sessions.get(&id) else {
            return Default::default();
        };
        let mut out = e.retired;
        for (o, d) in out.iter_mut().zip(e.dir) {
            if let Some(h) = d {
                o.add(&inner.read(&h.key));
            }
        }
        out
    }
}

impl Inner {
    /// Writes a new entry: zeroed counters first, so the program never
    /// forwards a packet it cannot count.
    fn install(&mut self, w: &Installed) -> bool {
        // A sweep's figures of an earlier entry of this key are not this
        // one's.
        self.sweep.streams.remove(&w.key);
        let zero = PerCpuValues::try_from(vec![StreamCounters::default(); self.cpus]);
        let ok = zero
            .map_err(|e| map_error("counters", "insert", &e))
            .and_then(|z| {
                self.counters
                    .insert(w.key, z, 0)
                    .map_err(|e| map_error("counters", "insert", &e))
            })
            .and_then(|()| self.write_route(w));
        match ok {
            Ok(true) => true,
            Ok(false) => {
                // By design (see `out_interface`), not a failure.
                let _ = self.counters.remove(&w.key);
                false
            }
            Err(e) => {
                let _ = self.counters.remove(&w.key);
                self.refused += 1;
                if self.refused == 1 {
                    tracing::warn!(
                        retry_helps = e.retry_helps(),
                        "RTP fast path: cannot install a stream ({e}); it stays in user space"
                    );
                }
                false
            }
        }
    }

    /// Writes the route of an entry, with the interface its destination is
    /// reached by (the host's, not the session's: not part of
    /// [`desired`]). Ok(false): the stream stays in user space
    /// ([`out_interface`]); an entry of its key is removed.
    fn write_route(&mut self, w: &Installed) -> Result<bool> {
        let dst = Ipv4Addr::from(u32::from_be(w.route.out_dst_ip));
        let src = Ipv4Addr::from(u32::from_be(w.key.peer_ip));
        let Some(out_ifindex) = out_interface(self.egress(dst)?, self.egress(src)?) else {
            let _ = self.routes.remove(&w.key);
            return Ok(false);
        };
        let route = Route {
            out_ifindex,
            ..w.route
        };
        self.routes
            .insert(w.key, route, 0)
            .map(|()| true)
            .map_err(|e| map_error("routes", "insert", &e))
    }

    /// [`sys::egress_ifindex`], cached (see `egress`).
    fn egress(&mut self, dst: Ipv4Addr) -> Result<u32> {
        let now = sys::monotonic_ns();
        if let Some(&(out, at)) = self.egress.get(&dst) {
            if now.saturating_sub(at) < EGRESS_TTL_NS {
                return Ok(out);
            }
        }
        let out =
            sys::egress_ifindex(dst).map_err(|source| Error::FastPathRoute { dst, source })?;
        if self.egress.len() >= EGRESS_CACHE_MAX {
            self.egress.clear();
        }
        self.egress.insert(dst, (out, now));
        Ok(out)
    }

    /// Deletes an entry (the route first: nothing is counted after the
    /// read) and returns what it forwarded.
    fn retire(&mut self, key: &FlowKey) -> KernelStream {
        self.sweep.streams.remove(key);
        let _ = self.routes.remove(key);
        let k = self.read(key);
        let _ = self.counters.remove(key);
        k
    }

    fn read(&self, key: &FlowKey) -> KernelStream {
        self.lookups.set(self.lookups.get() + 1);
        self.counters
            .get(key, 0)
            .map(|v| KernelStream::from_cpus(&v))
            .unwrap_or_default()
    }
}

impl Inner {
    /// Reads every live entry's counters in one batched sweep, unless the
    /// last sweep is recent enough (or the kernel refused batches).
    fn refresh_sweep(&mut self) {
        let now = sys::monotonic_ns();
        if now.saturating_sub(self.sweep.at_ns) < SWEEP_MAX_AGE_NS {
            return;
        }
        let Some(buffers) = self.sweep.buffers.as_mut() else {
            return;
        };
        let streams = &mut self.sweep.streams;
        streams.clear();
        let fd = self.counters.map().fd().as_fd();
        let read = buffers.read_all(fd, |key, values| {
            streams.insert(key, KernelStream::from_cpus(values));
        });
        match read {
            Ok(calls) => {
                self.lookups.set(self.lookups.get() + u64::from(calls));
                self.sweep.at_ns = now;
            }
            Err(e) => {
                streams.clear();
                self.sweep.buffers = None;
                let e = Error::FastPathMap {
                    map: "counters",
                    op: "lookup batch",
                    reason: e.to_string(),
                    retry: false,
                };
                tracing::info!("RTP fast path: {e}; counters are read one entry at a time");
            }
        }
    }

    /// What a live entry forwarded, as the last sweep found it; an entry
    /// made since (or with sweeps refused) is read on its own.
    fn swept(&self, key: &FlowKey) -> KernelStream {
        match self.sweep.streams.get(key) {
            Some(k) if self.sweep.buffers.is_some() => *k,
            _ => self.read(key),
        }
    }
}

/// Entries per sweep call: [`SWEEP_CHUNK_BYTES`] of values, at least a
/// few hundred (a hash bucket bigger than a chunk fails the sweep).
fn sweep_chunk(cpus: usize) -> usize {
    let value = std::mem::size_of::<StreamCounters>() * cpus.max(1);
    (SWEEP_CHUNK_BYTES / value).clamp(256, 4096)
}

/// Adds kernel-forwarded packets to the user-space stats of both streams.
/// Counts and bytes add up; the time since the last packet is the newer of
/// the two; loss and jitter stay those of the packets user space saw.
fn merge(stats: &mut SessionStats, a: &KernelStream, b: &KernelStream, now_ns: u64) {
    for (s, k) in [(&mut stats.side_a, a), (&mut stats.side_b, b)] {
        s.packets += k.packets;
        s.bytes += k.bytes;
        s.kernel_packets += k.packets;
        s.kernel_bytes += k.bytes;
        if let Some(l) = k.last {
            let idle = Duration::from_nanos(now_ns.saturating_sub(l.3));
            s.since_last_packet = Some(s.since_last_packet.map_or(idle, |u| u.min(idle)));
            if s.ssrc.is_none() {
                s.ssrc = Some(l.0);
            }
        }
    }
}

/// The interfaces `ip` arrives on: loopback for a loopback address, else
/// those carrying it; an address no interface carries yet (a standby's
/// floating IP) gets every interface that is up, so the takeover finds
/// the program in place.
fn attach_interfaces(ip: Ipv4Addr) -> Result<Vec<String>> {
    let all = sys::interfaces().map_err(|e| Error::FastPathAttach {
        interface: String::new(),
        reason: format!("listing interfaces: {e}"),
    })?;
    let mut names: Vec<String> = if ip.is_loopback() {
        all.iter()
            .filter(|(_, a, _)| a.is_some_and(|a| a.is_loopback()))
            .map(|(n, _, _)| n.clone())
            .collect()
    } else {
        let carrying: Vec<String> = all
            .iter()
            .filter(|(_, a, _)| *a == Some(ip))
            .map(|(n, _, _)| n.clone())
            .collect();
        if carrying.is_empty() {
            all.iter()
                .filter(|(_, a, up)| *up && a.is_some_and(|a| !a.is_loopback()))
                .map(|(n, _, _)| n.clone())
                .collect()
        } else {
            carrying
        }
    };
    names.sort();
    names.dedup();
    if names.is_empty() {
        return Err(Error::FastPathAttach {
            interface: String::new(),
            reason: format!("no interface to attach to for media.ip {ip}"),
        });
    }
    Ok(names)
}

fn load_error(reason: impl Into<String>) -> Error {
    Error::FastPathLoad {
        reason: reason.into(),
    }
}

/// A failed map operation; a retry helps when the kernel was short of
/// room (the map full: `E2BIG`; memory: `ENOMEM`), not when it refused.
fn map_error(map: &'static str, op: &'static str, e: &(dyn std::error::Error + 'static)) -> Error {
    let mut retry = false;
    let mut cur = Some(e);
    while let Some(c) = cur {
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            retry = matches!(io.raw_os_error(), Some(libc::E2BIG) | Some(libc::ENOMEM));
        }
        cur = c.source();
    }
    Error::FastPathMap {
        map,
        op,
        reason: chain(e),
        retry,
    }
}

/// An error with its sources, for one log line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests;
