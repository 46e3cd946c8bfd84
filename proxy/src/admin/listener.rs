//! The admin API's accept loop and connections. hyper parses HTTP/1; the
//! bounds are ours: at most [`MAX_CONNECTIONS`] connections (more are
//! answered 503 and closed at once, so idle or slow clients cannot hold
//! the port), headers of at most [`MAX_HEADER_BYTES`] that must arrive
//! within [`HEADER_READ_TIMEOUT`] (also between requests on a kept-alive
//! connection: an idle connection frees its slot then), a whole
//! connection of at most [`CONNECTION_LIFETIME`], and accept errors
//! (EMFILE: out of file descriptors) backed off instead of retried in a
//! spin that would starve the signalling on the same thread.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

#[cfg(test)]
mod tests;

/// Connections served at once. Operators, a scraper and the CLI need a
/// handful.
pub const MAX_CONNECTIONS: usize = 32;
/// A request's headers must have arrived this long after the connection
/// opened or the previous response was sent.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Request line and headers, at most (hyper answers 431 beyond).
const MAX_HEADER_BYTES: usize = 8192;
/// hyper's read buffer, at most (its minimum is 8 KiB + a little).
const MAX_READ_BUFFER: usize = 16 * 1024;
/// No connection lives longer, whatever it does.
const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);

/// The answer to a connection beyond the cap, written without waiting.
const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n\
Content-Length: 32\r\nConnection: close\r\n\r\ntoo many admin connections open\n";

/// Makes the admin counters visible (at 0) from the start.
pub fn register_metrics() {
    for name in [
        "tandem_admin_auth_failures_total",
        "tandem_admin_connections_shed_total",
        "tandem_admin_accept_errors_total",
    ] {
        metrics::counter!(name).increment(0);
    }
}

/// The delay after each failed accept: doubling from
/// [`Backoff::FIRST`] to [`Backoff::MAX`], back to the start after a
/// success.
#[derive(Debug, Default)]
pub struct Backoff {
    errors: u32,
}

impl Backoff {
    pub const FIRST: Duration = Duration::from_millis(5);
    pub const MAX: Duration = Duration::from_secs(1);

    /// An accept failed: how long to wait before the next.
    pub fn failed(&mut self) -> Duration {
        let delay = Self::FIRST
            .saturating_mul(1 << self.errors.min(16))
            .min(Self::MAX);
        self.errors = self.errors.saturating_add(1);
        delay
    }

    /// An accept succeeded: the number of failures before it, if any.
    pub fn succeeded(&mut self) -> Option<u32> {
        (self.errors > 0).then(|| std::mem::take(&mut self.errors))
    }
}

/// A listener the API is served on: TCP, or the Unix socket.
pub trait Accept: Send + 'static {
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    fn accept_one(&self) -> impl Future<Output = std::io::Result<Self::Stream>> + Send;
    /// Writes what fits without waiting (the 503 of a shed connection).
    fn try_write(stream: &Self::Stream, bytes: &[u8]);
}

impl Accept for TcpListener {
    type Stream = tokio::net::TcpStream;
    async fn accept_one(&self) -> std::io::Result<Self::Stream> {
        self.accept().await.map(|(stream, _peer)| stream)
    }
    fn try_write(stream: &Self::Stream, bytes: &[u8]) {
        let _ = stream.try_write(bytes);
    }
}

impl Accept for UnixListener {
    type Stream = tokio::net::UnixStream;
    async fn accept_one(&self) -> std::io::Result<Self::Stream> {
        self.accept().await.map(|(stream, _peer)| stream)
    }
    fn try_write(stream: &Self::Stream, bytes: &[u8]) {
        let _ = stream.try_write(bytes);
    }
}

/// Binds the admin Unix socket at `path` with mode 0600 from the first
/// moment: it is bound under a temporary name, restricted, then renamed
/// into place (a socket file left by an earlier run is replaced; any other
/// file there is an error).
pub fn bind_private_socket(path: &Path) -> std::io::Result<UnixListener> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "exists and is not a socket",
            ));
        }
    }
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{}.tmp", std::process::id()));
    let temporary = std::path::PathBuf::from(name);
    let _ = std::fs::remove_file(&temporary);
    let listener = UnixListener::bind(&temporary)?;
    let placed = std::fs::set_permissions(&temporary, std::fs::Permissions::from_mode(0o600))
        .and_then(|()| std::fs::rename(&temporary, path));
    if let Err(e) = placed {
        let _ = std::fs::remove_file(&temporary);
        return Err(e);
    }
    Ok(listener)
}

pub async fn accept_loop<A: Accept>(listener: A, router: Router) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut backoff = Backoff::default();
    loop {
        match listener.accept_one().await {
            Ok(stream) => {
                if let Some(errors) = backoff.succeeded() {
                    tracing::info!(errors, "admin listener: accepting again");
                }
                match slots.clone().try_acquire_owned() {
                    Ok(slot) => {
                        tokio::spawn(serve_connection(stream, router.clone(), slot));
                    }
                    Err(_) => {
                        metrics::counter!("tandem_admin_connections_shed_total").increment(1);
                        // A fresh socket's send buffer is empty: this never
                        // blocks, and a failure only means a silent close.
                        A::try_write(&stream, BUSY);
                    }
                }
            }
            Err(e) => {
                metrics::counter!("tandem_admin_accept_errors_total").increment(1);
                let delay = backoff.failed();
                // One line per streak of errors (and one when it ends), not
                // one per error.
                if delay == Backoff::FIRST {
                    tracing::warn!(error = %e, "admin listener: accept failed, backing off");
                }
                tokio::time::sleep(delay).await;
            }
        }
    }
}

async fn serve_connection(
    stream: impl AsyncRead + AsyncWrite + Unpin + Send + 'static,
    router: Router,
    _slot: OwnedSemaphorePermit,
) {
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_READ_BUFFER)
        .max_header_size(MAX_HEADER_BYTES)
        .serve_connection(TokioIo::new(stream), TowerToHyperService::new(router));
    // Errors (a client gone, a malformed request answered 400 by hyper)
    // concern that client only.
    let _ = tokio::time::timeout(CONNECTION_LIFETIME, connection).await;
}
