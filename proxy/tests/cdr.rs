//! The CDR file (`[cdr]`) end to end: the real `tandem` between SIPp
//! peers, its CDR file read back. One line per call with its fields, the
//! resume marks of a call moved off a killed media server, a file complete
//! after `kill -9`, a full disk (a tiny tmpfs) that never stops calls, and
//! a reopen on SIGUSR1 after a logrotate-style rename.

mod common;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use serde_json::Value;
use testkit::{wait_for, Sipp, SippOutcome, Tandem, TandemConfig};

use common::{
    load_call_args, media_server, read_json, run_call, said, scenario, tandem_load,
    wait_members_up, SECS, TANDEM,
};

/// Tandem with ms1 first (sequential), fast keepalives, and `[cdr]` at
/// `path` plus `extra` keys.
async fn tandem(ms1: SocketAddr, ms2: SocketAddr, path: &Path, extra: &str) -> Tandem {
    let tandem = Tandem::start(
        TANDEM,
        TandemConfig::new([("ms1", ms1), ("ms2", ms2)])
            .strategy("sequential")
            .health(200, 150, 2, 2)
            .extra_toml(&format!("[cdr]\npath = \"{}\"\n{extra}", path.display())),
    )
    .await;
    wait_members_up(&tandem, &["ms1", "ms2"]).await;
    tandem
}

/// `calls` calls from a SIPp trunk, each up for `hold_ms`, all to their
/// end.
async fn place_calls(tandem: &Tandem, calls: u32, hold_ms: u32) -> SippOutcome {
    let out = Sipp::scenario_file(&scenario("uac.xml"), Some(tandem.sip_addr()))
        .args([
            "-m",
            &calls.to_string(),
            "-r",
            "20",
            "-d",
            &hold_ms.to_string(),
        ])
        .run(SECS(60))
        .await;
    assert_eq!(
        (out.exit_code, out.successful, out.failed),
        (Some(0), u64::from(calls), 0),
        "{}\n{}",
        out.log,
        tandem.log_tail(30)
    );
    out
}

/// The file's lines as JSON (a line that is not JSON fails the test: a
/// torn line is a bug).
fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

fn of_type<'a>(lines: &'a [Value], kind: &str) -> Vec<&'a Value> {
    lines.iter().filter(|l| l["type"] == kind).collect()
}

/// Waits until the file holds `n` end lines.
async fn wait_end_lines(path: &Path, n: usize, tandem: &Tandem) -> Vec<Value> {
    wait_for(&format!("{n} CDR end lines"), SECS(10), || async {
        let all = lines(path);
        if of_type(&all, "end").len() >= n {
            Ok(all)
        } else {
            Err(format!("{all:?}\n{}", tandem.log_tail(20)))
        }
    })
    .await
}

fn members(line: &Value) -> Vec<String> {
    line["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["member"].as_str().unwrap().to_owned())
        .collect()
}

fn distinct_a_call_ids(lines: &[&Value]) -> usize {
    lines
        .iter()
        .map(|l| l["a_call_id"].as_str().unwrap().to_owned())
        .collect::<HashSet<_>>()
        .len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cdr_counters_exist_at_zero_without_cdr_too() {
    let ms1 = media_server(None, false).await;
    let tandem = Tandem::start(TANDEM, TandemConfig::new([("ms1", ms1.addr())])).await;
    let m = tandem.metrics().await;
    for counter in [
        "tandem_cdr_records_total",
        "tandem_cdr_dropped_total",
        "tandem_cdr_write_errors_total",
    ] {
        assert_eq!(m.value(counter, &[]), Some(0.0), "{counter}\n{}", m.text());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_call_gets_one_line_with_its_fields_and_a_start_line() {
    let ms1 = media_server(None, false).await;
    let ms2 = media_server(None, false).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cdr.jsonl");
    let tandem = tandem(ms1.addr(), ms2.addr(), &path, "start_records = true\n").await;
    let m = tandem.metrics().await;
    for counter in [
        "tandem_cdr_records_total",
        "tandem_cdr_dropped_total",
        "tandem_cdr_write_errors_total",
    ] {
        assert_eq!(
            m.value(counter, &[]),
            Some(0.0),
            "{counter} at 0 from the start"
        );
    }

    place_calls(&tandem, 5, 200).await;
    let all = wait_end_lines(&path, 5, &tandem).await;
    let ends = of_type(&all, "end");
    let starts = of_type(&all, "start");
    assert_eq!((ends.len(), starts.len()), (5, 5), "{all:?}");
    assert_eq!(distinct_a_call_ids(&ends), 5, "one line per call");
    for l in &ends {
        assert_eq!(l["v"], 1, "{l}");
        for key in [
            "a_call_id",
            "b_call_id",
            "trunk",
            "rule",
            "group",
            "caller",
            "callee",
        ] {
            assert!(l[key].as_str().is_some_and(|s| !s.is_empty()), "{key}: {l}");
        }
        assert_ne!(l["a_call_id"], l["b_call_id"], "{l}");
        assert_eq!(l["group"], "media", "{l}");
        assert_eq!(l["reason"], "bye_caller", "{l}");
        assert_eq!(l["ended_by"], "caller", "{l}");
        let (setup, answer, end) = (
            l["setup_ms"].as_u64().unwrap(),
            l["answer_ms"].as_u64().unwrap(),
            l["end_ms"].as_u64().unwrap(),
        );
        assert!(setup > 0 && setup <= answer && answer <= end, "{l}");
        assert_eq!(l["duration_ms"].as_u64().unwrap(), end - answer, "{l}");
        assert_eq!(members(l), ["ms1"], "{l}");
        let m = &l["members"][0];
        assert!(m["tried_ms"].as_u64().unwrap() >= setup, "{l}");
        assert_eq!(m["answered_ms"], l["answer_ms"], "{l}");
        assert_eq!(m["left_ms"], l["end_ms"], "{l}");
        assert_eq!(m["why"], "call_ended", "{l}");
        assert_eq!(l["resumes"], serde_json::json!([]), "{l}");
        assert_eq!(l["takeovers"], serde_json::json!([]), "{l}");
        for side in ["from_a", "from_b"] {
            for key in ["packets", "lost", "jitter_ms", "max_gap_ms"] {
                assert!(l["rtp"][side][key].is_number(), "rtp.{side}.{key}: {l}");
            }
        }
    }
    for s in &starts {
        assert!(s.get("end_ms").is_none(), "{s}");
        assert!(
            ends.iter().any(|e| e["a_call_id"] == s["a_call_id"]),
            "a start line of a call that has an end line: {s}"
        );
    }
    tandem
        .wait_metric("tandem_cdr_records_total", &[], 10.0, SECS(5))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_resumed_off_a_killed_member_carries_the_resume_marks() {
    let bin = tandem_load();
    let ms1 = media_server(None, true).await;
    let ms2 = media_server(None, true).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cdr.jsonl");
    let tandem = tandem(ms1.addr(), ms2.addr(), &path, "").await;
    let json = dir.path().join("call.json");

    // 2 calls of 6 s on ms1; at 2 s ms1 is killed and they move to ms2.
    let kill = format!("kill -9 {}", ms1.pid().expect("ms1 runs"));
    let args = load_call_args(
        &tandem,
        2,
        "6s",
        &json,
        &["--fail-at", "2", "--fail-cmd", &kill],
    );
    let out = run_call(&bin, &args, SECS(60)).await;
    let said = said(&out, &tandem);
    assert!(out.status.success(), "{said}");
    assert_eq!(read_json(&json)["calls"]["completed"], 2, "{said}");

    let all = wait_end_lines(&path, 2, &tandem).await;
    for l in of_type(&all, "end") {
        assert_eq!(members(l), ["ms1", "ms2"], "{l}");
        let (m1, m2) = (&l["members"][0], &l["members"][1]);
        assert_eq!(m1["why"], "resumed_away", "{l}");
        assert!(m1["answered_ms"].is_u64() && m1["left_ms"].is_u64(), "{l}");
        assert!(m2["answered_ms"].as_u64() >= m1["left_ms"].as_u64(), "{l}");
        assert_eq!(m2["why"], "call_ended", "{l}");
        let resumes = l["resumes"].as_array().unwrap();
        assert_eq!(resumes.len(), 1, "{l}");
        assert_eq!(resumes[0]["from"], "ms1", "{l}");
        assert_eq!(resumes[0]["to"], "ms2", "{l}");
        assert_eq!(resumes[0]["outcome"], "ok", "{l}");
        assert_eq!(resumes[0]["at_ms"], m2["answered_ms"], "{l}");
        assert_eq!(l["reason"], "bye_caller", "{l}");
        assert_eq!(l["rtp"]["upstream_switches"], 1, "{l}");
        assert!(l["rtp"]["from_b"]["packets"].as_u64().unwrap() > 0, "{l}");
    }
    drop(ms2);
}

/// `kill -9`, and waits until the process is gone.
async fn kill_9(tandem: &mut Tandem) {
    tandem.signal("KILL");
    wait_for("tandem dead", SECS(5), || {
        let dead = !tandem.is_running();
        async move {
            if dead {
                Ok(())
            } else {
                Err("still running".to_owned())
            }
        }
    })
    .await;
}

/// Calls, then `kill -9` at once: every call SIPp saw end is in the file.
async fn complete_after_kill_9(policy: &str) {
    let ms1 = media_server(None, false).await;
    let ms2 = media_server(None, false).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cdr.jsonl");
    let mut tandem = tandem(ms1.addr(), ms2.addr(), &path, policy).await;
    place_calls(&tandem, 20, 100).await;
    // No wait: the process dies the moment the trunk saw its last BYE
    // answered.
    kill_9(&mut tandem).await;
    let all = lines(&path);
    let ends = of_type(&all, "end");
    assert_eq!(
        (ends.len(), distinct_a_call_ids(&ends)),
        (20, 20),
        "{all:?}\n{}",
        tandem.log_tail(20)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_right_after_calls_end_leaves_the_file_complete_fsync_every_record() {
    complete_after_kill_9("fsync = \"every_record\"\n").await;
}

/// The interval policy defers only the fsync (a machine crash's window):
/// the lines are written to the kernel as promptly, so a crash of the
/// process loses nothing more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_right_after_calls_end_leaves_the_file_complete_fsync_interval() {
    complete_after_kill_9("fsync = \"interval\"\nfsync_interval_ms = 60000\n").await;
}

/// A tmpfs of 64 KiB mounted on a temp dir, unmounted when dropped (also
/// when the test fails).
struct TinyDisk {
    dir: tempfile::TempDir,
}

impl TinyDisk {
    fn mount() -> TinyDisk {
        let dir = tempfile::tempdir().unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=64k", "tandem-cdr-test"])
            .arg(dir.path())
            .status()
            .expect("run mount");
        assert!(
            status.success(),
            "mounting a tmpfs needs root (CAP_SYS_ADMIN): {status}"
        );
        TinyDisk { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Fills the disk to the last byte with `filler`.
    fn fill(&self, filler: &Path) {
        use std::io::Write;
        let mut f = std::fs::File::create(filler).unwrap();
        let block = [b'x'; 4096];
        loop {
            match f.write(&block) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::StorageFull => break,
                Err(e) => panic!("filling the tmpfs: {e}"),
            }
        }
    }
}

impl Drop for TinyDisk {
    fn drop(&mut self) {
        // A Tandem killed a moment ago may still hold its file open
        // (busy): a few tries, then a lazy unmount (detached now, gone
        // when the last file closes).
        for _ in 0..20 {
            let unmounted = Command::new("umount")
                .arg(self.dir.path())
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if unmounted {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_never_stops_calls_and_the_backlog_is_written_when_space_returns() {
    let disk = TinyDisk::mount();
    let path = disk.path().join("cdr.jsonl");
    let filler = disk.path().join("filler");
    let ms1 = media_server(None, false).await;
    let ms2 = media_server(None, false).await;
    let mut tandem = tandem(ms1.addr(), ms2.addr(), &path, "fsync = \"every_record\"\n").await;
    disk.fill(&filler);

    // The calls are served while no CDR can be written.
    place_calls(&tandem, 5, 100).await;
    let errors = wait_for("CDR write errors counted", SECS(10), || async {
        let m = tandem.metrics().await;
        let errors = m.get("tandem_cdr_write_errors_total", &[]);
        if errors >= 1.0 && m.get("tandem_cdr_backlog", &[]) == 5.0 {
            Ok(errors)
        } else {
            Err(m.text().to_owned())
        }
    })
    .await;
    assert!(lines(&path).is_empty(), "nothing fits on the full disk");
    assert!(
        tandem.log().contains("CDR write failed"),
        "{}",
        tandem.log_tail(20)
    );
    // More calls while the disk stays full: still served, errors rise.
    place_calls(&tandem, 2, 100).await;
    wait_for("more CDR write errors", SECS(10), || async {
        let m = tandem.metrics().await;
        if m.get("tandem_cdr_write_errors_total", &[]) > errors {
            Ok(())
        } else {
            Err(m.text().to_owned())
        }
    })
    .await;

    // Space returns: the backlog reaches the file, whole lines only.
    std::fs::remove_file(&filler).unwrap();
    let all = wait_end_lines(&path, 7, &tandem).await;
    assert_eq!(distinct_a_call_ids(&of_type(&all, "end")), 7, "{all:?}");
    let m = tandem.metrics().await;
    assert_eq!(m.get("tandem_cdr_records_total", &[]), 7.0, "{}", m.text());
    assert_eq!(m.get("tandem_cdr_backlog", &[]), 0.0, "{}", m.text());
    assert_eq!(m.get("tandem_cdr_dropped_total", &[]), 0.0, "{}", m.text());
    // Dead before the tmpfs is unmounted (its file open keeps it busy).
    kill_9(&mut tandem).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigusr1_reopens_the_file_after_a_logrotate_rename() {
    let ms1 = media_server(None, false).await;
    let ms2 = media_server(None, false).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cdr.jsonl");
    let rotated = dir.path().join("cdr.jsonl.1");
    let tandem = tandem(ms1.addr(), ms2.addr(), &path, "").await;
    place_calls(&tandem, 2, 100).await;
    wait_end_lines(&path, 2, &tandem).await;

    // logrotate: rename, then `postrotate kill -USR1`.
    std::fs::rename(&path, &rotated).unwrap();
    tandem.signal("USR1");
    wait_for("the CDR file opened again", SECS(5), || async {
        if path.exists() {
            Ok(())
        } else {
            Err(tandem.log_tail(10))
        }
    })
    .await;
    place_calls(&tandem, 3, 100).await;
    wait_end_lines(&path, 3, &tandem).await;
    assert_eq!(of_type(&lines(&rotated), "end").len(), 2);
    assert_eq!(of_type(&lines(&path), "end").len(), 3);
    let mut tandem = tandem;
    assert!(tandem.is_running(), "SIGUSR1 must not end the process");
}
