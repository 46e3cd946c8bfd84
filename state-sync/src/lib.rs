//! Replication of state from the active Tandem to its standby. Knows
//! nothing of SIP: it moves opaque, versioned [`record::Record`]s.
//!
//! Built so far, as plain data without I/O (the TCP channel, heartbeats,
//! roles and the floating address come with the rest of the hot-standby
//! issue):
//! * [`frame`] — the channel's frames, each authenticated with
//!   HMAC-SHA256 over a shared secret, cut from a byte stream in two steps
//!   (check for a whole frame, then verify and parse).
//! * [`journal`] — the active side: the record set and a bounded journal
//!   of numbered changes; a reconnecting standby resumes from its last
//!   sequence number if the journal still has it, else takes a snapshot.
//! * [`replica`] — the standby side: applies a staged snapshot, then every
//!   change in order; a gap says "resync".
#![forbid(unsafe_code)]

pub mod frame;
pub mod journal;
pub mod record;
pub mod replica;

pub use frame::{Envelope, Frame, FrameError};
pub use journal::{CatchUp, Journal};
pub use record::{Change, Record, RecordId};
pub use replica::{Replica, ReplicaError};
