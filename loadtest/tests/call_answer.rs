//! `tandem-load call` against `tandem-load answer` directly on 127.0.0.1,
//! as real processes: calls with RTP both ways, an injected outage, an
//! unreachable target and bad input. Every process is killed when its
//! handle drops; every wait has a deadline.

use std::io::{BufRead, BufReader};
use std::net::UdpSocket;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_tandem-load");

/// A child process killed on drop.
struct Proc {
    child: Option<Child>,
    name: &'static str,
}

impl Proc {
    fn new(child: Child, name: &'static str) -> Proc {
        Proc {
            child: Some(child),
            name,
        }
    }

    fn child(&mut self) -> &mut Child {
        self.child.as_mut().expect("process not collected yet")
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().expect("process not collected yet").id()
    }

    /// Waits for the exit, at most `deadline`.
    fn wait(&mut self, deadline: Duration) -> ExitStatus {
        let until = Instant::now() + deadline;
        loop {
            if let Some(status) = self.child().try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < until,
                "{} did not exit within {deadline:?}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits for the exit (at most `deadline`), then collects the output.
    fn output(mut self, deadline: Duration) -> Output {
        self.wait(deadline);
        let child = self.child.take().expect("process not collected yet");
        child.wait_with_output().expect("collect output")
    }

    /// SIGTERM (the answerer then writes its report), then waits.
    fn terminate(&mut self, deadline: Duration) -> ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        self.wait(deadline)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Starts `tandem-load answer` on a free port and waits (10 s at most)
/// until it says it listens. Returns the process and its port.
fn answerer(extra: &[&str], json: &Path) -> (Proc, u16) {
    let port = testkit::free_port();
    let mut child = Command::new(BIN)
        .args([
            "answer",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--quiet",
        ])
        .arg("--json")
        .arg(json)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start tandem-load answer");
    let stderr = child.stderr.take().expect("stderr");
    let proc = Proc::new(child, "tandem-load answer");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let left = until.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line.contains("listening on") => break,
            Ok(_) => continue,
            Err(e) => panic!("answerer did not start listening: {e}"),
        }
    }
    (proc, port)
}

/// Runs `tandem-load call …` to its end (deadline `limit`), returns its
/// output.
fn call(args: &[&str], limit: Duration) -> Output {
    let child = Command::new(BIN)
        .arg("call")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start tandem-load call");
    Proc::new(child, "tandem-load call").output(limit)
}

fn read_json(path: &Path) -> Value {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).expect("valid JSON")
}

fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn fifty_calls_with_rtp_against_the_answerer() {
    let dir = tempfile::tempdir().unwrap();
    let answer_json = dir.path().join("answer.json");
    let call_json = dir.path().join("call.json");
    let plots = dir.path().join("plots");
    let (mut answer, port) = answerer(&["--rtp", "echo"], &answer_json);
    let target = format!("127.0.0.1:{port}");
    let out = call(
        &[
            "--target",
            &target,
            "--calls",
            "50",
            "--rate",
            "50",
            "--hold",
            "1s",
            "--quiet",
            "--per-call",
            "--json",
            call_json.to_str().unwrap(),
            "--plot-dir",
            plots.to_str().unwrap(),
        ],
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("completed 50"), "{}", text(&out));

    let r = read_json(&call_json);
    assert_eq!(r["role"], "call");
    let calls = &r["calls"];
    assert_eq!(calls["attempted"], 50, "{calls}");
    assert_eq!(calls["answered"], 50, "{calls}");
    assert_eq!(calls["completed"], 50, "{calls}");
    assert_eq!(calls["failed"], 0, "{calls}");
    assert_eq!(calls["dropped"], 0, "{calls}");
    assert_eq!(calls["unfinished"], 0, "{calls}");
    assert_eq!(r["setup_latency_ms"]["count"], 50);
    let rtp = &r["rtp"];
    assert_eq!(rtp["calls"], 50, "{rtp}");
    assert_eq!(rtp["packets_lost"], 0, "no loss on loopback: {rtp}");
    assert_eq!(rtp["calls_without_packets"], 0, "{rtp}");
    assert_eq!(rtp["duplicates"], 0, "{rtp}");
    assert_eq!(rtp["ssrc_changes"], 0, "{rtp}");
    // 1 s of hold at 50 packets/s, echoed back.
    let received = rtp["packets_received"].as_u64().unwrap();
    assert!(received >= 50 * 40, "{rtp}");
    assert!(rtp["gap_ms"]["max"].as_f64().unwrap() > 0.0, "{rtp}");
    let per_call = r["per_call"].as_array().expect("per-call records");
    assert_eq!(per_call.len(), 50);
    for c in per_call {
        assert_eq!(c["outcome"], "completed", "{c}");
        assert_eq!(c["rtp"]["lost"], 0, "{c}");
        assert!(c["rtp"]["packets"].as_u64().unwrap() > 0, "{c}");
    }
    let seconds: u64 = r["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["answered"].as_u64().unwrap())
        .sum();
    assert_eq!(seconds, 50, "the timeline counts every answer once");
    for f in [
        "cps.svg",
        "setup_latency_cdf.svg",
        "audio_gap_cdf.svg",
        "audio_gap_timeline.svg",
    ] {
        let svg = std::fs::read_to_string(plots.join(f)).unwrap();
        assert!(svg.starts_with("<svg"), "{f}");
    }

    assert!(answer.terminate(Duration::from_secs(10)).success());
    let a = read_json(&answer_json);
    assert_eq!(a["role"], "answer");
    assert_eq!(a["invites"], 50, "{a}");
    assert_eq!(a["answered"], 50, "{a}");
    assert_eq!(a["byes"], 50, "{a}");
    assert_eq!(a["active_at_end"], 0, "{a}");
    assert_eq!(a["rtp"]["packets_lost"], 0, "{a}");
}

#[test]
fn lost_ack_brings_the_200_again_and_it_is_acked_again() {
    let dir = tempfile::tempdir().unwrap();
    let answer_json = dir.path().join("answer.json");
    let call_json = dir.path().join("call.json");
    let (mut answer, port) = answerer(&["--lose-first-ack"], &answer_json);
    let target = format!("127.0.0.1:{port}");
    let out = call(
        &[
            "--target",
            &target,
            "--calls",
            "20",
            "--rate",
            "40",
            "--hold",
            "1500ms",
            "--quiet",
            "--json",
            call_json.to_str().unwrap(),
        ],
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "{}", text(&out));
    let r = read_json(&call_json);
    assert_eq!(r["calls"]["answered"], 20, "{}", r["calls"]);
    assert_eq!(r["calls"]["completed"], 20, "{}", r["calls"]);
    // The answerer sends its 200 once more after T1 (500 ms) for every
    // call; each is ACKed again and none is taken as a new answer.
    assert_eq!(r["sip"]["ok_retransmissions_received"], 20, "{}", r["sip"]);
    assert_eq!(r["setup_latency_ms"]["count"], 20);
    assert!(answer.terminate(Duration::from_secs(10)).success());
    let a = read_json(&answer_json);
    assert_eq!(a["acks_ignored"], 20, "{a}");
    assert_eq!(a["ok_retransmissions"], 20, "{a}");
    assert_eq!(a["never_acked"], 0, "{a}");
    assert_eq!(a["byes"], 20, "{a}");
}

#[test]
fn injected_outage_shows_as_audio_gap_of_the_calls_up() {
    let dir = tempfile::tempdir().unwrap();
    let answer_json = dir.path().join("answer.json");
    let call_json = dir.path().join("call.json");
    let (answer, port) = answerer(&["--rtp", "send"], &answer_json);
    let target = format!("127.0.0.1:{port}");
    // Freeze the answerer for 600 ms one second into the calls.
    let outage = format!(
        "kill -STOP {pid}; sleep 0.6; kill -CONT {pid}; echo outage over",
        pid = answer.pid()
    );
    let out = call(
        &[
            "--target",
            &target,
            "--calls",
            "10",
            "--rate",
            "20",
            "--hold",
            "2500ms",
            "--fail-at",
            "1.2",
            "--fail-cmd",
            &outage,
            "--quiet",
            "--json",
            call_json.to_str().unwrap(),
        ],
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "{}", text(&out));
    let r = read_json(&call_json);
    let f = &r["failure"];
    assert_eq!(f["exit_code"], 0, "{f}");
    assert_eq!(f["output"], "outage over\n", "{f}");
    assert_eq!(f["calls_up"], 10, "all calls were up at 1.2 s: {f}");
    assert_eq!(f["completed"], 10, "{f}");
    // Nothing came from the frozen answerer for 600 ms: every call up then
    // saw a gap at least that long (a lower bound; never an upper one).
    let min_gap = f["rtp"]["gap_ms"]["min"].as_f64().unwrap();
    assert!(min_gap >= 550.0, "{f}");
    assert!(r["rtp"]["gap_ms"]["max"].as_f64().unwrap() >= 550.0);
}

#[test]
fn unreachable_target_fails_with_timeout() {
    // A port nobody listens on (bound here, never read).
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let target = silent.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("call.json");
    let started = Instant::now();
    let out = call(
        &[
            "--target",
            &target,
            "--calls",
            "3",
            "--setup-timeout",
            "1s",
            "--quiet",
            "--json",
            json.to_str().unwrap(),
        ],
        Duration::from_secs(30),
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(started.elapsed() < Duration::from_secs(20));
    let r = read_json(&json);
    assert_eq!(r["calls"]["attempted"], 3);
    assert_eq!(r["calls"]["failed"], 3);
    assert_eq!(r["calls"]["failures"]["timeout"], 3, "{}", r["calls"]);
    assert_eq!(r["calls"]["answered"], 0);
}

#[test]
fn bad_input_is_refused_with_a_clear_error() {
    let out = call(
        &["--target", "notanaddress", "--calls", "1"],
        Duration::from_secs(10),
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--target") && err.contains("notanaddress"),
        "{err}"
    );

    let out = call(&["--target", "127.0.0.1:5060"], Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--calls"));

    // The local SIP port is taken.
    let taken = UdpSocket::bind("127.0.0.1:0").unwrap();
    let local = taken.local_addr().unwrap().to_string();
    let out = call(
        &[
            "--target",
            "127.0.0.1:5060",
            "--local",
            &local,
            "--calls",
            "1",
        ],
        Duration::from_secs(10),
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot bind SIP") && err.contains(&local),
        "{err}"
    );

    let child = Command::new(BIN)
        .args(["answer", "--listen", &local])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = Proc::new(child, "tandem-load answer").output(Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot bind SIP"));
}
