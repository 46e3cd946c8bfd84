use super::*;
use crate::report::{
    CallCounts, CallRecord, CallSettings, CpsReport, FailureReport, Outcome, RtpReport, SipCounts,
};
use crate::rtp::RtpStats;
use crate::stats::{Latency, Second};
use std::time::Duration;

fn report(with_failure: bool) -> CallReport {
    let mut latency = Latency::new();
    let mut records = Vec::new();
    for i in 0..50u32 {
        latency.record(Duration::from_millis(u64::from(5 + i % 7)));
        records.push(CallRecord {
            call_id: format!("c{i}"),
            started_s: f64::from(i) * 0.1,
            outcome: Outcome::Completed,
            reason: None,
            setup_ms: Some(5.0),
            ended_s: f64::from(i) * 0.1 + 2.0,
            up_at_failure: with_failure && i < 20,
            rtp_sent: Some(100),
            rtp: Some(RtpStats {
                packets: 100,
                expected: 100,
                max_gap_ms: 20.0 + f64::from(i % 5) * 100.0,
                max_gap_at_s: f64::from(i) * 0.1 + 1.0,
                ..RtpStats::default()
            }),
        });
    }
    let timeline = (0..8)
        .map(|t| Second {
            t,
            attempted: 10,
            answered: 9,
            failed: 1,
            ended: 8,
            active: 20,
        })
        .collect();
    CallReport {
        tool: "tandem-load",
        version: "test",
        role: "call",
        settings: CallSettings {
            target: "127.0.0.1:5060".into(),
            transport: "udp".into(),
            local: "127.0.0.1:5062".into(),
            rate: Some(10.0),
            concurrency: None,
            calls: Some(50),
            duration_s: None,
            hold_s: 2.0,
            setup_timeout_s: 10.0,
            drain_s: 17.0,
            rtp: true,
        },
        started_unix_ms: 0,
        duration_s: 8.0,
        interrupted: false,
        calls: CallCounts::default(),
        sip: SipCounts::default(),
        cps: CpsReport {
            target: Some(10.0),
            attempted_per_s: 10.0,
            peak_answered_per_s: 9,
        },
        setup_latency_ms: latency.dist_ms(),
        rtp: CallReport::rtp_of(&records),
        rtp_tick_max_lag_ms: 0.5,
        failure: with_failure.then(|| FailureReport {
            at_s: 3.0,
            calls_up: 20,
            rtp: RtpReport::default(),
            ..FailureReport::default()
        }),
        timeline,
        per_call: None,
        setup_cdf: latency.cdf_ms(),
        records,
    }
}

#[test]
fn writes_four_svg_files() {
    let dir = tempfile::tempdir().unwrap();
    let files = write_all(&dir.path().join("plots"), &report(true)).unwrap();
    assert_eq!(files.len(), 4);
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        assert!(text.starts_with("<svg"), "{}", f.display());
        assert!(text.contains("</svg>"), "{}", f.display());
    }
    let cps = std::fs::read_to_string(&files[0]).unwrap();
    assert!(cps.contains("Calls per second"), "titles are SVG text");
    assert!(cps.contains("failure injected at 3.0 s"));
    let gaps = std::fs::read_to_string(&files[2]).unwrap();
    assert!(gaps.contains("calls up at the failure"));
}

#[test]
fn empty_run_still_plots() {
    let mut r = report(false);
    r.records.clear();
    r.timeline.clear();
    r.setup_cdf.clear();
    let dir = tempfile::tempdir().unwrap();
    let files = write_all(dir.path(), &r).unwrap();
    assert_eq!(files.len(), 4);
}

#[test]
fn summary_names_the_figures() {
    let r = report(true);
    let s = r.summary();
    assert!(s.contains("setup ms"), "{s}");
    assert!(s.contains("gap ms"), "{s}");
    assert!(s.contains("failure at 3.0 s"), "{s}");
}
