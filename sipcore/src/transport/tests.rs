use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use super::test_util::*;
use super::*;

#[tokio::test]
async fn udp_and_tcp_share_the_port() {
    let (t, _rx) = bind(&TransportConfig::default());
    assert_ne!(t.local_addr().port(), 0);
    assert_eq!(t.udp().local_addr(), t.local_addr());
    assert_eq!(t.tcp().local_addr(), t.local_addr());
}

#[tokio::test]
async fn one_channel_for_both_transports() {
    let (server, mut rx) = bind(&TransportConfig::default());
    let (client, _client_rx) = bind(&TransportConfig::default());
    let to = server.local_addr();
    within(
        "UDP send",
        client.send(&Target::udp(to), request("OPTIONS", "")),
    )
    .await
    .unwrap();
    let first = recv(&mut rx).await;
    within(
        "TCP send",
        client.send(&Target::tcp(to), request("OPTIONS", "")),
    )
    .await
    .unwrap();
    let second = recv(&mut rx).await;
    assert_eq!(first.transport, TransportKind::Udp);
    assert_eq!(second.transport, TransportKind::Tcp);
    let stats = server.stats();
    assert_eq!(
        (stats.udp.messages_received, stats.tcp.messages_received),
        (1, 1)
    );
}

#[tokio::test]
async fn shutdown_stops_tasks_and_closes_connections() {
    let (server, mut rx) = bind(&TransportConfig::default());
    let mut raw = within("connect", TcpStream::connect(server.local_addr()))
        .await
        .unwrap();
    eventually("the server to accept", || {
        server.stats().tcp.connections_opened == 1
    })
    .await;

    within("shutdown", server.shutdown()).await;
    assert_eq!(server.tcp().connection_count(), 0);
    assert_eq!(server.stats().tcp.connections_closed, 1);
    // The peer sees the close.
    let mut buf = [0u8; 16];
    let n = within("EOF", raw.read(&mut buf)).await.unwrap_or(0);
    assert_eq!(n, 0);
    // No task holds the channel any more.
    assert!(within("channel end", rx.recv()).await.is_none());
    // Sends fail.
    let err = server
        .send(&Target::tcp(server.local_addr()), request("OPTIONS", ""))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err:?}");
}

#[tokio::test]
async fn dropping_stops_tasks() {
    let (server, mut rx) = bind(&TransportConfig::default());
    drop(server);
    assert!(within("channel end", rx.recv()).await.is_none());
}

#[tokio::test]
async fn dropped_receiver_stops_receiving() {
    let (server, rx) = bind(&TransportConfig::default());
    let (client, _client_rx) = bind(&TransportConfig::default());
    drop(rx);
    within(
        "UDP send",
        client.send(&Target::udp(server.local_addr()), request("OPTIONS", "")),
    )
    .await
    .unwrap();
    within(
        "TCP send",
        client.send(&Target::tcp(server.local_addr()), request("OPTIONS", "")),
    )
    .await
    .unwrap();
    // The server's connection task ends at the first message it cannot hand up.
    eventually("the connection to close", || {
        server.stats().tcp.connections_closed == 1
    })
    .await;
}

#[test]
fn targets_and_kinds() {
    let addr: SocketAddr = "192.0.2.7:5061".parse().unwrap();
    let t = Target::tcp(addr).with_connection(ConnectionId(9));
    assert_eq!(t.to_string(), "TCP 192.0.2.7:5061 (conn#9)");
    assert_eq!(Target::udp(addr).to_string(), "UDP 192.0.2.7:5061");
    assert!(TransportKind::Tcp.is_stream());
    assert!(!TransportKind::Udp.is_stream());
    let incoming = Incoming {
        data: Bytes::new(),
        source: addr,
        local: localhost(),
        transport: TransportKind::Tcp,
        connection: Some(ConnectionId(9)),
    };
    assert_eq!(incoming.reply_target(), t);
}

#[test]
fn snapshot_counts_open_connections() {
    let s = StatsSnapshot {
        connections_opened: 5,
        connections_closed: 3,
        ..StatsSnapshot::default()
    };
    assert_eq!(s.connections_open(), 2);
}

#[test]
fn log_limiter_lets_one_line_through_per_interval() {
    let mut limiter = LogLimiter::new(Duration::from_secs(1));
    let t0 = tokio::time::Instant::now();
    assert_eq!(limiter.allow(t0), Some(0));
    assert_eq!(limiter.allow(t0 + Duration::from_millis(10)), None);
    assert_eq!(limiter.allow(t0 + Duration::from_millis(999)), None);
    // The next line tells how many were held back.
    assert_eq!(limiter.allow(t0 + Duration::from_secs(1)), Some(2));
    assert_eq!(limiter.allow(t0 + Duration::from_millis(1500)), None);
}
