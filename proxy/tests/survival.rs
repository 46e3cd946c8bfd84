//! Call survival end to end: answered calls whose media server dies (or
//! whose media stops) continue on another SIPp media server, with the
//! caller (`tandem-load`, which checks the RTP that comes back) still on
//! the line; and a call on hold is never moved.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;
use sipcore::dialog::Dialog;
use sipcore::endpoint::{Endpoint, EndpointConfig};
use sipcore::message::{Message, Method, RequestBuilder};
use sipcore::sdp::Sdp;
use sipcore::transaction::TuEvent;
use sipcore::transport::{Target, TransportKind};
use testkit::{Sipp, SippOutcome, SippProcess, Tandem, TandemConfig};
use tokio::net::UdpSocket;
use tokio::time::Instant;

use common::{
    load_call_args, media_server, read_json, run_call, said, scenario, tandem_load,
    wait_members_up, SECS, TANDEM,
};

/// Tandem with `ms1` first (sequential: every call lands there) and fast
/// keepalives (200 ms, two misses take a member down).
async fn tandem(ms1: SocketAddr, ms2: SocketAddr) -> Tandem {
    let tandem = Tandem::start(
        TANDEM,
        TandemConfig::new([("ms1", ms1), ("ms2", ms2)])
            .strategy("sequential")
            .health(200, 150, 2, 2),
    )
    .await;
    wait_members_up(&tandem, &["ms1", "ms2"]).await;
    tandem
}

/// Every call answered and ended by the caller's BYE, none lost.
fn assert_all_completed(r: &Value, calls: u64, said: &str) {
    let c = &r["calls"];
    for (key, want) in [
        ("answered", calls),
        ("completed", calls),
        ("failed", 0),
        ("dropped", 0),
        ("unfinished", 0),
    ] {
        assert_eq!(c[key], want, "{key}: {c}\n{said}");
    }
}

async fn server_calls(ms: &SippProcess, n: u64) -> SippOutcome {
    ms.wait_stat("SuccessfulCall(C)", n, SECS(15)).await
}

/// The `calls` calls of a test ended normally on ms1 and never moved: ms2
/// saw no INVITE, Tandem counted no resume, each CDR names ms1 alone.
/// Returns the CDRs.
async fn assert_stayed_on_ms1(
    tandem: &Tandem,
    ms1: &SippProcess,
    ms2: &SippProcess,
    calls: usize,
    moved: &str,
) -> Vec<testkit::Cdr> {
    let server = server_calls(ms1, calls as u64).await;
    assert_eq!(server.failed, 0, "{}\n{}", server.log, tandem.log_tail(30));
    assert_eq!(ms2.outcome().count("_INVITE_Recv"), 0, "{moved}");
    let m = tandem.metrics().await;
    assert_eq!(
        m.get("tandem_calls_resumed_total", &[]),
        0.0,
        "{}",
        m.text()
    );
    let cdrs = tandem.wait_cdrs(calls, SECS(5)).await;
    for cdr in &cdrs {
        assert_eq!(cdr.servers(), vec!["ms1"], "{}", cdr.line);
    }
    cdrs
}

/// Resumes counted by Tandem, by outcome.
async fn resumed(tandem: &Tandem, outcome: &str) -> f64 {
    tandem
        .metrics()
        .await
        .get("tandem_calls_resumed_total", &[("outcome", outcome)])
}

// ---- the media server dies: kill -9 ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_media_server_its_answered_calls_continue_on_the_other() {
    let bin = tandem_load();
    let mut ms1 = media_server(None, true).await;
    let ms2 = media_server(None, true).await;
    let tandem = tandem(ms1.addr(), ms2.addr()).await;
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("call.json");

    // 4 calls of 8 s; at 2 s ms1 (which holds them all) is killed.
    let mut args = load_call_args(&tandem, 4, "8s", &json, &["--per-call"]);
    let kill = format!("kill -9 {}", ms1.pid().expect("ms1 runs"));
    args.extend(["--fail-at", "2", "--fail-cmd", &kill].map(String::from));
    let out = run_call(&bin, &args, SECS(60)).await;
    let said = said(&out, &tandem);
    assert!(out.status.success(), "{said}");
    let r = read_json(&json);
    assert_all_completed(&r, 4, &said);
    let f = &r["failure"];
    assert_eq!(f["exit_code"], 0, "{f}");
    assert_eq!(f["calls_up"], 4, "every call was up when ms1 died: {f}");
    assert_eq!(f["completed"], 4, "{f}");
    // The echo came back after the switch: a call left without audio
    // would show a gap of the 6 s that remained of it.
    let gap = f["rtp"]["gap_ms"]["max"].as_f64().unwrap();
    assert!(gap < 4000.0, "audio did not come back: {f}\n{said}");
    // One continuous stream toward the caller (SSRC rewritten).
    assert_eq!(r["rtp"]["ssrc_changes"], 0, "{}", r["rtp"]);
    assert_eq!(r["rtp"]["calls_without_packets"], 0, "{}", r["rtp"]);

    // ms2 took the 4 calls and the caller's BYE ended them there.
    let server = server_calls(&ms2, 4).await;
    assert_eq!(server.count("_INVITE_Recv"), 4, "{}", server.log);
    assert_eq!(server.failed, 0, "{}", server.log);
    // The new server's dialplan learns which call it takes over.
    let x_resumed: Vec<&str> = server
        .messages
        .lines()
        .filter(|l| l.starts_with("X-Tandem-Resumed:"))
        .collect();
    assert_eq!(x_resumed.len(), 4, "{}", server.messages);
    for l in &x_resumed {
        assert!(l.ends_with("@tandem-load;from=ms1"), "{l}");
    }
    let resumed_ok = tandem.metrics().await.get(
        "tandem_calls_resumed_total",
        &[("from", "ms1"), ("to", "ms2"), ("outcome", "ok")],
    );
    assert_eq!(resumed_ok, 4.0, "{}", tandem.metrics().await.text());
    for cdr in tandem.wait_cdrs(4, SECS(10)).await {
        assert_eq!(cdr.servers(), vec!["ms1", "ms2"], "{}", cdr.line);
        assert_eq!(cdr.get("reason"), "bye_caller", "{}", cdr.line);
        assert_eq!(cdr.num("resumes"), 1, "{}", cdr.line);
    }
    let m = tandem.metrics().await;
    assert_eq!(m.get("tandem_calls_active", &[]), 0.0, "{}", m.text());
    assert_eq!(
        m.get(
            "tandem_media_server_state",
            &[("member", "ms1"), ("state", "down")]
        ),
        1.0,
        "{}",
        m.text()
    );
    // On loopback the dead server's RTP port answered with ICMP port
    // unreachable: that, not 500 ms of silence, raised the suspicion.
    assert!(
        tandem.log().contains("RTP port refuses packets"),
        "{}",
        tandem.log_tail(40)
    );
    ms1.kill().await;
}

// ---- a ringing call on a member that dies goes to another member ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_ringing_on_a_dead_member_is_answered_by_another() {
    // ms1 rings and never answers; it dies while the call rings there.
    let mut ms1 = media_server(Some("ring_uas.xml"), false).await;
    let ms2 = media_server(None, false).await;
    let tandem = tandem(ms1.addr(), ms2.addr()).await;
    let mut trunk = Sipp::scenario_file(&scenario("uac.xml"), Some(tandem.sip_addr()))
        .args(["-m", "1", "-d", "500"])
        .spawn();
    ms1.wait_count("_INVITE_Recv", 1, SECS(10)).await;
    ms1.kill().await;
    // The trunk sees one call, answered (by ms2), and hangs up normally.
    let out = trunk.wait_exit(SECS(30)).await;
    assert_eq!(
        (out.exit_code, out.successful, out.failed),
        (Some(0), 1, 0),
        "{}\n{}",
        out.log,
        tandem.log_tail(30)
    );
    let server = server_calls(&ms2, 1).await;
    assert_eq!(server.failed, 0, "{}", server.log);
    let cdr = &tandem.wait_cdrs(1, SECS(5)).await[0];
    assert_eq!(cdr.servers(), vec!["ms1", "ms2"], "{}", cdr.line);
    assert_eq!(cdr.get("reason"), "bye_caller", "{}", cdr.line);
    assert_eq!(cdr.num("resumes"), 0, "not a resume: it was never answered");
}

// ---- the media server's SIP lives, its RTP does not ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_media_is_detected_and_the_calls_move() {
    let bin = tandem_load();
    // ms1 answers SIP (calls and OPTIONS) but sends no RTP back.
    let ms1 = media_server(None, false).await;
    let ms2 = media_server(None, true).await;
    let tandem = tandem(ms1.addr(), ms2.addr()).await;
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("call.json");
    let out = run_call(
        &bin,
        &load_call_args(&tandem, 3, "6s", &json, &["--per-call"]),
        SECS(60),
    )
    .await;
    let said = said(&out, &tandem);
    assert!(out.status.success(), "{said}");
    let r = read_json(&json);
    assert_all_completed(&r, 3, &said);
    // Every caller heard its echo, from ms2.
    assert_eq!(r["rtp"]["calls_without_packets"], 0, "{}\n{said}", r["rtp"]);
    for c in r["per_call"].as_array().unwrap() {
        assert!(c["rtp"]["packets"].as_u64().unwrap() > 100, "{c}\n{said}");
    }
    assert_eq!(resumed(&tandem, "ok").await, 3.0, "{said}");
    // ms1's calls were hung up by Tandem (BYE), not left behind.
    let old = server_calls(&ms1, 3).await;
    assert_eq!(old.failed, 0, "{}", old.log);
    let new = server_calls(&ms2, 3).await;
    assert_eq!(new.failed, 0, "{}", new.log);
    for cdr in tandem.wait_cdrs(3, SECS(10)).await {
        assert_eq!(cdr.servers(), vec!["ms1", "ms2"], "{}", cdr.line);
    }
    assert!(
        tandem.log().contains("media silence"),
        "{}",
        tandem.log_tail(40)
    );
}

// ---- no false move: a held call is quiet on purpose ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_on_hold_stay_on_their_media_server() {
    // ms1 answers the hold re-INVITEs and sends no RTP; the callers keep
    // sending (music on hold): leg B silent, leg A not, for 1.5 s. Two
    // calls, so that without the hold exemption ms1's media would count
    // as dead (media_dead_min_calls = 2) and both would move.
    let ms1 = media_server(Some("reinvite_uas.xml"), false).await;
    let ms2 = media_server(None, true).await;
    let tandem = tandem(ms1.addr(), ms2.addr()).await;
    let (mut one, mut two) = (Uac::new(&tandem).await, Uac::new(&tandem).await);

    for uac in [&mut one, &mut two] {
        uac.invite("sendrecv").await;
        uac.reinvite("sendonly").await;
    }
    tokio::join!(one.send_rtp(75), two.send_rtp(75));
    for uac in [&mut one, &mut two] {
        uac.reinvite("sendrecv").await;
        uac.bye().await;
    }

    let cdrs = assert_stayed_on_ms1(&tandem, &ms1, &ms2, 2, "a held call moved").await;
    for cdr in cdrs {
        assert!(
            cdr.num("a_packets") >= 70,
            "the caller's RTP arrived: {}",
            cdr.line
        );
    }
}

// ---- no false move: one silent call may be silence suppression ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_silent_call_on_a_live_server_stays() {
    // ms1 answers SIP and sends no RTP; the caller talks for 1.5 s. One
    // silent call makes ms1 suspect, its probe is answered, and one call
    // is not enough to call its media dead (media_dead_min_calls = 2).
    let ms1 = media_server(None, false).await;
    let ms2 = media_server(None, true).await;
    let tandem = tandem(ms1.addr(), ms2.addr()).await;
    let mut uac = Uac::new(&tandem).await;
    uac.invite("sendrecv").await;
    uac.send_rtp(75).await;
    uac.bye().await;

    assert_stayed_on_ms1(&tandem, &ms1, &ms2, 1, "the call moved").await;
    assert!(
        tandem.log().contains("member suspect"),
        "the silence was seen (and cleared): {}",
        tandem.log_tail(30)
    );
}

/// A small trunk-side UAC: one call, hold/unhold, RTP on demand.
struct Uac {
    ep: Endpoint,
    events: sipcore::transaction::TuReceiver,
    rtp: UdpSocket,
    target: Target,
    dialog: Option<Dialog>,
    relay: Option<SocketAddr>,
    version: u32,
    branch: u32,
}

impl Uac {
    async fn new(tandem: &Tandem) -> Uac {
        let (ep, events) =
            Endpoint::bind("127.0.0.1:0".parse().unwrap(), &EndpointConfig::default()).unwrap();
        Uac {
            ep,
            events,
            rtp: UdpSocket::bind("127.0.0.1:0").await.unwrap(),
            target: Target {
                transport: TransportKind::Udp,
                addr: tandem.sip_addr(),
                connection: None,
            },
            dialog: None,
            relay: None,
            version: 0,
            branch: 0,
        }
    }

    fn via(&mut self) -> String {
        self.branch += 1;
        format!(
            "SIP/2.0/UDP {};branch=z9hG4bKhold{}",
            self.ep.local_addr(),
            self.branch
        )
    }

    fn sdp(&mut self, direction: &str) -> Bytes {
        self.version += 1;
        Bytes::from(format!(
            "v=0\r\no=uac 1 {} IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
             m=audio {} RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\na={direction}\r\n",
            self.version,
            self.rtp.local_addr().unwrap().port()
        ))
    }

    async fn invite(&mut self, direction: &str) {
        let me = self.ep.local_addr();
        let to = self.target.addr;
        let via = self.via();
        let body = self.sdp(direction);
        let invite = RequestBuilder::new(&Method::Invite, &format!("sip:1000@{to}"))
            .header("Via", &via)
            .header("Max-Forwards", "70")
            .header("From", &format!("<sip:uac@{me}>;tag=uac"))
            .header("To", &format!("<sip:1000@{to}>"))
            .header("Call-ID", &format!("uac-{}@127.0.0.1", me.port()))
            .header("CSeq", "1 INVITE")
            .header("Contact", &format!("<sip:uac@{me}>"))
            .body("application/sdp", body)
            .build();
        let invite = Message::parse(invite).unwrap();
        self.ep
            .layer()
            .send_request(invite.clone(), self.target)
            .unwrap();
        let ok = self.final_response().await;
        assert_eq!(ok.status(), Some(200));
        let answer = Sdp::parse(ok.body()).expect("SDP in the 200");
        let m = &answer.media()[0];
        self.relay = Some(SocketAddr::new(m.connection().unwrap(), m.port()));
        let dialog = Dialog::from_uac_response(&invite, &ok, &format!("<sip:uac@{me}>")).unwrap();
        let via = self.via();
        self.ep
            .send_raw(self.target, dialog.ack(1, &via).build())
            .unwrap();
        self.dialog = Some(dialog);
    }

    async fn reinvite(&mut self, direction: &str) {
        let via = self.via();
        let body = self.sdp(direction);
        let d = self.dialog.as_mut().unwrap();
        let req = d
            .request(&Method::Invite, &via)
            .body("application/sdp", body)
            .build();
        let req = Message::parse(req).unwrap();
        let seq = req.cseq().seq;
        self.ep.layer().send_request(req, self.target).unwrap();
        let ok = self.final_response().await;
        assert_eq!(ok.status(), Some(200), "re-INVITE {direction}");
        let via = self.via();
        let ack = self.dialog.as_ref().unwrap().ack(seq, &via).build();
        self.ep.send_raw(self.target, ack).unwrap();
    }

    async fn send_rtp(&mut self, packets: u16) {
        let relay = self.relay.unwrap();
        for seq in 0..packets {
            let mut p = vec![0x80, 8];
            p.extend_from_slice(&seq.to_be_bytes());
            p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
            p.extend_from_slice(&0x0bad_cafe_u32.to_be_bytes());
            p.extend([0xd5; 160]);
            self.rtp.send_to(&p, relay).await.unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn bye(&mut self) {
        let via = self.via();
        let bye = self
            .dialog
            .as_mut()
            .unwrap()
            .request(&Method::Bye, &via)
            .build();
        self.ep
            .layer()
            .send_request(Message::parse(bye).unwrap(), self.target)
            .unwrap();
        assert_eq!(self.final_response().await.status(), Some(200));
    }

    /// The next final response (provisional ones skipped), 5 s at most.
    async fn final_response(&mut self) -> Message {
        let until = Instant::now() + SECS(5);
        loop {
            match tokio::time::timeout_at(until, self.events.recv()).await {
                Ok(Some(TuEvent::Response { response, .. })) if response.status() >= Some(200) => {
                    return response
                }
                Ok(Some(TuEvent::Timeout { .. })) => panic!("request timed out"),
                Ok(Some(_)) => {}
                Ok(None) => panic!("endpoint closed"),
                Err(_) => panic!("no final response within 5 s"),
            }
        }
    }
}
