use super::*;

#[test]
fn calls_of_all_shards_oldest_first_within_the_limit() {
    let merged = calls(
        vec![
            Ok(r#"[{"call_id":"a","age_s":5},{"call_id":"b","age_s":1}]"#.to_owned()),
            Ok(r#"[{"call_id":"c","age_s":9}]"#.to_owned()),
        ],
        2,
    )
    .unwrap();
    assert_eq!(
        merged,
        r#"[{"age_s":9,"call_id":"c"},{"age_s":5,"call_id":"a"}]"#
    );
    assert_eq!(
        calls(vec![Err("no member x".into())], 5),
        Err("no member x".into())
    );
}

#[test]
fn members_add_up_every_shards_calls() {
    let merged = members(vec![
        r#"[{"member":"ms1","calls":2},{"member":"ms2","calls":0}]"#.to_owned(),
        r#"[{"member":"ms1","calls":3},{"member":"ms2","calls":1}]"#.to_owned(),
    ]);
    assert_eq!(
        merged,
        r#"[{"calls":5,"member":"ms1"},{"calls":1,"member":"ms2"}]"#
    );
}

#[test]
fn moves_add_up() {
    let report = |scheduled| MoveReport {
        scheduled,
        not_answered: 1,
        moving: 0,
        draining: true,
    };
    let total = moves(vec![Ok(report(2)), Ok(report(3))]).unwrap();
    assert_eq!((total.scheduled, total.not_answered), (5, 2));
    assert!(first::<bool>(Vec::new()).is_err());
}

#[test]
fn the_status_page_adds_every_shards_calls_and_events_to_shard_0s_view() {
    let shard0 = r#"{"at_ms":10,"calls":{"active":2,"per_group":{"default":2},"per_trunk":{"carrier":2}},
        "groups":[{"name":"default","calls":2,"members":[{"name":"ms1","state":"down","calls":2}]}],
        "last_hour":{"resumed":1,"resume_failures":0,"takeovers":0},
        "events":[{"at":9,"kind":"member_down","subject":"ms1"},{"at":5,"kind":"config_reloaded","subject":"node"}]}"#;
    let shard1 = r#"{"at_ms":10,"calls":{"active":3,"per_group":{"default":3},"per_trunk":{"carrier":1,"pbx":2}},
        "groups":[{"name":"default","calls":3,"members":[{"name":"ms1","state":"up","calls":3}]}],
        "last_hour":{"resumed":2,"resume_failures":1,"takeovers":0},
        "events":[{"at":9,"kind":"member_down","subject":"ms1"},{"at":7,"kind":"call_resumed","subject":"ms1"}]}"#;
    let merged: Value =
        serde_json::from_str(&overview(vec![shard0.to_owned(), shard1.to_owned()])).unwrap();
    assert_eq!(merged["calls"]["active"], 5);
    assert_eq!(merged["calls"]["per_group"]["default"], 5);
    assert_eq!(merged["calls"]["per_trunk"]["carrier"], 3);
    assert_eq!(merged["calls"]["per_trunk"]["pbx"], 2);
    assert_eq!(merged["groups"][0]["calls"], 5);
    assert_eq!(merged["groups"][0]["members"][0]["calls"], 5);
    // The member's state is shard 0's: it probes.
    assert_eq!(merged["groups"][0]["members"][0]["state"], "down");
    assert_eq!(merged["last_hour"]["resumed"], 3);
    assert_eq!(merged["last_hour"]["resume_failures"], 1);
    // Newest first; shard 1's copy of the member's change left out.
    let events: Vec<(u64, &str)> = merged["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["at"].as_u64().unwrap(), e["kind"].as_str().unwrap()))
        .collect();
    assert_eq!(
        events,
        [
            (9, "member_down"),
            (7, "call_resumed"),
            (5, "config_reloaded")
        ]
    );
    assert_eq!(overview(vec!["not json".into()]), "{}");
}
