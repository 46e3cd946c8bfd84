//! The call machine without sockets: events in, the exact actions out.
//! Each test drives one of the hard paths of a B2BUA call and compares
//! the actions, summarised one line each, with what RFC 3261 wants.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use media_relay::{LocalPorts, SessionId, SessionInfo, Side};
use sipcore::message::{Message, Method, RequestBuilder, ResponseBuilder};
use sipcore::transaction::{ClientKey, ServerKey, TransactionKey, TuEvent};
use sipcore::transport::Target;

use super::*;
use crate::config::Config;

const EXAMPLE: &str = include_str!("../../../deploy/tandem.example.toml");
const TRUNK: &str = "127.0.0.9:5060";
const MS1: &str = "127.0.0.1:5070";
const MS2: &str = "127.0.0.1:5080";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// Idle times the fake relay reports, per session and side.
type Idle = Arc<Mutex<HashMap<(u64, Side), Duration>>>;

struct FakeMedia(Idle);

impl MediaView for FakeMedia {
    fn idle(&self, session: SessionId, side: Side) -> Result<Option<Duration>, ()> {
        Ok(self.0.lock().unwrap().get(&(session.0, side)).copied())
    }
    fn refused_since(&self, _: SessionId, _: Side) -> Option<Duration> {
        None
    }
}

/// The machine, a clock of its own, and the last message of each kind it
/// sent (to answer them as the peers would).
struct Lab {
    m: Machine,
    start: Instant,
    now: Instant,
    idle: Idle,
    /// Requests Tandem sent, last first found by method and target.
    sent: Vec<(ClientKey, Message, Target)>,
    /// Responses Tandem sent on leg A.
    responses: Vec<Message>,
    /// Every action, in full.
    actions: Vec<Action>,
}

impl Lab {
    fn new() -> Lab {
        Lab::with("")
    }

    /// The example configuration with `extra` TOML appended.
    fn with(extra: &str) -> Lab {
        Lab::with_policy(extra, |p| p)
    }

    /// As [`Lab::with`], the routing policy wrapped by `wrap`.
    fn with_policy(extra: &str, wrap: impl FnOnce(Box<dyn Policy>) -> Box<dyn Policy>) -> Lab {
        Lab::from_text(&format!("{EXAMPLE}\n{extra}"), wrap)
    }

    /// The machine of the configuration `text`, its routing policy wrapped
    /// by `wrap`.
    fn from_text(text: &str, wrap: impl FnOnce(Box<dyn Policy>) -> Box<dyn Policy>) -> Lab {
        Lab::observed(text, wrap, Box::new(NoObserver))
    }

    /// As [`Lab::from_text`], the machine reporting to `obs`.
    fn observed(
        text: &str,
        wrap: impl FnOnce(Box<dyn Policy>) -> Box<dyn Policy>,
        obs: Box<dyn Observer + Send>,
    ) -> Lab {
        let config = Config::parse(text, Path::new("tandem.toml")).unwrap();
        let idle: Idle = Arc::default();
        let start = Instant::now();
        let router = crate::routing::Router::compile(&config).unwrap();
        let m = Machine::new(
            config.machine_settings(),
            crate::pool::Destinations::from_config(&config),
            wrap(Box::new(crate::routing::RulesPolicy::new(&config, router))),
            Box::new(FakeMedia(idle.clone())),
            obs,
            false,
            7,
            start,
        );
        Lab {
            m,
            start,
            now: start,
            idle,
            sent: Vec::new(),
            responses: Vec::new(),
            actions: Vec::new(),
        }
    }

    /// Reloads the machine with the configuration `text` (SIGHUP).
    fn reload_text(&mut self, text: &str) {
        let config = Config::parse(text, Path::new("tandem.toml")).unwrap();
        let router = crate::routing::Router::compile(&config).unwrap();
        self.m.reload(
            crate::pool::Destinations::from_config(&config),
            Box::new(crate::routing::RulesPolicy::new(&config, router)),
        );
    }

    fn advance(&mut self, ms: u64) {
        self.now += Duration::from_millis(ms);
    }

    /// Feeds an event; the actions, one line each.
    fn on(&mut self, event: Event) -> Vec<String> {
        let wall = 1_000_000 + (self.now - self.start).as_millis() as u64;
        let actions = self.m.on(event, self.now, wall);
        self.actions.extend(actions.iter().cloned());
        // RTCP mux changes are checked through `self.actions` by the tests
        // about them; the one-line summaries leave them out.
        actions
            .iter()
            .filter(|a| !matches!(a, Action::RtcpMux { .. }))
            .map(|a| self.note(a))
            .collect()
    }

    fn note(&mut self, action: &Action) -> String {
        match action {
            Action::SendRequest {
                key,
                request,
                target,
            } => {
                self.sent.push((key.clone(), request.clone(), *target));
                format!(
                    "send {} to {}",
                    request.method().unwrap().as_str(),
                    target.addr
                )
            }
            Action::Respond { response, .. } => {
                self.responses.push(response.clone());
                format!(
                    "respond {} {}",
                    response.status().unwrap(),
                    response.cseq().method.as_str()
                )
            }
            Action::Forget { answer, .. } => match answer {
                Some(a) => format!(
                    "forget after {} {}",
                    a.status().unwrap(),
                    a.cseq().method.as_str()
                ),
                None => "forget".into(),
            },
            Action::SendRaw { target, bytes } => {
                let msg = Message::parse(bytes.clone()).unwrap();
                match msg.status() {
                    Some(s) => format!("raw {s} to {}", target.addr),
                    None => format!("raw {} to {}", msg.method().unwrap().as_str(), target.addr),
                }
            }
            Action::CreateMedia { .. } => "create media".into(),
            Action::SetRemote { side, addr, .. } => format!("remote {side:?} {addr}"),
            Action::SwitchUpstream { addr, .. } => format!("switch to {addr}"),
            Action::RtcpMux { .. } => "rtcp mux".into(),
            Action::RemoveMedia { .. } => "remove media".into(),
            Action::CallEnded(end) => format!("cdr {}", end.reason),
            Action::CallStarted(_) => "cdr start".into(),
        }
    }

    /// The last OPTIONS Tandem sent to `member`.
    fn probe_to(&self, member: &str) -> (ClientKey, Message, Target) {
        self.sent
            .iter()
            .rev()
            .find(|(_, m, t)| m.method() == Some(&Method::Options) && t.addr == addr(member))
            .cloned()
            .expect("a probe was sent")
    }

    /// The member answers its last probe with 200.
    fn answer_probe(&mut self, member: &str) {
        let (key, options, _) = self.probe_to(member);
        let alive = Message::parse(ResponseBuilder::new(&options, 200, "OK").build()).unwrap();
        self.on(Event::Tu(TuEvent::Response {
            key,
            response: alive,
        }));
    }

    /// The last request of `method` Tandem sent.
    fn last(&self, method: &str) -> (ClientKey, Message, Target) {
        self.sent
            .iter()
            .rev()
            .find(|(_, m, _)| m.method().unwrap().as_str() == method)
            .cloned()
            .unwrap_or_else(|| panic!("no {method} was sent"))
    }

    /// Tandem's To tag toward the trunk (from its last response there).
    fn a_tag(&self) -> String {
        self.responses
            .iter()
            .rev()
            .find_map(|r| r.to_tag().map(str::to_owned))
            .expect("a response with a To tag")
    }

    fn trunk_sends(&mut self, msg: Message) -> Vec<String> {
        let key = ServerKey::from_request(&msg).unwrap();
        self.on(Event::Tu(TuEvent::Request {
            key,
            request: msg,
            source: Target::udp(addr(TRUNK)),
        }))
    }

    /// A new call from the trunk, given its relay ports: the actions of
    /// the INVITE and of the relay's answer.
    fn call(&mut self, call_id: &str) -> (Vec<String>, Vec<String>) {
        self.call_with(call_id, invite(call_id, "i1", true))
    }

    /// A call placed with the trunk's INVITE `invite` (Call-ID `call_id`).
    fn call_with(&mut self, call_id: &str, invite: Message) -> (Vec<String>, Vec<String>) {
        let first = self.trunk_sends(invite);
        let id = self.m.store.find(call_id).unwrap().0;
        let second = self.on(Event::MediaCreated {
            call: id,
            result: Ok(ports(id)),
        });
        (first, second)
    }

    /// Leg B's answer to the last request of `method` Tandem sent.
    fn answer(&mut self, method: &str, status: u16, sdp: Option<&str>) -> Vec<String> {
        let (key, req, target) = self.last(method);
        let mut b = ResponseBuilder::with_to_tag(&req, status, "Reason", Some("b1"))
            .header("Contact", &format!("<sip:ms@{}>", target.addr));
        if let Some(body) = sdp {
            b = b.body("application/sdp", Bytes::from(body.to_owned()));
        }
        let response = Message::parse(b.build()).unwrap();
        self.on(Event::Tu(TuEvent::Response { key, response }))
    }

    /// An in-dialog request from the trunk.
    fn in_dialog(&mut self, method: &str, call_id: &str, cseq: u32, branch: &str) -> Message {
        let tag = self.a_tag();
        let text = format!(
            "{method} sip:tandem@127.0.0.1:5060 SIP/2.0\r\n\
             Via: SIP/2.0/UDP {TRUNK};branch=z9hG4bK{branch}\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:alice@127.0.0.9>;tag=a1\r\n\
             To: <sip:100@127.0.0.1>;tag={tag}\r\n\
             Call-ID: {call_id}\r\n\
             CSeq: {cseq} {method}\r\n\
             Content-Length: 0\r\n\r\n"
        );
        Message::parse(Bytes::from(text)).unwrap()
    }

    fn ack_from_trunk(&mut self, call_id: &str) -> Vec<String> {
        let ack = self.in_dialog("ACK", call_id, 1, "ack1");
        self.on(Event::Tu(TuEvent::Ack {
            key: None,
            ack,
            source: Target::udp(addr(TRUNK)),
        }))
    }

    /// MS1's keepalives time out twice (failures_to_down = 2): its
    /// answered calls are queued for a resume on MS2. Resumes are paced by
    /// a token bucket filled on the survival tick: the actions of the tick
    /// that sends the first.
    fn fail_ms1(&mut self) -> Vec<String> {
        for _ in 0..2 {
            self.on(Event::Probes);
            self.answer_probe(MS2);
            self.probe_times_out(MS1);
            self.advance(1000);
        }
        self.on(Event::SurvivalTick);
        self.advance(100);
        self.on(Event::SurvivalTick)
    }

    /// `member`'s last probe gets no answer (its transaction times out).
    fn probe_times_out(&mut self, member: &str) {
        let (key, _, _) = self.probe_to(member);
        self.on(Event::Tu(TuEvent::Timeout {
            key: TransactionKey::Client(key),
            timer: sipcore::transaction::Timer::F,
        }));
    }

    /// A call answered and confirmed on both legs, on MS1.
    fn answered_call(&mut self, call_id: &str) {
        self.call(call_id);
        self.answer("INVITE", 200, Some(&sdp("127.0.0.1", 16000)));
        self.ack_from_trunk(call_id);
    }
}

fn sdp(ip: &str, port: u16) -> String {
    format!(
        "v=0\r\no=x 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 0 8\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
    )
}

fn invite(call_id: &str, branch: &str, with_sdp: bool) -> Message {
    invite_to("100", call_id, branch, with_sdp)
}

fn invite_to(user: &str, call_id: &str, branch: &str, with_sdp: bool) -> Message {
    let body = with_sdp.then(|| sdp("127.0.0.9", 40000));
    invite_with_body(user, call_id, branch, body)
}

fn invite_with_body(user: &str, call_id: &str, branch: &str, body: Option<String>) -> Message {
    let mut b = RequestBuilder::new(&Method::Invite, &format!("sip:{user}@127.0.0.1:5060"))
        .header(
            "Via",
            &format!("SIP/2.0/UDP {TRUNK};branch=z9hG4bK{branch}"),
        )
        .header("Max-Forwards", "70")
        .header("From", "<sip:alice@127.0.0.9>;tag=a1")
        .header("To", "<sip:100@127.0.0.1>")
        .header("Call-ID", call_id)
        .header("CSeq", "1 INVITE")
        .header("Contact", &format!("<sip:alice@{TRUNK}>"));
    if let Some(body) = body {
        b = b.body("application/sdp", Bytes::from(body));
    }
    Message::parse(b.build()).unwrap()
}

/// The trunk's CANCEL of the INVITE `invite(call_id, "i1", _)`.
fn cancel(call_id: &str) -> Message {
    let text = format!(
        "CANCEL sip:100@127.0.0.1:5060 SIP/2.0\r\n\
         Via: SIP/2.0/UDP {TRUNK};branch=z9hG4bKi1\r\nMax-Forwards: 70\r\n\
         From: <sip:alice@127.0.0.9>;tag=a1\r\nTo: <sip:100@127.0.0.1>\r\n\
         Call-ID: {call_id}\r\nCSeq: 1 CANCEL\r\nContent-Length: 0\r\n\r\n"
    );
    Message::parse(Bytes::from(text)).unwrap()
}

fn ports(id: u64) -> SessionInfo {
    let local = |p: u16| LocalPorts {
        ip: "127.0.0.1".parse().unwrap(),
        rtp_port: p,
        rtcp_port: p + 1,
    };
    SessionInfo {
        id: SessionId(id),
        side_a: local(30000),
        side_b: local(30002),
    }
}

#[test]
fn a_call_from_invite_to_bye() {
    let mut lab = Lab::new();
    let (invite, media) = lab.call("c1");
    assert_eq!(invite, ["respond 100 INVITE", "create media"]);
    assert_eq!(
        media,
        [
            "remote A 127.0.0.9:40000".to_string(),
            format!("send INVITE to {MS1}")
        ]
    );
    // Leg B's INVITE carries the relay's side-B address, not the trunk's.
    let (_, b_invite, _) = lab.last("INVITE");
    let body = std::str::from_utf8(b_invite.body()).unwrap();
    assert!(body.contains("m=audio 30002 "), "{body}");
    assert!(!body.contains("127.0.0.9"), "{body}");
    assert_ne!(b_invite.call_id(), "c1", "leg B has its own Call-ID");

    assert_eq!(lab.answer("INVITE", 180, None), ["respond 180 INVITE"]);
    assert_eq!(
        lab.answer("INVITE", 200, Some(&sdp("127.0.0.1", 16000))),
        [
            "remote B 127.0.0.1:16000".to_string(),
            format!("raw ACK to {MS1}"),
            "respond 200 INVITE".into()
        ]
    );
    assert!(lab.ack_from_trunk("c1").is_empty());
    let bye = lab.in_dialog("BYE", "c1", 2, "bye1");
    assert_eq!(
        lab.trunk_sends(bye),
        [
            "respond 200 BYE".to_string(),
            format!("send BYE to {MS1}"),
            "cdr bye_caller".into(),
            "remove media".into()
        ]
    );
    assert_eq!(lab.m.calls(), 0);
    assert_eq!(lab.m.store.check(), Ok(()));
}

#[test]
fn cancel_crossing_the_answer_hangs_leg_b_up() {
    let mut lab = Lab::new();
    lab.call("c1");
    lab.answer("INVITE", 180, None);
    let cancel = cancel("c1");
    assert_eq!(
        lab.trunk_sends(cancel),
        [
            "respond 200 CANCEL".to_string(),
            "respond 487 INVITE".into(),
            format!("send CANCEL to {MS1}")
        ]
    );
    // The media server's 200 crossed our CANCEL: ACK it and hang up, so
    // no call is left on the server; the trunk has its 487 already.
    assert_eq!(
        lab.answer("INVITE", 200, Some(&sdp("127.0.0.1", 16000))),
        [
            format!("raw ACK to {MS1}"),
            format!("send BYE to {MS1}"),
            "cdr cancelled".into(),
            "remove media".into()
        ]
    );
    assert_eq!(lab.m.calls(), 0);
}

#[test]
fn a_cancel_before_leg_b_rang_waits_for_its_first_provisional() {
    let mut lab = Lab::new();
    lab.call("c1");
    let cancel = cancel("c1");
    // RFC 3261 §9.1: no CANCEL before a provisional response.
    assert_eq!(
        lab.trunk_sends(cancel),
        ["respond 200 CANCEL", "respond 487 INVITE"]
    );
    assert_eq!(
        lab.answer("INVITE", 100, None),
        Vec::<String>::new(),
        "100 is not a provisional that allows CANCEL"
    );
    assert_eq!(
        lab.answer("INVITE", 180, None),
        [format!("send CANCEL to {MS1}")]
    );
}

#[test]
fn glare_gets_491() {
    let mut lab = Lab::new();
    lab.answered_call("c1");
    // The trunk's re-INVITE goes to the media server...
    let reinvite = lab.in_dialog("INVITE", "c1", 2, "re1");
    assert_eq!(lab.trunk_sends(reinvite), [format!("send INVITE to {MS1}")]);
    // ...and a second offer before it is answered is refused (§14.2).
    let update = lab.in_dialog("UPDATE", "c1", 3, "up1");
    assert_eq!(lab.trunk_sends(update), ["respond 491 UPDATE"]);
    assert_eq!(
        lab.responses.last().unwrap().header("Retry-After"),
        Some("1")
    );
}

#[test]
fn failover_after_early_media_goes_to_the_next_member_unseen_by_the_trunk() {
    let mut lab = Lab::new();
    lab.call("c1");
    let first_b = lab.last("INVITE").1.call_id().to_owned();
    assert_eq!(
        lab.answer("INVITE", 183, Some(&sdp("127.0.0.1", 16000))),
        ["remote B 127.0.0.1:16000", "respond 183 INVITE"]
    );
    // MS1 gives up before answering: the call moves on to MS2 with the
    // same offer; the trunk, which heard early media, sees nothing.
    assert_eq!(
        lab.answer("INVITE", 503, None),
        [format!("send INVITE to {MS2}")]
    );
    let (_, second, target) = lab.last("INVITE");
    assert_eq!(target.addr, addr(MS2));
    assert_ne!(second.call_id(), first_b);
    assert!(std::str::from_utf8(second.body())
        .unwrap()
        .contains("m=audio 30002 "));
    // The old leg B's Call-ID is no longer the call's.
    assert_eq!(lab.m.store.find(&first_b), None);
    assert_eq!(
        lab.answer("INVITE", 200, Some(&sdp("127.0.0.1", 17000))),
        [
            "remote B 127.0.0.1:17000".to_string(),
            format!("raw ACK to {MS2}"),
            "respond 200 INVITE".into()
        ]
    );
}

#[test]
fn a_2xx_retransmitted_after_our_bye_is_acked_without_a_second_bye() {
    let mut lab = Lab::new();
    lab.answered_call("c1");
    let (_, b_invite, _) = lab.last("INVITE");
    let bye = lab.in_dialog("BYE", "c1", 2, "bye1");
    lab.trunk_sends(bye);
    // Our ACK was lost: the media server retransmits its 2xx, which
    // still matches our INVITE transaction (RFC 6026 Accepted).
    let ok = Message::parse(
        ResponseBuilder::with_to_tag(&b_invite, 200, "OK", Some("b1"))
            .header("Contact", &format!("<sip:ms@{MS1}>"))
            .build(),
    )
    .unwrap();
    let key = ClientKey::from_message(&b_invite).unwrap();
    let again = lab.on(Event::Tu(TuEvent::Response { key, response: ok }));
    assert_eq!(again, [format!("raw ACK to {MS1}")]);
}

#[test]
fn an_in_dialog_request_for_an_unknown_dialog_gets_481() {
    let mut lab = Lab::new();
    lab.answered_call("c1");
    let stranger = Message::parse(Bytes::from(format!(
        "BYE sip:tandem@127.0.0.1:5060 SIP/2.0\r\n\
         Via: SIP/2.0/UDP {TRUNK};branch=z9hG4bKx\r\nMax-Forwards: 70\r\n\
         From: <sip:alice@127.0.0.9>;tag=a1\r\nTo: <sip:100@127.0.0.1>;tag=nope\r\n\
         Call-ID: unknown\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n"
    )))
    .unwrap();
    assert_eq!(lab.trunk_sends(stranger), ["respond 481 BYE"]);
    // The right Call-ID with a wrong tag is not the dialog either.
    let wrong_tag = Message::parse(Bytes::from(format!(
        "BYE sip:tandem@127.0.0.1:5060 SIP/2.0\r\n\
         Via: SIP/2.0/UDP {TRUNK};branch=z9hG4bKy\r\nMax-Forwards: 70\r\n\
         From: <sip:alice@127.0.0.9>;tag=a1\r\nTo: <sip:100@127.0.0.1>;tag=nope\r\n\
         Call-ID: c1\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n"
    )))
    .unwrap();
    assert_eq!(lab.trunk_sends(wrong_tag), ["respond 481 BYE"]);
    assert_eq!(lab.m.calls(), 1);
}

#[test]
fn a_call_without_media_ports_gets_503_and_leaves_nothing() {
    let mut lab = Lab::new();
    lab.trunk_sends(invite("c1", "i1", true));
    let id = lab.m.store.find("c1").unwrap().0;
    assert_eq!(
        lab.on(Event::MediaCreated {
            call: id,
            result: Err("ports exhausted".into())
        }),
        ["respond 503 INVITE"]
    );
    assert_eq!(
        lab.responses.last().unwrap().header("Retry-After"),
        Some("5")
    );
    assert_eq!(lab.m.calls(), 0);
    assert_eq!(lab.m.store.check(), Ok(()));
}

#[test]
fn bye_while_the_call_is_moving_cancels_the_ringing_resume() {
    let mut lab = Lab::new();
    lab.answered_call("c1");
    let resume = lab.fail_ms1();
    assert!(
        resume.contains(&format!("send INVITE to {MS2}")),
        "{resume:?}"
    );
    let (_, resume_invite, _) = lab.last("INVITE");
    assert!(resume_invite.header("X-Tandem-Resumed").is_some());
    assert_eq!(lab.answer("INVITE", 180, None), Vec::<String>::new());
    // The caller hangs up while MS2 rings: MS2's INVITE must not stay.
    let bye = lab.in_dialog("BYE", "c1", 2, "bye1");
    assert_eq!(
        lab.trunk_sends(bye),
        [
            "respond 200 BYE".to_string(),
            format!("send CANCEL to {MS2}"),
            "cdr bye_caller".into(),
            "remove media".into()
        ]
    );
}

#[test]
fn timers_fire_only_when_due() {
    let mut lab = Lab::new();
    lab.call("c1");
    lab.answer("INVITE", 200, Some(&sdp("127.0.0.1", 16000)));
    // No ACK from the trunk: the 2xx is retransmitted at T1, 2T1, ...
    let t1 = lab.m.settings().t1;
    let first = lab.m.next_deadline().unwrap();
    assert_eq!(first, lab.now + t1);
    lab.advance(t1.as_millis() as u64 - 1);
    assert!(lab.on(Event::Timers).is_empty());
    lab.advance(1);
    assert_eq!(lab.on(Event::Timers), ["respond 200 INVITE"]);
    // The ACK stops them.
    lab.ack_from_trunk("c1");
    lab.advance(10 * t1.as_millis() as u64);
    assert!(lab.on(Event::Timers).is_empty());
}

/// The transaction layer ended leg A's INVITE transaction before its ACK
/// came (its cap on waiting transactions ends the oldest early): the 2xx
/// goes on statelessly to the trunk, and so do its retransmissions, until
/// the ACK.
#[test]
fn a_2xx_whose_transaction_ended_early_goes_on_statelessly_until_the_ack() {
    let mut lab = Lab::new();
    lab.call("c1");
    lab.answer("INVITE", 200, Some(&sdp("127.0.0.1", 16000)));
    let sent = |lab: &Lab, status: u16| {
        lab.actions
            .iter()
            .find_map(|a| match a {
                Action::Respond { key, response } if response.status() == Some(status) => {
                    Some((key.clone(), response.clone()))
                }
                _ => None,
            })
            .unwrap()
    };
    let (key, ok) = sent(&lab, 200);
    let raw = format!("raw 200 to {}", addr(TRUNK));
    assert_eq!(
        lab.on(Event::ResponseUnsent {
            key: key.clone(),
            response: ok.clone()
        }),
        [raw.as_str()]
    );
    let t1 = lab.m.settings().t1;
    lab.advance(t1.as_millis() as u64);
    assert_eq!(lab.on(Event::Timers), [raw.as_str()]);
    lab.advance(2 * t1.as_millis() as u64);
    assert_eq!(lab.on(Event::Timers), [raw.as_str()]);
    // The ACK stops them, and the stateless route is gone with them.
    lab.ack_from_trunk("c1");
    lab.advance(10 * t1.as_millis() as u64);
    assert!(lab.on(Event::Timers).is_empty());
    assert!(lab.m.out.adopted.is_empty());
    // Acked: a late report of the same kind sends nothing.
    assert!(lab
        .on(Event::ResponseUnsent { key, response: ok })
        .is_empty());
}

#[test]
fn a_call_silent_on_both_legs_past_the_media_timeout_is_ended() {
    let mut lab = Lab::new();
    lab.answered_call("c1");
    let id = lab.m.store.find("c1").unwrap().0;
    lab.advance(61_000);
    // Leg A still talks: the call stays.
    lab.idle.lock().unwrap().extend([
        ((id, Side::A), Duration::from_millis(20)),
        ((id, Side::B), Duration::from_secs(61)),
    ]);
    assert!(lab.on(Event::Housekeeping).is_empty());
    // Both silent for longer than media_timeout_s (60 s): BYE both ways.
    lab.idle
        .lock()
        .unwrap()
        .insert((id, Side::A), Duration::from_secs(61));
    assert_eq!(
        lab.on(Event::Housekeeping),
        [
            format!("send BYE to {TRUNK}"),
            format!("send BYE to {MS1}"),
            "cdr media_timeout".into(),
            "remove media".into()
        ]
    );
}

/// Two groups besides `[pool]` ("media": MS1, MS2) and rules over them.
const ROUTING: &str = r#"
[[group]]
name = "pbx"
strategy = "sequential"
probe = "off"
resume = false
[group.health]
interval_ms = 2000
failures_to_down = 2
[[group.member]]
name = "pbx1"
address = "127.0.0.1:5090"
priority = 1
[[group.member]]
name = "pbx2"
address = "127.0.0.1:5092"
priority = 2

[[rule]]
name = "blocked"
ruri_user_prefix = "900"
reject = { code = 403, reason = "Blocked" }

[[rule]]
name = "office"
ruri_user_prefix = "1"
strip = 1
prefix = "+49"
group = "pbx"

[[rule]]
name = "redirected"
ruri_user_prefix = "2"
redirect = "pbx"

[[rule]]
name = "international"
ruri_user_regex = "^00[1-9]"
replace = { regex = "^00([0-9]+)$", with = "+${1}" }
group = "media"
"#;

const PBX1: &str = "127.0.0.1:5090";
const PBX2: &str = "127.0.0.1:5092";

impl Lab {
    /// A new call to `user`: the actions of the INVITE (and of the relay's
    /// answer, if the call got that far).
    fn call_to(&mut self, user: &str, call_id: &str) -> Vec<String> {
        let mut out = self.trunk_sends(invite_to(user, call_id, call_id, true));
        if let Some((id, _)) = self.m.store.find(call_id) {
            out.extend(self.on(Event::MediaCreated {
                call: id,
                result: Ok(ports(id)),
            }));
        }
        out
    }
}

#[test]
fn rules_choose_the_group_and_rewrite_the_number() {
    let mut lab = Lab::with(ROUTING);
    assert_eq!(
        lab.call_to("1234", "c1"),
        [
            "respond 100 INVITE".to_string(),
            "create media".into(),
            "remote A 127.0.0.9:40000".into(),
            format!("send INVITE to {PBX1}")
        ]
    );
    let (_, b_invite, _) = lab.last("INVITE");
    assert_eq!(
        b_invite.request_uri_str(),
        Some(format!("sip:+49234@{PBX1}").as_str())
    );
    lab.call_to("0030123", "c2");
    let (_, b_invite, target) = lab.last("INVITE");
    assert_eq!(target.addr, addr(MS1));
    assert_eq!(
        b_invite.request_uri_str(),
        Some(format!("sip:+30123@{MS1}").as_str())
    );
}

#[test]
fn reject_redirect_and_no_match_answer_at_once() {
    let mut lab = Lab::with(ROUTING);
    assert_eq!(lab.call_to("900111", "c1"), ["respond 403 INVITE"]);
    assert_eq!(
        lab.responses.last().unwrap().reason_phrase(),
        Some("Blocked")
    );
    assert_eq!(lab.call_to("2555", "c2"), ["respond 302 INVITE"]);
    let contacts: Vec<String> = lab
        .responses
        .last()
        .unwrap()
        .headers("Contact")
        .map(str::to_owned)
        .collect();
    assert_eq!(
        contacts,
        [
            format!("<sip:2555@{PBX1}>;q=1.000"),
            format!("<sip:2555@{PBX2}>;q=0.100")
        ]
    );
    assert_eq!(lab.call_to("777", "c3"), ["respond 404 INVITE"]);
    assert_eq!(lab.m.calls(), 0, "no call was made for any of them");
}

#[test]
fn an_unprobed_member_is_taken_down_by_failed_calls_and_rests() {
    let mut lab = Lab::with(ROUTING);
    // No OPTIONS go to the "pbx" group (probe = "off").
    let probes = lab.on(Event::Probes);
    assert_eq!(
        probes,
        [
            format!("send OPTIONS to {MS1}"),
            format!("send OPTIONS to {MS2}")
        ]
    );
    // pbx1 times out twice (failures_to_down = 2); each call fails over
    // to pbx2 before the answer, unseen by the trunk.
    for n in 0..2 {
        lab.call_to("1000", &format!("c{n}"));
        let (key, _, target) = lab.last("INVITE");
        assert_eq!(target.addr, addr(PBX1));
        let failover = lab.on(Event::Tu(TuEvent::Timeout {
            key: TransactionKey::Client(key),
            timer: sipcore::transaction::Timer::B,
        }));
        assert_eq!(failover, [format!("send INVITE to {PBX2}")]);
    }
    // Down now: the next call goes straight to pbx2.
    lab.call_to("1000", "c9");
    assert_eq!(lab.last("INVITE").2.addr, addr(PBX2));
    // After the group's interval it gets calls again.
    lab.advance(2000);
    lab.on(Event::Timers);
    lab.call_to("1000", "c10");
    assert_eq!(lab.last("INVITE").2.addr, addr(PBX1));
}

#[test]
fn a_group_without_resume_ends_the_calls_of_a_failed_member() {
    let mut lab = Lab::with(ROUTING);
    lab.call_to("1000", "c1");
    lab.answer("INVITE", 200, Some(&sdp("127.0.0.1", 16000)));
    lab.ack_from_trunk("c1");
    // pbx1 fails under its answered call (two failed requests of other
    // calls take it down): the call ends instead of moving.
    let mut ends = Vec::new();
    for n in 0..2 {
        lab.call_to("1000", &format!("x{n}"));
        let (key, _, _) = lab.last("INVITE");
        ends.extend(lab.on(Event::Tu(TuEvent::Timeout {
            key: TransactionKey::Client(key),
            timer: sipcore::transaction::Timer::B,
        })));
    }
    assert!(
        ends.contains(&"cdr media_server_failed".to_string()),
        "{ends:?}"
    );
    assert!(lab.m.store.find("c1").is_none());
}

#[test]
fn a_reload_sends_new_calls_by_the_new_rules_and_keeps_calls_on_their_member() {
    let mut lab = Lab::with(ROUTING);
    lab.call_to("1000", "c1");
    lab.answer("INVITE", 200, Some(&sdp("127.0.0.1", 16000)));
    lab.ack_from_trunk("c1");
    // The new configuration drops pbx1 (c1's member) and sends the
    // office numbers to [pool].
    let without_pbx1 = ROUTING
        .replace(
            "[[group.member]]\nname = \"pbx1\"\naddress = \"127.0.0.1:5090\"\npriority = 1\n",
            "",
        )
        .replace(
            "strip = 1\nprefix = \"+49\"\ngroup = \"pbx\"",
            "group = \"media\"",
        );
    assert_ne!(without_pbx1, ROUTING);
    lab.reload_text(&format!("{EXAMPLE}\n{without_pbx1}"));
    assert_eq!(lab.m.store.check(), Ok(()));
    // A new office call goes to [pool] now.
    lab.call_to("1000", "c2");
    assert_eq!(lab.last("INVITE").2.addr, addr(MS1));
    // c1 still talks to pbx1: its BYE goes there.
    let bye = lab.in_dialog("BYE", "c1", 2, "bye1");
    assert_eq!(
        lab.trunk_sends(bye),
        [
            "respond 200 BYE".to_string(),
            format!("send BYE to {PBX1}"),
            "cdr bye_caller".into(),
            "remove media".into()
        ]
    );
}

#[test]
fn a_late_offer_re_invite_gets_its_answer_from_the_askers_ack() {
    let mut lab = Lab::new();
    lab.answered_call("c1");
    // The trunk refreshes with a re-INVITE without SDP (late offer).
    let reinvite = lab.in_dialog("INVITE", "c1", 2, "re1");
    assert_eq!(lab.trunk_sends(reinvite), [format!("send INVITE to {MS1}")]);
    assert!(lab.last("INVITE").1.body().is_empty());
    // The media server answers with an offer: the trunk gets it, the
    // media server's ACK waits for the trunk's answer.
    assert_eq!(
        lab.answer("INVITE", 200, Some(&sdp("127.0.0.1", 16100))),
        ["remote B 127.0.0.1:16100", "respond 200 INVITE"]
    );
    let ack = {
        let tag = lab.a_tag();
        let text = format!(
            "ACK sip:tandem@127.0.0.1:5060 SIP/2.0\r\n\
             Via: SIP/2.0/UDP {TRUNK};branch=z9hG4bKack2\r\nMax-Forwards: 70\r\n\
             From: <sip:alice@127.0.0.9>;tag=a1\r\nTo: <sip:100@127.0.0.1>;tag={tag}\r\n\
             Call-ID: c1\r\nCSeq: 2 ACK\r\nContent-Type: application/sdp\r\n\
             Content-Length: {}\r\n\r\n{}",
            sdp("127.0.0.9", 40100).len(),
            sdp("127.0.0.9", 40100)
        );
        Message::parse(Bytes::from(text)).unwrap()
    };
    let mut sent = Vec::new();
    let mut summary = Vec::new();
    let actions = lab.m.on(
        Event::Tu(TuEvent::Ack {
            key: None,
            ack,
            source: Target::udp(addr(TRUNK)),
        }),
        lab.now,
        1_000_000,
    );
    for a in &actions {
        if let Action::SendRaw { bytes, .. } = a {
            sent.push(Message::parse(bytes.clone()).unwrap());
        }
        summary.push(lab.note(a));
    }
    assert_eq!(
        summary,
        [
            "remote A 127.0.0.9:40100".to_string(),
            // The ACK's SDP answers the late offer: it settles RTCP mux.
            "rtcp mux".to_string(),
            format!("raw ACK to {MS1}")
        ]
    );
    // The media server's ACK carries the answer, pointing at the relay.
    let body = std::str::from_utf8(sent[0].body()).unwrap();
    assert!(body.contains("m=audio 30002 "), "{body}");
    assert_eq!(sent[0].cseq().seq, lab.last("INVITE").1.cseq().seq);
}

/// One step of a random workload on the machine.
#[derive(Debug, Clone)]
enum Step {
    /// A new call from the trunk; the relay answers with ports or not.
    Call {
        ports: bool,
    },
    /// A response with this status to one of the requests Tandem sent.
    Answer {
        sent: usize,
        status: u16,
    },
    /// One of the requests Tandem sent timed out, or its transaction ended.
    Timeout {
        sent: usize,
    },
    Terminated {
        sent: usize,
    },
    /// The trunk sends this in-dialog request (or CANCEL) for a call.
    Trunk {
        call: usize,
        what: u8,
    },
    /// Time passes, then a tick.
    Tick {
        ms: u64,
        which: u8,
    },
}

fn step() -> impl proptest::strategy::Strategy<Value = Step> {
    use proptest::prelude::*;
    prop_oneof![
        3 => any::<u8>().prop_map(|x| Step::Call { ports: x % 8 != 0 }),
        4 => (any::<usize>(), prop::sample::select(vec![100u16, 180, 183, 200, 200, 408, 486, 503]))
            .prop_map(|(sent, status)| Step::Answer { sent, status }),
        1 => any::<usize>().prop_map(|sent| Step::Timeout { sent }),
        1 => any::<usize>().prop_map(|sent| Step::Terminated { sent }),
        3 => (any::<usize>(), 0u8..6).prop_map(|(call, what)| Step::Trunk { call, what }),
        2 => (0u64..3000, 0u8..4).prop_map(|(ms, which)| Step::Tick { ms, which }),
    ]
}

impl Lab {
    /// Tandem's To tag toward the trunk for `call_id`, if it sent one.
    fn a_tag_of(&self, call_id: &str) -> String {
        self.responses
            .iter()
            .rev()
            .filter(|r| r.call_id() == call_id)
            .find_map(|r| r.to_tag().map(str::to_owned))
            .unwrap_or_else(|| "none".into())
    }

    fn random_step(&mut self, step: Step, calls: &mut Vec<String>) {
        match step {
            Step::Call { ports } => {
                let cid = format!("p{}", calls.len());
                self.trunk_sends(invite_to("100", &cid, &cid, true));
                calls.push(cid.clone());
                if let Some((id, _)) = self.m.store.find(&cid) {
                    let result = if ports {
                        Ok(ports_for(id))
                    } else {
                        Err("none".into())
                    };
                    self.on(Event::MediaCreated { call: id, result });
                }
            }
            Step::Answer { sent, status } => {
                if self.sent.is_empty() {
                    return;
                }
                let (key, req, target) = self.sent[sent % self.sent.len()].clone();
                let mut b = ResponseBuilder::with_to_tag(&req, status, "R", Some("b1"))
                    .header("Contact", &format!("<sip:ms@{}>", target.addr));
                if status == 200 || status == 183 {
                    b = b.body("application/sdp", Bytes::from(sdp("127.0.0.1", 16000)));
                }
                let response = Message::parse(b.build()).unwrap();
                self.on(Event::Tu(TuEvent::Response { key, response }));
            }
            Step::Timeout { sent } | Step::Terminated { sent } => {
                if self.sent.is_empty() {
                    return;
                }
                let key = TransactionKey::Client(self.sent[sent % self.sent.len()].0.clone());
                let ev = if matches!(step, Step::Timeout { .. }) {
                    TuEvent::Timeout {
                        key,
                        timer: sipcore::transaction::Timer::B,
                    }
                } else {
                    TuEvent::Terminated { key }
                };
                self.on(Event::Tu(ev));
            }
            Step::Trunk { call, what } => {
                if calls.is_empty() {
                    return;
                }
                let cid = calls[call % calls.len()].clone();
                let tag = self.a_tag_of(&cid);
                let (method, seq) = match what {
                    0 => ("ACK", 1),
                    1 => ("BYE", 9),
                    2 => ("INVITE", 5),
                    3 => ("INFO", 6),
                    4 => ("CANCEL", 1),
                    _ => ("UPDATE", 7),
                };
                let to = if method == "CANCEL" {
                    "<sip:100@127.0.0.1>".to_owned()
                } else {
                    format!("<sip:100@127.0.0.1>;tag={tag}")
                };
                let branch = if method == "CANCEL" {
                    cid.clone()
                } else {
                    format!("{cid}{method}")
                };
                let text = format!(
                    "{method} sip:tandem@127.0.0.1:5060 SIP/2.0\r\n\
                     Via: SIP/2.0/UDP {TRUNK};branch=z9hG4bK{branch}\r\nMax-Forwards: 70\r\n\
                     From: <sip:alice@127.0.0.9>;tag=a1\r\nTo: {to}\r\n\
                     Call-ID: {cid}\r\nCSeq: {seq} {method}\r\nContent-Length: 0\r\n\r\n"
                );
                let msg = Message::parse(Bytes::from(text)).unwrap();
                if method == "ACK" {
                    self.on(Event::Tu(TuEvent::Ack {
                        key: None,
                        ack: msg,
                        source: Target::udp(addr(TRUNK)),
                    }));
                } else {
                    self.trunk_sends(msg);
                }
            }
            Step::Tick { ms, which } => {
                self.advance(ms);
                let event = match which {
                    0 => Event::Timers,
                    1 => Event::Housekeeping,
                    2 => Event::Probes,
                    _ => Event::SurvivalTick,
                };
                self.on(event);
                self.on(Event::Timers);
            }
        }
    }
}

fn ports_for(id: u64) -> SessionInfo {
    ports(id)
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(128))]
    /// Whatever arrives in whatever order — answers to stale requests,
    /// timeouts, CANCEL after the answer, BYE before it, ticks — the
    /// machine never panics, and after every event every index of the
    /// store agrees with the calls.
    #[test]
    fn random_events_keep_every_index_in_step(steps in proptest::collection::vec(step(), 1..80)) {
        let mut lab = Lab::new();
        let mut calls = Vec::new();
        for s in steps {
            lab.random_step(s, &mut calls);
            proptest::prop_assert_eq!(lab.m.store.check(), Ok(()));
        }
    }
}

#[test]
fn a_probe_timeout_the_machine_reads_late_is_no_failure() {
    let mut lab = Lab::new();
    for _ in 0..2 {
        lab.on(Event::Probes);
        // The machine gets to its timers a second late (it was busy):
        // MS1's answer may still be in its queue, so no failure counts.
        lab.advance(1500);
        assert!(lab.on(Event::Timers).is_empty());
        lab.answer_probe(MS1);
        lab.answer_probe(MS2);
    }
    lab.call("c1");
    assert_eq!(lab.last("INVITE").2.addr, addr(MS1), "MS1 is still up");
    // Read on time, two unanswered probes take MS1 down.
    for _ in 0..2 {
        lab.on(Event::Probes);
        lab.answer_probe(MS2);
        lab.advance(500);
        lab.on(Event::Timers);
        lab.advance(500);
    }
    lab.call("c2");
    lab.call("c3");
    assert_eq!(lab.last("INVITE").2.addr, addr(MS2), "MS1 is down");
}

/// The routing rules, with a fallback from one group to another
/// (`fallback`: from, to) and a cap on every trunk's calls.
struct Tweaked {
    rules: Box<dyn Policy>,
    fallback: Option<(&'static str, &'static str)>,
    max_calls: Option<usize>,
}

impl Tweaked {
    fn fallback(rules: Box<dyn Policy>, from: &'static str, to: &'static str) -> Box<Tweaked> {
        Box::new(Tweaked {
            rules,
            fallback: Some((from, to)),
            max_calls: None,
        })
    }

    fn capped(rules: Box<dyn Policy>, max_calls: usize) -> Box<Tweaked> {
        Box::new(Tweaked {
            rules,
            fallback: None,
            max_calls: Some(max_calls),
        })
    }
}

impl Policy for Tweaked {
    fn source(&self, ip: std::net::IpAddr) -> Option<&str> {
        self.rules.source(ip)
    }
    fn route(&self, invite: &Message, source: &str, minute: u16) -> Route {
        self.rules.route(invite, source, minute)
    }
    fn carried(&self, name: &str) -> bool {
        self.rules.carried(name)
    }
    fn fallback(&self, group: &str) -> Option<String> {
        let (from, to) = self.fallback?;
        (group == from).then(|| to.to_owned())
    }
    fn max_calls(&self, _source: &str) -> Option<usize> {
        self.max_calls
    }
}

#[test]
fn a_group_with_no_member_left_falls_back_where_policy_says_once() {
    let mut lab = Lab::with_policy(ROUTING, |p| Tweaked::fallback(p, "pbx", "media"));
    lab.call_to("1000", "c1");
    let timeout = |lab: &mut Lab| {
        let (key, _, _) = lab.last("INVITE");
        lab.on(Event::Tu(TuEvent::Timeout {
            key: TransactionKey::Client(key),
            timer: sipcore::transaction::Timer::B,
        }))
    };
    assert_eq!(timeout(&mut lab), [format!("send INVITE to {PBX2}")]);
    // Both PBX members failed: the call goes to the fallback group.
    assert_eq!(timeout(&mut lab), [format!("send INVITE to {MS1}")]);
    assert_eq!(timeout(&mut lab), [format!("send INVITE to {MS2}")]);
    // And no further: once both are gone too, 503.
    let last = timeout(&mut lab);
    assert!(last.contains(&"respond 503 INVITE".to_string()), "{last:?}");
}

#[test]
fn without_a_fallback_a_group_with_no_member_left_answers_503() {
    let mut lab = Lab::with(ROUTING);
    lab.call_to("1000", "c1");
    for _ in 0..2 {
        let (key, _, _) = lab.last("INVITE");
        let out = lab.on(Event::Tu(TuEvent::Timeout {
            key: TransactionKey::Client(key),
            timer: sipcore::transaction::Timer::B,
        }));
        if out.contains(&"respond 503 INVITE".to_string()) {
            return;
        }
    }
    panic!("no 503 after both members failed");
}

/// The relay's latching lets a leg's RTP come from the IP its SIP comes
/// from (a peer behind NAT): every SDP address it learns comes with that
/// leg's SIP source, and a move with the new server's.
#[test]
fn the_relay_learns_each_legs_sip_source_with_its_sdp_and_on_a_move() {
    let mut lab = Lab::new();
    lab.call("c1");
    // MS1's SDP names another host than MS1's SIP address.
    lab.answer("INVITE", 200, Some(&sdp("127.0.0.50", 16000)));
    lab.ack_from_trunk("c1");
    let ip = |s: &str| Some(addr(s).ip());
    let remotes: Vec<_> = lab
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::SetRemote {
                side,
                addr,
                sip_source,
                ..
            } => Some((*side, *addr, *sip_source)),
            _ => None,
        })
        .collect();
    assert_eq!(
        remotes,
        [
            (Side::A, addr("127.0.0.9:40000"), ip(TRUNK)),
            (Side::B, addr("127.0.0.50:16000"), ip(MS1)),
        ]
    );

    // MS1 fails; the call resumes on MS2.
    lab.fail_ms1();
    let (_, _, target) = lab.last("INVITE");
    assert_eq!(target.addr, addr(MS2));
    lab.answer("INVITE", 200, Some(&sdp("127.0.0.60", 18000)));
    let switched: Vec<_> = lab
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::SwitchUpstream {
                addr, sip_source, ..
            } => Some((*addr, *sip_source)),
            _ => None,
        })
        .collect();
    assert_eq!(switched, [(addr("127.0.0.60:18000"), ip(MS2))]);
}

/// The RTCP mux changes told to the relay so far.
fn rtcp_mux_changes(lab: &Lab) -> Vec<RtcpMuxChange> {
    lab.actions
        .iter()
        .filter_map(|a| match a {
            Action::RtcpMux { change, .. } => Some(*change),
            _ => None,
        })
        .collect()
}

fn with_mux(ip: &str, port: u16) -> String {
    sdp(ip, port) + "a=rtcp-mux\r\n"
}

/// A call whose offer and MS1's answer both carry rtcp-mux, confirmed.
fn mux_call_on_ms1() -> Lab {
    let mut lab = Lab::new();
    let offer = invite_with_body("100", "c1", "i1", Some(with_mux("127.0.0.9", 40000)));
    lab.call_with("c1", offer);
    lab.answer("INVITE", 200, Some(&with_mux("127.0.0.50", 16000)));
    lab.ack_from_trunk("c1");
    lab
}

/// rtcp-mux (RFC 5761): an answer settles both legs (leg A's answer is
/// leg B's rewritten), and a new media server's answer on a move settles
/// leg B (leg A keeps what it agreed).
#[test]
fn the_relay_learns_whether_each_answer_and_a_moves_answer_multiplex_rtcp() {
    let mut lab = mux_call_on_ms1();
    assert_eq!(
        rtcp_mux_changes(&lab),
        [RtcpMuxChange::Agreed {
            side: None,
            mux: true
        }]
    );

    // MS1 fails; MS2 answers without rtcp-mux.
    lab.fail_ms1();
    lab.answer("INVITE", 200, Some(&sdp("127.0.0.60", 18000)));
    let switched: Vec<_> = lab
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::SwitchUpstream { rtcp_mux, .. } => Some(*rtcp_mux),
            _ => None,
        })
        .collect();
    assert_eq!(switched, [false]);
}

/// Review finding: a member's early answer without mux, then that member
/// fails and the next answers with mux: the final answer must set both
/// legs back to mux (it used to leave leg A off, so RTCP toward a
/// multiplexing trunk went to port+1 and was lost).
#[test]
fn the_final_answer_after_a_failover_settles_rtcp_mux_for_both_legs() {
    let mut lab = Lab::new();
    let offer = invite_with_body("100", "c1", "i1", Some(with_mux("127.0.0.9", 40000)));
    lab.call_with("c1", offer);
    lab.answer("INVITE", 183, Some(&sdp("127.0.0.50", 16000)));
    lab.answer("INVITE", 503, None);
    assert_eq!(lab.last("INVITE").2.addr, addr(MS2));
    lab.answer("INVITE", 200, Some(&with_mux("127.0.0.60", 18000)));
    let off = RtcpMuxChange::Agreed {
        side: None,
        mux: false,
    };
    let on = RtcpMuxChange::Agreed {
        side: None,
        mux: true,
    };
    assert_eq!(rtcp_mux_changes(&lab), [off, on]);
}

/// Review finding: an offer without mux binds the RTCP sockets it names
/// before it leaves, but routing waits for the answer, so a rejected
/// offer changes nothing; an SDP with a null address still tells the
/// relay its mux (it used to be dropped with the address).
#[test]
fn an_offer_binds_rtcp_sockets_and_only_answers_change_rtcp_mux() {
    let mut lab = Lab::new();
    lab.call("c1");
    let (_, invite, _) = lab.last("INVITE");
    let changes = rtcp_mux_changes(&lab);
    assert_eq!(changes, [RtcpMuxChange::BindSockets]);
    // The socket request precedes the offer that names the sockets.
    let bind_at = lab
        .actions
        .iter()
        .position(|a| matches!(a, Action::RtcpMux { .. }))
        .unwrap();
    let offer_at = lab
        .actions
        .iter()
        .position(|a| matches!(a, Action::SendRequest { request, .. } if request.call_id() == invite.call_id()))
        .unwrap();
    assert!(bind_at < offer_at);
    // A held answer (c=0.0.0.0) still settles mux.
    lab.answer("INVITE", 200, Some(&sdp("0.0.0.0", 16000)));
    assert_eq!(
        rtcp_mux_changes(&lab),
        [
            RtcpMuxChange::BindSockets,
            RtcpMuxChange::Agreed {
                side: None,
                mux: false
            }
        ]
    );
}

/// Review finding: after a move to a server that insists on another codec
/// (and refuses mux), Tandem re-offers leg A; leg A's answer settles leg
/// A's mux (it used to be ignored, leaving leg A multiplexing).
#[test]
fn leg_as_answer_to_the_re_offer_after_a_move_settles_leg_as_rtcp_mux() {
    let mut lab = mux_call_on_ms1();
    lab.fail_ms1();
    let pcma_only = "v=0\r\no=x 1 1 IN IP4 127.0.0.60\r\ns=-\r\nc=IN IP4 127.0.0.60\r\n\
                     t=0 0\r\nm=audio 18000 RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\n";
    lab.answer("INVITE", 200, Some(pcma_only));
    let (_, reoffer, target) = lab.last("INVITE");
    assert_eq!(target.addr, addr(TRUNK), "no re-offer to leg A");
    assert!(!std::str::from_utf8(reoffer.body())
        .unwrap()
        .contains("a=rtcp-mux"));
    lab.answer("INVITE", 200, Some(&sdp("127.0.0.9", 40000)));
    let on_both = RtcpMuxChange::Agreed {
        side: None,
        mux: true,
    };
    let a_off = RtcpMuxChange::Agreed {
        side: Some(Side::A),
        mux: false,
    };
    assert_eq!(
        rtcp_mux_changes(&lab),
        [on_both, RtcpMuxChange::BindSockets, a_off]
    );
}

// ------------------------------------------------------------ strangers

const STRANGER: &str = "127.0.0.3:5060";
const VICTIM: &str = "127.0.0.4:5060";

/// The routing rules, but only 127.0.0.9 and 127.0.0.10 are the trunk
/// (one carrier, two SBC nodes) and 127.0.0.20 is another trunk; the
/// members stay on 127.0.0.1.
struct TrunkOnly(Box<dyn Policy>);

impl Policy for TrunkOnly {
    fn source(&self, ip: std::net::IpAddr) -> Option<&str> {
        let ip = ip.to_string();
        if ip == "127.0.0.20" {
            return Some("other");
        }
        let trunk = ["127.0.0.9", "127.0.0.10"].contains(&ip.as_str());
        trunk.then(|| self.0.source(ip.parse().unwrap())).flatten()
    }
    fn route(&self, invite: &Message, source: &str, minute: u16) -> Route {
        self.0.route(invite, source, minute)
    }
    fn carried(&self, name: &str) -> bool {
        self.0.carried(name)
    }
}

impl Lab {
    fn trunk_only() -> Lab {
        Lab::with_policy("", |p| Box::new(TrunkOnly(p)))
    }

    /// A request as received from `source`.
    fn sends_from(&mut self, source: &str, msg: Message) -> Vec<String> {
        let key = ServerKey::from_request(&msg).unwrap();
        self.on(Event::Tu(TuEvent::Request {
            key,
            request: msg,
            source: Target::udp(addr(source)),
        }))
    }

    /// A 2xx as if for leg B's INVITE, Contact `contact`, top Via branch
    /// `branch`, from `source`, matching no transaction.
    fn stray_2xx(
        &mut self,
        branch: &str,
        call_id: &str,
        to_tag: &str,
        contact: &str,
    ) -> Vec<String> {
        let (_, b_invite, _) = self.last("INVITE");
        let text = String::from_utf8(
            ResponseBuilder::with_to_tag(&b_invite, 200, "OK", Some(to_tag))
                .header("Contact", &format!("<sip:x@{contact}>"))
                .build()
                .to_vec(),
        )
        .unwrap()
        .replace(b_invite.top_via().branch().unwrap(), branch)
        .replace(b_invite.call_id(), call_id);
        let response = Message::parse(Bytes::from(text)).unwrap();
        self.on(Event::Tu(TuEvent::StrayResponse {
            response,
            source: Target::udp(addr(STRANGER)),
        }))
    }
}

#[test]
fn a_stray_2xx_is_acted_on_only_for_our_branch_and_a_leg_b_dialog_of_ours() {
    let mut lab = Lab::new();
    lab.answered_call("c1");
    let (_, b_invite, _) = lab.last("INVITE");
    let ours = b_invite.top_via().branch().unwrap().to_owned();
    let b_call = b_invite.call_id().to_owned();
    // A forged 2xx for a dialog we do not have, naming a victim: before,
    // an ACK and a BYE (retransmitted) went to the victim.
    assert!(lab
        .stray_2xx("z9hG4bKforged", "nosuchcall", "x1", VICTIM)
        .is_empty());
    // Our branch copied (seen on the path) does not make a dialog ours.
    assert!(lab.stray_2xx(&ours, "nosuchcall", "x1", VICTIM).is_empty());
    // Leg B's Call-ID with another To tag: not the dialog either.
    assert!(lab.stray_2xx(&ours, &b_call, "x1", VICTIM).is_empty());
    // The dialog's Call-ID and tags, but a branch we did not make.
    assert!(lab
        .stray_2xx("z9hG4bKforged", &b_call, "b1", VICTIM)
        .is_empty());
    // A real retransmission (our branch, leg B's dialog): ACKed again, to
    // the member, whatever its Contact says.
    assert_eq!(
        lab.stray_2xx(&ours, &b_call, "b1", VICTIM),
        [format!("raw ACK to {MS1}")]
    );
    assert_eq!(lab.m.calls(), 1);
}

#[test]
fn requests_from_unknown_sources_are_dropped_or_answered_once() {
    let mut lab = Lab::trunk_only();
    // Default: dropped, and the transaction forgotten (nothing of it is
    // retransmitted toward a source that may be spoofed).
    assert_eq!(
        lab.sends_from(STRANGER, invite("s1", "s1", true)),
        ["forget"]
    );
    let options = |branch: &str| {
        Message::parse(
            RequestBuilder::new(&Method::Options, "sip:127.0.0.1:5060")
                .header("Via", &format!("SIP/2.0/UDP {STRANGER};branch={branch}"))
                .header("From", "<sip:x@127.0.0.3>;tag=o1")
                .header("To", "<sip:127.0.0.1>")
                .header("Call-ID", "o1")
                .header("CSeq", "1 OPTIONS")
                .build(),
        )
        .unwrap()
    };
    assert_eq!(lab.sends_from(STRANGER, options("z9hG4bKo1")), ["forget"]);
    // The standby's probe of the floating address carries our pair's
    // branch: answered, wherever it comes from.
    let probe = lab.m.tokens.branches.branch("probe1");
    assert_eq!(
        lab.sends_from(STRANGER, options(&probe)),
        ["respond 200 OPTIONS"]
    );
    // "403": one stateless answer.
    lab.m.settings.unknown_source = UnknownSource::Forbid;
    assert_eq!(
        lab.sends_from(STRANGER, invite("s2", "s2", true)),
        ["forget after 403 INVITE"]
    );
    assert_eq!(lab.m.calls(), 0);
    // The trunk is served as ever.
    assert_eq!(
        lab.trunk_sends(invite("c1", "i1", true)),
        ["respond 100 INVITE", "create media"]
    );
}

#[test]
fn in_dialog_requests_are_taken_only_from_the_legs_peers() {
    let mut lab = Lab::trunk_only();
    lab.answered_call("c1");
    // The right Call-ID and tags from a stranger: dropped (unknown
    // source); from a peer of ours that is not this leg's (another
    // trunk, a member): 403. The call goes on.
    let bye = lab.in_dialog("BYE", "c1", 2, "bye1");
    assert_eq!(lab.sends_from("127.0.0.5:5060", bye.clone()), ["forget"]);
    for peer in ["127.0.0.20:5060", MS1] {
        assert_eq!(lab.sends_from(peer, bye.clone()), ["forget after 403 BYE"]);
    }
    assert_eq!(lab.m.calls(), 1);
    // An ACK from there is dropped without a word.
    let ack = lab.in_dialog("ACK", "c1", 1, "ack9");
    assert!(lab
        .on(Event::Tu(TuEvent::Ack {
            key: None,
            ack,
            source: Target::udp(addr("127.0.0.20:5060")),
        }))
        .is_empty());
    // A request for leg B from outside its group (the trunk): refused.
    let (_, b_invite, _) = lab.last("INVITE");
    let b_bye = Message::parse(
        RequestBuilder::new(&Method::Bye, "sip:tandem@127.0.0.1:5060")
            .header("Via", "SIP/2.0/UDP 127.0.0.9:5060;branch=z9hG4bKbb1")
            .header("From", "<sip:ms@127.0.0.1>;tag=b1")
            .header(
                "To",
                &format!(
                    "<sip:tandem@127.0.0.1>;tag={}",
                    b_invite.from_tag().unwrap()
                ),
            )
            .header("Call-ID", b_invite.call_id())
            .header("CSeq", "5 BYE")
            .build(),
    )
    .unwrap();
    assert_eq!(
        lab.sends_from(TRUNK, b_bye.clone()),
        ["forget after 403 BYE"]
    );
    assert_eq!(lab.m.calls(), 1);
    // From the member it ends the call...
    assert_eq!(
        lab.sends_from(MS1, b_bye),
        [
            "respond 200 BYE".to_string(),
            "send BYE to 127.0.0.9:5060".into(),
            "cdr bye_server".into(),
            "remove media".into()
        ]
    );
    assert_eq!(lab.m.calls(), 0);
    // ...and from another node of the trunk a leg-A BYE does too.
    lab.answered_call("c2");
    assert_eq!(lab.m.calls(), 1);
    let bye = lab.in_dialog("BYE", "c2", 2, "bye2");
    assert_eq!(
        lab.sends_from("127.0.0.10:5060", bye),
        [
            "respond 200 BYE".to_string(),
            format!("send BYE to {MS2}"),
            "cdr bye_caller".into(),
            "remove media".into()
        ]
    );
    assert_eq!(lab.m.calls(), 0);
}

// ---------------------------------------------------------------- call caps

/// The trunk's INVITE `call_id` is refused: the status and Retry-After
/// of the answer.
fn refused(lab: &mut Lab, call_id: &str) -> (u16, Option<String>) {
    let out = lab.trunk_sends(invite(call_id, "i1", true));
    assert_eq!(out, ["respond 503 INVITE"], "{call_id}");
    let r = lab.responses.last().unwrap();
    (
        r.status().unwrap(),
        r.header("Retry-After").map(str::to_owned),
    )
}

#[test]
fn calls_beyond_limits_max_calls_get_503_with_retry_after() {
    let mut lab = Lab::new();
    // As `[limits] max_calls = 2` sets it.
    lab.m.settings.max_calls = 2;
    lab.call("c1");
    lab.call("c2");
    assert_eq!(refused(&mut lab, "c3"), (503, Some("5".into())));
    assert_eq!(lab.m.store.len(), 2);
    lab.m.store.check().unwrap();
}

#[test]
fn calls_beyond_a_trunks_max_calls_get_503_and_an_ended_call_frees_its_place() {
    let mut lab = Lab::with_policy("", |p| Tweaked::capped(p, 1));
    lab.call("c1");
    assert_eq!(lab.m.store.calls_from("carrier"), 1);
    assert_eq!(refused(&mut lab, "c2"), (503, Some("5".into())));
    // The call ends (its caller hangs up before the answer): room again.
    let id = lab.m.store.find("c1").unwrap().0;
    lab.m
        .fail_call(id, 500, "Server Internal Error", None, "test");
    assert_eq!(lab.m.store.calls_from("carrier"), 0);
    lab.call("c3");
    lab.m.store.check().unwrap();
}

/// Shards: each machine holds its own calls, but the caps count the
/// node's (a shared tally): a trunk's one place taken on one shard is
/// taken for the other too, and freed for both when the call ends.
#[test]
fn with_a_shared_tally_a_call_on_one_shard_counts_against_the_caps_on_another() {
    let tally = std::sync::Arc::new(crate::shard::tally::CallTally::default());
    let mut shard0 = Lab::with_policy("", |p| Tweaked::capped(p, 1));
    let mut shard1 = Lab::with_policy("", |p| Tweaked::capped(p, 1));
    shard0.m.set_call_tally(tally.clone());
    shard1.m.set_call_tally(tally.clone());
    shard0.call("c1");
    assert_eq!(refused(&mut shard1, "c2"), (503, Some("5".into())));
    let id = shard0.m.store.find("c1").unwrap().0;
    shard0
        .m
        .fail_call(id, 500, "Server Internal Error", None, "test");
    assert_eq!(tally.total(), 0);
    shard1.call("c3");
    assert_eq!((tally.total(), tally.calls_from("carrier")), (1, 1));
    // limits.max_calls too: shard 0 holds no call, shard 1 one.
    let _ = shard0.m.out.take();
    shard0.m.settings.max_calls = 1;
    assert_eq!(refused(&mut shard0, "c4"), (503, Some("5".into())));
}

/// The top Via of `msg`: its transport and sent-by.
fn top_via(msg: &Message) -> String {
    let via = msg.top_via();
    format!("{} {}:{}", via.transport, via.host, via.sent_by_port())
}

/// A request Tandem sends over TLS names the TLS listener in its Via
/// (transport and port), so a member that lost the connection can answer
/// per Via (RFC 3261 §18.2.2); a member over UDP keeps the UDP address.
#[test]
fn requests_to_a_tls_member_have_the_tls_listener_in_via() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, ca) = (
        dir.path().join("tandem.pem"),
        dir.path().join("tandem.key"),
        dir.path().join("ca.pem"),
    );
    let test_ca = testkit::certs::TestCa::new("via");
    test_ca.issue(&["127.0.0.1"], &cert, &key);
    std::fs::write(&ca, test_ca.pem()).unwrap();
    let ms1 = format!("address = \"{MS1}\"");
    let text = format!(
        "{}\n[sip.tls]\nport = 5061\ncert_file = {cert:?}\nkey_file = {key:?}\nca_file = {ca:?}\n",
        EXAMPLE.replace(&ms1, &format!("{ms1}\ntransport = \"tls\""))
    );
    let mut lab = Lab::from_text(&text, |p| p);

    lab.on(Event::Probes);
    let (_, probe, target) = lab.probe_to(MS1);
    assert_eq!(target.transport, sipcore::transport::TransportKind::Tls);
    assert_eq!(top_via(&probe), "TLS 127.0.0.1:5061");

    lab.answered_call("c1");
    let (_, b_invite, _) = lab.last("INVITE");
    assert_eq!(top_via(&b_invite), "TLS 127.0.0.1:5061");
    // The branch is still one this node made (its HMAC tag checks).
    assert!(lab.m.tokens.made(&b_invite));

    // The trunk hangs up: the BYE to the member is over TLS as well.
    let bye = lab.in_dialog("BYE", "c1", 2, "bye1");
    lab.trunk_sends(bye);
    let (_, b_bye, target) = lab.last("BYE");
    assert_eq!(target.addr, addr(MS1));
    assert_eq!(top_via(&b_bye), "TLS 127.0.0.1:5061");

    // MS2 stays on UDP: its probes name the UDP address.
    let (_, probe, _) = lab.probe_to(MS2);
    assert_eq!(top_via(&probe), "UDP 127.0.0.1:5060");
}

// ---- the location service: calls to registered phones ----

/// Rules for the phone tests: `alice` and `bob` by location (parallel,
/// or sequential with a 20 s ring per contact), `carol` by location with
/// the pool as fallback, the rest to the pool.
const PHONE_RULES: &str = r#"
[registrar]
domains = ["pbx.example"]
credentials_file = "/etc/tandem/credentials"

[[rule]]
name = "alice"
ruri_user = "alice"
location = true

[[rule]]
name = "bob"
ruri_user = "bob"
location = true
fork = "sequential"

[[rule]]
name = "carol"
ruri_user = "carol"
location = true
fallback = "media"

[[rule]]
name = "rest"
group = "media"
"#;

const PHONE_DOMAIN: &str = "pbx.example";
/// Phones live outside the trunk's network (127.0.0.0/8).
const PHONE1: &str = "10.1.0.21:5062";
const PHONE2: &str = "10.1.0.22:5064";

fn phone_lab() -> Lab {
    phone_lab_with("")
}

/// [`phone_lab`] with `extra` TOML after the phone rules.
fn phone_lab_with(extra: &str) -> Lab {
    let mut lab = Lab::with(&format!("{PHONE_RULES}\n{extra}"));
    let settings = crate::registrar::RegistrarSettings {
        domains: vec![PHONE_DOMAIN.into()],
        realm: PHONE_DOMAIN.into(),
        ..Default::default()
    };
    let auth = crate::registrar::auth::AuthSettings {
        realm: PHONE_DOMAIN.into(),
        algorithms: vec![sipcore::digest::Algorithm::Md5],
        nonce_lifetime: Duration::from_secs(300),
        max_failures: 3,
        failure_window: Duration::from_secs(60),
        failure_ban: Duration::from_secs(300),
    };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("credentials");
    let mut lines = String::new();
    for user in ["alice", "bob"] {
        lines.push_str(&crate::registrar::credentials::passwd_lines(
            user,
            PHONE_DOMAIN,
            &format!("{user}-secret"),
        ));
    }
    std::fs::write(&file, lines).unwrap();
    std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let creds = crate::registrar::Credentials::load(&file).unwrap();
    lab.m.set_registrar(Some(crate::registrar::Registrar::new(
        crate::registrar::Bindings::new(settings),
        crate::registrar::Authenticator::new(
            auth,
            sipcore::digest::NonceKey::from_secret(b"machine tests"),
            creds,
        ),
    )));
    lab
}

fn register_request(user: &str, contact: &str, from: &str, call_id: &str, cseq: u32) -> Message {
    let text = format!(
        "REGISTER sip:{PHONE_DOMAIN} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {from};branch=z9hG4bKr{cseq}{call_id};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:{user}@{PHONE_DOMAIN}>;tag=r{call_id}\r\n\
         To: <sip:{user}@{PHONE_DOMAIN}>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: {cseq} REGISTER\r\n\
         Contact: {contact}\r\n\
         Expires: 600\r\n\
         Content-Length: 0\r\n\r\n"
    );
    Message::parse(Bytes::from(text)).unwrap()
}

impl Lab {
    fn phone_sends(&mut self, msg: Message, from: &str) -> Vec<String> {
        let key = ServerKey::from_request(&msg).unwrap();
        self.on(Event::Tu(TuEvent::Request {
            key,
            request: msg,
            source: Target::udp(addr(from)),
        }))
    }

    /// `user` registers `contact` from `from`: the 401, then the digest
    /// answer with the password; the final status.
    /// `extra` headers go in both REGISTERs (e.g. Path).
    fn register(
        &mut self,
        user: &str,
        password: &str,
        contact: &str,
        from: &str,
        call_id: &str,
        extra: &[(&str, &str)],
    ) -> u16 {
        let with_extra = |m: Message| {
            extra
                .iter()
                .fold(m.edit(), |e, (n, v)| e.add_header(*n, *v))
                .build_message()
                .unwrap()
        };
        let first = with_extra(register_request(user, contact, from, call_id, 1));
        assert_eq!(self.phone_sends(first, from), ["respond 401 REGISTER"]);
        let challenge = self
            .responses
            .last()
            .unwrap()
            .header("WWW-Authenticate")
            .unwrap()
            .to_owned();
        let challenge = sipcore::digest::Challenge::parse(&challenge).unwrap();
        let uri = format!("sip:{PHONE_DOMAIN}");
        let auth = sipcore::digest::authorization(
            &challenge, user, password, "REGISTER", &uri, "c0ffee", 1,
        );
        let second = with_extra(register_request(user, contact, from, call_id, 2))
            .edit()
            .add_header("Authorization", &auth)
            .build_message()
            .unwrap();
        self.phone_sends(second, from);
        self.responses.last().unwrap().status().unwrap()
    }

    /// A phone's answer to the last INVITE Tandem sent to `to`.
    fn phone_answers(&mut self, to: &str, status: u16, sdp: Option<&str>) -> Vec<String> {
        let (key, req, _) = self
            .sent
            .iter()
            .rev()
            .find(|(_, m, t)| m.method() == Some(&Method::Invite) && t.addr == addr(to))
            .cloned()
            .expect("an INVITE to the phone");
        let mut b = ResponseBuilder::with_to_tag(&req, status, "Reason", Some("p1"))
            .header("Contact", "<sip:phone@192.168.1.10:5060>");
        if let Some(body) = sdp {
            b = b.body("application/sdp", Bytes::from(body.to_owned()));
        }
        let response = Message::parse(b.build()).unwrap();
        self.on(Event::Tu(TuEvent::Response { key, response }))
    }

    fn trunk_calls(&mut self, user: &str, call_id: &str) -> (Vec<String>, Vec<String>) {
        let first = self.trunk_sends(invite_to(user, call_id, "i1", true));
        let Some((id, _)) = self.m.store.find(call_id) else {
            return (first, Vec::new());
        };
        let second = self.on(Event::MediaCreated {
            call: id,
            result: Ok(ports(id)),
        });
        (first, second)
    }
}

#[test]
fn a_register_is_challenged_then_bound_and_its_200_lists_the_contact() {
    let mut lab = phone_lab();
    let contact = format!("<sip:alice@{PHONE1}>");
    assert_eq!(
        lab.register("alice", "alice-secret", &contact, PHONE1, "r1", &[]),
        200
    );
    let ok = lab.responses.last().unwrap();
    let listed: Vec<String> = ok.header_values("Contact").map(str::to_owned).collect();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert!(
        listed[0].contains(&format!("sip:alice@{PHONE1}")) && listed[0].contains("expires=600"),
        "{listed:?}"
    );
    assert!(ok.header("Date").is_some());
    // RFC 3581: where the phone was seen.
    let via = ok.header("Via").unwrap();
    assert!(via.ends_with(";received=10.1.0.21;rport=5062"), "{via}");
    // A wrong password binds nothing.
    assert_eq!(
        lab.register(
            "bob",
            "guess",
            &format!("<sip:bob@{PHONE2}>"),
            PHONE2,
            "r2",
            &[]
        ),
        403
    );
    assert_eq!(lab.m.registrar().unwrap().bindings.len(), 1);
    // Alice's credentials cannot register Bob's AOR.
    let status = {
        let first = register_request("bob", &contact, PHONE1, "r3", 1);
        lab.phone_sends(first, PHONE1);
        let challenge = lab
            .responses
            .last()
            .unwrap()
            .header("WWW-Authenticate")
            .unwrap()
            .to_owned();
        let challenge = sipcore::digest::Challenge::parse(&challenge).unwrap();
        let auth = sipcore::digest::authorization(
            &challenge,
            "alice",
            "alice-secret",
            "REGISTER",
            &format!("sip:{PHONE_DOMAIN}"),
            "c0ffee",
            1,
        );
        let second = register_request("bob", &contact, PHONE1, "r3", 2)
            .edit()
            .add_header("Authorization", &auth)
            .build_message()
            .unwrap();
        lab.phone_sends(second, PHONE1);
        lab.responses.last().unwrap().status().unwrap()
    };
    assert_eq!(status, 403);
}

#[test]
fn a_call_to_an_aor_rings_every_contact_and_the_first_2xx_wins() {
    let mut lab = phone_lab();
    // Alice has two phones; the desk phone's Contact is a private address
    // behind NAT: it is reached where its REGISTER came from.
    assert_eq!(
        lab.register(
            "alice",
            "alice-secret",
            "<sip:alice@192.168.1.10:5060>",
            PHONE1,
            "r1",
            &[]
        ),
        200
    );
    assert_eq!(
        lab.register(
            "alice",
            "alice-secret",
            &format!("<sip:alice@{PHONE2}>"),
            PHONE2,
            "r2",
            &[]
        ),
        200
    );
    let (first, media) = lab.trunk_calls("alice", "c1");
    assert_eq!(first, ["respond 100 INVITE", "create media"]);
    let mut sends: Vec<&String> = media
        .iter()
        .filter(|l| l.starts_with("send INVITE"))
        .collect();
    sends.sort();
    assert_eq!(
        sends,
        [
            &format!("send INVITE to {PHONE1}"),
            &format!("send INVITE to {PHONE2}")
        ]
    );
    let (_, to_desk, _) = lab
        .sent
        .iter()
        .find(|(_, m, t)| m.method() == Some(&Method::Invite) && t.addr == addr(PHONE1))
        .cloned()
        .unwrap();
    assert_eq!(
        to_desk.request_uri_str(),
        Some("sip:alice@192.168.1.10:5060")
    );
    // Both ring; the trunk hears ringing.
    assert_eq!(lab.phone_answers(PHONE1, 180, None), ["respond 180 INVITE"]);
    assert_eq!(lab.phone_answers(PHONE2, 180, None), ["respond 180 INVITE"]);
    // The second phone answers: it is leg B; the first is cancelled.
    let answered = lab.phone_answers(PHONE2, 200, Some(&sdp("10.1.0.22", 17000)));
    assert_eq!(
        answered,
        [
            format!("send CANCEL to {PHONE1}"),
            "remote B 10.1.0.22:17000".into(),
            format!("raw ACK to {PHONE2}"),
            "respond 200 INVITE".into(),
        ]
    );
    // The first phone's 200 crossed our CANCEL: ACKed and hung up at
    // its flow, the call untouched.
    assert_eq!(
        lab.phone_answers(PHONE1, 200, Some(&sdp("192.168.1.10", 18000))),
        [
            format!("raw ACK to {PHONE1}"),
            format!("send BYE to {PHONE1}")
        ]
    );
    assert_eq!(lab.m.calls(), 1);
    lab.ack_from_trunk("c1");
    // The phone hangs up: its BYE is taken from its flow.
    let call = lab.m.store.values().next().unwrap().clone();
    let d = call.b.dialog.clone().unwrap();
    let bye_text = format!(
        "BYE sip:tandem@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP {PHONE2};branch=z9hG4bKpb1\r\n\
         Max-Forwards: 70\r\nFrom: {};tag={}\r\nTo: {};tag={}\r\nCall-ID: {}\r\nCSeq: 9 BYE\r\n\
         Content-Length: 0\r\n\r\n",
        "<sip:alice@pbx.example>",
        d.id.remote_tag,
        "<sip:alice@127.0.0.1>",
        d.id.local_tag,
        call.b.call_id
    );
    let bye = Message::parse(Bytes::from(bye_text)).unwrap();
    let ended = lab.phone_sends(bye, PHONE2);
    assert_eq!(ended[0], "respond 200 BYE");
    assert!(ended.contains(&format!("send BYE to {TRUNK}")), "{ended:?}");
    assert_eq!(lab.m.calls(), 0);
}

#[test]
fn sequential_forking_rings_one_contact_after_another() {
    let mut lab = phone_lab();
    assert_eq!(
        lab.register(
            "bob",
            "bob-secret",
            &format!("<sip:bob@{PHONE1}>;q=0.5"),
            PHONE1,
            "r1",
            &[]
        ),
        200
    );
    assert_eq!(
        lab.register(
            "bob",
            "bob-secret",
            &format!("<sip:bob@{PHONE2}>;q=1.0"),
            PHONE2,
            "r2",
            &[]
        ),
        200
    );
    let (_, media) = lab.trunk_calls("bob", "c1");
    // The higher q first, alone.
    assert_eq!(media.last().unwrap(), &format!("send INVITE to {PHONE2}"));
    assert_eq!(
        media
            .iter()
            .filter(|l| l.starts_with("send INVITE"))
            .count(),
        1
    );
    lab.phone_answers(PHONE2, 180, None);
    // It rings 20 s unanswered: CANCEL, and the next contact rings.
    lab.advance(20_001);
    let next = lab.on(Event::Timers);
    assert_eq!(
        next,
        [
            format!("send CANCEL to {PHONE2}"),
            format!("send INVITE to {PHONE1}")
        ]
    );
    // Busy there, and nothing is left: the caller hears 486.
    let busy = lab.phone_answers(PHONE1, 486, None);
    assert!(busy.contains(&"respond 486 INVITE".to_string()), "{busy:?}");
    assert_eq!(lab.m.calls(), 0);
}

#[test]
fn an_unregistered_aor_gets_404_or_its_fallback_group() {
    let mut lab = phone_lab();
    let (first, _) = lab.trunk_calls("alice", "c1");
    assert_eq!(first, ["respond 404 INVITE"]);
    let warning = lab
        .responses
        .last()
        .unwrap()
        .header("Warning")
        .unwrap()
        .to_owned();
    assert!(
        warning.contains("alice@pbx.example is not registered"),
        "{warning}"
    );
    let (first, media) = lab.trunk_calls("carol", "c2");
    assert_eq!(first, ["respond 100 INVITE", "create media"]);
    assert_eq!(media.last().unwrap(), &format!("send INVITE to {MS1}"));
}

#[test]
fn a_cancel_while_phones_ring_cancels_every_fork() {
    let mut lab = phone_lab();
    lab.register(
        "alice",
        "alice-secret",
        &format!("<sip:alice@{PHONE1}>"),
        PHONE1,
        "r1",
        &[],
    );
    lab.register(
        "alice",
        "alice-secret",
        &format!("<sip:alice@{PHONE2}>"),
        PHONE2,
        "r2",
        &[],
    );
    lab.trunk_calls("alice", "c1");
    lab.phone_answers(PHONE1, 180, None);
    let cancelled = lab.trunk_sends(cancel("c1"));
    // The ringing phone gets its CANCEL now, the silent one with its
    // first provisional (§9.1).
    assert_eq!(
        cancelled,
        [
            "respond 200 CANCEL".to_string(),
            "respond 487 INVITE".into(),
            format!("send CANCEL to {PHONE1}")
        ]
    );
    assert_eq!(
        lab.phone_answers(PHONE2, 180, None),
        [format!("send CANCEL to {PHONE2}")]
    );
    assert_eq!(lab.phone_answers(PHONE1, 487, None), Vec::<String>::new());
    let done = lab.phone_answers(PHONE2, 487, None);
    assert_eq!(done, ["cdr cancelled", "remove media"]);
    assert_eq!(lab.m.calls(), 0);
}

/// A phone registered through an edge proxy (Path): the INVITE to it
/// and the CANCEL of that INVITE carry the same Route (RFC 3261 §9.1).
#[test]
fn the_cancel_to_a_phone_behind_a_path_carries_the_invites_route() {
    let mut lab = phone_lab();
    let edge = "<sip:edge.example.com;lr>";
    let status = lab.register(
        "alice",
        "alice-secret",
        &format!("<sip:alice@{PHONE1}>"),
        PHONE1,
        "r1",
        &[("Path", edge)],
    );
    assert_eq!(status, 200);
    lab.trunk_calls("alice", "c1");
    lab.phone_answers(PHONE1, 180, None);
    let cancelled = lab.trunk_sends(cancel("c1"));
    assert!(
        cancelled.contains(&format!("send CANCEL to {PHONE1}")),
        "{cancelled:?}"
    );
    let routes = |method: Method| -> Vec<String> {
        let (_, m, _) = lab
            .sent
            .iter()
            .rev()
            .find(|(_, m, _)| m.method() == Some(&method))
            .unwrap();
        m.headers("Route").map(str::to_owned).collect()
    };
    assert_eq!(routes(Method::Invite), [edge]);
    assert_eq!(routes(Method::Cancel), [edge]);
}

#[test]
fn a_phone_calls_out_with_proxy_authentication_as_itself() {
    let mut lab = phone_lab();
    let phone_invite = |auth: Option<&str>, from_user: &str, branch: &str| {
        let mut b = RequestBuilder::new(&Method::Invite, "sip:100@pbx.example")
            .header(
                "Via",
                &format!("SIP/2.0/UDP {PHONE1};branch=z9hG4bK{branch}"),
            )
            .header("Max-Forwards", "70")
            .header("From", &format!("<sip:{from_user}@pbx.example>;tag=f1"))
            .header("To", "<sip:100@pbx.example>")
            .header("Call-ID", &format!("out-{branch}"))
            .header("CSeq", "1 INVITE")
            .header("Contact", "<sip:alice@192.168.1.10:5060>");
        if let Some(a) = auth {
            b = b.header("Proxy-Authorization", a);
        }
        Message::parse(
            b.body("application/sdp", Bytes::from(sdp("192.168.1.10", 40000)))
                .build(),
        )
        .unwrap()
    };
    assert_eq!(
        lab.phone_sends(phone_invite(None, "alice", "o1"), PHONE1),
        ["respond 407 INVITE"]
    );
    let challenge = lab
        .responses
        .last()
        .unwrap()
        .header("Proxy-Authenticate")
        .unwrap()
        .to_owned();
    let challenge = sipcore::digest::Challenge::parse(&challenge).unwrap();
    let auth = sipcore::digest::authorization(
        &challenge,
        "alice",
        "alice-secret",
        "INVITE",
        "sip:100@pbx.example",
        "beef",
        1,
    );
    // Alice's credentials do not make her Bob.
    assert_eq!(
        lab.phone_sends(phone_invite(Some(&auth), "bob", "o2"), PHONE1),
        ["respond 403 INVITE"]
    );
    let auth = sipcore::digest::authorization(
        &challenge,
        "alice",
        "alice-secret",
        "INVITE",
        "sip:100@pbx.example",
        "beef",
        2,
    );
    assert_eq!(
        lab.phone_sends(phone_invite(Some(&auth), "alice", "o3"), PHONE1),
        ["respond 100 INVITE", "create media"]
    );
    let id = lab.m.store.find("out-o3").unwrap().0;
    let media = lab.on(Event::MediaCreated {
        call: id,
        result: Ok(ports(id)),
    });
    assert_eq!(media.last().unwrap(), &format!("send INVITE to {MS1}"));
    // Leg A is the phone's flow, not its private Contact.
    let call = lab.m.store.get(id).unwrap();
    assert_eq!(call.a.source_name, PHONE_SOURCE);
    assert_eq!(lab.m.leg_target(call, Leg::A).unwrap().addr, addr(PHONE1));
}

// ---- the WAN to the central site ----

const CENTRAL: &str = "127.0.0.1:5094";
const GATEWAY: &str = "127.0.0.1:5096";

/// A branch: calls to 0… go to the central PBX across WAN `dc`, or to
/// the local gateway while it is down.
const BRANCH: &str = r#"
[[group]]
name = "central"
[[group.member]]
name = "pbx"
address = "127.0.0.1:5094"

[[group]]
name = "gateway"
probe = "off"
[[group.member]]
name = "gw"
address = "127.0.0.1:5096"

[[wan]]
name = "dc"
groups = ["central"]
failures_to_down = 3
successes_to_up = 2
hold_down_s = 5

[[rule]]
name = "out-local"
ruri_user_prefix = "0"
wan = "down"
group = "gateway"

[[rule]]
name = "central-only"
ruri_user_prefix = "8"
wan = "down"
reject = { code = 503, reason = "Central site unreachable" }

[[rule]]
name = "central-services"
ruri_user_prefix = "8"
group = "central"

[[rule]]
name = "out-central"
ruri_user_prefix = "0"
group = "central"
"#;

impl Lab {
    /// One health interval: probes out; the central PBX answers its
    /// probe when `central_alive` (the media servers always do).
    fn health_round(&mut self, central_alive: bool) -> Vec<String> {
        // Probes unanswered by now time out (on time: a timer fired late
        // is taken for an overloaded machine and looked at again).
        self.advance(500);
        self.on(Event::Timers);
        self.advance(500);
        self.on(Event::Timers);
        let before = self.sent.len();
        let out = self.on(Event::Probes);
        self.answer_probe(MS1);
        self.answer_probe(MS2);
        if central_alive {
            // Its member keepalive and the WAN's own probe.
            self.answer_probes_since(before, CENTRAL);
        }
        out
    }

    /// `member` answers every OPTIONS sent to it from `sent[from..]`.
    fn answer_probes_since(&mut self, from: usize, member: &str) {
        let probes: Vec<(ClientKey, Message)> = self.sent[from..]
            .iter()
            .filter(|(_, m, t)| m.method() == Some(&Method::Options) && t.addr == addr(member))
            .map(|(k, m, _)| (k.clone(), m.clone()))
            .collect();
        for (key, options) in probes {
            let alive = Message::parse(ResponseBuilder::new(&options, 200, "OK").build()).unwrap();
            self.on(Event::Tu(TuEvent::Response {
                key,
                response: alive,
            }));
        }
    }
}

#[test]
fn the_wan_goes_down_by_evidence_fallback_rules_take_over_and_calls_across_it_end() {
    let mut lab = Lab::with(BRANCH);
    lab.health_round(true);
    lab.health_round(true);
    lab.call_to("0301", "c1");
    assert_eq!(lab.last("INVITE").2.addr, addr(CENTRAL));
    lab.answer("INVITE", 200, Some(&sdp("127.0.0.1", 16000)));
    lab.ack_from_trunk("c1");
    // The PBX stops answering. The round of its last answer ends live at
    // the next interval; two silent rounds after it are not enough...
    for _ in 0..3 {
        lab.health_round(false);
    }
    assert!(!lab.m.wan_states()[0].1);
    // ...the third makes the WAN down: the call across it is ended (BYE
    // to both legs, CDR wan_down).
    let out = lab.health_round(false);
    assert!(lab.m.wan_states()[0].1, "{out:?}");
    assert!(out.contains(&format!("send BYE to {TRUNK}")), "{out:?}");
    assert!(out.contains(&format!("send BYE to {CENTRAL}")), "{out:?}");
    assert!(out.contains(&"cdr wan_down".to_string()), "{out:?}");
    // New calls take the fallback rule...
    lab.call_to("0302", "c2");
    assert_eq!(lab.last("INVITE").2.addr, addr(GATEWAY));
    lab.answer("INVITE", 200, Some(&sdp("127.0.0.1", 16002)));
    lab.ack_from_trunk("c2");
    // ...and numbers only the centre serves get a clear answer at once,
    // not a timeout.
    let out = lab.call_to("8001", "c8");
    assert!(out.contains(&"respond 503 INVITE".to_string()), "{out:?}");
    let refused = lab.responses.last().unwrap();
    assert_eq!(refused.reason_phrase(), Some("Central site unreachable"));
    // Back: answers again, but held down 5 s first.
    lab.health_round(true);
    lab.health_round(true);
    assert!(lab.m.wan_states()[0].1, "held down");
    for _ in 0..3 {
        lab.health_round(true);
    }
    assert!(!lab.m.wan_states()[0].1);
    lab.call_to("0303", "c3");
    assert_eq!(lab.last("INVITE").2.addr, addr(CENTRAL));
    // The call through the gateway stays up until it ends.
    assert!(!lab
        .sent
        .iter()
        .any(|(_, m, t)| m.method() == Some(&Method::Bye) && t.addr == addr(GATEWAY)));
    assert!(lab.m.store.find("c2").is_some());
}

#[test]
fn the_operator_forces_the_wan_down_and_back_to_auto() {
    let mut lab = Lab::with(BRANCH);
    lab.health_round(true);
    assert_eq!(lab.m.force_wan("dc", crate::wan::Forced::Down), Ok(true));
    lab.call_to("0301", "c1");
    assert_eq!(lab.last("INVITE").2.addr, addr(GATEWAY));
    assert_eq!(lab.m.force_wan("dc", crate::wan::Forced::Auto), Ok(false));
    lab.call_to("0302", "c2");
    assert_eq!(lab.last("INVITE").2.addr, addr(CENTRAL));
    assert!(lab
        .m
        .force_wan("nowhere", crate::wan::Forced::Down)
        .is_err());
}

#[test]
fn a_wan_judged_by_its_probe_hosts_alone() {
    const PROBE: &str = "127.0.0.1:5098";
    let mut lab = Lab::with(&format!(
        "[[wan]]\nname = \"dc\"\nprobe_hosts = [\"{PROBE}\"]\nfailures_to_down = 2\nsuccesses_to_up = 1\nhold_down_s = 1\n"
    ));
    let probe_round = |lab: &mut Lab, answer: bool| {
        lab.advance(1000);
        lab.on(Event::Timers);
        let out = lab.on(Event::Probes);
        assert!(out.contains(&format!("send OPTIONS to {PROBE}")), "{out:?}");
        if answer {
            // Any answer shows the path alive, even an error.
            let (key, options, _) = lab.probe_to(PROBE);
            let r =
                Message::parse(ResponseBuilder::new(&options, 404, "Not Found").build()).unwrap();
            lab.on(Event::Tu(TuEvent::Response { key, response: r }));
        }
    };
    probe_round(&mut lab, true);
    probe_round(&mut lab, true);
    assert!(!lab.m.wan_states()[0].1);
    // The round of the last answer ends live, then two dead ones.
    for _ in 0..3 {
        probe_round(&mut lab, false);
    }
    assert!(lab.m.wan_states()[0].1);
    probe_round(&mut lab, true);
    probe_round(&mut lab, true);
    assert!(!lab.m.wan_states()[0].1);
}

#[test]
fn a_reload_that_moves_the_central_pbx_moves_the_wans_probes() {
    let mut lab = Lab::with(BRANCH);
    let out = lab.health_round(true);
    assert!(
        out.contains(&format!("send OPTIONS to {CENTRAL}")),
        "{out:?}"
    );
    const MOVED: &str = "127.0.0.1:5098";
    let text = format!("{EXAMPLE}\n{}", BRANCH.replace(CENTRAL, MOVED));
    lab.reload_text(&text);
    lab.advance(1000);
    let out = lab.on(Event::Probes);
    // The member keepalive and the WAN's probe: both to the new address.
    let to_moved = out
        .iter()
        .filter(|l| **l == format!("send OPTIONS to {MOVED}"))
        .count();
    assert_eq!(to_moved, 2, "{out:?}");
    assert!(
        !out.contains(&format!("send OPTIONS to {CENTRAL}")),
        "{out:?}"
    );
}

// ---- dual registration: the phones' AORs registered with the centre ----

const CENTRE_REALM: &str = "centre.example";
const CENTRE_REGISTRAR: &str = "192.0.2.10:5060";

/// A phone lab whose registrar also registers upstream (across WAN `dc`,
/// judged by a probe host), with alice's HA1 in the central realm.
fn upstream_lab() -> Lab {
    let mut lab = phone_lab_with(&format!(
        "[[wan]]\nname = \"dc\"\nprobe_hosts = [\"{CENTRE_REGISTRAR}\"]\n"
    ));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("credentials");
    let mut lines = String::new();
    for (user, realm, password) in [
        ("alice", PHONE_DOMAIN, "alice-secret"),
        ("bob", PHONE_DOMAIN, "bob-secret"),
        ("alice", CENTRE_REALM, "alice-central"),
        ("bob", CENTRE_REALM, "bob-central"),
    ] {
        lines.push_str(&crate::registrar::credentials::passwd_lines(
            user, realm, password,
        ));
    }
    std::fs::write(&file, lines).unwrap();
    std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let creds = crate::registrar::Credentials::load(&file).unwrap();
    lab.m.registrar_mut().unwrap().auth.set_credentials(creds);
    let settings = crate::upstream::UpstreamSettings {
        registrar: addr(CENTRE_REGISTRAR),
        realm: CENTRE_REALM.into(),
        domain: CENTRE_REALM.into(),
        expires_s: 600,
        renew_window: Duration::from_secs(60),
        wan: Some("dc".into()),
    };
    let now = lab.now;
    lab.m.set_upstream(
        Some(crate::upstream::Upstream::new(settings, "up".into())),
        now,
        1_000_000,
    );
    lab
}

impl Lab {
    /// The centre answers the last upstream REGISTER with `status` and
    /// `headers`.
    fn centre_answers(&mut self, status: u16, headers: &[(&str, &str)]) -> Vec<String> {
        let (key, req, _) = self.last("REGISTER");
        let mut b = ResponseBuilder::with_to_tag(&req, status, "Reason", Some("c1"));
        for (name, value) in headers {
            b = b.header(name, value);
        }
        let response = Message::parse(b.build()).unwrap();
        self.on(Event::Tu(TuEvent::Response { key, response }))
    }
}

#[test]
fn a_phones_registration_is_registered_with_the_centre_contact_tandem() {
    let mut lab = upstream_lab();
    let contact = format!("<sip:alice@{PHONE1}>");
    assert_eq!(
        lab.register("alice", "alice-secret", &contact, PHONE1, "r1", &[]),
        200
    );
    let (_, first, target) = lab.last("REGISTER");
    assert_eq!(target.addr, addr(CENTRE_REGISTRAR));
    assert_eq!(first.request_uri_str(), Some("sip:centre.example"));
    assert_eq!(first.to_header().uri, "sip:alice@centre.example");
    assert_eq!(first.from_header().uri, "sip:alice@centre.example");
    let advertised = lab.m.settings().advertised;
    assert_eq!(
        first.header("Contact"),
        Some(format!("<sip:alice@{advertised}>;expires=600").as_str())
    );
    assert!(first.header("Authorization").is_none());

    // The centre challenges: answered at once from the central realm's
    // HA1, same Call-ID, next CSeq.
    let challenge =
        format!("Digest realm=\"{CENTRE_REALM}\", nonce=\"n1\", algorithm=MD5, qop=\"auth\"");
    assert_eq!(
        lab.centre_answers(401, &[("WWW-Authenticate", &challenge)]),
        [format!("send REGISTER to {CENTRE_REGISTRAR}")]
    );
    let (_, second, _) = lab.last("REGISTER");
    assert_eq!(second.call_id(), first.call_id());
    assert_eq!(second.cseq().seq, first.cseq().seq + 1);
    let creds =
        sipcore::digest::Credentials::parse(second.header("Authorization").unwrap()).unwrap();
    let ha1 = sipcore::digest::Algorithm::Md5.ha1("alice", CENTRE_REALM, "alice-central");
    assert!(creds.verify("REGISTER", &ha1), "{creds:?}");
    assert_eq!(creds.uri, "sip:centre.example");

    let granted = format!("<sip:alice@{advertised}>;expires=300");
    assert!(lab.centre_answers(200, &[("Contact", &granted)]).is_empty());
    let reg = lab.m.upstream().unwrap().get("alice@pbx.example").unwrap();
    assert!(matches!(
        reg.state,
        crate::upstream::UpState::Registered { until } if until == lab.now + Duration::from_secs(300)
    ));
    // The same challenge again for our answer: wrong credentials, failed.
    lab.advance(200_000);
    assert_eq!(
        lab.on(Event::Housekeeping),
        [format!("send REGISTER to {CENTRE_REGISTRAR}")]
    );
    lab.centre_answers(401, &[("WWW-Authenticate", &challenge)]);
    let reg = lab.m.upstream().unwrap().get("alice@pbx.example").unwrap();
    assert!(matches!(
        reg.state,
        crate::upstream::UpState::Failed { status: 401, .. }
    ));
}

#[test]
fn nothing_goes_upstream_while_the_wan_is_down() {
    let mut lab = upstream_lab();
    lab.m.force_wan("dc", crate::wan::Forced::Down).unwrap();
    let contact = format!("<sip:bob@{PHONE2}>");
    assert_eq!(
        lab.register("bob", "bob-secret", &contact, PHONE2, "r1", &[]),
        200
    );
    for _ in 0..120 {
        lab.advance(500);
        lab.on(Event::Housekeeping);
    }
    assert!(
        !lab.sent
            .iter()
            .any(|(_, m, _)| m.method() == Some(&Method::Register)),
        "a REGISTER went into the dead WAN"
    );
    // Back up: renewed (paced, within the window).
    lab.m.force_wan("dc", crate::wan::Forced::Auto).unwrap();
    let mut sent = Vec::new();
    for _ in 0..121 {
        sent.extend(lab.on(Event::Housekeeping));
        lab.advance(500);
    }
    assert!(
        sent.contains(&format!("send REGISTER to {CENTRE_REGISTRAR}")),
        "{sent:?}"
    );
}

#[test]
fn a_central_member_is_judged_by_the_wans_answers_too_and_not_for_the_wans_silence() {
    let mut lab = Lab::with(BRANCH);
    // Its keepalives are lost (a lossy WAN) but it answers the WAN's own
    // probes: it stays up round after round.
    for _ in 0..6 {
        lab.advance(500);
        lab.on(Event::Timers);
        lab.advance(500);
        lab.on(Event::Timers);
        let before = lab.sent.len();
        lab.on(Event::Probes);
        lab.answer_probe(MS1);
        lab.answer_probe(MS2);
        // The WAN's probe (the later of the two OPTIONS) is answered, the
        // keepalive is not.
        let wan_probe = lab.sent[before..]
            .iter()
            .rev()
            .find(|(_, m, t)| m.method() == Some(&Method::Options) && t.addr == addr(CENTRAL))
            .map(|(k, m, _)| (k.clone(), m.clone()))
            .unwrap();
        let ok = Message::parse(ResponseBuilder::new(&wan_probe.1, 200, "OK").build()).unwrap();
        lab.on(Event::Tu(TuEvent::Response {
            key: wan_probe.0,
            response: ok,
        }));
    }
    lab.call_to("0301", "c1");
    assert_eq!(
        lab.last("INVITE").2.addr,
        addr(CENTRAL),
        "the member stayed up"
    );
    // (The test above: a silent WAN takes the member's calls down as
    // wan_down, not as a media server failure, with the default health.)
}

#[test]
fn a_call_placed_before_the_wan_is_judged_down_gets_out_through_the_rules_fallback() {
    let with_fallback = BRANCH.replace(
        "name = \"out-central\"\nruri_user_prefix = \"0\"\ngroup = \"central\"\n",
        "name = \"out-central\"\nruri_user_prefix = \"0\"\ngroup = \"central\"\nfallback = \"gateway\"\n",
    );
    assert_ne!(with_fallback, BRANCH);
    let mut lab = Lab::with(&with_fallback);
    lab.health_round(true);
    // The WAN has just failed and is not judged yet: the call goes central,
    // gets no answer, and goes out through the gateway instead of 503.
    lab.call_to("0301", "c1");
    assert_eq!(lab.last("INVITE").2.addr, addr(CENTRAL));
    let (key, _, _) = lab.last("INVITE");
    let out = lab.on(Event::Tu(TuEvent::Timeout {
        key: TransactionKey::Client(key),
        timer: sipcore::transaction::Timer::B,
    }));
    assert_eq!(out, [format!("send INVITE to {GATEWAY}")]);
    // Without the key: 503.
    let mut lab = Lab::with(BRANCH);
    lab.health_round(true);
    lab.call_to("0301", "c1");
    let (key, _, _) = lab.last("INVITE");
    let out = lab.on(Event::Tu(TuEvent::Timeout {
        key: TransactionKey::Client(key),
        timer: sipcore::transaction::Timer::B,
    }));
    assert!(out.contains(&"respond 503 INVITE".to_string()), "{out:?}");
}

/// The machine's `member_group` reports: (member, group, in the group).
#[derive(Clone, Default)]
struct GroupReports(Arc<Mutex<Vec<(String, String, bool)>>>);

impl Observer for GroupReports {
    fn member_group(&mut self, member: &str, group: &str, in_group: bool) {
        let report = (member.to_owned(), group.to_owned(), in_group);
        self.0.lock().unwrap().push(report);
    }
}

impl GroupReports {
    fn take(&self) -> Vec<(String, String, bool)> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

/// Each member's group is reported at start (the
/// `tandem_media_server_group` series the group-down alert joins on), and
/// a reload that moves a member takes it out of its old group.
#[test]
fn each_members_group_is_reported_at_start_and_a_reload_moves_it() {
    let ivr = |members: &str| format!("[[group]]\nname = \"ivr\"\n{members}");
    let ivr1 = "[[group.member]]\nname = \"ivr1\"\naddress = \"127.0.0.1:5092\"\n";
    let reports = GroupReports::default();
    let mut lab = Lab::observed(
        &format!("{EXAMPLE}\n{}", ivr(ivr1)),
        |p| p,
        Box::new(reports.clone()),
    );
    let report = |m: &str, g: &str, in_group| (m.to_owned(), g.to_owned(), in_group);
    assert_eq!(
        reports.take(),
        [
            report("ms1", "media", true),
            report("ms2", "media", true),
            report("ivr1", "ivr", true)
        ]
    );

    // ms2 moves from [pool] to ivr.
    let ms2 = "[[pool.member]]\nname = \"ms2\"\naddress = \"127.0.0.1:5080\"\n";
    let moved = EXAMPLE.replace(ms2, "");
    assert_ne!(moved, EXAMPLE);
    let ms2_in_ivr = ms2.replace("pool.member", "group.member");
    lab.reload_text(&format!("{moved}\n{}", ivr(&format!("{ivr1}{ms2_in_ivr}"))));
    let after = reports.take();
    // Old memberships first, then the new ones: what stays 1 at the end is
    // exactly the new layout.
    assert_eq!(
        after,
        [
            report("ms1", "media", false),
            report("ms2", "media", false),
            report("ivr1", "ivr", false),
            report("ms1", "media", true),
            report("ivr1", "ivr", true),
            report("ms2", "ivr", true)
        ]
    );
}

#[test]
fn at_the_drain_deadline_calls_up_get_bye_with_reason_and_ringing_ones_503() {
    let mut lab = Lab::new();
    lab.answered_call("c1");
    lab.call("c2");
    assert_eq!(lab.answer("INVITE", 180, None), ["respond 180 INVITE"]);
    assert!(lab.on(Event::Drain).is_empty());
    // Draining: a new call is refused, with Retry-After.
    assert_eq!(refused(&mut lab, "c3"), (503, Some("5".into())));
    assert_eq!(lab.m.calls(), 2);
    let out = lab.on(Event::DrainDeadline);
    assert!(out.contains(&format!("send BYE to {TRUNK}")), "{out:?}");
    assert!(out.contains(&format!("send BYE to {MS1}")), "{out:?}");
    assert!(out.contains(&"respond 503 INVITE".to_string()), "{out:?}");
    // The ringing member is told too: no call left that nobody ACKs.
    assert!(
        out.iter().any(|a| a.starts_with("send CANCEL to")),
        "{out:?}"
    );
    assert_eq!(
        out.iter().filter(|a| *a == "cdr shutdown").count(),
        2,
        "{out:?}"
    );
    let (_, bye, _) = lab.last("BYE");
    assert_eq!(
        bye.header("Reason"),
        Some("Q.850;cause=16;text=\"shutdown\"")
    );
    assert_eq!(lab.m.calls(), 0);
    assert_eq!(lab.m.store.check(), Ok(()));
}

/// The last CDR the machine handed over (`CallEnded`).
fn last_cdr(lab: &Lab) -> CallEnd {
    lab.actions
        .iter()
        .rev()
        .find_map(|a| match a {
            Action::CallEnded(end) => Some((**end).clone()),
            _ => None,
        })
        .expect("a CDR")
}

#[test]
fn the_cdr_tells_each_member_with_times_and_the_resume() {
    let mut lab = Lab::new();
    lab.answered_call("c1");
    let answered = 1_000_000;
    lab.fail_ms1();
    let failed_at = 1_000_000 + (lab.now - lab.start).as_millis() as u64;
    lab.answer("INVITE", 200, Some(&sdp("127.0.0.1", 17000)));
    lab.advance(500);
    // The caller hangs up with a Reason of its own.
    let bye = lab.in_dialog("BYE", "c1", 2, "bye1");
    let text = String::from_utf8(bye.as_bytes().to_vec()).unwrap().replace(
        "Max-Forwards: 70\r\n",
        "Max-Forwards: 70\r\nReason: Q.850;cause=16;text=\"done\"\r\n",
    );
    lab.trunk_sends(Message::parse(Bytes::from(text)).unwrap());
    let cdr = last_cdr(&lab);
    let h = &cdr.history;
    let names: Vec<&str> = h.members.iter().map(|m| m.member.as_str()).collect();
    assert_eq!(names, ["ms1", "ms2"], "{h:?}");
    let (ms1, ms2) = (&h.members[0], &h.members[1]);
    assert_eq!(ms1.tried_at, answered);
    assert_eq!(ms1.answered_at, Some(answered));
    assert_eq!(ms1.why.as_deref(), Some("resumed_away"));
    assert!(ms1.left_at.unwrap() > answered && ms1.left_at.unwrap() <= failed_at);
    assert_eq!(ms2.answered_at, Some(failed_at), "{h:?}");
    assert_eq!(ms2.left_at, Some(cdr.end_ms));
    assert_eq!(ms2.why.as_deref(), Some("call_ended"));
    assert_eq!(
        h.resumes,
        [ResumeMark {
            at: failed_at,
            from: "ms1".into(),
            to: "ms2".into(),
            outcome: "ok".into(),
        }]
    );
    assert_eq!(
        h.reason_header.as_deref(),
        Some("Q.850;cause=16;text=\"done\"")
    );
    assert!(h.takeovers.is_empty());
}

#[test]
fn failover_before_the_answer_is_in_the_cdr_and_start_records_come_at_the_answer() {
    let mut lab = Lab::new();
    lab.m.set_start_records(true);
    lab.call("c1");
    lab.answer("INVITE", 503, None);
    let answer = lab.answer("INVITE", 200, Some(&sdp("127.0.0.1", 17000)));
    assert_eq!(
        answer.last().map(String::as_str),
        Some("cdr start"),
        "{answer:?}"
    );
    let start = lab
        .actions
        .iter()
        .find_map(|a| match a {
            Action::CallStarted(s) => Some((**s).clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(start.end_ms, 0);
    assert_eq!(start.history.members.len(), 2);
    lab.ack_from_trunk("c1");
    // Tandem ends it (max duration, session timer…): its own Reason.
    let id = lab.m.store.find("c1").unwrap().0;
    lab.m.end_call(id, "max_duration", true, true);
    let ended = lab.m.out.take();
    lab.actions.extend(ended);
    let cdr = last_cdr(&lab);
    let why: Vec<Option<&str>> = cdr
        .history
        .members
        .iter()
        .map(|m| m.why.as_deref())
        .collect();
    assert_eq!(why, [Some("failed"), Some("call_ended")]);
    assert_eq!(cdr.history.members[0].answered_at, None);
    assert_eq!(
        cdr.history.reason_header.as_deref(),
        Some("Q.850;cause=16;text=\"max_duration\"")
    );
}

mod maintenance;
mod overview;

/// A new call's relay session starts with the sockets leg A's offer needs:
/// RTP alone for an offer with rtcp-mux, all four without it (most trunks;
/// a parked pair is then reused whole rather than its RTCP sockets being
/// closed and bound again for every call, which cost about 100 µs of CPU
/// per call at 1,000 cps: BENCHMARKS.md, "the merged result").
#[test]
fn a_new_calls_relay_session_starts_with_the_sockets_leg_as_offer_needs() {
    let created = |lab: &Lab| -> Vec<bool> {
        lab.actions
            .iter()
            .filter_map(|a| match a {
                Action::CreateMedia { rtcp_mux, .. } => Some(*rtcp_mux),
                _ => None,
            })
            .collect()
    };
    let mut lab = Lab::new();
    lab.call_with(
        "c1",
        invite_with_body("100", "c1", "i1", Some(sdp("127.0.0.9", 40000))),
    );
    assert_eq!(created(&lab), [false]);
    let mut lab = Lab::new();
    lab.call_with(
        "c2",
        invite_with_body("100", "c2", "i1", Some(with_mux("127.0.0.9", 40000))),
    );
    assert_eq!(created(&lab), [true]);
}

/// A held call keeps of the INVITE it sent on leg B only what that leg's
/// CANCEL and dialog are made of (issue 15, memory per held call).
#[test]
fn a_call_keeps_only_what_cancel_and_the_dialog_need_of_leg_b_invite() {
    let mut lab = Lab::new();
    lab.answered_call("c1");
    let (id, _) = lab.m.store.find("c1").unwrap();
    let kept = &lab.m.store.get(id).unwrap().b.invite;
    let names: Vec<&str> = kept.iter_headers().map(|(name, _)| name).collect();
    assert_eq!(
        names,
        [
            "Via",
            "Max-Forwards",
            "From",
            "To",
            "Call-ID",
            "CSeq",
            "Content-Length"
        ]
    );
    assert!(kept.body().is_empty());
    assert_eq!(kept.method(), Some(&Method::Invite));
}

#[test]
fn an_answered_call_keeps_only_what_a_later_leg_b_and_the_cdr_need_of_leg_a_invite() {
    let mut lab = Lab::new();
    lab.answered_call("c1");
    let (id, _) = lab.m.store.find("c1").unwrap();
    let call = lab.m.store.get(id).unwrap();
    let kept = &call.a.invite;
    let names: Vec<&str> = kept.iter_headers().map(|(name, _)| name).collect();
    // Contact, lower Vias and the rest of leg A's INVITE went with its 2xx.
    assert_eq!(
        names,
        [
            "Via",
            "Max-Forwards",
            "From",
            "To",
            "Call-ID",
            "CSeq",
            "Content-Length"
        ]
    );
    assert!(kept.body().is_empty());
    assert_eq!(kept.method(), Some(&Method::Invite));
    assert_eq!(kept.call_id(), call.a.call_id);
    assert!(call.a.dialog.is_some());
}

/// An INVITE that already passed this node (a Via of its advertised
/// address and port, not necessarily the top one) is refused 482 Loop
/// Detected; a Via of the same address on another port is no loop.
#[test]
fn an_invite_that_passed_this_node_before_is_refused_as_a_loop() {
    let mut lab = Lab::new();
    let me = lab.m.settings().advertised;
    let looped = |port: u16, call_id: &str| {
        let text = String::from_utf8(invite(call_id, "i1", true).as_bytes().to_vec()).unwrap();
        let own = format!(
            "Via: SIP/2.0/UDP {}:{port};branch=z9hG4bKbefore\r\nMax-Forwards",
            me.ip()
        );
        Message::parse(Bytes::from(text.replacen("Max-Forwards", &own, 1))).unwrap()
    };
    assert_eq!(
        lab.trunk_sends(looped(me.port(), "loop")),
        ["respond 482 INVITE"]
    );
    assert_eq!(lab.m.calls(), 0);
    assert_ne!(
        lab.trunk_sends(looped(me.port() + 1, "no-loop")),
        ["respond 482 INVITE"]
    );
    assert_eq!(lab.m.calls(), 1);
}

/// Once leg B answered and leg A acknowledged, no timer of the call is
/// left to wake the engine: the answer cancels leg B's answer timeout and
/// the ACK the 2xx's retransmissions. Before, both stayed due (and found
/// themselves moot when they fired), a wake-up or two for every call.
#[test]
fn an_answered_and_acknowledged_call_leaves_no_timer_due() {
    let mut lab = Lab::new();
    assert_eq!(lab.m.next_deadline(), None, "nothing runs before the call");
    lab.call("c1");
    assert!(lab.m.next_deadline().is_some(), "leg B's answer timeout");
    lab.answer("INVITE", 200, Some(&sdp("127.0.0.1", 16000)));
    assert!(
        lab.m.next_deadline().is_some(),
        "leg A's 2xx retransmissions"
    );
    lab.ack_from_trunk("c1");
    assert_eq!(lab.m.next_deadline(), None);
    assert_eq!(lab.m.calls(), 1);
    // An unacknowledged 2xx is still retransmitted.
    lab.call("c2");
    lab.answer("INVITE", 200, Some(&sdp("127.0.0.1", 16002)));
    lab.advance(600);
    let retransmitted = lab.on(Event::Timers);
    assert_eq!(retransmitted, ["respond 200 INVITE"]);
}
