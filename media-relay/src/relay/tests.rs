use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use socket2::SockRef;

use super::bind_socket;
use crate::RelayConfig;

#[test]
fn sockets_get_the_configured_options() {
    let config = RelayConfig {
        freebind: true,
        recv_buffer_bytes: 1 << 20,
        ..RelayConfig::default()
    };
    let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 77, 1)), 0);
    let sock = bind_socket(&config, addr).unwrap();
    let r = SockRef::from(&sock);
    assert!(r.freebind().unwrap());
    assert!(r.nonblocking().unwrap_or(true));
    assert!(r.recv_buffer_size().unwrap() >= 1 << 20);

    let plain = bind_socket(&RelayConfig::default(), addr).unwrap();
    assert!(!SockRef::from(&plain).freebind().unwrap());
}

#[test]
fn config_errors_name_the_key() {
    let bad = |c: RelayConfig| c.validate().unwrap_err().to_string();
    let base = RelayConfig::default();
    assert!(bad(RelayConfig {
        port_min: 100,
        port_max: 99,
        ..base.clone()
    })
    .contains("port_max"));
    assert!(bad(RelayConfig {
        port_min: 101,
        port_max: 102,
        ..base.clone()
    })
    .contains("port_max"));
    assert!(bad(RelayConfig {
        batch_size: 0,
        ..base.clone()
    })
    .contains("batch_size"));
    let mut c = base.clone();
    c.session_defaults.clock_rate = 0;
    assert!(bad(c).contains("clock_rate"));
    assert!(base.validate().is_ok());
}

#[test]
fn config_from_toml_rejects_unknown_keys() {
    let c: RelayConfig =
        serde_json::from_str(r#"{"local_ip":"127.0.0.2","port_min":20000}"#).unwrap();
    assert_eq!(c.port_min, 20000);
    assert_eq!(c.batch_size, 32);
    let e = serde_json::from_str::<RelayConfig>(r#"{"port_mni":20000}"#).unwrap_err();
    assert!(e.to_string().contains("port_mni"));
}

#[test]
fn relay_can_be_shared_between_tasks() {
    fn shareable<T: Send + Sync + 'static>() {}
    shareable::<crate::MediaRelay>();
    shareable::<crate::RelaySnapshot>();
    shareable::<crate::SessionStats>();
}

fn peer(host: u8) -> std::net::UdpSocket {
    let s = std::net::UdpSocket::bind(SocketAddr::new(
        IpAddr::V4(Ipv4Addr::new(127, 0, 113, host)),
        0,
    ))
    .unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    s
}

fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let end = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !f() {
        assert!(
            std::time::Instant::now() < end,
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

#[tokio::test]
async fn parked_pairs_move_to_the_worker_of_their_next_session() {
    use crate::rtp::{self, build_rtp};
    use crate::worker::lock;
    use crate::{MediaRelay, SessionId, SessionParams};

    let r = MediaRelay::new(RelayConfig {
        local_ip: IpAddr::V4(Ipv4Addr::new(127, 0, 113, 1)),
        port_min: 22200,
        port_max: 22211,
        workers: 2,
        ..RelayConfig::default()
    })
    .unwrap();
    let (trunk, server) = (peer(2), peer(3));
    let worker_of = |id| lock(&r.registry).sessions[&SessionId(id)].worker;
    for id in 1..=3 {
        let params = SessionParams {
            remote_a: Some(trunk.local_addr().unwrap()),
            remote_b: Some(server.local_addr().unwrap()),
            options: None,
            rtcp_mux: false,
        };
        r.create_session(SessionId(id), params).unwrap();
    }
    assert_eq!([worker_of(1), worker_of(2), worker_of(3)], [0, 1, 0]);
    let snap = r.session_snapshot(SessionId(1)).unwrap();
    r.remove_session(SessionId(1)).await.unwrap();
    r.remove_session(SessionId(2)).await.unwrap();
    eventually("four pairs parked", || r.counters().port_pairs_parked == 4);

    // Session 1's pairs are parked with worker 0, but worker 1 is the
    // least loaded now: the sockets move there.
    let info = r.restore_session(&snap).unwrap();
    assert_eq!(worker_of(1), 1);
    assert_eq!(r.counters().port_pairs_parked, 2);
    let pkt = build_rtp(0, 7, 0, 0x77, &[0; 160]);
    trunk.send_to(&pkt, info.side_a.rtp_addr()).unwrap();
    let mut buf = [0u8; 2048];
    let (n, from) = server.recv_from(&mut buf).expect("forwarded");
    assert_eq!((rtp::seq(&buf[..n]), from), (7, info.side_b.rtp_addr()));
    server
        .send_to(&build_rtp(0, 9, 0, 0x99, &[0; 160]), info.side_b.rtp_addr())
        .unwrap();
    let (n, from) = trunk.recv_from(&mut buf).expect("forwarded back");
    assert_eq!((rtp::seq(&buf[..n]), from), (9, info.side_a.rtp_addr()));

    // Worker 0's old session still forwards (its tokens were not disturbed).
    let info3 = r.session_info(SessionId(3)).unwrap();
    trunk.send_to(&pkt, info3.side_a.rtp_addr()).unwrap();
    let (n, from) = server.recv_from(&mut buf).expect("forwarded");
    assert_eq!((rtp::seq(&buf[..n]), from), (7, info3.side_b.rtp_addr()));
    for id in [1, 3] {
        r.remove_session(SessionId(id)).await.unwrap();
    }
    eventually("all pairs parked", || r.counters().port_pairs_parked == 6);
}
