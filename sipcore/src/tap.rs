//! A tap on the SIP messages an [`Endpoint`](crate::endpoint::Endpoint)
//! receives and sends, for capture and monitoring (Homer's HEP export in
//! the proxy, a test's recorder).
//!
//! The endpoint hands every message it handles to the tap it was given
//! ([`EndpointConfig::tap`](crate::endpoint::EndpointConfig::tap)): each
//! message received (after the gate, before parsing: what the gate drops
//! unparsed is not seen here, so a flood costs the tap nothing) and each
//! message written successfully, with the addresses, the transport and the
//! exact bytes (after TLS decryption, before TLS encryption). Without a tap
//! the cost is one branch per message.
//!
//! [`MessageTap::observe`] runs on the SIP path: it must return at once and
//! never block (copy the handle into a bounded queue and drop when it is
//! full; the data is a reference-counted [`Bytes`], so keeping it costs no
//! copy).

use std::fmt;
use std::net::SocketAddr;
use std::time::SystemTime;

use bytes::Bytes;

use crate::transport::TransportKind;

/// Whether the endpoint received or sent a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Received,
    Sent,
}

/// One SIP message as it crossed the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedMessage {
    pub direction: Direction,
    pub transport: TransportKind,
    /// Where the message came from: the peer for a received message, the
    /// local address for a sent one.
    pub source: SocketAddr,
    /// Where it went. A local address is the socket's bound address, which
    /// is a wildcard (`0.0.0.0`) when the endpoint is bound to one.
    pub destination: SocketAddr,
    /// When the endpoint handled it (received: taken off the transports'
    /// queue; sent: written).
    pub at: SystemTime,
    /// The exact bytes of the message.
    pub data: Bytes,
}

/// Receives every message an endpoint handles. Must not block.
pub trait MessageTap: Send + Sync + fmt::Debug {
    fn observe(&self, message: ObservedMessage);
}
