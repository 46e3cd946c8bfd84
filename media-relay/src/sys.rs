//! Batched UDP I/O and CPU pinning: the only `unsafe` code of the crate.
//!
//! * [`RecvBatch::recv`] wraps `recvmmsg(2)`: one system call fills up to
//!   `capacity` datagrams with their source addresses.
//! * [`SendBatch::send`] wraps `sendmmsg(2)`: one system call sends many
//!   datagrams, each to its own destination.
//! * [`pin_current_thread`] wraps `sched_setaffinity(2)`, [`raise_fd_limit`]
//!   and [`fd_limit`] wrap `setrlimit(2)`/`getrlimit(2)`,
//!   [`set_rx_timestamps`] sets SO_TIMESTAMPNS.
//! * [`any_readable`] wraps `poll(2)` with a zero timeout: one system call
//!   tells whether any of a few sockets has something to read.
//!
//! Safety argument, once for the module: every pointer handed to the kernel
//! points into memory owned by the batch (boxed slices that never move or
//! resize after construction) or into data borrowed for the duration of the
//! call, and is rebuilt before each call; lengths passed are the lengths of
//! those buffers; the kernel writes only within them. Results are read only
//! for the entries the kernel reported as filled.
#![allow(unsafe_code)]

use std::io;
use std::mem;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::ptr;
use std::time::Duration;

use socket2::SockAddr;

/// Largest datagram received in full; longer ones are reported truncated.
pub const MAX_DATAGRAM: usize = 2048;

/// Reusable receive buffers for `recvmmsg`.
pub struct RecvBatch {
    bufs: Box<[u8]>,
    names: Box<[libc::sockaddr_storage]>,
    iovs: Box<[libc::iovec]>,
    hdrs: Box<[libc::mmsghdr]>,
    lens: Box<[usize]>,
    srcs: Box<[Option<SocketAddr>]>,
    truncated: Box<[bool]>,
    /// Ancillary data buffers (8-byte aligned), used with timestamps.
    controls: Box<[[u64; 8]]>,
    stamps: Box<[Option<Duration>]>,
    timestamps: bool,
    filled: usize,
}

// SAFETY: the raw pointers inside `iovs`/`hdrs` only ever point into the
// batch's own heap buffers (and are rebuilt before every call), so moving
// the batch to another thread moves everything they refer to along with it.
unsafe impl Send for RecvBatch {}

impl RecvBatch {
    /// Buffers for `capacity` datagrams (at least 1).
    pub fn new(capacity: usize) -> RecvBatch {
        let n = capacity.max(1);
        RecvBatch {
            bufs: vec![0u8; n * MAX_DATAGRAM].into_boxed_slice(),
            // SAFETY: all-zero is a valid value of these plain C structs.
            names: (0..n).map(|_| unsafe { mem::zeroed() }).collect(),
            iovs: (0..n).map(|_| unsafe { mem::zeroed() }).collect(),
            hdrs: (0..n).map(|_| unsafe { mem::zeroed() }).collect(),
            lens: vec![0; n].into_boxed_slice(),
            srcs: vec![None; n].into_boxed_slice(),
            truncated: vec![false; n].into_boxed_slice(),
            controls: vec![[0u64; 8]; n].into_boxed_slice(),
            stamps: vec![None; n].into_boxed_slice(),
            timestamps: false,
            filled: 0,
        }
    }

    /// Also collects the kernel's receive timestamps (the socket needs
    /// [`set_rx_timestamps`]); see [`RecvBatch::timestamp`].
    pub fn with_timestamps(mut self) -> RecvBatch {
        self.timestamps = true;
        self
    }

    /// Datagrams one call can receive.
    pub fn capacity(&self) -> usize {
        self.hdrs.len()
    }

    /// Receives up to `capacity` datagrams without blocking. Returns how
    /// many were received (0 never happens: an empty queue is
    /// `ErrorKind::WouldBlock`).
    pub fn recv(&mut self, fd: BorrowedFd<'_>) -> io::Result<usize> {
        let n = self.capacity();
        let base = self.bufs.as_mut_ptr();
        for i in 0..n {
            self.iovs[i] = libc::iovec {
                iov_base: base.wrapping_add(i * MAX_DATAGRAM).cast(),
                iov_len: MAX_DATAGRAM,
            };
            let h = &mut self.hdrs[i];
            h.msg_hdr.msg_name = ptr::addr_of_mut!(self.names[i]).cast();
            h.msg_hdr.msg_namelen = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_hdr.msg_iov = ptr::addr_of_mut!(self.iovs[i]);
            h.msg_hdr.msg_iovlen = 1;
            if self.timestamps {
                h.msg_hdr.msg_control = ptr::addr_of_mut!(self.controls[i]).cast();
                h.msg_hdr.msg_controllen = mem::size_of::<[u64; 8]>() as _;
            } else {
                h.msg_hdr.msg_control = ptr::null_mut();
                h.msg_hdr.msg_controllen = 0;
            }
            h.msg_hdr.msg_flags = 0;
            h.msg_len = 0;
        }
        self.filled = 0;
        // SAFETY: see the module docs; `hdrs` holds `n` initialised entries.
        let r = unsafe {
            libc::recvmmsg(
                fd.as_raw_fd(),
                self.hdrs.as_mut_ptr(),
                n as libc::c_uint,
                libc::MSG_DONTWAIT,
                ptr::null_mut(),
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        let r = r as usize;
        for i in 0..r {
            let h = &self.hdrs[i];
            self.lens[i] = (h.msg_len as usize).min(MAX_DATAGRAM);
            self.truncated[i] = h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
            self.srcs[i] = sockaddr_to_std(&self.names[i], h.msg_hdr.msg_namelen);
            self.stamps[i] = if self.timestamps {
                rx_timestamp(&h.msg_hdr)
            } else {
                None
            };
        }
        self.filled = r;
        Ok(r)
    }

    /// Datagrams filled by the last `recv`.
    pub fn len(&self) -> usize {
        self.filled
    }

    /// Whether the last `recv` filled nothing.
    pub fn is_empty(&self) -> bool {
        self.filled == 0
    }

    /// Datagram `i` of the last `recv`.
    pub fn packet(&self, i: usize) -> &[u8] {
        assert!(i < self.filled, "datagram {i} not received");
        &self.bufs[i * MAX_DATAGRAM..i * MAX_DATAGRAM + self.lens[i]]
    }

    /// Datagram `i`, writable (for rewriting headers in place).
    pub fn packet_mut(&mut self, i: usize) -> &mut [u8] {
        assert!(i < self.filled, "datagram {i} not received");
        &mut self.bufs[i * MAX_DATAGRAM..i * MAX_DATAGRAM + self.lens[i]]
    }

    /// Source address of datagram `i` (None for a non-IP family).
    pub fn source(&self, i: usize) -> Option<SocketAddr> {
        self.srcs[..self.filled][i]
    }

    /// Kernel receive time of datagram `i` (since the UNIX epoch), if the
    /// batch collects timestamps and the socket has them enabled.
    pub fn timestamp(&self, i: usize) -> Option<Duration> {
        self.stamps[..self.filled][i]
    }

    /// Whether datagram `i` was longer than [`MAX_DATAGRAM`].
    pub fn truncated(&self, i: usize) -> bool {
        self.truncated[..self.filled][i]
    }
}

/// The SCM_TIMESTAMPNS control message of a received message, if any.
fn rx_timestamp(h: &libc::msghdr) -> Option<Duration> {
    if h.msg_controllen == 0 {
        return None;
    }
    // SAFETY: the kernel filled `msg_control` with `msg_controllen` bytes of
    // well-formed control messages; the CMSG_* helpers stay within them, and
    // the timespec is read unaligned from the data of a message of the
    // right type.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(h);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_TIMESTAMPNS {
                let ts: libc::timespec = ptr::read_unaligned(libc::CMSG_DATA(c).cast());
                return Some(Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32));
            }
            c = libc::CMSG_NXTHDR(h, c);
        }
    }
    None
}

/// Turns the kernel's receive timestamps (SO_TIMESTAMPNS) on or off.
pub fn set_rx_timestamps(fd: BorrowedFd<'_>, on: bool) -> io::Result<()> {
    let v: libc::c_int = on.into();
    // SAFETY: setsockopt reads one c_int we own.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            ptr::addr_of!(v).cast(),
            mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn sockaddr_to_std(s: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<SocketAddr> {
    let len = len as usize;
    match libc::c_int::from(s.ss_family) {
        libc::AF_INET if len >= mem::size_of::<libc::sockaddr_in>() => {
            // SAFETY: the family says the storage holds a sockaddr_in, and
            // sockaddr_storage is large enough and suitably aligned for it.
            let a = unsafe { &*(s as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)),
                u16::from_be(a.sin_port),
            )))
        }
        libc::AF_INET6 if len >= mem::size_of::<libc::sockaddr_in6>() => {
            // SAFETY: as above, for sockaddr_in6.
            let a = unsafe { &*(s as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(a.sin6_addr.s6_addr),
                u16::from_be(a.sin6_port),
                u32::from_be(a.sin6_flowinfo),
                a.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// What a [`SendBatch::send`] achieved.
#[derive(Debug, Default)]
pub struct SendOutcome {
    /// Datagrams the kernel accepted.
    pub sent: usize,
    /// Their bytes.
    pub bytes: usize,
    /// Datagrams that failed (dropped).
    pub failed: usize,
    /// ICMP errors (port unreachable) a connected socket reported for
    /// earlier datagrams: the peer is gone or not listening.
    pub refused: usize,
    /// The last error seen, if any.
    pub last_error: Option<io::Error>,
}

/// Reusable headers for `sendmmsg`.
pub struct SendBatch {
    hdrs: Vec<libc::mmsghdr>,
    iovs: Vec<libc::iovec>,
    lens: Vec<usize>,
}

// SAFETY: the raw pointers inside are only meaningful during one `send`
// call, which rebuilds them from data borrowed for that call.
unsafe impl Send for SendBatch {}

impl Default for SendBatch {
    fn default() -> Self {
        Self::new()
    }
}

impl SendBatch {
    /// Empty headers; they grow to the largest batch sent.
    pub fn new() -> SendBatch {
        SendBatch {
            hdrs: Vec::new(),
            iovs: Vec::new(),
            lens: Vec::new(),
        }
    }

    /// Sends every datagram to its destination (`None`: the socket's
    /// connected peer) with as few `sendmmsg` calls as possible. A datagram
    /// the kernel refuses is counted as failed and skipped; on `WouldBlock`
    /// the rest is dropped. A pending ICMP error reported by a connected
    /// socket (`ConnectionRefused`) does not cost the datagram: it is sent
    /// again once.
    pub fn send<'a, I>(&mut self, fd: BorrowedFd<'_>, datagrams: I) -> SendOutcome
    where
        I: IntoIterator<Item = (&'a [u8], Option<&'a SockAddr>)>,
    {
        self.hdrs.clear();
        self.iovs.clear();
        self.lens.clear();
        for (data, dest) in datagrams {
            self.iovs.push(libc::iovec {
                iov_base: data.as_ptr() as *mut libc::c_void,
                iov_len: data.len(),
            });
            self.lens.push(data.len());
            // SAFETY: all-zero is a valid mmsghdr.
            let mut h: libc::mmsghdr = unsafe { mem::zeroed() };
            if let Some(dest) = dest {
                h.msg_hdr.msg_name = dest.as_ptr() as *mut libc::c_void;
                h.msg_hdr.msg_namelen = dest.len();
            }
            h.msg_hdr.msg_iovlen = 1;
            self.hdrs.push(h);
        }
        // `iovs` no longer grows: point each header at its iovec.
        let iovs = self.iovs.as_mut_ptr();
        for (i, h) in self.hdrs.iter_mut().enumerate() {
            h.msg_hdr.msg_iov = iovs.wrapping_add(i);
        }
        let n = self.hdrs.len();
        let mut out = SendOutcome::default();
        let mut at = 0;
        let mut retried = usize::MAX;
        while at < n {
            let chunk = (n - at).min(1024);
            // SAFETY: see the module docs; entries `at..at + chunk` point to
            // data and addresses borrowed for this call.
            let r = unsafe {
                libc::sendmmsg(
                    fd.as_raw_fd(),
                    self.hdrs.as_mut_ptr().add(at),
                    chunk as libc::c_uint,
                    0,
                )
            };
            if r > 0 {
                let r = r as usize;
                out.sent += r;
                out.bytes += self.lens[at..at + r].iter().sum::<usize>();
                at += r;
                continue;
            }
            let err = io::Error::last_os_error();
            match err.kind() {
                io::ErrorKind::Interrupted => continue,
                io::ErrorKind::ConnectionRefused if retried != at => {
                    retried = at;
                    out.refused += 1;
                    continue;
                }
                io::ErrorKind::WouldBlock => {
                    out.failed += n - at;
                    at = n;
                }
                _ => {
                    out.failed += 1;
                    at += 1;
                }
            }
            out.last_error = Some(err);
        }
        out
    }
}

/// Whether any of `fds` has a datagram (or a pending error) to read now,
/// without blocking: one `poll(2)` for all of them, where a `recv` each
/// ending in `EAGAIN` would cost a system call per socket. At most 8
/// sockets (a port pair has two).
pub fn any_readable<'a>(fds: impl IntoIterator<Item = BorrowedFd<'a>>) -> io::Result<bool> {
    let mut polled = [libc::pollfd {
        fd: -1,
        events: 0,
        revents: 0,
    }; 8];
    let mut n = 0;
    for fd in fds {
        let Some(p) = polled.get_mut(n) else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "more than 8 sockets",
            ));
        };
        p.fd = fd.as_raw_fd();
        p.events = libc::POLLIN;
        n += 1;
    }
    loop {
        // SAFETY: `polled` is ours and holds at least `n` entries.
        let r = unsafe { libc::poll(polled.as_mut_ptr(), n as libc::nfds_t, 0) };
        if r >= 0 {
            // POLLERR/POLLHUP count too: a recv is what clears them.
            return Ok(r > 0);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Pins the calling thread to one CPU core.
pub fn pin_current_thread(core: usize) -> io::Result<()> {
    // SAFETY: cpu_set_t is a plain bit set; CPU_SET checks nothing, so the
    // core number is bounded here first.
    unsafe {
        let mut set: libc::cpu_set_t = mem::zeroed();
        if core >= 8 * mem::size_of::<libc::cpu_set_t>() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("core {core} out of range"),
            ));
        }
        libc::CPU_SET(core, &mut set);
        if libc::sched_setaffinity(0, mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The soft limit of open files (`RLIMIT_NOFILE`).
pub fn fd_limit() -> io::Result<u64> {
    // SAFETY: getrlimit writes one rlimit struct we own.
    unsafe {
        let mut lim: libc::rlimit = mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(lim.rlim_cur as u64)
    }
}

/// Raises the soft limit of open files to the hard limit (each session
/// holds four sockets). Returns the new soft limit.
pub fn raise_fd_limit() -> io::Result<u64> {
    // SAFETY: getrlimit/setrlimit read/write one rlimit struct we own.
    unsafe {
        let mut lim: libc::rlimit = mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return Err(io::Error::last_os_error());
        }
        if lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(lim.rlim_cur as u64)
    }
}

#[cfg(test)]
mod tests;
