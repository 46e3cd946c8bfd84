use super::*;

fn seal(session: u64, counter: u64) -> Seal {
    Seal { session, counter }
}

#[test]
fn a_stream_counter_takes_only_higher_counters() {
    let mut c = StreamCounter::default();
    c.accept(1).unwrap();
    c.accept(2).unwrap();
    assert!(matches!(c.accept(2), Err(FrameError::Replayed { .. })));
    assert!(matches!(c.accept(1), Err(FrameError::Replayed { .. })));
    // A gap is not a replay (the replica finds gaps by sequence number).
    c.accept(5).unwrap();
    assert!(c.accept(4).is_err());
}

#[test]
fn a_heartbeat_replayed_or_reordered_within_its_session_is_refused() {
    let mut g = SessionGuard::default();
    g.accept(seal(7, 1)).unwrap();
    g.accept(seal(7, 2)).unwrap();
    g.accept(seal(7, 4)).unwrap();
    assert!(g.accept(seal(7, 4)).is_err(), "replayed");
    assert!(g.accept(seal(7, 3)).is_err(), "reordered");
}

#[test]
fn a_restarted_peer_is_heard_at_once_and_its_old_session_never_again() {
    let mut g = SessionGuard::default();
    for c in 1..=100 {
        g.accept(seal(7, c)).unwrap();
    }
    // Restart: a new session, counting from 1.
    g.accept(seal(9, 1)).unwrap();
    g.accept(seal(9, 2)).unwrap();
    // Heartbeats recorded from the first boot, even with high counters.
    assert!(g.accept(seal(7, 101)).is_err());
    assert!(g.accept(seal(7, 5000)).is_err());
    g.accept(seal(9, 3)).unwrap();
}

#[test]
fn retired_sessions_are_bounded() {
    let mut g = SessionGuard::default();
    for s in 1..=(RETIRED_SESSIONS as u64 * 3) {
        g.accept(seal(s, 1)).unwrap();
    }
    assert_eq!(g.retired.len(), RETIRED_SESSIONS);
    // The most recent ones are still refused.
    assert!(g.accept(seal(RETIRED_SESSIONS as u64 * 3 - 1, 9)).is_err());
}
