//! Parses arbitrary bytes as a SIP message. Nothing may panic; a message
//! that parses must keep parsing after a proxy's edits and after a plain
//! re-print, with the same identity (Call-ID, CSeq, Vias).
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use sipcore::message::{Message, MAX_MESSAGE_SIZE};

fuzz_target!(|data: &[u8]| {
    let Ok(m) = Message::parse(Bytes::copy_from_slice(data)) else {
        return;
    };

    // Every typed view of a parsed message works.
    let _ = (m.method(), m.status(), m.reason_phrase(), m.request_uri());
    let _ = (m.from_tag(), m.to_tag(), m.max_forwards(), m.expires());
    let _ = (m.content_type(), m.content_length(), m.body().len());
    for v in m.vias() {
        let _ = (v.branch(), v.received(), v.rport(), v.sent_by_port());
    }
    for a in m
        .contacts()
        .chain(m.routes())
        .chain(m.record_routes())
        .flatten()
    {
        let u = a.uri();
        let _ = (u.transport(), u.has_lr(), a.tag());
    }
    for (name, _) in m.iter_headers() {
        let _ = m.header_values(name).count();
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
});
