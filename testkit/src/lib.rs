//! Test support shared by the integration tests of the workspace: running
//! SIPp (Debian's `sip-tester`) as a real peer with a deadline, reading its
//! statistics, and finding free loopback ports.
//!
//! Every SIPp process is started with `kill_on_drop`, so a failing test
//! (a panic unwinds and drops the handle) never leaves one behind.
#![forbid(unsafe_code)]

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

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

/// Fails the test with a clear message when SIPp is missing, rather than
/// skipping it: `scripts/test` installs it.
pub fn require_sipp() {
    let found = std::process::Command::new("sipp")
        .arg("-v")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    assert!(
        found,
        "sipp not found: run ./scripts/test, which installs Debian's sip-tester"
    );
}

/// A SIPp invocation.
pub struct Sipp {
    args: Vec<String>,
    dir: tempfile::TempDir,
    port: u16,
}

/// What a finished SIPp run reported.
#[derive(Debug, Clone)]
pub struct SippOutcome {
    /// Exit code: 0 when every call succeeded.
    pub exit_code: Option<i32>,
    pub successful: u64,
    pub failed: u64,
    pub retransmissions: u64,
    /// The tail of SIPp's screen and error log, for assertion messages.
    pub log: String,
}

impl Sipp {
    /// A built-in scenario (`uac`, `uas`, `uac_pcap`, …) against `target`
    /// (use `None` for a UAS).
    pub fn builtin(scenario: &str, target: Option<SocketAddr>) -> Sipp {
        require_sipp();
        let port = free_port();
        let dir = tempfile::tempdir().expect("temp dir for SIPp output");
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
            "-fd",
            "1",
        ] {
            args.push(a.into());
        }
        args.extend(["-p".into(), port.to_string()]);
        args.extend([
            "-stf".into(),
            dir.path().join("stat.csv").display().to_string(),
        ]);
        args.extend([
            "-trace_err".into(),
            "-error_file".into(),
            dir.path().join("errors.log").display().to_string(),
        ]);
        Sipp { args, dir, port }
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

    /// SIPp's own SIP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn workdir(&self) -> &Path {
        self.dir.path()
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new("sipp");
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
        let mut proc = self.spawn();
        match tokio::time::timeout(deadline, proc.child.wait()).await {
            Ok(status) => {
                let status = status.expect("wait for sipp");
                proc.sipp.outcome(status.code())
            }
            Err(_) => {
                let _ = proc.child.kill().await;
                let outcome = proc.sipp.outcome(None);
                panic!(
                    "sipp still running after {deadline:?}; killed. {}",
                    outcome.log
                );
            }
        }
    }

    fn outcome(&self, exit_code: Option<i32>) -> SippOutcome {
        let (successful, failed, retransmissions) = read_stats(&self.dir.path().join("stat.csv"));
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
}

/// Reads the last line of SIPp's `-trace_stat` CSV: cumulative successful
/// and failed calls and retransmissions.
fn read_stats(path: &Path) -> (u64, u64, u64) {
    let Ok(text) = std::fs::read_to_string(path) else {
        return (0, 0, 0);
    };
    let mut lines = text.lines();
    let Some(header) = lines.next() else {
        return (0, 0, 0);
    };
    let Some(last) = lines.rfind(|l| !l.trim().is_empty()) else {
        return (0, 0, 0);
    };
    let cols: Vec<&str> = header.split(';').collect();
    let vals: Vec<&str> = last.split(';').collect();
    let get = |name: &str| -> u64 {
        cols.iter()
            .position(|c| *c == name)
            .and_then(|i| vals.get(i))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    (
        get("SuccessfulCall(C)"),
        get("FailedCall(C)"),
        get("Retransmissions(C)"),
    )
}
