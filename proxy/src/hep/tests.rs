use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::SystemTime;

use bytes::Bytes;
use proptest::prelude::*;
use sipcore::tap::Direction;

use super::*;

const INVITE: &str = "INVITE sip:bob@10.0.0.2 SIP/2.0\r\n\
Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1\r\n\
Call-ID: abc@h\r\n\
Content-Length: 0\r\n\r\n";

fn at(secs: u64, micros: u32) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_micros(u64::from(micros))
}

fn message(
    source: &str,
    destination: &str,
    transport: TransportKind,
    data: &str,
) -> ObservedMessage {
    ObservedMessage {
        direction: Direction::Received,
        transport,
        source: source.parse().unwrap(),
        destination: destination.parse().unwrap(),
        at: at(1_700_000_000, 123_456),
        data: Bytes::copy_from_slice(data.as_bytes()),
    }
}

fn agent(id: u32, password: Option<&str>) -> Agent {
    Agent {
        id,
        password: password.map(str::to_owned),
    }
}

/// A test decoder, written from the HEP3 layout and nothing else: the
/// header, then chunks of vendor, type, length (header included), value.
/// Fails on anything malformed.
fn decode(packet: &[u8]) -> Result<BTreeMap<u16, Vec<u8>>, String> {
    if packet.len() < 6 || &packet[..4] != b"HEP3" {
        return Err("no HEP3 header".into());
    }
    let total = usize::from(u16::from_be_bytes([packet[4], packet[5]]));
    if total != packet.len() {
        return Err(format!("length {total}, packet {}", packet.len()));
    }
    let mut chunks = BTreeMap::new();
    let mut at = 6;
    while at < total {
        let field = |i: usize| {
            packet
                .get(at + i..at + i + 2)
                .map(|b| u16::from_be_bytes([b[0], b[1]]))
                .ok_or(format!("chunk header cut at {at}"))
        };
        let (vendor, kind, len) = (field(0)?, field(2)?, usize::from(field(4)?));
        if vendor != 0 || len < 6 || at + len > total {
            return Err(format!("bad chunk at {at}: {vendor} {kind} {len}"));
        }
        if chunks
            .insert(kind, packet[at + 6..at + len].to_vec())
            .is_some()
        {
            return Err(format!("chunk {kind} twice"));
        }
        at += len;
    }
    Ok(chunks)
}

fn encoded(m: &ObservedMessage, a: &Agent) -> Vec<u8> {
    let mut out = Vec::new();
    assert!(encode(m, a, &mut out));
    out
}

#[test]
fn an_ipv4_udp_message_encodes_to_the_known_packet() {
    let m = message("10.0.0.1:5060", "10.0.0.2:5080", TransportKind::Udp, INVITE);
    let packet = encoded(&m, &agent(7, Some("pw")));
    let mut want: Vec<u8> = Vec::new();
    want.extend_from_slice(b"HEP3");
    let total = 6 + 7 + 7 + 10 + 10 + 8 + 8 + 10 + 10 + 7 + 10 + 8 + 11 + 6 + INVITE.len();
    want.extend_from_slice(&(total as u16).to_be_bytes());
    #[rustfmt::skip]
    want.extend_from_slice(&[
        0, 0, 0, 1, 0, 7, 2,                      // family: IPv4
        0, 0, 0, 2, 0, 7, 17,                     // protocol: UDP
        0, 0, 0, 3, 0, 10, 10, 0, 0, 1,           // source 10.0.0.1
        0, 0, 0, 4, 0, 10, 10, 0, 0, 2,           // destination 10.0.0.2
        0, 0, 0, 7, 0, 8, 0x13, 0xc4,             // source port 5060
        0, 0, 0, 8, 0, 8, 0x13, 0xd8,             // destination port 5080
        0, 0, 0, 9, 0, 10, 0x65, 0x53, 0xf1, 0x00, // 1700000000 s
        0, 0, 0, 10, 0, 10, 0, 1, 0xe2, 0x40,     // 123456 µs
        0, 0, 0, 11, 0, 7, 1,                     // protocol type: SIP
        0, 0, 0, 12, 0, 10, 0, 0, 0, 7,           // capture agent 7
        0, 0, 0, 14, 0, 8, b'p', b'w',            // auth key
        0, 0, 0, 17, 0, 11, b'a', b'b', b'c', b'@', b'h', // correlation: Call-ID
    ]);
    want.extend_from_slice(&[0, 0, 0, 15]);
    want.extend_from_slice(&((6 + INVITE.len()) as u16).to_be_bytes());
    want.extend_from_slice(INVITE.as_bytes());
    assert_eq!(packet, want);
}

#[test]
fn an_ipv6_tls_message_has_ipv6_chunks_and_tcp_and_no_auth_key_without_password() {
    let m = message(
        "[2001:db8::1]:5061",
        "[2001:db8::2]:40000",
        TransportKind::Tls,
        INVITE,
    );
    let chunks = decode(&encoded(&m, &agent(1, None))).unwrap();
    assert_eq!(chunks[&chunk::IP_FAMILY], [FAMILY_IPV6]);
    assert_eq!(chunks[&chunk::IP_PROTOCOL], [PROTOCOL_TCP]);
    let ip = |s: &str| s.parse::<Ipv6Addr>().unwrap().octets().to_vec();
    assert_eq!(chunks[&chunk::IPV6_SOURCE], ip("2001:db8::1"));
    assert_eq!(chunks[&chunk::IPV6_DESTINATION], ip("2001:db8::2"));
    assert!(!chunks.contains_key(&chunk::IPV4_SOURCE));
    assert!(!chunks.contains_key(&chunk::AUTH_KEY));
    assert_eq!(chunks[&chunk::DESTINATION_PORT], 40000u16.to_be_bytes());
}

#[test]
fn mapped_and_mixed_addresses_share_one_family() {
    let m = message(
        "[::ffff:10.0.0.1]:5060",
        "10.0.0.2:5060",
        TransportKind::Udp,
        INVITE,
    );
    let chunks = decode(&encoded(&m, &agent(1, None))).unwrap();
    assert_eq!(chunks[&chunk::IP_FAMILY], [FAMILY_IPV4]);
    assert_eq!(chunks[&chunk::IPV4_SOURCE], [10, 0, 0, 1]);

    let m = message(
        "[2001:db8::1]:5060",
        "10.0.0.2:5060",
        TransportKind::Udp,
        INVITE,
    );
    let chunks = decode(&encoded(&m, &agent(1, None))).unwrap();
    assert_eq!(chunks[&chunk::IP_FAMILY], [FAMILY_IPV6]);
    let mapped = Ipv4Addr::new(10, 0, 0, 2).to_ipv6_mapped().octets();
    assert_eq!(chunks[&chunk::IPV6_DESTINATION], mapped);
}

#[test]
fn a_message_too_large_for_one_datagram_is_refused_not_cut() {
    let big = format!("{INVITE}{}", "x".repeat(MAX_PACKET));
    let m = message("10.0.0.1:5060", "10.0.0.2:5060", TransportKind::Tcp, &big);
    let mut out = vec![1, 2, 3];
    assert!(!encode(&m, &agent(1, None), &mut out));
    assert!(out.is_empty());
    // The largest that fits is sent whole.
    let overhead = encoded(
        &message("10.0.0.1:5060", "10.0.0.2:5060", TransportKind::Tcp, INVITE),
        &agent(1, None),
    )
    .len()
        - INVITE.len();
    let fits = &big[..MAX_PACKET - overhead];
    let m = message("10.0.0.1:5060", "10.0.0.2:5060", TransportKind::Tcp, fits);
    assert_eq!(encoded(&m, &agent(1, None)).len(), MAX_PACKET);
}

#[test]
fn the_call_id_is_found_by_long_or_compact_name_in_the_headers_only() {
    assert_eq!(call_id(INVITE.as_bytes()), Some(&b"abc@h"[..]));
    let compact = "BYE sip:a@b SIP/2.0\r\ni:  x-1 \r\n\r\n";
    assert_eq!(call_id(compact.as_bytes()), Some(&b"x-1"[..]));
    let lower = "SIP/2.0 200 OK\r\ncall-id:y\r\n\r\n";
    assert_eq!(call_id(lower.as_bytes()), Some(&b"y"[..]));
    let in_body = "MESSAGE sip:a@b SIP/2.0\r\nContent-Length: 11\r\n\r\nCall-ID: no";
    assert_eq!(call_id(in_body.as_bytes()), None);
    assert_eq!(call_id(b"\x00\xffgarbage"), None);
    // Without a Call-ID there is no correlation chunk.
    let m = message("10.0.0.1:1", "10.0.0.2:2", TransportKind::Udp, in_body);
    let chunks = decode(&encoded(&m, &agent(1, None))).unwrap();
    assert!(!chunks.contains_key(&chunk::CORRELATION_ID));
}

#[test]
fn the_tap_drops_and_counts_when_the_queue_is_full_without_waiting() {
    let (tx, mut rx) = mpsc::channel(2);
    let counters = Arc::new(HepCounters::default());
    let tap = HepTap::new(tx, counters.clone(), MAX_QUEUED_BYTES);
    let m = message("10.0.0.1:5060", "10.0.0.2:5060", TransportKind::Udp, INVITE);
    for _ in 0..5 {
        tap.observe(m.clone());
    }
    assert_eq!(counters.snapshot().queue_full, 3);
    assert_eq!(rx.try_recv().unwrap(), m);
    // Room again: the next one is queued.
    tap.observe(m.clone());
    assert_eq!(counters.snapshot().queue_full, 3);
    // The sender task gone: dropped and counted, no panic.
    drop(rx);
    tap.observe(m);
    assert_eq!(counters.snapshot().queue_full, 4);
}

#[test]
fn the_tap_drops_and_counts_when_the_queued_bytes_would_pass_the_limit() {
    let (tx, mut rx) = mpsc::channel(100);
    let counters = Arc::new(HepCounters::default());
    let m = message("10.0.0.1:5060", "10.0.0.2:5060", TransportKind::Udp, INVITE);
    // Room for two messages' bytes, the queue for a hundred messages.
    let tap = HepTap::new(tx, counters.clone(), 2 * INVITE.len());
    for _ in 0..5 {
        tap.observe(m.clone());
    }
    assert_eq!(counters.snapshot().queue_full, 3);
    assert_eq!(
        counters.queued_bytes.load(Ordering::Relaxed),
        2 * INVITE.len()
    );
    // The sender task gives the bytes back as it takes messages.
    rx.try_recv().unwrap();
    counters
        .queued_bytes
        .fetch_sub(INVITE.len(), Ordering::Relaxed);
    tap.observe(m);
    assert_eq!(counters.snapshot().queue_full, 3);
}

#[tokio::test]
async fn the_export_task_sends_each_message_as_one_packet_to_the_collector() {
    let collector = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let settings = HepSettings {
        collector: collector.local_addr().unwrap(),
        agent: agent(42, Some("secret")),
        queue_limit: 16,
    };
    let export = start(&settings).unwrap();
    let m = message(
        "127.0.0.1:5060",
        "127.0.0.2:5070",
        TransportKind::Udp,
        INVITE,
    );
    export.tap.observe(m.clone());
    let mut buf = vec![0u8; 65536];
    let (n, _) = tokio::time::timeout(Duration::from_secs(5), collector.recv_from(&mut buf))
        .await
        .expect("a HEP packet within 5 s")
        .unwrap();
    let chunks = decode(&buf[..n]).unwrap();
    assert_eq!(chunks[&chunk::PAYLOAD], INVITE.as_bytes());
    assert_eq!(chunks[&chunk::CAPTURE_AGENT_ID], 42u32.to_be_bytes());
    assert_eq!(chunks[&chunk::AUTH_KEY], b"secret");
    wait_for_sent(&export.counters, 1).await;
    // Its bytes were given back.
    assert_eq!(export.counters.queued_bytes.load(Ordering::Relaxed), 0);
}

/// Waits (5 s at most) until the sender task counted `n` packets sent.
async fn wait_for_sent(counters: &HepCounters, n: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while counters.snapshot().sent < n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{n} sent within 5 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn any_ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(IpAddr::from),
        any::<[u8; 16]>().prop_map(IpAddr::from),
    ]
}

proptest! {
    /// Whatever the message, the packet decodes to exactly what was
    /// observed.
    #[test]
    fn encode_then_decode_gives_back_the_message(
        source in any_ip(), sport in any::<u16>(),
        destination in any_ip(), dport in any::<u16>(),
        secs in 0u64..u64::from(u32::MAX), micros in 0u32..1_000_000,
        transport in prop_oneof![Just(TransportKind::Udp), Just(TransportKind::Tcp), Just(TransportKind::Tls)],
        id in any::<u32>(),
        password in proptest::option::of("[ -~]{1,40}"),
        call in proptest::option::of("[!-~]{1,60}"),
        body in proptest::collection::vec(any::<u8>(), 0..2000),
    ) {
        let mut data = b"OPTIONS sip:x SIP/2.0\r\n".to_vec();
        if let Some(c) = &call {
            data.extend_from_slice(format!("Call-ID: {c}\r\n").as_bytes());
        }
        data.extend_from_slice(b"\r\n");
        data.extend_from_slice(&body);
        let m = ObservedMessage {
            direction: Direction::Sent,
            transport,
            source: SocketAddr::new(source, sport),
            destination: SocketAddr::new(destination, dport),
            at: at(secs, micros),
            data: Bytes::from(data.clone()),
        };
        let a = Agent { id, password: password.clone() };
        let chunks = decode(&encoded(&m, &a)).unwrap();
        let (s, d) = same_family(source, destination);
        match (s, d) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                prop_assert_eq!(&chunks[&chunk::IP_FAMILY], &[FAMILY_IPV4]);
                prop_assert_eq!(&chunks[&chunk::IPV4_SOURCE], &s.octets());
                prop_assert_eq!(&chunks[&chunk::IPV4_DESTINATION], &d.octets());
            }
            (s, d) => {
                prop_assert_eq!(&chunks[&chunk::IP_FAMILY], &[FAMILY_IPV6]);
                prop_assert_eq!(&chunks[&chunk::IPV6_SOURCE], &v6(s).octets());
                prop_assert_eq!(&chunks[&chunk::IPV6_DESTINATION], &v6(d).octets());
            }
        }
        // The canonical form names the same host.
        prop_assert_eq!(v6(s), v6(source));
        prop_assert_eq!(v6(d), v6(destination));
        let protocol = if transport == TransportKind::Udp { PROTOCOL_UDP } else { PROTOCOL_TCP };
        prop_assert_eq!(&chunks[&chunk::IP_PROTOCOL], &[protocol]);
        prop_assert_eq!(&chunks[&chunk::SOURCE_PORT], &sport.to_be_bytes());
        prop_assert_eq!(&chunks[&chunk::DESTINATION_PORT], &dport.to_be_bytes());
        prop_assert_eq!(&chunks[&chunk::TIME_SECONDS], &(secs as u32).to_be_bytes());
        prop_assert_eq!(&chunks[&chunk::TIME_MICROSECONDS], &micros.to_be_bytes());
        prop_assert_eq!(&chunks[&chunk::PROTOCOL_TYPE], &[PROTOCOL_TYPE_SIP]);
        prop_assert_eq!(&chunks[&chunk::CAPTURE_AGENT_ID], &id.to_be_bytes());
        prop_assert_eq!(chunks.get(&chunk::AUTH_KEY).cloned(), password.map(String::into_bytes));
        prop_assert_eq!(chunks.get(&chunk::CORRELATION_ID).cloned(), call.map(String::into_bytes));
        prop_assert_eq!(&chunks[&chunk::PAYLOAD], &data);
    }
}
