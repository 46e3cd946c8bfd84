//! Integration tests with real UDP sockets on 127.0.0.0/8. Each test uses
//! its own loopback address and port range. Every receive has a deadline.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use common::{addr, eventually, ip, peer, recv, rr, rtp_pkt, DEADLINE};
use media_relay::rtp::{self, build_rtp};
use media_relay::{
    Error, Latching, MediaRelay, RelayConfig, RelaySnapshot, SessionId, SessionOptions,
    SessionParams, Side,
};

fn relay(net: u8, port_min: u16, port_max: u16) -> MediaRelay {
    MediaRelay::new(RelayConfig {
        local_ip: ip(net, 1),
        port_min,
        port_max,
        workers: 2,
        ..RelayConfig::default()
    })
    .expect("relay starts")
}

/// A session whose sides' SDP name `trunk` and `server`.
fn session_between(
    r: &MediaRelay,
    id: SessionId,
    trunk: &UdpSocket,
    server: &UdpSocket,
) -> media_relay::SessionInfo {
    common::session(r, id, trunk, server, false)
}

#[tokio::test]
async fn relays_rtp_and_rtcp_both_ways() {
    let net = 101;
    let r = relay(net, 21000, 21099);
    let (trunk, trunk_rtcp) = (peer(net, 2), peer(net, 2));
    let (server, server_rtcp) = (peer(net, 3), peer(net, 3));
    let id = SessionId(1);
    let info = session_between(&r, id, &trunk, &server);
    assert_eq!(info.side_a.ip, ip(net, 1));
    assert_eq!(info.side_a.rtp_port % 2, 0);
    assert_eq!(info.side_a.rtcp_port, info.side_a.rtp_port + 1);
    assert_ne!(info.side_a.rtp_port, info.side_b.rtp_port);
    r.set_remote_rtcp(id, Side::A, addr(&trunk_rtcp)).unwrap();
    r.set_remote_rtcp(id, Side::B, addr(&server_rtcp)).unwrap();

    // A -> B
    for seq in 0..5u16 {
        let p = rtp_pkt(seq, 160 * u32::from(seq), 0xa);
        trunk.send_to(&p, info.side_a.rtp_addr()).unwrap();
        let (got, from) = recv(&server);
        assert_eq!(got, p);
        assert_eq!(from, info.side_b.rtp_addr());
    }
    // B -> A
    for seq in 100..105u16 {
        let p = rtp_pkt(seq, 160 * u32::from(seq), 0xb);
        server.send_to(&p, info.side_b.rtp_addr()).unwrap();
        let (got, from) = recv(&trunk);
        assert_eq!(got, p);
        assert_eq!(from, info.side_a.rtp_addr());
    }
    // RTCP both ways, on the RTCP ports.
    trunk_rtcp
        .send_to(&rr(0xa), info.side_a.rtcp_addr())
        .unwrap();
    let (got, from) = recv(&server_rtcp);
    assert_eq!((got, from), (rr(0xa), info.side_b.rtcp_addr()));
    server_rtcp
        .send_to(&rr(0xb), info.side_b.rtcp_addr())
        .unwrap();
    let (got, from) = recv(&trunk_rtcp);
    assert_eq!((got, from), (rr(0xb), info.side_a.rtcp_addr()));
    // rtcp-mux: RTCP on the RTP port goes the RTP way.
    trunk.send_to(&rr(0xa), info.side_a.rtp_addr()).unwrap();
    let (got, from) = recv(&server);
    assert_eq!((got, from), (rr(0xa), info.side_b.rtp_addr()));

    let st = r.stats(id).unwrap();
    assert_eq!((st.side_a.packets, st.side_a.rtcp_packets), (5, 2));
    assert_eq!((st.side_b.packets, st.side_b.rtcp_packets), (5, 1));
    assert_eq!(st.side_a.bytes, 5 * 172);
    assert_eq!((st.side_a.lost, st.side_b.lost), (0, 0));
    assert_eq!(st.side_a.ssrc, Some(0xa));
    assert!(st.side_a.since_last_packet.is_some());
    assert!(r.idle_time(id, Side::B).unwrap().is_some());
    eventually("global counters", || r.counters().packets_relayed == 13);
    assert_eq!(r.counters().bytes_relayed, 10 * 172 + 3 * 8);
    assert_eq!(r.active_sessions(), 1);
    assert_eq!(r.session_ids(), vec![id]);

    let last = r.remove_session(id).await.unwrap();
    assert_eq!(last.side_a.packets, 5);
    assert_eq!(r.active_sessions(), 0);
    assert!(matches!(r.stats(id), Err(Error::NoSuchSession(_))));
    assert!(matches!(
        r.remove_session(id).await,
        Err(Error::NoSuchSession(_))
    ));
    // The worker lets go of the sockets: the ports go back to the pool,
    // their sockets stay bound (parked) for the next session on them...
    eventually("ports parked", || r.counters().port_pairs_parked == 2);
    assert_eq!(r.counters().port_pairs_free, r.counters().port_pairs_total);
    assert!(UdpSocket::bind(info.side_a.rtp_addr()).is_err());
    // ...and are closed with the relay: the ports can be bound again.
    drop(r);
    UdpSocket::bind(info.side_a.rtp_addr()).expect("port freed");
    UdpSocket::bind(info.side_b.rtcp_addr()).expect("port freed");
}

#[tokio::test]
async fn latches_to_the_actual_source_and_drops_foreign_packets() {
    let net = 102;
    let r = relay(net, 21100, 21199);
    let trunk = peer(net, 2);
    let server = peer(net, 3);
    let intruder = peer(net, 4);
    let id = SessionId(7);
    // The trunk's SDP names an address its RTP will not come from (NAT).
    let sdp_addr = SocketAddr::new(ip(net, 99), 4000);
    let info = r
        .create_session(
            id,
            SessionParams {
                remote_a: Some(sdp_addr),
                remote_b: Some(addr(&server)),
                options: None,
                rtcp_mux: false,
            },
        )
        .unwrap();
    // Its SIP comes from the address its RTP will come from (its public
    // address): that IP may latch.
    r.set_signalling_ip(id, Side::A, Some(ip(net, 2))).unwrap();

    trunk
        .send_to(&rtp_pkt(1, 160, 0xa), info.side_a.rtp_addr())
        .unwrap();
    assert_eq!(rtp::seq(&recv(&server).0), 1);
    // Media toward leg A goes where its RTP came from, not to the SDP.
    server
        .send_to(&rtp_pkt(50, 0, 0xb), info.side_b.rtp_addr())
        .unwrap();
    assert_eq!(rtp::seq(&recv(&trunk).0), 50);

    // A stranger sends to side A: dropped and counted.
    intruder
        .send_to(&rtp_pkt(666, 0, 0xa), info.side_a.rtp_addr())
        .unwrap();
    intruder
        .send_to(&rtp_pkt(667, 0, 0xe), info.side_a.rtp_addr())
        .unwrap();
    // Garbage from the latched source: dropped as malformed.
    trunk.send_to(b"hello", info.side_a.rtp_addr()).unwrap();
    trunk
        .send_to(&rtp_pkt(2, 320, 0xa), info.side_a.rtp_addr())
        .unwrap();
    // Same socket, same order: had the intruder got through, it would be
    // first.
    assert_eq!(rtp::seq(&recv(&server).0), 2);

    let snap = r.session_snapshot(id).unwrap();
    assert_eq!(snap.side_a.latched_rtp, Some(addr(&trunk)));
    assert_eq!(snap.side_a.remote_rtp, Some(sdp_addr));
    assert_eq!(snap.side_b.latched_rtp, Some(addr(&server)));
    // The latched peer's packets may reach the relay on its connected
    // socket and the intruder's on the unconnected one, so the drops are
    // counted in no particular order relative to the forwarded packet.
    eventually("rejected-source drops", || {
        r.stats(id).unwrap().side_a.dropped_rejected_source == 2
    });
    let st = r.stats(id).unwrap().side_a;
    assert_eq!(st.dropped_malformed, 1);
    assert_eq!(st.packets, 2);
    eventually("global drop counters", || {
        let c = r.counters();
        c.dropped_rejected_source == 2 && c.dropped_malformed == 1
    });
    r.remove_session(id).await.unwrap();
}

#[tokio::test]
async fn drops_when_the_other_side_has_no_address_yet() {
    let net = 103;
    let r = relay(net, 21200, 21299);
    let trunk = peer(net, 2);
    let server = peer(net, 3);
    let id = SessionId(3);
    let params = SessionParams {
        remote_a: Some(addr(&trunk)),
        ..SessionParams::default()
    };
    let info = r.create_session(id, params).unwrap();
    trunk
        .send_to(&rtp_pkt(1, 0, 1), info.side_a.rtp_addr())
        .unwrap();
    eventually("no-destination drop", || {
        r.stats(id).unwrap().side_a.dropped_no_destination == 1
    });
    // The answer arrives: leg B gets media from now on.
    r.set_remote(id, Side::B, addr(&server)).unwrap();
    trunk
        .send_to(&rtp_pkt(2, 160, 1), info.side_a.rtp_addr())
        .unwrap();
    assert_eq!(rtp::seq(&recv(&server).0), 2);
    eventually("counter", || r.counters().dropped_no_destination == 1);
    r.remove_session(id).await.unwrap();
}

#[tokio::test]
async fn upstream_switch_keeps_one_continuous_stream_toward_leg_a() {
    let net = 104;
    let r = relay(net, 21300, 21399);
    let trunk = peer(net, 2);
    let server1 = peer(net, 3);
    let server2 = peer(net, 4);
    let id = SessionId(9);
    let info = r
        .create_session(
            id,
            SessionParams {
                remote_a: Some(addr(&trunk)),
                remote_b: Some(addr(&server1)),
                options: None,
                rtcp_mux: false,
            },
        )
        .unwrap();
    let (a, b) = (info.side_a.rtp_addr(), info.side_b.rtp_addr());

    // Server 1 plays its stream; sequence numbers about to wrap.
    let mut seen = Vec::new();
    for k in 0..5u16 {
        let seq = 65533u16.wrapping_add(k);
        server1
            .send_to(&rtp_pkt(seq, 8000 + 160 * u32::from(k), 0x1111), b)
            .unwrap();
        seen.push(recv(&trunk).0);
    }
    trunk.send_to(&rtp_pkt(1, 0, 0xa), a).unwrap();
    assert_eq!(recv(&server1).1, b);

    // Server 1 dies; the call moves to server 2.
    r.switch_upstream(id, addr(&server2), None).unwrap();
    // A straggler from server 1 must not latch or reach leg A.
    server1.send_to(&rtp_pkt(2, 8800, 0x1111), b).unwrap();
    // Server 2 starts its own stream: other SSRC, seq and timestamps.
    for k in 0..5u16 {
        server2
            .send_to(&rtp_pkt(30000 + k, 123_456 + 160 * u32::from(k), 0x2222), b)
            .unwrap();
        seen.push(recv(&trunk).0);
    }
    for (i, p) in seen.iter().enumerate() {
        assert_eq!(rtp::ssrc(p), 0x1111, "packet {i}: same SSRC throughout");
        assert_eq!(
            rtp::seq(p),
            65533u16.wrapping_add(i as u16),
            "packet {i}: seq +1"
        );
        if i > 0 {
            let step = rtp::timestamp(p).wrapping_sub(rtp::timestamp(&seen[i - 1]));
            assert!(
                step > 0 && step < 8000 * 60,
                "packet {i}: timestamp moves forward plausibly ({step})"
            );
        }
        assert_eq!(
            rtp::marker(p),
            i == 5,
            "packet {i}: marker only on the first switched"
        );
    }
    for i in 6..10 {
        let step = rtp::timestamp(&seen[i]).wrapping_sub(rtp::timestamp(&seen[i - 1]));
        assert_eq!(step, 160, "server 2's own spacing is kept");
    }

    // Leg A's media now goes to server 2.
    trunk.send_to(&rtp_pkt(2, 160, 0xa), a).unwrap();
    let (got, from) = recv(&server2);
    assert_eq!((rtp::seq(&got), from), (2, b));

    eventually("the straggler's drop", || {
        r.stats(id).unwrap().side_b.dropped_rejected_source == 1
    });
    let st = r.stats(id).unwrap();
    assert_eq!(st.upstream_switches, 1);
    assert_eq!(st.side_b.ssrc_changes, 1);
    assert_eq!(st.side_b.packets, 10);
    let snap = r.session_snapshot(id).unwrap();
    assert_eq!(snap.upstream, Some(addr(&server2)));
    assert_eq!(snap.side_b.latched_rtp, Some(addr(&server2)));
    let rw = snap.continuity_toward_a.rewrite.expect("rewrite in force");
    assert_eq!((rw.in_ssrc, rw.out_ssrc), (0x2222, 0x1111));
    r.remove_session(id).await.unwrap();
}

#[tokio::test]
async fn port_pool_exhaustion_and_delayed_reuse() {
    let net = 105;
    // 8 pairs: 4 sessions.
    let r = relay(net, 21400, 21415);
    assert_eq!(r.counters().port_pairs_total, 8);
    let s = |n| SessionId(n);
    let i1 = r.create_session(s(1), SessionParams::default()).unwrap();
    let i2 = r.create_session(s(2), SessionParams::default()).unwrap();
    let i3 = r.create_session(s(3), SessionParams::default()).unwrap();
    assert!(matches!(
        r.create_session(s(2), SessionParams::default()),
        Err(Error::SessionExists(SessionId(2)))
    ));
    // Pairs in random order (within the older half of the free ones).
    let ports = |i: &media_relay::SessionInfo| {
        let mut p = [i.side_a.rtp_port, i.side_b.rtp_port];
        p.sort();
        p
    };
    let mut first_six: Vec<u16> = [&i1, &i2, &i3].into_iter().flat_map(ports).collect();
    first_six.sort();
    let fresh: Vec<u16> = (21400..21415)
        .step_by(2)
        .filter(|p| !first_six.contains(p))
        .collect();
    assert_eq!(fresh.len(), 2);

    r.remove_session(s(1)).await.unwrap();
    // The freed pairs are not handed out while fresh ones remain...
    let i4 = r.create_session(s(4), SessionParams::default()).unwrap();
    assert_eq!(ports(&i4).to_vec(), fresh);
    // ...then they are.
    let i5 = r.create_session(s(5), SessionParams::default()).unwrap();
    assert_eq!(ports(&i5), ports(&i1));
    assert_eq!(r.counters().port_pairs_free, 0);

    let err = r
        .create_session(s(6), SessionParams::default())
        .unwrap_err();
    assert!(matches!(err, Error::PortsExhausted { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("#6") && msg.contains("21400-21415"), "{msg}");
    assert!(!r.session_ids().contains(&s(6)));

    // The reused ports forward.
    let trunk = peer(net, 2);
    let server = peer(net, 3);
    r.set_remote(s(5), Side::A, addr(&trunk)).unwrap();
    r.set_remote(s(5), Side::B, addr(&server)).unwrap();
    trunk
        .send_to(&rtp_pkt(1, 0, 1), i5.side_a.rtp_addr())
        .unwrap();
    assert_eq!(rtp::seq(&recv(&server).0), 1);

    for n in [2, 3, 4, 5] {
        r.remove_session(s(n)).await.unwrap();
    }
    assert_eq!(r.counters().port_pairs_free, 8);
    assert_eq!(r.active_sessions(), 0);
}

#[tokio::test]
async fn sessions_spread_over_workers_all_forward() {
    let net = 106;
    let r = relay(net, 21500, 21599);
    let trunk = peer(net, 2);
    let server = peer(net, 3);
    let mut infos = Vec::new();
    for n in 0..20u64 {
        infos.push(
            r.create_session(
                SessionId(n),
                SessionParams {
                    remote_a: Some(addr(&trunk)),
                    remote_b: Some(addr(&server)),
                    options: None,
                    rtcp_mux: false,
                },
            )
            .unwrap(),
        );
    }
    for (n, info) in infos.iter().enumerate() {
        trunk
            .send_to(&rtp_pkt(n as u16, 0, n as u32), info.side_a.rtp_addr())
            .unwrap();
        server
            .send_to(
                &rtp_pkt(n as u16, 0, 1000 + n as u32),
                info.side_b.rtp_addr(),
            )
            .unwrap();
    }
    let mut to_server: Vec<u32> = (0..20).map(|_| rtp::ssrc(&recv(&server).0)).collect();
    let mut to_trunk: Vec<u32> = (0..20).map(|_| rtp::ssrc(&recv(&trunk).0)).collect();
    to_server.sort();
    to_trunk.sort();
    assert_eq!(to_server, (0..20).collect::<Vec<_>>());
    assert_eq!(to_trunk, (1000..1020).collect::<Vec<_>>());
    for n in 0..20 {
        r.remove_session(SessionId(n)).await.unwrap();
    }
}

#[tokio::test]
async fn snapshot_restores_a_session_that_forwards_at_once() {
    let net = 107;
    let (min, max) = (21600, 21699);
    let trunk = peer(net, 2);
    let server1 = peer(net, 3);
    let server2 = peer(net, 4);
    let intruder = peer(net, 5);
    let id = SessionId(42);

    let r1 = relay(net, min, max);
    let info = r1
        .create_session(
            id,
            SessionParams {
                remote_a: Some(addr(&trunk)),
                remote_b: Some(addr(&server1)),
                options: None,
                rtcp_mux: false,
            },
        )
        .unwrap();
    let (a, b) = (info.side_a.rtp_addr(), info.side_b.rtp_addr());
    trunk.send_to(&rtp_pkt(1, 0, 0xa), a).unwrap();
    recv(&server1);
    server1.send_to(&rtp_pkt(10, 1600, 0x1111), b).unwrap();
    assert_eq!(rtp::seq(&recv(&trunk).0), 10);
    r1.switch_upstream(id, addr(&server2), None).unwrap();
    server2.send_to(&rtp_pkt(500, 9, 0x2222), b).unwrap();
    assert_eq!(rtp::seq(&recv(&trunk).0), 11);

    let json = serde_json::to_string(&r1.snapshot()).unwrap();
    drop(r1); // the active node dies; its sockets close

    let snap: RelaySnapshot = serde_json::from_str(&json).unwrap();
    assert_eq!(snap.sessions.len(), 1);
    let s = &snap.sessions[0];
    assert_eq!(s.side_a.latched_rtp, Some(addr(&trunk)));
    assert_eq!(s.upstream, Some(addr(&server2)));

    let r2 = relay(net, min, max);
    let restored = r2.restore(&snap);
    assert_eq!(restored.len(), 1);
    assert_eq!(*restored[0].as_ref().unwrap(), info);
    assert!(matches!(
        r2.restore_session(s),
        Err(Error::SessionExists(_))
    ));
    let mut moved = s.clone();
    moved.id = SessionId(43);
    assert!(matches!(
        r2.restore_session(&moved),
        Err(Error::PortUnavailable { port, .. }) if port == info.side_a.rtp_port
    ));
    moved.side_a.local.rtp_port = 1000;
    assert!(matches!(
        r2.restore_session(&moved),
        Err(Error::PortUnavailable { port: 1000, .. })
    ));

    // Forwarding resumes without re-learning anything: leg A still sees
    // the same stream...
    server2.send_to(&rtp_pkt(501, 169, 0x2222), b).unwrap();
    let p = recv(&trunk).0;
    assert_eq!((rtp::ssrc(&p), rtp::seq(&p)), (0x1111, 12));
    // ...latching is kept (a stranger cannot take side A)...
    intruder.send_to(&rtp_pkt(9, 9, 9), a).unwrap();
    trunk.send_to(&rtp_pkt(2, 160, 0xa), a).unwrap();
    let (p, from) = recv(&server2);
    assert_eq!((rtp::seq(&p), from), (2, b));
    eventually("the stranger's drop", || {
        r2.stats(id).unwrap().side_a.dropped_rejected_source == 1
    });
    r2.remove_session(id).await.unwrap();
}

#[test]
fn bad_config_is_refused() {
    let err = MediaRelay::new(RelayConfig {
        port_min: 21001,
        port_max: 21001,
        ..RelayConfig::default()
    })
    .unwrap_err();
    assert!(err.to_string().contains("port_max"), "{err}");
}

#[tokio::test]
async fn relatch_on_ssrc_change_moves_media_to_the_new_source() {
    let net = 108;
    let r = relay(net, 21700, 21799);
    // Two sources on the trunk's IP (a stranger could not re-latch).
    let (trunk1, trunk2) = (peer(net, 2), peer(net, 2));
    let server = peer(net, 4);
    let id = SessionId(1);
    let info = r
        .create_session(
            id,
            SessionParams {
                remote_a: Some(addr(&trunk1)),
                remote_b: Some(addr(&server)),
                options: Some(media_relay::SessionOptions {
                    relatch_on_ssrc_change: true,
                    ..Default::default()
                }),
                rtcp_mux: false,
            },
        )
        .unwrap();
    let (a, b) = (info.side_a.rtp_addr(), info.side_b.rtp_addr());
    trunk1.send_to(&rtp_pkt(1, 0, 0x1), a).unwrap();
    assert_eq!(rtp::ssrc(&recv(&server).0), 0x1);
    server.send_to(&rtp_pkt(1, 0, 0xb), b).unwrap();
    assert_eq!(recv(&trunk1).1, a);
    // The trunk's media moves to another address with a new SSRC.
    trunk2.send_to(&rtp_pkt(1, 0, 0x2), a).unwrap();
    assert_eq!(rtp::ssrc(&recv(&server).0), 0x2);
    eventually("re-latch", || {
        r.session_snapshot(id).unwrap().side_a.latched_rtp == Some(addr(&trunk2))
    });
    // Media toward leg A follows it (not through the socket connected to
    // the old address).
    for seq in 2..5 {
        server.send_to(&rtp_pkt(seq, 0, 0xb), b).unwrap();
        let (p, from) = recv(&trunk2);
        assert_eq!((rtp::seq(&p), from), (seq, a));
    }
    // From the old address but with the latched SSRC: foreign (with a
    // different SSRC it would re-latch again).
    trunk1.send_to(&rtp_pkt(9, 0, 0x2), a).unwrap();
    trunk2.send_to(&rtp_pkt(3, 0, 0x2), a).unwrap();
    assert_eq!(rtp::seq(&recv(&server).0), 3);
    eventually("foreign drop", || {
        r.stats(id).unwrap().side_a.dropped_wrong_source == 1
    });
    r.remove_session(id).await.unwrap();
}

#[tokio::test]
async fn survives_icmp_errors_when_the_peer_port_closes() {
    let net = 109;
    let r = relay(net, 21800, 21899);
    let trunk = peer(net, 2);
    let server = peer(net, 3);
    let server_addr = addr(&server);
    let id = SessionId(1);
    let info = r
        .create_session(
            id,
            SessionParams {
                remote_a: Some(addr(&trunk)),
                remote_b: Some(server_addr),
                options: None,
                rtcp_mux: false,
            },
        )
        .unwrap();
    let (a, b) = (info.side_a.rtp_addr(), info.side_b.rtp_addr());
    trunk.send_to(&rtp_pkt(1, 0, 1), a).unwrap();
    recv(&server);
    server.send_to(&rtp_pkt(1, 0, 2), b).unwrap();
    recv(&trunk);
    // The server goes away: the relay's sends draw ICMP port unreachable.
    drop(server);
    for seq in 2..10 {
        trunk.send_to(&rtp_pkt(seq, 0, 1), a).unwrap();
    }
    eventually("the packets toward the dead port", || {
        r.stats(id).unwrap().side_a.packets == 9
    });
    // The refusals are reported for side B's peer, never for side A's.
    eventually("the peer's refusals", || {
        r.stats(id).unwrap().side_b.peer_refused > 0
    });
    let since = r.refused_since(id, Side::B).unwrap();
    assert!(since.is_some_and(|d| d < DEADLINE), "{since:?}");
    assert_eq!(r.refused_since(id, Side::A).unwrap(), None);
    assert_eq!(r.stats(id).unwrap().side_a.peer_refused, 0);
    // A new upstream starts with a clean record.
    r.switch_upstream(id, server_addr, None).unwrap();
    assert_eq!(r.refused_since(id, Side::B).unwrap(), None);
    // It comes back on the same port: media flows both ways again.
    let server = UdpSocket::bind(server_addr).expect("rebind the server port");
    server.set_read_timeout(Some(DEADLINE)).unwrap();
    trunk.send_to(&rtp_pkt(10, 0, 1), a).unwrap();
    // (The last packets sent while it was away may still get through.)
    while rtp::seq(&recv(&server).0) != 10 {}
    server.send_to(&rtp_pkt(2, 0, 2), b).unwrap();
    assert_eq!(rtp::seq(&recv(&trunk).0), 2);
    r.remove_session(id).await.unwrap();
}

#[tokio::test]
async fn works_without_connected_sockets_and_with_busy_polling() {
    let net = 110;
    let r = MediaRelay::new(RelayConfig {
        local_ip: ip(net, 1),
        port_min: 21900,
        port_max: 21999,
        workers: 1,
        connect_latched: false,
        busy_poll_us: 100,
        batch_size: 4,
        ..RelayConfig::default()
    })
    .unwrap();
    let trunk = peer(net, 2);
    let server = peer(net, 3);
    let intruder = peer(net, 4);
    let id = SessionId(1);
    let info = r
        .create_session(
            id,
            SessionParams {
                remote_a: Some(addr(&trunk)),
                remote_b: Some(addr(&server)),
                options: None,
                rtcp_mux: false,
            },
        )
        .unwrap();
    let (a, b) = (info.side_a.rtp_addr(), info.side_b.rtp_addr());
    // More than a batch in one go.
    for seq in 0..20 {
        trunk.send_to(&rtp_pkt(seq, 0, 1), a).unwrap();
    }
    for seq in 0..20 {
        assert_eq!(rtp::seq(&recv(&server).0), seq);
    }
    intruder.send_to(&rtp_pkt(99, 0, 1), a).unwrap();
    trunk.send_to(&rtp_pkt(20, 0, 1), a).unwrap();
    assert_eq!(rtp::seq(&recv(&server).0), 20);
    assert_eq!(r.stats(id).unwrap().side_a.dropped_rejected_source, 1);
    server.send_to(&rtp_pkt(5, 0, 2), b).unwrap();
    assert_eq!(recv(&trunk).1, a);
    r.remove_session(id).await.unwrap();
}

#[tokio::test]
async fn reused_ports_forward_with_fresh_latching_and_drop_strays() {
    let net = 111;
    // Two pairs: every session gets the ports of the one before.
    let r = relay(net, 22000, 22003);
    let (trunk1, server1) = (peer(net, 2), peer(net, 3));
    let (trunk2, server2) = (peer(net, 4), peer(net, 5));
    let params = |trunk: &UdpSocket, server: &UdpSocket| SessionParams {
        remote_a: Some(addr(trunk)),
        remote_b: Some(addr(server)),
        options: None,
        rtcp_mux: false,
    };

    // Session 1 latches both sides (and gets connected sockets).
    let i1 = r
        .create_session(SessionId(1), params(&trunk1, &server1))
        .unwrap();
    let (a, b) = (i1.side_a.rtp_addr(), i1.side_b.rtp_addr());
    trunk1.send_to(&rtp_pkt(1, 0, 0x1), a).unwrap();
    assert_eq!(rtp::ssrc(&recv(&server1).0), 0x1);
    server1.send_to(&rtp_pkt(1, 0, 0xb1), b).unwrap();
    assert_eq!(recv(&trunk1).1, a);
    r.remove_session(SessionId(1)).await.unwrap();
    eventually("ports parked", || r.counters().port_pairs_parked == 2);

    // Late media of the ended call reaches the parked sockets.
    for seq in 2..5 {
        trunk1.send_to(&rtp_pkt(seq, 0, 0x1), a).unwrap();
    }
    trunk1.send_to(&rr(0x1), i1.side_a.rtcp_addr()).unwrap();
    server1.send_to(&rtp_pkt(2, 0, 0xb1), b).unwrap();

    // Session 2 gets the same ports, with nothing latched.
    let i2 = r
        .create_session(SessionId(2), params(&trunk2, &server2))
        .unwrap();
    assert_eq!(
        (i2.side_a, i2.side_b),
        (i1.side_a, i1.side_b),
        "the parked pairs are reused"
    );
    assert_eq!(r.counters().dropped_stray, 5);
    assert_eq!(r.counters().port_pairs_parked, 0);
    let snap = r.session_snapshot(SessionId(2)).unwrap();
    assert_eq!(snap.side_a.latched_rtp, None);
    assert_eq!(snap.side_b.latched_rtp, None);
    assert_eq!(snap.side_a.latched_ssrc, None);

    // The new caller's first packet is the first thing the new server gets
    // (a stray would have come first, or latched side A to trunk 1).
    trunk2.send_to(&rtp_pkt(100, 0, 0x2), a).unwrap();
    let p = recv(&server2).0;
    assert_eq!((rtp::seq(&p), rtp::ssrc(&p)), (100, 0x2));
    // And back: side B latches to the new server, not the old one.
    server2.send_to(&rtp_pkt(7, 0, 0xb2), b).unwrap();
    let (p, from) = recv(&trunk2);
    assert_eq!((rtp::ssrc(&p), from), (0xb2, a));
    let snap = r.session_snapshot(SessionId(2)).unwrap();
    assert_eq!(snap.side_a.latched_rtp, Some(addr(&trunk2)));
    assert_eq!(snap.side_b.latched_rtp, Some(addr(&server2)));
    // RTCP of the new call is taken (the stray RR was not).
    trunk2.send_to(&rr(0x2), i2.side_a.rtcp_addr()).unwrap();
    eventually("the new RTCP", || {
        r.stats(SessionId(2)).unwrap().side_a.rtcp_packets == 1
    });
    let snap = r.session_snapshot(SessionId(2)).unwrap();
    assert_eq!(snap.side_a.latched_rtcp, Some(addr(&trunk2)));

    // The old caller is now a stranger on side A: its packet reaches the
    // new session's socket (not a leftover connected socket) and is
    // dropped there.
    trunk1.send_to(&rtp_pkt(5, 0, 0x1), a).unwrap();
    trunk2.send_to(&rtp_pkt(101, 160, 0x2), a).unwrap();
    assert_eq!(rtp::seq(&recv(&server2).0), 101);
    eventually("the stranger's drop", || {
        r.stats(SessionId(2))
            .unwrap()
            .side_a
            .dropped_rejected_source
            == 1
    });
    let st = r.remove_session(SessionId(2)).await.unwrap();
    assert_eq!((st.side_a.packets, st.side_a.rtcp_packets), (2, 1));
    assert_eq!(st.side_b.packets, 1);
}

#[tokio::test]
async fn without_parking_the_sockets_are_closed_after_removal() {
    let net = 112;
    let r = MediaRelay::new(RelayConfig {
        local_ip: ip(net, 1),
        port_min: 22100,
        port_max: 22103,
        workers: 2,
        max_parked_pairs: Some(0),
        ..RelayConfig::default()
    })
    .unwrap();
    let (trunk, server) = (peer(net, 2), peer(net, 3));
    for n in 1..=3 {
        let id = SessionId(n);
        let info = r
            .create_session(
                id,
                SessionParams {
                    remote_a: Some(addr(&trunk)),
                    remote_b: Some(addr(&server)),
                    options: None,
                    rtcp_mux: false,
                },
            )
            .unwrap();
        trunk
            .send_to(&rtp_pkt(n as u16, 0, 1), info.side_a.rtp_addr())
            .unwrap();
        assert_eq!(rtp::seq(&recv(&server).0), n as u16);
        r.remove_session(id).await.unwrap();
        assert_eq!(r.counters().port_pairs_free, 2);
        // The worker closes the sockets (it is not woken for it).
        eventually("the ports closed", || {
            UdpSocket::bind(info.side_a.rtp_addr()).is_ok()
                && UdpSocket::bind(info.side_b.rtcp_addr()).is_ok()
        });
        assert_eq!(r.counters().port_pairs_parked, 0);
    }
}

/// With `release_wait` zero, a session that finds only pairs on their way
/// back fails at once instead of blocking its caller (the call engine);
/// the pairs come back for a later session.
#[tokio::test]
async fn zero_release_wait_fails_at_once_instead_of_waiting() {
    let net = 109;
    let r = MediaRelay::new(RelayConfig {
        local_ip: ip(net, 1),
        port_min: 21900,
        port_max: 21903,
        workers: 1,
        release_wait: Duration::ZERO,
        ..RelayConfig::default()
    })
    .expect("relay starts");
    r.create_session(SessionId(1), SessionParams::default())
        .unwrap();
    r.remove_session(SessionId(1)).await.unwrap();
    // Its worker lets go of the pairs at its next wake-up, not yet.
    let err = r
        .create_session(SessionId(2), SessionParams::default())
        .unwrap_err();
    assert!(matches!(err, Error::PortsExhausted { .. }), "{err}");
    let end = Instant::now() + DEADLINE;
    loop {
        match r.create_session(SessionId(2), SessionParams::default()) {
            Ok(_) => break,
            Err(e) => assert!(Instant::now() < end, "pairs never came back: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// What a stranger spraying the relay's whole port range got out of 20
/// calls being set up.
#[derive(Debug)]
struct Bleed {
    /// Packets of the calls' audio the stranger received.
    audio_to_stranger: usize,
    /// The stranger's packets that reached the media server.
    injected_into_server: usize,
    /// Calls whose side A latched to the real trunk.
    trunk_latched: usize,
    /// The trunk's packets that reached the media server.
    trunk_to_server: usize,
    /// The server's packets that reached the trunk.
    server_to_trunk: usize,
}

const STRANGER_SSRC: u32 = 0xbad;
const CALLS: usize = 20;
/// Packets each real peer sends per call once the stranger has sprayed.
const TALK: usize = 5;

/// Datagrams on `s` until `want` arrived or none came for `quiet` (every
/// read has a deadline).
fn collect(s: &UdpSocket, want: usize, quiet: Duration) -> Vec<Vec<u8>> {
    s.set_read_timeout(Some(quiet)).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 2048];
    let end = Instant::now() + DEADLINE;
    while got.len() < want && Instant::now() < end {
        match s.recv_from(&mut buf) {
            Ok((n, _)) => got.push(buf[..n].to_vec()),
            Err(_) => break,
        }
    }
    got
}

fn is_rtp_from(p: &[u8], ssrc: u32) -> bool {
    p.len() >= 12 && p[1] & 0x7f == 0 && rtp::ssrc(p) == ssrc
}

/// The "RTP bleed" attack of the review against `CALLS` calls: each call
/// is set up as the proxy does it (leg A's SDP and SIP source, then the
/// media server's answer and its first packet), then a stranger on
/// another address sprays every port of the range (RTP to even ports,
/// RTCP to odd ones) before the trunk's first packet, then both real
/// peers talk.
fn rtp_bleed(net: u8, port_min: u16, port_max: u16, latching: Latching) -> Bleed {
    let r = MediaRelay::new(RelayConfig {
        local_ip: ip(net, 1),
        port_min,
        port_max,
        workers: 2,
        session_defaults: SessionOptions {
            latching,
            ..SessionOptions::default()
        },
        ..RelayConfig::default()
    })
    .expect("relay starts");
    let (trunk, server, stranger) = (peer(net, 2), peer(net, 3), peer(net, 9));
    let accounted = |c: &media_relay::RelayCounters| {
        c.packets_relayed
            + c.dropped_wrong_source
            + c.dropped_rejected_source
            + c.dropped_malformed
            + c.dropped_no_destination
            + c.dropped_send_error
    };
    let mut calls = Vec::new();
    for n in 0..CALLS {
        let id = SessionId(n as u64);
        let params = SessionParams {
            remote_a: Some(addr(&trunk)),
            ..SessionParams::default()
        };
        let info = r.create_session(id, params).unwrap();
        r.set_signalling_ip(id, Side::A, Some(ip(net, 2))).unwrap();
        // The media server answers and starts playing at once.
        r.set_signalling_ip(id, Side::B, Some(ip(net, 3))).unwrap();
        r.set_remote(id, Side::B, addr(&server)).unwrap();
        server
            .send_to(&rtp_pkt(0, 0, 0x5e00 + n as u32), info.side_b.rtp_addr())
            .unwrap();
        calls.push((id, info));
    }
    let first = collect(&trunk, CALLS, DEADLINE);
    let mut server_to_trunk = first.len();
    eventually("the server's first packets", || {
        accounted(&r.counters()) == CALLS as u64
    });

    // The spray: three rounds over the whole range.
    let in_use: Vec<u16> = calls
        .iter()
        .flat_map(|(_, i)| [i.side_a, i.side_b])
        .flat_map(|l| [l.rtp_port, l.rtcp_port])
        .collect();
    let mut sprayed = 0u64;
    for round in 0..3u16 {
        for port in port_min..=port_max {
            let p = if port % 2 == 0 {
                rtp_pkt(round, 0, STRANGER_SSRC)
            } else {
                rr(STRANGER_SSRC)
            };
            let _ = stranger.send_to(&p, SocketAddr::new(ip(net, 1), port));
            sprayed += u64::from(in_use.contains(&port));
        }
    }
    eventually("the spray judged", || {
        accounted(&r.counters()) == CALLS as u64 + sprayed
    });

    // The real peers talk.
    for (n, (_, info)) in calls.iter().enumerate() {
        for seq in 1..=TALK as u16 {
            trunk
                .send_to(&rtp_pkt(seq, 0, 0xa000 + n as u32), info.side_a.rtp_addr())
                .unwrap();
            server
                .send_to(&rtp_pkt(seq, 0, 0x5e00 + n as u32), info.side_b.rtp_addr())
                .unwrap();
        }
    }
    let quiet = Duration::from_millis(500);
    let at_server = collect(&server, CALLS * TALK, quiet);
    server_to_trunk += collect(&trunk, CALLS * TALK, quiet).len();
    // Whatever was forwarded to the stranger is in its socket by now.
    let at_stranger = collect(&stranger, usize::MAX, quiet);
    let trunk_latched = calls
        .iter()
        .filter(|(id, _)| r.session_snapshot(*id).unwrap().side_a.latched_rtp == Some(addr(&trunk)))
        .count();
    Bleed {
        audio_to_stranger: at_stranger
            .iter()
            .filter(|p| p.len() >= 12 && !is_rtp_from(p, STRANGER_SSRC))
            .count(),
        injected_into_server: at_server
            .iter()
            .filter(|p| is_rtp_from(p, STRANGER_SSRC))
            .count(),
        trunk_latched,
        trunk_to_server: at_server
            .iter()
            .filter(|p| p.len() >= 12 && rtp::ssrc(p) >> 12 == 0xa)
            .count(),
        server_to_trunk,
    }
}

/// The stranger gets nothing and injects nothing; every call's audio
/// flows between its real peers, who keep their latches.
fn assert_no_bleed(b: &Bleed) {
    assert_eq!(b.audio_to_stranger, 0, "{b:?}");
    assert_eq!(b.injected_into_server, 0, "{b:?}");
    assert_eq!(b.trunk_latched, CALLS, "{b:?}");
    assert_eq!(b.trunk_to_server, CALLS * TALK, "{b:?}");
    assert_eq!(b.server_to_trunk, CALLS * (1 + TALK), "{b:?}");
}

#[test]
fn a_port_range_spray_during_set_up_gets_nothing_with_signalled_ip_latching() {
    let b = rtp_bleed(114, 22300, 22399, Latching::SignalledIp);
    eprintln!("signalled-ip: {b:?}");
    assert_no_bleed(&b);
}

#[test]
fn a_port_range_spray_during_set_up_gets_nothing_with_strict_latching() {
    let b = rtp_bleed(115, 22400, 22499, Latching::Strict);
    eprintln!("strict: {b:?}");
    assert_no_bleed(&b);
}

/// The attack works against first-packet latching: the same test, failing.
#[test]
fn a_port_range_spray_during_set_up_takes_the_calls_with_any_latching() {
    let b = rtp_bleed(116, 22500, 22599, Latching::Any);
    eprintln!("any: {b:?}");
    assert!(b.audio_to_stranger > 0, "{b:?}");
    assert!(b.injected_into_server > 0, "{b:?}");
    assert!(b.trunk_latched < CALLS, "{b:?}");
}

/// SRTP and SRTCP (RFC 3711; keys negotiated end to end with SDES) pass
/// through byte for byte: their headers are plain RTP/RTCP, the rest
/// (encrypted payload, SRTCP index, authentication tag) is opaque to the
/// relay, and a changed byte would fail the receiver's authentication.
#[test]
fn srtp_and_srtcp_pass_through_byte_for_byte() {
    let net = 117;
    let r = relay(net, 22600, 22699);
    let (trunk, trunk_rtcp) = (peer(net, 2), peer(net, 2));
    let (server, server_rtcp) = (peer(net, 3), peer(net, 3));
    let id = SessionId(1);
    let info = session_between(&r, id, &trunk, &server);
    r.set_remote_rtcp(id, Side::A, addr(&trunk_rtcp)).unwrap();
    r.set_remote_rtcp(id, Side::B, addr(&server_rtcp)).unwrap();
    // Encrypted payload and an 80-bit authentication tag.
    let srtp = |seq: u16, ssrc: u32| {
        let cipher: Vec<u8> = (0..160u16).map(|i| (i * 7 + seq) as u8).collect();
        let mut p = build_rtp(0, seq, u32::from(seq) * 160, ssrc, &cipher);
        p.extend_from_slice(&[0xa5; 10]);
        p
    };
    // SRTCP: the RR header in clear, the encrypted rest, E flag + index,
    // tag.
    let srtcp = |ssrc: u32| {
        let mut p = rr(ssrc);
        p.extend_from_slice(&[0x3c; 24]);
        p.extend_from_slice(&0x8000_0001u32.to_be_bytes());
        p.extend_from_slice(&[0x5a; 10]);
        p
    };
    for seq in 1..=3 {
        let p = srtp(seq, 0xa);
        trunk.send_to(&p, info.side_a.rtp_addr()).unwrap();
        assert_eq!(recv(&server).0, p);
        let p = srtp(seq, 0xb);
        server.send_to(&p, info.side_b.rtp_addr()).unwrap();
        assert_eq!(recv(&trunk).0, p);
    }
    trunk_rtcp
        .send_to(&srtcp(0xa), info.side_a.rtcp_addr())
        .unwrap();
    assert_eq!(recv(&server_rtcp).0, srtcp(0xa));
    server_rtcp
        .send_to(&srtcp(0xb), info.side_b.rtcp_addr())
        .unwrap();
    assert_eq!(recv(&trunk_rtcp).0, srtcp(0xb));
}
