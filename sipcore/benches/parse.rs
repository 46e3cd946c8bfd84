//! Parse and proxy-edit of a typical INVITE as it reaches Tandem from an
//! SBC: three Vias, two Record-Routes, a P-Asserted-Identity, an SDP body,
//! about 1 KB in all. Budget: ≤ 2 µs per parse (see the crate README).
//!
//! cargo bench -p sipcore --bench parse -- --warm-up-time 1 --measurement-time 5

use std::hint::black_box;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sipcore::message::Message;

const SDP: &str = "v=0\r\n\
o=- 3912855234 3912855234 IN IP4 198.51.100.7\r\n\
s=ExampleSBC\r\n\
c=IN IP4 198.51.100.7\r\n\
t=0 0\r\n\
m=audio 40376 RTP/AVP 8 0 18 101\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:18 G729/8000\r\n\
a=fmtp:18 annexb=no\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-16\r\n\
a=ptime:20\r\n\
a=sendrecv\r\n";

fn invite() -> Bytes {
    let msg = format!(
        "INVITE sip:+4930123456@pbx.example.com;user=phone SIP/2.0\r\n\
Via: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK-524287-1---77ba7a3b1b4e7d1c;rport\r\n\
Via: SIP/2.0/UDP 192.0.2.10:5060;received=192.0.2.10;branch=z9hG4bK3f6a2c91\r\n\
Via: SIP/2.0/TCP 198.51.100.7:5060;branch=z9hG4bKa8e1f0c2\r\n\
Max-Forwards: 68\r\n\
Record-Route: <sip:10.0.0.5;lr;ftag=6f3a9d2e>\r\n\
Record-Route: <sip:192.0.2.10;lr>\r\n\
Contact: <sip:+4989555123@198.51.100.7:5060;transport=tcp>\r\n\
To: <sip:+4930123456@pbx.example.com;user=phone>\r\n\
From: \"Alice Example\" <sip:+4989555123@trunk.example.net;user=phone>;tag=6f3a9d2e\r\n\
Call-ID: 5f2b7c1e-9a3d-4e8f-b6c1-2d7e9f0a1b3c@198.51.100.7\r\n\
CSeq: 102 INVITE\r\n\
Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, PRACK, INFO, REFER, NOTIFY\r\n\
Supported: replaces, timer, 100rel\r\n\
P-Asserted-Identity: \"Alice Example\" <sip:+4989555123@trunk.example.net;user=phone>\r\n\
Session-Expires: 1800;refresher=uac\r\n\
Min-SE: 90\r\n\
User-Agent: ExampleSBC/4.2.1\r\n\
Content-Type: application/sdp\r\n\
Content-Length: {}\r\n\
\r\n\
{SDP}",
        SDP.len()
    );
    Bytes::from(msg)
}

/// What the proxy reads of every INVITE.
fn read_fields(m: &Message) -> usize {
    let mut n = 0;
    for v in m.vias() {
        n += v.host.len() + v.branch().map_or(0, str::len);
    }
    n += m.from_header().uri.len() + m.from_tag().map_or(0, str::len);
    n += m.to_header().uri.len() + m.to_tag().map_or(0, str::len);
    n += m.call_id().len();
    n += m.cseq().seq as usize;
    for c in m.contacts().flatten() {
        n += c.uri().host.len();
    }
    n
}

fn bench(c: &mut Criterion) {
    let buf = invite();
    let msg = Message::parse(buf.clone()).expect("bench INVITE parses");
    assert_eq!(
        read_fields(&msg),
        read_fields(&Message::parse(msg.edit().build()).unwrap())
    );

    let mut g = c.benchmark_group("invite");
    g.throughput(Throughput::Bytes(buf.len() as u64));
    g.bench_function(format!("parse ({} bytes)", buf.len()), |b| {
        b.iter(|| Message::parse(black_box(buf.clone())).unwrap())
    });
    g.bench_function("parse + read Via/From/To/Call-ID/CSeq/Contact", |b| {
        b.iter(|| {
            let m = Message::parse(black_box(buf.clone())).unwrap();
            read_fields(&m)
        })
    });
    g.bench_function(
        "proxy edit (push Via, Max-Forwards - 1, add Record-Route)",
        |b| {
            b.iter(|| {
                let m = black_box(&msg);
                let mf = m.max_forwards().unwrap_or(70).saturating_sub(1);
                m.edit()
                    .push_via("SIP/2.0/UDP 203.0.113.1:5060;branch=z9hG4bKtandem8d1e5b;rport")
                    .set_header("Max-Forwards", mf.to_string())
                    .add_record_route("<sip:203.0.113.1;lr>")
                    .build()
            })
        },
    );
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
