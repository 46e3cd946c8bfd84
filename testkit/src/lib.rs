//! Test support shared by the integration tests of the workspace: running
//! SIPp (Debian's `sip-tester`) as a real peer with a deadline, reading its
//! statistics, and finding free loopback ports.
//!
//! Every SIPp process is started with `kill_on_drop`, so a failing test
//! (a panic unwinds and drops the handle) never leaves one behind. The same
//! holds for [`Tandem`], the proxy under test started as a real process.
#![forbid(unsafe_code)]

pub mod baresip;
pub mod branchlab;
pub mod certs;
pub mod dnsmasq;
mod fuzz;
pub mod lab;
pub mod natlab;
mod tandem;
pub mod uac;

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;

use tokio::process::{Child, Command};

pub use fuzz::replay_fuzz_corpus;
pub use tandem::{
    credentials_file, http_request, Cdr, HttpAnswer, Metrics, Tandem, TandemConfig,
    TEST_ADMIN_TOKEN,
};

/// A free UDP port on 127.0.0.1 (also free for TCP in practice: the kernel
/// hands out ephemeral ports from one range).
pub fn free_port() -> u16 {
    let probe = UdpSocket::bind("127.0.0.1:0").expect("bind a probe socket on 127.0.0.1");
    let port = probe.local_addr().expect("local address").port();
    let tcp = std::net::TcpListener::bind(("127.0.0.1", port));
    if tcp.is_err() {
        return free_port();
    }
    port
}

/// Start of a range of `len` consecutive free UDP ports on 127.0.0.1
/// (RTP ports of a SIPp or of Tandem's relay). Ranges come from below the
/// kernel's ephemeral range (which starts at 32768 by default), so they
/// never meet a [`free_port`]; within one test process they never overlap
/// each other, and the process id spreads concurrent test processes apart.
pub fn port_range(len: u16) -> u16 {
    const LOW: u32 = 20_000;
    const HIGH: u32 = 32_000;
    static CURSOR: Mutex<Option<u32>> = Mutex::new(None);
    let len = u32::from(len.max(2));
    let mut cursor = CURSOR.lock().unwrap_or_else(|e| e.into_inner());
    let mut base = cursor.unwrap_or(LOW + (std::process::id() % 24) * 500);
    for _ in 0..((HIGH - LOW) / 2) {
        base += base % 2; // even: RTP on even ports
        if base + len > HIGH {
            base = LOW;
        }
        let busy = (base..base + len).find(|p| UdpSocket::bind(("127.0.0.1", *p as u16)).is_err());
        match busy {
            None => {
                *cursor = Some(base + len);
                return base as u16;
            }
            Some(p) => base = p + 1,
        }
    }
    panic!("no free range of {len} UDP ports between {LOW} and {HIGH}");
}

/// Waits until something has bound UDP `port` on 127.0.0.1 (a peer that
/// just started is ready to receive), failing the test at `deadline`.
pub async fn wait_udp_bound(port: u16, deadline: Duration) {
    let until = tokio::time::Instant::now() + deadline;
    loop {
        if UdpSocket::bind(("127.0.0.1", port)).is_err() {
            return;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "nothing bound UDP 127.0.0.1:{port} within {deadline:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until something has bound UDP `port` in network namespace `ns`
/// (asked with iproute2's `ss` there), failing the test at `deadline`.
pub async fn wait_udp_bound_in(ns: &str, port: u16, deadline: Duration) {
    wait_for(
        &format!("UDP port {port} bound in namespace {ns}"),
        deadline,
        || async {
            let out = Command::new("ip")
                .args(["netns", "exec", ns, "ss", "-Hlun"])
                .arg(format!("sport = :{port}"))
                .output()
                .await
                .map_err(|e| format!("ss: {e}"))?;
            if out.stdout.is_empty() {
                Err("not bound".into())
            } else {
                Ok(())
            }
        },
    )
    .await
}

/// Polls `check` every 100 ms until it returns `Some`, failing the test
/// with `what` (and the last value `describe` gives) at `deadline`.
pub async fn wait_for<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let until = tokio::time::Instant::now() + deadline;
    loop {
        let last = match check().await {
            Ok(v) => return v,
            Err(last) => last,
        };
        if tokio::time::Instant::now() >= until {
            panic!("timed out after {deadline:?} waiting for {what}; last seen: {last}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A temporary directory for one process's files. With `TESTKIT_KEEP=1`
/// it is kept after the test (its path is printed), for a post-mortem.
pub(crate) fn work_dir(what: &str) -> tempfile::TempDir {
    let mut dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir for {what}: {e}"));
    if std::env::var_os("TESTKIT_KEEP").is_some_and(|v| v == "1") {
        dir.disable_cleanup(true);
        eprintln!("testkit: {what} files kept in {}", dir.path().display());
    }
    dir
}

/// Whether `program` can be started (with `arg`, its output discarded).
pub(crate) fn runs(program: &str, arg: &str) -> bool {
    std::process::Command::new(program)
        .arg(arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// Fails the test with a clear message when SIPp is missing, rather than
/// skipping it: `scripts/test` installs it.
pub fn require_sipp() {
    assert!(
        runs("sipp", "-v"),
        "sipp not found: run ./scripts/test, which installs Debian's sip-tester"
    );
}

/// Why this process cannot load and attach BPF programs (the RTP kernel
/// fast path's tests), if it cannot: CAP_BPF (bit 39) and CAP_NET_ADMIN
/// (bit 12) must be effective. Those tests skip, printing this.
pub fn bpf_refused() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|h| u64::from_str_radix(h.trim(), 16).ok())?;
    let missing: Vec<&str> = [(39, "CAP_BPF"), (12, "CAP_NET_ADMIN")]
        .into_iter()
        .filter(|(bit, _)| eff & (1 << bit) == 0)
        .map(|(_, name)| name)
        .collect();
    (!missing.is_empty()).then(|| format!("this process lacks {}", missing.join(", ")))
}

/// A SIPp invocation.
pub struct Sipp {
    args: Vec<String>,
    dir: tempfile::TempDir,
    port: u16,
    media_port: u16,
    trace_messages: bool,
    /// The network namespace SIPp runs in ([`Sipp::in_netns`]).
    netns: Option<String>,
}

/// Ports given to each SIPp for media (`-mp`): `uac_pcap`'s
/// `[auto_media_port]` moves 4 ports up per call, and `-rtp_echo` binds
/// the audio and video echo ports.
const SIPP_MEDIA_PORTS: u16 = 128;

/// What a finished SIPp run reported.
#[derive(Debug, Clone)]
pub struct SippOutcome {
    /// Exit code: 0 when every call succeeded.
    pub exit_code: Option<i32>,
    pub successful: u64,
    pub failed: u64,
    pub retransmissions: u64,
    /// The last line of SIPp's statistics, by column name.
    pub stats: HashMap<String, String>,
    /// The last line of SIPp's per-message counters (`-trace_counts`), by
    /// column name (`0_INVITE_Recv`, `2_200_Sent`, …).
    pub counts: HashMap<String, String>,
    /// Every message SIPp sent and received, when traced
    /// ([`Sipp::trace_messages`]).
    pub messages: String,
    /// The tail of SIPp's screen and error log, for assertion messages.
    pub log: String,
}

impl SippOutcome {
    /// A cumulative counter of SIPp's statistics, e.g. `IncomingCall(C)`;
    /// 0 when absent.
    pub fn stat(&self, column: &str) -> u64 {
        self.stats
            .get(column)
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }

    /// A per-message counter of the scenario: the first column ending in
    /// `suffix`, e.g. `_INVITE_Recv` (INVITEs received, whatever their
    /// index in the scenario); 0 when absent. Unlike `IncomingCall(C)`,
    /// it does not count the OPTIONS SIPp answers with `-aa`.
    pub fn count(&self, suffix: &str) -> u64 {
        let mut cols: Vec<(&String, &String)> = self
            .counts
            .iter()
            .filter(|(c, _)| c.ends_with(suffix))
            .collect();
        cols.sort_by_key(|(c, _)| {
            c.split('_')
                .next()
                .and_then(|i| i.parse::<u32>().ok())
                .unwrap_or(u32::MAX)
        });
        cols.first()
            .and_then(|(_, v)| v.trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Sipp {
    /// A built-in scenario (`uac`, `uas`, `uac_pcap`, …) against `target`
    /// (use `None` for a UAS).
    pub fn builtin(scenario: &str, target: Option<SocketAddr>) -> Sipp {
        require_sipp();
        let port = free_port();
        let media_port = port_range(SIPP_MEDIA_PORTS);
        let dir = work_dir(&format!("sipp -sn {scenario}"));
        let mut args: Vec<String> = vec!["-sn".into(), scenario.into()];
        if let Some(t) = target {
            args.push(t.to_string());
        }
        for a in [
            "-i",
            "127.0.0.1",
            "-nostdin",
            "-buff_size",
            "4194304",
            "-trace_stat",
            "-trace_counts",
            "-fd",
            "1",
        ] {
            args.push(a.into());
        }
        args.extend(["-p".into(), port.to_string()]);
        args.extend(["-mp".into(), media_port.to_string()]);
        args.extend([
            "-stf".into(),
            dir.path().join("stat.csv").display().to_string(),
        ]);
        args.extend([
            "-trace_err".into(),
            "-error_file".into(),
            dir.path().join("errors.log").display().to_string(),
        ]);
        Sipp {
            args,
            dir,
            port,
            media_port,
            trace_messages: false,
            netns: None,
        }
    }

    /// Runs SIPp in network namespace `ns` (`ip netns exec`; give it an
    /// address there with [`Sipp::local_ip`]): a phone or a gateway on a
    /// lab's branch LAN. Its ports are the namespace's own, so the fresh
    /// ones picked on the root namespace's loopback are free there too.
    pub fn in_netns(mut self, ns: &str) -> Sipp {
        self.netns = Some(ns.to_owned());
        self
    }

    /// A scenario file instead of a built-in one.
    pub fn scenario_file(path: &Path, target: Option<SocketAddr>) -> Sipp {
        let mut s = Sipp::builtin("uac", target);
        s.args[0] = "-sf".into();
        s.args[1] = path.display().to_string();
        s
    }

    pub fn arg(mut self, arg: impl Into<String>) -> Sipp {
        self.args.push(arg.into());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Sipp
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sends from `ip` instead of 127.0.0.1 (SIP and media): a phone
    /// elsewhere on loopback than the trunk, for instance.
    pub fn local_ip(mut self, ip: &str) -> Sipp {
        let i = self
            .args
            .iter()
            .position(|a| a == "-i")
            .expect("-i is always set");
        self.args[i + 1] = ip.to_owned();
        self
    }

    /// SIPp's own SIP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Uses SIP port `port` instead of a fresh one (a SIPp restarted in
    /// place of one that was killed).
    pub fn with_port(mut self, port: u16) -> Sipp {
        let i = self
            .args
            .iter()
            .position(|a| a == "-p")
            .expect("-p is always set");
        self.args[i + 1] = port.to_string();
        self.port = port;
        self
    }

    /// SIPp's media (RTP) port: `[media_port]`, the `-rtp_echo` port.
    pub fn media_port(&self) -> u16 {
        self.media_port
    }

    /// Makes the G.711 and DTMF pcaps of Debian's sip-tester available as
    /// `pcap/*.pcap` in SIPp's working directory, where `uac_pcap` looks.
    pub fn with_pcaps(self) -> Sipp {
        let pcaps = self.dir.path().join("pcap");
        std::fs::create_dir_all(&pcaps).expect("pcap dir");
        let shared = Path::new("/usr/share/sip-tester");
        let entries = std::fs::read_dir(shared)
            .unwrap_or_else(|e| panic!("{}: {e} (is sip-tester installed?)", shared.display()));
        for entry in entries {
            let entry = entry.expect("pcap dir entry");
            let name = entry.file_name();
            if name.to_string_lossy().ends_with(".pcap") {
                std::os::unix::fs::symlink(entry.path(), pcaps.join(&name))
                    .expect("symlink a pcap");
            }
        }
        self
    }

    /// Logs every message SIPp sends and receives into
    /// [`SippOutcome::messages`].
    pub fn trace_messages(mut self) -> Sipp {
        let file = self.dir.path().join("messages.log");
        self.args.extend([
            "-trace_msg".into(),
            "-message_file".into(),
            file.display().to_string(),
        ]);
        self.trace_messages = true;
        self
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn workdir(&self) -> &Path {
        self.dir.path()
    }

    fn command(&self) -> Command {
        let mut cmd = match &self.netns {
            // `ip netns exec` execs SIPp in place: the child's pid is
            // SIPp's, so kill_on_drop kills SIPp itself.
            Some(ns) => {
                let mut cmd = Command::new("ip");
                cmd.args(["netns", "exec", ns, "sipp"]);
                cmd
            }
            None => Command::new("sipp"),
        };
        cmd.args(&self.args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::from(
                std::fs::File::create(self.dir.path().join("screen.log")).expect("screen log"),
            ))
            .stderr(Stdio::from(
                std::fs::File::create(self.dir.path().join("stderr.log")).expect("stderr log"),
            ))
            .kill_on_drop(true);
        cmd
    }

    /// Starts SIPp in the background (a UAS, typically). It is killed when
    /// the returned handle is dropped.
    pub fn spawn(self) -> SippProcess {
        let child = self.command().spawn().expect("start sipp");
        SippProcess { child, sipp: self }
    }

    /// Runs SIPp to completion; kills it and fails the test when it is
    /// still running at `deadline`.
    pub async fn run(self, deadline: Duration) -> SippOutcome {
        self.spawn().wait_exit(deadline).await
    }

    fn outcome(&self, exit_code: Option<i32>) -> SippOutcome {
        let stats = read_stats(&self.dir.path().join("stat.csv"));
        let get = |name: &str| -> u64 {
            stats
                .get(name)
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0)
        };
        let (successful, failed, retransmissions) = (
            get("SuccessfulCall(C)"),
            get("FailedCall(C)"),
            get("Retransmissions(C)"),
        );
        let counts = std::fs::read_dir(self.dir.path())
            .ok()
            .and_then(|entries| {
                entries
                    .filter_map(Result::ok)
                    .map(|e| e.path())
                    .find(|p| p.to_string_lossy().ends_with("_counts.csv"))
            })
            .map(|p| read_stats(&p))
            .unwrap_or_default();
        let messages = if self.trace_messages {
            std::fs::read_to_string(self.dir.path().join("messages.log")).unwrap_or_default()
        } else {
            String::new()
        };
        let tail = |name: &str| -> String {
            let text = std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(25)..].join("\n")
        };
        SippOutcome {
            exit_code,
            successful,
            failed,
            retransmissions,
            stats,
            counts,
            messages,
            log: format!(
                "sipp {}\n--- screen ---\n{}\n--- stderr ---\n{}\n--- errors ---\n{}",
                self.args.join(" "),
                tail("screen.log"),
                tail("stderr.log"),
                tail("errors.log")
            ),
        }
    }
}

/// A running SIPp; killed on drop.
pub struct SippProcess {
    child: Child,
    sipp: Sipp,
}

impl SippProcess {
    pub fn addr(&self) -> SocketAddr {
        self.sipp.addr()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Kills SIPp (SIGKILL) and waits for it.
    pub async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }

    /// Statistics so far (SIPp writes them every second with `-fd 1`).
    pub fn outcome(&self) -> SippOutcome {
        self.sipp.outcome(None)
    }

    pub fn workdir(&self) -> PathBuf {
        self.sipp.workdir().to_owned()
    }

    pub fn media_port(&self) -> u16 {
        self.sipp.media_port
    }

    /// Waits until SIPp has bound its SIP port (it is ready for requests).
    pub async fn wait_ready(&mut self, deadline: Duration) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!(
                "sipp exited at start ({status}): {}",
                self.sipp.outcome(status.code()).log
            );
        }
        match &self.sipp.netns {
            Some(ns) => wait_udp_bound_in(ns, self.sipp.port, deadline).await,
            None => wait_udp_bound(self.sipp.port, deadline).await,
        }
    }

    /// Waits until the statistics column `column` (a cumulative counter such
    /// as `SuccessfulCall(C)`) reaches `at_least`; SIPp writes its
    /// statistics once a second (`-fd 1`).
    pub async fn wait_stat(&self, column: &str, at_least: u64, deadline: Duration) -> SippOutcome {
        wait_for(
            &format!("sipp {column} >= {at_least}"),
            deadline,
            || async {
                let out = self.outcome();
                if out.stat(column) >= at_least {
                    Ok(out)
                } else {
                    Err(format!("{} = {}\n{}", column, out.stat(column), out.log))
                }
            },
        )
        .await
    }

    /// Waits until the per-message counter [`SippOutcome::count`]
    /// `suffix` (e.g. `_INVITE_Recv`) reaches `at_least`.
    pub async fn wait_count(&self, suffix: &str, at_least: u64, deadline: Duration) -> SippOutcome {
        wait_for(
            &format!("sipp *{suffix} >= {at_least}"),
            deadline,
            || async {
                let out = self.outcome();
                if out.count(suffix) >= at_least {
                    Ok(out)
                } else {
                    Err(format!("{} = {}\n{}", suffix, out.count(suffix), out.log))
                }
            },
        )
        .await
    }

    /// Waits for SIPp to exit by itself (`-m` calls done), failing the test
    /// at `deadline`.
    pub async fn wait_exit(&mut self, deadline: Duration) -> SippOutcome {
        match tokio::time::timeout(deadline, self.child.wait()).await {
            Ok(status) => {
                let status = status.expect("wait for sipp");
                self.sipp.outcome(status.code())
            }
            Err(_) => {
                let _ = self.child.kill().await;
                panic!(
                    "sipp still running after {deadline:?}; killed. {}",
                    self.sipp.outcome(None).log
                );
            }
        }
    }
}

/// Reads the last line of SIPp's `-trace_stat` CSV: cumulative and
/// periodic counters by column name.
fn read_stats(path: &Path) -> HashMap<String, String> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return HashMap::new();
    };
    let mut lines = text.lines();
    let Some(header) = lines.next() else {
        return HashMap::new();
    };
    let Some(last) = lines.rfind(|l| !l.trim().is_empty()) else {
        return HashMap::new();
    };
    header
        .split(';')
        .zip(last.split(';'))
        .map(|(c, v)| (c.trim().to_owned(), v.trim().to_owned()))
        .collect()
}
