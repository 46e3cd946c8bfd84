//! Call detail records in a file of their own (`[cdr]`): one JSON line per
//! call (schema version 1, see README "CDRs"), optionally a start line at
//! each answer.
//!
//! The engine never waits for the disk: it hands each line to a bounded
//! channel with `try_send` (full: the line is dropped and counted). A
//! writer thread of its own appends the lines to the file (`O_APPEND`):
//! whatever it finds queued is written with one write(2) as soon as it is
//! there, under both fsync policies, so a crash of the *process* loses
//! only lines still in the channel (calls that ended in the last instant
//! before the crash). The fsync policy is about the machine crashing:
//! `every_record` fsyncs after every write, `interval` at most every
//! `fsync_interval_ms` (a power cut loses at most that window).
//!
//! A write that fails (a full disk: ENOSPC) keeps its lines in a bounded
//! backlog, retried until space returns; beyond the bound new lines are
//! dropped and counted. Lines are never split: a partly written line is
//! finished before anything else is written, rotated or reopened.
//!
//! Rotation: by size (`rotate_size_mb`: the file is renamed to
//! `path.YYYYmmddTHHMMSS`, UTC, and a new one opened), and on SIGUSR1 the
//! file is reopened by name (logrotate's `postrotate kill -USR1`).

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use media_relay::{SessionStats, Side, StreamStats};
use serde::{Deserialize, Serialize};

use crate::b2bua::{CallEnd, MemberUse, ResumeMark, TakeoverMark};
use crate::config::ConfigError;

/// The version of the line format (`"v"`). Fields may be added within a
/// version; renaming or removing one makes a new version.
pub const SCHEMA_VERSION: u32 = 1;

/// Lines that may wait between the engine and the writer.
const QUEUE: usize = 4096;

/// How much of the backlog one write(2) carries at most.
const BATCH_BYTES: usize = 256 * 1024;

/// How often the writer looks at the reopen flag and retries a failed
/// write when nothing else wakes it.
const TICK: Duration = Duration::from_millis(200);

/// At most one warning per this, per kind (a full disk must not flood the
/// log it may share).
const WARN_EVERY: Duration = Duration::from_secs(10);

/// When a record reaches the disk (see the module's comment).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FsyncPolicy {
    EveryRecord,
    #[default]
    Interval,
}

/// `[cdr]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CdrConfig {
    /// The file lines are appended to (created if missing, mode 0640).
    pub path: PathBuf,
    #[serde(default)]
    pub fsync: FsyncPolicy,
    /// With `fsync = "interval"`: at most this long between fsyncs.
    #[serde(default = "default_fsync_interval_ms")]
    pub fsync_interval_ms: u64,
    /// Rename the file and start a new one once it is this big; 0: never.
    #[serde(default)]
    pub rotate_size_mb: u64,
    /// A `type: start` line at each answer, too.
    #[serde(default)]
    pub start_records: bool,
    /// Lines kept in memory while the file cannot be written (a full
    /// disk); beyond them new lines are dropped and counted.
    #[serde(default = "default_backlog")]
    pub backlog: usize,
}

fn default_fsync_interval_ms() -> u64 {
    1000
}
fn default_backlog() -> usize {
    10_000
}

impl CdrConfig {
    pub fn validate(
        &self,
        invalid: &impl Fn(&str, String) -> ConfigError,
    ) -> Result<(), ConfigError> {
        // Absolute: a service's working directory is nobody's choice.
        let text = self.path.to_string_lossy();
        if !self.path.is_absolute() || text.ends_with('/') || self.path.is_dir() {
            return Err(invalid(
                "cdr.path",
                "must be the absolute path of a file".into(),
            ));
        }
        if !(1..=60_000).contains(&self.fsync_interval_ms) {
            return Err(invalid(
                "cdr.fsync_interval_ms",
                "must be 1 to 60000".into(),
            ));
        }
        if self.rotate_size_mb > 1_000_000 {
            return Err(invalid(
                "cdr.rotate_size_mb",
                "must be at most 1000000 (0: no rotation by size)".into(),
            ));
        }
        if !(1..=1_000_000).contains(&self.backlog) {
            return Err(invalid("cdr.backlog", "must be 1 to 1000000".into()));
        }
        Ok(())
    }

    fn rotate_bytes(&self) -> Option<u64> {
        (self.rotate_size_mb > 0).then(|| self.rotate_size_mb * 1024 * 1024)
    }
}

// ---- The line ----------------------------------------------------------

/// One CDR line, as written.
#[derive(Debug, Serialize)]
struct Line<'a> {
    v: u32,
    #[serde(rename = "type")]
    kind: &'static str,
    call: u64,
    a_call_id: &'a str,
    b_call_id: &'a str,
    trunk: &'a str,
    rule: &'a str,
    group: &'a str,
    caller: &'a str,
    callee: &'a str,
    setup_ms: u64,
    answer_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    end_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    duration_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ended_by: Option<&'static str>,
    reason_header: Option<&'a str>,
    members: Vec<MemberLine<'a>>,
    resumes: Vec<ResumeLine<'a>>,
    takeovers: Vec<TakeoverLine>,
    marks_dropped: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    rtp: Option<Rtp>,
}

#[derive(Debug, Serialize)]
struct MemberLine<'a> {
    member: &'a str,
    tried_ms: u64,
    answered_ms: Option<u64>,
    left_ms: Option<u64>,
    why: Option<&'a str>,
}

#[derive(Debug, Serialize)]
struct ResumeLine<'a> {
    at_ms: u64,
    from: &'a str,
    to: &'a str,
    outcome: &'a str,
}

#[derive(Debug, Serialize)]
struct TakeoverLine {
    at_ms: u64,
    epoch: u64,
}

/// RTP per direction: what the relay received from leg A (the caller's
/// side) and from leg B (the media server's).
#[derive(Debug, Serialize)]
struct Rtp {
    from_a: Stream,
    from_b: Stream,
    upstream_switches: u32,
}

#[derive(Debug, Serialize)]
struct Stream {
    packets: u64,
    lost: i64,
    jitter_ms: f64,
    max_gap_ms: u64,
}

impl From<&StreamStats> for Stream {
    fn from(s: &StreamStats) -> Stream {
        Stream {
            packets: s.packets,
            lost: s.lost,
            // Three decimals: a line is for people and scripts, not for
            // float noise.
            jitter_ms: (s.jitter_ms * 1000.0).round() / 1000.0,
            max_gap_ms: s.max_gap.as_millis() as u64,
        }
    }
}

/// Who ended the call, from the machine's end reason.
pub fn ended_by(reason: &str) -> &'static str {
    match reason {
        "bye_caller" | "cancelled" => "caller",
        "bye_server" | "rejected" => "callee",
        _ => "tandem",
    }
}

fn line<'a>(rec: &'a CallEnd, end: Option<Option<&SessionStats>>) -> Line<'a> {
    let h = &rec.history;
    let answer_ms = (rec.answer_ms > 0).then_some(rec.answer_ms);
    let ended = end.is_some();
    Line {
        v: SCHEMA_VERSION,
        kind: if ended { "end" } else { "start" },
        call: rec.call,
        a_call_id: &rec.a_call_id,
        b_call_id: &rec.b_call_id,
        trunk: &rec.source,
        rule: &rec.rule,
        group: &rec.group,
        caller: &rec.caller,
        callee: &rec.callee,
        setup_ms: rec.setup_ms,
        answer_ms,
        end_ms: ended.then_some(rec.end_ms),
        duration_ms: ended.then(|| answer_ms.map_or(0, |a| rec.end_ms.saturating_sub(a))),
        reason: ended.then_some(rec.reason.as_str()),
        ended_by: ended.then(|| ended_by(&rec.reason)),
        reason_header: h.reason_header.as_deref(),
        members: h.members.iter().map(member_line).collect(),
        resumes: h.resumes.iter().map(resume_line).collect(),
        takeovers: h.takeovers.iter().map(takeover_line).collect(),
        marks_dropped: h.dropped,
        rtp: end.map(|stats| match stats {
            Some(s) => Rtp {
                from_a: s.side(Side::A).into(),
                from_b: s.side(Side::B).into(),
                upstream_switches: s.upstream_switches,
            },
            None => Rtp {
                from_a: (&StreamStats::default()).into(),
                from_b: (&StreamStats::default()).into(),
                upstream_switches: 0,
            },
        }),
    }
}

fn member_line(m: &MemberUse) -> MemberLine<'_> {
    MemberLine {
        member: &m.member,
        tried_ms: m.tried_at,
        answered_ms: m.answered_at,
        left_ms: m.left_at,
        why: m.why.as_deref(),
    }
}

fn resume_line(r: &ResumeMark) -> ResumeLine<'_> {
    ResumeLine {
        at_ms: r.at,
        from: &r.from,
        to: &r.to,
        outcome: &r.outcome,
    }
}

fn takeover_line(t: &TakeoverMark) -> TakeoverLine {
    TakeoverLine {
        at_ms: t.at,
        epoch: t.epoch,
    }
}

/// The end line of a call (with its relay statistics, if the relay still
/// had the session), newline included.
pub fn end_line(rec: &CallEnd, stats: Option<&SessionStats>) -> Vec<u8> {
    to_line(&line(rec, Some(stats)))
}

/// The start line of an answered call, newline included.
pub fn start_line(rec: &CallEnd) -> Vec<u8> {
    to_line(&line(rec, None))
}

fn to_line(l: &Line<'_>) -> Vec<u8> {
    // Serialising plain strings and numbers cannot fail; if it ever did,
    // the line would be an empty object rather than a panic.
    let mut out = serde_json::to_vec(l).unwrap_or_else(|_| b"{}".to_vec());
    out.push(b'\n');
    out
}

// ---- The engine's side -------------------------------------------------

/// The engine's end of the channel: never blocks. With shards every
/// shard has a clone (one queue, one writer, one warning budget).
#[derive(Clone)]
pub struct CdrSink {
    tx: SyncSender<Vec<u8>>,
    warned: Arc<RateLimit>,
}

impl CdrSink {
    /// Hands a line to the writer; a full queue drops it (counted).
    pub fn submit(&self, line: Vec<u8>) {
        match self.tx.try_send(line) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                crate::metrics::cdr_dropped(1);
                if let Some(n) = self.warned.allow() {
                    tracing::warn!(
                        dropped = n,
                        "CDR queue full: the writer cannot keep up (is the disk slow?); CDRs dropped"
                    );
                }
            }
            Err(TrySendError::Disconnected(_)) => {
                crate::metrics::cdr_dropped(1);
                if let Some(n) = self.warned.allow() {
                    tracing::error!(dropped = n, "the CDR writer is gone; CDRs dropped");
                }
            }
        }
    }
}

/// "At most one warning per [`WARN_EVERY`]", counting what it held back.
/// Atomics, so the engine can share it through `&self`.
#[derive(Default)]
struct RateLimit {
    /// When the last warning went out, in ms since `epoch` (+1; 0: never).
    last: AtomicU64,
    held: AtomicU64,
    epoch: std::sync::OnceLock<Instant>,
}

impl RateLimit {
    /// Some(events since the last warning) when a warning may go out now.
    fn allow(&self) -> Option<u64> {
        let epoch = *self.epoch.get_or_init(Instant::now);
        let now = epoch.elapsed().as_millis() as u64 + 1;
        let held = self.held.fetch_add(1, Ordering::Relaxed) + 1;
        let last = self.last.load(Ordering::Relaxed);
        if last != 0 && now.saturating_sub(last) < WARN_EVERY.as_millis() as u64 {
            return None;
        }
        self.last.store(now, Ordering::Relaxed);
        self.held.store(0, Ordering::Relaxed);
        Some(held)
    }
}

// ---- The writer --------------------------------------------------------

/// The writer thread, seen from the process around it.
pub struct CdrWriter {
    thread: std::thread::JoinHandle<()>,
    reopen: Arc<AtomicBool>,
}

impl CdrWriter {
    /// Opens the file (an error here stops the start: a CDR file that
    /// cannot be opened is a configuration mistake to fix now) and starts
    /// the writer.
    pub fn start(config: &CdrConfig) -> io::Result<(CdrSink, CdrWriter)> {
        let appender = Appender::open(config)?;
        let (tx, rx) = sync_channel(QUEUE);
        let reopen = Arc::new(AtomicBool::new(false));
        let flag = reopen.clone();
        let thread = std::thread::Builder::new()
            .name("cdr-writer".into())
            .spawn(move || run_writer(appender, rx, &flag))?;
        let sink = CdrSink {
            tx,
            warned: Arc::default(),
        };
        Ok((sink, CdrWriter { thread, reopen }))
    }

    /// The flag SIGUSR1 sets: the writer reopens the file by name.
    pub fn reopen_flag(&self) -> Arc<AtomicBool> {
        self.reopen.clone()
    }

    /// Waits (at most `deadline`) for the writer to write what it holds
    /// once the sink is gone (the engine ended).
    pub fn finish(self, deadline: Duration) {
        let until = Instant::now() + deadline;
        while !self.thread.is_finished() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(10));
        }
        if self.thread.is_finished() {
            let _ = self.thread.join();
        } else {
            tracing::warn!("the CDR writer did not finish in time; CDRs may be missing");
        }
    }
}

fn run_writer(mut appender: Appender, rx: Receiver<Vec<u8>>, reopen: &AtomicBool) {
    loop {
        let wait = appender.next_wake(Instant::now());
        let mut open = true;
        match rx.recv_timeout(wait) {
            Ok(line) => {
                appender.push(line);
                // Whatever else is queued goes in the same write.
                while let Ok(line) = rx.try_recv() {
                    appender.push(line);
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => open = false,
        }
        if reopen.swap(false, Ordering::Relaxed) {
            appender.reopen_requested();
        }
        appender.work(Instant::now());
        if !open {
            appender.close();
            return;
        }
    }
}

/// The file and what waits to go into it: plain state, driven by the
/// writer thread (and by tests directly).
struct Appender {
    path: PathBuf,
    file: Option<File>,
    /// Bytes in the file as we know it (for rotation).
    size: u64,
    rotate_at: Option<u64>,
    policy: FsyncPolicy,
    fsync_interval: Duration,
    backlog: Backlog,
    /// Written since the last fsync.
    dirty: bool,
    last_sync: Instant,
    /// A reopen was asked for and waits for a line to be finished.
    reopen: bool,
    /// The last write failed: the next attempt waits a tick.
    failing_since: Option<Instant>,
    warned: RateLimit,
    scratch: Vec<u8>,
}

/// Lines not yet in the file, oldest first; the first may be partly
/// written (`head_written` bytes of it).
struct Backlog {
    lines: VecDeque<Vec<u8>>,
    head_written: usize,
    limit: usize,
}

impl Backlog {
    /// False when the line was dropped (the backlog is full).
    fn push(&mut self, line: Vec<u8>) -> bool {
        if self.lines.len() >= self.limit {
            return false;
        }
        self.lines.push_back(line);
        true
    }

    /// `n` more bytes reached the file: the lines completed by them leave.
    /// Returns how many lines were completed.
    fn consumed(&mut self, mut n: usize) -> u64 {
        let mut done = 0;
        while let Some(head) = self.lines.front() {
            let left = head.len() - self.head_written;
            if n < left {
                self.head_written += n;
                break;
            }
            n -= left;
            self.lines.pop_front();
            self.head_written = 0;
            done += 1;
        }
        done
    }

    /// The next bytes to write: the rest of the head line and whole lines
    /// after it, up to about [`BATCH_BYTES`].
    fn fill(&self, out: &mut Vec<u8>) {
        out.clear();
        for (i, line) in self.lines.iter().enumerate() {
            if i > 0 && out.len() >= BATCH_BYTES {
                break;
            }
            let from = if i == 0 { self.head_written } else { 0 };
            out.extend_from_slice(&line[from..]);
        }
    }
}

fn open_append(path: &Path) -> io::Result<(File, u64)> {
    let mut file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .mode(0o640)
        .open(path)?;
    let mut size = file.metadata()?.len();
    // A line cut short by a full disk before a stop (or kill -9) would
    // swallow the next run's first line: end it first, so that only the
    // cut record is unreadable. Best effort: a disk still full keeps it
    // for the next open.
    let mut last = [0u8; 1];
    if size > 0 && file.read_at(&mut last, size - 1).is_ok() && last[0] != b'\n' {
        match file.write_all(b"\n") {
            Ok(()) => size += 1,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "CDR file ends in a cut line that could not be ended")
            }
        }
    }
    Ok((file, size))
}

impl Appender {
    fn open(config: &CdrConfig) -> io::Result<Appender> {
        let (file, size) = open_append(&config.path).map_err(|e| {
            io::Error::new(e.kind(), format!("cdr.path {}: {e}", config.path.display()))
        })?;
        Ok(Appender {
            path: config.path.clone(),
            file: Some(file),
            size,
            rotate_at: config.rotate_bytes(),
            policy: config.fsync,
            fsync_interval: Duration::from_millis(config.fsync_interval_ms),
            backlog: Backlog {
                lines: VecDeque::new(),
                head_written: 0,
                limit: config.backlog,
            },
            dirty: false,
            last_sync: Instant::now(),
            reopen: false,
            failing_since: None,
            warned: RateLimit::default(),
            scratch: Vec::new(),
        })
    }

    fn push(&mut self, line: Vec<u8>) {
        if !self.backlog.push(line) {
            crate::metrics::cdr_dropped(1);
            if let Some(n) = self.warned.allow() {
                tracing::error!(
                    dropped = n,
                    backlog = self.backlog.limit,
                    path = %self.path.display(),
                    "CDR backlog full (the file cannot be written): CDRs dropped"
                );
            }
        }
        crate::metrics::cdr_backlog(self.backlog.lines.len());
    }

    /// How long the writer may sleep: until the next fsync due, or a tick.
    fn next_wake(&self, now: Instant) -> Duration {
        if self.dirty && self.policy == FsyncPolicy::Interval {
            let due = self.last_sync + self.fsync_interval;
            return due.saturating_duration_since(now).min(TICK);
        }
        TICK
    }

    fn reopen_requested(&mut self) {
        self.reopen = true;
    }

    /// Everything the writer does after a wake-up: write, rotate or
    /// reopen, fsync.
    fn work(&mut self, now: Instant) {
        let retry_due = self
            .failing_since
            .is_none_or(|t| now.saturating_duration_since(t) >= TICK);
        if retry_due {
            self.write_backlog(now);
        }
        // Between whole lines only: a line is never split over two files.
        if self.backlog.head_written == 0 {
            if self.reopen {
                self.reopen = false;
                self.reopen_file("reopen");
            } else if self.rotate_at.is_some_and(|limit| self.size >= limit) {
                self.rotate();
            }
        }
        self.sync_if_due(now);
        crate::metrics::cdr_backlog(self.backlog.lines.len());
    }

    /// Writes as much of the backlog as the file takes.
    fn write_backlog(&mut self, now: Instant) {
        while !self.backlog.lines.is_empty() {
            let Some(file) = self.file.as_mut() else {
                // A reopen failed: try it again first.
                self.reopen_file("retry");
                if self.file.is_none() {
                    self.failing_since = Some(now);
                    return;
                }
                continue;
            };
            self.backlog.fill(&mut self.scratch);
            let mut written = 0;
            let mut failure = None;
            while written < self.scratch.len() {
                match file.write(&self.scratch[written..]) {
                    Ok(0) => {
                        failure = Some(io::Error::from(io::ErrorKind::WriteZero));
                        break;
                    }
                    Ok(n) => written += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        failure = Some(e);
                        break;
                    }
                }
            }
            if written > 0 {
                self.dirty = true;
                self.size += written as u64;
                let lines = self.backlog.consumed(written);
                crate::metrics::cdr_written(lines);
            }
            if let Some(e) = failure {
                self.write_failed("write", &e, now);
                return;
            }
            if self.failing_since.take().is_some() {
                tracing::warn!(path = %self.path.display(), "CDR file writable again: backlog written");
            }
            if self.policy == FsyncPolicy::EveryRecord {
                self.sync(now);
            }
        }
    }

    fn write_failed(&mut self, what: &str, e: &io::Error, now: Instant) {
        crate::metrics::cdr_write_error();
        self.failing_since = Some(now);
        if let Some(n) = self.warned.allow() {
            tracing::error!(
                path = %self.path.display(),
                error = %e,
                errors = n,
                backlog = self.backlog.lines.len(),
                "CDR {what} failed; records kept in memory and retried (calls are not affected)"
            );
        }
    }

    fn sync_if_due(&mut self, now: Instant) {
        let due = match self.policy {
            FsyncPolicy::EveryRecord => true,
            FsyncPolicy::Interval => {
                now.saturating_duration_since(self.last_sync) >= self.fsync_interval
            }
        };
        if self.dirty && due {
            self.sync(now);
        }
    }

    fn sync(&mut self, now: Instant) {
        let Some(file) = self.file.as_ref() else {
            return;
        };
        match file.sync_data() {
            Ok(()) => {
                self.dirty = false;
                self.last_sync = now;
            }
            Err(e) => {
                // The next try waits its interval: a disk that fails every
                // fsync must not turn the writer into a busy loop.
                self.last_sync = now;
                self.write_failed("fsync", &e, now);
            }
        }
    }

    /// Renames the file to `path.YYYYmmddTHHMMSS` and starts a new one.
    fn rotate(&mut self) {
        let now = Instant::now();
        self.sync(now);
        let to = rotated_name(&self.path, unix_seconds());
        if let Err(e) = std::fs::rename(&self.path, &to) {
            self.write_failed("rotation", &e, now);
            // Not again on every line: the next try is at the next limit.
            self.size = 0;
            return;
        }
        tracing::info!(to = %to.display(), "CDR file rotated");
        self.reopen_file("rotate");
    }

    /// Opens the file by name again (after an outside rename, a rotation,
    /// or a failure).
    fn reopen_file(&mut self, why: &str) {
        let now = Instant::now();
        self.sync(now);
        match open_append(&self.path) {
            Ok((file, size)) => {
                self.file = Some(file);
                self.size = size;
                tracing::info!(path = %self.path.display(), why, "CDR file opened");
            }
            Err(e) => {
                // Keep writing to the old one if there is one: a line in a
                // renamed file beats a line lost.
                self.write_failed("reopen", &e, now);
            }
        }
    }

    /// The sink is gone: last writes and a final fsync.
    fn close(&mut self) {
        let now = Instant::now();
        self.failing_since = None;
        self.write_backlog(now);
        self.sync(now);
        if !self.backlog.lines.is_empty() {
            tracing::error!(
                lost = self.backlog.lines.len(),
                path = %self.path.display(),
                "stopping with CDRs not written"
            );
        }
    }
}

fn unix_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `path.YYYYmmddTHHMMSS` (UTC) for `secs`, with `-N` added when that
/// name is taken (two rotations in one second).
fn rotated_name(path: &Path, secs: u64) -> PathBuf {
    let base = format!("{}.{}", path.display(), utc_stamp(secs));
    let mut name = PathBuf::from(&base);
    let mut n = 1;
    while name.exists() && n < 1000 {
        name = PathBuf::from(format!("{base}-{n}"));
        n += 1;
    }
    name
}

/// `YYYYmmddTHHMMSS` in UTC (days to a civil date: Howard Hinnant's
/// algorithm; no calendar crate for one timestamp).
fn utc_stamp(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests;
