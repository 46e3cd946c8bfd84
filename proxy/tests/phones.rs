//! Real phones and a registrar: the harnesses of the registrar's proof
//! (issue 12), validated against Kamailio 5.6 as the registrar
//! (`loadtest/bench/register/kamailio-registrar.cfg`: registrar + usrloc +
//! auth, digest MD5 with qop=auth, bindings in memory) so that the same
//! tests run against Tandem by swapping the target.
//!
//! * two Debian `baresip` phones register with digest (over UDP, and
//!   over TCP), call each other, and a tone flows both ways (RTP counted
//!   by each phone, and the audio each one decoded is not silence); a
//!   wrong password is refused; a SIPp UAC from the trunk side calls a
//!   phone by its AOR and its speech reaches the phone;
//! * SIPp's `register_digest.xml` registers, refreshes and unregisters
//!   with digest, and as a registered UAS (`-oocsn uas`) receives a call
//!   to its AOR; after it unregistered the AOR gets 404;
//! * the NAT lab (`testkit::natlab`) masquerades a phone's traffic and
//!   hides its private address; a baresip phone behind it registers and
//!   receives a call over the flow its REGISTER opened (UDP), or over its
//!   own connection (TCP).
//!
//! Kamailio runs in the foreground with its files in a temporary
//! directory and is killed by its process group on drop. Every wait has
//! a deadline. Skipped (with a message) only when Kamailio is not
//! installed; `scripts/test` installs it, baresip, SIPp and nftables.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use testkit::baresip::{call_with_tone, Phone, PhoneConfig, Transport};
use testkit::natlab::NatLab;
use testkit::{free_port, Sipp};

/// Every wait in this file; generous, never a speed check.
const DEADLINE: Duration = Duration::from_secs(15);
const KAMAILIO: &str = "/usr/sbin/kamailio";
const DOMAIN: &str = "example.test";
/// Users and passwords known to the registrar.
const USERS: [(&str, &str); 2] = [("alice", "alicepw"), ("bob", "bobpw")];

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn kamailio_installed() -> bool {
    if Path::new(KAMAILIO).exists() {
        return true;
    }
    eprintln!("kamailio not installed: skipped (./scripts/test installs it)");
    false
}

/// MD5(user:realm:password), hex, as `md5sum` prints it.
fn ha1(user: &str, password: &str) -> String {
    let mut child = Command::new("md5sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run md5sum");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{user}:{DOMAIN}:{password}").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

/// Kamailio as the registrar, in the foreground; its process group is
/// killed on drop (its children too).
struct Registrar {
    child: std::process::Child,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl Registrar {
    /// Listens on `ip` (UDP and TCP, one free port) with USERS'
    /// credentials (HA1 hashes).
    fn start(ip: IpAddr) -> Registrar {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("db");
        std::fs::create_dir_all(&db).unwrap();
        let mut creds = String::from(
            "key_name(str) key_type(int) value_type(int) key_value(str) expires(int)\n",
        );
        for (user, password) in USERS {
            creds += &format!("{user}:0:0:{}:0\n", ha1(user, password));
        }
        std::fs::write(db.join("credentials"), creds).unwrap();
        let run = dir.path().join("run");
        std::fs::create_dir_all(&run).unwrap();
        let addr = SocketAddr::new(ip, free_port());
        let log = std::fs::File::create(dir.path().join("kamailio.log")).unwrap();
        let cfg = workspace().join("loadtest/bench/register/kamailio-registrar.cfg");
        let child = Command::new(KAMAILIO)
            .args(["-DD", "-E", "-f"])
            .arg(&cfg)
            .args(["-l", &format!("udp:{addr}"), "-l", &format!("tcp:{addr}")])
            .args([
                "-n", "1", "-N", "1", "-m", "32", "-M", "4", "-A", "WITH_LOG",
            ])
            .arg("-A")
            .arg(format!("CREDS_DB=\"text://{}\"", db.display()))
            .arg("-Y")
            .arg(&run)
            .arg("-w")
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .process_group(0)
            .spawn()
            .expect("start kamailio");
        let mut registrar = Registrar { child, addr, dir };
        registrar.wait_ready();
        registrar
    }

    fn log_tail(&self, lines: usize) -> String {
        let text =
            std::fs::read_to_string(self.dir.path().join("kamailio.log")).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Waits until Kamailio has bound its UDP port.
    fn wait_ready(&mut self) {
        let until = Instant::now() + DEADLINE;
        while UdpSocket::bind(self.addr).is_ok() {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("kamailio exited ({status}):\n{}", self.log_tail(30));
            }
            assert!(
                Instant::now() < until,
                "kamailio not listening on {} within {DEADLINE:?}:\n{}",
                self.addr,
                self.log_tail(30)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Registrar {
    fn drop(&mut self) {
        // Its own process group (process_group(0)): the group id is its pid.
        let _ = Command::new("kill")
            .args(["-9", "--", &format!("-{}", self.child.id())])
            .status();
        let _ = self.child.wait();
    }
}

fn phone(registrar: &Registrar, user: &str, transport: Transport) -> Phone {
    let password = USERS.iter().find(|(u, _)| *u == user).unwrap().1;
    let mut config = PhoneConfig::new(user, password, DOMAIN, registrar.addr);
    config.transport = transport;
    Phone::start(config)
}

/// alice and bob register over `transport`; the first one named calls
/// the other.
fn two_phones_register_and_call(transport: Transport, caller: &str) {
    if !kamailio_installed() {
        return;
    }
    let registrar = Registrar::start(IpAddr::from([127, 0, 0, 1]));
    let mut alice = phone(&registrar, "alice", transport);
    let mut bob = phone(&registrar, "bob", transport);
    alice.wait_registered(DEADLINE);
    bob.wait_registered(DEADLINE);
    if caller == "alice" {
        call_with_tone(&mut alice, &mut bob, DEADLINE, &|| registrar.log_tail(30));
    } else {
        call_with_tone(&mut bob, &mut alice, DEADLINE, &|| registrar.log_tail(30));
    }
}

#[test]
fn baresip_registers_and_calls_via_kamailio() {
    two_phones_register_and_call(Transport::Udp, "alice");
}

#[test]
fn baresip_over_tcp_registers_and_calls_via_kamailio() {
    two_phones_register_and_call(Transport::Tcp, "bob");
}

#[test]
fn baresip_with_a_wrong_password_is_refused() {
    if !kamailio_installed() {
        return;
    }
    let registrar = Registrar::start(IpAddr::from([127, 0, 0, 1]));
    let config = PhoneConfig::new("alice", "not-the-password", DOMAIN, registrar.addr);
    let mut alice = Phone::start(config);
    let until = Instant::now() + DEADLINE;
    loop {
        let failed = alice
            .events()
            .iter()
            .any(|e| e.get("type").and_then(|t| t.as_str()) == Some("REGISTER_FAIL"));
        let registered = alice
            .events()
            .iter()
            .any(|e| e.get("type").and_then(|t| t.as_str()) == Some("REGISTER_OK"));
        assert!(!registered, "registered with a wrong password");
        if failed {
            break;
        }
        assert!(
            Instant::now() < until,
            "no REGISTER_FAIL\n{}",
            alice.log_tail(30)
        );
        alice.poll_events(Duration::from_millis(200));
    }
}

/// One call from the trunk side: `uac` (a SIPp UAC at the registrar)
/// calls `user`'s AOR; it must succeed. The `callee` phone's log goes
/// into the failure message.
async fn trunk_call(uac: Sipp, registrar: &Registrar, user: &str, callee: Option<&Phone>) {
    let call = uac.args(["-s", user, "-m", "1"]).run(2 * DEADLINE).await;
    assert_eq!(
        call.successful,
        1,
        "{}\n{}\n{}",
        call.log,
        registrar.log_tail(30),
        callee.map(|p| p.log_tail(30)).unwrap_or_default()
    );
}

fn scenario(name: &str) -> PathBuf {
    workspace().join("deploy/sipp").join(name)
}

/// `register_digest.xml` for the users of `register_users.csv` (alice
/// first) at DOMAIN, bindings for 300 s; add `-set`, `-m`.
fn register_digest(registrar: &Registrar) -> Sipp {
    Sipp::scenario_file(&scenario("register_digest.xml"), Some(registrar.addr))
        .args([
            "-inf",
            &scenario("register_users.csv").display().to_string(),
        ])
        .args(["-key", "domain", DOMAIN, "-key", "expires", "300"])
        .args(["-auth_uri", DOMAIN])
}

#[tokio::test]
async fn sipp_registers_with_digest_refreshes_and_unregisters_via_kamailio() {
    if !kamailio_installed() {
        return;
    }
    let registrar = Registrar::start(IpAddr::from([127, 0, 0, 1]));
    let out = register_digest(&registrar)
        .args(["-set", "refresh", "yes", "-set", "unregister", "yes"])
        .args(["-m", "2"])
        .trace_messages()
        .run(DEADLINE)
        .await;
    assert_eq!(
        out.exit_code,
        Some(0),
        "{}\n{}",
        out.log,
        registrar.log_tail(30)
    );
    assert_eq!(out.successful, 2, "{}", out.log);
    // Each user: three challenges, three authenticated REGISTERs.
    assert_eq!(out.messages.matches("SIP/2.0 401").count(), 6);
    assert_eq!(out.messages.matches("Authorization: Digest").count(), 6);
    // The digest uri is the Request-URI.
    assert_eq!(
        out.messages
            .matches(&format!("uri=\"sip:{DOMAIN}\""))
            .count(),
        6
    );
    assert_eq!(out.messages.matches("Expires: 0").count(), 4);
}

#[tokio::test]
async fn sipp_registered_uas_receives_a_call_to_its_aor_then_404_after_unregister() {
    if !kamailio_installed() {
        return;
    }
    let registrar = Registrar::start(IpAddr::from([127, 0, 0, 1]));
    // alice (the first user) registers, stays registered for 8 s while
    // the out-of-call scenario (SIPp's built-in uas, echoing RTP)
    // answers calls to her AOR, then unregisters.
    let uas = register_digest(&registrar)
        .args(["-set", "unregister", "yes", "-d", "8000"])
        .args(["-oocsn", "uas", "-rtp_echo", "-m", "1"])
        .spawn();
    uas.wait_count("_401_Recv", 1, DEADLINE).await;
    uas.wait_count("_200_Recv", 1, DEADLINE).await;

    trunk_call(
        Sipp::builtin("uac", Some(registrar.addr)).args(["-d", "500"]),
        &registrar,
        "alice",
        None,
    )
    .await;

    let mut uas = uas;
    let registered = uas.wait_exit(DEADLINE).await;
    assert_eq!(registered.exit_code, Some(0), "{}", registered.log);

    let after = Sipp::scenario_file(&scenario("not_found_uac.xml"), Some(registrar.addr))
        .args(["-s", "alice", "-m", "1"])
        .run(DEADLINE)
        .await;
    assert_eq!(
        after.successful,
        1,
        "{}\n{}",
        after.log,
        registrar.log_tail(30)
    );
}

/// A Python program run in the phone's namespace: sends `ping` from its
/// private address to the server, prints the reply and its source, then
/// prints whatever else reaches it within 1.5 s (nothing, or the
/// server's direct datagram had the private address been reachable).
const NAT_PROBE: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], int(sys.argv[2])))
s.settimeout(5)
s.sendto(b"ping", (sys.argv[3], int(sys.argv[4])))
d, a = s.recvfrom(100)
print("reply", d.decode(), a[0], flush=True)
s.settimeout(1.5)
try:
    d, a = s.recvfrom(100)
    print("stray", d.decode(), a[0], flush=True)
except socket.timeout:
    print("nothing else", flush=True)
"#;

#[test]
fn nat_lab_masquerades_the_phone_and_hides_its_address() {
    let lab = NatLab::new().expect("NAT lab (needs root, iproute2, nftables)");
    let server = UdpSocket::bind((lab.server_addr(), 0)).unwrap();
    server
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let private_port = 40_000;
    let probe = lab
        .run_in_phone("python3")
        .args(["-c", NAT_PROBE, &lab.phone_addr().to_string()])
        .arg(private_port.to_string())
        .arg(lab.server_addr().to_string())
        .arg(server.local_addr().unwrap().port().to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    let mut buf = [0u8; 100];
    let (n, from) = server.recv_from(&mut buf).expect("the phone's ping");
    assert_eq!(&buf[..n], b"ping");
    // Masqueraded: the router's public address, not the phone's.
    assert_eq!(from.ip(), IpAddr::from(lab.public_addr()));
    server.send_to(b"pong", from).unwrap();
    // The phone's own address is unreachable from here: nothing sent to
    // it directly arrives (no route, or dropped on the way).
    let direct = SocketAddr::from((lab.phone_addr(), private_port));
    let _ = server.send_to(b"direct", direct);
    assert!(
        std::net::TcpStream::connect_timeout(&direct, Duration::from_millis(500)).is_err(),
        "TCP to the phone's private address connected"
    );

    let out = probe.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("reply pong {}", lab.server_addr())),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("nothing else"), "{text}");
}

/// alice, behind the NAT lab's router, registers over `transport`; a
/// SIPp UAC in the root namespace calls her AOR and she answers.
async fn nat_phone_receives_a_call(transport: Transport) {
    if !kamailio_installed() {
        return;
    }
    let lab = NatLab::new().expect("NAT lab (needs root, iproute2, nftables)");
    let registrar = Registrar::start(IpAddr::from(lab.server_addr()));
    let mut config = PhoneConfig::new("alice", "alicepw", DOMAIN, registrar.addr);
    config.local_addr = IpAddr::from(lab.phone_addr());
    config.netns = Some(lab.phone_ns());
    config.auto_answer = true;
    config.transport = transport;
    let mut alice = Phone::start(config);
    alice.wait_registered(DEADLINE);

    // Her Contact (192.168.X.2) is unreachable from here: the INVITE gets
    // to her only through the router's mapping her REGISTER opened (over
    // TCP: on her own connection, as nothing can connect to her).
    trunk_call(
        Sipp::builtin("uac", Some(registrar.addr)).args(["-d", "1000"]),
        &registrar,
        "alice",
        Some(&alice),
    )
    .await;
    // Auto-answered: baresip reports no CALL_INCOMING then.
    alice.wait_established(DEADLINE);
    alice.wait_closed(DEADLINE);
}

#[tokio::test]
async fn baresip_behind_nat_receives_a_call_over_its_flow_via_kamailio() {
    nat_phone_receives_a_call(Transport::Udp).await;
}

#[tokio::test]
async fn baresip_behind_nat_over_tcp_receives_a_call_over_its_connection_via_kamailio() {
    nat_phone_receives_a_call(Transport::Tcp).await;
}

#[tokio::test]
async fn sipp_uac_calls_a_baresip_phone_by_its_aor_via_kamailio() {
    if !kamailio_installed() {
        return;
    }
    let registrar = Registrar::start(IpAddr::from([127, 0, 0, 1]));
    let mut config = PhoneConfig::new("bob", "bobpw", DOMAIN, registrar.addr);
    config.auto_answer = true;
    let mut bob = Phone::start(config);
    bob.wait_registered(DEADLINE);

    // From the trunk side: no credentials, G.711 speech from a pcap.
    trunk_call(
        Sipp::builtin("uac_pcap", Some(registrar.addr)).with_pcaps(),
        &registrar,
        "bob",
        Some(&bob),
    )
    .await;
    bob.wait_established(DEADLINE);
    bob.wait_closed(DEADLINE);
    let rtp = bob.wait_rtp_summary(DEADLINE);
    assert!(
        rtp.sent >= 50 && rtp.received >= 50,
        "{rtp:?}\n{}",
        bob.log_tail(30)
    );
    assert!(bob.received_audio_peak() > 1000, "{}", bob.log_tail(30));
}
