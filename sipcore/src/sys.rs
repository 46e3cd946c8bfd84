//! A system call the standard library and Tokio do not wrap for us.
//!
//! The receive side, `recvmmsg(2)`, is the `udp-batch` crate's
//! `RecvBatch`, shared with the media relay: one call fills up to
//! `capacity` datagrams with their source addresses, and a call that fills
//! fewer than `capacity` proves the queue empty, so the UDP receive loop
//! needs no extra `recvfrom` ending in `EAGAIN` after each wake-up (round 1
//! counted 4.5 of those per call, one per wake-up).
//!
//! [`SendBatch::send`] wraps `sendmmsg(2)`: one call sends the messages the
//! engine produced in one pass, each to its own destination, where a
//! `sendto` each cost about 19 % of the CPU per call (issue 15, round 3).
//! media-relay has its own `sendmmsg` wrapper (it counts ICMP errors of
//! connected sockets and drops on a full buffer, which SIP must not do):
//! the two differ in what a failure means, so unlike `RecvBatch` the send
//! side is not shared through `udp-batch`.
//!
//! Safety argument, once for the module: every pointer handed to the kernel
//! points into memory owned by the batch (boxed slices that never move or
//! resize after construction) or into data borrowed for the duration of
//! the call, and is rebuilt before each call; lengths passed are the
//! lengths of those buffers; the kernel writes only within them. Results
//! are read only for the entries the kernel reported filled.
#![allow(unsafe_code)]

use std::io;
use std::mem;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, BorrowedFd};

use socket2::SockAddr;

/// Reusable headers for `sendmmsg`; they grow to the largest batch sent.
#[derive(Default)]
pub(crate) struct SendBatch {
    hdrs: Vec<libc::mmsghdr>,
    iovs: Vec<libc::iovec>,
    names: Vec<SockAddr>,
}

// SAFETY: the raw pointers inside are only meaningful during one `send`
// call, which rebuilds them from data borrowed for that call.
unsafe impl Send for SendBatch {}

impl SendBatch {
    /// Sends `datagrams`, each to its address, without blocking, with one
    /// `sendmmsg`. Returns how many the kernel took, from the first (0 only
    /// for an empty slice); the caller sends the rest again. An error is
    /// that of the first datagram, and none was sent: the kernel reports an
    /// error on a later one by stopping short of it (the error itself is
    /// lost), so that the next call, which starts there, reports it.
    pub(crate) fn send<D: AsRef<[u8]>>(
        &mut self,
        fd: BorrowedFd<'_>,
        datagrams: &[(D, SocketAddr)],
    ) -> io::Result<usize> {
        // sendmmsg takes at most UIO_MAXIOV (1024) messages per call.
        let datagrams = &datagrams[..datagrams.len().min(1024)];
        if datagrams.is_empty() {
            return Ok(0);
        }
        self.hdrs.clear();
        self.iovs.clear();
        self.names.clear();
        for (data, addr) in datagrams {
            let data = data.as_ref();
            self.iovs.push(libc::iovec {
                iov_base: data.as_ptr() as *mut libc::c_void,
                iov_len: data.len(),
            });
            self.names.push(SockAddr::from(*addr));
        }
        // `iovs` and `names` no longer grow: point each header at its own.
        for (iov, name) in self.iovs.iter_mut().zip(&self.names) {
            // SAFETY: all-zero is a valid mmsghdr.
            let mut h: libc::mmsghdr = unsafe { mem::zeroed() };
            h.msg_hdr.msg_name = name.as_ptr() as *mut libc::c_void;
            h.msg_hdr.msg_namelen = name.len();
            h.msg_hdr.msg_iov = iov;
            h.msg_hdr.msg_iovlen = 1;
            self.hdrs.push(h);
        }
        // SAFETY: see the module docs; `hdrs` holds `len` entries pointing
        // into `iovs`, `names` and the borrowed datagrams.
        let r = unsafe {
            libc::sendmmsg(
                fd.as_raw_fd(),
                self.hdrs.as_mut_ptr(),
                self.hdrs.len() as libc::c_uint,
                libc::MSG_DONTWAIT,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(r as usize)
    }
}

#[cfg(test)]
mod tests;
