//! The active node's side: the current record set plus a bounded journal
//! of the latest changes, each with a sequence number.
//!
//! A standby that (re)connects says which sequence number it applied last;
//! if every change after it is still in the journal it gets just those,
//! otherwise a snapshot of the record set (which reflects one sequence
//! number) followed by the changes after it. Plain data, no I/O: the
//! channel code drives it.

use std::collections::{BTreeMap, VecDeque};

use crate::record::{Change, Record, RecordId};

#[derive(Debug)]
pub struct Journal {
    records: BTreeMap<RecordId, Record>,
    changes: VecDeque<(u64, Change)>,
    /// Sequence number of the latest change (0: none yet).
    seq: u64,
    capacity: usize,
}

/// How a standby catches up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CatchUp {
    /// The changes after its last sequence number, in order.
    Changes(Vec<(u64, Change)>),
    /// Everything, as of sequence number `seq`.
    Snapshot { seq: u64, records: Vec<Record> },
}

impl Journal {
    /// A journal that keeps the last `capacity` changes for resuming.
    pub fn new(capacity: usize) -> Journal {
        Journal {
            records: BTreeMap::new(),
            changes: VecDeque::new(),
            seq: 0,
            capacity: capacity.max(1),
        }
    }

    /// Sequence number of the latest change.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    pub fn get(&self, id: &RecordId) -> Option<&Record> {
        self.records.get(id)
    }

    pub fn records(&self) -> impl Iterator<Item = &Record> {
        self.records.values()
    }

    /// Stores a record; returns the change's sequence number, or None when
    /// a newer (or the same) version is already stored: updates that
    /// arrive out of order never roll a record back.
    pub fn upsert(&mut self, record: Record) -> Option<u64> {
        let id = record.id();
        if self
            .records
            .get(&id)
            .is_some_and(|old| old.version >= record.version)
        {
            return None;
        }
        self.records.insert(id, record.clone());
        Some(self.push(Change::Upsert(record)))
    }

    /// Removes a record; returns the change's sequence number, or None if
    /// there was no such record.
    pub fn delete(&mut self, id: &RecordId) -> Option<u64> {
        self.records.remove(id)?;
        Some(self.push(Change::Delete(id.clone())))
    }

    fn push(&mut self, change: Change) -> u64 {
        self.seq += 1;
        if self.changes.len() == self.capacity {
            self.changes.pop_front();
        }
        self.changes.push_back((self.seq, change));
        self.seq
    }

    /// What a standby that applied everything up to `last_seq` (None:
    /// nothing) needs to be level with this journal.
    pub fn catch_up(&self, last_seq: Option<u64>) -> CatchUp {
        if let Some(last) = last_seq.filter(|&l| l <= self.seq) {
            let oldest_kept = self.changes.front().map_or(self.seq + 1, |(s, _)| *s);
            if last + 1 >= oldest_kept {
                return CatchUp::Changes(
                    self.changes
                        .iter()
                        .filter(|(s, _)| *s > last)
                        .cloned()
                        .collect(),
                );
            }
        }
        // Unknown to us (nothing applied, too old, or from a journal with
        // a higher count than ours: another history): start over.
        CatchUp::Snapshot {
            seq: self.seq,
            records: self.records.values().cloned().collect(),
        }
    }

    /// The changes after `seq` still in the journal (for a standby that is
    /// level: what to send next).
    pub fn changes_after(&self, seq: u64) -> impl Iterator<Item = &(u64, Change)> {
        self.changes.iter().filter(move |(s, _)| *s > seq)
    }
}

#[cfg(test)]
mod tests;
