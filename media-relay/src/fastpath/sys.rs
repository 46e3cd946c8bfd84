//! The fast path's `unsafe` code, all of it: the map records shared with
//! the BPF program (C layout, declared `Pod` for aya), the monotonic clock
//! the program stamps packets with, and the interface list.
//!
//! Safety argument, once for the module: the three records are `repr(C)`,
//! made only of integers, with explicit padding fields, so every bit
//! pattern is a valid value and their size and layout are those of the C
//! structs in `bpf/fastpath.bpf.c` (checked by the unit tests against the
//! sizes the C side has); `clock_gettime`, `getrlimit`/`setrlimit` and `getifaddrs`/`freeifaddrs`
//! get pointers to memory owned by the call, and the list `getifaddrs`
//! returns is walked only until its null end and freed once.
#![allow(unsafe_code)]

use std::ffi::CStr;
use std::io;
use std::net::Ipv4Addr;

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
