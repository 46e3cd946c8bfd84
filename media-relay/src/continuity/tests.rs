use super::{ContinuityState, Rewrite};
use crate::rtp;

const CLOCK: u32 = 8000;

fn pkt(seq: u16, ts: u32, ssrc: u32) -> Vec<u8> {
    rtp::build_rtp(0, seq, ts, ssrc, &[0u8; 160])
}

/// Sends `(seq, ts, ssrc, at_us)` through the state; returns what went out.
fn run(c: &mut ContinuityState, pkts: &[(u16, u32, u32, u64)]) -> Vec<(u16, u32, u32, bool)> {
    pkts.iter()
        .map(|&(seq, ts, ssrc, at)| {
            let mut p = pkt(seq, ts, ssrc);
            c.on_rtp(&mut p, at, CLOCK);
            (
                rtp::seq(&p),
                rtp::timestamp(&p),
                rtp::ssrc(&p),
                rtp::marker(&p),
            )
        })
        .collect()
}

#[test]
fn passes_through_until_armed() {
    let mut c = ContinuityState::default();
    let out = run(&mut c, &[(10, 1000, 0xaaaa, 0), (11, 1160, 0xaaaa, 20_000)]);
    assert_eq!(
        out,
        vec![(10, 1000, 0xaaaa, false), (11, 1160, 0xaaaa, false)]
    );
    // An SSRC change without a switch is passed through too.
    let out = run(&mut c, &[(500, 9, 0xbbbb, 40_000)]);
    assert_eq!(out, vec![(500, 9, 0xbbbb, false)]);
    assert_eq!(c.rewrite, None);
}

#[test]
fn switch_continues_ssrc_seq_and_timestamp() {
    let mut c = ContinuityState::default();
    run(
        &mut c,
        &[(65534, 1000, 0xaaaa, 0), (65535, 1160, 0xaaaa, 20_000)],
    );
    c.arm();
    // The new upstream starts 50 ms after the last packet: 400 units.
    let out = run(
        &mut c,
        &[
            (7, 555, 0xbbbb, 70_000),
            (8, 715, 0xbbbb, 90_000),
            (10, 1035, 0xbbbb, 130_000),
            (9, 875, 0xbbbb, 131_000), // late
        ],
    );
    assert_eq!(
        out,
        vec![
            (0, 1560, 0xaaaa, true),
            (1, 1720, 0xaaaa, false),
            (3, 2040, 0xaaaa, false),
            (2, 1880, 0xaaaa, false),
        ]
    );
    assert_eq!(
        c.rewrite,
        Some(Rewrite {
            in_ssrc: 0xbbbb,
            out_ssrc: 0xaaaa,
            seq_delta: 0u16.wrapping_sub(7),
            ts_delta: 1560 - 555,
        })
    );
    // The late packet did not move the continuation point back.
    assert_eq!(c.last_sent.unwrap().seq, 3);
    assert!(!c.remap_pending);
}

#[test]
fn second_switch_and_ssrc_change_of_new_upstream_continue_too() {
    let mut c = ContinuityState::default();
    run(&mut c, &[(100, 0, 1, 0)]);
    c.arm();
    let out = run(&mut c, &[(5000, 77, 2, 20_000), (5001, 237, 2, 40_000)]);
    assert_eq!(out, vec![(101, 160, 1, true), (102, 320, 1, false)]);
    // The new upstream changes SSRC by itself: still one stream.
    let out = run(&mut c, &[(1, 1, 3, 60_000)]);
    assert_eq!(out, vec![(103, 480, 1, true)]);
    // Another switch.
    c.arm();
    let out = run(
        &mut c,
        &[(40, 4000, 4, 1_060_000), (41, 4160, 4, 1_080_000)],
    );
    assert_eq!(
        out,
        vec![(104, 480 + 8000, 1, true), (105, 480 + 8160, 1, false)]
    );
}

#[test]
fn timestamp_always_advances_and_wraps() {
    let mut c = ContinuityState::default();
    run(&mut c, &[(1, u32::MAX - 10, 9, 5_000)]);
    c.arm();
    // Same microsecond (or a clock step back): at least one unit forward.
    let out = run(&mut c, &[(77, 5, 8, 4_000)]);
    assert_eq!(out, vec![(2, u32::MAX - 9, 9, true)]);
    let out = run(&mut c, &[(78, 5 + 160, 8, 24_000)]);
    assert_eq!(out, vec![(3, (u32::MAX - 9).wrapping_add(160), 9, false)]);
}

#[test]
fn armed_before_anything_was_sent_is_a_passthrough() {
    let mut c = ContinuityState::default();
    c.arm();
    let out = run(&mut c, &[(5, 50, 7, 0)]);
    assert_eq!(out, vec![(5, 50, 7, false)]);
    assert_eq!(c.rewrite, None);
}

#[test]
fn state_round_trips_through_serde() {
    let mut c = ContinuityState::default();
    run(&mut c, &[(100, 0, 1, 0)]);
    c.arm();
    run(&mut c, &[(5000, 77, 2, 20_000)]);
    let json = serde_json::to_string(&c).unwrap();
    let back: ContinuityState = serde_json::from_str(&json).unwrap();
    assert_eq!(back, c);
}

/// Found by the rtp_packet fuzz target: the marker set on a switch turned
/// an RTP packet of payload type 93 (second byte 0x5d) into one whose
/// second byte (0xdd) is an RTCP packet type, so it left as RTCP.
#[test]
fn switch_never_turns_rtp_into_rtcp() {
    for pt in [0, 8, 64, 72, 93, 95, 96, 127] {
        let mut c = ContinuityState::default();
        let mut first = rtp::build_rtp(pt, 10, 1000, 0xaaaa, &[0; 4]);
        c.on_rtp(&mut first, 0, CLOCK);
        c.arm();
        let mut p = rtp::build_rtp(pt, 500, 9, 0xbbbb, &[0; 4]);
        assert!(c.on_rtp(&mut p, 20_000, CLOCK));
        assert_eq!(rtp::classify(&p), rtp::Kind::Rtp, "payload type {pt}");
        assert_eq!(rtp::payload_type(&p), pt);
        assert_eq!(
            rtp::marker(&p),
            !(64..=95).contains(&pt),
            "payload type {pt}"
        );
    }
}
