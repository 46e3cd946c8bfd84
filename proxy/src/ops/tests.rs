use serde_json::json;

use super::*;

#[test]
fn members_are_a_table_with_state_and_draining_in_words() {
    let v = json!([
        {"group": "media", "member": "ms1", "address": "127.0.0.1:5070", "state": "up", "draining": true, "calls": 12},
        {"group": "media", "member": "ms2", "address": "127.0.0.1:5080", "state": "down", "draining": false, "calls": 0},
    ]);
    assert_eq!(
        describe_members(&v),
        "GROUP  MEMBER  ADDRESS         STATE  DRAINING  CALLS\n\
         media  ms1     127.0.0.1:5070  up     DRAINING  12\n\
         media  ms2     127.0.0.1:5080  DOWN   no        0\n"
    );
}

#[test]
fn calls_show_caller_to_callee_age_and_moves() {
    let v = json!([
        {"id": 1, "call_id": "c1", "caller": "sip:alice@x", "callee": "sip:100@y", "trunk": "carrier",
         "group": "media", "member": "ms2", "state": "confirmed", "age_s": 3725, "resumes": 1, "moves": 1},
    ]);
    let text = describe_calls(&v);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(lines[0].starts_with("CALL-ID  CALLER → CALLEE"), "{text}");
    assert!(
        lines[1].contains("sip:alice@x → sip:100@y")
            && lines[1].contains("ms2")
            && lines[1].contains("1h02m")
            && lines[1].ends_with("1 (1 moved)"),
        "{text}"
    );
    assert_eq!(lines[2], "1 calls");
    assert_eq!(describe_calls(&json!([])), "no calls\n");
}

#[test]
fn status_names_the_role_peer_lag_and_wans() {
    let v = json!({"node": "a", "role": "active", "epoch": 3, "peer_role": "standby", "peer_epoch": 3,
        "seq": 90, "standby_connected": true, "lag_records": 0, "lag_ms": 1, "records": 12,
        "takeovers": 1, "wan": [{"wan": "centre", "state": "down", "judged": "up", "forced": "down",
        "in_state_s": 40, "last_change": "forced by the operator"}]});
    let text = describe_status(&v);
    assert!(
        text.starts_with("node: a  role: active  epoch: 3\n"),
        "{text}"
    );
    assert!(
        text.contains("peer: standby (epoch 3)  standby connected"),
        "{text}"
    );
    assert!(text.contains("lag 0 records / 1 ms"), "{text}");
    assert!(text.contains("centre  DOWN   up      down"), "{text}");
    let lone = describe_status(&json!({"role": "single", "wan": null}));
    assert_eq!(lone, "role: single (no standby pair)\nWANs: none\n");
    // A pair without its standby says so loudly.
    let alone = describe_status(&json!({"role": "active", "standby_connected": false}));
    assert!(alone.contains("NO STANDBY CONNECTED"), "{alone}");
}

#[test]
fn a_move_warns_when_the_member_still_gets_new_calls() {
    let drained = json!({"scheduled": 4, "not_answered": 1, "moving": 0, "draining": true});
    assert_eq!(
        describe_move("ms1", &drained),
        "ms1: 4 answered calls scheduled to move (paced); 1 not answered yet stay\n"
    );
    let open = json!({"scheduled": 2, "not_answered": 0, "moving": 0, "draining": false});
    assert!(describe_move("ms1", &open).contains("warning: ms1 is not draining"));
}
