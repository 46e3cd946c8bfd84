//! Bad input at the edge: INVITEs Tandem must refuse (unknown source,
//! unsupported extension, no hops left, unparseable) get the right answer,
//! and Tandem keeps serving calls afterwards. And `tandem check` names the
//! key it does not know.

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

    let stranger = Peer::bind("127.0.0.2", sip).await;
    let resp = stranger
        .final_response(&stranger.invite("forbidden1", 70, ""), &tandem)
        .await;
    assert_eq!(Some(resp.status), Some(403), "unknown source");
    stranger.ack("forbidden1", &resp).await;

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
    for status in ["403", "420", "483"] {
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
