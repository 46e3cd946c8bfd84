//! The registrar and location service end to end: the real `tandem`
//! binary with `[registrar]`, real phones (Debian's SIPp and baresip, and
//! the project's own UAC for the digest algorithms they lack) on
//! loopback, a SIPp trunk on 127.0.0.2. What is
//! proved, one test each:
//!
//! 1. SIPp registers with digest (401, then credentials), refreshes and
//!    unregisters; the 200 lists the binding; `/registrations` and
//!    `tandem_register_total` show it;
//! 2. a SIPp UAS registered with digest receives the trunk's call to its
//!    AOR; after it unregistered, the AOR gets 404;
//! 3. two baresip phones register and call each other through Tandem;
//!    audio flows both ways through the relay (the CDR counts packets on
//!    both legs); a trunk call to a phone by its AOR is answered;
//! 4. SHA-256 and SHA-512-256 (RFC 7616/8760) registrations with the
//!    project's UAC;
//! 5. a phone registered over TCP that listens nowhere receives its call
//!    over its own connection;
//! 6. a phone behind a masquerading router (a network-namespace lab),
//!    whose Contact is unreachable, receives its call over its flow;
//! 7. bindings survive a restart of a lone node (the snapshot file).
//!
//! Every process is killed when its handle drops; every wait has a
//! deadline.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use testkit::baresip::{call_with_tone, Phone, PhoneConfig};
use testkit::{wait_for, Sipp, SippProcess, Tandem, TandemConfig};

const TANDEM: &str = env!("CARGO_BIN_EXE_tandem");
const DEADLINE: Duration = Duration::from_secs(15);
const DOMAIN: &str = "example.test";
/// The users of `deploy/sipp/register_users.csv` and the phones.
const USERS: [(&str, &str); 3] = [("alice", "alicepw"), ("bob", "bobpw"), ("carol", "carolpw")];
/// Where SIPp phones send from: not the trunk's address.
const PHONE_IP: &str = "127.0.0.3";
/// The trunk's address. (baresip phones are on 127.0.0.1: their RTP
/// sockets are not bound to an address, so the kernel sends from
/// 127.0.0.1 whatever their SIP address, and the relay's latching wants
/// RTP from the address in the SDP or the phone's SIP source.)
const TRUNK_IP: &str = "127.0.0.2";

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn scenario(name: &str) -> PathBuf {
    workspace().join("deploy/sipp").join(name)
}

/// The credentials file as `tandem passwd` writes it, for USERS.
fn credentials() -> String {
    testkit::credentials_file(TANDEM, DOMAIN, &USERS)
}

/// The registrar's table and the rules: users by location, the rest to
/// the pool.
fn registrar_toml(algorithms: &str, extra: &str) -> String {
    format!(
        "[registrar]\ndomains = [\"{DOMAIN}\"]\ncredentials_file = \"credentials\"\n\
         auth_algorithms = [{algorithms}]\nmin_expires = 1\n{extra}\n\
         [[rule]]\nname = \"phones\"\nruri_user_regex = \"^(alice|bob|carol)$\"\nlocation = true\n\n\
         [[rule]]\nname = \"rest\"\ngroup = \"media\"\n"
    )
}

/// Tandem with the registrar; the trunk is TRUNK_IP alone, so that the
/// phones elsewhere on loopback are phones.
fn config(member: SocketAddr, algorithms: &str, extra: &str) -> TandemConfig {
    TandemConfig::new([("ms1", member)])
        .trunk_networks([format!("{TRUNK_IP}/32")])
        .file("credentials", &credentials(), 0o600)
        .extra_toml(&registrar_toml(algorithms, extra))
}

/// A media server that answers OPTIONS (and any call).
async fn media_server() -> SippProcess {
    let mut p = Sipp::builtin("uas", None).arg("-aa").spawn();
    p.wait_ready(Duration::from_secs(5)).await;
    p
}

/// `register_digest.xml` for the users of `register_users.csv` from
/// PHONE_IP, bindings for `expires` s.
fn register_digest(tandem: &Tandem, expires: u32) -> Sipp {
    Sipp::scenario_file(&scenario("register_digest.xml"), Some(tandem.sip_addr()))
        .local_ip(PHONE_IP)
        .args([
            "-inf",
            &scenario("register_users.csv").display().to_string(),
        ])
        .args([
            "-key",
            "domain",
            DOMAIN,
            "-key",
            "expires",
            &expires.to_string(),
        ])
}

#[tokio::test]
async fn sipp_registers_with_digest_refreshes_and_unregisters() {
    let ms = media_server().await;
    let tandem = Tandem::start(TANDEM, config(ms.addr(), "\"MD5\"", "")).await;
    // Registered and refreshed, not yet removed.
    let first = register_digest(&tandem, 300);
    let port = first.port();
    let out = first
        .args(["-set", "refresh", "yes", "-m", "2"])
        .trace_messages()
        .run(DEADLINE)
        .await;
    assert_eq!(
        out.exit_code,
        Some(0),
        "{}\n{}",
        out.log,
        tandem.log_tail(30)
    );
    assert_eq!(out.successful, 2);
    // Each user: two challenges, two authenticated REGISTERs, two 200s
    // listing the binding with its expiry.
    assert_eq!(
        out.messages.matches("SIP/2.0 401").count(),
        4,
        "{}",
        out.messages
    );
    assert_eq!(out.messages.matches("SIP/2.0 200").count(), 4);
    assert!(
        out.messages
            .contains(&format!("Contact: <sip:alice@{PHONE_IP}")),
        "{}",
        out.messages
    );
    let listed = tandem.registrations("alice@example.test").await;
    assert!(
        listed.contains(&format!("sip:alice@{PHONE_IP}")),
        "{listed}"
    );
    assert!(listed.contains("SIPp register_digest"), "{listed}");
    let m = tandem.metrics().await;
    assert_eq!(m.get("tandem_registrations_active", &[]), 2.0);
    assert_eq!(m.get("tandem_register_total", &[("result", "ok")]), 4.0);
    assert_eq!(
        m.get("tandem_register_total", &[("result", "challenged")]),
        4.0
    );

    // Now each registers once more (the same Contact: the same port)
    // and unregisters (Expires: 0).
    let out = register_digest(&tandem, 300)
        .with_port(port)
        .args(["-set", "unregister", "yes", "-m", "2"])
        .run(DEADLINE)
        .await;
    assert_eq!(out.exit_code, Some(0), "{}", out.log);
    let listed = tandem.registrations("alice@example.test").await;
    assert!(!listed.contains("sip:alice@"), "{listed}");
    tandem
        .wait_metric("tandem_registrations_active", &[], 0.0, DEADLINE)
        .await;
}

#[tokio::test]
async fn a_registered_sipp_uas_gets_the_trunks_call_then_404_after_unregister() {
    let ms = media_server().await;
    let tandem = Tandem::start(TANDEM, config(ms.addr(), "\"MD5\"", "")).await;
    // alice registers, answers calls to her AOR for 8 s (SIPp's built-in
    // uas as the out-of-call scenario, RTP echoed), then unregisters.
    let uas = register_digest(&tandem, 300)
        .args(["-set", "unregister", "yes", "-d", "8000"])
        .args(["-oocsn", "uas", "-rtp_echo", "-m", "1"])
        .spawn();
    uas.wait_count("_200_Recv", 1, DEADLINE).await;

    // The trunk calls alice.
    let call = Sipp::builtin("uac", Some(tandem.sip_addr()))
        .local_ip(TRUNK_IP)
        .args(["-s", "alice", "-m", "1", "-d", "500"])
        .run(DEADLINE)
        .await;
    assert_eq!(call.successful, 1, "{}\n{}", call.log, tandem.log_tail(30));
    let cdrs = tandem.wait_cdrs(1, DEADLINE).await;
    assert_eq!(cdrs[0].get("rule"), "phones");
    assert!(
        cdrs[0].get("servers").contains("phone:alice@example.test"),
        "{:?}",
        cdrs[0]
    );

    let mut uas = uas;
    let done = uas.wait_exit(DEADLINE).await;
    assert_eq!(done.exit_code, Some(0), "{}", done.log);
    let after = Sipp::scenario_file(&scenario("not_found_uac.xml"), Some(tandem.sip_addr()))
        .local_ip(TRUNK_IP)
        .args(["-s", "alice", "-m", "1"])
        .run(DEADLINE)
        .await;
    assert_eq!(
        after.successful,
        1,
        "{}\n{}",
        after.log,
        tandem.log_tail(20)
    );
}

fn phone(tandem: &Tandem, user: &str, ip: [u8; 4]) -> Phone {
    let password = USERS.iter().find(|(u, _)| *u == user).unwrap().1;
    let mut config = PhoneConfig::new(user, password, DOMAIN, tandem.sip_addr());
    config.local_addr = IpAddr::from(ip);
    Phone::start(config)
}

#[tokio::test(flavor = "multi_thread")]
async fn baresip_phones_register_and_call_each_other_and_a_trunk_calls_a_phone() {
    testkit::baresip::require_baresip();
    let ms = media_server().await;
    let tandem = Tandem::start(TANDEM, config(ms.addr(), "\"MD5\"", "")).await;
    let mut alice = phone(&tandem, "alice", [127, 0, 0, 1]);
    let mut bob = phone(&tandem, "bob", [127, 0, 0, 1]);
    alice.wait_registered(DEADLINE);
    bob.wait_registered(DEADLINE);

    tokio::task::block_in_place(|| {
        call_with_tone(&mut alice, &mut bob, DEADLINE, &|| tandem.log_tail(30))
    });
    let cdrs = tandem.wait_cdrs(1, DEADLINE).await;
    let cdr = &cdrs[0];
    assert_eq!(cdr.get("source"), "phone", "{cdr:?}");
    // Through the relay both ways: packets received on leg A (alice's)
    // and on leg B (bob's).
    assert!(
        cdr.num("a_packets") > 50 && cdr.num("b_packets") > 50,
        "{cdr:?}"
    );

    // The trunk calls bob by his AOR; bob answers, the trunk hangs up.
    let trunk = Sipp::builtin("uac", Some(tandem.sip_addr()))
        .local_ip(TRUNK_IP)
        .args(["-s", "bob", "-m", "1", "-d", "1000"])
        .spawn();
    tokio::task::block_in_place(|| {
        bob.wait_incoming(DEADLINE);
        bob.answer();
        bob.wait_established(DEADLINE);
    });
    let mut trunk = trunk;
    let out = trunk.wait_exit(DEADLINE).await;
    assert_eq!(out.successful, 1, "{}\n{}", out.log, tandem.log_tail(30));
    let cdrs = tandem.wait_cdrs(2, DEADLINE).await;
    assert_eq!(cdrs[1].get("source"), "trunk");
    assert!(
        cdrs[1].get("servers").contains("phone:bob@example.test"),
        "{:?}",
        cdrs[1]
    );
}

#[tokio::test]
async fn sha_256_and_sha_512_256_registrations_with_the_projects_uac() {
    let ms = media_server().await;
    let tandem = Tandem::start(
        TANDEM,
        config(ms.addr(), "\"SHA-512-256\", \"SHA-256\", \"MD5\"", ""),
    )
    .await;
    for (user, password, algorithm) in [
        ("alice", "alicepw", "SHA-256"),
        ("bob", "bobpw", "SHA-512-256"),
        ("carol", "carolpw", "MD5"),
    ] {
        let r = testkit::uac::register(
            tandem.sip_addr(),
            user,
            DOMAIN,
            password,
            Some(algorithm),
            300,
            testkit::free_port(),
        )
        .await
        .unwrap();
        assert_eq!(
            (r.status, r.algorithm_used.as_str()),
            (200, algorithm),
            "{r:?}"
        );
        assert_eq!(r.contacts.len(), 1, "{r:?}");
    }
    // A wrong password is refused, whatever the algorithm.
    let r = testkit::uac::register(
        tandem.sip_addr(),
        "alice",
        DOMAIN,
        "not-it",
        Some("SHA-256"),
        300,
        testkit::free_port(),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 403, "{r:?}");
    let m = tandem.metrics().await;
    assert_eq!(m.get("tandem_registrations_active", &[]), 3.0);
    assert!(m.get("tandem_auth_failures_total", &[]) >= 1.0);
}

/// A phone over TCP that has no listening socket: it registers over one
/// connection and must get its INVITE on that same connection.
#[tokio::test]
async fn a_tcp_phone_without_a_listener_gets_its_call_over_its_connection() {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    let ms = media_server().await;
    let tandem = Tandem::start(TANDEM, config(ms.addr(), "\"MD5\"", "")).await;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.6:0".parse().unwrap()).unwrap();
    let stream = socket.connect(tandem.sip_addr()).await.unwrap();
    let local = stream.local_addr().unwrap();
    let (rd, mut wr) = stream.into_split();
    let mut rd = BufReader::new(rd);

    /// Reads one SIP message (headers and a body of Content-Length).
    async fn read_message(rd: &mut BufReader<tokio::net::tcp::OwnedReadHalf>) -> String {
        let mut head = String::new();
        loop {
            let mut line = String::new();
            let n = tokio::time::timeout(DEADLINE, rd.read_line(&mut line))
                .await
                .expect("a message in time")
                .unwrap();
            assert!(n > 0, "connection closed");
            if line == "\r\n" && head.is_empty() {
                continue; // a keep-alive
            }
            head.push_str(&line);
            if line == "\r\n" {
                break;
            }
        }
        let len: usize = head
            .lines()
            .find_map(|l| {
                let (n, v) = l.split_once(':')?;
                (n.eq_ignore_ascii_case("content-length") || n.eq_ignore_ascii_case("l"))
                    .then(|| v.trim().parse().ok())?
            })
            .unwrap_or(0);
        let mut body = vec![0u8; len];
        rd.read_exact(&mut body).await.unwrap();
        head + &String::from_utf8_lossy(&body)
    }
    fn header<'a>(msg: &'a str, name: &str) -> &'a str {
        msg.lines()
            .find_map(|l| {
                let (n, v) = l.split_once(':')?;
                n.eq_ignore_ascii_case(name).then_some(v.trim())
            })
            .unwrap_or_else(|| panic!("no {name} in\n{msg}"))
    }

    // The Contact names a port nothing listens on: only the connection
    // reaches this phone.
    let register = |cseq: u32, auth: Option<String>| {
        format!(
            "REGISTER sip:{DOMAIN} SIP/2.0\r\nVia: SIP/2.0/TCP {local};branch=z9hG4bKt{cseq};rport\r\n\
             Max-Forwards: 70\r\nFrom: <sip:carol@{DOMAIN}>;tag=t1\r\nTo: <sip:carol@{DOMAIN}>\r\n\
             Call-ID: tcp-phone\r\nCSeq: {cseq} REGISTER\r\n\
             Contact: <sip:carol@127.0.0.6:9;transport=tcp>\r\nExpires: 300\r\n{}Content-Length: 0\r\n\r\n",
            auth.map(|a| format!("Authorization: {a}\r\n")).unwrap_or_default()
        )
    };
    wr.write_all(register(1, None).as_bytes()).await.unwrap();
    let challenge = read_message(&mut rd).await;
    assert!(challenge.starts_with("SIP/2.0 401"), "{challenge}");
    let c = sipcore::digest::Challenge::parse(header(&challenge, "WWW-Authenticate")).unwrap();
    let auth = sipcore::digest::authorization(
        &c,
        "carol",
        "carolpw",
        "REGISTER",
        &format!("sip:{DOMAIN}"),
        "0a4f113b",
        1,
    );
    wr.write_all(register(2, Some(auth)).as_bytes())
        .await
        .unwrap();
    let ok = read_message(&mut rd).await;
    assert!(ok.starts_with("SIP/2.0 200"), "{ok}");

    // The trunk calls carol: the INVITE comes down our connection.
    let mut trunk = Sipp::builtin("uac", Some(tandem.sip_addr()))
        .local_ip(TRUNK_IP)
        .args(["-s", "carol", "-m", "1", "-d", "500"])
        .spawn();
    let invite = read_message(&mut rd).await;
    assert!(
        invite.starts_with("INVITE sip:carol@127.0.0.6:9"),
        "{invite}"
    );
    // Answer it (SDP pointing at a port of ours), take ACK and BYE.
    let sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.6\r\ns=-\r\nc=IN IP4 127.0.0.6\r\nt=0 0\r\n\
               m=audio 40006 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";
    let vias: String = invite
        .lines()
        .filter(|l| l.to_ascii_lowercase().starts_with("via:"))
        .map(|l| format!("{l}\r\n"))
        .collect();
    let answer = format!(
        "SIP/2.0 200 OK\r\n{vias}From: {}\r\nTo: {};tag=c1\r\nCall-ID: {}\r\nCSeq: {}\r\n\
         Contact: <sip:carol@127.0.0.6:9;transport=tcp>\r\nContent-Type: application/sdp\r\n\
         Content-Length: {}\r\n\r\n{sdp}",
        header(&invite, "From"),
        header(&invite, "To"),
        header(&invite, "Call-ID"),
        header(&invite, "CSeq"),
        sdp.len()
    );
    wr.write_all(answer.as_bytes()).await.unwrap();
    let ack = read_message(&mut rd).await;
    assert!(ack.starts_with("ACK "), "{ack}");
    let bye = read_message(&mut rd).await;
    assert!(bye.starts_with("BYE "), "{bye}");
    let bye_vias: String = bye
        .lines()
        .filter(|l| l.to_ascii_lowercase().starts_with("via:"))
        .map(|l| format!("{l}\r\n"))
        .collect();
    let bye_ok = format!(
        "SIP/2.0 200 OK\r\n{bye_vias}From: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {}\r\nContent-Length: 0\r\n\r\n",
        header(&bye, "From"),
        header(&bye, "To"),
        header(&bye, "Call-ID"),
        header(&bye, "CSeq")
    );
    wr.write_all(bye_ok.as_bytes()).await.unwrap();
    let out = trunk.wait_exit(DEADLINE).await;
    assert_eq!(out.successful, 1, "{}\n{}", out.log, tandem.log_tail(30));
}

#[tokio::test]
async fn bindings_survive_a_restart_of_a_lone_node() {
    let ms = media_server().await;
    let dir = tempfile::tempdir().unwrap();
    let snapshot = dir.path().join("bindings.jsonl");
    let extra = format!("snapshot_file = \"{}\"", snapshot.display());
    let cfg = config(ms.addr(), "\"MD5\"", &extra);
    let tandem = Tandem::start(TANDEM, cfg.clone()).await;
    let out = register_digest(&tandem, 600)
        .args(["-m", "2"])
        .run(DEADLINE)
        .await;
    assert_eq!(out.successful, 2, "{}", out.log);
    // Written within a few seconds of the change.
    wait_for("the snapshot file", DEADLINE, || {
        let snapshot = snapshot.clone();
        async move {
            let text = std::fs::read_to_string(&snapshot).unwrap_or_default();
            if text.contains("alice@example.test") && text.contains("bob@example.test") {
                Ok(())
            } else {
                Err(text)
            }
        }
    })
    .await;
    drop(tandem); // killed (SIGKILL): nothing written at exit
    let tandem = Tandem::start(TANDEM, cfg).await;
    let listed = tandem.registrations("bob@example.test").await;
    assert!(listed.contains(&format!("sip:bob@{PHONE_IP}")), "{listed}");
    assert_eq!(
        tandem
            .metrics()
            .await
            .get("tandem_registrations_active", &[]),
        2.0
    );
}

/// A baresip phone behind a masquerading router (testkit's NAT lab): its
/// Contact is a private address Tandem cannot reach; the trunk's call
/// goes to the flow its REGISTER came on, and the phone's RTP (from the
/// router's address, not the one in its SDP) is relayed.
#[tokio::test(flavor = "multi_thread")]
async fn a_phone_behind_nat_gets_its_call_over_its_flow() {
    testkit::baresip::require_baresip();
    let lab = testkit::natlab::NatLab::new().expect("NAT lab (needs root, iproute2, nftables)");
    let ms = media_server().await;
    let server = IpAddr::from(lab.server_addr());
    let tandem = Tandem::start(TANDEM, config(ms.addr(), "\"MD5\"", "").listen_ip(server)).await;
    let mut config = PhoneConfig::new("alice", "alicepw", DOMAIN, tandem.sip_addr());
    config.local_addr = IpAddr::from(lab.phone_addr());
    config.netns = Some(lab.phone_ns());
    let mut alice = Phone::start(config);
    alice.wait_registered(DEADLINE);
    // Registered with its private Contact, from the router's address.
    let listed = tandem.registrations("alice@example.test").await;
    assert!(
        listed.contains(&format!("@{}", lab.phone_addr())),
        "{listed}"
    );
    assert!(
        listed.contains(&format!("\"source\": \"{}:", lab.public_addr())),
        "{listed}"
    );

    let trunk = Sipp::builtin("uac", Some(tandem.sip_addr()))
        .local_ip(TRUNK_IP)
        .args(["-s", "alice", "-m", "1", "-d", "2000"])
        .spawn();
    tokio::task::block_in_place(|| {
        alice.wait_incoming(DEADLINE);
        alice.answer();
        alice.wait_established(DEADLINE);
    });
    let mut trunk = trunk;
    let out = trunk.wait_exit(DEADLINE).await;
    assert_eq!(out.successful, 1, "{}\n{}", out.log, tandem.log_tail(30));
    let cdrs = tandem.wait_cdrs(1, DEADLINE).await;
    // The phone's tone reached the relay on leg B through the NAT.
    assert!(cdrs[0].num("b_packets") > 20, "{:?}", cdrs[0]);
}

/// Alice has two phones (two SIPp UAS registered to the same AOR): a call
/// to her rings both at once; both answer at once, the first 200 wins
/// and the other phone's 200 is ACKed and hung up (no call left on it).
#[tokio::test]
async fn a_call_to_an_aor_with_two_phones_rings_both_and_one_wins() {
    let ms = media_server().await;
    let tandem = Tandem::start(TANDEM, config(ms.addr(), "\"MD5\"", "")).await;
    let mut phones = Vec::new();
    for _ in 0..2 {
        // Each: alice only (-m 1), registered for 20 s, answering calls.
        let p = register_digest(&tandem, 300)
            .args(["-set", "unregister", "yes", "-d", "20000"])
            .args(["-oocsn", "uas", "-m", "1"])
            .trace_messages()
            .spawn();
        p.wait_count("_200_Recv", 1, DEADLINE).await;
        phones.push(p);
    }
    let listed = tandem.registrations("alice@example.test").await;
    assert_eq!(listed.matches("\"contact\"").count(), 2, "{listed}");

    let call = Sipp::builtin("uac", Some(tandem.sip_addr()))
        .local_ip(TRUNK_IP)
        .args(["-s", "alice", "-m", "1", "-d", "1000"])
        .run(DEADLINE)
        .await;
    assert_eq!(call.successful, 1, "{}\n{}", call.log, tandem.log_tail(30));
    // Both phones were rung, and both saw their dialog end with a BYE:
    // the winner's from the trunk's hang-up, the loser's right after its
    // 200 ("call completed elsewhere").
    for p in &phones {
        wait_for("the phone's INVITE and BYE", DEADLINE, || {
            let text =
                std::fs::read_to_string(p.workdir().join("messages.log")).unwrap_or_default();
            async move {
                let invites = text.matches("INVITE sip:alice@").count();
                let byes = text.matches("BYE sip:").count();
                if invites >= 1 && byes >= 1 {
                    Ok(())
                } else {
                    Err(format!("{invites} INVITEs, {byes} BYEs"))
                }
            }
        })
        .await;
    }
    let cdrs = tandem.wait_cdrs(1, DEADLINE).await;
    assert_eq!(cdrs.len(), 1);
    let elsewhere = phones
        .iter()
        .map(|p| std::fs::read_to_string(p.workdir().join("messages.log")).unwrap_or_default())
        .filter(|t| t.contains("Call completed elsewhere"))
        .count();
    assert_eq!(elsewhere, 1, "exactly one phone lost the race");
}

/// Registered phones are trusted by the gate like trunks: a phone that
/// registered may send more than a stranger's rate (an office's phones
/// behind one NAT address booting together), while a stranger at the
/// same pace is cut off.
#[tokio::test]
async fn a_registered_phone_is_not_rate_limited_as_a_stranger() {
    let ms = media_server().await;
    let tandem = Tandem::start(
        TANDEM,
        config(ms.addr(), "\"MD5\"", "")
            .extra_toml("[limits]\nstranger_rate = 1\nstranger_burst = 6\nban_s = 60\n"),
    )
    .await;
    // alice registers from PHONE_IP (2 requests), then the gate learns
    // the address.
    let out = register_digest(&tandem, 300)
        .args(["-m", "1"])
        .run(DEADLINE)
        .await;
    assert_eq!(out.successful, 1, "{}", out.log);
    tokio::time::sleep(Duration::from_secs(3)).await;
    // 20 registrations at 100/s from there (40 requests, far over a
    // stranger's burst of 6 at 1/s): all answered.
    let out = register_digest(&tandem, 300)
        .args(["-m", "20", "-r", "100"])
        .run(DEADLINE)
        .await;
    assert_eq!(out.successful, 20, "{}\n{}", out.log, tandem.log_tail(20));
    let m = tandem.metrics().await;
    assert_eq!(
        m.get("tandem_sip_dropped_total", &[("reason", "banned")])
            + m.get("tandem_sip_dropped_total", &[("reason", "rate")]),
        0.0,
        "{}",
        m.text()
    );
}

/// A phone calls a media-server group (not a phone): its INVITE is
/// challenged (407) and answered by a member; that member is killed
/// mid-call and the call resumes on the other one while the phone stays
/// on the line and hangs up normally later.
#[tokio::test(flavor = "multi_thread")]
async fn a_phones_call_to_a_group_survives_its_media_server() {
    testkit::baresip::require_baresip();
    let mut ms1 = Sipp::builtin("uas", None)
        .args(["-aa", "-rtp_echo"])
        .spawn();
    ms1.wait_ready(Duration::from_secs(5)).await;
    let mut ms2 = Sipp::builtin("uas", None)
        .args(["-aa", "-rtp_echo"])
        .spawn();
    ms2.wait_ready(Duration::from_secs(5)).await;
    let cfg = TandemConfig::new([("ms1", ms1.addr()), ("ms2", ms2.addr())])
        .strategy("sequential")
        .trunk_networks([format!("{TRUNK_IP}/32")])
        .file("credentials", &credentials(), 0o600)
        .extra_toml(&registrar_toml("\"MD5\"", ""));
    let tandem = Tandem::start(TANDEM, cfg).await;
    let mut alice = phone(&tandem, "alice", [127, 0, 0, 1]);
    alice.wait_registered(DEADLINE);
    tokio::task::block_in_place(|| {
        alice.dial(&format!("sip:100@{DOMAIN}"));
        alice.wait_established(DEADLINE);
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    ms1.kill().await;
    tandem
        .wait_metric(
            "tandem_calls_resumed_total",
            &[("from", "ms1"), ("to", "ms2"), ("outcome", "ok")],
            1.0,
            DEADLINE,
        )
        .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    tokio::task::block_in_place(|| {
        alice.hangup();
        alice.wait_closed(DEADLINE);
    });
    let cdrs = tandem.wait_cdrs(1, DEADLINE).await;
    let cdr = &cdrs[0];
    assert_eq!(cdr.get("source"), "phone", "{cdr:?}");
    assert_eq!(cdr.servers(), ["ms1", "ms2"], "{cdr:?}");
    assert_eq!(cdr.get("reason"), "bye_caller", "{cdr:?}");
}
