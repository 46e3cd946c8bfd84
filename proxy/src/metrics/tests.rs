use media_relay::StreamStats;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};

use super::*;

fn stream(packets: u64, expected: u64, lost: i64, jitter_ms: f64) -> StreamStats {
    StreamStats {
        packets,
        expected,
        lost,
        jitter_ms,
        ..StreamStats::default()
    }
}

#[test]
fn rtp_quality_sums_the_receiving_streams() {
    let mut q = RtpQuality::default();
    q.add(&stream(90, 100, 10, 4.0));
    // Duplicates: negative loss counts as none.
    q.add(&stream(52, 50, -2, 2.0));
    // Nothing received yet (a call still ringing): not a stream.
    q.add(&stream(0, 0, 0, 0.0));
    assert_eq!(q.streams, 2);
    assert_eq!((q.expected, q.lost), (150, 10));
    assert!((q.loss_ratio() - 10.0 / 150.0).abs() < 1e-12);
    assert!((q.jitter_mean_s() - 0.003).abs() < 1e-12);
    assert!((q.jitter_max_s - 0.004).abs() < 1e-12);
    assert_eq!(RtpQuality::default().loss_ratio(), 0.0);
    assert_eq!(RtpQuality::default().jitter_mean_s(), 0.0);
}

#[test]
fn rtp_quality_is_published_as_gauges() {
    let mut q = RtpQuality::default();
    q.add(&stream(90, 100, 10, 4.0));
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || rtp_quality(&q));
    let mut gauges: Vec<(String, f64)> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| match value {
            DebugValue::Gauge(v) => (key.key().name().to_owned(), v.into_inner()),
            other => panic!("{key:?} is no gauge: {other:?}"),
        })
        .collect();
    gauges.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        gauges,
        [
            ("tandem_rtp_jitter_max_seconds".to_owned(), 0.004),
            ("tandem_rtp_jitter_mean_seconds".to_owned(), 0.004),
            ("tandem_rtp_loss_ratio".to_owned(), 0.1),
            ("tandem_rtp_streams_receiving".to_owned(), 1.0),
        ]
    );
}

/// The SIP message counters, whose handles are kept per thread, count
/// every message in its own series.
#[test]
fn sip_messages_are_counted_by_direction_and_method_or_class() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        for _ in 0..3 {
            sip_in_request(Some(&Method::Invite));
        }
        sip_in_request(Some(&Method::Bye));
        sip_out_request(Some(&Method::Invite));
        sip_in_request(Some(&Method::from_token("FROBNICATE")));
        for status in [180, 200, 200, 486] {
            sip_out_response(status);
        }
        sip_in_response(200);
    });
    let mut counts: Vec<String> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let labels: Vec<String> = key
                .key()
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            match value {
                DebugValue::Counter(n) => {
                    format!("{} {} {n}", key.key().name(), labels.join(","))
                }
                other => panic!("{key:?} is no counter: {other:?}"),
            }
        })
        .collect();
    counts.sort();
    assert_eq!(
        counts,
        [
            "tandem_sip_requests_total direction=in,method=BYE 1",
            "tandem_sip_requests_total direction=in,method=INVITE 3",
            "tandem_sip_requests_total direction=in,method=other 1",
            "tandem_sip_requests_total direction=out,method=INVITE 1",
            "tandem_sip_responses_total direction=in,class=2xx 1",
            "tandem_sip_responses_total direction=out,class=1xx 1",
            "tandem_sip_responses_total direction=out,class=2xx 2",
            "tandem_sip_responses_total direction=out,class=4xx 1",
        ]
    );
}
