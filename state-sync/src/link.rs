//! The wire between the two nodes: the TCP replication stream and the UDP
//! heartbeats.
//!
//! A stream connection first runs the pair handshake ([`initiate`] on the
//! standby's side, [`respond`] on the active's, under a deadline): only a
//! peer that proved it knows the secret gets a [`Connection`]. That is
//! then split into a reader task, which cuts frames out of the byte stream
//! ([`frame::check`] first, then [`frame::decode`]; a partial read is
//! "incomplete", not an error), drops replayed ones and hands the rest to
//! the node loop, and a writer task fed through a channel, which numbers
//! and seals each frame, so that a slow peer never blocks the loop. Both
//! report the end of the connection once.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::frame::{self, Envelope, Frame, FrameError, FrameKey, Seal};
use crate::handshake::{self, SessionKeys};
use crate::replay::StreamCounter;

/// What a connection's tasks tell the node loop.
#[derive(Debug)]
pub enum LinkEvent {
    Frame { conn: u64, envelope: Envelope },
    Closed { conn: u64, why: String },
}

/// Why something from the pair link was turned away (each counted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// From an address other than the configured peer's.
    Source,
    /// A connection that did not complete the handshake (wrong secret,
    /// silence past the deadline, junk).
    Handshake,
    /// A connection beyond the cap of pending handshakes.
    Busy,
    /// An authentic frame or heartbeat seen before (or out of order).
    Replayed,
    /// A heartbeat, or a frame of an established stream, that does not
    /// open (wrong secret, altered, junk).
    Auth,
}

impl Refusal {
    pub const ALL: [Refusal; 5] = [
        Refusal::Source,
        Refusal::Handshake,
        Refusal::Busy,
        Refusal::Replayed,
        Refusal::Auth,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Refusal::Source => "source",
            Refusal::Handshake => "handshake",
            Refusal::Busy => "busy",
            Refusal::Replayed => "replayed",
            Refusal::Auth => "auth",
        }
    }
}

/// Refusals so far, by reason (shared by the loop and the link tasks).
#[derive(Debug, Default)]
pub struct RefusalCounters([AtomicU64; 5]);

/// A copy of [`RefusalCounters`] as plain numbers.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RefusalCounts {
    pub source: u64,
    pub handshake: u64,
    pub busy: u64,
    pub replayed: u64,
    pub auth: u64,
}

impl RefusalCounters {
    /// Counts one refusal on `link` (`stream`, `main`, `aux`), also as
    /// `tandem_replication_refused_total{link, reason}`.
    pub fn count(&self, why: Refusal, link: &'static str) {
        self.0[why as usize].fetch_add(1, Ordering::Relaxed);
        metrics::counter!("tandem_replication_refused_total", "link" => link, "reason" => why.name())
            .increment(1);
    }

    pub fn snapshot(&self) -> RefusalCounts {
        let n = |r: Refusal| self.0[r as usize].load(Ordering::Relaxed);
        RefusalCounts {
            source: n(Refusal::Source),
            handshake: n(Refusal::Handshake),
            busy: n(Refusal::Busy),
            replayed: n(Refusal::Replayed),
            auth: n(Refusal::Auth),
        }
    }
}

/// The sending side of one stream connection.
#[derive(Debug)]
pub struct Connection {
    pub id: u64,
    pub peer: SocketAddr,
    tx: mpsc::UnboundedSender<Envelope>,
    reader: tokio::task::JoinHandle<()>,
    writer: tokio::task::JoinHandle<()>,
}

impl Connection {
    /// Starts the reader and writer tasks of an authenticated `stream`.
    pub fn spawn(
        id: u64,
        stream: TcpStream,
        keys: SessionKeys,
        refused: Arc<RefusalCounters>,
        events: mpsc::UnboundedSender<LinkEvent>,
    ) -> std::io::Result<Connection> {
        let peer = stream.peer_addr()?;
        stream.set_nodelay(true)?;
        let (rd, wr) = stream.into_split();
        let (tx, rx) = mpsc::unbounded_channel();
        let reader = tokio::spawn(read_frames(id, rd, keys.recv, refused, events.clone()));
        let writer = tokio::spawn(write_frames(id, wr, keys.send, rx, events));
        Ok(Connection {
            id,
            peer,
            tx,
            reader,
            writer,
        })
    }

    /// Queues `frame` (sent in `epoch`); false if the connection is gone.
    pub fn send(&self, epoch: u64, frame: Frame) -> bool {
        self.tx.send(Envelope { epoch, frame }).is_ok()
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.reader.abort();
        self.writer.abort();
    }
}

async fn read_frames(
    id: u64,
    mut rd: OwnedReadHalf,
    key: FrameKey,
    refused: Arc<RefusalCounters>,
    events: mpsc::UnboundedSender<LinkEvent>,
) {
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut counter = StreamCounter::default();
    let why = loop {
        // Take every whole frame already buffered, then read more.
        loop {
            match frame::decode(&key, &buf) {
                Ok((seal, envelope, used)) => {
                    buf.advance(used);
                    if let Err(e) = counter.accept(seal.counter) {
                        refused.count(Refusal::Replayed, "stream");
                        tracing::warn!(error = %e, "replication frame dropped");
                        continue;
                    }
                    if events
                        .send(LinkEvent::Frame { conn: id, envelope })
                        .is_err()
                    {
                        return;
                    }
                }
                Err(FrameError::Incomplete) => break,
                Err(e) => {
                    // The stream cannot be resynchronised after bytes
                    // that do not open: the connection ends.
                    refused.count(Refusal::Auth, "stream");
                    let _ = events.send(LinkEvent::Closed {
                        conn: id,
                        why: e.to_string(),
                    });
                    return;
                }
            }
        }
        match rd.read_buf(&mut buf).await {
            Ok(0) => break "closed by peer".to_string(),
            Ok(_) => {}
            Err(e) => break e.to_string(),
        }
    };
    let _ = events.send(LinkEvent::Closed { conn: id, why });
}

async fn write_frames(
    id: u64,
    mut wr: OwnedWriteHalf,
    key: FrameKey,
    mut rx: mpsc::UnboundedReceiver<Envelope>,
    events: mpsc::UnboundedSender<LinkEvent>,
) {
    // Numbered here, in the order sent: the counter is the AEAD nonce.
    let mut counter = 0u64;
    while let Some(env) = rx.recv().await {
        counter += 1;
        let seal = Seal {
            session: 0,
            counter,
        };
        let bytes = frame::encode(&key, seal, env.epoch, &env.frame);
        if let Err(e) = wr.write_all(&bytes).await {
            let _ = events.send(LinkEvent::Closed {
                conn: id,
                why: format!("write: {e}"),
            });
            return;
        }
    }
    let _ = wr.shutdown().await;
}

/// Connects to the peer's stream address from our own link address (so
/// the connection takes the pair link, not whatever route is default).
pub async fn dial(local: SocketAddr, peer: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = match local {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.bind(SocketAddr::new(local.ip(), 0))?;
    socket.connect(peer).await
}

fn io_error(e: std::io::Error) -> FrameError {
    tracing::debug!(error = %e, "handshake i/o");
    FrameError::Handshake("connection closed during the handshake")
}

async fn read_message(stream: &mut TcpStream) -> Result<handshake::Message, FrameError> {
    let mut m = [0u8; handshake::MESSAGE_LEN];
    stream.read_exact(&mut m).await.map_err(io_error)?;
    Ok(m)
}

/// Standby side: proves the secret to the active node and checks its
/// proof, within `deadline`.
pub async fn initiate(
    stream: &mut TcpStream,
    secret: &[u8],
    deadline: Duration,
) -> Result<SessionKeys, FrameError> {
    let run = async {
        let nonce_i = handshake::nonce();
        stream
            .write_all(&handshake::hello(&nonce_i))
            .await
            .map_err(io_error)?;
        let nonce_r = handshake::read_challenge(&read_message(stream).await?)?;
        stream
            .write_all(&handshake::proof(secret, &nonce_i, &nonce_r))
            .await
            .map_err(io_error)?;
        handshake::read_confirm(secret, &nonce_i, &nonce_r, &read_message(stream).await?)
    };
    tokio::time::timeout(deadline, run)
        .await
        .map_err(|_| FrameError::Handshake("no answer within the deadline"))?
}

/// Active side: a connection counts only once the peer proved the secret
/// (its proof over our fresh nonce), within `deadline`. Before that it
/// has been sent nothing but a nonce.
pub async fn respond(
    stream: &mut TcpStream,
    secret: &[u8],
    deadline: Duration,
) -> Result<SessionKeys, FrameError> {
    let run = async {
        let nonce_i = handshake::read_hello(&read_message(stream).await?)?;
        let nonce_r = handshake::nonce();
        stream
            .write_all(&handshake::challenge(&nonce_r))
            .await
            .map_err(io_error)?;
        let proof = read_message(stream).await?;
        let (confirm, keys) = handshake::read_proof(secret, &nonce_i, &nonce_r, &proof)?;
        stream.write_all(&confirm).await.map_err(io_error)?;
        Ok(keys)
    };
    tokio::time::timeout(deadline, run)
        .await
        .map_err(|_| FrameError::Handshake("no proof within the deadline"))?
}
