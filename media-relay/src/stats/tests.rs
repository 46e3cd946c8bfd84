use std::time::{Duration, Instant};

use super::{DropReason, StreamRecorder};

const SSRC: u32 = 0x1234_5678;

/// Feeds `(seq, ts, arrival ms)` triples.
fn feed(r: &mut StreamRecorder, base: Instant, pkts: &[(u16, u32, u64)]) {
    for &(seq, ts, ms) in pkts {
        r.on_rtp(seq, ts, SSRC, 172, base + Duration::from_millis(ms));
    }
}

/// In-order 20 ms packets with 160 timestamp units each.
fn regular(seqs: impl IntoIterator<Item = u16>) -> Vec<(u16, u32, u64)> {
    seqs.into_iter()
        .map(|s| (s, 160 * u32::from(s), 20 * u64::from(s)))
        .collect()
}

#[test]
fn no_loss_no_jitter_on_a_perfect_stream() {
    let base = Instant::now();
    let mut r = StreamRecorder::new(8000);
    feed(&mut r, base, &regular(1..=50));
    let s = r.snapshot(base + Duration::from_millis(1000));
    assert_eq!(s.packets, 50);
    assert_eq!(s.bytes, 50 * 172);
    assert_eq!(s.expected, 50);
    assert_eq!(s.lost, 0);
    assert_eq!(s.jitter, 0.0);
    assert_eq!(s.max_gap, Duration::from_millis(20));
    assert_eq!(s.since_last_packet, Some(Duration::from_millis(0)));
    assert_eq!(s.ssrc, Some(SSRC));
    assert_eq!(s.ssrc_changes, 0);
}

#[test]
fn loss_is_counted_from_sequence_gaps() {
    let base = Instant::now();
    let mut r = StreamRecorder::new(8000);
    // 1 2 3 _ 5 _ _ 8: three lost out of eight.
    feed(&mut r, base, &regular([1, 2, 3, 5, 8]));
    let s = r.snapshot(base);
    assert_eq!(s.expected, 8);
    assert_eq!(s.lost, 3);
    assert_eq!(s.max_gap, Duration::from_millis(60));
}

#[test]
fn reordered_packets_are_not_lost() {
    let base = Instant::now();
    let mut r = StreamRecorder::new(8000);
    feed(
        &mut r,
        base,
        &[
            (1, 160, 20),
            (2, 320, 40),
            (4, 640, 60),
            (3, 480, 61),
            (5, 800, 100),
        ],
    );
    let s = r.snapshot(base);
    assert_eq!(s.expected, 5);
    assert_eq!(s.lost, 0);
    assert_eq!(s.packets, 5);
}

#[test]
fn late_packet_within_misorder_window_is_still_counted() {
    let base = Instant::now();
    let mut r = StreamRecorder::new(8000);
    let mut pkts = regular(100..=150);
    pkts.push((60, 60 * 160, 3010)); // 90 behind: reordered, not a jump
    feed(&mut r, base, &pkts);
    let s = r.snapshot(base);
    // 100..=150 expected 51, received 52: one "negative" loss, as A.3 says.
    assert_eq!(s.expected, 51);
    assert_eq!(s.lost, -1);
}

#[test]
fn duplicates_make_loss_negative_as_rfc_3550_says() {
    let base = Instant::now();
    let mut r = StreamRecorder::new(8000);
    feed(&mut r, base, &regular([1, 2, 2, 3]));
    let s = r.snapshot(base);
    assert_eq!(s.expected, 3);
    assert_eq!(s.lost, -1);
}

#[test]
fn sequence_wrap_is_handled() {
    let base = Instant::now();
    let mut r = StreamRecorder::new(8000);
    // 65533 65534 65535 0 _ 2 3: one lost across the wrap.
    let pkts = [
        (65533u16, 0u32, 0u64),
        (65534, 160, 20),
        (65535, 320, 40),
        (0, 480, 60),
        (2, 800, 100),
        (3, 960, 120),
    ];
    feed(&mut r, base, &pkts);
    let s = r.snapshot(base);
    assert_eq!(s.expected, 7);
    assert_eq!(s.lost, 1);
    assert_eq!(s.jitter, 0.0);
}

#[test]
fn reorder_across_the_wrap() {
    let base = Instant::now();
    let mut r = StreamRecorder::new(8000);
    feed(
        &mut r,
        base,
        &[(65534, 0, 0), (0, 320, 40), (65535, 160, 41), (1, 480, 60)],
    );
    let s = r.snapshot(base);
    assert_eq!(s.expected, 4);
    assert_eq!(s.lost, 0);
}

#[test]
fn large_jump_needs_two_sequential_packets_to_resync() {
    let base = Instant::now();
    let mut r = StreamRecorder::new(8000);
    // 10 11, then a jump to 20000 (ignored), confirmed by 20001: the source
    // restarted. The first epoch (10..=11) is complete; the second starts
    // at 20001.
    feed(
        &mut r,
        base,
        &[
            (10, 0, 0),
            (11, 160, 20),
            (20000, 0, 40),
            (20001, 160, 60),
            (20002, 320, 80),
        ],
    );
    let s = r.snapshot(base);
    assert_eq!(s.packets, 5);
    assert_eq!(s.expected, 2 + 2);
    assert_eq!(s.lost, 0);

    // A single stray jump is not counted and does not disturb the stream.
    let mut r = StreamRecorder::new(8000);
    feed(
        &mut r,
        base,
        &[(10, 0, 0), (11, 160, 20), (40000, 0, 30), (12, 320, 40)],
    );
    let s = r.snapshot(base);
    assert_eq!(s.expected, 3);
    assert_eq!(s.lost, 0);
}

#[test]
fn jitter_follows_rfc_3550_a8() {
    let base = Instant::now();
    let mut r = StreamRecorder::new(8000);
    // Packet 3 arrives 10 ms (80 units) late, packet 4 on time again.
    feed(
        &mut r,
        base,
        &[(1, 0, 0), (2, 160, 20), (3, 320, 50), (4, 480, 60)],
    );
    // D(2,3) = 80: J = 80/16 = 5. D(3,4) = -80: J = 5 + (80 - 5)/16.
    let j = 5.0 + (80.0 - 5.0) / 16.0;
    let s = r.snapshot(base);
    assert!((s.jitter - j).abs() < 1e-9, "jitter {}", s.jitter);
    assert!(
        (s.jitter_ms - j / 8.0).abs() < 1e-9,
        "jitter_ms {}",
        s.jitter_ms
    );
    assert_eq!(s.max_gap, Duration::from_millis(30));
}

#[test]
fn jitter_handles_timestamp_wrap() {
    let base = Instant::now();
    let mut r = StreamRecorder::new(8000);
    let t0 = u32::MAX - 200;
    feed(
        &mut r,
        base,
        &[
            (1, t0, 0),
            (2, t0.wrapping_add(160), 20),
            (3, t0.wrapping_add(320), 40),
        ],
    );
    assert_eq!(r.snapshot(base).jitter, 0.0);
}

#[test]
fn ssrc_change_is_counted_and_loss_is_kept_per_source() {
    let base = Instant::now();
    let mut r = StreamRecorder::new(8000);
    feed(&mut r, base, &regular([1, 2, 4])); // one lost
    for seq in [900u16, 901, 903] {
        // Another source with its own numbering and timestamps, one lost.
        let ms = 100 + 20 * u64::from(seq - 900);
        r.on_rtp(
            seq,
            160 * u32::from(seq),
            0xbeef,
            100,
            base + Duration::from_millis(ms),
        );
    }
    let s = r.snapshot(base + Duration::from_millis(500));
    assert_eq!(s.ssrc, Some(0xbeef));
    assert_eq!(s.ssrc_changes, 1);
    assert_eq!(s.expected, 4 + 4);
    assert_eq!(s.lost, 2);
    assert_eq!(s.packets, 6);
    assert_eq!(s.since_last_packet, Some(Duration::from_millis(340)));
    // No jitter spike from the change of timestamp base.
    assert_eq!(s.jitter, 0.0);
}

#[test]
fn drops_and_rtcp_are_counted_separately() {
    let mut r = StreamRecorder::new(8000);
    r.on_drop(DropReason::WrongSource, 2);
    r.on_drop(DropReason::Malformed, 1);
    r.on_drop(DropReason::NoDestination, 3);
    r.on_drop(DropReason::SendError, 4);
    r.on_rtcp(52);
    let s = r.snapshot(Instant::now());
    assert_eq!(
        (
            s.dropped_wrong_source,
            s.dropped_malformed,
            s.dropped_no_destination,
            s.send_errors
        ),
        (2, 1, 3, 4)
    );
    assert_eq!((s.rtcp_packets, s.rtcp_bytes), (1, 52));
    assert_eq!(s.packets, 0);
    assert_eq!(s.expected, 0);
    assert_eq!(s.since_last_packet, None);
}
