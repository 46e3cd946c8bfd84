//! Replication of state from the active Tandem to its standby, and the
//! choice of which node is active. Knows nothing of SIP: it moves opaque,
//! versioned [`record::Record`]s and asks its owner one question (does
//! anything answer on the floating address?).
//!
//! * [`frame`] — the channel's frames, each authenticated with
//!   HMAC-SHA256 over a shared secret, cut from a byte stream in two steps
//!   (check for a whole frame, then verify and parse).
//! * [`journal`] — the active side: the record set and a bounded journal
//!   of numbered changes; a reconnecting standby resumes from its last
//!   sequence number if the journal still has it, else takes a snapshot.
//! * [`replica`] — the standby side: applies a staged snapshot, then every
//!   change in order; a gap says "resync".
//! * [`role`] — the role state machine (starting, active, standby,
//!   reconnecting, upgrade, failed), epochs and the rules against two
//!   active nodes, as plain data.
//! * [`link`] — the TCP replication stream and the UDP heartbeats.
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
pub mod journal;
pub mod link;
pub mod netcheck;
pub mod node;
pub mod record;
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
