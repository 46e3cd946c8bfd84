use super::*;

fn wan() -> Wan {
    Wan::new(WanSettings {
        name: "dc".into(),
        groups: vec!["central".into()],
        probe_hosts: Vec::new(),
        failures_to_down: 3,
        successes_to_up: 4,
        hold_down: Duration::from_secs(10),
        round: Duration::from_secs(1),
        probe_interval: Duration::from_millis(250),
    })
}

/// Rounds one second apart from `t`; `alive[i]`: something answered in
/// round i. The transitions, by round.
fn rounds(w: &mut Wan, t: &mut Instant, alive: &[bool]) -> Vec<(usize, bool)> {
    let mut out = Vec::new();
    for (i, &a) in alive.iter().enumerate() {
        if a {
            w.answered_at(*t);
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
    assert_eq!(w.force(Forced::Down, t).map(|t| t.down), Some(true));
    // Evidence of a live WAN changes nothing while forced.
    assert!(rounds(&mut w, &mut t, &[true; 10]).is_empty());
    assert!(w.is_down());
    // Auto: the evidence (alive) decides at once.
    assert_eq!(w.force(Forced::Auto, t).map(|t| t.down), Some(false));
    assert_eq!(w.force(Forced::Up, t), None);
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

#[test]
fn probes_go_out_every_interval_with_a_bounded_number_unanswered_per_target() {
    let mut w = wan();
    let target = Target::udp("127.0.0.1:5060".parse().unwrap());
    w.set_probe_targets(vec![target]);
    let mut t = Instant::now();
    assert_eq!(w.probes_due(t), [(0, target)]);
    // Not again before the interval (a tick a tenth early is on time).
    assert!(w.probes_due(t + Duration::from_millis(200)).is_empty());
    for _ in 1..MAX_OUTSTANDING {
        t += Duration::from_millis(230);
        assert_eq!(w.probes_due(t).len(), 1);
    }
    // All unanswered: a dead link gets no more.
    t += Duration::from_millis(250);
    assert!(w.probes_due(t).is_empty());
    // One given up (Timer F) is no evidence, but frees a slot.
    w.probe_done(0, false, t);
    t += Duration::from_millis(250);
    assert_eq!(w.probes_due(t).len(), 1);
    assert!(w.end_round(t).is_none());
    assert_eq!(w.dead_rounds, 1);
    // One answered is.
    w.probe_done(0, true, t);
    t += Duration::from_secs(1);
    w.end_round(t);
    assert_eq!(w.dead_rounds, 0);
}

/// A WAN simulated for `seconds` under `loss` (per direction) and
/// `one_way` delay: probes as the machine sends them (`probes_due` every
/// 50 ms tick), retransmitted by Timer E (T1 500 ms doubling to T2 4 s)
/// until answered or Timer F (32 s); a lost request or answer is lost per
/// packet. `answer_within`: answers later than this after the first send
/// are not counted (a keepalive judged by a timeout), `None`: counted
/// whenever they come (the WAN's own probes). The number of transitions.
fn simulate(
    settings: WanSettings,
    loss: f64,
    one_way: Duration,
    answer_within: Option<Duration>,
    seconds: u64,
) -> usize {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(13);
    let mut w = Wan::new(settings);
    let target = Target::udp("127.0.0.1:5060".parse().unwrap());
    w.set_probe_targets(vec![target]);
    let start = Instant::now();
    // Per probe: first sent, next retransmission, its interval, and when
    // its answer arrives (once one got through both ways).
    struct Probe {
        first: Instant,
        next: Instant,
        interval: Duration,
        arrives: Option<Instant>,
    }
    let mut probes: Vec<Probe> = Vec::new();
    let mut transitions = 0;
    let tick = Duration::from_millis(50);
    let mut now = start;
    while now < start + Duration::from_secs(seconds) {
        now += tick;
        // Answers that arrived by now end their probe.
        let mut i = 0;
        while i < probes.len() {
            let p = &probes[i];
            let answered = p.arrives.is_some_and(|a| a <= now);
            let given_up = now.saturating_duration_since(p.first) >= Duration::from_secs(32);
            if answered || given_up {
                let counted =
                    answered && answer_within.is_none_or(|d| p.arrives.unwrap() - p.first <= d);
                w.probe_done(0, counted, now);
                probes.swap_remove(i);
            } else {
                i += 1;
            }
        }
        // Retransmissions due (each a fresh chance both ways).
        for p in probes.iter_mut().filter(|p| p.arrives.is_none()) {
            if p.next <= now {
                if rng.gen::<f64>() >= loss && rng.gen::<f64>() >= loss {
                    p.arrives = Some(now + 2 * one_way);
                }
                p.interval = (p.interval * 2).min(Duration::from_secs(4));
                p.next = now + p.interval;
            }
        }
        if w.end_round(now).is_some() {
            transitions += 1;
        }
        for _ in w.probes_due(now) {
            let through = rng.gen::<f64>() >= loss && rng.gen::<f64>() >= loss;
            probes.push(Probe {
                first: now,
                next: now + Duration::from_millis(500),
                interval: Duration::from_millis(500),
                arrives: through.then_some(now + 2 * one_way),
            });
        }
    }
    transitions
}

fn defaults() -> WanSettings {
    // The defaults of `[[wan]]`.
    WanSettings {
        name: "dc".into(),
        groups: vec!["central".into()],
        probe_hosts: Vec::new(),
        failures_to_down: 3,
        successes_to_up: 5,
        hold_down: Duration::from_secs(10),
        round: Duration::from_secs(1),
        probe_interval: Duration::from_millis(250),
    }
}

#[test]
fn a_slow_lossy_wan_is_not_judged_down_with_the_defaults() {
    // The link: 20 % loss and 300 ms each way, for an hour.
    let hour = 3600;
    let delay = Duration::from_millis(300);
    assert_eq!(simulate(defaults(), 0.2, delay, None, hour), 0);
    // One probe a round flaps on the same link even when late answers
    // count (10 transitions in the hour with this seed)...
    let one_a_round = WanSettings {
        probe_interval: Duration::from_secs(1),
        ..defaults()
    };
    assert!(simulate(one_a_round.clone(), 0.2, delay, None, hour) > 5);
    // ...and what it replaced, a member's keepalive judged by a 500 ms
    // timeout, shorter than the round trip, is down at once and for good.
    let keepalive = Some(Duration::from_millis(500));
    assert_eq!(simulate(one_a_round, 0.2, delay, keepalive, hour), 1);
    // A cut link is still judged down.
    assert!(simulate(defaults(), 1.0, delay, None, 10) == 1);
}

#[test]
fn time_in_fallback_adds_up_the_periods_down() {
    let mut w = wan();
    let mut t = Instant::now();
    assert_eq!(w.last_change(t), (None, None));
    rounds(&mut w, &mut t, &[false; 3]);
    // Down at the third dead round; 10 s later (hold-down) up again.
    let tr = rounds(&mut w, &mut t, &[true; 10]);
    assert_eq!(tr, [(9, false)]);
    assert_eq!(w.time_in_fallback(t), Duration::from_secs(10));
    let (since, why) = w.last_change(t);
    assert_eq!(since, Some(Duration::ZERO));
    assert!(why.unwrap().contains("answers across the WAN"), "{why:?}");
    // Up time adds nothing; a forced period does.
    t += Duration::from_secs(30);
    w.force(Forced::Down, t);
    t += Duration::from_secs(5);
    assert_eq!(w.time_in_fallback(t), Duration::from_secs(15));
    w.force(Forced::Auto, t);
    t += Duration::from_secs(5);
    assert_eq!(w.time_in_fallback(t), Duration::from_secs(15));
}
