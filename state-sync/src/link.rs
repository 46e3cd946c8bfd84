//! The wire between the two nodes: the TCP replication stream and the UDP
//! heartbeats.
//!
//! A stream connection is split into a reader task, which cuts frames out
//! of the byte stream ([`frame::check`] first, then [`frame::decode`]; a
//! partial read is "incomplete", not an error) and hands them to the node
//! loop, and a writer task fed through a channel, so that a slow peer
//! never blocks the loop. Both report the end of the connection once.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::frame::{self, Envelope, FrameError};

/// What a connection's tasks tell the node loop.
#[derive(Debug)]
pub enum LinkEvent {
    Frame { conn: u64, envelope: Envelope },
    Closed { conn: u64, why: String },
}

/// The sending side of one stream connection.
#[derive(Debug)]
pub struct Connection {
    pub id: u64,
    pub peer: SocketAddr,
    tx: mpsc::UnboundedSender<Bytes>,
    reader: tokio::task::JoinHandle<()>,
    writer: tokio::task::JoinHandle<()>,
}

impl Connection {
    /// Starts the reader and writer tasks of `stream`.
    pub fn spawn(
        id: u64,
        stream: TcpStream,
        secret: Arc<[u8]>,
        events: mpsc::UnboundedSender<LinkEvent>,
    ) -> std::io::Result<Connection> {
        let peer = stream.peer_addr()?;
        stream.set_nodelay(true)?;
        let (rd, wr) = stream.into_split();
        let (tx, rx) = mpsc::unbounded_channel();
        let reader = tokio::spawn(read_frames(id, rd, secret, events.clone()));
        let writer = tokio::spawn(write_frames(id, wr, rx, events));
        Ok(Connection {
            id,
            peer,
            tx,
            reader,
            writer,
        })
    }

    /// Queues encoded frame bytes; false if the connection is gone.
    pub fn send(&self, bytes: Bytes) -> bool {
        self.tx.send(bytes).is_ok()
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
    secret: Arc<[u8]>,
    events: mpsc::UnboundedSender<LinkEvent>,
) {
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let why = loop {
        // Take every whole frame already buffered, then read more.
        loop {
            match frame::decode(&secret, &buf) {
                Ok((envelope, used)) => {
                    buf.advance(used);
                    if events
                        .send(LinkEvent::Frame { conn: id, envelope })
                        .is_err()
                    {
                        return;
                    }
                }
                Err(FrameError::Incomplete) => break,
                Err(e) => {
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
    mut rx: mpsc::UnboundedReceiver<Bytes>,
    events: mpsc::UnboundedSender<LinkEvent>,
) {
    while let Some(bytes) = rx.recv().await {
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
