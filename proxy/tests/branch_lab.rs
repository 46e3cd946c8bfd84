//! The branch-office lab (`testkit::branchlab`) itself: the centre is
//! reachable from the root namespace (the branch Tandem's) only through
//! the WAN router, `cut()` silences it and `heal()` brings it back,
//! `set_loss` drops about the share asked, and the branch LAN reaches
//! Tandem's side. The survivability tests of issue 13 build on it, so it
//! must do what it says. Needs root, iproute2, nftables and python3
//! (`scripts/test` installs them).

use std::io::Read;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use testkit::branchlab::BranchLab;

/// A UDP echo for the centre: echoes every datagram, and counts them, so
/// that loss can be measured one way. `count ID` answers `count ID N`,
/// N how many it got so far (questions are not counted); `who ID`
/// answers `who ID ADDRESS`, the sender's address as it sees it.
const DC_ECHO: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
# A burst from the delayer must not overflow the echo's own buffer.
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
s.bind((sys.argv[1], int(sys.argv[2])))
count = 0
while True:
    d, a = s.recvfrom(2048)
    if d.startswith(b"count "):
        s.sendto(d + b" " + str(count).encode(), a)
    elif d.startswith(b"who "):
        s.sendto(d + b" " + a[0].encode(), a)
    else:
        count += 1
        s.sendto(d, a)
"#;

/// Sends `hello` from `argv[1]` to `argv[2]:argv[3]` and prints the
/// answer, or the error (`unreachable …`, `timeout`).
const BRANCH_PROBE: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], 0))
s.settimeout(5)
try:
    s.sendto(b"hello", (sys.argv[2], int(sys.argv[3])))
    d, a = s.recvfrom(100)
    print("reply", d.decode(), a[0], flush=True)
except socket.timeout:
    print("timeout", flush=True)
except OSError as e:
    print("unreachable", e, flush=True)
"#;

/// Datagrams sent through 50 % loss.
const SENT: u32 = 400;

/// UDP port the centre's echo listens on (its namespace is its own: no
/// other test's port can be in the way).
const ECHO_PORT: u16 = 7;

/// A process killed (by pid) and reaped when the test ends, passing or not.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn lab() -> BranchLab {
    BranchLab::new().expect("branch lab (needs root, iproute2, nftables)")
}

/// Starts the echo in the centre and waits (bounded) until it answers
/// from the root namespace; returns it and a root socket on Tandem's WAN
/// address.
fn dc_echo(lab: &BranchLab) -> (Killed, UdpSocket, SocketAddr) {
    let echo = lab
        .run_in_dc("python3")
        .args(["-c", DC_ECHO, &lab.dc_addr().to_string()])
        .arg(ECHO_PORT.to_string())
        .stdin(Stdio::null())
        .spawn()
        .expect("start the echo (python3) in the centre");
    let echo = Killed(echo);
    let socket = UdpSocket::bind((lab.tandem_wan_addr(), 0)).expect("bind on Tandem's WAN address");
    let target = SocketAddr::from((lab.dc_addr(), ECHO_PORT));
    assert!(
        answers_within(&socket, target, Duration::from_secs(10)),
        "the centre's echo did not answer within 10 s"
    );
    (echo, socket, target)
}

/// `recv_from`, again when a signal interrupted it (EINTR: the test
/// process gets signals, e.g. from children ending).
fn recv(socket: &UdpSocket, buf: &mut [u8]) -> std::io::Result<(usize, SocketAddr)> {
    loop {
        match socket.recv_from(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            got => return got,
        }
    }
}

/// Whether `target` echoes a probe within `deadline` (a probe every
/// 100 ms; an answer to any probe of this call counts, so a slow WAN
/// answers too, but one to an earlier call's probe does not).
fn answers_within(socket: &UdpSocket, target: SocketAddr, deadline: Duration) -> bool {
    static CALLS: AtomicU32 = AtomicU32::new(0);
    let call = format!("probe {} ", CALLS.fetch_add(1, Ordering::Relaxed));
    let until = Instant::now() + deadline;
    let mut buf = [0u8; 2048];
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    for n in 0u64.. {
        if Instant::now() >= until {
            return false;
        }
        socket
            .send_to(format!("{call}{n}").as_bytes(), target)
            .expect("send");
        let round_end = (Instant::now() + Duration::from_millis(100)).min(until);
        while Instant::now() < round_end {
            match recv(socket, &mut buf) {
                Ok((len, _)) if buf[..len].starts_with(call.as_bytes()) => return true,
                Ok(_) => continue,
                Err(_) => break,
            }
        }
    }
    unreachable!("the loop runs until the deadline")
}

/// Asks the echo something (`count`, `who`), retrying up to 5 s; only
/// an answer to this very question counts (a slow WAN may still deliver
/// answers to earlier ones).
fn ask(socket: &UdpSocket, target: SocketAddr, question: &str) -> String {
    static QUESTIONS: AtomicU32 = AtomicU32::new(0);
    let question = format!("{question} {}", QUESTIONS.fetch_add(1, Ordering::Relaxed));
    let answer_prefix = format!("{question} ");
    let until = Instant::now() + Duration::from_secs(5);
    let mut buf = [0u8; 2048];
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    while Instant::now() < until {
        socket.send_to(question.as_bytes(), target).expect("send");
        while let Ok((len, _)) = recv(socket, &mut buf) {
            let text = String::from_utf8_lossy(&buf[..len]);
            if let Some(answer) = text.strip_prefix(&answer_prefix) {
                return answer.to_owned();
            }
        }
    }
    panic!("the centre's echo did not answer {question:?} within 5 s");
}

#[test]
fn wan_cut_silences_the_centre_and_heal_brings_it_back() {
    let lab = lab();
    let (_echo, socket, target) = dc_echo(&lab);
    // Routed, not translated: the centre sees Tandem's WAN address.
    assert_eq!(
        ask(&socket, target, "who"),
        lab.tandem_wan_addr().to_string()
    );

    lab.cut().expect("cut the WAN");
    assert!(
        !answers_within(&socket, target, Duration::from_millis(1500)),
        "the centre still answered with the WAN cut"
    );
    // Cut is not a link-down: sending still succeeds, only silence tells.
    socket.send_to(b"into the void", target).expect("send");

    lab.heal().expect("heal the WAN");
    assert!(
        answers_within(&socket, target, Duration::from_secs(5)),
        "the centre did not answer within 5 s of the WAN healing"
    );
    // Cut and healed twice: the rules replace, they do not pile up.
    lab.cut().expect("cut the WAN again");
    assert!(!answers_within(&socket, target, Duration::from_millis(800)));
    lab.heal().expect("heal the WAN again");
    assert!(answers_within(&socket, target, Duration::from_secs(5)));
}

#[test]
fn wan_loss_drops_about_the_share_asked_and_zero_removes_it() {
    let lab = lab();
    let (_echo, socket, target) = dc_echo(&lab);
    let before = received(&socket, target);

    lab.set_loss(50).expect("set 50 % loss");
    send_paced(&socket, target, SENT);
    let mut echoed = 0u32;
    let mut buf = [0u8; 2048];
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        if let Ok((len, _)) = recv(&socket, &mut buf) {
            echoed += u32::from(buf[..len].starts_with(b"seq "));
        }
    }

    lab.set_loss(0).expect("remove the loss");
    let arrived = received(&socket, target) - before;
    assert_about_half(arrived, "50 % loss");
    // A round trip crosses the router twice: 1/4 survive (expect 100,
    // σ ≈ 9), and never more than got there.
    assert!(
        (45..=170).contains(&echoed) && echoed <= arrived,
        "{echoed} of {SENT} round trips (and {arrived} one way) through 50 % loss"
    );

    // No loss left: every one of 50 round trips comes back.
    let mut back = 0;
    socket
        .set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    for n in 0..50 {
        let probe = format!("again {n}");
        socket.send_to(probe.as_bytes(), target).expect("send");
        if let Ok((len, _)) = recv(&socket, &mut buf) {
            back += u32::from(buf[..len] == *probe.as_bytes());
        }
    }
    assert_eq!(back, 50, "round trips back after set_loss(0)");
}

/// How many datagrams (not questions) the centre's echo has received.
fn received(socket: &UdpSocket, target: SocketAddr) -> u32 {
    ask(socket, target, "count").parse().expect("a count")
}

/// One way through 50 % loss, each of 400 datagrams survives with 1/2:
/// expect 200 (σ = 10); 140–260 is six σ either side, and a quarter
/// (100, loss applied twice) is four σ below.
fn assert_about_half(arrived: u32, through: &str) {
    assert!(
        (140..=260).contains(&arrived),
        "{arrived} of {SENT} datagrams reached the centre through {through}"
    );
}

/// Sends `count` numbered datagrams (`seq N`) to `target`, 2 ms apart:
/// the echo's receive buffer never overflows, so only the router drops.
fn send_paced(socket: &UdpSocket, target: SocketAddr, count: u32) {
    for n in 0..count {
        socket
            .send_to(format!("seq {n}").as_bytes(), target)
            .expect("send");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Starts [`BRANCH_PROBE`] in the branch LAN, from `from` to `to`.
fn branch_probe(lab: &BranchLab, from: IpAddr, to: SocketAddr) -> Killed {
    let probe = lab
        .run_in_branch("python3")
        .args(["-c", BRANCH_PROBE, &from.to_string()])
        .arg(to.ip().to_string())
        .arg(to.port().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the probe (python3) in the branch");
    Killed(probe)
}

/// The probe's output; fails the test when it runs longer than 10 s
/// (it gives up by itself after 5).
fn probe_output(mut probe: Killed) -> String {
    let until = Instant::now() + Duration::from_secs(10);
    while probe.0.try_wait().expect("probe status").is_none() {
        assert!(Instant::now() < until, "the branch probe ran over 10 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut out = String::new();
    if let Some(mut stdout) = probe.0.stdout.take() {
        stdout.read_to_string(&mut out).expect("probe stdout");
    }
    if let Some(mut stderr) = probe.0.stderr.take() {
        stderr.read_to_string(&mut out).expect("probe stderr");
    }
    out
}

#[test]
fn branch_lan_reaches_tandem_but_not_the_centre() {
    let lab = lab();
    let tandem = UdpSocket::bind((lab.tandem_branch_addr(), 0)).expect("bind on the branch side");
    tandem
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let gateway = lab.add_branch_addr(20).expect("a second branch address");
    assert!(lab.add_branch_addr(1).is_err(), "Tandem's own address");

    let mut buf = [0u8; 100];
    for from in [lab.branch_addr(), gateway] {
        let probe = branch_probe(&lab, IpAddr::from(from), tandem.local_addr().unwrap());
        let (len, peer) = match recv(&tandem, &mut buf) {
            Ok(got) => got,
            Err(e) => {
                let mut probe = probe;
                let _ = probe.0.kill();
                let out = probe_output(probe);
                panic!("no hello from the branch's {from}: {e}; the probe said: {out}");
            }
        };
        assert_eq!(&buf[..len], b"hello");
        assert_eq!(peer.ip(), IpAddr::from(from));
        tandem.send_to(b"welcome", peer).expect("answer");
        let out = probe_output(probe);
        assert!(
            out.contains(&format!("reply welcome {}", lab.tandem_branch_addr())),
            "{out}"
        );
    }

    // The centre, even with the WAN up, only through Tandem: the branch
    // LAN has no route there of its own.
    let (_echo, _socket, target) = dc_echo(&lab);
    let out = probe_output(branch_probe(&lab, IpAddr::from(lab.branch_addr()), target));
    assert!(out.contains("unreachable"), "{out}");
    // And the lab's own Command in the router works (a post-mortem tool).
    let rules = lab
        .run_in_router("nft")
        .args(["list", "table", "inet", "wan"])
        .output()
        .expect("nft in the router");
    assert!(
        String::from_utf8_lossy(&rules.stdout).contains("jump cut"),
        "{rules:?}"
    );
}

/// Dropping the lab removes its namespaces and links, and kills what ran
/// in them.
#[test]
fn dropping_the_lab_tears_it_down() {
    let lab = lab();
    let name = lab.name().to_owned();
    let (mut echo, _socket, _target) = dc_echo(&lab);
    drop(lab);
    let netns = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let text = String::from_utf8_lossy(&netns.stdout);
    assert!(!text.contains(&name), "namespaces left: {text}");
    let links = Command::new("ip").args(["-o", "link"]).output().unwrap();
    let text = String::from_utf8_lossy(&links.stdout);
    assert!(!text.contains(&name), "links left: {text}");
    // The lab killed the centre's echo (SIGKILL), not its handle here.
    let until = Instant::now() + Duration::from_secs(5);
    let status = loop {
        if let Some(status) = echo.0.try_wait().expect("echo status") {
            break status;
        }
        assert!(Instant::now() < until, "the centre's echo outlived the lab");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.signal(), Some(9), "{status}");
}

/// The round trip of one probe, or `None` when nothing came back in 5 s.
fn round_trip(socket: &UdpSocket, target: SocketAddr, probe: &str) -> Option<Duration> {
    let mut buf = [0u8; 2048];
    let start = Instant::now();
    let until = start + Duration::from_secs(5);
    socket.send_to(probe.as_bytes(), target).expect("send");
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    while Instant::now() < until {
        if let Ok((len, _)) = recv(socket, &mut buf) {
            if buf[..len] == *probe.as_bytes() {
                return Some(start.elapsed());
            }
        }
    }
    None
}

/// 300 ms each way: no round trip comes back sooner than 600 ms (a lower
/// bound only: a slow machine makes it later, never earlier). Cut still
/// silences a delayed WAN; `set_delay(0)` removes the delayer's detour.
#[test]
fn wan_delay_holds_packets_each_way() {
    let lab = lab();
    let (_echo, socket, target) = dc_echo(&lab);
    lab.set_delay(300).expect("set a 300 ms delay");
    for n in 0..5 {
        let rtt = round_trip(&socket, target, &format!("slow {n}"))
            .expect("an answer through the delayed WAN within 5 s");
        assert!(rtt >= Duration::from_millis(600), "round trip {rtt:?}");
    }
    lab.cut().expect("cut the WAN");
    assert!(!answers_within(
        &socket,
        target,
        Duration::from_millis(1500)
    ));
    lab.heal().expect("heal the WAN");
    assert!(answers_within(&socket, target, Duration::from_secs(5)));

    // Loss acts once on the way through, not again when the delayer
    // hands a packet back: one way, about half arrive, not a quarter.
    let before = received(&socket, target);
    lab.set_loss(50).expect("set 50 % loss");
    send_paced(&socket, target, SENT);
    // The loss stays until the last datagram has left the delayer: the
    // check is that it acts once, not that it acts only on the way in.
    std::thread::sleep(Duration::from_secs(1));
    lab.set_loss(0).expect("remove the loss");
    let arrived = received(&socket, target) - before;
    assert_about_half(arrived, "50 % loss and the delay");

    lab.set_delay(0).expect("remove the delay");
    let rules = lab
        .run_in_router("ip")
        .arg("rule")
        .output()
        .expect("ip rule in the router");
    let rules = String::from_utf8_lossy(&rules.stdout);
    assert!(!rules.contains("lookup 100"), "{rules}");
    assert!(answers_within(&socket, target, Duration::from_secs(5)));
}

/// Datagrams sent at once through the delayed WAN: a burst (a call's
/// worth of RTP after a scheduling hiccup, a registration storm) well
/// under what the delayer holds.
const BURST: u32 = 2000;

/// A burst through the delayed WAN arrives whole: the TUN device's queue
/// toward the delayer holds it while the delayer drains it, so loss stays
/// what `set_loss` asks (here none). Counts only, no speed: the burst is
/// sent as fast as the socket takes it, whatever the machine.
#[test]
fn a_burst_through_the_delayed_wan_arrives_whole() {
    let lab = lab();
    let (_echo, socket, target) = dc_echo(&lab);
    lab.set_delay(300).expect("set a 300 ms delay");
    assert!(answers_within(&socket, target, Duration::from_secs(5)));
    let before = received(&socket, target);
    // Its own socket: the burst's echoes come back to it, unread, and
    // must not crowd out the answers `received` waits for.
    let sender = UdpSocket::bind((lab.tandem_wan_addr(), 0)).expect("bind the burst's socket");
    for n in 0..BURST {
        sender
            .send_to(format!("burst {n}").as_bytes(), target)
            .expect("send");
    }
    // The question goes through the same FIFO, behind the burst.
    let arrived = received(&socket, target) - before;
    assert_eq!(
        arrived, BURST,
        "datagrams of the burst that reached the centre"
    );
}
