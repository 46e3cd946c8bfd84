//! The RTP kernel fast path (`media.fast_path`) end to end: a real call's
//! RTP (tandem-load's caller, a SIPp media server echoing it) forwarded by
//! the BPF program, and the fallback when BPF is refused (Tandem run by
//! `setpriv` without capabilities). The kernel tests are skipped, the
//! reason printed, where this process may not load BPF programs.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Stdio;

use testkit::{wait_for, Tandem, TandemConfig};

use common::{
    load_call_args, media_server, read_json, run_call, said, tandem_load, wait_members_up, SECS,
    TANDEM,
};

/// A script that runs Tandem with no capabilities at all (bounding,
/// inheritable and ambient sets emptied by `setpriv`), even as root.
fn without_capabilities(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("tandem-without-caps");
    std::fs::write(
        &path,
        format!(
            "#!/bin/sh\nexec setpriv --inh-caps=-all --ambient-caps=-all --bounding-set=-all -- {TANDEM} \"$@\"\n"
        ),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// Runs `calls` calls of `hold` with RTP both ways through `tandem` and
/// returns the RTP packets its CDRs count (leg A's, leg B's).
async fn calls_with_rtp(tandem: &Tandem, calls: u32, hold: &str) -> (u64, u64) {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("calls.json");
    let args = load_call_args(tandem, calls, hold, &json, &[]);
    let out = run_call(&tandem_load(), &args, SECS(60)).await;
    let said = said(&out, tandem);
    assert!(out.status.success(), "{said}");
    let r = read_json(&json);
    assert_eq!(r["calls"]["completed"], u64::from(calls), "{said}");
    assert_eq!(r["rtp"]["calls_without_packets"], 0, "{}", r["rtp"]);
    let cdrs = tandem.wait_cdrs(calls as usize, SECS(10)).await;
    let (mut a, mut b) = (0, 0);
    for cdr in &cdrs {
        assert!(cdr.num("a_packets") > 100, "caller audio: {}", cdr.line);
        assert!(cdr.num("b_packets") > 100, "echo: {}", cdr.line);
        a += cdr.num("a_packets");
        b += cdr.num("b_packets");
    }
    (a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_calls_rtp_is_forwarded_by_the_kernel_after_latching() {
    if let Some(why) = testkit::bpf_refused() {
        eprintln!("SKIPPED: {why}");
        return;
    }
    let ms = media_server(None, true).await;
    let tandem = Tandem::start(
        TANDEM,
        TandemConfig::new([("ms1", ms.addr())]).media_fast_path("on"),
    )
    .await;
    wait_members_up(&tandem, &["ms1"]).await;
    // Long enough that the first packets of each stream (before the answer
    // gives leg B an address, before latching) weigh under 1 %.
    let (a, b) = calls_with_rtp(&tandem, 2, "10s").await;
    let total = (a + b) as f64;
    // The fast path's metric is refreshed by housekeeping (every 500 ms):
    // polled up to a deadline, not read once.
    let (kernel, user) = wait_for("the fast path's counter", SECS(5), || async {
        let m = tandem.try_metrics().await?;
        let kernel = m.get("tandem_rtp_fast_path_packets_total", &[]);
        let user = m.get("tandem_rtp_packets_relayed_total", &[]);
        if kernel >= 0.99 * total {
            Ok((kernel, user))
        } else {
            Err(format!(
                "the kernel forwarded {kernel} of the calls' {total} RTP packets\n{}",
                tandem.log_tail(20)
            ))
        }
    })
    .await;
    // The user-space relay forwarded the first packets of each stream
    // (before latching) and RTCP only.
    assert!(
        user <= 0.01 * total + 20.0,
        "the user-space relay forwarded {user} packets of {total} (the kernel {kernel})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_media_server_move_keeps_one_continuous_stream_with_the_fast_path() {
    if let Some(why) = testkit::bpf_refused() {
        eprintln!("SKIPPED: {why}");
        return;
    }
    let mut ms1 = media_server(None, true).await;
    let ms2 = media_server(None, true).await;
    // ms1 first (sequential), fast keepalives: as tests/survival.rs.
    let tandem = Tandem::start(
        TANDEM,
        TandemConfig::new([("ms1", ms1.addr()), ("ms2", ms2.addr())])
            .strategy("sequential")
            .health(200, 150, 2, 2)
            .media_fast_path("on"),
    )
    .await;
    wait_members_up(&tandem, &["ms1", "ms2"]).await;
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("calls.json");
    // 2 calls of 8 s; at 3 s ms1 (which holds them both) is killed.
    let mut args = load_call_args(&tandem, 2, "8s", &json, &["--per-call"]);
    let kill = format!("kill -9 {}", ms1.pid().expect("ms1 runs"));
    args.extend(["--fail-at", "3", "--fail-cmd", &kill].map(String::from));
    let out = run_call(&tandem_load(), &args, SECS(60)).await;
    let said = said(&out, &tandem);
    assert!(out.status.success(), "{said}");
    let r = read_json(&json);
    assert_eq!(r["calls"]["completed"], 2, "{said}");
    assert_eq!(
        r["failure"]["calls_up"], 2,
        "both calls were up at the kill: {said}"
    );
    let gap = r["failure"]["rtp"]["gap_ms"]["max"].as_f64().unwrap();
    assert!(
        gap < 4000.0,
        "audio did not come back: {}\n{said}",
        r["failure"]
    );
    // The caller heard one stream: its SSRC never changed, and its
    // sequence numbers went on from where the kernel left them (a mapping
    // computed from stale user-space state would jump back by the hundreds
    // of packets the kernel forwarded: duplicates, or an A.1 restart).
    let rtp = &r["rtp"];
    assert_eq!(rtp["ssrc_changes"], 0, "{rtp}");
    assert_eq!(rtp["duplicates"], 0, "{rtp}");
    for call in r["per_call"].as_array().expect("per-call records") {
        assert_eq!(call["rtp"]["seq_restarts"], 0, "{call}");
        assert_eq!(call["rtp"]["discarded"], 0, "{call}");
    }
    let cdrs = tandem.wait_cdrs(2, SECS(10)).await;
    let mut total = 0;
    for cdr in &cdrs {
        assert_eq!(cdr.servers(), vec!["ms1", "ms2"], "{}", cdr.line);
        total += cdr.num("a_packets") + cdr.num("b_packets");
    }
    let kernel = tandem
        .metrics()
        .await
        .get("tandem_rtp_fast_path_packets_total", &[]);
    assert!(
        kernel >= 0.9 * total as f64,
        "the kernel forwarded {kernel} of {total}: also after the move"
    );
    ms1.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_bpf_auto_falls_back_to_the_user_space_relay_and_on_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let bin = without_capabilities(dir.path());
    let ms = media_server(None, true).await;

    // auto: Tandem starts, says why there is no fast path, and relays.
    let tandem = Tandem::start(
        &bin,
        TandemConfig::new([("ms1", ms.addr())]).media_fast_path("auto"),
    )
    .await;
    wait_members_up(&tandem, &["ms1"]).await;
    let (a, b) = calls_with_rtp(&tandem, 1, "3s").await;
    let log = tandem.log();
    assert!(
        log.contains("media.fast_path = \"auto\": the RTP kernel fast path is unavailable"),
        "{log}"
    );
    let m = tandem.metrics().await;
    assert_eq!(m.get("tandem_rtp_fast_path_packets_total", &[]), 0.0);
    wait_for("the user-space relay's counter", SECS(5), || async {
        let m = tandem.try_metrics().await?;
        let user = m.get("tandem_rtp_packets_relayed_total", &[]);
        if user >= (a + b) as f64 {
            Ok(())
        } else {
            Err(format!("relayed {user} < {a} + {b}"))
        }
    })
    .await;
    drop(tandem);

    // on: Tandem refuses to start, naming the key and what it lacks.
    let config = TandemConfig::new([("ms1", ms.addr())]).media_fast_path("on");
    let path = config.write(
        dir.path(),
        "127.0.0.1:0".parse().unwrap(),
        "127.0.0.1:0".parse().unwrap(),
        40000..=40009,
    );
    let child = tokio::process::Command::new(&bin)
        .args(["run", "--config"])
        .arg(&path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let out = tokio::time::timeout(SECS(10), child.wait_with_output())
        .await
        .expect("tandem exits within 10 s")
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("media.fast_path needs CAP_BPF"), "{text}");
}
