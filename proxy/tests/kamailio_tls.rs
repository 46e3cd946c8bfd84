//! Interop with a real SIP peer over TLS: Kamailio with its `tls` module
//! is a member reached over TLS. A SIPp UAC calls Tandem over UDP; Tandem
//! sends leg B over TLS to Kamailio (its certificate verified against
//! `sip.tls.ca_file`), which relays it statefully (`t_relay`) over UDP to
//! a SIPp UAS; the BYE takes the same way. Certificates are made by
//! rcgen at test time; Kamailio runs in the foreground with its own
//! configuration, runtime directory and pid file in a temporary directory,
//! on 127.0.0.1 only, and is stopped by its pid.
//!
//! Skipped (with a message) only when Kamailio is not installed;
//! `scripts/test` installs Debian's `kamailio` and `kamailio-tls-modules`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use testkit::certs::TestCa;
use testkit::{Tandem, TandemConfig};

const TANDEM: &str = env!("CARGO_BIN_EXE_tandem");
/// Every wait in this file; generous, never a speed check.
const DEADLINE: Duration = Duration::from_secs(10);
const KAMAILIO: &str = "/usr/sbin/kamailio";

/// Kamailio's module directory (Debian's multiarch one) if its tls module
/// is there.
fn modules_dir() -> Option<PathBuf> {
    std::fs::read_dir("/usr/lib")
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path().join("kamailio/modules"))
        .find(|d| d.join("tls.so").exists())
}

/// Kamailio listening for TLS on `tls_port` and UDP on `udp_port`
/// (127.0.0.1), relaying new requests to `uas` and in-dialog ones to
/// their Request-URI (the UAS's Contact).
fn kamailio_cfg(
    dir: &Path,
    modules: &Path,
    tls_port: u16,
    udp_port: u16,
    uas: SocketAddr,
) -> String {
    let file = |n: &str| dir.join(n).display().to_string();
    let modules = modules.display();
    format!(
        r#"#!KAMAILIO
debug=2
log_stderror=yes
fork=yes
children=1
tcp_children=1
auto_aliases=no
enable_tls=yes
listen=udp:127.0.0.1:{udp_port}
listen=tls:127.0.0.1:{tls_port}

mpath="{modules}"
loadmodule "tls.so"
loadmodule "sl.so"
loadmodule "tm.so"
loadmodule "siputils.so"
loadmodule "textops.so"
loadmodule "pv.so"
loadmodule "xlog.so"

modparam("tls", "config", "{tls_cfg}")

request_route {{
    if (is_method("OPTIONS") && !has_totag()) {{
        sl_send_reply("200", "OK");
        exit;
    }}
    if (!has_totag()) {{
        xlog("L_NOTICE", "tandem-via: $hdr(Via)\n");
        $du = "sip:{uas}";
    }}
    if (!t_relay()) {{
        sl_reply_error();
    }}
}}
"#,
        tls_cfg = file("tls.cfg"),
    )
}

/// The tls module's own file: Kamailio's certificate as a server (no
/// client certificate asked of Tandem).
fn kamailio_tls_cfg(dir: &Path) -> String {
    let file = |n: &str| dir.join(n).display().to_string();
    format!(
        "[server:default]\nmethod = TLSv1.2+\nverify_certificate = no\nrequire_certificate = no\n\
         certificate = {}\nprivate_key = {}\n\n\
         [client:default]\nmethod = TLSv1.2+\nverify_certificate = no\nrequire_certificate = no\n",
        file("kamailio.pem"),
        file("kamailio.key"),
    )
}

/// A Kamailio in the foreground, stopped by its pid on drop.
struct Kamailio {
    child: std::process::Child,
    log: PathBuf,
}

impl Kamailio {
    fn start(dir: &Path, cfg: &str) -> Kamailio {
        let cfg_file = dir.join("kamailio.cfg");
        std::fs::write(&cfg_file, cfg).unwrap();
        std::fs::write(dir.join("tls.cfg"), kamailio_tls_cfg(dir)).unwrap();
        let run = dir.join("run");
        std::fs::create_dir_all(&run).unwrap();
        let log = dir.join("kamailio.log");
        let out = std::fs::File::create(&log).unwrap();
        let child = std::process::Command::new(KAMAILIO)
            .args(["-DD", "-E", "-f"])
            .arg(&cfg_file)
            .arg("-Y")
            .arg(&run)
            .arg("-P")
            .arg(run.join("kamailio.pid"))
            .args(["-m", "16", "-M", "4", "-w"])
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("start kamailio");
        Kamailio { child, log }
    }

    fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Waits until the TLS port accepts connections (or fails the test);
    /// Err(log) when Kamailio exited first.
    async fn wait_ready(&mut self, tls: SocketAddr) -> Result<(), String> {
        let until = tokio::time::Instant::now() + DEADLINE;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "kamailio exited ({status}):\n{}",
                    self.log_tail(30)
                ));
            }
            if tokio::net::TcpStream::connect(tls).await.is_ok() {
                return Ok(());
            }
            assert!(
                tokio::time::Instant::now() < until,
                "kamailio not listening on {tls}:\n{}",
                self.log_tail(30)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        // SIGTERM lets the main process stop its children; SIGKILL after
        // a bounded wait if it did not.
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        let pid = self.child.id().to_string();
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status();
        let until = std::time::Instant::now() + DEADLINE;
        while std::time::Instant::now() < until {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A SIPp call through Tandem to Kamailio over TLS, Tandem trusting
/// `tandem_trusts` for the member's certificate (Kamailio's is from its
/// own CA): the SIPp UAC's outcome, the logs, and what the UAS saw.
struct Outcome {
    uac: testkit::SippOutcome,
    /// The UAS, still running: only Kamailio can reach it.
    uas: testkit::SippProcess,
    tls_sent: f64,
    /// The Via Kamailio saw on Tandem's INVITE, if one came.
    via: Option<String>,
    /// Tandem's TLS listener.
    tandem_tls: SocketAddr,
    logs: String,
}

async fn call_through_kamailio(trust_kamailio_ca: bool) -> Option<Outcome> {
    let (true, Some(modules)) = (Path::new(KAMAILIO).exists(), modules_dir()) else {
        eprintln!(
            "skipped: {KAMAILIO} or its tls module is missing \
             (./scripts/test installs Debian's kamailio and kamailio-tls-modules)"
        );
        return None;
    };
    testkit::require_sipp();
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    let (kamailio_ca, other_ca) = (TestCa::new("kamailio-ca"), TestCa::new("other-ca"));
    kamailio_ca.issue(&["127.0.0.1"], &p("kamailio.pem"), &p("kamailio.key"));
    // Tandem's own listener certificate (needed by [sip.tls]).
    other_ca.issue(&["127.0.0.1"], &p("tandem.pem"), &p("tandem.key"));
    let trusted = if trust_kamailio_ca {
        &kamailio_ca
    } else {
        &other_ca
    };
    std::fs::write(p("members-ca.pem"), trusted.pem()).unwrap();

    let mut uas = testkit::Sipp::builtin("uas", None).arg("-aa").spawn();
    uas.wait_ready(DEADLINE).await;
    // A port found free can be taken before Kamailio binds it (by any
    // test's connection meanwhile): then again with fresh ports.
    let mut attempt = 0;
    let (kamailio, k_tls_addr) = loop {
        attempt += 1;
        let (k_tls, k_udp) = (testkit::free_port(), testkit::free_port());
        let k_tls_addr: SocketAddr = format!("127.0.0.1:{k_tls}").parse().unwrap();
        let mut kamailio = Kamailio::start(
            dir.path(),
            &kamailio_cfg(dir.path(), &modules, k_tls, k_udp, uas.addr()),
        );
        match kamailio.wait_ready(k_tls_addr).await {
            Ok(()) => break (kamailio, k_tls_addr),
            Err(log) if attempt < 3 && log.contains("Address already in use") => continue,
            Err(log) => panic!("{log}"),
        }
    };

    let tandem_tls: SocketAddr = format!("127.0.0.1:{}", testkit::free_port())
        .parse()
        .unwrap();
    let table = format!(
        "[sip.tls]\nport = {}\ncert_file = {:?}\nkey_file = {:?}\nca_file = {:?}\n\n\
         [[group]]\nname = \"kamailio\"\nprobe = \"off\"\nresume = false\n\
         [[group.member]]\nname = \"kamailio\"\naddress = \"{k_tls_addr}\"\ntransport = \"tls\"\n\n\
         [[rule]]\nname = \"all\"\ngroup = \"kamailio\"\n",
        tandem_tls.port(),
        p("tandem.pem"),
        p("tandem.key"),
        p("members-ca.pem"),
    );
    let unused: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let tandem = Tandem::start(
        TANDEM,
        TandemConfig::new([("ms1", unused)])
            .without_health()
            .member_answer_timeout_ms(3000)
            .extra_toml(&table),
    )
    .await;

    let uac_xml = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/sipp/uac.xml");
    let uac = testkit::Sipp::scenario_file(&uac_xml, Some(tandem.sip_addr()))
        .args(["-m", "1"])
        .run(Duration::from_secs(20))
        .await;
    // Transport counters reach the metrics a moment later: wait (bounded)
    // for INVITE, ACK and BYE, taking the last value either way.
    let tls_sent = tokio::time::timeout(DEADLINE, async {
        loop {
            let m = tandem.metrics().await;
            let sent = m.get("tandem_sip_messages_sent_total", &[("transport", "tls")]);
            if sent >= 3.0 || !uac_ok(&uac) {
                return sent;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .unwrap_or(0.0);
    let logs = format!(
        "UAC:\n{}\nTandem:\n{}\nKamailio:\n{}",
        uac.log,
        tandem.log_tail(20),
        kamailio.log_tail(30)
    );
    let via = std::fs::read_to_string(&kamailio.log)
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.split_once("tandem-via: ").map(|(_, v)| v.to_owned()));
    drop(kamailio);
    Some(Outcome {
        via,
        tandem_tls,
        uac,
        uas,
        tls_sent,
        logs,
    })
}

fn uac_ok(uac: &testkit::SippOutcome) -> bool {
    (uac.exit_code, uac.successful, uac.failed) == (Some(0), 1, 0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_reaches_a_sipp_uas_through_kamailio_over_tls() {
    let Some(mut o) = call_through_kamailio(true).await else {
        return;
    };
    assert!(uac_ok(&o.uac), "{}", o.logs);
    // INVITE, ACK and BYE went to Kamailio over TLS, and the UAS (which
    // only Kamailio can reach) had the call.
    assert!(o.tls_sent >= 3.0, "{} TLS messages\n{}", o.tls_sent, o.logs);
    // Tandem's Via names its TLS listener, so Kamailio could answer per
    // Via (RFC 3261 §18.2.2) should the connection be lost.
    let via = o.via.as_deref().unwrap_or_default();
    let sent_by = format!("SIP/2.0/TLS {};branch=", o.tandem_tls);
    assert!(via.starts_with(&sent_by), "{via:?}\n{}", o.logs);
    o.uas.wait_stat("SuccessfulCall(C)", 1, DEADLINE).await;
    o.uas.kill().await;
}

/// The same call, Tandem trusting another CA than Kamailio's: the
/// handshake fails, no call gets through (the test above is not passing
/// by some way around TLS).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kamailio_certificate_from_an_untrusted_ca_gets_no_call() {
    let Some(mut o) = call_through_kamailio(false).await else {
        return;
    };
    assert_eq!((o.uac.successful, o.uac.failed), (0, 1), "{}", o.logs);
    // Tandem refused Kamailio's certificate (Kamailio hears the alert),
    // so nothing went out over TLS and nothing reached the UAS.
    assert!(o.logs.contains("alert unknown ca"), "{}", o.logs);
    assert_eq!(o.tls_sent, 0.0, "{}", o.logs);
    let uas = o.uas.outcome();
    assert_eq!(uas.successful + uas.failed, 0, "{}", o.logs);
    o.uas.kill().await;
}
