//! The standby node's side: a copy of the active node's records, kept
//! level by applying a snapshot and then every change in sequence order.
//!
//! A change that does not follow the last one applied is a gap: the copy
//! is no longer trustworthy and the standby must reconnect and resume
//! from [`Replica::last_seq`] (or take a snapshot). A snapshot is staged
//! and replaces the copy only when complete, so a link that breaks
//! mid-snapshot leaves the previous copy intact.

use std::collections::BTreeMap;

use crate::frame::Frame;
use crate::record::{Change, Record, RecordId};

#[derive(Debug, Default)]
pub struct Replica {
    records: BTreeMap<RecordId, Record>,
    /// Last sequence number applied (None: never synced).
    last_seq: Option<u64>,
    /// Epoch of the active node whose changes the copy follows (0: none).
    history: u64,
    staging: Option<Staging>,
}

#[derive(Debug)]
struct Staging {
    seq: u64,
    expected: u64,
    records: BTreeMap<RecordId, Record>,
}

/// Why a frame could not be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplicaError {
    #[error("change {got} does not follow {expected:?}: resync needed")]
    Gap { expected: Option<u64>, got: u64 },
    #[error("snapshot of {expected} records ended with {got}")]
    SnapshotIncomplete { expected: u64, got: u64 },
    #[error("{0} outside a snapshot")]
    OutOfPlace(&'static str),
}

impl Replica {
    pub fn new() -> Replica {
        Replica::default()
    }

    /// What to put in `Hello` on (re)connect.
    pub fn last_seq(&self) -> Option<u64> {
        self.last_seq
    }

    /// The epoch of the history the copy follows (0: none).
    pub fn history(&self) -> u64 {
        self.history
    }

    /// Applies a frame that came with `epoch` (see [`Replica::apply`]); a
    /// completed snapshot makes `epoch` the copy's history.
    pub fn apply_from(&mut self, epoch: u64, frame: Frame) -> Result<Option<u64>, ReplicaError> {
        let snapshot_end = matches!(frame, Frame::SnapshotEnd { .. });
        let applied = self.apply(frame)?;
        if snapshot_end {
            self.history = epoch;
        }
        Ok(applied)
    }

    pub fn get(&self, id: &RecordId) -> Option<&Record> {
        self.records.get(id)
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    pub fn records(&self) -> impl Iterator<Item = &Record> {
        self.records.values()
    }

    /// Applies one frame from the active node. Returns the sequence
    /// number to acknowledge, if the frame moved it. Frames that carry no
    /// state (heartbeats, acks) are ignored.
    pub fn apply(&mut self, frame: Frame) -> Result<Option<u64>, ReplicaError> {
        match frame {
            Frame::SnapshotBegin { seq, records } => {
                self.staging = Some(Staging {
                    seq,
                    expected: records,
                    records: BTreeMap::new(),
                });
                Ok(None)
            }
            Frame::SnapshotRecord(r) => {
                let s = self
                    .staging
                    .as_mut()
                    .ok_or(ReplicaError::OutOfPlace("snapshot record"))?;
                s.records.insert(r.id(), r);
                Ok(None)
            }
            Frame::SnapshotEnd { seq } => {
                let s = self
                    .staging
                    .take()
                    .ok_or(ReplicaError::OutOfPlace("snapshot end"))?;
                let got = s.records.len() as u64;
                if got != s.expected || seq != s.seq {
                    return Err(ReplicaError::SnapshotIncomplete {
                        expected: s.expected,
                        got,
                    });
                }
                self.records = s.records;
                self.last_seq = Some(seq);
                Ok(Some(seq))
            }
            Frame::Delta { seq, change } => {
                if self.staging.is_some() {
                    return Err(ReplicaError::OutOfPlace("change inside a snapshot"));
                }
                match self.last_seq {
                    Some(last) if seq == last + 1 => {}
                    // Already applied (a resend after reconnect): harmless.
                    Some(last) if seq <= last => return Ok(None),
                    expected => return Err(ReplicaError::Gap { expected, got: seq }),
                }
                match change {
                    Change::Upsert(r) => {
                        self.records.insert(r.id(), r);
                    }
                    Change::Delete(id) => {
                        self.records.remove(&id);
                    }
                }
                self.last_seq = Some(seq);
                Ok(Some(seq))
            }
            Frame::Hello { .. }
            | Frame::Ack { .. }
            | Frame::Heartbeat { .. }
            | Frame::Handover { .. }
            | Frame::Refused { .. } => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests;
