//! The fast path's `unsafe` code, all of it: the map records shared with
//! the BPF program (C layout, declared `Pod` for aya), the monotonic clock
//! the program stamps packets with, the interface list and the batched
//! read of the counters map (aya 0.14 has no `BPF_MAP_LOOKUP_BATCH`).
//!
//! Safety argument, once for the module: the three records are `repr(C)`,
//! made only of integers, with explicit padding fields, so every bit
//! pattern is a valid value and their size and layout are those of the C
//! structs in `bpf/fastpath.bpf.c` (checked by the unit tests against the
//! sizes the C side has); `clock_gettime`, `getrlimit`/`setrlimit` and `getifaddrs`/`freeifaddrs`
//! get pointers to memory owned by the call, and the list `getifaddrs`
//! returns is walked only until its null end and freed once; the batch
//! lookup gets buffers owned by its [`CounterSweep`], sized for the
//! `count` it passes (keys of 12 bytes, `cpus` values of 40 bytes, a
//! multiple of 8 as the kernel lays out per-CPU values), and reads back
//! only the `count` entries the kernel says it filled.
#![allow(unsafe_code)]

use std::ffi::CStr;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, BorrowedFd};

/// `struct flow_key`: a packet as it arrives (relay socket <- latched peer).
/// Addresses and ports in network byte order, as in the packet.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub(crate) struct FlowKey {
    pub local_ip: u32,
    pub peer_ip: u32,
    pub local_port: u16,
    pub peer_port: u16,
}

/// `struct route`: where a hit leaves, and the continuity mapping.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Route {
    pub out_src_ip: u32,
    pub out_dst_ip: u32,
    pub out_src_port: u16,
    pub out_dst_port: u16,
    pub flags: u32,
    pub in_ssrc: u32,
    pub out_ssrc: u32,
    pub ts_delta: u32,
    pub seq_delta: u16,
    pub pad: u16,
    pub out_ifindex: u32,
}

/// `ROUTE_REWRITE`: apply the mapping to packets of `in_ssrc`.
pub(crate) const ROUTE_REWRITE: u32 = 1;

/// `struct stream_counters`, one per CPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct StreamCounters {
    pub packets: u64,
    pub bytes: u64,
    pub last_ns: u64,
    pub last_ssrc: u32,
    pub last_ts: u32,
    pub last_seq: u16,
    pub pad: u16,
    pub pad2: u32,
}

unsafe impl aya::Pod for FlowKey {}
unsafe impl aya::Pod for Route {}
unsafe impl aya::Pod for StreamCounters {}

/// Network-order form of an IPv4 address, as the packet carries it.
pub(crate) fn ip_be(ip: Ipv4Addr) -> u32 {
    u32::from_ne_bytes(ip.octets())
}

/// Network-order form of a port.
pub(crate) fn port_be(port: u16) -> u16 {
    port.to_be()
}

/// CLOCK_MONOTONIC in nanoseconds: the clock of `bpf_ktime_get_ns`.
pub(crate) fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: see the module comment.
    let r = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    if r != 0 {
        return 0;
    }
    (ts.tv_sec as u64).saturating_mul(1_000_000_000) + ts.tv_nsec as u64
}

/// Interfaces by name with their IPv4 addresses and whether they are up.
pub(crate) fn interfaces() -> io::Result<Vec<(String, Option<Ipv4Addr>, bool)>> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: see the module comment.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut out = Vec::new();
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: a non-null entry of the list getifaddrs returned.
        let ifa = unsafe { &*cur };
        let name = unsafe { CStr::from_ptr(ifa.ifa_name) }
            .to_string_lossy()
            .into_owned();
        let up = ifa.ifa_flags & libc::IFF_UP as u32 != 0;
        let mut ip = None;
        if !ifa.ifa_addr.is_null() {
            // SAFETY: a non-null address of the entry; its family says
            // which sockaddr it is.
            let family = unsafe { (*ifa.ifa_addr).sa_family };
            if i32::from(family) == libc::AF_INET {
                let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
                ip = Some(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)));
            }
        }
        out.push((name, ip, up));
        cur = ifa.ifa_next;
    }
    // SAFETY: the list getifaddrs returned, freed once.
    unsafe { libc::freeifaddrs(head) };
    Ok(out)
}

/// The interface a packet to `dst` leaves by (its index), or 0 when `dst`
/// is an address of this host (the packet goes up the stack). The route
/// is the kernel's: a UDP socket connected to `dst` gets the source
/// address the route chooses, whose interface is the egress.
pub(crate) fn egress_ifindex(dst: Ipv4Addr) -> io::Result<u32> {
    if dst.is_loopback() {
        return Ok(0);
    }
    let all = interfaces()?;
    if all.iter().any(|(_, a, _)| *a == Some(dst)) {
        return Ok(0);
    }
    let sock = std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
    sock.connect((dst, 9))?;
    let std::net::IpAddr::V4(src) = sock.local_addr()?.ip() else {
        return Err(io::Error::other("no IPv4 source address"));
    };
    let (name, _, _) = all
        .iter()
        .find(|(_, a, _)| *a == Some(src))
        .ok_or_else(|| io::Error::other(format!("no interface holds {src}")))?;
    let name = std::ffi::CString::new(name.as_str()).map_err(io::Error::other)?;
    // SAFETY: a NUL-terminated name owned by this call.
    match unsafe { libc::if_nametoindex(name.as_ptr()) } {
        0 => Err(io::Error::last_os_error()),
        i => Ok(i),
    }
}

/// Lifts RLIMIT_MEMLOCK as far as allowed: kernels before 5.11 charge BPF
/// maps to it, and its usual 64 KiB (or 8 MiB) is less than the maps of a
/// few thousand streams. Newer kernels charge the memory cgroup instead,
/// where this changes nothing.
pub(crate) fn raise_memlock() -> io::Result<()> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: see the module comment (a struct owned by the call).
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let want = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // Root (CAP_SYS_RESOURCE) may lift both; anyone the soft to the hard.
    // SAFETY: as above.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &want) } == 0 {
        return Ok(());
    }
    lim.rlim_cur = lim.rlim_max;
    // SAFETY: as above.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `BPF_MAP_LOOKUP_BATCH` (Linux >= 5.6).
const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;

/// The `batch` member of `union bpf_attr`, the part the batch commands
/// read (the kernel zero-fills the rest of the union).
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

/// Reusable buffers for reading the whole per-CPU `counters` map a chunk
/// of entries per system call, instead of one call per entry.
pub(crate) struct CounterSweep {
    keys: Vec<FlowKey>,
    values: Vec<StreamCounters>,
    cpus: usize,
}

impl CounterSweep {
    /// Buffers for `chunk` entries per call, `cpus` values each (the
    /// possible CPUs, as the kernel lays out a per-CPU map's values).
    pub(crate) fn new(cpus: usize, chunk: usize) -> CounterSweep {
        let (cpus, chunk) = (cpus.max(1), chunk.max(1));
        CounterSweep {
            keys: vec![FlowKey::default(); chunk],
            values: vec![StreamCounters::default(); chunk * cpus],
            cpus,
        }
    }

    /// Reads every entry of `map` (a per-CPU hash of [`FlowKey`] to
    /// [`StreamCounters`]), handing each key and its per-CPU values to
    /// `each`; returns how many system calls it took. An error (a kernel
    /// without batch lookups: `EINVAL`; a hash bucket with more entries
    /// than a chunk: `ENOSPC`) may come after some entries were handed
    /// over.
    pub(crate) fn read_all(
        &mut self,
        map: BorrowedFd<'_>,
        mut each: impl FnMut(FlowKey, &[StreamCounters]),
    ) -> io::Result<u32> {
        let chunk = self.keys.len();
        // The position in the map, as the kernel says (a bucket index for
        // a hash map: 4 bytes of these 8); None: from the start.
        let mut position: Option<u64> = None;
        let mut next: u64 = 0;
        let mut calls = 0;
        loop {
            let mut attr = BatchAttr {
                in_batch: position.as_ref().map_or(0, |p| p as *const u64 as u64),
                out_batch: &mut next as *mut u64 as u64,
                keys: self.keys.as_mut_ptr() as u64,
                values: self.values.as_mut_ptr() as u64,
                count: u32::try_from(chunk).unwrap_or(u32::MAX),
                map_fd: u32::try_from(map.as_raw_fd()).map_err(io::Error::other)?,
                ..BatchAttr::default()
            };
            // SAFETY: see the module comment.
            let r = unsafe {
                libc::syscall(
                    libc::SYS_bpf,
                    BPF_MAP_LOOKUP_BATCH,
                    &mut attr as *mut BatchAttr,
                    std::mem::size_of::<BatchAttr>(),
                )
            };
            calls += 1;
            let err = (r < 0).then(io::Error::last_os_error);
            let end = err
                .as_ref()
                .is_some_and(|e| e.raw_os_error() == Some(libc::ENOENT));
            // `count` says how many were filled on success and at the end;
            // another error may leave it as it was passed.
            let filled = if err.is_none() || end {
                (attr.count as usize).min(chunk)
            } else {
                0
            };
            for (i, key) in self.keys[..filled].iter().enumerate() {
                each(*key, &self.values[i * self.cpus..(i + 1) * self.cpus]);
            }
            match err {
                None => position = Some(next),
                Some(_) if end => return Ok(calls),
                Some(e) => return Err(e),
            }
        }
    }
}
