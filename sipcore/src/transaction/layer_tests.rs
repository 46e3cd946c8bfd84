//! Tests of the transaction layer under tokio's paused clock: every timer
//! path end to end, with a recording [`Transmit`] instead of sockets.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::*;
use crate::transport::{ConnectionId, TransportKind};

const UAC: &str = "127.0.0.1:5060";
const UAS: &str = "127.0.0.1:5070";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// Records what the layer sends, with the virtual time in ms.
struct Wire {
    start: Instant,
    sent: Mutex<Vec<(u64, Target, Bytes)>>,
    fail: AtomicBool,
}

impl Wire {
    fn new() -> Arc<Wire> {
        Arc::new(Wire {
            start: Instant::now(),
            sent: Mutex::new(vec![]),
            fail: AtomicBool::new(false),
        })
    }

    fn sent(&self) -> Vec<(u64, Target, Message)> {
        self.sent
            .lock()
            .unwrap()
            .iter()
            .map(|(t, to, b)| {
                (
                    *t,
                    *to,
                    Message::parse(b.clone()).expect("layer sent a valid message"),
                )
            })
            .collect()
    }

    /// Times at which a message whose first line starts with `start` was sent.
    fn times(&self, start: &str) -> Vec<u64> {
        self.sent
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, _, b)| b.starts_with(start.as_bytes()))
            .map(|(t, _, _)| *t)
            .collect()
    }

    /// Sleeps until `ms` after the wire was created.
    async fn at(&self, ms: u64) {
        tokio::time::sleep_until(self.start + Duration::from_millis(ms)).await;
    }
}

impl Transmit for Wire {
    fn send(&self, out: Outgoing) -> crate::Result<()> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(crate::Error::NoConnection(out.target.addr));
        }
        let t = (Instant::now() - self.start).as_millis() as u64;
        self.sent.lock().unwrap().push((t, out.target, out.bytes));
        Ok(())
    }
}

fn layer(wire: &Arc<Wire>) -> (TransactionLayer, TuReceiver) {
    TransactionLayer::new(TimerConfig::default(), wire.clone()).unwrap()
}

fn layer_with(wire: &Arc<Wire>, queue: TuQueueConfig) -> (TransactionLayer, TuReceiver) {
    TransactionLayer::with_queue(TimerConfig::default(), wire.clone(), queue).unwrap()
}

fn drain(rx: &mut TuReceiver) -> Vec<TuEvent> {
    let mut out = vec![];
    while let Some(e) = rx.try_recv() {
        out.push(e);
    }
    out
}

fn request_with(method: &str, branch: &str, via: &str, extra: &str) -> Message {
    let text = format!(
        "{method} sip:bob@127.0.0.1:5070 SIP/2.0\r\n\
         Via: SIP/2.0/{via};branch={branch}\r\n\
         {extra}\
         Max-Forwards: 70\r\n\
         From: Alice <sip:alice@127.0.0.1>;tag=a1\r\n\
         To: Bob <sip:bob@127.0.0.1>\r\n\
         Call-ID: c1@127.0.0.1\r\n\
         CSeq: 1 {method}\r\n\
         Content-Length: 0\r\n\r\n"
    );
    Message::parse(Bytes::from(text)).unwrap()
}

fn request(method: &str, branch: &str) -> Message {
    request_with(method, branch, &format!("UDP {UAC}"), "")
}

fn response(req: &Message, status: u16) -> Message {
    let to_tag = (status > 100).then_some("b2");
    Message::parse(ResponseBuilder::with_to_tag(req, status, "Reason", to_tag).build()).unwrap()
}

fn ack_for(invite: &Message, resp: &Message) -> Message {
    Message::parse(build_ack(invite, resp)).unwrap()
}

fn names(events: &[TuEvent]) -> Vec<String> {
    events
        .iter()
        .map(|e| match e {
            TuEvent::Request { request, .. } => format!("Request {}", request.method().unwrap()),
            TuEvent::Response { response, .. } => {
                format!("Response {}", response.status().unwrap())
            }
            TuEvent::Ack { key, .. } => format!("Ack matched={}", key.is_some()),
            TuEvent::StrayResponse { response, .. } => {
                format!("Stray {}", response.status().unwrap())
            }
            TuEvent::Timeout { timer, .. } => format!("Timeout {timer:?}"),
            TuEvent::TransportError { .. } => "TransportError".into(),
            TuEvent::Terminated { .. } => "Terminated".into(),
        })
        .collect()
}

fn server_key(ev: &TuEvent) -> ServerKey {
    match ev {
        TuEvent::Request { key, .. } => key.clone(),
        other => panic!("expected a request, got {other:?}"),
    }
}

// ---------------------------------------------------------------- client

#[tokio::test(start_paused = true)]
async fn client_invite_timer_a_then_timeout_b() {
    let wire = Wire::new();
    let (tl, mut rx) = layer(&wire);
    let key = tl
        .send_request(request("INVITE", "z9hG4bKa"), Target::udp(addr(UAS)))
        .unwrap();
    assert_eq!(
        key,
        ClientKey {
            branch: "z9hG4bKa".into(),
            method: Method::Invite
        }
    );
    let tkey = TransactionKey::Client(key);
    assert_eq!(
        tl.state(&tkey),
        Some(TransactionState::ClientInvite(ClientInviteState::Calling))
    );
    wire.at(31_999).await;
    assert!(drain(&mut rx).is_empty());
    wire.at(32_101).await;
    assert_eq!(names(&drain(&mut rx)), ["Timeout B", "Terminated"]);
    wire.at(100_000).await;
    assert_eq!(
        wire.times("INVITE"),
        [0, 500, 1500, 3500, 7500, 15_500, 31_500]
    );
    assert!(wire
        .sent()
        .iter()
        .all(|(_, to, _)| *to == Target::udp(addr(UAS))));
    assert!(tl.is_empty());
    assert_eq!(tl.state(&tkey), None);
}

#[tokio::test(start_paused = true)]
async fn client_non_invite_timer_e_capped_then_timeout_f() {
    let wire = Wire::new();
    let (tl, mut rx) = layer(&wire);
    tl.send_request(request("OPTIONS", "z9hG4bKo"), Target::udp(addr(UAS)))
        .unwrap();
    wire.at(31_999).await;
    assert!(drain(&mut rx).is_empty());
    wire.at(40_000).await;
    assert_eq!(names(&drain(&mut rx)), ["Timeout F", "Terminated"]);
    assert_eq!(
        wire.times("OPTIONS"),
        [0, 500, 1500, 3500, 7500, 11_500, 15_500, 19_500, 23_500, 27_500, 31_500]
    );
    assert!(tl.is_empty());
}

#[tokio::test(start_paused = true)]
async fn client_non_invite_final_then_timer_k() {
    let wire = Wire::new();
    let (tl, mut rx) = layer(&wire);
    let req = request("BYE", "z9hG4bKbye");
    tl.send_request(req.clone(), Target::udp(addr(UAS)))
        .unwrap();
    wire.at(700).await;
    tl.on_message(response(&req, 200), Target::udp(addr(UAS)));
    assert_eq!(names(&drain(&mut rx)), ["Response 200"]);
    // Retransmitted 200 is absorbed.
    tl.on_message(response(&req, 200), Target::udp(addr(UAS)));
    assert!(drain(&mut rx).is_empty());
    wire.at(5699).await;
    assert_eq!(tl.len(), 1);
    wire.at(5780).await;
    assert_eq!(names(&drain(&mut rx)), ["Terminated"]);
    assert_eq!(wire.times("BYE"), [0, 500]);
    // Late response after termination: stray.
    tl.on_message(response(&req, 200), Target::udp(addr(UAS)));
    assert_eq!(names(&drain(&mut rx)), ["Stray 200"]);
}

/// Wait states are lax: Timer Ks due at 5,100 and 5,140 end at one
/// wake-up, the first's T4/64 (78 ms) late, none of them early; the one
/// due at 5,180 rides the next wake-up; a retransmission timer keeps its
/// millisecond.
#[tokio::test(start_paused = true)]
async fn wait_states_ending_close_together_share_a_wake_up() {
    let wire = Wire::new();
    let (tl, mut rx) = layer(&wire);
    let byes: Vec<Message> = (0..3)
        .map(|i| request("BYE", &format!("z9hG4bKlax{i}")))
        .collect();
    for bye in &byes {
        tl.send_request(bye.clone(), Target::udp(addr(UAS)))
            .unwrap();
    }
    for (i, bye) in byes.iter().enumerate() {
        wire.at(100 + 40 * i as u64).await;
        tl.on_message(response(bye, 200), Target::udp(addr(UAS)));
    }
    assert_eq!(names(&drain(&mut rx)).len(), 3);
    // Another BYE, unanswered: Timer E retransmits it at T1.
    wire.at(5_000).await;
    let pending = request("BYE", "z9hG4bKpending");
    tl.send_request(pending, Target::udp(addr(UAS))).unwrap();
    wire.at(5_177).await;
    assert_eq!(
        tl.len(),
        4,
        "no wait state ends before its slack is used up"
    );
    wire.at(5_180).await;
    assert_eq!(names(&drain(&mut rx)), ["Terminated", "Terminated"]);
    assert_eq!(tl.len(), 2);
    wire.at(5_257).await;
    assert_eq!(tl.len(), 2);
    wire.at(5_260).await;
    assert_eq!(names(&drain(&mut rx)), ["Terminated"]);
    wire.at(5_501).await;
    assert_eq!(wire.times("BYE"), [0, 0, 0, 5_000, 5_500]);
}

/// A cancelled timer does not wake the timer task when a wake-up found
/// it stale already: three BYEs answered within 5 ms each leave their
/// Timer E (500, 510, 520 ms) cancelled; the task wakes at 500 ms, drops
/// the other two, and wakes next for their Timer Ks, all at one wake-up.
#[tokio::test(start_paused = true)]
async fn cancelled_timers_do_not_each_wake_the_timer_task() {
    let wire = Wire::new();
    let (tl, mut rx) = layer(&wire);
    for i in 0..3u64 {
        wire.at(10 * i).await;
        let bye = request("BYE", &format!("z9hG4bKstale{i}"));
        tl.send_request(bye.clone(), Target::udp(addr(UAS)))
            .unwrap();
        wire.at(10 * i + 5).await;
        tl.on_message(response(&bye, 200), Target::udp(addr(UAS)));
    }
    assert_eq!(names(&drain(&mut rx)).len(), 3);
    wire.at(30).await;
    let before = tl.timer_wakes();
    wire.at(1_000).await;
    assert_eq!(
        tl.timer_wakes() - before,
        1,
        "one wake-up for three cancelled Timer Es"
    );
    wire.at(6_000).await;
    assert_eq!(
        names(&drain(&mut rx)),
        ["Terminated", "Terminated", "Terminated"]
    );
    assert_eq!(
        tl.timer_wakes() - before,
        2,
        "the three Timer Ks share a wake-up"
    );
    assert_eq!(wire.times("BYE"), [0, 10, 20]);
}

#[tokio::test(start_paused = true)]
async fn client_invite_non_2xx_is_acked() {
    let wire = Wire::new();
    let (tl, mut rx) = layer(&wire);
    let routes =
        "Route: <sip:p1.example.com;lr>\r\nRoute: <sip:p2.example.com;lr>, <sip:p3;lr>\r\n";
    let inv = request_with("INVITE", "z9hG4bKn", &format!("UDP {UAC}"), routes);
    tl.send_request(inv.clone(), Target::udp(addr(UAS)))
        .unwrap();
    wire.at(100).await;
    tl.on_message(response(&inv, 180), Target::udp(addr(UAS)));
    assert_eq!(names(&drain(&mut rx)), ["Response 180"]);
    wire.at(1000).await;
    let busy = response(&inv, 486);
    tl.on_message(busy.clone(), Target::udp(addr(UAS)));
    assert_eq!(names(&drain(&mut rx)), ["Response 486"]);

    let sent = wire.sent();
    assert_eq!(
        sent.len(),
        2,
        "INVITE, ACK; no retransmission after the 180"
    );
    let (t, to, ack) = &sent[1];
    assert_eq!((*t, *to), (1000, Target::udp(addr(UAS))));
    assert_eq!(ack.method(), Some(&Method::Ack));
    assert_eq!(ack.request_uri_str(), inv.request_uri_str());
    assert_eq!(ack.call_id(), inv.call_id());
    assert_eq!(ack.header("From"), inv.header("From"));
    assert_eq!(ack.header("To"), busy.header("To"));
    assert_eq!(ack.to_tag(), Some("b2"));
    assert_eq!(
        *ack.cseq(),
        crate::message::CSeq {
            seq: 1,
            method: Method::Ack
        }
    );
    assert_eq!(ack.vias().count(), 1);
    assert_eq!(ack.top_via(), inv.top_via());
    assert_eq!(
        ack.headers("Route").collect::<Vec<_>>(),
        inv.headers("Route").collect::<Vec<_>>()
    );
    assert_eq!(ack.body(), b"");

    // A retransmitted 486 is ACKed again and not passed up.
    wire.at(2000).await;
    tl.on_message(busy.clone(), Target::udp(addr(UAS)));
    assert!(drain(&mut rx).is_empty());
    assert_eq!(wire.times("ACK"), [1000, 2000]);
    assert_eq!(wire.sent()[1].2.as_bytes(), wire.sent()[2].2.as_bytes());

    // Timer D: 32 s after the 486.
    wire.at(32_999).await;
    assert_eq!(tl.len(), 1);
    wire.at(33_101).await;
    assert_eq!(names(&drain(&mut rx)), ["Terminated"]);
    tl.on_message(busy, Target::udp(addr(UAS)));
    assert_eq!(names(&drain(&mut rx)), ["Stray 486"]);
    assert_eq!(wire.times("ACK"), [1000, 2000]);
}

#[tokio::test(start_paused = true)]
async fn client_invite_accepted_passes_2xx_retransmissions_up() {
    let wire = Wire::new();
    let (tl, mut rx) = layer(&wire);
    let inv = request("INVITE", "z9hG4bKok");
    let key = tl
        .send_request(inv.clone(), Target::udp(addr(UAS)))
        .unwrap();
    wire.at(600).await;
    let ok = response(&inv, 200);
    tl.on_message(ok.clone(), Target::udp(addr(UAS)));
    assert_eq!(
        tl.state(&TransactionKey::Client(key)),
        Some(TransactionState::ClientInvite(ClientInviteState::Accepted))
    );
    wire.at(1100).await;
    tl.on_message(ok.clone(), Target::udp(addr(UAS)));
    wire.at(2100).await;
    tl.on_message(ok.clone(), Target::udp(addr(UAS)));
    assert_eq!(
        names(&drain(&mut rx)),
        ["Response 200", "Response 200", "Response 200"]
    );
    // Timer M from the first 2xx; no ACK from the layer, no more INVITEs.
    wire.at(32_599).await;
    assert!(drain(&mut rx).is_empty());
    wire.at(32_601).await;
    assert!(drain(&mut rx).is_empty(), "lax: up to 100 ms late");
    wire.at(32_701).await;
    assert_eq!(names(&drain(&mut rx)), ["Terminated"]);
    assert_eq!(wire.times("INVITE"), [0, 500]);
    assert!(wire.times("ACK").is_empty());
    tl.on_message(ok, Target::udp(addr(UAS)));
    assert_eq!(names(&drain(&mut rx)), ["Stray 200"]);
}

#[tokio::test(start_paused = true)]
async fn client_over_tcp_never_retransmits() {
    let wire = Wire::new();
    let (tl, mut rx) = layer(&wire);
    let inv = request_with("INVITE", "z9hG4bKt", &format!("TCP {UAC}"), "");
    tl.send_request(inv.clone(), Target::tcp(addr(UAS)))
        .unwrap();
    wire.at(20_000).await;
    assert_eq!(wire.times("INVITE"), [0]);
    // Non-2xx: ACK and Timer D = 0 end the transaction at once.
    tl.on_message(response(&inv, 503), Target::tcp(addr(UAS)));
    assert_eq!(names(&drain(&mut rx)), ["Response 503", "Terminated"]);
    assert_eq!(wire.times("ACK"), [20_000]);
    assert!(tl.is_empty());

    let opt = request_with("OPTIONS", "z9hG4bKt2", &format!("TCP {UAC}"), "");
    tl.send_request(opt, Target::tcp(addr(UAS))).unwrap();
    wire.at(60_000).await;
    assert_eq!(names(&drain(&mut rx)), ["Timeout F", "Terminated"]);
    assert_eq!(wire.times("OPTIONS"), [20_000]);
}

#[tokio::test(start_paused = true)]
async fn client_transport_error_is_reported() {
    let wire = Wire::new();
    let (tl, mut rx) = layer(&wire);
    wire.fail.store(true, Ordering::SeqCst);
    tl.send_request(request("INVITE", "z9hG4bKx"), Target::udp(addr(UAS)))
        .unwrap();
    assert_eq!(names(&drain(&mut rx)), ["TransportError", "Terminated"]);
    assert!(tl.is_empty());
    // Failure on a retransmission.
    wire.fail.store(false, Ordering::SeqCst);
    tl.send_request(request("MESSAGE", "z9hG4bKy"), Target::udp(addr(UAS)))
        .unwrap();
    wire.at(100).await;
    wire.fail.store(true, Ordering::SeqCst);
    wire.at(600).await;
    assert_eq!(names(&drain(&mut rx)), ["TransportError", "Terminated"]);
    assert!(tl.is_empty());
}

#[tokio::test(start_paused = true)]
async fn late_transport_error_is_reported() {
    let wire = Wire::new();
    let (tl, mut rx) = layer(&wire);
    let key = tl
        .send_request(request("INVITE", "z9hG4bKlate"), Target::tcp(addr(UAS)))
        .unwrap();
    let tkey = TransactionKey::Client(key);
    tl.transport_error(&tkey);
    let events = drain(&mut rx);
    assert_eq!(names(&events), ["TransportError", "Terminated"]);
    assert!(matches!(&events[0], TuEvent::TransportError { key } if *key == tkey));
    assert!(tl.is_empty());
    // Unknown keys are ignored.
    tl.transport_error(&tkey);
    assert!(drain(&mut rx).is_empty());
}

#[tokio::test(start_paused = true)]
async fn incoming_from_transport() {
    let wire = Wire::new();
    let (tl, mut rx) = layer(&wire);
    let inv = request_with("INVITE", "z9hG4bKinc", &format!("TCP {UAC}"), "");
    let incoming = Incoming {
        data: inv.as_bytes().clone(),
        source: addr("127.0.0.1:40001"),
        local: addr(UAS),
        transport: TransportKind::Tcp,
        connection: Some(ConnectionId(7)),
    };
    tl.on_incoming(incoming.clone()).unwrap();
    let events = drain(&mut rx);
    let TuEvent::Request { key, source, .. } = &events[0] else {
        panic!("{events:?}")
    };
    assert_eq!(*source, incoming.reply_target());
    // Responses go back on the connection.
    tl.send_response(key, response(&inv, 404)).unwrap();
    assert_eq!(wire.sent()[0].1.connection, Some(ConnectionId(7)));
    let garbage = Incoming {
        data: Bytes::from_static(b"hello\r\n\r\n"),
        ..incoming
    };
    assert!(tl.on_incoming(garbage).is_err());
}

#[tokio::test(start_paused = true)]
async fn send_request_errors() {
    let wire = Wire::new();
    let (tl, _rx) = layer(&wire);
    let to = Target::udp(addr(UAS));
    let inv = request("INVITE", "z9hG4bKd");
    tl.send_request(inv.clone(), to).unwrap();
    assert!(matches!(
        tl.send_request(inv.clone(), to),
        Err(TransactionError::Exists(_))
    ));
    assert_eq!(
        tl.send_request(request("ACK", "z9hG4bKe"), to),
        Err(TransactionError::Ack)
    );
    assert_eq!(
        tl.send_request(response(&inv, 200), to),
        Err(TransactionError::NotARequest)
    );
    let no_branch = Message::parse(Bytes::from(
        "OPTIONS sip:b@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1\r\nMax-Forwards: 70\r\n\
         From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:b@127.0.0.1>\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\n\
         Content-Length: 0\r\n\r\n",
    ))
    .unwrap();
    assert_eq!(
        tl.send_request(no_branch, to),
        Err(TransactionError::NoBranch)
    );
    // CANCEL shares the INVITE's branch but is its own transaction.
    tl.send_request(request("CANCEL", "z9hG4bKd"), to).unwrap();
    assert_eq!(tl.len(), 2);
    let bad = TimerConfig {
        t1: Duration::ZERO,
        ..TimerConfig::default()
    };
    assert!(matches!(
        TransactionLayer::new(bad, wire.clone()),
        Err(TransactionError::Config(_))
    ));
}

// ---------------------------------------------------------------- server

#[tokio::test(start_paused = true)]
async fn server_invite_trying_timer_g_and_timeout_h() {
    let wire = Wire::new();
    let (tl, mut rx) = layer(&wire);
    let inv = request("INVITE", "z9hG4bKs");
    tl.on_message(inv.clone(), Target::udp(addr(UAC)));
    let events = drain(&mut rx);
    assert_eq!(names(&events), ["Request INVITE"]);
    let key = server_key(&events[0]);
    assert_eq!(
        key,
        ServerKey {
            branch: "z9hG4bKs".into(),
            sent_by: "127.0.0.1:5060".into(),
            method: Method::Invite
        }
    );
    // Retransmission before any response: absorbed, nothing to resend.
    wire.at(100).await;
    tl.on_message(inv.clone(), Target::udp(addr(UAC)));
    assert!(drain(&mut rx).is_empty());
    assert!(wire.sent().is_empty());
    // 100 Trying from the transaction after 200 ms.
    wire.at(201).await;
    let sent = wire.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(
        (sent[0].0, sent[0].1, sent[0].2.status()),
        (200, Target::udp(addr(UAC)), Some(100))
    );
    assert_eq!(sent[0].2.top_via(), inv.top_via());
    // ... and resent for a retransmitted INVITE.
    wire.at(300).await;
    tl.on_message(inv.clone(), Target::udp(addr(UAC)));
    assert_eq!(wire.times("SIP/2.0 100"), [200, 300]);

    wire.at(1000).await;
    tl.send_response(&key, response(&inv, 486)).unwrap();
    wire.at(32_999).await;
    assert!(drain(&mut rx).is_empty());
    wire.at(33_101).await;
    assert_eq!(names(&drain(&mut rx)), ["Timeout H", "Terminated"]);
    assert_eq!(
        wire.times("SIP/2.0 486"),
        [1000, 1500, 2500, 4500, 8500, 12_500, 16_500, 20_500, 24_500, 28_500, 32_500]
    );
    assert!(tl.is_empty());
}

#[tokio::test(start_paused = true)]
async fn server_invite_no_trying_when_tu_answers_fast() {
    let wire = Wire::new();
    let (tl, mut rx) = layer(&wire);
    let inv = request("INVITE", "z9hG4bKf");
    tl.on_message(inv.clone(), Target::udp(addr(UAC)));
    let key = server_key(&drain(&mut rx)[0]);
    wire.at(50).await;
    tl.send_response(&key, response(&inv, 180)).unwrap();
    wire.at(1000).await;
    assert!(wire.times("SIP/2.0 100").is_empty());
    tl.on_message(inv, Target::udp(addr(UAC)));
    assert_eq!(wire.times("SIP/2.0 180"), [50, 1000]);
}

#[tokio::test(start_paused = true)]
async fn server_invite_ack_confirms_and_is_absorbed() {
    let wire = Wire::new();
    let (tl, mut rx) = layer(&wire);
    let inv = request("INVITE", "z9hG4bKack");
    tl.on_message(inv.clone(), Target::udp(addr(UAC)));
    let key = server_key(&drain(&mut rx)[0]);
    let busy = response(&inv, 486);
    tl.send_response(&key, busy.clone()).unwrap();
    let tkey = TransactionKey::Server(key.clone());
    assert_eq!(
        tl.state(&tkey),
        Some(TransactionState::ServerInvite(ServerInviteState::Completed))
    );

    wire.at(700).await;
    let ack = ack_for(&inv, &busy);
    assert_eq!(ServerKey::from_request(&ack).as_ref(), Some(&key));
    tl.on_message(ack.clone(), Target::udp(addr(UAC)));
    assert_eq!(
        tl.state(&tkey),
        Some(TransactionState::ServerInvite(ServerInviteState::Confirmed))
    );
    // ACK retransmission and INVITE retransmission: absorbed silently.
    tl.on_message(ack, Target::udp(addr(UAC)));
    tl.on_message(inv, Target::udp(addr(UAC)));
    assert!(drain(&mut rx).is_empty());
    // Timer I = T4.
    wire.at(5699).await;
    assert_eq!(tl.len(), 1);
    wire.at(5780).await;
    assert_eq!(names(&drain(&mut rx)), ["Terminated"]);
    assert_eq!(wire.times("SIP/2.0 486"), [0, 500]);
}

#[tokio::test(start_paused = true)]
async fn server_invite_accepted() {
    let wire = Wire::new();
    let (tl, mut rx) = layer(&wire);
    let inv = request("INVITE", "z9hG4bKacc");
    tl.on_message(inv.clone(), Target::udp(addr(UAC)));
    let key = server_key(&drain(&mut rx)[0]);
    let tkey = TransactionKey::Server(key.clone());
    wire.at(50).await;
    let ok = response(&inv, 200);
    tl.send_response(&key, ok.clone()).unwrap();
    assert_eq!(
        tl.state(&tkey),
        Some(TransactionState::ServerInvite(ServerInviteState::Accepted))
    );
    // INVITE retransmission: absorbed, nothing resent, not passed up.
    wire.at(1000).await;
    tl.on_message(inv.clone(), Target::udp(addr(UAC)));
    assert!(drain(&mut rx).is_empty());
    // The TU retransmits its 2xx through the transaction.
    tl.send_response(&key, ok.clone()).unwrap();
    // A non-2xx after the 2xx is refused.
    assert_eq!(
        tl.send_response(&key, response(&inv, 500)),
        Err(TransactionError::ResponseRefused {
            status: 500,
            state: TransactionState::ServerInvite(ServerInviteState::Accepted)
        })
    );
    // An ACK that shares the INVITE's branch is passed up with the key; an
    // ACK with its own branch (the usual 2xx ACK) is passed up as stray.
    let ack = ack_for(&inv, &ok);
    tl.on_message(ack, Target::udp(addr(UAC)));
    let other = request("ACK", "z9hG4bKother");
    tl.on_message(other, Target::udp(addr(UAC)));
    let events = drain(&mut rx);
    assert_eq!(names(&events), ["Ack matched=true", "Ack matched=false"]);
    assert!(matches!(&events[0], TuEvent::Ack { key: Some(k), .. } if *k == key));
    // Timer L = 64*T1 from the 2xx.
    wire.at(32_049).await;
    assert_eq!(tl.len(), 1);
    wire.at(32_151).await;
    assert_eq!(names(&drain(&mut rx)), ["Terminated"]);
    assert_eq!(wire.times("SIP/2.0 200"), [50, 1000]);
    assert!(wire.times("SIP/2.0 100").is_empty());
    assert_eq!(
        tl.send_response(&key, ok),
        Err(TransactionError::NoSuchTransaction(tkey))
    );
}

#[tokio::test(start_paused = true)]
async fn server_non_invite_absorbs_and_resends() {
    let wire = Wire::new();
    let (tl, mut rx) = layer(&wire);
    let opt = request("OPTIONS", "z9hG4bKopt");
    tl.on_message(opt.clone(), Target::udp(addr(UAC)));
    let key = server_key(&drain(&mut rx)[0]);
    // Trying: a retransmission is absorbed, nothing sent (no 100 for
    // non-INVITE).
    wire.at(500).await;
    tl.on_message(opt.clone(), Target::udp(addr(UAC)));
    assert!(drain(&mut rx).is_empty());
    assert!(wire.sent().is_empty());
    wire.at(600).await;
    tl.send_response(&key, response(&opt, 200)).unwrap();
    wire.at(1500).await;
    tl.on_message(opt.clone(), Target::udp(addr(UAC)));
    assert!(drain(&mut rx).is_empty());
    assert_eq!(wire.times("SIP/2.0 200"), [600, 1500]);
    // A second final response is refused.
    assert!(matches!(
        tl.send_response(&key, response(&opt, 500)),
        Err(TransactionError::ResponseRefused { status: 500, .. })
    ));
    // Timer J = 64*T1.
    wire.at(32_599).await;
    assert_eq!(tl.len(), 1);
    wire.at(32_701).await;
    assert_eq!(names(&drain(&mut rx)), ["Terminated"]);
    // The same request now starts a new transaction.
    tl.on_message(opt, Target::udp(addr(UAC)));
    assert_eq!(names(&drain(&mut rx)), ["Request OPTIONS"]);
}

#[tokio::test(start_paused = true)]
async fn server_over_tcp() {
    let wire = Wire::new();
    let (tl, mut rx) = layer(&wire);
    let inv = request_with("INVITE", "z9hG4bKtcp", &format!("TCP {UAC}"), "");
    let src = Target::tcp(addr("127.0.0.1:40000"));
    tl.on_message(inv.clone(), src);
    let key = server_key(&drain(&mut rx)[0]);
    let busy = response(&inv, 486);
    tl.send_response(&key, busy.clone()).unwrap();
    wire.at(20_000).await;
    // Over TCP: responses back to the connection, no Timer G.
    assert_eq!(wire.times("SIP/2.0 486"), [0]);
    assert!(wire.sent().iter().all(|(_, to, _)| *to == src));
    // ACK: Timer I = 0, terminated at once.
    tl.on_message(ack_for(&inv, &busy), src);
    assert_eq!(names(&drain(&mut rx)), ["Terminated"]);
    assert!(tl.is_empty());

    let bye = request_with("BYE", "z9hG4bKtcp2", &format!("TCP {UAC}"), "");
    tl.on_message(bye.clone(), src);
    let key = server_key(&drain(&mut rx)[0]);
    tl.send_response(&key, response(&bye, 200)).unwrap();
    assert_eq!(names(&drain(&mut rx)), ["Terminated"]);
}

#[tokio::test(start_paused = true)]
async fn server_transport_error() {
    let wire = Wire::new();
    let (tl, mut rx) = layer(&wire);
    let inv = request("INVITE", "z9hG4bKte");
    tl.on_message(inv.clone(), Target::udp(addr(UAC)));
    let key = server_key(&drain(&mut rx)[0]);
    wire.fail.store(true, Ordering::SeqCst);
    tl.send_response(&key, response(&inv, 404)).unwrap();
    assert_eq!(names(&drain(&mut rx)), ["TransportError", "Terminated"]);
    assert!(tl.is_empty());
}

#[tokio::test(start_paused = true)]
async fn cancel_is_matched_to_its_invite() {
    let wire = Wire::new();
    let (tl, mut rx) = layer(&wire);
    let inv = request("INVITE", "z9hG4bKcan");
    tl.on_message(inv.clone(), Target::udp(addr(UAC)));
    let cancel = request("CANCEL", "z9hG4bKcan");
    tl.on_message(cancel.clone(), Target::udp(addr(UAC)));
    let events = drain(&mut rx);
    assert_eq!(names(&events), ["Request INVITE", "Request CANCEL"]);
    let (inv_key, cancel_key) = (server_key(&events[0]), server_key(&events[1]));
    assert_ne!(inv_key, cancel_key);
    assert_eq!(tl.len(), 2);
    assert_eq!(
        tl.find_invite_for_cancel(&cancel_key),
        Some(inv_key.clone())
    );
    // Not for the INVITE's own key, nor for a CANCEL of another branch.
    assert_eq!(tl.find_invite_for_cancel(&inv_key), None);
    let stray = ServerKey {
        branch: "z9hG4bKnone".into(),
        ..cancel_key.clone()
    };
    assert_eq!(tl.find_invite_for_cancel(&stray), None);
    // A CANCEL from another sent-by does not match either.
    let elsewhere = request_with("CANCEL", "z9hG4bKcan", "UDP 127.0.0.9:5060", "");
    tl.on_message(elsewhere.clone(), Target::udp(addr("127.0.0.9:5060")));
    let other_key = server_key(&drain(&mut rx)[0]);
    assert_eq!(tl.find_invite_for_cancel(&other_key), None);
    tl.send_response(&other_key, response(&elsewhere, 481))
        .unwrap();

    // The usual proxy/UAS reaction: 200 to the CANCEL, 487 to the INVITE.
    tl.send_response(&cancel_key, response(&cancel, 200))
        .unwrap();
    tl.send_response(&inv_key, response(&inv, 487)).unwrap();
    tl.on_message(ack_for(&inv, &response(&inv, 487)), Target::udp(addr(UAC)));
    assert_eq!(
        tl.state(&TransactionKey::Server(inv_key.clone())),
        Some(TransactionState::ServerInvite(ServerInviteState::Confirmed))
    );
    wire.at(40_000).await;
    assert!(tl.is_empty());
    assert_eq!(tl.find_invite_for_cancel(&cancel_key), None);
}

#[tokio::test(start_paused = true)]
async fn stray_ack_goes_to_tu() {
    let wire = Wire::new();
    let (tl, mut rx) = layer(&wire);
    tl.on_message(request("ACK", "z9hG4bKlone"), Target::udp(addr(UAC)));
    assert_eq!(names(&drain(&mut rx)), ["Ack matched=false"]);
    assert!(tl.is_empty());
}

// ---------------------------------------------------------------- keys etc.

#[test]
fn response_target_follows_18_2_2() {
    let src = Target::udp(addr("127.0.0.5:40000"));
    let plain = request_with("OPTIONS", "z9hG4bK1", "UDP host.example.com:5080", "");
    assert_eq!(
        response_target(&plain, src),
        Target::udp(addr("127.0.0.5:5080"))
    );
    let default_port = request_with("OPTIONS", "z9hG4bK1", "UDP host.example.com", "");
    assert_eq!(
        response_target(&default_port, src),
        Target::udp(addr("127.0.0.5:5060"))
    );
    let rport = request_with("OPTIONS", "z9hG4bK1;rport", "UDP host.example.com:5080", "");
    assert_eq!(response_target(&rport, src), src);
    let tcp = Target::tcp(addr("127.0.0.5:40000"));
    assert_eq!(response_target(&plain, tcp), tcp);
}

#[test]
fn server_keys() {
    let inv = request_with("INVITE", "z9hG4bKk", "UDP HOST.Example.com", "");
    let key = ServerKey::from_request(&inv).unwrap();
    assert_eq!(key.sent_by, "host.example.com:5060");
    assert_eq!(key.method, Method::Invite);
    let ack = request_with("ACK", "z9hG4bKk", "UDP host.example.com:5060", "");
    assert_eq!(ServerKey::from_request(&ack), Some(key.clone()));
    let cancel = request_with("CANCEL", "z9hG4bKk", "UDP host.example.com", "");
    assert_eq!(
        ServerKey::from_request(&cancel).unwrap().method,
        Method::Cancel
    );
    assert_eq!(ServerKey::from_request(&response(&inv, 200)), None);
    // RFC 2543 branch: the fallback key still matches the ACK.
    let old = request_with("INVITE", "1234", "UDP host.example.com", "");
    let old_ack = request_with("ACK", "1234", "UDP host.example.com", "");
    let old_key = ServerKey::from_request(&old).unwrap();
    assert!(old_key.branch.starts_with("rfc2543;"));
    assert_eq!(ServerKey::from_request(&old_ack), Some(old_key));
}

#[test]
fn client_key_of_response_matches_request() {
    let inv = request("INVITE", "z9hG4bKq");
    assert_eq!(
        ClientKey::from_message(&inv),
        ClientKey::from_message(&response(&inv, 180))
    );
    let cancel = request("CANCEL", "z9hG4bKq");
    assert_ne!(
        ClientKey::from_message(&inv),
        ClientKey::from_message(&cancel)
    );
}

// ---------------------------------------------------------------- end to end

/// Two layers joined by channel "wires"; `drop_first` of the UAC→UAS
/// messages are lost.
async fn pump(
    mut rx: mpsc::UnboundedReceiver<Outgoing>,
    to: TransactionLayer,
    source: SocketAddr,
    mut drop_first: usize,
) {
    while let Some(out) = rx.recv().await {
        if drop_first > 0 {
            drop_first -= 1;
            continue;
        }
        let incoming = Incoming {
            data: out.bytes,
            source,
            local: out.target.addr,
            transport: out.target.transport,
            connection: None,
        };
        to.on_incoming(incoming).unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn end_to_end_lost_invite_busy_and_ack() {
    let start = Instant::now();
    let (a_tx, a_rx) = mpsc::unbounded_channel::<Outgoing>();
    let (b_tx, b_rx) = mpsc::unbounded_channel::<Outgoing>();
    let (uac, mut uac_rx) = TransactionLayer::new(TimerConfig::default(), Arc::new(a_tx)).unwrap();
    let (uas, mut uas_rx) = TransactionLayer::new(TimerConfig::default(), Arc::new(b_tx)).unwrap();
    tokio::spawn(pump(a_rx, uas.clone(), addr(UAC), 1));
    tokio::spawn(pump(b_rx, uac.clone(), addr(UAS), 0));

    let inv = request("INVITE", "z9hG4bKe2e");
    let ckey = uac
        .send_request(inv.clone(), Target::udp(addr(UAS)))
        .unwrap();
    tokio::time::sleep_until(start + Duration::from_millis(100)).await;
    assert!(drain(&mut uas_rx).is_empty(), "the first INVITE was lost");
    // Timer A brings it through at 500 ms.
    tokio::time::sleep_until(start + Duration::from_millis(501)).await;
    let events = drain(&mut uas_rx);
    assert_eq!(names(&events), ["Request INVITE"]);
    let skey = server_key(&events[0]);
    // The UAS TU rejects; the UAC layer ACKs; the UAS layer matches the ACK.
    uas.send_response(&skey, response(&inv, 486)).unwrap();
    tokio::time::sleep_until(start + Duration::from_millis(510)).await;
    assert_eq!(names(&drain(&mut uac_rx)), ["Response 486"]);
    assert!(
        drain(&mut uas_rx).is_empty(),
        "ACK is absorbed by the server transaction"
    );
    assert_eq!(
        uac.state(&TransactionKey::Client(ckey)),
        Some(TransactionState::ClientInvite(ClientInviteState::Completed))
    );
    assert_eq!(
        uas.state(&TransactionKey::Server(skey)),
        Some(TransactionState::ServerInvite(ServerInviteState::Confirmed))
    );
    // Timer I (5 s) and Timer D (32 s) end both sides.
    tokio::time::sleep_until(start + Duration::from_millis(6000)).await;
    assert!(uas.is_empty());
    assert_eq!(uac.len(), 1);
    tokio::time::sleep_until(start + Duration::from_millis(33_000)).await;
    assert!(uac.is_empty());
    assert_eq!(names(&drain(&mut uac_rx)), ["Terminated"]);
    assert_eq!(names(&drain(&mut uas_rx)), ["Terminated"]);
}

#[tokio::test(start_paused = true)]
async fn dropping_the_layer_ends_the_timer_task() {
    let wire = Wire::new();
    let (tl, mut rx) = layer(&wire);
    tl.send_request(request("INVITE", "z9hG4bKdrop"), Target::udp(addr(UAS)))
        .unwrap();
    drop(tl);
    wire.at(40_000).await;
    // Only the first send; no timer ran after the drop, and the channel is
    // closed because the layer (its sender) is gone.
    assert_eq!(wire.times("INVITE"), [0]);
    assert!(rx.recv().await.is_none());
}

#[tokio::test(start_paused = true)]
async fn wait_states_keep_only_what_a_retransmission_needs() {
    let wire = Wire::new();
    let (tl, mut rx) = layer(&wire);
    // Server INVITE answered 2xx (Accepted): neither message is needed.
    let inv = request("INVITE", "z9hG4bKshed1");
    tl.on_message(inv.clone(), Target::udp(addr(UAC)));
    let key = server_key(&drain(&mut rx)[0]);
    let tkey = TransactionKey::Server(key.clone());
    assert_eq!(tl.holds(&tkey), Some((true, false)));
    tl.send_response(&key, response(&inv, 200)).unwrap();
    assert_eq!(tl.holds(&tkey), Some((false, false)));
    // Server non-INVITE answered (Completed): the response stays for
    // retransmissions of the request, and is resent.
    let bye = request("BYE", "z9hG4bKshed2");
    tl.on_message(bye.clone(), Target::udp(addr(UAC)));
    let key = server_key(&drain(&mut rx)[0]);
    tl.send_response(&key, response(&bye, 200)).unwrap();
    assert_eq!(tl.holds(&TransactionKey::Server(key)), Some((false, true)));
    wire.at(700).await;
    tl.on_message(bye, Target::udp(addr(UAC)));
    assert_eq!(wire.times("SIP/2.0 200").len(), 3);
    // Client INVITE answered 2xx (Accepted): the request is not resent.
    let out = request("INVITE", "z9hG4bKshed3");
    let ckey = tl
        .send_request(out.clone(), Target::udp(addr(UAS)))
        .unwrap();
    let ctkey = TransactionKey::Client(ckey);
    assert_eq!(tl.holds(&ctkey), Some((true, false)));
    tl.on_message(response(&out, 200), Target::udp(addr(UAS)));
    assert_eq!(tl.holds(&ctkey), Some((false, false)));
}

// ---------------------------------------------------------------- overload

#[tokio::test(start_paused = true)]
async fn a_full_tu_queue_answers_new_invites_503_and_drops_the_rest() {
    let wire = Wire::new();
    let queue = TuQueueConfig {
        capacity: 2,
        retry_after_s: 7,
        ..TuQueueConfig::default()
    };
    let (tl, mut rx) =
        TransactionLayer::with_queue(TimerConfig::default(), wire.clone(), queue).unwrap();
    let from = Target::udp(addr(UAC));
    tl.on_message(request("INVITE", "z9hG4bKq1"), from);
    tl.on_message(request("INVITE", "z9hG4bKq2"), from);
    // Full: the third INVITE is answered at once, without a transaction.
    tl.on_message(request("INVITE", "z9hG4bKq3"), from);
    let sent = wire.sent();
    let refused: Vec<_> = sent
        .iter()
        .filter(|(_, _, m)| m.status() == Some(503))
        .collect();
    assert_eq!(refused.len(), 1);
    let (_, to, resp) = refused[0];
    assert_eq!(*to, Target::udp(addr(UAC)));
    assert_eq!(resp.top_via().branch(), Some("z9hG4bKq3"));
    assert_eq!(resp.header("Retry-After"), Some("7"));
    // An in-dialog request and a stray response are dropped, counted.
    let bye = request("BYE", "z9hG4bKq4").as_bytes().clone();
    let bye = String::from_utf8(bye.to_vec()).unwrap().replace(
        "To: Bob <sip:bob@127.0.0.1>",
        "To: Bob <sip:bob@127.0.0.1>;tag=b2",
    );
    tl.on_message(Message::parse(Bytes::from(bye)).unwrap(), from);
    let stray = response(&request("OPTIONS", "z9hG4bKq5"), 200);
    tl.on_message(stray, from);
    assert_eq!(
        tl.overload_stats(),
        OverloadStats {
            rejected: 1,
            dropped: 2
        }
    );
    // The retransmission of the refused INVITE gets the same answer.
    tl.on_message(request("INVITE", "z9hG4bKq3"), from);
    assert_eq!(tl.overload_stats().rejected, 2);
    // Events of existing transactions are never held back: the TU sees
    // the two admitted INVITEs, and once it has, new work is let in.
    assert_eq!(names(&drain(&mut rx)), ["Request INVITE", "Request INVITE"]);
    tl.on_message(request("INVITE", "z9hG4bKq6"), from);
    assert_eq!(names(&drain(&mut rx)), ["Request INVITE"]);
    assert_eq!(tl.overload_stats().rejected, 2);
}

#[tokio::test(start_paused = true)]
async fn strangers_fill_only_their_share_of_the_queue_and_of_the_transactions() {
    let wire = Wire::new();
    let queue = TuQueueConfig {
        capacity: 8,
        retry_after_s: 7,
        stranger_capacity: 2,
        max_server_transactions: 6,
        max_stranger_transactions: 3,
        ..TuQueueConfig::default()
    };
    let (tl, mut rx) =
        TransactionLayer::with_queue(TimerConfig::default(), wire.clone(), queue).unwrap();
    let stranger = Target::udp(addr("127.0.0.2:5060"));
    let trunk = Target::udp(addr(UAC));
    let invite_from = |tl: &TransactionLayer, branch: &str, from: Target, class: SourceClass| {
        tl.on_message_from(request("INVITE", branch), from, class)
    };
    // A flood from a stranger: two fill its share of the queue, the rest
    // are dropped without an answer (its address may be forged).
    for n in 0..100 {
        invite_from(
            &tl,
            &format!("z9hG4bKs{n}"),
            stranger,
            SourceClass::Stranger,
        );
    }
    assert_eq!(tl.len(), 2);
    assert!(wire.sent().iter().all(|(_, _, m)| m.status() != Some(503)));
    assert_eq!(tl.overload_stats().dropped, 98);
    // The trunk still finds room.
    invite_from(&tl, "z9hG4bKt1", trunk, SourceClass::Trusted);
    assert_eq!(names(&drain(&mut rx)).len(), 3);
    // The queue is empty now, but the strangers' transactions are capped
    // at 3 (they wait out their timers for 32 s).
    for n in 100..200 {
        invite_from(
            &tl,
            &format!("z9hG4bKs{n}"),
            stranger,
            SourceClass::Stranger,
        );
    }
    drain(&mut rx);
    assert_eq!(tl.len(), 4, "3 of the stranger's, 1 of the trunk's");
    // The trunk fills the total cap of 6; the next INVITE gets 503.
    invite_from(&tl, "z9hG4bKt2", trunk, SourceClass::Trusted);
    invite_from(&tl, "z9hG4bKt3", trunk, SourceClass::Trusted);
    assert_eq!(tl.len(), 6);
    invite_from(&tl, "z9hG4bKt4", trunk, SourceClass::Trusted);
    assert_eq!(tl.len(), 6);
    let refused: Vec<_> = wire
        .sent()
        .into_iter()
        .filter(|(_, _, m)| m.status() == Some(503))
        .collect();
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0].1, trunk);
    assert_eq!(refused[0].2.header("Retry-After"), Some("7"));
    // Transactions that end give their room back.
    drain(&mut rx);
    for n in ["t1", "t2", "t3", "s0", "s1", "s100"] {
        let req = request("INVITE", &format!("z9hG4bK{n}"));
        let key = ServerKey::from_request(&req).unwrap();
        tl.send_response(&key, response(&req, 486)).unwrap();
    }
    wire.at(40_000).await;
    tokio::task::yield_now().await;
    assert_eq!(tl.len(), 0);
    invite_from(&tl, "z9hG4bKs999", stranger, SourceClass::Stranger);
    assert_eq!(tl.len(), 1);
}

/// One call as the far end and the TU play it at the layer: INVITE
/// answered 200, its ACK, a BYE answered 200. Leaves two server
/// transactions in wait states (Accepted until Timer L, Completed until
/// Timer J), 32 s each.
fn call_ends_in_wait_states(tl: &TransactionLayer, rx: &mut TuReceiver, n: usize) {
    let from = Target::udp(addr(UAC));
    let inv = request("INVITE", &format!("z9hG4bKcall{n}"));
    tl.on_message(inv.clone(), from);
    let events = drain(rx);
    assert_eq!(names(&events), ["Request INVITE"], "call {n} refused");
    let key = server_key(&events[0]);
    let ok = response(&inv, 200);
    tl.send_response(&key, ok.clone()).unwrap();
    tl.on_message(ack_for(&inv, &ok), from);
    let bye = request("BYE", &format!("z9hG4bKbye{n}"));
    tl.on_message(bye.clone(), from);
    let events = drain(rx);
    assert_eq!(names(&events), ["Ack matched=true", "Request BYE"]);
    tl.send_response(&server_key(&events[1]), response(&bye, 200))
        .unwrap();
}

#[tokio::test(start_paused = true)]
async fn calls_in_their_wait_states_never_fill_the_cap_but_a_flood_of_live_ones_does() {
    let wire = Wire::new();
    let queue = TuQueueConfig {
        max_server_transactions: 10,
        ..TuQueueConfig::default()
    };
    let (tl, mut rx) = layer_with(&wire, queue);
    // 10 calls a second for 20 s: 2 * 32 s * 10/s = 640 transactions
    // would be waiting at the end of it, 64 times the cap.
    for n in 0..200 {
        wire.at(100 * n as u64).await;
        call_ends_in_wait_states(&tl, &mut rx, n);
    }
    assert!(
        wire.sent().iter().all(|(_, _, m)| m.status() != Some(503)),
        "a call was refused"
    );
    assert_eq!(tl.overload_stats(), OverloadStats::default());
    assert_eq!(
        tl.server_stats(),
        ServerTransactionStats {
            live: 0,
            waiting: 400,
            evicted: 0
        }
    );
    // A flood of INVITEs the TU does not answer (yet): live, capped.
    for n in 0..15 {
        tl.on_message(
            request("INVITE", &format!("z9hG4bKflood{n}")),
            Target::udp(addr(UAC)),
        );
    }
    assert_eq!(names(&drain(&mut rx)).len(), 10);
    assert_eq!(tl.overload_stats().rejected, 5);
    assert_eq!(tl.server_stats().live, 10);
    // The wait states end with their timers, the live ones stay.
    wire.at(20_000 + 33_000).await;
    tokio::task::yield_now().await;
    assert_eq!(tl.server_stats().waiting, 0);
    assert_eq!(tl.server_stats().live, 10);
}

#[tokio::test(start_paused = true)]
async fn wait_states_absorb_retransmissions_and_the_oldest_is_evicted_when_full() {
    let wire = Wire::new();
    let queue = TuQueueConfig {
        max_waiting_transactions: 3,
        max_stranger_waiting_transactions: 1,
        ..TuQueueConfig::default()
    };
    let (tl, mut rx) = layer_with(&wire, queue);
    let from = Target::udp(addr(UAC));
    let answer = |tl: &TransactionLayer, rx: &mut TuReceiver, req: &Message, status| {
        let key = server_key(&drain(rx)[0]);
        tl.send_response(&key, response(req, status)).unwrap();
        key
    };
    // A BYE answered 200 (Timer J): its retransmission gets the same 200,
    // the TU does not see it again.
    let bye = request("BYE", "z9hG4bKwait1");
    tl.on_message(bye.clone(), from);
    let bye_key = answer(&tl, &mut rx, &bye, 200);
    wire.at(1_000).await;
    tl.on_message(bye.clone(), from);
    assert!(drain(&mut rx).is_empty());
    assert_eq!(wire.times("SIP/2.0 200"), [0, 1_000]);
    // An INVITE answered 2xx (Accepted): a retransmitted INVITE is
    // absorbed (the TU retransmits its 2xx itself), the ACK goes to the TU.
    let inv = request("INVITE", "z9hG4bKwait2");
    tl.on_message(inv.clone(), from);
    let inv_key = answer(&tl, &mut rx, &inv, 200);
    tl.on_message(inv.clone(), from);
    assert!(drain(&mut rx).is_empty());
    assert_eq!(wire.times("SIP/2.0 200"), [0, 1_000, 1_000]);
    tl.send_response(&inv_key, response(&inv, 200)).unwrap();
    tl.on_message(ack_for(&inv, &response(&inv, 200)), from);
    assert_eq!(names(&drain(&mut rx)), ["Ack matched=true"]);
    let third = request("OPTIONS", "z9hG4bKwait3");
    tl.on_message(third.clone(), from);
    answer(&tl, &mut rx, &third, 200);
    assert_eq!(tl.server_stats().waiting, 3);
    assert_eq!(tl.server_stats().evicted, 0);
    // A fourth wait state ends the oldest early (the BYE), counted; the
    // TU is told it ended.
    wire.at(2_000).await;
    let fourth = request("BYE", "z9hG4bKwait4");
    tl.on_message(fourth.clone(), from);
    answer(&tl, &mut rx, &fourth, 200);
    assert_eq!(names(&drain(&mut rx)), ["Terminated"]);
    assert_eq!(
        tl.server_stats(),
        ServerTransactionStats {
            live: 0,
            waiting: 3,
            evicted: 1
        }
    );
    let bye_tkey = TransactionKey::Server(bye_key);
    assert_eq!(tl.state(&bye_tkey), None);
    assert!(tl.state(&TransactionKey::Server(inv_key.clone())).is_some());
    // Its late retransmission is a new request, as after Timer J: the TU
    // answers it as it answers a BYE for a dialog it does not know (the
    // proxy: 481).
    tl.on_message(bye.clone(), from);
    assert_eq!(names(&drain(&mut rx)), ["Request BYE"]);
    assert_eq!(
        tl.state(&bye_tkey),
        Some(TransactionState::ServerNonInvite(
            ServerNonInviteState::Trying
        ))
    );
    // Strangers' wait states evict strangers' only. With the set full of
    // trusted ones, a stranger's ends itself at once.
    let stranger = Target::udp(addr("127.0.0.2:5060"));
    let stranger_options = |tl: &TransactionLayer, rx: &mut TuReceiver, n: usize| {
        let req = request_with(
            "OPTIONS",
            &format!("z9hG4bKstr{n}"),
            "UDP 127.0.0.2:5060",
            "",
        );
        tl.on_message_from(req.clone(), stranger, SourceClass::Stranger);
        let key = answer(tl, rx, &req, 200);
        tl.state(&TransactionKey::Server(key.clone())).map(|_| key)
    };
    assert_eq!(stranger_options(&tl, &mut rx, 0), None);
    assert_eq!(tl.server_stats().evicted, 2);
    assert!(tl.state(&TransactionKey::Server(inv_key.clone())).is_some());
    // Once the trusted ones have ended, strangers have their share (1
    // here) and the second of theirs ends the first.
    wire.at(40_000).await;
    tokio::task::yield_now().await;
    drain(&mut rx);
    assert_eq!(tl.server_stats().waiting, 0);
    let first = stranger_options(&tl, &mut rx, 1).expect("room for one");
    let second = stranger_options(&tl, &mut rx, 2).expect("the newest stays");
    assert_eq!(names(&drain(&mut rx)), ["Terminated"]);
    assert_eq!(tl.state(&TransactionKey::Server(first)), None);
    assert!(tl.state(&TransactionKey::Server(second)).is_some());
    assert_eq!(tl.server_stats().evicted, 3);
    // A trusted source's still finds room, evicting nothing.
    let trusted = request("OPTIONS", "z9hG4bKwait5");
    tl.on_message(trusted.clone(), from);
    answer(&tl, &mut rx, &trusted, 200);
    assert_eq!(tl.server_stats().waiting, 2);
    assert_eq!(tl.server_stats().evicted, 3);
}

#[tokio::test(start_paused = true)]
async fn forgotten_transactions_give_their_room_back() {
    let wire = Wire::new();
    let queue = TuQueueConfig {
        max_server_transactions: 2,
        max_stranger_transactions: 1,
        ..TuQueueConfig::default()
    };
    let (tl, mut rx) = layer_with(&wire, queue);
    let stranger = Target::udp(addr("127.0.0.2:5060"));
    // Requests the TU will not serve, each forgotten: none may keep a
    // place under the caps.
    for n in 0..5 {
        let req = request("OPTIONS", &format!("z9hG4bKscan{n}"));
        tl.on_message_from(req, stranger, SourceClass::Stranger);
        let events = drain(&mut rx);
        assert_eq!(names(&events), ["Request OPTIONS"], "scan {n} admitted");
        tl.forget(&server_key(&events[0]), None);
    }
    assert_eq!(tl.server_stats(), ServerTransactionStats::default());
}

#[tokio::test(start_paused = true)]
async fn the_tables_give_back_the_room_of_a_past_burst() {
    let wire = Wire::new();
    let (tl, mut rx) = layer(&wire);
    let queue = TuQueueConfig::default().capacity;
    // A burst of OPTIONS, answered: their transactions wait out timer J
    // (64*T1 over UDP), then end.
    for n in 0..3000 {
        let req = request("OPTIONS", &format!("z9hG4bKburst{n}"));
        tl.on_message(req.clone(), Target::udp(addr(UAC)));
        if n % queue == queue - 1 {
            drain(&mut rx);
        }
        let key = ServerKey::from_request(&req).unwrap();
        tl.send_response(&key, response(&req, 200)).unwrap();
    }
    drain(&mut rx);
    let peak = tl.lock().entries.capacity();
    assert!(peak >= 3000, "{peak}");
    wire.at(40_000).await;
    tokio::task::yield_now().await;
    let inner = tl.lock();
    assert_eq!(inner.entries.len(), 0);
    assert!(
        inner.entries.capacity() < peak / 2,
        "capacity {} after the burst (peak {peak})",
        inner.entries.capacity()
    );
}

// ------------------------------------------------------------- strangers

/// A response from a peer that names a branch: ours (made with `key`) or
/// one it made up.
fn response_with_branch(branch: &str, status: u16) -> Message {
    response(&request("INVITE", branch), status)
}

#[tokio::test(start_paused = true)]
async fn stray_responses_reach_the_tu_only_with_our_branch() {
    let wire = Wire::new();
    let (tl, mut rx) = layer(&wire);
    let key = BranchKey::random();
    // Without a key (a stateless proxy's view) every stray is passed.
    tl.on_message(
        response_with_branch("z9hG4bKforged", 200),
        Target::udp(addr(UAS)),
    );
    assert_eq!(names(&drain(&mut rx)), ["Stray 200"]);

    tl.set_branch_key(key.clone());
    // A forged 2xx (a branch of the sender's, or ours copied with the
    // tag cut off or made up) is dropped before the TU and counted.
    let ours = key.branch("n1");
    let (nonce_only, _) = ours.rsplit_once('.').unwrap();
    for forged in [
        "z9hG4bKforged".to_owned(),
        nonce_only.to_owned(),
        format!("{nonce_only}.00000000000000000000"),
        BranchKey::random().branch("n1"),
    ] {
        tl.on_message(response_with_branch(&forged, 200), Target::udp(addr(UAS)));
    }
    assert!(drain(&mut rx).is_empty());
    assert_eq!(tl.unverified_responses(), 4);
    // A 2xx retransmitted for an INVITE of ours whose transaction ended
    // (RFC 6026) is still ours: passed.
    tl.on_message(response_with_branch(&ours, 200), Target::udp(addr(UAS)));
    assert_eq!(names(&drain(&mut rx)), ["Stray 200"]);
    assert!(wire.sent().is_empty(), "nothing answered a stray response");
}

#[tokio::test(start_paused = true)]
async fn a_forgotten_invite_is_answered_once_and_never_again() {
    let wire = Wire::new();
    let (tl, mut rx) = layer(&wire);
    let inv = request("INVITE", "z9hG4bKspoofed");
    tl.on_message(inv.clone(), Target::udp(addr(UAC)));
    let key = server_key(&drain(&mut rx)[0]);
    wire.at(10).await;
    tl.forget(&key, Some(response(&inv, 403)));
    assert!(tl.is_empty(), "no transaction kept");
    // No 100 Trying, no Timer G retransmission, no Timer H: one 403.
    wire.at(40_000).await;
    assert_eq!(wire.times("SIP/2.0"), [10]);
    assert_eq!(wire.sent()[0].2.status(), Some(403));
    assert!(drain(&mut rx).is_empty());
    // A retransmission of the INVITE is a new request for the TU to
    // refuse again: one answer per request received, never more.
    tl.on_message(inv.clone(), Target::udp(addr(UAC)));
    let key = server_key(&drain(&mut rx)[0]);
    // Dropped silently: nothing at all goes out.
    tl.forget(&key, None);
    wire.at(80_000).await;
    assert_eq!(wire.times("SIP/2.0"), [10]);
    assert!(tl.is_empty());
}

/// The index is keyed by branches a sender chose: each layer's maps hash
/// with a seed of their own, never a fixed state (with which a sender
/// could work out once a set of branches that all collide).
#[test]
fn the_index_hashes_with_a_seed_of_its_own() {
    use std::hash::BuildHasher;
    let key = TransactionKey::Server(ServerKey {
        branch: "z9hG4bKsame".into(),
        sent_by: "127.0.0.1:5060".into(),
        method: Method::Invite,
    });
    let hashes: std::collections::HashSet<u64> = (0..4)
        .map(|_| Inner::default().index.hasher().hash_one(&key))
        .collect();
    assert!(hashes.len() > 1, "the same key hashed alike in every layer");
}
