use super::*;

const T: Timing = Timing {
    dead_after: Duration::from_millis(500),
    retry_delay: Duration::from_millis(500),
    start_wait: Duration::from_millis(2000),
};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn hb(node: &str, role: Role, epoch: u64) -> PeerHeartbeat {
    PeerHeartbeat {
        node: node.into(),
        role,
        priority: 100,
        epoch,
        schema: SCHEMA,
    }
}

const SCHEMA: u32 = 1 << 16;
const OK: CheckResult = CheckResult {
    probes_ok: true,
    vip_answered: false,
};

/// A node "b" following an active "a" at epoch 3, replicating.
fn standby(t0: Instant) -> RoleMachine {
    let mut m = RoleMachine::new("b", 100, SCHEMA, 0, T, t0);
    assert!(m.heartbeat(t0, hb("a", Role::Active, 3)).is_empty());
    assert_eq!(m.role(), Role::Reconnecting, "follows, copy not level yet");
    m.set_replicating(true);
    assert_eq!(m.role(), Role::Standby);
    assert_eq!(m.epoch(), 3);
    m
}

#[test]
fn a_standby_takes_over_a_silent_peer_after_checks_with_a_higher_epoch() {
    let t0 = Instant::now();
    let mut m = standby(t0);
    assert!(m.tick(t0 + ms(400)).is_empty(), "silent, not yet lost");
    assert_eq!(m.tick(t0 + ms(501)), vec![Action::RunChecks]);
    assert_eq!(m.role(), Role::Reconnecting);
    assert!(m.tick(t0 + ms(520)).is_empty(), "one round at a time");
    assert_eq!(
        m.checks_done(t0 + ms(600), OK),
        vec![Action::BecomeActive {
            epoch: 4,
            reason: "peer_lost"
        }]
    );
    assert_eq!(m.role(), Role::Active);
    assert!(
        m.tick(t0 + ms(5000)).is_empty(),
        "no fail-back, no flapping"
    );
}

#[test]
fn someone_answering_on_the_floating_address_means_only_the_link_is_down() {
    let t0 = Instant::now();
    let mut m = standby(t0);
    assert_eq!(m.tick(t0 + ms(600)), vec![Action::RunChecks]);
    let vip_alive = CheckResult {
        probes_ok: true,
        vip_answered: true,
    };
    assert!(m.checks_done(t0 + ms(700), vip_alive).is_empty());
    assert_eq!(m.role(), Role::Reconnecting);
    assert!(m.tick(t0 + ms(900)).is_empty(), "retry delay");
    assert_eq!(m.tick(t0 + ms(1201)), vec![Action::RunChecks]);
    // The link heals: the active is heard again; the standby resyncs.
    assert!(m
        .heartbeat(t0 + ms(1250), hb("a", Role::Active, 3))
        .is_empty());
    assert!(m.checks_done(t0 + ms(1300), OK).is_empty(), "peer is back");
    assert_eq!(m.role(), Role::Reconnecting);
    m.set_replicating(true);
    assert_eq!(m.role(), Role::Standby);
    assert_eq!(m.epoch(), 3);
}

#[test]
fn a_node_that_cannot_reach_its_probes_never_takes_over() {
    let t0 = Instant::now();
    let mut m = standby(t0);
    assert_eq!(m.tick(t0 + ms(600)), vec![Action::RunChecks]);
    let cut_off = CheckResult {
        probes_ok: false,
        vip_answered: false,
    };
    assert!(m.checks_done(t0 + ms(700), cut_off).is_empty());
    assert_eq!(m.role(), Role::Failed);
    assert_eq!(m.tick(t0 + ms(1300)), vec![Action::RunChecks], "retries");
    assert!(matches!(
        m.checks_done(t0 + ms(1400), OK)[..],
        [Action::BecomeActive { epoch: 4, .. }]
    ));
}

#[test]
fn an_active_node_steps_down_for_a_higher_epoch_and_announces_over_a_lower_one() {
    let t0 = Instant::now();
    let mut m = standby(t0);
    m.tick(t0 + ms(600));
    m.checks_done(t0 + ms(600), OK);
    assert_eq!((m.role(), m.epoch()), (Role::Active, 4));
    // The old active (epoch 3) comes back still thinking it is active.
    assert_eq!(
        m.heartbeat(t0 + ms(700), hb("a", Role::Active, 3)),
        vec![Action::Announce]
    );
    assert_eq!(m.role(), Role::Active);
    // …and from the old active's side:
    let mut old = RoleMachine::new("a", 100, SCHEMA, 3, T, t0);
    old.tick(t0 + ms(2000));
    old.checks_done(t0 + ms(2000), OK);
    assert_eq!(old.role(), Role::Active);
    let epoch = old.epoch();
    assert_eq!(
        old.heartbeat(t0 + ms(2100), hb("b", Role::Active, epoch + 1)),
        vec![Action::StepDown { epoch: epoch + 1 }]
    );
    assert_eq!(old.role(), Role::Reconnecting);
    assert!(old.tick(t0 + ms(2200)).is_empty(), "follows the new active");
}

#[test]
fn equal_epochs_are_decided_by_priority_then_name() {
    let t0 = Instant::now();
    let mut a = RoleMachine::new("a", 100, SCHEMA, 7, T, t0);
    a.tick(t0 + ms(2000));
    a.checks_done(t0 + ms(2000), OK);
    let e = a.epoch();
    // "b" is also active at the same epoch: "a" (lower name) stays.
    assert_eq!(
        a.heartbeat(t0 + ms(2100), hb("b", Role::Active, e)),
        vec![Action::Announce]
    );
    let mut prio = hb("b", Role::Active, e);
    prio.priority = 200;
    assert_eq!(
        a.heartbeat(t0 + ms(2200), prio),
        vec![Action::StepDown { epoch: e }]
    );
}

#[test]
fn a_lone_node_starts_only_after_the_start_wait_and_passing_checks() {
    let t0 = Instant::now();
    let mut m = RoleMachine::new("a", 100, SCHEMA, 0, T, t0);
    assert!(m.tick(t0 + ms(1999)).is_empty());
    assert_eq!(m.tick(t0 + ms(2000)), vec![Action::RunChecks]);
    let cut_off = CheckResult {
        probes_ok: false,
        vip_answered: false,
    };
    assert!(m.checks_done(t0 + ms(2100), cut_off).is_empty());
    assert_eq!(m.role(), Role::Failed, "fail-safe start");
    assert_eq!(m.tick(t0 + ms(2600)), vec![Action::RunChecks]);
    assert_eq!(
        m.checks_done(t0 + ms(2700), OK),
        vec![Action::BecomeActive {
            epoch: 1,
            reason: "start"
        }]
    );
}

#[test]
fn of_two_nodes_starting_together_only_one_tries() {
    let t0 = Instant::now();
    let mut a = RoleMachine::new("a", 100, SCHEMA, 0, T, t0);
    let mut b = RoleMachine::new("b", 100, SCHEMA, 0, T, t0);
    a.heartbeat(t0 + ms(100), hb("b", Role::Starting, 0));
    b.heartbeat(t0 + ms(100), hb("a", Role::Starting, 0));
    a.heartbeat(t0 + ms(1900), hb("b", Role::Starting, 0));
    b.heartbeat(t0 + ms(1900), hb("a", Role::Starting, 0));
    assert_eq!(a.tick(t0 + ms(2000)), vec![Action::RunChecks]);
    assert!(b.tick(t0 + ms(2000)).is_empty(), "b waits for a");
}

#[test]
fn a_node_with_a_copy_goes_before_a_restarted_empty_one() {
    let t0 = Instant::now();
    // "b" follows; the active "a" is killed and restarted at once: "a"
    // starts empty while "b" has every call.
    let mut b = standby(t0);
    let mut a = RoleMachine::new("a", 100, SCHEMA, 0, T, t0 + ms(100));
    b.heartbeat(t0 + ms(200), hb("a", Role::Starting, 0));
    a.heartbeat(t0 + ms(200), hb("b", Role::Reconnecting, 3));
    a.heartbeat(t0 + ms(2100), hb("b", Role::Reconnecting, 3));
    assert!(a.tick(t0 + ms(2200)).is_empty(), "the empty node waits");
    assert_eq!(b.tick(t0 + ms(300)), vec![Action::RunChecks]);
    assert!(matches!(
        b.checks_done(t0 + ms(400), OK)[..],
        [Action::BecomeActive { epoch: 4, .. }]
    ));
    assert!(a
        .heartbeat(t0 + ms(450), hb("b", Role::Active, 4))
        .is_empty());
    assert_eq!(a.role(), Role::Reconnecting);
}

#[test]
fn incompatible_schemas_never_take_over_automatically_but_hand_over() {
    let t0 = Instant::now();
    let mut m = RoleMachine::new("b", 100, 2 << 16, 0, T, t0);
    m.heartbeat(t0, hb("a", Role::Active, 3));
    assert_eq!(m.role(), Role::Upgrade { peer_newer: false });
    assert!(m.tick(t0 + ms(10_000)).is_empty(), "no automatic takeover");
    assert!(matches!(
        m.handover()[..],
        [Action::BecomeActive {
            epoch: 4,
            reason: "switchover"
        }]
    ));
    assert!(schema_compatible(1 << 16 | 3, 1 << 16 | 9));
    assert!(!schema_compatible(1 << 16, 2 << 16));
}

#[test]
fn role_codes_round_trip() {
    for r in Role::ALL {
        assert_eq!(Role::from_code(r.code()), Some(r));
    }
    assert_eq!(Role::from_code(99), None);
}

#[test]
fn with_an_external_owner_of_the_address_only_its_notifications_change_the_role() {
    let t0 = Instant::now();
    let mut m = standby(t0);
    m.set_external(true);
    assert!(
        m.tick(t0 + ms(10_000)).is_empty(),
        "a silent peer is not acted on"
    );
    assert_eq!(m.role(), Role::Standby);
    assert_eq!(
        m.external(true),
        vec![Action::BecomeActive {
            epoch: 4,
            reason: "external"
        }]
    );
    assert!(m.external(true).is_empty(), "already active");
    assert_eq!(m.external(false), vec![Action::StepDown { epoch: 4 }]);
    assert!(m.role().is_follower());
}
