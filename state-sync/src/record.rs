//! What is replicated: opaque, versioned records. state-sync knows nothing
//! of SIP; the proxy decides what a record holds (a call, a relay session,
//! a member's health) and serialises it into `data`.

use bytes::Bytes;

/// One replicated record: `(kind, key)` names it, `version` orders its
/// updates (a stale update never overwrites a newer one), `data` is the
/// owner's serialised state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub kind: String,
    pub key: String,
    pub version: u64,
    pub data: Bytes,
}

impl Record {
    pub fn id(&self) -> RecordId {
        RecordId {
            kind: self.kind.clone(),
            key: self.key.clone(),
        }
    }
}

/// The name of a record.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RecordId {
    pub kind: String,
    pub key: String,
}

/// One change of the record set, as the active node journals it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Upsert(Record),
    Delete(RecordId),
}
