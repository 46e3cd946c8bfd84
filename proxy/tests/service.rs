//! Tandem as a service on loopback: the sd_notify protocol against a
//! socket the test owns (READY after the listeners, WATCHDOG only while
//! the engine makes progress, STOPPING at SIGTERM), a lone node's drain
//! with a deadline at SIGTERM, the capability check at start, and the
//! systemd unit (`deploy/systemd/tandem.service`) checked with
//! `systemd-analyze`. The pair's SIGTERM and the unit's capabilities in a
//! namespace lab are in `standby.rs`.
//!
//! Every wait has a deadline; every process is killed by pid.

use std::net::{SocketAddr, UdpSocket};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use testkit::{free_port, port_range, Sipp, Tandem, TandemConfig};

const TANDEM: &str = env!("CARGO_BIN_EXE_tandem");
const SECS: fn(u64) -> Duration = Duration::from_secs;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A `tandem run` started by the test itself (with a wrapper such as
/// `setpriv`, or an environment of its own); killed by pid when dropped.
struct Node {
    child: Child,
    sip: SocketAddr,
    admin: SocketAddr,
    dir: tempfile::TempDir,
}

impl Node {
    /// Writes `config` for fresh loopback ports (SIP on `sip_port`, or a
    /// free one) and starts `wrapper… tandem run` with `env`; does not
    /// wait for anything.
    fn spawn(
        config: &TandemConfig,
        sip_port: Option<u16>,
        wrapper: &[&str],
        env: &[(&str, &str)],
    ) -> Node {
        let dir = tempfile::tempdir().unwrap();
        let sip = SocketAddr::from(([127, 0, 0, 1], sip_port.unwrap_or_else(free_port)));
        let admin = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let base = port_range(8);
        let path = config.write(dir.path(), sip, admin, base..=base + 7);
        let log = std::fs::File::create(dir.path().join("tandem.log")).unwrap();
        let mut cmd = match wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(TANDEM);
                c
            }
            None => Command::new(TANDEM),
        };
        let child = cmd
            .args(["run", "--config"])
            .arg(&path)
            .env("RUST_LOG", "info")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start tandem");
        Node {
            child,
            sip,
            admin,
            dir,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("tandem.log")).unwrap_or_default()
    }

    fn signal(&self, name: &str) {
        let _ = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status();
    }

    /// The exit status, waiting at most `deadline`.
    fn wait_exit(&mut self, deadline: Duration) -> std::process::ExitStatus {
        let until = Instant::now() + deadline;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < until,
                "tandem still running after {deadline:?}\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The service manager's side: a Unix datagram socket the test owns, and
/// every notification received on it with its arrival time.
struct Manager {
    path: PathBuf,
    received: Arc<Mutex<Vec<(Instant, String)>>>,
    _dir: tempfile::TempDir,
}

impl Manager {
    fn listen() -> Manager {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let socket = UnixDatagram::bind(&path).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::downgrade(&received);
        // Ends when the test drops the manager (its list goes away).
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Some(sink) = sink.upgrade() {
                if let Ok(n) = socket.recv(&mut buf) {
                    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                    sink.lock().unwrap().push((Instant::now(), text));
                }
            }
        });
        Manager {
            path,
            received,
            _dir: dir,
        }
    }

    fn socket(&self) -> &str {
        self.path.to_str().unwrap()
    }

    /// The messages (one variable per line) with their arrival times.
    fn lines(&self) -> Vec<(Instant, String)> {
        let all = self.received.lock().unwrap();
        all.iter()
            .flat_map(|(at, text)| text.lines().map(|l| (*at, l.to_owned())))
            .collect()
    }

    fn count(&self, line: &str, after: Instant) -> usize {
        self.lines()
            .iter()
            .filter(|(at, l)| l == line && *at >= after)
            .count()
    }

    /// Waits for `line`; its arrival time.
    fn wait(&self, line: &str, deadline: Duration, node: &Node) -> Instant {
        let until = Instant::now() + deadline;
        loop {
            if let Some((at, _)) = self.lines().iter().find(|(_, l)| l == line) {
                return *at;
            }
            assert!(
                Instant::now() < until,
                "no {line} within {deadline:?}; got {:?}\n{}",
                self.lines(),
                node.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn lone_node() -> TandemConfig {
    // A member nobody answers: these tests place no call.
    TandemConfig::new([("ms1", SocketAddr::from(([127, 0, 0, 1], free_port())))]).without_health()
}

#[test]
fn sd_notify_ready_after_the_listeners_watchdog_while_alive_and_stopping_at_sigterm() {
    let manager = Manager::listen();
    let mut node = Node::spawn(
        &lone_node(),
        None,
        &[],
        &[
            ("NOTIFY_SOCKET", manager.socket()),
            ("WATCHDOG_USEC", "1000000"),
        ],
    );
    let ready = manager.wait("READY=1", SECS(15), &node);
    // READY=1 came after the listeners: both are bound now, and a
    // notification goes out only after what precedes it in the code.
    assert!(
        UdpSocket::bind(node.sip).is_err(),
        "SIP port not bound at READY"
    );
    assert!(std::net::TcpStream::connect(node.admin).is_ok());
    assert!(
        manager
            .lines()
            .iter()
            .any(|(_, l)| l == "STATUS=lone, 0 calls"),
        "{:?}",
        manager.lines()
    );
    // Pings every half second while the engine lives (a count, not a
    // speed: 4 s gives at least 2 in any schedule).
    let until = Instant::now() + SECS(10);
    while manager.count("WATCHDOG=1", ready) < 2 {
        assert!(
            Instant::now() < until,
            "watchdog pings: {:?}\n{}",
            manager.lines(),
            node.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    node.signal("TERM");
    manager.wait("STOPPING=1", SECS(5), &node);
    // No call up: the drain ends at once.
    assert!(node.wait_exit(SECS(10)).success(), "{}", node.log());
}

#[test]
fn a_stuck_engine_stops_the_watchdog_pings() {
    let manager = Manager::listen();
    let node = Node::spawn(
        &lone_node(),
        None,
        &[],
        &[
            ("NOTIFY_SOCKET", manager.socket()),
            ("WATCHDOG_USEC", "1000000"),
            ("TANDEM_TEST_STALL_ENGINE_MS", "1500"),
        ],
    );
    let ready = manager.wait("READY=1", SECS(15), &node);
    let until = Instant::now() + SECS(10);
    while !node.log().contains("watchdog pings stopped") {
        assert!(
            Instant::now() < until,
            "the stalled engine was not noticed\n{}",
            node.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        manager.count("WATCHDOG=1", ready) >= 1,
        "pinged while alive: {:?}",
        manager.lines()
    );
    // Four ping periods after the stall was noticed: not one ping.
    let noticed = Instant::now();
    std::thread::sleep(SECS(2));
    assert_eq!(
        manager.count("WATCHDOG=1", noticed),
        0,
        "{:?}\n{}",
        manager.lines(),
        node.log()
    );
    assert!(node.log().contains("the engine stalls for good"));
}

/// A raw INVITE from a trunk address; the final answer's text.
fn invite_final(tandem: SocketAddr, call_id: &str, deadline: Duration) -> String {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let me = socket.local_addr().unwrap();
    let invite = format!(
        "INVITE sip:100@{tandem} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK{call_id}\r\n\
         From: <sip:trunk@{me}>;tag=t{call_id}\r\nTo: <sip:100@{tandem}>\r\nCall-ID: {call_id}\r\n\
         CSeq: 1 INVITE\r\nContact: <sip:trunk@{me}>\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    socket
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let until = Instant::now() + deadline;
    let mut buf = [0u8; 4096];
    while Instant::now() < until {
        socket.send_to(invite.as_bytes(), tandem).unwrap();
        while let Ok(n) = socket.recv(&mut buf) {
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            if !text.starts_with("SIP/2.0 1") {
                return text;
            }
        }
    }
    panic!("no final answer to INVITE {call_id} within {deadline:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_on_a_lone_node_drains_then_ends_the_calls_still_up_with_a_reason() {
    testkit::require_sipp();
    let mut ms = Sipp::builtin("uas", None).arg("-aa").spawn();
    ms.wait_ready(SECS(5)).await;
    let mut tandem = Tandem::start(
        TANDEM,
        TandemConfig::new([("ms1", ms.addr())]).extra_toml("[shutdown]\ndrain_s = 2\n"),
    )
    .await;
    // A call that waits for the other side to hang up (deploy/sipp/bye_uac.xml).
    let mut caller = Sipp::scenario_file(
        &workspace().join("deploy/sipp/bye_uac.xml"),
        Some(tandem.sip_addr()),
    )
    .args(["-m", "1"])
    .trace_messages()
    .spawn();
    tandem
        .wait_metric("tandem_calls_active", &[], 1.0, SECS(10))
        .await;
    tandem.signal("TERM");
    // Once the engine has taken the signal (an INVITE already in its
    // queue at that instant is still served)...
    tandem
        .wait_log("shutdown: new calls are refused", SECS(5))
        .await;
    // ...a new call is refused, and told when to come back.
    let refused = tokio::task::spawn_blocking({
        let sip = tandem.sip_addr();
        move || invite_final(sip, "drain-new-1", SECS(5))
    })
    .await
    .unwrap();
    assert!(refused.starts_with("SIP/2.0 503"), "{refused}");
    assert!(refused.contains("\r\nRetry-After: "), "{refused}");
    // At the deadline the call still up gets a BYE, with the reason.
    let out = caller.wait_exit(SECS(15)).await;
    assert_eq!(
        (out.exit_code, out.successful),
        (Some(0), 1),
        "{}\n{}",
        out.log,
        tandem.log_tail(30)
    );
    assert!(
        out.messages
            .contains("Reason: Q.850;cause=16;text=\"shutdown\""),
        "{}",
        out.messages
    );
    let cdr = &tandem.wait_cdrs(1, SECS(5)).await[0];
    assert_eq!(cdr.get("reason"), "shutdown", "{}", cdr.line);
    let until = Instant::now() + SECS(10);
    let status = loop {
        if let Some(status) = tandem.exit_status() {
            break status;
        }
        assert!(
            Instant::now() < until,
            "still running\n{}",
            tandem.log_tail(30)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{status}\n{}", tandem.log_tail(30));
    ms.kill().await;
}

#[test]
fn a_missing_capability_stops_the_start_naming_it_and_the_key() {
    // Port 1000 on loopback: below net.ipv4.ip_unprivileged_port_start
    // (1024 by default). Root without CAP_NET_BIND_SERVICE (dropped from
    // the bounding set, so the exec does not grant it).
    let unprivileged_from: u16 =
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(1024);
    if unprivileged_from <= 1000 {
        eprintln!("SKIPPED: net.ipv4.ip_unprivileged_port_start is {unprivileged_from}: port 1000 needs no capability here");
        return;
    }
    let mut node = Node::spawn(
        &lone_node(),
        Some(1000),
        &[
            "setpriv",
            "--inh-caps=-net_bind_service",
            "--bounding-set=-net_bind_service",
            "--",
        ],
        &[],
    );
    let status = node.wait_exit(SECS(10));
    let log = node.log();
    assert!(!status.success(), "{log}");
    assert!(
        log.contains("sip.listen needs CAP_NET_BIND_SERVICE"),
        "{log}"
    );
    assert!(
        log.contains("AmbientCapabilities=CAP_NET_BIND_SERVICE"),
        "{log}"
    );
}

/// `systemd-analyze`, or None (with a message) when it is not installed
/// (scripts/test installs it: Debian's `systemd` package).
fn systemd_analyze() -> Option<&'static str> {
    let found = Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        eprintln!("SKIPPED: systemd-analyze is not installed (apt-get install systemd)");
    }
    found.then_some("systemd-analyze")
}

#[test]
fn the_systemd_unit_verifies_and_its_exposure_stays_low() {
    let Some(analyze) = systemd_analyze() else {
        return;
    };
    let unit = std::fs::read_to_string(workspace().join("deploy/systemd/tandem.service")).unwrap();
    for key in [
        "Type=notify",
        "NotifyAccess=main",
        "WatchdogSec=",
        "Restart=always",
        "User=tandem",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "AmbientCapabilities=CAP_NET_ADMIN CAP_NET_RAW CAP_SYS_NICE CAP_NET_BIND_SERVICE",
        "CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_RAW CAP_SYS_NICE CAP_NET_BIND_SERVICE",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
    ] {
        assert!(unit.contains(&format!("\n{key}")), "the unit lacks {key}");
    }
    // The unit names the installed binary; verify needs one that exists.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tandem.service");
    std::fs::write(&path, unit.replace("/usr/local/bin/tandem", TANDEM)).unwrap();
    let verify = Command::new(analyze)
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&verify.stderr).into_owned();
    assert!(verify.status.success(), "{said}");
    assert!(
        !said.contains("Unknown key") && !said.contains("Failed to parse"),
        "{said}"
    );
    let security = Command::new(analyze)
        .args(["security", "--offline=true", "--no-pager"])
        .arg(&path)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&security.stdout).into_owned();
    let score: f64 = report
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for tandem.service: ")
                .nth(1)
        })
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure score in:\n{report}"));
    eprintln!("systemd-analyze security --offline=true: exposure {score}");
    // The README and the unit's comment give the score; a change that
    // loosens the hardening shows here (systemd: < 4.0 is "OK").
    assert!(score < 4.0, "exposure {score}:\n{report}");
}
