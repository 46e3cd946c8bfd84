//! `recvmmsg(2)` and the kernel's receive timestamps: the crate's only
//! `unsafe` code.
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

use crate::MAX_DATAGRAM;

/// Reusable receive buffers for `recvmmsg`.
pub struct RecvBatch {
    bufs: Box<[u8]>,
    /// Bytes per datagram buffer.
    size: usize,
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
    /// Buffers for `capacity` datagrams (at least 1) of up to
    /// [`MAX_DATAGRAM`] bytes.
    pub fn new(capacity: usize) -> RecvBatch {
        RecvBatch::with_size(capacity, MAX_DATAGRAM)
    }

    /// Buffers for `capacity` datagrams (at least 1) of up to `size`
    /// bytes (at least 1): longer ones are cut and reported
    /// [`truncated`](RecvBatch::truncated).
    pub fn with_size(capacity: usize, size: usize) -> RecvBatch {
        let n = capacity.max(1);
        let size = size.max(1);
        RecvBatch {
            bufs: vec![0u8; n * size].into_boxed_slice(),
            size,
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
                iov_base: base.wrapping_add(i * self.size).cast(),
                iov_len: self.size,
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
            self.lens[i] = (h.msg_len as usize).min(self.size);
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
        let start = i * self.size;
        &self.bufs[start..start + self.lens[i]]
    }

    /// Datagram `i`, writable (for rewriting headers in place).
    pub fn packet_mut(&mut self, i: usize) -> &mut [u8] {
        assert!(i < self.filled, "datagram {i} not received");
        let start = i * self.size;
        &mut self.bufs[start..start + self.lens[i]]
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

    /// Whether datagram `i` was longer than the batch's datagram size.
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

#[cfg(test)]
mod tests;
