//! Results: one record per call, the JSON report of a run and its human
//! summary.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::media::StreamReport;
use crate::rtp::RtpStats;
use crate::stats::{Dist, Second};

/// How a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Answered, held for the whole hold time, our BYE got a 2xx.
    Completed,
    /// Never answered (a final error status, timeout, transport error).
    Failed,
    /// Answered, then lost: the peer hung up before the hold time was
    /// over, or our BYE failed (481, 408, timeout).
    Dropped,
    /// Still in progress when the run was interrupted or the drain
    /// deadline passed.
    Unfinished,
}

/// One call.
#[derive(Debug, Clone, Serialize)]
pub struct CallRecord {
    pub call_id: String,
    /// Seconds since the start of the run.
    pub started_s: f64,
    pub outcome: Outcome,
    /// Why a call failed, dropped or is unfinished (`timeout`, `status_503`,
    /// `remote_bye`, `bye_481`, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// INVITE sent → first 2xx received, milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub setup_ms: Option<f64>,
    pub ended_s: f64,
    /// The call was up (answered, not hanging up) at the injected failure.
    pub up_at_failure: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rtp_sent: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rtp: Option<RtpStats>,
}

impl CallRecord {
    pub fn with_media(&mut self, report: StreamReport) {
        self.rtp_sent = Some(report.sent);
        self.rtp = Some(report.rx);
    }
}

/// Counts of calls by outcome and reason.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CallCounts {
    pub attempted: u64,
    pub answered: u64,
    pub completed: u64,
    pub failed: u64,
    pub dropped: u64,
    pub unfinished: u64,
    /// Failed calls by reason.
    pub failures: BTreeMap<String, u64>,
    /// Dropped calls by reason.
    pub drops: BTreeMap<String, u64>,
    /// Unfinished calls by reason.
    pub unfinished_reasons: BTreeMap<String, u64>,
}

impl CallCounts {
    pub fn count(&mut self, record: &CallRecord) {
        let reason = record.reason.clone().unwrap_or_else(|| "unknown".into());
        match record.outcome {
            Outcome::Completed => self.completed += 1,
            Outcome::Failed => {
                self.failed += 1;
                *self.failures.entry(reason).or_default() += 1;
            }
            Outcome::Dropped => {
                self.dropped += 1;
                *self.drops.entry(reason).or_default() += 1;
            }
            Outcome::Unfinished => {
                self.unfinished += 1;
                *self.unfinished_reasons.entry(reason).or_default() += 1;
            }
        }
    }
}

/// SIP events worth knowing about beyond the call outcomes.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SipCounts {
    /// 2xx to an INVITE received again (our ACK was lost or late) and
    /// ACKed again; never counted as a new answer.
    pub ok_retransmissions_received: u64,
    /// Our 2xx (to a re-INVITE) sent again while waiting for the ACK.
    pub ok_retransmissions_sent: u64,
    /// 2xx that arrived after the call had timed out (ACKed, then BYE).
    pub late_answers: u64,
    /// 2xx from a second fork or for an unknown call (ACKed, then BYE).
    pub stray_answers: u64,
    pub cancels_sent: u64,
    pub reinvites_received: u64,
    pub updates_received: u64,
    pub byes_received: u64,
    pub options_received: u64,
}

/// Calls per second.
#[derive(Debug, Clone, Serialize)]
pub struct CpsReport {
    /// The configured rate, if any.
    pub target: Option<f64>,
    /// Attempts per second between the first and the last attempt.
    pub attempted_per_s: f64,
    /// Highest number of calls answered within one second.
    pub peak_answered_per_s: u64,
}

/// RTP over a set of calls: totals and per-call distributions.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RtpReport {
    /// Calls that had media (answered with RTP on).
    pub calls: u64,
    pub packets_sent: u64,
    pub packets_received: u64,
    pub packets_expected: u64,
    pub packets_lost: u64,
    pub duplicates: u64,
    pub reordered: u64,
    pub ssrc_changes: u64,
    pub calls_with_loss: u64,
    pub calls_without_packets: u64,
    /// Per-call longest time without a packet, ms.
    pub gap_ms: Option<Dist>,
    /// Per-call loss in percent of the expected packets.
    pub loss_pct: Option<Dist>,
    /// Per-call lost packets.
    pub lost_packets: Option<Dist>,
    /// Per-call RFC 3550 jitter at the end of the call, ms.
    pub jitter_ms: Option<Dist>,
}

impl RtpReport {
    pub fn of<'a>(records: impl IntoIterator<Item = (&'a RtpStats, u64)>) -> RtpReport {
        let mut r = RtpReport::default();
        let mut gaps = Vec::new();
        let mut loss = Vec::new();
        let mut lost = Vec::new();
        let mut jitter = Vec::new();
        for (s, sent) in records {
            r.calls += 1;
            r.packets_sent += sent;
            r.packets_received += s.packets;
            r.packets_expected += s.expected;
            r.packets_lost += s.lost;
            r.duplicates += s.duplicates;
            r.reordered += s.reordered;
            r.ssrc_changes += s.ssrc_changes;
            r.calls_with_loss += u64::from(s.lost > 0);
            r.calls_without_packets += u64::from(s.packets == 0);
            gaps.push(s.max_gap_ms);
            loss.push(s.loss_pct);
            lost.push(s.lost as f64);
            jitter.push(s.jitter_ms);
        }
        r.gap_ms = Dist::of(gaps);
        r.loss_pct = Dist::of(loss);
        r.lost_packets = Dist::of(lost);
        r.jitter_ms = Dist::of(jitter);
        r
    }

    fn of_calls<'a>(records: impl IntoIterator<Item = &'a CallRecord>) -> RtpReport {
        RtpReport::of(
            records
                .into_iter()
                .filter_map(|c| Some((c.rtp.as_ref()?, c.rtp_sent.unwrap_or(0)))),
        )
    }
}

/// The injected failure and the calls that were up at that moment.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FailureReport {
    pub at_s: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// The command was still running after 10 s and was killed.
    pub timed_out: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Standard output and error of the command (first 4 KiB).
    pub output: String,
    /// Calls up at the failure, and how they ended.
    pub calls_up: u64,
    pub completed: u64,
    pub dropped: u64,
    pub unfinished: u64,
    /// RTP of those calls only.
    pub rtp: RtpReport,
}

/// What the run was asked to do.
#[derive(Debug, Clone, Serialize)]
pub struct CallSettings {
    pub target: String,
    pub transport: String,
    pub local: String,
    pub rate: Option<f64>,
    pub concurrency: Option<u64>,
    pub calls: Option<u64>,
    pub duration_s: Option<f64>,
    pub hold_s: f64,
    pub setup_timeout_s: f64,
    pub drain_s: f64,
    pub rtp: bool,
}

/// The JSON result of `tandem-load call`.
#[derive(Debug, Clone, Serialize)]
pub struct CallReport {
    pub tool: &'static str,
    pub version: &'static str,
    pub role: &'static str,
    pub settings: CallSettings,
    pub started_unix_ms: u64,
    pub duration_s: f64,
    pub interrupted: bool,
    pub calls: CallCounts,
    pub sip: SipCounts,
    pub cps: CpsReport,
    /// INVITE → 2xx, ms (HdrHistogram, 3 significant figures).
    pub setup_latency_ms: Option<Dist>,
    pub rtp: RtpReport,
    /// How late the 20 ms RTP ticker woke at worst, ms: above a few ms the
    /// generator was overloaded and gap figures are suspect.
    pub rtp_tick_max_lag_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<FailureReport>,
    pub timeline: Vec<Second>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_call: Option<Vec<CallRecord>>,
    /// Setup latency CDF (ms, fraction), for the plot only.
    #[serde(skip)]
    pub setup_cdf: Vec<(f64, f64)>,
    /// Every call, for the plots (also in `per_call` when asked for).
    #[serde(skip)]
    pub records: Vec<CallRecord>,
}

impl CallReport {
    /// RTP figures of `records` (those with media).
    pub fn rtp_of<'a>(records: impl IntoIterator<Item = &'a CallRecord>) -> RtpReport {
        RtpReport::of_calls(records)
    }

    /// Whether every call attempted was completed.
    pub fn all_completed(&self) -> bool {
        self.calls.attempted > 0 && self.calls.completed == self.calls.attempted
    }

    /// The human summary.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let c = &self.calls;
        let _ = writeln!(
            s,
            "tandem-load call → {} ({}), {:.1} s{}",
            self.settings.target,
            self.settings.transport,
            self.duration_s,
            if self.interrupted {
                ", interrupted"
            } else {
                ""
            }
        );
        let _ = writeln!(
            s,
            "calls      attempted {}  answered {}  completed {}  failed {}  dropped {}  unfinished {}",
            c.attempted, c.answered, c.completed, c.failed, c.dropped, c.unfinished
        );
        for (title, map) in [
            ("failed", &c.failures),
            ("dropped", &c.drops),
            ("unfinished", &c.unfinished_reasons),
        ] {
            if !map.is_empty() {
                let list: Vec<String> = map.iter().map(|(k, v)| format!("{k} {v}")).collect();
                let _ = writeln!(s, "  {title:<9} {}", list.join(", "));
            }
        }
        let _ = writeln!(
            s,
            "rate       {:.1} attempts/s{}, peak {} answered/s",
            self.cps.attempted_per_s,
            self.cps
                .target
                .map(|t| format!(" (target {t})"))
                .unwrap_or_default(),
            self.cps.peak_answered_per_s
        );
        if let Some(d) = &self.setup_latency_ms {
            let _ = writeln!(s, "setup ms   {}", dist_line(d));
        }
        write_rtp(&mut s, "", &self.rtp);
        if self.rtp.calls > 0 && self.rtp_tick_max_lag_ms > 10.0 {
            let _ = writeln!(
                s,
                "  warning: the RTP ticker ran up to {:.0} ms late: the generator was overloaded",
                self.rtp_tick_max_lag_ms
            );
        }
        let sip = &self.sip;
        if sip.ok_retransmissions_received + sip.late_answers + sip.stray_answers > 0 {
            let _ = writeln!(
                s,
                "sip        2xx retransmissions ACKed {}, late answers {}, stray answers {}",
                sip.ok_retransmissions_received, sip.late_answers, sip.stray_answers
            );
        }
        if sip.reinvites_received + sip.byes_received + sip.updates_received > 0 {
            let _ = writeln!(
                s,
                "           re-INVITEs {}, UPDATEs {}, BYEs from the peer {}",
                sip.reinvites_received, sip.updates_received, sip.byes_received
            );
        }
        if let Some(f) = &self.failure {
            let _ = writeln!(
                s,
                "failure at {:.1} s{}: {} calls up → completed {}, dropped {}, unfinished {}",
                f.at_s,
                match (&f.command, f.exit_code, f.timed_out, &f.error) {
                    (None, ..) => String::new(),
                    (Some(cmd), _, true, _) => format!(" (`{cmd}` killed after 10 s)"),
                    (Some(cmd), _, _, Some(e)) => format!(" (`{cmd}` failed: {e})"),
                    (Some(cmd), code, ..) => format!(
                        " (`{cmd}` exit {})",
                        code.map_or("by signal".into(), |c| c.to_string())
                    ),
                },
                f.calls_up,
                f.completed,
                f.dropped,
                f.unfinished
            );
            write_rtp(&mut s, "  ", &f.rtp);
        }
        s
    }
}

fn write_rtp(s: &mut String, indent: &str, r: &RtpReport) {
    if r.calls == 0 {
        return;
    }
    let _ = writeln!(
        s,
        "{indent}rtp        {} calls, sent {}, received {}, lost {} ({} calls with loss, {} without any packet), dup {}, reordered {}, ssrc changes {}",
        r.calls,
        r.packets_sent,
        r.packets_received,
        r.packets_lost,
        r.calls_with_loss,
        r.calls_without_packets,
        r.duplicates,
        r.reordered,
        r.ssrc_changes
    );
    if let Some(d) = &r.gap_ms {
        let _ = writeln!(s, "{indent}  gap ms   {}", dist_line(d));
    }
    if let Some(d) = &r.loss_pct {
        let _ = writeln!(s, "{indent}  loss %   {}", dist_line(d));
    }
    if let Some(d) = &r.jitter_ms {
        let _ = writeln!(s, "{indent}  jitter ms {}", dist_line(d));
    }
}

fn dist_line(d: &Dist) -> String {
    format!(
        "p50 {:.1}  p90 {:.1}  p99 {:.1}  max {:.1}  (min {:.1}, mean {:.1}, n {})",
        d.p50, d.p90, d.p99, d.max, d.min, d.mean, d.count
    )
}

/// The JSON result of `tandem-load answer`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AnswerReport {
    pub tool: &'static str,
    pub version: &'static str,
    pub role: &'static str,
    pub listen: String,
    pub rtp_mode: String,
    pub duration_s: f64,
    /// New INVITEs (not re-INVITEs).
    pub invites: u64,
    pub answered: u64,
    /// INVITEs carrying `X-Tandem-Resumed` (a call moved here after a
    /// media server failed).
    pub resumed: u64,
    /// INVITEs refused (no RTP port, malformed).
    pub rejected: u64,
    pub reinvites: u64,
    pub updates: u64,
    pub byes: u64,
    /// BYE or re-INVITE for an unknown dialog (answered 481).
    pub unknown_dialog: u64,
    pub options: u64,
    pub cancels: u64,
    /// 2xx sent again while waiting for the ACK.
    pub ok_retransmissions: u64,
    /// Calls whose 2xx was never ACKed (forgotten after 64*T1).
    pub never_acked: u64,
    /// ACKs ignored on purpose (--lose-first-ack).
    pub acks_ignored: u64,
    /// Calls forgotten after --max-call.
    pub expired: u64,
    /// Calls still up at exit.
    pub active_at_end: u64,
    /// RTP as received here, per call (calls ended by BYE and calls still
    /// up at exit).
    pub rtp: RtpReport,
}

impl AnswerReport {
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "tandem-load answer on {} (rtp {}), {:.1} s",
            self.listen, self.rtp_mode, self.duration_s
        );
        let _ = writeln!(
            s,
            "invites {} (resumed {}), answered {}, rejected {}, re-INVITEs {}, BYEs {}, OPTIONS {}, unknown dialog {}, active at end {}",
            self.invites,
            self.resumed,
            self.answered,
            self.rejected,
            self.reinvites,
            self.byes,
            self.options,
            self.unknown_dialog,
            self.active_at_end
        );
        write_rtp(&mut s, "", &self.rtp);
        s
    }
}

/// Writes `value` as pretty JSON to `path`.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(|e| {
        Error::io(
            format!("encoding {}", path.display()),
            std::io::Error::other(e),
        )
    })?;
    std::fs::write(path, text + "\n")
        .map_err(|e| Error::io(format!("writing {}", path.display()), e))
}
