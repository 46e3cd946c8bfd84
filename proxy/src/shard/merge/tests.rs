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
