//! The one place in this crate with `unsafe`: an `AF_PACKET` socket to
//! send a ready-made Ethernet frame (gratuitous ARP) on one interface, and
//! the real-time scheduling of the heartbeat thread.
//!
//! Why `unsafe` for the socket: neither the standard library nor socket2 can address a
//! packet socket safely (socket2 builds a `sockaddr_ll` only through its
//! own `unsafe` constructors), so the socket is opened and written with
//! libc's `socket(2)` and `sendto(2)`.
//!
//! Invariants relied on:
//! * the descriptor returned by `socket` is checked (`-1` is an error) and
//!   immediately owned by an [`OwnedFd`], which closes it exactly once;
//! * `sendto` gets a pointer and length from one live `&[u8]`, and a
//!   pointer to a fully initialised `sockaddr_ll` on the stack with its
//!   exact size; the kernel only reads both during the call.
//!
//! The socket is opened with protocol 0, so it receives nothing: it is
//! send-only, and the address given to `sendto` pins every frame to the
//! configured interface.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// A send-only raw packet socket bound by address to one interface.
pub(crate) struct PacketSocket {
    fd: OwnedFd,
    ifindex: i32,
}

impl PacketSocket {
    /// Opens the socket (needs `CAP_NET_RAW`) for interface `ifindex`.
    pub(crate) fn open(ifindex: u32) -> io::Result<PacketSocket> {
        let ifindex = i32::try_from(ifindex).map_err(|_| {
            io::Error::new(io::ErrorKind::InvalidInput, "interface index out of range")
        })?;
        // SAFETY: socket(2) takes plain integers and has no memory-safety
        // preconditions; it returns -1 or a new descriptor.
        let raw = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                0,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a valid descriptor just returned by socket(2)
        // and owned by nothing else; the OwnedFd becomes its only owner.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        Ok(PacketSocket { fd, ifindex })
    }

    /// Sends `frame` (a whole Ethernet frame, header included) out of the
    /// interface, to the Ethernet broadcast address.
    pub(crate) fn send_broadcast(&self, frame: &[u8]) -> io::Result<()> {
        let mut sll_addr = [0u8; 8];
        sll_addr[..6].copy_from_slice(&[0xff; 6]);
        let addr = libc::sockaddr_ll {
            sll_family: libc::AF_PACKET as libc::c_ushort,
            sll_protocol: (libc::ETH_P_ARP as u16).to_be(),
            sll_ifindex: self.ifindex,
            sll_hatype: 0,
            sll_pkttype: 0,
            sll_halen: 6,
            sll_addr,
        };
        // SAFETY: the buffer pointer and length come from the live slice
        // `frame`; the address pointer is to `addr`, a fully initialised
        // sockaddr_ll that outlives the call, with its exact size. The
        // descriptor is open for as long as `self` is.
        let sent = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&addr as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        if sent as usize != frame.len() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!("sent {sent} of {} bytes", frame.len()),
            ));
        }
        Ok(())
    }
}

/// Puts the calling thread under `SCHED_FIFO` at `priority` (1–99), so
/// that heartbeats are sent and read on time however busy the other
/// threads are: a pair that fails over because the active node was merely
/// loaded is worse than one that is slow to fail over. Needs
/// CAP_SYS_NICE (root).
///
/// `unsafe`: `sched_setscheduler(2)` reads one fully initialised
/// `sched_param` on the stack during the call; pid 0 is this thread.
pub(crate) fn set_realtime(priority: i32) -> io::Result<()> {
    let param = libc::sched_param {
        sched_priority: priority,
    };
    // SAFETY: see above; the pointer is valid for the whole call.
    let r = unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) };
    if r == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
