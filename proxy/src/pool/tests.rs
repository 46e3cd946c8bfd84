use super::*;
use crate::config::MemberConfig;

fn config(strategy: Strategy, n: usize) -> PoolConfig {
    PoolConfig {
        name: "media".into(),
        strategy,
        health: HealthConfig {
            failures_to_down: 2,
            successes_to_up: 2,
            ..HealthConfig::default()
        },
        members: (0..n)
            .map(|i| MemberConfig {
                name: format!("ms{i}"),
                address: format!("127.0.0.1:{}", 5070 + i).parse().unwrap(),
                transport: MemberTransport::Udp,
                weight: (i as u32 + 1) * 10,
                priority: (n - i) as u32,
            })
            .collect(),
    }
}

#[test]
fn round_robin_spreads_and_skips_down_members() {
    let mut p = Pool::new(&config(Strategy::RoundRobin, 3));
    let picks: Vec<_> = (0..6).map(|_| p.select(&[]).unwrap()).collect();
    assert_eq!(picks, vec![0, 1, 2, 0, 1, 2]);
    p.probe_result(1, false);
    assert_eq!(
        p.probe_result(1, false),
        Some(HealthChange {
            member: 1,
            now: Health::Down
        })
    );
    let picks: Vec<_> = (0..4).map(|_| p.select(&[]).unwrap()).collect();
    assert_eq!(picks, vec![0, 2, 0, 2]);
    assert_eq!(p.select(&[0, 2]), None);
}

#[test]
fn health_needs_consecutive_outcomes() {
    let mut p = Pool::new(&config(Strategy::RoundRobin, 1));
    assert_eq!(p.probe_result(0, false), None);
    assert_eq!(
        p.probe_result(0, true),
        None,
        "a success resets the failure streak"
    );
    assert_eq!(p.probe_result(0, false), None);
    assert!(p.probe_result(0, false).is_some());
    assert_eq!(p.member(0).health, Health::Down);
    assert_eq!(p.select(&[]), None);
    assert_eq!(p.probe_result(0, true), None);
    assert_eq!(
        p.probe_result(0, true),
        Some(HealthChange {
            member: 0,
            now: Health::Up
        })
    );
    assert_eq!(p.select(&[]), Some(0));
}

#[test]
fn sequential_takes_lowest_priority_first() {
    let mut p = Pool::new(&config(Strategy::Sequential, 3));
    assert_eq!(p.select(&[]), Some(2));
    assert_eq!(p.select(&[]), Some(2));
    assert_eq!(p.select(&[2]), Some(1));
}

#[test]
fn weighted_follows_weights() {
    let mut p = Pool::new(&config(Strategy::Weighted, 3));
    let mut counts = [0u32; 3];
    for _ in 0..6000 {
        counts[p.select(&[]).unwrap()] += 1;
    }
    // Weights 10:20:30.
    assert!(counts[0] > 700 && counts[0] < 1300, "{counts:?}");
    assert!(counts[2] > 2600 && counts[2] < 3400, "{counts:?}");
}

#[test]
fn random_uses_every_member() {
    let mut p = Pool::new(&config(Strategy::Random, 3));
    let mut seen = [false; 3];
    for _ in 0..100 {
        seen[p.select(&[1]).unwrap()] = true;
    }
    assert_eq!(seen, [true, false, true]);
}

#[test]
fn force_down_is_immediate_and_the_probes_bring_the_member_back() {
    let mut p = Pool::new(&config(Strategy::RoundRobin, 2));
    assert_eq!(p.probe_result(0, false), None, "one failure of two");
    assert_eq!(
        p.force_down(0),
        Some(HealthChange {
            member: 0,
            now: Health::Down
        })
    );
    assert_eq!(p.force_down(0), None, "already down");
    assert_eq!(p.select(&[]), Some(1));
    assert_eq!(p.probe_result(0, true), None);
    assert!(p.probe_result(0, true).is_some(), "two answers: up again");
    assert_eq!(p.member(0).health, Health::Up);
}

/// Which member each of `keys` lands on.
fn picks(p: &mut Pool, exclude: &[usize], keys: &[String]) -> Vec<Option<usize>> {
    keys.iter().map(|k| p.select_for(exclude, k)).collect()
}

fn call_ids(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{i:08x}@trunk.example")).collect()
}

#[test]
fn hash_strategies_are_stable_and_spread_keys() {
    for strategy in [Strategy::HashCallId, Strategy::HashFromUser] {
        let keys = call_ids(300);
        let mut p = Pool::new(&config(strategy, 3));
        let first = picks(&mut p, &[], &keys);
        assert_eq!(
            picks(&mut p, &[], &keys),
            first,
            "the same key, the same member"
        );
        // Another node (a fresh pool, as the standby has) agrees.
        let mut other = Pool::new(&config(strategy, 3));
        assert_eq!(picks(&mut other, &[], &keys), first);
        let mut counts = [0; 3];
        for pick in &first {
            counts[pick.unwrap()] += 1;
        }
        assert!(counts.iter().all(|&c| c > 60), "{strategy:?}: {counts:?}");
    }
}

#[test]
fn hash_skips_excluded_and_down_members_and_moves_only_their_keys() {
    let keys = call_ids(200);
    let mut p = Pool::new(&config(Strategy::HashCallId, 3));
    let before = picks(&mut p, &[], &keys);
    let after = picks(&mut p, &[1], &keys);
    for (b, a) in before.iter().zip(&after) {
        assert_ne!(*a, Some(1), "excluded");
        if *b != Some(1) {
            assert_eq!(a, b, "a key not on the excluded member stays");
        }
    }
    p.force_down(0);
    for (b, a) in before.iter().zip(picks(&mut p, &[], &keys)) {
        assert_ne!(a, Some(0), "down");
        if *b != Some(0) {
            assert_eq!(a, *b);
        }
    }
    assert_eq!(p.select_for(&[1, 2], "x"), None, "nothing left");
}

#[test]
fn hash_key_follows_the_strategy_and_select_hashes_the_empty_key() {
    let mut p = Pool::new(&config(Strategy::HashFromUser, 3));
    assert_eq!(p.hash_key("call-1", "alice"), "alice");
    let empty = p.select_for(&[], "");
    assert_eq!(p.select(&[]), empty);
    assert_eq!(p.select(&[]), empty);
    let p = Pool::new(&config(Strategy::HashCallId, 3));
    assert_eq!(p.hash_key("call-1", "alice"), "call-1");
    let p = Pool::new(&config(Strategy::RoundRobin, 3));
    assert_eq!(p.hash_key("call-1", "alice"), "call-1", "unused");
}

#[test]
fn other_strategies_ignore_the_key() {
    let mut p = Pool::new(&config(Strategy::RoundRobin, 3));
    let picks: Vec<_> = ["a", "a", "a"]
        .iter()
        .map(|k| p.select_for(&[], k).unwrap())
        .collect();
    assert_eq!(picks, vec![0, 1, 2]);
}

#[test]
fn from_group_takes_probe_and_resume() {
    let pool_config = config(Strategy::Sequential, 2);
    let mut group = pool_config.as_group(true);
    group.probe = Probe::Off;
    group.resume = false;
    let p = Pool::from_group(&group);
    assert_eq!((p.probe, p.resume), (Probe::Off, false));
    assert_eq!(p.members.len(), 2);
    assert_eq!(p.strategy(), Strategy::Sequential);
    let p = Pool::new(&pool_config);
    assert_eq!((p.probe, p.resume), (Probe::Options, true));
    let mut off = pool_config.clone();
    off.health.enabled = false;
    assert_eq!(Pool::new(&off).probe, Probe::Off, "[pool] without probes");
}

#[test]
fn a_draining_member_gets_no_pick_by_any_strategy_until_undrained() {
    for strategy in [
        Strategy::RoundRobin,
        Strategy::Sequential,
        Strategy::Random,
        Strategy::Weighted,
        Strategy::HashCallId,
    ] {
        let mut p = Pool::new(&config(strategy, 3));
        p.members[1].draining = true;
        for k in 0..30 {
            let pick = p.select_for(&[], &format!("call-{k}"));
            assert!(matches!(pick, Some(0 | 2)), "{strategy:?}: {pick:?}");
        }
        // Draining is not down: its health is untouched.
        assert_eq!(p.member(1).health, Health::Up);
        p.members[0].draining = true;
        p.members[2].draining = true;
        assert_eq!(p.select(&[]), None, "{strategy:?}: every member drains");
        p.members[1].draining = false;
        assert_eq!(p.select_for(&[], "x"), Some(1), "{strategy:?}");
    }
}
