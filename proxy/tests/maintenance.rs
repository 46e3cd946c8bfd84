//! Rolling maintenance of media servers with callers on the line, end to
//! end through the operator's CLI: `tandem drain member ms1` sends new
//! calls to ms2 while ms1 keeps its own; `tandem move --from ms1` moves
//! every answered call on ms1 to ms2 (the survival path), none lost, the
//! callers hearing their echo again and ending their calls normally.

mod common;

use std::time::Duration;

use serde_json::Value;
use testkit::{wait_for, Sipp, Tandem, TandemConfig};

use common::{
    load_call_args, media_server, read_json, run_call, run_to_end, said, scenario, tandem_load,
    wait_members_up, SECS, TANDEM,
};

/// `tandem ARGS --config <the node's config>`, 40 s at most: (success,
/// stdout, stderr).
async fn cli(tandem: &Tandem, args: &[&str]) -> (bool, String, String) {
    let config = tandem.config_path();
    let mut all: Vec<&std::ffi::OsStr> = args.iter().map(std::ffi::OsStr::new).collect();
    all.extend([std::ffi::OsStr::new("--config"), config.as_os_str()]);
    let out = run_to_end(TANDEM, &all, SECS(40)).await;
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `tandem ARGS --json`, parsed.
async fn cli_json(tandem: &Tandem, args: &[&str]) -> Value {
    let mut args = args.to_vec();
    args.push("--json");
    let (ok, out, err) = cli(tandem, &args).await;
    assert!(ok, "tandem {args:?}: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// The calls `tandem calls --member NAME` lists.
async fn calls_on(tandem: &Tandem, member: &str) -> Vec<Value> {
    let v = cli_json(tandem, &["calls", "--member", member]).await;
    v.as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_then_move_rolls_the_calls_off_a_media_server_none_lost() {
    const CALLS: u64 = 10;
    testkit::require_sipp();
    let bin = tandem_load();
    let ms1 = media_server(None, true).await;
    let ms2 = media_server(None, true).await;
    // Sequential: every call lands on ms1 while it may take it.
    let tandem = Tandem::start(
        TANDEM,
        TandemConfig::new([("ms1", ms1.addr()), ("ms2", ms2.addr())])
            .strategy("sequential")
            .health(200, 150, 2, 2),
    )
    .await;
    wait_members_up(&tandem, &["ms1", "ms2"]).await;
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("load.json");

    // The callers: 10 calls of 16 s with RTP, checking the echo.
    let args = load_call_args(&tandem, CALLS as u32, "16s", &json, &[]);
    let load = tokio::spawn(async move { run_call(&bin, &args, SECS(90)).await });
    wait_for("10 calls up on ms1", SECS(15), || async {
        let on_ms1 = calls_on(&tandem, "ms1").await;
        let up = on_ms1.iter().filter(|c| c["state"] == "confirmed").count();
        if up == CALLS as usize {
            Ok(())
        } else {
            Err(format!("{on_ms1:?}"))
        }
    })
    .await;

    // Drain ms1: it keeps its calls, new calls go to ms2.
    let (ok, out, err) = cli(&tandem, &["drain", "member", "ms1"]).await;
    assert!(ok && out.contains("ms1: draining"), "{out}{err}");
    let members = cli_json(&tandem, &["members"]).await;
    let ms1_view = members
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["member"] == "ms1")
        .cloned()
        .unwrap();
    assert_eq!(ms1_view["draining"], true, "{members}");
    assert_eq!(ms1_view["calls"], CALLS, "{members}");
    let (ok, table, _) = cli(&tandem, &["members"]).await;
    assert!(ok && table.contains("DRAINING"), "{table}");
    let m = tandem.metrics().await;
    assert_eq!(
        m.get("tandem_media_server_draining", &[("member", "ms1")]),
        1.0,
        "{}",
        m.text()
    );
    let mut trunk = Sipp::scenario_file(&scenario("uac.xml"), Some(tandem.sip_addr()))
        .args(["-m", "2", "-d", "300"])
        .spawn();
    let new_calls = trunk.wait_exit(SECS(30)).await;
    assert_eq!(
        (new_calls.successful, new_calls.failed),
        (2, 0),
        "{}",
        new_calls.log
    );
    ms2.wait_stat("SuccessfulCall(C)", 2, SECS(10)).await;
    assert_eq!(
        ms2.outcome().count("_INVITE_Recv"),
        2,
        "new calls went to ms2"
    );
    assert_eq!(
        ms1.outcome().count("_INVITE_Recv"),
        CALLS,
        "none more to ms1"
    );
    assert_eq!(calls_on(&tandem, "ms1").await.len(), CALLS as usize);

    // Move them: every call on ms1 continues on ms2.
    let (ok, out, err) = cli(&tandem, &["move", "--from", "ms1", "--wait", "20"]).await;
    assert!(ok, "{out}{err}\n{}", tandem.log_tail(30));
    assert!(
        out.contains("ms1: 10 answered calls scheduled to move") && out.contains("no call left"),
        "{out}"
    );
    let (ok, table, _) = cli(&tandem, &["calls"]).await;
    assert!(ok && table.contains("10 calls"), "{table}");
    assert_eq!(
        table.matches(" ms2 ").count(),
        CALLS as usize,
        "every call on ms2:\n{table}"
    );
    // ms1 saw a BYE for each of its calls, saying why.
    let old = ms1.wait_stat("SuccessfulCall(C)", CALLS, SECS(10)).await;
    assert_eq!(old.failed, 0, "{}", old.log);
    let reasons = ms1
        .outcome()
        .messages
        .matches("call moved by the operator")
        .count();
    assert_eq!(reasons, CALLS as usize, "{}", ms1.outcome().messages);

    // The callers never noticed: every call completed with its own BYE,
    // the echo came back after the move.
    let out = load.await.unwrap();
    let said = said(&out, &tandem);
    assert!(out.status.success(), "{said}");
    let r = read_json(&json);
    for (key, want) in [
        ("answered", CALLS),
        ("completed", CALLS),
        ("failed", 0),
        ("dropped", 0),
        ("unfinished", 0),
    ] {
        assert_eq!(r["calls"][key], want, "{key}: {}\n{said}", r["calls"]);
    }
    assert_eq!(r["rtp"]["calls_without_packets"], 0, "{}", r["rtp"]);
    assert_eq!(r["rtp"]["ssrc_changes"], 0, "{}", r["rtp"]);
    // A call left without audio after the move would show a gap of the
    // ten seconds that remained of it.
    let gap = r["rtp"]["gap_ms"]["max"].as_f64().expect("gap_ms");
    assert!(
        gap < 3000.0,
        "audio did not come back: {}\n{said}",
        r["rtp"]
    );
    let new = ms2
        .wait_stat("SuccessfulCall(C)", CALLS + 2, SECS(10))
        .await;
    assert_eq!(new.failed, 0, "{}", new.log);
    let x_resumed = new
        .messages
        .lines()
        .filter(|l| l.starts_with("X-Tandem-Resumed:") && l.ends_with(";from=ms1"))
        .count();
    assert_eq!(x_resumed, CALLS as usize, "{}", new.messages);
    let m = tandem.metrics().await;
    assert_eq!(
        m.get(
            "tandem_calls_moved_total",
            &[("from", "ms1"), ("to", "ms2"), ("outcome", "ok")]
        ),
        CALLS as f64,
        "{}",
        m.text()
    );
    assert_eq!(
        m.get("tandem_calls_resumed_total", &[]),
        0.0,
        "a move is no failure"
    );
    let cdrs = tandem
        .wait_cdrs(CALLS as usize + 2, Duration::from_secs(10))
        .await;
    let moved = cdrs
        .iter()
        .filter(|c| c.servers() == ["ms1", "ms2"] && c.get("reason") == "bye_caller")
        .count();
    assert_eq!(moved, CALLS as usize, "{cdrs:?}");
    let while_drained = cdrs.iter().filter(|c| c.servers() == ["ms2"]).count();
    assert_eq!(
        while_drained, 2,
        "the calls placed while ms1 drained: {cdrs:?}"
    );

    // Maintenance done: undrained, ms1 takes new calls again.
    let (ok, out, _) = cli(&tandem, &["undrain", "member", "ms1"]).await;
    assert!(ok && out.contains("undrained"), "{out}");
    let mut trunk = Sipp::scenario_file(&scenario("uac.xml"), Some(tandem.sip_addr()))
        .args(["-m", "1", "-d", "200"])
        .spawn();
    assert_eq!(trunk.wait_exit(SECS(30)).await.successful, 1);
    ms1.wait_count("_INVITE_Recv", CALLS + 1, SECS(5)).await;
}
