use super::*;

fn rw() -> Rewrite {
    Rewrite {
        in_ssrc: 0xbbbb_bbbb,
        out_ssrc: 0xaaaa_aaaa,
        seq_delta: 100,
        ts_delta: 1000,
    }
}

fn be32_at(p: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(p[at..at + 4].try_into().unwrap())
}

#[test]
fn classify_rtp_rtcp_and_garbage() {
    let p = build_rtp(8, 1, 2, 3, &[0; 160]);
    assert_eq!(classify(&p), Kind::Rtp);
    assert_eq!(classify(&p[..11]), Kind::Malformed);
    let mut v1 = p.clone();
    v1[0] = 0x40;
    assert_eq!(classify(&v1), Kind::Malformed);
    // CSRC count claims more than there is.
    let mut cc = p[..12].to_vec();
    cc[0] |= 0x02;
    assert_eq!(classify(&cc), Kind::Malformed);
    // Extension header present and complete.
    let mut ext = build_rtp(0, 1, 2, 3, &[]);
    ext[0] |= 0x10;
    ext.extend_from_slice(&[0xbe, 0xde, 0, 1, 1, 2, 3, 4]);
    assert_eq!(rtp_header_len(&ext), Some(20));
    ext.truncate(18);
    assert_eq!(classify(&ext), Kind::Malformed);
    // RTCP RR with no report blocks.
    let rr = [0x80, 201, 0, 1, 0xaa, 0xaa, 0xaa, 0xaa];
    assert_eq!(classify(&rr), Kind::Rtcp);
    assert_eq!(classify(&rr[..4]), Kind::Malformed);
    assert_eq!(classify(&[]), Kind::Malformed);
    assert_eq!(classify(b"\x00\x01\x00\x00stun"), Kind::Malformed);
}

#[test]
fn header_fields_round_trip() {
    let mut p = build_rtp(0, 1, 2, 3, &[9; 4]);
    set_seq(&mut p, 65535);
    set_timestamp(&mut p, 0xdead_beef);
    set_ssrc(&mut p, 42);
    assert!(!marker(&p));
    set_marker(&mut p);
    assert_eq!((seq(&p), timestamp(&p), ssrc(&p)), (65535, 0xdead_beef, 42));
    assert!(marker(&p));
    assert_eq!(payload_type(&p), 0);
    assert_eq!(&p[12..], &[9; 4]);
}

/// SR (one report block) + SDES, as sent by the new upstream.
fn compound_sr(sender: u32, reportee: u32) -> Vec<u8> {
    let mut p = vec![0x81, 200, 0, 12];
    p.extend_from_slice(&sender.to_be_bytes());
    p.extend_from_slice(&[0x11; 8]); // NTP
    p.extend_from_slice(&5000u32.to_be_bytes()); // RTP ts
    p.extend_from_slice(&[0; 8]); // counts
    p.extend_from_slice(&reportee.to_be_bytes());
    p.extend_from_slice(&[0, 0, 0, 0]); // fraction, lost
    p.extend_from_slice(&0x0001_0064u32.to_be_bytes()); // ext highest seq
    p.extend_from_slice(&[0; 12]); // jitter, LSR, DLSR
    p.extend_from_slice(&[0x81, 202, 0, 2]);
    p.extend_from_slice(&sender.to_be_bytes());
    p.extend_from_slice(&[1, 1, b'x', 0]);
    assert_eq!(classify(&p), Kind::Rtcp);
    p
}

#[test]
fn rtcp_from_upstream_takes_the_continued_ssrc_and_timestamp() {
    let mut p = compound_sr(0xbbbb_bbbb, 0x1111_1111);
    rtcp_map_from_upstream(&mut p, &rw());
    assert_eq!(be32_at(&p, 4), 0xaaaa_aaaa);
    assert_eq!(be32_at(&p, 16), 6000);
    assert_eq!(be32_at(&p, 28), 0x1111_1111, "report about leg A untouched");
    assert_eq!(be32_at(&p, 56), 0xaaaa_aaaa, "SDES chunk");

    // Another sender is left alone.
    let mut other = compound_sr(0xcccc_cccc, 0x1111_1111);
    let before = other.clone();
    rtcp_map_from_upstream(&mut other, &rw());
    assert_eq!(other, before);
}

#[test]
fn rtcp_toward_upstream_maps_report_blocks_back() {
    let mut p = compound_sr(0x1111_1111, 0xaaaa_aaaa);
    rtcp_map_toward_upstream(&mut p, &rw());
    assert_eq!(be32_at(&p, 4), 0x1111_1111);
    assert_eq!(be32_at(&p, 28), 0xbbbb_bbbb);
    assert_eq!(
        be32_at(&p, 36),
        0x0001_0000,
        "ext highest seq 100 - delta 100"
    );
}

#[test]
fn rtcp_rewrite_survives_garbage() {
    for len in 0..40 {
        let mut p = compound_sr(0xbbbb_bbbb, 0xaaaa_aaaa);
        p.truncate(len);
        rtcp_map_from_upstream(&mut p, &rw());
        rtcp_map_toward_upstream(&mut p, &rw());
    }
    let mut lying = vec![0x9f, 200, 0xff, 0xff, 0, 0, 0, 0];
    rtcp_map_from_upstream(&mut lying, &rw());
    rtcp_map_toward_upstream(&mut lying, &rw());
}
