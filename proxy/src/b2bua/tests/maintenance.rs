//! Planned work on media servers (`b2bua::maintenance`): a drained member
//! gets no new calls but keeps its own; a move resumes a member's
//! answered calls elsewhere by the survival path, paced, with a BYE to
//! the old member. Exact actions, under the lab's own clock.

use super::*;
use crate::b2bua::maintenance::MemberView;

const MS3: &str = "127.0.0.1:5090";

/// The example configuration, sequential (every call lands on ms1 while
/// it may take it), with a third member ms3 after ms2.
fn lab() -> Lab {
    let lab = Lab::from_text(&lab_text(), |p| p);
    assert_eq!(lab.m.dests.len(), 3, "the lab has ms3");
    lab
}

fn lab_text() -> String {
    EXAMPLE
        .replace("strategy = \"round-robin\"", "strategy = \"sequential\"")
        .replace(
            "[[pool.member]]\nname = \"ms2\"\naddress = \"127.0.0.1:5080\"\n",
            "[[pool.member]]\nname = \"ms2\"\naddress = \"127.0.0.1:5080\"\n\n\
             [[pool.member]]\nname = \"ms3\"\naddress = \"127.0.0.1:5090\"\n",
        )
}

impl Lab {
    /// `tandem move`, now: the machine's answer and its actions.
    fn move_calls(
        &mut self,
        from: &str,
        to: Option<&str>,
        max: Option<usize>,
    ) -> (Result<MoveReport, String>, Vec<String>) {
        let wall = 1_000_000 + (self.now - self.start).as_millis() as u64;
        let (report, actions) = self.m.move_calls(from, to, max, self.now, wall);
        self.actions.extend(actions.iter().cloned());
        let lines = actions.iter().map(|a| self.note(a)).collect();
        (report, lines)
    }

    /// The member each call (by leg-A Call-ID) is on, as `tandem calls`
    /// lists them.
    fn members_of_calls(&self) -> Vec<(String, String, &'static str)> {
        self.m
            .calls_view(None, 100, 1_000_000)
            .unwrap()
            .into_iter()
            .map(|c| (c.call_id, c.member, c.state))
            .collect()
    }

    fn member_view(&self, name: &str) -> MemberView {
        self.m
            .members_view()
            .into_iter()
            .find(|m| m.member == name)
            .unwrap()
    }

    /// Answers every resume INVITE sent to `member` not answered yet with
    /// 200 and an SDP on `port`, `port + 2`, …; the actions of each.
    fn answer_resumes(&mut self, member: &str, port: u16) -> Vec<Vec<String>> {
        let pending: Vec<(ClientKey, Message)> = self
            .sent
            .iter()
            .filter(|(_, m, t)| {
                m.method() == Some(&Method::Invite)
                    && t.addr == addr(member)
                    && m.header("X-Tandem-Resumed").is_some()
            })
            .map(|(k, m, _)| (k.clone(), m.clone()))
            .collect();
        let mut out = Vec::new();
        for (n, (key, req)) in pending.into_iter().enumerate() {
            let body = sdp("127.0.0.1", port + 2 * n as u16);
            let response = Message::parse(
                ResponseBuilder::with_to_tag(&req, 200, "OK", Some("new"))
                    .header("Contact", &format!("<sip:ms@{member}>"))
                    .body("application/sdp", Bytes::from(body))
                    .build(),
            )
            .unwrap();
            out.push(self.on(Event::Tu(TuEvent::Response { key, response })));
        }
        out
    }
}

#[test]
fn a_drained_member_gets_no_new_call_but_keeps_its_calls_and_probes() {
    let mut lab = lab();
    lab.answered_call("c1");
    assert_eq!(lab.m.drain_member("ms1", true), Ok(true));
    assert_eq!(lab.m.drain_member("ms1", true), Ok(false), "already");
    assert!(lab.m.drain_member("nope", true).is_err());

    // A new call skips ms1 as if it were down.
    let (_, media) = lab.call("c2");
    assert_eq!(media.last().unwrap(), &format!("send INVITE to {MS2}"));
    let ms1 = lab.member_view("ms1");
    assert_eq!(
        (ms1.state, ms1.draining, ms1.calls),
        ("up", true, 1),
        "up, draining, c1 still on it"
    );
    // ms1 is still probed: its health goes on being known.
    let probes = lab.on(Event::Probes);
    assert!(
        probes.contains(&format!("send OPTIONS to {MS1}")),
        "{probes:?}"
    );
    // c1 is not touched: nothing moves without `tandem move`.
    assert_eq!(
        lab.members_of_calls()[0],
        ("c1".into(), "ms1".into(), "confirmed")
    );

    // Undrained, ms1 is first again.
    assert_eq!(lab.m.drain_member("ms1", false), Ok(true));
    let (_, media) = lab.call("c3");
    assert_eq!(media.last().unwrap(), &format!("send INVITE to {MS1}"));
}

#[test]
fn a_move_resumes_the_answered_calls_elsewhere_paced_and_byes_the_old_member() {
    let mut lab = lab();
    // Resumes at 10/s: one every 100 ms, no burst beyond one.
    lab.m.settings.survival.resume_rate = 10;
    for id in ["c1", "c2", "c3"] {
        lab.answered_call(id);
    }
    // c4 still rings on ms1: it is left to finish there.
    lab.call("c4");
    assert_eq!(lab.m.drain_member("ms1", true), Ok(true));

    let (report, actions) = lab.move_calls("ms1", None, None);
    assert_eq!(
        report,
        Ok(MoveReport {
            scheduled: 3,
            not_answered: 1,
            moving: 0,
            draining: true
        })
    );
    // The old legs are hung up at once, with why; c4 gets no CANCEL.
    assert_eq!(actions, vec![format!("send BYE to {MS1}"); 3]);
    for (_, bye, _) in lab
        .sent
        .iter()
        .filter(|(_, m, _)| m.method() == Some(&Method::Bye))
    {
        assert_eq!(
            bye.header("Reason"),
            Some("SIP;cause=200;text=\"call moved by the operator\"")
        );
    }

    // The resume INVITEs go out at the survival pace: the bucket starts
    // empty and fills by one every 100 ms.
    assert!(lab.on(Event::SurvivalTick).is_empty());
    let mut sent = Vec::new();
    for _ in 0..6 {
        lab.advance(50);
        sent.push(lab.on(Event::SurvivalTick));
    }
    let invite = vec![format!("send INVITE to {MS2}")];
    assert_eq!(
        sent,
        [
            vec![],
            invite.clone(),
            vec![],
            invite.clone(),
            vec![],
            invite
        ]
    );
    let resumed: Vec<String> = lab
        .sent
        .iter()
        .filter_map(|(_, m, _)| m.header("X-Tandem-Resumed").map(str::to_owned))
        .collect();
    assert_eq!(resumed, ["c1;from=ms1", "c2;from=ms1", "c3;from=ms1"]);

    // ms2 answers: the relay switches each call to it, leg A sees nothing.
    let answers = lab.answer_resumes(MS2, 18000);
    assert_eq!(
        answers,
        [18000, 18002, 18004].map(|port| vec![
            format!("raw ACK to {MS2}"),
            format!("switch to 127.0.0.1:{port}")
        ])
    );
    assert_eq!(
        lab.members_of_calls(),
        [
            ("c1".into(), "ms2".into(), "confirmed"),
            ("c2".into(), "ms2".into(), "confirmed"),
            ("c3".into(), "ms2".into(), "confirmed"),
            ("c4".into(), "ms1".into(), "calling"),
        ]
    );
    for id in ["c1", "c2", "c3"] {
        let call = lab.m.store.get(lab.m.store.find(id).unwrap().0).unwrap();
        assert_eq!(
            (call.resumes, call.moves),
            (1, 1),
            "{id}: the CDR's move mark"
        );
    }
    assert_eq!(
        (lab.member_view("ms1").calls, lab.member_view("ms2").calls),
        (1, 3)
    );
    // The status page's journal: the drain and the moves (one line, ×3),
    // and no resume counted (those are about failures).
    let overview = lab.m.overview(lab.now, 1_000_000);
    let events: Vec<(String, String, u64)> = overview["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let text = |k: &str| e[k].as_str().unwrap_or_default().to_owned();
            (
                text("kind"),
                text("subject"),
                e["count"].as_u64().unwrap_or(1),
            )
        })
        .collect();
    assert_eq!(
        events,
        [
            ("call_moved".to_owned(), "ms1".to_owned(), 3),
            ("member_drained".to_owned(), "ms1".to_owned(), 1)
        ],
        "{overview:#}"
    );
    assert_eq!(overview["last_hour"]["resumed"], 0, "{overview:#}");
    assert_eq!(lab.m.store.check(), Ok(()));
}

#[test]
fn a_move_goes_to_the_member_asked_for_and_at_most_max_calls() {
    let mut lab = lab();
    for id in ["c1", "c2", "c3"] {
        lab.answered_call(id);
    }
    let (report, actions) = lab.move_calls("ms1", Some("ms3"), Some(2));
    assert_eq!(report.unwrap().scheduled, 2);
    assert_eq!(actions, vec![format!("send BYE to {MS1}"); 2]);
    lab.on(Event::SurvivalTick);
    lab.advance(100);
    // Sequential would pick ms2; the operator asked for ms3. The oldest
    // two calls move.
    assert_eq!(
        lab.on(Event::SurvivalTick),
        vec![format!("send INVITE to {MS3}"); 2]
    );
    lab.answer_resumes(MS3, 18000);
    let on: Vec<String> = lab.members_of_calls().into_iter().map(|c| c.1).collect();
    assert_eq!(on, ["ms3", "ms3", "ms1"]);
}

#[test]
fn a_move_with_nowhere_to_go_is_refused_and_touches_nothing() {
    let mut lab = lab();
    lab.answered_call("c1");
    lab.m.drain_member("ms2", true).unwrap();
    lab.m.drain_member("ms3", true).unwrap();
    let (report, actions) = lab.move_calls("ms1", None, None);
    assert!(report.unwrap_err().contains("nowhere to move"));
    assert!(actions.is_empty());
    for (from, to) in [("nope", None), ("ms1", Some("nope")), ("ms1", Some("ms1"))] {
        let (report, actions) = lab.move_calls(from, to, None);
        assert!(report.is_err() && actions.is_empty(), "{from} → {to:?}");
    }
    assert_eq!(
        lab.members_of_calls()[0],
        ("c1".into(), "ms1".into(), "confirmed")
    );
}

#[test]
fn a_drain_survives_a_reload_by_name_and_reaches_the_standby() {
    let mut lab = lab();
    lab.m.drain_member("ms1", true).unwrap();
    // The active node publishes it with the member's health.
    let published: Vec<(String, bool, bool)> = lab
        .m
        .member_health()
        .map(|(n, up, d)| (n.to_owned(), up, d))
        .collect();
    assert_eq!(published[0], ("ms1".into(), true, true));

    // A reload of a configuration that still has ms1 keeps the drain.
    let config = Config::parse(&lab_text(), Path::new("tandem.toml")).unwrap();
    let router = crate::routing::Router::compile(&config).unwrap();
    lab.m.reload(
        crate::pool::Destinations::from_config(&config),
        Box::new(crate::routing::RulesPolicy::new(&config, router)),
    );
    assert!(lab.member_view("ms1").draining);
    let (_, media) = lab.call("c1");
    assert_eq!(media.last().unwrap(), &format!("send INVITE to {MS2}"));

    // A standby told so by the active node's record sends new calls
    // elsewhere too once it takes over.
    let mut standby = Lab::from_text(&lab_text(), |p| p);
    standby.m.set_member_draining("ms1", true);
    let (_, media) = standby.call("c1");
    assert_eq!(media.last().unwrap(), &format!("send INVITE to {MS2}"));
}

/// A takeover in the middle of a move: the resume INVITE the old node
/// sent is answered to the new active node, which takes it (no caller
/// left without leg B); a call whose resume was not sent yet is resumed
/// from the new node's own queue.
#[test]
fn a_takeover_mid_move_finishes_the_move_on_the_new_active_node() {
    let mut a = lab();
    a.m.settings.survival.resume_rate = 10;
    for id in ["c1", "c2"] {
        a.answered_call(id);
    }
    let (report, _) = a.move_calls("ms1", None, None);
    assert_eq!(report.unwrap().scheduled, 2);
    // One resume INVITE (c1) goes out; c2 waits for the pace.
    assert!(a.on(Event::SurvivalTick).is_empty());
    a.advance(100);
    assert_eq!(
        a.on(Event::SurvivalTick),
        vec![format!("send INVITE to {MS2}")]
    );
    let (key, invite, _) = a
        .sent
        .iter()
        .find(|(_, m, _)| m.header("X-Tandem-Resumed").is_some())
        .cloned()
        .unwrap();
    let copy: Vec<Call> = a.m.store.values().cloned().collect();

    // a dies; b adopts its calls.
    let mut b = lab();
    b.m.settings.survival.resume_rate = 10;
    let now = b.now;
    b.m.adopt(copy, 1_000_000, now);
    let response = Message::parse(
        ResponseBuilder::with_to_tag(&invite, 200, "OK", Some("new"))
            .header("Contact", &format!("<sip:ms@{MS2}>"))
            .body("application/sdp", Bytes::from(sdp("127.0.0.1", 18000)))
            .build(),
    )
    .unwrap();
    assert_eq!(
        b.on(Event::Tu(TuEvent::Response { key, response })),
        [
            format!("raw ACK to {MS2}"),
            "switch to 127.0.0.1:18000".to_owned()
        ]
    );
    // c2's resume goes out from b.
    b.on(Event::SurvivalTick);
    b.advance(100);
    assert_eq!(
        b.on(Event::SurvivalTick),
        vec![format!("send INVITE to {MS2}")]
    );
    b.answer_resumes(MS2, 18002);
    assert_eq!(
        b.members_of_calls(),
        [
            ("c1".into(), "ms2".into(), "confirmed"),
            ("c2".into(), "ms2".into(), "confirmed"),
        ]
    );
    assert_eq!(
        (b.member_view("ms1").calls, b.member_view("ms2").calls),
        (0, 2)
    );
    assert_eq!(b.m.store.check(), Ok(()));
}
