//! Bad input at the edge: INVITEs Tandem must refuse (unknown source,
//! unsupported extension, no hops left, unparseable) get the right answer,
//! and Tandem keeps serving calls afterwards. And `tandem check` names the
//! key it does not know.
//!
//! Reflection: nothing a stranger sends makes Tandem send more than one
//! packet anywhere — forged 2xx naming a victim in Contact, INVITEs from
//! sources that are no trunk (as if spoofed from a victim). Made-up method
//! names do not grow `/metrics`. In-dialog requests count only from the
//! call's own peers.

use std::net::SocketAddr;
use std::time::Duration;

use testkit::{Sipp, Tandem, TandemConfig};
use tokio::net::UdpSocket;
use tokio::time::Instant;

const TANDEM: &str = env!("CARGO_BIN_EXE_tandem");

/// A response as received: its status and header lines (a 400 to an
/// unparseable request echoes the broken header, so it may not parse).
struct Response {
    status: u16,
    text: String,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.text
            .split("\r\n")
            .take_while(|l| !l.is_empty())
            .filter_map(|l| l.split_once(':'))
            .find(|(n, _)| n.trim().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim())
    }
}

/// A raw SIP peer on its own socket.
struct Peer {
    sock: UdpSocket,
    tandem: SocketAddr,
}

impl Peer {
    async fn bind(ip: &str, tandem: SocketAddr) -> Peer {
        let sock = UdpSocket::bind((ip, 0))
            .await
            .unwrap_or_else(|e| panic!("bind {ip}: {e}"));
        Peer { sock, tandem }
    }

    fn addr(&self) -> SocketAddr {
        self.sock.local_addr().unwrap()
    }

    /// An INVITE from this peer; `headers` are extra header lines.
    fn invite(&self, id: &str, max_forwards: u32, headers: &str) -> String {
        let (me, to) = (self.addr(), self.tandem);
        let sdp = "v=0\r\no=p 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
                   m=audio 4000 RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\n";
        format!(
            "INVITE sip:1000@{to} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {me};branch=z9hG4bK{id};rport\r\n\
             Max-Forwards: {max_forwards}\r\n\
             From: <sip:peer@{me}>;tag=f{id}\r\n\
             To: <sip:1000@{to}>\r\n\
             Call-ID: {id}@bad-input\r\n\
             CSeq: 1 INVITE\r\n\
             Contact: <sip:peer@{me}>\r\n\
             {headers}\
             Content-Type: application/sdp\r\n\
             Content-Length: {}\r\n\r\n{sdp}",
            sdp.len()
        )
    }

    async fn send(&self, message: &str) {
        self.sock
            .send_to(message.as_bytes(), self.tandem)
            .await
            .unwrap();
    }

    /// The first lines of everything received until `wait` has passed.
    async fn received_within(&self, wait: Duration) -> Vec<String> {
        let until = Instant::now() + wait;
        let mut buf = vec![0u8; 65536];
        let mut got = Vec::new();
        while let Ok(r) = tokio::time::timeout_at(until, self.sock.recv_from(&mut buf)).await {
            let (n, _) = r.unwrap();
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            got.push(text.lines().next().unwrap_or_default().to_owned());
        }
        got
    }

    /// Sends `request` and returns the first final response (2 s limit).
    async fn final_response(&self, request: &str, tandem: &Tandem) -> Response {
        self.sock
            .send_to(request.as_bytes(), self.tandem)
            .await
            .unwrap();
        let until = Instant::now() + Duration::from_secs(2);
        let mut buf = vec![0u8; 65536];
        loop {
            let Ok(got) = tokio::time::timeout_at(until, self.sock.recv_from(&mut buf)).await
            else {
                panic!("no final response to\n{request}\n{}", tandem.log_tail(20));
            };
            let (n, _) = got.unwrap();
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            let status = text
                .strip_prefix("SIP/2.0 ")
                .and_then(|r| r.get(..3))
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| panic!("not a response: {text}"));
            if status >= 200 {
                return Response { status, text };
            }
        }
    }

    /// A request in the dialog of `invite(id, ..)` (this peer's From tag,
    /// `to` as answered), with a branch of its own.
    fn in_dialog(&self, method: &str, id: &str, cseq: u32, to: &str) -> String {
        let (me, tandem) = (self.addr(), self.tandem);
        format!(
            "{method} sip:tandem@{tandem} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {me};branch=z9hG4bK{id}{method}{cseq};rport\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:peer@{me}>;tag=f{id}\r\n\
             To: {to}\r\n\
             Call-ID: {id}@bad-input\r\n\
             CSeq: {cseq} {method}\r\n\
             Content-Length: 0\r\n\r\n"
        )
    }

    /// ACKs a non-2xx final response to `invite` (same branch).
    async fn ack(&self, id: &str, response: &Response) {
        let (me, to) = (self.addr(), self.tandem);
        let ack = format!(
            "ACK sip:1000@{to} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {me};branch=z9hG4bK{id};rport\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:peer@{me}>;tag=f{id}\r\n\
             To: {}\r\n\
             Call-ID: {id}@bad-input\r\n\
             CSeq: 1 ACK\r\n\
             Content-Length: 0\r\n\r\n",
            response.header("To").unwrap()
        );
        self.sock
            .send_to(ack.as_bytes(), self.tandem)
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_invites_are_refused_and_tandem_keeps_serving() {
    let mut ms = Sipp::builtin("uas", None).arg("-aa").spawn();
    ms.wait_ready(Duration::from_secs(5)).await;
    // Only 127.0.0.1 is a trunk; 127.0.0.2 (also loopback) is not.
    let tandem = Tandem::start(
        TANDEM,
        TandemConfig::new([("ms1", ms.addr())]).trunk_networks(["127.0.0.1/32"]),
    )
    .await;
    let sip = tandem.sip_addr();

    // Not a trunk: dropped without a word (the default).
    let stranger = Peer::bind("127.0.0.2", sip).await;
    stranger.send(&stranger.invite("forbidden1", 70, "")).await;
    let back = stranger.received_within(Duration::from_secs(2)).await;
    assert!(back.is_empty(), "unknown source answered: {back:?}");

    let trunk = Peer::bind("127.0.0.1", sip).await;
    let resp = trunk
        .final_response(
            &trunk.invite("rel1", 70, "Require: 100rel\r\nSupported: timer\r\n"),
            &tandem,
        )
        .await;
    assert_eq!(Some(resp.status), Some(420), "Require: 100rel");
    assert_eq!(
        resp.header("Unsupported"),
        Some("100rel"),
        "420 names the extension"
    );
    trunk.ack("rel1", &resp).await;

    let resp = trunk
        .final_response(&trunk.invite("hops1", 0, ""), &tandem)
        .await;
    assert_eq!(Some(resp.status), Some(483), "Max-Forwards: 0");
    trunk.ack("hops1", &resp).await;

    // A CSeq without a number: the request cannot be parsed, but it has
    // what a 400 needs.
    let malformed = trunk
        .invite("bad1", 70, "")
        .replace("CSeq: 1 INVITE", "CSeq: one INVITE");
    let resp = trunk.final_response(&malformed, &tandem).await;
    assert_eq!(Some(resp.status), Some(400), "malformed request");
    // Garbage is dropped without an answer.
    trunk
        .sock
        .send_to(b"\x00\x01garbage\r\n\r\n", sip)
        .await
        .unwrap();

    // None of it left a call behind, and a real call still goes through.
    let m = tandem.metrics().await;
    assert_eq!(
        m.value("tandem_calls_active", &[]).unwrap_or(0.0),
        0.0,
        "{}",
        m.text()
    );
    for status in ["420", "483"] {
        assert_eq!(
            m.get(
                "tandem_calls_total",
                &[("outcome", "rejected"), ("status", status)]
            ),
            1.0,
            "rejections counted by status: {}",
            m.text()
        );
    }
    let uac = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/sipp/uac.xml");
    let out = Sipp::scenario_file(&uac, Some(sip))
        .args(["-m", "2", "-r", "10", "-d", "200"])
        .run(Duration::from_secs(20))
        .await;
    assert_eq!(
        (out.exit_code, out.successful, out.failed),
        (Some(0), 2, 0),
        "{}\n{}",
        out.log,
        tandem.log_tail(20)
    );
    tandem
        .wait_metric(
            "tandem_sip_rejected_total",
            &[("status", "400")],
            1.0,
            Duration::from_secs(5),
        )
        .await;
    tandem
        .wait_metric("tandem_calls_active", &[], 0.0, Duration::from_secs(10))
        .await;
}

#[test]
fn check_names_an_unknown_key() {
    let addr = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
    // No admin token: its file is not written beside this config.
    let valid = TandemConfig::new([("ms1", addr(5070))])
        .admin_token(None)
        .render(addr(5060), addr(9090), 20000..=20063);
    let dir = tempfile::tempdir().unwrap();
    let check = |text: &str| {
        let path = dir.path().join("tandem.toml");
        std::fs::write(&path, text).unwrap();
        std::process::Command::new(TANDEM)
            .args(["check", "--config"])
            .arg(&path)
            .output()
            .expect("run tandem check")
    };
    let ok = check(&valid);
    assert!(
        ok.status.success(),
        "the generated config is valid: {}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let bad = valid.replace("[calls]\n", "[calls]\nmember_answer_timout_ms = 1000\n");
    let out = check(&bad);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "unknown key accepted: {stderr}");
    assert!(
        stderr.contains("member_answer_timout_ms"),
        "the error names the key: {stderr}"
    );
}

/// A 2xx to an INVITE Tandem never sent, as a stranger forges it: Via
/// names Tandem, Contact names the victim.
fn forged_2xx(tandem: SocketAddr, victim: SocketAddr, i: usize) -> String {
    format!(
        "SIP/2.0 200 OK\r\n\
         Via: SIP/2.0/UDP {tandem};branch=z9hG4bKforged{i};rport\r\n\
         From: <sip:tandem@{tandem}>;tag=t{i}\r\n\
         To: <sip:ms@{victim}>;tag=v{i}\r\n\
         Call-ID: forged{i}@reflection\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:victim@{victim}>\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

/// Tandem with one member that never answers (no probes) and only
/// 127.0.0.1 a trunk; T1 = 100 ms, so any retransmission shows soon.
async fn tandem_for_strangers(adjust: impl FnOnce(TandemConfig) -> TandemConfig) -> Tandem {
    let member: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let config = TandemConfig::new([("ms1", member)])
        .without_health()
        .trunk_networks(["127.0.0.1/32"])
        .t1_ms(100);
    Tandem::start(TANDEM, adjust(config)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_2xx_and_invites_from_strangers_reflect_nothing() {
    let tandem = tandem_for_strangers(|c| c).await;
    let sip = tandem.sip_addr();
    let victim = Peer::bind("127.0.0.4", sip).await;
    let stranger = Peer::bind("127.0.0.3", sip).await;
    for i in 0..5 {
        stranger.send(&forged_2xx(sip, victim.addr(), i)).await;
    }
    stranger.send(&stranger.invite("spoofed1", 70, "")).await;
    // 3 s at T1 = 100 ms: an ACK, a BYE and its retransmissions, or a 403
    // and its retransmissions, would all have arrived.
    let wait = Duration::from_secs(3);
    let (at_victim, back) =
        tokio::join!(victim.received_within(wait), stranger.received_within(wait));
    assert!(
        at_victim.is_empty(),
        "{} packets to the victim: {at_victim:?}",
        at_victim.len()
    );
    assert!(back.is_empty(), "answered the stranger: {back:?}");
    for (reason, n) in [
        ("unverified_response", 5.0),
        ("unknown_source_dropped", 1.0),
    ] {
        tandem
            .wait_metric(
                "tandem_sip_refused_total",
                &[("reason", reason)],
                n,
                Duration::from_secs(5),
            )
            .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_source_403_answers_once_and_never_again() {
    let tandem = tandem_for_strangers(|c| c.unknown_source("403")).await;
    let stranger = Peer::bind("127.0.0.3", tandem.sip_addr()).await;
    stranger.send(&stranger.invite("spoofed2", 70, "")).await;
    // Timer G would resend a 403 kept in a transaction at 100, 300, 700,
    // 1500 ms...; no 100 Trying either.
    let back = stranger.received_within(Duration::from_secs(3)).await;
    assert_eq!(back, ["SIP/2.0 403 Forbidden"], "{}", tandem.log_tail(20));
    tandem
        .wait_metric(
            "tandem_sip_refused_total",
            &[("reason", "unknown_source_403")],
            1.0,
            Duration::from_secs(5),
        )
        .await;
}

/// The sum of a counter over all its series with `label` in them.
fn sum_of(metrics: &str, name: &str, label: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn made_up_method_names_do_not_grow_metrics() {
    const NAMES: usize = 10_000;
    let tandem = tandem_for_strangers(|c| c).await;
    let sip = tandem.sip_addr();
    // Every series that exists at rest (endpoint and relay stats come on
    // their ticks).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before = tandem.metrics().await.text().len();
    let trunk = Peer::bind("127.0.0.1", sip).await;
    let stranger = Peer::bind("127.0.0.3", sip).await;
    for i in 0..NAMES {
        for (peer, who) in [(&trunk, "t"), (&stranger, "s")] {
            let me = peer.addr();
            let method = format!("X{who}{i:05}{:08x}", rand_u32(i));
            peer.send(&format!(
                "{method} sip:1000@{sip} SIP/2.0\r\n\
                 Via: SIP/2.0/UDP {me};branch=z9hG4bK{method};rport\r\n\
                 Max-Forwards: 70\r\nFrom: <sip:p@{me}>;tag=f{i}\r\n\
                 To: <sip:1000@{sip}>\r\nCall-ID: {method}@methods\r\n\
                 CSeq: 1 {method}\r\nContent-Length: 0\r\n\r\n"
            ))
            .await;
        }
        // Paced, so the socket buffers keep up on a busy machine.
        if i % 25 == 24 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    // Until the engine has taken everything it will take (30 s at most).
    let until = Instant::now() + Duration::from_secs(30);
    let mut seen = -1.0;
    let text = loop {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let text = tandem.metrics().await.text().to_owned();
        let now = sum_of(&text, "tandem_sip_requests_total", "direction=\"in\"");
        if now == seen || Instant::now() > until {
            break text;
        }
        seen = now;
    };
    let after = text.len();
    eprintln!(
        "/metrics: {before} bytes at rest, {after} bytes after {seen} requests with {} distinct methods",
        2 * NAMES
    );
    assert!(
        seen >= NAMES as f64,
        "too few requests taken to tell: {seen}\n{}",
        tandem.log_tail(20)
    );
    assert!(
        after < before + 8 * 1024,
        "/metrics grew from {before} to {after} bytes"
    );
    assert_eq!(
        sum_of(
            &text,
            "tandem_sip_requests_total",
            "method=\"other\",direction=\"in\""
        ) + sum_of(
            &text,
            "tandem_sip_requests_total",
            "direction=\"in\",method=\"other\""
        ),
        seen,
        "every made-up method counted as other"
    );
}

/// A fixed pseudo-random number per index (names differ beyond their
/// counter, as a fuzzer's would).
fn rand_u32(i: usize) -> u32 {
    (i as u32).wrapping_mul(2_654_435_761).rotate_left(13)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bye_from_outside_the_call_does_not_end_it() {
    let mut ms = Sipp::builtin("uas", None).arg("-aa").spawn();
    ms.wait_ready(Duration::from_secs(5)).await;
    // 127.0.0.1 is the call's trunk, 127.0.0.6 another trunk, 127.0.0.5
    // nobody.
    let tandem = Tandem::start(
        TANDEM,
        TandemConfig::new([("ms1", ms.addr())])
            .trunk_networks(["127.0.0.1/32"])
            .extra_toml("[[trunk]]\nname = \"other\"\nnetworks = [\"127.0.0.6/32\"]\n"),
    )
    .await;
    let sip = tandem.sip_addr();
    let trunk = Peer::bind("127.0.0.1", sip).await;
    let ok = trunk
        .final_response(&trunk.invite("dlg1", 70, ""), &tandem)
        .await;
    assert_eq!(ok.status, 200, "{}", ok.text);
    let to = ok.header("To").unwrap().to_owned();
    trunk.send(&trunk.in_dialog("ACK", "dlg1", 1, &to)).await;
    tandem
        .wait_metric("tandem_calls_active", &[], 1.0, Duration::from_secs(5))
        .await;

    // The right Call-ID and tags, from nobody: dropped; from another
    // trunk: one 403. The call goes on either way.
    let nobody = Peer::bind("127.0.0.5", sip).await;
    nobody.send(&nobody.in_dialog("BYE", "dlg1", 2, &to)).await;
    let other = Peer::bind("127.0.0.6", sip).await;
    other.send(&other.in_dialog("BYE", "dlg1", 2, &to)).await;
    let wait = Duration::from_secs(2);
    let (to_nobody, to_other) =
        tokio::join!(nobody.received_within(wait), other.received_within(wait));
    assert!(to_nobody.is_empty(), "{to_nobody:?}");
    assert_eq!(to_other, ["SIP/2.0 403 Forbidden"]);
    let m = tandem.metrics().await;
    assert_eq!(
        m.value("tandem_calls_active", &[]),
        Some(1.0),
        "{}",
        m.text()
    );
    assert_eq!(
        m.get(
            "tandem_sip_refused_total",
            &[("reason", "wrong_dialog_source")]
        ),
        1.0
    );

    // From the trunk it ends the call.
    let bye = trunk.in_dialog("BYE", "dlg1", 2, &to);
    assert_eq!(trunk.final_response(&bye, &tandem).await.status, 200);
    tandem
        .wait_metric("tandem_calls_active", &[], 0.0, Duration::from_secs(5))
        .await;
}
