//! Shared by the integration tests that drive `tandem-load` against the
//! real `tandem` binary.
#![allow(dead_code)] // each test file uses its own part

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use testkit::{wait_for, Sipp, SippProcess, Tandem};

pub const TANDEM: &str = env!("CARGO_BIN_EXE_tandem");
pub const SECS: fn(u64) -> Duration = Duration::from_secs;

/// `tandem-load` sits next to `tandem` when the workspace's tests are
/// built together (`cargo test --workspace`); otherwise it is built here.
pub fn tandem_load() -> PathBuf {
    let bin = Path::new(TANDEM).with_file_name("tandem-load");
    if !bin.exists() {
        let status = Command::new(env!("CARGO"))
            .args(["build", "-p", "loadtest", "--bin", "tandem-load"])
            .status()
            .expect("run cargo build for tandem-load");
        assert!(status.success(), "cargo build -p loadtest failed");
    }
    bin
}

/// A child process killed (and reaped) when dropped.
pub struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Proc {
    /// SIGTERM, then waits at most `deadline` for the exit.
    pub fn terminate(&mut self, deadline: Duration) -> bool {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let until = Instant::now() + deadline;
        while Instant::now() < until {
            if let Ok(Some(status)) = self.0.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

pub fn answerer(bin: &Path, port: u16, json: &Path) -> Proc {
    Proc(
        Command::new(bin)
            .args(["answer", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--rtp", "echo", "--quiet", "--json"])
            .arg(json)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tandem-load answer"),
    )
}

pub fn read_json(path: &Path) -> Value {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).expect("valid JSON")
}

/// Runs `program ARGS…` to its end (stdin closed, output captured); killed
/// by drop when it has not ended within `limit`.
pub async fn run_to_end<S: AsRef<std::ffi::OsStr>>(
    program: impl AsRef<std::ffi::OsStr>,
    args: &[S],
    limit: Duration,
) -> Output {
    let program = program.as_ref().to_owned();
    let child = tokio::process::Command::new(&program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("start {program:?}: {e}"));
    tokio::time::timeout(limit, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{program:?} still running after {limit:?}"))
        .unwrap_or_else(|e| panic!("{program:?} output: {e}"))
}

/// Runs `tandem-load call` to its end, killed after `limit`.
pub async fn run_call(bin: &Path, args: &[String], limit: Duration) -> Output {
    let mut all = vec!["call".to_owned()];
    all.extend_from_slice(args);
    run_to_end(bin, &all, limit).await
}

/// `tandem-load call` arguments: `calls` calls at 20/s to Tandem, each
/// held `hold`, the report as JSON in `json`; `extra` appended.
pub fn load_call_args(
    tandem: &Tandem,
    calls: u32,
    hold: &str,
    json: &Path,
    extra: &[&str],
) -> Vec<String> {
    let (target, calls) = (tandem.sip_addr().to_string(), calls.to_string());
    let mut args: Vec<String> = [
        "--target",
        &target,
        "--calls",
        &calls,
        "--rate",
        "20",
        "--hold",
        hold,
        "--quiet",
        "--json",
        json.to_str().unwrap(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// Waits (10 s at most) until Tandem reports every named member up.
pub async fn wait_members_up(tandem: &Tandem, members: &[&str]) {
    wait_for("members up", SECS(10), || async {
        let m = tandem.try_metrics().await?;
        let up = |name: &str| m.value("tandem_media_server_up", &[("member", name)]) == Some(1.0);
        if members.iter().all(|n| up(n)) {
            Ok(())
        } else {
            Err(m.text().to_owned())
        }
    })
    .await;
}

/// What `tandem-load call` printed and Tandem's last log lines, for
/// assertion messages.
pub fn said(out: &Output, tandem: &Tandem) -> String {
    format!(
        "{}\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        tandem.log_tail(40)
    )
}

/// A SIPp scenario file of `deploy/sipp`.
pub fn scenario(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/sipp")
        .join(name)
}

/// A SIPp media server; `-aa` answers Tandem's OPTIONS keepalives.
pub async fn media_server(scenario_file: Option<&str>, echo: bool) -> SippProcess {
    let mut sipp = match scenario_file {
        None => Sipp::builtin("uas", None),
        Some(f) => Sipp::scenario_file(&scenario(f), None),
    }
    .arg("-aa")
    .trace_messages();
    if echo {
        sipp = sipp.arg("-rtp_echo");
    }
    let mut p = sipp.spawn();
    p.wait_ready(SECS(5)).await;
    p
}

/// An INVITE from a caller of the test's own at `me` to `sip:1000@tandem`,
/// From and Contact `sip:USER@me` (tag USER), with `sdp` as its body; and
/// its Contact, for the dialog.
pub fn uac_invite(
    me: std::net::SocketAddr,
    tandem: std::net::SocketAddr,
    user: &str,
    call_id: &str,
    branch: &str,
    sdp: String,
) -> (sipcore::message::Message, String) {
    use sipcore::message::{Message, Method, RequestBuilder};
    let contact = format!("<sip:{user}@{me}>");
    let invite = RequestBuilder::new(&Method::Invite, &format!("sip:1000@{tandem}"))
        .header("Via", &format!("SIP/2.0/UDP {me};branch={branch}"))
        .header("Max-Forwards", "70")
        .header("From", &format!("<sip:{user}@{me}>;tag={user}"))
        .header("To", &format!("<sip:1000@{tandem}>"))
        .header("Call-ID", call_id)
        .header("CSeq", "1 INVITE")
        .header("Contact", &contact)
        .body("application/sdp", bytes::Bytes::from(sdp))
        .build();
    (
        Message::parse(invite).expect("the test's INVITE parses"),
        contact,
    )
}
