//! Batched UDP I/O and CPU pinning: the only `unsafe` code of the crate.
//!
//! * [`RecvBatch::recv`] wraps `recvmmsg(2)`: one system call fills up to
//!   `capacity` datagrams with their source addresses (the `udp-batch`
//!   crate's, shared with the SIP stack; [`set_rx_timestamps`] too).
//! * [`SendBatch::send`] wraps `sendmmsg(2)`: one system call sends many
//!   datagrams, each to its own destination.
//! * [`pin_current_thread`] wraps `sched_setaffinity(2)`, [`raise_fd_limit`]
//!   and [`fd_limit`] wrap `setrlimit(2)`/`getrlimit(2)`.
//! * [`any_readable`] wraps `poll(2)` with a zero timeout: one system call
//!   tells whether any of a few sockets has something to read.
//!
//! Safety argument, once for the module: every pointer handed to the kernel
//! points into memory owned by the batch or into data borrowed for the
//! duration of the call, and is rebuilt before each call; lengths passed
//! are the lengths of those buffers; the kernel writes only within them.
//! Results are read only for the entries the kernel reported as filled.
#![allow(unsafe_code)]

use std::io;
use std::mem;
use std::os::fd::{AsRawFd, BorrowedFd};

pub use udp_batch::{set_rx_timestamps, RecvBatch, MAX_DATAGRAM};

use socket2::SockAddr;

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
