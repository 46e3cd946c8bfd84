use super::*;
use crate::transaction::TuEvent;
use crate::transport::TransportKind;
use std::time::Duration;
use tokio::net::UdpSocket;

const NO_MAX_FORWARDS: &str = "OPTIONS sip:tandem@127.0.0.1 SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bKbad1\r\n\
From: <sip:a@127.0.0.1>;tag=1\r\n\
To: <sip:b@127.0.0.1>\r\n\
Call-ID: bad1@127.0.0.1\r\n\
CSeq: 1 OPTIONS\r\n\
Content-Length: 0\r\n\r\n";

#[test]
fn bad_request_gets_400_naming_the_fault() {
    let err = Message::parse(Bytes::from_static(NO_MAX_FORWARDS.as_bytes())).unwrap_err();
    let resp = bad_request_response(NO_MAX_FORWARDS.as_bytes(), &err).unwrap();
    let resp = Message::parse(resp).unwrap();
    assert_eq!(resp.status(), Some(400));
    assert!(
        resp.reason_phrase().unwrap().contains("Max-Forwards"),
        "{:?}",
        resp.reason_phrase()
    );
    assert!(resp
        .header("Warning")
        .unwrap()
        .starts_with("399 tandem \"missing mandatory header"));
    assert_eq!(resp.call_id(), "bad1@127.0.0.1");
    assert_eq!(resp.top_via().branch(), Some("z9hG4bKbad1"));
}

#[test]
fn unanswerable_input_is_not_answered() {
    let err = ParseError::new("x");
    assert!(bad_request_response(b"\x16\x03\x01garbage", &err).is_none());
    assert!(bad_request_response(b"SIP/2.0 200 OK\r\nVia: x\r\n\r\n", &err).is_none());
    let ack = NO_MAX_FORWARDS.replace("OPTIONS", "ACK");
    assert!(bad_request_response(ack.as_bytes(), &err).is_none());
    let no_call_id = NO_MAX_FORWARDS.replace("Call-ID: bad1@127.0.0.1\r\n", "");
    assert!(bad_request_response(no_call_id.as_bytes(), &err).is_none());
}

async fn recv(sock: &UdpSocket) -> Message {
    let mut buf = vec![0u8; 65536];
    let n = tokio::time::timeout(Duration::from_secs(5), sock.recv(&mut buf))
        .await
        .expect("answer within 5 s")
        .unwrap();
    Message::parse(Bytes::copy_from_slice(&buf[..n])).unwrap()
}

#[tokio::test]
async fn endpoint_answers_bad_requests_and_passes_good_ones() {
    let (ep, mut events) =
        Endpoint::bind("127.0.0.1:0".parse().unwrap(), &EndpointConfig::default()).unwrap();
    let peer = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let via_port = peer.local_addr().unwrap().port();
    let bad = NO_MAX_FORWARDS.replace("5999", &via_port.to_string());
    peer.send_to(bad.as_bytes(), ep.local_addr()).await.unwrap();
    assert_eq!(recv(&peer).await.status(), Some(400));

    let v7 = bad
        .replace("SIP/2.0\r\n", "SIP/7.0\r\n")
        .replace("CSeq: 1 OPTIONS", "Max-Forwards: 70\r\nCSeq: 1 OPTIONS");
    peer.send_to(v7.as_bytes(), ep.local_addr()).await.unwrap();
    assert_eq!(recv(&peer).await.status(), Some(505));

    peer.send_to(b"\x00\x01garbage", ep.local_addr())
        .await
        .unwrap();
    let good = bad.replace("CSeq: 1 OPTIONS", "Max-Forwards: 70\r\nCSeq: 1 OPTIONS");
    peer.send_to(good.as_bytes(), ep.local_addr())
        .await
        .unwrap();
    let ev = tokio::time::timeout(Duration::from_secs(5), events.recv())
        .await
        .unwrap()
        .unwrap();
    let TuEvent::Request { key, request, .. } = ev else {
        panic!("expected a request, got {ev:?}")
    };
    assert_eq!(request.method(), Some(&Method::Options));
    let ok = Message::parse(ResponseBuilder::new(&request, 200, "OK").build()).unwrap();
    ep.layer().send_response(&key, ok).unwrap();
    assert_eq!(recv(&peer).await.status(), Some(200));

    let stats = ep.stats();
    assert_eq!(stats.rejected_400, 1);
    assert_eq!(stats.rejected_505, 1);
    assert_eq!(stats.received, 1);
    assert!(stats.dropped + stats.transport.udp.garbage_dropped >= 1);
    ep.shutdown().await;
}

fn options_from(port: u16, branch: &str) -> String {
    NO_MAX_FORWARDS
        .replace("5999", &port.to_string())
        .replace("z9hG4bKbad1", branch)
        .replace("bad1@", &format!("{branch}@"))
        .replace("CSeq: 1 OPTIONS", "Max-Forwards: 70\r\nCSeq: 1 OPTIONS")
}

/// 127.0.0.1 trusted, strangers allowed 1/s with `burst` at once, banned
/// for `ban`.
fn gated(burst: u32, ban: Duration) -> EndpointConfig {
    EndpointConfig {
        gate: GateConfig {
            trusted: TrustedSources::new(["127.0.0.1/32".parse().unwrap()], []),
            limit: RateLimit {
                rate_per_s: 1,
                burst,
                ban,
                table_size: 16,
            },
            stranger_backlog: 1024,
        },
        ..EndpointConfig::default()
    }
}

async fn send_options(sock: &UdpSocket, via_port: u16, branch: &str, to: SocketAddr) {
    let text = options_from(via_port, branch);
    sock.send_to(text.as_bytes(), to).await.unwrap();
}

/// Requests the TU got from each source IP, waiting until `want` arrived
/// (5 s at most) and then a little for any that should not come.
async fn requests_by_ip(events: &mut TuReceiver, want: usize) -> HashMap<std::net::IpAddr, usize> {
    let mut got = HashMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let mut total = 0;
    loop {
        let wait = if total >= want {
            Duration::from_millis(200)
        } else {
            deadline.saturating_duration_since(tokio::time::Instant::now())
        };
        match tokio::time::timeout(wait, events.recv()).await {
            Ok(Some(TuEvent::Request { source, .. })) => {
                *got.entry(source.addr.ip()).or_insert(0) += 1;
                total += 1;
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => return got,
        }
    }
}

#[tokio::test]
async fn the_gate_bans_a_stranger_over_its_rate_before_parsing_and_never_a_trusted_source() {
    let config = gated(3, Duration::from_secs(60));
    let (ep, mut events) = Endpoint::bind("127.0.0.1:0".parse().unwrap(), &config).unwrap();
    let trunk = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let stranger = UdpSocket::bind("127.0.0.2:0").await.unwrap();
    let (tp, sp) = (
        trunk.local_addr().unwrap().port(),
        stranger.local_addr().unwrap().port(),
    );
    let to = ep.local_addr();
    for n in 0..50 {
        send_options(&stranger, sp, &format!("z9hG4bKs{n}"), to).await;
        send_options(&trunk, tp, &format!("z9hG4bKt{n}"), to).await;
    }
    let got = requests_by_ip(&mut events, 53).await;
    let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
    assert_eq!(got.get(&ip("127.0.0.1")), Some(&50), "{got:?}");
    assert_eq!(got.get(&ip("127.0.0.2")), Some(&3), "{got:?}");
    let stats = ep.stats();
    // One ban; the rest dropped by the transport (counted) or, once the
    // kernel filter is on, by the kernel (not counted).
    let dropped = stats.gate_dropped;
    assert_eq!((dropped.rate, dropped.backlog), (1, 0), "{dropped:?}");
    assert!(dropped.banned <= 46, "{dropped:?}");
    assert_eq!(stats.strangers, 3);
    // Nothing unparsed was parsed: only the admitted ones count as received.
    assert_eq!(stats.received, 53);

    // Made trusted (a reload named it): its messages pass at once.
    ep.set_trusted(TrustedSources::new([], [ip("127.0.0.1"), ip("127.0.0.2")]));
    for n in 50..60 {
        send_options(&stranger, sp, &format!("z9hG4bKs{n}"), to).await;
    }
    let got = requests_by_ip(&mut events, 10).await;
    assert_eq!(got.get(&ip("127.0.0.2")), Some(&10), "{got:?}");
}

#[tokio::test]
async fn a_banned_sources_datagrams_are_dropped_by_the_kernel_until_its_ban_ends() {
    let config = gated(1, Duration::from_secs(2));
    let (ep, mut events) = Endpoint::bind("127.0.0.1:0".parse().unwrap(), &config).unwrap();
    let to = ep.local_addr();
    let trunk = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let stranger = UdpSocket::bind("127.0.0.2:0").await.unwrap();
    let (tp, sp) = (
        trunk.local_addr().unwrap().port(),
        stranger.local_addr().unwrap().port(),
    );
    // One passes, the second bans.
    send_options(&stranger, sp, "z9hG4bKs0", to).await;
    send_options(&stranger, sp, "z9hG4bKs1", to).await;
    testkit::wait_for("the ban", Duration::from_secs(5), || async {
        match ep.stats().gate_dropped.rate {
            1 => Ok(()),
            n => Err(format!("{n} bans")),
        }
    })
    .await;
    let read_before = ep.stats().transport.udp.bytes_received;
    for n in 2..102 {
        send_options(&stranger, sp, &format!("z9hG4bKs{n}"), to).await;
    }
    send_options(&trunk, tp, "z9hG4bKt0", to).await;
    let got = requests_by_ip(&mut events, 2).await;
    let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
    assert_eq!(got.get(&ip("127.0.0.1")), Some(&1), "{got:?}");
    assert_eq!(got.get(&ip("127.0.0.2")), Some(&1), "{got:?}");
    // The socket read the trunk's datagram only: the kernel dropped the
    // banned source's.
    let trunk_bytes = options_from(tp, "z9hG4bKt0").len() as u64;
    assert_eq!(
        ep.stats().transport.udp.bytes_received,
        read_before + trunk_bytes
    );
    // The ban ends: the stranger is heard again.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    send_options(&stranger, sp, "z9hG4bKs200", to).await;
    let got = requests_by_ip(&mut events, 1).await;
    assert_eq!(got.get(&ip("127.0.0.2")), Some(&1), "{got:?}");
}

/// A tap that keeps what it sees, for the tests.
#[derive(Debug, Default)]
struct Recorder(std::sync::Mutex<Vec<ObservedMessage>>);

impl MessageTap for Recorder {
    fn observe(&self, message: ObservedMessage) {
        self.0.lock().unwrap().push(message);
    }
}

impl Recorder {
    /// Waits (5 s at most) until `n` messages were seen; returns them.
    async fn wait(&self, n: usize) -> Vec<ObservedMessage> {
        testkit::wait_for(
            &format!("{n} tapped messages"),
            Duration::from_secs(5),
            || async {
                let seen = self.0.lock().unwrap().clone();
                if seen.len() >= n {
                    Ok(seen)
                } else {
                    Err(format!("{seen:?}"))
                }
            },
        )
        .await
    }
}

fn tapped() -> (EndpointConfig, Arc<Recorder>) {
    let recorder = Arc::new(Recorder::default());
    let config = EndpointConfig {
        tap: Some(recorder.clone()),
        ..EndpointConfig::default()
    };
    (config, recorder)
}

#[tokio::test]
async fn the_tap_sees_each_udp_message_received_and_sent_with_its_addresses() {
    let (config, recorder) = tapped();
    let (ep, _events) = Endpoint::bind("127.0.0.1:0".parse().unwrap(), &config).unwrap();
    let peer = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let peer_addr = peer.local_addr().unwrap();
    // A malformed request: received, and answered 400 by the endpoint.
    let bad = NO_MAX_FORWARDS.replace("5999", &peer_addr.port().to_string());
    peer.send_to(bad.as_bytes(), ep.local_addr()).await.unwrap();
    assert_eq!(recv(&peer).await.status(), Some(400));

    let seen = recorder.wait(2).await;
    assert_eq!(seen.len(), 2, "{seen:?}");
    let (inbound, outbound) = (&seen[0], &seen[1]);
    assert_eq!(inbound.direction, Direction::Received);
    assert_eq!(inbound.transport, TransportKind::Udp);
    assert_eq!(
        (inbound.source, inbound.destination),
        (peer_addr, ep.local_addr())
    );
    assert_eq!(&inbound.data[..], bad.as_bytes());
    assert_eq!(outbound.direction, Direction::Sent);
    assert_eq!(outbound.transport, TransportKind::Udp);
    assert_eq!(
        (outbound.source, outbound.destination),
        (ep.local_addr(), peer_addr)
    );
    let answer = Message::parse(outbound.data.clone()).unwrap();
    assert_eq!(answer.status(), Some(400));
    ep.shutdown().await;
}

#[tokio::test]
async fn the_tap_sees_a_tcp_message_with_the_connections_local_address() {
    use tokio::io::AsyncReadExt;
    let (config, recorder) = tapped();
    let (ep, _events) = Endpoint::bind("127.0.0.1:0".parse().unwrap(), &config).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let peer_addr = listener.local_addr().unwrap();
    let text = options_from(peer_addr.port(), "z9hG4bKtcp1");
    ep.send_raw(Target::tcp(peer_addr), Bytes::from(text.clone()))
        .unwrap();
    let (mut stream, from) = tokio::time::timeout(Duration::from_secs(5), listener.accept())
        .await
        .expect("a connection within 5 s")
        .unwrap();
    let mut got = vec![0u8; text.len()];
    tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut got))
        .await
        .expect("the message within 5 s")
        .unwrap();
    assert_eq!(got, text.as_bytes());

    let seen = recorder.wait(1).await;
    let sent = &seen[0];
    assert_eq!(sent.direction, Direction::Sent);
    assert_eq!(sent.transport, TransportKind::Tcp);
    // The connection's own local end, not the listener's address.
    assert_eq!((sent.source, sent.destination), (from, peer_addr));
    assert_eq!(&sent.data[..], text.as_bytes());
    ep.shutdown().await;
}

/// The messages queued while the send task waits (those of one engine
/// pass: the engine runs on the same thread) leave in one `sendmmsg`, in
/// order, and the tap still sees each of them.
#[tokio::test]
async fn udp_messages_queued_together_leave_in_one_system_call_each_tapped() {
    let (config, recorder) = tapped();
    let (ep, _events) = Endpoint::bind("127.0.0.1:0".parse().unwrap(), &config).unwrap();
    let peer = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let peer_addr = peer.local_addr().unwrap();
    let texts: Vec<String> = (0..5)
        .map(|i| options_from(peer_addr.port(), &format!("z9hG4bKbatch{i}")))
        .collect();
    for text in &texts {
        ep.send_raw(Target::udp(peer_addr), Bytes::from(text.clone()))
            .unwrap();
    }
    let mut buf = vec![0u8; 65536];
    for text in &texts {
        let (n, _) = tokio::time::timeout(Duration::from_secs(5), peer.recv_from(&mut buf))
            .await
            .expect("a datagram within 5 s")
            .unwrap();
        assert_eq!(&buf[..n], text.as_bytes());
    }
    let seen = recorder.wait(5).await;
    for (m, text) in seen.iter().zip(&texts) {
        assert_eq!(m.direction, Direction::Sent);
        assert_eq!((m.source, m.destination), (ep.local_addr(), peer_addr));
        assert_eq!(&m.data[..], text.as_bytes());
    }
    let udp = ep.stats().transport.udp;
    assert_eq!((udp.messages_sent, udp.send_calls), (5, 1));
    ep.shutdown().await;
}

/// Every field a different multiple of `k` (struct literals without `..`:
/// a new field must be given here too), so that `stats(a) + stats(b)` is
/// `stats(a + b)` only if `add` sums every field into its own.
fn stats(k: u64) -> EndpointStats {
    use crate::transaction::{OverloadStats, ServerTransactionStats};
    use crate::transport::StatsSnapshot;
    let snapshot = |base: u64| StatsSnapshot {
        messages_received: (base + 1) * k,
        bytes_received: (base + 2) * k,
        messages_sent: (base + 3) * k,
        bytes_sent: (base + 4) * k,
        keepalives_received: (base + 5) * k,
        garbage_dropped: (base + 6) * k,
        framing_errors: (base + 7) * k,
        send_errors: (base + 8) * k,
        send_calls: (base + 9) * k,
        connections_opened: (base + 10) * k,
        connections_closed: (base + 11) * k,
        connections_rejected: (base + 12) * k,
        connections_rejected_per_ip: (base + 13) * k,
        closed_first_message_timeout: (base + 14) * k,
        closed_message_timeout: (base + 15) * k,
        closed_idle: (base + 16) * k,
        accept_errors: (base + 17) * k,
        handshake_failures: (base + 18) * k,
    };
    EndpointStats {
        received: k,
        rejected_400: 2 * k,
        rejected_505: 3 * k,
        dropped: 4 * k,
        overload: OverloadStats {
            rejected: 5 * k,
            dropped: 6 * k,
        },
        transactions: ServerTransactionStats {
            live: 7 * k as usize,
            waiting: 8 * k as usize,
            evicted: 9 * k,
        },
        transport: TransportStats {
            udp: snapshot(100),
            tcp: snapshot(200),
            tls: snapshot(300),
        },
        strangers: 10 * k,
        gate_dropped: GateDropped {
            banned: 11 * k,
            rate: 12 * k,
            backlog: 13 * k,
        },
    }
}

#[test]
fn endpoint_stats_add_sums_every_field() {
    let mut sum = stats(1);
    sum.add(&stats(10));
    assert_eq!(sum, stats(11));
    // A shard that has not reported yet (its slot at the default) adds
    // nothing.
    let mut sum = EndpointStats::default();
    sum.add(&stats(3));
    sum.add(&EndpointStats::default());
    assert_eq!(sum, stats(3));
}
