use super::*;

fn wan() -> Wan {
    Wan::new(WanSettings {
        name: "dc".into(),
        groups: vec!["central".into()],
        probe_hosts: Vec::new(),
        failures_to_down: 3,
        successes_to_up: 4,
        hold_down: Duration::from_secs(10),
    })
}

/// Rounds one second apart from `t`; `alive[i]`: something answered in
/// round i. The transitions, by round.
fn rounds(w: &mut Wan, t: &mut Instant, alive: &[bool]) -> Vec<(usize, bool)> {
    let mut out = Vec::new();
    for (i, &a) in alive.iter().enumerate() {
        if a {
            w.evidence_alive();
        }
        *t += Duration::from_secs(1);
        if let Some(tr) = w.end_round(*t) {
            out.push((i, tr.down));
        }
    }
    out
}

#[test]
fn down_after_n_dead_rounds_in_a_row_not_before() {
    let mut w = wan();
    let mut t = Instant::now();
    // Two dead rounds, a live one: the count starts again.
    assert!(rounds(&mut w, &mut t, &[false, false, true]).is_empty());
    assert_eq!(rounds(&mut w, &mut t, &[false, false, false]), [(2, true)]);
    assert!(w.is_down());
}

#[test]
fn up_only_after_m_live_rounds_and_the_hold_down() {
    let mut w = wan();
    let mut t = Instant::now();
    rounds(&mut w, &mut t, &[false, false, false]);
    assert!(w.is_down());
    // Four live rounds, but only 4 s since it went down: held.
    assert!(rounds(&mut w, &mut t, &[true, true, true, true]).is_empty());
    // A dead round resets the run.
    assert!(rounds(&mut w, &mut t, &[false]).is_empty());
    // Live from now on: 4 in a row by the 4th round, but up only at the
    // 5th, 10 s after it went down.
    let tr = rounds(&mut w, &mut t, &[true; 8]);
    assert_eq!(tr, [(4, false)]);
    assert!(!w.is_down());
}

#[test]
fn a_lossy_link_that_answers_now_and_then_does_not_flap() {
    let mut w = wan();
    let mut t = Instant::now();
    // 20 % of rounds dead, never three in a row.
    let pattern: Vec<bool> = (0..600).map(|i| i % 5 != 0 && i % 7 != 3).collect();
    assert!(rounds(&mut w, &mut t, &pattern).is_empty());
}

#[test]
fn the_operator_forces_and_gives_back() {
    let mut w = wan();
    let mut t = Instant::now();
    assert_eq!(w.force(Forced::Down).map(|t| t.down), Some(true));
    // Evidence of a live WAN changes nothing while forced.
    assert!(rounds(&mut w, &mut t, &[true; 10]).is_empty());
    assert!(w.is_down());
    // Auto: the evidence (alive) decides at once.
    assert_eq!(w.force(Forced::Auto).map(|t| t.down), Some(false));
    assert_eq!(w.force(Forced::Up), None);
    assert!(rounds(&mut w, &mut t, &[false; 5]).is_empty());
    assert!(!w.is_down());
}

#[test]
fn a_record_restores_the_state_on_the_standby() {
    let mut w = wan();
    let mut t = Instant::now();
    rounds(&mut w, &mut t, &[false; 3]);
    let rec = w.record();
    let mut copy = wan();
    copy.restore(&rec, t);
    assert!(copy.is_down());
    assert_eq!(Forced::parse("down"), Some(Forced::Down));
    assert_eq!(Forced::parse("sideways"), None);
}
