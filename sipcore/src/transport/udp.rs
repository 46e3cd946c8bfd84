//! The UDP transport (RFC 3261 §18.1.1, §18.2.1): one socket, one message
//! per datagram.
//!
//! The socket gets large kernel buffers (a burst of INVITEs or a
//! retransmission storm must queue in the kernel, not be dropped there) and
//! no `SO_REUSEADDR`: on Linux `SO_REUSEADDR` on UDP lets a second process
//! bind the same address and port and take a share of the packets (a
//! local user could read and answer SIP meant for Tandem). UDP has no
//! TIME_WAIT, so a restart does not need it.
//! IPv6 sockets are `IPV6_V6ONLY`: bind IPv4 and IPv6 separately, so that
//! sources are never v4-mapped addresses.
//!
//! Datagrams that are empty, larger than [`MAX_MESSAGE_SIZE`] or do not
//! start like a SIP message (STUN, TLS, noise) are dropped and counted as
//! garbage; CR/LF-only datagrams are keep-alives and dropped silently.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tracing::{debug, warn};

use super::framing::{is_crlf_only, is_token_char, MAX_MESSAGE_SIZE};
use super::{bump, Counters, EndpointContext, Incoming, StatsSnapshot, TransportKind};
use crate::error::{Error, Result};
use crate::sys::SendBatch;
use udp_batch::RecvBatch;

/// Socket options of a UDP endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpConfig {
    /// Requested `SO_RCVBUF` in bytes. The kernel may grant less (Linux
    /// caps it at `net.core.rmem_max` and reports twice the granted value);
    /// [`UdpTransport::recv_buffer_size`] tells what was granted.
    pub recv_buffer_size: usize,
    /// Requested `SO_SNDBUF` in bytes (capped by `net.core.wmem_max`).
    pub send_buffer_size: usize,
    /// `SO_REUSEADDR`. Off by default: with it on, another socket that sets
    /// it too can bind the same address and steal datagrams.
    pub reuse_address: bool,
    /// `SO_REUSEPORT`: several sockets (one per shard) share the port; a
    /// steering program attached through [`super::BindHook`] picks the
    /// socket of each datagram. Off by default, as `reuse_address`.
    pub reuse_port: bool,
    /// `IP_FREEBIND`: bind an address this host does not hold (yet) — a
    /// standby binds the floating address before it takes it over.
    pub freebind: bool,
}

impl Default for UdpConfig {
    fn default() -> Self {
        UdpConfig {
            recv_buffer_size: 4 << 20,
            send_buffer_size: 4 << 20,
            reuse_address: false,
            reuse_port: false,
            freebind: false,
        }
    }
}

/// A bound, configured socket not yet handed to Tokio.
#[derive(Debug)]
pub(crate) struct BoundUdp {
    socket: std::net::UdpSocket,
    pub(crate) local: SocketAddr,
    recv_buffer_size: usize,
    send_buffer_size: usize,
}

impl std::os::fd::AsFd for BoundUdp {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

/// Create, configure and bind a UDP socket.
pub(crate) fn bind_socket(addr: SocketAddr, config: &UdpConfig) -> Result<BoundUdp> {
    let ctx = |what: &str| format!("UDP {what} on {addr}");
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))
        .map_err(|e| Error::io(ctx("socket"), e))?;
    if addr.is_ipv6() {
        socket
            .set_only_v6(true)
            .map_err(|e| Error::io(ctx("IPV6_V6ONLY"), e))?;
    }
    socket
        .set_reuse_address(config.reuse_address)
        .map_err(|e| Error::io(ctx("SO_REUSEADDR"), e))?;
    if config.reuse_port {
        socket
            .set_reuse_port(true)
            .map_err(|e| Error::io(ctx("SO_REUSEPORT"), e))?;
    }
    if config.freebind {
        super::set_freebind(&socket, addr).map_err(|e| Error::io(ctx("IP_FREEBIND"), e))?;
    }
    socket
        .set_recv_buffer_size(config.recv_buffer_size)
        .map_err(|e| Error::io(ctx("SO_RCVBUF"), e))?;
    socket
        .set_send_buffer_size(config.send_buffer_size)
        .map_err(|e| Error::io(ctx("SO_SNDBUF"), e))?;
    socket
        .set_nonblocking(true)
        .map_err(|e| Error::io(ctx("O_NONBLOCK"), e))?;
    socket
        .bind(&addr.into())
        .map_err(|e| Error::io(ctx("bind"), e))?;
    let recv_buffer_size = socket
        .recv_buffer_size()
        .map_err(|e| Error::io(ctx("SO_RCVBUF"), e))?;
    let send_buffer_size = socket
        .send_buffer_size()
        .map_err(|e| Error::io(ctx("SO_SNDBUF"), e))?;
    if recv_buffer_size < config.recv_buffer_size {
        warn!(
            %addr,
            requested = config.recv_buffer_size,
            granted = recv_buffer_size,
            "UDP receive buffer smaller than requested; raise net.core.rmem_max"
        );
    }
    if send_buffer_size < config.send_buffer_size {
        warn!(
            %addr,
            requested = config.send_buffer_size,
            granted = send_buffer_size,
            "UDP send buffer smaller than requested; raise net.core.wmem_max"
        );
    }
    let local = socket
        .local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .ok_or_else(|| Error::io(ctx("local address"), io::Error::other("not an IP socket")))?;
    Ok(BoundUdp {
        socket: socket.into(),
        local,
        recv_buffer_size,
        send_buffer_size,
    })
}

/// A bound UDP endpoint with its receive task running. Cheap to clone.
#[derive(Debug, Clone)]
pub struct UdpTransport {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    socket: UdpSocket,
    local: SocketAddr,
    recv_buffer_size: usize,
    send_buffer_size: usize,
    stats: Counters,
}

impl UdpTransport {
    /// Bind `addr` and start receiving into `ctx.incoming`. Must be called
    /// inside a Tokio runtime.
    pub fn bind(addr: SocketAddr, config: &UdpConfig, ctx: EndpointContext) -> Result<Self> {
        Self::from_socket(bind_socket(addr, config)?, ctx)
    }

    pub(crate) fn from_socket(bound: BoundUdp, ctx: EndpointContext) -> Result<Self> {
        let local = bound.local;
        let socket = UdpSocket::from_std(bound.socket)
            .map_err(|e| Error::io(format!("UDP register {local}"), e))?;
        let inner = Arc::new(Inner {
            socket,
            local,
            recv_buffer_size: bound.recv_buffer_size,
            send_buffer_size: bound.send_buffer_size,
            stats: Counters::default(),
        });
        ctx.tasks.spawn(receive_loop(inner.clone(), ctx.clone()));
        Ok(UdpTransport { inner })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local
    }

    /// The `SO_RCVBUF` the kernel granted, as it reports it.
    pub fn recv_buffer_size(&self) -> usize {
        self.inner.recv_buffer_size
    }

    /// The `SO_SNDBUF` the kernel granted, as it reports it.
    pub fn send_buffer_size(&self) -> usize {
        self.inner.send_buffer_size
    }

    /// Send one datagram to `addr`.
    pub async fn send_to(&self, data: &[u8], addr: SocketAddr) -> Result<()> {
        let stats = &self.inner.stats;
        if data.len() > MAX_MESSAGE_SIZE {
            bump(&stats.send_errors, 1);
            return Err(Error::TooLarge {
                size: data.len(),
                limit: MAX_MESSAGE_SIZE,
            });
        }
        let sent = self.inner.socket.send_to(data, addr).await;
        bump(&stats.send_calls, 1);
        match sent {
            Ok(n) if n == data.len() => {
                bump(&stats.messages_sent, 1);
                bump(&stats.bytes_sent, n as u64);
                Ok(())
            }
            Ok(n) => {
                bump(&stats.send_errors, 1);
                let e = io::Error::new(
                    io::ErrorKind::WriteZero,
                    format!("sent {n} of {} bytes", data.len()),
                );
                Err(Error::io(
                    format!("UDP send from {} to {addr}", self.inner.local),
                    e,
                ))
            }
            Err(e) => {
                bump(&stats.send_errors, 1);
                Err(Error::io(
                    format!("UDP send from {} to {addr}", self.inner.local),
                    e,
                ))
            }
        }
    }

    /// Sends each datagram to its address, in order, with as few
    /// `sendmmsg` calls as the kernel allows (one, unless the send buffer
    /// fills or a datagram fails): the messages of one engine pass cost
    /// one system call, not one each. Waits while the send buffer is full,
    /// as [`UdpTransport::send_to`] does. `report(i, result)` is called
    /// once for each datagram `i`, in order; a failed one does not hold up
    /// the rest.
    pub(crate) async fn send_many<D: AsRef<[u8]>>(
        &self,
        batch: &mut SendBatch,
        datagrams: &[(D, SocketAddr)],
        mut report: impl FnMut(usize, Result<()>),
    ) {
        let stats = &self.inner.stats;
        let mut at = 0;
        while at < datagrams.len() {
            let size = datagrams[at].0.as_ref().len();
            if size > MAX_MESSAGE_SIZE {
                bump(&stats.send_errors, 1);
                report(
                    at,
                    Err(Error::TooLarge {
                        size,
                        limit: MAX_MESSAGE_SIZE,
                    }),
                );
                at += 1;
                continue;
            }
            // Up to the next datagram too large to be sent.
            let end = datagrams[at..]
                .iter()
                .position(|(d, _)| d.as_ref().len() > MAX_MESSAGE_SIZE)
                .map_or(datagrams.len(), |p| at + p);
            let run = &datagrams[at..end];
            let sent = self
                .inner
                .socket
                .async_io(Interest::WRITABLE, || {
                    bump(&stats.send_calls, 1);
                    batch.send(self.inner.socket.as_fd(), run)
                })
                .await;
            match sent {
                Ok(n) => {
                    // UDP sends a datagram whole or not at all.
                    for (i, (data, _)) in run[..n].iter().enumerate() {
                        bump(&stats.messages_sent, 1);
                        bump(&stats.bytes_sent, data.as_ref().len() as u64);
                        report(at + i, Ok(()));
                    }
                    at += n;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    bump(&stats.send_errors, 1);
                    let addr = run[0].1;
                    report(
                        at,
                        Err(Error::io(
                            format!("UDP send from {} to {addr}", self.inner.local),
                            e,
                        )),
                    );
                    at += 1;
                }
            }
        }
    }

    pub fn stats(&self) -> StatsSnapshot {
        self.inner.stats.snapshot()
    }

    /// Replaces the socket's kernel filter by `program` (classic BPF, see
    /// [`crate::gate::drop_filter`]); an empty program removes it.
    /// Datagrams it drops never reach the socket buffer.
    pub fn set_filter(&self, program: &[libc::sock_filter]) -> io::Result<()> {
        let socket = socket2::SockRef::from(&self.inner.socket);
        if program.is_empty() {
            match socket.detach_filter() {
                // None was attached.
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
                other => other,
            }
        } else {
            socket.attach_filter(program)
        }
    }
}

/// What to do with one datagram.
#[derive(Debug, PartialEq, Eq)]
enum Datagram<'a> {
    Message(&'a [u8]),
    KeepAlive,
    Garbage(&'static str),
}

fn classify(data: &[u8]) -> Datagram<'_> {
    if data.is_empty() {
        return Datagram::Garbage("empty");
    }
    if data.len() > MAX_MESSAGE_SIZE {
        return Datagram::Garbage("too large");
    }
    if is_crlf_only(data) {
        return Datagram::KeepAlive;
    }
    let start = data
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(0);
    let message = &data[start..];
    if !is_token_char(message[0]) {
        return Datagram::Garbage("not SIP");
    }
    Datagram::Message(message)
}

/// Datagrams one `recvmmsg` can take. Most wake-ups find one message; the
/// batch matters for bursts, and for knowing the queue empty (a short
/// batch) without a further `recvfrom` ending in `EAGAIN`.
const RECV_BATCH: usize = 8;

async fn receive_loop(inner: Arc<Inner>, ctx: EndpointContext) {
    // One byte more than the limit per datagram, to see that a datagram is
    // too large (Linux truncates silently). Each message is copied out into
    // its own exactly sized buffer: a small copy, and no message ever pins
    // a large shared receive buffer while the transaction or dialog layer
    // keeps it.
    let mut batch = RecvBatch::with_size(RECV_BATCH, MAX_MESSAGE_SIZE + 1);
    loop {
        let ready = tokio::select! {
            biased;
            _ = ctx.shutdown.cancelled() => break,
            r = inner.socket.readable() => r,
        };
        let received = ready.and_then(|()| {
            inner.socket.try_io(Interest::READABLE, || {
                match batch.recv(inner.socket.as_fd()) {
                    // A short batch: the queue is empty now. Saying
                    // WouldBlock makes Tokio clear the readiness it saw
                    // (a datagram arriving later raises a new edge, so
                    // none is missed); the datagrams stay in `batch`.
                    Ok(n) if n < batch.capacity() => Err(io::ErrorKind::WouldBlock.into()),
                    other => other,
                }
            })
        });
        match received {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            // ICMP errors of earlier sends (reported on some systems).
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionReset
                ) =>
            {
                debug!(local = %inner.local, error = %e, "UDP receive: ICMP error ignored");
                continue;
            }
            Err(e) => {
                warn!(local = %inner.local, error = %e, "UDP receive failed");
                // Do not spin on a persistent error.
                tokio::select! {
                    _ = ctx.shutdown.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_millis(10)) => continue,
                }
            }
        }
        for i in 0..batch.len() {
            let (data, source) = (batch.packet(i), batch.source(i));
            let Some(incoming) = take_datagram(&inner, &ctx, data, source) else {
                continue;
            };
            tokio::select! {
                biased;
                _ = ctx.shutdown.cancelled() => return,
                sent = ctx.incoming.send(incoming) => if sent.is_err() {
                    debug!(local = %inner.local, "incoming channel closed, UDP receive stops");
                    return;
                }
            }
        }
    }
}

/// The message of one received datagram, or `None` when it is dropped
/// (banned source, keep-alive, garbage; counted).
fn take_datagram(
    inner: &Inner,
    ctx: &EndpointContext,
    data: &[u8],
    source: Option<SocketAddr>,
) -> Option<Incoming> {
    let stats = &inner.stats;
    bump(&stats.bytes_received, data.len() as u64);
    // Always an IP address on an IP socket.
    let source = source?;
    if ctx.bans.as_ref().is_some_and(|b| b.drops(source.ip())) {
        return None;
    }
    let message = match classify(data) {
        Datagram::Message(m) => Bytes::copy_from_slice(m),
        Datagram::KeepAlive => {
            bump(&stats.keepalives_received, 1);
            return None;
        }
        Datagram::Garbage(why) => {
            bump(&stats.garbage_dropped, 1);
            debug!(local = %inner.local, %source, size = data.len(), why, "UDP datagram dropped");
            return None;
        }
    };
    bump(&stats.messages_received, 1);
    Some(Incoming {
        data: message,
        source,
        local: inner.local,
        transport: TransportKind::Udp,
        connection: None,
    })
}

#[cfg(test)]
mod tests;
