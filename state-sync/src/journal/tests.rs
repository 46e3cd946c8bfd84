use bytes::Bytes;

use super::*;

fn rec(key: &str, version: u64) -> Record {
    Record {
        kind: "call".into(),
        key: key.into(),
        version,
        data: Bytes::from(format!("{key}:{version}")),
    }
}

fn id(key: &str) -> RecordId {
    RecordId {
        kind: "call".into(),
        key: key.into(),
    }
}

#[test]
fn changes_are_numbered_and_stale_versions_ignored() {
    let mut j = Journal::new(10);
    assert_eq!(j.upsert(rec("a", 1)), Some(1));
    assert_eq!(j.upsert(rec("a", 3)), Some(2));
    assert_eq!(j.upsert(rec("a", 2)), None, "older than stored");
    assert_eq!(j.upsert(rec("a", 3)), None, "same version");
    assert_eq!(j.get(&id("a")).unwrap().version, 3);
    assert_eq!(j.delete(&id("a")), Some(3));
    assert_eq!(j.delete(&id("a")), None);
    assert_eq!(j.seq(), 3);
    assert!(j.is_empty());
}

#[test]
fn a_standby_resumes_while_the_journal_still_has_its_place() {
    let mut j = Journal::new(3);
    for v in 1..=5 {
        j.upsert(rec("a", v));
    }
    // Changes 3, 4, 5 are kept.
    assert_eq!(j.catch_up(Some(5)), CatchUp::Changes(vec![]));
    let CatchUp::Changes(c) = j.catch_up(Some(2)) else {
        panic!("resumable from 2");
    };
    assert_eq!(c.iter().map(|(s, _)| *s).collect::<Vec<_>>(), [3, 4, 5]);
    // Too old, never synced, or ahead of us (another history): snapshot.
    for last in [Some(1), None, Some(9)] {
        match j.catch_up(last) {
            CatchUp::Snapshot { seq, records } => {
                assert_eq!(seq, 5);
                assert_eq!(records, vec![rec("a", 5)]);
            }
            other => panic!("{last:?}: {other:?}"),
        }
    }
}
