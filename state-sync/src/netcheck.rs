//! "Am I the one cut off?": ICMP echo probes of a few well-known hosts
//! (the trunk's gateway, a media server), asked before taking over from a
//! peer that went silent. A node that can reach none of them is more
//! likely isolated itself than looking at a dead peer.
//!
//! Raw ICMP sockets (IPv4 and IPv6), so the process needs `CAP_NET_RAW`
//! (root), used from tokio's blocking pool. A raw socket receives every ICMP packet the host gets, so a
//! reply is matched by source address, type, identifier and sequence
//! number. Failures of any kind (no permission, no route, timeout) read as
//! "not reachable" and are logged at debug level.

use std::io::{self, Read};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

const ECHO_REQUEST_V4: u8 = 8;
const ECHO_REPLY_V4: u8 = 0;
const ECHO_REQUEST_V6: u8 = 128;
const ECHO_REPLY_V6: u8 = 129;
const PAYLOAD: &[u8] = b"tandem netcheck";

/// Whether `host` answers one ICMP echo within `timeout`. Never panics:
/// every failure is `false` (logged with `tracing::debug!`). The probe
/// runs on tokio's blocking pool with a socket read timeout, so even if
/// this future is dropped the thread is busy for `timeout` at most.
pub async fn ping(host: IpAddr, timeout: Duration) -> bool {
    let outcome = tokio::task::spawn_blocking(move || echo(host, timeout)).await;
    match outcome {
        Ok(Ok(true)) => true,
        Ok(Ok(false)) => {
            tracing::debug!(%host, ?timeout, "ping timed out");
            false
        }
        Ok(Err(e)) => {
            tracing::debug!(%host, error = %e, "ping failed");
            false
        }
        Err(e) => {
            tracing::debug!(%host, error = %e, "ping task failed");
            false
        }
    }
}

/// Whether at least one of `hosts` answers a ping within `timeout`; all
/// are probed at once and the first answer settles it. An empty list means
/// "no probes configured" and gives `true`: with nothing to test, a node
/// cannot conclude that it is the one cut off.
pub async fn any_reachable(hosts: &[IpAddr], timeout: Duration) -> bool {
    if hosts.is_empty() {
        return true;
    }
    let mut probes: FuturesUnordered<_> = hosts.iter().map(|h| ping(*h, timeout)).collect();
    while let Some(reachable) = probes.next().await {
        if reachable {
            return true;
        }
    }
    false
}

/// Identifier for this process's echo requests; the sequence number tells
/// concurrent probes apart.
fn next_ident_seq() -> (u16, u16) {
    static SEQ: AtomicU16 = AtomicU16::new(0);
    let ident = (std::process::id() & 0xffff) as u16;
    (ident, SEQ.fetch_add(1, Ordering::Relaxed))
}

/// Sends one echo request to `host` and waits until `timeout` for the
/// matching reply: `Ok(false)` when none came.
fn echo(host: IpAddr, timeout: Duration) -> io::Result<bool> {
    let deadline = Instant::now() + timeout;
    let (domain, protocol) = match host {
        IpAddr::V4(_) => (Domain::IPV4, Protocol::ICMPV4),
        IpAddr::V6(_) => (Domain::IPV6, Protocol::ICMPV6),
    };
    let socket = Socket::new(domain, Type::RAW.cloexec(), Some(protocol))?;
    // A connected raw socket only receives packets from `host`.
    socket.connect(&SockAddr::from(SocketAddr::new(host, 0)))?;
    let (ident, seq) = next_ident_seq();
    socket.send(&echo_request(host.is_ipv4(), ident, seq, PAYLOAD))?;
    let mut buf = [0u8; 1500];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(false);
        }
        socket.set_read_timeout(Some(left))?;
        let len = match (&socket).read(&mut buf) {
            Ok(len) => len,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(false)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let packet = &buf[..len];
        let matched = match host {
            // IPv4 raw sockets deliver the IP header; IPv6 ones do not.
            IpAddr::V4(_) => is_echo_reply_v4(packet, ident, seq),
            IpAddr::V6(_) => is_echo_reply(packet, ECHO_REPLY_V6, ident, seq),
        };
        if matched {
            return Ok(true);
        }
    }
}

/// An ICMP (IPv4) or ICMPv6 echo request. The IPv4 checksum is computed
/// here; for ICMPv6 the kernel fills it in (it covers a pseudo-header
/// only the kernel knows), so it is left zero.
pub(crate) fn echo_request(v4: bool, ident: u16, seq: u16, payload: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(8 + payload.len());
    p.push(if v4 { ECHO_REQUEST_V4 } else { ECHO_REQUEST_V6 });
    p.push(0); // code
    p.extend_from_slice(&[0, 0]); // checksum
    p.extend_from_slice(&ident.to_be_bytes());
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(payload);
    if v4 {
        let sum = checksum(&p);
        p[2..4].copy_from_slice(&sum.to_be_bytes());
    }
    p
}

/// The Internet checksum (RFC 1071): one's complement of the one's
/// complement sum of 16-bit big-endian words, an odd last byte padded
/// with zero. A packet carrying its correct checksum sums to 0.
pub(crate) fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut words = data.chunks_exact(2);
    for w in &mut words {
        sum += u32::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [last] = words.remainder() {
        sum += u32::from(*last) << 8;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Whether an IPv4 packet (as a raw socket delivers it, IP header first)
/// is the echo reply to our request `ident`/`seq`.
pub(crate) fn is_echo_reply_v4(packet: &[u8], ident: u16, seq: u16) -> bool {
    let Some(first) = packet.first() else {
        return false;
    };
    if first >> 4 != 4 {
        return false;
    }
    let header_len = usize::from(first & 0x0f) * 4;
    if header_len < 20 || packet.get(9) != Some(&1) {
        return false; // not ICMP
    }
    packet
        .get(header_len..)
        .is_some_and(|icmp| is_echo_reply(icmp, ECHO_REPLY_V4, ident, seq))
}

/// Whether an ICMP message is an echo reply of type `reply_type` with our
/// identifier and sequence number.
pub(crate) fn is_echo_reply(icmp: &[u8], reply_type: u8, ident: u16, seq: u16) -> bool {
    icmp.len() >= 8
        && icmp[0] == reply_type
        && icmp[1] == 0
        && icmp[4..6] == ident.to_be_bytes()
        && icmp[6..8] == seq.to_be_bytes()
}

#[cfg(test)]
mod tests;
