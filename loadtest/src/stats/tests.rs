use super::*;

#[test]
fn nearest_rank_percentiles() {
    let values: Vec<f64> = (1..=100).map(f64::from).collect();
    let d = Dist::of(values).unwrap();
    assert_eq!(d.count, 100);
    assert_eq!(
        (d.min, d.p50, d.p90, d.p99, d.max),
        (1.0, 50.0, 90.0, 99.0, 100.0)
    );
    assert_eq!(d.mean, 50.5);

    let d = Dist::of([5.0, 1.0, 3.0]).unwrap();
    assert_eq!(
        (d.min, d.p50, d.p90, d.p99, d.max),
        (1.0, 3.0, 5.0, 5.0, 5.0)
    );
    assert!(Dist::of([]).is_none());
    assert!(Dist::of([f64::NAN]).is_none());
}

#[test]
fn cdf_steps() {
    assert_eq!(
        cdf([3.0, 1.0, 2.0, 2.0], 100),
        vec![(1.0, 0.25), (2.0, 0.75), (3.0, 1.0)]
    );
    let thinned = cdf((0..1000).map(f64::from), 10);
    assert_eq!(thinned.len(), 10);
    assert_eq!(thinned.last(), Some(&(999.0, 1.0)));
    assert!(cdf([], 10).is_empty());
}

#[test]
fn latency_histogram_in_milliseconds() {
    let mut l = Latency::new();
    assert!(l.dist_ms().is_none());
    for ms in 1..=100u64 {
        l.record(Duration::from_millis(ms));
    }
    let d = l.dist_ms().unwrap();
    assert_eq!(d.count, 100);
    assert!((d.p50 - 50.0).abs() < 0.1, "{d:?}");
    assert!((d.p99 - 99.0).abs() < 0.1, "{d:?}");
    assert!((d.max - 100.0).abs() < 0.1, "{d:?}");
    let cdf = l.cdf_ms();
    assert_eq!(cdf.len(), 100);
    assert_eq!(cdf.last().unwrap().1, 1.0);
}

#[test]
fn timeline_buckets_by_second() {
    let mut t = Timeline::default();
    t.attempted(Duration::from_millis(100));
    t.attempted(Duration::from_millis(900));
    t.answered(Duration::from_millis(950));
    t.active(Duration::from_millis(999), 1);
    t.failed(Duration::from_millis(2500));
    let s = t.seconds();
    assert_eq!(s.len(), 3);
    assert_eq!((s[0].attempted, s[0].answered, s[0].active), (2, 1, 1));
    assert_eq!(s[1].active, 1, "active carries over to quiet seconds");
    assert_eq!((s[2].t, s[2].failed), (2, 1));
    assert_eq!(t.peak_answered(), 1);
}
