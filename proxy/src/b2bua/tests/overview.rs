//! The status page's view of the machine (`overview`), driven as the
//! other flows are: events in, the overview read back.

use serde_json::Value;

use super::*;

/// Member `name` of the overview's groups.
fn member<'a>(overview: &'a Value, name: &str) -> &'a Value {
    overview["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["members"].as_array().unwrap())
        .find(|m| m["name"] == name)
        .unwrap_or_else(|| panic!("no member {name} in {overview:#}"))
}

fn overview(lab: &Lab) -> Value {
    let wall = 1_000_000 + (lab.now - lab.start).as_millis() as u64;
    lab.m.overview(lab.now, wall)
}

/// One keepalive round: MS1 answers after 3 ms, MS2's probe times out.
fn round_ms2_silent(lab: &mut Lab) {
    lab.on(Event::Probes);
    lab.advance(3);
    lab.answer_probe(MS1);
    lab.probe_times_out(MS2);
    lab.advance(997);
}

#[test]
fn members_go_suspect_then_down_with_their_probe_round_trips_and_the_event_timed() {
    let mut lab = Lab::new();
    let o = overview(&lab);
    assert_eq!(member(&o, "ms1")["state"], "up");
    assert_eq!(member(&o, "ms1")["rtt_ms"], Value::Null);
    assert_eq!(o["events"], serde_json::json!([]));

    // failures_to_down = 2: one unanswered keepalive makes MS2 suspect.
    round_ms2_silent(&mut lab);
    let o = overview(&lab);
    let (ms1, ms2) = (member(&o, "ms1"), member(&o, "ms2"));
    assert_eq!(ms1["state"], "up", "{o:#}");
    assert_eq!(ms1["rtt_ms"], 3.0);
    assert_eq!(ms1["rtt_history_ms"], serde_json::json!([3.0]));
    assert_eq!(
        (&ms2["state"], &ms2["streak"]),
        (&"suspect".into(), &1.into())
    );
    // Suspect since its probe timed out (3 ms into the round).
    assert_eq!(ms2["since_ms"], 1_000_000 + 3);
    assert_eq!(ms2["rtt_ms"], Value::Null);
    assert_eq!(o["events"], serde_json::json!([]), "no change yet");

    round_ms2_silent(&mut lab);
    let o = overview(&lab);
    let ms2 = member(&o, "ms2");
    assert_eq!(ms2["state"], "down", "{o:#}");
    let down_at = ms2["since_ms"].as_u64().unwrap();
    assert_eq!(down_at, 1_000_000 + 1003);
    assert_eq!(
        member(&o, "ms1")["rtt_history_ms"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let events = o["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{o:#}");
    assert_eq!(
        (&events[0]["kind"], &events[0]["subject"], &events[0]["at"]),
        (&"member_down".into(), &"ms2".into(), &down_at.into())
    );
    assert_eq!(events[0]["alarm"], true);

    // Two answers bring it back, as an event of its own.
    for _ in 0..2 {
        lab.on(Event::Probes);
        lab.answer_probe(MS1);
        lab.answer_probe(MS2);
        lab.advance(1000);
    }
    let o = overview(&lab);
    assert_eq!(member(&o, "ms2")["state"], "up", "{o:#}");
    assert_eq!(o["events"][0]["kind"], "member_up");
    assert_eq!(o["events"].as_array().unwrap().len(), 2);
}

#[test]
fn calls_are_counted_per_group_and_trunk_and_resumes_for_the_last_hour() {
    let mut lab = Lab::new();
    lab.answered_call("c1");
    let o = overview(&lab);
    assert_eq!(o["calls"]["active"], 1, "{o:#}");
    assert_eq!(o["calls"]["per_group"]["media"], 1);
    assert_eq!(o["calls"]["per_trunk"]["carrier"], 1);
    assert_eq!(member(&o, "ms1")["calls"], 1);
    assert_eq!(o["groups"][0]["calls"], 1);

    lab.fail_ms1();
    lab.answer("INVITE", 200, Some(&sdp("127.0.0.1", 18000)));
    let o = overview(&lab);
    assert_eq!(member(&o, "ms1")["state"], "down", "{o:#}");
    assert_eq!(member(&o, "ms2")["calls"], 1);
    assert_eq!(o["last_hour"]["resumed"], 1, "{o:#}");
    assert_eq!(o["last_hour"]["takeovers"], 0);
    let kinds: Vec<&str> = o["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["resume_ok", "member_down"], "{o:#}");
    assert_eq!(o["events"][0]["detail"], "to ms2");
    assert_eq!(o["registrations"], Value::Null, "no registrar");
}

#[test]
fn a_wan_going_down_is_listed_with_its_reason_and_its_state_shown() {
    let mut lab = Lab::with(BRANCH);
    for _ in 0..2 {
        lab.health_round(true);
    }
    assert_eq!(overview(&lab)["wan"][0]["state"], "up");
    // The central PBX stops answering: four silent rounds take the WAN
    // down (see the WAN tests).
    for _ in 0..4 {
        lab.health_round(false);
    }
    let o = overview(&lab);
    assert_eq!(o["wan"][0]["state"], "down", "{o:#}");
    let wan_event = o["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "wan_down")
        .unwrap_or_else(|| panic!("no wan_down event: {o:#}"));
    assert_eq!(wan_event["subject"], "dc");
    assert_eq!(wan_event["alarm"], true);
    assert!(
        wan_event["detail"]
            .as_str()
            .unwrap()
            .contains("no answer across the WAN"),
        "{o:#}"
    );
}
