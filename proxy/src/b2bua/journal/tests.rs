#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::time::{Duration, Instant};

use super::*;

/// On a minute.
const T0: UnixMillis = 1_759_999_980_000;

#[test]
fn the_event_list_keeps_the_last_fifty_newest_first() {
    let mut j = Journal::default();
    for i in 0..(EVENTS as u64 + 7) {
        // Far enough apart not to be counted as repeats.
        j.note(
            T0 + i * 60_000,
            EventKind::MemberDown,
            "ms1",
            &format!("n{i}"),
        );
    }
    let events: Vec<&Notable> = j.events().collect();
    assert_eq!(events.len(), EVENTS);
    assert_eq!(events[0].detail, format!("n{}", EVENTS + 6));
    assert_eq!(events[EVENTS - 1].detail, "n7");
    assert!(events.windows(2).all(|w| w[0].at > w[1].at));
}

#[test]
fn repeats_close_together_count_on_one_line() {
    let mut j = Journal::default();
    j.note(T0, EventKind::MemberDown, "ms1", "keepalives unanswered");
    for i in 0..500 {
        j.note(T0 + 1 + i, EventKind::ResumeOk, "ms1", "to ms2");
    }
    // Another subject, or the same one after a pause, is a new line.
    j.note(T0 + 600, EventKind::ResumeOk, "ms3", "to ms2");
    j.note(T0 + 700, EventKind::ResumeOk, "ms3", "to ms4");
    j.note(
        T0 + 700 + COALESCE_MS + 1,
        EventKind::ResumeOk,
        "ms3",
        "to ms2",
    );
    let events: Vec<&Notable> = j.events().collect();
    assert_eq!(events.len(), 4, "{events:#?}");
    assert_eq!((events[0].count, events[0].at), (1, T0 + 701 + COALESCE_MS));
    assert_eq!(
        (events[1].count, events[1].detail.as_str()),
        (2, "to ms4"),
        "the latest detail"
    );
    assert_eq!(
        (events[2].count, events[2].at, events[2].last_at),
        (500, T0 + 1, T0 + 500)
    );
    assert_eq!(events[3].kind, EventKind::MemberDown);
    assert!(events[3].alarm && !events[2].alarm);
    // Every resume counts for the hour, coalesced or not.
    assert_eq!(j.resumed.total(T0 + 60_000), 503);
}

#[test]
fn the_last_hour_forgets_what_is_older() {
    let mut h = LastHour::default();
    for minute in 0..90 {
        h.add(T0 + minute * 60_000);
        h.add(T0 + minute * 60_000 + 30_000);
    }
    assert!(h.buckets.len() <= HOUR_MINUTES as usize, "bounded");
    let now = T0 + 89 * 60_000 + 59_000;
    assert_eq!(h.total(now), 120);
    assert_eq!(h.total(now + 30 * 60_000), 60);
    assert_eq!(h.total(now + 60 * 60_000), 0);
}

#[test]
fn probe_round_trips_are_kept_per_member_twenty_at_most() {
    let mut j = Journal::default();
    let t = Instant::now();
    // An answer without a probe sent (a stray) records nothing.
    j.probe_answered("ms1", t);
    assert_eq!(j.member("ms1").unwrap().last_rtt_us(), None);
    for i in 0..25u64 {
        j.probe_sent("ms1", t);
        j.probe_answered("ms1", t + Duration::from_micros(1000 + i));
    }
    // A second answer to the same probe does not count twice.
    j.probe_answered("ms1", t + Duration::from_secs(9));
    let track = j.member("ms1").unwrap();
    assert_eq!(track.rtts_us.len(), RTT_HISTORY);
    assert_eq!(track.rtts_us.front(), Some(&1005));
    assert_eq!(track.last_rtt_us(), Some(1024));
    assert!(j.member("ms2").is_none());
}

#[test]
fn a_member_change_is_timed_and_listed_and_removed_members_are_forgotten() {
    let mut j = Journal::default();
    j.member_changed(T0, "ms1", EventKind::MemberDown, "keepalives unanswered");
    j.member_changed(
        T0 + 5,
        "ms2",
        EventKind::MemberUp,
        "answers keepalives again",
    );
    assert_eq!(j.member("ms1").unwrap().changed_at, Some(T0));
    assert_eq!(j.events().count(), 2);
    j.retain_members(|name| name == "ms2");
    assert!(j.member("ms1").is_none());
    assert_eq!(j.member("ms2").unwrap().changed_at, Some(T0 + 5));
    // The events stay: they are history.
    assert_eq!(j.events().count(), 2);
}

#[test]
fn takeovers_count_for_the_hour_and_are_alarms() {
    let mut j = Journal::default();
    j.note(T0, EventKind::Active, "node", "start (epoch 1)");
    j.note(
        T0 + 60_000,
        EventKind::Takeover,
        "node",
        "peer_lost (epoch 2)",
    );
    assert_eq!(j.takeovers.total(T0 + 120_000), 1);
    let kinds: Vec<(EventKind, bool)> = j.events().map(|e| (e.kind, e.alarm)).collect();
    assert_eq!(
        kinds,
        [(EventKind::Takeover, true), (EventKind::Active, false)]
    );
}
