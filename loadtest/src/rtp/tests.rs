//! Receiver statistics against hand-computed sequences.

use super::*;

const SSRC: u32 = 0x1234_5678;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn header(seq: u16, timestamp: u32) -> RtpHeader {
    RtpHeader {
        marker: false,
        payload_type: PT_PCMA,
        seq,
        timestamp,
        ssrc: SSRC,
    }
}

/// Feeds `(seq, arrival ms)` pairs of one SSRC, timestamps following the
/// sequence numbers (160 per step, counted from the first packet's
/// number, across wraps).
fn feed(rx: &mut RtpReceiver, packets: &[(u16, u64)]) {
    let Some(&(first, _)) = packets.first() else {
        return;
    };
    for &(seq, at) in packets {
        let steps = i32::from(seq.wrapping_sub(first) as i16);
        let ts = 1_000_000u32.wrapping_add_signed(steps * SAMPLES_PER_PACKET as i32);
        rx.on_packet(&header(seq, ts), ms(at));
    }
}

/// Packets `seqs` arriving every 20 ms from t=20 ms.
fn periodic(seqs: impl IntoIterator<Item = u16>) -> Vec<(u16, u64)> {
    seqs.into_iter()
        .enumerate()
        .map(|(i, s)| (s, 20 * (i as u64 + 1)))
        .collect()
}

#[test]
fn header_round_trip() {
    let h = RtpHeader {
        marker: true,
        payload_type: 8,
        seq: 0xfffe,
        timestamp: 0xdead_beef,
        ssrc: SSRC,
    };
    let mut buf = [0u8; 12];
    h.write(&mut buf);
    assert_eq!(buf[0], 0x80);
    assert_eq!(buf[1], 0x88);
    assert_eq!(RtpHeader::parse(&buf), Some(h));
}

#[test]
fn parse_rejects_non_rtp() {
    assert_eq!(RtpHeader::parse(&[0x80; 11]), None, "short");
    let mut buf = [0u8; 12];
    header(1, 1).write(&mut buf);
    buf[0] = 0x40;
    assert_eq!(RtpHeader::parse(&buf), None, "version 1");
    buf[0] = 0x80;
    buf[1] = 200;
    assert_eq!(RtpHeader::parse(&buf), None, "RTCP sender report");
    buf[1] = 8;
    buf[0] = 0x82;
    assert_eq!(RtpHeader::parse(&buf), None, "CSRCs announced, missing");
}

#[test]
fn generator_numbers_packets() {
    let mut g = RtpGenerator::new(SSRC, 65535, u32::MAX - 100);
    let first = RtpHeader::parse(g.next_packet()).unwrap();
    assert_eq!(first.seq, 65535);
    assert_eq!(first.timestamp, u32::MAX - 100);
    assert!(first.marker, "marker on the first packet");
    assert_eq!(first.payload_type, 8);
    assert_eq!(first.ssrc, SSRC);
    let second = g.next_packet();
    assert_eq!(second.len(), 172, "12 header + 160 payload bytes");
    assert!(second[12..].iter().all(|&b| b == 0xD5), "A-law silence");
    let second = RtpHeader::parse(second).unwrap();
    assert_eq!(second.seq, 0, "sequence wraps");
    assert_eq!(second.timestamp, 59, "timestamp +160, wrapping");
    assert!(!second.marker);
    assert_eq!(g.sent(), 2);
}

#[test]
fn in_order_stream_has_no_loss_no_jitter() {
    let mut rx = RtpReceiver::new(ms(0));
    feed(&mut rx, &periodic(0..100));
    let s = rx.stats(ms(2010));
    assert_eq!(s.packets, 100);
    assert_eq!(s.expected, 100);
    assert_eq!(s.lost, 0);
    assert_eq!(s.loss_pct, 0.0);
    assert_eq!((s.duplicates, s.reordered, s.ssrc_changes), (0, 0, 0));
    assert_eq!(s.jitter_ms, 0.0);
    assert_eq!(s.max_gap_ms, 20.0);
    assert_eq!(s.first_packet_ms, Some(20.0));
}

#[test]
fn loss_from_missing_sequence_numbers() {
    // 0..10 without 3 and 7: expected 10 (0..=9), received 8.
    let seqs: Vec<u16> = (0..10).filter(|s| *s != 3 && *s != 7).collect();
    let mut rx = RtpReceiver::new(ms(0));
    feed(&mut rx, &periodic(seqs));
    let s = rx.stats(ms(170));
    assert_eq!(s.expected, 10);
    assert_eq!(s.packets, 8);
    assert_eq!(s.lost, 2);
    assert_eq!(s.loss_pct, 20.0);
}

#[test]
fn loss_at_the_end_is_not_seen_but_gap_is() {
    // The last packets never come: A.3 cannot know they were expected,
    // the trailing gap shows it.
    let mut rx = RtpReceiver::new(ms(0));
    feed(&mut rx, &periodic(0..5));
    let s = rx.stats(ms(1100));
    assert_eq!(s.lost, 0);
    assert_eq!(
        s.max_gap_ms, 1000.0,
        "from the last packet at 100 ms to 1100 ms"
    );
    assert_eq!(s.max_gap_at_s, 0.1);
}

#[test]
fn reordered_packet_is_not_lost() {
    let mut rx = RtpReceiver::new(ms(0));
    feed(&mut rx, &periodic([0, 1, 3, 2, 4]));
    let s = rx.stats(ms(100));
    assert_eq!(s.expected, 5);
    assert_eq!(s.lost, 0);
    assert_eq!(s.reordered, 1);
    assert_eq!(s.duplicates, 0);
}

#[test]
fn duplicates_are_counted_but_do_not_hide_loss() {
    // 0 1 1 3 3: expected 4 (0..=3), distinct 3.
    let mut rx = RtpReceiver::new(ms(0));
    feed(&mut rx, &periodic([0, 1, 1, 3, 3]));
    let s = rx.stats(ms(100));
    assert_eq!(s.packets, 5);
    assert_eq!(s.duplicates, 2);
    assert_eq!(s.expected, 4);
    assert_eq!(s.lost, 1, "A.3 alone would say -1");
    // A late duplicate (seen twice, behind the highest) too.
    feed(&mut rx, &[(1, 120)]);
    let s = rx.stats(ms(120));
    assert_eq!(s.duplicates, 3);
    assert_eq!(s.lost, 1);
}

#[test]
fn sequence_wrap_is_continuous() {
    let mut rx = RtpReceiver::new(ms(0));
    feed(&mut rx, &periodic([65534, 65535, 0, 1]));
    let s = rx.stats(ms(80));
    assert_eq!(s.expected, 4);
    assert_eq!(s.lost, 0);
    assert_eq!(s.reordered, 0);
    assert_eq!(s.jitter_ms, 0.0, "timestamps wrap with the sequence");
}

#[test]
fn reordering_across_the_wrap() {
    let mut rx = RtpReceiver::new(ms(0));
    feed(&mut rx, &periodic([65534, 65535, 1, 0, 2]));
    let s = rx.stats(ms(100));
    assert_eq!(s.expected, 5);
    assert_eq!(s.lost, 0);
    assert_eq!(s.reordered, 1);
}

#[test]
fn loss_across_the_wrap() {
    let mut rx = RtpReceiver::new(ms(0));
    feed(&mut rx, &periodic([65533, 65534, 1, 2]));
    let s = rx.stats(ms(80));
    assert_eq!(s.expected, 6, "65533 65534 65535 0 1 2");
    assert_eq!(s.lost, 2);
}

#[test]
fn packet_from_before_the_first_extends_the_sequence() {
    let mut rx = RtpReceiver::new(ms(0));
    feed(&mut rx, &periodic([10, 9, 11]));
    let s = rx.stats(ms(60));
    assert_eq!(s.expected, 3);
    assert_eq!(s.lost, 0);
    assert_eq!(s.reordered, 1);
}

#[test]
fn jitter_follows_rfc3550_a8() {
    // Timestamps 0,160,320,480 (20 ms apart at 8 kHz); arrivals 0, 20,
    // 50, 60 ms. In timestamp units:
    //   D1 = (160-0)   - 160 = 0    J = 0
    //   D2 = (400-160) - 160 = 80   J = 0 + (80-0)/16 = 5
    //   D3 = (480-400) - 160 = -80  J = 5 + (80-5)/16 = 9.6875
    // 9.6875 units / 8 per ms = 1.2109375 ms.
    let mut rx = RtpReceiver::new(ms(0));
    feed(&mut rx, &[(0, 0), (1, 20), (2, 50), (3, 60)]);
    let s = rx.stats(ms(60));
    assert!((s.jitter_ms - 1.210_937_5).abs() < 1e-9, "{}", s.jitter_ms);
    assert_eq!(s.max_gap_ms, 30.0);
}

#[test]
fn gap_is_the_longest_silence() {
    let mut rx = RtpReceiver::new(ms(0));
    feed(&mut rx, &[(0, 0), (1, 20), (2, 40), (3, 300), (4, 320)]);
    let s = rx.stats(ms(330));
    assert_eq!(s.max_gap_ms, 260.0);
    assert_eq!(s.max_gap_at_s, 0.04);
    assert_eq!(s.lost, 0, "a pause is not loss");
}

#[test]
fn no_packets_is_one_gap_over_the_whole_call() {
    let rx = RtpReceiver::new(ms(500));
    let s = rx.stats(ms(3500));
    assert_eq!(s.packets, 0);
    assert_eq!(s.expected, 0);
    assert_eq!(s.loss_pct, 0.0);
    assert_eq!(s.max_gap_ms, 3000.0);
    assert_eq!(s.max_gap_at_s, 0.5);
    assert_eq!(s.first_packet_ms, None);
}

#[test]
fn late_first_packet_is_a_gap() {
    let mut rx = RtpReceiver::new(ms(100));
    feed(&mut rx, &[(7, 400), (8, 420)]);
    let s = rx.stats(ms(430));
    assert_eq!(s.first_packet_ms, Some(300.0));
    assert_eq!(s.max_gap_ms, 300.0);
}

#[test]
fn ssrc_change_starts_a_new_sequence() {
    let mut rx = RtpReceiver::new(ms(0));
    feed(&mut rx, &periodic(0..5));
    // A new source with unrelated numbers, after 100 ms of silence.
    for (i, seq) in (40_000u16..40_005).enumerate() {
        let h = RtpHeader {
            ssrc: 0xabcd,
            ..header(seq, 999_999 + 160 * i as u32)
        };
        rx.on_packet(&h, ms(200 + 20 * i as u64));
    }
    let s = rx.stats(ms(280));
    assert_eq!(s.ssrc_changes, 1);
    assert_eq!(s.expected, 10);
    assert_eq!(s.lost, 0);
    assert_eq!(s.discarded, 0);
    assert_eq!(s.max_gap_ms, 100.0);
    assert_eq!(s.jitter_ms, 0.0, "no D computed across sources");
}

#[test]
fn large_jump_is_confirmed_by_the_next_packet() {
    // 0..5, then 40000 (discarded until confirmed), 40001 confirms: the
    // sequence restarts at 40000 and both count.
    let mut rx = RtpReceiver::new(ms(0));
    feed(&mut rx, &periodic([0, 1, 2, 3, 4, 40000, 40001, 40002]));
    let s = rx.stats(ms(160));
    assert_eq!(s.seq_restarts, 1);
    assert_eq!(s.discarded, 0);
    assert_eq!(s.expected, 8);
    assert_eq!(s.lost, 0);
    assert_eq!(s.packets, 8);
}

#[test]
fn stray_large_jump_is_discarded() {
    let mut rx = RtpReceiver::new(ms(0));
    feed(&mut rx, &periodic([0, 1, 2, 30000, 3, 4]));
    let s = rx.stats(ms(120));
    assert_eq!(s.discarded, 1);
    assert_eq!(s.seq_restarts, 0);
    assert_eq!(s.expected, 5);
    assert_eq!(s.lost, 0);
    assert_eq!(s.packets, 6);
}

#[test]
fn datagrams_that_are_not_rtp_are_ignored() {
    let mut rx = RtpReceiver::new(ms(0));
    assert!(!rx.on_datagram(b"hello", ms(5)));
    let mut g = RtpGenerator::new(SSRC, 5, 0);
    assert!(rx.on_datagram(g.next_packet(), ms(20)));
    assert_eq!(rx.packets(), 1);
}
