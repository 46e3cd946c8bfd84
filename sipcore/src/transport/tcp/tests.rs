use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::*;
use crate::transport::test_util::*;
use crate::transport::{Target, TransportConfig};

fn with_idle(idle_timeout: Duration) -> TransportConfig {
    TransportConfig {
        tcp: TcpConfig {
            idle_timeout,
            ..TcpConfig::default()
        },
        ..TransportConfig::default()
    }
}

/// Read from a raw client until the server closes (EOF or reset).
async fn read_until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    within("the server to close the connection", async {
        let mut buf = [0u8; 1024];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    got
}

#[tokio::test]
async fn request_in_reply_on_same_connection() {
    let (server, mut server_rx) = bind(&TransportConfig::default());
    let (client, mut client_rx) = bind(&TransportConfig::default());

    let req = request("INVITE", "v=0\r\n\r\nnot a header\r\n");
    within(
        "TCP send",
        client.send(&Target::tcp(server.local_addr()), req.clone()),
    )
    .await
    .unwrap();
    let got = recv(&mut server_rx).await;
    assert_eq!(got.data, req);
    assert_eq!(got.transport, TransportKind::Tcp);
    assert_eq!(got.local, server.local_addr());
    let server_conn = got.connection.expect("a TCP message names its connection");
    assert_eq!(server.tcp().peer_addr(server_conn), Some(got.source));

    // The reply goes back on the same connection (§18.2.2).
    let resp = response("");
    let target = got.reply_target();
    assert_eq!(target.connection, Some(server_conn));
    within("TCP reply", server.send(&target, resp.clone()))
        .await
        .unwrap();
    let reply = recv(&mut client_rx).await;
    assert_eq!(reply.data, resp);
    assert_eq!(reply.source, server.local_addr());
    assert_eq!(
        reply.connection,
        client.tcp().connection_for(server.local_addr())
    );

    let (s, c) = (server.stats().tcp, client.stats().tcp);
    assert_eq!((s.connections_opened, c.connections_opened), (1, 1));
    assert_eq!((s.messages_received, s.messages_sent), (1, 1));
    assert_eq!((c.messages_received, c.messages_sent), (1, 1));
    assert_eq!(c.bytes_sent, req.len() as u64);
    assert_eq!(s.bytes_received, req.len() as u64);
}

#[tokio::test]
async fn sends_to_one_address_reuse_the_connection() {
    let (server, mut server_rx) = bind(&TransportConfig::default());
    let (client, _client_rx) = bind(&TransportConfig::default());
    let to = Target::tcp(server.local_addr());

    within("first send", client.send(&to, request("OPTIONS", "")))
        .await
        .unwrap();
    within("second send", client.send(&to, request("MESSAGE", "hello")))
        .await
        .unwrap();
    let first = recv(&mut server_rx).await;
    let second = recv(&mut server_rx).await;
    assert_eq!(first.connection, second.connection);
    assert_eq!(first.source, second.source);

    // Concurrent sends to the same address also share it.
    let (a, b) = within("concurrent sends", async {
        tokio::join!(
            client.send(&to, request("INFO", "")),
            client.send(&to, request("NOTIFY", ""))
        )
    })
    .await;
    a.unwrap();
    b.unwrap();
    for _ in 0..2 {
        assert_eq!(recv(&mut server_rx).await.connection, first.connection);
    }

    assert_eq!(client.stats().tcp.connections_opened, 1);
    assert_eq!(server.stats().tcp.connections_opened, 1);
    assert_eq!(client.tcp().connection_count(), 1);
}

#[tokio::test]
async fn concurrent_first_sends_open_one_connection() {
    let (server, mut server_rx) = bind(&TransportConfig::default());
    let (client, _client_rx) = bind(&TransportConfig::default());
    let to = Target::tcp(server.local_addr());
    let results = within("concurrent first sends", async {
        tokio::join!(
            client.send(&to, request("OPTIONS", "")),
            client.send(&to, request("INFO", "")),
            client.send(&to, request("NOTIFY", "")),
        )
    })
    .await;
    results.0.unwrap();
    results.1.unwrap();
    results.2.unwrap();
    for _ in 0..3 {
        recv(&mut server_rx).await;
    }
    assert_eq!(client.stats().tcp.connections_opened, 1);
    assert_eq!(server.stats().tcp.connections_opened, 1);
}

#[tokio::test]
async fn sending_to_an_address_reuses_an_inbound_connection() {
    let (server, mut server_rx) = bind(&TransportConfig::default());
    let (client, mut client_rx) = bind(&TransportConfig::default());
    within(
        "send",
        client.send(&Target::tcp(server.local_addr()), request("REGISTER", "")),
    )
    .await
    .unwrap();
    let got = recv(&mut server_rx).await;
    // A request from the server to the client's source address, without
    // naming the connection, still uses the client's connection.
    within(
        "send back",
        server.send(&Target::tcp(got.source), request("OPTIONS", "")),
    )
    .await
    .unwrap();
    recv(&mut client_rx).await;
    assert_eq!(server.stats().tcp.connections_opened, 1);
    assert_eq!(client.stats().tcp.connections_opened, 1);
}

#[tokio::test]
async fn fragmented_stream_with_pings() {
    let (server, mut server_rx) = bind(&TransportConfig::default());
    let mut raw = within("connect", TcpStream::connect(server.local_addr()))
        .await
        .unwrap();
    let req = request("MESSAGE", "a\r\n\r\nb");
    let stream = [&b"\r\n\r\n"[..], &req, b"\r\n\r\n", &req].concat();
    for chunk in stream.chunks(7) {
        within("raw write", raw.write_all(chunk)).await.unwrap();
        raw.flush().await.unwrap();
    }
    assert_eq!(recv(&mut server_rx).await.data, req);
    assert_eq!(recv(&mut server_rx).await.data, req);
    // Two pings, two pongs.
    let mut pongs = [0u8; 4];
    within("pongs", raw.read_exact(&mut pongs)).await.unwrap();
    assert_eq!(&pongs, b"\r\n\r\n");
    assert_eq!(server.stats().tcp.keepalives_received, 2);
}

#[tokio::test]
async fn idle_connection_is_closed() {
    let (server, _server_rx) = bind(&with_idle(Duration::from_millis(200)));
    let mut raw = within("connect", TcpStream::connect(server.local_addr()))
        .await
        .unwrap();
    eventually("the server to accept", || {
        server.stats().tcp.connections_opened == 1
    })
    .await;
    let got = read_until_closed(&mut raw).await;
    assert!(got.is_empty());
    eventually("the connection to leave the table", || {
        server.tcp().connection_count() == 0
    })
    .await;
    assert_eq!(server.stats().tcp.connections_closed, 1);
    assert_eq!(server.stats().tcp.framing_errors, 0);
}

#[tokio::test]
async fn outgoing_idle_connection_is_closed_and_replaced() {
    let (server, mut server_rx) = bind(&TransportConfig::default());
    let (client, _client_rx) = bind(&with_idle(Duration::from_millis(200)));
    let to = Target::tcp(server.local_addr());
    within("send", client.send(&to, request("OPTIONS", "")))
        .await
        .unwrap();
    let first = recv(&mut server_rx).await.connection;
    eventually("the idle connection to close", || {
        client.stats().tcp.connections_closed == 1
    })
    .await;
    assert_eq!(client.tcp().connection_count(), 0);
    within("send again", client.send(&to, request("OPTIONS", "")))
        .await
        .unwrap();
    let second = recv(&mut server_rx).await.connection;
    assert_ne!(first, second);
    assert_eq!(client.stats().tcp.connections_opened, 2);
}

#[tokio::test]
async fn garbage_closes_the_connection_and_is_counted() {
    let (server, _server_rx) = bind(&TransportConfig::default());
    let mut raw = within("connect", TcpStream::connect(server.local_addr()))
        .await
        .unwrap();
    within(
        "raw write",
        raw.write_all(b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03"),
    )
    .await
    .unwrap();
    read_until_closed(&mut raw).await;
    eventually("the connection to leave the table", || {
        server.tcp().connection_count() == 0
    })
    .await;
    let stats = server.stats().tcp;
    assert_eq!(stats.framing_errors, 1);
    assert_eq!(stats.connections_closed, 1);
    assert_eq!(stats.messages_received, 0);
}

#[tokio::test]
async fn missing_content_length_closes_the_connection() {
    let (server, mut server_rx) = bind(&TransportConfig::default());
    let mut raw = within("connect", TcpStream::connect(server.local_addr()))
        .await
        .unwrap();
    let good = request("OPTIONS", "");
    let bad = b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\n\r\n";
    within("raw write", raw.write_all(&[&good[..], bad].concat()))
        .await
        .unwrap();
    // The good message before the bad one still goes up.
    assert_eq!(recv(&mut server_rx).await.data, good);
    read_until_closed(&mut raw).await;
    eventually("the framing error to be counted", || {
        server.stats().tcp.framing_errors == 1
    })
    .await;
}

#[tokio::test]
async fn oversize_message_closes_the_connection() {
    let (server, _server_rx) = bind(&TransportConfig::default());
    let mut raw = within("connect", TcpStream::connect(server.local_addr()))
        .await
        .unwrap();
    let head = format!(
        "MESSAGE sip:a@b SIP/2.0\r\nContent-Length: {}\r\n\r\n",
        MAX_MESSAGE_SIZE
    );
    within("raw write", raw.write_all(head.as_bytes()))
        .await
        .unwrap();
    read_until_closed(&mut raw).await;
    eventually("the framing error to be counted", || {
        server.stats().tcp.framing_errors == 1
    })
    .await;
}

#[tokio::test]
async fn stale_connection_id_is_no_connection() {
    let (server, mut server_rx) = bind(&TransportConfig::default());
    let (client, _client_rx) = bind(&TransportConfig::default());
    within(
        "send",
        client.send(&Target::tcp(server.local_addr()), request("OPTIONS", "")),
    )
    .await
    .unwrap();
    let got = recv(&mut server_rx).await;
    let id = got.connection.unwrap();
    assert!(server.tcp().close(id));
    eventually("the connection to leave the table", || {
        server.tcp().connection_count() == 0
    })
    .await;
    assert!(!server.tcp().close(id));
    let err = server
        .send(&got.reply_target(), response(""))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::NoConnection(addr) if addr == got.source),
        "{err:?}"
    );
    assert!(err.to_string().contains(&got.source.to_string()));
    assert_eq!(server.stats().tcp.send_errors, 1);
    // The client sees the close too.
    eventually("the client to notice", || {
        client.tcp().connection_count() == 0
    })
    .await;
}

#[tokio::test]
async fn connect_failure_names_the_address() {
    // A port nobody listens on: bind, note it, close.
    let free = std::net::TcpListener::bind(localhost())
        .unwrap()
        .local_addr()
        .unwrap();
    let (client, _rx) = bind(&TransportConfig::default());
    let err = within(
        "connect attempt",
        client.send(&Target::tcp(free), request("OPTIONS", "")),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains(&free.to_string()), "{err}");
    assert!(matches!(err, Error::Io { .. }));
    let stats = client.stats().tcp;
    assert_eq!((stats.send_errors, stats.connections_opened), (1, 0));
}

#[tokio::test]
async fn connection_limit_refuses_inbound() {
    let config = TransportConfig {
        tcp: TcpConfig {
            max_connections: 1,
            ..TcpConfig::default()
        },
        ..TransportConfig::default()
    };
    let (server, _rx) = bind(&config);
    let _first = within("connect", TcpStream::connect(server.local_addr()))
        .await
        .unwrap();
    eventually("the first connection", || {
        server.stats().tcp.connections_opened == 1
    })
    .await;
    let mut second = within("connect", TcpStream::connect(server.local_addr()))
        .await
        .unwrap();
    read_until_closed(&mut second).await;
    assert_eq!(server.stats().tcp.connections_rejected, 1);
    assert_eq!(server.tcp().connection_count(), 1);
}

#[tokio::test]
async fn peer_close_removes_the_connection() {
    let (server, mut server_rx) = bind(&TransportConfig::default());
    let mut raw = within("connect", TcpStream::connect(server.local_addr()))
        .await
        .unwrap();
    within("raw write", raw.write_all(&request("OPTIONS", "")))
        .await
        .unwrap();
    recv(&mut server_rx).await;
    drop(raw);
    eventually("the connection to leave the table", || {
        server.tcp().connection_count() == 0
    })
    .await;
    let stats = server.stats().tcp;
    assert_eq!(
        (
            stats.connections_opened,
            stats.connections_closed,
            stats.framing_errors
        ),
        (1, 1, 0)
    );
}

fn with_tcp(tcp: TcpConfig) -> TransportConfig {
    TransportConfig {
        tcp,
        ..TransportConfig::default()
    }
}

/// A raw client connection from a chosen loopback address.
async fn connect_from(ip: &str, to: SocketAddr) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::new(ip.parse().unwrap(), 0))
        .unwrap();
    within("connect", socket.connect(to)).await.unwrap()
}

/// The request goes through and comes up on `rx` from `from`.
async fn served(
    stream: &mut TcpStream,
    rx: &mut mpsc::Receiver<Incoming>,
    method: &str,
) -> Incoming {
    let req = request(method, "");
    within("raw write", stream.write_all(&req)).await.unwrap();
    let got = recv(rx).await;
    assert_eq!(got.data, req);
    assert_eq!(got.source, stream.local_addr().unwrap());
    got
}

#[tokio::test]
async fn per_source_cap_refuses_that_source_only() {
    let (server, mut rx) = bind(&with_tcp(TcpConfig {
        max_connections_per_ip: 2,
        ..TcpConfig::default()
    }));
    let to = server.local_addr();
    let mut first = connect_from("127.0.0.2", to).await;
    let mut second = connect_from("127.0.0.2", to).await;
    served(&mut first, &mut rx, "OPTIONS").await;
    served(&mut second, &mut rx, "OPTIONS").await;

    let mut third = connect_from("127.0.0.2", to).await;
    read_until_closed(&mut third).await;
    assert_eq!(server.stats().tcp.connections_rejected_per_ip, 1);

    // Another source still gets in and is served, and so are the two
    // connections the cap let in.
    let mut other = connect_from("127.0.0.3", to).await;
    served(&mut other, &mut rx, "INVITE").await;
    served(&mut first, &mut rx, "BYE").await;
    assert_eq!(server.tcp().connection_count(), 3);

    // A closed connection frees its place.
    drop(second);
    eventually("the closed connection to leave the table", || {
        server.tcp().connection_count() == 2
    })
    .await;
    let mut again = connect_from("127.0.0.2", to).await;
    served(&mut again, &mut rx, "OPTIONS").await;
    let stats = server.stats().tcp;
    assert_eq!(
        (
            stats.connections_rejected_per_ip,
            stats.connections_rejected
        ),
        (1, 0)
    );
}

#[tokio::test]
async fn trickling_peer_is_closed_at_the_message_deadline() {
    let (server, mut rx) = bind(&with_tcp(TcpConfig {
        // Only the per-message deadline can close the slow connection
        // within the test's wait: the idle timer is kept alive by the
        // trickle and the first message is complete.
        first_message_timeout: Duration::from_secs(60),
        message_timeout: Duration::from_secs(2),
        ..TcpConfig::default()
    }));
    let to = server.local_addr();
    let mut slow = connect_from("127.0.0.2", to).await;
    served(&mut slow, &mut rx, "OPTIONS").await;
    let (mut slow_read, mut slow_write) = slow.into_split();
    let trickle = tokio::spawn(async move {
        // One byte a second, at most 30, until the server closes.
        for &b in request("INVITE", "").iter().take(30) {
            if slow_write.write_all(&[b]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });

    // A normal client on another connection is served meanwhile.
    let mut normal = connect_from("127.0.0.3", to).await;
    served(&mut normal, &mut rx, "INVITE").await;

    within("the server to close the trickling connection", async {
        let mut byte = [0u8; 1];
        while let Ok(n) = slow_read.read(&mut byte).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
    trickle.abort();
    let stats = server.stats().tcp;
    assert_eq!(stats.closed_message_timeout, 1);
    assert_eq!(stats.closed_first_message_timeout, 0);
    served(&mut normal, &mut rx, "BYE").await;
}

#[tokio::test]
async fn silent_connection_is_closed_at_the_first_message_deadline() {
    let (server, _rx) = bind(&with_tcp(TcpConfig {
        first_message_timeout: Duration::from_secs(1),
        ..TcpConfig::default()
    }));
    let mut silent = connect_from("127.0.0.2", server.local_addr()).await;
    // Keep-alive pings are traffic (the idle timer) but not a message.
    let mut pinging = connect_from("127.0.0.2", server.local_addr()).await;
    let pings = async {
        for _ in 0..10 {
            if pinging.write_all(b"\r\n\r\n").await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    };
    within("pings", pings).await;
    read_until_closed(&mut silent).await;
    read_until_closed(&mut pinging).await;
    let stats = server.stats().tcp;
    assert_eq!(stats.closed_first_message_timeout, 2);
    assert_eq!(server.tcp().connection_count(), 0);
}

#[test]
fn connection_cap_leaves_room_for_other_descriptors() {
    let mut config = TcpConfig::default();
    // 20,000 relay ports and the reserve come off a 30,000 limit.
    assert_eq!(
        config.cap_to_fd_limit(30_000, 20_000),
        (30_000 - 20_000 - FD_RESERVE) as usize
    );
    // Never raised above the configured cap.
    let mut config = TcpConfig {
        max_connections: 100,
        ..TcpConfig::default()
    };
    assert_eq!(config.cap_to_fd_limit(1 << 20, 0), 100);
    // A limit too small for the reserve still leaves one connection.
    assert_eq!(config.cap_to_fd_limit(1024, 2000), 1);
    assert_eq!(config.max_connections, 1);
}

#[test]
fn ipv6_sources_are_capped_per_64() {
    let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
    let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
    let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
    assert_eq!(source_key(a), source_key(b));
    assert_ne!(source_key(a), source_key(c));
    let v4: IpAddr = "192.0.2.1".parse().unwrap();
    assert_eq!(source_key(v4), v4);
}
