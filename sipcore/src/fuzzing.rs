//! Entry points of the fuzz targets (`fuzz/fuzz_targets/`), kept here so
//! that the committed corpora replay through exactly the same code as an
//! ordinary `cargo test` (`tests/fuzz_corpus.rs`). Not an API: each
//! function panics when a property the proxy relies on does not hold.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use bytes::{Bytes, BytesMut};

use crate::message::{HeaderName, Message, Method, ResponseBuilder, MAX_MESSAGE_SIZE};
use crate::sdp::{Direction, Rewrite, Sdp, StreamChange, VersionChange};
use crate::transport::{Frame, Framer};

/// SIP bytes as they arrive in a datagram and on a stream. Nothing may
/// panic; a message that parses has working typed views (those the proxy
/// reads), re-prints to the same message, survives a proxy's edits, and the
/// stream framer cuts the same messages whether the bytes come at once or
/// in two reads.
pub fn parse_message(data: &[u8]) {
    if let Ok(m) = Message::parse(Bytes::copy_from_slice(data)) {
        check_message(&m);
    }
    frame_stream(data);
}

fn check_message(m: &Message) {
    exercise_views(m);
    let _ = (m.method(), m.status(), m.reason_phrase(), m.request_uri());
    let _ = (m.request_uri_str(), m.version(), m.is_request());
    let _ = (m.from_header().uri(), m.to_header().uri(), m.max_forwards());
    let _ = (m.content_type(), m.body().len());
    let _ = (m.require().count(), m.supported().count());

    // The copy kept for a long-held call is the same message.
    let kept = m.compact();
    assert_eq!(kept.as_bytes(), m.as_bytes());
    assert_eq!(kept.call_id(), m.call_id());
    assert_eq!(kept.cseq(), m.cseq());
    assert!(kept.vias().eq(m.vias()));
    assert_eq!(kept.from_tag(), m.from_tag());
    assert_eq!(kept.to_tag(), m.to_tag());

    // What is made from the index without a parse (a kept INVITE, a
    // response copying the request's lines) is exactly what the parser
    // makes of its bytes.
    let as_parsed = |copy: Message| {
        let parsed = Message::parse(copy.as_bytes().clone()).expect("an index copy parses");
        assert_eq!(format!("{copy:?}"), format!("{parsed:?}"));
    };
    as_parsed(m.without_body());
    as_parsed(m.with_headers_only(|k| {
        use HeaderName as H;
        matches!(
            k,
            H::Via | H::MaxForwards | H::Route | H::From | H::To | H::CallId | H::CSeq
        )
    }));
    if m.is_request() && m.method() != Some(&Method::Ack) {
        let response = ResponseBuilder::with_to_tag(m, 200, "OK", Some("fuzz1"))
            .header("Contact", "<sip:tandem@203.0.113.1>")
            .build_message()
            .expect("a response to a parsed request builds");
        as_parsed(response);
    }

    // A plain re-print parses to the same message and is a fixed point.
    let printed = m.edit().build();
    if printed.len() <= MAX_MESSAGE_SIZE {
        let again = Message::parse(printed.clone()).expect("re-printed message parses");
        assert_eq!(again.call_id(), m.call_id());
        assert_eq!(again.cseq(), m.cseq());
        assert!(again.vias().eq(m.vias()));
        assert_eq!(again.body(), m.body());
        assert_eq!(again.edit().build(), printed);
    }

    // What a proxy does to a request it forwards.
    let mf = m.max_forwards().unwrap_or(70).saturating_sub(1);
    let forwarded = m
        .edit()
        .push_via("SIP/2.0/UDP 203.0.113.1:5060;branch=z9hG4bKfuzz;rport")
        .set_header("Max-Forwards", mf.to_string())
        .add_record_route("<sip:203.0.113.1;lr>")
        .build();
    if forwarded.len() <= MAX_MESSAGE_SIZE {
        let f = Message::parse(forwarded).expect("forwarded message parses");
        assert_eq!(f.top_via().branch(), Some("z9hG4bKfuzz"));
        assert_eq!(f.vias().count(), m.vias().count() + 1);
        assert_eq!(f.call_id(), m.call_id());
        // And what the next hop does with the response: pop our Via.
        let back = f.edit().pop_via().build();
        let b = Message::parse(back).expect("popped message parses");
        assert!(b.vias().eq(m.vias()));
    }
}

/// Every typed view of a parsed message the proxy reads; none may panic.
/// Also used by `tests/roundtrip.rs`.
pub fn exercise_views(m: &Message) {
    let _ = m.top_via();
    let _ = (m.from_tag(), m.to_tag(), m.expires(), m.content_length());
    let _ = m.supports("100rel");
    for (n, _) in m.iter_headers() {
        let _ = m.header(n);
        let _ = m.header_values(n).count();
    }
    for v in m.vias() {
        let _ = (v.branch(), v.received(), v.rport(), v.sent_by_port());
        let _ = v.has_rfc3261_branch();
    }
    for a in m
        .contacts()
        .chain(m.routes())
        .chain(m.record_routes())
        .flatten()
    {
        let u = a.uri();
        let _ = (
            u.transport(),
            u.has_lr(),
            u.is_sip(),
            a.tag(),
            a.param("expires"),
        );
    }
}

/// What a stream connection reads: the frames of `data` given at once must
/// be those of `data` given in two reads (split in the middle), and each
/// message frame is checked like a datagram.
fn frame_stream(data: &[u8]) {
    let whole = frames(&[data]);
    let (head, tail) = data.split_at(data.len() / 2);
    let split = frames(&[head, tail]);
    assert_eq!(whole, split, "framing depends on how the bytes were read");
    for frame in whole.0 {
        if let Frame::Message(bytes) = frame {
            assert!(bytes.len() <= MAX_MESSAGE_SIZE);
            if let Ok(m) = Message::parse(bytes) {
                check_message(&m);
            }
        }
    }
}

/// Frames split off `reads` fed one after another to one connection's
/// framer, and whether the stream ended in a framing error.
fn frames(reads: &[&[u8]]) -> (Vec<Frame>, bool) {
    let mut framer = Framer::new();
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for read in reads {
        buf.extend_from_slice(read);
        loop {
            match framer.decode(&mut buf) {
                Ok(Some(frame)) => out.push(frame),
                Ok(None) => break,
                // The connection is closed here.
                Err(_) => return (out, true),
            }
        }
    }
    (out, false)
}

/// An SDP body as the proxy handles it (`proxy/src/media.rs`,
/// `b2bua/survival.rs`): parse, read the first stream, rewrite every stream
/// toward the relay (the first anchored, the others refused with port 0),
/// put it on hold and back. Nothing may panic; what the proxy sends on must
/// parse again with the addresses and ports it asked for.
pub fn sdp_rewrite(data: &[u8]) {
    let Ok(sdp) = Sdp::parse(data) else {
        return;
    };
    let _ = (sdp.line_ending(), sdp.connection(), sdp.direction());
    let _ = (sdp.origin().sess_version_u64(), sdp.as_bytes().len());
    for m in sdp.media() {
        let _ = (m.index(), m.kind(), m.port(), m.port_count(), m.proto());
        let _ = (m.formats().count(), m.is_rejected(), m.connection());
        let _ = (m.own_connection(), m.rtcp(), m.rtcp_mux(), m.direction());
        let _ = (m.own_direction(), m.ptime(), m.is_on_hold());
        let _ = (
            m.rtpmaps().count(),
            m.rtpmap(0),
            m.codec(),
            m.as_bytes().len(),
        );
        let _ = m.attributes().count();
    }

    let relays = [
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)),
        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 10)),
    ];
    for relay in relays {
        let streams: Vec<StreamChange> = sdp
            .media()
            .iter()
            .enumerate()
            .map(|(i, m)| match (i, m.is_rejected()) {
                (0, true) => StreamChange::default(),
                (0, false) => StreamChange {
                    address: Some(relay),
                    port: Some(40_000),
                    rtcp_port: Some(if m.rtcp_mux() { 40_000 } else { 40_001 }),
                    direction: None,
                },
                _ => StreamChange {
                    address: Some(relay),
                    port: Some(0),
                    rtcp_port: None,
                    direction: None,
                },
            })
            .collect();
        let out = sdp.rewrite(&Rewrite {
            connection: Some(relay),
            origin_address: Some(relay),
            version: VersionChange::Bump,
            streams: &streams,
        });
        let again = Sdp::parse(&out).expect("rewritten SDP parses");
        assert_eq!(again.media().len(), sdp.media().len());
        for (i, (before, after)) in sdp.media().iter().zip(again.media()).enumerate() {
            match (i, before.is_rejected()) {
                (0, true) => assert!(after.is_rejected()),
                (0, false) => {
                    assert_eq!(after.port(), 40_000);
                    // A null (hold) address is kept on purpose.
                    if !before.connection().is_some_and(|ip| ip.is_unspecified()) {
                        assert_eq!(after.connection(), Some(relay));
                    }
                }
                _ => assert!(after.is_rejected()),
            }
        }
        // Deterministic: the same rewrite of the same SDP gives the same bytes.
        let mut reused = Vec::new();
        sdp.rewrite_into(
            &Rewrite {
                connection: Some(relay),
                origin_address: Some(relay),
                version: VersionChange::Bump,
                streams: &streams,
            },
            &mut reused,
        );
        assert_eq!(reused, out);
    }

    // Hold and resume of the first stream.
    let held = sdp.set_direction(0, Direction::SendOnly);
    let held = Sdp::parse(&held).expect("SDP put on hold parses");
    if let Some(m) = held.media().first() {
        assert_eq!(m.own_direction(), Some(Direction::SendOnly));
    }
    let resumed = held.set_direction(0, Direction::SendRecv);
    Sdp::parse(&resumed).expect("SDP taken off hold parses");
}

/// A digest header as a registrar receives it (Authorization,
/// Proxy-Authorization) and as a UAC does (WWW-Authenticate): parsed,
/// verified against an HA1, and a parsed challenge printed and parsed
/// again to the same value. Nothing may panic.
pub fn digest_header(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(credentials) = crate::digest::Credentials::parse(text) {
        let ha1 = credentials
            .algorithm
            .ha1(&credentials.username, &credentials.realm, "secret");
        let _ = credentials.verify("REGISTER", &ha1);
        let _ = credentials.verify("INVITE", "not-hex");
    }
    if let Ok(challenge) = crate::digest::Challenge::parse(text) {
        let printed = challenge.to_header_value();
        let again = crate::digest::Challenge::parse(&printed);
        assert_eq!(again.as_ref(), Ok(&challenge), "{printed}");
    }
}
