use super::*;
use crate::b2bua::CallHistory;
use media_relay::SessionId;

const EXAMPLE: &str = include_str!("../../../deploy/tandem.example.toml");

fn record() -> CallEnd {
    let mut history = CallHistory::default();
    history.tried("ms1", 1_000);
    history.answered(1_200);
    history.left(5_000, "resumed_away");
    history.tried("ms2", 5_300);
    history.answered(5_400);
    history.resumed(ResumeMark {
        at: 5_400,
        from: "ms1".into(),
        to: "ms2".into(),
        outcome: "ok".into(),
    });
    history.taken_over(TakeoverMark {
        at: 6_000,
        epoch: 7,
    });
    history.left(9_000, "call_ended");
    history.reason_header = Some("Q.850;cause=16".into());
    CallEnd {
        call: 42,
        session: SessionId(42),
        a_call_id: "a-1@trunk".into(),
        b_call_id: "b-1@tandem".into(),
        source: "carrier".into(),
        rule: "default".into(),
        group: "ivr".into(),
        caller: "sip:alice@example.com".into(),
        callee: "sip:100@tandem".into(),
        servers: vec!["ms1@1000".into(), "ms2@5300".into()],
        resumes: 1,
        setup_ms: 900,
        answer_ms: 1_200,
        end_ms: 9_000,
        reason: "bye_caller".into(),
        history,
    }
}

fn json(line: &[u8]) -> serde_json::Value {
    assert_eq!(line.last(), Some(&b'\n'), "one line, newline-terminated");
    assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1);
    serde_json::from_slice(line).unwrap()
}

#[test]
fn end_line_carries_every_field_of_schema_1() {
    let mut stats = SessionStats {
        id: SessionId(42),
        side_a: StreamStats::default(),
        side_b: StreamStats::default(),
        upstream_switches: 1,
    };
    stats.side_a.packets = 400;
    stats.side_a.lost = 3;
    stats.side_a.jitter_ms = 1.23456;
    stats.side_a.max_gap = Duration::from_millis(180);
    stats.side_b.packets = 390;
    let v = json(&end_line(&record(), Some(&stats)));
    assert_eq!(v["v"], 1);
    assert_eq!(v["type"], "end");
    assert_eq!(v["a_call_id"], "a-1@trunk");
    assert_eq!(v["b_call_id"], "b-1@tandem");
    assert_eq!(v["trunk"], "carrier");
    assert_eq!(v["rule"], "default");
    assert_eq!(v["group"], "ivr");
    assert_eq!(v["caller"], "sip:alice@example.com");
    assert_eq!(v["callee"], "sip:100@tandem");
    assert_eq!(v["setup_ms"], 900);
    assert_eq!(v["answer_ms"], 1_200);
    assert_eq!(v["end_ms"], 9_000);
    assert_eq!(v["duration_ms"], 7_800);
    assert_eq!(v["reason"], "bye_caller");
    assert_eq!(v["ended_by"], "caller");
    assert_eq!(v["reason_header"], "Q.850;cause=16");
    let members = v["members"].as_array().unwrap();
    assert_eq!(members.len(), 2);
    assert_eq!(members[0]["member"], "ms1");
    assert_eq!(members[0]["tried_ms"], 1_000);
    assert_eq!(members[0]["answered_ms"], 1_200);
    assert_eq!(members[0]["left_ms"], 5_000);
    assert_eq!(members[0]["why"], "resumed_away");
    assert_eq!(members[1]["member"], "ms2");
    assert_eq!(members[1]["why"], "call_ended");
    assert_eq!(
        v["resumes"],
        serde_json::json!([{"at_ms": 5400, "from": "ms1", "to": "ms2", "outcome": "ok"}])
    );
    assert_eq!(
        v["takeovers"],
        serde_json::json!([{"at_ms": 6000, "epoch": 7}])
    );
    assert_eq!(v["marks_dropped"], 0);
    assert_eq!(v["rtp"]["from_a"]["packets"], 400);
    assert_eq!(v["rtp"]["from_a"]["lost"], 3);
    assert_eq!(v["rtp"]["from_a"]["jitter_ms"], 1.235);
    assert_eq!(v["rtp"]["from_a"]["max_gap_ms"], 180);
    assert_eq!(v["rtp"]["from_b"]["packets"], 390);
    assert_eq!(v["rtp"]["upstream_switches"], 1);
}

#[test]
fn unanswered_call_has_null_answer_and_zero_duration() {
    let mut rec = record();
    rec.answer_ms = 0;
    rec.reason = "rejected".into();
    let v = json(&end_line(&rec, None));
    assert!(v["answer_ms"].is_null());
    assert_eq!(v["duration_ms"], 0);
    assert_eq!(v["ended_by"], "callee");
    assert_eq!(v["rtp"]["from_a"]["packets"], 0, "no relay session: zeros");
}

#[test]
fn start_line_has_no_end_fields() {
    let mut rec = record();
    rec.end_ms = 0;
    rec.reason.clear();
    let v = json(&start_line(&rec));
    assert_eq!(v["v"], 1);
    assert_eq!(v["type"], "start");
    assert_eq!(v["answer_ms"], 1_200);
    for absent in ["end_ms", "duration_ms", "reason", "ended_by", "rtp"] {
        assert!(v.get(absent).is_none(), "{absent} in a start line: {v}");
    }
}

#[test]
fn history_keeps_the_first_and_latest_entries_within_its_bound() {
    let mut h = CallHistory::default();
    for i in 0..40u64 {
        h.tried(&format!("ms{i}"), i);
        h.left(i, "failed");
    }
    assert_eq!(h.members.len(), crate::b2bua::HISTORY_MAX);
    assert_eq!(h.dropped, 40 - crate::b2bua::HISTORY_MAX as u32);
    assert_eq!(h.members[0].member, "ms0");
    assert_eq!(h.members.last().unwrap().member, "ms39");
}

#[test]
fn utc_stamps() {
    assert_eq!(utc_stamp(0), "19700101T000000");
    assert_eq!(utc_stamp(1_700_000_000), "20231114T221320");
    assert_eq!(utc_stamp(951_825_600), "20000229T120000");
}

fn config(path: &Path) -> CdrConfig {
    CdrConfig {
        path: path.to_owned(),
        fsync: FsyncPolicy::EveryRecord,
        fsync_interval_ms: 1000,
        rotate_size_mb: 0,
        start_records: false,
        backlog: 4,
    }
}

fn numbered(i: usize) -> Vec<u8> {
    format!("{{\"n\":{i}}}\n").into_bytes()
}

fn lines_of(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn backlog_is_bounded_and_keeps_partly_written_lines_whole() {
    let mut b = Backlog {
        lines: VecDeque::new(),
        head_written: 0,
        limit: 3,
    };
    assert!(b.push(b"aaaa\n".to_vec()));
    assert!(b.push(b"bb\n".to_vec()));
    assert!(b.push(b"c\n".to_vec()));
    assert!(!b.push(b"d\n".to_vec()), "beyond the bound: dropped");
    assert_eq!(b.lines.len(), 3);
    // 7 bytes reached the file: "aaaa\n" and "bb" of the second line.
    assert_eq!(b.consumed(7), 1);
    let mut out = Vec::new();
    b.fill(&mut out);
    assert_eq!(out, b"\nc\n", "the rest of the half-written line first");
    assert_eq!(b.consumed(3), 2);
    assert!(b.lines.is_empty());
}

#[test]
fn a_full_disk_keeps_records_until_space_returns() {
    // /dev/full answers every write with ENOSPC: the disk is full.
    let dir = tempfile::tempdir().unwrap();
    let mut a = Appender::open(&config(Path::new("/dev/full"))).unwrap();
    for i in 0..6 {
        a.push(numbered(i));
    }
    let t0 = Instant::now();
    a.work(t0);
    assert!(a.failing_since.is_some(), "the write failed");
    assert_eq!(a.backlog.lines.len(), 4, "kept up to the backlog bound");
    // Space returns (the same records go to a file that takes them).
    a.path = dir.path().join("cdr.jsonl");
    a.file = None;
    a.work(t0 + TICK);
    assert!(a.failing_since.is_none());
    assert!(a.backlog.lines.is_empty());
    assert_eq!(
        lines_of(&a.path),
        ["{\"n\":0}", "{\"n\":1}", "{\"n\":2}", "{\"n\":3}"]
    );
}

#[test]
fn rotation_by_size_renames_and_starts_a_new_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cdr.jsonl");
    let mut a = Appender::open(&config(&path)).unwrap();
    // 1 MB is the smallest configurable size; the test's limit is bytes.
    a.rotate_at = Some(20);
    for i in 0..3 {
        a.push(numbered(i));
    }
    a.work(Instant::now());
    a.push(numbered(3));
    a.work(Instant::now());
    let mut rotated: Vec<PathBuf> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p != &path)
        .collect();
    rotated.sort();
    assert_eq!(rotated.len(), 1, "{rotated:?}");
    let name = rotated[0].file_name().unwrap().to_str().unwrap().to_owned();
    assert!(
        regex::Regex::new(r"^cdr\.jsonl\.\d{8}T\d{6}$")
            .unwrap()
            .is_match(&name),
        "{name}"
    );
    assert_eq!(
        lines_of(&rotated[0]),
        ["{\"n\":0}", "{\"n\":1}", "{\"n\":2}"]
    );
    assert_eq!(lines_of(&path), ["{\"n\":3}"]);
}

#[test]
fn reopen_after_an_outside_rename() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cdr.jsonl");
    let moved = dir.path().join("cdr.jsonl.1");
    let mut a = Appender::open(&config(&path)).unwrap();
    a.push(numbered(0));
    a.work(Instant::now());
    std::fs::rename(&path, &moved).unwrap();
    a.reopen_requested();
    a.push(numbered(1));
    a.work(Instant::now());
    a.push(numbered(2));
    a.work(Instant::now());
    assert_eq!(lines_of(&moved), ["{\"n\":0}", "{\"n\":1}"]);
    assert_eq!(lines_of(&path), ["{\"n\":2}"]);
}

#[test]
fn a_line_cut_short_before_a_restart_does_not_swallow_the_next_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cdr.jsonl");
    // What a full disk and then a stop leave behind: half a line.
    std::fs::write(&path, b"{\"n\":0}\n{\"n\":").unwrap();
    let mut a = Appender::open(&config(&path)).unwrap();
    a.push(numbered(1));
    a.work(Instant::now());
    assert_eq!(lines_of(&path), ["{\"n\":0}", "{\"n\":", "{\"n\":1}"]);
}

#[test]
fn fsync_policies() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cdr.jsonl");
    let mut every = Appender::open(&config(&path)).unwrap();
    every.push(numbered(0));
    every.work(Instant::now());
    assert!(!every.dirty, "every_record: synced after the write");

    let mut cfg = config(&path);
    cfg.fsync = FsyncPolicy::Interval;
    cfg.fsync_interval_ms = 60_000;
    let mut interval = Appender::open(&cfg).unwrap();
    let t0 = interval.last_sync;
    interval.push(numbered(1));
    interval.work(t0 + Duration::from_secs(1));
    assert!(interval.dirty, "interval: not synced before the interval");
    assert_eq!(
        lines_of(&path).len(),
        2,
        "but written to the kernel at once under both policies"
    );
    assert!(interval.next_wake(t0 + Duration::from_secs(1)) <= TICK);
    interval.work(t0 + Duration::from_secs(60));
    assert!(!interval.dirty, "interval: synced once it passed");
}

#[test]
fn writer_thread_writes_what_the_sink_hands_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cdr.jsonl");
    let (sink, writer) = CdrWriter::start(&config(&path)).unwrap();
    for i in 0..3 {
        sink.submit(numbered(i));
    }
    drop(sink);
    writer.finish(Duration::from_secs(5));
    assert_eq!(lines_of(&path).len(), 3);
}

fn parse(text: &str) -> Result<crate::config::Config, ConfigError> {
    crate::config::Config::parse(text, Path::new("tandem.toml"))
}

#[test]
fn config_keys_are_validated_with_file_and_key() {
    let ok = parse(&format!(
        "{EXAMPLE}\n[cdr]\npath = \"/var/lib/tandem/cdr.jsonl\"\nfsync = \"every_record\"\nrotate_size_mb = 100\nstart_records = true\n"
    ))
    .unwrap();
    let cdr = ok.cdr.unwrap();
    assert_eq!(cdr.fsync, FsyncPolicy::EveryRecord);
    assert_eq!(cdr.fsync_interval_ms, 1000);
    assert_eq!(cdr.backlog, 10_000);
    assert!(cdr.start_records);
    assert!(parse(EXAMPLE).unwrap().cdr.is_none(), "no [cdr]: no file");

    let err = parse(&format!(
        "{EXAMPLE}\n[cdr]\npath = \"/tmp/c.jsonl\"\nfsync_interval_ms = 0\n"
    ))
    .unwrap_err()
    .to_string();
    assert_eq!(
        err,
        "tandem.toml: key `cdr.fsync_interval_ms`: must be 1 to 60000"
    );
    for bad in ["/tmp/", "/no/such/dir/", "cdr.jsonl", ""] {
        let err = parse(&format!("{EXAMPLE}\n[cdr]\npath = \"{bad}\"\n"))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err, "tandem.toml: key `cdr.path`: must be the absolute path of a file",
            "{bad}"
        );
    }
    let err = parse(&format!(
        "{EXAMPLE}\n[cdr]\npath = \"/tmp/c.jsonl\"\nbacklog = 0\n"
    ))
    .unwrap_err()
    .to_string();
    assert!(err.contains("`cdr.backlog`"), "{err}");
    let err = parse(&format!(
        "{EXAMPLE}\n[cdr]\npath = \"/tmp/c.jsonl\"\nfsync = \"sometimes\"\n"
    ))
    .unwrap_err()
    .to_string();
    assert!(err.contains("sometimes"), "{err}");
}
