use bytes::Bytes;

use super::*;
use crate::journal::{CatchUp, Journal};

fn rec(key: u64, version: u64) -> Record {
    Record {
        kind: "call".into(),
        key: key.to_string(),
        version,
        data: Bytes::from(format!("{key}:{version}")),
    }
}

/// The frames the active node sends for a catch-up.
fn frames(c: CatchUp) -> Vec<Frame> {
    match c {
        CatchUp::Changes(changes) => changes
            .into_iter()
            .map(|(seq, change)| Frame::Delta { seq, change })
            .collect(),
        CatchUp::Snapshot { seq, records } => {
            let mut f = vec![Frame::SnapshotBegin {
                seq,
                records: records.len() as u64,
            }];
            f.extend(records.into_iter().map(Frame::SnapshotRecord));
            f.push(Frame::SnapshotEnd { seq });
            f
        }
    }
}

fn same(j: &Journal, r: &Replica) -> bool {
    r.len() == j.len() && r.records().all(|rec| j.get(&rec.id()) == Some(rec))
}

/// xorshift: deterministic "load".
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// One step of call churn on the active node: a new call, an update or
/// an end. Returns the frame it produces, if any.
fn churn(j: &mut Journal, rng: &mut Rng, versions: &mut Vec<u64>) -> Option<Frame> {
    let key = rng.next() % 300;
    let slot = key as usize;
    if versions.len() <= slot {
        versions.resize(slot + 1, 0);
    }
    let seq = if rng.next().is_multiple_of(4) {
        j.delete(&rec(key, 0).id())
    } else {
        versions[slot] += 1;
        j.upsert(rec(key, versions[slot]))
    }?;
    j.changes_after(seq - 1).next().map(|(s, c)| Frame::Delta {
        seq: *s,
        change: c.clone(),
    })
}

#[test]
fn a_standby_restarted_under_load_ends_with_every_record() {
    let mut rng = Rng(0x5eed);
    let mut j = Journal::new(64);
    let mut versions = Vec::new();
    for _ in 0..2000 {
        churn(&mut j, &mut rng, &mut versions);
    }
    // A fresh standby connects: the snapshot is taken now, and while it is
    // on the wire the active node goes on changing records. Those changes
    // follow the snapshot on the link, in order.
    let mut r = Replica::new();
    let mut link = frames(j.catch_up(r.last_seq()));
    for _ in 0..500 {
        link.extend(churn(&mut j, &mut rng, &mut versions));
    }
    for f in link {
        r.apply(f).unwrap();
    }
    assert!(same(&j, &r), "{} vs {} records", r.len(), j.len());
    assert_eq!(r.last_seq(), Some(j.seq()));

    // The link drops; 40 changes later (within the journal) it resumes
    // with just those changes; 1,000 later (beyond it) with a snapshot.
    for (missed, resumable) in [(40, true), (1000, false)] {
        for _ in 0..missed {
            churn(&mut j, &mut rng, &mut versions);
        }
        let c = j.catch_up(r.last_seq());
        assert_eq!(
            matches!(c, CatchUp::Changes(_)),
            resumable,
            "{missed} missed"
        );
        for f in frames(c) {
            r.apply(f).unwrap();
        }
        assert!(same(&j, &r), "after {missed} missed");
    }
}

#[test]
fn a_gap_asks_for_a_resync_and_changes_nothing() {
    let mut j = Journal::new(8);
    let mut r = Replica::new();
    j.upsert(rec(1, 1));
    for f in frames(j.catch_up(None)) {
        r.apply(f).unwrap();
    }
    j.upsert(rec(2, 1));
    j.upsert(rec(3, 1));
    let CatchUp::Changes(c) = j.catch_up(Some(1)) else {
        panic!()
    };
    let (seq, change) = c[1].clone(); // change 3, skipping 2
    assert_eq!(
        r.apply(Frame::Delta { seq, change }),
        Err(ReplicaError::Gap {
            expected: Some(1),
            got: 3
        })
    );
    assert_eq!((r.len(), r.last_seq()), (1, Some(1)));
    // A resend of what was applied is harmless.
    let CatchUp::Changes(c) = j.catch_up(Some(0)) else {
        panic!()
    };
    let (seq, change) = c[0].clone();
    assert_eq!(r.apply(Frame::Delta { seq, change }), Ok(None));
}

#[test]
fn a_snapshot_cut_short_leaves_the_old_copy() {
    let mut j = Journal::new(8);
    j.upsert(rec(1, 1));
    let mut r = Replica::new();
    for f in frames(j.catch_up(None)) {
        r.apply(f).unwrap();
    }
    j.upsert(rec(2, 1));
    let mut f = frames(CatchUp::Snapshot {
        seq: j.seq(),
        records: vec![rec(1, 1), rec(2, 1)],
    });
    f.remove(2); // one record lost
    let last = f.pop().unwrap();
    for x in f {
        r.apply(x).unwrap();
    }
    assert!(matches!(
        r.apply(last),
        Err(ReplicaError::SnapshotIncomplete {
            expected: 2,
            got: 1
        })
    ));
    assert_eq!((r.len(), r.last_seq()), (1, Some(1)));
    assert_eq!(
        r.apply(Frame::SnapshotRecord(rec(9, 1))),
        Err(ReplicaError::OutOfPlace("snapshot record"))
    );
}
