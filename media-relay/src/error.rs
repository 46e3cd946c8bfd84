//! The one error type of the crate.

use std::io;
use std::net::SocketAddr;

use crate::SessionId;

/// Everything that can go wrong in the media relay. Each variant names the
/// session, port, address or config key that failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A config value is out of range or inconsistent.
    #[error("media relay config: `{key}`: {reason}")]
    Config {
        /// The config key (as spelled in TOML).
        key: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// No free even/odd port pair is left in the configured range.
    #[error("session {session}: port range {min}-{max} exhausted (no free RTP/RTCP port pair)")]
    PortsExhausted {
        /// The session that asked for ports.
        session: SessionId,
        /// Lowest port of the configured range.
        min: u16,
        /// Highest port of the configured range.
        max: u16,
    },
    /// A specific port (from a snapshot) cannot be taken from the pool.
    #[error("session {session}: RTP port {port} unavailable: {reason}")]
    PortUnavailable {
        /// The session being restored.
        session: SessionId,
        /// The RTP (even) port asked for.
        port: u16,
        /// Why it cannot be used.
        reason: &'static str,
    },
    /// Creating, configuring, binding or registering (with a worker's
    /// poll) a socket failed.
    #[error("session {session}: cannot bind UDP socket {addr}: {source}")]
    Bind {
        /// The session the socket was for.
        session: SessionId,
        /// The local address that failed.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// `create_session`/`restore_session` with an id that is in use.
    #[error("session {0} already exists")]
    SessionExists(SessionId),
    /// The id names no live session.
    #[error("no media session {0}")]
    NoSuchSession(SessionId),
    /// A worker thread has stopped (it panicked or the relay is shutting down).
    #[error("media relay worker {worker} is gone (session {session})")]
    WorkerGone {
        /// Index of the worker thread.
        worker: usize,
        /// The session the request was about.
        session: SessionId,
    },
    /// Starting a worker (poller, waker or thread) failed.
    #[error("cannot start media relay worker {worker}: {source}")]
    WorkerStart {
        /// Index of the worker thread.
        worker: usize,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// `fast_path = "on"` and the kernel fast path cannot be had (the
    /// load or attach error says why).
    #[error("media relay config: `fast_path` is \"on\" but the RTP kernel fast path is unavailable: {0}")]
    FastPathUnavailable(#[source] Box<Error>),
    /// The fast path's BPF program cannot be had: not built, not for this
    /// address family, refused by the kernel (permissions, verifier), or
    /// the object lacks a program or map it should have.
    #[error("{reason}")]
    FastPathLoad {
        /// What failed, with the kernel's or aya's reason.
        reason: String,
    },
    /// The program cannot be attached to an interface (or the interfaces
    /// cannot be listed: `interface` is empty then).
    #[error("attaching at tc ingress of {interface}: {reason}")]
    FastPathAttach {
        /// The interface.
        interface: String,
        /// The kernel's or aya's reason.
        reason: String,
    },
    /// Writing, reading or deleting a fast path map entry failed.
    #[error("BPF map `{map}`: {op}: {reason}")]
    FastPathMap {
        /// The map (`routes`, `counters`).
        map: &'static str,
        /// What was done to it (`insert`, `lookup batch`, ...).
        op: &'static str,
        /// The kernel's or aya's reason.
        reason: String,
        /// Whether the same write may succeed later: a full map
        /// (`E2BIG`) or a short allocation (`ENOMEM`) frees up as calls
        /// end; a refusal (`EPERM`, `EINVAL`) does not.
        retry: bool,
    },
    /// The kernel has no route to a stream's destination (or source), so
    /// its egress interface is unknown: user space forwards it.
    #[error("no route to {dst}: {source}")]
    FastPathRoute {
        /// The address looked up.
        dst: std::net::Ipv4Addr,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

impl Error {
    /// Whether doing the same again later may succeed (pingora's
    /// `RetryType`, for the errors where it is known): a map that was full
    /// or a route that was missing may not be so on the next call; a
    /// program the kernel refused stays refused.
    pub fn retry_helps(&self) -> bool {
        match self {
            Error::FastPathMap { retry, .. } => *retry,
            Error::FastPathRoute { .. } => true,
            Error::PortsExhausted { .. } => true,
            Error::FastPathUnavailable(e) => e.retry_helps(),
            Error::Config { .. }
            | Error::PortUnavailable { .. }
            | Error::Bind { .. }
            | Error::SessionExists(_)
            | Error::NoSuchSession(_)
            | Error::WorkerGone { .. }
            | Error::WorkerStart { .. }
            | Error::FastPathLoad { .. }
            | Error::FastPathAttach { .. } => false,
        }
    }
}

/// Result alias of the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
