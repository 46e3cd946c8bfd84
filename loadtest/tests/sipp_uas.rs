//! `tandem-load call` against SIPp's built-in UAS losing 10 % of the SIP
//! messages: INVITE, BYE and 2xx retransmissions happen. SIPp's fixed
//! scenario aborts a call that gets a retransmitted INVITE while it waits
//! for the ACK, so not every call can complete there; what must hold is
//! that every answer is counted once and every call ends with an outcome.

use std::time::Duration;

use serde_json::Value;
use testkit::{Sipp, SippProcess};
use tokio::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_tandem-load");

/// Runs 30 calls at 30 cps with 1 s hold against `uas`; returns the
/// exit status, the JSON report and a log for assertion messages.
async fn thirty_calls(uas: &mut SippProcess) -> (Option<i32>, Value, String) {
    uas.wait_ready(Duration::from_secs(10)).await;
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("call.json");
    let run = Command::new(BIN)
        .args(["call", "--target", &uas.addr().to_string()])
        .args(["--calls", "30", "--rate", "30", "--hold", "1s", "--quiet"])
        .arg("--json")
        .arg(&json)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(90), run)
        .await
        .expect("tandem-load call ended within 90 s")
        .expect("tandem-load call ran");
    let log = format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        uas.outcome().log
    );
    let text = std::fs::read_to_string(&json).unwrap_or_else(|e| panic!("{e}\n{log}"));
    let r: Value = serde_json::from_str(&text).unwrap();
    (out.status.code(), r, log)
}

fn answered_in_timeline(r: &Value) -> u64 {
    r["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["answered"].as_u64().unwrap())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lossy_peer_every_answer_counted_once() {
    let mut uas = Sipp::builtin("uas", None)
        .args(["-lost", "10", "-rtp_echo"])
        .spawn();
    let (_, r, log) = thirty_calls(&mut uas).await;
    let calls = &r["calls"];
    let get = |k: &str| calls[k].as_u64().unwrap();
    assert_eq!(get("attempted"), 30, "{calls}\n{log}");
    assert_eq!(
        get("answered") + get("failed") + get("unfinished"),
        30,
        "every call has one outcome: {calls}\n{log}"
    );
    assert!(
        get("answered") >= 20,
        "retransmissions got most calls through: {calls}\n{log}"
    );
    assert_eq!(
        get("completed") + get("dropped"),
        get("answered"),
        "every answered call ended: {calls}\n{log}"
    );
    assert_eq!(r["setup_latency_ms"]["count"], get("answered"));
    assert_eq!(
        answered_in_timeline(&r),
        get("answered"),
        "no answer counted twice"
    );
}
