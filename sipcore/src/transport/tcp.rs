//! The stream transports, TCP and TLS (RFC 3261 §18, §26.2): a listener
//! and a table of connections. TLS is the same transport with a handshake
//! after `accept` (in the connection's own task, within the first-message
//! deadline, so that a slow handshake blocks nobody) and after `connect`
//! (within the connect timeout); see [`super::tls`].
//!
//! Every connection, accepted or opened by us, is in one table, keyed by
//! [`ConnectionId`] and by remote address. Each has one read task that
//! frames the stream ([`Framer`]), hands messages up, answers CRLF pings
//! and closes the connection when it is idle, when the stream cannot be
//! framed, when the peer closes, or on shutdown. The read task is the only
//! place that removes a connection from the table. The write half sits
//! behind an async mutex so that any task can write whole messages.
//!
//! Sending to an address reuses any open connection to that address —
//! including one the peer opened to us — and otherwise connects, from the
//! bound IP when it is not a wildcard (so that a floating IP is the source),
//! within [`TcpConfig::connect_timeout`]. Concurrent sends to the same new
//! address open one connection, not several.
//!
//! Defences against a peer that holds connections open for nothing: a cap
//! on the table and one per source address (inbound), a deadline for the
//! first complete message on an accepted connection, and one for each
//! message once its first byte arrived (a "slowloris" peer trickling bytes
//! keeps the idle timer alive but not the message deadline). Refusals and
//! accept errors are counted and logged at most once a second; a failing
//! `accept` backs off instead of spinning.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::BytesMut;
use rustls::pki_types::ServerName;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{mpsc, Notify};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

use super::framing::{Frame, Framer, MAX_MESSAGE_SIZE, PONG};
use super::tls::TlsConfig;
use super::{
    bump, ConnectionId, Counters, EndpointContext, Incoming, LogLimiter, StatsSnapshot,
    TransportKind,
};
use crate::error::{Error, Result};

/// Read buffer growth step.
const READ_CHUNK: usize = 8 * 1024;
const LISTEN_BACKLOG: i32 = 1024;
/// First and longest pause of the accept loop after a failed `accept`.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// Refusals and accept errors are logged at most this often.
const LOG_INTERVAL: Duration = Duration::from_secs(1);
/// File descriptors kept free of TCP connections for everything else
/// (listeners, the HA link, the admin API, DNS, log files, epoll):
/// see [`TcpConfig::cap_to_fd_limit`].
pub const FD_RESERVE: u64 = 256;

static NEXT_CONNECTION_ID: AtomicU64 = AtomicU64::new(1);

/// The two halves of a connection's stream: a TCP socket's, or a TLS
/// session's over one.
type StreamReader = Box<dyn AsyncRead + Send + Unpin>;
type StreamWriter = Box<dyn AsyncWrite + Send + Unpin>;

/// Settings of a TCP endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpConfig {
    /// A connection with nothing read or written for this long is closed.
    /// CRLF keep-alives count as traffic; RFC 5626 clients ping every
    /// 95–120 s, so keep this above that.
    pub idle_timeout: Duration,
    /// Deadline for opening an outgoing connection.
    pub connect_timeout: Duration,
    /// Deadline for writing one message (including waiting for other
    /// writers); on expiry the connection is closed.
    pub write_timeout: Duration,
    /// Inbound connections beyond this many open ones are refused. Keep
    /// it below the open-file limit ([`TcpConfig::cap_to_fd_limit`]).
    pub max_connections: usize,
    /// Inbound connections from one source IP (IPv6: one /64) beyond this
    /// many open ones are refused, so one host cannot fill the table.
    pub max_connections_per_ip: usize,
    /// An accepted connection must deliver its first complete message
    /// within this long, or it is closed (a connection that sends nothing
    /// holds a descriptor for nothing).
    pub first_message_timeout: Duration,
    /// Once the first byte of a message arrived, the whole message
    /// (headers and body) must arrive within this long, or the connection
    /// is closed: a peer sending a byte a second is closed here.
    pub message_timeout: Duration,
    /// `SO_REUSEADDR` on the listener, so a restart can bind while old
    /// connections linger in TIME_WAIT.
    pub reuse_address: bool,
    /// `SO_REUSEPORT` on the listener (see `UdpConfig::reuse_port`).
    pub reuse_port: bool,
    /// `IP_FREEBIND` on the listener (see `UdpConfig::freebind`).
    pub freebind: bool,
}

impl Default for TcpConfig {
    fn default() -> Self {
        TcpConfig {
            idle_timeout: Duration::from_secs(300),
            connect_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(10),
            max_connections: 16 * 1024,
            max_connections_per_ip: 64,
            first_message_timeout: Duration::from_secs(10),
            message_timeout: Duration::from_secs(10),
            reuse_address: true,
            reuse_port: false,
            freebind: false,
        }
    }
}

impl TcpConfig {
    /// Lower [`TcpConfig::max_connections`] so that the connections fit
    /// in `open_files` (the process's `RLIMIT_NOFILE`) after `reserved`
    /// descriptors for other users (the media relay's sockets) and
    /// [`FD_RESERVE`]. Running out of descriptors fails every `socket` and
    /// `accept` of the process, the relay's included; a full table only
    /// refuses TCP peers. Returns the new cap (at least 1).
    pub fn cap_to_fd_limit(&mut self, open_files: u64, reserved: u64) -> usize {
        let room = open_files.saturating_sub(reserved.saturating_add(FD_RESERVE));
        let room = usize::try_from(room).unwrap_or(usize::MAX).max(1);
        self.max_connections = self.max_connections.min(room);
        self.max_connections
    }
}

/// The key of the per-source cap: the IP, or for IPv6 its /64 (one
/// subscriber usually gets a whole /64, so per-address would not limit).
fn source_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(bits.into())
        }
    }
}

/// Create, configure, bind and listen a TCP socket.
pub(crate) fn bind_listener(addr: SocketAddr, config: &TcpConfig) -> Result<std::net::TcpListener> {
    let ctx = |what: &str| format!("TCP {what} on {addr}");
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))
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
        .set_nonblocking(true)
        .map_err(|e| Error::io(ctx("O_NONBLOCK"), e))?;
    socket
        .bind(&addr.into())
        .map_err(|e| Error::io(ctx("bind"), e))?;
    socket
        .listen(LISTEN_BACKLOG)
        .map_err(|e| Error::io(ctx("listen"), e))?;
    Ok(socket.into())
}

/// A listening TCP endpoint and its connections. Cheap to clone.
#[derive(Debug, Clone)]
pub struct TcpTransport {
    inner: Arc<Inner>,
}

struct Inner {
    local: SocketAddr,
    config: TcpConfig,
    /// `Tcp`, or `Tls` with `tls` set.
    kind: TransportKind,
    tls: Option<TlsConfig>,
    /// Names to verify (and send as SNI) for TLS peers, by address; a peer
    /// not here is verified by its IP address.
    server_names: Mutex<HashMap<SocketAddr, ServerName<'static>>>,
    /// Weak, so that the incoming channel ends once every task has ended:
    /// the accept loop and each connection task hold a strong sender.
    incoming: mpsc::WeakSender<Incoming>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
    table: Mutex<Table>,
    /// One lock per address being connected to, so that concurrent sends
    /// to a new address share one connection.
    connecting: Mutex<HashMap<SocketAddr, Arc<tokio::sync::Mutex<()>>>>,
    stats: Counters,
    /// Reference point of [`Connection::last_activity`].
    epoch: Instant,
    /// Framing failures are a stranger's doing: logged at most once a
    /// second.
    framing_log: Mutex<LogLimiter>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner")
            .field("local", &self.local)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Default)]
struct Table {
    by_id: HashMap<ConnectionId, Arc<Connection>>,
    /// Connections per remote address, oldest first; the newest open one
    /// is used. Almost always one.
    by_addr: HashMap<SocketAddr, Vec<ConnectionId>>,
    /// Open inbound connections per [`source_key`]; no entry at zero, so
    /// it holds at most `max_connections` entries.
    inbound_by_source: HashMap<IpAddr, usize>,
    /// Accepted connections still in their TLS handshake: they hold a
    /// descriptor and count toward both caps.
    handshaking: usize,
}

impl Table {
    /// One more inbound connection from `peer`'s source.
    fn hold_source(&mut self, peer: SocketAddr) {
        *self
            .inbound_by_source
            .entry(source_key(peer.ip()))
            .or_default() += 1;
    }

    /// One fewer; the entry goes at zero.
    fn release_source(&mut self, peer: SocketAddr) {
        let key = source_key(peer.ip());
        if let Some(n) = self.inbound_by_source.get_mut(&key) {
            *n -= 1;
            if *n == 0 {
                self.inbound_by_source.remove(&key);
            }
        }
    }
}

/// Why an inbound connection is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    TableFull,
    PerSourceLimit,
}

struct Connection {
    id: ConnectionId,
    peer: SocketAddr,
    local: SocketAddr,
    /// Accepted by us (not opened by us): counted per source and held to
    /// the first-message deadline.
    inbound: bool,
    writer: tokio::sync::Mutex<StreamWriter>,
    /// Milliseconds since [`Inner::epoch`] of the last read or write.
    last_activity: AtomicU64,
    closed: AtomicBool,
    /// Wakes the read task to close the connection.
    close: Notify,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("id", &self.id)
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

/// Why a connection's read task ended.
#[derive(Debug)]
enum CloseReason {
    PeerClosed { unframed: usize },
    Idle,
    FirstMessageTimeout,
    MessageTimeout,
    Shutdown,
    Requested,
    ChannelClosed,
    Framing(Error),
    Read(io::Error),
    Write(io::Error),
}

impl TcpTransport {
    /// Bind and listen on `addr`, start accepting. Must be called inside a
    /// Tokio runtime.
    pub fn bind(addr: SocketAddr, config: TcpConfig, ctx: EndpointContext) -> Result<Self> {
        let listener = bind_listener(addr, &config)?;
        Self::from_listener(listener, config, ctx)
    }

    pub(crate) fn from_listener(
        listener: std::net::TcpListener,
        config: TcpConfig,
        ctx: EndpointContext,
    ) -> Result<Self> {
        let local = listener
            .local_addr()
            .map_err(|e| Error::io("TCP listener address", e))?;
        Self::start(Some(listener), local, config, None, ctx)
    }

    /// A TLS endpoint: listening on `addr` when `tls.server` is set,
    /// otherwise outbound only (connections from the IP of `addr`).
    pub fn bind_tls(
        addr: SocketAddr,
        config: TcpConfig,
        tls: TlsConfig,
        ctx: EndpointContext,
    ) -> Result<Self> {
        let (listener, local) = match tls.server {
            Some(_) => {
                let listener = bind_listener(addr, &config)?;
                let local = listener
                    .local_addr()
                    .map_err(|e| Error::io("TLS listener address", e))?;
                (Some(listener), local)
            }
            None => (None, addr),
        };
        Self::start(listener, local, config, Some(tls), ctx)
    }

    fn start(
        listener: Option<std::net::TcpListener>,
        local: SocketAddr,
        config: TcpConfig,
        tls: Option<TlsConfig>,
        ctx: EndpointContext,
    ) -> Result<Self> {
        let listener = listener
            .map(TcpListener::from_std)
            .transpose()
            .map_err(|e| Error::io(format!("TCP register {local}"), e))?;
        let kind = match tls {
            Some(_) => TransportKind::Tls,
            None => TransportKind::Tcp,
        };
        let inner = Arc::new(Inner {
            local,
            config,
            kind,
            tls,
            server_names: Mutex::default(),
            incoming: ctx.incoming.downgrade(),
            shutdown: ctx.shutdown.clone(),
            tasks: ctx.tasks.clone(),
            table: Mutex::default(),
            connecting: Mutex::default(),
            stats: Counters::default(),
            epoch: Instant::now(),
            framing_log: Mutex::new(LogLimiter::new(LOG_INTERVAL)),
        });
        if let Some(listener) = listener {
            ctx.tasks
                .spawn(accept_loop(inner.clone(), listener, ctx.incoming));
        }
        Ok(TcpTransport { inner })
    }

    /// The listening address.
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local
    }

    /// `Tcp` or `Tls`.
    pub fn kind(&self) -> TransportKind {
        self.inner.kind
    }

    /// TLS: verify the server at `addr` as `name` (a DNS name or IP
    /// address, also sent as SNI) instead of by its IP address.
    pub fn set_server_name(&self, addr: SocketAddr, name: &str) -> Result<()> {
        let name = ServerName::try_from(name.to_owned())
            .map_err(|e| Error::io(format!("TLS server name {name:?}"), io::Error::other(e)))?;
        self.inner
            .server_names
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(addr, name);
        Ok(())
    }

    /// Write one message.
    ///
    /// With `connection`, exactly that connection is used; if it is gone
    /// the result is [`Error::NoConnection`]. Without, an open connection to
    /// `addr` is reused or a new one is opened. Returns the connection
    /// used. A failed write closes the connection.
    pub async fn send(
        &self,
        addr: SocketAddr,
        connection: Option<ConnectionId>,
        data: &[u8],
    ) -> Result<ConnectionId> {
        self.send_via(addr, connection, data)
            .await
            .map(|(id, _)| id)
    }

    /// [`TcpTransport::send`], returning also the local address of the
    /// connection used.
    pub async fn send_via(
        &self,
        addr: SocketAddr,
        connection: Option<ConnectionId>,
        data: &[u8],
    ) -> Result<(ConnectionId, SocketAddr)> {
        let result = self.try_send(addr, connection, data).await;
        let stats = &self.inner.stats;
        match &result {
            Ok(_) => {
                bump(&stats.messages_sent, 1);
                bump(&stats.bytes_sent, data.len() as u64);
            }
            Err(_) => bump(&stats.send_errors, 1),
        }
        result
    }

    async fn try_send(
        &self,
        addr: SocketAddr,
        connection: Option<ConnectionId>,
        data: &[u8],
    ) -> Result<(ConnectionId, SocketAddr)> {
        if self.inner.shutdown.is_cancelled() {
            let e = io::Error::new(io::ErrorKind::NotConnected, "transport is shut down");
            return Err(Error::io(format!("TCP send to {addr}"), e));
        }
        if data.len() > MAX_MESSAGE_SIZE {
            return Err(Error::TooLarge {
                size: data.len(),
                limit: MAX_MESSAGE_SIZE,
            });
        }
        let conn = match connection {
            Some(id) => self.inner.get(id).ok_or(Error::NoConnection(addr))?,
            None => self.inner.connection_to(addr).await?,
        };
        self.inner
            .write(&conn, data)
            .await
            .map_err(|e| Error::io(format!("TCP send to {} ({})", conn.peer, conn.id), e))?;
        Ok((conn.id, conn.local))
    }

    /// Close a connection. Returns whether it was open. The read task
    /// removes it from the table shortly after.
    pub fn close(&self, id: ConnectionId) -> bool {
        match self.inner.get(id) {
            Some(conn) => {
                conn.request_close();
                true
            }
            None => false,
        }
    }

    /// The open connection to use for `addr`, if there is one.
    pub fn connection_for(&self, addr: SocketAddr) -> Option<ConnectionId> {
        self.inner.lookup_addr(addr).map(|c| c.id)
    }

    /// The remote address of an open connection.
    pub fn peer_addr(&self, id: ConnectionId) -> Option<SocketAddr> {
        self.inner.get(id).map(|c| c.peer)
    }

    /// Number of connections in the table.
    pub fn connection_count(&self) -> usize {
        self.inner.table().by_id.len()
    }

    pub fn stats(&self) -> StatsSnapshot {
        self.inner.stats.snapshot()
    }
}

impl Connection {
    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    fn request_close(&self) {
        self.closed.store(true, Ordering::Release);
        // notify_one keeps a permit if the read task is not waiting now.
        self.close.notify_one();
    }
}

impl Inner {
    fn table(&self) -> MutexGuard<'_, Table> {
        // A panic while holding the lock leaves a consistent table (every
        // update is a single insert or remove), so poisoning is ignored.
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn get(&self, id: ConnectionId) -> Option<Arc<Connection>> {
        self.table()
            .by_id
            .get(&id)
            .filter(|c| !c.is_closed())
            .cloned()
    }

    fn lookup_addr(&self, addr: SocketAddr) -> Option<Arc<Connection>> {
        let table = self.table();
        let ids = table.by_addr.get(&addr)?;
        ids.iter()
            .rev()
            .filter_map(|id| table.by_id.get(id))
            .find(|c| !c.is_closed())
            .cloned()
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn touch(&self, conn: &Connection) {
        conn.last_activity.store(self.now_ms(), Ordering::Relaxed);
    }

    fn idle_deadline(&self, conn: &Connection) -> Instant {
        self.epoch
            + Duration::from_millis(conn.last_activity.load(Ordering::Relaxed))
            + self.config.idle_timeout
    }

    /// Write all of `data` within the write timeout; on failure the
    /// connection is closed.
    async fn write(&self, conn: &Connection, data: &[u8]) -> io::Result<()> {
        let result = tokio::time::timeout(self.config.write_timeout, async {
            let mut writer = conn.writer.lock().await;
            writer.write_all(data).await?;
            // A TLS session may hold the last record back; TCP's flush is
            // a no-op.
            writer.flush().await
        })
        .await
        .unwrap_or_else(|_| {
            let msg = format!("write not done within {:?}", self.config.write_timeout);
            Err(io::Error::new(io::ErrorKind::TimedOut, msg))
        });
        match &result {
            Ok(()) => self.touch(conn),
            Err(e) => {
                debug!(peer = %conn.peer, conn = %conn.id, error = %e, "TCP write failed, closing");
                conn.request_close();
            }
        }
        result
    }

    /// An open connection to `addr`, reused or newly opened.
    async fn connection_to(self: &Arc<Self>, addr: SocketAddr) -> Result<Arc<Connection>> {
        if let Some(conn) = self.lookup_addr(addr) {
            return Ok(conn);
        }
        let lock = {
            let mut connecting = self.connecting.lock().unwrap_or_else(|p| p.into_inner());
            connecting.entry(addr).or_default().clone()
        };
        let result = {
            let _guard = lock.lock().await;
            match self.lookup_addr(addr) {
                Some(conn) => Ok(conn),
                None => self.connect(addr).await,
            }
        };
        // Drop the per-address lock when nobody else holds it. Counting and
        // dropping under the map's mutex makes the last holder see 2.
        let mut connecting = self.connecting.lock().unwrap_or_else(|p| p.into_inner());
        if Arc::strong_count(&lock) <= 2 {
            connecting.remove(&addr);
        }
        drop(lock);
        drop(connecting);
        result
    }

    async fn connect(self: &Arc<Self>, addr: SocketAddr) -> Result<Arc<Connection>> {
        let context = || format!("TCP connect from {} to {addr}", self.local.ip());
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        }
        .map_err(|e| Error::io(context(), e))?;
        let ip = self.local.ip();
        if !ip.is_unspecified() && ip.is_ipv4() == addr.is_ipv4() {
            socket
                .bind(SocketAddr::new(ip, 0))
                .map_err(|e| Error::io(context(), e))?;
        }
        let timeout = self.config.connect_timeout;
        let stream = tokio::select! {
            biased;
            _ = self.shutdown.cancelled() => {
                let e = io::Error::new(io::ErrorKind::NotConnected, "transport is shut down");
                return Err(Error::io(context(), e));
            }
            r = tokio::time::timeout(timeout, socket.connect(addr)) => match r {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => return Err(Error::io(context(), e)),
                Err(_) => {
                    let e = io::Error::new(io::ErrorKind::TimedOut, format!("no connection within {timeout:?}"));
                    return Err(Error::io(context(), e));
                }
            },
        };
        let local = stream_local(&stream).map_err(|e| Error::io(context(), e))?;
        debug!(peer = %addr, kind = %self.kind, "connection opened");
        let (reader, writer) = match &self.tls {
            None => split(stream).map_err(|e| Error::io(context(), e))?,
            Some(tls) => {
                let client = tls.client.clone().ok_or_else(|| {
                    let e =
                        io::Error::new(io::ErrorKind::Unsupported, "no TLS client configuration");
                    Error::io(context(), e)
                })?;
                let name = self
                    .server_names
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(&addr)
                    .cloned()
                    .unwrap_or_else(|| ServerName::from(addr.ip()));
                let connector = tokio_rustls::TlsConnector::from(client);
                let tls = tokio::select! {
                    biased;
                    _ = self.shutdown.cancelled() => {
                        let e = io::Error::new(io::ErrorKind::NotConnected, "transport is shut down");
                        return Err(Error::io(context(), e));
                    }
                    r = tokio::time::timeout(timeout, connector.connect(name, stream)) => match r {
                        Ok(Ok(tls)) => tls,
                        Ok(Err(e)) => {
                            bump(&self.stats.handshake_failures, 1);
                            return Err(Error::io(format!("{} (TLS handshake)", context()), e));
                        }
                        Err(_) => {
                            bump(&self.stats.handshake_failures, 1);
                            let e = io::Error::new(io::ErrorKind::TimedOut, format!("no TLS handshake within {timeout:?}"));
                            return Err(Error::io(context(), e));
                        }
                    },
                };
                let (r, w) = tokio::io::split(tls);
                (Box::new(r) as StreamReader, Box::new(w) as StreamWriter)
            }
        };
        self.register(reader, writer, local, addr, false)
            .map_err(|e| Error::io(context(), e))
    }

    /// Put a new connection in the table and start its read task.
    fn register(
        self: &Arc<Self>,
        reader: StreamReader,
        writer: StreamWriter,
        local: SocketAddr,
        peer: SocketAddr,
        inbound: bool,
    ) -> io::Result<Arc<Connection>> {
        let incoming = self
            .incoming
            .upgrade()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "transport is shut down"))?;
        let conn = Arc::new(Connection {
            id: ConnectionId(NEXT_CONNECTION_ID.fetch_add(1, Ordering::Relaxed)),
            peer,
            local,
            inbound,
            writer: tokio::sync::Mutex::new(writer),
            last_activity: AtomicU64::new(self.now_ms()),
            closed: AtomicBool::new(false),
            close: Notify::new(),
        });
        {
            let mut table = self.table();
            table.by_id.insert(conn.id, conn.clone());
            table.by_addr.entry(peer).or_default().push(conn.id);
            if inbound {
                table.hold_source(peer);
            }
        }
        bump(&self.stats.connections_opened, 1);
        self.tasks
            .spawn(run_connection(self.clone(), conn.clone(), reader, incoming));
        Ok(conn)
    }

    /// Whether a new inbound connection from `peer` must be refused.
    fn refusal(&self, peer: SocketAddr) -> Option<Refusal> {
        let table = self.table();
        if table.by_id.len() + table.handshaking >= self.config.max_connections {
            return Some(Refusal::TableFull);
        }
        let from_source = table
            .inbound_by_source
            .get(&source_key(peer.ip()))
            .copied()
            .unwrap_or(0);
        (from_source >= self.config.max_connections_per_ip).then_some(Refusal::PerSourceLimit)
    }

    /// Take a connection out of the table (read task only).
    fn remove(&self, conn: &Connection) {
        conn.closed.store(true, Ordering::Release);
        let mut table = self.table();
        if table.by_id.remove(&conn.id).is_some() {
            bump(&self.stats.connections_closed, 1);
            if conn.inbound {
                table.release_source(conn.peer);
            }
        }
        if let Some(ids) = table.by_addr.get_mut(&conn.peer) {
            ids.retain(|&id| id != conn.id);
            if ids.is_empty() {
                table.by_addr.remove(&conn.peer);
            }
        }
    }
}

/// `_incoming` keeps the channel open while the endpoint accepts.
async fn accept_loop(inner: Arc<Inner>, listener: TcpListener, _incoming: mpsc::Sender<Incoming>) {
    let mut refusal_log = LogLimiter::new(LOG_INTERVAL);
    let mut error_log = LogLimiter::new(LOG_INTERVAL);
    let mut backoff = ACCEPT_BACKOFF_MIN;
    loop {
        let accepted = tokio::select! {
            biased;
            _ = inner.shutdown.cancelled() => break,
            r = listener.accept() => r,
        };
        match accepted {
            Ok((stream, peer)) => {
                backoff = ACCEPT_BACKOFF_MIN;
                if let Some(refusal) = inner.refusal(peer) {
                    // Dropping the stream closes it: the cheapest answer.
                    let counter = match refusal {
                        Refusal::TableFull => &inner.stats.connections_rejected,
                        Refusal::PerSourceLimit => &inner.stats.connections_rejected_per_ip,
                    };
                    bump(counter, 1);
                    if let Some(suppressed) = refusal_log.allow(Instant::now()) {
                        warn!(%peer, local = %inner.local, reason = ?refusal,
                            limit = inner.config.max_connections,
                            per_ip_limit = inner.config.max_connections_per_ip,
                            suppressed, "TCP connection refused");
                    }
                    continue;
                }
                debug!(%peer, local = %inner.local, kind = %inner.kind, "connection accepted");
                match &inner.tls {
                    None => {
                        let setup = stream_local(&stream).and_then(|local| {
                            let (reader, writer) = split(stream)?;
                            inner.register(reader, writer, local, peer, true)
                        });
                        if let Err(e) = setup {
                            warn!(%peer, error = %e, "TCP connection setup failed");
                        }
                    }
                    Some(_) => {
                        let handshake = Handshake::start(inner.clone(), peer);
                        inner.tasks.spawn(handshake.run(stream));
                    }
                }
            }
            Err(e) => {
                // EMFILE, ENFILE, ENOBUFS, ENOMEM: the pending connection
                // stays in the backlog and accept fails again at once, so
                // wait, longer each time, until descriptors are free.
                bump(&inner.stats.accept_errors, 1);
                if let Some(suppressed) = error_log.allow(Instant::now()) {
                    warn!(local = %inner.local, error = %e, ?backoff, suppressed, "TCP accept failed, backing off");
                }
                tokio::select! {
                    _ = inner.shutdown.cancelled() => break,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
            }
        }
    }
}

/// `TCP_NODELAY` (small messages must not wait for Nagle) and the local
/// address of a new connection.
fn stream_local(stream: &TcpStream) -> io::Result<SocketAddr> {
    stream.set_nodelay(true)?;
    stream.local_addr()
}

fn split(stream: TcpStream) -> io::Result<(StreamReader, StreamWriter)> {
    let (r, w) = stream.into_split();
    Ok((Box::new(r), Box::new(w)))
}

/// An accepted TLS connection in its handshake. It holds a place in both
/// caps from the accept until it is registered or dropped.
struct Handshake {
    inner: Arc<Inner>,
    peer: SocketAddr,
}

impl Handshake {
    fn start(inner: Arc<Inner>, peer: SocketAddr) -> Self {
        {
            let mut table = inner.table();
            table.handshaking += 1;
            table.hold_source(peer);
        }
        Handshake { inner, peer }
    }

    /// The handshake must end within the first-message deadline (it is
    /// part of getting the first message).
    async fn run(self, stream: TcpStream) {
        let inner = self.inner.clone();
        let peer = self.peer;
        let Some(identity) = inner.tls.as_ref().and_then(|t| t.server.clone()) else {
            return;
        };
        let local = match stream_local(&stream) {
            Ok(local) => local,
            Err(e) => return debug!(%peer, error = %e, "TLS connection setup failed"),
        };
        let acceptor = tokio_rustls::TlsAcceptor::from(identity.current_for(peer.ip()));
        let deadline = inner.config.first_message_timeout;
        let result = tokio::select! {
            biased;
            _ = inner.shutdown.cancelled() => return,
            r = tokio::time::timeout(deadline, acceptor.accept(stream)) => r,
        };
        match result {
            Ok(Ok(tls)) => {
                drop(self);
                let (r, w) = tokio::io::split(tls);
                if let Err(e) = inner.register(Box::new(r), Box::new(w), local, peer, true) {
                    debug!(%peer, error = %e, "TLS connection setup failed");
                }
            }
            Ok(Err(e)) => {
                bump(&inner.stats.handshake_failures, 1);
                debug!(%peer, error = %e, "TLS handshake failed");
            }
            Err(_) => {
                bump(&inner.stats.handshake_failures, 1);
                bump(&inner.stats.closed_first_message_timeout, 1);
                debug!(%peer, "TLS handshake not done within the first-message deadline");
            }
        }
    }
}

impl Drop for Handshake {
    fn drop(&mut self) {
        let mut table = self.inner.table();
        table.handshaking -= 1;
        table.release_source(self.peer);
    }
}

/// The read task of one connection: runs until the connection is closed
/// for any reason, then removes it from the table. Dropping the last
/// reference to the write half then closes the socket.
async fn run_connection(
    inner: Arc<Inner>,
    conn: Arc<Connection>,
    mut reader: StreamReader,
    incoming: mpsc::Sender<Incoming>,
) {
    let reason = read_loop(&inner, &conn, &mut reader, &incoming).await;
    inner.remove(&conn);
    let stats = &inner.stats;
    match &reason {
        CloseReason::Idle => bump(&stats.closed_idle, 1),
        CloseReason::FirstMessageTimeout => bump(&stats.closed_first_message_timeout, 1),
        CloseReason::MessageTimeout => bump(&stats.closed_message_timeout, 1),
        _ => {}
    }
    match &reason {
        CloseReason::Framing(e) => {
            let allowed = inner
                .framing_log
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .allow(Instant::now());
            if let Some(suppressed) = allowed {
                warn!(peer = %conn.peer, conn = %conn.id, error = %e, suppressed, "TCP stream cannot be framed, connection closed")
            }
        }
        CloseReason::Read(e) | CloseReason::Write(e) => {
            debug!(peer = %conn.peer, conn = %conn.id, error = %e, "TCP connection failed")
        }
        CloseReason::PeerClosed { unframed } if *unframed > 0 => {
            debug!(peer = %conn.peer, conn = %conn.id, unframed, "TCP peer closed in the middle of a message")
        }
        other => {
            debug!(peer = %conn.peer, conn = %conn.id, reason = ?other, "TCP connection closed")
        }
    }
}

async fn read_loop(
    inner: &Inner,
    conn: &Connection,
    reader: &mut StreamReader,
    incoming: &mpsc::Sender<Incoming>,
) -> CloseReason {
    let stats = &inner.stats;
    let mut framer = Framer::new();
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    // Deadlines of the defences against idle and trickling peers; `None`
    // once met (first message) or while no message is under way.
    let mut first_message_by = conn
        .inbound
        .then(|| Instant::now() + inner.config.first_message_timeout);
    let mut message_by: Option<Instant> = None;
    loop {
        if conn.is_closed() {
            return CloseReason::Requested;
        }
        // Hand up everything complete before reading more: the buffer then
        // never holds more than one partial message plus one read.
        loop {
            match framer.decode(&mut buf) {
                Ok(Some(Frame::Message(data))) => {
                    first_message_by = None;
                    message_by = None;
                    bump(&stats.messages_received, 1);
                    let item = Incoming {
                        data,
                        source: conn.peer,
                        local: conn.local,
                        transport: inner.kind,
                        connection: Some(conn.id),
                    };
                    tokio::select! {
                        biased;
                        _ = inner.shutdown.cancelled() => return CloseReason::Shutdown,
                        sent = incoming.send(item) => if sent.is_err() {
                            return CloseReason::ChannelClosed;
                        }
                    }
                }
                Ok(Some(Frame::Ping)) => {
                    bump(&stats.keepalives_received, 1);
                    if let Err(e) = inner.write(conn, PONG).await {
                        return CloseReason::Write(e);
                    }
                    bump(&stats.bytes_sent, PONG.len() as u64);
                }
                Ok(None) => break,
                Err(e) => {
                    bump(&stats.framing_errors, 1);
                    return CloseReason::Framing(e);
                }
            }
        }
        if message_by.is_none() && holds_message_bytes(&buf) {
            message_by = Some(Instant::now() + inner.config.message_timeout);
        }
        if buf.capacity() - buf.len() < READ_CHUNK / 2 {
            buf.reserve(READ_CHUNK);
        }
        let idle_at = inner.idle_deadline(conn);
        let wake_at = [first_message_by, message_by]
            .into_iter()
            .flatten()
            .fold(idle_at, Instant::min);
        tokio::select! {
            biased;
            _ = inner.shutdown.cancelled() => return CloseReason::Shutdown,
            _ = conn.close.notified() => return CloseReason::Requested,
            _ = tokio::time::sleep_until(wake_at) => {
                let now = Instant::now();
                if first_message_by.is_some_and(|at| at <= now) {
                    return CloseReason::FirstMessageTimeout;
                }
                if message_by.is_some_and(|at| at <= now) {
                    return CloseReason::MessageTimeout;
                }
                // A write may have moved the idle deadline meanwhile.
                if inner.idle_deadline(conn) <= now {
                    return CloseReason::Idle;
                }
            }
            read = reader.read_buf(&mut buf) => match read {
                Ok(0) => {
                    let unframed = buf.iter().filter(|&&b| b != b'\r' && b != b'\n').count();
                    if unframed > 0 {
                        // The peer closed in the middle of a message.
                        bump(&stats.framing_errors, 1);
                    }
                    return CloseReason::PeerClosed { unframed };
                }
                Ok(n) => {
                    bump(&stats.bytes_received, n as u64);
                    inner.touch(conn);
                }
                Err(e) => return CloseReason::Read(e),
            },
        }
    }
}

/// Whether the unframed rest of a read holds part of a message (anything
/// but the CR/LF of keep-alives). The framer has dropped leading CR/LF, so
/// this looks at a few bytes at most before it finds one.
fn holds_message_bytes(buf: &[u8]) -> bool {
    buf.iter().any(|&b| b != b'\r' && b != b'\n')
}

#[cfg(test)]
mod tests;
