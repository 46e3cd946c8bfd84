use metrics_util::debugging::{DebugValue, DebuggingRecorder};

use super::*;

fn status(role: Role, standby_connected: bool, peer_role: Option<Role>) -> Status {
    Status {
        role,
        peer_role,
        standby_connected,
        ..Status::starting("a".into(), 3)
    }
}

/// Runs `record` against a recorder of its own and returns every metric
/// it left, as (name, labels "k=v" sorted, value).
fn recorded(record: impl FnOnce()) -> Vec<(String, Vec<String>, DebugValue)> {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, record);
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let (_, key) = key.into_parts();
            let mut labels: Vec<String> = key
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            labels.sort();
            (key.name().to_owned(), labels, value)
        })
        .collect()
}

fn gauge(metrics: &[(String, Vec<String>, DebugValue)], name: &str) -> f64 {
    let found: Vec<_> = metrics.iter().filter(|m| m.0 == name).collect();
    assert_eq!(found.len(), 1, "{name}: {metrics:?}");
    match &found[0].2 {
        DebugValue::Gauge(v) => v.into_inner(),
        other => panic!("{name} is no gauge: {other:?}"),
    }
}

#[test]
fn standby_connected_and_peer_up_follow_the_status() {
    let level = recorded(|| status_metrics(&status(Role::Active, true, Some(Role::Standby))));
    assert_eq!(gauge(&level, "tandem_ha_standby_connected"), 1.0);
    assert_eq!(gauge(&level, "tandem_ha_peer_up"), 1.0);

    // The standby died: the active node serves alone.
    let alone = recorded(|| status_metrics(&status(Role::Active, false, None)));
    assert_eq!(gauge(&alone, "tandem_ha_standby_connected"), 0.0);
    assert_eq!(gauge(&alone, "tandem_ha_peer_up"), 0.0);

    // A standby hears its active peer; "standby connected" is the active
    // node's view only.
    let follower = recorded(|| status_metrics(&status(Role::Standby, false, Some(Role::Active))));
    assert_eq!(gauge(&follower, "tandem_ha_standby_connected"), 0.0);
    assert_eq!(gauge(&follower, "tandem_ha_peer_up"), 1.0);
}

#[test]
fn every_takeover_reason_is_a_counter_at_zero_from_the_start() {
    let metrics = recorded(register_takeover_counters);
    let mut reasons: Vec<&str> = metrics
        .iter()
        .filter(|m| m.0 == "tandem_ha_takeovers_total")
        .map(|m| {
            assert!(matches!(m.2, DebugValue::Counter(0)), "{m:?}");
            m.1[0].strip_prefix("reason=").unwrap()
        })
        .collect();
    reasons.sort_unstable();
    assert_eq!(reasons, ["external", "peer_lost", "start", "switchover"]);
}
