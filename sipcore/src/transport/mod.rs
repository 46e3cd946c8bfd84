//! SIP transports (RFC 3261 §18).
//!
//! * [`framing`] — finds message boundaries on a byte stream
//!   (`Content-Length`, CRLF keep-alives) and splits messages off the read
//!   buffer without copying.
//! * [`udp`] — one UDP socket with large kernel buffers; every datagram is
//!   one message.
//! * [`tcp`] — a listener plus a table of connections, inbound and
//!   outbound, reused by remote address; responses go back on the
//!   connection the request came in on (§18.2.2). TLS is the same with a
//!   handshake; [`tls`] holds its certificates.
//! * [`Transports`] — the front the rest of Tandem uses: UDP and TCP bound
//!   on one local address, one channel of [`Incoming`] messages, one
//!   [`Transports::send`], counters and graceful shutdown.
//!
//! All tasks started here stop when the [`CancellationToken`] of their
//! [`EndpointContext`] is cancelled ([`Transports::shutdown`] does that and
//! waits for them), or when the receiver of the incoming channel is
//! dropped.

pub mod framing;
pub mod tcp;
pub mod tls;
pub mod udp;

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::error::{Error, Result};
use crate::gate::Bans;

/// `IP_FREEBIND` / `IPV6_FREEBIND` for a socket about to bind `addr`.
pub(crate) fn set_freebind(socket: &socket2::Socket, addr: SocketAddr) -> std::io::Result<()> {
    match addr {
        SocketAddr::V4(_) => socket.set_freebind(true),
        SocketAddr::V6(_) => socket.set_freebind_ipv6(true),
    }
}

pub use framing::{Frame, Framer, MAX_MESSAGE_SIZE};
pub use tcp::{TcpConfig, TcpTransport, FD_RESERVE};
pub use tls::{ServerConfigs, ServerIdentity, TlsConfig};
pub use udp::{UdpConfig, UdpTransport};

/// The transport protocol of a message, as named in `Via` (RFC 3261 §18).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum TransportKind {
    Udp,
    Tcp,
    /// TLS over TCP (RFC 3261 §26.2): a stream like `Tcp`, with the same
    /// framing and connection table.
    Tls,
}

impl TransportKind {
    /// The transport token used in `Via` (`SIP/2.0/UDP`).
    pub fn as_str(self) -> &'static str {
        match self {
            TransportKind::Udp => "UDP",
            TransportKind::Tcp => "TCP",
            TransportKind::Tls => "TLS",
        }
    }

    /// Stream transports are reliable and need `Content-Length` framing;
    /// over them a client transaction does not retransmit (§17.1.1.2).
    pub fn is_stream(self) -> bool {
        match self {
            TransportKind::Udp => false,
            TransportKind::Tcp | TransportKind::Tls => true,
        }
    }
}

impl fmt::Display for TransportKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Identifies one stream connection for the lifetime of the process.
/// Ids are never reused, so a stale id finds no connection rather than a
/// wrong one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionId(pub u64);

impl fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "conn#{}", self.0)
    }
}

/// One message received on any transport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incoming {
    /// The exact bytes of the message. Over UDP leading CR/LF bytes are
    /// stripped; nothing else is touched.
    pub data: Bytes,
    /// The remote address the message came from.
    pub source: SocketAddr,
    /// The local address it arrived on: the bound address of the UDP socket
    /// (may be unspecified, `0.0.0.0`), or the local end of the connection.
    pub local: SocketAddr,
    pub transport: TransportKind,
    /// The connection it came on (stream transports only).
    pub connection: Option<ConnectionId>,
}

impl Incoming {
    /// Where a response to this message goes by default: the same
    /// transport, the source address and, for a stream, the same
    /// connection (RFC 3261 §18.2.2). The `Via` based rules of §18.2.2
    /// (`received`, `rport`, `maddr`) are the transaction layer's business.
    pub fn reply_target(&self) -> Target {
        Target {
            transport: self.transport,
            addr: self.source,
            connection: self.connection,
        }
    }
}

/// Where [`Transports::send`] sends a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Target {
    pub transport: TransportKind,
    /// The remote address.
    pub addr: SocketAddr,
    /// Stream transports: send on exactly this connection. If it is gone,
    /// the send fails with [`Error::NoConnection`] and the caller decides
    /// whether to send to an address instead (§18.2.2 says a response then
    /// goes to the `Via` sent-by port, which the caller knows, not us).
    /// `None`: reuse any open connection to `addr`, or open one.
    pub connection: Option<ConnectionId>,
}

impl Target {
    pub fn udp(addr: SocketAddr) -> Self {
        Target {
            transport: TransportKind::Udp,
            addr,
            connection: None,
        }
    }

    pub fn tcp(addr: SocketAddr) -> Self {
        Target {
            transport: TransportKind::Tcp,
            addr,
            connection: None,
        }
    }

    pub fn tls(addr: SocketAddr) -> Self {
        Target {
            transport: TransportKind::Tls,
            addr,
            connection: None,
        }
    }

    pub fn with_connection(self, connection: ConnectionId) -> Self {
        Target {
            connection: Some(connection),
            ..self
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.transport, self.addr)?;
        if let Some(c) = self.connection {
            write!(f, " ({c})")?;
        }
        Ok(())
    }
}

/// What a transport endpoint needs from its owner: where to deliver
/// messages, when to stop, and a tracker for the tasks it spawns.
#[derive(Debug, Clone)]
pub struct EndpointContext {
    pub incoming: mpsc::Sender<Incoming>,
    /// Sources whose datagrams are dropped as soon as they are read
    /// (see [`crate::gate::Bans`]).
    pub bans: Option<Arc<Bans>>,
    pub shutdown: CancellationToken,
    pub tasks: TaskTracker,
}

/// Counters of one transport endpoint, shared with its tasks.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub messages_received: AtomicU64,
    pub bytes_received: AtomicU64,
    pub messages_sent: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub keepalives_received: AtomicU64,
    pub garbage_dropped: AtomicU64,
    pub framing_errors: AtomicU64,
    pub send_errors: AtomicU64,
    pub send_calls: AtomicU64,
    pub connections_opened: AtomicU64,
    pub connections_closed: AtomicU64,
    pub connections_rejected: AtomicU64,
    pub connections_rejected_per_ip: AtomicU64,
    pub closed_first_message_timeout: AtomicU64,
    pub closed_message_timeout: AtomicU64,
    pub closed_idle: AtomicU64,
    pub accept_errors: AtomicU64,
    pub handshake_failures: AtomicU64,
}

/// Add `n` to a counter. Relaxed: counters are statistics, not
/// synchronisation.
pub(crate) fn bump(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

impl Counters {
    pub(crate) fn snapshot(&self) -> StatsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        StatsSnapshot {
            messages_received: get(&self.messages_received),
            bytes_received: get(&self.bytes_received),
            messages_sent: get(&self.messages_sent),
            bytes_sent: get(&self.bytes_sent),
            keepalives_received: get(&self.keepalives_received),
            garbage_dropped: get(&self.garbage_dropped),
            framing_errors: get(&self.framing_errors),
            send_errors: get(&self.send_errors),
            send_calls: get(&self.send_calls),
            connections_opened: get(&self.connections_opened),
            connections_closed: get(&self.connections_closed),
            connections_rejected: get(&self.connections_rejected),
            connections_rejected_per_ip: get(&self.connections_rejected_per_ip),
            closed_first_message_timeout: get(&self.closed_first_message_timeout),
            closed_message_timeout: get(&self.closed_message_timeout),
            closed_idle: get(&self.closed_idle),
            accept_errors: get(&self.accept_errors),
            handshake_failures: get(&self.handshake_failures),
        }
    }
}

/// A point-in-time copy of one endpoint's counters. All are monotonic
/// totals since the endpoint was bound (Prometheus `_total` counters).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Messages handed up on the incoming channel.
    pub messages_received: u64,
    /// Bytes read off the wire, including keep-alives and garbage.
    pub bytes_received: u64,
    /// Messages written successfully.
    pub messages_sent: u64,
    /// Bytes written, including keep-alive pongs.
    pub bytes_sent: u64,
    /// CRLF keep-alives received (UDP datagrams, or stream pings).
    pub keepalives_received: u64,
    /// UDP datagrams dropped as empty, too large or not SIP.
    pub garbage_dropped: u64,
    /// Streams that could not be framed (each closed its connection).
    pub framing_errors: u64,
    /// Sends that failed (connect, write, or no such connection).
    pub send_errors: u64,
    /// UDP system calls that wrote: one per `sendto`, one per batch of
    /// `sendmmsg` (so fewer than `messages_sent` when batches form).
    /// Not counted for streams.
    pub send_calls: u64,
    pub connections_opened: u64,
    pub connections_closed: u64,
    /// Inbound connections refused because the table was full.
    pub connections_rejected: u64,
    /// Inbound connections refused because their source address (IPv6:
    /// its /64) already had `TcpConfig::max_connections_per_ip` open.
    pub connections_rejected_per_ip: u64,
    /// Inbound connections closed because no complete message arrived
    /// within `TcpConfig::first_message_timeout` of the accept.
    pub closed_first_message_timeout: u64,
    /// Connections closed because a message was not complete within
    /// `TcpConfig::message_timeout` of its first byte (slowloris).
    pub closed_message_timeout: u64,
    /// Connections closed after `TcpConfig::idle_timeout` without traffic.
    pub closed_idle: u64,
    /// `accept(2)` failures (EMFILE, ENFILE, ENOBUFS, …); each backs the
    /// accept loop off.
    pub accept_errors: u64,
    /// TLS handshakes that failed or did not end in time (each closed its
    /// connection).
    pub handshake_failures: u64,
}

/// Lets a log line through at most once per `interval` and counts the ones
/// held back, so that a flood (of refused connections, of accept errors)
/// costs one line per interval, not one per event.
#[derive(Debug)]
pub(crate) struct LogLimiter {
    interval: std::time::Duration,
    last: Option<tokio::time::Instant>,
    suppressed: u64,
}

impl LogLimiter {
    pub(crate) fn new(interval: std::time::Duration) -> Self {
        LogLimiter {
            interval,
            last: None,
            suppressed: 0,
        }
    }

    /// `Some(n)`: log now, mentioning the `n` events held back since the
    /// last line. `None`: stay quiet (the event is counted).
    pub(crate) fn allow(&mut self, now: tokio::time::Instant) -> Option<u64> {
        match self.last {
            Some(last) if now.duration_since(last) < self.interval => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

impl StatsSnapshot {
    /// Connections open right now.
    pub fn connections_open(&self) -> u64 {
        self.connections_opened
            .saturating_sub(self.connections_closed)
    }

    /// Sums another endpoint's counters into these (a sharded node's
    /// endpoints). Destructured without `..`: a new field must be summed.
    pub fn add(&mut self, other: &StatsSnapshot) {
        let StatsSnapshot {
            messages_received,
            bytes_received,
            messages_sent,
            bytes_sent,
            keepalives_received,
            garbage_dropped,
            framing_errors,
            send_errors,
            send_calls,
            connections_opened,
            connections_closed,
            connections_rejected,
            connections_rejected_per_ip,
            closed_first_message_timeout,
            closed_message_timeout,
            closed_idle,
            accept_errors,
            handshake_failures,
        } = other;
        let sum = |a: &mut u64, b: &u64| *a = a.saturating_add(*b);
        sum(&mut self.messages_received, messages_received);
        sum(&mut self.bytes_received, bytes_received);
        sum(&mut self.messages_sent, messages_sent);
        sum(&mut self.bytes_sent, bytes_sent);
        sum(&mut self.keepalives_received, keepalives_received);
        sum(&mut self.garbage_dropped, garbage_dropped);
        sum(&mut self.framing_errors, framing_errors);
        sum(&mut self.send_errors, send_errors);
        sum(&mut self.send_calls, send_calls);
        sum(&mut self.connections_opened, connections_opened);
        sum(&mut self.connections_closed, connections_closed);
        sum(&mut self.connections_rejected, connections_rejected);
        sum(
            &mut self.connections_rejected_per_ip,
            connections_rejected_per_ip,
        );
        sum(
            &mut self.closed_first_message_timeout,
            closed_first_message_timeout,
        );
        sum(&mut self.closed_message_timeout, closed_message_timeout);
        sum(&mut self.closed_idle, closed_idle);
        sum(&mut self.accept_errors, accept_errors);
        sum(&mut self.handshake_failures, handshake_failures);
    }
}

impl TransportStats {
    /// See [`StatsSnapshot::add`].
    pub fn add(&mut self, other: &TransportStats) {
        let TransportStats { udp, tcp, tls } = other;
        self.udp.add(udp);
        self.tcp.add(tcp);
        self.tls.add(tls);
    }
}

/// Counters of a [`Transports`], per transport.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TransportStats {
    pub udp: StatsSnapshot,
    pub tcp: StatsSnapshot,
    /// All zero without TLS.
    pub tls: StatsSnapshot,
}

/// Configuration of a [`Transports`].
#[derive(Debug, Clone)]
pub struct TransportConfig {
    pub udp: UdpConfig,
    pub tcp: TcpConfig,
    /// TLS on its own port of the same IP (limits as `tcp`); `None`: no
    /// TLS.
    pub tls: Option<TlsConfig>,
    /// Capacity of the incoming channel. When it is full the receive tasks
    /// wait: UDP then queues in the kernel buffer (and drops there), TCP
    /// stops reading (flow control pushes back on the peer).
    pub incoming_queue: usize,
    /// Banned sources, shared with the endpoint's gate.
    pub bans: Option<Arc<Bans>>,
    /// Called with the UDP socket and the TCP listener once both are
    /// bound, before anything is received on them; an error fails the
    /// bind. A sharded proxy (`UdpConfig::reuse_port`) attaches its
    /// steering program and registers each shard's sockets here.
    pub on_bind: Option<BindHook>,
}

/// See [`TransportConfig::on_bind`].
#[derive(Clone)]
pub struct BindHook(
    #[allow(clippy::type_complexity)]
    pub  Arc<
        dyn Fn(TransportKind, std::os::fd::BorrowedFd<'_>) -> std::io::Result<()> + Send + Sync,
    >,
);

impl fmt::Debug for BindHook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BindHook")
    }
}

impl Default for TransportConfig {
    fn default() -> Self {
        TransportConfig {
            udp: UdpConfig::default(),
            tcp: TcpConfig::default(),
            tls: None,
            incoming_queue: 4096,
            bans: None,
            on_bind: None,
        }
    }
}

/// UDP and TCP bound on one local address (same IP, same port), with one
/// channel of incoming messages.
///
/// Dropping it stops all its tasks (without waiting);
/// [`Transports::shutdown`] stops them and waits.
#[derive(Debug)]
pub struct Transports {
    udp: UdpTransport,
    tcp: TcpTransport,
    tls: Option<TcpTransport>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

impl Transports {
    /// Bind UDP and TCP on `local`. With port 0 both get the same
    /// ephemeral port. Must be called inside a Tokio runtime.
    pub fn bind(
        local: SocketAddr,
        config: &TransportConfig,
    ) -> Result<(Self, mpsc::Receiver<Incoming>)> {
        let (tx, rx) = mpsc::channel(config.incoming_queue.max(1));
        let ctx = EndpointContext {
            incoming: tx,
            bans: config.bans.clone(),
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
        };
        // With port 0 the port the kernel picks for UDP may be taken for
        // TCP: try a few times.
        let attempts = if local.port() == 0 { 16 } else { 1 };
        let mut attempt = 0;
        let (udp_socket, listener) = loop {
            attempt += 1;
            let udp_socket = udp::bind_socket(local, &config.udp)?;
            let addr = udp_socket.local;
            match tcp::bind_listener(addr, &config.tcp) {
                Ok(listener) => break (udp_socket, listener),
                Err(Error::Io { source, .. })
                    if attempt < attempts && source.kind() == std::io::ErrorKind::AddrInUse => {}
                Err(e) => return Err(e),
            }
        };
        if let Some(BindHook(hook)) = &config.on_bind {
            use std::os::fd::AsFd;
            let local = udp_socket.local;
            hook(TransportKind::Udp, udp_socket.as_fd())
                .map_err(|e| Error::io(format!("UDP steering on {local}"), e))?;
            hook(TransportKind::Tcp, listener.as_fd())
                .map_err(|e| Error::io(format!("TCP steering on {local}"), e))?;
        }
        let udp = UdpTransport::from_socket(udp_socket, ctx.clone())?;
        let tcp = TcpTransport::from_listener(listener, config.tcp.clone(), ctx.clone())?;
        let tls = config
            .tls
            .as_ref()
            .map(|tls| {
                let addr = SocketAddr::new(udp.local_addr().ip(), tls.port);
                TcpTransport::bind_tls(addr, config.tcp.clone(), tls.clone(), ctx.clone())
            })
            .transpose()?;
        let transports = Transports {
            udp,
            tcp,
            tls,
            shutdown: ctx.shutdown,
            tasks: ctx.tasks,
        };
        Ok((transports, rx))
    }

    /// The bound address (UDP and TCP share it).
    pub fn local_addr(&self) -> SocketAddr {
        self.udp.local_addr()
    }

    pub fn udp(&self) -> &UdpTransport {
        &self.udp
    }

    pub fn tcp(&self) -> &TcpTransport {
        &self.tcp
    }

    /// The TLS transport, when configured.
    pub fn tls(&self) -> Option<&TcpTransport> {
        self.tls.as_ref()
    }

    /// Send one message. Over TCP this reuses or opens a connection, see
    /// [`Target::connection`].
    pub async fn send(&self, target: &Target, data: Bytes) -> Result<()> {
        self.send_from(target, data).await.map(drop)
    }

    /// [`Transports::send`], returning the local address the message left
    /// from: the UDP socket's bound address, or the local end of the
    /// connection used.
    pub async fn send_from(&self, target: &Target, data: Bytes) -> Result<SocketAddr> {
        match target.transport {
            TransportKind::Udp => self
                .udp
                .send_to(&data, target.addr)
                .await
                .map(|()| self.udp.local_addr()),
            TransportKind::Tcp => self
                .tcp
                .send_via(target.addr, target.connection, &data)
                .await
                .map(|(_, local)| local),
            TransportKind::Tls => match &self.tls {
                Some(tls) => tls
                    .send_via(target.addr, target.connection, &data)
                    .await
                    .map(|(_, local)| local),
                None => {
                    let e = std::io::Error::new(
                        std::io::ErrorKind::Unsupported,
                        "TLS is not configured",
                    );
                    Err(Error::io(format!("TLS send to {}", target.addr), e))
                }
            },
        }
    }

    pub fn stats(&self) -> TransportStats {
        TransportStats {
            udp: self.udp.stats(),
            tcp: self.tcp.stats(),
            tls: self.tls.as_ref().map(|t| t.stats()).unwrap_or_default(),
        }
    }

    /// The token that stops every task of these transports; cancel it from
    /// a process-wide shutdown, or link it with `child_token`.
    pub fn shutdown_token(&self) -> &CancellationToken {
        &self.shutdown
    }

    /// Stop receiving, close every connection and wait until all tasks have
    /// ended. Sends fail afterwards. Callers that need a bound wrap it in
    /// `tokio::time::timeout`; a connection stuck in a write ends at the
    /// latest after [`TcpConfig::write_timeout`].
    pub async fn shutdown(&self) {
        self.shutdown.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }
}

impl Drop for Transports {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

#[cfg(test)]
mod test_util;
#[cfg(test)]
mod tests;
