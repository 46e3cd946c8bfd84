use super::*;

fn key() -> FrameKey {
    FrameKey::new(b"a key of the pair, 32 bytes long")
}

fn seal(counter: u64) -> Seal {
    Seal {
        session: 0,
        counter,
    }
}

fn encode_with(epoch: u64, f: &Frame) -> Bytes {
    encode(&key(), seal(epoch), epoch, f)
}

fn rec(key: &str, version: u64) -> Record {
    Record {
        kind: "call".into(),
        key: key.into(),
        version,
        data: Bytes::from(format!("state of {key} v{version}")),
    }
}

fn all_frames() -> Vec<Frame> {
    vec![
        Frame::Hello {
            node: "tandem-b".into(),
            schema: 3,
            history: 0,
            last_seq: None,
        },
        Frame::Hello {
            node: "tandem-b".into(),
            schema: 3,
            history: 2,
            last_seq: Some(41),
        },
        Frame::SnapshotBegin { seq: 7, records: 2 },
        Frame::SnapshotRecord(rec("c1", 1)),
        Frame::SnapshotEnd { seq: 7 },
        Frame::Delta {
            seq: 8,
            change: Change::Upsert(rec("c2", 5)),
        },
        Frame::Delta {
            seq: 9,
            change: Change::Delete(RecordId {
                kind: "call".into(),
                key: "c1".into(),
            }),
        },
        Frame::Ack { seq: 9 },
        Frame::Heartbeat {
            node: "tandem-a".into(),
            role: 1,
            priority: 100,
            schema: 3,
            seq: 9,
        },
        Frame::Handover { seq: 9 },
        Frame::Refused {
            reason: "schema 4 is newer".into(),
        },
    ]
}

#[test]
fn every_frame_round_trips_with_its_epoch_and_seal() {
    for (i, f) in all_frames().into_iter().enumerate() {
        let bytes = encode(&key(), seal(i as u64 + 7), i as u64 + 1, &f);
        assert_eq!(check(&bytes), Ok(bytes.len()));
        let (got, env, used) = decode(&key(), &bytes).unwrap();
        assert_eq!(used, bytes.len());
        assert_eq!(got, seal(i as u64 + 7));
        assert_eq!(
            env,
            Envelope {
                epoch: i as u64 + 1,
                frame: f.clone()
            }
        );
        // The plaintext parser on its own (the fuzz entry point).
        assert_eq!(parse(&serialize(i as u64 + 1, &f)).unwrap().frame, f);
    }
}

#[test]
fn a_record_is_not_readable_on_the_wire() {
    let bytes = encode_with(1, &Frame::SnapshotRecord(rec("sip:+4930123456@carrier", 1)));
    let plain = serialize(1, &Frame::SnapshotRecord(rec("sip:+4930123456@carrier", 1)));
    assert!(plain.windows(8).any(|w| w == b"+4930123"));
    assert!(!bytes.windows(8).any(|w| w == b"+4930123"));
}

#[test]
fn a_partial_frame_is_incomplete_at_every_cut() {
    let bytes = encode_with(1, &Frame::SnapshotRecord(rec("c1", 1)));
    for cut in 0..bytes.len() {
        assert_eq!(
            check(&bytes[..cut]),
            Err(FrameError::Incomplete),
            "cut {cut}"
        );
    }
}

#[test]
fn two_frames_in_one_read_are_taken_one_by_one() {
    let mut buf = encode_with(1, &Frame::Ack { seq: 1 }).to_vec();
    buf.extend_from_slice(&encode_with(2, &Frame::Ack { seq: 2 }));
    let (_, first, used) = decode(&key(), &buf).unwrap();
    assert_eq!(first.frame, Frame::Ack { seq: 1 });
    let (_, second, rest) = decode(&key(), &buf[used..]).unwrap();
    assert_eq!(second.frame, Frame::Ack { seq: 2 });
    assert_eq!(used + rest, buf.len());
}

#[test]
fn a_peer_without_the_key_is_refused() {
    let other = FrameKey::new(b"another key entirely, 32 bytes!!");
    let bytes = encode(&other, seal(1), 1, &Frame::Ack { seq: 1 });
    assert_eq!(check(&bytes), Ok(bytes.len()), "well formed...");
    assert_eq!(
        decode(&key(), &bytes),
        Err(FrameError::BadMac),
        "...but not ours"
    );
}

#[test]
fn any_changed_byte_fails_authentication_or_framing() {
    let bytes = encode_with(3, &Frame::SnapshotRecord(rec("c1", 1)));
    for i in 0..bytes.len() {
        let mut b = bytes.to_vec();
        b[i] ^= 0x01;
        assert!(
            decode(&key(), &b).is_err(),
            "byte {i} changed and still accepted"
        );
    }
}

#[test]
fn garbage_and_oversize_are_named() {
    assert_eq!(check(b"GET / HTTP/1.1\r\n"), Err(FrameError::BadMagic));
    assert_eq!(check(b"X"), Err(FrameError::BadMagic));
    let mut b = encode_with(1, &Frame::Ack { seq: 1 }).to_vec();
    b[4] = 9;
    assert_eq!(check(&b), Err(FrameError::Format(9)));
    let mut b = encode_with(1, &Frame::Ack { seq: 1 }).to_vec();
    b[21..25].copy_from_slice(&(MAX_BODY as u32 + 1).to_be_bytes());
    assert_eq!(check(&b), Err(FrameError::TooLarge(MAX_BODY + 1)));
    let mut b = encode_with(1, &Frame::Ack { seq: 1 }).to_vec();
    b[21..25].copy_from_slice(&3u32.to_be_bytes());
    assert!(matches!(check(&b), Err(FrameError::Malformed(_))));
}

#[test]
fn the_parser_takes_any_bytes_without_panicking() {
    // Every prefix of every frame's plaintext, and a few byte patterns.
    for f in all_frames() {
        let plain = serialize(5, &f);
        for cut in 0..plain.len() {
            assert!(parse(&plain[..cut]).is_err(), "{f:?} cut {cut}");
        }
    }
    for b in [&[0xffu8; 64][..], &[0u8; 64][..], &[][..]] {
        let _ = parse(b);
    }
}
