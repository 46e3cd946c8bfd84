use super::*;
use crate::transport::test_util::*;
use crate::transport::{Target, TransportConfig, Transports};

#[test]
fn classify_datagrams() {
    assert_eq!(classify(b""), Datagram::Garbage("empty"));
    assert_eq!(
        classify(&vec![b'A'; MAX_MESSAGE_SIZE + 1]),
        Datagram::Garbage("too large")
    );
    assert_eq!(classify(b"\r\n\r\n"), Datagram::KeepAlive);
    assert_eq!(classify(b"\r\n"), Datagram::KeepAlive);
    // STUN binding request, TLS client hello: not SIP.
    assert_eq!(
        classify(b"\x00\x01\x00\x00\x21\x12\xa4\x42"),
        Datagram::Garbage("not SIP")
    );
    assert_eq!(classify(b"\x16\x03\x01"), Datagram::Garbage("not SIP"));
    assert_eq!(
        classify(b"OPTIONS sip:a SIP/2.0\r\n\r\n"),
        Datagram::Message(b"OPTIONS sip:a SIP/2.0\r\n\r\n")
    );
    assert_eq!(
        classify(b"\r\nSIP/2.0 200 OK\r\n\r\n"),
        Datagram::Message(b"SIP/2.0 200 OK\r\n\r\n")
    );
    let max = vec![b'A'; MAX_MESSAGE_SIZE];
    assert_eq!(classify(&max), Datagram::Message(&max));
}

#[tokio::test]
async fn udp_round_trip() {
    let (a, mut a_rx) = bind(&TransportConfig::default());
    let (b, mut b_rx) = bind(&TransportConfig::default());
    let req = request("OPTIONS", "");
    within(
        "UDP send",
        a.send(&Target::udp(b.local_addr()), req.clone()),
    )
    .await
    .unwrap();

    let got = recv(&mut b_rx).await;
    assert_eq!(got.data, req);
    assert_eq!(got.source, a.local_addr());
    assert_eq!(got.local, b.local_addr());
    assert_eq!(got.transport, TransportKind::Udp);
    assert_eq!(got.connection, None);

    let resp = response("");
    within("UDP reply", b.send(&got.reply_target(), resp.clone()))
        .await
        .unwrap();
    let got = recv(&mut a_rx).await;
    assert_eq!(got.data, resp);
    assert_eq!(got.source, b.local_addr());

    let (a, b) = (a.stats().udp, b.stats().udp);
    assert_eq!((a.messages_sent, a.messages_received), (1, 1));
    assert_eq!((b.messages_sent, b.messages_received), (1, 1));
    assert_eq!(a.bytes_sent, req.len() as u64);
    assert_eq!(b.bytes_received, req.len() as u64);
}

#[tokio::test]
async fn udp_ipv6_round_trip() {
    let addr: SocketAddr = "[::1]:0".parse().unwrap();
    let (a, _a_rx) = match Transports::bind(addr, &TransportConfig::default()) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("skipped: no IPv6 loopback here ({e})");
            return;
        }
    };
    let (b, mut b_rx) = Transports::bind(addr, &TransportConfig::default()).unwrap();
    let req = request("OPTIONS", "");
    within(
        "UDP send",
        a.send(&Target::udp(b.local_addr()), req.clone()),
    )
    .await
    .unwrap();
    let got = recv(&mut b_rx).await;
    assert_eq!(got.data, req);
    assert_eq!(got.source, a.local_addr());
    assert!(got.source.is_ipv6());
}

#[tokio::test]
async fn large_receive_buffer_is_granted() {
    let requested = 4 << 20;
    let config = UdpConfig {
        recv_buffer_size: requested,
        send_buffer_size: requested,
        reuse_address: true,
        reuse_port: false,
        freebind: false,
    };
    let (tx, _rx) = tokio::sync::mpsc::channel(1);
    let ctx = EndpointContext {
        incoming: tx,
        bans: None,
        shutdown: Default::default(),
        tasks: Default::default(),
    };
    let udp = UdpTransport::bind(localhost(), &config, ctx.clone()).unwrap();
    // Linux grants min(requested, net.core.rmem_max) and reports double.
    let cap = |file: &str| {
        std::fs::read_to_string(file)
            .ok()
            .and_then(|s| s.trim().parse::<usize>().ok())
            .unwrap_or(usize::MAX)
    };
    let expect_recv = requested.min(cap("/proc/sys/net/core/rmem_max"));
    let expect_send = requested.min(cap("/proc/sys/net/core/wmem_max"));
    assert!(
        udp.recv_buffer_size() >= expect_recv,
        "granted {} < {expect_recv}",
        udp.recv_buffer_size()
    );
    assert!(
        udp.send_buffer_size() >= expect_send,
        "granted {} < {expect_send}",
        udp.send_buffer_size()
    );
    // The default, 212992 on Linux, is far below what was asked for here.
    if expect_recv == requested {
        assert!(udp.recv_buffer_size() >= requested);
    }
    ctx.shutdown.cancel();
}

#[tokio::test]
async fn keepalives_and_garbage_are_not_passed_up() {
    let (b, mut b_rx) = bind(&TransportConfig::default());
    let raw = tokio::net::UdpSocket::bind(localhost()).await.unwrap();
    let to = b.local_addr();
    for datagram in [
        &b"\r\n\r\n"[..],
        b"\r\n",
        b"",
        b"\x00\x01\x00\x00\x21\x12\xa4\x42stun",
        b"\x16\x03\x01hello",
    ] {
        within("raw send", raw.send_to(datagram, to)).await.unwrap();
    }
    let req = request("MESSAGE", "hi");
    within("raw send", raw.send_to(&req, to)).await.unwrap();

    // The first thing handed up is the real message.
    let got = recv(&mut b_rx).await;
    assert_eq!(got.data, req);
    assert_eq!(got.source, raw.local_addr().unwrap());
    let stats = b.stats().udp;
    assert_eq!(stats.keepalives_received, 2);
    assert_eq!(stats.garbage_dropped, 3);
    assert_eq!(stats.messages_received, 1);
}

#[tokio::test]
async fn oversize_send_is_refused() {
    let (a, _rx) = bind(&TransportConfig::default());
    let data = bytes::Bytes::from(vec![b'A'; MAX_MESSAGE_SIZE + 1]);
    let err = a
        .send(&Target::udp(a.local_addr()), data)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::TooLarge { size, limit } if size == MAX_MESSAGE_SIZE + 1 && limit == MAX_MESSAGE_SIZE)
    );
    assert_eq!(a.stats().udp.send_errors, 1);
}

#[tokio::test]
async fn send_error_names_the_address() {
    let (a, _rx) = bind(&TransportConfig::default());
    // An IPv4 socket cannot send to an IPv6 address.
    let to: SocketAddr = "[::1]:5060".parse().unwrap();
    let err = a
        .send(&Target::udp(to), request("OPTIONS", ""))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("[::1]:5060"), "{err}");
}

#[tokio::test]
async fn a_second_socket_cannot_bind_the_sip_address() {
    let (a, _rx) = bind(&TransportConfig::default());
    // Another process trying to share the port sets SO_REUSEADDR itself;
    // Linux lets it in only when Tandem's socket has it too.
    let thief = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).unwrap();
    thief.set_reuse_address(true).unwrap();
    let err = thief
        .bind(&a.local_addr().into())
        .expect_err("a second socket bound Tandem's UDP address");
    assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
}

/// The receive loop takes datagrams in `recvmmsg` batches and, after a
/// short batch, clears readiness without a further receive: a burst
/// larger than several batches must all come up in order, and a message
/// sent after the queue ran empty must still wake the loop.
#[tokio::test]
async fn bursts_come_up_whole_and_in_order_and_a_later_message_still_wakes() {
    let (b, mut b_rx) = bind(&TransportConfig::default());
    let raw = tokio::net::UdpSocket::bind(localhost()).await.unwrap();
    let to = b.local_addr();
    let burst: Vec<Bytes> = (0..3 * RECV_BATCH + 1)
        .map(|i| request("MESSAGE", &format!("m{i}")))
        .collect();
    for req in &burst {
        within("raw send", raw.send_to(req, to)).await.unwrap();
    }
    for req in &burst {
        assert_eq!(&recv(&mut b_rx).await.data, req);
    }
    for i in 0..3 {
        // Let the loop go back to waiting on an empty queue.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let later = request("MESSAGE", &format!("later{i}"));
        within("raw send", raw.send_to(&later, to)).await.unwrap();
        assert_eq!(recv(&mut b_rx).await.data, later);
    }
    assert_eq!(b.stats().udp.messages_received, burst.len() as u64 + 3);
}

/// A batch goes out in order with one `sendmmsg` per run of good
/// datagrams; a datagram too large or to an unreachable address fails
/// alone, reported at its own index, and the rest still go.
#[tokio::test]
async fn send_many_reports_each_failure_at_its_index_and_sends_the_rest() {
    let (a, _a_rx) = bind(&TransportConfig::default());
    let (b, mut b_rx) = bind(&TransportConfig::default());
    let to = b.local_addr();
    let v6: SocketAddr = "[::1]:5060".parse().unwrap();
    let datagrams = [
        (request("MESSAGE", "m0"), to),
        (Bytes::from(vec![b'A'; MAX_MESSAGE_SIZE + 1]), to),
        (request("MESSAGE", "m2"), v6),
        (request("MESSAGE", "m3"), to),
        (request("MESSAGE", "m4"), to),
    ];
    let mut reports = Vec::new();
    let mut batch = SendBatch::default();
    within(
        "send_many",
        a.udp()
            .send_many(&mut batch, &datagrams, |i, r| reports.push((i, r))),
    )
    .await;
    let outcome: Vec<_> = reports
        .iter()
        .map(|(i, r)| match r {
            Ok(()) => (*i, "ok".to_owned()),
            Err(Error::TooLarge { .. }) => (*i, "too large".to_owned()),
            Err(e) => (*i, e.to_string()),
        })
        .collect();
    assert_eq!(outcome.len(), 5, "{outcome:?}");
    assert_eq!(outcome[0], (0, "ok".to_owned()));
    assert_eq!(outcome[1], (1, "too large".to_owned()));
    assert_eq!(outcome[2].0, 2);
    assert!(outcome[2].1.contains("[::1]:5060"), "{outcome:?}");
    assert_eq!(outcome[3], (3, "ok".to_owned()));
    assert_eq!(outcome[4], (4, "ok".to_owned()));
    for i in [0, 3, 4] {
        assert_eq!(recv(&mut b_rx).await.data, datagrams[i].0);
    }
    let stats = a.stats().udp;
    assert_eq!((stats.messages_sent, stats.send_errors), (3, 2));
    // [0], then [2] failing, then [3, 4] together.
    assert_eq!(stats.send_calls, 3);
}
