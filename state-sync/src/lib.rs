//! Replication of state from the active Tandem to its standby, and the
//! choice of which node is active. Knows nothing of SIP: it moves opaque,
//! versioned [`record::Record`]s and asks its owner one question (does
//! anything answer on the floating address?).
//!
//! * [`frame`] — the channel's frames, each sealed (encrypted and
//!   authenticated, ChaCha20-Poly1305) and numbered, cut from a byte
//!   stream in two steps (check for a whole frame, then open and parse).
//! * [`handshake`] — the pair handshake: both sides prove the shared
//!   secret over fresh nonces before a connection counts, and derive its
//!   keys (HKDF-SHA256); heartbeat keys per sender boot.
//! * [`replay`] — replayed or reordered frames and heartbeats are dropped
//!   (per-direction counters; heartbeat sessions across restarts).
//! * [`journal`] — the active side: the record set and a bounded journal
//!   of numbered changes; a reconnecting standby resumes from its last
//!   sequence number if the journal still has it, else takes a snapshot.
//! * [`replica`] — the standby side: applies a staged snapshot, then every
//!   change in order; a gap says "resync".
//! * [`role`] — the role state machine (starting, active, standby,
//!   reconnecting, upgrade, failed), epochs and the rules against two
//!   active nodes, as plain data.
//! * [`link`] — the TCP replication stream and the UDP heartbeats; only
//!   the configured peer address is listened to.
//!
//! Why AEAD frames with HKDF-derived keys rather than TLS or Noise: the
//! two nodes share one secret and nothing else. TLS (rustls) has no
//! external-PSK mode, so it would need certificates issued, pinned and
//! rotated on both nodes; Noise with a PSK (`snow`) would bring a second
//! framing and a handshake state machine for what is here four fixed
//! messages. A nonce exchange, HKDF-SHA256 and ChaCha20-Poly1305 (all
//! RustCrypto) keep the existing frame layout and its panic-free decoder,
//! and each connection gets fresh keys (recorded traffic of an earlier
//! connection neither opens nor authenticates on a later one).
//! * [`netcheck`] — ICMP probes of the "am I cut off?" hosts.
//! * [`vip`] — the floating address: netlink add/remove, gratuitous ARP
//!   (IPv4), unsolicited neighbour advertisements (IPv6).
//! * [`node`] — the driver that runs all of it on its own thread.
//!
//! `unsafe` is denied everywhere but in `sys`, which sends raw ARP frames
//! on an `AF_PACKET` socket and gives the heartbeat thread real-time
//! priority.
#![deny(unsafe_code)]

pub mod config;
pub mod frame;
#[doc(hidden)]
pub mod fuzzing;
pub mod handshake;
pub mod journal;
pub mod link;
pub mod netcheck;
pub mod node;
pub mod record;
pub mod replay;
pub mod replica;
pub mod role;
mod sys;
pub mod vip;

pub use config::SyncConfig;
pub use frame::{Envelope, Frame, FrameError};
pub use journal::{CatchUp, Journal};
pub use node::{NodeEvent, Status, SyncHandle, SyncNode, VipProbe};
pub use record::{Change, Record, RecordId};
pub use replica::{Replica, ReplicaError};
pub use role::Role;
